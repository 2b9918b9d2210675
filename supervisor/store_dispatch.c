/*
 * store_dispatch.c: the store's dispatcher and what its backends share.
 *
 * Above store.h nothing knows which database runs: a struct store is the
 * backend's table of operations (store_impl.h) and its connection.  The
 * SQL lives in store_sqlite.c and store_pg.c, and nowhere else.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "common.h"
#include "store_impl.h"

struct store {
	const struct store_ops *ops;
	struct store_be *be;
};

/* -------------------------------------------------------------------------
 * The names the database holds for each enum
 * ------------------------------------------------------------------------ */

const char *const wstate_names[WS_MAX] = {
    "pending",
    "planning",
    "plan_awaiting_approval",
    "plan_approved",
    "implementing",
    "implementation_awaiting_approval",
    "reviewing",
    "verifying",
    "completed",
    "failed",
    "cancelled",
};

const char *const tstatus_names[TS_MAX] = {
    "pending",
    "in_progress",
    "awaiting_approval",
    "completed",
    "failed",
    "cancelled",
};

const char *const event_kind_names[EV_MAX] = {
    "state",
    "info",
    "error",
    "model",
    "tool",
    "result",
    "checkpoint",
};

/* Column names, indexed by enum task_col and enum task_icol. */
const char *const task_col_names[TC_MAX] = {
    "plan",
    "implementation",
    "review",
    "verification_result",
    "workflow_log",
    "plan_approved_at",
    "plan_approved_by",
    "plan_rejection_reason",
    "implementation_approved_at",
    "implementation_approved_by",
    "implementation_rejection_reason",
    "error_details",
    "feedback",
};

const char *const task_icol_names[TI_MAX] = {
    "retry_count",
    "stage_run",
    "stage_retries",
    "review_rounds",
    "verify_rounds",
    "failed_state",
    "max_tokens",
    "max_cost_micros",
    "budget_paused",
};

/* -------------------------------------------------------------------------
 * Names of states, statuses and event kinds
 * ------------------------------------------------------------------------ */

const char *
wstate_name(enum wstate ws)
{
	if ((unsigned)ws >= WS_MAX)
		return NULL;
	return wstate_names[ws];
}

int
wstate_parse(const char *s, enum wstate *ws)
{
	if (s == NULL)
		return -1;
	for (int i = 0; i < WS_MAX; i++) {
		if (strcmp(s, wstate_names[i]) == 0) {
			*ws = (enum wstate)i;
			return 0;
		}
	}
	return -1;
}

enum tstatus
wstate_status(enum wstate ws)
{
	switch (ws) {
	case WS_PENDING:
		return TS_PENDING;
	case WS_PLAN_AWAITING_APPROVAL:
	case WS_IMPLEMENTATION_AWAITING_APPROVAL:
		return TS_AWAITING_APPROVAL;
	case WS_COMPLETED:
		return TS_COMPLETED;
	case WS_FAILED:
		return TS_FAILED;
	case WS_CANCELLED:
		return TS_CANCELLED;
	case WS_PLANNING:
	case WS_PLAN_APPROVED:
	case WS_IMPLEMENTING:
	case WS_REVIEWING:
	case WS_VERIFYING:
	default:
		return TS_IN_PROGRESS;
	}
}

const char *
tstatus_name(enum tstatus ts)
{
	if ((unsigned)ts >= TS_MAX)
		return NULL;
	return tstatus_names[ts];
}

int
tstatus_parse(const char *s, enum tstatus *ts)
{
	if (s == NULL)
		return -1;
	for (int i = 0; i < TS_MAX; i++) {
		if (strcmp(s, tstatus_names[i]) == 0) {
			*ts = (enum tstatus)i;
			return 0;
		}
	}
	return -1;
}

const char *
wstate_stage(enum wstate ws)
{
	switch (ws) {
	case WS_PENDING:
	case WS_PLANNING:
		return "planning";
	case WS_PLAN_APPROVED:
	case WS_IMPLEMENTING:
		return "implementing";
	case WS_REVIEWING:
		return "reviewing";
	case WS_VERIFYING:
		return "verifying";
	default:
		return NULL;
	}
}

