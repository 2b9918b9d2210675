/*
 * The task's git worktree and its snapshots.
 *
 * Every change to the user's repository goes through git itself, run with
 * an explicit argv (never a shell), a scrubbed environment, no hooks, no
 * fsmonitor and no automatic gc.  The only things this file ever changes in
 * the user's repository are the worktree's registration (in .git/worktrees),
 * the hidden refs refs/orch/... and the branches refs/heads/orch/...; the
 * user's HEAD, index, working tree and other branches are never touched.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "worker.h"

#define GIT_MAX_OUT     (1024 * 1024) /* bytes of stdout kept */
#define GIT_MAX_ERR     (64 * 1024)   /* bytes of stderr kept (the tail) */
#define GIT_MAX_ARGS    16            /* arguments after the subcommand */
#define DIFFSTAT_MAX    (64 * 1024)
#define CAUSE_ERR_LINES 3
#define CAUSE_ERR_BYTES 400

/* Captured output: the head (or, with tail set, the end) of a stream. */
struct capbuf {
	char *buf; /* NUL-terminated */
	size_t len;
	size_t size;
	size_t max;
	size_t total; /* bytes the stream carried, kept or not */
	int tail;
};

static void
capbuf_init(struct capbuf *b, size_t max, int tail)
{
	memset(b, 0, sizeof *b);
	b->max = max;
	b->tail = tail;
	b->size = 256;
	b->buf = xmalloc(b->size);
	b->buf[0] = '\0';
}

static void
capbuf_reserve(struct capbuf *b, size_t need)
{
	if (need + 1 <= b->size)
		return;
	while (b->size < need + 1)
		b->size *= 2;
	b->buf = xrealloc(b->buf, b->size);
}

static void
capbuf_add(struct capbuf *b, const char *data, size_t n)
{
	b->total += n;
	if (b->tail) {
		if (n >= b->max) {
			data += n - b->max;
			n = b->max;
			b->len = 0;
		} else if (b->len + n > b->max) {
			size_t drop = b->len + n - b->max;
			memmove(b->buf, b->buf + drop, b->len - drop);
			b->len -= drop;
		}
	} else if (n > b->max - b->len)
		n = b->max - b->len;
	capbuf_reserve(b, b->len + n);
	memcpy(b->buf + b->len, data, n);
	b->len += n;
	b->buf[b->len] = '\0';
}

/* The last few lines of git's stderr, joined into one line. */
static char *
err_tail(const struct capbuf *err)
{
	const char *s = err->buf;
	size_t end = err->len, start;
	int lines = 0;
	char *out;

	while (end > 0 && (s[end - 1] == '\n' || s[end - 1] == '\r' ||
	                      s[end - 1] == ' ' || s[end - 1] == '\t'))
		end--;
	if (end == 0)
		return xstrdup("(no output)");
	start = end;
	while (start > 0) {
		if (s[start - 1] == '\n' && ++lines == CAUSE_ERR_LINES)
			break;
		start--;
	}
	if (end - start > CAUSE_ERR_BYTES)
		start = end - CAUSE_ERR_BYTES;
	out = xstrndup(s + start, end - start);
	for (char *p = out; *p != '\0'; p++) {
		if (*p == '\n')
			*p = ';';
		else if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	}
	return out;
}

/* Move a descriptor above stderr so the child's dup2 calls cannot clash. */
static int
fd_above_stdio(int fd)
{
	int nfd;

	if (fd > STDERR_FILENO)
		return fd;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
	close(fd);
	return nfd;
}

static int
make_pipe(int p[2])
{
	if (pipe2(p, O_CLOEXEC) == -1)
		return -1;
	p[0] = fd_above_stdio(p[0]);
	p[1] = fd_above_stdio(p[1]);
	if (p[0] == -1 || p[1] == -1) {
		if (p[0] != -1)
			close(p[0]);
		if (p[1] != -1)
			close(p[1]);
		return -1;
	}
	return 0;
}

