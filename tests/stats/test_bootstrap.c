/* Seeded paired and cluster bootstrap: the interval step against scipy's BCa
 * (tests/fixtures/stats/bootstrap.json), determinism across thread counts,
 * and sanity of the resampling against the analytic SE. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include <mechbench/paired.h>
#include <mechbench/rng.h>
#include <mechbench/stats.h>

#include "stats/golden.h"

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* A set of bootstrap.json: x, its replicates sorted, and the leave-one-out
 * means (the jackknife of the mean, as scipy forms it). All malloc'd. */
static void load_set(json_t *s, double **x, size_t *n, double **reps, size_t *B, double **jack)
{
	double sum = 0.0;

	*x = golden_vec(s, "x", n);
	*reps = golden_vec(s, "replicates", B);
	*jack = malloc(*n * sizeof(**jack));
	cr_assert(*jack);
	for (size_t i = 0; i < *n; i++)
		sum += (*x)[i];
	for (size_t i = 0; i < *n; i++)
		(*jack)[i] = (sum - (*x)[i]) / (double)(*n - 1);
	qsort(*reps, *B, sizeof(**reps), cmp_double);
}

Test(bootstrap, bca_and_percentile_intervals_match_scipy_on_given_replicates)
{
	json_t *root = golden_load("bootstrap.json"), *sets = json_object_get(root, "sets");
	golden_diff g = {.what = "bootstrap interval vs scipy", .tol = 1e-12};
	static const struct {
		const char *key;
		double level;
		mb_stats_boot_ci ci;
	} cases[] = {{"bca95", 0.95, MB_STATS_BOOT_CI_BCA},
		     {"bca90", 0.90, MB_STATS_BOOT_CI_BCA},
		     {"percentile95", 0.95, MB_STATS_BOOT_CI_PERCENTILE},
		     {"percentile90", 0.90, MB_STATS_BOOT_CI_PERCENTILE}};

	cr_assert_eq(json_array_size(sets), 3);
	for (size_t k = 0; k < json_array_size(sets); k++) {
		json_t *s = json_array_get(sets, k);
		size_t n, B;
		double *x, *reps, *jack;

		load_set(s, &x, &n, &reps, &B, &jack);
		for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
			double lo, hi;
			mb_error err;
			json_t *want = json_object_get(s, cases[c].key);
			char label[64];

			snprintf(label, sizeof(label), "%s %s", json_string_value(json_object_get(s, "name")),
				 cases[c].key);
			cr_assert_eq(mb_stats_boot_interval(&lo, &hi, reps, B, golden_field(s, "theta_hat"),
							    jack, n, cases[c].level, cases[c].ci, &err),
				     0, "%s", err.msg);
			golden_check(&g, lo, golden_at(want, 0), label);
			golden_check(&g, hi, golden_at(want, 1), label);
		}
		free(x);
		free(reps);
		free(jack);
	}
	golden_report(&g);
	json_decref(root);
}

/* The interval inverted into a two-sided p-value (what the leaderboard ranks
 * with), against boot_p.json: the same inversion with the interval rebuilt
 * in numpy (gen_boot_p.py), on bootstrap.json's replicates. */