const char *
event_kind_name(enum event_kind k)
{
	if ((unsigned)k >= EV_MAX)
		return NULL;
	return event_kind_names[k];
}

void
task_free(struct task *t)
{
	if (t == NULL)
		return;
	free(t->request);
	free(t->repo);
	free(t->base_commit);
	free(t->verify_command);
	free(t->created_at);
	free(t->updated_at);
	for (int i = 0; i < TC_MAX; i++)
		free(t->text[i]);
	free(t->workflow_checkpoint_data);
	free(t->node);
	free(t);
}

/* -------------------------------------------------------------------------
 * Opening: the one place that picks the backend
 * ------------------------------------------------------------------------ */

static struct store *
store_wrap(const struct store_ops *ops, struct store_be *be)
{
	struct store *s = xcalloc(1, sizeof *s);

	s->ops = ops;
	s->be = be;
	return s;
}

int
store_open(struct store **storep, const char *path, enum store_mode mode,
    const struct store_opts *opts, char **cause)
{
	struct store_be *be;

	*storep = NULL;
	if (store_sqlite_open(&be, path, mode, opts, cause) == -1)
		return -1;
	*storep = store_wrap(&store_sqlite_ops, be);
	return 0;
}

int
store_open_url(struct store **storep, const char *url, enum store_mode mode,
    const struct store_opts *opts, char **cause)
{
	struct store_be *be;

	*storep = NULL;
	if (store_pg_open(&be, url, mode, opts, cause) == -1)
		return -1;
	/* A read-only open of a database with no schema yet: none. */
	if (be != NULL)
		*storep = store_wrap(&store_pg_ops, be);
	return 0;
}

void
store_close(struct store *s)
{
	if (s == NULL)
		return;
	s->ops->close(s->be);
	free(s);
}

const char *
store_backend(struct store *s)
{
	return s->ops->name;
}

/* -------------------------------------------------------------------------
 * Masking the password of a connection string
 * ------------------------------------------------------------------------ */

#define MASK "****"

static int
url_is_uri(const char *url)
{
	return strncmp(url, "postgresql://", 13) == 0 ||
	       strncmp(url, "postgres://", 11) == 0;
}

/* A URI: the password of the user part and any password= parameter. */
static char *
url_mask_uri(const char *url)
{
	struct buf b;
	const char *p = strstr(url, "://") + 3, *at, *colon, *q, *end;

	buf_init(&b);
	at = p + strcspn(p, "@/?");
	if (*at == '@' && (colon = memchr(p, ':', (size_t)(at - p))) != NULL) {
		buf_add(&b, url, (size_t)(colon + 1 - url));
		buf_adds(&b, MASK);
		p = at;
	} else
		p = url;
	/* The query: every password=VALUE up to the next '&'. */
	while ((q = strstr(p, "password=")) != NULL &&
	       (q == url || q[-1] == '?' || q[-1] == '&')) {
		q += strlen("password=");
		buf_add(&b, p, (size_t)(q - p));
		buf_adds(&b, MASK);
		end = q + strcspn(q, "&");
		p = end;
	}
	buf_adds(&b, p);
	return b.buf;
}

char *
store_url_mask(const char *url)
{
	PQconninfoOption *opts, *o;
	struct buf b;
	char *err = NULL;

	if (url == NULL)
		return NULL;
	/*
	 * What libpq cannot parse is not printed at all: where the password
	 * would be in it is anybody's guess.
	 */
	if ((opts = PQconninfoParse(url, &err)) == NULL) {
		PQfreemem(err);
		return xstrdup("(a database URL libpq cannot parse)");
	}
	if (url_is_uri(url)) {
		PQconninfoFree(opts);
		return url_mask_uri(url);
	}
	/*
	 * key=value: rebuilt from libpq's own parse (in libpq's order of
	 * keywords), password masked, quoted as libpq would read it back.
	 */
	buf_init(&b);
	for (o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL)
			continue;
		if (b.len > 0)
			buf_adds(&b, " ");
		buf_addf(&b, "%s=", o->keyword);
		if (strcmp(o->keyword, "password") == 0)
			buf_adds(&b, MASK);
		else if (*o->val != '\0' && strpbrk(o->val, " '\\") == NULL)
			buf_adds(&b, o->val);
		else {
			buf_adds(&b, "'");
			for (const char *p = o->val; *p != '\0'; p++) {
				if (*p == '\'' || *p == '\\')
					buf_adds(&b, "\\");
				buf_add(&b, p, 1);
			}
			buf_adds(&b, "'");
		}
	}
	PQconninfoFree(opts);
	return b.buf;
}

