/*
 * The worker's own confinement, with Landlock (best-effort).
 *
 * The worker is not told where the database is and holds no descriptor to
 * it (the supervisor closes everything above fd 3 before the exec), but it
 * runs as the same user as the supervisor, so nothing but this stops a
 * worker that was made to misbehave (a memory-safety bug reached through a
 * model reply, say) from opening $ORCH_STATE_DIR/tasks.db, the backups or
 * the logs.  Landlock makes that an EACCES from the kernel: after
 * confine_paths the worker and everything it starts (git) may only
 *
 *   read and execute   /usr, /bin, /sbin, /lib*, /etc, /opt, /nix/store,
 *                      /run, /sys, /proc, $HOME, the worker's own
 *                      directory, and the extra paths it is given (the
 *                      sandbox profiles, the scripted model's script);
 *   also write         /dev (files only: /dev/null), /tmp and $TMPDIR,
 *                      the user's repository (git writes objects, refs
 *                      and the worktree's registration there), the task's
 *                      worktree, and the files it is given (the scripted
 *                      model's trace);
 *
 * and never anything inside the denied directory (the state directory),
 * except the worktree.  Landlock only grants, it cannot deny: a grant on a
 * directory that holds the denied one (/tmp, $HOME) is replaced by grants
 * on each of its entries except the one leading to the denied directory,
 * level by level.  Those entries are the ones that exist now: a file
 * created later directly in such a directory is out of reach.
 *
 * The network is not a filesystem: the LLM connection (TCP, DNS) is not
 * restricted.  With ABI 6 signals are scoped too: the worker can no longer
 * signal the supervisor or any process outside its domain.
 *
 * What cannot be confined: a process in a Landlock domain that restricts
 * the filesystem may not mount(2) or pivot_root(2), and bubblewrap must.
 * So the stages that run sandboxed commands (implementing, verifying) are
 * not confined; see confine_worker.
 */
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <linux/landlock.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "worker.h"

/* Older headers (Debian 12's are ABI 2) lack the later rights. */
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#define CONFINE_SCOPE_SIGNAL (1ULL << 1) /* LANDLOCK_SCOPE_SIGNAL, ABI 6 */

#define FS_RO                                                                  \
	(LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE |           \
	    LANDLOCK_ACCESS_FS_READ_DIR)
#define FS_FILE                                                                \
	(LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |          \
	    LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE)
#define FS_RW (~0ULL) /* masked by what the ABI handles */
#define FS_DEV                                                                 \
	(FS_RO | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE)
#define WALK_MAX 100000 /* entries granted one by one, in all */

/* The ruleset attribute as of ABI 6, whatever the installed header says. */
struct ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net;
	uint64_t scoped;
};

struct path_rule {
	uint64_t allowed_access;
	int32_t parent_fd;
} __attribute__((packed));

struct ll {
	int fd;
	uint64_t handled;
	char *deny; /* realpath of the denied directory, or NULL */
	unsigned walked;
	char *error; /* the first failure */
};

/* Does path equal dir or lie below it (component-wise)? */
static int
under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	if (strcmp(dir, "/") == 0)
		return 1;
	return strncmp(path, dir, n) == 0 &&
	       (path[n] == '\0' || path[n] == '/');
}

static void
ll_fail(struct ll *l, const char *what, const char *path, int err)
{
	if (l->error == NULL)
		l->error = xasprintf("%s %s: %s", what, path, strerror(err));
}

/*
 * Grant access on the file open at fd (O_PATH), st its fstat; path is for
 * messages.
 */
static void
ll_rule_fd(struct ll *l, int fd, const struct stat *st, const char *path,
    uint64_t access)
{
	struct path_rule r;

	access &= l->handled;
	if (!S_ISDIR(st->st_mode))
		access &= FS_FILE;
	if (access != 0) {
		r.allowed_access = access;
		r.parent_fd = fd;
		if (syscall(SYS_landlock_add_rule, l->fd,
		        LANDLOCK_RULE_PATH_BENEATH, &r, 0) == -1)
			ll_fail(l, "landlock_add_rule", path, errno);
	}
}

static void
ll_rule(struct ll *l, const char *path, uint64_t access)
{
	struct stat st;
	int fd;

	if ((fd = open(path, O_PATH | O_CLOEXEC)) == -1) {
		if (errno != ENOENT && errno != EACCES && errno != ENOTDIR)
			ll_fail(l, "open", path, errno);
		return;
	}
	if (fstat(fd, &st) == -1)
		ll_fail(l, "stat", path, errno);
	else
		ll_rule_fd(l, fd, &st, path, access);
	close(fd);
}

/*
 * Grant access on real (a resolved path), or, when the denied directory
 * lies below it, on each of its entries except the one toward it.
 */
