/*
 * workspace.c: worktree creation, snapshots, restore, squash and removal
 * against a scratch repository, and that the user's repository is left
 * alone (HEAD, index, branches, hooks).
 */
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "worker.h"

#include "tap.h"

static char tmp[] = "/tmp/test-workspace.XXXXXX";
static char *note; /* a snapshot's note: none in these tests */

#define ENV                                                                    \
	"unset GIT_DIR GIT_INDEX_FILE GIT_WORK_TREE; export "                  \
	"GIT_CONFIG_COUNT=1 "                                                  \
	"GIT_CONFIG_KEY_0=core.hooksPath GIT_CONFIG_VALUE_0=/dev/null"

/*
 * Run a shell command in the scratch directory.  The variables the tests
 * set to check that git's environment is scrubbed are unset for it, and the
 * tests' own git commands run no hooks either (git status would run
 * post-index-change).
 */
static int
sh(const char *fmt, ...)
{
	va_list ap;
	char *cmd, *full;
	int rc;

	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	full = xasprintf("cd %s && " ENV " "
	                 "&& { %s ; } >/dev/null 2>&1",
	    tmp, cmd);
	rc = system(full);
	free(cmd);
	free(full);
	return rc == 0 ? 0 : -1;
}

/* The output of a shell command, without its trailing newlines. */
static char *
out(const char *fmt, ...)
{
	va_list ap;
	char *cmd, *full, buf[65536];
	size_t len;
	FILE *f;

	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	full = xasprintf("cd %s && " ENV " && %s", tmp, cmd);
	f = popen(full, "r");
	if (f == NULL)
		fatal("popen");
	len = fread(buf, 1, sizeof buf - 1, f);
	pclose(f);
	buf[len] = '\0';
	while (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	free(cmd);
	free(full);
	return xstrdup(buf);
}

static int
exists(const char *rel)
{
	char *p = xasprintf("%s/%s", tmp, rel);
	struct stat st;
	int rc = lstat(p, &st) == 0;

	free(p);
	return rc;
}

static char *
slurp(const char *rel)
{
	char *p = xasprintf("%s/%s", tmp, rel);
	char buf[4096];
	FILE *f = fopen(p, "r");
	size_t n;

	free(p);
	if (f == NULL)
		return xstrdup("(missing)");
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	return xstrdup(buf);
}

static void
put(const char *rel, const char *text)
{
	char *p = xasprintf("%s/%s", tmp, rel);
	FILE *f = fopen(p, "w");

	if (f == NULL)
		fatal("fopen %s", p);
	fputs(text, f);
	fclose(f);
	free(p);
}

static int
is_file(const char *rel, const char *want)
{
	char *got = slurp(rel);
	int rc = strcmp(got, want) == 0;

	if (!rc)
		printf("#   %s: got \"%s\", want \"%s\"\n", rel, got, want);
	free(got);
	return rc;
}

/*
 * What a killed worker's git leaves behind must not block the next worker:
 * stale lock files on the worktree's index, the snapshot ref and the result
 * branch, and a half-made worktree directory; and a copy of a worktree is
 * not taken for one.
 */
static void
test_leftovers(void)
{
	char *cause = NULL, *lrepo = xasprintf("%s/lockrepo", tmp);
	char *lwt = xasprintf("%s/state/worktrees/task-9", tmp);
	char *cwt = xasprintf("%s/state/worktrees/task-10", tmp);
	char *base, *snap = NULL, *sq = NULL;

	if (sh("git init -q -b main lockrepo && cd lockrepo && "
	       "printf 'x\\n' >x.txt && git add -A && "
	       "git -c user.name=t -c user.email=t@t commit -qm init") == -1)
		fatal("cannot set up lockrepo");
	base = out("git -C lockrepo rev-parse HEAD");
	ok(ws_create(lrepo, lwt, base, &cause) == 1,
	    "leftovers: worktree made");
	free(cause);
	cause = NULL;
	sh("touch \"$(git -C %s rev-parse --absolute-git-dir)/index.lock\" "
	   "lockrepo/.git/refs/orch.lock && mkdir -p "
	   "lockrepo/.git/refs/orch/tasks "
	   "lockrepo/.git/refs/heads/orch && touch "
	   "lockrepo/.git/refs/orch/tasks/9.lock "
	   "lockrepo/.git/refs/heads/orch/task-9.lock",
	    lwt);
	ok(ws_restore(lwt, base, &cause) == -1,
	    "leftovers: a stale index.lock blocks git (the problem)");
	free(cause);
	cause = NULL;
	ws_unlock(lrepo, lwt, "refs/orch/tasks/9", "orch/task-9");
	ok(ws_restore(lwt, base, &cause) == 0,
	    "leftovers: after ws_unlock the restore works");
	free(cause);
	cause = NULL;
	sh("cd state/worktrees/task-9 && printf 'y\\n' >y.txt");
	ok(ws_snapshot(lwt, "refs/orch/tasks/9", base, "s", &snap, &note, NULL,
	       &cause) == 0,
	    "leftovers: the snapshot ref can be written again");
	free(cause);
	cause = NULL;
	ok(ws_squash(lwt, "orch/task-9", base, snap, "m", &sq, NULL, &cause) ==
	        0,
	    "leftovers: the result branch can be written again");
	free(cause);
	cause = NULL;
	ok(exists("lockrepo/.git/refs/orch.lock"),
	    "leftovers: locks that are not the task's stay");

	/* A killed `git worktree add`: a directory that is no worktree. */
	sh("rm -rf state/worktrees/task-9 && mkdir -p state/worktrees/task-9 "
	   "&& printf 'half\\n' >state/worktrees/task-9/x.txt");
	ok(ws_create(lrepo, lwt, base, &cause) == 1,
	    "leftovers: a half-made worktree is replaced");
	free(cause);
	cause = NULL;
	ok(ws_restore(lwt, base, &cause) == 0 &&
	        exists("state/worktrees/task-9/.git"),
	    "leftovers: ... by a working one");
	free(cause);
	cause = NULL;

	/*
	 * A `git worktree add` killed after it wrote the directory's .git
	 * file but before commondir (its record still locked
	 * "initializing"): git takes the directory for no repository, so it
	 * is made again, and the half record goes.
	 */
	sh("a=\"$(git -C %s rev-parse --absolute-git-dir)\" && "
	   "rm \"$a/commondir\" && printf initializing >\"$a/locked\"",
	    lwt);
	ok(ws_restore(lwt, base, &cause) == -1,
	    "leftovers: a worktree record without commondir breaks git "
	    "(the problem)");
	free(cause);
	cause = NULL;
	ok(ws_create(lrepo, lwt, base, &cause) == 1,
	    "leftovers: a half-recorded worktree is made again");
	free(cause);
	cause = NULL;
	ok(ws_restore(lwt, base, &cause) == 0,
	    "leftovers: ... and git works on it");
	free(cause);
	cause = NULL;
	{
		char *n = out("git -C lockrepo worktree list | wc -l");

		is_str(n, "2",
		    "leftovers: ... with one record (the half one went)");
		free(n);
	}
	/* Killed before the directory had its .git: a locked record whose
	 * directory is gone. */
	sh("a=\"$(git -C %s rev-parse --absolute-git-dir)\" && "
	   "printf initializing >\"$a/locked\" && rm -rf %s",
	    lwt, lwt);
	ok(ws_create(lrepo, lwt, base, &cause) == 1,
	    "leftovers: a locked record of a missing directory is reused");
	if (cause != NULL)
		printf("#   %s\n", cause);
	free(cause);
	cause = NULL;
	ok(ws_restore(lwt, base, &cause) == 0,
	    "leftovers: ... and git works on it");
	free(cause);
	cause = NULL;

	/*
	 * A copy of a worktree is not one: its .git names the original's
	 * administrative directory, which does not name it back.  It is
	 * emptied and made a worktree of its own.
	 */
	sh("cp -a state/worktrees/task-9 state/worktrees/task-10 && "
	   "printf 'copied\n' >state/worktrees/task-10/only-in-copy.txt");
	ok(ws_create(lrepo, cwt, base, &cause) == 1,
	    "worktree check: a copied worktree is made anew");
	free(cause);
	cause = NULL;
	ok(!exists("state/worktrees/task-10/only-in-copy.txt") &&
	        exists("state/worktrees/task-10/x.txt"),
	    "worktree check: ... with the commit's files only");
	ok(ws_create(lrepo, cwt, base, &cause) == 0,
	    "worktree check: and is then found to be one");
	ok(ws_create(lrepo, lwt, base, &cause) == 0,
	    "worktree check: the original is still one");
	free(cause);
	free(cwt);
	free(base);
	free(snap);
	free(sq);
	free(lrepo);
	free(lwt);
}

/*
 * Workers of one repository add worktrees one at a time (git's own `worktree
 * add` fails on another's half-made record): a worktree add waits while the
 * repository's common directory is locked, and goes on when it is free.
 */
static void
test_worktrees_lock(const char *repo, const char *head)
{
	char *wt = xasprintf("%s/state/worktrees/locked", tmp);
	char *git = xasprintf("%s/.git", repo);
	int fd = open(git, O_RDONLY | O_DIRECTORY | O_CLOEXEC), status = -1;
	pid_t pid;

	ok(fd != -1 && flock(fd, LOCK_EX) == 0, "lock: the test holds it");
	if ((pid = fork()) == 0) {
		char *cause = NULL;

		close(fd); /* its copy would hold the test's lock */
		_exit(ws_create(repo, wt, head, &cause) == 1 ? 0 : 1);
	}
	usleep(500 * 1000);
	is_int(waitpid(pid, &status, WNOHANG), 0,
	    "lock: worktree add waits while another holds it");
	ok(!exists("state/worktrees/locked/.git"), "lock: nothing made yet");
	close(fd);
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "lock: and adds the worktree once it is free");
	ok(exists("state/worktrees/locked/a.txt"),
	    "lock: the worktree is there");
	sh("git -C %s worktree remove --force %s", repo, wt);
	free(git);
	free(wt);
}

