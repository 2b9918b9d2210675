/*
 * The supervisor <-> worker wire format: the catalog of messages, encoding
 * with msgpack-c, and a strict decoder that checks the raw bytes before
 * msgpack-c allocates anything.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "common.h"
#include "proto.h"

/*
 * At most this many msgpack objects in one payload, containers and their
 * elements included.  A valid message has at most 2 + PROTO_MAX_FIELDS; the
 * bound keeps what msgpack-c allocates for a hostile payload small (it
 * allocates one msgpack_object per element of every array and map).
 */
#define PROTO_MAX_OBJECTS 256

const struct proto_spec proto_catalog[PROTO_MAX] = {
    [PROTO_NONE] = {"none", PROTO_W2S, 0, {0}},
    [PROTO_HELLO] = {"hello", PROTO_W2S, 2, {PF_VERSION, PF_PID}},
    [PROTO_START] = {"start", PROTO_S2W, 36,
        {PF_VERSION, PF_TASK, PF_STAGE, PF_RUN, PF_ATTEMPT, PF_COUNT,
            PF_REQUEST, PF_REPO, PF_BASE_COMMIT, PF_WORKTREE, PF_REF, PF_BRANCH,
            PF_PLAN, PF_PLAN_REJECTION_REASON, PF_FEEDBACK, PF_REVIEW,
            PF_VERIFY_COMMAND, PF_ROUND, PF_SNAPSHOT, PF_WORKSPACE_CLEAN,
            PF_MAX_STEPS, PF_CMD_TIMEOUT_S, PF_SNAPSHOT_MAX_FILE_BYTES,
            PF_STATE_ID, PF_HEARTBEAT_MS, PF_PROFILES_DIR, PF_LOG_LEVEL,
            PF_LLM_PROVIDER, PF_LLM_BASE_URL, PF_LLM_MODEL, PF_LLM_SCRIPT,
            PF_LLM_TRACE, PF_LLM_TIMEOUT_S, PF_LLM_MAX_RETRIES, PF_ORIGIN,
            PF_LEASE_EPOCH}},
    [PROTO_REPLAY] = {"replay", PROTO_S2W, 3, {PF_SEQ, PF_KIND, PF_DATA}},
    [PROTO_HEARTBEAT] = {"heartbeat", PROTO_W2S, 0, {0}},
    [PROTO_LOG] = {"log", PROTO_W2S, 2, {PF_LEVEL, PF_TEXT}},
    [PROTO_CHECKPOINT] = {"checkpoint", PROTO_W2S, 3,
        {PF_SEQ, PF_NAME, PF_DATA}},
    [PROTO_JOURNAL] = {"journal", PROTO_W2S, 5,
        {PF_SEQ, PF_KIND, PF_DATA, PF_TOKENS_IN, PF_TOKENS_OUT}},
    [PROTO_ACK] = {"ack", PROTO_S2W, 1, {PF_SEQ}},
    [PROTO_RESULT] = {"result", PROTO_W2S, 3, {PF_OK, PF_TEXT, PF_DATA}},
    [PROTO_STOP] = {"stop", PROTO_S2W, 0, {0}},
    [PROTO_MODEL_CALL] = {"model_call", PROTO_W2S, 2, {PF_SEQ, PF_DATA}},
    [PROTO_MODEL_REPLY] = {"model_reply", PROTO_S2W, 5,
        {PF_SEQ, PF_OK, PF_PERMANENT, PF_TEXT, PF_DATA}},
    [PROTO_MODEL_SETUP] = {"model_setup", PROTO_S2W, 9,
        {PF_VERSION, PF_LLM_PROVIDER, PF_LLM_BASE_URL, PF_LLM_MODEL,
            PF_LLM_API_KEY, PF_LLM_TIMEOUT_S, PF_LLM_MAX_RETRIES, PF_COUNT,
            PF_LLM_FALLBACK}},
    [PROTO_MODEL_ASK] = {"model_ask", PROTO_S2W, 5,
        {PF_SEQ, PF_TASK, PF_STAGE, PF_RUN, PF_DATA}},
    [PROTO_MODEL_DROP] = {"model_drop", PROTO_S2W, 1, {PF_SEQ}},
    [PROTO_MODEL_LOG] = {"model_log", PROTO_W2S, 3,
        {PF_SEQ, PF_LEVEL, PF_TEXT}},
    [PROTO_MODEL_DONE] = {"model_done", PROTO_W2S, 5,
        {PF_SEQ, PF_OK, PF_PERMANENT, PF_TEXT, PF_DATA}},
};

