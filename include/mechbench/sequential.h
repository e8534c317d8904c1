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

#endif