/* -------------------------------------------------------------------------
 * Dispatch
 * ------------------------------------------------------------------------ */

const char *
store_error(struct store *s)
{
	if (s == NULL)
		return "no database";
	return s->ops->error(s->be);
}

int
store_storage_error(struct store *s)
{
	return s->ops->storage_error(s->be);
}

int
store_probe(struct store *s)
{
	return s->ops->probe(s->be);
}

int
store_schema_version(struct store *s)
{
	return s->ops->schema_version(s->be);
}

int
store_state_id(struct store *s, char **id)
{
	return s->ops->state_id(s->be, id);
}

int
store_lock(struct store *s, int *taken)
{
	return s->ops->lock(s->be, taken);
}

int
store_info_json(struct store *s, json_t **out)
{
	return s->ops->info_json(s->be, out);
}

int
store_begin(struct store *s)
{
	return s->ops->begin(s->be, 0);
}

int
store_begin_lazy(struct store *s)
{
	return s->ops->begin(s->be, 1);
}

int
store_commit(struct store *s)
{
	return s->ops->commit(s->be);
}

void
store_rollback(struct store *s)
{
	s->ops->rollback(s->be);
}

int
store_flush(struct store *s)
{
	return s->ops->flush != NULL ? s->ops->flush(s->be) : 0;
}

int
store_flush_pending(struct store *s)
{
	return s->ops->flush_pending != NULL ? s->ops->flush_pending(s->be) : 0;
}

int
store_task_add(struct store *s, const struct task_new *tn, int64_t *id)
{
	return s->ops->task_add(s->be, tn, id);
}

int
store_task_get(struct store *s, int64_t id, struct task **taskp)
{
	return s->ops->task_get(s->be, id, taskp);
}

int
store_task_set_state(struct store *s, int64_t id, enum wstate ws)
{
	return s->ops->task_set_state(s->be, id, ws);
}

int
store_task_set_text(
    struct store *s, int64_t id, enum task_col col, const char *value)
{
	return s->ops->task_set_text(s->be, id, col, value);
}

int
store_task_stamp(struct store *s, int64_t id, enum task_col col)
{
	return s->ops->task_stamp(s->be, id, col);
}

int
store_task_set_int(struct store *s, int64_t id, enum task_icol col, int64_t v)
{
	return s->ops->task_set_int(s->be, id, col, v);
}

int
store_task_set_repo(
    struct store *s, int64_t id, const char *repo, const char *base_commit)
{
	return s->ops->task_set_repo(s->be, id, repo, base_commit);
}

int
store_task_set_status(struct store *s, int64_t id, enum tstatus ts)
{
	return s->ops->task_set_status(s->be, id, ts);
}

int
store_task_list(
    struct store *s, int status, int resumable, store_task_cb cb, void *arg)
{
	return s->ops->task_list(s->be, status, resumable, cb, arg);
}

int
store_task_list_desc(
    struct store *s, int status, int64_t before, store_task_cb cb, void *arg)
{
	return s->ops->task_list_desc(s->be, status, before, cb, arg);
}

int
store_task_runnable(
    struct store *s, int64_t after, int64_t *ids, size_t max, size_t *n)
{
	return s->ops->task_runnable(s->be, after, ids, max, n);
}

int
store_task_counts(struct store *s, int64_t counts[WS_MAX])
{
	return s->ops->task_counts(s->be, counts);
}

int
store_checkpoint_add(
    struct store *s, int64_t task, const char *name, const char *data)
{
	return s->ops->checkpoint_add(s->be, task, name, data);
}

int
store_checkpoint_list(
    struct store *s, int64_t task, store_checkpoint_cb cb, void *arg)
{
	return s->ops->checkpoint_list(s->be, task, cb, arg);
}

