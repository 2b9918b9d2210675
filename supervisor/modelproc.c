/*
 * The model process (orch-model): started with vfork+exec over a
 * socketpair (fd 3 in it), given its settings in its first message
 * (MODEL_SETUP: the API key never goes through argv or the environment),
 * then asked for the workers' model calls (MODEL_ASK) under ids of ours.
 *
 * It is trusted with the key but not with our memory: a malformed frame, a
 * message it may not send, an answer for an id we never gave, or its end
 * kills it, and it is started again with backoff.  The calls it had in
 * flight were not journaled (a worker journals a reply only once it has
 * it), so they are asked again of the next one; their workers wait.  A
 * call whose worker is gone is dropped: the process is told
 * (MODEL_DROP), and its answer, which still comes, is thrown away.
 */
#include <sys/prctl.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common.h"
#include "config.h"
#include "modelproc.h"
#include "spawn.h"
#include "proto.h"

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                             \
	for ((var) = TAILQ_FIRST(head);                                        \
	     (var) != NULL && ((tvar) = TAILQ_NEXT(var, field), 1);            \
	     (var) = (tvar))
#endif

#define MODELPROC_BACKOFF_MS     100
#define MODELPROC_BACKOFF_MAX_MS 10000
/*
 * Failures in a row (no call answered in between) after which the calls
 * in flight are answered with a transient failure instead of waiting for
 * the next one: their workers retry with the stage's backoff, and a model
 * program that cannot run at all (a broken install) fails its tasks after
 * ORCH_MAX_RETRIES instead of holding them forever.
 */
#define MODELPROC_MAX_FAILS 5

struct mpcall {
	uint64_t id;
	int64_t task;
	char stage[16];
	int64_t run;
	char *data;
	size_t len;
	const struct modelproc_cbs *cbs;
	void *arg;
	int dropped; /* its worker is gone: its answer is thrown away */
	TAILQ_ENTRY(mpcall) entry;
	LIST_ENTRY(mpcall) hentry; /* in mp_by_id */
};

static TAILQ_HEAD(, mpcall) mp_calls = TAILQ_HEAD_INITIALIZER(mp_calls);
/* The calls by id: an answer (and a drop) finds its call without a walk
 * of the thousand in flight. */
#define MP_HASH 1024
static LIST_HEAD(, mpcall) mp_by_id[MP_HASH];
static struct event_base *mp_base;
static struct bufferevent *mp_bev;
static struct event *mp_restart_ev;
static pid_t mp_pid = -1;
static int mp_pidfd = -1;
static int mp_enabled;
static char *mp_why; /* why it is not enabled */
static unsigned mp_fails;
static uint64_t mp_next_id = 1;

static void modelproc_spawn(void);

int
modelproc_enabled(void)
{
	return mp_enabled;
}

const char *
modelproc_why(void)
{
	return mp_why != NULL ? mp_why
	                      : "no model process runs: ORCH_LLM_PROVIDER "
	                        "names no HTTP provider";
}

int
modelproc_pid(void)
{
	return mp_bev != NULL ? (int)mp_pid : -1;
}

static void
modelproc_call_free(struct mpcall *c)
{
	TAILQ_REMOVE(&mp_calls, c, entry);
	LIST_REMOVE(c, hentry);
	free(c->data);
	free(c);
}

static int
modelproc_send(const struct proto_msg *m)
{
	const char *cause;

	if (mp_bev == NULL)
		return -1;
	if (proc_write(mp_bev, m, &cause) == -1) {
		log_warnx("model process: encode %s: %s",
		    proto_type_name(m->type), cause);
		return -1;
	}
	return 0;
}

static void
modelproc_send_ask(struct mpcall *c)
{
	struct proto_msg m;

	proto_msg_init(&m, PROTO_MODEL_ASK);
	m.u[PF_SEQ] = c->id;
	m.u[PF_TASK] = (uint64_t)c->task;
	proto_set_str(&m, PF_STAGE, c->stage);
	m.u[PF_RUN] = (uint64_t)c->run;
	proto_set_strn(&m, PF_DATA, c->data, c->len);
	/* A failure is a lost link: its event restarts the process. */
	(void)modelproc_send(&m);
	proto_msg_clear(&m);
}

