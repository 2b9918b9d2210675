/*
 * store.h: the store, the only boundary behind which SQL is spoken.
 *
 * Two backends implement it (store_dispatch.c dispatches): SQLite in a file
 * (store_sqlite.c) and PostgreSQL (store_pg.c); above this header nothing
 * knows which one runs.  Every function returns 0 on success and -1 on failure,
 * with the reason in store_error(); none of them logs.  Writes outside
 * store_begin/store_commit run in a transaction of their own.  A struct store
 * is never carried across fork(): open it after forking.
 */
#ifndef STORE_H
#define STORE_H

#include <stdint.h>

#include <jansson.h>

/* workflow_state values, in the workflow's order (README, "What it does"). */
enum wstate {
	WS_PENDING,
	WS_PLANNING,
	WS_PLAN_AWAITING_APPROVAL,
	WS_PLAN_APPROVED,
	WS_IMPLEMENTING,
	WS_IMPLEMENTATION_AWAITING_APPROVAL,
	WS_REVIEWING,
	WS_VERIFYING,
	WS_COMPLETED,
	WS_FAILED,
	WS_CANCELLED,
	WS_MAX
};

/* status values; each workflow_state maps to exactly one. */
enum tstatus {
	TS_PENDING,
	TS_IN_PROGRESS,
	TS_AWAITING_APPROVAL,
	TS_COMPLETED,
	TS_FAILED,
	TS_CANCELLED,
	TS_MAX
};

const char *wstate_name(enum wstate);
int wstate_parse(const char *, enum wstate *);
enum tstatus wstate_status(enum wstate);
const char *tstatus_name(enum tstatus);
int tstatus_parse(const char *, enum tstatus *);
/* The stage a worker runs in this state, or NULL when none runs. */
const char *wstate_stage(enum wstate);

#define AUTO_APPROVE_PLAN           0x1
#define AUTO_APPROVE_IMPLEMENTATION 0x2

/* Text columns of tasks that the state machine writes. */
enum task_col {
	TC_PLAN,
	TC_IMPLEMENTATION,
	TC_REVIEW,
	TC_VERIFICATION_RESULT,
	TC_WORKFLOW_LOG,
	TC_PLAN_APPROVED_AT, /* set with a time by store_task_stamp */
	TC_PLAN_APPROVED_BY,
	TC_PLAN_REJECTION_REASON,
	TC_IMPLEMENTATION_APPROVED_AT,
	TC_IMPLEMENTATION_APPROVED_BY,
	TC_IMPLEMENTATION_REJECTION_REASON,
	TC_ERROR_DETAILS,
	TC_FEEDBACK, /* input for the next implementation round */
	TC_MAX
};

/* Integer columns of tasks that the state machine writes. */
enum task_icol {
	TI_RETRY_COUNT,     /* restarts of crashed workers, all stages */
	TI_STAGE_RUN,       /* bumped at every new stage run: journal key */
	TI_STAGE_RETRIES,   /* restarts within the current stage run */
	TI_REVIEW_ROUNDS,   /* review rounds that asked for changes */
	TI_VERIFY_ROUNDS,   /* verification rounds that failed */
	TI_FAILED_STATE,    /* enum wstate the task failed in (for --resume) */
	TI_MAX_TOKENS,      /* its own token budget (0: ORCH_MAX_TOKENS) */
	TI_MAX_COST_MICROS, /* its own cost budget, millionths (0:
	                       ORCH_MAX_COST) */
	TI_BUDGET_PAUSED,   /* 1: it waits for a person at a budget */
	TI_MAX
};

struct task {
	int64_t id;
	enum wstate state;
	char *request;
	char *repo;           /* absolute path of the user's repository */
	char *base_commit;    /* HEAD at submit time */
	char *verify_command; /* NULL: use ORCH_VERIFY_COMMAND */
	int auto_approve;     /* AUTO_APPROVE_* bits */
	char *created_at;
	char *updated_at;
	char *text[TC_MAX]; /* NULL where the column is NULL */
	int64_t ival[TI_MAX];
	char *workflow_checkpoint_data;
	int64_t tokens_in; /* sums over the task's usage rows */
	int64_t tokens_out;
	char *node; /* the node whose lease is live on it, or NULL */
};

