/*
 * Unit tests for supervisor/store.c, in a fresh temporary directory.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "common.h"
#include "store.h"
#include "tap.h"

static char *dir;

/* The connection SQLite opened last, caught with an auto-extension. */
static sqlite3 *last_db;

static int
catch_db(sqlite3 *db, char **err, const sqlite3_api_routines *api)
{
	(void)err;
	(void)api;
	last_db = db;
	return SQLITE_OK;
}

static char *
tpath(const char *name)
{
	return xasprintf("%s/%s", dir, name);
}

static int
exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f;
	char *buf = NULL;
	size_t cap = 0, n;

	*len = 0;
	if ((f = fopen(path, "rb")) == NULL)
		return NULL;
	for (;;) {
		if (*len == cap) {
			cap = cap ? cap * 2 : 65536;
			buf = xrealloc(buf, cap);
		}
		n = fread(buf + *len, 1, cap - *len, f);
		if (n == 0)
			break;
		*len += n;
	}
	fclose(f);
	return buf;
}

static void
spew(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");

	if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
		fatal("write %s", path);
}

static sqlite3 *
raw_open(const char *path)
{
	sqlite3 *db;

	if (sqlite3_open(path, &db) != SQLITE_OK)
		fatalx("open %s: %s", path, sqlite3_errmsg(db));
	return db;
}

static void
raw_exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		fatalx("exec %s: %s", sql, err);
}

static int64_t
raw_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v = -12345;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fatalx("prepare %s: %s", sql, sqlite3_errmsg(db));
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* The first column of the first row, or "(null)"; caller frees. */
static char *
raw_text(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	char *v = NULL;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fatalx("prepare %s: %s", sql, sqlite3_errmsg(db));
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		v = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return v != NULL ? v : xstrdup("(null)");
}

static int
is_timestamp(const char *s)
{
	/* YYYY-MM-DD HH:MM:SS.SSS */
	static const char pat[] = "dddd-dd-dd dd:dd:dd.ddd";

	if (s == NULL || strlen(s) != strlen(pat))
		return 0;
	for (size_t i = 0; pat[i] != '\0'; i++) {
		if (pat[i] == 'd' ? s[i] < '0' || s[i] > '9' : s[i] != pat[i])
			return 0;
	}
	return 1;
}

static struct store *
open_rw(const char *path)
{
	struct store *s;
	char *cause;

	if (store_open(&s, path, STORE_RW, NULL, &cause) == -1)
		fatalx("store_open %s: %s", path, cause);
	return s;
}

static int64_t
add_task(struct store *s, const char *request)
{
	struct task_new tn = {request, "/repo", "abc123", NULL, 0, 0, 0};
	int64_t id = 0;

	if (store_task_add(s, &tn, &id) == -1)
		fatalx("task_add: %s", store_error(s));
	return id;
}

static int64_t
count(struct store *s, const char *key)
{
	json_t *stats;
	int64_t v;

	if (store_stats_json(s, &stats) == -1)
		return -1;
	v = json_integer_value(json_object_get(stats, key));
	json_decref(stats);
	return v;
}

static void
test_names(void)
{
	enum wstate ws;
	enum tstatus ts;
	int good = 1;

	for (int i = 0; i < WS_MAX; i++) {
		if (wstate_parse(wstate_name(i), &ws) != 0 || (int)ws != i)
			good = 0;
	}
	ok(good, "wstate_name/wstate_parse round trip");
	good = 1;
	for (int i = 0; i < TS_MAX; i++) {
		if (tstatus_parse(tstatus_name(i), &ts) != 0 || (int)ts != i)
			good = 0;
	}
	ok(good, "tstatus_name/tstatus_parse round trip");
	ok(wstate_parse("bogus", &ws) == -1, "wstate_parse refuses junk");
	ok(tstatus_parse("bogus", &ts) == -1, "tstatus_parse refuses junk");
	is_str(wstate_name(WS_PLAN_AWAITING_APPROVAL), "plan_awaiting_approval",
	    "wstate name plan_awaiting_approval");
	is_str(wstate_name(WS_IMPLEMENTATION_AWAITING_APPROVAL),
	    "implementation_awaiting_approval",
	    "wstate name implementation_awaiting_approval");
	is_str(tstatus_name(TS_IN_PROGRESS), "in_progress", "tstatus name");

	is_int(wstate_status(WS_PENDING), TS_PENDING, "pending status");
	is_int(wstate_status(WS_PLANNING), TS_IN_PROGRESS, "planning status");
	is_int(wstate_status(WS_PLAN_AWAITING_APPROVAL), TS_AWAITING_APPROVAL,
	    "plan_awaiting_approval status");
	is_int(wstate_status(WS_PLAN_APPROVED), TS_IN_PROGRESS,
	    "plan_approved status");
	is_int(wstate_status(WS_IMPLEMENTING), TS_IN_PROGRESS,
	    "implementing status");
	is_int(wstate_status(WS_IMPLEMENTATION_AWAITING_APPROVAL),
	    TS_AWAITING_APPROVAL, "implementation_awaiting_approval status");
	is_int(wstate_status(WS_REVIEWING), TS_IN_PROGRESS, "reviewing status");
	is_int(wstate_status(WS_VERIFYING), TS_IN_PROGRESS, "verifying status");
	is_int(wstate_status(WS_COMPLETED), TS_COMPLETED, "completed status");
	is_int(wstate_status(WS_FAILED), TS_FAILED, "failed status");
	is_int(wstate_status(WS_CANCELLED), TS_CANCELLED, "cancelled status");

	is_str(wstate_stage(WS_PENDING), "planning", "pending stage");
	is_str(wstate_stage(WS_PLANNING), "planning", "planning stage");
	is_str(wstate_stage(WS_PLAN_APPROVED), "implementing",
	    "plan_approved stage");
	is_str(wstate_stage(WS_IMPLEMENTING), "implementing",
	    "implementing stage");
	is_str(wstate_stage(WS_REVIEWING), "reviewing", "reviewing stage");
	is_str(wstate_stage(WS_VERIFYING), "verifying", "verifying stage");
	ok(wstate_stage(WS_PLAN_AWAITING_APPROVAL) == NULL &&
	        wstate_stage(WS_IMPLEMENTATION_AWAITING_APPROVAL) == NULL &&
	        wstate_stage(WS_COMPLETED) == NULL &&
	        wstate_stage(WS_FAILED) == NULL &&
	        wstate_stage(WS_CANCELLED) == NULL,
	    "no stage in waiting and final states");

	is_str(event_kind_name(EV_STATE), "state", "event kind state");
	is_str(event_kind_name(EV_INFO), "info", "event kind info");
	is_str(event_kind_name(EV_ERROR), "error", "event kind error");
	is_str(event_kind_name(EV_MODEL), "model", "event kind model");
	is_str(event_kind_name(EV_TOOL), "tool", "event kind tool");
}

static void
test_pragmas(void)
{
	struct store_opts opts = {321, 4321};
	struct store *s;
	sqlite3 *db, *other;
	char *path = tpath("pragmas.db"), *cause, *mode;

	last_db = NULL;
	ok(store_open(&s, path, STORE_RW, &opts, &cause) == 0, "open new db");
	db = last_db;
	ok(db != NULL, "caught the store's connection");
	if (db != NULL) {
		mode = raw_text(db, "PRAGMA journal_mode");
		is_str(mode, "wal", "journal_mode wal");
		free(mode);
		is_int(
		    raw_int(db, "PRAGMA synchronous"), 2, "synchronous FULL");
		is_int(
		    raw_int(db, "PRAGMA foreign_keys"), 1, "foreign_keys on");
		is_int(raw_int(db, "PRAGMA busy_timeout"), 4321,
		    "busy_timeout from opts");
		is_int(raw_int(db, "PRAGMA wal_autocheckpoint"), 321,
		    "wal_autocheckpoint from opts");
	}
	is_int(store_schema_version(s), 6, "schema version 6");
	other = raw_open(path);
	mode = raw_text(other, "PRAGMA journal_mode");
	is_str(mode, "wal", "second connection sees WAL");
	free(mode);
	is_int(raw_int(other, "PRAGMA user_version"), 6, "user_version 6");
	is_int(raw_int(other, "SELECT COUNT(*) FROM sqlite_master WHERE"
	                      " type = 'index' AND name IN ('tasks_status',"
	                      " 'tasks_workflow_state', 'checkpoints_task_id',"
	                      " 'events_task_id')"),
	    4, "the four indexes exist");
	sqlite3_close(other);
	store_close(s);

	last_db = NULL;
	ok(store_open(&s, path, STORE_RW, NULL, &cause) == 0, "reopen");
	if (last_db != NULL) {
		is_int(raw_int(last_db, "PRAGMA busy_timeout"), 5000,
		    "default busy_timeout");
		is_int(raw_int(last_db, "PRAGMA wal_autocheckpoint"), 1000,
		    "default wal_autocheckpoint");
	}
	store_close(s);
	free(path);
}

