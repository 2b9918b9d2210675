/*
 * The command line: the helpers every command shares (escaping for a
 * terminal, the way to the database or the service, the event printer) and
 * the table of commands.  The commands live in cmd-task.c (submit, run,
 * resume, approve, reject, cancel), cmd-view.c (list, show, logs) and
 * cmd-admin.c (serve, stats, backup, doctor, gc).  Changes go through the
 * running service when there is one (its control socket), else straight to
 * the database while holding the state-directory lock the service would
 * hold; reads open the database read-only.
 */
#include <sys/stat.h>
#include <sys/statvfs.h>

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
#include "buildconf.h"
#include "client.h"
#include "config.h"
#include "server.h"

const struct cmd *cli_cmd;

/*
 * Text from outside (a model, a repository, a client) as it may be shown to
 * a person: controls and invalid bytes as visible escapes (utf8_show), on
 * a terminal or not, since output piped to a file or a pager reaches a
 * terminal in the end.  A model must not be able to hide part of its plan
 * (ESC[8m), rewrite lines, set the window title or write the clipboard
 * (OSC 52).  The strings live until the slot comes round again: enough for
 * the arguments of one printf.  NULL stays NULL.
 */
const char *
cli_safe(const char *s)
{
	static char *slot[16];
	static unsigned next;
	char **p = &slot[next++ % nitems(slot)];

	free(*p);
	*p = s != NULL ? utf8_show_str(s) : NULL;
	return *p;
}

/* cli_safe for one line: newlines and tabs shown as escapes too. */
const char *
cli_safe_line(const char *s)
{
	static char *slot[4];
	static unsigned next;
	char **p = &slot[next++ % nitems(slot)];

	free(*p);
	*p = s != NULL ? utf8_show(s, strlen(s), 0) : NULL;
	return *p;
}

/*
 * Print a JSON document for a program (--json), exact but for what a
 * terminal could still take as a control: jansson escapes only C0, so DEL,
 * the C1 controls (U+0080-U+009F) and the bidi controls are written as \u
 * escapes too.  Outside strings a JSON text is plain ASCII, so those bytes
 * can only stand inside strings, where the escape means the same text.
 */
void
cli_json_print(const json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2));
	const unsigned char *p;

	if (s == NULL) {
		fputs("null", stdout);
		return;
	}
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == 0x7f)
			fputs("\\u007f", stdout);
		else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			printf("\\u%04x", p[1]);
			p++;
		} else if (p[0] == 0xe2 &&
		           ((p[1] == 0x80 && p[2] >= 0xaa && p[2] <= 0xae) ||
		               (p[1] == 0x81 && p[2] >= 0xa6 &&
		                   p[2] <= 0xa9))) {
			printf("\\u%04x",
			    0x2000 | ((p[1] & 0x3f) << 6) | (p[2] & 0x3f));
			p += 2;
		} else
			putchar(*p);
	}
	free(s);
}

int
cli_error(const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		msg = NULL;
	va_end(ap);
	/* Errors quote the service, git and the model: escaped as well. */
	fprintf(stderr, "orch-supervisor: %s\n",
	    msg != NULL ? cli_safe(msg) : "out of memory");
	free(msg);
	return 1;
}

int
cli_usage(void)
{
	fprintf(stderr, "usage: orch-supervisor %s\n", cli_cmd->usage);
	fprintf(stderr, "Try 'orch-supervisor %s --help'.\n", cli_cmd->name);
	return EXIT_USAGE;
}

int
cli_help(void)
{
	printf(
	    "usage: orch-supervisor %s\n\n%s\n", cli_cmd->usage, cli_cmd->help);
	return 0;
}

int
cli_parse_id(const char *s, int64_t *id)
{
	uint64_t v;

	if (parse_u64(s, 1, INT64_MAX, &v) == -1) {
		cli_error(
		    "'%s' is not a task id (see `orch-supervisor list`)", s);
		return -1;
	}
	*id = (int64_t)v;
	return 0;
}

