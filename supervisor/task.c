/*
 * Operations on one task that both the service (control API) and the CLI
 * (when no service runs) perform.  Each is one transaction.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "metrics.h"
#include "store.h"
#include "price.h"
#include "task.h"

static const char *
task_start_checkpoint(enum wstate state)
{
	switch (state) {
	case WS_PLANNING:
		return "start_planning";
	case WS_IMPLEMENTING:
		return "start_implementation";
	case WS_REVIEWING:
		return "start_review";
	case WS_VERIFYING:
		return "start_verification";
	default:
		return NULL;
	}
}

/*
 * The facts of a snapshot checkpoint the worker sent (untrusted): its
 * step and commit, when they are what they should be.
 */
static void
task_snapshot_facts(const char *data, json_t *d, char **more)
{
	json_t *j = data != NULL ? json_loads(data, 0, NULL) : NULL;
	const char *commit = json_string_value(json_object_get(j, "commit"));
	json_t *step = json_object_get(j, "step");

	*more = NULL;
	if (commit != NULL && strlen(commit) == 40 &&
	    strspn(commit, "0123456789abcdef") == 40 && json_is_integer(step) &&
	    json_integer_value(step) > 0 &&
	    json_integer_value(step) < INT32_MAX) {
		json_object_set_new(d, "commit", json_string(commit));
		json_object_set(d, "step", step);
		*more = xasprintf(" (step %lld, commit %.12s)",
		    (long long)json_integer_value(step), commit);
	}
	json_decref(j);
}

int
task_checkpoint(struct store *st, int64_t task, const char *stage,
    const char *name, const char *data)
{
	char *clean, *more = NULL, *text;
	json_t *d;
	int rc;

	if (store_checkpoint_add(st, task, name, data) == -1)
		return -1;
	clean = utf8_fix(name, NULL);
	d = json_pack("{s:s}", "checkpoint", clean);
	if (strcmp(name, "snapshot") == 0)
		task_snapshot_facts(data, d, &more);
	text = xasprintf(
	    "checkpoint saved: %s%s", clean, more != NULL ? more : "");
	rc = store_event_add_data(st, task, EV_CHECKPOINT, stage, text, d);
	json_decref(d);
	free(text);
	free(more);
	free(clean);
	return rc;
}

int
task_enter(struct store *st, const struct task *t, enum wstate state,
    int new_run, const char *why)
{
	const char *cp = task_start_checkpoint(state);
	char *text;
	int rc;

	if (store_task_set_state(st, t->id, state) == -1)
		return -1;
	if (cp != NULL && new_run) {
		int64_t run = t->ival[TI_STAGE_RUN] + 1;
		char *data = xasprintf("{\"run\":%lld}", (long long)run);

		rc = store_task_set_int(st, t->id, TI_STAGE_RUN, run);
		if (rc == 0)
			rc = store_task_set_int(st, t->id, TI_STAGE_RETRIES, 0);
		if (rc == 0)
			rc = task_checkpoint(
			    st, t->id, wstate_stage(state), cp, data);
		free(data);
		if (rc == -1)
			return -1;
	}
	text = xasprintf("%s -> %s%s%s", wstate_name(t->state),
	    wstate_name(state), why != NULL ? ": " : "", why ? why : "");
	rc = store_event_add_state(st, t->id, state, wstate_stage(state), text);
	free(text);
	return rc;
}

/*
 * Run git (argv[0] is "git") through common/git.c, as the worker does: no
 * global or system configuration, hooks, fsmonitor or pager.  Returns
 * git's exit status, or -1 when it did not exit.
 */
int
run_quiet(char *const argv[])
{
	struct git_opts o = {0};
	struct buf out;
	struct git_status gs;
	char *cause = NULL;

	if (argv[0] == NULL || strcmp(argv[0], "git") != 0)
		fatalx("%s: %s is not git", __func__, argv[0]);
	if (git_run(&o, (const char *const *)argv + 1, &out, &gs, &cause) ==
	    -1) {
		log_debug("%s", cause);
		free(cause);
	}
	free(out.buf);
	return gs.exit;
}

/* Run git with argv, capturing the first line of stdout; 0 on exit 0. */
static int
task_git(char *const argv[], char **line)
{
	struct git_opts o = {0};
	struct git_status gs;
	char *cause = NULL;

	if (git_line(&o, (const char *const *)argv + 1, line, &gs, &cause) == 0)
		return 0;
	free(cause);
	return -1;
}

/* The result commit of the task's last implementation, or NULL. */
static int
task_diff_cp(const struct checkpoint *cp, void *arg)
{
	char **commit = arg;
	json_t *j;

	if (strcmp(cp->name, "after_implementation") != 0 || cp->data == NULL)
		return 0;
	j = json_loads(cp->data, 0, NULL);
	if (json_is_string(json_object_get(j, "commit"))) {
		free(*commit);
		*commit =
		    xstrdup(json_string_value(json_object_get(j, "commit")));
	}
	json_decref(j);
	return 0;
}

