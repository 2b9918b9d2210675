/*
 * The store's behaviour through store.h alone, run on every backend: on
 * SQLite always, and on PostgreSQL when ORCH_TEST_PG_URL names a throwaway
 * database (its orch tables are dropped first).  Then what only
 * PostgreSQL has: the writer's advisory lock, a lost connection and the
 * commit token.  tests/test-store.c keeps the SQLite-only tests (pragmas,
 * damaged files, migrations from the Python schema).
 */
#include <stdint.h>
#include <sys/wait.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "common.h"
#include "store.h"
#include "tap.h"

static char *dir;
static const char *pg_url;
static int backend_pg; /* the suite now runs on PostgreSQL */
static char label[64];

static const char *
say(const char *what)
{
	static char buf[4][256];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof buf[i], "%s: %s", label, what);
	return buf[i];
}

/* A connection of the test's own, for SQL behind the store's back. */
static void raw_exec(PGconn *, const char *);

static PGconn *
raw_pg(void)
{
	const char *keys[] = {"application_name", "dbname", NULL};
	const char *vals[] = {"orch-test", pg_url, NULL};
	PGconn *c = PQconnectdbParams(keys, vals, 1);

	if (PQstatus(c) != CONNECTION_OK)
		fatalx("connect %s: %s", pg_url, PQerrorMessage(c));
	raw_exec(c, "SET client_min_messages = warning");
	return c;
}

static void
raw_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);

	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK)
		fatalx("%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
}

/* The store's backends (application_name orch-supervisor) are ended. */
static void
pg_kill_store(void)
{
	PGconn *c = raw_pg();

	raw_exec(c, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
	            " WHERE application_name = 'orch-supervisor'"
	            " AND pid <> pg_backend_pid()");
	PQfinish(c);
}

static struct store *
open_as(enum store_mode mode)
{
	struct store *s;
	char *cause, *path;

	if (backend_pg) {
		if (store_open_url(&s, pg_url, mode, NULL, &cause) == -1)
			fatalx("store_open_url: %s", cause);
		return s;
	}
	path = xasprintf("%s/any.db", dir);
	if (store_open(&s, path, mode, NULL, &cause) == -1)
		fatalx("store_open %s: %s", path, cause);
	free(path);
	return s;
}

static int64_t
add_task(struct store *s, const char *request)
{
	struct task_new tn = {request, "/r", "abc", NULL, 0, 0, 0};
	int64_t id = 0;

	if (store_task_add(s, &tn, &id) == -1)
		fatalx("task_add: %s", store_error(s));
	return id;
}

/* "YYYY-MM-DD HH:MM:SS.mmm", the format both backends write. */
static int
is_timestamp(const char *t)
{
	static const char shape[] = "dddd-dd-dd dd:dd:dd.ddd";

	if (t == NULL || strlen(t) != sizeof shape - 1)
		return 0;
	for (size_t i = 0; i < sizeof shape - 1; i++)
		if (shape[i] == 'd' ? t[i] < '0' || t[i] > '9'
		                    : t[i] != shape[i])
			return 0;
	return 1;
}

static int
count_cp(const struct checkpoint *cp, void *arg)
{
	(void)cp;
	(*(int *)arg)++;
	return 0;
}

static int
collect_ids(const struct task *t, void *arg)
{
	json_array_append_new(arg, json_integer(t->id));
	return 0;
}

static int
collect_journal(const struct journal_entry *je, void *arg)
{
	json_array_append_new(
	    arg, json_pack("{s:I,s:s,s:s}", "seq", (json_int_t)je->seq, "kind",
	             je->kind, "data", je->data));
	return 0;
}

static int
collect_events(const struct event_row *ev, void *arg)
{
	json_array_append_new(
	    arg, json_pack("{s:I,s:s,s:i}", "id", (json_int_t)ev->id, "text",
	             ev->text, "state", (int)ev->state));
	return 0;
}

static int
collect_event_data(const struct event_row *ev, void *arg)
{
	json_array_append_new(
	    arg, json_pack("{s:s,s:s?}", "kind", ev->kind, "data", ev->data));
	return 0;
}

/* Ids into arg until it holds 3 (list_desc's callback stops there). */
static int
collect_three(const struct task *t, void *arg)
{
	json_array_append_new(arg, json_integer(t->id));
	return json_array_size(arg) >= 3;
}

static int
turn_sum_cb(const struct turn_sum *ts, void *arg)
{
	json_array_append_new(arg,
	    json_pack("{s:s,s:s,s:s?,s:I,s:I,s:I,s:I,s:I}", "day", ts->day,
	        "model", ts->model, "repo", ts->repo, "in",
	        (json_int_t)ts->tokens_in, "out", (json_int_t)ts->tokens_out,
	        "cached", (json_int_t)ts->cached_in, "ms",
	        (json_int_t)ts->duration_ms, "turns", (json_int_t)ts->turns));
	return 0;
}

static int commits, durable_commits;
static double commit_secs;

static void
commit_hook(double seconds, int durable, void *arg)
{
	(void)arg;
	commits++;
	durable_commits += durable != 0;
	commit_secs = seconds;
}

static int hooked;

static void
hook(void *arg)
{
	(void)arg;
	hooked++;
}

