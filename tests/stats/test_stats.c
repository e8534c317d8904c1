/* Descriptive statistics and distributions against scipy/numpy golden values
 * (tests/fixtures/stats/distributions.json, paired.json). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include <mechbench/stats.h>

#include "stats/golden.h"

/* The bar: 1e-10 relative for every CDF and quantile, against the
 * mpmath references. scipy 1.10 is checked too, at its own accuracy: its t.ppf
 * (cephes stdtrit) is good to ~5e-9 only (fixture "how"). */
#define DIST_TOL 1e-10
#define SCIPY_T_PPF_TOL 1e-8

/* rows: [x, (df,) reference, scipy]; nargs is 1 or 2. */
static void check_table(json_t *rows, const char *what, int nargs, double (*f1)(double),
			double (*f2)(double, double), double scipy_tol)
{
	char gname[64], sname[64], label[64];
	golden_diff g = {.what = gname, .tol = DIST_TOL};
	golden_diff gs = {.what = sname, .tol = scipy_tol};

	snprintf(gname, sizeof(gname), "%s vs mpmath", what);
	snprintf(sname, sizeof(sname), "%s vs scipy", what);
	cr_assert(json_array_size(rows) > 5);
	for (size_t i = 0; i < json_array_size(rows); i++) {
		json_t *r = json_array_get(rows, i);
		double x = golden_at(r, 0), df = nargs == 2 ? golden_at(r, 1) : 0.0;
		double got = nargs == 2 ? f2(x, df) : f1(x);
		snprintf(label, sizeof(label), "x=%.17g df=%g", x, df);
		golden_check(&g, got, golden_at(r, (size_t)nargs), label);
		/* null: no trustworthy scipy value (fixture "how"). scipy's
		 * t.ppf(0.5) is 6.7e-17, not 0: skip it too. */
		if (json_is_null(json_array_get(r, (size_t)nargs + 1)))
			continue;
		if (golden_at(r, (size_t)nargs) == 0.0 && fabs(golden_at(r, (size_t)nargs + 1)) < 1e-15)
			continue;
		golden_check(&gs, got, golden_at(r, (size_t)nargs + 1), label);
	}
	golden_report(&g);
	golden_report(&gs);
}

Test(stats, normal_quantile_cdf_and_tail_match_mpmath_to_1e_10)
{
	json_t *root = golden_load("distributions.json"), *norm = json_object_get(root, "norm");

	check_table(json_object_get(norm, "ppf"), "norm.ppf", 1, mb_stats_norm_ppf, NULL, DIST_TOL);
	check_table(json_object_get(norm, "cdf"), "norm.cdf", 1, mb_stats_norm_cdf, NULL, DIST_TOL);
	check_table(json_object_get(norm, "sf"), "norm.sf", 1, mb_stats_norm_sf, NULL, DIST_TOL);
	json_decref(root);
}

Test(stats, student_t_quantile_cdf_and_tail_match_mpmath_to_1e_10)
{
	json_t *root = golden_load("distributions.json"), *t = json_object_get(root, "t");

	check_table(json_object_get(t, "ppf"), "t.ppf", 2, NULL, mb_stats_t_ppf, SCIPY_T_PPF_TOL);
	check_table(json_object_get(t, "cdf"), "t.cdf", 2, NULL, mb_stats_t_cdf, DIST_TOL);
	check_table(json_object_get(t, "sf"), "t.sf", 2, NULL, mb_stats_t_sf, DIST_TOL);
	json_decref(root);
}

static double beta_row(json_t *r)
{
	return mb_stats_beta_inc(golden_at(r, 0), golden_at(r, 1), golden_at(r, 2));
}

static double binom_row(json_t *r)
{
	return mb_stats_binom_cdf((uint64_t)golden_at(r, 0), (uint64_t)golden_at(r, 1),
				  golden_at(r, 2));
}

/* rows: [a, b, x, reference, scipy] / [k, n, p, reference, scipy] */
static void check_rows3(json_t *rows, const char *what, double (*fn)(json_t *))
{
	char gname[64], sname[64], label[96];
	golden_diff g = {.what = gname, .tol = DIST_TOL};
	golden_diff gs = {.what = sname, .tol = DIST_TOL};

	snprintf(gname, sizeof(gname), "%s vs reference", what);
	snprintf(sname, sizeof(sname), "%s vs scipy", what);
	cr_assert(json_array_size(rows) > 5);
	for (size_t i = 0; i < json_array_size(rows); i++) {
		json_t *r = json_array_get(rows, i);
		double got = fn(r);
		snprintf(label, sizeof(label), "%g %g %.17g", golden_at(r, 0), golden_at(r, 1),
			 golden_at(r, 2));
		golden_check(&g, got, golden_at(r, 3), label);
		golden_check(&gs, got, golden_at(r, 4), label);
	}
	golden_report(&g);
	golden_report(&gs);
}

Test(stats, incomplete_beta_and_binomial_cdf_match_references_to_1e_10)
{
	json_t *root = golden_load("distributions.json");

	check_rows3(json_object_get(root, "beta_inc"), "betainc", beta_row);
	check_rows3(json_object_get(root, "binom_cdf"), "binom.cdf", binom_row);
	json_decref(root);
}

Test(stats, quantiles_are_inverse_of_cdfs)
{
	golden_diff g = {.what = "t.cdf(t.ppf(p))", .tol = 1e-11};
	const double dfs[] = {1, 2.5, 7, 40, 1e4, INFINITY};
	char label[64];

	for (size_t k = 0; k < sizeof(dfs) / sizeof(dfs[0]); k++)
		for (double p = 0.0005; p < 1.0; p += 0.0371) {
			snprintf(label, sizeof(label), "p=%g df=%g", p, dfs[k]);
			golden_check(&g, mb_stats_t_cdf(mb_stats_t_ppf(p, dfs[k]), dfs[k]), p, label);
		}
	golden_report(&g);
}

