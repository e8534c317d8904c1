/*
 * spec.h: suite specs (benchmarks/<suite>.json), the pre-registration of a gate.
 *
 * A spec fixes, before any result is seen, what runs and how it is judged:
 *
 *   {
 *     "format": 1,
 *     "suite": "demo",
 *     "alpha": 0.05,          one-sided, in (0, 0.5)
 *     "power": 0.8,           target power of each gate, in (0.5, 1)
 *     "bootstrap": 10000,     replicates for bootstrap intervals, [1000, 1000000]
 *     "seed": 1234,           seeds bootstrap streams, [0, 2^63-1]
 *     "tasks": [{
 *       "name": "toy",                          unique in the suite
 *       "task": "synthetic",                    a registered task
 *       "model": "models/toy",                  optional: model directory (repo-relative)
 *       "baseline": "baselines/demo.json",      optional: baseline file (repo-relative)
 *       "dataset": {"path": "datasets/synthetic/toy.jsonl", "sha256": "<64 hex>"},
 *       "params": {...},                        optional: the task's run params
 *       "strata": {"easy": 0.5, "hard": 0.5},   optional: registered stratum weights
 *       "clusters": false,                      optional: clustered SEs by item cluster
 *       "metrics": [{
 *         "metric": "synthetic.score@1",        name@definition version
 *         "kind": "continuous",                 continuous | binary | ratio
 *         "direction": "higher",                higher | lower (is better)
 *         "margin": 0.5,                        non-inferiority margin delta > 0
 *         "threshold": 1.0,                     optional: absolute bound on the mean
 *         "strata": {"hard": {"threshold": 0.5}}, optional: per-stratum bounds
 *         "combine": "all"                      with strata, required: all | pooled
 *       }],
 *       "phases": [{                            optional, read by `drift` only:
 *         "metric": "synthetic.score@1",        one of the entry's metrics, as listed
 *         "names": ["before", "after"],         >= 2 unique names: names - 1 boundaries
 *         "cost": "linear",                     optional: linear (default) | mean
 *         "min_segment": 3,                     optional: fewest checkpoints per phase,
 *                                               [1, 10000], default 3 (linear), 2 (mean)
 *         "windows": [[100, 400]]               optional: per boundary, null or the
 *       }]                                      [first, last] step (inclusive) where
 *     }]                                        the boundary must fall
 *   }
 *
 * Strata (the claim per stratum): every report shows each metric per
 * stratum of the dataset next to the pooled value. A metric may register a
 * threshold per stratum ("strata", keyed by the items' stratum label; with
 * registered weights the label must be one of them; the dataset must have
 * items in it, checked at run time) and how the strata combine: "all" (the
 * metric passes only when the pooled verdict and every stratum with a
 * threshold pass: threshold met at alpha and not REGRESSED against the
 * baseline) or "pooled" (the pooled verdict decides; a failing stratum is
 * still reported as failing). A stratum the dataset recipe marks
 * out-of-distribution (dataset.h, "ood") never enters the pooled value; its
 * registered threshold is its own expectation and combines like any other.
 *
 * Phases: over a checkpoint series, `drift` splits the metric's trajectory
 * into exactly len(names) phases, the exact least-squares segmentation with
 * that many segments (sequential.h, mb_stats_segment; x = the training step),
 * and reports each phase's steps. A boundary is the step of the first
 * checkpoint of the new phase; when its window is registered and the boundary
 * falls outside it, drift fails (exit 3). Windows must not overlap backwards:
 * each window may not end before the previous one begins.
 *
 * Paths are relative to the repository root (the spec's git work tree; the
 * current directory outside git). Every validation error is one line,
 * "file:line:col: field.path: message". The metric's kind and direction
 * must restate the task's definition when the versions agree; a version
 * that differs from this build's definition is not a parse error, it is
 * METRIC-CHANGED at gate time.
 */
#ifndef MECHBENCH_SPEC_H
#define MECHBENCH_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <mechbench/error.h>
#include <mechbench/sequential.h>
#include <mechbench/sha256.h>
#include <mechbench/task.h>

#define MB_SPEC_FORMAT 1

/* How a metric's per-stratum thresholds combine with its pooled verdict. */
typedef enum mb_spec_combine {
	MB_SPEC_COMBINE_NONE = 0, /* no per-stratum thresholds registered */
	MB_SPEC_COMBINE_ALL,      /* every stratum with a threshold must pass, and the pool */
	MB_SPEC_COMBINE_POOLED,   /* the pooled value decides; failing strata are reported */
} mb_spec_combine;

