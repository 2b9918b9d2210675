/*
 * The scheduler: starts a worker for every task that has a stage to run (up
 * to ORCH_MAX_WORKERS), commits what workers report before acknowledging it
 * (write-ahead), applies stage results to the workflow, and restarts crashed
 * workers with backoff until ORCH_MAX_RETRIES, then fails the task.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <event2/event.h>

#include "common.h"
#include "config.h"
#include "metrics.h"
#include "modelproc.h"
#include "proc.h"
#include "narrate.h"
#include "scheduler.h"
#include "store.h"
#include "task.h"

struct backoff {
	int64_t task;
	uint64_t until;
};

static struct event_base *sched_base;
static struct store *sched_st;
static struct sched_opts sched_opts;
static struct event *sched_kick_ev;
static struct event *sched_timer_ev;
static int sched_stopping;
static uint64_t sched_stop_deadline;
static struct backoff *backoffs;
static size_t nbackoffs;
/*
 * Set when the database refused a write for lack of space or an I/O error:
 * every worker is stopped (not counted as a crash) and nothing starts until
 * a probe write succeeds, retried with a growing delay, so a full disk
 * makes the service wait instead of spinning through restarts.
 */
static int sched_paused;
static uint64_t sched_probe_at;
static unsigned sched_probe_ms;
static uint64_t sched_resumed_at;
/*
 * A node (PostgreSQL, sched_opts.nodes): it runs only tasks it holds a
 * lease on (store.h), claims more as slots free, renews its leases with
 * a heartbeat every third of ORCH_LEASE_S, and stops every worker when it
 * has not renewed them for two thirds of it (it may have lost them: it
 * must not work blind), until a heartbeat gets through again.
 */
static uint64_t sched_beat_at; /* the next heartbeat */
static uint64_t sched_beat_ok; /* the last one that got through */
static int sched_blind;        /* workers stopped: leases not renewed */
static int sched_beat_warned;  /* the failure is logged, once */
static uint64_t sched_poll_at; /* the next look for expired leases */

/* Tasks that were unfinished at start with ORCH_ENABLE_RESUME=false. */
static int64_t *held;
static size_t nheld;

/*
 * Tasks whose worktree the last worker left exactly at its last snapshot
 * (it ended normally, in a stage that snapshots everything it changes):
 * their next worker skips the restore.  Memory only, so after a restart
 * of the service every worktree is restored.
 */
static int64_t *clean_ws;
static size_t nclean_ws;

/*
 * What a kick looks at.  A kick is cheap when the scheduler knows which
 * tasks may have become startable (a worker's exit or result, a backoff's
 * end, an API action on a task: sched_kick_task): it looks at those only.
 * It walks every runnable task in the store (sched_walk) only when
 * something it did not see may have changed (sched_kick: the start, a
 * submission, storage back after a pause) or when its last walk stopped
 * at a full house, so that tasks may be waiting.  With a thousand workers
 * running, a worker's exit then costs a look at its own task, not a walk
 * past the thousand others.
 */
#define SCHED_DIRTY_MAX 1024
static int64_t *sched_dirty;
static size_t nsched_dirty;
static int sched_rescan;

/*
 * Group commit.  Journal entries, checkpoints and results commit lazily
 * (log lines always do, store_event_add); an ACK waits here until
 * sched_flush has made its commit durable, with one sync of the log for
 * every commit before it.  The flush runs after the callbacks of every
 * message read in the same turn of the loop; with SCHED_GROUP_FROM workers
 * running or more, up to SCHED_GROUP_US a worker later (at most
 * SCHED_GROUP_MAX_US), so that one sync covers the commits of many turns
 * (PostgreSQL's commit_delay).  A worker never hears of a commit that is
 * not on disk, nor does anyone of a task that waits or ended (server_pump
 * flushes before it tells one); a lone log line waits at most a tick of
 * sched_timer_cb.
 */
#define SCHED_GROUP_FROM   32
#define SCHED_GROUP_US     20
#define SCHED_GROUP_MAX_US 20000
static struct event *sched_flush_ev;
static int sched_flush_armed;
struct ack_wait {
	struct worker *w;
	struct sched_worker *sw;
	uint64_t seq;
};
static struct ack_wait *acks;
static size_t nacks, acks_cap;

/*
 * What the scheduler knows of one of its workers, hung on it (proc_arg):
 * how far it has got in the protocol, and whether its end is a failure.
 */
struct sched_worker {
	enum stage stage; /* the stage it runs */
	int hello;
	int done;         /* its RESULT is committed */
	int stopping;     /* we asked it to stop; not a failure */
	int ws_clean;     /* its task's worktree is at the last snapshot */
	int64_t next_seq; /* the journal seq it must send next */
	double started;   /* metrics_now() at its start */
	double last_sent; /* ... when we last sent it something */
	/*
	 * A journal entry, checkpoint or result that could not be committed
	 * while the database was away (type PROTO_NONE: none).  The worker
	 * waits for its ACK; it is committed and acknowledged on resuming.
	 */
	struct proto_msg held;
	int retried; /* held is being sent again: its commit may have been
	                done (a connection lost in COMMIT) */
	uint64_t model_call; /* its model call in flight (modelproc), or 0 */
	uint64_t model_seq;  /* ... and the worker's seq for it */
	size_t ack_waits;    /* its ACKs waiting for the flush (acks) */
};

static int sched_storage_failed(void);
static int sched_resume_cb(const struct task *, void *);
static void sched_backoff_clear(int64_t);
static int sched_budget_pause(const struct task *, const char *why);
static void sched_worker_msg(struct worker *, struct proto_msg *, void *);
static void sched_worker_exit(struct worker *, void *);
static void sched_worker_free(void *);
static void sched_flush_soon(void);

static const struct proc_cbs sched_proc_cbs = {
    .on_msg = sched_worker_msg,
    .on_exit = sched_worker_exit,
    .on_free = sched_worker_free,
};

static void
sched_worker_free(void *arg)
{
	struct sched_worker *sw = arg;

	modelproc_drop(sw->model_call);
	proto_msg_clear(&sw->held);
	if (sw->ack_waits > 0) { /* the others' stay in order */
		size_t k = 0;

		for (size_t i = 0; i < nacks; i++)
			if (acks[i].sw != sw)
				acks[k++] = acks[i];
		nacks = k;
	}
	free(sw);
}

/* Whether task's worktree is known clean; forgets it, since the worker
 * about to start may leave it otherwise. */
static int
sched_clean_take(int64_t task)
{
	for (size_t i = 0; i < nclean_ws; i++) {
		if (clean_ws[i] == task) {
			clean_ws[i] = clean_ws[--nclean_ws];
			return 1;
		}
	}
	return 0;
}

static void
sched_clean_put(int64_t task)
{
	if (sched_clean_take(task) == 0 && nclean_ws % 64 == 0)
		clean_ws =
		    xrealloc(clean_ws, (nclean_ws + 64) * sizeof *clean_ws);
	clean_ws[nclean_ws++] = task;
}