static void
test_tasks(void)
{
	struct store *s = open_as(STORE_RW);
	struct task *t;
	char *id;
	int64_t a, b, n;
	int cps = 0;

	is_int(store_schema_version(s), 6, say("schema version 6"));
	ok(store_state_id(s, &id) == 0 && id != NULL && strlen(id) == 32,
	    say("state id: 32 hex digits"));
	free(id);
	a = add_task(s, "first");
	b = add_task(s, "second");
	ok(a > 0 && b == a + 1, say("ids count up"));
	ok(store_task_get(s, a, &t) == 0 && t != NULL, say("task_get"));
	if (t != NULL) {
		is_str(t->request, "first", say("request"));
		is_str(t->repo, "/r", say("repo"));
		is_int(t->state, WS_PENDING, say("pending"));
		ok(is_timestamp(t->created_at), say("created_at format"));
		is_int(t->ival[TI_FAILED_STATE], -1, say("failed_state NULL"));
		ok(t->text[TC_PLAN] == NULL, say("plan NULL"));
		is_str(t->workflow_checkpoint_data, "{\"request\":\"first\"}",
		    say("workflow_start checkpoint data"));
		task_free(t);
	}
	ok(store_task_get(s, 9999, &t) == 0 && t == NULL,
	    say("no such task: NULL"));
	ok(store_checkpoint_list(s, a, count_cp, &cps) == 0 && cps == 1,
	    say("one checkpoint"));

	ok(store_task_set_state(s, a, WS_PLANNING) == 0 &&
	        store_task_set_text(s, a, TC_PLAN, "the plan") == 0 &&
	        store_task_set_int(s, a, TI_STAGE_RUN, 3) == 0 &&
	        store_task_set_int(s, a, TI_FAILED_STATE, WS_REVIEWING) == 0 &&
	        store_task_stamp(s, a, TC_PLAN_APPROVED_AT) == 0 &&
	        store_task_set_repo(s, a, "/other", "def") == 0,
	    say("setters"));
	ok(store_task_get(s, a, &t) == 0 && t != NULL, say("read back"));
	if (t != NULL) {
		is_int(t->state, WS_PLANNING, say("state set"));
		is_str(t->text[TC_PLAN], "the plan", say("text set"));
		is_int(t->ival[TI_STAGE_RUN], 3, say("int set"));
		is_int(t->ival[TI_FAILED_STATE], WS_REVIEWING,
		    say("failed_state set"));
		ok(is_timestamp(t->text[TC_PLAN_APPROVED_AT]),
		    say("stamp is a time"));
		is_str(t->repo, "/other", say("repo set"));
		task_free(t);
	}
	ok(store_task_set_state(s, 9999, WS_PLANNING) == -1 &&
	        strstr(store_error(s), "no task 9999") != NULL &&
	        !store_storage_error(s),
	    say("set on a missing task: an error, not storage"));
	ok(store_task_set_text(s, a, TC_PLAN, NULL) == 0 &&
	        store_task_get(s, a, &t) == 0 && t != NULL &&
	        t->text[TC_PLAN] == NULL,
	    say("NULL writes NULL"));
	task_free(t);
	ok(store_task_count(s, TS_IN_PROGRESS, &n) == 0 && n == 1,
	    say("count in_progress"));
	store_close(s);
}

static void
test_lists(void)
{
	struct store *s = open_as(STORE_RW);
	json_t *l = json_array();
	int64_t ids[8];
	size_t n;
	int64_t c;

	c = add_task(s, "third");
	store_task_set_state(s, c, WS_COMPLETED);
	ok(store_task_list(s, -1, 0, collect_ids, l) == 0 &&
	        json_array_size(l) == 3,
	    say("list all"));
	json_array_clear(l);
	ok(store_task_list(s, TS_PENDING, 0, collect_ids, l) == 0 &&
	        json_array_size(l) == 1,
	    say("list pending"));
	json_array_clear(l);
	ok(store_task_list(s, -1, 1, collect_ids, l) == 0 &&
	        json_array_size(l) == 2,
	    say("list resumable"));
	ok(store_task_runnable(s, 0, ids, 8, &n) == 0 && n == 2 &&
	        ids[0] < ids[1],
	    say("runnable, oldest first"));
	ok(store_task_runnable(s, 0, ids, 1, &n) == 0 && n == 1,
	    say("runnable, at most max"));
	ok(store_task_runnable(s, ids[0], ids + 1, 8, &n) == 0 && n == 1 &&
	        ids[1] > ids[0],
	    say("runnable, the next page: ids over after"));
	ok(store_task_runnable(s, ids[1], ids, 8, &n) == 0 && n == 0,
	    say("runnable, past the last: none"));
	json_decref(l);
	store_close(s);
}

static void
test_journal_events(void)
{
	struct store *s = open_as(STORE_RW);
	json_t *l = json_array(), *u = NULL;
	int64_t max0, max1;

	ok(store_journal_add(
	       s, 1, 1, 0, "planning", "reply", "{\"a\":1}", 10, 5) == 0 &&
	        store_journal_add(s, 1, 1, 1, "planning", "tool", "x", 0, 0) ==
	            0,
	    say("journal add"));
	ok(store_journal_add(s, 1, 1, 1, "planning", "tool", "y", 0, 0) == -1 &&
	        !store_storage_error(s),
	    say("a seq that exists is an error, not storage"));
	ok(store_journal_list(s, 1, 1, collect_journal, l) == 0 &&
	        json_array_size(l) == 2,
	    say("journal list"));
	is_str(json_string_value(json_object_get(json_array_get(l, 1), "data")),
	    "x", say("journal keeps the first"));
	ok(store_usage_json(s, 1, &u) == 0 && u != NULL, say("usage"));
	is_int(json_integer_value(
	           json_object_get(json_object_get(u, "planning"), "calls")),
	    1, say("usage counts replies"));
	is_int(json_integer_value(json_object_get(
	           json_object_get(u, "planning"), "tokens_in")),
	    10, say("usage tokens"));
	json_decref(u);

	store_event_max(s, &max0);
	hooked = 0;
	store_set_event_hook(s, hook, NULL);
	ok(store_event_add(s, 1, EV_INFO, "planning", "hello") == 0 &&
	        store_event_add_state(s, 1, WS_PLANNING, NULL, "a -> b") == 0,
	    say("events add"));
	is_int(hooked, 2, say("hook called per event"));
	store_set_event_hook(s, NULL, NULL);
	ok(store_event_max(s, &max1) == 0 && max1 == max0 + 2,
	    say("event max"));
	json_array_clear(l);
	ok(store_event_list(s, 1, max0, 0, collect_events, l) == 0 &&
	        json_array_size(l) == 2,
	    say("events after"));
	is_int(
	    json_integer_value(json_object_get(json_array_get(l, 1), "state")),
	    WS_PLANNING, say("state event carries its state"));
	is_int(
	    json_integer_value(json_object_get(json_array_get(l, 0), "state")),
	    WS_MAX, say("info event: no state"));
	json_array_clear(l);
	ok(store_event_list(s, 0, 0, 1, collect_events, l) == 0 &&
	        json_array_size(l) == 1,
	    say("events: all tasks, limit"));
	json_decref(l);
	store_close(s);
}

