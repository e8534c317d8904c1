/* Paired, clustered and stratified estimates and exact McNemar against
 * scipy/statsmodels (tests/fixtures/stats/{paired,clustered,mcnemar}.json). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include <mechbench/paired.h>

#include "stats/golden.h"

/* Interval arithmetic on top of 1e-10 quantiles: 1e-10 relative. */
#define EST_TOL 1e-10

static double *diffs(json_t *s, size_t *n)
{
	size_t nb;
	double *c = golden_vec(s, "cand", n), *b = golden_vec(s, "base", &nb), *d;

	cr_assert_eq(*n, nb);
	d = malloc(*n * sizeof(*d));
	mb_stats_paired_diff(d, c, b, *n);
	free(c);
	free(b);
	return d;
}

/* Interval bounds against the mpmath-quantile interval (1e-10 relative), and
 * against scipy/statsmodels' own interval relative to its width: scipy 1.10's
 * t.ppf is good to ~5e-9, so 1e-8 of the width is scipy's accuracy. */
static void check_ci(golden_diff *g, const mb_stats_estimate *e, json_t *s, const char *key)
{
	char skey[32];
	json_t *ci = json_object_get(s, key), *sci;
	double w;

	cr_assert(ci != NULL, "fixture has no %s", key);
	golden_check(g, e->lo, golden_at(ci, 0), key);
	golden_check(g, e->hi, golden_at(ci, 1), key);
	snprintf(skey, sizeof(skey), "%s_scipy", key);
	sci = json_object_get(s, skey);
	cr_assert(sci != NULL, "fixture has no %s", skey);
	w = golden_at(sci, 1) - golden_at(sci, 0);
	cr_expect(fabs(e->lo - golden_at(sci, 0)) <= 1e-8 * w && fabs(e->hi - golden_at(sci, 1)) <= 1e-8 * w,
		  "%s: [%.17g, %.17g] vs scipy [%.17g, %.17g]", skey, e->lo, e->hi, golden_at(sci, 0),
		  golden_at(sci, 1));
}

