/*
 * A memory and a pids cgroup per sandboxed command, where the host gives
 * one.
 *
 * rlimits count per process (RLIMIT_AS) or per user (RLIMIT_NPROC), so
 * they cannot bound what a command holds in all: memfds, tmpfs files and
 * shared memory live outside any process's address space.  A memory cgroup
 * charges every page the command's processes allocate, page cache of tmpfs
 * and memfds included, and a pids cgroup counts only the command's own
 * processes.
 *
 * Where: below the cgroup the worker itself is in (from /proc/self/cgroup),
 * so a limit the administrator put on the service still holds for all of
 * its commands together.
 *  - cgroup v2 when that cgroup has the memory and pids controllers and is
 *    writable by us (delegation: systemd's Delegate=yes, or root);
 *  - else cgroup v1 when the memory and pids hierarchies are writable
 *    (in practice: the service runs as root);
 *  - else none, and sandbox.c falls back to capped tmpfs, a seccomp filter
 *    without memfd_create and SysV shm, and a per-namespace RLIMIT_NPROC.
 *
 * A command's group is "orch-sbx.WORKERPID.N".  The worker moves bwrap
 * into it as bwrap starts, and the sandbox's first process before bwrap
 * lets it start the command (sandbox.c), so nothing of the command ever
 * runs outside it.  After the
 * command, stragglers are killed and the group removed; groups of workers
 * that died (their pid is gone) are swept when the next one is created.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "sandbox.h"

#define CGROUP_PREFIX      "orch-sbx."
#define CGROUP_MAX_FILE    65536
#define CGROUP_RMDIR_TRIES 200 /* of 5 ms: a second for stragglers to die */