static int ticks;

static void
count_tick(void *arg)
{
	(void)arg;
	ticks++;
}

/* A fresh repository NAME with one commit and worktree task-NAME. */
static char *
hostile_setup(const char *name, char **wt, char **base)
{
	char *repo = xasprintf("%s/%s", tmp, name), *cause = NULL;

	if (sh("git init -q -b main %s && cd %s && printf 'x\\n' >x.txt && "
	       "git add -A && git -c user.name=t -c user.email=t@t commit "
	       "-qm init",
	        name, name) == -1)
		fatal("cannot set up %s", name);
	*base = out("git -C %s rev-parse HEAD", name);
	*wt = xasprintf("%s/state/worktrees/task-%s", tmp, name);
	if (ws_create(repo, *wt, *base, &cause) != 1)
		fatalx("ws_create %s: %s", name, cause);
	return repo;
}

/*
 * The workspace is the model's: what it writes there must not make the
 * worker's git (outside the sandbox) run a program: no filter from the
 * user's global configuration or the repository's own, no textconv or
 * external diff, and no git directory planted in the workspace.
 */
static void
test_hostile_config(void)
{
	char *wt, *base, *repo, *c = NULL, *cause = NULL, *diff = NULL, *s;
	char *gc = xasprintf("%s/.gitconfig", tmp);
	FILE *f;

	repo = hostile_setup("hostile", &wt, &base);
	/* The user's global config (HOME is tmp) defines filters and
	 * drivers, as `git lfs install` does; each would leave a marker. */
	if ((f = fopen(gc, "w")) == NULL)
		fatal("%s", gc);
	fprintf(f,
	    "[filter \"lfs\"]\n\tclean = touch %s/global-filter-ran; cat\n"
	    "\tsmudge = touch %s/global-filter-ran; cat\n\trequired = true\n"
	    "[diff \"t\"]\n\ttextconv = touch %s/textconv-ran; cat\n"
	    "[diff]\n\texternal = touch %s/extdiff-ran\n"
	    "[core]\n\tfsmonitor = touch %s/fsmonitor-ran\n",
	    tmp, tmp, tmp, tmp, tmp);
	fclose(f);
	/* And the repository's own config one more. */
	sh("git -C hostile config filter.own.clean 'touch %s/own-filter-ran; "
	   "cat' && git -C hostile config filter.own.required true",
	    tmp);
	/* Many drivers: each is turned off, none is a limit to crash on. */
	sh("for i in $(seq 1 40); do git -C hostile config filter.f$i.clean "
	   "'touch %s/own-filter-ran; cat' && git -C hostile config "
	   "filter.f$i.smudge cat; done",
	    tmp);
	put("state/worktrees/task-hostile/.gitattributes",
	    "*.bin filter=lfs diff=t\n*.own filter=own\n*.f40 filter=f40\n");
	put("state/worktrees/task-hostile/z.f40", "forty\n");
	put("state/worktrees/task-hostile/a.bin", "binary\n");
	put("state/worktrees/task-hostile/b.own", "own\n");
	is_int(ws_snapshot(wt, "refs/orch/tasks/50", base, "s", &c, &note, NULL,
	           &cause),
	    0, "hostile: snapshot with filters named");
	if (cause != NULL)
		printf("#   %s\n", cause);
	ok(!exists("global-filter-ran"),
	    "hostile: the global config's filter never ran");
	ok(!exists("own-filter-ran"),
	    "hostile: the repository's own filter never ran (turned off)");
	ok(!exists("fsmonitor-ran"), "hostile: no fsmonitor ran");
	s = out("git -C hostile show %s:a.bin", c != NULL ? c : "x");
	is_str(s, "binary", "hostile: the file is stored as it is");
	free(s);
	is_int(ws_diff(wt, base, c != NULL ? c : "x", 1 << 20, &diff, &cause),
	    0, "hostile: diff");
	ok(!exists("textconv-ran") && !exists("extdiff-ran"),
	    "hostile: no textconv or external diff ran");
	free(diff);
	sh("rm -rf state/worktrees/task-hostile/a.bin");
	is_int(ws_restore(wt, c != NULL ? c : base, &cause), 0,
	    "hostile: restore (a checkout) with filters named");
	ok(!exists("global-filter-ran") && !exists("own-filter-ran"),
	    "hostile: no smudge filter ran");
	free(c);
	c = NULL;

	/*
	 * The workspace's .git rewritten to name a git directory planted in
	 * the workspace, whose config runs programs: the worker's git still
	 * uses the repository's record of the worktree.
	 */
	sh("cd state/worktrees/task-hostile && mkdir -p evil/refs evil/objects "
	   "&& printf 'ref: refs/heads/x\\n' >evil/HEAD && printf "
	   "'[core]\\n\\tfsmonitor = touch %s/planted-ran\\n"
	   "[filter \"p\"]\\n\\tclean = touch %s/planted-ran; cat\\n' "
	   ">evil/config && echo '* filter=p' >>.gitattributes && "
	   "chmod u+w .git && printf 'gitdir: evil\\n' >.git",
	    tmp, tmp);
	put("state/worktrees/task-hostile/c.txt", "after the plant\n");
	is_int(ws_snapshot(wt, "refs/orch/tasks/50", base, "s2", &c, &note,
	           NULL, &cause),
	    0, "planted .git: the snapshot works");
	if (cause != NULL)
		printf("#   %s\n", cause);
	ok(!exists("planted-ran"),
	    "planted .git: its fsmonitor and filter never ran");
	s = out("git -C hostile show refs/orch/tasks/50:c.txt");
	is_str(s, "after the plant",
	    "planted .git: the snapshot went to the real repository");
	free(s);
	unlink(gc);
	free(gc);
	free(c);
	free(wt);
	free(base);
	free(repo);
}

