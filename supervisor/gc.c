/*
 * Retention: for finished tasks (completed, failed, cancelled) last
 * updated at least DAYS ago, remove the git worktree the stages worked in,
 * the hidden snapshot ref (refs/orch/tasks/ID: it keeps every file the
 * task ever wrote, deleted ones too), the event log, the step journal and
 * the audit files.  The task row, its checkpoints and usage stay (they are
 * the summary `show` and `stats` print), and so does the result branch
 * orch/task-ID: the result lives on in the user's repository.  Then
 * VACUUM, so that the file shrinks and a steady load does not grow it
 * without bound.
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
#include "audit.h"
#include "config.h"
#include "gc.h"
#include "store.h"
#include "task.h"

struct gc_repo {
	char *repo;
	char *refs; /* "NAME\0HASH\0STATE-IDS\n"... of refs/orch/tasks/ */
	size_t len;
};

struct gc_run {
	struct store *st;
	char *state_id;
	struct gc_repo *repos;
	size_t nrepos;
	int64_t tasks, events, journal, worktrees, refs;
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

/* The snapshot refs of one repository: "NAME\0HASH\0STATE-IDS\n"... */
static const char *
gc_repo_refs(struct gc_run *g, const char *repo, size_t *len)
{
	static const char format[] =
	    "--format=%(refname)%00%(objectname)%00"
	    "%(contents:trailers:key=Orch-State,valueonly,separator=%x2C)";
	const char *args[] = {
	    "-C", repo, "for-each-ref", format, "refs/orch/tasks/", NULL};
	struct git_opts o = {0};
	struct buf out;
	struct git_status gs;
	char *cause = NULL;

	for (size_t i = 0; i < g->nrepos; i++) {
		if (strcmp(g->repos[i].repo, repo) == 0) {
			*len = g->repos[i].len;
			return g->repos[i].refs;
		}
	}
	o.outmax = 64 * 1024 * 1024;
	if (git_run(&o, args, &out, &gs, &cause) == -1) {
		log_warnx("gc: %s", cause);
		free(cause);
		out.len = 0;
	}
	g->repos = xrealloc(g->repos, (g->nrepos + 1) * sizeof *g->repos);
	g->repos[g->nrepos].repo = xstrdup(repo);
	g->repos[g->nrepos].refs = out.buf;
	g->repos[g->nrepos].len = out.len;
	*len = out.len;
	return g->repos[g->nrepos++].refs;
}

/* Delete ref in the task's repository if it still points at hash. */
static int
gc_delete(const struct task *t, const char *ref, const char *hash)
{
	const char *args[] = {"-C", t->repo, "update-ref", "-m",
	    "orch-supervisor gc", "-d", ref, hash, NULL};
	struct git_opts o = {0};
	struct buf out;
	struct git_status gs;
	char *cause = NULL;
	int rc;

	if ((rc = git_run(&o, args, &out, &gs, &cause)) == -1) {
		log_warnx("gc: task %lld: %s", (long long)t->id, cause);
		free(cause);
	}
	free(out.buf);
	return rc == 0;
}

/* Whether a comma-separated list of state ids holds id. */
static int
gc_has_id(const char *list, const char *id)
{
	size_t n = strlen(id);

	for (const char *p = list; *p != '\0'; p += strcspn(p, ",")) {
		if (*p == ',')
			p++;
		if (strncmp(p, id, n) == 0 && (p[n] == ',' || p[n] == '\0'))
			return 1;
	}
	return 0;
}

/*
 * Delete the task's snapshot ref, under either name a worker may have
 * given it, when its commit says it is this state directory's (the
 * trailer "Orch-State: ID"): a ref of the same name another state
 * directory made, or one made before commits carried the trailer, stays.
 * One for-each-ref per repository, however many tasks.  Returns how many
 * refs went.
 */
static int
gc_refs(struct gc_run *g, const struct task *t)
{
	char *names[2];
	const char *refs;
	size_t len;
	int n = 0;

	if (t->repo == NULL || g->state_id == NULL)
		return 0;
	refs = gc_repo_refs(g, t->repo, &len);
	names[0] = xasprintf("refs/orch/tasks/%lld", (long long)t->id);
	names[1] = xasprintf("%s-%.12s", names[0], g->state_id);
	for (size_t i = 0; i < nitems(names); i++) {
		size_t nl = strlen(names[i]);

		for (const char *p = refs; p < refs + len;) {
			const char *end =
			    memchr(p, '\n', (size_t)(refs + len - p));
			const char *stop = end != NULL ? end : refs + len;
			const char *hash, *ids;

			if ((size_t)(stop - p) > nl + 1 &&
			    memcmp(p, names[i], nl) == 0 && p[nl] == '\0') {
				hash = p + nl + 1;
				ids = hash + strlen(hash) + 1;
				if (ids < stop) {
					char *h = xstrdup(hash);
					char *idl =
					    xstrndup(ids, (size_t)(stop - ids));

					if (gc_has_id(idl, g->state_id))
						n += gc_delete(t, names[i], h);
					free(h);
					free(idl);
				}
			}
			p = stop + (end != NULL);
		}
	}
	free(names[0]);
	free(names[1]);
	return n;
}

static int
gc_task_cb(const struct task *t, void *arg)
{
	struct gc_run *g = arg;
	struct task local = *t;
	int64_t ev, jr;

	/* A task of an origin: its worktree and refs are in the mirror
	 * (the origin's copies of its refs are left to their owner). */
	local.repo = task_repo_dir(t->repo);
	g->worktrees += gc_worktree(&local);
	g->refs += gc_refs(g, &local);
	free(local.repo);
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
gc_run(struct store *st, unsigned days, json_t **report, char **cause)
{
	struct gc_run g;
	int64_t before = gc_file_size(cfg.db_path);

	memset(&g, 0, sizeof g);
	g.st = st;
	*report = NULL;
	if (store_state_id(st, &g.state_id) == -1)
		log_warnx(
		    "gc: no state id, snapshot refs stay: %s", store_error(st));
	if (store_gc_candidates(st, days, gc_task_cb, &g) == -1 &&
	    g.err == NULL)
		g.err = xstrdup(store_error(st));
	free(g.state_id);
	for (size_t i = 0; i < g.nrepos; i++) {
		free(g.repos[i].repo);
		free(g.repos[i].refs);
	}
	free(g.repos);
	if (g.err != NULL) {
		*cause = g.err;
		return -1;
	}
	if (store_vacuum(st) == -1) {
		*cause = xstrdup(store_error(st));
		return -1;
	}
	*report = json_pack("{s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
	    "older_than_days", (int)days, "tasks", (json_int_t)g.tasks,
	    "events", (json_int_t)g.events, "journal", (json_int_t)g.journal,
	    "worktrees", (json_int_t)g.worktrees, "refs", (json_int_t)g.refs,
	    "db_bytes_before", (json_int_t)before, "db_bytes_after",
	    (json_int_t)gc_file_size(cfg.db_path));
	return 0;
}
