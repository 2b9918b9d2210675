/*
 * The anthropic provider: POST {base}/v1/messages (the Messages API,
 * anthropic-version 2023-06-01), streamed, with tools.
 *
 * Defaults (common/provider.c): base https://api.anthropic.com, model
 * claude-sonnet-4-5,
 * max_tokens 8192.
 *
 * The neutral conversation maps onto it so: system messages become the
 * top-level "system"; an assistant's tool calls become tool_use blocks
 * (arguments that are not a JSON object go as {}: the tool already answered
 * them with an error); tool results become tool_result blocks of a user
 * message; consecutive messages of one role are merged, and an assistant
 * message with neither text nor calls is left out, since the API refuses
 * empty content.
 *
 * The stream: message_start (input tokens), content_block_start (a text or
 * tool_use block, by index), content_block_delta (text_delta or
 * input_json_delta with a piece of the tool's input), content_block_stop,
 * message_delta (stop_reason, output tokens), message_stop; ping; error.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "llm.h"

#define ANTHROPIC_MAX_TOKENS 8192

static const char *
ant_str(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* A tool_use id as the API accepts it: [A-Za-z0-9_-]+. */
static json_t *
ant_id(const char *id)
{
	char *s = xstrdup(id && *id ? id : "call");
	json_t *j;

	for (char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
			*p = '_';
	j = json_string(s);
	free(s);
	return j;
}

static int
ant_blank(const char *s)
{
	if (s == NULL)
		return 1;
	while (*s && isspace((unsigned char)*s))
		s++;
	return *s == '\0';
}

/*
 * Add a content block to the conversation under role, merging with the
 * last message when it has the same role.  Takes ownership of block.  A
 * block that could not be built (NULL) is counted in *bad: a request with
 * a part of the conversation missing is not sent.
 */
static void
ant_add(json_t *msgs, const char *role, json_t *block, int *bad)
{
	json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);

	if (block == NULL) {
		(*bad)++;
		return;
	}
	if (last == NULL || strcmp(ant_str(last, "role"), role) != 0) {
		last = json_pack("{s:s,s:[]}", "role", role, "content");
		json_array_append_new(msgs, last);
	}
	if (json_array_append_new(json_object_get(last, "content"), block) ==
	    -1)
		(*bad)++;
}

json_t *
llm_anthropic_request(const char *model, json_t *messages, json_t *tools)
{
	json_t *msgs = json_array(), *at = json_array(), *m, *t, *req;
	char *system = NULL;
	size_t i;
	int bad = 0;

	json_array_foreach(messages, i, m) {
		const char *role = ant_str(m, "role");
		const char *content = ant_str(m, "content");
		json_t *c;
		size_t j;

		if (role == NULL) {
			bad++;
			continue;
		}
		if (strcmp(role, "system") == 0) {
			char *s = xasprintf("%s%s%s", system ? system : "",
			    system ? "\n\n" : "", content ? content : "");
			free(system);
			system = s;
		} else if (strcmp(role, "tool") == 0) {
			json_t *b = json_pack("{s:s,s:o}", "type",
			    "tool_result", "tool_use_id",
			    ant_id(ant_str(m, "tool_call_id")));
			if (b != NULL && content != NULL && *content != '\0' &&
			    json_object_set_new(
			        b, "content", json_string(content)) == -1)
				bad++;
			ant_add(msgs, "user", b, &bad);
		} else if (strcmp(role, "assistant") == 0) {
			if (!ant_blank(content))
				ant_add(msgs, "assistant",
				    json_pack("{s:s,s:s}", "type", "text",
				        "text", content),
				    &bad);
			json_array_foreach(
			    json_object_get(m, "tool_calls"), j, c) {
				const char *args = ant_str(c, "arguments");
				json_t *in = args ? json_loads(args,
				                        JSON_DECODE_ANY, NULL)
				                  : NULL;

				if (!json_is_object(in)) {
					json_decref(in);
					in = json_object();
				}
				ant_add(msgs, "assistant",
				    json_pack("{s:s,s:o,s:s,s:o}", "type",
				        "tool_use", "id",
				        ant_id(ant_str(c, "id")), "name",
				        ant_str(c, "name") ? ant_str(c, "name")
				                           : "",
				        "input", in),
				    &bad);
			}
		} else {
			ant_add(msgs, "user",
			    json_pack("{s:s,s:s}", "type", "text", "text",
			        ant_blank(content) ? "(empty)" : content),
			    &bad);
		}
	}
	json_array_foreach(tools, i, t) {
		json_t *o =
		    json_pack("{s:O?}", "name", json_object_get(t, "name"));

		if (json_object_get(t, "description") != NULL)
			json_object_set(o, "description",
			    json_object_get(t, "description"));
		if (json_object_get(t, "parameters") != NULL)
			json_object_set(o, "input_schema",
			    json_object_get(t, "parameters"));
		else
			json_object_set_new(o, "input_schema",
			    json_pack("{s:s}", "type", "object"));
		json_array_append_new(at, o);
	}
	req = json_pack("{s:s,s:i,s:o,s:b}", "model", model, "max_tokens",
	    ANTHROPIC_MAX_TOKENS, "messages", msgs, "stream", 1);
	if (req != NULL && system != NULL &&
	    json_object_set_new(req, "system", json_string(system)) == -1)
		bad++;
	free(system);
	if (req == NULL || bad > 0) {
		json_decref(req);
		json_decref(at);
		return NULL;
	}
	if (json_array_size(at) > 0)
		json_object_set_new(req, "tools", at);
	else
		json_decref(at);
	return req;
}

