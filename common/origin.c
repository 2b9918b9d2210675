/*
 * A task's repository given as an origin (a git URL, or a bare repository
 * named by its path, which the command line turns into a file:// URL) and
 * the node's mirror of it.
 *
 * The URL comes from a person or a client: it is checked here before git
 * sees it (no option, no transport helper such as ext::, no credentials
 * written into it, only file, https and ssh), and git_env limits the
 * transports once more.  The URL is never written into the mirror's
 * configuration: it is given on each fetch and push, so nothing a worktree
 * of the mirror can reach names it.
 *
 * The mirror ($ORCH_STATE_DIR/repos/NAME-HASH.git) is a bare repository
 * that holds the origin's HEAD and branches under refs/origin/ (never
 * under refs/heads/, where the result branches are made), the task's
 * worktrees, snapshot refs and result branches.  Tasks of one origin run
 * in parallel: every fetch and push holds an flock on NAME-HASH.lock.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define ORIGIN_TIMEOUT_S  300 /* a fetch or push, each */
#define ORIGIN_MAX_BRANCH 200
#define ORIGIN_NAME_MAX   40 /* bytes of the readable part of a mirror name */
#define TRAILER_KEY       "Orch-State"

static void (*origin_tick)(void *);
static void *origin_arg;
static unsigned origin_timeout_s = ORIGIN_TIMEOUT_S;
static uint64_t origin_epoch; /* origin_set_epoch */

/*
 * stderr of a fetch or push that will fail again however often it is
 * tried: the origin refuses us, or is not there.  Anything else (a host
 * not reached, a connection cut, a lease gone stale) may pass.
 */
static const char *const origin_permanent[] = {
    "Permission denied",
    "Authentication failed",
    "could not read Username",
    "could not read Password",
    "terminal prompts disabled",
    "Host key verification failed",
    "The requested URL returned error: 401",
    "The requested URL returned error: 403",
    "The requested URL returned error: 404",
    "does not appear to be a git repository",
    "Repository not found",
    "repository not found",
    "couldn't find remote ref",
    "hook declined",
    "protocol '",
    "transport '",
};

void
origin_configure(void (*tick)(void *), void *arg, unsigned timeout_s)
{
	origin_tick = tick;
	origin_arg = arg;
	origin_timeout_s = timeout_s > 0 ? timeout_s : ORIGIN_TIMEOUT_S;
}

void
origin_set_epoch(uint64_t epoch)
{
	origin_epoch = epoch;
}

int
origin_is_url(const char *repo)
{
	return repo != NULL && strstr(repo, "://") != NULL;
}

/* A branch name simple enough to need no quoting anywhere. */
static int
branch_ok(const char *b)
{
	size_t n = strlen(b);

	if (n == 0 || n > ORIGIN_MAX_BRANCH || b[0] == '-' || b[0] == '/' ||
	    b[0] == '.' || b[n - 1] == '/' || b[n - 1] == '.' ||
	    strstr(b, "..") != NULL || strstr(b, "//") != NULL ||
	    strstr(b, "/.") != NULL ||
	    (n >= 5 && strcmp(b + n - 5, ".lock") == 0))
		return 0;
	for (const char *p = b; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && strchr("._/-", *p) == NULL)
			return 0;
	}
	return 1;
}

/* The [user@]host[:port] of an https:// or ssh:// URL. */
static int
authority_ok(const char *scheme, const char *a, size_t n, char **cause)
{
	const char *at = memchr(a, '@', n), *host = a;

	if (n == 0) {
		*cause =
		    xasprintf("--repo: the %s:// URL names no host", scheme);
		return -1;
	}
	/* ssh would take "-oProxyCommand=..." for an option. */
	if (a[0] == '-' || (at != NULL && at + 1 < a + n && at[1] == '-')) {
		*cause = xstrdup("--repo: the URL's user or host starts with "
		                 "'-'");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (!isalnum((unsigned char)a[i]) &&
		    strchr(".-_@:[]%~", a[i]) == NULL) {
			*cause = xasprintf("--repo: the host part of the URL "
			                   "has a character that is not "
			                   "allowed ('%c')",
			    isprint((unsigned char)a[i]) ? a[i] : '?');
			return -1;
		}
	}
	if (at != NULL) {
		if (strcmp(scheme, "https") == 0 ||
		    memchr(a, ':', (size_t)(at - a)) != NULL) {
			*cause = xstrdup("--repo: the URL carries a user name "
			                 "or password: they would be stored in "
			                 "the database; give the node a "
			                 "credential helper or an ssh key "
			                 "instead");
			return -1;
		}
		if (a[0] == '-') {
			*cause = xstrdup("--repo: the URL's user name starts "
			                 "with '-'");
			return -1;
		}
		host = at + 1;
	}
	if (host == a + n || *host == '-' || *host == ':') {
		*cause = xstrdup("--repo: the URL's host is empty or starts "
		                 "with '-'");
		return -1;
	}
	return 0;
}

