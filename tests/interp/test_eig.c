/*
 * eig: the deterministic eigenvalue routine against LAPACK's dgeev (the
 * independent implementation; OpenBLAS's build) on random, structured and
 * defective matrices of the sizes MI metrics use, with the max difference
 * printed, plus the trace invariant and bitwise repeatability.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/eig.h>

extern void dgeev_(const char *jobvl, const char *jobvr, const int *n, double *a, const int *lda,
		   double *wr, double *wi, double *vl, const int *ldvl, double *vr,
		   const int *ldvr, double *work, const int *lwork, int *info, size_t l1,
		   size_t l2);

static uint64_t seed = 5;

static double urand(void)
{
	seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
	return (double)(seed >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static int cmp_c(const void *pa, const void *pb)
{
	const double *a = pa, *b = pb;

	if (a[0] != b[0])
		return a[0] < b[0] ? -1 : 1;
	return a[1] < b[1] ? -1 : a[1] > b[1];
}

/* Max distance between the two spectra (sorted by real, then imaginary part;
 * ties of conjugate pairs sort the same way on both sides). */
static double spectra_diff(const double *re1, const double *im1, const double *re2,
			   const double *im2, int n)
{
	double *x = malloc(sizeof(double) * 4 * (size_t)n), *y = x + 2 * n, mx = 0;

	cr_assert(x);
	for (int i = 0; i < n; i++) {
		x[2 * i] = re1[i], x[2 * i + 1] = im1[i];
		y[2 * i] = re2[i], y[2 * i + 1] = im2[i];
	}
	qsort(x, (size_t)n, 2 * sizeof(double), cmp_c);
	qsort(y, (size_t)n, 2 * sizeof(double), cmp_c);
	for (int i = 0; i < n; i++) {
		double d = hypot(x[2 * i] - y[2 * i], x[2 * i + 1] - y[2 * i + 1]);
		mx = d > mx ? d : mx;
	}
	free(x);
	return mx;
}

static void check(const char *what, const double *a0, int n, double tol)
{
	double *a = malloc(sizeof(double) * (size_t)n * n), *b = malloc(sizeof(double) * (size_t)n * n);
	double *re = malloc(sizeof(double) * (size_t)n), *im = malloc(sizeof(double) * (size_t)n);
	double *lre = malloc(sizeof(double) * (size_t)n), *lim = malloc(sizeof(double) * (size_t)n);
	double *re2 = malloc(sizeof(double) * (size_t)n), *im2 = malloc(sizeof(double) * (size_t)n);
	int lwork = 8 * n + 8, info = 0, one = 1;
	double *work = malloc(sizeof(double) * (size_t)lwork), trace = 0, sum = 0, scale = 0, d;
	mb_error err;

	cr_assert(a && b && re && im && lre && lim && re2 && im2 && work);
	for (int i = 0; i < n * n; i++)
		scale = fmax(scale, fabs(a0[i]));
	for (int i = 0; i < n; i++)
		trace += a0[(size_t)i * n + i];
	memcpy(a, a0, sizeof(double) * (size_t)n * n);
	cr_assert_eq(mb_eig_real(re, im, a, n, &err), 0, "%s", err.msg);
	memcpy(a, a0, sizeof(double) * (size_t)n * n);
	cr_assert_eq(mb_eig_real(re2, im2, a, n, &err), 0);
	cr_expect(memcmp(re, re2, sizeof(double) * (size_t)n) == 0 &&
		  memcmp(im, im2, sizeof(double) * (size_t)n) == 0, "%s: not repeatable", what);
	/* LAPACK reads column-major: the transpose has the same eigenvalues */
	memcpy(b, a0, sizeof(double) * (size_t)n * n);
	dgeev_("N", "N", &n, b, &n, lre, lim, NULL, &one, NULL, &one, work, &lwork, &info, 1, 1);
	cr_assert_eq(info, 0);
	for (int i = 0; i < n; i++)
		sum += re[i];
	d = spectra_diff(re, im, lre, lim, n);
	printf("%-34s n %3d: max |ours - dgeev| %.3g (tolerance %.3g), |sum - trace| %.3g\n", what,
	       n, d, tol * (scale > 0 ? scale : 1), fabs(sum - trace));
	cr_expect(d <= tol * (scale > 0 ? scale : 1), "%s: eigenvalues differ from dgeev by %g",
		  what, d);
	cr_expect(fabs(sum - trace) <= 1e-9 * n * (scale > 0 ? scale : 1), "%s: trace", what);
	free(a), free(b), free(re), free(im), free(lre), free(lim), free(re2), free(im2), free(work);
}

Test(eig, matches_lapack_dgeev_on_random_matrices)
{
	static const int sizes[] = {1, 2, 3, 5, 8, 16, 32, 64};

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		int n = sizes[s];
		double *a = malloc(sizeof(double) * (size_t)n * n);
		char what[64];

		cr_assert(a);
		for (int i = 0; i < n * n; i++)
			a[i] = urand();
		snprintf(what, sizeof(what), "random");
		check(what, a, n, 1e-9);
		/* a low-rank product like an OV circuit: W_O (n x 4) W_V (4 x n) */
		for (int i = 0; i < n; i++)
			for (int j = 0; j < n; j++) {
				double v = 0;
				for (int k = 0; k < 4; k++)
					v += sin(1.0 + i * 0.7 + k) * cos(0.3 * j - k * 1.1);
				a[(size_t)i * n + j] = v;
			}
		check("rank 4", a, n, 1e-8);
		free(a);
	}
}

Test(eig, handles_symmetric_triangular_and_rotation_matrices)
{
	double rot[4] = {0, -1, 1, 0}, tri[9] = {1, 2, 3, 0, 4, 5, 0, 0, 6};
	double sym[36], badly[9] = {1, 1e6, 0, 1e-6, 1, 1e6, 0, 1e-6, 1};

	for (int i = 0; i < 6; i++)
		for (int j = 0; j <= i; j++)
			sym[i * 6 + j] = sym[j * 6 + i] = urand();
	check("rotation (eigenvalues +-i)", rot, 2, 1e-12);
	check("upper triangular", tri, 3, 1e-12);
	check("symmetric", sym, 6, 1e-10);
	check("badly scaled (balancing)", badly, 3, 1e-9);
}

Test(eig, rejects_non_finite_entries)
{
	double a[4] = {1, NAN, 0, 1}, re[2], im[2];
	mb_error err;

	cr_expect_eq(mb_eig_real(re, im, a, 2, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "not finite") != NULL, "%s", err.msg);
}
