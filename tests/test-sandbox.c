/*
 * sandbox.c: profile parsing, and what a command inside the sandbox can
 * and cannot do (workspace, /tmp, environment, network, processes, host
 * files, syscalls), the wall clock, the output cap, the rlimits, and that
 * it fails closed when bwrap is missing.
 *
 * Usage: test-sandbox [PROFILES_DIR [ESCAPE_PROBE]]; without arguments
 * from $ORCH_SANDBOX_PROFILES_DIR and $ORCH_ESCAPE_PROBE.  Without the
 * probe its tests are skipped.  Works as root and as a normal user; the
 * fork bomb is only run as a normal user (RLIMIT_NPROC does not hold for
 * root, see the profiles).
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "common.h"
#include "worker.h"

#include "tap.h"

static const char *profiles_dir;
static const char *probe_path;
static char scratch[] = "/tmp/test-sandbox.XXXXXX";
static int beats;

static void
skip(const char *what, const char *why)
{
	tap_n++;
	printf("ok %d - %s # skip %s\n", tap_n, what, why);
	fflush(stdout);
}

/* Set by heartbeat: a bwrap of ours in a process group not ours. */
static int check_pgrp, other_pgrp, bwraps_seen;

/* The children of pid, from /proc (CONFIG_PROC_CHILDREN). */
static char *
children_of(pid_t pid)
{
	char *path, *text = NULL;
	size_t cap = 0;
	FILE *f;

	path = xasprintf("/proc/%ld/task/%ld/children", (long)pid, (long)pid);
	if ((f = fopen(path, "r")) != NULL) {
		if (getline(&text, &cap, f) == -1) {
			free(text);
			text = NULL;
		}
		fclose(f);
	}
	free(path);
	return text;
}

/* Each bwrap among pid's children: in our process group? */
static void
bwraps_in_our_group(pid_t pid)
{
	char *list = children_of(pid), *p, *end;

	for (p = list; p != NULL && *p != '\0'; p = end) {
		long c = strtol(p, &end, 10), pgrp;
		char *stat, comm[32];
		FILE *f;

		if (end == p)
			break;
		stat = xasprintf("/proc/%ld/stat", c);
		f = fopen(stat, "r");
		if (f != NULL &&
		    fscanf(f, "%*d (%31[^)]) %*c %*d %ld", comm, &pgrp) == 2 &&
		    strcmp(comm, "bwrap") == 0) {
			bwraps_seen++;
			if (pgrp != (long)getpgrp())
				other_pgrp++;
		}
		if (f != NULL)
			fclose(f);
		free(stat);
	}
	free(list);
}

static void
heartbeat(void *arg)
{
	(void)arg;
	beats++;
	if (check_pgrp)
		bwraps_in_our_group(getpid());
}

/* Write a file under the scratch directory. */
static char *
put(const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", scratch, name);
	FILE *f = fopen(path, "w");

	if (f == NULL)
		fatal("%s", path);
	fputs(text, f);
	fclose(f);
	return path;
}

/* A fresh empty workspace directory. */
static char *
workspace(void)
{
	char *dir = xasprintf("%s/ws.XXXXXX", scratch);

	if (mkdtemp(dir) == NULL)
		fatal("mkdtemp");
	return dir;
}

static struct sandbox_profile *
load(const char *dir, const char *stage)
{
	struct sandbox_profile *p;
	char *cause = NULL;

	if (sandbox_profile_load(dir, stage, &p, &cause) == -1) {
		printf("# %s\n", cause);
		free(cause);
		return NULL;
	}
	return p;
}

/*
 * Run command; 0 and *res, or -1 (the cause printed).  res is cleared
 * first.
 */
static int
run(const struct sandbox_profile *p, const char *ws, const char *command,
    unsigned timeout_s, struct sandbox_result *res)
{
	char *cause = NULL;

	sandbox_result_clear(res);
	if (p == NULL)
		return -1;
	if (sandbox_run(p, ws, command, timeout_s, heartbeat, NULL, res,
	        &cause) == -1) {
		printf("# sandbox_run: %s\n", cause);
		free(cause);
		return -1;
	}
	return 0;
}

static int
exited(const struct sandbox_result *res, int status)
{
	if (res->exited && res->exit_status == status)
		return 1;
	printf("# exited %d status %d signal %d timed_out %d output: %.300s\n",
	    res->exited, res->exit_status, res->signal, res->timed_out,
	    res->output ? res->output : "(null)");
	return 0;
}

static int
contains(const char *s, const char *what)
{
	return s != NULL && strstr(s, what) != NULL;
}

/* A bad profile is refused and the cause starts with FILE:LINE:. */
static void
bad_profile(const char *name, const char *text, unsigned line, const char *why)
{
	struct sandbox_profile *p = NULL;
	char *path, *prefix, *cause = NULL, *fname, *what;
	int rc;

	fname = xasprintf("%s.profile", name);
	path = put(fname, text);
	prefix = xasprintf("%s:%u: ", path, line);
	rc = sandbox_profile_load(scratch, name, &p, &cause);
	what = xasprintf("refused: %s", why);
	ok(rc == -1 && p == NULL && cause != NULL &&
	        strncmp(cause, prefix, strlen(prefix)) == 0,
	    what);
	if (cause != NULL)
		printf("#   %s\n", cause);
	free(cause);
	free(what);
	free(prefix);
	free(path);
	free(fname);
	sandbox_profile_free(p);
}

#define GOOD                                                                   \
	"# a comment\n"                                                        \
	"\n"                                                                   \
	"workspace rw\n"                                                       \
	"  network none\n"                                                     \
	"tmpfs_size 16M\n"                                                     \
	"ro_bind /usr\n"                                                       \
	"ro_bind_try /nonexistent/lib64 /opt/x\n"                              \
	"symlink usr/lib64 /lib64\n"                                           \
	"symlink usr/bin /bin\n"                                               \
	"symlink usr/lib /lib\n"                                               \
	"env FOO=bar baz\n"                                                    \
	"rlimit as 1G\n"                                                       \
	"rlimit nproc 100\n"                                                   \
	"rlimit fsize 1M\n"                                                    \
	"rlimit nofile 64\n"                                                   \
	"rlimit cpu 1\n"                                                       \
	"rlimit core 0\n"

/*
 * The result's JSON, without running anything: the keys in the order the
 * model has always seen them, compact, and any bytes made valid JSON.
 */
