/*
 * Commands that move the database: db-copy.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "config.h"
#include "server.h"

/*
 * db-copy --to URL: the SQLite database (DB_PATH) into an empty
 * PostgreSQL one, every row with its id, checked by counting.  The state
 * directory's lock keeps the service (and every other writer) out of the
 * source meanwhile, and the destination's lock any service on it.
 */
int
cmd_db_copy(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"to", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	struct store *from = NULL, *to = NULL;
	const char *url = NULL, *k;
	char *cause = NULL, *shown = NULL;
	json_t *report = NULL, *v;
	int c, rc = 1;

	while ((c = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			url = optarg;
			break;
		case 'h':
			return cli_help();
		default:
			return cli_usage();
		}
	}
	if (optind != argc || url == NULL)
		return cli_usage();
	shown = store_url_mask(url);
	switch (server_lock(&cause)) {
	case -1:
		cli_error("%s", cause);
		goto out;
	case 1:
		cli_error("a service runs on %s: stop it first, so that the "
		          "database does not change while it is copied",
		    cfg.state_dir);
		goto out;
	}
	if (store_open(&from, cfg.db_path, STORE_RDONLY, NULL, &cause) == -1) {
		cli_error("%s", cause);
		goto out;
	}
	if (store_open_url(&to, url, STORE_RW, NULL, &cause) == -1) {
		cli_error("%s", cause);
		goto out;
	}
	if (server_store_lock(to, &cause) != 0) {
		cli_error("%s", cause);
		goto out;
	}
	if (store_copy(from, to, &report, &cause) == -1) {
		cli_error("copy %s into %s: %s", cfg.db_path, shown, cause);
		goto out;
	}
	printf("copied %s into %s:\n", cfg.db_path, shown);
	json_object_foreach(report, k, v)
		printf(
		    "  %-12s %lld rows\n", k, (long long)json_integer_value(v));
	printf("row counts checked.  To use it: set ORCH_DATABASE_URL and "
	       "unset DB_PATH.\n");
	rc = 0;
out:
	json_decref(report);
	store_close(from);
	store_close(to);
	free(cause);
	free(shown);
	return rc;
}
