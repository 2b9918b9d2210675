/*
 * The systemd notify protocol, without libsystemd: one datagram of
 * "VAR=value" lines to the AF_UNIX socket named by $NOTIFY_SOCKET (a path,
 * or an abstract name when it starts with '@').  READY=1 once recovery is
 * done, STATUS= with the running and queued counts, WATCHDOG=1 at half
 * of $WATCHDOG_USEC, STOPPING=1 on the way out.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common.h"
#include "sdnotify.h"
#include "store.h"

static struct event *sdnotify_watchdog_ev;
static char sdnotify_last_status[128];
static uint64_t sdnotify_status_ms;

int
sdnotify_send(const char *fmt, ...)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun;
	struct iovec iov;
	struct msghdr mh;
	socklen_t len;
	va_list ap;
	char *msg;
	int fd, rc;

	if (path == NULL || (path[0] != '/' && path[0] != '@') ||
	    strlen(path) >= sizeof sun.sun_path)
		return 0;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	len = offsetof(struct sockaddr_un, sun_path) + strlen(path);
	if (path[0] == '@')
		sun.sun_path[0] = '\0'; /* the abstract namespace */
	else
		len++; /* with its NUL, as systemd's own sd_notify does */
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1) {
		free(msg);
		return -1;
	}
	iov.iov_base = msg;
	iov.iov_len = strlen(msg);
	memset(&mh, 0, sizeof mh);
	mh.msg_name = &sun;
	mh.msg_namelen = len;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	rc = sendmsg(fd, &mh, MSG_NOSIGNAL) == -1 ? -1 : 1;
	if (rc == -1)
		log_debug("NOTIFY_SOCKET %s: %s", path, strerror(errno));
	close(fd);
	free(msg);
	return rc;
}

static void
sdnotify_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sdnotify_send("WATCHDOG=1");
}

void
sdnotify_init(struct event_base *base)
{
	const char *usec = getenv("WATCHDOG_USEC");
	const char *pid = getenv("WATCHDOG_PID");
	uint64_t us, p;
	struct timeval tv;

	if (usec == NULL || parse_u64(usec, 1, UINT64_MAX, &us) == -1)
		return;
	/* The watchdog is for our pid only (not for a child that inherited
	 * the environment). */
	if (pid != NULL &&
	    (parse_u64(pid, 1, INT32_MAX, &p) == -1 || (pid_t)p != getpid()))
		return;
	us /= 2; /* ping at half the period, as sd_watchdog_enabled advises */
	tv.tv_sec = (time_t)(us / 1000000);
	tv.tv_usec = (suseconds_t)(us % 1000000);
	sdnotify_watchdog_ev =
	    event_new(base, -1, EV_PERSIST, sdnotify_watchdog_cb, NULL);
	event_add(sdnotify_watchdog_ev, &tv);
	sdnotify_send("WATCHDOG=1");
}

void
sdnotify_status(struct store *st, unsigned running)
{
	char status[128];
	int64_t queued = 0, waiting = 0;
	uint64_t now = now_ms();

	if (st == NULL || getenv("NOTIFY_SOCKET") == NULL ||
	    now - sdnotify_status_ms < 1000)
		return;
	sdnotify_status_ms = now;
	if (store_task_count(st, TS_PENDING, &queued) == -1 ||
	    store_task_count(st, TS_AWAITING_APPROVAL, &waiting) == -1)
		return;
	snprintf(status, sizeof status,
	    "%u running, %lld queued, %lld awaiting approval", running,
	    (long long)queued, (long long)waiting);
	if (strcmp(status, sdnotify_last_status) == 0)
		return;
	memcpy(sdnotify_last_status, status, sizeof status);
	sdnotify_send("STATUS=%s", status);
}

void
sdnotify_free(void)
{
	if (sdnotify_watchdog_ev != NULL)
		event_free(sdnotify_watchdog_ev);
	sdnotify_watchdog_ev = NULL;
	sdnotify_last_status[0] = '\0';
	sdnotify_status_ms = 0;
}
