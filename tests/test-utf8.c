/*
 * The UTF-8 module: what is valid, how invalid text is repaired and
 * counted, where cuts fall, and what a person's terminal is shown.
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "tap.h"

#define LEN(s) (sizeof(s) - 1)

static void
test_seq(void)
{
	static const struct {
		const char *s;
		size_t n;
		int want;
		const char *what;
	} cases[] = {
	    {"a", 1, 1, "ASCII"},
	    {"\x7f", 1, 1, "DEL is valid UTF-8"},
	    {"\xc2\x80", 2, 2, "U+0080 (a C1 control) is valid UTF-8"},
	    {"\xc3\xa9", 2, 2, "e acute"},
	    {"\xe2\x9c\x93", 3, 3, "check mark"},
	    {"\xf0\x9f\x98\x80", 4, 4, "emoji"},
	    {"\xf4\x8f\xbf\xbf", 4, 4, "U+10FFFF"},
	    {"\xef\xbf\xbd", 3, 3, "U+FFFD"},
	    {"\xe9!", 2, 0, "a Latin-1 byte before ASCII"},
	    {"\xe9", 1, -1, "a Latin-1 byte at the end may be a cut lead"},
	    {"\x80", 1, 0, "a stray continuation byte"},
	    {"\x9b", 1, 0, "raw 0x9b (CSI in 8-bit C1)"},
	    {"\xc0\xaf", 2, 0, "overlong '/' (c0)"},
	    {"\xc1\xbf", 2, 0, "overlong (c1)"},
	    {"\xe0\x80\xaf", 3, 0, "overlong 3-byte"},
	    {"\xe0\x9f\xbf", 3, 0, "overlong 3-byte, highest"},
	    {"\xf0\x80\x80\xaf", 4, 0, "overlong 4-byte"},
	    {"\xf0\x8f\xbf\xbf", 4, 0, "overlong 4-byte, highest"},
	    {"\xed\xa0\x80", 3, 0, "surrogate U+D800"},
	    {"\xed\xbf\xbf", 3, 0, "surrogate U+DFFF"},
	    {"\xed\x9f\xbf", 3, 3, "U+D7FF, just below the surrogates"},
	    {"\xf4\x90\x80\x80", 4, 0, "U+110000"},
	    {"\xf5\x80\x80\x80", 4, 0, "lead f5"},
	    {"\xff", 1, 0, "ff"},
	    {"\xe2\x9c", 2, -1, "check mark cut short"},
	    {"\xf0\x9f\x98", 3, -1, "emoji cut short"},
	    {"\xe2\x41\x93", 3, 0, "a lead followed by ASCII"},
	    {"\xc3", 1, -1, "a lone lead at the end"},
	};

	for (size_t i = 0; i < nitems(cases); i++)
		is_int(utf8_seq(cases[i].s, cases[i].n), cases[i].want,
		    cases[i].what);
	ok(utf8_valid(
	       "plain \xe2\x9c\x93 text", LEN("plain \xe2\x9c\x93 text")),
	    "valid text");
	ok(!utf8_valid("caf\xe9", 4), "Latin-1 is not valid");
	ok(!utf8_valid("ok \xe2\x9c", 5), "a cut character is not valid");
	ok(utf8_valid("", 0), "the empty string is valid");
}

static void
test_clean(void)
{
	size_t used, bad;
	char *s;

	s = utf8_clean("caf\xe9!", 5, SIZE_MAX, 0, &used, &bad);
	is_str(s, "caf\xef\xbf\xbd!", "a Latin-1 byte becomes U+FFFD");
	is_int(bad, 1, "one byte replaced");
	is_int(used, 5, "all taken");
	free(s);

	s = utf8_clean("a\0b", 3, SIZE_MAX, 0, NULL, &bad);
	is_str(s,
	    "a\xef\xbf\xbd"
	    "b",
	    "a NUL becomes U+FFFD");
	free(s);

	s = utf8_clean("\xed\xa0\x80", 3, SIZE_MAX, 0, NULL, &bad);
	is_str(s, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
	    "each byte of a surrogate is replaced");
	is_int(bad, 3, "three replaced");
	free(s);

	s = utf8_clean("ok \xe2\x9c", 5, SIZE_MAX, 1, &used, &bad);
	is_str(s, "ok ", "more: a character cut by the end is left");
	is_int(used, 3, "more: 3 bytes taken");
	is_int(bad, 0, "more: nothing replaced");
	free(s);

	s = utf8_clean("ok \xe2\x9c", 5, SIZE_MAX, 0, &used, &bad);
	is_str(s, "ok \xef\xbf\xbd\xef\xbf\xbd",
	    "at the end: a cut character is replaced");
	is_int(bad, 2, "two replaced");
	free(s);

	s = utf8_clean("ab\xe2\x9c\x93", 5, 4, 0, &used, NULL);
	is_str(s, "ab", "max: no character is split");
	is_int(used, 2, "max: 2 taken");
	free(s);

	s = utf8_fix("plain", &bad);
	is_str(s, "plain", "fix: valid text is unchanged");
	is_int(bad, 0, "fix: none replaced");
	free(s);
	s = utf8_fix("\xc0\xaf", &bad);
	is_str(s, "\xef\xbf\xbd\xef\xbf\xbd", "fix: an overlong is replaced");
	ok(s != NULL && utf8_valid(s, strlen(s)), "fix: the result is valid");
	free(s);
}

static void
test_cuts(void)
{
	const char *t = "pass \xe2\x9c\x93 done"; /* 13 bytes */

	is_int(utf8_head(t, 13, 100), 13, "head: short text is whole");
	is_int(utf8_head(t, 13, 5), 5, "head: at a boundary");
	is_int(utf8_head(t, 13, 6), 5, "head: before a split check mark");
	is_int(utf8_head(t, 13, 7), 5, "head: before a split check mark (2)");
	is_int(utf8_head(t, 13, 8), 8, "head: just after the check mark");
	is_int(utf8_head("a\x80\x80\x80\x80", 5, 3), 3,
	    "head: stray continuation bytes are cut anywhere");
	is_int(utf8_head("a\xe2\x9c", 3, 2), 1,
	    "head: a lead whose character the end cuts is dropped");

	is_int(utf8_tail(t, 13, 100), 0, "tail: short text is whole");
	is_int(utf8_tail(t, 13, 5), 8, "tail: at a boundary");
	is_int(utf8_tail(t, 13, 6), 8, "tail: after a split check mark");
	is_int(utf8_tail(t, 13, 7), 8, "tail: after a split check mark (2)");
	is_int(utf8_tail(t, 13, 8), 5, "tail: the whole check mark");
	ok(utf8_valid(t + utf8_tail(t, 13, 6), 13 - utf8_tail(t, 13, 6)),
	    "tail: the tail is valid");
	is_int(utf8_tail("\x80\x80\x80\x80\x80"
	                 "ab",
	           7, 6),
	    4, "tail: moves at most 3 bytes over invalid text");
}

