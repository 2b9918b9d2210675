/*
 * A task's origin (common/origin.c): which --repo URLs are refused before
 * git sees them, the mirror's name, what a fetch or push takes from the
 * node's environment (git_env) and what every other git does not, and a
 * push that meets a ref another state directory made on the origin.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "tap.h"

static char tmp[] = "/tmp/test-origin.XXXXXX";

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
sh(const char *fmt, ...)
{
	char *cmd;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) == -1)
		abort();
	va_end(ap);
	rc = system(cmd);
	free(cmd);
	return rc;
}

static char *
sh_line(const char *cmd)
{
	char line[256] = "";
	FILE *f = popen(cmd, "r");

	if (f == NULL)
		abort();
	if (fgets(line, sizeof line, f) == NULL)
		line[0] = '\0';
	pclose(f);
	line[strcspn(line, "\n")] = '\0';
	return xstrdup(line);
}

/* The commit ref names in the repository dir, or "". */
static char *
rev(const char *dir, const char *ref)
{
	char *cmd = xasprintf(
	    "git -C %s rev-parse -q --verify %s 2>/dev/null", dir, ref);
	char *line = sh_line(cmd);

	free(cmd);
	return line;
}

static void
refused(const char *repo, const char *why)
{
	char *url, *branch, *cause = NULL;
	int rc = origin_parse(repo, &url, &branch, &cause);

	char what[80];

	snprintf(what, sizeof what, "refused: %.60s", repo);
	ok(rc == -1 && url == NULL && cause != NULL && strstr(cause, why),
	    what);
	if (rc == -1 && (cause == NULL || strstr(cause, why) == NULL))
		printf("#   cause: %s\n", cause ? cause : "(null)");
	free(cause);
	free(url);
	free(branch);
}

static void
accepted(const char *repo, const char *want_url, const char *want_branch)
{
	char *url, *branch, *cause = NULL;
	int rc = origin_parse(repo, &url, &branch, &cause);

	ok(rc == 0 && url != NULL && strcmp(url, want_url) == 0 &&
	        (want_branch == NULL
	                ? branch == NULL
	                : branch != NULL && strcmp(branch, want_branch) == 0),
	    repo);
	if (rc == -1)
		printf("#   cause: %s\n", cause);
	free(cause);
	free(url);
	free(branch);
}

static void
test_parse(void)
{
	char big[ORIGIN_MAX_URL + 16];

	ok(origin_is_url("file:///srv/x.git"), "a URL is an origin");
	ok(!origin_is_url("/srv/work"), "a path is not");
	ok(!origin_is_url(NULL), "nor no repository");

	accepted("file:///srv/x.git", "file:///srv/x.git", NULL);
	accepted("https://git.example.com/team/x.git",
	    "https://git.example.com/team/x.git", NULL);
	accepted("ssh://git@git.example.com:2222/team/x.git",
	    "ssh://git@git.example.com:2222/team/x.git", NULL);
	accepted("ssh://git.example.com/x#release/1.2",
	    "ssh://git.example.com/x", "release/1.2");

	refused("-uhttps://x/y", "start with '-'");
	refused("ext::sh -c touch% /tmp/pwned", "space");
	refused("ext::sh", "transport helpers");
	refused("fd::3", "transport helpers");
	refused("file::/x", "transport helpers");
	refused("git://example.com/x", "transport \"git\" is refused");
	refused("http://example.com/x", "transport \"http\" is refused");
	refused("HTTPS://example.com/x", "transport \"HTTPS\" is refused");
	refused("ftp://example.com/x", "refused");
	refused("user@example.com:x.git", "scp-like");
	refused("https://user:pw@example.com/x", "user name or password");
	refused("https://token@example.com/x", "user name or password");
	refused("ssh://u:pw@example.com/x", "user name or password");
	refused("ssh://-oProxyCommand=touch%20x/y", "starts with '-'");
	refused("ssh://u@-oProxyCommand=x/y", "starts with '-'");
	refused("ssh:///x", "no host");
	refused("ssh://host", "no repository path");
	refused("ssh://ho$st/x", "not allowed");
	refused("file://host/x", "absolute path");
	refused("file://x", "absolute path");
	refused("file:///a/../b", "'..'");
	refused("file:///a/..", "'..'");
	refused("file:///a\tb", "control character");
	refused("file:///a\"b", "quote");
	refused("file:///a#-x", "branch name");
	refused("file:///a#a..b", "branch name");
	refused("file:///a#x.lock", "branch name");
	refused("file:///a#x y", "space");
	refused("", "at most");
	memset(big, 'a', sizeof big - 1);
	memcpy(big, "file:///", 8);
	big[sizeof big - 1] = '\0';
	refused(big, "at most");
}

