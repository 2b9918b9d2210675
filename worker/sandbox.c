/*
 * Every command the agent runs goes through bubblewrap.
 *
 * A stage's profile (sandbox-profiles/STAGE.profile) says what of the host
 * filesystem the sandbox sees, whether the workspace is writable, the size
 * of /tmp, the environment and the rlimits.  The rest is fixed here and not
 * up to a profile: every namespace is unshared (no network but loopback,
 * no host processes), no capabilities, no nested user namespaces, a new
 * session, --die-with-parent with a PID namespace so the whole tree dies
 * with bwrap, a seccomp filter, a scrubbed environment and only fds 0-2.
 *
 * bwrap is exec'd directly (never through a shell) from a forked child that
 * sets the rlimits and the descriptors, and stays in the worker's process
 * group (see child_exec); the
 * parent moves it into the command's cgroups (cgroup.c, where the host has
 * them) while it starts; bwrap waits once its namespaces exist until the
 * parent moved the sandbox's first process into the cgroups too and gave
 * it its process limit (sandbox_release); the parent then reads the output,
 * enforces the wall clock, reaps it and removes the cgroups.  If
 * bwrap cannot be exec'd, or exits before it created the sandbox (it writes
 * "child-pid" on its --json-status-fd once the namespaces exist), the run
 * fails and nothing has run anywhere.
 *
 * No global state: everything lives in the profile, the result and the
 * stack of sandbox_run.
 *
 * The profile parser is profile.c, the seccomp filter seccomp.c; this file
 * builds bwrap's command line, spawns and watches it.
 */
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "common.h"
#include "sandbox-int.h"

#define SANDBOX_DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"
#define SANDBOX_GRACE_MS     2000  /* SIGTERM to SIGKILL */
#define SANDBOX_DRAIN_MS     1000  /* output read after bwrap was reaped */
#define SANDBOX_CHECK_S      10    /* the sandbox_check probe's wall clock */
#define SANDBOX_SETUP_MS     30000 /* bwrap's setup, before the command */

/* The environment bwrap itself is exec'd with; see sandbox_spawn. */
#define BWRAP_ENV_PATH "PATH=/usr/bin:/bin"

/*
 * Descriptors in the child just before exec: 0 /dev/null, 1 and 2 the
 * capture pipe, then the seccomp program and bwrap's JSON status pipe.
 * Nothing else survives the exec.
 */
#define CHILD_SECCOMP_FD 3
#define CHILD_STATUS_FD  4
#define CHILD_BLOCK_FD   5
#define CHILD_FIRST_FREE 6
#define CHILD_SRC_MIN    10 /* parent-side copies live above this */

/* An argv under construction; NULL-terminated at all times. */
struct argv {
	char **v;
	size_t n;
	size_t size;
};

static void
argv_add(struct argv *a, const char *s)
{
	if (a->n + 2 > a->size) {
		a->size = a->size == 0 ? 64 : a->size * 2;
		a->v = xrealloc(a->v, a->size * sizeof *a->v);
	}
	a->v[a->n++] = xstrdup(s);
	a->v[a->n] = NULL;
}

static void
argv_free(struct argv *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
	memset(a, 0, sizeof *a);
}

/* Finding bwrap. */

/*
 * bwrap's path: $ORCH_BWRAP (a test and diagnostic aid: it replaces the
 * search, it is not a fallback), else /usr/bin/bwrap, else the first
 * bwrap in PATH.
 */
static int
bwrap_find(char **path, char **cause)
{
	const char *env = getenv("ORCH_BWRAP"), *p;
	char *copy, *dir, *save = NULL;

	if (env != NULL && *env != '\0') {
		if (env[0] != '/') {
			*cause = xasprintf("ORCH_BWRAP=%s: bubblewrap path "
			                   "must be absolute",
			    env);
			return -1;
		}
		if (access(env, X_OK) == -1) {
			*cause = xasprintf("bubblewrap (bwrap) not usable at "
			                   "ORCH_BWRAP=%s: %s; unset "
			                   "ORCH_BWRAP or install bubblewrap "
			                   "(apt-get install bubblewrap)",
			    env, strerror(errno));
			return -1;
		}
		*path = xstrdup(env);
		return 0;
	}
	if (access("/usr/bin/bwrap", X_OK) == 0) {
		*path = xstrdup("/usr/bin/bwrap");
		return 0;
	}
	if ((p = getenv("PATH")) != NULL) {
		copy = xstrdup(p);
		for (dir = strtok_r(copy, ":", &save); dir != NULL;
		     dir = strtok_r(NULL, ":", &save)) {
			char *cand;

			if (dir[0] != '/')
				continue;
			cand = xasprintf("%s/bwrap", dir);
			if (access(cand, X_OK) == 0) {
				free(copy);
				*path = cand;
				return 0;
			}
			free(cand);
		}
		free(copy);
	}
	*cause = xasprintf("bubblewrap (bwrap) not found at /usr/bin/bwrap "
	                   "or in PATH: install it (apt-get install "
	                   "bubblewrap); commands are never run outside it");
	return -1;
}

/*
 * bwrap_find once per profile (it stats up to a PATH's worth of files),
 * again only when ORCH_BWRAP changed.
 */
