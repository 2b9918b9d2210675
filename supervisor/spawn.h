/* spawn.c: starting a program of ours from the service, and writing to it. */
#ifndef SPAWN_H
#define SPAWN_H

#include <sys/types.h>

/*
 * Start the program at path (argv[0] name) as proc_spawn starts a worker:
 * a process group of its own, killed with the supervisor, no new
 * privileges, not dumpable, umask 022, /dev/null as fd 0, out as fds 1
 * and 2 (-1: the service's stderr), sock as fd 3 and no other fd, and an
 * environment of PATH, LANG, HOME, a sanitizer build's settings and extra
 * ("NAME=VALUE", NULL-terminated; may be NULL).  The pid, or -1 with
 * *cause.  The caller closes its ends of sock and out.
 */
pid_t proc_exec(const char *path, const char *name, int sock, int out,
    char *const *extra, char **cause);

struct bufferevent;
struct proto_msg;
/*
 * Send m to a program of ours on bev, its socket: straight to the socket
 * when nothing waits before it, what the socket does not take now through
 * bev, in order.  -1 with *cause when m cannot be encoded.
 */
int proc_write(
    struct bufferevent *bev, const struct proto_msg *m, const char **cause);

#endif