/*
 * What a snapshot cannot hold is left out with a note, never a failure:
 * nested repositories (`git init sub`, as cargo new does) and files over
 * the size limit.
 */
static void
test_left_out(void)
{
	struct ws_options wo = {NULL, 1000, 0, NULL, NULL, 0};
	char *wt, *base, *repo, *c = NULL, *cause = NULL, *s;
	int permanent = -1;

	repo = hostile_setup("nested", &wt, &base);
	ws_configure(&wo);
	sh("cd state/worktrees/task-nested && git init -q empty && "
	   "echo e >empty/e.txt && git init -q full && echo f >full/f.txt && "
	   "git -C full add -A && git -C full -c user.name=t -c "
	   "user.email=t@t commit -qm f && echo top >top.txt && head -c 2000 "
	   "/dev/zero >big.dat && head -c 900 /dev/zero >small.dat");
	is_int(ws_snapshot(wt, "refs/orch/tasks/60", base, "s", &c, &note,
	           &permanent, &cause),
	    0, "nested: a workspace with nested repositories is snapshotted");
	if (cause != NULL)
		printf("#   %s\n", cause);
	s = out("git -C nested ls-tree -r --name-only %s | tr '\\n' ' '",
	    c != NULL ? c : "x");
	is_str(s, "small.dat top.txt x.txt ",
	    "nested: their files, and the big file, are left out");
	free(s);
	ok(note != NULL && strstr(note, "empty/ is a nested git repository") &&
	        strstr(note, "full/ is a nested git repository") &&
	        strstr(note, "big.dat is 2000 bytes") &&
	        strstr(note, "ORCH_SNAPSHOT_MAX_FILE_BYTES"),
	    "nested: the note names each and why");
	free(note);
	note = NULL;
	free(c);
	c = NULL;

	/* A failure git will repeat is permanent; a lock is transient. */
	sh("cd state/worktrees/task-nested && echo more >>top.txt && "
	   "touch \"$(git rev-parse --git-dir)/index.lock\"");
	is_int(ws_snapshot(wt, "refs/orch/tasks/60", base, "s", &c, &note,
	           &permanent, &cause),
	    -1, "lock: the snapshot fails");
	is_int(permanent, 0, "lock: ... and may pass later (transient)");
	free(cause);
	cause = NULL;
	ws_unlock(repo, wt, NULL, NULL);
	is_int(ws_snapshot(wt, "refs/orch/tasks/60", "0123456789abcdef0123",
	           "s", &c, &note, &permanent, &cause),
	    0, "after the lock goes, it works");
	free(note);
	note = NULL;
	free(c);
	c = NULL;
	free(cause);
	cause = NULL;
	is_int(ws_snapshot(wt, "refs/orch/tasks/61",
	           "0123456789abcdef0123456789abcdef01234567", "s", &c, &note,
	           &permanent, &cause),
	    -1, "a missing parent: the snapshot fails");
	is_int(permanent, 1, "... for good (permanent)");
	free(cause);
	wo.max_file_bytes = 0;
	ws_configure(&wo);
	free(wt);
	free(base);
	free(repo);
}

