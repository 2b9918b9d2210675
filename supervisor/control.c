/*
 * The control API: HTTP/1.1 with JSON bodies on a Unix socket in the state
 * directory (mode 0600 in a 0700 directory, and the peer's uid checked), so
 * that the CLI and `curl --unix-socket` drive the running service alike.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
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

#define CONTROL_MAX_HEADERS 16384
#define CONTROL_MAX_BODY    (1024 * 1024)
#define CONTROL_TIMEOUT_S   30

static struct evhttp *control_http;
static struct evconnlistener *control_listener;
static struct store *control_st;
static struct event_base *control_base;

char *
control_socket_path(void)
{
	return xasprintf("%s/orch.sock", cfg.state_dir);
}

static void
control_reply(struct evhttp_request *req, int code, json_t *body)
{
	struct evbuffer *out = evbuffer_new();
	char *s = json_dumps(body, JSON_COMPACT);

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
	                  : "Internal Server Error",
	    out);
	evbuffer_free(out);
}

static void
control_error(struct evhttp_request *req, int code, const char *msg)
{
	control_reply(req, code, json_pack("{s:s}", "error", msg));
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

static int
control_event_cb(const struct event *ev, void *arg)
{
	json_array_append_new(arg,
	    json_pack("{s:I,s:I,s:s,s:s,s:s?,s:s}", "id", (json_int_t)ev->id,
	        "task", (json_int_t)ev->task, "ts", ev->ts, "kind", ev->kind,
	        "stage", ev->stage, "text", ev->text));
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

static void
control_events_get(struct evhttp_request *req, int64_t id, struct evkeyvalq *q)
{
	const char *after = evhttp_find_header(q, "after");
	uint64_t a = 0;
	json_t *arr;

	if (after != NULL && parse_u64(after, 0, INT64_MAX, &a) == -1) {
		control_error(req, 400, "after must be an event id");
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
	} else if (sscanf(path, "/v1/tasks/%lld%n", &id, &n) == 1 &&
	           path[n] == '\0' && id > 0) {
		if (cmd == EVHTTP_REQ_GET)
			control_task_get(req, id, &q);
		else
			control_error(req, 405, "use GET");
	} else if (sscanf(path, "/v1/tasks/%lld/events%n", &id, &n) == 1 &&
	           path[n] == '\0' && id > 0 && cmd == EVHTTP_REQ_GET) {
		control_events_get(req, id, &q);
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
	evhttp_set_timeout(control_http, CONTROL_TIMEOUT_S);
	evhttp_set_allowed_methods(
	    control_http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	evhttp_set_gencb(control_http, control_cb, NULL);
	if (evhttp_bind_listener(control_http, control_listener) == NULL) {
		*cause = xstrdup("evhttp_bind_listener failed");
		return -1;
	}
	return 0;
}

void
control_free(void)
{
	char *path;

	if (control_http == NULL)
		return;
	/* evhttp_free frees the bound listener too. */
	evhttp_free(control_http);
	control_http = NULL;
	control_listener = NULL;
	path = control_socket_path();
	unlink(path);
	free(path);
}