static void
test_result_json(void)
{
	static const char head[] =
	    "{\"exit_status\":2,\"signal\":null,\"timed_out\":false,"
	    "\"limit\":null,\"duration_ms\":1234,\"output\":\"";
	static const char tail[] = "\",\"output_dropped\":7}";
	static const char head2[] =
	    "{\"exit_status\":null,\"signal\":9,\"timed_out\":true,"
	    "\"limit\":\"cpu\",";
	struct sandbox_result res;
	json_t *j;
	char *json;

	memset(&res, 0, sizeof res);
	res.exited = 1;
	res.exit_status = 2;
	res.duration_ms = 1234;
	res.output = xstrdup("q\"b\\\n\t\001\x7f\xff\xc3\xa9");
	res.output_dropped = 7;
	json = sandbox_result_json(&res);
	ok(strncmp(json, head, strlen(head)) == 0 &&
	        strlen(json) > strlen(tail) &&
	        strcmp(json + strlen(json) - strlen(tail), tail) == 0,
	    "result JSON: keys in order, compact");
	j = json_loads(json, 0, NULL);
	ok(j != NULL && strcmp(json_string_value(json_object_get(j, "output")),
	                    "q\"b\\\n\t\001\x7f\xef\xbf\xbd\xc3\xa9") == 0,
	    "result JSON: output escaped, bad UTF-8 as U+FFFD");
	json_decref(j);
	free(json);

	res.exited = 0;
	res.signal = 9;
	res.timed_out = 1;
	res.limit = xstrdup("cpu");
	json = sandbox_result_json(&res);
	ok(strncmp(json, head2, strlen(head2)) == 0,
	    "result JSON: signal, timeout and limit");
	free(json);
	sandbox_result_clear(&res);
}

static void
test_profiles(void)
{
	static const char *const stages[] = {
	    "planning", "implementing", "reviewing", "verifying"};
	struct sandbox_profile *p;
	char *path, *cause = NULL;

	for (size_t i = 0; i < nitems(stages); i++) {
		char *what = xasprintf("shipped %s.profile loads", stages[i]);

		p = load(profiles_dir, stages[i]);
		ok(p != NULL, what);
		sandbox_profile_free(p);
		free(what);
	}

	path = put("good.profile", GOOD);
	p = load(scratch, "good");
	ok(p != NULL, "a profile using every directive loads");
	sandbox_profile_free(p);
	free(path);

	bad_profile("bad-directive", "workspace ro\nfrobnicate yes\n", 2,
	    "unknown directive");
	bad_profile(
	    "bad-size", "workspace ro\n\ntmpfs_size 12Q\n", 3, "bad size");
	bad_profile("bad-size2", "workspace ro\nrlimit as lots\n", 2,
	    "bad rlimit size");
	bad_profile("bad-dup", "workspace ro\n# x\nworkspace rw\n", 3,
	    "duplicate workspace line");
	bad_profile(
	    "bad-relative", "workspace ro\nro_bind usr\n", 2, "relative path");
	bad_profile("bad-dotdot", "workspace ro\nro_bind /usr/../root\n", 2,
	    "path with ..");
	bad_profile("bad-home", "workspace ro\nro_bind /home/x /x\n", 2,
	    "binding /home");
	bad_profile("bad-root", "workspace ro\nro_bind /\n", 2, "binding /");
	bad_profile("bad-reserved", "workspace ro\nro_bind /usr /tmp/usr\n", 2,
	    "mounting over /tmp");
	bad_profile("bad-ws", "workspace maybe\n", 1, "bad workspace value");
	bad_profile("bad-net", "workspace ro\nnetwork host\n", 2,
	    "network other than none");
	bad_profile("bad-rlimit", "workspace ro\nrlimit stack 1M\n", 2,
	    "unknown rlimit");
	bad_profile("bad-rlimit-dup",
	    "workspace ro\nrlimit cpu 1\nrlimit "
	    "cpu 2\n",
	    3, "duplicate rlimit");
	bad_profile("bad-env", "workspace ro\nenv 1X=2\n", 2, "bad env name");
	bad_profile(
	    "bad-words", "workspace ro\nsymlink a\n", 2, "missing argument");
	bad_profile("bad-missing", "network none\n", 1, "no workspace line");

	ok(sandbox_profile_load(scratch, "../etc/passwd", &p, &cause) == -1 &&
	        contains(cause, "stage"),
	    "a stage name with a path is refused");
	free(cause);
	cause = NULL;
	ok(sandbox_profile_load(scratch, "nonexistent", &p, &cause) == -1 &&
	        contains(cause, "nonexistent.profile"),
	    "a missing profile is an error naming the file");
	free(cause);
}

