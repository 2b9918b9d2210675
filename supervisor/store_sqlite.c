/*
 * store_sqlite.c: the store in an SQLite file (the default backend).
 *
 * The database holds the tasks and checkpoints tables of the older Python
 * system (schema version 0) and the tables this program adds; the schema is
 * versioned with PRAGMA user_version and migrated forward at open.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "common.h"
#include "store_impl.h"

/* -------------------------------------------------------------------------
 * Constants (the names the database holds for each enum are in
 * store_dispatch.c, shared with store_pg.c)
 * ------------------------------------------------------------------------ */

/* The time format of every timestamp we write: UTC with milliseconds. */
#define NOW "strftime('%Y-%m-%d %H:%M:%f','now')"

#define DEFAULT_BUSY_TIMEOUT_MS 5000
#define DEFAULT_AUTOCHECKPOINT  1000

/* -------------------------------------------------------------------------
 * The schema and its migrations (the data)
 * ------------------------------------------------------------------------ */

/*
 * Schema migrations.  Entry i takes the database from user_version i to
 * i + 1 in one transaction: first the script, then each column that is not
 * there yet (so a partly upgraded database, or one the Python system grew
 * by hand, still works), then its backfill if it has one.  Migrations
 * only add; they never drop rows.  Adding a version is one more entry.
 */
struct column {
	const char *table;
	const char *name;
	const char *decl;
};

struct migration {
	const char *script;
	const struct column *columns;
	size_t ncolumns;
	/* Run last, after the columns exist: fills them in from old rows. */
	int (*backfill)(struct store_be *);
};

/* Version 1: the schema of the Python system, exactly as it made it. */
static const char v1_script[] =
    "CREATE TABLE IF NOT EXISTS tasks (\n"
    "    id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "    request TEXT NOT NULL,\n"
    "    status TEXT NOT NULL DEFAULT 'pending',\n"
    "    workflow_state TEXT NOT NULL DEFAULT 'pending',\n"
    "    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,\n"
    "    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,\n"
    "\n"
    "    -- Workflow stages\n"
    "    plan TEXT,\n"
    "    implementation TEXT,\n"
    "    review TEXT,\n"
    "    verification_result TEXT,\n"
    "    workflow_log TEXT,\n"
    "    workflow_checkpoint_data TEXT,\n"
    "\n"
    "    -- Approval tracking\n"
    "    plan_approved_at TIMESTAMP,\n"
    "    plan_approved_by TEXT,\n"
    "    plan_rejection_reason TEXT,\n"
    "    implementation_approved_at TIMESTAMP,\n"
    "    implementation_approved_by TEXT,\n"
    "    implementation_rejection_reason TEXT,\n"
    "\n"
    "    -- Error handling\n"
    "    error_details TEXT,\n"
    "    retry_count INTEGER DEFAULT 0\n"
    ");\n"
    "CREATE TABLE IF NOT EXISTS checkpoints (\n"
    "    id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "    task_id INTEGER NOT NULL,\n"
    "    checkpoint_name TEXT NOT NULL,\n"
    "    checkpoint_data TEXT,\n"
    "    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,\n"
    "    FOREIGN KEY (task_id) REFERENCES tasks(id) ON DELETE CASCADE\n"
    ");\n";

/*
 * The Python system added missing columns at run time, so an old database
 * may lack some of these.  (created_at and updated_at cannot be added with
 * their non-constant default; every version of it had them.)
 */
static const struct column v1_columns[] = {
    {"tasks", "plan", "TEXT"},
    {"tasks", "implementation", "TEXT"},
    {"tasks", "review", "TEXT"},
    {"tasks", "verification_result", "TEXT"},
    {"tasks", "workflow_log", "TEXT"},
    {"tasks", "workflow_checkpoint_data", "TEXT"},
    {"tasks", "plan_approved_at", "TIMESTAMP"},
    {"tasks", "plan_approved_by", "TEXT"},
    {"tasks", "plan_rejection_reason", "TEXT"},
    {"tasks", "implementation_approved_at", "TIMESTAMP"},
    {"tasks", "implementation_approved_by", "TEXT"},
    {"tasks", "implementation_rejection_reason", "TEXT"},
    {"tasks", "error_details", "TEXT"},
    {"tasks", "retry_count", "INTEGER DEFAULT 0"},
    {"checkpoints", "checkpoint_data", "TEXT"},
};

/* Version 2: this program's columns, the event log, the journal, usage. */
static const char v2_script[] =
    "CREATE TABLE IF NOT EXISTS events (\n"
    "    id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "    task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,\n"
    "    ts TEXT NOT NULL,\n"
    "    kind TEXT NOT NULL,\n"
    "    stage TEXT,\n"
    "    text TEXT NOT NULL\n"
    ");\n"
    "CREATE TABLE IF NOT EXISTS journal (\n"
    "    id INTEGER PRIMARY KEY,\n"
    "    task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,\n"
    "    run INTEGER NOT NULL,\n"
    "    seq INTEGER NOT NULL,\n"
    "    stage TEXT NOT NULL,\n"
    "    kind TEXT NOT NULL,\n"
    "    data TEXT NOT NULL,\n"
    "    tokens_in INTEGER NOT NULL DEFAULT 0,\n"
    "    tokens_out INTEGER NOT NULL DEFAULT 0,\n"
    "    created_at TEXT NOT NULL,\n"
    "    UNIQUE(task_id, run, seq)\n"
    ");\n"
    "CREATE TABLE IF NOT EXISTS usage (\n"
    "    task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,\n"
    "    stage TEXT NOT NULL,\n"
    "    calls INTEGER NOT NULL DEFAULT 0,\n"
    "    tokens_in INTEGER NOT NULL DEFAULT 0,\n"
    "    tokens_out INTEGER NOT NULL DEFAULT 0,\n"
    "    PRIMARY KEY(task_id, stage)\n"
    ");\n"
    "CREATE INDEX IF NOT EXISTS tasks_status ON tasks(status);\n"
    "CREATE INDEX IF NOT EXISTS tasks_workflow_state"
    " ON tasks(workflow_state);\n"
    "CREATE INDEX IF NOT EXISTS checkpoints_task_id"
    " ON checkpoints(task_id);\n"
    "CREATE INDEX IF NOT EXISTS events_task_id ON events(task_id, id);\n";

static const struct column v2_columns[] = {
    {"tasks", "repo", "TEXT"},
    {"tasks", "base_commit", "TEXT"},
    {"tasks", "verify_command", "TEXT"},
    {"tasks", "auto_approve", "INTEGER NOT NULL DEFAULT 0"},
    {"tasks", "feedback", "TEXT"},
    {"tasks", "stage_run", "INTEGER NOT NULL DEFAULT 0"},
    {"tasks", "stage_retries", "INTEGER NOT NULL DEFAULT 0"},
    {"tasks", "review_rounds", "INTEGER NOT NULL DEFAULT 0"},
    {"tasks", "verify_rounds", "INTEGER NOT NULL DEFAULT 0"},
    {"tasks", "failed_state", "INTEGER"},
};

/*
 * Version 3: the state directory's id, made once at random.  Every commit
 * the workers make carries it (the trailer "Orch-State: ID"), so that a
 * ref of the same name made by another state directory (another database
 * counting task ids from 1 too) is told apart and never overwritten.
 */
static const char v3_script[] =
    "CREATE TABLE IF NOT EXISTS meta (\n"
    "    key TEXT PRIMARY KEY,\n"
    "    value TEXT NOT NULL\n"
    ");\n"
    "INSERT OR IGNORE INTO meta (key, value)"
    " VALUES ('state_id', lower(hex(randomblob(16))));\n";

/*
 * Version 4: a state change carries its new workflow_state as data
 * (events.state; NULL for every other event), so that what reacts to a
 * state change (event streams, notifications) reads a column instead of
 * parsing the text, which is for people and may be worded differently.
 * The rows written before are filled in by store_backfill_event_state.
 */
static const struct column v4_columns[] = {
    {"events", "state", "TEXT"},
};

static int store_backfill_event_state(struct store_be *);

/*
 * Version 5: the facts of an event as JSON beside its text (events.data;
 * NULL when it has none): a tool's result (outcome, exit status, output
 * tail, lines changed), a checkpoint's name, a restart's replay count.
 * `logs --json` and the API give them as fields; nothing parses the text.
 */
static const struct column v5_columns[] = {
    {"events", "data", "TEXT"},
    /* A task's own budgets (0: the service's ORCH_MAX_TOKENS and
     * ORCH_MAX_COST), and whether it waits for a person at one. */
    {"tasks", "max_tokens", "INTEGER NOT NULL DEFAULT 0"},
    {"tasks", "max_cost_micros", "INTEGER NOT NULL DEFAULT 0"},
    {"tasks", "budget_paused", "INTEGER NOT NULL DEFAULT 0"},
};

/*
 * Version 5 too: one row per model turn (its tokens, time and model), kept
 * when gc trims a finished task's events and journal, so that costs per
 * day, model and repository can be worked out with any price table.
 */
static const char v5_script[] =
    "CREATE TABLE IF NOT EXISTS turns (\n"
    "    id INTEGER PRIMARY KEY,\n"
    "    task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,\n"
    "    ts TEXT NOT NULL,\n"
    "    stage TEXT NOT NULL,\n"
    "    model TEXT NOT NULL,\n"
    "    tokens_in INTEGER NOT NULL DEFAULT 0,\n"
    "    tokens_out INTEGER NOT NULL DEFAULT 0,\n"
    "    cached_in INTEGER NOT NULL DEFAULT 0,\n"
    "    duration_ms INTEGER NOT NULL DEFAULT 0\n"
    ");\n"
    "CREATE INDEX IF NOT EXISTS turns_task_id ON turns(task_id);\n";

/*
 * Version 6: nodes and task leases, for services sharing one PostgreSQL
 * database (store.h).  The same tables and columns here, so that a
 * version means the same schema on both; SQLite is one service per
 * database and never fills them.
 */
static const struct column v6_columns[] = {
    {"tasks", "lease_node", "TEXT"},
    {"tasks", "lease_owner", "TEXT"},
    {"tasks", "lease_epoch", "INTEGER NOT NULL DEFAULT 0"},
    {"tasks", "lease_expires_at", "TEXT"},
};