static int
bwrap_cached(struct sandbox_cache *c, char **path, char **cause)
{
	const char *env = getenv("ORCH_BWRAP");

	if (env == NULL)
		env = "";
	if (c->bwrap != NULL && strcmp(c->bwrap_env, env) == 0) {
		*path = xstrdup(c->bwrap);
		return 0;
	}
	if (bwrap_find(path, cause) == -1)
		return -1;
	free(c->bwrap);
	free(c->bwrap_env);
	c->bwrap = xstrdup(*path);
	c->bwrap_env = xstrdup(env);
	return 0;
}

/*
 * Output capture: the first and the last half of SANDBOX_MAX_OUTPUT
 * (buf_init_capture).
 */

#define CAPTURE_HALF (SANDBOX_MAX_OUTPUT / 2)

/*
 * The kept output as one malloc'd string, NUL bytes as U+FFFD so that it
 * is a C string; *dropped what was left out.
 */
static char *
capture_string(struct buf *c, size_t *dropped)
{
	struct buf b;
	const char *p = buf_str(c);
	size_t n = c->len, start = 0;

	buf_init(&b);
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\0')
			continue;
		buf_add(&b, p + start, i - start);
		buf_adds(&b, "\xef\xbf\xbd");
		start = i + 1;
	}
	buf_add(&b, p + start, n - start);
	*dropped = buf_dropped(c);
	return b.buf;
}

/* Spawning and watching bwrap. */

struct spawn {
	pid_t pid;
	int out;       /* read end of the stdout+stderr pipe */
	int status;    /* read end of bwrap's --json-status-fd pipe */
	int block;     /* write end of bwrap's --block-fd pipe, or -1 */
	char st[4096]; /* what was read of the status so far */
	size_t stlen;
};

/* Move fd above CHILD_SRC_MIN, close-on-exec; -1 on failure. */
static int
fd_high(int fd)
{
	int nfd;

	if (fd == -1)
		return -1;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, CHILD_SRC_MIN);
	close(fd);
	return nfd;
}

/*
 * In the forked child: from here to execve only async-signal-safe calls
 * (the worker may have threads).  On failure the step and errno go to
 * errfd and the child exits.
 */
static void __attribute__((noreturn))
child_exec(const char *bwrap, char *const argv[], char *const envp[],
    const struct rlimit *rl, const int *rl_res, size_t nrl, int devnull,
    int out_w, int secfd, int status_w, int block_r, int errfd, pid_t parent)
{
	int report[2];

	/*
	 * Die with the worker even before bwrap's own --die-with-parent is in
	 * place, and never outlive a parent that is already gone.
	 */
	report[0] = 0;
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != parent)
		goto fail;
	/*
	 * It stays in the worker's process group, which the service kills
	 * when it reaps the worker.  That is what ends a sandbox's init that
	 * bwrap orphaned: bwrap killed (with its worker) between its clone and
	 * its child's own parent-death signal leaves the child waiting forever,
	 * outside the cgroups until sandbox_release would have moved it.
	 */
	report[0] = 1;
	if (child_signals_default() == -1)
		goto fail;

	/* The sources are all >= CHILD_SRC_MIN: no dup2 clobbers another. */
	report[0] = 2;
	if (dup2(devnull, 0) == -1 || dup2(out_w, 1) == -1 ||
	    dup2(out_w, 2) == -1 || dup2(status_w, CHILD_STATUS_FD) == -1)
		goto fail;
	if (secfd != -1 && dup2(secfd, CHILD_SECCOMP_FD) == -1)
		goto fail;
	if (block_r != -1 && dup2(block_r, CHILD_BLOCK_FD) == -1)
		goto fail;
	/*
	 * Everything else is close-on-exec (errfd must live until the exec);
	 * without CLOSE_RANGE_CLOEXEC (Linux < 5.11) mark them one by one.
	 */
	report[0] = 3;
	if (syscall(SYS_close_range, CHILD_FIRST_FREE, ~0U,
	        CLOSE_RANGE_CLOEXEC) == -1) {
		struct rlimit nofile;

		if (getrlimit(RLIMIT_NOFILE, &nofile) == -1)
			goto fail;
		for (rlim_t fd = CHILD_FIRST_FREE; fd < nofile.rlim_cur; fd++)
			(void)fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	}
	if (secfd == -1)
		(void)close(CHILD_SECCOMP_FD);
	if (block_r == -1)
		(void)close(CHILD_BLOCK_FD);

	/*
	 * Soft and hard limits, so the command cannot raise them again.  A
	 * hard limit already lower than the profile's is kept (an
	 * unprivileged process cannot raise it, and lower is stricter).
	 */
	report[0] = 4;
	for (size_t i = 0; i < nrl; i++) {
		struct rlimit cur, want = rl[i];

		if (getrlimit(rl_res[i], &cur) == -1)
			goto fail;
		if (cur.rlim_max != RLIM_INFINITY &&
		    want.rlim_max > cur.rlim_max)
			want.rlim_max = cur.rlim_max;
		if (want.rlim_cur > want.rlim_max)
			want.rlim_cur = want.rlim_max;
		if (setrlimit(rl_res[i], &want) == -1)
			goto fail;
	}

	report[0] = 5;
	execve(bwrap, argv, envp);
fail:
	report[1] = errno;
	(void)write(errfd, report, sizeof report);
	_exit(127);
}

static const char *const child_steps[] = {
    "parent death signal",
    "signal mask",
    "setting up descriptors",
    "closing descriptors",
    "setrlimit",
    "exec",
};

