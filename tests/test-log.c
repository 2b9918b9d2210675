/*
 * The service's log (common/log.c): one logfmt line per event, its values
 * escaped so that a hostile message stays on its line, and written with a
 * single write, so that it arrives whole (here, as one datagram of a
 * SOCK_SEQPACKET stderr) among the workers' lines passed on to the same
 * stderr.
 */
#include <sys/socket.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "tap.h"

/* The next write to stderr, as it was written. */
static char *
next_write(int fd, char *buf, size_t size)
{
	ssize_t n = recv(fd, buf, size - 1, MSG_DONTWAIT);

	if (n < 0)
		n = 0;
	buf[n] = '\0';
	return buf;
}

int
main(void)
{
	int sp[2], saved;
	char got[16384];
	const char *p;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) == -1)
		fatal("socketpair");
	saved = dup(STDERR_FILENO);
	dup2(sp[1], STDERR_FILENO);

	log_init("orch-test", LOG_LEVEL_INFO);
	log_task(LOG_LEVEL_INFO, 42, "planning",
	    "a \"quoted\" \\ path\nsecond"
	    " line\x01 end");
	p = next_write(sp[0], got, sizeof got);
	ok(strncmp(p, "ts=", 3) == 0, "the line starts with its time");
	ok(strstr(p,
	       " level=info prog=orch-test task=42 stage=planning msg="
	       "\"a \\\"quoted\\\" \\\\ path\\nsecond line\\x01 end\"\n") !=
	        NULL,
	    "fields in order, the message escaped, one newline at the end");
	ok(strchr(p, '\n') == p + strlen(p) - 1,
	    "the whole line came in one write");
	is_str(next_write(sp[0], got, sizeof got), "", "and nothing after it");

	log_task(LOG_LEVEL_DEBUG, 1, NULL, "not shown");
	is_str(next_write(sp[0], got, sizeof got), "",
	    "a level above the one set writes nothing");

	dup2(saved, STDERR_FILENO);
	close(saved);
	close(sp[0]);
	close(sp[1]);
	return tap_done();
}
