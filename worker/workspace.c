/*
 * The task's git worktree and its snapshots.
 *
 * Every change to the user's repository goes through git itself, run with
 * an explicit argv (never a shell), a scrubbed environment, no hooks, no
 * fsmonitor and no automatic gc.  The only things this file ever changes in
 * the user's repository are the worktree's registration (in .git/worktrees),
 * the hidden refs refs/orch/... and the branches refs/heads/orch/...; the
 * user's HEAD, index, working tree and other branches are never touched.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "worker.h"

#define GIT_MAX_OUT  (1024 * 1024)      /* bytes of stdout kept */
#define LIST_MAX_OUT (64 * 1024 * 1024) /* bytes of a file list kept */
#define DIFFSTAT_MAX (64 * 1024)
#define NOTE_MAX     10 /* paths a snapshot note names */
#define MAX_PINNED   8
#define TRAILER      "Orch-State"

/*
 * A worktree made (or found) by ws_create: git is always run on it with
 * GIT_DIR and GIT_WORK_TREE pinned to what the user's repository says,
 * never through dir/.git, which the model's commands can rewrite.
 */
struct pinned {
	char *dir;     /* as the caller names it */
	char *absdir;  /* GIT_WORK_TREE */
	char *admin;   /* GIT_DIR: <common>/worktrees/NAME */
	char *common;  /* the repository's common directory */
	char **config; /* filter and diff driver settings turned off */
	int files;     /* refs are files (1), not (0), not known yet (-1) */
};

static char *common_dir(const char *repo);

static struct pinned pinned[MAX_PINNED];
static size_t npinned;
static struct ws_options opts = {NULL, WS_MAX_FILE_BYTES, 0, NULL, NULL, 0};

/*
 * What this worker already learnt from git, so that it does not run git
 * again for it (each git is a process: most of a task's git cost).  Kept
 * in this process only: a restarted worker asks git afresh.
 *
 * Commits never change: a commit's tree and whether its message has this
 * state directory's trailer cannot go stale, nor a diffstat of two trees.
 * A ref's value can: another process may move the ref after this worker
 * read or wrote it.  A remembered value is therefore only ever used where
 * update-ref's compare-and-swap guards it: as the OLD of the next update
 * (a moved ref makes that update fail, and the value is forgotten), as the
 * parent of the commit that update would publish, or to choose the ref
 * that such an update then writes.  It is never a guess: it is what the
 * ref held when this worker read it, or what this worker wrote.
 */
#define KNOWN_MAX 16
struct known_ref {
	char *common; /* the repository's common directory */
	char *ref;
	char *commit; /* NULL: the ref did not exist */
};
struct known_commit {
	char *commit;
	char *tree; /* NULL: not known */
	int ours;   /* the trailer is ours: 1, 0, or -1 not known */
};
static struct known_ref krefs[KNOWN_MAX];
static struct known_commit kcommits[KNOWN_MAX];
static size_t nkrefs, nkcommits, kref_next, kcommit_next;
static struct {
	char *common, *base, *key, *stat;
} kstat;

static void
known_clear(void)
{
	for (size_t i = 0; i < nkrefs; i++) {
		free(krefs[i].common);
		free(krefs[i].ref);
		free(krefs[i].commit);
	}
	for (size_t i = 0; i < nkcommits; i++) {
		free(kcommits[i].commit);
		free(kcommits[i].tree);
	}
	nkrefs = nkcommits = kref_next = kcommit_next = 0;
	free(kstat.common);
	free(kstat.base);
	free(kstat.key);
	free(kstat.stat);
	memset(&kstat, 0, sizeof kstat);
}

void
ws_configure(const struct ws_options *o)
{
	/* Whether a commit is ours depends on the state id. */
	known_clear();
	opts = *o;
	if (opts.max_file_bytes == 0)
		opts.max_file_bytes = WS_MAX_FILE_BYTES;
}

static struct known_ref *
kref_find(const char *common, const char *ref)
{
	for (size_t i = 0; i < nkrefs; i++) {
		if (strcmp(krefs[i].common, common) == 0 &&
		    strcmp(krefs[i].ref, ref) == 0)
			return &krefs[i];
	}
	return NULL;
}

/* Remember that ref holds commit (NULL: does not exist). */
static void
kref_set(const char *common, const char *ref, const char *commit)
{
	struct known_ref *k = kref_find(common, ref);

	if (k == NULL) {
		if (nkrefs < KNOWN_MAX)
			k = &krefs[nkrefs++];
		else {
			k = &krefs[kref_next++ % KNOWN_MAX];
			free(k->common);
			free(k->ref);
			free(k->commit);
		}
		k->common = xstrdup(common);
		k->ref = xstrdup(ref);
	} else
		free(k->commit);
	k->commit = commit != NULL ? xstrdup(commit) : NULL;
}

/* After an update that failed: what ref holds is not known any more. */
static void
kref_forget(const char *common, const char *ref)
{
	struct known_ref *k = kref_find(common, ref);

	if (k == NULL)
		return;
	free(k->common);
	free(k->ref);
	free(k->commit);
	*k = krefs[--nkrefs];
	memset(&krefs[nkrefs], 0, sizeof krefs[nkrefs]);
}

/* The facts known of commit, made empty when create and none are. */
static struct known_commit *
kcommit_get(const char *commit, int create)
{
	struct known_commit *k;

	for (size_t i = 0; i < nkcommits; i++) {
		if (strcmp(kcommits[i].commit, commit) == 0)
			return &kcommits[i];
	}
	if (!create)
		return NULL;
	if (nkcommits < KNOWN_MAX)
		k = &kcommits[nkcommits++];
	else {
		k = &kcommits[kcommit_next++ % KNOWN_MAX];
		free(k->commit);
		free(k->tree);
	}
	k->commit = xstrdup(commit);
	k->tree = NULL;
	k->ours = -1;
	return k;
}

/* A commit this worker made: its tree (when known) and our trailer. */
static void
kcommit_made(const char *commit, const char *tree)
{
	struct known_commit *k = kcommit_get(commit, 1);

	free(k->tree);
	k->tree = tree != NULL ? xstrdup(tree) : NULL;
	k->ours = 1;
}

static const char *
kcommit_tree(const char *commit)
{
	struct known_commit *k = kcommit_get(commit, 0);

	return k != NULL ? k->tree : NULL;
}

