/*
 * The supervisor <-> worker wire format.
 *
 * A frame is a 4-byte big-endian payload length followed by that many bytes
 * of msgpack: one array [type, field1, field2, ...] whose length and field
 * types are fixed by the catalog below.  Decoding is strict: a frame longer
 * than PROTO_MAX_FRAME, a container count larger than the bytes left, nesting
 * deeper than PROTO_MAX_DEPTH, a wrong field count or type, a string with a
 * NUL byte, or trailing bytes are all protocol errors.  The peer that sent
 * such a frame is not trusted again.
 */
#ifndef PROTO_H
#define PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION   5 /* 5: START carries the lease epoch */
#define PROTO_HDR_LEN   4
#define PROTO_MAX_FRAME (4u * 1024 * 1024)
/*
 * The most a message's strings may hold together: the rest of a frame is
 * room for its numbers and msgpack's headers.  Every limit on what a
 * message carries (a model's reply, a journal entry, a result) derives
 * from this one, so that what is accepted can always be sent.
 */
#define PROTO_MAX_DATA   (PROTO_MAX_FRAME - 64u * 1024)
#define PROTO_MAX_DEPTH  4
#define PROTO_MAX_FIELDS 40

/*
 * The stages of a task, in workflow order.  Both programs know a stage by
 * this enum; its name is text only where it crosses a boundary (the
 * database, the command line, a log line, the wire), and stage_parse is
 * the one place such text is compared.
 */
enum stage {
	STAGE_PLANNING,
	STAGE_IMPLEMENTING,
	STAGE_REVIEWING,
	STAGE_VERIFYING,
	STAGE_MAX
};

/* Worker exit codes (after s6: 100 means give up, 111 means try again). */
#define WORKER_EXIT_OK      0
#define WORKER_EXIT_STOPPED 75  /* asked to stop; the stage is resumable */
#define WORKER_EXIT_PERM    100 /* permanent failure; do not restart */
#define WORKER_EXIT_TEMP    111 /* temporary failure; restart with backoff */

/* The kinds a LOG message carries (equal to the store's event kinds). */
#define PROTO_LOG_INFO  1
#define PROTO_LOG_ERROR 2
#define PROTO_LOG_MODEL 3
#define PROTO_LOG_TOOL  4

enum proto_dir {
	PROTO_W2S, /* worker to supervisor */
	PROTO_S2W, /* supervisor to worker */
};

enum proto_ftype {
	PROTO_FT_U64,
	PROTO_FT_STR,
	PROTO_FT_OPTSTR, /* a string, or nil for none (s[f] NULL) */
};

/* Every field any message carries; a message uses a subset, in order. */
enum proto_field {
	PF_VERSION,    /* u64: PROTO_VERSION of the sender */
	PF_PID,        /* u64: the worker's pid */
	PF_TASK,       /* u64: task id */
	PF_STAGE,      /* str: planning, implementing, reviewing, verifying */
	PF_RUN,        /* u64: stage run number (the journal's key) */
	PF_ATTEMPT,    /* u64: 0 for a first start, n for the n-th restart */
	PF_COUNT,      /* u64: how many REPLAY frames follow START */
	PF_SEQ,        /* u64: checkpoint or journal sequence, from 1 */
	PF_LEVEL,      /* u64: event kind of a LOG (PROTO_LOG_*) */
	PF_KIND,       /* str: journal entry kind ("reply", "tool", ...) */
	PF_NAME,       /* str: checkpoint name */
	PF_TEXT,       /* str: free text (log line, error message) */
	PF_DATA,       /* str: JSON document */
	PF_TOKENS_IN,  /* u64: prompt tokens of a model reply */
	PF_TOKENS_OUT, /* u64: completion tokens of a model reply */
	PF_OK,         /* u64: 1 success, 0 failure */
	/* START's settings: see struct msg_start. */
	PF_REQUEST,
	PF_REPO,
	PF_BASE_COMMIT,
	PF_WORKTREE,
	PF_REF,
	PF_BRANCH,
	PF_PLAN,
	PF_PLAN_REJECTION_REASON,
	PF_FEEDBACK,
	PF_REVIEW,
	PF_VERIFY_COMMAND,
	PF_ROUND,
	PF_SNAPSHOT,
	PF_WORKSPACE_CLEAN,
	PF_MAX_STEPS,
	PF_CMD_TIMEOUT_S,
	PF_SNAPSHOT_MAX_FILE_BYTES,
	PF_STATE_ID,
	PF_HEARTBEAT_MS,
	PF_PROFILES_DIR,
	PF_LOG_LEVEL,
	PF_LLM_PROVIDER,
	PF_LLM_BASE_URL,
	PF_LLM_MODEL,
	PF_LLM_API_KEY,
	PF_LLM_SCRIPT,
	PF_LLM_TRACE,
	PF_LLM_TIMEOUT_S,
	PF_LLM_MAX_RETRIES,
	PF_ORIGIN,
	PF_PERMANENT,    /* u64: 1 when trying again cannot help */
	PF_LLM_FALLBACK, /* str or nil: models to try in turn, commas */
	PF_LEASE_EPOCH,  /* u64: the task's lease epoch on a shared database */
	PROTO_FIELD_MAX
};