static void
test_mirror_name(void)
{
	char *cause = NULL, *a, *b, *c;

	a = origin_mirror("/state", "https://example.com/team/app.git", &cause);
	b = origin_mirror(
	    "/state", "https://example.com/other/app.git", &cause);
	c = origin_mirror("/state", "file:///srv/we ird/", &cause);
	ok(a != NULL && strncmp(a, "/state/repos/app-", 17) == 0 &&
	        strlen(a) == 17 + 16 + 4 &&
	        strcmp(a + strlen(a) - 4, ".git") == 0,
	    "a mirror is repos/TAIL-HASH.git");
	ok(a != NULL && b != NULL && strcmp(a, b) != 0,
	    "two origins of one name have two mirrors");
	ok(c != NULL && strncmp(c, "/state/repos/we_ird-", 20) == 0,
	    "the readable part keeps letters, digits, '-' and '_' only");
	free(a);
	free(b);
	free(c);
	free(cause);
}

static int
env_has(char **env, const char *prefix)
{
	for (size_t i = 0; env[i] != NULL; i++) {
		if (strncmp(env[i], prefix, strlen(prefix)) == 0)
			return 1;
	}
	return 0;
}

static void
test_env(void)
{
	struct git_opts o = {0};
	char **env;

	setenv("SSH_AUTH_SOCK", "/run/agent.sock", 1);
	setenv("GIT_SSH_COMMAND", "ssh -i key", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "x", 1);
	env = git_env(&o);
	ok(!env_has(env, "SSH_AUTH_SOCK=") && !env_has(env, "GIT_SSH_COMMAND="),
	    "a local git sees no ssh agent or ssh command");
	ok(env_has(env, "GIT_CONFIG_GLOBAL=/dev/null"),
	    "nor the user's global configuration");
	ok(env_has(env, "GIT_ALLOW_PROTOCOL=file:https:ssh"),
	    "transports are limited to file, https and ssh");
	git_env_free(env);
	o.network = 1;
	env = git_env(&o);
	ok(env_has(env, "SSH_AUTH_SOCK=/run/agent.sock") &&
	        env_has(env, "GIT_SSH_COMMAND=ssh -i key"),
	    "a fetch or push takes the node's agent and ssh command");
	ok(!env_has(env, "GIT_CONFIG_GLOBAL="),
	    "and reads the global configuration (credential helpers)");
	ok(env_has(env, "GIT_CONFIG_NOSYSTEM=1") &&
	        env_has(env, "GIT_ALLOW_PROTOCOL=file:https:ssh") &&
	        env_has(env, "GIT_TERMINAL_PROMPT=0"),
	    "never the system's, never a prompt, the same transports");
	ok(!env_has(env, "AWS_SECRET_ACCESS_KEY="),
	    "nothing else of the environment");
	git_env_free(env);
	unsetenv("SSH_AUTH_SOCK");
	unsetenv("GIT_SSH_COMMAND");
	unsetenv("AWS_SECRET_ACCESS_KEY");
}

