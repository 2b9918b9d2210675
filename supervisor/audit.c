/*
 * The audit trail: every event of a task, one JSON object per line, in
 * $ORCH_STATE_DIR/logs/task-ID.jsonl, written by the service as events are
 * committed.  A file that would pass ORCH_AUDIT_MAX_BYTES is rotated once
 * (task-ID.jsonl.1, replacing the previous one).  logs/audit.pos remembers
 * the last event written, so that a service that starts writes what was
 * added without it (the CLI changes the database when no service runs).
 * That catching up runs from the loop, 1000 events at a time, so a large
 * backlog (a database restored from a backup) does not delay the start.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common.h"
#include "audit.h"
#include "config.h"
#include "store.h"
#include "task.h"

static int64_t audit_pos;
static int64_t audit_saved = -1;
static int audit_pos_fd = -1;
static struct store *audit_st;
static struct event *audit_catch_up_ev;
static int audit_behind; /* catching up: new events wait their turn */

char *
audit_path(int64_t task)
{
	return xasprintf(
	    "%s/logs/task-%lld.jsonl", cfg.state_dir, (long long)task);
}

static char *
audit_pos_path(void)
{
	return xasprintf("%s/logs/audit.pos", cfg.state_dir);
}

/*
 * The files of the tasks written last stay open (a task's events come in
 * runs), with their sizes, so an event costs one write, not a stat, an
 * open and a close.  The files are ours: rotate them with
 * ORCH_AUDIT_MAX_BYTES, not by renaming them (copytruncate would do).
 */
#define AUDIT_OPEN 16
static struct audit_file {
	int64_t task; /* 0: free */
	int fd;
	uint64_t size;
	uint64_t used; /* for least recently used */
} audit_files[AUDIT_OPEN];
static uint64_t audit_clock;

static void
audit_file_close(struct audit_file *f)
{
	if (f->task != 0)
		close(f->fd);
	f->task = 0;
	f->used = 0; /* taken first */
}

/* The open file of task, opened (and another closed) if need be. */
static struct audit_file *
audit_file_get(int64_t task)
{
	struct audit_file *f = &audit_files[0];
	struct stat sb;
	char *path;

	for (size_t i = 0; i < AUDIT_OPEN; i++) {
		if (audit_files[i].task == task) {
			f = &audit_files[i];
			f->used = ++audit_clock;
			return f;
		}
		if (audit_files[i].used < f->used)
			f = &audit_files[i];
	}
	audit_file_close(f);
	path = audit_path(task);
	f->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (f->fd == -1 || fstat(f->fd, &sb) == -1) {
		log_warn("audit file %s", path);
		if (f->fd != -1)
			close(f->fd);
		free(path);
		return NULL;
	}
	free(path);
	f->task = task;
	f->size = (uint64_t)sb.st_size;
	f->used = ++audit_clock;
	return f;
}

static void
audit_write(const struct event_row *ev)
{
	struct audit_file *f;
	json_t *o;
	char *line;
	size_t len;

	if (ev->id <= audit_pos)
		return;
	audit_pos = ev->id;
	/* The text may be anything a worker sent: made valid, not dropped. */
	o = json_pack("{s:I,s:s,s:I,s:s,s:o,s:o}", "id", (json_int_t)ev->id,
	    "ts", ev->ts, "task", (json_int_t)ev->task, "kind", ev->kind,
	    "stage", task_json_text(ev->stage), "text",
	    task_json_text(ev->text));
	if (o == NULL)
		return;
	line = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	len = strlen(line);
	line[len++] = '\n'; /* replaces the NUL: write len bytes */
	if ((f = audit_file_get(ev->task)) != NULL && f->size > 0 &&
	    f->size + len > cfg.audit_max_bytes) {
		char *path = audit_path(ev->task),
		     *old = xasprintf("%s.1", path);

		audit_file_close(f);
		if (rename(path, old) == -1)
			log_warn("rotating %s", path);
		free(old);
		free(path);
		f = audit_file_get(ev->task);
	}
	if (f != NULL) {
		if (write_all(f->fd, line, len) == -1) {
			log_warn(
			    "audit file of task %lld", (long long)ev->task);
			audit_file_close(f);
		} else
			f->size += len;
	}
	free(line);
}

/*
 * The position is rewritten in place, always 21 bytes ("%020lld\n"), by a
 * descriptor kept open: a write within one sector, where a new file and a
 * rename for every batch of events cost an inode each.
 */
void
audit_flush(void)
{
	char *path, buf[32];
	int n;

	if (audit_pos == audit_saved)
		return;
	if (audit_pos_fd == -1) {
		path = audit_pos_path();
		audit_pos_fd =
		    open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (audit_pos_fd == -1)
			log_warn("audit position %s", path);
		free(path);
		if (audit_pos_fd == -1)
			return;
	}
	n = snprintf(buf, sizeof buf, "%020lld\n", (long long)audit_pos);
	if (pwrite(audit_pos_fd, buf, (size_t)n, 0) == n)
		audit_saved = audit_pos;
}

void
audit_event(const struct event_row *ev)
{
	if (!audit_behind)
		audit_write(ev);
}

static int
audit_catch_up_cb(const struct event_row *ev, void *arg)
{
	int *n = arg;

	audit_write(ev);
	(*n)++;
	return 0;
}

static void
audit_catch_up(evutil_socket_t fd, short what, void *arg)
{
	struct timeval now = {0, 0};
	int n = 0;

	(void)fd;
	(void)what;
	(void)arg;
	if (store_event_list(
	        audit_st, 0, audit_pos, 1000, audit_catch_up_cb, &n) == -1) {
		log_warnx("audit: %s", store_error(audit_st));
		n = 0;
	}
	audit_flush();
	if (n == 1000)
		event_add(audit_catch_up_ev, &now); /* after the next poll */
	else
		audit_behind = 0;
}

void
audit_init(struct event_base *base, struct store *st)
{
	struct timeval now = {0, 0};
	char *path = audit_pos_path(), buf[32];
	FILE *f;
	uint64_t v;

	audit_pos = 0;
	audit_saved = -1;
	if ((f = fopen(path, "re")) != NULL) {
		if (fgets(buf, sizeof buf, f) != NULL) {
			buf[strcspn(buf, "\n")] = '\0';
			if (parse_u64(buf, 0, INT64_MAX, &v) == 0)
				audit_pos = audit_saved = (int64_t)v;
		}
		fclose(f);
	}
	free(path);
	audit_st = st;
	audit_behind = 1;
	audit_catch_up_ev = evtimer_new(base, audit_catch_up, NULL);
	event_add(audit_catch_up_ev, &now);
}

void
audit_close(void)
{
	if (audit_catch_up_ev != NULL)
		event_free(audit_catch_up_ev);
	audit_catch_up_ev = NULL;
	audit_st = NULL;
	audit_flush();
	if (audit_pos_fd != -1)
		close(audit_pos_fd);
	audit_pos_fd = -1;
	for (size_t i = 0; i < AUDIT_OPEN; i++)
		audit_file_close(&audit_files[i]);
}

void
audit_remove(int64_t task)
{
	char *path = audit_path(task), *old = xasprintf("%s.1", path);

	for (size_t i = 0; i < AUDIT_OPEN; i++) {
		if (audit_files[i].task == task)
			audit_file_close(&audit_files[i]);
	}

	if (unlink(path) == -1 && errno != ENOENT)
		log_warn("removing %s", path);
	unlink(old);
	free(old);
	free(path);
}
