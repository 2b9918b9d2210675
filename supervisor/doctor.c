/*
 * The doctor's checks that need the worker's own code: the sandbox probe,
 * the profile parser and the choice of limits (worker/sandbox.c), so that
 * `doctor` judges the sandbox exactly as a worker will.
 */
#include <stdlib.h>

#include "common.h"
#include "sandbox.h"

int doctor_sandbox(char **cause);
int doctor_profile(const char *dir, const char *stage, char **cause);
int doctor_limits(char **what);

int
doctor_sandbox(char **cause)
{
	return sandbox_check(cause);
}

int
doctor_profile(const char *dir, const char *stage, char **cause)
{
	struct sandbox_profile *p;

	if (sandbox_profile_load(dir, stage, &p, cause) == -1)
		return -1;
	sandbox_profile_free(p);
	return 0;
}

int
doctor_limits(char **what)
{
	return sandbox_limits(what) == CGROUP_NONE ? 0 : 1;
}