const enum proto_ftype proto_field_type[PROTO_FIELD_MAX] = {
    [PF_VERSION] = PROTO_FT_U64,
    [PF_PID] = PROTO_FT_U64,
    [PF_TASK] = PROTO_FT_U64,
    [PF_STAGE] = PROTO_FT_STR,
    [PF_RUN] = PROTO_FT_U64,
    [PF_ATTEMPT] = PROTO_FT_U64,
    [PF_COUNT] = PROTO_FT_U64,
    [PF_SEQ] = PROTO_FT_U64,
    [PF_LEVEL] = PROTO_FT_U64,
    [PF_KIND] = PROTO_FT_STR,
    [PF_NAME] = PROTO_FT_STR,
    [PF_TEXT] = PROTO_FT_STR,
    [PF_DATA] = PROTO_FT_STR,
    [PF_TOKENS_IN] = PROTO_FT_U64,
    [PF_TOKENS_OUT] = PROTO_FT_U64,
    [PF_OK] = PROTO_FT_U64,
    [PF_REQUEST] = PROTO_FT_OPTSTR,
    [PF_REPO] = PROTO_FT_STR,
    [PF_BASE_COMMIT] = PROTO_FT_STR,
    [PF_WORKTREE] = PROTO_FT_STR,
    [PF_REF] = PROTO_FT_STR,
    [PF_BRANCH] = PROTO_FT_STR,
    [PF_PLAN] = PROTO_FT_OPTSTR,
    [PF_PLAN_REJECTION_REASON] = PROTO_FT_OPTSTR,
    [PF_FEEDBACK] = PROTO_FT_OPTSTR,
    [PF_REVIEW] = PROTO_FT_OPTSTR,
    [PF_VERIFY_COMMAND] = PROTO_FT_OPTSTR,
    [PF_ROUND] = PROTO_FT_U64,
    [PF_SNAPSHOT] = PROTO_FT_OPTSTR,
    [PF_WORKSPACE_CLEAN] = PROTO_FT_U64,
    [PF_MAX_STEPS] = PROTO_FT_U64,
    [PF_CMD_TIMEOUT_S] = PROTO_FT_U64,
    [PF_SNAPSHOT_MAX_FILE_BYTES] = PROTO_FT_U64,
    [PF_STATE_ID] = PROTO_FT_OPTSTR,
    [PF_HEARTBEAT_MS] = PROTO_FT_U64,
    [PF_PROFILES_DIR] = PROTO_FT_STR,
    [PF_LOG_LEVEL] = PROTO_FT_U64,
    [PF_LLM_PROVIDER] = PROTO_FT_STR,
    [PF_LLM_BASE_URL] = PROTO_FT_OPTSTR,
    [PF_LLM_MODEL] = PROTO_FT_OPTSTR,
    [PF_LLM_API_KEY] = PROTO_FT_OPTSTR,
    [PF_LLM_SCRIPT] = PROTO_FT_OPTSTR,
    [PF_LLM_TRACE] = PROTO_FT_OPTSTR,
    [PF_LLM_TIMEOUT_S] = PROTO_FT_U64,
    [PF_LLM_MAX_RETRIES] = PROTO_FT_U64,
    [PF_ORIGIN] = PROTO_FT_OPTSTR,
    [PF_PERMANENT] = PROTO_FT_U64,
    [PF_LLM_FALLBACK] = PROTO_FT_OPTSTR,
    [PF_LEASE_EPOCH] = PROTO_FT_U64,
};

/*
 * What decoding says about a field of the wrong type and, for strings, one
 * with a NUL byte.  Each field has one type, so the field names the problem.
 */