enum proto_type {
	PROTO_NONE,
	PROTO_HELLO,      /* W2S: version, pid */
	PROTO_START,      /* S2W: version, task, stage, run, attempt, count and
	                     the settings of struct msg_start */
	PROTO_REPLAY,     /* S2W: seq, kind, data */
	PROTO_HEARTBEAT,  /* W2S: (none) */
	PROTO_LOG,        /* W2S: level, text */
	PROTO_CHECKPOINT, /* W2S: seq, name, data; answered by ACK */
	PROTO_JOURNAL,    /* W2S: seq, kind, data, tokens_in, tokens_out; ACK */
	PROTO_ACK,        /* S2W: seq (0 acknowledges RESULT) */
	PROTO_RESULT,     /* W2S: ok, text, data; answered by ACK 0 */
	PROTO_STOP,       /* S2W: (none); stop at the next safe point */
	/*
	 * A model turn, asked by a worker and made by the model process
	 * (orch-model), the only process that holds the API key and
	 * reaches the network for it.  The supervisor relays: a worker's
	 * MODEL_CALL becomes a MODEL_ASK under an id of the supervisor's,
	 * and the model process's MODEL_DONE for that id becomes the
	 * worker's MODEL_REPLY.  Between the supervisor and the model
	 * process, S2W is to the model process and W2S from it.
	 */
	PROTO_MODEL_CALL,  /* W2S: seq, data {round, turn, messages, tools} */
	PROTO_MODEL_REPLY, /* S2W: seq, ok, permanent, text (cause), data */
	PROTO_MODEL_SETUP, /* S2W, to orch-model first: version, the model's
	                      settings, count (calls at once), fallback */
	PROTO_MODEL_ASK,   /* S2W: seq (the supervisor's id), task, stage,
	                      run, data (the worker's MODEL_CALL data) */
	PROTO_MODEL_DROP,  /* S2W: seq; its worker is gone: give up the call */
	PROTO_MODEL_LOG,   /* W2S, from orch-model: seq, level, text */
	PROTO_MODEL_DONE,  /* W2S, from orch-model: seq, ok, permanent, text,
	                      data; exactly one for each MODEL_ASK */
	PROTO_MAX
};

struct proto_spec {
	const char *name;
	enum proto_dir dir;
	unsigned nfields;
	enum proto_field fields[PROTO_MAX_FIELDS];
};

extern const struct proto_spec proto_catalog[PROTO_MAX];
extern const enum proto_ftype proto_field_type[PROTO_FIELD_MAX];

/*
 * A decoded message.  Only the fields of its type are meaningful; strings are
 * NUL-terminated and owned by the message (proto_msg_clear frees them).
 */
struct proto_msg {
	enum proto_type type;
	uint64_t u[PROTO_FIELD_MAX];
	char *s[PROTO_FIELD_MAX];
	size_t slen[PROTO_FIELD_MAX];
};

/*
 * START, typed: what a worker needs to run one stage of one task.  The
 * supervisor works out every value (defaults included) and the worker
 * uses them as they are.  Strings marked "or NULL" may be absent; every
 * other string is present and not empty.  It carries no API key: only
 * the model process (orch-model, MODEL_SETUP) has it.
 */