/* Runs in the forked child: only async-signal-safe calls. */
static void __attribute__((noreturn))
git_child(char *const argv[], char *const envp[], int out, int err)
{
	static const char msg[] = "orch: cannot execute git\n";
	struct sigaction sa;
	sigset_t none;
	int null;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	null = open("/dev/null", O_RDONLY);
	if (null == -1 || dup2(null, STDIN_FILENO) == -1 ||
	    dup2(out, STDOUT_FILENO) == -1 || dup2(err, STDERR_FILENO) == -1)
		_exit(127);
	if (close_range(STDERR_FILENO + 1, ~0U, 0) == -1) {
		for (int fd = STDERR_FILENO + 1; fd < 1024; fd++)
			close(fd);
	}
	execvpe("git", argv, envp);
	(void)!write(STDERR_FILENO, msg, sizeof msg - 1);
	_exit(127);
}

/*
 * Run `git -C dir ARGS...` and capture its output: up to outmax bytes of
 * stdout in *out (and how many bytes there were in out->total).  Returns 0
 * when git exits 0; otherwise -1 with *cause "git SUB failed (exit N): ..."
 * and *status the exit status (-1 when git did not run or was killed).
 */
static int
git_run(const char *dir, const char *const *args, size_t outmax,
    struct capbuf *out, int *status, char **cause)
{
	static const char *const fixed[] = {"git", "--no-pager", "-c",
	    "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c",
	    "gc.auto=0", "-c", "maintenance.auto=false", "-C"};
	const char *argv[nitems(fixed) + 1 + GIT_MAX_ARGS + 1];
	const char *path = getenv("PATH"), *home = getenv("HOME");
	char *envp[10], *sub;
	size_t argc = 0, envc = 0;
	struct capbuf err;
	int outp[2], errp[2], wstatus, rc = -1, saved;
	uint64_t started;
	pid_t pid;

	capbuf_init(out, outmax, 0);
	capbuf_init(&err, GIT_MAX_ERR, 1);
	if (status != NULL)
		*status = -1;

	for (size_t i = 0; i < nitems(fixed); i++)
		argv[argc++] = fixed[i];
	argv[argc++] = dir;
	for (size_t i = 0; args[i] != NULL; i++) {
		if (i == GIT_MAX_ARGS)
			fatalx("%s: too many git arguments", __func__);
		argv[argc++] = args[i];
	}
	argv[argc] = NULL;
	started = now_ms();
	if (strcmp(args[0], "worktree") == 0 && args[1] != NULL)
		sub = xasprintf("worktree %s", args[1]);
	else
		sub = xstrdup(args[0]);

	/*
	 * Nothing of the caller's environment reaches git but PATH and HOME:
	 * no GIT_DIR, GIT_INDEX_FILE or GIT_CONFIG_* that would point it
	 * elsewhere, and an identity so commits work with no user config.
	 */
	envp[envc++] = xasprintf(
	    "PATH=%s", path != NULL ? path : "/usr/local/bin:/usr/bin:/bin");
	if (home != NULL)
		envp[envc++] = xasprintf("HOME=%s", home);
	envp[envc++] = xstrdup("LANG=C.UTF-8");
	envp[envc++] = xstrdup("GIT_CONFIG_NOSYSTEM=1");
	envp[envc++] = xstrdup("GIT_TERMINAL_PROMPT=0");
	envp[envc++] = xstrdup("GIT_AUTHOR_NAME=orch-supervisor");
	envp[envc++] = xstrdup("GIT_AUTHOR_EMAIL=orch@localhost");
	envp[envc++] = xstrdup("GIT_COMMITTER_NAME=orch-supervisor");
	envp[envc++] = xstrdup("GIT_COMMITTER_EMAIL=orch@localhost");
	envp[envc] = NULL;

