/* sequential.c: PELT changepoints in the mean, and the mixture SPRT.
 *
 * Legend: n points in the trajectory.
 */
#include <mechbench/sequential.h>
#include <mechbench/stats.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Median of v[0..n), n > 0; sorts v. */
static double median_inplace(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double mb_stats_changepoint_penalty(const double *y, size_t n)
{
	double *d, med, sigma, ln_n = log((double)n);
	size_t m;

	if (n < 3)
		return 0.0;
	m = n - 1;
	d = malloc(m * sizeof(*d));
	if (!d)
		return NAN;
	for (size_t i = 0; i < m; i++)
		d[i] = y[i + 1] - y[i];
	med = median_inplace(d, m);
	for (size_t i = 0; i < m; i++)
		d[i] = fabs(d[i] - med);
	/* A difference of two independent N(mu, s^2) points has SD s sqrt(2);
	 * 1.4826 MAD estimates an SD under normality. Mean shifts touch only the
	 * few differences that straddle them, which the median ignores. */
	sigma = 1.4826 * median_inplace(d, m) / sqrt(2.0);
	if (!(sigma > 0.0)) {
		/* Over half the differences equal (e.g. plateaus of repeated
		 * values): fall back to the plain SD of the differences, then of y. */
		for (size_t i = 0; i < m; i++)
			d[i] = y[i + 1] - y[i];
		sigma = sqrt(mb_stats_var(d, m) / 2.0);
		if (!(sigma > 0.0))
			sigma = sqrt(mb_stats_var(y, n));
	}
	free(d);
	return 2.0 * sigma * sigma * ln_n;
}

int mb_stats_changepoints(size_t *out, size_t *out_count, const double *y, size_t n,
			  double penalty, size_t min_seg, mb_error *err)
{
	double *s1 = NULL;      /* (n+1) prefix sums of y - centre */
	double *s2 = NULL;      /* (n+1) prefix sums of (y - centre)^2 */
	double *F = NULL;       /* (n+1) optimal cost of y[0..t) */
	size_t *last = NULL;    /* (n+1) last changepoint of that optimum */
	size_t *cand = NULL;    /* (n+1) PELT's candidate set, ascending */
	size_t *prune_at = NULL; /* (n+1) end at which each candidate is dropped */
	double centre = 0.0;
	size_t nc = 0, count = 0;
	int error = 0;

	*out_count = 0;
	if (!(penalty >= 0.0) || !isfinite(penalty))
		return mb_error_set(err, MB_EINVALID, "changepoint penalty %g is not a finite number >= 0",
				    penalty);
	if (min_seg == 0)
		return mb_error_set(err, MB_EINVALID, "minimum segment length must be >= 1");
	for (size_t i = 0; i < n; i++)
		if (!isfinite(y[i]))
			return mb_error_set(err, MB_EINVALID, "point %zu is %g, not a finite number", i,
					    y[i]);
	if (n < 2 * min_seg)
		return 0;

	s1 = malloc((n + 1) * sizeof(*s1));
	s2 = malloc((n + 1) * sizeof(*s2));
	F = malloc((n + 1) * sizeof(*F));
	last = malloc((n + 1) * sizeof(*last));
	cand = malloc((n + 1) * sizeof(*cand));
	prune_at = malloc((n + 1) * sizeof(*prune_at));
	if (!s1 || !s2 || !F || !last || !cand || !prune_at) {
		error = mb_error_oom(err, "changepoint tables", 6 * (n + 1) * sizeof(double));
		goto cleanup;
	}
	/* Prefix sums of the centred series: the segment cost
	 * sum (y - mean)^2 = S2 - S1^2 / len loses fewer digits near zero. */
	centre = mb_stats_mean(y, n);
	s1[0] = s2[0] = 0.0;
	for (size_t i = 0; i < n; i++) {
		double c = y[i] - centre;
		s1[i + 1] = s1[i] + c;
		s2[i + 1] = s2[i] + c * c;
	}
#define SEG_COST(a, b)                                                                            \
	((s2[b] - s2[a]) - (s1[b] - s1[a]) * (s1[b] - s1[a]) / (double)((b) - (a)))

	F[0] = -penalty;
	last[0] = 0;
	cand[nc] = 0;
	prune_at[nc++] = (size_t)-1;
	for (size_t t = min_seg; t <= n; t++) {
		double best = INFINITY;
		size_t arg = 0, keep = 0;

		/* t - min_seg becomes a candidate once its own segment can exist. */
		if (t >= 2 * min_seg) {
			cand[nc] = t - min_seg;
			prune_at[nc++] = (size_t)-1;
		}
		for (size_t j = 0; j < nc; j++) {
			size_t s = cand[j];
			double v = F[s] + SEG_COST(s, t) + penalty;
			if (v < best) { /* candidates ascend: ties keep the earlier s */
				best = v;
				arg = s;
			}
		}
		F[t] = best;
		last[t] = arg;
		/* PELT's pruning (Killick et al. 2012, Theorem 3.1 with K = 0, as the
		 * squared-error cost is additive-subadditive): once F[s] + C(s, t) > F[t],
		 * s can never be the last changepoint of a later optimum - but only
		 * for ends T >= t + min_seg, where t itself is a feasible changepoint;
		 * so the removal waits until then, keeping the result exact. */
		for (size_t j = 0; j < nc; j++) {
			size_t s = cand[j];
			if (prune_at[j] == (size_t)-1 && F[s] + SEG_COST(s, t) > F[t])
				prune_at[j] = t + min_seg;
			if (prune_at[j] != (size_t)-1 && t + 1 >= prune_at[j])
				continue; /* dropped before the next end t + 1 */
			cand[keep] = cand[j];
			prune_at[keep++] = prune_at[j];
		}
		nc = keep;
	}
#undef SEG_COST
	/* Backtrack from n through the last changepoints. */
	for (size_t t = n; t > 0 && last[t] > 0; t = last[t])
		out[count++] = last[t];
	for (size_t i = 0; i < count / 2; i++) {
		size_t tmp = out[i];
		out[i] = out[count - 1 - i];
		out[count - 1 - i] = tmp;
	}
	*out_count = count;
cleanup:
	free(s1);
	free(s2);
	free(F);
	free(last);
	free(cand);
	free(prune_at);
	return error;
}

/* mSPRT ------------------------------------------------------------------------ */

int mb_stats_msprt_init(mb_stats_msprt *m, double theta0, double sigma2, double tau2, double alpha,
			mb_error *err)
{
	if (!isfinite(theta0))
		return mb_error_set(err, MB_EINVALID, "mSPRT: theta0 %g is not finite", theta0);
	if (!(sigma2 > 0.0) || !isfinite(sigma2))
		return mb_error_set(err, MB_EINVALID, "mSPRT: sigma2 %g is not a finite number > 0",
				    sigma2);
	if (!(tau2 > 0.0) || !isfinite(tau2))
		return mb_error_set(err, MB_EINVALID, "mSPRT: tau2 %g is not a finite number > 0",
				    tau2);
	if (!(alpha > 0.0 && alpha < 1.0))
		return mb_error_set(err, MB_EINVALID, "mSPRT: alpha %g is not in (0, 1)", alpha);
	m->theta0 = theta0;
	m->sigma2 = sigma2;
	m->tau2 = tau2;
	m->alpha = alpha;
	m->n = 0;
	m->sum = 0.0;
	m->p = 1.0;
	m->lo = -INFINITY;
	m->hi = INFINITY;
	return 0;
}

void mb_stats_msprt_update(mb_stats_msprt *m, double x)
{
	double n, xbar, v, dev, log_lr, r;

	MB_ASSERT(isfinite(x));
	m->n++;
	m->sum += x;
	n = (double)m->n;
	xbar = m->sum / n;
	v = m->sigma2 + n * m->tau2;
	dev = xbar - m->theta0;
	log_lr = 0.5 * log(m->sigma2 / v) + n * n * m->tau2 * dev * dev / (2.0 * m->sigma2 * v);
	/* 1/Lambda, capped at 1 (p-values live in [0, 1]). */
	if (log_lr > 0.0 && exp(-log_lr) < m->p)
		m->p = exp(-log_lr);
	r = sqrt(2.0 * m->sigma2 * v / (n * n * m->tau2) * log(sqrt(v / m->sigma2) / m->alpha));
	if (xbar - r > m->lo)
		m->lo = xbar - r;
	if (xbar + r < m->hi)
		m->hi = xbar + r;
}

int mb_stats_msprt_rejected(const mb_stats_msprt *m)
{
	return m->p <= m->alpha;
}