struct msg_start {
	uint64_t task;
	enum stage stage;
	uint64_t run;
	uint64_t attempt; /* 0 for a first start, n for the n-th restart */
	uint64_t count;   /* REPLAY frames that follow */
	char *request;    /* or NULL */
	char *repo;
	char *base_commit;
	char *worktree;
	char *ref;    /* where the workspace snapshots go */
	char *branch; /* the result branch */
	char *plan;   /* or NULL, and the four below */
	char *plan_rejection_reason;
	char *feedback;
	char *review;
	char *verify_command;
	uint64_t round; /* how many times this stage started in the task */
	char *snapshot; /* the last snapshot the supervisor recorded, or NULL */
	uint64_t workspace_clean; /* 1: the previous stage left it clean */
	uint64_t max_steps;
	uint64_t cmd_timeout_s;
	uint64_t snapshot_max_file_bytes;
	char *state_id; /* or NULL */
	uint64_t heartbeat_ms;
	char *profiles_dir;
	uint64_t log_level; /* enum log_level */
	/* The model's settings (llm.c).  script is a file name or the script
	 * itself, a JSON document: opaque here, the scripted model reads it. */
	char *llm_provider;
	char *llm_base_url; /* or NULL, and the four below */
	char *llm_model;
	char *llm_script;
	char *llm_trace;
	uint64_t llm_timeout_s;
	uint64_t llm_max_retries;
	/* The origin's URL (repo is then the node's mirror of it), or NULL:
	 * repo is the user's own repository. */
	char *origin;
	/* The lease epoch this stage runs under when the service is one of
	 * many nodes on a database, else 0: written into the commits the
	 * worker pushes, so that a stale node's push cannot go over the
	 * ref of the node that took the task over (origin_set_epoch). */
	uint64_t lease_epoch;
};

/* proto.c */
/*
 * Fill m (which it initialises) from s: the message keeps copies.  Empty
 * strings where s has NULL for a field that must be present.
 */
void proto_start_set(struct proto_msg *m, const struct msg_start *s);
/*
 * Check a decoded START and copy it into s (msg_start_clear frees it).
 * Returns 0, or -1 with *cause naming the first field out of its bounds
 * (s is then left empty).
 */
int proto_start_get(
    const struct proto_msg *m, struct msg_start *s, const char **cause);
void msg_start_clear(struct msg_start *);

/* The stage named s: 0 and *stage set, or -1 when s names none. */
int stage_parse(const char *s, enum stage *stage);
/* The name of a stage ("planning"...), or "unknown" out of range. */
const char *stage_name(enum stage);
const char *proto_type_name(enum proto_type);
void proto_msg_init(struct proto_msg *, enum proto_type);
void proto_msg_clear(struct proto_msg *);
/* Set a string field; the message keeps a copy. */
void proto_set_str(struct proto_msg *, enum proto_field, const char *);
void proto_set_strn(struct proto_msg *, enum proto_field, const char *, size_t);

/* The bytes of m's strings (those of its type's fields), to check against
 * PROTO_MAX_DATA before sending. */
size_t proto_str_total(const struct proto_msg *);
/*
 * Encode m as one frame (header included) into a malloc'd buffer.  Returns 0
 * and sets *out and *outlen, or -1 with *cause set when its strings exceed
 * PROTO_MAX_DATA or its type is not in the catalog.
 */
int proto_encode(const struct proto_msg *m, uint8_t **out, size_t *outlen,
    const char **cause);

/*
 * Read the payload length from a 4-byte header.  Returns 0, or -1 with
 * *cause set when it is zero or over PROTO_MAX_FRAME.
 */
int proto_frame_len(
    const uint8_t hdr[PROTO_HDR_LEN], uint32_t *len, const char **cause);

/*
 * Decode one payload (without its header) into m, which the caller then
 * clears.  Returns 0, or -1 with *cause describing the first problem; m is
 * left empty on failure.  Direction is not checked here: the caller knows
 * which types it accepts.
 */
int proto_decode(
    const uint8_t *buf, size_t len, struct proto_msg *m, const char **cause);

/*
 * Blocking helpers for the worker side.  proto_write_fd: 0, or -1 with
 * *cause.  proto_read_fd: 0 with m filled, 1 at a clean end of stream (no
 * byte of a new frame), -1 with *cause on anything else.  m need not be
 * initialised; it is left empty unless 0 is returned.
 */
int proto_write_fd(int fd, const struct proto_msg *m, const char **cause);
int proto_read_fd(int fd, struct proto_msg *m, const char **cause);

#endif