int
task_diff(struct store *st, const struct task *t, size_t max, char **out,
    size_t *total, char **cause)
{
	char *commit = NULL, *gitcause = NULL, *repodir = NULL;
	struct git_opts o = {0};
	struct buf b;
	struct git_status gs;
	int rc = -1;

	*out = NULL;
	*total = 0;
	if (store_checkpoint_list(st, t->id, task_diff_cp, &commit) == -1) {
		*cause = xstrdup(store_error(st));
		return -1;
	}
	if (commit == NULL || t->repo == NULL || t->base_commit == NULL) {
		free(commit);
		*cause = xstrdup("the task has no implementation yet");
		return -1;
	}
	if (strspn(commit, "0123456789abcdef") != strlen(commit) ||
	    strspn(t->base_commit, "0123456789abcdef") !=
	        strlen(t->base_commit)) {
		free(commit);
		*cause = xstrdup("the task's commits are not commit ids");
		return -1;
	}
	/*
	 * The repository is the user's, the change a model's: no colour, no
	 * external diff or textconv driver its attributes could name (the
	 * runner already ignores global and system configuration).
	 */
	const char *args[] = {"diff", "--no-color", "--no-ext-diff",
	    "--no-textconv", t->base_commit, commit, "--", NULL};
	if ((repodir = task_repo_dir(t->repo)) == NULL) {
		free(commit);
		*cause = xasprintf("%s: no mirror", t->repo);
		return -1;
	}
	o.dir = repodir;
	o.outmax = max;
	if (git_run(&o, args, &b, &gs, &gitcause) == 0) {
		*out = b.buf;
		*total = b.total;
		b.buf = NULL;
		rc = 0;
	} else {
		*cause = xasprintf("git diff %.12s %.12s failed in %s: %s",
		    t->base_commit, commit, t->repo, gitcause);
		free(gitcause);
	}
	free(b.buf);
	free(commit);
	free(repodir);
	return rc;
}

char *
task_repo_dir(const char *repo)
{
	char *url, *branch, *cause = NULL, *mirror = NULL;

	if (repo == NULL || !origin_is_url(repo))
		return repo != NULL ? xstrdup(repo) : NULL;
	if (origin_parse(repo, &url, &branch, &cause) == 0)
		mirror = origin_mirror(cfg.state_dir, url, &cause);
	if (mirror == NULL) {
		log_warnx("%s: %s", repo, cause);
		free(cause);
	}
	free(url);
	free(branch);
	return mirror;
}

/*
 * An origin: checked, its mirror fetched (made the first time), and the
 * base commit read from the mirror: the origin's HEAD or the #BRANCH.
 * The task keeps the URL (with its #BRANCH) as its repository.
 */
static int
task_check_origin(const char *repo, char **abs, char **head, char **cause)
{
	char *url, *branch, *mirror, *why;
	int permanent, rc = -1;

	if (origin_parse(repo, &url, &branch, &why) == -1) {
		*cause = why;
		return -1;
	}
	/* git's own message would be cut, and read as transient. */
	if (strncmp(url, "file://", 7) == 0 && access(url + 7, F_OK) == -1) {
		*cause = xasprintf("--repo: there is no repository at %s: %s",
		    url + 7, strerror(errno));
		free(url);
		free(branch);
		return -1;
	}
	if ((mirror = origin_mirror(cfg.state_dir, url, &why)) == NULL) {
		*cause = xasprintf("--repo %s: %s", url, why);
		free(why);
	} else if (origin_sync(mirror, url, branch, head, &permanent, &why) ==
	           -1) {
		*cause = xasprintf("--repo: cannot fetch %s", why);
		free(why);
	} else {
		*abs = xstrdup(repo);
		rc = 0;
	}
	free(mirror);
	free(url);
	free(branch);
	return rc;
}

/*
 * The top of the repository's working tree, its git directory and the
 * commit of HEAD, from one git: rev-parse prints one line for each (in
 * that order), and exits 1 when HEAD has no commit (-q --verify), 128 when
 * real is in no working tree.  0, or -1 with *status git's exit status.
 */
static int
task_git_repo(
    const char *real, char **top, char **gitdir, char **head, int *status)
{
	const char *args[] = {"-C", real, "rev-parse", "--show-toplevel",
	    "--absolute-git-dir", "--verify", "-q", "HEAD^{commit}", NULL};
	struct git_opts o = {0};
	struct git_status gs;
	struct buf out;
	char *cause = NULL, *line[3], *p;
	size_t n = 0, h;

	*top = *gitdir = *head = NULL;
	o.outmax = 3 * (PATH_MAX + 2);
	if (git_run(&o, args, &out, &gs, &cause) == -1) {
		free(cause);
		free(out.buf);
		*status = gs.exit;
		return -1;
	}
	/* A path with a line break in it would shift the lines: refused. */
	for (p = out.buf; n < 3 && *p != '\0'; n++) {
		line[n] = p;
		p += strcspn(p, "\n");
		if (*p == '\n')
			*p++ = '\0';
	}
	h = n == 3 ? strspn(line[2], "0123456789abcdef") : 0;
	if (n != 3 || *p != '\0' || out.total > out.len ||
	    (h != 40 && h != 64) || line[2][h] != '\0') {
		free(out.buf);
		*status = -1;
		return -1;
	}
	*top = xstrdup(line[0]);
	*gitdir = xstrdup(line[1]);
	*head = xstrdup(line[2]);
	free(out.buf);
	return 0;
}

int
task_check_repo(const char *repo, char **abs, char **head, char **cause)
{
	char real[PATH_MAX], *out, *top, *gitdir;
	char *a_bare[] = {(char *)"git", (char *)"-C", real,
	    (char *)"rev-parse", (char *)"--is-bare-repository", NULL};
	static const char *const busy[] = {"MERGE_HEAD", "CHERRY_PICK_HEAD",
	    "REVERT_HEAD", "REBASE_HEAD", "rebase-merge", "rebase-apply"};
	int status = 0;

	*abs = *head = NULL;
	/*
	 * A URL, and what is no path but could be taken for an address or
	 * an option (user@host:path, ext::..., -x): the origin's checks say
	 * why it is refused.
	 */
	if (origin_is_url(repo) || repo[0] == '-' ||
	    (strchr(repo, ':') != NULL && access(repo, F_OK) == -1))
		return task_check_origin(repo, abs, head, cause);
	if (realpath(repo, real) == NULL) {
		*cause = xasprintf("--repo %s: %s", repo, strerror(errno));
		return -1;
	}
	if (task_git_repo(real, &top, &gitdir, head, &status) == -1 &&
	    status == 1) {
		*cause = xasprintf("--repo %s has no commits yet: commit "
		                   "something first",
		    repo);
		return -1;
	}
	if (status == -1 && top == NULL && strchr(real, '\n') != NULL) {
		*cause = xstrdup("--repo: a path with a line break is not "
		                 "supported");
		return -1;
	}
	if (top == NULL) {
		/* A bare repository is an origin, named by its path. */
		if (task_git(a_bare, &out) == 0 && strcmp(out, "true") == 0) {
			char *url = xasprintf("file://%s", real);
			int rc = task_check_origin(url, abs, head, cause);

			free(out);
			free(url);
			return rc;
		}
		free(out);
		*cause = xasprintf("--repo %s is not a git repository (run "
		                   "`git init` and commit, or give the right "
		                   "directory)",
		    repo);
		return -1;
	}
	for (size_t i = 0; i < nitems(busy); i++) {
		char *p = xasprintf("%s/%s", gitdir, busy[i]);
		struct stat sb;
		int found = lstat(p, &sb) == 0;

		free(p);
		if (found) {
			*cause = xasprintf("--repo %s is in the middle of a "
			                   "merge, rebase or cherry-pick (%s): "
			                   "finish or abort it first",
			    repo, busy[i]);
			free(top);
			free(gitdir);
			free(*head);
			*head = NULL;
			return -1;
		}
	}
	free(gitdir);
	*abs = top;
	return 0;
}

