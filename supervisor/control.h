/* control.c: the HTTP/JSON control API on the Unix socket. */
#ifndef CONTROL_H
#define CONTROL_H

#include "store.h"

struct event_base;

int control_init(struct event_base *, struct store *, char **cause);
void control_free(void);
/* A new committed event: push it to the event streams that want it. */
void control_event(const struct event_row *);

#endif
