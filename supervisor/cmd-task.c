/*
 * Commands that make or move tasks: submit, run, --resume, approve, reject,
 * cancel.
 */
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "control.h"
#include "server.h"
#include "task.h"

/* What a person asks of a task, as the API takes it (control.h): nothing
 * yet. */
static struct control_op
cli_op(void)
{
	struct control_op op;

	memset(&op, 0, sizeof op);
	op.max_cost = -1; /* unchanged */
	return op;
}

static int
cli_task_op(const char *verb, int64_t id, const struct control_op *op)
{
	struct store *st;
	char *err, *path;
	int code, rc;

	/* Checked here too, so that both ways below refuse alike. */
	if ((op->by != NULL && task_check_text("name (--by)", op->by,
	                           TASK_MAX_NAME, &err, &code) == -1) ||
	    (op->reason != NULL && task_check_text("reason", op->reason,
	                               TASK_MAX_REASON, &err, &code) == -1)) {
		cli_error("%s", err);
		free(err);
		return 1;
	}
	switch (cli_writer(&st)) {
	case -1:
		return 1;
	case 1: {
		json_t *b = json_object();
		if (op->by != NULL)
			json_object_set_new(b, "by", json_string(op->by));
		if (op->reason != NULL)
			json_object_set_new(
			    b, "reason", json_string(op->reason));
		if (op->repo != NULL)
			json_object_set_new(b, "repo", json_string(op->repo));
		if (op->plan != NULL)
			json_object_set_new(b, "plan", json_string(op->plan));
		if (op->budget > 0)
			json_object_set_new(
			    b, "budget", json_integer(op->budget));
		if (op->max_cost >= 0)
			json_object_set_new(
			    b, "max_cost", json_real(op->max_cost));
		path = xasprintf("/v1/tasks/%lld/%s", (long long)id, verb);
		rc = cli_post(path, b, NULL);
		free(path);
		json_decref(b);
		return rc;
	}
	}
	if (strcmp(verb, "approve") == 0) {
		struct task_approval a = {
		    op->by, op->plan, op->budget, op->max_cost};

		rc = task_approve(st, id, &a, &err, &code);
	} else if (strcmp(verb, "reject") == 0)
		rc = task_reject(st, id, op->reason, op->by, &err, &code);
	else if (strcmp(verb, "cancel") == 0)
		rc = task_cancel(st, id, &err, &code);
	else {
		rc = op->repo != NULL
		         ? task_set_repo(st, id, op->repo, &err, &code)
		         : 0;
		if (rc == 0)
			rc = task_resume(st, id, &err, &code);
	}
	store_close(st);
	if (rc == -1) {
		cli_error("%s", err);
		free(err);
		return 1;
	}
	return 0;
}

/* Ask a person at the terminal about a gate: 1 approve, 0 stop, -1 reject
 * (with *reason set). */
static int
cli_ask(int64_t id, enum wstate state, char **reason)
{
	char *line = NULL;
	size_t cap = 0;
	int ans = 0;

	printf("\nTask %lld: %s. See `orch-supervisor show %lld`.\n",
	    (long long)id, wstate_name(state), (long long)id);
	printf("Approve? [y]es / [n]o, stop here / [r]eject: ");
	fflush(stdout);
	if (getline(&line, &cap, stdin) > 0) {
		if (line[0] == 'y' || line[0] == 'Y')
			ans = 1;
		else if (line[0] == 'r' || line[0] == 'R') {
			printf("Reason: ");
			fflush(stdout);
			if (getline(&line, &cap, stdin) > 0) {
				line[strcspn(line, "\n")] = '\0';
				*reason = xstrdup(line);
				ans = -1;
			}
		}
	}
	free(line);
	return ans;
}

/*
 * Drive one task in the foreground: through the service when it runs
 * (following its events), else with our own loop; on a terminal, ask at
 * approval gates.  Exit status: 0 completed or waiting, 1 failed.
 */
