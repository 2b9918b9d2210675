/*
 * The web console: who may ask over TCP, and the pages.
 *
 * Over TCP (ORCH_HTTP_LISTEN) every request is authenticated, before any
 * route is looked at: a program sends the bearer token
 * (Authorization: Bearer TOKEN); a browser logs in once with the token and
 * a name, and gets a session cookie (HttpOnly, so no script reads it;
 * SameSite=Strict, so no other site's page sends it).  A browser's every
 * POST also carries the session's CSRF token (a form field, or the
 * X-CSRF-Token header), and a POST whose Origin is another site is refused
 * whatever it carries.  Secrets are compared in constant time.  Sessions
 * live in the service's memory: a restart logs everyone out.
 *
 * The pages are rendered here from the store, so that reading works
 * without JavaScript; console.js only follows the event streams and
 * reloads.  Everything a model, a repository or a client wrote goes
 * through console_html, the one escaping function, and every answer
 * carries a Content-Security-Policy that allows no inline script.
 */
#include <sys/queue.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <jansson.h>

#include "common.h"
#include "config.h"
#include "console.h"
#include "control.h"
#include "store.h"
#include "task.h"

/* The compiled-in assets (console-assets.c, made by console/gen.py). */
struct console_asset {
	const char *path;
	const char *type;
	const unsigned char *data;
	size_t len;
};
extern const struct console_asset console_assets[];
extern const size_t console_nassets;

#define CONSOLE_MAX_SESSIONS 256
#define CONSOLE_SESSION_S    (12 * 3600) /* then log in again */
#define CONSOLE_COOKIE       "orch_session"
#define CONSOLE_DIFF_MAX     (16 * 1024 * 1024)
#define CONSOLE_DIFF_FOLD    400 /* lines: a longer file's diff is folded */
#define CONSOLE_EVENTS_MAX   5000
#define CONSOLE_SUMMARY      400 /* bytes of a plan shown in the inbox */
#define CONSOLE_PAGE         200 /* tasks on a page of the list */

struct console_session {
	char id[CONSOLE_SECRET_LEN + 1];
	char csrf[CONSOLE_SECRET_LEN + 1];
	char name[TASK_MAX_NAME + 1];
	uint64_t expires; /* now_ms(); 0: a free slot */
};

static struct console_session *console_sessions;
static char *console_token;
static struct store *console_st;

static const char console_csp[] =
    "default-src 'self'; script-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

void
console_headers(struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Security-Policy", console_csp);
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "Referrer-Policy", "no-referrer");
	evhttp_add_header(h, "X-Frame-Options", "DENY");
}

int
console_secret_equal(const char *given, const char *secret)
{
	size_t gl = strlen(given), sl = strlen(secret);
	unsigned char d = gl != sl;

	/* As long as the secret whatever was given: no early exit. */
	for (size_t i = 0; i < sl; i++)
		d |= (unsigned char)(secret[i] ^ (i < gl ? given[i] : 0));
	return d == 0 && sl > 0;
}

void
console_html(struct buf *b, const char *s)
{
	char *shown;

	if (s == NULL)
		return;
	shown = utf8_show(s, strlen(s), UTF8_SHOW_NL | UTF8_SHOW_TAB);
	for (const char *p = shown; *p != '\0'; p++) {
		switch (*p) {
		case '&':
			buf_adds(b, "&amp;");
			break;
		case '<':
			buf_adds(b, "&lt;");
			break;
		case '>':
			buf_adds(b, "&gt;");
			break;
		case '"':
			buf_adds(b, "&quot;");
			break;
		case '\'':
			buf_adds(b, "&#39;");
			break;
		default:
			buf_add(b, p, 1);
		}
	}
	free(shown);
}

int
console_init(struct store *st, int tcp, char **cause)
{
	console_st = st;
	free(console_token);
	console_token = NULL;
	if (tcp && config_http_token(&console_token, cause) == -1)
		return -1;
	if (console_sessions == NULL)
		console_sessions =
		    xcalloc(CONSOLE_MAX_SESSIONS, sizeof *console_sessions);
	return 0;
}

void
console_free(void)
{
	if (console_token != NULL)
		explicit_bzero(console_token, strlen(console_token));
	free(console_token);
	console_token = NULL;
	if (console_sessions != NULL)
		explicit_bzero(console_sessions,
		    CONSOLE_MAX_SESSIONS * sizeof *console_sessions);
	free(console_sessions);
	console_sessions = NULL;
}

/* The session whose id is given, checking every slot alike. */
static struct console_session *
console_session_find(const char *id)
{
	struct console_session *found = NULL;
	uint64_t now = now_ms();

	if (console_sessions == NULL || strlen(id) != CONSOLE_SECRET_LEN)
		return NULL;
	for (size_t i = 0; i < CONSOLE_MAX_SESSIONS; i++) {
		struct console_session *s = &console_sessions[i];
		if (s->expires != 0 && console_secret_equal(id, s->id) &&
		    now < s->expires)
			found = s;
	}
	return found;
}

static struct console_session *
console_session_new(const char *name)
{
	struct console_session *slot = &console_sessions[0];

	/* A free or expired slot, else the one closest to expiring. */
	for (size_t i = 0; i < CONSOLE_MAX_SESSIONS; i++)
		if (console_sessions[i].expires < slot->expires)
			slot = &console_sessions[i];
	memset(slot, 0, sizeof *slot);
	if (random_hex(slot->id, CONSOLE_SECRET_LEN / 2) == -1 ||
	    random_hex(slot->csrf, CONSOLE_SECRET_LEN / 2) == -1)
		return NULL;
	snprintf(slot->name, sizeof slot->name, "%s", name);
	slot->expires = now_ms() + (uint64_t)CONSOLE_SESSION_S * 1000;
	return slot;
}

/* The value of cookie name in the request's Cookie header (malloc'd). */
static char *
console_cookie(struct evhttp_request *req, const char *name)
{
	const char *h =
	    evhttp_find_header(evhttp_request_get_input_headers(req), "Cookie");
	size_t nl = strlen(name);

	while (h != NULL && *h != '\0') {
		while (*h == ' ' || *h == ';')
			h++;
		if (strncmp(h, name, nl) == 0 && h[nl] == '=')
			return xstrndup(h + nl + 1, strcspn(h + nl + 1, "; "));
		h = strchr(h, ';');
	}
	return NULL;
}

/*
 * A form body (application/x-www-form-urlencoded) into kv.  -1 when it is
 * malformed or holds a NUL (%00): a value cut at a NUL would be taken
 * silently for the whole.
 */