static void
test_transactions(void)
{
	struct store *s = open_as(STORE_RW);
	struct task *t = NULL;
	json_t *st = NULL;
	int64_t before, after, ev = 0, jo = 0;
	int good = 0;

	store_event_max(s, &before);
	ok(store_begin(s) == 0, say("begin"));
	store_event_add(s, 1, EV_INFO, NULL, "gone");
	store_task_set_text(s, 1, TC_REVIEW, "gone");
	store_rollback(s);
	store_event_max(s, &after);
	ok(after == before && store_task_get(s, 1, &t) == 0 && t != NULL &&
	        t->text[TC_REVIEW] == NULL,
	    say("rollback undoes every write"));
	task_free(t);
	ok(store_begin(s) == 0 &&
	        store_task_set_text(s, 1, TC_REVIEW, "kept") == 0 &&
	        store_task_set_state(s, 9999, WS_PLANNING) == -1 &&
	        store_commit(s) == 0,
	    say("a failed write inside a transaction, then commit"));
	ok(store_task_get(s, 1, &t) == 0 && t != NULL &&
	        t->text[TC_REVIEW] != NULL &&
	        strcmp(t->text[TC_REVIEW], "kept") == 0,
	    say("the rest committed"));
	task_free(t);
	/* A write that fails in SQL (its savepoint undoes it, on PostgreSQL
	 * released with the next write's) between writes that stay. */
	store_event_max(s, &before);
	ok(store_begin(s) == 0 &&
	        store_event_add(s, 1, EV_INFO, NULL, "before") == 0 &&
	        store_journal_add(s, 1, 1, 1, "planning", "tool", "z", 0, 0) ==
	            -1 &&
	        store_event_add(s, 1, EV_INFO, NULL, "after") == 0 &&
	        store_event_add(s, 1, EV_INFO, NULL, "after 2") == 0 &&
	        store_commit(s) == 0,
	    say("a write failing in SQL inside a transaction, then commit"));
	st = json_array();
	ok(store_event_list(s, 1, before, 0, collect_events, st) == 0 &&
	        json_array_size(st) == 3 &&
	        strcmp(json_string_value(
	                   json_object_get(json_array_get(st, 2), "text")),
	            "after 2") == 0,
	    say("the writes around it committed"));
	json_decref(st);
	st = NULL;
	ok(store_begin(s) == 0 && store_begin(s) == -1, say("no nested begin"));
	store_rollback(s);
	ok(store_commit(s) == -1, say("commit without begin"));

	ok(store_stats_json(s, &st) == 0 && st != NULL, say("stats"));
	is_int(json_integer_value(json_object_get(st, "tasks")), 3,
	    say("stats tasks"));
	ok(json_integer_value(json_object_get(st, "db_bytes")) > 0,
	    say("stats db_bytes"));
	is_str(json_string_value(json_object_get(st, "backend")),
	    backend_pg ? "postgresql" : "sqlite", say("stats backend"));
	json_decref(st);
	ok(store_integrity(s, &good) == 0 && good, say("integrity"));
	ok(store_gc_candidates(s, 0, collect_ids, st = json_array()) == 0 &&
	        json_array_size(st) == 1,
	    say("gc candidates: the finished task"));
	json_decref(st);
	ok(store_gc_task(s, 1, &ev, &jo) == 0 && ev > 0 && jo == 2,
	    say("gc task counts"));
	ok(store_vacuum(s) == 0, say("vacuum"));
	store_close(s);
}

static void
test_rdonly(void)
{
	struct store *s = open_as(STORE_RDONLY);
	struct task *t = NULL;

	if (!backend_pg)
		ok(store_wait_events(s, 1000) == -1,
		    say("wait for events: SQLite cannot, at once"));

	ok(store_task_get(s, 2, &t) == 0 && t != NULL, say("read-only reads"));
	task_free(t);
	ok(store_task_set_text(s, 2, TC_PLAN, "x") == -1,
	    say("read-only refuses writes"));
	store_close(s);
}

