/*
 * logits: the shared cross-entropy / probability / logit-difference toolkit
 * against an independent long-double log-sum-exp (1e-13 relative), the
 * first-argmax rule on ties, both math modes, and the pinned evaluation order
 * (logits.h) bit for bit, since stored metrics and zoo checkpoints depend on it.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include <mechbench/detmath.h>
#include <mechbench/logits.h>
#include <mechbench/rng.h>

#define V 97

static void row(float *z, uint64_t index)
{
	mb_rng r;
	mb_rng_init_named(&r, 7, "test/logits", index);
	for (int v = 0; v < V; v++)
		z[v] = (float)(8.0 * mb_rng_uniform(&r) - 4.0);
}

/* -log softmax(z)[t] in long double, shifted by the mean (not the max) so the
 * order differs from the code under test. */
static long double ref_ce(const float *z, int t)
{
	long double mean = 0, s = 0;
	for (int v = 0; v < V; v++)
		mean += z[v];
	mean /= V;
	for (int v = 0; v < V; v++)
		s += expl((long double)z[v] - mean);
	return mean + logl(s) - (long double)z[t];
}

Test(logits, cross_entropy_matches_a_long_double_reference_in_both_math_modes)
{
	float z[V];
	double worst = 0;

	for (uint64_t i = 0; i < 50; i++) {
		row(z, i);
		for (int t = 0; t < V; t += 7) {
			long double ref = ref_ce(z, t);
			for (int m = 0; m < 2; m++) {
				double ce = mb_logits_ce(NULL, z, V, t, (mb_logits_math)m);
				double d = fabs((double)(ce - ref)) / fmax(1.0, fabs((double)ref));
				worst = fmax(worst, d);
			}
		}
	}
	cr_log_info("max relative difference %.3g", worst);
	cr_expect_lt(worst, 1e-13, "max relative difference %.3g", worst);
}

Test(logits, probability_is_exp_of_minus_cross_entropy_and_sums_to_one)
{
	float z[V];
	double sum = 0;

	row(z, 99);
	for (int t = 0; t < V; t++) {
		double p = mb_logits_prob(z, V, t, MB_LOGITS_LIBM);
		cr_expect_float_eq(p, exp(-mb_logits_ce(NULL, z, V, t, MB_LOGITS_LIBM)), 1e-14);
		sum += p;
	}
	cr_expect_float_eq(sum, 1.0, 1e-13, "sum %.17g", sum);
}

Test(logits, argmax_takes_the_first_index_on_ties)
{
	float z[5] = {1.0f, 3.0f, -2.0f, 3.0f, 0.5f};
	int arg = -1;

	cr_expect_eq(mb_logits_argmax(z, 5), 1);
	mb_logits_ce(&arg, z, 5, 0, MB_LOGITS_DETMATH);
	cr_expect_eq(arg, 1);
	cr_expect_eq(mb_logits_correct(z, 5, 1), 1.0);
	cr_expect_eq(mb_logits_correct(z, 5, 3), 0.0);
	cr_expect_eq(mb_logits_diff(z, 1, 2), 5.0);
}

/* The order stored metrics were computed in (trainer.c's row_loss with
 * detmath, induction.c's span_loss and modadd's projected loss with libm). */
static double pinned(const double *z, int n, int t, int det)
{
	double mx = z[0], s = 0;
	for (int v = 1; v < n; v++)
		if (z[v] > mx)
			mx = z[v];
	for (int v = 0; v < n; v++)
		s += det ? mb_detmath_exp(z[v] - mx) : exp(z[v] - mx);
	return mx + (det ? mb_detmath_log(s) : log(s)) - z[t];
}

Test(logits, float_and_double_rows_keep_the_pinned_evaluation_order_bit_for_bit)
{
	float z[V];
	double zd[V];

	for (uint64_t i = 0; i < 20; i++) {
		row(z, 1000 + i);
		for (int v = 0; v < V; v++)
			zd[v] = z[v];
		for (int t = 0; t < V; t += 5)
			for (int m = 0; m < 2; m++) {
				double want = pinned(zd, V, t, m);
				double a = mb_logits_ce(NULL, z, V, t, (mb_logits_math)m);
				double b = mb_logits_ce_d(NULL, zd, V, t, (mb_logits_math)m);
				cr_assert(memcmp(&a, &want, sizeof(a)) == 0, "row %d t %d", (int)i, t);
				cr_assert(memcmp(&b, &want, sizeof(b)) == 0, "row %d t %d", (int)i, t);
			}
	}
}