Test(stats, distribution_edges_follow_the_contract)
{
	cr_expect(isinf(mb_stats_norm_ppf(0.0)) && mb_stats_norm_ppf(0.0) < 0);
	cr_expect(isinf(mb_stats_norm_ppf(1.0)) && mb_stats_norm_ppf(1.0) > 0);
	cr_expect(isnan(mb_stats_norm_ppf(1.5)));
	cr_expect(isnan(mb_stats_norm_ppf(NAN)));
	cr_expect(isnan(mb_stats_t_ppf(0.3, 0.0)));
	cr_expect(isnan(mb_stats_t_cdf(1.0, -2.0)));
	cr_expect_eq(mb_stats_t_ppf(0.5, 3.0), 0.0);
	cr_expect_eq(mb_stats_t_cdf(INFINITY, 3.0), 1.0);
	cr_expect_eq(mb_stats_t_sf(INFINITY, 3.0), 0.0);
	cr_expect_eq(mb_stats_t_cdf(1.3, INFINITY), mb_stats_norm_cdf(1.3));
	cr_expect_eq(mb_stats_binom_cdf(10, 10, 0.3), 1.0);
	cr_expect(isnan(mb_stats_beta_inc(-1.0, 2.0, 0.5)));
	cr_expect_eq(mb_stats_beta_inc(2.0, 3.0, 0.0), 0.0);
	cr_expect_eq(mb_stats_beta_inc(2.0, 3.0, 1.0), 1.0);
}

Test(stats, mean_sd_and_quantiles_match_numpy)
{
	json_t *root = golden_load("paired.json"), *sets = json_object_get(root, "sets");
	golden_diff g = {.what = "describe vs numpy", .tol = 1e-13};
	golden_diff gq = {.what = "type-7 quantile vs np.percentile", .tol = 1e-13};

	for (size_t k = 0; k < json_array_size(sets); k++) {
		json_t *s = json_array_get(sets, k), *qs = json_object_get(s, "quantiles");
		size_t n, nb;
		double *c = golden_vec(s, "cand", &n), *b = golden_vec(s, "base", &nb), *d, *sorted;
		mb_stats_summary sum;
		mb_error err;

		d = malloc(n * sizeof(*d));
		sorted = malloc(n * sizeof(*d));
		for (size_t i = 0; i < n; i++)
			d[i] = c[i] - b[i];
		cr_assert_eq(mb_stats_describe(&sum, d, n, &err), 0, "%s", err.msg);
		golden_check(&g, sum.mean, golden_field(s, "mean"), "mean");
		golden_check(&g, sum.sd, golden_field(s, "sd"), "sd");
		golden_check(&g, sum.se, golden_field(s, "se"), "se");
		golden_check(&g, sum.min, golden_field(s, "min"), "min");
		golden_check(&g, sum.max, golden_field(s, "max"), "max");
		memcpy(sorted, d, n * sizeof(*d));
		for (size_t i = 1; i < n; i++) /* insertion sort: small sets */
			for (size_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
				double t = sorted[j];
				sorted[j] = sorted[j - 1];
				sorted[j - 1] = t;
			}
		for (size_t i = 0; i < json_array_size(qs); i++) {
			json_t *q = json_array_get(qs, i);
			golden_check(&gq, mb_stats_quantile_sorted(sorted, n, golden_at(q, 0)),
				     golden_at(q, 1), "quantile");
		}
		free(c);
		free(b);
		free(d);
		free(sorted);
	}
	golden_report(&g);
	golden_report(&gq);
	json_decref(root);
}

Test(stats, describe_rejects_empty_input_and_names_a_nan_item)
{
	mb_stats_summary s;
	mb_error err;
	double x[] = {1.0, 2.0, NAN, 4.0};

	cr_expect_eq(mb_stats_describe(&s, x, 0, &err), MB_EINVALID);
	cr_expect_eq(mb_stats_describe(&s, x, 4, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "item 2") != NULL, "%s", err.msg);
	cr_assert_eq(mb_stats_describe(&s, x, 1, &err), 0);
	cr_expect_eq(s.sd, 0.0);
	cr_expect_eq(s.mean, 1.0);
}

Test(stats, mean_and_variance_are_accurate_for_large_offsets)
{
	/* 1e9 + small steps: the corrected two-pass sums keep the small parts;
	 * the reference is the same two passes in long double (64-bit mantissa). */
	double x[1000];
	long double sum = 0.0L, ss = 0.0L, m;
	double want_m, want_v;

	for (int i = 0; i < 1000; i++)
		x[i] = 1e9 + i * 1e-3;
	for (int i = 0; i < 1000; i++)
		sum += x[i];
	m = sum / 1000.0L;
	for (int i = 0; i < 1000; i++)
		ss += (x[i] - m) * (x[i] - m);
	want_m = (double)m;
	want_v = (double)(ss / 999.0L);
	cr_expect(fabs(mb_stats_mean(x, 1000) - want_m) <= 2e-16 * want_m, "mean %.17g want %.17g",
		  mb_stats_mean(x, 1000), want_m);
	cr_expect(fabs(mb_stats_var(x, 1000) - want_v) <= 1e-9 * want_v, "var %.17g want %.17g",
		  mb_stats_var(x, 1000), want_v);
}
