/* parse.c: checked text-to-number conversions. */
#include <mechbench/parse.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int mb_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out, const char *what,
		 mb_error *err)
{
	char *end = NULL;
	long long v;

	if (!s || !*s)
		return mb_error_set(err, MB_EINVALID, "%s: expected an integer, got nothing", what);
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno == ERANGE || end == s || *end != '\0')
		return mb_error_set(err, MB_EINVALID, "%s: '%s' is not an integer", what, s);
	if (v < min || v > max)
		return mb_error_set(err, MB_EINVALID, "%s: %lld is out of range [%lld, %lld]", what,
				    v, (long long)min, (long long)max);
	*out = (int64_t)v;
	return 0;
}

int mb_parse_f64(const char *s, double *out, const char *what, mb_error *err)
{
	char *end = NULL;
	double v;

	if (!s || !*s)
		return mb_error_set(err, MB_EINVALID, "%s: expected a number, got nothing", what);
	errno = 0;
	v = strtod(s, &end);
	if (errno == ERANGE || end == s || *end != '\0' || !isfinite(v))
		return mb_error_set(err, MB_EINVALID, "%s: '%s' is not a finite number", what, s);
	*out = v;
	return 0;
}

int mb_parse_i64_list(const char *s, int64_t min, int64_t max, int64_t **out, int *n,
		      const char *what, mb_error *err)
{
	int cap = 16, count = 0;
	int64_t *vals = malloc((size_t)cap * sizeof(*vals));
	const char *p = s;

	if (!vals)
		return mb_error_oom(err, what, (size_t)cap * sizeof(*vals));
	if (!s || !*s) {
		free(vals);
		return mb_error_set(err, MB_EINVALID, "%s: empty list", what);
	}
	while (*p) {
		char item[64];
		size_t len = strcspn(p, ",");
		if (len == 0 || len >= sizeof(item)) {
			free(vals);
			return mb_error_set(err, MB_EINVALID, "%s: bad item %d in '%s'", what,
					    count, s);
		}
		memcpy(item, p, len);
		item[len] = '\0';
		if (count == cap) {
			int64_t *nv = realloc(vals, (size_t)cap * 2 * sizeof(*vals));
			if (!nv) {
				free(vals);
				return mb_error_oom(err, what, (size_t)cap * 2 * sizeof(*vals));
			}
			vals = nv;
			cap *= 2;
		}
		if (mb_parse_i64(item, min, max, &vals[count], what, err) < 0) {
			free(vals);
			return MB_EINVALID;
		}
		count++;
		p += len;
		if (*p == ',') {
			p++;
			if (!*p) {
				free(vals);
				return mb_error_set(err, MB_EINVALID, "%s: trailing comma in '%s'",
						    what, s);
			}
		}
	}
	*out = vals;
	*n = count;
	return 0;
}