/*
 * The filter and diff drivers the repository's own configuration defines
 * (the global and system ones are never read), as settings that turn each
 * off: an empty clean/smudge/process/textconv/command, required=false.  A
 * .gitattributes in the workspace is the model's: it must not choose a
 * program for the worker's git to run outside the sandbox.
 */
/*
 * Whether any of the configuration files may define a driver: they name
 * "filter", "diff" or "include" somewhere (case aside), or cannot be read
 * whole.  Most repositories define none, and then no git is run to list
 * them.
 */
static int
config_may_define(const char *const *paths)
{
	char buf[256 * 1024];

	for (size_t i = 0; paths[i] != NULL; i++) {
		ssize_t n;
		int fd;

		if ((fd = open(paths[i], O_RDONLY | O_CLOEXEC)) == -1) {
			if (errno == ENOENT)
				continue;
			return 1;
		}
		n = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (n < 0 || (size_t)n == sizeof buf - 1)
			return 1;
		buf[n] = '\0';
		if (strlen(buf) != (size_t)n || strcasestr(buf, "filter") ||
		    strcasestr(buf, "diff") || strcasestr(buf, "include"))
			return 1;
	}
	return 0;
}

static char **
drivers_off(const struct git_opts *base, const char *common, const char *gitdir)
{
	static const char keys[] =
	    "^(filter|diff)\\..*\\.(clean|smudge|process|required|textconv|"
	    "command)$";
	const char *args[] = {
	    "config", "-z", "--name-only", "--get-regexp", keys, NULL};
	struct git_opts o = *base;
	struct buf out;
	struct git_status gs;
	char *cause = NULL, **conf, *paths[3];
	size_t n = 0, max = 1;
	int may;

	if (common != NULL) {
		paths[0] = xasprintf("%s/config", common);
		paths[1] = xasprintf("%s/config.worktree", gitdir);
		paths[2] = NULL;
		may = config_may_define((const char *const *)paths);
		free(paths[0]);
		free(paths[1]);
		if (!may)
			return xcalloc(1, sizeof(char *));
	}
	o.config = NULL;
	o.outmax = GIT_MAX_OUT;
	if (git_run(&o, args, &out, &gs, &cause) == -1) {
		/* Exit 1: no such setting. */
		if (gs.exit != 1)
			log_warnx("%s", cause);
		free(cause);
	}
	for (size_t i = 0; i < out.len; i++)
		max += out.buf[i] == '\0';
	conf = xcalloc(2 * max + 1, sizeof *conf);
	for (char *k = out.buf; k < out.buf + out.len; k += strlen(k) + 1) {
		const char *dot = strrchr(k, '.');

		if (*k == '\0' || n + 2 >= 2 * max)
			continue;
		conf[n++] = xstrdup(k);
		conf[n++] = xstrdup(dot != NULL && strcmp(dot, ".required") == 0
		                        ? "false"
		                        : "");
	}
	conf[n] = NULL;
	free(out.buf);
	return conf;
}

static void
conf_free(char **conf)
{
	for (size_t i = 0; conf != NULL && conf[i] != NULL; i++)
		free(conf[i]);
	free(conf);
}

static struct pinned *
pin_find(const char *dir)
{
	for (size_t i = 0; i < npinned; i++) {
		if (strcmp(pinned[i].dir, dir) == 0)
			return &pinned[i];
	}
	return NULL;
}

/*
 * The options to run git on dir: pinned when dir is a worktree ws_create
 * made or found; a repository's own directory otherwise, with its drivers
 * turned off.  Only the worker's calls on the user's repository itself
 * (worktree add, remove) take the second way.
 */
static int
loc_opts(const char *dir, int worktree, struct git_opts *o, char **cause)
{
	struct pinned *p;

	memset(o, 0, sizeof *o);
	o->tick = opts.tick;
	o->arg = opts.arg;
	if (worktree) {
		if ((p = pin_find(dir)) == NULL) {
			*cause = xasprintf("%s is not a worktree this worker "
			                   "made or checked (ws_create)",
			    dir);
			return -1;
		}
		o->dir = p->absdir;
		o->gitdir = p->admin;
		o->worktree = p->absdir;
		if (p->config == NULL)
			p->config = drivers_off(o, p->common, p->admin);
		o->config = (const char *const *)p->config;
		return 0;
	}
	o->dir = dir;
	return 0;
}

/* Run git on a worktree (worktree set) or a repository. */
static int
ws_git(const char *dir, int worktree, const char *const *args,
    struct git_opts *extra, struct buf *out, struct git_status *gs,
    char **cause)
{
	struct git_opts o;
	struct git_status lgs;
	char **conf = NULL;
	int rc;

	if (gs == NULL)
		gs = &lgs;
	if (loc_opts(dir, worktree, &o, cause) == -1) {
		buf_init_capture(out, 16, 0);
		memset(gs, 0, sizeof *gs);
		gs->exit = -1;
		return -1;
	}
	/* Of the repository's own commands only a checkout runs filters. */
	if (!worktree && strcmp(args[0], "worktree") == 0 &&
	    strcmp(args[1], "add") == 0) {
		char *common = common_dir(dir);

		conf = drivers_off(&o, common, common);
		o.config = (const char *const *)conf;
		free(common);
	}
	o.outmax = GIT_MAX_OUT;
	if (extra != NULL) {
		o.in = extra->in;
		o.inlen = extra->inlen;
		o.timeout_ms = extra->timeout_ms;
		if (extra->outmax > 0)
			o.outmax = extra->outmax;
	}
	rc = git_run(&o, args, out, gs, cause);
	conf_free(conf);
	return rc;
}

static int
ws_git_line(const char *dir, int worktree, const char *const *args,
    struct git_opts *extra, char **line, struct git_status *gs, char **cause)
{
	struct buf out;

	*line = NULL;
	if (ws_git(dir, worktree, args, extra, &out, gs, cause) == -1) {
		free(out.buf);
		return -1;
	}
	out.buf[strcspn(out.buf, "\r\n")] = '\0';
	*line = out.buf;
	return 0;
}

static int
ws_git_quiet(const char *dir, int worktree, const char *const *args,
    struct git_status *gs, char **cause)
{
	struct buf out;
	int rc;

	rc = ws_git(dir, worktree, args, NULL, &out, gs, cause);
	free(out.buf);
	return rc;
}

/*
 * Refuse a revision, ref or path that git could take for an option: these
 * come from the database and the model's surroundings, not from git.
 */
