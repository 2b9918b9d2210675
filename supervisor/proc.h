/*
 * proc.c: starting, watching and stopping worker processes.  A worker is
 * proc.c's own; its owner (the scheduler) learns what happens to it only
 * through the callbacks it gave proc_spawn, never the other way round.
 */
#ifndef PROC_H
#define PROC_H

#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

struct event_base;

struct worker;
struct proc_cbs {
	/* A worker's message, framed, decoded and checked to be one a
	 * worker may send; the callback may proc_kill it. */
	void (*on_msg)(struct worker *, struct proto_msg *, void *arg);
	/* The worker is reaped and its stream has ended: called once, from
	 * a deferred event; the owner frees it with proc_free. */
	void (*on_exit)(struct worker *, void *arg);
	/* proc_free frees the owner's arg (may be NULL). */
	void (*on_free)(void *arg);
};

void proc_init(struct event_base *);
void proc_fini(void); /* after the last worker is freed */
/* Start the worker for task's stage; cbs must outlive the worker. */
struct worker *proc_spawn(struct event_base *, int64_t task, const char *stage,
    int64_t run, const struct proc_cbs *cbs, void *arg, char **cause);
int proc_send(struct worker *, const struct proto_msg *);
/* Kill the worker's whole process group; reason is kept for the log. */
void proc_kill(struct worker *, const char *reason);
/* Reap every worker that has ended, now. */
void proc_reap(void);
/* The SIGCHLD handler's part: nothing where pidfds reap workers. */
void proc_sigchld(void);
void proc_watchdog(uint64_t timeout_ms);
struct worker *proc_find_task(int64_t task);
/* The worker after w (the first for NULL), or NULL. */
struct worker *proc_next(struct worker *w);
unsigned proc_count(void);
void proc_free(struct worker *);
/* At exit: kill every worker still running, wait for it, free them all. */
void proc_free_all(void);
pid_t proc_pid(const struct worker *);
int64_t proc_task(const struct worker *);
const char *proc_stage(const struct worker *);
int64_t proc_run(const struct worker *);
void *proc_arg(const struct worker *); /* proc_spawn's arg */
int proc_reaped(const struct worker *);
int proc_status(const struct worker *); /* wait status once reaped */
/* Why we killed it (a protocol error, no heartbeat), or NULL. */
const char *proc_failure(const struct worker *);
/* Its last lines on stderr (at most lines), malloc'd, maybe "". */
char *proc_errtail(const struct worker *, int lines);
/* Describe an exit ("exited with status 1", "killed by signal 9"). */
char *proc_describe(int status);

#endif
