/*
 * The tools offered to the model, and their dispatcher.
 *
 * Everything here is driven by the model's output, so it is untrusted: a
 * call is checked completely (name, stage, size, JSON, every argument)
 * before anything runs, and every problem becomes a TOOL_ERROR result the
 * model can read and act on.  Paths are confined to the workspace by the
 * kernel: each one is opened with openat2() below ctx->rootfd with
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, so neither
 * "..", an absolute path nor a symlink (planted by the model or by a
 * command it ran) can lead outside.  The string checks on paths only give
 * earlier, clearer errors; they are not what keeps the model inside.
 */
#include <sys/stat.h>
#include <sys/syscall.h>

#include <linux/openat2.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common.h"
#include "proto.h"
#include "worker.h"

/* The stages a tool is offered in, as a mask of enum stage bits. */
#define STAGE_BIT(s)  (1u << (s))
#define STAGE_BIT_ALL (STAGE_BIT(STAGE_MAX) - 1)

#define SHOW_MAX       200         /* bytes of a name or path echoed back */
#define BINARY_CHECK   8192        /* bytes looked at for NULs */
#define NOTE_ROOM      128         /* bytes kept free for a note */
#define LIST_DEPTH_MAX 64          /* directory levels list_files descends */
#define LIST_WALK_MAX  200000      /* entries list_files counts at most */
#define TIMEOUT_MAX    86400       /* seconds run_command may ask for */
#define DIFF_CHUNK     (64 * 1024) /* bytes of the diff read_diff returns */

struct tool_param {
	const char *name;
	json_type type; /* JSON_STRING or JSON_INTEGER */
	int required;
	const char *description;
};

struct tool {
	const char *name;
	unsigned stages;
	const char *description;
	const struct tool_param params[3];
	void (*run)(const struct tool_ctx *, json_t *, struct tool_result *);
};

static void tool_list_files(
    const struct tool_ctx *, json_t *, struct tool_result *);
static void tool_read_file(
    const struct tool_ctx *, json_t *, struct tool_result *);
static void tool_write_file(
    const struct tool_ctx *, json_t *, struct tool_result *);
static void tool_edit_file(
    const struct tool_ctx *, json_t *, struct tool_result *);
static void tool_run_command(
    const struct tool_ctx *, json_t *, struct tool_result *);
static void tool_submit_plan(
    const struct tool_ctx *, json_t *, struct tool_result *);
static void tool_submit_review(
    const struct tool_ctx *, json_t *, struct tool_result *);
static void tool_finish(
    const struct tool_ctx *, json_t *, struct tool_result *);
static void tool_read_diff(
    const struct tool_ctx *, json_t *, struct tool_result *);

/* The contract's tool table (README, "Model providers"; docs/architecture.md).
 */
static const struct tool tools[] = {
    {"list_files", STAGE_BIT_ALL,
        "List the files under a directory of the workspace, recursively "
        "and sorted; directories end with \"/\".  The .git directory is "
        "not shown.",
        {{"path", JSON_STRING, 1,
            "Directory relative to the workspace root; \"\" or \".\" for "
            "the root."}},
        tool_list_files},
    {"read_file", STAGE_BIT_ALL,
        "Read a text file of the workspace.  Large files are cut, with a "
        "note saying so.",
        {{"path", JSON_STRING, 1, "File path relative to the workspace root."}},
        tool_read_file},
    {"write_file", STAGE_BIT(STAGE_IMPLEMENTING),
        "Create a file or replace its whole content.  Missing parent "
        "directories are created.",
        {{"path", JSON_STRING, 1, "File path relative to the workspace root."},
            {"content", JSON_STRING, 1,
                "The complete new content of the file."}},
        tool_write_file},
    {"edit_file", STAGE_BIT(STAGE_IMPLEMENTING),
        "Replace one piece of text in a file.  old must match the file "
        "exactly, whitespace included, and occur exactly once: include "
        "enough surrounding lines to make it unique.",
        {{"path", JSON_STRING, 1, "File path relative to the workspace root."},
            {"old", JSON_STRING, 1, "The exact text to replace."},
            {"new", JSON_STRING, 1, "The text to put in its place."}},
        tool_edit_file},
    {"run_command", STAGE_BIT(STAGE_IMPLEMENTING) | STAGE_BIT(STAGE_VERIFYING),
        "Run a shell command in the workspace root, in a sandbox without "
        "network access.  Returns the exit status and the output.",
        {{"command", JSON_STRING, 1, "The shell command line to run."},
            {"timeout_s", JSON_INTEGER, 0,
                "Wall-clock limit in seconds (1 to 86400); optional."}},
        tool_run_command},
    {"submit_plan", STAGE_BIT(STAGE_PLANNING),
        "Submit the implementation plan for approval.  This ends the "
        "planning stage.",
        {{"plan", JSON_STRING, 1,
            "The plan: the changes to make, file by file, and how to "
            "check them."}},
        tool_submit_plan},
    {"submit_review", STAGE_BIT(STAGE_REVIEWING),
        "Submit the review of the implementation.  This ends the "
        "reviewing stage.",
        {{"verdict", JSON_STRING, 1, "\"approve\" or \"request_changes\"."},
            {"comments", JSON_STRING, 1,
                "What is wrong and what to change, or notes on the "
                "approval."}},
        tool_submit_review},
    {"finish", STAGE_BIT(STAGE_IMPLEMENTING),
        "Say the implementation is complete.  This ends the implementing "
        "stage.",
        {{"summary", JSON_STRING, 1,
            "A summary of the changes made and how they were checked."}},
        tool_finish},
    /*
     * Not in the contract's first table but an addition to it: the
     * reviewer's request holds only the first 64 KiB of the diff, and a
     * change must not hide past that cut.
     */
    {"read_diff", STAGE_BIT(STAGE_REVIEWING),
        "Read the diff under review from a byte offset, 64 KiB at a "
        "time, cut at a line; the note at the end gives the offset to "
        "read next.",
        {{"offset", JSON_INTEGER, 0,
            "Byte offset into the diff to start at; 0 if left out."}},
        tool_read_diff},
};

