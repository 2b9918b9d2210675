/*
 * worker/confine.c: a child confined as a planning worker (a fake state
 * directory holding tasks.db and the worktrees, a real git repository
 * beside it) cannot reach the database, the logs or the backups by any
 * path, and can still do all the worker does: run git on the repository
 * and the worktree, exec programs, read the script, append to the trace.
 *
 * The child prints the TAP; the parent only prepares the files and waits.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "tap.h"
#include "worker.h"

static char base[4096];
static int unconfined_ok; /* set before the confined child forks */

static void
put(const char *rel, const char *text)
{
	char *p = xasprintf("%s/%s", base, rel);
	FILE *f = fopen(p, "w");

	if (f == NULL || fputs(text, f) == EOF || fclose(f) == EOF) {
		printf("Bail out! cannot write %s: %s\n", p, strerror(errno));
		exit(1);
	}
	free(p);
}

static void
sh(const char *fmt, const char *arg)
{
	char *cmd = xasprintf(fmt, arg, arg, arg, arg);

	if (system(cmd) != 0) {
		printf("Bail out! failed: %s\n", cmd);
		exit(1);
	}
	free(cmd);
}

/* open(rel) fails with EACCES. */
static int
denied(const char *rel, int flags)
{
	char *p = xasprintf("%s/%s", base, rel);
	int fd = open(p, flags | O_CLOEXEC, 0600), e = errno;

	free(p);
	if (fd != -1) {
		close(fd);
		printf("#   %s: opened\n", rel);
		return 0;
	}
	if (e != EACCES)
		printf("#   %s: %s\n", rel, strerror(e));
	return e == EACCES;
}

static int
readable(const char *rel)
{
	char *p = xasprintf("%s/%s", base, rel), buf[64];
	int fd = open(p, O_RDONLY | O_CLOEXEC), ok = 0;

	if (fd == -1)
		printf("#   %s: %s\n", rel, strerror(errno));
	else {
		ok = read(fd, buf, sizeof buf) >= 0;
		close(fd);
	}
	free(p);
	return ok;
}

static int
run(const char *fmt, const char *arg)
{
	char *cmd = xasprintf(fmt, arg, arg, arg, arg);
	int rc = system(cmd);

	if (rc != 0)
		printf("#   \"%s\": status %d\n", cmd, rc);
	free(cmd);
	return rc == 0;
}

/* The START of a worker of task 1 (the settings confinement reads). */
static void
start_data(struct msg_start *s)
{
	memset(s, 0, sizeof *s);
	s->worktree = xasprintf("%s/state/worktrees/task-1", base);
	s->repo = xasprintf("%s/repo", base);
	s->llm_script = xasprintf("%s/script.json", base);
	s->llm_trace = xasprintf("%s/trace", base);
}

