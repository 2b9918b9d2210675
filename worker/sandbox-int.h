/*
 * sandbox.c, profile.c and seccomp.c: what they share and nobody else
 * needs.  The API is sandbox.h.
 */
#ifndef SANDBOX_INT_H
#define SANDBOX_INT_H

#include <stdint.h>

#include "sandbox.h"

#define SANDBOX_WORKSPACE "/workspace"

enum mount_kind {
	MOUNT_RO_BIND,
	MOUNT_RO_BIND_TRY,
	MOUNT_SYMLINK,
};

struct sandbox_mount {
	enum mount_kind kind;
	char *src; /* source path, or the symlink's target */
	char *dst; /* path inside the sandbox */
};

enum rlimit_unit {
	UNIT_SIZE,    /* bytes, K/M/G/T suffixes (powers of 1024) */
	UNIT_COUNT,   /* a plain number */
	UNIT_SECONDS, /* a plain number of seconds */
};

struct rlimit_def {
	const char *name;
	int resource;
	enum rlimit_unit unit;
	uint64_t min;
	uint64_t dflt; /* when the profile has no line for it */
};

/* Its size here, so that a table of another length does not compile. */
#define NRLIMITS         6
#define RLIMIT_NPROC_IDX 1 /* "nproc" in rlimit_defs: the pids budget */
extern const struct rlimit_def rlimit_defs[NRLIMITS];

/*
 * What sandbox_run finds or builds once per profile and keeps for the
 * next runs (a worker runs many commands under one profile).
 */
struct sandbox_cache {
	char *bwrap_env; /* the ORCH_BWRAP that bwrap was found with */
	char *bwrap;     /* its path, or NULL: not looked for yet */
	int host_done;   /* host holds the detected cgroups */
	struct cgroup_host host;
	void *bpf[2]; /* the seccomp filter, [nocgroup] */
	size_t bpflen[2];
	int etc_failed;     /* no copy: per-path binds (logged once) */
	char *etc_version;  /* the /etc copy last found current */
	char *etc_manifest; /* and its manifest */
	size_t etc_manlen;
};

struct sandbox_profile {
	char *file; /* for messages */
	char *name; /* the stage: STAGE.profile */
	struct sandbox_cache *cache;
	int workspace_rw;
	uint64_t tmpfs_size;
	uint64_t shm_size; /* /dev/shm */
	uint64_t memory;   /* the whole command: processes, tmpfs, shm */
	struct sandbox_mount *mounts;
	size_t nmounts;
	char **env; /* NAME=VALUE, after the fixed ones */
	size_t nenv;
	uint64_t rlimits[NRLIMITS];
};

/*
 * seccomp.c: the filter as BPF in a memfd for bwrap's --seccomp; built
 * once per cache and value of nocgroup, copied into a new memfd per call.
 */
int seccomp_memfd(struct sandbox_cache *, int nocgroup, char **cause);

/*
 * etcdir.c: the profile's lines below /etc (etcdir_mount) as one
 * read-only directory in the cache directory, kept up to date with its
 * sources: 0 with *dir (malloc'd) to bind at /etc, or -1 with *cause.
 */
int etcdir_mount(const struct sandbox_mount *);
int etcdir_get(const struct sandbox_profile *, const char *cache, char **dir,
    char **cause);
void sandbox_cache_free(struct sandbox_cache *);

#endif
