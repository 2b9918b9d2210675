/*
 * Worker processes: started with fork+exec (after tmux's job.c), each in its
 * own process group with only its socketpair (fd 3) and a stderr pipe; read
 * through a bufferevent whose buffer is bounded by the largest frame; reaped
 * through a pidfd of its own (or, on a kernel without pidfds, by the SIGCHLD
 * handler); handed to its owner's on_exit when both reaped and at EOF.
 * proc.c knows nothing of its owner: it calls back, never up.
 */
#include <sys/queue.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common.h"
#include "config.h"
#include "proc.h"
#include "spawn.h"
#include "sandbox.h"
#include "store.h"

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                             \
	for ((var) = TAILQ_FIRST(head);                                        \
	     (var) != NULL && ((tvar) = TAILQ_NEXT(var, field), 1);            \
	     (var) = (tvar))
#endif

/*
 * Two things end a worker, in either order: its process (reaped) and its
 * stream (EOF, or we stop reading it).  on_exit is due once both have.
 */
enum worker_state {
	WORKER_RUNNING, /* alive, its messages read */
	WORKER_EXITED,  /* reaped; what it wrote before it died still read */
	WORKER_CLOSED,  /* its stream closed; not yet reaped */
	WORKER_ENDED,   /* reaped and closed: on_exit is due */
	WORKER_GONE,    /* on_exit has run; its owner frees it */
};

struct worker {
	enum worker_state state;
	pid_t pid;
	int64_t task;
	char stage[16];
	int64_t run;
	const struct proc_cbs *cbs;
	void *arg;
	struct bufferevent *bev;
	int errfd;
	struct event *errev;
	int pidfd; /* -1 without pidfds: the SIGCHLD handler reaps it */
	struct event *pidev;
	char errtail[2048]; /* last bytes of its stderr */
	size_t errlen;
	uint64_t last_seen_ms;
	uint64_t reaped_ms;
	int status;    /* wait status once reaped */
	char *failure; /* why we killed it */
	TAILQ_ENTRY(worker) entry;
	LIST_ENTRY(worker) hentry;   /* in proc_by_task */
	TAILQ_ENTRY(worker) gcentry; /* in proc_ended while ENDED */
};
TAILQ_HEAD(workers, worker);

static struct workers workers = TAILQ_HEAD_INITIALIZER(workers);
/*
 * Workers by task, and their count: the scheduler asks both for every task
 * it looks at, and with a thousand workers a walk of the list per question
 * was most of the cost of filling the slots.
 */
#define PROC_HASH 1024
static LIST_HEAD(proc_bucket, worker) proc_by_task[PROC_HASH];
static unsigned proc_n;

static struct proc_bucket *
proc_bucket(int64_t task)
{
	return &proc_by_task[(uint64_t)task % PROC_HASH];
}
static struct event *proc_gc_ev;
/* The ENDED workers, whose on_exit is due: proc_gc runs them without a
 * walk of every worker (a thousand, as each of them ends). */
static struct workers proc_ended = TAILQ_HEAD_INITIALIZER(proc_ended);

/*
 * Whether workers are reaped by pidfd.  waitpid(-1) looks at every child
 * of ours in each call, twice per worker that ends: with a thousand
 * workers that was a tenth of the service's CPU.  A pidfd is woken for its
 * own process alone.  Kernels before 5.4 have none: the SIGCHLD loop.
 */
static int proc_pidfds;
static void proc_pidfd_cb(evutil_socket_t, short, void *);

static int
proc_is_reaped(const struct worker *w)
{
	return w->state == WORKER_EXITED || w->state == WORKER_ENDED ||
	       w->state == WORKER_GONE;
}

/* Whether its stream is still read. */
static int
proc_is_open(const struct worker *w)
{
	return w->state == WORKER_RUNNING || w->state == WORKER_EXITED;
}

/*
 * Workers are finished from a deferred event, never from inside one of
 * their own callbacks, so no callback runs on a freed worker.
 */
