/*
 * One model turn, whatever the provider.  This file holds the dispatch (to
 * llm_openai.c and llm_anthropic.c, which share llm_http.c) and
 * the offline `scripted` provider: a JSON script of replies per stage and
 * turn, for the demo and the tests.
 *
 * Script format:
 *   { "planning":     [ TURN, TURN, ... ],
 *     "implementing": [ ... ],
 *     "reviewing#2":  [ ... ]      (round 2 of reviewing only) }
 *   TURN = { "text": "...", "tool_calls": [ {"name": "...",
 *            "arguments": {...}} ], "delay_ms": N,
 *            "usage": {"in": N, "out": N} }
 * The turn used is the stage run's n-th model call; "STAGE#ROUND" wins over
 * "STAGE" for that round of the stage.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "proto.h"
#include "llm.h"

static json_t *
scripted_load(const char *script, char **cause)
{
	json_error_t jerr;
	json_t *j;

	if (script == NULL)
		j = json_loads(prompt_get("demo-script.json"),
		    JSON_REJECT_DUPLICATES, &jerr);
	else if (script[0] == '{')
		j = json_loads(script, JSON_REJECT_DUPLICATES, &jerr);
	else
		j = json_load_file(script, JSON_REJECT_DUPLICATES, &jerr);
	if (j == NULL) {
		*cause = xasprintf("ORCH_LLM_SCRIPT %s: line %d: %s",
		    script ? script : "(built-in)", jerr.line, jerr.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		*cause = xstrdup("ORCH_LLM_SCRIPT: the script must be a JSON "
		                 "object of stages");
		json_decref(j);
		return NULL;
	}
	return j;
}

/* Append one line to the trace file, so tests can count the model calls. */
static void
scripted_trace(const char *path, const struct llm_turn *t)
{
	char *line;
	int fd;

	if (path == NULL)
		return;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd == -1) {
		log_warn("ORCH_SCRIPTED_TRACE %s", path);
		return;
	}
	line = xasprintf("task=%lld stage=%s run=%lld round=%d turn=%d\n",
	    (long long)t->task, t->stage, (long long)t->run, t->round, t->turn);
	(void)write_all(fd, line, strlen(line));
	fsync(fd);
	close(fd);
	free(line);
}

static int
scripted_chat(
    const struct llm_turn *t, json_t **reply, char **cause, int *permanent)
{
	json_t *script, *turns, *turn, *calls, *out, *oc;
	const char *path = json_string_value(json_object_get(t->llm, "script"));
	char *key;
	size_t i;
	json_t *c;

	*permanent = 1;
	if ((script = scripted_load(path, cause)) == NULL)
		return -1;
	key = xasprintf("%s#%d", t->stage, t->round);
	turns = json_object_get(script, key);
	free(key);
	if (turns == NULL)
		turns = json_object_get(script, t->stage);
	if (!json_is_array(turns) ||
	    (size_t)t->turn >= json_array_size(turns)) {
		*cause = xasprintf("the scripted model has no turn %d for "
		                   "stage %s (round %d): extend "
		                   "ORCH_LLM_SCRIPT",
		    t->turn + 1, t->stage, t->round);
		json_decref(script);
		return -1;
	}
	turn = json_array_get(turns, (size_t)t->turn);
	if (!json_is_object(turn)) {
		*cause = xasprintf("scripted turn %d of %s is not an object",
		    t->turn + 1, t->stage);
		json_decref(script);
		return -1;
	}
	scripted_trace(json_string_value(json_object_get(t->llm, "trace")), t);
	if (json_is_integer(json_object_get(turn, "delay_ms")))
		llm_io_sleep(t, (unsigned)json_integer_value(
		                    json_object_get(turn, "delay_ms")));

	out = json_object();
	oc = json_array();
	json_object_set_new(out, "text",
	    json_string(json_is_string(json_object_get(turn, "text"))
	                    ? json_string_value(json_object_get(turn, "text"))
	                    : ""));
	calls = json_object_get(turn, "tool_calls");
	json_array_foreach(calls, i, c) {
		json_t *args = json_object_get(c, "arguments");
		const char *name =
		    json_string_value(json_object_get(c, "name"));
		char id[64];
		char *as =
		    json_is_string(args) ? xstrdup(json_string_value(args))
		    : args != NULL
		        ? json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY)
		        : xstrdup("{}");

		snprintf(id, sizeof id, "call_%d_%zu", t->turn, i);
		json_array_append_new(
		    oc, json_pack("{s:s,s:s,s:s}", "id", id, "name",
		            name ? name : "", "arguments", as));
		free(as);
	}
	json_object_set_new(out, "tool_calls", oc);
	json_object_set_new(out, "stop",
	    json_string(json_array_size(oc) ? "tool_calls" : "stop"));
	json_object_set_new(out, "usage",
	    json_pack("{s:I,s:I}", "in",
	        json_integer_value(
	            json_object_get(json_object_get(turn, "usage"), "in")),
	        "out",
	        json_integer_value(
	            json_object_get(json_object_get(turn, "usage"), "out"))));
	json_decref(script);
	*reply = out;
	return 0;
}

int
llm_chat(const struct llm_turn *t, json_t *messages, json_t *tools,
    json_t **reply, char **cause, int *permanent)
{
	const char *provider =
	    json_string_value(json_object_get(t->llm, "provider"));

	*reply = NULL;
	*permanent = 0;
	/* An empty conversation asks the model nothing: never send one. */
	if (!json_is_array(messages) || json_array_size(messages) == 0) {
		*cause = xstrdup("the conversation to send is empty");
		*permanent = 1;
		return -1;
	}
	if (provider == NULL || strcmp(provider, "scripted") == 0)
		return scripted_chat(t, reply, cause, permanent);
	if (strcmp(provider, "openai") == 0)
		return llm_openai_chat(
		    t, messages, tools, reply, cause, permanent);
	if (strcmp(provider, "anthropic") == 0)
		return llm_anthropic_chat(
		    t, messages, tools, reply, cause, permanent);
	*cause = xasprintf("unknown LLM provider %s: set ORCH_LLM_PROVIDER "
	                   "to openai, anthropic or scripted",
	    provider);
	*permanent = 1;
	return -1;
}
