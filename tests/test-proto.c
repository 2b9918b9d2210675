/*
 * Unit tests for proto/proto.c: every message type round-trips, and every
 * kind of malformed payload is refused cleanly.
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "proto.h"
#include "tap.h"

/* Fill every field of type with a distinct value. */
static void
fill_msg(struct proto_msg *m, enum proto_type type)
{
	const struct proto_spec *spec = &proto_catalog[type];
	char buf[400];
	unsigned i;

	proto_msg_init(m, type);
	for (i = 0; i < spec->nfields; i++) {
		enum proto_field f = spec->fields[i];

		if (proto_field_type[f] == PROTO_FT_U64) {
			/* Cover every msgpack integer width. */
			switch (i % 5) {
			case 0:
				m->u[f] = UINT64_MAX - f;
				break;
			case 1:
				m->u[f] = f;
				break;
			case 2:
				m->u[f] = 200 + f;
				break;
			case 3:
				m->u[f] = 70000 + f;
				break;
			default:
				m->u[f] = 0x100000000ULL + f;
				break;
			}
			continue;
		}
		switch (i % 3) {
		case 0:
			snprintf(buf, sizeof buf, "field %d of %s", (int)f,
			    proto_type_name(type));
			break;
		case 1:
			memset(buf, 'a' + (int)f, 300);
			buf[300] = '\0';
			break;
		default:
			buf[0] = '\0';
			break;
		}
		proto_set_str(m, f, buf);
	}
}

/* Whether a and b carry the same type and catalog fields. */
static int
msg_equal(const struct proto_msg *a, const struct proto_msg *b)
{
	const struct proto_spec *spec;
	unsigned i;

	if (a->type != b->type)
		return 0;
	spec = &proto_catalog[a->type];
	for (i = 0; i < spec->nfields; i++) {
		enum proto_field f = spec->fields[i];

		if (proto_field_type[f] == PROTO_FT_U64) {
			if (a->u[f] != b->u[f])
				return 0;
			continue;
		}
		if (a->s[f] == NULL || b->s[f] == NULL ||
		    a->slen[f] != b->slen[f] ||
		    memcmp(a->s[f], b->s[f], a->slen[f]) != 0 ||
		    b->s[f][b->slen[f]] != '\0')
			return 0;
	}
	return 1;
}

/* Whether m is empty, as decoding leaves it on failure. */
static int
msg_empty(const struct proto_msg *m)
{
	unsigned i;

	if (m->type != PROTO_NONE)
		return 0;
	for (i = 0; i < PROTO_FIELD_MAX; i++) {
		if (m->s[i] != NULL || m->u[i] != 0 || m->slen[i] != 0)
			return 0;
	}
	return 1;
}

/* Assert that decoding fails, leaves m empty and, if want, says want. */
static void
bad(const void *buf, size_t len, const char *want, const char *what)
{
	struct proto_msg m;
	const char *cause = NULL;
	char line[256];
	int r;

	memset(&m, 0xa5, sizeof m);
	r = proto_decode(buf, len, &m, &cause);
	snprintf(line, sizeof line, "decode refuses %s", what);
	ok(r == -1 && cause != NULL && msg_empty(&m), line);
	if (want != NULL) {
		snprintf(line, sizeof line, "cause for %s", what);
		is_str(cause, want, line);
	}
	if (r == 0)
		proto_msg_clear(&m);
}

static void
test_catalog(void)
{
	unsigned t, i;
	int sane = 1;

	for (t = PROTO_NONE + 1; t < PROTO_MAX; t++) {
		const struct proto_spec *spec = &proto_catalog[t];

		if (spec->name == NULL || spec->nfields > PROTO_MAX_FIELDS)
			sane = 0;
		for (i = 0; i < spec->nfields; i++) {
			if (spec->fields[i] >= PROTO_FIELD_MAX)
				sane = 0;
		}
	}
	ok(sane, "catalog entries are sane");
	is_int(proto_catalog[PROTO_START].nfields, 36, "start has 36 fields");
	for (i = 0; i < proto_catalog[PROTO_START].nfields; i++)
		if (proto_catalog[PROTO_START].fields[i] == PF_LLM_API_KEY)
			sane = 0;
	ok(sane, "start carries no API key (only MODEL_SETUP does)");
	is_int(proto_catalog[PROTO_MODEL_SETUP].fields[4], PF_LLM_API_KEY,
	    "model_setup carries the key");
	is_int(proto_catalog[PROTO_JOURNAL].fields[4], PF_TOKENS_OUT,
	    "journal ends with tokens_out");
	is_int(proto_field_type[PF_DATA], PROTO_FT_STR, "data is a string");
	is_int(proto_field_type[PF_OK], PROTO_FT_U64, "ok is an integer");
	is_str(proto_type_name(PROTO_CHECKPOINT), "checkpoint", "type name");
	is_str(proto_type_name(PROTO_MAX), "unknown", "name of PROTO_MAX");
}

