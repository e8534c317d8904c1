/* Segment-neighbourhood segmentation (sequential.h, mb_stats_segment)
 * against brute-force enumeration of every segmentation on small random
 * series, with segment costs from an independent long-double least-squares
 * fit; planted ramps and plateaus found at their knees; precision with large
 * step values; one-line errors for bad input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <mechbench/rng.h>
#include <mechbench/sequential.h>

/* The independent reference: cost of points lo..hi-1 by the normal
 * equations in long double. */
static long double ref_cost(const double *x, const double *y, size_t lo, size_t hi,
			    mb_stats_cost cost)
{
	long double n = (long double)(hi - lo), sx = 0, sy = 0, mx, my, sxx = 0, sxy = 0, r = 0;
	long double a, b = 0;

	for (size_t i = lo; i < hi; i++) {
		sx += x[i];
		sy += y[i];
	}
	mx = sx / n;
	my = sy / n;
	for (size_t i = lo; i < hi; i++) {
		sxx += ((long double)x[i] - mx) * ((long double)x[i] - mx);
		sxy += ((long double)x[i] - mx) * ((long double)y[i] - my);
	}
	if (cost == MB_STATS_COST_LINEAR && sxx > 0)
		b = sxy / sxx;
	a = my - b * mx;
	for (size_t i = lo; i < hi; i++) {
		long double e = (long double)y[i] - a - b * (long double)x[i];
		r += e * e;
	}
	return r;
}

typedef struct brute {
	const double *x, *y;
	size_t n, n_cp, min_seg;
	mb_stats_cost cost;
	size_t cur[8], best[8];
	long double best_cost, second_cost;
	size_t count;
} brute;

/* Every placement of changepoints cur[c..n_cp) after start. */
static void enumerate(brute *b, size_t c, size_t start, long double acc)
{
	if (c == b->n_cp) {
		long double total;
		if (b->n - start < b->min_seg)
			return;
		total = acc + ref_cost(b->x, b->y, start, b->n, b->cost);
		b->count++;
		if (total < b->best_cost) {
			b->second_cost = b->best_cost;
			b->best_cost = total;
			memcpy(b->best, b->cur, sizeof(b->cur));
		} else if (total < b->second_cost) {
			b->second_cost = total;
		}
		return;
	}
	for (size_t i = start + b->min_seg; i + b->min_seg <= b->n; i++) {
		b->cur[c] = i;
		enumerate(b, c + 1, i, acc + ref_cost(b->x, b->y, start, i, b->cost));
	}
}

Test(segment, matches_brute_force_enumeration_on_random_series)
{
	mb_rng rng;
	double x[13], y[13], maxdiff = 0;
	size_t out[8], cases = 0, segs = 0;
	mb_error err;

	mb_rng_init_named(&rng, 7, "test/segment", 0);
	for (int trial = 0; trial < 40; trial++) {
		size_t n = 6 + (size_t)(trial % 8);
		for (size_t i = 0; i < n; i++) {
			/* steps with uneven gaps; a trend with kinks plus noise */
			x[i] = (i ? x[i - 1] : 0) + 50 + 50 * mb_rng_uniform(&rng);
			y[i] = (trial % 3 == 0 ? 0.002 * x[i] : 0) + (i > n / 2 ? 1.5 : 0) +
			       mb_rng_normal(&rng);
		}
		for (int cost = 0; cost < 2; cost++)
			for (size_t n_cp = 1; n_cp <= 3; n_cp++)
				for (size_t min_seg = 1; min_seg <= 3; min_seg++) {
					brute b = {x, y, n, n_cp, min_seg, (mb_stats_cost)cost,
						   {0}, {0}, INFINITY, INFINITY, 0};
					double got_cost = NAN;
					int rc;
					if (n < (n_cp + 1) * min_seg)
						continue;
					enumerate(&b, 0, 0, 0);
					rc = mb_stats_segment(out, &got_cost, x, y, n, n_cp,
							      (mb_stats_cost)cost, min_seg, &err);
					cr_assert_eq(rc, 0, "%s", err.msg);
					maxdiff = fmax(maxdiff, fabs(got_cost - (double)b.best_cost));
					cr_expect(fabs(got_cost - (double)b.best_cost) <=
							  1e-9 * (1 + (double)b.best_cost),
						  "trial %d cost %s n_cp %zu min_seg %zu: %.17g vs "
						  "brute force %.17Lg", trial,
						  mb_stats_cost_name((mb_stats_cost)cost), n_cp, min_seg,
						  got_cost, b.best_cost);
					/* the argmin must agree unless a near-tie makes it moot */
					if (b.second_cost - b.best_cost > 1e-9 * (1 + b.best_cost))
						for (size_t c = 0; c < n_cp; c++)
							cr_expect_eq(out[c], b.best[c],
								     "trial %d changepoint %zu: %zu vs "
								     "brute force %zu", trial, c, out[c],
								     b.best[c]);
					cases++;
					segs += b.count;
				}
	}
	printf("segment: %zu cases, %zu segmentations enumerated, max |cost - brute force| "
	       "= %.3g\n", cases, segs, maxdiff);
	cr_expect(cases > 500);
}

