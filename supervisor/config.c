/*
 * Configuration: defaults < .env file < environment < command-line flags.
 * Every variable is in one table; an unknown ORCH_* or DB_* name or a
 * malformed value stops the program at start-up, naming the variable.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>

#include "common.h"
#include "buildconf.h"
#include "config.h"
#include "price.h"

struct config cfg;

enum vtype {
	V_STR,
	V_UINT,
	V_U64,
	V_BOOL,
	V_AUTO,
	V_PROVIDER,
	V_LOGLEVEL,
};

struct var {
	const char *name;
	enum vtype type;
	size_t off;
	uint64_t min, max;
};

#define S(f) offsetof(struct config, f)
static const struct var vars[] = {
    {"ORCH_STATE_DIR", V_STR, S(state_dir), 0, 0},
    {"DB_PATH", V_STR, S(db_path), 0, 0},
    {"ORCH_DATABASE_URL", V_STR, S(database_url), 0, 0},
    {"ORCH_ENABLE_RESUME", V_BOOL, S(enable_resume), 0, 0},
    {"DB_BACKUP_ON_START", V_BOOL, S(backup_on_start), 0, 0},
    {"DB_AUTO_CHECKPOINT_INTERVAL", V_UINT, S(autocheckpoint), 0, 1000000},
    {"ORCH_LLM_PROVIDER", V_PROVIDER, S(provider), 0, 0},
    {"ORCH_LLM_BASE_URL", V_STR, S(base_url), 0, 0},
    {"ORCH_LLM_MODEL", V_STR, S(model), 0, 0},
    {"ORCH_LLM_API_KEY", V_STR, S(api_key), 0, 0},
    {"ORCH_LLM_SCRIPT", V_STR, S(script), 0, 0},
    {"ORCH_SCRIPTED_TRACE", V_STR, S(scripted_trace), 0, 0},
    {"ORCH_LLM_TIMEOUT_S", V_UINT, S(llm_timeout_s), 1, 86400},
    {"ORCH_LLM_MAX_RETRIES", V_UINT, S(llm_max_retries), 0, 100},
    {"ORCH_LLM_FALLBACK_MODELS", V_STR, S(llm_fallback_models), 0, 0},
    {"ORCH_AUTO_APPROVE", V_AUTO, S(auto_approve), 0, 0},
    {"ORCH_MAX_WORKERS", V_UINT, S(max_workers), 1, 4096},
    {"ORCH_MAX_RETRIES", V_UINT, S(max_retries), 0, 100},
    {"ORCH_RETRY_BACKOFF_MS", V_UINT, S(retry_backoff_ms), 0, 3600000},
    {"ORCH_WORKER_TIMEOUT_S", V_UINT, S(worker_timeout_s), 1, 86400},
    {"ORCH_MAX_STEPS", V_UINT, S(max_steps), 1, 10000},
    {"ORCH_MAX_REVIEW_ROUNDS", V_UINT, S(max_review_rounds), 0, 100},
    {"ORCH_MAX_VERIFY_ROUNDS", V_UINT, S(max_verify_rounds), 0, 100},
    {"ORCH_CMD_TIMEOUT_S", V_UINT, S(cmd_timeout_s), 1, 86400},
    {"ORCH_MAX_TOKENS", V_U64, S(max_tokens), 0, UINT64_MAX},
    {"ORCH_LLM_PRICES", V_STR, S(llm_prices), 0, 0},
    {"ORCH_MAX_COST", V_STR, S(max_cost_text), 0, 0},
    {"ORCH_VERIFY_COMMAND", V_STR, S(verify_command), 0, 0},
    {"ORCH_SANDBOX_PROFILES_DIR", V_STR, S(profiles_dir), 0, 0},
    {"ORCH_WORKER_PATH", V_STR, S(worker_path), 0, 0},
    {"ORCH_MODEL_PATH", V_STR, S(model_path), 0, 0},
    {"ORCH_LOG_LEVEL", V_LOGLEVEL, S(log_level), 0, 0},
    {"ORCH_NOTIFY_URL", V_STR, S(notify_url), 0, 0},
    {"ORCH_AUDIT_MAX_BYTES", V_U64, S(audit_max_bytes), 4096, UINT64_MAX},
    {"ORCH_RETENTION_DAYS", V_UINT, S(retention_days), 0, 36500},
    {"ORCH_MAX_CONNECTIONS", V_UINT, S(max_connections), 1, 10000},
    {"ORCH_SNAPSHOT_MAX_FILE_BYTES", V_U64, S(snapshot_max_file_bytes), 1,
        UINT64_MAX},
    {"ORCH_HTTP_LISTEN", V_STR, S(http_listen), 0, 0},
    {"ORCH_HTTP_TOKEN", V_STR, S(http_token), 0, 0},
    {"ORCH_REPOS", V_STR, S(repos), 0, 0},
    {"ORCH_NODE_NAME", V_STR, S(node_name), 0, 0},
    {"ORCH_LEASE_S", V_UINT, S(lease_s), 2, 3600},
    {"ORCH_MAX_TASKS_PER_REPO", V_UINT, S(max_tasks_per_repo), 0, 100000},
};
#undef S

static const char *const auto_names[] = {
    "none", "plan", "implementation", "all"};

int
config_auto_approve_parse(const char *s, int *out)
{
	for (size_t i = 0; i < nitems(auto_names); i++) {
		if (strcmp(s, auto_names[i]) == 0) {
			*out = (int)i;
			return 0;
		}
	}
	return -1;
}

const char *
config_auto_approve_name(int v)
{
	if (v < 0 || (size_t)v >= nitems(auto_names))
		return "none";
	return auto_names[v];
}

static void
config_defaults(void)
{
	const char *xdg = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");

	memset(&cfg, 0, sizeof cfg);
	if (xdg != NULL && *xdg == '/')
		cfg.state_dir = xasprintf("%s/orch", xdg);
	else if (home != NULL && *home == '/')
		cfg.state_dir = xasprintf("%s/.local/state/orch", home);
	cfg.enable_resume = 1;
	cfg.autocheckpoint = 1000;
	cfg.llm_timeout_s = 300;
	cfg.llm_max_retries = 5;
	cfg.max_workers = 4;
	cfg.max_retries = 3;
	cfg.retry_backoff_ms = 1000;
	cfg.worker_timeout_s = 120;
	cfg.max_steps = 50;
	cfg.max_review_rounds = 2;
	cfg.max_verify_rounds = 2;
	cfg.cmd_timeout_s = 600;
	cfg.log_level = LOG_LEVEL_INFO;
	cfg.audit_max_bytes = 10 * 1024 * 1024;
	cfg.retention_days = 30;
	cfg.max_connections = 64;
	cfg.snapshot_max_file_bytes = 52428800;
	cfg.lease_s = 30;
}

int
config_node_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 63 || !isalnum((unsigned char)name[0]))
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!isalnum(c) && c != '.' && c != '_' && c != '-')
			return 0;
	}
	return 1;
}

static void __attribute__((noreturn))
config_die(const char *where, const char *name, const char *why)
{
	fprintf(stderr, "orch-supervisor: %s%s%s: %s\n", where ? where : "",
	    where ? ": " : "", name, why);
	exit(2);
}

static const struct var *
config_find(const char *name)
{
	for (size_t i = 0; i < nitems(vars); i++)
		if (strcmp(vars[i].name, name) == 0)
			return &vars[i];
	return NULL;
}

static int
config_ours(const char *name)
{
	return strncmp(name, "ORCH_", 5) == 0 || strncmp(name, "DB_", 3) == 0;
}

/* Set one variable from text: NULL, or a malloc'd reason it is refused. */
static char *
config_set(const struct var *v, const char *value)
{
	char *p = (char *)&cfg + v->off;
	uint64_t u;
	int b;

	switch (v->type) {
	case V_STR:
		free(*(char **)p);
		*(char **)p = *value == '\0' ? NULL : xstrdup(value);
		return NULL;
	case V_UINT:
	case V_U64:
		if (parse_u64(value, v->min, v->max, &u) == -1)
			return xasprintf("'%s' is not a whole number from %llu "
			                 "to %llu",
			    value, (unsigned long long)v->min,
			    (unsigned long long)v->max);
		if (v->type == V_U64)
			*(uint64_t *)p = u;
		else
			*(unsigned *)p = (unsigned)u;
		return NULL;
	case V_BOOL:
		if (parse_bool(value, &b) == -1)
			return xstrdup("expected true or false (also 1/0, "
			               "yes/no, on/off)");
		*(int *)p = b;
		return NULL;
	case V_AUTO:
		if (config_auto_approve_parse(value, &b) == -1)
			return xstrdup("expected none, plan, implementation or "
			               "all");
		*(int *)p = b;
		return NULL;
	case V_PROVIDER:
		if (strcmp(value, "openai") != 0 &&
		    strcmp(value, "anthropic") != 0 &&
		    strcmp(value, "scripted") != 0)
			return xstrdup(
			    "expected openai, anthropic or scripted");
		free(*(char **)p);
		*(char **)p = xstrdup(value);
		return NULL;
	case V_LOGLEVEL: {
		enum log_level l;
		if (log_level_parse(value, &l) == -1)
			return xstrdup("expected error, warn, info or debug");
		*(int *)p = (int)l;
		return NULL;
	}
	}
	return xstrdup("unknown kind of variable");
}

