/*
 * orch-model: the model process.  One per service, started by the
 * supervisor with its socketpair on fd 3; it makes every HTTP model call
 * of every worker, so that it alone holds the API key and reaches the
 * network for it, and libcurl is loaded once for the service instead of
 * once per stage.
 *
 * Its first message is MODEL_SETUP (the settings, the key among them:
 * never in argv or the environment).  Then each MODEL_ASK is one call,
 * run by llm_chat on a thread of a pool that grows on demand up to
 * SETUP's count; each thread keeps its libcurl handle, hence its
 * keep-alive connections, from one call to the next.  A call answers
 * MODEL_LOG lines (the model's text as it streams, the retry notes) and
 * exactly one MODEL_DONE.  MODEL_DROP gives a call up (its worker is
 * gone): the transfer is aborted from libcurl's progress callback and the
 * DONE says so.  A 429 or 503 with Retry-After holds every call to that
 * provider (llm_http_hold), not only the one that got it.
 *
 * It keeps no state worth keeping: the supervisor kills and restarts it
 * on anything strange and asks again what was in flight, none of which
 * was journaled.
 */
#include <sys/prctl.h>
#include <sys/queue.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "proto.h"
#include "llm.h"

#define SUP_FD           3
#define MODEL_MAX_CALLS  4096
#define MODEL_STACK_SIZE (1024 * 1024)

struct mcall {
	uint64_t id;
	int64_t task;
	char *stage;
	int64_t run;
	int round, turn;
	json_t *messages, *tools;
	int cancelled; /* set by the reader, read by the call's thread */
	TAILQ_ENTRY(mcall) entry;
};
TAILQ_HEAD(mcalls, mcall);

static struct mcalls queued = TAILQ_HEAD_INITIALIZER(queued);
static struct mcalls running = TAILQ_HEAD_INITIALIZER(running);
static pthread_mutex_t model_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t model_cv = PTHREAD_COND_INITIALIZER;
static unsigned nthreads, nidle, maxthreads;
/* One writer at a time on fd 3: a frame is written whole. */
static pthread_mutex_t model_wmu = PTHREAD_MUTEX_INITIALIZER;
/* The settings, read-only once SETUP is read: shared by every thread. */
static json_t *settings;

static void
model_send(struct proto_msg *m)
{
	const char *cause;
	int rc;

	pthread_mutex_lock(&model_wmu);
	rc = proto_write_fd(SUP_FD, m, &cause);
	pthread_mutex_unlock(&model_wmu);
	proto_msg_clear(m);
	if (rc == -1) {
		/* The supervisor is gone: so is every caller. */
		log_warnx("link to the supervisor: %s", cause);
		_exit(0);
	}
}

static int
model_cancelled(void *arg)
{
	struct mcall *c = arg;

	return __atomic_load_n(&c->cancelled, __ATOMIC_RELAXED);
}

/* A real sleep (nobody watches this process's heartbeat), cut short when
 * the call is given up. */
static void
model_sleep(void *arg, unsigned ms)
{
	uint64_t end = now_ms() + ms, now;

	while ((now = now_ms()) < end && !model_cancelled(arg)) {
		uint64_t left = end - now;
		struct timespec ts = {
		    0, (long)(left > 100 ? 100 : left) * 1000000L};
		nanosleep(&ts, NULL);
	}
}

static void
model_log(void *arg, int kind, const char *text)
{
	struct mcall *c = arg;
	struct proto_msg m;
	char *clean;
	size_t n;

	/* Events end up in JSON, which takes only UTF-8 (as wio_log). */
	clean = utf8_fix(text, NULL);
	n = strlen(clean);
	if (n > PROTO_MAX_DATA) {
		n = PROTO_MAX_DATA;
		while (n > 0 && ((unsigned char)clean[n] & 0xc0) == 0x80)
			n--;
	}
	proto_msg_init(&m, PROTO_MODEL_LOG);
	m.u[PF_SEQ] = c->id;
	m.u[PF_LEVEL] = (uint64_t)kind;
	proto_set_strn(&m, PF_TEXT, clean, n);
	free(clean);
	model_send(&m);
}