Test(bootstrap, p_value_inverts_the_interval_as_numpy_does)
{
	json_t *root = golden_load("bootstrap.json"), *sets = json_object_get(root, "sets");
	json_t *proot = golden_load("boot_p.json"), *psets = json_object_get(proot, "sets");
	/* both bisect to ~1e-12 absolute; the smallest p away from the floor is ~1e-3 */
	golden_diff g = {.what = "bootstrap p vs numpy", .tol = 5e-9};

	cr_assert_eq(json_array_size(psets), json_array_size(sets));
	for (size_t k = 0; k < json_array_size(sets); k++) {
		json_t *s = json_array_get(sets, k), *ps = json_array_get(psets, k);
		size_t n, B, n_m0;
		double *x, *reps, *jack, *m0 = golden_vec(ps, "m0", &n_m0);

		load_set(s, &x, &n, &reps, &B, &jack);
		for (int bca = 0; bca < 2; bca++) {
			json_t *want = json_object_get(ps, bca ? "bca" : "percentile");
			for (size_t j = 0; j < n_m0; j++) {
				double p;
				mb_error err;
				char label[64];
				snprintf(label, sizeof(label), "%s %s m0[%zu]",
					 json_string_value(json_object_get(s, "name")),
					 bca ? "bca" : "percentile", j);
				cr_assert_eq(mb_stats_boot_p(&p, reps, B, golden_field(s, "theta_hat"),
							     jack, n, m0[j],
							     bca ? MB_STATS_BOOT_CI_BCA
								 : MB_STATS_BOOT_CI_PERCENTILE,
							     &err),
					     0, "%s", err.msg);
				golden_check(&g, p, golden_at(want, j), label);
			}
		}
		free(x);
		free(reps);
		free(m0);
		free(jack);
	}
	golden_report(&g);
	json_decref(root);
	json_decref(proot);
}

/* The p of mb_stats_bootstrap's option is mb_stats_boot_p on its own
 * replicates, at m0 = 0, and asking for it leaves the interval as it was. */
Test(bootstrap, p_option_agrees_with_boot_p_and_leaves_the_interval_alone)
{
	enum { NX = 50, BR = 999 };
	double x[NX], reps[BR], jack[NX], sum = 0.0, p = -1, want;
	mb_stats_estimate plain, with_p;
	mb_stats_boot_opts bo = {.seed = 7, .stream = "p-option", .B = BR, .level = 0.95};
	mb_error err;

	for (size_t i = 0; i < NX; i++) {
		x[i] = 0.08 + 0.5 * sin(1.7 * (double)i) * sin(1.7 * (double)i) - 0.1;
		sum += x[i];
	}
	cr_assert_eq(mb_stats_bootstrap(&plain, reps, x, NX, &bo, &err), 0, "%s", err.msg);
	bo.p_two_sided = &p;
	cr_assert_eq(mb_stats_bootstrap(&with_p, NULL, x, NX, &bo, &err), 0, "%s", err.msg);
	cr_expect_eq(memcmp(&plain, &with_p, sizeof(plain)), 0);
	for (size_t i = 0; i < NX; i++)
		jack[i] = (sum - x[i]) / (double)(NX - 1);
	qsort(reps, BR, sizeof(*reps), cmp_double);
	cr_assert_eq(mb_stats_boot_p(&want, reps, BR, plain.mean, jack, NX, 0.0,
				     MB_STATS_BOOT_CI_BCA, &err), 0, "%s", err.msg);
	cr_expect_eq(p, want, "%.17g vs %.17g", p, want);
	cr_expect(p > 0 && p < 1, "%g", p);
}

/* A skewed sample with clusters, fixed by the seed. */
static void make_data(double *x, uint32_t *cl, size_t n, size_t C)
{
	mb_rng r;

	mb_rng_init_named(&r, 42, "test/bootstrap-data", 0);
	for (size_t i = 0; i < n; i++) {
		cl[i] = (uint32_t)(i % C);
		x[i] = exp(mb_rng_normal(&r)) + 0.3 * (double)(cl[i] % 5);
	}
}

static void run_boot(mb_stats_estimate *e, double *reps, size_t B, const double *x,
		     const uint32_t *cl, size_t n, size_t C, int threads, mb_stats_boot_ci ci)
{
	mb_stats_boot_opts o = {.seed = 7, .stream = "run1/ioi/logit_diff", .B = B,
				.level = 0.95, .ci = ci, .cluster = cl, .n_clusters = C};
	mb_error err;

	omp_set_num_threads(threads);
	cr_assert_eq(mb_stats_bootstrap(e, reps, x, n, &o, &err), 0, "%s", err.msg);
}

