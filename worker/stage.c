/*
 * The stages.  Planning, implementing and reviewing are one tool loop:
 * model turn, tool calls, results, next turn, until the stage's terminal
 * tool.  Every model reply and every tool result is journaled before it is
 * used, and a tool that changed files is followed by a workspace snapshot
 * whose commit the journal entry records; so a restarted stage restores the
 * last committed snapshot, replays its journal, and asks the model only for
 * the turn that was in flight.  Verifying runs the task's command.
 */
#include <sys/prctl.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "proto.h"
#include "worker.h"

#define STAGE_DIFF_MAX    (64 * 1024)        /* in the reviewer's request */
#define STAGE_DIFF_WHOLE  (16 * 1024 * 1024) /* read_diff can reach */
#define STAGE_OUTPUT_TAIL 4000

static struct stage_ctx *cur; /* the stage this worker runs */
static int rootfd = -1;
static char *last_commit;
static struct sandbox_profile *profile;
static char *review_diff; /* the whole diff, valid UTF-8, for read_diff */
static int empty_warned;  /* the implementer was told its change is empty */

#define STAGE_EMPTY_WARNING                                                    \
	"your change is empty: the workspace has no change against the "       \
	"base commit (nothing was written, a tool call failed, or every "      \
	"change was undone: read the tool results above).  Make the change "   \
	"the request asks for, then call finish again.  If you finish with "   \
	"no change again, the task ends with no changes and no result "        \
	"branch."

static void stage_planning(void) __attribute__((noreturn));
static void stage_implementing(void) __attribute__((noreturn));
static void stage_reviewing(void) __attribute__((noreturn));
static void stage_verifying(void) __attribute__((noreturn));

/*
 * What each stage does in the worker: the function that runs it (and
 * ends the worker), the sandbox profile of the commands it runs (NULL: it
 * runs none, and the worker confines itself with Landlock), the system
 * prompt of its conversation, and whether it snapshots the workspace to a
 * ref of its own.  The tools each stage offers the model are in tools.c's
 * table, by stage.  Adding a stage is a row here and its function.
 */
static const struct stage_def {
	void (*run)(void);
	const char *profile;
	const char *prompt;
	int snapshots;
} stage_defs[STAGE_MAX] = {
    [STAGE_PLANNING] = {stage_planning, NULL, "planning.txt", 0},
    [STAGE_IMPLEMENTING] = {stage_implementing, "implementing",
        "implementing.txt", 1},
    [STAGE_REVIEWING] = {stage_reviewing, NULL, "reviewing.txt", 0},
    [STAGE_VERIFYING] = {stage_verifying, "verifying", NULL, 0},
};

static void __attribute__((noreturn, format(printf, 1, 2)))
stage_fail(const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	log_warnx("%s", msg);
	wio_result(0, msg, NULL);
}

/* A failure that a restart may cure: the supervisor retries with backoff. */
static void __attribute__((noreturn, format(printf, 1, 2)))
stage_retry(const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	log_warnx("%s", msg);
	exit(WORKER_EXIT_TEMP);
}

/* name with "-" and the first 12 characters of the state id: a name of
 * this state directory's own, for when name is someone else's. */
static char *
stage_alt_name(const char *name)
{
	const char *id = cur->start->state_id;

	return xasprintf("%s-%.12s", name, id != NULL ? id : "x");
}

#define PUSH_TRIES 4 /* a push, before the stage is retried */

/*
 * Before a stage of a task whose repository is an origin: the mirror is
 * made or fetched (the base commit must be there) and the task's snapshot
 * ref fetched, so that a node that takes the task over (or a state
 * directory that lost its mirror and worktree) restores the last snapshot
 * another worker pushed.  Done before the worker confines itself: the
 * origin may be a path Landlock would not let it read.
 */
static void
stage_origin_fetch(void)
{
	const char *url = cur->start->origin;
	char *cause, *theirs;
	int permanent;

	if (url == NULL)
		return;
	/* The supervisor could not name the mirror (a URL it cannot parse). */
	if (cur->start->repo[0] != '/')
		stage_fail(
		    "origin %s: no mirror for it (%s)", url, cur->start->repo);
	origin_configure(wio_heartbeat, NULL, 0);
	origin_set_epoch(cur->start->lease_epoch);
	if (origin_sync(
	        cur->start->repo, url, NULL, NULL, &permanent, &cause) == -1 ||
	    origin_fetch_ref(cur->start->repo, url, cur->start->ref, &theirs,
	        &permanent, &cause) == -1) {
		if (permanent)
			stage_fail("origin: %s", cause);
		stage_retry("origin: %s", cause);
	}
	if (theirs != NULL)
		log_debug(
		    "origin %s: %s at %.12s", url, cur->start->ref, theirs);
	free(theirs);
}

