/*
 * narrate.c turns untrusted journal entries into log events: every field
 * checked, every text bounded; price.c turns tokens into money.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "narrate.h"
#include "price.h"
#include "tap.h"

static char *text;
static json_t *facts;

static int
run(const char *kind, const char *data)
{
	free(text);
	json_decref(facts);
	text = NULL;
	facts = NULL;
	return narrate_journal(kind, data, &text, &facts);
}

static const char *
fact_str(const char *k)
{
	return json_string_value(json_object_get(facts, k));
}

static long long
fact_int(const char *k)
{
	json_t *v = json_object_get(facts, k);

	return json_is_integer(v) ? (long long)json_integer_value(v) : -999;
}

static void
test_refused(void)
{
	ok(run("reply", "{}") == -1, "a reply is not a result");
	ok(run("snapshot", "{\"commit\":\"x\"}") == -1, "nor a snapshot");
	ok(run("tool", "not json") == -1, "a tool entry that is not JSON");
	ok(run("tool", "[1]") == -1, "a tool entry that is not an object");
	ok(run("tool", "{\"name\":1,\"outcome\":\"done\",\"text\":\"\"}") == -1,
	    "a tool entry with a name that is not a string");
	ok(run(NULL, "{}") == -1 && run("tool", NULL) == -1, "NULLs");
}

static void
test_error(void)
{
	char *big = malloc(5001), *data;
	json_t *j;

	memset(big, 'e', 5000);
	big[5000] = '\0';
	j = json_pack("{s:s,s:s,s:s,s:s}", "id", "c1", "name", "edit_file",
	    "outcome", "error", "text", big);
	data = json_dumps(j, 0);
	ok(run("tool", data) == 0, "an error result");
	is_str(fact_str("outcome"), "error", "its outcome");
	is_str(fact_str("tool"), "edit_file", "its tool");
	is_str(fact_str("call_id"), "c1", "its call");
	is_int(
	    strlen(fact_str("error")), 1003, "its error is cut at 1000 bytes");
	ok(strncmp(text, "error: eee", 10) == 0, "its text says error");
	json_decref(j);
	free(data);
	free(big);
}

static void
test_command(void)
{
	json_t *cmd = json_object(), *j;
	char out[2000] = "", *data, *cj;

	for (int i = 1; i <= 40; i++)
		snprintf(
		    out + strlen(out), sizeof out - strlen(out), "line%d\n", i);
	json_object_set_new(cmd, "exit_status", json_integer(2));
	json_object_set_new(cmd, "duration_ms", json_integer(1234));
	json_object_set_new(cmd, "timed_out", json_false());
	json_object_set_new(cmd, "output", json_string(out));
	cj = json_dumps(cmd, 0);
	j = json_pack("{s:s,s:s,s:s}", "name", "run_command", "outcome", "done",
	    "text", cj);
	data = json_dumps(j, 0);
	ok(run("tool", data) == 0, "a command's result");
	is_int(fact_int("exit_status"), 2, "its exit status");
	is_int(fact_int("duration_ms"), 1234, "its duration");
	ok(strncmp(text, "exit status 2 after 1.234 s\nline31\n", 35) == 0,
	    "its text: status, duration, then the tail");
	ok(strstr(fact_str("output_tail"), "line30") == NULL &&
	        strstr(fact_str("output_tail"), "line40") != NULL,
	    "the last 10 lines only");
	free(data);
	json_decref(j);
	free(cj);

	/* Out of range: not believed. */
	json_object_set_new(cmd, "exit_status", json_integer(300));
	json_object_set_new(cmd, "signal", json_integer(9));
	json_object_set_new(cmd, "duration_ms", json_integer(-5));
	json_object_set_new(cmd, "timed_out", json_true());
	json_object_set_new(cmd, "limit", json_string("memory"));
	cj = json_dumps(cmd, 0);
	ok(run("command", cj) == 0, "the verification command's result");
	is_int(fact_int("exit_status"), -999,
	    "an exit status over 255 is not one");
	is_int(fact_int("signal"), 9, "its signal");
	is_int(fact_int("duration_ms"), 0, "a negative duration is 0");
	ok(strncmp(text,
	       "killed by signal 9, timed out, limit: memory after "
	       "0.000 s",
	       58) == 0,
	    "its text says how it ended");
	is_str(fact_str("tool"), "verify", "it is the verification");
	free(cj);
	ok(run("command", "{\"exit_status\":0}") == -1,
	    "a command result without output is refused");
	json_decref(cmd);
}

