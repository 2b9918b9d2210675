/*
 * store_impl.h: what the store's backends share, below store.h.
 *
 * store_dispatch.c is the dispatcher: a struct store is a backend's table of
 * operations and its connection.  Each backend (store_sqlite.c,
 * store_pg.c) defines its own struct store_be, which nothing else sees,
 * and exports its table of operations to store_dispatch.c alone.
 */
#ifndef STORE_IMPL_H
#define STORE_IMPL_H

#include <time.h>

#include "store.h"

struct store_be;

typedef int (*store_row_cb)(const char *const *vals, void *arg);

/* The store.h functions, one for one, on a backend's connection. */
struct store_ops {
	const char *name; /* "sqlite", "postgresql" */
	void (*close)(struct store_be *);
	const char *(*error)(struct store_be *);
	int (*storage_error)(struct store_be *);
	int (*probe)(struct store_be *);
	int (*schema_version)(struct store_be *);
	int (*state_id)(struct store_be *, char **);
	int (*lock)(struct store_be *, int *);
	int (*info_json)(struct store_be *, json_t **);
	int (*begin)(struct store_be *, int lazy);
	int (*commit)(struct store_be *);
	int (*flush)(struct store_be *); /* NULL: commits are durable */
	int (*flush_pending)(struct store_be *);
	void (*rollback)(struct store_be *);
	int (*task_add)(struct store_be *, const struct task_new *, int64_t *);
	int (*task_get)(struct store_be *, int64_t, struct task **);
	int (*task_set_state)(struct store_be *, int64_t, enum wstate);
	int (*task_set_status)(struct store_be *, int64_t, enum tstatus);
	int (*task_set_text)(
	    struct store_be *, int64_t, enum task_col, const char *);
	int (*task_stamp)(struct store_be *, int64_t, enum task_col);
	int (*task_set_int)(
	    struct store_be *, int64_t, enum task_icol, int64_t);
	int (*task_set_repo)(
	    struct store_be *, int64_t, const char *, const char *);
	int (*task_list)(struct store_be *, int, int, store_task_cb, void *);
	int (*task_list_desc)(
	    struct store_be *, int, int64_t, store_task_cb, void *);
	int (*task_runnable)(
	    struct store_be *, int64_t, int64_t *, size_t, size_t *);
	int (*task_counts)(struct store_be *, int64_t[WS_MAX]);
	int (*checkpoint_add)(
	    struct store_be *, int64_t, const char *, const char *);
	int (*checkpoint_list)(
	    struct store_be *, int64_t, store_checkpoint_cb, void *);
	int (*journal_add)(struct store_be *, int64_t, int64_t, int64_t,
	    const char *, const char *, const char *, int64_t, int64_t);
	int (*journal_list)(
	    struct store_be *, int64_t, int64_t, store_journal_cb, void *);
	int (*turn_add)(struct store_be *, int64_t, const char *, const char *,
	    int64_t, int64_t, int64_t, int64_t);
	int (*turn_sums)(struct store_be *, int64_t, store_turn_cb, void *);
	int (*event_add)(struct store_be *, int64_t, enum event_kind,
	    const char *, const char *);
	int (*event_add_data)(struct store_be *, int64_t, enum event_kind,
	    const char *, const char *, const json_t *);
	int (*event_add_state)(struct store_be *, int64_t, enum wstate,
	    const char *, const char *);
	int (*event_list)(
	    struct store_be *, int64_t, int64_t, int, store_event_cb, void *);
	int (*usage_json)(struct store_be *, int64_t, json_t **);
	int (*stats_json)(struct store_be *, json_t **);
	int (*backup)(struct store_be *, const char *);
	int (*integrity)(struct store_be *, int *);
	void (*set_event_hook)(struct store_be *, void (*)(void *), void *);
	void (*set_commit_hook)(
	    struct store_be *, void (*)(double, int, void *), void *);
	void (*set_conn_hook)(struct store_be *,
	    void (*)(int, const char *, double, void *), void *); /* NULL */
	int (*event_max)(struct store_be *, int64_t *);
	int (*wait_events)(struct store_be *, int); /* NULL: cannot */
	int (*task_count)(struct store_be *, enum tstatus, int64_t *);
	int (*gc_candidates)(
	    struct store_be *, unsigned, store_task_cb, void *);
	int (*gc_task)(struct store_be *, int64_t, int64_t *, int64_t *);
	int (*vacuum)(struct store_be *);
	/*
	 * store_copy's half: every row of table (columns cols, id order)
	 * as text (NULL for NULL), and one row into table; load_begin
	 * checks that there is no task and opens the transaction that
	 * load_end commits after setting the id sequences.
	 */
	int (*rows)(struct store_be *, const char *table,
	    const char *const *cols, size_t ncols, store_row_cb, void *);
	int (*load_begin)(struct store_be *);
	int (*load_row)(struct store_be *, const char *table,
	    const char *const *cols, size_t ncols, const char *const *vals);
	int (*load_end)(struct store_be *, int ok);
	int (*count)(struct store_be *, const char *table, int64_t *);
	/* Nodes and leases (store.h); NULL on a single-service backend. */
	int (*node_join)(struct store_be *, const char *name, unsigned capacity,
	    unsigned lease_s, const char *previous, char **cause);
	const char *(*node_incarnation)(struct store_be *);
	int (*node_beat)(struct store_be *, unsigned, int64_t **, size_t *);
	int (*node_leave)(struct store_be *);
	int (*lease_claim)(
	    struct store_be *, int64_t, size_t, unsigned, int64_t *, size_t *);
	int (*lease_held)(struct store_be *, int64_t);
	int64_t (*lease_epoch)(struct store_be *, int64_t);
	size_t (*lease_count)(struct store_be *);
	size_t (*lease_list)(struct store_be *, int64_t *, size_t);
	int (*lease_release)(struct store_be *, int64_t);
	int64_t (*lease_lost)(struct store_be *);
	int (*tasks_changed)(
	    struct store_be *, int64_t *, size_t, size_t *, int *);
	int (*nodes_json)(struct store_be *, json_t **);
};

/*
 * The names the database holds for each enum (store_dispatch.c).  The strings
 * are on disk (the states and statuses are the Python system's): never rename
 * one.
 */
extern const char *const wstate_names[WS_MAX];
extern const char *const tstatus_names[TS_MAX];
extern const char *const event_kind_names[EV_MAX];
extern const char *const task_col_names[TC_MAX];
extern const char *const task_icol_names[TI_MAX];

/*
 * Seconds from t0 (CLOCK_MONOTONIC) to now: how long a COMMIT took, for
 * the commit hook both backends call after each one.
 */
double store_seconds_since(const struct timespec *t0);

/* Each backend's table and its open (store.h's store_open and
 * store_open_url). */
extern const struct store_ops store_sqlite_ops;
extern const struct store_ops store_pg_ops;
int store_sqlite_open(struct store_be **, const char *path, enum store_mode,
    const struct store_opts *, char **cause);
int store_pg_open(struct store_be **, const char *url, enum store_mode,
    const struct store_opts *, char **cause);

#endif