struct task_new {
	const char *request;
	const char *repo;
	const char *base_commit;
	const char *verify_command; /* may be NULL */
	int auto_approve;
	int64_t max_tokens; /* its own budgets (0: none); set by task_submit */
	double max_cost;
};

struct store;

enum store_mode {
	STORE_RW,     /* create if missing, migrate forward */
	STORE_RDONLY, /* must exist; never writes */
};

struct store_opts {
	int autocheckpoint_pages; /* DB_AUTO_CHECKPOINT_INTERVAL */
	int busy_timeout_ms;
};

/*
 * Open the database at path.  A file that is not an SQLite database (or is
 * damaged) is refused with a message naming the file, and is left exactly as
 * it was: nothing is written before the header and the schema are checked.
 * On failure *storep is NULL and *cause is a malloc'd message.
 */
int store_open(struct store **storep, const char *path, enum store_mode,
    const struct store_opts *, char **cause);
/*
 * Open the PostgreSQL database of url (a libpq URI or key=value string;
 * the password may also come from PGPASSFILE or the libpq environment).
 * Read-write: the schema is made or migrated.  Read-only: a database
 * without our schema yet is 0 with *storep NULL, as a missing file is to
 * the caller of store_open.  Messages name the url masked.
 */
int store_open_url(struct store **storep, const char *url, enum store_mode,
    const struct store_opts *, char **cause);
void store_close(struct store *); /* accepts NULL */
/* "sqlite" or "postgresql". */
const char *store_backend(struct store *);
/*
 * A copy of a database URL or key=value string fit to print: its password
 * (user:PASSWORD@ or password=) replaced by ****.  NULL for NULL.
 */
char *store_url_mask(const char *url);
/*
 * The single writer's lock on the database itself: *taken 1 when this
 * connection holds it now (or the backend needs none: SQLite's is the
 * state directory's lock), 0 when another holds it.  Kept until close.
 */
int store_lock(struct store *, int *taken);
/*
 * What `doctor` checks of the database: {"backend", and for PostgreSQL
 * "server_version", "synchronous_commit", "outages", "down_since"}.
 */
int store_info_json(struct store *, json_t **out);
const char *store_error(struct store *);
/* Whether the last error was the storage's (disk full, I/O error). */
int store_storage_error(struct store *);
/*
 * A small write: 0 once the database can be written again.  On
 * PostgreSQL a lost connection is a storage error too, and the probe
 * reconnects.
 */
int store_probe(struct store *);
int store_schema_version(struct store *);
/* The state directory's id (32 hex digits, made with the database). */
int store_state_id(struct store *, char **id);

/* Explicit transactions (BEGIN IMMEDIATE) grouping several writes. */
int store_begin(struct store *);
/*
 * One whose commit may reach the disk only with the next durable commit
 * (the log is written in order): where losing it means that this process
 * died with it, SQLite's, whose lazy commit only an OS crash loses.  On
 * PostgreSQL, whose server may fail alone, the same as store_begin.
 */
int store_begin_lazy(struct store *);
int store_commit(struct store *);
void store_rollback(struct store *);
/*
 * Group commit: every lazy commit so far made durable by one sync of
 * SQLite's log (a durable commit does the same), so that lazy commits
 * followed by store_flush before anyone is told of them are as safe as
 * durable ones, for one sync instead of one each.  Does nothing when
 * nothing lazy is waiting, nor on PostgreSQL (whose commits are durable).
 */
int store_flush(struct store *);
/* Whether a lazy commit waits for store_flush. */
int store_flush_pending(struct store *);

/* New task in pending, with a workflow_start checkpoint and an event. */
int store_task_add(struct store *, const struct task_new *, int64_t *id);
/* 0 and *taskp set, or 0 and *taskp NULL when there is no such task. */
int store_task_get(struct store *, int64_t id, struct task **taskp);
void task_free(struct task *); /* accepts NULL */