static void
test_basics(
    const struct sandbox_profile *impl, const struct sandbox_profile *plan)
{
	struct sandbox_result res = {0};
	char *ws = workspace(), *f, *json, *cmd;
	json_t *j;
	struct stat st;
	int fd;

	ok(run(impl, ws, "echo hi", 10, &res) == 0 && exited(&res, 0) &&
	        res.output != NULL && strcmp(res.output, "hi\n") == 0 &&
	        !res.timed_out && res.signal == 0 && res.limit == NULL,
	    "echo hi runs");
	ok(run(impl, ws, "exit 3", 10, &res) == 0 && exited(&res, 3),
	    "exit status 3 is reported");

	json = sandbox_result_json(&res);
	j = json_loads(json, 0, NULL);
	ok(j != NULL &&
	        json_integer_value(json_object_get(j, "exit_status")) == 3 &&
	        json_is_null(json_object_get(j, "signal")) &&
	        json_is_false(json_object_get(j, "timed_out")) &&
	        json_is_null(json_object_get(j, "limit")) &&
	        json_is_integer(json_object_get(j, "duration_ms")) &&
	        json_is_string(json_object_get(j, "output")) &&
	        json_integer_value(json_object_get(j, "output_dropped")) == 0,
	    "result JSON has every field");
	json_decref(j);
	free(json);

	ok(run(impl, ws, "printf 'a\"b\\\\c\\001\\377\\n\\000z'", 10, &res) ==
	        0,
	    "binary output runs");
	json = sandbox_result_json(&res);
	j = json_loads(json, 0, NULL);
	ok(j != NULL && strcmp(json_string_value(json_object_get(j, "output")),
	                    "a\"b\\c\001\xef\xbf\xbd\n\xef\xbf\xbdz") == 0,
	    "output with quotes, control bytes, bad UTF-8 and NUL is valid "
	    "JSON");
	if (j == NULL)
		printf("# %s\n", json);
	json_decref(j);
	free(json);

	ok(run(impl, ws, "cat; echo done", 10, &res) == 0 && exited(&res, 0) &&
	        strcmp(res.output, "done\n") == 0,
	    "stdin is /dev/null");

	/* A descriptor the test leaves open must not reach the command. */
	fd = open("/dev/null", O_RDONLY);
	ok(run(impl, ws, "ls /proc/self/fd", 10, &res) == 0 &&
	        exited(&res, 0) && strcmp(res.output, "0\n1\n2\n3\n") == 0,
	    "only fds 0-2 inside (3 is ls's own)");
	close(fd);

	ok(run(impl, ws, "echo written > /workspace/f && pwd", 10, &res) == 0 &&
	        exited(&res, 0) && strcmp(res.output, "/workspace\n") == 0,
	    "implementing: workspace writable, cwd /workspace");
	f = xasprintf("%s/f", ws);
	ok(stat(f, &st) == 0 && st.st_size == 8,
	    "the write reached the host workspace");
	unlink(f);
	free(f);

	ok(run(plan, ws, "echo x > /workspace/g", 10, &res) == 0 &&
	        res.exited && res.exit_status != 0,
	    "planning: writing to the workspace fails");
	f = xasprintf("%s/g", ws);
	ok(access(f, F_OK) == -1, "planning: nothing written on the host");
	free(f);

	/* .git: a worktree's gitdir file, read-only even when rw. */
	f = xasprintf("%s/.git", ws);
	{
		FILE *g = fopen(f, "w");
		fputs("gitdir: /nonexistent/.git/worktrees/x\n", g);
		fclose(g);
	}
	ok(run(impl, ws,
	       "cat .git >/dev/null && ! echo evil > .git && ! rm -f .git && "
	       "! mv .git x",
	       10, &res) == 0 &&
	        exited(&res, 0),
	    "implementing: .git is readable but cannot be changed");
	ok(stat(f, &st) == 0 && st.st_size == 38, ".git unchanged on host");
	unlink(f);
	free(f);

	cmd = xasprintf("echo x > /tmp/orch-sbx-%d && cat /tmp/orch-sbx-%d && "
	                "! touch /usr/orch-sbx && ! touch /orch-sbx",
	    (int)getpid(), (int)getpid());
	ok(run(impl, ws, cmd, 10, &res) == 0 && exited(&res, 0),
	    "/tmp writable inside, / and /usr not");
	free(cmd);
	f = xasprintf("/tmp/orch-sbx-%d", (int)getpid());
	ok(access(f, F_OK) == -1 && access("/usr/orch-sbx", F_OK) == -1,
	    "the /tmp write did not reach the host's /tmp");
	free(f);

	ok(run(impl, ws,
	       "bash -c 'ulimit -u; ulimit -n; ulimit -c; ulimit -t; "
	       "ulimit -Ht; ulimit -v; ulimit -f'",
	       10, &res) == 0 &&
	        exited(&res, 0) &&
	        strcmp(res.output,
	            "256\n256\n0\n600\n601\n2097152\n262144\n") == 0,
	    "rlimits nproc, nofile, core, cpu, as, fsize as in the profile");

	sandbox_result_clear(&res);
	free(ws);
}

static void
test_secrets(const struct sandbox_profile *impl)
{
	struct sandbox_result res = {0};
	char *ws = workspace();

	setenv("ORCH_LLM_API_KEY", "canary-7f3a9c", 1);
	ok(run(impl, ws,
	       "cat /proc/1/environ /proc/self/environ; echo; env; "
	       "tr '\\0' '\\n' < /proc/1/environ",
	       10, &res) == 0 &&
	        !contains(res.output, "canary-") &&
	        !contains(res.output, "ORCH_LLM_API_KEY") &&
	        contains(res.output, "HOME=/tmp") &&
	        contains(res.output, "LANG=C.UTF-8") &&
	        contains(res.output, "TERM=dumb"),
	    "no canary in env or /proc/1/environ; allowlist present");
	unsetenv("ORCH_LLM_API_KEY");

	ok(run(impl, ws, "ls -d /root /home /work 2>&1; ls -a / ", 10, &res) ==
	            0 &&
	        !contains(res.output, "\nroot\n") &&
	        !contains(res.output, "\nhome\n") &&
	        contains(res.output, "No such file"),
	    "/root and /home are not visible");

	ok(run(impl, ws, "cat /etc/shadow", 10, &res) == 0 && res.exited &&
	        res.exit_status != 0,
	    "/etc/shadow is not visible");

	sandbox_result_clear(&res);
	free(ws);
}

static void
test_isolation(const struct sandbox_profile *impl)
{
	struct sandbox_result res = {0};
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	char *ws = workspace(), *cmd, *self;
	int lfd, afd;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lfd == -1 || bind(lfd, (struct sockaddr *)&sin, sizeof sin) == -1 ||
	    listen(lfd, 4) == -1 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &len) == -1)
		fatal("listener");
	cmd = xasprintf("bash -c 'echo > /dev/tcp/127.0.0.1/%d' && echo "
	                "CONNECTED",
	    ntohs(sin.sin_port));
	ok(run(impl, ws, cmd, 10, &res) == 0 && res.exited &&
	        res.exit_status != 0 && !contains(res.output, "CONNECTED"),
	    "no network: connecting to the host's 127.0.0.1 listener fails");
	afd = accept(lfd, NULL, NULL);
	ok(afd == -1 && errno == EAGAIN, "the listener saw no connection");
	if (afd != -1)
		close(afd);
	close(lfd);
	free(cmd);

	ok(run(impl, ws, "getent hosts example.com", 10, &res) == 0 &&
	        res.exited && res.exit_status != 0,
	    "no name resolution");
	ok(run(impl, ws, "tail -n +3 /proc/net/dev | grep -v ' lo:' | wc -l",
	       10, &res) == 0 &&
	        exited(&res, 0) && strcmp(res.output, "0\n") == 0,
	    "only loopback inside");

	ok(run(impl, ws, "ls /proc | grep -c '^[0-9]'", 10, &res) == 0 &&
	        exited(&res, 0) && atoi(res.output) <= 5,
	    "only a few pids visible");
	if ((self = realpath("/proc/self/exe", NULL)) == NULL)
		fatal("/proc/self/exe");
	ok(run(impl, ws,
	       "for p in /proc/[0-9]*; do readlink $p/exe; done; echo end", 10,
	       &res) == 0 &&
	        exited(&res, 0) && contains(res.output, "end") &&
	        !contains(res.output, self),
	    "the test's own process is not visible");

	sandbox_result_clear(&res);
	free(self);
	free(ws);
}

