/* bootstrap.c: seeded paired and cluster bootstrap of a mean, percentile and
 * BCa intervals (Efron & Tibshirani 1993, ch. 13-14; scipy.stats.bootstrap).
 *
 * Legend: n items, C clusters, B replicates.
 */
#include <mechbench/paired.h>
#include <mechbench/rng.h>
#include <mechbench/stats.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Type-7 quantile at p, p clamped into [0, 1]. */
static double quantile_clamped(const double *sorted, size_t B, double p)
{
	if (!(p > 0.0))
		p = 0.0;
	if (p > 1.0)
		p = 1.0;
	return mb_stats_quantile_sorted(sorted, B, p);
}

int mb_stats_boot_interval(double *out_lo, double *out_hi, const double *sorted, size_t B,
			   double theta_hat, const double *jack, size_t n_jack, double level,
			   mb_stats_boot_ci ci, mb_error *err)
{
	double alpha, p_lo, p_hi;

	if (B < 2)
		return mb_error_set(err, MB_EINVALID, "%zu bootstrap replicates; need at least 2", B);
	if (!(level > 0.0 && level < 1.0))
		return mb_error_set(err, MB_EINVALID, "confidence level %g is not in (0, 1)", level);
	alpha = 0.5 * (1.0 - level);
	p_lo = alpha;
	p_hi = 1.0 - alpha;
	if (ci == MB_STATS_BOOT_CI_BCA) {
		size_t less = 0, leq = 0;
		double prop, z0, zl, a = 0.0, jm = 0.0, num = 0.0, den = 0.0;

		if (n_jack < 2)
			return mb_error_set(err, MB_EINVALID,
					    "%zu jackknife values; BCa needs at least 2", n_jack);
		/* scipy's _percentile_of_score ("mean" kind): ties count half. */
		for (size_t b = 0; b < B; b++) {
			less += sorted[b] < theta_hat;
			leq += sorted[b] <= theta_hat;
		}
		prop = (double)(less + leq) / (2.0 * (double)B);
		for (size_t i = 0; i < n_jack; i++)
			jm += jack[i];
		jm /= (double)n_jack;
		for (size_t i = 0; i < n_jack; i++) {
			double d = jm - jack[i];
			num += d * d * d;
			den += d * d;
		}
		if (den > 0.0)
			a = num / (6.0 * den * sqrt(den));
		/* Every replicate on one side of theta_hat: z0 is infinite and BCa has
		 * nothing to say; the percentile interval is the honest fallback. */
		if (prop > 0.0 && prop < 1.0) {
			double n1, n2, q1, q2;
			z0 = mb_stats_norm_ppf(prop);
			zl = mb_stats_norm_ppf(alpha);
			n1 = z0 + zl;
			n2 = z0 - zl;
			q1 = mb_stats_norm_cdf(z0 + n1 / (1.0 - a * n1));
			q2 = mb_stats_norm_cdf(z0 + n2 / (1.0 - a * n2));
			if (isfinite(q1) && isfinite(q2) && q1 <= q2) {
				p_lo = q1;
				p_hi = q2;
			}
		}
	}
	*out_lo = quantile_clamped(sorted, B, p_lo);
	*out_hi = quantile_clamped(sorted, B, p_hi);
	return 0;
}

int mb_stats_boot_p(double *out_p, const double *sorted, size_t B, double theta_hat,
		    const double *jack, size_t n_jack, double m0, mb_stats_boot_ci ci,
		    mb_error *err)
{
	double floor_p = 2.0 / ((double)B + 1.0), lo_a, hi_a, l, h;
	int error;

	/* excludes(a): the interval at level 1 - a leaves m0 out; false for
	 * small a and true for large a (nested intervals). */
#define EXCLUDES(a)                                                                              	((error = mb_stats_boot_interval(&l, &h, sorted, B, theta_hat, jack, n_jack, 1.0 - (a),  					 ci, err)) == 0 &&                                       	 (l > m0 || h < m0))
	*out_p = 1.0;
	if (EXCLUDES(floor_p)) {
		*out_p = floor_p;
		return 0;
	}
	if (error < 0)
		return error;
	lo_a = floor_p; /* keeps m0 */
	hi_a = 1.0 - 1e-12;
	if (!EXCLUDES(hi_a))
		return error; /* the narrowest interval holds m0: p = 1 */
	while (hi_a - lo_a > 1e-12) {
		double mid = 0.5 * (lo_a + hi_a);
		if (EXCLUDES(mid))
			hi_a = mid;
		else if (error < 0)
			return error;
		else
			lo_a = mid;
	}
#undef EXCLUDES
	*out_p = hi_a;
	return 0;
}