static void
test_push(void)
{
	char *origin = xasprintf("%s/origin.git", tmp);
	char *url = xasprintf("file://%s", origin);
	char *mirror = xasprintf("%s/repos/m.git", tmp), *commit = NULL;
	char *cause = NULL, *theirs, *mine, *before, *gone, *ssh;
	int permanent, pushed, rc;

	if (sh("set -e; cd %s; git init -q -b main work; cd work; "
	       "echo a > a; git add a; git -c user.name=t -c user.email=t@t "
	       "commit -qm base; git checkout -qb feature; echo b > b; "
	       "git add b; git -c user.name=t -c user.email=t@t commit -qm f; "
	       "git checkout -q main; git clone -q --bare . %s",
	        tmp, origin) != 0)
		abort();
	rc = origin_sync(mirror, url, NULL, &commit, &permanent, &cause);
	ok(rc == 0 && commit != NULL && strlen(commit) == 40,
	    "the mirror is made and the origin's HEAD read");
	if (rc == -1)
		printf("#   %s\n", cause);
	free(cause);
	cause = NULL;
	free(commit);
	commit = NULL;
	theirs = rev(origin, "feature");
	rc = origin_sync(mirror, url, "feature", &commit, &permanent, &cause);
	ok(rc == 0 && commit != NULL && strcmp(commit, theirs) == 0,
	    "URL#BRANCH: the base is that branch's commit");
	free(theirs);
	free(commit);
	commit = NULL;
	rc = origin_sync(mirror, url, "nope", &commit, &permanent, &cause);
	ok(rc == -1 && permanent && strstr(cause, "has no branch nope"),
	    "a branch the origin lacks is a permanent error");
	free(cause);
	cause = NULL;

	/* A snapshot of "ours" (state id S1) in the mirror. */
	if (sh("set -e; cd %s; t=$(git rev-parse 'refs/origin/HEAD^{tree}'); "
	       "c=$(printf 'snap\\n\\nOrch-State: S1\\n' | "
	       "git -c user.name=t -c user.email=t@t commit-tree $t); "
	       "git update-ref refs/orch/tasks/1 $c",
	        mirror) != 0)
		abort();
	rc = origin_push(mirror, url, "refs/orch/tasks/1", "S1", &pushed,
	    &permanent, &cause);
	ok(rc == 0 && pushed, "our snapshot ref is pushed");
	if (rc == -1)
		printf("#   %s\n", cause);
	free(cause);
	cause = NULL;
	mine = rev(mirror, "refs/orch/tasks/1");
	theirs = rev(origin, "refs/orch/tasks/1");
	is_str(theirs, mine, "the origin has it");
	free(theirs);
	rc = origin_push(mirror, url, "refs/orch/tasks/1", "S1", &pushed,
	    &permanent, &cause);
	ok(rc == 0 && !pushed, "pushed again: nothing to do");
	free(cause);
	cause = NULL;

	/* Someone else's ref of the same name on the origin. */
	if (sh("set -e; cd %s; t=$(git rev-parse 'main^{tree}'); "
	       "c=$(printf 'theirs\\n\\nOrch-State: S2\\n' | "
	       "git -c user.name=t -c user.email=t@t commit-tree $t); "
	       "git update-ref refs/orch/tasks/1 $c",
	        origin) != 0)
		abort();
	before = rev(origin, "refs/orch/tasks/1");
	rc = origin_push(mirror, url, "refs/orch/tasks/1", "S1", &pushed,
	    &permanent, &cause);
	ok(rc == -1 && permanent && strstr(cause, "not made by this state"),
	    "a ref on the origin another state directory made: refused, "
	    "permanently");
	theirs = rev(origin, "refs/orch/tasks/1");
	is_str(theirs, before, "... and left alone");
	free(theirs);
	free(before);
	free(cause);
	cause = NULL;

	/* A node that lost its mirror gets the origin's snapshot back. */
	if (sh("set -e; cd %s; t=$(git rev-parse 'main^{tree}'); "
	       "c=$(printf 'ours again\\n\\nOrch-State: S1\\n' | "
	       "git -c user.name=t -c user.email=t@t commit-tree $t); "
	       "git update-ref refs/orch/tasks/2 $c",
	        origin) != 0 ||
	    sh("rm -rf %s", mirror) != 0)
		abort();
	rc = origin_sync(mirror, url, NULL, NULL, &permanent, &cause) == 0 &&
	             origin_fetch_ref(mirror, url, "refs/orch/tasks/2", &commit,
	                 &permanent, &cause) == 0
	         ? 0
	         : -1;
	theirs = rev(origin, "refs/orch/tasks/2");
	free(mine);
	mine = rev(mirror, "refs/orch/tasks/2");
	ok(rc == 0 && commit != NULL && strcmp(commit, theirs) == 0,
	    "fetch_ref reports the origin's snapshot");
	is_str(mine, theirs, "and the mirror's ref is set to it");
	free(commit);
	commit = NULL;
	free(cause);
	cause = NULL;
	rc = origin_fetch_ref(
	    mirror, url, "refs/orch/tasks/3", &commit, &permanent, &cause);
	ok(rc == 0 && commit == NULL, "a snapshot the origin lacks: none");
	rc = origin_fetch_ref(
	    mirror, url, "refs/../x", &commit, &permanent, &cause);
	ok(rc == -1 && permanent, "a ref with '..' is refused");
	free(cause);
	cause = NULL;

	/* Failures sorted: the origin refusing us, or the way to it. */
	gone = xasprintf("file://%s/gone.git", tmp);
	rc = origin_push(mirror, gone, "refs/orch/tasks/2", "S1", &pushed,
	    &permanent, &cause);
	ok(rc == -1 && permanent && strstr(cause, "refused"),
	    "no repository at the URL: permanent, and said so");
	free(cause);
	cause = NULL;
	free(gone);
	if (sh("set -e; git -C %s update-ref refs/orch/tasks/9 "
	       "refs/orch/tasks/2; printf '#!/bin/sh\necho no pushes here "
	       ">&2\nexit 1\n' > %s/hooks/pre-receive; "
	       "chmod +x %s/hooks/pre-receive",
	        mirror, origin, origin) != 0)
		abort();
	rc = origin_push(mirror, url, "refs/orch/tasks/9", "S1", &pushed,
	    &permanent, &cause);
	ok(rc == -1 && permanent && strstr(cause, "hook declined") &&
	        strstr(cause, "no pushes here"),
	    "the origin's hook declines: permanent, with its message");
	free(theirs);
	theirs = rev(origin, "refs/orch/tasks/9");
	is_str(theirs, "", "(nothing was pushed)");
	free(cause);
	cause = NULL;
	ssh = xasprintf("%s/ssh", tmp);
	setenv("GIT_SSH_COMMAND", ssh, 1);
	setenv("GIT_SSH_VARIANT", "simple", 1);
	if (sh("printf '#!/bin/sh\necho \"ssh: connect to host example.com "
	       "port 22: Connection refused\" >&2\nexit 255\n' > %s; "
	       "chmod +x %s",
	        ssh, ssh) != 0)
		abort();
	rc = origin_push(mirror, "ssh://example.com/x.git", "refs/orch/tasks/2",
	    "S1", &pushed, &permanent, &cause);
	ok(rc == -1 && !permanent && strstr(cause, "transient") &&
	        strstr(cause, "Connection refused"),
	    "an unreachable host: transient, and said so");
	free(cause);
	cause = NULL;
	if (sh("printf '#!/bin/sh\necho \"git@example.com: Permission "
	       "denied (publickey).\" >&2\nexit 255\n' > %s",
	        ssh) != 0)
		abort();
	rc = origin_push(mirror, "ssh://example.com/x.git", "refs/orch/tasks/2",
	    "S1", &pushed, &permanent, &cause);
	ok(rc == -1 && permanent && strstr(cause, "Permission denied"),
	    "authentication refused: permanent");
	unsetenv("GIT_SSH_COMMAND");
	unsetenv("GIT_SSH_VARIANT");
	free(ssh);
	free(cause);
	free(theirs);
	free(mine);
	free(mirror);
	free(url);
	free(origin);
}