/*
 * Kill the process by its pidfd, never another that took its pid, and reap
 * it: killed, it is gone in a moment, and no SIGCHLD loop reaps for us
 * where workers have pidfds of their own (proc.c).
 */
static void
modelproc_kill(void)
{
	siginfo_t si;

	if (mp_bev != NULL) {
		bufferevent_free(mp_bev);
		mp_bev = NULL;
	}
	if (mp_pidfd != -1) {
		(void)syscall(
		    SYS_pidfd_send_signal, mp_pidfd, SIGKILL, NULL, 0);
		while (waitid(P_PIDFD, (id_t)mp_pidfd, &si, WEXITED) == -1 &&
		       errno == EINTR)
			;
		close(mp_pidfd);
		mp_pidfd = -1;
	}
}

/* It died or misbehaved: kill it and start another after the backoff. */
static void
modelproc_fail(const char *why)
{
	struct mpcall *c, *tmp;
	unsigned ms = MODELPROC_BACKOFF_MS, n = 0;
	struct timeval tv;
	char *down = NULL;

	modelproc_kill();
	for (unsigned i = 0; i < mp_fails && ms < MODELPROC_BACKOFF_MAX_MS; i++)
		ms *= 2;
	if (ms > MODELPROC_BACKOFF_MAX_MS)
		ms = MODELPROC_BACKOFF_MAX_MS;
	if (++mp_fails >= MODELPROC_MAX_FAILS)
		down = xasprintf("the model process failed %u times in a row "
		                 "(the last: %s)",
		    mp_fails, why);
	TAILQ_FOREACH_SAFE(c, &mp_calls, entry, tmp) {
		if (!c->dropped && down == NULL) {
			n++;
			continue;
		}
		if (!c->dropped)
			c->cbs->on_done(c->arg, 0, 0, down, "", 0);
		modelproc_call_free(c);
	}
	if (down != NULL)
		log_warnx("model process %d: %s; starting another in %u ms "
		          "(the calls in flight failed: their stages retry)",
		    (int)mp_pid, why, ms);
	else
		log_warnx("model process %d: %s; starting another in %u ms "
		          "(%u call%s in flight asked again)",
		    (int)mp_pid, why, ms, n, n == 1 ? "" : "s");
	free(down);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(mp_restart_ev, &tv);
}

static struct mpcall *
modelproc_find(uint64_t id)
{
	struct mpcall *c;

	LIST_FOREACH(c, &mp_by_id[id % MP_HASH], hentry) {
		if (c->id == id)
			return c;
	}
	return NULL;
}

/* One message of the model process: 0, or -1 with *why (it is killed). */
static int
modelproc_dispatch(struct proto_msg *m, const char **why)
{
	struct mpcall *c;

	if (m->type != PROTO_MODEL_LOG && m->type != PROTO_MODEL_DONE) {
		*why = "protocol error: a message the model process may not "
		       "send";
		return -1;
	}
	if ((c = modelproc_find(m->u[PF_SEQ])) == NULL) {
		*why = "protocol error: an answer for a call it was not asked";
		return -1;
	}
	if (m->type == PROTO_MODEL_LOG) {
		if (m->u[PF_LEVEL] != PROTO_LOG_INFO &&
		    m->u[PF_LEVEL] != PROTO_LOG_ERROR &&
		    m->u[PF_LEVEL] != PROTO_LOG_MODEL) {
			*why = "protocol error: bad MODEL_LOG kind";
			return -1;
		}
		if (!c->dropped)
			c->cbs->on_log(
			    c->arg, (int)m->u[PF_LEVEL], m->s[PF_TEXT]);
		return 0;
	}
	if (m->u[PF_OK] > 1 || m->u[PF_PERMANENT] > 1 ||
	    (m->u[PF_OK] == 1 && m->slen[PF_DATA] == 0)) {
		*why = "protocol error: a malformed MODEL_DONE";
		return -1;
	}
	if (m->u[PF_OK] == 1)
		mp_fails = 0;
	if (!c->dropped)
		c->cbs->on_done(c->arg, (int)m->u[PF_OK],
		    (int)m->u[PF_PERMANENT], m->s[PF_TEXT], m->s[PF_DATA],
		    m->slen[PF_DATA]);
	modelproc_call_free(c);
	return 0;
}