/* A lone event commits without fsync; every other write is FULL again. */
static void
test_lazy_events(void)
{
	struct store *s;
	char *path = tpath("lazy.db"), *cause;
	int64_t id;

	last_db = NULL;
	if (store_open(&s, path, STORE_RW, NULL, &cause) == -1)
		fatalx("%s", cause);
	id = add_task(s, "lazy");
	if (last_db == NULL)
		fatalx("did not catch the store's connection");
	ok(store_event_add(s, id, EV_INFO, NULL, "a log line") == 0,
	    "lazy: event added");
	is_int(raw_int(last_db, "PRAGMA synchronous"), 1,
	    "lazy: a lone event commits with synchronous NORMAL");
	ok(store_checkpoint_add(s, id, "cp", "{}") == 0, "lazy: checkpoint");
	is_int(raw_int(last_db, "PRAGMA synchronous"), 2,
	    "lazy: the checkpoint after it is FULL again");
	ok(store_event_add(s, id, EV_INFO, NULL, "again") == 0 &&
	        store_begin(s) == 0,
	    "lazy: event, then a transaction");
	is_int(raw_int(last_db, "PRAGMA synchronous"), 2,
	    "lazy: store_begin is FULL");
	ok(store_event_add(s, id, EV_INFO, NULL, "inside") == 0,
	    "lazy: event inside the transaction");
	is_int(raw_int(last_db, "PRAGMA synchronous"), 2,
	    "lazy: an event inside a transaction keeps it FULL");
	ok(store_commit(s) == 0, "lazy: commit");
	is_int(raw_int(last_db, "SELECT count(*) FROM events WHERE text IN"
	                        " ('a log line', 'again', 'inside')"),
	    3, "lazy: all three events are there");
	store_close(s);
	free(path);
}

/*
 * A VFS over the default one that counts the syncs of write-ahead logs:
 * a WAL file keeps the real methods but for xSync, which counts first.
 */
static sqlite3_vfs count_vfs, *real_vfs;
static sqlite3_io_methods wal_methods;
static int (*real_wal_sync)(sqlite3_file *, int);
static int wal_syncs, wal_sync_fails;

static int
count_wal_sync(sqlite3_file *f, int flags)
{
	wal_syncs++;
	if (wal_sync_fails)
		return SQLITE_IOERR_FSYNC;
	return real_wal_sync(f, flags);
}

static int
count_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags,
    int *outflags)
{
	int rc;

	(void)vfs;
	rc = real_vfs->xOpen(real_vfs, name, f, flags, outflags);
	if (rc != SQLITE_OK || !(flags & SQLITE_OPEN_WAL) ||
	    f->pMethods == NULL)
		return rc;
	if (real_wal_sync == NULL) {
		wal_methods = *f->pMethods;
		real_wal_sync = wal_methods.xSync;
		wal_methods.xSync = count_wal_sync;
	}
	if (f->pMethods->xSync == real_wal_sync)
		f->pMethods = &wal_methods;
	return rc;
}

/*
 * Group commit: lazy commits leave the log unsynced until store_flush,
 * which syncs the log itself, once for all of them, and only when needed.
 */
static void
test_flush(void)
{
	struct store *s, *reader;
	char *path = tpath("flush.db"), *cause;
	int64_t id;
	int before;

	real_vfs = sqlite3_vfs_find(NULL);
	count_vfs = *real_vfs;
	count_vfs.zName = "count-wal-syncs";
	count_vfs.xOpen = count_open;
	if (sqlite3_vfs_register(&count_vfs, 1) != SQLITE_OK)
		fatalx("cannot register the counting VFS");
	if (store_open(&s, path, STORE_RW, NULL, &cause) == -1)
		fatalx("%s", cause);
	id = add_task(s, "flush");
	ok(real_wal_sync != NULL, "flush: the WAL is opened through the VFS");
	ok(!store_flush_pending(s), "flush: nothing pending after a durable "
	                            "commit");
	before = wal_syncs;
	for (int i = 0; i < 3; i++) {
		char name[16];

		snprintf(name, sizeof name, "cp%d", i);
		if (store_begin_lazy(s) == -1 ||
		    store_checkpoint_add(s, id, name, "{}") == -1 ||
		    store_commit(s) == -1)
			fatalx("lazy commit: %s", store_error(s));
	}
	is_int(wal_syncs - before, 0, "flush: three lazy commits sync nothing");
	ok(store_flush_pending(s), "flush: ... and are pending");
	ok(store_flush(s) == 0, "flush: store_flush");
	is_int(
	    wal_syncs - before, 1, "flush: one sync of the log for all three");
	ok(!store_flush_pending(s), "flush: nothing pending after it");
	ok(store_flush(s) == 0, "flush: again");
	is_int(wal_syncs - before, 1, "flush: with nothing pending, no sync");

	/* A sync that fails is an error that says so, and the commits
	 * still wait for one. */
	if (store_begin_lazy(s) == -1 ||
	    store_checkpoint_add(s, id, "cpf", "{}") == -1 ||
	    store_commit(s) == -1)
		fatalx("lazy commit: %s", store_error(s));
	wal_sync_fails = 1;
	ok(store_flush(s) == -1 && strstr(store_error(s), "sync of") != NULL &&
	        strstr(store_error(s), "-wal") != NULL,
	    "flush: a failed sync is an error naming the log");
	wal_sync_fails = 0;
	ok(store_flush_pending(s), "flush: ... and the commits still wait");
	/* Whether a later sync can be trusted is the caller's call: the
	 * scheduler stops instead (sched_flush_cb). */
	ok(store_flush(s) == 0 && !store_flush_pending(s),
	    "flush: a later flush syncs again");
	before = wal_syncs;

	/* A durable commit syncs the lazy ones before it, if it wrote. */
	if (store_begin_lazy(s) == -1 ||
	    store_checkpoint_add(s, id, "cp3", "{}") == -1 ||
	    store_commit(s) == -1)
		fatalx("lazy commit: %s", store_error(s));
	if (store_begin(s) == -1 || store_commit(s) == -1)
		fatalx("empty commit: %s", store_error(s));
	ok(store_flush_pending(s),
	    "flush: a durable commit that wrote nothing leaves it pending");
	ok(store_checkpoint_add(s, id, "cp4", "{}") == 0,
	    "flush: a durable write");
	is_int(wal_syncs - before, 1, "flush: ... syncs the log");
	ok(!store_flush_pending(s), "flush: ... so nothing is pending");

	/* Closing syncs what waits, even where the close checkpoints nothing
	 * (another connection is open). */
	if (store_open(&reader, path, STORE_RDONLY, NULL, &cause) == -1)
		fatalx("%s", cause);
	if (store_begin_lazy(s) == -1 ||
	    store_checkpoint_add(s, id, "cp5", "{}") == -1 ||
	    store_commit(s) == -1)
		fatalx("lazy commit: %s", store_error(s));
	before = wal_syncs;
	store_close(s);
	is_int(wal_syncs - before, 1, "flush: closing syncs a lazy commit");
	store_close(reader);
	sqlite3_vfs_unregister(&count_vfs);
	free(path);
}

