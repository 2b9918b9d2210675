/*
 * orch-worker: runs one stage of one task.  One section per source file.
 */
#ifndef WORKER_H
#define WORKER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

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
/* The replayed entries of this stage run (for the workspace restore). */
size_t journal_count(void);
const char *journal_data(size_t i, const char **kind);

/* stage.c: the stages. */
struct stage {
	int64_t task;
	const char *name; /* planning, implementing, reviewing, verifying */
	int64_t run;
	int round;
	json_t *cfg; /* the START data */
	json_t *llm; /* cfg.llm */
	const char *worktree;
	const char *repo;
	const char *ref;
	const char *base;
	char *profiles_dir;
	unsigned max_steps;
	unsigned cmd_timeout_s;
};
void stage_run(struct stage *) __attribute__((noreturn));

/* llm.c: one model turn, whatever the provider. */
struct llm_turn {
	const struct stage *st;
	int turn; /* 0 for the stage run's first call */
};
/*
 * Ask the model for one turn.  messages use the neutral form
 * {"role": system|user|assistant|tool, "content", "tool_calls",
 * "tool_call_id"}; on success *reply is
 * {"text", "tool_calls": [{"id","name","arguments"}], "stop",
 *  "usage": {"in","out"}}.  On failure -1 with *cause, and *permanent set
 * when trying again cannot help (a bad key, a bad script).
 */
int llm_chat(const struct llm_turn *, json_t *messages, json_t *tools,
    json_t **reply, char **cause, int *permanent);

/* prompts.c (generated from worker/prompts/): text by file name. */
const char *prompt_get(const char *name);

/* Limits on what the model may hand the tools and what they hand back. */
#define TOOL_MAX_ARGS    (1024 * 1024) /* bytes of one call's arguments */
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

/* sse.c: an incremental text/event-stream parser. */

#define SSE_MAX_EVENT (16 * 1024 * 1024) /* bytes of one event's lines */

/*
 * One event: its type ("message" when the stream named none) and its data
 * lines joined with '\n'.  Return 0 to go on; anything else stops the parse
 * and sse_feed returns it.
 */
typedef int (*sse_event_fn)(
    void *arg, const char *event, const char *data, size_t len);

struct sse {
	sse_event_fn cb;
	void *arg;
	char *line; /* the unfinished line */
	size_t linelen, linecap;
	char *data; /* the event's data lines so far */
	size_t datalen, datacap;
	char *event; /* the event's type, or NULL */
	int has_data;
	int cr;    /* the last byte was a CR: skip an LF after it */
	int start; /* at the stream's first byte (a BOM is skipped) */
	int stopped;
};

void sse_init(struct sse *, sse_event_fn, void *arg);
/* Parse len more bytes, split anywhere: 0, the callback's stop value, or -1
 * when a line or an event exceeds SSE_MAX_EVENT. */
int sse_feed(struct sse *, const char *buf, size_t len);
/* Whether bytes of an unfinished event are pending (the stream was cut). */
int sse_pending(const struct sse *);
void sse_clear(struct sse *);

/* llm_http.c: a streamed model reply, assembled, and the HTTP round trip. */

struct llm_call {
	int index; /* the API's index of the call (or content block) */
	int closed;
	char *id;
	char *name;
	char *args;
	size_t argslen, argscap;
};

/*
 * A provider's reply as it arrives: an SSE stream (or one JSON body from a
 * server that does not stream), assembled into the neutral reply.  The
 * provider sets event (one SSE event) and whole (a non-streamed JSON body);
 * both return 0, or -1 after llm_asm_fail.
 */
struct llm_asm {
	int (*event)(
	    struct llm_asm *, const char *event, const char *data, size_t len);
	int (*whole)(struct llm_asm *, json_t *body);
	const char *end_name; /* what ends a complete stream, for messages */
	/* Text as it arrives (for the task log), or NULL. */
	void (*text_fn)(void *arg, const char *s, size_t n);
	void *text_arg;
	int turn;
	int mode; /* 0 nothing yet, 1 SSE, 2 JSON */
	struct sse sse;
	char *body; /* mode 2 */
	size_t bodylen, bodycap;
	char *text;
	size_t textlen, textcap;
	struct llm_call *calls;
	size_t ncalls;
	char *stop;
	int64_t in, out;
	int done;
	unsigned events; /* SSE events seen */
	char *error;
	int permanent; /* the error is the reply's size: asking again won't do
	                */
};

