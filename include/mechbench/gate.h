/*
 * gate.h: judging a candidate run against a baseline under a registered spec.
 *
 * The gate is pure logic over things already loaded (the CLI reads the spec
 * and baseline at the git ref, runs the candidate, and calls these in order):
 *
 *   mb_gate_init            one row per (entry, metric) of the registered spec
 *   mb_gate_set_deviations  the working spec's deviations -> THRESHOLD-CHANGED
 *   mb_gate_plan_entry      per entry, before running: metric versions
 *                           (METRIC-CHANGED), provenance notes, item sets
 *                           (mismatch is an error), and the planned MDE
 *   mb_gate_check_power     refuses a gate whose planned MDE exceeds its margin
 *   mb_gate_compare_entry   per entry, after running: paired verdicts
 *                           (mb_stats_compare) and absolute thresholds,
 *                           pooled over the in-distribution items and per
 *                           stratum; and the entry's artifact (artifact.h:
 *                           a discovered circuit) against the baseline's
 *   mb_gate_finish          row statuses, the outcome and the exit code
 *
 * Planned MDE: before running, the variance of a paired difference is not
 * known. We plan with var_d = the baseline's per-item variance (what the
 * difference variance is when candidate and baseline values correlate at 0.5;
 * model revisions usually correlate more, so this errs towards refusing) and
 * the baseline's design effect, at one-sided alpha and power 1 - beta/m for m
 * gated metrics (HARNESS.md: each gate of an intersection-union test is sized
 * so the suite's chance of missing a real regression stays <= beta). For a
 * binary metric var_d is at least the margin (an effect of delta needs a
 * delta fraction of discordant items, and var_d ~ p_disc). After running,
 * the observed MDE (from the real differences) is reported too.
 *
 * Artifacts are reported, never gated: a changed circuit (nodes or edges
 * added or removed) is listed with the inclusion frequencies of the changed
 * nodes, the node Jaccard of the two circuits and the stability interval
 * that says whether resampling alone moves the circuit that much
 * (mb_artifact_noise), and leaves the exit code alone. What a circuit is
 * claimed to do (faithfulness, completeness, the random-circuit control) is
 * per-item metrics, gated like any other (HARNESS.md, "Artifacts").
 */
#ifndef MECHBENCH_GATE_H
#define MECHBENCH_GATE_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/artifact.h>
#include <mechbench/error.h>
#include <mechbench/paired.h>
#include <mechbench/runner.h>
#include <mechbench/spec.h>
#include <mechbench/verdict.h>

typedef enum mb_gate_status {
	MB_GATE_IDENTICAL = 0,
	MB_GATE_IMPROVED,
	MB_GATE_PASS,
	MB_GATE_INCONCLUSIVE,
	MB_GATE_REGRESSED,
	MB_GATE_THRESHOLD_FAILED,  /* the absolute threshold is not met at alpha */
	MB_GATE_THRESHOLD_CHANGED, /* the working spec deviates from the registered one */
	MB_GATE_METRIC_CHANGED,    /* definition versions differ: no number is given */
} mb_gate_status;

/* "IDENTICAL", "IMPROVED", "PASS", "INCONCLUSIVE", "REGRESSED",
 * "THRESHOLD-FAILED", "THRESHOLD-CHANGED", "METRIC-CHANGED". */
const char *mb_gate_status_name(mb_gate_status s);

/* What INCONCLUSIVE and THRESHOLD-/METRIC-CHANGED do to the exit code. */
typedef enum mb_gate_policy {
	MB_GATE_POLICY_EXIT4 = 0, /* exit 4 (the default) */
	MB_GATE_POLICY_PASS,      /* exit 0 */
	MB_GATE_POLICY_FAIL,      /* exit 3 */
} mb_gate_policy;

/* One stratum of a row: the same comparison and threshold test as the pooled
 * row, over the stratum's items alone (mb_stats_compare's policy without
 * registered weights; clusters within the stratum when the entry clusters). */
typedef struct mb_gate_stratum {
	char *name;
	int ood;              /* out of distribution per the dataset recipe: not pooled */
	int has_threshold;    /* registered for this stratum (spec "strata") */
	double threshold;
	size_t n;             /* items in the stratum */
	double mde_planned;   /* for the smallest thresholded stratum; NaN otherwise */
	int compared;
	mb_stats_comparison cmp;
	int threshold_checked;
	mb_stats_verdict threshold_verdict;
	mb_stats_estimate cand; /* the candidate's stratum mean at level 1 - 2 alpha */
	mb_gate_status status;  /* set by mb_gate_finish when compared */
} mb_gate_stratum;