static void
model_done(uint64_t id, json_t *reply, const char *cause, int permanent)
{
	struct proto_msg m;
	char *data = reply != NULL ? json_dumps(reply, JSON_COMPACT) : NULL;
	char *why = NULL;

	if (reply != NULL && data == NULL) {
		cause = "the reply could not be encoded";
		permanent = 1;
	} else if (data != NULL && strlen(data) > PROTO_MAX_DATA) {
		/* llm_http.c bounds the text; the calls' arguments add. */
		why = xasprintf("the model's reply is %zu bytes as JSON, over "
		                "the %u a journal entry holds: the stage "
		                "fails rather than ask for it again",
		    strlen(data), PROTO_MAX_DATA);
		cause = why;
		permanent = 1;
		free(data);
		data = NULL;
	}
	proto_msg_init(&m, PROTO_MODEL_DONE);
	m.u[PF_SEQ] = id;
	m.u[PF_OK] = data != NULL ? 1 : 0;
	m.u[PF_PERMANENT] = data == NULL && permanent ? 1 : 0;
	if (data == NULL) {
		char *clean = utf8_fix(cause ? cause : "", NULL);

		if (strlen(clean) > 64 * 1024)
			clean[64 * 1024] = '\0';
		proto_set_str(&m, PF_TEXT, clean);
		free(clean);
	} else
		proto_set_str(&m, PF_TEXT, "");
	proto_set_str(&m, PF_DATA, data != NULL ? data : "");
	free(data);
	free(why);
	model_send(&m);
}

static void
model_call_free(struct mcall *c)
{
	free(c->stage);
	json_decref(c->messages);
	json_decref(c->tools);
	free(c);
}

/*
 * The settings with another model: a new object, since settings is read
 * by every thread at once and must not change (not even a refcount).
 */
static json_t *
model_settings_for(const char *model)
{
	static const char *const strs[] = {"provider", "base_url", "api_key"};
	static const char *const ints[] = {"timeout_s", "max_retries"};
	json_t *o = json_object();

	for (size_t i = 0; i < nitems(strs); i++) {
		const char *v =
		    json_string_value(json_object_get(settings, strs[i]));
		if (v != NULL)
			json_object_set_new(o, strs[i], json_string(v));
	}
	for (size_t i = 0; i < nitems(ints); i++)
		json_object_set_new(o, ints[i],
		    json_integer(json_integer_value(
		        json_object_get(settings, ints[i]))));
	json_object_set_new(o, "model", json_string(model));
	return o;
}

/*
 * One call: the configured model, then each fallback model
 * (ORCH_LLM_FALLBACK_MODELS) in turn while the one before failed in a way
 * waiting did not cure (its tries spent on 429s, 5xx, timeouts).  A
 * permanent failure (a bad key, a refused request) would be the same
 * with any model: it ends the call.  A reply of a fallback model names
 * it ("model"), for the turn's cost.
 */
static int
model_chat(struct mcall *c, json_t **reply, char **cause, int *permanent)
{
	json_t *fb = json_object_get(settings, "fallback"), *llm = settings;
	const char *name = NULL;
	size_t next = 0;
	int rc;

	for (;;) {
		struct llm_turn t = {c->task, c->stage, c->run, c->round,
		    c->turn, llm,
		    {NULL, model_sleep, model_log, c, model_cancelled}};

		rc = llm_chat(
		    &t, c->messages, c->tools, reply, cause, permanent);
		if (rc == 0 && name != NULL)
			json_object_set_new(*reply, "model", json_string(name));
		if (rc == 0 || *permanent || model_cancelled(c) ||
		    next >= json_array_size(fb))
			break;
		name = json_string_value(json_array_get(fb, next++));
		char *line = xasprintf("model: %s; trying the fallback model "
		                       "%s",
		    *cause, name);
		model_log(c, PROTO_LOG_INFO, line);
		free(line);
		free(*cause);
		*cause = NULL;
		if (llm != settings)
			json_decref(llm);
		llm = model_settings_for(name);
	}
	if (llm != settings)
		json_decref(llm);
	return rc;
}

