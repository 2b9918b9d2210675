/* gc.c: retention for finished tasks (worktrees, events, journal, audit
 * files), shared by `gc` without a service and POST /v1/gc. */
#ifndef GC_H
#define GC_H

#include <jansson.h>

#include "store.h"

int gc_run(struct store *, unsigned days, json_t **report, char **cause);

#endif