Test(bootstrap, results_are_bitwise_identical_at_one_and_two_threads)
{
	enum { N = 1500, C = 37, B = 3000 };
	static double x[N], r1[B], r2[B];
	static uint32_t cl[N];
	mb_stats_estimate e1, e2;

	make_data(x, cl, N, C);
	for (int clustered = 0; clustered < 2; clustered++)
		for (int ci = 0; ci < 2; ci++) {
			run_boot(&e1, r1, B, x, clustered ? cl : NULL, N, clustered ? C : 0, 1,
				 (mb_stats_boot_ci)ci);
			run_boot(&e2, r2, B, x, clustered ? cl : NULL, N, clustered ? C : 0, 2,
				 (mb_stats_boot_ci)ci);
			cr_expect(memcmp(r1, r2, sizeof(r1)) == 0, "replicates differ across threads");
			cr_expect(memcmp(&e1, &e2, sizeof(e1)) == 0,
				  "estimate differs across threads: [%.17g, %.17g] vs [%.17g, %.17g]",
				  e1.lo, e1.hi, e2.lo, e2.hi);
		}
}

Test(bootstrap, replicate_b_comes_from_its_own_named_stream)
{
	enum { N = 50, B = 20 };
	double x[N], reps[B];
	uint32_t cl[N];
	mb_stats_estimate e;

	make_data(x, cl, N, 5);
	run_boot(&e, reps, B, x, NULL, N, 0, 2, MB_STATS_BOOT_CI_PERCENTILE);
	/* Replicate 13 recomputed by hand from stream ("run1/ioi/logit_diff", 13). */
	{
		mb_rng r;
		double s = 0.0;
		mb_rng_init_named(&r, 7, "run1/ioi/logit_diff", 13);
		for (size_t j = 0; j < N; j++)
			s += x[mb_rng_range(&r, N)];
		cr_expect_eq(reps[13], s / N, "replicate 13: %.17g vs %.17g", reps[13], s / N);
	}
}

Test(bootstrap, another_stream_or_seed_gives_other_replicates)
{
	enum { N = 200, B = 100 };
	double x[N], a[B], b[B];
	uint32_t cl[N];
	mb_stats_estimate e;
	mb_stats_boot_opts o = {.seed = 7, .stream = "s1", .B = B, .level = 0.9,
				.ci = MB_STATS_BOOT_CI_PERCENTILE};
	mb_error err;

	make_data(x, cl, N, 5);
	cr_assert_eq(mb_stats_bootstrap(&e, a, x, N, &o, &err), 0);
	o.stream = "s2";
	cr_assert_eq(mb_stats_bootstrap(&e, b, x, N, &o, &err), 0);
	cr_expect(memcmp(a, b, sizeof(a)) != 0);
	o.stream = "s1";
	o.seed = 8;
	cr_assert_eq(mb_stats_bootstrap(&e, b, x, N, &o, &err), 0);
	cr_expect(memcmp(a, b, sizeof(a)) != 0);
	o.seed = 7;
	cr_assert_eq(mb_stats_bootstrap(&e, b, x, N, &o, &err), 0);
	cr_expect(memcmp(a, b, sizeof(a)) == 0);
}

