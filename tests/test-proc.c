/*
 * proc.c against fake workers (small shell scripts): it reports through
 * its owner's callbacks only, on_msg for each well-formed worker message,
 * on_exit once when the process is reaped and its stream has ended, and
 * on_free when the owner frees the worker; a malformed or wrong-way frame
 * kills the worker with a reason.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
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
#include "store.h"
#include "tap.h"

struct owner {
	int msgs;
	int hello;
	int exits;
	int freed;
	int status;
	char *failure;
	char *tail;
};

static struct event_base *base;
static char dir[] = "/tmp/test-proc-XXXXXX";

static void
on_msg(struct worker *w, struct proto_msg *m, void *arg)
{
	struct owner *o = arg;

	(void)w;
	o->msgs++;
	if (m->type == PROTO_HELLO && m->u[PF_VERSION] == PROTO_VERSION)
		o->hello++;
}

static void
on_exit_cb(struct worker *w, void *arg)
{
	struct owner *o = arg;

	o->exits++;
	o->status = proc_status(w);
	o->failure = proc_failure(w) ? xstrdup(proc_failure(w)) : NULL;
	o->tail = proc_errtail(w, 2);
	event_base_loopbreak(base);
}

static void
on_free(void *arg)
{
	((struct owner *)arg)->freed++;
}

static const struct proc_cbs cbs = {on_msg, on_exit_cb, on_free};

/*
 * Stands in for the service's SIGCHLD handler, which reaps nothing where
 * the kernel has pidfds: each worker's own pidfd event reaps it then.
 */
static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	proc_sigchld();
}

/* Write an executable script and make it the worker program. */
static void
fake_worker(const char *name, const char *body)
{
	char *path = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "w");

	if (f == NULL)
		fatal("%s", path);
	fprintf(f, "#!/bin/sh\n%s\n", body);
	fclose(f);
	chmod(path, 0755);
	free(cfg.worker_path);
	cfg.worker_path = path;
}

/* A frame as a worker (or, for ACK, the supervisor) would send it. */
static char *
frame_file(const char *name, enum proto_type type)
{
	struct proto_msg m;
	uint8_t *buf;
	size_t len;
	const char *cause;
	char *path = xasprintf("%s/%s", dir, name);
	FILE *f;

	proto_msg_init(&m, type);
	if (type == PROTO_HELLO)
		m.u[PF_VERSION] = PROTO_VERSION;
	if (proto_encode(&m, &buf, &len, &cause) == -1)
		fatalx("encode: %s", cause);
	proto_msg_clear(&m);
	if ((f = fopen(path, "w")) == NULL)
		fatal("%s", path);
	fwrite(buf, 1, len, f);
	fclose(f);
	free(buf);
	return path;
}

/* Run one worker to its end; returns it, still to be freed. */
static struct worker *
run(struct owner *o, int64_t task)
{
	struct worker *w;
	char *cause = NULL;

	memset(o, 0, sizeof *o);
	w = proc_spawn(base, task, "planning", 7, &cbs, o, &cause);
	if (!ok(w != NULL, "proc_spawn starts the fake worker")) {
		printf("#   %s\n", cause);
		free(cause);
		return NULL;
	}
	is_int(proc_task(w), task, "proc_task is the task given");
	is_str(proc_stage(w), "planning", "proc_stage is the stage given");
	is_int(proc_run(w), 7, "proc_run is the run given");
	ok(proc_arg(w) == o, "proc_arg is the owner's arg");
	ok(proc_find_task(task) == w, "proc_find_task finds it");
	is_int(proc_count(), 1, "one worker is counted");
	event_base_dispatch(base);
	is_int(o->exits, 1, "on_exit is called once");
	ok(proc_reaped(w), "on_exit comes after the worker is reaped");
	ok(waitpid(proc_pid(w), NULL, WNOHANG) == -1 && errno == ECHILD,
	    "and no zombie of it is left");
	is_int(o->freed, 0, "the owner's arg is not freed before proc_free");
	return w;
}

static void
done(struct worker *w, struct owner *o)
{
	proc_free(w);
	is_int(o->freed, 1, "proc_free frees the owner's arg (on_free)");
	is_int(proc_count(), 0, "no worker is left");
	free(o->failure);
	free(o->tail);
}

