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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

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
#include "supervisor.h"

#define CONTROL_MAX_HEADERS  16384
#define CONTROL_MAX_BODY     (1024 * 1024)
#define CONTROL_TIMEOUT_S    30
#define CONTROL_HEARTBEAT_MS 15000
/* A stream whose reader is this far behind is dropped. */
#define CONTROL_MAX_BACKLOG (4 * 1024 * 1024)
#define CONTROL_DIFF_MAX    (16 * 1024 * 1024) /* bytes of GET .../diff */

/*
 * The connection limit.  evhttp (libevent 2.1) has no limit and no hook at
 * accept or close that sees the connection; it does ask us for each new
 * connection's bufferevent (evhttp_set_bevcb), before the descriptor is
 * set.  There we count the live connections (the open descriptors that are
 * accepted sockets of our path, from /proc/self/fd: exact, and cheap for a
 * local socket) and remember the bufferevents made beyond the limit.  Their
 * requests are answered 503 and closed.  A bufferevent's address is only
 * reused for a new connection, which comes through here again and resets
 * its entry, so a stale entry is never mistaken for a live one.
 */
#define CONTROL_REFUSED_MAX 256
static struct bufferevent *control_refused[CONTROL_REFUSED_MAX];
static size_t control_refused_next;
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
static struct store *control_st;
static struct event_base *control_base;

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

char *
control_socket_path(void)
{
	return xasprintf("%s/orch.sock", cfg.state_dir);
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

static void
control_tasks_post(struct evhttp_request *req)
{
	json_t *b = control_body(req);
	const char *request, *repo, *verify, *aa;
	struct task_new tn;
	char *abs, *head, *err;
	int64_t id;
	int code, auto_approve = cfg.auto_approve;

	if (b == NULL)
		return;
	if (control_str(req, b, "request", &request) == -1 ||
	    control_str(req, b, "repo", &repo) == -1 ||
	    control_str(req, b, "verify", &verify) == -1 ||
	    control_str(req, b, "auto_approve", &aa) == -1)
		goto out;
	if (request == NULL || repo == NULL) {
		control_error(
		    req, 400, "\"request\" and \"repo\" are required");
		goto out;
	}
	if (aa != NULL && config_auto_approve_parse(aa, &auto_approve) == -1) {
		control_error(req, 400,
		    "auto_approve must be none, plan, implementation or all");
		goto out;
	}
	if (task_check_repo(repo, &abs, &head, &err) == -1) {
		control_error(req, 400, err);
		free(err);
		goto out;
	}
	tn.request = request;
	tn.repo = abs;
	tn.base_commit = head;
	tn.verify_command = verify;
	tn.auto_approve = auto_approve;
	if (task_submit(control_st, &tn, &id, &err, &code) == -1) {
		control_error(req, code, err);
		free(err);
	} else {
		control_reply(
		    req, 201, json_pack("{s:I}", "id", (json_int_t)id));
		sched_kick();
	}
	free(abs);
	free(head);
out:
	json_decref(b);
}

/* An event as the API shows it: whole, whatever bytes its text holds. */
static json_t *
control_event_json(const struct event_row *ev)
{
	return json_pack("{s:I,s:I,s:s,s:s,s:o,s:o}", "id", (json_int_t)ev->id,
	    "task", (json_int_t)ev->task, "ts", ev->ts, "kind", ev->kind,
	    "stage", task_json_text(ev->stage), "text",
	    task_json_text(ev->text));
}

static int
control_event_cb(const struct event_row *ev, void *arg)
{
	json_array_append_new(arg, control_event_json(ev));
	return 0;
}

/* POST /v1/tasks/ID/VERB */
static void
control_task_verb(struct evhttp_request *req, int64_t id, const char *verb)
{
	json_t *b = control_body(req);
	const char *by = NULL, *reason = NULL;
	char *err = NULL;
	int code = 200, rc;

	if (b == NULL)
		return;
	if (control_str(req, b, "by", &by) == -1 ||
	    control_str(req, b, "reason", &reason) == -1) {
		json_decref(b);
		return;
	}
	if (strcmp(verb, "approve") == 0)
		rc = task_approve(control_st, id, by, &err, &code);
	else if (strcmp(verb, "reject") == 0)
		rc = task_reject(control_st, id, reason, by, &err, &code);
	else if (strcmp(verb, "cancel") == 0)
		rc = task_cancel(control_st, id, &err, &code);
	else if (strcmp(verb, "resume") == 0)
		rc = task_resume(control_st, id, &err, &code);
	else {
		json_decref(b);
		control_error(req, 404, "no such action");
		return;
	}
	json_decref(b);
	if (rc == -1) {
		control_error(req, code, err);
		free(err);
		return;
	}
	sched_task_changed(id);
	control_reply(req, 200,
	    json_pack("{s:I,s:s}", "id", (json_int_t)id, "done", verb));
}

static void
control_task_get(struct evhttp_request *req, int64_t id, struct evkeyvalq *q)
{
	struct task *t;

	if (store_task_get(control_st, id, &t) == -1) {
		control_error(req, 500, store_error(control_st));
		return;
	}
	if (t == NULL) {
		control_error(req, 404, "no such task");
		return;
	}
	(void)q;
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

	if (store_task_get(control_st, id, &t) == -1) {
		control_error(req, 500, store_error(control_st));
		return;
	}
	if (t == NULL) {
		control_error(req, 404, "no such task");
		return;
	}
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
	enum wstate state;
	int over =
	    server_event_state(ev, &state) == 0 && control_task_over(state);

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
			control_stream_end(s, wstate_name(state));
	}
}