/* A command's output, as TAP comments. */
static void
diag_output(const char *out)
{
	for (const char *p = out ? out : ""; *p != '\0';) {
		size_t n = strcspn(p, "\n");
		printf("# %.*s\n", (int)n, p);
		p += n + (p[n] == '\n');
	}
}

/* cp src dst, keeping the mode. */
static int
copy_file(const char *src, const char *dst)
{
	char *cmd = xasprintf("cp '%s' '%s'", src, dst);
	int rc = system(cmd);

	free(cmd);
	return rc == 0 ? 0 : -1;
}

/* Is "\nname=want\n" in the output? One test line. */
static void
probe_is(const char *out, const char *name, const char *want)
{
	char *line = xasprintf("\n%s=%s\n", name, want);
	char *what = xasprintf("%s: %s", name, want);

	ok(contains(out, line), what);
	free(line);
	free(what);
}

/* Copy the escape probe into a fresh workspace; NULL without a probe. */
static char *
probe_workspace(void)
{
	char *ws, *dst;

	if (probe_path == NULL)
		return NULL;
	ws = workspace();
	dst = xasprintf("%s/escape-probe", ws);
	if (copy_file(probe_path, dst) == -1)
		fatal("copy %s", probe_path);
	free(dst);
	return ws;
}

/*
 * Item 8 of issue 10: only AF_UNIX, AF_INET, AF_INET6 and route netlink.
 * memfd_create is refused only where no cgroup counts it.
 */
static void
test_sockets(const struct sandbox_profile *impl, int cgroups)
{
	static const char *const refused[] = {"socket_vsock",
	    "socket_vsock_high", "socket_packet", "socket_alg",
	    "socketpair_vsock"};
	static const char *const allowed[] = {"socket_unix", "socket_inet",
	    "socket_inet6", "socket_netlink_route", "socketpair_unix"};
	struct sandbox_result res = {0};
	char *ws = probe_workspace();

	if (ws == NULL) {
		for (size_t i = 0; i < 13; i++)
			skip("escape probe", "no probe (ORCH_ESCAPE_PROBE)");
		return;
	}
	ok(run(impl, ws, "./escape-probe", 20, &res) == 0 && exited(&res, 0),
	    "the escape probe runs");
	for (size_t i = 0; i < nitems(refused); i++)
		probe_is(res.output, refused[i], "EAFNOSUPPORT");
	probe_is(res.output, "socket_netlink_audit", "EPROTONOSUPPORT");
	probe_is(res.output, "socket_netlink_uevent", "EPROTONOSUPPORT");
	for (size_t i = 0; i < nitems(allowed); i++)
		probe_is(res.output, allowed[i], "ok");
	probe_is(res.output, "memfd_create", cgroups ? "ok" : "ENOSYS");
	sandbox_result_clear(&res);
	free(ws);
}

/* The largest "name=N" in out, or -1. */
static long
max_of(const char *out, const char *name)
{
	char *key = xasprintf("%s=", name);
	long best = -1;

	for (const char *p = out; p != NULL && (p = strstr(p, key)) != NULL;
	     p += strlen(key)) {
		long v = atol(p + strlen(key));

		if (v > best)
			best = v;
	}
	free(key);
	return best;
}

#define MEM_PROFILE                                                            \
	"workspace rw\n"                                                       \
	"memory 64M\n"                                                         \
	"tmpfs_size 16M\n"                                                     \
	"shm_size 8M\n"                                                        \
	"ro_bind /usr\n"                                                       \
	"symlink usr/lib64 /lib64\n"                                           \
	"symlink usr/bin /bin\n"                                               \
	"symlink usr/lib /lib\n"                                               \
	"rlimit as 1G\n"                                                       \
	"rlimit nproc 100\n"

/* The same, with room for a hundred small processes. */
#define STORM_PROFILE                                                          \
	"workspace rw\n"                                                       \
	"memory 512M\n"                                                        \
	"ro_bind /usr\n"                                                       \
	"symlink usr/lib64 /lib64\n"                                           \
	"symlink usr/bin /bin\n"                                               \
	"symlink usr/lib /lib\n"                                               \
	"rlimit as 1G\n"                                                       \
	"rlimit nproc 100\n"

/*
 * Items 5 and 6 of issue 10: every writable tmpfs has a size inside the
 * memory budget, and memory held outside any address space (memfds,
 * SysV shm) is bounded: by the memory cgroup, or refused without one.
 */
