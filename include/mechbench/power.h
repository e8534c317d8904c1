/*
 * power.h: sample size and minimum detectable effect for paired metrics
 * (HARNESS.md, "Power"; Miller 2024, "Adding Error Bars to Evals", sec. 5).
 *
 *   n   = (z_{1-a} + z_{1-b})^2 * var_d * DEFF / delta^2
 *   MDE = (z_{1-a} + z_{1-b}) * sqrt(var_d * DEFF / n)
 * with a = alpha for one-sided tests and alpha/2 for two-sided, b = 1 - power.
 * This is the normal approximation; for two-sided tests it ignores the
 * rejections in the wrong tail (below 1e-5 of n at the usual settings, the
 * same convention as Miller's worked numbers), while mb_stats_power_at counts
 * both tails exactly like statsmodels' NormalIndPower(ratio=0).
 *
 * var_d is the variance of one paired difference: sd^2 for continuous
 * metrics; for binary metrics, Miller's paired-proportions rule uses the
 * discordant rate p_disc (the variance of d in {-1, 0, 1} when the net effect
 * is 0 is p_disc - delta^2 ~ p_disc; Miller's worked example - 10%
 * discordant, delta 2 points: 1962.2 so n = 1,963 two-sided at power 0.8,
 * 2140.96 so n = 2,141 one-sided at power 0.9 - uses var_d = p_disc, and so
 * do we, to reproduce it).
 */
#ifndef MECHBENCH_POWER_H
#define MECHBENCH_POWER_H

#include <stdint.h>

#include <mechbench/error.h>

typedef struct mb_stats_power_opts {
	double alpha; /* in (0, 1): one-sided alpha, or the total two-sided alpha */
	double power; /* 1 - beta, in (0, 1), and z_{1-a} + z_{1-b} > 0 */
	int sides;    /* 1 or 2 */
	double var_d; /* > 0: sd^2 (continuous) or the discordant rate (binary) */
	double deff;  /* design effect > 0; 1 when items are independent */
} mb_stats_power_opts;

/* Checks opts; MB_EINVALID naming the field ("power: 1.2 is not in (0, 1)"). */
int mb_stats_power_check(const mb_stats_power_opts *o, mb_error *err);

/* var_d of a binary metric from its discordant rate p_disc in (0, 1]: p_disc
 * (see above). */
double mb_stats_power_var_binary(double p_discordant);

/* Required n for effect delta != 0 (|delta| is used): out_exact gets the
 * formula's real value, out_n the smallest integer >= it (ceil after removing
 * a relative 1e-12 of round-off, so an exact 2000 stays 2000). */
int mb_stats_power_n(double *out_exact, uint64_t *out_n, const mb_stats_power_opts *o,
		     double delta, mb_error *err);

/* Minimum detectable effect at n > 0 items (n need not be an integer). */
int mb_stats_power_mde(double *out, const mb_stats_power_opts *o, double n, mb_error *err);

/* Achieved power at effect delta and n items, normal approximation with
 * es = |delta| / sqrt(var_d * DEFF): one-sided Phi(es sqrt(n) - z_{1-a}),
 * two-sided Phi(es sqrt(n) - z_{1-a/2}) + Phi(-es sqrt(n) - z_{1-a/2}).
 * opts.power is ignored. */
int mb_stats_power_at(double *out, const mb_stats_power_opts *o, double delta, double n,
		      mb_error *err);

#endif
