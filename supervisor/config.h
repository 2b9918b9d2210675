/* config.c: settings from flags, the environment, .env and defaults. */
#ifndef CONFIG_H
#define CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "proto.h"

struct config {
	char *state_dir;
	char *db_path;      /* the SQLite file, when database_url is NULL */
	char *database_url; /* ORCH_DATABASE_URL: PostgreSQL */
	char *env_file;     /* --env-file, else ./.env when present */
	int enable_resume;
	int backup_on_start;
	int autocheckpoint;
	char *provider;
	char *base_url;
	char *model;
	char *api_key;
	char *script;
	char *scripted_trace;
	unsigned llm_timeout_s;
	unsigned llm_max_retries;
	char *llm_fallback_models; /* ORCH_LLM_FALLBACK_MODELS, checked */
	int auto_approve;
	unsigned max_workers;
	unsigned max_retries;
	unsigned retry_backoff_ms;
	unsigned worker_timeout_s;
	unsigned max_steps;
	unsigned max_review_rounds;
	unsigned max_verify_rounds;
	unsigned cmd_timeout_s;
	uint64_t max_tokens;
	char *llm_prices;    /* ORCH_LLM_PRICES: inline JSON or a file */
	char *max_cost_text; /* ORCH_MAX_COST as given */
	double max_cost;     /* ORCH_MAX_COST: 0, no limit */
	char *verify_command;
	char *profiles_dir;
	char *worker_path;
	char *model_path; /* ORCH_MODEL_PATH: the model process's program */
	int log_level;
	char *notify_url;         /* ORCH_NOTIFY_URL */
	uint64_t audit_max_bytes; /* ORCH_AUDIT_MAX_BYTES, per file */
	unsigned retention_days;  /* ORCH_RETENTION_DAYS: gc's default */
	unsigned max_connections; /* ORCH_MAX_CONNECTIONS on the socket */
	/* ORCH_SNAPSHOT_MAX_FILE_BYTES: larger files stay out of snapshots */
	uint64_t snapshot_max_file_bytes;
	char *http_listen; /* ORCH_HTTP_LISTEN: the console's TCP address */
	char *http_token; /* ORCH_HTTP_TOKEN, else $ORCH_STATE_DIR/http-token */
	char *repos;      /* ORCH_REPOS: repositories a TCP client may use */
	/* Multi-node (PostgreSQL): this service's name, its leases' length,
	 * and the cap on running tasks of one repository (0: none). */
	char *node_name;             /* ORCH_NODE_NAME, default the host name */
	unsigned lease_s;            /* ORCH_LEASE_S */
	unsigned max_tasks_per_repo; /* ORCH_MAX_TASKS_PER_REPO */
};

extern struct config cfg;

/* Load the configuration; on error print what is wrong and exit 2. */
void config_load(const char *env_file);
int config_auto_approve_parse(const char *, int *);
const char *config_auto_approve_name(int);
/* Parse a .env file's text into cfg (the fuzz target's entry). */
int config_parse_env(FILE *f, const char *path, char **cause);
/* Where the sandbox profiles are read from (malloc'd). */
char *config_profiles_dir(void);
/* The worker program to exec: ORCH_WORKER_PATH, else beside us. */
const char *config_worker_path(void);
#define CONFIG_MAX_FALLBACKS 8
/* Check ORCH_LLM_FALLBACK_MODELS (NULL: none): 0, or -1 with *why. */
int config_fallback_check(const char *list, const char **why);
/* Whether model is one of the list's. */
int config_fallback_has(const char *list, const char *model);
/* The model process's program: ORCH_MODEL_PATH, else beside the worker. */
const char *config_model_path(void);
/* The control API's Unix socket in the state directory (malloc'd). */
char *config_socket_path(void);
/*
 * Fill the settings of START (everything but the task's own fields) from
 * cfg, every default worked out here; the strings are malloc'd (freed by
 * msg_start_clear).
 */
void config_start(struct msg_start *);
/* A copy of text from outside, made valid UTF-8, or NULL for NULL. */
char *config_text(const char *);
/*
 * ORCH_HTTP_LISTEN parsed: HOST:PORT, [V6]:PORT; *loopback says whether
 * the address is a loopback one.  -1 with *cause when malformed.
 */
struct sockaddr_storage;
int config_listen_parse(const char *, struct sockaddr_storage *, unsigned *len,
    int *loopback, char **cause);
/*
 * The console's bearer token: ORCH_HTTP_TOKEN, else the one in
 * $ORCH_STATE_DIR/http-token, made (random, mode 0600) when missing.
 * malloc'd in *token; -1 with *cause.
 */
int config_http_token(char **token, char **cause);
/* Whether repo is one of ORCH_REPOS (1), or ORCH_REPOS is unset (1). */
int config_repo_allowed(const char *repo);
/*
 * Whether name is a fit node name: 1 to 63 of [A-Za-z0-9._-], starting
 * with a letter or digit (it is printed, logged and used in SQL text).
 */
int config_node_name_ok(const char *name);
/* Make the state directory (0700) and its subdirectories. */
int config_make_state_dir(char **cause);

#endif
