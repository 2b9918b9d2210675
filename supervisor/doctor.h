/* doctor.c: worker/sandbox.c's checks, for `doctor`: 0, or -1 and *cause
 * (with the fix). */
#ifndef DOCTOR_H
#define DOCTOR_H

int doctor_sandbox(char **cause);
int doctor_profile(const char *dir, const char *stage, char **cause);
/* What bounds a command's memory and processes here (*what malloc'd):
 * 0 without cgroups, else 1. */
int doctor_limits(char **what);

#endif
