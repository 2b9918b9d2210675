/*
 * orch-worker: runs one stage of one task.  One section per source file.
 */
#ifndef WORKER_H
#define WORKER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "llm.h"
#include "proto.h"
#include "sandbox.h" /* the sandbox: sandbox.c, profile.c, seccomp.c, cgroup.c */

/* main.c: the link to the supervisor (fd 3). */

/*
 * Every failure of the link ends the worker with WORKER_EXIT_TEMP: the
 * supervisor restarts the stage from what it committed.
 */
/* Send a heartbeat if one is due, and stop if the supervisor asked. */
void wio_heartbeat(void *unused);
/* Sleep ms milliseconds, heartbeating. */
void wio_sleep(unsigned ms);
/* Add a line to the task's log (kind PROTO_LOG_*). */
void wio_log(int kind, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Record a named checkpoint; returns once the supervisor committed it. */
void wio_checkpoint(const char *name, const char *data);
/* The next replayed journal entry if it has this kind, else NULL (the
 * replay is over and the caller computes the step). */
const char *journal_next(const char *kind);
/* Commit a step's result; returns once the supervisor committed it. */
void journal_put(
    const char *kind, const char *data, int64_t tokens_in, int64_t tokens_out);
/* Send the stage's result and exit once it is committed. */
void wio_result(int ok, const char *error, json_t *data)
    __attribute__((noreturn));
/*
 * One model turn made by the model process (orch-model) through the
 * supervisor: MODEL_CALL, then heartbeats until the MODEL_REPLY.  As
 * llm_chat: 0 with *reply, or -1 with *cause and *permanent.  The caller
 * journals the reply before it uses it.
 */
int wio_model_call(const struct llm_turn *, json_t *messages, json_t *tools,
    json_t **reply, char **cause, int *permanent);
/* The replayed entries of this stage run (for the workspace restore). */
size_t journal_count(void);
const char *journal_data(size_t i, const char **kind);

/* stage.c: the stages. */
struct stage_ctx {
	int64_t task;
	enum stage id;
	const char *name; /* stage_name(id) */
	int64_t run;
	int round;
	const struct msg_start *start;
	/* The model's settings from START, as llm.c reads them:
	 * {provider, base_url, model, api_key, script, trace, timeout_s,
	 * max_retries}, the strings only when START has them. */
	json_t *llm;
	const char *worktree;
	const char *repo;
	const char *ref;
	const char *base;
	const char *profiles_dir;
	unsigned max_steps;
	unsigned cmd_timeout_s;
};
void stage_run(struct stage_ctx *) __attribute__((noreturn));

/* Limits on what the model may hand the tools and what they hand back. */
/* TOOL_MAX_ARGS (bytes of one call's arguments): llm.h */
#define TOOL_MAX_READ    (256 * 1024)  /* bytes read_file returns */
#define TOOL_MAX_WRITE   (1024 * 1024) /* bytes write_file/edit_file write */
#define TOOL_MAX_LIST    2000          /* entries list_files returns */
#define TOOL_MAX_RESULT  (256 * 1024)  /* bytes of any tool result */
#define TOOL_MAX_SUMMARY (64 * 1024)   /* bytes of finish's summary */
/* bytes of run_command's command: it is one argument of sh -c, and the
 * kernel refuses one over 128 KiB (MAX_ARG_STRLEN) with E2BIG */
#define TOOL_MAX_COMMAND (64 * 1024)

/* workspace.c: the task's git worktree and its snapshots. */

/*
 * Every git command runs through common/git.c: a scrubbed environment, no
 * hooks, no pager, no filters or diff drivers, no global or system
 * configuration; on a worktree, GIT_DIR and GIT_WORK_TREE are pinned to
 * the repository's record of it (ws_create), never read from the
 * workspace.  All functions return 0, or -1 with *cause a malloc'd
 * message.
 */
#define WS_MAX_FILE_BYTES 52428800ULL /* ORCH_SNAPSHOT_MAX_FILE_BYTES */
struct ws_options {
	/* Written as the trailer "Orch-State: ID" of every commit made; a
	 * ref whose commit lacks it is someone else's.  NULL: no check. */
	const char *state_id;
	uint64_t max_file_bytes; /* larger files are left out of snapshots */
	unsigned timeout_s;      /* limit of each git of a snapshot (0: none) */
	void (*tick)(void *);    /* called while git runs (heartbeat) */
	void *arg;
	/* With state_id, written as the trailer "Orch-Epoch: N" too when
	 * not 0: the task's lease epoch (origin_set_epoch). */
	uint64_t epoch;
};
void ws_configure(const struct ws_options *);

/*
 * Remove the lock files a killed git may have left on what only this task's
 * worker touches (the worktree's index and HEAD, ref and branch): one worker
 * runs a task at a time, so at a stage's start any such lock is stale.
 */
void ws_unlock(
    const char *repo, const char *dir, const char *ref, const char *branch);
/*
 * Create the worktree at dir from commit if it does not exist yet (and
 * return 1; 0 when it existed); a directory left by an interrupted
 * creation is removed first.
 */
int ws_create(
    const char *repo, const char *dir, const char *commit, char **cause);
/*
 * Make dir hold exactly the files of commit: tracked changes reset,
 * untracked files removed (ignored files are left alone).
 */
int ws_restore(const char *dir, const char *commit, char **cause);
/*
 * Record the worktree's files (tracked and untracked, not ignored) as a
 * commit whose parent is the commit ref points at (or parent when ref does
 * not exist yet), and point ref at it.  When nothing changed, no commit is
 * made and *commit is the current one.  *commit is malloc'd (40 hex).
 * Nested repositories and files over the size limit are left out, and
 * *note (malloc'd, or NULL) says so for the model.  On failure *permanent
 * says whether trying again cannot help.
 */
int ws_snapshot(const char *dir, const char *ref, const char *parent,
    const char *message, char **commit, char **note, int *permanent,
    char **cause);
/*
 * Which of two refs this state directory may write: alt when it exists
 * and is ours, else ref when it does not exist or is ours, else alt.
 * Fails when both exist and are someone else's.
 */
int ws_pick_ref(const char *dir, const char *ref, const char *alt,
    char **chosen, int *permanent, char **cause);
/* The commit a ref points at, or NULL (and 0) when it does not exist. */
int ws_ref_get(const char *dir, const char *ref, char **commit, char **cause);
/*
 * Set branch (e.g. "orch/task-7") to one commit on top of base holding the
 * tree of commit, with message (any size: it goes on standard input).  A
 * branch that exists and is not ours is refused.  *result is malloc'd.
 */
int ws_squash(const char *dir, const char *branch, const char *base,
    const char *commit, const char *message, char **result, int *permanent,
    char **cause);
/* `git diff --stat` and the diff of commit against base, each cut at max
 * bytes with a note saying how much was left out. */
int ws_diffstat(const char *dir, const char *base, const char *commit,
    char **out, char **cause);
int ws_diff(const char *dir, const char *base, const char *commit, size_t max,
    char **out, char **cause);
/* Remove the worktree (the refs stay). */
int ws_remove(const char *repo, const char *dir, char **cause);

/* tools.c: the tools offered to the model, and their dispatcher. */

struct tool_ctx {
	int rootfd;        /* O_PATH|O_DIRECTORY descriptor of the workspace */
	const char *stage; /* planning, implementing, reviewing, verifying */
	/* Runs a command in the stage's sandbox (sandbox.c); NULL: refused. */
	int (*run_command)(void *arg, const char *command, unsigned timeout_s,
	    char **result_json);
	void *run_arg;
	/* The whole diff under review, valid UTF-8, for read_diff; or NULL. */
	const char *diff;
	size_t diff_len;
};

enum tool_outcome {
	TOOL_DONE,     /* result is for the model */
	TOOL_ERROR,    /* result is an error message for the model */
	TOOL_TERMINAL, /* submit_plan, submit_review, finish: the stage ends */
};

struct tool_result {
	enum tool_outcome outcome;
	char *text;    /* malloc'd: the tool result for the model */
	int changed;   /* the call may have changed files */
	json_t *value; /* TOOL_TERMINAL: the validated arguments */
	/* write_file, edit_file: what changed, for the log: {path, bytes,
	 * lines_added, lines_removed, created}; else NULL. */
	json_t *facts;
};

/*
 * Check and run one tool call.  args is the model's JSON text.  Invalid JSON,
 * an unknown tool, a tool not offered in this stage, missing, extra-large or
 * wrongly typed arguments, and paths that leave the workspace are all
 * TOOL_ERROR results with a message the model can act on; nothing is run.
 */
void tool_exec(const struct tool_ctx *, const char *name, const char *args,
    struct tool_result *);
void tool_result_clear(struct tool_result *);
/* The tools offered in a stage as a JSON array of
 * {"name","description","parameters": JSON schema}. */
json_t *tool_schemas(const char *stage);

/* confine.c: the worker's own Landlock confinement (best-effort). */
struct confine_spec {
	const char *worktree;    /* read-write; created when missing */
	const char *repo;        /* read-write: git writes objects, refs */
	const char *deny;        /* never reachable (the state directory),
	                            except the worktree; or NULL */
	const char *const *read; /* more read-only paths, NULL-ended */
	const char *const *write_files; /* files appended to, NULL-ended */
};
/* Landlock's ABI version, or 0 when the kernel does not offer it. */
int confine_abi(void);
/*
 * Confine this process and all it starts: the ABI version on success; 0
 * when Landlock cannot be used, -1 on a failure, both with *cause and
 * nothing restricted.
 */
int confine_paths(const struct confine_spec *, char **cause);
/*
 * Confine the worker from its START, unless its stage has a sandbox
 * profile (profile not NULL): bubblewrap must mount, which Landlock
 * forbids.  Logs and goes on when it cannot.
 */
void confine_worker(const struct msg_start *, const char *profile);

#endif
