/* audit.c: one JSON-lines file per task under $ORCH_STATE_DIR/logs. */
#ifndef AUDIT_H
#define AUDIT_H

#include <stdint.h>

#include "store.h"

struct event_base;

/* Write what was added since the last run (the CLI writes without us). */
void audit_init(struct event_base *, struct store *);
void audit_event(const struct event_row *);
void audit_flush(void); /* remember how far we wrote */
void audit_close(void);
void audit_remove(int64_t task);
char *audit_path(int64_t task);

#endif