/* What schema version 5 and the metrics, console and logstory added. */
static void
test_v5(void)
{
	struct store *s = open_as(STORE_RW);
	json_t *l = json_array(), *d, *row;
	int64_t counts[WS_MAX], ids[4], a, b, first = 0, last = 0;
	struct task *t;
	size_t n;

	/* Budgets: their own columns, and a paused task is not runnable. */
	a = add_task(s, "budget");
	ok(store_task_get(s, a, &t) == 0 && t != NULL &&
	        t->ival[TI_MAX_TOKENS] == 0 &&
	        t->ival[TI_MAX_COST_MICROS] == 0 &&
	        t->ival[TI_BUDGET_PAUSED] == 0,
	    say("budget columns read 0"));
	task_free(t);
	ok(store_task_set_int(s, a, TI_MAX_TOKENS, 5000) == 0 &&
	        store_task_set_int(s, a, TI_MAX_COST_MICROS, 2500000) == 0 &&
	        store_task_set_int(s, a, TI_BUDGET_PAUSED, 1) == 0 &&
	        store_task_set_status(s, a, TS_AWAITING_APPROVAL) == 0,
	    say("budget columns and the status set"));
	ok(store_task_get(s, a, &t) == 0 && t != NULL &&
	        t->ival[TI_MAX_TOKENS] == 5000 &&
	        t->ival[TI_MAX_COST_MICROS] == 2500000 &&
	        t->ival[TI_BUDGET_PAUSED] == 1 && t->state == WS_PENDING,
	    say("budgets read back; the state stays"));
	task_free(t);
	ok(store_task_set_status(s, 9999, TS_PENDING) == -1 &&
	        strstr(store_error(s), "no task 9999") != NULL,
	    say("set status on a missing task"));
	ok(store_task_set_status(s, a, TS_MAX) == -1,
	    say("set status: a bad status"));
	ok(store_task_runnable(s, 0, ids, 4, &n) == 0 && n == 2 && ids[1] != a,
	    say("a task paused at a budget is not runnable"));
	ok(store_task_set_int(s, a, TI_BUDGET_PAUSED, 0) == 0 &&
	        store_task_runnable(s, 0, ids, 4, &n) == 0 && n == 3 &&
	        ids[2] == a,
	    say("unpaused: runnable again"));

	/* Counts by workflow state, every state present. */
	ok(store_task_counts(s, counts) == 0, say("task counts"));
	is_int(counts[WS_PENDING], 2, say("counts: pending"));
	is_int(counts[WS_PLANNING], 1, say("counts: planning"));
	is_int(counts[WS_COMPLETED], 1, say("counts: completed"));
	is_int(counts[WS_FAILED], 0, say("counts: none failed"));

	/* list_desc, past a PostgreSQL page (64) of rows, one commit. */
	ok(store_begin(s) == 0, say("begin many"));
	for (int i = 0; i < 70; i++) {
		b = add_task(s, "many");
		if (i == 0)
			first = b;
		last = b;
	}
	ok(store_commit(s) == 0 && last == first + 69, say("70 tasks"));
	ok(store_task_list_desc(s, -1, 0, collect_ids, l) == 0 &&
	        json_array_size(l) == 74,
	    say("list_desc: every task"));
	ok(json_integer_value(json_array_get(l, 0)) == last &&
	        json_integer_value(json_array_get(l, 73)) == 1,
	    say("list_desc: newest first"));
	{
		int desc = 1;

		for (size_t i = 1; i < json_array_size(l); i++)
			if (json_integer_value(json_array_get(l, i)) >=
			    json_integer_value(json_array_get(l, i - 1)))
				desc = 0;
		ok(desc, say("list_desc: in order, no repeats"));
	}
	json_array_clear(l);
	ok(store_task_list_desc(s, -1, first, collect_ids, l) == 0 &&
	        json_array_size(l) == 4 &&
	        json_integer_value(json_array_get(l, 0)) == a,
	    say("list_desc: below before"));
	json_array_clear(l);
	ok(store_task_list_desc(s, -1, 0, collect_three, l) == 0 &&
	        json_array_size(l) == 3 &&
	        json_integer_value(json_array_get(l, 2)) == last - 2,
	    say("list_desc: the callback stops it"));
	json_array_clear(l);
	ok(store_task_list_desc(s, TS_AWAITING_APPROVAL, 0, collect_ids, l) ==
	            0 &&
	        json_array_size(l) == 1 &&
	        json_integer_value(json_array_get(l, 0)) == a,
	    say("list_desc: by status"));
	json_array_clear(l);
	ok(store_task_list_desc(s, TS_MAX, 0, collect_ids, l) == -1,
	    say("list_desc: a bad status"));

	/* Model turns, summed by day, model and repository. */
	ok(store_task_set_repo(s, 2, NULL, NULL) == 0 &&
	        store_turn_add(s, a, "planning", "m1", 100, 10, 1, 500) == 0 &&
	        store_turn_add(s, a, "implementing", "m1", 200, 20, 2, 700) ==
	            0 &&
	        store_turn_add(s, a, "implementing", "m2", 1, 2, 3, 4) == 0 &&
	        store_turn_add(s, 2, "planning", "m1", 1000, 100, 0, 1) == 0,
	    say("turns added"));
	ok(store_turn_add(s, a, NULL, "m", 1, 1, 0, 1) == -1 &&
	        store_turn_add(s, a, "planning", NULL, 1, 1, 0, 1) == -1,
	    say("a turn needs a stage and a model"));
	json_array_clear(l);
	ok(store_turn_sums(s, a, turn_sum_cb, l) == 0 &&
	        json_array_size(l) == 2,
	    say("one task's turns: two models"));
	row = json_array_get(l, 0);
	ok(row != NULL &&
	        strcmp(json_string_value(json_object_get(row, "model")),
	            "m1") == 0 &&
	        json_integer_value(json_object_get(row, "in")) == 300 &&
	        json_integer_value(json_object_get(row, "out")) == 30 &&
	        json_integer_value(json_object_get(row, "cached")) == 3 &&
	        json_integer_value(json_object_get(row, "ms")) == 1200 &&
	        json_integer_value(json_object_get(row, "turns")) == 2 &&
	        strcmp(json_string_value(json_object_get(row, "repo")), "/r") ==
	            0 &&
	        strlen(json_string_value(json_object_get(row, "day"))) == 10,
	    say("turn sums: m1 of the task"));
	json_array_clear(l);
	ok(store_turn_sums(s, 0, turn_sum_cb, l) == 0 &&
	        json_array_size(l) == 3,
	    say("every task's turns: by model and repository"));
	/* A task without a repository comes first, as SQLite orders NULL. */
	row = json_array_get(l, 0);
	ok(row != NULL && json_is_null(json_object_get(row, "repo")) &&
	        json_integer_value(json_object_get(row, "in")) == 1000,
	    say("turn sums: no repository first"));
	row = json_array_get(l, 2);
	ok(row != NULL &&
	        strcmp(json_string_value(json_object_get(row, "model")),
	            "m2") == 0,
	    say("turn sums: then by model"));

	/* Events with data, and the new kinds. */
	d = json_pack("{s:s,s:i}", "outcome", "ok", "exit", 0);
	ok(store_event_add_data(s, a, EV_RESULT, "implementing", "exit 0", d) ==
	            0 &&
	        store_event_add_data(
	            s, a, EV_CHECKPOINT, NULL, "checkpoint", NULL) == 0,
	    say("events with data"));
	ok(store_event_add_data(s, a, EV_STATE, NULL, "x", d) == -1,
	    say("a state change is not written with data"));
	json_decref(d);
	json_array_clear(l);
	ok(store_event_list(s, a, 0, 0, collect_event_data, l) == 0 &&
	        json_array_size(l) == 3,
	    say("the task's events"));
	is_str(json_string_value(json_object_get(json_array_get(l, 1), "kind")),
	    "result", say("kind result"));
	is_str(json_string_value(json_object_get(json_array_get(l, 1), "data")),
	    "{\"exit\":0,\"outcome\":\"ok\"}", say("data, keys sorted"));
	is_str(json_string_value(json_object_get(json_array_get(l, 2), "kind")),
	    "checkpoint", say("kind checkpoint"));
	ok(json_is_null(json_object_get(json_array_get(l, 2), "data")) &&
	        json_is_null(json_object_get(json_array_get(l, 0), "data")),
	    say("no data: NULL"));

	/* The commit hook: once per commit, with its duration. */
	commits = durable_commits = 0;
	commit_secs = -1;
	store_set_commit_hook(s, commit_hook, NULL);
	ok(store_task_set_text(s, a, TC_REVIEW, "r") == 0 && commits == 1 &&
	        commit_secs >= 0 && commit_secs < 60,
	    say("commit hook after a write"));
	ok(store_begin(s) == 0 &&
	        store_task_set_text(s, a, TC_REVIEW, "r2") == 0 &&
	        store_event_add(s, a, EV_INFO, NULL, "in tx") == 0 &&
	        commits == 1 && store_commit(s) == 0 && commits == 2,
	    say("commit hook: once for a transaction, at its commit"));
	ok(store_begin(s) == 0 &&
	        store_task_set_text(s, a, TC_REVIEW, "r3") == 0,
	    say("begin, write"));
	store_rollback(s);
	ok(store_task_set_state(s, 9999, WS_PLANNING) == -1 && commits == 2,
	    say("commit hook: not for a rollback or a failed write"));
	is_int(durable_commits, 2, say("those commits were durable"));
	ok(store_event_add(s, a, EV_INFO, NULL, "lone") == 0 && commits == 3 &&
	        durable_commits == 2,
	    say("a lone log line's commit is lazy"));
	/* Lazy only where losing it means this process died too. */
	ok(store_begin_lazy(s) == 0 &&
	        store_task_set_text(s, a, TC_REVIEW, "r5") == 0 &&
	        store_commit(s) == 0 && commits == 4 &&
	        durable_commits == (backend_pg ? 3 : 2),
	    say(backend_pg ? "store_begin_lazy: durable on PostgreSQL"
	                   : "store_begin_lazy: a lazy commit on SQLite"));
	ok(store_begin(s) == 0 &&
	        store_task_set_text(s, a, TC_REVIEW, "r6") == 0 &&
	        store_commit(s) == 0 && durable_commits == (backend_pg ? 4 : 3),
	    say("and store_begin's after it durable again"));
	/* Group commit: one sync for the lazy commits since the last durable
	 * write (which synced them). */
	is_int(store_flush_pending(s), 0,
	    say("a durable write leaves no flush waiting"));
	ok(store_begin_lazy(s) == 0 &&
	        store_task_set_text(s, a, TC_REVIEW, "r7") == 0 &&
	        store_commit(s) == 0 && commits == 6,
	    say("another lazy commit"));
	is_int(store_flush_pending(s), !backend_pg,
	    say(backend_pg ? "no flush waits on PostgreSQL"
	                   : "the lazy commit waits for a flush"));
	ok(store_flush(s) == 0 && !store_flush_pending(s) &&
	        commits == (backend_pg ? 6 : 7) &&
	        durable_commits == (backend_pg ? 5 : 4),
	    say(backend_pg ? "store_flush: nothing to do on PostgreSQL"
	                   : "store_flush: one sync, a durable step"));
	ok(store_flush(s) == 0 && commits == (backend_pg ? 6 : 7),
	    say("store_flush again: nothing waits, nothing done"));
	store_set_commit_hook(s, NULL, NULL);
	ok(store_task_set_text(s, a, TC_REVIEW, "r4") == 0 &&
	        commits == (backend_pg ? 6 : 7),
	    say("commit hook removed"));
	json_decref(l);
	store_close(s);
}

