/*
 * The sandbox's /etc as one directory.
 *
 * A profile shows the sandbox a few files and directories of /etc (23 in
 * the shipped ones, never all of it).  Bound one by one, each costs
 * bubblewrap a bind mount, a read of its mountinfo and a read-only
 * remount: more than half of what a sandboxed `true` cost.  Instead the
 * profile's /etc lines are copied once into a directory of the worker's
 * cache ($ORCH_SANDBOX_CACHE/etc-STAGE: the supervisor puts it in the
 * state directory, which no sandbox sees), and sandbox.c binds that one
 * directory at /etc.
 *
 * What gets in: what the profile's lines with a destination below /etc
 * name, as bwrap would show it (a named symlink followed, symlinks below a
 * named directory kept as symlinks, a later line over an earlier one), but
 * only what every user may read (files o+r, directories o+rx) and never a
 * name that holds secrets (shadow, gshadow, ssl's private, ssh host keys):
 * a service running as root could read those, and the copy would hand
 * them to the sandbox.  Other file types (fifos, sockets, devices) stay
 * out.  The copy belongs to the service's user, files 0444, directories
 * 0755; the bind is read-only.
 *
 * Fresh: every run walks the sources (fstatat only, no file is read) into
 * a manifest (per entry its type, path, inode, size, mode, mtime and ctime
 * in ns: content written in place changes the ctime, a replaced file the
 * inode) and compares it with the manifest stored beside the copy.  On any
 * difference the copy is rebuilt: into a new directory v.XXXXXX, its
 * modes set and synced, its manifest written, then the symlink "current"
 * switched to it by a rename.  Builders take a lock (flock) so that
 * concurrent workers build once; readers take none: a version never
 * changes once built, and an old one is removed only two days after it
 * was made (a command on it runs at most ORCH_CMD_TIMEOUT_S, a day).
 *
 * Any failure is the caller's to handle: it falls back to the per-path
 * binds.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "sandbox-int.h"

#define ETC_MAX_ENTRIES  20000
#define ETC_MAX_BYTES    (64ULL << 20) /* of file content in all */
#define ETC_MAX_DEPTH    32
#define ETC_MAX_MANIFEST (16U << 20)
#define ETC_GC_AGE_S     (2 * 86400)
#define ETC_MAGIC        "orch-sandbox-etc 1\n"

struct etc_walk {
	struct buf man; /* the manifest */
	int out;        /* the new tree */
	size_t entries;
	uint64_t bytes;
	char *cause;
};

/* Names that hold secrets: never copied, wherever they are. */
static int
etc_denied(const char *name)
{
	static const char *const names[] = {"shadow", "shadow-", "gshadow",
	    "gshadow-", "private", "sudoers", "sudoers.d", "master.passwd",
	    "krb5.keytab"};

	for (size_t i = 0; i < nitems(names); i++) {
		if (strcmp(name, names[i]) == 0)
			return 1;
	}
	return strncmp(name, "ssh_host_", 9) == 0;
}