static int
console_form(struct evhttp_request *req, struct evkeyvalq *kv)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	char *body = xmalloc(len + 1);
	int rc;

	TAILQ_INIT(kv);
	evbuffer_copyout(in, body, len);
	body[len] = '\0';
	if (memchr(body, '\0', len) != NULL || strcasestr(body, "%00")) {
		free(body);
		return -1;
	}
	/* Browsers send a space as '+'; evhttp decodes only %XX here. */
	for (char *p = body; *p != '\0'; p++)
		if (*p == '+')
			*p = ' ';
	rc = evhttp_parse_query_str(body, kv);
	free(body);
	return rc;
}

/* A browser's request for a page (not a program's for the API). */
static int
console_is_page(const char *path)
{
	return strncmp(path, "/v1/", 4) != 0 && strcmp(path, "/metrics") != 0;
}

static void
console_send(struct evhttp_request *req, int code, const char *type,
    const void *data, size_t len)
{
	struct evbuffer *out = evbuffer_new();
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evbuffer_add(out, data, len);
	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code,
	    code == 200   ? "OK"
	    : code == 303 ? "See Other"
	    : code == 400 ? "Bad Request"
	    : code == 401 ? "Unauthorized"
	    : code == 403 ? "Forbidden"
	    : code == 404 ? "Not Found"
	    : code == 405 ? "Method Not Allowed"
	    : code == 409 ? "Conflict"
	                  : "Error",
	    out);
	evbuffer_free(out);
}

static void
console_json_error(struct evhttp_request *req, int code, const char *msg)
{
	json_t *o = json_pack("{s:s}", "error", msg);
	char *s = json_dumps(o, JSON_COMPACT);

	console_send(req, code, "application/json", s, strlen(s));
	free(s);
	json_decref(o);
}

static void
console_redirect(struct evhttp_request *req, const char *to)
{
	evhttp_add_header(
	    evhttp_request_get_output_headers(req), "Location", to);
	console_send(req, 303, "text/plain; charset=utf-8", "", 0);
}

/*
 * A POST from another site: its Sec-Fetch-Site (else its Origin) says so.
 * A browser sends one of them with a form post; a program may send
 * neither, and needs the bearer token or the CSRF token anyway.  Our own
 * pages' Origin is "null" (Referrer-Policy: no-referrer hides it), so
 * that one decides nothing: the CSRF token does.
 */
static int
console_cross_site(struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	const char *origin = evhttp_find_header(h, "Origin");
	const char *site = evhttp_find_header(h, "Sec-Fetch-Site");
	const char *host = evhttp_find_header(h, "Host");
	const char *rest;

	if (site != NULL && strcmp(site, "same-origin") != 0 &&
	    strcmp(site, "none") != 0)
		return 1;
	if (site != NULL)
		return 0;
	if (origin == NULL || strcmp(origin, "null") == 0)
		return 0;
	if (host == NULL)
		return 1;
	if (strncmp(origin, "http://", 7) == 0)
		rest = origin + 7;
	else if (strncmp(origin, "https://", 8) == 0)
		rest = origin + 8;
	else
		return 1;
	return strcmp(rest, host) != 0;
}

/* The CSRF token a browser's POST carries: header, else form field. */
static int
console_csrf_ok(struct evhttp_request *req, const struct console_who *who)
{
	const char *h = evhttp_find_header(
	    evhttp_request_get_input_headers(req), "X-CSRF-Token");
	struct evkeyvalq kv;
	int ok = 0;

	if (h != NULL)
		return console_secret_equal(h, who->csrf);
	if (console_form(req, &kv) == 0) {
		const char *f = evhttp_find_header(&kv, "csrf");
		ok = f != NULL && console_secret_equal(f, who->csrf);
	}
	evhttp_clear_headers(&kv);
	return ok;
}

static int
console_public(const char *path, enum evhttp_cmd_type cmd)
{
	return (strcmp(path, "/login") == 0 &&
	           (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_POST)) ||
	       (strncmp(path, "/static/", 8) == 0 && cmd == EVHTTP_REQ_GET);
}

int
console_auth(
    struct evhttp_request *req, const char *path, struct console_who *who)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	const char *auth = evhttp_find_header(h, "Authorization");
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct console_session *s;
	char *sid;

	memset(who, 0, sizeof *who);
	who->tcp = 1;
	if (console_token == NULL) {
		console_json_error(req, 503, "the console is not set up");
		return -1;
	}
	if (auth != NULL) {
		/* A program: the token is its credential, sent each time and
		 * never by a browser on its own, so no CSRF token either. */
		if (strncasecmp(auth, "Bearer ", 7) != 0 ||
		    !console_secret_equal(auth + 7, console_token)) {
			evhttp_add_header(
			    evhttp_request_get_output_headers(req),
			    "WWW-Authenticate", "Bearer");
			console_json_error(req, 401, "wrong token");
			return -1;
		}
		return 0;
	}
	if (console_public(path, cmd)) {
		if (cmd == EVHTTP_REQ_POST && console_cross_site(req)) {
			console_json_error(req, 403, "a cross-site request");
			return -1;
		}
		return 0;
	}
	sid = console_cookie(req, CONSOLE_COOKIE);
	s = sid != NULL ? console_session_find(sid) : NULL;
	free(sid);
	if (s == NULL) {
		if (cmd == EVHTTP_REQ_GET && console_is_page(path)) {
			console_redirect(req, "/login");
			return -1;
		}
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "WWW-Authenticate", "Bearer");
		console_json_error(req, 401,
		    "log in first: send Authorization: Bearer TOKEN "
		    "(orch-supervisor console-url --token prints it)");
		return -1;
	}
	who->session = 1;
	snprintf(who->name, sizeof who->name, "%s", s->name);
	memcpy(who->csrf, s->csrf, sizeof who->csrf);
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD &&
	    (console_cross_site(req) || !console_csrf_ok(req, who))) {
		console_json_error(req, 403,
		    "missing or wrong CSRF token: reload the page and try "
		    "again");
		return -1;
	}
	return 0;
}

/* Pages. */

static void
console_page_start(struct buf *b, const char *title,
    const struct console_who *who, const char *here)
{
	static const char *const nav[][2] = {{"/inbox", "Inbox"},
	    {"/tasks", "Tasks"}, {"/submit", "Submit a task"}};

	buf_adds(b, "<!DOCTYPE html>\n<html lang=\"en\"><head>"
	            "<meta charset=\"utf-8\">"
	            "<meta name=\"viewport\" content=\"width=device-width, "
	            "initial-scale=1\"><title>");
	console_html(b, title);
	buf_adds(b, " - orch</title>"
	            "<link rel=\"stylesheet\" href=\"/static/console.css\">"
	            "<script src=\"/static/console.js\" defer></script>"
	            "</head><body><header><nav aria-label=\"Main\"><ul>");
	for (size_t i = 0; who != NULL && i < nitems(nav); i++)
		buf_addf(b, "<li><a href=\"%s\"%s>%s</a></li>", nav[i][0],
		    here != NULL && strcmp(here, nav[i][0]) == 0
		        ? " aria-current=\"page\""
		        : "",
		    nav[i][1]);
	buf_adds(b, "</ul>");
	if (who != NULL && who->session) {
		buf_adds(b, "<form method=\"post\" action=\"/logout\" "
		            "class=\"logout\"><input type=\"hidden\" "
		            "name=\"csrf\" value=\"");
		console_html(b, who->csrf);
		buf_adds(b, "\"><span class=\"who\">");
		console_html(b, who->name);
		buf_adds(b, "</span> <button type=\"submit\">Log out</button>"
		            "</form>");
	}
	buf_adds(b, "</nav></header><main>");
}

