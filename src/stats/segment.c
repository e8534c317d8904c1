/* segment.c: exact segmentation into a given number of segments by
 * segment-neighbourhood dynamic programming (sequential.h).
 *
 * Legend: n points, c changepoints so far, C[i][j] the cost of points
 * i..j-1 (stored at C[i * (n + 1) + j]).
 */
#include <mechbench/sequential.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

const char *mb_stats_cost_name(mb_stats_cost c)
{
	switch (c) {
	case MB_STATS_COST_MEAN: return "mean";
	case MB_STATS_COST_LINEAR: return "linear";
	}
	return "?";
}

int mb_stats_cost_parse(const char *s, mb_stats_cost *out)
{
	if (strcmp(s, "mean") == 0)
		*out = MB_STATS_COST_MEAN;
	else if (strcmp(s, "linear") == 0)
		*out = MB_STATS_COST_LINEAR;
	else
		return -1;
	return 0;
}

/* The cost from the centred sums of a segment: Syy for a change in mean,
 * the residual Syy - Sxy^2 / Sxx of the least-squares line otherwise. */
static double cost_of(double sxx, double syy, double sxy, mb_stats_cost cost)
{
	double r = syy;
	if (cost == MB_STATS_COST_LINEAR && sxx > 0)
		r = syy - sxy * sxy / sxx;
	return r > 0 ? r : 0;
}

double mb_stats_segment_cost(const double *x, const double *y, size_t lo, size_t hi,
			     mb_stats_cost cost)
{
	double mx = 0, my = 0, sxx = 0, syy = 0, sxy = 0, k = (double)(hi - lo);

	for (size_t i = lo; i < hi; i++) {
		mx += x ? x[i] : (double)i;
		my += y[i];
	}
	mx /= k;
	my /= k;
	for (size_t i = lo; i < hi; i++) {
		double dx = (x ? x[i] : (double)i) - mx, dy = y[i] - my;
		sxx += dx * dx;
		syy += dy * dy;
		sxy += dx * dy;
	}
	return cost_of(sxx, syy, sxy, cost);
}

int mb_stats_segment(size_t *out, double *out_cost, const double *x, const double *y, size_t n,
		     size_t n_cp, mb_stats_cost cost, size_t min_seg, mb_error *err)
{
	size_t W = n + 1, S = n_cp + 1;
	double *C = NULL;   /* (n, n + 1) segment costs */
	double *F = NULL;   /* (n_cp + 1, n + 1) best cost of points 0..j-1 in c + 1 segments */
	size_t *A = NULL;   /* (n_cp + 1, n + 1) start of the last segment of that best */
	int error = 0;

	if (min_seg == 0)
		return mb_error_set(err, MB_EINVALID, "segmentation: min_seg must be >= 1");
	if (n_cp == 0)
		return mb_error_set(err, MB_EINVALID, "segmentation: needs at least one changepoint");
	if (n / S < min_seg)
		return mb_error_set(err, MB_EINVALID, "%zu points cannot hold %zu segments of at "
				    "least %zu", n, S, min_seg);
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(y[i]) || (x && !isfinite(x[i])))
			return mb_error_set(err, MB_EINVALID, "point %zu is %g, not a finite number",
					    i, isfinite(y[i]) ? x[i] : y[i]);
		if (x && i && x[i] < x[i - 1])
			return mb_error_set(err, MB_EINVALID, "point %zu: x %g comes after %g (x must "
					    "not decrease)", i, x[i], x[i - 1]);
	}
	if (W > SIZE_MAX / sizeof(double) / n || W > SIZE_MAX / sizeof(double) / S)
		return mb_error_oom(err, "segment costs", SIZE_MAX);
	C = malloc(n * W * sizeof(*C));
	F = malloc(S * W * sizeof(*F));
	A = malloc(S * W * sizeof(*A));
	if (!C || !F || !A) {
		error = mb_error_oom(err, "segment costs", n * W * sizeof(*C));
		goto cleanup;
	}
	/* Running (Welford) updates about the segment's means for each start i. */
	for (size_t i = 0; i < n; i++) {
		double mx = 0, my = 0, sxx = 0, syy = 0, sxy = 0;
		for (size_t j = i; j < n; j++) {
			double k = (double)(j - i + 1), xv = x ? x[j] : (double)j, dx = xv - mx,
			       dy = y[j] - my;
			mx += dx / k;
			my += dy / k;
			sxx += dx * (xv - mx);
			syy += dy * (y[j] - my);
			sxy += dx * (y[j] - my);
			C[i * W + j + 1] = cost_of(sxx, syy, sxy, cost);
		}
	}
	for (size_t j = 0; j <= n; j++) {
		F[j] = j >= min_seg ? C[j] : INFINITY; /* C[0 * W + j] */
		A[j] = 0;
	}
	for (size_t c = 1; c < S; c++) {
		double *Fc = F + c * W, *Fp = F + (c - 1) * W;
		size_t *Ac = A + c * W;
		for (size_t j = 0; j <= n; j++) {
			double best = INFINITY;
			size_t arg = 0;
			/* the last segment i..j-1: i >= c * min_seg, j - i >= min_seg;
			 * ascending i with a strict < keeps the earliest on ties */
			for (size_t i = c * min_seg; i + min_seg <= j; i++) {
				double v = Fp[i] + C[i * W + j];
				if (v < best) {
					best = v;
					arg = i;
				}
			}
			Fc[j] = best;
			Ac[j] = arg;
		}
	}
	{
		size_t j = n;
		for (size_t c = n_cp; c >= 1; c--) {
			j = A[c * W + j];
			out[c - 1] = j;
		}
	}
	if (out_cost)
		*out_cost = F[n_cp * W + n];
cleanup:
	free(C);
	free(F);
	free(A);
	return error;
}
