/* server.c: the service. */
#ifndef SERVER_H
#define SERVER_H

#include <stdint.h>

/* Take the state directory lock; 0 taken, 1 held by a running service. */
int server_lock(char **cause);
/*
 * Run the service until SIGTERM/SIGINT, or in the foreground for one task
 * (only_task) until it ends or, with stop_at_gate, waits for approval.
 * tick(arg) runs every 100 ms and once at the end (the foreground printer).
 */
int server_run(
    int64_t only_task, int stop_at_gate, void (*tick)(void *), void *arg);
/* True when the loop is asked to stop (SIGTERM/SIGINT). */
extern volatile int server_quit;

#endif