/*
 * Fork and exec bwrap with argv, the rlimits of p (if any) and the
 * seccomp fd (or -1), in the cgroups of cg (if any).  With p, bwrap
 * blocks (--block-fd) once the sandbox exists until sandbox_release.
 * bwrap's own environment is only BWRAP_ENV_PATH: the sandbox can read it
 * at /proc/1/environ (pid 1 is bwrap's init), so --clearenv alone would
 * still show it the worker's secrets.
 *
 * RLIMIT_NPROC is not set here but by sandbox_release: see there.
 */
static int
sandbox_spawn(const char *bwrap, struct argv *args,
    const struct sandbox_profile *p, int secfd, const struct cgroup_cmd *cg,
    struct spawn *sp, char **cause)
{
	char *const envp[] = {(char *)BWRAP_ENV_PATH, NULL};
	struct rlimit rl[NRLIMITS];
	int rl_res[NRLIMITS];
	size_t nrl = 0;
	int devnull = -1, outp[2] = {-1, -1}, stp[2] = {-1, -1};
	int errp[2] = {-1, -1}, blk[2] = {-1, -1}, report[2], saved, sec = -1;
	int cgerr = 0;
	sigset_t all, old;
	ssize_t n;
	pid_t pid, self = getpid();

	sp->pid = -1;
	sp->out = sp->status = sp->block = -1;
	sp->stlen = 0;
	sp->st[0] = '\0';
	for (size_t i = 0; p != NULL && i < NRLIMITS; i++) {
		if (rlimit_defs[i].resource == RLIMIT_NPROC)
			continue;
		rl_res[nrl] = rlimit_defs[i].resource;
		rl[nrl].rlim_cur = rl[nrl].rlim_max = p->rlimits[i];
		/*
		 * CPU: the hard limit one second above the soft one, so the
		 * command dies of SIGXCPU (which we can report) rather than
		 * of the SIGKILL the kernel sends at the hard limit; one that
		 * ignores SIGXCPU still gets that SIGKILL a second later.
		 */
		if (rlimit_defs[i].resource == RLIMIT_CPU)
			rl[nrl].rlim_max++;
		nrl++;
	}

	if ((devnull = fd_high(open("/dev/null", O_RDWR | O_CLOEXEC))) == -1) {
		*cause = xasprintf("/dev/null: %s", strerror(errno));
		goto fail;
	}
	if (pipe2(outp, O_CLOEXEC) == -1 || pipe2(stp, O_CLOEXEC) == -1 ||
	    pipe2(errp, O_CLOEXEC) == -1 ||
	    (p != NULL && pipe2(blk, O_CLOEXEC) == -1)) {
		*cause = xasprintf("pipe: %s", strerror(errno));
		goto fail;
	}
	if (p != NULL && ((blk[0] = fd_high(blk[0])) == -1 ||
	                     (blk[1] = fd_high(blk[1])) == -1)) {
		*cause = xasprintf("dup: %s", strerror(errno));
		goto fail;
	}
	outp[0] = fd_high(outp[0]);
	outp[1] = fd_high(outp[1]);
	stp[0] = fd_high(stp[0]);
	stp[1] = fd_high(stp[1]);
	errp[1] = fd_high(errp[1]);
	if (secfd != -1 &&
	    (sec = fcntl(secfd, F_DUPFD_CLOEXEC, CHILD_SRC_MIN)) == -1) {
		*cause = xasprintf("dup: %s", strerror(errno));
		goto fail;
	}
	if (outp[0] == -1 || outp[1] == -1 || stp[0] == -1 || stp[1] == -1 ||
	    errp[1] == -1) {
		*cause = xasprintf("dup: %s", strerror(errno));
		goto fail;
	}

	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = fork();
	if (pid == 0)
		child_exec(bwrap, args->v, envp, rl, rl_res, nrl, devnull,
		    outp[1], sec, stp[1], blk[0], errp[1], self);
	saved = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid == -1) {
		*cause = xasprintf("fork: %s", strerror(saved));
		goto fail;
	}
	/*
	 * Into the command's cgroups while it execs bwrap and bwrap makes
	 * its namespaces: a move into a cgroup waits for an RCU grace
	 * period (cgroup_threadgroup_rwsem), milliseconds that used to come
	 * before bwrap even started.  The sandbox's first process, which
	 * bwrap may have cloned before this move, is moved by
	 * sandbox_release, before anything of the command runs.
	 */
	for (int i = 0; cg != NULL && i < 2 && cgerr == 0; i++) {
		if (cg->procs[i] != -1 &&
		    dprintf(cg->procs[i], "%ld", (long)pid) < 0)
			cgerr = errno;
	}

	close(errp[1]);
	errp[1] = -1;
	do
		n = read(errp[0], report, sizeof report);
	while (n == -1 && errno == EINTR);
	if (n == (ssize_t)sizeof report) {
		int st;

		while (waitpid(pid, &st, 0) == -1 && errno == EINTR)
			;
		if (report[0] == 5)
			*cause = xasprintf("cannot run bubblewrap (%s): %s; "
			                   "install it (apt-get install "
			                   "bubblewrap)",
			    bwrap, strerror(report[1]));
		else
			*cause = xasprintf("starting bubblewrap: %s: %s",
			    child_steps[report[0]], strerror(report[1]));
		goto fail;
	}

	if (cgerr != 0) {
		int st;

		kill(pid, SIGKILL);
		while (waitpid(pid, &st, 0) == -1 && errno == EINTR)
			;
		*cause = xasprintf("starting bubblewrap: joining the "
		                   "cgroup: %s",
		    strerror(cgerr));
		goto fail;
	}

	close(outp[1]);
	close(stp[1]);
	close(errp[0]);
	close(devnull);
	if (sec != -1)
		close(sec);
	if (blk[0] != -1)
		close(blk[0]);
	sp->pid = pid;
	sp->out = outp[0];
	sp->status = stp[0];
	sp->block = blk[1];
	return 0;

