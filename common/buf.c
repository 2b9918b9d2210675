/*
 * One growable byte string for both programs, with an optional capture
 * mode for a stream of unbounded length (a command's output, git's stdout
 * and stderr): it keeps the first head bytes and the last tail bytes and
 * counts the rest, so that memory stays bounded however much comes.
 *
 * The tail is kept in the buffer after the head and may grow to twice its
 * limit before the excess is cut from its front: each byte is moved at
 * most a bounded number of times (a ring would avoid the moves, but then
 * the kept text would not be one string).  buf_str does the last cut.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define BUF_INITIAL 256

void
buf_init(struct buf *b)
{
	memset(b, 0, sizeof *b);
	b->size = BUF_INITIAL;
	b->buf = xmalloc(b->size);
	b->buf[0] = '\0';
}

void
buf_init_capture(struct buf *b, size_t head, size_t tail)
{
	buf_init(b);
	b->capture = 1;
	b->head = head;
	b->tail = tail;
}

static void
buf_reserve(struct buf *b, size_t need)
{
	size_t size = b->size != 0 ? b->size : BUF_INITIAL;

	if (need + 1 <= b->size)
		return;
	while (size < need + 1) {
		if (size > SIZE_MAX / 2)
			fatalx("buf: %zu bytes", need);
		size *= 2;
	}
	b->buf = xrealloc(b->buf, size);
	b->size = size;
}

static void
buf_append(struct buf *b, const char *p, size_t n)
{
	buf_reserve(b, b->len + n);
	memcpy(b->buf + b->len, p, n);
	b->len += n;
	b->buf[b->len] = '\0';
}

/* Cut the kept tail to its limit. */
static void
buf_trim(struct buf *b)
{
	size_t start = b->len < b->head ? b->len : b->head;
	size_t have = b->len - start;

	if (have <= b->tail)
		return;
	memmove(b->buf + start, b->buf + b->len - b->tail, b->tail);
	b->len = start + b->tail;
	b->buf[b->len] = '\0';
}

void
buf_add(struct buf *b, const void *data, size_t n)
{
	const char *p = data;
	size_t k;

	b->total += n;
	if (!b->capture) {
		buf_append(b, p, n);
		return;
	}
	if (b->len < b->head) {
		k = b->head - b->len;
		if (k > n)
			k = n;
		buf_append(b, p, k);
		p += k;
		n -= k;
	}
	if (n == 0 || b->tail == 0)
		return;
	if (n >= b->tail) {
		/* Only the end of these bytes can be kept. */
		b->len = b->head;
		buf_append(b, p + n - b->tail, b->tail);
		return;
	}
	buf_append(b, p, n);
	if (b->len - b->head > 2 * b->tail)
		buf_trim(b);
}

int
buf_add_max(struct buf *b, const void *data, size_t n, size_t max)
{
	if (b->len > max || n > max - b->len)
		return -1;
	buf_add(b, data, n);
	return 0;
}

void
buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void
buf_addf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	char *p;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (n == -1)
		fatal("vasprintf");
	buf_add(b, p, (size_t)n);
	free(p);
}

void
buf_consume(struct buf *b, size_t n)
{
	if (n > b->len)
		n = b->len;
	if (n == 0)
		return;
	memmove(b->buf, b->buf + n, b->len - n);
	b->len -= n;
	b->buf[b->len] = '\0';
}

char *
buf_str(struct buf *b)
{
	if (b->capture)
		buf_trim(b);
	return b->buf;
}

size_t
buf_dropped(const struct buf *b)
{
	size_t kept, rest;

	if (!b->capture)
		return 0;
	kept = b->total < b->head ? b->total : b->head;
	rest = b->total - kept;
	kept += rest < b->tail ? rest : b->tail;
	return b->total - kept;
}

void
buf_free(struct buf *b)
{
	free(b->buf);
	memset(b, 0, sizeof *b);
}
