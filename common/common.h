/*
 * Code both programs share: logging in logfmt, allocation that cannot
 * fail, a few string helpers, and UTF-8 (checked, repaired, cut, escaped).
 */
#ifndef COMMON_H
#define COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/* log.c */
void log_init(const char *prog, enum log_level level);
int log_level_parse(const char *s, enum log_level *level);
const char *log_level_name(enum log_level);
/* Set the task and stage that log lines of this process are about. */
void log_context(uint64_t task, const char *stage);
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_task(enum log_level, uint64_t task, const char *stage, const char *fmt,
    ...) __attribute__((format(printf, 4, 5)));
void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* util.c */
void *xmalloc(size_t);
void *xcalloc(size_t, size_t);
void *xrealloc(void *, size_t);
char *xstrdup(const char *);
char *xstrndup(const char *, size_t);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
int parse_bool(const char *s, int *out);
/*
 * In a child between fork and exec: every signal to its default action and
 * none blocked, so the program starts as from a shell (async-signal-safe).
 * 0, or -1 when the mask could not be set.
 */
/*
 * bytes (at most 64) from the kernel's CSPRNG, as 2 * bytes hex digits and
 * a NUL in out: tokens, session ids, commit tokens.  -1 with errno.
 */
int random_hex(char *out, size_t bytes);
int child_signals_default(void);
/* Monotonic milliseconds. */
uint64_t now_ms(void);
/* Write all of buf, retrying on EINTR and short writes: 0 or -1. */
int write_all(int fd, const void *buf, size_t len);
/* Read exactly len bytes: 1, 0 at EOF before any byte, -1 on error/short. */
int read_full(int fd, void *buf, size_t len);

/* provider.c: the model providers' HTTP APIs, as data. */
struct provider {
	const char *name;         /* ORCH_LLM_PROVIDER */
	const char *base;         /* ORCH_LLM_BASE_URL's default */
	const char *model;        /* ORCH_LLM_MODEL's default */
	int add_v1;               /* "/v1" first, unless the base ends so */
	const char *key_header;   /* "Name: prefix", the key follows */
	const char *fixed_header; /* sent always, or NULL */
};
/* The provider called name, or NULL (the scripted one has no API). */
const struct provider *provider_find(const char *name);
/* base (the provider's own when NULL or empty) without trailing slashes,
 * "/v1" when the provider adds it, then path: malloc'd. */
char *provider_url(const struct provider *, const char *base, const char *path);

/* utf8.c */
/*
 * Length of the valid UTF-8 sequence at s, which has n bytes left: 1 to 4,
 * 0 when invalid (overlong, surrogate, past U+10FFFF, stray byte), -1 when
 * valid so far but cut short by the end.
 */
int utf8_seq(const char *s, size_t n);
int utf8_valid(const char *s, size_t n);
/*
 * Copy n bytes of s into a new string of at most max bytes that is valid
 * UTF-8 without NULs: each invalid byte and each NUL becomes U+FFFD.  more
 * says the input goes on after n, so a character cut by the end is left
 * for later.  *used (may be NULL): input bytes taken; *replaced (may be
 * NULL): bytes replaced, so a caller can say so.
 */
char *utf8_clean(const char *s, size_t n, size_t max, int more, size_t *used,
    size_t *replaced);
/* A NUL-terminated string made valid UTF-8 (utf8_clean without a bound). */
char *utf8_fix(const char *s, size_t *replaced);
/* The length of a head of s of at most max bytes that cuts no character. */
size_t utf8_head(const char *s, size_t n, size_t max);
/* Where a tail of s of at most max bytes that cuts no character starts. */
size_t utf8_tail(const char *s, size_t n, size_t max);
#define UTF8_SHOW_NL  0x1 /* newlines stay newlines */
#define UTF8_SHOW_TAB 0x2 /* tabs stay tabs */
/*
 * Text fit to be shown to a person on a terminal: every control (C0 but
 * newline and tab as flags allow, DEL, C1) and every invalid byte is shown
 * as \xNN, C1 and bidi controls as \uNNNN.  A new string.
 */
char *utf8_show(const char *s, size_t n, int flags);
/* utf8_show of a NUL-terminated string, newlines and tabs kept. */
char *utf8_show_str(const char *s);

/*
 * buf.c: a growable string (buf_init), or with buf_init_capture a capture
 * of a stream that keeps its first head and last tail bytes and counts the
 * rest.  buf is NUL-terminated at all times and malloc'd from buf_init on;
 * in capture mode buf_str must be called before buf and len are read.  A
 * zeroed struct buf is an empty one too, its buf NULL until the first add.
 */