/*
 * The result branch pushed by a node that did not make it (issue 13): the
 * implementer's node pushes its result commit to a hidden ref of the
 * origin, the node that verifies takes it into its own mirror first.
 */
static void
test_take(void)
{
	char *origin = xasprintf("%s/origin2.git", tmp);
	char *url = xasprintf("file://%s", origin);
	char *ma = xasprintf("%s/repos/a.git", tmp);
	char *mb = xasprintf("%s/repos/b.git", tmp);
	char *commit = NULL, *cause = NULL, *made, *theirs;
	int permanent, pushed, took = -1, rc;

	if (sh("set -e; cd %s; git init -q -b main work2; cd work2; "
	       "echo a > a; git add a; git -c user.name=t -c user.email=t@t "
	       "commit -qm base; git clone -q --bare . %s",
	        tmp, origin) != 0)
		abort();
	if (origin_sync(ma, url, NULL, &commit, &permanent, &cause) == -1)
		abort();
	free(commit);
	if (origin_sync(mb, url, NULL, &commit, &permanent, &cause) == -1)
		abort();
	free(commit);
	/* Node a's result branch, of state S1 (one database). */
	if (sh("set -e; cd %s; t=$(git rev-parse 'refs/origin/HEAD^{tree}'); "
	       "c=$(printf 'result\n\nOrch-State: S1\n' | "
	       "git -c user.name=t -c user.email=t@t commit-tree $t); "
	       "git update-ref refs/heads/orch/task-5 $c",
	        ma) != 0)
		abort();
	made = rev(ma, "refs/heads/orch/task-5");
	rc = origin_push_as(ma, url, "refs/heads/orch/task-5",
	    "refs/orch/results/5", "S1", &pushed, &permanent, &cause);
	ok(rc == 0 && pushed, "push_as: a ref pushed under another name");
	theirs = rev(origin, "refs/orch/results/5");
	is_str(theirs, made, "the origin has it under that name");
	free(theirs);
	free(cause);
	cause = NULL;
	rc = origin_push(mb, url, "refs/heads/orch/task-5", "S1", &pushed,
	    &permanent, &cause);
	ok(rc == -1 && strstr(cause, "is not in the mirror"),
	    "node b cannot push a branch its mirror never had");
	free(cause);
	cause = NULL;
	rc = origin_take(mb, url, "refs/orch/results/5",
	    "refs/heads/orch/task-5", &took, &permanent, &cause);
	ok(rc == 0 && took == 1, "take: b's mirror gets the origin's result");
	if (rc == -1)
		printf("#   %s\n", cause);
	free(cause);
	cause = NULL;
	rc = origin_push(mb, url, "refs/heads/orch/task-5", "S1", &pushed,
	    &permanent, &cause);
	ok(rc == 0 && pushed, "then b pushes the result branch");
	theirs = rev(origin, "refs/heads/orch/task-5");
	is_str(theirs, made, "the origin's result branch is a's commit");
	free(theirs);
	free(cause);
	cause = NULL;
	rc = origin_take(mb, url, "refs/orch/results/6",
	    "refs/heads/orch/task-6", &took, &permanent, &cause);
	ok(rc == 0 && took == 0, "take of a ref the origin lacks: nothing");
	free(cause);
	free(made);
	free(ma);
	free(mb);
	free(url);
	free(origin);
}