fail:
	saved = errno;
	for (int i = 0; i < 2; i++) {
		if (outp[i] != -1)
			close(outp[i]);
		if (stp[i] != -1)
			close(stp[i]);
		if (errp[i] != -1)
			close(errp[i]);
		if (blk[i] != -1)
			close(blk[i]);
	}
	if (devnull != -1)
		close(devnull);
	if (sec != -1)
		close(sec);
	errno = saved;
	return -1;
}

/*
 * Read the output and reap bwrap, killing it when the wall clock runs
 * out: SIGTERM, then SIGKILL after SANDBOX_GRACE_MS.
 * Killing bwrap is enough to end everything inside: its init (pid 1 of
 * the sandbox's PID namespace) has a parent-death SIGKILL, and when a PID
 * namespace's init dies the kernel kills every other process in it,
 * daemons that double-forked and setsid'd included.
 */
static void
sandbox_watch(struct spawn *sp, uint64_t timeout_ms, void (*heartbeat)(void *),
    void *arg, struct buf *cap, int *status, int *timed_out)
{
	uint64_t start = now_ms(), deadline = start + timeout_ms;
	uint64_t kill_at = 0, drain_until = 0, last_hb = start;
	int pidfd, eof = 0, reaped = 0, termed = 0, killed = 0;
	char buf[16384];

	*timed_out = 0;
	*status = 0;
	pidfd = (int)syscall(SYS_pidfd_open, sp->pid, 0);
	if (heartbeat != NULL)
		heartbeat(arg);

	for (;;) {
		struct pollfd pfd[2];
		nfds_t nfd = 0;
		uint64_t now = now_ms(), next;
		int wait_ms;

		if (!reaped && !termed && now >= deadline) {
			*timed_out = 1;
			termed = 1;
			kill(sp->pid, SIGTERM);
			kill_at = now + SANDBOX_GRACE_MS;
		}
		if (!reaped && termed && !killed && now >= kill_at) {
			killed = 1;
			kill(sp->pid, SIGKILL);
		}
		if (reaped && (eof || now >= drain_until))
			break;
		if (heartbeat != NULL && now - last_hb >= 500) {
			heartbeat(arg);
			last_hb = now;
		}

		next = reaped ? drain_until
		              : (!termed ? deadline
		                         : (killed ? now + 1000 : kill_at));
		if (next > last_hb + 500)
			next = last_hb + 500;
		wait_ms = next > now ? (int)(next - now) : 0;
		if (pidfd == -1 && !reaped && wait_ms > 50)
			wait_ms = 50;

		if (!eof) {
			pfd[nfd].fd = sp->out;
			pfd[nfd++].events = POLLIN;
		}
		if (!reaped && pidfd != -1) {
			pfd[nfd].fd = pidfd;
			pfd[nfd++].events = POLLIN;
		}
		if (poll(pfd, nfd, wait_ms) == -1 && errno != EINTR)
			fatal("poll");

		if (!eof && pfd[0].revents != 0) {
			ssize_t n = read(sp->out, buf, sizeof buf);

			if (n > 0)
				buf_add(cap, buf, (size_t)n);
			else if (n == 0 || (errno != EINTR && errno != EAGAIN))
				eof = 1;
		}
		if (!reaped) {
			pid_t r = waitpid(sp->pid, status, WNOHANG);

			if (r == -1 && errno == ECHILD) {
				/*
				 * Someone else reaped it (a waitpid(-1) in
				 * the caller): the status is lost.
				 */
				*status = 255 << 8;
			}
			if (r == sp->pid || (r == -1 && errno == ECHILD)) {
				reaped = 1;
				drain_until = now_ms() + SANDBOX_DRAIN_MS;
			}
		}
	}
	if (pidfd != -1)
		close(pidfd);
}

/* Did bwrap get as far as creating the sandbox? */
static int
sandbox_started(struct spawn *sp)
{
	ssize_t n;

	fcntl(sp->status, F_SETFL, O_NONBLOCK);
	while (sp->stlen < sizeof sp->st - 1 &&
	       (n = read(sp->status, sp->st + sp->stlen,
	            sizeof sp->st - 1 - sp->stlen)) > 0)
		sp->stlen += (size_t)n;
	sp->st[sp->stlen] = '\0';
	return strstr(sp->st, "\"child-pid\"") != NULL;
}

/* The sandbox's first pid from bwrap's status so far, or -1. */
static long
status_child_pid(const struct spawn *sp)
{
	const char *p = strstr(sp->st, "\"child-pid\"");
	char *end;
	long pid;

	if (p == NULL)
		return -1;
	p += strlen("\"child-pid\"");
	p += strspn(p, " \t:");
	pid = strtol(p, &end, 10);
	/* The number must be whole: a non-digit after it. */
	if (end == p || *end == '\0' || pid <= 1)
		return -1;
	return pid;
}

