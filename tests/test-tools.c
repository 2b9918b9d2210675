/*
 * tools.c: each tool's happy path, the argument checks, and that no path
 * leads outside the workspace (absolute, "..", symlinks, .git).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "worker.h"

#include "tap.h"

static char tmp[] = "/tmp/test-tools.XXXXXX";
static struct tool_ctx ctx;
static struct tool_result res;

static char *
at(const char *rel)
{
	static char buf[4096];

	snprintf(buf, sizeof buf, "%s/%s", tmp, rel);
	return buf;
}

static void
put(const char *rel, const char *data, size_t len)
{
	int fd = open(at(rel), O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd == -1 || write_all(fd, data, len) == -1)
		fatal("write %s", rel);
	close(fd);
}

static char *
slurp(const char *rel)
{
	static char buf[8192];
	int fd = open(at(rel), O_RDONLY);
	ssize_t n;

	if (fd == -1)
		return NULL;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	buf[n < 0 ? 0 : n] = '\0';
	return buf;
}

static int
exists(const char *rel)
{
	struct stat st;

	return lstat(at(rel), &st) == 0;
}

static int
has(const char *needle)
{
	int yes = res.text != NULL && strstr(res.text, needle) != NULL;

	if (!yes)
		printf("#   \"%s\" not in \"%.300s\"\n", needle,
		    res.text != NULL ? res.text : "(null)");
	return yes;
}

static enum tool_outcome
call(const char *stage, const char *name, const char *fmt, ...)
{
	va_list ap;
	char *args;

	va_start(ap, fmt);
	if (vasprintf(&args, fmt, ap) == -1)
		fatal("vasprintf");
	va_end(ap);
	tool_result_clear(&res);
	ctx.stage = stage;
	tool_exec(&ctx, name, args, &res);
	free(args);
	return res.outcome;
}

static char *fake_command;
static unsigned fake_timeout;
static int fake_calls;

static int
fake_run(void *arg, const char *command, unsigned timeout_s, char **result_json)
{
	is_str(arg, "sandbox", "run_command passes run_arg");
	free(fake_command);
	fake_command = xstrdup(command);
	fake_timeout = timeout_s;
	fake_calls++;
	*result_json = xstrdup("{\"exit_status\":0,\"output\":\"hi\\n\"}");
	return 0;
}

static void
test_happy(void)
{
	struct stat st;

	is_int(call("implementing", "write_file",
	           "{\"path\":\"src/new/a.txt\",\"content\":\"hello\\n\"}"),
	    TOOL_DONE, "write_file creates a file and its directories");
	is_str(res.text, "wrote 6 bytes to src/new/a.txt", "write_file result");
	is_int(res.changed, 1, "write_file: changed");
	is_str(slurp("ws/src/new/a.txt"), "hello\n", "file written");
	ok(stat(at("ws/src/new/a.txt"), &st) == 0 &&
	        (st.st_mode & 07777) == 0644,
	    "new file has mode 0644");

	is_int(call("planning", "read_file", "{\"path\":\"src/new/a.txt\"}"),
	    TOOL_DONE, "read_file");
	is_str(res.text, "hello\n", "read_file gives the content");
	is_int(res.changed, 0, "read_file: not changed");
	is_int(call("reviewing", "read_file",
	           "{\"path\":\"./src//new/../new/a.txt\",\"extra\":1}"),
	    TOOL_DONE, "read_file: dots inside, extra argument ignored");

	is_int(call("implementing", "edit_file",
	           "{\"path\":\"src/new/a.txt\",\"old\":\"hello\","
	           "\"new\":\"hello, world\"}"),
	    TOOL_DONE, "edit_file");
	is_int(res.changed, 1, "edit_file: changed");
	is_str(slurp("ws/src/new/a.txt"), "hello, world\n", "file edited");

	put("ws/run.sh", "#!/bin/sh\necho one\n", 19);
	chmod(at("ws/run.sh"), 0755);
	is_int(call("implementing", "edit_file",
	           "{\"path\":\"run.sh\",\"old\":\"one\",\"new\":\"two\"}"),
	    TOOL_DONE, "edit_file of an executable");
	ok(stat(at("ws/run.sh"), &st) == 0 && (st.st_mode & 0777) == 0755,
	    "it stays executable");
	is_int(call("implementing", "write_file",
	           "{\"path\":\"run.sh\",\"content\":\"x\"}"),
	    TOOL_DONE, "write_file over an existing file");
	is_str(slurp("ws/run.sh"), "x", "replaced");

	is_int(call("implementing", "edit_file",
	           "{\"path\":\"src/new/a.txt\",\"old\":\"absent\","
	           "\"new\":\"x\"}"),
	    TOOL_ERROR, "edit_file with no match");
	ok(has("\"old\" does not occur in src/new/a.txt"), "says so");
	is_int(res.changed, 0, "failed edit: not changed");
	put("ws/two.txt", "ab ab\n", 6);
	is_int(call("implementing", "edit_file",
	           "{\"path\":\"two.txt\",\"old\":\"ab\",\"new\":\"x\"}"),
	    TOOL_ERROR, "edit_file with two matches");
	ok(has("occurs 2 times in two.txt"), "says how many");
	is_str(slurp("ws/two.txt"), "ab ab\n", "file unchanged");
	put("ws/aaa.txt", "aaa", 3);
	is_int(call("implementing", "edit_file",
	           "{\"path\":\"aaa.txt\",\"old\":\"aa\",\"new\":\"b\"}"),
	    TOOL_ERROR, "edit_file with overlapping matches");
	is_int(call("implementing", "edit_file",
	           "{\"path\":\"aaa.txt\",\"old\":\"\",\"new\":\"b\"}"),
	    TOOL_ERROR, "edit_file with empty old");
	is_int(call("implementing", "edit_file",
	           "{\"path\":\"nope.txt\",\"old\":\"a\",\"new\":\"b\"}"),
	    TOOL_ERROR, "edit_file of a missing file");
	ok(has("nope.txt does not exist"), "says so");

	/* The listing: sorted, recursive, dirs with '/', no .git. */
	mkdir(at("ws/sub"), 0755);
	mkdir(at("ws/sub/.git"), 0755);
	put("ws/sub/.git/config", "x", 1);
	put("ws/.git", "gitdir: /elsewhere\n", 19);
	put("ws/sub/b.txt", "b", 1);
	mkdir(at("ws/empty"), 0755);
	is_int(call("verifying", "list_files", "{\"path\":\"\"}"), TOOL_DONE,
	    "list_files of the root");
	is_str(res.text,
	    "aaa.txt\nempty/\nrun.sh\nsrc/\nsrc/new/\nsrc/new/a.txt\nsub/\n"
	    "sub/b.txt\ntwo.txt",
	    "listing");
	is_int(call("planning", "list_files", "{\"path\":\".\"}"), TOOL_DONE,
	    "list_files of \".\"");
	ok(has("aaa.txt\nempty/"), "same listing");
	is_int(call("planning", "list_files", "{\"path\":\"src/\"}"), TOOL_DONE,
	    "list_files of a subdirectory");
	is_str(res.text, "src/new/\nsrc/new/a.txt", "paths from the root");
	is_int(call("planning", "list_files", "{\"path\":\"empty\"}"),
	    TOOL_DONE, "list_files of an empty directory");
	ok(has("empty directory"), "says so");
	is_int(call("planning", "list_files", "{\"path\":\"two.txt\"}"),
	    TOOL_ERROR, "list_files of a file");
	is_int(call("planning", "list_files", "{\"path\":\"missing\"}"),
	    TOOL_ERROR, "list_files of a missing directory");
	ok(has("missing does not exist"), "says so");
}

