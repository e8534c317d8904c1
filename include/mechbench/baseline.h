/*
 * baseline.h: baseline files, the committed reference results a gate compares
 * against (baselines/<suite>.json). A baseline is a run result written out:
 * per-item values keyed by item content hash, aggregates, and the run's full
 * provenance. `mechbench baseline save` writes one from a stored run; a
 * person reviews it and commits it; `gate` reads it at a git ref.
 *
 * Format 1 (keys in this order; items one per line, so diffs stay readable):
 *   {
 *     "mechbench_baseline": 1,
 *     "suite": "demo",
 *     "run_id": 3,                        the store's id of the source run (0 if none)
 *     "provenance": {                     see MB_PROVENANCE_FIELDS in provenance.h
 *       "suite", "spec_path", "spec_blob", "spec_committed", "repo_head", "repo_dirty",
 *       "code_version", "code_commit", "code_dirty", "seed", "threads", "cpu",
 *       "blas_config", "blas_core", "blas_threads", "compiler", "cflags",
 *       "build_type", "started_at", "finished_at", "wall_seconds"
 *     },
 *     "entries": [{
 *       "name": "toy", "task": "synthetic", "task_version": 1,
 *       "model": "models/toy",
 *       "model_files": [{"path": "synthetic.json", "sha256": "<hex>", "bytes": 123}],
 *       "dataset": "datasets/synthetic/toy.jsonl", "dataset_sha256": "<hex>",
 *       "params": null or {...},
 *       "seconds": 0.01,
 *       "artifact": {"kind": "circuit", ...},   only when the entry has one
 *                                               (artifact.h: the task's prepare)
 *       "metrics": [{"name": "synthetic.score", "version": 1, "kind": "continuous",
 *                    "direction": "higher",
 *                    "aggregate": {"n": 200, "mean": 1.2, "se": 0.1, "level": 0.95,
 *                                  "lo": 1.0, "hi": 1.4, "method": "paired-t"}}],
 *       "items": [
 *         {"key": "<sha256>", "stratum": "easy", "cluster": "easy/c0", "values": [1.5, 1.0, 0.2]}
 *       ]
 *     }]
 *   }
 * "values" follow the order of "metrics"; reals carry 17 significant digits,
 * so every double reads back bit for bit.
 */
#ifndef MECHBENCH_BASELINE_H
#define MECHBENCH_BASELINE_H

#include <stddef.h>

#include <mechbench/error.h>
#include <mechbench/runner.h>

#define MB_BASELINE_FORMAT 1

/* Renders run (all entries, or only the one called `entry` when not NULL)
 * as a baseline file. *out is malloc'd (caller frees). MB_ENOTFOUND when
 * entry names no entry of the run. */
int mb_baseline_render(char **out, size_t *len, const mb_run_result *run, const char *entry,
		       mb_error *err);

/* Parses a baseline file's text into *out (disposed with
 * mb_run_result_dispose); name labels messages ("REF:baselines/x.json:12:5:
 * entries[0].items[3].values: ..."). Checks the format, types, that every
 * item has one finite value per metric, that item keys are unique and that
 * an entry's artifact is valid (mb_artifact_check). */
int mb_baseline_parse(mb_run_result *out, const char *text, size_t len, const char *name,
		      mb_error *err);

/* mb_baseline_parse of the file at path (messages name the path). */
int mb_baseline_load(mb_run_result *out, const char *path, mb_error *err);

#endif