/*
 * Between bwrap's creating the sandbox and its starting the command (it
 * waits on --block-fd): read the sandbox's first pid from the status, give
 * that process the command's RLIMIT_NPROC, let it go on.
 *
 * Why here and not before exec'ing bwrap: the kernel counts RLIMIT_NPROC
 * per user *and user namespace*, and checks each parent namespace's count
 * against the limit that namespace was created with.  Set before bwrap,
 * the host's level counts every process of the user against the command's
 * budget: a desktop session of 256 processes could start no sandbox, and
 * one command's fork storm would stop every other task's commands (bwrap:
 * Can't fork).  Set here, on the sandbox's first process, the budget
 * counts only the processes of the sandbox's own user namespace, and the
 * host's level keeps the user's own limit.  As root it binds nothing (the
 * kernel exempts uid 0): that is what the pids cgroup is for.
 *
 * On any failure the sandbox is killed before it is released, so that no
 * command runs without its limit.  0; or -1, with *cause unless bwrap
 * failed by itself (sandbox_started then tells).
 */
static int
sandbox_release(
    struct spawn *sp, const struct cgroup_cmd *cg, uint64_t nproc, char **cause)
{
	uint64_t deadline = now_ms() + SANDBOX_SETUP_MS;
	struct rlimit want, cur;
	long pid = -1;

	*cause = NULL;
	while ((pid = status_child_pid(sp)) == -1) {
		struct pollfd pfd;
		uint64_t now = now_ms();
		ssize_t n;

		if (now >= deadline) {
			*cause = xasprintf("bubblewrap did not set up the "
			                   "sandbox within %d s",
			    SANDBOX_SETUP_MS / 1000);
			goto fail;
		}
		pfd.fd = sp->status;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, (int)(deadline - now)) == -1) {
			if (errno == EINTR)
				continue;
			fatal("poll");
		}
		if (pfd.revents == 0)
			continue;
		n = read(sp->status, sp->st + sp->stlen,
		    sizeof sp->st - 1 - sp->stlen);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail; /* bwrap gave up: its message is the output
			            */
		sp->stlen += (size_t)n;
		sp->st[sp->stlen] = '\0';
		if (sp->stlen == sizeof sp->st - 1) {
			*cause = xasprintf("bubblewrap's status is too long");
			goto fail;
		}
	}

	/* bwrap is in the cgroups (sandbox_spawn); now the process that
	 * starts the command. */
	for (int i = 0; cg != NULL && i < 2; i++) {
		if (cg->procs[i] != -1 &&
		    dprintf(cg->procs[i], "%ld", pid) < 0) {
			*cause = xasprintf("moving the sandbox (pid %ld) into "
			                   "its cgroup: %s",
			    pid, strerror(errno));
			goto fail;
		}
	}
	want.rlim_cur = want.rlim_max = nproc;
	if (prlimit((pid_t)pid, RLIMIT_NPROC, NULL, &cur) == -1)
		goto fail_errno;
	if (cur.rlim_max != RLIM_INFINITY && want.rlim_max > cur.rlim_max)
		want.rlim_cur = want.rlim_max = cur.rlim_max;
	if (prlimit((pid_t)pid, RLIMIT_NPROC, &want, NULL) == -1)
		goto fail_errno;
	if (write(sp->block, "x", 1) != 1)
		goto fail_errno;
	close(sp->block);
	sp->block = -1;
	return 0;

fail_errno:
	*cause = xasprintf("setting the sandbox's process limit (pid %ld): %s",
	    pid, strerror(errno));
fail:
	kill(sp->pid, SIGKILL);
	close(sp->block);
	sp->block = -1;
	return -1;
}

/* At most max bytes of s on one line, for a cause. */
static char *
oneline(const char *s, size_t max)
{
	char *p = xstrndup(s, max);
	size_t n = strlen(p);

	while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == ' '))
		p[--n] = '\0';
	for (char *q = p; *q != '\0'; q++) {
		if ((unsigned char)*q < ' ')
			*q = ' ';
	}
	return p;
}

/* The flags every sandbox gets, sandbox_check's probe included. */
static void
argv_base(struct argv *a, const char *bwrap)
{
	argv_add(a, bwrap);
	argv_add(a, "--unshare-all");
	argv_add(a, "--unshare-user");
	argv_add(a, "--disable-userns");
	argv_add(a, "--die-with-parent");
	/* setsid(): no controlling terminal to push input into. */
	argv_add(a, "--new-session");
	/* Run as root, bwrap would keep capabilities in its namespace. */
	argv_add(a, "--cap-drop");
	argv_add(a, "ALL");
	argv_add(a, "--json-status-fd");
	argv_add(a, "4");
}

static void
argv_setenv(struct argv *a, const char *name, const char *value)
{
	argv_add(a, "--setenv");
	argv_add(a, name);
	argv_add(a, value);
}

/*
 * The bwrap command line for one run.  The workspace's .git is checked
 * here: see the comment at its mount.
 */
