/*
 * store_pg.c: the store in PostgreSQL (libpq), chosen by ORCH_DATABASE_URL.
 *
 * The same tables and columns as the SQLite store, with timestamps kept as
 * text in the same format, so that a row reads the same on both.  The
 * schema is versioned in meta ('schema_version') with the SQLite store's
 * numbers: a version means the same tables and columns on both.
 *
 * One connection, its hot statements prepared once per connection (and
 * again after a reconnect).  A lost connection is a storage error, as a
 * full disk is to SQLite: the service pauses and store_probe reconnects.
 * Every write transaction also writes a random commit token into meta, so
 * that after a connection lost during COMMIT the token tells whether the
 * commit happened.
 */
#include <sys/wait.h>

#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "common.h"
#include "store_impl.h"

/* The time format of every timestamp we write: UTC with milliseconds, as
 * the SQLite store's strftime('%Y-%m-%d %H:%M:%f'). */
#define NOW                                                                    \
	"to_char(statement_timestamp() AT TIME ZONE 'UTC',"                    \
	" 'YYYY-MM-DD HH24:MI:SS.MS')"

/* The advisory locks' key: "orch", then which lock. */
#define LOCK_CLASS   0x6f726368
#define LOCK_WRITER  1
#define LOCK_MIGRATE 2
#define LOCK_CLAIM   3

/* NOW plus a number of seconds (parameter n), in the same format. */
#define NOW_PLUS(n)                                                            \
	"to_char((statement_timestamp() + make_interval(secs => " n "))"       \
	" AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')"

#define DEFAULT_CONNECT_TIMEOUT "5"

/* -------------------------------------------------------------------------
 * The schema
 * ------------------------------------------------------------------------ */

/*
 * Version 4 is the first PostgreSQL schema: the SQLite store's version 4,
 * made at once (there is no Python-era PostgreSQL database to upgrade).
 * A later version is one more entry; migrations only add.
 */
static const char pg_v4_script[] =
    "CREATE TABLE IF NOT EXISTS tasks (\n"
    "    id BIGSERIAL PRIMARY KEY,\n"
    "    request TEXT NOT NULL,\n"
    "    status TEXT NOT NULL DEFAULT 'pending',\n"
    "    workflow_state TEXT NOT NULL DEFAULT 'pending',\n"
    "    created_at TEXT DEFAULT " NOW ",\n"
    "    updated_at TEXT DEFAULT " NOW ",\n"
    "    plan TEXT,\n"
    "    implementation TEXT,\n"
    "    review TEXT,\n"
    "    verification_result TEXT,\n"
    "    workflow_log TEXT,\n"
    "    workflow_checkpoint_data TEXT,\n"
    "    plan_approved_at TEXT,\n"
    "    plan_approved_by TEXT,\n"
    "    plan_rejection_reason TEXT,\n"
    "    implementation_approved_at TEXT,\n"
    "    implementation_approved_by TEXT,\n"
    "    implementation_rejection_reason TEXT,\n"
    "    error_details TEXT,\n"
    "    retry_count BIGINT DEFAULT 0,\n"
    "    repo TEXT,\n"
    "    base_commit TEXT,\n"
    "    verify_command TEXT,\n"
    "    auto_approve BIGINT NOT NULL DEFAULT 0,\n"
    "    feedback TEXT,\n"
    "    stage_run BIGINT NOT NULL DEFAULT 0,\n"
    "    stage_retries BIGINT NOT NULL DEFAULT 0,\n"
    "    review_rounds BIGINT NOT NULL DEFAULT 0,\n"
    "    verify_rounds BIGINT NOT NULL DEFAULT 0,\n"
    "    failed_state BIGINT\n"
    ");\n"
    "CREATE TABLE IF NOT EXISTS checkpoints (\n"
    "    id BIGSERIAL PRIMARY KEY,\n"
    "    task_id BIGINT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,\n"
    "    checkpoint_name TEXT NOT NULL,\n"
    "    checkpoint_data TEXT,\n"
    "    created_at TEXT DEFAULT " NOW "\n"
    ");\n"
    "CREATE TABLE IF NOT EXISTS events (\n"
    "    id BIGSERIAL PRIMARY KEY,\n"
    "    task_id BIGINT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,\n"
    "    ts TEXT NOT NULL,\n"
    "    kind TEXT NOT NULL,\n"
    "    stage TEXT,\n"
    "    text TEXT NOT NULL,\n"
    "    state TEXT\n"
    ");\n"
    "CREATE TABLE IF NOT EXISTS journal (\n"
    "    id BIGSERIAL PRIMARY KEY,\n"
    "    task_id BIGINT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,\n"
    "    run BIGINT NOT NULL,\n"
    "    seq BIGINT NOT NULL,\n"
    "    stage TEXT NOT NULL,\n"
    "    kind TEXT NOT NULL,\n"
    "    data TEXT NOT NULL,\n"
    "    tokens_in BIGINT NOT NULL DEFAULT 0,\n"
    "    tokens_out BIGINT NOT NULL DEFAULT 0,\n"
    "    created_at TEXT NOT NULL,\n"
    "    UNIQUE(task_id, run, seq)\n"
    ");\n"
    "CREATE TABLE IF NOT EXISTS usage (\n"
    "    task_id BIGINT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,\n"
    "    stage TEXT NOT NULL,\n"
    "    calls BIGINT NOT NULL DEFAULT 0,\n"
    "    tokens_in BIGINT NOT NULL DEFAULT 0,\n"
    "    tokens_out BIGINT NOT NULL DEFAULT 0,\n"
    "    PRIMARY KEY(task_id, stage)\n"
    ");\n"
    "CREATE INDEX IF NOT EXISTS tasks_status ON tasks(status);\n"
    "CREATE INDEX IF NOT EXISTS tasks_workflow_state"
    " ON tasks(workflow_state);\n"
    "CREATE INDEX IF NOT EXISTS checkpoints_task_id"
    " ON checkpoints(task_id);\n"
    "CREATE INDEX IF NOT EXISTS events_task_id ON events(task_id, id);\n"
    "INSERT INTO meta (key, value) VALUES ('state_id',"
    " replace(gen_random_uuid()::text, '-', '')),"
    " ('commit_token', '') ON CONFLICT (key) DO NOTHING;\n";

/*
 * Version 5, as the SQLite store's: the facts of an event as JSON beside
 * its text (events.data), a task's own budgets and whether it waits for a
 * person at one, and one row per model turn (kept when gc trims a
 * finished task's events and journal: costs outlive the log).  A new
 * database runs 4 then 5 in the one transaction of pg_migrate.
 */
static const char pg_v5_script[] =
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS data TEXT;\n"
    "ALTER TABLE tasks ADD COLUMN IF NOT EXISTS max_tokens"
    " BIGINT NOT NULL DEFAULT 0;\n"
    "ALTER TABLE tasks ADD COLUMN IF NOT EXISTS max_cost_micros"
    " BIGINT NOT NULL DEFAULT 0;\n"
    "ALTER TABLE tasks ADD COLUMN IF NOT EXISTS budget_paused"
    " BIGINT NOT NULL DEFAULT 0;\n"
    "CREATE TABLE IF NOT EXISTS turns (\n"
    "    id BIGSERIAL PRIMARY KEY,\n"
    "    task_id BIGINT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,\n"
    "    ts TEXT NOT NULL,\n"
    "    stage TEXT NOT NULL,\n"
    "    model TEXT NOT NULL,\n"
    "    tokens_in BIGINT NOT NULL DEFAULT 0,\n"
    "    tokens_out BIGINT NOT NULL DEFAULT 0,\n"
    "    cached_in BIGINT NOT NULL DEFAULT 0,\n"
    "    duration_ms BIGINT NOT NULL DEFAULT 0\n"
    ");\n"
    "CREATE INDEX IF NOT EXISTS turns_task_id ON turns(task_id);\n";

/*
 * Version 6: nodes and task leases (store.h; docs/postgresql.md, "Many
 * nodes").  A lease is its owner (the node's incarnation: a random id per
 * start), the node's name for people, an epoch bumped by every claim, and
 * an expiry in the database's time, kept as text in the timestamps'
 * format so that comparing the text compares the times.
 */
static const char pg_v6_script[] =
    "ALTER TABLE tasks ADD COLUMN IF NOT EXISTS lease_node TEXT;\n"
    "ALTER TABLE tasks ADD COLUMN IF NOT EXISTS lease_owner TEXT;\n"
    "ALTER TABLE tasks ADD COLUMN IF NOT EXISTS lease_epoch"
    " BIGINT NOT NULL DEFAULT 0;\n"
    "ALTER TABLE tasks ADD COLUMN IF NOT EXISTS lease_expires_at TEXT;\n"
    "CREATE INDEX IF NOT EXISTS tasks_lease_owner ON tasks(lease_owner);\n"
    "CREATE TABLE IF NOT EXISTS nodes (\n"
    "    name TEXT PRIMARY KEY,\n"
    "    incarnation TEXT NOT NULL,\n"
    "    started_at TEXT NOT NULL,\n"
    "    heartbeat_at TEXT NOT NULL,\n"
    "    stopped_at TEXT,\n"
    "    capacity BIGINT NOT NULL DEFAULT 0,\n"
    "    running BIGINT NOT NULL DEFAULT 0,\n"
    "    lease_s BIGINT NOT NULL DEFAULT 30\n"
    ");\n";

struct pg_migration {
	int version;
	const char *script;
};

static const struct pg_migration pg_migrations[] = {
    {4, pg_v4_script},
    {5, pg_v5_script},
    {6, pg_v6_script},
};

#define PG_SCHEMA_VERSION 6

/* -------------------------------------------------------------------------
 * Prepared statements and the connection
 * ------------------------------------------------------------------------ */

enum pgstmt {
	PS_TASK_GET,
	PS_TASK_ADD,
	PS_TASK_SET_STATE,
	PS_CHECKPOINT_ADD,
	PS_CHECKPOINT_TASK,
	PS_EVENT_ADD,
	PS_JOURNAL_ADD,
	PS_USAGE_ADD,
	PS_RUNNABLE,
	PS_TOKEN,
	PS_TASK_SET_STATUS,
	PS_TASK_COUNTS,
	PS_TURN_ADD,
	PS_SET_TEXT,                     /* + enum task_col */
	PS_STAMP = PS_SET_TEXT + TC_MAX, /* + enum task_col */
	PS_SET_INT = PS_STAMP + TC_MAX,  /* + enum task_icol */
	PS_MAX = PS_SET_INT + TI_MAX
};

static const char *const pgstmt_sql[PS_SET_TEXT] = {
    [PS_TASK_GET] = NULL, /* built at open from the column tables */
    [PS_TASK_ADD] = "INSERT INTO tasks (request, status, workflow_state,"
                    " created_at, updated_at, repo, base_commit,"
                    " verify_command, auto_approve, stage_run)"
                    " VALUES ($1, 'pending', 'pending', " NOW ", " NOW
                    ", $2, $3, $4, $5, 0) RETURNING id",
    [PS_TASK_SET_STATE] = "UPDATE tasks SET workflow_state = $2,"
                          " status = $3, updated_at = " NOW " WHERE id = $1",
    [PS_CHECKPOINT_ADD] = "INSERT INTO checkpoints (task_id,"
                          " checkpoint_name, checkpoint_data, created_at)"
                          " VALUES ($1, $2, $3, " NOW ")",
    [PS_CHECKPOINT_TASK] = "UPDATE tasks SET workflow_checkpoint_data = $2,"
                           " updated_at = " NOW " WHERE id = $1",
    [PS_EVENT_ADD] = "INSERT INTO events (task_id, ts, kind, stage, text,"
                     " state, data) VALUES ($1, " NOW ", $2, $3, $4, $5,"
                     " $6)",
    [PS_JOURNAL_ADD] = "INSERT INTO journal (task_id, run, seq, stage,"
                       " kind, data, tokens_in, tokens_out, created_at)"
                       " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, " NOW ")",
    [PS_USAGE_ADD] = "INSERT INTO usage (task_id, stage, calls, tokens_in,"
                     " tokens_out) VALUES ($1, $2, $3, $4, $5)"
                     " ON CONFLICT (task_id, stage) DO UPDATE SET"
                     " calls = usage.calls + excluded.calls,"
                     " tokens_in = usage.tokens_in + excluded.tokens_in,"
                     " tokens_out = usage.tokens_out + excluded.tokens_out",
    [PS_RUNNABLE] = "SELECT id FROM tasks WHERE workflow_state IN"
                    " ('pending', 'planning', 'plan_approved',"
                    " 'implementing', 'reviewing', 'verifying')"
                    " AND budget_paused = 0"
                    " AND id > $2 ORDER BY id LIMIT $1",
    [PS_TOKEN] = "SELECT value FROM meta WHERE key = 'commit_token'",
    [PS_TASK_SET_STATUS] = "UPDATE tasks SET status = $2,"
                           " updated_at = " NOW " WHERE id = $1",
    [PS_TASK_COUNTS] = "SELECT workflow_state, COUNT(*) FROM tasks"
                       " GROUP BY workflow_state",
    [PS_TURN_ADD] = "INSERT INTO turns (task_id, ts, stage, model,"
                    " tokens_in, tokens_out, cached_in, duration_ms)"
                    " VALUES ($1, " NOW ", $2, $3, $4, $5, $6, $7)",
};

/* A lease this connection holds: lost once another node claimed it. */
struct pg_lease {
	int64_t task;
	int64_t epoch;
	int lost;
};