static void
console_page_send(struct evhttp_request *req, int code, struct buf *b)
{
	buf_adds(b, "</main></body></html>\n");
	console_send(req, code, "text/html; charset=utf-8", b->buf, b->len);
	buf_free(b);
}

static void
console_error_page(struct evhttp_request *req, int code, const char *msg,
    const struct console_who *who)
{
	struct buf b;

	buf_init(&b);
	console_page_start(&b, "Error", who, NULL);
	buf_adds(&b, "<h1>That did not work</h1><p role=\"alert\" "
	             "class=\"error\">");
	console_html(&b, msg);
	buf_adds(&b, "</p><p><a href=\"/inbox\">Back to the inbox</a></p>");
	console_page_send(req, code, &b);
}

static void
console_csrf_field(struct buf *b, const struct console_who *who)
{
	buf_adds(b, "<input type=\"hidden\" name=\"csrf\" value=\"");
	console_html(b, who->csrf);
	buf_adds(b, "\">");
}

static void
console_login_page(struct evhttp_request *req, int code, const char *msg)
{
	struct buf b;

	buf_init(&b);
	console_page_start(&b, "Log in", NULL, NULL);
	buf_adds(&b, "<h1>Log in to orch</h1>");
	if (msg != NULL) {
		buf_adds(&b, "<p role=\"alert\" class=\"error\">");
		console_html(&b, msg);
		buf_adds(&b, "</p>");
	}
	buf_adds(&b,
	    "<form method=\"post\" action=\"/login\" class=\"login\">"
	    "<p><label for=\"token\">Token</label> "
	    "<input type=\"password\" id=\"token\" name=\"token\" required "
	    "autocomplete=\"current-password\"></p>"
	    "<p><label for=\"name\">Your name (recorded with your "
	    "approvals)</label> <input type=\"text\" id=\"name\" "
	    "name=\"name\" required maxlength=\"256\" "
	    "autocomplete=\"username\"></p>"
	    "<p><button type=\"submit\">Log in</button></p></form>"
	    "<p class=\"hint\"><code>orch-supervisor console-url</code> "
	    "prints the address and the token.</p>");
	console_page_send(req, code, &b);
}

static void
console_login_post(struct evhttp_request *req)
{
	struct evkeyvalq kv;
	const char *token, *name, *proto;
	struct console_session *s;
	char *cookie, *err;
	int code;

	if (console_form(req, &kv) == -1) {
		evhttp_clear_headers(&kv);
		console_login_page(req, 400, "malformed form");
		return;
	}
	token = evhttp_find_header(&kv, "token");
	name = evhttp_find_header(&kv, "name");
	if (token == NULL || !console_secret_equal(token, console_token)) {
		evhttp_clear_headers(&kv);
		console_login_page(req, 403, "wrong token");
		return;
	}
	if (name == NULL || *name == '\0')
		name = "console";
	if (task_check_text("name", name, TASK_MAX_NAME, &err, &code) == -1) {
		evhttp_clear_headers(&kv);
		console_login_page(req, code, err);
		free(err);
		return;
	}
	if ((s = console_session_new(name)) == NULL) {
		evhttp_clear_headers(&kv);
		console_login_page(req, 500, "no randomness for a session");
		return;
	}
	evhttp_clear_headers(&kv);
	/* Behind a TLS proxy (docs/console.md) the cookie is for HTTPS only.
	 * A client that sends the header itself only makes it stricter. */
	proto = evhttp_find_header(
	    evhttp_request_get_input_headers(req), "X-Forwarded-Proto");
	cookie = xasprintf("%s=%s; Path=/; HttpOnly; SameSite=Strict; "
	                   "Max-Age=%d%s",
	    CONSOLE_COOKIE, s->id, CONSOLE_SESSION_S,
	    proto != NULL && strcasecmp(proto, "https") == 0 ? "; Secure" : "");
	evhttp_add_header(
	    evhttp_request_get_output_headers(req), "Set-Cookie", cookie);
	free(cookie);
	console_redirect(req, "/inbox");
}

static void
console_logout(struct evhttp_request *req)
{
	char *sid = console_cookie(req, CONSOLE_COOKIE);
	struct console_session *s = sid ? console_session_find(sid) : NULL;

	if (s != NULL)
		memset(s, 0, sizeof *s);
	free(sid);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Set-Cookie",
	    CONSOLE_COOKIE "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
	console_redirect(req, "/login");
}

static void
console_asset(struct evhttp_request *req, const char *path)
{
	for (size_t i = 0; i < console_nassets; i++) {
		if (strcmp(console_assets[i].path, path + 8) == 0) {
			evhttp_add_header(
			    evhttp_request_get_output_headers(req),
			    "Cache-Control", "max-age=300");
			console_send(req, 200, console_assets[i].type,
			    console_assets[i].data, console_assets[i].len);
			return;
		}
	}
	console_json_error(req, 404, "no such file");
}

/* Seconds since a store time ("YYYY-MM-DD HH:MM:SS.sss", UTC). */
static long long
console_age(const char *ts)
{
	struct tm tm;

	memset(&tm, 0, sizeof tm);
	if (ts == NULL || strptime(ts, "%Y-%m-%d %H:%M:%S", &tm) == NULL)
		return -1;
	return (long long)(time(NULL) - timegm(&tm));
}

static void
console_duration(struct buf *b, long long s)
{
	if (s < 0)
		buf_adds(b, "?");
	else if (s < 120)
		buf_addf(b, "%lld s", s);
	else if (s < 7200)
		buf_addf(b, "%lld min", s / 60);
	else if (s < 172800)
		buf_addf(b, "%lld h", s / 3600);
	else
		buf_addf(b, "%lld days", s / 86400);
}

/* The head of text, escaped, saying how much was left out. */
static void
console_summary(struct buf *b, const char *s, size_t max)
{
	size_t n, keep;
	char *head;

	if (s == NULL) {
		buf_adds(b, "<em>(none yet)</em>");
		return;
	}
	n = strlen(s);
	keep = utf8_head(s, n, max);
	head = xstrndup(s, keep);
	console_html(b, head);
	free(head);
	if (keep < n)
		buf_addf(b, " <em>(and %zu more bytes: open the task)</em>",
		    n - keep);
}

