/* PELT changepoints against exhaustive optimal partitioning (Python fixture
 * and an in-test O(n^2) programme on random series), and mSPRT against the
 * formulas in Python plus its always-valid type I error by simulation. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include <mechbench/rng.h>
#include <mechbench/sequential.h>

#include "stats/golden.h"

static void expect_same_cps(const size_t *got, size_t ngot, json_t *want, const char *label)
{
	cr_expect_eq(ngot, json_array_size(want), "%s: %zu changepoints, want %zu", label, ngot,
		     json_array_size(want));
	for (size_t i = 0; i < ngot && i < json_array_size(want); i++)
		cr_expect_eq(got[i], (size_t)golden_at(want, i), "%s: changepoint %zu: %zu vs %g",
			     label, i, got[i], golden_at(want, i));
}

Test(sequential, pelt_finds_the_optimal_partitioning_of_the_python_reference)
{
	json_t *root = golden_load("changepoints.json"), *cases = json_object_get(root, "cases");
	golden_diff g = {.what = "default penalty vs numpy", .tol = 1e-13};

	cr_assert(json_array_size(cases) >= 4);
	for (size_t k = 0; k < json_array_size(cases); k++) {
		json_t *c = json_array_get(cases, k);
		const char *name = json_string_value(json_object_get(c, "name"));
		size_t n, count, min_seg = (size_t)golden_field(c, "min_seg");
		double *y = golden_vec(c, "y", &n), pen = mb_stats_changepoint_penalty(y, n);
		size_t *cps = malloc(n * sizeof(*cps));
		mb_error err;

		golden_check(&g, pen, golden_field(c, "penalty"), name);
		cr_assert_eq(mb_stats_changepoints(cps, &count, y, n, pen, min_seg, &err), 0, "%s",
			     err.msg);
		expect_same_cps(cps, count, json_object_get(c, "changepoints"), name);
		cr_assert_eq(mb_stats_changepoints(cps, &count, y, n, 10.0, min_seg, &err), 0);
		expect_same_cps(cps, count, json_object_get(c, "changepoints_pen_10"), name);
		free(y);
		free(cps);
	}
	golden_report(&g);
	json_decref(root);
}

/* Exhaustive optimal partitioning with min_seg, ties to the earliest s. */
static size_t op_reference(size_t *out, const double *y, size_t n, double pen, size_t min_seg)
{
	double F[201];
	size_t last[201], count = 0;

	cr_assert(n <= 200);
	F[0] = -pen;
	for (size_t t = 1; t <= n; t++)
		F[t] = INFINITY;
	for (size_t t = min_seg; t <= n; t++) {
		for (size_t s = 0; s + min_seg <= t; s++) {
			double m = 0, c = 0, v;
			if (s != 0 && s < min_seg)
				continue;
			for (size_t i = s; i < t; i++)
				m += y[i];
			m /= (double)(t - s);
			for (size_t i = s; i < t; i++)
				c += (y[i] - m) * (y[i] - m);
			v = F[s] + c + pen;
			if (v < F[t] - 1e-9 * fabs(F[t]) || isinf(F[t])) {
				F[t] = v;
				last[t] = s;
			}
		}
	}
	for (size_t t = n; t > 0 && last[t] > 0; t = last[t])
		out[count++] = last[t];
	for (size_t i = 0; i < count / 2; i++) {
		size_t tmp = out[i];
		out[i] = out[count - 1 - i];
		out[count - 1 - i] = tmp;
	}
	return count;
}

Test(sequential, pelt_pruning_never_changes_the_optimum_on_random_series)
{
	mb_rng r;
	double y[200];
	size_t a[200], b[200], na, nb;
	mb_error err;

	for (int rep = 0; rep < 60; rep++) {
		size_t n = 40 + (size_t)(rep * 7 % 160), min_seg = 1 + (size_t)(rep % 4);
		double level = 0.0;
		mb_rng_init_named(&r, 77, "test/pelt", (uint64_t)rep);
		for (size_t i = 0; i < n; i++) {
			if (mb_rng_uniform(&r) < 0.04)
				level += 2.0 * mb_rng_normal(&r);
			y[i] = level + mb_rng_normal(&r);
		}
		cr_assert_eq(mb_stats_changepoints(a, &na, y, n, mb_stats_changepoint_penalty(y, n),
						   min_seg, &err), 0, "%s", err.msg);
		nb = op_reference(b, y, n, mb_stats_changepoint_penalty(y, n), min_seg);
		cr_expect_eq(na, nb, "series %d (n %zu, min_seg %zu): %zu vs %zu changepoints", rep, n,
			     min_seg, na, nb);
		cr_expect(na != nb || memcmp(a, b, na * sizeof(*a)) == 0, "series %d differs", rep);
		for (size_t i = 0; i < na; i++)
			cr_expect(a[i] >= min_seg && a[i] <= n - min_seg);
	}
}

