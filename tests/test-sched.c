/*
 * The scheduler (sched.c, task.c, config.c from the supervisor's core
 * library) against a fake process layer: the proc_* functions below stand
 * in for proc.c, so a test plays the worker by calling the callbacks the
 * scheduler gave proc_spawn, and sees what the scheduler sent or killed.
 * The store is a real SQLite database and the loop a real libevent base,
 * so restarts wait for their backoff timers as they do in the service.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "proto.h"
#include "store.h"
#include "config.h"
#include "proc.h"
#include "scheduler.h"
#include "store.h"
#include "task.h"
#include "tap.h"

extern char **environ;

/* The fake process layer. */
struct worker {
	int64_t task;
	char *stage;
	int64_t run;
	const struct proc_cbs *cbs;
	void *arg;
	pid_t pid;
	int live; /* spawned and not yet freed */
	int reaped;
	int status;
	int killed;
	char *failure;
};

#define FAKE_MAX 1024
static struct worker fake[FAKE_MAX];
static int nfake;

/* What the scheduler sent, in order. */
#define SENT_MAX 4096
static enum proto_type sent[SENT_MAX];
static uint64_t sent_seq[SENT_MAX];
static struct worker *sent_to[SENT_MAX];
static int nsent;
static struct msg_start last_start;
static int start_ok;

/* The journal entries in the store when the last ACK was sent. */
static struct store *st;
static int64_t ack_journal_n;
static int ack_unsynced; /* a lazy commit waited for its sync at an ACK */

static int
count_cb(const struct journal_entry *je, void *arg)
{
	(void)je;
	(*(int64_t *)arg)++;
	return 0;
}

struct worker *
proc_spawn(struct event_base *base, int64_t task, const char *stage,
    int64_t run, const struct proc_cbs *cbs, void *arg, char **cause)
{
	struct worker *w;

	(void)base;
	if (nfake == FAKE_MAX) {
		*cause = xstrdup("fake: too many workers");
		return NULL;
	}
	w = &fake[nfake++];
	memset(w, 0, sizeof *w);
	w->task = task;
	w->stage = xstrdup(stage);
	w->run = run;
	w->cbs = cbs;
	w->arg = arg;
	w->pid = 1000 + nfake;
	w->live = 1;
	return w;
}

int
proc_send(struct worker *w, const struct proto_msg *m)
{
	if (nsent < SENT_MAX) {
		sent[nsent] = m->type;
		sent_to[nsent] = w;
		sent_seq[nsent++] = m->u[PF_SEQ];
	}
	if (m->type == PROTO_START) {
		const char *cause;

		msg_start_clear(&last_start);
		start_ok = proto_start_get(m, &last_start, &cause) == 0;
	}
	if (m->type == PROTO_ACK) {
		ack_unsynced += store_flush_pending(st);
		ack_journal_n = 0;
		store_journal_list(
		    st, w->task, w->run, count_cb, &ack_journal_n);
	}
	return 0;
}

void
proc_kill(struct worker *w, const char *reason)
{
	w->killed++;
	if (reason != NULL && w->failure == NULL)
		w->failure = xstrdup(reason);
}

void
proc_watchdog(uint64_t timeout_ms)
{
	(void)timeout_ms;
}

struct worker *
proc_find_task(int64_t task)
{
	for (int i = 0; i < nfake; i++)
		if (fake[i].live && fake[i].task == task)
			return &fake[i];
	return NULL;
}

struct worker *
proc_next(struct worker *w)
{
	for (int i = w == NULL ? 0 : (int)(w - fake) + 1; i < nfake; i++)
		if (fake[i].live)
			return &fake[i];
	return NULL;
}

unsigned
proc_count(void)
{
	unsigned n = 0;

	for (int i = 0; i < nfake; i++)
		n += fake[i].live ? 1 : 0;
	return n;
}