static int
cli_drive(int64_t id, int64_t after)
{
	struct printer p;
	enum wstate state;
	int interactive = isatty(STDIN_FILENO);

	printer_init(&p, id);
	p.after = after;
	/* The printer shows the task's log; the service's own info lines
	 * would only repeat it. */
	if (cfg.log_level == LOG_LEVEL_INFO)
		log_init("orch-supervisor", LOG_LEVEL_WARN);
	for (;;) {
		struct store *st;
		int w = cli_writer(&st);

		if (w == -1)
			return 1;
		if (w == 1) {
			/* Follow the service until the task ends or waits. */
			for (;;) {
				printer_tick(&p);
				if (cli_task_state(id, &state) == -1)
					return 1;
				if (wstate_stage(state) == NULL ||
				    cli_task_paused(id) == 1)
					break;
				usleep(100 * 1000);
			}
			printer_tick(&p);
		} else {
			store_close(st);
			if (server_run(id, 1, printer_tick, &p) != 0)
				return 1;
			if (server_quit)
				return 1;
			if (cli_task_state(id, &state) == -1)
				return 1;
		}
		if (cli_task_paused(id) == 1) {
			printf(
			    "Task %lld waits for a person at its budget (the "
			    "log says which): `orch-supervisor approve %lld "
			    "--budget N` (or --max-cost X) to go on, or "
			    "`orch-supervisor cancel %lld`.\n",
			    (long long)id, (long long)id, (long long)id);
			store_close(p.st);
			return 0;
		}
		if (wstate_status(state) != TS_AWAITING_APPROVAL)
			break;
		char *reason = NULL;
		int ans = interactive ? cli_ask(id, state, &reason) : 0;
		if (ans == 0) {
			printf("Task %lld waits for approval: `orch-supervisor "
			       "approve %lld` or `orch-supervisor reject %lld "
			       "--reason ...`, then `orch-supervisor --resume "
			       "%lld`.\n",
			    (long long)id, (long long)id, (long long)id,
			    (long long)id);
			store_close(p.st);
			return 0;
		}
		struct control_op op = cli_op();

		op.reason = reason;
		int rc = cli_task_op(ans == 1 ? "approve" : "reject", id, &op);
		free(reason);
		if (rc != 0)
			return 1;
	}
	char *branch = NULL;
	struct task *done = NULL;

	if (state == WS_COMPLETED && p.st != NULL &&
	    store_task_get(p.st, id, &done) == 0 && done != NULL)
		branch = task_branch(p.st, done);
	task_free(done);
	store_close(p.st);
	printf("Task %lld %s.", (long long)id, wstate_name(state));
	if (state == WS_COMPLETED)
		printf(" Its branch: %s (`orch-supervisor show %lld`).",
		    branch != NULL ? branch : "?", (long long)id);
	free(branch);
	printf("\n");
	return state == WS_COMPLETED || state == WS_CANCELLED ? 0 : 1;
}
/*
 * Read a request (or a plan: what) from a file, or standard input for "-": at
 * most TASK_MAX_REQUEST bytes of UTF-8 without NUL, its final newlines dropped.
 * 0 with *out (malloc'd), or -1 after printing why.
 */