static void *
model_thread(void *unused)
{
	(void)unused;
	for (;;) {
		struct mcall *c;
		json_t *reply = NULL;
		char *cause = NULL;
		int permanent = 0;

		pthread_mutex_lock(&model_mu);
		nidle++;
		while ((c = TAILQ_FIRST(&queued)) == NULL)
			pthread_cond_wait(&model_cv, &model_mu);
		nidle--;
		TAILQ_REMOVE(&queued, c, entry);
		TAILQ_INSERT_TAIL(&running, c, entry);
		pthread_mutex_unlock(&model_mu);

		if (model_cancelled(c))
			model_done(c->id, NULL,
			    "the call was given up: its worker is gone", 1);
		else if (model_chat(c, &reply, &cause, &permanent) == 0)
			model_done(c->id, reply, NULL, 0);
		else
			model_done(c->id, NULL, cause, permanent);
		json_decref(reply);
		free(cause);

		pthread_mutex_lock(&model_mu);
		TAILQ_REMOVE(&running, c, entry);
		pthread_mutex_unlock(&model_mu);
		model_call_free(c);
	}
	return NULL;
}

/* Read SETUP: the settings as llm.c reads them. */
static void
model_setup(void)
{
	struct proto_msg m;
	const char *cause;
	const char *prov;

	if (proto_read_fd(SUP_FD, &m, &cause) != 0) {
		log_warnx("link to the supervisor: no setup");
		exit(WORKER_EXIT_TEMP);
	}
	if (m.type != PROTO_MODEL_SETUP || m.u[PF_VERSION] != PROTO_VERSION) {
		log_warnx("link to the supervisor: expected MODEL_SETUP of "
		          "version %d",
		    PROTO_VERSION);
		exit(WORKER_EXIT_PERM);
	}
	prov = m.s[PF_LLM_PROVIDER];
	if (strcmp(prov, "openai") != 0 && strcmp(prov, "anthropic") != 0) {
		log_warnx("provider %s is not an HTTP provider", prov);
		exit(WORKER_EXIT_PERM);
	}
	settings = json_object();
	json_object_set_new(settings, "provider", json_string(prov));
	if (m.s[PF_LLM_BASE_URL] != NULL)
		json_object_set_new(
		    settings, "base_url", json_string(m.s[PF_LLM_BASE_URL]));
	if (m.s[PF_LLM_MODEL] != NULL)
		json_object_set_new(
		    settings, "model", json_string(m.s[PF_LLM_MODEL]));
	if (m.s[PF_LLM_API_KEY] != NULL)
		json_object_set_new(
		    settings, "api_key", json_string(m.s[PF_LLM_API_KEY]));
	json_object_set_new(settings, "timeout_s",
	    json_integer((json_int_t)m.u[PF_LLM_TIMEOUT_S]));
	json_object_set_new(settings, "max_retries",
	    json_integer((json_int_t)m.u[PF_LLM_MAX_RETRIES]));
	/* The supervisor checked the names (config_fallback_check). */
	json_t *fb = json_array();
	for (char *p = m.s[PF_LLM_FALLBACK], *name;
	     p != NULL && (name = strsep(&p, ",")) != NULL;)
		if (*name != '\0')
			json_array_append_new(fb, json_string(name));
	json_object_set_new(settings, "fallback", fb);
	maxthreads = m.u[PF_COUNT] == 0 ? 1
	             : m.u[PF_COUNT] > MODEL_MAX_CALLS
	                 ? MODEL_MAX_CALLS
	                 : (unsigned)m.u[PF_COUNT];
	/* Its copy of the key goes; settings keeps the one llm.c reads. */
	if (m.s[PF_LLM_API_KEY] != NULL)
		explicit_bzero(m.s[PF_LLM_API_KEY], m.slen[PF_LLM_API_KEY]);
	proto_msg_clear(&m);
}

/*
 * A call from what the supervisor relayed: the worker's data is checked
 * here (it is a worker's, hence untrusted).  NULL with *cause when it is
 * not a call.
 */