int
main(void)
{
	struct owner o;
	struct worker *w;
	struct event *tick;
	struct timeval tv = {0, 10 * 1000};
	char *hello, *ack, *body, *why2 = NULL;

	signal(SIGPIPE, SIG_IGN);
	if (mkdtemp(dir) == NULL)
		fatal("mkdtemp");
	base = event_base_new();
	proc_init(base);
	tick = event_new(base, -1, EV_PERSIST, reap_cb, NULL);
	event_add(tick, &tv);
	hello = frame_file("hello.frame", PROTO_HELLO);
	ack = frame_file("ack.frame", PROTO_ACK);

	/* A worker that says HELLO, writes to stderr, and exits 3. */
	body = xasprintf("cat %s >&3\nprintf 'one\\ntwo\\nthree\\n' >&2\n"
	                 "sleep 0.2\nexit 3",
	    hello);
	fake_worker("hello", body);
	free(body);
	if ((w = run(&o, 1)) != NULL) {
		is_int(o.msgs, 1, "its one message reaches on_msg");
		is_int(o.hello, 1, "decoded as HELLO with our version");
		ok(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 3,
		    "proc_status is its wait status (exit 3)");
		ok(o.failure == NULL,
		    "an exit of its own is no failure of ours");
		is_str(
		    o.tail, "two\nthree", "proc_errtail keeps its last lines");
		done(w, &o);
	}

	/* Bytes that are no frame: killed, with the reason kept. */
	fake_worker("garbage", "printf 'not a frame at all, no' >&3\nsleep 30");
	if ((w = run(&o, 2)) != NULL) {
		is_int(o.msgs, 0, "a malformed frame never reaches on_msg");
		ok(WIFSIGNALED(o.status) && WTERMSIG(o.status) == SIGKILL,
		    "the worker sending it is killed");
		ok(o.failure != NULL &&
		        strncmp(o.failure, "protocol error", 14) == 0,
		    "proc_failure says it was a protocol error");
		done(w, &o);
	}

	/* A frame only the supervisor may send. */
	body = xasprintf("cat %s >&3\nsleep 30", ack);
	fake_worker("ack", body);
	free(body);
	if ((w = run(&o, 3)) != NULL) {
		is_int(
		    o.msgs, 0, "a supervisor's message never reaches on_msg");
		ok(o.failure != NULL &&
		        strstr(o.failure, "not a worker") != NULL,
		    "proc_failure says it is not a worker's message");
		done(w, &o);
	}

	/*
	 * What proc_send writes arrives whole and in order: a frame larger
	 * than the socket takes at once (its rest waits in the bufferevent),
	 * then a small one behind it.
	 */
	{
		struct proto_msg big, small;
		uint8_t *eb, *es;
		size_t lb, ls;
		const char *why;
		char *data = xcalloc(1, 1024 * 1024 + 1), *got, *want;
		char *gotpath = xasprintf("%s/got", dir);
		FILE *f;
		size_t n = 0;

		memset(data, 'x', 1024 * 1024);
		proto_msg_init(&big, PROTO_MODEL_REPLY);
		proto_set_str(&big, PF_DATA, data);
		proto_msg_init(&small, PROTO_ACK);
		small.u[PF_SEQ] = 7;
		if (proto_encode(&big, &eb, &lb, &why) == -1 ||
		    proto_encode(&small, &es, &ls, &why) == -1)
			fatalx("encode: %s", why);
		body = xasprintf("head -c %zu <&3 >%s", lb + ls, gotpath);
		fake_worker("reader", body);
		free(body);
		memset(&o, 0, sizeof o);
		w = proc_spawn(base, 6, "planning", 1, &cbs, &o, &why2);
		ok(w != NULL, "a worker that reads its socket starts");
		if (w != NULL) {
			ok(proc_send(w, &big) == 0 && proc_send(w, &small) == 0,
			    "a 1 MB frame and an ACK are sent");
			event_base_dispatch(base);
			got = xcalloc(1, lb + ls + 1);
			if ((f = fopen(gotpath, "r")) != NULL) {
				n = fread(got, 1, lb + ls + 1, f);
				fclose(f);
			}
			want = xcalloc(1, lb + ls);
			memcpy(want, eb, lb);
			memcpy(want + lb, es, ls);
			ok(n == lb + ls && memcmp(got, want, n) == 0,
			    "it read both frames, whole and in order");
			free(got);
			free(want);
			done(w, &o);
		}
		free(why2);
		proto_msg_clear(&big);
		proto_msg_clear(&small);
		free(eb);
		free(es);
		free(data);
		unlink(gotpath);
		free(gotpath);
	}

	/*
	 * proc_write puts a frame straight into a socket that has room,
	 * with no turn of the loop; into a full one, through the
	 * bufferevent, and every later frame behind it.
	 */
	{
		struct bufferevent *bev;
		struct proto_msg ack7;
		uint8_t got[64], *e7;
		size_t l7, queued;
		ssize_t r;
		const char *why;
		int sv[2], full = 0;
		char junk[4096];

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
			fatal("socketpair");
		evutil_make_socket_nonblocking(sv[0]);
		bev =
		    bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
		bufferevent_enable(bev, EV_READ | EV_WRITE);
		proto_msg_init(&ack7, PROTO_ACK);
		ack7.u[PF_SEQ] = 7;
		if (proto_encode(&ack7, &e7, &l7, &why) == -1)
			fatalx("encode: %s", why);
		ok(proc_write(bev, &ack7, &why) == 0, "proc_write an ACK");
		r = recv(sv[1], got, sizeof got, MSG_DONTWAIT);
		ok(r == (ssize_t)l7 && memcmp(got, e7, l7) == 0 &&
		        evbuffer_get_length(bufferevent_get_output(bev)) == 0,
		    "... is in the socket at once, nothing left in the "
		    "bufferevent");
		memset(junk, 'j', sizeof junk);
		while (send(sv[0], junk, sizeof junk, MSG_DONTWAIT) > 0)
			full++;
		ok(proc_write(bev, &ack7, &why) == 0 &&
		        (queued = evbuffer_get_length(
		             bufferevent_get_output(bev))) == l7,
		    "into a full socket, the frame waits in the bufferevent");
		/* Room again, but the next frame goes behind the first. */
		while (recv(sv[1], junk, sizeof junk, MSG_DONTWAIT) > 0)
			;
		ok(proc_write(bev, &ack7, &why) == 0 &&
		        evbuffer_get_length(bufferevent_get_output(bev)) ==
		            2 * l7,
		    "... and the next one behind it, in order");
		event_base_loop(base, EVLOOP_NONBLOCK);
		r = recv(sv[1], got, sizeof got, MSG_DONTWAIT);
		ok(full > 0 && r == (ssize_t)(2 * l7) &&
		        memcmp(got, e7, l7) == 0 &&
		        memcmp(got + l7, e7, l7) == 0,
		    "the loop writes both, whole");
		bufferevent_free(bev);
		close(sv[1]);
		proto_msg_clear(&ack7);
		free(e7);
	}

	/* Killed by its owner: no failure unless a reason is given. */
	fake_worker("sleep", "sleep 30");
	memset(&o, 0, sizeof o);
	{
		char *cause = NULL;

		w = proc_spawn(base, 4, "reviewing", 1, &cbs, &o, &cause);
		ok(w != NULL, "a worker that sleeps starts");
		if (w != NULL) {
			proc_kill(w, NULL);
			event_base_dispatch(base);
			is_int(o.exits, 1, "on_exit follows proc_kill");
			ok(o.failure == NULL, "proc_kill with no reason: none");
			ok(WIFSIGNALED(o.status), "it was killed");
			done(w, &o);
		}
		free(cause);
	}

	/* proc_free_all ends a worker that still runs, with its arg. */
	memset(&o, 0, sizeof o);
	{
		char *cause = NULL;

		w = proc_spawn(base, 5, "implementing", 1, &cbs, &o, &cause);
		ok(w != NULL, "another worker starts");
		free(cause);
		proc_free_all();
		is_int(proc_count(), 0, "proc_free_all frees every worker");
		is_int(o.freed, 1, "and its owner's arg");
		is_int(o.exits, 0, "without calling on_exit");
	}

	unlink(hello);
	unlink(ack);
	free(hello);
	free(ack);
	for (const char *const *n = (const char *const[]){"hello", "garbage",
	         "ack", "reader", "sleep", NULL};
	     *n != NULL; n++) {
		char *p = xasprintf("%s/%s", dir, *n);
		unlink(p);
		free(p);
	}
	rmdir(dir);
	free(cfg.worker_path);
	event_free(tick);
	proc_fini();
	event_base_free(base);
	return tap_done();
}