/* The bits of the tools' stage masks that stage (a name) has; 0: none. */
static unsigned
stage_mask(const char *stage)
{
	enum stage id;

	if (stage_parse(stage, &id) == -1)
		return 0;
	return STAGE_BIT(id);
}

/* Make a result valid UTF-8 and no longer than TOOL_MAX_RESULT. */
static char *
result_finish(char *text)
{
	size_t len = strlen(text), used, bad;
	char *clean, *out;

	if (len <= TOOL_MAX_RESULT && utf8_valid(text, len))
		return text;
	clean =
	    utf8_clean(text, len, TOOL_MAX_RESULT - NOTE_ROOM, 1, &used, &bad);
	if (used == len && bad == 0 && strlen(clean) <= TOOL_MAX_RESULT) {
		free(text);
		return clean;
	}
	out = xasprintf("%s%s", clean,
	    bad > 0 ? "\n[bytes that are not UTF-8 are shown as U+FFFD]" : "");
	if (used < len) {
		char *cut = xasprintf("%s\n[... %zu bytes of the result left "
		                      "out ...]",
		    out, len - used);

		free(out);
		out = cut;
	}
	free(clean);
	free(text);
	return out;
}

/*
 * A name or path the model gave, fit to be quoted in one line: at most
 * SHOW_MAX bytes, control characters shown as '?'.
 */
