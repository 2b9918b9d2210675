/*
 * Commands that read tasks: list, show, logs.
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
#include "config.h"
#include "client.h"
#include "proto.h"
#include "task.h"

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
	    tstatus_name(task_status(t)), wstate_name(t->state), t->updated_at,
	    cli_safe_line(req));
	free(req);
	return 0;
}

int
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

int
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

/* The task's cost, when ORCH_LLM_PRICES gives prices: else nothing. */
static void
cli_show_cost(struct store *st, int64_t id)
{
	json_t *c = task_cost_json(st, id), *u, *m;
	size_t i;

	if (c == NULL)
		return;
	printf("Cost:     %.4f (ORCH_LLM_PRICES)",
	    json_real_value(json_object_get(c, "total")));
	u = json_object_get(c, "unpriced_models");
	json_array_foreach(u, i, m)
		printf("%s%s", i == 0 ? "; no price for " : ", ",
		    cli_safe_line(json_string_value(m)));
	putchar('\n');
	json_decref(c);
}

int
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
	    tstatus_name(task_status(t)));
	printf("Request:  %s\n", cli_safe(t->request));
	printf("Repo:     %s (base %.12s)\n", t->repo ? cli_safe(t->repo) : "-",
	    t->base_commit ? cli_safe_line(t->base_commit) : "-");
	printf("Created:  %s   Updated: %s\n", t->created_at, t->updated_at);
	if (t->node != NULL)
		printf("Node:     %s\n", cli_safe_line(t->node));
	printf("Restarts: %lld   Tokens: %lld in, %lld out\n",
	    (long long)t->ival[TI_RETRY_COUNT], (long long)t->tokens_in,
	    (long long)t->tokens_out);
	cli_show_cost(st, id);
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
	char *loc = task_result_location(st, t);
	if (loc != NULL) {
		char *branch = task_branch(st, t);
		char *b = utf8_show(branch, strlen(branch), 0);

		printf("\nResult: %s\n", cli_safe_line(loc));
		if (t->state == WS_COMPLETED && t->repo != NULL)
			printf("  git fetch %.*s %s\n",
			    (int)strcspn(t->repo, "#"), cli_safe_line(t->repo),
			    b);
		free(b);
		free(branch);
	} else if (t->text[TC_IMPLEMENTATION] != NULL) {
		char *branch = task_branch(st, t);

		char *b = utf8_show(branch, strlen(branch), 0);
		const char *repo = cli_safe_line(t->repo);

		printf("\nResult: branch %s in %s\n  git -C %s diff "
		       "%.12s...%s\n",
		    b, repo, repo, cli_safe_line(t->base_commit), b);
		free(b);
		free(branch);
	}
	free(loc);
	if (t->state == WS_IMPLEMENTATION_AWAITING_APPROVAL)
		cli_show_diff(st, t);
	if (t->ival[TI_BUDGET_PAUSED]) {
		char *why = task_over_budget(st, t);

		printf("\nWaiting for a person at its budget: %s\n",
		    why != NULL ? cli_safe(why)
		                : "(raised already: it goes on when the "
		                  "service runs)");
		free(why);
	} else if (wstate_status(t->state) == TS_AWAITING_APPROVAL)
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
	if (wstate_parse(json_string_value(json_object_get(o, "state")),
	        &ev.state) == -1)
		ev.state = WS_MAX;
	/* The facts are the fields beside the row's own. */
	json_t *facts = json_deep_copy(o);
	char *data;
	static const char *const own[] = {
	    "id", "task", "ts", "kind", "stage", "text", "state"};
	for (size_t i = 0; i < nitems(own); i++)
		json_object_del(facts, own[i]);
	data = json_object_size(facts) > 0
	           ? json_dumps(facts, JSON_COMPACT | JSON_SORT_KEYS)
	           : NULL;
	json_decref(facts);
	ev.data = data;
	if (ev.id > p->after) {
		printer_event_cb(&ev, p);
		fflush(stdout);
	}
	free(data);
	return 0;
}

/*
 * logs -f: through the service's event stream while it runs (it ends the
 * stream when the task ends; not on PostgreSQL, where other nodes' events
 * are only in the database), else by reading the database every 100 ms
 * (on PostgreSQL when a NOTIFY says that events were committed);
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
		/* PostgreSQL: the tasks may run on other nodes, whose events
		 * the local service does not stream; the database has all. */
		if (cfg.database_url == NULL && client_service_running()) {
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
		/* PostgreSQL tells when events commit (a slow poll still
		 * reads every second); SQLite is read every 100 ms. */
		if (p->st == NULL || store_wait_events(p->st, 1000) == -1)
			usleep(100 * 1000);
	}
}