void llm_asm_init(struct llm_asm *, int turn);
/* Feed bytes of a 200's body: 0, or -1 with the attempt failed (->error). */
int llm_asm_feed(struct llm_asm *, const char *buf, size_t len);
/*
 * The body is over: 0 with *reply (the neutral reply), or -1 with *cause
 * when the attempt failed (cut short, not the API's format, an error event).
 * A reply cut by the output token limit (stop "length") keeps its text and
 * drops its tool calls, whose arguments may be cut: see llm_http.c.
 */
int llm_asm_finish(struct llm_asm *, json_t **reply, char **cause);
void llm_asm_clear(struct llm_asm *);
/* For providers: record the first failure (printf-like); returns -1. */
int llm_asm_fail(struct llm_asm *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void llm_asm_text(struct llm_asm *, const char *s, size_t n);
/* The call with this index, created (with id and name) when new. */
struct llm_call *llm_asm_call(
    struct llm_asm *, int index, const char *id, const char *name);
void llm_asm_args(struct llm_call *, const char *s, size_t n);
void llm_asm_stop(struct llm_asm *, const char *stop);

struct llm_req {
	const struct llm_turn *t;
	const char *url;
	const char *body;
	const char *const *headers; /* the provider's, NULL-terminated */
	const char *secret;         /* never shown: scrubbed from errors */
	void (*asm_init)(struct llm_asm *, int turn);
};

/*
 * POST req->body to req->url with the X-Orch-* headers, retrying what may
 * pass (see llm_http.c).  0 with *reply, or -1 with *cause and *permanent as
 * llm_chat.
 */
int llm_http_chat(
    const struct llm_req *, json_t **reply, char **cause, int *permanent);
/* An HTTP provider: its defaults, its address, its headers, its body. */
struct llm_api {
	const char *base;         /* ORCH_LLM_BASE_URL's default */
	const char *model;        /* ORCH_LLM_MODEL's default */
	const char *path;         /* appended to the base */
	int add_v1;               /* "/v1" first, unless the base ends so */
	const char *key_header;   /* "Name: prefix", the key follows */
	const char *fixed_header; /* sent always, or NULL */
	const char *no_key;       /* why the default base needs a key */
	json_t *(*request)(const char *model, json_t *messages, json_t *tools);
	void (*asm_init)(struct llm_asm *, int turn);
};
/*
 * What every HTTP provider does: the settings with their defaults, the
 * URL, the key's header (wiped after use), the body, and llm_http_chat.
 */
int llm_http_api_chat(const struct llm_api *, const struct llm_turn *,
    json_t *messages, json_t *tools, json_t **reply, char **cause,
    int *permanent);
/* s with every occurrence of secret replaced (malloc'd). */
char *llm_scrub(const char *s, const char *secret);

/*
 * llm_openai.c: OpenAI chat completions (and compatible servers).  The
 * request builders return NULL when a message cannot be put in the request:
 * a request is sent whole or not at all.
 */
json_t *llm_openai_request(const char *model, json_t *messages, json_t *tools);
void llm_openai_asm(struct llm_asm *, int turn);
int llm_openai_chat(const struct llm_turn *, json_t *messages, json_t *tools,
    json_t **reply, char **cause, int *permanent);

/* llm_anthropic.c: the Anthropic Messages API. */
json_t *llm_anthropic_request(
    const char *model, json_t *messages, json_t *tools);
void llm_anthropic_asm(struct llm_asm *, int turn);
int llm_anthropic_chat(const struct llm_turn *, json_t *messages, json_t *tools,
    json_t **reply, char **cause, int *permanent);

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
/* Confine the worker of stage from its START data, when the stage allows
 * (not implementing or verifying: bubblewrap must mount); logs and goes on
 * when it cannot. */
void confine_worker(const char *stage, json_t *cfg);

#endif
