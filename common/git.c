/*
 * The one way both programs run git: an explicit argv (never a shell), an
 * environment built from nothing, and configuration that can make git run
 * no program of anyone else's choosing.
 *
 * The worker's git runs outside the sandbox, on a workspace the model's
 * commands can write: a .gitattributes naming a filter, a .git file
 * pointing at a planted git directory, a nested repository.  Whatever git
 * would run on its own is turned off here (hooks, fsmonitor, pager,
 * attribute-driven filters and diff drivers, the global and system
 * configuration and attributes, automatic gc), and callers that work on a
 * worktree pin GIT_DIR and GIT_WORK_TREE instead of letting git follow the
 * workspace's .git file.
 */
#include <sys/prctl.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define GIT_MAX_ERR     (64 * 1024) /* bytes of stderr kept (the tail) */
#define GIT_TICK_MS     200         /* how often a long git calls tick */
#define CAUSE_ERR_LINES 3
#define CAUSE_ERR_BYTES 400

/*
 * Settings that stop git from running programs on its own.  Given as
 * GIT_CONFIG_KEY_n, which win over every configuration file.
 */
static const char *const git_fixed_config[] = {
    "core.hooksPath",
    "/dev/null",
    "core.fsmonitor",
    "false",
    /* The default is ~/.config/git/attributes, the user's global file. */
    "core.attributesFile",
    "/dev/null",
    "core.pager",
    "cat",
    "gc.auto",
    "0",
    "maintenance.auto",
    "false",
    NULL,
};

/*
 * stderr messages of a failure that can pass: a lock another git holds (or
 * a killed one left), a full disk or memory, the process table.  Anything
 * else git refuses will be refused again.
 */
static const char *const git_transient[] = {
    ".lock': File exists",
    "cannot lock ref",
    "Unable to create",
    "No space left on device",
    "Cannot allocate memory",
    "Out of memory",
    "Resource temporarily unavailable",
    "Too many open files",
    "Disk quota exceeded",
};

/*
 * What a fetch or push of an origin takes from the node's environment: its
 * ssh agent and ssh command.  Nothing else of the caller's environment
 * reaches any git (a proxy is the user's http.proxy setting: the global
 * configuration is read for those commands).  Not the proxy variables:
 * the worker has these in its environment, and libcurl would send the
 * model's requests through them too.
 */
const char *const git_network_env[GIT_NETWORK_ENV_MAX + 1] = {
    "SSH_AUTH_SOCK",
    "GIT_SSH_COMMAND",
    "GIT_SSH",
    "GIT_SSH_VARIANT",
    NULL,
};

/* The last few lines of git's stderr, joined into one line. */
static char *
git_err_tail(const struct buf *err, int network)
{
	const char *s = err->buf;
	size_t end = err->len, start;
	/*
	 * A fetch or push ends with git's advice ("Please make sure you
	 * have the correct access rights...") after the line that says
	 * what went wrong: more is kept, to tell why (origin.c sorts on it).
	 */
	int maxlines = network ? 3 * CAUSE_ERR_LINES : CAUSE_ERR_LINES;
	size_t maxbytes = network ? 3 * CAUSE_ERR_BYTES : CAUSE_ERR_BYTES;
	int lines = 0;
	char *out;

	while (end > 0 && (s[end - 1] == '\n' || s[end - 1] == '\r' ||
	                      s[end - 1] == ' ' || s[end - 1] == '\t'))
		end--;
	if (end == 0)
		return xstrdup("(no output)");
	start = end;
	while (start > 0) {
		if (s[start - 1] == '\n' && ++lines == maxlines)
			break;
		start--;
	}
	if (end - start > maxbytes)
		start = end - maxbytes;
	out = xstrndup(s + start, end - start);
	for (char *p = out; *p != '\0'; p++) {
		if (*p == '\n')
			*p = ';';
		else if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	}
	return out;
}

static void
env_add(char **envp, size_t *n, size_t max, char *s)
{
	if (*n + 1 >= max)
		fatalx("%s: too many variables", __func__);
	envp[(*n)++] = s;
}

/*
 * The environment of every git: nothing of the caller's but PATH and HOME
 * (no GIT_DIR, GIT_INDEX_FILE or GIT_CONFIG_* that would point it
 * elsewhere), no system or global configuration, an identity so commits
 * work with no user config, and the settings above plus the caller's.
 */
