/*
 * Sandbox profiles: sandbox-profiles/STAGE.profile, parsed and checked.
 * See sandbox.c for what a profile may say and what is fixed.
 */
#include <sys/resource.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "sandbox-int.h"

#define SANDBOX_TMPFS_MIN   (1024 * 1024)
#define SANDBOX_TMPFS_MAX   (64ULL * 1024 * 1024 * 1024)
#define SANDBOX_MEMORY_MIN  (16ULL * 1024 * 1024)
#define SANDBOX_MEMORY_DFLT (2ULL << 30)
#define SANDBOX_SHM_DFLT    (64ULL * 1024 * 1024)
#define PROFILE_MAX_LINE    4096
#define PROFILE_MAX_STAGE   64

/*
 * Every profile sets all of these: a profile without a line gets the
 * default, so forgetting a line never means "unlimited".
 */
const struct rlimit_def rlimit_defs[] = {
    {"as", RLIMIT_AS, UNIT_SIZE, 16 * 1024 * 1024, 2ULL << 30},
    {"nproc", RLIMIT_NPROC, UNIT_COUNT, 1, 256},
    {"fsize", RLIMIT_FSIZE, UNIT_SIZE, 0, 256ULL << 20},
    {"nofile", RLIMIT_NOFILE, UNIT_COUNT, 16, 256},
    {"cpu", RLIMIT_CPU, UNIT_SECONDS, 1, 600},
    {"core", RLIMIT_CORE, UNIT_SIZE, 0, 0},
};

/* Profiles. */

void
sandbox_profile_free(struct sandbox_profile *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->nmounts; i++) {
		free(p->mounts[i].src);
		free(p->mounts[i].dst);
	}
	free(p->mounts);
	for (size_t i = 0; i < p->nenv; i++)
		free(p->env[i]);
	free(p->env);
	free(p->file);
	free(p->name);
	sandbox_cache_free(p->cache);
	free(p);
}

void
sandbox_cache_free(struct sandbox_cache *c)
{
	if (c == NULL)
		return;
	free(c->bwrap_env);
	free(c->bwrap);
	cgroup_host_clear(&c->host);
	free(c->bpf[0]);
	free(c->bpf[1]);
	free(c->etc_version);
	free(c->etc_manifest);
	free(c);
}

/* A size: digits and an optional K, M, G or T (powers of 1024). */
static int
parse_size(const char *s, uint64_t *out)
{
	char num[32];
	size_t len = strlen(s);
	unsigned shift = 0;

	if (len == 0 || len >= sizeof num)
		return -1;
	switch (s[len - 1]) {
	case 'K':
	case 'k':
		shift = 10;
		break;
	case 'M':
	case 'm':
		shift = 20;
		break;
	case 'G':
	case 'g':
		shift = 30;
		break;
	case 'T':
	case 't':
		shift = 40;
		break;
	}
	if (shift != 0)
		len--;
	memcpy(num, s, len);
	num[len] = '\0';
	if (parse_u64(num, 0, UINT64_MAX >> (shift + 2), out) == -1)
		return -1;
	*out <<= shift;
	return 0;
}

/* Does path equal dir or lie below it (component-wise)? */
static int
path_under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	if (strcmp(dir, "/") == 0)
		return 1;
	return strncmp(path, dir, n) == 0 &&
	       (path[n] == '\0' || path[n] == '/');
}

/*
 * An absolute, normal path: starts with '/', no "." or ".." component, no
 * empty component (except for "/" itself).  NULL when fine, else why not.
 */
