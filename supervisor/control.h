/* control.c: the HTTP/JSON control API on the Unix socket. */
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

#endif
