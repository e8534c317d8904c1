/*
 * sae_verdict.h: the causal battery's verdict per feature (issue 19 item 5):
 * paired estimates with intervals of each arm of an mb_sae_battery (sae.h),
 * of necessity and steering in excess of their random-direction controls,
 * Benjamini-Hochberg across features, and whether each feature passes.
 */
#ifndef MECHBENCH_SAE_VERDICT_H
#define MECHBENCH_SAE_VERDICT_H

#include <mechbench/error.h>
#include <mechbench/paired.h>
#include <mechbench/sae.h>

typedef struct mb_sae_verdict {
	/* Paired t estimates (paired.h) over the items where the arm applies
	 * (necessity: present items; the others: absent items). The excesses
	 * are per item (effect - control), the controls drawn on the same item
	 * at the same positions with the same per-position norm. */
	mb_stats_estimate necessity, necessity_control, necessity_excess;
	mb_stats_estimate steering, steering_control, steering_excess;
	mb_stats_estimate selectivity, collateral;
	double p_necessity, p_steering; /* one-sided, H1: excess > 0 */
	double q_necessity, q_steering; /* Benjamini-Hochberg across the features */
	int pass; /* q_necessity <= q and q_steering <= q */
} mb_sae_verdict;

/*
 * out (b->n_features): the verdict of each feature of b at two-sided level
 * `level` (0.95) and false discovery rate q (0.05). A feature with fewer
 * than 2 items for an arm gets that arm's estimate with n < 2 (mean NaN),
 * p = 1 and fails. An excess whose differences are all equal has se 0: p =
 * 0 when it is > 0, else 1. *pass_frac (may be NULL): the fraction of
 * features that pass. Errors: MB_EINVALID (a level or q outside (0, 1)),
 * MB_ENOMEM.
 */
int mb_sae_verdicts(mb_sae_verdict *out, double *pass_frac, const mb_sae_battery *b,
		    double level, double q, mb_error *err);

/*
 * The Wilson score interval (Wilson 1927; Brown, Cai and DasGupta 2001, who
 * recommend it for small n) at two-sided level `level` of a fraction of
 * `passed` successes out of n trials (the features passing the battery):
 * center (p + z^2 / 2n) / (1 + z^2 / n), half-width z / (1 + z^2 / n)
 * sqrt(p (1 - p) / n + z^2 / 4n^2), z the normal quantile at 1 - (1 -
 * level) / 2. n = 0: [0, 1]. With n = 8 features its width is about 0.5:
 * a fraction of 8 features can only tell a collapse from a success.
 */
void mb_sae_pass_interval(double *lo, double *hi, int passed, int n, double level);

#endif