static int
check_arg(const char *what, const char *value, char **cause)
{
	if (value == NULL || *value == '\0') {
		*cause = xasprintf("%s is empty", what);
		return -1;
	}
	if (*value == '-') {
		*cause = xasprintf("%s \"%s\" starts with '-'", what, value);
		return -1;
	}
	for (const char *p = value; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			*cause = xasprintf("%s has a control character", what);
			return -1;
		}
	}
	return 0;
}

static int
is_hash(const char *s)
{
	size_t n = strspn(s, "0123456789abcdef");

	return s[n] == '\0' && (n == 40 || n == 64);
}

/* Resolve rev to the full hash of the object rev^{type}. */
static int
rev_parse(const char *dir, const char *rev, const char *type, char **hash,
    char **cause)
{
	char *spec = xasprintf("%s^{%s}", rev, type);
	const char *args[] = {"rev-parse", "-q", "--verify", spec, NULL};
	struct git_status gs;
	int rc;

	rc = ws_git_line(dir, 1, args, NULL, hash, &gs, cause);
	free(spec);
	if (rc == 0 && !is_hash(*hash)) {
		*cause = xasprintf(
		    "git rev-parse %s^{%s}: unexpected output", rev, type);
		free(*hash);
		*hash = NULL;
		rc = -1;
	}
	if (rc == -1 && gs.exit == 1) {
		free(*cause);
		*cause = xasprintf("%s is not a %s in %s", rev, type, dir);
	}
	return rc;
}

/* dir made absolute, since git -C repo would resolve it from repo. */
static char *
abs_path(const char *dir)
{
	char cwd[PATH_MAX];

	if (dir[0] == '/' || getcwd(cwd, sizeof cwd) == NULL)
		return xstrdup(dir);
	return xasprintf("%s/%s", cwd, dir);
}

static int
mkdir_parents(const char *path, char **cause)
{
	char *copy = xstrdup(path);

	for (char *p = copy + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0700) == -1 && errno != EEXIST) {
			*cause =
			    xasprintf("mkdir %s: %s", copy, strerror(errno));
			free(copy);
			return -1;
		}
		*p = '/';
	}
	free(copy);
	return 0;
}

/* The first line of a small file (a path, a ref), or NULL. */
static char *
first_line(const char *path)
{
	char buf[PATH_MAX + 16];
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1)
		return NULL;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf[0] != '\0' ? xstrdup(buf) : NULL;
}

/* path resolved, relative ones from dir. */
static char *
resolve_from(const char *dir, const char *path)
{
	char *joined, *real;

	if (path[0] == '/')
		return realpath(path, NULL);
	joined = xasprintf("%s/%s", dir, path);
	real = realpath(joined, NULL);
	free(joined);
	return real;
}

/*
 * The repository's common directory (where refs live): read from the
 * files when repo/.git is a directory, or a file naming a directory; git
 * is asked otherwise (a bare repository, say).  The user's repository is
 * trusted; the workspace is not.
 */
static char *
common_dir(const char *repo)
{
	const char *args[] = {
	    "rev-parse", "--path-format=absolute", "--git-common-dir", NULL};
	char *dotgit, *gitdir = NULL, *line, *common = NULL, *cause = NULL, *p;
	struct stat st;

	dotgit = xasprintf("%s/.git", repo);
	if (lstat(dotgit, &st) == -1)
		st.st_mode = 0;
	if (S_ISDIR(st.st_mode))
		gitdir = realpath(dotgit, NULL);
	else if (S_ISREG(st.st_mode) && (line = first_line(dotgit)) != NULL) {
		if (strncmp(line, "gitdir: ", 8) == 0)
			gitdir = resolve_from(repo, line + 8);
		free(line);
	}
	free(dotgit);
	if (gitdir != NULL) {
		p = xasprintf("%s/commondir", gitdir);
		line = first_line(p);
		free(p);
		common = line != NULL ? resolve_from(gitdir, line) : gitdir;
		if (common != gitdir)
			free(gitdir);
		free(line);
		if (common != NULL)
			return common;
	}
	if (ws_git_line(repo, 0, args, NULL, &common, NULL, &cause) == -1) {
		free(common);
		free(cause);
		return NULL;
	}
	p = realpath(common, NULL);
	free(common);
	return p;
}

/*
 * Hold the repository's worktree list still: git's `worktree add` reads
 * every other worktree's record while it writes its own, and fails
 * ("failed to read .git/worktrees/task-12/commondir") when it meets one
 * that a concurrent add has made but not filled yet; a prune may take such
 * a record away.  Workers of tasks of one repository therefore add, remove
 * and prune one at a time: an flock on the common directory itself, which
 * puts no file in the user's repository.  -1 (and no lock) when it cannot
 * be opened: then git runs as before.
 */
