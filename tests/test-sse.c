/*
 * Unit tests for sse.c: a stream split at any byte parses to the same
 * events; comments, CRLF, CR, multi-line data, [DONE], error events, a BOM,
 * events without data, the size limit, and a callback that stops.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "llm.h"
#include "tap.h"

struct got {
	char *s;
	size_t len;
	int stop_at; /* stop (return 7) at this event number, or 0 */
	int n;
};

static int
collect(void *arg, const char *event, const char *data, size_t len)
{
	struct got *g = arg;
	char *line;

	if (strlen(data) != len)
		return 99; /* the data must be NUL-terminated at len */
	line = xasprintf("[%s|%.*s]", event, (int)len, data);
	g->s = xrealloc(g->s, g->len + strlen(line) + 1);
	memcpy(g->s + g->len, line, strlen(line) + 1);
	g->len += strlen(line);
	free(line);
	if (++g->n == g->stop_at)
		return 7;
	return 0;
}

/* Parse buf in pieces cut at the given points; *rc gets the last result. */
static char *
parse_split(const char *buf, size_t len, size_t cut1, size_t cut2, int *rc)
{
	struct sse p;
	struct got g = {NULL, 0, 0, 0};
	size_t cuts[3] = {cut1, cut2, len};
	size_t at = 0;

	sse_init(&p, collect, &g);
	*rc = 0;
	for (int i = 0; i < 3 && *rc == 0; i++) {
		size_t end = cuts[i] < at ? at : cuts[i];
		*rc = sse_feed(&p, buf + at, end - at);
		at = end;
	}
	sse_clear(&p);
	return g.s ? g.s : xstrdup("");
}

static const char sample[] =
    ": a comment, then an OpenAI-like stream\r\n"
    "\r\n"
    "data: {\"a\":1}\r\n"
    "\r\n"
    "data:{\"b\":2}\n"
    "\n"
    "event: message_start\n"
    "data: line one\n"
    "data:  line two with a space\n"
    "data\n"
    "\n"
    "id: 5\n"
    "retry: 100\n"
    "event: ignored-without-data\n"
    "\n"
    "event: error\r\n"
    "data: {\"error\":{\"message\":\"Overloaded\"}}\r\n"
    "\r\n"
    "data: caf\xc3\xa9\r"
    "\r"
    "data: [DONE]\n"
    "\n";

static const char want[] = "[message|{\"a\":1}]"
                           "[message|{\"b\":2}]"
                           "[message_start|line one\n line two with a space\n]"
                           "[error|{\"error\":{\"message\":\"Overloaded\"}}]"
                           "[message|caf\xc3\xa9]"
                           "[message|[DONE]]";

static void
test_splits(void)
{
	size_t len = strlen(sample);
	char *s;
	int rc, bad = 0, badpair = 0;

	s = parse_split(sample, len, len, len, &rc);
	is_str(s, want, "the sample parses to its events");
	is_int(rc, 0, "no stop");
	free(s);
	for (size_t i = 0; i <= len; i++) {
		s = parse_split(sample, len, i, i, &rc);
		if (strcmp(s, want) != 0 || rc != 0) {
			if (!bad)
				printf("# split at %zu: %s\n", i, s);
			bad++;
		}
		free(s);
	}
	is_int(bad, 0, "every split point gives the same events");
	for (size_t i = 0; i <= len; i += 3)
		for (size_t j = i; j <= len; j += 5) {
			s = parse_split(sample, len, i, j, &rc);
			if (strcmp(s, want) != 0 || rc != 0)
				badpair++;
			free(s);
		}
	is_int(badpair, 0, "pairs of split points give the same events");

	/* Byte by byte. */
	{
		struct sse p;
		struct got g = {NULL, 0, 0, 0};
		sse_init(&p, collect, &g);
		for (size_t i = 0; i < len; i++)
			sse_feed(&p, sample + i, 1);
		is_str(g.s, want, "byte by byte gives the same events");
		ok(!sse_pending(&p), "nothing pending after the last event");
		sse_clear(&p);
		free(g.s);
	}
}

static void
test_misc(void)
{
	struct sse p;
	struct got g = {NULL, 0, 0, 0};
	char *s;
	int rc;

	s = parse_split("\xEF\xBB\xBF"
	                "data: x\n\n",
	    12, 1, 2, &rc);
	is_str(s, "[message|x]", "a BOM split in pieces is skipped");
	free(s);
	s = parse_split("\xEF\xBB"
	                "data: x\n\n",
	    11, 1, 1, &rc);
	is_str(s, "", "half a BOM is part of the first line (no data field)");
	free(s);
	s = parse_split("data: a\n\ndata: b\n", 17, 17, 17, &rc);
	is_str(s, "[message|a]",
	    "an event without its blank line is not "
	    "dispatched");
	free(s);

	sse_init(&p, collect, &g);
	sse_feed(&p, "data: a\n\ndata: {\"cut", 20);
	ok(sse_pending(&p), "a cut event is pending");
	sse_clear(&p);
	free(g.s);

	memset(&g, 0, sizeof g);
	g.stop_at = 2;
	sse_init(&p, collect, &g);
	rc = sse_feed(&p, "data: 1\n\ndata: 2\n\ndata: 3\n\n", 27);
	is_int(rc, 7, "the callback's stop value is returned");
	is_str(g.s, "[message|1][message|2]", "nothing is parsed after a stop");
	is_int(sse_feed(&p, "data: 4\n\n", 9), 7,
	    "and the parser stays "
	    "stopped");
	sse_clear(&p);
	free(g.s);

	/* A line over the limit. */
	{
		size_t big = SSE_MAX_EVENT + 10;
		char *b = xmalloc(big);
		memset(b, 'x', big);
		memcpy(b, "data: ", 6);
		memset(&g, 0, sizeof g);
		sse_init(&p, collect, &g);
		rc = 0;
		for (size_t at = 0; at < big && rc == 0; at += 65536)
			rc = sse_feed(
			    &p, b + at, big - at < 65536 ? big - at : 65536);
		is_int(rc, -1, "a line over SSE_MAX_EVENT is refused");
		sse_clear(&p);
		/* And in one piece with its end. */
		b[big - 1] = '\n';
		memset(&g, 0, sizeof g);
		sse_init(&p, collect, &g);
		is_int(sse_feed(&p, b, big), -1,
		    "a whole line over SSE_MAX_EVENT is refused");
		sse_clear(&p);
		free(b);
	}

	s = parse_split("data\ndata\n\n", 11, 5, 5, &rc);
	is_str(s, "[message|\n]", "empty data lines join with a newline");
	free(s);
	s = parse_split("event:x\ndata:y\n\ndata:z\n\n", 24, 3, 9, &rc);
	is_str(s, "[x|y][message|z]", "the event type lasts for one event");
	free(s);
}

int
main(void)
{
	test_splits();
	test_misc();
	return tap_done();
}