int
origin_parse(const char *repo, char **url, char **branch, char **cause)
{
	static const char *const schemes[] = {"file", "https", "ssh"};
	const char *sep, *rest, *hash, *end;
	size_t slen, n = strlen(repo);
	int known = 0;

	*url = *branch = NULL;
	if (n == 0 || n > ORIGIN_MAX_URL) {
		*cause = xasprintf("--repo: a URL of %zu bytes (at most %d)", n,
		    ORIGIN_MAX_URL);
		return -1;
	}
	if (repo[0] == '-') {
		*cause = xstrdup("--repo: a URL may not start with '-'");
		return -1;
	}
	for (const char *p = repo; *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '\\' ||
		    *p == '\'' || *p == '"' || *p == '`') {
			*cause = xstrdup("--repo: the URL has a space, a "
			                 "control character, a quote or a "
			                 "backslash");
			return -1;
		}
	}
	if (strstr(repo, "::") != NULL) {
		*cause = xstrdup("--repo: transport helpers (\"ext::\", "
		                 "\"fd::\", ...) are refused: give an "
		                 "https://, ssh:// or file:// URL");
		return -1;
	}
	if ((sep = strstr(repo, "://")) == NULL) {
		*cause = xstrdup("--repo: not a URL; scp-like addresses "
		                 "(user@host:path) are refused: write "
		                 "ssh://user@host/path");
		return -1;
	}
	slen = (size_t)(sep - repo);
	for (size_t i = 0; i < nitems(schemes); i++) {
		if (strlen(schemes[i]) == slen &&
		    strncmp(repo, schemes[i], slen) == 0)
			known = 1;
	}
	if (!known) {
		*cause = xasprintf("--repo: the transport \"%.*s\" is refused: "
		                   "give an https://, ssh:// or file:// URL",
		    (int)(slen > 20 ? 20 : slen), repo);
		return -1;
	}
	rest = sep + 3;
	hash = strchr(rest, '#');
	end = hash != NULL ? hash : rest + strlen(rest);
	if (hash != NULL && !branch_ok(hash + 1)) {
		*cause = xstrdup("--repo: after '#' comes a branch name "
		                 "(letters, digits, '.', '_', '/', '-')");
		return -1;
	}
	if (slen == 4) {
		/* file:///absolute/path: no host, nothing relative. */
		if (rest[0] != '/' || (end - rest > 1 && rest[1] == '/')) {
			*cause =
			    xstrdup("--repo: a file:// URL is file:// and "
			            "an absolute path (file:///srv/x.git)");
			return -1;
		}

	} else {
		const char *slash = memchr(rest, '/', (size_t)(end - rest));
		size_t alen = slash != NULL ? (size_t)(slash - rest)
		                            : (size_t)(end - rest);

		if (authority_ok(
		        slen == 3 ? "ssh" : "https", rest, alen, cause) == -1)
			return -1;
		if (slash == NULL || slash + 1 >= end) {
			*cause = xstrdup("--repo: the URL names no repository "
			                 "path");
			return -1;
		}
	}
	for (const char *p = rest; p + 2 < end + 1; p++) {
		if (p[0] == '/' && p[1] == '.' && p[2] == '.' &&
		    (p + 3 == end || p[3] == '/')) {
			*cause = xstrdup("--repo: the URL's path has '..'");
			return -1;
		}
	}
	*url = xstrndup(repo, (size_t)(end - repo));
	if (hash != NULL)
		*branch = xstrdup(hash + 1);
	return 0;
}