static int
worktrees_lock(const char *common)
{
	int fd;

	if (common == NULL ||
	    (fd = open(common, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	while (flock(fd, LOCK_EX) == -1 && errno == EINTR)
		;
	return fd;
}

static void
worktrees_unlock(int fd)
{
	if (fd != -1)
		close(fd);
}

/* Whether the worktree record admin holds the file name. */
static int
admin_has(const char *admin, const char *name)
{
	char *p = xasprintf("%s/%s", admin, name);
	struct stat st;
	int has = lstat(p, &st) == 0;

	free(p);
	return has;
}

/*
 * The administrative directory (<common>/worktrees/NAME) of the linked
 * worktree whose top is dir, or NULL when dir is not one of the
 * repository's.  dir/.git names the directory, but the workspace is the
 * model's to write: the directory must also be inside the repository's
 * own worktrees/ (not one planted in the workspace with a config of its
 * own), have a HEAD, and name dir/.git back.
 */
static char *
worktree_admin(const char *common, const char *dir, int whole)
{
	char *gitfile, *line, *admin = NULL, *back = NULL, *p, *top;
	char *real_gitfile = NULL, *real_back = NULL;
	struct stat st;
	size_t n;

	gitfile = xasprintf("%s/.git", dir);
	if (lstat(gitfile, &st) == -1 || !S_ISREG(st.st_mode) ||
	    (line = first_line(gitfile)) == NULL) {
		free(gitfile);
		return NULL;
	}
	if (strncmp(line, "gitdir: ", 8) == 0)
		admin = resolve_from(dir, line + 8);
	free(line);
	top = xasprintf("%s/worktrees/", common);
	n = strlen(top);
	if (admin != NULL && (strncmp(admin, top, n) != 0 || admin[n] == '\0' ||
	                         strchr(admin + n, '/') != NULL)) {
		free(admin);
		admin = NULL;
	}
	free(top);
	if (admin != NULL) {
		p = xasprintf("%s/gitdir", admin);
		back = first_line(p);
		free(p);
		p = xasprintf("%s/HEAD", admin);
		if (back != NULL && lstat(p, &st) == 0 && S_ISREG(st.st_mode)) {
			real_back = resolve_from(admin, back);
			real_gitfile = realpath(gitfile, NULL);
		}
		free(p);
		/*
		 * A `worktree add` killed half-way leaves its record without
		 * commondir, or with the "locked" file it writes first and
		 * removes last (we never lock a task's worktree): git then
		 * takes the worktree for no repository at all.
		 */
		if (whole && real_back != NULL &&
		    (!admin_has(admin, "commondir") ||
		        admin_has(admin, "locked"))) {
			free(real_back);
			real_back = NULL;
		}
	}
	if (real_back == NULL || real_gitfile == NULL ||
	    strcmp(real_back, real_gitfile) != 0) {
		free(admin);
		admin = NULL;
	}
	free(gitfile);
	free(back);
	free(real_back);
	free(real_gitfile);
	return admin;
}

/* Remember that git on dir runs with GIT_DIR=admin. */
static void
pin_add(const char *dir, const char *absdir, char *admin, const char *common)
{
	struct pinned *p = pin_find(dir);

	if (p == NULL) {
		if (npinned == MAX_PINNED) {
			/* The worker has one; the tests a few. */
			p = &pinned[0];
		} else
			p = &pinned[npinned++];
	} else {
		free(p->dir);
		free(p->absdir);
		free(p->admin);
		free(p->common);
		conf_free(p->config);
	}
	p->dir = xstrdup(dir);
	p->absdir = xstrdup(absdir);
	p->admin = admin;
	p->common = xstrdup(common);
	p->config = NULL;
	p->files = -1;
}

/* Remove everything below the top directory, which stays: the worker's
 * Landlock rules were made on it. */
static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	if (ftw->level == 0)
		return 0;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) == -1 &&
	       errno != ENOENT;
}

/*
 * Empty what a killed `git worktree add` left: a directory that is not a
 * worktree (git then adds the worktree into the empty directory).  Only our
 * own task-N directories are ever touched.
 */
static int
remove_half_worktree(const char *dir, char **cause)
{
	const char *base = strrchr(dir, '/');

	base = base != NULL ? base + 1 : dir;
	if (strncmp(base, "task-", 5) != 0) {
		*cause = xasprintf("%s exists and is not a worktree; move it "
		                   "aside",
		    dir);
		return -1;
	}
	if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
		*cause = xasprintf("cannot remove the unfinished worktree %s: "
		                   "%s",
		    dir, strerror(errno));
		return -1;
	}
	return 0;
}

void
ws_unlock(
    const char *repo, const char *dir, const char *ref, const char *branch)
{
	char *admin, *common, *p;

	if ((common = common_dir(repo)) == NULL)
		return;
	if ((admin = worktree_admin(common, dir, 0)) != NULL) {
		p = xasprintf("%s/index.lock", admin);
		unlink(p);
		free(p);
		p = xasprintf("%s/HEAD.lock", admin);
		unlink(p);
		free(p);
		free(admin);
	}
	if (ref != NULL && strncmp(ref, "refs/orch/", 10) == 0 &&
	    strstr(ref, "..") == NULL) {
		p = xasprintf("%s/%s.lock", common, ref);
		unlink(p);
		free(p);
	}
	if (branch != NULL && strncmp(branch, "orch/", 5) == 0 &&
	    strstr(branch, "..") == NULL) {
		p = xasprintf("%s/refs/heads/%s.lock", common, branch);
		unlink(p);
		free(p);
	}
	free(common);
}

int
ws_create(const char *repo, const char *dir, const char *commit, char **cause)
{
	struct stat st;
	char *absdir, *common, *admin;
	int rc = -1, lock;

	if (check_arg("commit", commit, cause) == -1 ||
	    check_arg("repository", repo, cause) == -1 ||
	    check_arg("worktree directory", dir, cause) == -1)
		return -1;
	absdir = abs_path(dir);
	common = common_dir(repo);
	if (lstat(dir, &st) == 0) {
		if (common != NULL &&
		    (admin = worktree_admin(common, absdir, 1)) != NULL) {
			pin_add(dir, absdir, admin, common);
			rc = 0;
			goto out;
		}
		/* Made half-way: its record goes too, then the directory. */
		if (common != NULL &&
		    (admin = worktree_admin(common, absdir, 0)) != NULL) {
			lock = worktrees_lock(common);
			if (nftw(admin, rm_entry, 16, FTW_DEPTH | FTW_PHYS) !=
			    0)
				log_warn("removing %s", admin);
			worktrees_unlock(lock);
			free(admin);
		}
		if (remove_half_worktree(dir, cause) == -1)
			goto out;
	}

	if (mkdir_parents(absdir, cause) == 0) {
		/*
		 * --force twice only lets git reuse the path of a registration
		 * whose directory is gone, locked or not (a `worktree add`
		 * killed before it wrote the directory's .git file leaves one,
		 * locked "initializing"); a non-empty directory is still
		 * refused.
		 */
		const char *args[] = {"worktree", "add", "--detach", "--force",
		    "--force", "--", absdir, commit, NULL};
		int added;

		lock = worktrees_lock(common);
		added = ws_git_quiet(repo, 0, args, NULL, cause);
		worktrees_unlock(lock);
		if (added == 0) {
			if (common == NULL)
				common = common_dir(repo);
			admin = common != NULL
			            ? worktree_admin(common, absdir, 1)
			            : NULL;
			if (admin == NULL)
				*cause = xasprintf("git worktree add made %s, "
				                   "but it is not a worktree "
				                   "of %s",
				    absdir, repo);
			else {
				pin_add(dir, absdir, admin, common);
				rc = 1;
			}
		}
	}
out:
	free(common);
	free(absdir);
	return rc;
}

static int
perm(struct git_status *gs, int *permanent)
{
	if (permanent != NULL)
		*permanent = !gs->transient;
	return -1;
}

int
ws_restore(const char *dir, const char *commit, char **cause)
{
	const char *reset[] = {"reset", "-q", "--hard", commit, "--", NULL};
	/*
	 * -ff also removes untracked nested repositories, which a plain -f
	 * leaves; -x is not given, so ignored files (build output) stay.
	 */
	const char *clean[] = {"clean", "-ffdq", NULL};

	if (check_arg("commit", commit, cause) == -1)
		return -1;
	if (ws_git_quiet(dir, 1, reset, NULL, cause) == -1)
		return -1;
	return ws_git_quiet(dir, 1, clean, NULL, cause);
}