/* Strip one pair of matching quotes. */
static char *
config_unquote(char *v)
{
	size_t n = strlen(v);

	if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
		v[n - 1] = '\0';
		return v + 1;
	}
	return v;
}

/*
 * Parse a .env file: KEY=VALUE lines, optional "export ", # comments,
 * optional quotes.  Variables already in the environment win.  Returns 0,
 * or -1 with *err ("FILE:LINE: NAME: why", malloc'd) at the first bad line.
 */
int
config_parse_env(FILE *f, const char *path, char **cause)
{
	char *line = NULL, *why = NULL;
	size_t cap = 0;
	ssize_t n;
	int lineno = 0;

	*cause = NULL;
	while (*cause == NULL && (n = getline(&line, &cap, f)) != -1) {
		char *k = line, *eq, *val;
		const struct var *v;

		lineno++;
		if (memchr(line, '\0', (size_t)n) != NULL) {
			*cause =
			    xasprintf("%s:%d: line: a NUL byte", path, lineno);
			break;
		}
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		while (*k == ' ' || *k == '\t')
			k++;
		if (*k == '\0' || *k == '#')
			continue;
		if (strncmp(k, "export ", 7) == 0)
			k += 7;
		if ((eq = strchr(k, '=')) == NULL || eq == k) {
			*cause = xasprintf(
			    "%s:%d: line: expected KEY=VALUE", path, lineno);
			break;
		}
		*eq = '\0';
		val = config_unquote(eq + 1);
		if (getenv(k) != NULL)
			continue;
		if (strcmp(k, "OPENAI_API_KEY") == 0 ||
		    strcmp(k, "ANTHROPIC_API_KEY") == 0) {
			setenv(k, val, 0);
			continue;
		}
		if ((v = config_find(k)) == NULL) {
			if (config_ours(k))
				*cause =
				    xasprintf("%s:%d: %s: unknown variable",
				        path, lineno, k);
			continue;
		}
		if ((why = config_set(v, val)) != NULL) {
			*cause =
			    xasprintf("%s:%d: %s: %s", path, lineno, k, why);
			free(why);
		}
	}
	free(line);
	return *cause == NULL ? 0 : -1;
}