static const char v6_script[] = "CREATE TABLE IF NOT EXISTS nodes (\n"
                                "    name TEXT PRIMARY KEY,\n"
                                "    incarnation TEXT NOT NULL,\n"
                                "    started_at TEXT NOT NULL,\n"
                                "    heartbeat_at TEXT NOT NULL,\n"
                                "    stopped_at TEXT,\n"
                                "    capacity INTEGER NOT NULL DEFAULT 0,\n"
                                "    running INTEGER NOT NULL DEFAULT 0,\n"
                                "    lease_s INTEGER NOT NULL DEFAULT 30\n"
                                ");\n";

static const struct migration migrations[] = {
    {v1_script, v1_columns, nitems(v1_columns), NULL},
    {v2_script, v2_columns, nitems(v2_columns), NULL},
    {v3_script, NULL, 0, NULL},
    {NULL, v4_columns, nitems(v4_columns), store_backfill_event_state},
    {v5_script, v5_columns, nitems(v5_columns), NULL},
    {v6_script, v6_columns, nitems(v6_columns), NULL},
};

#define SCHEMA_VERSION ((int)nitems(migrations))

/* -------------------------------------------------------------------------
 * Prepared statements and the connection
 * ------------------------------------------------------------------------ */

/* Statements used often enough to keep prepared. */
enum stmt {
	ST_TASK_GET,
	ST_TASK_ADD,
	ST_TASK_SET_STATE,
	ST_CHECKPOINT_ADD,
	ST_CHECKPOINT_TASK,
	ST_EVENT_ADD,
	ST_JOURNAL_ADD,
	ST_USAGE_ADD,
	ST_RUNNABLE,
	ST_SYNC_FULL,
	ST_SYNC_NORMAL,
	ST_MAX
};

static const char *const stmt_sql[ST_MAX] = {
    [ST_TASK_GET] = NULL, /* built at open from the column tables */
    [ST_TASK_ADD] = "INSERT INTO tasks (request, status, workflow_state,"
                    " created_at, updated_at, repo, base_commit,"
                    " verify_command, auto_approve, stage_run)"
                    " VALUES (?1, 'pending', 'pending', " NOW ", " NOW
                    ", ?2, ?3, ?4, ?5, 0)",
    [ST_TASK_SET_STATE] = "UPDATE tasks SET workflow_state = ?2,"
                          " status = ?3, updated_at = " NOW " WHERE id = ?1",
    [ST_CHECKPOINT_ADD] = "INSERT INTO checkpoints (task_id,"
                          " checkpoint_name, checkpoint_data, created_at)"
                          " VALUES (?1, ?2, ?3, " NOW ")",
    [ST_CHECKPOINT_TASK] = "UPDATE tasks SET workflow_checkpoint_data = ?2,"
                           " updated_at = " NOW " WHERE id = ?1",
    [ST_EVENT_ADD] = "INSERT INTO events (task_id, ts, kind, stage, text,"
                     " state, data) VALUES (?1, " NOW ", ?2, ?3, ?4, ?5,"
                     " ?6)",
    [ST_JOURNAL_ADD] = "INSERT INTO journal (task_id, run, seq, stage,"
                       " kind, data, tokens_in, tokens_out, created_at)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, " NOW ")",
    [ST_USAGE_ADD] = "INSERT INTO usage (task_id, stage, calls, tokens_in,"
                     " tokens_out) VALUES (?1, ?2, ?3, ?4, ?5)"
                     " ON CONFLICT (task_id, stage) DO UPDATE SET"
                     " calls = calls + excluded.calls,"
                     " tokens_in = tokens_in + excluded.tokens_in,"
                     " tokens_out = tokens_out + excluded.tokens_out",
    [ST_RUNNABLE] = "SELECT id FROM tasks WHERE workflow_state IN"
                    " ('pending', 'planning', 'plan_approved',"
                    " 'implementing', 'reviewing', 'verifying')"
                    " AND budget_paused = 0"
                    " AND id > ?2 ORDER BY id LIMIT ?1",
    [ST_SYNC_FULL] = "PRAGMA synchronous = FULL",
    [ST_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
};

/* Statements of store_prep_once kept prepared (a bounded set of SQL). */
#define ONCE_MAX 48

struct store_be {
	sqlite3 *db;
	char *path;
	enum store_mode mode;
	int in_tx;    /* store_begin is open */
	int lazy;     /* synchronous is NORMAL for now (see store_event_add) */
	int unsynced; /* a lazy commit since the log was last synced */
	sqlite3_int64 tx_changes; /* rows changed when this transaction began */
	int version;
	char *err;
	int errcode; /* SQLite's code for err, 0 when it is not SQLite's */
	char *task_select; /* SELECT <task columns> FROM tasks */
	sqlite3_stmt *stmt[ST_MAX];
	sqlite3_stmt *set_text[TC_MAX];
	sqlite3_stmt *set_int[TI_MAX];
	sqlite3_stmt *stamp[TC_MAX];
	struct {
		char *sql;
		sqlite3_stmt *st;
		int busy; /* handed out: a nested use gets its own */
	} once[ONCE_MAX];
};

/* Column positions in task_select. */
enum {
	TQ_ID,
	TQ_STATE,
	TQ_REQUEST,
	TQ_REPO,
	TQ_BASE_COMMIT,
	TQ_VERIFY_COMMAND,
	TQ_AUTO_APPROVE,
	TQ_CREATED_AT,
	TQ_UPDATED_AT,
	TQ_CHECKPOINT_DATA,
	TQ_TEXT,
	TQ_IVAL = TQ_TEXT + TC_MAX,
	TQ_TOKENS_IN = TQ_IVAL + TI_MAX,
	TQ_TOKENS_OUT,
};

/* -------------------------------------------------------------------------
 * Errors and statement helpers
 * ------------------------------------------------------------------------ */

static void store_seterr(struct store_be *, const char *, ...)
    __attribute__((format(printf, 2, 3)));

static void
store_seterr(struct store_be *s, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	free(s->err);
	s->err = msg;
	s->errcode = 0;
}

/* Record the connection's last error, prefixed with what we were doing. */
static void
store_dberr(struct store_be *s, const char *what)
{
	int code = sqlite3_extended_errcode(s->db);

	if ((code & 0xff) == SQLITE_CORRUPT || (code & 0xff) == SQLITE_NOTADB)
		store_seterr(s,
		    "%s: %s: DB %s is damaged; restore it from a "
		    "backup (orch-supervisor backup) or move it aside",
		    what, sqlite3_errmsg(s->db), s->path);
	else
		store_seterr(s, "%s: %s", what, sqlite3_errmsg(s->db));
	s->errcode = code;
}

static int
sqlite_storage_error(struct store_be *s)
{
	int code = s->errcode & 0xff;

	return code == SQLITE_FULL || code == SQLITE_IOERR;
}

static const char *
sqlite_error(struct store_be *s)
{
	if (s == NULL)
		return "no database";
	return s->err != NULL ? s->err : "no error";
}

static int
sqlite_schema_version(struct store_be *s)
{
	return s->version;
}

static int
store_exec(struct store_be *s, const char *sql, const char *what)
{
	char *msg = NULL;

	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		int code = sqlite3_extended_errcode(s->db);

		store_seterr(s, "%s: %s", what,
		    msg != NULL ? msg : sqlite3_errmsg(s->db));
		s->errcode = code;
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* Run sql and ignore any error, keeping the one already recorded. */
static void
store_exec_quiet(struct store_be *s, const char *sql)
{
	sqlite3_exec(s->db, sql, NULL, NULL, NULL);
}

/*
 * A prepared statement from *slot, made from sql on first use, reset and
 * with no bindings.  Callers reset it again when done so that no read
 * transaction stays open.
 */
static sqlite3_stmt *
store_prep_slot(struct store_be *s, sqlite3_stmt **slot, const char *sql)
{
	if (*slot == NULL) {
		if (sqlite3_prepare_v3(s->db, sql, -1,
		        SQLITE_PREPARE_PERSISTENT, slot, NULL) != SQLITE_OK) {
			store_dberr(s, "prepare");
			*slot = NULL;
			return NULL;
		}
		return *slot;
	}
	sqlite3_reset(*slot);
	sqlite3_clear_bindings(*slot);
	return *slot;
}

static sqlite3_stmt *
store_prep(struct store_be *s, enum stmt which)
{
	sqlite3_stmt *st;
	char *sql;

	if (which == ST_TASK_GET && s->stmt[which] == NULL) {
		sql = xasprintf("%s WHERE id = ?1", s->task_select);
		st = store_prep_slot(s, &s->stmt[which], sql);
		free(sql);
		return st;
	}
	return store_prep_slot(s, &s->stmt[which], stmt_sql[which]);
}

/*
 * A statement for a list or a one-off query, kept prepared by its SQL
 * text: parsing it again each time was a tenth of the service's CPU (the
 * event pump runs one per committed event).  A list's callback may run the
 * same query again: while one is handed out a nested use gets a statement
 * of its own, finalized by store_done.  Every caller gives it back with
 * store_done, which resets it so that no read transaction stays open.
 */
static sqlite3_stmt *
store_prep_once(struct store_be *s, const char *sql)
{
	sqlite3_stmt *st;
	int free_slot = -1;

	for (int i = 0; i < ONCE_MAX; i++) {
		if (s->once[i].sql == NULL) {
			if (free_slot == -1)
				free_slot = i;
			continue;
		}
		if (s->once[i].busy || strcmp(s->once[i].sql, sql) != 0)
			continue;
		sqlite3_clear_bindings(s->once[i].st);
		s->once[i].busy = 1;
		return s->once[i].st;
	}
	if (sqlite3_prepare_v3(s->db, sql, -1,
	        free_slot != -1 ? SQLITE_PREPARE_PERSISTENT : 0, &st,
	        NULL) != SQLITE_OK) {
		store_dberr(s, "prepare");
		return NULL;
	}
	if (free_slot != -1) {
		s->once[free_slot].sql = xstrdup(sql);
		s->once[free_slot].st = st;
		s->once[free_slot].busy = 1;
	}
	return st;
}

/* Give back a statement of store_prep_once. */
static void
store_done(struct store_be *s, sqlite3_stmt *st)
{
	if (st == NULL)
		return;
	for (int i = 0; i < ONCE_MAX; i++) {
		if (s->once[i].st == st) {
			sqlite3_reset(st);
			s->once[i].busy = 0;
			return;
		}
	}
	sqlite3_finalize(st);
}

/*
 * One fixed statement that returns no rows (BEGIN, COMMIT, SAVEPOINT,
 * RELEASE: several per write), kept prepared: sqlite3_exec would parse it
 * every time.
 */
static int
store_exec1(struct store_be *s, const char *sql, const char *what)
{
	sqlite3_stmt *st;
	int rc;

	if ((st = store_prep_once(s, sql)) == NULL)
		return -1;
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		store_dberr(s, what);
		store_done(s, st);
		return -1;
	}
	store_done(s, st);
	return 0;
}

static int
bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v == NULL)
		return sqlite3_bind_null(st, i);
	return sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
}