/* Open the database for reading; *st NULL (and 0) when it does not exist. */
int
cli_open_ro(struct store **st)
{
	char *cause;

	if (server_store_open(st, STORE_RDONLY, &cause) == -1) {
		cli_error("%s", cause);
		free(cause);
		return -1;
	}
	return 0;
}

/*
 * Decide how a change is made: 1 when the service runs (use the API), 0 when
 * we now hold the lock and *st is open read-write, -1 on error.
 */
int
cli_writer(struct store **st)
{
	char *cause;

	*st = NULL;
	switch (server_lock(&cause)) {
	case -1:
		cli_error("%s", cause);
		free(cause);
		return -1;
	case 1:
		/* The service may still be starting: give its socket a
		 * moment. */
		for (int i = 0; i < 50; i++) {
			if (client_service_running())
				return 1;
			usleep(100 * 1000);
		}
		cli_error("a service holds %s/lock but does not answer on its "
		          "socket; is it stuck? (see its log)",
		    cfg.state_dir);
		return -1;
	}
	if (server_store_open(st, STORE_RW, &cause) == -1) {
		cli_error("%s", cause);
		free(cause);
		return -1;
	}
	/* No service on this state directory: maybe one elsewhere on the
	 * same database, which only the database's lock tells. */
	if (server_store_lock(*st, &cause) != 0) {
		cli_error("%s", cause);
		free(cause);
		store_close(*st);
		*st = NULL;
		return -1;
	}
	return 0;
}

/* POST a change to the service: 0 or 1 (after printing the error). */
int
cli_post(const char *path, json_t *body, json_t **reply)
{
	char *err;
	int code;
	json_t *r;

	if (client_request("POST", path, body, &r, &code, &err) == -1) {
		json_decref(r);
		cli_error("%s", err);
		free(err);
		return 1;
	}
	if (reply != NULL)
		*reply = r;
	else
		json_decref(r);
	return 0;
}

int
printer_event_cb(const struct event_row *ev, void *arg)
{
	struct printer *p = arg;
	const char *on = "", *off = "";
	const char *t = strchr(ev->ts, ' ');

	if (p->color) {
		off = "\033[0m";
		if (strcmp(ev->kind, "state") == 0)
			on = "\033[1;36m";
		else if (strcmp(ev->kind, "error") == 0)
			on = "\033[1;31m";
		else if (strcmp(ev->kind, "model") == 0)
			on = "\033[2m";
	}
	printf("%s%.12s", on, cli_safe_line(t ? t + 1 : ev->ts));
	if (p->task == 0)
		printf(" #%lld", (long long)ev->task);
	printf(" [%s]", cli_safe_line(ev->stage ? ev->stage : ev->kind));
	if (strcmp(ev->kind, "state") == 0)
		printf(" ==> %s%s\n", cli_safe(ev->text), off);
	else
		printf(" %s%s\n", cli_safe(ev->text), off);
	p->after = ev->id;
	return 0;
}

void
printer_tick(void *arg)
{
	struct printer *p = arg;

	if (p->st == NULL && cli_open_ro(&p->st) == -1)
		return;
	if (p->st == NULL)
		return;
	store_event_list(p->st, p->task, p->after, 1000, printer_event_cb, p);
	fflush(stdout);
}

void
printer_init(struct printer *p, int64_t task)
{
	const char *nc = getenv("NO_COLOR");

	memset(p, 0, sizeof *p);
	p->task = task;
	p->color = isatty(STDOUT_FILENO) && (nc == NULL || *nc == '\0');
}