static void
link_to(const char *target, const char *rel)
{
	char *t = xstrdup(target);

	if (symlink(t, at(rel)) == -1)
		fatal("symlink %s", rel);
	free(t);
}

/* Whether the last listing shows anything of the outside directory. */
static int
has_secret_listing(void)
{
	return res.text != NULL && strstr(res.text, "secret") != NULL;
}

static void
test_escapes(void)
{
	static const char *const paths[] = {
	    NULL, /* the absolute path of outside/secret */
	    "../outside/secret",
	    "a/../../outside/secret",
	    "src/../../outside/secret",
	    "lnfile",
	    "lndir/secret",
	    "lninner/b.txt",
	    "src/lnup/outside/secret",
	    "dangling",
	};
	char *abs = xstrdup(at("outside/secret"));

	mkdir(at("outside"), 0755);
	put("outside/secret", "secret\n", 7);
	link_to(at("outside/secret"), "ws/lnfile");
	link_to(at("outside"), "ws/lndir");
	link_to("sub", "ws/lninner"); /* inside, but still a symlink */
	link_to("../..", "ws/src/lnup");
	link_to(at("outside/created"), "ws/dangling");

	for (size_t i = 0; i < nitems(paths); i++) {
		const char *p = paths[i] != NULL ? paths[i] : abs;
		char *what;

		what = xasprintf("read_file %s refused", p);
		is_int(
		    call("implementing", "read_file", "{\"path\":\"%s\"}", p),
		    TOOL_ERROR, what);
		ok(has("is outside the workspace or goes through a symlink"),
		    "with the message");
		ok(strstr(res.text, "secret\n") == NULL, "secret not shown");
		free(what);
		what = xasprintf("write_file %s refused", p);
		is_int(call("implementing", "write_file",
		           "{\"path\":\"%s\",\"content\":\"pwned\"}", p),
		    TOOL_ERROR, what);
		is_int(res.changed, 0, "not changed");
		free(what);
		what = xasprintf("edit_file %s refused", p);
		is_int(call("implementing", "edit_file",
		           "{\"path\":\"%s\",\"old\":\"secret\",\"new\":\"x\"}",
		           p),
		    TOOL_ERROR, what);
		free(what);
	}
	is_int(call("implementing", "list_files", "{\"path\":\"lndir\"}"),
	    TOOL_ERROR, "list_files through a symlinked dir refused");
	is_int(call("implementing", "list_files", "{\"path\":\"..\"}"),
	    TOOL_ERROR, "list_files of .. refused");
	is_int(call("implementing", "write_file",
	           "{\"path\":\"lndir/new/x\",\"content\":\"pwned\"}"),
	    TOOL_ERROR, "write_file creating dirs under a symlinked dir");
	is_str(slurp("outside/secret"), "secret\n", "secret unchanged");
	ok(!exists("outside/created"), "dangling symlink target not created");
	ok(!exists("outside/new"), "no directory created outside");
	ok(!exists("ws/a"), "no directory created for a/../..");
	{
		struct stat st;

		ok(lstat(at("ws/dangling"), &st) == 0 && S_ISLNK(st.st_mode),
		    "dangling symlink left as it was");
	}
	is_int(call("implementing", "list_files", "{\"path\":\"\"}"), TOOL_DONE,
	    "the root listing shows symlinks");
	ok(has("lndir (symlink)") && !has_secret_listing(), "not followed");

	/* The repository's internals. */
	static const char *const gits[] = {".git/config", "sub/.git/hooks/x",
	    ".GIT/config", "src/../.git/config", ".git"};
	for (size_t i = 0; i < nitems(gits); i++) {
		char *what = xasprintf("write_file %s refused", gits[i]);

		is_int(call("implementing", "write_file",
		           "{\"path\":\"%s\",\"content\":\"x\"}", gits[i]),
		    TOOL_ERROR, what);
		ok(has("is inside .git"), "with its own message");
		free(what);
		what = xasprintf("read_file %s refused", gits[i]);
		is_int(call("implementing", "read_file", "{\"path\":\"%s\"}",
		           gits[i]),
		    TOOL_ERROR, what);
		free(what);
	}
	ok(!exists("ws/sub/.git/hooks"), "no hook directory created");
	is_str(slurp("ws/sub/.git/config"), "x", "nested .git unchanged");
	free(abs);
}