int mb_stats_bootstrap(mb_stats_estimate *out, double *replicates, const double *x, size_t n,
		       const mb_stats_boot_opts *opts, mb_error *err)
{
	size_t B = opts->B ? opts->B : MB_STATS_BOOT_DEFAULT_B;
	size_t C = opts->cluster ? opts->n_clusters : 0, n_jack;
	double *reps = NULL;   /* (B) replicate b in slot b */
	double *sorted = NULL; /* (B) sorted copy of reps */
	double *jack = NULL;   /* (n) or (C): leave-one-out means */
	double *csum = NULL;   /* (C) sum of x over each cluster */
	double *csize = NULL;  /* (C) items in each cluster */
	double theta, sum = 0.0, lo, hi;
	const char *stream = opts->stream;
	uint64_t seed = opts->seed;
	int error = 0;

	if (n < 2)
		return mb_error_set(err, MB_EINVALID, "%zu item%s: a bootstrap needs at least 2", n,
				    n == 1 ? "" : "s");
	if (!stream || !stream[0])
		return mb_error_set(err, MB_EINVALID, "bootstrap: no RNG stream name");
	if (B < 2)
		return mb_error_set(err, MB_EINVALID, "bootstrap: B = %zu; need at least 2", B);
	if (!(opts->level > 0.0 && opts->level < 1.0))
		return mb_error_set(err, MB_EINVALID, "confidence level %g is not in (0, 1)",
				    opts->level);
	for (size_t i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return mb_error_set(err, MB_EINVALID, "item %zu: value %g is not finite", i,
					    x[i]);
	if (opts->cluster && C < 2)
		return mb_error_set(err, MB_EINVALID,
				    "%zu cluster%s: a cluster bootstrap needs at least 2", C,
				    C == 1 ? "" : "s");

	n_jack = C ? C : n;
	reps = replicates ? replicates : malloc(B * sizeof(*reps));
	sorted = malloc(B * sizeof(*sorted));
	jack = malloc(n_jack * sizeof(*jack));
	if (C) {
		csum = calloc(C, sizeof(*csum));
		csize = calloc(C, sizeof(*csize));
	}
	if (!reps || !sorted || !jack || (C && (!csum || !csize))) {
		error = mb_error_oom(err, "bootstrap replicates", (2 * B + n_jack + 2 * C) * sizeof(double));
		goto cleanup;
	}

	for (size_t i = 0; i < n; i++)
		sum += x[i];
	if (C) {
		for (size_t i = 0; i < n; i++) {
			uint32_t k = opts->cluster[i];
			if (k >= C) {
				error = mb_error_set(err, MB_EINVALID, "item %zu: cluster %u is not below %zu",
						     i, (unsigned)k, C);
				goto cleanup;
			}
			csum[k] += x[i];
			csize[k] += 1.0;
		}
		for (size_t k = 0; k < C; k++)
			if (csize[k] == 0.0) {
				error = mb_error_set(err, MB_EINVALID, "cluster %zu has no items", k);
				goto cleanup;
			}
	}

	/* Replicate b: its own named stream, its own slot. No shared state, so
	 * the schedule cannot change a bit. */
	if (C) {
#pragma omp parallel for schedule(static)
		for (size_t b = 0; b < B; b++) {
			mb_rng r;
			double s = 0.0, m = 0.0;
			mb_rng_init_named(&r, seed, stream, b);
			for (size_t j = 0; j < C; j++) {
				size_t k = (size_t)mb_rng_range(&r, C);
				s += csum[k];
				m += csize[k];
			}
			reps[b] = s / m;
		}
		for (size_t k = 0; k < C; k++)
			jack[k] = (sum - csum[k]) / ((double)n - csize[k]);
	} else {
#pragma omp parallel for schedule(static)
		for (size_t b = 0; b < B; b++) {
			mb_rng r;
			double s = 0.0;
			mb_rng_init_named(&r, seed, stream, b);
			for (size_t j = 0; j < n; j++)
				s += x[mb_rng_range(&r, n)];
			reps[b] = s / (double)n;
		}
		for (size_t i = 0; i < n; i++)
			jack[i] = (sum - x[i]) / (double)(n - 1);
	}
	for (size_t b = 0; b < B; b++)
		if (!isfinite(reps[b])) {
			error = mb_error_set(err, MB_EINVALID,
					     "bootstrap replicate %zu is not finite (values too large)", b);
			goto cleanup;
		}

	memcpy(sorted, reps, B * sizeof(*sorted));
	qsort(sorted, B, sizeof(*sorted), cmp_double);
	theta = mb_stats_mean(x, n);
	error = mb_stats_boot_interval(&lo, &hi, sorted, B, theta, jack, n_jack, opts->level,
				       opts->ci, err);
	if (error == 0 && opts->p_two_sided)
		error = mb_stats_boot_p(opts->p_two_sided, sorted, B, theta, jack, n_jack, 0.0,
					opts->ci, err);
	if (error < 0)
		goto cleanup;

	memset(out, 0, sizeof(*out));
	out->method = opts->ci == MB_STATS_BOOT_CI_BCA ? MB_STATS_METHOD_BOOT_BCA
						       : MB_STATS_METHOD_BOOT_PERCENTILE;
	out->n = n;
	out->n_groups = C;
	out->mean = theta;
	out->se = sqrt(mb_stats_var(reps, B));
	out->se_naive = sqrt(mb_stats_var(x, n) / (double)n);
	out->deff = out->se_naive > 0.0 ? out->se * out->se / (out->se_naive * out->se_naive) : NAN;
	out->df = INFINITY;
	out->level = opts->level;
	out->lo = lo;
	out->hi = hi;
cleanup:
	if (reps != replicates)
		free(reps);
	free(sorted);
	free(jack);
	free(csum);
	free(csize);
	return error;
}
