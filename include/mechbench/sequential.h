/*
 * sequential.h: metric trajectories across checkpoints and continuous
 * monitoring (HARNESS.md, "Checkpoint series").
 *
 * Changepoints: PELT (Killick, Fearnhead & Eckley 2012) for changes in mean
 * with the Gaussian cost C(y_{s..t}) = sum (y_i - mean_{s..t})^2; it returns
 * the exact minimiser of sum of costs + penalty * (#changepoints), the same
 * segmentation as optimal partitioning, pruned to near-linear time.
 * The default penalty is 2 sigma^2 ln n (BIC-like; the Schwarz penalty for
 * one mean parameter per segment, doubled to absorb the changepoint location),
 * with sigma estimated robustly from first differences:
 * sigma = 1.4826 * MAD(y_{i+1} - y_i) / sqrt(2), which mean shifts barely move.
 *
 * mSPRT (Johari, Pekelis & Walsh 2017, "Always valid inference"): for
 * observations x_i ~ N(theta, sigma^2) and a N(theta0, tau^2) mixture over the
 * alternative, the likelihood ratio after n observations with mean xbar is
 *   Lambda_n = sqrt(sigma^2 / (sigma^2 + n tau^2))
 *              * exp(n^2 tau^2 (xbar - theta0)^2 / (2 sigma^2 (sigma^2 + n tau^2)));
 * the always-valid p-value is p_n = min(p_{n-1}, 1 / Lambda_n) (p_0 = 1), and
 * the confidence sequence is the running intersection of
 *   xbar -+ sqrt(2 sigma^2 (sigma^2 + n tau^2) / (n^2 tau^2)
 *               * ln(sqrt((sigma^2 + n tau^2) / sigma^2) / alpha)).
 * Stopping whenever p_n <= alpha keeps the type I error <= alpha at any
 * stopping time.
 */
#ifndef MECHBENCH_SEQUENTIAL_H
#define MECHBENCH_SEQUENTIAL_H

#include <stddef.h>

#include <mechbench/error.h>

/* The default penalty above for y[0..n). When over half the first
 * differences are equal (MAD 0), sigma falls back to SD(differences)/sqrt(2),
 * then to SD(y); 0 for fewer than 3 points or a constant y (where no
 * segmentation beats none). NaN only if the scratch copy cannot be allocated. */
double mb_stats_changepoint_penalty(const double *y, size_t n);

/* PELT on y[0..n) with the given penalty (>= 0; pass
 * mb_stats_changepoint_penalty(y, n) for the default) and minimum segment
 * length min_seg >= 1. Writes the changepoints - indices of the first point
 * of each new segment, ascending, in [min_seg, n - min_seg] - into out
 * (capacity n) and their number into out_count. Ties between equal-cost
 * segmentations go to the earlier last changepoint. MB_EINVALID for NaN
 * ("point 5 is nan, not a finite number"), a negative or NaN penalty or
 * min_seg == 0; MB_ENOMEM. Fewer than 2 min_seg points: no changepoints. */
int mb_stats_changepoints(size_t *out, size_t *out_count, const double *y, size_t n,
			  double penalty, size_t min_seg, mb_error *err);

typedef struct mb_stats_msprt {
	double theta0; /* null mean */
	double sigma2; /* known (or pre-registered) variance of one observation, > 0 */
	double tau2;   /* mixture variance, > 0 */
	double alpha;  /* level of the confidence sequence, in (0, 1) */
	size_t n;      /* observations so far */
	double sum;    /* their sum, in order */
	double p;      /* always-valid p-value (running minimum), 1 before any data */
	double lo, hi; /* confidence sequence (running intersection); -inf, inf before data */
} mb_stats_msprt;

/* Starts a monitor. MB_EINVALID naming the parameter for sigma2 <= 0,
 * tau2 <= 0, alpha outside (0, 1) or non-finite theta0. */
int mb_stats_msprt_init(mb_stats_msprt *m, double theta0, double sigma2, double tau2, double alpha,
			mb_error *err);

/* Adds one observation and updates p, lo and hi. x must be finite
 * (asserted). */
void mb_stats_msprt_update(mb_stats_msprt *m, double x);

/* 1 when the null is rejected (p <= alpha), else 0. */
int mb_stats_msprt_rejected(const mb_stats_msprt *m);

/* --- segmentation into a given number of phases ------------------------------------- */

/* Segment costs for mb_stats_segment. For a segment of points lo..hi-1:
 *   MB_STATS_COST_MEAN    sum (y_i - mean)^2: a change in level (as PELT).
 *   MB_STATS_COST_LINEAR  sum (y_i - a - b x_i)^2 for the segment's own
 *                         least-squares line of y on x: a change in slope
 *                         (or level) of a trend; suits smooth progress
 *                         measures, whose phases are ramps and plateaus
 *                         rather than steps. A segment whose x are all equal
 *                         falls back to the mean cost. */
typedef enum mb_stats_cost {
	MB_STATS_COST_MEAN = 0,
	MB_STATS_COST_LINEAR,
} mb_stats_cost;

/* "mean", "linear"; mb_stats_cost_parse returns 0 or -1 for another name. */
const char *mb_stats_cost_name(mb_stats_cost c);
int mb_stats_cost_parse(const char *s, mb_stats_cost *out);

/* The cost above of points lo..hi-1 (lo < hi <= n) of (x, y), computed
 * directly (two passes about the segment's means); for checks. */
double mb_stats_segment_cost(const double *x, const double *y, size_t lo, size_t hi,
			     mb_stats_cost cost);

/* The exact best segmentation of (x[i], y[i]), i in [0, n), into n_cp + 1
 * contiguous segments of at least min_seg points each: the changepoints
 * (indices of the first point of each new segment, ascending) minimising
 * the sum of the segments' costs, found by segment-neighbourhood dynamic
 * programming (Auger & Lawrence 1989): F_0(j) = C(0, j),
 * F_c(j) = min_i F_{c-1}(i) + C(i, j), in O(n_cp n^2) time after an
 * O(n^2) table of segment costs (n (n + 1) doubles: 8 MB at 1,000 points,
 * 800 MB at 10,000; thin a longer series first; each built by running updates about the
 * segment's means, so a far-from-zero x such as a training step loses no
 * precision). Among equal-cost segmentations the one whose last changepoint
 * is earliest wins, then recursively. x must be non-decreasing (the
 * checkpoints' steps; pass the ordinals 0..n-1 when there are none); it is
 * read only by MB_STATS_COST_LINEAR. Writes n_cp changepoints to out and the
 * total cost to *out_cost (may be NULL). MB_EINVALID: a non-finite x or y
 * (naming the point), x decreasing, min_seg == 0, n_cp == 0, or
 * n < (n_cp + 1) * min_seg ("12 points cannot hold 3 segments of at least
 * 5"); MB_ENOMEM. */
int mb_stats_segment(size_t *out, double *out_cost, const double *x, const double *y, size_t n,
		     size_t n_cp, mb_stats_cost cost, size_t min_seg, mb_error *err);

#endif