static int
argv_build(struct argv *a, const char *bwrap, const struct sandbox_profile *p,
    const char *ws, const char *etc, const char *command, char **cause)
{
	struct stat st;
	char *gitpath, size[32];
	int etc_done = 0;

	argv_base(a, bwrap);
	argv_add(a, "--hostname");
	argv_add(a, "sandbox");
	for (size_t i = 0; i < p->nmounts; i++) {
		const struct sandbox_mount *m = &p->mounts[i];

		/* The lines below /etc are in the one directory etc. */
		if (etc != NULL && etcdir_mount(m)) {
			if (!etc_done) {
				argv_add(a, "--ro-bind");
				argv_add(a, etc);
				argv_add(a, "/etc");
			}
			etc_done = 1;
			continue;
		}
		switch (m->kind) {
		case MOUNT_RO_BIND:
			argv_add(a, "--ro-bind");
			break;
		case MOUNT_RO_BIND_TRY:
			argv_add(a, "--ro-bind-try");
			break;
		case MOUNT_SYMLINK:
			argv_add(a, "--symlink");
			break;
		}
		argv_add(a, m->src);
		argv_add(a, m->dst);
	}
	argv_add(a, "--proc");
	argv_add(a, "/proc");
	/*
	 * Every writable tmpfs has a size (an unsized one may take half the
	 * host's memory).  bwrap's --dev is an unsized tmpfs holding the
	 * device nodes and an empty shm directory: a sized tmpfs goes over
	 * /dev/shm, and /dev itself is made read-only (the device nodes are
	 * bind mounts of their own and stay usable).
	 */
	argv_add(a, "--dev");
	argv_add(a, "/dev");
	snprintf(size, sizeof size, "%llu", (unsigned long long)p->shm_size);
	argv_add(a, "--size");
	argv_add(a, size);
	argv_add(a, "--tmpfs");
	argv_add(a, "/dev/shm");
	argv_add(a, "--remount-ro");
	argv_add(a, "/dev");
	snprintf(size, sizeof size, "%llu", (unsigned long long)p->tmpfs_size);
	argv_add(a, "--size");
	argv_add(a, size);
	argv_add(a, "--tmpfs");
	argv_add(a, "/tmp");
	argv_add(a, p->workspace_rw ? "--bind" : "--ro-bind");
	argv_add(a, ws);
	argv_add(a, SANDBOX_WORKSPACE);

	/*
	 * The repository's internals are never writable.  In a git worktree
	 * /workspace/.git is a file naming the real gitdir
	 * (REPO/.git/worktrees/NAME); in a plain checkout it is the directory
	 * itself.  Either way it is read-only bound over itself:
	 *  - the gitdir it names is not mounted in the sandbox, so git inside
	 *    finds no repository and cannot reach the real repository's
	 *    hooks, config or objects;
	 *  - as a mount point it cannot be rewritten, replaced, renamed or
	 *    removed (EBUSY), so the worker's own git, which runs in this
	 *    directory after the command, still follows the real gitdir and
	 *    not one the command planted with a core.fsmonitor or hooks.
	 * A ro bind rather than /dev/null keeps git's diagnostics honest
	 * ("not a git repository: ...") and works for a directory too.  A
	 * symlink is refused: it could point anywhere on the host.  Without a
	 * .git nothing is bound (bwrap would create one in the workspace).
	 */
	gitpath = xasprintf("%s/.git", ws);
	if (lstat(gitpath, &st) == 0) {
		char *dst;

		if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
			*cause = xasprintf("%s is not a file or directory: "
			                   "refusing to run",
			    gitpath);
			free(gitpath);
			return -1;
		}
		dst = xasprintf("%s/.git", SANDBOX_WORKSPACE);
		argv_add(a, "--ro-bind");
		argv_add(a, gitpath);
		argv_add(a, dst);
		free(dst);
	} else if (errno != ENOENT) {
		*cause = xasprintf("%s: %s", gitpath, strerror(errno));
		free(gitpath);
		return -1;
	}
	free(gitpath);

	/* The root (bwrap's own tmpfs) read-only: nothing but mounts on it. */
	argv_add(a, "--remount-ro");
	argv_add(a, "/");
	argv_add(a, "--chdir");
	argv_add(a, SANDBOX_WORKSPACE);
	/*
	 * Only the allowlist reaches the command.  HOME is /tmp, not the
	 * workspace: caches and dotfiles land in the tmpfs instead of the
	 * snapshot, and it is writable in the read-only stages too.
	 */
	argv_add(a, "--clearenv");
	argv_setenv(a, "PATH", SANDBOX_DEFAULT_PATH);
	argv_setenv(a, "HOME", "/tmp");
	argv_setenv(a, "LANG", "C.UTF-8");
	argv_setenv(a, "TERM", "dumb");
	for (size_t i = 0; i < p->nenv; i++) {
		const char *eq = strchr(p->env[i], '=');
		char *name = xstrndup(p->env[i], (size_t)(eq - p->env[i]));

		argv_setenv(a, name, eq + 1);
		free(name);
	}
	argv_add(a, "--seccomp");
	argv_add(a, "3");
	argv_add(a, "--block-fd");
	argv_add(a, "5");
	argv_add(a, "--");
	argv_add(a, "/bin/sh");
	argv_add(a, "-c");
	argv_add(a, command);
	return 0;
}

/*
 * What enforces the memory and process limits here; see cgroup.c.
 * ORCH_SANDBOX_CGROUP=none (a test and diagnostic aid, like ORCH_BWRAP)
 * takes the way without cgroups even where they are available.
 */
static void
limits_host(struct cgroup_host *h)
{
	const char *env = getenv("ORCH_SANDBOX_CGROUP");

	if (env != NULL && strcmp(env, "none") == 0) {
		memset(h, 0, sizeof *h);
		h->mode = CGROUP_NONE;
		h->what = xstrdup("ORCH_SANDBOX_CGROUP=none");
		return;
	}
	(void)cgroup_host_detect(
	    "/proc/self/cgroup", "/proc/self/mountinfo", h);
}

