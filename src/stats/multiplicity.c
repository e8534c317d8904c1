/* multiplicity.c: Holm and Benjamini-Hochberg adjusted p-values, per-gate
 * power of an intersection-union suite gate. */
#include <mechbench/multiplicity.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct ranked {
	double p;
	size_t k; /* input position */
} ranked;

/* Ascending p, ties in input order (a stable order without a stable sort). */
static int cmp_ranked(const void *a, const void *b)
{
	const ranked *x = a, *y = b;

	if (x->p != y->p)
		return x->p < y->p ? -1 : 1;
	return (x->k > y->k) - (x->k < y->k);
}

/* Sorts p into *out_r (malloc'd) after checking each value. */
static int rank_pvalues(ranked **out_r, const double *p, size_t m, mb_error *err)
{
	ranked *r;

	for (size_t k = 0; k < m; k++)
		if (!(p[k] >= 0.0 && p[k] <= 1.0))
			return mb_error_set(err, MB_EINVALID, "p[%zu] = %g is not in [0, 1]", k, p[k]);
	r = malloc(m * sizeof(*r));
	if (!r)
		return mb_error_oom(err, "sorted p-values", m * sizeof(*r));
	for (size_t k = 0; k < m; k++) {
		r[k].p = p[k];
		r[k].k = k;
	}
	qsort(r, m, sizeof(*r), cmp_ranked);
	*out_r = r;
	return 0;
}

int mb_stats_holm(double *out, const double *p, size_t m, mb_error *err)
{
	ranked *r = NULL;
	double run = 0.0;
	int error;

	if (m == 0)
		return 0;
	error = rank_pvalues(&r, p, m, err);
	if (error < 0)
		return error;
	/* out may alias p: p is no longer read (r holds the values). */
	for (size_t j = 0; j < m; j++) {
		double a = (double)(m - j) * r[j].p; /* (m - j + 1) p_(j), 1-based j */
		if (a > run)
			run = a;
		out[r[j].k] = run < 1.0 ? run : 1.0;
	}
	free(r);
	return 0;
}

int mb_stats_bh(double *out, const double *p, size_t m, mb_error *err)
{
	ranked *r = NULL;
	double run = INFINITY;
	int error;

	if (m == 0)
		return 0;
	error = rank_pvalues(&r, p, m, err);
	if (error < 0)
		return error;
	for (size_t j = m; j-- > 0;) {
		/* p_(j) / (j/m) with 1-based j, in statsmodels' order of operations
		 * (ecdffactor = j/m), so the values agree to the last bit. */
		double a = r[j].p / ((double)(j + 1) / (double)m);
		if (a < run)
			run = a;
		out[r[j].k] = run < 1.0 ? run : 1.0;
	}
	free(r);
	return 0;
}

double mb_stats_iut_gate_power(double suite_power, size_t m)
{
	MB_ASSERT(suite_power > 0.0 && suite_power < 1.0);
	MB_ASSERT(m >= 1);
	return 1.0 - (1.0 - suite_power) / (double)m;
}
