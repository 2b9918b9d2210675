/*
 * libFuzzer target for the sandbox profile parser: each input is written as
 * a profile file and loaded; a load either succeeds or fails with a cause,
 * never crashes or leaks.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common.h"
#include "worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[] = "/tmp/fuzz-profile.XXXXXX";
static int made;

static void
cleanup(void)
{
	char path[64];

	snprintf(path, sizeof path, "%s/fuzz.profile", dir);
	unlink(path);
	rmdir(dir);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sandbox_profile *p;
	char *cause = NULL, path[64];
	FILE *f;

	/* Once: the name mkdtemp picks may itself end in 'X'. */
	if (!made) {
		if (mkdtemp(dir) == NULL)
			abort();
		made = 1;
		atexit(cleanup);
	}
	snprintf(path, sizeof path, "%s/fuzz.profile", dir);
	if ((f = fopen(path, "w")) == NULL)
		abort();
	fwrite(data, 1, size, f);
	fclose(f);
	if (sandbox_profile_load(dir, "fuzz", &p, &cause) == 0) {
		if (cause != NULL)
			abort();
		sandbox_profile_free(p);
	} else {
		if (cause == NULL)
			abort();
		free(cause);
	}
	return 0;
}