static void
proc_gc(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w, *tmp;

	(void)fd;
	(void)what;
	(void)arg;
	TAILQ_FOREACH_SAFE(w, &proc_ended, gcentry, tmp) {
		TAILQ_REMOVE(&proc_ended, w, gcentry);
		w->state = WORKER_GONE;
		w->cbs->on_exit(w, w->arg);
	}
}

/*
 * Where workers make their commands' cgroups: after a worker is reaped,
 * what its sandboxes left there is killed (see cgroup_host_sweep).
 */
static struct cgroup_host proc_cg;

/* pidfd_open and waitid(P_PIDFD) both answer (Linux 5.4 on). */
static int
proc_pidfd_works(void)
{
	siginfo_t si;
	int fd = (int)syscall(SYS_pidfd_open, getpid(), 0), works;

	if (fd == -1)
		return 0;
	/* Not our child: ECHILD, where a kernel without P_PIDFD says
	 * EINVAL. */
	memset(&si, 0, sizeof si);
	works = waitid(P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG) == -1 &&
	        errno == ECHILD;
	close(fd);
	return works;
}

void
proc_init(struct event_base *base)
{
	proc_gc_ev = event_new(base, -1, 0, proc_gc, NULL);
	proc_pidfds = proc_pidfd_works();
	/* Without cgroups there is nothing to sweep (mode CGROUP_NONE). */
	(void)cgroup_host_detect(
	    "/proc/self/cgroup", "/proc/self/mountinfo", &proc_cg);
	/* A service killed with its workers left their groups behind. */
	(void)cgroup_host_sweep(&proc_cg);
}

void
proc_fini(void)
{
	if (proc_gc_ev != NULL)
		event_free(proc_gc_ev);
	proc_gc_ev = NULL;
	cgroup_host_clear(&proc_cg);
}

char *
proc_describe(int status)
{
	if (WIFEXITED(status)) {
		switch (WEXITSTATUS(status)) {
		case WORKER_EXIT_PERM:
			return xstrdup("gave up (exit status 100)");
		case WORKER_EXIT_TEMP:
			return xstrdup("failed temporarily (exit status 111)");
		default:
			return xasprintf(
			    "exited with status %d", WEXITSTATUS(status));
		}
	}
	if (WIFSIGNALED(status))
		return xasprintf("killed by signal %d (%s)%s", WTERMSIG(status),
		    strsignal(WTERMSIG(status)),
		    WCOREDUMP(status) ? ", core dumped" : "");
	return xasprintf("ended with wait status %#x", status);
}

static void
proc_read_cb(struct bufferevent *bev, void *arg)
{
	struct worker *w = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (proc_is_open(w)) {
		uint8_t hdr[PROTO_HDR_LEN];
		uint32_t len;
		const char *cause;
		struct proto_msg m;

		if (evbuffer_get_length(in) < PROTO_HDR_LEN)
			return;
		evbuffer_copyout(in, hdr, sizeof hdr);
		if (proto_frame_len(hdr, &len, &cause) == -1) {
			char *why = xasprintf("protocol error: %s", cause);
			proc_kill(w, why);
			free(why);
			return;
		}
		if (evbuffer_get_length(in) < PROTO_HDR_LEN + (size_t)len)
			return;
		uint8_t *buf = evbuffer_pullup(in, PROTO_HDR_LEN + len);
		if (proto_decode(buf + PROTO_HDR_LEN, len, &m, &cause) == -1) {
			char *why = xasprintf("protocol error: %s", cause);
			evbuffer_drain(in, PROTO_HDR_LEN + len);
			proc_kill(w, why);
			free(why);
			return;
		}
		evbuffer_drain(in, PROTO_HDR_LEN + len);
		w->last_seen_ms = now_ms();
		if (proto_catalog[m.type].dir != PROTO_W2S) {
			char *why = xasprintf("protocol error: %s is not a "
			                      "worker's message",
			    proto_type_name(m.type));
			proto_msg_clear(&m);
			proc_kill(w, why);
			free(why);
			return;
		}
		w->cbs->on_msg(w, &m, w->arg);
		proto_msg_clear(&m);
	}
}