struct store_be {
	PGconn *conn;
	char *url;   /* as given: a reconnect needs it */
	char *shown; /* url with its password masked, for messages */
	enum store_mode mode;
	int in_tx;
	int sp_open; /* the last write's savepoint, not yet released */
	int version;
	int locked;    /* holds the single writer's advisory lock */
	int notify;    /* the open transaction added an event */
	int listening; /* LISTEN orch_events on this connection */
	int lost;      /* the last error was the connection's */
	char *err;
	char *task_select;
	char prepared[PS_MAX];   /* on this connection */
	char token[33];          /* the open transaction's commit token */
	char unsure[33];         /* a commit whose outcome is not known yet */
	time_t down_since;       /* 0 while connected */
	struct timespec down_at; /* ... the same, for the outage's length */
	int64_t outages;         /* connections lost since open */
	void (*conn_hook)(int, const char *, double, void *);
	void *conn_arg;
	void (*hook)(void *);
	void *hook_arg;
	void (*commit_hook)(double, int, void *); /* after each COMMIT */
	void *commit_arg;
	int tx_lazy; /* the open transaction's commit need not wait */
	/* A node (store_node_join): its name, incarnation and leases. */
	char *node;
	char incarnation[33];
	unsigned lease_s;
	struct pg_lease *leases;
	size_t nleases;
	int64_t lost_task;   /* the last error was this task's lost lease */
	int64_t fenced;      /* the task fenced in the open transaction */
	int listening_tasks; /* LISTEN orch_tasks on this connection */
	/*
	 * A node's bound on one round trip or connect (ms; 0: none): a
	 * partition that drops packets must become an error well before
	 * the node's leases run out, not block the service's loop.
	 */
	unsigned timeout_ms;
	int timed_out; /* the last failure was that bound */
};

/* Text parameters for libpq, integers printed into the struct. */
#define PGARGS_MAX 10
struct pgargs {
	const char *v[PGARGS_MAX];
	char num[PGARGS_MAX][24];
	int n;
};

static void
arg_s(struct pgargs *a, const char *v)
{
	a->v[a->n++] = v;
}

static void
arg_i(struct pgargs *a, int64_t v)
{
	snprintf(a->num[a->n], sizeof a->num[a->n], "%" PRId64, v);
	a->v[a->n] = a->num[a->n];
	a->n++;
}

/* -------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */

static void pg_seterr(struct store_be *, const char *, ...)
    __attribute__((format(printf, 2, 3)));

static void
pg_seterr(struct store_be *s, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	free(s->err);
	s->err = msg;
	s->lost = 0;
	s->lost_task = 0;
}

/*
 * Is this failure the database's availability rather than the request's?
 * PG_GONE: the connection is (or is about to be) gone: broken, an error
 * libpq made itself (no SQLSTATE: end of file, a failed send), the
 * connection exception class (08), the server shutting down (57P).
 * PG_BUSY: out of resources (53: disk full, out of memory, too many
 * connections) on a connection that still works.  Either way retrying
 * later can succeed: a storage error.
 */
enum { PG_REFUSED, PG_BUSY, PG_GONE };

static int
pg_transient(struct store_be *s, const PGresult *res)
{
	const char *state;

	if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK)
		return PG_GONE;
	state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (state == NULL || strncmp(state, "08", 2) == 0 ||
	    strncmp(state, "57P", 3) == 0)
		return PG_GONE;
	return strncmp(state, "53", 2) == 0 ? PG_BUSY : PG_REFUSED;
}

/* Record the failure of res (may be NULL), prefixed with what. */
static void
pg_dberr(struct store_be *s, const PGresult *res, const char *what)
{
	const char *msg = NULL;
	char *copy;
	size_t n;

	if (s->timed_out) {
		s->timed_out = 0;
		pg_seterr(s,
		    "%s: no answer from %s within %u ms: the connection is"
		    " dropped",
		    what, s->shown, s->timeout_ms);
		s->lost = 1;
		return;
	}
	if (res != NULL)
		msg = PQresultErrorMessage(res);
	if ((msg == NULL || *msg == '\0') && s->conn != NULL)
		msg = PQerrorMessage(s->conn);
	if (msg == NULL || *msg == '\0')
		msg = "unknown error";
	/* libpq's messages end with a newline: ours do not. */
	copy = xstrdup(msg);
	n = strlen(copy);
	while (n > 0 && (copy[n - 1] == '\n' || copy[n - 1] == ' '))
		copy[--n] = '\0';
	pg_seterr(s, "%s: %s", what, copy);
	free(copy);
	switch (pg_transient(s, res)) {
	case PG_GONE:
		/* Dropped now, so that the next start reconnects (pg_ready)
		 * and a COMMIT settles its outcome (pg_tx_commit). */
		if (s->conn != NULL)
			PQfinish(s->conn);
		s->conn = NULL;
		s->lost = 1;
		break;
	case PG_BUSY:
		s->lost = 1;
		break;
	default:
		break;
	}
}

static const char *
pg_error(struct store_be *s)
{
	if (s == NULL)
		return "no database";
	return s->err != NULL ? s->err : "no error";
}

static int
pg_storage_error(struct store_be *s)
{
	return s->lost;
}

static int
pg_schema_version(struct store_be *s)
{
	return s->version;
}

/* -------------------------------------------------------------------------
 * Running statements
 * ------------------------------------------------------------------------ */

