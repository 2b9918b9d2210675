/* sdnotify.c: the systemd notify protocol (Type=notify), without
 * libsystemd: READY=1, STATUS=, WATCHDOG=1, STOPPING=1. */
#ifndef SDNOTIFY_H
#define SDNOTIFY_H

#include "store.h"

struct event_base;

void sdnotify_init(struct event_base *);
/* Send one "VAR=value" datagram to $NOTIFY_SOCKET; 0 when unset. */
int sdnotify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* STATUS= when the counts change: running workers, and the store's. */
void sdnotify_status(struct store *, unsigned running);
void sdnotify_free(void);

#endif