	if (make_pipe(outp) == -1) {
		*cause = xasprintf("git %s: pipe: %s", sub, strerror(errno));
		goto out;
	}
	if (make_pipe(errp) == -1) {
		saved = errno;
		close(outp[0]);
		close(outp[1]);
		*cause = xasprintf("git %s: pipe: %s", sub, strerror(saved));
		goto out;
	}
	pid = fork();
	if (pid == 0)
		git_child((char *const *)argv, envp, outp[1], errp[1]);
	saved = errno;
	close(outp[1]);
	close(errp[1]);
	if (pid == -1) {
		close(outp[0]);
		close(errp[0]);
		*cause = xasprintf("git %s: fork: %s", sub, strerror(saved));
		goto out;
	}

	{
		struct pollfd pfd[2] = {
		    {outp[0], POLLIN, 0}, {errp[0], POLLIN, 0}};
		struct capbuf *dst[2] = {out, &err};
		char buf[16384];
		int open_fds = 2;

		while (open_fds > 0) {
			if (poll(pfd, 2, -1) == -1) {
				if (errno == EINTR)
					continue;
				break;
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
					open_fds--;
					continue;
				}
				capbuf_add(dst[i], buf, (size_t)n);
			}
		}
		for (int i = 0; i < 2; i++) {
			if (pfd[i].fd != -1)
				close(pfd[i].fd);
		}
	}

	while (waitpid(pid, &wstatus, 0) == -1) {
		if (errno != EINTR) {
			*cause = xasprintf(
			    "git %s: waitpid: %s", sub, strerror(errno));
			goto out;
		}
	}
	log_debug("git %s in %s: status %d, %llu ms", sub, dir, wstatus,
	    (unsigned long long)(now_ms() - started));
	if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
		if (status != NULL)
			*status = 0;
		rc = 0;
	} else if (WIFEXITED(wstatus)) {
		char *tail = err_tail(&err);

		if (status != NULL)
			*status = WEXITSTATUS(wstatus);
		*cause = xasprintf("git %s failed (exit %d): %s", sub,
		    WEXITSTATUS(wstatus), tail);
		free(tail);
	} else {
		*cause = xasprintf("git %s killed by signal %d", sub,
		    WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0);
	}

out:
	for (size_t i = 0; i < envc; i++)
		free(envp[i]);
	free(err.buf);
	free(sub);
	return rc;
}

/* Run git and keep only the first line of its stdout (a hash, a path). */
static int
git_line(const char *dir, const char *const *args, char **line, int *status,
    char **cause)
{
	struct capbuf out;

	*line = NULL;
	if (git_run(dir, args, 64 * 1024, &out, status, cause) == -1) {
		free(out.buf);
		return -1;
	}
	out.buf[strcspn(out.buf, "\r\n")] = '\0';
	*line = out.buf;
	return 0;
}

static int
git_quiet(const char *dir, const char *const *args, char **cause)
{
	struct capbuf out;
	int rc;

	rc = git_run(dir, args, 4096, &out, NULL, cause);
	free(out.buf);
	return rc;
}

/*
 * Refuse a revision, ref or path that git could take for an option: these
 * come from the database and the model's surroundings, not from git.
 */
static int
check_arg(const char *what, const char *value, char **cause)
{
	if (value == NULL || *value == '\0') {
		*cause = xasprintf("%s is empty", what);
		return -1;
	}
	if (*value == '-') {
		*cause = xasprintf("%s \"%s\" starts with '-'", what, value);
		return -1;
	}
	for (const char *p = value; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			*cause = xasprintf("%s has a control character", what);
			return -1;
		}
	}
	return 0;
}

static int
is_hash(const char *s)
{
	size_t n = strspn(s, "0123456789abcdef");

	return s[n] == '\0' && (n == 40 || n == 64);
}

/* Resolve rev to the full hash of the object rev^{type}. */
static int
rev_parse(const char *dir, const char *rev, const char *type, char **hash,
    char **cause)
{
	char *spec = xasprintf("%s^{%s}", rev, type);
	const char *args[] = {"rev-parse", "-q", "--verify", spec, NULL};
	int rc, status;

	rc = git_line(dir, args, hash, &status, cause);
	free(spec);
	if (rc == 0 && !is_hash(*hash)) {
		*cause = xasprintf(
		    "git rev-parse %s^{%s}: unexpected output", rev, type);
		free(*hash);
		*hash = NULL;
		rc = -1;
	}
	if (rc == -1 && status == 1) {
		free(*cause);
		*cause = xasprintf("%s is not a %s in %s", rev, type, dir);
	}
	return rc;
}