static void
config_read_env_file(const char *path, int required)
{
	FILE *f;
	char *err;

	if ((f = fopen(path, "r")) == NULL) {
		if (!required && errno == ENOENT)
			return;
		fprintf(stderr, "orch-supervisor: cannot read %s: %s\n", path,
		    strerror(errno));
		exit(2);
	}
	if (config_parse_env(f, path, &err) == -1) {
		fprintf(stderr, "orch-supervisor: %s\n", err);
		exit(2);
	}
	fclose(f);
}

static void
config_read_environ(void)
{
	extern char **environ;

	for (char **e = environ; *e != NULL; e++) {
		const char *eq = strchr(*e, '=');
		char name[128];

		if (eq == NULL || (size_t)(eq - *e) >= sizeof name)
			continue;
		memcpy(name, *e, (size_t)(eq - *e));
		name[eq - *e] = '\0';
		if (!config_ours(name))
			continue;
		const struct var *v = config_find(name);
		char *why;
		if (v == NULL)
			config_die("environment", name, "unknown variable");
		if ((why = config_set(v, eq + 1)) != NULL)
			config_die("environment", name, why);
	}
}

/* ORCH_LLM_PRICES and ORCH_MAX_COST, which needs it. */
static void
config_money(void)
{
	char *cause, *end;

	if (price_load(cfg.llm_prices, &cause) == -1)
		config_die(NULL, "ORCH_LLM_PRICES", cause);
	if (cfg.max_cost_text == NULL || *cfg.max_cost_text == '\0')
		return;
	cfg.max_cost = strtod(cfg.max_cost_text, &end);
	if (*end != '\0' || end == cfg.max_cost_text || !(cfg.max_cost >= 0) ||
	    cfg.max_cost > 1e9)
		config_die(NULL, "ORCH_MAX_COST",
		    "give an amount from 0 (no limit) to 1000000000, in the "
		    "units of ORCH_LLM_PRICES");
	if (cfg.max_cost > 0 && !price_known())
		config_die(NULL, "ORCH_MAX_COST",
		    "a cost budget needs prices: set ORCH_LLM_PRICES");
}

