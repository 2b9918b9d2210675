/*
 * The control API: HTTP/1.1 with JSON bodies on a Unix socket in the state
 * directory (mode 0600 in a 0700 directory, and the peer's uid checked), so
 * that the CLI and `curl --unix-socket` drive the running service alike.
 * docs/api.md describes every endpoint.
 *
 * Event streams (?follow=1) are server-sent events: the reply is started
 * and left open, and control_event() writes each event as the service's
 * event pump (server.c) hands it over, so nothing polls the database.
 */
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <netinet/in.h>

#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "common.h"
#include "config.h"
#include "console.h"
#include "control.h"
#include "gc.h"
#include "metrics.h"
#include "store.h"
#include "task.h"

#define CONTROL_MAX_HEADERS 16384
/* A request of TASK_MAX_REQUEST bytes, JSON-escaped at its worst. */
#define CONTROL_MAX_BODY     (6 * TASK_MAX_REQUEST + 64 * 1024)
#define CONTROL_TIMEOUT_S    30
#define CONTROL_HEARTBEAT_MS 15000
/* A stream whose reader is this far behind is dropped. */
#define CONTROL_MAX_BACKLOG (4 * 1024 * 1024)
#define CONTROL_DIFF_MAX    (16 * 1024 * 1024) /* bytes of GET .../diff */

/*
 * Connections.  evhttp (libevent 2.1) has no connection limit, no deadline
 * for a request and no hook at accept or close that sees the descriptor; it
 * does ask us for each new connection's bufferevent (evhttp_set_bevcb),
 * right after accept(2) and before the descriptor is set on it.  There we
 * find the new descriptor (the accepted socket of our path that is not in
 * control_conns yet, from /proc/self/fd: exact, and cheap for a local
 * socket) and decide at once:
 *
 * - A connection has CONTROL_TIMEOUT_S from accept to send its whole
 *   request (a wall-clock deadline: a client trickling a byte at a time
 *   does not keep its slot), and as long again to take the reply; only
 *   event streams are open-ended.
 * - At ORCH_MAX_CONNECTIONS, or when the process is down to the
 *   descriptors kept in reserve for the tasks (the workers' socketpairs
 *   and pipes, git, the database), the oldest connection that has not
 *   sent its request yet is shut down to make room: idle clients churn
 *   among themselves, and the CLI, which sends its request at once, is
 *   served.  When none is idle, the new one is answered 503 (Retry-After,
 *   which the CLI honours) and shut down.
 * - Shut-down connections hold their descriptor until evhttp sees the EOF,
 *   in the next turn of the loop; so when the process reaches the reserve
 *   plus CONTROL_SLACK descriptors the listener stops for that turn.  An
 *   accept(2) that fails (EMFILE from elsewhere) stops it for
 *   CONTROL_PAUSE_MS: a listener left on would spin on the waiting
 *   connection.  Either way, no client can make a task fail with EMFILE.
 *
 * An entry is known by its descriptor and the socket's inode, so a
 * descriptor closed by evhttp and reused for something else is never
 * touched: the inode is checked before anything is done to it.
 */
enum control_conn_state {
	CONN_NONE,
	CONN_WAITING,   /* accepted; its request has not arrived */
	CONN_ANSWERING, /* its request arrived; the reply is being sent */
	CONN_STREAM,    /* an event stream: no deadline */
	CONN_REFUSED,   /* answered 503; shut down at its deadline */
	CONN_CLOSING,   /* shut down; evhttp frees it at the EOF */
};

struct control_conn {
	ino_t ino;
	enum control_conn_state state;
	uint64_t deadline; /* now_ms() after which it is shut down; 0: none */
	unsigned seen;     /* the scan that saw it last */
};

#define CONTROL_SWEEP_MS     250
#define CONTROL_REFUSED_MS   1000 /* for a refused client to read the 503 */
#define CONTROL_PAUSE_MS     250  /* after an accept(2) that failed */
#define CONTROL_RESERVE      64   /* descriptors kept for the service... */
#define CONTROL_RESERVE_EACH 16   /* ...and for each worker */
#define CONTROL_SLACK        8    /* shut down, not yet freed by evhttp */
#define CONTROL_SCAN_NEW     16
#define CONTROL_NOTE_MS      10000 /* between two notes of the same kind */

static struct control_conn *control_conns; /* indexed by descriptor */
static size_t control_nconns;
static unsigned control_scan_gen;
static unsigned control_fd_budget; /* descriptors clients may bring us to */
static int control_timeout_ms;
static int control_paused;            /* the listener is disabled */
static uint64_t control_paused_until; /* after a failed accept(2) */
static struct event *control_sweep_ev, *control_resume_ev;
static unsigned control_nevicted, control_nrefused, control_ncut;
static uint64_t control_noted_at, control_emfile_at;
static struct control_conn *control_conn_of(struct evhttp_request *);
static int control_conn_alive(int, const struct control_conn *);
static char control_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

struct control_stream {
	struct evhttp_request *req;
	int64_t task; /* 0: every task */
	int64_t last; /* the last event id sent */
	TAILQ_ENTRY(control_stream) entry;
};
static TAILQ_HEAD(, control_stream) control_streams = TAILQ_HEAD_INITIALIZER(
    control_streams);
static struct event *control_heartbeat_ev;

static struct evhttp *control_http;
static struct evconnlistener *control_listener;
/*
 * ORCH_HTTP_LISTEN: a second listener on the same evhttp, so that TCP
 * clients share the connection limits, deadlines and body limits above;
 * its accepted sockets are known by their local port.
 */
static struct evconnlistener *control_tcp_listener;
static struct sockaddr_storage control_tcp_addr;
static struct store *control_st;
static struct event_base *control_base;
static const struct control_cbs *control_cbs;

/*
 * Test knobs: the tests shorten the 30 s timeout and the 15 s heartbeat.
 * Not ORCH_* variables (the configuration refuses unknown ones), and not
 * documented: nothing but the tests should set them.
 */
static int
control_knob(const char *name, int def)
{
	const char *v = getenv(name);
	uint64_t u;

	if (v == NULL || parse_u64(v, 1, 86400000, &u) == -1)
		return def;
	return (int)u;
}

