/*
 * metrics.c: the service's counters and histograms, and GET /metrics in the
 * Prometheus text exposition format (version 0.0.4).  The hooks
 * (metrics_observe_*, metrics_worker_*) only add to numbers in memory;
 * the gauges that come from the database are read when a scraper asks.
 */
#ifndef METRICS_H
#define METRICS_H

#include <stdint.h>

#include "proto.h"

struct buf;
struct evhttp_request;
struct store;

/* A monotonic clock in seconds, for the durations passed below. */
double metrics_now(void);

/* A stage's worker, from its start to its committed result. */
void metrics_observe_stage(enum stage, double seconds);
/*
 * A journal entry a worker sent (committed): a model reply (its latency,
 * seconds, and tokens) or a sandboxed command's result (its exit kind).
 * data is the worker's and untrusted.
 */
void metrics_observe_journal(const char *kind, const char *data, double seconds,
    uint64_t tokens_in, uint64_t tokens_out);
/* A person approved or rejected after waiting since the task's
 * updated_at (the store's UTC timestamp). */
void metrics_observe_approval(enum stage gate, const char *since);
/* A database commit (store_set_commit_hook's callback). */
void metrics_observe_commit(double seconds, int durable, void *arg);
void metrics_worker_started(enum stage, int restart);
/* A worker killed; reason as given to proc_kill (NULL: asked to stop). */
void metrics_worker_killed(const char *reason);

/* The exposition text: the counters and the store's gauges. */
int metrics_render(struct store *, unsigned workers, struct buf *out);
/* GET /metrics on the control API; workers: how many run now. */
void metrics_serve(struct evhttp_request *, struct store *, unsigned workers);

#endif