static char *
col_strdup(sqlite3_stmt *st, int i)
{
	const unsigned char *v = sqlite3_column_text(st, i);

	return v == NULL ? NULL : xstrdup((const char *)v);
}

static const char *
col_text(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

/* Step a statement that returns no rows, then reset it. */
static int
store_step_done(struct store_be *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE) {
		store_dberr(s, what);
		sqlite3_reset(st);
		return -1;
	}
	sqlite3_reset(st);
	return 0;
}

/* Like store_step_done, for an UPDATE of the task with this id. */
static int
store_step_task(
    struct store_be *s, sqlite3_stmt *st, int64_t id, const char *what)
{
	if (store_step_done(s, st, what) == -1)
		return -1;
	if (sqlite3_changes(s->db) != 1) {
		store_seterr(s, "%s: no task %lld", what, (long long)id);
		return -1;
	}
	return 0;
}

/* -------------------------------------------------------------------------
 * Transactions
 * ------------------------------------------------------------------------ */

/*
 * Every write runs inside wbegin/wend: in a BEGIN IMMEDIATE transaction of
 * its own, or in a savepoint when the caller has one open (store_begin), so
 * that a failed write never leaves half its rows behind either way.
 */
/* Set synchronous for the next transaction: FULL (its commit is on disk
 * when it returns) unless lazy. */
static int
store_sync(struct store_be *s, int lazy)
{
	sqlite3_stmt *st;
	int rc;

	s->tx_changes = sqlite3_total_changes64(s->db);
	if (s->lazy == lazy)
		return 0;
	/* Prepared once: it runs twice for every lone event. */
	if ((st = store_prep(s, lazy ? ST_SYNC_NORMAL : ST_SYNC_FULL)) == NULL)
		return -1;
	rc = store_step_done(s, st, "synchronous");
	if (rc == 0)
		s->lazy = lazy;
	return rc;
}

/* Begin a write: a transaction, or a savepoint inside store_begin's. */
static int
store_wbegin_as(struct store_be *s, int lazy)
{
	if (s->mode != STORE_RW) {
		store_seterr(s, "database %s is open read-only", s->path);
		return -1;
	}
	if (s->in_tx)
		return store_exec1(s, "SAVEPOINT store_write", "savepoint");
	if (store_sync(s, lazy) == -1)
		return -1;
	return store_exec1(s, "BEGIN IMMEDIATE", "begin");
}

static int
store_wbegin(struct store_be *s)
{
	return store_wbegin_as(s, 0);
}

/*
 * Called after each commit with its duration (store_set_commit_hook): one
 * hook per process, as the event hook.
 */
static void (*store_commit_cb)(double seconds, int durable, void *arg);
static void *store_commit_arg;

static void
sqlite_set_commit_hook(struct store_be *s,
    void (*cb)(double seconds, int durable, void *arg), void *arg)
{
	(void)s;
	store_commit_cb = cb;
	store_commit_arg = arg;
}

/* COMMIT, timed for the commit hook. */
static int
store_exec_commit(struct store_be *s)
{
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (store_exec1(s, "COMMIT", "commit") == -1)
		return -1;
	/* A durable commit that changed a row synced the log, and with it
	 * every lazy commit before it; one that wrote nothing did not. */
	if (s->lazy)
		s->unsynced = 1;
	else if (sqlite3_total_changes64(s->db) != s->tx_changes)
		s->unsynced = 0;
	if (store_commit_cb != NULL)
		store_commit_cb(
		    store_seconds_since(&t0), !s->lazy, store_commit_arg);
	return 0;
}

static int
store_wend(struct store_be *s, int rc)
{
	if (s->in_tx) {
		if (rc != 0) {
			store_exec_quiet(s, "ROLLBACK TO store_write");
			store_exec_quiet(s, "RELEASE store_write");
		} else
			(void)store_exec1(s, "RELEASE store_write", "release");
		return rc;
	}
	if (rc != 0) {
		store_exec_quiet(s, "ROLLBACK");
		return rc;
	}
	if (store_exec_commit(s) == -1) {
		if (!sqlite3_get_autocommit(s->db))
			store_exec_quiet(s, "ROLLBACK");
		return -1;
	}
	return 0;
}

static int
sqlite_begin(struct store_be *s, int lazy)
{
	if (s->in_tx) {
		store_seterr(s, "begin: a transaction is already open");
		return -1;
	}
	if (s->mode != STORE_RW) {
		store_seterr(s, "database %s is open read-only", s->path);
		return -1;
	}
	if (store_sync(s, lazy) == -1 ||
	    store_exec1(s, "BEGIN IMMEDIATE", "begin") == -1)
		return -1;
	s->in_tx = 1;
	return 0;
}

/* On failure the transaction is rolled back. */
static int
sqlite_commit(struct store_be *s)
{
	if (!s->in_tx) {
		store_seterr(s, "commit: no transaction is open");
		return -1;
	}
	s->in_tx = 0;
	if (store_exec_commit(s) == -1) {
		if (!sqlite3_get_autocommit(s->db))
			store_exec_quiet(s, "ROLLBACK");
		return -1;
	}
	return 0;
}

/*
 * Sync the write-ahead log, as a durable commit would: the log is written
 * in order, so every commit in it is then on disk.  Reported to the commit
 * hook as a durable commit (the one that the lazy ones waited for).
 */
static int
sqlite_flush(struct store_be *s)
{
	sqlite3_file *wal = NULL;
	struct timespec t0;
	int rc;

	if (!s->unsynced)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = sqlite3_file_control(
	    s->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal);
	if (rc == SQLITE_OK && wal != NULL && wal->pMethods != NULL)
		rc = wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL);
	if (rc != SQLITE_OK) {
		store_seterr(
		    s, "sync of %s-wal: %s", s->path, sqlite3_errstr(rc));
		s->errcode = rc;
		return -1;
	}
	s->unsynced = 0;
	if (store_commit_cb != NULL)
		store_commit_cb(store_seconds_since(&t0), 1, store_commit_arg);
	return 0;
}

static int
sqlite_flush_pending(struct store_be *s)
{
	return s->unsynced;
}

/* Does nothing when no transaction is open. */
static void
sqlite_rollback(struct store_be *s)
{
	if (!s->in_tx)
		return;
	s->in_tx = 0;
	if (!sqlite3_get_autocommit(s->db))
		store_exec_quiet(s, "ROLLBACK");
}

/* -------------------------------------------------------------------------
 * Small queries: the state id, integrity checks
 * ------------------------------------------------------------------------ */

/* Read a single integer: PRAGMA or SELECT. */
static int
store_int_query(struct store_be *s, const char *sql, int64_t *v)
{
	sqlite3_stmt *st;
	int rc;

	if ((st = store_prep_once(s, sql)) == NULL)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*v = sqlite3_column_int64(st, 0);
	else if (rc == SQLITE_DONE)
		*v = 0;
	else
		store_dberr(s, sql);
	store_done(s, st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

static int
sqlite_state_id(struct store_be *s, char **id)
{
	static const char sql[] = "SELECT value FROM meta WHERE key = "
	                          "'state_id'";
	sqlite3_stmt *st;
	int rc;

	*id = NULL;
	if ((st = store_prep_once(s, sql)) == NULL)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL)
		*id = xstrdup((const char *)sqlite3_column_text(st, 0));
	else if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		store_dberr(s, sql);
	store_done(s, st);
	return *id != NULL ? 0 : -1;
}

/* PRAGMA quick_check or integrity_check: 0 and *ok, *first set. */
static int
store_check(struct store_be *s, const char *sql, int *ok, char **first)
{
	sqlite3_stmt *st;
	int rc, rows = 0;

	*ok = 0;
	*first = NULL;
	if ((st = store_prep_once(s, sql)) == NULL)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (rows++ == 0)
			*first = col_strdup(st, 0);
	}
	if (rc != SQLITE_DONE) {
		store_dberr(s, sql);
		store_done(s, st);
		free(*first);
		*first = NULL;
		return -1;
	}
	store_done(s, st);
	*ok = rows == 1 && *first != NULL && strcmp(*first, "ok") == 0;
	return 0;
}

/* -------------------------------------------------------------------------
 * Opening, migrating, closing
 *
 * store_open checks that the file is SQLite before SQLite may write to it,
 * refuses a newer schema, and migrates an older one forward (read-write
 * only: a read-only open refuses an old schema instead of reading tables
 * that are not there yet).
 * ------------------------------------------------------------------------ */

static int
store_has_column(
    struct store_be *s, const char *table, const char *column, int *has)
{
	sqlite3_stmt *st;
	int rc;

	st = store_prep_once(
	    s, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2");
	if (st == NULL)
		return -1;
	bind_text(st, 1, table);
	bind_text(st, 2, column);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		store_dberr(s, "table_info");
		store_done(s, st);
		return -1;
	}
	*has = rc == SQLITE_ROW;
	store_done(s, st);
	return 0;
}

/*
 * The new state of a state change written before version 4, read from its
 * text: "task submitted" (into pending), or "OLD -> NEW" maybe followed by
 * ": why", as task_enter wrote it.  This is the one place that parses an
 * event's text, once per row, at the migration; what does not parse (no
 * state change this program wrote) stays NULL, as it would not have moved
 * anything before either.
 */
static int
store_backfill_parse(const char *text, enum wstate *state)
{
	const char *p;
	char name[64];
	size_t n;

	if (strcmp(text, "task submitted") == 0) {
		*state = WS_PENDING;
		return 0;
	}
	if ((p = strstr(text, " -> ")) == NULL)
		return -1;
	p += 4;
	n = strcspn(p, ": ");
	if (n == 0 || n >= sizeof name)
		return -1;
	memcpy(name, p, n);
	name[n] = '\0';
	return wstate_parse(name, state);
}

/*
 * Fill events.state in for the state changes made before it existed, in
 * batches by id so that memory stays bounded however long the log is (and
 * no row is updated under a SELECT still reading the table).
 */