static char *
show(const char *s)
{
	size_t n = strlen(s);
	char *out;

	out = xasprintf("%.*s%s", (int)utf8_head(s, n, SHOW_MAX), s,
	    n > SHOW_MAX ? "..." : "");
	for (char *p = out; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
	return out;
}

static void __attribute__((format(printf, 2, 3)))
result_error(struct tool_result *r, const char *fmt, ...)
{
	va_list ap;

	free(r->text);
	va_start(ap, fmt);
	if (vasprintf(&r->text, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	for (char *p = r->text; *p != '\0'; p++) {
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
	}
	r->outcome = TOOL_ERROR;
}

static void
result_done(struct tool_result *r, char *text)
{
	free(r->text);
	r->text = text;
	r->outcome = TOOL_DONE;
}

/* openat2() below dirfd, refusing "..", absolute paths and symlinks. */
static int
open_beneath(int dirfd, const char *path, int flags, mode_t mode)
{
	struct open_how how;
	int fd = -1;

	memset(&how, 0, sizeof how);
	how.flags = (uint64_t)(flags | O_CLOEXEC);
	if ((flags & O_CREAT) != 0)
		how.mode = mode;
	how.resolve =
	    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
	/* EAGAIN: a rename raced with ".." resolution; try again. */
	for (int i = 0; i < 16; i++) {
		fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
		if (fd != -1 || errno != EAGAIN)
			break;
	}
	return fd;
}

static void
path_error(struct tool_result *r, const char *tool, const char *path, int err)
{
	char *p = show(path);

	switch (err) {
	case EXDEV:
	case ELOOP:
		result_error(r,
		    "%s: path %s is outside the workspace or goes through a "
		    "symlink: refused",
		    tool, p);
		break;
	case ENOENT:
		result_error(r, "%s: %s does not exist", tool, p);
		break;
	case ENOTDIR:
		result_error(
		    r, "%s: a component of %s is not a directory", tool, p);
		break;
	case EISDIR:
		result_error(r, "%s: %s is a directory", tool, p);
		break;
	case ENOSYS:
		result_error(r,
		    "%s: openat2 is not available, so files cannot be "
		    "opened safely",
		    tool);
		break;
	default:
		result_error(r, "%s: %s: %s", tool, p, strerror(err));
		break;
	}
	free(p);
}

/*
 * Check a path and return it normalized ("a/./b/../c" is "a/c", the root
 * is ""), or NULL after setting the error.  Going above the root and
 * absolute paths are refused here already; the kernel checks again when
 * the path is opened, and alone decides about symlinks.
 */
static char *
tool_path_check(
    const char *tool, json_t *arg, int root_ok, struct tool_result *r)
{
	const char *path = json_string_value(arg);
	size_t len = json_string_length(arg), n = 0;
	char *copy, *save, *comp, **comps, *out, *p;

	if (strlen(path) != len) {
		result_error(
		    r, "%s: argument \"path\" contains a NUL byte", tool);
		return NULL;
	}
	if (path[0] == '/') {
		path_error(r, tool, path, EXDEV);
		return NULL;
	}
	copy = xstrdup(path);
	comps = xcalloc(len / 2 + 2, sizeof *comps);
	for (comp = strtok_r(copy, "/", &save); comp != NULL;
	     comp = strtok_r(NULL, "/", &save)) {
		if (strcmp(comp, ".") == 0)
			continue;
		if (strcmp(comp, "..") == 0) {
			if (n == 0) {
				path_error(r, tool, path, EXDEV);
				goto fail;
			}
			n--;
			continue;
		}
		/*
		 * The repository's internals (config, hooks, objects) are
		 * not the model's: writing .git/config or a hook would run
		 * code outside the sandbox at the next git command.  Any
		 * component counts, so nested repositories are covered, and
		 * case is ignored for case-insensitive file systems.
		 */
		if (strcasecmp(comp, ".git") == 0) {
			p = show(path);
			result_error(r,
			    "%s: path %s is inside .git; the repository's "
			    "internals are not available to the tools",
			    tool, p);
			free(p);
			goto fail;
		}
		comps[n++] = comp;
	}
	if (n == 0 && !root_ok) {
		p = show(path);
		result_error(
		    r, "%s: path \"%s\" does not name a file", tool, p);
		free(p);
		goto fail;
	}
	out = xmalloc(len + 1);
	p = out;
	for (size_t i = 0; i < n; i++) {
		size_t cl = strlen(comps[i]);

		if (i > 0)
			*p++ = '/';
		memcpy(p, comps[i], cl);
		p += cl;
	}
	*p = '\0';
	free(comps);
	free(copy);
	return out;
fail:
	free(comps);
	free(copy);
	return NULL;
}

/*
 * Read up to max bytes of fd.  Returns the number read, or -1; *more says
 * whether the file goes on after them.
 */
static ssize_t
read_upto(int fd, char *buf, size_t max, int *more)
{
	size_t got = 0;
	char extra;

	*more = 0;
	while (got < max) {
		ssize_t n = read(fd, buf + got, max - got);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		if (n == 0)
			return (ssize_t)got;
		got += (size_t)n;
	}
	for (;;) {
		ssize_t n = read(fd, &extra, 1);

		if (n == -1 && errno == EINTR)
			continue;
		*more = n > 0;
		return (ssize_t)got;
	}
}

/* Open a regular file of the workspace for reading, or set the error. */
static int
open_regular(const char *tool, const char *path, const char *norm, int rootfd,
    struct stat *st, struct tool_result *r)
{
	int fd;
	char *p;

	/* O_NONBLOCK: a FIFO must not hang the worker before fstat. */
	fd = open_beneath(rootfd, norm, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0);
	if (fd == -1) {
		path_error(r, tool, path, errno);
		return -1;
	}
	if (fstat(fd, st) == -1) {
		path_error(r, tool, path, errno);
		close(fd);
		return -1;
	}
	if (!S_ISREG(st->st_mode)) {
		p = show(path);
		if (S_ISDIR(st->st_mode))
			result_error(r, "%s: %s is a directory%s", tool, p,
			    strcmp(tool, "read_file") == 0 ? "; use list_files"
			                                   : "");
		else
			result_error(
			    r, "%s: %s is not a regular file", tool, p);
		free(p);
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Open the directory holding a file of the workspace (O_PATH), creating
 * the missing ones.  Each component is opened on its own with openat2()
 * below the one before, so none can be a symlink, and mkdirat() only ever
 * creates a name inside a directory already opened that way.
 */
static int
open_parent(const char *tool, const char *path, int rootfd, char *dirs,
    struct tool_result *r)
{
	char *save, *comp;
	int cur = -1, fd;

	cur = open_beneath(rootfd, ".", O_PATH | O_DIRECTORY, 0);
	if (cur == -1) {
		path_error(r, tool, path, errno);
		return -1;
	}
	for (comp = strtok_r(dirs, "/", &save); comp != NULL;
	     comp = strtok_r(NULL, "/", &save)) {
		fd = open_beneath(cur, comp, O_PATH | O_DIRECTORY, 0);
		if (fd == -1 && errno == ENOENT) {
			if (mkdirat(cur, comp, 0755) == -1 && errno != EEXIST) {
				path_error(r, tool, path, errno);
				close(cur);
				return -1;
			}
			fd = open_beneath(cur, comp, O_PATH | O_DIRECTORY, 0);
		}
		if (fd == -1) {
			path_error(r, tool, path, errno);
			close(cur);
			return -1;
		}
		close(cur);
		cur = fd;
	}
	return cur;
}

/*
 * Replace the file at norm with data: written to a temporary file in the
 * same directory, then renamed over the old one, so a reader never sees
 * half a file and a symlink put in its place is replaced, not followed.
 * A new file gets mode 0644; an existing one keeps its permissions (a
 * script stays executable).
 */
static int
write_beneath(const char *tool, const char *path, const char *norm, int rootfd,
    const char *data, size_t len, struct tool_result *r)
{
	static unsigned counter;
	const char *base = norm;
	char *dirs, *slash, *tmp = NULL, *p;
	mode_t mode = 0644;
	struct stat st;
	int dirfd, fd, rc = -1;

	dirs = xstrdup(norm);
	slash = strrchr(dirs, '/');
	if (slash != NULL) {
		*slash = '\0';
		base = slash + 1;
	} else
		dirs[0] = '\0';
	dirfd = open_parent(tool, path, rootfd, dirs, r);
	if (dirfd == -1)
		goto out;

	fd = open_beneath(dirfd, base, O_PATH, 0);
	if (fd != -1) {
		if (fstat(fd, &st) == -1) {
			path_error(r, tool, path, errno);
			close(fd);
			goto out;
		}
		close(fd);
		if (!S_ISREG(st.st_mode)) {
			path_error(r, tool, path,
			    S_ISDIR(st.st_mode) ? EISDIR : EINVAL);
			goto out;
		}
		mode = st.st_mode & 0777;
	} else if (errno != ENOENT) {
		path_error(r, tool, path, errno);
		goto out;
	}

	for (int tries = 0;; tries++) {
		free(tmp);
		tmp =
		    xasprintf(".orch-write.%ld.%u", (long)getpid(), counter++);
		fd =
		    open_beneath(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (fd != -1 || errno != EEXIST || tries == 100)
			break;
	}
	if (fd == -1) {
		int saved = errno;

		p = show(path);
		result_error(r, "%s: cannot create a file next to %s: %s", tool,
		    p, strerror(saved));
		free(p);
		goto out;
	}
	if (write_all(fd, data, len) == -1 || fchmod(fd, mode) == -1 ||
	    close(fd) == -1) {
		int saved = errno;

		close(fd);
		unlinkat(dirfd, tmp, 0);
		p = show(path);
		result_error(r, "%s: writing %s: %s", tool, p, strerror(saved));
		free(p);
		goto out;
	}
	if (renameat(dirfd, tmp, dirfd, base) == -1) {
		int saved = errno;

		unlinkat(dirfd, tmp, 0);
		path_error(r, tool, path, saved);
		goto out;
	}
	rc = 0;
out:
	if (dirfd != -1)
		close(dirfd);
	free(tmp);
	free(dirs);
	return rc;
}

/* Lines of text (a last line without a newline counts). */
static size_t
count_lines(const char *s, size_t n)
{
	size_t lines = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n')
			lines++;
	}
	return lines + (n > 0 && s[n - 1] != '\n');
}

/* The lines of the regular file at norm before it is replaced; -1 when
 * there is none (or it cannot be read: the count is for people only). */
static long
old_lines(int rootfd, const char *norm)
{
	struct stat st;
	char *buf;
	ssize_t n;
	long lines = -1;
	int fd, more;

	fd = open_beneath(rootfd, norm, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0);
	if (fd == -1)
		return -1;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		buf = xmalloc(TOOL_MAX_WRITE + 1);
		n = read_upto(fd, buf, TOOL_MAX_WRITE, &more);
		if (n >= 0 && !more)
			lines = (long)count_lines(buf, (size_t)n);
		free(buf);
	}
	close(fd);
	return lines;
}

/* What a file tool changed, for the log (tool_result.facts). */
static json_t *
file_facts(
    const char *path, size_t bytes, size_t added, size_t removed, int created)
{
	return json_pack("{s:s,s:I,s:I,s:I,s:b}", "path", path, "bytes",
	    (json_int_t)bytes, "lines_added", (json_int_t)added,
	    "lines_removed", (json_int_t)removed, "created", created);
}

static void
tool_write_file(const struct tool_ctx *ctx, json_t *args, struct tool_result *r)
{
	json_t *content = json_object_get(args, "content");
	size_t len = json_string_length(content);
	char *norm, *p;

	if (len > TOOL_MAX_WRITE) {
		result_error(r,
		    "write_file: argument \"content\" is %zu bytes; the limit "
		    "is %d",
		    len, TOOL_MAX_WRITE);
		return;
	}
	norm =
	    tool_path_check("write_file", json_object_get(args, "path"), 0, r);
	if (norm == NULL)
		return;
	p = show(json_string_value(json_object_get(args, "path")));
	long before = old_lines(ctx->rootfd, norm);
	if (write_beneath("write_file", p, norm, ctx->rootfd,
	        json_string_value(content), len, r) == 0) {
		result_done(r, xasprintf("wrote %zu bytes to %s", len, p));
		r->changed = 1;
		r->facts = file_facts(p, len,
		    count_lines(json_string_value(content), len),
		    before > 0 ? (size_t)before : 0, before < 0);
	}
	free(p);
	free(norm);
}

static void
tool_read_file(const struct tool_ctx *ctx, json_t *args, struct tool_result *r)
{
	const char *path = json_string_value(json_object_get(args, "path"));
	struct stat st;
	char *norm, *buf = NULL, *text, *p;
	ssize_t n;
	size_t used, size, bad;
	int fd, more, saved;

	norm =
	    tool_path_check("read_file", json_object_get(args, "path"), 0, r);
	if (norm == NULL)
		return;
	fd = open_regular("read_file", path, norm, ctx->rootfd, &st, r);
	if (fd == -1)
		goto out;
	buf = xmalloc(TOOL_MAX_READ);
	n = read_upto(fd, buf, TOOL_MAX_READ, &more);
	saved = errno;
	close(fd);
	p = show(path);
	if (n == -1) {
		result_error(
		    r, "read_file: reading %s: %s", p, strerror(saved));
		free(p);
		goto out;
	}
	size = (size_t)st.st_size > (size_t)n ? (size_t)st.st_size : (size_t)n;
	if (!more && size > (size_t)n)
		size = (size_t)n; /* it shrank while being read */
	if (memchr(buf, '\0', n < BINARY_CHECK ? (size_t)n : BINARY_CHECK) !=
	    NULL) {
		result_error(r,
		    "read_file: %s is a binary file (%zu bytes); it is not "
		    "shown",
		    p, size);
		free(p);
		goto out;
	}
	if (n == 0) {
		result_done(r, xasprintf("[%s is empty]", p));
		free(p);
		goto out;
	}
	text = utf8_clean(
	    buf, (size_t)n, TOOL_MAX_RESULT - NOTE_ROOM, more, &used, &bad);
	if (bad > 0) {
		char *note = xasprintf("%s\n[%zu bytes of %s are not UTF-8; "
		                       "each is shown as U+FFFD]",
		    text, bad, p);

		free(text);
		text = note;
	}
	if (used < size) {
		char *cut = xasprintf("%s\n[file is %zu bytes; showing the "
		                      "first %zu]",
		    text, size, used);

		free(text);
		text = cut;
	}
	result_done(r, text);
	free(p);
out:
	free(buf);
	free(norm);
}

static void
tool_edit_file(const struct tool_ctx *ctx, json_t *args, struct tool_result *r)
{
	const char *path = json_string_value(json_object_get(args, "path"));
	json_t *jold = json_object_get(args, "old");
	json_t *jnew = json_object_get(args, "new");
	const char *old = json_string_value(jold),
	           *new = json_string_value(jnew);
	size_t oldlen = json_string_length(jold);
	size_t newlen = json_string_length(jnew), count = 0, outlen, at = 0;
	struct stat st;
	char *norm, *buf = NULL, *out, *p = NULL;
	const char *hit = NULL, *s;
	ssize_t n;
	int fd, more;

	if (oldlen == 0) {
		result_error(r, "edit_file: argument \"old\" is empty; give "
		                "the exact text to replace");
		return;
	}
	norm =
	    tool_path_check("edit_file", json_object_get(args, "path"), 0, r);
	if (norm == NULL)
		return;
	fd = open_regular("edit_file", path, norm, ctx->rootfd, &st, r);
	if (fd == -1)
		goto out;
	p = show(path);
	buf = xmalloc(TOOL_MAX_WRITE + 1);
	n = read_upto(fd, buf, TOOL_MAX_WRITE, &more);
	if (n == -1) {
		result_error(
		    r, "edit_file: reading %s: %s", p, strerror(errno));
		close(fd);
		goto out;
	}
	close(fd);
	if (more) {
		result_error(r,
		    "edit_file: %s is bigger than %d bytes, the most edit_file "
		    "and write_file handle",
		    p, TOOL_MAX_WRITE);
		goto out;
	}
	/* Overlapping matches count too: "aa" in "aaa" is ambiguous. */
	for (s = buf; (size_t)(s - buf) + oldlen <= (size_t)n;) {
		const char *m =
		    memmem(s, (size_t)n - (size_t)(s - buf), old, oldlen);

		if (m == NULL)
			break;
		if (count++ == 0)
			hit = m;
		s = m + 1;
	}
	if (count == 0) {
		result_error(r,
		    "edit_file: argument \"old\" does not occur in %s; it must "
		    "match the file exactly, whitespace included (read_file "
		    "shows the current text)",
		    p);
		goto out;
	}
	if (count > 1) {
		result_error(r,
		    "edit_file: argument \"old\" occurs %zu times in %s; it "
		    "must occur exactly once: include more surrounding text",
		    count, p);
		goto out;
	}
	outlen = (size_t)n - oldlen + newlen;
	if (outlen > TOOL_MAX_WRITE) {
		result_error(r,
		    "edit_file: %s would be %zu bytes; the limit is %d", p,
		    outlen, TOOL_MAX_WRITE);
		goto out;
	}
	at = (size_t)(hit - buf);
	out = xmalloc(outlen + 1);
	memcpy(out, buf, at);
	memcpy(out + at, new, newlen);
	memcpy(out + at + newlen, hit + oldlen, (size_t)n - at - oldlen);
	if (write_beneath("edit_file", p, norm, ctx->rootfd, out, outlen, r) ==
	    0) {
		result_done(
		    r, xasprintf("edited %s: replaced %zu bytes with %zu bytes "
		                 "(the file is now %zu bytes)",
		           p, oldlen, newlen, outlen));
		r->changed = 1;
		r->facts = file_facts(p, outlen, count_lines(new, newlen),
		    count_lines(old, oldlen), 0);
	}
	free(out);
out:
	free(p);
	free(buf);
	free(norm);
}

struct listing {
	struct buf text;
	size_t shown;
	size_t left;
	int walk_cut; /* stopped counting at LIST_WALK_MAX */
	int deep;     /* some directory was too deep to descend */
};

struct entry {
	char *name;
	int isdir;
	int islink;
};

static int
entry_cmp(const void *a, const void *b)
{
	return strcmp(
	    ((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

static void
listing_add(struct listing *l, const char *prefix, const struct entry *e)
{
	char *line;
	size_t n;

	if (l->shown >= TOOL_MAX_LIST) {
		l->left++;
		return;
	}
	line = xasprintf("%s%s%s\n", prefix, e->name,
	    e->isdir    ? "/"
	    : e->islink ? " (symlink)"
	                : "");
	for (char *p = line; p[1] != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
	n = strlen(line);
	if (l->text.len + n > TOOL_MAX_RESULT - NOTE_ROOM) {
		l->left++;
		free(line);
		return;
	}
	buf_add(&l->text, line, n);
	l->shown++;
	free(line);
}

/*
 * List the directory fd (owned: closed here) under prefix, depth first in
 * name order.  Subdirectories are opened with openat2() relative to it, so
 * a symlink is listed but never followed.
 */
static void
list_dir(struct listing *l, int fd, const char *prefix, int depth)
{
	struct entry *ents = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;

	d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		int isdir, islink;

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0 ||
		    strcasecmp(de->d_name, ".git") == 0)
			continue;
		if (de->d_type == DT_UNKNOWN) {
			if (fstatat(dirfd(d), de->d_name, &st,
			        AT_SYMLINK_NOFOLLOW) == -1)
				continue;
			isdir = S_ISDIR(st.st_mode);
			islink = S_ISLNK(st.st_mode);
		} else {
			isdir = de->d_type == DT_DIR;
			islink = de->d_type == DT_LNK;
		}
		if (n == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			ents = xrealloc(ents, cap * sizeof *ents);
		}
		ents[n].name = xstrdup(de->d_name);
		ents[n].isdir = isdir;
		ents[n].islink = islink;
		n++;
	}
	if (n > 1)
		qsort(ents, n, sizeof *ents, entry_cmp);

	for (size_t i = 0; i < n; i++) {
		int sub;

		if (l->shown + l->left >= LIST_WALK_MAX) {
			l->walk_cut = 1;
			break;
		}
		listing_add(l, prefix, &ents[i]);
		if (!ents[i].isdir)
			continue;
		if (depth >= LIST_DEPTH_MAX) {
			l->deep = 1;
			continue;
		}
		sub = open_beneath(
		    dirfd(d), ents[i].name, O_RDONLY | O_DIRECTORY, 0);
		if (sub != -1) {
			char *subprefix =
			    xasprintf("%s%s/", prefix, ents[i].name);

			list_dir(l, sub, subprefix, depth + 1);
			free(subprefix);
		}
	}
	for (size_t i = 0; i < n; i++)
		free(ents[i].name);
	free(ents);
	closedir(d);
}

static void
tool_list_files(const struct tool_ctx *ctx, json_t *args, struct tool_result *r)
{
	const char *path = json_string_value(json_object_get(args, "path"));
	struct listing l;
	char *norm, *prefix, *p;
	int fd;

	norm =
	    tool_path_check("list_files", json_object_get(args, "path"), 1, r);
	if (norm == NULL)
		return;
	fd = open_beneath(ctx->rootfd, norm[0] == '\0' ? "." : norm,
	    O_RDONLY | O_DIRECTORY, 0);
	if (fd == -1) {
		if (errno == ENOTDIR) {
			p = show(path);
			result_error(r,
			    "list_files: %s is not a directory; use read_file",
			    p);
			free(p);
		} else
			path_error(r, "list_files", path, errno);
		free(norm);
		return;
	}
	memset(&l, 0, sizeof l);
	buf_init(&l.text);
	prefix = norm[0] == '\0' ? xstrdup("") : xasprintf("%s/", norm);
	list_dir(&l, fd, prefix, 0);
	p = show(path);
	if (l.shown == 0 && l.left == 0)
		result_done(r, xasprintf("[%s is an empty directory]",
		                   norm[0] == '\0' ? "the workspace" : p));
	else {
		char *text = xstrdup(l.text.buf);

		if (l.left > 0 || l.walk_cut) {
			char *more = xasprintf(
			    "%s[... %s%zu more entries left out; list a "
			    "subdirectory to see them ...]",
			    text, l.walk_cut ? "at least " : "", l.left);

			free(text);
			text = more;
		} else if (text[0] != '\0')
			text[strlen(text) - 1] = '\0'; /* the last newline */
		if (l.deep) {
			char *more = xasprintf("%s\n[directories deeper than "
			                       "%d levels are not shown]",
			    text, LIST_DEPTH_MAX);

			free(text);
			text = more;
		}
		result_done(r, text);
	}
	free(p);
	free(prefix);
	buf_free(&l.text);
	free(norm);
}

/* Whether s holds something other than white space. */
static int
not_blank(const char *s)
{
	return s[strspn(s, " \t\r\n")] != '\0';
}

static void
tool_run_command(
    const struct tool_ctx *ctx, json_t *args, struct tool_result *r)
{
	json_t *jcmd = json_object_get(args, "command");
	json_t *jtimeout = json_object_get(args, "timeout_s");
	const char *command = json_string_value(jcmd);
	char *result = NULL;
	unsigned timeout = 0; /* 0: the sandbox's default */

	if (ctx->run_command == NULL) {
		result_error(r, "run_command: run_command is not available "
		                "in this stage");
		return;
	}
	if (strlen(command) != json_string_length(jcmd)) {
		result_error(r, "run_command: argument \"command\" contains "
		                "a NUL byte");
		return;
	}
	if (!not_blank(command)) {
		result_error(r, "run_command: argument \"command\" is empty");
		return;
	}
	if (strlen(command) > TOOL_MAX_COMMAND) {
		result_error(r,
		    "run_command: argument \"command\" is %zu bytes, over "
		    "the limit of %d: write a script with write_file and "
		    "run that",
		    strlen(command), TOOL_MAX_COMMAND);
		return;
	}
	if (jtimeout != NULL && !json_is_null(jtimeout)) {
		double v = json_number_value(jtimeout);

		if (v < 1 || v > TIMEOUT_MAX) {
			result_error(r,
			    "run_command: argument \"timeout_s\" must be from "
			    "1 to %d seconds",
			    TIMEOUT_MAX);
			return;
		}
		timeout = (unsigned)v;
	}

	/* Whatever happened, the command may have changed files. */
	r->changed = 1;
	if (ctx->run_command(ctx->run_arg, command, timeout, &result) != 0) {
		result_error(r, "run_command: the command could not be run%s%s",
		    result != NULL ? ": " : "", result != NULL ? result : "");
		free(result);
		return;
	}
	result_done(r, result != NULL ? result : xstrdup("{}"));
}

static void
terminal(json_t *args, struct tool_result *r, char *text)
{
	result_done(r, text);
	r->outcome = TOOL_TERMINAL;
	r->value = json_incref(args);
}

static void
tool_submit_plan(
    const struct tool_ctx *ctx, json_t *args, struct tool_result *r)
{
	(void)ctx;
	if (!not_blank(json_string_value(json_object_get(args, "plan")))) {
		result_error(r, "submit_plan: argument \"plan\" is empty");
		return;
	}
	terminal(args, r, xstrdup("plan submitted"));
}

static void
tool_submit_review(
    const struct tool_ctx *ctx, json_t *args, struct tool_result *r)
{
	const char *verdict =
	    json_string_value(json_object_get(args, "verdict"));
	const char *comments =
	    json_string_value(json_object_get(args, "comments"));
	char *p;

	(void)ctx;
	if (strcmp(verdict, "approve") != 0 &&
	    strcmp(verdict, "request_changes") != 0) {
		p = show(verdict);
		result_error(r,
		    "submit_review: argument \"verdict\" must be \"approve\" "
		    "or \"request_changes\", not \"%s\"",
		    p);
		free(p);
		return;
	}
	if (strcmp(verdict, "request_changes") == 0 && !not_blank(comments)) {
		result_error(r, "submit_review: argument \"comments\" is "
		                "empty; say what to change");
		return;
	}
	terminal(args, r, xasprintf("review submitted: %s", verdict));
}

static void
tool_read_diff(const struct tool_ctx *ctx, json_t *args, struct tool_result *r)
{
	json_t *jo = json_object_get(args, "offset");
	json_int_t off = jo != NULL ? json_integer_value(jo) : 0;
	size_t start, end;

	if (ctx->diff == NULL) {
		result_error(r, "read_diff: there is no diff in this stage");
		return;
	}
	if (off < 0 || (uint64_t)off > ctx->diff_len) {
		result_error(r,
		    "read_diff: offset %lld is outside the diff (0 to %zu "
		    "bytes)",
		    (long long)off, ctx->diff_len);
		return;
	}
	/* Start at a character, end at a line (or a character). */
	start = (size_t)off;
	while (start < ctx->diff_len && (ctx->diff[start] & 0xc0) == 0x80)
		start++;
	end = start +
	      utf8_head(ctx->diff + start, ctx->diff_len - start, DIFF_CHUNK);
	if (end < ctx->diff_len) {
		size_t line = end;

		while (line > start && ctx->diff[line - 1] != '\n')
			line--;
		if (line > start)
			end = line;
	}
	if (start == ctx->diff_len) {
		result_done(r, xasprintf("[the diff is %zu bytes; nothing "
		                         "after offset %zu]",
		                   ctx->diff_len, start));
		return;
	}
	if (end < ctx->diff_len)
		result_done(r, xasprintf("%.*s\n[bytes %zu to %zu of the "
		                         "%zu-byte diff; read on with offset "
		                         "%zu]",
		                   (int)(end - start), ctx->diff + start, start,
		                   end, ctx->diff_len, end));
	else
		result_done(r, xasprintf("%.*s\n[bytes %zu to %zu of the "
		                         "%zu-byte diff; that is the end]",
		                   (int)(end - start), ctx->diff + start, start,
		                   end, ctx->diff_len));
}

static void
tool_finish(const struct tool_ctx *ctx, json_t *args, struct tool_result *r)
{
	const char *summary =
	    json_string_value(json_object_get(args, "summary"));

	(void)ctx;
	if (!not_blank(summary)) {
		result_error(r, "finish: argument \"summary\" is empty");
		return;
	}
	/* It becomes the result's commit message and is shown to people. */
	if (strlen(summary) > TOOL_MAX_SUMMARY) {
		result_error(r,
		    "finish: the summary is %zu bytes, over the limit of %d: "
		    "say what changed and why in a few paragraphs",
		    strlen(summary), TOOL_MAX_SUMMARY);
		return;
	}
	terminal(args, r, xstrdup("implementation finished"));
}

static const char *
type_name(json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
	default:
		return "null";
	}
}

/* The names of the tools of stage mask, comma-separated (all for 0). */
static char *
tool_names(unsigned mask)
{
	struct buf out;

	buf_init(&out);
	for (size_t i = 0; i < nitems(tools); i++) {
		if (mask != 0 && (tools[i].stages & mask) == 0)
			continue;
		if (out.len > 0)
			buf_adds(&out, ", ");
		buf_adds(&out, tools[i].name);
	}
	return out.buf;
}

/* Check every declared argument's presence and JSON type. */
static int
check_params(const struct tool *t, json_t *args, struct tool_result *r)
{
	for (size_t i = 0; i < nitems(t->params) && t->params[i].name != NULL;
	     i++) {
		const struct tool_param *tp = &t->params[i];
		json_t *v = json_object_get(args, tp->name);
		int good;

		if (v == NULL || (json_is_null(v) && !tp->required)) {
			if (!tp->required)
				continue;
			result_error(r, "%s: argument \"%s\" is missing (%s)",
			    t->name, tp->name,
			    tp->type == JSON_STRING ? "a string"
			                            : "an integer");
			return -1;
		}
		if (tp->type == JSON_STRING)
			good = json_is_string(v);
		else {
			/* 30.0 is taken for 30; 30.5 is not. */
			double d = json_real_value(v);

			good = json_is_integer(v) ||
			       (json_is_real(v) && d > -1e15 && d < 1e15 &&
			           d == (double)(long long)d);
		}
		if (!good) {
			result_error(r,
			    "%s: argument \"%s\" must be %s, not %s", t->name,
			    tp->name,
			    tp->type == JSON_STRING ? "a string" : "an integer",
			    type_name(v));
			return -1;
		}
	}
	return 0;
}

void
tool_exec(const struct tool_ctx *ctx, const char *name, const char *args,
    struct tool_result *r)
{
	const struct tool *t = NULL;
	unsigned mask = stage_mask(ctx->stage);
	json_error_t jerr;
	json_t *obj = NULL;
	char *p, *names;
	size_t len;

	memset(r, 0, sizeof *r);
	if (name == NULL)
		name = "";
	for (size_t i = 0; i < nitems(tools); i++) {
		if (strcmp(tools[i].name, name) == 0)
			t = &tools[i];
	}
	if (t == NULL || (t->stages & mask) == 0) {
		p = show(name);
		names = tool_names(mask);
		if (t == NULL)
			result_error(r,
			    "unknown tool \"%s\"; the tools are: %s", p, names);
		else
			result_error(r,
			    "tool %s is not offered in the %s stage; the tools "
			    "are: %s",
			    p, ctx->stage != NULL ? ctx->stage : "(none)",
			    names);
		free(names);
		free(p);
		goto out;
	}

	/* Some providers send "" for a call without arguments. */
	if (args == NULL)
		args = "";
	len = strlen(args);
	if (len > TOOL_MAX_ARGS) {
		result_error(r,
		    "%s: the arguments are %zu bytes; the limit is %d", t->name,
		    len, TOOL_MAX_ARGS);
		goto out;
	}
	if (args[strspn(args, " \t\r\n")] == '\0')
		args = "{}";
	/* NULs are let through the parser, to be refused where they matter. */
	obj = json_loadb(args, strlen(args),
	    JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	if (obj == NULL) {
		result_error(r,
		    "%s: the arguments are not valid JSON: %s (line %d, "
		    "column %d)",
		    t->name, jerr.text, jerr.line, jerr.column);
		goto out;
	}
	if (!json_is_object(obj)) {
		result_error(r,
		    "%s: the arguments must be a JSON object, not %s", t->name,
		    type_name(obj));
		goto out;
	}
	if (check_params(t, obj, r) == -1)
		goto out;
	t->run(ctx, obj, r);
out:
	json_decref(obj);
	if (r->text == NULL)
		r->text = xstrdup("");
	r->text = result_finish(r->text);
}

void
tool_result_clear(struct tool_result *r)
{
	if (r == NULL)
		return;
	free(r->text);
	json_decref(r->value);
	json_decref(r->facts);
	memset(r, 0, sizeof *r);
}

json_t *
tool_schemas(const char *stage)
{
	unsigned mask = stage_mask(stage);
	json_t *array = json_array();

	for (size_t i = 0; i < nitems(tools); i++) {
		const struct tool *t = &tools[i];
		json_t *props = json_object(), *required = json_array();

		if ((t->stages & mask) == 0) {
			json_decref(props);
			json_decref(required);
			continue;
		}
		for (size_t j = 0;
		     j < nitems(t->params) && t->params[j].name != NULL; j++) {
			const struct tool_param *tp = &t->params[j];
			json_t *schema;

			if (tp->type == JSON_STRING)
				schema = json_pack("{s:s, s:s}", "type",
				    "string", "description", tp->description);
			else
				schema = json_pack("{s:s, s:s, s:i, s:i}",
				    "type", "integer", "description",
				    tp->description, "minimum", 1, "maximum",
				    TIMEOUT_MAX);
			if (strcmp(tp->name, "verdict") == 0)
				json_object_set_new(schema, "enum",
				    json_pack("[s, s]", "approve",
				        "request_changes"));
			json_object_set_new(props, tp->name, schema);
			if (tp->required)
				json_array_append_new(
				    required, json_string(tp->name));
		}
		json_array_append_new(array,
		    json_pack("{s:s, s:s, s:{s:s, s:o, s:o}}", "name", t->name,
		        "description", t->description, "parameters", "type",
		        "object", "properties", props, "required", required));
	}
	return array;
}