static void
test_limits(void)
{
	char *big, *args;
	size_t n;

	/* Over TOOL_MAX_WRITE (and so over TOOL_MAX_ARGS too). */
	big = xmalloc(TOOL_MAX_WRITE + 2);
	memset(big, 'a', TOOL_MAX_WRITE + 1);
	big[TOOL_MAX_WRITE + 1] = '\0';
	is_int(call("implementing", "write_file",
	           "{\"path\":\"big.txt\",\"content\":\"%s\"}", big),
	    TOOL_ERROR, "write_file over TOOL_MAX_WRITE");
	ok(has("write_file") && has("limit"), "says the limit");
	ok(!exists("ws/big.txt"), "nothing written");
	free(big);

	/* edit_file whose result would be too big. */
	big = xmalloc(TOOL_MAX_WRITE);
	memset(big, 'b', TOOL_MAX_WRITE - 4);
	memcpy(big + TOOL_MAX_WRITE - 4, "END\n", 4);
	put("ws/edit-big.txt", big, TOOL_MAX_WRITE);
	is_int(call("implementing", "edit_file",
	           "{\"path\":\"edit-big.txt\",\"old\":\"END\","
	           "\"new\":\"A LONGER END\"}"),
	    TOOL_ERROR, "edit_file growing a file over TOOL_MAX_WRITE");
	ok(has("limit"), "says the limit");
	free(big);

	/* A file bigger than TOOL_MAX_READ is cut, with the note. */
	n = TOOL_MAX_READ + 1000;
	big = xmalloc(n);
	for (size_t i = 0; i < n; i++)
		big[i] = i % 64 == 63 ? '\n' : 'x';
	put("ws/large.txt", big, n);
	is_int(call("reviewing", "read_file", "{\"path\":\"large.txt\"}"),
	    TOOL_DONE, "read_file of a large file");
	args = xasprintf("[file is %zu bytes; showing the first ", n);
	ok(has(args), "has the note");
	ok(strlen(res.text) <= TOOL_MAX_RESULT, "within TOOL_MAX_RESULT");
	ok(strncmp(res.text, big, 1000) == 0, "starts with the file");
	free(args);
	free(big);

	put("ws/bin.dat", "ELF\0\1\2", 6);
	is_int(call("reviewing", "read_file", "{\"path\":\"bin.dat\"}"),
	    TOOL_ERROR, "read_file of a binary file");
	ok(has("binary"), "says binary");
	put("ws/latin1.txt", "caf\xe9\n", 5);
	is_int(call("reviewing", "read_file", "{\"path\":\"latin1.txt\"}"),
	    TOOL_DONE, "read_file of invalid UTF-8");
	ok(strncmp(res.text, "caf\xef\xbf\xbd\n", 6) == 0, "shown with U+FFFD");
	ok(has("1 bytes of latin1.txt are not UTF-8"),
	    "says how many bytes are not UTF-8");
	put("ws/empty.txt", "", 0);
	is_int(call("reviewing", "read_file", "{\"path\":\"empty.txt\"}"),
	    TOOL_DONE, "read_file of an empty file");
	is_int(mkfifo(at("ws/fifo"), 0644), 0, "mkfifo");
	is_int(call("reviewing", "read_file", "{\"path\":\"fifo\"}"),
	    TOOL_ERROR, "read_file of a FIFO does not hang");
	ok(has("not a regular file"), "says so");
	is_int(call("reviewing", "read_file", "{\"path\":\"src\"}"), TOOL_ERROR,
	    "read_file of a directory");
	ok(has("use list_files"), "points at list_files");
	unlink(at("ws/fifo"));

	/* More entries than TOOL_MAX_LIST. */
	mkdir(at("ws/many"), 0755);
	for (int i = 0; i < TOOL_MAX_LIST + 500; i++) {
		char name[64];

		snprintf(name, sizeof name, "ws/many/f%05d", i);
		put(name, "", 0);
	}
	is_int(call("planning", "list_files", "{\"path\":\"many\"}"), TOOL_DONE,
	    "list_files of a big directory");
	ok(has("many/f01999\n[... 500 more entries left out"),
	    "cut at TOOL_MAX_LIST with a count");
	ok(strstr(res.text, "f02000") == NULL, "no more entries shown");
}