void
proc_free(struct worker *w)
{
	if (w->cbs->on_free != NULL)
		w->cbs->on_free(w->arg);
	w->live = 0;
	free(w->stage);
	free(w->failure);
	w->stage = w->failure = NULL;
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

void
proc_reap(void)
{
}

int
proc_reaped(const struct worker *w)
{
	return w->reaped;
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
	(void)w;
	(void)lines;
	return xstrdup("");
}

char *
proc_describe(int status)
{
	return xasprintf("exited with status %d", WEXITSTATUS(status));
}

/* Playing the worker. */
static struct event_base *base;

static void
pump(int ms)
{
	struct timespec ts = {0, 1000 * 1000};

	for (int i = 0; i < ms; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		nanosleep(&ts, NULL);
	}
}

/* Run the loop until the n-th worker is spawned (or 3 s). */
static struct worker *
wait_spawn(int n)
{
	for (int i = 0; i < 3000 && nfake < n; i++)
		pump(1);
	return nfake >= n ? &fake[n - 1] : NULL;
}

/* A message read, then the rest of the loop's turn (the flush). */
static void
send_msg(struct worker *w, struct proto_msg *m)
{
	w->cbs->on_msg(w, m, w->arg);
	proto_msg_clear(m);
	event_base_loop(base, EVLOOP_NONBLOCK);
}

static void
hello(struct worker *w)
{
	struct proto_msg m;

	proto_msg_init(&m, PROTO_HELLO);
	m.u[PF_VERSION] = PROTO_VERSION;
	m.u[PF_PID] = (uint64_t)w->pid;
	send_msg(w, &m);
}

static void
journal(struct worker *w, uint64_t seq)
{
	struct proto_msg m;

	proto_msg_init(&m, PROTO_JOURNAL);
	m.u[PF_SEQ] = seq;
	proto_set_str(&m, PF_KIND, "reply");
	proto_set_str(&m, PF_DATA, "{\"text\":\"x\"}");
	send_msg(w, &m);
}

static void
checkpoint(struct worker *w, uint64_t seq)
{
	struct proto_msg m;

	proto_msg_init(&m, PROTO_CHECKPOINT);
	m.u[PF_SEQ] = seq;
	proto_set_str(&m, PF_NAME, "step");
	proto_set_str(&m, PF_DATA, "");
	send_msg(w, &m);
}

static void
result_plan(struct worker *w)
{
	struct proto_msg m;

	proto_msg_init(&m, PROTO_RESULT);
	m.u[PF_OK] = 1;
	proto_set_str(&m, PF_TEXT, "");
	proto_set_str(&m, PF_DATA, "{\"plan\":\"do it\"}");
	send_msg(w, &m);
}

static void
worker_exit(struct worker *w, int code)
{
	w->reaped = 1;
	w->status = code << 8; /* as waitpid reports exit(code) */
	w->cbs->on_exit(w, w->arg);
}

static struct task *
task_load_or_die(int64_t id)
{
	struct task *t;

	if (store_task_get(st, id, &t) == -1 || t == NULL) {
		printf("Bail out! cannot load task %lld\n", (long long)id);
		exit(1);
	}
	return t;
}

static int64_t
submit(void)
{
	struct task_new tn = {"add a README", "/nonexistent/repo",
	    "0123456789abcdef0123456789abcdef01234567", NULL, 0, 0, 0};
	int64_t id;
	char *cause;
	int code;

	if (task_submit(st, &tn, &id, &cause, &code) == -1) {
		printf("Bail out! task_submit: %s\n", cause);
		exit(1);
	}
	sched_kick();
	return id;
}

static enum proto_type
last_sent(void)
{
	return nsent > 0 ? sent[nsent - 1] : PROTO_NONE;
}

static int commits;

static int durable_commits;

static void
count_commit(double seconds, int durable, void *arg)
{
	(void)seconds;
	(void)arg;
	commits++;
	durable_commits += durable != 0;
}

static int
event_cb(const struct event_row *ev, void *arg)
{
	struct buf *b = arg;

	buf_addf(b, "%s|", ev->text);
	return 0;
}

/* A task from submit to plan_awaiting_approval. */
static void
test_happy(void)
{
	int64_t id = submit();
	struct worker *w;
	struct task *t;
	struct buf evs;
	char *want;

	/* The stage's state and its worker's start: one commit, lazy (it
	 * reaches the disk with the stage's first durable one). */
	commits = durable_commits = 0;
	store_set_commit_hook(st, count_commit, NULL);
	w = wait_spawn(nfake + 1);
	store_set_commit_hook(st, NULL, NULL);
	is_int(commits, 1, "a stage start is one commit");
	is_int(durable_commits, 0, "... a lazy one");
	buf_init(&evs);
	store_event_list(st, id, 0, 0, event_cb, &evs);
	want = xasprintf("task submitted|checkpoint saved: start_planning|"
	                 "pending -> planning|worker %d started (run 1)|",
	    w != NULL ? (int)w->pid : 0);
	is_str(evs.buf, want, "its state change and started event, in order");
	free(want);
	buf_free(&evs);

	ok(w != NULL && w->task == id, "a planning worker is spawned");
	if (w == NULL)
		return;
	is_str(w->stage, "planning", "its stage is planning");
	t = task_load_or_die(id);
	is_str(wstate_name(t->state), "planning", "the task is planning");
	task_free(t);

	hello(w);
	is_int(last_sent(), PROTO_START, "HELLO is answered by START");
	ok(start_ok, "START decodes with proto_start_get");
	is_int(last_start.task, id, "START names the task");
	is_int(last_start.stage, STAGE_PLANNING, "START names the stage");
	is_int(last_start.attempt, 0, "START is a first attempt");
	is_int(last_start.count, 0, "START has nothing to replay");
	is_str(last_start.request, "add a README", "START carries the request");

	journal(w, 1);
	is_int(last_sent(), PROTO_ACK, "a JOURNAL is answered by ACK");
	is_int(sent_seq[nsent - 1], 1, "the ACK carries its seq");
	is_int(ack_journal_n, 1, "the entry was in the store before its ACK");
	is_int(ack_unsynced, 0, "... and synced to disk");

	checkpoint(w, 1);
	is_int(last_sent(), PROTO_ACK, "a CHECKPOINT is answered by ACK");

	result_plan(w);
	is_int(last_sent(), PROTO_ACK, "RESULT is answered by ACK");
	is_int(sent_seq[nsent - 1], 0, "with seq 0");
	t = task_load_or_die(id);
	is_str(wstate_name(t->state), "plan_awaiting_approval",
	    "RESULT moves the task to plan_awaiting_approval");
	is_str(t->text[TC_PLAN], "do it", "the plan is stored");
	task_free(t);
	worker_exit(w, 0);
	ok(!w->live, "the worker is freed after its exit");
	is_int(w->killed, 0, "the worker was not killed");
}

/* A worker crashing after HELLO, after a JOURNAL, after a CHECKPOINT and
 * then once too often. */
static void
test_crashes(void)
{
	int64_t id = submit();
	struct worker *w = wait_spawn(nfake + 1);
	struct task *t;
	int spawned;

	ok(w != NULL, "a planning worker is spawned");
	if (w == NULL)
		return;
	hello(w);
	worker_exit(w, WORKER_EXIT_TEMP);
	t = task_load_or_die(id);
	is_int(t->ival[TI_RETRY_COUNT], 1, "crash after HELLO: retry_count 1");
	is_str(wstate_name(t->state), "planning", "the task is still planning");
	task_free(t);
	ok(proc_find_task(id) == NULL, "no worker during the backoff");

	w = wait_spawn(nfake + 1);
	ok(w != NULL && w->task == id, "restarted after the backoff");
	if (w == NULL)
		return;
	hello(w);
	is_int(last_start.attempt, 1, "START says attempt 1");
	journal(w, 1);
	is_int(ack_journal_n, 1, "journal entry 1 stored");
	worker_exit(w, WORKER_EXIT_TEMP);
	t = task_load_or_die(id);
	is_int(
	    t->ival[TI_RETRY_COUNT], 2, "crash after JOURNAL: retry_count 2");
	task_free(t);

	w = wait_spawn(nfake + 1);
	ok(w != NULL && w->task == id, "restarted again");
	if (w == NULL)
		return;
	spawned = nsent;
	hello(w);
	is_int(last_start.count, 1, "START announces one entry to replay");
	ok(nsent == spawned + 2 && sent[spawned + 1] == PROTO_REPLAY &&
	        sent_seq[spawned + 1] == 1,
	    "the journal entry is replayed after START");
	journal(w, 2);
	is_int(last_sent(), PROTO_ACK, "the next JOURNAL continues at seq 2");
	checkpoint(w, 2);
	worker_exit(w, WORKER_EXIT_TEMP);
	t = task_load_or_die(id);
	is_int(
	    t->ival[TI_RETRY_COUNT], 3, "crash before RESULT: retry_count 3");
	is_str(wstate_name(t->state), "planning", "still planning");
	task_free(t);

	w = wait_spawn(nfake + 1);
	ok(w != NULL && w->task == id, "restarted a third time");
	if (w == NULL)
		return;
	hello(w);
	worker_exit(w, WORKER_EXIT_TEMP);
	t = task_load_or_die(id);
	is_str(wstate_name(t->state), "failed",
	    "after ORCH_MAX_RETRIES restarts the task fails");
	ok(t->text[TC_ERROR_DETAILS] != NULL &&
	        strstr(t->text[TC_ERROR_DETAILS], "ORCH_MAX_RETRIES") != NULL,
	    "with a reason naming ORCH_MAX_RETRIES");
	is_int(t->ival[TI_RETRY_COUNT], 3, "retry_count counts restarts only");
	task_free(t);
	spawned = nfake;
	pump(50);
	is_int(nfake, spawned, "a failed task is not restarted");
}

/* A RESULT that arrives after the task was cancelled. */
static void
test_cancel(void)
{
	int64_t id = submit();
	struct worker *w = wait_spawn(nfake + 1);
	struct task *t;
	char *cause;
	int code, acked;

	ok(w != NULL, "a planning worker is spawned");
	if (w == NULL)
		return;
	hello(w);
	ok(task_cancel(st, id, &cause, &code) == 0, "the task is cancelled");
	sched_task_changed(id);
	ok(w->killed > 0, "the cancelled task's worker is killed");
	result_plan(w);
	acked = last_sent() == PROTO_ACK && sent_seq[nsent - 1] == 0;
	ok(acked || w->killed > 0, "the late RESULT gets ACK 0 or a kill");
	t = task_load_or_die(id);
	is_str(wstate_name(t->state), "cancelled",
	    "the late RESULT is not applied: still cancelled");
	ok(t->text[TC_PLAN] == NULL, "and no plan is stored");
	task_free(t);
	worker_exit(w, 0);
	pump(50);
	ok(proc_find_task(id) == NULL, "no worker for the cancelled task");
}

/* An approval while a crashed worker's restart waits out its backoff. */
static void
test_approve_backoff(void)
{
	int64_t id = submit();
	struct worker *w = wait_spawn(nfake + 1);
	struct task *t;
	char *cause = NULL;
	int code = 0, before;
	unsigned saved = cfg.retry_backoff_ms;

	ok(w != NULL, "a planning worker is spawned");
	if (w == NULL)
		return;
	hello(w);
	cfg.retry_backoff_ms = 400;
	worker_exit(w, WORKER_EXIT_TEMP);
	cfg.retry_backoff_ms = saved;
	before = nfake;
	ok(task_approve(st, id, &(struct task_approval){"tester", NULL, 0, -1},
	       &cause, &code) == -1,
	    "approving a task whose worker is backing off is refused");
	is_int(code, 409, "with 409");
	free(cause);
	/* As control.c would after any action on the task. */
	sched_task_changed(id);
	pump(20);
	ok(proc_count() <= 1, "never more than one worker");
	w = wait_spawn(before + 1);
	ok(w != NULL && w->task == id, "the stage restarts once");
	pump(50);
	is_int(nfake, before + 1, "and only once");
	is_int(proc_count(), 1, "one worker runs the task");
	t = task_load_or_die(id);
	is_str(wstate_name(t->state), "planning", "the task is planning");
	task_free(t);
	if (w != NULL) {
		hello(w);
		result_plan(w);
		worker_exit(w, 0);
	}
}

/*
 * Group commit: journal entries of several workers read in one turn of the
 * loop commit lazily and are acknowledged together, after one sync; a
 * worker gone before the sync is not acknowledged, and one that sent two
 * entries without waiting gets both ACKs, in order.
 */
static void
test_group_commit(void)
{
	struct worker *w[3];
	int64_t id[3];
	struct proto_msg m;
	char *cause;
	int n0, code;

	for (int i = 0; i < 3; i++) {
		id[i] = submit();
		if ((w[i] = wait_spawn(nfake + 1)) == NULL) {
			ok(0, "a worker for each of three tasks");
			return;
		}
		hello(w[i]);
	}
	n0 = nsent;
	commits = durable_commits = 0;
	ack_unsynced = 0;
	store_set_commit_hook(st, count_commit, NULL);
	/* One turn, no loop between: w[0] sends one entry, w[1] and w[2]
	 * two each without waiting for the first ACK. */
	for (int i = 0; i < 5; i++) {
		int k = (i + 1) / 2;

		proto_msg_init(&m, PROTO_JOURNAL);
		m.u[PF_SEQ] = i == 0 ? 1 : (uint64_t)(2 - i % 2);
		proto_set_str(&m, PF_KIND, "reply");
		proto_set_str(&m, PF_DATA, "{\"text\":\"x\"}");
		w[k]->cbs->on_msg(w[k], &m, w[k]->arg);
		proto_msg_clear(&m);
	}
	is_int(nsent - n0, 0, "no ACK before the turn's sync");
	ok(store_flush_pending(st), "the five commits wait for a sync");
	w[2]->reaped = 1;
	proc_free(w[2]);
	event_base_loop(base, EVLOOP_NONBLOCK);
	store_set_commit_hook(st, NULL, NULL);
	ok(nsent - n0 == 3 && sent_to[n0] == w[0] && sent_seq[n0] == 1 &&
	        sent_to[n0 + 1] == w[1] && sent_seq[n0 + 1] == 1 &&
	        sent_to[n0 + 2] == w[1] && sent_seq[n0 + 2] == 2,
	    "an ACK for each entry of a worker still there, in order");
	is_int(ack_unsynced, 0, "all after the sync");
	is_int(commits, 6, "five lazy commits and one sync");
	is_int(durable_commits, 1, "... the one durable step");
	ok(!store_flush_pending(st), "nothing waits any more");
	for (int i = 0; i < 3; i++) { /* out of the way of test_many */
		task_cancel(st, id[i], &cause, &code);
		sched_task_changed(id[i]);
		if (i < 2)
			worker_exit(w[i], 0);
	}
	pump(5);
}

/*
 * A stage's result commits lazily, its ACK waiting for the turn's sync;
 * a lone log line commits lazily and waits for the next sync, whoever's.
 */
static void
test_group_lazy(void)
{
	struct worker *w;
	struct proto_msg m;
	char *cause;
	int64_t id = submit();
	int n0, code;

	if ((w = wait_spawn(nfake + 1)) == NULL) {
		ok(0, "a worker for the task");
		return;
	}
	hello(w);
	commits = durable_commits = 0;
	ack_unsynced = 0;
	store_set_commit_hook(st, count_commit, NULL);
	proto_msg_init(&m, PROTO_LOG);
	m.u[PF_LEVEL] = EV_TOOL;
	proto_set_str(&m, PF_TEXT, "read_file {\"path\":\"README\"}");
	send_msg(w, &m);
	ok(commits == 1 && durable_commits == 0 && store_flush_pending(st),
	    "a lone log line is a lazy commit, not synced on its own");

	n0 = nsent;
	proto_msg_init(&m, PROTO_RESULT);
	m.u[PF_OK] = 1;
	proto_set_str(&m, PF_TEXT, "");
	proto_set_str(&m, PF_DATA, "{\"plan\":\"do it\"}");
	w->cbs->on_msg(w, &m, w->arg);
	proto_msg_clear(&m);
	ok(nsent == n0 && durable_commits == 0 && store_flush_pending(st),
	    "a result commits lazily, its ACK waits");
	event_base_loop(base, EVLOOP_NONBLOCK);
	ok(nsent - n0 == 1 && sent[n0] == PROTO_ACK && ack_unsynced == 0,
	    "... for the turn's sync");
	ok(durable_commits == 1 && !store_flush_pending(st),
	    "one sync for the line and the result, no durable commit");
	store_set_commit_hook(st, NULL, NULL);
	worker_exit(w, 0);
	task_cancel(st, id, &cause, &code);
	sched_task_changed(id);
	pump(5);
}

/* Microseconds since t0. */
static double
us_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e6 +
	       (double)(t1.tv_nsec - t0->tv_nsec) / 1e3;
}

