/*
 * Code both programs share: logging in logfmt, allocation that cannot
 * fail, and a few string helpers.
 */
#ifndef COMMON_H
#define COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/* log.c */
void log_init(const char *prog, enum log_level level);
int log_level_parse(const char *s, enum log_level *level);
const char *log_level_name(enum log_level);
/* Set the task and stage that log lines of this process are about. */
void log_context(uint64_t task, const char *stage);
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_task(enum log_level, uint64_t task, const char *stage, const char *fmt,
    ...) __attribute__((format(printf, 4, 5)));
void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* util.c */
void *xmalloc(size_t);
void *xcalloc(size_t, size_t);
void *xrealloc(void *, size_t);
char *xstrdup(const char *);
char *xstrndup(const char *, size_t);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
int parse_bool(const char *s, int *out);
/* Monotonic milliseconds. */
uint64_t now_ms(void);
/* Write all of buf, retrying on EINTR and short writes: 0 or -1. */
int write_all(int fd, const void *buf, size_t len);
/* Read exactly len bytes: 1, 0 at EOF before any byte, -1 on error/short. */
int read_full(int fd, void *buf, size_t len);

#endif
