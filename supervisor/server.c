/*
 * The service: one per state directory (an flock), a libevent loop with
 * signals, the scheduler and the control socket.
 */
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common.h"
#include "audit.h"
#include "config.h"
#include "control.h"
#include "doctor.h"
#include "metrics.h"
#include "notify.h"
#include "modelproc.h"
#include "proc.h"
#include "scheduler.h"
#include "sdnotify.h"
#include "server.h"
#include "store.h"

/* A fetch of an origin at an API submit (the loop waits for it). */
#define SERVER_ORIGIN_TIMEOUT_S 30

volatile int server_quit;
static int server_lockfd = -1;
static struct event_base *server_base;
static void (*server_tick_fn)(void *);
static void *server_tick_arg;
static struct store *server_st;
static struct event *server_pump_ev;
static int64_t server_pump_last; /* the last event handed out */
static uint64_t server_pump_at;  /* when the last pump ran */
/*
 * The pump runs at most this often: a reading of the events table per
 * commit was a tenth of the service's CPU with a thousand workers, and a
 * stream that is 20 ms late is as live to a person.
 */
#define SERVER_PUMP_MS 20

static int
server_pump_cb(const struct event_row *ev, void *arg)
{
	int *n = arg;
	enum tstatus ts =
	    ev->state < WS_MAX ? wstate_status(ev->state) : TS_MAX;

	server_pump_last = ev->id;
	(*n)++;
	/* A task that waits for a person or has ended (what a webhook tells)
	 * is told so only once that is durable: a result commits lazily and
	 * may wait for the group's flush (sched.c).  A stage's start is not
	 * worth a sync of its own (a power cut would start it again). */
	if (ts != TS_MAX && ts != TS_PENDING && ts != TS_IN_PROGRESS)
		sched_flush();
	control_event(ev);
	audit_event(ev);
	notify_event(server_st, ev);
	return 0;
}

/*
 * Hand committed events to the event streams, the audit files and the
 * notifier.  Runs from the loop after the store's hook said that a row
 * was inserted, so the writer's transaction is over by now.
 */
static void
server_pump(evutil_socket_t fd, short what, void *arg)
{
	int n;

	(void)fd;
	(void)what;
	(void)arg;
	server_pump_at = now_ms();
	do {
		n = 0;
		if (store_event_list(server_st, 0, server_pump_last, 500,
		        server_pump_cb, &n) == -1) {
			log_warnx(
			    "reading new events: %s", store_error(server_st));
			break;
		}
	} while (n == 500);
	audit_flush();
}

static void
server_event_hook(void *arg)
{
	uint64_t since = now_ms() - server_pump_at;
	struct timeval tv = {0, 0};

	(void)arg;
	if (server_pump_ev == NULL ||
	    event_pending(server_pump_ev, EV_TIMEOUT, NULL))
		return;
	if (since < SERVER_PUMP_MS)
		tv.tv_usec = (suseconds_t)(SERVER_PUMP_MS - since) * 1000;
	event_add(server_pump_ev, &tv);
}

int
server_lock(char **cause)
{
	char *path;
	int fd;

	if (server_lockfd != -1)
		return 0;
	if (config_make_state_dir(cause) == -1)
		return -1;
	path = xasprintf("%s/lock", cfg.state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd == -1) {
		*cause = xasprintf("cannot open %s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	free(path);
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		close(fd);
		if (errno == EWOULDBLOCK)
			return 1;
		*cause = xasprintf(
		    "cannot lock the state directory: %s", strerror(errno));
		return -1;
	}
	server_lockfd = fd;
	return 0;
}

static void
server_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (sig == SIGCHLD) {
		proc_sigchld();
		return;
	}
	if (!server_quit)
		log_info("signal %d: stopping workers at a safe point; their "
		         "tasks stay resumable",
		    (int)sig);
	server_quit = 1;
	sched_shutdown();
}

static void
server_check_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (server_tick_fn != NULL)
		server_tick_fn(server_tick_arg);
	sdnotify_status(server_st, proc_count());
	if (sched_done())
		event_base_loopbreak(server_base);
}

int
server_store_open(struct store **st, enum store_mode mode, char **cause)
{
	struct store_opts so = {(int)cfg.autocheckpoint, 5000};
	struct stat sb;

	*st = NULL;
	*cause = NULL;
	if (cfg.database_url != NULL)
		return store_open_url(st, cfg.database_url, mode, &so, cause);
	if (mode == STORE_RDONLY && stat(cfg.db_path, &sb) == -1 &&
	    errno == ENOENT)
		return 0;
	return store_open(st, cfg.db_path, mode, &so, cause);
}

char *
server_store_name(void)
{
	if (cfg.database_url != NULL)
		return store_url_mask(cfg.database_url);
	return xstrdup(cfg.db_path);
}

int
server_store_lock(struct store *st, char **cause)
{
	char *name;
	int taken;

	*cause = NULL;
	if (store_lock(st, &taken) == -1) {
		*cause = xasprintf("the database's lock: %s", store_error(st));
		return -1;
	}
	if (taken)
		return 0;
	name = server_store_name();
	*cause = xasprintf("another orch-supervisor service holds the lock on"
	                   " the database %s (another host, or another"
	                   " ORCH_STATE_DIR); stop it first, or run this"
	                   " command where it runs",
	    name);
	free(name);
	return 1;
}