/* Called where a worker's state became ENDED (once: it never goes back). */
static void
proc_finish_if_done(struct worker *w)
{
	if (w->state != WORKER_ENDED)
		return;
	TAILQ_INSERT_TAIL(&proc_ended, w, gcentry);
	event_active(proc_gc_ev, 0, 0);
}

/* Stop reading the worker's stream: it ended, or nothing it says counts. */
static void
proc_close(struct worker *w)
{
	bufferevent_disable(w->bev, EV_READ | EV_WRITE);
	if (w->state == WORKER_RUNNING)
		w->state = WORKER_CLOSED;
	else if (w->state == WORKER_EXITED) {
		w->state = WORKER_ENDED;
		proc_finish_if_done(w);
	}
}

static void
proc_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct worker *w = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (w->failure == NULL &&
		    evbuffer_get_length(bufferevent_get_input(bev)) > 0)
			w->failure = xstrdup("protocol error: the stream ended "
			                     "inside a frame");
		proc_close(w);
	}
}

/* Keep the last bytes of the worker's stderr for error_details. */
static void
proc_stderr_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	char buf[4096];
	ssize_t n;

	(void)what;
	n = read(fd, buf, sizeof buf);
	if (n <= 0) {
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		event_del(w->errev);
		return;
	}
	/* Also pass it on to our own stderr, so the service log has it. */
	(void)write_all(STDERR_FILENO, buf, (size_t)n);
	if ((size_t)n >= sizeof w->errtail) {
		memcpy(
		    w->errtail, buf + n - sizeof w->errtail, sizeof w->errtail);
		w->errlen = sizeof w->errtail;
		return;
	}
	if (w->errlen + (size_t)n > sizeof w->errtail) {
		size_t drop = w->errlen + (size_t)n - sizeof w->errtail;
		memmove(w->errtail, w->errtail + drop, w->errlen - drop);
		w->errlen -= drop;
	}
	memcpy(w->errtail + w->errlen, buf, (size_t)n);
	w->errlen += (size_t)n;
}

