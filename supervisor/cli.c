/*
 * The commands of orch-supervisor.  Changes go through the running service
 * when there is one (its control socket), else straight to the database
 * while holding the state-directory lock the service would hold; reads
 * open the database read-only.
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

#include "common.h"
#include "config.h"
#include "supervisor.h"

#include <curl/curl.h>

#define EXIT_USAGE   2
#define CLI_DIFF_MAX (256 * 1024 * 1024) /* bytes of a diff show prints */

struct cmd {
	const char *name;
	int (*fn)(int, char **);
	const char *usage;
	const char *help;
};

static const struct cmd *cli_cmd;

/*
 * Text from outside (a model, a repository, a client) as it may be shown to
 * a person: controls and invalid bytes as visible escapes (utf8_show), on
 * a terminal or not, since output piped to a file or a pager reaches a
 * terminal in the end.  A model must not be able to hide part of its plan
 * (ESC[8m), rewrite lines, set the window title or write the clipboard
 * (OSC 52).  The strings live until the slot comes round again: enough for
 * the arguments of one printf.  NULL stays NULL.
 */
static const char *
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
static const char *
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

static int __attribute__((format(printf, 1, 2))) cli_error(const char *fmt, ...)
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

static int
cli_usage(void)
{
	fprintf(stderr, "usage: orch-supervisor %s\n", cli_cmd->usage);
	fprintf(stderr, "Try 'orch-supervisor %s --help'.\n", cli_cmd->name);
	return EXIT_USAGE;
}

static int
cli_help(void)
{
	printf(
	    "usage: orch-supervisor %s\n\n%s\n", cli_cmd->usage, cli_cmd->help);
	return 0;
}