static void
test_args(void)
{
	char *big;

	is_int(call("implementing", "read_file", "{\"path\":"), TOOL_ERROR,
	    "invalid JSON");
	ok(has("read_file: the arguments are not valid JSON"), "says so");
	is_int(call("implementing", "read_file", "[\"a.txt\"]"), TOOL_ERROR,
	    "array instead of object");
	ok(has("read_file: the arguments must be a JSON object, not an array"),
	    "says so");
	is_int(call("implementing", "read_file", "{}"), TOOL_ERROR,
	    "missing argument");
	ok(has("read_file: argument \"path\" is missing"), "names it");
	is_int(call("implementing", "read_file", ""), TOOL_ERROR,
	    "empty arguments: missing argument");
	is_int(call("implementing", "write_file", "{\"path\":\"x\"}"),
	    TOOL_ERROR, "second argument missing");
	ok(has("write_file: argument \"content\" is missing"), "names it");
	is_int(call("implementing", "read_file", "{\"path\":5}"), TOOL_ERROR,
	    "wrong type");
	ok(has("read_file: argument \"path\" must be a string, not a number"),
	    "names it");
	is_int(call("implementing", "read_file",
	           "{\"path\":\"a\",\"path\":"
	           "\"b\"}"),
	    TOOL_ERROR, "duplicate key");
	is_int(call("implementing", "read_file", "{\"path\":\"a\\u0000b\"}"),
	    TOOL_ERROR, "NUL in a path");
	is_int(call("implementing", "rm_rf", "{}"), TOOL_ERROR, "unknown tool");
	ok(has("unknown tool \"rm_rf\"; the tools are: list_files, read_file, "
	       "write_file, edit_file, run_command, finish"),
	    "lists the stage's tools");
	is_int(call("planning", "write_file",
	           "{\"path\":\"x\",\"content\":"
	           "\"y\"}"),
	    TOOL_ERROR, "write_file in planning");
	ok(has("write_file is not offered in the planning stage"), "says so");
	ok(!exists("ws/x"), "nothing written");
	is_int(call("reviewing", "finish", "{\"summary\":\"s\"}"), TOOL_ERROR,
	    "finish in reviewing");
	is_int(call("verifying", "edit_file", "{}"), TOOL_ERROR,
	    "edit_file in verifying");

	big = xmalloc(TOOL_MAX_ARGS + 2);
	memset(big, ' ', TOOL_MAX_ARGS + 1);
	big[TOOL_MAX_ARGS + 1] = '\0';
	memcpy(big, "{\"path\":\"a\"}", 12);
	is_int(call("implementing", "read_file", "%s", big), TOOL_ERROR,
	    "arguments over TOOL_MAX_ARGS (with the padding)");
	ok(has("read_file: the arguments are"), "says so");
	big[TOOL_MAX_ARGS] = '\0';
	is_int(call("implementing", "read_file", "%s", big), TOOL_ERROR,
	    "just under the limit is parsed (and the file is missing)");
	ok(has("does not exist"), "got to the tool");
	free(big);
}