/*
 * A slow git (a large workspace) calls the tick (the worker's heartbeat)
 * while it runs, and is stopped at the limit, for good.
 */
static void
test_slow(void)
{
	struct ws_options wo = {NULL, 0, 0, count_tick, NULL, 0};
	char *wt, *base, *repo, *c = NULL, *cause = NULL, *git, *path, *saved;
	int permanent = -1;

	repo = hostile_setup("slow", &wt, &base);
	git = out("command -v git");
	sh("mkdir -p bin && printf '#!/bin/sh\\ncase \" $* \" in *\" add "
	   "\"*) sleep 1.5;; esac\\nexec %s \"$@\"\\n' >bin/git && chmod +x "
	   "bin/git",
	    git);
	saved = xstrdup(getenv("PATH"));
	path = xasprintf("%s/bin:%s", tmp, saved);
	setenv("PATH", path, 1);
	ws_configure(&wo);
	put("state/worktrees/task-slow/new.txt", "new\n");
	ticks = 0;
	is_int(ws_snapshot(wt, "refs/orch/tasks/70", base, "s", &c, &note,
	           &permanent, &cause),
	    0, "slow: the snapshot works");
	ok(ticks >= 5, "slow: it ticked while git ran");
	printf("#   %d ticks\n", ticks);
	free(c);
	c = NULL;
	wo.timeout_s = 1;
	ws_configure(&wo);
	put("state/worktrees/task-slow/new.txt", "newer\n");
	is_int(ws_snapshot(wt, "refs/orch/tasks/70", base, "s", &c, &note,
	           &permanent, &cause),
	    -1, "slow: over its limit, the snapshot fails");
	ok(cause != NULL && strstr(cause, "did not finish within 1 s"),
	    "slow: ... saying so");
	is_int(permanent, 1, "slow: ... for good (it would take as long)");
	free(cause);
	wo.timeout_s = 0;
	wo.tick = NULL;
	ws_configure(&wo);
	setenv("PATH", saved, 1);
	free(saved);
	free(path);
	free(git);
	free(wt);
	free(base);
	free(repo);
}

/*
 * A long message (the request and the model's summary) goes on standard
 * input, not as one argument over the kernel's limit.  A branch or ref of
 * another state directory is never overwritten.
 */
