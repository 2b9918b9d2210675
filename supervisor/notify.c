/*
 * ORCH_NOTIFY_URL: when a task waits for approval, fails or completes, a
 * JSON POST {"task","status","workflow_state","request","error_details",
 * "ts"}.  Requests run on libcurl's multi interface driven by the service's
 * libevent loop (curl_multi_socket_action), so a slow or dead receiver
 * never holds up the scheduler.  A failure (no connection, a timeout, any
 * status but 2xx) is retried after 1, 2, 4 and 8 seconds, then dropped with
 * a warning.  Notifications still queued when the service stops are lost.
 */
#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "common.h"
#include "buildconf.h"
#include "config.h"
#include "notify.h"
#include "store.h"
#include "task.h"

#define NOTIFY_ATTEMPTS  5
#define NOTIFY_TIMEOUT_S 10

struct notify_job {
	char *body;
	int64_t task;
	int attempt;
	CURL *easy;
	struct curl_slist *hdrs;
	struct event *retry;
	char errbuf[CURL_ERROR_SIZE];
	TAILQ_ENTRY(notify_job) entry;
};
static TAILQ_HEAD(, notify_job) notify_jobs = TAILQ_HEAD_INITIALIZER(
    notify_jobs);

static struct event_base *notify_base;
static CURLM *notify_multi;
static struct event *notify_timer;
static char *notify_node; /* this service's node, on a shared database */

static void notify_start(struct notify_job *);

static void
notify_job_free(struct notify_job *j)
{
	TAILQ_REMOVE(&notify_jobs, j, entry);
	if (j->easy != NULL) {
		curl_multi_remove_handle(notify_multi, j->easy);
		curl_easy_cleanup(j->easy);
	}
	curl_slist_free_all(j->hdrs);
	if (j->retry != NULL)
		event_free(j->retry);
	free(j->body);
	free(j);
}

static void
notify_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	notify_start(arg);
}

/* Look at finished transfers: done, or again later. */
static void
notify_check(void)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(notify_multi, &left)) != NULL) {
		struct notify_job *j;
		long code = 0;
		char why[CURL_ERROR_SIZE + 64];

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(
		    m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
		curl_easy_getinfo(
		    m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
		if (m->data.result == CURLE_OK && code >= 200 && code < 300) {
			log_debug("task %lld: notified %s (HTTP %ld)",
			    (long long)j->task, cfg.notify_url, code);
			notify_job_free(j);
			continue;
		}
		if (m->data.result != CURLE_OK)
			snprintf(why, sizeof why, "%s",
			    j->errbuf[0] ? j->errbuf
			                 : curl_easy_strerror(m->data.result));
		else
			snprintf(why, sizeof why, "HTTP %ld", code);
		curl_multi_remove_handle(notify_multi, j->easy);
		curl_easy_cleanup(j->easy);
		j->easy = NULL;
		if (++j->attempt >= NOTIFY_ATTEMPTS) {
			log_warnx("task %lld: ORCH_NOTIFY_URL %s: %s; gave up "
			          "after %d attempts",
			    (long long)j->task, cfg.notify_url, why,
			    j->attempt);
			notify_job_free(j);
			continue;
		}
		struct timeval tv = {1 << (j->attempt - 1), 0};
		log_info("task %lld: ORCH_NOTIFY_URL %s: %s; again in %lds",
		    (long long)j->task, cfg.notify_url, why, (long)tv.tv_sec);
		if (j->retry == NULL)
			j->retry = evtimer_new(notify_base, notify_retry_cb, j);
		evtimer_add(j->retry, &tv);
	}
}

static void
notify_sock_cb(evutil_socket_t fd, short what, void *arg)
{
	int running, flags = 0;

	(void)arg;
	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(notify_multi, fd, flags, &running);
	notify_check();
}

static void
notify_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	int running;

	(void)fd;
	(void)what;
	(void)arg;
	curl_multi_socket_action(
	    notify_multi, CURL_SOCKET_TIMEOUT, 0, &running);
	notify_check();
}

/* CURLMOPT_SOCKETFUNCTION: watch s as curl asks (one event per socket). */
static int
notify_socket_fn(CURL *e, curl_socket_t s, int what, void *up, void *sp)
{
	struct event *ev = sp;
	short kind = EV_PERSIST;

	(void)e;
	(void)up;
	if (what == CURL_POLL_REMOVE) {
		if (ev != NULL)
			event_free(ev);
		curl_multi_assign(notify_multi, s, NULL);
		return 0;
	}
	if (what & CURL_POLL_IN)
		kind |= EV_READ;
	if (what & CURL_POLL_OUT)
		kind |= EV_WRITE;
	if (ev != NULL)
		event_free(ev);
	ev = event_new(notify_base, s, kind, notify_sock_cb, NULL);
	event_add(ev, NULL);
	curl_multi_assign(notify_multi, s, ev);
	return 0;
}