static void
test_task_roundtrip(void)
{
	struct task_new tn = {"Add \"auth\" é", "/home/u/repo", "deadbeef",
	    "make check", AUTO_APPROVE_PLAN | AUTO_APPROVE_IMPLEMENTATION, 0,
	    0};
	struct store *s;
	struct task *t;
	sqlite3 *raw;
	char *path = tpath("tasks.db"), *v, *before;
	int64_t id = 0;
	int good;

	s = open_rw(path);
	ok(store_task_add(s, &tn, &id) == 0 && id == 1, "task_add gives id 1");
	ok(store_task_get(s, id, &t) == 0 && t != NULL, "task_get");
	if (t == NULL)
		fatalx("no task");
	is_int(t->id, id, "id");
	is_int(t->state, WS_PENDING, "state pending");
	is_str(t->request, tn.request, "request");
	is_str(t->repo, tn.repo, "repo");
	is_str(t->base_commit, tn.base_commit, "base_commit");
	is_str(t->verify_command, tn.verify_command, "verify_command");
	is_int(t->auto_approve, 3, "auto_approve");
	ok(is_timestamp(t->created_at), "created_at format");
	ok(is_timestamp(t->updated_at), "updated_at format");
	good = 1;
	for (int i = 0; i < TC_MAX; i++)
		good &= t->text[i] == NULL;
	ok(good, "text columns NULL");
	good = 1;
	for (int i = 0; i < TI_FAILED_STATE; i++)
		good &= t->ival[i] == 0;
	ok(good, "integer columns 0");
	is_int(t->ival[TI_FAILED_STATE], -1, "failed_state NULL reads -1");
	{
		json_t *j = json_loads(t->workflow_checkpoint_data, 0, NULL);

		is_str(json_string_value(json_object_get(j, "request")),
		    tn.request, "workflow_checkpoint_data has the request");
		json_decref(j);
	}
	is_int(t->tokens_in, 0, "tokens_in 0");
	is_int(t->tokens_out, 0, "tokens_out 0");
	task_free(t);

	raw = raw_open(path);
	v = raw_text(raw, "SELECT status || '/' || workflow_state || '/' ||"
	                  " stage_run FROM tasks WHERE id = 1");
	is_str(v, "pending/pending/0", "status, workflow_state, stage_run");
	free(v);
	v = raw_text(raw, "SELECT checkpoint_name FROM checkpoints"
	                  " WHERE task_id = 1");
	is_str(v, "workflow_start", "workflow_start checkpoint");
	free(v);
	v = raw_text(raw, "SELECT kind || ':' || text FROM events"
	                  " WHERE task_id = 1");
	is_str(v, "state:task submitted", "task submitted event");
	free(v);

	/* Every write bumps updated_at. */
	raw_exec(
	    raw, "UPDATE tasks SET updated_at = '2000-01-01 00:00:00.000'");
	for (int i = 0; i < TC_MAX; i++) {
		char *val = xasprintf("value %d", i);

		if (store_task_set_text(s, id, i, val) == -1)
			printf("# set_text %d: %s\n", i, store_error(s));
		free(val);
	}
	for (int i = 0; i < TI_MAX; i++) {
		if (store_task_set_int(s, id, i, 10 + i) == -1)
			printf("# set_int %d: %s\n", i, store_error(s));
	}
	ok(store_task_get(s, id, &t) == 0 && t != NULL, "task_get again");
	good = 1;
	for (int i = 0; i < TC_MAX; i++) {
		char *val = xasprintf("value %d", i);

		good &= t->text[i] != NULL && strcmp(t->text[i], val) == 0;
		free(val);
	}
	ok(good, "set_text round trip of every column");
	good = 1;
	for (int i = 0; i < TI_MAX; i++)
		good &= t->ival[i] == 10 + i;
	ok(good, "set_int round trip of every column");
	ok(strcmp(t->updated_at, "2000-01-01 00:00:00.000") > 0 &&
	        is_timestamp(t->updated_at),
	    "updated_at moved");
	task_free(t);

	v = raw_text(raw, "SELECT plan_rejection_reason || '|' || feedback ||"
	                  " '|' || verify_rounds || '|' || failed_state"
	                  " FROM tasks WHERE id = 1");
	is_str(v, "value 7|value 12|14|15", "values are in the named columns");
	free(v);

	ok(store_task_set_text(s, id, TC_FEEDBACK, NULL) == 0 &&
	        store_task_set_int(s, id, TI_FAILED_STATE, -1) == 0,
	    "set NULL text and failed_state -1");
	store_task_get(s, id, &t);
	ok(t->text[TC_FEEDBACK] == NULL, "feedback NULL again");
	is_int(t->ival[TI_FAILED_STATE], -1, "failed_state -1 again");
	task_free(t);
	is_int(raw_int(raw, "SELECT failed_state IS NULL FROM tasks"), 1,
	    "failed_state stored as NULL");

	raw_exec(
	    raw, "UPDATE tasks SET updated_at = '2000-01-01 00:00:00.000'");
	ok(store_task_stamp(s, id, TC_PLAN_APPROVED_AT) == 0 &&
	        store_task_stamp(s, id, TC_IMPLEMENTATION_APPROVED_AT) == 0,
	    "stamp both approval times");
	store_task_get(s, id, &t);
	ok(is_timestamp(t->text[TC_PLAN_APPROVED_AT]) &&
	        is_timestamp(t->text[TC_IMPLEMENTATION_APPROVED_AT]),
	    "stamped times have the format");
	before = xstrdup(t->updated_at);
	ok(strcmp(before, "2000-01-01 00:00:00.000") > 0,
	    "stamp bumps updated_at");
	task_free(t);
	free(before);
	ok(store_task_stamp(s, id, TC_PLAN) == -1,
	    "stamp refuses a text column");

	ok(store_task_set_state(s, id, WS_PLAN_AWAITING_APPROVAL) == 0,
	    "set_state");
	store_task_get(s, id, &t);
	is_int(t->state, WS_PLAN_AWAITING_APPROVAL, "state read back");
	task_free(t);
	v = raw_text(raw, "SELECT status FROM tasks WHERE id = 1");
	is_str(v, "awaiting_approval", "set_state sets status");
	free(v);

	ok(store_task_get(s, 999, &t) == 0 && t == NULL,
	    "task_get of a missing task: 0 and NULL");
	ok(store_task_set_state(s, 999, WS_PLANNING) == -1 &&
	        strstr(store_error(s), "no task 999") != NULL,
	    "set_state of a missing task fails");
	ok(store_task_set_text(s, 999, TC_PLAN, "x") == -1,
	    "set_text of a missing task fails");
	ok(store_checkpoint_add(s, 999, "x", NULL) == -1,
	    "checkpoint of a missing task fails");
	ok(store_event_add(s, 999, EV_INFO, NULL, "x") == -1 &&
	        strstr(store_error(s), "FOREIGN KEY") != NULL,
	    "event of a missing task refused by the foreign key");

	sqlite3_close(raw);
	store_close(s);
	free(path);
}

struct ids {
	int64_t ids[32];
	size_t n;
	size_t stop_after;
};

static int
collect_task(const struct task *t, void *arg)
{
	struct ids *l = arg;

	l->ids[l->n++] = t->id;
	return l->stop_after != 0 && l->n >= l->stop_after;
}

static int
ids_are(const struct ids *l, const int64_t *want, size_t n)
{
	if (l->n != n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (l->ids[i] != want[i])
			return 0;
	}
	return 1;
}