int
store_journal_add(struct store *s, int64_t task, int64_t run, int64_t seq,
    const char *stage, const char *kind, const char *data, int64_t tokens_in,
    int64_t tokens_out)
{
	return s->ops->journal_add(
	    s->be, task, run, seq, stage, kind, data, tokens_in, tokens_out);
}

int
store_journal_list(
    struct store *s, int64_t task, int64_t run, store_journal_cb cb, void *arg)
{
	return s->ops->journal_list(s->be, task, run, cb, arg);
}

int
store_turn_add(struct store *s, int64_t task, const char *stage,
    const char *model, int64_t tokens_in, int64_t tokens_out, int64_t cached_in,
    int64_t duration_ms)
{
	return s->ops->turn_add(s->be, task, stage, model, tokens_in,
	    tokens_out, cached_in, duration_ms);
}

int
store_turn_sums(struct store *s, int64_t task, store_turn_cb cb, void *arg)
{
	return s->ops->turn_sums(s->be, task, cb, arg);
}

int
store_event_add(struct store *s, int64_t task, enum event_kind kind,
    const char *stage, const char *text)
{
	return s->ops->event_add(s->be, task, kind, stage, text);
}

int
store_event_add_data(struct store *s, int64_t task, enum event_kind kind,
    const char *stage, const char *text, const json_t *data)
{
	return s->ops->event_add_data(s->be, task, kind, stage, text, data);
}

int
store_event_add_state(struct store *s, int64_t task, enum wstate state,
    const char *stage, const char *text)
{
	return s->ops->event_add_state(s->be, task, state, stage, text);
}

int
store_event_list(struct store *s, int64_t task, int64_t after, int limit,
    store_event_cb cb, void *arg)
{
	return s->ops->event_list(s->be, task, after, limit, cb, arg);
}

int
store_usage_json(struct store *s, int64_t task, json_t **out)
{
	return s->ops->usage_json(s->be, task, out);
}

int
store_stats_json(struct store *s, json_t **out)
{
	if (s->ops->stats_json(s->be, out) == -1)
		return -1;
	json_object_set_new(*out, "backend", json_string(s->ops->name));
	return 0;
}

int
store_backup(struct store *s, const char *dest)
{
	return s->ops->backup(s->be, dest);
}

int
store_integrity(struct store *s, int *ok)
{
	return s->ops->integrity(s->be, ok);
}

void
store_set_event_hook(struct store *s, void (*cb)(void *), void *arg)
{
	s->ops->set_event_hook(s->be, cb, arg);
}

void
store_set_commit_hook(struct store *s,
    void (*cb)(double seconds, int durable, void *arg), void *arg)
{
	s->ops->set_commit_hook(s->be, cb, arg);
}

void
store_set_conn_hook(struct store *s,
    void (*cb)(int up, const char *why, double seconds, void *arg), void *arg)
{
	/* NULL: a backend without outages. */
	if (s->ops->set_conn_hook != NULL)
		s->ops->set_conn_hook(s->be, cb, arg);
}