char *
origin_mirror(const char *state_dir, const char *url, char **cause)
{
	const char *args[] = {"hash-object", "--stdin", NULL};
	const char *tail = url + strlen(url), *start;
	struct git_opts o = {0};
	struct git_status gs;
	char *hash, *name, *path;
	size_t n = 0;

	/* The last path element, without ".git", as a readable name. */
	while (tail > url && tail[-1] == '/')
		tail--;
	start = tail;
	while (start > url && start[-1] != '/')
		start--;
	if (tail - start > 4 && strncmp(tail - 4, ".git", 4) == 0)
		tail -= 4;
	name = xcalloc(1, ORIGIN_NAME_MAX + 1);
	for (const char *p = start; p < tail && n < ORIGIN_NAME_MAX; p++)
		name[n++] = isalnum((unsigned char)*p) || *p == '-' || *p == '_'
		                ? *p
		                : '_';
	o.in = url;
	o.inlen = strlen(url);
	if (git_line(&o, args, &hash, &gs, cause) == -1) {
		free(hash);
		free(name);
		return NULL;
	}
	path = xasprintf(
	    "%s/repos/%s-%.16s.git", state_dir, n > 0 ? name : "repo", hash);
	free(hash);
	free(name);
	return path;
}

static void
net_opts(struct git_opts *o, const char *mirror, int network)
{
	memset(o, 0, sizeof *o);
	o->dir = mirror;
	o->tick = origin_tick;
	o->arg = origin_arg;
	o->outmax = 1024 * 1024;
	o->network = network;
	if (network)
		o->timeout_ms = origin_timeout_s * 1000;
}

/* Whether a failed network git may pass if tried again. */
static int
classify(const struct git_status *gs, const char *cause)
{
	if (gs->timed_out)
		return 0; /* transient: a slow network */
	for (size_t i = 0; i < nitems(origin_permanent); i++) {
		if (strstr(cause, origin_permanent[i]) != NULL)
			return 1;
	}
	return 0;
}

static int
net_fail(const struct git_status *gs, const char *url, char *gitcause,
    int *permanent, char **cause)
{
	*permanent = classify(gs, gitcause);
	*cause = xasprintf("%s (%s): %s", url,
	    *permanent ? "refused: fix the URL, the node's access or the "
	                 "origin, then resume the task"
	               : "transient: tried again later",
	    gitcause);
	free(gitcause);
	return -1;
}