typedef struct mb_gate_row {
	char *entry;
	char *metric;
	int version;          /* registered definition version */
	int build_version;    /* this build's definition version */
	int baseline_version; /* in the baseline; 0 when the baseline lacks the metric */
	mb_metric_kind kind;
	mb_metric_direction direction;
	double margin;
	int has_threshold;
	double threshold;
	int spec_changed;     /* a deviation of the working spec touches this row */
	int metric_changed;   /* versions differ: no comparison is made */
	size_t n;             /* paired items */
	double mde_planned;   /* before running; NaN when not computed */
	double power_target;  /* 1 - beta/m */
	int compared;         /* cmp is filled */
	mb_stats_comparison cmp;
	double mde_observed;  /* from the observed differences; NaN when not computed */
	int threshold_checked;
	mb_stats_verdict threshold_verdict; /* PASS, INCONCLUSIVE or REGRESSED */
	mb_stats_estimate cand;             /* candidate mean at level 1 - 2 alpha */
	mb_gate_status status;              /* final, set by mb_gate_finish */
	char note[512];                     /* why, in a few words ("" when nothing to say) */
	mb_spec_combine combine;            /* how thresholded strata combine (spec.h) */
	mb_gate_stratum *strata;            /* (n_strata) every stratum of the dataset */
	size_t n_strata;
	size_t n_ood;                       /* items left out of the pool (OOD strata) */
	long power_stratum;                 /* the smallest thresholded stratum, or -1 */
	mb_gate_status pooled_status;       /* the pooled verdict alone */
	size_t strata_failed;               /* thresholded strata not PASS/IMPROVED/IDENTICAL */
} mb_gate_row;

typedef struct mb_gate_result {
	char suite[128];
	char spec_path[512];   /* repo-relative */
	char ref[256];         /* the baseline ref as given */
	char commit[41];       /* what it resolved to */
	char spec_blob[41];    /* the registered spec's blob id at the commit */
	double alpha;
	double power;
	double level;          /* 1 - 2 alpha: the intervals' two-sided coverage */
	mb_spec_deviation *deviations;
	size_t n_deviations;
	char **notes;          /* provenance mismatches and remarks, one line each */
	size_t n_notes;
	mb_gate_row *rows;
	size_t n_rows;
	mb_artifact_diff *artifacts; /* (n_artifacts) entries where either run has an
				      * artifact, in spec order: reported, not gating */
	size_t n_artifacts;
	int64_t run_id;        /* the candidate run in the store, 0 when not stored */
	mb_gate_status outcome;
	int exit_code;         /* 0, 3 or 4 per the policies */
} mb_gate_result;

/* Starts a gate result with one row per (entry, metric) of the registered
 * spec, in spec order. ref/commit/spec_path/spec_blob are copied. */
int mb_gate_init(mb_gate_result *g, const mb_spec *registered, const char *spec_path,
		 const char *ref, const char *commit, const char *spec_blob, mb_error *err);
void mb_gate_dispose(mb_gate_result *g);

/* Takes ownership of the deviations (from mb_spec_diff) and marks the rows
 * they touch. */
void mb_gate_set_deviations(mb_gate_result *g, mb_spec_deviation *d, size_t n);

/* Adds a one-line note to the report. */
int mb_gate_note(mb_gate_result *g, mb_error *err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Before running entry e: compares metric versions (registered, this build,
 * baseline), notes provenance mismatches (dataset sha256, task version,
 * baseline's spec blob), checks that the baseline's items are exactly the
 * dataset's (MB_EMISMATCH naming counts and example keys otherwise) and
 * computes each row's planned MDE from the baseline's values. */
int mb_gate_plan_entry(mb_gate_result *g, const mb_spec *spec, const mb_spec_entry *e,
		       const mb_entry_result *base, const mb_dataset *d, mb_error *err);

/* The variance of a paired difference the gate plans metric m of base with
 * (see the top of this file): the baseline's per-item sample variance, and
 * for a binary metric at least margin. base must have >= 2 items. */
double mb_gate_planning_var(const mb_entry_result *base, size_t m, double margin);

/* MB_EINVALID when a row's planned MDE exceeds its margin, or, for a row
 * whose strata combine "all", when the planned MDE of its smallest stratum
 * with a registered threshold does (that stratum's n and baseline variance);
 * the message names each such metric (and stratum) with its MDE, margin, n
 * and the n it would need. */
int mb_gate_check_power(const mb_gate_result *g, mb_error *err);

/* After running entry e: pairs candidate and baseline items by key and fills
 * each row's comparison, observed MDE and threshold verdict; when either has
 * an artifact, appends their comparison to g->artifacts. */
int mb_gate_compare_entry(mb_gate_result *g, const mb_spec *spec, const mb_spec_entry *e,
			  const mb_entry_result *base, const mb_entry_result *cand, mb_error *err);

/* Sets every row's status, the outcome (the worst status) and the exit code:
 * 3 when a metric REGRESSED or failed its threshold; else 4 (or per policy)
 * for INCONCLUSIVE, THRESHOLD-CHANGED or METRIC-CHANGED; else 0. Strata:
 * each stratum gets its own status (comparison, then its threshold); under
 * combine "all" a row's status is the worst of its pooled status and those
 * of its thresholded strata; under "pooled" it is the pooled status and a
 * failing thresholded stratum is named in the row's note. */
void mb_gate_finish(mb_gate_result *g, mb_gate_policy on_inconclusive,
		    mb_gate_policy on_changed);

#endif