static void
server_backup(struct store *st)
{
	char ts[32], *dest;
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(ts, sizeof ts, "%Y%m%d-%H%M%S", &tm);
	dest = xasprintf("%s/backups/tasks-%s.%s", cfg.state_dir, ts,
	    strcmp(store_backend(st), "sqlite") == 0 ? "db" : "dump");
	{
		char *dir = xasprintf("%s/backups", cfg.state_dir);
		mkdir(dir, 0700);
		free(dir);
	}
	if (store_backup(st, dest) == -1)
		log_warnx("DB_BACKUP_ON_START: backup to %s failed: %s", dest,
		    store_error(st));
	else
		log_info(
		    "DB_BACKUP_ON_START: backed up the database to %s", dest);
	free(dest);
}

/*
 * Every stage's sandbox profile must load before anything runs: a bad one
 * stops the start with the file and line, instead of failing each stage.
 */
static int
server_check_profiles(void)
{
	char *dir = config_profiles_dir(), *cause;
	int rc = 0;

	for (size_t i = 0; i < (size_t)STAGE_MAX && rc == 0; i++) {
		if (doctor_profile(dir, stage_name((enum stage)i), &cause) ==
		    -1) {
			fprintf(stderr,
			    "orch-supervisor: sandbox profile: %s\n", cause);
			free(cause);
			rc = -1;
		}
	}
	free(dir);
	return rc;
}

/* The API's way to the scheduler and the workers (control.h). */
static void
server_task_added(void)
{
	sched_kick();
}

static const struct control_cbs server_control_cbs = {
    server_task_added,
    sched_task_changed,
    proc_count,
};

/*
 * Each worker holds two of the service's descriptors (its socket and its
 * stderr pipe) and the control socket keeps room for more (control.c), so
 * a thousand workers need more than the soft limit most systems start a
 * process with (1024).  The hard limit is the administrator's word; the
 * soft one is ours to raise up to it.
 */
static void
server_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		log_warn("cannot raise RLIMIT_NOFILE to %llu",
		    (unsigned long long)rl.rlim_max);
}

/*
 * The incarnation this state directory's service last joined as, kept in
 * $ORCH_STATE_DIR/node ("NAME INCARNATION"): holding the state directory's
 * lock, we know that one is dead, even when it was killed a moment ago and
 * its heartbeat still looks fresh.  NULL when none (or another name).
 */