static int
pg_ok(const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

static const char *
pg_stmt_sql(struct store_be *s, int which, char **tofree)
{
	*tofree = NULL;
	if (which == PS_TASK_GET)
		return *tofree = xasprintf("%s WHERE id = $1", s->task_select);
	if (which >= PS_SET_INT)
		return *tofree =
		           xasprintf("UPDATE tasks SET %s = $2,"
		                     " updated_at = " NOW " WHERE id = $1",
		               task_icol_names[which - PS_SET_INT]);
	if (which >= PS_STAMP)
		return *tofree =
		           xasprintf("UPDATE tasks SET %s = " NOW ","
		                     " updated_at = " NOW " WHERE id = $1",
		               task_col_names[which - PS_STAMP]);
	if (which >= PS_SET_TEXT)
		return *tofree =
		           xasprintf("UPDATE tasks SET %s = $2,"
		                     " updated_at = " NOW " WHERE id = $1",
		               task_col_names[which - PS_SET_TEXT]);
	return pgstmt_sql[which];
}

/*
 * Wait until fd is ready for events, at most until deadline (ms, now_ms):
 * 1 ready, 0 timed out, -1 error.
 */
static int
pg_poll(int fd, short events, uint64_t deadline)
{
	struct pollfd pfd;
	uint64_t now;
	int rc;

	for (;;) {
		now = now_ms();
		if (now >= deadline)
			return 0;
		pfd.fd = fd;
		pfd.events = events;
		pfd.revents = 0;
		rc = poll(&pfd, 1, (int)(deadline - now));
		if (rc > 0)
			return 1;
		if (rc == -1 && errno != EINTR)
			return -1;
	}
}

/*
 * The result of the query just sent (sent: what PQsend* returned), as
 * PQexec would give it: the last one, or the first that failed.  With a
 * bound (s->timeout_ms) a reply that does not come in time drops the
 * connection (s->timed_out): NULL, and pg_dberr says why.
 */
static PGresult *
pg_wait(struct store_be *s, int sent)
{
	PGresult *res, *keep = NULL;
	uint64_t deadline;
	int fd, rc;

	if (!sent)
		return NULL;
	if (s->timeout_ms == 0) {
		while ((res = PQgetResult(s->conn)) != NULL) {
			if (keep != NULL && !pg_ok(keep)) {
				PQclear(res);
				continue;
			}
			PQclear(keep);
			keep = res;
		}
		return keep;
	}
	deadline = now_ms() + s->timeout_ms;
	fd = PQsocket(s->conn);
	while ((rc = PQflush(s->conn)) == 1)
		if (pg_poll(fd, POLLOUT | POLLIN, deadline) != 1 ||
		    PQconsumeInput(s->conn) == 0)
			goto late;
	if (rc == -1)
		return NULL;
	for (;;) {
		while (PQisBusy(s->conn)) {
			if ((rc = pg_poll(fd, POLLIN, deadline)) == 0)
				goto late;
			if (rc == -1 || PQconsumeInput(s->conn) == 0)
				break; /* PQgetResult tells the error */
		}
		if ((res = PQgetResult(s->conn)) == NULL)
			break;
		if (keep != NULL && !pg_ok(keep)) {
			PQclear(res);
			continue;
		}
		PQclear(keep);
		keep = res;
	}
	return keep;

late:
	PQclear(keep);
	PQfinish(s->conn);
	s->conn = NULL;
	s->timed_out = 1;
	return NULL;
}

static PGresult *
pg_exec_params(struct store_be *s, const char *sql, int n, const char *const *v)
{
	return pg_wait(
	    s, PQsendQueryParams(s->conn, sql, n, NULL, v, NULL, NULL, 0));
}

/*
 * Run a statement: prepared statement which (prepared on first use on
 * this connection), or sql with parameters when which is -1.  The result,
 * or NULL with the error recorded.
 */
static PGresult *
pg_run(struct store_be *s, int which, const char *sql, const struct pgargs *a,
    const char *what)
{
	PGresult *res;
	char name[16], *tofree;
	const struct pgargs none = {{NULL}, {{0}}, 0};

	if (a == NULL)
		a = &none;
	if (s->conn == NULL) {
		pg_seterr(s, "%s: not connected to %s", what, s->shown);
		s->lost = 1;
		return NULL;
	}
	if (which < 0)
		res = pg_exec_params(s, sql, a->n, a->v);
	else {
		snprintf(name, sizeof name, "orch_%d", which);
		if (!s->prepared[which]) {
			sql = pg_stmt_sql(s, which, &tofree);
			res = pg_wait(
			    s, PQsendPrepare(s->conn, name, sql, 0, NULL));
			free(tofree);
			if (!pg_ok(res)) {
				pg_dberr(s, res, "prepare");
				PQclear(res);
				return NULL;
			}
			PQclear(res);
			s->prepared[which] = 1;
		}
		res = pg_wait(s, PQsendQueryPrepared(
		                     s->conn, name, a->n, a->v, NULL, NULL, 0));
	}
	if (!pg_ok(res)) {
		pg_dberr(s, res, what);
		PQclear(res);
		return NULL;
	}
	return res;
}

/* Run and discard the result. */
static int
pg_do(struct store_be *s, int which, const char *sql, const struct pgargs *a,
    const char *what)
{
	PGresult *res = pg_run(s, which, sql, a, what);

	if (res == NULL)
		return -1;
	PQclear(res);
	return 0;
}

/* Like pg_do, for an UPDATE of the task with this id. */
static int
pg_do_task(struct store_be *s, int which, const struct pgargs *a, int64_t id,
    const char *what)
{
	PGresult *res = pg_run(s, which, NULL, a, what);
	int rc = 0;

	if (res == NULL)
		return -1;
	if (strcmp(PQcmdTuples(res), "1") != 0) {
		pg_seterr(s, "%s: no task %lld", what, (long long)id);
		rc = -1;
	}
	PQclear(res);
	return rc;
}

/* A whole script, several statements, no parameters. */
static int
pg_exec(struct store_be *s, const char *sql, const char *what)
{
	PGresult *res;

	if (s->conn == NULL) {
		pg_seterr(s, "%s: not connected to %s", what, s->shown);
		s->lost = 1;
		return -1;
	}
	res = pg_wait(s, PQsendQuery(s->conn, sql));
	if (!pg_ok(res)) {
		pg_dberr(s, res, what);
		PQclear(res);
		return -1;
	}
	PQclear(res);
	return 0;
}

static int64_t
get_i(const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return 0;
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static const char *
get_s(const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return NULL;
	return PQgetvalue(res, row, col);
}

static char *
get_dup(const PGresult *res, int row, int col)
{
	const char *v = get_s(res, row, col);

	return v == NULL ? NULL : xstrdup(v);
}

/* A single integer (0 when there is no row). */
static int
pg_int_query(
    struct store_be *s, const char *sql, const struct pgargs *a, int64_t *v)
{
	PGresult *res = pg_run(s, -1, sql, a, sql);

	if (res == NULL)
		return -1;
	*v = PQntuples(res) > 0 ? get_i(res, 0, 0) : 0;
	PQclear(res);
	return 0;
}

/* -------------------------------------------------------------------------
 * Connecting
 * ------------------------------------------------------------------------ */

static void
pg_notice_quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/*
 * Connect without blocking longer than s->timeout_ms (libpq's
 * connect_timeout counts whole seconds, at least 2): a connection that
 * is not up by then is returned failed.
 */
static PGconn *
pg_connect_bounded(
    struct store_be *s, const char *const *keys, const char *const *vals)
{
	PGconn *c = PQconnectStartParams(keys, vals, 1);
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	uint64_t deadline = now_ms() + s->timeout_ms;
	int rc;

	if (c == NULL || PQstatus(c) == CONNECTION_BAD)
		return c;
	for (;;) {
		if (st == PGRES_POLLING_OK || st == PGRES_POLLING_FAILED)
			return c;
		rc = pg_poll(PQsocket(c),
		    st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
		if (rc == 0) {
			PQfinish(c);
			/* An empty one: CONNECTION_BAD, with our reason. */
			s->timed_out = 1;
			return NULL;
		}
		st = PQconnectPoll(c);
	}
}

/*
 * Connect to s->url.  connect_timeout and the application name come
 * before the url's own keywords so that the url's win; every other
 * option (sslmode, ...) passes through as libpq reads it.
 */
static int
pg_connect(struct store_be *s)
{
	const char *keys[] = {"connect_timeout", "fallback_application_name",
	    "client_encoding", "keepalives", "keepalives_idle",
	    "keepalives_interval", "keepalives_count", "tcp_user_timeout",
	    "dbname", NULL};
	const char *vals[nitems(keys)];
	char idle[16], intvl[16], user[16];
	int fd, flags, nv = 0;

	/*
	 * A node's connection (s->timeout_ms) notices a dead link within
	 * its bound: TCP keepalives and a user timeout on the socket, the
	 * connect itself bounded (pg_connect_bounded).  The url's own
	 * keywords, after these, win.
	 */
	vals[nv++] = DEFAULT_CONNECT_TIMEOUT;
	vals[nv++] = "orch-supervisor";
	vals[nv++] = "UTF8";
	if (s->timeout_ms > 0) {
		unsigned sec = s->timeout_ms / 1000;

		snprintf(idle, sizeof idle, "%u", sec > 0 ? sec : 1);
		snprintf(intvl, sizeof intvl, "%u", sec / 3 > 0 ? sec / 3 : 1);
		snprintf(user, sizeof user, "%u", s->timeout_ms);
		vals[nv++] = "1";
		vals[nv++] = idle;
		vals[nv++] = intvl;
		vals[nv++] = "3";
		vals[nv++] = user;
		vals[nv++] = s->url;
		vals[nv] = NULL;
	} else {
		keys[3] = "dbname";
		keys[4] = NULL;
		vals[nv++] = s->url;
		vals[nv] = NULL;
	}

	if (s->conn != NULL)
		PQfinish(s->conn);
	memset(s->prepared, 0, sizeof s->prepared);
	s->listening = 0;
	s->listening_tasks = 0;
	s->conn = s->timeout_ms > 0 ? pg_connect_bounded(s, keys, vals)
	                            : PQconnectdbParams(keys, vals, 1);
	if (s->conn == NULL && s->timed_out) {
		s->timed_out = 0;
		pg_seterr(s, "cannot connect to %s: no answer within %u ms",
		    s->shown, s->timeout_ms);
		s->lost = 1;
		return -1;
	}
	if (s->conn == NULL) {
		pg_seterr(s, "connect to %s: out of memory", s->shown);
		s->lost = 1;
		return -1;
	}
	if (PQstatus(s->conn) != CONNECTION_OK) {
		char *msg = xstrdup(PQerrorMessage(s->conn));
		size_t n = strlen(msg);

		while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
			msg[--n] = '\0';
		pg_seterr(s, "cannot connect to %s: %s", s->shown, msg);
		free(msg);
		s->lost = 1;
		PQfinish(s->conn);
		s->conn = NULL;
		return -1;
	}
	/* The store does not log (store.h): no NOTICE on stderr either. */
	PQsetNoticeProcessor(s->conn, pg_notice_quiet, NULL);
	/*
	 * Workers are forked: the socket must not outlive the exec (proc.c
	 * also closes every descriptor above stderr in the child, and the
	 * child never calls into libpq).
	 */
	if ((fd = PQsocket(s->conn)) != -1 &&
	    (flags = fcntl(fd, F_GETFD)) != -1)
		fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
	if (s->mode == STORE_RDONLY &&
	    pg_exec(s, "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
	        "read only") == -1)
		return -1;
	return 0;
}

/* Take the single writer's lock on this connection: 1 taken, 0 held by
 * another, -1 error. */
static int
pg_try_lock(struct store_be *s)
{
	int64_t got;
	struct pgargs a = {0};

	arg_i(&a, LOCK_CLASS);
	arg_i(&a, LOCK_WRITER);
	if (pg_int_query(s,
	        "SELECT pg_try_advisory_lock($1::int, $2::int)::int", &a,
	        &got) == -1)
		return -1;
	return got == 1;
}

static void pg_note_up(struct store_be *);

/*
 * After a lost connection: connect again, take the lock again if we held
 * it, and settle a commit whose outcome was lost with the connection.
 */
static int
pg_reconnect(struct store_be *s)
{
	PGresult *res;
	int rc;

	if (pg_connect(s) == -1)
		return -1;
	if (s->locked) {
		if ((rc = pg_try_lock(s)) == -1)
			return -1;
		if (rc == 0) {
			/* Still a storage error: we must not write, and the
			 * probe keeps trying until the other one lets go. */
			pg_seterr(s,
			    "reconnected to %s, but another orch-supervisor"
			    " took the database's lock meanwhile",
			    s->shown);
			s->lost = 1;
			PQfinish(s->conn);
			s->conn = NULL;
			return -1;
		}
	}
	if (s->node != NULL) {
		/* A node hears of changed tasks, and of other nodes' log
		 * lines, on every connection. */
		if (pg_exec(s, "LISTEN orch_tasks; LISTEN orch_events",
		        "listen") == -1)
			return -1;
		s->listening_tasks = s->listening = 1;
	}
	if (s->unsure[0] != '\0') {
		if ((res = pg_run(s, PS_TOKEN, NULL, NULL, "commit token")) ==
		    NULL)
			return -1;
		/* Nothing to redo either way: the service reads every
		 * task back from the database when it resumes, and a step
		 * it sends again is looked up first (sched.c). */
		s->unsure[0] = '\0';
		PQclear(res);
	}
	pg_note_up(s);
	return 0;
}

/*
 * The connection works again after an outage: recorded in meta, so that
 * `stats` and `doctor` (other processes) see the service's outages, and
 * told to the conn hook.  The record is best effort: an outage is not worth
 * failing a write for.
 */
static void
pg_note_up(struct store_be *s)
{
	double secs;

	if (s->down_since == 0)
		return;
	secs = store_seconds_since(&s->down_at);
	s->down_since = 0;
	if (s->mode == STORE_RW && s->version > 0) {
		PGresult *res = pg_wait(s,
		    PQsendQuery(s->conn,
		        "INSERT INTO meta (key, value) VALUES ('outages', '1'),"
		        " ('last_outage', " NOW ") ON CONFLICT (key) DO UPDATE"
		        " SET value = CASE WHEN meta.key = 'outages'"
		        " THEN (meta.value::bigint + 1)::text"
		        " ELSE excluded.value END"));

		PQclear(res);
	}
	if (s->conn_hook != NULL)
		s->conn_hook(1, NULL, secs, s->conn_arg);
}

/* The connection broke: count the outage once, and tell it once. */
static void
pg_note_down(struct store_be *s)
{
	if (s->down_since == 0) {
		s->down_since = time(NULL);
		clock_gettime(CLOCK_MONOTONIC, &s->down_at);
		s->outages++;
		if (s->conn_hook != NULL)
			s->conn_hook(0,
			    s->err != NULL ? s->err : "the connection was lost",
			    0, s->conn_arg);
	}
}

/*
 * Before a statement that starts something (a transaction, a read outside
 * one): a connection known to be broken is made again first, once.
 */
static int
pg_ready(struct store_be *s)
{
	if (s->in_tx)
		return 0;
	if (s->conn != NULL && PQstatus(s->conn) == CONNECTION_OK)
		return 0;
	pg_note_down(s);
	return pg_reconnect(s);
}

/* -------------------------------------------------------------------------
 * Transactions
 *
 * Every write runs in a transaction of its own, or in a savepoint of the
 * caller's (pg_begin).  A transaction starts with its commit token.
 * ------------------------------------------------------------------------ */

static int
pg_new_token(struct store_be *s)
{
	if (random_hex(s->token, 16) == -1) {
		pg_seterr(s, "getrandom: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * BEGIN and the token in one round trip.  lazy: a lone log line, whose
 * commit does not wait for the WAL flush (as the SQLite store's
 * synchronous=NORMAL for events); the next durable commit flushes it.
 * A BEGIN on a connection that broke since the last statement is sent
 * again once on a new connection: nothing of it had been applied.
 */
static int
pg_tx_start(struct store_be *s, int lazy)
{
	char sql[160];
	int tries = 0;

	if (s->mode != STORE_RW) {
		pg_seterr(s, "database %s is open read-only", s->shown);
		return -1;
	}
	if (pg_new_token(s) == -1)
		return -1;
	s->tx_lazy = lazy;
	snprintf(sql, sizeof sql,
	    "BEGIN;%s UPDATE meta SET value = '%s'"
	    " WHERE key = 'commit_token'",
	    lazy ? " SET LOCAL synchronous_commit = off;" : "", s->token);
	for (;;) {
		if (pg_ready(s) == -1)
			return -1;
		if (pg_exec(s, sql, "begin") == 0)
			return 0;
		if (!s->lost || tries++ > 0)
			break;
		pg_note_down(s);
	}
	if (s->conn != NULL && PQtransactionStatus(s->conn) != PQTRANS_IDLE)
		pg_exec(s, "ROLLBACK", "rollback");
	return -1;
}

/*
 * COMMIT.  When the connection breaks during it, the outcome is found
 * out, not guessed: on a new connection, the token is there if and only
 * if the transaction committed.  When no new connection can be had, the
 * outcome stays unknown (a storage error: the service pauses and reads
 * everything back once the database answers again).
 */
static int
pg_tx_settle(struct store_be *s)
{
	PGresult *res;
	int done, notify = s->notify;

	/* Listeners (logs -f, other services) wake when it commits; the
	 * NOTIFY rides in the COMMIT's round trip. */
	s->notify = 0;
	if (pg_exec(s, notify ? "NOTIFY orch_events; COMMIT" : "COMMIT",
	        "commit") == 0)
		return 0;
	if (!s->lost ||
	    (s->conn != NULL && PQstatus(s->conn) == CONNECTION_OK)) {
		if (s->conn != NULL &&
		    PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
			char *keep = xstrdup(s->err);

			pg_exec(s, "ROLLBACK", "rollback");
			pg_seterr(s, "%s", keep);
			free(keep);
		}
		return -1;
	}
	pg_note_down(s);
	memcpy(s->unsure, s->token, sizeof s->unsure);
	if (pg_reconnect(s) == -1)
		return -1;
	if ((res = pg_run(s, PS_TOKEN, NULL, NULL, "commit token")) == NULL)
		return -1;
	done = PQntuples(res) == 1 &&
	       strcmp(get_s(res, 0, 0) != NULL ? get_s(res, 0, 0) : "",
	           s->token) == 0;
	PQclear(res);
	if (done)
		return 0;
	pg_seterr(s,
	    "commit: the connection to %s was lost and the transaction did"
	    " not commit",
	    s->shown);
	s->lost = 1;
	return -1;
}

/* pg_tx_settle, timed for the commit hook when it committed. */
static int
pg_tx_commit(struct store_be *s)
{
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (pg_tx_settle(s) == -1)
		return -1;
	if (s->commit_hook != NULL)
		s->commit_hook(
		    store_seconds_since(&t0), !s->tx_lazy, s->commit_arg);
	return 0;
}

static void
pg_tx_abort(struct store_be *s)
{
	char *keep;

	s->notify = 0;
	if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK ||
	    PQtransactionStatus(s->conn) == PQTRANS_IDLE)
		return;
	keep = s->err != NULL ? xstrdup(s->err) : NULL;
	int lost = s->lost;

	pg_exec(s, "ROLLBACK", "rollback");
	free(s->err);
	s->err = keep;
	s->lost = lost;
}

/*
 * A write inside the caller's transaction has a savepoint of its own, so
 * that when it fails only it is undone.  The savepoint of the write
 * before is released in the same round trip, not by one of its own: a
 * round trip is the largest cost of a statement here (a task makes about
 * 60 such writes); COMMIT releases the last one.
 */
static int
pg_wbegin_as(struct store_be *s, int lazy)
{
	int was;

	if (s->mode != STORE_RW) {
		pg_seterr(s, "database %s is open read-only", s->shown);
		return -1;
	}
	if (s->in_tx) {
		was = s->sp_open;
		s->sp_open = 0;
		return pg_exec(s,
		    was ? "RELEASE store_write; SAVEPOINT store_write"
		        : "SAVEPOINT store_write",
		    "savepoint");
	}
	return pg_tx_start(s, lazy);
}

static int
pg_wbegin(struct store_be *s)
{
	return pg_wbegin_as(s, 0);
}

static int
pg_wend(struct store_be *s, int rc)
{
	char *keep;
	int lost;

	if (s->in_tx) {
		if (rc != 0) {
			keep = s->err != NULL ? xstrdup(s->err) : NULL;
			lost = s->lost;
			/* ROLLBACK TO keeps the savepoint: released with the
			 * next one's. */
			if (pg_exec(s, "ROLLBACK TO store_write", "rollback") ==
			    0)
				s->sp_open = 1;
			free(s->err);
			s->err = keep;
			s->lost = lost;
			return rc;
		}
		s->sp_open = 1;
		return 0;
	}
	if (rc != 0) {
		pg_tx_abort(s);
		return rc;
	}
	return pg_tx_commit(s);
}

/* lazy is not for a server that may fail alone (store_begin_lazy). */
static int
pg_begin(struct store_be *s, int lazy)
{
	(void)lazy;
	if (s->in_tx) {
		pg_seterr(s, "begin: a transaction is already open");
		return -1;
	}
	if (pg_tx_start(s, 0) == -1)
		return -1;
	s->in_tx = 1;
	s->sp_open = 0;
	s->fenced = 0;
	return 0;
}

static int
pg_commit(struct store_be *s)
{
	if (!s->in_tx) {
		pg_seterr(s, "commit: no transaction is open");
		return -1;
	}
	s->in_tx = 0;
	s->sp_open = 0;
	return pg_tx_commit(s);
}

static void
pg_rollback(struct store_be *s)
{
	if (!s->in_tx)
		return;
	s->in_tx = 0;
	s->sp_open = 0;
	pg_tx_abort(s);
}

/* -------------------------------------------------------------------------
 * Leases: the fence on every write for a task this node holds
 * ------------------------------------------------------------------------ */

static struct pg_lease *
pg_lease_find(struct store_be *s, int64_t task)
{
	for (size_t i = 0; i < s->nleases; i++)
		if (s->leases[i].task == task)
			return &s->leases[i];
	return NULL;
}

/* Hold task at epoch (a new claim replaces an old or lost one). */
static void
pg_lease_put(struct store_be *s, int64_t task, int64_t epoch)
{
	struct pg_lease *l = pg_lease_find(s, task);

	if (l == NULL) {
		if (s->nleases % 16 == 0)
			s->leases = xrealloc(
			    s->leases, (s->nleases + 16) * sizeof *s->leases);
		l = &s->leases[s->nleases++];
	}
	l->task = task;
	l->epoch = epoch;
	l->lost = 0;
}

static void
pg_lease_drop(struct store_be *s, int64_t task)
{
	struct pg_lease *l = pg_lease_find(s, task);

	if (l != NULL)
		*l = s->leases[--s->nleases];
}

static void
pg_lease_fail(struct store_be *s, struct pg_lease *l)
{
	l->lost = 1;
	pg_seterr(s,
	    "task %lld: this node's lease (epoch %lld) is lost: another node"
	    " took the task, or it was cancelled; nothing was written",
	    (long long)l->task, (long long)l->epoch);
	s->lost_task = l->task;
}

/*
 * The fence, first in a write transaction for task: a task this node
 * holds is written only while the row still names this incarnation and
 * epoch, and the same statement renews the lease and locks the row until
 * the commit (a claim elsewhere waits, or skips it).  A cancelled task
 * keeps no lease: its worker is stopping, and writes nothing more.  A task
 * held by no one here is a person's (approve, cancel, ...) or one that
 * runs nowhere: written as before.
 */
static int
pg_fence(struct store_be *s, int64_t task)
{
	struct pg_lease *l;
	struct pgargs a = {0};
	PGresult *res;
	int ok;

	if (s->node == NULL || (l = pg_lease_find(s, task)) == NULL)
		return 0;
	if (l->lost) {
		pg_lease_fail(s, l);
		return -1;
	}
	if (s->in_tx && s->fenced == task)
		return 0;
	arg_i(&a, task);
	arg_s(&a, s->incarnation);
	arg_i(&a, l->epoch);
	arg_i(&a, s->lease_s);
	res = pg_run(s, -1,
	    "UPDATE tasks SET lease_expires_at = " NOW_PLUS(
	        "$4::int") " WHERE id = $1 AND lease_owner = $2 AND "
	                   "lease_epoch = $3"
	                   " AND workflow_state <> 'cancelled'",
	    &a, "lease");
	if (res == NULL)
		return -1;
	ok = strcmp(PQcmdTuples(res), "1") == 0;
	PQclear(res);
	if (!ok) {
		pg_lease_fail(s, l);
		return -1;
	}
	if (s->in_tx)
		s->fenced = task;
	return 0;
}

/*
 * Tell the nodes that a task changed when this connection does not hold
 * it (submit, approve, resume, cancel, a budget raised): the node that
 * runs it, or any that may start it, looks at it now.  Delivered at the
 * commit, and only then.
 */
static int
pg_tasks_notify(struct store_be *s, int64_t task)
{
	struct pgargs a = {0};

	if (s->node != NULL && pg_lease_find(s, task) != NULL)
		return 0;
	arg_i(&a, task);
	return pg_do(
	    s, -1, "SELECT pg_notify('orch_tasks', $1::text)", &a, "notify");
}

/* pg_wbegin_as, then the fence for task; nothing begun on failure. */
static int
pg_wbegin_task(struct store_be *s, int64_t task, int lazy)
{
	if (pg_wbegin_as(s, lazy) == -1)
		return -1;
	if (pg_fence(s, task) == -1) {
		pg_wend(s, -1);
		return -1;
	}
	return 0;
}

static const char *
pg_node_incarnation(struct store_be *s)
{
	return s->node != NULL ? s->incarnation : "";
}

static int
pg_node_join(struct store_be *s, const char *name, unsigned capacity,
    unsigned lease_s, const char *previous, char **cause)
{
	struct pgargs a = {0}, n1 = {0}, n2 = {0};
	PGresult *res;
	int live = 0;

	*cause = NULL;
	if (s->node != NULL || s->in_tx) {
		*cause = xasprintf("node %s: already joined", name);
		return -1;
	}
	if (random_hex(s->incarnation, 16) == -1) {
		*cause = xasprintf("getrandom: %s", strerror(errno));
		return -1;
	}
	s->lease_s = lease_s;
	/*
	 * A quarter of a lease for a round trip: the heartbeat stops the
	 * workers two thirds of a lease after the last renewal, and a dead
	 * link costs a statement's bound and a reconnect's before the
	 * service's loop can look (sched.c).  From now on, and on every
	 * reconnect (keepalives and tcp_user_timeout, pg_connect).
	 */
	s->timeout_ms = lease_s * 1000 / 4;
	if (s->timeout_ms < 500)
		s->timeout_ms = 500;
	if (pg_tx_start(s, 0) == -1)
		goto dberr;
	arg_s(&a, name);
	arg_s(&a, s->incarnation);
	arg_i(&a, capacity);
	arg_i(&a, lease_s);
	arg_s(&n1, name);
	arg_s(&n1, previous != NULL ? previous : "");
	arg_s(&n2, name);
	arg_s(&n2, s->incarnation);
	/* The row exists (made if missing) and is ours to look at alone. */
	if (pg_do(s, -1,
	        "INSERT INTO nodes (name, incarnation, started_at,"
	        " heartbeat_at, stopped_at, capacity, lease_s) VALUES ($1,"
	        " $2, " NOW ", '', " NOW ", $3, $4) ON CONFLICT (name) DO"
	        " NOTHING",
	        &a, "join") == -1)
		goto abort;
	res = pg_run(s, -1,
	    "SELECT (stopped_at IS NULL AND heartbeat_at > to_char("
	    "(statement_timestamp() - make_interval(secs => lease_s))"
	    " AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')"
	    " AND incarnation <> $2)::int"
	    " FROM nodes WHERE name = $1 FOR UPDATE",
	    &n1, "join");
	if (res == NULL)
		goto abort;
	live = PQntuples(res) == 1 && get_i(res, 0, 0) == 1;
	PQclear(res);
	if (live) {
		pg_tx_abort(s);
		*cause =
		    xasprintf("another orch-supervisor service runs as node"
		              " '%s' on the database %s (its heartbeat is"
		              " within its lease); give this one another"
		              " ORCH_NODE_NAME, or stop that one first",
		        name, s->shown);
		return 1;
	}
	/*
	 * Our name's last incarnation is dead (no heartbeat for a lease, or
	 * the one the caller knows is gone): free its leases at once.
	 */
	if (pg_do(s, -1,
	        "UPDATE nodes SET incarnation = $2, started_at = " NOW ","
	        " heartbeat_at = " NOW ", stopped_at = NULL, capacity = $3,"
	        " running = 0, lease_s = $4 WHERE name = $1",
	        &a, "join") == -1 ||
	    pg_do(s, -1,
	        "UPDATE tasks SET lease_owner = NULL, lease_expires_at = " NOW
	        " WHERE lease_node = $1 AND lease_owner IS NOT NULL AND"
	        " lease_owner <> $2",
	        &n2, "join") == -1 ||
	    pg_exec(s, "NOTIFY orch_tasks", "join") == -1)
		goto abort;
	if (pg_tx_commit(s) == -1)
		goto dberr;
	s->node = xstrdup(name);
	if (pg_exec(s, "LISTEN orch_tasks; LISTEN orch_events", "listen") == -1)
		goto dberr;
	s->listening_tasks = s->listening = 1;
	return 0;

abort:
	pg_tx_abort(s);
dberr:
	*cause = xasprintf("cannot join as node '%s': %s", name, s->err);
	return -1;
}

/* A lease found lost by the heartbeat: told once, in *lost. */
static void
pg_lease_lose(
    struct store_be *s, struct pg_lease *l, int64_t **lost, size_t *nlost)
{
	(void)s;
	l->lost = 1;
	*lost = xrealloc(*lost, (*nlost + 1) * sizeof **lost);
	(*lost)[(*nlost)++] = l->task;
}

static int
pg_node_beat(
    struct store_be *s, unsigned running, int64_t **lost, size_t *nlost)
{
	struct pgargs a = {0}, b = {0};
	PGresult *res = NULL;
	int64_t *got = NULL;
	size_t ngot = 0;
	int ours;

	*lost = NULL;
	*nlost = 0;
	if (s->node == NULL || s->in_tx)
		return 0;
	if (pg_tx_start(s, 1) == -1)
		return -1;
	arg_s(&a, s->node);
	arg_s(&a, s->incarnation);
	arg_i(&a, running);
	if ((res = pg_run(s, -1,
	         "UPDATE nodes SET heartbeat_at = " NOW ", running = $3"
	         " WHERE name = $1 AND incarnation = $2",
	         &a, "heartbeat")) == NULL)
		goto fail;
	ours = strcmp(PQcmdTuples(res), "1") == 0;
	PQclear(res);
	arg_s(&b, s->incarnation);
	arg_i(&b, s->lease_s);
	if ((res = pg_run(s, -1,
	         "UPDATE tasks SET lease_expires_at = " NOW_PLUS(
	             "$2::int") " WHERE lease_owner = $1 AND workflow_state <> "
	                        "'cancelled'"
	                        " RETURNING id, lease_epoch",
	         &b, "renew leases")) == NULL)
		goto fail;
	if (!ours) {
		/* Another start took our name: we are not this node now. */
		PQclear(res);
		pg_tx_abort(s);
		for (size_t i = 0; i < s->nleases; i++)
			if (!s->leases[i].lost)
				pg_lease_lose(s, &s->leases[i], lost, nlost);
		return 1;
	}
	ngot = (size_t)PQntuples(res);
	got = xcalloc(ngot + 1, 2 * sizeof *got);
	for (size_t i = 0; i < ngot; i++) {
		got[2 * i] = get_i(res, (int)i, 0);
		got[2 * i + 1] = get_i(res, (int)i, 1);
	}
	PQclear(res);
	if (pg_tx_commit(s) == -1) {
		free(got);
		return -1;
	}
	for (size_t i = 0; i < s->nleases; i++) {
		struct pg_lease *l = &s->leases[i];
		int found = 0;

		for (size_t j = 0; j < ngot && !found; j++)
			found =
			    got[2 * j] == l->task && got[2 * j + 1] == l->epoch;
		if (!found && !l->lost)
			pg_lease_lose(s, l, lost, nlost);
	}
	free(got);
	return 0;

fail:
	pg_tx_abort(s);
	return -1;
}

static int
pg_node_leave(struct store_be *s)
{
	struct pgargs a = {0}, b = {0};

	if (s->node == NULL || s->in_tx)
		return 0;
	if (pg_tx_start(s, 0) == -1)
		return -1;
	arg_s(&a, s->node);
	arg_s(&a, s->incarnation);
	arg_s(&b, s->incarnation);
	if (pg_do(s, -1,
	        "UPDATE tasks SET lease_owner = NULL, lease_expires_at = " NOW
	        " WHERE lease_owner = $1",
	        &b, "release leases") == -1 ||
	    pg_do(s, -1,
	        "UPDATE nodes SET stopped_at = " NOW ", running = 0"
	        " WHERE name = $1 AND incarnation = $2",
	        &a, "leave") == -1 ||
	    pg_exec(s, "NOTIFY orch_tasks", "leave") == -1) {
		pg_tx_abort(s);
		return -1;
	}
	if (pg_tx_commit(s) == -1)
		return -1;
	s->nleases = 0;
	return 0;
}

/*
 * The runnable tasks, free or expired, oldest first, rows another node
 * is claiming skipped.  With a cap per repository the claims of every
 * node are taken one at a time under a transaction lock, each seeing the
 * last, so that two nodes cannot both take a repository's last place.
 */
#define PG_CLAIMABLE                                                           \
	"SELECT id FROM tasks t WHERE workflow_state IN ('pending',"           \
	" 'planning', 'plan_approved', 'implementing', 'reviewing',"           \
	" 'verifying') AND budget_paused = 0 AND (lease_owner IS NULL OR"      \
	" lease_expires_at <= " NOW ") AND ($5::bigint = 0 OR t.id ="          \
	" $5::bigint) AND ($4::int = 0 OR (SELECT COUNT(*) FROM tasks r"       \
	" WHERE r.repo = t.repo AND r.id <> t.id AND r.lease_owner IS NOT"     \
	" NULL AND r.lease_expires_at > " NOW ") < $4::int)"                   \
	" ORDER BY id LIMIT $6 FOR UPDATE SKIP LOCKED"

static int
pg_lease_claim(struct store_be *s, int64_t only_task, size_t max,
    unsigned per_repo, int64_t *ids, size_t *n)
{
	struct pgargs a = {0}, l = {0};
	PGresult *res;
	size_t rounds, take;

	*n = 0;
	if (s->node == NULL) {
		pg_seterr(s, "claim: not a node");
		return -1;
	}
	if (max == 0 || s->in_tx)
		return 0;
	if (pg_tx_start(s, 0) == -1)
		return -1;
	if (per_repo > 0) {
		arg_i(&l, LOCK_CLASS);
		arg_i(&l, LOCK_CLAIM);
		if (pg_do(s, -1,
		        "SELECT pg_advisory_xact_lock($1::int,"
		        " $2::int)",
		        &l, "claim lock") == -1)
			goto fail;
	}
	rounds = per_repo > 0 ? max : 1;
	take = per_repo > 0 ? 1 : max;
	arg_s(&a, s->incarnation);
	arg_s(&a, s->node);
	arg_i(&a, s->lease_s);
	arg_i(&a, per_repo);
	arg_i(&a, only_task);
	arg_i(&a, (int64_t)take);
	for (size_t r = 0; r < rounds; r++) {
		int got;

		if ((res = pg_run(s, -1,
		         "WITH c AS (" PG_CLAIMABLE ") UPDATE tasks SET"
		         " lease_owner = $1, lease_node = $2, lease_epoch ="
		         " lease_epoch + 1, lease_expires_at = " NOW_PLUS(
		             "$3::int") " FROM c WHERE tasks.id = c.id"
		                        " RETURNING tasks.id, "
		                        "tasks.lease_epoch",
		         &a, "claim")) == NULL)
			goto fail;
		got = PQntuples(res);
		for (int i = 0; i < got && *n < max; i++) {
			ids[*n] = get_i(res, i, 0);
			pg_lease_put(s, ids[*n], get_i(res, i, 1));
			(*n)++;
		}
		PQclear(res);
		if (got == 0)
			break;
	}
	if (pg_tx_commit(s) == -1)
		goto lost;
	return 0;

fail:
	pg_tx_abort(s);
lost:
	/* Nothing claimed: forget what this transaction put. */
	for (size_t i = 0; i < *n; i++)
		pg_lease_drop(s, ids[i]);
	*n = 0;
	return -1;
}

static int
pg_lease_held(struct store_be *s, int64_t task)
{
	struct pg_lease *l = pg_lease_find(s, task);

	return l != NULL && !l->lost;
}

static int64_t
pg_lease_epoch(struct store_be *s, int64_t task)
{
	struct pg_lease *l = pg_lease_find(s, task);

	return l != NULL && !l->lost ? l->epoch : 0;
}

static size_t
pg_lease_count(struct store_be *s)
{
	size_t n = 0;

	for (size_t i = 0; i < s->nleases; i++)
		n += !s->leases[i].lost;
	return n;
}

static size_t
pg_lease_list(struct store_be *s, int64_t *ids, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < s->nleases; i++) {
		if (s->leases[i].lost)
			continue;
		if (n < max)
			ids[n] = s->leases[i].task;
		n++;
	}
	return n;
}

static int
pg_lease_release(struct store_be *s, int64_t task)
{
	struct pg_lease *l = pg_lease_find(s, task);
	struct pgargs a = {0}, b = {0};
	int64_t epoch;

	if (l == NULL)
		return 0;
	epoch = l->epoch;
	if (s->in_tx)
		return 0;
	if (pg_tx_start(s, 0) == -1)
		return -1;
	arg_i(&a, task);
	arg_s(&a, s->incarnation);
	arg_i(&a, epoch);
	arg_i(&b, task);
	if (pg_do(s, -1,
	        "UPDATE tasks SET lease_owner = NULL, lease_expires_at = " NOW
	        " WHERE id = $1 AND lease_owner = $2 AND lease_epoch = $3",
	        &a, "release lease") == -1 ||
	    pg_do(s, -1, "SELECT pg_notify('orch_tasks', $1::text)", &b,
	        "notify") == -1) {
		pg_tx_abort(s);
		return -1;
	}
	if (pg_tx_commit(s) == -1)
		return -1;
	/*
	 * A lost lease stays, so that every write for the task keeps failing
	 * until this node claims it again; the row was let go all the same
	 * when it was still ours (a cancelled task: free at once).
	 */
	if (!l->lost)
		pg_lease_drop(s, task);
	return 0;
}

static int64_t
pg_lease_lost(struct store_be *s)
{
	return s->lost_task;
}

/*
 * What other connections said of tasks: read without waiting.  Another
 * node's events (log lines of the tasks it runs) call the event hook, as
 * this node's own commits do: the service's event streams, audit files
 * and webhooks then show the whole cluster's story, not this node's.
 */
static int
pg_tasks_changed(
    struct store_be *s, int64_t *ids, size_t max, size_t *n, int *more)
{
	PGnotify *note;
	char *end;
	long long id;
	int events = 0;

	*n = 0;
	*more = 0;
	if (s->conn == NULL || !s->listening_tasks || s->in_tx)
		return 0;
	if (PQconsumeInput(s->conn) == 0) {
		pg_dberr(s, NULL, "listen");
		return -1;
	}
	while ((note = PQnotifies(s->conn)) != NULL) {
		if (note->be_pid != PQbackendPID(s->conn) &&
		    strcmp(note->relname, "orch_events") == 0)
			events = 1;
		else if (note->be_pid != PQbackendPID(s->conn) &&
		         strcmp(note->relname, "orch_tasks") == 0) {
			errno = 0;
			id = strtoll(note->extra, &end, 10);
			if (errno != 0 || *end != '\0' || id <= 0 || *n == max)
				*more = 1;
			else
				ids[(*n)++] = (int64_t)id;
		}
		PQfreemem(note);
	}
	if (events && s->hook != NULL)
		s->hook(s->hook_arg);
	return 0;
}

static int
pg_nodes_json(struct store_be *s, json_t **out)
{
	PGresult *res;
	int rows;

	*out = NULL;
	if (pg_ready(s) == -1)
		return -1;
	res = pg_run(s, -1,
	    "SELECT name, heartbeat_at, started_at, stopped_at, capacity,"
	    " (SELECT COUNT(*) FROM tasks WHERE lease_owner ="
	    " nodes.incarnation AND lease_expires_at > " NOW "),"
	    " (stopped_at IS NULL AND heartbeat_at > to_char("
	    "(statement_timestamp() - make_interval(secs => lease_s))"
	    " AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'))::int,"
	    " GREATEST(0, EXTRACT(EPOCH FROM (statement_timestamp() AT TIME"
	    " ZONE 'UTC') - heartbeat_at::timestamp))::bigint, lease_s"
	    " FROM nodes ORDER BY name",
	    NULL, "nodes");
	if (res == NULL)
		return -1;
	*out = json_array();
	rows = PQntuples(res);
	for (int r = 0; r < rows; r++) {
		json_t *o = json_object();

		json_object_set_new(o, "name", json_string(get_s(res, r, 0)));
		json_object_set_new(
		    o, "heartbeat_at", json_string(get_s(res, r, 1)));
		json_object_set_new(
		    o, "heartbeat_age_s", json_integer(get_i(res, r, 7)));
		json_object_set_new(o, "live", json_boolean(get_i(res, r, 6)));
		json_object_set_new(
		    o, "capacity", json_integer(get_i(res, r, 4)));
		json_object_set_new(
		    o, "running", json_integer(get_i(res, r, 5)));
		json_object_set_new(
		    o, "lease_s", json_integer(get_i(res, r, 8)));
		json_object_set_new(
		    o, "started_at", json_string(get_s(res, r, 2)));
		json_object_set_new(o, "stopped_at",
		    get_s(res, r, 3) != NULL ? json_string(get_s(res, r, 3))
		                             : json_null());
		json_array_append_new(*out, o);
	}
	PQclear(res);
	return 0;
}

/*
 * The probe of a paused service: reconnect when the connection is gone,
 * then a small write.
 */
static int
pg_probe(struct store_be *s)
{
	if (s->in_tx) {
		pg_seterr(s, "probe: a transaction is open");
		return -1;
	}
	if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK) {
		pg_note_down(s);
		if (pg_reconnect(s) == -1)
			return -1;
	}
	if (pg_tx_start(s, 0) == -1)
		return -1;
	return pg_tx_commit(s);
}

/* -------------------------------------------------------------------------
 * Opening
 * ------------------------------------------------------------------------ */

static char *
pg_build_task_select(void)
{
	struct buf b;

	buf_init(&b);
	buf_adds(&b, "SELECT id, workflow_state, request, repo, base_commit,"
	             " verify_command, auto_approve, created_at, updated_at,"
	             " workflow_checkpoint_data");
	for (int i = 0; i < TC_MAX; i++)
		buf_addf(&b, ", %s", task_col_names[i]);
	for (int i = 0; i < TI_MAX; i++)
		buf_addf(&b, ", %s", task_icol_names[i]);
	buf_adds(&b, ", (SELECT COALESCE(SUM(tokens_in), 0) FROM usage"
	             " WHERE usage.task_id = tasks.id),"
	             " (SELECT COALESCE(SUM(tokens_out), 0) FROM usage"
	             " WHERE usage.task_id = tasks.id),"
	             " CASE WHEN lease_owner IS NOT NULL AND lease_expires_at"
	             " > " NOW " THEN lease_node END"
	             " FROM tasks");
	return b.buf;
}

/* The schema version, 0 when there is no schema yet. */
static int
pg_read_version(struct store_be *s, int64_t *v)
{
	int64_t has;

	if (pg_int_query(s, "SELECT (to_regclass('meta') IS NOT NULL)::int",
	        NULL, &has) == -1)
		return -1;
	if (!has) {
		*v = 0;
		return 0;
	}
	return pg_int_query(s,
	    "SELECT COALESCE((SELECT value::bigint FROM meta"
	    " WHERE key = 'schema_version'), 0)",
	    NULL, v);
}

/*
 * Make or migrate the schema in one transaction, under an advisory lock
 * so that two processes opening a new database at once do not race.
 */
static int
pg_migrate(struct store_be *s)
{
	struct pgargs a = {0};
	int64_t v;
	char *sql;
	int rc;

	arg_i(&a, LOCK_CLASS);
	arg_i(&a, LOCK_MIGRATE);
	/*
	 * The lock is the session's, taken before the transaction: a
	 * transaction that waited for it would look the tables up in the
	 * catalog as they were before the wait (it sees no meta table that
	 * another process has just made), migrate again, and deadlock with
	 * the nodes already at work on the tables.
	 */
	if (pg_do(s, -1, "SELECT pg_advisory_lock($1::int, $2::int)", &a,
	        "migration lock") == -1)
		return -1;
	if (pg_exec(s, "BEGIN", "begin") == -1)
		goto unlock;
	if (pg_read_version(s, &v) == -1)
		goto fail;
	if (v == 0 && pg_exec(s,
	                  "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY"
	                  " KEY, value TEXT NOT NULL)",
	                  "schema") == -1)
		goto fail;
	for (size_t i = 0; i < nitems(pg_migrations); i++) {
		if (pg_migrations[i].version <= v)
			continue;
		if (pg_exec(s, pg_migrations[i].script, "schema") == -1)
			goto fail;
		v = pg_migrations[i].version;
	}
	sql = xasprintf("INSERT INTO meta (key, value) VALUES"
	                " ('schema_version', '%lld') ON CONFLICT (key) DO"
	                " UPDATE SET value = excluded.value",
	    (long long)v);
	rc = pg_exec(s, sql, "set schema_version");
	free(sql);
	if (rc == -1 || pg_exec(s, "COMMIT", "commit") == -1)
		goto fail;
	s->version = (int)v;
	pg_do(s, -1, "SELECT pg_advisory_unlock($1::int, $2::int)", &a,
	    "migration unlock");
	return 0;

fail:
	pg_tx_abort(s);
unlock:
	/* Closing the connection lets go of it too. */
	if (s->conn != NULL && PQstatus(s->conn) == CONNECTION_OK) {
		char *keep = s->err != NULL ? xstrdup(s->err) : NULL;

		pg_do(s, -1, "SELECT pg_advisory_unlock($1::int, $2::int)", &a,
		    "migration unlock");
		free(s->err);
		s->err = keep;
	}
	return -1;
}

static void
pg_close(struct store_be *s)
{
	if (s == NULL)
		return;
	if (s->conn != NULL) {
		if (PQstatus(s->conn) == CONNECTION_OK &&
		    PQtransactionStatus(s->conn) != PQTRANS_IDLE)
			pg_exec(s, "ROLLBACK", "rollback");
		PQfinish(s->conn);
	}
	free(s->task_select);
	free(s->node);
	free(s->leases);
	free(s->url);
	free(s->shown);
	free(s->err);
	free(s);
}

int
store_pg_open(struct store_be **storep, const char *url, enum store_mode mode,
    const struct store_opts *opts, char **cause)
{
	struct store_be *s;
	int64_t v;

	(void)opts;
	*storep = NULL;
	*cause = NULL;
	s = xcalloc(1, sizeof *s);
	s->url = xstrdup(url);
	s->shown = store_url_mask(url);
	s->mode = mode;
	if (pg_connect(s) == -1) {
		*cause = xasprintf("DB: %s", s->err);
		goto fail;
	}
	if (pg_read_version(s, &v) == -1) {
		*cause = xasprintf("DB: %s: %s", s->shown, s->err);
		goto fail;
	}
	if (v > PG_SCHEMA_VERSION || v < 0) {
		*cause = xasprintf("DB: %s was made by a newer orch-supervisor"
		                   " (schema version %lld, this one knows %d);"
		                   " upgrade orch-supervisor",
		    s->shown, (long long)v, PG_SCHEMA_VERSION);
		goto fail;
	}
	s->version = (int)v;
	if (mode == STORE_RDONLY) {
		if (v == 0) {
			/* Nothing there yet: as a missing SQLite file. */
			pg_close(s);
			return 0;
		}
		if (v < PG_SCHEMA_VERSION) {
			*cause = xasprintf("DB: %s has schema version %lld,"
			                   " older than %d; open it read-write"
			                   " once to upgrade it",
			    s->shown, (long long)v, PG_SCHEMA_VERSION);
			goto fail;
		}
	} else if (v < PG_SCHEMA_VERSION && pg_migrate(s) == -1) {
		*cause = xasprintf("DB: %s: migration to schema version %d"
		                   " failed: %s",
		    s->shown, PG_SCHEMA_VERSION, s->err);
		goto fail;
	}
	s->task_select = pg_build_task_select();
	*storep = s;
	return 0;

fail:
	pg_close(s);
	return -1;
}

/* -------------------------------------------------------------------------
 * Small queries: the state id, the lock, what doctor shows
 * ------------------------------------------------------------------------ */

static int
pg_state_id(struct store_be *s, char **id)
{
	PGresult *res;

	*id = NULL;
	if (pg_ready(s) == -1)
		return -1;
	res = pg_run(s, -1, "SELECT value FROM meta WHERE key = 'state_id'",
	    NULL, "state id");
	if (res == NULL)
		return -1;
	if (PQntuples(res) == 1)
		*id = get_dup(res, 0, 0);
	else
		pg_seterr(s, "state id: none in %s", s->shown);
	PQclear(res);
	return *id != NULL ? 0 : -1;
}

static int
pg_lock(struct store_be *s, int *taken)
{
	int rc;

	*taken = 0;
	if (s->locked) {
		*taken = 1;
		return 0;
	}
	if (pg_ready(s) == -1 || (rc = pg_try_lock(s)) == -1)
		return -1;
	s->locked = *taken = rc;
	return 0;
}

static int
pg_info_json(struct store_be *s, json_t **out)
{
	PGresult *res;
	json_t *o;

	*out = NULL;
	o = json_pack("{s:s,s:s,s:i,s:I}", "backend", "postgresql", "url",
	    s->shown, "schema_version", s->version, "outages",
	    (json_int_t)s->outages);
	if (s->down_since != 0)
		json_object_set_new(
		    o, "down_since", json_integer((json_int_t)s->down_since));
	if (pg_ready(s) == -1) {
		json_object_set_new(o, "error", json_string(s->err));
		*out = o;
		return 0;
	}
	res = pg_run(s, -1,
	    "SELECT current_setting('server_version'),"
	    " current_setting('synchronous_commit')",
	    NULL, "server settings");
	if (res == NULL) {
		json_decref(o);
		return -1;
	}
	json_object_set_new(o, "server_version", json_string(get_s(res, 0, 0)));
	json_object_set_new(
	    o, "synchronous_commit", json_string(get_s(res, 0, 1)));
	PQclear(res);
	/* The service's outages as it recorded them (pg_note_up). */
	res = pg_run(s, -1,
	    "SELECT COALESCE((SELECT value::bigint FROM meta"
	    " WHERE key = 'outages'), 0),"
	    " (SELECT value FROM meta WHERE key = 'last_outage')",
	    NULL, "outages");
	if (res == NULL) {
		json_decref(o);
		return -1;
	}
	/* The ones this connection recorded are in meta already; a
	 * read-only one's own are not recorded (it writes nothing). */
	json_object_set_new(o, "outages",
	    json_integer((json_int_t)get_i(res, 0, 0) +
	                 (s->mode == STORE_RW ? 0 : s->outages)));
	if (get_s(res, 0, 1) != NULL)
		json_object_set_new(
		    o, "last_outage", json_string(get_s(res, 0, 1)));
	PQclear(res);
	*out = o;
	return 0;
}

/* -------------------------------------------------------------------------
 * Tasks
 * ------------------------------------------------------------------------ */

static int
pg_checkpoint_add_locked(
    struct store_be *s, int64_t task, const char *name, const char *data)
{
	struct pgargs a = {0}, b = {0};

	arg_i(&a, task);
	arg_s(&a, name);
	arg_s(&a, data);
	if (pg_do(s, PS_CHECKPOINT_ADD, NULL, &a, "insert checkpoint") == -1)
		return -1;
	arg_i(&b, task);
	arg_s(&b, data);
	return pg_do_task(
	    s, PS_CHECKPOINT_TASK, &b, task, "update checkpoint data");
}

/* state is the new workflow_state of a state change, else NULL. */
static int
pg_event_add_locked(struct store_be *s, int64_t task, enum event_kind kind,
    const char *stage, const char *text, const char *state, const char *data)
{
	struct pgargs a = {0};

	arg_i(&a, task);
	arg_s(&a, event_kind_names[kind]);
	arg_s(&a, stage);
	arg_s(&a, text);
	arg_s(&a, state);
	arg_s(&a, data);
	if (pg_do(s, PS_EVENT_ADD, NULL, &a, "insert event") == -1)
		return -1;
	s->notify = 1;
	/* As SQLite's update hook: seen before the commit; the pump reads
	 * back only what committed. */
	if (s->hook != NULL)
		s->hook(s->hook_arg);
	return 0;
}

static int
pg_task_add_locked(struct store_be *s, const struct task_new *tn, int64_t *id)
{
	struct pgargs a = {0};
	PGresult *res;
	json_t *obj;
	char *data;
	int rc;

	arg_s(&a, tn->request);
	arg_s(&a, tn->repo);
	arg_s(&a, tn->base_commit);
	arg_s(&a, tn->verify_command);
	arg_i(&a, tn->auto_approve);
	if ((res = pg_run(s, PS_TASK_ADD, NULL, &a, "insert task")) == NULL)
		return -1;
	*id = get_i(res, 0, 0);
	PQclear(res);

	obj = json_pack("{s:s}", "request", tn->request);
	if (obj == NULL || (data = json_dumps(obj,
	                        JSON_COMPACT | JSON_ENSURE_ASCII)) == NULL) {
		json_decref(obj);
		pg_seterr(s, "insert task: cannot encode the request");
		return -1;
	}
	json_decref(obj);
	rc = pg_checkpoint_add_locked(s, *id, "workflow_start", data);
	free(data);
	if (rc == -1)
		return -1;
	return pg_event_add_locked(s, *id, EV_STATE, NULL, "task submitted",
	    wstate_names[WS_PENDING], NULL);
}

static int
pg_task_add(struct store_be *s, const struct task_new *tn, int64_t *id)
{
	if (tn->request == NULL) {
		pg_seterr(s, "insert task: no request");
		return -1;
	}
	int rc;

	if (pg_wbegin(s) == -1)
		return -1;
	rc = pg_task_add_locked(s, tn, id);
	if (rc == 0)
		rc = pg_tasks_notify(s, *id);
	return pg_wend(s, rc);
}

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
	TQ_NODE,
};

static struct task *
pg_task_row(struct store_be *s, const PGresult *res, int r)
{
	struct task *t;
	enum wstate ws;
	const char *state = get_s(res, r, TQ_STATE);

	if (wstate_parse(state, &ws) == -1) {
		pg_seterr(s, "task %lld: unknown workflow_state '%s'",
		    (long long)get_i(res, r, TQ_ID),
		    state != NULL ? state : "NULL");
		return NULL;
	}
	t = xcalloc(1, sizeof *t);
	t->id = get_i(res, r, TQ_ID);
	t->state = ws;
	t->request = get_dup(res, r, TQ_REQUEST);
	t->repo = get_dup(res, r, TQ_REPO);
	t->base_commit = get_dup(res, r, TQ_BASE_COMMIT);
	t->verify_command = get_dup(res, r, TQ_VERIFY_COMMAND);
	t->auto_approve = (int)get_i(res, r, TQ_AUTO_APPROVE);
	t->created_at = get_dup(res, r, TQ_CREATED_AT);
	t->updated_at = get_dup(res, r, TQ_UPDATED_AT);
	t->workflow_checkpoint_data = get_dup(res, r, TQ_CHECKPOINT_DATA);
	for (int i = 0; i < TC_MAX; i++)
		t->text[i] = get_dup(res, r, TQ_TEXT + i);
	for (int i = 0; i < TI_MAX; i++) {
		if (PQgetisnull(res, r, TQ_IVAL + i))
			t->ival[i] = i == TI_FAILED_STATE ? -1 : 0;
		else
			t->ival[i] = get_i(res, r, TQ_IVAL + i);
	}
	t->tokens_in = get_i(res, r, TQ_TOKENS_IN);
	t->tokens_out = get_i(res, r, TQ_TOKENS_OUT);
	t->node = get_dup(res, r, TQ_NODE);
	return t;
}

static int
pg_task_get(struct store_be *s, int64_t id, struct task **taskp)
{
	struct pgargs a = {0};
	PGresult *res;

	*taskp = NULL;
	if (pg_ready(s) == -1)
		return -1;
	arg_i(&a, id);
	if ((res = pg_run(s, PS_TASK_GET, NULL, &a, "select task")) == NULL)
		return -1;
	if (PQntuples(res) == 1 && (*taskp = pg_task_row(s, res, 0)) == NULL) {
		PQclear(res);
		return -1;
	}
	PQclear(res);
	return 0;
}

static int
pg_task_set_state(struct store_be *s, int64_t id, enum wstate ws)
{
	struct pgargs a = {0};
	int rc;

	if ((unsigned)ws >= WS_MAX) {
		pg_seterr(s, "set state: bad state %d", (int)ws);
		return -1;
	}
	if (pg_wbegin_task(s, id, 0) == -1)
		return -1;
	arg_i(&a, id);
	arg_s(&a, wstate_names[ws]);
	arg_s(&a, tstatus_names[wstate_status(ws)]);
	rc = pg_do_task(s, PS_TASK_SET_STATE, &a, id, "set state");
	if (rc == 0)
		rc = pg_tasks_notify(s, id);
	return pg_wend(s, rc);
}

/* The status alone (a task waiting for a person at a budget). */
static int
pg_task_set_status(struct store_be *s, int64_t id, enum tstatus ts)
{
	struct pgargs a = {0};

	if ((unsigned)ts >= TS_MAX) {
		pg_seterr(s, "set status: bad status %d", (int)ts);
		return -1;
	}
	if (pg_wbegin_task(s, id, 0) == -1)
		return -1;
	arg_i(&a, id);
	arg_s(&a, tstatus_names[ts]);
	return pg_wend(
	    s, pg_do_task(s, PS_TASK_SET_STATUS, &a, id, "set status"));
}

static int
pg_task_set_text(
    struct store_be *s, int64_t id, enum task_col col, const char *value)
{
	struct pgargs a = {0};

	if ((unsigned)col >= TC_MAX) {
		pg_seterr(s, "set text: bad column %d", (int)col);
		return -1;
	}
	if (pg_wbegin_task(s, id, 0) == -1)
		return -1;
	arg_i(&a, id);
	arg_s(&a, value);
	return pg_wend(s,
	    pg_do_task(s, PS_SET_TEXT + (int)col, &a, id, task_col_names[col]));
}

static int
pg_task_set_repo(
    struct store_be *s, int64_t id, const char *repo, const char *base_commit)
{
	struct pgargs a = {0};
	PGresult *res;
	int rc = 0;

	if (pg_wbegin_task(s, id, 0) == -1)
		return -1;
	arg_i(&a, id);
	arg_s(&a, repo);
	arg_s(&a, base_commit);
	res = pg_run(s, -1,
	    "UPDATE tasks SET repo = $2, base_commit = $3,"
	    " updated_at = " NOW " WHERE id = $1",
	    &a, "set repo");
	if (res == NULL)
		rc = -1;
	else if (strcmp(PQcmdTuples(res), "1") != 0) {
		pg_seterr(s, "set repo: no task %lld", (long long)id);
		rc = -1;
	}
	PQclear(res);
	return pg_wend(s, rc);
}

static int
pg_task_stamp(struct store_be *s, int64_t id, enum task_col col)
{
	struct pgargs a = {0};

	if (col != TC_PLAN_APPROVED_AT &&
	    col != TC_IMPLEMENTATION_APPROVED_AT) {
		pg_seterr(s, "stamp: column %d is not a time", (int)col);
		return -1;
	}
	if (pg_wbegin_task(s, id, 0) == -1)
		return -1;
	arg_i(&a, id);
	return pg_wend(
	    s, pg_do_task(s, PS_STAMP + (int)col, &a, id, task_col_names[col]));
}

/* TI_FAILED_STATE -1 writes NULL. */
static int
pg_task_set_int(struct store_be *s, int64_t id, enum task_icol col, int64_t v)
{
	struct pgargs a = {0};
	int rc;

	if ((unsigned)col >= TI_MAX) {
		pg_seterr(s, "set int: bad column %d", (int)col);
		return -1;
	}
	if (pg_wbegin_task(s, id, 0) == -1)
		return -1;
	arg_i(&a, id);
	if (col == TI_FAILED_STATE && v < 0)
		arg_s(&a, NULL);
	else
		arg_i(&a, v);
	rc = pg_do_task(s, PS_SET_INT + (int)col, &a, id, task_icol_names[col]);
	/* A budget raised or a pause lifted: the task may run again. */
	if (rc == 0 && col == TI_BUDGET_PAUSED)
		rc = pg_tasks_notify(s, id);
	return pg_wend(s, rc);
}

/*
 * Lists read every row first (libpq buffers the result), then call back:
 * the callback may use the store.
 */
static int
pg_task_list(
    struct store_be *s, int status, int resumable, store_task_cb cb, void *arg)
{
	struct pgargs a = {0};
	PGresult *res;
	struct task *t;
	char *sql;
	int stop = 0, n;

	if (status >= TS_MAX) {
		pg_seterr(s, "list tasks: bad status %d", status);
		return -1;
	}
	if (pg_ready(s) == -1)
		return -1;
	sql = xasprintf("%s%s%s%s%s ORDER BY id", s->task_select,
	    status >= 0 || resumable ? " WHERE" : "",
	    status >= 0 ? " status = $1" : "",
	    status >= 0 && resumable ? " AND" : "",
	    resumable ? " status NOT IN ('completed', 'cancelled')" : "");
	if (status >= 0)
		arg_s(&a, tstatus_names[status]);
	res = pg_run(s, -1, sql, &a, "list tasks");
	free(sql);
	if (res == NULL)
		return -1;
	n = PQntuples(res);
	for (int r = 0; r < n && !stop; r++) {
		if ((t = pg_task_row(s, res, r)) == NULL) {
			PQclear(res);
			return -1;
		}
		stop = cb(t, arg);
		task_free(t);
	}
	PQclear(res);
	return 0;
}

/*
 * Newest first, a page of rows at a time: the console reads one screen of
 * a long list, and the callback may stop long before the end.  Later
 * pages start below the last id seen, so a task added meanwhile (a higher
 * id) never shows up in the middle.
 */
#define PG_LIST_PAGE 64
static int
pg_task_list_desc(
    struct store_be *s, int status, int64_t before, store_task_cb cb, void *arg)
{
	struct pgargs a;
	PGresult *res;
	struct task *t;
	char *sql;
	int stop = 0, n;

	if (status >= TS_MAX) {
		pg_seterr(s, "list tasks: bad status %d", status);
		return -1;
	}
	if (pg_ready(s) == -1)
		return -1;
	sql = xasprintf("%s WHERE id < $1%s ORDER BY id DESC LIMIT %d",
	    s->task_select, status >= 0 ? " AND status = $2" : "",
	    PG_LIST_PAGE);
	if (before <= 0)
		before = INT64_MAX;
	do {
		memset(&a, 0, sizeof a);
		arg_i(&a, before);
		if (status >= 0)
			arg_s(&a, tstatus_names[status]);
		if ((res = pg_run(s, -1, sql, &a, "list tasks")) == NULL) {
			free(sql);
			return -1;
		}
		n = PQntuples(res);
		for (int r = 0; r < n && !stop; r++) {
			if ((t = pg_task_row(s, res, r)) == NULL) {
				PQclear(res);
				free(sql);
				return -1;
			}
			before = t->id;
			stop = cb(t, arg);
			task_free(t);
		}
		PQclear(res);
	} while (!stop && n == PG_LIST_PAGE);
	free(sql);
	return 0;
}

static int
pg_task_runnable(
    struct store_be *s, int64_t after, int64_t *ids, size_t max, size_t *n)
{
	struct pgargs a = {0};
	PGresult *res;
	size_t rows;

	*n = 0;
	if (max == 0)
		return 0;
	if (pg_ready(s) == -1)
		return -1;
	arg_i(&a, max > INT64_MAX ? INT64_MAX : (int64_t)max);
	arg_i(&a, after);
	if ((res = pg_run(s, PS_RUNNABLE, NULL, &a, "runnable tasks")) == NULL)
		return -1;
	rows = (size_t)PQntuples(res);
	for (size_t r = 0; r < rows && *n < max; r++)
		ids[(*n)++] = get_i(res, (int)r, 0);
	PQclear(res);
	return 0;
}

/* How many tasks are in each workflow state. */
static int
pg_task_counts(struct store_be *s, int64_t counts[WS_MAX])
{
	PGresult *res;
	enum wstate ws;
	int n;

	memset(counts, 0, WS_MAX * sizeof *counts);
	if (pg_ready(s) == -1)
		return -1;
	if ((res = pg_run(s, PS_TASK_COUNTS, NULL, NULL, "task counts")) ==
	    NULL)
		return -1;
	n = PQntuples(res);
	for (int r = 0; r < n; r++)
		if (wstate_parse(get_s(res, r, 0), &ws) == 0)
			counts[ws] = get_i(res, r, 1);
	PQclear(res);
	return 0;
}

/* -------------------------------------------------------------------------
 * Checkpoints and the journal
 * ------------------------------------------------------------------------ */

static int
pg_checkpoint_add(
    struct store_be *s, int64_t task, const char *name, const char *data)
{
	if (name == NULL) {
		pg_seterr(s, "insert checkpoint: no name");
		return -1;
	}
	if (pg_wbegin_task(s, task, 0) == -1)
		return -1;
	return pg_wend(s, pg_checkpoint_add_locked(s, task, name, data));
}

static int
pg_checkpoint_list(
    struct store_be *s, int64_t task, store_checkpoint_cb cb, void *arg)
{
	struct pgargs a = {0};
	struct checkpoint cp;
	PGresult *res;
	int stop = 0, n;

	if (pg_ready(s) == -1)
		return -1;
	arg_i(&a, task);
	res = pg_run(s, -1,
	    "SELECT id, checkpoint_name, checkpoint_data, created_at"
	    " FROM checkpoints WHERE task_id = $1 ORDER BY id",
	    &a, "list checkpoints");
	if (res == NULL)
		return -1;
	n = PQntuples(res);
	for (int r = 0; r < n && !stop; r++) {
		cp.id = get_i(res, r, 0);
		cp.name = get_s(res, r, 1);
		cp.data = get_s(res, r, 2);
		cp.created_at = get_s(res, r, 3);
		if (cp.name == NULL)
			cp.name = "";
		if (cp.created_at == NULL)
			cp.created_at = "";
		stop = cb(&cp, arg);
	}
	PQclear(res);
	return 0;
}

static int
pg_journal_add_locked(struct store_be *s, int64_t task, int64_t run,
    int64_t seq, const char *stage, const char *kind, const char *data,
    int64_t tokens_in, int64_t tokens_out)
{
	struct pgargs a = {0}, u = {0};

	arg_i(&a, task);
	arg_i(&a, run);
	arg_i(&a, seq);
	arg_s(&a, stage);
	arg_s(&a, kind);
	arg_s(&a, data);
	arg_i(&a, tokens_in);
	arg_i(&a, tokens_out);
	if (pg_do(s, PS_JOURNAL_ADD, NULL, &a, "insert journal") == -1)
		return -1;
	arg_i(&u, task);
	arg_s(&u, stage);
	arg_i(&u, strcmp(kind, "reply") == 0);
	arg_i(&u, tokens_in);
	arg_i(&u, tokens_out);
	return pg_do(s, PS_USAGE_ADD, NULL, &u, "update usage");
}

static int
pg_journal_add(struct store_be *s, int64_t task, int64_t run, int64_t seq,
    const char *stage, const char *kind, const char *data, int64_t tokens_in,
    int64_t tokens_out)
{
	if (stage == NULL || kind == NULL || data == NULL) {
		pg_seterr(s, "insert journal: stage, kind and data are"
		             " required");
		return -1;
	}
	if (pg_wbegin_task(s, task, 0) == -1)
		return -1;
	return pg_wend(s, pg_journal_add_locked(s, task, run, seq, stage, kind,
	                      data, tokens_in, tokens_out));
}

static int
pg_journal_list(struct store_be *s, int64_t task, int64_t run,
    store_journal_cb cb, void *arg)
{
	struct pgargs a = {0};
	struct journal_entry je;
	PGresult *res;
	int stop = 0, n;

	if (pg_ready(s) == -1)
		return -1;
	arg_i(&a, task);
	arg_i(&a, run);
	res = pg_run(s, -1,
	    "SELECT seq, kind, data FROM journal"
	    " WHERE task_id = $1 AND run = $2 ORDER BY seq",
	    &a, "list journal");
	if (res == NULL)
		return -1;
	n = PQntuples(res);
	for (int r = 0; r < n && !stop; r++) {
		je.seq = get_i(res, r, 0);
		je.kind = get_s(res, r, 1);
		je.data = get_s(res, r, 2);
		stop = cb(&je, arg);
	}
	PQclear(res);
	return 0;
}

/* -------------------------------------------------------------------------
 * Model turns: tokens, time and model, for costs
 * ------------------------------------------------------------------------ */

static int
pg_turn_add(struct store_be *s, int64_t task, const char *stage,
    const char *model, int64_t in, int64_t out, int64_t cached, int64_t ms)
{
	struct pgargs a = {0};

	if (stage == NULL || model == NULL) {
		pg_seterr(s, "insert turn: stage and model are required");
		return -1;
	}
	if (pg_wbegin_task(s, task, 0) == -1)
		return -1;
	arg_i(&a, task);
	arg_s(&a, stage);
	arg_s(&a, model);
	arg_i(&a, in);
	arg_i(&a, out);
	arg_i(&a, cached);
	arg_i(&a, ms);
	return pg_wend(s, pg_do(s, PS_TURN_ADD, NULL, &a, "insert turn"));
}

/*
 * Ordered as the SQLite store orders them: bytes, not the database's
 * collation, and a task without a repository first.
 */
static int
pg_turn_sums(struct store_be *s, int64_t task, store_turn_cb cb, void *arg)
{
	struct pgargs a = {0};
	struct turn_sum ts;
	PGresult *res;
	int stop = 0, n;

	if (pg_ready(s) == -1)
		return -1;
	arg_i(&a, task);
	res = pg_run(s, -1,
	    "SELECT substr(u.ts, 1, 10), u.model, t.repo, sum(u.tokens_in),"
	    " sum(u.tokens_out), sum(u.cached_in), sum(u.duration_ms),"
	    " count(*) FROM turns u JOIN tasks t ON t.id = u.task_id"
	    " WHERE $1::bigint = 0 OR u.task_id = $1::bigint"
	    " GROUP BY 1, 2, 3 ORDER BY 1, u.model COLLATE \"C\","
	    " t.repo COLLATE \"C\" NULLS FIRST",
	    &a, "sum turns");
	if (res == NULL)
		return -1;
	n = PQntuples(res);
	for (int r = 0; r < n && !stop; r++) {
		ts.day = get_s(res, r, 0);
		ts.model = get_s(res, r, 1);
		ts.repo = get_s(res, r, 2);
		ts.tokens_in = get_i(res, r, 3);
		ts.tokens_out = get_i(res, r, 4);
		ts.cached_in = get_i(res, r, 5);
		ts.duration_ms = get_i(res, r, 6);
		ts.turns = get_i(res, r, 7);
		stop = cb(&ts, arg);
	}
	PQclear(res);
	return 0;
}

/* -------------------------------------------------------------------------
 * Events
 * ------------------------------------------------------------------------ */

static int
pg_event_add(struct store_be *s, int64_t task, enum event_kind kind,
    const char *stage, const char *text)
{
	if ((unsigned)kind >= EV_MAX || text == NULL) {
		pg_seterr(s, "insert event: bad kind or no text");
		return -1;
	}
	/* A lone log line does not wait for the WAL flush (pg_tx_start). */
	if (pg_wbegin_task(s, task, 1) == -1)
		return -1;
	return pg_wend(
	    s, pg_event_add_locked(s, task, kind, stage, text, NULL, NULL));
}

static int
pg_event_add_data(struct store_be *s, int64_t task, enum event_kind kind,
    const char *stage, const char *text, const json_t *data)
{
	char *d = NULL;
	int rc;

	if ((unsigned)kind >= EV_MAX || kind == EV_STATE || text == NULL) {
		pg_seterr(s, "insert event: bad kind or no text");
		return -1;
	}
	if (data != NULL &&
	    (d = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		pg_seterr(s, "insert event: its data cannot be written");
		return -1;
	}
	/* Lazy as pg_event_add; inside a transaction, as durable as it. */
	if (pg_wbegin_task(s, task, 1) == -1) {
		free(d);
		return -1;
	}
	rc = pg_wend(
	    s, pg_event_add_locked(s, task, kind, stage, text, NULL, d));
	free(d);
	return rc;
}

static int
pg_event_add_state(struct store_be *s, int64_t task, enum wstate state,
    const char *stage, const char *text)
{
	if ((unsigned)state >= WS_MAX || text == NULL) {
		pg_seterr(s, "insert event: bad state or no text");
		return -1;
	}
	char *data = NULL;
	int rc;

	if (pg_wbegin_task(s, task, 1) == -1)
		return -1;
	/* Which node moved it: that node alone sends the webhook. */
	if (s->node != NULL) {
		json_t *o = json_pack("{s:s}", "node", s->node);

		data = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
	}
	rc = pg_wend(s, pg_event_add_locked(s, task, EV_STATE, stage, text,
	                    wstate_names[state], data));
	free(data);
	return rc;
}

static int
pg_event_list(struct store_be *s, int64_t task, int64_t after, int limit,
    store_event_cb cb, void *arg)
{
	struct pgargs a = {0};
	struct event_row ev;
	PGresult *res;
	int stop = 0, n;

	if (pg_ready(s) == -1)
		return -1;
	arg_i(&a, task);
	arg_i(&a, after);
	if (limit > 0)
		arg_i(&a, limit);
	else
		arg_s(&a, NULL); /* LIMIT NULL: no limit */
	res = pg_run(s, -1,
	    task != 0 ? "SELECT id, task_id, ts, kind, stage, text, state,"
	                " data FROM events WHERE task_id = $1 AND id > $2"
	                " ORDER BY id LIMIT $3"
	              : "SELECT id, task_id, ts, kind, stage, text, state,"
	                " data FROM events WHERE $1::bigint = 0 AND id > $2"
	                " ORDER BY id LIMIT $3",
	    &a, "list events");
	if (res == NULL)
		return -1;
	n = PQntuples(res);
	for (int r = 0; r < n && !stop; r++) {
		ev.id = get_i(res, r, 0);
		ev.task = get_i(res, r, 1);
		ev.ts = get_s(res, r, 2);
		ev.kind = get_s(res, r, 3);
		ev.stage = get_s(res, r, 4);
		ev.text = get_s(res, r, 5);
		if (wstate_parse(get_s(res, r, 6), &ev.state) == -1)
			ev.state = WS_MAX;
		ev.data = get_s(res, r, 7);
		stop = cb(&ev, arg);
	}
	PQclear(res);
	return 0;
}

/* -------------------------------------------------------------------------
 * Usage and stats
 * ------------------------------------------------------------------------ */

static int
pg_usage_json(struct store_be *s, int64_t task, json_t **out)
{
	struct pgargs a = {0};
	PGresult *res;
	json_t *obj;
	int n;

	*out = NULL;
	if (pg_ready(s) == -1)
		return -1;
	arg_i(&a, task);
	res = pg_run(s, -1,
	    "SELECT stage, calls, tokens_in, tokens_out FROM usage"
	    " WHERE task_id = $1 ORDER BY stage",
	    &a, "usage");
	if (res == NULL)
		return -1;
	obj = json_object();
	n = PQntuples(res);
	for (int r = 0; r < n; r++)
		json_object_set_new(obj, get_s(res, r, 0),
		    json_pack("{s:I,s:I,s:I}", "calls",
		        (json_int_t)get_i(res, r, 1), "tokens_in",
		        (json_int_t)get_i(res, r, 2), "tokens_out",
		        (json_int_t)get_i(res, r, 3)));
	PQclear(res);
	*out = obj;
	return 0;
}

static int
pg_stats_json(struct store_be *s, json_t **out)
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
	    {"db_bytes", "SELECT pg_database_size(current_database())"},
	};
	PGresult *res;
	json_t *obj, *by;
	enum tstatus ts;
	int64_t v;
	int n;

	*out = NULL;
	if (pg_ready(s) == -1)
		return -1;
	obj = json_object();
	for (size_t i = 0; i < nitems(counts); i++) {
		if (pg_int_query(s, counts[i].sql, NULL, &v) == -1)
			goto fail;
		json_object_set_new(obj, counts[i].key, json_integer(v));
	}
	by = json_object();
	json_object_set_new(obj, "by_status", by);
	for (int i = 0; i < TS_MAX; i++)
		json_object_set_new(by, tstatus_names[i], json_integer(0));
	res =
	    pg_run(s, -1, "SELECT status, COUNT(*) FROM tasks GROUP BY status",
	        NULL, "stats");
	if (res == NULL)
		goto fail;
	n = PQntuples(res);
	for (int r = 0; r < n; r++)
		if (tstatus_parse(get_s(res, r, 0), &ts) == 0)
			json_object_set_new(by, tstatus_names[ts],
			    json_integer(get_i(res, r, 1)));
	PQclear(res);
	json_object_set_new(obj, "schema_version", json_integer(s->version));
	/* The service's outages (pg_note_up), not this connection's. */
	if (pg_int_query(s,
	        "SELECT COALESCE((SELECT value::bigint FROM meta"
	        " WHERE key = 'outages'), 0)",
	        NULL, &v) == -1)
		goto fail;
	json_object_set_new(obj, "outages",
	    json_integer(v + (s->mode == STORE_RW ? 0 : s->outages)));
	*out = obj;
	return 0;

fail:
	json_decref(obj);
	return -1;
}

/* -------------------------------------------------------------------------
 * Backup, integrity, vacuum
 * ------------------------------------------------------------------------ */

/*
 * pg_dump in the custom format (-Fc) into a temporary file beside dest,
 * renamed into place when it succeeded.  The connection's parameters reach
 * pg_dump through the libpq environment (PGHOST, PGPASSWORD, ...), never
 * its command line, where any user could read a password in ps.
 */
static int
pg_backup(struct store_be *s, const char *dest)
{
	PQconninfoOption *info, *o;
	char *tmp;
	pid_t pid;
	int status, fd;

	if (s->in_tx) {
		pg_seterr(s, "backup: a transaction is open");
		return -1;
	}
	if (pg_ready(s) == -1)
		return -1;
	if ((info = PQconninfo(s->conn)) == NULL) {
		pg_seterr(s, "backup: out of memory");
		return -1;
	}
	tmp = xasprintf("%s.tmp-%ld", dest, (long)getpid());
	unlink(tmp);
	switch ((pid = fork())) {
	case -1:
		pg_seterr(s, "backup: fork: %s", strerror(errno));
		PQconninfoFree(info);
		free(tmp);
		return -1;
	case 0:
		for (o = info; o->keyword != NULL; o++)
			if (o->envvar != NULL && o->val != NULL &&
			    *o->val != '\0')
				setenv(o->envvar, o->val, 1);
		if ((fd = open("/dev/null", O_RDONLY)) != -1)
			dup2(fd, STDIN_FILENO);
		execlp("pg_dump", "pg_dump", "-Fc", "--no-password", "-f", tmp,
		    (char *)NULL);
		fprintf(stderr, "orch-supervisor: pg_dump: %s%s\n",
		    strerror(errno),
		    errno == ENOENT ? " (install postgresql-client)" : "");
		_exit(127);
	}
	PQconninfoFree(info);
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR) {
			status = -1;
			break;
		}
	if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		pg_seterr(s,
		    "backup: pg_dump of %s failed (exit %d): see its message"
		    " above%s",
		    s->shown,
		    status != -1 && WIFEXITED(status) ? WEXITSTATUS(status)
		                                      : -1,
		    status != -1 && WIFEXITED(status) &&
		            WEXITSTATUS(status) == 127
		        ? "; is pg_dump (postgresql-client) installed?"
		        : "");
		unlink(tmp);
		free(tmp);
		return -1;
	}
	if (rename(tmp, dest) == -1) {
		pg_seterr(s, "backup: rename %s to %s: %s", tmp, dest,
		    strerror(errno));
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}

