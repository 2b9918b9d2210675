/* server.c: the service. */
#ifndef SERVER_H
#define SERVER_H

#include <stdint.h>

#include "store.h"

/* Take the state directory lock; 0 taken, 1 held by a running service. */
int server_lock(char **cause);
/*
 * Open the store the configuration names: PostgreSQL at ORCH_DATABASE_URL,
 * else SQLite at DB_PATH.  The service and every command open it here.
 * Read-only: 0 with *st NULL when there is no database yet.
 */
int server_store_open(struct store **st, enum store_mode, char **cause);
/* The database as a person may see it: the path, or the URL with its
 * password masked (malloc'd). */
char *server_store_name(void);
/*
 * The single writer's lock on the database itself, the state directory
 * lock's counterpart for a database that other hosts reach too: 0 taken,
 * 1 held by another process (*cause says so), -1 error.
 */
int server_store_lock(struct store *, char **cause);
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