static void
console_state(struct buf *b, enum wstate s)
{
	buf_addf(b, "<span class=\"state st-%s\">%s</span>",
	    tstatus_name(wstate_status(s)), wstate_name(s));
}

struct console_list {
	struct task **v;
	size_t n, cap;
	const char *q;
	size_t max; /* 0: no limit */
	int more;   /* a task past max was there */
};

static int
console_collect(const struct task *t, void *arg)
{
	struct console_list *l = arg;
	struct task *c;

	if (l->q != NULL && *l->q != '\0' &&
	    (t->request == NULL || strcasestr(t->request, l->q) == NULL))
		return 0;
	if (l->max != 0 && l->n == l->max) {
		l->more = 1;
		return 1;
	}
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		l->v = xrealloc(l->v, l->cap * sizeof(struct task *));
	}
	/* The list is of borrowed rows: keep the fields the pages show. */
	c = xcalloc(1, sizeof *c);
	c->id = t->id;
	c->state = t->state;
	c->request = t->request ? xstrdup(t->request) : NULL;
	c->updated_at = t->updated_at ? xstrdup(t->updated_at) : NULL;
	c->created_at = t->created_at ? xstrdup(t->created_at) : NULL;
	c->text[TC_PLAN] = t->text[TC_PLAN] ? xstrdup(t->text[TC_PLAN]) : NULL;
	c->text[TC_IMPLEMENTATION] = t->text[TC_IMPLEMENTATION]
	                                 ? xstrdup(t->text[TC_IMPLEMENTATION])
	                                 : NULL;
	l->v[l->n++] = c;
	return 0;
}

static void
console_list_free(struct console_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		task_free(l->v[i]);
	free(l->v);
}

static int
console_by_wait(const void *a, const void *b)
{
	const struct task *x = *(struct task *const *)a;
	const struct task *y = *(struct task *const *)b;
	int c = strcmp(x->updated_at ? x->updated_at : "",
	    y->updated_at ? y->updated_at : "");

	return c != 0 ? c : (x->id > y->id) - (x->id < y->id);
}

/* The live marker: console.js follows every task's events from here. */
static void
console_live(struct buf *b)
{
	int64_t max = 0;

	store_event_max(console_st, &max);
	buf_addf(b,
	    "<p id=\"live-list\" data-after=\"%lld\" class=\"live\" "
	    "aria-live=\"polite\"></p>",
	    (long long)max);
}

static void
console_inbox(struct evhttp_request *req, const struct console_who *who)
{
	struct console_list l = {0};
	struct buf b;

	if (store_task_list(console_st, TS_AWAITING_APPROVAL, 0,
	        console_collect, &l) == -1) {
		console_list_free(&l);
		console_error_page(req, 500, store_error(console_st), who);
		return;
	}
	if (l.n > 1) /* qsort(NULL, 0, ...) is undefined */
		qsort(l.v, l.n, sizeof(struct task *), console_by_wait);
	buf_init(&b);
	console_page_start(&b, "Inbox", who, "/inbox");
	buf_addf(&b,
	    "<h1>Inbox</h1><p>%zu task%s waiting for a person, the "
	    "longest waiting first.</p>",
	    l.n, l.n == 1 ? "" : "s");
	console_live(&b);
	buf_adds(&b, "<ol class=\"inbox\">");
	for (size_t i = 0; i < l.n; i++) {
		struct task *t = l.v[i];
		int plan = t->state == WS_PLAN_AWAITING_APPROVAL;

		buf_addf(&b,
		    "<li class=\"card\"><h2><a href=\"/tasks/%lld\">Task "
		    "%lld</a>: %s</h2><p class=\"meta\">waiting for ",
		    (long long)t->id, (long long)t->id,
		    plan ? "the plan to approve"
		         : "the implementation to approve");
		console_duration(&b, console_age(t->updated_at));
		buf_adds(&b, "</p><h3>Request</h3><p class=\"text\">");
		console_summary(&b, t->request, CONSOLE_SUMMARY);
		buf_addf(&b, "</p><h3>%s</h3><p class=\"text\">",
		    plan ? "Plan" : "Implementation");
		console_summary(&b, t->text[plan ? TC_PLAN : TC_IMPLEMENTATION],
		    CONSOLE_SUMMARY);
		buf_addf(&b,
		    "</p><p><a href=\"/tasks/%lld\">Open task %lld"
		    "</a></p></li>",
		    (long long)t->id, (long long)t->id);
	}
	buf_adds(&b, "</ol>");
	console_list_free(&l);
	console_page_send(req, 200, &b);
}

static void
console_tasks(struct evhttp_request *req, struct evkeyvalq *q,
    const struct console_who *who)
{
	const char *status = evhttp_find_header(q, "status");
	const char *before = evhttp_find_header(q, "before");
	struct console_list l = {0};
	enum tstatus ts = TS_MAX;
	uint64_t bid = 0;
	struct buf b;

	l.q = evhttp_find_header(q, "q");
	l.max = CONSOLE_PAGE;
	if (before != NULL && *before != '\0' &&
	    parse_u64(before, 1, INT64_MAX, &bid) == -1) {
		console_error_page(req, 400, "before must be a task id", who);
		return;
	}
	if (status != NULL && *status != '\0' &&
	    tstatus_parse(status, &ts) == -1) {
		console_error_page(req, 400, "no such status", who);
		return;
	}
	if (store_task_list_desc(console_st, ts == TS_MAX ? -1 : (int)ts,
	        (int64_t)bid, console_collect, &l) == -1) {
		console_list_free(&l);
		console_error_page(req, 500, store_error(console_st), who);
		return;
	}
	buf_init(&b);
	console_page_start(&b, "Tasks", who, "/tasks");
	buf_adds(&b, "<h1>Tasks</h1><form method=\"get\" action=\"/tasks\" "
	             "class=\"filter\" role=\"search\"><label for=\"status\">"
	             "Status</label> <select id=\"status\" name=\"status\">"
	             "<option value=\"\">any</option>");
	for (int i = 0; i < TS_MAX; i++)
		buf_addf(&b, "<option%s>%s</option>",
		    ts == (enum tstatus)i ? " selected" : "",
		    tstatus_name((enum tstatus)i));
	buf_adds(&b, "</select> <label for=\"q\">Search the requests</label> "
	             "<input type=\"search\" id=\"q\" name=\"q\" value=\"");
	console_html(&b, l.q);
	buf_addf(&b,
	    "\"> <button type=\"submit\">Filter</button></form>"
	    "<p>%zu task%s%s, the newest first.</p>",
	    l.n, l.n == 1 ? "" : "s", l.more ? " on this page" : "");
	console_live(&b);
	buf_adds(&b, "<table class=\"tasks\"><thead><tr><th scope=\"col\">"
	             "Task</th><th scope=\"col\">State</th><th scope=\"col\">"
	             "Request</th><th scope=\"col\">Updated</th></tr></thead>"
	             "<tbody>");
	for (size_t i = 0; i < l.n; i++) {
		struct task *t = l.v[i];

		buf_addf(&b,
		    "<tr><td><a href=\"/tasks/%lld\">%lld</a></td><td>",
		    (long long)t->id, (long long)t->id);
		console_state(&b, t->state);
		buf_adds(&b, "</td><td class=\"text\">");
		console_summary(&b, t->request, 160);
		buf_adds(&b, "</td><td>");
		console_html(&b, t->updated_at);
		buf_adds(&b, "</td></tr>");
	}
	buf_adds(&b, "</tbody></table>");
	if (l.more && l.n > 0) {
		char *eq = evhttp_encode_uri(l.q != NULL ? l.q : "");
		char *href = xasprintf("/tasks?status=%s&q=%s&before=%lld",
		    ts == TS_MAX ? "" : tstatus_name(ts), eq,
		    (long long)l.v[l.n - 1]->id);

		buf_adds(&b, "<p><a href=\"");
		console_html(&b, href);
		buf_adds(&b, "\" rel=\"next\">Older tasks</a></p>");
		free(href);
		free(eq);
	}
	console_list_free(&l);
	console_page_send(req, 200, &b);
}

