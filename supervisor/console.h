/*
 * console.c: the web console, and who may ask over TCP.  The pages are
 * rendered on the service from the same task operations the JSON API
 * uses; console/ holds the stylesheet and the one script, compiled in.
 */
#ifndef CONSOLE_H
#define CONSOLE_H

#include <stddef.h>

#include "common.h"
#include "store.h"
#include "task.h"

struct evhttp_request;
struct evkeyvalq;

#define CONSOLE_SECRET_LEN 64 /* hex digits of a session id or CSRF token */

/* Who is asking, as console_auth found out. */
struct console_who {
	int tcp;     /* over TCP (else the Unix socket: its own user) */
	int session; /* a browser's session cookie (else a bearer token) */
	char name[TASK_MAX_NAME + 1];      /* the session's name, for *_by */
	char csrf[CONSOLE_SECRET_LEN + 1]; /* the session's CSRF token */
};

/* The pages read st; with tcp (ORCH_HTTP_LISTEN set), load the token. */
int console_init(struct store *st, int tcp, char **cause);
void console_free(void);
/*
 * Authenticate a TCP request: 0 with *who filled when it may go on, -1
 * after answering it (401, 403, or a browser sent to the login page).
 */
int console_auth(
    struct evhttp_request *, const char *path, struct console_who *);
/* Answer a console path (1), or 0 when path is not one. */
int console_route(struct evhttp_request *, const char *path,
    struct evkeyvalq *query, const struct console_who *);
/* The headers every answer over TCP carries (CSP, nosniff, ...). */
void console_headers(struct evhttp_request *);
/*
 * Text from outside as HTML text or a quoted attribute value: & < > " '
 * as entities, controls and bytes that are not UTF-8 as visible escapes
 * (utf8_show).  NULL adds nothing.
 */
void console_html(struct buf *, const char *);
/* Equal strings, in a time that does not depend on where they differ. */
int console_secret_equal(const char *given, const char *secret);

#endif