/*
 * With hundreds of workers running (test_many leaves 399), the group's
 * sync waits 20 us a worker past the turn, so that one covers many
 * turns; sched_flush (the event pump's, before it tells anyone of a line)
 * does it at once.
 */
static void
test_group_delay(void)
{
	struct worker *w = NULL;
	struct timespec t0;
	unsigned n = proc_count();
	int n0;
	double us;

	for (int i = 0; i < nfake && w == NULL; i++)
		if (fake[i].live && !fake[i].killed)
			w = &fake[i];
	if (n < 300 || w == NULL) {
		ok(0, "hundreds of workers running");
		return;
	}
	hello(w);
	sched_flush(); /* a group of its own */
	n0 = nsent;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	journal(w, 1);
	us = us_since(&t0);
	/* Unless this machine stalled past the delay in between. */
	printf("# %u running, the turn took %.0f us\n", n, us);
	ok((nsent == n0 && store_flush_pending(st)) || us >= n * 20.0,
	    "with hundreds running, the ACK waits past its turn");
	for (int i = 0; i < 100 && nsent == n0; i++)
		pump(1);
	us = us_since(&t0);
	printf("# ACK after %.0f us\n", us);
	ok(nsent - n0 == 1 && sent[n0] == PROTO_ACK && us >= n * 20.0,
	    "... 20 us a worker at least");
	ok(!store_flush_pending(st), "after the sync");

	journal(w, 2);
	sched_flush();
	ok(nsent - n0 == 2 && sent[n0 + 1] == PROTO_ACK &&
	        !store_flush_pending(st),
	    "sched_flush syncs and sends the waiting ACK at once");
	pump(20);
	is_int(nsent - n0, 2, "... once");
}