static void
test_roundtrip(void)
{
	struct proto_msg m, d;
	const char *cause;
	uint8_t *buf;
	size_t len;
	uint32_t flen;
	unsigned t;
	char what[128];

	for (t = PROTO_NONE + 1; t < PROTO_MAX; t++) {
		const char *name = proto_type_name(t);

		fill_msg(&m, t);
		cause = NULL;
		snprintf(what, sizeof what, "encode %s", name);
		if (!ok(proto_encode(&m, &buf, &len, &cause) == 0, what)) {
			printf("#   %s\n", cause);
			proto_msg_clear(&m);
			continue;
		}
		snprintf(what, sizeof what, "frame_len %s", name);
		ok(proto_frame_len(buf, &flen, &cause) == 0 &&
		        flen == len - PROTO_HDR_LEN,
		    what);
		snprintf(what, sizeof what, "decode %s", name);
		if (ok(proto_decode(buf + PROTO_HDR_LEN, len - PROTO_HDR_LEN,
		           &d, &cause) == 0,
		        what)) {
			snprintf(what, sizeof what, "round trip %s", name);
			ok(msg_equal(&m, &d), what);
			proto_msg_clear(&d);
		} else
			printf("#   %s\n", cause);
		free(buf);
		proto_msg_clear(&m);
	}
}

static void
test_strings(void)
{
	struct proto_msg m, d;
	const char *cause;
	uint8_t *buf;
	size_t len;

	proto_msg_init(&m, PROTO_LOG);
	proto_set_str(&m, PF_TEXT, "first");
	proto_set_str(&m, PF_TEXT, "second value");
	is_str(m.s[PF_TEXT], "second value", "set_str replaces");
	is_int(m.slen[PF_TEXT], 12, "set_str sets slen");
	proto_set_strn(&m, PF_TEXT, m.s[PF_TEXT], 6);
	is_str(m.s[PF_TEXT], "second", "set_strn from its own value");
	proto_msg_clear(&m);
	ok(msg_empty(&m), "clear leaves the message empty");

	/* An unset string field is sent as an empty string. */
	proto_msg_init(&m, PROTO_LOG);
	m.u[PF_LEVEL] = 2;
	ok(proto_encode(&m, &buf, &len, &cause) == 0, "encode unset string");
	ok(proto_decode(buf + PROTO_HDR_LEN, len - PROTO_HDR_LEN, &d, &cause) ==
	            0 &&
	        d.s[PF_TEXT] != NULL && d.slen[PF_TEXT] == 0 &&
	        d.u[PF_LEVEL] == 2,
	    "unset string decodes as empty");
	free(buf);
	proto_msg_clear(&d);

	proto_set_strn(&m, PF_TEXT, "a\0b", 3);
	cause = NULL;
	ok(proto_encode(&m, &buf, &len, &cause) == -1 && cause != NULL,
	    "encode refuses a string with NUL");
	proto_msg_clear(&m);

	proto_msg_init(&m, PROTO_NONE);
	ok(proto_encode(&m, &buf, &len, &cause) == -1, "encode refuses NONE");
	proto_msg_init(&m, PROTO_MAX);
	ok(proto_encode(&m, &buf, &len, &cause) == -1,
	    "encode refuses PROTO_MAX");
}