Test(segment, segment_cost_matches_the_reference_fit)
{
	double x[10], y[10], maxdiff = 0;

	for (size_t i = 0; i < 10; i++) {
		x[i] = 1e5 + 100.0 * (double)i;
		y[i] = sin((double)i) + 0.01 * x[i];
	}
	for (int cost = 0; cost < 2; cost++)
		for (size_t lo = 0; lo < 9; lo++)
			for (size_t hi = lo + 1; hi <= 10; hi++) {
				double got = mb_stats_segment_cost(x, y, lo, hi, (mb_stats_cost)cost);
				long double want = ref_cost(x, y, lo, hi, (mb_stats_cost)cost);
				maxdiff = fmax(maxdiff, fabs(got - (double)want));
				cr_expect(fabs(got - (double)want) < 1e-9, "[%zu, %zu) %s: %.17g vs %.17Lg",
					  lo, hi, mb_stats_cost_name((mb_stats_cost)cost), got, want);
			}
	printf("segment cost: max |direct - reference| = %.3g\n", maxdiff);
}

/* Flat, a ramp, flat again (a sigmoid-like progress measure sampled every
 * 100 steps), with small noise: the linear cost puts the two boundaries at
 * the knees; the mean cost, which sees a ramp as a staircase, does not. */
Test(segment, linear_cost_finds_the_knees_of_a_planted_ramp)
{
	mb_rng rng;
	double x[30], y[30];
	size_t out[2];
	mb_error err;

	mb_rng_init_named(&rng, 11, "test/segment/ramp", 0);
	for (size_t i = 0; i < 30; i++) {
		x[i] = 100.0 * (double)i;
		y[i] = i < 8 ? 4.0 : i < 20 ? 4.0 - 0.3 * (double)(i - 7) : 0.4;
		y[i] += 0.01 * mb_rng_normal(&rng);
	}
	cr_assert_eq(mb_stats_segment(out, NULL, x, y, 30, 2, MB_STATS_COST_LINEAR, 3, &err), 0,
		     "%s", err.msg);
	cr_expect(out[0] >= 7 && out[0] <= 8, "first knee at %zu, planted at 7..8", out[0]);
	cr_expect(out[1] >= 19 && out[1] <= 20, "second knee at %zu, planted at 19..20", out[1]);
	cr_assert_eq(mb_stats_segment(out, NULL, x, y, 30, 2, MB_STATS_COST_MEAN, 3, &err), 0);
	cr_expect(out[0] > 8 || out[1] < 19, "the mean cost also found the knees (%zu, %zu)",
		  out[0], out[1]);
}