#define BACKFILL_BATCH 512
static int
store_backfill_event_state(struct store_be *s)
{
	int64_t ids[BACKFILL_BATCH], last = 0;
	enum wstate states[BACKFILL_BATCH];
	sqlite3_stmt *st;
	size_t n, seen;
	int rc;

	do {
		st = store_prep_once(s, "SELECT id, text FROM events WHERE"
		                        " kind = 'state' AND state IS NULL"
		                        " AND id > ?1 ORDER BY id LIMIT ?2");
		if (st == NULL)
			return -1;
		sqlite3_bind_int64(st, 1, last);
		sqlite3_bind_int(st, 2, BACKFILL_BATCH);
		n = seen = 0;
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			last = sqlite3_column_int64(st, 0);
			seen++;
			if (store_backfill_parse(col_text(st, 1), &states[n]) ==
			    0)
				ids[n++] = last;
		}
		if (rc != SQLITE_DONE) {
			store_dberr(s, "backfill events.state");
			store_done(s, st);
			return -1;
		}
		store_done(s, st);
		if (n == 0)
			continue;
		st = store_prep_once(
		    s, "UPDATE events SET state = ?2 WHERE id = ?1");
		if (st == NULL)
			return -1;
		for (size_t i = 0; i < n; i++) {
			sqlite3_bind_int64(st, 1, ids[i]);
			bind_text(st, 2, wstate_names[states[i]]);
			if (store_step_done(s, st, "backfill events.state") ==
			    -1) {
				store_done(s, st);
				return -1;
			}
		}
		store_done(s, st);
	} while (seen == BACKFILL_BATCH);
	return 0;
}

/* Take the schema from version - 1 to version, in one transaction. */
static int
store_migrate_one(struct store_be *s, int version)
{
	const struct migration *m = &migrations[version - 1];
	int64_t current;
	char *sql;
	int has, rc;

	if (store_exec(s, "BEGIN IMMEDIATE", "begin") == -1)
		return -1;
	/* Another process may have migrated while we waited for the lock. */
	if (store_int_query(s, "PRAGMA user_version", &current) == -1)
		goto fail;
	if (current >= version) {
		s->version = (int)current;
		return store_exec(s, "COMMIT", "commit");
	}
	if (m->script != NULL && store_exec(s, m->script, "schema") == -1)
		goto fail;
	for (size_t i = 0; i < m->ncolumns; i++) {
		const struct column *c = &m->columns[i];

		if (store_has_column(s, c->table, c->name, &has) == -1)
			goto fail;
		if (has)
			continue;
		sql = xasprintf("ALTER TABLE %s ADD COLUMN %s %s", c->table,
		    c->name, c->decl);
		rc = store_exec(s, sql, "add column");
		free(sql);
		if (rc == -1)
			goto fail;
	}
	if (m->backfill != NULL && m->backfill(s) == -1)
		goto fail;
	sql = xasprintf("PRAGMA user_version = %d", version);
	rc = store_exec(s, sql, "set user_version");
	free(sql);
	if (rc == -1)
		goto fail;
	if (store_exec(s, "COMMIT", "commit") == -1)
		goto fail;
	s->version = version;
	return 0;

fail:
	if (!sqlite3_get_autocommit(s->db))
		store_exec_quiet(s, "ROLLBACK");
	return -1;
}

static char *
store_build_task_select(void)
{
	char *cols, *tmp, *sql;

	cols = xstrdup("id, workflow_state, request, repo, base_commit,"
	               " verify_command, auto_approve, created_at, updated_at,"
	               " workflow_checkpoint_data");
	for (int i = 0; i < TC_MAX; i++) {
		tmp = xasprintf("%s, %s", cols, task_col_names[i]);
		free(cols);
		cols = tmp;
	}
	for (int i = 0; i < TI_MAX; i++) {
		tmp = xasprintf("%s, %s", cols, task_icol_names[i]);
		free(cols);
		cols = tmp;
	}
	sql = xasprintf("SELECT %s,"
	                " (SELECT COALESCE(SUM(tokens_in), 0) FROM usage"
	                " WHERE usage.task_id = tasks.id),"
	                " (SELECT COALESCE(SUM(tokens_out), 0) FROM usage"
	                " WHERE usage.task_id = tasks.id)"
	                " FROM tasks",
	    cols);
	free(cols);
	return sql;
}

/* Is the file at path, if it exists and is not empty, an SQLite file? */
static int
store_check_header(const char *path, int *exists, char **why)
{
	static const char magic[16] = "SQLite format 3";
	struct stat sb;
	char buf[16];
	int fd, rc;

	*why = NULL;
	if (stat(path, &sb) == -1) {
		if (errno != ENOENT) {
			*why = xstrdup(strerror(errno));
			return -1;
		}
		*exists = 0;
		return 0;
	}
	*exists = 1;
	if (!S_ISREG(sb.st_mode)) {
		*why = xstrdup("not a regular file");
		return -1;
	}
	if (sb.st_size == 0)
		return 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		*why = xstrdup(strerror(errno));
		return -1;
	}
	rc = read_full(fd, buf, sizeof buf);
	close(fd);
	if (rc != 1 || memcmp(buf, magic, sizeof magic) != 0) {
		*why = xstrdup("file is not a database");
		return -1;
	}
	return 0;
}

static char *
store_damaged(const char *path, const char *why)
{
	return xasprintf("DB: %s is not an SQLite database (or is damaged):"
	                 " %s; restore it from a backup (orch-supervisor"
	                 " backup) or move it aside",
	    path, why);
}

/* Set the pragmas of a read-write connection. */
static int
store_pragmas(struct store_be *s, const struct store_opts *opts)
{
	sqlite3_stmt *st;
	char *sql;
	int pages = DEFAULT_AUTOCHECKPOINT, rc, wal;

	if (opts != NULL && opts->autocheckpoint_pages > 0)
		pages = opts->autocheckpoint_pages;
	if ((st = store_prep_once(s, "PRAGMA journal_mode = WAL")) == NULL)
		return -1;
	rc = sqlite3_step(st);
	wal = rc == SQLITE_ROW && col_text(st, 0) != NULL &&
	      strcmp(col_text(st, 0), "wal") == 0;
	if (rc != SQLITE_ROW)
		store_dberr(s, "journal_mode");
	else if (!wal)
		store_seterr(s, "journal_mode: cannot switch to WAL (%s)",
		    col_text(st, 0) != NULL ? col_text(st, 0) : "?");
	store_done(s, st);
	if (!wal)
		return -1;
	if (store_exec(s, "PRAGMA synchronous = FULL", "synchronous") == -1 ||
	    store_exec(s, "PRAGMA foreign_keys = ON", "foreign_keys") == -1)
		return -1;
	sql = xasprintf("PRAGMA wal_autocheckpoint = %d", pages);
	rc = store_exec(s, sql, "wal_autocheckpoint");
	free(sql);
	return rc;
}

static void sqlite_close(struct store_be *);

int
store_sqlite_open(struct store_be **storep, const char *path,
    enum store_mode mode, const struct store_opts *opts, char **cause)
{
	struct store_be *s;
	int64_t schema, user;
	char *why = NULL;
	int exists, flags, busy = DEFAULT_BUSY_TIMEOUT_MS, ok;

	*storep = NULL;
	*cause = NULL;
	if (opts != NULL && opts->busy_timeout_ms > 0)
		busy = opts->busy_timeout_ms;

	/*
	 * Refuse a file that is not ours before SQLite touches it: SQLite
	 * would happily turn an empty-looking or foreign file into a database
	 * (or a WAL switch would write its header), and that file may be the
	 * user's only copy of something.
	 */
	if (store_check_header(path, &exists, &why) == -1) {
		*cause = store_damaged(path, why);
		free(why);
		return -1;
	}
	if (mode == STORE_RDONLY) {
		if (!exists) {
			*cause =
			    xasprintf("DB: %s: %s", path, strerror(ENOENT));
			return -1;
		}
		flags = SQLITE_OPEN_READONLY;
	} else if (exists)
		flags = SQLITE_OPEN_READWRITE;
	else
		flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	flags |= SQLITE_OPEN_NOMUTEX;

	s = xcalloc(1, sizeof *s);
	s->path = xstrdup(path);
	s->mode = mode;
	if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
		*cause = xasprintf("DB: %s: %s", path,
		    s->db != NULL ? sqlite3_errmsg(s->db) : "out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(s->db, busy);
	/*
	 * Until the checks pass, closing must not checkpoint a WAL file left
	 * beside the database into it.
	 */
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);

	/* Read only, before anything could write. */
	if (store_int_query(s, "PRAGMA schema_version", &schema) == -1 ||
	    store_int_query(s, "PRAGMA user_version", &user) == -1) {
		*cause = store_damaged(path, sqlite3_errmsg(s->db));
		goto fail;
	}
	/*
	 * A read-only open does not scan the whole file (a large database
	 * would make every `list` slow): read-only commands cannot make
	 * damage worse, and a damaged page they touch is reported then.
	 */
	ok = 1;
	why = NULL;
	if (mode == STORE_RW &&
	    store_check(s, "PRAGMA quick_check", &ok, &why) == -1) {
		*cause = store_damaged(path, sqlite3_errmsg(s->db));
		goto fail;
	}
	if (!ok) {
		*cause = store_damaged(path, why != NULL ? why : "quick_check");
		free(why);
		goto fail;
	}
	free(why);
	if (user > SCHEMA_VERSION || user < 0) {
		*cause = xasprintf("DB: %s was made by a newer orch-supervisor"
		                   " (schema version %lld, this one knows %d);"
		                   " upgrade orch-supervisor",
		    path, (long long)user, SCHEMA_VERSION);
		goto fail;
	}
	s->version = (int)user;
	sqlite3_db_config(s->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, NULL);

	if (mode == STORE_RDONLY) {
		if (user < SCHEMA_VERSION) {
			*cause = xasprintf("DB: %s has schema version %lld,"
			                   " older than %d; open it read-write"
			                   " once to upgrade it",
			    path, (long long)user, SCHEMA_VERSION);
			goto fail;
		}
		if (store_exec(s, "PRAGMA query_only = ON", "query_only") ==
		    -1) {
			*cause = xasprintf("DB: %s: %s", path, s->err);
			goto fail;
		}
	} else {
		if (store_pragmas(s, opts) == -1) {
			*cause = xasprintf("DB: %s: %s", path, s->err);
			goto fail;
		}
		for (int v = s->version + 1; v <= SCHEMA_VERSION; v++) {
			if (s->version >= v)
				continue;
			if (store_migrate_one(s, v) == -1) {
				*cause = xasprintf("DB: %s: migration to schema"
				                   " version %d failed: %s",
				    path, v, s->err);
				goto fail;
			}
		}
	}
	s->task_select = store_build_task_select();
	*storep = s;
	return 0;

fail:
	sqlite_close(s);
	return -1;
}