static void
test_results(void)
{
	struct ws_options wo = {
	    "0123456789abcdef0123456789abcdef", 0, 0, NULL, NULL, 0};
	char *wt, *base, *repo, *c = NULL, *cause = NULL, *msg, *r = NULL, *s;
	char *chosen = NULL, *foreign;
	int permanent = -1;

	repo = hostile_setup("results", &wt, &base);
	ws_configure(&wo);
	put("state/worktrees/task-results/r.txt", "result\n");
	is_int(ws_snapshot(wt, "refs/orch/tasks/80", base, "s", &c, &note,
	           &permanent, &cause),
	    0, "results: snapshot");
	msg = xmalloc(300 * 1024 + 1);
	memset(msg, 's', 300 * 1024);
	msg[300 * 1024] = '\0';
	is_int(
	    ws_squash(wt, "orch/task-80", base, c, msg, &r, &permanent, &cause),
	    0, "results: a 300 KiB message is committed");
	if (cause != NULL)
		printf("#   %s\n", cause);
	s = out("git -C results log -1 --format=%%B orch/task-80 | wc -c");
	ok(atoi(s) > 300 * 1024, "results: ... whole");
	free(s);
	s = out("git -C results log -1 --format='%%(trailers:key=Orch-State,"
	        "valueonly)' orch/task-80");
	is_str(s, wo.state_id, "results: with the state id's trailer");
	free(s);
	free(r);
	r = NULL;
	is_int(ws_squash(wt, "orch/task-80", base, c, "again", &r, &permanent,
	           &cause),
	    0, "results: our own branch is moved again (a later round)");
	free(r);
	r = NULL;

	/* Another state directory's branch and snapshot ref. */
	sh("git -C results branch orch/task-81 main && git -C results "
	   "update-ref refs/orch/tasks/81 main");
	foreign = out("git -C results rev-parse orch/task-81");
	is_int(
	    ws_squash(wt, "orch/task-81", base, c, "m", &r, &permanent, &cause),
	    -1, "foreign: a branch not ours is not overwritten");
	is_int(permanent, 1, "foreign: ... for good");
	ok(cause != NULL && strstr(cause, "not made by this state directory"),
	    "foreign: ... saying why");
	free(cause);
	cause = NULL;
	s = out("git -C results rev-parse orch/task-81");
	is_str(s, foreign, "foreign: the branch is unchanged");
	free(s);
	is_int(ws_pick_ref(wt, "refs/heads/orch/task-81",
	           "refs/heads/orch/task-81-0123456789ab", &chosen, &permanent,
	           &cause),
	    0, "pick: a free name instead");
	is_str(chosen, "refs/heads/orch/task-81-0123456789ab",
	    "pick: ... the alternative");
	free(chosen);
	is_int(ws_pick_ref(wt, "refs/heads/orch/task-80",
	           "refs/heads/orch/task-80-0123456789ab", &chosen, &permanent,
	           &cause),
	    0, "pick: our own");
	is_str(chosen, "refs/heads/orch/task-80", "pick: ... is kept");
	free(chosen);
	is_int(ws_pick_ref(wt, "refs/orch/tasks/81", "refs/orch/tasks/80",
	           &chosen, &permanent, &cause),
	    0, "pick: alternative that exists and is ours");
	is_str(chosen, "refs/orch/tasks/80", "pick: ... is used");
	free(chosen);
	sh("git -C results update-ref refs/orch/tasks/82 main");
	is_int(ws_pick_ref(wt, "refs/orch/tasks/81", "refs/orch/tasks/82",
	           &chosen, &permanent, &cause),
	    -1, "pick: both someone else's: refused");
	is_int(permanent, 1, "pick: ... for good");
	free(cause);
	cause = NULL;
	free(note);
	note = NULL;
	free(c);
	c = NULL;
	is_int(ws_snapshot(wt, "refs/orch/tasks/90", base, "s", &c, &note,
	           &permanent, &cause),
	    0, "a new snapshot ref, nothing changed since the last");
	s = out("git -C results log -1 --format='%%(trailers:key=Orch-State,"
	        "valueonly)' refs/orch/tasks/90");
	is_str(s, wo.state_id, "... starts with a commit of ours");
	free(s);
	wo.state_id = NULL;
	ws_configure(&wo);
	free(c);
	free(msg);
	free(foreign);
	free(wt);
	free(base);
	free(repo);
}

/*
 * The worker remembers what it read or wrote of a ref rather than run git
 * again: a ref someone else moved or made in between must still be
 * refused by update-ref's compare-and-swap, never overwritten, and read
 * afresh after the refusal.
 */
