/*
 * What the HTTP providers share: the assembly of a streamed reply into the
 * neutral reply, and the round trip with its retries.
 *
 * A reply is only ever returned whole.  A stream that ends before its end
 * marker ("[DONE]", message_stop), an error event after the 200, or a body
 * that is neither the API's SSE nor its JSON is a failed attempt, retried
 * like a 5xx; it is never handed to the stage, so it is never journaled.
 *
 * A reply cut by the output token limit (OpenAI finish_reason "length",
 * Anthropic stop_reason "max_tokens", both "length" here) keeps its text
 * and drops all its tool calls: the last one's arguments are likely cut,
 * and asking again would most likely be cut at the same place.  A note
 * added to the text tells the model, and the stage's next turn asks it to
 * use the tools again; since no call is left unanswered, the conversation
 * stays valid for the API.
 *
 * Retries: connection errors, timeouts, 408, 409, 429, 5xx (529 included)
 * and failed attempts are tried again, at most max_retries times, after
 * Retry-After / retry-after-ms when the server sent one, else after an
 * exponential backoff with jitter (1 s, 2 s, 4 s... up to 60 s, times 0.5
 * to 1).  A bad key, a bad request, a missing model or endpoint, or an
 * account out of credit cannot pass by waiting: those fail at once as
 * permanent, with a message that says what to fix.
 *
 * The API key is a header of the request only: it is scrubbed from every
 * message that echoes the server's words, and libcurl's verbose output is
 * never enabled.
 */
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common.h"
#include "proto.h"
#include "llm.h"

/*
 * libcurl is loaded on the first model call, not linked: with the TLS,
 * SSH, LDAP and Kerberos libraries it brings it is 4 ms of CPU on every
 * start of a worker, and a stage that asks no model (verifying, a replay
 * of journaled replies, the scripted model) never needs it.
 */
static struct {
	CURLcode (*global_init)(long);
	CURL *(*easy_init)(void);
	void (*easy_reset)(CURL *);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_perform)(CURL *);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	const char *(*easy_strerror)(CURLcode);
	time_t (*getdate)(const char *, const time_t *);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
	CURLSH *(*share_init)(void);
	CURLSHcode (*share_setopt)(CURLSH *, CURLSHoption, ...);
} cu;

/*
 * The model process runs a call per thread.  Each thread keeps its own
 * easy handle, whose connection cache keeps its connections alive from
 * one call to the next (libcurl does not support one connection cache
 * used by concurrent threads); the DNS cache and the TLS sessions are
 * shared by all of them, under these locks.
 */
static CURLSH *llm_share;
static pthread_mutex_t llm_share_locks[CURL_LOCK_DATA_LAST];

static void
llm_share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *u)
{
	(void)h;
	(void)access;
	(void)u;
	if ((unsigned)data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&llm_share_locks[data]);
}

static void
llm_share_unlock(CURL *h, curl_lock_data data, void *u)
{
	(void)h;
	(void)u;
	if ((unsigned)data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&llm_share_locks[data]);
}

static int
llm_curl_load(char **cause)
{
	static const struct {
		const char *name;
		size_t off;
	} syms[] = {
#define SYM(f) {"curl_" #f, offsetof(__typeof__(cu), f)}
	    SYM(global_init),
	    SYM(easy_init),
	    SYM(easy_reset),
	    SYM(easy_setopt),
	    SYM(easy_perform),
	    SYM(easy_getinfo),
	    SYM(easy_strerror),
	    SYM(getdate),
	    SYM(slist_append),
	    SYM(slist_free_all),
	    SYM(share_init),
	    SYM(share_setopt),
#undef SYM
	};
	/* Debian's two builds of it; the -dev package chose one at build. */
	static const char *const names[] = {
	    "libcurl.so.4", "libcurl-gnutls.so.4"};
	void *lib = NULL, *f;

	for (size_t i = 0; i < nitems(names) && lib == NULL; i++)
		lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL) {
		*cause = xasprintf("cannot load libcurl: %s (install the "
		                   "libcurl4 package)",
		    dlerror());
		return -1;
	}
	for (size_t i = 0; i < nitems(syms); i++) {
		if ((f = dlsym(lib, syms[i].name)) == NULL) {
			*cause = xasprintf("libcurl has no %s: install a "
			                   "libcurl4 of 7.85 or newer",
			    syms[i].name);
			return -1;
		}
		memcpy((char *)&cu + syms[i].off, &f, sizeof f);
	}
	if (cu.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		*cause = xstrdup("curl_global_init failed");
		return -1;
	}
	if ((llm_share = cu.share_init()) != NULL) {
		for (size_t i = 0; i < nitems(llm_share_locks); i++)
			pthread_mutex_init(&llm_share_locks[i], NULL);
		cu.share_setopt(llm_share, CURLSHOPT_LOCKFUNC, llm_share_lock);
		cu.share_setopt(
		    llm_share, CURLSHOPT_UNLOCKFUNC, llm_share_unlock);
		cu.share_setopt(llm_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
		cu.share_setopt(
		    llm_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	}
	return 0;
}

/* Load libcurl once, whichever thread asks first. */
static int
llm_curl_once(char **cause)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static int state; /* 0 not tried, 1 loaded, -1 failed */
	static char *why;
	int rc;

	pthread_mutex_lock(&mu);
	if (state == 0) {
		state = llm_curl_load(&why) == 0 ? 1 : -1;
		if (state == 1)
			srandom((unsigned)(now_ms() ^ (uint64_t)getpid()));
	}
	rc = state == 1 ? 0 : -1;
	if (rc == -1)
		*cause = xstrdup(why);
	pthread_mutex_unlock(&mu);
	return rc;
}