static void
test_limits(void)
{
	struct proto_msg m, d;
	const char *cause;
	uint8_t hdr[PROTO_HDR_LEN], *buf;
	size_t len, n;
	uint32_t flen;
	char *big;

	memset(hdr, 0, sizeof hdr);
	cause = NULL;
	ok(proto_frame_len(hdr, &flen, &cause) == -1 && cause != NULL,
	    "frame_len refuses 0");
	hdr[1] = (PROTO_MAX_FRAME + 1) >> 16;
	hdr[2] = 0;
	hdr[3] = 1;
	cause = NULL;
	ok(proto_frame_len(hdr, &flen, &cause) == -1 && cause != NULL,
	    "frame_len refuses PROTO_MAX_FRAME + 1");
	hdr[3] = 0;
	ok(proto_frame_len(hdr, &flen, &cause) == 0 && flen == PROTO_MAX_FRAME,
	    "frame_len accepts PROTO_MAX_FRAME");
	memset(hdr, 0xff, sizeof hdr);
	ok(proto_frame_len(hdr, &flen, &cause) == -1,
	    "frame_len refuses 0xffffffff");

	/*
	 * A message's strings may hold PROTO_MAX_DATA bytes together, and not
	 * one more: whatever a worker accepts (a model's reply) it can then
	 * journal, and a message that would not fit is known before it is
	 * sent (proto_str_total), so that it is never a lost link.
	 */
	n = PROTO_MAX_DATA;
	big = xmalloc(n + 2);
	memset(big, 'x', n + 1);
	big[n + 1] = '\0';
	proto_msg_init(&m, PROTO_LOG);
	proto_set_strn(&m, PF_TEXT, big, n);
	ok(proto_str_total(&m) == n, "str_total of a log message is its text");
	ok(proto_encode(&m, &buf, &len, &cause) == 0 &&
	        len <= PROTO_HDR_LEN + PROTO_MAX_FRAME,
	    "encode of strings of exactly PROTO_MAX_DATA fits a frame");
	ok(proto_decode(buf + PROTO_HDR_LEN, len - PROTO_HDR_LEN, &d, &cause) ==
	            0 &&
	        msg_equal(&m, &d),
	    "... and decodes");
	proto_msg_clear(&d);
	free(buf);

	proto_set_strn(&m, PF_TEXT, big, n + 1);
	cause = NULL;
	ok(proto_encode(&m, &buf, &len, &cause) == -1 && cause != NULL &&
	        strstr(cause, "PROTO_MAX_DATA") != NULL,
	    "encode refuses PROTO_MAX_DATA + 1");
	proto_set_str(&m, PF_TEXT, "");
	proto_msg_clear(&m);

	/* The limit is on the sum: a journal entry's kind counts too. */
	proto_msg_init(&m, PROTO_JOURNAL);
	proto_set_str(&m, PF_KIND, "reply");
	proto_set_strn(&m, PF_DATA, big, n - 5);
	ok(proto_str_total(&m) == n, "str_total sums the strings");
	ok(proto_encode(&m, &buf, &len, &cause) == 0,
	    "a journal entry of PROTO_MAX_DATA in all is encoded");
	free(buf);
	proto_set_strn(&m, PF_DATA, big, n - 4);
	cause = NULL;
	ok(proto_encode(&m, &buf, &len, &cause) == -1 && cause != NULL,
	    "... one byte more is refused");
	proto_msg_clear(&m);
	free(big);

	/*
	 * The decoder takes any frame up to PROTO_MAX_FRAME: a log message
	 * is [fixarray, type, level, str32 header, text], 8 bytes beside
	 * the text.
	 */
	n = PROTO_MAX_FRAME - 8;
	big = xmalloc(n + 8);
	memcpy(big, "\x93\x05\x01\xdb", 4);
	big[4] = (char)((n >> 24) & 0xff);
	big[5] = (char)((n >> 16) & 0xff);
	big[6] = (char)((n >> 8) & 0xff);
	big[7] = (char)(n & 0xff);
	memset(big + 8, 'z', n);
	ok(proto_decode((uint8_t *)big, n + 8, &d, &cause) == 0 &&
	        d.type == PROTO_LOG && d.slen[PF_TEXT] == n,
	    "decode of exactly PROTO_MAX_FRAME");
	proto_msg_clear(&d);
	free(big);

	proto_msg_init(&m, PROTO_LOG);
	big = xmalloc((size_t)PROTO_MAX_FRAME * 2);
	memset(big, 'y', (size_t)PROTO_MAX_FRAME * 2);
	proto_set_strn(&m, PF_TEXT, big, (size_t)PROTO_MAX_FRAME * 2);
	cause = NULL;
	ok(proto_encode(&m, &buf, &len, &cause) == -1 && cause != NULL,
	    "encode refuses a string of twice PROTO_MAX_FRAME");
	free(big);
	proto_msg_clear(&m);

	/* A payload over the limit is refused by decode as well. */
	big = xcalloc(1, (size_t)PROTO_MAX_FRAME + 1);
	bad(big, (size_t)PROTO_MAX_FRAME + 1, NULL, "a payload over the limit");
	free(big);
}

