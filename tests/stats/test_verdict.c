/* Verdicts, absolute thresholds, TOST (against statsmodels ttost_paired) and
 * the per-metric comparison policy. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <string.h>

#include <mechbench/rng.h>
#include <mechbench/verdict.h>

#include "stats/golden.h"

#define HI MB_STATS_DIRECTION_HIGHER_IS_BETTER
#define LO MB_STATS_DIRECTION_LOWER_IS_BETTER

typedef struct verdict_case {
	int line;
	double lo, hi, delta;
	mb_stats_direction dir;
	mb_stats_verdict want;
} verdict_case;

static const verdict_case verdict_cases[] = {
	{__LINE__, 0.3, 0.9, 0.2, HI, MB_STATS_VERDICT_IMPROVED},
	{__LINE__, 0.2, 0.9, 0.2, HI, MB_STATS_VERDICT_PASS},      /* L = delta: not > delta */
	{__LINE__, -0.1, 0.1, 0.2, HI, MB_STATS_VERDICT_PASS},
	{__LINE__, -0.2, 0.1, 0.2, HI, MB_STATS_VERDICT_INCONCLUSIVE}, /* L = -delta */
	{__LINE__, -0.5, 0.1, 0.2, HI, MB_STATS_VERDICT_INCONCLUSIVE},
	{__LINE__, -0.5, -0.2, 0.2, HI, MB_STATS_VERDICT_INCONCLUSIVE}, /* U = -delta */
	{__LINE__, -0.5, -0.21, 0.2, HI, MB_STATS_VERDICT_REGRESSED},
	{__LINE__, -0.01, 0.01, 0.0, HI, MB_STATS_VERDICT_INCONCLUSIVE}, /* zero margin */
	{__LINE__, 0.001, 0.01, 0.0, HI, MB_STATS_VERDICT_IMPROVED},
	/* lower is better: the interval is flipped, (-hi, -lo) */
	{__LINE__, -0.9, -0.3, 0.2, LO, MB_STATS_VERDICT_IMPROVED},
	{__LINE__, -0.1, 0.1, 0.2, LO, MB_STATS_VERDICT_PASS},
	{__LINE__, 0.21, 0.5, 0.2, LO, MB_STATS_VERDICT_REGRESSED},
	{__LINE__, 0.3, 0.9, 0.2, LO, MB_STATS_VERDICT_REGRESSED},
	{__LINE__, -0.1, 0.5, 0.2, LO, MB_STATS_VERDICT_INCONCLUSIVE},
	{__LINE__, NAN, 0.5, 0.2, HI, MB_STATS_VERDICT_INCONCLUSIVE},
};

ParameterizedTestParameters(verdict, the_rule_on_interval_bounds_gives_each_verdict)
{
	return cr_make_param_array(verdict_case, verdict_cases,
				   sizeof(verdict_cases) / sizeof(verdict_cases[0]));
}

ParameterizedTest(const verdict_case *c, verdict, the_rule_on_interval_bounds_gives_each_verdict)
{
	mb_stats_verdict got = mb_stats_verdict_from_ci(c->lo, c->hi, c->delta, c->dir);
	cr_expect_eq(got, c->want, "line %d: [%g, %g] delta %g: got %s, want %s", c->line, c->lo,
		     c->hi, c->delta, mb_stats_verdict_name(got), mb_stats_verdict_name(c->want));
}

static const verdict_case threshold_cases[] = {
	/* lo, hi of the candidate's own mean, threshold in the delta slot */
	{__LINE__, 2.1, 2.6, 2.0, HI, MB_STATS_VERDICT_PASS},
	{__LINE__, 2.0, 2.6, 2.0, HI, MB_STATS_VERDICT_PASS}, /* ">= 2.0" */
	{__LINE__, 1.9, 2.6, 2.0, HI, MB_STATS_VERDICT_INCONCLUSIVE}, /* mean above, bound not */
	{__LINE__, 1.2, 1.9, 2.0, HI, MB_STATS_VERDICT_REGRESSED},
	{__LINE__, 0.01, 0.04, 0.05, LO, MB_STATS_VERDICT_PASS}, /* "<= 0.05" */
	{__LINE__, 0.03, 0.06, 0.05, LO, MB_STATS_VERDICT_INCONCLUSIVE},
	{__LINE__, 0.051, 0.06, 0.05, LO, MB_STATS_VERDICT_REGRESSED},
};