#define PACKED_MAX (4 * 1024 * 1024) /* bytes of packed-refs read */

/*
 * Whether the repository keeps its refs as files (git's "files" backend):
 * then a ref of ours can be read without a git process.  Another backend
 * (reftable) is chosen by extensions.refStorage in the repository's own
 * configuration and keeps a reftable/ directory; a configuration that
 * names either, or includes another file, or cannot be read whole, is
 * left to git.
 */
static int
refs_are_files(const char *common)
{
	char buf[256 * 1024], *path;
	struct stat st;
	ssize_t n;
	int fd;

	path = xasprintf("%s/reftable", common);
	n = lstat(path, &st) == -1 && errno == ENOENT ? 0 : -1;
	free(path);
	if (n == -1)
		return 0;
	path = xasprintf("%s/config", common);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd == -1)
		return 0;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n < 0 || (size_t)n == sizeof buf - 1)
		return 0;
	buf[n] = '\0';
	return strlen(buf) == (size_t)n &&
	       strcasestr(buf, "refstorage") == NULL &&
	       strcasestr(buf, "reftable") == NULL &&
	       strcasestr(buf, "include") == NULL;
}

/* Whether ref is one of ours, with a name git would store as it is. */
static int
ref_is_plain(const char *ref)
{
	if (strncmp(ref, "refs/orch/", 10) != 0 &&
	    strncmp(ref, "refs/heads/orch/", 16) != 0)
		return 0;
	if (strstr(ref, "..") != NULL || strstr(ref, "//") != NULL ||
	    strstr(ref, "/.") != NULL || ref[strlen(ref) - 1] == '/')
		return 0;
	for (const char *c = ref; *c != '\0'; c++) {
		if (strchr(
		        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		        "0123456789/._-",
		        *c) == NULL)
			return 0;
	}
	return strlen(ref) < 5 || strcmp(ref + strlen(ref) - 5, ".lock") != 0;
}

/*
 * ref of packed-refs: its "HASH NAME" line.  1 and *commit (NULL: no such
 * line), or 0 when git must be asked (a file too large or unreadable).
 */
static int
ref_read_packed(const char *common, const char *ref, char **commit)
{
	char *path, *buf, *p, *end;
	size_t len = strlen(ref), n = 0;
	ssize_t r = 0;
	int fd;

	path = xasprintf("%s/packed-refs", common);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	free(path);
	if (fd == -1)
		return errno == ENOENT;
	buf = xmalloc(PACKED_MAX + 1);
	while (n < PACKED_MAX && ((r = read(fd, buf + n, PACKED_MAX - n)) > 0 ||
	                             (r == -1 && errno == EINTR)))
		n += r > 0 ? (size_t)r : 0;
	close(fd);
	if (n == PACKED_MAX || r == -1) {
		free(buf);
		return 0;
	}
	buf[n] = '\0';
	for (p = buf; p < buf + n; p = end + 1) {
		size_t h = strspn(p, "0123456789abcdef");

		if ((end = strchr(p, '\n')) == NULL)
			end = buf + n;
		if ((h == 40 || h == 64) && p[h] == ' ' &&
		    (size_t)(end - p) == h + 1 + len &&
		    strncmp(p + h + 1, ref, len) == 0) {
			*commit = xstrndup(p, h);
			break;
		}
	}
	free(buf);
	return 1;
}

/*
 * Read a ref of ours from the files git keeps it in, as git itself does:
 * the loose file <common>/REF, else its line in packed-refs, else it does
 * not exist.  Git writes both files whole (a lock file renamed over them)
 * and moves a ref into packed-refs before it removes the loose file, so a
 * read sees an old value or a new one, never a torn one; either way the
 * value is only used under update-ref's compare-and-swap.  1 and *commit
 * (NULL: no such ref), or 0 when git must be asked: another ref backend,
 * a name git might store otherwise, a symbolic ref, anything unexpected.
 */
static int
ref_read_files(struct pinned *p, const char *ref, char **commit)
{
	char buf[128], *path;
	ssize_t n;
	int fd;

	*commit = NULL;
	if (!ref_is_plain(ref))
		return 0;
	if (p->files == -1)
		p->files = refs_are_files(p->common);
	if (!p->files)
		return 0;
	path = xasprintf("%s/%s", p->common, ref);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	free(path);
	if (fd == -1)
		return errno == ENOENT ? ref_read_packed(p->common, ref, commit)
		                       : 0;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if (buf[n - 1] != '\n')
		return 0;
	buf[n - 1] = '\0';
	if (!is_hash(buf))
		return 0;
	*commit = xstrdup(buf);
	return 1;
}

int
ws_ref_get(const char *dir, const char *ref, char **commit, char **cause)
{
	char *spec, *line;
	const char *args[] = {"rev-parse", "-q", "--verify", NULL, NULL};
	struct git_status gs;
	struct pinned *p = pin_find(dir);
	struct known_ref *k;
	int rc;

	*commit = NULL;
	if (check_arg("ref", ref, cause) == -1)
		return -1;
	if (p != NULL && (k = kref_find(p->common, ref)) != NULL) {
		*commit = k->commit != NULL ? xstrdup(k->commit) : NULL;
		return 0;
	}
	if (p != NULL && ref_read_files(p, ref, commit)) {
		kref_set(p->common, ref, *commit);
		return 0;
	}
	spec = xasprintf("%s^{commit}", ref);
	args[3] = spec;
	rc = ws_git_line(dir, 1, args, NULL, &line, &gs, cause);
	free(spec);
	if (rc == -1) {
		/* rev-parse -q --verify says "no such ref" with exit 1. */
		if (gs.exit == 1) {
			free(*cause);
			*cause = NULL;
			if (p != NULL)
				kref_set(p->common, ref, NULL);
			return 0;
		}
		return -1;
	}
	if (!is_hash(line)) {
		*cause = xasprintf("git rev-parse %s: unexpected output", ref);
		free(line);
		return -1;
	}
	if (p != NULL)
		kref_set(p->common, ref, line);
	*commit = line;
	return 0;
}

/*
 * Whether commit was made by this state directory: its message ends with
 * the trailer "Orch-State: ID".  Without a state id (a unit test), every
 * commit is.
 */