/* dir made absolute, since git -C repo would resolve it from repo. */
static char *
abs_path(const char *dir)
{
	char cwd[PATH_MAX];

	if (dir[0] == '/' || getcwd(cwd, sizeof cwd) == NULL)
		return xstrdup(dir);
	return xasprintf("%s/%s", cwd, dir);
}

static int
mkdir_parents(const char *path, char **cause)
{
	char *copy = xstrdup(path);

	for (char *p = copy + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0700) == -1 && errno != EEXIST) {
			*cause =
			    xasprintf("mkdir %s: %s", copy, strerror(errno));
			free(copy);
			return -1;
		}
		*p = '/';
	}
	free(copy);
	return 0;
}

/* The first line of a small file (a path, a ref), or NULL. */
static char *
first_line(const char *path)
{
	char buf[PATH_MAX + 16];
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1)
		return NULL;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf[0] != '\0' ? xstrdup(buf) : NULL;
}

/* path resolved, relative ones from dir. */
static char *
resolve_from(const char *dir, const char *path)
{
	char *joined, *real;

	if (path[0] == '/')
		return realpath(path, NULL);
	joined = xasprintf("%s/%s", dir, path);
	real = realpath(joined, NULL);
	free(joined);
	return real;
}

/*
 * The administrative directory (.git/worktrees/NAME) of the linked worktree
 * whose top is dir, or NULL when dir is not one.  Read from the files git
 * keeps, without running it: dir/.git is a file naming the directory, and
 * that directory's gitdir file names dir/.git back and its HEAD exists.
 */
static char *
worktree_admin(const char *dir)
{
	char *gitfile, *line, *admin = NULL, *back = NULL, *p;
	char *real_gitfile = NULL, *real_back = NULL;
	struct stat st;

	gitfile = xasprintf("%s/.git", dir);
	if (lstat(gitfile, &st) == -1 || !S_ISREG(st.st_mode) ||
	    (line = first_line(gitfile)) == NULL) {
		free(gitfile);
		return NULL;
	}
	if (strncmp(line, "gitdir: ", 8) == 0)
		admin = resolve_from(dir, line + 8);
	free(line);
	if (admin != NULL) {
		p = xasprintf("%s/gitdir", admin);
		back = first_line(p);
		free(p);
		p = xasprintf("%s/HEAD", admin);
		if (back != NULL && lstat(p, &st) == 0 && S_ISREG(st.st_mode)) {
			real_back = resolve_from(admin, back);
			real_gitfile = realpath(gitfile, NULL);
		}
		free(p);
	}
	if (real_back == NULL || real_gitfile == NULL ||
	    strcmp(real_back, real_gitfile) != 0) {
		free(admin);
		admin = NULL;
	}
	free(gitfile);
	free(back);
	free(real_back);
	free(real_gitfile);
	return admin;
}

/* Whether dir is already the top of a linked worktree. */
static int
is_worktree(const char *dir)
{
	char *admin = worktree_admin(dir);

	free(admin);
	return admin != NULL;
}

/*
 * The repository's common directory (where refs live): read from the
 * files when repo/.git is a directory, or a file naming a directory; git
 * is asked otherwise (a bare repository, say).
 */
static char *
common_dir(const char *repo)
{
	const char *args[] = {
	    "rev-parse", "--path-format=absolute", "--git-common-dir", NULL};
	char *dotgit, *gitdir = NULL, *line, *common = NULL, *cause = NULL, *p;
	struct stat st;

	dotgit = xasprintf("%s/.git", repo);
	if (lstat(dotgit, &st) == -1)
		st.st_mode = 0;
	if (S_ISDIR(st.st_mode))
		gitdir = realpath(dotgit, NULL);
	else if (S_ISREG(st.st_mode) && (line = first_line(dotgit)) != NULL) {
		if (strncmp(line, "gitdir: ", 8) == 0)
			gitdir = resolve_from(repo, line + 8);
		free(line);
	}
	free(dotgit);
	if (gitdir != NULL) {
		p = xasprintf("%s/commondir", gitdir);
		line = first_line(p);
		free(p);
		common = line != NULL ? resolve_from(gitdir, line) : gitdir;
		if (common != gitdir)
			free(gitdir);
		free(line);
		if (common != NULL)
			return common;
	}
	if (git_line(repo, args, &common, NULL, &cause) == -1) {
		free(cause);
		return NULL;
	}
	return common;
}

