/* verdict.c: verdicts under a non-inferiority margin, absolute thresholds,
 * TOST, and the per-metric comparison policy of HARNESS.md. */
#include <mechbench/stats.h>
#include <mechbench/verdict.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *mb_stats_verdict_name(mb_stats_verdict v)
{
	switch (v) {
	case MB_STATS_VERDICT_IDENTICAL: return "IDENTICAL";
	case MB_STATS_VERDICT_IMPROVED: return "IMPROVED";
	case MB_STATS_VERDICT_PASS: return "PASS";
	case MB_STATS_VERDICT_INCONCLUSIVE: return "INCONCLUSIVE";
	case MB_STATS_VERDICT_REGRESSED: return "REGRESSED";
	}
	return "UNKNOWN";
}

void mb_stats_orient(double *out_lo, double *out_hi, double lo, double hi, mb_stats_direction dir)
{
	if (dir == MB_STATS_DIRECTION_LOWER_IS_BETTER) {
		*out_lo = -hi;
		*out_hi = -lo;
	} else {
		*out_lo = lo;
		*out_hi = hi;
	}
}

mb_stats_verdict mb_stats_verdict_from_ci(double lo, double hi, double delta,
					  mb_stats_direction dir)
{
	double L, U;

	MB_ASSERT(delta >= 0.0);
	if (isnan(lo) || isnan(hi))
		return MB_STATS_VERDICT_INCONCLUSIVE;
	MB_ASSERT(lo <= hi);
	mb_stats_orient(&L, &U, lo, hi, dir);
	if (L > delta)
		return MB_STATS_VERDICT_IMPROVED;
	if (L > -delta)
		return MB_STATS_VERDICT_PASS;
	if (U < -delta)
		return MB_STATS_VERDICT_REGRESSED;
	return MB_STATS_VERDICT_INCONCLUSIVE;
}

mb_stats_verdict mb_stats_threshold_verdict(double lo, double hi, double threshold,
					    mb_stats_direction dir)
{
	double L, U, t = dir == MB_STATS_DIRECTION_LOWER_IS_BETTER ? -threshold : threshold;

	if (isnan(lo) || isnan(hi) || isnan(threshold))
		return MB_STATS_VERDICT_INCONCLUSIVE;
	mb_stats_orient(&L, &U, lo, hi, dir);
	if (L >= t)
		return MB_STATS_VERDICT_PASS;
	if (U < t)
		return MB_STATS_VERDICT_REGRESSED;
	return MB_STATS_VERDICT_INCONCLUSIVE;
}

static int is_bootstrap(const mb_stats_estimate *e)
{
	return e->method == MB_STATS_METHOD_BOOT_BCA || e->method == MB_STATS_METHOD_BOOT_PERCENTILE;
}

int mb_stats_tost_test(mb_stats_tost *out, const mb_stats_estimate *e, double delta, double alpha,
		       mb_error *err)
{
	if (!(delta > 0.0) || !isfinite(delta))
		return mb_error_set(err, MB_EINVALID, "TOST: margin %g is not > 0", delta);
	if (!(alpha > 0.0 && alpha < 0.5))
		return mb_error_set(err, MB_EINVALID, "TOST: alpha %g is not in (0, 0.5)", alpha);
	if (is_bootstrap(e) || e->method == MB_STATS_METHOD_NONE) {
		out->p_lower = out->p_upper = out->p = NAN;
		out->equivalent = e->lo > -delta && e->hi < delta;
		return 0;
	}
	if (e->se > 0.0) {
		out->p_lower = mb_stats_t_sf((e->mean + delta) / e->se, e->df);
		out->p_upper = mb_stats_t_cdf((e->mean - delta) / e->se, e->df);
	} else {
		/* No spread: the mean is known exactly. */
		out->p_lower = e->mean > -delta ? 0.0 : 1.0;
		out->p_upper = e->mean < delta ? 0.0 : 1.0;
	}
	out->p = fmax(out->p_lower, out->p_upper);
	out->equivalent = out->p < alpha;
	return 0;
}

/* The comparison policy ------------------------------------------------------- */

static int check_values(const double *v, size_t n, const char *which, mb_error *err)
{
	for (size_t i = 0; i < n; i++)
		if (!isfinite(v[i]))
			return mb_error_set(err, MB_EINVALID, "item %zu: %s value %g is not finite", i,
					    which, v[i]);
	return 0;
}

