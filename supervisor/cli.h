/*
 * The command line: cli_main for main.c, and what cli.c gives the cmd-*.c
 * files.
 */
#ifndef CLI_H
#define CLI_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "common.h"
#include "store.h"

/* Run the command line (argv as main has it): the exit status. */
int cli_main(int argc, char **argv);

#define EXIT_USAGE   2
#define CLI_DIFF_MAX (256 * 1024 * 1024) /* bytes of a diff show prints */

struct cmd {
	const char *name;
	int (*fn)(int, char **);
	const char *usage;
	const char *help;
};

/* The command being run, for cli_usage and cli_help. */
extern const struct cmd *cli_cmd;

/*
 * Text from outside as it may be shown to a person, controls and invalid
 * bytes as visible escapes; cli_safe_line escapes newlines and tabs too.
 * The result lives for the arguments of one printf.
 */
const char *cli_safe(const char *);
const char *cli_safe_line(const char *);
/* A JSON document for a program (--json), terminal controls escaped. */
void cli_json_print(const json_t *);
/* The same on one line (JSON lines, as `logs --json` prints them). */
void cli_json_line(const json_t *);
/* "orch-supervisor: MESSAGE" on stderr, escaped; returns 1. */
int __attribute__((format(printf, 1, 2))) cli_error(const char *fmt, ...);
int cli_usage(void); /* returns EXIT_USAGE */
int cli_help(void);  /* returns 0 */
/* A task id, or -1 after saying what is wrong. */
int cli_parse_id(const char *, int64_t *);
/*
 * cli_one_id parses "CMD ID" with the options b (--by) and r (--reason):
 * -1 when the command should go on, else the exit status.
 */
int cli_one_id(int argc, char **argv, int64_t *id, const char *flags,
    const struct option *opts, const char **by, const char **reason);

/* Open the database for reading; *st NULL (and 0) when it does not exist. */
int cli_open_ro(struct store **);
int cli_open_existing(struct store **, const char *why);
/*
 * How a change is made: 1 when the service runs (use the API), 0 when we
 * now hold the lock and *st is open read-write, -1 on error (said).
 */
int cli_writer(struct store **);
/* POST a change to the service: 0, or 1 after printing the error. */
int cli_post(const char *path, json_t *body, json_t **reply);

/* The foreground printer: the task's new events, as they are committed. */
struct printer {
	struct store *st;
	int64_t task; /* 0: every task */
	int64_t after;
	int color;
	int json;          /* JSON lines instead of text */
	const char *stage; /* only this stage's events, or NULL */
	unsigned kinds; /* only these kinds (bits of enum event_kind); 0 all */
	const char *since; /* only events at or after this "YYYY-MM-DD ..." */
};
void printer_init(struct printer *, int64_t task);
void printer_tick(void *printer); /* print what is new */
int printer_event_cb(const struct event_row *, void *printer);

/* The task's workflow state, or -1 when it cannot be read. */
int cli_task_state(int64_t id, enum wstate *);
/* 1 when the task waits for a person at its budget, 0 not, -1 unknown. */
int cli_task_paused(int64_t id);

int cli_list(int status, int resumable, int json);
int cmd_resume(int64_t id, const char *repo, int full);

int cmd_serve(int, char **);
int cmd_submit(int, char **);
int cmd_run(int, char **);
int cmd_list(int, char **);
int cmd_show(int, char **);
int cmd_logs(int, char **);
int cmd_approve(int, char **);
int cmd_reject(int, char **);
int cmd_cancel(int, char **);
int cmd_stats(int, char **);
int cmd_backup(int, char **);
int cmd_doctor(int, char **);
int cmd_gc(int, char **);
int cmd_console_url(int, char **);
int cmd_db_copy(int, char **);
int cmd_nodes(int, char **);
/* The nodes of store_nodes_json as a table (nodes, stats). */
void cli_nodes_print(json_t *nodes);

#endif