static int
task_fail_store(struct store *st, char **cause, int *code)
{
	*cause = xasprintf("database: %s", store_error(st));
	*code = 500;
	return -1;
}

/* Load task id in a write transaction; on error the transaction is over. */
static int
task_load(
    struct store *st, int64_t id, struct task **t, char **cause, int *code)
{
	if (store_begin(st) == -1)
		return task_fail_store(st, cause, code);
	if (store_task_get(st, id, t) == -1) {
		store_rollback(st);
		return task_fail_store(st, cause, code);
	}
	if (*t == NULL) {
		store_rollback(st);
		*cause = xasprintf(
		    "no task %lld (see `orch-supervisor list`)", (long long)id);
		*code = 404;
		return -1;
	}
	return 0;
}

static int
task_done(struct store *st, struct task *t, int rc, char **cause, int *code)
{
	task_free(t);
	if (rc == -1) {
		store_rollback(st);
		return task_fail_store(st, cause, code);
	}
	if (store_commit(st) == -1) {
		store_rollback(st);
		return task_fail_store(st, cause, code);
	}
	return 0;
}

/*
 * task_done for a person's answer at an approval gate (t is the task as it
 * waited): also records how long it waited, since the state change that
 * made it wait was its last update.
 */
static int
task_decided(struct store *st, struct task *t, int rc, char **cause, int *code)
{
	enum stage gate = t->state == WS_PLAN_AWAITING_APPROVAL
	                      ? STAGE_PLANNING
	                      : STAGE_IMPLEMENTING;
	char *since = t->updated_at != NULL ? xstrdup(t->updated_at) : NULL;

	rc = task_done(st, t, rc, cause, code);
	if (rc == 0)
		metrics_observe_approval(gate, since);
	free(since);
	return rc;
}

/*
 * A text a person gives a task (its request, a rejection's reason, who
 * approved): at most max bytes of UTF-8, since it goes into JSON (the API,
 * the model's conversation, the worker's START) as it is.  -1 with *err
 * (and *code 400) when not.
 */
int
task_check_text(
    const char *what, const char *s, size_t max, char **cause, int *code)
{
	size_t len = strlen(s);

	*code = 400;
	if (len > max) {
		*cause =
		    xasprintf("the %s is %zu bytes, over the limit of %zu: "
		              "shorten it%s",
		        what, len, max,
		        strcmp(what, "request") == 0
		            ? ", or point to a file in the repository"
		            : "");
		return -1;
	}
	if (!utf8_valid(s, len)) {
		*cause = xasprintf("the %s is not valid UTF-8: convert it "
		                   "(iconv -t UTF-8)",
		    what);
		return -1;
	}
	return 0;
}

int
task_submit(struct store *st, const struct task_new *tn, int64_t *id,
    char **cause, int *code)
{
	if (tn->request == NULL || *tn->request == '\0') {
		*cause = xstrdup("the request is empty: say what to change");
		*code = 400;
		return -1;
	}
	if (task_check_text(
	        "request", tn->request, TASK_MAX_REQUEST, cause, code) == -1)
		return -1;
	if ((tn->max_tokens < 0 || tn->max_cost < 0 || tn->max_cost > 1e9)) {
		*cause = xstrdup("a budget must be 0 (none) or more "
		                 "(--max-cost up to 1000000000)");
		*code = 400;
		return -1;
	}
	if (tn->max_cost > 0 && !price_known()) {
		*cause = xstrdup("a cost budget needs prices: set "
		                 "ORCH_LLM_PRICES, or give --max-tokens");
		*code = 400;
		return -1;
	}
	if (store_begin(st) == -1)
		return task_fail_store(st, cause, code);
	if (store_task_add(st, tn, id) == -1 ||
	    (tn->max_tokens > 0 && store_task_set_int(st, *id, TI_MAX_TOKENS,
	                               tn->max_tokens) == -1) ||
	    (tn->max_cost > 0 &&
	        store_task_set_int(st, *id, TI_MAX_COST_MICROS,
	            (int64_t)(tn->max_cost * 1e6 + 0.5)) == -1) ||
	    store_commit(st) == -1) {
		store_rollback(st);
		return task_fail_store(st, cause, code);
	}
	return 0;
}

/*
 * A task's budgets: its own, else the service's (0: none).  The cost one
 * counts only with prices (ORCH_LLM_PRICES).
 */
static uint64_t
task_budget_tokens(const struct task *t, const char **whose)
{
	*whose = t->ival[TI_MAX_TOKENS] > 0 ? "this task's budget"
	                                    : "ORCH_MAX_TOKENS";
	return t->ival[TI_MAX_TOKENS] > 0 ? (uint64_t)t->ival[TI_MAX_TOKENS]
	                                  : cfg.max_tokens;
}

