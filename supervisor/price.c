/*
 * The price table: what a million tokens of each model cost, from
 * ORCH_LLM_PRICES, so that show, stats, the log and the API can turn
 * tokens into money.  Without a table nothing pretends to know a cost,
 * and a model the table does not name has none.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common.h"
#include "price.h"

#define PRICE_MAX_FILE (1024 * 1024)
#define PRICE_MAX      1e6 /* per million tokens: anything above is a typo */

static json_t *prices; /* the validated table, or NULL */

/* One model's row: 0, or -1 with *cause. */
static int
price_check_row(const char *model, json_t *row, char **cause)
{
	static const char *const keys[] = {"input", "output", "cached_input"};
	const char *key;
	json_t *v;

	if (!json_is_object(row)) {
		*cause = xasprintf("model \"%s\": give an object "
		                   "{\"input\": X, \"output\": Y}",
		    model);
		return -1;
	}
	json_object_foreach(row, key, v) {
		size_t i;

		for (i = 0; i < nitems(keys); i++) {
			if (strcmp(key, keys[i]) == 0)
				break;
		}
		if (i == nitems(keys)) {
			*cause = xasprintf("model \"%s\": unknown key \"%s\" "
			                   "(input, output, cached_input)",
			    model, key);
			return -1;
		}
		if (!json_is_number(v) || json_number_value(v) < 0 ||
		    json_number_value(v) > PRICE_MAX) {
			*cause = xasprintf("model \"%s\": %s must be a number "
			                   "from 0 to 1000000 (per million "
			                   "tokens)",
			    model, key);
			return -1;
		}
	}
	if (json_object_get(row, "input") == NULL ||
	    json_object_get(row, "output") == NULL) {
		*cause = xasprintf(
		    "model \"%s\": both input and output prices are needed",
		    model);
		return -1;
	}
	return 0;
}

int
price_load(const char *spec, char **cause)
{
	json_error_t jerr;
	json_t *j;
	const char *model;
	json_t *row;

	json_decref(prices);
	prices = NULL;
	if (spec == NULL || *spec == '\0')
		return 0;
	if (spec[strspn(spec, " \t\n")] == '{')
		j = json_loads(spec, JSON_REJECT_DUPLICATES, &jerr);
	else {
		FILE *f = fopen(spec, "re");
		char *buf;
		size_t n;

		if (f == NULL) {
			*cause = xasprintf("cannot open %s (give inline JSON "
			                   "or a file): %s",
			    spec, strerror(errno));
			return -1;
		}
		buf = xmalloc(PRICE_MAX_FILE + 1);
		n = fread(buf, 1, PRICE_MAX_FILE + 1, f);
		fclose(f);
		if (n > PRICE_MAX_FILE) {
			free(buf);
			*cause = xasprintf(
			    "%s is over %d bytes", spec, PRICE_MAX_FILE);
			return -1;
		}
		j = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &jerr);
		free(buf);
	}
	if (j == NULL) {
		*cause =
		    xasprintf("not JSON: %s (line %d)", jerr.text, jerr.line);
		return -1;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		*cause = xstrdup("give an object {\"MODEL\": {\"input\": X, "
		                 "\"output\": Y, \"cached_input\": Z}}, prices "
		                 "per million tokens");
		return -1;
	}
	json_object_foreach(j, model, row) {
		if (price_check_row(model, row, cause) == -1) {
			json_decref(j);
			return -1;
		}
	}
	prices = j;
	return 0;
}

int
price_known(void)
{
	return prices != NULL;
}

int
price_cost(
    const char *model, int64_t in, int64_t out, int64_t cached_in, double *cost)
{
	json_t *row, *c;
	double pin, pout, pcached;

	if (prices == NULL || model == NULL ||
	    (row = json_object_get(prices, model)) == NULL)
		return -1;
	pin = json_number_value(json_object_get(row, "input"));
	pout = json_number_value(json_object_get(row, "output"));
	c = json_object_get(row, "cached_input");
	pcached = c != NULL ? json_number_value(c) : pin;
	if (cached_in > in)
		cached_in = in;
	*cost = ((double)(in - cached_in) * pin + (double)cached_in * pcached +
	            (double)out * pout) /
	        1e6;
	return 0;
}