/* "all", "pooled" ("none" for NONE); parse returns -1 for anything else. */
const char *mb_spec_combine_name(mb_spec_combine c);
int mb_spec_combine_parse(const char *s, mb_spec_combine *out);

typedef struct mb_spec_stratum {
	char *name;       /* the items' stratum label, e.g. "len=25" */
	double threshold; /* bound on the stratum's mean, oriented like the metric's */
} mb_spec_stratum;

typedef struct mb_spec_metric {
	char *name;      /* "synthetic.score" */
	int version;     /* registered definition version */
	mb_metric_kind kind;
	mb_metric_direction direction;
	double margin;   /* delta > 0 */
	int has_threshold;
	double threshold; /* mean >= threshold (higher) or <= threshold (lower) */
	mb_spec_stratum *strata; /* (n_strata) per-stratum thresholds, in spec order */
	size_t n_strata;
	mb_spec_combine combine; /* NONE iff n_strata == 0 */
} mb_spec_metric;

typedef struct mb_spec_phases {
	char *metric;          /* the metric's name, e.g. "modadd.excluded_loss" */
	int version;
	char **names;          /* (n_phases) owned */
	size_t n_phases;       /* >= 2: n_phases - 1 boundaries */
	mb_stats_cost cost;
	size_t min_segment;    /* >= 1 */
	int *has_window;       /* (n_phases - 1) */
	int64_t (*windows)[2]; /* (n_phases - 1) [first, last] step, when has_window */
} mb_spec_phases;

typedef struct mb_spec_entry {
	char *name;
	const mb_task *task; /* from the registry */
	char *model;         /* NULL when absent */
	char *baseline;      /* NULL when absent */
	char *dataset;
	char dataset_sha256[MB_SHA256_HEX_LEN];
	json_t *params;      /* owned reference, NULL when absent */
	char **strata;       /* (n_strata) owned names, in the spec's order */
	double *weights;     /* (n_strata) */
	size_t n_strata;     /* 0: no registered weights */
	int clusters;        /* 1: clustered SEs by the items' cluster labels */
	mb_spec_metric *metrics;
	size_t n_metrics;
	mb_spec_phases *phases; /* (n_phases) pre-registered phases, for drift */
	size_t n_phases;
} mb_spec_entry;

typedef struct mb_spec {
	char *name;      /* owned: file path or label used in messages */
	char *suite;
	double alpha;
	double power;
	uint64_t bootstrap;
	uint64_t seed;
	mb_spec_entry *entries;
	size_t n_entries;
	json_t *root;    /* owned: the parsed document, for deviation reports */
} mb_spec;

/* Parses and validates a spec from len bytes (a file or a git blob); name
 * labels messages. Returns 0, MB_EINVALID (one line with file:line:col and
 * the field) or MB_ENOMEM. */
int mb_spec_parse(mb_spec *out, const char *text, size_t len, const char *name, mb_error *err);
/* Reads and parses the file at path. */
int mb_spec_load(mb_spec *out, const char *path, mb_error *err);
void mb_spec_dispose(mb_spec *s);

/* The entry called name, or NULL. */
const mb_spec_entry *mb_spec_find_entry(const mb_spec *s, const char *name);

/* Keeps only the entries named in names[0..n) (each once, in the spec's
 * order; a name given twice counts once) and frees the others: what `run
 * --entry` runs. A name that is no entry is MB_EINVALID naming it and the
 * spec's entries; s is unchanged then. */
int mb_spec_keep_entries(mb_spec *s, const char *const *names, size_t n, mb_error *err);

/* One difference between a registered spec and a working one. */
typedef struct mb_spec_deviation {
	char *path;   /* "tasks[toy].metrics[synthetic.score].margin" */
	char *before; /* compact JSON, or "(absent)" */
	char *after;
	char *entry;  /* the entry it touches, NULL when suite-wide */
	char *metric; /* the metric name it touches, NULL when entry- or suite-wide */
} mb_spec_deviation;

/* Lists how `working` deviates from `registered`: objects are compared key by
 * key, the tasks array by entry name, each metrics and phases array by metric
 * name (without the version), other arrays as wholes. *out (malloc'd, *n items,
 * free with mb_spec_deviations_free) is empty when the specs are equivalent. */
int mb_spec_diff(mb_spec_deviation **out, size_t *n, const mb_spec *registered,
		 const mb_spec *working, mb_error *err);
void mb_spec_deviations_free(mb_spec_deviation *d, size_t n);

/* 1 when deviation d touches metric `metric` of entry `entry` (suite-wide
 * and entry-wide deviations touch every metric below them). */
int mb_spec_deviation_touches(const mb_spec_deviation *d, const char *entry, const char *metric);

#endif