static int
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
static int
cli_open_ro(struct store **st)
{
	struct store_opts so = {cfg.autocheckpoint, 5000};
	char *cause;
	struct stat sb;

	*st = NULL;
	if (stat(cfg.db_path, &sb) == -1 && errno == ENOENT)
		return 0;
	if (store_open(st, cfg.db_path, STORE_RDONLY, &so, &cause) == -1) {
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
static int
cli_writer(struct store **st)
{
	struct store_opts so = {cfg.autocheckpoint, 5000};
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
	if (store_open(st, cfg.db_path, STORE_RW, &so, &cause) == -1) {
		cli_error("%s", cause);
		free(cause);
		return -1;
	}
	return 0;
}

/* POST a change to the service: 0 or 1 (after printing the error). */
static int
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

/* repo: only for resume, a repository to give a task that has none. */
static int
cli_task_op(const char *verb, int64_t id, const char *by, const char *reason,
    const char *repo)
{
	struct store *st;
	char *err, *path;
	int code, rc;

	/* Checked here too, so that both ways below refuse alike. */
	if ((by != NULL && task_check_text("name (--by)", by, TASK_MAX_NAME,
	                       &err, &code) == -1) ||
	    (reason != NULL && task_check_text("reason", reason,
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
		if (by != NULL)
			json_object_set_new(b, "by", json_string(by));
		if (reason != NULL)
			json_object_set_new(b, "reason", json_string(reason));
		if (repo != NULL)
			json_object_set_new(b, "repo", json_string(repo));
		path = xasprintf("/v1/tasks/%lld/%s", (long long)id, verb);
		rc = cli_post(path, b, NULL);
		free(path);
		json_decref(b);
		return rc;
	}
	}
	if (strcmp(verb, "approve") == 0)
		rc = task_approve(st, id, by, &err, &code);
	else if (strcmp(verb, "reject") == 0)
		rc = task_reject(st, id, reason, by, &err, &code);
	else if (strcmp(verb, "cancel") == 0)
		rc = task_cancel(st, id, &err, &code);
	else {
		rc =
		    repo != NULL ? task_set_repo(st, id, repo, &err, &code) : 0;
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

/* The foreground printer: the task's new events, as they are committed. */
struct printer {
	struct store *st;
	int64_t task; /* 0: every task */
	int64_t after;
	int color;
};

static int
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

static void
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

static void
printer_init(struct printer *p, int64_t task)
{
	const char *nc = getenv("NO_COLOR");

	memset(p, 0, sizeof *p);
	p->task = task;
	p->color = isatty(STDOUT_FILENO) && (nc == NULL || *nc == '\0');
}

static int
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
cli_drive(int64_t id)
{
	struct printer p;
	enum wstate state;
	int interactive = isatty(STDIN_FILENO);

	printer_init(&p, id);
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
				if (wstate_stage(state) == NULL)
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
		int rc = cli_task_op(
		    ans == 1 ? "approve" : "reject", id, NULL, reason, NULL);
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

static int
cmd_serve(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--help") == 0)
		return cli_help();
	if (argc > 1)
		return cli_usage();
	return server_run(0, 0, NULL, NULL);
}

/*
 * Read a request from a file, or standard input for "-": at most
 * TASK_MAX_REQUEST bytes of UTF-8 without NUL, its final newlines dropped.
 * 0 with *out (malloc'd), or -1 after printing why.
 */
static int
cli_read_request(const char *path, char **out)
{
	const char *name = strcmp(path, "-") == 0 ? "standard input" : path;
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	size_t len = 0, n;
	char *buf;
	json_t *j;

	*out = NULL;
	if (f == NULL) {
		cli_error("cannot read the request from %s: %s", path,
		    strerror(errno));
		return -1;
	}
	buf = xmalloc(TASK_MAX_REQUEST + 2);
	while (len <= TASK_MAX_REQUEST &&
	       (n = fread(buf + len, 1, TASK_MAX_REQUEST + 1 - len, f)) > 0)
		len += n;
	if (ferror(f)) {
		cli_error("cannot read the request from %s: %s", name,
		    strerror(errno));
		goto fail;
	}
	if (len > TASK_MAX_REQUEST) {
		cli_error("the request in %s is over %d bytes (the limit): "
		          "shorten it, or point to a file in the repository",
		    name, TASK_MAX_REQUEST);
		goto fail;
	}
	buf[len] = '\0';
	if (memchr(buf, '\0', len) != NULL) {
		cli_error(
		    "the request in %s has a NUL byte: is it text?", name);
		goto fail;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	/* jansson checks UTF-8 as it makes a string. */
	if ((j = json_stringn(buf, len)) == NULL) {
		cli_error("the request in %s is not valid UTF-8: convert it "
		          "(iconv -t UTF-8)",
		    name);
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

/* submit and run share their options. */
static int
cli_submit(int argc, char **argv, int64_t *idp)
{
	static const struct option opts[] = {
	    {"repo", required_argument, NULL, 'r'},
	    {"file", required_argument, NULL, 'f'},
	    {"verify", required_argument, NULL, 'v'},
	    {"auto-approve", required_argument, NULL, 'a'},
	    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	const char *repo = NULL, *verify = NULL, *file = NULL;
	int c, aa = cfg.auto_approve, code;
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
	if (file != NULL && cli_read_request(file, &request) == -1)
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
	switch (cli_writer(&st)) {
	case -1:
		c = 1;
		break;
	case 1: {
		json_t *b = json_pack("{s:s,s:s,s:s?,s:s}", "request",
		    tn.request, "repo", abs, "verify", verify, "auto_approve",
		    config_auto_approve_name(aa));
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

static int
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

static int
cmd_run(int argc, char **argv)
{
	int64_t id;
	int rc = cli_submit(argc, argv, &id);

	if (rc == -2)
		return 0;
	if (rc != 0)
		return rc;
	printf("Task %lld submitted.\n", (long long)id);
	fflush(stdout);
	return cli_drive(id);
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

static int
cmd_resume(int64_t id, const char *repo)
{
	char *abs = NULL, *head, *err;
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
	rc = cli_task_op("resume", id, NULL, NULL, abs);
	free(abs);

	if (rc != 0)
		return rc;
	return cli_drive(id);
}

struct list_arg {
	json_t *arr;
	int n;
};

static int
cli_list_cb(const struct task *t, void *arg)
{
	struct list_arg *la = arg;
	char *req;
	size_t n;

	la->n++;
	if (la->arr != NULL) {
		json_array_append_new(la->arr, task_json(NULL, t, 0));
		return 0;
	}
	/* Its first line, at most 60 bytes, cut at a character. */
	n = strcspn(t->request, "\n");
	req = xstrndup(t->request, utf8_head(t->request, n, 60));
	printf("%-5lld %-18s %-33s %-19.19s %s\n", (long long)t->id,
	    tstatus_name(wstate_status(t->state)), wstate_name(t->state),
	    t->updated_at, cli_safe_line(req));
	free(req);
	return 0;
}

static int
cli_list(int status, int resumable, int json)
{
	struct store *st;
	struct list_arg la = {json ? json_array() : NULL, 0};

	if (cli_open_ro(&st) == -1)
		return 1;
	if (!json)
		printf("%-5s %-18s %-33s %-19s %s\n", "ID", "STATUS", "STATE",
		    "UPDATED", "REQUEST");
	if (st != NULL &&
	    store_task_list(st, status, resumable, cli_list_cb, &la) == -1) {
		cli_error("%s", store_error(st));
		store_close(st);
		return 1;
	}
	store_close(st);
	if (json) {
		cli_json_print(la.arr);
		putchar('\n');
		json_decref(la.arr);
	} else if (la.n == 0 && resumable)
		printf("(no resumable tasks)\n");
	return 0;
}

static int
cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"status", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	int c, json = 0, status = -1;
	enum tstatus ts;

	while ((c = getopt_long(argc, argv, "s:jh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (tstatus_parse(optarg, &ts) == -1) {
				cli_error("--status: expected pending, "
				          "in_progress, awaiting_approval, "
				          "completed, failed or cancelled");
				return EXIT_USAGE;
			}
			status = (int)ts;
			break;
		case 'j':
			json = 1;
			break;
		case 'h':
			return cli_help();
		default:
			return cli_usage();
		}
	}
	if (optind != argc)
		return cli_usage();
	return cli_list(status, 0, json);
}

static void
cli_section(const char *title, const char *raw)
{
	char *text;

	if (raw == NULL)
		return;
	text = utf8_show_str(raw);
	printf("\n%s:\n", title);
	for (const char *p = text; *p != '\0';) {
		size_t n = strcspn(p, "\n");
		printf("  %.*s\n", (int)n, p);
		p += n;
		if (*p == '\n')
			p++;
	}
	free(text);
}

/* The review, in words: its verdict and comments. */
static void
cli_show_review(const char *text)
{
	json_t *r = text ? json_loads(text, 0, NULL) : NULL;
	const char *v = json_string_value(json_object_get(r, "verdict"));
	const char *c = json_string_value(json_object_get(r, "comments"));
	char *s;

	if (v == NULL) {
		cli_section("Review", text);
		json_decref(r);
		return;
	}
	s = xasprintf("%s%s%s",
	    strcmp(v, "approve") == 0 ? "approved" : "changes requested",
	    c && *c ? ": " : "", c ? c : "");
	cli_section("Review", s);
	free(s);
	json_decref(r);
}

/* The verification, in words: passed, failed or skipped, and why. */
static void
cli_show_verification(const struct task *t)
{
	const char *text = t->text[TC_VERIFICATION_RESULT];
	json_t *r = text ? json_loads(text, 0, NULL) : NULL;
	const char *st = json_string_value(json_object_get(r, "status"));
	json_t *es = json_object_get(r, "exit_status");
	const char *tail = json_string_value(json_object_get(r, "output_tail"));
	char *s;

	if (st == NULL) {
		if (text != NULL)
			cli_section("Verification", text);
		else if (t->state == WS_COMPLETED)
			cli_section("Verification", "skipped: no --verify "
			                            "command and no "
			                            "ORCH_VERIFY_COMMAND");
		json_decref(r);
		return;
	}
	if (strcmp(st, "skipped") == 0)
		s = xstrdup("skipped: no --verify command and no "
		            "ORCH_VERIFY_COMMAND");
	else
		s = xasprintf("%s: `%s` exited with status %s%lld after %lld "
		              "ms%s%s",
		    st,
		    json_string_value(json_object_get(r, "command"))
		        ? json_string_value(json_object_get(r, "command"))
		        : "?",
		    json_is_integer(es) ? "" : "(none: killed) ",
		    (long long)json_integer_value(es),
		    (long long)json_integer_value(
		        json_object_get(r, "duration_ms")),
		    tail && *tail ? "; its output ends with:\n" : "",
		    tail ? tail : "");
	cli_section("Verification", s);
	free(s);
	json_decref(r);
}

/* Token usage per stage. */
static void
cli_show_usage(struct store *st, int64_t id)
{
	json_t *u, *v;
	const char *k;
	int head = 0;

	if (store_usage_json(st, id, &u) == -1)
		return;
	json_object_foreach(u, k, v) {
		long long calls =
		    json_integer_value(json_object_get(v, "calls"));

		/* A stage that asked no model (verifying) has nothing to say.
		 */
		if (calls == 0)
			continue;
		if (!head++)
			printf("\nUsage:\n");
		printf("  %-13s %4lld calls %8lld tokens in %8lld out\n", k,
		    calls,
		    (long long)json_integer_value(
		        json_object_get(v, "tokens_in")),
		    (long long)json_integer_value(
		        json_object_get(v, "tokens_out")));
	}
	json_decref(u);
}

/*
 * The whole change awaiting approval: a person approves what they saw, all
 * of it (the reviewer's request may have held only its head), every
 * control in it shown as an escape.
 */
static void
cli_show_diff(struct store *st, const struct task *t)
{
	char *diff, *err, *shown;
	size_t total;

	if (task_diff(st, t, CLI_DIFF_MAX, &diff, &total, &err) == -1) {
		printf("\nDiff: (cannot be shown: %s)\n", cli_safe(err));
		free(err);
		return;
	}
	shown = utf8_show(diff, utf8_head(diff, strlen(diff), CLI_DIFF_MAX),
	    UTF8_SHOW_NL | UTF8_SHOW_TAB);
	printf("\nDiff (the whole change, %zu bytes):\n%s", total,
	    *shown != '\0' ? shown : "(no changes)\n");
	if (total > strlen(diff))
		printf("\n[... %zu more bytes: see the git diff command above "
		       "...]\n",
		    total - strlen(diff));
	free(shown);
	free(diff);
}

static int
cli_show_cp(const struct checkpoint *cp, void *arg)
{
	(void)arg;
	printf("  %-19.19s  %s\n", cp->created_at, cli_safe_line(cp->name));
	return 0;
}

static int
cmd_show(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	struct store *st;
	struct task *t;
	int64_t id;
	int c, json = 0;

	while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = 1;
			break;
		case 'h':
			return cli_help();
		default:
			return cli_usage();
		}
	}
	if (optind != argc - 1)
		return cli_usage();
	if (cli_parse_id(argv[optind], &id) == -1)
		return EXIT_USAGE;
	if (cli_open_ro(&st) == -1)
		return 1;
	if (st == NULL || store_task_get(st, id, &t) == -1 || t == NULL) {
		store_close(st);
		return cli_error(
		    "no task %lld (see `orch-supervisor list`)", (long long)id);
	}
	if (json) {
		json_t *o = task_json(st, t, 1);
		cli_json_print(o);
		putchar('\n');
		json_decref(o);
		goto out;
	}
	printf("Task %lld: %s (%s)\n", (long long)t->id, wstate_name(t->state),
	    tstatus_name(wstate_status(t->state)));
	printf("Request:  %s\n", cli_safe(t->request));
	printf("Repo:     %s (base %.12s)\n", t->repo ? cli_safe(t->repo) : "-",
	    t->base_commit ? cli_safe_line(t->base_commit) : "-");
	printf("Created:  %s   Updated: %s\n", t->created_at, t->updated_at);
	printf("Restarts: %lld   Tokens: %lld in, %lld out\n",
	    (long long)t->ival[TI_RETRY_COUNT], (long long)t->tokens_in,
	    (long long)t->tokens_out);
	cli_section("Plan", t->text[TC_PLAN]);
	if (t->text[TC_PLAN_APPROVED_AT])
		printf("  (approved by %s at %s)\n",
		    t->text[TC_PLAN_APPROVED_BY]
		        ? cli_safe_line(t->text[TC_PLAN_APPROVED_BY])
		        : "?",
		    cli_safe_line(t->text[TC_PLAN_APPROVED_AT]));
	cli_section("Plan rejected because", t->text[TC_PLAN_REJECTION_REASON]);
	cli_section("Implementation", t->text[TC_IMPLEMENTATION]);
	cli_section("Implementation rejected because",
	    t->text[TC_IMPLEMENTATION_REJECTION_REASON]);
	cli_show_review(t->text[TC_REVIEW]);
	cli_show_verification(t);
	cli_section("Error", t->text[TC_ERROR_DETAILS]);
	cli_show_usage(st, id);
	printf("\nCheckpoints:\n");
	store_checkpoint_list(st, id, cli_show_cp, NULL);
	if (t->text[TC_IMPLEMENTATION] != NULL) {
		char *branch = task_branch(st, t);

		char *b = utf8_show(branch, strlen(branch), 0);
		const char *repo = cli_safe_line(t->repo);

		printf("\nResult: branch %s in %s\n  git -C %s diff "
		       "%.12s...%s\n",
		    b, repo, repo, cli_safe_line(t->base_commit), b);
		free(b);
		free(branch);
	}
	if (t->state == WS_IMPLEMENTATION_AWAITING_APPROVAL)
		cli_show_diff(st, t);
	if (wstate_status(t->state) == TS_AWAITING_APPROVAL)
		printf("\nWaiting for approval: orch-supervisor approve %lld | "
		       "reject %lld --reason TEXT\n",
		    (long long)id, (long long)id);
out:
	task_free(t);
	store_close(st);
	return 0;
}

static volatile int cli_interrupted;

static void
cli_sigint(int sig)
{
	(void)sig;
	cli_interrupted = 1;
}

/* An event from the service's stream, printed as the database's are. */
static int
cli_sse_cb(json_t *o, void *arg)
{
	struct printer *p = arg;
	struct event_row ev = {0};

	ev.state = WS_MAX; /* the printer shows the text, not the state */
	ev.id = json_integer_value(json_object_get(o, "id"));
	ev.task = json_integer_value(json_object_get(o, "task"));
	ev.ts = json_string_value(json_object_get(o, "ts"));
	ev.kind = json_string_value(json_object_get(o, "kind"));
	ev.stage = json_string_value(json_object_get(o, "stage"));
	ev.text = json_string_value(json_object_get(o, "text"));
	if (ev.ts == NULL || ev.kind == NULL || ev.text == NULL)
		return 0;
	if (ev.id > p->after) {
		printer_event_cb(&ev, p);
		fflush(stdout);
	}
	return 0;
}

/*
 * logs -f: through the service's event stream while it runs (it ends the
 * stream when the task ends), else by reading the database every 100 ms;
 * when the service stops or starts meanwhile, the other way takes over
 * from the last event printed.
 */
static int
cli_follow(struct printer *p, int64_t id)
{
	enum wstate state;

	for (;;) {
		if (cli_interrupted)
			return 0;
		if (client_service_running()) {
			char *path, *err = NULL;
			int ended, rc;

			path = id != 0
			           ? xasprintf("/v1/tasks/%lld/events?"
			                       "follow=1&after=%lld",
			                 (long long)id, (long long)p->after)
			           : xasprintf("/v1/events?follow=1&after=%lld",
			                 (long long)p->after);
			rc = client_follow(path, cli_sse_cb, p,
			    &cli_interrupted, &ended, &err);
			free(path);
			if (rc == -1) {
				cli_error("%s", err);
				free(err);
				return 1;
			}
			if (ended || cli_interrupted)
				return 0;
			continue; /* the service stopped: the database */
		}
		printer_tick(p);
		if (id != 0 && cli_task_state(id, &state) == 0 &&
		    (state == WS_COMPLETED || state == WS_FAILED ||
		        state == WS_CANCELLED)) {
			printer_tick(p);
			return 0;
		}
		usleep(100 * 1000);
	}
}

static int
cmd_logs(int argc, char **argv)
{
	static const struct option opts[] = {{"follow", no_argument, NULL, 'f'},
	    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	struct printer p;
	int64_t id = 0;
	int c, follow = 0, rc;

	while ((c = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			follow = 1;
			break;
		case 'h':
			return cli_help();
		default:
			return cli_usage();
		}
	}
	if (optind < argc - 1)
		return cli_usage();
	if (optind == argc - 1 && cli_parse_id(argv[optind], &id) == -1)
		return EXIT_USAGE;
	printer_init(&p, id);
	if (cli_open_ro(&p.st) == -1)
		return 1;
	if (id != 0) {
		struct task *t = NULL;
		if (p.st == NULL || store_task_get(p.st, id, &t) == -1 ||
		    t == NULL) {
			store_close(p.st);
			return cli_error("no task %lld", (long long)id);
		}
		task_free(t);
	}
	printer_tick(&p);
	if (!follow) {
		store_close(p.st);
		return 0;
	}
	signal(SIGINT, cli_sigint);
	signal(SIGTERM, cli_sigint);
	rc = cli_follow(&p, id);
	store_close(p.st);
	return rc;
}

static int
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

static int
cmd_approve(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"by", required_argument, NULL, 'b'},
	    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	const char *by = NULL, *reason = NULL;
	int64_t id;
	int rc = cli_one_id(argc, argv, &id, "b:h", opts, &by, &reason);

	if (rc != -1)
		return rc;
	if ((rc = cli_task_op("approve", id, by, NULL, NULL)) == 0)
		printf("Task %lld approved.\n", (long long)id);
	return rc;
}

static int
cmd_reject(int argc, char **argv)
{
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
	if ((rc = cli_task_op("reject", id, by, reason, NULL)) == 0)
		printf("Task %lld rejected.\n", (long long)id);
	return rc;
}

static int
cmd_cancel(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	const char *by = NULL, *reason = NULL;
	int64_t id;
	int rc = cli_one_id(argc, argv, &id, "h", opts, &by, &reason);

	if (rc != -1)
		return rc;
	if ((rc = cli_task_op("cancel", id, NULL, NULL, NULL)) == 0)
		printf("Task %lld cancelled.\n", (long long)id);
	return rc;
}

static int
cmd_stats(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	struct store *st;
	json_t *s, *by;
	const char *k;
	json_t *v;
	int c, json = 0;

	while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = 1;
			break;
		case 'h':
			return cli_help();
		default:
			return cli_usage();
		}
	}
	if (optind != argc)
		return cli_usage();
	if (cli_open_ro(&st) == -1)
		return 1;
	if (st == NULL)
		return cli_error(
		    "no database at %s yet (submit a task first)", cfg.db_path);
	if (store_stats_json(st, &s) == -1) {
		cli_error("%s", store_error(st));
		store_close(st);
		return 1;
	}
	store_close(st);
	if (json) {
		cli_json_print(s);
		putchar('\n');
	} else {
		printf("tasks: %lld\n",
		    (long long)json_integer_value(json_object_get(s, "tasks")));
		by = json_object_get(s, "by_status");
		json_object_foreach(by, k, v)
			printf("  %-18s %lld\n", k,
			    (long long)json_integer_value(v));
		json_object_foreach(s, k, v) {
			if (json_is_integer(v) && strcmp(k, "tasks") != 0)
				printf("%s: %lld\n", k,
				    (long long)json_integer_value(v));
		}
	}
	json_decref(s);
	return 0;
}

static int
cmd_backup(int argc, char **argv)
{
	struct store *st;
	char *dest;
	int rc = 0;

	if (argc > 1 && strcmp(argv[1], "--help") == 0)
		return cli_help();
	if (argc > 2 || (argc == 2 && argv[1][0] == '-'))
		return cli_usage();
	if (cli_open_ro(&st) == -1)
		return 1;
	if (st == NULL)
		return cli_error("no database at %s to back up", cfg.db_path);
	if (argc == 2)
		dest = xstrdup(argv[1]);
	else {
		char ts[32];
		time_t now = time(NULL);
		struct tm tm;

		gmtime_r(&now, &tm);
		strftime(ts, sizeof ts, "%Y%m%d-%H%M%S", &tm);
		char *dir = xasprintf("%s/backups", cfg.state_dir);
		mkdir(dir, 0700);
		free(dir);
		dest = xasprintf("%s/backups/tasks-%s.db", cfg.state_dir, ts);
	}
	if (store_backup(st, dest) == -1)
		rc =
		    cli_error("backup to %s failed: %s", dest, store_error(st));
	else
		printf("%s\n", dest);
	free(dest);
	store_close(st);
	return rc;
}

static size_t
cli_discard_cb(char *d, size_t size, size_t n, void *arg)
{
	(void)d;
	(void)arg;
	return size * n;
}

/*
 * A real request to the configured LLM endpoint: the models list, which
 * costs nothing and needs the key.  0 when it answers 2xx; 1 (a warning)
 * when it answers but that says nothing sure about the settings; -1 when
 * they are wrong: the endpoint cannot be reached (refused, DNS, TLS) or
 * the key is refused.  *why says what is wrong and the fix.
 */
static int
cli_llm_probe(char **what, char **why)
{
	const struct provider *p = provider_find(cfg.provider);
	int anthropic = strcmp(cfg.provider, "anthropic") == 0;
	struct curl_slist *h = NULL;
	char *url, *hdr = NULL;
	long code = 0;
	CURLcode rc;
	CURL *c;
	int ret = -1;

	if (p == NULL) {
		*what = xasprintf("LLM provider %s", cfg.provider);
		*why = xstrdup("no such provider: set ORCH_LLM_PROVIDER to "
		               "openai, anthropic or scripted");
		return -1;
	}
	url = provider_url(p, cfg.base_url, "/models");
	*what =
	    xasprintf("LLM endpoint %s answers (GET %s)", cfg.provider, url);
	if (cfg.api_key != NULL) {
		hdr = xasprintf("%s%s", p->key_header, cfg.api_key);
		h = curl_slist_append(h, hdr);
	}
	if (p->fixed_header != NULL)
		h = curl_slist_append(h, p->fixed_header);
	c = curl_easy_init();
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, cli_discard_cb);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 15L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	if (hdr != NULL) {
		explicit_bzero(hdr, strlen(hdr));
		free(hdr);
	}
	*why = NULL;
	if (rc != CURLE_OK)
		*why = xasprintf("%s: check ORCH_LLM_BASE_URL, the network "
		                 "and any proxy",
		    curl_easy_strerror(rc));
	else if (code == 401 || code == 403)
		*why = xasprintf("HTTP %ld, the key is refused: set a valid "
		                 "ORCH_LLM_API_KEY",
		    code);
	else if (code == 404 && anthropic)
		*why = xasprintf("HTTP 404, no such endpoint: check "
		                 "ORCH_LLM_BASE_URL (%s)",
		    url);
	else if (code == 404 || code == 405) {
		/* Some OpenAI-compatible servers and proxies have no models
		 * list: the server was reached, and tasks may well work. */
		*why = xasprintf("HTTP %ld: this server has no models list, so "
		                 "the key and the model are not checked (if "
		                 "tasks fail to reach the model, check "
		                 "ORCH_LLM_BASE_URL)",
		    code);
		ret = 1;
	} else if (code == 429) {
		*why = xstrdup("HTTP 429, rate limited or out of credit: "
		               "check the account");
		ret = 1;
	} else if (code < 200 || code >= 300) {
		*why = xasprintf("HTTP %ld: the endpoint is not working "
		                 "(check the provider's status)",
		    code);
		ret = 1;
	} else
		ret = 0;
	free(url);
	return ret;
}

static int
cmd_doctor(int argc, char **argv)
{
	struct store *st;
	struct statvfs vfs;
	struct stat sb;
	int bad = 0, okdb;
	char *cause, *what, *dir;
	char *const git[] = {(char *)"git", (char *)"--version", NULL};

	if (argc > 1 && strcmp(argv[1], "--help") == 0)
		return cli_help();
	if (argc > 1)
		return cli_usage();
/* One check's line; ok is evaluated once. */
#define CHECK(ok, what, fix)                                                   \
	do {                                                                   \
		int ok_ = (ok);                                                \
		printf("%s %s%s%s\n", ok_ ? "ok  " : "FAIL", (what),           \
		    ok_ ? "" : ": ", ok_ ? "" : (fix));                        \
		if (!ok_)                                                      \
			bad = 1;                                               \
	} while (0)
	printf("orch-supervisor %s, state %s\n", ORCH_VERSION, cfg.state_dir);
	CHECK(run_quiet(git) == 0, "git", "install git (apt-get install git)");
	cause = NULL;
	CHECK(doctor_sandbox(&cause) == 0,
	    "bubblewrap creates its namespaces (user, pid, net, mount)",
	    cause ? cause : "");
	free(cause);
	/*
	 * Memory and processes: per-command cgroups, or the way without
	 * them; as root without cgroups nothing bounds a command's processes.
	 */
	if (doctor_limits(&what) == 0 && geteuid() == 0)
		printf("WARN sandbox limits: %s\n", what);
	else
		printf("ok   sandbox limits: %s\n", what);
	free(what);
	CHECK(access(config_worker_path(), X_OK) == 0, "worker program",
	    "orch-worker is missing: reinstall, or set ORCH_WORKER_PATH");
	dir = config_profiles_dir();
	for (size_t i = 0; i < (size_t)STAGE_MAX; i++) {
		cause = NULL;
		what = xasprintf("sandbox profile %s/%s.profile", dir,
		    stage_name((enum stage)i));
		CHECK(
		    doctor_profile(dir, stage_name((enum stage)i), &cause) == 0,
		    what, cause ? cause : "");
		free(what);
		free(cause);
	}
	free(dir);
	if (cli_open_ro(&st) == -1)
		CHECK(0, "database", "see the message above");
	else if (st == NULL)
		printf("ok   database (none yet at %s)\n", cfg.db_path);
	else {
		int ok = 0;
		char *wal = xasprintf("%s-wal", cfg.db_path);
		long long walmb = stat(wal, &sb) == 0
		                      ? (long long)sb.st_size / (1024 * 1024)
		                      : 0;
		free(wal);
		okdb = store_integrity(st, &ok) == 0 && ok;
		what = xasprintf("database %s (schema %d, WAL %lld MB)",
		    cfg.db_path, store_schema_version(st), walmb);
		CHECK(okdb, what,
		    "the integrity check failed: restore a backup "
		    "(orch-supervisor backup makes them; see docs/service.md)");
		free(what);
		CHECK(walmb < 512, "the WAL file is checkpointed",
		    "it is over 512 MB: a reader holds it open; restart the "
		    "service, then run orch-supervisor gc");
		store_close(st);
	}
	if (statvfs(cfg.state_dir, &vfs) == 0) {
		unsigned long long mb = (unsigned long long)vfs.f_bavail *
		                        vfs.f_frsize / (1024 * 1024);
		what = xasprintf(
		    "disk space: %llu MB free in %s", mb, cfg.state_dir);
		CHECK(mb >= 100, what,
		    "less than 100 MB free: free some, or run "
		    "orch-supervisor gc");
		free(what);
	}
	if (strcmp(cfg.provider, "scripted") == 0)
		printf("ok   LLM provider: scripted (offline%s; nothing to "
		       "check)\n",
		    cfg.script ? ", ORCH_LLM_SCRIPT"
		               : ", built-in demo script");
	else {
		char *why;
		int rc = cli_llm_probe(&what, &why);
		if (rc == 1)
			printf("warn %s: %s\n", what, why);
		else
			CHECK(rc == 0, what, why ? why : "");
		free(what);
		free(why);
	}
	if (cfg.notify_url != NULL)
		printf("ok   notifications go to %s\n", cfg.notify_url);
#undef CHECK
	return bad;
}

static int
cmd_gc(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"older-than", required_argument, NULL, 'o'},
	    {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	unsigned days = cfg.retention_days;
	struct store *st;
	json_t *r = NULL;
	uint64_t v;
	char *err;
	int c, json = 0, rc = 0;

	while ((c = getopt_long(argc, argv, "o:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			if (parse_u64(optarg, 0, 36500, &v) == -1) {
				cli_error("--older-than: expected a number of "
				          "days from 0 to 36500");
				return EXIT_USAGE;
			}
			days = (unsigned)v;
			break;
		case 'j':
			json = 1;
			break;
		case 'h':
			return cli_help();
		default:
			return cli_usage();
		}
	}
	if (optind != argc)
		return cli_usage();
	switch (cli_writer(&st)) {
	case -1:
		return 1;
	case 1: {
		json_t *b = json_pack("{s:i}", "older_than_days", (int)days);
		rc = cli_post("/v1/gc", b, &r);
		json_decref(b);
		if (rc != 0)
			return rc;
		break;
	}
	default:
		if (gc_run(st, days, &r, &err) == -1) {
			rc = cli_error("gc: %s", err);
			free(err);
		}
		store_close(st);
		if (rc != 0)
			return rc;
	}
	if (json) {
		cli_json_print(r);
		putchar('\n');
	} else
		printf("Trimmed %lld finished tasks older than %u days: %lld "
		       "events, %lld journal rows, %lld worktrees, %lld "
		       "snapshot refs; database %lld -> %lld bytes.\n",
		    (long long)json_integer_value(json_object_get(r, "tasks")),
		    days,
		    (long long)json_integer_value(json_object_get(r, "events")),
		    (long long)json_integer_value(
		        json_object_get(r, "journal")),
		    (long long)json_integer_value(
		        json_object_get(r, "worktrees")),
		    (long long)json_integer_value(json_object_get(r, "refs")),
		    (long long)json_integer_value(
		        json_object_get(r, "db_bytes_before")),
		    (long long)json_integer_value(
		        json_object_get(r, "db_bytes_after")));
	json_decref(r);
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
	    "\nvariables (environment or .env): ORCH_STATE_DIR DB_PATH\n"
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