static void
sqlite_close(struct store_be *s)
{
	if (s == NULL)
		return;
	if (s->db != NULL) {
		if (!sqlite3_get_autocommit(s->db))
			store_exec_quiet(s, "ROLLBACK");
		/* Lazy commits are durable by the time the store is closed. */
		if (s->unsynced && sqlite_flush(s) == -1)
			log_warnx("%s", s->err);
		for (int i = 0; i < ST_MAX; i++)
			sqlite3_finalize(s->stmt[i]);
		for (int i = 0; i < TC_MAX; i++) {
			sqlite3_finalize(s->set_text[i]);
			sqlite3_finalize(s->stamp[i]);
		}
		for (int i = 0; i < TI_MAX; i++)
			sqlite3_finalize(s->set_int[i]);
		for (int i = 0; i < ONCE_MAX; i++) {
			sqlite3_finalize(s->once[i].st);
			free(s->once[i].sql);
		}
		sqlite3_close(s->db);
	}
	free(s->task_select);
	free(s->path);
	free(s->err);
	free(s);
}

/* -------------------------------------------------------------------------
 * Tasks
 *
 * The *_locked helpers write inside a transaction their caller opened, so
 * that a new task, its workflow_start checkpoint and its first event are
 * one commit: a task is never seen without them.
 * ------------------------------------------------------------------------ */

static int
store_checkpoint_add_locked(
    struct store_be *s, int64_t task, const char *name, const char *data)
{
	sqlite3_stmt *st;