static int
is_ours(const char *dir, const char *commit, int *ours, char **cause)
{
	static const char format[] =
	    "--format=%(trailers:key=" TRAILER ",valueonly)";
	const char *args[] = {
	    "log", "-1", "--no-show-signature", format, commit, "--", NULL};
	struct buf out;
	struct known_commit *k;
	char *p;

	*ours = 1;
	if (opts.state_id == NULL)
		return 0;
	if ((k = kcommit_get(commit, 0)) != NULL && k->ours != -1) {
		*ours = k->ours;
		return 0;
	}
	if (ws_git(dir, 1, args, NULL, &out, NULL, cause) == -1) {
		free(out.buf);
		return -1;
	}
	*ours = 0;
	for (p = out.buf; *p != '\0'; p += strcspn(p, "\n")) {
		size_t n = strcspn(p, "\n");

		if (n == strlen(opts.state_id) &&
		    strncmp(p, opts.state_id, n) == 0)
			*ours = 1;
		if (p[n] == '\n')
			p++;
	}
	free(out.buf);
	kcommit_get(commit, 1)->ours = *ours;
	return 0;
}

/* message with this state directory's trailer. */
static char *
with_trailer(const char *message)
{
	size_t n = strlen(message);

	while (n > 0 && message[n - 1] == '\n')
		n--;
	if (opts.state_id == NULL)
		return xasprintf("%.*s\n", (int)n, message);
	if (opts.epoch > 0)
		return xasprintf("%.*s%s" TRAILER ": %s\n" ORIGIN_EPOCH_TRAILER
		                 ": %llu\n",
		    (int)n, message, n > 0 ? "\n\n" : "", opts.state_id,
		    (unsigned long long)opts.epoch);
	return xasprintf("%.*s%s" TRAILER ": %s\n", (int)n, message,
	    n > 0 ? "\n\n" : "", opts.state_id);
}

int
ws_pick_ref(const char *dir, const char *ref, const char *alt, char **chosen,
    int *permanent, char **cause)
{
	char *c = NULL;
	int ours;

	*chosen = NULL;
	*permanent = 0;
	if (ws_ref_get(dir, alt, &c, cause) == -1)
		return -1;
	if (c != NULL) {
		if (is_ours(dir, c, &ours, cause) == -1) {
			free(c);
			return -1;
		}
		free(c);
		if (!ours) {
			*cause = xasprintf("%s and %s exist and were made by "
			                   "another state directory; they are "
			                   "left alone: move one aside (git "
			                   "update-ref -m moved NEW OLD) and "
			                   "resume the task",
			    ref, alt);
			*permanent = 1;
			return -1;
		}
		*chosen = xstrdup(alt);
		return 0;
	}
	if (ws_ref_get(dir, ref, &c, cause) == -1)
		return -1;
	ours = 1;
	if (c != NULL && is_ours(dir, c, &ours, cause) == -1) {
		free(c);
		return -1;
	}
	free(c);
	*chosen = xstrdup(ours ? ref : alt);
	return 0;
}

/*
 * Point ref at new, provided it still points at old ("" = must not exist):
 * git compares and swaps under the ref's lock.  old is what this worker
 * read or wrote, so a ref someone else moved since is refused, not lost.
 */
static int
update_ref(const char *dir, const char *ref, const char *new, const char *old,
    struct git_status *gs, char **cause)
{
	const char *args[] = {
	    "update-ref", "-m", "orch-supervisor", ref, new, old, NULL};
	struct pinned *p = pin_find(dir);
	int rc;

	rc = ws_git_quiet(dir, 1, args, gs, cause);
	if (p != NULL) {
		if (rc == 0)
			kref_set(p->common, ref, new);
		else
			kref_forget(p->common, ref);
	}
	return rc;
}

/*
 * Make a commit of tree on parent.  The message goes on standard input: an
 * argument is limited by the kernel (128 KiB each), a model's summary is
 * not.
 */
static int
commit_tree(const char *dir, const char *tree, const char *parent,
    const char *message, char **commit, struct git_status *gs, char **cause)
{
	const char *args[] = {
	    "commit-tree", "--no-gpg-sign", tree, "-p", parent, NULL};
	char *msg = with_trailer(message);
	struct git_opts in = {0};
	int rc;

	in.in = msg;
	in.inlen = strlen(msg);
	rc = ws_git_line(dir, 1, args, &in, commit, gs, cause);
	free(msg);
	if (rc == -1)
		return -1;
	if (!is_hash(*commit)) {
		*cause = xstrdup("git commit-tree: unexpected output");
		free(*commit);
		*commit = NULL;
		gs->transient = 0;
		return -1;
	}
	kcommit_made(*commit, is_hash(tree) ? tree : NULL);
	return 0;
}