/* Remove everything below the top directory, which stays: the worker's
 * Landlock rules were made on it. */
static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	if (ftw->level == 0)
		return 0;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) == -1 &&
	       errno != ENOENT;
}

/*
 * Empty what a killed `git worktree add` left: a directory that is not a
 * worktree (git then adds the worktree into the empty directory).  Only our
 * own task-N directories are ever touched.
 */
static int
remove_half_worktree(const char *dir, char **cause)
{
	const char *base = strrchr(dir, '/');

	base = base != NULL ? base + 1 : dir;
	if (strncmp(base, "task-", 5) != 0) {
		*cause = xasprintf("%s exists and is not a worktree; move it "
		                   "aside",
		    dir);
		return -1;
	}
	if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
		*cause = xasprintf("cannot remove the unfinished worktree %s: "
		                   "%s",
		    dir, strerror(errno));
		return -1;
	}
	return 0;
}

void
ws_unlock(
    const char *repo, const char *dir, const char *ref, const char *branch)
{
	char *admin, *common, *p;

	if ((admin = worktree_admin(dir)) != NULL) {
		p = xasprintf("%s/index.lock", admin);
		unlink(p);
		free(p);
		p = xasprintf("%s/HEAD.lock", admin);
		unlink(p);
		free(p);
		free(admin);
	}
	if ((common = common_dir(repo)) != NULL) {
		if (ref != NULL && strncmp(ref, "refs/orch/", 10) == 0 &&
		    strstr(ref, "..") == NULL) {
			p = xasprintf("%s/%s.lock", common, ref);
			unlink(p);
			free(p);
		}
		if (branch != NULL && strncmp(branch, "orch/", 5) == 0 &&
		    strstr(branch, "..") == NULL) {
			p = xasprintf("%s/refs/heads/%s.lock", common, branch);
			unlink(p);
			free(p);
		}
		free(common);
	}
}

int
ws_create(const char *repo, const char *dir, const char *commit, char **cause)
{
	struct stat st;
	char *absdir;
	int rc = -1;

	if (check_arg("commit", commit, cause) == -1 ||
	    check_arg("repository", repo, cause) == -1 ||
	    check_arg("worktree directory", dir, cause) == -1)
		return -1;
	if (lstat(dir, &st) == 0) {
		if (is_worktree(dir))
			return 0;
		if (remove_half_worktree(dir, cause) == -1)
			return -1;
	}

	absdir = abs_path(dir);
	if (mkdir_parents(absdir, cause) == 0) {
		/*
		 * --force only lets git reuse the path of a registration whose
		 * directory is gone (a crash between creating and recording);
		 * a non-empty directory is still refused.
		 */
		const char *args[] = {"worktree", "add", "--detach", "--force",
		    "--", absdir, commit, NULL};

		if ((rc = git_quiet(repo, args, cause)) == 0)
			rc = 1;
	}
	free(absdir);
	return rc;
}

int
ws_restore(const char *dir, const char *commit, char **cause)
{
	const char *reset[] = {"reset", "-q", "--hard", commit, "--", NULL};
	/*
	 * -ff also removes untracked nested repositories, which a plain -f
	 * leaves; -x is not given, so ignored files (build output) stay.
	 */
	const char *clean[] = {"clean", "-ffdq", NULL};

	if (check_arg("commit", commit, cause) == -1)
		return -1;
	if (git_quiet(dir, reset, cause) == -1)
		return -1;
	return git_quiet(dir, clean, cause);
}