	if ((st = store_prep(s, ST_CHECKPOINT_ADD)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, task);
	bind_text(st, 2, name);
	bind_text(st, 3, data);
	if (store_step_done(s, st, "insert checkpoint") == -1)
		return -1;
	if ((st = store_prep(s, ST_CHECKPOINT_TASK)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, task);
	bind_text(st, 2, data);
	return store_step_task(s, st, task, "update checkpoint data");
}

/* state is the new workflow_state of a state change, else NULL. */
static int
store_event_add_locked(struct store_be *s, int64_t task, enum event_kind kind,
    const char *stage, const char *text, const char *state, const char *data)
{
	sqlite3_stmt *st;

	if ((st = store_prep(s, ST_EVENT_ADD)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, task);
	bind_text(st, 2, event_kind_names[kind]);
	bind_text(st, 3, stage);
	bind_text(st, 4, text);
	bind_text(st, 5, state);
	bind_text(st, 6, data);
	return store_step_done(s, st, "insert event");
}

static int
store_task_add_locked(
    struct store_be *s, const struct task_new *tn, int64_t *id)
{
	sqlite3_stmt *st;
	json_t *obj;
	char *data;
	int rc;

	if ((st = store_prep(s, ST_TASK_ADD)) == NULL)
		return -1;
	bind_text(st, 1, tn->request);
	bind_text(st, 2, tn->repo);
	bind_text(st, 3, tn->base_commit);
	bind_text(st, 4, tn->verify_command);
	sqlite3_bind_int(st, 5, tn->auto_approve);
	if (store_step_done(s, st, "insert task") == -1)
		return -1;
	*id = sqlite3_last_insert_rowid(s->db);

	obj = json_pack("{s:s}", "request", tn->request);
	if (obj == NULL || (data = json_dumps(obj,
	                        JSON_COMPACT | JSON_ENSURE_ASCII)) == NULL) {
		json_decref(obj);
		store_seterr(s, "insert task: cannot encode the request");
		return -1;
	}
	json_decref(obj);
	rc = store_checkpoint_add_locked(s, *id, "workflow_start", data);
	free(data);
	if (rc == -1)
		return -1;
	/* Submitting is the task's first state change: into pending. */
	return store_event_add_locked(s, *id, EV_STATE, NULL, "task submitted",
	    wstate_names[WS_PENDING], NULL);
}

static int
sqlite_task_add(struct store_be *s, const struct task_new *tn, int64_t *id)
{
	if (tn->request == NULL) {
		store_seterr(s, "insert task: no request");
		return -1;
	}
	if (store_wbegin(s) == -1)
		return -1;
	return store_wend(s, store_task_add_locked(s, tn, id));
}

/* A task from a row of task_select. */
static struct task *
store_task_row(struct store_be *s, sqlite3_stmt *st)
{
	struct task *t;
	enum wstate ws;
	const char *state = col_text(st, TQ_STATE);

	if (wstate_parse(state, &ws) == -1) {
		store_seterr(s, "task %lld: unknown workflow_state '%s'",
		    (long long)sqlite3_column_int64(st, TQ_ID),
		    state != NULL ? state : "NULL");
		return NULL;
	}
	t = xcalloc(1, sizeof *t);
	t->id = sqlite3_column_int64(st, TQ_ID);
	t->state = ws;
	t->request = col_strdup(st, TQ_REQUEST);
	t->repo = col_strdup(st, TQ_REPO);
	t->base_commit = col_strdup(st, TQ_BASE_COMMIT);
	t->verify_command = col_strdup(st, TQ_VERIFY_COMMAND);
	t->auto_approve = sqlite3_column_int(st, TQ_AUTO_APPROVE);
	t->created_at = col_strdup(st, TQ_CREATED_AT);
	t->updated_at = col_strdup(st, TQ_UPDATED_AT);
	t->workflow_checkpoint_data = col_strdup(st, TQ_CHECKPOINT_DATA);
	for (int i = 0; i < TC_MAX; i++)
		t->text[i] = col_strdup(st, TQ_TEXT + i);
	for (int i = 0; i < TI_MAX; i++) {
		if (sqlite3_column_type(st, TQ_IVAL + i) == SQLITE_NULL)
			t->ival[i] = i == TI_FAILED_STATE ? -1 : 0;
		else
			t->ival[i] = sqlite3_column_int64(st, TQ_IVAL + i);
	}
	t->tokens_in = sqlite3_column_int64(st, TQ_TOKENS_IN);
	t->tokens_out = sqlite3_column_int64(st, TQ_TOKENS_OUT);
	return t;
}

static int
sqlite_task_get(struct store_be *s, int64_t id, struct task **taskp)
{
	sqlite3_stmt *st;
	int rc;

	*taskp = NULL;
	if ((st = store_prep(s, ST_TASK_GET)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*taskp = store_task_row(s, st);
		sqlite3_reset(st);
		return *taskp == NULL ? -1 : 0;
	}
	if (rc != SQLITE_DONE)
		store_dberr(s, "select task");
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int
sqlite_task_set_state(struct store_be *s, int64_t id, enum wstate ws)
{
	sqlite3_stmt *st;

	if ((unsigned)ws >= WS_MAX) {
		store_seterr(s, "set state: bad state %d", (int)ws);
		return -1;
	}
	if (store_wbegin(s) == -1)
		return -1;
	if ((st = store_prep(s, ST_TASK_SET_STATE)) == NULL)
		return store_wend(s, -1);
	sqlite3_bind_int64(st, 1, id);
	bind_text(st, 2, wstate_names[ws]);
	bind_text(st, 3, tstatus_names[wstate_status(ws)]);
	return store_wend(s, store_step_task(s, st, id, "set state"));
}

static int
sqlite_task_set_status(struct store_be *s, int64_t id, enum tstatus ts)
{
	sqlite3_stmt *st;
	int rc;

	if ((unsigned)ts >= TS_MAX) {
		store_seterr(s, "set status: bad status %d", (int)ts);
		return -1;
	}
	if (store_wbegin(s) == -1)
		return -1;
	st = store_prep_once(s,
	    "UPDATE tasks SET status = ?2, updated_at = " NOW " WHERE id = ?1");
	if (st == NULL)
		return store_wend(s, -1);
	sqlite3_bind_int64(st, 1, id);
	bind_text(st, 2, tstatus_names[ts]);
	rc = store_step_task(s, st, id, "set status");
	store_done(s, st);
	return store_wend(s, rc);
}

static int
sqlite_task_set_text(
    struct store_be *s, int64_t id, enum task_col col, const char *value)
{
	sqlite3_stmt *st;
	char *sql;

	if ((unsigned)col >= TC_MAX) {
		store_seterr(s, "set text: bad column %d", (int)col);
		return -1;
	}
	if (store_wbegin(s) == -1)
		return -1;
	sql = xasprintf("UPDATE tasks SET %s = ?2, updated_at = %s"
	                " WHERE id = ?1",
	    task_col_names[col], NOW);
	st = store_prep_slot(s, &s->set_text[col], sql);
	free(sql);
	if (st == NULL)
		return store_wend(s, -1);
	sqlite3_bind_int64(st, 1, id);
	bind_text(st, 2, value);
	return store_wend(s, store_step_task(s, st, id, task_col_names[col]));
}

/* A task made by the Python orchestrator gets the repository it lacks. */
static int
sqlite_task_set_repo(
    struct store_be *s, int64_t id, const char *repo, const char *base_commit)
{
	sqlite3_stmt *st;
	int rc;

	if (store_wbegin(s) == -1)
		return -1;
	st = store_prep_once(s, "UPDATE tasks SET repo = ?2, base_commit = ?3, "
	                        "updated_at = " NOW " WHERE id = ?1");
	if (st == NULL)
		return store_wend(s, -1);
	sqlite3_bind_int64(st, 1, id);
	bind_text(st, 2, repo);
	bind_text(st, 3, base_commit);
	rc = store_step_task(s, st, id, "set repo");
	store_done(s, st);
	return store_wend(s, rc);
}

static int
sqlite_task_stamp(struct store_be *s, int64_t id, enum task_col col)
{
	sqlite3_stmt *st;
	char *sql;

	if (col != TC_PLAN_APPROVED_AT &&
	    col != TC_IMPLEMENTATION_APPROVED_AT) {
		store_seterr(s, "stamp: column %d is not a time", (int)col);
		return -1;
	}
	if (store_wbegin(s) == -1)
		return -1;
	sql = xasprintf("UPDATE tasks SET %s = %s, updated_at = %s"
	                " WHERE id = ?1",
	    task_col_names[col], NOW, NOW);
	st = store_prep_slot(s, &s->stamp[col], sql);
	free(sql);
	if (st == NULL)
		return store_wend(s, -1);
	sqlite3_bind_int64(st, 1, id);
	return store_wend(s, store_step_task(s, st, id, task_col_names[col]));
}

/* TI_FAILED_STATE -1 writes NULL. */
static int
sqlite_task_set_int(
    struct store_be *s, int64_t id, enum task_icol col, int64_t v)
{
	sqlite3_stmt *st;
	char *sql;

	if ((unsigned)col >= TI_MAX) {
		store_seterr(s, "set int: bad column %d", (int)col);
		return -1;
	}
	if (store_wbegin(s) == -1)
		return -1;
	sql = xasprintf("UPDATE tasks SET %s = ?2, updated_at = %s"
	                " WHERE id = ?1",
	    task_icol_names[col], NOW);
	st = store_prep_slot(s, &s->set_int[col], sql);
	free(sql);
	if (st == NULL)
		return store_wend(s, -1);
	sqlite3_bind_int64(st, 1, id);
	if (col == TI_FAILED_STATE && v < 0)
		sqlite3_bind_null(st, 2);
	else
		sqlite3_bind_int64(st, 2, v);
	return store_wend(s, store_step_task(s, st, id, task_icol_names[col]));
}

static int
sqlite_task_list_desc(
    struct store_be *s, int status, int64_t before, store_task_cb cb, void *arg)
{
	sqlite3_stmt *st;
	struct task *t;
	char *sql;
	int rc, stop = 0;

	if (status >= TS_MAX) {
		store_seterr(s, "list tasks: bad status %d", status);
		return -1;
	}
	sql = xasprintf("%s WHERE id < ?1%s ORDER BY id DESC", s->task_select,
	    status >= 0 ? " AND status = ?2" : "");
	st = store_prep_once(s, sql);
	free(sql);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, before > 0 ? before : INT64_MAX);
	if (status >= 0)
		bind_text(st, 2, tstatus_names[status]);
	while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if ((t = store_task_row(s, st)) == NULL) {
			store_done(s, st);
			return -1;
		}
		stop = cb(t, arg);
		task_free(t);
	}
	if (!stop && rc != SQLITE_DONE) {
		store_dberr(s, "list tasks");
		store_done(s, st);
		return -1;
	}
	store_done(s, st);
	return 0;
}

static int
sqlite_task_list(
    struct store_be *s, int status, int resumable, store_task_cb cb, void *arg)
{
	sqlite3_stmt *st;
	struct task *t;
	char *sql;
	int rc, stop = 0;

	if (status >= TS_MAX) {
		store_seterr(s, "list tasks: bad status %d", status);
		return -1;
	}
	sql = xasprintf("%s%s%s%s%s ORDER BY id", s->task_select,
	    status >= 0 || resumable ? " WHERE" : "",
	    status >= 0 ? " status = ?1" : "",
	    status >= 0 && resumable ? " AND" : "",
	    resumable ? " status NOT IN ('completed', 'cancelled')" : "");
	st = store_prep_once(s, sql);
	free(sql);
	if (st == NULL)
		return -1;
	if (status >= 0)
		bind_text(st, 1, tstatus_names[status]);
	while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if ((t = store_task_row(s, st)) == NULL) {
			store_done(s, st);
			return -1;
		}
		stop = cb(t, arg);
		task_free(t);
	}
	if (!stop && rc != SQLITE_DONE) {
		store_dberr(s, "list tasks");
		store_done(s, st);
		return -1;
	}
	store_done(s, st);
	return 0;
}

static int
sqlite_task_runnable(
    struct store_be *s, int64_t after, int64_t *ids, size_t max, size_t *n)
{
	sqlite3_stmt *st;
	int rc;

	*n = 0;
	if (max == 0)
		return 0;
	if ((st = store_prep(s, ST_RUNNABLE)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, max > INT64_MAX ? INT64_MAX : (int64_t)max);
	sqlite3_bind_int64(st, 2, after);
	while (*n < max && (rc = sqlite3_step(st)) == SQLITE_ROW)
		ids[(*n)++] = sqlite3_column_int64(st, 0);
	if (*n < max && rc != SQLITE_DONE) {
		store_dberr(s, "runnable tasks");
		sqlite3_reset(st);
		return -1;
	}
	sqlite3_reset(st);
	return 0;
}

/* -------------------------------------------------------------------------
 * Checkpoints
 * ------------------------------------------------------------------------ */

static int
sqlite_checkpoint_add(
    struct store_be *s, int64_t task, const char *name, const char *data)
{
	if (name == NULL) {
		store_seterr(s, "insert checkpoint: no name");
		return -1;
	}
	if (store_wbegin(s) == -1)
		return -1;
	return store_wend(s, store_checkpoint_add_locked(s, task, name, data));
}

static int
sqlite_checkpoint_list(
    struct store_be *s, int64_t task, store_checkpoint_cb cb, void *arg)
{
	sqlite3_stmt *st;
	struct checkpoint cp;
	int rc, stop = 0;

	st = store_prep_once(s,
	    "SELECT id, checkpoint_name, checkpoint_data, created_at"
	    " FROM checkpoints WHERE task_id = ?1 ORDER BY id");
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, task);
	while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		cp.id = sqlite3_column_int64(st, 0);
		cp.name = col_text(st, 1);
		cp.data = col_text(st, 2);
		cp.created_at = col_text(st, 3);
		if (cp.name == NULL)
			cp.name = "";
		if (cp.created_at == NULL)
			cp.created_at = "";
		stop = cb(&cp, arg);
	}
	if (!stop && rc != SQLITE_DONE) {
		store_dberr(s, "list checkpoints");
		store_done(s, st);
		return -1;
	}
	store_done(s, st);
	return 0;
}

/* -------------------------------------------------------------------------
 * Journal: every model reply and tool result, before it is used
 * ------------------------------------------------------------------------ */

static int
store_journal_add_locked(struct store_be *s, int64_t task, int64_t run,
    int64_t seq, const char *stage, const char *kind, const char *data,
    int64_t tokens_in, int64_t tokens_out)
{
	sqlite3_stmt *st;

	if ((st = store_prep(s, ST_JOURNAL_ADD)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, task);
	sqlite3_bind_int64(st, 2, run);
	sqlite3_bind_int64(st, 3, seq);
	bind_text(st, 4, stage);
	bind_text(st, 5, kind);
	bind_text(st, 6, data);
	sqlite3_bind_int64(st, 7, tokens_in);
	sqlite3_bind_int64(st, 8, tokens_out);
	if (store_step_done(s, st, "insert journal") == -1)
		return -1;
	if ((st = store_prep(s, ST_USAGE_ADD)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, task);
	bind_text(st, 2, stage);
	sqlite3_bind_int(st, 3, strcmp(kind, "reply") == 0);
	sqlite3_bind_int64(st, 4, tokens_in);
	sqlite3_bind_int64(st, 5, tokens_out);
	return store_step_done(s, st, "update usage");
}

static int
sqlite_journal_add(struct store_be *s, int64_t task, int64_t run, int64_t seq,
    const char *stage, const char *kind, const char *data, int64_t tokens_in,
    int64_t tokens_out)
{
	if (stage == NULL || kind == NULL || data == NULL) {
		store_seterr(s, "insert journal: stage, kind and data are"
		                " required");
		return -1;
	}
	if (store_wbegin(s) == -1)
		return -1;
	return store_wend(s, store_journal_add_locked(s, task, run, seq, stage,
	                         kind, data, tokens_in, tokens_out));
}

static int
sqlite_journal_list(struct store_be *s, int64_t task, int64_t run,
    store_journal_cb cb, void *arg)
{
	sqlite3_stmt *st;
	struct journal_entry je;
	int rc, stop = 0;

	st =
	    store_prep_once(s, "SELECT seq, kind, data FROM journal"
	                       " WHERE task_id = ?1 AND run = ?2 ORDER BY seq");
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, task);
	sqlite3_bind_int64(st, 2, run);
	while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		je.seq = sqlite3_column_int64(st, 0);
		je.kind = col_text(st, 1);
		je.data = col_text(st, 2);
		stop = cb(&je, arg);
	}
	if (!stop && rc != SQLITE_DONE) {
		store_dberr(s, "list journal");
		store_done(s, st);
		return -1;
	}
	store_done(s, st);
	return 0;
}

/* -------------------------------------------------------------------------
 * Model turns: tokens, time and model, for costs
 * ------------------------------------------------------------------------ */

static int
sqlite_turn_add(struct store_be *s, int64_t task, const char *stage,
    const char *model, int64_t in, int64_t out, int64_t cached, int64_t ms)
{
	sqlite3_stmt *st;
	int rc;

	if (stage == NULL || model == NULL) {
		store_seterr(s, "insert turn: stage and model are required");
		return -1;
	}
	if (store_wbegin(s) == -1)
		return -1;
	st = store_prep_once(s,
	    "INSERT INTO turns (task_id, ts, stage, model, tokens_in,"
	    " tokens_out, cached_in, duration_ms)"
	    " VALUES (?1, " NOW ", ?2, ?3, ?4, ?5, ?6, ?7)");
	if (st == NULL)
		return store_wend(s, -1);
	sqlite3_bind_int64(st, 1, task);
	bind_text(st, 2, stage);
	bind_text(st, 3, model);
	sqlite3_bind_int64(st, 4, in);
	sqlite3_bind_int64(st, 5, out);
	sqlite3_bind_int64(st, 6, cached);
	sqlite3_bind_int64(st, 7, ms);
	rc = store_step_done(s, st, "insert turn");
	store_done(s, st);
	return store_wend(s, rc);
}

static int
sqlite_turn_sums(struct store_be *s, int64_t task, store_turn_cb cb, void *arg)
{
	sqlite3_stmt *st;
	struct turn_sum ts;
	int rc, stop = 0;

	st = store_prep_once(s,
	    "SELECT substr(u.ts, 1, 10), u.model, t.repo, sum(u.tokens_in),"
	    " sum(u.tokens_out), sum(u.cached_in), sum(u.duration_ms),"
	    " count(*) FROM turns u JOIN tasks t ON t.id = u.task_id"
	    " WHERE ?1 = 0 OR u.task_id = ?1"
	    " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3");
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, task);
	while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		ts.day = col_text(st, 0);
		ts.model = col_text(st, 1);
		ts.repo = col_text(st, 2);
		ts.tokens_in = sqlite3_column_int64(st, 3);
		ts.tokens_out = sqlite3_column_int64(st, 4);
		ts.cached_in = sqlite3_column_int64(st, 5);
		ts.duration_ms = sqlite3_column_int64(st, 6);
		ts.turns = sqlite3_column_int64(st, 7);
		stop = cb(&ts, arg);
	}
	if (!stop && rc != SQLITE_DONE) {
		store_dberr(s, "sum turns");
		store_done(s, st);
		return -1;
	}
	store_done(s, st);
	return 0;
}