static int
child_confined(void)
{
	struct msg_start cfg;
	char *p;
	DIR *d;
	int fd, rc, abi = confine_abi();

	start_data(&cfg);
	confine_worker(&cfg, NULL); /* planning: no sandbox profile */
	msg_start_clear(&cfg);

	ok(denied("state/tasks.db", O_RDONLY), "tasks.db cannot be opened");
	ok(denied("state/tasks.db", O_WRONLY),
	    "tasks.db cannot be opened for writing");
	ok(denied("state/worktrees/task-1/../../tasks.db", O_RDONLY),
	    "nor through ../../ from the worktree");
	ok(denied("link-to-db", O_RDONLY),
	    "nor through a symlink planted beside the state directory");
	ok(denied("state/tasks.db-wal", O_RDONLY), "nor its WAL");
	ok(denied("state/backups/tasks-1.db", O_RDONLY), "nor a backup");
	ok(denied("state/logs/service.log", O_RDONLY), "nor a log");
	ok(denied("state/.env", O_RDONLY), "nor a .env in the state directory");
	ok(denied("state/new-file", O_WRONLY | O_CREAT),
	    "no file can be created in the state directory");
	p = xasprintf("%s/state", base);
	d = opendir(p);
	ok(d == NULL && errno == EACCES,
	    "the state directory cannot be listed");
	if (d != NULL)
		closedir(d);
	ok(rename(p, "/tmp/orch-confine-stolen") == -1,
	    "the state directory cannot be moved away");
	free(p);
	if (access("/var/lib", F_OK) == 0) {
		fd = open("/var/lib", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		ok(fd == -1 && errno == EACCES,
		    "a system directory outside the list (/var/lib) is closed");
		if (fd != -1)
			close(fd);
	}

	ok(run("git -C %s/repo worktree add -q --detach --force -- "
	       "%s/state/worktrees/task-1 HEAD",
	       base),
	    "git worktree add creates the worktree in the state directory");
	put("state/worktrees/task-1/new.txt", "new\n");
	ok(readable("state/worktrees/task-1/new.txt"),
	    "files in the worktree can be written and read");
	ok(run("cd %s/state/worktrees/task-1 && git add -A && "
	       "t=$(git write-tree) && c=$(git commit-tree -m snap -p HEAD $t) "
	       "&& git update-ref refs/orch/tasks/1 $c",
	       base),
	    "a snapshot commit and its ref are written");
	ok(run("test \"$(git -C %s/repo show refs/orch/tasks/1:new.txt)\" = "
	       "new",
	       base),
	    "the repository has the snapshot");
	ok(readable("repo/README.md"), "the repository is readable");
	ok(readable("other.txt"),
	    "a file beside the state directory is readable");
	ok(readable("script.json"), "the scripted model's script is readable");
	p = xasprintf("%s/trace", base);
	fd = open(p, O_WRONLY | O_APPEND | O_CLOEXEC);
	ok(fd != -1 && write(fd, "x\n", 2) == 2,
	    "the trace file can be appended to");
	if (fd != -1)
		close(fd);
	free(p);
	ok(system("/bin/true") == 0, "/bin/true can be executed");
	ok(system("git --version >/dev/null") == 0, "git --version runs");
	fd = open("/etc/resolv.conf", O_RDONLY | O_CLOEXEC);
	ok(fd != -1 || errno == ENOENT, "/etc/resolv.conf is readable (DNS)");
	if (fd != -1)
		close(fd);

	if (abi >= 6)
		ok(kill(getppid(), 0) == -1 && errno == EPERM,
		    "the parent outside the domain cannot be signalled (ABI "
		    "6)");

	ok(unconfined_ok, "a worker of the implementing stage is not confined "
	                  "(it runs bubblewrap)");
	/*
	 * Why implementing and verifying stay unconfined: bubblewrap must
	 * mount, and a process in a Landlock domain may not.  If this ever
	 * starts to pass, those stages can be confined too.
	 */
	{
		char *cause = NULL;

		ok(sandbox_check(&cause) == -1,
		    "bubblewrap cannot create a sandbox inside the domain");
		free(cause);
	}
	rc = tap_done();
	fflush(stdout);
	return rc;
}

/* The stages that run bubblewrap are left alone. */
static int
child_unconfined(void)
{
	struct msg_start cfg;
	char *p = xasprintf("%s/state/tasks.db", base);
	int fd;

	start_data(&cfg);
	confine_worker(&cfg, "implementing");
	msg_start_clear(&cfg);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	free(p);
	if (fd != -1)
		close(fd);
	return fd != -1 ? 0 : 1;
}

static int
wait_child(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) == -1)
		if (errno != EINTR)
			return -1;
	if (WIFSIGNALED(st)) {
		printf("Bail out! the confined child died of signal %d\n",
		    WTERMSIG(st));
		return -1;
	}
	return WEXITSTATUS(st);
}

int
main(void)
{
	const char *tmp = getenv("TMPDIR");
	char *home;
	pid_t pid;
	int rc;

	log_init("test-confine", LOG_LEVEL_WARN);
	if (confine_abi() < 2) {
		printf("1..0 # SKIP Landlock (ABI 2 or later) is not available "
		       "here\n");
		return 0;
	}
	snprintf(base, sizeof base, "%s/orch-confine.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(base) == NULL) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	home = xasprintf("%s/home", base);
	setenv("HOME", home, 1);
	sh("mkdir -p %s/state/worktrees %s/state/logs %s/state/backups "
	   "%s/home",
	    base);
	put("state/tasks.db", "SQLite format 3\nDB-CANARY\n");
	put("state/tasks.db-wal", "WAL-CANARY\n");
	put("state/backups/tasks-1.db", "BACKUP-CANARY\n");
	put("state/logs/service.log", "LOG-CANARY\n");
	put("state/.env", "SECRET=ENV-CANARY\n");
	put("other.txt", "beside\n");
	put("script.json", "{}\n");
	put("home/.gitconfig", "[user]\n\tname = t\n\temail = t@t\n");
	sh("ln -s state/tasks.db %s/link-to-db", base);
	sh("mkdir %s/repo && cd %s/repo && git init -q -b main && "
	   "echo hi >README.md && git add -A && git commit -qm init",
	    base);

	/* First the stage that must stay unconfined (no TAP of its own). */
	fflush(stdout);
	if ((pid = fork()) == 0)
		_exit(child_unconfined());
	unconfined_ok = wait_child(pid) == 0;

	fflush(stdout);
	if ((pid = fork()) == 0)
		_exit(child_confined());
	rc = wait_child(pid);
	sh("rm -rf %s", base);
	free(home);
	return rc == 0 ? 0 : 1;
}
