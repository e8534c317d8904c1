/*
 * drift.h: metrics across an ordered series of checkpoints (HARNESS.md,
 * "Checkpoint series"): where each metric's trajectory changes, which
 * checkpoints left the band the suite spec registered, and an always-valid
 * monitor for checkpoints that arrive one at a time.
 *
 * For each (entry, metric) of the spec, with checkpoint 0 the reference:
 *
 *   Changepoints  PELT on the trajectory of checkpoint means (sequential.h:
 *                 Gaussian change-in-mean cost, default penalty 2 sigma^2 ln K
 *                 with sigma from the first differences, minimum segment 2).
 *                 Retrospective: recomputed on the whole series each time.
 *                 The changepoint with the largest jump between the means of
 *                 its two segments is the series' main change (a phase
 *                 change: grokking, induction heads forming).
 *
 *   Band          each checkpoint k >= 1 is compared with the reference
 *                 exactly as `gate` compares a candidate with a baseline
 *                 (gate.h: items paired by key, the spec's kind, direction,
 *                 design and margin delta, one-sided alpha): it LEFT its band
 *                 when the (1 - 2 alpha) interval of the oriented difference
 *                 lies wholly outside [-delta, delta] (REGRESSED: worse;
 *                 IMPROVED: better), and it is flagged under its threshold
 *                 when the threshold test finds the threshold violated
 *                 (verdict.h). Each flag is a test at level alpha for that
 *                 checkpoint; the series-wide error control under repeated
 *                 looks is the monitor's.
 *
 *   Phases        for each phases declaration of the spec (spec.h): the
 *                 metric's trajectory split into exactly len(names) phases
 *                 by the exact least-squares segmentation with that many
 *                 segments (sequential.h, mb_stats_segment, the declared cost
 *                 and minimum segment; x = the step, or the ordinal for a
 *                 series without steps). Each phase runs from its first
 *                 checkpoint to the one before the next phase's first; a
 *                 boundary is the step of the new phase's first checkpoint,
 *                 so the change happened after the previous checkpoint and by
 *                 this one. A registered window is met when the boundary's
 *                 step lies in [first, last]. A series with fewer than
 *                 len(names) * min_segment checkpoints is not segmented
 *                 (located = 0), and its windows are not judged.
 *
 *   Monitor       mSPRT (sequential.h; Johari, Pekelis & Walsh 2017) of
 *                 H0: the checkpoint means after the reference have mean
 *                 theta0 = the reference's mean. Each checkpoint's mean is one
 *                 observation; sigma^2 is the reference mean's squared SE,
 *                 floored at (delta / (z_{1-alpha} + z_{power}))^2 (the SE at
 *                 which the margin is the spec's minimum detectable effect,
 *                 so a reference with no spread does not make every wiggle an
 *                 alarm); the mixture variance tau^2 = delta^2 (the smallest
 *                 change that matters). These are fixed when the series
 *                 begins (stored in series_monitors), so appending later
 *                 checkpoints continues the same test: the p-value after
 *                 checkpoint k is valid however many times the series has
 *                 been looked at, and the first k with p <= alpha is the
 *                 alarm. The guarantee assumes the checkpoint-to-checkpoint
 *                 fluctuations of an unchanged model are independent with
 *                 variance <= sigma^2.
 *
 * Legend: K checkpoints, M (entry, metric) pairs.
 */
#ifndef MECHBENCH_DRIFT_H
#define MECHBENCH_DRIFT_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/error.h>
#include <mechbench/runner.h>
#include <mechbench/sequential.h>
#include <mechbench/spec.h>
#include <mechbench/verdict.h>

/* --- checkpoints ------------------------------------------------------------------------ */

typedef struct mb_drift_checkpoint {
	char *path;  /* owned: the model folder */
	char *name;  /* owned: its last path component */
	int has_step;
	int64_t step; /* training_state.json "step", else the N of a name "stepN" */
} mb_drift_checkpoint;

/* Finds the checkpoints of a series: the folders matched by a glob pattern
 * (when dir_or_glob holds * ? or [), or else the sub-folders of the folder
 * dir_or_glob (dot-folders skipped). A checkpoint's step is the integer
 * "step" of its training_state.json, else the number of a folder named as
 * Pythia's revisions are ("step0", "step1000", ..., "step143000": "step" and
 * digits only). When every checkpoint has a step they are ordered by it and
 * has_step is set; when none has, by name in natural order ("step_200"
 * before "step_1000"). Errors (MB_EINVALID or MB_ENOTFOUND, naming the
 * path): nothing matched, a training_state.json that is not JSON or has no
 * non-negative integer "step", some checkpoints with a step and some
 * without, two with the same step.
 * *out (n of them) is freed with mb_drift_checkpoints_free. */
int mb_drift_discover(mb_drift_checkpoint **out, size_t *n, const char *dir_or_glob,
		      mb_error *err);
void mb_drift_checkpoints_free(mb_drift_checkpoint *c, size_t n);

/* --- monitors --------------------------------------------------------------------------- */

typedef struct mb_drift_monitor {
	char entry[128];
	char metric[128];
	double theta0, sigma2, tau2, alpha;
} mb_drift_monitor;

/* The monitor of every (entry, metric) of spec, in spec order, from the
 * reference run (see above). *out (M of them) is malloc'd (free()). */
int mb_drift_monitors(mb_drift_monitor **out, size_t *n, const mb_spec *spec,
		      const mb_run_result *reference, mb_error *err);

/* --- analysis --------------------------------------------------------------------------- */