static void
test_memory(int cgroups)
{
	struct sandbox_result res = {0};
	struct sandbox_profile *mem, *p = NULL;
	char *ws, *path, *cause = NULL;

	path = put("mem.profile", MEM_PROFILE);
	mem = load(scratch, "mem");
	ws = probe_workspace();
	if (ws == NULL)
		ws = workspace();

	ok(run(mem, ws,
	       "df -k /dev/shm | tail -n 1 | tr -s ' ' | cut -d' ' -f2", 10,
	       &res) == 0 &&
	        exited(&res, 0) && strcmp(res.output, "8192\n") == 0,
	    "/dev/shm is a tmpfs of shm_size");
	ok(run(mem, ws,
	       "head -c 32M /dev/zero > /dev/shm/fill; echo rc=$?; "
	       "du -k /dev/shm/fill | cut -f1",
	       10, &res) == 0 &&
	        exited(&res, 0) && contains(res.output, "rc=1\n") &&
	        atol(strstr(res.output, "rc=1\n") + 5) <= 8192,
	    "/dev/shm cannot be filled past its size");
	diag_output(res.output);
	ok(run(mem, ws,
	       "touch /dev/x 2>/dev/null && echo WROTE; mkdir /dev/d "
	       "2>/dev/null && echo WROTE; echo x >/dev/null && echo devnull",
	       10, &res) == 0 &&
	        exited(&res, 0) && !contains(res.output, "WROTE") &&
	        contains(res.output, "devnull"),
	    "/dev is read-only (its devices work)");

	free(path);
	path = put("over.profile", "workspace rw\nmemory 64M\ntmpfs_size "
	                           "60M\nshm_size 8M\n");
	ok(sandbox_profile_load(scratch, "over", &p, &cause) == -1 &&
	        contains(cause, "exceed memory"),
	    "a profile whose tmpfs sizes exceed its memory is refused");
	printf("# %s\n", cause ? cause : "");
	free(cause);
	sandbox_profile_free(p);

	if (probe_path == NULL) {
		skip("memfd", "no probe");
		skip("sysvshm", "no probe");
	} else if (cgroups) {
		ok(run(mem, ws, "./escape-probe memfd 256", 30, &res) == 0 &&
		        !contains(res.output, "memfd_done") &&
		        max_of(res.output, "memfd_mib") < 64,
		    "memfds (unmapped) cannot hold more than the memory "
		    "cgroup's 64M");
		printf("# memfd: most %ld MiB, limit %s\n",
		    max_of(res.output, "memfd_mib"),
		    res.limit ? res.limit : "none");
		ok(run(mem, ws, "./escape-probe sysvshm 256", 30, &res) == 0 &&
		        !contains(res.output, "sysvshm_done") &&
		        max_of(res.output, "sysvshm_mib") < 64,
		    "SysV shm (detached) cannot hold more than 64M either");
		printf("# sysvshm: most %ld MiB, limit %s\n",
		    max_of(res.output, "sysvshm_mib"),
		    res.limit ? res.limit : "none");
	} else {
		ok(run(mem, ws, "./escape-probe memfd 256", 30, &res) == 0 &&
		        contains(res.output, "memfd=ENOSYS") &&
		        max_of(res.output, "memfd_mib") == -1,
		    "without a cgroup memfd_create answers ENOSYS");
		ok(run(mem, ws, "./escape-probe sysvshm 256", 30, &res) == 0 &&
		        contains(res.output, "shmget=ENOSYS"),
		    "without a cgroup shmget answers ENOSYS");
	}

	sandbox_profile_free(mem);
	free(path);
	sandbox_result_clear(&res);
	free(ws);
}

/*
 * Item 7 of issue 10: a fork storm stops at the command's own process
 * limit, and another sandbox still starts while it rages.  Every process
 * of the storm forks again as soon as a fork fails or its children end, so
 * it holds all it may until the wall clock.  Without a pids
 * cgroup, as root, nothing would stop it: not run then.
 */
static void
test_fork_storm(int cgroups)
{
	struct sandbox_result res = {0};
	struct sandbox_profile *storm;
	char *ws = probe_workspace(), *path, verdict = '?';
	int fds[2], st;
	pid_t pid;

	if (ws == NULL || (!cgroups && geteuid() == 0)) {
		for (int i = 0; i < 3; i++)
			skip("fork storm", ws == NULL
			                       ? "no probe"
			                       : "no pids cgroup, and as root "
			                         "RLIMIT_NPROC does not hold");
		free(ws);
		return;
	}
	path = put("storm.profile", STORM_PROFILE);
	storm = load(scratch, "storm");
	if (pipe(fds) == -1)
		fatal("pipe");
	fflush(stdout);
	if ((pid = fork()) == -1)
		fatal("fork");
	if (pid == 0) {
		char v = 'n';

		close(fds[0]);
		if (run(storm, ws, "./escape-probe storm 4", 8, &res) == 0 &&
		    contains(res.output, "storm_fork=EAGAIN"))
			v = 'y';
		else
			printf("# storm: %.300s\n",
			    res.output ? res.output : "(none)");
		(void)write(fds[1], &v, 1);
		fflush(stdout);
		_exit(0);
	}
	close(fds[1]);
	usleep(1500 * 1000);
	ok(run(storm, ws, "echo alive", 10, &res) == 0 && exited(&res, 0) &&
	        strcmp(res.output, "alive\n") == 0,
	    "another sandbox starts during a fork storm");
	(void)read(fds[0], &verdict, 1);
	close(fds[0]);
	while (waitpid(pid, &st, 0) == -1 && errno == EINTR)
		;
	ok(verdict == 'y', "the fork storm hit its process limit (EAGAIN)");
	ok(run(storm, ws, "echo after", 10, &res) == 0 && exited(&res, 0),
	    "... and sandboxes still start after it");

	sandbox_profile_free(storm);
	free(path);
	sandbox_result_clear(&res);
	free(ws);
}

/* mkdir -p for the fake cgroup trees. */
static void
mkdirs(const char *path)
{
	char *cmd = xasprintf("mkdir -p '%s'", path);

	if (system(cmd) != 0)
		fatal("%s", cmd);
	free(cmd);
}

/*
 * cgroup_host_detect on fake /proc/self/cgroup, mountinfo and cgroup
 * trees: v2 is taken when delegated (controllers available, writable),
 * and its controllers are enabled for the subgroups; v1 otherwise; none
 * with a reason when neither has memory and pids.
 */
