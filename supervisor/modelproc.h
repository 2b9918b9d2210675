/*
 * modelproc.c: the model process (orch-model), one per service: started
 * with the service when the provider is an HTTP one, restarted with
 * backoff when it dies or misbehaves, stopped with the service.  It makes
 * the workers' model calls; the scheduler relays them (MODEL_CALL ->
 * modelproc_ask, the answer -> MODEL_REPLY) and knows nothing else of it.
 */
#ifndef MODELPROC_H
#define MODELPROC_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

struct modelproc_cbs {
	/* A line for the call's task log (level PROTO_LOG_*, checked). */
	void (*on_log)(void *arg, int level, const char *text);
	/* The call's end: called once, unless it was dropped first. */
	void (*on_done)(void *arg, int ok, int permanent, const char *text,
	    const char *data, size_t datalen);
};

/*
 * Start the model process if the configured provider needs one (openai,
 * anthropic): 0, or -1 with *cause when it cannot be started at all (its
 * program is missing).  Later failures are restarts with backoff.
 */
int modelproc_start(struct event_base *, char **cause);
/* Stop it (the service stops): calls in flight get no answer. */
void modelproc_stop(void);
/* Whether it runs (or is being restarted); if not, why (for the user). */
int modelproc_enabled(void);
const char *modelproc_why(void);
/*
 * Ask for one model turn of task's stage run with the worker's call data
 * (copied).  Returns the call's id, or 0 when the data is too large for a
 * frame (nothing is asked); cbs get its lines and its end with arg, never
 * from inside this call.  A call still in flight when the process dies is
 * asked again of the next one.
 */
uint64_t modelproc_ask(int64_t task, const char *stage, int64_t run,
    const char *data, size_t len, const struct modelproc_cbs *cbs, void *arg);
/* Give the call up (its worker is gone): no callback for it follows. */
void modelproc_drop(uint64_t id);
/* Its pid, or -1 while none runs (for the tests' logs). */
int modelproc_pid(void);

#endif