/* Write s to the file path (a /proc/self map): 0, or -1 with errno. */
static int
stage_write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), rc = 0, saved;

	if (fd == -1)
		return -1;
	if (write_all(fd, s, strlen(s)) == -1)
		rc = -1;
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

/*
 * The worker needs no network: the model calls are the model process's
 * (orch-model), and commands run in bwrap's own empty network namespace.
 * So it enters an empty one of its own (only a loopback, down): nothing a
 * hostile repository or model makes it do can reach a host.  As root that
 * is CLONE_NEWNET; otherwise a user namespace comes with it, our uid and
 * gid mapped to themselves, so that files, bwrap and the command cgroups
 * see the same ids.
 *
 * The exception is a task whose origin is remote (ssh://, https://...):
 * its snapshot refs are fetched and pushed during the stage, over the
 * network (docs/security.md).  A local origin (a path, file://) needs
 * none.  Where namespaces are not allowed the worker goes on with the
 * host's network, saying so in the service's log.
 */
static void
stage_unshare_net(void)
{
	const char *o = cur->start->origin;
	uid_t uid = getuid();
	gid_t gid = getgid();
	char map[64];

	if (o != NULL && origin_is_url(o) && strncmp(o, "file://", 7) != 0)
		return;
	if (unshare(CLONE_NEWNET) == 0)
		return;
	if (errno != EPERM) {
		log_warn("unshare of the network (the worker keeps it)");
		return;
	}
	if (unshare(CLONE_NEWUSER | CLONE_NEWNET) == -1) {
		log_warn("unshare of the network in a user namespace (the "
		         "worker keeps it)");
		return;
	}
	/* Our own /proc/self maps are root's while we are not dumpable. */
	prctl(PR_SET_DUMPABLE, 1);
	snprintf(map, sizeof map, "%u %u 1\n", (unsigned)uid, (unsigned)uid);
	if (stage_write_file("/proc/self/setgroups", "deny") == -1 ||
	    stage_write_file("/proc/self/uid_map", map) == -1)
		stage_fail("user namespace: uid_map: %s", strerror(errno));
	snprintf(map, sizeof map, "%u %u 1\n", (unsigned)gid, (unsigned)gid);
	if (stage_write_file("/proc/self/gid_map", map) == -1)
		stage_fail("user namespace: gid_map: %s", strerror(errno));
	prctl(PR_SET_DUMPABLE, 0);
}

/*
 * Push ref from the mirror to the origin: a few tries with backoff, then
 * the stage is retried (its own backoff); a refusal fails the task with
 * the origin's reason.
 */
static void
stage_push_as(const char *from, const char *ref, const char *what)
{
	const char *url = cur->start->origin;
	char *cause = NULL;
	int permanent, pushed;

	if (url == NULL)
		return;
	for (int i = 0; i < PUSH_TRIES; i++) {
		free(cause);
		cause = NULL;
		if (origin_push_as(cur->repo, url, from, ref,
		        cur->start->state_id, &pushed, &permanent,
		        &cause) == 0) {
			if (what != NULL && pushed)
				wio_log(PROTO_LOG_INFO, "%s pushed to %s", what,
				    url);
			return;
		}
		if (permanent)
			stage_fail("push of %s: %s", ref, cause);
		wio_log(PROTO_LOG_INFO, "push of %s failed, trying again: %s",
		    ref, cause);
		if (i + 1 < PUSH_TRIES)
			wio_sleep(1000U << i);
	}
	stage_retry("push of %s: %s", ref, cause);
}

static void
stage_push(const char *ref, const char *what)
{
	stage_push_as(ref, ref, what);
}

/*
 * Where the implementer's result commit waits on the origin for the stage
 * that pushes the result branch, which may run on another node (whose
 * mirror never had the branch): refs/orch/results/ID beside the snapshot
 * ref refs/orch/tasks/ID.  NULL when the task has no origin.
 */
static char *
stage_results_ref(void)
{
	const char *ref = cur->start->ref, *prefix = "refs/orch/tasks/";

	if (cur->start->origin == NULL || ref == NULL ||
	    strncmp(ref, prefix, strlen(prefix)) != 0)
		return NULL;
	return xasprintf("refs/orch/results/%s", ref + strlen(prefix));
}

/*
 * Restore the workspace to the last committed snapshot: this run's last
 * journaled one, else the last one the supervisor recorded, else the base.
 * Two cases need no restore (and no git): a worktree just made from that
 * commit, and one the supervisor says the previous stage left clean (it
 * ended normally, at its last snapshot).  A third keeps the files as they
 * are: the journal's last entry is a tool's result whose snapshot was never
 * recorded (the worker died while taking it).  Nothing ran after that tool,
 * so the worktree holds exactly what it left: stage_tool snapshots it on
 * replay, and the tool is never run twice.  Everything else (a restart, a
 * resume) may follow a crash mid-step, so it restores.
 */