static void test_nodes_any(void);

static void
test_all(void)
{
	test_tasks();
	test_lists();
	test_journal_events();
	test_transactions();
	test_rdonly();
	test_v5();
	test_nodes_any();
}

static int64_t
raw_int64(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	int64_t v;

	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		fatalx("%s: %s", sql, PQresultErrorMessage(r));
	v = PQgetisnull(r, 0, 0) ? -1 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return v;
}

static int
count_events(struct store *s, int64_t task)
{
	json_t *l = json_array();
	int n;

	store_event_list(s, task, 0, 0, collect_events, l);
	n = (int)json_array_size(l);
	json_decref(l);
	return n;
}

/* What every backend says of nodes: SQLite has none to join. */
static void
test_nodes_any(void)
{
	struct store *s;
	json_t *nodes = NULL;
	char *cause = NULL;

	if (backend_pg)
		return;
	s = open_as(STORE_RW);
	ok(store_node_join(s, "n1", 2, 3, NULL, &cause) == -1 &&
	        cause != NULL && strstr(cause, "single-service") != NULL,
	    say("no node joins a SQLite store"));
	free(cause);
	ok(store_nodes_json(s, &nodes) == 0 && json_array_size(nodes) == 0,
	    say("no nodes"));
	json_decref(nodes);
	ok(store_lease_held(s, 1) == 0 && store_lease_lost(s) == 0,
	    say("no leases"));
	store_close(s);
}

/*
 * Claims, renewals and the fence: two nodes on one database, a third
 * connection as a person's command (no node).
 */
