/* sae_verdict.c: the causal battery's verdict per feature (sae_verdict.h). */
#include <mechbench/sae_verdict.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/multiplicity.h>
#include <mechbench/stats.h>

/* Paired estimate of x[i] (- y[i] when y is set) over the i where both are
 * numbers; scratch holds n doubles. */
static int estimate(mb_stats_estimate *out, const double *x, const double *y, size_t n,
		    double level, double *scratch, mb_error *err)
{
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (!isnan(x[i]) && (!y || !isnan(y[i])))
			scratch[m++] = y ? x[i] - y[i] : x[i];
	memset(out, 0, sizeof(*out));
	out->n = m;
	if (m < 2) {
		out->mean = out->lo = out->hi = NAN;
		return 0;
	}
	return mb_stats_paired_estimate(out, scratch, m, level, err);
}

/* One-sided p of H1: mean > 0. */
static double p_greater(const mb_stats_estimate *e)
{
	if (e->n < 2 || isnan(e->mean))
		return 1.0;
	if (e->se == 0.0)
		return e->mean > 0.0 ? 0.0 : 1.0;
	double p = mb_stats_estimate_p(e, 0.0, MB_STATS_ALTERNATIVE_GREATER);
	return isnan(p) ? 1.0 : p;
}

int mb_sae_verdicts(mb_sae_verdict *out, double *pass_frac, const mb_sae_battery *b,
		    double level, double q, mb_error *err)
{
	const int F = b->n_features;
	const size_t n = b->n;
	double *scratch = NULL, *p = NULL;
	int error = 0, passed = 0;

	if (!(level > 0 && level < 1) || !(q > 0 && q < 1))
		return mb_error_set(err, MB_EINVALID,
				    "sae verdicts: level %g and q %g must be in (0, 1)", level, q);
	scratch = malloc((n ? n : 1) * sizeof(double));
	p = malloc((F ? 2 * (size_t)F : 1) * sizeof(double));
	if (!scratch || !p) {
		error = mb_error_oom(err, "sae verdicts", n * sizeof(double));
		goto cleanup;
	}
	for (int f = 0; f < F; f++) {
		mb_sae_verdict *v = &out[f];
		const size_t o = (size_t)f * n;
		memset(v, 0, sizeof(*v));
		if ((error = estimate(&v->necessity, b->necessity + o, NULL, n, level, scratch,
				      err)) < 0 ||
		    (error = estimate(&v->necessity_control, b->necessity_control + o, NULL, n,
				      level, scratch, err)) < 0 ||
		    (error = estimate(&v->necessity_excess, b->necessity + o,
				      b->necessity_control + o, n, level, scratch, err)) < 0 ||
		    (error = estimate(&v->steering, b->steering + o, NULL, n, level, scratch,
				      err)) < 0 ||
		    (error = estimate(&v->steering_control, b->steering_control + o, NULL, n,
				      level, scratch, err)) < 0 ||
		    (error = estimate(&v->steering_excess, b->steering + o,
				      b->steering_control + o, n, level, scratch, err)) < 0 ||
		    (error = estimate(&v->selectivity, b->selectivity + o, NULL, n, level, scratch,
				      err)) < 0 ||
		    (error = estimate(&v->collateral, b->collateral + o, NULL, n, level, scratch,
				      err)) < 0)
			goto cleanup;
		v->p_necessity = p[f] = p_greater(&v->necessity_excess);
		v->p_steering = p[F + f] = p_greater(&v->steering_excess);
	}
	if (F > 0 && ((error = mb_stats_bh(p, p, (size_t)F, err)) < 0 ||
		      (error = mb_stats_bh(p + F, p + F, (size_t)F, err)) < 0))
		goto cleanup;
	for (int f = 0; f < F; f++) {
		out[f].q_necessity = p[f];
		out[f].q_steering = p[F + f];
		out[f].pass = p[f] <= q && p[F + f] <= q;
		passed += out[f].pass;
	}
	if (pass_frac)
		*pass_frac = F > 0 ? (double)passed / F : 0.0;
cleanup:
	free(scratch);
	free(p);
	return error;
}

void mb_sae_pass_interval(double *lo, double *hi, int passed, int n, double level)
{
	if (n <= 0) {
		*lo = 0.0;
		*hi = 1.0;
		return;
	}
	const double z = mb_stats_norm_ppf(1.0 - (1.0 - level) / 2.0), z2 = z * z;
	const double p = (double)passed / n, den = 1.0 + z2 / n;
	const double c = (p + z2 / (2.0 * n)) / den;
	const double h = z / den * sqrt(p * (1.0 - p) / n + z2 / (4.0 * (double)n * n));
	/* the ends at 0 and n successes are exactly 0 and 1 */
	*lo = passed <= 0 ? 0.0 : fmax(0.0, c - h);
	*hi = passed >= n ? 1.0 : fmin(1.0, c + h);
}