/* The providers' holds (llm_http_hold): a few URLs at most. */
#define LLM_HOLDS 16
static struct {
	char *url;
	uint64_t until;
} llm_holds[LLM_HOLDS];
static pthread_mutex_t llm_holds_mu = PTHREAD_MUTEX_INITIALIZER;

/*
 * A reply's text: no more than its journal entry can hold (PROTO_MAX_DATA),
 * so that no reply is accepted that the worker cannot then journal.
 */
#define LLM_MAX_REPLY          PROTO_MAX_DATA
#define LLM_MAX_ERRBODY        (64 * 1024) /* bytes of an error body kept */
#define LLM_CONNECT_S          30
#define LLM_STALL_S            60
#define LLM_BACKOFF_MS         1000
#define LLM_BACKOFF_MAX_MS     60000
#define LLM_RETRY_AFTER_MAX_MS (10 * 60 * 1000)
#define LLM_LOG_EVERY_MS       250
#define LLM_LOG_MAX            4096
#define LLM_ERRMSG_MAX         300

void
llm_http_hold(const char *url, uint64_t ms)
{
	uint64_t until = now_ms() + ms;
	size_t i, slot = 0;

	pthread_mutex_lock(&llm_holds_mu);
	for (i = 0; i < LLM_HOLDS; i++) {
		if (llm_holds[i].url != NULL &&
		    strcmp(llm_holds[i].url, url) == 0)
			break;
		/* A free slot, else the one that ends first. */
		if (llm_holds[i].url == NULL ||
		    (llm_holds[slot].url != NULL &&
		        llm_holds[i].until < llm_holds[slot].until))
			slot = i;
	}
	if (i == LLM_HOLDS) {
		i = slot;
		free(llm_holds[i].url);
		llm_holds[i].url = xstrdup(url);
		llm_holds[i].until = 0;
	}
	if (until > llm_holds[i].until)
		llm_holds[i].until = until;
	pthread_mutex_unlock(&llm_holds_mu);
}

uint64_t
llm_http_hold_left(const char *url)
{
	uint64_t left = 0, now = now_ms();

	pthread_mutex_lock(&llm_holds_mu);
	for (size_t i = 0; i < LLM_HOLDS; i++)
		if (llm_holds[i].url != NULL &&
		    strcmp(llm_holds[i].url, url) == 0 &&
		    llm_holds[i].until > now)
			left = llm_holds[i].until - now;
	pthread_mutex_unlock(&llm_holds_mu);
	return left;
}

static const char llm_length_note[] =
    "\n[This reply reached the output token limit; its unfinished tool "
    "calls were dropped and not run.]";

/* Reply assembly. */

static int
llm_asm_sse(void *arg, const char *event, const char *data, size_t len)
{
	struct llm_asm *a = arg;

	a->events++;
	if (a->done)
		return 0; /* anything after the end marker is ignored */
	if (a->event(a, event, data, len) == -1)
		return 1;
	return 0;
}

void
llm_asm_init(struct llm_asm *a, int turn)
{
	memset(a, 0, sizeof *a);
	a->turn = turn;
	sse_init(&a->sse, llm_asm_sse, a);
}

void
llm_asm_clear(struct llm_asm *a)
{
	sse_clear(&a->sse);
	buf_free(&a->body);
	buf_free(&a->text);
	for (size_t i = 0; i < a->ncalls; i++) {
		free(a->calls[i].id);
		free(a->calls[i].name);
		buf_free(&a->calls[i].args);
	}
	free(a->calls);
	free(a->stop);
	free(a->error);
	memset(a, 0, sizeof *a);
}