int mb_stats_policy_estimate(mb_stats_estimate *out, double *p_two_sided, const double *x,
			     size_t n, const mb_stats_policy *pol, double level, mb_error *err)
{
	size_t min_t = pol->min_clusters_t ? pol->min_clusters_t : 2;
	int error = 0, boot = 0;

	if (pol->stratum) {
		error = mb_stats_stratified_estimate(out, x, pol->stratum, n, pol->stratum_weights,
						     pol->n_strata, level, err);
	} else if (pol->kind == MB_STATS_KIND_RATIO) {
		boot = 1;
	} else if (pol->cluster) {
		if (pol->n_clusters >= min_t)
			error = mb_stats_clustered_estimate(out, x, pol->cluster, n, pol->n_clusters,
							    level, err);
		else
			boot = 1;
	} else {
		error = mb_stats_paired_estimate(out, x, n, level, err);
	}
	if (boot) {
		mb_stats_boot_opts bo = {
			.seed = pol->seed,
			.stream = pol->stream,
			.B = pol->boot_B,
			.level = level,
			.ci = pol->boot_ci,
			.cluster = pol->cluster,
			.n_clusters = pol->n_clusters,
			.p_two_sided = p_two_sided,
		};
		if (!pol->stream || !pol->stream[0])
			return mb_error_set(err, MB_EINVALID,
					    "a bootstrap is needed (%s) but no RNG stream was named",
					    pol->kind == MB_STATS_KIND_RATIO
						    ? "ratio metric"
						    : "fewer clusters than min_clusters_t");
		return mb_stats_bootstrap(out, NULL, x, n, &bo, err);
	}
	if (error == 0 && p_two_sided) {
		*p_two_sided = mb_stats_estimate_p(out, 0, MB_STATS_ALTERNATIVE_TWO_SIDED);
		if (isnan(*p_two_sided))
			*p_two_sided = out->se == 0 && out->mean != 0 ? 0 : 1;
	}
	return error;
}

int mb_stats_compare(mb_stats_comparison *out, const double *cand, const double *base, size_t n,
		     const mb_stats_compare_opts *opts, mb_error *err)
{
	double alpha = opts->alpha != 0.0 ? opts->alpha : 0.05, level, *d = NULL;
	int error = 0;

	if (!(alpha > 0.0 && alpha < 0.5))
		return mb_error_set(err, MB_EINVALID, "alpha %g is not in (0, 0.5)", alpha);
	if (!(opts->delta >= 0.0) || !isfinite(opts->delta))
		return mb_error_set(err, MB_EINVALID, "margin %g is not a finite number >= 0",
				    opts->delta);
	if (n == 0)
		return mb_error_set(err, MB_EINVALID, "no items to compare");
	if ((error = check_values(cand, n, "candidate", err)) < 0 ||
	    (error = check_values(base, n, "baseline", err)) < 0)
		return error;
	if (opts->stratum && opts->cluster)
		return mb_error_set(err, MB_EINVALID,
				    "strata and clusters together are not supported; give one");
	if (opts->stratum && !opts->stratum_weights)
		return mb_error_set(err, MB_EINVALID, "strata given without their registered weights");
	level = 1.0 - 2.0 * alpha;

	memset(out, 0, sizeof(*out));
	out->n = n;
	out->mean_cand = mb_stats_mean(cand, n);
	out->mean_base = mb_stats_mean(base, n);
	out->p_noninferior = NAN;
	if (opts->kind == MB_STATS_KIND_BINARY) {
		error = mb_stats_mcnemar_exact(&out->mcnemar, cand, base, n, err);
		if (error < 0)
			return error;
		out->has_mcnemar = 1;
	}
	if (mb_stats_items_identical(cand, base, n)) {
		out->verdict = MB_STATS_VERDICT_IDENTICAL;
		out->diff.method = MB_STATS_METHOD_NONE;
		out->diff.n = n;
		out->diff.deff = NAN;
		out->diff.level = level;
		out->p_two_sided = 1.0;
		return 0;
	}

	d = malloc(n * sizeof(*d));
	if (!d)
		return mb_error_oom(err, "paired differences", n * sizeof(*d));
	mb_stats_paired_diff(d, cand, base, n);

	{
		mb_stats_policy pol = {
			.kind = opts->kind,
			.cluster = opts->cluster,
			.n_clusters = opts->n_clusters,
			.stratum = opts->stratum,
			.stratum_weights = opts->stratum_weights,
			.n_strata = opts->n_strata,
			.seed = opts->seed,
			.stream = opts->stream,
			.boot_B = opts->boot_B,
			.boot_ci = opts->boot_ci,
			.min_clusters_t = opts->min_clusters_t,
		};
		error = mb_stats_policy_estimate(&out->diff, &out->p_two_sided, d, n, &pol, level,
						 err);
		if (out->has_mcnemar)
			out->p_two_sided = out->mcnemar.p_two_sided;
	}
	if (error < 0)
		goto cleanup;

	if (opts->direction == MB_STATS_DIRECTION_LOWER_IS_BETTER)
		out->p_noninferior = mb_stats_estimate_p(&out->diff, opts->delta, MB_STATS_ALTERNATIVE_LESS);
	else
		out->p_noninferior =
			mb_stats_estimate_p(&out->diff, -opts->delta, MB_STATS_ALTERNATIVE_GREATER);
	out->verdict = mb_stats_verdict_from_ci(out->diff.lo, out->diff.hi, opts->delta,
						opts->direction);
cleanup:
	free(d);
	return error;
}
