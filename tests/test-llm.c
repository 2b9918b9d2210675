/*
 * Unit tests for the providers without a network: recorded reply bodies of
 * both APIs, fed to the assembly at every split point, must give the same
 * neutral reply; cut streams, error events, bodies that are not the API's,
 * the token limit; the requests built from neutral messages; the scrub.
 * And, with a model server on the loopback forked by the test, what the
 * model code calls back (struct llm_io): heartbeats while it waits, the
 * streamed text and the retries in the log, the backoff's sleep.
 */
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "proto.h"
#include "llm.h"
#include "tap.h"

static size_t textlen;

static void
count_text(void *arg, const char *s, size_t n)
{
	(void)arg;
	(void)s;
	textlen += n;
}

/*
 * Assemble body cut at the points cut1 and cut2: the reply as compact JSON
 * text, or "ERR: cause".
 */
static char *
assemble(void (*init)(struct llm_asm *, int), const char *body, size_t len,
    size_t cut1, size_t cut2)
{
	struct llm_asm a;
	size_t cuts[3] = {cut1, cut2, len}, at = 0;
	json_t *reply;
	char *cause, *s;
	int rc = 0;

	init(&a, 3);
	a.text_fn = count_text;
	textlen = 0;
	for (int i = 0; i < 3 && rc == 0; i++) {
		size_t end = cuts[i] < at ? at : cuts[i];
		rc = llm_asm_feed(&a, body + at, end - at);
		at = end;
	}
	if (llm_asm_finish(&a, &reply, &cause) == -1) {
		s = xasprintf("ERR: %s", cause);
		free(cause);
	} else {
		s = json_dumps(reply, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(reply);
	}
	llm_asm_clear(&a);
	return s;
}

static char *
assemble1(void (*init)(struct llm_asm *, int), const char *body)
{
	return assemble(init, body, strlen(body), 0, 0);
}

/* Every split point (and a grid of pairs) gives want. */
static void
all_splits(void (*init)(struct llm_asm *, int), const char *body,
    const char *want, const char *what)
{
	size_t len = strlen(body);
	int bad = 0;
	char *s, *d;

	for (size_t i = 0; i <= len; i++) {
		s = assemble(init, body, len, i, i);
		if (strcmp(s, want) != 0) {
			if (!bad)
				printf("# split at %zu: %s\n", i, s);
			bad++;
		}
		free(s);
	}
	for (size_t i = 0; i <= len; i += 7)
		for (size_t j = i; j <= len; j += 11) {
			s = assemble(init, body, len, i, j);
			if (strcmp(s, want) != 0)
				bad++;
			free(s);
		}
	d = xasprintf("%s: every split point gives the same reply", what);
	is_int(bad, 0, d);
	free(d);
}

static const char openai_stream[] =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":"
    "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
    "\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Let me "
    "\"},\"finish_reason\":null}]}\n\n"
    ": keep-alive\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"look.\\n"
    "Caf\\u00e9\"},\"finish_reason\":null}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":"
    "0,\"id\":\"call_A\",\"type\":\"function\",\"function\":{\"name\":"
    "\"read_file\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":"
    "0,\"function\":{\"arguments\":\"{\\\"pa\"}}]},\"finish_reason\":null}]}"
    "\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":"
    "0,\"function\":{\"arguments\":\"th\\\": \\\"README.md\\\"}\"}}]},"
    "\"finish_reason\":null}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":"
    "1,\"id\":\"call_B\",\"type\":\"function\",\"function\":{\"name\":"
    "\"list_files\",\"arguments\":\"{\\\"path\\\"\"}}]},"
    "\"finish_reason\":null}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":"
    "1,\"function\":{\"arguments\":\":\\\"\\\"}\"}}]},"
    "\"finish_reason\":null}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
    "\"tool_calls\"}]}\n\n"
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":120,"
    "\"completion_tokens\":34,\"total_tokens\":154}}\n\n"
    "data: [DONE]\n\n";

static const char openai_want[] =
    "{\"stop\":\"tool_calls\",\"text\":\"Let me look.\\nCaf\xc3\xa9\","
    "\"tool_calls\":[{\"arguments\":\"{\\\"path\\\": \\\"README.md\\\"}\","
    "\"id\":\"call_A\",\"name\":\"read_file\"},{\"arguments\":"
    "\"{\\\"path\\\":\\\"\\\"}\",\"id\":\"call_B\",\"name\":\"list_files\"}],"
    "\"usage\":{\"in\":120,\"out\":34}}";

static void
test_openai_stream(void)
{
	char *s, *b;
	size_t cut;

	s = assemble1(llm_openai_asm, openai_stream);
	is_str(s, openai_want, "openai: a recorded stream assembles");
	is_int(textlen, strlen("Let me look.\nCaf\xc3\xa9"),
	    "openai: the text is forwarded as it comes");
	free(s);
	all_splits(llm_openai_asm, openai_stream, openai_want, "openai");

	/* CRLF line ends. */
	{
		size_t n = 0;
		b = xmalloc(2 * sizeof openai_stream);
		for (const char *p = openai_stream; *p; p++) {
			if (*p == '\n')
				b[n++] = '\r';
			b[n++] = *p;
		}
		b[n] = '\0';
		s = assemble1(llm_openai_asm, b);
		is_str(s, openai_want, "openai: CRLF gives the same reply");
		free(s);
		free(b);
	}

	/* Cut anywhere before [DONE]: never a reply. */
	cut = strstr(openai_stream, "data: [DONE]") - openai_stream;
	{
		int bad = 0;
		for (size_t i = 0; i < cut; i++) {
			b = xstrndup(openai_stream, i);
			s = assemble1(llm_openai_asm, b);
			if (strncmp(s, "ERR: ", 5) != 0)
				bad++;
			free(s);
			free(b);
		}
		is_int(bad, 0,
		    "openai: a stream cut anywhere before [DONE] "
		    "fails");
	}
	b = xstrndup(
	    openai_stream, strstr(openai_stream, "\\\"README") - openai_stream);
	s = assemble1(llm_openai_asm, b);
	ok(strstr(s, "ERR: the stream ended before [DONE], in the middle of "
	             "a tool call") == s,
	    "openai: a cut tool call is a failed attempt");
	printf("# %s\n", s);
	free(s);
	free(b);
}

static void
test_openai_faults(void)
{
	char *s;

	s = assemble1(llm_openai_asm,
	    "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"
	    "event: error\ndata: {\"error\":{\"message\":\"overloaded\"}}\n\n"
	    "data: [DONE]\n\n");
	is_str(s, "ERR: the API reported an error in the stream: overloaded",
	    "openai: an error event after the 200 fails the attempt");
	free(s);
	s = assemble1(llm_openai_asm,
	    "data: {\"error\":{\"message\":\"server busy\"}}\n\n"
	    "data: [DONE]\n\n");
	is_str(s, "ERR: the API reported an error in the stream: server busy",
	    "openai: an error chunk fails the attempt");
	free(s);
	s = assemble1(llm_openai_asm, "<html><body>Bad gateway</body></html>");
	ok(strncmp(s, "ERR: ", 5) == 0, "openai: an HTML body fails");
	free(s);
	s = assemble1(llm_openai_asm, "   \n");
	ok(strncmp(s, "ERR: ", 5) == 0, "openai: an empty body fails");
	free(s);
	s = assemble1(llm_openai_asm, "{\"cut\": ");
	ok(strstr(s, "ERR: the API answered 200 with a body that is not "
	             "JSON") == s,
	    "openai: cut JSON fails");
	free(s);
	s = assemble1(llm_openai_asm, "{\"object\":\"list\",\"data\":[]}");
	ok(strstr(s, "not a chat completion") != NULL,
	    "openai: JSON that is not a completion fails");
	free(s);
	s = assemble1(llm_openai_asm, "data: not json\n\ndata: [DONE]\n\n");
	is_str(s, "ERR: a stream event is not JSON",
	    "openai: an event that is not JSON fails");
	free(s);

	/* The token limit cut a tool call: text kept, calls dropped. */
	s = assemble1(llm_openai_asm,
	    "data: {\"choices\":[{\"delta\":{\"content\":\"Writing.\"}}]}\n\n"
	    "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,"
	    "\"id\":\"c\",\"function\":{\"name\":\"write_file\",\"arguments\":"
	    "\"{\\\"path\\\":\\\"a\\\",\\\"content\\\":\\\"xx\"}}]}}]}\n\n"
	    "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}"
	    "\n\n"
	    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,"
	    "\"completion_tokens\":4096}}\n\n"
	    "data: [DONE]\n\n");
	ok(strstr(s, "\"tool_calls\":[]") != NULL &&
	        strstr(s, "\"stop\":\"length\"") != NULL &&
	        strstr(s, "\"text\":\"Writing.\\n[This reply reached the "
	                  "output token limit") != NULL &&
	        strstr(s, "\"out\":4096") != NULL,
	    "openai: finish_reason length drops the cut tool call, keeps "
	    "the text");
	printf("# %s\n", s);
	free(s);

	/* Arguments that are not JSON stay as they are, for the tools to
	 * refuse; a missing id and index are made up. */
	s = assemble1(llm_openai_asm,
	    "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{"
	    "\"function\":{\"name\":\"read_file\",\"arguments\":"
	    "\"{path: oops\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n"
	    "data: [DONE]\n\n");
	is_str(s,
	    "{\"stop\":\"tool_calls\",\"text\":\"\",\"tool_calls\":[{"
	    "\"arguments\":\"{path: oops\",\"id\":\"call_3_0\",\"name\":"
	    "\"read_file\"}],\"usage\":{\"in\":0,\"out\":0}}",
	    "openai: invalid JSON arguments are kept raw");
	free(s);

	/* A server that does not stream. */
	s = assemble1(llm_openai_asm,
	    "{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[{"
	    "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,"
	    "\"tool_calls\":[{\"id\":\"call_Z\",\"type\":\"function\","
	    "\"function\":{\"name\":\"finish\",\"arguments\":"
	    "\"{\\\"summary\\\":\\\"ok\\\"}\"}}]},\"finish_reason\":"
	    "\"tool_calls\"}],\"usage\":{\"prompt_tokens\":9,"
	    "\"completion_tokens\":8}}");
	is_str(s,
	    "{\"stop\":\"tool_calls\",\"text\":\"\",\"tool_calls\":[{"
	    "\"arguments\":\"{\\\"summary\\\":\\\"ok\\\"}\",\"id\":\"call_Z\","
	    "\"name\":\"finish\"}],\"usage\":{\"in\":9,\"out\":8}}",
	    "openai: a whole JSON completion is taken");
	free(s);
	s = assemble1(llm_openai_asm,
	    "data: {\"choices\":[{\"delta\":{\"content\":\"\\xff\"}}]}\n\n");
	ok(strncmp(s, "ERR: ", 5) == 0, "openai: a bad escape fails");
	free(s);
}

static const char anthropic_stream[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\","
    "\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":"
    "\"claude-sonnet-4-5\",\"stop_reason\":null,\"usage\":{\"input_tokens\":"
    "100,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n"
    "event: ping\ndata: {\"type\": \"ping\"}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,"
    "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{"
    "\"type\":\"text_delta\",\"text\":\"Reading \"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{"
    "\"type\":\"text_delta\",\"text\":\"it.\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":1,"
    "\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01\","
    "\"name\":\"read_file\",\"input\":{}}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{"
    "\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{"
    "\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"path\\\": \\\"RE"
    "\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{"
    "\"type\":\"input_json_delta\",\"partial_json\":\"ADME.md\\\"}\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":2,"
    "\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_02\","
    "\"name\":\"list_files\",\"input\":{}}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":2}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
    "\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":"
    "42}}\n\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n\n";

static const char anthropic_want[] =
    "{\"stop\":\"tool_calls\",\"text\":\"Reading it.\",\"tool_calls\":[{"
    "\"arguments\":\"{\\\"path\\\": \\\"README.md\\\"}\",\"id\":"
    "\"toolu_01\",\"name\":\"read_file\"},{\"arguments\":\"{}\",\"id\":"
    "\"toolu_02\",\"name\":\"list_files\"}],\"usage\":{\"in\":105,"
    "\"out\":42}}";

static void
test_anthropic(void)
{
	char *s, *b;
	size_t cut;
	int bad = 0;

	s = assemble1(llm_anthropic_asm, anthropic_stream);
	is_str(s, anthropic_want, "anthropic: a recorded stream assembles");
	is_int(textlen, 11, "anthropic: the text is forwarded as it comes");
	free(s);
	all_splits(
	    llm_anthropic_asm, anthropic_stream, anthropic_want, "anthropic");
	cut =
	    strstr(anthropic_stream, "event: message_stop") - anthropic_stream;
	for (size_t i = 0; i < cut; i++) {
		b = xstrndup(anthropic_stream, i);
		s = assemble1(llm_anthropic_asm, b);
		if (strncmp(s, "ERR: ", 5) != 0)
			bad++;
		free(s);
		free(b);
	}
	is_int(bad, 0, "anthropic: a stream cut before message_stop fails");

	s = assemble1(llm_anthropic_asm,
	    "event: message_start\ndata: {\"type\":\"message_start\","
	    "\"message\":{\"usage\":{\"input_tokens\":3}}}\n\n"
	    "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
	    "\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
	is_str(s,
	    "ERR: the API reported an error in the stream "
	    "(overloaded_error): Overloaded",
	    "anthropic: an error event fails the attempt");
	free(s);

	/* message_stop with a tool block never stopped. */
	s = assemble1(llm_anthropic_asm,
	    "data: {\"type\":\"content_block_start\",\"index\":0,"
	    "\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":"
	    "\"finish\",\"input\":{}}}\n\n"
	    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{"
	    "\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"sum\"}}\n\n"
	    "data: {\"type\":\"message_stop\"}\n\n");
	ok(strstr(s, "ERR: the stream ended in the middle of a tool call") == s,
	    "anthropic: an unfinished tool block fails");
	free(s);

	s = assemble1(llm_anthropic_asm,
	    "data: {\"type\":\"content_block_start\",\"index\":0,"
	    "\"content_block\":{\"type\":\"text\",\"text\":\"Long\"}}\n\n"
	    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
	    "data: {\"type\":\"content_block_start\",\"index\":1,"
	    "\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":"
	    "\"finish\",\"input\":{}}}\n\n"
	    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{"
	    "\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"sum\"}}\n\n"
	    "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
	    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
	    "\"max_tokens\"},\"usage\":{\"output_tokens\":8192}}\n\n"
	    "data: {\"type\":\"message_stop\"}\n\n");
	ok(strstr(s, "\"tool_calls\":[]") != NULL &&
	        strstr(s, "\"stop\":\"length\"") != NULL &&
	        strstr(s, "\"text\":\"Long\\n[This reply") != NULL,
	    "anthropic: max_tokens drops the cut tool call");
	free(s);

	s = assemble1(llm_anthropic_asm,
	    "{\"id\":\"msg\",\"type\":\"message\",\"role\":\"assistant\","
	    "\"content\":[{\"type\":\"text\",\"text\":\"Done.\"},{\"type\":"
	    "\"tool_use\",\"id\":\"toolu_9\",\"name\":\"finish\",\"input\":{"
	    "\"summary\":\"ok\"}}],\"stop_reason\":\"tool_use\",\"usage\":{"
	    "\"input_tokens\":7,\"output_tokens\":6}}");
	is_str(s,
	    "{\"stop\":\"tool_calls\",\"text\":\"Done.\",\"tool_calls\":[{"
	    "\"arguments\":\"{\\\"summary\\\":\\\"ok\\\"}\",\"id\":\"toolu_9\","
	    "\"name\":\"finish\"}],\"usage\":{\"in\":7,\"out\":6}}",
	    "anthropic: a whole JSON message is taken");
	free(s);
	s = assemble1(llm_anthropic_asm,
	    "{\"type\":\"error\",\"error\":{\"type\":\"api_error\","
	    "\"message\":\"boom\"}}");
	ok(strncmp(s, "ERR: ", 5) == 0, "anthropic: a JSON error fails");
	free(s);
	s = assemble1(llm_anthropic_asm,
	    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{"
	    "\"type\":\"text_delta\",\"text\":\"x\"}}\n\n");
	ok(strstr(s, "ERR: the stream ended before message_stop") == s,
	    "anthropic: no message_stop fails");
	free(s);
}

static json_t *
neutral_messages(void)
{
	return json_loads(
	    "[{\"role\":\"system\",\"content\":\"You plan.\"},"
	    "{\"role\":\"user\",\"content\":\"Add a file.\"},"
	    "{\"role\":\"assistant\",\"content\":\"Looking.\",\"tool_calls\":["
	    "{\"id\":\"call_0_0\",\"name\":\"list_files\",\"arguments\":"
	    "\"{\\\"path\\\":\\\"\\\"}\"},"
	    "{\"id\":\"call.0/1\",\"name\":\"read_file\",\"arguments\":"
	    "\"{bad json\"}]},"
	    "{\"role\":\"tool\",\"tool_call_id\":\"call_0_0\",\"name\":"
	    "\"list_files\",\"content\":\"README.md\"},"
	    "{\"role\":\"tool\",\"tool_call_id\":\"call.0/1\",\"name\":"
	    "\"read_file\",\"content\":\"invalid JSON\"},"
	    "{\"role\":\"assistant\",\"content\":\"\"},"
	    "{\"role\":\"user\",\"content\":\"Use the tools.\"}]",
	    0, NULL);
}

static json_t *
neutral_tools(void)
{
	return json_loads("[{\"name\":\"list_files\",\"description\":\"List."
	                  "\",\"parameters\":{\"type\":\"object\","
	                  "\"properties\":{\"path\":{\"type\":\"string\"}}}}]",
	    0, NULL);
}

static void
test_requests(void)
{
	json_t *m = neutral_messages(), *t = neutral_tools(), *r;
	char *s;

	r = llm_openai_request("gpt-4o-mini", m, t);
	s = json_dumps(r, JSON_COMPACT);
	is_str(s,
	    "{\"model\":\"gpt-4o-mini\",\"messages\":["
	    "{\"role\":\"system\",\"content\":\"You plan.\"},"
	    "{\"role\":\"user\",\"content\":\"Add a file.\"},"
	    "{\"role\":\"assistant\",\"content\":\"Looking.\",\"tool_calls\":["
	    "{\"id\":\"call_0_0\",\"type\":\"function\",\"function\":{\"name\":"
	    "\"list_files\",\"arguments\":\"{\\\"path\\\":\\\"\\\"}\"}},"
	    "{\"id\":\"call.0/1\",\"type\":\"function\",\"function\":{\"name\":"
	    "\"read_file\",\"arguments\":\"{bad json\"}}]},"
	    "{\"role\":\"tool\",\"tool_call_id\":\"call_0_0\",\"content\":"
	    "\"README.md\"},"
	    "{\"role\":\"tool\",\"tool_call_id\":\"call.0/1\",\"content\":"
	    "\"invalid JSON\"},"
	    "{\"role\":\"assistant\",\"content\":\"\"},"
	    "{\"role\":\"user\",\"content\":\"Use the tools.\"}],"
	    "\"stream\":true,\"stream_options\":{\"include_usage\":true},"
	    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
	    "\"list_files\",\"description\":\"List.\",\"parameters\":{\"type\":"
	    "\"object\",\"properties\":{\"path\":{\"type\":\"string\"}}}}}]}",
	    "openai: the request from neutral messages");
	free(s);
	json_decref(r);

	r = llm_anthropic_request("claude-sonnet-4-5", m, t);
	s = json_dumps(r, JSON_COMPACT);
	is_str(s,
	    "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":8192,\"messages\":"
	    "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
	    "\"Add a file.\"}]},"
	    "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":"
	    "\"Looking.\"},{\"type\":\"tool_use\",\"id\":\"call_0_0\",\"name\":"
	    "\"list_files\",\"input\":{\"path\":\"\"}},{\"type\":\"tool_use\","
	    "\"id\":\"call_0_1\",\"name\":\"read_file\",\"input\":{}}]},"
	    "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
	    "\"tool_use_id\":\"call_0_0\",\"content\":\"README.md\"},{\"type\":"
	    "\"tool_result\",\"tool_use_id\":\"call_0_1\",\"content\":"
	    "\"invalid JSON\"},{\"type\":\"text\",\"text\":\"Use the "
	    "tools.\"}]}"
	    "],\"stream\":true,\"system\":\"You plan.\",\"tools\":[{\"name\":"
	    "\"list_files\",\"description\":\"List.\",\"input_schema\":{"
	    "\"type\":\"object\",\"properties\":{\"path\":{\"type\":"
	    "\"string\"}}}}]}",
	    "anthropic: the request from neutral messages");
	free(s);
	json_decref(r);
	json_decref(m);
	json_decref(t);
}

/*
 * A message that cannot go into the request (text that is not UTF-8, no
 * role) fails the whole request: it is never left out, which once sent a
 * reviewer "messages": [].
 */
static void
test_requests_unbuildable(void)
{
	json_t *m = neutral_messages(), *bad, *reply = NULL;
	struct llm_turn t;
	char *cause = NULL;
	int permanent = 0;

	/* Only a string made without the check can hold such bytes. */
	bad = json_pack("{s:s,s:o}", "role", "user", "content",
	    json_stringn_nocheck("caf\xe9", 4));
	json_array_append_new(m, bad);
	ok(llm_openai_request("m", m, NULL) == NULL,
	    "openai: a message that is not UTF-8 fails the request");
	ok(llm_anthropic_request("m", m, NULL) == NULL,
	    "anthropic: a message that is not UTF-8 fails the request");
	json_decref(m);

	m = neutral_messages();
	json_array_append_new(m, json_pack("{s:s}", "content", "no role"));
	ok(llm_openai_request("m", m, NULL) == NULL,
	    "openai: a message without a role fails the request");
	ok(llm_anthropic_request("m", m, NULL) == NULL,
	    "anthropic: a message without a role fails the request");
	json_decref(m);

	memset(&t, 0, sizeof t);
	t.stage = "reviewing";
	t.llm = json_pack("{s:s}", "provider", "scripted");
	ok(llm_chat(&t, NULL, NULL, &reply, &cause, &permanent) == -1 &&
	        permanent,
	    "no conversation is a permanent error, not an empty request");
	free(cause);
	cause = NULL;
	m = json_array();
	ok(llm_chat(&t, m, NULL, &reply, &cause, &permanent) == -1 &&
	        permanent && reply == NULL,
	    "an empty conversation is a permanent error");
	free(cause);
	json_decref(m);
	json_decref(t.llm);
}

/* The official bases need a key: refused before any request is made. */
static void
test_no_key(void)
{
	struct llm_turn t;
	json_t *reply = NULL;
	char *cause = NULL;
	int permanent = 0;

	memset(&t, 0, sizeof t);
	t.stage = "planning";
	t.llm = json_pack("{s:s}", "api_key", "");
	ok(llm_openai_chat(&t, NULL, NULL, &reply, &cause, &permanent) == -1 &&
	        permanent && reply == NULL,
	    "openai: no key for api.openai.com is a permanent failure");
	ok(cause != NULL && strstr(cause, "needs an API key") != NULL &&
	        strstr(cause, "ORCH_LLM_API_KEY") != NULL,
	    "  saying which variable to set");
	free(cause);
	cause = NULL;
	permanent = 0;
	ok(llm_anthropic_chat(&t, NULL, NULL, &reply, &cause, &permanent) ==
	            -1 &&
	        permanent && reply == NULL,
	    "anthropic: no key for api.anthropic.com is a permanent failure");
	ok(cause != NULL && strstr(cause, "needs an API key") != NULL &&
	        strstr(cause, "ORCH_LLM_API_KEY") != NULL,
	    "  saying which variable to set");
	free(cause);
	json_decref(t.llm);
}

static void
test_scrub(void)
{
	char *s;

	s = llm_scrub("key sk-123 and sk-123sk-123!", "sk-123");
	is_str(s, "key [redacted] and [redacted][redacted]!",
	    "the key is scrubbed everywhere");
	free(s);
	s = llm_scrub("nothing", NULL);
	is_str(s, "nothing", "no key, no change");
	free(s);
	s = llm_scrub("nothing", "");
	is_str(s, "nothing", "an empty key changes nothing");
	free(s);
}

/*
 * A reply's text of n bytes in events of 1 MiB, streamed: the reply, or
 * "ERR: cause" with *permanent saying whether it is worth asking again.
 */
static char *
big_reply(size_t n, int *permanent)
{
	struct llm_asm a;
	size_t chunk = 1024 * 1024, at = 0;
	char *ev, *s, *cause;
	json_t *reply;
	int rc = 0;

	llm_openai_asm(&a, 0);
	ev = xmalloc(chunk + 128);
	while (rc == 0 && at < n) {
		size_t k = n - at < chunk ? n - at : chunk;
		int h = snprintf(ev, 128,
		    "data: {\"choices\":[{\"index\":0,\"delta\":{"
		    "\"content\":\"");
		memset(ev + h, 'x', k);
		memcpy(ev + h + k, "\"}}]}\n\n", 7);
		rc = llm_asm_feed(&a, ev, (size_t)h + k + 7);
		at += k;
	}
	free(ev);
	if (rc == 0) {
		static const char end[] =
		    "data: {\"choices\":[{\"index\":0,\"delta\":{},"
		    "\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
		llm_asm_feed(&a, end, sizeof end - 1);
	}
	*permanent = a.permanent;
	if (llm_asm_finish(&a, &reply, &cause) == -1) {
		s = xasprintf("ERR: %s", cause);
		free(cause);
	} else {
		s = xasprintf("%zu",
		    strlen(json_string_value(json_object_get(reply, "text"))));
		json_decref(reply);
	}
	*permanent |= a.permanent;
	llm_asm_clear(&a);
	return s;
}

/*
 * The largest reply is what a journal entry holds (PROTO_MAX_DATA): one
 * larger could not be journaled, and was once taken up to 8 MiB, to crash
 * the worker on each try.  Over it, the error is permanent: a reply as
 * large comes again, and is paid for again.
 */
static void
test_reply_limit(void)
{
	char *s, *want;
	int permanent;

	/* The limit counts the buffer's NUL. */
	s = big_reply(PROTO_MAX_DATA - 1, &permanent);
	want = xasprintf("%u", PROTO_MAX_DATA - 1);
	is_str(s, want, "a reply just under PROTO_MAX_DATA bytes is taken");
	free(want);
	free(s);
	s = big_reply(5 * 1024 * 1024, &permanent);
	ok(strstr(s, "ERR: the reply's text exceeds") == s,
	    "a reply of 5 MiB (under the old 8 MiB) is refused");
	ok(permanent, "... as a permanent error, not asked again");
	free(s);
}

/*
 * The callbacks, recorded: heartbeats (and how many had come when the
 * first line of model text was logged), sleeps, and the log as
 * "KIND:text\n" lines.
 */
struct io_rec {
	unsigned beats, beats_at_first_text;
	unsigned sleeps, slept_ms;
	char log[4096];
};

static void
rec_heartbeat(void *arg)
{
	struct io_rec *r = arg;

	r->beats++;
}

static void
rec_sleep(void *arg, unsigned ms)
{
	struct io_rec *r = arg;

	r->sleeps++;
	r->slept_ms += ms;
}

static void
rec_log(void *arg, int kind, const char *text)
{
	struct io_rec *r = arg;
	size_t n = strlen(r->log);

	if (kind == PROTO_LOG_MODEL && strstr(r->log, "MODEL:") == NULL)
		r->beats_at_first_text = r->beats;
	snprintf(r->log + n, sizeof r->log - n, "%s:%s\n",
	    kind == PROTO_LOG_MODEL  ? "MODEL"
	    : kind == PROTO_LOG_INFO ? "INFO"
	                             : "OTHER",
	    text);
}

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) == -1)
		;
}

/*
 * A model server on the loopback, in a child: it answers the connections
 * it accepts, in order, with resp[i] (raw HTTP, Connection: close), sent
 * in the pieces between "|" with pause_ms between them, then exits.
 * Returns its pid; *port is where it listens.
 */
static pid_t
fake_server(const char *const *resp, unsigned pause_ms, int *port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	pid_t pid;
	int s;

	if ((s = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		fatal("socket");
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s, (struct sockaddr *)&sin, sizeof sin) == -1 ||
	    listen(s, 4) == -1 ||
	    getsockname(s, (struct sockaddr *)&sin, &len) == -1)
		fatal("fake_server");
	*port = ntohs(sin.sin_port);
	if ((pid = fork()) == -1)
		fatal("fork");
	if (pid != 0) {
		close(s);
		return pid;
	}
	for (; *resp != NULL; resp++) {
		char req[65536], *hend, *cl;
		size_t got = 0, want = 0;
		ssize_t r;
		int c;

		if ((c = accept(s, NULL, NULL)) == -1)
			_exit(1);
		/* The whole request (headers and Content-Length bytes). */
		for (;;) {
			if ((r = read(c, req + got, sizeof req - 1 - got)) <= 0)
				_exit(1);
			got += (size_t)r;
			req[got] = '\0';
			if ((hend = strstr(req, "\r\n\r\n")) == NULL)
				continue;
			cl = strcasestr(req, "\r\nContent-Length:");
			want = (size_t)(hend + 4 - req) +
			       (cl ? strtoul(cl + 17, NULL, 10) : 0);
			if (got >= want || got == sizeof req - 1)
				break;
		}
		for (const char *p = *resp; *p != '\0';) {
			size_t n = strcspn(p, "|");

			if (write_all(c, p, n) == -1)
				_exit(1);
			p += n;
			if (*p == '|') {
				p++;
				sleep_ms(pause_ms);
			}
		}
		close(c);
	}
	_exit(0);
}

/*
 * The model code calls back, it never calls up: the heartbeat while the
 * reply is slow to come, the text in the log as it streams (a line at a
 * time), and a retry's reason in the log and its wait through sleep.
 */
static void
test_io_http(void)
{
	static const char *const resp[] = {
	    "HTTP/1.1 503 Service Unavailable\r\nretry-after-ms: 7\r\n"
	    "Content-Length: 4\r\nConnection: close\r\n\r\nbusy",
	    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
	    "Connection: close\r\n\r\n"
	    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":"
	    "\"Hello\\nwor\"}}]}\n\n|"
	    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":"
	    "\"ld\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
	    NULL};
	struct io_rec rec;
	struct llm_turn t;
	json_t *m = neutral_messages(), *reply = NULL;
	char *cause = NULL, *url;
	int permanent = 0, port, status;
	pid_t pid;

	setenv("no_proxy", "*", 1); /* the loopback, whatever the host says */
	pid = fake_server(resp, 1500, &port);
	url = xasprintf("http://127.0.0.1:%d", port);
	memset(&rec, 0, sizeof rec);
	memset(&t, 0, sizeof t);
	t.task = 7;
	t.stage = "planning";
	t.llm = json_pack("{s:s,s:s,s:s,s:i,s:i}", "base_url", url, "model",
	    "m", "api_key", "sk-test", "timeout_s", 30, "max_retries", 1);
	t.io.heartbeat = rec_heartbeat;
	t.io.sleep = rec_sleep;
	t.io.log = rec_log;
	t.io.arg = &rec;
	ok(llm_openai_chat(&t, m, NULL, &reply, &cause, &permanent) == 0,
	    "a reply after a 503 and a slow stream");
	if (cause != NULL)
		printf("# %s\n", cause);
	is_str(json_string_value(json_object_get(reply, "text")),
	    "Hello\nworld", "  its text, whole");
	ok(rec.sleeps == 1 && rec.slept_ms == 7,
	    "the retry waited through the sleep callback, as Retry-After said");
	ok(strstr(rec.log, "INFO:model: 503 ") != NULL &&
	        strstr(rec.log, "trying again in 0.0 s (1 of 1)") != NULL,
	    "the retry's reason went to the log callback");
	/* "wor" waited 250 ms during the pause: it went out alone. */
	ok(strstr(rec.log, "MODEL:Hello\nMODEL:wor\nMODEL:ld\n") != NULL,
	    "the streamed text went to the log callback as it came");
	ok(rec.beats_at_first_text > 0, "heartbeats while the reply came");
	ok(rec.beats > rec.beats_at_first_text,
	    "heartbeats while the stream paused for 1.5 s");
	if (strstr(rec.log, "MODEL:") == NULL || rec.beats == 0)
		printf("# log: %s; beats %u\n", rec.log, rec.beats);
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "the server was asked twice");
	json_decref(reply);
	json_decref(t.llm);
	json_decref(m);
	free(url);
}

/* A scripted turn's delay_ms is a sleep through the callback. */
static void
test_io_scripted(void)
{
	struct io_rec rec;
	struct llm_turn t;
	json_t *m = neutral_messages(), *reply = NULL;
	char *cause = NULL;
	int permanent = 0;

	memset(&rec, 0, sizeof rec);
	memset(&t, 0, sizeof t);
	t.stage = "planning";
	t.llm = json_pack("{s:s,s:s}", "provider", "scripted", "script",
	    "{\"planning\":[{\"text\":\"hi\",\"delay_ms\":1234}]}");
	t.io.sleep = rec_sleep;
	t.io.arg = &rec;
	ok(llm_chat(&t, m, NULL, &reply, &cause, &permanent) == 0 &&
	        strcmp(json_string_value(json_object_get(reply, "text")),
	            "hi") == 0,
	    "scripted: the turn's reply");
	ok(rec.sleeps == 1 && rec.slept_ms == 1234,
	    "scripted: delay_ms is slept through the sleep callback");
	json_decref(reply);
	json_decref(t.llm);
	json_decref(m);
}

/* One provider table for the worker and doctor: defaults and URLs. */
static void
test_providers(void)
{
	const struct provider *o = provider_find("openai");
	const struct provider *a = provider_find("anthropic");
	char *u;

	ok(o != NULL && a != NULL, "providers: openai and anthropic known");
	ok(provider_find("scripted") == NULL && provider_find(NULL) == NULL,
	    "providers: scripted has no HTTP API");
	if (o == NULL || a == NULL)
		return;
	u = provider_url(o, NULL, "/models");
	is_str(u, "https://api.openai.com/v1/models", "openai: default base");
	free(u);
	u = provider_url(o, "http://127.0.0.1:8080/v1//", "/chat/completions");
	is_str(u, "http://127.0.0.1:8080/v1/chat/completions",
	    "openai: trailing slashes dropped, no /v1 added");
	free(u);
	u = provider_url(a, "https://api.anthropic.com/", "/messages");
	is_str(
	    u, "https://api.anthropic.com/v1/messages", "anthropic: /v1 added");
	free(u);
	u = provider_url(a, "https://proxy.example/v1", "/models");
	is_str(u, "https://proxy.example/v1/models",
	    "anthropic: a base ending in /v1 is kept");
	free(u);
	ok(strcmp(a->fixed_header, "anthropic-version: 2023-06-01") == 0 &&
	        strncmp(a->key_header, "x-api-key", 9) == 0 &&
	        strncmp(o->key_header, "Authorization: Bearer", 21) == 0,
	    "providers: the key and version headers");
}

int
main(void)
{
	test_providers();
	test_openai_stream();
	test_openai_faults();
	test_anthropic();
	test_requests();
	test_requests_unbuildable();
	test_no_key();
	test_scrub();
	test_reply_limit();
	test_io_scripted();
	test_io_http();
	return tap_done();
}
