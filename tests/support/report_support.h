/*
 * report_support.h: fixtures for the drift, leaderboard and report tests: a
 * synthetic checkpoint series with a planted change, a suite on disk, JSON
 * read back from a file.
 */
#ifndef MB_TEST_REPORT_SUPPORT_H
#define MB_TEST_REPORT_SUPPORT_H

#include <jansson.h>

/* Writes K checkpoint folders dir/rel/step_NNNNNN (step = k * every), each a
 * synthetic model with w_j = (-1)^j s_k (1 + wiggle sin(1.7 k + j)), b = 0,
 * where s_k = before for k < jump and after from checkpoint jump on (the
 * planted change: the mean score scales with s). with_state writes each
 * one's training_state.json {"step": step}. */
void mbt_series(const char *dir, const char *rel, int K, int every, int jump, double before,
		double after, double wiggle, int with_state);

/* mbt_suite_fixture (harness_support.h) with n_per_stratum items per
 * stratum and every synthetic metric, its spec written to dir/demo.json. */
void mbt_demo_suite(const char *dir, int n_per_stratum);

/* Parses dir/rel as JSON (the test fails when it is not). */
json_t *mbt_json_file(const char *dir, const char *rel);

/* Number of non-overlapping occurrences of needle in hay. */
size_t mbt_count(const char *hay, const char *needle);

#endif
