/*
 * libFuzzer target for proto_decode: any input must be refused cleanly or
 * decode to a message that re-encodes, decodes to the same message, and
 * re-encodes to the same bytes.  A START that decodes is also checked by
 * proto_start_get, and one that passes must survive proto_start_set
 * unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Whether a and b carry the same type and catalog fields. */
static int
fuzz_equal(const struct proto_msg *a, const struct proto_msg *b)
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
		/* nil, where it may be: absent on both sides. */
		if (proto_field_type[f] == PROTO_FT_OPTSTR &&
		    (a->s[f] == NULL || b->s[f] == NULL)) {
			if (a->s[f] != b->s[f])
				return 0;
			continue;
		}
		if (a->s[f] == NULL || b->s[f] == NULL ||
		    a->slen[f] != b->slen[f] || a->s[f][a->slen[f]] != '\0' ||
		    memcmp(a->s[f], b->s[f], a->slen[f]) != 0 ||
		    memchr(a->s[f], '\0', a->slen[f]) != NULL)
			return 0;
	}
	return 1;
}

/*
 * A decoded START: refused by proto_start_get with a cause and nothing
 * kept, or taken, and then made into the same message again.
 */
static void
fuzz_start(const struct proto_msg *m)
{
	struct msg_start s;
	struct proto_msg again;
	const char *cause = NULL;

	if (proto_start_get(m, &s, &cause) != 0) {
		/* Refused before anything was copied. */
		if (cause == NULL || s.task != 0 || s.request != NULL ||
		    s.repo != NULL || s.llm_model != NULL)
			abort();
		return;
	}
	proto_start_set(&again, &s);
	if (!fuzz_equal(m, &again))
		abort();
	proto_msg_clear(&again);
	msg_start_clear(&s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_msg m, m2, m3;
	const char *cause;
	uint8_t *buf, *buf2;
	size_t len, len2;
	uint32_t flen;

	if (proto_decode(data, size, &m, &cause) != 0) {
		if (cause == NULL || m.type != PROTO_NONE)
			abort();
		return 0;
	}
	if (m.type <= PROTO_NONE || m.type >= PROTO_MAX)
		abort();

	/* A decoded message is never larger once re-encoded canonically. */
	if (proto_encode(&m, &buf, &len, &cause) != 0)
		abort();
	if (len - PROTO_HDR_LEN > size)
		abort();
	if (proto_frame_len(buf, &flen, &cause) != 0 ||
	    flen != len - PROTO_HDR_LEN)
		abort();
	if (proto_decode(buf + PROTO_HDR_LEN, flen, &m2, &cause) != 0)
		abort();
	if (!fuzz_equal(&m, &m2))
		abort();

	if (proto_encode(&m2, &buf2, &len2, &cause) != 0)
		abort();
	if (len2 != len || memcmp(buf, buf2, len) != 0)
		abort();
	if (proto_decode(
	        buf2 + PROTO_HDR_LEN, len2 - PROTO_HDR_LEN, &m3, &cause) != 0 ||
	    !fuzz_equal(&m, &m3))
		abort();

	if (m.type == PROTO_START)
		fuzz_start(&m);

	free(buf);
	free(buf2);
	proto_msg_clear(&m);
	proto_msg_clear(&m2);
	proto_msg_clear(&m3);
	return 0;
}