static void
test_cgroup_detect(void)
{
	struct cgroup_host h;
	char *cg, *mi, *dir, *text, *want;
	FILE *f;

	dir = xasprintf("%s/cg2/svc", scratch);
	mkdirs(dir);
	free(put("cg2/svc/cgroup.controllers", "cpu memory pids\n"));
	free(put("cg2/svc/cgroup.subtree_control", ""));
	free(put("cg2/svc/cgroup.procs", ""));
	cg = put("proc-cgroup-v2", "0::/svc\n");
	text = xasprintf("30 25 0:26 / %s/cg2 rw,nosuid - cgroup2 cgroup2 "
	                 "rw,nsdelegate\n",
	    scratch);
	mi = put("mountinfo-v2", text);
	free(text);
	ok(cgroup_host_detect(cg, mi, &h) == 0 && h.mode == CGROUP_V2 &&
	        h.memory != NULL && strcmp(h.memory, dir) == 0 &&
	        h.pids == NULL,
	    "cgroup v2: a delegated cgroup is used");
	printf("# %s\n", h.what);
	cgroup_host_clear(&h);
	text = xasprintf("%s/cgroup.subtree_control", dir);
	f = fopen(text, "r");
	free(text);
	text = xcalloc(1, 64);
	if (f != NULL) {
		(void)!fread(text, 1, 63, f);
		fclose(f);
	}
	ok(strcmp(text, "+memory +pids") == 0,
	    "cgroup v2: memory and pids are enabled for the subgroups");
	free(text);
	free(cg);
	free(mi);

	free(put("cg2/svc/cgroup.controllers", "cpu io\n"));
	cg = put("proc-cgroup-v2", "0::/svc\n");
	text =
	    xasprintf("30 25 0:26 / %s/cg2 rw - cgroup2 cgroup2 rw\n", scratch);
	mi = put("mountinfo-v2", text);
	free(text);
	ok(cgroup_host_detect(cg, mi, &h) == -1 && h.mode == CGROUP_NONE &&
	        contains(h.what, "memory and pids controllers are not "
	                         "available"),
	    "cgroup v2 without the controllers: none, and why");
	printf("# %s\n", h.what);
	cgroup_host_clear(&h);
	free(cg);
	free(mi);

	/* v1: memory and pids hierarchies, the unified one empty. */
	free(dir);
	dir = xasprintf("%s/v1/memory/svc", scratch);
	mkdirs(dir);
	free(put("v1/memory/svc/cgroup.procs", ""));
	mkdirs(scratch); /* pids at the hierarchy's root */
	text = xasprintf("%s/v1/pids", scratch);
	mkdirs(text);
	free(text);
	free(put("v1/pids/cgroup.procs", ""));
	cg = put("proc-cgroup-v1", "9:name=systemd:/\n8:pids:/\n"
	                           "4:memory:/svc\n0::/\n");
	text =
	    xasprintf("40 25 0:30 / %s/v1/memory rw - cgroup cgroup rw,memory\n"
	              "41 25 0:31 / %s/v1/pids rw - cgroup cgroup rw,pids\n"
	              "42 25 0:32 / %s/nowhere rw - cgroup2 cgroup2 rw\n",
	        scratch, scratch, scratch);
	mi = put("mountinfo-v1", text);
	free(text);
	want = xasprintf("%s/v1/pids", scratch);
	ok(cgroup_host_detect(cg, mi, &h) == 0 && h.mode == CGROUP_V1 &&
	        strcmp(h.memory, dir) == 0 && h.pids != NULL &&
	        strcmp(h.pids, want) == 0,
	    "cgroup v1: the memory and pids hierarchies are used");
	printf("# %s\n", h.what);
	cgroup_host_clear(&h);
	free(want);
	free(cg);
	free(mi);

	cg = put("proc-cgroup-none", "0::/\n");
	mi = put("mountinfo-none", "22 1 0:21 / /proc rw - proc proc rw\n");
	ok(cgroup_host_detect(cg, mi, &h) == -1 && h.mode == CGROUP_NONE &&
	        contains(h.what, "v2") && contains(h.what, "v1"),
	    "no cgroup hierarchy: none, saying why for v2 and v1");
	cgroup_host_clear(&h);
	free(cg);
	free(mi);
	free(dir);
}

static void
test_seccomp(const struct sandbox_profile *impl)
{
	static const char *const denied[] = {"ptrace", "mount", "umount2",
	    "unshare_user", "unshare_ns", "clone_newuser", "setns", "keyctl",
	    "add_key", "bpf", "perf_event_open", "userfaultfd",
	    "process_vm_readv", "fsopen", "open_tree", "pivot_root",
	    "io_uring_setup", "finit_module", "tiocsti", "tiocsti_high",
	    "tioclinux", "ptrace_i386", "ptrace_x32"};
	struct sandbox_result res = {0};
	char *ws, *dst;

	if (probe_path == NULL) {
		for (size_t i = 0; i < nitems(denied) + 3; i++)
			skip("escape probe", "no probe (ORCH_ESCAPE_PROBE)");
		return;
	}
	ws = workspace();
	dst = xasprintf("%s/escape-probe", ws);
	if (copy_file(probe_path, dst) == -1)
		fatal("copy %s", probe_path);
	ok(run(impl, ws, "./escape-probe", 20, &res) == 0 && exited(&res, 0) &&
	        contains(res.output, "getpid=ok\n"),
	    "the escape probe runs");
	diag_output(res.output);
	for (size_t i = 0; i < nitems(denied); i++) {
		char *line = xasprintf("\n%s=EPERM\n", denied[i]);
		char *what = xasprintf("%s refused with EPERM", denied[i]);

		ok(contains(res.output, line), what);
		free(line);
		free(what);
	}
	ok(contains(res.output, "\nclone3_newuser=ENOSYS\n"),
	    "clone3 answers ENOSYS (glibc falls back to clone)");
	ok(contains(res.output, "\nfionread=") &&
	        !contains(res.output, "\nfionread=EPERM\n"),
	    "other ioctls are not refused");

	sandbox_result_clear(&res);
	free(dst);
	free(ws);
}

static int
process_alive(const char *pattern)
{
	char *cmd = xasprintf("pgrep -f '%s' >/dev/null", pattern);
	int rc = system(cmd);

	free(cmd);
	return rc == 0;
}