static void
stage_workspace(void)
{
	const char *target = cur->start->snapshot;
	int clean = cur->start->workspace_clean != 0;
	struct ws_options wo = {cur->start->state_id,
	    cur->start->snapshot_max_file_bytes, cur->cmd_timeout_s,
	    wio_heartbeat, NULL, cur->start->lease_epoch};
	char *cause, *alt, *ref;
	int made, pending = 0, permanent;

	ws_configure(&wo);
	for (size_t i = 0; i < journal_count(); i++) {
		const char *kind, *data = journal_data(i, &kind);
		json_t *j;

		pending = 0;
		if (strcmp(kind, "tool") != 0 && strcmp(kind, "snapshot") != 0)
			continue;
		if ((j = json_loads(data, 0, NULL)) == NULL)
			continue;
		if (json_is_string(json_object_get(j, "commit"))) {
			free(last_commit);
			last_commit = xstrdup(
			    json_string_value(json_object_get(j, "commit")));
		}
		pending = strcmp(kind, "tool") == 0 &&
		          json_is_true(json_object_get(j, "snapshot"));
		json_decref(j);
	}
	if (last_commit == NULL)
		last_commit = xstrdup(target ? target : cur->base);
	if (!clean)
		ws_unlock(
		    cur->repo, cur->worktree, cur->ref, cur->start->branch);
	if ((made = ws_create(cur->repo, cur->worktree, cur->base, &cause)) ==
	    -1)
		stage_retry("workspace: %s", cause);
	log_debug("workspace %s: %s, %zu journaled, at %.12s", cur->worktree,
	    made      ? "made"
	    : pending ? "kept for the pending snapshot"
	    : clean   ? "left clean"
	              : "to restore",
	    journal_count(), last_commit);
	if (made ? strcmp(last_commit, cur->base) != 0
	         : !pending && (!clean || journal_count() > 0)) {
		if (ws_restore(cur->worktree, last_commit, &cause) == -1)
			stage_retry("workspace: %s", cause);
		/* A restart or a resume says what it went back to. */
		if (journal_count() > 0 || cur->start->attempt > 0)
			wio_log(PROTO_LOG_INFO,
			    "workspace restored to snapshot %.12s (%zu "
			    "journaled steps to replay)",
			    last_commit, journal_count());
	}
	rootfd = open(cur->worktree, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd == -1)
		stage_retry("open %s: %s", cur->worktree, strerror(errno));
	if (!stage_defs[cur->id].snapshots)
		return;
	/* A snapshot ref another state directory made is not ours to move. */
	alt = stage_alt_name(cur->ref);
	if (ws_pick_ref(
	        cur->worktree, cur->ref, alt, &ref, &permanent, &cause) == -1) {
		if (permanent)
			stage_fail("workspace: %s", cause);
		stage_retry("workspace: %s", cause);
	}
	if (strcmp(ref, cur->ref) != 0)
		wio_log(PROTO_LOG_INFO,
		    "%s was made by another state directory; snapshots go to "
		    "%s",
		    cur->ref, ref);
	cur->ref = ref;
	free(alt);
}

static int
stage_run_command(
    void *arg, const char *command, unsigned timeout_s, char **result_json)
{
	struct sandbox_result res;
	char *cause;

	(void)arg;
	if (timeout_s == 0 || timeout_s > cur->cmd_timeout_s)
		timeout_s = cur->cmd_timeout_s;
	if (sandbox_run(profile, cur->worktree, command, timeout_s,
	        wio_heartbeat, NULL, &res, &cause) == -1) {
		/* Fail closed: nothing ran. */
		*result_json = xasprintf("the sandbox is unavailable, so the "
		                         "command was not run: %s",
		    cause);
		free(cause);
		return -1;
	}
	*result_json = sandbox_result_json(&res);
	sandbox_result_clear(&res);
	return 0;
}

/* What the model code calls back: the link to the supervisor. */
static void
stage_llm_sleep(void *arg, unsigned ms)
{
	(void)arg;
	wio_sleep(ms);
}

static void
stage_llm_log(void *arg, int kind, const char *text)
{
	(void)arg;
	wio_log(kind, "%s", text);
}

