/*
 * spawn.c: starting a program of ours (a worker, the model process) from
 * the service, the one way: vfork+exec, nothing inherited but what it is
 * given; and writing its frames to it.
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "common.h"
#include "proto.h"
#include "spawn.h"

static const char *const sanitizer_vars[] = {
    "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"};

/* What the child needs, made before it starts: it may not allocate. */
struct child_args {
	const char *path, *name;
	char **envp;
	char *fail; /* "NAME: cannot execute PATH: errno " */
	pid_t parent;
	int sock, out, devnull;
};

/* dup2, which leaves close-on-exec set when from is already to. */
static int
proc_move_fd(int from, int to)
{
	return from == to ? fcntl(to, F_SETFD, 0) : dup2(from, to);
}

/*
 * The child, sharing the supervisor's memory until execve: only
 * system calls, nothing that allocates or touches shared state.  It puts
 * itself in a process group of its own, asks to be killed with the
 * supervisor, forbids new privileges, keeps fds 0-3 only, and execs the
 * program with a small fixed environment (no secret reaches it this way:
 * the model process gets the API key in its first message).
 */
static void __attribute__((noreturn)) proc_child(const struct child_args *a)
{
	char *argv[] = {(char *)a->name, NULL}, num[16];
	size_t n = sizeof num;
	int e;

	(void)child_signals_default();

	setpgid(0, 0);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != a->parent)
		_exit(WORKER_EXIT_TEMP);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		_exit(WORKER_EXIT_TEMP);
	/* No core dumps of what it holds (the model process: the key). */
	prctl(PR_SET_DUMPABLE, 0);

	if (proc_move_fd(a->devnull, 0) == -1 ||
	    proc_move_fd(a->out, 1) == -1 || proc_move_fd(a->out, 2) == -1 ||
	    proc_move_fd(a->sock, 3) == -1)
		_exit(WORKER_EXIT_TEMP);
	if (close_range(4, ~0U, 0) == -1)
		_exit(WORKER_EXIT_TEMP);

	/* Objects the worker's git writes into the user's repository get
	 * the usual modes, not the supervisor's private umask. */
	umask(022);
	execve(a->path, argv, a->envp);
	e = errno;
	num[--n] = '\n';
	do
		num[--n] = (char)('0' + e % 10);
	while ((e /= 10) > 0 && n > 0);
	(void)!write(2, a->fail, strlen(a->fail));
	(void)!write(2, num + n, sizeof num - n);
	_exit(WORKER_EXIT_PERM);
}

/*
 * vfork, as glibc's posix_spawn does inside: the supervisor's page
 * tables are not copied for a child that only execs (fork's copy and
 * the copy-on-write faults after it were a fifth of the service's
 * CPU).  posix_spawn itself cannot set the parent-death signal or
 * no_new_privs.  The child makes system calls only (proc_child), and
 * signals stay blocked until it has reset every handler, so none of
 * ours runs in it.  (A clone on a stack of our own would do the same,
 * but AddressSanitizer does not follow a child onto such a stack;
 * it handles vfork.)
 */
static pid_t
proc_vfork(const struct child_args *ca, int *err)
{
	sigset_t all, old;
	pid_t pid;

	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = vfork(); // NOLINT(clang-analyzer-security.insecureAPI.vfork)
	if (pid == 0)
		proc_child(ca); // NOLINT(clang-analyzer-unix.Vfork)
	*err = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	return pid;
}

pid_t
proc_exec(const char *path, const char *name, int sock, int out,
    char *const *extra, char **cause)
{
	struct child_args ca = {
	    path, name, NULL, NULL, getpid(), sock, out == -1 ? 2 : out, -1};
	const char *home = getenv("HOME");
	size_t n = 0, nextra = 0;
	pid_t pid;
	int saved;

	if ((ca.devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) == -1) {
		*cause = xasprintf("/dev/null: %s", strerror(errno));
		return -1;
	}
	while (extra != NULL && extra[nextra] != NULL)
		nextra++;
	ca.envp =
	    xcalloc(3 + nitems(sanitizer_vars) + nextra + 1, sizeof *ca.envp);
	ca.envp[n++] = xstrdup("PATH=/usr/local/bin:/usr/bin:/bin");
	ca.envp[n++] = xstrdup("LANG=C.UTF-8");
	if (home != NULL)
		ca.envp[n++] = xasprintf("HOME=%s", home);
	/* A sanitizer build's settings (where its reports go) reach the
	 * child too; they are unset in production. */
	for (size_t i = 0; i < nitems(sanitizer_vars); i++) {
		const char *v = getenv(sanitizer_vars[i]);

		if (v != NULL)
			ca.envp[n++] = xasprintf("%s=%s", sanitizer_vars[i], v);
	}
	for (size_t i = 0; i < nextra; i++)
		ca.envp[n++] = xstrdup(extra[i]);
	ca.fail = xasprintf("%s: cannot execute %s: errno ", name, path);

	pid = proc_vfork(&ca, &saved);
	close(ca.devnull);
	for (size_t i = 0; i < n; i++)
		free(ca.envp[i]);
	free(ca.envp);
	free(ca.fail);
	if (pid == -1) {
		*cause = xasprintf("vfork: %s", strerror(saved));
		return -1;
	}
	setpgid(pid, pid); /* also here, so a kill right away finds it */
	return pid;
}

/*
 * Through the bufferevent alone, each frame cost an EV_WRITE added and
 * removed (two epoll_ctl) and a turn of the loop to write it: with a
 * thousand workers, several for every stage.  A socket whose buffer has
 * room takes the frame at once; an error is left to the bufferevent's own
 * write, which reports it as before.
 */
int
proc_write(
    struct bufferevent *bev, const struct proto_msg *m, const char **cause)
{
	uint8_t *buf;
	size_t len;
	ssize_t n = 0;

	if (proto_encode(m, &buf, &len, cause) == -1)
		return -1;
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		n = send(bufferevent_getfd(bev), buf, len,
		    MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0)
			n = 0;
	}
	if ((size_t)n < len)
		bufferevent_write(bev, buf + n, len - (size_t)n);
	free(buf);
	return 0;
}
