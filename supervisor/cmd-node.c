/*
 * nodes: the services sharing the PostgreSQL database, as the database
 * sees them (their heartbeats are in its time, not this machine's).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "server.h"
#include "store.h"

/* One line per node: name, state, heartbeat and its age, running/slots. */
void
cli_nodes_print(json_t *nodes)
{
	size_t i;
	json_t *n;

	printf("%-24s %-8s %-24s %9s %s\n", "NODE", "STATE", "HEARTBEAT", "AGO",
	    "RUNNING");
	json_array_foreach(nodes, i, n) {
		const char *name =
		    json_string_value(json_object_get(n, "name"));
		const char *hb =
		    json_string_value(json_object_get(n, "heartbeat_at"));
		int live = json_is_true(json_object_get(n, "live"));
		int stopped = !json_is_null(json_object_get(n, "stopped_at"));

		/* The names were checked at join (config_node_name_ok), but
		 * a row is the database's: printed escaped all the same. */
		printf("%-24s %-8s %-24s %8llds %lld/%lld\n",
		    cli_safe_line(name != NULL ? name : "?"),
		    live      ? "live"
		    : stopped ? "stopped"
		              : "dead",
		    hb != NULL && *hb != '\0' ? hb : "-",
		    (long long)json_integer_value(
		        json_object_get(n, "heartbeat_age_s")),
		    (long long)json_integer_value(
		        json_object_get(n, "running")),
		    (long long)json_integer_value(
		        json_object_get(n, "capacity")));
	}
}

int
cmd_nodes(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	struct store *st;
	json_t *nodes;
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
	if (cli_open_existing(&st, "yet") == -1)
		return 1;
	if (strcmp(store_backend(st), "postgresql") != 0) {
		store_close(st);
		cli_error("nodes: the SQLite store runs one service; several"
		          " nodes share a PostgreSQL database"
		          " (ORCH_DATABASE_URL)");
		return 1;
	}
	if (store_nodes_json(st, &nodes) == -1) {
		cli_error("%s", store_error(st));
		store_close(st);
		return 1;
	}
	store_close(st);
	if (json) {
		cli_json_print(nodes);
		putchar('\n');
	} else
		cli_nodes_print(nodes);
	json_decref(nodes);
	return 0;
}