static const char *
abs_path_check(const char *path)
{
	const char *p, *q;

	if (path[0] != '/')
		return "not an absolute path";
	if (strcmp(path, "/") == 0)
		return NULL;
	for (p = path + 1;; p = q + 1) {
		size_t n;

		q = strchr(p, '/');
		n = q == NULL ? strlen(p) : (size_t)(q - p);
		if (n == 0)
			return "empty path component";
		if ((n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.'))
			return "\".\" or \"..\" in path";
		if (q == NULL)
			break;
	}
	return NULL;
}

/*
 * The host paths a profile may never show the sandbox, whatever it says:
 * the whole root, and where home directories (and their ~/.ssh, tokens,
 * API keys) live.
 */
static const char *
source_check(const char *src)
{
	static const char *const denied[] = {"/root", "/home"};

	if (strcmp(src, "/") == 0)
		return "binding the whole root is not allowed";
	for (size_t i = 0; i < nitems(denied); i++) {
		if (path_under(src, denied[i]))
			return "home directories may not be bound";
	}
	return NULL;
}

/*
 * Places sandbox_run mounts itself, after the profile's mounts: a profile
 * mount there would be hidden or would shadow them.
 */
static const char *
dest_check(const char *dst)
{
	static const char *const reserved[] = {
	    SANDBOX_WORKSPACE, "/proc", "/dev", "/tmp"};

	if (strcmp(dst, "/") == 0)
		return "cannot mount over the root";
	for (size_t i = 0; i < nitems(reserved); i++) {
		if (path_under(dst, reserved[i]))
			return "destination is reserved (workspace, /proc, "
			       "/dev, /tmp)";
	}
	return NULL;
}

static int
env_name_ok(const char *s, size_t n)
{
	if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return 0;
	for (size_t i = 1; i < n; i++) {
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return 0;
	}
	return 1;
}

/* Split line into at most max whitespace-separated words; the count. */
static size_t
split_words(char *line, char **words, size_t max)
{
	size_t n = 0;
	char *p = line;

	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			return n;
		if (n == max)
			return max + 1;
		words[n++] = p;
		while (*p != '\0' && *p != ' ' && *p != '\t')
			p++;
		if (*p != '\0')
			*p++ = '\0';
	}
}

struct parse_state {
	int seen_workspace;
	int seen_tmpfs;
	int seen_shm;
	int seen_memory;
	int seen_network;
	int seen_rlimit[NRLIMITS];
};

/*
 * Parse one non-empty, non-comment line into p.  NULL when fine, else a
 * malloc'd message (without the FILE:LINE: prefix).
 */
static char *
profile_line(struct sandbox_profile *p, struct parse_state *st, char *line)
{
	char *w[4];
	size_t n;
	const char *why;

	/* env takes the rest of the line: values may hold spaces. */
	if (strncmp(line, "env", 3) == 0 &&
	    (line[3] == ' ' || line[3] == '\t')) {
		char *v = line + 4, *eq, *end;

		while (*v == ' ' || *v == '\t')
			v++;
		end = v + strlen(v);
		while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		eq = strchr(v, '=');
		if (eq == NULL || !env_name_ok(v, (size_t)(eq - v)))
			return xasprintf("env wants NAME=VALUE");
		p->env = xrealloc(p->env, (p->nenv + 1) * sizeof *p->env);
		p->env[p->nenv++] = xstrdup(v);
		return NULL;
	}

	n = split_words(line, w, nitems(w) - 1);
	if (n == 0)
		return xasprintf("empty directive");
	if (n > nitems(w) - 1)
		return xasprintf("too many words");

	if (strcmp(w[0], "workspace") == 0) {
		if (st->seen_workspace)
			return xasprintf("duplicate workspace line");
		if (n != 2 ||
		    (strcmp(w[1], "rw") != 0 && strcmp(w[1], "ro") != 0))
			return xasprintf("workspace wants rw or ro");
		st->seen_workspace = 1;
		p->workspace_rw = strcmp(w[1], "rw") == 0;
		return NULL;
	}
	if (strcmp(w[0], "tmpfs_size") == 0 || strcmp(w[0], "shm_size") == 0 ||
	    strcmp(w[0], "memory") == 0) {
		int *seen = w[0][0] == 't'   ? &st->seen_tmpfs
		            : w[0][0] == 's' ? &st->seen_shm
		                             : &st->seen_memory;
		uint64_t v, min = w[0][0] == 'm' ? SANDBOX_MEMORY_MIN
		                                 : SANDBOX_TMPFS_MIN;

		if (*seen)
			return xasprintf("duplicate %s line", w[0]);
		if (n != 2)
			return xasprintf("%s wants one size", w[0]);
		if (parse_size(w[1], &v) == -1 || v < min ||
		    v > SANDBOX_TMPFS_MAX)
			return xasprintf("bad size \"%s\" (%s to 64G, with an "
			                 "optional K, M, G or T)",
			    w[1], min == SANDBOX_MEMORY_MIN ? "16M" : "1M");
		*seen = 1;
		if (w[0][0] == 't')
			p->tmpfs_size = v;
		else if (w[0][0] == 's')
			p->shm_size = v;
		else
			p->memory = v;
		return NULL;
	}
	if (strcmp(w[0], "network") == 0) {
		if (st->seen_network)
			return xasprintf("duplicate network line");
		if (n != 2 || strcmp(w[1], "none") != 0)
			return xasprintf("network: only \"none\" is allowed");
		st->seen_network = 1;
		return NULL;
	}
	if (strcmp(w[0], "ro_bind") == 0 || strcmp(w[0], "ro_bind_try") == 0) {
		struct sandbox_mount *m;
		const char *dst;

		if (n != 2 && n != 3)
			return xasprintf("%s wants PATH [DEST]", w[0]);
		dst = n == 3 ? w[2] : w[1];
		if ((why = abs_path_check(w[1])) != NULL ||
		    (why = abs_path_check(dst)) != NULL ||
		    (why = source_check(w[1])) != NULL ||
		    (why = dest_check(dst)) != NULL)
			return xasprintf("%s: %s", w[0], why);
		p->mounts =
		    xrealloc(p->mounts, (p->nmounts + 1) * sizeof *p->mounts);
		m = &p->mounts[p->nmounts++];
		m->kind = strcmp(w[0], "ro_bind") == 0 ? MOUNT_RO_BIND
		                                       : MOUNT_RO_BIND_TRY;
		m->src = xstrdup(w[1]);
		m->dst = xstrdup(dst);
		return NULL;
	}
	if (strcmp(w[0], "symlink") == 0) {
		struct sandbox_mount *m;

		if (n != 3)
			return xasprintf("symlink wants TARGET LINK");
		if ((why = abs_path_check(w[2])) != NULL ||
		    (why = dest_check(w[2])) != NULL)
			return xasprintf("symlink: %s", why);
		p->mounts =
		    xrealloc(p->mounts, (p->nmounts + 1) * sizeof *p->mounts);
		m = &p->mounts[p->nmounts++];
		m->kind = MOUNT_SYMLINK;
		m->src = xstrdup(w[1]);
		m->dst = xstrdup(w[2]);
		return NULL;
	}
	if (strcmp(w[0], "rlimit") == 0) {
		const struct rlimit_def *d = NULL;
		size_t i;
		uint64_t v;
		int rc;

		if (n != 3)
			return xasprintf("rlimit wants NAME VALUE");
		for (i = 0; i < NRLIMITS; i++) {
			if (strcmp(w[1], rlimit_defs[i].name) == 0) {
				d = &rlimit_defs[i];
				break;
			}
		}
		if (d == NULL)
			return xasprintf("unknown rlimit \"%s\" (as, nproc, "
			                 "fsize, nofile, cpu, core)",
			    w[1]);
		if (st->seen_rlimit[i])
			return xasprintf("duplicate rlimit %s", d->name);
		if (d->unit == UNIT_SIZE)
			rc = parse_size(w[2], &v);
		else
			rc = parse_u64(w[2], 0, 1u << 30, &v);
		if (rc == -1)
			return xasprintf("bad %s \"%s\" for rlimit %s",
			    d->unit == UNIT_SIZE ? "size" : "number", w[2],
			    d->name);
		if (v < d->min)
			return xasprintf("rlimit %s below %llu", d->name,
			    (unsigned long long)d->min);
		st->seen_rlimit[i] = 1;
		p->rlimits[i] = v;
		return NULL;
	}
	return xasprintf("unknown directive \"%s\"", w[0]);
}

int
sandbox_profile_load(const char *dir, const char *stage,
    struct sandbox_profile **out, char **cause)
{
	struct sandbox_profile *p;
	struct parse_state st;
	FILE *f;
	char *line = NULL, *msg;
	size_t size = 0;
	ssize_t len;
	unsigned lineno = 0;

	*out = NULL;
	/* The stage names a file in dir: no way out of it. */
	if (stage[0] == '\0' || strlen(stage) > PROFILE_MAX_STAGE ||
	    strspn(stage, "abcdefghijklmnopqrstuvwxyz0123456789_-") !=
	        strlen(stage)) {
		*cause = xasprintf("bad sandbox stage name \"%s\"", stage);
		return -1;
	}

	p = xcalloc(1, sizeof *p);
	p->file = xasprintf("%s/%s.profile", dir, stage);
	p->name = xstrdup(stage);
	p->cache = xcalloc(1, sizeof *p->cache);
	p->tmpfs_size = 64 * 1024 * 1024;
	p->shm_size = SANDBOX_SHM_DFLT;
	p->memory = SANDBOX_MEMORY_DFLT;
	for (size_t i = 0; i < NRLIMITS; i++)
		p->rlimits[i] = rlimit_defs[i].dflt;
	memset(&st, 0, sizeof st);

	if ((f = fopen(p->file, "re")) == NULL) {
		*cause = xasprintf("%s: %s", p->file, strerror(errno));
		goto fail;
	}
	while ((len = getline(&line, &size, f)) != -1) {
		char *s = line;

		lineno++;
		if ((size_t)len != strlen(line)) {
			*cause = xasprintf(
			    "%s:%u: NUL byte in line", p->file, lineno);
			goto fail_close;
		}
		if (len > PROFILE_MAX_LINE) {
			*cause = xasprintf("%s:%u: line longer than %d bytes",
			    p->file, lineno, PROFILE_MAX_LINE);
			goto fail_close;
		}
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (len > 0 && line[len - 1] == '\r')
			line[--len] = '\0';
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0' || *s == '#')
			continue;
		if ((msg = profile_line(p, &st, s)) != NULL) {
			*cause = xasprintf("%s:%u: %s", p->file, lineno, msg);
			free(msg);
			goto fail_close;
		}
	}
	if (ferror(f)) {
		*cause = xasprintf("%s: %s", p->file, strerror(errno));
		goto fail_close;
	}
	fclose(f);
	free(line);
	line = NULL;
	/* No silent default for the one choice that matters most. */
	if (!st.seen_workspace) {
		*cause = xasprintf("%s:%u: no workspace line (workspace rw|ro)",
		    p->file, lineno);
		goto fail;
	}
	/*
	 * The tmpfs are memory: what a command writes there counts against
	 * its memory like what it allocates (the cgroup charges both).
	 * Without cgroups their sizes are all that bounds them, so together
	 * they must fit the budget.
	 */
	if (p->tmpfs_size + p->shm_size > p->memory) {
		*cause = xasprintf(
		    "%s: tmpfs_size + shm_size (%llu MiB) exceed "
		    "memory (%llu MiB)",
		    p->file,
		    (unsigned long long)((p->tmpfs_size + p->shm_size) >> 20),
		    (unsigned long long)(p->memory >> 20));
		goto fail;
	}
	*out = p;
	return 0;

fail_close:
	fclose(f);
fail:
	free(line);
	sandbox_profile_free(p);
	return -1;
}