static double
task_budget_cost(const struct task *t, const char **whose)
{
	*whose = t->ival[TI_MAX_COST_MICROS] > 0 ? "this task's budget"
	                                         : "ORCH_MAX_COST";
	return t->ival[TI_MAX_COST_MICROS] > 0
	           ? (double)t->ival[TI_MAX_COST_MICROS] / 1e6
	           : cfg.max_cost;
}

char *
task_over_budget(struct store *st, const struct task *t)
{
	const char *whose;
	uint64_t max = task_budget_tokens(t, &whose);
	int64_t used = t->tokens_in + t->tokens_out;
	double maxc, cost = 0;
	json_t *c;

	if (max > 0 && used >= 0 && (uint64_t)used >= max)
		return xasprintf("the token budget is reached: %lld tokens "
		                 "used, %s is %llu; raise it with "
		                 "`orch-supervisor approve %lld --budget N` "
		                 "(or cancel)",
		    (long long)used, whose, (unsigned long long)max,
		    (long long)t->id);
	maxc = task_budget_cost(t, &whose);
	if (maxc <= 0 || !price_known())
		return NULL;
	if ((c = task_cost_json(st, t->id)) != NULL) {
		cost = json_real_value(json_object_get(c, "total"));
		json_decref(c);
	}
	if (cost >= maxc)
		return xasprintf("the cost budget is reached: %.4f spent, %s "
		                 "is %.4f; raise it with `orch-supervisor "
		                 "approve %lld --max-cost X` (or cancel)",
		    cost, whose, maxc, (long long)t->id);
	return NULL;
}

enum tstatus
task_status(const struct task *t)
{
	return t->ival[TI_BUDGET_PAUSED] ? TS_AWAITING_APPROVAL
	                                 : wstate_status(t->state);
}

/*
 * Set the budgets a person gave (tokens 0, cost below 0: unchanged), in
 * the caller's transaction; t's copy too.
 */
static int
task_set_budget(struct store *st, struct task *t, int64_t tokens, double cost,
    char **cause, int *code)
{
	if (tokens < 0 || (cost >= 0 && (cost == 0 || cost > 1e9))) {
		*cause = xstrdup("a budget must be more than 0 (tokens: a "
		                 "whole number; cost: up to 1000000000)");
		*code = 400;
		return -1;
	}
	if (cost > 0 && !price_known()) {
		*cause = xstrdup("a cost budget needs prices: set "
		                 "ORCH_LLM_PRICES (or raise the token budget "
		                 "with --budget)");
		*code = 400;
		return -1;
	}
	if (tokens > 0) {
		if (store_task_set_int(st, t->id, TI_MAX_TOKENS, tokens) == -1)
			return task_fail_store(st, cause, code);
		t->ival[TI_MAX_TOKENS] = tokens;
	}
	if (cost > 0) {
		int64_t micros = (int64_t)(cost * 1e6 + 0.5);

		if (store_task_set_int(st, t->id, TI_MAX_COST_MICROS, micros) ==
		    -1)
			return task_fail_store(st, cause, code);
		t->ival[TI_MAX_COST_MICROS] = micros;
	}
	return 0;
}

/*
 * A task waiting at a budget goes on once a person raised it enough: the
 * same stage run, its journal replayed (no answered turn is asked again).
 */
static int
task_unpause(
    struct store *st, struct task *t, const char *by, char **cause, int *code)
{
	char *still = task_over_budget(st, t), *text;
	const char *w1, *w2;
	int rc;

	if (still != NULL) {
		*cause = xasprintf(
		    "task %lld still waits: %s", (long long)t->id, still);
		*code = 409;
		free(still);
		return -1;
	}
	uint64_t tok = task_budget_tokens(t, &w1);
	double cost = task_budget_cost(t, &w2);
	rc = store_task_set_int(st, t->id, TI_BUDGET_PAUSED, 0);
	if (rc == 0)
		rc = store_task_set_state(st, t->id, t->state);
	if (rc == -1)
		return task_fail_store(st, cause, code);
	char *money =
	    cost > 0 ? xasprintf(", cost budget %.4f", cost) : xstrdup("");
	text = xasprintf("budget raised by %s (token budget %llu%s): going on",
	    by, (unsigned long long)tok, money);
	rc = store_event_add_state(
	    st, t->id, t->state, wstate_stage(t->state), text);
	free(text);
	free(money);
	if (rc == -1)
		return task_fail_store(st, cause, code);
	return 0;
}

/*
 * A person's own version of the plan replaces the model's before the
 * approval, in the same transaction: the implementer is started from the
 * plan column, so it gets the edited text.  The checkpoint keeps the
 * model's plan and who edited it (the approval stamps when).
 */
static int
task_edit_plan(
    struct store *st, const struct task *t, const char *by, const char *plan)
{
	json_t *o;
	char *data, *why;
	int rc;

	if (t->text[TC_PLAN] != NULL && strcmp(t->text[TC_PLAN], plan) == 0)
		return 0;
	o = json_pack("{s:s,s:o}", "by", by, "model_plan",
	    task_json_text(t->text[TC_PLAN]));
	data = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	rc = store_task_set_text(st, t->id, TC_PLAN, plan);
	if (rc == 0)
		rc = store_checkpoint_add(st, t->id, "plan_edited", data);
	free(data);
	if (rc == 0) {
		why = xasprintf("plan edited by %s before approval (%zu bytes)",
		    by, strlen(plan));
		rc = store_event_add(st, t->id, EV_INFO, "planning", why);
		free(why);
	}
	return rc;
}

