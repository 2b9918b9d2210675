/*
 * The console's pieces that decide what a browser runs and who gets in:
 * the one HTML escaping function, the secret comparison, the parsing of
 * ORCH_HTTP_LISTEN and the ORCH_REPOS list.
 */
#include <sys/socket.h>

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "console.h"
#include "tap.h"

static char *
esc(const char *s)
{
	struct buf b;

	buf_init(&b);
	console_html(&b, s);
	return b.buf;
}

static void
test_escape(void)
{
	static const struct {
		const char *in, *want, *what;
	} cases[] = {
	    {"plain text", "plain text", "plain text stays"},
	    {"<script>window.pwned=1</script>",
	        "&lt;script&gt;window.pwned=1&lt;/script&gt;",
	        "a script element is text"},
	    {"<img src=x onerror=\"window.pwned=1\">",
	        "&lt;img src=x onerror=&quot;window.pwned=1&quot;&gt;",
	        "an img with onerror is text"},
	    {"\" onmouseover='x'", "&quot; onmouseover=&#39;x&#39;",
	        "both quotes: an attribute value cannot be left"},
	    {"a & b", "a &amp; b", "ampersand"},
	    {"&lt;", "&amp;lt;", "an entity is shown, not decoded"},
	    {"line1\nline2\tx", "line1\nline2\tx", "newlines and tabs stay"},
	    {"\x1b[31mred", "\\x1b[31mred", "a terminal escape is shown"},
	    {"bad \xff\xfe byte", "bad \\xff\\xfe byte",
	        "bytes that are not UTF-8 are shown, not passed on"},
	    {"\xc3\xa9t\xc3\xa9", "\xc3\xa9t\xc3\xa9", "UTF-8 stays"},
	    {"\xe2\x80\xae"
	     "evil",
	        "\\u202eevil", "a bidi override is shown"},
	    {"javascript:alert(1)", "javascript:alert(1)",
	        "a javascript: URL is only text here (never an href)"},
	    {"", "", "empty"},
	};

	for (size_t i = 0; i < nitems(cases); i++) {
		char *got = esc(cases[i].in);
		is_str(got, cases[i].want, cases[i].what);
		free(got);
	}
	{
		struct buf b;
		buf_init(&b);
		console_html(&b, NULL);
		is_int((int)b.len, 0, "NULL adds nothing");
		buf_free(&b);
	}
	/* Whatever comes in, no markup character comes out. */
	{
		char all[256];
		char *got;
		int bad = 0;

		for (int i = 1; i < 256; i++)
			all[i - 1] = (char)i;
		all[255] = '\0';
		got = esc(all);
		for (const char *p = got; *p != '\0'; p++)
			if (*p == '<' || *p == '>' || *p == '"' || *p == '\'')
				bad = 1;
		ok(!bad, "every byte value: no < > \" ' left");
		free(got);
	}
}

static void
test_secret(void)
{
	ok(console_secret_equal("abcdef0123456789", "abcdef0123456789"),
	    "the same secret");
	ok(!console_secret_equal("abcdef0123456788", "abcdef0123456789"),
	    "the last character differs");
	ok(!console_secret_equal("abcdef012345678", "abcdef0123456789"),
	    "a prefix is not the secret");
	ok(!console_secret_equal("abcdef01234567890", "abcdef0123456789"),
	    "the secret and more is not the secret");
	ok(!console_secret_equal("", "abcdef0123456789"), "empty");
	ok(!console_secret_equal("", ""), "an empty secret matches nothing");
}

static void
test_listen(void)
{
	struct sockaddr_storage ss;
	unsigned len;
	int lo;
	char *err = NULL;

	ok(config_listen_parse("127.0.0.1:8080", &ss, &len, &lo, &err) == 0 &&
	        ss.ss_family == AF_INET && lo &&
	        ntohs(((struct sockaddr_in *)&ss)->sin_port) == 8080,
	    "127.0.0.1:8080: IPv4 loopback, port 8080");
	ok(config_listen_parse("[::1]:8081", &ss, &len, &lo, &err) == 0 &&
	        ss.ss_family == AF_INET6 && lo,
	    "[::1]:8081: IPv6 loopback");
	ok(config_listen_parse("0.0.0.0:8080", &ss, &len, &lo, &err) == 0 &&
	        !lo,
	    "0.0.0.0:8080 is beyond loopback");
	ok(config_listen_parse("[::]:8080", &ss, &len, &lo, &err) == 0 && !lo,
	    "[::]:8080 is beyond loopback");
	ok(config_listen_parse("localhost:9", &ss, &len, &lo, &err) == 0 && lo,
	    "localhost is loopback");
	static const char *const bad[] = {"8080", "127.0.0.1", "127.0.0.1:0",
	    "127.0.0.1:65536", "::1:8080", "[::1]8080", "example.com:80",
	    ":8080", "127.0.0.1:80x"};
	for (size_t i = 0; i < nitems(bad); i++) {
		err = NULL;
		ok(config_listen_parse(bad[i], &ss, &len, &lo, &err) == -1 &&
		        err != NULL && strstr(err, bad[i]) != NULL,
		    bad[i]);
		free(err);
	}
}

static void
test_repos(void)
{
	cfg.repos = NULL;
	ok(config_repo_allowed("/any/where"), "no ORCH_REPOS: any");
	cfg.repos = xstrdup("/srv/a, /srv/b ,/srv/c");
	ok(config_repo_allowed("/srv/a"), "first");
	ok(config_repo_allowed("/srv/b"), "middle, spaces around");
	ok(config_repo_allowed("/srv/c"), "last");
	ok(!config_repo_allowed("/srv"), "a prefix of one is not one");
	ok(!config_repo_allowed("/srv/a/../../etc"), "a path through one");
	ok(!config_repo_allowed("/srv/a, /srv/b"), "two at once");
	ok(!config_repo_allowed(""), "empty");
	free(cfg.repos);
	cfg.repos = NULL;
}

/* The one source of tokens, session ids and commit tokens (common). */
static void
test_random(void)
{
	char a[65], b[65];

	ok(random_hex(a, 32) == 0 && random_hex(b, 32) == 0,
	    "random_hex gives 32 bytes");
	is_int((int)strlen(a), 64, "... as 64 characters");
	is_int((int)strspn(a, "0123456789abcdef"), 64, "... all hex digits");
	ok(strcmp(a, b) != 0, "two draws differ");
}

int
main(void)
{
	test_escape();
	test_random();
	test_secret();
	test_listen();
	test_repos();
	return tap_done();
}
