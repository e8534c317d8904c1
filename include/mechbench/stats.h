/*
 * stats.h: descriptive statistics and the distributions behind every interval.
 *
 * The CDFs and quantiles are accurate to 1e-10 relative or better (checked
 * against mpmath at 60 digits, and scipy.stats where scipy is accurate, in
 * tests/stats/test_stats.c):
 *   normal CDF   erfc-based, tail-accurate upper tail (mb_stats_norm_sf);
 *   normal ppf   Wichura's AS241 PPND16 (1988) plus one Newton step;
 *   t CDF        regularized incomplete beta, I_{df/(df+t^2)}(df/2, 1/2),
 *                by Lentz's continued fraction (Numerical Recipes 6.4) in
 *                long double, fed 1 - x directly (x near 1 at large df);
 *   t ppf        bracketed Newton-bisection on ln of the t tail, started
 *                from a Cornish-Fisher expansion (A&S 26.7.5), to ~4 ulp.
 *
 * Summaries sum in index order (two passes: mean, then centred sum of squares
 * with the correction term of Chan, Golub & LeVeque 1983), so results are
 * bitwise reproducible and agree with numpy to the last digit.
 */
#ifndef MECHBENCH_STATS_H
#define MECHBENCH_STATS_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/error.h>

typedef struct mb_stats_summary {
	size_t n;
	double mean;
	double sd;  /* sample SD, divisor n - 1; 0 when n == 1 */
	double se;  /* sd / sqrt(n) */
	double min;
	double max;
} mb_stats_summary;

/* Mean, SD, SE, min and max of x[0..n). Fails with MB_EINVALID when n == 0 or
 * an element is not finite ("item 17: value is NaN"). */
int mb_stats_describe(mb_stats_summary *out, const double *x, size_t n, mb_error *err);

/* Mean of x[0..n), n > 0 (asserted), summed in index order. */
double mb_stats_mean(const double *x, size_t n);
/* Sample variance (divisor n - 1) of x[0..n) around its mean; n >= 2 (asserted). */
double mb_stats_var(const double *x, size_t n);

/* Quantile of sorted[0..n) at probability p in [0, 1] with linear
 * interpolation between order statistics (Hyndman & Fan type 7, numpy's
 * default): h = (n - 1) p, sorted[floor h] + (h - floor h) * (next - this).
 * n > 0 and p in [0, 1] are asserted. */
double mb_stats_quantile_sorted(const double *sorted, size_t n, double p);

/* Standard normal CDF, upper tail (1 - CDF, accurate deep in the tail) and
 * quantile. norm_ppf(0) = -INFINITY, norm_ppf(1) = INFINITY, NaN outside [0, 1]. */
double mb_stats_norm_cdf(double x);
double mb_stats_norm_sf(double x);
double mb_stats_norm_ppf(double p);

/* Student t with df > 0 degrees of freedom (non-integer allowed; df =
 * INFINITY gives the normal). CDF, upper tail, and quantile with the same
 * conventions as the normal. NaN for df <= 0 or NaN arguments. Checked to
 * 1e-10 for df in [0.5, 1e9] and tail probabilities down to 1e-300 (df >= 2),
 * 1e-100 (df >= 1) and 1e-12 (df = 0.5); below df = 2, quantiles whose t^2
 * would leave the double range (|t| > ~1e154) are not accurate. */
double mb_stats_t_cdf(double t, double df);
double mb_stats_t_sf(double t, double df);
double mb_stats_t_ppf(double p, double df);

/* Regularized incomplete beta I_x(a, b) for a, b > 0 and x in [0, 1]; NaN
 * otherwise. */
double mb_stats_beta_inc(double a, double b, double x);

/* Binomial CDF P(X <= k) for X ~ Bin(n, p), exact through the incomplete
 * beta: I_{1-p}(n - k, k + 1). 1 for k >= n. */
double mb_stats_binom_cdf(uint64_t k, uint64_t n, double p);

#endif