/* Add a line to a note for the model, up to NOTE_MAX lines. */
static void note_add(char **note, size_t *count, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
note_add(char **note, size_t *count, const char *fmt, ...)
{
	va_list ap;
	char *line, *s;

	if ((*count)++ >= NOTE_MAX)
		return;
	va_start(ap, fmt);
	if (vasprintf(&line, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	s = xasprintf("%s- %s\n", *note != NULL ? *note : "", line);
	free(*note);
	free(line);
	*note = s;
}

/*
 * Whether the workspace may hold what a snapshot leaves out: a regular
 * file over the size limit, or a ".git" below the top (a nested
 * repository).  Walking a small workspace costs far less than a git
 * process; git lists the candidates only when the walk finds one, so the
 * rule stays git's (changed and untracked files, not ignored ones).  The
 * walk gives up (and git is asked) past WALK_MAX entries, on anything it
 * cannot stat or read, and at a ".git" anywhere but the top, where it is
 * the worktree's own file (git never looks inside either).  Symbolic links
 * are not followed.  Nothing else runs in the workspace while it snapshots.
 */
#define WALK_MAX 1000
static size_t walk_seen;

static int
walk_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (ftw->level == 0)
		return FTW_CONTINUE;
	if (strcmp(path + ftw->base, ".git") == 0) {
		if (ftw->level > 1)
			return FTW_STOP;
		return flag == FTW_D ? FTW_SKIP_SUBTREE : FTW_CONTINUE;
	}
	if (++walk_seen > WALK_MAX || flag == FTW_NS || flag == FTW_DNR)
		return FTW_STOP;
	if (flag == FTW_F && S_ISREG(st->st_mode) &&
	    (uint64_t)st->st_size > opts.max_file_bytes)
		return FTW_STOP;
	return FTW_CONTINUE;
}

static int
snapshot_may_exclude(const char *dir)
{
	walk_seen = 0;
	return nftw(dir, walk_entry, 16, FTW_PHYS | FTW_ACTIONRETVAL) != 0;
}

/*
 * What a snapshot must leave out, as git pathspecs (NUL-separated, after
 * "."), and a note for the model naming them: nested repositories (a
 * directory with its own .git: git cannot add its files, and an empty one
 * makes `git add` fail), and files over the size limit.  Only changed and
 * untracked files are looked at: git keeps the others as they are.
 */
static int
snapshot_excludes(const char *dir, char **spec, size_t *speclen, char **note,
    struct git_status *gs, char **cause)
{
	const char *args[] = {
	    "ls-files", "-z", "-m", "-o", "--exclude-standard", NULL};
	struct git_opts big = {0};
	struct buf out;
	size_t n = 2, count = 0;
	char *s = xmalloc(2);

	*note = NULL;
	big.outmax = LIST_MAX_OUT;
	big.timeout_ms = opts.timeout_s * 1000;
	memcpy(s, ".", 2);
	if (!snapshot_may_exclude(dir)) {
		*spec = s;
		*speclen = n;
		return 0;
	}
	if (ws_git(dir, 1, args, &big, &out, gs, cause) == -1) {
		free(out.buf);
		free(s);
		return -1;
	}
	if (out.total > out.len) {
		*cause = xasprintf("the workspace has more changed files than "
		                   "a snapshot can list (%zu bytes of names)",
		    out.total);
		gs->transient = 0;
		free(out.buf);
		free(s);
		return -1;
	}
	for (char *p = out.buf; p < out.buf + out.len; p += strlen(p) + 1) {
		size_t len = strlen(p);
		char *path, *ex = NULL;
		struct stat st;

		if (len == 0)
			continue;
		if (p[len - 1] == '/') {
			ex = xasprintf(
			    ":(exclude,literal)%.*s", (int)len - 1, p);
			note_add(note, &count,
			    "%s is a nested git repository (it has its own "
			    ".git): its files are not saved. Remove %s.git "
			    "to have them saved.",
			    p, p);
		} else {
			path = xasprintf("%s/%s", dir, p);
			if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
			    (uint64_t)st.st_size > opts.max_file_bytes) {
				ex = xasprintf(":(exclude,literal)%s", p);
				note_add(note, &count,
				    "%s is %lld bytes, over the limit of %llu "
				    "(ORCH_SNAPSHOT_MAX_FILE_BYTES): it is "
				    "not saved.",
				    p, (long long)st.st_size,
				    (unsigned long long)opts.max_file_bytes);
			}
			free(path);
		}
		if (ex != NULL) {
			size_t el = strlen(ex) + 1;

			s = xrealloc(s, n + el);
			memcpy(s + n, ex, el);
			n += el;
			free(ex);
		}
	}
	free(out.buf);
	if (count > NOTE_MAX)
		note_add(note, &count, "and %zu more", count - NOTE_MAX);
	if (*note != NULL) {
		char *full = xasprintf("Left out of the workspace snapshot "
		                       "(a restart of the stage or the result "
		                       "will not have them):\n%s",
		    *note);
		free(*note);
		*note = full;
	}
	*spec = s;
	*speclen = n;
	return 0;
}

int
ws_snapshot(const char *dir, const char *ref, const char *parent,
    const char *message, char **commit, char **note, int *permanent,
    char **cause)
{
	const char *add[] = {
	    "add", "-A", "--pathspec-from-file=-", "--pathspec-file-nul", NULL};
	const char *write_tree[] = {"write-tree", NULL};
	char *old = NULL, *base = NULL, *tree = NULL, *base_tree = NULL;
	char *spec = NULL;
	struct git_opts in = {0};
	struct git_status gs = {-1, 0, 0};
	struct buf added = {0};
	int rc = -1;

	*commit = NULL;
	*note = NULL;
	if (permanent != NULL)
		*permanent = 1;
	if (check_arg("ref", ref, cause) == -1)
		return -1;
	if (strncmp(ref, "refs/orch/", 10) != 0) {
		*cause =
		    xasprintf("snapshot ref %s is not under refs/orch/", ref);
		return -1;
	}
	if (message == NULL)
		message = "";
	if (ws_ref_get(dir, ref, &old, cause) == -1) {
		gs.transient = 1;
		goto out;
	}
	if (old != NULL)
		base = xstrdup(old);
	else if (parent == NULL) {
		*cause =
		    xasprintf("%s does not exist and there is no parent", ref);
		goto out;
	} else if (check_arg("parent", parent, cause) == -1 ||
	           (!is_hash(parent) &&
	               rev_parse(dir, parent, "commit", &base, cause) == -1))
		goto out;
	else if (base == NULL) {
		/*
		 * A full hash (the task's base commit) needs no git to name
		 * it: commit-tree -p refuses one that is not a commit.
		 */
		base = xstrdup(parent);
	}

	/*
	 * The worktree's own index (in .git/worktrees/NAME, not the user's)
	 * does the staging: it keeps the stat cache between snapshots, and
	 * files that are tracked but match .gitignore stay in the tree.  A
	 * snapshot of a large workspace may take long: git_run ticks (the
	 * worker's heartbeat) while it runs, and each git has the limit.
	 */
	if (snapshot_excludes(dir, &spec, &in.inlen, note, &gs, cause) == -1)
		goto out;
	in.in = spec;
	in.timeout_ms = opts.timeout_s * 1000;
	if (ws_git(dir, 1, add, &in, &added, &gs, cause) == -1 ||
	    ws_git_line(dir, 1, write_tree, NULL, &tree, &gs, cause) == -1)
		goto out;
	if (!is_hash(tree)) {
		*cause = xstrdup("git write-tree: unexpected output");
		goto out;
	}

	/*
	 * Nothing changed: no commit, unless the ref is new.  Its first
	 * commit is always one of ours, with this state directory's trailer,
	 * so that a ref that exists can be told to be ours or not.  The
	 * tree of the last snapshot this worker made is known.
	 */
	if (old != NULL && kcommit_tree(old) != NULL)
		base_tree = xstrdup(kcommit_tree(old));
	else if (old != NULL &&
	         rev_parse(dir, base, "tree", &base_tree, cause) == -1)
		goto out;
	if (old != NULL && strcmp(tree, base_tree) == 0) {
		*commit = base;
		base = NULL;
		rc = 0;
		goto out;
	}
	if (commit_tree(dir, tree, base, message, commit, &gs, cause) == -1)
		goto out;
	/* The old value makes a concurrent move of ref fail, not vanish. */
	if (update_ref(dir, ref, *commit, old != NULL ? old : "", &gs, cause) ==
	    -1) {
		free(*commit);
		*commit = NULL;
		goto out;
	}
	rc = 0;
out:
	if (rc == -1) {
		perm(&gs, permanent);
		free(*note);
		*note = NULL;
	}
	free(added.buf);
	free(spec);
	free(old);
	free(base);
	free(tree);
	free(base_tree);
	return rc;
}

int
ws_squash(const char *dir, const char *branch, const char *base,
    const char *commit, const char *message, char **result, int *permanent,
    char **cause)
{
	char *tree, *ref, *old = NULL;
	struct git_status gs = {-1, 0, 0};
	int rc = -1, ours = 1;

	*result = NULL;
	if (permanent != NULL)
		*permanent = 1;
	if (check_arg("branch", branch, cause) == -1 ||
	    check_arg("base", base, cause) == -1 ||
	    check_arg("commit", commit, cause) == -1)
		return -1;
	if (strncmp(branch, "orch/", 5) != 0) {
		*cause = xasprintf("branch %s is not under orch/", branch);
		return -1;
	}
	if (message == NULL)
		message = "";
	ref = xasprintf("refs/heads/%s", branch);
	/* The result has the snapshot's tree: its hash when it is known. */
	if (kcommit_tree(commit) != NULL)
		tree = xstrdup(kcommit_tree(commit));
	else
		tree = xasprintf("%s^{tree}", commit);
	if (ws_ref_get(dir, ref, &old, cause) == -1 ||
	    (old != NULL && is_ours(dir, old, &ours, cause) == -1)) {
		gs.transient = 1;
		goto out;
	}
	if (!ours) {
		*cause = xasprintf("branch %s exists and was not made by this "
		                   "state directory: it is left alone",
		    branch);
		goto out;
	}
	/* commit-tree itself checks that base is a commit. */
	if (commit_tree(dir, tree, base, message, result, &gs, cause) == 0) {
		if ((rc = update_ref(dir, ref, *result, old != NULL ? old : "",
		         &gs, cause)) == -1) {
			free(*result);
			*result = NULL;
		}
	}
out:
	if (rc == -1)
		perm(&gs, permanent);
	free(old);
	free(ref);
	free(tree);
	return rc;
}

/*
 * Run a diff and cut its output at max bytes, at the last line break before
 * that when there is one, with a note saying how much was left out.
 */
static int
diff_cut(const char *dir, const char *const *args, size_t max, const char *what,
    char **out, char **cause)
{
	struct git_opts lim = {0};
	struct buf cb;
	size_t keep;

	*out = NULL;
	lim.outmax = max;
	if (ws_git(dir, 1, args, &lim, &cb, NULL, cause) == -1) {
		free(cb.buf);
		return -1;
	}
	if (cb.total <= max) {
		*out = cb.buf;
		return 0;
	}
	keep = cb.len;
	while (keep > 0 && cb.buf[keep - 1] != '\n')
		keep--;
	if (keep == 0)
		keep = cb.len;
	*out = xasprintf("%.*s\n[... %zu bytes of the %s left out ...]\n",
	    (int)keep, cb.buf, cb.total - keep, what);
	free(cb.buf);
	return 0;
}

/*
 * The diffstat of two commits is that of their trees: a snapshot and the
 * result squashed from it (the same tree on the same base) have one.
 * The last one is kept, by the tree when this worker made the commit.
 */
int
ws_diffstat(const char *dir, const char *base, const char *commit, char **out,
    char **cause)
{
	const char *args[] = {"diff", "--no-color", "--no-ext-diff",
	    "--no-textconv", "--stat", base, commit, "--", NULL};
	struct pinned *p = pin_find(dir);
	const char *key = kcommit_tree(commit);

	*out = NULL;
	if (check_arg("base", base, cause) == -1 ||
	    check_arg("commit", commit, cause) == -1)
		return -1;
	if (key == NULL)
		key = commit;
	if (p != NULL && kstat.stat != NULL &&
	    strcmp(kstat.common, p->common) == 0 &&
	    strcmp(kstat.base, base) == 0 && strcmp(kstat.key, key) == 0) {
		*out = xstrdup(kstat.stat);
		return 0;
	}
	if (diff_cut(dir, args, DIFFSTAT_MAX, "diffstat", out, cause) == -1)
		return -1;
	/* A name (a branch) may move; a hash names one commit for good. */
	if (p != NULL && is_hash(base) && is_hash(commit)) {
		free(kstat.common);
		free(kstat.base);
		free(kstat.key);
		free(kstat.stat);
		kstat.common = xstrdup(p->common);
		kstat.base = xstrdup(base);
		kstat.key = xstrdup(key);
		kstat.stat = xstrdup(*out);
	}
	return 0;
}

int
ws_diff(const char *dir, const char *base, const char *commit, size_t max,
    char **out, char **cause)
{
	const char *args[] = {"diff", "--no-color", "--no-ext-diff",
	    "--no-textconv", base, commit, "--", NULL};

	*out = NULL;
	if (check_arg("base", base, cause) == -1 ||
	    check_arg("commit", commit, cause) == -1)
		return -1;
	if (max > INT_MAX)
		max = INT_MAX;
	return diff_cut(dir, args, max, "diff", out, cause);
}

int
ws_remove(const char *repo, const char *dir, char **cause)
{
	struct stat st;
	char *absdir, *common;
	int rc, lock;

	if (check_arg("repository", repo, cause) == -1 ||
	    check_arg("worktree directory", dir, cause) == -1)
		return -1;
	absdir = abs_path(dir);
	common = common_dir(repo);
	lock = worktrees_lock(common);
	if (lstat(absdir, &st) == 0) {
		const char *args[] = {
		    "worktree", "remove", "--force", absdir, NULL};

		rc = ws_git_quiet(repo, 0, args, NULL, cause);
	} else if (errno == ENOENT) {
		/*
		 * The directory is gone but may still be registered.  Prune
		 * only then: a prune also drops the registration of any of
		 * the user's own worktrees whose directory is missing (on an
		 * unmounted disk, say), so it is not run on every removal.
		 */
		const char *args[] = {"worktree", "prune", NULL};

		rc = ws_git_quiet(repo, 0, args, NULL, cause);
	} else {
		*cause = xasprintf("%s: %s", absdir, strerror(errno));
		rc = -1;
	}
	worktrees_unlock(lock);
	free(common);
	free(absdir);
	return rc;
}