struct buf {
	char *buf;
	size_t len;
	size_t size;
	size_t total; /* bytes added, kept or not */
	int capture;
	size_t head; /* capture: bytes kept from the start */
	size_t tail; /* capture: bytes kept from the end */
};
void buf_init(struct buf *);
void buf_init_capture(struct buf *, size_t head, size_t tail);
void buf_add(struct buf *, const void *data, size_t n);
/* buf_add unless it would hold more than max bytes: then -1, nothing added. */
int buf_add_max(struct buf *, const void *data, size_t n, size_t max);
void buf_adds(struct buf *, const char *);
void buf_addf(struct buf *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Drop the first n bytes (not for a capture). */
void buf_consume(struct buf *, size_t n);
/* Finish a capture: buf then holds the head and the tail; returns buf. */
char *buf_str(struct buf *);
/* Bytes a capture left out (total minus what it keeps). */
size_t buf_dropped(const struct buf *);
void buf_free(struct buf *);

/* git.c: the one way both programs run git. */
#define GIT_MAX_ARGS 16 /* arguments after `git --no-pager -C DIR` */

struct git_opts {
	const char *dir;      /* git -C dir; NULL: the current directory */
	const char *gitdir;   /* GIT_DIR, pinned: never found from dir/.git */
	const char *worktree; /* GIT_WORK_TREE, with gitdir */
	const char *in;       /* standard input (NULL: /dev/null) */
	size_t inlen;
	size_t outmax;       /* bytes of stdout kept (0: 4096) */
	unsigned timeout_ms; /* killed after this long (0: no limit) */
	/* Called at least every 200 ms while git runs (a heartbeat). */
	void (*tick)(void *);
	void *arg;
	/* More key, value settings, NULL-terminated (filters turned off). */
	const char *const *config;
	/*
	 * A fetch or push of an origin (origin.c): the node's own ssh agent,
	 * ssh command and global configuration (credential helpers, proxy)
	 * pass; see docs/security.md.  Never set for anything else.
	 */
	int network;
};

struct git_status {
	int exit;      /* git's exit status, -1 when it did not exit */
	int transient; /* trying again later may work */
	int timed_out;
};

/*
 * Run `git --no-pager [-C dir] ARGS...` in the environment git_env builds
 * and capture its stdout in *out (out->total: how many bytes there were).
 * Returns 0 when git exits 0; otherwise -1 with *cause "git SUB failed
 * (exit N): <the end of stderr>" and *gs saying whether it may pass.
 * out->buf is malloc'd either way.
 */
int git_run(const struct git_opts *, const char *const *args, struct buf *out,
    struct git_status *gs, char **cause);
/* git_run keeping only the first line of stdout (a hash, a path). */
int git_line(const struct git_opts *, const char *const *args, char **line,
    struct git_status *gs, char **cause);
/* The variables of the node's environment a fetch or push takes. */
#define GIT_NETWORK_ENV_MAX 4
extern const char *const git_network_env[GIT_NETWORK_ENV_MAX + 1];
/* The environment git_run gives git (NULL-terminated, for git_env_free). */
char **git_env(const struct git_opts *);
void git_env_free(char **);

/*
 * origin.c: a task's repository given as a git URL (file://, https://,
 * ssh://, optionally #BRANCH) and the node's local mirror of it.
 */
#define ORIGIN_MAX_URL 2048
/* Whether repo (as stored in a task) names an origin, not a work tree. */
int origin_is_url(const char *repo);
/* Check repo as an origin; *url without, *branch the #BRANCH (or NULL). */
int origin_parse(const char *repo, char **url, char **branch, char **cause);
/* Heartbeat and time limit of the network calls (0: ORIGIN_TIMEOUT_S). */
void origin_configure(void (*tick)(void *), void *arg, unsigned timeout_s);
/*
 * The fence of this process's pushes: the lease epoch its task runs under
 * on a shared database (0: none, a single service).  Commits made under it
 * carry the trailer "Orch-Epoch: N" (the workspace writes it), and a push
 * never goes over an origin's ref whose commit names a higher epoch: a
 * node that lost the task to another cannot move the other's refs back.
 */
#define ORIGIN_EPOCH_TRAILER "Orch-Epoch"
void origin_set_epoch(uint64_t epoch);
/* The mirror of url under state_dir/repos ("NAME-HASH.git"). */
char *origin_mirror(const char *state_dir, const char *url, char **cause);
/*
 * Make the mirror if it is missing and fetch the origin's HEAD and
 * branches into it (refs/origin/...), holding the mirror's lock.  With
 * branch, *commit is that branch's commit, else HEAD's.
 */
int origin_sync(const char *mirror, const char *url, const char *branch,
    char **commit, int *permanent, char **cause);
/*
 * Fetch ref from the origin; the mirror's own ref is set to it when it is
 * missing or behind.  *commit: the origin's value, NULL when it has none.
 */
int origin_fetch_ref(const char *mirror, const char *url, const char *ref,
    char **commit, int *permanent, char **cause);
/*
 * Push the mirror's ref to the same name on the origin, unless the
 * origin's is not ours (made by another state directory: permanent).
 * *pushed: 0 when the origin had it already.
 */
int origin_push(const char *mirror, const char *url, const char *ref,
    const char *state_id, int *pushed, int *permanent, char **cause);
/* The same, the mirror's ref from pushed to ref on the origin. */
int origin_push_as(const char *mirror, const char *url, const char *from,
    const char *ref, const char *state_id, int *pushed, int *permanent,
    char **cause);
/*
 * Set the mirror's ref to to the origin's ref (fetched; forced: the
 * origin's counts).  *took: 0 when the origin has no ref.
 */
int origin_take(const char *mirror, const char *url, const char *ref,
    const char *to, int *took, int *permanent, char **cause);

#endif