Test(segment, mean_cost_finds_planted_level_shifts)
{
	mb_rng rng;
	double y[40];
	size_t out[3];
	mb_error err;

	mb_rng_init_named(&rng, 3, "test/segment/levels", 0);
	for (size_t i = 0; i < 40; i++)
		y[i] = (i < 10 ? 0 : i < 25 ? 3 : i < 31 ? -1 : 2) + 0.2 * mb_rng_normal(&rng);
	cr_assert_eq(mb_stats_segment(out, NULL, NULL, y, 40, 3, MB_STATS_COST_MEAN, 2, &err), 0,
		     "%s", err.msg);
	cr_expect_eq(out[0], 10);
	cr_expect_eq(out[1], 25);
	cr_expect_eq(out[2], 31);
}

Test(segment, a_large_step_offset_changes_nothing)
{
	double x[24], xs[24], y[24];
	size_t a[2], b[2];
	double ca, cb;
	mb_error err;

	for (size_t i = 0; i < 24; i++) {
		x[i] = 500.0 * (double)i;
		xs[i] = 1e9 + x[i];
		y[i] = (i < 6 ? 0.1 * (double)i : i < 15 ? 0.6 + (double)(i - 6) : 9.6) +
		       0.05 * sin(3.0 * (double)i);
	}
	cr_assert_eq(mb_stats_segment(a, &ca, x, y, 24, 2, MB_STATS_COST_LINEAR, 2, &err), 0);
	cr_assert_eq(mb_stats_segment(b, &cb, xs, y, 24, 2, MB_STATS_COST_LINEAR, 2, &err), 0);
	cr_expect_eq(a[0], b[0]);
	cr_expect_eq(a[1], b[1]);
	cr_expect(fabs(ca - cb) < 1e-8, "cost %.17g vs %.17g with x + 1e9", ca, cb);
}

Test(segment, rejects_bad_input_with_one_line)
{
	double x[6] = {0, 1, 2, 3, 4, 5}, y[6] = {1, 2, 3, 4, 5, 6};
	size_t out[3];
	mb_error err;

	cr_expect_eq(mb_stats_segment(out, NULL, x, y, 6, 2, MB_STATS_COST_MEAN, 3, &err),
		     MB_EINVALID);
	cr_expect_str_eq(err.msg, "6 points cannot hold 3 segments of at least 3");
	cr_expect_eq(mb_stats_segment(out, NULL, x, y, 6, 0, MB_STATS_COST_MEAN, 1, &err),
		     MB_EINVALID);
	cr_expect_eq(mb_stats_segment(out, NULL, x, y, 6, 1, MB_STATS_COST_MEAN, 0, &err),
		     MB_EINVALID);
	y[4] = NAN;
	cr_expect_eq(mb_stats_segment(out, NULL, x, y, 6, 1, MB_STATS_COST_MEAN, 1, &err),
		     MB_EINVALID);
	cr_expect_str_eq(err.msg, "point 4 is nan, not a finite number");
	y[4] = 5;
	x[3] = 1.5;
	cr_expect_eq(mb_stats_segment(out, NULL, x, y, 6, 1, MB_STATS_COST_LINEAR, 1, &err),
		     MB_EINVALID);
	cr_expect_str_eq(err.msg, "point 3: x 1.5 comes after 2 (x must not decrease)");
}

Test(segment, equal_costs_break_ties_toward_the_earliest_changepoints)
{
	double x[12], y[12];
	size_t out[2];
	double cost;
	mb_error err;

	for (int i = 0; i < 12; i++) {
		x[i] = 100.0 * i;
		y[i] = 0.25; /* every split of a constant costs 0 */
	}
	cr_assert_eq(mb_stats_segment(out, &cost, x, y, 12, 2, MB_STATS_COST_MEAN, 3, &err), 0,
		     "%s", err.msg);
	cr_expect_eq(cost, 0);
	cr_expect_eq(out[0], 3, "first changepoint %zu", out[0]);
	cr_expect_eq(out[1], 6, "last changepoint %zu", out[1]);
}
