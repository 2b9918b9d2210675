/*
 * The service's metrics for Prometheus: counters and histograms kept in
 * memory by small hooks in the scheduler, the process layer, the task
 * operations and the store's commits, and gauges read from the store when
 * a scraper asks.  Written in the text exposition format, version 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/).
 *
 * They count from the service's start: a restart starts them at zero,
 * which Prometheus' rate() and increase() take as a counter reset.
 */
#include <sys/types.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>

#include "common.h"
#include "config.h"
#include "metrics.h"
#include "store.h"

/* Upper bounds of the histograms' buckets, in seconds (+Inf is implied). */
static const double stage_le[] = {
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
static const double model_le[] = {
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300};
static const double approval_le[] = {
    10, 60, 300, 900, 1800, 3600, 14400, 43200, 86400, 259200, 604800};
static const double commit_le[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};

#define HIST_MAX 16 /* buckets of the largest table above */

struct hist {
	uint64_t bucket[HIST_MAX]; /* non-cumulative: the bucket it fell in */
	uint64_t count;
	double sum;
};

/*
 * Series with a model's labels.  Their values come from the configuration
 * (one provider and model per service), but are bounded all the same: past
 * MODELS_MAX, observations go to the last row, labelled "other".
 */
#define MODELS_MAX 16
struct model_series {
	char *provider;
	char *model;
	struct hist latency;
	uint64_t tokens[2]; /* in, out */
};

/* Why a worker was killed: the first words of proc_kill's reason. */
enum kill_reason {
	KILL_STOP,      /* no reason: cancelled, stopping, paused, budget */
	KILL_PROTOCOL,  /* a malformed or unexpected message */
	KILL_HEARTBEAT, /* silent past ORCH_WORKER_TIMEOUT_S */
	KILL_DATABASE,  /* the database refused what it sent */
	KILL_OTHER,
	KILL_MAX
};
static const char *const kill_names[KILL_MAX] = {
    "stop", "protocol", "heartbeat", "database", "other"};

/* How a sandboxed command ended (sandbox_result_json's fields). */
enum cmd_exit { CMD_STATUS, CMD_SIGNAL, CMD_TIMEOUT, CMD_LIMIT, CMD_MAX };
static const char *const cmd_names[CMD_MAX] = {
    "status", "signal", "timeout", "limit"};

static struct {
	struct hist stage[STAGE_MAX];
	struct model_series models[MODELS_MAX];
	size_t nmodels;
	struct hist approval[STAGE_MAX];
	struct hist commit[2]; /* lazy, durable */
	uint64_t starts[STAGE_MAX];
	uint64_t restarts[STAGE_MAX];
	uint64_t kills[KILL_MAX];
	uint64_t commands[CMD_MAX];
} m;

double
metrics_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
hist_observe(struct hist *h, const double *le, size_t nle, double v)
{
	size_t i;

	if (!isfinite(v) || v < 0)
		v = 0;
	for (i = 0; i < nle && v > le[i]; i++)
		;
	if (i < nle)
		h->bucket[i]++;
	h->count++;
	h->sum += v;
}

void
metrics_observe_stage(enum stage stage, double seconds)
{
	if (stage < STAGE_MAX)
		hist_observe(
		    &m.stage[stage], stage_le, nitems(stage_le), seconds);
}

/* The series of the configured provider and model. */
static struct model_series *
metrics_model(void)
{
	const char *prov = cfg.provider != NULL ? cfg.provider : "";
	const char *model = cfg.model != NULL ? cfg.model : "default";
	struct model_series *ms;

	for (size_t i = 0; i < m.nmodels; i++) {
		ms = &m.models[i];
		if (strcmp(ms->provider, prov) == 0 &&
		    strcmp(ms->model, model) == 0)
			return ms;
	}
	if (m.nmodels == MODELS_MAX) {
		ms = &m.models[MODELS_MAX - 1];
		free(ms->model);
		ms->model = xstrdup("other");
		return ms;
	}
	ms = &m.models[m.nmodels++];
	ms->provider = xstrdup(prov);
	ms->model = xstrdup(model);
	return ms;
}

/* A sandbox result (JSON text, untrusted): how the command ended. */
static void
metrics_command(const char *text)
{
	json_t *r = json_loads(text, 0, NULL);
	json_t *limit = json_object_get(r, "limit");

	if (!json_is_object(r)) {
		json_decref(r);
		return;
	}
	if (json_is_string(limit))
		m.commands[CMD_LIMIT]++;
	else if (json_is_true(json_object_get(r, "timed_out")))
		m.commands[CMD_TIMEOUT]++;
	else if (json_is_integer(json_object_get(r, "signal")))
		m.commands[CMD_SIGNAL]++;
	else if (json_is_integer(json_object_get(r, "exit_status")))
		m.commands[CMD_STATUS]++;
	json_decref(r);
}

void
metrics_observe_journal(const char *kind, const char *data, double seconds,
    uint64_t tokens_in, uint64_t tokens_out)
{
	struct model_series *ms;
	json_t *t;
	const char *name, *text, *outcome;

	if (kind == NULL || data == NULL)
		return;
	if (strcmp(kind, "reply") == 0) {
		/* A reply is journaled once, when the model gave it: a
		 * replay sends none, so each is one model call. */
		ms = metrics_model();
		hist_observe(&ms->latency, model_le, nitems(model_le), seconds);
		ms->tokens[0] += tokens_in;
		ms->tokens[1] += tokens_out;
	} else if (strcmp(kind, "command") == 0)
		metrics_command(data); /* the verification command */
	else if (strcmp(kind, "tool") == 0 &&
	         strstr(data, "run_command") != NULL) {
		/* A run_command tool result: the sandbox's JSON is its text. */
		t = json_loads(data, 0, NULL);
		name = json_string_value(json_object_get(t, "name"));
		text = json_string_value(json_object_get(t, "text"));
		outcome = json_string_value(json_object_get(t, "outcome"));
		if (name != NULL && strcmp(name, "run_command") == 0 &&
		    outcome != NULL && strcmp(outcome, "done") == 0 &&
		    text != NULL)
			metrics_command(text);
		json_decref(t);
	}
}

void
metrics_observe_approval(enum stage gate, const char *since)
{
	struct timespec now;
	struct tm tm;
	const char *end;
	double then;

	if (gate >= STAGE_MAX || since == NULL)
		return;
	memset(&tm, 0, sizeof tm);
	/* The store writes "YYYY-MM-DD HH:MM:SS.sss" in UTC. */
	if ((end = strptime(since, "%Y-%m-%d %H:%M:%S", &tm)) == NULL)
		return;
	then = (double)timegm(&tm) + (*end == '.' ? strtod(end, NULL) : 0);
	clock_gettime(CLOCK_REALTIME, &now);
	hist_observe(&m.approval[gate], approval_le, nitems(approval_le),
	    (double)now.tv_sec + (double)now.tv_nsec / 1e9 - then);
}

void
metrics_observe_commit(double seconds, int durable, void *arg)
{
	(void)arg;
	hist_observe(
	    &m.commit[durable != 0], commit_le, nitems(commit_le), seconds);
}

void
metrics_worker_started(enum stage stage, int restart)
{
	if (stage >= STAGE_MAX)
		return;
	m.starts[stage]++;
	if (restart)
		m.restarts[stage]++;
}

void
metrics_worker_killed(const char *reason)
{
	static const struct {
		const char *prefix;
		enum kill_reason kind;
	} prefixes[] = {
	    {"protocol error", KILL_PROTOCOL},
	    {"no heartbeat", KILL_HEARTBEAT},
	    {"the database", KILL_DATABASE},
	    {"cannot read the task from the database", KILL_DATABASE},
	};
	enum kill_reason k = KILL_OTHER;

	if (reason == NULL)
		k = KILL_STOP;
	for (size_t i = 0; reason != NULL && i < nitems(prefixes); i++) {
		if (strncmp(reason, prefixes[i].prefix,
		        strlen(prefixes[i].prefix)) == 0) {
			k = prefixes[i].kind;
			break;
		}
	}
	m.kills[k]++;
}

/* ------------------------------------------------------------------------
 * The exposition text
 * --------------------------------------------------------------------- */

/*
 * A label value as the format wants it: valid UTF-8 (the format's
 * encoding), at most 128 bytes, with \, " and newline escaped, so no value
 * can end the quotes or the line it is in.
 */
static void
metrics_label(struct buf *b, const char *v)
{
	char *s = utf8_fix(v != NULL ? v : "", NULL);
	size_t n = utf8_head(s, strlen(s), 128);

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\\')
			buf_adds(b, "\\\\");
		else if (s[i] == '"')
			buf_adds(b, "\\\"");
		else if (s[i] == '\n')
			buf_adds(b, "\\n");
		else
			buf_add(b, &s[i], 1);
	}
	free(s);
}

