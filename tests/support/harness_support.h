/*
 * harness_support.h: helpers for the harness, store and CLI tests: temporary
 * folders, files, a synthetic model and dataset, and running the mechbench
 * binary (MB_CLI_PATH) with its output captured.
 */
#ifndef MB_TEST_HARNESS_SUPPORT_H
#define MB_TEST_HARNESS_SUPPORT_H

#include <stddef.h>

#include "cli_run.h"

/* Makes a fresh folder under /tmp into buf (cap bytes); aborts the test
 * process on failure. */
void mbt_tmpdir(char *buf, size_t cap);
/* Removes a folder tree (rm -rf); used to clean up after a test. */
void mbt_rmtree(const char *dir);
/* Writes text to dir/rel, creating its parent folders. */
void mbt_write(const char *dir, const char *rel, const char *text);
/* Reads dir/rel into a malloc'd NUL-terminated string (NULL if absent). */
char *mbt_read(const char *dir, const char *rel);

/* Writes a synthetic model folder dir/rel holding synthetic.json with
 * weights w[0..dim) and bias b. */
void mbt_synthetic_model(const char *dir, const char *rel, const double *w, int dim, double b);
/* The "true" synthetic model: w_j = (-1)^j, b = 0, dim 8. */
void mbt_true_model(const char *dir, const char *rel);

/* mbt_sh, mbt_sh_ok and mbt_cli_run (running commands and the mechbench
 * binary) live in cli_run.h, included here. */

#endif

/* A suite fixture on disk: dir/datasets/toy.jsonl (synthetic, seed 7,
 * n_per_stratum per stratum), dir/models/true (the true model) and the text
 * of a spec with one entry "toy" whose metrics block is `metrics` (JSON array
 * text) and whose extra entry fields are `extra` (e.g. "\"clusters\": true,"
 * or ""). *spec_text is malloc'd. */
void mbt_suite_fixture(const char *dir, int n_per_stratum, const char *extra,
		       const char *metrics, char **spec_text);
/* The run of that fixture (20 items per stratum, MBT_METRICS_ALL) on the true
 * model, as `run` would make it: one entry "toy", provenance of this build
 * with suite "demo" and spec path benchmarks/demo.json. Aborts on failure. */
struct mb_run_result;
void mbt_run_fixture(struct mb_run_result *run, const char *dir);

#define MBT_METRICS_ALL                                                                       \
	"[{\"metric\": \"synthetic.score@1\", \"kind\": \"continuous\", \"direction\": "       \
	"\"higher\", \"margin\": 1.0, \"threshold\": 1.0},"                                    \
	" {\"metric\": \"synthetic.correct@1\", \"kind\": \"binary\", \"direction\": "         \
	"\"higher\", \"margin\": 0.15},"                                                       \
	" {\"metric\": \"synthetic.loss@1\", \"kind\": \"ratio\", \"direction\": \"lower\", "  \
	"\"margin\": 0.25}]"
