/*
 * UTF-8, the one place both programs check, repair, cut and escape text.
 *
 * Every byte from a model, a repository or a client is hostile, and two
 * kinds of consumer choke on it: JSON (jansson refuses a string that is
 * not valid UTF-8, and a refused string silently empties the document it
 * was to go into) and a person's terminal (escape sequences hide, rewrite
 * or exfiltrate text).  So text going into JSON goes through
 * utf8_clean(), text cut to a size is cut with utf8_head()/utf8_tail(),
 * and text printed for a person goes through utf8_show().
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static const char utf8_repl[] = "\xef\xbf\xbd"; /* U+FFFD */

int
utf8_seq(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	unsigned c, lo = 0x80, hi = 0xbf;
	int len;

	if (n == 0)
		return 0;
	c = s[0];
	if (c < 0x80)
		return 1;
	/* c0 and c1 would only start overlong forms of ASCII. */
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0; /* overlong below U+0800 */
		else if (c == 0xed)
			hi = 0x9f; /* surrogates U+D800-U+DFFF */
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90; /* overlong below U+10000 */
		else if (c == 0xf4)
			hi = 0x8f; /* past U+10FFFF */
	} else
		return 0;
	for (int i = 1; i < len; i++) {
		if ((size_t)i >= n)
			return -1;
		if (s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xbf))
			return 0;
	}
	return len;
}

int
utf8_valid(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		int k = utf8_seq(s + i, n - i);

		if (k <= 0)
			return 0;
		i += (size_t)k;
	}
	return 1;
}

char *
utf8_clean(const char *s, size_t n, size_t max, int more, size_t *used,
    size_t *replaced)
{
	size_t in = 0, len = 0, bad = 0;
	char *out;

	out = xmalloc((n < max / 3 ? n * 3 : max) + 1);
	while (in < n) {
		int k = s[in] == '\0' ? 0 : utf8_seq(s + in, n - in);

		if (k == -1 && more)
			break;
		if (k <= 0) {
			if (len + 3 > max)
				break;
			memcpy(out + len, utf8_repl, 3);
			len += 3;
			in++;
			bad++;
			continue;
		}
		if (len + (size_t)k > max)
			break;
		memcpy(out + len, s + in, (size_t)k);
		len += (size_t)k;
		in += (size_t)k;
	}
	out[len] = '\0';
	if (used != NULL)
		*used = in;
	if (replaced != NULL)
		*replaced = bad;
	return out;
}

char *
utf8_fix(const char *s, size_t *replaced)
{
	return utf8_clean(s, strlen(s), SIZE_MAX, 0, NULL, replaced);
}

/*
 * A continuation byte: a cut just before one splits a character.  Only
 * the shape is looked at, so a cut of invalid text moves at most 3 bytes.
 */
static int
utf8_cont(const char *s, size_t i)
{
	return ((unsigned char)s[i] & 0xc0) == 0x80;
}

size_t
utf8_head(const char *s, size_t n, size_t max)
{
	size_t end, i;
	int k;

	if (n <= max)
		return n;
	end = max;
	for (i = 0; i < 3 && end > 0 && utf8_cont(s, end); i++)
		end--;
	if (end == max)
		return max;
	/*
	 * Back up only over a character that the cut really splits: a
	 * stray continuation byte is a character of its own (it will be
	 * replaced or escaped alone).
	 */
	k = utf8_seq(s + end, n - end);
	if (k == 0 || (k > 0 && (size_t)k <= max - end))
		return max;
	return end;
}

size_t
utf8_tail(const char *s, size_t n, size_t max)
{
	size_t start, i;

	if (n <= max)
		return 0;
	start = n - max;
	for (i = 0; i < 3 && start < n && utf8_cont(s, start); i++)
		start++;
	return start;
}

/*
 * What a person's terminal must not be sent raw: C0 controls but newline
 * and tab, DEL, ESC and the C1 controls, whether as UTF-8 (U+0080-U+009F)
 * or as raw bytes 0x80-0x9f, which some terminals take for C1 (0x9b is
 * CSI).  Also the Unicode bidirectional overrides and isolates
 * (U+202A-U+202E, U+2066-U+2069): they make a terminal show text in an
 * order other than the bytes', the "Trojan Source" trick, so a plan or a
 * diff could read differently from what will run.
 */
static int
utf8_bidi(uint32_t cp)
{
	return (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

static uint32_t
utf8_decode(const unsigned char *s, int k)
{
	static const unsigned char mask[] = {0, 0x7f, 0x1f, 0x0f, 0x07};
	uint32_t cp = s[0] & mask[k];

	for (int i = 1; i < k; i++)
		cp = (cp << 6) | (s[i] & 0x3f);
	return cp;
}

char *
utf8_show(const char *str, size_t n, int flags)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t len = 0;
	char *out;

	/* At most 6 bytes ("\u202e") for each input byte. */
	out = xmalloc(n * 6 + 1);
	for (size_t i = 0; i < n;) {
		int k = utf8_seq(str + i, n - i);
		uint32_t cp;

		if (k <= 0) {
			len += (size_t)snprintf(out + len, 5, "\\x%02x", s[i]);
			i++;
			continue;
		}
		cp = utf8_decode(s + i, k);
		if ((cp == '\n' && (flags & UTF8_SHOW_NL)) ||
		    (cp == '\t' && (flags & UTF8_SHOW_TAB)))
			out[len++] = (char)cp;
		else if (cp < 0x20 || cp == 0x7f)
			len += (size_t)snprintf(out + len, 5, "\\x%02x", cp);
		else if ((cp >= 0x80 && cp <= 0x9f) || utf8_bidi(cp))
			len += (size_t)snprintf(out + len, 7, "\\u%04x", cp);
		else {
			memcpy(out + len, s + i, (size_t)k);
			len += (size_t)k;
		}
		i += (size_t)k;
	}
	out[len] = '\0';
	return out;
}

char *
utf8_show_str(const char *s)
{
	return utf8_show(s, strlen(s), UTF8_SHOW_NL | UTF8_SHOW_TAB);
}
