/*
 * The log's account of what happened: the event a journal entry makes (a
 * tool's result, the verification command's), built from the entry the
 * supervisor commits, so that the log never shows a result that was not
 * journaled.  The entry comes from a worker and is untrusted: every field
 * is checked for its type, every text bounded and made valid UTF-8 (the
 * log shows it to people through cli_safe, and to programs as JSON).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "narrate.h"
#include "price.h"

#define NARRATE_ERROR_MAX  1000 /* bytes of a tool error in the log */
#define NARRATE_TAIL_MAX   2000 /* bytes of a command's output tail */
#define NARRATE_TAIL_LINES 10   /* lines of it */
#define NARRATE_PATH_MAX   300  /* bytes of a path */

/* s cut at max bytes (at a character), valid UTF-8, "..." when cut. */
static char *
narrate_head(const char *s, size_t max)
{
	size_t n = strlen(s), keep = utf8_head(s, n, max);
	char *cut = xasprintf("%.*s%s", (int)keep, s, keep < n ? "..." : "");
	char *out = utf8_fix(cut, NULL);

	free(cut);
	return out;
}

/* The last NARRATE_TAIL_LINES lines of s, at most NARRATE_TAIL_MAX bytes,
 * without the trailing newline; valid UTF-8. */
static char *
narrate_tail(const char *s)
{
	size_t n = strlen(s), start;
	unsigned lines = 0;

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		n--;
	start = utf8_tail(s, n, NARRATE_TAIL_MAX);
	for (size_t i = n; i > start; i--) {
		if (s[i - 1] == '\n' && ++lines == NARRATE_TAIL_LINES) {
			start = i;
			break;
		}
	}
	char *cut = xasprintf("%.*s", (int)(n - start), s + start);
	char *out = utf8_fix(cut, NULL);

	free(cut);
	return out;
}

static int
narrate_int(
    json_t *o, const char *key, json_int_t min, json_int_t max, json_int_t *v)
{
	json_t *j = json_object_get(o, key);

	if (!json_is_integer(j) || json_integer_value(j) < min ||
	    json_integer_value(j) > max)
		return -1;
	*v = json_integer_value(j);
	return 0;
}

/*
 * A sandboxed command's result (sandbox_result_json) into d, and its
 * one-line account with the output's tail below it.  -1 when cmd is not
 * such a result.
 */
static int
narrate_command(json_t *cmd, json_t *d, char **text)
{
	json_int_t status = -1, sig, ms = 0;
	const char *limit = json_string_value(json_object_get(cmd, "limit"));
	const char *output = json_string_value(json_object_get(cmd, "output"));
	int timed_out = json_is_true(json_object_get(cmd, "timed_out"));
	char *how, *tail = NULL, *lim = NULL;

	if (!json_is_object(cmd) || output == NULL)
		return -1;
	narrate_int(cmd, "duration_ms", 0, INT64_MAX / 2, &ms);
	json_object_set_new(d, "duration_ms", json_integer(ms));
	json_object_set_new(d, "timed_out", json_boolean(timed_out));
	if (limit != NULL) {
		lim = narrate_head(limit, NARRATE_ERROR_MAX);
		json_object_set_new(d, "limit", json_string(lim));
	}
	if (narrate_int(cmd, "exit_status", 0, 255, &status) == 0) {
		json_object_set_new(d, "exit_status", json_integer(status));
		how = xasprintf("exit status %lld", (long long)status);
	} else if (narrate_int(cmd, "signal", 1, 128, &sig) == 0) {
		json_object_set_new(d, "signal", json_integer(sig));
		how = xasprintf("killed by signal %lld", (long long)sig);
	} else
		how = xstrdup("ended without a status");
	tail = narrate_tail(output);
	json_object_set_new(d, "output_tail", json_string(tail));
	*text = xasprintf("%s%s%s%s after %lld.%03lld s%s%s", how,
	    timed_out ? ", timed out" : "", lim ? ", limit: " : "",
	    lim ? lim : "", (long long)(ms / 1000), (long long)(ms % 1000),
	    *tail != '\0' ? "\n" : "", tail);
	free(how);
	free(tail);
	free(lim);
	return 0;
}