static void
console_submit_page(struct evhttp_request *req, const struct console_who *who)
{
	struct buf b;

	buf_init(&b);
	console_page_start(&b, "Submit a task", who, "/submit");
	buf_adds(&b, "<h1>Submit a task</h1><form method=\"post\" "
	             "action=\"/submit\" class=\"act\">");
	console_csrf_field(&b, who);
	buf_adds(&b, "<p><label for=\"request\">What to change</label>"
	             "<textarea id=\"request\" name=\"request\" rows=\"8\" "
	             "required></textarea></p><p><label for=\"repo\">"
	             "Repository</label> ");
	if (cfg.repos != NULL && who->tcp) {
		const char *p = cfg.repos;

		buf_adds(&b, "<select id=\"repo\" name=\"repo\">");
		while (*p != '\0') {
			const char *e;
			char *one;
			size_t l;

			while (*p == ' ' || *p == ',')
				p++;
			e = p + strcspn(p, ",");
			l = (size_t)(e - p);
			while (l > 0 && p[l - 1] == ' ')
				l--;
			if (l > 0) {
				one = xstrndup(p, l);
				buf_adds(&b, "<option>");
				console_html(&b, one);
				buf_adds(&b, "</option>");
				free(one);
			}
			p = e;
		}
		buf_adds(&b, "</select>");
	} else
		buf_adds(&b, "<input type=\"text\" id=\"repo\" name=\"repo\" "
		             "required placeholder=\"/path/to/repository\">");
	buf_adds(&b, "</p><p><label for=\"verify\">Verification command "
	             "(optional)</label> <input type=\"text\" id=\"verify\" "
	             "name=\"verify\"></p><p><button type=\"submit\">Submit"
	             "</button></p></form>");
	console_page_send(req, 200, &b);
}

static void
console_submit_post(struct evhttp_request *req, const struct console_who *who)
{
	struct evkeyvalq kv;
	char *err, to[64];
	int64_t id;
	int code;

	if (console_form(req, &kv) == -1) {
		evhttp_clear_headers(&kv);
		console_error_page(req, 400, "malformed form", who);
		return;
	}
	if (control_submit(evhttp_find_header(&kv, "request"),
	        evhttp_find_header(&kv, "repo"),
	        evhttp_find_header(&kv, "verify"), NULL, 0, 0, who->tcp, &id,
	        &err, &code) == -1) {
		evhttp_clear_headers(&kv);
		console_error_page(req, code, err, who);
		free(err);
		return;
	}
	evhttp_clear_headers(&kv);
	snprintf(to, sizeof to, "/tasks/%lld", (long long)id);
	console_redirect(req, to);
}

/* POST /tasks/ID/VERB from a form: then back to the task's page. */
static void
console_task_post(struct evhttp_request *req, int64_t id, const char *verb,
    const struct console_who *who)
{
	struct evkeyvalq kv;
	struct control_op op;
	char *err, to[64];
	int code;

	if (console_form(req, &kv) == -1) {
		evhttp_clear_headers(&kv);
		console_error_page(req, 400, "malformed form", who);
		return;
	}
	memset(&op, 0, sizeof op);
	op.max_cost = -1; /* unchanged */
	op.by = who->session ? who->name : NULL;
	op.reason = evhttp_find_header(&kv, "reason");
	if (strcmp(verb, "edit") == 0) {
		/* Approve the plan as edited. */
		op.plan = evhttp_find_header(&kv, "plan");
		if (op.plan == NULL)
			op.plan = "";
		verb = "approve";
	} else if (strcmp(verb, "answer") == 0)
		verb = "reject"; /* comments on the implementation */
	else if (strcmp(verb, "approve") != 0 && strcmp(verb, "reject") != 0 &&
	         strcmp(verb, "cancel") != 0 && strcmp(verb, "resume") != 0) {
		evhttp_clear_headers(&kv);
		console_error_page(req, 404, "no such action", who);
		return;
	}
	if (control_task_op(id, verb, &op, &err, &code) == -1) {
		evhttp_clear_headers(&kv);
		console_error_page(req, code, err, who);
		free(err);
		return;
	}
	evhttp_clear_headers(&kv);
	snprintf(to, sizeof to, "/tasks/%lld", (long long)id);
	console_redirect(req, to);
}

/* A JSON text (a stage's result) as a definition list, else as text. */
static void
console_json_dl(struct buf *b, const char *s)
{
	json_t *o = s != NULL ? json_loads(s, 0, NULL) : NULL;
	const char *k;
	json_t *v;

	if (!json_is_object(o)) {
		buf_adds(b, "<pre class=\"text\">");
		console_html(b, s);
		buf_adds(b, "</pre>");
		json_decref(o);
		return;
	}
	buf_adds(b, "<dl>");
	json_object_foreach(o, k, v) {
		char *txt = json_is_string(v)
		                ? xstrdup(json_string_value(v))
		                : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

		buf_adds(b, "<dt>");
		console_html(b, k);
		buf_adds(b, "</dt><dd><pre class=\"text\">");
		console_html(b, txt);
		buf_adds(b, "</pre></dd>");
		free(txt);
	}
	buf_adds(b, "</dl>");
	json_decref(o);
}