static void
test_show(void)
{
	char *s;

	s = utf8_show_str("plain \xe2\x9c\x93\n\ttext");
	is_str(s, "plain \xe2\x9c\x93\n\ttext", "show: text is unchanged");
	free(s);
	s = utf8_show_str("a\033[8mhidden\033[0m");
	is_str(s, "a\\x1b[8mhidden\\x1b[0m", "show: ESC is visible");
	free(s);
	s = utf8_show_str("\033]52;c;ZXZpbA==\a");
	is_str(s, "\\x1b]52;c;ZXZpbA==\\x07", "show: OSC 52 is defused");
	free(s);
	s = utf8_show_str("x\ry\b\x7f");
	is_str(s, "x\\x0dy\\x08\\x7f", "show: CR, BS and DEL are visible");
	free(s);
	s = utf8_show_str("\xc2\x9b"
	                  "31m");
	is_str(s, "\\u009b31m", "show: C1 CSI as UTF-8 is visible");
	free(s);
	s = utf8_show_str("\xc2\x85");
	is_str(s, "\\u0085", "show: C1 NEL as UTF-8 is visible");
	free(s);
	s = utf8_show_str("\x9b"
	                  "31m");
	is_str(s, "\\x9b31m", "show: raw byte 0x9b is visible");
	free(s);
	s = utf8_show_str("caf\xe9");
	is_str(s, "caf\\xe9", "show: an invalid byte is shown as \\xNN");
	free(s);
	s = utf8_show_str("\xc2\xa0\xc2\xa9");
	is_str(s, "\xc2\xa0\xc2\xa9", "show: U+00A0 and U+00A9 stay");
	free(s);
	s = utf8_show_str("if \xe2\x80\xae"
	                  "x\xe2\x81\xa6y\xe2\x81\xa9");
	is_str(s, "if \\u202ex\\u2066y\\u2069", "show: bidi controls visible");
	free(s);
	s = utf8_show("a\nb\tc", 5, 0);
	is_str(s, "a\\x0ab\\x09c", "show: no flags, newline and tab escaped");
	free(s);
	s = utf8_show("\033\033\033", 3, 0);
	is_str(s, "\\x1b\\x1b\\x1b", "show: room for every escape");
	free(s);
	s = utf8_show("\xe2\x80\xae\xe2\x80\xae", 6, 0);
	is_str(s, "\\u202e\\u202e", "show: room for every \\u escape");
	free(s);
	s = utf8_show("\xc0\xaf", 2, 0);
	is_str(s, "\\xc0\\xaf", "show: an overlong is two escaped bytes");
	free(s);
}

int
main(void)
{
	test_seq();
	test_clean();
	test_cuts();
	test_show();
	return tap_done();
}
