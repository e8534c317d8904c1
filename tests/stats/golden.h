/*
 * golden.h: reading the golden fixtures of tests/fixtures/stats/ (made by
 * gen_fixtures.py with scipy/statsmodels) and comparing with explicit relative
 * tolerances, printing the largest difference seen. Header-only: each test
 * executable includes it once.
 */
#ifndef MB_TESTS_STATS_GOLDEN_H
#define MB_TESTS_STATS_GOLDEN_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline json_t *golden_load(const char *name)
{
	char path[1024];
	json_error_t jerr;
	json_t *root;

	snprintf(path, sizeof(path), "%s/tests/fixtures/stats/%s", MB_SOURCE_DIR, name);
	root = json_load_file(path, JSON_DECODE_INT_AS_REAL, &jerr);
	cr_assert(root != NULL, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
	return root;
}

static inline double golden_num(json_t *v)
{
	cr_assert(json_is_number(v), "fixture value is not a number");
	return json_number_value(v);
}

static inline double golden_at(json_t *arr, size_t i)
{
	return golden_num(json_array_get(arr, i));
}

static inline double golden_field(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	cr_assert(v != NULL, "fixture has no field '%s'", key);
	return golden_num(v);
}

/* A malloc'd copy of a JSON array of numbers; *n gets its length. */
static inline double *golden_vec(json_t *obj, const char *key, size_t *n)
{
	json_t *arr = json_object_get(obj, key);
	double *v;

	cr_assert(json_is_array(arr), "fixture has no array '%s'", key);
	*n = json_array_size(arr);
	v = malloc((*n ? *n : 1) * sizeof(*v));
	cr_assert(v != NULL);
	for (size_t i = 0; i < *n; i++)
		v[i] = golden_at(arr, i);
	return v;
}

static inline uint32_t *golden_ids(json_t *obj, const char *key, size_t *n)
{
	json_t *arr = json_object_get(obj, key);
	uint32_t *v;

	cr_assert(json_is_array(arr), "fixture has no array '%s'", key);
	*n = json_array_size(arr);
	v = malloc((*n ? *n : 1) * sizeof(*v));
	cr_assert(v != NULL);
	for (size_t i = 0; i < *n; i++)
		v[i] = (uint32_t)golden_at(arr, i);
	return v;
}

/* Tracks the worst relative difference |got - want| / |want| over a table
 * (absolute when want == 0) and reports it. */
typedef struct golden_diff {
	const char *what;
	double tol;
	double max_rel;
	double at_want, at_got;
	int failures;
} golden_diff;

static inline void golden_check(golden_diff *g, double got, double want, const char *label)
{
	double rel = want != 0.0 ? fabs(got - want) / fabs(want) : fabs(got - want);

	if (!(rel <= g->max_rel) || isnan(got)) {
		g->max_rel = isnan(got) ? INFINITY : rel;
		g->at_want = want;
		g->at_got = got;
	}
	if (!(rel <= g->tol)) {
		g->failures++;
		cr_log_error("%s: %s: got %.17g, want %.17g (rel diff %.3g > %.1g)", g->what, label,
			     got, want, rel, g->tol);
	}
}

static inline void golden_report(const golden_diff *g)
{
	cr_log_info("%s: max rel diff %.3g (tolerance %.1g; got %.17g want %.17g)", g->what,
		    g->max_rel, g->tol, g->at_got, g->at_want);
	fprintf(stderr, "%s: max rel diff %.3g (tolerance %.1g)\n", g->what, g->max_rel, g->tol);
	cr_expect_eq(g->failures, 0, "%s: %d value(s) outside tolerance %.1g", g->what,
		     g->failures, g->tol);
}

#endif