static void
test_stale(void)
{
	struct ws_options wo = {
	    "fedcba9876543210fedcba9876543210", 0, 0, NULL, NULL, 0};
	char *wt, *base, *repo, *c = NULL, *c2 = NULL, *cause = NULL, *s;
	char *chosen = NULL, *r = NULL, *foreign, *got = NULL;
	int permanent = -1;

	repo = hostile_setup("stale", &wt, &base);
	ws_configure(&wo);
	sh("git -C stale commit -q --allow-empty -m foreign");
	foreign = out("git -C stale rev-parse main");

	/* A snapshot ref moved by someone else after this worker wrote it. */
	put("state/worktrees/task-stale/a.txt", "a\n");
	is_int(ws_snapshot(wt, "refs/orch/tasks/1", base, "s", &c, &note,
	           &permanent, &cause),
	    0, "stale: a snapshot");
	sh("git -C stale update-ref refs/orch/tasks/1 %s", foreign);
	put("state/worktrees/task-stale/a.txt", "b\n");
	is_int(ws_snapshot(wt, "refs/orch/tasks/1", base, "s", &c2, &note,
	           &permanent, &cause),
	    -1, "stale: the next snapshot on a ref moved since is refused");
	free(cause);
	cause = NULL;
	s = out("git -C stale rev-parse refs/orch/tasks/1");
	is_str(s, foreign, "stale: ... and the ref keeps the other's value");
	free(s);
	is_int(ws_ref_get(wt, "refs/orch/tasks/1", &got, &cause), 0,
	    "stale: after the refusal the ref is read again");
	is_str(got, foreign, "stale: ... and its new value is seen");
	free(got);
	got = NULL;

	/* A ref made by someone else after this worker saw none. */
	is_int(ws_pick_ref(wt, "refs/orch/tasks/2", "refs/orch/tasks/2-x",
	           &chosen, &permanent, &cause),
	    0, "stale: pick a ref that does not exist");
	sh("git -C stale update-ref refs/orch/tasks/2 %s", foreign);
	is_int(
	    ws_snapshot(wt, chosen, base, "s", &c2, &note, &permanent, &cause),
	    -1, "stale: a snapshot on a ref made since is refused");
	free(cause);
	cause = NULL;
	s = out("git -C stale rev-parse refs/orch/tasks/2");
	is_str(s, foreign, "stale: ... and the ref is left alone");
	free(s);
	free(chosen);

	/* A result branch made by someone else between the pick and the
	 * squash. */
	is_int(ws_pick_ref(wt, "refs/heads/orch/task-3",
	           "refs/heads/orch/task-3-x", &chosen, &permanent, &cause),
	    0, "stale: pick a branch that does not exist");
	sh("git -C stale branch orch/task-3 %s", foreign);
	is_int(ws_squash(wt, chosen + strlen("refs/heads/"), base, c, "m", &r,
	           &permanent, &cause),
	    -1, "stale: the squash onto a branch made since is refused");
	free(cause);
	cause = NULL;
	s = out("git -C stale rev-parse orch/task-3");
	is_str(s, foreign, "stale: ... and the branch is left alone");
	free(s);
	is_int(ws_squash(wt, chosen + strlen("refs/heads/"), base, c, "m", &r,
	           &permanent, &cause),
	    -1, "stale: tried again, it is read afresh");
	ok(cause != NULL && strstr(cause, "not made by this state directory"),
	    "stale: ... and refused as another's");
	free(cause);
	cause = NULL;
	free(chosen);

	/*
	 * Refs read from git's files (no git process): packed, loose over
	 * packed, gone, and a symbolic ref, which git is asked to follow.
	 */
	sh("git -C stale update-ref refs/orch/tasks/4 %s && "
	   "git -C stale pack-refs --all && "
	   "git -C stale update-ref refs/orch/tasks/5 %s && "
	   "git -C stale pack-refs --all && "
	   "git -C stale update-ref refs/orch/tasks/5 %s && "
	   "git -C stale symbolic-ref refs/orch/tasks/6 refs/heads/main",
	    base, base, foreign);
	ws_configure(&wo); /* forget what was seen */
	is_int(ws_ref_get(wt, "refs/orch/tasks/4", &got, &cause), 0,
	    "files: a packed ref");
	is_str(got, base, "files: ... its value");
	free(got);
	got = NULL;
	is_int(ws_ref_get(wt, "refs/orch/tasks/5", &got, &cause), 0,
	    "files: a loose ref over a packed one");
	is_str(got, foreign, "files: ... the loose value");
	free(got);
	got = NULL;
	is_int(ws_ref_get(wt, "refs/orch/tasks/6", &got, &cause), 0,
	    "files: a symbolic ref");
	is_str(got, foreign, "files: ... followed (by git)");
	free(got);
	got = (char *)"x";
	is_int(ws_ref_get(wt, "refs/orch/tasks/40", &got, &cause), 0,
	    "files: a ref that is neither loose nor packed");
	ok(got == NULL, "files: ... does not exist");
	sh("git -C stale update-ref -d refs/orch/tasks/4");
	ws_configure(&wo);
	got = (char *)"x";
	is_int(ws_ref_get(wt, "refs/orch/tasks/4", &got, &cause), 0,
	    "files: a packed ref deleted");
	ok(got == NULL, "files: ... does not exist");
	free(note);
	note = NULL;
	wo.state_id = NULL;
	ws_configure(&wo);
	free(c);
	free(c2);
	free(r);
	free(foreign);
	free(wt);
	free(base);
	free(repo);
}