ParameterizedTestParameters(verdict, absolute_thresholds_are_judged_on_the_interval_bound)
{
	return cr_make_param_array(verdict_case, threshold_cases,
				   sizeof(threshold_cases) / sizeof(threshold_cases[0]));
}

ParameterizedTest(const verdict_case *c, verdict, absolute_thresholds_are_judged_on_the_interval_bound)
{
	mb_stats_verdict got = mb_stats_threshold_verdict(c->lo, c->hi, c->delta, c->dir);
	cr_expect_eq(got, c->want, "line %d: [%g, %g] threshold %g: got %s, want %s", c->line,
		     c->lo, c->hi, c->delta, mb_stats_verdict_name(got),
		     mb_stats_verdict_name(c->want));
}

Test(verdict, tost_matches_statsmodels_ttost_paired)
{
	json_t *root = golden_load("paired.json"), *sets = json_object_get(root, "sets");
	golden_diff g = {.what = "TOST vs statsmodels", .tol = 1e-10};
	static const char *keys[] = {"tost_0.05", "tost_0.2", "tost_1.0"};
	static const double deltas[] = {0.05, 0.2, 1.0};

	for (size_t k = 0; k < json_array_size(sets); k++) {
		json_t *s = json_array_get(sets, k);
		size_t n, nb;
		double *c = golden_vec(s, "cand", &n), *b = golden_vec(s, "base", &nb);
		double *d = malloc(n * sizeof(*d));
		mb_stats_estimate e;
		mb_error err;

		mb_stats_paired_diff(d, c, b, n);
		cr_assert_eq(mb_stats_paired_estimate(&e, d, n, 0.90, &err), 0, "%s", err.msg);
		for (size_t j = 0; j < 3; j++) {
			json_t *w = json_object_get(s, keys[j]);
			mb_stats_tost t;
			cr_assert_eq(mb_stats_tost_test(&t, &e, deltas[j], 0.05, &err), 0, "%s", err.msg);
			golden_check(&g, t.p, golden_field(w, "p"), keys[j]);
			golden_check(&g, t.p_lower, golden_field(w, "p_lower"), keys[j]);
			golden_check(&g, t.p_upper, golden_field(w, "p_upper"), keys[j]);
			/* Equivalent at alpha iff the 90% interval is inside the margins. */
			cr_expect_eq(t.equivalent, e.lo > -deltas[j] && e.hi < deltas[j],
				     "%s: p %g, interval [%g, %g]", keys[j], t.p, e.lo, e.hi);
		}
		free(c);
		free(b);
		free(d);
	}
	golden_report(&g);
	json_decref(root);
}

Test(verdict, tost_rejects_a_zero_margin)
{
	mb_stats_estimate e = {.method = MB_STATS_METHOD_PAIRED_T, .se = 1, .df = 5};
	mb_stats_tost t;
	mb_error err;

	cr_expect_eq(mb_stats_tost_test(&t, &e, 0.0, 0.05, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "margin") != NULL, "%s", err.msg);
	cr_expect_eq(mb_stats_tost_test(&t, &e, 0.1, 0.6, &err), MB_EINVALID);
}

/* Data for the policy tests: base ~ N(1, 1), cand = base + shift + noise. */
static void make_pair(double *cand, double *base, uint32_t *cl, size_t n, size_t C, double shift,
		      double cluster_sd, uint64_t seed)
{
	mb_rng r;
	double u[64] = {0};

	mb_rng_init_named(&r, seed, "test/verdict", 0);
	for (size_t k = 0; k < C && k < 64; k++)
		u[k] = cluster_sd * mb_rng_normal(&r);
	for (size_t i = 0; i < n; i++) {
		cl[i] = C ? (uint32_t)(i % C) : 0;
		base[i] = 1.0 + mb_rng_normal(&r);
		cand[i] = base[i] + shift + (C ? u[cl[i]] : 0.0) + 0.2 * mb_rng_normal(&r);
	}
}

Test(verdict, bitwise_equal_items_are_identical_and_nothing_else_runs)
{
	double a[] = {0.5, 1.5, 2.5}, b[] = {0.5, 1.5, 2.5};
	mb_stats_compare_opts o = {.kind = MB_STATS_KIND_RATIO, .delta = 0.1}; /* no stream: unused */
	mb_stats_comparison c;
	mb_error err;

	cr_assert_eq(mb_stats_compare(&c, a, b, 3, &o, &err), 0, "%s", err.msg);
	cr_expect_eq(c.verdict, MB_STATS_VERDICT_IDENTICAL);
	cr_expect_eq(c.diff.method, MB_STATS_METHOD_NONE);
	b[1] = nextafter(1.5, 2.0);
	cr_expect_eq(mb_stats_compare(&c, a, b, 3, &o, &err), MB_EINVALID,
		     "one ulp of difference needs the ratio bootstrap, which needs a stream");
	cr_expect(strstr(err.msg, "stream") != NULL, "%s", err.msg);
}

