/*
 * The model providers' HTTP APIs as data: their defaults, how the key is
 * sent and how a URL is made.  The worker calls the API with them; the
 * supervisor's `doctor` probes the same endpoint with the same headers, so
 * the two cannot drift apart.
 */
#include <stdio.h>
#include <string.h>

#include "common.h"

static const struct provider providers[] = {
    {"openai", "https://api.openai.com/v1", "gpt-4o-mini", 0,
        "Authorization: Bearer ", NULL},
    /* Both https://api.anthropic.com and .../v1 are taken as the base. */
    {"anthropic", "https://api.anthropic.com", "claude-sonnet-4-5", 1,
        "x-api-key: ", "anthropic-version: 2023-06-01"},
};

const struct provider *
provider_find(const char *name)
{
	for (size_t i = 0; name != NULL && i < nitems(providers); i++) {
		if (strcmp(providers[i].name, name) == 0)
			return &providers[i];
	}
	return NULL;
}

char *
provider_url(const struct provider *p, const char *base, const char *path)
{
	size_t n;

	if (base == NULL || *base == '\0')
		base = p->base;
	n = strlen(base);
	while (n > 0 && base[n - 1] == '/')
		n--;
	return xasprintf("%.*s%s%s", (int)n, base,
	    p->add_v1 && !(n >= 3 && memcmp(base + n - 3, "/v1", 3) == 0)
	        ? "/v1"
	        : "",
	    path);
}
