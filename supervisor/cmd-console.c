/*
 * console-url: where the web console answers, and its token.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"

/* The address a browser on this machine opens: a wildcard is loopback. */
static char *
console_url_base(void)
{
	struct sockaddr_storage ss;
	char host[INET6_ADDRSTRLEN], *err;
	unsigned len;
	int lo, port;

	if (config_listen_parse(cfg.http_listen, &ss, &len, &lo, &err) == -1) {
		cli_error("%s", err);
		free(err);
		return NULL;
	}
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		if (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr))
			a->sin6_addr = in6addr_loopback;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
		port = ntohs(a->sin6_port);
		return xasprintf("http://[%s]:%d/", host, port);
	}
	{
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		if (a->sin_addr.s_addr == htonl(INADDR_ANY))
			a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
		port = ntohs(a->sin_port);
		return xasprintf("http://%s:%d/", host, port);
	}
}

int
cmd_console_url(int argc, char **argv)
{
	static const struct option opts[] = {{"token", no_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	char *token, *base, *err;
	int c, only_token = 0;

	while ((c = getopt_long(argc, argv, "th", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			only_token = 1;
			break;
		case 'h':
			return cli_help();
		default:
			return cli_usage();
		}
	}
	if (optind != argc)
		return cli_usage();
	if (cfg.http_listen == NULL) {
		cli_error("ORCH_HTTP_LISTEN is not set: set it (e.g. "
		          "127.0.0.1:8080) and start the service");
		return 1;
	}
	if (config_http_token(&token, &err) == -1) {
		cli_error("%s", err);
		free(err);
		return 1;
	}
	if (only_token) {
		printf("%s\n", token);
		free(token);
		return 0;
	}
	if ((base = console_url_base()) == NULL) {
		free(token);
		return 1;
	}
	/* The token rides in the fragment, which browsers never send. */
	printf("%slogin#token=%s\n", base, token);
	free(base);
	free(token);
	return 0;
}