Test(sequential, changepoints_reject_nan_and_bad_settings_and_accept_short_series)
{
	double y[] = {1, 2, NAN, 4};
	size_t cps[4], count = 99;
	mb_error err;

	cr_expect_eq(mb_stats_changepoints(cps, &count, y, 4, 1.0, 1, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "point 2") != NULL, "%s", err.msg);
	y[2] = 3;
	cr_expect_eq(mb_stats_changepoints(cps, &count, y, 4, -1.0, 1, &err), MB_EINVALID);
	cr_expect_eq(mb_stats_changepoints(cps, &count, y, 4, 1.0, 0, &err), MB_EINVALID);
	cr_assert_eq(mb_stats_changepoints(cps, &count, y, 4, 1.0, 3, &err), 0);
	cr_expect_eq(count, 0);
	cr_assert_eq(mb_stats_changepoints(cps, &count, y, 0, 1.0, 1, &err), 0);
	cr_expect_eq(count, 0);
	{
		double flat[] = {2, 2, 2, 2, 2, 2};
		cr_expect_eq(mb_stats_changepoint_penalty(flat, 6), 0.0);
		cr_assert_eq(mb_stats_changepoints(cps, &count, flat, 6, 0.0, 1, &err), 0);
		cr_expect_eq(count, 0, "a constant series has no changes even at penalty 0");
	}
}

Test(sequential, msprt_matches_the_python_formulas_step_by_step)
{
	json_t *root = golden_load("msprt.json"), *cases = json_object_get(root, "cases");
	golden_diff gp = {.what = "mSPRT p vs Python", .tol = 1e-10};
	golden_diff gc = {.what = "mSPRT confidence sequence vs Python", .tol = 1e-10};

	for (size_t k = 0; k < json_array_size(cases); k++) {
		json_t *c = json_array_get(cases, k);
		size_t n, n1, n2, n3;
		double *x = golden_vec(c, "x", &n), *p = golden_vec(c, "p", &n1);
		double *lo = golden_vec(c, "lo", &n2), *hi = golden_vec(c, "hi", &n3);
		mb_stats_msprt m;
		mb_error err;

		cr_assert_eq(mb_stats_msprt_init(&m, golden_field(c, "theta0"), golden_field(c, "sigma2"),
						 golden_field(c, "tau2"), golden_field(c, "alpha"), &err),
			     0, "%s", err.msg);
		cr_expect_eq(m.p, 1.0);
		for (size_t i = 0; i < n; i++) {
			mb_stats_msprt_update(&m, x[i]);
			golden_check(&gp, m.p, p[i], "p");
			golden_check(&gc, m.lo, lo[i], "lo");
			golden_check(&gc, m.hi, hi[i], "hi");
		}
		cr_expect_eq(m.n, n);
		free(x);
		free(p);
		free(lo);
		free(hi);
	}
	golden_report(&gp);
	golden_report(&gc);
	json_decref(root);
}

Test(sequential, msprt_keeps_type_one_error_below_alpha_under_continuous_peeking)
{
	/* 2,000 null sequences of 300 observations, checked after every one:
	 * a fixed-n test peeked at this often rejects far more than alpha; the
	 * mSPRT must stay at or below it (binomial SE at 0.05 is 0.005). */
	enum { R = 2000, T = 300 };
	int rejected = 0, naive = 0;
	mb_error err;

	for (int rep = 0; rep < R; rep++) {
		mb_rng r;
		mb_stats_msprt m;
		int hit = 0, naive_hit = 0;
		mb_rng_init_named(&r, 2024, "test/msprt-null", (uint64_t)rep);
		cr_assert_eq(mb_stats_msprt_init(&m, 0.0, 1.0, 0.25, 0.05, &err), 0);
		for (int i = 0; i < T; i++) {
			mb_stats_msprt_update(&m, mb_rng_normal(&r));
			if (mb_stats_msprt_rejected(&m))
				hit = 1;
			if (fabs(m.sum / sqrt((double)m.n)) > 1.959963984540054)
				naive_hit = 1;
		}
		rejected += hit;
		naive += naive_hit;
	}
	cr_log_info("mSPRT rejections %d / %d, naive repeated z-test %d", rejected, R, naive);
	cr_expect(rejected <= R * 0.05 + 2 * sqrt(R * 0.05 * 0.95), "mSPRT rejected %d of %d",
		  rejected, R);
	cr_expect(naive > R * 0.2, "naive peeking rejected only %d of %d", naive, R);
}

Test(sequential, msprt_detects_a_real_shift_and_its_sequence_covers_it)
{
	mb_rng r;
	mb_stats_msprt m;
	mb_error err;

	mb_rng_init_named(&r, 5, "test/msprt-alt", 0);
	cr_assert_eq(mb_stats_msprt_init(&m, 0.0, 1.0, 0.25, 0.05, &err), 0);
	for (int i = 0; i < 400; i++)
		mb_stats_msprt_update(&m, 0.4 + mb_rng_normal(&r));
	cr_expect(mb_stats_msprt_rejected(&m), "p = %g", m.p);
	cr_expect(m.lo < 0.4 && 0.4 < m.hi, "[%g, %g]", m.lo, m.hi);
	cr_expect(m.lo > 0.0);
	cr_expect_eq(mb_stats_msprt_init(&m, 0.0, 0.0, 0.25, 0.05, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "sigma2") != NULL, "%s", err.msg);
}