static void
console_diff_file(struct buf *b, const char *name, struct buf *body,
    unsigned lines, unsigned add, unsigned del, unsigned n)
{
	buf_addf(b, "<details class=\"file\"%s><summary><span class=\"fname\">",
	    lines > CONSOLE_DIFF_FOLD ? "" : " open");
	console_html(b, name);
	buf_addf(b,
	    "</span> <span class=\"add\">+%u</span> "
	    "<span class=\"del\">-%u</span>%s</summary>"
	    "<pre class=\"diff\" aria-label=\"diff of file %u\">",
	    add, del,
	    lines > CONSOLE_DIFF_FOLD ? " (long: folded, open to read it all)"
	                              : "",
	    n);
	buf_add(b, body->buf, body->len);
	buf_adds(b, "</pre></details>");
}

/*
 * The whole diff, one folding section per file, each line coloured by its
 * first character.  Every byte of it is text: names and lines are escaped.
 */
static void
console_diff(struct buf *b, const char *diff)
{
	struct buf body;
	char *name = NULL;
	unsigned lines = 0, add = 0, del = 0, nfiles = 0;
	const char *p = diff;

	buf_init(&body);
	while (*p != '\0') {
		size_t l = strcspn(p, "\n");
		char *line = xstrndup(p, l);
		const char *cls = NULL;

		if (strncmp(line, "diff --git ", 11) == 0) {
			if (name != NULL)
				console_diff_file(
				    b, name, &body, lines, add, del, nfiles);
			free(name);
			name = xstrdup(line + 11);
			nfiles++;
			buf_free(&body);
			buf_init(&body);
			lines = add = del = 0;
		}
		if (strncmp(line, "+++", 3) == 0 ||
		    strncmp(line, "---", 3) == 0)
			cls = "fh";
		else if (line[0] == '+')
			cls = "a", add++;
		else if (line[0] == '-')
			cls = "d", del++;
		else if (strncmp(line, "@@", 2) == 0)
			cls = "h";
		if (cls != NULL)
			buf_addf(&body, "<span class=\"%s\">", cls);
		console_html(&body, line);
		buf_adds(&body, cls != NULL ? "</span>\n" : "\n");
		lines++;
		free(line);
		p += l;
		if (*p == '\n')
			p++;
	}
	if (name != NULL || body.len > 0)
		console_diff_file(b, name != NULL ? name : "(diff)", &body,
		    lines, add, del, nfiles);
	free(name);
	buf_free(&body);
}

struct console_cps {
	struct buf *timeline;
	struct buf *history;
	unsigned nhistory;
};

static int
console_cp_cb(const struct checkpoint *cp, void *arg)
{
	struct console_cps *c = arg;
	json_t *o;

	buf_adds(c->timeline, "<li><time>");
	console_html(c->timeline, cp->created_at);
	buf_adds(c->timeline, "</time> ");
	console_html(c->timeline, cp->name);
	buf_adds(c->timeline, "</li>");
	if (strcmp(cp->name, "plan_rejected") != 0 &&
	    strcmp(cp->name, "plan_edited") != 0)
		return 0;
	if ((o = cp->data ? json_loads(cp->data, 0, NULL) : NULL) == NULL)
		return 0;
	c->nhistory++;
	if (strcmp(cp->name, "plan_rejected") == 0) {
		buf_adds(c->history, "<li><p>Rejected by ");
		console_html(
		    c->history, json_string_value(json_object_get(o, "by")));
		buf_adds(c->history, " at ");
		console_html(c->history, cp->created_at);
		buf_adds(
		    c->history, ". Reason:</p><pre class=\"text reason\">");
		console_html(c->history,
		    json_string_value(json_object_get(o, "reason")));
		buf_adds(c->history, "</pre><details><summary>The rejected "
		                     "plan</summary><pre class=\"text\">");
		console_html(
		    c->history, json_string_value(json_object_get(o, "plan")));
		buf_adds(c->history, "</pre></details></li>");
	} else {
		buf_adds(c->history, "<li><p>Edited by ");
		console_html(
		    c->history, json_string_value(json_object_get(o, "by")));
		buf_adds(c->history, " at ");
		console_html(c->history, cp->created_at);
		buf_adds(c->history, " before approval.</p><details><summary>"
		                     "The model's plan</summary><pre "
		                     "class=\"text\">");
		console_html(c->history,
		    json_string_value(json_object_get(o, "model_plan")));
		buf_adds(c->history, "</pre></details></li>");
	}
	json_decref(o);
	return 0;
}

struct console_events {
	struct buf *b;
	struct buf *errors;
	int64_t last;
	unsigned n;
};

static int
console_event_cb(const struct event_row *ev, void *arg)
{
	struct console_events *e = arg;
	struct buf *b = e->b;

	e->last = ev->id;
	e->n++;
	buf_addf(b, "<li class=\"ev-%s\"><time>",
	    strcmp(ev->kind, "error") == 0   ? "error"
	    : strcmp(ev->kind, "state") == 0 ? "state"
	                                     : "other");
	console_html(b, ev->ts);
	buf_adds(b, "</time> [");
	console_html(b, ev->stage != NULL ? ev->stage : "-");
	buf_adds(b, "] ");
	console_html(b, ev->text);
	buf_adds(b, "</li>");
	if (strcmp(ev->kind, "error") == 0) {
		buf_adds(e->errors, "<li><time>");
		console_html(e->errors, ev->ts);
		buf_adds(e->errors, "</time> ");
		console_html(e->errors, ev->text);
		buf_adds(e->errors, "</li>");
	}
	return 0;
}

static void
console_section(struct buf *b, const char *id, const char *title)
{
	buf_addf(b,
	    "<section id=\"sec-%s\" aria-labelledby=\"h-%s\"><h2 "
	    "id=\"h-%s\">%s</h2>",
	    id, id, id, title);
}

static void
console_actions(
    struct buf *b, const struct task *t, const struct console_who *who)
{
	long long id = (long long)t->id;

