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
#include "task.h"

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
static void
cli_json_write(const json_t *j, size_t flags)
{
	char *s = json_dumps(j, flags);
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

void
cli_json_print(const json_t *j)
{
	cli_json_write(j, JSON_INDENT(2));
}

void
cli_json_line(const json_t *j)
{
	cli_json_write(j, JSON_COMPACT);
	putchar('\n');
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
 * Open the database for reading, which must exist: a command that has
 * nothing to show without one says so, with what the user can do (why).
 */
int
cli_open_existing(struct store **st, const char *why)
{
	char *name;

	if (cli_open_ro(st) == -1)
		return -1;
	if (*st != NULL)
		return 0;
	name = server_store_name();
	cli_error("no database at %s %s", name, why);
	free(name);
	return -1;
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
	/*
	 * PostgreSQL: services elsewhere are nodes sharing the database.  A
	 * direct write is one transaction that takes no lease: it waits for
	 * a node's write on the same task row, the node's fence sees it
	 * (a cancel), and the nodes hear of it (NOTIFY orch_tasks).
	 */
	if (strcmp(store_backend(*st), "postgresql") == 0)
		return 0;
	/* SQLite: no service on this state directory. */
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

/* Does the event pass the printer's filters (--stage, --kind, --since)? */
static int
printer_wants(const struct printer *p, const struct event_row *ev)
{
	if (p->stage != NULL &&
	    (ev->stage == NULL || strcmp(ev->stage, p->stage) != 0))
		return 0;
	if (p->kinds != 0) {
		unsigned k;

		for (k = 0; k < EV_MAX; k++) {
			if (strcmp(ev->kind, event_kind_name(k)) == 0)
				break;
		}
		if (k == EV_MAX || (p->kinds & (1u << k)) == 0)
			return 0;
	}
	return p->since == NULL || strcmp(ev->ts, p->since) >= 0;
}

/* The colour of an event on a terminal. */
static const char *
printer_color(const struct event_row *ev)
{
	if (strcmp(ev->kind, "state") == 0)
		return "\033[1;36m";
	if (strcmp(ev->kind, "error") == 0)
		return "\033[1;31m";
	if (strcmp(ev->kind, "model") == 0)
		return "\033[2m";
	if (strcmp(ev->kind, "checkpoint") == 0)
		return "\033[34m";
	if (strcmp(ev->kind, "result") == 0)
		return ev->data != NULL &&
		               strstr(ev->data, "\"outcome\":\"error\"") != NULL
		           ? "\033[31m"
		           : "\033[32m";
	return "";
}

/*
 * One event for a person: the time, the task (when following them all),
 * the stage, the text escaped.  A result goes under its call, indented,
 * its further lines (a command's output tail) marked so that no output
 * can pass for a line of the log.
 */
int
printer_event_cb(const struct event_row *ev, void *arg)
{
	struct printer *p = arg;
	const char *on = "", *off = "";
	const char *t = strchr(ev->ts, ' ');

	p->after = ev->id;
	if (!printer_wants(p, ev))
		return 0;
	if (p->json) {
		json_t *o = task_event_json(ev);

		if (o != NULL)
			cli_json_line(o);
		json_decref(o);
		return 0;
	}
	if (p->color) {
		on = printer_color(ev);
		off = *on != '\0' ? "\033[0m" : "";
	}
	printf("%s%.12s", on, cli_safe_line(t ? t + 1 : ev->ts));
	if (p->task == 0)
		printf(" #%lld", (long long)ev->task);
	printf(" [%s]", cli_safe_line(ev->stage ? ev->stage : ev->kind));
	if (strcmp(ev->kind, "state") == 0)
		printf(" ==> %s%s\n", cli_safe(ev->text), off);
	else if (strcmp(ev->kind, "result") == 0) {
		const char *s = cli_safe(ev->text), *nl;

		if (s == NULL)
			s = "";
		nl = strchr(s, '\n');
		printf("   -> %.*s%s\n", nl ? (int)(nl - s) : (int)strlen(s), s,
		    off);
		while (nl != NULL) {
			const char *line = nl + 1;

			nl = strchr(line, '\n');
			printf("%s      | %.*s%s\n", on,
			    nl ? (int)(nl - line) : (int)strlen(line), line,
			    off);
		}
	} else
		printf(" %s%s\n", cli_safe(ev->text), off);
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

int
cli_task_paused(int64_t id)
{
	struct store *st;
	struct task *t;
	int paused;

	if (cli_open_ro(&st) == -1 || st == NULL)
		return -1;
	if (store_task_get(st, id, &t) == -1 || t == NULL) {
		store_close(st);
		return -1;
	}
	paused = t->ival[TI_BUDGET_PAUSED] != 0;
	task_free(t);
	store_close(st);
	return paused;
}

static const struct cmd cmds[] = {
    {"serve", cmd_serve, "serve",
        "Run the service in the foreground: resumes unfinished tasks\n"
        "(ORCH_ENABLE_RESUME), runs queued ones, answers the control "
        "socket.\nSIGTERM/SIGINT stop it; tasks stay resumable."},
    {"submit", cmd_submit,
        "submit \"REQUEST\"|-|--file F --repo DIR [--verify CMD] "
        "[--auto-approve plan|implementation|all] [--max-tokens N] "
        "[--max-cost X]",
        "Queue a task and print its id.  A long request comes from a\n"
        "file (--file F) or standard input (-): up to 512 KiB of UTF-8.\n"
        "--max-tokens and --max-cost give it a budget of its own (else\n"
        "ORCH_MAX_TOKENS, ORCH_MAX_COST): reached, it waits for a person."},
    {"run", cmd_run,
        "run \"REQUEST\"|-|--file F --repo DIR [--verify CMD] "
        "[--auto-approve plan|implementation|all] [--max-tokens N] "
        "[--max-cost X]",
        "Submit a task and drive it in the foreground, printing its log.\n"
        "On a terminal it asks at approval gates."},
    {"list", cmd_list, "list [--status S] [--json]",
        "List tasks, optionally of one status (pending, in_progress,\n"
        "awaiting_approval, completed, failed, cancelled)."},
    {"show", cmd_show, "show ID [--json]",
        "Show a task: request, states, plan, review, verification, "
        "checkpoints."},
    {"logs", cmd_logs,
        "logs [ID] [-f] [--json] [--stage S] [--since T] [--kind K]",
        "Print a task's event log (every task's without ID, each line "
        "with\nthe task's id); -f follows it live and stops when the task "
        "ends.\nA tool's result is shown indented under its call.\n"
        "  --json       one JSON object per line: id, ts, task, kind, "
        "stage,\n               text, state and the event's facts\n"
        "  --stage S    only that stage's events\n"
        "  --since T    only events from T on: UTC \"2026-11-30 12:00\" "
        "or a\n               time ago: 90s, 10m, 2h, 1d\n"
        "  --kind K     only these kinds (comma-separated): state, tool,\n"
        "               result, checkpoint, model, info, error\n"
        "Colour on a terminal; none with NO_COLOR or when piped."},
    {"approve", cmd_approve,
        "approve ID [--by NAME] [--plan-file F | --edit] [--budget N] "
        "[--max-cost X]",
        "Approve the plan or the implementation awaiting approval, or let\n"
        "a task waiting at its budget go on.\n"
        "  --plan-file F approve the plan in F instead of the model's\n"
        "  --edit        open the plan in $EDITOR first; the implementer\n"
        "                gets the edited plan, a plan_edited checkpoint\n"
        "                records who\n"
        "  --budget N    the task's token budget becomes N\n"
        "  --max-cost X  its cost budget becomes X (needs "
        "ORCH_LLM_PRICES)"},
    {"reject", cmd_reject, "reject ID --reason TEXT [--by NAME]",
        "Reject the plan (it is planned again with the reason) or the\n"
        "implementation (it is implemented again with the reason)."},
    {"cancel", cmd_cancel, "cancel ID", "Cancel a task."},
    {"stats", cmd_stats, "stats [--json]",
        "Counts by status, token usage, database size."},
    {"nodes", cmd_nodes, "nodes [--json]",
        "The services sharing the PostgreSQL database (ORCH_DATABASE_URL):\n"
        "each node's name, whether it is live, its last heartbeat and how\n"
        "long ago (the database's clock), and running tasks/capacity."},
    {"backup", cmd_backup, "backup [PATH]",
        "Online, consistent copy of the database (default: "
        "$ORCH_STATE_DIR/backups/)."},
    {"gc", cmd_gc, "gc [--older-than DAYS] [--json]",
        "Remove the worktrees, event logs, journals and audit files of\n"
        "tasks finished (completed, failed, cancelled) at least DAYS ago\n"
        "(default ORCH_RETENTION_DAYS, 30); task rows, checkpoints, usage\n"
        "and git branches stay.  Then VACUUM.  Through the service when it\n"
        "runs."},
    {"console-url", cmd_console_url, "console-url [--token]",
        "Print the web console's address (ORCH_HTTP_LISTEN) with its\n"
        "token in the fragment, to open in a browser; --token prints\n"
        "only the token (ORCH_HTTP_TOKEN, else $ORCH_STATE_DIR/http-token,\n"
        "made when missing)."},
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
	fprintf(f,
	    "usage: orch-supervisor [--env-file FILE] COMMAND [ARGS]\n"
	    "       orch-supervisor --list-resumable\n"
	    "       orch-supervisor --resume ID [--repo DIR] [--full]\n\n"
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
	    "  ORCH_LLM_FALLBACK_MODELS ORCH_SANDBOX_PROFILES_DIR\n"
	    "  ORCH_WORKER_PATH ORCH_MODEL_PATH ORCH_LOG_LEVEL\n"
	    "  ORCH_NOTIFY_URL ORCH_AUDIT_MAX_BYTES ORCH_RETENTION_DAYS "
	    "ORCH_MAX_CONNECTIONS\n"
	    "  ORCH_HTTP_LISTEN ORCH_HTTP_TOKEN ORCH_REPOS\n"
	    "  ORCH_LLM_PRICES ORCH_MAX_COST ORCH_SNAPSHOT_MAX_FILE_BYTES\n"
	    "  ORCH_NODE_NAME ORCH_LEASE_S ORCH_MAX_TASKS_PER_REPO\n"
	    "\nSee orch-supervisor(1), README.md and docs/api.md.\n");
}

/*
 * Started with stdin, stdout or stderr closed (a cron job, `cmd <&- >&-`),
 * the first descriptors we open (the database's socket, a log file) would
 * take their numbers, and a printf would then write into the database
 * connection: give each closed one /dev/null first.
 */
static void
cli_stdio_guard(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
			continue;
		if (open("/dev/null", O_RDWR) != fd)
			_exit(1);
	}
}

int
cli_main(int argc, char **argv)
{
	const char *env_file = NULL;
	int i = 1;

	cli_stdio_guard();
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
		int full = 0, j;

		if (i + 2 > argc) {
			cli_main_usage(stderr);
			return EXIT_USAGE;
		}
		for (j = i + 2; j < argc; j++) {
			if (strcmp(argv[j], "--full") == 0)
				full = 1;
			else if (strcmp(argv[j], "--repo") == 0 &&
			         j + 1 < argc && repo == NULL)
				repo = argv[++j];
			else {
				cli_main_usage(stderr);
				return EXIT_USAGE;
			}
		}
		if (cli_parse_id(argv[i + 1], &id) == -1)
			return EXIT_USAGE;
		return cmd_resume(id, repo, full);
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