/*
 * PostgreSQL checks its own pages (data checksums, amcheck are the
 * operator's); this checks what is ours: every table answers and the
 * schema is the one this program knows.
 */
static int
pg_integrity(struct store_be *s, int *ok)
{
	static const char *const tables[] = {"tasks", "checkpoints", "events",
	    "journal", "usage", "turns", "meta"};
	int64_t v;
	char *sql;
	int rc;

	*ok = 0;
	if (pg_ready(s) == -1)
		return -1;
	for (size_t i = 0; i < nitems(tables); i++) {
		sql = xasprintf("SELECT COUNT(*) FROM (SELECT 1 FROM %s"
		                " LIMIT 1) t",
		    tables[i]);
		rc = pg_int_query(s, sql, NULL, &v);
		free(sql);
		if (rc == -1)
			return -1;
	}
	if (pg_read_version(s, &v) == -1)
		return -1;
	*ok = v == PG_SCHEMA_VERSION;
	if (!*ok)
		pg_seterr(s, "schema version %lld, expected %d", (long long)v,
		    PG_SCHEMA_VERSION);
	return 0;
}

/* Plain VACUUM: the space of deleted rows is reused, not returned to the
 * file system (VACUUM FULL would lock the tables while it rewrites). */
static int
pg_vacuum(struct store_be *s)
{
	if (s->mode != STORE_RW) {
		pg_seterr(s, "database %s is open read-only", s->shown);
		return -1;
	}
	if (pg_ready(s) == -1)
		return -1;
	return pg_exec(s, "VACUUM (ANALYZE) events, journal", "vacuum");
}

