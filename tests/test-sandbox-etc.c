/*
 * The sandbox's /etc as one directory (worker/etcdir.c): with
 * ORCH_SANDBOX_CACHE set, /etc is one mount; the sandbox sees the same
 * files as with the per-path binds, minus what holds secrets; the copy
 * follows changes to its sources (content, mode, new files), concurrent
 * builders agree; without a usable cache it falls back to the binds and
 * says so once.
 *
 * Usage: test-sandbox-etc [PROFILES_DIR]; else $ORCH_SANDBOX_PROFILES_DIR.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "sandbox.h"

#include "tap.h"

static char scratch[] = "/tmp/test-sandbox-etc.XXXXXX";
static char *ws;

static char *
put(const char *name, const char *text, mode_t mode)
{
	char *path = xasprintf("%s/%s", scratch, name);
	int fd;

	(void)unlink(path);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)) == -1 ||
	    write_all(fd, text, strlen(text)) == -1 || fchmod(fd, mode) == -1)
		fatal("%s", path);
	close(fd);
	return path;
}

static char *
slurp(const char *path)
{
	struct buf b;
	char chunk[4096];
	ssize_t n;
	int fd;

	buf_init(&b);
	if ((fd = open(path, O_RDONLY)) == -1)
		return b.buf;
	while ((n = read(fd, chunk, sizeof chunk)) > 0)
		buf_add(&b, chunk, (size_t)n);
	close(fd);
	return b.buf;
}

static struct sandbox_profile *
load(const char *dir, const char *stage)
{
	struct sandbox_profile *p;
	char *cause = NULL;

	if (sandbox_profile_load(dir, stage, &p, &cause) == -1)
		fatalx("%s", cause);
	return p;
}

/* Run command; its output (malloc'd), or NULL when it did not exit 0. */
static char *
run(const struct sandbox_profile *p, const char *command)
{
	struct sandbox_result res;
	char *cause = NULL, *out = NULL;

	if (sandbox_run(p, ws, command, 30, NULL, NULL, &res, &cause) == -1) {
		printf("# sandbox_run: %s\n", cause);
		free(cause);
		return NULL;
	}
	if (res.exited && res.exit_status == 0)
		out = xstrdup(res.output != NULL ? res.output : "");
	else
		printf("# %s: exit %d: %.300s\n", command, res.exit_status,
		    res.output ? res.output : "");
	sandbox_result_clear(&res);
	return out;
}

/* How many mounts the sandbox has at or below /etc. */
static int
etc_mounts(const struct sandbox_profile *p)
{
	char *out = run(p, "cut -d' ' -f5 /proc/self/mountinfo | "
	                   "grep -c '^/etc\\(/\\|$\\)'");
	int n = out != NULL ? atoi(out) : -1;

	free(out);
	return n;
}

/*
 * A listing of /etc from inside, into the workspace (the output is
 * capped): path, type, link target, and a checksum of each file.  The
 * bind of ssl/private (unreadable) is what the copy leaves out.
 */
static char *
listing(const struct sandbox_profile *p, const char *name)
{
	char *cmd, *out, *path;

	cmd = xasprintf("cd /etc && find . ! -path './ssl/private*' "
	                "-printf '%%p %%y %%l\\n' | sort > /workspace/%s && "
	                "find . ! -path './ssl/private*' -type f -print0 | "
	                "sort -z | xargs -0 md5sum >> /workspace/%s",
	    name, name);
	out = run(p, cmd);
	free(cmd);
	free(out);
	path = xasprintf("%s/%s", ws, name);
	out = slurp(path);
	free(path);
	return out;
}

static void
test_same_files(const char *profiles)
{
	struct sandbox_profile *p = load(profiles, "implementing");
	char *bound, *copied, *out;

	unsetenv("ORCH_SANDBOX_CACHE");
	ok(etc_mounts(p) > 10, "without a cache: a mount per /etc path");
	bound = listing(p, "bound");
	sandbox_profile_free(p);

	p = load(profiles, "implementing");
	setenv("ORCH_SANDBOX_CACHE", scratch, 1);
	ok(etc_mounts(p) == 1, "with a cache: /etc is one mount");
	copied = listing(p, "copied");
	ok(bound != NULL && copied != NULL && strlen(bound) > 1000 &&
	        strcmp(bound, copied) == 0,
	    "the same files, types, links and contents as the binds");
	if (bound != NULL && copied != NULL && strcmp(bound, copied) != 0)
		printf("# see %s/bound and %s/copied\n", ws, ws);
	out = run(p, "ls -d /etc/ssl/private /etc/shadow /etc/gshadow "
	             "/etc/sudoers /etc/ssh 2>/dev/null | wc -l; "
	             "cat /etc/shadow 2>&1 >/dev/null | grep -c 'No such'");
	ok(out != NULL && strcmp(out, "0\n1\n") == 0,
	    "no ssl/private, shadow, sudoers or ssh inside");
	free(out);
	out = run(p, "touch /etc/x 2>/dev/null || echo ro; "
	             "touch /etc/passwd 2>/dev/null || echo ro");
	ok(out != NULL && strcmp(out, "ro\nro\n") == 0, "/etc is read-only");
	free(out);
	sandbox_profile_free(p);
	free(bound);
	free(copied);
}