static void
test_terminal(void)
{
	is_int(call("planning", "submit_plan", "{\"plan\":\"1. do it\"}"),
	    TOOL_TERMINAL, "submit_plan");
	ok(json_is_object(res.value) &&
	        strcmp(json_string_value(json_object_get(res.value, "plan")),
	            "1. do it") == 0,
	    "value has the plan");
	is_int(call("planning", "submit_plan", "{\"plan\":\"  \"}"), TOOL_ERROR,
	    "empty plan");
	ok(res.value == NULL, "no value on error");
	is_int(call("implementing", "finish", "{\"summary\":\"done\"}"),
	    TOOL_TERMINAL, "finish");
	is_str(json_string_value(json_object_get(res.value, "summary")), "done",
	    "value has the summary");
	is_int(call("reviewing", "submit_review",
	           "{\"verdict\":\"approve\",\"comments\":\"\"}"),
	    TOOL_TERMINAL, "submit_review approve");
	is_str(json_string_value(json_object_get(res.value, "verdict")),
	    "approve", "value has the verdict");
	is_int(call("reviewing", "submit_review",
	           "{\"verdict\":\"request_changes\",\"comments\":\"fix x\"}"),
	    TOOL_TERMINAL, "submit_review request_changes");
	is_int(call("reviewing", "submit_review",
	           "{\"verdict\":\"lgtm\",\"comments\":\"\"}"),
	    TOOL_ERROR, "submit_review with a bad verdict");
	ok(has("\"verdict\" must be \"approve\" or \"request_changes\""),
	    "says the choices");
	is_int(call("reviewing", "submit_review",
	           "{\"verdict\":\"request_changes\",\"comments\":\"\"}"),
	    TOOL_ERROR, "request_changes without comments");
	is_int(call("reviewing", "submit_review", "{\"verdict\":\"approve\"}"),
	    TOOL_ERROR, "submit_review without comments");
}