static void
control_reply(struct evhttp_request *req, int code, json_t *body)
{
	struct evbuffer *out = evbuffer_new();
	char *s = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;

	/* Never an answer of "(null)": a body that could not be built is a
	 * server error that says so. */
	if (s == NULL) {
		code = 500;
		s = xstrdup("{\"error\":\"the answer could not be encoded\"}");
	}
	evbuffer_add_printf(out, "%s\n", s);
	free(s);
	json_decref(body);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	evhttp_send_reply(req, code,
	    code == 200   ? "OK"
	    : code == 201 ? "Created"
	    : code == 400 ? "Bad Request"
	    : code == 403 ? "Forbidden"
	    : code == 404 ? "Not Found"
	    : code == 405 ? "Method Not Allowed"
	    : code == 409 ? "Conflict"
	    : code == 503 ? "Service Unavailable"
	                  : "Internal Server Error",
	    out);
	evbuffer_free(out);
}

static void
control_error(struct evhttp_request *req, int code, const char *msg)
{
	control_reply(
	    req, code, json_pack("{s:o}", "error", task_json_text(msg)));
}

/* The request body as a JSON object; NULL after replying 400. */
static json_t *
control_body(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	json_error_t jerr;
	json_t *o;
	char msg[256];

	if (len == 0)
		return json_object();
	o = json_loadb((const char *)evbuffer_pullup(in, -1), len,
	    JSON_REJECT_DUPLICATES, &jerr);
	if (o == NULL || !json_is_object(o)) {
		snprintf(msg, sizeof msg, "the body is not a JSON object: %s",
		    o == NULL ? jerr.text : "wrong type");
		json_decref(o);
		control_error(req, 400, msg);
		return NULL;
	}
	return o;
}

/* An optional string member; -1 after replying 400 when it is not one. */
static int
control_str(
    struct evhttp_request *req, json_t *o, const char *k, const char **v)
{
	json_t *j = json_object_get(o, k);
	char msg[128];

	*v = NULL;
	if (j == NULL || json_is_null(j))
		return 0;
	if (!json_is_string(j)) {
		snprintf(msg, sizeof msg, "\"%s\" must be a string", k);
		control_error(req, 400, msg);
		return -1;
	}
	*v = json_string_value(j);
	return 0;
}

/* An optional number of the body: unset (*v def), or >= 0, else 400. */
static int
control_num(struct evhttp_request *req, json_t *o, const char *k, double def,
    int integer, double *v)
{
	json_t *j = json_object_get(o, k);
	char msg[128];

	*v = def;
	if (j == NULL || json_is_null(j))
		return 0;
	if ((integer ? !json_is_integer(j) : !json_is_number(j)) ||
	    json_number_value(j) < 0) {
		snprintf(msg, sizeof msg, "\"%s\" must be a number from 0%s", k,
		    integer ? " (whole)" : "");
		control_error(req, 400, msg);
		return -1;
	}
	*v = json_number_value(j);
	return 0;
}

static int
control_list_cb(const struct task *t, void *arg)
{
	json_array_append_new(arg, task_json(control_st, t, 0));
	return 0;
}

static void
control_tasks_get(struct evhttp_request *req, struct evkeyvalq *q)
{
	const char *s = evhttp_find_header(q, "status");
	const char *r = evhttp_find_header(q, "resumable");
	enum tstatus ts;
	json_t *a;

	if (s != NULL && tstatus_parse(s, &ts) == -1) {
		control_error(req, 400,
		    "status must be pending, in_progress, awaiting_approval, "
		    "completed, failed or cancelled");
		return;
	}
	a = json_array();
	if (store_task_list(control_st, s ? (int)ts : -1,
	        r != NULL && strcmp(r, "1") == 0, control_list_cb, a) == -1) {
		json_decref(a);
		control_error(req, 500, store_error(control_st));
		return;
	}
	control_reply(req, 200, json_pack("{s:o}", "tasks", a));
}

int
control_submit(const char *request, const char *repo, const char *verify,
    const char *aa, int64_t max_tokens, double max_cost, int tcp, int64_t *id,
    char **cause, int *code)
{
	struct task_new tn;
	char *abs, *head;
	int rc, auto_approve = cfg.auto_approve;

	*code = 400;
	if (request == NULL || repo == NULL || *repo == '\0') {
		*cause = xstrdup("\"request\" and \"repo\" are required");
		return -1;
	}
	if (aa != NULL && *aa != '\0' &&
	    config_auto_approve_parse(aa, &auto_approve) == -1) {
		*cause = xstrdup(
		    "auto_approve must be none, plan, implementation or all");
		return -1;
	}
	/*
	 * Over TCP a client names only the repositories ORCH_REPOS lists:
	 * the token lets a person drive tasks, not point the service at any
	 * directory it can read.  The Unix socket is the service's own user.
	 */
	if (tcp && !config_repo_allowed(repo)) {
		*cause = xstrdup("this repository is not in ORCH_REPOS: "
		                 "choose one of the listed repositories");
		*code = 403;
		return -1;
	}
	if (task_check_repo(repo, &abs, &head, cause) == -1)
		return -1;
	tn.request = request;
	tn.repo = abs;
	tn.base_commit = head;
	tn.verify_command = verify != NULL && *verify != '\0' ? verify : NULL;
	tn.auto_approve = auto_approve;
	tn.max_tokens = max_tokens;
	tn.max_cost = max_cost;
	rc = task_submit(control_st, &tn, id, cause, code);
	if (rc == 0)
		control_cbs->task_added();
	free(abs);
	free(head);
	return rc;
}

static void
control_tasks_post(struct evhttp_request *req, const struct console_who *who)
{
	json_t *b = control_body(req);
	const char *request, *repo, *verify, *aa;
	char *err;
	int64_t id;
	int code;

	if (b == NULL)
		return;
	double max_tokens, max_cost;

	if (control_str(req, b, "request", &request) == -1 ||
	    control_str(req, b, "repo", &repo) == -1 ||
	    control_str(req, b, "verify", &verify) == -1 ||
	    control_str(req, b, "auto_approve", &aa) == -1 ||
	    control_num(req, b, "max_tokens", 0, 1, &max_tokens) == -1 ||
	    control_num(req, b, "max_cost", 0, 0, &max_cost) == -1)
		goto out;
	if (control_submit(request, repo, verify, aa, (int64_t)max_tokens,
	        max_cost, who->tcp, &id, &err, &code) == -1) {
		control_error(req, code, err);
		free(err);
	} else
		control_reply(
		    req, 201, json_pack("{s:I}", "id", (json_int_t)id));
out:
	json_decref(b);
}