static const struct {
	const char *badtype;
	const char *nul;
} proto_field_cause[PROTO_FIELD_MAX] = {
    [PF_VERSION] = {"field version: expected an unsigned integer", NULL},
    [PF_PID] = {"field pid: expected an unsigned integer", NULL},
    [PF_TASK] = {"field task: expected an unsigned integer", NULL},
    [PF_STAGE] = {"field stage: expected a string",
        "field stage: string contains a NUL byte"},
    [PF_RUN] = {"field run: expected an unsigned integer", NULL},
    [PF_ATTEMPT] = {"field attempt: expected an unsigned integer", NULL},
    [PF_COUNT] = {"field count: expected an unsigned integer", NULL},
    [PF_SEQ] = {"field seq: expected an unsigned integer", NULL},
    [PF_LEVEL] = {"field level: expected an unsigned integer", NULL},
    [PF_KIND] = {"field kind: expected a string",
        "field kind: string contains a NUL byte"},
    [PF_NAME] = {"field name: expected a string",
        "field name: string contains a NUL byte"},
    [PF_TEXT] = {"field text: expected a string",
        "field text: string contains a NUL byte"},
    [PF_DATA] = {"field data: expected a string",
        "field data: string contains a NUL byte"},
    [PF_TOKENS_IN] = {"field tokens_in: expected an unsigned integer", NULL},
    [PF_TOKENS_OUT] = {"field tokens_out: expected an unsigned integer", NULL},
    [PF_OK] = {"field ok: expected an unsigned integer", NULL},
    [PF_REQUEST] = {"field request: expected a string or nil",
        "field request: string contains a NUL byte"},
    [PF_REPO] = {"field repo: expected a string",
        "field repo: string contains a NUL byte"},
    [PF_BASE_COMMIT] = {"field base_commit: expected a string",
        "field base_commit: string contains a NUL byte"},
    [PF_WORKTREE] = {"field worktree: expected a string",
        "field worktree: string contains a NUL byte"},
    [PF_REF] = {"field ref: expected a string",
        "field ref: string contains a NUL byte"},
    [PF_BRANCH] = {"field branch: expected a string",
        "field branch: string contains a NUL byte"},
    [PF_PLAN] = {"field plan: expected a string or nil",
        "field plan: string contains a NUL byte"},
    [PF_PLAN_REJECTION_REASON] =
        {"field plan_rejection_reason: expected a string or nil",
            "field plan_rejection_reason: string contains a NUL byte"},
    [PF_FEEDBACK] = {"field feedback: expected a string or nil",
        "field feedback: string contains a NUL byte"},
    [PF_REVIEW] = {"field review: expected a string or nil",
        "field review: string contains a NUL byte"},
    [PF_VERIFY_COMMAND] = {"field verify_command: expected a string or nil",
        "field verify_command: string contains a NUL byte"},
    [PF_ROUND] = {"field round: expected an unsigned integer", NULL},
    [PF_SNAPSHOT] = {"field snapshot: expected a string or nil",
        "field snapshot: string contains a NUL byte"},
    [PF_WORKSPACE_CLEAN] =
        {"field workspace_clean: expected an unsigned integer", NULL},
    [PF_MAX_STEPS] = {"field max_steps: expected an unsigned integer", NULL},
    [PF_CMD_TIMEOUT_S] = {"field cmd_timeout_s: expected an unsigned integer",
        NULL},
    [PF_SNAPSHOT_MAX_FILE_BYTES] =
        {"field snapshot_max_file_bytes: expected an unsigned integer", NULL},
    [PF_STATE_ID] = {"field state_id: expected a string or nil",
        "field state_id: string contains a NUL byte"},
    [PF_HEARTBEAT_MS] = {"field heartbeat_ms: expected an unsigned integer",
        NULL},
    [PF_PROFILES_DIR] = {"field profiles_dir: expected a string",
        "field profiles_dir: string contains a NUL byte"},
    [PF_LOG_LEVEL] = {"field log_level: expected an unsigned integer", NULL},
    [PF_LLM_PROVIDER] = {"field llm_provider: expected a string",
        "field llm_provider: string contains a NUL byte"},
    [PF_LLM_BASE_URL] = {"field llm_base_url: expected a string or nil",
        "field llm_base_url: string contains a NUL byte"},
    [PF_LLM_MODEL] = {"field llm_model: expected a string or nil",
        "field llm_model: string contains a NUL byte"},
    [PF_LLM_API_KEY] = {"field llm_api_key: expected a string or nil",
        "field llm_api_key: string contains a NUL byte"},
    [PF_LLM_SCRIPT] = {"field llm_script: expected a string or nil",
        "field llm_script: string contains a NUL byte"},
    [PF_LLM_TRACE] = {"field llm_trace: expected a string or nil",
        "field llm_trace: string contains a NUL byte"},
    [PF_LLM_TIMEOUT_S] = {"field llm_timeout_s: expected an unsigned integer",
        NULL},
    [PF_LLM_MAX_RETRIES] =
        {"field llm_max_retries: expected an unsigned integer", NULL},
    [PF_ORIGIN] = {"field origin: expected a string or nil",
        "field origin: string contains a NUL byte"},
    [PF_PERMANENT] = {"field permanent: expected an unsigned integer", NULL},
    [PF_LLM_FALLBACK] = {"field llm_fallback: expected a string or nil",
        "field llm_fallback: string contains a NUL byte"},
    [PF_LEASE_EPOCH] = {"field lease_epoch: expected an unsigned integer",
        NULL},
};

/* Where the raw-byte validator is in the payload. */
struct proto_walk {
	const uint8_t *buf;
	size_t len;
	size_t off;
	unsigned nobj;
};

static int proto_check_object(struct proto_walk *, unsigned, const char **);

static const char *const stage_names[STAGE_MAX] = {
    [STAGE_PLANNING] = "planning",
    [STAGE_IMPLEMENTING] = "implementing",
    [STAGE_REVIEWING] = "reviewing",
    [STAGE_VERIFYING] = "verifying",
};

int
stage_parse(const char *s, enum stage *stage)
{
	for (unsigned i = 0; s != NULL && i < STAGE_MAX; i++) {
		if (strcmp(s, stage_names[i]) == 0) {
			*stage = (enum stage)i;
			return 0;
		}
	}
	return -1;
}

const char *
stage_name(enum stage stage)
{
	if ((unsigned)stage >= STAGE_MAX)
		return "unknown";
	return stage_names[stage];
}

/*
 * START, typed.  Each setting is a field of the catalog's START in this
 * order; the bounds of the numbers are what the worker can use (a zero
 * timeout or step budget would make a stage that cannot end, or end at
 * once), not the configuration's policy, which the supervisor applied.
 */