void
config_load(const char *env_file)
{
	config_defaults();
	if (env_file != NULL) {
		cfg.env_file = xstrdup(env_file);
		config_read_env_file(env_file, 1);
	} else
		config_read_env_file(".env", 0);
	config_read_environ();

	if (cfg.state_dir == NULL)
		config_die(NULL, "ORCH_STATE_DIR",
		    "not set and neither is $HOME or $XDG_STATE_HOME");
	if (cfg.state_dir[0] != '/') {
		char cwd[PATH_MAX], *abs;
		if (getcwd(cwd, sizeof cwd) == NULL)
			config_die(NULL, "ORCH_STATE_DIR", "cannot get cwd");
		abs = xasprintf("%s/%s", cwd, cfg.state_dir);
		free(cfg.state_dir);
		cfg.state_dir = abs;
	}
	/* An empty ORCH_DATABASE_URL is none: SQLite, as without it. */
	if (cfg.database_url != NULL && *cfg.database_url == '\0') {
		free(cfg.database_url);
		cfg.database_url = NULL;
	}
	if (cfg.database_url != NULL && cfg.db_path != NULL) {
		/* The URL is not printed: it may hold a password. */
		char *why = xasprintf("both DB_PATH (%s) and ORCH_DATABASE_URL"
		                      " are set: DB_PATH is the SQLite file,"
		                      " ORCH_DATABASE_URL the PostgreSQL"
		                      " database; unset one of them",
		    cfg.db_path);
		config_die(NULL, "DB_PATH", why);
	}
	if (cfg.db_path == NULL)
		cfg.db_path = xasprintf("%s/tasks.db", cfg.state_dir);
	if (cfg.node_name == NULL) {
		char host[256];

		/* The host name as the default; a name we cannot use is
		 * cut at its first unfit character (a FQDN's dots are fit). */
		if (gethostname(host, sizeof host) == -1)
			snprintf(host, sizeof host, "node");
		host[sizeof host - 1] = '\0';
		host[strspn(host,
		    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "0123456789._-")] = '\0';
		if (strlen(host) > 63)
			host[63] = '\0';
		cfg.node_name =
		    xstrdup(config_node_name_ok(host) ? host : "node");
	} else if (!config_node_name_ok(cfg.node_name))
		config_die(NULL, "ORCH_NODE_NAME",
		    "must be 1 to 63 letters, digits, '.', '_' or '-',"
		    " starting with a letter or digit");
	if (cfg.http_listen != NULL) {
		struct sockaddr_storage ss;
		unsigned len;
		int lo;
		char *why;

		if (config_listen_parse(
		        cfg.http_listen, &ss, &len, &lo, &why) == -1)
			config_die(NULL, "ORCH_HTTP_LISTEN", why);
	}
	/* A short token is guessable: refuse it rather than serve it. */
	if (cfg.http_token != NULL && strlen(cfg.http_token) < 16)
		config_die(NULL, "ORCH_HTTP_TOKEN",
		    "shorter than 16 characters: use a long random one "
		    "(or unset it: the service makes one)");

	if (cfg.api_key == NULL) {
		const char *k = NULL;
		if (cfg.provider == NULL || strcmp(cfg.provider, "openai") == 0)
			k = getenv("OPENAI_API_KEY");
		if (k == NULL && (cfg.provider == NULL ||
		                     strcmp(cfg.provider, "anthropic") == 0))
			k = getenv("ANTHROPIC_API_KEY");
		if (k != NULL && *k != '\0')
			cfg.api_key = xstrdup(k);
	}
	if (cfg.provider == NULL)
		cfg.provider =
		    xstrdup(cfg.api_key != NULL ? "openai" : "scripted");
	{
		const char *fwhy;

		if (config_fallback_check(cfg.llm_fallback_models, &fwhy) == -1)
			config_die(NULL, "ORCH_LLM_FALLBACK_MODELS", fwhy);
	}
	config_money();
	log_init("orch-supervisor", (enum log_level)cfg.log_level);
}