void
sched_event(
    int64_t task, enum event_kind kind, const char *stage, const char *fmt, ...)
{
	va_list ap;
	char *raw, *text;

	va_start(ap, fmt);
	if (vasprintf(&raw, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	/* A worker's text is untrusted: the log holds only valid UTF-8. */
	text = utf8_fix(raw, NULL);
	free(raw);
	/* Paused, the line goes to the service's log only: trying the
	 * database for each would reconnect (and wait) per line. */
	if (!sched_paused &&
	    store_event_add(sched_st, task, kind, stage, text) == -1 &&
	    !sched_storage_failed())
		log_warnx("task %lld: cannot record event: %s", (long long)task,
		    store_error(sched_st));
	log_task(kind == EV_ERROR                      ? LOG_LEVEL_WARN
	         : kind == EV_MODEL || kind == EV_TOOL ? LOG_LEVEL_DEBUG
	                                               : LOG_LEVEL_INFO,
	    (uint64_t)task, stage, "%s", text);
	free(text);
}

/*
 * After a failed write: when storage is the cause, pause (see sched_paused)
 * and return 1; otherwise 0.  Workers go on and wait: the write they sent
 * is held (sched_hold) and committed when the database can be written
 * again, so that nothing they did is done again.
 */
/*
 * The tasks whose lost lease was told (with no worker to stop): every
 * later write refused for the same lost lease is not told again.  Forgotten
 * when this node claims the task again (a new epoch: sched_lost_forget).
 */
static int64_t *lost_told;
static size_t nlost_told;

/* Whether task's lost lease was told already; notes it told. */
static int
sched_lost_told(int64_t task)
{
	for (size_t i = 0; i < nlost_told; i++)
		if (lost_told[i] == task)
			return 1;
	if (nlost_told % 64 == 0)
		lost_told =
		    xrealloc(lost_told, (nlost_told + 64) * sizeof *lost_told);
	lost_told[nlost_told++] = task;
	return 0;
}

static void
sched_lost_forget(int64_t task)
{
	for (size_t i = 0; i < nlost_told; i++) {
		if (lost_told[i] == task) {
			lost_told[i] = lost_told[--nlost_told];
			return;
		}
	}
}

static void
sched_lease_lost(int64_t task)
{
	struct worker *w = proc_find_task(task);
	struct sched_worker *sw = w != NULL ? proc_arg(w) : NULL;

	/* Logged once: the worker is stopping, its later messages are
	 * refused quietly, and nothing more is written for the task. */
	if (sw != NULL && !sw->stopping) {
		log_task(LOG_LEVEL_WARN, (uint64_t)task, proc_stage(w),
		    "lease lost (another node took the task, or it was"
		    " cancelled): stopping worker %d, writing nothing more",
		    (int)proc_pid(w));
		sw->stopping = 1;
		proc_kill(w, NULL);
	} else if (sw == NULL && !sched_lost_told(task))
		log_task(LOG_LEVEL_WARN, (uint64_t)task, NULL,
		    "lease lost: another node took the task");
	/* The store keeps the lost lease: any write still on its way
	 * for the task fails, until this node claims it again.  The row
	 * is let go if it is still ours (cancelled), else left alone. */
	sched_backoff_clear(task);
	if (store_lease_release(sched_st, task) == -1 &&
	    !sched_storage_failed())
		log_warnx("task %lld: cannot release its lease: %s",
		    (long long)task, store_error(sched_st));
}

static int
sched_storage_failed(void)
{
	int64_t lost;

	if ((lost = store_lease_lost(sched_st)) != 0) {
		sched_lease_lost(lost);
		return 1;
	}
	if (!store_storage_error(sched_st))
		return 0;
	if (!sched_paused) {
		log_warnx("the database cannot be written (%s): pausing every "
		          "task until it can; nothing committed is lost",
		    store_error(sched_st));
		sched_paused = 1;
		/* Failing again soon after a resume: keep backing off. */
		if (now_ms() - sched_resumed_at > 60000 || sched_probe_ms == 0)
			sched_probe_ms = 500;
		sched_probe_at = now_ms() + sched_probe_ms;
	}
	return 1;
}

/* The store's outages (store_set_conn_hook): one line when the connection
 * is lost, one when it is back, whatever number of attempts between. */
static void
sched_conn(int up, const char *why, double seconds, void *arg)
{
	(void)arg;
	if (up)
		log_info("database back after %.1f s", seconds);
	else
		log_warnx("database unreachable: %s", why);
}

/*
 * m could not be committed: the worker keeps waiting for its ACK while we
 * keep the message (moved: m is left empty).
 */
static void
sched_hold(struct worker *w, struct proto_msg *m)
{
	struct sched_worker *sw = proc_arg(w);

	proto_msg_clear(&sw->held);
	sw->held = *m;
	memset(m, 0, sizeof *m);
}

/* Resumed: commit and acknowledge what the workers are waiting for. */
static void
sched_release(void)
{
	struct worker *w;
	struct proto_msg m;

	for (w = proc_next(NULL); w != NULL && !sched_paused;
	     w = proc_next(w)) {
		struct sched_worker *sw = proc_arg(w);

		if (sw->held.type == PROTO_NONE || proc_reaped(w))
			continue;
		m = sw->held;
		memset(&sw->held, 0, sizeof sw->held);
		sw->retried = 1;
		sched_worker_msg(w, &m, sw);
		sw->retried = 0;
		proto_msg_clear(&m);
	}
}

static void
sched_probe(void)
{
	if (store_probe(sched_st) == 0) {
		log_info("the database can be written again: resuming");
		sched_paused = 0;
		sched_resumed_at = now_ms();
		sched_release();
		sched_kick();
		return;
	}
	if (sched_probe_ms < 30000)
		sched_probe_ms *= 2;
	sched_probe_at = now_ms() + sched_probe_ms;
	log_debug(
	    "the database still cannot be written: %s", store_error(sched_st));
}

void
sched_kick(void)
{
	sched_rescan = 1;
	if (sched_kick_ev != NULL)
		event_active(sched_kick_ev, 0, 0);
}

/* Look at task soon: something the scheduler saw may let it start. */
static void
sched_kick_task(int64_t task)
{
	for (size_t i = 0; i < nsched_dirty; i++)
		if (sched_dirty[i] == task)
			goto out;
	if (nsched_dirty == SCHED_DIRTY_MAX) {
		/* Too many to list: walk them all instead. */
		sched_rescan = 1;
		goto out;
	}
	if (nsched_dirty % 64 == 0)
		sched_dirty = xrealloc(
		    sched_dirty, (nsched_dirty + 64) * sizeof *sched_dirty);
	sched_dirty[nsched_dirty++] = task;
out:
	if (sched_kick_ev != NULL)
		event_active(sched_kick_ev, 0, 0);
}

static int
sched_backing_off(int64_t task, uint64_t now)
{
	for (size_t i = 0; i < nbackoffs; i++)
		if (backoffs[i].task == task)
			return now < backoffs[i].until;
	return 0;
}

static void
sched_backoff_clear(int64_t task)
{
	for (size_t i = 0; i < nbackoffs; i++) {
		if (backoffs[i].task == task) {
			backoffs[i] = backoffs[--nbackoffs];
			return;
		}
	}
}

static int
sched_is_held(int64_t task)
{
	for (size_t i = 0; i < nheld; i++)
		if (held[i] == task)
			return 1;
	return 0;
}

/* Fail a task in the caller's transaction, remembering where it was. */
static int
sched_fail_tx(const struct task *t, const char *why)
{
	if (store_task_set_text(sched_st, t->id, TC_ERROR_DETAILS, why) == -1 ||
	    store_task_set_int(sched_st, t->id, TI_FAILED_STATE,
	        t->state == WS_PLAN_APPROVED ? WS_IMPLEMENTING : t->state) ==
	        -1 ||
	    task_enter(sched_st, t, WS_FAILED, 0, why) == -1)
		return -1;
	return 0;
}

static void
sched_fail(int64_t id, const char *why)
{
	struct task *t;

	if (store_begin(sched_st) == -1)
		goto fail;
	if (store_task_get(sched_st, id, &t) == -1 || t == NULL) {
		store_rollback(sched_st);
		goto fail;
	}
	if (sched_fail_tx(t, why) == -1 || store_commit(sched_st) == -1) {
		store_rollback(sched_st);
		task_free(t);
		goto fail;
	}
	task_free(t);
	log_task(LOG_LEVEL_WARN, (uint64_t)id, NULL, "task failed: %s", why);
	return;
fail:
	log_warnx("task %lld: cannot record failure (%s): %s", (long long)id,
	    why, store_error(sched_st));
}

/* sched_apply_*: below. */
static int sched_apply_planning(const struct task *, json_t *);
static int sched_apply_implementing(const struct task *, json_t *);
static int sched_apply_reviewing(const struct task *, json_t *);
static int sched_apply_verifying(const struct task *, json_t *);
/*
 * What a stage approved by a person (or by auto-approve) needs: the
 * auto-approve bit, the columns that record who approved it and when, the
 * state the task waits in, and the state it moves on to once approved.
 */
struct sched_gate {
	int auto_bit; /* AUTO_APPROVE_*; 0: the stage has no gate */
	enum task_col approved_at;
	enum task_col approved_by;
	enum wstate awaiting;
	enum wstate approved;
	int approved_new_run; /* approved enters a new stage run */
	const char *auto_why;
	const char *wait_why;
};

/*
 * The workflow's stages, in order: the state that starts the stage (when
 * no earlier result enters it directly) and the state a task is in while
 * it runs, whether the worktree is clean once it ended (the verify
 * command's changes are not snapshotted), the checkpoint that counts its
 * rounds, what its result does, and its approval gate.  Adding a stage is a row
 * here and its apply function.
 */
static const struct sched_stage {
	enum wstate before; /* WS_MAX: entered by the previous stage's result */
	enum wstate running;
	int leaves_clean;
	const char *start_checkpoint;
	int (*apply)(const struct task *, json_t *);
	struct sched_gate gate;
} sched_stages[STAGE_MAX] = {
    [STAGE_PLANNING] = {WS_PENDING, WS_PLANNING, 1, "start_planning",
        sched_apply_planning,
        {AUTO_APPROVE_PLAN, TC_PLAN_APPROVED_AT, TC_PLAN_APPROVED_BY,
            WS_PLAN_AWAITING_APPROVAL, WS_PLAN_APPROVED, 0,
            "plan auto-approved", "plan ready: approve or reject it"}},
    [STAGE_IMPLEMENTING] = {WS_PLAN_APPROVED, WS_IMPLEMENTING, 1,
        "start_implementation", sched_apply_implementing,
        {AUTO_APPROVE_IMPLEMENTATION, TC_IMPLEMENTATION_APPROVED_AT,
            TC_IMPLEMENTATION_APPROVED_BY, WS_IMPLEMENTATION_AWAITING_APPROVAL,
            WS_REVIEWING, 1, "implementation auto-approved",
            "implementation ready: approve or reject it"}},
    [STAGE_REVIEWING] = {WS_MAX, WS_REVIEWING, 1, "start_review",
        sched_apply_reviewing, {0, 0, 0, 0, 0, 0, NULL, NULL}},
    [STAGE_VERIFYING] = {WS_MAX, WS_VERIFYING, 0, "start_verification",
        sched_apply_verifying, {0, 0, 0, 0, 0, 0, NULL, NULL}},
};

/* The stage a task runs in state s: 0, or -1 when s runs none. */
static int
sched_running(enum wstate s, enum stage *stage)
{
	for (unsigned i = 0; i < STAGE_MAX; i++) {
		if (sched_stages[i].running == s) {
			*stage = (enum stage)i;
			return 0;
		}
	}
	return -1;
}

/*
 * The approval gate after a stage's result: auto-approved (recorded as
 * such) or left waiting for a person.
 */
static int
sched_approval(const struct task *t, enum stage stage)
{
	const struct sched_gate *g = &sched_stages[stage].gate;
	struct store *st = sched_st;
	int rc;

	if (t->auto_approve & g->auto_bit) {
		rc = store_task_stamp(st, t->id, g->approved_at);
		if (rc == 0)
			rc = store_task_set_text(
			    st, t->id, g->approved_by, "auto-approve");
		if (rc == 0)
			rc = task_enter(st, t, g->approved, g->approved_new_run,
			    g->auto_why);
		return rc;
	}
	return task_enter(st, t, g->awaiting, 0, g->wait_why);
}

/*
 * From the checkpoints: how many times a stage has started in this task (the
 * scripted model's "round": a rejected plan is planned again in round 2),
 * and the last workspace snapshot a worker recorded.
 */
struct cp_scan {
	const char *name;
	int rounds;
	char *snapshot;
};

static int
sched_scan_cb(const struct checkpoint *cp, void *arg)
{
	struct cp_scan *sc = arg;

	if (strcmp(cp->name, sc->name) == 0)
		sc->rounds++;
	if (strcmp(cp->name, "snapshot") == 0 && cp->data != NULL) {
		json_t *j = json_loads(cp->data, 0, NULL);
		const char *c = json_string_value(json_object_get(j, "commit"));
		if (c != NULL) {
			free(sc->snapshot);
			sc->snapshot = xstrdup(c);
		}
		json_decref(j);
	}
	return 0;
}

static void
sched_scan(int64_t task, enum stage stage, struct cp_scan *sc)
{
	sc->name = sched_stages[stage].start_checkpoint;
	sc->rounds = 0;
	sc->snapshot = NULL;
	store_checkpoint_list(sched_st, task, sched_scan_cb, sc);
	if (sc->rounds == 0)
		sc->rounds = 1;
}

/*
 * What the worker is told in START: the task and the settings it needs.
 * Texts a person or a model wrote may be anything: they are made valid
 * UTF-8 (as the worker's conversation needs them), not left out.  It
 * carries the API key, so it is never logged.
 */
static void
sched_start_msg(
    const struct task *t, enum stage stage, int clean, struct msg_start *s)
{
	struct cp_scan sc;
	char *id;

	memset(s, 0, sizeof *s);
	config_start(s);
	sched_scan(t->id, stage, &sc);
	s->task = (uint64_t)t->id;
	s->stage = stage;
	s->request = config_text(t->request);
	if (origin_is_url(t->repo)) {
		/* The worker works in the node's mirror and pushes to the
		 * origin (without its #BRANCH, which only chose the base). */
		char *repo = task_repo_dir(t->repo);

		s->repo = config_text(repo != NULL ? repo : t->repo);
		s->origin = xstrndup(t->repo, strcspn(t->repo, "#"));
		free(repo);
	} else
		s->repo = config_text(t->repo);
	s->base_commit = config_text(t->base_commit);
	s->worktree = xasprintf(
	    "%s/worktrees/task-%lld", cfg.state_dir, (long long)t->id);
	s->ref = xasprintf("refs/orch/tasks/%lld", (long long)t->id);
	s->branch = xasprintf("orch/task-%lld", (long long)t->id);
	s->plan = config_text(t->text[TC_PLAN]);
	s->plan_rejection_reason =
	    config_text(t->text[TC_PLAN_REJECTION_REASON]);
	s->feedback = config_text(t->text[TC_FEEDBACK]);
	s->review = config_text(t->text[TC_REVIEW]);
	if (t->verify_command != NULL) {
		free(s->verify_command);
		s->verify_command = config_text(t->verify_command);
	}
	s->round = (uint64_t)sc.rounds;
	s->snapshot = config_text(sc.snapshot);
	free(sc.snapshot);
	s->workspace_clean = clean ? 1 : 0;
	/* The fence of the refs the worker pushes (0 on a single service). */
	s->lease_epoch = (uint64_t)store_lease_epoch(sched_st, t->id);
	/* Marks the commits the worker makes as this state directory's. */
	if (store_state_id(sched_st, &id) == 0) {
		s->state_id = config_text(id);
		free(id);
	} else
		log_warnx("task %lld: no state id: %s", (long long)t->id,
		    store_error(sched_st));
}

/*
 * Commit sched_start's transaction (open: one is open); 0 or -1, logged
 * unless storage is away.
 */
static int
sched_start_commit(int64_t id, int open, enum wstate next)
{
	if (!open || store_commit(sched_st) == 0)
		return 0;
	store_rollback(sched_st);
	if (!sched_storage_failed())
		log_warnx("task %lld: cannot start %s: %s", (long long)id,
		    wstate_name(next), store_error(sched_st));
	return -1;
}

/*
 * Start the next stage of task id if it has one.  Entering the stage's
 * state and the "worker N started" event are one commit: the worker is
 * spawned inside the transaction, and it is told to go on (START, after its
 * HELLO, from a later turn of the loop) only once that is committed.  Every
 * way out before the spawn commits the state change alone, as it always
 * was.
 *
 * The commit is lazy (store_begin_lazy): it reaches the disk with the
 * stage's first durable commit, a journal entry, checkpoint or result,
 * before which nothing of the stage was kept.  An OS crash that loses it
 * loses the service too, and the stage simply starts again.  One flush
 * less per stage, and none for a thousand tasks resumed at once.
 */
static void
sched_start(int64_t id)
{
	struct task *t;
	struct worker *w;
	struct sched_worker *sw;
	enum stage stage;
	char *cause;
	enum wstate next = WS_MAX;
	int open = 0;

	if (store_task_get(sched_st, id, &t) == -1 || t == NULL) {
		log_warnx("task %lld: cannot load: %s", (long long)id,
		    store_error(sched_st));
		return;
	}
	if (t->repo == NULL || t->base_commit == NULL) {
		/* A task of the Python orchestrator's database: no stage can
		 * run until it is given one. */
		char *why = task_no_repo(id);
		task_free(t);
		sched_fail(id, why);
		free(why);
		return;
	}
	for (unsigned i = 0; i < STAGE_MAX; i++) {
		if (t->state == sched_stages[i].before)
			next = sched_stages[i].running;
	}
	if (next != WS_MAX) {
		int rc = store_begin_lazy(sched_st);
		if (rc == 0)
			rc = task_enter(sched_st, t, next, 1, NULL);
		task_free(t);
		t = NULL;
		if (rc == 0 &&
		    (store_task_get(sched_st, id, &t) == -1 || t == NULL))
			rc = -1;
		if (rc == -1) {
			task_free(t);
			store_rollback(sched_st);
			if (!sched_storage_failed())
				log_warnx("task %lld: cannot start %s: %s",
				    (long long)id, wstate_name(next),
				    store_error(sched_st));
			return;
		}
		open = 1;
	}
	if (sched_running(t->state, &stage) == -1 ||
	    t->ival[TI_BUDGET_PAUSED]) {
		(void)sched_start_commit(id, open, next);
		task_free(t);
		return;
	}
	/* Past its budget already (resumed, or the budget was lowered). */
	char *over = task_over_budget(sched_st, t);
	if (over != NULL) {
		if (sched_start_commit(id, open, next) == 0)
			sched_budget_pause(t, over);
		free(over);
		task_free(t);
		return;
	}
	sw = xcalloc(1, sizeof *sw);
	sw->stage = stage;
	sw->next_seq = 1;
	w = proc_spawn(sched_base, id, stage_name(stage), t->ival[TI_STAGE_RUN],
	    &sched_proc_cbs, sw, &cause);
	if (w == NULL) {
		free(sw);
		if (sched_start_commit(id, open, next) == 0)
			sched_fail(id, cause);
		free(cause);
		task_free(t);
		return;
	}
	sw->ws_clean = sched_clean_take(id);
	sw->started = sw->last_sent = metrics_now();
	metrics_worker_started(stage, t->ival[TI_STAGE_RETRIES] > 0);
	if (sched_opts.nodes)
		sched_event(id, EV_INFO, stage_name(stage),
		    "worker %d started on node %s (run %lld%s)",
		    (int)proc_pid(w), cfg.node_name,
		    (long long)t->ival[TI_STAGE_RUN],
		    t->ival[TI_STAGE_RETRIES] > 0 ? ", restarted" : "");
	else
		sched_event(id, EV_INFO, stage_name(stage),
		    "worker %d started (run %lld%s)", (int)proc_pid(w),
		    (long long)t->ival[TI_STAGE_RUN],
		    t->ival[TI_STAGE_RETRIES] > 0 ? ", restarted" : "");
	if (sched_start_commit(id, open, next) == -1) {
		/* Nothing of the stage was committed: the worker, which has
		 * not been told to start, is stopped, and the task tried
		 * again (sched_worker_exit kicks it). */
		sw->stopping = 1;
		proc_kill(w, NULL);
	}
	task_free(t);
}

/*
 * Whether task may start now: it has no worker, is not waiting out a
 * restart's backoff and is not held.  Starts it if so; 1 when it runs.
 */
static int
sched_try(int64_t task, uint64_t now)
{
	if (proc_find_task(task) != NULL || sched_backing_off(task, now) ||
	    sched_is_held(task))
		return 0;
	if (sched_opts.nodes && !store_lease_held(sched_st, task))
		return 0;
	if (sched_opts.nodes)
		sched_lost_forget(task); /* held: a new epoch */
	sched_backoff_clear(task);
	sched_start(task);
	if (proc_find_task(task) != NULL)
		return 1;
	/* Not running here (at a gate, done, failed, paused at a budget,
	 * or waiting out a restart's backoff): let the others have it. */
	if (sched_opts.nodes && !sched_backing_off(task, now) &&
	    store_lease_held(sched_st, task) &&
	    store_lease_release(sched_st, task) == -1)
		log_warnx("task %lld: cannot release its lease: %s",
		    (long long)task, store_error(sched_st));
	return 0;
}

/*
 * A node has claimed task: when it was in the middle of a stage (its last
 * node died or let it go, or this service was restarted), say that it
 * resumes, as a single service says at start.
 */
static void
sched_claimed(int64_t id)
{
	struct task *t = NULL;

	if (store_task_get(sched_st, id, &t) == 0 && t != NULL &&
	    t->state != WS_PLAN_APPROVED)
		sched_resume_cb(t, NULL);
	task_free(t);
}

/*
 * Walk every runnable task in the store, oldest first, a page at a time,
 * starting those that may start until the slots are full.  The tasks that
 * already run are among the runnable ones: paging past them is what lets
 * more than a page's worth run at once.  Returns 1 when it saw them all.
 */
static int
sched_walk(unsigned *running, uint64_t now)
{
	int64_t ids[256], after = 0;
	size_t n, nleases, want;

	if (sched_opts.nodes) {
		/*
		 * Claim what this node has room for, no more: the leases it
		 * holds (running, starting, backing off) fill its slots.
		 * Each claimed task starts now or its lease goes back.
		 */
		nleases = store_lease_count(sched_st);
		if (nleases >= cfg.max_workers)
			return 0;
		want = cfg.max_workers - nleases;
		if (want > nitems(ids))
			want = nitems(ids);
		if (store_lease_claim(sched_st, 0, want, cfg.max_tasks_per_repo,
		        ids, &n) == -1) {
			if (!sched_storage_failed())
				log_warnx("cannot claim tasks: %s",
				    store_error(sched_st));
			return 0;
		}
		for (size_t i = 0; i < n; i++) {
			sched_claimed(ids[i]);
			*running += (unsigned)sched_try(ids[i], now);
		}
		/* A full claim: there may be more for the freed slots. */
		return n < want;
	}

	do {
		if (store_task_runnable(
		        sched_st, after, ids, nitems(ids), &n) == -1) {
			log_warnx("cannot list runnable tasks: %s",
			    store_error(sched_st));
			return 0;
		}
		for (size_t i = 0; i < n; i++) {
			if (*running >= cfg.max_workers)
				return 0;
			*running += (unsigned)sched_try(ids[i], now);
		}
		if (n > 0)
			after = ids[n - 1];
	} while (n == nitems(ids));
	return 1;
}

static void
sched_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	unsigned running = proc_count();
	uint64_t now = now_ms();
	size_t i;

	(void)fd;
	(void)what;
	(void)arg;
	if (sched_stopping || sched_paused || sched_blind)
		return;
	if (running >= cfg.max_workers)
		return;
	if (sched_opts.only_task != 0) {
		int64_t id;
		size_t n;

		if (sched_opts.nodes &&
		    proc_find_task(sched_opts.only_task) == NULL &&
		    !store_lease_held(sched_st, sched_opts.only_task) &&
		    store_lease_claim(sched_st, sched_opts.only_task, 1,
		        cfg.max_tasks_per_repo, &id, &n) == -1)
			log_warnx("task %lld: cannot claim it: %s",
			    (long long)sched_opts.only_task,
			    store_error(sched_st));
		sched_try(sched_opts.only_task, now);
		nsched_dirty = 0;
		return;
	}
	for (i = 0; i < nsched_dirty && running < cfg.max_workers; i++)
		running += (unsigned)sched_try(sched_dirty[i], now);
	if (i > 0) { /* sched_dirty is NULL until the first task is noted */
		memmove(sched_dirty, sched_dirty + i,
		    (nsched_dirty - i) * sizeof *sched_dirty);
		nsched_dirty -= i;
	}
	if (sched_rescan && running < cfg.max_workers &&
	    sched_walk(&running, now))
		sched_rescan = 0;
}
/*
 * The leases this node holds but does not use: no worker, not waiting out
 * a restart's backoff.  The heartbeat renews every lease the node owns, so
 * one whose release failed (the database away at that moment) would be
 * kept alive forever with nothing running it: each beat starts such a task
 * or lets its lease go again, until that gets through.
 */
static void
sched_orphans(uint64_t now)
{
	int64_t ids[256];
	size_t n;

	if (sched_stopping || sched_paused || sched_blind)
		return;
	n = store_lease_list(sched_st, ids, nitems(ids));
	if (n > nitems(ids))
		n = nitems(ids); /* the rest at the next beat */
	for (size_t i = 0; i < n; i++) {
		if (proc_find_task(ids[i]) != NULL ||
		    sched_backing_off(ids[i], now))
			continue;
		/* sched_try starts it, or lets it go when it cannot (and
		 * says so when that fails: tried again at the next beat). */
		if (!sched_is_held(ids[i])) {
			(void)sched_try(ids[i], now);
			continue;
		}
		if (store_lease_release(sched_st, ids[i]) == -1) {
			if (!sched_storage_failed())
				log_warnx("task %lld: cannot release its lease"
				          " (tried again at the next beat): %s",
				    (long long)ids[i], store_error(sched_st));
			return;
		}
	}
}

/*
 * The heartbeat: the node's row and its leases renewed; the tasks another
 * node has taken meanwhile are let go (their workers stopped, nothing
 * written).  Every beat also looks for work (expired leases of a node
 * that died are taken so, within a lease and a beat): the slow poll
 * behind the notifications.
 */
static void
sched_beat(uint64_t now)
{
	int64_t *lost;
	size_t nlost;
	int rc;

	rc = store_node_beat(sched_st, proc_count(), &lost, &nlost);
	if (rc == -1) {
		if (!sched_beat_warned)
			log_warnx("heartbeat: cannot renew this node's leases:"
			          " %s",
			    store_error(sched_st));
		sched_beat_warned = 1;
		/* Try again soon: the leases are running out. */
		sched_beat_at = now + 500;
		return;
	}
	if (rc == 1 && !sched_stopping) {
		log_warnx("node %s: another service started under this name"
		          " after this one had lost its leases: stopping",
		    cfg.node_name);
		for (size_t i = 0; i < nlost; i++)
			sched_lease_lost(lost[i]);
		free(lost);
		/* As a SIGTERM: the service's own way out. */
		raise(SIGTERM);
		return;
	}
	for (size_t i = 0; i < nlost; i++)
		sched_lease_lost(lost[i]);
	free(lost);
	if (sched_beat_warned || sched_blind)
		log_info("heartbeat: this node's leases are renewed again%s",
		    sched_blind ? ": starting workers again" : "");
	sched_beat_warned = 0;
	sched_blind = 0;
	sched_beat_ok = now;
	sched_beat_at = now + (uint64_t)cfg.lease_s * 1000 / 3;
	sched_orphans(now);
}

/*
 * Blind: this node has not renewed its leases for two thirds of one.
 * They may be running out unrenewed, and another node may soon take the
 * tasks: every worker is killed at once (its process group, SIGKILL), not
 * stopped at a safe point, which may be later than the lease.  The clock
 * is read here, not passed: a call to the database may have waited.
 */
static void
sched_blind_check(void)
{
	uint64_t now = now_ms();
	struct worker *w;

	if (!sched_opts.nodes || sched_blind ||
	    now - sched_beat_ok <= (uint64_t)cfg.lease_s * 1000 * 2 / 3)
		return;
	log_warnx("this node has not renewed its leases for %llu ms"
	          " (ORCH_LEASE_S=%u): stopping its workers until it can",
	    (unsigned long long)(now - sched_beat_ok), cfg.lease_s);
	sched_blind = 1;
	for (w = proc_next(NULL); w != NULL; w = proc_next(w)) {
		struct sched_worker *sw = proc_arg(w);

		if (!proc_reaped(w) && !sw->stopping) {
			sw->stopping = 1;
			proc_kill(w, NULL);
		}
	}
	/*
	 * Reaped here, not at the loop's next turn: the calls to an absent
	 * database that follow may each wait a while, and until then the
	 * workers would linger as zombies, not known gone.
	 */
	for (int i = 0; i < 50; i++) {
		int left = 0;

		proc_reap();
		for (w = proc_next(NULL); w != NULL; w = proc_next(w))
			left += !proc_reaped(w);
		if (left == 0)
			break;
		usleep(10000);
	}
}

static void
sched_node_tick(uint64_t now)
{
	int64_t ids[64];
	size_t n;
	int more;

	if (now >= sched_beat_at)
		sched_beat(now);
	/*
	 * The slow poll: a node that died sends no notification, and its
	 * tasks are free once their leases expire.  Every third of a lease,
	 * at most 2 s (another node's lease may be shorter than ours), and
	 * never more than once a second.
	 */
	if (now >= sched_poll_at) {
		uint64_t every = (uint64_t)cfg.lease_s * 1000 / 3;

		sched_poll_at = now + (every < 1000      ? 1000
		                          : every > 2000 ? 2000
		                                         : every);
		if (!sched_blind &&
		    store_lease_count(sched_st) < cfg.max_workers)
			sched_kick();
	}
	sched_blind_check();
	/* What others did to tasks (submit, approve, cancel, a lease let
	 * go): read from the connection, no query sent. */
	if (store_tasks_changed(sched_st, ids, nitems(ids), &n, &more) == -1)
		return;
	for (size_t i = 0; i < n; i++) {
		if (store_lease_held(sched_st, ids[i]))
			sched_task_changed(ids[i]);
		else
			more = 1;
	}
	if (more)
		sched_kick();
}

static void
sched_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = now_ms();

	(void)fd;
	(void)what;
	(void)arg;
	/* Paused, workers wait for their ACK without a heartbeat: their
	 * silence counts from the resume on. */
	if (sched_paused ||
	    now - sched_resumed_at < (uint64_t)cfg.worker_timeout_s * 1000)
		proc_watchdog(UINT64_MAX);
	else
		proc_watchdog((uint64_t)cfg.worker_timeout_s * 1000);
	/* A probe may wait for the database: looked at after it.  (Not
	 * before: a node woken from a pause learns from its heartbeat
	 * which leases it lost, and says so, before it would go blind.) */
	if (sched_paused && now >= sched_probe_at) {
		sched_probe();
		sched_blind_check();
	}
	if (sched_opts.nodes)
		sched_node_tick(now);
	/* A lazy commit no ACK waits for (a lone log line, a stage's start)
	 * waits no longer than a tick for its sync. */
	sched_flush_soon();
	if (sched_stopping && now > sched_stop_deadline) {
		struct worker *w;
		for (w = proc_next(NULL); w != NULL; w = proc_next(w)) {
			if (!proc_reaped(w))
				proc_kill(w, NULL);
		}
	}
	for (size_t i = 0; i < nbackoffs; i++)
		if (now >= backoffs[i].until)
			sched_kick_task(backoffs[i].task);
}