int
ws_ref_get(const char *dir, const char *ref, char **commit, char **cause)
{
	char *spec, *line;
	const char *args[] = {"rev-parse", "-q", "--verify", NULL, NULL};
	int status, rc;

	*commit = NULL;
	if (check_arg("ref", ref, cause) == -1)
		return -1;
	spec = xasprintf("%s^{commit}", ref);
	args[3] = spec;
	rc = git_line(dir, args, &line, &status, cause);
	free(spec);
	if (rc == -1) {
		/* rev-parse -q --verify says "no such ref" with exit 1. */
		if (status == 1) {
			free(*cause);
			*cause = NULL;
			return 0;
		}
		return -1;
	}
	if (!is_hash(line)) {
		*cause = xasprintf("git rev-parse %s: unexpected output", ref);
		free(line);
		return -1;
	}
	*commit = line;
	return 0;
}

/* Point ref at new, provided it still points at old ("" = must not exist). */
static int
update_ref(const char *dir, const char *ref, const char *new, const char *old,
    char **cause)
{
	const char *args[] = {
	    "update-ref", "-m", "orch-supervisor", ref, new, old, NULL};

	return git_quiet(dir, args, cause);
}

static int
commit_tree(const char *dir, const char *tree, const char *parent,
    const char *message, char **commit, char **cause)
{
	const char *args[] = {"commit-tree", "--no-gpg-sign", tree, "-p",
	    parent, "-m", message, NULL};

	if (git_line(dir, args, commit, NULL, cause) == -1)
		return -1;
	if (!is_hash(*commit)) {
		*cause = xstrdup("git commit-tree: unexpected output");
		free(*commit);
		*commit = NULL;
		return -1;
	}
	return 0;
}

int
ws_snapshot(const char *dir, const char *ref, const char *parent,
    const char *message, char **commit, char **cause)
{
	const char *add[] = {"add", "-A", NULL};
	const char *write_tree[] = {"write-tree", NULL};
	char *old = NULL, *base = NULL, *tree = NULL, *base_tree = NULL;
	int rc = -1;

	*commit = NULL;
	if (check_arg("ref", ref, cause) == -1)
		return -1;
	if (strncmp(ref, "refs/orch/", 10) != 0) {
		*cause =
		    xasprintf("snapshot ref %s is not under refs/orch/", ref);
		return -1;
	}
	if (message == NULL)
		message = "";
	if (ws_ref_get(dir, ref, &old, cause) == -1)
		return -1;
	if (old != NULL)
		base = xstrdup(old);
	else if (parent == NULL) {
		*cause =
		    xasprintf("%s does not exist and there is no parent", ref);
		goto out;
	} else if (check_arg("parent", parent, cause) == -1 ||
	           rev_parse(dir, parent, "commit", &base, cause) == -1)
		goto out;

	/*
	 * The worktree's own index (in .git/worktrees/NAME, not the user's)
	 * does the staging: it keeps the stat cache between snapshots, and
	 * files that are tracked but match .gitignore stay in the tree.
	 */
	if (git_quiet(dir, add, cause) == -1 ||
	    git_line(dir, write_tree, &tree, NULL, cause) == -1 ||
	    rev_parse(dir, base, "tree", &base_tree, cause) == -1)
		goto out;
	if (!is_hash(tree)) {
		*cause = xstrdup("git write-tree: unexpected output");
		goto out;
	}

	if (strcmp(tree, base_tree) == 0) {
		/* Nothing changed; a new ref still starts at parent. */
		if (old == NULL && update_ref(dir, ref, base, "", cause) == -1)
			goto out;
		*commit = base;
		base = NULL;
		rc = 0;
		goto out;
	}
	if (commit_tree(dir, tree, base, message, commit, cause) == -1)
		goto out;
	/* The old value makes a concurrent move of ref fail, not vanish. */
	if (update_ref(dir, ref, *commit, old != NULL ? old : "", cause) ==
	    -1) {
		free(*commit);
		*commit = NULL;
		goto out;
	}
	rc = 0;
out:
	free(old);
	free(base);
	free(tree);
	free(base_tree);
	return rc;
}