/*
 * ORCH_LLM_FALLBACK_MODELS: model names separated by commas, each one a
 * name as the APIs spell them (letters, digits, "._:/@-"), at most
 * CONFIG_MAX_FALLBACKS of them: they go into request bodies and the log.
 */
int
config_fallback_check(const char *list, const char **why)
{
	size_t n = 0, len = 0;

	if (list == NULL)
		return 0;
	for (const char *p = list;; p++) {
		if (*p == ',' || *p == '\0') {
			if (len == 0) {
				*why = "an empty model name: give names "
				       "separated by commas";
				return -1;
			}
			if (++n > CONFIG_MAX_FALLBACKS) {
				*why = "more than 8 models";
				return -1;
			}
			len = 0;
			if (*p == '\0')
				return 0;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		        (*p >= '0' && *p <= '9') || strchr("._:/@-", *p))) {
			*why = "a model name may hold letters, digits and "
			       "._:/@- only";
			return -1;
		}
		if (++len > 128) {
			*why = "a model name is longer than 128 bytes";
			return -1;
		}
	}
}

int
config_fallback_has(const char *list, const char *model)
{
	size_t n = strlen(model);

	for (const char *p = list; p != NULL && *p != '\0';) {
		const char *end = strchr(p, ',');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

		if (len == n && n > 0 && strncmp(p, model, n) == 0)
			return 1;
		p = end != NULL ? end + 1 : NULL;
	}
	return 0;
}

const char *
config_model_path(void)
{
	static char path[PATH_MAX + 64];
	const char *w, *slash;

	if (cfg.model_path != NULL)
		return cfg.model_path;
	if (path[0] != '\0')
		return path;
	/* Where the worker program is: installed, or in the build tree. */
	w = config_worker_path();
	if ((slash = strrchr(w, '/')) != NULL)
		snprintf(
		    path, sizeof path, "%.*s/orch-model", (int)(slash - w), w);
	else
		snprintf(path, sizeof path, "orch-model");
	return path;
}

char *
config_profiles_dir(void)
{
	if (cfg.profiles_dir != NULL)
		return xstrdup(cfg.profiles_dir);
	/* Installed, else the source tree (running from build/). */
	if (access(ORCH_PROFILES_DIR "/implementing.profile", R_OK) == 0)
		return xstrdup(ORCH_PROFILES_DIR);
	return xstrdup(ORCH_SOURCE_DIR "/sandbox-profiles");
}

const char *
config_worker_path(void)
{
	static char path[PATH_MAX + 64];
	char self[PATH_MAX], *slash;
	ssize_t n;

	if (cfg.worker_path != NULL)
		return cfg.worker_path;
	if (path[0] != '\0')
		return path;
	/* Beside ourselves when installed, ../worker/ in the build tree. */
	n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n > 0) {
		self[n] = '\0';
		if ((slash = strrchr(self, '/')) != NULL)
			*slash = '\0';
		snprintf(path, sizeof path, "%s/orch-worker", self);
		if (access(path, X_OK) == 0)
			return path;
		snprintf(path, sizeof path, "%s/../worker/orch-worker", self);
		if (access(path, X_OK) == 0)
			return path;
	}
	snprintf(path, sizeof path, "%s/orch-worker", ORCH_LIBEXEC_DIR);
	return path;
}

char *
config_socket_path(void)
{
	return xasprintf("%s/orch.sock", cfg.state_dir);
}

char *
config_text(const char *s)
{
	return s != NULL ? utf8_fix(s, NULL) : NULL;
}

void
config_start(struct msg_start *s)
{
	s->verify_command = config_text(cfg.verify_command);
	s->max_steps = cfg.max_steps;
	s->cmd_timeout_s = cfg.cmd_timeout_s;
	s->snapshot_max_file_bytes = cfg.snapshot_max_file_bytes;
	/* Four heartbeats in each ORCH_WORKER_TIMEOUT_S. */
	s->heartbeat_ms = cfg.worker_timeout_s * 1000 / 4 > 0
	                      ? cfg.worker_timeout_s * 1000 / 4
	                      : 250;
	s->profiles_dir = config_profiles_dir();
	s->log_level = (uint64_t)cfg.log_level;
	s->llm_provider = config_text(cfg.provider);
	s->llm_base_url = config_text(cfg.base_url);
	s->llm_model = config_text(cfg.model);
	s->llm_script = config_text(cfg.script);
	s->llm_trace = config_text(cfg.scripted_trace);
	s->llm_timeout_s = cfg.llm_timeout_s;
	s->llm_max_retries = cfg.llm_max_retries;
}

