/* The string helpers every layer shares (str.h): XML escaping, CSV quoting,
 * UTC timestamps. Expected outputs are written out by hand from XML 1.0
 * (section 2.2 Char, 2.4 character data), RFC 4180 (section 2) and the
 * proleptic Gregorian calendar (checked with Python's datetime); the XML
 * output is also parsed by xmllint, an independent parser. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/str.h>

#include "support/cli_run.h"

typedef void (*put_fn)(FILE *f, const char *s);

/* What put(f, in) writes, in buf. */
static void written(char *buf, size_t cap, put_fn put, const char *in)
{
	FILE *f;

	memset(buf, 0, cap);
	f = fmemopen(buf, cap, "w");
	cr_assert(f);
	put(f, in);
	fclose(f);
}

typedef struct str_case {
	const char *in, *want;
} str_case;

Test(str, xml_escapes_markup_and_replaces_forbidden_control_characters)
{
	static const str_case cases[] = {
		{"plain name", "plain name"},
		{"a & b", "a &amp; b"},
		{"<tag>", "&lt;tag&gt;"},
		{"say \"hi\" 'x'", "say &quot;hi&quot; &#39;x&#39;"},
		{"tab\there\nnl\rcr", "tab\there\nnl\rcr"}, /* the three allowed controls */
		{"nul:\x01\x08\x0b\x0c\x1f.", "nul:?????."}, /* every other one is a ? */
		{"caf\xc3\xa9 \xe2\x80\x93", "caf\xc3\xa9 \xe2\x80\x93"}, /* UTF-8 passes */
		{"", ""},
	};
	char buf[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		written(buf, sizeof(buf), mb_str_put_xml, cases[i].in);
		cr_expect_str_eq(buf, cases[i].want, "case %zu", i);
	}
	written(buf, sizeof(buf), mb_str_put_xml, NULL);
	cr_expect_str_eq(buf, "");
}

/* Every ASCII byte escaped into an attribute and into text: a conforming
 * parser accepts the document. */
Test(str, xml_output_of_every_ascii_byte_is_well_formed)
{
	char in[128], path[] = "/tmp/mb_str_xml_XXXXXX", cmd[256];
	int fd, rc;
	FILE *f;

	MBT_NEED_TOOL("xmllint", "the XML escaping cannot be parsed (Debian package "
				 "'libxml2-utils')");
	for (int c = 1; c < 128; c++)
		in[c - 1] = (char)c;
	in[127] = '\0';
	fd = mkstemp(path);
	cr_assert(fd >= 0);
	f = fdopen(fd, "w");
	fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<r a=\"", f);
	mb_str_put_xml(f, in);
	fputs("\" b='", f);
	mb_str_put_xml(f, in);
	fputs("'>", f);
	mb_str_put_xml(f, in);
	fputs("</r>\n", f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "xmllint --noout %s 2>&1", path);
	rc = system(cmd);
	remove(path);
	cr_expect_eq(rc, 0, "xmllint rejected the escaped bytes 1..127");
}

Test(str, csv_quotes_only_fields_that_need_it_and_doubles_quotes)
{
	static const str_case cases[] = {
		{"plain", "plain"},
		{"", ""},
		{"a,b", "\"a,b\""},
		{"say \"hi\"", "\"say \"\"hi\"\"\""},
		{"line\nbreak", "\"line\nbreak\""},
		{"cr\rhere", "\"cr\rhere\""},
		{"semi;colon 'q'", "semi;colon 'q'"},
	};
	char buf[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		written(buf, sizeof(buf), mb_str_put_csv, cases[i].in);
		cr_expect_str_eq(buf, cases[i].want, "case %zu", i);
	}
}

Test(str, utc_timestamps_are_iso_8601_with_z)
{
	static const struct {
		time_t t;
		const char *want;
	} cases[] = {
		{0, "1970-01-01T00:00:00Z"},
		{951782400, "2000-02-29T00:00:00Z"}, /* a leap day of a century leap year */
		{2147483647, "2038-01-19T03:14:07Z"}, /* past 32-bit time_t */
		{4102444800, "2100-01-01T00:00:00Z"},
	};
	char buf[MB_STR_UTC_LEN];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(buf, 'x', sizeof(buf));
		mb_str_utc(buf, sizeof(buf), cases[i].t);
		cr_expect_str_eq(buf, cases[i].want, "case %zu", i);
	}
	cr_expect_eq(strlen(cases[0].want) + 1, MB_STR_UTC_LEN);
}
