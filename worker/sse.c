/*
 * An incremental parser of text/event-stream (the HTML living standard's
 * "event stream interpretation"), for the model providers' streamed
 * replies.  Bytes come in pieces split anywhere: a piece may end in the
 * middle of a line, of a CRLF, or of a UTF-8 sequence, so nothing is
 * decided before the line's end is seen.
 *
 * Lines end with CRLF, LF or CR.  A line starting with ':' is a comment; an
 * empty line dispatches the event; "field: value" drops one space after the
 * colon; "data" lines are joined with '\n'; an event without data lines is
 * not dispatched.  "id" and "retry" are ignored: we never reconnect a
 * stream, a cut stream is a failed attempt.
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "llm.h"

void
sse_init(struct sse *p, sse_event_fn cb, void *arg)
{
	memset(p, 0, sizeof *p);
	p->cb = cb;
	p->arg = arg;
	p->start = 1;
}

void
sse_clear(struct sse *p)
{
	free(p->line);
	free(p->data);
	free(p->event);
	memset(p, 0, sizeof *p);
}

int
sse_pending(const struct sse *p)
{
	return p->linelen > 0 || p->has_data || p->event != NULL;
}

static int
sse_grow(char **buf, size_t *cap, size_t need)
{
	size_t n;

	if (need > SSE_MAX_EVENT)
		return -1;
	if (need <= *cap)
		return 0;
	n = *cap ? *cap : 256;
	while (n < need)
		n *= 2;
	*buf = xrealloc(*buf, n);
	*cap = n;
	return 0;
}

static int
sse_dispatch(struct sse *p)
{
	int rc = 0;

	if (p->has_data) {
		/* The data buffer holds a '\n' after each line: drop the
		 * last one; there is room for the NUL. */
		p->data[--p->datalen] = '\0';
		rc = p->cb(p->arg, p->event ? p->event : "message", p->data,
		    p->datalen);
	}
	p->datalen = 0;
	p->has_data = 0;
	free(p->event);
	p->event = NULL;
	return rc;
}

/* One complete line, without its end. */
static int
sse_line(struct sse *p, const char *line, size_t len)
{
	const char *colon, *value;
	size_t flen, vlen;

	if (len == 0)
		return sse_dispatch(p);
	if (line[0] == ':')
		return 0;
	if ((colon = memchr(line, ':', len)) == NULL) {
		flen = len;
		value = line + len;
		vlen = 0;
	} else {
		flen = (size_t)(colon - line);
		value = colon + 1;
		vlen = len - flen - 1;
		if (vlen > 0 && *value == ' ') {
			value++;
			vlen--;
		}
	}
	if (flen == 4 && memcmp(line, "data", 4) == 0) {
		if (sse_grow(&p->data, &p->datacap, p->datalen + vlen + 2) ==
		    -1)
			return -1;
		memcpy(p->data + p->datalen, value, vlen);
		p->datalen += vlen;
		p->data[p->datalen++] = '\n';
		p->has_data = 1;
	} else if (flen == 5 && memcmp(line, "event", 5) == 0) {
		free(p->event);
		p->event = xstrndup(value, vlen);
	}
	return 0;
}

int
sse_feed(struct sse *p, const char *buf, size_t len)
{
	size_t i = 0;
	int rc;

	if (p->stopped)
		return p->stopped;
	if (p->start && len > 0) {
		/* A UTF-8 byte order mark may open the stream: skip it,
		 * whole or in pieces. */
		static const char bom[] = "\xEF\xBB\xBF";
		while (
		    i < len && p->linelen < 3 &&
		    (unsigned char)buf[i] == (unsigned char)bom[p->linelen]) {
			p->linelen++;
			i++;
		}
		if (p->linelen == 3) {
			p->linelen = 0;
			p->start = 0;
		} else if (i == len) {
			return 0;
		} else {
			/* Not a BOM after all: those bytes are the line's. */
			size_t n = p->linelen;
			p->linelen = 0;
			p->start = 0;
			if (sse_grow(&p->line, &p->linecap, n + 1) == -1)
				return p->stopped = -1;
			memcpy(p->line, bom, n);
			p->linelen = n;
		}
	}
	while (i < len) {
		const char *end;
		size_t n;

		if (p->cr) {
			p->cr = 0;
			if (buf[i] == '\n') {
				i++;
				continue;
			}
		}
		/* The next line end, CR or LF, in what is left. */
		end = NULL;
		for (size_t j = i; j < len; j++) {
			if (buf[j] == '\n' || buf[j] == '\r') {
				end = buf + j;
				break;
			}
		}
		n = end ? (size_t)(end - (buf + i)) : len - i;
		if (end == NULL || p->linelen > 0) {
			if (sse_grow(&p->line, &p->linecap,
			        p->linelen + n + 1) == -1)
				return p->stopped = -1;
			memcpy(p->line + p->linelen, buf + i, n);
			p->linelen += n;
		}
		if (end == NULL)
			return 0;
		if (p->linelen > 0) {
			rc = sse_line(p, p->line, p->linelen);
			p->linelen = 0;
		} else {
			if (n + 1 > SSE_MAX_EVENT)
				return p->stopped = -1;
			rc = sse_line(p, buf + i, n);
		}
		if (*end == '\r')
			p->cr = 1;
		i += n + 1;
		if (rc != 0)
			return p->stopped = rc;
	}
	return 0;
}
