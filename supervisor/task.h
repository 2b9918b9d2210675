/* task.c: operations on one task, shared by the service and the CLI. */
#ifndef TASK_H
#define TASK_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "store.h"

/*
 * Save a checkpoint and say so in the log ("checkpoint saved: NAME", with
 * the step and commit of a snapshot), in the caller's transaction.
 */
int task_checkpoint(struct store *, int64_t task, const char *stage,
    const char *name, const char *data);
/*
 * Move a task to state in the caller's transaction: sets workflow_state and
 * status, records an event, and when state starts a worker stage with
 * new_run set, starts a new stage run (the journal's key) and resets the
 * stage's restart count.
 */
int task_enter(struct store *, const struct task *, enum wstate state,
    int new_run, const char *why);
/*
 * The most a task's request may be, in bytes of UTF-8.  The control API's
 * body limit (control.c) holds it JSON-escaped at its worst (6 bytes for a
 * control character), and the worker's START frame holds it beside the
 * plan and the review.
 */
#define TASK_MAX_REQUEST (512 * 1024)
/* A rejection's reason (the next round's feedback) and an approver's name. */
#define TASK_MAX_REASON (64 * 1024)
#define TASK_MAX_NAME   256
/* A text a person gives a task: at most max bytes of UTF-8, else -1 with
 * *err naming what (and *code 400). */
int task_check_text(
    const char *what, const char *s, size_t max, char **cause, int *code);
/* The operations the CLI and the control API offer.  Each returns 0, or -1
 * with *err a malloc'd message; *code is an HTTP-like status (400, 404,
 * 409, 500) saying what kind of error it was. */
int task_submit(struct store *, const struct task_new *, int64_t *id,
    char **cause, int *code);
/*
 * Approve the plan or the implementation awaiting approval, or let a task
 * waiting at a budget go on.  plan: a person's edited plan, which replaces
 * the model's (a plan_edited checkpoint records who and the model's plan;
 * the implementer gets the edited text; 409 when the task is not at the
 * plan's gate).  budget (tokens, 0: unchanged) and max_cost (below 0:
 * unchanged) set the task's own budgets first; a task waiting at a budget
 * needs one raised past what it used.
 */
struct task_approval {
	const char *by; /* NULL: $USER */
	const char *plan;
	int64_t budget;
	double max_cost;
};
int task_approve(struct store *, int64_t id, const struct task_approval *,
    char **cause, int *code);
/* Why a task must wait for a person at a budget (malloc'd), or NULL. */
char *task_over_budget(struct store *, const struct task *);
/* A task's status: awaiting_approval while it waits at a budget. */
enum tstatus task_status(const struct task *);
int task_reject(struct store *, int64_t id, const char *reason, const char *by,
    char **cause, int *code);
int task_cancel(struct store *, int64_t id, char **cause, int *code);
int task_resume(struct store *, int64_t id, char **cause, int *code);
/* Give a task without a repository (one the Python orchestrator made) the
 * git work tree repo, at its HEAD. */
int task_set_repo(
    struct store *, int64_t id, const char *repo, char **cause, int *code);
/* Why a task without a repository cannot run, and the fix (malloc'd). */
char *task_no_repo(int64_t id);
/* Check that repo is a git work tree with a commit and nothing half done;
 * fills *abs (absolute path) and *head. */
/*
 * A --repo: a work tree (*abs its top), or an origin (a git URL, or a
 * bare repository's path made a file:// URL: *abs the URL), fetched into
 * the node's mirror; *head the base commit.
 */
int task_check_repo(const char *repo, char **abs, char **head, char **cause);
/*
 * Where the result branch of a task of an origin is, for people ("branch
 * orch/task-7 on URL"); NULL for a task of a work tree or without one.
 */
char *task_result_location(struct store *, const struct task *);
/* Where git runs for a task's repo: the mirror of an origin (or NULL). */
char *task_repo_dir(const char *repo);
/* Run argv (found in PATH) with no input and its output discarded: its
 * exit status, or -1 when it could not run or was killed. */
int run_quiet(char *const argv[]);
/*
 * The task's result branch: orch/task-ID, or the name the worker chose
 * when a branch of that name was another state directory's (recorded in
 * the after_implementation checkpoint).  malloc'd.
 */
char *task_branch(struct store *, const struct task *);
json_t *task_json(struct store *, const struct task *, int full);
/*
 * What the model turns of a task (0: every task) cost, from ORCH_LLM_PRICES:
 * {"total", "by_day", "by_model", "by_repo": {KEY: {turns, tokens_in,
 * tokens_out, duration_ms, cost}}, "unpriced_models": [...]} (a model
 * without a price adds tokens, not cost).  NULL without a price table:
 * nothing pretends to know a cost.
 */
json_t *task_cost_json(struct store *, int64_t task);
/*
 * The whole change of the task's last implementation (base commit to its
 * result), as git prints it, NUL-terminated, its first max bytes in *out
 * and its size in *total: what a person approves.  Runs git and waits.
 */
int task_diff(struct store *, const struct task *, size_t max, char **out,
    size_t *total, char **cause);
/*
 * Text from outside (a model, a repository, an old database) as a JSON
 * string, made valid UTF-8 when it is not, never NULL (json_null() for
 * NULL): jansson refuses invalid text, and a refused string would drop a
 * field, an event or a whole answer.
 */
json_t *task_json_text(const char *);
/*
 * Where a task goes on from, for the narration of a resume (the CLI) and of
 * a stage's restart (the scheduler): the stage its state runs or, failed,
 * ran; that stage run's journal (steps, of which model replies and tool or
 * command results: what is replayed, not asked or run again); the last
 * checkpoint; the snapshot the workspace is restored to (the last one
 * journaled in the run, else the last recorded, else the base commit);
 * and whether the journal ends in a result whose snapshot was never taken
 * (the workspace is kept as that step left it).  Strings malloc'd.
 */
struct task_point {
	enum wstate at; /* the state it goes on in */
	const char *stage;
	int64_t run;
	int64_t steps, replies, results;
	char *checkpoint, *checkpoint_at, *snapshot;
	int pending;
};
int task_point_get(struct store *, const struct task *, struct task_point *);
void task_point_clear(struct task_point *);
/* "from checkpoint C saved at T; N journaled steps replayed ... ;
 * workspace restored to ..." (malloc'd), and its facts into d. */
char *task_point_text(const struct task_point *, json_t *d);
/*
 * An event as the API and `logs --json` show it: id, task, ts, kind,
 * stage, text, state, and its facts (events.data) beside them.
 */
json_t *task_event_json(const struct event_row *);

#endif