/* -------------------------------------------------------------------------
 * The event pump hook, counts, retention
 * ------------------------------------------------------------------------ */

static void
pg_set_event_hook(struct store_be *s, void (*cb)(void *), void *arg)
{
	s->hook = cb;
	s->hook_arg = arg;
}

static void
pg_set_conn_hook(struct store_be *s,
    void (*cb)(int, const char *, double, void *), void *arg)
{
	s->conn_hook = cb;
	s->conn_arg = arg;
}

/* Per connection, as the event hook. */
static void
pg_set_commit_hook(struct store_be *s,
    void (*cb)(double seconds, int durable, void *arg), void *arg)
{
	s->commit_hook = cb;
	s->commit_arg = arg;
}

static int
pg_wait_events(struct store_be *s, int timeout_ms)
{
	struct pollfd pfd;
	PGnotify *n;
	int got = 0;

	if (pg_ready(s) == -1)
		return -1;
	if (!s->listening) {
		if (pg_exec(s, "LISTEN orch_events", "listen") == -1)
			return -1;
		s->listening = 1;
	}
	pfd.fd = PQsocket(s->conn);
	pfd.events = POLLIN;
	if (poll(&pfd, 1, timeout_ms) == -1 && errno != EINTR) {
		pg_seterr(s, "poll: %s", strerror(errno));
		return -1;
	}
	if (PQconsumeInput(s->conn) == 0) {
		pg_dberr(s, NULL, "listen");
		return -1;
	}
	while ((n = PQnotifies(s->conn)) != NULL) {
		got = 1;
		PQfreemem(n);
	}
	return got;
}