int
task_approve(struct store *st, int64_t id, const struct task_approval *a,
    char **cause, int *code)
{
	const char *by = a->by, *plan = a->plan;
	struct task *t;
	int rc;

	if (by != NULL && task_check_text("name (--by)", by, TASK_MAX_NAME,
	                      cause, code) == -1)
		return -1;
	if (plan != NULL) {
		if (*plan == '\0') {
			*cause = xstrdup("the edited plan is empty: give the "
			                 "plan to implement, or reject");
			*code = 400;
			return -1;
		}
		if (task_check_text(
		        "plan", plan, TASK_MAX_REQUEST, cause, code) == -1)
			return -1;
	}
	if (task_load(st, id, &t, cause, code) == -1)
		return -1;
	if (by == NULL || *by == '\0')
		by = getenv("USER") != NULL ? getenv("USER") : "unknown";
	if (plan != NULL && t->state != WS_PLAN_AWAITING_APPROVAL) {
		*cause = xasprintf("task %lld is %s: only a plan awaiting "
		                   "approval can be edited",
		    (long long)id, wstate_name(t->state));
		*code = 409;
		task_free(t);
		store_rollback(st);
		return -1;
	}
	if ((a->budget != 0 || a->max_cost >= 0) &&
	    task_set_budget(st, t, a->budget, a->max_cost, cause, code) == -1) {
		task_free(t);
		store_rollback(st);
		return -1;
	}
	if (t->ival[TI_BUDGET_PAUSED]) {
		if (task_unpause(st, t, by, cause, code) == -1) {
			task_free(t);
			store_rollback(st);
			return -1;
		}
		return task_done(st, t, 0, cause, code);
	}
	switch (t->state) {
	case WS_PLAN_AWAITING_APPROVAL:
		rc = plan != NULL ? task_edit_plan(st, t, by, plan) : 0;
		if (rc == 0)
			rc = store_task_stamp(st, id, TC_PLAN_APPROVED_AT);
		if (rc == 0)
			rc = store_task_set_text(
			    st, id, TC_PLAN_APPROVED_BY, by);
		if (rc == 0)
			rc = task_checkpoint(
			    st, id, NULL, "plan_approved", NULL);
		if (rc == 0)
			rc = task_enter(
			    st, t, WS_PLAN_APPROVED, 0, "plan approved");
		break;
	case WS_IMPLEMENTATION_AWAITING_APPROVAL: {
		/* After the review rounds ran out, a person's approval
		 * overrides the review. */
		int skip = t->ival[TI_REVIEW_ROUNDS] > cfg.max_review_rounds;

		rc = store_task_stamp(st, id, TC_IMPLEMENTATION_APPROVED_AT);
		if (rc == 0)
			rc = store_task_set_text(
			    st, id, TC_IMPLEMENTATION_APPROVED_BY, by);
		if (rc == 0)
			rc = task_checkpoint(
			    st, id, NULL, "implementation_approved", NULL);
		if (rc == 0)
			rc = task_enter(st, t,
			    skip ? WS_VERIFYING : WS_REVIEWING, 1,
			    "implementation approved");
		break;
	}
	default:
		*cause = xasprintf("task %lld is %s: only a task awaiting "
		                   "approval can be approved",
		    (long long)id, wstate_name(t->state));
		*code = 409;
		task_free(t);
		store_rollback(st);
		return -1;
	}
	return task_decided(st, t, rc, cause, code);
}

int
task_reject(struct store *st, int64_t id, const char *reason, const char *by,
    char **cause, int *code)
{
	struct task *t;
	int rc;
	char *fb, *why;

	if (reason == NULL || *reason == '\0') {
		*cause = xstrdup("reject needs --reason TEXT: say what to do "
		                 "differently");
		*code = 400;
		return -1;
	}
	if (task_check_text("reason", reason, TASK_MAX_REASON, cause, code) ==
	        -1 ||
	    (by != NULL && task_check_text("name (--by)", by, TASK_MAX_NAME,
	                       cause, code) == -1))
		return -1;
	if (task_load(st, id, &t, cause, code) == -1)
		return -1;
	if (by == NULL || *by == '\0')
		by = getenv("USER") != NULL ? getenv("USER") : "unknown";
	why = xasprintf("%s rejected by %s: %s",
	    t->state == WS_PLAN_AWAITING_APPROVAL ? "plan" : "implementation",
	    by, reason);
	switch (t->state) {
	case WS_PLAN_AWAITING_APPROVAL: {
		/* The plan column is overwritten by the next planning: the
		 * rejected plan is kept for the history a person reads. */
		json_t *o = json_pack("{s:o,s:s,s:s}", "plan",
		    task_json_text(t->text[TC_PLAN]), "reason", reason, "by",
		    by);
		char *data = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;

		json_decref(o);
		rc = store_checkpoint_add(st, id, "plan_rejected", data);
		free(data);
		if (rc == 0)
			rc = store_task_set_text(
			    st, id, TC_PLAN_REJECTION_REASON, reason);
		if (rc == 0)
			rc = task_enter(st, t, WS_PLANNING, 1, why);
		break;
	}
	case WS_IMPLEMENTATION_AWAITING_APPROVAL:
		fb = xasprintf(
		    "A person rejected the implementation: %s", reason);
		rc = store_task_set_text(
		    st, id, TC_IMPLEMENTATION_REJECTION_REASON, reason);
		if (rc == 0)
			rc = store_task_set_text(st, id, TC_FEEDBACK, fb);
		if (rc == 0)
			rc = task_enter(st, t, WS_IMPLEMENTING, 1, why);
		free(fb);
		break;
	default:
		free(why);
		*cause = xasprintf("task %lld is %s: only a task awaiting "
		                   "approval can be rejected",
		    (long long)id, wstate_name(t->state));
		*code = 409;
		task_free(t);
		store_rollback(st);
		return -1;
	}
	free(why);
	return task_decided(st, t, rc, cause, code);
}