/* -------------------------------------------------------------------------
 * Events: the task log
 *
 * A state change carries its new state in events.state; the text is for
 * people and is never parsed (but once, by the version-4 migration).
 * ------------------------------------------------------------------------ */

static int
sqlite_event_add(struct store_be *s, int64_t task, enum event_kind kind,
    const char *stage, const char *text)
{
	if ((unsigned)kind >= EV_MAX || text == NULL) {
		store_seterr(s, "insert event: bad kind or no text");
		return -1;
	}
	/*
	 * A log line on its own is committed without waiting for the disk:
	 * the WAL keeps it in order, a crash of the service loses nothing
	 * (the kernel has it), and the next durable commit (a journal entry,
	 * a checkpoint, a state change) takes it to the disk with its own.
	 * Only a power cut can lose the lines since that commit.  Inside a
	 * transaction an event is as durable as the rest of it.
	 */
	if (store_wbegin_as(s, 1) == -1)
		return -1;
	return store_wend(
	    s, store_event_add_locked(s, task, kind, stage, text, NULL, NULL));
}

static int
sqlite_event_add_data(struct store_be *s, int64_t task, enum event_kind kind,
    const char *stage, const char *text, const json_t *data)
{
	char *d = NULL;
	int rc;

	if ((unsigned)kind >= EV_MAX || kind == EV_STATE || text == NULL) {
		store_seterr(s, "insert event: bad kind or no text");
		return -1;
	}
	if (data != NULL &&
	    (d = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		store_seterr(s, "insert event: its data cannot be written");
		return -1;
	}
	/* Lazy as store_event_add; inside a transaction, as durable as it. */
	if (store_wbegin_as(s, 1) == -1) {
		free(d);
		return -1;
	}
	rc = store_wend(
	    s, store_event_add_locked(s, task, kind, stage, text, NULL, d));
	free(d);
	return rc;
}

static int
sqlite_event_add_state(struct store_be *s, int64_t task, enum wstate state,
    const char *stage, const char *text)
{
	if ((unsigned)state >= WS_MAX || text == NULL) {
		store_seterr(s, "insert event: bad state or no text");
		return -1;
	}
	/* Lazy, as store_event_add: the state it tells of was written
	 * durably by store_task_set_state, and the next commit takes this
	 * row to the disk. */
	if (store_wbegin_as(s, 1) == -1)
		return -1;
	return store_wend(s, store_event_add_locked(s, task, EV_STATE, stage,
	                         text, wstate_names[state], NULL));
}

static int
sqlite_event_list(struct store_be *s, int64_t task, int64_t after, int limit,
    store_event_cb cb, void *arg)
{
	sqlite3_stmt *st;
	struct event_row ev;
	int rc, stop = 0;

	if (task != 0)
		st = store_prep_once(s,
		    "SELECT id, task_id, ts, kind, stage, text, state, data"
		    " FROM events"
		    " WHERE task_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3");
	else
		st = store_prep_once(s,
		    "SELECT id, task_id, ts, kind, stage, text, state, data"
		    " FROM events WHERE id > ?2 ORDER BY id LIMIT ?3");
	if (st == NULL)
		return -1;
	if (task != 0)
		sqlite3_bind_int64(st, 1, task);
	sqlite3_bind_int64(st, 2, after);
	sqlite3_bind_int(st, 3, limit > 0 ? limit : -1);
	while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		ev.id = sqlite3_column_int64(st, 0);
		ev.task = sqlite3_column_int64(st, 1);
		ev.ts = col_text(st, 2);
		ev.kind = col_text(st, 3);
		ev.stage = col_text(st, 4);
		ev.text = col_text(st, 5);
		/* Only a state change has one, and a damaged or hand-edited
		 * row may hold anything: what is not a state is none. */
		if (wstate_parse(col_text(st, 6), &ev.state) == -1)
			ev.state = WS_MAX;
		ev.data = col_text(st, 7);
		stop = cb(&ev, arg);
	}
	if (!stop && rc != SQLITE_DONE) {
		store_dberr(s, "list events");
		store_done(s, st);
		return -1;
	}
	store_done(s, st);
	return 0;
}

/* -------------------------------------------------------------------------
 * Usage and stats
 * ------------------------------------------------------------------------ */

static int
sqlite_usage_json(struct store_be *s, int64_t task, json_t **out)
{
	sqlite3_stmt *st;
	json_t *obj;
	int rc;

	*out = NULL;
	st = store_prep_once(s,
	    "SELECT stage, calls, tokens_in, tokens_out FROM usage"
	    " WHERE task_id = ?1 ORDER BY stage");
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, task);
	obj = json_object();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_object_set_new(obj, col_text(st, 0),
		    json_pack("{s:I,s:I,s:I}", "calls",
		        (json_int_t)sqlite3_column_int64(st, 1), "tokens_in",
		        (json_int_t)sqlite3_column_int64(st, 2), "tokens_out",
		        (json_int_t)sqlite3_column_int64(st, 3)));
	}
	if (rc != SQLITE_DONE) {
		store_dberr(s, "usage");
		store_done(s, st);
		json_decref(obj);
		return -1;
	}
	store_done(s, st);
	*out = obj;
	return 0;
}

static int
sqlite_task_counts(struct store_be *s, int64_t counts[WS_MAX])
{
	sqlite3_stmt *st;
	enum wstate ws;
	int rc;

	memset(counts, 0, WS_MAX * sizeof *counts);
	/* The workflow_state index covers this: no task row is read. */
	st = store_prep_once(s, "SELECT workflow_state, COUNT(*) FROM tasks"
	                        " GROUP BY workflow_state");
	if (st == NULL)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (wstate_parse(col_text(st, 0), &ws) == 0)
			counts[ws] = sqlite3_column_int64(st, 1);
	}
	store_done(s, st);
	if (rc != SQLITE_DONE) {
		store_dberr(s, "task counts");
		return -1;
	}
	return 0;
}

static int
sqlite_stats_json(struct store_be *s, json_t **out)
{
	static const struct {
		const char *key;
		const char *sql;
	} counts[] = {
	    {"tasks", "SELECT COUNT(*) FROM tasks"},
	    {"tokens_in", "SELECT COALESCE(SUM(tokens_in), 0) FROM usage"},
	    {"tokens_out", "SELECT COALESCE(SUM(tokens_out), 0) FROM usage"},
	    {"events", "SELECT COUNT(*) FROM events"},
	    {"journal", "SELECT COUNT(*) FROM journal"},
	    {"checkpoints", "SELECT COUNT(*) FROM checkpoints"},
	};
	sqlite3_stmt *st;
	json_t *obj, *by;
	int64_t v, pages, size;
	enum tstatus ts;
	int rc;

	*out = NULL;
	obj = json_object();
	for (size_t i = 0; i < nitems(counts); i++) {
		if (store_int_query(s, counts[i].sql, &v) == -1)
			goto fail;
		json_object_set_new(obj, counts[i].key, json_integer(v));
	}

	by = json_object();
	json_object_set_new(obj, "by_status", by);
	for (int i = 0; i < TS_MAX; i++)
		json_object_set_new(by, tstatus_names[i], json_integer(0));
	st = store_prep_once(
	    s, "SELECT status, COUNT(*) FROM tasks GROUP BY status");
	if (st == NULL)
		goto fail;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (tstatus_parse(col_text(st, 0), &ts) == 0)
			json_object_set_new(by, tstatus_names[ts],
			    json_integer(sqlite3_column_int64(st, 1)));
	}
	if (rc != SQLITE_DONE) {
		store_dberr(s, "stats");
		store_done(s, st);
		goto fail;
	}
	store_done(s, st);

	if (store_int_query(s, "PRAGMA page_count", &pages) == -1 ||
	    store_int_query(s, "PRAGMA page_size", &size) == -1)
		goto fail;
	json_object_set_new(obj, "db_bytes", json_integer(pages * size));
	json_object_set_new(obj, "schema_version", json_integer(s->version));
	*out = obj;
	return 0;

fail:
	json_decref(obj);
	return -1;
}

/* -------------------------------------------------------------------------
 * Backup and integrity
 * ------------------------------------------------------------------------ */

