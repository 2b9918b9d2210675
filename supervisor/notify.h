/* notify.c: ORCH_NOTIFY_URL, a JSON POST when a task waits for approval,
 * fails or completes; retried with backoff, never blocking the loop. */
#ifndef NOTIFY_H
#define NOTIFY_H

#include "store.h"

struct event_base;

/* node: the service's node name when it is one of many on a database
 * (each state change is then notified by the node that made it), or NULL. */
void notify_init(struct event_base *, const char *node);
void notify_event(struct store *, const struct event_row *);
void notify_free(void);

#endif