/* An event as the API shows it: whole, whatever bytes its text holds. */
static json_t *
control_event_json(const struct event_row *ev)
{
	return task_event_json(ev);
}

static int
control_event_cb(const struct event_row *ev, void *arg)
{
	json_array_append_new(arg, control_event_json(ev));
	return 0;
}

int
control_task_op(int64_t id, const char *verb, const struct control_op *op,
    char **cause, int *code)
{
	int rc;

	*code = 200;
	if (op->repo != NULL && strcmp(verb, "resume") != 0) {
		*cause = xstrdup("\"repo\" is only for resume");
		*code = 400;
		return -1;
	}
	if (op->plan != NULL && strcmp(verb, "approve") != 0) {
		*cause = xstrdup("\"plan\" is only for approve");
		*code = 400;
		return -1;
	}
	if ((op->budget != 0 || op->max_cost >= 0) &&
	    strcmp(verb, "approve") != 0) {
		*cause = xstrdup("\"budget\" and \"max_cost\" are only for "
		                 "approve");
		*code = 400;
		return -1;
	}
	if (strcmp(verb, "approve") == 0) {
		struct task_approval a = {
		    op->by, op->plan, op->budget, op->max_cost};

		rc = task_approve(control_st, id, &a, cause, code);
	} else if (strcmp(verb, "reject") == 0)
		rc = task_reject(
		    control_st, id, op->reason, op->by, cause, code);
	else if (strcmp(verb, "cancel") == 0)
		rc = task_cancel(control_st, id, cause, code);
	else if (strcmp(verb, "resume") == 0) {
		/* A task of the Python orchestrator gets its repository. */
		rc = op->repo != NULL
		         ? task_set_repo(control_st, id, op->repo, cause, code)
		         : 0;
		if (rc == 0)
			rc = task_resume(control_st, id, cause, code);
	} else {
		*cause = xstrdup("no such action");
		*code = 404;
		return -1;
	}
	if (rc == 0)
		control_cbs->task_changed(id);
	return rc;
}

/* POST /v1/tasks/ID/VERB */
static void
control_task_verb(struct evhttp_request *req, int64_t id, const char *verb,
    const struct console_who *who)
{
	json_t *b = control_body(req);
	struct control_op op;
	char *err = NULL;
	int code = 200;

	if (b == NULL)
		return;
	double budget, max_cost;

	memset(&op, 0, sizeof op);
	if (control_str(req, b, "by", &op.by) == -1 ||
	    control_str(req, b, "reason", &op.reason) == -1 ||
	    control_str(req, b, "repo", &op.repo) == -1 ||
	    control_str(req, b, "plan", &op.plan) == -1 ||
	    control_num(req, b, "budget", 0, 1, &budget) == -1 ||
	    control_num(req, b, "max_cost", -1, 0, &max_cost) == -1) {
		json_decref(b);
		return;
	}
	op.budget = (int64_t)budget;
	op.max_cost = max_cost;
	/* A browser's session names its person: the body cannot. */
	if (who->session)
		op.by = who->name;
	if (who->tcp && op.repo != NULL && !config_repo_allowed(op.repo)) {
		json_decref(b);
		control_error(req, 403,
		    "this repository is not in ORCH_REPOS: choose one of the "
		    "listed repositories");
		return;
	}
	if (control_task_op(id, verb, &op, &err, &code) == -1) {
		json_decref(b);
		control_error(req, code, err);
		free(err);
		return;
	}
	json_decref(b);
	control_reply(req, 200,
	    json_pack("{s:I,s:s}", "id", (json_int_t)id, "done", verb));
}

/* The task id, or NULL after answering 500 or 404. */
static struct task *
control_task_load(struct evhttp_request *req, int64_t id)
{
	struct task *t;

	if (store_task_get(control_st, id, &t) == -1) {
		control_error(req, 500, store_error(control_st));
		return NULL;
	}
	if (t == NULL)
		control_error(req, 404, "no such task");
	return t;
}

static void
control_task_get(struct evhttp_request *req, int64_t id, struct evkeyvalq *q)
{
	struct task *t;

	(void)q;
	if ((t = control_task_load(req, id)) == NULL)
		return;
	control_reply(req, 200, task_json(control_st, t, 1));
	task_free(t);
}

/*
 * GET /v1/tasks/ID/diff: the whole change of the last implementation, what
 * a person approves (the reviewer may have been shown only its head).
 * git runs while the loop waits: a diff of two local commits, its output
 * bounded by CONTROL_DIFF_MAX.  Bytes that are not UTF-8 are replaced
 * (JSON holds only UTF-8), and "replaced" says how many.
 */
static void
control_diff_get(struct evhttp_request *req, int64_t id)
{
	struct task *t;
	char *diff, *clean, *err;
	size_t total, bad, keep;

	if ((t = control_task_load(req, id)) == NULL)
		return;
	if (task_diff(control_st, t, CONTROL_DIFF_MAX, &diff, &total, &err) ==
	    -1) {
		task_free(t);
		control_error(req, 409, err);
		free(err);
		return;
	}
	keep = utf8_head(diff, strlen(diff), CONTROL_DIFF_MAX);
	clean = utf8_clean(diff, keep, SIZE_MAX, 0, NULL, &bad);
	control_reply(req, 200,
	    json_pack("{s:I,s:s?,s:o,s:I,s:b,s:I}", "id", (json_int_t)id,
	        "base_commit", t->base_commit, "diff", task_json_text(clean),
	        "bytes", (json_int_t)total, "truncated", keep < total,
	        "replaced", (json_int_t)bad));
	free(clean);
	free(diff);
	task_free(t);
}

static int
control_task_over(enum wstate s)
{
	return s == WS_COMPLETED || s == WS_FAILED || s == WS_CANCELLED;
}