/* Sets workflow_state, the matching status and updated_at. */
int store_task_set_state(struct store *, int64_t id, enum wstate);
/* The status alone: a task waiting for a person at a budget is
 * awaiting_approval in the middle of its stage (its state unchanged). */
int store_task_set_status(struct store *, int64_t id, enum tstatus);
int store_task_set_text(struct store *, int64_t id, enum task_col,
    const char *value /* NULL writes NULL */);
/* Sets a *_APPROVED_AT column to the current time. */
int store_task_stamp(struct store *, int64_t id, enum task_col);
int store_task_set_int(struct store *, int64_t id, enum task_icol, int64_t);
int store_task_set_repo(
    struct store *, int64_t id, const char *repo, const char *base_commit);

/*
 * Tasks in id order.  status < 0: every status.  resumable: only those not
 * completed or cancelled.  The callback returns 0 to go on, non-zero to stop.
 */
typedef int (*store_task_cb)(const struct task *, void *arg);
int store_task_list(
    struct store *, int status, int resumable, store_task_cb, void *arg);
/*
 * Tasks with an id below before (0: every one), the newest first, until
 * the callback returns non-zero: a page of the console's list without
 * reading the rest.  status < 0: every status.
 */
int store_task_list_desc(
    struct store *, int status, int64_t before, store_task_cb, void *arg);
/*
 * Ids over after of tasks a worker may run for now (pending, planning,
 * plan_approved, implementing, reviewing, verifying), oldest first, at most
 * max: the caller pages through them with after = the last id it got.
 */
int store_task_runnable(
    struct store *, int64_t after, int64_t *ids, size_t max, size_t *n);
/* How many tasks are in each workflow state (cheap: the state's index). */
int store_task_counts(struct store *, int64_t counts[WS_MAX]);

/* Also sets tasks.workflow_checkpoint_data to data. */
int store_checkpoint_add(struct store *, int64_t task, const char *name,
    const char *data /* JSON or NULL */);
struct checkpoint {
	int64_t id;
	const char *name;
	const char *data;
	const char *created_at;
};
typedef int (*store_checkpoint_cb)(const struct checkpoint *, void *arg);
int store_checkpoint_list(
    struct store *, int64_t task, store_checkpoint_cb, void *arg);

/*
 * The step journal: one row per completed step of a stage run, keyed by
 * (task, run, seq).  Adding a seq that exists is an error.  tokens are added
 * to the usage of (task, stage).
 */
int store_journal_add(struct store *, int64_t task, int64_t run, int64_t seq,
    const char *stage, const char *kind, const char *data, int64_t tokens_in,
    int64_t tokens_out);
struct journal_entry {
	int64_t seq;
	const char *kind;
	const char *data;
};
typedef int (*store_journal_cb)(const struct journal_entry *, void *arg);
int store_journal_list(
    struct store *, int64_t task, int64_t run, store_journal_cb, void *arg);

/*
 * Model turns (schema 5): one row per turn asked of the model, with its
 * model, tokens and time.  gc leaves them (costs outlive the log).
 */
int store_turn_add(struct store *, int64_t task, const char *stage,
    const char *model, int64_t tokens_in, int64_t tokens_out, int64_t cached_in,
    int64_t duration_ms);
struct turn_sum {
	const char *day; /* YYYY-MM-DD, UTC */
	const char *model;
	const char *repo; /* may be NULL */
	int64_t tokens_in, tokens_out, cached_in, duration_ms, turns;
};
typedef int (*store_turn_cb)(const struct turn_sum *, void *arg);
/* The turns of one task (0: all) summed by day, model and repository. */
int store_turn_sums(struct store *, int64_t task, store_turn_cb, void *arg);

/* The task log. */
enum event_kind {
	EV_STATE, /* a workflow state change */
	EV_INFO,  /* supervisor notes: worker started, restarted, ... */
	EV_ERROR,
	EV_MODEL, /* model text */
	EV_TOOL,  /* tool calls */
	/* A tool's or command's result, written from the journal entry in
	 * its transaction: the log never shows a result not journaled. */
	EV_RESULT,
	EV_CHECKPOINT, /* a checkpoint saved, by name */
	EV_MAX
};
const char *event_kind_name(enum event_kind);
int store_event_add(struct store *, int64_t task, enum event_kind,
    const char *stage /* may be NULL */, const char *text);