int
task_cancel(struct store *st, int64_t id, char **cause, int *code)
{
	struct task *t;

	if (task_load(st, id, &t, cause, code) == -1)
		return -1;
	if (t->state == WS_COMPLETED || t->state == WS_CANCELLED) {
		*cause = xasprintf("task %lld is already %s", (long long)id,
		    wstate_name(t->state));
		*code = 409;
		task_free(t);
		store_rollback(st);
		return -1;
	}
	return task_done(st, t, task_enter(st, t, WS_CANCELLED, 0, "cancelled"),
	    cause, code);
}

char *
task_no_repo(int64_t id)
{
	return xasprintf("task %lld has no repository (the Python orchestrator "
	                 "made it): resume it with `orch-supervisor --resume "
	                 "%lld --repo DIR`, DIR being the directory that "
	                 "orchestrator was run in",
	    (long long)id, (long long)id);
}

int
task_set_repo(
    struct store *st, int64_t id, const char *repo, char **cause, int *code)
{
	struct task *t;
	char *abs, *head;
	int rc = 0;

	if (task_check_repo(repo, &abs, &head, cause) == -1) {
		*code = 400;
		return -1;
	}
	if (task_load(st, id, &t, cause, code) == -1) {
		free(abs);
		free(head);
		return -1;
	}
	if (t->repo != NULL && strcmp(t->repo, abs) != 0) {
		*cause =
		    xasprintf("task %lld works in %s already: --repo is only "
		              "for a task without one",
		        (long long)id, t->repo);
		*code = 409;
		free(abs);
		free(head);
		task_free(t);
		store_rollback(st);
		return -1;
	}
	if (t->repo == NULL || t->base_commit == NULL) {
		char *text =
		    xasprintf("repository %s attached, at %.12s", abs, head);
		rc = store_task_set_repo(st, id, abs, head);
		if (rc == 0)
			rc = store_event_add(st, id, EV_INFO, NULL, text);
		free(text);
	}
	free(abs);
	free(head);
	return task_done(st, t, rc, cause, code);
}

int
task_resume(struct store *st, int64_t id, char **cause, int *code)
{
	struct task *t;
	enum wstate back;
	int rc;

	if (task_load(st, id, &t, cause, code) == -1)
		return -1;
	if ((t->repo == NULL || t->base_commit == NULL) &&
	    t->state != WS_COMPLETED && t->state != WS_CANCELLED) {
		*cause = task_no_repo(id);
		*code = 409;
		task_free(t);
		store_rollback(st);
		return -1;
	}
	switch (t->state) {
	case WS_COMPLETED:
	case WS_CANCELLED:
		*cause = xasprintf("task %lld is %s: nothing to resume",
		    (long long)id, wstate_name(t->state));
		*code = 409;
		break;
	case WS_PLAN_AWAITING_APPROVAL:
	case WS_IMPLEMENTATION_AWAITING_APPROVAL:
		*cause = xasprintf("task %lld is waiting for approval: "
		                   "`orch-supervisor approve %lld` or `reject "
		                   "%lld --reason ...`",
		    (long long)id, (long long)id, (long long)id);
		*code = 409;
		break;
	case WS_FAILED:
		back = (enum wstate)t->ival[TI_FAILED_STATE];
		if (t->ival[TI_FAILED_STATE] < 0 || wstate_stage(back) == NULL)
			back = WS_PENDING;
		/* The same stage run goes on: its journal is replayed. */
		rc = store_task_set_int(st, id, TI_STAGE_RETRIES, 0);
		if (rc == 0)
			rc = task_enter(st, t, back, 0, "resumed");
		return task_done(st, t, rc, cause, code);
	default:
		if (t->ival[TI_BUDGET_PAUSED]) {
			*cause =
			    xasprintf("task %lld waits for a person at its "
			              "budget: `orch-supervisor approve "
			              "%lld --budget N` (or --max-cost X) "
			              "lets it go on",
			        (long long)id, (long long)id);
			*code = 409;
			break;
		}
		/* Runnable already: the scheduler picks it up. */
		return task_done(st, t, 0, cause, code);
	}
	task_free(t);
	store_rollback(st);
	return -1;
}

json_t *
task_json_text(const char *s)
{
	json_t *j;
	char *clean;

	if (s == NULL)
		return json_null();
	if ((j = json_string(s)) != NULL)
		return j;
	clean = utf8_fix(s, NULL);
	j = json_string(clean);
	free(clean);
	return j;
}

static int
task_json_checkpoint(const struct checkpoint *cp, void *arg)
{
	json_t *o = json_object();

	json_object_set_new(o, "id", json_integer(cp->id));
	json_object_set_new(o, "checkpoint_name", json_string(cp->name));
	json_object_set_new(o, "checkpoint_data", task_json_text(cp->data));
	json_object_set_new(o, "created_at", json_string(cp->created_at));
	json_array_append_new(arg, o);
	return 0;
}

static int
task_branch_cb(const struct checkpoint *cp, void *arg)
{
	char **branch = arg;
	json_t *j;

	if (strcmp(cp->name, "after_implementation") != 0 || cp->data == NULL)
		return 0;
	if ((j = json_loads(cp->data, 0, NULL)) == NULL)
		return 0;
	if (json_is_string(json_object_get(j, "branch"))) {
		free(*branch);
		*branch =
		    xstrdup(json_string_value(json_object_get(j, "branch")));
	}
	json_decref(j);
	return 0;
}

char *
task_branch(struct store *st, const struct task *t)
{
	char *branch = NULL;

	if (st != NULL)
		store_checkpoint_list(st, t->id, task_branch_cb, &branch);
	if (branch == NULL)
		branch = xasprintf("orch/task-%lld", (long long)t->id);
	return branch;
}