/* Write one event to a stream: "id:", "event:" (its kind), "data:". */
static void
control_stream_send(struct control_stream *s, const struct event_row *ev)
{
	struct evbuffer *out = evbuffer_new();
	json_t *o = control_event_json(ev);
	char *d = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;

	/* Never "data: (null)": an event that cannot be shown says so. */
	if (d == NULL)
		d = xasprintf("{\"id\":%lld,\"task\":%lld,\"kind\":\"error\","
		              "\"text\":\"(this event cannot be shown)\"}",
		    (long long)ev->id, (long long)ev->task);

	evbuffer_add_printf(out, "id: %lld\nevent: %s\ndata: %s\n\n",
	    (long long)ev->id, ev->kind, d);
	evhttp_send_reply_chunk(s->req, out);
	evbuffer_free(out);
	free(d);
	json_decref(o);
	s->last = ev->id;
}

static void
control_stream_free(struct control_stream *s)
{
	TAILQ_REMOVE(&control_streams, s, entry);
	free(s);
}

/* Say why the stream ends and finish the reply. */
static void
control_stream_end(struct control_stream *s, const char *state)
{
	struct evbuffer *out = evbuffer_new();
	struct evhttp_connection *evcon;

	evbuffer_add_printf(out,
	    "event: end\ndata: {\"task\":%lld,\"workflow_state\":\"%s\"}\n\n",
	    (long long)s->task, state);
	evhttp_send_reply_chunk(s->req, out);
	evbuffer_free(out);
	if ((evcon = evhttp_request_get_connection(s->req)) != NULL)
		evhttp_connection_set_closecb(evcon, NULL, NULL);
	evhttp_send_reply_end(s->req);
	control_stream_free(s);
}

/*
 * The client went away (or the service stops).  When evhttp has already
 * detached the request from the connection (the client closed it), the
 * request is ours to free; otherwise evhttp frees it with the connection.
 */
static void
control_stream_closed(struct evhttp_connection *evcon, void *arg)
{
	struct control_stream *s = arg;

	(void)evcon;
	if (evhttp_request_get_connection(s->req) == NULL)
		evhttp_request_free(s->req);
	control_stream_free(s);
}

static int
control_backlog_cb(const struct event_row *ev, void *arg)
{
	struct control_stream *s = arg;

	control_stream_send(s, ev);
	return 0;
}

static void
control_follow(struct evhttp_request *req, int64_t id, int64_t after)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	struct control_stream *s;
	struct control_conn *c;
	struct task *t = NULL;
	struct timeval wtv = {CONTROL_TIMEOUT_S, 0};
	int64_t before;

	if (id != 0) {
		if (store_task_get(control_st, id, &t) == -1) {
			control_error(req, 500, store_error(control_st));
			return;
		}
		if (t == NULL) {
			control_error(req, 404, "no such task");
			return;
		}
	}
	s = xcalloc(1, sizeof *s);
	s->req = req;
	s->task = id;
	s->last = after;
	TAILQ_INSERT_TAIL(&control_streams, s, entry);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/event-stream");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Cache-Control", "no-cache");
	evhttp_send_reply_start(req, 200, "OK");
	evhttp_connection_set_closecb(evcon, control_stream_closed, s);
	if ((c = control_conn_of(req)) != NULL) {
		c->state = CONN_STREAM;
		c->deadline = 0;
	}
	/* A stream is quiet for long stretches: only a stuck writer (the
	 * heartbeat cannot be delivered) ends it, not a silent reader. */
	bufferevent_set_timeouts(bev, NULL, &wtv);
	do {
		before = s->last;
		if (store_event_list(control_st, id, s->last, 1000,
		        control_backlog_cb, s) == -1) {
			log_warnx("event stream: %s", store_error(control_st));
			break;
		}
	} while (s->last != before);
	if (t != NULL) {
		/* Read again: the backlog may have been written after. */
		enum wstate state = t->state;
		task_free(t);
		if (store_task_get(control_st, id, &t) == 0 && t != NULL)
			state = t->state;
		task_free(t);
		if (control_task_over(state))
			control_stream_end(s, wstate_name(state));
	}
}

static void
control_events_get(struct evhttp_request *req, int64_t id, struct evkeyvalq *q)
{
	const char *after = evhttp_find_header(q, "after");
	const char *follow = evhttp_find_header(q, "follow");
	uint64_t a = 0;
	json_t *arr;

	if (after != NULL && parse_u64(after, 0, INT64_MAX, &a) == -1) {
		control_error(req, 400, "after must be an event id");
		return;
	}
	if (follow != NULL && strcmp(follow, "0") != 0) {
		control_follow(req, id, (int64_t)a);
		return;
	}
	arr = json_array();
	if (store_event_list(control_st, id, (int64_t)a, 1000, control_event_cb,
	        arr) == -1) {
		json_decref(arr);
		control_error(req, 500, store_error(control_st));
		return;
	}
	control_reply(req, 200, json_pack("{s:o}", "events", arr));
}

void
control_event(const struct event_row *ev)
{
	struct control_stream *s, *next;
	/* The event's state, never its text: the text is for people. */
	int over = ev->state < WS_MAX && control_task_over(ev->state);

	for (s = TAILQ_FIRST(&control_streams); s != NULL; s = next) {
		struct evhttp_connection *evcon;

		next = TAILQ_NEXT(s, entry);
		if ((s->task != 0 && s->task != ev->task) || ev->id <= s->last)
			continue;
		evcon = evhttp_request_get_connection(s->req);
		if (evcon != NULL && evbuffer_get_length(bufferevent_get_output(
		                         evhttp_connection_get_bufferevent(
		                             evcon))) > CONTROL_MAX_BACKLOG) {
			log_warnx("an event stream reader is too slow: "
			          "ending its stream");
			control_stream_end(s, "unknown");
			continue;
		}
		control_stream_send(s, ev);
		if (over && s->task != 0)
			control_stream_end(s, wstate_name(ev->state));
	}
}

static void
control_heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
	struct control_stream *s;

	(void)fd;
	(void)what;
	(void)arg;
	TAILQ_FOREACH(s, &control_streams, entry) {
		struct evbuffer *out = evbuffer_new();
		evbuffer_add_printf(out, ": keep-alive\n\n");
		evhttp_send_reply_chunk(s->req, out);
		evbuffer_free(out);
	}
}