static void
metrics_head(
    struct buf *b, const char *name, const char *type, const char *help)
{
	buf_addf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A number as the format reads it (Go's ParseFloat). */
static void
metrics_num(struct buf *b, double v)
{
	if (isinf(v))
		buf_adds(b, v > 0 ? "+Inf" : "-Inf");
	else
		buf_addf(b, "%.17g", v);
}

/* One histogram's lines; labels is "" or `name="value",` (escaped). */
static void
metrics_hist(struct buf *b, const char *name, const char *labels,
    const struct hist *h, const double *le, size_t nle)
{
	uint64_t cum = 0;

	for (size_t i = 0; i < nle; i++) {
		cum += h->bucket[i];
		buf_addf(b, "%s_bucket{%sle=\"", name, labels);
		metrics_num(b, le[i]);
		buf_addf(b, "\"} %llu\n", (unsigned long long)cum);
	}
	buf_addf(b, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels,
	    (unsigned long long)h->count);
	/* The same labels without le, and without the trailing comma. */
	if (*labels != '\0')
		buf_addf(
		    b, "%s_sum{%.*s} ", name, (int)strlen(labels) - 1, labels);
	else
		buf_addf(b, "%s_sum ", name);
	metrics_num(b, h->sum);
	if (*labels != '\0')
		buf_addf(b, "\n%s_count{%.*s} %llu\n", name,
		    (int)strlen(labels) - 1, labels,
		    (unsigned long long)h->count);
	else
		buf_addf(
		    b, "\n%s_count %llu\n", name, (unsigned long long)h->count);
}

/* The labels of a model series, escaped, with the trailing comma. */
static char *
metrics_model_labels(const struct model_series *ms, const char *extra)
{
	struct buf b;

	buf_init(&b);
	buf_adds(&b, "provider=\"");
	metrics_label(&b, ms->provider);
	buf_adds(&b, "\",model=\"");
	metrics_label(&b, ms->model);
	buf_addf(&b, "\",%s", extra);
	return buf_str(&b);
}

static int
metrics_gauges(struct store *st, unsigned workers, struct buf *b)
{
	int64_t counts[WS_MAX], runnable = 0;

	if (store_task_counts(st, counts) == -1)
		return -1;
	metrics_head(
	    b, "orch_tasks", "gauge", "Tasks by status and workflow state.");
	for (int i = 0; i < WS_MAX; i++)
		buf_addf(b,
		    "orch_tasks{status=\"%s\",workflow_state=\"%s\"} "
		    "%lld\n",
		    tstatus_name(wstate_status((enum wstate)i)),
		    wstate_name((enum wstate)i), (long long)counts[i]);
	for (int i = 0; i < WS_MAX; i++)
		if (i == WS_PENDING || i == WS_PLANNING ||
		    i == WS_PLAN_APPROVED || i == WS_IMPLEMENTING ||
		    i == WS_REVIEWING || i == WS_VERIFYING)
			runnable += counts[i];
	metrics_head(b, "orch_queue_depth", "gauge",
	    "Tasks waiting: pending (not started), waiting_for_worker (a "
	    "stage to run and no worker, slots full or backing off).");
	buf_addf(b, "orch_queue_depth{queue=\"pending\"} %lld\n",
	    (long long)counts[WS_PENDING]);
	buf_addf(b, "orch_queue_depth{queue=\"waiting_for_worker\"} %lld\n",
	    (long long)(runnable > (int64_t)workers ? runnable - workers : 0));
	metrics_head(b, "orch_workers_running", "gauge", "Workers running.");
	buf_addf(b, "orch_workers_running %u\n", workers);
	metrics_head(
	    b, "orch_workers_max", "gauge", "ORCH_MAX_WORKERS: the slots.");
	buf_addf(b, "orch_workers_max %u\n", cfg.max_workers);
	return 0;
}

int
metrics_render(struct store *st, unsigned workers, struct buf *b)
{
	char *l;

	if (metrics_gauges(st, workers, b) == -1)
		return -1;

	metrics_head(b, "orch_stage_duration_seconds", "histogram",
	    "A stage's worker run, from its start to its committed result.");
	for (unsigned i = 0; i < STAGE_MAX; i++) {
		l = xasprintf("stage=\"%s\",", stage_name((enum stage)i));
		metrics_hist(b, "orch_stage_duration_seconds", l, &m.stage[i],
		    stage_le, nitems(stage_le));
		free(l);
	}

	metrics_head(b, "orch_model_call_duration_seconds", "histogram",
	    "Model calls, as the supervisor sees them: from its last "
	    "message to the worker to the journaled reply.");
	for (size_t i = 0; i < m.nmodels; i++) {
		l = metrics_model_labels(&m.models[i], "");
		metrics_hist(b, "orch_model_call_duration_seconds", l,
		    &m.models[i].latency, model_le, nitems(model_le));
		free(l);
	}
	metrics_head(b, "orch_model_tokens_total", "counter",
	    "Tokens of model calls by direction (in: prompt, out: reply).");
	for (size_t i = 0; i < m.nmodels; i++) {
		for (int d = 0; d < 2; d++) {
			l = metrics_model_labels(&m.models[i],
			    d == 0 ? "direction=\"in\"" : "direction=\"out\"");
			buf_addf(b, "orch_model_tokens_total{%s} %llu\n", l,
			    (unsigned long long)m.models[i].tokens[d]);
			free(l);
		}
	}

	metrics_head(b, "orch_worker_starts_total", "counter",
	    "Workers started, by stage (restarts included).");
	for (unsigned i = 0; i < STAGE_MAX; i++)
		buf_addf(b, "orch_worker_starts_total{stage=\"%s\"} %llu\n",
		    stage_name((enum stage)i), (unsigned long long)m.starts[i]);
	metrics_head(b, "orch_worker_restarts_total", "counter",
	    "Workers started again after their stage's worker failed.");
	for (unsigned i = 0; i < STAGE_MAX; i++)
		buf_addf(b, "orch_worker_restarts_total{stage=\"%s\"} %llu\n",
		    stage_name((enum stage)i),
		    (unsigned long long)m.restarts[i]);
	metrics_head(b, "orch_worker_kills_total", "counter",
	    "Workers killed, by reason.");
	for (unsigned i = 0; i < KILL_MAX; i++)
		buf_addf(b, "orch_worker_kills_total{reason=\"%s\"} %llu\n",
		    kill_names[i], (unsigned long long)m.kills[i]);

	metrics_head(b, "orch_approval_wait_seconds", "histogram",
	    "How long a task waited for a person's approval or rejection.");
	for (unsigned i = 0; i < STAGE_MAX; i++) {
		if (i != STAGE_PLANNING && i != STAGE_IMPLEMENTING)
			continue;
		l = xasprintf("gate=\"%s\",",
		    i == STAGE_PLANNING ? "plan" : "implementation");
		metrics_hist(b, "orch_approval_wait_seconds", l, &m.approval[i],
		    approval_le, nitems(approval_le));
		free(l);
	}

	metrics_head(b, "orch_store_commit_duration_seconds", "histogram",
	    "Database commits: the durable ones wait for the disk, the lazy "
	    "ones (log lines, stage starts) reach it with the next durable "
	    "one.");
	metrics_hist(b, "orch_store_commit_duration_seconds",
	    "durability=\"durable\",", &m.commit[1], commit_le,
	    nitems(commit_le));
	metrics_hist(b, "orch_store_commit_duration_seconds",
	    "durability=\"lazy\",", &m.commit[0], commit_le, nitems(commit_le));

	metrics_head(b, "orch_sandbox_commands_total", "counter",
	    "Sandboxed commands by how they ended: status (exited), signal, "
	    "timeout (ORCH_CMD_TIMEOUT_S), limit (memory, processes, "
	    "output, CPU or file size).");
	for (unsigned i = 0; i < CMD_MAX; i++)
		buf_addf(b, "orch_sandbox_commands_total{exit=\"%s\"} %llu\n",
		    cmd_names[i], (unsigned long long)m.commands[i]);
	return 0;
}

void
metrics_serve(struct evhttp_request *req, struct store *st, unsigned workers)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *out;
	struct buf b;

	buf_init(&b);
	if (metrics_render(st, workers, &b) == -1) {
		buf_free(&b);
		evhttp_add_header(
		    h, "Content-Type", "text/plain; charset=utf-8");
		out = evbuffer_new();
		evbuffer_add_printf(
		    out, "cannot read the task counts: %s\n", store_error(st));
		evhttp_send_reply(req, 500, "Internal Server Error", out);
		evbuffer_free(out);
		return;
	}
	evhttp_add_header(
	    h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	out = evbuffer_new();
	evbuffer_add(out, b.buf, b.len);
	evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
	buf_free(&b);
}