static void
test_pg_leases(void)
{
	struct store *s1, *s2, *s3, *p;
	int64_t a, b, c, d, ids[8], *lost;
	size_t n, nlost;
	char *cause = NULL, *sql;
	json_t *nodes = NULL;
	int more, before;
	PGconn *raw = raw_pg();

	raw_exec(raw, "DROP TABLE IF EXISTS turns, usage, journal, events,"
	              " checkpoints, tasks, meta, nodes CASCADE");
	/* Nodes starting at once on a new database: one makes the schema,
	 * the others wait and then work beside it, none fails. */
	{
		pid_t kids[4];
		int st, good = 0;

		fflush(stdout);
		for (int i = 0; i < 4; i++) {
			if ((kids[i] = fork()) == 0) {
				struct store *k;
				char name[8];
				int64_t got[2];
				size_t ng;

				snprintf(name, sizeof name, "k%d", i);
				if (store_open_url(&k, pg_url, STORE_RW, NULL,
				        &cause) == -1 ||
				    store_node_join(
				        k, name, 2, 3, NULL, &cause) != 0 ||
				    store_lease_claim(k, 0, 2, 0, got, &ng) ==
				        -1)
					_exit(1);
				store_node_leave(k);
				store_close(k);
				_exit(0);
			}
		}
		for (int i = 0; i < 4; i++)
			if (kids[i] > 0 &&
			    waitpid(kids[i], &st, 0) == kids[i] &&
			    WIFEXITED(st) && WEXITSTATUS(st) == 0)
				good++;
		is_int(good, 4,
		    "pg: four nodes starting at once on a new database");
		raw_exec(raw, "DELETE FROM nodes");
	}
	s1 = open_as(STORE_RW);
	s2 = open_as(STORE_RW);
	s3 = open_as(STORE_RW);
	p = open_as(STORE_RW);
	is_int(
	    store_node_join(s1, "n1", 2, 3, NULL, &cause), 0, "pg: n1 joins");
	free(cause);
	is_int(
	    store_node_join(s2, "n2", 2, 3, NULL, &cause), 0, "pg: n2 joins");
	free(cause);
	cause = NULL;
	ok(store_node_join(s3, "n1", 2, 3, NULL, &cause) == 1 &&
	        cause != NULL && strstr(cause, "runs as node 'n1'") != NULL,
	    "pg: a second live n1 is refused, saying why");
	free(cause);
	ok(strlen(store_node_incarnation(s1)) == 32 &&
	        strcmp(store_node_incarnation(s1),
	            store_node_incarnation(s2)) != 0,
	    "pg: each node its own incarnation");

	a = add_task(p, "a");
	b = add_task(p, "b");
	c = add_task(p, "c");
	ok(store_lease_claim(s1, 0, 2, 0, ids, &n) == 0 && n == 2 &&
	        ids[0] == a && ids[1] == b,
	    "pg: n1 claims its two slots' worth, oldest first");
	ok(store_lease_held(s1, a) && store_lease_held(s1, b) &&
	        store_lease_count(s1) == 2,
	    "pg: n1 holds them");
	ok(store_lease_claim(s2, 0, 2, 0, ids, &n) == 0 && n == 1 &&
	        ids[0] == c,
	    "pg: n2 gets only the one not leased");
	sql = xasprintf(
	    "SELECT lease_epoch FROM tasks WHERE id = %lld", (long long)a);
	is_int(raw_int64(raw, sql), 1, "pg: the claim bumped the epoch to 1");
	is_int(store_event_add(s1, a, EV_INFO, NULL, "n1 writes"), 0,
	    "pg: the holder writes");

	/* n1's lease on a runs out (as when it is paused): n2 takes it. */
	raw_exec(raw, "UPDATE tasks SET lease_expires_at ="
	              " '2000-01-01 00:00:00.000' WHERE id = 1");
	ok(store_lease_claim(s2, 0, 2, 0, ids, &n) == 0 && n == 1 &&
	        ids[0] == a,
	    "pg: an expired lease is taken by another node");
	is_int(raw_int64(raw, sql), 2, "pg: at epoch 2");
	ok(store_node_beat(s1, 1, &lost, &nlost) == 0 && nlost == 1 &&
	        lost[0] == a,
	    "pg: n1's heartbeat names the lost lease");
	free(lost);
	ok(store_node_beat(s1, 1, &lost, &nlost) == 0 && nlost == 0,
	    "pg: once");
	free(lost);
	before = count_events(p, a);
	ok(store_event_add(s1, a, EV_INFO, NULL, "stale") == -1 &&
	        store_lease_lost(s1) == a && !store_storage_error(s1),
	    "pg: the old holder's write is refused: lease lost, not storage");
	ok(strstr(store_error(s1), "lease (epoch 1) is lost") != NULL,
	    "pg: the error says so");
	ok(store_begin(s1) == 0 &&
	        store_task_set_text(s1, a, TC_PLAN, "stale plan") == -1,
	    "pg: in a transaction too");
	store_rollback(s1);
	ok(store_checkpoint_add(s1, a, "stale", NULL) == -1 &&
	        store_journal_add(
	            s1, a, 1, 1, "planning", "reply", "x", 0, 0) == -1 &&
	        store_task_set_state(s1, a, WS_FAILED) == -1,
	    "pg: no checkpoint, journal entry or state change either");
	is_int(count_events(p, a), before, "pg: nothing of n1's was written");
	ok(store_lease_held(s1, a) == 0 && store_lease_count(s1) == 1,
	    "pg: n1 no longer counts it");
	is_int(store_event_add(s2, a, EV_INFO, NULL, "n2 writes"), 0,
	    "pg: the new holder writes");
	raw_exec(raw, "UPDATE tasks SET lease_expires_at ="
	              " '2000-01-01 00:00:00.000' WHERE id = 2");
	ok(store_node_beat(s1, 1, &lost, &nlost) == 0 && nlost == 0 &&
	        store_lease_held(s1, b),
	    "pg: a lease expired but not taken is renewed by its holder");
	free(lost);
	free(sql);
	sql = xasprintf("SELECT (lease_expires_at > to_char(now() AT TIME ZONE"
	                " 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'))::int FROM tasks"
	                " WHERE id = %lld",
	    (long long)b);
	is_int(raw_int64(raw, sql), 1, "pg: its expiry is ahead again");
	free(sql);

	/* A person cancels c (no node): n2's next write is refused. */
	is_int(store_task_set_state(p, c, WS_CANCELLED), 0,
	    "pg: a person's cancel is written without a lease");
	ok(store_event_add(s2, c, EV_INFO, NULL, "after cancel") == -1 &&
	        store_lease_lost(s2) == c,
	    "pg: the node running a cancelled task writes no more for it");

	/* Released: free at once for any node. */
	is_int(store_lease_release(s1, b), 0, "pg: n1 releases b");
	ok(store_lease_claim(s2, 0, 1, 0, ids, &n) == 0 && n == 1 &&
	        ids[0] == b,
	    "pg: n2 claims it at once");

	/* A cap per repository, across nodes. */
	{
		struct task_new tn = {"q", "/q", "abc", NULL, 0, 0, 0};

		for (int i = 0; i < 3; i++)
			store_task_add(p, &tn, &d);
	}
	ok(store_lease_claim(s1, 0, 2, 1, ids, &n) == 0 && n == 1,
	    "pg: with ORCH_MAX_TASKS_PER_REPO=1, one task of /q");
	ok(store_lease_claim(s2, 0, 2, 1, ids, &n) == 0 && n == 0,
	    "pg: and none more on another node");
	ok(store_lease_claim(s2, 0, 2, 0, ids, &n) == 0 && n == 2,
	    "pg: without the cap, the rest");

	/* Notifications: a person's change reaches the nodes. */
	store_tasks_changed(s1, ids, nitems(ids), &n, &more);
	is_int(store_task_set_state(p, d, WS_CANCELLED), 0,
	    "pg: a person cancels a task");
	n = 0;
	for (int i = 0; i < 50 && n == 0; i++) {
		usleep(20 * 1000);
		store_tasks_changed(s1, ids, nitems(ids), &n, &more);
	}
	ok(n >= 1 && ids[0] == d, "pg: the nodes hear of it within a second");

	ok(store_nodes_json(p, &nodes) == 0 && json_array_size(nodes) == 2 &&
	        json_is_true(json_object_get(json_array_get(nodes, 0), "live")),
	    "pg: two live nodes");
	json_decref(nodes);
	{
		/* A service killed a moment ago, restarted on its state
		 * directory: its heartbeat looks fresh, but the restart knows
		 * that incarnation is gone. */
		struct store *k1 = open_as(STORE_RW), *k2 = open_as(STORE_RW);
		char *was;

		is_int(store_node_join(k1, "n8", 2, 3, NULL, &cause), 0,
		    "pg: n8 joins");
		free(cause);
		was = xstrdup(store_node_incarnation(k1));
		is_int(store_node_join(k2, "n8", 2, 3, was, &cause), 0,
		    "pg: its restart, knowing that incarnation dead, takes "
		    "the name at once");
		free(cause);
		ok(strcmp(store_node_incarnation(k2), was) != 0,
		    "pg: ... as a new incarnation");
		free(was);
		store_node_leave(k2);
		store_close(k2);
		store_close(k1);
	}

	/* Leaving lets go of everything at once; the name is free. */
	is_int(store_node_leave(s2), 0, "pg: n2 leaves");
	is_int(raw_int64(raw, "SELECT count(*) FROM tasks WHERE lease_owner"
	                      " IS NOT NULL AND lease_node = 'n2'"),
	    0, "pg: its leases are released");
	cause = NULL;
	is_int(store_node_join(s3, "n2", 2, 3, NULL, &cause), 0,
	    "pg: its name can be taken again");
	free(cause);
	store_close(s1);
	store_close(s2);
	store_close(s3);
	store_close(p);
	PQfinish(raw);
}

