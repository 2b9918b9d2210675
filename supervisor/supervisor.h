/*
 * orch-supervisor: the service and the CLI.  One section per source file;
 * the store has its own header (store.h).
 */
#ifndef SUPERVISOR_H
#define SUPERVISOR_H

#include <stdint.h>
#include <stdio.h>
#include <sys/queue.h>
#include <sys/types.h>

#include <jansson.h>

#include "proto.h"
#include "store.h"

struct event_base;
struct bufferevent;
struct event;

/* config.c: settings from flags, the environment, .env and defaults. */
struct config {
	char *state_dir;
	char *db_path;
	char *env_file; /* --env-file, else ./.env when present */
	int enable_resume;
	int backup_on_start;
	int autocheckpoint;
	char *provider;
	char *base_url;
	char *model;
	char *api_key;
	char *script;
	char *scripted_trace;
	unsigned llm_timeout_s;
	unsigned llm_max_retries;
	int auto_approve;
	unsigned max_workers;
	unsigned max_retries;
	unsigned retry_backoff_ms;
	unsigned worker_timeout_s;
	unsigned max_steps;
	unsigned max_review_rounds;
	unsigned max_verify_rounds;
	unsigned cmd_timeout_s;
	uint64_t max_tokens;
	char *verify_command;
	char *profiles_dir;
	char *worker_path;
	int log_level;
	char *notify_url;         /* ORCH_NOTIFY_URL */
	uint64_t audit_max_bytes; /* ORCH_AUDIT_MAX_BYTES, per file */
	unsigned retention_days;  /* ORCH_RETENTION_DAYS: gc's default */
	unsigned max_connections; /* ORCH_MAX_CONNECTIONS on the socket */
	/* ORCH_SNAPSHOT_MAX_FILE_BYTES: larger files stay out of snapshots */
	uint64_t snapshot_max_file_bytes;
};

extern struct config cfg;

/* Load the configuration; on error print what is wrong and exit 2. */
void config_load(const char *env_file);
int config_auto_approve_parse(const char *, int *);
const char *config_auto_approve_name(int);
/* Parse a .env file's text into cfg (the fuzz target's entry). */
int config_parse_env(FILE *f, const char *path, char **cause);
/* Where the sandbox profiles are read from (malloc'd). */
char *config_profiles_dir(void);
/* The worker program to exec: ORCH_WORKER_PATH, else beside us. */
const char *config_worker_path(void);
/* The control API's Unix socket in the state directory (malloc'd). */
char *config_socket_path(void);
/*
 * Fill the settings of START (everything but the task's own fields) from
 * cfg, every default worked out here; the strings are malloc'd (freed by
 * msg_start_clear).
 */
void config_start(struct msg_start *);
/* A copy of text from outside, made valid UTF-8, or NULL for NULL. */
char *config_text(const char *);
/* Make the state directory (0700) and its subdirectories. */
int config_make_state_dir(char **cause);

/* task.c: operations on one task, shared by the service and the CLI. */

/*
 * Move a task to state in the caller's transaction: sets workflow_state and
 * status, records an event, and when state starts a worker stage with
 * new_run set, starts a new stage run (the journal's key) and resets the
 * stage's restart count.
 */
int task_enter(struct store *, const struct task *, enum wstate state,
    int new_run, const char *why);
/*
 * The most a task's request may be, in bytes of UTF-8.  The control API's
 * body limit (control.c) holds it JSON-escaped at its worst (6 bytes for a
 * control character), and the worker's START frame holds it beside the
 * plan and the review.
 */
#define TASK_MAX_REQUEST (512 * 1024)
/* A rejection's reason (the next round's feedback) and an approver's name. */
#define TASK_MAX_REASON (64 * 1024)
#define TASK_MAX_NAME   256
/* A text a person gives a task: at most max bytes of UTF-8, else -1 with
 * *err naming what (and *code 400). */
int task_check_text(
    const char *what, const char *s, size_t max, char **cause, int *code);
/* The operations the CLI and the control API offer.  Each returns 0, or -1
 * with *err a malloc'd message; *code is an HTTP-like status (400, 404,
 * 409, 500) saying what kind of error it was. */
int task_submit(struct store *, const struct task_new *, int64_t *id,
    char **cause, int *code);
int task_approve(
    struct store *, int64_t id, const char *by, char **cause, int *code);
int task_reject(struct store *, int64_t id, const char *reason, const char *by,
    char **cause, int *code);