static void
control_heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
	struct control_stream *s;

	(void)fd;
	(void)what;
	(void)arg;
	TAILQ_FOREACH(s, &control_streams, entry)
	{
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

/* The connections open on our socket now. */
static unsigned
control_count_conns(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	unsigned n = 0;

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		struct sockaddr_un sun = {0};
		socklen_t len = sizeof sun;
		int fd, acc = 0;
		socklen_t alen = sizeof acc;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		fd = atoi(de->d_name);
		if (fd == dirfd(d) ||
		    getsockname(fd, (struct sockaddr *)&sun, &len) == -1 ||
		    sun.sun_family != AF_UNIX ||
		    len <= offsetof(struct sockaddr_un, sun_path) ||
		    strncmp(sun.sun_path, control_path, sizeof sun.sun_path) !=
		        0)
			continue;
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &alen) ==
		        0 &&
		    acc)
			continue; /* the listening socket */
		n++;
	}
	closedir(d);
	return n;
}

static int
control_is_refused(struct bufferevent *bev)
{
	for (size_t i = 0; i < CONTROL_REFUSED_MAX; i++)
		if (control_refused[i] == bev)
			return 1;
	return 0;
}

static struct bufferevent *
control_bev_cb(struct event_base *base, void *arg)
{
	struct bufferevent *bev =
	    bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);

	(void)arg;
	for (size_t i = 0; i < CONTROL_REFUSED_MAX; i++)
		if (control_refused[i] == bev)
			control_refused[i] = NULL;
	if (control_count_conns() >= cfg.max_connections) {
		control_refused[control_refused_next] = bev;
		control_refused_next =
		    (control_refused_next + 1) % CONTROL_REFUSED_MAX;
	}
	return bev;
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

static void
control_cb(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = evhttp_uri_get_path(uri);
	const char *query = evhttp_uri_get_query(uri);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct evkeyvalq q;
	char verb[32];
	long long id;
	int n = 0;

	(void)arg;
	if (control_is_refused(evhttp_connection_get_bufferevent(
	        evhttp_request_get_connection(req)))) {
		char msg[128];
		snprintf(msg, sizeof msg,
		    "too many connections (ORCH_MAX_CONNECTIONS=%u): try "
		    "again later",
		    cfg.max_connections);
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Connection", "close");
		control_error(req, 503, msg);
		return;
	}
	if (!control_peer_ok(req)) {
		control_error(req, 403, "this socket belongs to another user");
		return;
	}
	TAILQ_INIT(&q);
	if (query != NULL && evhttp_parse_query_str(query, &q) == -1) {
		control_error(req, 400, "malformed query string");
		return;
	}
	if (path == NULL)
		path = "/";
	if (strcmp(path, "/v1/health") == 0 && cmd == EVHTTP_REQ_GET) {
		control_reply(req, 200,
		    json_pack("{s:b,s:i}", "ok", 1, "pid", (int)getpid()));
	} else if (strcmp(path, "/v1/tasks") == 0) {
		if (cmd == EVHTTP_REQ_GET)
			control_tasks_get(req, &q);
		else if (cmd == EVHTTP_REQ_POST)
			control_tasks_post(req);
		else
			control_error(req, 405, "use GET or POST");
	} else if (strcmp(path, "/v1/stats") == 0 && cmd == EVHTTP_REQ_GET) {
		json_t *s;
		if (store_stats_json(control_st, &s) == -1)
			control_error(req, 500, store_error(control_st));
		else {
			json_object_set_new(
			    s, "workers_running", json_integer(proc_count()));
			control_reply(req, 200, s);
		}
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
			control_task_verb(req, id, verb);
		else
			control_error(req, 405, "use POST");
	} else
		control_error(req, 404, "no such endpoint (see the README)");
	evhttp_clear_headers(&q);
}

int
control_init(struct event_base *base, struct store *st, char **cause)
{
	struct sockaddr_un sun;
	char *path = control_socket_path();
	int fd;
	mode_t old;

	control_st = st;
	control_base = base;
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
	control_http = evhttp_new(base);
	/* evhttp's defaults let a client send huge headers and hold a
	 * half-sent request open forever. */
	evhttp_set_max_headers_size(control_http, CONTROL_MAX_HEADERS);
	evhttp_set_max_body_size(control_http, CONTROL_MAX_BODY);
	evhttp_set_timeout(control_http,
	    control_knob("SUPERVISOR_TEST_HTTP_TIMEOUT_S", CONTROL_TIMEOUT_S));
	evhttp_set_bevcb(control_http, control_bev_cb, NULL);
	evhttp_set_allowed_methods(
	    control_http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	evhttp_set_gencb(control_http, control_cb, NULL);
	if (evhttp_bind_listener(control_http, control_listener) == NULL) {
		*cause = xstrdup("evhttp_bind_listener failed");
		return -1;
	}
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
	/* evhttp_free frees the bound listener too. */
	evhttp_free(control_http);
	control_http = NULL;
	control_listener = NULL;
	path = control_socket_path();
	unlink(path);
	free(path);
}