Test(verdict, policy_picks_paired_clustered_or_bootstrap_intervals)
{
	enum { N = 600 };
	static double cand[N], base[N];
	static uint32_t cl[N];
	mb_stats_comparison c;
	mb_error err;
	mb_stats_compare_opts o = {.kind = MB_STATS_KIND_CONTINUOUS, .delta = 0.05,
				   .seed = 1, .stream = "run/metric", .boot_B = 2000};

	make_pair(cand, base, cl, N, 40, 0.1, 0.3, 5);
	cr_assert_eq(mb_stats_compare(&c, cand, base, N, &o, &err), 0, "%s", err.msg);
	cr_expect_eq(c.diff.method, MB_STATS_METHOD_PAIRED_T);
	cr_expect_eq(c.diff.level, 0.9, "one-sided alpha 0.05 uses the 90%% interval");
	o.cluster = cl;
	o.n_clusters = 40;
	cr_assert_eq(mb_stats_compare(&c, cand, base, N, &o, &err), 0, "%s", err.msg);
	cr_expect_eq(c.diff.method, MB_STATS_METHOD_CLUSTERED_T);
	cr_expect_eq(c.diff.df, 39.0);
	cr_expect(c.diff.deff > 5.0, "deff %g", c.diff.deff);
	make_pair(cand, base, cl, N, 12, 0.1, 0.3, 5);
	o.n_clusters = 12;
	cr_assert_eq(mb_stats_compare(&c, cand, base, N, &o, &err), 0, "%s", err.msg);
	cr_expect_eq(c.diff.method, MB_STATS_METHOD_CLUSTERED_T, "C = 12: t with 11 df by default");
	cr_expect_eq(c.diff.df, 11.0);
	o.min_clusters_t = 30; /* ask for the cluster bootstrap below 30 clusters */
	cr_assert_eq(mb_stats_compare(&c, cand, base, N, &o, &err), 0, "%s", err.msg);
	cr_expect_eq(c.diff.method, MB_STATS_METHOD_BOOT_BCA, "C = 12 < 30: cluster bootstrap");
	cr_expect_eq(c.diff.n_groups, 12);
	cr_expect(isnan(c.p_noninferior));
	o.min_clusters_t = 0;
	o.cluster = NULL;
	o.n_clusters = 0;
	o.kind = MB_STATS_KIND_RATIO;
	o.boot_ci = MB_STATS_BOOT_CI_PERCENTILE;
	cr_assert_eq(mb_stats_compare(&c, cand, base, N, &o, &err), 0, "%s", err.msg);
	cr_expect_eq(c.diff.method, MB_STATS_METHOD_BOOT_PERCENTILE);
	cr_expect_eq(c.diff.n_groups, 0);
}

Test(verdict, a_clear_gain_a_clear_loss_and_a_small_change_get_their_verdicts)
{
	enum { N = 400 };
	static double cand[N], base[N];
	static uint32_t cl[N];
	mb_stats_comparison c;
	mb_error err;
	mb_stats_compare_opts o = {.kind = MB_STATS_KIND_CONTINUOUS, .delta = 0.05};

	make_pair(cand, base, cl, N, 0, 0.3, 0.0, 1);
	cr_assert_eq(mb_stats_compare(&c, cand, base, N, &o, &err), 0, "%s", err.msg);
	cr_expect_eq(c.verdict, MB_STATS_VERDICT_IMPROVED, "%s", mb_stats_verdict_name(c.verdict));
	cr_expect(c.p_noninferior < 1e-10);
	o.direction = LO; /* the same numbers are a loss when lower is better */
	cr_assert_eq(mb_stats_compare(&c, cand, base, N, &o, &err), 0, "%s", err.msg);
	cr_expect_eq(c.verdict, MB_STATS_VERDICT_REGRESSED, "%s", mb_stats_verdict_name(c.verdict));
	cr_expect(c.p_noninferior > 1.0 - 1e-10);
	o.direction = HI;
	make_pair(cand, base, cl, N, 0, 0.0, 0.0, 2);
	cr_assert_eq(mb_stats_compare(&c, cand, base, N, &o, &err), 0, "%s", err.msg);
	cr_expect_eq(c.verdict, MB_STATS_VERDICT_PASS, "%s [%g, %g]",
		     mb_stats_verdict_name(c.verdict), c.diff.lo, c.diff.hi);
	o.delta = 0.0;
	cr_assert_eq(mb_stats_compare(&c, cand, base, N, &o, &err), 0, "%s", err.msg);
	cr_expect_eq(c.verdict, MB_STATS_VERDICT_INCONCLUSIVE, "%s",
		     mb_stats_verdict_name(c.verdict));
}