enum start_kind {
	SF_STR,    /* present and not empty */
	SF_OPTSTR, /* or NULL */
	SF_U64,    /* within min..max */
};

static const struct {
	enum proto_field f;
	enum start_kind kind;
	size_t off;
} proto_start_fields[] = {
    {PF_REQUEST, SF_OPTSTR, offsetof(struct msg_start, request)},
    {PF_REPO, SF_STR, offsetof(struct msg_start, repo)},
    {PF_BASE_COMMIT, SF_STR, offsetof(struct msg_start, base_commit)},
    {PF_WORKTREE, SF_STR, offsetof(struct msg_start, worktree)},
    {PF_REF, SF_STR, offsetof(struct msg_start, ref)},
    {PF_BRANCH, SF_STR, offsetof(struct msg_start, branch)},
    {PF_PLAN, SF_OPTSTR, offsetof(struct msg_start, plan)},
    {PF_PLAN_REJECTION_REASON, SF_OPTSTR,
        offsetof(struct msg_start, plan_rejection_reason)},
    {PF_FEEDBACK, SF_OPTSTR, offsetof(struct msg_start, feedback)},
    {PF_REVIEW, SF_OPTSTR, offsetof(struct msg_start, review)},
    {PF_VERIFY_COMMAND, SF_OPTSTR, offsetof(struct msg_start, verify_command)},
    {PF_ROUND, SF_U64, offsetof(struct msg_start, round)},
    {PF_SNAPSHOT, SF_OPTSTR, offsetof(struct msg_start, snapshot)},
    {PF_WORKSPACE_CLEAN, SF_U64, offsetof(struct msg_start, workspace_clean)},
    {PF_MAX_STEPS, SF_U64, offsetof(struct msg_start, max_steps)},
    {PF_CMD_TIMEOUT_S, SF_U64, offsetof(struct msg_start, cmd_timeout_s)},
    {PF_SNAPSHOT_MAX_FILE_BYTES, SF_U64,
        offsetof(struct msg_start, snapshot_max_file_bytes)},
    {PF_STATE_ID, SF_OPTSTR, offsetof(struct msg_start, state_id)},
    {PF_HEARTBEAT_MS, SF_U64, offsetof(struct msg_start, heartbeat_ms)},
    {PF_PROFILES_DIR, SF_STR, offsetof(struct msg_start, profiles_dir)},
    {PF_LOG_LEVEL, SF_U64, offsetof(struct msg_start, log_level)},
    {PF_LLM_PROVIDER, SF_STR, offsetof(struct msg_start, llm_provider)},
    {PF_LLM_BASE_URL, SF_OPTSTR, offsetof(struct msg_start, llm_base_url)},
    {PF_LLM_MODEL, SF_OPTSTR, offsetof(struct msg_start, llm_model)},
    {PF_LLM_SCRIPT, SF_OPTSTR, offsetof(struct msg_start, llm_script)},
    {PF_LLM_TRACE, SF_OPTSTR, offsetof(struct msg_start, llm_trace)},
    {PF_LLM_TIMEOUT_S, SF_U64, offsetof(struct msg_start, llm_timeout_s)},
    {PF_LLM_MAX_RETRIES, SF_U64, offsetof(struct msg_start, llm_max_retries)},
    {PF_ORIGIN, SF_OPTSTR, offsetof(struct msg_start, origin)},
    {PF_LEASE_EPOCH, SF_U64, offsetof(struct msg_start, lease_epoch)},
};

/* Bounds of START's numbers; a field not listed takes any value. */
static const struct {
	enum proto_field f;
	uint64_t min, max;
	const char *cause;
} proto_start_bounds[] = {
    {PF_TASK, 1, INT64_MAX, "field task: out of range"},
    {PF_RUN, 0, INT64_MAX, "field run: out of range"},
    {PF_ATTEMPT, 0, INT64_MAX, "field attempt: out of range"},
    {PF_LEASE_EPOCH, 0, INT64_MAX, "field lease_epoch: out of range"},
    /* The worker allocates a slot for each before reading them. */
    {PF_COUNT, 0, UINT32_MAX, "field count: out of range"},
    {PF_ROUND, 1, INT32_MAX, "field round: out of range"},
    {PF_WORKSPACE_CLEAN, 0, 1, "field workspace_clean: not 0 or 1"},
    {PF_MAX_STEPS, 1, UINT32_MAX, "field max_steps: out of range"},
    {PF_CMD_TIMEOUT_S, 1, UINT32_MAX, "field cmd_timeout_s: out of range"},
    {PF_SNAPSHOT_MAX_FILE_BYTES, 1, UINT64_MAX,
        "field snapshot_max_file_bytes: out of range"},
    {PF_HEARTBEAT_MS, 1, UINT32_MAX, "field heartbeat_ms: out of range"},
    {PF_LOG_LEVEL, LOG_LEVEL_ERROR, LOG_LEVEL_DEBUG,
        "field log_level: not a log level"},
    {PF_LLM_TIMEOUT_S, 1, UINT32_MAX, "field llm_timeout_s: out of range"},
    {PF_LLM_MAX_RETRIES, 0, UINT32_MAX, "field llm_max_retries: out of range"},
};