static void
test_timeouts(const struct sandbox_profile *impl)
{
	struct sandbox_result res = {0};
	struct rusage ru0, ru1;
	char *ws = workspace(), *cmd, *pattern;
	uint64_t t0;

	beats = 0;
	t0 = now_ms();
	ok(run(impl, ws, "sleep 30", 1, &res) == 0 && res.timed_out &&
	        !res.exited && res.duration_ms >= 900 && now_ms() - t0 < 3500,
	    "sleep 30 with timeout 1 s: timed out in 1-3 s");
	ok(beats >= 2, "heartbeat called while it runs");

	/* bwrap stays in the worker's process group, which the service kills
	 * when it reaps the worker: so does bwrap's child until it makes a
	 * session of its own, past the window where it can be orphaned. */
	check_pgrp = 1;
	bwraps_seen = other_pgrp = 0;
	ok(run(impl, ws, "sleep 1.2", 5, &res) == 0 && res.exited, "sleep 1.2");
	check_pgrp = 0;
	printf("# bwraps seen %d, in another process group %d\n", bwraps_seen,
	    other_pgrp);
	ok(bwraps_seen >= 2 && other_pgrp == 0,
	    "bwrap is in our process group");

	t0 = now_ms();
	ok(run(impl, ws, "trap '' TERM; sleep 30", 1, &res) == 0 &&
	        res.timed_out && now_ms() - t0 < 4000,
	    "a command ignoring SIGTERM is killed too");
	json_t *j = NULL;
	char *json = sandbox_result_json(&res);
	j = json_loads(json, 0, NULL);
	ok(j != NULL && json_is_true(json_object_get(j, "timed_out")) &&
	        json_is_null(json_object_get(j, "exit_status")) &&
	        json_is_integer(json_object_get(j, "signal")),
	    "timed-out JSON: timed_out true, signal set");
	json_decref(j);
	free(json);

	/* A double-forking daemon dies with the sandbox. */
	cmd = xasprintf("(setsid sh -c 'sleep 60; : orch-marker-%d' &); "
	                "sleep 0.3; ps ax | grep -c '[o]rch-marker-%d'",
	    (int)getpid(), (int)getpid());
	ok(run(impl, ws, cmd, 10, &res) == 0 && exited(&res, 0) &&
	        atoi(res.output) >= 1,
	    "a double-forked daemon started inside");
	free(cmd);
	pattern = xasprintf("[o]rch-marker-%d", (int)getpid());
	usleep(200 * 1000);
	ok(!process_alive(pattern), "... and did not survive the sandbox");
	free(pattern);

	getrusage(RUSAGE_SELF, &ru0);
	ok(run(impl, ws, "yes", 2, &res) == 0 && res.timed_out &&
	        res.output != NULL &&
	        strlen(res.output) <= SANDBOX_MAX_OUTPUT &&
	        strlen(res.output) >= SANDBOX_MAX_OUTPUT - 2 &&
	        res.output_dropped > 10 * SANDBOX_MAX_OUTPUT,
	    "yes flood: output capped, the rest counted as dropped");
	getrusage(RUSAGE_SELF, &ru1);
	ok(ru1.ru_maxrss - ru0.ru_maxrss < 64 * 1024,
	    "yes flood: memory bounded");
	printf("# dropped %zu, maxrss %ld -> %ld KiB\n", res.output_dropped,
	    ru0.ru_maxrss, ru1.ru_maxrss);

	ok(run(impl, ws, "seq 1 100000", 10, &res) == 0 && exited(&res, 0) &&
	        strncmp(res.output, "1\n2\n3\n", 6) == 0 &&
	        strlen(res.output) + res.output_dropped == 588895 &&
	        strcmp(res.output + strlen(res.output) - 13,
	            "99999\n100000\n") == 0,
	    "head and tail kept, dropped counts the middle");

	sandbox_result_clear(&res);
	free(ws);
}

static void
test_limits(const struct sandbox_profile *impl)
{
	struct sandbox_result res = {0};
	struct sandbox_profile *lim;
	char *ws = workspace(), *f, *path;
	struct stat st;
	uint64_t t0;

	/*
	 * The classic ":(){ :|:& };:" is a syntax error for dash (":" is not
	 * a valid function name): the same bomb with a name.  As root it is
	 * not run: RLIMIT_NPROC does not hold for root and the bomb would
	 * exhaust the host's pids until the wall clock ends it.
	 */
	if (geteuid() == 0) {
		skip("fork bomb", "RLIMIT_NPROC is not enforced for root");
		skip("fork bomb", "RLIMIT_NPROC is not enforced for root");
	} else {
		t0 = now_ms();
		ok(run(impl, ws, "bomb() { bomb | bomb & }; bomb; sleep 1", 5,
		       &res) == 0 &&
		        now_ms() - t0 < 15000,
		    "fork bomb ends");
		ok(contains(res.output, "Cannot fork"),
		    "fork bomb: RLIMIT_NPROC stopped it");
	}
	ok(run(impl, ws, "echo alive", 10, &res) == 0 && exited(&res, 0),
	    "... and the host survives");

	ok(run(impl, ws, "head -c 4G /dev/zero | tail; echo rc=$?", 60, &res) ==
	            0 &&
	        !res.timed_out && exited(&res, 0) &&
	        !contains(res.output, "rc=0"),
	    "memory bomb fails under the AS limit");
	diag_output(res.output);

	path = put("limits.profile", GOOD);
	lim = load(scratch, "limits");
	ok(run(lim, ws, "head -c 2M /dev/zero > big", 10, &res) == 0 &&
	        exited(&res, 128 + 25) && res.limit != NULL &&
	        strcmp(res.limit, "fsize") == 0,
	    "fsize limit: SIGXFSZ reported as limit fsize");
	f = xasprintf("%s/big", ws);
	ok(stat(f, &st) == 0 && st.st_size == 1024 * 1024,
	    "fsize limit: the file stopped at 1M");
	unlink(f);
	free(f);

	t0 = now_ms();
	ok(run(lim, ws, "while :; do :; done", 10, &res) == 0 &&
	        !res.timed_out && exited(&res, 128 + 24) && res.limit != NULL &&
	        strcmp(res.limit, "cpu") == 0 && now_ms() - t0 < 5000,
	    "cpu limit: SIGXCPU reported as limit cpu");
	ok(run(lim, ws, "trap '' XCPU; while :; do :; done", 10, &res) == 0 &&
	        !res.timed_out && res.exited && res.exit_status == 128 + 9,
	    "cpu limit: ignoring SIGXCPU gets SIGKILL at the hard limit");

	ok(run(lim, ws, "df -k /tmp | tail -n 1 | tr -s ' ' | cut -d' ' -f2",
	       10, &res) == 0 &&
	        exited(&res, 0) && strcmp(res.output, "16384\n") == 0,
	    "/tmp is a tmpfs of tmpfs_size");

	ok(run(lim, ws, "echo \"$FOO\"", 10, &res) == 0 && exited(&res, 0) &&
	        strcmp(res.output, "bar baz\n") == 0,
	    "env lines reach the command");

	sandbox_profile_free(lim);
	free(path);
	sandbox_result_clear(&res);
	free(ws);
}