/* One model turn: replayed from the journal, or asked and journaled. */
static json_t *
stage_reply(json_t *messages, json_t *tools, int turn)
{
	const char *data = journal_next("reply");
	struct llm_turn lt = {cur->task, cur->name, cur->run, cur->round, turn,
	    cur->llm,
	    {wio_heartbeat, stage_llm_sleep, stage_llm_log, NULL, NULL}};
	const char *prov =
	    json_string_value(json_object_get(cur->llm, "provider"));
	int scripted = prov == NULL || strcmp(prov, "scripted") == 0;
	json_t *reply;
	char *cause, *s;
	int permanent;

	if (data != NULL) {
		if ((reply = json_loads(data, 0, NULL)) == NULL)
			stage_fail("journaled reply %d is not JSON", turn + 1);
		return reply;
	}
	uint64_t t0 = now_ms();
	/* The HTTP providers are the model process's: it has the key and
	 * the network, the worker neither. */
	if ((scripted
	            ? llm_chat(&lt, messages, tools, &reply, &cause, &permanent)
	            : wio_model_call(&lt, messages, tools, &reply, &cause,
	                  &permanent)) == -1) {
		if (permanent)
			stage_fail("%s", cause);
		stage_retry("model: %s", cause);
	}
	/* How long the turn took (retries included), for the log. */
	json_object_set_new(
	    reply, "ms", json_integer((json_int_t)(now_ms() - t0)));
	s = json_dumps(reply, JSON_COMPACT);
	journal_put("reply", s,
	    json_integer_value(
	        json_object_get(json_object_get(reply, "usage"), "in")),
	    json_integer_value(
	        json_object_get(json_object_get(reply, "usage"), "out")));
	free(s);
	/* The streaming providers showed the text as it arrived. */
	const char *text = json_string_value(json_object_get(reply, "text"));
	if (text != NULL && *text != '\0' && scripted)
		wio_log(PROTO_LOG_MODEL, "%s", text);
	return reply;
}

/*
 * The snapshot after tool step `step` changed files: taken now and
 * journaled (journaled NULL), or replayed.  Its note (what was left out)
 * is added to the result the model reads.
 */
static void
stage_snapshot(json_t *res, int step, const char *journaled)
{
	const char *name = json_string_value(json_object_get(res, "name"));
	char *s, *commit, *note = NULL, *cause;
	json_t *j;
	int permanent;

	if (journaled != NULL) {
		if ((j = json_loads(journaled, 0, NULL)) == NULL ||
		    !json_is_string(json_object_get(j, "commit")))
			stage_fail("journaled snapshot %d is not JSON", step);
		commit =
		    xstrdup(json_string_value(json_object_get(j, "commit")));
		if (json_is_string(json_object_get(j, "note")))
			note = xstrdup(
			    json_string_value(json_object_get(j, "note")));
		json_decref(j);
	} else {
		s = xasprintf(
		    "%s step %d: %s", cur->name, step, name ? name : "?");
		if (ws_snapshot(cur->worktree, cur->ref, cur->base, s, &commit,
		        &note, &permanent, &cause) == -1) {
			if (permanent)
				stage_fail("the snapshot after step %d (%s) "
				           "failed: %s",
				    step, name ? name : "?", cause);
			stage_retry("snapshot: %s", cause);
		}
		free(s);
		j = json_pack("{s:s,s:i}", "commit", commit, "step", step);
		if (note != NULL)
			json_object_set_new(j, "note", json_string(note));
		s = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		journal_put("snapshot", s, 0, 0);
		free(s);
		if (strcmp(commit, last_commit) != 0) {
			s = xasprintf("{\"commit\":\"%s\",\"stage\":\"%s\","
			              "\"step\":%d}",
			    commit, cur->name, step);
			wio_checkpoint("snapshot", s);
			free(s);
			stage_push(cur->ref, NULL);
		}
	}
	if (note != NULL) {
		s = xasprintf("%s\n\n%s",
		    json_string_value(json_object_get(res, "text")), note);
		json_object_set_new(res, "text", json_string(s));
		free(s);
		free(note);
	}
	free(last_commit);
	last_commit = commit;
}

/* Does the workspace's last snapshot differ from the base commit? */
static int
stage_changed(void)
{
	char *stat, *cause;
	int changed;

	if (strcmp(last_commit, cur->base) == 0)
		return 0;
	if (ws_diffstat(cur->worktree, cur->base, last_commit, &stat, &cause) ==
	    -1)
		stage_retry("diffstat: %s", cause);
	changed = *stat != '\0';
	free(stat);
	return changed;
}

/*
 * One tool call: replayed from the journal, or run and journaled, then
 * snapshotted when it changed files.  The result is journaled before the
 * snapshot: a worker killed while snapshotting (a large workspace) never
 * runs the tool again; the restarted one snapshots what it left.
 */
