/*
 * The CLI's side of the control API: HTTP over the service's Unix socket,
 * through libcurl (CURLOPT_UNIX_SOCKET_PATH).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common.h"
#include "client.h"
#include "config.h"

#define CLIENT_MAX_REPLY (64 * 1024 * 1024)
/*
 * How long a request waits while the service is busy (every connection
 * taken): longer than the service's 30 s request deadline, after which a
 * client that holds a connection without using it is cut off.
 */
#define CLIENT_BUSY_MS (45 * 1000)

struct client_buf {
	char *p;
	size_t len;
};

static size_t
client_write_cb(char *data, size_t size, size_t n, void *arg)
{
	struct client_buf *b = arg;
	size_t len = size * n;

	if (b->len + len > CLIENT_MAX_REPLY)
		return 0;
	b->p = xrealloc(b->p, b->len + len + 1);
	memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
	return len;
}

/*
 * One attempt: 0 with the reply's bytes in *b and the status in *status, or
 * -1 with *rc.  *busy is set when the service asked us to come back (503
 * with Retry-After: every connection is taken) or its listen queue is full
 * (EAGAIN at connect): both pass within its request deadline.
 */
static int
client_attempt(const char *sock, const char *url, const char *method,
    const char *body, struct client_buf *b, long *status, CURLcode *rc,
    int *busy)
{
	struct curl_slist *hdrs = NULL;
	curl_off_t retry_after = 0;
	long oserr = 0;
	CURL *c;

	*status = 0;
	*busy = 0;
	if ((c = curl_easy_init()) == NULL) {
		*rc = CURLE_FAILED_INIT;
		return -1;
	}
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, client_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (body != NULL) {
		hdrs =
		    curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	}
	*rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	curl_easy_getinfo(c, CURLINFO_RETRY_AFTER, &retry_after);
	curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &oserr);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	if (*rc == CURLE_COULDNT_CONNECT && oserr == EAGAIN)
		*busy = 1;
	if (*rc == CURLE_OK && *status == 503 && retry_after > 0)
		*busy = 1;
	return *rc == CURLE_OK ? 0 : -1;
}

int
client_request(const char *method, const char *path, json_t *body,
    json_t **reply, int *code, char **cause)
{
	CURLcode rc;
	struct client_buf b = {NULL, 0};
	char *sock = config_socket_path(), *url, *s = NULL;
	long status = 0;
	json_error_t jerr;
	uint64_t end = now_ms() + CLIENT_BUSY_MS;
	unsigned wait = 100;
	int busy, r;

	*reply = NULL;
	*code = 0;
	url = xasprintf("http://orch%s", path);
	if (body != NULL)
		s = json_dumps(body, JSON_COMPACT);
	for (;;) {
		r = client_attempt(
		    sock, url, method, s, &b, &status, &rc, &busy);
		if (!busy || now_ms() + wait >= end)
			break;
		free(b.p);
		b.p = NULL;
		b.len = 0;
		usleep(wait * 1000);
		if (wait < 1000)
			wait *= 2;
	}
	free(url);
	free(s);
	if (r == -1) {
		*cause = xasprintf("cannot reach the service on %s: %s", sock,
		    curl_easy_strerror(rc));
		free(sock);
		free(b.p);
		return -1;
	}
	free(sock);
	*code = (int)status;
	*reply = json_loadb(b.p ? b.p : "", b.len, 0, &jerr);
	free(b.p);
	if (*reply == NULL) {
		*cause = xasprintf("the service sent a reply that is not JSON "
		                   "(HTTP %ld)",
		    status);
		return -1;
	}
	if (status >= 400) {
		const char *m =
		    json_string_value(json_object_get(*reply, "error"));
		*cause = xstrdup(m ? m : "the service refused the request");
		return -1;
	}
	return 0;
}

int
client_service_running(void)
{
	json_t *r;
	char *err = NULL;
	int code, ok;

	ok = client_request("GET", "/v1/health", NULL, &r, &code, &err) == 0;
	json_decref(r);
	free(err);
	return ok;
}