/*
 * --since T as the events' timestamps are written (UTC, "YYYY-MM-DD
 * HH:MM:SS.sss"), so that it compares as text: a date and time
 * ("2026-11-30 12:00", "2026-11-30T12:00:05", "2026-11-30") or a time ago
 * ("90s", "10m", "2h", "1d").  -1 when it is neither.
 */
static int
logs_since(const char *arg, char *out, size_t outsz)
{
	char *end;
	unsigned long long n;
	static const char digits[] = "0123456789";

	if (*arg >= '0' && *arg <= '9' && strlen(arg) < 12 &&
	    strspn(arg, digits) == strlen(arg) - 1) {
		time_t now = time(NULL), then;
		struct tm tm;
		unsigned long long unit;

		n = strtoull(arg, &end, 10);
		switch (*end) {
		case 's':
			unit = 1;
			break;
		case 'm':
			unit = 60;
			break;
		case 'h':
			unit = 3600;
			break;
		case 'd':
			unit = 86400;
			break;
		default:
			return -1;
		}
		if (n > (unsigned long long)now / unit)
			n = (unsigned long long)now / unit;
		then = now - (time_t)(n * unit);
		if (gmtime_r(&then, &tm) == NULL ||
		    strftime(out, outsz, "%Y-%m-%d %H:%M:%S", &tm) == 0)
			return -1;
		return 0;
	}
	/* YYYY-MM-DD, then optionally [T ]HH:MM[:SS]. */
	static const char shape[] = "dddd-dd-dd hh:mm:ss";
	size_t len = strlen(arg);

	if (len != 10 && len != 16 && len != 19)
		return -1;
	for (size_t i = 0; i < len; i++) {
		char c = arg[i], want = shape[i];

		if (want == 'd' || want == 'h' || want == 'm' || want == 's') {
			if (c < '0' || c > '9')
				return -1;
		} else if (i == 10 ? c != ' ' && c != 'T' : c != want)
			return -1;
	}
	if (len + 1 > outsz)
		return -1;
	memcpy(out, arg, len + 1);
	if (len > 10)
		out[10] = ' ';
	return 0;
}

/* --kind K[,K...]: the bits of those event kinds; -1 for an unknown one. */
static int
logs_kinds(const char *arg, unsigned *bits)
{
	char *copy = xstrdup(arg), *save, *k;
	int rc = 0;

	for (k = strtok_r(copy, ",", &save); k != NULL;
	     k = strtok_r(NULL, ",", &save)) {
		unsigned i;

		for (i = 0; i < EV_MAX; i++) {
			if (strcmp(k, event_kind_name(i)) == 0)
				break;
		}
		if (i == EV_MAX) {
			rc = -1;
			break;
		}
		*bits |= 1u << i;
	}
	free(copy);
	return *bits == 0 ? -1 : rc;
}

int
cmd_logs(int argc, char **argv)
{
	static const struct option opts[] = {{"follow", no_argument, NULL, 'f'},
	    {"json", no_argument, NULL, 'j'},
	    {"stage", required_argument, NULL, 's'},
	    {"kind", required_argument, NULL, 'k'},
	    {"since", required_argument, NULL, 'S'},
	    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	struct printer p;
	int64_t id = 0;
	int c, follow = 0, json = 0, rc;
	const char *stage = NULL;
	unsigned kinds = 0;
	static char since[32];
	int have_since = 0;
	enum stage sid;

	while ((c = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			follow = 1;
			break;
		case 'j':
			json = 1;
			break;
		case 's':
			if (stage_parse(optarg, &sid) == -1) {
				cli_error("--stage %s: not a stage (planning, "
				          "implementing, reviewing, verifying)",
				    optarg);
				return EXIT_USAGE;
			}
			stage = optarg;
			break;
		case 'k':
			if (logs_kinds(optarg, &kinds) == -1) {
				cli_error("--kind %s: the kinds are state, "
				          "tool, result, checkpoint, model, "
				          "info, error (comma-separated)",
				    optarg);
				return EXIT_USAGE;
			}
			break;
		case 'S':
			if (logs_since(optarg, since, sizeof since) == -1) {
				cli_error("--since %s: give a UTC time "
				          "(2026-11-30 12:00) or a time ago "
				          "(90s, 10m, 2h, 1d)",
				    optarg);
				return EXIT_USAGE;
			}
			have_since = 1;
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
	p.json = json;
	p.stage = stage;
	p.kinds = kinds;
	p.since = have_since ? since : NULL;
	if (json)
		p.color = 0;
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