/*
 * More tasks than a page of the runnable list (256) and more slots too:
 * one kick fills every slot, however many tasks already run, and no more.
 */
static void
test_many(void)
{
	unsigned saved = cfg.max_workers;
	int before = nfake, n, i;
	struct worker *w = NULL;
	struct task *t;

	cfg.max_workers = 300;
	for (i = 0; i < 400; i++)
		submit();
	event_base_loop(base, EVLOOP_NONBLOCK);
	is_int(proc_count(), 300,
	    "one kick starts 300 workers for 400 tasks (ORCH_MAX_WORKERS=300)");
	pump(20);
	is_int(proc_count(), 300, "and never more than ORCH_MAX_WORKERS");

	/* A task leaves its slot for an approval: a waiting one takes it. */
	for (i = before; i < nfake && w == NULL; i++)
		if (fake[i].live)
			w = &fake[i];
	if (w == NULL)
		return;
	hello(w);
	result_plan(w);
	worker_exit(w, 0);
	n = nfake;
	pump(20);
	is_int(nfake, n + 1, "the freed slot goes to a waiting task");
	is_int(proc_count(), 300, "the slots stay full");
	t = task_load_or_die(fake[nfake - 1].task);
	is_str(wstate_name(t->state), "planning",
	    "the new worker plans a task that was pending");
	task_free(t);

	/* Room for all: the 100 still pending start as well. */
	cfg.max_workers = 1000;
	sched_kick();
	event_base_loop(base, EVLOOP_NONBLOCK);
	is_int(proc_count(), 399,
	    "with room for all, every one of the 399 runnable tasks runs");
	is_int(nfake - before, 400, "each started once");
	cfg.max_workers = saved;
}