static char *
server_node_previous(const char *name)
{
	char *path = xasprintf("%s/node", cfg.state_dir), line[256], *sp;
	char *prev = NULL;
	FILE *f = fopen(path, "r");

	if (f != NULL && fgets(line, sizeof line, f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if ((sp = strchr(line, ' ')) != NULL) {
			*sp++ = '\0';
			if (strcmp(line, name) == 0 && *sp != '\0')
				prev = xstrdup(sp);
		}
	}
	if (f != NULL)
		fclose(f);
	free(path);
	return prev;
}

static void
server_node_remember(const char *name, const char *incarnation)
{
	char *path = xasprintf("%s/node", cfg.state_dir);
	char *tmp = xasprintf("%s.tmp", path);
	FILE *f = fopen(tmp, "w");

	if (f == NULL || fprintf(f, "%s %s\n", name, incarnation) < 0 ||
	    fclose(f) == EOF || rename(tmp, path) == -1) {
		log_warn("%s", path);
		unlink(tmp);
	}
	free(tmp);
	free(path);
}

int
server_run(int64_t only_task, int stop_at_gate, void (*tick)(void *), void *arg)
{
	struct store *st;
	struct sched_opts opts = {only_task, stop_at_gate, 0};
	struct event *sigs[4], *check;
	struct event_config *evcfg;
	const int signums[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP};
	struct timeval tv = {0, 100 * 1000};
	char *cause, *node = NULL;
	int rc;

	if (server_check_profiles() == -1)
		return 1;
	switch (server_lock(&cause)) {
	case -1:
		fprintf(stderr, "orch-supervisor: %s\n", cause);
		free(cause);
		return 1;
	case 1:
		fprintf(stderr,
		    "orch-supervisor: another orch-supervisor service is "
		    "running on %s (stop it first, or use another "
		    "ORCH_STATE_DIR)\n",
		    cfg.state_dir);
		return 1;
	}
	if (server_store_open(&st, STORE_RW, &cause) == -1) {
		fprintf(stderr, "orch-supervisor: %s\n", cause);
		free(cause);
		return 1;
	}
	if (strcmp(store_backend(st), "postgresql") == 0) {
		/*
		 * One of many nodes on the database: it runs what it leases,
		 * not the whole queue.  A foreground run is a node of its own
		 * for its one task, named after the service's node.
		 */
		char *name = only_task == 0 ? xstrdup(cfg.node_name)
		                            : xasprintf("%.40s.run%d",
		                                  cfg.node_name, (int)getpid());

		char *prev = only_task == 0 ? server_node_previous(name) : NULL;

		opts.nodes = 1;
		rc = store_node_join(
		    st, name, cfg.max_workers, cfg.lease_s, prev, &cause);
		if (rc == 0 && only_task == 0)
			server_node_remember(name, store_node_incarnation(st));
		free(prev);
		node = name;
		if (rc != 0) {
			fprintf(stderr, "orch-supervisor: %s\n", cause);
			free(cause);
			free(node);
			store_close(st);
			return 1;
		}
	} else if (server_store_lock(st, &cause) != 0) {
		fprintf(stderr, "orch-supervisor: %s\n", cause);
		free(cause);
		store_close(st);
		return 1;
	}
	if (only_task == 0 && cfg.backup_on_start)
		server_backup(st);

	signal(SIGPIPE, SIG_IGN);
	server_nofile();
	/* Timers on the precise clock: the coarse one libevent takes by
	 * default lags a tick or more (more after the CPU idled), and the
	 * group commit's few milliseconds (sched.c) would be none. */
	if ((evcfg = event_config_new()) == NULL ||
	    event_config_set_flag(evcfg, EVENT_BASE_FLAG_PRECISE_TIMER) == -1 ||
	    (server_base = event_base_new_with_config(evcfg)) == NULL)
		fatalx("event_base_new failed");
	event_config_free(evcfg);
	server_tick_fn = tick;
	server_tick_arg = arg;
	for (size_t i = 0; i < nitems(signums); i++) {
		sigs[i] = evsignal_new(
		    server_base, signums[i], server_signal_cb, NULL);
		evsignal_add(sigs[i], NULL);
	}
	proc_init(server_base);
	/*
	 * A submit of a task of an origin fetches it in the loop: bounded
	 * tighter than a worker's fetch.  The CLI fetched it first (its own
	 * process, no limit but git's), so this one is usually short.
	 */
	origin_configure(NULL, NULL, SERVER_ORIGIN_TIMEOUT_S);
	server_st = st;
	audit_init(server_base, st);
	if (store_event_max(st, &server_pump_last) == -1)
		server_pump_last = 0;
	server_pump_ev = event_new(server_base, -1, 0, server_pump, NULL);
	store_set_event_hook(st, server_event_hook, NULL);
	store_set_commit_hook(st, metrics_observe_commit, NULL);
	notify_init(server_base, node);
	free(node);
	if (control_init(server_base, st, &server_control_cbs, &cause) == -1) {
		fprintf(stderr, "orch-supervisor: control socket: %s\n", cause);
		free(cause);
		store_set_event_hook(st, NULL, NULL);
		event_free(server_pump_ev);
		server_pump_ev = NULL;
		notify_free();
		audit_close();
		event_base_free(server_base);
		store_close(st);
		return 1;
	}
	/* Before the scheduler resumes workers that may call the model. */
	if (modelproc_start(server_base, &cause) == -1) {
		log_warnx("%s: the model calls fail", cause);
		free(cause);
	}
	sched_init(server_base, st, &opts);
	check = event_new(server_base, -1, EV_PERSIST, server_check_cb, NULL);
	event_add(check, &tv);
	if (only_task == 0) {
		char *name = server_store_name();

		if (opts.nodes)
			log_info("serving %s as node %s with up to %u workers"
			         " (state %s, leases of %u s)",
			    name, cfg.node_name, cfg.max_workers, cfg.state_dir,
			    cfg.lease_s);
		else
			log_info("serving %s with up to %u workers (state %s)",
			    name, cfg.max_workers, cfg.state_dir);
		free(name);
		/* sched_init has resumed what was interrupted: ready. */
		sdnotify_init(server_base);
		sdnotify_send("READY=1");
		sdnotify_status(st, proc_count());
	}

	rc = event_base_dispatch(server_base);
	if (only_task == 0)
		sdnotify_send("STOPPING=1");
	if (server_tick_fn != NULL)
		server_tick_fn(server_tick_arg);

	/* Whatever still runs (a foreground run that ended) stops now. */
	proc_free_all();
	modelproc_stop();
	/* The last events (the workers' ends) still reach the streams. */
	server_pump(-1, 0, NULL);
	audit_close();
	control_free();
	store_set_event_hook(st, NULL, NULL);
	store_set_commit_hook(st, NULL, NULL);
	event_free(server_pump_ev);
	server_pump_ev = NULL;
	notify_free();
	sdnotify_free();
	sched_free();
	proc_fini();
	/* Drained: the leases go at once, not at their expiry. */
	if (opts.nodes && store_node_leave(st) == -1)
		log_warnx("cannot release this node's leases (they expire in"
		          " %u s): %s",
		    cfg.lease_s, store_error(st));
	event_free(check);
	for (size_t i = 0; i < nitems(signums); i++)
		event_free(sigs[i]);
	event_base_free(server_base);
	server_base = NULL;
	store_close(st);
	server_st = NULL;
	if (only_task == 0)
		log_info("stopped");
	return rc == -1 ? 1 : 0;
}