static json_t *
stage_tool(const struct tool_ctx *ctx, json_t *call, int step)
{
	const char *data = journal_next("tool");
	const char *name = json_string_value(json_object_get(call, "name"));
	const char *args =
	    json_string_value(json_object_get(call, "arguments"));
	const char *id = json_string_value(json_object_get(call, "id"));
	struct tool_result tr;
	json_t *res;
	char *s;
	size_t alen, cut;
	static const char *const outcomes[] = {"done", "error", "terminal"};

	if (data != NULL) {
		if ((res = json_loads(data, 0, NULL)) == NULL)
			stage_fail(
			    "journaled tool result %d is not JSON", step);
		if (json_is_true(json_object_get(res, "snapshot")))
			stage_snapshot(res, step, journal_next("snapshot"));
		if (json_is_true(json_object_get(res, "empty")))
			empty_warned = 1;
		return res;
	}
	if (args == NULL)
		args = "";
	alen = strlen(args);
	cut = utf8_head(args, alen, 200);
	wio_log(PROTO_LOG_TOOL, "%s %.*s%s", name ? name : "?", (int)cut, args,
	    cut < alen ? "..." : "");
	tool_exec(ctx, name ? name : "", args ? args : "", &tr);
	/*
	 * The first finish on an unchanged workspace is a tool error the
	 * implementer reads, once: a failed edit must not pass for a change.
	 * It is journaled as any result, so a replay sees it too.
	 */
	int empty = 0;
	if (tr.outcome == TOOL_TERMINAL && cur->id == STAGE_IMPLEMENTING &&
	    !empty_warned && !stage_changed()) {
		json_decref(tr.value);
		tr.value = NULL;
		free(tr.text);
		tr.text = xstrdup(STAGE_EMPTY_WARNING);
		tr.outcome = TOOL_ERROR;
		empty = empty_warned = 1;
	}
	res = json_pack("{s:s,s:s,s:s,s:s}", "id", id ? id : "", "name",
	    name ? name : "", "outcome", outcomes[tr.outcome], "text",
	    tr.text ? tr.text : "");
	if (tr.value != NULL)
		json_object_set(res, "value", tr.value);
	if (tr.facts != NULL)
		json_object_set(res, "facts", tr.facts);
	if (empty)
		json_object_set_new(res, "empty", json_true());
	/*
	 * A terminal tool (submit_plan, finish, submit_review) only checks
	 * its arguments, which the journaled reply holds: a replay computes
	 * the same result again, so it is not journaled.  It changes no file.
	 */
	if (tr.outcome != TOOL_TERMINAL) {
		if (tr.changed)
			json_object_set_new(res, "snapshot", json_true());
		s = json_dumps(res, JSON_COMPACT);
		journal_put("tool", s, 0, 0);
		free(s);
		if (tr.changed)
			stage_snapshot(res, step, NULL);
	}
	tool_result_clear(&tr);
	return res;
}

/*
 * Add a message to the conversation.  A message that could not be built
 * (json_pack refuses text that is not UTF-8, or a missing field) ends the
 * stage: sending the conversation without it would ask the model about
 * something else than what happened, a reviewer about nothing at all.
 */
static void
stage_append(json_t *messages, json_t *m)
{
	if (messages == NULL || m == NULL ||
	    json_array_append_new(messages, m) == -1)
		stage_fail("the conversation could not be built (a message "
		           "is not valid UTF-8 or lacks a field)");
}

/*
 * The tool loop.  Returns the terminal tool's validated arguments, or ends
 * the stage when ORCH_MAX_STEPS turns pass without it.
 */
static json_t *
stage_loop(json_t *messages, const char *terminal)
{
	struct tool_ctx ctx = {rootfd, cur->name, NULL, NULL, NULL, 0};
	json_t *tools = tool_schemas(cur->name);
	int step = 0;

	if (stage_defs[cur->id].profile != NULL)
		ctx.run_command = stage_run_command;
	if (review_diff != NULL) {
		ctx.diff = review_diff;
		ctx.diff_len = strlen(review_diff);
	}
	for (int turn = 0;; turn++) {
		json_t *reply, *calls, *call, *am;
		size_t i;

		if ((unsigned)turn >= cur->max_steps)
			stage_fail("the model used all %u turns "
			           "(ORCH_MAX_STEPS) without calling %s",
			    cur->max_steps, terminal);
		reply = stage_reply(messages, tools, turn);
		calls = json_object_get(reply, "tool_calls");
		am = json_pack("{s:s,s:O}", "role", "assistant", "content",
		    json_object_get(reply, "text"));
		if (am == NULL)
			stage_fail("model reply %d has no text", turn + 1);
		if (json_array_size(calls) > 0)
			json_object_set(am, "tool_calls", calls);
		stage_append(messages, am);
		if (json_array_size(calls) == 0) {
			stage_append(messages,
			    json_pack("{s:s,s:s+}", "role", "user", "content",
			        "Use the tools. End this stage by calling ",
			        terminal));
			json_decref(reply);
			continue;
		}
		json_array_foreach(calls, i, call) {
			json_t *res = stage_tool(&ctx, call, ++step);
			stage_append(messages,
			    json_pack("{s:s,s:O,s:O,s:O}", "role", "tool",
			        "tool_call_id", json_object_get(res, "id"),
			        "name", json_object_get(res, "name"), "content",
			        json_object_get(res, "text")));
			if (strcmp(json_string_value(
			               json_object_get(res, "outcome")),
			        "terminal") == 0) {
				json_t *v =
				    json_incref(json_object_get(res, "value"));
				json_decref(res);
				json_decref(reply);
				json_decref(tools);
				if (!json_is_object(v))
					stage_fail("journaled %s has no value",
					    terminal);
				return v;
			}
			json_decref(res);
		}
		json_decref(reply);
	}
}