/* POST /v1/gc {"older_than_days": N} */
static void
control_gc(struct evhttp_request *req)
{
	json_t *b = control_body(req), *d, *report;
	unsigned days = cfg.retention_days;
	char *err;

	if (b == NULL)
		return;
	d = json_object_get(b, "older_than_days");
	if (d != NULL && !json_is_null(d)) {
		if (!json_is_integer(d) || json_integer_value(d) < 0 ||
		    json_integer_value(d) > 36500) {
			json_decref(b);
			control_error(req, 400,
			    "\"older_than_days\" must be a whole number "
			    "from 0 to 36500");
			return;
		}
		days = (unsigned)json_integer_value(d);
	}
	json_decref(b);
	if (gc_run(control_st, days, &report, &err) == -1) {
		control_error(req, 500, err);
		free(err);
		return;
	}
	log_info("gc: %lld tasks trimmed, %lld events, %lld journal rows, "
	         "%lld worktrees",
	    (long long)json_integer_value(json_object_get(report, "tasks")),
	    (long long)json_integer_value(json_object_get(report, "events")),
	    (long long)json_integer_value(json_object_get(report, "journal")),
	    (long long)json_integer_value(
	        json_object_get(report, "worktrees")));
	control_reply(req, 200, report);
}

static struct control_conn *
control_conn_get(int fd)
{
	if (fd < 0)
		return NULL;
	if ((size_t)fd >= control_nconns) {
		size_t n = (size_t)fd + 64;
		control_conns =
		    xrealloc(control_conns, n * sizeof *control_conns);
		memset(control_conns + control_nconns, 0,
		    (n - control_nconns) * sizeof *control_conns);
		control_nconns = n;
	}
	return &control_conns[fd];
}

/* The connection of a request, if we track it. */
static struct control_conn *
control_conn_of(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	int fd;

	if (evcon == NULL)
		return NULL;
	fd = (int)bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
	if (fd < 0 || (size_t)fd >= control_nconns ||
	    control_conns[fd].state == CONN_NONE)
		return NULL;
	return &control_conns[fd];
}

static void
control_sweep_arm(void)
{
	struct timeval tv = {0, CONTROL_SWEEP_MS * 1000};

	if (control_sweep_ev != NULL &&
	    !evtimer_pending(control_sweep_ev, NULL))
		evtimer_add(control_sweep_ev, &tv);
}

/*
 * fd is a TCP socket on our listening port.  No outgoing connection of
 * ours (a webhook) can have that local port while we listen on it.
 */
static int
control_is_tcp_ours(int fd)
{
	struct sockaddr_storage ss = {0};
	socklen_t len = sizeof ss;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1 ||
	    ss.ss_family != control_tcp_addr.ss_family)
		return 0;
	if (ss.ss_family == AF_INET)
		return ((struct sockaddr_in *)&ss)->sin_port ==
		       ((struct sockaddr_in *)&control_tcp_addr)->sin_port;
	if (ss.ss_family == AF_INET6)
		return ((struct sockaddr_in6 *)&ss)->sin6_port ==
		       ((struct sockaddr_in6 *)&control_tcp_addr)->sin6_port;
	return 0;
}

/* fd is an accepted socket of our path (or port): its inode in *ino. */
static int
control_is_ours(int fd, ino_t *ino)
{
	struct sockaddr_un sun = {0};
	socklen_t len = sizeof sun, alen;
	struct stat sb;
	int acc = 0;

	if (control_tcp_listener != NULL && control_is_tcp_ours(fd)) {
		alen = sizeof acc;
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &alen) ==
		        0 &&
		    acc)
			return 0;
		if (fstat(fd, &sb) == -1)
			return 0;
		*ino = sb.st_ino;
		return 1;
	}
	if (getsockname(fd, (struct sockaddr *)&sun, &len) == -1 ||
	    sun.sun_family != AF_UNIX ||
	    len <= offsetof(struct sockaddr_un, sun_path) ||
	    strncmp(sun.sun_path, control_path, sizeof sun.sun_path) != 0)
		return 0;
	alen = sizeof acc;
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &alen) == 0 && acc)
		return 0; /* the listening socket */
	if (fstat(fd, &sb) == -1)
		return 0;
	*ino = sb.st_ino;
	return 1;
}

/*
 * Walk our descriptors: *nfds of them are open, *live are connections we
 * serve, and the accepted sockets not tracked yet go to newfds (their
 * inodes to inos).  Entries of connections gone are forgotten.
 */
static size_t
control_scan(unsigned *nfds, unsigned *live, int *newfds, ino_t *inos)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	size_t nnew = 0;
	unsigned gen = ++control_scan_gen;

	*nfds = *live = 0;
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		struct control_conn *c;
		ino_t ino;
		int fd;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		(*nfds)++;
		fd = atoi(de->d_name);
		if (fd == dirfd(d))
			continue;
		/* A known connection needs only its inode checked. */
		if ((size_t)fd < control_nconns &&
		    control_conns[fd].state != CONN_NONE &&
		    control_conn_alive(fd, &control_conns[fd]))
			ino = control_conns[fd].ino;
		else if (!control_is_ours(fd, &ino))
			continue;
		c = control_conn_get(fd);
		if (c->state != CONN_NONE && c->ino == ino) {
			c->seen = gen;
			if (c->state != CONN_REFUSED &&
			    c->state != CONN_CLOSING)
				(*live)++;
		} else if (nnew < CONTROL_SCAN_NEW) {
			newfds[nnew] = fd;
			inos[nnew++] = ino;
		}
	}
	closedir(d);
	for (size_t i = 0; i < control_nconns; i++)
		if (control_conns[i].state != CONN_NONE &&
		    control_conns[i].seen != gen)
			memset(&control_conns[i], 0, sizeof control_conns[i]);
	return nnew;
}

static unsigned
control_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;

	if (d == NULL)
		return 0;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n > 3 ? n - 3 : 0; /* ".", ".." and the directory's own */
}

/*
 * Answer 503 on the socket itself (evhttp has not read from it yet) and
 * shut down our side of it: the client reads the answer, then EOF.
 */
static void
control_refuse(int fd, const char *why)
{
	char body[256], msg[512];
	int n;

	snprintf(body, sizeof body, "{\"error\":\"%s\"}\n", why);
	n = snprintf(msg, sizeof msg,
	    "HTTP/1.1 503 Service Unavailable\r\n"
	    "Content-Type: application/json\r\n"
	    "Content-Length: %zu\r\nRetry-After: 1\r\n"
	    "Connection: close\r\n\r\n%s",
	    strlen(body), body);
	/* A fresh socket's buffer takes this whole; a short write only
	 * cuts the answer, and the client still sees the end. */
	if (n > 0 && write(fd, msg, (size_t)n) == -1)
		log_debug("refusing a connection: %s", strerror(errno));
	shutdown(fd, SHUT_WR);
}