int
ws_squash(const char *dir, const char *branch, const char *base,
    const char *commit, const char *message, char **result, char **cause)
{
	char *tree, *ref;
	int rc = -1;

	*result = NULL;
	if (check_arg("branch", branch, cause) == -1 ||
	    check_arg("base", base, cause) == -1 ||
	    check_arg("commit", commit, cause) == -1)
		return -1;
	if (strncmp(branch, "orch/", 5) != 0) {
		*cause = xasprintf("branch %s is not under orch/", branch);
		return -1;
	}
	if (message == NULL)
		message = "";
	/* commit-tree itself checks that base is a commit. */
	ref = xasprintf("refs/heads/%s", branch);
	tree = xasprintf("%s^{tree}", commit);
	if (commit_tree(dir, tree, base, message, result, cause) == 0) {
		if ((rc = update_ref(dir, ref, *result, NULL, cause)) == -1) {
			free(*result);
			*result = NULL;
		}
	}
	free(ref);
	free(tree);
	return rc;
}

/*
 * Run a diff and cut its output at max bytes, at the last line break before
 * that when there is one, with a note saying how much was left out.
 */
static int
diff_cut(const char *dir, const char *const *args, size_t max, const char *what,
    char **out, char **cause)
{
	struct capbuf cb;
	size_t keep;

	*out = NULL;
	if (git_run(dir, args, max, &cb, NULL, cause) == -1) {
		free(cb.buf);
		return -1;
	}
	if (cb.total <= max) {
		*out = cb.buf;
		return 0;
	}
	keep = cb.len;
	while (keep > 0 && cb.buf[keep - 1] != '\n')
		keep--;
	if (keep == 0)
		keep = cb.len;
	*out = xasprintf("%.*s\n[... %zu bytes of the %s left out ...]\n",
	    (int)keep, cb.buf, cb.total - keep, what);
	free(cb.buf);
	return 0;
}

int
ws_diffstat(const char *dir, const char *base, const char *commit, char **out,
    char **cause)
{
	const char *args[] = {"diff", "--no-color", "--no-ext-diff",
	    "--no-textconv", "--stat", base, commit, "--", NULL};

	*out = NULL;
	if (check_arg("base", base, cause) == -1 ||
	    check_arg("commit", commit, cause) == -1)
		return -1;
	return diff_cut(dir, args, DIFFSTAT_MAX, "diffstat", out, cause);
}

int
ws_diff(const char *dir, const char *base, const char *commit, size_t max,
    char **out, char **cause)
{
	const char *args[] = {"diff", "--no-color", "--no-ext-diff",
	    "--no-textconv", base, commit, "--", NULL};

	*out = NULL;
	if (check_arg("base", base, cause) == -1 ||
	    check_arg("commit", commit, cause) == -1)
		return -1;
	if (max > INT_MAX)
		max = INT_MAX;
	return diff_cut(dir, args, max, "diff", out, cause);
}

int
ws_remove(const char *repo, const char *dir, char **cause)
{
	struct stat st;
	char *absdir;
	int rc;

	if (check_arg("repository", repo, cause) == -1 ||
	    check_arg("worktree directory", dir, cause) == -1)
		return -1;
	absdir = abs_path(dir);
	if (lstat(absdir, &st) == 0) {
		const char *args[] = {
		    "worktree", "remove", "--force", absdir, NULL};

		rc = git_quiet(repo, args, cause);
	} else if (errno == ENOENT) {
		/*
		 * The directory is gone but may still be registered.  Prune
		 * only then: a prune also drops the registration of any of
		 * the user's own worktrees whose directory is missing (on an
		 * unmounted disk, say), so it is not run on every removal.
		 */
		const char *args[] = {"worktree", "prune", NULL};

		rc = git_quiet(repo, args, cause);
	} else {
		*cause = xasprintf("%s: %s", absdir, strerror(errno));
		rc = -1;
	}
	free(absdir);
	return rc;
}