/* A profile with a made-up /etc source in the scratch directory. */
static void
fake_profile_write(void)
{
	char *dir = xasprintf("%s/profiles", scratch), *text;

	mkdir(dir, 0755);
	text = xasprintf("workspace rw\n"
	                 "ro_bind /usr\n"
	                 "symlink usr/bin /bin\n"
	                 "symlink usr/lib /lib\n"
	                 "symlink usr/lib64 /lib64\n"
	                 "ro_bind_try /etc/ld.so.cache\n"
	                 "ro_bind %s/src /etc/fake\n"
	                 "ro_bind_try %s/nonexistent /etc/gone\n"
	                 "ro_bind_try %s/src/ok.conf /etc/one.conf\n"
	                 "symlink fake/ok.conf /etc/link.conf\n",
	    scratch, scratch, scratch);
	free(put("profiles/fake.profile", text, 0644));
	free(text);
	free(dir);
}

static struct sandbox_profile *
fake_profile(void)
{
	char *dir = xasprintf("%s/profiles", scratch);
	struct sandbox_profile *p = load(dir, "fake");

	free(dir);
	return p;
}

static void
fake_tree(void)
{
	char *d = xasprintf("%s/src", scratch), *s;

	mkdir(d, 0755);
	free(d);
	d = xasprintf("%s/src/private", scratch);
	mkdir(d, 0755);
	free(d);
	d = xasprintf("%s/src/sub", scratch);
	mkdir(d, 0755);
	free(d);
	free(put("src/ok.conf", "version 1\n", 0644));
	free(put("src/sub/deep.conf", "deep\n", 0644));
	free(put("src/shadow", "root:HASH:1::::::\n", 0644));
	free(put("src/ssh_host_ed25519_key", "KEY\n", 0644));
	free(put("src/private/server.key", "KEY\n", 0644));
	free(put("src/mine.conf", "only the owner\n", 0600));
	s = xasprintf("%s/src/fifo", scratch);
	mkfifo(s, 0644);
	free(s);
	s = xasprintf("%s/src/rel-link", scratch);
	(void)symlink("ok.conf", s);
	free(s);
}

/* The versions (v.XXXXXX directories) in the fake profile's cache. */
static int
versions(void)
{
	char *dir = xasprintf("%s/cache/etc-fake", scratch);
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	free(dir);
	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL)
		n += strncmp(e->d_name, "v.", 2) == 0 &&
		     strchr(e->d_name + 2, '.') == NULL;
	closedir(d);
	return n;
}