void
proto_start_set(struct proto_msg *m, const struct msg_start *s)
{
	proto_msg_init(m, PROTO_START);
	m->u[PF_VERSION] = PROTO_VERSION;
	m->u[PF_TASK] = s->task;
	proto_set_str(m, PF_STAGE, stage_name(s->stage));
	m->u[PF_RUN] = s->run;
	m->u[PF_ATTEMPT] = s->attempt;
	m->u[PF_COUNT] = s->count;
	for (size_t i = 0; i < nitems(proto_start_fields); i++) {
		enum proto_field f = proto_start_fields[i].f;
		const char *p = (const char *)s + proto_start_fields[i].off;

		if (proto_start_fields[i].kind == SF_U64) {
			memcpy(&m->u[f], p, sizeof m->u[f]);
			continue;
		}
		const char *v;
		memcpy(&v, p, sizeof v);
		if (v != NULL)
			proto_set_str(m, f, v);
	}
}

int
proto_start_get(
    const struct proto_msg *m, struct msg_start *s, const char **cause)
{
	memset(s, 0, sizeof *s);
	if (m->type != PROTO_START) {
		*cause = "not a START message";
		return -1;
	}
	if (m->u[PF_VERSION] != PROTO_VERSION) {
		*cause = "protocol version mismatch";
		return -1;
	}
	if (stage_parse(m->s[PF_STAGE], &s->stage) == -1) {
		*cause = "field stage: unknown stage";
		return -1;
	}
	for (size_t i = 0; i < nitems(proto_start_bounds); i++) {
		uint64_t v = m->u[proto_start_bounds[i].f];

		if (v < proto_start_bounds[i].min ||
		    v > proto_start_bounds[i].max) {
			*cause = proto_start_bounds[i].cause;
			return -1;
		}
	}
	for (size_t i = 0; i < nitems(proto_start_fields); i++) {
		enum proto_field f = proto_start_fields[i].f;

		if (proto_start_fields[i].kind == SF_STR &&
		    (m->s[f] == NULL || m->slen[f] == 0)) {
			*cause = proto_field_cause[f].badtype;
			return -1;
		}
	}
	s->task = m->u[PF_TASK];
	s->run = m->u[PF_RUN];
	s->attempt = m->u[PF_ATTEMPT];
	s->count = m->u[PF_COUNT];
	for (size_t i = 0; i < nitems(proto_start_fields); i++) {
		enum proto_field f = proto_start_fields[i].f;
		char *p = (char *)s + proto_start_fields[i].off, *v;

		if (proto_start_fields[i].kind == SF_U64) {
			memcpy(p, &m->u[f], sizeof m->u[f]);
			continue;
		}
		v = m->s[f] != NULL ? xstrdup(m->s[f]) : NULL;
		memcpy(p, &v, sizeof v);
	}
	return 0;
}

void
msg_start_clear(struct msg_start *s)
{
	for (size_t i = 0; i < nitems(proto_start_fields); i++) {
		char *v;

		if (proto_start_fields[i].kind == SF_U64)
			continue;
		memcpy(&v, (char *)s + proto_start_fields[i].off, sizeof v);
		free(v);
	}
	memset(s, 0, sizeof *s);
}

const char *
proto_type_name(enum proto_type type)
{
	if ((unsigned)type >= PROTO_MAX)
		return "unknown";
	return proto_catalog[type].name;
}

void
proto_msg_init(struct proto_msg *m, enum proto_type type)
{
	memset(m, 0, sizeof *m);
	m->type = type;
}

/* Free the strings of m and leave it empty (type PROTO_NONE). */
void
proto_msg_clear(struct proto_msg *m)
{
	unsigned i;

	for (i = 0; i < PROTO_FIELD_MAX; i++)
		free(m->s[i]);
	memset(m, 0, sizeof *m);
}

void
proto_set_str(struct proto_msg *m, enum proto_field f, const char *s)
{
	proto_set_strn(m, f, s, strlen(s));
}

/* Set field f to the n bytes at s, replacing (and freeing) any old value. */
void
proto_set_strn(struct proto_msg *m, enum proto_field f, const char *s, size_t n)
{
	char *copy;

	if ((unsigned)f >= PROTO_FIELD_MAX)
		fatalx("%s: bad field %d", __func__, (int)f);
	copy = xmalloc(n + 1);
	if (n != 0)
		memcpy(copy, s, n);
	copy[n] = '\0';
	free(m->s[f]);
	m->s[f] = copy;
	m->slen[f] = n;
}