struct worker *
proc_spawn(struct event_base *base, int64_t task, const char *stage,
    int64_t run, const struct proc_cbs *cbs, void *arg, char **cause)
{
	char *extra[2 + GIT_NETWORK_ENV_MAX];
	int sp[2], ep[2], pidfd = -1;
	size_t n = 0;
	pid_t pid;
	struct worker *w;
	const char *path = config_worker_path();

	if (access(path, X_OK) == -1) {
		*cause = xasprintf("worker program %s: %s (set "
		                   "ORCH_WORKER_PATH or reinstall)",
		    path, strerror(errno));
		return NULL;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == -1) {
		*cause = xasprintf("socketpair: %s", strerror(errno));
		return NULL;
	}
	if (pipe2(ep, O_CLOEXEC) == -1) {
		*cause = xasprintf("pipe: %s", strerror(errno));
		close(sp[0]);
		close(sp[1]);
		return NULL;
	}
	/*
	 * Where the sandbox keeps what it builds once and reuses (the
	 * profiles' /etc as one directory: worker/etcdir.c): the state
	 * directory, which no sandbox can see.
	 */
	if (cfg.state_dir != NULL)
		extra[n++] =
		    xasprintf("ORCH_SANDBOX_CACHE=%s/sandbox", cfg.state_dir);
	/*
	 * The node's ssh agent and ssh command: the worker's git
	 * fetches and pushes an origin with them (git_env gives them to
	 * those commands only; the sandbox's environment is built from
	 * nothing).
	 */
	for (size_t i = 0; git_network_env[i] != NULL; i++) {
		const char *v = getenv(git_network_env[i]);

		if (v != NULL)
			extra[n++] = xasprintf("%s=%s", git_network_env[i], v);
	}
	extra[n] = NULL;
	pid = proc_exec(path, "orch-worker", sp[1], ep[1], extra, cause);
	for (size_t i = 0; i < n; i++)
		free(extra[i]);
	close(sp[1]);
	close(ep[1]);
	if (pid == -1) {
		close(sp[0]);
		close(ep[0]);
		return NULL;
	}
	if (proc_pidfds &&
	    (pidfd = (int)syscall(SYS_pidfd_open, pid, 0)) == -1) {
		*cause = xasprintf("pidfd_open: %s", strerror(errno));
		kill(-pid, SIGKILL);
		while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
			;
		close(sp[0]);
		close(ep[0]);
		return NULL;
	}

	w = xcalloc(1, sizeof *w);
	w->state = WORKER_RUNNING;
	w->pid = pid;
	w->task = task;
	snprintf(w->stage, sizeof w->stage, "%s", stage);
	w->run = run;
	w->cbs = cbs;
	w->arg = arg;
	w->last_seen_ms = now_ms();
	w->errfd = ep[0];
	evutil_make_socket_nonblocking(sp[0]);
	evutil_make_socket_nonblocking(ep[0]);
	w->bev = bufferevent_socket_new(base, sp[0], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(w->bev, proc_read_cb, NULL, proc_event_cb, w);
	/* Never buffer more than one whole frame of a worker. */
	bufferevent_setwatermark(
	    w->bev, EV_READ, 0, PROTO_MAX_FRAME + PROTO_HDR_LEN);
	bufferevent_enable(w->bev, EV_READ | EV_WRITE);
	w->errev =
	    event_new(base, ep[0], EV_READ | EV_PERSIST, proc_stderr_cb, w);
	event_add(w->errev, NULL);
	w->pidfd = pidfd;
	if (pidfd != -1) {
		w->pidev = event_new(base, pidfd, EV_READ, proc_pidfd_cb, w);
		event_add(w->pidev, NULL);
	}
	TAILQ_INSERT_TAIL(&workers, w, entry);
	LIST_INSERT_HEAD(proc_bucket(task), w, hentry);
	proc_n++;
	return w;
}

int
proc_send(struct worker *w, const struct proto_msg *m)
{
	const char *cause;

	if (!proc_is_open(w))
		return -1;
	if (proc_write(w->bev, m, &cause) == -1) {
		log_warnx("encode %s for worker %d: %s",
		    proto_type_name(m->type), (int)w->pid, cause);
		return -1;
	}
	return 0;
}

void
proc_kill(struct worker *w, const char *reason)
{
	if (reason != NULL && w->failure == NULL)
		w->failure = xstrdup(reason);
	if (!proc_is_reaped(w))
		kill(-w->pid, SIGKILL);
	/* Stop reading: nothing it says from now on counts. */
	proc_close(w);
}

/* The wait status waitpid would have given for waitid's answer. */
static int
proc_wstatus(const siginfo_t *si)
{
	switch (si->si_code) {
	case CLD_EXITED:
		return (si->si_status & 0xff) << 8;
	case CLD_DUMPED:
		return (si->si_status & 0x7f) | 0x80;
	default:
		return si->si_status & 0x7f;
	}
}

/* w was reaped with status; 1 when its end was not a clean exit. */
static int
proc_ended_with(struct worker *w, int status)
{
	w->state = w->state == WORKER_CLOSED ? WORKER_ENDED : WORKER_EXITED;
	w->reaped_ms = now_ms();
	w->status = status;
	if (w->pidev != NULL)
		event_del(w->pidev);
	/* Anything it left behind in its group goes too.  What it wrote
	 * before it died still arrives, before the EOF. */
	kill(-w->pid, SIGKILL);
	proc_finish_if_done(w);
	/* A worker that ended well removed its commands' groups. */
	return !WIFEXITED(status) || WEXITSTATUS(status) != 0;
}

/* Reap w by its pidfd if it has ended: 1 when it had and ended badly. */
static int
proc_reap_pidfd(struct worker *w)
{
	siginfo_t si;

	memset(&si, 0, sizeof si);
	if (waitid(P_PIDFD, (id_t)w->pidfd, &si, WEXITED | WNOHANG) == -1 ||
	    si.si_pid == 0)
		return 0;
	return proc_ended_with(w, proc_wstatus(&si));
}

static void
proc_pidfd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	/* Its sandboxes are in process groups of their own: by cgroup. */
	if (!proc_is_reaped(w) && proc_reap_pidfd(w))
		(void)cgroup_host_sweep(&proc_cg);
}