/* The entry still names the socket it was made for. */
static int
control_conn_alive(int fd, const struct control_conn *c)
{
	struct stat sb;

	return fstat(fd, &sb) == 0 && S_ISSOCK(sb.st_mode) &&
	       sb.st_ino == c->ino;
}

static void
control_shut(int fd, struct control_conn *c)
{
	shutdown(fd, SHUT_RDWR);
	c->state = CONN_CLOSING;
	c->deadline = 0;
}

/* Shut down the oldest connection still waiting for its request. */
static int
control_evict(int except)
{
	struct control_conn *c, *old = NULL;
	int oldfd = -1;

	for (size_t fd = 0; fd < control_nconns; fd++) {
		c = &control_conns[fd];
		if (c->state != CONN_WAITING || (int)fd == except ||
		    (old != NULL && c->deadline >= old->deadline))
			continue;
		if (!control_conn_alive((int)fd, c)) {
			memset(c, 0, sizeof *c);
			continue;
		}
		old = c;
		oldfd = (int)fd;
	}
	if (old == NULL)
		return -1;
	control_shut(oldfd, old);
	control_nevicted++;
	return 0;
}

static void
control_resume_arm(unsigned ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	evtimer_add(control_resume_ev, &tv);
}

/* Stop accepting for a while (see above); control_resume ends it. */
static void
control_pause(unsigned ms)
{
	if (!control_paused) {
		evconnlistener_disable(control_listener);
		if (control_tcp_listener != NULL)
			evconnlistener_disable(control_tcp_listener);
	}
	control_paused = 1;
	control_paused_until = now_ms() + ms;
	control_resume_arm(ms);
}

static void
control_resume(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = now_ms();

	(void)fd;
	(void)what;
	(void)arg;
	if (!control_paused)
		return;
	if (now < control_paused_until)
		control_resume_arm((unsigned)(control_paused_until - now));
	else if (control_count_fds() >= control_fd_budget + CONTROL_SLACK)
		control_resume_arm(50);
	else {
		control_paused = 0;
		evconnlistener_enable(control_listener);
		if (control_tcp_listener != NULL)
			evconnlistener_enable(control_tcp_listener);
	}
}

static struct bufferevent *
control_bev_cb(struct event_base *base, void *arg)
{
	struct bufferevent *bev =
	    bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	int newfds[CONTROL_SCAN_NEW];
	ino_t inos[CONTROL_SCAN_NEW];
	unsigned nfds, live;
	size_t nnew;
	uint64_t now = now_ms();

	(void)arg;
	nnew = control_scan(&nfds, &live, newfds, inos);
	for (size_t i = 0; i < nnew; i++) {
		struct control_conn *c = control_conn_get(newfds[i]);
		int full =
		    live >= cfg.max_connections || nfds > control_fd_budget;

		c->ino = inos[i];
		c->seen = control_scan_gen;
		if (full && control_evict(newfds[i]) == -1) {
			char why[128];
			snprintf(why, sizeof why,
			    live >= cfg.max_connections
			        ? "too many connections "
			          "(ORCH_MAX_CONNECTIONS=%u):"
			          " try again later"
			        : "too many open descriptors: try again later",
			    cfg.max_connections);
			control_refuse(newfds[i], why);
			c->state = CONN_REFUSED;
			c->deadline = now + CONTROL_REFUSED_MS;
			control_nrefused++;
			if (nfds > control_fd_budget)
				control_shut(newfds[i], c);
			continue;
		}
		c->state = CONN_WAITING;
		c->deadline = now + (uint64_t)control_timeout_ms;
		if (!full)
			live++;
	}
	if (nfds >= control_fd_budget + CONTROL_SLACK)
		control_pause(0);
	control_sweep_arm();
	return bev;
}

/* accept(2) failed (EMFILE, ENFILE, ENOBUFS...): pause, do not spin. */
static void
control_accept_error(struct evconnlistener *lev, void *arg)
{
	int e = EVUTIL_SOCKET_ERROR();
	uint64_t now = now_ms();

	(void)lev;
	(void)arg;
	if (control_emfile_at == 0 || now - control_emfile_at >= 60000) {
		log_warnx("control socket: accept: %s: not accepting "
		          "connections for a moment",
		    strerror(e));
		control_emfile_at = now;
	}
	control_pause(CONTROL_PAUSE_MS);
}

/* Shut down the connections past their deadline, forget those gone. */
static void
control_sweep(evutil_socket_t fd_, short what, void *arg)
{
	uint64_t now = now_ms();
	int again = 0;

	(void)fd_;
	(void)what;
	(void)arg;
	for (size_t fd = 0; fd < control_nconns; fd++) {
		struct control_conn *c = &control_conns[fd];

		if (c->state == CONN_NONE)
			continue;
		if (!control_conn_alive((int)fd, c)) {
			memset(c, 0, sizeof *c);
			continue;
		}
		if (c->deadline != 0 && now >= c->deadline) {
			if (c->state == CONN_WAITING ||
			    c->state == CONN_ANSWERING)
				control_ncut++;
			control_shut((int)fd, c);
		}
		again = 1;
	}
	/* What misbehaving clients cost, said now and then, not per
	 * connection: a flood must not become a flood of the log. */
	if ((control_ncut || control_nevicted || control_nrefused) &&
	    now - control_noted_at >= CONTROL_NOTE_MS) {
		log_info("control socket: %u connections cut at the %d s "
		         "deadline, %u idle ones closed to make room, %u "
		         "refused (ORCH_MAX_CONNECTIONS=%u, %u descriptors "
		         "for clients)",
		    control_ncut, control_timeout_ms / 1000, control_nevicted,
		    control_nrefused, cfg.max_connections, control_fd_budget);
		control_ncut = control_nevicted = control_nrefused = 0;
		control_noted_at = now;
	}
	if (again || control_ncut || control_nevicted || control_nrefused)
		control_sweep_arm();
}