static void
proto_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint64_t
proto_get_be(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

size_t
proto_str_total(const struct proto_msg *m)
{
	const struct proto_spec *spec;
	size_t total = 0;

	if (m->type <= PROTO_NONE || m->type >= PROTO_MAX)
		return 0;
	spec = &proto_catalog[m->type];
	for (unsigned i = 0; i < spec->nfields; i++) {
		enum proto_field f = spec->fields[i];

		if (proto_field_type[f] != PROTO_FT_U64 && m->s[f] != NULL)
			total += m->slen[f];
	}
	return total;
}

int
proto_encode(const struct proto_msg *m, uint8_t **out, size_t *outlen,
    const char **cause)
{
	const struct proto_spec *spec;
	msgpack_sbuffer sbuf;
	msgpack_packer pk;
	static const uint8_t zero[PROTO_HDR_LEN];
	uint64_t total = 0;
	unsigned i;
	int error = 0;

	if (m->type <= PROTO_NONE || m->type >= PROTO_MAX) {
		*cause = "unknown message type";
		return -1;
	}
	spec = &proto_catalog[m->type];

	/*
	 * Check the strings first so that a huge one is refused before
	 * anything is copied, and so that no str32 length can be truncated.
	 * A NUL byte would be refused by the peer's decoder.
	 */
	for (i = 0; i < spec->nfields; i++) {
		enum proto_field f = spec->fields[i];

		if (proto_field_type[f] == PROTO_FT_U64 || m->s[f] == NULL)
			continue;
		if (m->slen[f] > PROTO_MAX_DATA ||
		    (total += m->slen[f]) > PROTO_MAX_DATA) {
			*cause = "message exceeds PROTO_MAX_DATA";
			return -1;
		}
		if (memchr(m->s[f], '\0', m->slen[f]) != NULL) {
			*cause = proto_field_cause[f].nul;
			return -1;
		}
	}

	msgpack_sbuffer_init(&sbuf);
	msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);

	/* The header is filled in once the payload length is known. */
	error |= msgpack_sbuffer_write(&sbuf, (const char *)zero, sizeof zero);
	error |= msgpack_pack_array(&pk, 1 + spec->nfields);
	error |= msgpack_pack_uint64(&pk, (uint64_t)m->type);
	for (i = 0; i < spec->nfields; i++) {
		enum proto_field f = spec->fields[i];

		if (proto_field_type[f] == PROTO_FT_U64) {
			error |= msgpack_pack_uint64(&pk, m->u[f]);
			continue;
		}
		if (m->s[f] == NULL && proto_field_type[f] == PROTO_FT_OPTSTR) {
			error |= msgpack_pack_nil(&pk);
			continue;
		}
		if (m->s[f] == NULL) {
			error |= msgpack_pack_str(&pk, 0);
			continue;
		}
		error |= msgpack_pack_str(&pk, m->slen[f]);
		error |= msgpack_pack_str_body(&pk, m->s[f], m->slen[f]);
	}
	if (error != 0) {
		msgpack_sbuffer_destroy(&sbuf);
		*cause = "out of memory";
		return -1;
	}
	if (sbuf.size - PROTO_HDR_LEN > PROTO_MAX_FRAME) {
		msgpack_sbuffer_destroy(&sbuf);
		*cause = "message exceeds PROTO_MAX_FRAME";
		return -1;
	}
	proto_put_be32(
	    (uint8_t *)sbuf.data, (uint32_t)(sbuf.size - PROTO_HDR_LEN));
	*outlen = sbuf.size;
	*out = (uint8_t *)msgpack_sbuffer_release(&sbuf);
	return 0;
}

int
proto_frame_len(
    const uint8_t hdr[PROTO_HDR_LEN], uint32_t *len, const char **cause)
{
	uint32_t n = (uint32_t)proto_get_be(hdr, PROTO_HDR_LEN);

	if (n == 0) {
		*cause = "empty frame";
		return -1;
	}
	if (n > PROTO_MAX_FRAME) {
		*cause = "frame exceeds PROTO_MAX_FRAME";
		return -1;
	}
	*len = n;
	return 0;
}

/*
 * Take n bytes of the payload for the object being checked, or fail when
 * fewer are left.
 */
static int
proto_walk_take(
    struct proto_walk *w, uint64_t n, const uint8_t **p, const char **cause)
{
	if (n > w->len - w->off) {
		*cause = "truncated payload";
		return -1;
	}
	*p = w->buf + w->off;
	w->off += n;
	return 0;
}

/* Read an n-byte big-endian length or count following the type byte. */
static int
proto_walk_len(struct proto_walk *w, size_t n, uint64_t *v, const char **cause)
{
	const uint8_t *p;

	if (proto_walk_take(w, n, &p, cause) != 0)
		return -1;
	*v = proto_get_be(p, n);
	return 0;
}

/*
 * Check the elements of a container of count objects at the given depth.
 *
 * Every element takes at least one byte, so a count larger than the bytes
 * left cannot be honest; refusing it here is what stops msgpack-c from
 * allocating count * sizeof(msgpack_object) for a five-byte payload.
 */
