/* control.c: the HTTP/JSON control API on the Unix socket (and on TCP). */
#ifndef CONTROL_H
#define CONTROL_H

#include <stdint.h>

#include "store.h"

struct event_base;

/*
 * What the API asks of the layers that run tasks, given by the service
 * (server.c), so that the API never calls the scheduler or the process
 * layer itself.
 */
struct control_cbs {
	void (*task_added)(void);           /* a task was submitted */
	void (*task_changed)(int64_t task); /* approved, rejected, ... */
	unsigned (*workers_running)(void);
};

int control_init(struct event_base *, struct store *,
    const struct control_cbs *, char **cause);
void control_free(void);
/* A new committed event: push it to the event streams that want it. */
void control_event(const struct event_row *);

/* What a person asks of a task: the fields of POST /v1/tasks/ID/VERB. */
struct control_op {
	const char *by;
	const char *reason;
	const char *repo; /* resume only */
	const char *plan; /* approve only: the plan as a person edited it */
	int64_t budget;   /* approve only: a new token budget (0: unchanged) */
	double max_cost;  /* approve only: a new cost budget (< 0: unchanged) */
};
/*
 * Do verb (approve, reject, cancel, resume) to task id and wake the
 * scheduler: the JSON API and the console's forms alike.  0, or -1 with
 * *cause (malloc'd) and *code an HTTP status.
 */
int control_task_op(int64_t id, const char *verb, const struct control_op *,
    char **cause, int *code);
/*
 * Submit a task (max_tokens and max_cost: its own budgets, 0 for the
 * service's): repo checked against ORCH_REPOS when tcp is set.  0 and
 * *id, or -1 with *cause (malloc'd) and *code.
 */
int control_submit(const char *request, const char *repo, const char *verify,
    const char *auto_approve, int64_t max_tokens, double max_cost, int tcp,
    int64_t *id, char **cause, int *code);

#endif