static void
test_list(void)
{
	static const enum wstate states[] = {WS_PENDING, WS_PLANNING,
	    WS_COMPLETED, WS_CANCELLED, WS_FAILED, WS_PLAN_AWAITING_APPROVAL,
	    WS_PLAN_APPROVED, WS_VERIFYING, WS_IMPLEMENTATION_AWAITING_APPROVAL,
	    WS_REVIEWING, WS_IMPLEMENTING};
	struct store *s;
	struct ids l;
	char *path = tpath("list.db");
	int64_t ids[16];
	size_t n;

	s = open_rw(path);
	for (size_t i = 0; i < nitems(states); i++) {
		int64_t id = add_task(s, "t");

		if (store_task_set_state(s, id, states[i]) == -1)
			fatalx("%s", store_error(s));
	}
	memset(&l, 0, sizeof l);
	ok(store_task_list(s, -1, 0, collect_task, &l) == 0, "list all");
	{
		const int64_t w[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
		ok(ids_are(&l, w, nitems(w)), "all tasks in id order");
	}
	memset(&l, 0, sizeof l);
	store_task_list(s, TS_IN_PROGRESS, 0, collect_task, &l);
	{
		const int64_t w[] = {2, 7, 8, 10, 11};
		ok(ids_are(&l, w, nitems(w)), "status filter in_progress");
	}
	memset(&l, 0, sizeof l);
	store_task_list(s, TS_AWAITING_APPROVAL, 0, collect_task, &l);
	{
		const int64_t w[] = {6, 9};
		ok(ids_are(&l, w, nitems(w)),
		    "status filter awaiting_approval");
	}
	memset(&l, 0, sizeof l);
	store_task_list(s, -1, 1, collect_task, &l);
	{
		const int64_t w[] = {1, 2, 5, 6, 7, 8, 9, 10, 11};
		ok(ids_are(&l, w, nitems(w)), "resumable: not completed"
		                              " or cancelled");
	}
	memset(&l, 0, sizeof l);
	store_task_list(s, TS_COMPLETED, 1, collect_task, &l);
	ok(l.n == 0, "completed and resumable: none");
	memset(&l, 0, sizeof l);
	store_task_list(s, TS_FAILED, 1, collect_task, &l);
	ok(l.n == 1 && l.ids[0] == 5, "failed and resumable");
	memset(&l, 0, sizeof l);
	l.stop_after = 2;
	ok(store_task_list(s, -1, 0, collect_task, &l) == 0 && l.n == 2,
	    "callback stops the list");
	ok(store_task_list(s, TS_MAX, 0, collect_task, &l) == -1,
	    "list refuses a bad status");

	ok(store_task_runnable(s, 0, ids, nitems(ids), &n) == 0, "runnable");
	{
		const int64_t w[] = {1, 2, 7, 8, 10, 11};
		ok(n == nitems(w) && memcmp(ids, w, sizeof w) == 0,
		    "runnable: pending and working states, oldest first");
	}
	ok(store_task_runnable(s, 0, ids, 2, &n) == 0 && n == 2 &&
	        ids[0] == 1 && ids[1] == 2,
	    "runnable at most max");
	ok(store_task_runnable(s, 2, ids, 2, &n) == 0 && n == 2 &&
	        ids[0] == 7 && ids[1] == 8,
	    "runnable pages on: after the last id seen");
	ok(store_task_runnable(s, 11, ids, 2, &n) == 0 && n == 0,
	    "runnable past the last: none");

	/* by_status in stats */
	{
		json_t *st, *by;

		ok(store_stats_json(s, &st) == 0, "stats_json");
		by = json_object_get(st, "by_status");
		is_int(json_integer_value(json_object_get(st, "tasks")), 11,
		    "stats tasks");
		is_int(json_integer_value(json_object_get(by, "pending")), 1,
		    "stats pending");
		is_int(json_integer_value(json_object_get(by, "in_progress")),
		    5, "stats in_progress");
		is_int(json_integer_value(
		           json_object_get(by, "awaiting_approval")),
		    2, "stats awaiting_approval");
		is_int(json_integer_value(json_object_get(by, "completed")), 1,
		    "stats completed");
		is_int(json_integer_value(json_object_get(by, "failed")), 1,
		    "stats failed");
		is_int(json_integer_value(json_object_get(by, "cancelled")), 1,
		    "stats cancelled");
		is_int(json_object_size(by), 6, "six statuses");
		is_int(json_integer_value(json_object_get(st, "checkpoints")),
		    11, "stats checkpoints");
		is_int(json_integer_value(json_object_get(st, "events")), 11,
		    "stats events");
		is_int(json_integer_value(json_object_get(st, "journal")), 0,
		    "stats journal");
		ok(json_integer_value(json_object_get(st, "db_bytes")) >= 4096,
		    "stats db_bytes");
		is_int(
		    json_integer_value(json_object_get(st, "schema_version")),
		    6, "stats schema_version");
		json_decref(st);
	}
	store_close(s);
	free(path);
}

struct cps {
	char names[8][64];
	char data[8][64];
	int n;
};

static int
collect_cp(const struct checkpoint *cp, void *arg)
{
	struct cps *c = arg;

	snprintf(c->names[c->n], sizeof c->names[0], "%s", cp->name);
	snprintf(c->data[c->n], sizeof c->data[0], "%s",
	    cp->data ? cp->data : "NULL");
	if (!is_timestamp(cp->created_at))
		snprintf(c->data[c->n], sizeof c->data[0], "bad time");
	c->n++;
	return 0;
}

static void
test_checkpoints(void)
{
	struct store *s;
	struct task *t;
	struct cps c;
	char *path = tpath("cp.db");
	int64_t a, b;

	s = open_rw(path);
	a = add_task(s, "one");
	b = add_task(s, "two");
	ok(store_checkpoint_add(s, a, "after_planning", "{\"plan\":\"p\"}") ==
	        0,
	    "checkpoint_add");
	ok(store_checkpoint_add(s, a, "start_implementation", NULL) == 0,
	    "checkpoint_add NULL data");
	ok(store_checkpoint_add(s, b, "after_planning", "{\"b\":1}") == 0,
	    "checkpoint_add other task");
	memset(&c, 0, sizeof c);
	ok(store_checkpoint_list(s, a, collect_cp, &c) == 0, "checkpoint_list");
	is_int(c.n, 3, "three checkpoints of task a");
	is_str(c.names[0], "workflow_start", "first is workflow_start");
	is_str(c.names[1], "after_planning", "then after_planning");
	is_str(c.data[1], "{\"plan\":\"p\"}", "its data");
	is_str(c.names[2], "start_implementation", "then start_implementation");
	is_str(c.data[2], "NULL", "NULL data");
	store_task_get(s, a, &t);
	ok(t->workflow_checkpoint_data == NULL,
	    "workflow_checkpoint_data follows the last checkpoint (NULL)");
	task_free(t);
	store_task_get(s, b, &t);
	is_str(t->workflow_checkpoint_data, "{\"b\":1}",
	    "workflow_checkpoint_data of task b");
	task_free(t);
	store_close(s);
	free(path);
}

struct jl {
	int64_t seq[8];
	char kind[8][16];
	char data[8][16];
	int n;
};

static int
collect_journal(const struct journal_entry *je, void *arg)
{
	struct jl *j = arg;

	j->seq[j->n] = je->seq;
	snprintf(j->kind[j->n], sizeof j->kind[0], "%s", je->kind);
	snprintf(j->data[j->n], sizeof j->data[0], "%s", je->data);
	j->n++;
	return 0;
}

static void
test_journal(void)
{
	struct store *s;
	struct task *t;
	struct jl j;
	json_t *u, *p;
	char *path = tpath("journal.db");
	int64_t a, b;

	s = open_rw(path);
	a = add_task(s, "a");
	b = add_task(s, "b");
	ok(store_journal_add(s, a, 1, 2, "planning", "tool", "d2", 0, 0) == 0,
	    "journal_add seq 2");
	ok(store_journal_add(s, a, 1, 1, "planning", "reply", "d1", 100, 10) ==
	        0,
	    "journal_add seq 1");
	ok(store_journal_add(s, a, 1, 3, "planning", "reply", "d3", 50, 5) == 0,
	    "journal_add seq 3");
	ok(store_journal_add(s, a, 2, 1, "implementing", "reply", "i1", 7, 3) ==
	        0,
	    "journal_add run 2");
	ok(store_journal_add(s, b, 1, 1, "planning", "reply", "b1", 1000, 1) ==
	        0,
	    "journal_add task b");
	ok(store_journal_add(s, a, 1, 2, "planning", "reply", "dup", 1, 1) ==
	        -1,
	    "duplicate (task, run, seq) refused");
	ok(strstr(store_error(s), "insert journal") != NULL &&
	        strstr(store_error(s), "UNIQUE") != NULL,
	    "duplicate error is clear");
	printf("# %s\n", store_error(s));

	memset(&j, 0, sizeof j);
	ok(store_journal_list(s, a, 1, collect_journal, &j) == 0,
	    "journal_list");
	ok(j.n == 3 && j.seq[0] == 1 && j.seq[1] == 2 && j.seq[2] == 3,
	    "journal in seq order");
	is_str(j.data[1], "d2", "the duplicate did not replace data");
	is_str(j.kind[0], "reply", "kind");

	ok(store_usage_json(s, a, &u) == 0, "usage_json");
	p = json_object_get(u, "planning");
	is_int(json_integer_value(json_object_get(p, "calls")), 2,
	    "planning calls count replies only");
	is_int(json_integer_value(json_object_get(p, "tokens_in")), 150,
	    "planning tokens_in summed");
	is_int(json_integer_value(json_object_get(p, "tokens_out")), 15,
	    "planning tokens_out summed");
	p = json_object_get(u, "implementing");
	is_int(json_integer_value(json_object_get(p, "calls")), 1,
	    "implementing calls");
	is_int(json_object_size(u), 2, "two stages");
	json_decref(u);

	store_task_get(s, a, &t);
	is_int(t->tokens_in, 157, "task tokens_in over usage");
	is_int(t->tokens_out, 18, "task tokens_out over usage");
	task_free(t);

	is_int(count(s, "tokens_in"), 1157, "stats tokens_in");
	is_int(count(s, "tokens_out"), 19, "stats tokens_out");
	is_int(count(s, "journal"), 5, "stats journal");
	ok(store_journal_add(s, 999, 1, 1, "planning", "reply", "x", 1, 1) ==
	        -1,
	    "journal of a missing task refused");
	store_close(s);
	free(path);
}

struct evl {
	int64_t id[16];
	int64_t task[16];
	char text[16][32];
	char kind[16][8];
	char stage[16][16];
	enum wstate state[16];
	int n;
};

static int
collect_event(const struct event_row *ev, void *arg)
{
	struct evl *e = arg;

	e->id[e->n] = ev->id;
	e->task[e->n] = ev->task;
	snprintf(e->text[e->n], sizeof e->text[0], "%s", ev->text);
	snprintf(e->kind[e->n], sizeof e->kind[0], "%s", ev->kind);
	snprintf(e->stage[e->n], sizeof e->stage[0], "%s",
	    ev->stage ? ev->stage : "NULL");
	e->state[e->n] = ev->state;
	if (!is_timestamp(ev->ts))
		snprintf(e->text[e->n], sizeof e->text[0], "bad ts");
	e->n++;
	return 0;
}

/*
 * A state change carries its new state as data: the text is never read for
 * it.  An event whose text looks like a state change but is not one has
 * none; one worded otherwise still has its state.
 */
static void
test_event_state(void)
{
	struct store *s;
	struct evl e;
	sqlite3 *raw;
	char *path = tpath("evstate.db");
	int64_t a;

	s = open_rw(path);
	a = add_task(s, "a");
	ok(store_event_add(s, a, EV_INFO, "planning", "pending -> completed") ==
	        0,
	    "event_add: info text with an arrow");
	ok(store_event_add(s, a, EV_STATE, NULL, "planning -> failed: x") == 0,
	    "event_add: state kind, text with an arrow, no state");
	ok(store_event_add_state(s, a, WS_COMPLETED, NULL, "all done") == 0,
	    "event_add_state: worded without an arrow");
	ok(store_event_add_state(
	       s, a, WS_PLANNING, "planning", "pending -> failed") == 0,
	    "event_add_state: text says another state");
	ok(store_event_add_state(s, a, WS_MAX, NULL, "x") == -1,
	    "event_add_state refuses a bad state");
	ok(store_event_add_state(s, a, WS_FAILED, NULL, NULL) == -1,
	    "event_add_state refuses no text");

	memset(&e, 0, sizeof e);
	store_event_list(s, a, 0, 0, collect_event, &e);
	is_int(e.n, 5, "five events");
	is_int(e.state[0], WS_PENDING, "task submitted: into pending");
	is_int(e.state[1], WS_MAX, "an arrow in an info text: no state");
	is_int(e.state[2], WS_MAX, "an arrow in a state text: no state");
	is_int(e.state[3], WS_COMPLETED, "the state, whatever the wording");
	is_int(e.state[4], WS_PLANNING, "the state, not the text's");
	is_str(e.kind[3], "state", "event_add_state's kind is state");

	/* A damaged row: what is not a state is none. */
	raw = raw_open(path);
	raw_exec(raw, "UPDATE events SET state = 'nonsense' WHERE id = (SELECT"
	              " MAX(id) FROM events)");
	sqlite3_close(raw);
	memset(&e, 0, sizeof e);
	store_event_list(s, a, 0, 0, collect_event, &e);
	is_int(e.state[4], WS_MAX, "an unknown state reads as none");
	store_close(s);
	free(path);
}

/*
 * Version 3 to 4: every event row kept, and the state changes written
 * before the column existed get their state from their text, once.
 */
static void
test_migration_v4(void)
{
	struct store *s;
	struct evl e;
	sqlite3 *raw;
	char *path = tpath("v3.db"), *before, *after, *cause;
	int64_t a;

	s = open_rw(path);
	a = add_task(s, "a");
	store_event_add(s, a, EV_STATE, NULL, "pending -> planning");
	store_event_add(s, a, EV_INFO, "planning", "worker started");
	store_event_add(s, a, EV_STATE, "planning",
	    "planning -> plan_awaiting_approval: needs approval");
	store_event_add(s, a, EV_INFO, NULL, "pending -> completed");
	store_event_add(s, a, EV_STATE, NULL, "no arrow here");
	store_event_add(s, a, EV_STATE, NULL, "planning -> bogus");
	store_close(s);

	/* Make it a version-3 database: no events.state. */
	raw = raw_open(path);
	raw_exec(raw, "ALTER TABLE events DROP COLUMN state;"
	              " PRAGMA user_version = 3;");
	/* More than one batch of the backfill. */
	raw_exec(raw, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1"
	              " FROM n WHERE i < 1200) INSERT INTO events (task_id,"
	              " ts, kind, stage, text) SELECT 1, 'x', 'state', NULL,"
	              " 'failed -> implementing: retry' FROM n;");
	before = raw_text(raw, "SELECT group_concat(id || kind || ifnull(stage,"
	                       " '-') || text, ';') FROM events");
	sqlite3_close(raw);

	ok(store_open(&s, path, STORE_RW, NULL, &cause) == 0,
	    "v4: open a version-3 database with events");
	if (s == NULL)
		fatalx("%s", cause);
	is_int(store_schema_version(s), 6, "v4: migrated to 6");
	memset(&e, 0, sizeof e);
	store_event_list(s, a, 0, 7, collect_event, &e);
	is_int(e.n, 7, "v4: events listed");
	is_int(e.state[0], WS_PENDING, "v4: task submitted backfilled");
	is_int(e.state[1], WS_PLANNING, "v4: a -> b backfilled");
	is_int(e.state[2], WS_MAX, "v4: info row left without");
	is_int(e.state[3], WS_PLAN_AWAITING_APPROVAL,
	    "v4: a -> b: why backfilled");
	is_int(e.state[4], WS_MAX, "v4: an info arrow is not a state");
	is_int(e.state[5], WS_MAX, "v4: a state text that does not parse");
	is_int(e.state[6], WS_MAX, "v4: an unknown state name");
	store_close(s);

	raw = raw_open(path);
	after = raw_text(raw, "SELECT group_concat(id || kind || ifnull(stage,"
	                      " '-') || text, ';') FROM events");
	is_str(after, before, "v4: every event row and value intact");
	is_int(raw_int(raw, "SELECT COUNT(*) FROM events WHERE state ="
	                    " 'implementing'"),
	    1200, "v4: backfilled beyond the first batch");
	is_int(raw_int(raw, "SELECT COUNT(*) FROM events WHERE state IS NULL"),
	    4, "v4: the rest NULL");
	sqlite3_close(raw);
	free(before);
	free(after);
	free(path);
}

static int
event_data_cb(const struct event_row *ev, void *arg)
{
	char **out = arg;

	free(*out);
	*out = xstrdup(ev->data != NULL ? ev->data : "NULL");
	return 0;
}

/* An event's facts (events.data, schema 5) come back as they went in. */
static void
test_event_data(struct store *s, int64_t a)
{
	json_t *d = json_pack("{s:s,s:i}", "outcome", "error", "exit", 3);
	char *got = NULL;
	int64_t max;

	ok(store_event_add_data(s, a, EV_RESULT, "implementing", "exit 3", d) ==
	        0,
	    "event_add_data result");
	store_event_max(s, &max);
	store_event_list(s, a, max - 1, 0, event_data_cb, &got);
	is_str(got, "{\"exit\":3,\"outcome\":\"error\"}", "its data");
	ok(store_event_add_data(s, a, EV_CHECKPOINT, NULL, "cp", NULL) == 0,
	    "event_add_data without data");
	store_event_list(s, a, max, 0, event_data_cb, &got);
	is_str(got, "NULL", "no data is NULL");
	ok(store_event_add_data(s, a, EV_STATE, NULL, "x", d) == -1,
	    "a state change is not added as data");
	is_str(event_kind_name(EV_RESULT), "result", "event kind result");
	is_str(event_kind_name(EV_CHECKPOINT), "checkpoint",
	    "event kind checkpoint");
	free(got);
	json_decref(d);
}

static int
turn_sum_cb(const struct turn_sum *ts, void *arg)
{
	char *out = arg;
	size_t n = strlen(out);

	snprintf(out + n, 256 - n, "%s:%lld/%lld/%lld/%lld ", ts->model,
	    (long long)ts->tokens_in, (long long)ts->tokens_out,
	    (long long)ts->duration_ms, (long long)ts->turns);
	return 0;
}

/* Model turns (schema 5) sum by day, model and repository; a task's
 * status can wait while its state stays (a budget). */
static void
test_turns(struct store *s, int64_t a, int64_t b)
{
	char got[256] = "";
	struct task *t;

	ok(store_turn_add(s, a, "planning", "m1", 100, 10, 0, 500) == 0 &&
	        store_turn_add(s, a, "implementing", "m1", 200, 20, 0, 700) ==
	            0 &&
	        store_turn_add(s, a, "implementing", "m2", 1, 2, 0, 3) == 0 &&
	        store_turn_add(s, b, "planning", "m1", 1000, 100, 0, 1) == 0,
	    "turns added");
	ok(store_turn_add(s, a, NULL, "m", 1, 1, 0, 1) == -1,
	    "a turn needs a stage");
	store_turn_sums(s, a, turn_sum_cb, got);
	is_str(
	    got, "m1:300/30/1200/2 m2:1/2/3/1 ", "one task's turns, by model");
	got[0] = '\0';
	store_turn_sums(s, 0, turn_sum_cb, got);
	is_str(got, "m1:1300/130/1201/3 m2:1/2/3/1 ", "every task's");
	ok(store_task_set_status(s, a, TS_AWAITING_APPROVAL) == 0,
	    "set the status alone");
	store_task_get(s, a, &t);
	is_str(wstate_name(t->state), "pending", "the state stays");
	is_int(t->ival[TI_BUDGET_PAUSED], 0, "budget_paused reads 0");
	task_free(t);
	int64_t n = 0;
	store_task_count(s, TS_AWAITING_APPROVAL, &n);
	is_int(n, 1, "the status column says awaiting_approval");
}

/* A list whose callback lists again (as the event pump's consumers may). */
struct nested {
	struct store *s;
	int outer, inner;
};

static int
nested_inner(const struct event_row *ev, void *arg)
{
	struct nested *n = arg;

	(void)ev;
	n->inner++;
	return 0;
}

static int
nested_outer(const struct event_row *ev, void *arg)
{
	struct nested *n = arg;

	(void)ev;
	n->outer++;
	store_event_list(n->s, 0, 0, 0, nested_inner, n);
	return 0;
}

/*
 * The list statements stay prepared between calls (store_prep_once): a
 * nested run of the same query must get a statement of its own, and the
 * outer one go on where it was.
 */
static void
test_nested_lists(struct store *s)
{
	struct nested n = {s, 0, 0};

	ok(store_event_list(s, 0, 0, 0, nested_outer, &n) == 0 &&
	        n.outer == 5 && n.inner == 25,
	    "a list inside a list's callback: both complete");
	n.outer = n.inner = 0;
	ok(store_event_list(s, 0, 0, 0, nested_outer, &n) == 0 &&
	        n.outer == 5 && n.inner == 25,
	    "... again, on the kept statements");
}

static void
test_events(void)
{
	struct store *s;
	struct evl e;
	char *path = tpath("events.db");
	int64_t a, b, mark;

	s = open_rw(path);
	a = add_task(s, "a");
	b = add_task(s, "b");
	ok(store_event_add(s, a, EV_INFO, "planning", "worker started") == 0,
	    "event_add info");
	ok(store_event_add(s, b, EV_MODEL, "planning", "hello") == 0,
	    "event_add model");
	ok(store_event_add(s, a, EV_TOOL, NULL, "ls") == 0,
	    "event_add tool without stage");
	ok(store_event_add(s, a, EV_MAX, NULL, "x") == -1,
	    "event_add refuses a bad kind");

	memset(&e, 0, sizeof e);
	ok(store_event_list(s, 0, 0, 0, collect_event, &e) == 0, "event_list");
	is_int(e.n, 5, "five events in all");
	ok(e.id[0] < e.id[1] && e.id[1] < e.id[2] && e.id[2] < e.id[3] &&
	        e.id[3] < e.id[4],
	    "oldest first");
	is_str(e.text[0], "task submitted", "first is task a submitted");
	is_str(e.kind[0], "state", "its kind");

	memset(&e, 0, sizeof e);
	store_event_list(s, a, 0, 0, collect_event, &e);
	ok(e.n == 3 && e.task[0] == a && e.task[1] == a && e.task[2] == a,
	    "task filter");
	is_str(e.text[1], "worker started", "text");
	is_str(e.kind[1], "info", "kind info");
	is_str(e.stage[1], "planning", "stage");
	is_str(e.stage[2], "NULL", "NULL stage");
	mark = e.id[1];

	memset(&e, 0, sizeof e);
	store_event_list(s, a, mark, 0, collect_event, &e);
	ok(e.n == 1 && strcmp(e.text[0], "ls") == 0, "after and task filter");
	memset(&e, 0, sizeof e);
	store_event_list(s, 0, mark, 0, collect_event, &e);
	ok(e.n == 2 && strcmp(e.text[0], "hello") == 0, "after, all tasks");
	memset(&e, 0, sizeof e);
	store_event_list(s, 0, 0, 2, collect_event, &e);
	ok(e.n == 2, "limit");
	is_int(count(s, "events"), 5, "stats events");
	test_nested_lists(s);
	test_event_data(s, a);
	test_turns(s, a, b);
	store_close(s);
	free(path);
}

static void
test_transactions(void)
{
	struct store *s;
	struct task *t;
	struct ids l;
	char *path = tpath("tx.db");
	int64_t a, b, c;

	s = open_rw(path);
	a = add_task(s, "a");

	ok(store_begin(s) == 0, "begin");
	ok(store_begin(s) == -1, "nested begin is an error");
	b = add_task(s, "b");
	ok(store_task_set_state(s, a, WS_PLANNING) == 0, "write in tx");
	store_rollback(s);
	memset(&l, 0, sizeof l);
	store_task_list(s, -1, 0, collect_task, &l);
	ok(l.n == 1 && l.ids[0] == a, "rollback drops the new task");
	store_task_get(s, a, &t);
	is_int(t->state, WS_PENDING, "rollback drops the state change");
	task_free(t);
	is_int(count(s, "checkpoints"), 1, "rollback drops the checkpoint");
	is_int(count(s, "events"), 1, "rollback drops the event");

	ok(store_begin(s) == 0, "begin again");
	b = add_task(s, "b");
	ok(store_task_set_state(s, a, WS_PLANNING) == 0, "write in tx");
	ok(store_journal_add(s, a, 1, 1, "planning", "reply", "x", 1, 1) == 0,
	    "journal in tx");
	ok(store_journal_add(s, a, 1, 1, "planning", "reply", "x", 1, 1) == -1,
	    "failed write in tx");
	ok(store_commit(s) == 0, "commit");
	memset(&l, 0, sizeof l);
	store_task_list(s, -1, 0, collect_task, &l);
	ok(l.n == 2 && l.ids[1] == b, "commit keeps the new task");
	store_task_get(s, a, &t);
	is_int(t->state, WS_PLANNING, "commit keeps the state change");
	is_int(t->tokens_in, 1, "a failed write in tx undoes only itself");
	task_free(t);
	ok(store_commit(s) == -1, "commit without begin is an error");
	store_rollback(s);

	/* Close with an open transaction rolls it back. */
	store_begin(s);
	c = add_task(s, "c");
	store_close(s);
	s = open_rw(path);
	ok(store_task_get(s, c, &t) == 0 && t == NULL,
	    "close rolls back an open transaction");
	store_close(s);
	free(path);
}

/* The seed's schema: version 0, as the Python system made it. */
static const char seed_schema[] =
    "CREATE TABLE tasks (\n"
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
    "\n"
    "-- Checkpoints table for granular state tracking\n"
    "CREATE TABLE checkpoints (\n"
    "    id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "    task_id INTEGER NOT NULL,\n"
    "    checkpoint_name TEXT NOT NULL,\n"
    "    checkpoint_data TEXT,\n"
    "    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,\n"
    "    FOREIGN KEY (task_id) REFERENCES tasks(id) ON DELETE CASCADE\n"
    ");\n";

static const char seed_rows[] =
    "INSERT INTO tasks VALUES (1, 'Add authentication', 'in_progress',"
    " 'implementing', '2026-02-05 15:40:00', '2026-02-05 15:42:10',"
    " 'the plan', 'the impl', 'the review', 'verified', '{\"stages\":[]}',"
    " '{\"plan\":\"the plan\"}', '2026-02-05 15:41:00', 'korety',"
    " NULL, NULL, NULL, 'impl rejected', 'an error', 2);"
    "INSERT INTO tasks (request, status, workflow_state) VALUES"
    " ('Fix bug', 'completed', 'completed');"
    "INSERT INTO tasks (request, status, workflow_state, retry_count) VALUES"
    " ('Waiting', 'awaiting_approval', 'plan_awaiting_approval', NULL);"
    "INSERT INTO checkpoints VALUES (1, 1, 'workflow_start',"
    " '{\"request\":\"Add authentication\"}', '2026-02-05 15:40:00');"
    "INSERT INTO checkpoints VALUES (2, 1, 'after_planning',"
    " '{\"plan\":\"the plan\"}', '2026-02-05 15:41:00');"
    "INSERT INTO checkpoints VALUES (3, 1, 'start_implementation',"
    " NULL, '2026-02-05 15:42:10');";

/* Every seed value, as one string per row. */
static const char seed_dump_sql[] =
    "SELECT group_concat(quote(id) || ',' || quote(request) || ',' ||"
    " quote(status) || ',' || quote(workflow_state) || ',' ||"
    " quote(created_at) || ',' || quote(updated_at) || ',' || quote(plan) ||"
    " ',' || quote(implementation) || ',' || quote(review) || ',' ||"
    " quote(verification_result) || ',' || quote(workflow_log) || ',' ||"
    " quote(workflow_checkpoint_data) || ',' || quote(plan_approved_at) ||"
    " ',' || quote(plan_approved_by) || ',' ||"
    " quote(plan_rejection_reason) || ',' ||"
    " quote(implementation_approved_at) || ',' ||"
    " quote(implementation_approved_by) || ',' ||"
    " quote(implementation_rejection_reason) || ',' ||"
    " quote(error_details) || ',' || quote(retry_count), '\n')"
    " FROM (SELECT * FROM tasks ORDER BY id)";
static const char seed_cp_dump_sql[] =
    "SELECT group_concat(quote(id) || ',' || quote(task_id) || ',' ||"
    " quote(checkpoint_name) || ',' || quote(checkpoint_data) || ',' ||"
    " quote(created_at), '\n') FROM (SELECT * FROM checkpoints ORDER BY id)";

static void
test_migration(void)
{
	struct store *s;
	struct task *t;
	struct cps c;
	sqlite3 *raw;
	char *path = tpath("seed.db"), *dump, *cpdump, *after, *cause;
	int64_t id;

	raw = raw_open(path);
	raw_exec(raw, seed_schema);
	raw_exec(raw, seed_rows);
	dump = raw_text(raw, seed_dump_sql);
	cpdump = raw_text(raw, seed_cp_dump_sql);
	is_int(raw_int(raw, "PRAGMA user_version"), 0, "seed at version 0");
	sqlite3_close(raw);

	ok(store_open(&s, path, STORE_RW, NULL, &cause) == 0,
	    "open a version-0 database");
	if (s == NULL)
		fatalx("%s", cause);
	is_int(store_schema_version(s), 6, "migrated to 6");
	raw = raw_open(path);
	is_int(raw_int(raw, "PRAGMA user_version"), 6, "user_version 6");
	after = raw_text(raw, seed_dump_sql);
	is_str(after, dump, "every old task row and value intact");
	free(after);
	after = raw_text(raw, seed_cp_dump_sql);
	is_str(after, cpdump, "every old checkpoint intact");
	free(after);
	after = raw_text(raw, "SELECT group_concat(quote(repo) || quote("
	                      "base_commit) || quote(verify_command) ||"
	                      " auto_approve || quote(feedback) || stage_run ||"
	                      " stage_retries || review_rounds ||"
	                      " verify_rounds || quote(failed_state), ';')"
	                      " FROM tasks");
	is_str(after,
	    "NULLNULLNULL0NULL0000NULL;NULLNULLNULL0NULL0000NULL;"
	    "NULLNULLNULL0NULL0000NULL",
	    "new columns have their defaults");
	free(after);
	is_int(raw_int(raw, "SELECT COUNT(*) FROM sqlite_master WHERE name IN"
	                    " ('events', 'journal', 'usage')"),
	    3, "new tables");
	sqlite3_close(raw);

	ok(store_task_get(s, 1, &t) == 0 && t != NULL, "old task readable");
	is_str(t->request, "Add authentication", "old request");
	is_int(t->state, WS_IMPLEMENTING, "old state");
	is_str(t->text[TC_PLAN], "the plan", "old plan");
	is_str(t->text[TC_PLAN_APPROVED_BY], "korety", "old approver");
	is_str(t->text[TC_IMPLEMENTATION_REJECTION_REASON], "impl rejected",
	    "old rejection");
	is_str(t->text[TC_ERROR_DETAILS], "an error", "old error");
	is_str(t->created_at, "2026-02-05 15:40:00", "old created_at");
	is_int(t->ival[TI_RETRY_COUNT], 2, "old retry_count");
	is_int(t->ival[TI_FAILED_STATE], -1, "new failed_state -1");
	ok(t->repo == NULL && t->auto_approve == 0, "new columns empty");
	task_free(t);
	store_task_get(s, 3, &t);
	is_int(t->ival[TI_RETRY_COUNT], 0, "NULL retry_count reads 0");
	task_free(t);
	memset(&c, 0, sizeof c);
	store_checkpoint_list(s, 1, collect_cp, &c);
	ok(c.n == 3 && strcmp(c.names[2], "start_implementation") == 0,
	    "old checkpoints listed");
	id = add_task(s, "new");
	is_int(id, 4, "new task ids continue after the old ones");
	store_close(s);

	ok(store_open(&s, path, STORE_RW, NULL, &cause) == 0 &&
	        store_schema_version(s) == 6,
	    "reopen is idempotent");
	is_int(count(s, "tasks"), 4, "no rows lost or added by reopening");
	is_int(count(s, "checkpoints"), 4, "checkpoints kept");
	store_close(s);
	free(dump);
	free(cpdump);
	free(path);

	/* A partly upgraded database: version 1 with some v2 columns. */
	path = tpath("partial.db");
	raw = raw_open(path);
	raw_exec(raw, seed_schema);
	raw_exec(raw, seed_rows);
	raw_exec(raw, "ALTER TABLE tasks ADD COLUMN repo TEXT;"
	              "ALTER TABLE tasks ADD COLUMN stage_run INTEGER NOT NULL"
	              " DEFAULT 0;"
	              "UPDATE tasks SET repo = '/r' WHERE id = 1;"
	              "PRAGMA user_version = 1;");
	sqlite3_close(raw);
	ok(store_open(&s, path, STORE_RW, NULL, &cause) == 0,
	    "open a partly upgraded database");
	if (s != NULL) {
		store_task_get(s, 1, &t);
		is_str(t->repo, "/r", "column added earlier kept its value");
		task_free(t);
		store_close(s);
	} else {
		printf("# %s\n", cause);
		free(cause);
	}
	free(path);
}

static int
file_same(const char *path, const char *buf, size_t len)
{
	size_t n;
	char *now = slurp(path, &n);
	int same = now != NULL && n == len && memcmp(now, buf, n) == 0;

	free(now);
	return same;
}

/* Open path RW and RDONLY; both must fail, name the file, change nothing. */
static void
refused(const char *path, const char *what, const char *needle)
{
	struct store *s;
	char *orig, *cause, *msg;
	size_t len;

	orig = slurp(path, &len);
	ok(store_open(&s, path, STORE_RW, NULL, &cause) == -1 && s == NULL,
	    (msg = xasprintf("%s refused", what)));
	free(msg);
	ok(cause != NULL && strstr(cause, path) != NULL &&
	        strstr(cause, needle) != NULL,
	    (msg = xasprintf("%s: message names the file", what)));
	free(msg);
	if (cause != NULL)
		printf("# %s\n", cause);
	free(cause);
	ok(file_same(path, orig, len),
	    (msg = xasprintf("%s left byte for byte unchanged", what)));
	free(msg);
	/*
	 * A read-only open checks the header and the schema but does not scan
	 * the file: damage deeper in it must show when the data is read, with
	 * the file named.
	 */
	if (store_open(&s, path, STORE_RDONLY, NULL, &cause) == -1)
		ok(1, (msg = xasprintf("%s refused read-only too", what)));
	else {
		json_t *j = NULL;
		int rc = store_stats_json(s, &j);

		/* Reads that reach the damage fail and name the file;
		 * reads that do not reach it may succeed. */
		ok(rc == 0 || strstr(store_error(s), path) != NULL,
		    (msg = xasprintf("%s: read-only reads succeed or name the "
		                     "file",
		         what)));
		if (rc == -1)
			printf("# %s\n", store_error(s));
		json_decref(j);
		store_close(s);
	}
	free(msg);
	free(cause);
	ok(file_same(path, orig, len),
	    (msg = xasprintf("%s still unchanged", what)));
	free(msg);
	free(orig);
}

static void
test_refuse(void)
{
	struct store *s;
	sqlite3 *raw;
	char *path, *cause, buf[8192];
	uint32_t x = 12345;
	int64_t psize;

	/* Random bytes. */
	path = tpath("random.db");
	for (size_t i = 0; i < sizeof buf; i++) {
		x = x * 1103515245 + 12345;
		buf[i] = (char)(x >> 16);
	}
	spew(path, buf, sizeof buf);
	refused(path, "random bytes", "is not an SQLite database");
	free(path);

	/* A text file. */
	path = tpath("notes.txt");
	{
		const char txt[] = "# my notes\nthese are important\n";

		spew(path, txt, sizeof txt - 1);
	}
	refused(path, "text file", "is not an SQLite database");
	free(path);

	/* A short file that starts like one. */
	path = tpath("short.db");
	spew(path, "SQLite", 6);
	refused(path, "short file", "is not an SQLite database");
	free(path);

	/* A valid database with a page of garbage in the middle. */
	path = tpath("damaged.db");
	raw = raw_open(path);
	raw_exec(raw,
	    "PRAGMA page_size = 4096;"
	    "CREATE TABLE a (x INTEGER, y TEXT);"
	    "CREATE TABLE b (x INTEGER, y TEXT);"
	    "CREATE TABLE c (x INTEGER, y TEXT);"
	    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1"
	    " FROM n WHERE i < 200)"
	    " INSERT INTO a SELECT i, printf('row %d %.50c', i, 'x')"
	    " FROM n;"
	    "INSERT INTO b SELECT * FROM a; INSERT INTO c SELECT * FROM"
	    " a;");
	psize = raw_int(raw, "PRAGMA page_size");
	ok(raw_int(raw, "PRAGMA page_count") > 4, "damaged.db has pages");
	sqlite3_close(raw);
	{
		size_t len;
		char *db = slurp(path, &len);

		/* Page 2 is the root of table a. */
		for (int64_t i = 0; i < psize; i++) {
			x = x * 1103515245 + 12345;
			db[psize + i] = (char)(x >> 16);
		}
		spew(path, db, len);
		free(db);
	}
	refused(path, "database with a garbage page", "damaged");
	free(path);

	/* Our own (WAL) database with page 2 overwritten. */
	path = tpath("damaged-wal.db");
	s = open_rw(path);
	for (int i = 0; i < 50; i++)
		add_task(s, "a task with some text in it to fill pages");
	store_close(s);
	{
		size_t len;
		char *db = slurp(path, &len);

		for (size_t i = 4096; i < 8192 && i < len; i++)
			db[i] = (char)0xa5;
		spew(path, db, len);
		free(db);
	}
	refused(path, "WAL database with a garbage page", "damaged");
	free(path);

	/* An empty file is a new database. */
	path = tpath("empty.db");
	spew(path, "", 0);
	ok(store_open(&s, path, STORE_RW, NULL, &cause) == 0,
	    "an empty file becomes a new database");
	store_close(s);
	free(path);

	/* A database from a newer program. */
	path = tpath("newer.db");
	raw = raw_open(path);
	raw_exec(raw, "CREATE TABLE t (x); INSERT INTO t VALUES (1);"
	              " PRAGMA user_version = 99;");
	sqlite3_close(raw);
	refused(path, "user_version 99", "newer orch-supervisor");
	free(path);

	/* A directory. */
	path = tpath("adir");
	mkdir(path, 0700);
	ok(store_open(&s, path, STORE_RW, NULL, &cause) == -1,
	    "a directory is refused");
	free(cause);
	free(path);

	/* Read-only open of a missing file. */
	path = tpath("missing.db");
	ok(store_open(&s, path, STORE_RDONLY, NULL, &cause) == -1 && s == NULL,
	    "read-only open of a missing file fails");
	ok(cause != NULL && strstr(cause, path) != NULL, "and names the file");
	free(cause);
	ok(!exists(path), "and does not create it");
	free(path);
}

static void
test_rdonly(void)
{
	struct store *s, *r;
	struct task *t;
	char *path = tpath("ro.db"), *cause;
	int good;

	s = open_rw(path);
	add_task(s, "a");
	store_close(s);
	ok(store_open(&r, path, STORE_RDONLY, NULL, &cause) == 0,
	    "read-only open");
	ok(store_task_get(r, 1, &t) == 0 && t != NULL, "read-only read");
	task_free(t);
	ok(store_task_set_state(r, 1, WS_PLANNING) == -1,
	    "read-only write fails");
	ok(store_begin(r) == -1, "read-only begin fails");
	ok(store_integrity(r, &good) == 0 && good, "read-only integrity");
	store_close(r);
	free(path);
}

static void
test_backup(void)
{
	struct store *s1, *s2, *b;
	struct ids l;
	char *path = tpath("live.db"), *dest = tpath("backup.db");
	char *tmp, *cause;
	int good = 0;
	int64_t a;

	s1 = open_rw(path);
	a = add_task(s1, "a");
	add_task(s1, "b");
	store_journal_add(s1, a, 1, 1, "planning", "reply", "x", 5, 6);
	s2 = open_rw(path);
	ok(store_begin(s2) == 0, "second connection opens a write transaction");
	add_task(s2, "uncommitted");
	store_task_set_state(s2, a, WS_FAILED);

	if (!ok(store_backup(s1, dest) == 0, "backup while another writes"))
		printf("# %s\n", store_error(s1));
	store_rollback(s2);
	tmp = xasprintf("%s.tmp-%ld", dest, (long)getpid());
	ok(!exists(tmp), "no temporary file left");
	free(tmp);

	ok(store_open(&b, dest, STORE_RDONLY, NULL, &cause) == 0,
	    "backup opens");
	if (b == NULL)
		fatalx("%s", cause);
	ok(store_integrity(b, &good) == 0 && good, "backup passes integrity");
	memset(&l, 0, sizeof l);
	store_task_list(b, -1, 0, collect_task, &l);
	ok(l.n == 2 && l.ids[0] == 1 && l.ids[1] == 2,
	    "backup has the committed rows only");
	{
		struct task *t;

		store_task_get(b, a, &t);
		ok(t != NULL && t->state == WS_PENDING && t->tokens_in == 5,
		    "backup has committed values");
		task_free(t);
	}
	store_close(b);

	ok(store_begin(s1) == 0 && store_backup(s1, dest) == -1,
	    "backup inside a transaction is refused");
	store_rollback(s1);
	ok(store_backup(s1, "/nonexistent/dir/x.db") == -1,
	    "backup to a bad path fails");

	ok(store_integrity(s1, &good) == 0 && good, "integrity ok");
	store_close(s2);
	store_close(s1);
	free(path);
	free(dest);
}

/*
 * The state directory's id: made with the database, the same at every
 * open, another for another database, and made for a database migrated
 * from version 2 (whose rows all stay).
 */
static void
test_state_id(void)
{
	char *a = tpath("sid-a.db"), *b = tpath("sid-b.db"), *cause;
	char *id1 = NULL, *id2 = NULL, *id3 = NULL, *dump, *after;
	struct store *s;
	sqlite3 *raw;

	if (store_open(&s, a, STORE_RW, NULL, &cause) == -1)
		fatalx("%s", cause);
	ok(store_state_id(s, &id1) == 0 && id1 != NULL && strlen(id1) == 32 &&
	        strspn(id1, "0123456789abcdef") == 32,
	    "state id: 32 hex digits");
	add_task(s, "one");
	store_close(s);
	if (store_open(&s, a, STORE_RW, NULL, &cause) == -1)
		fatalx("%s", cause);
	ok(store_state_id(s, &id2) == 0 && id1 != NULL && id2 != NULL &&
	        strcmp(id1, id2) == 0,
	    "state id: the same at the next open");
	store_close(s);
	if (store_open(&s, b, STORE_RW, NULL, &cause) == -1)
		fatalx("%s", cause);
	free(id2);
	id2 = NULL;
	ok(store_state_id(s, &id2) == 0 && id1 != NULL && id2 != NULL &&
	        strcmp(id1, id2) != 0,
	    "state id: another database has another");
	store_close(s);

	/* Back to version 2: the migration makes an id, keeps the rows. */
	raw = raw_open(a);
	raw_exec(raw, "DROP TABLE meta; PRAGMA user_version = 2;");
	dump = raw_text(raw, "SELECT group_concat(id || request) FROM tasks");
	sqlite3_close(raw);
	if (store_open(&s, a, STORE_RW, NULL, &cause) == -1)
		fatalx("%s", cause);
	is_int(store_schema_version(s), 6, "state id: v2 migrated to 6");
	ok(store_state_id(s, &id3) == 0 && id3 != NULL && strlen(id3) == 32,
	    "state id: made by the migration");
	store_close(s);
	raw = raw_open(a);
	after = raw_text(raw, "SELECT group_concat(id || request) FROM tasks");
	sqlite3_close(raw);
	is_str(after, dump, "state id: every row kept");
	free(dump);
	free(after);
	free(id1);
	free(id2);
	free(id3);
	free(a);
	free(b);
}

int
main(void)
{
	char tmpl[] = "/tmp/test-store.XXXXXX";

	if ((dir = mkdtemp(tmpl)) == NULL)
		fatal("mkdtemp");
	sqlite3_auto_extension((void (*)(void))catch_db);

	test_names();
	test_pragmas();
	test_lazy_events();
	test_flush();
	test_task_roundtrip();
	test_list();
	test_checkpoints();
	test_journal();
	test_events();
	test_event_state();
	test_transactions();
	test_migration();
	test_migration_v4();
	test_refuse();
	test_rdonly();
	test_backup();
	test_state_id();

	sqlite3_reset_auto_extension();
	{
		char *cmd = xasprintf("rm -rf '%s'", dir);

		if (system(cmd) != 0)
			printf("# could not remove %s\n", dir);
		free(cmd);
	}
	return tap_done();
}
