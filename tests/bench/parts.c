/*
 * parts: the costs a stage is made of, each against its floor, measured in
 * the same run with the two sides interleaved (A, B, A, B...) so that a
 * noisy neighbour hits both alike.
 *
 *     parts --worker PATH --profiles DIR --dir SCRATCH [--mock-url URL]
 *           [--runs N] [--ws-runs N] [--files N] [--only a,b,...]
 *
 * Parts (--only names):
 *   exec     fork+exec of orch-worker (it exits at once when fd 3 is not
 *            open: exec + dynamic linking + start-up) vs fork+exec of
 *            /bin/true
 *   commit   one checkpoint commit through the store API (WAL,
 *            synchronous=FULL) vs one 4 KiB write + fdatasync in the same
 *            directory
 *   sandbox  sandbox_run of `true` under the implementing profile vs
 *            fork+exec of a bare `bwrap --ro-bind / / true` (and, for
 *            information, `bwrap --unshare-all --ro-bind / / true`)
 *   llm      one model call through the worker's code (llm_openai_chat:
 *            request built with the planning tools, POST, SSE assembly)
 *            vs one plain libcurl POST of the same bytes to the same mock
 *            (--mock-url, the base URL such as http://127.0.0.1:PORT/v1)
 *   ws       the workspace on a repository of --files files: worktree
 *            creation, the check of an existing one, restore, one
 *            snapshot commit (one file changed), a snapshot with nothing
 *            changed, squash, diffstat, diff, removal; floor: fork+exec of
 *            `git --version`
 *
 * Output: one line per measurement,
 *     PART<TAB>NAME<TAB>median_ms<TAB>p99_ms<TAB>runs
 * and for each pair
 *     RATIO<TAB>NAME<TAB>FLOOR<TAB>ratio_of_medians
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common.h"
#include "store.h"
#include "worker.h"

/* The model code's backoff sleeps (it heartbeats and logs to no one
 * here: its callbacks for those are NULL). */
static void
llm_sleep(void *arg, unsigned ms)
{
	(void)arg;
	usleep(ms * 1000);
}

static unsigned runs = 200, ws_runs = 20, nfiles = 1000;
static const char *only;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double
pct(double *v, unsigned n, double p)
{
	qsort(v, n, sizeof *v, cmp_double);
	size_t i = (size_t)(p * (n - 1) + 0.5);
	return v[i];
}

static double
report(const char *part, const char *name, double *v, unsigned n)
{
	double med, p99;

	med = pct(v, n, 0.5);
	p99 = pct(v, n, 0.99);
	printf("PART\t%s\t%s\t%.3f\t%.3f\t%u\n", part, name, med * 1e3,
	    p99 * 1e3, n);
	fflush(stdout);
	return med;
}

static void
ratio(const char *name, const char *floor, double a, double b)
{
	printf("RATIO\t%s\t%s\t%.2f\n", name, floor, b > 0 ? a / b : 0);
	fflush(stdout);
}

static int
want(const char *part)
{
	const char *p;
	size_t n = strlen(part);

	if (only == NULL)
		return 1;
	for (p = only; (p = strstr(p, part)) != NULL; p += n)
		if ((p == only || p[-1] == ',') &&
		    (p[n] == ',' || p[n] == '\0'))
			return 1;
	return 0;
}

/* fork+exec argv with stdin/stdout/stderr on /dev/null, wait: seconds. */
static double
run_wait(char *const argv[])
{
	double t0 = now_s();
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		closefrom(3);
		execv(argv[0], argv);
		_exit(127);
	}
	if (pid == -1)
		fatal("fork");
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	return now_s() - t0;
}

static void
part_exec(const char *worker)
{
	double *a = xcalloc(runs, sizeof *a), *b = xcalloc(runs, sizeof *b);
	char *wa[] = {(char *)worker, NULL};
	char *ta[] = {(char *)"/bin/true", NULL};

	for (unsigned i = 0; i < runs; i++) {
		a[i] = run_wait(wa);
		b[i] = run_wait(ta);
	}
	double ma = report("exec", "fork+exec orch-worker", a, runs);
	double mb = report("exec", "fork+exec /bin/true", b, runs);
	ratio("fork+exec orch-worker", "fork+exec /bin/true", ma, mb);
	free(a);
	free(b);
}

