/* notify.c: ORCH_NOTIFY_URL, a JSON POST when a task waits for approval,
 * fails or completes; retried with backoff, never blocking the loop. */
#ifndef NOTIFY_H
#define NOTIFY_H

#include "store.h"

struct event_base;

void notify_init(struct event_base *);
void notify_event(struct store *, const struct event_row *);
void notify_free(void);

#endif