/* What of a stat tells a change: the manifest's and the check's text. */
static void
stat_text(char *out, size_t size, const struct stat *st)
{
	snprintf(out, size, "%llu %llu %llu %o %lld.%09ld %lld.%09ld",
	    (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
	    (unsigned long long)st->st_size, (unsigned)st->st_mode,
	    (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
	    (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
}

/*
 * One manifest entry: TYPE SRC NUL FOLLOW STAT NL.  Types: F a copied
 * file, D a copied directory, L a symlink kept (its directory's mtime
 * tells when it changes), x a source left out (private, secret, not a
 * file), - a missing ro_bind_try source (st NULL).
 */
static void
man_entry(struct etc_walk *w, char type, const char *src, int follow,
    const struct stat *st)
{
	char text[160] = "";

	if (st != NULL)
		stat_text(text, sizeof text, st);
	buf_addf(&w->man, "%c%s", type, src);
	buf_add(&w->man, "", 1);
	buf_addf(&w->man, "%d%s\n", follow, text);
}

static int
walk_fail(struct etc_walk *w, const char *rel, const char *what, int e)
{
	if (w->cause == NULL)
		w->cause = xasprintf("/etc/%s: %s: %s", rel, what, strerror(e));
	return -1;
}

/* Remove rel below at, whatever it is (a tree made read-only too). */
static int
tree_remove(int at, const char *rel)
{
	struct stat st;
	DIR *d;
	struct dirent *e;
	int fd, rc = 0;

	if (fstatat(at, rel, &st, AT_SYMLINK_NOFOLLOW) == -1)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(at, rel, 0);
	(void)fchmodat(at, rel, 0700, 0);
	fd = openat(at, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (tree_remove(dirfd(d), e->d_name) == -1)
			rc = -1;
	}
	closedir(d);
	if (unlinkat(at, rel, AT_REMOVEDIR) == -1)
		rc = -1;
	return rc;
}

/* mkdir -p of rel's parents below out (as bwrap makes a mount point's). */
static int
parents_make(int out, const char *rel)
{
	char *p = xstrdup(rel);
	int rc = 0;

	for (char *s = strchr(p, '/'); s != NULL; s = strchr(s + 1, '/')) {
		*s = '\0';
		if (mkdirat(out, p, 0755) == -1 && errno != EEXIST)
			rc = -1;
		*s = '/';
	}
	free(p);
	return rc;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A regular file: copied, its entry from the open file's own stat. */
static int
walk_file(struct etc_walk *w, int at, const char *name, const char *src,
    const char *rel, int follow, const struct stat *st)
{
	struct stat fst;
	char buf[65536];
	ssize_t n;
	uint64_t left;
	int in, outfd, rc = -1;

	/* O_NONBLOCK: a fifo swapped in after the stat must not hang us. */
	in = openat(at, name,
	    O_RDONLY | O_NONBLOCK | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW));
	if (in == -1)
		return walk_fail(w, rel, "open", errno);
	if (fstat(in, &fst) == -1 || !S_ISREG(fst.st_mode) ||
	    fst.st_ino != st->st_ino || fst.st_dev != st->st_dev) {
		close(in);
		return walk_fail(w, rel, "changed while copied", EAGAIN);
	}
	if ((w->bytes += (uint64_t)fst.st_size) > ETC_MAX_BYTES) {
		close(in);
		return walk_fail(w, rel, "too much to copy", EFBIG);
	}
	man_entry(w, 'F', src, follow, &fst);
	outfd = openat(w->out, rel,
	    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
	if (outfd == -1) {
		close(in);
		return walk_fail(w, rel, "create", errno);
	}
	/*
	 * The size recorded, no more: a file that changes meanwhile has a
	 * new ctime, and the next run's check rebuilds the copy.
	 */
	for (left = (uint64_t)fst.st_size; left > 0; left -= (uint64_t)n) {
		n = read(in, buf, left < sizeof buf ? left : sizeof buf);
		if (n == -1 && errno == EINTR) {
			n = 0;
			continue;
		}
		if (n <= 0) {
			walk_fail(w, rel, "read", n == 0 ? EAGAIN : errno);
			goto out;
		}
		if (write_all(outfd, buf, (size_t)n) == -1) {
			walk_fail(w, rel, "write", errno);
			goto out;
		}
	}
	if (fchmod(outfd, 0444) == -1) {
		walk_fail(w, rel, "chmod", errno);
		goto out;
	}
	rc = 0;
out:
	close(in);
	close(outfd);
	return rc;
}

static int walk_node(
    struct etc_walk *, int, const char *, const char *, const char *, int, int);

/* A directory: made, and every entry walked in name order. */
static int
walk_dir(struct etc_walk *w, int at, const char *name, const char *src,
    const char *rel, int follow, const struct stat *st, int depth)
{
	DIR *d;
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, size = 0;
	int fd, rc = 0;

	if (depth > ETC_MAX_DEPTH)
		return walk_fail(w, rel, "too deep", ELOOP);
	man_entry(w, 'D', src, follow, st);
	if (mkdirat(w->out, rel, 0755) == -1 && errno != EEXIST)
		return walk_fail(w, rel, "mkdir", errno);
	fd = openat(at, name,
	    O_RDONLY | O_DIRECTORY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW));
	if (fd == -1)
		return walk_fail(w, rel, "open", errno);
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return walk_fail(w, rel, "opendir", errno);
	}
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (n == size) {
			size = size == 0 ? 64 : size * 2;
			names = xrealloc(names, size * sizeof *names);
		}
		names[n++] = xstrdup(e->d_name);
	}
	if (n > 0)
		qsort(names, n, sizeof *names, name_cmp);
	for (size_t i = 0; i < n; i++) {
		char *ssub = xasprintf("%s/%s", src, names[i]);
		char *rsub = xasprintf("%s/%s", rel, names[i]);

		if (rc == 0 && walk_node(w, dirfd(d), names[i], ssub, rsub, 0,
		                   depth + 1) == -1)
			rc = -1;
		free(ssub);
		free(rsub);
		free(names[i]);
	}
	free(names);
	closedir(d);
	return rc;
}

/*
 * One entry: name below at (src its absolute path), copied to rel below
 * the new tree.  follow: a line's own source, which bwrap resolves too.
 * ENOENT there is returned as -2.
 */
static int
walk_node(struct etc_walk *w, int at, const char *name, const char *src,
    const char *rel, int follow, int depth)
{
	struct stat st;
	const char *base = strrchr(rel, '/'), *sbase = strrchr(src, '/');

	base = base != NULL ? base + 1 : rel;
	sbase = sbase != NULL ? sbase + 1 : src;
	if (++w->entries > ETC_MAX_ENTRIES)
		return walk_fail(w, rel, "too many entries", E2BIG);
	if (fstatat(at, name, &st, follow ? 0 : AT_SYMLINK_NOFOLLOW) == -1) {
		if (follow && errno == ENOENT)
			return -2;
		return walk_fail(w, rel, "stat", errno);
	}
	if (etc_denied(base) || etc_denied(sbase)) {
		man_entry(w, 'x', src, follow, &st);
		return 0;
	}
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n;

		man_entry(w, 'L', src, follow, &st);
		n = readlinkat(at, name, target, sizeof target - 1);
		if (n == -1)
			return walk_fail(w, rel, "readlink", errno);
		target[n] = '\0';
		if (symlinkat(target, w->out, rel) == -1)
			return walk_fail(w, rel, "symlink", errno);
		return 0;
	}
	if (S_ISREG(st.st_mode) && (st.st_mode & S_IROTH))
		return walk_file(w, at, name, src, rel, follow, &st);
	if (S_ISDIR(st.st_mode) &&
	    (st.st_mode & (S_IROTH | S_IXOTH)) == (S_IROTH | S_IXOTH))
		return walk_dir(w, at, name, src, rel, follow, &st, depth);
	/* Private, or not a file, directory or symlink: left out. */
	man_entry(w, 'x', src, follow, &st);
	return 0;
}

/* Does dst lie strictly below /etc?  Then the line goes into the copy. */
int
etcdir_mount(const struct sandbox_mount *m)
{
	return strncmp(m->dst, "/etc/", 5) == 0 && m->dst[5] != '\0';
}

/* The manifest's head: the profile's lines below /etc. */
static void
etc_head(const struct sandbox_profile *p, struct buf *b)
{
	buf_adds(b, ETC_MAGIC);
	for (size_t i = 0; i < p->nmounts; i++) {
		const struct sandbox_mount *m = &p->mounts[i];

		if (!etcdir_mount(m))
			continue;
		buf_addf(b, "M%d %s", (int)m->kind, m->src);
		buf_add(b, "", 1);
		buf_addf(b, "%s\n", m->dst);
	}
}

/* Copy the profile's /etc lines into w->out, making the manifest. */
static int
etc_walk(const struct sandbox_profile *p, struct etc_walk *w)
{
	etc_head(p, &w->man);
	for (size_t i = 0; i < p->nmounts; i++) {
		const struct sandbox_mount *m = &p->mounts[i];
		const char *rel = m->dst + 5;
		int rc;

		if (!etcdir_mount(m))
			continue;
		/* A later line over an earlier one, as bwrap mounts it. */
		if (tree_remove(w->out, rel) == -1 ||
		    parents_make(w->out, rel) == -1)
			return walk_fail(w, rel, "replacing", errno);
		if (m->kind == MOUNT_SYMLINK) {
			if (symlinkat(m->src, w->out, rel) == -1)
				return walk_fail(w, rel, "symlink", errno);
			continue;
		}
		rc = walk_node(w, AT_FDCWD, m->src, m->src, rel, 1, 0);
		if (rc == -2 && m->kind == MOUNT_RO_BIND_TRY) {
			man_entry(w, '-', m->src, 1, NULL);
			continue;
		}
		if (rc == -2)
			return walk_fail(w, rel, m->src, ENOENT);
		if (rc == -1)
			return -1;
	}
	return 0;
}

/*
 * Is the manifest man (a copy's) still true of the sources and of the
 * profile?  Only what can change unseen is looked at: every file,
 * directory and left-out source is stat'ed again (about 80 in the shipped
 * profiles); a symlink below a directory is not, since making, removing
 * or replacing one changes its directory's mtime.  No directory is read.
 */
static int
etc_fresh(const struct sandbox_profile *p, const char *man, size_t len)
{
	struct buf head;
	const char *s, *end = man + len;
	int ok;

	buf_init(&head);
	etc_head(p, &head);
	ok = len > head.len && memcmp(man, head.buf, head.len) == 0 &&
	     man[head.len] != 'M';
	s = man + head.len;
	buf_free(&head);
	while (ok && s < end) {
		const char *src = s + 1, *nul, *nl;
		char type = *s, text[160];
		struct stat st;
		int follow;

		nul = memchr(src, '\0', (size_t)(end - src));
		if (nul == NULL || nul + 2 > end)
			return 0;
		follow = nul[1] == '1';
		nl = memchr(nul + 2, '\n', (size_t)(end - nul - 2));
		if (nl == NULL)
			return 0;
		s = nl + 1;
		if (type == 'L')
			continue;
		if (fstatat(AT_FDCWD, src, &st,
		        follow ? 0 : AT_SYMLINK_NOFOLLOW) == -1) {
			ok = type == '-' && errno == ENOENT;
			continue;
		}
		if (type == '-')
			return 0;
		stat_text(text, sizeof text, &st);
		ok = strlen(text) == (size_t)(nl - nul - 2) &&
		     memcmp(text, nul + 2, (size_t)(nl - nul - 2)) == 0;
	}
	return ok;
}

/*
 * Every directory of the tree 0755, whatever the umask: the sandbox sees
 * it through a read-only bind, and the service's user can still remove
 * the state directory with rm -r.
 */
static int
tree_seal(int at, const char *name)
{
	DIR *d;
	struct dirent *e;
	int fd, rc = 0;

	fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_type != DT_DIR || strcmp(e->d_name, ".") == 0 ||
		    strcmp(e->d_name, "..") == 0)
			continue;
		if (tree_seal(dirfd(d), e->d_name) == -1)
			rc = -1;
	}
	if (rc == 0 && fchmod(dirfd(d), 0755) == -1)
		rc = -1;
	closedir(d);
	return rc;
}