void
proc_reap(void)
{
	struct worker *w;
	pid_t pid;
	int status, sweep = 0;

	if (proc_pidfds) {
		/* Asked outside the pidfds' events (workers stopped at
		 * once): each of them, now. */
		TAILQ_FOREACH(w, &workers, entry) {
			if (!proc_is_reaped(w))
				sweep |= proc_reap_pidfd(w);
		}
	} else {
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			TAILQ_FOREACH(w, &workers, entry) {
				if (w->pid == pid && !proc_is_reaped(w))
					break;
			}
			if (w != NULL)
				sweep |= proc_ended_with(w, status);
		}
	}
	if (sweep)
		(void)cgroup_host_sweep(&proc_cg);
}

void
proc_sigchld(void)
{
	if (!proc_pidfds)
		proc_reap();
}

/*
 * Kill workers silent for longer than timeout_ms, and finish the reaped ones
 * whose socket never reached EOF (a grandchild holding it open).
 */
void
proc_watchdog(uint64_t timeout_ms)
{
	struct worker *w, *tmp;
	uint64_t now = now_ms();

	TAILQ_FOREACH_SAFE(w, &workers, entry, tmp) {
		if (w->state == WORKER_EXITED && now - w->reaped_ms > 2000) {
			proc_close(w);
			continue;
		}
		if (w->state == WORKER_RUNNING &&
		    now - w->last_seen_ms > timeout_ms) {
			char *why = xasprintf("no heartbeat for %llu s",
			    (unsigned long long)((now - w->last_seen_ms) /
			                         1000));
			proc_kill(w, why);
			free(why);
		}
	}
}

struct worker *
proc_find_task(int64_t task)
{
	struct worker *w;

	LIST_FOREACH(w, proc_bucket(task), hentry) {
		if (w->task == task)
			return w;
	}
	return NULL;
}

struct worker *
proc_next(struct worker *w)
{
	return w == NULL ? TAILQ_FIRST(&workers) : TAILQ_NEXT(w, entry);
}

unsigned
proc_count(void)
{
	return proc_n;
}

void
proc_free(struct worker *w)
{
	if (w == NULL)
		return;
	TAILQ_REMOVE(&workers, w, entry);
	LIST_REMOVE(w, hentry);
	if (w->state == WORKER_ENDED)
		TAILQ_REMOVE(&proc_ended, w, gcentry);
	proc_n--;
	bufferevent_free(w->bev);
	event_free(w->errev);
	close(w->errfd);
	if (w->pidev != NULL)
		event_free(w->pidev);
	if (w->pidfd != -1)
		close(w->pidfd);
	free(w->failure);
	if (w->cbs->on_free != NULL)
		w->cbs->on_free(w->arg);
	free(w);
}

void
proc_free_all(void)
{
	struct worker *w, *tmp;

	TAILQ_FOREACH_SAFE(w, &workers, entry, tmp) {
		if (!proc_is_reaped(w)) {
			kill(-w->pid, SIGKILL);
			while (waitpid(w->pid, NULL, 0) == -1 && errno == EINTR)
				;
		}
		proc_free(w);
	}
}

pid_t
proc_pid(const struct worker *w)
{
	return w->pid;
}

int64_t
proc_task(const struct worker *w)
{
	return w->task;
}

const char *
proc_stage(const struct worker *w)
{
	return w->stage;
}

int64_t
proc_run(const struct worker *w)
{
	return w->run;
}

void *
proc_arg(const struct worker *w)
{
	return w->arg;
}

int
proc_reaped(const struct worker *w)
{
	return proc_is_reaped(w);
}

int
proc_status(const struct worker *w)
{
	return w->status;
}

const char *
proc_failure(const struct worker *w)
{
	return w->failure;
}

char *
proc_errtail(const struct worker *w, int lines)
{
	const char *p = w->errtail, *end = w->errtail + w->errlen;
	int n = 0;

	while (end > p && end[-1] == '\n')
		end--;
	for (const char *q = end; q > p; q--) {
		if (q[-1] == '\n' && ++n == lines) {
			p = q;
			break;
		}
	}
	return xstrndup(p, (size_t)(end - p));
}
