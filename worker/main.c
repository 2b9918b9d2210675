/*
 * orch-worker: started by orch-supervisor with its socketpair on fd 3; runs
 * one stage of one task.  It says HELLO, receives START and the journal of
 * the stage run to replay, and from then on sends nothing it depends on
 * without waiting for the supervisor's ACK: the supervisor has committed it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "proto.h"
#include "worker.h"

#define SUP_FD 3

struct replay {
	char *kind;
	char *data;
};

static struct replay *replay;
static size_t nreplay, replay_pos;
static uint64_t next_seq = 1, next_cp = 1;
static uint64_t last_beat, beat_ms = 1000;

static void __attribute__((noreturn))
wio_lost(const char *what, const char *cause)
{
	log_warnx("link to the supervisor: %s: %s", what, cause);
	exit(WORKER_EXIT_TEMP);
}

/*
 * A message too large for a frame.  A restarted worker would make it again,
 * so it is no lost link to retry (that was a crash loop, the model asked
 * again each time): a log line is cut to fit, with a note; anything else
 * fails the stage, saying what was too large.
 */
static void
wio_too_large(struct proto_msg *m, size_t total)
{
	static const char note[] = "\n[cut: over the largest message]";
	char *msg;
	size_t n;

	if (m->type == PROTO_LOG && m->s[PF_TEXT] != NULL) {
		n = PROTO_MAX_DATA - sizeof note;
		/* Not inside a UTF-8 sequence. */
		while (
		    n > 0 && ((unsigned char)m->s[PF_TEXT][n] & 0xc0) == 0x80)
			n--;
		msg = xasprintf("%.*s%s", (int)n, m->s[PF_TEXT], note);
		proto_set_str(m, PF_TEXT, msg);
		free(msg);
		return;
	}
	msg = xasprintf("the worker's %s message is %zu bytes, over the %u "
	                "a message holds",
	    proto_type_name(m->type), total, PROTO_MAX_DATA);
	proto_msg_clear(m);
	log_warnx("%s", msg);
	wio_result(0, msg, NULL);
}

static void
wio_send(struct proto_msg *m)
{
	const char *cause;
	size_t total = proto_str_total(m);

	if (total > PROTO_MAX_DATA)
		wio_too_large(m, total);
	if (proto_write_fd(SUP_FD, m, &cause) == -1)
		wio_lost(proto_type_name(m->type), cause);
	proto_msg_clear(m);
	last_beat = now_ms();
}

/* Read one message; STOP ends the worker here, at a safe point. */
static void
wio_recv(struct proto_msg *m)
{
	const char *cause;

	switch (proto_read_fd(SUP_FD, m, &cause)) {
	case 1:
		/* The supervisor went away: nothing we do now can be
		 * committed. */
		exit(WORKER_EXIT_STOPPED);
	case -1:
		wio_lost("read", cause);
	}
	if (m->type == PROTO_STOP) {
		log_info("asked to stop; the stage resumes from its journal");
		exit(WORKER_EXIT_STOPPED);
	}
	if (proto_catalog[m->type].dir != PROTO_S2W)
		wio_lost("read", "a worker's message from the supervisor");
}

static void
wio_wait_ack(uint64_t seq)
{
	struct proto_msg m;

	wio_recv(&m);
	if (m.type != PROTO_ACK || m.u[PF_SEQ] != seq) {
		proto_msg_clear(&m);
		wio_lost("ack", "unexpected message");
	}
	proto_msg_clear(&m);
}

void
wio_heartbeat(void *unused)
{
	struct pollfd pfd = {SUP_FD, POLLIN, 0};
	struct proto_msg m;

	(void)unused;
	/* The only thing the supervisor sends unasked is STOP. */
	if (poll(&pfd, 1, 0) == 1) {
		wio_recv(&m);
		proto_msg_clear(&m);
		wio_lost("read", "unexpected message");
	}
	if (now_ms() - last_beat < beat_ms)
		return;
	proto_msg_init(&m, PROTO_HEARTBEAT);
	wio_send(&m);
}

void
wio_sleep(unsigned ms)
{
	uint64_t end = now_ms() + ms;

	for (;;) {
		uint64_t now = now_ms();
		if (now >= end)
			return;
		wio_heartbeat(NULL);
		uint64_t left = end - now;
		struct timespec ts = {
		    0, (long)(left > 100 ? 100 : left) * 1000000L};
		nanosleep(&ts, NULL);
	}
}