/* Run a read-only tool for the stage's opening message. */
static char *
stage_peek(const char *tool, const char *args)
{
	/* The planner's tools are read-only. */
	struct tool_ctx ctx = {
	    rootfd, stage_name(STAGE_PLANNING), NULL, NULL, NULL, 0};
	struct tool_result tr;
	char *s;

	tool_exec(&ctx, tool, args, &tr);
	s = xstrdup(tr.outcome == TOOL_DONE ? tr.text : "(none)");
	tool_result_clear(&tr);
	return s;
}

/*
 * The opening of a conversation: the stage's instructions and the user
 * message, which holds text from outside (the request, a diff, file
 * contents) and is made valid UTF-8 first, saying so when bytes were
 * replaced.  Takes ownership of user.
 */
static json_t *
stage_messages(char *user)
{
	size_t bad;
	char *clean = utf8_fix(user, &bad);
	json_t *m;

	free(user);
	if (bad > 0) {
		user = xasprintf("%s\n\n[%zu bytes above were not valid UTF-8 "
		                 "and are shown as U+FFFD]",
		    clean, bad);
		free(clean);
		clean = user;
	}
	m = json_pack("[{s:s,s:s},{s:s,s:s}]", "role", "system", "content",
	    prompt_get(stage_defs[cur->id].prompt), "role", "user", "content",
	    clean);
	free(clean);
	if (m == NULL)
		stage_fail("the conversation could not be built");
	return m;
}

static void __attribute__((noreturn)) stage_planning(void)
{
	char *files = stage_peek("list_files", "{\"path\":\"\"}");
	char *readme = stage_peek("read_file", "{\"path\":\"README.md\"}");
	const char *why = cur->start->plan_rejection_reason;
	char *user;
	json_t *v;

	user = xasprintf("Request:\n%s\n\nFiles in the repository:\n%s\n\n"
	                 "README.md:\n%s%s%s%s%s",
	    cur->start->request, files, readme,
	    why ? "\n\nA person rejected your earlier plan.\nReason: " : "",
	    why ? why : "", why ? "\nThe earlier plan:\n" : "",
	    why && cur->start->plan ? cur->start->plan : "");
	free(files);
	free(readme);
	v = stage_loop(stage_messages(user), "submit_plan");
	wio_result(1, NULL, v);
}

/* The result's commit message, every control shown as an escape. */
static char *
stage_commit_message(const char *request, const char *summary)
{
	char *raw = xasprintf("%s\n\n%s", request, summary ? summary : "");
	char *msg = utf8_show_str(raw);

	free(raw);
	return msg;
}

static void __attribute__((noreturn)) stage_implementing(void)
{
	const char *fb = cur->start->feedback;
	char *user, *cause, *result, *stat, *msg, *ref, *alt, *branch = NULL;
	char *results;
	json_t *v, *out;
	int permanent;

	user = xasprintf("Request:\n%s\n\nThe approved plan:\n%s%s%s",
	    cur->start->request, cur->start->plan ? cur->start->plan : "(none)",
	    fb ? "\n\nFeedback on your previous round, to address now:\n" : "",
	    fb ? fb : "");
	v = stage_loop(stage_messages(user), "finish");
	if (!stage_changed()) {
		/* Told once, and finished empty again: no empty result
		 * branch; the supervisor ends the task saying so. */
		wio_log(PROTO_LOG_ERROR, "no changes: the implementer finished "
		                         "again without changing any file");
		out = json_pack("{s:O,s:b}", "summary",
		    json_object_get(v, "summary"), "no_changes", 1);
		json_decref(v);
		wio_result(1, NULL, out);
	}
	/* People read commit messages on terminals: no raw controls. */
	msg = stage_commit_message(cur->start->request,
	    json_string_value(json_object_get(v, "summary")));
	/* A result branch another state directory made is left alone. */
	ref = xasprintf("refs/heads/%s", cur->start->branch);
	alt = stage_alt_name(ref);
	if (ws_pick_ref(cur->worktree, ref, alt, &branch, &permanent, &cause) ==
	        -1 ||
	    ws_squash(cur->worktree, branch + strlen("refs/heads/"), cur->base,
	        last_commit, msg, &result, &permanent, &cause) == -1) {
		if (permanent)
			stage_fail("the result branch: %s", cause);
		stage_retry("squash: %s", cause);
	}
	free(ref);
	free(alt);
	free(msg);
	/* A snapshot replayed from the journal may not have been pushed. */
	stage_push(cur->ref, NULL);
	if ((results = stage_results_ref()) != NULL) {
		stage_push_as(branch, results, NULL);
		free(results);
	}
	if (ws_diffstat(cur->worktree, cur->base, result, &stat, &cause) == -1)
		stage_retry("diffstat: %s", cause);
	out = json_pack("{s:O,s:s,s:s,s:s,s:s}", "summary",
	    json_object_get(v, "summary"), "diffstat", stat, "commit", result,
	    "snapshot", last_commit, "branch", branch + strlen("refs/heads/"));
	free(branch);
	free(stat);
	free(result);
	json_decref(v);
	wio_result(1, NULL, out);
}