char *
task_result_location(struct store *st, const struct task *t)
{
	char *branch, *loc;
	size_t n;

	if (t->text[TC_IMPLEMENTATION] == NULL || !origin_is_url(t->repo))
		return NULL;
	branch = task_branch(st, t);
	n = strcspn(t->repo, "#");
	if (t->state == WS_COMPLETED)
		loc = xasprintf("branch %s on %.*s", branch, (int)n, t->repo);
	else
		loc = xasprintf("branch %s in this node's mirror (pushed to "
		                "%.*s when the task completes)",
		    branch, (int)n, t->repo);
	free(branch);
	return loc;
}

static const char *const text_names[TC_MAX] = {"plan", "implementation",
    "review", "verification_result", "workflow_log", "plan_approved_at",
    "plan_approved_by", "plan_rejection_reason", "implementation_approved_at",
    "implementation_approved_by", "implementation_rejection_reason",
    "error_details", "feedback"};

json_t *
task_json(struct store *st, const struct task *t, int full)
{
	json_t *o = json_object(), *a;

	json_object_set_new(o, "id", json_integer(t->id));
	json_object_set_new(o, "request", task_json_text(t->request));
	json_object_set_new(
	    o, "status", json_string(tstatus_name(task_status(t))));
	json_object_set_new(
	    o, "workflow_state", json_string(wstate_name(t->state)));
	json_object_set_new(o, "created_at", json_string(t->created_at));
	json_object_set_new(o, "updated_at", json_string(t->updated_at));
	json_object_set_new(o, "repo", task_json_text(t->repo));
	json_object_set_new(
	    o, "retry_count", json_integer(t->ival[TI_RETRY_COUNT]));
	json_object_set_new(o, "tokens_in", json_integer(t->tokens_in));
	json_object_set_new(o, "tokens_out", json_integer(t->tokens_out));
	if (t->ival[TI_BUDGET_PAUSED])
		json_object_set_new(o, "waiting_at_budget", json_true());
	/* The node whose live lease it runs under (PostgreSQL, several
	 * services); null when none holds it. */
	json_object_set_new(o, "node", task_json_text(t->node));
	if (!full)
		return o;
	json_object_set_new(
	    o, "max_tokens", json_integer(t->ival[TI_MAX_TOKENS]));
	json_object_set_new(o, "max_cost",
	    json_real((double)t->ival[TI_MAX_COST_MICROS] / 1e6));
	json_object_set_new(o, "base_commit",
	    t->base_commit ? json_string(t->base_commit) : json_null());
	json_object_set_new(
	    o, "verify_command", task_json_text(t->verify_command));
	json_object_set_new(o, "auto_approve",
	    json_string(config_auto_approve_name(t->auto_approve)));
	for (int i = 0; i < TC_MAX; i++)
		json_object_set_new(
		    o, text_names[i], task_json_text(t->text[i]));
	{
		char *loc = task_result_location(st, t);

		if (loc != NULL)
			json_object_set_new(
			    o, "result_location", task_json_text(loc));
		free(loc);
	}
	json_object_set_new(o, "workflow_checkpoint_data",
	    task_json_text(t->workflow_checkpoint_data));
	json_object_set_new(
	    o, "stage_run", json_integer(t->ival[TI_STAGE_RUN]));
	json_object_set_new(
	    o, "review_rounds", json_integer(t->ival[TI_REVIEW_ROUNDS]));
	json_object_set_new(
	    o, "verify_rounds", json_integer(t->ival[TI_VERIFY_ROUNDS]));
	{
		char *branch = task_branch(st, t);

		json_object_set_new(o, "branch", json_string(branch));
		free(branch);
	}
	a = json_array();
	if (store_checkpoint_list(st, t->id, task_json_checkpoint, a) == 0)
		json_object_set_new(o, "checkpoints", a);
	else
		json_decref(a);
	if (store_usage_json(st, t->id, &a) == 0)
		json_object_set_new(o, "usage", a);
	if ((a = task_cost_json(st, t->id)) != NULL)
		json_object_set_new(o, "cost", a);
	return o;
}

/* Add one sum of turns to the group key of by, with its cost if known. */
static void
task_cost_add(
    json_t *by, const char *key, const struct turn_sum *ts, const double *cost)
{
	json_t *g = json_object_get(by, key);

	if (g == NULL) {
		g = json_pack("{s:I,s:I,s:I,s:I,s:f}", "turns", (json_int_t)0,
		    "tokens_in", (json_int_t)0, "tokens_out", (json_int_t)0,
		    "duration_ms", (json_int_t)0, "cost", 0.0);
		json_object_set_new(by, key, g);
	}
	static const char *const ints[] = {
	    "turns", "tokens_in", "tokens_out", "duration_ms"};
	const int64_t v[] = {
	    ts->turns, ts->tokens_in, ts->tokens_out, ts->duration_ms};
	for (size_t i = 0; i < nitems(ints); i++)
		json_object_set_new(g, ints[i],
		    json_integer(
		        json_integer_value(json_object_get(g, ints[i])) +
		        v[i]));
	if (cost != NULL)
		json_object_set_new(g, "cost",
		    json_real(
		        json_real_value(json_object_get(g, "cost")) + *cost));
}

static int
task_cost_cb(const struct turn_sum *ts, void *arg)
{
	json_t *o = arg;
	double cost;
	int priced = price_cost(ts->model, ts->tokens_in, ts->tokens_out,
	                 ts->cached_in, &cost) == 0;
	const double *c = priced ? &cost : NULL;

	task_cost_add(json_object_get(o, "by_day"), ts->day, ts, c);
	task_cost_add(json_object_get(o, "by_model"), ts->model, ts, c);
	task_cost_add(json_object_get(o, "by_repo"),
	    ts->repo != NULL ? ts->repo : "(none)", ts, c);
	if (priced)
		json_object_set_new(o, "total",
		    json_real(
		        json_real_value(json_object_get(o, "total")) + cost));
	else {
		json_t *u = json_object_get(o, "unpriced_models");
		size_t i;
		json_t *m;

		json_array_foreach(u, i, m) {
			if (strcmp(json_string_value(m), ts->model) == 0)
				return 0;
		}
		json_array_append_new(u, task_json_text(ts->model));
	}
	return 0;
}