	console_section(b, "actions", "Actions");
	if (t->state == WS_PLAN_AWAITING_APPROVAL ||
	    t->state == WS_IMPLEMENTATION_AWAITING_APPROVAL) {
		int plan = t->state == WS_PLAN_AWAITING_APPROVAL;

		buf_addf(b,
		    "<form method=\"post\" action=\"/tasks/%lld/approve\" "
		    "class=\"act\">",
		    id);
		console_csrf_field(b, who);
		buf_addf(b,
		    "<button type=\"submit\" id=\"approve\">Approve the "
		    "%s</button></form>",
		    plan ? "plan" : "implementation");
		buf_addf(b,
		    "<form method=\"post\" action=\"/tasks/%lld/%s\" "
		    "class=\"act\">",
		    id, plan ? "reject" : "answer");
		console_csrf_field(b, who);
		buf_addf(b,
		    "<p><label for=\"reason\">%s</label><textarea "
		    "id=\"reason\" "
		    "name=\"reason\" rows=\"4\" required></textarea></p>"
		    "<button type=\"submit\" id=\"%s\">%s</button></form>",
		    plan ? "Why the plan is rejected (the model plans again "
		           "with it)"
		         : "Comments on the implementation (it goes back to "
		           "implementing with them)",
		    plan ? "reject" : "answer",
		    plan ? "Reject the plan" : "Send back with comments");
		if (plan) {
			buf_addf(b,
			    "<form method=\"post\" "
			    "action=\"/tasks/%lld/edit\" class=\"act\">",
			    id);
			console_csrf_field(b, who);
			buf_adds(b,
			    "<p><label for=\"plan-edit\">Edit the plan, "
			    "then approve your version</label><textarea "
			    "id=\"plan-edit\" name=\"plan\" rows=\"12\" "
			    "required>");
			console_html(b, t->text[TC_PLAN]);
			buf_adds(b, "</textarea></p><button type=\"submit\" "
			            "id=\"approve-edited\">Approve the edited "
			            "plan</button></form>");
		}
	}
	if (t->state == WS_FAILED) {
		buf_addf(b,
		    "<form method=\"post\" action=\"/tasks/%lld/resume\" "
		    "class=\"act\">",
		    id);
		console_csrf_field(b, who);
		buf_adds(b, "<button type=\"submit\" id=\"resume\">Resume"
		            "</button></form>");
	}
	if (t->state != WS_COMPLETED && t->state != WS_CANCELLED) {
		buf_addf(b,
		    "<form method=\"post\" action=\"/tasks/%lld/cancel\" "
		    "class=\"act\">",
		    id);
		console_csrf_field(b, who);
		buf_adds(b, "<button type=\"submit\" id=\"cancel\" "
		            "class=\"danger\">Cancel the task</button></form>");
	}
	if (t->state == WS_COMPLETED) {
		char *branch = task_branch(console_st, t);

		buf_adds(b, "<p>Completed: the change is on the branch <code>");
		console_html(b, branch);
		buf_adds(b, "</code> of the repository, ready to merge.</p>");
		free(branch);
	}
	buf_adds(b, "</section>");
}

static void
console_usage(struct buf *b, const struct task *t)
{
	json_t *u = NULL, *v;
	const char *k;

	console_section(b, "usage", "Usage by stage");
	if (store_usage_json(console_st, t->id, &u) == -1 ||
	    !json_is_object(u) || json_object_size(u) == 0) {
		buf_adds(b, "<p>No model calls yet.</p></section>");
		json_decref(u);
		return;
	}
	buf_adds(b, "<table><thead><tr><th scope=\"col\">Stage</th>"
	            "<th scope=\"col\">Model calls</th><th scope=\"col\">"
	            "Tokens in</th><th scope=\"col\">Tokens out</th></tr>"
	            "</thead><tbody>");
	json_object_foreach(u, k, v) {
		buf_adds(b, "<tr><td>");
		console_html(b, k);
		buf_addf(b, "</td><td>%lld</td><td>%lld</td><td>%lld</td></tr>",
		    (long long)json_integer_value(json_object_get(v, "calls")),
		    (long long)json_integer_value(
		        json_object_get(v, "tokens_in")),
		    (long long)json_integer_value(
		        json_object_get(v, "tokens_out")));
	}
	buf_adds(b, "</tbody></table></section>");
	json_decref(u);
}

static void
console_task_page(
    struct evhttp_request *req, int64_t id, const struct console_who *who)
{
	struct task *t;
	struct buf b, timeline, history, log, errors;
	struct console_cps cps;
	struct console_events ev;
	char title[64], host[256];
	int over;

	if (store_task_get(console_st, id, &t) == -1) {
		console_error_page(req, 500, store_error(console_st), who);
		return;
	}
	if (t == NULL) {
		console_error_page(req, 404, "no such task", who);
		return;
	}
	over = t->state == WS_COMPLETED || t->state == WS_FAILED ||
	       t->state == WS_CANCELLED;
	snprintf(title, sizeof title, "Task %lld", (long long)id);
	buf_init(&b);
	console_page_start(&b, title, who, NULL);
	buf_addf(&b, "<h1>Task %lld ", (long long)id);
	console_state(&b, t->state);
	buf_adds(&b, "</h1><p id=\"live-note\" class=\"live\" "
	             "aria-live=\"polite\"></p>");

	console_section(&b, "request", "Request");
	buf_adds(&b, "<pre class=\"text\" id=\"request-text\">");
	console_html(&b, t->request);
	buf_adds(&b, "</pre><dl class=\"facts\"><dt>Repository</dt><dd>");
	console_html(&b, t->repo);
	buf_adds(&b, "</dd><dt>Base commit</dt><dd><code>");
	console_html(&b, t->base_commit);
	buf_adds(&b, "</code></dd><dt>Submitted</dt><dd>");
	console_html(&b, t->created_at);
	buf_adds(&b, "</dd><dt>Updated</dt><dd>");
	console_html(&b, t->updated_at);
	if (gethostname(host, sizeof host) == 0) {
		host[sizeof host - 1] = '\0';
		buf_adds(&b, "</dd><dt>Node</dt><dd>");
		console_html(&b, host);
		buf_addf(&b, " (supervisor pid %d)", (int)getpid());
	}
	buf_adds(&b, "</dd></dl></section>");

	console_actions(&b, t, who);

	buf_init(&timeline);
	buf_init(&history);
	cps.timeline = &timeline;
	cps.history = &history;
	cps.nhistory = 0;
	store_checkpoint_list(console_st, id, console_cp_cb, &cps);

	console_section(&b, "plan", "Plan");
	buf_adds(&b, "<pre class=\"text\" id=\"plan-text\">");
	if (t->text[TC_PLAN] != NULL)
		console_html(&b, t->text[TC_PLAN]);
	else
		buf_adds(&b, "(no plan yet)");
	buf_adds(&b, "</pre>");
	if (t->text[TC_PLAN_APPROVED_BY] != NULL) {
		buf_adds(&b, "<p>Approved by ");
		console_html(&b, t->text[TC_PLAN_APPROVED_BY]);
		buf_adds(&b, " at ");
		console_html(&b, t->text[TC_PLAN_APPROVED_AT]);
		buf_adds(&b, ".</p>");
	}
	if (cps.nhistory > 0) {
		buf_adds(&b, "<h3>History</h3><ol class=\"history\">");
		buf_add(&b, history.buf, history.len);
		buf_adds(&b, "</ol>");
	}
	buf_adds(&b, "</section>");

