/*
 * parse.h: checked conversions of text to numbers (instead of atoi/atof).
 * Each rejects empty input, trailing garbage, overflow and NaN where noted,
 * and names the offending text and what it was for in err.
 */
#ifndef MECHBENCH_PARSE_H
#define MECHBENCH_PARSE_H

#include <stdint.h>

#include <mechbench/error.h>

/* Base-10 integer in [min, max]. `what` names the field ("--seed"). */
int mb_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out, const char *what,
		 mb_error *err);
/* Finite double. */
int mb_parse_f64(const char *s, double *out, const char *what, mb_error *err);
/* Comma-separated list of integers in [min, max] ("1,2,3"); *out is malloc'd. */
int mb_parse_i64_list(const char *s, int64_t min, int64_t max, int64_t **out, int *n,
		      const char *what, mb_error *err);

#endif