json_t *
task_cost_json(struct store *st, int64_t task)
{
	json_t *o;

	if (!price_known())
		return NULL;
	o = json_pack("{s:f,s:{},s:{},s:{},s:[]}", "total", 0.0, "by_day",
	    "by_model", "by_repo", "unpriced_models");
	if (store_turn_sums(st, task, task_cost_cb, o) == -1) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *
task_event_json(const struct event_row *ev)
{
	json_t *o, *facts;

	o = json_pack("{s:I,s:I,s:s,s:s,s:o,s:o,s:o}", "id", (json_int_t)ev->id,
	    "task", (json_int_t)ev->task, "ts", ev->ts, "kind", ev->kind,
	    "stage", task_json_text(ev->stage), "text",
	    task_json_text(ev->text), "state",
	    ev->state < WS_MAX ? json_string(wstate_name(ev->state))
	                       : json_null());
	/* The facts never replace the row's own fields. */
	if (o != NULL && ev->data != NULL &&
	    (facts = json_loads(ev->data, 0, NULL)) != NULL) {
		if (json_is_object(facts))
			json_object_update_missing(o, facts);
		json_decref(facts);
	}
	return o;
}

static int
task_point_cp_cb(const struct checkpoint *cp, void *arg)
{
	struct task_point *tp = arg;

	free(tp->checkpoint);
	free(tp->checkpoint_at);
	tp->checkpoint = utf8_fix(cp->name, NULL);
	tp->checkpoint_at = xstrdup(cp->created_at ? cp->created_at : "?");
	if (strcmp(cp->name, "snapshot") == 0 && cp->data != NULL) {
		json_t *j = json_loads(cp->data, 0, NULL);
		const char *c = json_string_value(json_object_get(j, "commit"));

		if (c != NULL) {
			free(tp->snapshot);
			tp->snapshot = xstrdup(c);
		}
		json_decref(j);
	}
	return 0;
}

static int
task_point_journal_cb(const struct journal_entry *je, void *arg)
{
	struct task_point *tp = arg;
	json_t *j;

	tp->steps++;
	tp->pending = 0;
	if (strcmp(je->kind, "reply") == 0)
		tp->replies++;
	else if (strcmp(je->kind, "tool") == 0 ||
	         strcmp(je->kind, "command") == 0)
		tp->results++;
	if (strcmp(je->kind, "tool") != 0 && strcmp(je->kind, "snapshot") != 0)
		return 0;
	if ((j = json_loads(je->data, 0, NULL)) == NULL)
		return 0;
	if (json_is_string(json_object_get(j, "commit"))) {
		free(tp->snapshot);
		tp->snapshot =
		    xstrdup(json_string_value(json_object_get(j, "commit")));
	}
	tp->pending = strcmp(je->kind, "tool") == 0 &&
	              json_is_true(json_object_get(j, "snapshot"));
	json_decref(j);
	return 0;
}

int
task_point_get(struct store *st, const struct task *t, struct task_point *tp)
{
	memset(tp, 0, sizeof *tp);
	tp->at = t->state;
	if (t->state == WS_FAILED && t->ival[TI_FAILED_STATE] >= 0 &&
	    t->ival[TI_FAILED_STATE] < WS_MAX)
		tp->at = (enum wstate)t->ival[TI_FAILED_STATE];
	tp->stage = wstate_stage(tp->at);
	tp->run = t->ival[TI_STAGE_RUN];
	if (store_checkpoint_list(st, t->id, task_point_cp_cb, tp) == -1)
		return -1;
	if (tp->stage != NULL && store_journal_list(st, t->id, tp->run,
	                             task_point_journal_cb, tp) == -1)
		return -1;
	if (tp->snapshot == NULL && t->base_commit != NULL)
		tp->snapshot = xstrdup(t->base_commit);
	return 0;
}

void
task_point_clear(struct task_point *tp)
{
	free(tp->checkpoint);
	free(tp->checkpoint_at);
	free(tp->snapshot);
	memset(tp, 0, sizeof *tp);
}

char *
task_point_text(const struct task_point *tp, json_t *d)
{
	char *cp, *steps, *ws, *out;

	cp = tp->checkpoint != NULL
	         ? xasprintf("from checkpoint %s saved at %s", tp->checkpoint,
	               tp->checkpoint_at)
	         : xstrdup("from no checkpoint");
	if (tp->steps > 0)
		steps = xasprintf("%lld journaled steps replayed without "
		                  "asking the model or running a command again "
		                  "(%lld model replies, %lld tool results)",
		    (long long)tp->steps, (long long)tp->replies,
		    (long long)tp->results);
	else
		steps = xstrdup("nothing journaled to replay");
	if (tp->pending)
		ws = xstrdup("workspace kept as the interrupted step left it "
		             "(its snapshot is taken first)");
	else
		ws = xasprintf("workspace restored to snapshot %.12s",
		    tp->snapshot != NULL ? tp->snapshot : "?");
	out = xasprintf("%s; %s; %s", cp, steps, ws);
	if (d != NULL) {
		if (tp->checkpoint != NULL) {
			json_object_set_new(
			    d, "checkpoint", json_string(tp->checkpoint));
			json_object_set_new(
			    d, "checkpoint_at", json_string(tp->checkpoint_at));
		}
		json_object_set_new(d, "replayed", json_integer(tp->steps));
		json_object_set_new(
		    d, "replayed_replies", json_integer(tp->replies));
		json_object_set_new(
		    d, "replayed_results", json_integer(tp->results));
		if (tp->snapshot != NULL)
			json_object_set_new(
			    d, "snapshot", task_json_text(tp->snapshot));
		json_object_set_new(
		    d, "workspace_kept", json_boolean(tp->pending));
	}
	free(cp);
	free(steps);
	free(ws);
	return out;
}