static void
test_malformed(void)
{
	static const uint8_t notarray[] = {0x01};
	static const uint8_t map[] = {0x81, 0x01, 0x01};
	static const uint8_t str[] = {0xa1, 'x'};
	static const uint8_t emptyarr[] = {0x90};
	static const uint8_t type0[] = {0x91, 0x00};
	static const uint8_t typemax[] = {0x91, PROTO_MAX};
	static const uint8_t typebig[] = {
	    0x91, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
	static const uint8_t typeneg[] = {0x91, 0xff};
	static const uint8_t typestr[] = {0x91, 0xa1, '4'};
	static const uint8_t hb_extra[] = {0x92, PROTO_HEARTBEAT, 0x00};
	static const uint8_t hello_less[] = {0x92, PROTO_HELLO, 0x01};
	static const uint8_t hello_more[] = {
	    0x94, PROTO_HELLO, 0x01, 0x02, 0x03};
	static const uint8_t log_int[] = {0x93, PROTO_LOG, 0x01, 0x02};
	static const uint8_t log_str[] = {
	    0x93, PROTO_LOG, 0xa1, 'x', 0xa1, 'y'};
	static const uint8_t log_neg[] = {0x93, PROTO_LOG, 0xff, 0xa1, 'x'};
	static const uint8_t log_neg8[] = {0x93, PROTO_LOG, 0xd0, 0x80, 0xa0};
	static const uint8_t log_nil[] = {0x93, PROTO_LOG, 0xc0, 0xa0};
	static const uint8_t log_bool[] = {0x93, PROTO_LOG, 0xc3, 0xa0};
	static const uint8_t log_f32[] = {
	    0x93, PROTO_LOG, 0xca, 0x3f, 0x80, 0x00, 0x00, 0xa0};
	static const uint8_t log_f64[] = {
	    0x93, PROTO_LOG, 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xa0};
	static const uint8_t log_bin[] = {
	    0x93, PROTO_LOG, 0x01, 0xc4, 0x01, 'x'};
	static const uint8_t log_strnil[] = {0x93, PROTO_LOG, 0x01, 0xc0};
	static const uint8_t log_ext[] = {
	    0x93, PROTO_LOG, 0x01, 0xd4, 0x01, 0x00};
	static const uint8_t log_nul[] = {
	    0x93, PROTO_LOG, 0x01, 0xa3, 'a', 0, 'b'};
	static const uint8_t log_trail[] = {
	    0x93, PROTO_LOG, 0x01, 0xa1, 'x', 0x00};
	static const uint8_t arr32[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
	static const uint8_t arr16[] = {0xdc, 0xff, 0xff, 0x01, 0x01};
	static const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
	static const uint8_t map_half[] = {0x82, 0x01, 0x01, 0x01};
	static const uint8_t str32[] = {0xdb, 0xff, 0xff, 0xff, 0xff};
	static const uint8_t bin32[] = {0xc6, 0xff, 0xff, 0xff, 0xff};
	static const uint8_t ext32[] = {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01};
	static const uint8_t in_str32[] = {
	    0x93, PROTO_LOG, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff, 'x'};
	static const uint8_t in_arr32[] = {
	    0x93, PROTO_LOG, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
	static const uint8_t c1[] = {0x93, PROTO_LOG, 0x01, 0xc1};
	static const uint8_t depth4[] = {
	    0x93, PROTO_LOG, 0x91, 0x91, 0x91, 0x01, 0xa0};
	static const uint8_t depth5[] = {
	    0x93, PROTO_LOG, 0x91, 0x91, 0x91, 0x91, 0x01, 0xa0};
	uint8_t deep[1001], many[3 + 300];

	bad("", 0, "empty payload", "an empty payload");
	bad(notarray, sizeof notarray, "top level is not an array",
	    "a top-level integer");
	bad(map, sizeof map, "top level is not an array", "a top-level map");
	bad(str, sizeof str, "top level is not an array", "a top-level string");
	bad(emptyarr, sizeof emptyarr, "empty array", "an empty array");
	bad(type0, sizeof type0, "unknown message type", "type 0");
	bad(typemax, sizeof typemax, "unknown message type", "type PROTO_MAX");
	bad(typebig, sizeof typebig, "unknown message type", "type 2^64-1");
	bad(typeneg, sizeof typeneg, NULL, "a negative type");
	bad(typestr, sizeof typestr, NULL, "a string type");
	bad(hb_extra, sizeof hb_extra,
	    "wrong number of fields for the message type",
	    "heartbeat with a field");
	bad(hello_less, sizeof hello_less,
	    "wrong number of fields for the message type",
	    "hello with one field less");
	bad(hello_more, sizeof hello_more,
	    "wrong number of fields for the message type",
	    "hello with one field more");
	bad(log_int, sizeof log_int, "field text: expected a string",
	    "an integer where a string goes");
	bad(log_str, sizeof log_str,
	    "field level: expected an unsigned integer",
	    "a string where an integer goes");
	bad(log_neg, sizeof log_neg,
	    "field level: expected an unsigned integer", "a negative fixint");
	bad(log_neg8, sizeof log_neg8,
	    "field level: expected an unsigned integer", "a negative int8");
	bad(log_nil, sizeof log_nil,
	    "field level: expected an unsigned integer",
	    "nil where an integer goes");
	bad(log_bool, sizeof log_bool,
	    "field level: expected an unsigned integer",
	    "a bool where an integer goes");
	bad(log_f32, sizeof log_f32,
	    "field level: expected an unsigned integer",
	    "a float32 where an integer goes");
	bad(log_f64, sizeof log_f64,
	    "field level: expected an unsigned integer",
	    "a float64 where an integer goes");
	bad(log_bin, sizeof log_bin, "field text: expected a string",
	    "bin where a string goes");
	bad(log_strnil, sizeof log_strnil, "field text: expected a string",
	    "nil where a string goes");
	bad(log_ext, sizeof log_ext, "field text: expected a string",
	    "ext where a string goes");
	bad(log_nul, sizeof log_nul, "field text: string contains a NUL byte",
	    "a string with a NUL byte");
	bad(log_trail, sizeof log_trail, "trailing bytes after the message",
	    "a trailing byte");
	bad(c1, sizeof c1, "invalid msgpack type byte", "the unused byte 0xc1");

	/*
	 * These would make msgpack-c allocate gigabytes; the validator must
	 * refuse them before msgpack-c is called, which the cause shows (only
	 * the validator says "exceeds bytes left").
	 */
	bad(arr32, sizeof arr32, "array count exceeds bytes left",
	    "array32 of 0xffffffff elements in 5 bytes");
	bad(arr16, sizeof arr16, "array count exceeds bytes left",
	    "array16 of 0xffff elements");
	bad(map32, sizeof map32, "map count exceeds bytes left",
	    "map32 of 0xffffffff pairs");
	bad(map_half, sizeof map_half, "map count exceeds bytes left",
	    "map of 2 pairs in 3 bytes");
	bad(str32, sizeof str32, "string length exceeds bytes left",
	    "str32 of 0xffffffff bytes");
	bad(bin32, sizeof bin32, "bin length exceeds bytes left",
	    "bin32 of 0xffffffff bytes");
	bad(ext32, sizeof ext32, "ext length exceeds bytes left",
	    "ext32 of 0xffffffff bytes");
	bad(in_str32, sizeof in_str32, "string length exceeds bytes left",
	    "a huge str32 field");
	bad(in_arr32, sizeof in_arr32, "array count exceeds bytes left",
	    "a huge array32 field");

	memset(deep, 0x91, 1000);
	deep[1000] = 0x01;
	bad(deep, sizeof deep, "nesting exceeds PROTO_MAX_DEPTH",
	    "nesting 1000 deep");
	bad(depth4, sizeof depth4, "field level: expected an unsigned integer",
	    "nesting PROTO_MAX_DEPTH deep (past the validator)");
	bad(depth5, sizeof depth5, "nesting exceeds PROTO_MAX_DEPTH",
	    "nesting PROTO_MAX_DEPTH + 1 deep");

	many[0] = 0xdc;
	many[1] = 300 >> 8;
	many[2] = 300 & 0xff;
	memset(many + 3, 0x01, 300);
	bad(many, sizeof many, "too many objects", "an array of 300 elements");
}

/* Every strict prefix of a valid payload must be refused. */
static void
test_truncated(void)
{
	struct proto_msg m;
	const char *cause;
	uint8_t *buf, *copy;
	size_t len, plen, i;
	int all = 1;
	unsigned t;
	char what[128];

	for (t = PROTO_NONE + 1; t < PROTO_MAX; t++) {
		fill_msg(&m, t);
		if (proto_encode(&m, &buf, &len, &cause) != 0)
			fatalx("encode: %s", cause);
		proto_msg_clear(&m);
		plen = len - PROTO_HDR_LEN;
		all = 1;
		for (i = 0; i < plen; i++) {
			struct proto_msg d;

			/* An exact-size copy lets ASan see any overread. */
			copy = xmalloc(i);
			memcpy(copy, buf + PROTO_HDR_LEN, i);
			memset(&d, 0x5a, sizeof d);
			if (proto_decode(copy, i, &d, &cause) != -1 ||
			    !msg_empty(&d)) {
				all = 0;
				printf("#   prefix %zu of %zu accepted\n", i,
				    plen);
			}
			free(copy);
		}
		snprintf(what, sizeof what, "every prefix of %s is refused",
		    proto_type_name(t));
		ok(all, what);
		free(buf);
	}
}

static void
test_fd(void)
{
	struct proto_msg m, d;
	const char *cause;
	uint8_t *buf;
	size_t len;
	int sv[2], r, status;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		fatal("socketpair");

	fill_msg(&m, PROTO_JOURNAL);
	ok(proto_write_fd(sv[0], &m, &cause) == 0, "write_fd journal");
	proto_msg_clear(&m);
	fill_msg(&m, PROTO_HEARTBEAT);
	ok(proto_write_fd(sv[0], &m, &cause) == 0, "write_fd heartbeat");
	proto_msg_clear(&m);

	fill_msg(&m, PROTO_JOURNAL);
	r = proto_read_fd(sv[1], &d, &cause);
	is_int(r, 0, "read_fd journal");
	ok(r == 0 && msg_equal(&m, &d), "read_fd journal round trip");
	proto_msg_clear(&m);
	proto_msg_clear(&d);
	r = proto_read_fd(sv[1], &d, &cause);
	ok(r == 0 && d.type == PROTO_HEARTBEAT, "read_fd heartbeat");
	proto_msg_clear(&d);

	close(sv[0]);
	cause = NULL;
	r = proto_read_fd(sv[1], &d, &cause);
	is_int(r, 1, "read_fd at clean EOF returns 1");
	is_str(cause, "end of stream", "clean EOF cause");
	ok(msg_empty(&d), "message empty at EOF");
	close(sv[1]);

	/* The peer closes in the middle of the header. */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		fatal("socketpair");
	fill_msg(&m, PROTO_LOG);
	if (proto_encode(&m, &buf, &len, &cause) != 0)
		fatalx("encode: %s", cause);
	if (write_all(sv[0], buf, 2) != 0)
		fatal("write");
	close(sv[0]);
	r = proto_read_fd(sv[1], &d, &cause);
	is_int(r, -1, "read_fd at EOF inside the header");
	ok(msg_empty(&d), "message empty at EOF inside the header");
	close(sv[1]);

	/* The peer closes in the middle of the payload. */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		fatal("socketpair");
	if (write_all(sv[0], buf, len - 1) != 0)
		fatal("write");
	close(sv[0]);
	cause = NULL;
	r = proto_read_fd(sv[1], &d, &cause);
	is_int(r, -1, "read_fd at EOF inside the payload");
	is_str(cause, "end of stream inside a frame",
	    "EOF inside the payload cause");
	close(sv[1]);

	/* The peer closes right after the header. */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		fatal("socketpair");
	if (write_all(sv[0], buf, PROTO_HDR_LEN) != 0)
		fatal("write");
	close(sv[0]);
	r = proto_read_fd(sv[1], &d, &cause);
	is_int(r, -1, "read_fd at EOF right after the header");
	close(sv[1]);
	free(buf);
	proto_msg_clear(&m);

	/* A header announcing too large a frame. */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		fatal("socketpair");
	if (write_all(sv[0], "\xff\xff\xff\xff", 4) != 0)
		fatal("write");
	cause = NULL;
	r = proto_read_fd(sv[1], &d, &cause);
	is_int(r, -1, "read_fd refuses a huge header");
	is_str(cause, "frame exceeds PROTO_MAX_FRAME", "huge header cause");
	close(sv[0]);
	close(sv[1]);

	/* A large frame from another process, read in many pieces. */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		fatal("socketpair");
	fill_msg(&m, PROTO_RESULT);
	buf = xmalloc(1024 * 1024 + 1);
	memset(buf, 'z', 1024 * 1024);
	buf[1024 * 1024] = '\0';
	proto_set_str(&m, PF_DATA, (char *)buf);
	free(buf);
	switch (pid = fork()) {
	case -1:
		fatal("fork");
	case 0:
		close(sv[1]);
		_exit(proto_write_fd(sv[0], &m, &cause) == 0 ? 0 : 1);
	}
	close(sv[0]);
	r = proto_read_fd(sv[1], &d, &cause);
	ok(r == 0 && msg_equal(&m, &d), "read_fd of a 1 MiB frame");
	proto_msg_clear(&d);
	proto_msg_clear(&m);
	ok(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	        WEXITSTATUS(status) == 0,
	    "writer process succeeded");
	close(sv[1]);
}

/* A START with every field set, each to a value of its own. */
static void
start_fill(struct msg_start *s)
{
	memset(s, 0, sizeof *s);
	s->task = 7;
	s->stage = STAGE_REVIEWING;
	s->run = 3;
	s->attempt = 2;
	s->count = 5;
	s->request = xstrdup("request \xc3\xa9");
	s->repo = xstrdup("/repo");
	s->base_commit = xstrdup("0123456789abcdef0123456789abcdef01234567");
	s->worktree = xstrdup("/state/worktrees/task-7");
	s->ref = xstrdup("refs/orch/tasks/7");
	s->branch = xstrdup("orch/task-7");
	s->plan = xstrdup("the plan");
	s->plan_rejection_reason = xstrdup("");
	s->feedback = xstrdup("feedback");
	s->review = xstrdup("{\"verdict\":\"approve\"}");
	s->verify_command = xstrdup("make check");
	s->round = 4;
	s->snapshot = xstrdup("fedcba9876543210fedcba9876543210fedcba98");
	s->workspace_clean = 1;
	s->max_steps = 50;
	s->cmd_timeout_s = 600;
	s->snapshot_max_file_bytes = UINT64_MAX;
	s->state_id = xstrdup("state-id");
	s->heartbeat_ms = 30000;
	s->profiles_dir = xstrdup("/profiles");
	s->log_level = LOG_LEVEL_DEBUG;
	s->llm_provider = xstrdup("scripted");
	s->llm_base_url = xstrdup("http://127.0.0.1:1/v1");
	s->llm_model = xstrdup("model");
	s->llm_script = xstrdup("{\"planning\":[]}");
	s->llm_trace = xstrdup("/trace");
	s->llm_timeout_s = 300;
	s->llm_max_retries = 0;
}

static int
str_same(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* Whether two STARTs are equal, field by field. */
static int
start_equal(const struct msg_start *a, const struct msg_start *b)
{
	return a->task == b->task && a->stage == b->stage && a->run == b->run &&
	       a->attempt == b->attempt && a->count == b->count &&
	       str_same(a->request, b->request) && str_same(a->repo, b->repo) &&
	       str_same(a->base_commit, b->base_commit) &&
	       str_same(a->worktree, b->worktree) && str_same(a->ref, b->ref) &&
	       str_same(a->branch, b->branch) && str_same(a->plan, b->plan) &&
	       str_same(a->plan_rejection_reason, b->plan_rejection_reason) &&
	       str_same(a->feedback, b->feedback) &&
	       str_same(a->review, b->review) &&
	       str_same(a->verify_command, b->verify_command) &&
	       a->round == b->round && str_same(a->snapshot, b->snapshot) &&
	       a->workspace_clean == b->workspace_clean &&
	       a->max_steps == b->max_steps &&
	       a->cmd_timeout_s == b->cmd_timeout_s &&
	       a->snapshot_max_file_bytes == b->snapshot_max_file_bytes &&
	       str_same(a->state_id, b->state_id) &&
	       a->heartbeat_ms == b->heartbeat_ms &&
	       str_same(a->profiles_dir, b->profiles_dir) &&
	       a->log_level == b->log_level &&
	       str_same(a->llm_provider, b->llm_provider) &&
	       str_same(a->llm_base_url, b->llm_base_url) &&
	       str_same(a->llm_model, b->llm_model) &&
	       str_same(a->llm_script, b->llm_script) &&
	       str_same(a->llm_trace, b->llm_trace) &&
	       a->llm_timeout_s == b->llm_timeout_s &&
	       a->llm_max_retries == b->llm_max_retries &&
	       str_same(a->origin, b->origin) &&
	       a->lease_epoch == b->lease_epoch;
}

/* Encode s, decode the frame and check it: 0 with *out, or -1 with cause. */
static int
start_trip(const struct msg_start *s, struct msg_start *out, const char **cause)
{
	struct proto_msg m, d;
	uint8_t *buf;
	size_t len;
	int rc;

	memset(out, 0, sizeof *out);
	proto_start_set(&m, s);
	rc = proto_encode(&m, &buf, &len, cause);
	proto_msg_clear(&m);
	if (rc != 0)
		return -1;
	rc = proto_decode(buf + PROTO_HDR_LEN, len - PROTO_HDR_LEN, &d, cause);
	free(buf);
	if (rc != 0)
		return -1;
	rc = proto_start_get(&d, out, cause);
	proto_msg_clear(&d);
	return rc;
}

static void
test_stage_names(void)
{
	enum stage id;
	int all = 1;

	for (unsigned i = 0; i < STAGE_MAX; i++) {
		if (stage_parse(stage_name((enum stage)i), &id) != 0 ||
		    id != (enum stage)i)
			all = 0;
	}
	ok(all, "every stage's name parses back to it");
	is_str(stage_name(STAGE_PLANNING), "planning", "planning's name");
	is_str(stage_name(STAGE_VERIFYING), "verifying", "verifying's name");
	is_str(stage_name(STAGE_MAX), "unknown", "name of STAGE_MAX");
	ok(stage_parse("Planning", &id) == -1, "stage names are exact");
	ok(stage_parse("planning ", &id) == -1, "... no trailing space");
	ok(stage_parse("", &id) == -1, "an empty name is no stage");
	ok(stage_parse(NULL, &id) == -1, "NULL is no stage");
}

static void
test_start(void)
{
	struct msg_start s, d;
	struct proto_msg m, dm;
	const char *cause = NULL;
	uint8_t *buf, *cut;
	size_t len, i;
	int all;

	start_fill(&s);
	ok(start_trip(&s, &d, &cause) == 0 && start_equal(&s, &d),
	    "START round-trips with every field set");
	ok(d.plan_rejection_reason != NULL && *d.plan_rejection_reason == '\0',
	    "an empty optional string stays empty, not absent");
	msg_start_clear(&d);
	s.origin = xstrdup("ssh://git@example.com/team/app.git");
	ok(start_trip(&s, &d, &cause) == 0 && start_equal(&s, &d) &&
	        d.origin != NULL,
	    "START round-trips with the origin's URL");
	msg_start_clear(&d);
	free(s.origin);
	s.origin = NULL;
	s.lease_epoch = 41;
	ok(start_trip(&s, &d, &cause) == 0 && start_equal(&s, &d) &&
	        d.lease_epoch == 41,
	    "START round-trips with the lease epoch");
	msg_start_clear(&d);
	s.lease_epoch = (uint64_t)INT64_MAX + 1;
	ok(start_trip(&s, &d, &cause) == -1 && cause != NULL &&
	        strstr(cause, "lease_epoch") != NULL,
	    "a lease epoch past INT64_MAX is refused");
	s.lease_epoch = 0;

	/* Every optional string absent: sent as nil, decoded as NULL. */
	free(s.request);
	free(s.plan);
	free(s.plan_rejection_reason);
	free(s.feedback);
	free(s.review);
	free(s.verify_command);
	free(s.snapshot);
	free(s.state_id);
	free(s.llm_base_url);
	free(s.llm_model);
	free(s.llm_script);
	free(s.llm_trace);
	s.request = s.plan = s.plan_rejection_reason = s.feedback = NULL;
	s.review = s.verify_command = s.snapshot = s.state_id = NULL;
	s.llm_base_url = s.llm_model = NULL;
	s.llm_script = s.llm_trace = NULL;
	ok(start_trip(&s, &d, &cause) == 0 && start_equal(&s, &d) &&
	        d.request == NULL && d.llm_model == NULL,
	    "START round-trips with every optional string absent");
	msg_start_clear(&d);
	msg_start_clear(&s);

	/* Each number out of its bounds, and each refused by name. */
	static const struct {
		size_t off;
		uint64_t v;
		const char *cause;
	} badnum[] = {
	    {offsetof(struct msg_start, task), 0, "field task: out of range"},
	    {offsetof(struct msg_start, task), (uint64_t)INT64_MAX + 1,
	        "field task: out of range"},
	    {offsetof(struct msg_start, count), (uint64_t)UINT32_MAX + 1,
	        "field count: out of range"},
	    {offsetof(struct msg_start, round), 0, "field round: out of range"},
	    {offsetof(struct msg_start, workspace_clean), 2,
	        "field workspace_clean: not 0 or 1"},
	    {offsetof(struct msg_start, max_steps), 0,
	        "field max_steps: out of range"},
	    {offsetof(struct msg_start, max_steps), (uint64_t)UINT32_MAX + 1,
	        "field max_steps: out of range"},
	    {offsetof(struct msg_start, cmd_timeout_s), 0,
	        "field cmd_timeout_s: out of range"},
	    {offsetof(struct msg_start, snapshot_max_file_bytes), 0,
	        "field snapshot_max_file_bytes: out of range"},
	    {offsetof(struct msg_start, heartbeat_ms), 0,
	        "field heartbeat_ms: out of range"},
	    {offsetof(struct msg_start, log_level), LOG_LEVEL_DEBUG + 1,
	        "field log_level: not a log level"},
	    {offsetof(struct msg_start, llm_timeout_s), 0,
	        "field llm_timeout_s: out of range"},
	    {offsetof(struct msg_start, llm_max_retries),
	        (uint64_t)UINT32_MAX + 1,
	        "field llm_max_retries: out of range"},
	};
	for (i = 0; i < nitems(badnum); i++) {
		char line[160];

		start_fill(&s);
		memcpy((char *)&s + badnum[i].off, &badnum[i].v,
		    sizeof badnum[i].v);
		cause = NULL;
		snprintf(line, sizeof line, "START refused: %s (%llu)",
		    badnum[i].cause, (unsigned long long)badnum[i].v);
		ok(start_trip(&s, &d, &cause) == -1 && cause != NULL &&
		        strcmp(cause, badnum[i].cause) == 0,
		    line);
		msg_start_clear(&s);
	}

	/* A string that must be there, empty or absent. */
	start_fill(&s);
	free(s.repo);
	s.repo = xstrdup("");
	ok(start_trip(&s, &d, &cause) == -1 &&
	        strcmp(cause, "field repo: expected a string") == 0,
	    "START refused: an empty repo");
	free(s.repo);
	s.repo = NULL;
	ok(start_trip(&s, &d, &cause) == -1 &&
	        strcmp(cause, "field repo: expected a string") == 0,
	    "START refused: no repo");
	msg_start_clear(&s);

	/* The stage, and the version. */
	start_fill(&s);
	proto_start_set(&m, &s);
	msg_start_clear(&s);
	proto_set_str(&m, PF_STAGE, "deploying");
	ok(proto_start_get(&m, &d, &cause) == -1 &&
	        strcmp(cause, "field stage: unknown stage") == 0,
	    "START refused: an unknown stage");
	proto_set_str(&m, PF_STAGE, "planning");
	m.u[PF_VERSION] = PROTO_VERSION - 1;
	ok(proto_start_get(&m, &d, &cause) == -1 &&
	        strcmp(cause, "protocol version mismatch") == 0,
	    "START refused: another protocol version");
	m.u[PF_VERSION] = PROTO_VERSION;
	ok(proto_start_get(&m, &d, &cause) == 0 && d.stage == STAGE_PLANNING,
	    "... and taken once both are right");
	msg_start_clear(&d);
	m.type = PROTO_ACK;
	ok(proto_start_get(&m, &d, &cause) == -1, "an ACK is not a START");
	m.type = PROTO_START;

	/*
	 * The frame: every cut is refused, as is one field more or less
	 * (the array's count is the msgpack byte after the header: 0xdc,
	 * then a 16-bit count, as the array has more than 15 elements).
	 */
	ok(proto_encode(&m, &buf, &len, &cause) == 0, "a START encodes");
	proto_msg_clear(&m);
	ok(buf[PROTO_HDR_LEN] == 0xdc && buf[PROTO_HDR_LEN + 2] == 37,
	    "START is an array16 of 37 elements");
	all = 1;
	for (i = 1; i < len - PROTO_HDR_LEN; i++) {
		cause = NULL;
		if (proto_decode(buf + PROTO_HDR_LEN, i, &dm, &cause) == 0 ||
		    cause == NULL)
			all = 0;
	}
	ok(all, "every truncated START is refused");
	cut = xmalloc(len + 1);
	memcpy(cut, buf, len);
	cut[PROTO_HDR_LEN + 2] = 38;
	cut[len] = 0x00;
	bad(cut + PROTO_HDR_LEN, len + 1 - PROTO_HDR_LEN,
	    "wrong number of fields for the message type",
	    "a START with an extra field");
	/* One field less: drop the last (lease_epoch, 0: one byte). */
	memcpy(cut, buf, len);
	cut[PROTO_HDR_LEN + 2] = 36;
	bad(cut + PROTO_HDR_LEN, len - 1 - PROTO_HDR_LEN,
	    "wrong number of fields for the message type",
	    "a START missing a field");
	free(cut);
	free(buf);

	start_fill(&s);
	proto_start_set(&m, &s);
	msg_start_clear(&s);
	free(m.s[PF_REPO]);
	m.s[PF_REPO] = NULL;
	m.slen[PF_REPO] = 0;
	/* An encoder that sends nil for any missing string, as a hostile
	 * peer may: the catalog says repo is a string. */
	{
		uint8_t *b2;
		size_t l2;
		const uint8_t *p;

		ok(proto_encode(&m, &b2, &l2, &cause) == 0,
		    "a START without repo encodes (as an empty string)");
		p = memmem(b2, l2, "\xa5/repo", 6);
		ok(p == NULL, "... not as /repo");
		ok(proto_decode(b2 + PROTO_HDR_LEN, l2 - PROTO_HDR_LEN, &dm,
		       &cause) == 0 &&
		        proto_start_get(&dm, &d, &cause) == -1 &&
		        strcmp(cause, "field repo: expected a string") == 0,
		    "... which START refuses");
		proto_msg_clear(&dm);
		free(b2);
	}
	proto_msg_clear(&m);

	/* Oversized: the task's texts over PROTO_MAX_DATA are not sent. */
	start_fill(&s);
	free(s.request);
	s.request = xmalloc(PROTO_MAX_DATA + 1);
	memset(s.request, 'r', PROTO_MAX_DATA);
	s.request[PROTO_MAX_DATA] = '\0';
	proto_start_set(&m, &s);
	ok(proto_str_total(&m) > PROTO_MAX_DATA,
	    "str_total counts START's strings");
	cause = NULL;
	ok(proto_encode(&m, &buf, &len, &cause) == -1 && cause != NULL &&
	        strstr(cause, "PROTO_MAX_DATA") != NULL,
	    "encode refuses a START over PROTO_MAX_DATA");
	proto_msg_clear(&m);
	msg_start_clear(&s);
}

/* nil is a string's absence only where the catalog allows it. */
static void
test_nil(void)
{
	/* [LOG, level 1, nil]: text is a string, not optional. */
	static const uint8_t lognil[] = {0x93, PROTO_LOG, 0x01, 0xc0};

	bad(lognil, sizeof lognil, "field text: expected a string",
	    "nil for a string that is not optional");
}

int
main(void)
{
	test_catalog();
	test_roundtrip();
	test_strings();
	test_limits();
	test_malformed();
	test_truncated();
	test_fd();
	test_stage_names();
	test_start();
	test_nil();
	return tap_done();
}