	console_section(&b, "implementation", "Implementation");
	if (t->text[TC_IMPLEMENTATION] == NULL)
		buf_adds(&b, "<p>(not implemented yet)</p>");
	else {
		char *diff = NULL, *err = NULL;
		size_t total = 0;

		buf_adds(&b, "<pre class=\"text\" id=\"impl-text\">");
		console_html(&b, t->text[TC_IMPLEMENTATION]);
		buf_adds(&b, "</pre>");
		if (t->text[TC_IMPLEMENTATION_APPROVED_BY] != NULL) {
			buf_adds(&b, "<p>Approved by ");
			console_html(
			    &b, t->text[TC_IMPLEMENTATION_APPROVED_BY]);
			buf_adds(&b, " at ");
			console_html(
			    &b, t->text[TC_IMPLEMENTATION_APPROVED_AT]);
			buf_adds(&b, ".</p>");
		}
		if (t->text[TC_IMPLEMENTATION_REJECTION_REASON] != NULL) {
			buf_adds(&b, "<p>Last sent back with:</p><pre "
			             "class=\"text reason\">");
			console_html(
			    &b, t->text[TC_IMPLEMENTATION_REJECTION_REASON]);
			buf_adds(&b, "</pre>");
		}
		buf_adds(&b, "<h3>The whole diff</h3><div id=\"diff\">");
		if (task_diff(console_st, t, CONSOLE_DIFF_MAX, &diff, &total,
		        &err) == -1) {
			buf_adds(&b, "<p class=\"error\">");
			console_html(&b, err);
			buf_adds(&b, "</p>");
			free(err);
		} else {
			console_diff(&b, diff);
			/* Never cut silently. */
			if (strlen(diff) < total)
				buf_addf(&b,
				    "<p class=\"error\" role=\"alert\">The "
				    "diff is %zu bytes: the first %zu are "
				    "shown. Read the rest with git diff on "
				    "the task's branch.</p>",
				    total, strlen(diff));
			free(diff);
		}
		buf_adds(&b, "</div>");
	}
	buf_adds(&b, "</section>");

	console_section(&b, "review", "Review");
	if (t->text[TC_REVIEW] != NULL)
		console_json_dl(&b, t->text[TC_REVIEW]);
	else
		buf_adds(&b, "<p>(no review yet)</p>");
	buf_adds(&b, "</section>");

	console_section(&b, "verification", "Verification");
	if (t->text[TC_VERIFICATION_RESULT] != NULL)
		console_json_dl(&b, t->text[TC_VERIFICATION_RESULT]);
	else {
		buf_adds(&b, "<p>(not verified yet) Command: <code>");
		console_html(&b, t->verify_command != NULL ? t->verify_command
		                 : cfg.verify_command != NULL
		                     ? cfg.verify_command
		                     : "(none)");
		buf_adds(&b, "</code></p>");
	}
	buf_adds(&b, "</section>");

	buf_init(&log);
	buf_init(&errors);
	memset(&ev, 0, sizeof ev);
	ev.b = &log;
	ev.errors = &errors;
	for (;;) {
		unsigned before = ev.n;
		if (store_event_list(console_st, id, ev.last, 1000,
		        console_event_cb, &ev) == -1 ||
		    ev.n == before || ev.n >= CONSOLE_EVENTS_MAX)
			break;
	}

	console_section(&b, "problems", "Restarts and errors");
	buf_addf(&b, "<p>Worker restarts: %lld.</p>",
	    (long long)t->ival[TI_RETRY_COUNT]);
	if (t->text[TC_ERROR_DETAILS] != NULL) {
		buf_adds(&b, "<pre class=\"text error\">");
		console_html(&b, t->text[TC_ERROR_DETAILS]);
		buf_adds(&b, "</pre>");
	}
	if (errors.len > 0) {
		buf_adds(&b, "<ol>");
		buf_add(&b, errors.buf, errors.len);
		buf_adds(&b, "</ol>");
	}
	buf_adds(&b, "</section>");

	console_usage(&b, t);

	console_section(&b, "checkpoints", "Checkpoints");
	buf_adds(&b, "<ol class=\"timeline\">");
	buf_add(&b, timeline.buf, timeline.len);
	buf_adds(&b, "</ol></section>");

	console_section(&b, "log", "Log");
	buf_addf(&b,
	    "<ol id=\"log\" class=\"log\" data-task=\"%lld\" "
	    "data-after=\"%lld\" data-over=\"%d\" aria-live=\"polite\">",
	    (long long)id, (long long)ev.last, over);
	buf_add(&b, log.buf, log.len);
	buf_adds(&b, "</ol>");
	if (ev.n >= CONSOLE_EVENTS_MAX)
		buf_addf(&b,
		    "<p class=\"error\">The first %u events are shown: "
		    "<code>orch-supervisor logs %lld</code> prints "
		    "them all.</p>",
		    ev.n, (long long)id);
	buf_adds(&b, "</section>");

	buf_free(&timeline);
	buf_free(&history);
	buf_free(&log);
	buf_free(&errors);
	task_free(t);
	console_page_send(req, 200, &b);
}

int
console_route(struct evhttp_request *req, const char *path, struct evkeyvalq *q,
    const struct console_who *who)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	int get = cmd == EVHTTP_REQ_GET, post = cmd == EVHTTP_REQ_POST;
	struct console_who local;
	char verb[16];
	long long id;
	int n = 0;

	if (!who->tcp) {
		/* The Unix socket's user: no session, the service's name. */
		memset(&local, 0, sizeof local);
		who = &local;
	}
	if (strncmp(path, "/static/", 8) == 0 && get)
		console_asset(req, path);
	else if (strcmp(path, "/login") == 0 && get)
		console_login_page(req, 200, NULL);
	else if (strcmp(path, "/login") == 0 && post)
		console_login_post(req);
	else if (strcmp(path, "/logout") == 0 && post)
		console_logout(req);
	else if (strcmp(path, "/") == 0 && get)
		console_redirect(req, "/inbox");
	else if (strcmp(path, "/inbox") == 0 && get)
		console_inbox(req, who);
	else if (strcmp(path, "/tasks") == 0 && get)
		console_tasks(req, q, who);
	else if (strcmp(path, "/submit") == 0 && get)
		console_submit_page(req, who);
	else if (strcmp(path, "/submit") == 0 && post)
		console_submit_post(req, who);
	else if (sscanf(path, "/tasks/%lld%n", &id, &n) == 1 &&
	         path[n] == '\0' && id > 0 && get)
		console_task_page(req, id, who);
	else if (sscanf(path, "/tasks/%lld/%15[a-z]%n", &id, verb, &n) == 2 &&
	         path[n] == '\0' && id > 0 && post)
		console_task_post(req, id, verb, who);
	else
		return 0;
	return 1;
}