/*
 * limits_host for a run: detected once per profile (a process stays in
 * its cgroup), none while ORCH_SANDBOX_CGROUP=none.
 */
static const struct cgroup_host *
limits_cached(struct sandbox_cache *c)
{
	static const struct cgroup_host none = {
	    CGROUP_NONE, NULL, NULL, (char *)"ORCH_SANDBOX_CGROUP=none"};
	const char *env = getenv("ORCH_SANDBOX_CGROUP");

	if (env != NULL && strcmp(env, "none") == 0)
		return &none;
	if (!c->host_done) {
		limits_host(&c->host);
		c->host_done = 1;
	}
	return &c->host;
}

/*
 * The directory to bind at /etc in place of the profile's lines below it
 * (etcdir.c), or NULL: bind them one by one.  That happens without
 * ORCH_SANDBOX_CACHE (the supervisor sets it for its workers), with a
 * profile that binds /etc itself or nothing below it, and when the copy
 * cannot be made: that is logged, and not tried again with this profile
 * (a worker's stage: the next worker tries again).
 */
static char *
sandbox_etc(const struct sandbox_profile *p)
{
	const char *cache = getenv("ORCH_SANDBOX_CACHE");
	char *dir, *cause = NULL;
	size_t n = 0;

	if (cache == NULL || *cache == '\0')
		return NULL;
	for (size_t i = 0; i < p->nmounts; i++) {
		if (strcmp(p->mounts[i].dst, "/etc") == 0)
			return NULL;
		n += etcdir_mount(&p->mounts[i]) != 0;
	}
	if (n == 0 || p->cache->etc_failed)
		return NULL;
	if (etcdir_get(p, cache, &dir, &cause) == 0)
		return dir;
	log_warnx("sandbox: %s: cannot gather /etc into one directory (%s): "
	          "binding its %zu paths one by one",
	    p->file, cause, n);
	p->cache->etc_failed = 1;
	free(cause);
	return NULL;
}

int
sandbox_limits(char **what)
{
	struct cgroup_host h;
	int mode;

	limits_host(&h);
	mode = h.mode;
	if (mode == CGROUP_NONE)
		*what = xasprintf(
		    "no cgroup (%s): tmpfs sizes, no memfd_create or SysV shm, "
		    "a process limit per sandbox%s",
		    h.what,
		    geteuid() == 0 ? "; as root NO process limit holds" : "");
	else
		*what = xstrdup(h.what);
	cgroup_host_clear(&h);
	return mode;
}

void
sandbox_result_clear(struct sandbox_result *res)
{
	if (res == NULL)
		return;
	free(res->limit);
	free(res->output);
	memset(res, 0, sizeof *res);
}

int
sandbox_run(const struct sandbox_profile *p, const char *workspace,
    const char *command, unsigned timeout_s, void (*heartbeat)(void *),
    void *arg, struct sandbox_result *res, char **cause)
{
	struct argv a = {NULL, 0, 0};
	struct spawn sp;
	struct buf cap;
	const struct cgroup_host *host;
	struct cgroup_cmd cg;
	char *bwrap = NULL, *ws = NULL, *why = NULL, *etc = NULL;
	const char *hit;
	int secfd = -1, status, timed_out, rc = -1;
	uint64_t start;

	memset(res, 0, sizeof *res);
	memset(&cap, 0, sizeof cap);
	cgroup_cmd_init(&cg);
	if (timeout_s == 0) {
		*cause = xasprintf("sandbox: timeout must be at least 1 s");
		return -1;
	}
	if (bwrap_cached(p->cache, &bwrap, cause) == -1)
		return -1;
	if ((ws = realpath(workspace, NULL)) == NULL) {
		*cause =
		    xasprintf("workspace %s: %s", workspace, strerror(errno));
		goto out;
	}
	etc = sandbox_etc(p);
	if (argv_build(&a, bwrap, p, ws, etc, command, cause) == -1)
		goto out;
	host = limits_cached(p->cache);
	log_debug("sandbox: limits by %s", host->what);
	if (cgroup_cmd_create(host, p->memory, p->rlimits[RLIMIT_NPROC_IDX],
	        &cg, cause) == -1)
		goto out;
	if ((secfd = seccomp_memfd(
	         p->cache, host->mode == CGROUP_NONE, cause)) == -1)
		goto out;

	start = now_ms();
	if (sandbox_spawn(bwrap, &a, p, secfd, &cg, &sp, cause) == -1)
		goto out;
	buf_init_capture(&cap, CAPTURE_HALF, CAPTURE_HALF);
	(void)sandbox_release(&sp, &cg, p->rlimits[RLIMIT_NPROC_IDX], &why);
	sandbox_watch(&sp, (uint64_t)timeout_s * 1000, heartbeat, arg, &cap,
	    &status, &timed_out);

	if (why != NULL) {
		*cause = xasprintf("sandbox: %s", why);
		close(sp.out);
		close(sp.status);
		goto out;
	}
	if (!sandbox_started(&sp)) {
		size_t dropped;
		char *o = capture_string(&cap, &dropped), *line;

		line = oneline(o, 400);
		*cause = xasprintf("bubblewrap (%s) could not create the "
		                   "sandbox: %s; run sandbox_check for how to "
		                   "fix it",
		    bwrap, *line != '\0' ? line : "no message");
		free(line);
		free(o);
		close(sp.out);
		close(sp.status);
		goto out;
	}
	close(sp.out);
	close(sp.status);

	res->duration_ms = now_ms() - start;
	res->timed_out = timed_out;
	res->output = capture_string(&cap, &res->output_dropped);
	if (WIFEXITED(status)) {
		int code = WEXITSTATUS(status);

		res->exited = 1;
		res->exit_status = code;
		/*
		 * bwrap exits 128+N when the command died of signal N (as sh
		 * does), so that is all we can see.  Of the rlimits only cpu
		 * (SIGXCPU) and fsize (SIGXFSZ) announce themselves; as, nproc
		 * and nofile make a call fail (ENOMEM, EAGAIN, EMFILE) and the
		 * program reports that its own way, and core is silent.  A
		 * command that exits 152 or 153 by itself is misreported, which
		 * is harmless.
		 */
		if (!timed_out && code == 128 + SIGXCPU)
			res->limit = xstrdup("cpu");
		else if (!timed_out && code == 128 + SIGXFSZ)
			res->limit = xstrdup("fsize");
	} else if (WIFSIGNALED(status))
		res->signal = WTERMSIG(status);
	/* The cgroup's counters say when memory or pids stopped it. */
	if (res->limit == NULL && (hit = cgroup_cmd_limit(&cg, host->mode)))
		res->limit = xstrdup(hit);
	rc = 0;

out:
	cgroup_cmd_destroy(&cg);
	free(why);
	free(etc);
	if (secfd != -1)
		close(secfd);
	buf_free(&cap);
	argv_free(&a);
	free(ws);
	free(bwrap);
	return rc;
}

