/*
 * A misbehaving worker for the integration tests, started by the supervisor
 * in place of orch-worker (ORCH_WORKER_PATH).  The supervisor gives workers
 * only PATH, LANG and HOME, so the test steers it through files in $HOME:
 *
 *   bad-worker.modes   one mode per line; the n-th start uses line n
 *   bad-worker.count   one byte per start so far (its size is n)
 *   bad-worker.real    the real orch-worker, exec'd once the modes run out
 *
 * Modes (after a correct HELLO, except "silent"):
 *   crash      abort() after START
 *   exit1      exit(1) after START
 *   hang       stop talking (no heartbeats), sleep forever
 *   silent     never even say HELLO
 *   garbage    write random bytes
 *   truncated  a header promising 100 bytes, then 10 bytes and exit
 *   oversized  a header announcing PROTO_MAX_FRAME + 1 bytes
 *   nested     a frame of 2000 nested arrays
 *   hugearray  a frame whose array header claims 2^32-1 elements
 *   badseq     a JOURNAL with a sequence number out of order
 *   wrongdir   an ACK, which only the supervisor may send
 *   flood      2000 LOG lines as fast as it can, then crash
 *   badtext    a LOG line that is not UTF-8 and full of terminal escapes,
 *              then exit(1)
 *   real       exec the real worker
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"

#define FD 3

static char *
home_file(const char *name)
{
	static char path[4096];
	const char *home = getenv("HOME");

	snprintf(path, sizeof path, "%s/%s", home ? home : "/tmp", name);
	return path;
}

/* This start's mode: line n of bad-worker.modes, n counted in .count. */
static void
pick_mode(char *mode, size_t size)
{
	FILE *f;
	char line[64];
	long n;
	int fd = open(
	    home_file("bad-worker.count"), O_WRONLY | O_APPEND | O_CREAT, 0600);

	n = lseek(fd, 0, SEEK_END);
	if (write(fd, "x", 1) != 1)
		_exit(2);
	close(fd);
	snprintf(mode, size, "real");
	if ((f = fopen(home_file("bad-worker.modes"), "r")) == NULL)
		return;
	for (long i = 0; fgets(line, sizeof line, f) != NULL; i++) {
		if (i == n) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(mode, size, "%s", line);
			break;
		}
	}
	fclose(f);
}

static void
exec_real(char **argv)
{
	FILE *f = fopen(home_file("bad-worker.real"), "r");
	char path[4096];

	if (f == NULL || fgets(path, sizeof path, f) == NULL)
		_exit(3);
	fclose(f);
	path[strcspn(path, "\n")] = '\0';
	execv(path, argv);
	_exit(4);
}

static void
send_msg(struct proto_msg *m)
{
	const char *cause;

	if (proto_write_fd(FD, m, &cause) == -1)
		_exit(5);
	proto_msg_clear(m);
}

static void
raw(const void *p, size_t n)
{
	if (write(FD, p, n) != (ssize_t)n)
		_exit(6);
}

int
main(int argc, char **argv)
{
	char mode[64];
	struct proto_msg m;
	struct msg_start start;
	const char *cause;

	(void)argc;
	pick_mode(mode, sizeof mode);
	fprintf(stderr, "bad-worker: mode %s\n", mode);
	if (strcmp(mode, "real") == 0)
		exec_real(argv);
	if (strcmp(mode, "silent") == 0)
		for (;;)
			pause();

	proto_msg_init(&m, PROTO_HELLO);
	m.u[PF_VERSION] = PROTO_VERSION;
	m.u[PF_PID] = (uint64_t)getpid();
	send_msg(&m);
	/* A START the real worker would refuse is the supervisor's bug. */
	if (proto_read_fd(FD, &m, &cause) != 0 ||
	    proto_start_get(&m, &start, &cause) != 0)
		_exit(7);
	msg_start_clear(&start);
	proto_msg_clear(&m);

	if (strcmp(mode, "crash") == 0) {
		fprintf(stderr, "bad-worker: crashing on purpose\n");
		abort();
	}
	if (strcmp(mode, "exit1") == 0)
		exit(1);
	if (strcmp(mode, "badtext") == 0) {
		proto_msg_init(&m, PROTO_LOG);
		m.u[PF_LEVEL] = PROTO_LOG_INFO;
		proto_set_str(&m, PF_TEXT,
		    "caf\xe9 \x1b]52;c;ZXZpbA==\x07\x1b[8mhidden \x9b"
		    "2J "
		    "cut \xe2\x9c");
		send_msg(&m);
		exit(1);
	}
	if (strcmp(mode, "hang") == 0)
		for (;;)
			pause();
	if (strcmp(mode, "garbage") == 0) {
		unsigned char buf[4096];
		for (size_t i = 0; i < sizeof buf; i++)
			buf[i] = (unsigned char)(i * 131 + 7);
		raw(buf, sizeof buf);
	} else if (strcmp(mode, "truncated") == 0) {
		unsigned char buf[14] = {0, 0, 0, 100, 0x93, 1, 1, 1};
		raw(buf, sizeof buf);
		exit(0);
	} else if (strcmp(mode, "oversized") == 0) {
		uint32_t len = PROTO_MAX_FRAME + 1;
		unsigned char hdr[4] = {(unsigned char)(len >> 24),
		    (unsigned char)(len >> 16), (unsigned char)(len >> 8),
		    (unsigned char)len};
		raw(hdr, 4);
	} else if (strcmp(mode, "nested") == 0) {
		static unsigned char buf[4 + 2001];
		buf[2] = (2001 >> 8) & 0xff;
		buf[3] = 2001 & 0xff;
		memset(buf + 4, 0x91, 2000);
		buf[4 + 2000] = 0x01;
		raw(buf, sizeof buf);
	} else if (strcmp(mode, "hugearray") == 0) {
		unsigned char buf[9] = {
		    0, 0, 0, 5, 0xdd, 0xff, 0xff, 0xff, 0xff};
		raw(buf, sizeof buf);
	} else if (strcmp(mode, "badseq") == 0) {
		proto_msg_init(&m, PROTO_JOURNAL);
		m.u[PF_SEQ] = 42;
		proto_set_str(&m, PF_KIND, "reply");
		proto_set_str(&m, PF_DATA, "{}");
		send_msg(&m);
	} else if (strcmp(mode, "wrongdir") == 0) {
		proto_msg_init(&m, PROTO_ACK);
		m.u[PF_SEQ] = 1;
		send_msg(&m);
	} else if (strcmp(mode, "flood") == 0) {
		signal(SIGPIPE, SIG_IGN);
		for (int i = 0; i < 2000; i++) {
			proto_msg_init(&m, PROTO_LOG);
			m.u[PF_LEVEL] = PROTO_LOG_INFO;
			proto_set_str(&m, PF_TEXT, "flood");
			send_msg(&m);
		}
		abort();
	}
	/* Wait to be killed; leave by ourselves after a while. */
	sleep(30);
	return 0;
}