static struct mcall *
model_call_new(const struct proto_msg *m, const char **cause)
{
	struct mcall *c;
	json_t *d, *msgs, *tools;
	json_int_t round, turn;

	if ((d = json_loadb(m->s[PF_DATA], m->slen[PF_DATA],
	         JSON_REJECT_DUPLICATES, NULL)) == NULL) {
		*cause = "the call is not JSON";
		return NULL;
	}
	msgs = json_object_get(d, "messages");
	tools = json_object_get(d, "tools");
	round = json_integer_value(json_object_get(d, "round"));
	turn = json_integer_value(json_object_get(d, "turn"));
	if (!json_is_array(msgs) ||
	    !(json_is_array(tools) || json_is_null(tools)) || round < 0 ||
	    round > INT32_MAX || turn < 0 || turn > INT32_MAX ||
	    m->u[PF_TASK] > INT64_MAX || m->u[PF_RUN] > INT64_MAX) {
		json_decref(d);
		*cause = "the call lacks its messages, tools, round or turn";
		return NULL;
	}
	c = xcalloc(1, sizeof *c);
	c->id = m->u[PF_SEQ];
	c->task = (int64_t)m->u[PF_TASK];
	c->stage = xstrdup(m->s[PF_STAGE]);
	c->run = (int64_t)m->u[PF_RUN];
	c->round = (int)round;
	c->turn = (int)turn;
	c->messages = json_incref(msgs);
	c->tools = json_is_array(tools) ? json_incref(tools) : NULL;
	json_decref(d);
	return c;
}

static void
model_drop(uint64_t id)
{
	struct mcall *c;

	pthread_mutex_lock(&model_mu);
	TAILQ_FOREACH(c, &queued, entry) {
		if (c->id == id)
			break;
	}
	if (c == NULL)
		TAILQ_FOREACH(c, &running, entry) {
			if (c->id == id)
				break;
		}
	if (c != NULL)
		__atomic_store_n(&c->cancelled, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&model_mu);
}

static void
model_enqueue(struct mcall *c)
{
	pthread_attr_t attr;
	pthread_t th;
	int spawn;

	pthread_mutex_lock(&model_mu);
	TAILQ_INSERT_TAIL(&queued, c, entry);
	spawn = nidle == 0 && nthreads < maxthreads;
	if (spawn)
		nthreads++;
	pthread_cond_signal(&model_cv);
	pthread_mutex_unlock(&model_mu);
	if (!spawn)
		return;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, MODEL_STACK_SIZE);
	if (pthread_create(&th, &attr, model_thread, NULL) != 0) {
		/* The threads there are take the call in turn. */
		log_warn("pthread_create");
		pthread_mutex_lock(&model_mu);
		nthreads--;
		if (nthreads == 0) {
			pthread_mutex_unlock(&model_mu);
			fatalx("no thread to make the model calls");
		}
		pthread_mutex_unlock(&model_mu);
	}
	pthread_attr_destroy(&attr);
}

int
main(int argc, char **argv)
{
	struct proto_msg m;
	const char *cause;

	(void)argv;
	log_init("orch-model", LOG_LEVEL_INFO);
	if (argc != 1 || fcntl(SUP_FD, F_GETFD) == -1) {
		fprintf(stderr, "orch-model is started by orch-supervisor, "
		                "not by hand\n");
		return WORKER_EXIT_PERM;
	}
	fcntl(SUP_FD, F_SETFD, FD_CLOEXEC);
	/* It holds the API key: no core dump, no ptrace by the same user. */
	prctl(PR_SET_DUMPABLE, 0);
	signal(SIGPIPE, SIG_IGN);
	model_setup();

	for (;;) {
		struct mcall *c;

		switch (proto_read_fd(SUP_FD, &m, &cause)) {
		case 1:
			exit(0); /* the service stops */
		case -1:
			log_warnx("link to the supervisor: %s", cause);
			exit(WORKER_EXIT_TEMP);
		}
		switch (m.type) {
		case PROTO_MODEL_ASK:
			if ((c = model_call_new(&m, &cause)) == NULL)
				model_done(m.u[PF_SEQ], NULL, cause, 1);
			else
				model_enqueue(c);
			break;
		case PROTO_MODEL_DROP:
			model_drop(m.u[PF_SEQ]);
			break;
		default:
			log_warnx("link to the supervisor: unexpected %s",
			    proto_type_name(m.type));
			exit(WORKER_EXIT_TEMP);
		}
		proto_msg_clear(&m);
	}
}
