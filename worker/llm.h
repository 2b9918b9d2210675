/*
 * The worker's model code: one model turn, whatever the provider (llm.c,
 * llm_http.c, llm_openai.c, llm_anthropic.c) and the SSE parser under it
 * (sse.c).  It sits below the stages and the link to the supervisor and
 * knows neither: what it needs of them (heartbeats while it waits, sleeps
 * between tries, lines for the task's log) it is given as callbacks
 * (struct llm_io), so that it runs as is in the unit tests, the fuzz
 * targets and the benchmarks.  It includes no other worker header;
 * worker.h includes it for the modules above.
 */
#ifndef LLM_H
#define LLM_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common.h"

/* llm.c: one model turn, whatever the provider. */

/*
 * What the model code calls back.  heartbeat(arg) is called at least every
 * second while a request is in flight (waiting for the model is work: the
 * worker's watchdog must not fire); sleep(arg, ms) waits between tries and
 * for a scripted turn's delay_ms, heartbeating; log(arg, kind, text) adds a
 * line (kind PROTO_LOG_*) to the task's log: the model's text as it
 * streams, and why a request is tried again.  Any may be NULL: then nothing
 * is sent, and a sleep returns at once.  cancelled(arg), when not NULL, is
 * asked as often as heartbeat: non-zero gives the call up at once (the
 * model process's call whose worker is gone).
 */
struct llm_io {
	void (*heartbeat)(void *arg);
	void (*sleep)(void *arg, unsigned ms);
	void (*log)(void *arg, int kind, const char *text);
	void *arg;
	int (*cancelled)(void *arg);
};

/* One model call: whose it is (for the headers and the scripted model),
 * the settings, and the callbacks. */
struct llm_turn {
	int64_t task;
	const char *stage; /* planning, implementing, reviewing, verifying */
	int64_t run;
	int round;
	int turn;    /* 0 for the stage run's first call */
	json_t *llm; /* the START data's llm settings */
	struct llm_io io;
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

/* Bytes of one tool call's arguments: the model code cuts them here (the
 * tools then refuse them as invalid JSON), the tools check them. */
#define TOOL_MAX_ARGS (1024 * 1024)

/* prompts.c (generated from worker/prompts/): text by file name. */
const char *prompt_get(const char *name);

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
	struct buf args;
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
	struct buf body; /* mode 2 */
	struct buf text;
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
	const char *provider; /* its row in common/provider.c */
	const char *path;     /* appended to the base */
	const char *no_key;   /* why the default base needs a key */
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
/* The callbacks of t->io, for llm.c and the providers (a NULL one does
 * nothing). */
int llm_io_cancelled(const struct llm_turn *t);
void llm_io_heartbeat(const struct llm_turn *t);
void llm_io_sleep(const struct llm_turn *t, unsigned ms);
void llm_io_log(const struct llm_turn *t, int kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*
 * The provider at url asked every caller to wait (a 429 or 503 with
 * Retry-After): its calls start no sooner than ms from now.  Shared by the
 * threads of the model process, so that one task's 429 slows every task
 * of that provider, not one.  llm_http_hold_left says how long a call to
 * url has still to wait (0: none).
 */
void llm_http_hold(const char *url, uint64_t ms);
uint64_t llm_http_hold_left(const char *url);
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

#endif
