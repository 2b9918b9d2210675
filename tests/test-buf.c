/*
 * The one growable buffer (common/buf.c): plain appends, and the capture
 * mode that keeps a stream's head and tail, checked against a model that
 * keeps the whole stream, for many ways of cutting it into writes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "tap.h"

static void
test_plain(void)
{
	struct buf b;

	buf_init(&b);
	ok(b.buf != NULL && b.buf[0] == '\0' && b.len == 0, "empty string");
	buf_adds(&b, "abc");
	buf_add(&b, "d\0e", 3);
	buf_addf(&b, "%d-%s", 42, "x");
	is_int((int)b.len, 10, "length counts the NUL byte");
	ok(memcmp(b.buf, "abcd\0e42-x", 10) == 0 && b.buf[10] == '\0',
	    "bytes in order, NUL-terminated");
	is_int((int)buf_dropped(&b), 0, "nothing dropped");
	for (int i = 0; i < 10000; i++)
		buf_adds(&b, "0123456789");
	is_int((int)b.len, 10 + 100000, "grows");
	buf_free(&b);
	ok(b.buf == NULL, "freed");
}

/* Feed n bytes of a known stream in writes of `step` bytes. */
static int
capture_case(size_t head, size_t tail, size_t n, size_t step)
{
	struct buf b;
	char *all = malloc(n + 1), *want;
	size_t kh, kt, wlen;
	int good;

	for (size_t i = 0; i < n; i++)
		all[i] = (char)('a' + (i * 7 + i / 13) % 26);
	buf_init_capture(&b, head, tail);
	for (size_t i = 0; i < n; i += step)
		buf_add(&b, all + i, n - i < step ? n - i : step);
	kh = n < head ? n : head;
	kt = n - kh < tail ? n - kh : tail;
	wlen = kh + kt;
	want = malloc(wlen + 1);
	memcpy(want, all, kh);
	memcpy(want + kh, all + n - kt, kt);
	buf_str(&b);
	good = b.len == wlen && memcmp(b.buf, want, wlen) == 0 &&
	       b.buf[b.len] == '\0' && b.total == n &&
	       buf_dropped(&b) == n - wlen;
	if (!good)
		printf("# head %zu tail %zu n %zu step %zu: len %zu want %zu\n",
		    head, tail, n, step, b.len, wlen);
	buf_free(&b);
	free(want);
	free(all);
	return good;
}

static void
test_capture(void)
{
	static const size_t sizes[][2] = {
	    {8, 8}, {0, 16}, {16, 0}, {5, 11}, {1, 1}};
	static const size_t steps[] = {1, 3, 7, 8, 16, 17, 100, 1000};
	static const size_t lens[] = {0, 1, 7, 8, 9, 16, 17, 33, 100, 1000};
	int bad = 0;

	for (size_t s = 0; s < nitems(sizes); s++)
		for (size_t l = 0; l < nitems(lens); l++)
			for (size_t t = 0; t < nitems(steps); t++)
				bad += !capture_case(sizes[s][0], sizes[s][1],
				    lens[l], steps[t]);
	is_int(bad, 0,
	    "head and tail kept, the middle counted, "
	    "however the stream is cut");
	ok(capture_case(32768, 32768, 1 << 20, 16384),
	    "a command's output: 1 MiB in 16 KiB reads");
}

static void
test_bounded(void)
{
	struct buf b;
	char chunk[100];

	memset(chunk, 'x', sizeof chunk);
	buf_init_capture(&b, 10, 10);
	for (int i = 0; i < 100000; i++)
		buf_add(&b, chunk, 7);
	ok(b.size <= 256, "memory stays bounded by the limits");
	buf_str(&b);
	is_int((int)b.len, 20, "head and tail");
	is_int((int)buf_dropped(&b), 700000 - 20, "the rest counted");
	buf_free(&b);
}

/* A zeroed buffer, bounded appends and consuming from the front. */
static void
test_zero_max_consume(void)
{
	struct buf b;

	memset(&b, 0, sizeof b);
	ok(buf_add_max(&b, "hello", 5, 8) == 0 && b.len == 5 &&
	        strcmp(b.buf, "hello") == 0,
	    "a zeroed buffer takes its first bytes");
	ok(buf_add_max(&b, "1234", 4, 8) == -1 && b.len == 5 &&
	        strcmp(b.buf, "hello") == 0,
	    "an add past the bound is refused whole");
	ok(buf_add_max(&b, "123", 3, 8) == 0 && b.len == 8,
	    "an add up to the bound is taken");
	ok(buf_add_max(&b, "", 0, 8) == 0, "nothing more fits nothing");
	ok(buf_add_max(&b, "x", (size_t)-1, 8) == -1,
	    "a length that would overflow is refused");
	buf_consume(&b, 3);
	ok(b.len == 5 && strcmp(b.buf, "lo123") == 0,
	    "consume drops the front, NUL-terminated");
	buf_consume(&b, 99);
	ok(b.len == 0 && b.buf[0] == '\0', "consuming more empties it");
	buf_free(&b);
}

int
main(void)
{
	test_plain();
	test_zero_max_consume();
	test_capture();
	test_bounded();
	return tap_done();
}