char **
git_env(const struct git_opts *o)
{
	const char *path = getenv("PATH"), *home = getenv("HOME");
	const char *const *lists[2] = {git_fixed_config, o ? o->config : NULL};
	size_t max = 18 + nitems(git_network_env), n = 0, nconf = 0;
	char **envp;

	for (size_t l = 0; l < nitems(lists); l++) {
		for (size_t i = 0; lists[l] != NULL && lists[l][i] != NULL;
		     i += 2)
			max += 2;
	}
	envp = xcalloc(max, sizeof *envp);

	env_add(envp, &n, max,
	    xasprintf("PATH=%s",
	        path != NULL ? path : "/usr/local/bin:/usr/bin:/bin"));
	if (home != NULL)
		env_add(envp, &n, max, xasprintf("HOME=%s", home));
	env_add(envp, &n, max, xstrdup("LANG=C.UTF-8"));
	env_add(envp, &n, max, xstrdup("GIT_CONFIG_NOSYSTEM=1"));
	/*
	 * A fetch or push reads the user's global configuration (credential
	 * helpers, core.sshCommand, url.*.insteadOf, http.*); the settings
	 * below still win over it, and no transport but these three runs.
	 */
	if (o == NULL || !o->network)
		env_add(envp, &n, max, xstrdup("GIT_CONFIG_GLOBAL=/dev/null"));
	else {
		for (size_t i = 0; git_network_env[i] != NULL; i++) {
			const char *v = getenv(git_network_env[i]);

			if (v != NULL)
				env_add(envp, &n, max,
				    xasprintf("%s=%s", git_network_env[i], v));
		}
	}
	env_add(envp, &n, max, xstrdup("GIT_ALLOW_PROTOCOL=file:https:ssh"));
	env_add(envp, &n, max, xstrdup("GIT_TERMINAL_PROMPT=0"));
	env_add(envp, &n, max, xstrdup("GIT_AUTHOR_NAME=orch-supervisor"));
	env_add(envp, &n, max, xstrdup("GIT_AUTHOR_EMAIL=orch@localhost"));
	env_add(envp, &n, max, xstrdup("GIT_COMMITTER_NAME=orch-supervisor"));
	env_add(envp, &n, max, xstrdup("GIT_COMMITTER_EMAIL=orch@localhost"));
	if (o != NULL && o->gitdir != NULL) {
		env_add(envp, &n, max, xasprintf("GIT_DIR=%s", o->gitdir));
		if (o->worktree != NULL)
			env_add(envp, &n, max,
			    xasprintf("GIT_WORK_TREE=%s", o->worktree));
	}
	for (size_t l = 0; l < nitems(lists); l++) {
		for (size_t i = 0; lists[l] != NULL && lists[l][i] != NULL;
		     i += 2) {
			env_add(envp, &n, max,
			    xasprintf(
			        "GIT_CONFIG_KEY_%zu=%s", nconf, lists[l][i]));
			env_add(envp, &n, max,
			    xasprintf("GIT_CONFIG_VALUE_%zu=%s", nconf,
			        lists[l][i + 1]));
			nconf++;
		}
	}
	env_add(envp, &n, max, xasprintf("GIT_CONFIG_COUNT=%zu", nconf));
	envp[n] = NULL;
	return envp;
}

void
git_env_free(char **envp)
{
	for (size_t i = 0; envp != NULL && envp[i] != NULL; i++)
		free(envp[i]);
	free(envp);
}

static int
git_transient_err(const struct buf *err)
{
	for (size_t i = 0; i < nitems(git_transient); i++) {
		if (strstr(err->buf, git_transient[i]) != NULL)
			return 1;
	}
	return 0;
}

/* The subcommand, for messages: "add", "worktree add". */
static char *
git_sub(const char *const *args)
{
	if (strcmp(args[0], "worktree") == 0 && args[1] != NULL)
		return xasprintf("worktree %s", args[1]);
	return xstrdup(args[0]);
}