int
cli_one_id(int argc, char **argv, int64_t *id, const char *flags,
    const struct option *opts, const char **by, const char **reason)
{
	int c;

	while ((c = getopt_long(argc, argv, flags, opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			*by = optarg;
			break;
		case 'r':
			*reason = optarg;
			break;
		case 'h':
			cli_help();
			return 0;
		default:
			return cli_usage();
		}
	}
	if (optind != argc - 1)
		return cli_usage();
	if (cli_parse_id(argv[optind], id) == -1)
		return EXIT_USAGE;
	return -1;
}

/* The task's workflow state, or -1 when it cannot be read. */
int
cli_task_state(int64_t id, enum wstate *state)
{
	struct store *st;
	struct task *t;

	if (cli_open_ro(&st) == -1 || st == NULL)
		return -1;
	if (store_task_get(st, id, &t) == -1 || t == NULL) {
		store_close(st);
		return -1;
	}
	*state = t->state;
	task_free(t);
	store_close(st);
	return 0;
}

static const struct cmd cmds[] = {
    {"serve", cmd_serve, "serve",
        "Run the service in the foreground: resumes unfinished tasks\n"
        "(ORCH_ENABLE_RESUME), runs queued ones, answers the control "
        "socket.\nSIGTERM/SIGINT stop it; tasks stay resumable."},
    {"submit", cmd_submit,
        "submit \"REQUEST\"|-|--file F --repo DIR [--verify CMD] "
        "[--auto-approve plan|implementation|all]",
        "Queue a task and print its id.  A long request comes from a\n"
        "file (--file F) or standard input (-): up to 512 KiB of UTF-8."},
    {"run", cmd_run,
        "run \"REQUEST\"|-|--file F --repo DIR [--verify CMD] "
        "[--auto-approve plan|implementation|all]",
        "Submit a task and drive it in the foreground, printing its log.\n"
        "On a terminal it asks at approval gates."},
    {"list", cmd_list, "list [--status S] [--json]",
        "List tasks, optionally of one status (pending, in_progress,\n"
        "awaiting_approval, completed, failed, cancelled)."},
    {"show", cmd_show, "show ID [--json]",
        "Show a task: request, states, plan, review, verification, "
        "checkpoints."},
    {"logs", cmd_logs, "logs [ID] [-f]",
        "Print a task's event log (every task's without ID); -f follows "
        "it\nlive and stops when the task ends."},
    {"approve", cmd_approve, "approve ID [--by NAME]",
        "Approve the plan or the implementation awaiting approval."},
    {"reject", cmd_reject, "reject ID --reason TEXT [--by NAME]",
        "Reject the plan (it is planned again with the reason) or the\n"
        "implementation (it is implemented again with the reason)."},
    {"cancel", cmd_cancel, "cancel ID", "Cancel a task."},
    {"stats", cmd_stats, "stats [--json]",
        "Counts by status, token usage, database size."},
    {"backup", cmd_backup, "backup [PATH]",
        "Online, consistent copy of the database (default: "
        "$ORCH_STATE_DIR/backups/)."},
    {"gc", cmd_gc, "gc [--older-than DAYS] [--json]",
        "Remove the worktrees, event logs, journals and audit files of\n"
        "tasks finished (completed, failed, cancelled) at least DAYS ago\n"
        "(default ORCH_RETENTION_DAYS, 30); task rows, checkpoints, usage\n"
        "and git branches stay.  Then VACUUM.  Through the service when it\n"
        "runs."},
    {"db-copy", cmd_db_copy, "db-copy --to URL",
        "Copy the SQLite database (DB_PATH) into an empty PostgreSQL one\n"
        "(every row, ids kept; row counts checked).  Stop the service\n"
        "first; then set ORCH_DATABASE_URL and unset DB_PATH."},
    {"doctor", cmd_doctor, "doctor",
        "Check git, bwrap and user namespaces, the sandbox profiles, the\n"
        "database, disk space and the LLM endpoint (a real request);\n"
        "one line per check, exit 1 when something would stop a task."},
};

static void
cli_main_usage(FILE *f)
{
	fprintf(f, "usage: orch-supervisor [--env-file FILE] COMMAND [ARGS]\n"
	           "       orch-supervisor --list-resumable\n"
	           "       orch-supervisor --resume ID [--repo DIR]\n\n"
	           "commands:\n");
	for (size_t i = 0; i < nitems(cmds); i++)
		fprintf(f, "  %s\n", cmds[i].usage);
	fprintf(f,
	    "\nvariables (environment or .env): ORCH_STATE_DIR DB_PATH "
	    "ORCH_DATABASE_URL\n"
	    "  ORCH_ENABLE_RESUME DB_BACKUP_ON_START "
	    "DB_AUTO_CHECKPOINT_INTERVAL\n"
	    "  ORCH_LLM_PROVIDER ORCH_LLM_BASE_URL ORCH_LLM_MODEL "
	    "ORCH_LLM_API_KEY\n"
	    "  ORCH_LLM_SCRIPT ORCH_SCRIPTED_TRACE ORCH_LLM_TIMEOUT_S "
	    "ORCH_LLM_MAX_RETRIES\n"
	    "  ORCH_AUTO_APPROVE ORCH_MAX_WORKERS ORCH_MAX_RETRIES "
	    "ORCH_RETRY_BACKOFF_MS\n"
	    "  ORCH_WORKER_TIMEOUT_S ORCH_MAX_STEPS "
	    "ORCH_MAX_REVIEW_ROUNDS ORCH_MAX_VERIFY_ROUNDS\n"
	    "  ORCH_CMD_TIMEOUT_S ORCH_MAX_TOKENS ORCH_VERIFY_COMMAND\n"
	    "  ORCH_SANDBOX_PROFILES_DIR ORCH_WORKER_PATH ORCH_LOG_LEVEL\n"
	    "  ORCH_NOTIFY_URL ORCH_AUDIT_MAX_BYTES ORCH_RETENTION_DAYS "
	    "ORCH_MAX_CONNECTIONS\n"
	    "\nSee orch-supervisor(1), README.md and docs/api.md.\n");
}

int
cli_main(int argc, char **argv)
{
	const char *env_file = NULL;
	int i = 1;

	signal(SIGPIPE, SIG_IGN);
	/* The database, its backups and the socket are the user's alone. */
	umask(077);
	while (i < argc && strcmp(argv[i], "--env-file") == 0) {
		if (i + 1 >= argc) {
			cli_main_usage(stderr);
			return EXIT_USAGE;
		}
		env_file = argv[i + 1];
		i += 2;
	}
	if (i < argc &&
	    (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
		cli_main_usage(stdout);
		return 0;
	}
	if (i < argc && strcmp(argv[i], "--version") == 0) {
		printf("orch-supervisor %s\n", ORCH_VERSION);
		return 0;
	}
	config_load(env_file);
	if (i >= argc)
		return server_run(0, 0, NULL, NULL);
	if (strcmp(argv[i], "--list-resumable") == 0) {
		if (i + 1 != argc) {
			cli_main_usage(stderr);
			return EXIT_USAGE;
		}
		return cli_list(-1, 1, 0);
	}
	if (strcmp(argv[i], "--resume") == 0) {
		int64_t id;
		const char *repo = NULL;
		if (i + 4 == argc && strcmp(argv[i + 2], "--repo") == 0)
			repo = argv[i + 3];
		else if (i + 2 != argc) {
			cli_main_usage(stderr);
			return EXIT_USAGE;
		}
		if (cli_parse_id(argv[i + 1], &id) == -1)
			return EXIT_USAGE;
		return cmd_resume(id, repo);
	}
	for (size_t c = 0; c < nitems(cmds); c++) {
		if (strcmp(argv[i], cmds[c].name) == 0) {
			cli_cmd = &cmds[c];
			optind = 1;
			return cmds[c].fn(argc - i, argv + i);
		}
	}
	fprintf(stderr, "orch-supervisor: unknown command '%s'\n\n", argv[i]);
	cli_main_usage(stderr);
	return EXIT_USAGE;
}
