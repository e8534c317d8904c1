/* Holm and Benjamini-Hochberg against statsmodels multipletests; per-gate
 * power of an intersection-union suite gate. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include <mechbench/multiplicity.h>

#include "stats/golden.h"

Test(multiplicity, holm_and_bh_match_statsmodels_multipletests)
{
	json_t *root = golden_load("multiplicity.json"), *cases = json_object_get(root, "cases");
	golden_diff gh = {.what = "Holm vs statsmodels", .tol = 1e-15};
	golden_diff gb = {.what = "BH vs statsmodels", .tol = 1e-15};

	cr_assert(json_array_size(cases) >= 4);
	for (size_t k = 0; k < json_array_size(cases); k++) {
		json_t *c = json_array_get(cases, k);
		size_t m, m2, m3;
		double *p = golden_vec(c, "p", &m), *holm = golden_vec(c, "holm", &m2);
		double *bh = golden_vec(c, "bh", &m3), *out = malloc(m * sizeof(*out));
		mb_error err;

		cr_assert_eq(mb_stats_holm(out, p, m, &err), 0, "%s", err.msg);
		for (size_t i = 0; i < m; i++)
			golden_check(&gh, out[i], holm[i], "holm");
		cr_assert_eq(mb_stats_bh(out, p, m, &err), 0, "%s", err.msg);
		for (size_t i = 0; i < m; i++)
			golden_check(&gb, out[i], bh[i], "bh");
		/* In place: out may alias p. */
		cr_assert_eq(mb_stats_bh(p, p, m, &err), 0, "%s", err.msg);
		cr_expect(memcmp(p, out, m * sizeof(*p)) == 0);
		free(p);
		free(holm);
		free(bh);
		free(out);
	}
	golden_report(&gh);
	golden_report(&gb);
	json_decref(root);
}

Test(multiplicity, a_p_value_outside_zero_one_is_named)
{
	double p[] = {0.01, 1.5, 0.2}, out[3];
	mb_error err;

	cr_expect_eq(mb_stats_holm(out, p, 3, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "p[1] = 1.5") != NULL, "%s", err.msg);
	p[1] = NAN;
	cr_expect_eq(mb_stats_bh(out, p, 3, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "p[1]") != NULL, "%s", err.msg);
	cr_expect_eq(mb_stats_bh(out, p, 0, &err), 0);
}

Test(multiplicity, each_gate_of_a_suite_is_sized_for_power_one_minus_beta_over_m)
{
	cr_expect(fabs(mb_stats_iut_gate_power(0.8, 1) - 0.8) < 1e-15);
	cr_expect(fabs(mb_stats_iut_gate_power(0.8, 4) - 0.95) < 1e-15);
	cr_expect(fabs(mb_stats_iut_gate_power(0.9, 10) - 0.99) < 1e-15);
	/* The union bound is conservative: m independent gates at that power
	 * pass together with probability >= the suite's target. */
	cr_expect(pow(mb_stats_iut_gate_power(0.8, 12), 12) >= 0.8);
}