/* A small file's text (bounded), or NULL with errno. */
static char *
file_text(const char *path)
{
	char *buf;
	size_t len = 0;
	ssize_t n;
	int fd, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return NULL;
	buf = xmalloc(CGROUP_MAX_FILE + 1);
	while (len < CGROUP_MAX_FILE &&
	       (n = read(fd, buf + len, CGROUP_MAX_FILE - len)) != 0) {
		if (n == -1) {
			if (errno == EINTR)
				continue;
			saved = errno;
			free(buf);
			close(fd);
			errno = saved;
			return NULL;
		}
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(fd);
	return buf;
}

/* Write text into an existing control file: 0, or -1 with errno. */
static int
file_put(const char *dir, const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", dir, name);
	size_t len = strlen(text);
	ssize_t n;
	int fd, saved;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	free(path);
	if (fd == -1)
		return -1;
	n = write(fd, text, len);
	saved = errno;
	close(fd);
	if (n != (ssize_t)len) {
		errno = n == -1 ? saved : EIO;
		return -1;
	}
	return 0;
}

/* Is word one of the separated words of list? */
static int
word_in(const char *list, const char *word, const char *seps)
{
	size_t n = strlen(word);

	for (const char *p = list; *p != '\0';) {
		size_t k = strcspn(p, seps);

		if (k == n && strncmp(p, word, n) == 0)
			return 1;
		p += k;
		p += strspn(p, seps);
	}
	return 0;
}

/*
 * The cgroup path of this process in the hierarchy that has controller
 * (v1), or in the unified one (controller NULL), from /proc/self/cgroup's
 * "ID:CONTROLLERS:PATH" lines.  malloc'd, or NULL.
 */
static char *
own_path(const char *text, const char *controller)
{
	for (const char *line = text; *line != '\0';) {
		size_t len = strcspn(line, "\n");
		char *l = xstrndup(line, len), *c1, *c2, *res = NULL;

		line += len + (line[len] == '\n');
		if ((c1 = strchr(l, ':')) != NULL &&
		    (c2 = strchr(c1 + 1, ':')) != NULL) {
			*c1 = *c2 = '\0';
			if (controller == NULL
			        ? strcmp(l, "0") == 0 && c1[1] == '\0'
			        : word_in(c1 + 1, controller, ","))
				res = xstrdup(c2 + 1);
		}
		free(l);
		if (res != NULL)
			return res;
	}
	return NULL;
}

/*
 * Where the hierarchy of fstype ("cgroup" with controller among its
 * options, or "cgroup2") holding path is mounted: the directory of path,
 * malloc'd, or NULL.  mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS
 * [TAGS] - FSTYPE SOURCE SUPEROPTS".
 */
static char *
hierarchy_dir(const char *mountinfo, const char *fstype, const char *controller,
    const char *path)
{
	for (const char *line = mountinfo; *line != '\0';) {
		size_t len = strcspn(line, "\n");
		char *l = xstrndup(line, len), *w[6], *dash, *save = NULL;
		char *res = NULL;
		size_t n = 0;

		line += len + (line[len] == '\n');
		dash = strstr(l, " - ");
		if (dash == NULL)
			goto next;
		*dash = '\0';
		for (char *t = strtok_r(l, " ", &save); t != NULL && n < 5;
		     t = strtok_r(NULL, " ", &save))
			w[n++] = t;
		save = NULL;
		if (n < 5)
			goto next;
		w[0] = strtok_r(dash + 3, " ", &save); /* fstype */
		(void)strtok_r(NULL, " ", &save);      /* source */
		w[5] = strtok_r(NULL, " ", &save);     /* super options */
		if (w[0] == NULL || strcmp(w[0], fstype) != 0)
			goto next;
		if (controller != NULL &&
		    (w[5] == NULL || !word_in(w[5], controller, ",")))
			goto next;
		/* Escaped names (\040) are not worth decoding: skip them. */
		if (strchr(w[3], '\\') != NULL || strchr(w[4], '\\') != NULL)
			goto next;
		if (strcmp(w[3], "/") == 0)
			res = xasprintf(
			    "%s%s", w[4], strcmp(path, "/") == 0 ? "" : path);
		else if (strncmp(path, w[3], strlen(w[3])) == 0 &&
		         (path[strlen(w[3])] == '\0' ||
		             path[strlen(w[3])] == '/'))
			res = xasprintf("%s%s", w[4], path + strlen(w[3]));
	next:
		free(l);
		if (res != NULL)
			return res;
	}
	return NULL;
}

static int
writable(const char *dir, const char *file)
{
	char *p = xasprintf("%s/%s", dir, file);
	int ok = access(dir, W_OK | X_OK) == 0 && access(p, W_OK) == 0;

	free(p);
	return ok;
}

/* cgroup v2 at dir: "" when usable, else a malloc'd why-not. */
static char *
v2_check(const char *dir)
{
	char *path, *text;
	int ok;

	path = xasprintf("%s/cgroup.controllers", dir);
	text = file_text(path);
	free(path);
	if (text == NULL)
		return xasprintf("cgroup v2: %s: %s", dir, strerror(errno));
	ok = word_in(text, "memory", " \n") && word_in(text, "pids", " \n");
	free(text);
	if (!ok)
		return xasprintf("cgroup v2: the memory and pids controllers "
		                 "are not available in %s",
		    dir);
	if (!writable(dir, "cgroup.subtree_control") ||
	    !writable(dir, "cgroup.procs"))
		return xasprintf("cgroup v2: %s is not delegated to this user "
		                 "(not writable)",
		    dir);
	path = xasprintf("%s/cgroup.subtree_control", dir);
	text = file_text(path);
	free(path);
	ok = text != NULL && word_in(text, "memory", " \n") &&
	     word_in(text, "pids", " \n");
	free(text);
	/*
	 * Enabling them fails with EBUSY while processes live in dir itself
	 * (no internal processes): the service must then run in a leaf of
	 * its delegated subtree.
	 */
	if (!ok &&
	    file_put(dir, "cgroup.subtree_control", "+memory +pids") == -1)
		return xasprintf("cgroup v2: cannot enable memory and pids "
		                 "below %s: %s%s",
		    dir, strerror(errno),
		    errno == EBUSY ? " (the service's processes are in it: "
		                     "run the service in a leaf of a "
		                     "delegated cgroup)"
		                   : "");
	return xstrdup("");
}

void
cgroup_host_clear(struct cgroup_host *h)
{
	free(h->memory);
	free(h->pids);
	free(h->what);
	memset(h, 0, sizeof *h);
}

int
cgroup_host_detect(
    const char *proc_cgroup, const char *mountinfo, struct cgroup_host *h)
{
	char *cg = NULL, *mi = NULL, *p2 = NULL, *pm = NULL, *pp = NULL;
	char *why2 = NULL, *why1 = NULL;

	memset(h, 0, sizeof *h);
	h->mode = CGROUP_NONE;
	if ((cg = file_text(proc_cgroup)) == NULL ||
	    (mi = file_text(mountinfo)) == NULL) {
		h->what = xasprintf("cannot read %s: %s",
		    cg == NULL ? proc_cgroup : mountinfo, strerror(errno));
		goto out;
	}

	if ((p2 = own_path(cg, NULL)) == NULL ||
	    (h->memory = hierarchy_dir(mi, "cgroup2", NULL, p2)) == NULL)
		why2 = xstrdup("cgroup v2: no unified hierarchy");
	else if (*(why2 = v2_check(h->memory)) == '\0') {
		h->mode = CGROUP_V2;
		h->what = xasprintf(
		    "cgroup v2 (memory and pids below %s)", h->memory);
		goto out;
	}
	free(h->memory);
	h->memory = NULL;

	if ((pm = own_path(cg, "memory")) == NULL ||
	    (pp = own_path(cg, "pids")) == NULL ||
	    (h->memory = hierarchy_dir(mi, "cgroup", "memory", pm)) == NULL ||
	    (h->pids = hierarchy_dir(mi, "cgroup", "pids", pp)) == NULL)
		why1 = xstrdup("cgroup v1: no memory and pids hierarchies");
	else if (!writable(h->memory, "cgroup.procs") ||
	         !writable(h->pids, "cgroup.procs"))
		why1 = xasprintf("cgroup v1: %s and %s are not writable (the "
		                 "service is not root)",
		    h->memory, h->pids);
	else {
		h->mode = CGROUP_V1;
		h->what =
		    xasprintf("cgroup v1 (memory below %s, pids below %s)",
		        h->memory, h->pids);
		goto out;
	}
	free(h->memory);
	free(h->pids);
	h->memory = h->pids = NULL;
	h->what = xasprintf("%s; %s", why2, why1);

out:
	free(why1);
	free(why2);
	free(pm);
	free(pp);
	free(p2);
	free(mi);
	free(cg);
	return h->mode == CGROUP_NONE ? -1 : 0;
}

/* Kill what is left in dir and remove it; 0, or -1 (logged). */
static int
group_remove(const char *dir)
{
	char *procs = xasprintf("%s/cgroup.procs", dir);
	int rc = -1, saved = 0;

	for (int i = 0; i < CGROUP_RMDIR_TRIES; i++) {
		char *text;

		if (rmdir(dir) == 0 || errno == ENOENT) {
			rc = 0;
			break;
		}
		saved = errno;
		if (errno != EBUSY)
			break;
		/* cgroup.kill (v2, Linux 5.14) takes forks in flight too. */
		if (file_put(dir, "cgroup.kill", "1") == -1 &&
		    (text = file_text(procs)) != NULL) {
			for (char *p = text; *p != '\0';) {
				long pid = strtol(p, &p, 10);

				if (pid > 1)
					(void)kill((pid_t)pid, SIGKILL);
				p += strspn(p, "\n");
				if (*p != '\0' && (*p < '0' || *p > '9'))
					break;
			}
			free(text);
		}
		usleep(5000);
	}
	if (rc == -1)
		log_warnx("sandbox: cannot remove cgroup %s: %s", dir,
		    strerror(saved));
	free(procs);
	return rc;
}

/*
 * Remove the groups of workers that are gone (a kill -9 mid-command),
 * killing what is still in them: a sandbox must not outlive its worker, and
 * bwrap has a window (its parent killed between its clone and the child's
 * own parent-death signal) where the sandbox's init is orphaned and waits
 * forever, outside the groups (sandbox_release would have moved it).  It
 * is still in its worker's process group, killed here too: the service
 * does that when it reaps a worker, but not for the workers of a service
 * that was killed.  (A process group outlives its leader and keeps its
 * number from being reused.)  Returns the number of groups removed.
 */
static int
sweep(const char *parent)
{
	DIR *d;
	struct dirent *e;
	int n = 0;

	if ((d = opendir(parent)) == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		const char *s = e->d_name;
		char *end, *dir;
		long pid;

		if (strncmp(s, CGROUP_PREFIX, strlen(CGROUP_PREFIX)) != 0)
			continue;
		pid = strtol(s + strlen(CGROUP_PREFIX), &end, 10);
		if (pid <= 0 || *end != '.' ||
		    !(kill((pid_t)pid, 0) == -1 && errno == ESRCH))
			continue;
		(void)kill(-(pid_t)pid, SIGKILL);
		dir = xasprintf("%s/%s", parent, s);
		if (group_remove(dir) == 0) {
			log_debug("sandbox: removed stale cgroup %s", dir);
			n++;
		}
		free(dir);
	}
	closedir(d);
	return n;
}

int
cgroup_host_sweep(const struct cgroup_host *h)
{
	int n = 0;

	if (h->mode == CGROUP_NONE)
		return 0;
	n += sweep(h->memory);
	if (h->pids != NULL)
		n += sweep(h->pids);
	return n;
}

/* mkdir parent/orch-sbx.PID.N for the first free N. */
static char *
group_make(const char *parent, char **cause)
{
	(void)sweep(parent);
	for (unsigned n = 0; n < 1000; n++) {
		char *dir = xasprintf(
		    "%s/" CGROUP_PREFIX "%ld.%u", parent, (long)getpid(), n);

		if (mkdir(dir, 0755) == 0)
			return dir;
		if (errno != EEXIST) {
			*cause = xasprintf(
			    "sandbox: cgroup %s: %s", dir, strerror(errno));
			free(dir);
			return NULL;
		}
		free(dir);
	}
	*cause = xasprintf("sandbox: no free cgroup name below %s", parent);
	return NULL;
}

static int
limit_put(
    const char *dir, const char *file, uint64_t v, int optional, char **cause)
{
	char num[32];

	snprintf(num, sizeof num, "%llu", (unsigned long long)v);
	if (file_put(dir, file, num) == 0 || (optional && errno == ENOENT))
		return 0;
	*cause =
	    xasprintf("sandbox: cgroup %s/%s: %s", dir, file, strerror(errno));
	return -1;
}

void
cgroup_cmd_init(struct cgroup_cmd *c)
{
	memset(c, 0, sizeof *c);
	c->procs[0] = c->procs[1] = -1;
}

int
cgroup_cmd_create(const struct cgroup_host *h, uint64_t memory, uint64_t pids,
    struct cgroup_cmd *c, char **cause)
{
	const char *pdir;

	cgroup_cmd_init(c);
	if (h->mode == CGROUP_NONE)
		return 0;
	if ((c->dir[0] = group_make(h->memory, cause)) == NULL)
		goto fail;
	if (h->mode == CGROUP_V2) {
		pdir = c->dir[0];
		/*
		 * No swap (the limit would not hold through it), and an
		 * OOM kills the whole command rather than one process.
		 */
		if (limit_put(pdir, "memory.max", memory, 0, cause) == -1 ||
		    limit_put(pdir, "memory.swap.max", 0, 1, cause) == -1 ||
		    limit_put(pdir, "memory.oom.group", 1, 1, cause) == -1)
			goto fail;
	} else {
		if ((c->dir[1] = group_make(h->pids, cause)) == NULL)
			goto fail;
		pdir = c->dir[1];
		/* memsw (memory+swap) must not be below the memory limit. */
		if (limit_put(c->dir[0], "memory.limit_in_bytes", memory, 0,
		        cause) == -1 ||
		    limit_put(c->dir[0], "memory.memsw.limit_in_bytes", memory,
		        1, cause) == -1)
			goto fail;
	}
	if (limit_put(pdir, "pids.max", pids, 0, cause) == -1)
		goto fail;
	for (int i = 0; i < 2; i++) {
		char *p;

		if (c->dir[i] == NULL)
			continue;
		p = xasprintf("%s/cgroup.procs", c->dir[i]);
		c->procs[i] = open(p, O_WRONLY | O_CLOEXEC);
		if (c->procs[i] == -1) {
			*cause = xasprintf(
			    "sandbox: cgroup %s: %s", p, strerror(errno));
			free(p);
			goto fail;
		}
		free(p);
	}
	return 0;

fail:
	cgroup_cmd_destroy(c);
	return -1;
}

/* A counter of a flat-keyed file ("key value" lines), or 0. */
static uint64_t
counter(const char *dir, const char *file, const char *key)
{
	char *path, *text, *p;
	uint64_t v = 0;
	size_t n = strlen(key);

	if (dir == NULL)
		return 0;
	path = xasprintf("%s/%s", dir, file);
	text = file_text(path);
	free(path);
	for (p = text; p != NULL && *p != '\0';) {
		size_t len = strcspn(p, "\n");

		if (len > n && strncmp(p, key, n) == 0 && p[n] == ' ')
			v = strtoull(p + n + 1, NULL, 10);
		p += len + (p[len] == '\n');
	}
	free(text);
	return v;
}

const char *
cgroup_cmd_limit(const struct cgroup_cmd *c, enum cgroup_mode mode)
{
	const char *pdir = mode == CGROUP_V2 ? c->dir[0] : c->dir[1];

	if (mode == CGROUP_NONE)
		return NULL;
	if (counter(c->dir[0],
	        mode == CGROUP_V2 ? "memory.events" : "memory.oom_control",
	        "oom_kill") > 0)
		return "memory";
	if (counter(pdir, "pids.events", "max") > 0)
		return "pids";
	return NULL;
}

void
cgroup_cmd_destroy(struct cgroup_cmd *c)
{
	for (int i = 0; i < 2; i++) {
		if (c->procs[i] != -1)
			close(c->procs[i]);
		c->procs[i] = -1;
		if (c->dir[i] != NULL)
			(void)group_remove(c->dir[i]);
		free(c->dir[i]);
		c->dir[i] = NULL;
	}
}