int
main(void)
{
	char dir[] = "/tmp/test-sched.XXXXXX", *cause, *db;
	struct sched_opts opts = {0, 0, 0};
	struct event_config *evcfg;

	if (mkdtemp(dir) == NULL || chdir(dir) == -1) {
		printf("Bail out! mkdtemp\n");
		return 1;
	}
	/* meson's test environment sets ORCH_* variables for the other
	 * tests; config_load refuses those it does not know. */
	for (int i = 0; environ[i] != NULL;) {
		char *name;

		if (strncmp(environ[i], "ORCH_", 5) != 0) {
			i++;
			continue;
		}
		name = xstrndup(environ[i], strcspn(environ[i], "="));
		unsetenv(name);
		free(name);
	}
	setenv("ORCH_STATE_DIR", dir, 1);
	setenv("ORCH_MAX_RETRIES", "3", 1);
	setenv("ORCH_RETRY_BACKOFF_MS", "2", 1);
	setenv("ORCH_LOG_LEVEL", "error", 1);
	unsetenv("ORCH_DB_PATH");
	config_load(NULL);
	db = xasprintf("%s/tasks.db", dir);
	if (store_open(&st, db, STORE_RW, NULL, &cause) == -1) {
		printf("Bail out! store_open: %s\n", cause);
		return 1;
	}
	free(db);
	/* As the service's (server.c): timers on the precise clock. */
	evcfg = event_config_new();
	event_config_set_flag(evcfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	base = event_base_new_with_config(evcfg);
	event_config_free(evcfg);
	sched_init(base, st, &opts);

	test_happy();
	test_crashes();
	test_cancel();
	test_approve_backoff();
	test_group_commit();
	test_group_lazy();
	test_many();
	test_group_delay();

	sched_free();
	msg_start_clear(&last_start);
	store_close(st);
	event_base_free(base);
	db = xasprintf("rm -rf '%s'", dir);
	if (system(db) != 0)
		printf("# cannot remove %s\n", dir);
	free(db);
	return tap_done();
}