static int
pg_event_max(struct store_be *s, int64_t *id)
{
	if (pg_ready(s) == -1)
		return -1;
	return pg_int_query(
	    s, "SELECT COALESCE(MAX(id), 0) FROM events", NULL, id);
}

static int
pg_task_count(struct store_be *s, enum tstatus status, int64_t *n)
{
	struct pgargs a = {0};

	if (pg_ready(s) == -1)
		return -1;
	arg_s(&a, tstatus_name(status));
	return pg_int_query(
	    s, "SELECT COUNT(*) FROM tasks WHERE status = $1", &a, n);
}

static int
pg_gc_candidates(struct store_be *s, unsigned days, store_task_cb cb, void *arg)
{
	struct pgargs a = {0};
	PGresult *res;
	struct task *t;
	int64_t *ids;
	int n, stop = 0;

	if (pg_ready(s) == -1)
		return -1;
	arg_i(&a, days);
	res = pg_run(s, -1,
	    "SELECT id FROM tasks WHERE status IN ('completed', 'failed',"
	    " 'cancelled') AND updated_at <= to_char((statement_timestamp()"
	    " - make_interval(days => $1::int)) AT TIME ZONE 'UTC',"
	    " 'YYYY-MM-DD HH24:MI:SS.MS') ORDER BY id",
	    &a, "gc candidates");
	if (res == NULL)
		return -1;
	n = PQntuples(res);
	ids = xcalloc((size_t)n + 1, sizeof *ids);
	for (int r = 0; r < n; r++)
		ids[r] = get_i(res, r, 0);
	PQclear(res);
	for (int i = 0; i < n && !stop; i++) {
		if (pg_task_get(s, ids[i], &t) == -1) {
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
pg_gc_task(struct store_be *s, int64_t task, int64_t *events, int64_t *journal)
{
	static const char *const sql[2] = {
	    "DELETE FROM events WHERE task_id = $1",
	    "DELETE FROM journal WHERE task_id = $1"};
	struct pgargs a = {0};
	PGresult *res;
	int rc = 0;

	*events = *journal = 0;
	if (pg_wbegin(s) == -1)
		return -1;
	arg_i(&a, task);
	for (int i = 0; i < 2 && rc == 0; i++) {
		if ((res = pg_run(s, -1, sql[i], &a, "gc delete")) == NULL) {
			rc = -1;
			break;
		}
		*(i == 0 ? events : journal) =
		    strtoll(PQcmdTuples(res), NULL, 10);
		PQclear(res);
	}
	return pg_wend(s, rc);
}

/*
 * store_copy's destination: one transaction for every row, into a
 * database with no task yet.
 */
static int
pg_load_begin(struct store_be *s)
{
	int64_t n;

	if (s->mode != STORE_RW || s->in_tx) {
		pg_seterr(s, "load: %s is read-only or busy", s->shown);
		return -1;
	}
	if (pg_ready(s) == -1 ||
	    pg_int_query(s, "SELECT COUNT(*) FROM tasks", NULL, &n) == -1)
		return -1;
	if (n != 0) {
		pg_seterr(s,
		    "%s already holds %lld tasks: copy into an empty"
		    " database",
		    s->shown, (long long)n);
		return -1;
	}
	if (pg_begin(s, 0) == -1)
		return -1;
	/* Quicker, and as safe: the COMMIT at the end is what counts. */
	return pg_exec(s, "SET LOCAL synchronous_commit = off", "load");
}

static int
pg_load_row(struct store_be *s, const char *table, const char *const *cols,
    size_t ncols, const char *const *vals)
{
	struct buf b;
	PGresult *res;

	buf_init(&b);
	buf_addf(&b, "INSERT INTO %s (", table);
	for (size_t i = 0; i < ncols; i++)
		buf_addf(&b, "%s%s", i ? ", " : "", cols[i]);
	buf_adds(&b, ") VALUES (");
	for (size_t i = 0; i < ncols; i++)
		buf_addf(&b, "%s$%zu", i ? ", " : "", i + 1);
	buf_adds(&b, ")");
	if (strcmp(table, "meta") == 0)
		buf_adds(&b, " ON CONFLICT (key) DO UPDATE SET value ="
		             " excluded.value");
	if (s->conn == NULL) {
		buf_free(&b);
		pg_seterr(s, "%s: not connected to %s", table, s->shown);
		s->lost = 1;
		return -1;
	}
	res = pg_exec_params(s, b.buf, (int)ncols, vals);
	buf_free(&b);
	if (!pg_ok(res)) {
		pg_dberr(s, res, table);
		PQclear(res);
		return -1;
	}
	PQclear(res);
	return 0;
}

/* ok: set every id sequence past the copied ids, then commit. */
static int
pg_load_end(struct store_be *s, int ok)
{
	static const char *const serial[] = {
	    "tasks", "checkpoints", "events", "journal", "turns"};
	char *sql;
	int rc;

	if (!ok) {
		pg_rollback(s);
		return 0;
	}
	for (size_t i = 0; i < nitems(serial); i++) {
		sql = xasprintf("SELECT setval(pg_get_serial_sequence('%s',"
		                " 'id'), COALESCE(MAX(id), 0) + 1, false)"
		                " FROM %s",
		    serial[i], serial[i]);
		rc = pg_exec(s, sql, "set sequence");
		free(sql);
		if (rc == -1) {
			pg_rollback(s);
			return -1;
		}
	}
	return pg_commit(s);
}

static int
pg_count(struct store_be *s, const char *table, int64_t *n)
{
	char *sql = xasprintf("SELECT COUNT(*) FROM %s", table);
	int rc = pg_ready(s) == -1 ? -1 : pg_int_query(s, sql, NULL, n);

	free(sql);
	return rc;
}

const struct store_ops store_pg_ops = {
    .name = "postgresql",
    .close = pg_close,
    .error = pg_error,
    .storage_error = pg_storage_error,
    .probe = pg_probe,
    .schema_version = pg_schema_version,
    .state_id = pg_state_id,
    .lock = pg_lock,
    .info_json = pg_info_json,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .task_add = pg_task_add,
    .task_get = pg_task_get,
    .task_set_state = pg_task_set_state,
    .task_set_text = pg_task_set_text,
    .task_stamp = pg_task_stamp,
    .task_set_int = pg_task_set_int,
    .task_set_repo = pg_task_set_repo,
    .task_set_status = pg_task_set_status,
    .task_list = pg_task_list,
    .task_list_desc = pg_task_list_desc,
    .task_runnable = pg_task_runnable,
    .task_counts = pg_task_counts,
    .checkpoint_add = pg_checkpoint_add,
    .checkpoint_list = pg_checkpoint_list,
    .journal_add = pg_journal_add,
    .journal_list = pg_journal_list,
    .turn_add = pg_turn_add,
    .turn_sums = pg_turn_sums,
    .event_add = pg_event_add,
    .event_add_data = pg_event_add_data,
    .event_add_state = pg_event_add_state,
    .event_list = pg_event_list,
    .usage_json = pg_usage_json,
    .stats_json = pg_stats_json,
    .backup = pg_backup,
    .integrity = pg_integrity,
    .set_event_hook = pg_set_event_hook,
    .set_commit_hook = pg_set_commit_hook,
    .set_conn_hook = pg_set_conn_hook,
    .event_max = pg_event_max,
    .wait_events = pg_wait_events,
    .task_count = pg_task_count,
    .gc_candidates = pg_gc_candidates,
    .gc_task = pg_gc_task,
    .vacuum = pg_vacuum,
    .load_begin = pg_load_begin,
    .load_row = pg_load_row,
    .load_end = pg_load_end,
    .count = pg_count,
    .node_join = pg_node_join,
    .node_incarnation = pg_node_incarnation,
    .node_beat = pg_node_beat,
    .node_leave = pg_node_leave,
    .lease_claim = pg_lease_claim,
    .lease_held = pg_lease_held,
    .lease_epoch = pg_lease_epoch,
    .lease_count = pg_lease_count,
    .lease_list = pg_lease_list,
    .lease_release = pg_lease_release,
    .lease_lost = pg_lease_lost,
    .tasks_changed = pg_tasks_changed,
    .nodes_json = pg_nodes_json,
};