double
store_seconds_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) +
	       (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

int
store_wait_events(struct store *s, int timeout_ms)
{
	if (s->ops->wait_events == NULL)
		return -1;
	return s->ops->wait_events(s->be, timeout_ms);
}

/*
 * Nodes and leases: PostgreSQL's alone.  On SQLite (one service per
 * database, its state directory's lock) there is no node to join, no
 * lease to hold and no other writer to hear from.
 */
int
store_node_join(struct store *s, const char *name, unsigned capacity,
    unsigned lease_s, const char *previous, char **cause)
{
	*cause = NULL;
	if (s->ops->node_join == NULL) {
		*cause = xasprintf("the %s store is single-service: nodes"
		                   " need ORCH_DATABASE_URL",
		    s->ops->name);
		return -1;
	}
	return s->ops->node_join(
	    s->be, name, capacity, lease_s, previous, cause);
}

const char *
store_node_incarnation(struct store *s)
{
	return s->ops->node_incarnation == NULL
	           ? ""
	           : s->ops->node_incarnation(s->be);
}

int
store_node_beat(
    struct store *s, unsigned running, int64_t **lost, size_t *nlost)
{
	*lost = NULL;
	*nlost = 0;
	if (s->ops->node_beat == NULL)
		return 0;
	return s->ops->node_beat(s->be, running, lost, nlost);
}

int
store_node_leave(struct store *s)
{
	return s->ops->node_leave == NULL ? 0 : s->ops->node_leave(s->be);
}

int
store_lease_claim(struct store *s, int64_t only_task, size_t max,
    unsigned per_repo, int64_t *ids, size_t *n)
{
	*n = 0;
	if (s->ops->lease_claim == NULL)
		return 0;
	return s->ops->lease_claim(s->be, only_task, max, per_repo, ids, n);
}

int
store_lease_held(struct store *s, int64_t task)
{
	return s->ops->lease_held == NULL ? 0 : s->ops->lease_held(s->be, task);
}

int64_t
store_lease_epoch(struct store *s, int64_t task)
{
	return s->ops->lease_epoch == NULL ? 0
	                                   : s->ops->lease_epoch(s->be, task);
}

size_t
store_lease_count(struct store *s)
{
	return s->ops->lease_count == NULL ? 0 : s->ops->lease_count(s->be);
}

size_t
store_lease_list(struct store *s, int64_t *ids, size_t max)
{
	return s->ops->lease_list == NULL ? 0
	                                  : s->ops->lease_list(s->be, ids, max);
}

int
store_lease_release(struct store *s, int64_t task)
{
	return s->ops->lease_release == NULL
	           ? 0
	           : s->ops->lease_release(s->be, task);
}

int64_t
store_lease_lost(struct store *s)
{
	return s->ops->lease_lost == NULL ? 0 : s->ops->lease_lost(s->be);
}

int
store_tasks_changed(
    struct store *s, int64_t *ids, size_t max, size_t *n, int *more)
{
	*n = 0;
	*more = 0;
	if (s->ops->tasks_changed == NULL)
		return 0;
	return s->ops->tasks_changed(s->be, ids, max, n, more);
}

int
store_nodes_json(struct store *s, json_t **out)
{
	if (s->ops->nodes_json == NULL) {
		*out = json_array();
		return 0;
	}
	return s->ops->nodes_json(s->be, out);
}

int
store_event_max(struct store *s, int64_t *id)
{
	return s->ops->event_max(s->be, id);
}

int
store_task_count(struct store *s, enum tstatus status, int64_t *n)
{
	return s->ops->task_count(s->be, status, n);
}

int
store_gc_candidates(struct store *s, unsigned days, store_task_cb cb, void *arg)
{
	return s->ops->gc_candidates(s->be, days, cb, arg);
}

int
store_gc_task(struct store *s, int64_t task, int64_t *events, int64_t *journal)
{
	return s->ops->gc_task(s->be, task, events, journal);
}

int
store_vacuum(struct store *s)
{
	return s->ops->vacuum(s->be);
}

/* -------------------------------------------------------------------------
 * Copying a database into another (db-copy)
 * ------------------------------------------------------------------------ */

/* The tables store_copy moves, in an order their foreign keys accept. */
static const char *const copy_checkpoints[] = {
    "id", "task_id", "checkpoint_name", "checkpoint_data", "created_at"};
static const char *const copy_events[] = {
    "id", "task_id", "ts", "kind", "stage", "text", "state", "data"};
static const char *const copy_journal[] = {"id", "task_id", "run", "seq",
    "stage", "kind", "data", "tokens_in", "tokens_out", "created_at"};
static const char *const copy_usage[] = {
    "task_id", "stage", "calls", "tokens_in", "tokens_out"};
static const char *const copy_turns[] = {"id", "task_id", "ts", "stage",
    "model", "tokens_in", "tokens_out", "cached_in", "duration_ms"};

/* The columns of tasks: the fixed ones, then the state machine's. */
static size_t
copy_task_cols(const char **cols)
{
	static const char *const fixed[] = {"id", "request", "status",
	    "workflow_state", "created_at", "updated_at",
	    "workflow_checkpoint_data", "repo", "base_commit", "verify_command",
	    "auto_approve"};
	size_t n = 0;

	for (size_t i = 0; i < nitems(fixed); i++)
		cols[n++] = fixed[i];
	for (size_t i = 0; i < TC_MAX; i++)
		cols[n++] = task_col_names[i];
	for (size_t i = 0; i < TI_MAX; i++)
		cols[n++] = task_icol_names[i];
	return n;
}

struct copy_arg {
	struct store *to;
	const char *table;
	const char *const *cols;
	size_t ncols;
	int64_t rows;
	int to_failed; /* the error is the destination's */
};

static int
copy_row_cb(const char *const *vals, void *arg)
{
	struct copy_arg *c = arg;

	if (c->to->ops->load_row(
	        c->to->be, c->table, c->cols, c->ncols, vals) == -1) {
		c->to_failed = 1;
		return -1;
	}
	c->rows++;
	return 0;
}

int
store_copy(struct store *from, struct store *to, json_t **report, char **cause)
{
	const char *task_cols[11 + TC_MAX + TI_MAX];
	struct {
		const char *table;
		const char *const *cols;
		size_t ncols;
	} tables[] = {
	    {"tasks", task_cols, 0},
	    {"checkpoints", copy_checkpoints, nitems(copy_checkpoints)},
	    {"events", copy_events, nitems(copy_events)},
	    {"journal", copy_journal, nitems(copy_journal)},
	    {"usage", copy_usage, nitems(copy_usage)},
	    {"turns", copy_turns, nitems(copy_turns)},
	};
	static const char *const meta_cols[] = {"key", "value"};
	struct copy_arg c;
	const char *meta_vals[2];
	char *state_id = NULL;
	int64_t nfrom, nto;
	json_t *r;

	*report = NULL;
	*cause = NULL;
	tables[0].ncols = copy_task_cols(task_cols);
	if (from->ops->rows == NULL || to->ops->load_begin == NULL) {
		*cause = xasprintf("copying from %s into %s is not supported",
		    from->ops->name, to->ops->name);
		return -1;
	}
	if (store_state_id(from, &state_id) == -1) {
		*cause = xasprintf("source: %s", store_error(from));
		return -1;
	}
	if (to->ops->load_begin(to->be) == -1) {
		*cause = xasprintf("destination: %s", store_error(to));
		free(state_id);
		return -1;
	}
	r = json_object();
	for (size_t i = 0; i < nitems(tables); i++) {
		c = (struct copy_arg){
		    to, tables[i].table, tables[i].cols, tables[i].ncols, 0, 0};
		if (from->ops->rows(from->be, c.table, c.cols, c.ncols,
		        copy_row_cb, &c) != 0) {
			*cause = xasprintf("copy %s: %s", c.table,
			    store_error(c.to_failed ? to : from));
			goto fail;
		}
		json_object_set_new(r, c.table, json_integer(c.rows));
	}
	/* The commits already made carry the state id: it moves too. */
	meta_vals[0] = "state_id";
	meta_vals[1] = state_id;
	if (to->ops->load_row(to->be, "meta", meta_cols, 2, meta_vals) == -1) {
		*cause = xasprintf("copy meta: %s", store_error(to));
		goto fail;
	}
	if (to->ops->load_end(to->be, 1) == -1) {
		*cause = xasprintf("commit: %s", store_error(to));
		free(state_id);
		json_decref(r);
		return -1;
	}
	free(state_id);
	/* Both sides counted again, after the commit. */
	for (size_t i = 0; i < nitems(tables); i++) {
		if (from->ops->count(from->be, tables[i].table, &nfrom) == -1 ||
		    to->ops->count(to->be, tables[i].table, &nto) == -1) {
			*cause = xasprintf(
			    "count %s: %s", tables[i].table, store_error(to));
			json_decref(r);
			return -1;
		}
		if (nfrom != nto) {
			*cause = xasprintf("%s: %lld rows in the source, %lld"
			                   " copied",
			    tables[i].table, (long long)nfrom, (long long)nto);
			json_decref(r);
			return -1;
		}
	}
	*report = r;
	return 0;

fail:
	to->ops->load_end(to->be, 0);
	free(state_id);
	json_decref(r);
	return -1;
}