/*
 * The lease fence (issue 13): a worker of a node that lost its task (a
 * paused machine woken after another node took the task over) pushes a
 * snapshot ref; the origin's ref is at a commit made under a later epoch
 * by the node that holds the task now: refused, and left alone.
 */
static void
fence_commit(const char *mirror, int epoch, const char *msg)
{
	if (sh("set -e; cd %s; t=$(git rev-parse 'refs/origin/HEAD^{tree}'); "
	       "c=$(printf '%s\n\nOrch-State: S1\nOrch-Epoch: %d\n' | "
	       "git -c user.name=t -c user.email=t@t commit-tree $t); "
	       "git update-ref refs/orch/tasks/7 $c",
	        mirror, msg, epoch) != 0)
		abort();
}

static void
test_fence(void)
{
	char *origin = xasprintf("%s/origin3.git", tmp);
	char *url = xasprintf("file://%s", origin);
	char *mirror = xasprintf("%s/repos/f.git", tmp);
	char *commit = NULL, *cause = NULL, *before, *after;
	int permanent, pushed, rc;

	if (sh("set -e; cd %s; git init -q -b main work3; cd work3; "
	       "echo a > a; git add a; git -c user.name=t -c user.email=t@t "
	       "commit -qm base; git clone -q --bare . %s",
	        tmp, origin) != 0 ||
	    origin_sync(mirror, url, NULL, &commit, &permanent, &cause) == -1)
		abort();
	free(commit);
	fence_commit(mirror, 2, "under epoch 2");
	origin_set_epoch(2);
	rc = origin_push(mirror, url, "refs/orch/tasks/7", "S1", &pushed,
	    &permanent, &cause);
	ok(rc == 0 && pushed, "a snapshot of epoch 2 is pushed");
	before = rev(origin, "refs/orch/tasks/7");
	fence_commit(mirror, 1, "stale, under epoch 1");
	origin_set_epoch(1);
	rc = origin_push(mirror, url, "refs/orch/tasks/7", "S1", &pushed,
	    &permanent, &cause);
	ok(rc == -1 && permanent && cause != NULL &&
	        strstr(cause, "lease epoch 2, this worker's is 1") != NULL,
	    "a worker of epoch 1 cannot push over epoch 2's ref: permanent, "
	    "and said why");
	if (rc == 0 || cause == NULL || strstr(cause, "epoch 2") == NULL)
		printf("#   %s\n", cause ? cause : "(no cause)");
	after = rev(origin, "refs/orch/tasks/7");
	is_str(after, before, "... and the origin's ref is left alone");
	free(after);
	free(cause);
	cause = NULL;
	fence_commit(mirror, 3, "under epoch 3");
	origin_set_epoch(3);
	rc = origin_push(mirror, url, "refs/orch/tasks/7", "S1", &pushed,
	    &permanent, &cause);
	ok(rc == 0 && pushed, "the next epoch's worker pushes over it");
	after = rev(origin, "refs/orch/tasks/7");
	ok(strcmp(after, before) != 0, "... and the ref moved");
	free(after);
	free(before);
	free(cause);
	origin_set_epoch(0);
	free(mirror);
	free(url);
	free(origin);
}

int
main(void)
{
	if (mkdtemp(tmp) == NULL)
		abort();
	setenv("HOME", tmp, 1);
	test_parse();
	test_mirror_name();
	test_env();
	test_push();
	test_take();
	test_fence();
	sh("rm -rf %s", tmp);
	return tap_done();
}