static void
sched_ack_send(struct worker *w, uint64_t seq)
{
	struct sched_worker *sw = proc_arg(w);
	struct proto_msg m;

	sw->last_sent = metrics_now();
	proto_msg_init(&m, PROTO_ACK);
	m.u[PF_SEQ] = seq;
	proc_send(w, &m);
	proto_msg_clear(&m);
}

/* Arm the group's flush (see sched_flush_ev) if a lazy commit waits. */
static void
sched_flush_soon(void)
{
	struct timeval tv = {0, 0};
	unsigned n;

	if (sched_flush_armed || !store_flush_pending(sched_st))
		return;
	sched_flush_armed = 1;
	n = proc_count();
	if (n < SCHED_GROUP_FROM) {
		event_active(sched_flush_ev, EV_TIMEOUT, 1);
		return;
	}
	tv.tv_usec = n < SCHED_GROUP_MAX_US / SCHED_GROUP_US
	                 ? (suseconds_t)n * SCHED_GROUP_US
	                 : SCHED_GROUP_MAX_US;
	evtimer_add(sched_flush_ev, &tv);
}

/* Acknowledge a commit: now if it is durable, else after the flush. */
static void
sched_ack(struct worker *w, uint64_t seq)
{
	struct sched_worker *sw = proc_arg(w);

	if (!store_flush_pending(sched_st)) {
		sched_ack_send(w, seq);
		return;
	}
	if (nacks == acks_cap) {
		acks_cap = acks_cap ? acks_cap * 2 : 64;
		acks = xrealloc(acks, acks_cap * sizeof *acks);
	}
	/* A worker waits for each ACK, but one that does not gets them all,
	 * in order. */
	acks[nacks++] = (struct ack_wait){w, sw, seq};
	sw->ack_waits++;
	sched_flush_soon();
}

