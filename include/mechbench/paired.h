/*
 * paired.h: paired comparisons over matched items (Miller 2024, "Adding Error
 * Bars to Evals", sections 2-4; design in docs/HARNESS.md).
 *
 * Items are matched by the caller (the harness matches by content key; a
 * mismatched item set is its error, never a smaller n). Here d_i = cand_i -
 * base_i, i in [0, n), arrays aligned by index. Every estimator fills the same
 * mb_stats_estimate, so the verdict code does not care which one ran.
 *
 * Intervals are two-sided at `level` (0.95 -> 95%). A one-sided test at alpha
 * uses the bounds of the (1 - 2 alpha) two-sided interval: level = 1 - 2 alpha.
 *
 * Errors: MB_EINVALID with one line naming the item, cluster or stratum
 * ("item 17: difference is NaN", "cluster 3 has no items"); MB_ENOMEM.
 */
#ifndef MECHBENCH_PAIRED_H
#define MECHBENCH_PAIRED_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/error.h>

/* How an estimate's interval was made. */
typedef enum mb_stats_method {
	MB_STATS_METHOD_NONE = 0,
	MB_STATS_METHOD_PAIRED_T,        /* paired SE, t with n - 1 df */
	MB_STATS_METHOD_CLUSTERED_T,     /* clustered SE, t with C - 1 df */
	MB_STATS_METHOD_STRATIFIED_T,    /* registered stratum weights, Welch-Satterthwaite df */
	MB_STATS_METHOD_BOOT_PERCENTILE, /* (cluster) bootstrap, percentile interval */
	MB_STATS_METHOD_BOOT_BCA,        /* (cluster) bootstrap, BCa interval */
} mb_stats_method;

/* "paired-t", "clustered-t", "stratified-t", "bootstrap-percentile",
 * "bootstrap-bca", "none": for reports and the store. */
const char *mb_stats_method_name(mb_stats_method m);

typedef struct mb_stats_estimate {
	mb_stats_method method;
	size_t n;        /* items */
	size_t n_groups; /* clusters or strata behind the SE; 0 for plain paired */
	double mean;     /* point estimate: mean of d (stratified: sum_h w_h mean_h) */
	double se;       /* SE behind the interval; bootstrap: SD of the replicates */
	double se_naive; /* i.i.d. paired SE sd(d) / sqrt(n), for the design effect */
	double deff;     /* design effect se^2 / se_naive^2 (1 for paired-t; NaN when se_naive = 0) */
	double df;       /* t degrees of freedom; INFINITY for bootstrap intervals */
	double level;    /* two-sided coverage of [lo, hi] */
	double lo, hi;   /* interval for the mean */
} mb_stats_estimate;

/* out[i] = cand[i] - base[i] for i in [0, n). Never fails. */
void mb_stats_paired_diff(double *out, const double *cand, const double *base, size_t n);

/* 1 when every cand[i] has the same bit pattern as base[i] (memcmp of the
 * doubles: -0.0 differs from 0.0, identical NaN payloads are equal), else 0.
 * The IDENTICAL verdict rests on this, not on d == 0. */
int mb_stats_items_identical(const double *cand, const double *base, size_t n);

/* Paired (one-sample) t interval for the mean of x[0..n):
 * se = sqrt(sum (x_i - mean)^2 / (n (n - 1))), df = n - 1,
 * [mean -+ t_{(1+level)/2, n-1} se]. Used on differences d for paired
 * comparisons and on raw values for absolute thresholds. Needs n >= 2, finite
 * values, level in (0, 1). */
int mb_stats_paired_estimate(mb_stats_estimate *out, const double *x, size_t n, double level,
			     mb_error *err);

/* Clustered interval (clusters = templates or strata; cluster[i] in
 * [0, n_clusters), every cluster non-empty, n_clusters >= 2):
 * se = (1/n) sqrt(C/(C-1) * sum_c (sum_{i in c} (x_i - mean))^2), df = C - 1,
 * deff = se^2 / se_naive^2. Matches statsmodels OLS(x, 1).fit(cov_type=
 * "cluster") (whose small-sample factor (n-1)/(n-k) is 1 for k = 1). */
