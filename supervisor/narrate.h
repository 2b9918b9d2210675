/* narrate.c: the log's account of a journal entry. */
#ifndef NARRATE_H
#define NARRATE_H

#include <stdint.h>

#include <jansson.h>

/*
 * The result event of a journal entry of kind "tool" (a tool's result) or
 * "command" (the verification command's): 0 with *text (malloc'd, valid
 * UTF-8, for people: the outcome on its first line, a command's output
 * tail below) and *data (its facts: tool, call_id, outcome, error,
 * exit_status, signal, timed_out, limit, duration_ms, output_tail, path,
 * bytes, lines_added, lines_removed); -1 when the entry is of another kind
 * or not such a result (nothing to tell).
 */
int narrate_journal(
    const char *kind, const char *data, char **text, json_t **facts);

/* The duration a journaled reply says its turn took (0 when none), and
 * the model it names (a fallback model's), malloc'd, or NULL. */
int64_t narrate_reply(const char *data, char **model);
/*
 * The log line of one model turn: its model, tokens and time, and its
 * cost when ORCH_LLM_PRICES prices the model (malloc'd); *data its facts
 * (model, tokens_in, tokens_out, duration_ms, cost).
 */
char *narrate_turn(const char *model, int64_t tokens_in, int64_t tokens_out,
    int64_t duration_ms, json_t **data);

#endif