/* CURLMOPT_TIMERFUNCTION */
static int
notify_timer_fn(CURLM *m, long ms, void *up)
{
	struct timeval tv;

	(void)m;
	(void)up;
	if (ms < 0) {
		evtimer_del(notify_timer);
		return 0;
	}
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(notify_timer, &tv);
	return 0;
}

static void
notify_start(struct notify_job *j)
{
	j->errbuf[0] = '\0';
	j->easy = curl_easy_init();
	if (j->easy == NULL) {
		log_warnx("notify: curl_easy_init failed");
		notify_job_free(j);
		return;
	}
	curl_easy_setopt(j->easy, CURLOPT_URL, cfg.notify_url);
	curl_easy_setopt(j->easy, CURLOPT_POSTFIELDS, j->body);
	curl_easy_setopt(j->easy, CURLOPT_HTTPHEADER, j->hdrs);
	curl_easy_setopt(j->easy, CURLOPT_TIMEOUT, (long)NOTIFY_TIMEOUT_S);
	curl_easy_setopt(j->easy, CURLOPT_CONNECTTIMEOUT, 5L);
	curl_easy_setopt(j->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(j->easy, CURLOPT_ERRORBUFFER, j->errbuf);
	curl_easy_setopt(j->easy, CURLOPT_PRIVATE, j);
	curl_easy_setopt(j->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(
	    j->easy, CURLOPT_USERAGENT, "orch-supervisor/" ORCH_VERSION);
	curl_multi_add_handle(notify_multi, j->easy);
}

void
notify_init(struct event_base *base, const char *node)
{
	if (cfg.notify_url == NULL)
		return;
	free(notify_node);
	notify_node = node != NULL ? xstrdup(node) : NULL;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	notify_base = base;
	notify_multi = curl_multi_init();
	notify_timer = evtimer_new(base, notify_timer_cb, NULL);
	curl_multi_setopt(
	    notify_multi, CURLMOPT_SOCKETFUNCTION, notify_socket_fn);
	curl_multi_setopt(
	    notify_multi, CURLMOPT_TIMERFUNCTION, notify_timer_fn);
}

/*
 * Every node of a cluster reads every event; a state change names the
 * node that made it, and only that one sends it.  One that names none was
 * written without a service (the CLI on the database): each node sends it,
 * since none can tell that another will.
 */
static int
notify_ours(const struct event_row *ev)
{
	json_t *o;
	const char *by;
	int ours;

	if (notify_node == NULL || ev->data == NULL ||
	    (o = json_loads(ev->data, 0, NULL)) == NULL)
		return 1;
	by = json_string_value(json_object_get(o, "node"));
	ours = by == NULL || strcmp(by, notify_node) == 0;
	json_decref(o);
	return ours;
}

void
notify_event(struct store *st, const struct event_row *ev)
{
	struct notify_job *j;
	struct task *t;
	enum wstate ws = ev->state;
	enum tstatus ts;
	json_t *o;

	/* Only a state change has a state; its text is not looked at. */
	if (notify_multi == NULL || ws >= WS_MAX)
		return;
	ts = wstate_status(ws);
	if (ts != TS_AWAITING_APPROVAL && ts != TS_FAILED && ts != TS_COMPLETED)
		return;
	if (!notify_ours(ev))
		return;
	if (store_task_get(st, ev->task, &t) == -1 || t == NULL)
		return;
	o = json_pack("{s:I,s:s,s:s,s:o,s:o,s:s}", "task", (json_int_t)t->id,
	    "status", tstatus_name(ts), "workflow_state", wstate_name(ws),
	    "request", task_json_text(t->request), "error_details",
	    task_json_text(t->text[TC_ERROR_DETAILS]), "ts", ev->ts);
	task_free(t);
	if (o == NULL)
		return;
	j = xcalloc(1, sizeof *j);
	j->task = ev->task;
	j->body = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	j->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	TAILQ_INSERT_TAIL(&notify_jobs, j, entry);
	notify_start(j);
}

void
notify_free(void)
{
	struct notify_job *j;
	unsigned n = 0;

	if (notify_multi == NULL)
		return;
	/* NOLINT below: the analyzer does not follow TAILQ_REMOVE's back
	 * pointer and takes the next TAILQ_FIRST for the job just freed. */
	while ((j = TAILQ_FIRST(&notify_jobs)) != NULL) {
		notify_job_free(j); /* NOLINT */
		n++;
	}
	if (n > 0)
		log_warnx("%u notifications to ORCH_NOTIFY_URL were not "
		          "delivered",
		    n);
	curl_multi_cleanup(notify_multi);
	notify_multi = NULL;
	event_free(notify_timer);
	notify_timer = NULL;
	free(notify_node);
	notify_node = NULL;
}