void
wio_log(int kind, const char *fmt, ...)
{
	struct proto_msg m;
	va_list ap;
	char *text, *clean;

	va_start(ap, fmt);
	if (vasprintf(&text, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	/*
	 * Events end up in JSON (the API, the event stream, the audit
	 * file), which takes only UTF-8: a byte cut ("%.200s" of a model's
	 * text) or a Latin-1 file name would lose the event there.
	 */
	clean = utf8_fix(text, NULL);
	free(text);
	proto_msg_init(&m, PROTO_LOG);
	m.u[PF_LEVEL] = (uint64_t)kind;
	proto_set_str(&m, PF_TEXT, clean);
	free(clean);
	wio_send(&m);
}

void
wio_checkpoint(const char *name, const char *data)
{
	struct proto_msg m;
	uint64_t seq = next_cp++;

	proto_msg_init(&m, PROTO_CHECKPOINT);
	m.u[PF_SEQ] = seq;
	proto_set_str(&m, PF_NAME, name);
	proto_set_str(&m, PF_DATA, data ? data : "");
	wio_send(&m);
	wio_wait_ack(seq);
}

const char *
journal_next(const char *kind)
{
	if (replay_pos >= nreplay)
		return NULL;
	if (strcmp(replay[replay_pos].kind, kind) != 0) {
		/* The stage asks for steps in a fixed order; a mismatch means
		 * the journal is not this stage's. */
		log_warnx("journal entry %zu is a %s, the stage expected a %s",
		    replay_pos + 1, replay[replay_pos].kind, kind);
		exit(WORKER_EXIT_PERM);
	}
	return replay[replay_pos++].data;
}

size_t
journal_count(void)
{
	return nreplay;
}

const char *
journal_data(size_t i, const char **kind)
{
	*kind = replay[i].kind;
	return replay[i].data;
}

void
journal_put(
    const char *kind, const char *data, int64_t tokens_in, int64_t tokens_out)
{
	struct proto_msg m;
	uint64_t seq = next_seq++;

	if (replay_pos < nreplay)
		fatalx("journal_put while %zu entries remain to replay",
		    nreplay - replay_pos);
	/*
	 * What cannot be journaled cannot be used (a restart could not
	 * replay it): the stage fails, and a model's reply is not asked for
	 * (and paid for) again.
	 */
	if (strlen(kind) + strlen(data) > PROTO_MAX_DATA) {
		char *msg;
		if (strcmp(kind, "reply") == 0)
			msg = xasprintf(
			    "the model's reply is %zu bytes as JSON, "
			    "over the %u a journal entry holds: the "
			    "stage fails rather than ask for it again",
			    strlen(data), PROTO_MAX_DATA);
		else
			msg = xasprintf("the %s to journal is %zu bytes, over "
			                "the %u a journal entry holds",
			    kind, strlen(data), PROTO_MAX_DATA);
		log_warnx("%s", msg);
		wio_result(0, msg, NULL);
	}
	proto_msg_init(&m, PROTO_JOURNAL);
	m.u[PF_SEQ] = seq;
	proto_set_str(&m, PF_KIND, kind);
	proto_set_str(&m, PF_DATA, data);
	m.u[PF_TOKENS_IN] = (uint64_t)tokens_in;
	m.u[PF_TOKENS_OUT] = (uint64_t)tokens_out;
	wio_send(&m);
	wio_wait_ack(seq);
}

void
wio_result(int ok, const char *error, json_t *data)
{
	struct proto_msg m;
	char *s = data ? json_dumps(data, JSON_COMPACT) : NULL;
	char *why = utf8_fix(error ? error : "", NULL); /* as wio_log's */

	proto_msg_init(&m, PROTO_RESULT);
	m.u[PF_OK] = ok ? 1 : 0;
	proto_set_str(&m, PF_TEXT, why);
	proto_set_str(&m, PF_DATA, s ? s : "{}");
	free(why);
	free(s);
	wio_send(&m);
	wio_wait_ack(0);
	exit(WORKER_EXIT_OK);
}

/*
 * The conversation goes whole or not at all: one too large for a frame is
 * as large on every try, so it fails the stage (permanent) with the size.
 * While the model process works the worker only heartbeats; the only
 * messages it accepts are its reply and STOP (wio_recv).
 */
int
wio_model_call(const struct llm_turn *t, json_t *messages, json_t *tools,
    json_t **reply, char **cause, int *permanent)
{
	static uint64_t next_call = 1;
	struct proto_msg m;
	json_t *call;
	char *data;
	uint64_t seq = next_call++;
	size_t len;

	*reply = NULL;
	*permanent = 0;
	call = json_pack("{s:i,s:i,s:O,s:O}", "round", t->round, "turn",
	    t->turn, "messages", messages, "tools",
	    tools != NULL ? tools : json_null());
	data = call != NULL ? json_dumps(call, JSON_COMPACT) : NULL;
	json_decref(call);
	if (data == NULL) {
		*cause = xstrdup("the conversation could not be encoded (a "
		                 "message is not valid UTF-8)");
		*permanent = 1;
		return -1;
	}
	if ((len = strlen(data)) > PROTO_MAX_DATA) {
		*cause =
		    xasprintf("the conversation is %zu bytes as JSON, over "
		              "the %u a message to the model process "
		              "holds: the stage cannot go on",
		        len, PROTO_MAX_DATA);
		*permanent = 1;
		free(data);
		return -1;
	}
	proto_msg_init(&m, PROTO_MODEL_CALL);
	m.u[PF_SEQ] = seq;
	proto_set_strn(&m, PF_DATA, data, len);
	free(data);
	wio_send(&m);

	for (;;) {
		struct pollfd pfd = {SUP_FD, POLLIN, 0};
		uint64_t since = now_ms() - last_beat;
		int wait = since >= beat_ms ? 0 : (int)(beat_ms - since);

		int rc = poll(&pfd, 1, wait);

		if (rc == -1)
			continue; /* EINTR */
		if (rc == 0) {
			proto_msg_init(&m, PROTO_HEARTBEAT);
			wio_send(&m);
			continue;
		}
		wio_recv(&m);
		if (m.type == PROTO_MODEL_REPLY && m.u[PF_SEQ] == seq)
			break;
		proto_msg_clear(&m);
		wio_lost("model call", "unexpected message");
	}
	if (m.u[PF_OK] != 1) {
		*permanent = m.u[PF_PERMANENT] != 0;
		*cause =
		    xstrdup(m.slen[PF_TEXT] > 0 ? m.s[PF_TEXT]
		                                : "the model process failed");
		proto_msg_clear(&m);
		return -1;
	}
	*reply = json_loadb(m.s[PF_DATA], m.slen[PF_DATA], 0, NULL);
	proto_msg_clear(&m);
	if (!json_is_object(*reply)) {
		json_decref(*reply);
		*reply = NULL;
		*cause = xstrdup("the model process's reply is not a JSON "
		                 "object");
		return -1;
	}
	return 0;
}

/*
 * LeakSanitizer's hook, in a sanitizer build only: a worker is one stage
 * and ends with exit() from deep inside it, its conversation still held
 * by frames the leak check at exit cannot see, so every worker would be
 * reported.  Its code's leaks are checked by the unit tests that run it
 * (test-llm, test-tools, test-workspace...); address and undefined
 * behaviour errors in workers are still reported.
 */
int __lsan_is_turned_off(void);
int
__lsan_is_turned_off(void) // NOLINT(bugprone-reserved-identifier)
{
	return 1;
}

int
main(int argc, char **argv)
{
	static struct msg_start start; /* the stage's, until it exits */
	struct proto_msg m;
	struct stage_ctx st;
	const char *cause;

	(void)argv;
	log_init("orch-worker", LOG_LEVEL_INFO);
	if (argc != 1 || fcntl(SUP_FD, F_GETFD) == -1) {
		fprintf(stderr, "orch-worker is started by orch-supervisor, "
		                "not by hand\n");
		return WORKER_EXIT_PERM;
	}
	/* Nothing we start (git, bwrap) may inherit the link. */
	fcntl(SUP_FD, F_SETFD, FD_CLOEXEC);
	prctl(PR_SET_DUMPABLE, 0);
	signal(SIGPIPE, SIG_IGN);

	proto_msg_init(&m, PROTO_HELLO);
	m.u[PF_VERSION] = PROTO_VERSION;
	m.u[PF_PID] = (uint64_t)getpid();
	wio_send(&m);

	wio_recv(&m);
	if (m.type != PROTO_START)
		wio_lost("handshake", "expected START");
	if (m.u[PF_VERSION] != PROTO_VERSION)
		wio_lost("handshake", "protocol version mismatch");
	if (proto_start_get(&m, &start, &cause) == -1)
		wio_lost("handshake", cause);
	memset(&st, 0, sizeof st);
	st.start = &start;
	st.task = (int64_t)start.task;
	st.run = (int64_t)start.run;
	st.id = start.stage;
	st.name = stage_name(start.stage);
	nreplay = (size_t)start.count;
	proto_msg_clear(&m);
	log_context((uint64_t)st.task, st.name);

	replay = xcalloc(nreplay, sizeof *replay);
	for (size_t i = 0; i < nreplay; i++) {
		wio_recv(&m);
		if (m.type != PROTO_REPLAY || m.u[PF_SEQ] != i + 1)
			wio_lost("replay", "expected REPLAY in order");
		replay[i].kind = xstrdup(m.s[PF_KIND]);
		replay[i].data = xstrdup(m.s[PF_DATA]);
		proto_msg_clear(&m);
	}
	next_seq = nreplay + 1;

	beat_ms = start.heartbeat_ms;
	log_init("orch-worker", (enum log_level)start.log_level);
	stage_run(&st);
}