/* fsync the directory holding path, so that a rename in it is durable. */
static int
fsync_parent(const char *path)
{
	char *copy = xstrdup(path);
	int fd, rc = 0;

	if ((fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	    -1) {
		free(copy);
		return -1;
	}
	if (fsync(fd) == -1 && errno != EINVAL)
		rc = -1;
	close(fd);
	free(copy);
	return rc;
}

static int
sqlite_backup(struct store_be *s, const char *dest)
{
	sqlite3 *d = NULL;
	sqlite3_backup *b;
	char *tmp, *journal;
	int rc, fd, tries;

	/* The copy would include the open transaction's uncommitted rows. */
	if (s->in_tx) {
		store_seterr(s, "backup: a transaction is open");
		return -1;
	}
	tmp = xasprintf("%s.tmp-%ld", dest, (long)getpid());
	journal = xasprintf("%s-journal", tmp);
	unlink(tmp);
	unlink(journal);

	if (sqlite3_open_v2(tmp, &d,
	        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	            SQLITE_OPEN_NOMUTEX,
	        NULL) != SQLITE_OK) {
		store_seterr(s, "backup: %s: %s", tmp,
		    d != NULL ? sqlite3_errmsg(d) : "out of memory");
		goto fail;
	}
	if ((b = sqlite3_backup_init(d, "main", s->db, "main")) == NULL) {
		store_seterr(s, "backup: %s", sqlite3_errmsg(d));
		goto fail;
	}
	/*
	 * One step copies every page inside a single read transaction on the
	 * source, so the copy is a consistent snapshot even while another
	 * connection writes (WAL readers do not wait for writers).
	 */
	tries = 0;
	while ((rc = sqlite3_backup_step(b, -1)) == SQLITE_BUSY ||
	       rc == SQLITE_LOCKED) {
		if (++tries > 100)
			break;
		sqlite3_sleep(50);
	}
	sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE) {
		store_seterr(s, "backup: %s", sqlite3_errstr(rc));
		goto fail;
	}
	if (sqlite3_errcode(d) != SQLITE_OK) {
		store_seterr(s, "backup: %s", sqlite3_errmsg(d));
		goto fail;
	}
	rc = sqlite3_close(d);
	d = NULL;
	if (rc != SQLITE_OK) {
		store_seterr(
		    s, "backup: close %s: %s", tmp, sqlite3_errstr(rc));
		goto fail;
	}
	if ((fd = open(tmp, O_RDONLY | O_CLOEXEC)) == -1) {
		store_seterr(s, "backup: %s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (fsync(fd) == -1) {
		store_seterr(s, "backup: fsync %s: %s", tmp, strerror(errno));
		close(fd);
		goto fail;
	}
	close(fd);
	if (rename(tmp, dest) == -1) {
		store_seterr(s, "backup: rename %s to %s: %s", tmp, dest,
		    strerror(errno));
		goto fail;
	}
	if (fsync_parent(dest) == -1) {
		store_seterr(s, "backup: fsync directory of %s: %s", dest,
		    strerror(errno));
		free(tmp);
		free(journal);
		return -1;
	}
	free(tmp);
	free(journal);
	return 0;

fail:
	if (d != NULL)
		sqlite3_close(d);
	unlink(tmp);
	unlink(journal);
	free(tmp);
	free(journal);
	return -1;
}

static int
sqlite_integrity(struct store_be *s, int *ok)
{
	char *first;

	if (store_check(s, "PRAGMA integrity_check", ok, &first) == -1)
		return -1;
	if (!*ok)
		store_seterr(s, "integrity_check: %s",
		    first != NULL ? first : "no result");
	free(first);
	return 0;
}

/* -------------------------------------------------------------------------
 * The event pump hook
 * ------------------------------------------------------------------------ */

/*
 * The service's event pump: sqlite3_update_hook sees every row this
 * connection inserts, committed or not; the pump reads the rows back
 * later, from the event loop, so only committed ones are ever seen.
 */
struct store_hook {
	void (*cb)(void *);
	void *arg;
};
static struct store_hook store_event_hook_fn;

static void
store_update_hook(
    void *arg, int op, const char *db, const char *table, sqlite3_int64 rowid)
{
	(void)arg;
	(void)db;
	(void)rowid;
	if (op == SQLITE_INSERT && strcmp(table, "events") == 0 &&
	    store_event_hook_fn.cb != NULL)
		store_event_hook_fn.cb(store_event_hook_fn.arg);
}

static void
sqlite_set_event_hook(struct store_be *s, void (*cb)(void *), void *arg)
{
	store_event_hook_fn.cb = cb;
	store_event_hook_fn.arg = arg;
	sqlite3_update_hook(s->db, cb != NULL ? store_update_hook : NULL, NULL);
}

static int
sqlite_event_max(struct store_be *s, int64_t *id)
{
	return store_int_query(
	    s, "SELECT COALESCE(MAX(id), 0) FROM events", id);
}

/* -------------------------------------------------------------------------
 * Counts and retention
 * ------------------------------------------------------------------------ */

static int
sqlite_task_count(struct store_be *s, enum tstatus status, int64_t *n)
{
	sqlite3_stmt *st =
	    store_prep_once(s, "SELECT COUNT(*) FROM tasks WHERE status = ?1");
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, tstatus_name(status), -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		store_dberr(s, "count tasks");
		store_done(s, st);
		return -1;
	}
	*n = sqlite3_column_int64(st, 0);
	store_done(s, st);
	return 0;
}

static int
sqlite_gc_candidates(
    struct store_be *s, unsigned days, store_task_cb cb, void *arg)
{
	sqlite3_stmt *st;
	char *sql;
	struct task *t;
	int64_t *ids = NULL;
	size_t n = 0, cap = 0;
	int rc, stop = 0;

	/* Collect the ids first: the callback may use the statement cache. */
	sql = xasprintf("SELECT id FROM tasks WHERE status IN ('completed',"
	                " 'failed', 'cancelled') AND updated_at <= "
	                "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-%u days')"
	                " ORDER BY id",
	    days);
	st = store_prep_once(s, sql);
	free(sql);
	if (st == NULL)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			ids = xrealloc(ids, cap * sizeof *ids);
		}
		ids[n++] = sqlite3_column_int64(st, 0);
	}
	if (rc != SQLITE_DONE) {
		store_dberr(s, "gc candidates");
		store_done(s, st);
		free(ids);
		return -1;
	}
	store_done(s, st);
	for (size_t i = 0; i < n && !stop; i++) {
		if (sqlite_task_get(s, ids[i], &t) == -1) {
			free(ids);
			return -1;
		}
		if (t != NULL)
			stop = cb(t, arg);
		task_free(t);
	}
	free(ids);
	return 0;
}

static int
sqlite_gc_task(
    struct store_be *s, int64_t task, int64_t *events, int64_t *journal)
{
	sqlite3_stmt *st;
	int rc = 0;

	*events = *journal = 0;
	if (store_wbegin(s) == -1)
		return -1;
	for (int i = 0; i < 2 && rc == 0; i++) {
		st = store_prep_once(
		    s, i == 0 ? "DELETE FROM events WHERE task_id = ?1"
		              : "DELETE FROM journal WHERE task_id = ?1");
		if (st == NULL) {
			rc = -1;
			break;
		}
		sqlite3_bind_int64(st, 1, task);
		if (sqlite3_step(st) != SQLITE_DONE) {
			store_dberr(s, "gc delete");
			rc = -1;
		} else
			*(i == 0 ? events : journal) = sqlite3_changes(s->db);
		store_done(s, st);
	}
	return store_wend(s, rc);
}

static int
sqlite_vacuum(struct store_be *s)
{
	if (s->mode != STORE_RW) {
		store_seterr(s, "database %s is open read-only", s->path);
		return -1;
	}
	if (store_exec(s, "VACUUM", "vacuum") == -1)
		return -1;
	/* VACUUM writes the whole file through the WAL: give it back. */
	return store_exec(
	    s, "PRAGMA wal_checkpoint(TRUNCATE)", "wal_checkpoint");
}

/* -------------------------------------------------------------------------
 * Recovering from a full disk
 * ------------------------------------------------------------------------ */

/*
 * A write that needs new space in the database: 0 when the database can be
 * written again after a storage error.
 */
static int
sqlite_probe(struct store_be *s)
{
	if (s->in_tx) {
		store_seterr(s, "probe: a transaction is open");
		return -1;
	}
	if (store_exec(s,
	        "BEGIN IMMEDIATE;"
	        "UPDATE tasks SET updated_at = updated_at"
	        " WHERE id = (SELECT max(id) FROM tasks);"
	        "COMMIT",
	        "probe") == -1) {
		int code = s->errcode;

		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		s->errcode = code;
		return -1;
	}
	return 0;
}

/* store_copy's source: every row of a table, as text. */
static int
sqlite_rows(struct store_be *s, const char *table, const char *const *cols,
    size_t ncols, store_row_cb cb, void *arg)
{
	const char *vals[64];
	sqlite3_stmt *st;
	struct buf b;
	int rc, stop = 0;

	if (ncols > nitems(vals)) {
		store_seterr(s, "%s: too many columns", table);
		return -1;
	}
	buf_init(&b);
	buf_adds(&b, "SELECT ");
	for (size_t i = 0; i < ncols; i++)
		buf_addf(&b, "%s%s", i ? ", " : "", cols[i]);
	buf_addf(&b, " FROM %s ORDER BY 1", table);
	st = store_prep_once(s, b.buf);
	buf_free(&b);
	if (st == NULL)
		return -1;
	while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		for (size_t i = 0; i < ncols; i++)
			vals[i] = col_text(st, (int)i);
		stop = cb(vals, arg);
	}
	if (!stop && rc != SQLITE_DONE)
		store_dberr(s, table);
	store_done(s, st);
	return stop != 0 || rc != SQLITE_DONE ? -1 : 0;
}

static int
sqlite_count(struct store_be *s, const char *table, int64_t *n)
{
	char *sql = xasprintf("SELECT COUNT(*) FROM %s", table);
	int rc = store_int_query(s, sql, n);

	free(sql);
	return rc;
}

/*
 * The state directory's lock is this database's single-writer lock: the
 * file lives in it.
 */
static int
sqlite_lock(struct store_be *s, int *taken)
{
	(void)s;
	*taken = 1;
	return 0;
}

static int
sqlite_info_json(struct store_be *s, json_t **out)
{
	*out = json_pack("{s:s,s:s,s:i}", "backend", "sqlite", "path", s->path,
	    "schema_version", s->version);
	return 0;
}

const struct store_ops store_sqlite_ops = {
    .name = "sqlite",
    .close = sqlite_close,
    .error = sqlite_error,
    .storage_error = sqlite_storage_error,
    .probe = sqlite_probe,
    .schema_version = sqlite_schema_version,
    .state_id = sqlite_state_id,
    .lock = sqlite_lock,
    .info_json = sqlite_info_json,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .flush = sqlite_flush,
    .flush_pending = sqlite_flush_pending,
    .rollback = sqlite_rollback,
    .task_add = sqlite_task_add,
    .task_get = sqlite_task_get,
    .task_set_state = sqlite_task_set_state,
    .task_set_text = sqlite_task_set_text,
    .task_stamp = sqlite_task_stamp,
    .task_set_int = sqlite_task_set_int,
    .task_set_repo = sqlite_task_set_repo,
    .task_set_status = sqlite_task_set_status,
    .task_list = sqlite_task_list,
    .task_list_desc = sqlite_task_list_desc,
    .task_runnable = sqlite_task_runnable,
    .task_counts = sqlite_task_counts,
    .checkpoint_add = sqlite_checkpoint_add,
    .checkpoint_list = sqlite_checkpoint_list,
    .journal_add = sqlite_journal_add,
    .journal_list = sqlite_journal_list,
    .turn_add = sqlite_turn_add,
    .turn_sums = sqlite_turn_sums,
    .event_add = sqlite_event_add,
    .event_add_data = sqlite_event_add_data,
    .event_add_state = sqlite_event_add_state,
    .event_list = sqlite_event_list,
    .usage_json = sqlite_usage_json,
    .stats_json = sqlite_stats_json,
    .backup = sqlite_backup,
    .integrity = sqlite_integrity,
    .set_event_hook = sqlite_set_event_hook,
    .set_commit_hook = sqlite_set_commit_hook,
    .event_max = sqlite_event_max,
    .task_count = sqlite_task_count,
    .gc_candidates = sqlite_gc_candidates,
    .gc_task = sqlite_gc_task,
    .vacuum = sqlite_vacuum,
    .rows = sqlite_rows,
    .count = sqlite_count,
};
