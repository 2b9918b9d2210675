/* sched.c: the state machine that runs tasks through their stages. */
#ifndef SCHEDULER_H
#define SCHEDULER_H

#include <stdint.h>

#include "store.h"

struct event_base;

struct sched_opts {
	int64_t only_task; /* foreground run: this task only (0: all) */
	int stop_at_gate;  /* foreground: done when only_task waits */
	int nodes;         /* a node (PostgreSQL): run only what it leases */
};
void sched_init(struct event_base *, struct store *, const struct sched_opts *);
void sched_kick(void); /* look for work soon */
void sched_shutdown(void);
/* Foreground: only_task has ended or waits; service: all stopped. */
int sched_done(void);
/* A task changed outside the scheduler (API): stop its worker if it was
 * cancelled, let it run again if it was resumed. */
void sched_task_changed(int64_t task);
void sched_free(void);
/* Make every lazy commit durable now and send the ACKs that wait for it
 * (the group commit of sched.c); stops the service if the sync fails. */
void sched_flush(void);
/* Add an event to a task's log and to the service log. */
void sched_event(int64_t task, enum event_kind, const char *stage,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