static int
proto_check_container(struct proto_walk *w, uint64_t count, unsigned depth,
    const char *toobig, const char **cause)
{
	uint64_t i;

	if (depth > PROTO_MAX_DEPTH) {
		*cause = "nesting exceeds PROTO_MAX_DEPTH";
		return -1;
	}
	if (count > w->len - w->off) {
		*cause = toobig;
		return -1;
	}
	if (count > PROTO_MAX_OBJECTS - w->nobj) {
		*cause = "too many objects";
		return -1;
	}
	for (i = 0; i < count; i++) {
		if (proto_check_object(w, depth, cause) != 0)
			return -1;
	}
	return 0;
}

/*
 * Check one msgpack object at w->off and move past it.  depth is how many
 * containers enclose it.  This only knows the msgpack format, not the
 * catalog; it proves the bytes are one well-formed object with honest
 * lengths so that msgpack-c can be given them safely.
 */
static int
proto_check_object(struct proto_walk *w, unsigned depth, const char **cause)
{
	const uint8_t *p;
	uint8_t b;
	uint64_t n;

	if (++w->nobj > PROTO_MAX_OBJECTS) {
		*cause = "too many objects";
		return -1;
	}
	if (proto_walk_take(w, 1, &p, cause) != 0)
		return -1;
	b = *p;

	if (b <= 0x7f || b >= 0xe0) /* positive and negative fixint */
		return 0;
	if (b <= 0x8f) /* fixmap */
		return proto_check_container(w, 2 * (uint64_t)(b & 0x0f),
		    depth + 1, "map count exceeds bytes left", cause);
	if (b <= 0x9f) /* fixarray */
		return proto_check_container(w, b & 0x0f, depth + 1,
		    "array count exceeds bytes left", cause);
	if (b <= 0xbf) /* fixstr */
		return proto_walk_take(w, b & 0x1f, &p, cause);

	switch (b) {
	case 0xc0: /* nil */
	case 0xc2: /* false */
	case 0xc3: /* true */
		return 0;
	case 0xc4: /* bin 8, 16, 32 */
	case 0xc5:
	case 0xc6:
		if (proto_walk_len(w, (size_t)1 << (b - 0xc4), &n, cause) != 0)
			return -1;
		if (n > w->len - w->off) {
			*cause = "bin length exceeds bytes left";
			return -1;
		}
		return proto_walk_take(w, n, &p, cause);
	case 0xc7: /* ext 8, 16, 32: length, type byte, data */
	case 0xc8:
	case 0xc9:
		if (proto_walk_len(w, (size_t)1 << (b - 0xc7), &n, cause) != 0)
			return -1;
		if (n + 1 > w->len - w->off) {
			*cause = "ext length exceeds bytes left";
			return -1;
		}
		return proto_walk_take(w, n + 1, &p, cause);
	case 0xca: /* float 32 */
		return proto_walk_take(w, 4, &p, cause);
	case 0xcb: /* float 64 */
		return proto_walk_take(w, 8, &p, cause);
	case 0xcc: /* uint 8, 16, 32, 64 */
	case 0xcd:
	case 0xce:
	case 0xcf:
		return proto_walk_take(w, (size_t)1 << (b - 0xcc), &p, cause);
	case 0xd0: /* int 8, 16, 32, 64 */
	case 0xd1:
	case 0xd2:
	case 0xd3:
		return proto_walk_take(w, (size_t)1 << (b - 0xd0), &p, cause);
	case 0xd4: /* fixext 1, 2, 4, 8, 16: type byte, data */
	case 0xd5:
	case 0xd6:
	case 0xd7:
	case 0xd8:
		return proto_walk_take(
		    w, 1 + ((size_t)1 << (b - 0xd4)), &p, cause);
	case 0xd9: /* str 8 */
	case 0xda: /* str 16 */
	case 0xdb: /* str 32 */
		if (proto_walk_len(w, (size_t)1 << (b - 0xd9), &n, cause) != 0)
			return -1;
		if (n > w->len - w->off) {
			*cause = "string length exceeds bytes left";
			return -1;
		}
		return proto_walk_take(w, n, &p, cause);
	case 0xdc: /* array 16, 32 */
	case 0xdd:
		if (proto_walk_len(w, b == 0xdc ? 2 : 4, &n, cause) != 0)
			return -1;
		return proto_check_container(
		    w, n, depth + 1, "array count exceeds bytes left", cause);
	case 0xde: /* map 16, 32 */
	case 0xdf:
		if (proto_walk_len(w, b == 0xde ? 2 : 4, &n, cause) != 0)
			return -1;
		return proto_check_container(
		    w, 2 * n, depth + 1, "map count exceeds bytes left", cause);
	default: /* 0xc1 is never used */
		*cause = "invalid msgpack type byte";
		return -1;
	}
}