int
llm_asm_fail(struct llm_asm *a, const char *fmt, ...)
{
	va_list ap;

	if (a->error != NULL)
		return -1;
	va_start(ap, fmt);
	if (vasprintf(&a->error, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	return -1;
}

void
llm_asm_text(struct llm_asm *a, const char *s, size_t n)
{
	if (n == 0 || a->error != NULL)
		return;
	if (buf_add_max(&a->text, s, n, LLM_MAX_REPLY - 1) == -1) {
		llm_asm_fail(a,
		    "the reply's text exceeds %u bytes, the most a journal "
		    "entry holds",
		    LLM_MAX_REPLY);
		a->permanent = 1;
		return;
	}
	if (a->text_fn != NULL)
		a->text_fn(a->text_arg, s, n);
}

struct llm_call *
llm_asm_call(struct llm_asm *a, int index, const char *id, const char *name)
{
	struct llm_call *c;

	for (size_t i = 0; i < a->ncalls; i++) {
		c = &a->calls[i];
		if (c->index != index)
			continue;
		/* Later fragments may repeat the id and name, or be the
		 * first to carry them. */
		if (c->id == NULL && id != NULL && *id != '\0')
			c->id = xstrdup(id);
		if (c->name == NULL && name != NULL && *name != '\0')
			c->name = xstrdup(name);
		return c;
	}
	if (a->ncalls >= 1024) {
		llm_asm_fail(a, "the reply has more than 1024 tool calls");
		return NULL;
	}
	a->calls = xrealloc(a->calls, (a->ncalls + 1) * sizeof *a->calls);
	c = &a->calls[a->ncalls++];
	memset(c, 0, sizeof *c);
	c->index = index;
	c->id = id && *id ? xstrdup(id) : NULL;
	c->name = name && *name ? xstrdup(name) : NULL;
	return c;
}

void
llm_asm_args(struct llm_call *c, const char *s, size_t n)
{
	/* Arguments larger than the tools take are cut here and refused by
	 * the tools as invalid JSON: the model learns of it. */
	(void)buf_add_max(&c->args, s, n, TOOL_MAX_ARGS + 1);
}

void
llm_asm_stop(struct llm_asm *a, const char *stop)
{
	free(a->stop);
	a->stop = xstrdup(stop);
}

int
llm_asm_feed(struct llm_asm *a, const char *buf, size_t len)
{
	size_t i;
	int rc;

	if (a->error != NULL)
		return -1;
	if (a->mode == 0) {
		/* The first byte that is not blank says what this is. */
		for (i = 0; i < len; i++)
			if (!isspace((unsigned char)buf[i]))
				break;
		if (i == len)
			return 0;
		a->mode = buf[i] == '{' ? 2 : 1;
		buf += i;
		len -= i;
	}
	if (a->mode == 2) {
		if (buf_add_max(&a->body, buf, len, LLM_MAX_REPLY - 1) == -1) {
			a->permanent = 1;
			return llm_asm_fail(a,
			    "the reply exceeds %u bytes, the most a journal "
			    "entry holds",
			    LLM_MAX_REPLY);
		}
		return 0;
	}
	rc = sse_feed(&a->sse, buf, len);
	if (rc == -1) {
		a->permanent = 1;
		return llm_asm_fail(a,
		    "an event of the stream exceeds %d "
		    "bytes",
		    SSE_MAX_EVENT);
	}
	if (rc != 0 || a->error != NULL) {
		if (a->error == NULL)
			llm_asm_fail(a, "the stream could not be read");
		return -1;
	}
	return 0;
}

int
llm_asm_finish(struct llm_asm *a, json_t **reply, char **cause)
{
	json_t *calls, *out;
	json_error_t jerr;
	int length;

	*reply = NULL;
	if (a->error == NULL && a->mode == 0)
		llm_asm_fail(a, "the API answered 200 with an empty body");
	if (a->error == NULL && a->mode == 2) {
		json_t *j = json_loadb(
		    a->body.len > 0 ? a->body.buf : "", a->body.len, 0, &jerr);
		if (j == NULL)
			llm_asm_fail(a,
			    "the API answered 200 with a body "
			    "that is not JSON: %s",
			    jerr.text);
		else if (a->whole(a, j) == 0 && !a->done)
			llm_asm_fail(a, "the API's JSON reply has no "
			                "message");
		json_decref(j);
	}
	if (a->error == NULL && a->mode == 1 && a->events == 0)
		llm_asm_fail(a, "the API answered 200 with a body that is "
		                "neither its event stream nor its JSON");
	if (a->error == NULL && a->mode == 1 && !a->done)
		llm_asm_fail(a, "the stream ended before %s%s", a->end_name,
		    a->ncalls > 0 ? ", in the middle of a tool call" : "");
	if (a->error != NULL) {
		*cause = a->error;
		a->error = NULL;
		return -1;
	}

	length = a->stop != NULL && strcmp(a->stop, "length") == 0;
	calls = json_array();
	for (size_t i = 0; i < a->ncalls && !length; i++) {
		struct llm_call *c = &a->calls[i];
		char id[64];

		snprintf(id, sizeof id, "call_%d_%zu", a->turn, i);
		json_array_append_new(
		    calls, json_pack("{s:s,s:s,s:s}", "id", c->id ? c->id : id,
		               "name", c->name ? c->name : "", "arguments",
		               c->args.len > 0 ? c->args.buf : "{}"));
	}
	if (length && a->ncalls > 0)
		llm_asm_text(a, llm_length_note, strlen(llm_length_note));
	out = json_pack("{s:s,s:o,s:s,s:{s:I,s:I}}", "text",
	    a->text.len > 0 ? a->text.buf : "", "tool_calls", calls, "stop",
	    a->stop ? a->stop
	            : (json_array_size(calls) > 0 ? "tool_calls" : "stop"),
	    "usage", "in", (json_int_t)a->in, "out", (json_int_t)a->out);
	if (out == NULL) {
		/* json_pack refuses text that is not UTF-8. */
		*cause = xstrdup("the reply is not valid UTF-8");
		return -1;
	}
	*reply = out;
	return 0;
}

/* The task log: text as it arrives, a line at a time or every 250 ms. */

struct llm_log {
	const struct llm_turn *t; /* whose callbacks get the lines */
	struct buf text;          /* not yet logged */
	uint64_t last;
};

static void
llm_log_flush(struct llm_log *l, size_t n)
{
	size_t skip = n;

	while (
	    n > 0 && (l->text.buf[n - 1] == '\n' || l->text.buf[n - 1] == '\r'))
		n--;
	if (n > 0)
		llm_io_log(l->t, PROTO_LOG_MODEL, "%.*s", (int)n, l->text.buf);
	buf_consume(&l->text, skip);
	l->last = now_ms();
}

static void
llm_log_text(void *arg, const char *s, size_t n)
{
	struct llm_log *l = arg;
	char *nl;

	buf_add(&l->text, s, n);
	if ((nl = memrchr(l->text.buf, '\n', l->text.len)) != NULL)
		llm_log_flush(l, (size_t)(nl - l->text.buf) + 1);
	if (l->text.len >= LLM_LOG_MAX ||
	    (l->text.len > 0 && now_ms() - l->last >= LLM_LOG_EVERY_MS))
		llm_log_flush(l, l->text.len);
}

/* The caller's callbacks (struct llm_io): a NULL one does nothing. */

int
llm_io_cancelled(const struct llm_turn *t)
{
	return t->io.cancelled != NULL && t->io.cancelled(t->io.arg);
}

void
llm_io_heartbeat(const struct llm_turn *t)
{
	if (t->io.heartbeat != NULL)
		t->io.heartbeat(t->io.arg);
}

void
llm_io_sleep(const struct llm_turn *t, unsigned ms)
{
	if (t->io.sleep != NULL)
		t->io.sleep(t->io.arg, ms);
}

void
llm_io_log(const struct llm_turn *t, int kind, const char *fmt, ...)
{
	va_list ap;
	char *text;

	if (t->io.log == NULL)
		return;
	va_start(ap, fmt);
	if (vasprintf(&text, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	t->io.log(t->io.arg, kind, text);
	free(text);
}

/* The round trip. */

struct llm_xfer {
	const struct llm_req *req;
	struct llm_asm a;
	struct llm_log *log;
	CURL *curl;
	long status;
	struct buf errbody; /* a capture of its first LLM_MAX_ERRBODY bytes */
	uint64_t retry_after_ms; /* 0: none */
	int aborted;             /* the assembly failed */
};

static size_t
llm_xfer_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct llm_xfer *x = arg;
	size_t n = size * nmemb;

	if (x->status == 0)
		cu.easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &x->status);
	if (x->status >= 200 && x->status < 300) {
		if (llm_asm_feed(&x->a, ptr, n) == -1) {
			x->aborted = 1;
			return 0; /* stop the transfer */
		}
		return n;
	}
	buf_add(&x->errbody, ptr, n);
	return n;
}

/* Retry-After: seconds or an HTTP date; retry-after-ms: milliseconds. */
static size_t
llm_xfer_header(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct llm_xfer *x = arg;
	size_t n = size * nmemb, k;
	char *v, *end;
	double d;
	int ms;

	if (n > 1 && memcmp(ptr, "HTTP/", 5) == 0) {
		/* A new response (after a 100 Continue): start over. */
		x->retry_after_ms = 0;
		return n;
	}
	if (n >= 15 && strncasecmp(ptr, "retry-after-ms:", 15) == 0) {
		k = 15;
		ms = 1;
	} else if (n >= 12 && strncasecmp(ptr, "retry-after:", 12) == 0) {
		k = 12;
		ms = 0;
	} else
		return n;
	v = xstrndup(ptr + k, n - k);
	v[strcspn(v, "\r\n")] = '\0';
	errno = 0;
	d = strtod(v, &end);
	while (*end == ' ' || *end == '\t')
		end++;
	if (end != v && *end == '\0' && errno == 0 && d >= 0 && d < 1e7)
		x->retry_after_ms = (uint64_t)(ms ? d : d * 1000);
	else if (!ms) {
		time_t when = cu.getdate(v, NULL);
		time_t now = time(NULL);
		if (when != -1)
			x->retry_after_ms =
			    when > now ? (uint64_t)(when - now) * 1000 : 1;
	}
	free(v);
	return n;
}

static int
llm_xfer_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
    curl_off_t ultotal, curl_off_t ulnow)
{
	struct llm_xfer *x = arg;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	/* Waiting for the model is work: the watchdog must not fire. */
	llm_io_heartbeat(x->req->t);
	if (llm_io_cancelled(x->req->t))
		return 1; /* CURLE_ABORTED_BY_CALLBACK */
	if (x->log->text.len > 0 && now_ms() - x->log->last >= LLM_LOG_EVERY_MS)
		llm_log_flush(x->log, x->log->text.len);
	return 0;
}

char *
llm_scrub(const char *s, const char *secret)
{
	static const char mask[] = "[redacted]";
	size_t slen;
	const char *p;
	char *out, *o;
	size_t n = 0;

	if (secret == NULL || (slen = strlen(secret)) == 0)
		return xstrdup(s);
	for (p = s; (p = strstr(p, secret)) != NULL; p += slen)
		n++;
	out = o = xmalloc(strlen(s) + n * sizeof mask + 1);
	for (p = s;;) {
		const char *q = strstr(p, secret);
		if (q == NULL)
			break;
		memcpy(o, p, (size_t)(q - p));
		o += q - p;
		memcpy(o, mask, sizeof mask - 1);
		o += sizeof mask - 1;
		p = q + slen;
	}
	strcpy(o, p);
	return out;
}

/*
 * The API's error message from an error body (OpenAI {"error": {"message",
 * "type", "code"}}, Anthropic {"type": "error", "error": {"type",
 * "message"}}): printable, short, without the key.  *kind gets the type or
 * code words, for the spend-limit test.
 */
static char *
llm_errmsg(const struct llm_xfer *x, char **kind)
{
	json_t *j = NULL, *e;
	const char *m = NULL;
	char *raw, *s;
	size_t i;

	*kind = xstrdup("");
	if (x->errbody.len > 0)
		j = json_loadb(x->errbody.buf, x->errbody.len, 0, NULL);
	e = json_object_get(j, "error");
	if (json_is_object(e)) {
		m = json_string_value(json_object_get(e, "message"));
		free(*kind);
		*kind = xasprintf("%s %s",
		    json_string_value(json_object_get(e, "type"))
		        ? json_string_value(json_object_get(e, "type"))
		        : "",
		    json_string_value(json_object_get(e, "code"))
		        ? json_string_value(json_object_get(e, "code"))
		        : "");
	} else if (json_is_string(e))
		m = json_string_value(e);
	else if (json_is_string(json_object_get(j, "message")))
		m = json_string_value(json_object_get(j, "message"));
	if (m != NULL)
		raw = xstrndup(m, LLM_ERRMSG_MAX);
	else if (x->errbody.len > 0)
		raw = xstrndup(x->errbody.buf, LLM_ERRMSG_MAX);
	else
		raw = xstrdup("");
	json_decref(j);
	for (i = 0; raw[i] != '\0'; i++)
		if ((unsigned char)raw[i] < 0x20 || raw[i] == 0x7f)
			raw[i] = ' ';
	s = llm_scrub(raw, x->req->secret);
	free(raw);
	return s;
}

/* Whether an error is the account's spend limit or credit, which waiting
 * does not cure (OpenAI's insufficient_quota, Anthropic's billing error). */
static int
llm_out_of_credit(const char *kind, const char *msg)
{
	return strstr(kind, "insufficient_quota") != NULL ||
	       strstr(kind, "billing") != NULL ||
	       strcasestr(msg, "credit balance") != NULL ||
	       strcasestr(msg, "exceeded your current quota") != NULL;
}

/*
 * The error of a non-2xx answer: *permanent when waiting cannot help.
 * The messages name what to fix.
 */
static char *
llm_status_error(const struct llm_xfer *x, int *permanent)
{
	char *kind, *msg, *s;
	long st = x->status;

	msg = llm_errmsg(x, &kind);
	*permanent = 1;
	if (llm_out_of_credit(kind, msg) && st != 401)
		s = xasprintf("%ld from the LLM API: the account is out of "
		              "credit or over its spend limit (%s): add "
		              "credit or raise the limit, then resume the "
		              "task",
		    st, msg);
	else if (st == 401)
		/* The server's words may quote the key: not shown. */
		s = xasprintf("401 from the LLM API: the key was refused: "
		              "check ORCH_LLM_API_KEY");
	else if (st == 403)
		s = xasprintf("403 from the LLM API: the key may not use "
		              "this model or endpoint: check "
		              "ORCH_LLM_API_KEY and ORCH_LLM_MODEL");
	else if (st == 404)
		s = xasprintf("404 from the LLM API for %s (%s): check "
		              "ORCH_LLM_BASE_URL and ORCH_LLM_MODEL",
		    x->req->url, msg);
	else if (st == 400 || st == 413 || st == 422)
		s = xasprintf("%ld from the LLM API: it refused the request "
		              "(%s): check ORCH_LLM_MODEL and "
		              "ORCH_LLM_BASE_URL",
		    st, msg);
	else if (st >= 300 && st < 400)
		s = xasprintf("%ld from the LLM API: it redirects %s "
		              "elsewhere: set ORCH_LLM_BASE_URL to the final "
		              "address",
		    st, x->req->url);
	else if (st == 408 || st == 409 || st == 429 || st >= 500 || st < 200) {
		*permanent = 0;
		s = xasprintf("%ld from the LLM API (%s)", st, msg);
	} else
		s = xasprintf("%ld from the LLM API (%s)", st, msg);
	free(kind);
	free(msg);
	return s;
}

/* libcurl errors that trying again cannot cure. */
static int
llm_curl_permanent(CURLcode rc)
{
	switch (rc) {
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_NOT_BUILT_IN:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_TOO_MANY_REDIRECTS:
		return 1;
	default:
		return 0;
	}
}

/* Kept across turns, for its connections: one per thread. */
static __thread CURL *llm_curl;

/* One attempt: 0 with *reply, or -1 with *cause, *permanent and, when the
 * server asked, *retry_after_ms. */
static int
llm_attempt(const struct llm_req *req, struct curl_slist *hdrs,
    struct llm_log *log, json_t **reply, char **cause, int *permanent,
    uint64_t *retry_after_ms)
{
	struct llm_xfer x;
	char errbuf[CURL_ERROR_SIZE];
	CURLcode rc;
	long timeout =
	    (long)json_integer_value(json_object_get(req->t->llm, "timeout_s"));
	int ret = -1;

	if (timeout <= 0)
		timeout = 300;
	memset(&x, 0, sizeof x);
	x.req = req;
	x.log = log;
	buf_init_capture(&x.errbody, LLM_MAX_ERRBODY, 0);
	req->asm_init(&x.a, req->t->turn);
	x.a.text_fn = llm_log_text;
	x.a.text_arg = log;
	*permanent = 0;
	*retry_after_ms = 0;

	if (llm_curl == NULL && (llm_curl = cu.easy_init()) == NULL)
		fatalx("curl_easy_init failed");
	x.curl = llm_curl;
	cu.easy_reset(x.curl);
	if (llm_share != NULL)
		cu.easy_setopt(x.curl, CURLOPT_SHARE, llm_share);
	errbuf[0] = '\0';
	cu.easy_setopt(x.curl, CURLOPT_URL, req->url);
	cu.easy_setopt(x.curl, CURLOPT_POST, 1L);
	cu.easy_setopt(x.curl, CURLOPT_POSTFIELDS, req->body);
	cu.easy_setopt(
	    x.curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(req->body));
	cu.easy_setopt(x.curl, CURLOPT_HTTPHEADER, hdrs);
	cu.easy_setopt(x.curl, CURLOPT_USERAGENT, "orch-worker");
	cu.easy_setopt(x.curl, CURLOPT_ERRORBUFFER, errbuf);
	cu.easy_setopt(x.curl, CURLOPT_WRITEFUNCTION, llm_xfer_write);
	cu.easy_setopt(x.curl, CURLOPT_WRITEDATA, &x);
	cu.easy_setopt(x.curl, CURLOPT_HEADERFUNCTION, llm_xfer_header);
	cu.easy_setopt(x.curl, CURLOPT_HEADERDATA, &x);
	cu.easy_setopt(x.curl, CURLOPT_NOPROGRESS, 0L);
	cu.easy_setopt(x.curl, CURLOPT_XFERINFOFUNCTION, llm_xfer_progress);
	cu.easy_setopt(x.curl, CURLOPT_XFERINFODATA, &x);
	/*
	 * No signals (the worker has its own), no redirects (a redirect
	 * could carry the key's request to another host), and nothing but
	 * http and https, whatever the base URL says.
	 */
	cu.easy_setopt(x.curl, CURLOPT_NOSIGNAL, 1L);
	cu.easy_setopt(x.curl, CURLOPT_FOLLOWLOCATION, 0L);
	cu.easy_setopt(x.curl, CURLOPT_PROTOCOLS_STR, "http,https");
	cu.easy_setopt(x.curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	cu.easy_setopt(x.curl, CURLOPT_CONNECTTIMEOUT,
	    timeout < LLM_CONNECT_S ? timeout : (long)LLM_CONNECT_S);
	/* A stalled stream (not one byte in the stall time) is cut early;
	 * the whole request may take timeout_s. */
	cu.easy_setopt(x.curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	cu.easy_setopt(x.curl, CURLOPT_LOW_SPEED_TIME,
	    timeout < LLM_STALL_S ? timeout : (long)LLM_STALL_S);
	cu.easy_setopt(x.curl, CURLOPT_TIMEOUT, timeout);
	cu.easy_setopt(x.curl, CURLOPT_TCP_KEEPALIVE, 1L);

	rc = cu.easy_perform(x.curl);
	buf_str(&x.errbody); /* the capture is complete */
	if (x.status == 0)
		cu.easy_getinfo(x.curl, CURLINFO_RESPONSE_CODE, &x.status);
	if (x.aborted) {
		/* A reply too large is as large when asked again, and each
		 * time it is paid for: once is enough. */
		*permanent = x.a.permanent;
		*cause = x.a.error;
		x.a.error = NULL;
	} else if (rc != CURLE_OK) {
		char *m = llm_scrub(
		    errbuf[0] ? errbuf : cu.easy_strerror(rc), req->secret);
		*permanent = llm_curl_permanent(rc);
		if (rc == CURLE_OPERATION_TIMEDOUT)
			*cause = xasprintf("the LLM API at %s did not answer "
			                   "in time (%s; ORCH_LLM_TIMEOUT_S "
			                   "is %ld)",
			    req->url, m, timeout);
		else
			*cause = xasprintf("cannot reach the LLM API at %s: "
			                   "%s%s",
			    req->url, m,
			    *permanent ? ": check ORCH_LLM_BASE_URL" : "");
		free(m);
	} else if (x.status >= 200 && x.status < 300) {
		if (llm_asm_finish(&x.a, reply, cause) == 0)
			ret = 0;
		else
			*permanent = x.a.permanent;
	} else {
		*cause = llm_status_error(&x, permanent);
		*retry_after_ms = x.retry_after_ms;
		/* The server asked everyone to wait, not this call only. */
		if ((x.status == 429 || x.status == 503) &&
		    x.retry_after_ms > 0)
			llm_http_hold(
			    req->url, x.retry_after_ms < LLM_RETRY_AFTER_MAX_MS
			                  ? x.retry_after_ms
			                  : LLM_RETRY_AFTER_MAX_MS);
	}
	if (ret == -1 && *cause != NULL) {
		/* What the server said may echo the request: no key. */
		char *s = llm_scrub(*cause, req->secret);
		free(*cause);
		*cause = s;
	}
	llm_asm_clear(&x.a);
	buf_free(&x.errbody);
	return ret;
}

/* Milliseconds to wait before retry n (0-based): exponential, jittered. */
static unsigned
llm_backoff(unsigned n)
{
	uint64_t ms = LLM_BACKOFF_MS;

	while (n-- > 0 && ms < LLM_BACKOFF_MAX_MS)
		ms *= 2;
	if (ms > LLM_BACKOFF_MAX_MS)
		ms = LLM_BACKOFF_MAX_MS;
	/* Jitter: between half and all of it, so that workers that failed
	 * together do not come back together. */
	return (unsigned)(ms / 2 + (uint64_t)random() % (ms / 2 + 1));
}

/*
 * Wait while the provider holds every call (llm_http_hold), saying so in
 * the task's log once.  0, or -1 when the call was given up meanwhile.
 */
static int
llm_hold_wait(const struct llm_req *req)
{
	uint64_t left;
	int said = 0;

	while ((left = llm_http_hold_left(req->url)) > 0) {
		if (llm_io_cancelled(req->t))
			return -1;
		if (!said++)
			llm_io_log(req->t, PROTO_LOG_INFO,
			    "model: the LLM API asked every caller to wait; "
			    "asking in %llu.%01llu s",
			    (unsigned long long)(left / 1000),
			    (unsigned long long)(left % 1000 / 100));
		llm_io_sleep(req->t, left > 1000 ? 1000 : (unsigned)left);
	}
	return llm_io_cancelled(req->t) ? -1 : 0;
}

int
llm_http_chat(
    const struct llm_req *req, json_t **reply, char **cause, int *permanent)
{
	struct curl_slist *hdrs = NULL;
	struct llm_log log = {.t = req->t};
	json_int_t maxr =
	    json_integer_value(json_object_get(req->t->llm, "max_retries"));
	unsigned tries = maxr < 0 ? 1 : (unsigned)maxr + 1;
	char *h, *last = NULL;
	uint64_t ra;
	int rc = -1;

	*reply = NULL;
	*cause = NULL;
	*permanent = 0;
	if (llm_curl_once(cause) == -1) {
		*permanent = 1;
		return -1;
	}
	for (const char *const *p = req->headers; p && *p; p++)
		hdrs = cu.slist_append(hdrs, *p);
	hdrs = cu.slist_append(hdrs, "Content-Type: application/json");
	hdrs = cu.slist_append(hdrs, "Accept: text/event-stream");
	/* No "100 Continue" round trip for large conversations. */
	hdrs = cu.slist_append(hdrs, "Expect:");
	h = xasprintf("X-Orch-Task-Id: %lld", (long long)req->t->task);
	hdrs = cu.slist_append(hdrs, h);
	free(h);
	h = xasprintf("X-Orch-Stage: %s", req->t->stage);
	hdrs = cu.slist_append(hdrs, h);
	free(h);

	ra = 0;
	for (unsigned n = 0; n < tries; n++) {
		char *c = NULL;

		/* After our own wait for the Retry-After we got, the hold
		 * it set is over. */
		if (ra == 0 && llm_hold_wait(req) == -1) {
			free(last);
			last = xstrdup("the call was given up: its worker is "
			               "gone");
			*permanent = 1;
			break;
		}
		buf_consume(&log.text, log.text.len);
		log.last = now_ms();
		if (llm_attempt(req, hdrs, &log, reply, &c, permanent, &ra) ==
		    0) {
			rc = 0;
			break;
		}
		if (log.text.len > 0)
			llm_log_flush(&log, log.text.len);
		free(last);
		last = c;
		if (*permanent)
			break;
		if (llm_io_cancelled(req->t)) {
			*permanent = 1;
			break;
		}
		if (n + 1 < tries) {
			unsigned ms =
			    ra > 0 ? (unsigned)(ra < LLM_RETRY_AFTER_MAX_MS
			                            ? ra
			                            : LLM_RETRY_AFTER_MAX_MS)
			           : llm_backoff(n);
			llm_io_log(req->t, PROTO_LOG_INFO,
			    "model: %s; trying again in %u.%01u s (%u of %u)",
			    last, ms / 1000, (ms % 1000) / 100, n + 1,
			    tries - 1);
			llm_io_sleep(req->t, ms);
		}
	}
	if (rc == 0) {
		if (log.text.len > 0)
			llm_log_flush(&log, log.text.len);
		free(last);
	} else if (*permanent)
		*cause = last;
	else {
		*cause = xasprintf(
		    "%s (after %u attempts)", last ? last : "no answer", tries);
		free(last);
	}
	buf_free(&log.text);
	cu.slist_free_all(hdrs);
	return rc;
}

int
llm_http_api_chat(const struct llm_api *api, const struct llm_turn *t,
    json_t *messages, json_t *tools, json_t **reply, char **cause,
    int *permanent)
{
	const struct provider *p = provider_find(api->provider);
	json_t *llm = t->llm, *body;
	const char *base = json_string_value(json_object_get(llm, "base_url"));
	const char *model = json_string_value(json_object_get(llm, "model"));
	const char *key = json_string_value(json_object_get(llm, "api_key"));
	const char *headers[3];
	struct llm_req req = {t, NULL, NULL, headers, key, api->asm_init};
	char *auth = NULL, *url, *b;
	size_t n = 0;
	int rc;

	*reply = NULL;
	if (base == NULL || *base == '\0')
		base = p->base;
	if (model == NULL || *model == '\0')
		model = p->model;
	if ((key == NULL || *key == '\0') && strcmp(base, p->base) == 0) {
		*cause = xstrdup(api->no_key);
		*permanent = 1;
		return -1;
	}
	if (p->fixed_header != NULL)
		headers[n++] = p->fixed_header;
	/* A local compatible server may need no key: then none is sent. */
	if (key != NULL && *key != '\0') {
		auth = xasprintf("%s%s", p->key_header, key);
		headers[n++] = auth;
	}
	headers[n] = NULL;
	url = provider_url(p, base, api->path);
	body = api->request(model, messages, tools);
	b = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (b == NULL) {
		*cause =
		    xstrdup("the conversation could not be encoded (a "
		            "message is not valid UTF-8 or lacks a field)");
		*permanent = 1;
		rc = -1;
	} else {
		req.url = url;
		req.body = b;
		rc = llm_http_chat(&req, reply, cause, permanent);
		free(b);
	}
	if (auth != NULL) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	free(url);
	return rc;
}
