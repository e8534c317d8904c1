/*
 * harness_support.h: helpers for the harness, store and CLI tests: temporary
 * folders, files, a synthetic model and dataset, and running the mechbench
 * binary (MB_CLI_PATH) with its output captured.
 */
#ifndef MB_TEST_HARNESS_SUPPORT_H
#define MB_TEST_HARNESS_SUPPORT_H

#include <stddef.h>

#include <mechbench/dataset.h>
#include <mechbench/runner.h>
#include <mechbench/spec.h>

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
/* Parses JSON text (the test fails, with jansson's message, if it does not
 * parse); the caller owns the reference. */
json_t *mbt_json(const char *text);

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
/* Writes dir/to: the spec dir/from with a second entry, a copy of its first
 * one named `name` (what `--entry` tests choose between). Aborts on failure. */
void mbt_suite_add_entry(const char *dir, const char *from, const char *to, const char *name);
/* One entry on disk and in memory: mbt_suite_fixture's files (MBT_METRICS_ALL)
 * in a fresh folder, the spec parsed, and (mbt_entry_setup) the dataset
 * loaded; mbt_entry_spec leaves d zeroed. Abort on failure. */
typedef struct mbt_entry_fixture {
	char dir[256];
	mb_spec spec;
	mb_dataset d;
} mbt_entry_fixture;
void mbt_entry_spec(mbt_entry_fixture *f, int n_per_stratum, const char *extra);
void mbt_entry_setup(mbt_entry_fixture *f, int n_per_stratum, const char *extra);
void mbt_entry_teardown(mbt_entry_fixture *f);
/* Runs the entry on f->dir/models/true with `threads` threads into *out
 * (model label "models/true"). Aborts on failure. */
void mbt_entry_run(mbt_entry_fixture *f, mb_entry_result *out, int threads);

/* A throw-away git repository for gate tests in a fresh folder (dir, cap
 * bytes): datasets/synthetic/toy.jsonl built from datasets/MANIFEST
 * (synthetic, seed 7, 100 per stratum), benchmarks/demo.json (suite demo,
 * entry "toy" on models/true with baseline baselines/demo.json, registered
 * strata easy/hard 0.5, the three synthetic metrics, score with threshold
 * 1.0), `entry_extra` inserted verbatim after the entry's dataset line (""
 * or lines of further entry fields, each ending in ",\n"), the true model and
 * models/perturbed (two weights flipped), committed on main; then a run into
 * run.db saved as baselines/demo.json, committed. Aborts on failure. */
void mbt_gate_repo(char *dir, size_t cap, const char *entry_extra);

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
