/*
 * str.h: small string helpers shared by every layer (one home, instead of a
 * static copy per file): copies, XML and CSV escaping, UTC timestamps.
 */
#ifndef MECHBENCH_STR_H
#define MECHBENCH_STR_H

#include <stddef.h>
#include <stdio.h>
#include <time.h>

/* A malloc'd copy of s (caller frees); NULL when out of memory. s must not be
 * NULL. strdup is POSIX, not C11, hence this. */
char *mb_str_dup(const char *s);

/* The offset of the first control character (a byte below 0x20, or 0x7f) in
 * s, or -1 when there is none. Names that reach terminals, markdown and
 * JUnit (entries, metrics, series) must have none: a newline would forge a
 * CI log line. */
long mb_str_find_control(const char *s);

/* Writes s as XML 1.0 character data, safe inside an element and inside a
 * single- or double-quoted attribute (JUnit, SVG, HTML): & < > " ' become
 * &amp; &lt; &gt; &quot; &#39; (&#39; rather than &apos;, which HTML 4 lacks).
 * XML 1.0 allows no control character other than tab, newline and carriage
 * return, not even as a reference, so each other byte below 0x20 is written
 * as '?' (visible, and two names differing only there stay distinct in
 * length). Bytes >= 0x80 pass through (the text is UTF-8). NULL writes
 * nothing. */
void mb_str_put_xml(FILE *f, const char *s);

/* Writes s as one RFC 4180 CSV field: quoted, with '"' doubled, when it holds
 * a comma, a quote, a newline or a carriage return; as is otherwise. No
 * separator is written. */
void mb_str_put_csv(FILE *f, const char *s);

/* The length of "YYYY-MM-DDTHH:MM:SSZ" with its NUL. */
#define MB_STR_UTC_LEN 21

/* Writes t as ISO 8601 UTC, "2026-12-04T13:27:20Z", into buf (cap >=
 * MB_STR_UTC_LEN; asserted). The one format of every timestamp mechbench
 * stores or prints. */
void mb_str_utc(char *buf, size_t cap, time_t t);

#endif