struct client_sse {
	char *buf; /* the lines of the event being read */
	size_t len;
	int (*cb)(json_t *, void *);
	void *arg;
	volatile int *stop;
	int ended;
	int stopped;
	int bad;
};

/* One complete event (the lines before a blank line). */
static int
client_sse_event(struct client_sse *s, char *ev)
{
	char *line, *save = NULL, *data = NULL, *kind = NULL;
	json_t *o;
	json_error_t jerr;
	int rc = 0;

	for (line = strtok_r(ev, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "data:", 5) == 0)
			data = line + 5 + (line[5] == ' ');
		else if (strncmp(line, "event:", 6) == 0)
			kind = line + 6 + (line[6] == ' ');
	}
	if (kind != NULL && strcmp(kind, "end") == 0) {
		s->ended = 1;
		return 1;
	}
	if (data == NULL)
		return 0; /* a comment: the heartbeat */
	if ((o = json_loads(data, 0, &jerr)) == NULL) {
		s->bad = 1;
		return 1;
	}
	if (s->cb(o, s->arg) != 0) {
		s->stopped = 1;
		rc = 1;
	}
	json_decref(o);
	return rc;
}

static size_t
client_sse_write_cb(char *data, size_t size, size_t n, void *arg)
{
	struct client_sse *s = arg;
	size_t len = size * n, start = 0;

	if (s->len + len > CLIENT_MAX_REPLY)
		return 0;
	s->buf = xrealloc(s->buf, s->len + len + 1);
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	s->buf[s->len] = '\0';
	/* Events end with a blank line ("\n\n"). */
	for (;;) {
		char *end = strstr(s->buf + start, "\n\n");
		if (end == NULL)
			break;
		*end = '\0';
		if (client_sse_event(s, s->buf + start) != 0)
			return 0; /* stops the transfer */
		start = (size_t)(end - s->buf) + 2;
	}
	memmove(s->buf, s->buf + start, s->len - start + 1);
	s->len -= start;
	return len;
}

static int
client_sse_progress_cb(
    void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	struct client_sse *s = arg;

	(void)a;
	(void)b;
	(void)c;
	(void)d;
	if (s->stop != NULL && *s->stop) {
		s->stopped = 1;
		return 1;
	}
	return 0;
}

int
client_follow(const char *path, int (*cb)(json_t *, void *), void *arg,
    volatile int *stop, int *ended, char **cause)
{
	struct client_sse s;
	char *sock = config_socket_path(),
	     *url = xasprintf("http://orch%s", path);
	long status = 0;
	CURLcode rc;
	CURL *c;

	*ended = 0;
	memset(&s, 0, sizeof s);
	s.cb = cb;
	s.arg = arg;
	s.stop = stop;
	if ((c = curl_easy_init()) == NULL) {
		*cause = xstrdup("curl_easy_init failed");
		free(sock);
		free(url);
		return -1;
	}
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, client_sse_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, client_sse_progress_cb);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, &s);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	/* The service sends a heartbeat every 15 s: a minute without a byte
	 * means it is gone or stuck. */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	free(url);
	*ended = s.ended;
	if (s.ended || s.stopped) {
		free(s.buf);
		free(sock);
		return 0;
	}
	if (status >= 400) {
		json_error_t jerr;
		json_t *o = json_loadb(s.buf ? s.buf : "", s.len, 0, &jerr);
		const char *m = json_string_value(json_object_get(o, "error"));
		*cause = xasprintf("%s (HTTP %ld)", m ? m : "refused", status);
		json_decref(o);
	} else if (s.bad)
		*cause = xstrdup("the service sent an event that is not JSON");
	else if (rc != CURLE_OK)
		*cause = xasprintf("the event stream from %s broke: %s", sock,
		    curl_easy_strerror(rc));
	else {
		free(s.buf);
		free(sock);
		return 0; /* the service closed the stream (it stops) */
	}
	free(s.buf);
	free(sock);
	return -1;
}