int
config_make_state_dir(char **cause)
{
	const char *subs[] = {"", "/worktrees", "/logs"};

	for (size_t i = 0; i < nitems(subs); i++) {
		char *p = xasprintf("%s%s", cfg.state_dir, subs[i]);
		/* mkdir -p for the state dir itself. */
		for (char *s = p + 1; i == 0 && *s != '\0'; s++) {
			if (*s != '/')
				continue;
			*s = '\0';
			if (mkdir(p, 0700) == -1 && errno != EEXIST) {
				*cause = xasprintf(
				    "cannot create %s: %s", p, strerror(errno));
				free(p);
				return -1;
			}
			*s = '/';
		}
		if (mkdir(p, 0700) == -1 && errno != EEXIST) {
			*cause = xasprintf(
			    "cannot create %s: %s", p, strerror(errno));
			free(p);
			return -1;
		}
		free(p);
	}
	return 0;
}

int
config_listen_parse(const char *s, struct sockaddr_storage *ss, unsigned *len,
    int *loopback, char **cause)
{
	char host[64];
	const char *colon, *hs = s;
	size_t hl;
	uint64_t port;

	memset(ss, 0, sizeof *ss);
	if (*s == '[') {
		const char *end = strchr(s, ']');
		if (end == NULL || end[1] != ':')
			goto bad;
		hs = s + 1;
		hl = (size_t)(end - hs);
		colon = end + 1;
	} else {
		if ((colon = strrchr(s, ':')) == NULL)
			goto bad;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= sizeof host)
		goto bad;
	memcpy(host, hs, hl);
	host[hl] = '\0';
	if (parse_u64(colon + 1, 1, 65535, &port) == -1)
		goto bad;
	if (*s == '[') {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			goto bad;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		*len = sizeof *a;
		*loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;
		if (strcmp(host, "localhost") == 0)
			snprintf(host, sizeof host, "127.0.0.1");
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			goto bad;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		*len = sizeof *a;
		*loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
	}
	return 0;
bad:
	*cause = xasprintf("'%s' is not an address and port: use "
	                   "127.0.0.1:8080, [::1]:8080 or 0.0.0.0:8080",
	    s);
	return -1;
}

/* 32 random bytes from the kernel's CSPRNG as 64 hex digits. */
int
config_http_token(char **token, char **cause)
{
	char *path, buf[128], hex[65];
	ssize_t n;
	int fd;

	if (cfg.http_token != NULL) {
		*token = xstrdup(cfg.http_token);
		return 0;
	}
	if (config_make_state_dir(cause) == -1)
		return -1;
	path = xasprintf("%s/http-token", cfg.state_dir);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1 && errno == ENOENT) {
		/* O_EXCL: two starting at once agree on the first one's. */
		if (random_hex(hex, 32) == -1) {
			*cause = xasprintf("getrandom: %s", strerror(errno));
			free(path);
			return -1;
		}
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd != -1) {
			if (write_all(fd, hex, 64) == -1 ||
			    write_all(fd, "\n", 1) == -1 || fsync(fd) == -1) {
				*cause = xasprintf(
				    "write %s: %s", path, strerror(errno));
				close(fd);
				unlink(path);
				free(path);
				return -1;
			}
			close(fd);
			*token = xstrdup(hex);
			free(path);
			return 0;
		}
		if (errno == EEXIST)
			fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd == -1) {
		*cause = xasprintf("open %s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n < 0)
		n = 0;
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (strlen(buf) < 16) {
		*cause = xasprintf("%s holds no token: remove it (the service "
		                   "makes a new one) or set ORCH_HTTP_TOKEN",
		    path);
		free(path);
		return -1;
	}
	free(path);
	*token = xstrdup(buf);
	return 0;
}

int
config_repo_allowed(const char *repo)
{
	const char *p = cfg.repos;
	size_t n = strlen(repo);

	if (p == NULL)
		return 1;
	/* A comma-separated list; spaces around the entries are ignored. */
	while (*p != '\0') {
		const char *e;
		size_t l;

		while (*p == ' ' || *p == ',')
			p++;
		e = p + strcspn(p, ",");
		l = (size_t)(e - p);
		while (l > 0 && p[l - 1] == ' ')
			l--;
		if (l > 0 && l == n && memcmp(p, repo, n) == 0)
			return 1;
		p = e;
	}
	return 0;
}