/* The whole of a small file (at most max bytes), or NULL. */
static char *
file_read(int at, const char *name, size_t max, size_t *len)
{
	struct stat st;
	char *p;
	int fd;

	if ((fd = openat(at, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1)
		return NULL;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size > max) {
		close(fd);
		return NULL;
	}
	p = xmalloc((size_t)st.st_size + 1);
	if (read_full(fd, p, (size_t)st.st_size) != 1) {
		free(p);
		close(fd);
		return NULL;
	}
	close(fd);
	*len = (size_t)st.st_size;
	return p;
}

/*
 * The version "current" names, if it is still true of the sources: 0 with
 * c->etc_version set, else -1.
 */
static int
etc_current(const struct sandbox_profile *p, int keyfd)
{
	struct sandbox_cache *c = p->cache;
	char name[64], *mf, *stored;
	ssize_t n;
	size_t len;

	n = readlinkat(keyfd, "current", name, sizeof name - 1);
	if (n <= 0)
		return -1;
	name[n] = '\0';
	if (strncmp(name, "v.", 2) != 0 || strchr(name, '/') != NULL)
		return -1;
	if (c->etc_version != NULL && strcmp(c->etc_version, name) == 0)
		return etc_fresh(p, c->etc_manifest, c->etc_manlen) ? 0 : -1;
	mf = xasprintf("%s.manifest", name);
	stored = file_read(keyfd, mf, ETC_MAX_MANIFEST, &len);
	free(mf);
	if (stored == NULL)
		return -1;
	free(c->etc_version);
	free(c->etc_manifest);
	c->etc_version = xstrdup(name);
	c->etc_manifest = stored;
	c->etc_manlen = len;
	return etc_fresh(p, stored, len) ? 0 : -1;
}

/* Remove versions that are neither current nor young (see the top). */
static void
etc_gc(int keyfd, const char *current)
{
	DIR *d;
	struct dirent *e;
	int fd;
	time_t now = time(NULL);

	if ((fd = dup(keyfd)) == -1)
		return;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		struct stat st;

		/* v.XXXXXX and v.XXXXXX.manifest: mkdtemp's names are all
		 * of one length, so the prefix is the version. */
		if (strncmp(e->d_name, "v.", 2) != 0 ||
		    strncmp(e->d_name, current, strlen(current)) == 0)
			continue;
		if (fstatat(keyfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
		    now - st.st_mtime < ETC_GC_AGE_S)
			continue;
		if (tree_remove(keyfd, e->d_name) == -1)
			log_warnx("sandbox: cannot remove an old /etc copy "
			          "%s: %s",
			    e->d_name, strerror(errno));
	}
	closedir(d);
}

/* Build a new version under the lock; 0 with c->etc_version set. */
static int
etc_build(const struct sandbox_profile *p, struct sandbox_cache *c, int keyfd,
    const char *key, char **cause)
{
	struct etc_walk w;
	char *dir = xasprintf("%s/v.XXXXXX", key), *name, *mf = NULL;
	char *tmp = NULL;
	int vfd = -1, mfd = -1, rc = -1;

	memset(&w, 0, sizeof w);
	buf_init(&w.man);
	w.out = -1;
	if (mkdtemp(dir) == NULL) {
		*cause = xasprintf("%s: %s", dir, strerror(errno));
		free(dir);
		buf_free(&w.man);
		return -1;
	}
	name = strrchr(dir, '/') + 1;
	if ((vfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		*cause = xasprintf("%s: %s", dir, strerror(errno));
		goto fail;
	}
	w.out = vfd;
	if (etc_walk(p, &w) == -1) {
		*cause = w.cause;
		w.cause = NULL;
		goto fail;
	}
	/* Its modes set, and on disk before anything names it. */
	if (tree_seal(keyfd, name) == -1 || syncfs(vfd) == -1) {
		*cause = xasprintf("%s: sealing: %s", dir, strerror(errno));
		goto fail;
	}
	mf = xasprintf("%s.manifest", name);
	if ((mfd = openat(keyfd, mf,
	         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400)) ==
	        -1 ||
	    write_all(mfd, w.man.buf, w.man.len) == -1 || fsync(mfd) == -1) {
		*cause = xasprintf("%s/%s: %s", key, mf, strerror(errno));
		goto fail;
	}
	tmp = xasprintf("current.%ld", (long)getpid());
	(void)unlinkat(keyfd, tmp, 0);
	if (symlinkat(name, keyfd, tmp) == -1 ||
	    renameat(keyfd, tmp, keyfd, "current") == -1 ||
	    fsync(keyfd) == -1) {
		*cause = xasprintf("%s/current: %s", key, strerror(errno));
		(void)unlinkat(keyfd, tmp, 0);
		goto fail;
	}
	free(c->etc_version);
	free(c->etc_manifest);
	c->etc_version = xstrdup(name);
	c->etc_manifest = w.man.buf;
	c->etc_manlen = w.man.len;
	w.man.buf = NULL;
	log_info("sandbox: /etc for %s copied to %s", p->file, dir);
	etc_gc(keyfd, name);
	rc = 0;
	goto out;

fail:
	if (mf != NULL)
		(void)unlinkat(keyfd, mf, 0);
	(void)tree_remove(keyfd, name);
out:
	if (mfd != -1)
		close(mfd);
	if (vfd != -1)
		close(vfd);
	free(w.cause);
	buf_free(&w.man);
	free(tmp);
	free(mf);
	free(dir);
	return rc;
}

/* mkdir -p of an absolute path, each component made 0700. */
static int
mkdir_p(const char *path)
{
	char *p = xstrdup(path);
	int rc = 0;

	for (char *s = strchr(p + 1, '/');; s = strchr(s + 1, '/')) {
		if (s != NULL)
			*s = '\0';
		if (mkdir(p, 0700) == -1 && errno != EEXIST) {
			rc = -1;
			break;
		}
		if (s == NULL)
			break;
		*s = '/';
	}
	free(p);
	return rc;
}

int
etcdir_get(const struct sandbox_profile *p, const char *cache, char **dir,
    char **cause)
{
	struct sandbox_cache *c = p->cache;
	char *key;
	int keyfd = -1, lockfd = -1, rc = -1;

	*dir = NULL;
	if (cache[0] != '/') {
		*cause =
		    xasprintf("ORCH_SANDBOX_CACHE=%s is not absolute", cache);
		return -1;
	}
	key = xasprintf("%s/etc-%s", cache, p->name);
	if ((keyfd = open(key, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 &&
	    (errno != ENOENT || mkdir_p(key) == -1 ||
	        (keyfd = open(key, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	            -1)) {
		*cause = xasprintf("%s: %s", key, strerror(errno));
		goto out;
	}
	if (etc_current(p, keyfd) == -1) {
		/* One builder at a time; the others find its copy. */
		if ((lockfd = openat(keyfd, "lock",
		         O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600)) ==
		        -1 ||
		    flock(lockfd, LOCK_EX) == -1) {
			*cause = xasprintf("%s/lock: %s", key, strerror(errno));
			goto out;
		}
		if (etc_current(p, keyfd) == -1 &&
		    etc_build(p, c, keyfd, key, cause) == -1)
			goto out;
	}
	*dir = xasprintf("%s/%s", key, c->etc_version);
	rc = 0;
out:
	if (lockfd != -1)
		close(lockfd);
	if (keyfd != -1)
		close(keyfd);
	free(key);
	return rc;
}