int mb_stats_clustered_estimate(mb_stats_estimate *out, const double *x, const uint32_t *cluster,
				size_t n, size_t n_clusters, double level, mb_error *err);

/* Stratified estimate with registered weights (weights[h] >= 0, summing to 1
 * within 1e-9; stratum[i] in [0, n_strata); every stratum with weight > 0 has
 * >= 2 items): mean = sum_h w_h mean_h, se^2 = sum_h w_h^2 s_h^2 / n_h,
 * df by Welch-Satterthwaite: (sum_h v_h)^2 / sum_h v_h^2 / (n_h - 1),
 * v_h = w_h^2 s_h^2 / n_h (df = INFINITY when every v_h is 0). */
int mb_stats_stratified_estimate(mb_stats_estimate *out, const double *x, const uint32_t *stratum,
				 size_t n, const double *weights, size_t n_strata, double level,
				 mb_error *err);

/* Bootstrap ---------------------------------------------------------------- */

#define MB_STATS_BOOT_DEFAULT_B 10000

typedef enum mb_stats_boot_ci {
	MB_STATS_BOOT_CI_BCA = 0,    /* bias-corrected and accelerated (Efron 1987) */
	MB_STATS_BOOT_CI_PERCENTILE, /* plain percentile */
} mb_stats_boot_ci;

typedef struct mb_stats_boot_opts {
	uint64_t seed;
	const char *stream;       /* RNG stream name, e.g. "<run>/<task>/<metric>"; required */
	size_t B;                 /* replicates; 0 means MB_STATS_BOOT_DEFAULT_B */
	double level;             /* two-sided coverage, in (0, 1) */
	mb_stats_boot_ci ci;
	const uint32_t *cluster;  /* NULL: resample items; else resample whole clusters */
	size_t n_clusters;        /* with cluster: >= 2, every cluster non-empty */
	double *p_two_sided;      /* optional: receives mb_stats_boot_p at m0 = 0 from the
				   * same replicates (the interval is unchanged) */
} mb_stats_boot_opts;

/* Seeded paired (or cluster) bootstrap of the mean of x[0..n).
 *
 * Replicate b draws its resample from its own stream,
 * mb_rng_init_named(&r, seed, stream, b), and writes slot b; replicates run in
 * parallel (OpenMP) into disjoint slots and the interval comes from a sorted
 * copy, so the result is bitwise identical for any thread count. An item
 * resample draws n indices with mb_rng_range; a cluster resample draws C
 * cluster indices and the replicate is (sum of the drawn clusters' sums) /
 * (sum of their sizes). BCa's acceleration comes from the jackknife over
 * items (clusters for a cluster bootstrap); quantiles are type 7
 * (mb_stats_quantile_sorted), like numpy.percentile.
 *
 * out: method BOOT_BCA or BOOT_PERCENTILE as asked (BCA also when its step
 * falls back to percentile, see below), mean = the full-sample mean,
 * se = SD of the replicates, se_naive = sd/sqrt(n), deff = se^2/se_naive^2,
 * df = INFINITY, n_groups = C or 0.
 * replicates: optional (NULL or B doubles), receives replicate b in slot b.
 * Needs n >= 2. Scratch: 2B doubles (B when `replicates` is given) plus n (or
 * 3C for a cluster bootstrap), malloc'd and freed. MB_EINVALID names the
 * item, cluster or option; MB_ENOMEM. */
int mb_stats_bootstrap(mb_stats_estimate *out, double *replicates, const double *x, size_t n,
		       const mb_stats_boot_opts *opts, mb_error *err);