typedef enum mb_drift_band {
	MB_DRIFT_REFERENCE = 0, /* checkpoint 0 */
	MB_DRIFT_INSIDE,        /* not shown to have left the band */
	MB_DRIFT_WORSE,         /* left the band on the worse side */
	MB_DRIFT_BETTER,        /* left the band on the better side */
} mb_drift_band;

/* "reference", "inside", "worse", "better". */
const char *mb_drift_band_name(mb_drift_band b);

typedef struct mb_drift_point {
	double mean, lo, hi;          /* the checkpoint's stored aggregate (its 95% CI) */
	mb_drift_band band;
	mb_stats_verdict verdict;     /* vs the reference (not for checkpoint 0) */
	double diff, diff_lo, diff_hi; /* checkpoint - reference, (1 - 2 alpha) interval */
	int threshold_checked;
	mb_stats_verdict threshold_verdict; /* PASS, INCONCLUSIVE or REGRESSED (violated) */
	double p;                     /* the monitor's always-valid p after this checkpoint */
	double cs_lo, cs_hi;          /* its confidence sequence for the post-reference mean */
} mb_drift_point;

typedef struct mb_drift_changepoint {
	size_t index;          /* first checkpoint of the new segment */
	double before, after;  /* means of the segments on either side */
} mb_drift_changepoint;

typedef struct mb_drift_metric {
	char *entry, *metric;  /* owned */
	int version;
	mb_metric_kind kind;
	mb_metric_direction direction;
	double margin;
	int has_threshold;
	double threshold;
	mb_drift_point *points;             /* (K) */
	mb_drift_changepoint *changepoints; /* (n_changepoints) ascending */
	size_t n_changepoints;
	size_t main_change;    /* index into changepoints of the largest jump; SIZE_MAX: none */
	double penalty;        /* PELT's penalty */
	mb_drift_monitor monitor;
	size_t alarm;          /* first checkpoint whose p <= alpha; SIZE_MAX: none */
} mb_drift_metric;

typedef struct mb_drift_phases {
	char *entry, *metric;  /* owned */
	int version;
	mb_stats_cost cost;
	size_t min_segment;
	size_t n_phases;
	char **names;          /* (n_phases) owned */
	int located;           /* 0: not segmented, for the reason in not_located */
	const char *not_located; /* static text: "too few checkpoints", "the trajectory is constant" */
	size_t *start;         /* (n_phases) first checkpoint of each phase; start[0] = 0 */
	double cost_value;     /* the segmentation's total cost */
	int *has_window;       /* (n_phases - 1) a registered window for boundary b */
	int64_t (*windows)[2]; /* (n_phases - 1) [first, last] step */
	int *in_window;        /* (n_phases - 1) 1 met, 0 missed (when located and registered) */
} mb_drift_phases;

typedef struct mb_drift_result {
	size_t n_points;      /* K */
	int has_steps;        /* x is the step; else the ordinal */
	int64_t *steps;       /* (K) */
	char **checkpoints;   /* (K) owned */
	int64_t *run_ids;     /* (K) */
	double alpha;
	mb_drift_metric *metrics; /* (M) in spec order */
	size_t n_metrics;
	mb_drift_phases *phases;  /* (n_phases) the spec's phases declarations, in spec order */
	size_t n_phases;
} mb_drift_result;

typedef struct mb_drift_opts {
	double penalty; /* NaN: the default (sequential.h) */
	size_t min_seg; /* 0: 2 */
} mb_drift_opts;

/* Registered phase windows are in training steps: MB_EINVALID (naming the
 * entry and metric) when spec registers one and the series has no steps
 * (has_steps 0). mb_drift_analyze checks this first; a caller may check it
 * before running any checkpoint. */
int mb_drift_check_windows(const mb_spec *spec, int has_steps, mb_error *err);

/* Analyses runs[0..K) (the series in order; runs[0] the reference) under
 * spec, as described at the top. steps may be NULL (ordinals); checkpoints
 * labels each point (NULL: the runs' model). monitors[0..n_monitors) gives
 * each (entry, metric)'s monitor (those stored when the series began; a
 * missing one is an error). opts may be NULL. Every run must hold every
 * entry and metric of spec over the same items (MB_EMISMATCH naming the
 * checkpoint otherwise). *out is disposed with mb_drift_result_dispose. */
int mb_drift_analyze(mb_drift_result *out, const mb_spec *spec, const mb_run_result *runs,
		     size_t K, const int64_t *steps, const char *const *checkpoints,
		     const mb_drift_monitor *monitors, size_t n_monitors,
		     const mb_drift_opts *opts, mb_error *err);
void mb_drift_result_dispose(mb_drift_result *r);

/* The x coordinate of point k (its step, or k). */
double mb_drift_x(const mb_drift_result *r, size_t k);

/* The last checkpoint (index) of phase i of p, located, in r. */
size_t mb_drift_phase_last(const mb_drift_result *r, const mb_drift_phases *p, size_t i);

/* The first and last x (step) of phase i of p, located, in r. */
void mb_drift_phase_range(const mb_drift_result *r, const mb_drift_phases *p, size_t i,
			  double *first, double *last);

/* How many registered windows the located boundaries missed (*missed) and
 * how many could not be judged because their phases were not located (too
 * few checkpoints, or a constant trajectory: *unjudged). Either may be NULL.
 * Windows are in training steps: mb_drift_analyze refuses registered windows
 * on a series without steps (MB_EINVALID). */
void mb_drift_windows_summary(const mb_drift_result *r, size_t *missed, size_t *unjudged);

#endif