/* The flock of mirror's lock file, or -1 with *cause. */
static int
mirror_lock(const char *mirror, char **cause)
{
	char *path = xasprintf("%.*s.lock",
	    (int)(strlen(mirror) - (strlen(mirror) > 4 ? 4 : 0)), mirror);
	char *dir = xstrdup(mirror), *slash;
	int fd;

	if ((slash = strrchr(dir, '/')) != NULL) {
		*slash = '\0';
		if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
			*cause = xasprintf("%s: %s", dir, strerror(errno));
			free(dir);
			free(path);
			return -1;
		}
	}
	free(dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1) {
		*cause = xasprintf("%s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	free(path);
	while (flock(fd, LOCK_EX) == -1 && errno == EINTR)
		;
	return fd;
}

/* Make the bare mirror when it is missing (under its lock). */
static int
mirror_init(const char *mirror, char **cause)
{
	const char *args[] = {"init", "-q", "--bare", "--", NULL, NULL};
	struct git_opts o = {0};
	struct git_status gs;
	struct buf out;
	struct stat st;
	char *tmp, *gitcause;
	int rc;

	if (lstat(mirror, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return 0;
		*cause = xasprintf("%s exists and is not a directory", mirror);
		return -1;
	}
	/* Made aside and renamed: a mirror is whole or absent. */
	tmp = xasprintf("%s.tmp", mirror);
	args[4] = tmp;
	rc = git_run(&o, args, &out, &gs, &gitcause);
	free(out.buf);
	if (rc == -1) {
		*cause =
		    xasprintf("making the mirror %s: %s", mirror, gitcause);
		free(gitcause);
	} else if (rename(tmp, mirror) == -1) {
		*cause = xasprintf("rename %s: %s", tmp, strerror(errno));
		rc = -1;
	}
	free(tmp);
	return rc;
}

static int
is_hash(const char *s)
{
	size_t n = strspn(s, "0123456789abcdef");

	return s[n] == '\0' && (n == 40 || n == 64);
}

/* The commit rev names in the mirror, or NULL. */
static char *
mirror_rev(const char *mirror, const char *rev)
{
	char *spec = xasprintf("%s^{commit}", rev), *line, *cause = NULL;
	const char *args[] = {"rev-parse", "-q", "--verify", spec, NULL};
	struct git_opts o;
	struct git_status gs;

	net_opts(&o, mirror, 0);
	if (git_line(&o, args, &line, &gs, &cause) == -1 || !is_hash(line)) {
		free(line);
		line = NULL;
	}
	free(cause);
	free(spec);
	return line;
}

int
origin_sync(const char *mirror, const char *url, const char *branch,
    char **commit, int *permanent, char **cause)
{
	const char *args[] = {"fetch", "-q", "--no-tags", "--no-auto-gc",
	    "--no-write-fetch-head", "--", url, "+HEAD:refs/origin/HEAD",
	    "+refs/heads/*:refs/origin/heads/*", NULL};
	struct git_opts o;
	struct git_status gs;
	struct buf out;
	char *gitcause, *rev;
	int fd, rc;

	*permanent = 0;
	if (commit != NULL)
		*commit = NULL;
	if ((fd = mirror_lock(mirror, cause)) == -1)
		return -1;
	if (mirror_init(mirror, cause) == -1) {
		close(fd);
		return -1;
	}
	net_opts(&o, mirror, 1);
	rc = git_run(&o, args, &out, &gs, &gitcause);
	free(out.buf);
	close(fd);
	if (rc == -1)
		return net_fail(&gs, url, gitcause, permanent, cause);
	if (commit == NULL)
		return 0;
	rev = branch != NULL ? xasprintf("refs/origin/heads/%s", branch)
	                     : xstrdup("refs/origin/HEAD");
	*commit = mirror_rev(mirror, rev);
	free(rev);
	if (*commit == NULL) {
		*permanent = 1;
		*cause = branch != NULL
		             ? xasprintf("%s has no branch %s", url, branch)
		             : xasprintf("%s has no commits yet (its HEAD "
		                         "names no commit)",
		                   url);
		return -1;
	}
	return 0;
}

/* The origin's value of ref, "" when it has none. */
static int
remote_value(const char *mirror, const char *url, const char *ref, char **value,
    int *permanent, char **cause)
{
	const char *args[] = {"ls-remote", "--", url, ref, NULL};
	struct git_opts o;
	struct git_status gs;
	struct buf out;
	char *gitcause;
	size_t rlen = strlen(ref);

	*value = NULL;
	net_opts(&o, mirror, 1);
	if (git_run(&o, args, &out, &gs, &gitcause) == -1) {
		free(out.buf);
		return net_fail(&gs, url, gitcause, permanent, cause);
	}
	/* Lines "HASH\tREF": only an exact match counts. */
	for (char *p = out.buf; *p != '\0';) {
		size_t n = strcspn(p, "\n");
		char *tab = memchr(p, '\t', n);

		if (tab != NULL && (size_t)(p + n - tab - 1) == rlen &&
		    strncmp(tab + 1, ref, rlen) == 0) {
			*value = xstrndup(p, (size_t)(tab - p));
			break;
		}
		p += n;
		if (*p == '\n')
			p++;
	}
	free(out.buf);
	if (*value == NULL)
		*value = xstrdup("");
	else if (!is_hash(*value)) {
		free(*value);
		*value = NULL;
		*permanent = 1;
		*cause =
		    xasprintf("%s: ls-remote %s: not a commit id", url, ref);
		return -1;
	}
	return 0;
}

/* Fetch the origin's ref into refs/origin/REF-WITHOUT-refs/. */
static int
fetch_one(const char *mirror, const char *url, const char *ref, int *permanent,
    char **cause)
{
	char *spec = xasprintf("+%s:refs/origin/%s", ref, ref + 5);
	const char *args[] = {"fetch", "-q", "--no-tags", "--no-auto-gc",
	    "--no-write-fetch-head", "--", url, spec, NULL};
	struct git_opts o;
	struct git_status gs;
	struct buf out;
	char *gitcause;
	int rc;

	net_opts(&o, mirror, 1);
	rc = git_run(&o, args, &out, &gs, &gitcause);
	free(out.buf);
	free(spec);
	if (rc == -1)
		return net_fail(&gs, url, gitcause, permanent, cause);
	return 0;
}

static int
check_ref(const char *ref, char **cause)
{
	if (strncmp(ref, "refs/", 5) != 0 || strstr(ref, "..") != NULL ||
	    !branch_ok(ref + 5)) {
		*cause = xasprintf("%s: not a ref this can push or fetch", ref);
		return -1;
	}
	return 0;
}

/*
 * The first half of a fetch of ref: the mirror locked (*fd), made if
 * missing, the origin's value read (*value, "" when it has none) and, when
 * it has one, its objects fetched.  -1 with *cause; else 0, the lock held
 * (the caller closes *fd and frees *value).
 */
static int
fetch_value(const char *mirror, const char *url, const char *ref, int *fd,
    char **value, int *permanent, char **cause)
{
	*value = NULL;
	*permanent = 0;
	if ((*fd = mirror_lock(mirror, cause)) == -1)
		return -1;
	if (mirror_init(mirror, cause) == -1 ||
	    remote_value(mirror, url, ref, value, permanent, cause) == -1 ||
	    (**value != '\0' &&
	        fetch_one(mirror, url, ref, permanent, cause) == -1)) {
		free(*value);
		*value = NULL;
		close(*fd);
		*fd = -1;
		return -1;
	}
	return 0;
}

int
origin_fetch_ref(const char *mirror, const char *url, const char *ref,
    char **commit, int *permanent, char **cause)
{
	char *value = NULL, *local, *theirs, *gitcause = NULL;
	struct git_opts o;
	struct git_status gs;
	struct buf out;
	int fd, rc = -1;

	*commit = NULL;
	*permanent = 1;
	if (check_ref(ref, cause) == -1 ||
	    fetch_value(mirror, url, ref, &fd, &value, permanent, cause) == -1)
		return -1;
	if (*value == '\0') {
		rc = 0;
		goto out;
	}
	theirs = xasprintf("refs/origin/%s", ref + 5);
	local = mirror_rev(mirror, ref);
	net_opts(&o, mirror, 0);
	rc = 0;
	if (local == NULL) {
		const char *args[] = {"update-ref", "-m",
		    "orch: from the origin", ref, value, "", NULL};

		rc = git_run(&o, args, &out, &gs, &gitcause);
		free(out.buf);
	} else if (strcmp(local, value) != 0) {
		/* Behind: the origin's is a descendant of ours. */
		const char *anc[] = {
		    "merge-base", "--is-ancestor", local, value, NULL};
		const char *args[] = {"update-ref", "-m",
		    "orch: from the origin", ref, value, local, NULL};

		if (git_run(&o, anc, &out, &gs, &gitcause) == 0) {
			free(out.buf);
			rc = git_run(&o, args, &out, &gs, &gitcause);
		}
		free(out.buf);
		if (rc == -1 && gs.exit == 1) {
			rc = 0; /* ours has moved on: kept */
			free(gitcause);
			gitcause = NULL;
		}
	}
	if (rc == -1) {
		*cause = xasprintf("setting %s: %s", ref, gitcause);
		*permanent = !gs.transient;
		free(gitcause);
	} else {
		*commit = value;
		value = NULL;
	}
	free(local);
	free(theirs);
out:
	free(value);
	close(fd);
	return rc;
}

/*
 * Whether commit carries this state directory's trailer, and the highest
 * lease epoch its trailers name (0: none).
 */
static int
is_ours(const char *mirror, const char *commit, const char *state_id, int *ours,
    uint64_t *epoch, char **cause)
{
	static const char format[] =
	    "--format=%(trailers:key=" TRAILER_KEY
	    ")%(trailers:key=" ORIGIN_EPOCH_TRAILER ")";
	const char *args[] = {
	    "log", "-1", "--no-show-signature", format, commit, "--", NULL};
	const size_t ns = strlen(TRAILER_KEY ": "),
	             ne = strlen(ORIGIN_EPOCH_TRAILER ": ");
	struct git_opts o;
	struct git_status gs;
	struct buf out;
	char *gitcause;

	*ours = state_id == NULL;
	*epoch = 0;
	net_opts(&o, mirror, 0);
	if (git_run(&o, args, &out, &gs, &gitcause) == -1) {
		free(out.buf);
		*cause = gitcause;
		return -1;
	}
	for (char *p = out.buf; *p != '\0';) {
		size_t n = strcspn(p, "\n");
		unsigned long long e;
		char *end;

		if (state_id != NULL && n == ns + strlen(state_id) &&
		    strncmp(p, TRAILER_KEY ": ", ns) == 0 &&
		    strncmp(p + ns, state_id, n - ns) == 0)
			*ours = 1;
		if (n > ne && strncmp(p, ORIGIN_EPOCH_TRAILER ": ", ne) == 0) {
			errno = 0;
			e = strtoull(p + ne, &end, 10);
			if (errno == 0 && end == p + n && e > *epoch)
				*epoch = e;
		}
		p += n;
		if (*p == '\n')
			p++;
	}
	free(out.buf);
	return 0;
}

int
origin_take(const char *mirror, const char *url, const char *ref,
    const char *to, int *took, int *permanent, char **cause)
{
	char *value = NULL, *gitcause = NULL;
	struct git_opts o;
	struct git_status gs;
	struct buf out;
	int fd, rc = -1;

	*took = 0;
	*permanent = 1;
	if (check_ref(ref, cause) == -1 || check_ref(to, cause) == -1 ||
	    fetch_value(mirror, url, ref, &fd, &value, permanent, cause) == -1)
		return -1;
	if (*value == '\0') {
		rc = 0;
		goto out;
	}
	{
		/* Forced: the origin's is the one that counts. */
		const char *args[] = {"update-ref", "-m",
		    "orch: from the origin", to, value, NULL};

		net_opts(&o, mirror, 0);
		rc = git_run(&o, args, &out, &gs, &gitcause);
		free(out.buf);
	}
	if (rc == -1) {
		*cause = xasprintf("setting %s: %s", to, gitcause);
		*permanent = !gs.transient;
		free(gitcause);
	} else
		*took = 1;
out:
	free(value);
	close(fd);
	return rc;
}

int
origin_push(const char *mirror, const char *url, const char *ref,
    const char *state_id, int *pushed, int *permanent, char **cause)
{
	return origin_push_as(
	    mirror, url, ref, ref, state_id, pushed, permanent, cause);
}

int
origin_push_as(const char *mirror, const char *url, const char *from,
    const char *ref, const char *state_id, int *pushed, int *permanent,
    char **cause)
{
	char *value = NULL, *local = NULL, *lease = NULL, *spec = NULL;
	char *gitcause;
	struct git_opts o;
	struct git_status gs;
	struct buf out;
	uint64_t epoch;
	int fd, rc = -1, ours;

	*pushed = 0;
	*permanent = 1;
	if (check_ref(ref, cause) == -1 || check_ref(from, cause) == -1)
		return -1;
	*permanent = 0;
	if ((fd = mirror_lock(mirror, cause)) == -1)
		return -1;
	if ((local = mirror_rev(mirror, from)) == NULL) {
		*cause = xasprintf("%s is not in the mirror %s", from, mirror);
		*permanent = 1;
		goto out;
	}
	if (remote_value(mirror, url, ref, &value, permanent, cause) == -1)
		goto out;
	if (strcmp(value, local) == 0) {
		rc = 0;
		goto out;
	}
	if (*value != '\0') {
		/* Never over a ref someone else made: look at it first. */
		if (fetch_one(mirror, url, ref, permanent, cause) == -1)
			goto out;
		if (is_ours(mirror, value, state_id, &ours, &epoch, cause) ==
		    -1)
			goto out;
		if (ours && origin_epoch > 0 && epoch > origin_epoch) {
			*permanent = 1;
			*cause =
			    xasprintf("%s (refused: permanent): %s is at a "
			              "commit made under lease epoch %llu, "
			              "this worker's is %llu: another node "
			              "has taken the task over",
			        url, ref, (unsigned long long)epoch,
			        (unsigned long long)origin_epoch);
			goto out;
		}
		if (!ours) {
			*permanent = 1;
			*cause = xasprintf("%s (refused: permanent): %s exists "
			                   "there and was not made by this "
			                   "state directory; it is left alone: "
			                   "move it aside on the origin and "
			                   "resume the task",
			    url, ref);
			goto out;
		}
	}
	/* Forced, but only over the value just seen (ours). */
	lease = xasprintf("--force-with-lease=%s:%s", ref, value);
	spec = xasprintf("%s:%s", local, ref);
	{
		const char *args[] = {
		    "push", "-q", "--no-verify", lease, "--", url, spec, NULL};

		net_opts(&o, mirror, 1);
		rc = git_run(&o, args, &out, &gs, &gitcause);
		free(out.buf);
		if (rc == -1) {
			/* The lease: someone moved it since; look again. */
			if (strstr(gitcause, "stale info") != NULL) {
				*permanent = 0;
				*cause = xasprintf("%s (transient: %s moved "
				                   "while pushing): %s",
				    url, ref, gitcause);
				free(gitcause);
			} else
				net_fail(&gs, url, gitcause, permanent, cause);
		} else
			*pushed = 1;
	}
out:
	free(lease);
	free(spec);
	free(local);
	free(value);
	close(fd);
	return rc;
}