/* The interval step alone, for checking against scipy's formulas:
 * from replicates sorted ascending (sorted[0..B)), the full-sample statistic
 * theta_hat and, for BCa, the jackknife (leave-one-out) statistics jack[0..k),
 * writes [lo, hi] at `level`. Percentile: type-7 quantiles at (1 -+ level)/2.
 * BCa: z0 = ppf((#{theta* < theta_hat} + #{theta* <= theta_hat}) / (2B)) (ties
 * count half, as in scipy), a = sum (m - j)^3 / (6 (sum (m - j)^2)^1.5)
 * with m the jackknife mean, adjusted probabilities
 * Phi(z0 + (z0 + z)/(1 - a (z0 + z))) for z = ppf((1 -+ level)/2) (scipy's
 * _bca_interval). When no replicate differs from theta_hat, or all lie on one
 * side of it, BCa falls back to the percentile interval (z0 would be
 * infinite), and likewise when the adjusted probabilities come out unordered
 * or NaN (e.g. |a| so large that 1 - a (z0 + z) <= 0); a zero jackknife spread
 * gives a = 0. */
int mb_stats_boot_interval(double *out_lo, double *out_hi, const double *sorted, size_t B,
			   double theta_hat, const double *jack, size_t n_jack, double level,
			   mb_stats_boot_ci ci, mb_error *err);

/* Two-sided bootstrap p-value of H0: mean = m0, by inverting the interval of
 * mb_stats_boot_interval (same arguments, same ci): the smallest 1 - level
 * whose interval excludes m0, found by bisection on the level to 1e-12 (the
 * intervals are nested in the level). 1 when even the narrowest interval
 * holds m0; never below 2 / (B + 1), the resolution of B replicates (which
 * is also the floor when every replicate lies on one side of m0). */
int mb_stats_boot_p(double *out_p, const double *sorted, size_t B, double theta_hat,
		    const double *jack, size_t n_jack, double m0, mb_stats_boot_ci ci,
		    mb_error *err);

/* Tests on an estimate -------------------------------------------------------- */

typedef enum mb_stats_alternative {
	MB_STATS_ALTERNATIVE_TWO_SIDED = 0,
	MB_STATS_ALTERNATIVE_GREATER, /* H1: mean > m0 */
	MB_STATS_ALTERNATIVE_LESS,    /* H1: mean < m0 */
} mb_stats_alternative;

/* p-value of H0: mean = m0 (or <=, >=) from a t-based estimate
 * (t = (mean - m0)/se with e->df). NaN for bootstrap estimates (their
 * decisions use the interval bounds) and when se == 0. */
double mb_stats_estimate_p(const mb_stats_estimate *e, double m0, mb_stats_alternative alt);

/* Binary metrics: exact McNemar ------------------------------------------------ */

typedef struct mb_stats_mcnemar {
	size_t n;         /* items */
	size_t n10;       /* base 1, cand 0: lost */
	size_t n01;       /* base 0, cand 1: gained */
	double p_two_sided; /* min(1, 2 P(X <= min(n10, n01))), X ~ Bin(n10 + n01, 1/2); 1 when none discordant */
	double p_greater;   /* one-sided, H1: cand better: P(X >= n01) with X ~ Bin(n10 + n01, 1/2) */
	double p_less;      /* one-sided, H1: cand worse:  P(X >= n10) */
	double discordant_rate; /* (n10 + n01) / n, the var_d of binary power (Miller 2024) */
} mb_stats_mcnemar;

/* Exact McNemar test from counts (statsmodels mcnemar(exact=True) gives
 * p_two_sided). n >= n10 + n01 is asserted. */
void mb_stats_mcnemar_counts(mb_stats_mcnemar *out, size_t n, size_t n10, size_t n01);

/* Counts from paired 0/1 values and tests them. Any value other than 0.0 or
 * 1.0 is MB_EINVALID naming the item ("item 4: candidate value 0.5 is not 0 or 1"). */
int mb_stats_mcnemar_exact(mb_stats_mcnemar *out, const double *cand, const double *base, size_t n,
			   mb_error *err);

#endif
