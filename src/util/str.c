/*
 * str.c: small string helpers (str.h).
 */
#include <stdlib.h>
#include <string.h>

#include <mechbench/str.h>

char *mb_str_dup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = malloc(n);

	if (p)
		memcpy(p, s, n);
	return p;
}