/* What only a network database has. */
static void
test_pg_only(void)
{
	struct store *s, *s2, *r;
	struct task *t = NULL;
	json_t *info = NULL;
	json_int_t outages0;
	char *cause = NULL;
	int taken = -1, taken2 = -1;
	PGconn *c;

	/* An empty database read-only: none, as a missing SQLite file. */
	c = raw_pg();
	raw_exec(c, "DROP TABLE IF EXISTS turns, usage, journal,"
	            " events, checkpoints, tasks, meta CASCADE");
	ok(store_open_url(&r, pg_url, STORE_RDONLY, NULL, &cause) == 0 &&
	        r == NULL,
	    "pg: read-only open of an empty database: none");
	/* db-copy's store_copy: the SQLite suite's database into it. */
	{
		struct store *lite;
		json_t *rep = NULL;
		char *path = xasprintf("%s/any.db", dir);

		if (store_open(&lite, path, STORE_RDONLY, NULL, &cause) == -1)
			fatalx("%s", cause);
		s = open_as(STORE_RW);
		ok(store_copy(lite, s, &rep, &cause) == 0 && rep != NULL,
		    "pg: store_copy from SQLite");
		is_int(json_integer_value(json_object_get(rep, "tasks")), 74,
		    "pg: store_copy: every task");
		is_int(json_integer_value(json_object_get(rep, "turns")), 4,
		    "pg: store_copy: every turn");
		{
			struct task *t4 = NULL;
			json_t *l = json_array();

			ok(store_task_get(s, 4, &t4) == 0 && t4 != NULL &&
			        t4->ival[TI_MAX_TOKENS] == 5000 &&
			        t4->ival[TI_MAX_COST_MICROS] == 2500000,
			    "pg: store_copy: the budget columns");
			task_free(t4);
			ok(store_event_list(
			       s, 4, 0, 0, collect_event_data, l) == 0 &&
			        json_array_size(l) >= 2 &&
			        json_is_string(json_object_get(
			            json_array_get(l, 1), "data")),
			    "pg: store_copy: events keep their data");
			json_array_clear(l);
			ok(store_turn_sums(s, 0, turn_sum_cb, l) == 0 &&
			        json_array_size(l) == 3,
			    "pg: store_copy: turns sum the same");
			json_decref(l);
			ok(store_turn_add(s, 4, "planning", "m3", 1, 1, 0, 1) ==
			        0,
			    "pg: a turn after the copy: the sequence moved on");
		}
		json_decref(rep);
		ok(store_copy(lite, s, &rep, &cause) == -1 &&
		        strstr(cause, "already holds") != NULL,
		    "pg: store_copy refuses a database with tasks");
		free(cause);
		ok(store_copy(s, lite, &rep, &cause) == -1 &&
		        strstr(cause, "not supported") != NULL,
		    "pg: store_copy the other way: not supported");
		free(cause);
		store_close(s);
		store_close(lite);
		free(path);
		raw_exec(c, "DROP TABLE IF EXISTS turns, usage, journal,"
		            " events, checkpoints, tasks, meta CASCADE");
	}
	/* A version 4 database (what the v5 migration adds taken away)
	 * goes to 5 at a read-write open, keeping its rows. */
	{
		json_t *l = json_array();
		int64_t id;

		s = open_as(STORE_RW);
		id = add_task(s, "made at 4");
		store_event_add(s, id, EV_INFO, NULL, "an old event");
		store_close(s);
		raw_exec(c, "DROP TABLE turns;"
		            " ALTER TABLE events DROP COLUMN data;"
		            " ALTER TABLE tasks DROP COLUMN max_tokens,"
		            " DROP COLUMN max_cost_micros,"
		            " DROP COLUMN budget_paused;"
		            " UPDATE meta SET value = '4'"
		            " WHERE key = 'schema_version'");
		ok(store_open_url(&r, pg_url, STORE_RDONLY, NULL, &cause) ==
		            -1 &&
		        strstr(cause, "older than 6") != NULL,
		    "pg: read-only open of a version 4 database: refused");
		free(cause);
		s = open_as(STORE_RW);
		is_int(store_schema_version(s), 6, "pg: migrated 4 to 6");
		ok(store_task_get(s, id, &t) == 0 && t != NULL &&
		        strcmp(t->request, "made at 4") == 0 &&
		        t->ival[TI_BUDGET_PAUSED] == 0 &&
		        t->ival[TI_MAX_TOKENS] == 0,
		    "pg: migration keeps the task; budgets 0");
		task_free(t);
		t = NULL;
		ok(store_event_list(s, id, 0, 0, collect_event_data, l) == 0 &&
		        json_array_size(l) == 2 &&
		        json_is_null(
		            json_object_get(json_array_get(l, 1), "data")),
		    "pg: migration keeps the events; data NULL");
		ok(store_turn_add(s, id, "planning", "m", 1, 2, 0, 3) == 0 &&
		        store_task_set_int(s, id, TI_BUDGET_PAUSED, 1) == 0,
		    "pg: the new table and columns are written");
		ok(store_integrity(s, &taken) == 0 && taken == 1,
		    "pg: integrity after the migration");
		json_decref(l);
		store_close(s);
		raw_exec(c, "DROP TABLE IF EXISTS turns, usage, journal,"
		            " events, checkpoints, tasks, meta CASCADE");
	}
	s = open_as(STORE_RW);
	add_task(s, "one");

	ok(store_lock(s, &taken) == 0 && taken == 1, "pg: lock taken");
	s2 = open_as(STORE_RW);
	ok(store_lock(s2, &taken2) == 0 && taken2 == 0,
	    "pg: a second writer does not get the lock");
	store_close(s2);

	ok(store_info_json(s, &info) == 0 &&
	        json_string_value(json_object_get(info, "server_version")) !=
	            NULL &&
	        json_string_value(
	            json_object_get(info, "synchronous_commit")) != NULL,
	    "pg: info has server_version and synchronous_commit");
	json_decref(info);

	/* LISTEN/NOTIFY: a reader is woken when a writer commits events. */
	r = open_as(STORE_RDONLY);
	ok(store_wait_events(r, 10) == 0, "pg: wait: nothing yet");
	{
		uint64_t t0 = now_ms();

		store_event_add(s, 1, EV_INFO, NULL, "wake up");
		ok(store_wait_events(r, 5000) == 1 && now_ms() - t0 < 4000,
		    "pg: wait: woken by the commit's NOTIFY");
	}
	ok(store_begin(s) == 0 &&
	        store_event_add(s, 1, EV_INFO, NULL, "x") == 0,
	    "pg: an event in an open transaction");
	ok(store_wait_events(r, 200) == 0, "pg: wait: not before the commit");
	store_rollback(s);
	ok(store_wait_events(r, 200) == 0, "pg: wait: not after a rollback");
	store_close(r);

	/* Killed between two transactions: the next one reconnects.  The
	 * database counts every outage it saw (meta): count from here. */
	ok(store_info_json(s, &info) == 0, "pg: the outages so far");
	outages0 = json_integer_value(json_object_get(info, "outages"));
	json_decref(info);
	pg_kill_store();
	ok(store_task_set_text(s, 1, TC_PLAN, "after kill") == 0,
	    "pg: a write after the connection was killed reconnects");
	ok(store_lock(s, &taken) == 0 && taken == 1,
	    "pg: the lock is taken again on reconnect");
	s2 = open_as(STORE_RW);
	ok(store_lock(s2, &taken2) == 0 && taken2 == 0,
	    "pg: and still keeps a second writer out");
	store_close(s2);

	/* Killed inside a transaction: a storage error, nothing applied. */
	ok(store_begin(s) == 0 &&
	        store_task_set_text(s, 1, TC_PLAN, "lost") == 0,
	    "pg: begin, write");
	pg_kill_store();
	ok(store_commit(s) == -1 && store_storage_error(s),
	    "pg: commit on a killed connection: a storage error");
	ok(strstr(store_error(s), "did not commit") != NULL,
	    "pg: the commit token says it did not commit");
	ok(store_probe(s) == 0, "pg: probe reconnects");
	ok(store_task_get(s, 1, &t) == 0 && t != NULL &&
	        strcmp(t->text[TC_PLAN], "after kill") == 0,
	    "pg: the lost transaction was not applied");
	task_free(t);
	ok(store_info_json(s, &info) == 0 &&
	        json_integer_value(json_object_get(info, "outages")) ==
	            outages0 + 2,
	    "pg: two outages counted");
	json_decref(info);
	store_close(s);

	/* An unreachable server: a clear error naming the masked url. */
	ok(store_open_url(&r, "postgresql://orch:sekrit@/x?host=/nonexistent",
	       STORE_RW, NULL, &cause) == -1 &&
	        strstr(cause, "cannot connect to") != NULL &&
	        strstr(cause, "sekrit") == NULL &&
	        strstr(cause, "orch:****@") != NULL,
	    "pg: unreachable: clear error, password masked");
	free(cause);
	PQfinish(c);
}