/* An event with its facts (data, a JSON object, or NULL) in events.data. */
int store_event_add_data(struct store *, int64_t task, enum event_kind,
    const char *stage /* may be NULL */, const char *text, const json_t *data);
/*
 * A state change (EV_STATE): the new state is kept as data beside the
 * text, so that nothing has to parse the text, which is for people.
 */
int store_event_add_state(struct store *, int64_t task, enum wstate,
    const char *stage /* may be NULL */, const char *text);
struct event_row {
	int64_t id;
	int64_t task;
	const char *ts;
	const char *kind;
	const char *stage; /* may be NULL */
	const char *text;
	enum wstate state; /* a state change's new state; else WS_MAX */
	const char *data;  /* the facts as JSON text, or NULL */
};
typedef int (*store_event_cb)(const struct event_row *, void *arg);
/* Events with id > after, of one task (task 0: all), oldest first. */
int store_event_list(struct store *, int64_t task, int64_t after, int limit,
    store_event_cb, void *arg);

/* Token usage of one task, one object per stage: {"planning": {...}}. */
int store_usage_json(struct store *, int64_t task, json_t **out);
/* Counts by status, tokens, rows, database size: for `stats`. */
int store_stats_json(struct store *, json_t **out);

/* Online, consistent copy with the backup API, written to a temporary
 * file beside dest and renamed into place. */
int store_backup(struct store *, const char *dest);
/* PRAGMA integrity_check: 0 and *ok set. */
int store_integrity(struct store *, int *ok);

/*
 * The service's event pump.  cb(arg) runs whenever this connection inserts
 * an event row, inside the writer's transaction: it must not touch the
 * database, only note that there is something to read (store_event_list)
 * once the transaction is over.  One hook per process; NULL removes it.
 */
void store_set_event_hook(struct store *, void (*cb)(void *), void *arg);
/*
 * A network database's outages: cb(0, why, 0, arg) when the connection is
 * found lost, once per outage however many reconnects fail; cb(1, NULL,
 * seconds, arg) when a new connection works again, that long after.  Set
 * by the service, which logs them (the store does not log).  SQLite has no
 * outages and never calls it.
 */
void store_set_conn_hook(struct store *,
    void (*cb)(int up, const char *why, double seconds, void *arg), void *arg);
/* cb is called after every commit with how long the COMMIT took, and
 * whether it waited for the disk (durable) or not (a lazy one). */
void store_set_commit_hook(struct store *,
    void (*cb)(double seconds, int durable, void *arg), void *arg);
/*
 * Wait at most timeout_ms for another connection to commit events: 1 when
 * told (PostgreSQL's NOTIFY, sent with every commit that adds an event),
 * 0 when the time is up.  -1 at once when the backend cannot tell (SQLite):
 * the caller polls.  A notification can be lost (a pooler in transaction
 * mode, a reconnect), so a caller still reads after each timeout.
 */
int store_wait_events(struct store *, int timeout_ms);
/* The highest event id (0 when there is none). */
int store_event_max(struct store *, int64_t *id);
/* The number of tasks with this status. */
int store_task_count(struct store *, enum tstatus, int64_t *n);

/*
 * Copy every row of from (tasks, checkpoints, events, journal, usage,
 * turns and the state id) into to, which must hold no task yet, ids kept,
 * in one transaction of to; then the row counts of both must agree.
 * *report: {"tasks": n, ...}.  On failure nothing is left in to and
 * *cause says why (malloc'd).
 */
int store_copy(
    struct store *from, struct store *to, json_t **report, char **cause);

/*
 * Retention.  store_gc_candidates calls cb for every finished (completed,
 * failed, cancelled) task last updated at least days ago; store_gc_task
 * deletes one task's events and journal rows (the task row, checkpoints
 * and usage stay) and says how many went; store_vacuum rebuilds the file
 * so that it shrinks, then truncates the WAL.
 */