/* JSON. */

/*
 * The result as compact JSON, its keys in this order.  capture_string
 * already made NUL bytes U+FFFD; bytes that are not UTF-8 become U+FFFD
 * too (jansson takes valid UTF-8 only).
 */
char *
sandbox_result_json(const struct sandbox_result *res)
{
	json_t *o;
	char *text, *limit = NULL, *out;

	text = utf8_fix(res->output != NULL ? res->output : "", NULL);
	if (res->limit != NULL)
		limit = utf8_fix(res->limit, NULL);
	o = json_object();
	json_object_set_new(o, "exit_status",
	    res->exited ? json_integer(res->exit_status) : json_null());
	json_object_set_new(o, "signal",
	    res->signal != 0 ? json_integer(res->signal) : json_null());
	json_object_set_new(o, "timed_out", json_boolean(res->timed_out));
	json_object_set_new(
	    o, "limit", limit != NULL ? json_string(limit) : json_null());
	json_object_set_new(
	    o, "duration_ms", json_integer((json_int_t)res->duration_ms));
	json_object_set_new(o, "output", json_string(text));
	json_object_set_new(
	    o, "output_dropped", json_integer((json_int_t)res->output_dropped));
	if ((out = json_dumps(o, JSON_COMPACT)) == NULL)
		fatalx("sandbox_result_json: out of memory");
	json_decref(o);
	free(limit);
	free(text);
	return out;
}

/* The fail-closed probe. */

int
sandbox_check(char **cause)
{
	struct argv a = {NULL, 0, 0};
	struct spawn sp;
	struct buf cap;
	char *bwrap = NULL, *o, *line;
	size_t dropped;
	int status, timed_out, started, rc = -1;

	if (bwrap_find(&bwrap, cause) == -1)
		return -1;
	/* What every sandbox needs, on a read-only view of the host. */
	argv_base(&a, bwrap);
	argv_add(&a, "--ro-bind");
	argv_add(&a, "/");
	argv_add(&a, "/");
	argv_add(&a, "--proc");
	argv_add(&a, "/proc");
	argv_add(&a, "--dev");
	argv_add(&a, "/dev");
	argv_add(&a, "--");
	argv_add(&a, "true");
	if (sandbox_spawn(bwrap, &a, NULL, -1, NULL, &sp, cause) == -1)
		goto out;
	buf_init_capture(&cap, CAPTURE_HALF, CAPTURE_HALF);
	sandbox_watch(
	    &sp, SANDBOX_CHECK_S * 1000, NULL, NULL, &cap, &status, &timed_out);
	started = sandbox_started(&sp);
	close(sp.out);
	close(sp.status);
	o = capture_string(&cap, &dropped);
	buf_free(&cap);
	if (started && !timed_out && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0) {
		rc = 0;
		free(o);
		goto out;
	}
	line = oneline(o, 400);
	free(o);
	*cause = xasprintf("bubblewrap (%s) cannot create a sandbox%s%s%s. "
	                   "User namespaces are probably unavailable: check "
	                   "sysctl user.max_user_namespaces (must be > 0), "
	                   "kernel.unprivileged_userns_clone=1 (Debian "
	                   "kernels), and on Ubuntu 24.04 "
	                   "kernel.apparmor_restrict_unprivileged_userns=0 or "
	                   "an AppArmor profile granting bwrap userns; "
	                   "bubblewrap must be 0.8 or later (apt-get install "
	                   "bubblewrap)",
	    bwrap, timed_out ? " (timed out)" : "", *line != '\0' ? ": " : "",
	    line);
	free(line);
out:
	argv_free(&a);
	free(bwrap);
	return rc;
}