/* The descriptors clients may bring the process to (see above). */
static void
control_budget_init(void)
{
	struct rlimit rl;
	uint64_t reserve =
	    CONTROL_RESERVE + (uint64_t)CONTROL_RESERVE_EACH * cfg.max_workers;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 ||
	    rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > UINT32_MAX)
		rl.rlim_cur = UINT32_MAX;
	if (rl.rlim_cur <= reserve + 8) {
		log_warnx(
		    "RLIMIT_NOFILE is %llu: the control socket keeps %llu "
		    "descriptors for the tasks and accepts few "
		    "connections (raise it: ulimit -n, LimitNOFILE=)",
		    (unsigned long long)rl.rlim_cur,
		    (unsigned long long)reserve);
		control_fd_budget =
		    rl.rlim_cur > 16 ? (unsigned)rl.rlim_cur / 2 : 8;
	} else
		control_fd_budget = (unsigned)(rl.rlim_cur - reserve);
}

/*
 * Only the service's own user may use the socket.  The directory and the
 * socket modes already say so; the peer's credentials are checked too, in
 * case either was loosened by hand.
 */
static int
control_peer_ok(struct evhttp_request *req)
{
	struct evhttp_connection *c = evhttp_request_get_connection(req);
	struct bufferevent *bev = evhttp_connection_get_bufferevent(c);
	struct ucred cred;
	socklen_t len = sizeof cred;
	int fd = (int)bufferevent_getfd(bev);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1)
		return 0;
	return cred.uid == getuid() || cred.uid == 0;
}

/* The request came over TCP (ORCH_HTTP_LISTEN), not the Unix socket. */
static int
control_over_tcp(struct evhttp_request *req)
{
	struct evhttp_connection *c = evhttp_request_get_connection(req);
	struct sockaddr_storage ss = {0};
	socklen_t len = sizeof ss;
	int fd;

	if (c == NULL)
		return 1;
	fd = (int)bufferevent_getfd(evhttp_connection_get_bufferevent(c));
	/* Unknown counts as TCP: it must then authenticate. */
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		return 1;
	return ss.ss_family != AF_UNIX;
}

static void
control_cb(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = evhttp_uri_get_path(uri);
	const char *query = evhttp_uri_get_query(uri);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct evkeyvalq q;
	struct control_conn *c;
	struct console_who who;
	char verb[32];
	long long id;
	int n = 0;

	(void)arg;
	if ((c = control_conn_of(req)) != NULL &&
	    (c->state == CONN_REFUSED || c->state == CONN_CLOSING)) {
		/* Answered at accept already; this only ends it. */
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Connection", "close");
		control_error(
		    req, 503, "too many connections: try again later");
		return;
	}
	if (c != NULL) {
		/* The request is in: now as long again to take the reply. */
		c->state = CONN_ANSWERING;
		c->deadline = now_ms() + (uint64_t)control_timeout_ms;
	}
	if (path == NULL)
		path = "/";
	memset(&who, 0, sizeof who);
	console_headers(req);
	if (!control_over_tcp(req)) {
		if (!control_peer_ok(req)) {
			control_error(
			    req, 403, "this socket belongs to another user");
			return;
		}
	} else if (console_auth(req, path, &who) == -1)
		return; /* Every route below, /metrics too, is behind this. */
	TAILQ_INIT(&q);
	if (query != NULL && evhttp_parse_query_str(query, &q) == -1) {
		control_error(req, 400, "malformed query string");
		return;
	}
	if (strncmp(path, "/v1/", 4) != 0 &&
	    console_route(req, path, &q, &who)) {
		evhttp_clear_headers(&q);
		return;
	}
	if (strcmp(path, "/v1/health") == 0 && cmd == EVHTTP_REQ_GET) {
		control_reply(req, 200,
		    json_pack("{s:b,s:i}", "ok", 1, "pid", (int)getpid()));
	} else if (strcmp(path, "/v1/tasks") == 0) {
		if (cmd == EVHTTP_REQ_GET)
			control_tasks_get(req, &q);
		else if (cmd == EVHTTP_REQ_POST)
			control_tasks_post(req, &who);
		else
			control_error(req, 405, "use GET or POST");
	} else if (strcmp(path, "/v1/stats") == 0 && cmd == EVHTTP_REQ_GET) {
		json_t *s;
		if (store_stats_json(control_st, &s) == -1)
			control_error(req, 500, store_error(control_st));
		else {
			json_t *cost = task_cost_json(control_st, 0);

			json_object_set_new(s, "workers_running",
			    json_integer(control_cbs->workers_running()));
			if (cost != NULL)
				json_object_set_new(s, "cost", cost);
			control_reply(req, 200, s);
		}
	} else if (strcmp(path, "/metrics") == 0 && cmd == EVHTTP_REQ_GET) {
		metrics_serve(req, control_st, control_cbs->workers_running());
	} else if (strcmp(path, "/v1/events") == 0) {
		if (cmd == EVHTTP_REQ_GET)
			control_events_get(req, 0, &q);
		else
			control_error(req, 405, "use GET");
	} else if (strcmp(path, "/v1/gc") == 0) {
		if (cmd == EVHTTP_REQ_POST)
			control_gc(req);
		else
			control_error(req, 405, "use POST");
	} else if (sscanf(path, "/v1/tasks/%lld%n", &id, &n) == 1 &&
	           path[n] == '\0' && id > 0) {
		if (cmd == EVHTTP_REQ_GET)
			control_task_get(req, id, &q);
		else
			control_error(req, 405, "use GET");
	} else if (sscanf(path, "/v1/tasks/%lld/events%n", &id, &n) == 1 &&
	           path[n] == '\0' && id > 0 && cmd == EVHTTP_REQ_GET) {
		control_events_get(req, id, &q);
	} else if (sscanf(path, "/v1/tasks/%lld/diff%n", &id, &n) == 1 &&
	           path[n] == '\0' && id > 0 && cmd == EVHTTP_REQ_GET) {
		control_diff_get(req, id);
	} else if (sscanf(path, "/v1/tasks/%lld/%31[a-z]%n", &id, verb, &n) ==
	               2 &&
	           path[n] == '\0' && id > 0) {
		if (cmd == EVHTTP_REQ_POST)
			control_task_verb(req, id, verb, &who);
		else
			control_error(req, 405, "use POST");
	} else
		control_error(req, 404, "no such endpoint (see the README)");
	evhttp_clear_headers(&q);
}