static void
test_file(void)
{
	ok(run("tool", "{\"name\":\"write_file\",\"outcome\":\"done\",\"text\":"
	               "\"wrote\",\"facts\":{\"path\":\"a.c\",\"bytes\":8,"
	               "\"lines_added\":4,\"lines_removed\":3,\"created\":"
	               "false}}") == 0,
	    "a write's result");
	is_str(
	    text, "ok: a.c written, 8 bytes, +4 -3 lines", "says what changed");
	ok(run("tool", "{\"name\":\"write_file\",\"outcome\":\"done\",\"text\":"
	               "\"wrote\",\"facts\":{\"path\":\"a.c\",\"bytes\":-8,"
	               "\"lines_added\":4,\"lines_removed\":3}}") == 0,
	    "facts that make no sense");
	is_str(text, "ok", "are left out");
	ok(run("tool", "{\"name\":\"read_file\",\"outcome\":\"done\",\"text\":"
	               "\"hello\",\"empty\":true}") == 0,
	    "a read");
	is_str(text, "ok (5 bytes to the model)", "says how much it read");
	ok(json_is_true(json_object_get(facts, "empty")), "the empty mark");
}

static void
test_prices(void)
{
	char *cause = NULL;
	double c = -1;
	json_t *d;
	char *t;

	ok(!price_known(), "no table: no price");
	ok(price_cost("m", 1000, 1000, 0, &c) == -1, "no cost");
	t = narrate_turn("m", 1000, 10, 2500, &d);
	is_str(t, "model turn (m): 1000 tokens in, 10 out, 2.5 s",
	    "a turn without prices");
	ok(json_object_get(d, "cost") == NULL, "has no cost");
	free(t);
	json_decref(d);
	ok(price_load("{\"m\":{\"input\":2,\"output\":10,\"cached_input\":1}}",
	       &cause) == 0,
	    "an inline table");
	ok(price_cost("m", 1000000, 100000, 500000, &c) == 0 && c > 1.99 &&
	        c < 2.51,
	    "input, cached input and output priced apart");
	ok(price_cost("other", 1, 1, 0, &c) == -1, "a model not in the table");
	t = narrate_turn("m", 1000000, 0, 0, &d);
	is_str(t,
	    "model turn (m): 1000000 tokens in, 0 out, 0.0 s, cost 2.0000",
	    "a priced turn says its cost");
	free(t);
	json_decref(d);
	ok(price_load("{\"m\":{\"input\":2}}", &cause) == -1 &&
	        strstr(cause, "both input and output") != NULL,
	    "a row without an output price");
	free(cause);
	ok(price_load("{\"m\":{\"input\":2,\"output\":1,\"x\":1}}", &cause) ==
	            -1 &&
	        strstr(cause, "unknown key") != NULL,
	    "an unknown key");
	free(cause);
	ok(price_load("[1]", &cause) == -1, "not an object");
	free(cause);
	ok(price_load("/nonexistent/prices.json", &cause) == -1 &&
	        strstr(cause, "cannot open") != NULL,
	    "a missing file");
	free(cause);
	ok(!price_known(), "a failed load leaves no table");
}

int
main(void)
{
	test_refused();
	test_error();
	test_command();
	test_file();
	test_prices();
	free(text);
	json_decref(facts);
	return tap_done();
}