static void
ll_walk(struct ll *l, const char *real, uint64_t access)
{
	DIR *d;
	struct dirent *de;

	if (l->deny == NULL || !under(l->deny, real)) {
		ll_rule(l, real, access);
		return;
	}
	if (strcmp(l->deny, real) == 0)
		return;
	if ((d = opendir(real)) == NULL) {
		if (errno != EACCES && errno != ENOENT)
			ll_fail(l, "opendir", real, errno);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		char *child;

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (++l->walked > WALK_MAX) {
			ll_fail(l, "too many entries in", real, E2BIG);
			break;
		}
		child = strcmp(real, "/") == 0
		            ? xasprintf("/%s", de->d_name)
		            : xasprintf("%s/%s", real, de->d_name);
		/*
		 * An entry off the way to the denied directory is granted
		 * whole, opened relative to this directory and without
		 * following a symlink (which leads elsewhere: that place has
		 * its own grant): one lookup instead of two full paths.  A
		 * shared /tmp holds hundreds of entries, and this ran in
		 * every planning and reviewing worker.
		 */
		if (!under(l->deny, child)) {
			int fd = openat(dirfd(d), de->d_name,
			    O_PATH | O_NOFOLLOW | O_CLOEXEC);

			if (fd == -1) {
				if (errno != ENOENT && errno != EACCES)
					ll_fail(l, "open", child, errno);
			} else {
				if (fstat(fd, &st) == 0 && !S_ISLNK(st.st_mode))
					ll_rule_fd(l, fd, &st, child, access);
				close(fd);
			}
		} else if (lstat(child, &st) == 0 && !S_ISLNK(st.st_mode))
			ll_walk(l, child, access);
		free(child);
	}
	closedir(d);
}

/*
 * Grant access on path (resolved; a missing path is skipped).  Unless
 * force is set, nothing inside the denied directory is granted.
 */
static void
ll_allow(struct ll *l, const char *path, uint64_t access, int force)
{
	char *real;

	if (path == NULL || *path == '\0')
		return;
	if ((real = realpath(path, NULL)) == NULL)
		return;
	if (force)
		ll_rule(l, real, access);
	else if (l->deny == NULL || !under(real, l->deny))
		ll_walk(l, real, access);
	free(real);
}

static int
mkdir_p(const char *path, char **cause)
{
	char *copy = xstrdup(path);

	for (char *p = copy + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(copy, 0700) == -1 && errno != EEXIST) {
			*cause =
			    xasprintf("mkdir %s: %s", copy, strerror(errno));
			free(copy);
			return -1;
		}
		if (c == '\0')
			break;
		*p = c;
	}
	free(copy);
	return 0;
}

/* The gitdir a ".git" file names, and its commondir, granted rw. */
static void
ll_gitfile(struct ll *l, const char *repo)
{
	char *path = xasprintf("%s/.git", repo), line[PATH_MAX + 16];
	struct stat st;
	FILE *f;

	if (lstat(path, &st) == -1 || !S_ISREG(st.st_mode) ||
	    (f = fopen(path, "re")) == NULL) {
		free(path);
		return;
	}
	free(path);
	if (fgets(line, sizeof line, f) != NULL &&
	    strncmp(line, "gitdir: ", 8) == 0) {
		char *gd = line + 8, *common, *abs;

		gd[strcspn(gd, "\r\n")] = '\0';
		abs = gd[0] == '/' ? xstrdup(gd) : xasprintf("%s/%s", repo, gd);
		ll_allow(l, abs, FS_RW, 1);
		/* A linked worktree's objects and refs are in commondir. */
		path = xasprintf("%s/commondir", abs);
		if ((common = realpath(path, NULL)) != NULL) {
			FILE *cf = fopen(path, "re");
			char cl[PATH_MAX];

			if (cf != NULL && fgets(cl, sizeof cl, cf) != NULL) {
				char *cd;

				cl[strcspn(cl, "\r\n")] = '\0';
				cd = cl[0] == '/' ? xstrdup(cl)
				                  : xasprintf("%s/%s", abs, cl);
				ll_allow(l, cd, FS_RW, 1);
				free(cd);
			}
			if (cf != NULL)
				fclose(cf);
			free(common);
		}
		free(path);
		free(abs);
	}
	fclose(f);
}

int
confine_abi(void)
{
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0,
	    LANDLOCK_CREATE_RULESET_VERSION);

	return abi < 0 ? 0 : (int)abi;
}