/*
 * The sync cannot be taken back: what failed to reach the disk may be
 * gone from the page cache too, so a sync that seems to work later proves
 * nothing (PostgreSQL stops the same way).  Stopping before any waiting
 * ACK is sent keeps every worker from going on; the next start resumes
 * from what the database holds.
 */
void
sched_flush(void)
{
	if (sched_st == NULL)
		return;
	if (sched_flush_armed) {
		event_del(sched_flush_ev);
		sched_flush_armed = 0;
	}
	if (store_flush(sched_st) == -1)
		fatalx("cannot sync the database: %s; stopping so that no "
		       "worker goes on from a commit that may not be on disk "
		       "(check the disk, then start the service again: it "
		       "resumes every task from what was kept)",
		    store_error(sched_st));
	for (size_t i = 0; i < nacks; i++) {
		acks[i].sw->ack_waits = 0;
		sched_ack_send(acks[i].w, acks[i].seq);
	}
	nacks = 0;
}

static void
sched_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sched_flush();
}

static int
sched_replay_cb(const struct journal_entry *je, void *arg)
{
	struct worker *w = arg;
	struct sched_worker *sw = proc_arg(w);
	struct proto_msg m;

	proto_msg_init(&m, PROTO_REPLAY);
	m.u[PF_SEQ] = (uint64_t)je->seq;
	proto_set_str(&m, PF_KIND, je->kind);
	proto_set_str(&m, PF_DATA, je->data);
	proc_send(w, &m);
	proto_msg_clear(&m);
	sw->next_seq = je->seq + 1;
	return 0;
}