static void
ant_stop(struct llm_asm *a, const char *reason)
{
	if (strcmp(reason, "end_turn") == 0 ||
	    strcmp(reason, "stop_sequence") == 0)
		reason = "stop";
	else if (strcmp(reason, "tool_use") == 0)
		reason = "tool_calls";
	else if (strcmp(reason, "max_tokens") == 0)
		reason = "length";
	llm_asm_stop(a, reason);
}

/* Input tokens: the uncached ones and those written to or read from the
 * prompt cache, all of which the request consumed. */
static void
ant_usage(struct llm_asm *a, json_t *u)
{
	json_t *in = json_object_get(u, "input_tokens");

	if (!json_is_object(u))
		return;
	if (json_is_integer(in))
		a->in = json_integer_value(in) +
		        json_integer_value(
		            json_object_get(u, "cache_creation_input_tokens")) +
		        json_integer_value(
		            json_object_get(u, "cache_read_input_tokens"));
	if (json_is_integer(json_object_get(u, "output_tokens")))
		a->out =
		    json_integer_value(json_object_get(u, "output_tokens"));
}

static int
ant_error(struct llm_asm *a, json_t *j)
{
	json_t *e = json_object_get(j, "error");
	const char *m = ant_str(e, "message");

	const char *type = ant_str(e, "type") ? ant_str(e, "type") : "error";

	if (m == NULL)
		m = "(no message)";
	/* Cut at characters: the text goes into JSON, events and logs. */
	return llm_asm_fail(a,
	    "the API reported an error in the stream "
	    "(%.*s): %.*s",
	    (int)utf8_head(type, strlen(type), 60), type,
	    (int)utf8_head(m, strlen(m), 300), m);
}

/* A tool_use block's input given whole (in a non-streamed reply, or a
 * non-empty start block). */
static void
ant_input(struct llm_call *c, json_t *input)
{
	char *s;

	if (!json_is_object(input) || json_object_size(input) == 0)
		return;
	s = json_dumps(input, JSON_COMPACT);
	if (s != NULL)
		llm_asm_args(c, s, strlen(s));
	free(s);
}

static int
ant_index(json_t *j)
{
	json_int_t ix = json_integer_value(json_object_get(j, "index"));

	return ix >= 0 && ix < 1024 ? (int)ix : 1024;
}

