/*
 * Commands for the operator: serve, stats, backup, doctor, gc.
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
#include "config.h"
#include "doctor.h"
#include "gc.h"
#include "server.h"
#include "task.h"

#include <curl/curl.h>

int
cmd_serve(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--help") == 0)
		return cli_help();
	if (argc > 1)
		return cli_usage();
	return server_run(0, 0, NULL, NULL);
}
/* stats' costs, by day, model and repository (only with prices). */
static void
stats_cost(json_t *c)
{
	static const char *const groups[][2] = {{"by_day", "day"},
	    {"by_model", "model"}, {"by_repo", "repository"}};
	const char *k;
	json_t *v;

	if (c == NULL)
		return;
	printf("cost (ORCH_LLM_PRICES): %.4f\n",
	    json_real_value(json_object_get(c, "total")));
	for (size_t i = 0; i < nitems(groups); i++) {
		printf("  by %s:\n", groups[i][1]);
		json_object_foreach(json_object_get(c, groups[i][0]), k, v)
			printf("    %-24s %10.4f  (%lld turns, %lld tokens in, "
			       "%lld out)\n",
			    cli_safe_line(k),
			    json_real_value(json_object_get(v, "cost")),
			    (long long)json_integer_value(
			        json_object_get(v, "turns")),
			    (long long)json_integer_value(
			        json_object_get(v, "tokens_in")),
			    (long long)json_integer_value(
			        json_object_get(v, "tokens_out")));
	}
	v = json_object_get(c, "unpriced_models");
	if (json_array_size(v) > 0) {
		size_t i;
		json_t *m;

		printf("  no price for:");
		json_array_foreach(v, i, m)
			printf(" %s", cli_safe_line(json_string_value(m)));
		putchar('\n');
	}
}

int
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
	if (cli_open_existing(&st, "yet (submit a task first)") == -1)
		return 1;
	if (store_stats_json(st, &s) == -1) {
		cli_error("%s", store_error(st));
		store_close(st);
		return 1;
	}
	if ((by = task_cost_json(st, 0)) != NULL)
		json_object_set_new(s, "cost", by);
	/* Several services on one database: what each node runs. */
	if (strcmp(store_backend(st), "postgresql") == 0 &&
	    store_nodes_json(st, &by) == 0)
		json_object_set_new(s, "nodes", by);
	store_close(st);
	if (json) {
		cli_json_print(s);
		putchar('\n');
	} else {
		printf("backend: %s\n",
		    json_string_value(json_object_get(s, "backend")));
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
		stats_cost(json_object_get(s, "cost"));
		if (json_array_size(json_object_get(s, "nodes")) > 0) {
			printf("nodes:\n");
			cli_nodes_print(json_object_get(s, "nodes"));
		}
	}
	json_decref(s);
	return 0;
}

int
cmd_backup(int argc, char **argv)
{
	struct store *st;
	char *dest;
	int rc = 0;

	if (argc > 1 && strcmp(argv[1], "--help") == 0)
		return cli_help();
	if (argc > 2 || (argc == 2 && argv[1][0] == '-'))
		return cli_usage();
	if (cli_open_existing(&st, "to back up") == -1)
		return 1;
	if (argc == 2)
		dest = xstrdup(argv[1]);
	else {
		char ts[32];
		time_t now = time(NULL);
		struct tm tm;

		gmtime_r(&now, &tm);
		strftime(ts, sizeof ts, "%Y%m%d-%H%M%S", &tm);
		char *dir = xasprintf("%s/backups", cfg.state_dir), *why;

		/* On PostgreSQL the state directory may not exist yet. */
		if (config_make_state_dir(&why) == -1) {
			rc = cli_error("%s", why);
			free(why);
			free(dir);
			store_close(st);
			return rc;
		}
		mkdir(dir, 0700);
		free(dir);
		/* PostgreSQL's is pg_dump's custom format (pg_restore). */
		dest = xasprintf("%s/backups/tasks-%s.%s", cfg.state_dir, ts,
		    strcmp(store_backend(st), "sqlite") == 0 ? "db" : "dump");
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

/*
 * doctor's lines for a PostgreSQL store: connected (cli_open_ro already
 * said so, or why not), the server's version, the schema, every table
 * answering, and synchronous_commit: 1 when something failed.
 */
static int
doctor_pg(struct store *st)
{
	json_t *info = NULL;
	const char *sync;
	int ok = 0;

	if (store_info_json(st, &info) == -1) {
		printf("FAIL database: %s\n", store_error(st));
		return 1;
	}
	printf("ok   database %s (PostgreSQL %s, schema %d)\n",
	    json_string_value(json_object_get(info, "url")),
	    json_string_value(json_object_get(info, "server_version")),
	    store_schema_version(st));
	if (store_integrity(st, &ok) == -1 || !ok) {
		printf("FAIL database tables: %s\n", store_error(st));
		json_decref(info);
		return 1;
	}
	printf("ok   database tables answer\n");
	sync = json_string_value(json_object_get(info, "synchronous_commit"));
	if (sync != NULL &&
	    (strcmp(sync, "off") == 0 || strcmp(sync, "local") == 0))
		printf("WARN synchronous_commit is %s: a commit the service"
		       " acknowledged can be lost if the database server"
		       " crashes or fails over; set it to on (or"
		       " remote_apply)\n",
		    sync);
	else
		printf("ok   synchronous_commit is %s\n", sync ? sync : "?");
	if (json_integer_value(json_object_get(info, "outages")) > 0)
		printf("ok   the database was unreachable %lld times (the last"
		       " back at %s UTC)\n",
		    (long long)json_integer_value(
		        json_object_get(info, "outages")),
		    json_object_get(info, "last_outage") != NULL
		        ? cli_safe_line(json_string_value(
		              json_object_get(info, "last_outage")))
		        : "?");
	json_decref(info);
	return 0;
}

int
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
	CHECK(access(config_model_path(), X_OK) == 0, "model program",
	    "orch-model is missing: reinstall, or set ORCH_MODEL_PATH");
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
	else if (st == NULL) {
		char *name = server_store_name();

		printf("ok   database (none yet at %s)\n", name);
		free(name);
	} else if (strcmp(store_backend(st), "sqlite") != 0) {
		bad |= doctor_pg(st);
		store_close(st);
	} else {
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

int
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
