/*
 * Retention: for finished tasks (completed, failed, cancelled) last
 * updated at least DAYS ago, remove the git worktree the stages worked in,
 * the event log, the step journal and the audit files.  The task row, its
 * checkpoints and usage stay (they are the summary `show` and `stats`
 * print), and so do the git refs (refs/orch/tasks/ID, orch/task-ID): the
 * result lives on in the user's repository.  Then VACUUM, so that the file
 * shrinks and a steady load does not grow it without bound.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "supervisor.h"

struct gc_run {
	struct store *st;
	int64_t tasks, events, journal, worktrees;
	char *err;
};

static int
gc_rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path) == -1 ? -1 : 0;
	return unlink(path) == -1 ? -1 : 0;
}

/*
 * Remove one task's worktree: `git worktree remove --force` in its
 * repository, so that git forgets it too; when the repository is gone or
 * git refuses, the directory goes by hand and `git worktree prune` tidies
 * the registration.  Branches and refs are not touched.
 */
static int
gc_worktree(const struct task *t)
{
	char *dir = xasprintf(
	    "%s/worktrees/task-%lld", cfg.state_dir, (long long)t->id);
	struct stat sb;
	int rc = 0;

	if (lstat(dir, &sb) == -1) {
		free(dir);
		return 0;
	}
	if (t->repo != NULL) {
		char *const rm[] = {(char *)"git", (char *)"-C", t->repo,
		    (char *)"worktree", (char *)"remove", (char *)"--force",
		    dir, NULL};
		rc = run_quiet(rm);
	}
	if (t->repo == NULL || rc != 0 || lstat(dir, &sb) == 0) {
		if (nftw(dir, gc_rm_cb, 16, FTW_DEPTH | FTW_PHYS) == -1 &&
		    errno != ENOENT)
			log_warn("gc: removing %s", dir);
		if (t->repo != NULL) {
			char *const prune[] = {(char *)"git", (char *)"-C",
			    t->repo, (char *)"worktree", (char *)"prune", NULL};
			run_quiet(prune);
		}
	}
	free(dir);
	return 1;
}

static int
gc_task_cb(const struct task *t, void *arg)
{
	struct gc_run *g = arg;
	int64_t ev, jr;

	g->worktrees += gc_worktree(t);
	if (store_gc_task(g->st, t->id, &ev, &jr) == -1) {
		g->err = xstrdup(store_error(g->st));
		return 1;
	}
	audit_remove(t->id);
	if (ev > 0 || jr > 0)
		g->tasks++;
	g->events += ev;
	g->journal += jr;
	return 0;
}

static int64_t
gc_file_size(const char *path)
{
	struct stat sb;
	char *wal = xasprintf("%s-wal", path);
	int64_t n = 0;

	if (stat(path, &sb) == 0)
		n += sb.st_size;
	if (stat(wal, &sb) == 0)
		n += sb.st_size;
	free(wal);
	return n;
}

int
gc_run(struct store *st, unsigned days, json_t **report, char **err)
{
	struct gc_run g;
	int64_t before = gc_file_size(cfg.db_path);

	memset(&g, 0, sizeof g);
	g.st = st;
	*report = NULL;
	if (store_gc_candidates(st, days, gc_task_cb, &g) == -1) {
		*err = xstrdup(store_error(st));
		return -1;
	}
	if (g.err != NULL) {
		*err = g.err;
		return -1;
	}
	if (store_vacuum(st) == -1) {
		*err = xstrdup(store_error(st));
		return -1;
	}
	*report = json_pack("{s:i,s:I,s:I,s:I,s:I,s:I,s:I}", "older_than_days",
	    (int)days, "tasks", (json_int_t)g.tasks, "events",
	    (json_int_t)g.events, "journal", (json_int_t)g.journal, "worktrees",
	    (json_int_t)g.worktrees, "db_bytes_before", (json_int_t)before,
	    "db_bytes_after", (json_int_t)gc_file_size(cfg.db_path));
	return 0;
}