static int
sched_count_cb(const struct journal_entry *je, void *arg)
{
	(void)je;
	(*(uint64_t *)arg)++;
	return 0;
}

#define SCHED_RESTARTING "; restarting from the last checkpoint"

static int
sched_last_error_cb(const struct event_row *ev, void *arg)
{
	char **why = arg;

	if (strcmp(ev->kind, "error") == 0) {
		free(*why);
		*why = xstrdup(ev->text);
		/* Our own words after the failure (sched_worker_exit): the
		 * restart event says them its own way. */
		char *tail = strstr(*why, SCHED_RESTARTING);
		if (tail != NULL)
			*tail = '\0';
	}
	return 0;
}

/*
 * A stage that starts again on a journal (a restart after a crash, a resume
 * after the service stopped or the task failed) says so: why, from which
 * checkpoint, how many journaled steps are replayed without asking the
 * model or running a command again, and the snapshot the workspace goes
 * back to.  The worker replays exactly the entries sent after START, or
 * fails the stage.
 */
static void
sched_narrate_restart(const struct task *t, enum stage stage, uint64_t count)
{
	struct task_point tp;
	char *why = NULL, *text, *where, *reason;
	json_t *d;
	int64_t attempt = t->ival[TI_STAGE_RETRIES];

	if (attempt == 0 && count == 0)
		return;
	if (task_point_get(sched_st, t, &tp) == -1) {
		task_point_clear(&tp);
		return;
	}
	d = json_pack(
	    "{s:b,s:I}", "restart", 1, "attempt", (json_int_t)attempt);
	if (attempt > 0) {
		store_event_list(
		    sched_st, t->id, 0, 0, sched_last_error_cb, &why);
		if (why != NULL) {
			size_t keep = utf8_head(why, strlen(why), 300);
			reason = xasprintf("restart %lld of %u, after: %.*s%s",
			    (long long)attempt, cfg.max_retries, (int)keep, why,
			    keep < strlen(why) ? "..." : "");
		} else
			reason = xasprintf("restart %lld of %u after a failure",
			    (long long)attempt, cfg.max_retries);
	} else
		reason = xstrdup("resumed: the service started again or the "
		                 "task was resumed");
	json_object_set_new(d, "reason", task_json_text(reason));
	where = task_point_text(&tp, d);
	text = xasprintf(
	    "%s restarted (%s): %s", stage_name(stage), reason, where);
	if (store_event_add_data(
	        sched_st, t->id, EV_INFO, stage_name(stage), text, d) == -1 &&
	    !sched_storage_failed())
		log_warnx("task %lld: cannot record event: %s",
		    (long long)t->id, store_error(sched_st));
	log_task(
	    LOG_LEVEL_INFO, (uint64_t)t->id, stage_name(stage), "%s", text);
	json_decref(d);
	free(text);
	free(where);
	free(reason);
	free(why);
	task_point_clear(&tp);
}

/* HELLO: check the version, then send START and the journal to replay. */
static void
sched_hello(struct worker *w, const struct proto_msg *m)
{
	struct sched_worker *sw = proc_arg(w);
	struct proto_msg out;
	struct msg_start start;
	struct task *t;
	uint64_t count = 0;

	if (m->u[PF_VERSION] != PROTO_VERSION) {
		char *why = xasprintf("worker speaks protocol %llu, the "
		                      "supervisor %d: install matching "
		                      "programs",
		    (unsigned long long)m->u[PF_VERSION], PROTO_VERSION);
		proc_kill(w, why);
		free(why);
		return;
	}
	if (store_task_get(sched_st, proc_task(w), &t) == -1 || t == NULL ||
	    store_journal_list(sched_st, proc_task(w), proc_run(w),
	        sched_count_cb, &count) == -1) {
		task_free(t);
		proc_kill(w, "cannot read the task from the database");
		return;
	}
	sw->hello = 1;
	sched_start_msg(t, sw->stage, sw->ws_clean, &start);
	start.run = (uint64_t)proc_run(w);
	start.attempt = (uint64_t)t->ival[TI_STAGE_RETRIES];
	start.count = count;
	proto_start_set(&out, &start);
	msg_start_clear(&start);
	if (proto_str_total(&out) > PROTO_MAX_DATA) {
		/* The task's texts (request, plan, review, feedback) are too
		 * large to start a worker with: every restart would be
		 * the same. */
		char *why = xasprintf("the task's request, plan and review "
		                      "are %zu bytes together, over the %u a "
		                      "worker can be started with",
		    proto_str_total(&out), PROTO_MAX_DATA);
		proto_msg_clear(&out);
		task_free(t);
		sw->stopping = 1; /* the task's failure is said below */
		proc_kill(w, why);
		sched_event(proc_task(w), EV_ERROR, proc_stage(w), "%s", why);
		sched_fail(proc_task(w), why);
		free(why);
		return;
	}
	sched_narrate_restart(t, sw->stage, count);
	proc_send(w, &out);
	proto_msg_clear(&out);
	task_free(t);
	store_journal_list(
	    sched_st, proc_task(w), proc_run(w), sched_replay_cb, w);
	sw->last_sent = metrics_now();
}