/* A file tool's facts into d; its account in *text. */
static void
narrate_file(const char *tool, json_t *facts, json_t *d, char **text)
{
	json_int_t bytes, add, del;
	const char *path = json_string_value(json_object_get(facts, "path"));
	char *p;

	if (path == NULL ||
	    narrate_int(facts, "bytes", 0, INT32_MAX, &bytes) == -1 ||
	    narrate_int(facts, "lines_added", 0, INT32_MAX, &add) == -1 ||
	    narrate_int(facts, "lines_removed", 0, INT32_MAX, &del) == -1) {
		*text = xstrdup("ok");
		return;
	}
	p = narrate_head(path, NARRATE_PATH_MAX);
	json_object_set_new(d, "path", json_string(p));
	json_object_set_new(d, "bytes", json_integer(bytes));
	json_object_set_new(d, "lines_added", json_integer(add));
	json_object_set_new(d, "lines_removed", json_integer(del));
	*text = xasprintf("ok: %s %s, %lld bytes, +%lld -%lld lines", p,
	    strcmp(tool, "edit_file") == 0                    ? "edited"
	    : json_is_true(json_object_get(facts, "created")) ? "created"
	                                                      : "written",
	    (long long)bytes, (long long)add, (long long)del);
	free(p);
}

/* A tool's journaled result ({id, name, outcome, text, facts}). */
static int
narrate_tool(json_t *j, char **text, json_t **data)
{
	const char *name = json_string_value(json_object_get(j, "name"));
	const char *outcome = json_string_value(json_object_get(j, "outcome"));
	const char *rtext = json_string_value(json_object_get(j, "text"));
	const char *id = json_string_value(json_object_get(j, "id"));
	json_t *d;
	char *s;

	if (name == NULL || outcome == NULL || rtext == NULL)
		return -1;
	d = json_object();
	s = narrate_head(name, 64);
	json_object_set_new(d, "tool", json_string(s));
	free(s);
	if (id != NULL && *id != '\0') {
		s = narrate_head(id, 128);
		json_object_set_new(d, "call_id", json_string(s));
		free(s);
	}
	if (json_is_true(json_object_get(j, "empty")))
		json_object_set_new(d, "empty", json_true());
	if (strcmp(outcome, "error") == 0) {
		s = narrate_head(rtext, NARRATE_ERROR_MAX);
		json_object_set_new(d, "outcome", json_string("error"));
		json_object_set_new(d, "error", json_string(s));
		*text = xasprintf("error: %s", s);
		free(s);
	} else if (strcmp(name, "run_command") == 0) {
		json_t *cmd = json_loads(rtext, 0, NULL);

		json_object_set_new(d, "outcome", json_string("ok"));
		if (narrate_command(cmd, d, text) == -1)
			*text = xstrdup("ok");
		json_decref(cmd);
	} else {
		json_object_set_new(d, "outcome", json_string("ok"));
		if (json_is_object(json_object_get(j, "facts")))
			narrate_file(
			    name, json_object_get(j, "facts"), d, text);
		else
			*text = xasprintf(
			    "ok (%zu bytes to the model)", strlen(rtext));
	}
	*data = d;
	return 0;
}

int
narrate_journal(const char *kind, const char *jdata, char **text, json_t **data)
{
	json_t *j;
	int rc = -1;

	*text = NULL;
	*data = NULL;
	if (kind == NULL || jdata == NULL ||
	    (strcmp(kind, "tool") != 0 && strcmp(kind, "command") != 0))
		return -1;
	if ((j = json_loads(jdata, 0, NULL)) == NULL)
		return -1;
	if (strcmp(kind, "tool") == 0)
		rc = narrate_tool(j, text, data);
	else {
		*data =
		    json_pack("{s:s,s:s}", "tool", "verify", "outcome", "ok");
		if ((rc = narrate_command(j, *data, text)) == -1) {
			json_decref(*data);
			*data = NULL;
		}
	}
	json_decref(j);
	return rc;
}

int64_t
narrate_reply(const char *jdata, char **model)
{
	json_t *j = json_loads(jdata, 0, NULL);
	const char *m = json_string_value(json_object_get(j, "model"));
	json_int_t ms = 0;

	*model = m != NULL ? xstrdup(m) : NULL;
	if (j != NULL)
		narrate_int(j, "ms", 0, 7LL * 86400 * 1000, &ms);
	json_decref(j);
	return ms;
}

char *
narrate_turn(
    const char *model, int64_t in, int64_t out, int64_t ms, json_t **data)
{
	char *m = narrate_head(model, 128), *text, *money = NULL;
	double cost;

	*data = json_pack("{s:s,s:I,s:I,s:I}", "model", m, "tokens_in",
	    (json_int_t)in, "tokens_out", (json_int_t)out, "duration_ms",
	    (json_int_t)ms);
	if (price_cost(model, in, out, 0, &cost) == 0) {
		json_object_set_new(*data, "cost", json_real(cost));
		money = xasprintf(", cost %.4f", cost);
	}
	text = xasprintf("model turn (%s): %lld tokens in, %lld out, "
	                 "%lld.%01lld s%s",
	    m, (long long)in, (long long)out, (long long)(ms / 1000),
	    (long long)(ms % 1000 / 100), money != NULL ? money : "");
	free(money);
	free(m);
	return text;
}
