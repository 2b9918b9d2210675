/*
 * The openai provider: POST {base}/chat/completions with function calling,
 * streamed (stream_options.include_usage for the token counts).  It works
 * with any OpenAI-compatible server: ORCH_LLM_BASE_URL names it.
 *
 * Defaults (common/provider.c): base https://api.openai.com/v1, model
 * gpt-4o-mini.
 *
 * The stream is "data: CHUNK" events and a final "data: [DONE]"; text comes
 * in choices[0].delta.content, tool calls in choices[0].delta.tool_calls as
 * fragments keyed by index (id and name first, then pieces of arguments),
 * finish_reason in the last choice chunk, usage in a chunk without choices.
 * A server that ignores "stream" and answers one JSON completion is taken
 * as well.
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "llm.h"

static const char *
openai_str(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* Neutral messages to chat completion messages; NULL if one cannot be. */
static json_t *
openai_messages(json_t *messages)
{
	json_t *out = json_array(), *m;
	size_t i;

	json_array_foreach(messages, i, m) {
		const char *role = openai_str(m, "role");
		const char *content = openai_str(m, "content");
		json_t *calls = json_object_get(m, "tool_calls");
		json_t *o;

		if (role == NULL) {
			json_decref(out);
			return NULL;
		}
		if (strcmp(role, "tool") == 0) {
			o = json_pack("{s:s,s:s,s:s}", "role", "tool",
			    "tool_call_id",
			    openai_str(m, "tool_call_id")
			        ? openai_str(m, "tool_call_id")
			        : "",
			    "content", content ? content : "");
		} else if (strcmp(role, "assistant") == 0 &&
		           json_array_size(calls) > 0) {
			json_t *tc = json_array(), *c;
			size_t j;

			json_array_foreach(calls, j, c) {
				json_array_append_new(tc,
				    json_pack("{s:s,s:s,s:{s:s,s:s}}", "id",
				        openai_str(c, "id")
				            ? openai_str(c, "id")
				            : "",
				        "type", "function", "function", "name",
				        openai_str(c, "name")
				            ? openai_str(c, "name")
				            : "",
				        "arguments",
				        openai_str(c, "arguments")
				            ? openai_str(c, "arguments")
				            : "{}"));
			}
			o = json_pack("{s:s,s:o,s:o}", "role", "assistant",
			    "content",
			    content && *content ? json_string(content)
			                        : json_null(),
			    "tool_calls", tc);
		} else {
			o = json_pack("{s:s,s:s}", "role", role, "content",
			    content ? content : "");
		}
		/* A message left out would change what the model is
		 * asked: the whole request fails instead. */
		if (o == NULL || json_array_append_new(out, o) == -1) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

json_t *
llm_openai_request(const char *model, json_t *messages, json_t *tools)
{
	json_t *req, *ft, *t, *msgs;
	size_t i;

	if ((msgs = openai_messages(messages)) == NULL)
		return NULL;
	ft = json_array();
	json_array_foreach(tools, i, t) {
		json_t *f = json_pack("{s:s,s:{s:O?}}", "type", "function",
		    "function", "name", json_object_get(t, "name"));
		json_t *fn = json_object_get(f, "function");

		if (json_object_get(t, "description") != NULL)
			json_object_set(fn, "description",
			    json_object_get(t, "description"));
		if (json_object_get(t, "parameters") != NULL)
			json_object_set(
			    fn, "parameters", json_object_get(t, "parameters"));
		json_array_append_new(ft, f);
	}
	req = json_pack("{s:s,s:o,s:b,s:{s:b}}", "model", model, "messages",
	    msgs, "stream", 1, "stream_options", "include_usage", 1);
	if (req == NULL) {
		json_decref(ft);
		return NULL;
	}
	if (json_array_size(ft) > 0)
		json_object_set_new(req, "tools", ft);
	else
		json_decref(ft);
	return req;
}

static void
openai_stop(struct llm_asm *a, const char *reason)
{
	if (strcmp(reason, "function_call") == 0)
		reason = "tool_calls";
	llm_asm_stop(a, reason);
}

static void
openai_usage(struct llm_asm *a, json_t *u)
{
	if (!json_is_object(u))
		return;
	a->in = json_integer_value(json_object_get(u, "prompt_tokens"));
	a->out = json_integer_value(json_object_get(u, "completion_tokens"));
}

static int
openai_error(struct llm_asm *a, json_t *e)
{
	const char *m =
	    json_is_object(e) ? openai_str(e, "message") : json_string_value(e);

	if (m == NULL)
		m = "(no message)";
	return llm_asm_fail(a, "the API reported an error in the stream: %.*s",
	    (int)utf8_head(m, strlen(m), 300), m);
}

/* One tool call fragment of delta.tool_calls. */
static void
openai_call(struct llm_asm *a, json_t *tc)
{
	json_t *fn = json_object_get(tc, "function");
	json_t *ix = json_object_get(tc, "index");
	const char *id = openai_str(tc, "id");
	const char *args = openai_str(fn, "arguments");
	struct llm_call *c, *last = a->ncalls ? &a->calls[a->ncalls - 1] : NULL;
	int index;

	if (json_is_integer(ix) && json_integer_value(ix) >= 0 &&
	    json_integer_value(ix) < 1024)
		index = (int)json_integer_value(ix);
	else if (last != NULL &&
	         (id == NULL || (last->id && strcmp(last->id, id) == 0)))
		index = last->index; /* a server that sends no index */
	else
		index = last ? last->index + 1 : 0;
	if ((c = llm_asm_call(a, index, id, openai_str(fn, "name"))) == NULL)
		return;
	if (args != NULL)
		llm_asm_args(c, args, strlen(args));
}

static int
openai_event(struct llm_asm *a, const char *event, const char *data, size_t len)
{
	json_t *j, *ch, *delta, *tcs, *tc;
	const char *s;
	size_t i;

	if (strcmp(event, "error") == 0) {
		j = json_loadb(data, len, 0, NULL);
		if (j == NULL)
			return llm_asm_fail(a,
			    "the API reported an error in "
			    "the stream: %.*s",
			    (int)utf8_head(data, len, 300), data);
		openai_error(a, json_object_get(j, "error")
		                    ? json_object_get(j, "error")
		                    : j);
		json_decref(j);
		return -1;
	}
	if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
		a->done = 1;
		return 0;
	}
	if ((j = json_loadb(data, len, 0, NULL)) == NULL ||
	    !json_is_object(j)) {
		json_decref(j);
		return llm_asm_fail(a, "a stream event is not JSON");
	}
	if (json_object_get(j, "error") != NULL) {
		openai_error(a, json_object_get(j, "error"));
		json_decref(j);
		return -1;
	}
	openai_usage(a, json_object_get(j, "usage"));
	ch = json_array_get(json_object_get(j, "choices"), 0);
	delta = json_object_get(ch, "delta");
	if ((s = openai_str(delta, "content")) != NULL)
		llm_asm_text(a, s, strlen(s));
	tcs = json_object_get(delta, "tool_calls");
	json_array_foreach(tcs, i, tc)
		openai_call(a, tc);
	if ((s = openai_str(ch, "finish_reason")) != NULL)
		openai_stop(a, s);
	json_decref(j);
	return a->error ? -1 : 0;
}

/* A whole (non-streamed) chat completion. */
static int
openai_whole(struct llm_asm *a, json_t *j)
{
	json_t *ch, *msg, *tc;
	const char *s;
	size_t i;

	if (json_object_get(j, "error") != NULL)
		return openai_error(a, json_object_get(j, "error"));
	ch = json_array_get(json_object_get(j, "choices"), 0);
	if (!json_is_object(msg = json_object_get(ch, "message")))
		return llm_asm_fail(a, "the API answered 200 with JSON that "
		                       "is not a chat completion");
	if ((s = openai_str(msg, "content")) != NULL)
		llm_asm_text(a, s, strlen(s));
	json_array_foreach(json_object_get(msg, "tool_calls"), i, tc) {
		json_t *fn = json_object_get(tc, "function");
		json_t *args = json_object_get(fn, "arguments");
		struct llm_call *c = llm_asm_call(
		    a, (int)i, openai_str(tc, "id"), openai_str(fn, "name"));

		if (c == NULL)
			break;
		if (json_is_string(args))
			llm_asm_args(c, json_string_value(args),
			    strlen(json_string_value(args)));
		else if (args != NULL) {
			char *as =
			    json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
			llm_asm_args(c, as, strlen(as));
			free(as);
		}
	}
	if ((s = openai_str(ch, "finish_reason")) != NULL)
		openai_stop(a, s);
	openai_usage(a, json_object_get(j, "usage"));
	a->done = 1;
	return a->error ? -1 : 0;
}

void
llm_openai_asm(struct llm_asm *a, int turn)
{
	llm_asm_init(a, turn);
	a->event = openai_event;
	a->whole = openai_whole;
	a->end_name = "[DONE]";
}

int
llm_openai_chat(const struct llm_turn *t, json_t *messages, json_t *tools,
    json_t **reply, char **cause, int *permanent)
{
	static const struct llm_api api = {
	    .provider = "openai",
	    .path = "/chat/completions",
	    .no_key = "the openai provider needs an API key for "
	              "api.openai.com: set ORCH_LLM_API_KEY",
	    .request = llm_openai_request,
	    .asm_init = llm_openai_asm,
	};

	return llm_http_api_chat(
	    &api, t, messages, tools, reply, cause, permanent);
}
