/*
 * The sandbox every command of the agent runs in: profiles (profile.c),
 * the seccomp filter (seccomp.c), bubblewrap (sandbox.c) and cgroups
 * (cgroup.c).  A library of its own (orchsandbox): the worker runs
 * commands with it, the supervisor's doctor probes it and checks the
 * profiles.
 */
#ifndef SANDBOX_H
#define SANDBOX_H

#include <stddef.h>
#include <stdint.h>

/* sandbox.c: every command the agent runs goes through bubblewrap. */

#define SANDBOX_MAX_OUTPUT (64 * 1024) /* bytes of output kept: head+tail */

struct sandbox_profile; /* one stage's profile, parsed */

/*
 * Read and validate sandbox-profiles/STAGE.profile from dir.  A bad line is
 * an error naming the file and the line.  *cause is malloc'd.
 */
int sandbox_profile_load(const char *dir, const char *stage,
    struct sandbox_profile **, char **cause);
void sandbox_profile_free(struct sandbox_profile *);

struct sandbox_result {
	int exited; /* 1: exit_status is valid */
	int exit_status;
	int signal;    /* killed by this signal, or 0 */
	int timed_out; /* the wall-clock limit killed it */
	char *limit;   /* malloc'd name of an rlimit it hit, or NULL */
	uint64_t duration_ms;
	char *output;          /* malloc'd: stdout+stderr, head and tail */
	size_t output_dropped; /* bytes left out of the middle */
};

/*
 * Run command (with /bin/sh -c) inside bubblewrap under profile, with
 * workspace mounted at the profile's fixed path, a scrubbed environment,
 * only fds 0-2, the seccomp filter, rlimits, a memory and a pids cgroup
 * where the host gives them (else the limits of sandbox_limits' "no
 * cgroup" way), and a wall-clock limit of
 * timeout_s that kills the whole sandbox (SIGTERM, then SIGKILL after a
 * grace period).  heartbeat(arg) is called at least every second while it
 * runs.  Returns 0 with *res filled, or -1 with *cause when the sandbox
 * could not be started at all (bwrap missing, namespaces refused): never
 * runs anything outside the sandbox.
 */
int sandbox_run(const struct sandbox_profile *, const char *workspace,
    const char *command, unsigned timeout_s, void (*heartbeat)(void *),
    void *arg, struct sandbox_result *res, char **cause);
void sandbox_result_clear(struct sandbox_result *);
/* The result as the JSON text the model and the journal get. */
char *sandbox_result_json(const struct sandbox_result *);
/* Check that bwrap exists and can create its namespaces: 0, or -1 with a
 * *cause that says why and how to fix it. */
int sandbox_check(char **cause);
/*
 * How the memory and process limits of a command are enforced here: a
 * malloc'd line for doctor and the logs ("cgroup v1 (...)", or "no cgroup:
 * why; ..."); returns the enum cgroup_mode.  ORCH_SANDBOX_CGROUP=none (a
 * test aid) forces the way without cgroups.
 */
int sandbox_limits(char **what);

/* cgroup.c: a memory and a pids cgroup per sandboxed command. */

enum cgroup_mode {
	CGROUP_NONE,
	CGROUP_V1,
	CGROUP_V2,
};

struct cgroup_host {
	enum cgroup_mode mode;
	char *memory; /* v1 memory, or v2: where the groups are made */
	char *pids;   /* v1 pids; NULL otherwise */
	char *what;   /* what applies, or why none does */
};

/*
 * Find where this process may make cgroups, from its /proc/self/cgroup and
 * /proc/self/mountinfo (paths, so that tests can give others): 0 with
 * h->mode V1 or V2, or -1 with CGROUP_NONE; h->what says why.  May enable
 * the memory and pids controllers below a delegated v2 cgroup.
 */
int cgroup_host_detect(
    const char *proc_cgroup, const char *mountinfo, struct cgroup_host *h);
void cgroup_host_clear(struct cgroup_host *);
/*
 * Kill what is left in the command groups of workers that are gone and
 * remove the groups (the supervisor, after reaping a worker): the number
 * removed.  Blocks while a group's processes die (at most about a second).
 */
int cgroup_host_sweep(const struct cgroup_host *);

struct cgroup_cmd {
	char *dir[2]; /* memory (v1) or the one v2 group; pids (v1) */
	int procs[2]; /* their cgroup.procs open for writing, or -1 */
};

void cgroup_cmd_init(struct cgroup_cmd *);
/* Make the command's groups with these limits (nothing with CGROUP_NONE). */
int cgroup_cmd_create(const struct cgroup_host *, uint64_t memory,
    uint64_t pids, struct cgroup_cmd *, char **cause);
/* "memory" after an OOM kill, "pids" after a refused fork, else NULL. */
const char *cgroup_cmd_limit(const struct cgroup_cmd *, enum cgroup_mode);
/* Kill what is left in the groups and remove them. */
void cgroup_cmd_destroy(struct cgroup_cmd *);

#endif