int
main(void)
{
	char *cause = NULL, *head, *c1 = NULL, *c1b = NULL, *c2 = NULL;
	char *sq = NULL, *got = NULL, *s, *wt, *repo, *branches, *index_sum;
	char *notrepo, *diff = NULL;
	int rc;

	if (mkdtemp(tmp) == NULL)
		fatal("mkdtemp");
	setenv("HOME", tmp, 1); /* no user git config: identity from env */
	repo = xasprintf("%s/repo", tmp);
	wt = xasprintf("%s/state/worktrees/1", tmp);

	if (sh("git init -q -b main repo && cd repo && "
	       "printf 'one\\n' >a.txt && printf 'two\\n' >b.txt && "
	       "mkdir sub && printf 'three\\n' >sub/c.txt && "
	       "printf '*.log\\n' >.gitignore && git add -A && "
	       "git -c user.name=t -c user.email=t@t commit -qm init && "
	       "git branch side") == -1)
		fatal("cannot set up the repository");
	head = out("git -C repo rev-parse HEAD");
	branches = out("git -C repo for-each-ref --format='%%(refname) "
	               "%%(objectname)' refs/heads");
	index_sum = out("sha256sum repo/.git/index");
	/* Hooks that would leave a marker if git ever ran them. */
	sh("for h in pre-commit post-commit post-checkout "
	   "reference-transaction post-index-change; do "
	   "printf '#!/bin/sh\\ntouch %s/hook-ran\\n' >repo/.git/hooks/$h && "
	   "chmod +x repo/.git/hooks/$h; done",
	    tmp);
	/* git must not pick these up from the worker's environment. */
	setenv("GIT_DIR", "/nonexistent", 1);
	setenv("GIT_INDEX_FILE", "/nonexistent/index", 1);
	setenv("GIT_WORK_TREE", "/nonexistent", 1);

	rc = ws_create(repo, wt, head, &cause);
	is_int(rc, 1, "ws_create: made");
	if (rc != 1)
		printf("#   %s\n", cause);
	ok(is_file("state/worktrees/1/a.txt", "one\n"), "worktree has a.txt");
	is_int(ws_create(repo, wt, head, &cause), 0, "ws_create again: no-op");

	put("state/worktrees/1/a.txt", "one modified\n");
	sh("rm state/worktrees/1/b.txt");
	put("state/worktrees/1/u.txt", "untracked\n");
	put("state/worktrees/1/x.log", "ignored\n");

	is_int(ws_ref_get(wt, "refs/orch/tasks/1", &got, &cause), 0,
	    "ws_ref_get of a missing ref");
	ok(got == NULL, "missing ref gives NULL");

	rc = ws_snapshot(
	    wt, "refs/orch/tasks/1", head, "step 1", &c1, &note, NULL, &cause);
	is_int(rc, 0, "ws_snapshot");
	if (rc != 0)
		printf("#   %s\n", cause);
	ok(c1 != NULL && strlen(c1) == 40 && strcmp(c1, head) != 0,
	    "snapshot made a new commit");
	s = out("git -C repo rev-parse refs/orch/tasks/1");
	is_str(s, c1, "refs/orch/tasks/1 points at the snapshot");
	free(s);
	s = out("git -C repo rev-parse %s^", c1);
	is_str(s, head, "snapshot's parent is the base");
	free(s);
	s = out("git -C repo ls-tree -r --name-only %s | tr '\\n' ' '", c1);
	is_str(s, ".gitignore a.txt sub/c.txt u.txt ",
	    "snapshot tree: modified, deleted, untracked, not ignored");
	free(s);
	s = out("git -C repo show %s:a.txt", c1);
	is_str(s, "one modified", "snapshot has the modified content");
	free(s);
	s = out("git -C repo log -1 --format=%%an/%%ae/%%s %s", c1);
	is_str(s, "orch-supervisor/orch@localhost/step 1",
	    "snapshot author and message");
	free(s);

	rc = ws_snapshot(
	    wt, "refs/orch/tasks/1", head, "step 2", &c1b, &note, NULL, &cause);
	is_int(rc, 0, "second snapshot");
	is_str(c1b, c1, "no change: same commit");

	is_int(
	    ws_ref_get(wt, "refs/orch/tasks/1", &got, &cause), 0, "ws_ref_get");
	is_str(got, c1, "ws_ref_get gives the snapshot");
	free(got);

	/* More changes, then back to the first snapshot. */
	put("state/worktrees/1/a.txt", "changed again\n");
	put("state/worktrees/1/u.txt", "untracked changed\n");
	put("state/worktrees/1/v.txt", "new\n");
	sh("rm state/worktrees/1/sub/c.txt && mkdir -p state/worktrees/1/w && "
	   "echo z >state/worktrees/1/w/z.txt && "
	   "mkdir state/worktrees/1/nested && git init -q "
	   "state/worktrees/1/nested");
	rc = ws_restore(wt, c1, &cause);
	is_int(rc, 0, "ws_restore");
	if (rc != 0)
		printf("#   %s\n", cause);
	ok(is_file("state/worktrees/1/a.txt", "one modified\n"),
	    "restore: tracked modified file back");
	ok(is_file("state/worktrees/1/sub/c.txt", "three\n"),
	    "restore: deleted file back");
	ok(is_file("state/worktrees/1/u.txt", "untracked\n"),
	    "restore: snapshot's untracked file back");
	ok(!exists("state/worktrees/1/b.txt"), "restore: b.txt stays deleted");
	ok(!exists("state/worktrees/1/v.txt") &&
	        !exists("state/worktrees/1/w") &&
	        !exists("state/worktrees/1/nested"),
	    "restore: files added since are gone");
	ok(is_file("state/worktrees/1/x.log", "ignored\n"),
	    "restore: ignored file left alone");

	put("state/worktrees/1/a.txt", "final\n");
	rc = ws_snapshot(
	    wt, "refs/orch/tasks/1", NULL, "step 3", &c2, &note, NULL, &cause);
	is_int(rc, 0, "snapshot after restore");
	s = out("git -C repo rev-parse %s^", c2 != NULL ? c2 : "none");
	is_str(s, c1, "its parent is the previous snapshot");
	free(s);

	/* Other refs: a new one starts at parent; others are refused. */
	{
		char *c3 = NULL;

		put("state/worktrees/1/a.txt", "racing\n");
		is_int(ws_snapshot(wt, "refs/orch/tasks/9", head, "m", &c3,
		           &note, NULL, &cause),
		    0, "snapshot on a new ref");
		free(c3);
		c3 = NULL;
		is_int(ws_snapshot(wt, "refs/orch/tasks/heads", NULL, "m", &c3,
		           &note, NULL, &cause),
		    -1, "snapshot of a missing ref without parent fails");
		free(cause);
		cause = NULL;
		is_int(ws_snapshot(wt, "refs/heads/main", head, "m", &c3, &note,
		           NULL, &cause),
		    -1, "snapshot ref outside refs/orch/ refused");
		free(cause);
		cause = NULL;
		put("state/worktrees/1/a.txt", "final\n");
	}

	rc = ws_diffstat(wt, head, c2, &diff, &cause);
	is_int(rc, 0, "ws_diffstat");
	ok(diff != NULL && strstr(diff, "a.txt") != NULL &&
	        strstr(diff, "u.txt") != NULL,
	    "diffstat names the files");
	free(diff);
	rc = ws_diff(wt, head, c2, 1 << 20, &diff, &cause);
	is_int(rc, 0, "ws_diff");
	ok(diff != NULL && strstr(diff, "+final") != NULL,
	    "diff has the change");
	free(diff);
	rc = ws_diff(wt, head, c2, 40, &diff, &cause);
	is_int(rc, 0, "ws_diff cut");
	ok(diff != NULL && strstr(diff, "bytes of the diff left out") != NULL &&
	        strlen(diff) < 120,
	    "cut diff has the note");
	free(diff);

	rc = ws_squash(wt, "orch/task-1", head, c2, "request\n\nsummary", &sq,
	    NULL, &cause);
	is_int(rc, 0, "ws_squash");
	if (rc != 0)
		printf("#   %s\n", cause);
	s = out("git -C repo rev-parse refs/heads/orch/task-1");
	is_str(s, sq, "branch orch/task-1 set");
	free(s);
	s = out(
	    "git -C repo rev-list --count %s..refs/heads/orch/task-1", head);
	is_str(s, "1", "one commit on top of the base");
	free(s);
	s = out("git -C repo rev-parse refs/heads/orch/task-1^");
	is_str(s, head, "its parent is the base");
	free(s);
	s = out("git -C repo rev-parse refs/heads/orch/task-1^{tree}");
	got = out("git -C repo rev-parse %s^{tree}", c2);
	is_str(s, got, "its tree is the snapshot's");
	free(s);
	free(got);
	s = out("git -C repo log -1 --format=%%B refs/heads/orch/task-1");
	is_str(s, "request\n\nsummary", "squash message");
	free(s);
	is_int(ws_squash(wt, "main", head, c2, "m", &got, NULL, &cause), -1,
	    "squash onto a user branch refused");
	free(cause);
	cause = NULL;

	/* The user's repository. */
	s = out("git -C repo symbolic-ref HEAD");
	is_str(s, "refs/heads/main", "user's HEAD still on main");
	free(s);
	s = out("git -C repo rev-parse HEAD");
	is_str(s, head, "user's HEAD commit unchanged");
	free(s);
	s = out("sha256sum repo/.git/index");
	is_str(s, index_sum, "user's index file untouched");
	free(s);
	s = out("git -C repo status --porcelain");
	is_str(s, "", "user's index and working tree clean");
	free(s);
	s = out("git -C repo for-each-ref --format='%%(refname) "
	        "%%(objectname)' refs/heads | grep -v refs/heads/orch/");
	is_str(s, branches, "user's branches unchanged");
	free(s);
	ok(!exists("hook-ran"), "no hook ran");

	/* Removal keeps the refs; a stale registration is recreated. */
	is_int(ws_remove(repo, wt, &cause), 0, "ws_remove");
	ok(!exists("state/worktrees/1"), "worktree directory removed");
	s = out("git -C repo rev-parse refs/orch/tasks/1 "
	        "refs/heads/orch/task-1 | tr '\\n' ' '");
	got = xasprintf("%s %s ", c2, sq);
	is_str(s, got, "refs stay");
	free(s);
	free(got);
	s = out("git -C repo worktree list --porcelain | grep -c ^worktree");
	is_str(s, "1", "worktree unregistered");
	free(s);
	is_int(ws_remove(repo, wt, &cause), 0, "ws_remove of a missing dir");

	is_int(ws_create(repo, wt, c1, &cause), 1, "ws_create from a snapshot");
	ok(is_file("state/worktrees/1/u.txt", "untracked\n"),
	    "new worktree has the snapshot's files");
	sh("rm -rf state/worktrees/1");
	rc = ws_create(repo, wt, c2, &cause);
	is_int(rc, 1, "ws_create over a stale registration");
	if (rc != 1)
		printf("#   %s\n", cause);
	ok(is_file("state/worktrees/1/a.txt", "final\n"),
	    "recreated worktree has the files");
	is_int(ws_remove(repo, wt, &cause), 0, "ws_remove again");
	ok(!exists("hook-ran"), "still no hook ran");

	sh("GIT_CONFIG_COUNT=0 git -C repo update-ref refs/orch/control HEAD");
	ok(exists("hook-ran"), "control: the planted hooks run for plain git");

	/* Errors. */
	notrepo = xasprintf("%s/notrepo", tmp);
	mkdir(notrepo, 0755);
	cause = NULL;
	rc = ws_create(notrepo, wt, head, &cause);
	is_int(rc, -1, "ws_create from a non-repository fails");
	ok(cause != NULL &&
	        strstr(cause, "git worktree add failed (exit") == cause,
	    "with a cause");
	if (cause != NULL)
		printf("#   cause: %s\n", cause);
	free(cause);
	cause = NULL;
	is_int(ws_ref_get(notrepo, "refs/orch/tasks/1", &got, &cause), -1,
	    "ws_ref_get in a non-repository fails");
	ok(cause != NULL && strstr(cause, "is not a worktree") != NULL,
	    "with a cause: git never runs on a directory ws_create did not "
	    "check");
	free(cause);
	cause = NULL;
	is_int(ws_restore(notrepo, head, &cause), -1,
	    "ws_restore in a non-repository fails");
	free(cause);
	cause = NULL;
	is_int(ws_create(repo, wt, "--orphan", &cause), -1,
	    "an option-like commit is refused");
	free(cause);
	cause = NULL;
	is_int(ws_create(repo, wt, "0123456789012345678901234567890123456789",
	           &cause),
	    -1, "a missing commit fails");
	free(cause);
	cause = NULL;

	test_leftovers();
	test_worktrees_lock(repo, head);
	unsetenv("GIT_DIR");
	unsetenv("GIT_INDEX_FILE");
	unsetenv("GIT_WORK_TREE");
	test_hostile_config();
	test_left_out();
	test_slow();
	test_results();
	test_stale();
	sh("rm -rf %s", tmp);
	free(head);
	free(branches);
	free(index_sum);
	free(c1);
	free(c1b);
	free(c2);
	free(sq);
	free(repo);
	free(wt);
	free(notrepo);
	return tap_done();
}