static int
cli_read_text(const char *path, const char *what, char **out)
{
	const char *name = strcmp(path, "-") == 0 ? "standard input" : path;
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	size_t len = 0, n;
	char *buf;
	json_t *j;

	*out = NULL;
	if (f == NULL) {
		cli_error("cannot read the %s from %s: %s", what, path,
		    strerror(errno));
		return -1;
	}
	buf = xmalloc(TASK_MAX_REQUEST + 2);
	while (len <= TASK_MAX_REQUEST &&
	       (n = fread(buf + len, 1, TASK_MAX_REQUEST + 1 - len, f)) > 0)
		len += n;
	if (ferror(f)) {
		cli_error("cannot read the %s from %s: %s", what, name,
		    strerror(errno));
		goto fail;
	}
	if (len > TASK_MAX_REQUEST) {
		cli_error("the %s in %s is over %d bytes (the limit): "
		          "shorten it%s",
		    what, name, TASK_MAX_REQUEST,
		    strcmp(what, "request") == 0
		        ? ", or point to a file in the repository"
		        : "");
		goto fail;
	}
	buf[len] = '\0';
	if (memchr(buf, '\0', len) != NULL) {
		cli_error(
		    "the %s in %s has a NUL byte: is it text?", what, name);
		goto fail;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	/* jansson checks UTF-8 as it makes a string. */
	if ((j = json_stringn(buf, len)) == NULL) {
		cli_error("the %s in %s is not valid UTF-8: convert it "
		          "(iconv -t UTF-8)",
		    what, name);
		goto fail;
	}
	json_decref(j);
	if (f != stdin)
		fclose(f);
	*out = buf;
	return 0;
fail:
	if (f != stdin)
		fclose(f);
	free(buf);
	return -1;
}

/* --budget N, --max-tokens N: a whole number of tokens above 0. */
static int
cli_budget_tokens(const char *arg, int64_t *v)
{
	char *end;
	long long n;

	errno = 0;
	n = strtoll(arg, &end, 10);
	if (errno != 0 || *end != '\0' || end == arg || n <= 0) {
		cli_error("%s: a token budget is a whole number above 0", arg);
		return -1;
	}
	*v = n;
	return 0;
}

/* --max-cost X: an amount above 0, in the units of ORCH_LLM_PRICES. */
static int
cli_budget_cost(const char *arg, double *v)
{
	char *end;
	double x;

	errno = 0;
	x = strtod(arg, &end);
	if (errno != 0 || *end != '\0' || end == arg || !(x > 0) || x > 1e9) {
		cli_error("%s: a cost budget is an amount above 0 (up to "
		          "1000000000), in the units of ORCH_LLM_PRICES",
		    arg);
		return -1;
	}
	*v = x;
	return 0;
}

/* submit and run share their options. */
static int
cli_submit(int argc, char **argv, int64_t *idp)
{
	static const struct option opts[] = {
	    {"repo", required_argument, NULL, 'r'},
	    {"file", required_argument, NULL, 'f'},
	    {"verify", required_argument, NULL, 'v'},
	    {"auto-approve", required_argument, NULL, 'a'},
	    {"max-tokens", required_argument, NULL, 'T'},
	    {"max-cost", required_argument, NULL, 'C'},
	    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	const char *repo = NULL, *verify = NULL, *file = NULL;
	int c, aa = cfg.auto_approve, code;
	int64_t max_tokens = 0;
	double max_cost = 0;
	char *abs, *head, *err, *request = NULL;
	struct task_new tn;
	struct store *st;

	while ((c = getopt_long(argc, argv, "r:f:v:a:h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			repo = optarg;
			break;
		case 'f':
			file = optarg;
			break;
		case 'v':
			verify = optarg;
			break;
		case 'a':
			if (config_auto_approve_parse(optarg, &aa) == -1) {
				cli_error("--auto-approve: expected none, "
				          "plan, implementation or all");
				return EXIT_USAGE;
			}
			break;
		case 'T':
			if (cli_budget_tokens(optarg, &max_tokens) == -1)
				return EXIT_USAGE;
			break;
		case 'C':
			if (cli_budget_cost(optarg, &max_cost) == -1)
				return EXIT_USAGE;
			break;
		case 'h':
			return cli_help() == 0 ? -2 : 1;
		default:
			return cli_usage();
		}
	}
	/* The request: its argument, or "-" or --file F for a long one. */
	if (repo == NULL || (file == NULL) != (optind == argc - 1) ||
	    optind < argc - 1)
		return cli_usage();
	if (file == NULL && strcmp(argv[optind], "-") == 0)
		file = "-";
	if (file != NULL && cli_read_text(file, "request", &request) == -1)
		return 1;
	if (task_check_repo(repo, &abs, &head, &err) == -1) {
		cli_error("%s", err);
		free(err);
		free(request);
		return 1;
	}
	tn.request = request != NULL ? request : argv[optind];
	tn.repo = abs;
	tn.base_commit = head;
	tn.verify_command = verify;
	tn.auto_approve = aa;
	tn.max_tokens = max_tokens;
	tn.max_cost = max_cost;
	switch (cli_writer(&st)) {
	case -1:
		c = 1;
		break;
	case 1: {
		json_t *b = json_pack("{s:s,s:s,s:s?,s:s}", "request",
		    tn.request, "repo", abs, "verify", verify, "auto_approve",
		    config_auto_approve_name(aa));
		if (max_tokens > 0)
			json_object_set_new(
			    b, "max_tokens", json_integer(max_tokens));
		if (max_cost > 0)
			json_object_set_new(b, "max_cost", json_real(max_cost));
		json_t *r;
		c = cli_post("/v1/tasks", b, &r);
		json_decref(b);
		if (c == 0) {
			*idp = json_integer_value(json_object_get(r, "id"));
			json_decref(r);
		}
		break;
	}
	default:
		c = task_submit(st, &tn, idp, &err, &code) == -1;
		if (c) {
			cli_error("%s", err);
			free(err);
		}
		store_close(st);
	}
	free(abs);
	free(head);
	free(request);
	return c;
}

int
cmd_submit(int argc, char **argv)
{
	int64_t id;
	int rc = cli_submit(argc, argv, &id);

	if (rc == -2)
		return 0;
	if (rc == 0)
		printf("%lld\n", (long long)id);
	return rc;
}

int
cmd_run(int argc, char **argv)
{
	int64_t id = 0;
	int rc = cli_submit(argc, argv, &id);

	if (rc == -2)
		return 0;
	if (rc != 0)
		return rc;
	printf("Task %lld submitted.\n", (long long)id);
	fflush(stdout);
	return cli_drive(id, 0);
}

/*
 * A task the Python orchestrator made has no repository.  That orchestrator
 * worked in the directory it was run from: offer this one.
 */
static int
cli_resume_check(int64_t id)
{
	struct store *st;
	struct task *t = NULL;
	char cwd[PATH_MAX];
	int rc = 0;

	if (cli_open_ro(&st) == -1 || st == NULL)
		return 0; /* the resume itself says what is wrong */
	if (store_task_get(st, id, &t) == 0 && t != NULL &&
	    (t->repo == NULL || t->base_commit == NULL) &&
	    t->state != WS_COMPLETED && t->state != WS_CANCELLED) {
		cli_error(
		    "task %lld has no repository: the Python orchestrator "
		    "made it, and worked in the directory it was run "
		    "from; if that is this one: orch-supervisor --resume "
		    "%lld --repo %s",
		    (long long)id, (long long)id,
		    getcwd(cwd, sizeof cwd) != NULL ? cwd : "DIR");
		rc = -1;
	}
	task_free(t);
	store_close(st);
	return rc;
}

/*
 * What --resume resumes, said before anything happens: the task, its
 * request, its workflow state, its last checkpoint and when it was saved,
 * and where it goes on.  *after is the last event so far: the log printed
 * next begins after it.  Nothing when the task cannot be read (the resume
 * itself says what is wrong).
 */
static void
cli_resume_summary(int64_t id, int64_t *after)
{
	struct store *st;
	struct task *t = NULL;
	struct task_point tp;

	*after = 0;
	if (cli_open_ro(&st) == -1 || st == NULL)
		return;
	if (store_task_get(st, id, &t) == -1 || t == NULL ||
	    task_point_get(st, t, &tp) == -1) {
		task_free(t);
		store_close(st);
		return;
	}
	store_event_max(st, after);
	printf("Resuming task %lld: %s\n", (long long)id,
	    cli_safe_line(t->request));
	if (t->state == WS_FAILED)
		printf("  Workflow state:  failed in %s: %s\n",
		    wstate_name(tp.at),
		    t->text[TC_ERROR_DETAILS]
		        ? cli_safe_line(t->text[TC_ERROR_DETAILS])
		        : "(no reason recorded)");
	else
		printf("  Workflow state:  %s\n", wstate_name(t->state));
	if (tp.checkpoint != NULL)
		printf("  Last checkpoint: %s, saved %s\n",
		    cli_safe_line(tp.checkpoint),
		    cli_safe_line(tp.checkpoint_at));
	else
		printf("  Last checkpoint: none\n");
	if (tp.stage == NULL)
		printf("Resuming at: %s (the next stage starts)\n",
		    wstate_name(tp.at));
	else if (tp.steps == 0)
		printf(
		    "Resuming at: %s, from the start of the stage\n", tp.stage);
	else
		printf("Resuming at: %s, step %lld of the journal (%lld "
		       "journaled steps are replayed: %lld model replies, %lld "
		       "tool results, none asked or run again)\n",
		    tp.stage, (long long)tp.steps + 1, (long long)tp.steps,
		    (long long)tp.replies, (long long)tp.results);
	fflush(stdout);
	task_point_clear(&tp);
	task_free(t);
	store_close(st);
}

int
cmd_resume(int64_t id, const char *repo, int full)
{
	struct control_op op;
	char *abs = NULL, *head, *err;
	int64_t after;
	int rc;

	if (repo == NULL && cli_resume_check(id) == -1)
		return 1;
	/* The service may run elsewhere: it gets an absolute path. */
	if (repo != NULL) {
		if (task_check_repo(repo, &abs, &head, &err) == -1) {
			cli_error("%s", err);
			free(err);
			return 1;
		}
		free(head);
	}
	cli_resume_summary(id, &after);
	if (full)
		after = 0;
	op = cli_op();
	op.repo = abs;
	rc = cli_task_op("resume", id, &op);
	free(abs);

	if (rc != 0)
		return rc;
	return cli_drive(id, after);
}

/*
 * The plan awaiting approval, written to a temporary file and opened in
 * $EDITOR (else vi): the edited text in *plan, or -1 after saying why.
 */
static int
cli_edit_plan(int64_t id, char **plan)
{
	struct store *st;
	struct task *t = NULL;
	char path[] = "/tmp/orch-plan-XXXXXX";
	const char *editor = getenv("EDITOR");
	pid_t pid;
	int fd, status, rc = -1;

	*plan = NULL;
	if (cli_open_ro(&st) == -1)
		return -1;
	if (st == NULL || store_task_get(st, id, &t) == -1 || t == NULL) {
		cli_error(
		    "no task %lld (see `orch-supervisor list`)", (long long)id);
		store_close(st);
		return -1;
	}
	store_close(st);
	if (t->state != WS_PLAN_AWAITING_APPROVAL || t->text[TC_PLAN] == NULL) {
		cli_error("task %lld is %s: only a plan awaiting approval can "
		          "be edited",
		    (long long)id, wstate_name(t->state));
		task_free(t);
		return -1;
	}
	if ((fd = mkstemp(path)) == -1 ||
	    write_all(fd, t->text[TC_PLAN], strlen(t->text[TC_PLAN])) == -1) {
		cli_error(
		    "cannot write the plan to %s: %s", path, strerror(errno));
		if (fd != -1) {
			close(fd);
			unlink(path);
		}
		task_free(t);
		return -1;
	}
	close(fd);
	task_free(t);
	if (editor == NULL || *editor == '\0')
		editor = "vi";
	/* Through sh, as git does: EDITOR may hold arguments. */
	pid = fork();
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", "exec $0 \"$1\"", editor, path,
		    (char *)NULL);
		_exit(127);
	}
	if (pid == -1 || waitpid(pid, &status, 0) == -1 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		cli_error(
		    "the editor (%s) failed: the plan is not approved", editor);
	else if (cli_read_text(path, "plan", plan) == 0) {
		if (**plan == '\0') {
			cli_error("the edited plan is empty: not approved");
			free(*plan);
			*plan = NULL;
		} else
			rc = 0;
	}
	unlink(path);
	return rc;
}

int
cmd_approve(int argc, char **argv)
{
	struct control_op op;
	static const struct option opts[] = {
	    {"by", required_argument, NULL, 'b'},
	    {"plan-file", required_argument, NULL, 'p'},
	    {"edit", no_argument, NULL, 'e'},
	    {"budget", required_argument, NULL, 'B'},
	    {"max-cost", required_argument, NULL, 'C'},
	    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	const char *by = NULL, *file = NULL;
	char *plan = NULL;
	int64_t id, budget = 0;
	double max_cost = -1;
	int c, rc, edit = 0;

	while ((c = getopt_long(argc, argv, "b:p:eh", opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			by = optarg;
			break;
		case 'p':
			file = optarg;
			break;
		case 'e':
			edit = 1;
			break;
		case 'B':
			if (cli_budget_tokens(optarg, &budget) == -1)
				return EXIT_USAGE;
			break;
		case 'C':
			if (cli_budget_cost(optarg, &max_cost) == -1)
				return EXIT_USAGE;
			break;
		case 'h':
			return cli_help();
		default:
			return cli_usage();
		}
	}
	if (optind != argc - 1 || (edit && file != NULL))
		return cli_usage();
	if (cli_parse_id(argv[optind], &id) == -1)
		return EXIT_USAGE;
	if (file != NULL && cli_read_text(file, "plan", &plan) == -1)
		return 1;
	if (file != NULL && *plan == '\0') {
		cli_error("the plan in %s is empty: not approved", file);
		free(plan);
		return 1;
	}
	if (edit && cli_edit_plan(id, &plan) == -1)
		return 1;
	op = cli_op();
	op.by = by;
	op.plan = plan;
	op.budget = budget;
	op.max_cost = max_cost;
	rc = cli_task_op("approve", id, &op);
	if (rc == 0)
		printf("Task %lld approved%s.\n", (long long)id,
		    plan != NULL ? " with the edited plan" : "");
	free(plan);
	return rc;
}

int
cmd_reject(int argc, char **argv)
{
	struct control_op op;
	static const struct option opts[] = {
	    {"reason", required_argument, NULL, 'r'},
	    {"by", required_argument, NULL, 'b'},
	    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	const char *by = NULL, *reason = NULL;
	int64_t id;
	int rc = cli_one_id(argc, argv, &id, "r:b:h", opts, &by, &reason);

	if (rc != -1)
		return rc;
	if (reason == NULL) {
		cli_error("reject needs --reason TEXT");
		return EXIT_USAGE;
	}
	op = cli_op();
	op.by = by;
	op.reason = reason;
	if ((rc = cli_task_op("reject", id, &op)) == 0)
		printf("Task %lld rejected.\n", (long long)id);
	return rc;
}

int
cmd_cancel(int argc, char **argv)
{
	struct control_op op;
	static const struct option opts[] = {
	    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	const char *by = NULL, *reason = NULL;
	int64_t id;
	int rc = cli_one_id(argc, argv, &id, "h", opts, &by, &reason);

	if (rc != -1)
		return rc;
	op = cli_op();
	if ((rc = cli_task_op("cancel", id, &op)) == 0)
		printf("Task %lld cancelled.\n", (long long)id);
	return rc;
}
