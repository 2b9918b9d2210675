/* price.c: the model price table (ORCH_LLM_PRICES), tokens into money. */
#ifndef PRICE_H
#define PRICE_H

#include <stdint.h>

/*
 * Load the table from spec: inline JSON (it starts with "{") or the path
 * of a file holding it:
 *   {"MODEL": {"input": X, "output": Y, "cached_input": Z}, ...}
 * X, Y and Z per million tokens, numbers from 0 to 1e6; cached_input is
 * optional (cached input tokens cost input when it is left out).  0, or
 * -1 with *cause (malloc'd) naming what is wrong.  A later load replaces
 * the table; NULL empties it.
 */
int price_load(const char *spec, char **cause);
/* Whether a table is loaded: without one nothing shows a cost. */
int price_known(void);
/* The cost of tokens of model; -1 when the model has no price. */
int price_cost(const char *model, int64_t in, int64_t out, int64_t cached_in,
    double *cost);

#endif