static void
test_run_command(void)
{
	ctx.run_command = NULL;
	is_int(call("implementing", "run_command", "{\"command\":\"make\"}"),
	    TOOL_ERROR, "run_command without a runner");
	ok(has("run_command is not available in this stage"), "says so");

	ctx.run_command = fake_run;
	ctx.run_arg = "sandbox";
	is_int(call("implementing", "run_command",
	           "{\"command\":\"make check\",\"timeout_s\":30}"),
	    TOOL_DONE, "run_command");
	is_str(fake_command, "make check", "command passed through");
	is_int(fake_timeout, 30, "timeout passed through");
	is_str(res.text, "{\"exit_status\":0,\"output\":\"hi\\n\"}",
	    "result is the runner's");
	is_int(res.changed, 1, "run_command: changed");
	is_int(call("verifying", "run_command", "{\"command\":\"ls\"}"),
	    TOOL_DONE, "run_command in verifying, no timeout");
	is_int(fake_timeout, 0, "no timeout: 0");
	fake_calls = 0;
	is_int(call("verifying", "run_command",
	           "{\"command\":\"ls\",\"timeout_s\":0}"),
	    TOOL_ERROR, "timeout_s 0");
	ok(has("\"timeout_s\""), "names the argument");
	is_int(call("verifying", "run_command",
	           "{\"command\":\"ls\",\"timeout_s\":86401}"),
	    TOOL_ERROR, "timeout_s too big");
	is_int(call("verifying", "run_command",
	           "{\"command\":\"ls\",\"timeout_s\":\"30\"}"),
	    TOOL_ERROR, "timeout_s as a string");
	ok(has("run_command: argument \"timeout_s\" must be an integer"),
	    "names the argument");
	is_int(call("verifying", "run_command", "{\"command\":\"\"}"),
	    TOOL_ERROR, "empty command");
	{
		size_t n = TOOL_MAX_COMMAND + 1;
		char *big = xmalloc(n + 32);

		memcpy(big, "{\"command\":\"", 12);
		memset(big + 12, 'x', n);
		memcpy(big + 12 + n, "\"}", 3);
		is_int(call("implementing", "run_command", big), TOOL_ERROR,
		    "a command over TOOL_MAX_COMMAND");
		ok(has("write a script"), "says what to do instead");
		free(big);
	}
	is_int(call("planning", "run_command", "{\"command\":\"ls\"}"),
	    TOOL_ERROR, "run_command in planning");
	is_int(call("reviewing", "run_command", "{\"command\":\"ls\"}"),
	    TOOL_ERROR, "run_command in reviewing");
	is_int(fake_calls, 0, "the runner was not called for any of them");
	ctx.run_command = NULL;
}

static void
is_names(const char *stage, const char *want)
{
	json_t *schemas = tool_schemas(stage), *t;
	char got[512] = "", *what;
	size_t i;
	int shaped = 1;

	json_array_foreach(schemas, i, t) {
		json_t *params = json_object_get(t, "parameters");

		if (i > 0)
			strcat(got, " ");
		strcat(got, json_string_value(json_object_get(t, "name")));
		shaped &=
		    json_is_string(json_object_get(t, "description")) &&
		    json_is_object(json_object_get(params, "properties")) &&
		    json_is_array(json_object_get(params, "required")) &&
		    strcmp(json_string_value(json_object_get(params, "type")),
		        "object") == 0;
	}
	what = xasprintf("tool_schemas(%s) names", stage);
	is_str(got, want, what);
	free(what);
	what = xasprintf("tool_schemas(%s) shape", stage);
	ok(shaped, what);
	free(what);
	json_decref(schemas);
}

/*
 * read_diff: the reviewer reads the diff past what its request showed, in
 * chunks cut at lines and characters, each saying where to read on.
 */