Test(paired, paired_t_interval_and_p_values_match_scipy)
{
	json_t *root = golden_load("paired.json"), *sets = json_object_get(root, "sets");
	golden_diff g = {.what = "paired-t vs scipy", .tol = EST_TOL};
	golden_diff gp = {.what = "paired p-values vs scipy", .tol = EST_TOL};

	cr_assert(json_array_size(sets) >= 3);
	for (size_t k = 0; k < json_array_size(sets); k++) {
		json_t *s = json_array_get(sets, k);
		size_t n;
		double *d = diffs(s, &n);
		mb_stats_estimate e95, e90;
		mb_error err;

		cr_assert_eq(mb_stats_paired_estimate(&e95, d, n, 0.95, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_stats_paired_estimate(&e90, d, n, 0.90, &err), 0, "%s", err.msg);
		cr_expect_eq(e95.method, MB_STATS_METHOD_PAIRED_T);
		cr_expect_eq(e95.df, golden_field(s, "df"));
		cr_expect_eq(e95.deff, 1.0);
		golden_check(&g, e95.mean, golden_field(s, "mean"), "mean");
		golden_check(&g, e95.se, golden_field(s, "se"), "se");
		check_ci(&g, &e95, s, "ci95");
		check_ci(&g, &e90, s, "ci90");
		golden_check(&gp, mb_stats_estimate_p(&e95, 0.0, MB_STATS_ALTERNATIVE_TWO_SIDED),
			     golden_field(s, "p_two_sided"), "two-sided");
		golden_check(&gp, mb_stats_estimate_p(&e95, -0.1, MB_STATS_ALTERNATIVE_GREATER),
			     golden_field(s, "p_greater_minus_0.1"), "greater than -0.1");
		golden_check(&gp, mb_stats_estimate_p(&e95, 0.1, MB_STATS_ALTERNATIVE_LESS),
			     golden_field(s, "p_less_0.1"), "less than 0.1");
		free(d);
	}
	golden_report(&g);
	golden_report(&gp);
	json_decref(root);
}

Test(paired, clustered_se_and_interval_match_statsmodels_cluster_robust_ols)
{
	json_t *root = golden_load("clustered.json"), *sets = json_object_get(root, "clustered");
	golden_diff g = {.what = "clustered-t vs statsmodels", .tol = EST_TOL};

	cr_assert(json_array_size(sets) >= 2);
	for (size_t k = 0; k < json_array_size(sets); k++) {
		json_t *s = json_array_get(sets, k);
		size_t n, nc;
		double *x = golden_vec(s, "x", &n);
		uint32_t *cl = golden_ids(s, "cluster", &nc);
		size_t C = (size_t)golden_field(s, "n_clusters");
		mb_stats_estimate e95, e90;
		mb_error err;

		cr_assert_eq(n, nc);
		cr_assert_eq(mb_stats_clustered_estimate(&e95, x, cl, n, C, 0.95, &err), 0, "%s",
			     err.msg);
		cr_assert_eq(mb_stats_clustered_estimate(&e90, x, cl, n, C, 0.90, &err), 0, "%s",
			     err.msg);
		cr_expect_eq(e95.method, MB_STATS_METHOD_CLUSTERED_T);
		cr_expect_eq(e95.n_groups, C);
		cr_expect_eq(e95.df, golden_field(s, "df"));
		golden_check(&g, e95.mean, golden_field(s, "mean"), "mean");
		golden_check(&g, e95.se, golden_field(s, "se"), "se");
		golden_check(&g, e95.se_naive, golden_field(s, "se_naive"), "se_naive");
		golden_check(&g, e95.deff, golden_field(s, "deff"), "deff");
		check_ci(&g, &e95, s, "ci95");
		check_ci(&g, &e90, s, "ci90");
		free(x);
		free(cl);
	}
	golden_report(&g);
	json_decref(root);
}

Test(paired, stratified_estimate_matches_the_weighted_formulas_in_numpy)
{
	json_t *root = golden_load("clustered.json"), *sets = json_object_get(root, "stratified");
	golden_diff g = {.what = "stratified-t vs numpy", .tol = EST_TOL};

	cr_assert(json_array_size(sets) >= 2);
	for (size_t k = 0; k < json_array_size(sets); k++) {
		json_t *s = json_array_get(sets, k);
		size_t n, ns, H;
		double *x = golden_vec(s, "x", &n), *w = golden_vec(s, "weights", &H);
		uint32_t *st = golden_ids(s, "stratum", &ns);
		mb_stats_estimate e95, e90;
		mb_error err;

		cr_assert_eq(mb_stats_stratified_estimate(&e95, x, st, n, w, H, 0.95, &err), 0, "%s",
			     err.msg);
		cr_assert_eq(mb_stats_stratified_estimate(&e90, x, st, n, w, H, 0.90, &err), 0, "%s",
			     err.msg);
		cr_expect_eq(e95.method, MB_STATS_METHOD_STRATIFIED_T);
		golden_check(&g, e95.mean, golden_field(s, "mean"), "mean");
		golden_check(&g, e95.se, golden_field(s, "se"), "se");
		golden_check(&g, e95.df, golden_field(s, "df"), "df");
		check_ci(&g, &e95, s, "ci95");
		check_ci(&g, &e90, s, "ci90");
		free(x);
		free(w);
		free(st);
	}
	golden_report(&g);
	json_decref(root);
}

Test(paired, exact_mcnemar_matches_statsmodels_and_binomtest)
{
	json_t *root = golden_load("mcnemar.json"), *cases = json_object_get(root, "cases");
	golden_diff g = {.what = "McNemar exact vs statsmodels/scipy", .tol = 1e-10};

	for (size_t k = 0; k < json_array_size(cases); k++) {
		json_t *c = json_array_get(cases, k);
		size_t n10 = (size_t)golden_field(c, "n10"), n01 = (size_t)golden_field(c, "n01");
		mb_stats_mcnemar m;
		char label[64];

		snprintf(label, sizeof(label), "n10=%zu n01=%zu", n10, n01);
		mb_stats_mcnemar_counts(&m, n10 + n01 + 100, n10, n01);
		golden_check(&g, m.p_two_sided, golden_field(c, "p_two_sided"), label);
		golden_check(&g, m.p_greater, golden_field(c, "p_greater"), label);
		golden_check(&g, m.p_less, golden_field(c, "p_less"), label);
	}
	golden_report(&g);
	json_decref(root);
}

Test(paired, mcnemar_counts_discordant_items_from_zero_one_values)
{
	const double base[] = {1, 1, 0, 0, 1, 0, 1, 1};
	const double cand[] = {1, 0, 1, 1, 0, 0, 1, 1};
	mb_stats_mcnemar m;
	mb_error err;

	cr_assert_eq(mb_stats_mcnemar_exact(&m, cand, base, 8, &err), 0, "%s", err.msg);
	cr_expect_eq(m.n10, 2);
	cr_expect_eq(m.n01, 2);
	cr_expect_eq(m.n, 8);
	cr_expect_eq(m.discordant_rate, 0.5);
	cr_expect_eq(m.p_two_sided, 1.0);
}

Test(paired, mcnemar_rejects_values_that_are_not_zero_or_one)
{
	const double base[] = {1, 0, 1};
	const double cand[] = {1, 0.5, 1};
	mb_stats_mcnemar m;
	mb_error err;

	cr_expect_eq(mb_stats_mcnemar_exact(&m, cand, base, 3, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "item 1: candidate value 0.5") != NULL, "%s", err.msg);
}

Test(paired, identical_means_bitwise_equal_not_numerically_equal)
{
	double a[] = {1.0, 0.0, 2.5}, b[] = {1.0, -0.0, 2.5}, c[] = {1.0, 0.0, 2.5};

	cr_expect_eq(mb_stats_items_identical(a, c, 3), 1);
	cr_expect_eq(mb_stats_items_identical(a, b, 3), 0, "0.0 and -0.0 differ in bits");
	cr_expect_eq(mb_stats_items_identical(a, b, 0), 1);
}

Test(paired, estimators_name_the_bad_item_cluster_or_stratum)
{
	double x[] = {1.0, 2.0, INFINITY, 4.0, 5.0, 6.0};
	double ok[] = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0};
	uint32_t cl[] = {0, 0, 1, 1, 3, 3}, cl_bad[] = {0, 0, 1, 7, 1, 0};
	double w[] = {0.5, 0.5}, wbad[] = {0.5, 0.6};
	uint32_t st[] = {0, 0, 0, 1, 1, 1}, st1[] = {0, 0, 0, 0, 0, 1};
	mb_stats_estimate e;
	mb_error err;

	cr_expect_eq(mb_stats_paired_estimate(&e, x, 6, 0.95, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "item 2") != NULL, "%s", err.msg);
	cr_expect_eq(mb_stats_paired_estimate(&e, ok, 1, 0.95, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "at least 2") != NULL, "%s", err.msg);
	cr_expect_eq(mb_stats_paired_estimate(&e, ok, 6, 1.0, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "level") != NULL, "%s", err.msg);
	cr_expect_eq(mb_stats_clustered_estimate(&e, ok, cl, 6, 4, 0.95, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "cluster 2 has no items") != NULL, "%s", err.msg);
	cr_expect_eq(mb_stats_clustered_estimate(&e, ok, cl_bad, 6, 2, 0.95, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "item 3: cluster 7") != NULL, "%s", err.msg);
	cr_expect_eq(mb_stats_clustered_estimate(&e, ok, cl, 6, 1, 0.95, &err), MB_EINVALID);
	cr_expect_eq(mb_stats_stratified_estimate(&e, ok, st, 6, wbad, 2, 0.95, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "sum to") != NULL, "%s", err.msg);
	cr_expect_eq(mb_stats_stratified_estimate(&e, ok, st1, 6, w, 2, 0.95, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "stratum 1 has 1 item") != NULL, "%s", err.msg);
	cr_assert_eq(mb_stats_stratified_estimate(&e, ok, st, 6, w, 2, 0.95, &err), 0, "%s", err.msg);
	cr_expect_eq(e.mean, 3.5);
}

Test(paired, zero_spread_gives_a_point_interval_and_no_p_value)
{
	double x[] = {0.25, 0.25, 0.25, 0.25};
	mb_stats_estimate e;
	mb_error err;

	cr_assert_eq(mb_stats_paired_estimate(&e, x, 4, 0.95, &err), 0, "%s", err.msg);
	cr_expect_eq(e.lo, 0.25);
	cr_expect_eq(e.hi, 0.25);
	cr_expect(isnan(mb_stats_estimate_p(&e, 0.0, MB_STATS_ALTERNATIVE_TWO_SIDED)));
}