/*
 * The reviewer is shown the first STAGE_DIFF_MAX bytes of the diff (cut
 * at a line) and told plainly when that is not all of it, with the size,
 * so a change cannot hide past the cut: read_diff reads the rest.  Bytes
 * that are not UTF-8 (a Latin-1 file) are replaced, and it is told so.
 */
static char *
stage_review_diff(void)
{
	char *raw, *cause, *head, *note = NULL;
	size_t len, keep, bad;

	if (ws_diff(cur->worktree, cur->base, last_commit, STAGE_DIFF_WHOLE,
	        &raw, &cause) == -1)
		stage_retry("diff: %s", cause);
	review_diff = utf8_fix(raw, &bad);
	free(raw);
	len = strlen(review_diff);
	if (len == 0)
		return xstrdup("(no changes)");
	keep = utf8_head(review_diff, len, STAGE_DIFF_MAX);
	if (keep < len) {
		size_t line = keep;

		while (line > 0 && review_diff[line - 1] != '\n')
			line--;
		if (line > 0)
			keep = line;
		note = xasprintf("\n[The diff is %zu bytes; only the first %zu "
		                 "are shown above.  Read the rest with "
		                 "read_diff (offset %zu) before you decide.]",
		    len, keep, keep);
	}
	head = xasprintf("%.*s%s%s", (int)keep, review_diff,
	    note != NULL ? note : "",
	    bad > 0 ? "\n[The diff had bytes that are not UTF-8 (a file "
	              "holds text in another encoding); each is shown as "
	              "U+FFFD.]"
	            : "");
	free(note);
	return head;
}

static void __attribute__((noreturn)) stage_reviewing(void)
{
	char *diff, *user;
	json_t *v;

	diff = stage_review_diff();
	user = xasprintf("Request:\n%s\n\nThe approved plan:\n%s\n\nThe "
	                 "change, as a diff against the base commit:\n%s",
	    cur->start->request, cur->start->plan ? cur->start->plan : "(none)",
	    diff);
	free(diff);
	v = stage_loop(stage_messages(user), "submit_review");
	wio_result(1, NULL, v);
}

static void
stage_cleanup(void)
{
	char *cause;

	close(rootfd);
	rootfd = -1;
	if (ws_remove(cur->repo, cur->worktree, &cause) == -1) {
		log_warnx("cleanup: %s", cause);
		free(cause);
	}
}

/*
 * The task completes: its result branch (the one the implementer chose:
 * its own name, or the other name when the plain one was another state
 * directory's) goes to the origin.
 */
static void
stage_push_result(void)
{
	char *ref, *alt, *branch, *cause, *what, *results;
	int permanent, took;

	if (cur->start->origin == NULL)
		return;
	ref = xasprintf("refs/heads/%s", cur->start->branch);
	alt = stage_alt_name(ref);
	if (ws_pick_ref(cur->worktree, ref, alt, &branch, &permanent, &cause) ==
	    -1) {
		if (permanent)
			stage_fail("the result branch: %s", cause);
		stage_retry("the result branch: %s", cause);
	}
	/*
	 * The origin's result commit counts: this node may not have made it
	 * (its mirror has no such branch, or one of an earlier round).
	 */
	if ((results = stage_results_ref()) != NULL) {
		if (origin_take(cur->repo, cur->start->origin, results, branch,
		        &took, &permanent, &cause) == -1) {
			if (permanent)
				stage_fail("the result branch: %s", cause);
			stage_retry("the result branch: %s", cause);
		}
		free(results);
	}
	what = xasprintf("result branch %s", branch + strlen("refs/heads/"));
	stage_push(branch, what);
	free(what);
	free(branch);
	free(alt);
	free(ref);
}