/* Runs in the forked child: only async-signal-safe calls. */
static void __attribute__((noreturn)) git_child(const char *const *argv,
    char *const *envp, pid_t parent, int in, int out, int err)
{
	static const char msg[] = "orch: cannot execute git\n";

	(void)child_signals_default();
	/*
	 * git dies with its caller.  A worker killed alone (the OOM killer,
	 * a crash) must not leave a `git add` running on the index, which
	 * the next worker takes for a stale lock and removes.  It stays in
	 * the caller's process group, which the supervisor kills as one.
	 */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != parent)
		_exit(127);
	if (in == -1)
		in = open("/dev/null", O_RDONLY);
	if (in == -1 || dup2(in, STDIN_FILENO) == -1 ||
	    dup2(out, STDOUT_FILENO) == -1 || dup2(err, STDERR_FILENO) == -1)
		_exit(127);
	if (close_range(STDERR_FILENO + 1, ~0U, 0) == -1) {
		for (int fd = STDERR_FILENO + 1; fd < 1024; fd++)
			close(fd);
	}
	execvpe("git", (char *const *)argv, envp);
	(void)!write(STDERR_FILENO, msg, sizeof msg - 1);
	_exit(127);
}

/* Move a descriptor above stderr so the child's dup2 calls cannot clash. */
static int
fd_above_stdio(int fd)
{
	int nfd;

	if (fd == -1 || fd > STDERR_FILENO)
		return fd;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
	close(fd);
	return nfd;
}

static int
git_spawn(const struct git_opts *o, const char *const *args, char **envp,
    int in, int out, int err, pid_t *pid)
{
	const char *argv[8 + GIT_MAX_ARGS];
	pid_t parent = getpid();
	size_t argc = 0;

	argv[argc++] = "git";
	argv[argc++] = "--no-pager";
	if (o->dir != NULL) {
		argv[argc++] = "-C";
		argv[argc++] = o->dir;
	}
	for (size_t i = 0; args[i] != NULL; i++) {
		if (i == GIT_MAX_ARGS)
			fatalx("%s: too many git arguments", __func__);
		argv[argc++] = args[i];
	}
	argv[argc] = NULL;
	if ((*pid = fork()) == -1)
		return errno;
	if (*pid == 0)
		git_child(argv, envp, parent, in, out, err);
	return 0;
}

static void
close_pair(int p[2])
{
	if (p[0] != -1)
		close(p[0]);
	if (p[1] != -1)
		close(p[1]);
	p[0] = p[1] = -1;
}

int
git_run(const struct git_opts *o, const char *const *args, struct buf *out,
    struct git_status *gs, char **cause)
{
	int outp[2] = {-1, -1}, errp[2] = {-1, -1}, inp[2] = {-1, -1};
	int wstatus, rc = -1, saved, timed_out = 0, pipe_pending;
	size_t written = 0;
	struct buf err;
	sigset_t pipeset, oldset, pending;
	uint64_t started = now_ms(), deadline = 0;
	char **envp, *sub;
	pid_t pid;

	buf_init_capture(out, o->outmax > 0 ? o->outmax : 4096, 0);
	buf_init_capture(&err, 0, GIT_MAX_ERR);
	memset(gs, 0, sizeof *gs);
	gs->exit = -1;
	gs->transient = 1;
	sub = git_sub(args);
	envp = git_env(o);
	if (o->timeout_ms > 0)
		deadline = started + o->timeout_ms;

	/* A git that exits before reading its input must not kill us. */
	sigemptyset(&pipeset);
	sigaddset(&pipeset, SIGPIPE);
	sigpending(&pending);
	pipe_pending = sigismember(&pending, SIGPIPE);
	sigprocmask(SIG_BLOCK, &pipeset, &oldset);

	if (pipe2(outp, O_CLOEXEC) == -1 || pipe2(errp, O_CLOEXEC) == -1 ||
	    (o->in != NULL && pipe2(inp, O_CLOEXEC) == -1)) {
		*cause = xasprintf("git %s: pipe: %s", sub, strerror(errno));
		goto out;
	}
	for (int i = 0; i < 2; i++) {
		outp[i] = fd_above_stdio(outp[i]);
		errp[i] = fd_above_stdio(errp[i]);
		inp[i] = fd_above_stdio(inp[i]);
	}
	if (outp[0] == -1 || outp[1] == -1 || errp[0] == -1 || errp[1] == -1 ||
	    (o->in != NULL && (inp[0] == -1 || inp[1] == -1))) {
		*cause = xasprintf("git %s: fcntl: %s", sub, strerror(errno));
		goto out;
	}
	if (inp[1] != -1)
		fcntl(inp[1], F_SETFL, O_NONBLOCK);
	if ((saved = git_spawn(
	         o, args, envp, inp[0], outp[1], errp[1], &pid)) != 0) {
		*cause = xasprintf("git %s: %s", sub, strerror(saved));
		goto out;
	}
	close(outp[1]);
	close(errp[1]);
	outp[1] = errp[1] = -1;
	if (inp[0] != -1) {
		close(inp[0]);
		inp[0] = -1;
	}
	if (inp[1] != -1 && o->inlen == 0) {
		close(inp[1]);
		inp[1] = -1;
	}