static const char *
sched_jstr(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/*
 * Applying a stage's result to the workflow, in the caller's transaction:
 * one function per stage.  Each returns -1 on a database error; a result
 * that makes no sense for the stage fails the task instead.
 */
/* The plan is recorded; a person approves it unless auto-approve says. */
static int
sched_apply_planning(const struct task *t, json_t *r)
{
	struct store *st = sched_st;
	int64_t id = t->id;
	int rc;

	const char *plan = sched_jstr(r, "plan");
	if (plan == NULL)
		return sched_fail_tx(t, "planning ended without a plan");
	rc = store_task_set_text(st, id, TC_PLAN, plan);
	if (rc == 0)
		rc =
		    task_checkpoint(st, id, "planning", "after_planning", NULL);
	if (rc == -1)
		return -1;
	return sched_approval(t, STAGE_PLANNING);
}

/*
 * The implementer finished twice without a change (it was told the first
 * time): the task fails saying "no changes", plainly, in its
 * error_details (show, the API, the notification) and its log; no result
 * branch was made, and no reviewer is asked to approve nothing.  Failed,
 * not completed: completed promises a result branch to merge.  A resume
 * starts implementing again from the plan, with a new journal (replaying
 * this one would only finish empty again).
 */
static int
sched_no_changes(const struct task *t, json_t *r, const char *sum)
{
	size_t keep = utf8_head(sum, strlen(sum), 300);
	char *why, *s;
	int rc;

	s = json_dumps(r, JSON_COMPACT);
	rc = task_checkpoint(
	    sched_st, t->id, "implementing", "after_implementation", s);
	free(s);
	if (rc == -1)
		return -1;
	why = xasprintf("no changes: the implementer finished twice without "
	                "changing any file (it was told the first time), so "
	                "no result branch was made; its summary said: "
	                "%.*s%s",
	    (int)keep, sum, keep < strlen(sum) ? "..." : "");
	rc = sched_fail_tx(t, why);
	free(why);
	if (rc == 0)
		rc = store_task_set_int(
		    sched_st, t->id, TI_FAILED_STATE, WS_PLAN_APPROVED);
	return rc;
}

/* The change is recorded; a person approves it unless auto-approve says. */
static int
sched_apply_implementing(const struct task *t, json_t *r)
{
	struct store *st = sched_st;
	int64_t id = t->id;
	int rc;
	char *s;

	const char *sum = sched_jstr(r, "summary");
	const char *stat = sched_jstr(r, "diffstat");
	if (sum == NULL)
		return sched_fail_tx(
		    t, "implementation ended without a summary");
	if (json_is_true(json_object_get(r, "no_changes")))
		return sched_no_changes(t, r, sum);
	s = xasprintf("%s%s%s", sum, stat ? "\n\n" : "", stat ? stat : "");
	rc = store_task_set_text(st, id, TC_IMPLEMENTATION, s);
	free(s);
	if (rc == 0)
		rc = store_task_set_text(st, id, TC_FEEDBACK, NULL);
	if (rc == 0) {
		s = json_dumps(r, JSON_COMPACT);
		rc = task_checkpoint(
		    st, id, "implementing", "after_implementation", s);
		free(s);
	}
	if (rc == -1)
		return -1;
	return sched_approval(t, STAGE_IMPLEMENTING);
}

/* Keep a stage's result r as the task's column col and as checkpoint name,
 * in the caller's transaction. */
static int
sched_keep(const struct task *t, enum task_col col, const char *name, json_t *r)
{
	char *s = json_dumps(r, JSON_COMPACT);
	int rc = store_task_set_text(sched_st, t->id, col, s);

	if (rc == 0)
		rc = task_checkpoint(
		    sched_st, t->id, wstate_stage(t->state), name, s);
	free(s);
	return rc;
}

/* Send the task back to implementing with feedback: head, then text. */
static int
sched_rework(
    const struct task *t, const char *head, const char *text, const char *why)
{
	char *s = xasprintf("%s\n%s", head, text ? text : "");
	int rc = store_task_set_text(sched_st, t->id, TC_FEEDBACK, s);

	free(s);
	if (rc == -1)
		return -1;
	return task_enter(sched_st, t, WS_IMPLEMENTING, 1, why);
}

/* An approving review moves on to verifying; one that asks for changes
 * sends the task back to implementing, up to ORCH_MAX_REVIEW_ROUNDS. */
static int
sched_apply_reviewing(const struct task *t, json_t *r)
{
	struct store *st = sched_st;
	const char *verdict = sched_jstr(r, "verdict");
	int64_t rounds;

	if (verdict == NULL)
		return sched_fail_tx(t, "review ended without a verdict");
	if (sched_keep(t, TC_REVIEW, "after_review", r) == -1)
		return -1;
	if (strcmp(verdict, "approve") == 0)
		return task_enter(st, t, WS_VERIFYING, 1, "review approved");
	rounds = t->ival[TI_REVIEW_ROUNDS] + 1;
	if (store_task_set_int(st, t->id, TI_REVIEW_ROUNDS, rounds) == -1)
		return -1;
	if (rounds > cfg.max_review_rounds)
		return task_enter(st, t, WS_IMPLEMENTATION_AWAITING_APPROVAL, 0,
		    "the review still asks for changes after "
		    "ORCH_MAX_REVIEW_ROUNDS rounds: a person decides "
		    "(approve overrides the review)");
	return sched_rework(t,
	    "The reviewer asked for changes:", sched_jstr(r, "comments"),
	    "review asked for changes");
}

/* A passed (or skipped) verification completes the task; a failed one
 * goes back to implementing, up to ORCH_MAX_VERIFY_ROUNDS. */
static int
sched_apply_verifying(const struct task *t, json_t *r)
{
	struct store *st = sched_st;
	int64_t id = t->id;
	int rc;
	char *s;

	const char *status = sched_jstr(r, "status");
	if (status == NULL)
		return sched_fail_tx(t, "verification ended without a status");
	if (sched_keep(t, TC_VERIFICATION_RESULT, "after_verification", r) ==
	    -1)
		return -1;
	if (strcmp(status, "failed") != 0)
		return task_enter(st, t, WS_COMPLETED, 0,
		    strcmp(status, "skipped") == 0
		        ? "completed (verification skipped: no "
		          "command)"
		        : "completed (verification passed)");
	int64_t rounds = t->ival[TI_VERIFY_ROUNDS] + 1;
	if (store_task_set_int(st, id, TI_VERIFY_ROUNDS, rounds) == -1)
		return -1;
	if (rounds > cfg.max_verify_rounds) {
		json_t *es = json_object_get(r, "exit_status");
		s = xasprintf("verification (%s) still fails after %lld "
		              "rounds (ORCH_MAX_VERIFY_ROUNDS=%u); the "
		              "last exit status was %s",
		    sched_jstr(r, "command") ? sched_jstr(r, "command") : "?",
		    (long long)rounds, cfg.max_verify_rounds,
		    json_is_integer(es) ? "" : "none (killed)");
		if (json_is_integer(es)) {
			char *t2 = xasprintf(
			    "%s%lld", s, (long long)json_integer_value(es));
			free(s);
			s = t2;
		}
		rc = sched_fail_tx(t, s);
		free(s);
		return rc;
	}
	return sched_rework(t,
	    "The verification command failed:", sched_jstr(r, "output_tail"),
	    "verification failed, implementing again");
}

static void
sched_result(struct worker *w, struct proto_msg *m)
{
	struct sched_worker *sw = proc_arg(w);
	enum stage stage;
	struct task *t;
	json_t *r = NULL;
	json_error_t jerr;
	int rc;

	/* Lazy: its ACK waits for the group's flush (sched_ack), and what the
	 * next stage commits is on disk only after it (the log is written in
	 * order). */
	if (store_begin_lazy(sched_st) == -1)
		goto dberr;
	if (store_task_get(sched_st, proc_task(w), &t) == -1 || t == NULL) {
		store_rollback(sched_st);
		goto dberr;
	}
	if (t->ival[TI_BUDGET_PAUSED]) {
		/* It waits at its budget: the result (computed from journaled
		 * turns) is computed again when it goes on. */
		store_rollback(sched_st);
		task_free(t);
		sw->stopping = 1;
		proc_kill(w, NULL);
		return;
	}
	if (sched_running(t->state, &stage) == -1 || stage != sw->stage) {
		/* The task moved on (cancelled): the result is stale. */
		store_rollback(sched_st);
		task_free(t);
		sw->done = 1;
		sched_ack(w, 0);
		return;
	}
	if (!m->u[PF_OK]) {
		const char *why = m->s[PF_TEXT] && *m->s[PF_TEXT]
		                      ? m->s[PF_TEXT]
		                      : "the stage failed";
		rc = sched_fail_tx(t, why);
	} else if ((r = json_loads(m->s[PF_DATA], JSON_REJECT_DUPLICATES,
	                &jerr)) == NULL ||
	           !json_is_object(r)) {
		rc = sched_fail_tx(t, "the worker's result is not a JSON "
		                      "object");
	} else
		rc = sched_stages[stage].apply(t, r);
	json_decref(r);
	if (rc == -1 || store_commit(sched_st) == -1) {
		store_rollback(sched_st);
		task_free(t);
		goto dberr;
	}
	task_free(t);
	sw->done = 1;
	metrics_observe_stage(stage, metrics_now() - sw->started);
	/*
	 * A worker touches the worktree no more once it has sent its
	 * result, and every change it made is in its last snapshot, except
	 * the verify command's.  (Marked now: the next stage may start before
	 * this worker has exited.)
	 */
	if (sched_stages[stage].leaves_clean)
		sched_clean_put(proc_task(w));
	sched_ack(w, 0);
	sched_kick_task(proc_task(w));
	return;
dberr:
	/* The database is away: the worker waits for it (the result is
	 * looked at again from the start, see sched_release). */
	if (sched_storage_failed()) {
		sched_hold(w, m);
		return;
	}
	/* Refused: the worker is killed and the stage runs again from its
	 * journal. */
	log_warnx("task %lld: cannot commit result: %s",
	    (long long)proc_task(w), store_error(sched_st));
	proc_kill(w, "the database refused the stage result");
}

/*
 * A model turn, in its journal entry's transaction: its row in turns (for
 * costs) and its line in the log (tokens, time, cost when priced).
 */
static int
sched_turn(struct worker *w, const struct proto_msg *m)
{
	const char *model = cfg.model != NULL ? cfg.model : cfg.provider;
	int64_t in = (int64_t)m->u[PF_TOKENS_IN];
	int64_t out = (int64_t)m->u[PF_TOKENS_OUT];
	char *fallback;
	int64_t ms = narrate_reply(m->s[PF_DATA], &fallback);
	json_t *d;
	char *text;
	int rc;

	if (model == NULL)
		model = "unknown";
	/* A fallback model answered: its name, if it is one of ours (the
	 * reply is the worker's word). */
	if (fallback != NULL &&
	    config_fallback_has(cfg.llm_fallback_models, fallback))
		model = fallback;
	rc = store_turn_add(
	    sched_st, proc_task(w), proc_stage(w), model, in, out, 0, ms);
	if (rc == -1) {
		free(fallback);
		return -1;
	}
	text = narrate_turn(model, in, out, ms, &d);
	rc = store_event_add_data(
	    sched_st, proc_task(w), EV_MODEL, proc_stage(w), text, d);
	free(text);
	free(fallback);
	json_decref(d);
	return rc;
}

/*
 * A journal entry and the result event it makes (narrate.c), in one
 * transaction committed before the worker is acknowledged: the log never
 * shows a result that was not journaled, nor misses one that was.
 */
static int
sched_journal_commit(struct worker *w, const struct proto_msg *m)
{
	char *text;
	json_t *facts;
	int has, rc;

	has = narrate_journal(m->s[PF_KIND], m->s[PF_DATA], &text, &facts) == 0;
	rc = store_begin_lazy(sched_st); /* durable before the ACK: sched_ack */
	if (rc == 0)
		rc = store_journal_add(sched_st, proc_task(w), proc_run(w),
		    (int64_t)m->u[PF_SEQ], proc_stage(w), m->s[PF_KIND],
		    m->s[PF_DATA], (int64_t)m->u[PF_TOKENS_IN],
		    (int64_t)m->u[PF_TOKENS_OUT]);
	if (rc == 0 && has)
		rc = store_event_add_data(sched_st, proc_task(w), EV_RESULT,
		    proc_stage(w), text, facts);
	if (rc == 0 && strcmp(m->s[PF_KIND], "reply") == 0)
		rc = sched_turn(w, m);
	if (rc == 0)
		rc = store_commit(sched_st);
	if (rc == -1)
		store_rollback(sched_st);
	if (has) {
		free(text);
		json_decref(facts);
	}
	return rc;
}

/*
 * A task that reached its budget (tokens, or cost with prices) does not
 * fail: it waits for a person (status awaiting_approval, its workflow state
 * unchanged, the reason naming the budget), who raises it with `approve
 * --budget` or `--max-cost`, or cancels.  Its own transaction.
 */
static int
sched_budget_pause(const struct task *t, const char *why)
{
	char *text = xasprintf("waiting for a person: %s", why);
	int rc = store_begin(sched_st);

	if (rc == 0)
		rc = store_task_set_int(sched_st, t->id, TI_BUDGET_PAUSED, 1);
	if (rc == 0)
		rc = store_task_set_status(
		    sched_st, t->id, TS_AWAITING_APPROVAL);
	if (rc == 0)
		rc = store_event_add_state(
		    sched_st, t->id, t->state, wstate_stage(t->state), text);
	if (rc == 0)
		rc = store_commit(sched_st);
	if (rc == -1) {
		store_rollback(sched_st);
		if (!sched_storage_failed())
			log_warnx("task %lld: cannot pause it: %s",
			    (long long)t->id, store_error(sched_st));
	} else
		log_task(LOG_LEVEL_INFO, (uint64_t)t->id,
		    wstate_stage(t->state), "%s", text);
	free(text);
	return rc;
}

/*
 * After a model turn is committed: past its budget, the task waits and
 * its worker is asked to stop at its next safe point.  Every answered turn
 * is journaled, so going on later asks the model for none of them again.
 */
static void
sched_check_budget(struct worker *w)
{
	struct sched_worker *sw = proc_arg(w);
	struct proto_msg m;
	struct task *t;
	char *why;

	if (store_task_get(sched_st, proc_task(w), &t) == -1 || t == NULL)
		return;
	if ((why = task_over_budget(sched_st, t)) != NULL &&
	    sched_budget_pause(t, why) == 0) {
		sw->stopping = 1;
		proto_msg_init(&m, PROTO_STOP);
		proc_send(w, &m);
		proto_msg_clear(&m);
	}
	free(why);
	task_free(t);
}

static int
sched_journaled_cb(const struct journal_entry *je, void *arg)
{
	int64_t *seq = arg;

	if (je->seq == *seq)
		*seq = -1;
	return 0;
}

/* Whether the worker's journal entry seq is committed: 1, 0, or -1. */
static int
sched_journaled(struct worker *w, int64_t seq)
{
	if (store_journal_list(sched_st, proc_task(w), proc_run(w),
	        sched_journaled_cb, &seq) == -1)
		return -1;
	return seq == -1;
}

/*
 * The model calls: a worker's MODEL_CALL is relayed to the model process
 * under the worker's task, stage and run as we know them (not as it says),
 * and the answer back as MODEL_REPLY; the lines the call logs become the
 * task's events as a worker's LOG would.
 */
static void
sched_model_log(void *arg, int level, const char *text)
{
	struct worker *w = arg;

	sched_event(
	    proc_task(w), (enum event_kind)level, proc_stage(w), "%s", text);
}

static void
sched_model_reply(struct worker *w, int ok, int permanent, const char *text,
    const char *data, size_t datalen)
{
	struct sched_worker *sw = proc_arg(w);
	struct proto_msg m;

	proto_msg_init(&m, PROTO_MODEL_REPLY);
	m.u[PF_SEQ] = sw->model_seq;
	m.u[PF_OK] = ok ? 1 : 0;
	m.u[PF_PERMANENT] = permanent ? 1 : 0;
	proto_set_str(&m, PF_TEXT, text);
	proto_set_strn(&m, PF_DATA, data, datalen);
	/* last_sent stays: the model's latency (metrics) is measured
	 * from the worker's last ACK to its reply's journal entry. */
	sw->model_call = 0;
	proc_send(w, &m);
	proto_msg_clear(&m);
}

static void
sched_model_done(void *arg, int ok, int permanent, const char *text,
    const char *data, size_t datalen)
{
	sched_model_reply(arg, ok, permanent, text, data, datalen);
}

static const struct modelproc_cbs sched_model_cbs = {
    .on_log = sched_model_log,
    .on_done = sched_model_done,
};

static void
sched_model_call(struct worker *w, struct sched_worker *sw, struct proto_msg *m)
{
	if (sw->model_call != 0) {
		proc_kill(w, "protocol error: a model call before the last "
		             "one's reply");
		return;
	}
	/*
	 * A node that may have lost its leases asks the model nothing: one
	 * stopped past two thirds of a lease (SIGSTOP, a stall) reads the
	 * call its worker sent meanwhile before its timer has looked, and
	 * another node may have the task by now, the reply committed.  The
	 * check stops every worker, this one too.
	 */
	if (sched_opts.nodes) {
		sched_blind_check();
		if (sched_blind)
			return;
	}
	sw->model_seq = m->u[PF_SEQ];
	if (!modelproc_enabled()) {
		sched_model_reply(w, 0, 1, modelproc_why(), "", 0);
		return;
	}
	sw->model_call = modelproc_ask(proc_task(w), proc_stage(w), proc_run(w),
	    m->s[PF_DATA], m->slen[PF_DATA], &sched_model_cbs, w);
	if (sw->model_call == 0)
		sched_model_reply(w, 0, 1,
		    "the conversation is too large for a message to the "
		    "model process",
		    "", 0);
}

/* proc's on_msg: a message of one of our workers. */
static void
sched_worker_msg(struct worker *w, struct proto_msg *m, void *arg)
{
	struct sched_worker *sw = arg;
	int rc;

	if (m->type != PROTO_HELLO && !sw->hello) {
		proc_kill(w, "protocol error: message before HELLO");
		return;
	}
	if (sw->done && m->type != PROTO_HEARTBEAT) {
		proc_kill(w, "protocol error: message after RESULT");
		return;
	}
	if (m->type == PROTO_JOURNAL || m->type == PROTO_CHECKPOINT ||
	    m->type == PROTO_RESULT) {
		if (sw->held.type != PROTO_NONE) {
			proc_kill(w, "protocol error: a write before the last "
			             "one's ACK");
			return;
		}
		/* Paused: kept until the database can be written again. */
		if (sched_paused) {
			sched_hold(w, m);
			return;
		}
	}
	switch (m->type) {
	case PROTO_HELLO:
		if (sw->hello) {
			proc_kill(w, "protocol error: second HELLO");
			return;
		}
		sched_hello(w, m);
		return;
	case PROTO_HEARTBEAT:
		return;
	case PROTO_LOG:
		/* Results and checkpoints are the supervisor's to tell, from
		 * what it committed: a worker's LOG is a note, a call, or
		 * model text. */
		if (m->u[PF_LEVEL] > EV_TOOL || m->u[PF_LEVEL] == EV_STATE) {
			proc_kill(w, "protocol error: bad LOG kind");
			return;
		}
		sched_event(proc_task(w), (enum event_kind)m->u[PF_LEVEL],
		    proc_stage(w), "%s", m->s[PF_TEXT]);
		return;
	case PROTO_CHECKPOINT:
		if (m->slen[PF_NAME] == 0) {
			proc_kill(w, "protocol error: unnamed checkpoint");
			return;
		}
		/* Durable before its ACK leaves (sched_ack). */
		if (store_begin_lazy(sched_st) == -1 ||
		    task_checkpoint(sched_st, proc_task(w), proc_stage(w),
		        m->s[PF_NAME],
		        m->slen[PF_DATA] ? m->s[PF_DATA] : NULL) == -1 ||
		    store_commit(sched_st) == -1) {
			store_rollback(sched_st);
			if (sched_storage_failed()) {
				sched_hold(w, m);
				return;
			}
			log_warnx("task %lld: checkpoint: %s",
			    (long long)proc_task(w), store_error(sched_st));
			proc_kill(w, "the database refused a checkpoint");
			return;
		}
		sched_ack(w, m->u[PF_SEQ]);
		return;
	case PROTO_JOURNAL:
		if ((int64_t)m->u[PF_SEQ] != sw->next_seq ||
		    m->slen[PF_KIND] == 0) {
			char *why =
			    xasprintf("protocol error: journal seq %llu, "
			              "expected %lld",
			        (unsigned long long)m->u[PF_SEQ],
			        (long long)sw->next_seq);
			proc_kill(w, why);
			free(why);
			return;
		}
		/* Sent again after a commit whose outcome was lost with
		 * the connection: done already if the row is there. */
		rc =
		    sw->retried ? sched_journaled(w, (int64_t)m->u[PF_SEQ]) : 0;
		if (rc == 0)
			rc = sched_journal_commit(w, m);
		if (rc == -1) {
			if (sched_storage_failed()) {
				sched_hold(w, m);
				return;
			}
			log_warnx("task %lld: journal: %s",
			    (long long)proc_task(w), store_error(sched_st));
			proc_kill(w, "the database refused a journal entry");
			return;
		}
		sw->next_seq++;
		metrics_observe_journal(m->s[PF_KIND], m->s[PF_DATA],
		    metrics_now() - sw->last_sent, m->u[PF_TOKENS_IN],
		    m->u[PF_TOKENS_OUT]);
		sched_ack(w, m->u[PF_SEQ]);
		if (strcmp(m->s[PF_KIND], "reply") == 0)
			sched_check_budget(w);
		return;
	case PROTO_RESULT:
		sched_result(w, m);
		return;
	case PROTO_MODEL_CALL:
		sched_model_call(w, sw, m);
		return;
	default:
		proc_kill(w, "protocol error: unexpected message");
		return;
	}
}

/* proc's on_exit: one of our workers is reaped and its stream has ended. */
static void
sched_worker_exit(struct worker *w, void *arg)
{
	struct sched_worker *sw = arg;
	struct task *t = NULL;
	char *how, *tail, *why;
	uint64_t delay;
	int64_t id = proc_task(w);

	/* Killed by us: with the reason given to proc_kill, or none when we
	 * stopped it (a cancel, a shutdown, a pause, a budget). */
	if (proc_failure(w) != NULL ||
	    (sw->stopping && proc_reaped(w) && WIFSIGNALED(proc_status(w))))
		metrics_worker_killed(proc_failure(w));
	if (sw->done || sw->stopping) {
		if (proc_reaped(w) &&
		    !(WIFEXITED(proc_status(w)) &&
		        WEXITSTATUS(proc_status(w)) == 0) &&
		    !sw->stopping)
			log_task(LOG_LEVEL_WARN, (uint64_t)id, proc_stage(w),
			    "worker %d ended badly after its result",
			    (int)proc_pid(w));
		proc_free(w);
		sched_kick_task(id);
		return;
	}

	how = proc_describe(proc_status(w));
	/* The last lines it wrote to stderr, for error_details. */
	tail = proc_errtail(w, 5);
	why = xasprintf("worker %d %s%s%s%s%s%s", (int)proc_pid(w),
	    proc_failure(w) ? proc_failure(w) : how,
	    proc_failure(w) ? " (" : "", proc_failure(w) ? how : "",
	    proc_failure(w) ? ")" : "", *tail ? "; its last output: " : "",
	    tail);
	free(how);
	free(tail);

	if (WIFEXITED(proc_status(w)) &&
	    WEXITSTATUS(proc_status(w)) == WORKER_EXIT_PERM &&
	    proc_failure(w) == NULL) {
		sched_event(id, EV_ERROR, proc_stage(w), "%s", why);
		sched_fail(id, why);
		goto out;
	}
	if (WIFEXITED(proc_status(w)) &&
	    WEXITSTATUS(proc_status(w)) == WORKER_EXIT_STOPPED &&
	    sched_stopping)
		goto out;

	if (store_begin(sched_st) == -1 ||
	    store_task_get(sched_st, id, &t) == -1 || t == NULL) {
		store_rollback(sched_st);
		log_warnx("task %lld: %s; cannot update it: %s", (long long)id,
		    why, store_error(sched_st));
		goto out;
	}
	int64_t tries = t->ival[TI_STAGE_RETRIES] + 1;
	int rc = store_task_set_int(sched_st, id, TI_STAGE_RETRIES, tries);
	if (rc == 0 && (uint64_t)tries > cfg.max_retries) {
		char *final = xasprintf("%s; gave up after %lld restarts "
		                        "(ORCH_MAX_RETRIES=%u)",
		    why, (long long)(tries - 1), cfg.max_retries);
		rc = sched_fail_tx(t, final);
		free(final);
		tries = -1;
	} else if (rc == 0) {
		char *text;

		/* retry_count counts restarts, so only those that happen. */
		rc = store_task_set_int(
		    sched_st, id, TI_RETRY_COUNT, t->ival[TI_RETRY_COUNT] + 1);
		delay = (uint64_t)cfg.retry_backoff_ms
		        << (tries - 1 < 16 ? tries - 1 : 16);
		/* Jitter: between half and all of the delay. */
		delay = delay / 2 + (delay > 1 ? arc4random_uniform(
		                                     (uint32_t)(delay / 2 + 1))
		                               : 0);
		text = xasprintf("%s" SCHED_RESTARTING " in %llu ms (restart "
		                 "%lld of %u)",
		    why, (unsigned long long)delay, (long long)tries,
		    cfg.max_retries);
		if (rc == 0)
			rc = store_event_add(
			    sched_st, id, EV_ERROR, proc_stage(w), text);
		log_task(
		    LOG_LEVEL_WARN, (uint64_t)id, proc_stage(w), "%s", text);
		free(text);
		backoffs =
		    xrealloc(backoffs, (nbackoffs + 1) * sizeof *backoffs);
		backoffs[nbackoffs].task = id;
		backoffs[nbackoffs++].until = now_ms() + delay;
	}
	if (rc == -1 || store_commit(sched_st) == -1) {
		store_rollback(sched_st);
		if (!sched_storage_failed())
			log_warnx("task %lld: cannot record the worker's "
			          "failure: %s",
			    (long long)id, store_error(sched_st));
	} else if (tries == -1)
		log_task(LOG_LEVEL_WARN, (uint64_t)id, proc_stage(w),
		    "task failed: %s", why);
out:
	task_free(t);
	free(why);
	proc_free(w);
	sched_kick_task(id);
}

void
sched_task_changed(int64_t task)
{
	struct task *t;
	struct worker *w = proc_find_task(task);

	for (size_t i = 0; i < nheld; i++) {
		if (held[i] == task) {
			held[i] = held[--nheld];
			break;
		}
	}
	sched_backoff_clear(task);
	if (store_task_get(sched_st, task, &t) == 0 && t != NULL) {
		struct sched_worker *sw = w != NULL ? proc_arg(w) : NULL;
		enum stage now;

		if (sw != NULL && !sw->stopping &&
		    (sched_running(t->state, &now) == -1 || now != sw->stage)) {
			log_task(LOG_LEVEL_INFO, (uint64_t)task, proc_stage(w),
			    "now %s: stopping worker %d", wstate_name(t->state),
			    (int)proc_pid(w));
			sw->stopping = 1;
			proc_kill(w, NULL);
		}
		task_free(t);
	}
	if (sched_opts.nodes && !store_lease_held(sched_st, task))
		sched_kick(); /* to be claimed, here or elsewhere */
	else
		sched_kick_task(task);
}

static int
sched_hold_cb(const struct task *t, void *arg)
{
	(void)arg;
	if (wstate_stage(t->state) != NULL) {
		held = xrealloc(held, (nheld + 1) * sizeof *held);
		held[nheld++] = t->id;
	}
	return 0;
}

static int
sched_resume_cb(const struct task *t, void *arg)
{
	(void)arg;
	if (wstate_stage(t->state) != NULL && t->state != WS_PENDING)
		log_task(LOG_LEVEL_INFO, (uint64_t)t->id, NULL,
		    "resuming task from %s (stage run %lld)",
		    wstate_name(t->state), (long long)t->ival[TI_STAGE_RUN]);
	return 0;
}

void
sched_init(
    struct event_base *base, struct store *st, const struct sched_opts *opts)
{
	struct timeval tv = {0, 250 * 1000};

	sched_base = base;
	sched_st = st;
	sched_opts = *opts;
	store_set_conn_hook(st, sched_conn, NULL);
	sched_beat_ok = sched_beat_at = sched_poll_at = now_ms();
	sched_beat_at += (uint64_t)cfg.lease_s * 1000 / 3;
	sched_blind = sched_beat_warned = 0;
	sched_kick_ev = event_new(base, -1, 0, sched_kick_cb, NULL);
	sched_flush_ev = event_new(base, -1, 0, sched_flush_cb, NULL);
	sched_timer_ev = event_new(base, -1, EV_PERSIST, sched_timer_cb, NULL);
	event_add(sched_timer_ev, &tv);
	if (opts->only_task == 0) {
		/* A node resumes what it claims, said when its worker starts:
		 * the tasks in progress may be other nodes'. */
		if (cfg.enable_resume && opts->nodes)
			;
		else if (cfg.enable_resume)
			store_task_list(
			    st, TS_IN_PROGRESS, 0, sched_resume_cb, NULL);
		else
			store_task_list(
			    st, TS_IN_PROGRESS, 0, sched_hold_cb, NULL);
	}
	sched_kick();
}

void
sched_shutdown(void)
{
	struct worker *w;
	struct proto_msg m;

	if (sched_stopping)
		return;
	sched_stopping = 1;
	sched_stop_deadline = now_ms() + 5000;
	proto_msg_init(&m, PROTO_STOP);
	for (w = proc_next(NULL); w != NULL; w = proc_next(w)) {
		struct sched_worker *sw = proc_arg(w);

		sw->stopping = 1;
		proc_send(w, &m);
	}
	proto_msg_clear(&m);
}

int
sched_done(void)
{
	struct task *t;
	int done;

	if (sched_stopping)
		return proc_count() == 0;
	if (sched_opts.only_task == 0)
		return 0;
	if (proc_find_task(sched_opts.only_task) != NULL)
		return 0;
	if (store_task_get(sched_st, sched_opts.only_task, &t) == -1 ||
	    t == NULL)
		return 1;
	done =
	    t->state == WS_COMPLETED || t->state == WS_FAILED ||
	    t->state == WS_CANCELLED ||
	    (sched_opts.stop_at_gate && task_status(t) == TS_AWAITING_APPROVAL);
	task_free(t);
	return done;
}

void
sched_free(void)
{
	if (sched_kick_ev != NULL)
		event_free(sched_kick_ev);
	if (sched_timer_ev != NULL)
		event_free(sched_timer_ev);
	if (sched_flush_ev != NULL)
		event_free(sched_flush_ev);
	sched_kick_ev = sched_timer_ev = sched_flush_ev = NULL;
	sched_flush_armed = 0;
	sched_st = NULL;
	free(acks);
	acks = NULL;
	nacks = acks_cap = 0;
	free(backoffs);
	free(held);
	free(clean_ws);
	free(sched_dirty);
	backoffs = NULL;
	held = NULL;
	clean_ws = NULL;
	sched_dirty = NULL;
	nbackoffs = nheld = nclean_ws = nsched_dirty = 0;
}