static void
test_mask(void)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"postgresql://u:pw@h/db", "postgresql://u:****@h/db"},
	    {"postgres://u@h/db?sslmode=require",
	        "postgres://u@h/db?sslmode=require"},
	    {"postgresql:///db?host=/tmp&password=pw&user=u",
	        "postgresql:///db?host=/tmp&password=****&user=u"},
	    {"postgresql://u:p%40w@h:5432/db?password=x",
	        "postgresql://u:****@h:5432/db?password=****"},
	    {"host=h dbname=d password=pw sslmode=verify-full",
	        "password=**** dbname=d host=h sslmode=verify-full"},
	    {"host=h password='a b c' options='-c x=y'",
	        "password=**** host=h options='-c x=y'"},
	    {"host=h 'broken", "(a database URL libpq cannot parse)"},
	};
	char *m;

	for (size_t i = 0; i < nitems(cases); i++) {
		m = store_url_mask(cases[i].in);
		is_str(m, cases[i].want, cases[i].in);
		free(m);
	}
	ok(store_url_mask(NULL) == NULL, "mask NULL");
}

int
main(void)
{
	char tmpl[] = "/tmp/test-store-any.XXXXXX";
	char *cmd;

	if ((dir = mkdtemp(tmpl)) == NULL)
		fatal("mkdtemp");
	test_mask();

	snprintf(label, sizeof label, "sqlite");
	test_all();

	pg_url = getenv("ORCH_TEST_PG_URL");
	if (pg_url == NULL || *pg_url == '\0')
		printf("ok %d # SKIP PostgreSQL: ORCH_TEST_PG_URL is not set\n",
		    ++tap_n);
	else {
		PGconn *c = raw_pg();

		raw_exec(c, "DROP TABLE IF EXISTS turns, usage, journal,"
		            " events, checkpoints, tasks, meta, nodes CASCADE");
		PQfinish(c);
		backend_pg = 1;
		snprintf(label, sizeof label, "postgresql");
		test_all();
		test_pg_only();
		test_pg_leases();
	}

	cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", dir);
	free(cmd);
	return tap_done();
}