Test(verdict, p_noninferior_is_the_one_sided_t_test_against_the_margin)
{
	json_t *root = golden_load("paired.json"), *s = json_array_get(json_object_get(root, "sets"), 1);
	size_t n, nb;
	double *c = golden_vec(s, "cand", &n), *b = golden_vec(s, "base", &nb);
	mb_stats_comparison cmp;
	mb_stats_compare_opts o = {.kind = MB_STATS_KIND_CONTINUOUS, .delta = 0.1};
	mb_error err;
	golden_diff g = {.what = "p_noninferior vs scipy ttest_1samp", .tol = 1e-10};

	cr_assert_eq(mb_stats_compare(&cmp, c, b, n, &o, &err), 0, "%s", err.msg);
	golden_check(&g, cmp.p_noninferior, golden_field(s, "p_greater_minus_0.1"), "higher");
	/* Lower is better: H0 diff >= +delta, i.e. scipy's "less than 0.1". */
	o.direction = LO;
	cr_assert_eq(mb_stats_compare(&cmp, c, b, n, &o, &err), 0, "%s", err.msg);
	golden_check(&g, cmp.p_noninferior, golden_field(s, "p_less_0.1"), "lower");
	golden_report(&g);
	free(c);
	free(b);
	json_decref(root);
}

Test(verdict, binary_metrics_carry_exact_mcnemar)
{
	double base[] = {1, 1, 1, 0, 0, 1, 0, 1, 1, 1};
	double cand[] = {1, 0, 1, 1, 1, 1, 1, 1, 1, 1};
	mb_stats_comparison c;
	mb_stats_compare_opts o = {.kind = MB_STATS_KIND_BINARY, .delta = 0.1};
	mb_error err;

	cr_assert_eq(mb_stats_compare(&c, cand, base, 10, &o, &err), 0, "%s", err.msg);
	cr_expect(c.has_mcnemar);
	cr_expect_eq(c.mcnemar.n10, 1);
	cr_expect_eq(c.mcnemar.n01, 3);
	cr_expect(fabs(c.mcnemar.p_two_sided - 0.625) < 1e-15, "%.17g", c.mcnemar.p_two_sided);
	cr_expect_eq(c.diff.method, MB_STATS_METHOD_PAIRED_T);
	cr_expect(fabs(c.diff.mean - 0.2) < 1e-15);
	cand[3] = 2.0;
	cr_expect_eq(mb_stats_compare(&c, cand, base, 10, &o, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "item 3") != NULL, "%s", err.msg);
}

Test(verdict, bad_inputs_and_options_are_named)
{
	double a[] = {1, 2, NAN}, b[] = {1, 2, 3};
	uint32_t ids[] = {0, 1, 0};
	double w[] = {0.5, 0.5};
	mb_stats_comparison c;
	mb_stats_compare_opts o = {.delta = 0.1};
	mb_error err;

	cr_expect_eq(mb_stats_compare(&c, a, b, 3, &o, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "item 2: candidate") != NULL, "%s", err.msg);
	a[2] = 3;
	o.alpha = 0.7;
	cr_expect_eq(mb_stats_compare(&c, a, b, 3, &o, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "alpha") != NULL, "%s", err.msg);
	o.alpha = 0.05;
	o.delta = -1;
	cr_expect_eq(mb_stats_compare(&c, a, b, 3, &o, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "margin") != NULL, "%s", err.msg);
	o.delta = 0.1;
	o.cluster = ids;
	o.n_clusters = 2;
	o.stratum = ids;
	o.stratum_weights = w;
	o.n_strata = 2;
	a[0] = 5;
	cr_expect_eq(mb_stats_compare(&c, a, b, 3, &o, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "strata and clusters") != NULL, "%s", err.msg);
	cr_expect_eq(mb_stats_compare(&c, a, b, 0, &o, &err), MB_EINVALID);
}