static void
test_read_diff(void)
{
	size_t n = 200 * 1024, off = 0;
	char *diff = xmalloc(n + 1), *args;
	int calls = 0, whole = 1;

	/* Lines of 100 bytes, each ending with a check mark and newline. */
	for (size_t i = 0; i < n; i += 100) {
		memset(diff + i, 'a' + (int)(i / 100 % 26), 96);
		memcpy(diff + i + 96, "\xe2\x9c\x93\n", 4);
	}
	diff[n] = '\0';
	is_int(call("reviewing", "read_diff", "{}"), TOOL_ERROR,
	    "read_diff with no diff held is an error");
	ctx.diff = diff;
	ctx.diff_len = n;
	is_int(call("implementing", "read_diff", "{}"), TOOL_ERROR,
	    "read_diff is not offered when implementing");
	is_int(call("reviewing", "read_diff", "{\"offset\":-1}"), TOOL_ERROR,
	    "a negative offset is an error");
	is_int(call("reviewing", "read_diff", "{\"offset\":999999999}"),
	    TOOL_ERROR, "an offset past the end is an error");
	for (;;) {
		const char *note;
		size_t a, b, total;

		args = xasprintf("{\"offset\":%zu}", off);
		if (call("reviewing", "read_diff", "%s", args) != TOOL_DONE) {
			free(args);
			whole = 0;
			break;
		}
		free(args);
		calls++;
		note = strrchr(res.text, '[');
		if (note == NULL || sscanf(note,
		                        "[bytes %zu to %zu of the "
		                        "%zu-byte diff",
		                        &a, &b, &total) != 3) {
			whole = 0;
			break;
		}
		whole &= a == off && total == n && b - a <= 64 * 1024 &&
		         (size_t)(note - res.text) == b - a + 1 &&
		         memcmp(res.text, diff + a, b - a) == 0 &&
		         (b == n || diff[b - 1] == '\n');
		if (b == n) {
			ok(strstr(note, "that is the end") != NULL,
			    "the last chunk says it is the end");
			break;
		}
		ok(calls < 10, "read_diff moves on");
		if (calls >= 10)
			break;
		off = b;
	}
	ok(whole, "read_diff returns the whole diff in line-cut chunks");
	is_int(calls, 4, "200 KiB in 4 chunks");
	/* An offset inside a character starts at the next one. */
	is_int(call("reviewing", "read_diff", "{\"offset\":97}"), TOOL_DONE,
	    "read_diff from inside a character");
	ok(res.text[0] == '\n' && res.text[1] == 'b',
	    "starts at the next character");
	ctx.diff = NULL;
	ctx.diff_len = 0;
	free(diff);
}

static void
test_schemas(void)
{
	json_t *s, *want;

	is_names("planning", "list_files read_file submit_plan");
	is_names("implementing",
	    "list_files read_file write_file edit_file run_command finish");
	is_names("reviewing", "list_files read_file submit_review read_diff");
	is_names("verifying", "list_files read_file run_command");
	s = tool_schemas("nonsense");
	is_int(json_array_size(s), 0, "unknown stage: no tools");
	json_decref(s);
	s = tool_schemas("implementing");
	want = json_pack("[s]", "command");
	ok(json_equal(json_object_get(
	                  json_object_get(json_array_get(s, 4), "parameters"),
	                  "required"),
	       want),
	    "run_command requires only command");
	json_decref(want);
	json_decref(s);
}

int
main(void)
{
	if (mkdtemp(tmp) == NULL)
		fatal("mkdtemp");
	if (mkdir(at("ws"), 0755) == -1)
		fatal("mkdir");
	ctx.rootfd = open(at("ws"), O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (ctx.rootfd == -1)
		fatal("open");

	test_happy();
	test_escapes();
	test_limits();
	test_args();
	test_terminal();
	test_run_command();
	test_schemas();
	test_read_diff();

	tool_result_clear(&res);
	free(fake_command);
	close(ctx.rootfd);
	{
		char *cmd = xasprintf("rm -rf %s", tmp);

		if (system(cmd) != 0)
			printf("# cannot remove %s\n", tmp);
		free(cmd);
	}
	return tap_done();
}