int task_cancel(struct store *, int64_t id, char **cause, int *code);
int task_resume(struct store *, int64_t id, char **cause, int *code);
/* Give a task without a repository (one the Python orchestrator made) the
 * git work tree repo, at its HEAD. */
int task_set_repo(
    struct store *, int64_t id, const char *repo, char **cause, int *code);
/* Why a task without a repository cannot run, and the fix (malloc'd). */
char *task_no_repo(int64_t id);
/* Check that repo is a git work tree with a commit and nothing half done;
 * fills *abs (absolute path) and *head. */
int task_check_repo(const char *repo, char **abs, char **head, char **cause);
/* Run argv (found in PATH) with no input and its output discarded: its
 * exit status, or -1 when it could not run or was killed. */
int run_quiet(char *const argv[]);
/*
 * The task's result branch: orch/task-ID, or the name the worker chose
 * when a branch of that name was another state directory's (recorded in
 * the after_implementation checkpoint).  malloc'd.
 */
char *task_branch(struct store *, const struct task *);
json_t *task_json(struct store *, const struct task *, int full);
/*
 * The whole change of the task's last implementation (base commit to its
 * result), as git prints it, NUL-terminated, its first max bytes in *out
 * and its size in *total: what a person approves.  Runs git and waits.
 */
int task_diff(struct store *, const struct task *, size_t max, char **out,
    size_t *total, char **cause);
/*
 * Text from outside (a model, a repository, an old database) as a JSON
 * string, made valid UTF-8 when it is not, never NULL (json_null() for
 * NULL): jansson refuses invalid text, and a refused string would drop a
 * field, an event or a whole answer.
 */
json_t *task_json_text(const char *);

/*
 * proc.c: starting, watching and stopping worker processes.  A worker is
 * proc.c's own; its owner (the scheduler) learns what happens to it only
 * through the callbacks it gave proc_spawn, never the other way round.
 */
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
void proc_reap(void); /* the SIGCHLD handler's waitpid loop */
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

/* sched.c: the state machine that runs tasks through their stages. */
struct sched_opts {
	int64_t only_task; /* foreground run: this task only (0: all) */
	int stop_at_gate;  /* foreground: done when only_task waits */
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
/* Add an event to a task's log and to the service log. */
void sched_event(int64_t task, enum event_kind, const char *stage,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* server.c: the service. */
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

/* control.c: the HTTP/JSON control API on the Unix socket. */
int control_init(struct event_base *, struct store *, char **cause);
void control_free(void);
/* A new committed event: push it to the event streams that want it. */
void control_event(const struct event_row *);

/* audit.c: one JSON-lines file per task under $ORCH_STATE_DIR/logs. */
/* Write what was added since the last run (the CLI writes without us). */
void audit_init(struct event_base *, struct store *);
void audit_event(const struct event_row *);
void audit_flush(void); /* remember how far we wrote */
void audit_close(void);
void audit_remove(int64_t task);
char *audit_path(int64_t task);

/* notify.c: ORCH_NOTIFY_URL, a JSON POST when a task waits for approval,
 * fails or completes; retried with backoff, never blocking the loop. */
void notify_init(struct event_base *);
void notify_event(struct store *, const struct event_row *);
void notify_free(void);

/* sdnotify.c: the systemd notify protocol (Type=notify), without
 * libsystemd: READY=1, STATUS=, WATCHDOG=1, STOPPING=1. */
void sdnotify_init(struct event_base *);
/* Send one "VAR=value" datagram to $NOTIFY_SOCKET; 0 when unset. */
int sdnotify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sdnotify_status(struct store *); /* STATUS= when the counts change */
void sdnotify_free(void);

/* gc.c: retention for finished tasks (worktrees, events, journal, audit
 * files), shared by `gc` without a service and POST /v1/gc. */
int gc_run(struct store *, unsigned days, json_t **report, char **cause);

/* client.c: the CLI's side of the control API (libcurl over the socket). */
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

/* doctor.c: worker/sandbox.c's checks, for `doctor`: 0, or -1 and *cause
 * (with the fix). */
int doctor_sandbox(char **cause);
int doctor_profile(const char *dir, const char *stage, char **cause);
/* What bounds a command's memory and processes here (*what malloc'd):
 * 0 without cgroups, else 1. */
int doctor_limits(char **what);

/* cli.c: the commands. */
int cli_main(int argc, char **argv);

#endif