int
confine_paths(const struct confine_spec *c, char **cause)
{
	static const char *const system_ro[] = {"/usr", "/bin", "/sbin", "/lib",
	    "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/nix/store", "/run",
	    "/sys", "/proc"};
	struct ruleset_attr attr;
	struct ll l;
	size_t attr_size;
	char *self;
	int abi = confine_abi();

	*cause = NULL;
	if (abi == 0) {
		*cause = xasprintf("Landlock is not available (%s): the "
		                   "kernel lacks it or it is not in lsm=",
		    strerror(errno));
		return 0;
	}
	/* ABI 1 refuses every rename or link across directories: git needs
	 * them (objects, refs, the index). */
	if (abi < 2) {
		*cause = xasprintf("Landlock ABI %d is too old (2, Linux 5.19, "
		                   "is needed for git's renames)",
		    abi);
		return 0;
	}

	memset(&l, 0, sizeof l);
	memset(&attr, 0, sizeof attr);
	l.handled = ((1ULL << 13) - 1) | LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		l.handled |= LANDLOCK_ACCESS_FS_TRUNCATE;
	attr.handled_access_fs = l.handled;
	attr_size = sizeof attr.handled_access_fs;
	if (abi >= 6) {
		attr.scoped = CONFINE_SCOPE_SIGNAL;
		attr_size = sizeof attr;
	}

	/* What must exist before the doors close. */
	if (c->worktree != NULL && mkdir_p(c->worktree, cause) == -1)
		return -1;
	for (size_t i = 0; c->write_files != NULL && c->write_files[i]; i++) {
		int fd = open(c->write_files[i],
		    O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		if (fd != -1)
			close(fd);
	}

	l.fd = (int)syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0);
	if (l.fd == -1) {
		*cause =
		    xasprintf("landlock_create_ruleset: %s", strerror(errno));
		return -1;
	}
	if (c->deny != NULL) {
		l.deny = realpath(c->deny, NULL);
		if (l.deny == NULL)
			l.deny = xstrdup(c->deny);
	}

	for (size_t i = 0; i < nitems(system_ro); i++)
		ll_allow(&l, system_ro[i], FS_RO, 0);
	ll_allow(&l, "/dev", FS_DEV, 0);
	ll_allow(&l, getenv("HOME"), FS_RO, 0);
	ll_allow(&l, "/tmp", FS_RW, 0);
	ll_allow(&l, getenv("TMPDIR"), FS_RW, 0);
	if ((self = realpath("/proc/self/exe", NULL)) != NULL) {
		ll_allow(&l, dirname(self), FS_RO, 0);
		free(self);
	}
	for (size_t i = 0; c->read != NULL && c->read[i] != NULL; i++)
		ll_allow(&l, c->read[i], FS_RO, 0);
	for (size_t i = 0; c->write_files != NULL && c->write_files[i]; i++)
		ll_allow(&l, c->write_files[i], FS_FILE, 1);
	if (c->repo != NULL) {
		ll_allow(&l, c->repo, FS_RW, 1);
		ll_gitfile(&l, c->repo);
	}
	if (c->worktree != NULL)
		ll_allow(&l, c->worktree, FS_RW, 1);

	if (l.error != NULL) {
		*cause = l.error;
		goto fail;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		*cause = xasprintf("PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
		goto fail;
	}
	if (syscall(SYS_landlock_restrict_self, l.fd, 0) == -1) {
		*cause =
		    xasprintf("landlock_restrict_self: %s", strerror(errno));
		goto fail;
	}
	close(l.fd);
	free(l.deny);
	return abi;

fail:
	close(l.fd);
	free(l.deny);
	return -1;
}

/*
 * The state directory, from the worktree's path: the supervisor puts it at
 * $ORCH_STATE_DIR/worktrees/task-ID.  NULL when it is not laid out so.
 */
static char *
confine_state_dir(const char *worktree)
{
	char *copy = xstrdup(worktree), *slash, *state = NULL;
	size_t n = strlen(copy);

	while (n > 1 && copy[n - 1] == '/')
		copy[--n] = '\0';
	if ((slash = strrchr(copy, '/')) != NULL && slash != copy) {
		*slash = '\0';
		n = strlen(copy);
		if (n >= 10 && strcmp(copy + n - 10, "/worktrees") == 0) {
			copy[n - 10] = '\0';
			state = xstrdup(*copy != '\0' ? copy : "/");
		}
	}
	free(copy);
	return state;
}

void
confine_worker(const struct msg_start *start, const char *profile)
{
	struct confine_spec c;
	const char *wt = start->worktree;
	const char *script = start->llm_script;
	const char *read[3] = {NULL, NULL, NULL};
	const char *write[2] = {NULL, NULL};
	char *worktree = NULL, *state = NULL, *cause = NULL, cwd[PATH_MAX];
	size_t nr = 0;
	int rc;

	/*
	 * bubblewrap must mount, and Landlock forbids that to a confined
	 * process: the stages that run commands stay unconfined.
	 */
	if (profile != NULL) {
		log_debug("not confined with Landlock: this stage runs "
		          "bubblewrap, which must mount");
		return;
	}
	if (wt == NULL)
		return; /* proto_start_get refuses such a START */
	if (wt[0] != '/' && getcwd(cwd, sizeof cwd) != NULL)
		worktree = xasprintf("%s/%s", cwd, wt);
	else
		worktree = xstrdup(wt);
	state = confine_state_dir(worktree);

	memset(&c, 0, sizeof c);
	c.worktree = worktree;
	c.repo = start->repo;
	c.deny = state;
	read[nr++] = start->profiles_dir;
	if (script != NULL && script[0] != '{')
		read[nr++] = script;
	if (read[0] == NULL) {
		read[0] = read[1];
		read[1] = NULL;
	}
	c.read = read;
	write[0] = start->llm_trace;
	c.write_files = write;

	rc = confine_paths(&c, &cause);
	if (rc > 0)
		log_debug("confined with Landlock (ABI %d)%s%s", rc,
		    state ? "; denied: " : "", state ? state : "");
	else
		log_warnx("going on without Landlock confinement: %s", cause);
	free(cause);
	free(state);
	free(worktree);
}