static void
test_fail_closed(const struct sandbox_profile *impl)
{
	struct sandbox_result res = {0};
	char *ws = workspace(), *cause = NULL, *marker, *cmd;

	ok(sandbox_check(&cause) == 0, "sandbox_check passes here");
	if (cause != NULL)
		printf("# %s\n", cause);
	free(cause);
	cause = NULL;

	marker = xasprintf("%s/marker", scratch);
	cmd = xasprintf("touch %s", marker);

	setenv("ORCH_BWRAP", "/nonexistent/bwrap", 1);
	ok(sandbox_run(impl, ws, cmd, 10, NULL, NULL, &res, &cause) == -1 &&
	        contains(cause, "bubblewrap"),
	    "bwrap missing: sandbox_run fails, cause names bubblewrap");
	printf("# %s\n", cause ? cause : "");
	free(cause);
	cause = NULL;
	ok(sandbox_check(&cause) == -1 &&
	        contains(cause, "apt-get install bubblewrap"),
	    "bwrap missing: sandbox_check says how to fix it");
	free(cause);
	cause = NULL;

	/* bwrap that exits before creating the sandbox. */
	setenv("ORCH_BWRAP", "/bin/false", 1);
	ok(sandbox_run(impl, ws, cmd, 10, NULL, NULL, &res, &cause) == -1 &&
	        contains(cause, "could not create the sandbox"),
	    "bwrap failing before the sandbox exists: sandbox_run fails");
	free(cause);
	cause = NULL;
	ok(sandbox_check(&cause) == -1 && contains(cause, "userns"),
	    "... and sandbox_check names user namespaces");
	printf("# %s\n", cause ? cause : "");
	free(cause);
	cause = NULL;

	setenv("ORCH_BWRAP", "bwrap", 1);
	ok(sandbox_run(impl, ws, cmd, 10, NULL, NULL, &res, &cause) == -1,
	    "a relative ORCH_BWRAP is refused");
	free(cause);
	cause = NULL;
	unsetenv("ORCH_BWRAP");
	ok(access(marker, F_OK) == -1, "the command never ran on the host");

	sandbox_result_clear(&res);
	sandbox_result_clear(NULL);
	free(marker);
	free(cmd);
	free(ws);
}

/*
 * cgroup_host_sweep on the host's real cgroups (root with v1, or a
 * delegated v2): the group of a worker that is gone is removed and the
 * process still in it (an orphaned sandbox) killed, as is what is left in
 * that worker's process group; a live worker's group stays.
 */
static void
test_cgroup_sweep(void)
{
	struct cgroup_host h;
	char *dead, *live, *procs;
	pid_t gone, child, orphan = -1;
	int status, fd, pfd[2];

	if (cgroup_host_detect(
	        "/proc/self/cgroup", "/proc/self/mountinfo", &h) == -1) {
		skip("cgroup sweep", h.what);
		cgroup_host_clear(&h);
		return;
	}
	/*
	 * A worker that is certainly gone (a child we reaped), whose process
	 * group lives on in an orphan outside the groups: bwrap's child when
	 * bwrap was killed while it set up.  We take it as subreaper.
	 */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) == -1 || pipe(pfd) == -1)
		fatal("subreaper");
	if ((gone = fork()) == 0) {
		setpgid(0, 0);
		if ((orphan = fork()) == 0) {
			pause();
			_exit(0);
		}
		(void)!write(pfd[1], &orphan, sizeof orphan);
		_exit(0);
	}
	if (read(pfd[0], &orphan, sizeof orphan) != sizeof orphan)
		fatalx("no orphan");
	close(pfd[0]);
	close(pfd[1]);
	waitpid(gone, &status, 0);
	dead = xasprintf(
	    "%s/orch-sbx.%ld.0", h.pids ? h.pids : h.memory, (long)gone);
	live = xasprintf(
	    "%s/orch-sbx.%ld.0", h.pids ? h.pids : h.memory, (long)getpid());
	if (mkdir(dead, 0755) == -1 || mkdir(live, 0755) == -1)
		fatal("mkdir %s", dead);
	if ((child = fork()) == 0) {
		pause();
		_exit(0);
	}
	procs = xasprintf("%s/cgroup.procs", dead);
	if ((fd = open(procs, O_WRONLY)) == -1 ||
	    dprintf(fd, "%ld", (long)child) < 0)
		fatal("%s", procs);
	close(fd);

	ok(cgroup_host_sweep(&h) >= 1, "the dead worker's group is swept");
	for (int i = 0; i < 200 && waitpid(child, &status, WNOHANG) == 0; i++)
		usleep(10 * 1000);
	if (kill(child, 0) == 0) { /* not swept: do not leave it */
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		status = 0;
	}
	ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
	    "what was left in it is killed");
	ok(access(dead, F_OK) == -1 && errno == ENOENT, "its group is gone");
	for (int i = 0; i < 200 && waitpid(orphan, &status, WNOHANG) == 0; i++)
		usleep(10 * 1000);
	if (kill(orphan, 0) == 0) {
		kill(orphan, SIGKILL);
		waitpid(orphan, NULL, 0);
		status = 0;
	}
	ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
	    "so is what is left in its process group, outside the groups");
	(void)prctl(PR_SET_CHILD_SUBREAPER, 0);
	rmdir(dead);
	ok(access(live, F_OK) == 0, "a live worker's group stays");
	rmdir(live);
	free(procs);
	free(dead);
	free(live);
	cgroup_host_clear(&h);
}

int
main(int argc, char **argv)
{
	struct sandbox_profile *impl, *plan;
	char *cmd;

	log_init("test-sandbox", LOG_LEVEL_WARN);
	if (argc > 1)
		profiles_dir = argv[1];
	else
		profiles_dir = getenv("ORCH_SANDBOX_PROFILES_DIR");
	if (argc > 2)
		probe_path = argv[2];
	else
		probe_path = getenv("ORCH_ESCAPE_PROBE");
	if (probe_path != NULL && *probe_path == '\0')
		probe_path = NULL;
	if (profiles_dir == NULL) {
		printf("1..0 # skip no profiles dir (argv[1] or "
		       "ORCH_SANDBOX_PROFILES_DIR)\n");
		return 0;
	}
	if (mkdtemp(scratch) == NULL)
		fatal("mkdtemp");
	unsetenv("ORCH_BWRAP");

	test_result_json();
	test_profiles();
	test_cgroup_detect();
	test_cgroup_sweep();
	impl = load(profiles_dir, "implementing");
	plan = load(profiles_dir, "planning");
	test_basics(impl, plan);
	test_secrets(impl);
	test_isolation(impl);
	test_seccomp(impl);
	test_timeouts(impl);
	test_limits(impl);
	/* Both ways: with the host's cgroups (if any), and without. */
	for (int forced = 0; forced < 2; forced++) {
		char *what = NULL;
		int cgroups;

		if (forced)
			setenv("ORCH_SANDBOX_CGROUP", "none", 1);
		cgroups = sandbox_limits(&what) != CGROUP_NONE;
		printf("# limits: %s\n", what);
		free(what);
		test_sockets(impl, cgroups);
		test_memory(cgroups);
		test_fork_storm(cgroups);
		unsetenv("ORCH_SANDBOX_CGROUP");
	}
	test_fail_closed(impl);
	sandbox_profile_free(impl);
	sandbox_profile_free(plan);

	cmd = xasprintf("rm -rf '%s'", scratch);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", scratch);
	free(cmd);
	return tap_done();
}
