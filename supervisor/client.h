/* client.c: the CLI's side of the control API (libcurl over the socket). */
#ifndef CLIENT_H
#define CLIENT_H

#include <jansson.h>

/* 0 and *reply (JSON) set, or -1 with *err; *code is the HTTP status. */
int client_request(const char *method, const char *path, json_t *body,
    json_t **reply, int *code, char **cause);
/* 1 when a service answers on the socket. */
int client_service_running(void);
/*
 * Follow a server-sent event stream: cb gets each "data:" object (return
 * non-zero to stop).  Returns 0 when the service ended the stream (*ended
 * set when it said "end": the task is over), or -1 with *err; stops early
 * when *stop becomes non-zero.
 */
int client_follow(const char *path, int (*cb)(json_t *, void *), void *arg,
    volatile int *stop, int *ended, char **cause);

#endif
