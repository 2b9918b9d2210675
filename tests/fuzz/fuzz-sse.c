/*
 * libFuzzer target for sse.c and the reply assembly of both providers.
 * The first byte picks the provider and where the input is cut in two;
 * the rest is a reply body.  Any input must give a reply or a failure,
 * never a crash or a leak; the same body fed whole and in two pieces must
 * give the same result; and a reply must be the neutral form.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "llm.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int
fuzz_event(void *arg, const char *event, const char *data, size_t len)
{
	size_t *n = arg;

	if (event == NULL || data == NULL || data[len] != '\0')
		abort();
	*n += len;
	return 0;
}

/* The reply (compact JSON) or the failure, as text. */
static char *
fuzz_assemble(int anthropic, const char *buf, size_t len, size_t cut)
{
	struct llm_asm a;
	json_t *reply, *calls, *c;
	char *cause, *s;
	size_t i;

	(anthropic ? llm_anthropic_asm : llm_openai_asm)(&a, 0);
	if (llm_asm_feed(&a, buf, cut) == 0)
		(void)llm_asm_feed(&a, buf + cut, len - cut);
	if (llm_asm_finish(&a, &reply, &cause) == -1) {
		llm_asm_clear(&a);
		s = xasprintf("ERR %s", cause);
		free(cause);
		return s;
	}
	llm_asm_clear(&a);
	if (!json_is_string(json_object_get(reply, "text")) ||
	    !json_is_string(json_object_get(reply, "stop")) ||
	    !json_is_array(calls = json_object_get(reply, "tool_calls")))
		abort();
	json_array_foreach(calls, i, c) {
		if (!json_is_string(json_object_get(c, "id")) ||
		    !json_is_string(json_object_get(c, "name")) ||
		    !json_is_string(json_object_get(c, "arguments")))
			abort();
	}
	s = json_dumps(reply, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(reply);
	return s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data + 1;
	size_t len, cut, n1 = 0, n2 = 0;
	struct sse p;
	char *whole, *split;
	int anthropic;

	if (size < 1)
		return 0;
	anthropic = data[0] & 1;
	len = size - 1;
	cut = len ? (data[0] >> 1) % (len + 1) : 0;

	sse_init(&p, fuzz_event, &n1);
	(void)sse_feed(&p, buf, len);
	sse_clear(&p);
	sse_init(&p, fuzz_event, &n2);
	if (sse_feed(&p, buf, cut) == 0)
		(void)sse_feed(&p, buf + cut, len - cut);
	sse_clear(&p);
	if (n1 != n2)
		abort();

	whole = fuzz_assemble(anthropic, buf, len, len);
	split = fuzz_assemble(anthropic, buf, len, cut);
	if (strcmp(whole, split) != 0)
		abort();
	free(whole);
	free(split);
	return 0;
}