static void
part_commit(const char *dir)
{
	double *a = xcalloc(runs, sizeof *a), *b = xcalloc(runs, sizeof *b);
	char *path = xasprintf("%s/parts.db", dir);
	char *fpath = xasprintf("%s/parts.fsync", dir);
	struct store_opts so = {1000, 5000};
	struct store *st;
	struct task_new tn = {"bench", dir,
	    "0000000000000000000000000000000000000000", NULL, 0, 0, 0};
	char *cause, buf[4096];
	int64_t id;
	int fd;

	unlink(path);
	if (store_open(&st, path, STORE_RW, &so, &cause) == -1)
		fatalx("store_open: %s", cause);
	if (store_task_add(st, &tn, &id) == -1)
		fatalx("store_task_add: %s", store_error(st));
	if ((fd = open(
	         fpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1)
		fatal("%s", fpath);
	memset(buf, 'x', sizeof buf);
	/* Warm up both. */
	for (int i = 0; i < 5; i++) {
		store_checkpoint_add(st, id, "warmup", "{}");
		(void)!pwrite(fd, buf, sizeof buf, (off_t)i * 4096);
		fdatasync(fd);
	}
	for (unsigned i = 0; i < runs; i++) {
		double t0 = now_s();
		if (store_checkpoint_add(st, id, "snapshot",
		        "{\"commit\":\"0123456789abcdef0123456789abcdef01234567"
		        "\",\"stage\":\"implementing\",\"step\":3}") == -1)
			fatalx("checkpoint: %s", store_error(st));
		a[i] = now_s() - t0;
		t0 = now_s();
		/* An append, as the WAL does. */
		if (pwrite(fd, buf, sizeof buf, (off_t)(i + 8) * 4096) !=
		        (ssize_t)sizeof buf ||
		    fdatasync(fd) == -1)
			fatal("write %s", fpath);
		b[i] = now_s() - t0;
	}
	double ma = report("commit", "checkpoint commit (store API)", a, runs);
	double mb = report("commit", "write 4 KiB + fdatasync", b, runs);
	ratio(
	    "checkpoint commit (store API)", "write 4 KiB + fdatasync", ma, mb);
	close(fd);
	store_close(st);
	unlink(fpath);
	free(path);
	free(fpath);
	free(a);
	free(b);
}

static void
noop_beat(void *arg)
{
	(void)arg;
}

static void
part_sandbox(const char *profiles, const char *dir)
{
	unsigned n = runs > 100 ? 100 : runs;
	double *a = xcalloc(n, sizeof *a), *b = xcalloc(n, sizeof *b),
	       *c = xcalloc(n, sizeof *c);
	struct sandbox_profile *prof;
	char *cause, *ws = xasprintf("%s/sandbox-ws", dir);
	char *bare[] = {(char *)"/usr/bin/bwrap", (char *)"--ro-bind",
	    (char *)"/", (char *)"/", (char *)"/bin/true", NULL};
	char *unshared[] = {(char *)"/usr/bin/bwrap", (char *)"--unshare-all",
	    (char *)"--ro-bind", (char *)"/", (char *)"/", (char *)"/bin/true",
	    NULL};

	mkdir(ws, 0755);
	if (sandbox_profile_load(profiles, "implementing", &prof, &cause) == -1)
		fatalx("profile: %s", cause);
	for (unsigned i = 0; i < n; i++) {
		struct sandbox_result res;
		double t0 = now_s();

		if (sandbox_run(prof, ws, "true", 30, noop_beat, NULL, &res,
		        &cause) == -1)
			fatalx("sandbox_run: %s", cause);
		a[i] = now_s() - t0;
		if (!res.exited || res.exit_status != 0)
			fatalx("sandboxed true failed: %s",
			    res.output ? res.output : "");
		sandbox_result_clear(&res);
		b[i] = run_wait(bare);
		c[i] = run_wait(unshared);
	}
	double ma = report("sandbox", "sandbox_run true", a, n);
	double mb = report("sandbox", "bwrap --ro-bind / / true", b, n);
	report("sandbox", "bwrap --unshare-all --ro-bind / / true", c, n);
	ratio("sandbox_run true", "bwrap --ro-bind / / true", ma, mb);
	sandbox_profile_free(prof);
	free(ws);
	free(a);
	free(b);
	free(c);
}

static size_t
discard(char *p, size_t s, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return s * n;
}

static void
part_llm(const char *url)
{
	double *a = xcalloc(runs, sizeof *a), *b = xcalloc(runs, sizeof *b);
	struct llm_turn lt;
	json_t *messages, *tools, *reqj;
	char *body, *full = xasprintf("%s/chat/completions", url);
	struct curl_slist *hdrs = NULL;

	memset(&lt, 0, sizeof lt);
	lt.task = 1;
	lt.stage = "planning";
	lt.io.sleep = llm_sleep;
	lt.llm = json_pack("{s:s,s:s,s:s,s:i,s:i}", "base_url", url, "model",
	    "mock-model", "api_key", "sk-bench", "timeout_s", 30, "max_retries",
	    0);
	messages = json_pack("[{s:s,s:s},{s:s,s:s}]", "role", "system",
	    "content", prompt_get("planning.txt"), "role", "user", "content",
	    "Request:\nAdd a health endpoint\n\nFiles in the repository:\n"
	    "README.md\napp.py\n\nREADME.md:\n# Demo project\n");
	tools = tool_schemas("planning");
	reqj = llm_openai_request("mock-model", messages, tools);
	body = json_dumps(reqj, JSON_COMPACT);
	json_decref(reqj);
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, "Authorization: Bearer sk-bench");
	hdrs = curl_slist_append(hdrs, "Accept: text/event-stream");
	hdrs = curl_slist_append(hdrs, "Expect:");
	hdrs = curl_slist_append(hdrs, "X-Orch-Task-Id: 1");
	hdrs = curl_slist_append(hdrs, "X-Orch-Stage: planning");

	for (unsigned i = 0; i < runs; i++) {
		json_t *reply;
		char *cause;
		int perm;
		double t0 = now_s();

		if (llm_openai_chat(
		        &lt, messages, tools, &reply, &cause, &perm) == -1)
			fatalx("llm_openai_chat: %s", cause);
		a[i] = now_s() - t0;
		json_decref(reply);

		t0 = now_s();
		CURL *c = curl_easy_init();
		long code = 0;
		curl_easy_setopt(c, CURLOPT_URL, full);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		if (curl_easy_perform(c) != CURLE_OK)
			fatalx("plain libcurl POST failed");
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		curl_easy_cleanup(c);
		b[i] = now_s() - t0;
		if (code != 200)
			fatalx("plain POST: HTTP %ld", code);
	}
	double ma = report("llm", "model call via worker code", a, runs);
	double mb = report("llm", "plain libcurl POST, same bytes", b, runs);
	ratio("model call via worker code", "plain libcurl POST, same bytes",
	    ma, mb);
	printf("INFO\tllm\trequest_bytes\t%zu\n", strlen(body));
	curl_slist_free_all(hdrs);
	free(body);
	free(full);
	json_decref(messages);
	json_decref(tools);
	json_decref(lt.llm);
	free(a);
	free(b);
}

static void
sh(const char *fmt, ...)
{
	va_list ap;
	char *cmd;

	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	if (system(cmd) != 0)
		fatalx("command failed: %s", cmd);
	free(cmd);
}

static char *
sh_line(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	char buf[256];

	if (p == NULL || fgets(buf, sizeof buf, p) == NULL)
		fatalx("command failed: %s", cmd);
	pclose(p);
	buf[strcspn(buf, "\n")] = '\0';
	return xstrdup(buf);
}

enum {
	W_CREATE,
	W_EXISTS,
	W_RESTORE,
	W_SNAP,
	W_SNAP_SAME,
	W_SQUASH,
	W_DIFFSTAT,
	W_DIFF,
	W_REMOVE,
	W_GIT,
	W_MAX
};
static const char *const wnames[W_MAX] = {
    "ws_create (git worktree add)",
    "ws_create (exists: read .git)",
    "ws_restore (reset --hard + clean)",
    "ws_snapshot (1 file changed)",
    "ws_snapshot (nothing changed)",
    "ws_squash",
    "ws_diffstat",
    "ws_diff",
    "ws_remove (git worktree remove)",
    "fork+exec git --version",
};

static void
part_ws(const char *dir)
{
	char *repo = xasprintf("%s/ws-repo", dir), *base, *cmd, *cause;
	double *v[W_MAX];
	char *git = sh_line("command -v git");
	char *gitv[] = {git, (char *)"--version", NULL};

	for (int k = 0; k < W_MAX; k++)
		v[k] = xcalloc(ws_runs, sizeof(double));
	sh("rm -rf '%s' '%s/wt'", repo, dir);
	mkdir(repo, 0755);
	for (unsigned i = 0; i < nfiles; i++) {
		char *d = xasprintf("%s/src%02u", repo, i / 100);
		char *f = xasprintf("%s/file%04u.c", d, i);
		FILE *fp;

		mkdir(d, 0755);
		if ((fp = fopen(f, "w")) == NULL)
			fatal("%s", f);
		for (int l = 0; l < 30; l++)
			fprintf(fp, "int f%u_%d(int x) { return x + %d; }\n", i,
			    l, l);
		fclose(fp);
		free(d);
		free(f);
	}
	sh("cd '%s' && git init -q -b main && git add -A && "
	   "git -c user.name=b -c user.email=b@b commit -qm init",
	    repo);
	cmd = xasprintf("git -C '%s' rev-parse HEAD", repo);
	base = sh_line(cmd);
	free(cmd);
	printf("INFO\tws\tfiles\t%u\n", nfiles);

	for (unsigned i = 0; i < ws_runs; i++) {
		char *wt = xasprintf("%s/wt/task-%u", dir, i);
		char *ref = xasprintf("refs/orch/tasks/%u", i);
		char *branch = xasprintf("orch/task-%u", i);
		char *commit = NULL, *commit2 = NULL, *res = NULL, *out = NULL;
		char *note = NULL;
		char *f = xasprintf("%s/src00/file0000.c", wt);
		FILE *fp;
		double t0;

#define T(k, call)                                                             \
	do {                                                                   \
		t0 = now_s();                                                  \
		if ((call) == -1)                                              \
			fatalx("%s: %s", wnames[k], cause);                    \
		v[k][i] = now_s() - t0;                                        \
	} while (0)
		T(W_CREATE, ws_create(repo, wt, base, &cause));
		T(W_EXISTS, ws_create(repo, wt, base, &cause));
		T(W_RESTORE, ws_restore(wt, base, &cause));
		if ((fp = fopen(f, "a")) == NULL)
			fatal("%s", f);
		fprintf(fp, "/* changed %u */\n", i);
		fclose(fp);
		T(W_SNAP, ws_snapshot(wt, ref, base, "step", &commit, &note,
		              NULL, &cause));
		free(note);
		T(W_SNAP_SAME, ws_snapshot(wt, ref, base, "step", &commit2,
		                   &note, NULL, &cause));
		free(note);
		T(W_SQUASH, ws_squash(wt, branch, base, commit, "bench", &res,
		                NULL, &cause));
		T(W_DIFFSTAT, ws_diffstat(wt, base, res, &out, &cause));
		free(out);
		T(W_DIFF, ws_diff(wt, base, res, 65536, &out, &cause));
		free(out);
		T(W_REMOVE, ws_remove(repo, wt, &cause));
#undef T
		v[W_GIT][i] = run_wait(gitv);
		free(commit);
		free(commit2);
		free(res);
		free(f);
		free(wt);
		free(ref);
		free(branch);
	}
	double g = 0;
	for (int k = 0; k < W_MAX; k++) {
		double m = report("ws", wnames[k], v[k], ws_runs);
		if (k == W_GIT)
			g = m;
	}
	/* Each operation against one git process (most run several). */
	for (int k = 0; k < W_GIT; k++)
		ratio(wnames[k], wnames[W_GIT], pct(v[k], ws_runs, 0.5), g);
	for (int k = 0; k < W_MAX; k++)
		free(v[k]);
	free(repo);
	free(base);
	free(git);
}

int
main(int argc, char **argv)
{
	const char *worker = NULL, *profiles = NULL, *dir = NULL, *url = NULL;

	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			goto usage;
		if (strcmp(argv[i], "--worker") == 0)
			worker = argv[++i];
		else if (strcmp(argv[i], "--profiles") == 0)
			profiles = argv[++i];
		else if (strcmp(argv[i], "--dir") == 0)
			dir = argv[++i];
		else if (strcmp(argv[i], "--mock-url") == 0)
			url = argv[++i];
		else if (strcmp(argv[i], "--runs") == 0)
			runs = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--ws-runs") == 0)
			ws_runs = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--files") == 0)
			nfiles = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--only") == 0)
			only = argv[++i];
		else
			goto usage;
	}
	if (dir == NULL || runs == 0 || ws_runs == 0)
		goto usage;
	mkdir(dir, 0700);
	/* As the supervisor gives its workers (worker/etcdir.c). */
	if (getenv("ORCH_SANDBOX_CACHE") == NULL) {
		char *cache = xasprintf("%s/sandbox-cache", dir);

		setenv("ORCH_SANDBOX_CACHE", cache, 1);
		free(cache);
	}
	if (want("exec")) {
		if (worker == NULL)
			fatalx("--worker is needed for exec");
		part_exec(worker);
	}
	if (want("commit"))
		part_commit(dir);
	if (want("sandbox")) {
		if (profiles == NULL)
			fatalx("--profiles is needed for sandbox");
		part_sandbox(profiles, dir);
	}
	if (want("llm")) {
		if (url == NULL)
			fatalx("--mock-url is needed for llm");
		curl_global_init(CURL_GLOBAL_DEFAULT);
		part_llm(url);
	}
	if (want("ws"))
		part_ws(dir);
	return 0;
usage:
	fprintf(stderr,
	    "usage: parts --dir SCRATCH [--worker PATH] [--profiles DIR] "
	    "[--mock-url URL] [--runs N] [--ws-runs N] [--files N] "
	    "[--only exec,commit,sandbox,llm,ws]\n");
	return 2;
}