/* Copy field f of m from the msgpack object o, checking its type. */
static int
proto_get_field(struct proto_msg *m, enum proto_field f,
    const msgpack_object *o, const char **cause)
{
	if (proto_field_type[f] == PROTO_FT_U64) {
		if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
			*cause = proto_field_cause[f].badtype;
			return -1;
		}
		m->u[f] = o->via.u64;
		return 0;
	}
	if (proto_field_type[f] == PROTO_FT_OPTSTR &&
	    o->type == MSGPACK_OBJECT_NIL)
		return 0; /* none: m->s[f] stays NULL */
	if (o->type != MSGPACK_OBJECT_STR) {
		*cause = proto_field_cause[f].badtype;
		return -1;
	}
	/* msgpack-c gives an empty string a NULL pointer. */
	if (o->via.str.size != 0 &&
	    memchr(o->via.str.ptr, '\0', o->via.str.size) != NULL) {
		*cause = proto_field_cause[f].nul;
		return -1;
	}
	proto_set_strn(m, f, o->via.str.ptr, o->via.str.size);
	return 0;
}

/*
 * Decode a payload.  m need not be initialized: its earlier contents are
 * overwritten, not freed.
 */
int
proto_decode(
    const uint8_t *buf, size_t len, struct proto_msg *m, const char **cause)
{
	struct proto_walk w = {buf, len, 0, 0};
	const struct proto_spec *spec;
	msgpack_unpacked res;
	const msgpack_object *o;
	size_t off = 0;
	uint64_t type;
	unsigned i;

	proto_msg_init(m, PROTO_NONE);
	if (len == 0) {
		*cause = "empty payload";
		return -1;
	}
	if (len > PROTO_MAX_FRAME) {
		*cause = "frame exceeds PROTO_MAX_FRAME";
		return -1;
	}

	/*
	 * Prove the bytes are exactly one object with honest lengths, no
	 * deeper than PROTO_MAX_DEPTH and with few objects, before msgpack-c
	 * sees them: its allocations are then bounded by the payload size.
	 */
	if (proto_check_object(&w, 0, cause) != 0)
		return -1;
	if (w.off != len) {
		*cause = "trailing bytes after the message";
		return -1;
	}

	msgpack_unpacked_init(&res);
	if (msgpack_unpack_next(&res, (const char *)buf, len, &off) !=
	        MSGPACK_UNPACK_SUCCESS ||
	    off != len) {
		*cause = "msgpack unpack failed";
		goto fail;
	}
	o = &res.data;
	if (o->type != MSGPACK_OBJECT_ARRAY) {
		*cause = "top level is not an array";
		goto fail;
	}
	if (o->via.array.size == 0) {
		*cause = "empty array";
		goto fail;
	}
	if (o->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
		*cause = "message type is not an unsigned integer";
		goto fail;
	}
	type = o->via.array.ptr[0].via.u64;
	if (type <= PROTO_NONE || type >= PROTO_MAX) {
		*cause = "unknown message type";
		goto fail;
	}
	spec = &proto_catalog[type];
	if (o->via.array.size != 1 + spec->nfields) {
		*cause = "wrong number of fields for the message type";
		goto fail;
	}
	m->type = (enum proto_type)type;
	for (i = 0; i < spec->nfields; i++) {
		if (proto_get_field(m, spec->fields[i],
		        &o->via.array.ptr[1 + i], cause) != 0)
			goto fail;
	}
	msgpack_unpacked_destroy(&res);
	return 0;

fail:
	msgpack_unpacked_destroy(&res);
	proto_msg_clear(m);
	return -1;
}

int
proto_write_fd(int fd, const struct proto_msg *m, const char **cause)
{
	uint8_t *buf;
	size_t len;
	int saved_errno;

	if (proto_encode(m, &buf, &len, cause) != 0)
		return -1;
	if (write_all(fd, buf, len) != 0) {
		saved_errno = errno;
		free(buf);
		errno = saved_errno;
		*cause = "write failed";
		return -1;
	}
	free(buf);
	return 0;
}

/*
 * Read and decode one frame.  Returns 0 with m filled in, 1 at a clean end
 * of stream (the peer closed before the first byte of a frame; *cause is
 * "end of stream"), or -1 with *cause set on a read error, an end of stream
 * inside a frame or a bad frame.  m is left empty unless 0 is returned.
 */
int
proto_read_fd(int fd, struct proto_msg *m, const char **cause)
{
	uint8_t hdr[PROTO_HDR_LEN], *buf;
	uint32_t len;
	int r, saved_errno;

	proto_msg_init(m, PROTO_NONE);
	r = read_full(fd, hdr, sizeof hdr);
	if (r == 0) {
		*cause = "end of stream";
		return 1;
	}
	if (r == -1) {
		*cause = errno == EPROTO ? "end of stream inside a frame"
		                         : "read failed";
		return -1;
	}
	if (proto_frame_len(hdr, &len, cause) != 0)
		return -1;

	buf = xmalloc(len);
	r = read_full(fd, buf, len);
	if (r != 1) {
		saved_errno = r == 0 ? EPROTO : errno;
		free(buf);
		errno = saved_errno;
		*cause = errno == EPROTO ? "end of stream inside a frame"
		                         : "read failed";
		return -1;
	}
	r = proto_decode(buf, len, m, cause);
	free(buf);
	return r;
}