/*
 * ORCH_HTTP_LISTEN: the API and the console on TCP, every request
 * authenticated (console_auth).  TLS is a reverse proxy's job: beyond
 * loopback the token and the session cookie cross the network in the
 * clear, and the service says so at start.
 */
static int
control_tcp_init(struct event_base *base, char **cause)
{
	unsigned len;
	int lo, fd, on = 1;

	if (config_listen_parse(
	        cfg.http_listen, &control_tcp_addr, &len, &lo, cause) == -1)
		return -1;
	fd = socket(control_tcp_addr.ss_family,
	    SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1) {
		*cause =
		    xasprintf("ORCH_HTTP_LISTEN: socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	if (control_tcp_addr.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
	if (bind(fd, (struct sockaddr *)&control_tcp_addr, len) == -1 ||
	    listen(fd, 64) == -1) {
		*cause = xasprintf("ORCH_HTTP_LISTEN=%s: %s", cfg.http_listen,
		    strerror(errno));
		close(fd);
		return -1;
	}
	control_tcp_listener = evconnlistener_new(base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (control_tcp_listener == NULL) {
		*cause = xstrdup("evconnlistener_new failed");
		close(fd);
		return -1;
	}
	if (evhttp_bind_listener(control_http, control_tcp_listener) == NULL) {
		*cause = xstrdup("evhttp_bind_listener failed");
		return -1;
	}
	evconnlistener_set_error_cb(control_tcp_listener, control_accept_error);
	if (!lo)
		log_warnx("ORCH_HTTP_LISTEN=%s is beyond loopback and has no "
		          "TLS: the token and the session cookie cross the "
		          "network in the clear; put a TLS reverse proxy in "
		          "front (docs/console.md) and listen on 127.0.0.1",
		    cfg.http_listen);
	log_info("console and API on http://%s/", cfg.http_listen);
	return 0;
}

int
control_init(struct event_base *base, struct store *st,
    const struct control_cbs *cbs, char **cause)
{
	struct sockaddr_un sun;
	char *path = config_socket_path();
	int fd;
	mode_t old;

	control_st = st;
	control_base = base;
	control_cbs = cbs;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		*cause = xasprintf("socket path %s is too long: use a shorter "
		                   "ORCH_STATE_DIR",
		    path);
		free(path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	snprintf(control_path, sizeof control_path, "%s", sun.sun_path);
	/* We hold the state lock: a socket file left here is stale. */
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1) {
		*cause = xasprintf("socket: %s", strerror(errno));
		free(path);
		return -1;
	}
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		umask(old);
		*cause = xasprintf("bind %s: %s", path, strerror(errno));
		close(fd);
		free(path);
		return -1;
	}
	umask(old);
	chmod(path, 0600);
	free(path);
	if (listen(fd, 64) == -1) {
		*cause = xasprintf("listen: %s", strerror(errno));
		close(fd);
		return -1;
	}
	control_listener = evconnlistener_new(base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (control_listener == NULL) {
		*cause = xstrdup("evconnlistener_new failed");
		close(fd);
		return -1;
	}
	control_timeout_ms =
	    1000 *
	    control_knob("SUPERVISOR_TEST_HTTP_TIMEOUT_S", CONTROL_TIMEOUT_S);
	control_budget_init();
	control_sweep_ev = evtimer_new(base, control_sweep, NULL);
	control_resume_ev = evtimer_new(base, control_resume, NULL);
	control_http = evhttp_new(base);
	/* evhttp's defaults let a client send huge headers and hold a
	 * half-sent request open forever. */
	evhttp_set_max_headers_size(control_http, CONTROL_MAX_HEADERS);
	evhttp_set_max_body_size(control_http, CONTROL_MAX_BODY);
	evhttp_set_timeout(control_http, control_timeout_ms / 1000);
	evhttp_set_bevcb(control_http, control_bev_cb, NULL);
	evhttp_set_allowed_methods(
	    control_http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	evhttp_set_gencb(control_http, control_cb, NULL);
	if (evhttp_bind_listener(control_http, control_listener) == NULL) {
		*cause = xstrdup("evhttp_bind_listener failed");
		return -1;
	}
	/* After the bind, which sets the listener's callback. */
	evconnlistener_set_error_cb(control_listener, control_accept_error);
	/* The console's pages answer on the socket too. */
	if (console_init(control_st, cfg.http_listen != NULL, cause) == -1)
		return -1;
	if (cfg.http_listen != NULL && control_tcp_init(base, cause) == -1)
		return -1;
	{
		int ms = control_knob(
		    "SUPERVISOR_TEST_HEARTBEAT_MS", CONTROL_HEARTBEAT_MS);
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		control_heartbeat_ev =
		    event_new(base, -1, EV_PERSIST, control_heartbeat_cb, NULL);
		event_add(control_heartbeat_ev, &tv);
	}
	return 0;
}

void
control_free(void)
{
	struct control_stream *s;
	char *path;

	if (control_http == NULL)
		return;
	/*
	 * The streams end cleanly: their readers see the service go.  (The
	 * static analyzer loses track of TAILQ_REMOVE's back pointer and takes
	 * the next TAILQ_FIRST for the stream just freed.)
	 */
	while ((s = TAILQ_FIRST(&control_streams)) != NULL) {
		struct evhttp_connection *evcon =
		    evhttp_request_get_connection(s->req); /* NOLINT */
		if (evcon != NULL)
			evhttp_connection_set_closecb(evcon, NULL, NULL);
		evhttp_send_reply_end(s->req);
		control_stream_free(s);
	}
	if (control_heartbeat_ev != NULL)
		event_free(control_heartbeat_ev);
	control_heartbeat_ev = NULL;
	if (control_sweep_ev != NULL)
		event_free(control_sweep_ev);
	control_sweep_ev = NULL;
	if (control_resume_ev != NULL)
		event_free(control_resume_ev);
	control_resume_ev = NULL;
	free(control_conns);
	control_conns = NULL;
	control_nconns = 0;
	control_paused = 0;
	/* evhttp_free frees the bound listeners too. */
	evhttp_free(control_http);
	control_http = NULL;
	control_listener = NULL;
	control_tcp_listener = NULL;
	console_free();
	path = config_socket_path();
	unlink(path);
	free(path);
}