static void
modelproc_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);

	(void)arg;
	while (mp_bev == bev) {
		uint8_t hdr[PROTO_HDR_LEN];
		uint32_t len;
		const char *cause;
		struct proto_msg m;
		char *why;

		if (evbuffer_get_length(in) < PROTO_HDR_LEN)
			return;
		evbuffer_copyout(in, hdr, sizeof hdr);
		if (proto_frame_len(hdr, &len, &cause) == -1)
			goto bad;
		if (evbuffer_get_length(in) < PROTO_HDR_LEN + (size_t)len)
			return;
		uint8_t *buf = evbuffer_pullup(in, PROTO_HDR_LEN + len);
		if (proto_decode(buf + PROTO_HDR_LEN, len, &m, &cause) == -1)
			goto bad;
		evbuffer_drain(in, PROTO_HDR_LEN + len);
		if (proto_catalog[m.type].dir != PROTO_W2S)
			cause = "protocol error: a message it may not send";
		else if (modelproc_dispatch(&m, &cause) == 0)
			cause = NULL;
		proto_msg_clear(&m);
		if (cause != NULL) {
			modelproc_fail(cause);
			return;
		}
		continue;
	bad:
		why = xasprintf("protocol error: %s", cause);
		modelproc_fail(why);
		free(why);
		return;
	}
}

static void
modelproc_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)arg;
	modelproc_fail(what & BEV_EVENT_EOF ? "it exited" : "its link failed");
}

static void
modelproc_restart_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	modelproc_spawn();
}

static void
modelproc_spawn(void)
{
	struct proto_msg m;
	struct mpcall *c, *tmp;
	int sp[2];
	pid_t pid;
	char *why;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == -1) {
		why = xasprintf("socketpair: %s", strerror(errno));
		goto fail;
	}
	/* Its stdout and stderr are the service's stderr: its log lines
	 * join the service's. */
	pid =
	    proc_exec(config_model_path(), "orch-model", sp[1], -1, NULL, &why);
	close(sp[1]);
	if (pid == -1) {
		close(sp[0]);
		goto fail;
	}
	mp_pid = pid;
	mp_pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	evutil_make_socket_nonblocking(sp[0]);
	mp_bev = bufferevent_socket_new(mp_base, sp[0], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(
	    mp_bev, modelproc_read_cb, NULL, modelproc_event_cb, NULL);
	bufferevent_setwatermark(
	    mp_bev, EV_READ, 0, PROTO_MAX_FRAME + PROTO_HDR_LEN);
	bufferevent_enable(mp_bev, EV_READ | EV_WRITE);
	log_debug("model process %d started", (int)pid);

	proto_msg_init(&m, PROTO_MODEL_SETUP);
	m.u[PF_VERSION] = PROTO_VERSION;
	proto_set_str(&m, PF_LLM_PROVIDER, cfg.provider);
	if (cfg.base_url != NULL && *cfg.base_url != '\0')
		proto_set_str(&m, PF_LLM_BASE_URL, cfg.base_url);
	if (cfg.model != NULL && *cfg.model != '\0')
		proto_set_str(&m, PF_LLM_MODEL, cfg.model);
	if (cfg.api_key != NULL && *cfg.api_key != '\0')
		proto_set_str(&m, PF_LLM_API_KEY, cfg.api_key);
	m.u[PF_LLM_TIMEOUT_S] = cfg.llm_timeout_s;
	m.u[PF_LLM_MAX_RETRIES] = cfg.llm_max_retries;
	/* A call per worker at most: each waits on one. */
	m.u[PF_COUNT] = cfg.max_workers;
	if (cfg.llm_fallback_models != NULL)
		proto_set_str(&m, PF_LLM_FALLBACK, cfg.llm_fallback_models);
	(void)modelproc_send(&m);
	if (m.s[PF_LLM_API_KEY] != NULL)
		explicit_bzero(m.s[PF_LLM_API_KEY], m.slen[PF_LLM_API_KEY]);
	proto_msg_clear(&m);
	/* What the last one had in flight, asked again. */
	TAILQ_FOREACH_SAFE(c, &mp_calls, entry, tmp) {
		modelproc_send_ask(c);
	}
	return;
fail:
	modelproc_fail(why);
	free(why);
}