static void
test_fake(void)
{
	struct sandbox_profile *p;
	struct stat st;
	struct timespec ts[2];
	char *cache = xasprintf("%s/cache", scratch), *out, *path;
	int nv;

	fake_tree();
	fake_profile_write();
	setenv("ORCH_SANDBOX_CACHE", cache, 1);
	p = fake_profile();
	out = run(p, "cd /etc && find . | sort | tr '\\n' ' '");
	ok(out != NULL &&
	        strcmp(out, ". ./fake ./fake/ok.conf ./fake/rel-link "
	                    "./fake/sub ./fake/sub/deep.conf "
	                    "./ld.so.cache ./link.conf ./one.conf ") == 0,
	    "only readable files, dirs and links; no secrets, fifo, or "
	    "missing try source");
	printf("# %s\n", out ? out : "");
	free(out);
	out = run(p, "cat /etc/fake/rel-link /etc/link.conf /etc/one.conf "
	             "/etc/fake/sub/deep.conf");
	ok(out != NULL &&
	        strcmp(out, "version 1\nversion 1\nversion 1\ndeep\n") == 0,
	    "links, a single file and a nested file read through");
	free(out);
	nv = versions();
	ok(nv == 1, "one copy built");
	out = run(p, "true");
	free(out);
	ok(versions() == 1, "an unchanged source reuses the copy");

	/* Content changed in place, size and mtime put back: the ctime. */
	path = xasprintf("%s/src/ok.conf", scratch);
	if (stat(path, &st) == -1)
		fatal("%s", path);
	free(put("src/ok.conf", "version 2\n", 0644));
	ts[0] = st.st_atim;
	ts[1] = st.st_mtim;
	utimensat(AT_FDCWD, path, ts, 0);
	out = run(p, "cat /etc/fake/ok.conf /etc/one.conf");
	ok(out != NULL && strcmp(out, "version 2\nversion 2\n") == 0,
	    "content changed in place (mtime kept): the copy is rebuilt");
	free(out);
	ok(versions() == 2, "... into a new version");

	free(put("src/sub/new.conf", "new\n", 0644));
	out = run(p, "cat /etc/fake/sub/new.conf");
	ok(out != NULL && strcmp(out, "new\n") == 0,
	    "a new file in a nested directory appears");
	free(out);
	chmod(path, 0600);
	out = run(p, "ls /etc/fake/ok.conf 2>/dev/null; echo end");
	ok(out != NULL && strcmp(out, "end\n") == 0,
	    "a file made private disappears");
	free(out);
	chmod(path, 0644);
	free(path);

	/* The copy itself: read-only, no secret in it. */
	path = xasprintf("cd '%s' && find -L etc-fake/current | grep -c "
	                 "'shadow\\|ssh_host\\|private\\|mine.conf' ; "
	                 "find etc-fake/current/ -type f -perm /0222 | wc -l",
	    cache);
	{
		FILE *f = popen(path, "r");
		char line[64] = "", line2[64] = "";

		if (f != NULL) {
			(void)!fgets(line, sizeof line, f);
			(void)!fgets(line2, sizeof line2, f);
			pclose(f);
		}
		ok(strcmp(line, "0\n") == 0 && strcmp(line2, "0\n") == 0,
		    "on the host the copy holds no secret, its files 0444");
	}
	free(path);

	/* Four workers at once after a change: all see it, one builds. */
	free(put("src/sub/deep.conf", "deeper\n", 0644));
	nv = versions();
	{
		pid_t pids[4];
		int good = 0, status;

		for (int i = 0; i < 4; i++) {
			if ((pids[i] = fork()) == 0) {
				struct sandbox_profile *q = fake_profile();
				char *o = run(q, "cat /etc/fake/sub/deep.conf");

				_exit(o != NULL && strcmp(o, "deeper\n") == 0
				          ? 0
				          : 1);
			}
		}
		for (int i = 0; i < 4; i++) {
			if (waitpid(pids[i], &status, 0) == pids[i] &&
			    WIFEXITED(status) && WEXITSTATUS(status) == 0)
				good++;
		}
		ok(good == 4, "four concurrent sandboxes see the change");
		ok(versions() == nv + 1, "and exactly one new copy was built");
	}
	sandbox_profile_free(p);
	free(cache);
}

/* A cache that cannot be made: the binds, and one line in the log. */
static void
test_fallback(void)
{
	struct sandbox_profile *p;
	char *blocker = put("blocker", "a file\n", 0644), *cache, *log, *out;
	char *o2;
	int saved, fd;

	cache = xasprintf("%s/sub", blocker);
	setenv("ORCH_SANDBOX_CACHE", cache, 1);
	p = fake_profile();
	log = xasprintf("%s/log", scratch);
	fflush(stderr);
	saved = dup(2);
	if ((fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644)) == -1)
		fatal("%s", log);
	dup2(fd, 2);
	close(fd);
	out = run(p, "cat /etc/fake/sub/deep.conf");
	o2 = run(p, "cut -d' ' -f5 /proc/self/mountinfo | "
	            "grep -c '^/etc\\(/\\|$\\)'");
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	ok(out != NULL && strcmp(out, "deeper\n") == 0 && o2 != NULL &&
	        atoi(o2) > 1,
	    "no cache: the command runs with the per-path binds");
	free(out);
	free(o2);
	out = slurp(log);
	{
		int n = 0;

		for (const char *s = out;
		     (s = strstr(s, "cannot gather")) != NULL; s++)
			n++;
		ok(n == 1, "and that is logged once");
		if (n != 1)
			printf("# log: %s\n", out);
	}
	free(out);
	free(log);
	free(cache);
	free(blocker);
	sandbox_profile_free(p);
	unsetenv("ORCH_SANDBOX_CACHE");
}

int
main(int argc, char **argv)
{
	const char *profiles;
	char *cmd, *cause = NULL;

	log_init("test-sandbox-etc", LOG_LEVEL_WARN);
	profiles = argc > 1 ? argv[1] : getenv("ORCH_SANDBOX_PROFILES_DIR");
	if (profiles == NULL) {
		printf("1..0 # skip no profiles dir\n");
		return 0;
	}
	if (sandbox_check(&cause) == -1) {
		printf("1..0 # skip %s\n", cause);
		return 0;
	}
	if (mkdtemp(scratch) == NULL)
		fatal("mkdtemp");
	chmod(scratch, 0755);
	ws = xasprintf("%s/ws", scratch);
	mkdir(ws, 0755);

	test_same_files(profiles);
	test_fake();
	test_fallback();

	cmd = xasprintf("chmod -R u+w '%s'; rm -rf '%s'", scratch, scratch);
	if (getenv("TEST_KEEP") == NULL && system(cmd) != 0)
		printf("# could not remove %s\n", scratch);
	free(cmd);
	free(ws);
	return tap_done();
}