static int
ant_event(struct llm_asm *a, const char *event, const char *data, size_t len)
{
	json_t *j, *b, *d;
	const char *type, *s;
	struct llm_call *c;

	if ((j = json_loadb(data, len, 0, NULL)) == NULL ||
	    !json_is_object(j)) {
		json_decref(j);
		if (strcmp(event, "error") == 0)
			return llm_asm_fail(a,
			    "the API reported an error in "
			    "the stream: %.*s",
			    (int)utf8_head(data, len, 300), data);
		return llm_asm_fail(a, "a stream event is not JSON");
	}
	type = ant_str(j, "type") ? ant_str(j, "type") : event;
	if (strcmp(type, "error") == 0 || strcmp(event, "error") == 0) {
		ant_error(a, j);
	} else if (strcmp(type, "message_start") == 0) {
		ant_usage(
		    a, json_object_get(json_object_get(j, "message"), "usage"));
	} else if (strcmp(type, "content_block_start") == 0) {
		b = json_object_get(j, "content_block");
		s = ant_str(b, "type") ? ant_str(b, "type") : "";
		if (strcmp(s, "text") == 0 && ant_str(b, "text"))
			llm_asm_text(
			    a, ant_str(b, "text"), strlen(ant_str(b, "text")));
		else if (strcmp(s, "tool_use") == 0) {
			c = llm_asm_call(a, ant_index(j), ant_str(b, "id"),
			    ant_str(b, "name"));
			if (c != NULL)
				ant_input(c, json_object_get(b, "input"));
		}
	} else if (strcmp(type, "content_block_delta") == 0) {
		d = json_object_get(j, "delta");
		s = ant_str(d, "type") ? ant_str(d, "type") : "";
		if (strcmp(s, "text_delta") == 0 && ant_str(d, "text"))
			llm_asm_text(
			    a, ant_str(d, "text"), strlen(ant_str(d, "text")));
		else if (strcmp(s, "input_json_delta") == 0 &&
		         ant_str(d, "partial_json")) {
			for (size_t i = 0; i < a->ncalls; i++) {
				if (a->calls[i].index != ant_index(j))
					continue;
				llm_asm_args(&a->calls[i],
				    ant_str(d, "partial_json"),
				    strlen(ant_str(d, "partial_json")));
			}
		}
	} else if (strcmp(type, "content_block_stop") == 0) {
		for (size_t i = 0; i < a->ncalls; i++)
			if (a->calls[i].index == ant_index(j))
				a->calls[i].closed = 1;
	} else if (strcmp(type, "message_delta") == 0) {
		if ((s = ant_str(json_object_get(j, "delta"), "stop_reason")))
			ant_stop(a, s);
		ant_usage(a, json_object_get(j, "usage"));
	} else if (strcmp(type, "message_stop") == 0) {
		for (size_t i = 0; i < a->ncalls; i++)
			if (!a->calls[i].closed)
				llm_asm_fail(a, "the stream ended in the "
				                "middle of a tool call");
		a->done = 1;
	}
	/* ping and event types added later are ignored. */
	json_decref(j);
	return a->error ? -1 : 0;
}

/* A whole (non-streamed) message. */
static int
ant_whole(struct llm_asm *a, json_t *j)
{
	json_t *b;
	const char *s;
	size_t i;

	if (json_object_get(j, "error") != NULL)
		return ant_error(a, j);
	if (!json_is_array(json_object_get(j, "content")))
		return llm_asm_fail(a, "the API answered 200 with JSON that "
		                       "is not a message");
	json_array_foreach(json_object_get(j, "content"), i, b) {
		if ((s = ant_str(b, "type")) == NULL)
			continue;
		if (strcmp(s, "text") == 0 && ant_str(b, "text"))
			llm_asm_text(
			    a, ant_str(b, "text"), strlen(ant_str(b, "text")));
		else if (strcmp(s, "tool_use") == 0) {
			struct llm_call *c = llm_asm_call(
			    a, (int)i, ant_str(b, "id"), ant_str(b, "name"));
			if (c == NULL)
				break;
			c->closed = 1;
			ant_input(c, json_object_get(b, "input"));
		}
	}
	if ((s = ant_str(j, "stop_reason")) != NULL)
		ant_stop(a, s);
	ant_usage(a, json_object_get(j, "usage"));
	a->done = 1;
	return a->error ? -1 : 0;
}

void
llm_anthropic_asm(struct llm_asm *a, int turn)
{
	llm_asm_init(a, turn);
	a->event = ant_event;
	a->whole = ant_whole;
	a->end_name = "message_stop";
}

int
llm_anthropic_chat(const struct llm_turn *t, json_t *messages, json_t *tools,
    json_t **reply, char **cause, int *permanent)
{
	static const struct llm_api api = {
	    .provider = "anthropic",
	    .path = "/messages",
	    .no_key = "the anthropic provider needs an API key: set "
	              "ORCH_LLM_API_KEY",
	    .request = llm_anthropic_request,
	    .asm_init = llm_anthropic_asm,
	};

	return llm_http_api_chat(
	    &api, t, messages, tools, reply, cause, permanent);
}
