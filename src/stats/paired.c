/* paired.c: paired, clustered and stratified estimates of a mean difference,
 * p-values on estimates, and the exact McNemar test. */
#include <mechbench/paired.h>
#include <mechbench/stats.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *mb_stats_method_name(mb_stats_method m)
{
	switch (m) {
	case MB_STATS_METHOD_PAIRED_T: return "paired-t";
	case MB_STATS_METHOD_CLUSTERED_T: return "clustered-t";
	case MB_STATS_METHOD_STRATIFIED_T: return "stratified-t";
	case MB_STATS_METHOD_BOOT_PERCENTILE: return "bootstrap-percentile";
	case MB_STATS_METHOD_BOOT_BCA: return "bootstrap-bca";
	case MB_STATS_METHOD_NONE: break;
	}
	return "none";
}

void mb_stats_paired_diff(double *out, const double *cand, const double *base, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = cand[i] - base[i];
}

int mb_stats_items_identical(const double *cand, const double *base, size_t n)
{
	return n == 0 || memcmp(cand, base, n * sizeof(double)) == 0;
}

/* Shared checks: n >= 2, level in (0, 1), finite values. */
static int check_sample(const double *x, size_t n, double level, mb_error *err)
{
	if (n < 2)
		return mb_error_set(err, MB_EINVALID, "%zu item%s: an interval needs at least 2", n,
				    n == 1 ? "" : "s");
	if (!(level > 0.0 && level < 1.0))
		return mb_error_set(err, MB_EINVALID, "confidence level %g is not in (0, 1)", level);
	for (size_t i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return mb_error_set(err, MB_EINVALID, "item %zu: value %g is not finite", i,
					    x[i]);
	return 0;
}

/* Half-width multiplier of a two-sided t interval: t_{(1+level)/2, df},
 * computed from the lower tail (1 - level)/2 where no digits cancel. */
static double t_crit(double level, double df)
{
	return -mb_stats_t_ppf(0.5 * (1.0 - level), df);
}

static void fill_t_interval(mb_stats_estimate *out, double level)
{
	double h = out->se * t_crit(level, out->df);

	out->level = level;
	out->lo = out->mean - h;
	out->hi = out->mean + h;
}

static double design_effect(double se, double se_naive)
{
	return se_naive > 0.0 ? (se * se) / (se_naive * se_naive) : NAN;
}

int mb_stats_paired_estimate(mb_stats_estimate *out, const double *x, size_t n, double level,
			     mb_error *err)
{
	int error = check_sample(x, n, level, err);

	if (error < 0)
		return error;
	memset(out, 0, sizeof(*out));
	out->method = MB_STATS_METHOD_PAIRED_T;
	out->n = n;
	out->mean = mb_stats_mean(x, n);
	out->se = sqrt(mb_stats_var(x, n) / (double)n);
	out->se_naive = out->se;
	out->deff = 1.0;
	out->df = (double)(n - 1);
	fill_t_interval(out, level);
	return 0;
}

/* Checks group ids g[i] < n_groups and counts items per group into count. */
static int count_groups(size_t *count, const uint32_t *g, size_t n, size_t n_groups,
			const char *what, mb_error *err)
{
	memset(count, 0, n_groups * sizeof(*count));
	for (size_t i = 0; i < n; i++) {
		if (g[i] >= n_groups)
			return mb_error_set(err, MB_EINVALID, "item %zu: %s %u is not below %zu", i,
					    what, (unsigned)g[i], n_groups);
		count[g[i]]++;
	}
	return 0;
}

int mb_stats_clustered_estimate(mb_stats_estimate *out, const double *x, const uint32_t *cluster,
				size_t n, size_t n_clusters, double level, mb_error *err)
{
	double *csum = NULL, m, ss = 0.0, c;
	size_t *count = NULL;
	int error = check_sample(x, n, level, err);

	if (error < 0)
		return error;
	if (n_clusters < 2) {
		error = mb_error_set(err, MB_EINVALID,
				     "%zu cluster%s: a clustered SE needs at least 2", n_clusters,
				     n_clusters == 1 ? "" : "s");
		goto cleanup;
	}
	csum = calloc(n_clusters, sizeof(*csum));
	count = malloc(n_clusters * sizeof(*count));
	if (!csum || !count) {
		error = mb_error_oom(err, "cluster sums", n_clusters * (sizeof(*csum) + sizeof(*count)));
		goto cleanup;
	}
	error = count_groups(count, cluster, n, n_clusters, "cluster", err);
	if (error < 0)
		goto cleanup;
	for (size_t k = 0; k < n_clusters; k++)
		if (count[k] == 0) {
			error = mb_error_set(err, MB_EINVALID, "cluster %zu has no items", k);
			goto cleanup;
		}
	m = mb_stats_mean(x, n);
	for (size_t i = 0; i < n; i++)
		csum[cluster[i]] += x[i] - m;
	for (size_t k = 0; k < n_clusters; k++)
		ss += csum[k] * csum[k];
	c = (double)n_clusters;
	memset(out, 0, sizeof(*out));
	out->method = MB_STATS_METHOD_CLUSTERED_T;
	out->n = n;
	out->n_groups = n_clusters;
	out->mean = m;
	out->se = sqrt(c / (c - 1.0) * ss) / (double)n;
	out->se_naive = sqrt(mb_stats_var(x, n) / (double)n);
	out->deff = design_effect(out->se, out->se_naive);
	out->df = c - 1.0;
	fill_t_interval(out, level);
cleanup:
	free(csum);
	free(count);
	return error;
}

int mb_stats_stratified_estimate(mb_stats_estimate *out, const double *x, const uint32_t *stratum,
				 size_t n, const double *weights, size_t n_strata, double level,
				 mb_error *err)
{
	double *mean = NULL, *corr = NULL, *ss = NULL, wsum = 0.0, est = 0.0, var = 0.0, dfden = 0.0;
	size_t *count = NULL;
	int error = check_sample(x, n, level, err);

	if (error < 0)
		return error;
	if (n_strata < 1) {
		error = mb_error_set(err, MB_EINVALID, "no strata");
		goto cleanup;
	}
	for (size_t h = 0; h < n_strata; h++) {
		if (!isfinite(weights[h]) || weights[h] < 0.0) {
			error = mb_error_set(err, MB_EINVALID, "stratum %zu: weight %g is not >= 0", h,
					     weights[h]);
			goto cleanup;
		}
		wsum += weights[h];
	}
	if (fabs(wsum - 1.0) > 1e-9) {
		error = mb_error_set(err, MB_EINVALID, "stratum weights sum to %.17g, not 1", wsum);
		goto cleanup;
	}
	mean = calloc(n_strata, sizeof(*mean));
	corr = calloc(n_strata, sizeof(*corr));
	ss = calloc(n_strata, sizeof(*ss));
	count = malloc(n_strata * sizeof(*count));
	if (!mean || !corr || !ss || !count) {
		error = mb_error_oom(err, "stratum sums", n_strata * 4 * sizeof(double));
		goto cleanup;
	}
	error = count_groups(count, stratum, n, n_strata, "stratum", err);
	if (error < 0)
		goto cleanup;
	for (size_t h = 0; h < n_strata; h++)
		if (weights[h] > 0.0 && count[h] < 2) {
			error = mb_error_set(err, MB_EINVALID,
					     "stratum %zu has %zu item%s; a weighted stratum needs >= 2",
					     h, count[h], count[h] == 1 ? "" : "s");
			goto cleanup;
		}
	/* Two passes per stratum, in item order, like mb_stats_mean/var. */
	for (size_t i = 0; i < n; i++)
		mean[stratum[i]] += x[i];
	for (size_t h = 0; h < n_strata; h++)
		if (count[h] > 0)
			mean[h] /= (double)count[h];
	for (size_t i = 0; i < n; i++)
		corr[stratum[i]] += x[i] - mean[stratum[i]];
	for (size_t h = 0; h < n_strata; h++)
		if (count[h] > 0)
			mean[h] += corr[h] / (double)count[h];
	memset(corr, 0, n_strata * sizeof(*corr));
	for (size_t i = 0; i < n; i++) {
		double e = x[i] - mean[stratum[i]];
		ss[stratum[i]] += e * e;
		corr[stratum[i]] += e;
	}
	for (size_t h = 0; h < n_strata; h++) {
		double nh = (double)count[h], s2, v;
		if (weights[h] == 0.0)
			continue;
		s2 = (ss[h] - corr[h] * corr[h] / nh) / (nh - 1.0);
		v = weights[h] * weights[h] * s2 / nh;
		est += weights[h] * mean[h];
		var += v;
		dfden += v * v / (nh - 1.0);
	}
	memset(out, 0, sizeof(*out));
	out->method = MB_STATS_METHOD_STRATIFIED_T;
	out->n = n;
	out->n_groups = n_strata;
	out->mean = est;
	out->se = sqrt(var);
	out->se_naive = sqrt(mb_stats_var(x, n) / (double)n);
	out->deff = design_effect(out->se, out->se_naive);
	out->df = dfden > 0.0 ? var * var / dfden : INFINITY;
	fill_t_interval(out, level);
cleanup:
	free(mean);
	free(corr);
	free(ss);
	free(count);
	return error;
}

double mb_stats_estimate_p(const mb_stats_estimate *e, double m0, mb_stats_alternative alt)
{
	double t;

	if (e->method == MB_STATS_METHOD_BOOT_BCA || e->method == MB_STATS_METHOD_BOOT_PERCENTILE ||
	    e->method == MB_STATS_METHOD_NONE || !(e->se > 0.0))
		return NAN;
	t = (e->mean - m0) / e->se;
	switch (alt) {
	case MB_STATS_ALTERNATIVE_GREATER: return mb_stats_t_sf(t, e->df);
	case MB_STATS_ALTERNATIVE_LESS: return mb_stats_t_cdf(t, e->df);
	case MB_STATS_ALTERNATIVE_TWO_SIDED: break;
	}
	/* 2 P(T > |t|), from the upper tail so small p keep their digits. */
	return fmin(1.0, 2.0 * mb_stats_t_sf(fabs(t), e->df));
}

/* McNemar ---------------------------------------------------------------------- */

void mb_stats_mcnemar_counts(mb_stats_mcnemar *out, size_t n, size_t n10, size_t n01)
{
	uint64_t nd = (uint64_t)n10 + n01;

	MB_ASSERT(n >= n10 + n01);
	out->n = n;
	out->n10 = n10;
	out->n01 = n01;
	out->discordant_rate = n > 0 ? (double)nd / (double)n : 0.0;
	if (nd == 0) {
		out->p_two_sided = out->p_greater = out->p_less = 1.0;
		return;
	}
	/* X ~ Bin(nd, 1/2) counts the gains; by symmetry P(X >= n01) = P(X <= n10). */
	out->p_two_sided = fmin(1.0, 2.0 * mb_stats_binom_cdf(n10 < n01 ? n10 : n01, nd, 0.5));
	out->p_greater = mb_stats_binom_cdf(n10, nd, 0.5);
	out->p_less = mb_stats_binom_cdf(n01, nd, 0.5);
}

int mb_stats_mcnemar_exact(mb_stats_mcnemar *out, const double *cand, const double *base, size_t n,
			   mb_error *err)
{
	size_t n10 = 0, n01 = 0;

	for (size_t i = 0; i < n; i++) {
		if (cand[i] != 0.0 && cand[i] != 1.0)
			return mb_error_set(err, MB_EINVALID, "item %zu: candidate value %g is not 0 or 1",
					    i, cand[i]);
		if (base[i] != 0.0 && base[i] != 1.0)
			return mb_error_set(err, MB_EINVALID, "item %zu: baseline value %g is not 0 or 1",
					    i, base[i]);
		if (base[i] == 1.0 && cand[i] == 0.0)
			n10++;
		else if (base[i] == 0.0 && cand[i] == 1.0)
			n01++;
	}
	mb_stats_mcnemar_counts(out, n, n10, n01);
	return 0;
}