Test(bootstrap, bootstrap_se_agrees_with_the_analytic_se)
{
	/* The SD of B = 10,000 replicate means estimates sd/sqrt(n) up to a
	 * factor sqrt((n-1)/n) with Monte Carlo error ~ 1/sqrt(2B) = 0.7%:
	 * a 3% band is over 4 standard errors wide. */
	enum { N = 400 };
	double x[N];
	uint32_t cl[N];
	mb_stats_estimate e, t;
	mb_stats_boot_opts o = {.seed = 1, .stream = "se-check", .B = 10000, .level = 0.95,
				.ci = MB_STATS_BOOT_CI_BCA};
	mb_error err;

	make_data(x, cl, N, 10);
	cr_assert_eq(mb_stats_bootstrap(&e, NULL, x, N, &o, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_stats_paired_estimate(&t, x, N, 0.95, &err), 0);
	cr_expect(fabs(e.se / (t.se * sqrt((N - 1.0) / N)) - 1.0) < 0.03, "boot se %g vs %g", e.se,
		  t.se);
	cr_expect_eq(e.mean, t.mean);
	cr_expect(e.lo < e.mean && e.mean < e.hi);
	cr_expect_eq(e.method, MB_STATS_METHOD_BOOT_BCA);
	cr_expect(isinf(e.df));
	/* Skewed data: BCa shifts the interval right of the symmetric one. */
	cr_expect(e.hi - e.mean > e.mean - e.lo, "BCa [%g, %g] around %g", e.lo, e.hi, e.mean);
}

Test(bootstrap, cluster_bootstrap_sees_the_design_effect)
{
	enum { N = 600, C = 20 };
	double x[N];
	uint32_t cl[N];
	mb_rng r;
	mb_stats_estimate e, ct;
	mb_stats_boot_opts o = {.seed = 3, .stream = "cluster-check", .B = 4000, .level = 0.95,
				.ci = MB_STATS_BOOT_CI_PERCENTILE, .n_clusters = C};
	mb_error err;
	double u[C];

	mb_rng_init_named(&r, 9, "test/cluster-data", 0);
	for (size_t k = 0; k < C; k++)
		u[k] = mb_rng_normal(&r);
	for (size_t i = 0; i < N; i++) {
		cl[i] = (uint32_t)(i % C);
		x[i] = u[cl[i]] + 0.5 * mb_rng_normal(&r);
	}
	o.cluster = cl;
	cr_assert_eq(mb_stats_bootstrap(&e, NULL, x, N, &o, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_stats_clustered_estimate(&ct, x, cl, N, C, 0.95, &err), 0);
	cr_expect_eq(e.n_groups, C);
	cr_expect(e.deff > 10.0, "cluster bootstrap deff %g", e.deff);
	/* Same sampling model: bootstrap SE ~ clustered SE * sqrt((C-1)/C). */
	cr_expect(fabs(e.se / (ct.se * sqrt((C - 1.0) / C)) - 1.0) < 0.05, "boot se %g clustered %g",
		  e.se, ct.se);
}

Test(bootstrap, bad_options_are_named)
{
	double x[] = {1, 2, 3, 4};
	uint32_t cl[] = {0, 0, 2, 2};
	mb_stats_estimate e;
	mb_stats_boot_opts o = {.seed = 1, .stream = NULL, .B = 100, .level = 0.95};
	mb_error err;

	cr_expect_eq(mb_stats_bootstrap(&e, NULL, x, 4, &o, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "stream") != NULL, "%s", err.msg);
	o.stream = "s";
	o.cluster = cl;
	o.n_clusters = 3;
	cr_expect_eq(mb_stats_bootstrap(&e, NULL, x, 4, &o, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "cluster 1 has no items") != NULL, "%s", err.msg);
	o.cluster = NULL;
	o.level = 0.0;
	cr_expect_eq(mb_stats_bootstrap(&e, NULL, x, 4, &o, &err), MB_EINVALID);
	o.level = 0.9;
	o.B = 1;
	cr_expect_eq(mb_stats_bootstrap(&e, NULL, x, 4, &o, &err), MB_EINVALID);
}

Test(bootstrap, degenerate_replicates_fall_back_to_the_percentile_interval)
{
	double sorted[] = {1.0, 1.0, 1.0, 1.0}, jack[] = {1.0, 1.0}, lo, hi;
	mb_error err;

	cr_assert_eq(mb_stats_boot_interval(&lo, &hi, sorted, 4, 1.0, jack, 2, 0.95,
					    MB_STATS_BOOT_CI_BCA, &err), 0);
	cr_expect_eq(lo, 1.0);
	cr_expect_eq(hi, 1.0);
	{
		double s2[] = {2.0, 3.0, 4.0, 5.0};
		cr_assert_eq(mb_stats_boot_interval(&lo, &hi, s2, 4, 1.0, jack, 2, 0.5,
						    MB_STATS_BOOT_CI_BCA, &err), 0);
		cr_expect_eq(lo, mb_stats_quantile_sorted(s2, 4, 0.25));
		cr_expect_eq(hi, mb_stats_quantile_sorted(s2, 4, 0.75));
	}
}
