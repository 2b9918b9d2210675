/*
 * Logging to stderr, one logfmt line per event:
 *   ts=2026-11-25T13:00:00.123Z level=info prog=orch-supervisor task=4 \
 *     stage=planning msg="..."
 * so that journald and tail -f both read it well.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static const char *log_prog = "orch";
static enum log_level log_max = LOG_LEVEL_INFO;
static uint64_t log_ctx_task;
static const char *log_ctx_stage;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void
log_init(const char *prog, enum log_level level)
{
	log_prog = prog;
	log_max = level;
}

int
log_level_parse(const char *s, enum log_level *level)
{
	for (size_t i = 0; i < nitems(level_names); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*level = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

const char *
log_level_name(enum log_level level)
{
	return level_names[level];
}

void
log_context(uint64_t task, const char *stage)
{
	log_ctx_task = task;
	log_ctx_stage = stage;
}

/* Add s as a logfmt value: quoted, with quotes, backslashes and control
 * characters escaped so one event is always one line. */
static void
log_value(struct buf *b, const char *s)
{
	buf_add(b, "\"", 1);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			buf_addf(b, "\\%c", c);
		else if (c == '\n')
			buf_adds(b, "\\n");
		else if (c < 0x20 || c == 0x7f)
			buf_addf(b, "\\x%02x", c);
		else
			buf_add(b, s, 1);
	}
	buf_add(b, "\"", 1);
}

/*
 * The line is made whole first and written with one write: stderr has no
 * buffer, and a character at a time was a system call each (a tenth of the
 * service's system calls with a thousand workers).  One write also keeps
 * the line whole among the workers' lines passed on to the same stderr.
 */
static void
log_emit(enum log_level level, uint64_t task, const char *stage,
    const char *err, const char *fmt, va_list ap)
{
	char msg[2048];
	struct timeval tv;
	struct tm tm;
	char ts[32];
	struct buf b;

	if (level > log_max)
		return;
	vsnprintf(msg, sizeof msg, fmt, ap);
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);

	buf_init(&b);
	buf_addf(&b, "ts=%s.%03ldZ level=%s prog=%s", ts,
	    (long)(tv.tv_usec / 1000), level_names[level], log_prog);
	if (task != 0)
		buf_addf(&b, " task=%llu", (unsigned long long)task);
	if (stage != NULL)
		buf_addf(&b, " stage=%s", stage);
	buf_adds(&b, " msg=");
	log_value(&b, msg);
	if (err != NULL) {
		buf_adds(&b, " error=");
		log_value(&b, err);
	}
	buf_add(&b, "\n", 1);
	(void)write_all(STDERR_FILENO, b.buf, b.len);
	buf_free(&b);
}

#define LOG_BODY(level, err)                                                   \
	do {                                                                   \
		va_list ap;                                                    \
		va_start(ap, fmt);                                             \
		log_emit(level, log_ctx_task, log_ctx_stage, err, fmt, ap);    \
		va_end(ap);                                                    \
	} while (0)

void
log_warn(const char *fmt, ...)
{
	const char *err = strerror(errno);
	LOG_BODY(LOG_LEVEL_WARN, err);
}

void
log_warnx(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_WARN, NULL);
}

void
log_info(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_INFO, NULL);
}

void
log_debug(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_DEBUG, NULL);
}

void
log_task(enum log_level level, uint64_t task, const char *stage,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(level, task, stage, NULL, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	const char *err = strerror(errno);
	LOG_BODY(LOG_LEVEL_ERROR, err);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_ERROR, NULL);
	exit(1);
}