int
modelproc_start(struct event_base *base, char **cause)
{
	const char *path = config_model_path();

	if (cfg.provider == NULL || (strcmp(cfg.provider, "openai") != 0 &&
	                                strcmp(cfg.provider, "anthropic") != 0))
		return 0;
	if (access(path, X_OK) == -1) {
		free(mp_why);
		mp_why = xasprintf("model program %s: %s (set ORCH_MODEL_PATH "
		                   "or reinstall)",
		    path, strerror(errno));
		*cause = xstrdup(mp_why);
		return -1;
	}
	mp_base = base;
	mp_enabled = 1;
	mp_fails = 0;
	mp_restart_ev = evtimer_new(base, modelproc_restart_cb, NULL);
	modelproc_spawn();
	return 0;
}

void
modelproc_stop(void)
{
	struct mpcall *c;

	if (!mp_enabled) {
		free(mp_why);
		mp_why = NULL;
		return;
	}
	modelproc_kill();
	while (!TAILQ_EMPTY(&mp_calls)) {
		c = TAILQ_FIRST(&mp_calls);
		TAILQ_REMOVE(&mp_calls, c, entry);
		LIST_REMOVE(c, hentry);
		free(c->data);
		free(c);
	}
	if (mp_restart_ev != NULL)
		event_free(mp_restart_ev);
	mp_restart_ev = NULL;
	mp_enabled = 0;
	free(mp_why);
	mp_why = NULL;
	mp_pid = -1;
	mp_base = NULL;
}

uint64_t
modelproc_ask(int64_t task, const char *stage, int64_t run, const char *data,
    size_t len, const struct modelproc_cbs *cbs, void *arg)
{
	struct mpcall *c;

	/* What cannot be framed is not asked (modelproc.h). */
	if (len + strlen(stage) > PROTO_MAX_DATA)
		return 0;
	c = xcalloc(1, sizeof *c);
	c->id = mp_next_id++;
	c->task = task;
	snprintf(c->stage, sizeof c->stage, "%s", stage);
	c->run = run;
	c->data = xmalloc(len + 1);
	memcpy(c->data, data, len);
	c->data[len] = '\0';
	c->len = len;
	c->cbs = cbs;
	c->arg = arg;
	TAILQ_INSERT_TAIL(&mp_calls, c, entry);
	LIST_INSERT_HEAD(&mp_by_id[c->id % MP_HASH], c, hentry);
	/* While it restarts, the call waits for the next one. */
	if (mp_bev != NULL)
		modelproc_send_ask(c);
	return c->id;
}

void
modelproc_drop(uint64_t id)
{
	struct mpcall *c = id != 0 ? modelproc_find(id) : NULL;
	struct proto_msg m;

	if (c == NULL || c->dropped)
		return;
	c->dropped = 1;
	if (mp_bev == NULL) {
		modelproc_call_free(c);
		return;
	}
	proto_msg_init(&m, PROTO_MODEL_DROP);
	m.u[PF_SEQ] = id;
	(void)modelproc_send(&m);
	proto_msg_clear(&m);
}