int store_gc_candidates(
    struct store *, unsigned days, store_task_cb cb, void *arg);
int store_gc_task(
    struct store *, int64_t task, int64_t *events, int64_t *journal);
int store_vacuum(struct store *);

/*
 * Nodes and leases (PostgreSQL; schema 6).  Several services share one
 * database as nodes: each claims runnable tasks under a lease (owner: the
 * node's incarnation, a random id per start; an epoch bumped by every
 * claim; an expiry in the database's time), and the store fences every
 * write of this connection to a task it holds: the write's transaction
 * first renews the lease row, conditional on owner and epoch, and a lease
 * that is gone (another node claimed the task) makes the write fail with
 * store_lease_lost() set, nothing of it applied.  A task this connection
 * holds no lease on is written as before (a person's approve or cancel).
 * On SQLite the columns and the table exist but nothing uses them: one
 * service per database, and these return an error (store_node_join) or
 * do nothing.
 */
/*
 * Register this connection as node name (capacity workers, leases of
 * lease_s seconds) with a new incarnation.  0 joined; 1 refused: a live
 * service has this name (its heartbeat is within its lease; *cause says
 * so); -1 error.  previous (or NULL): an incarnation known to be dead
 * whatever its heartbeat says (this service's own last one, killed: the
 * state directory's lock proves it gone), taken over at once.  Also
 * listens for "tasks changed" notifications.
 */
int store_node_join(struct store *, const char *name, unsigned capacity,
    unsigned lease_s, const char *previous, char **cause);
/* The incarnation this connection joined as ("" when none). */
const char *store_node_incarnation(struct store *);
/*
 * The heartbeat: the node's row and every lease it holds renewed in one
 * transaction; the tasks whose lease is gone since (another node took
 * them) are marked lost and returned (*lost malloc'd, *nlost of them).
 * 1 when another incarnation has taken this node's name: every lease is
 * lost.
 */
int store_node_beat(
    struct store *, unsigned running, int64_t **lost, size_t *nlost);
/* Leave: every lease released at once, the node marked stopped. */
int store_node_leave(struct store *);
/*
 * Claim up to max runnable tasks (only_task: that one alone), oldest
 * first, whose lease is free or expired, skipping rows other nodes are
 * claiming (FOR UPDATE SKIP LOCKED), at most per_repo (0: no cap) leased
 * tasks of one repository across nodes.  Each claim bumps the epoch.
 */
int store_lease_claim(struct store *, int64_t only_task, size_t max,
    unsigned per_repo, int64_t *ids, size_t *n);
/* Whether this connection holds a live (not lost) lease on task. */
int store_lease_held(struct store *, int64_t task);
/* The epoch of this connection's live lease on task, else 0: the fence
 * a worker writes into the commits it pushes (origin_set_epoch). */
int64_t store_lease_epoch(struct store *, int64_t task);
/* How many leases this connection holds, lost ones not counted. */
size_t store_lease_count(struct store *);
/* The tasks of the live leases this connection holds, at most max in
 * ids; returns how many there are (more than max: some left out). */
size_t store_lease_list(struct store *, int64_t *ids, size_t max);
/* Let go of task's lease at once (expiry now), and say so to the others. */
int store_lease_release(struct store *, int64_t task);
/* The task whose lost lease refused the last failed write, else 0. */
int64_t store_lease_lost(struct store *);
/*
 * Tasks other connections changed (submit, approve, cancel, a lease let
 * go) since the last call, without waiting or asking the server: up to max
 * ids in ids, *n of them; *more set when there were more or unnamed ones
 * (the caller walks everything).  SQLite: nothing, ever.
 */
int store_tasks_changed(
    struct store *, int64_t *ids, size_t max, size_t *n, int *more);
/* The nodes: [{"name", "heartbeat_at", "heartbeat_age_s", "live",
 * "capacity", "running", "started_at", "stopped_at"}], by name. */
int store_nodes_json(struct store *, json_t **out);

#endif