static void __attribute__((noreturn)) stage_verifying(void)
{
	const char *cmd = cur->start->verify_command;
	const char *data;
	char *s, *tail;
	json_t *res, *out;
	size_t len;

	if (cmd == NULL) {
		stage_push_result();
		stage_cleanup();
		wio_result(1, NULL,
		    json_pack("{s:s,s:s}", "status", "skipped", "reason",
		        "no --verify command and no ORCH_VERIFY_COMMAND"));
	}
	if ((data = journal_next("command")) == NULL) {
		wio_log(PROTO_LOG_TOOL, "verify: %s", cmd);
		if (stage_run_command(NULL, cmd, cur->cmd_timeout_s, &s) == -1)
			stage_fail("%s", s);
		journal_put("command", s, 0, 0);
		data = s;
	}
	if ((res = json_loads(data, 0, NULL)) == NULL)
		stage_fail("journaled command result is not JSON");
	const char *output = json_string_value(json_object_get(res, "output"));
	len = output ? strlen(output) : 0;
	int passed =
	    json_integer_value(json_object_get(res, "exit_status")) == 0 &&
	    json_is_integer(json_object_get(res, "exit_status"));
	/*
	 * The status is decided above, from the exit status alone; the tail
	 * is cut at a character (test runners print "\u2713") and made
	 * valid UTF-8, so that no output can make the result unbuildable.
	 */
	tail = utf8_fix(
	    output ? output + utf8_tail(output, len, STAGE_OUTPUT_TAIL) : "",
	    NULL);
	out = json_pack("{s:s,s:s,s:O?,s:O?,s:O?,s:s}", "status",
	    passed ? "passed" : "failed", "command", cmd, "exit_status",
	    json_object_get(res, "exit_status"), "signal",
	    json_object_get(res, "signal"), "duration_ms",
	    json_object_get(res, "duration_ms"), "output_tail", tail);
	free(tail);
	if (out == NULL)
		stage_fail("the verification result could not be built");
	wio_log(passed ? PROTO_LOG_INFO : PROTO_LOG_ERROR,
	    "verification %s (exit status %lld)", passed ? "passed" : "failed",
	    (long long)json_integer_value(json_object_get(res, "exit_status")));
	json_decref(res);
	if (passed) {
		stage_push_result();
		stage_cleanup();
	}
	wio_result(1, NULL, out);
}

/*
 * The model's settings as llm.c reads them (a JSON object): built from
 * START's typed fields, the strings only when START has them.
 */
static json_t *
stage_llm(const struct msg_start *m)
{
	json_t *o = json_object();
	const struct {
		const char *key;
		const char *value;
	} strs[] = {
	    {"provider", m->llm_provider},
	    {"base_url", m->llm_base_url},
	    {"model", m->llm_model},
	    {"script", m->llm_script},
	    {"trace", m->llm_trace},
	};

	for (size_t i = 0; i < nitems(strs); i++) {
		/* START's strings are valid UTF-8: the supervisor made them so.
		 */
		if (strs[i].value != NULL &&
		    json_object_set_new(
		        o, strs[i].key, json_string(strs[i].value)) == -1)
			stage_fail("START's model setting %s is not UTF-8",
			    strs[i].key);
	}
	json_object_set_new(
	    o, "timeout_s", json_integer((json_int_t)m->llm_timeout_s));
	json_object_set_new(
	    o, "max_retries", json_integer((json_int_t)m->llm_max_retries));
	return o;
}

void
stage_run(struct stage_ctx *st)
{
	const struct stage_def *def;
	char *cause;

	cur = st;
	def = &stage_defs[cur->id];
	cur->repo = cur->start->repo;
	/* The origin is fetched before the worker confines itself. */
	stage_origin_fetch();
	stage_unshare_net();
	/* First, before anything from outside is read. */
	confine_worker(cur->start, def->profile);
	cur->llm = stage_llm(cur->start);
	cur->worktree = cur->start->worktree;
	cur->repo = cur->start->repo;
	cur->ref = cur->start->ref;
	cur->base = cur->start->base_commit;
	cur->round = (int)cur->start->round;
	cur->max_steps = (unsigned)cur->start->max_steps;
	cur->cmd_timeout_s = (unsigned)cur->start->cmd_timeout_s;
	cur->profiles_dir = cur->start->profiles_dir;
	if (cur->start->request == NULL)
		stage_fail("START data lacks the task's workspace settings");
	if (def->profile != NULL && sandbox_profile_load(cur->profiles_dir,
	                                def->profile, &profile, &cause) == -1)
		stage_fail("sandbox profile: %s", cause);
	stage_workspace();
	def->run();
	fatalx("stage %s returned", cur->name);
}