	{
		struct pollfd pfd[3] = {{outp[0], POLLIN, 0},
		    {errp[0], POLLIN, 0}, {inp[1], POLLOUT, 0}};
		struct buf *dst[2] = {out, &err};
		char buf[16384];

		while (pfd[0].fd != -1 || pfd[1].fd != -1) {
			int wait = GIT_TICK_MS;
			uint64_t now = now_ms();

			if (deadline != 0 && now >= deadline && !timed_out) {
				kill(pid, SIGKILL);
				timed_out = 1;
			}
			if (deadline != 0 && !timed_out &&
			    deadline - now < (uint64_t)wait)
				wait = (int)(deadline - now);
			if (o->tick != NULL)
				o->tick(o->arg);
			if (poll(pfd, 3, wait) == -1) {
				if (errno == EINTR)
					continue;
				break;
			}
			if (pfd[2].fd != -1 && pfd[2].revents != 0) {
				ssize_t n = write(pfd[2].fd, o->in + written,
				    o->inlen - written);

				if (n > 0)
					written += (size_t)n;
				if ((n == -1 && errno != EINTR &&
				        errno != EAGAIN) ||
				    written == o->inlen) {
					close(pfd[2].fd);
					pfd[2].fd = inp[1] = -1;
				}
			}
			for (int i = 0; i < 2; i++) {
				ssize_t n;

				if (pfd[i].fd == -1 || pfd[i].revents == 0)
					continue;
				n = read(pfd[i].fd, buf, sizeof buf);
				if (n == -1 &&
				    (errno == EINTR || errno == EAGAIN))
					continue;
				if (n <= 0) {
					close(pfd[i].fd);
					pfd[i].fd = -1;
					continue;
				}
				buf_add(dst[i], buf, (size_t)n);
			}
		}
		outp[0] = pfd[0].fd;
		errp[0] = pfd[1].fd;
	}
	buf_str(out);
	buf_str(&err);

	while (waitpid(pid, &wstatus, 0) == -1) {
		if (errno != EINTR) {
			*cause = xasprintf(
			    "git %s: waitpid: %s", sub, strerror(errno));
			goto out;
		}
	}
	log_debug("git %s in %s: status %d, %llu ms", sub,
	    o->dir != NULL ? o->dir : ".", wstatus,
	    (unsigned long long)(now_ms() - started));
	if (timed_out) {
		*cause = xasprintf("git %s did not finish within %u s", sub,
		    o->timeout_ms / 1000);
		/* It would take as long again. */
		gs->transient = 0;
		gs->timed_out = 1;
	} else if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
		gs->exit = 0;
		gs->transient = 0;
		rc = 0;
	} else if (WIFEXITED(wstatus)) {
		char *tail = git_err_tail(&err, o->network);

		gs->exit = WEXITSTATUS(wstatus);
		gs->transient = git_transient_err(&err);
		*cause = xasprintf("git %s failed (exit %d): %s", sub,
		    WEXITSTATUS(wstatus), tail);
		free(tail);
	} else {
		*cause = xasprintf("git %s killed by signal %d", sub,
		    WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0);
	}

out:
	close_pair(outp);
	close_pair(errp);
	close_pair(inp);
	if (!pipe_pending) {
		struct timespec zero = {0, 0};

		sigpending(&pending);
		if (sigismember(&pending, SIGPIPE))
			sigtimedwait(&pipeset, NULL, &zero);
	}
	sigprocmask(SIG_SETMASK, &oldset, NULL);
	git_env_free(envp);
	buf_free(&err);
	free(sub);
	return rc;
}

int
git_line(const struct git_opts *o, const char *const *args, char **line,
    struct git_status *gs, char **cause)
{
	struct git_opts lo = *o;
	struct buf out;

	*line = NULL;
	if (lo.outmax == 0)
		lo.outmax = 64 * 1024;
	if (git_run(&lo, args, &out, gs, cause) == -1) {
		free(out.buf);
		return -1;
	}
	out.buf[strcspn(out.buf, "\r\n")] = '\0';
	*line = out.buf;
	return 0;
}
