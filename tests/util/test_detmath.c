/*
 * detmath: mb_detmath_erff against libm's double erf (an independent
 * implementation, glibc's), over a sweep of float bit patterns: never more
 * than one float ulp away, and equal to the correctly rounded value on all
 * but a vanishing share (cases within ~1e-16 of a rounding midpoint).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include <mechbench/detmath.h>

static float from_bits(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

Test(detmath, erff_is_within_one_ulp_of_libm_and_usually_equal)
{
	const uint32_t hi = 0x40900000u; /* 4.5f: beyond 4, erf is 1 in float */
	long n = 0, unequal = 0;

	for (uint32_t u = 0; u <= hi; u += 257) {
		for (int sg = 0; sg < 2; sg++) {
			float x = sg ? -from_bits(u) : from_bits(u);
			float got = mb_detmath_erff(x), want = (float)erf((double)x);

			n++;
			if (got != want) {
				unequal++;
				cr_assert(nextafterf(want, got) == got,
					  "erff(%a) = %a, libm %a: more than one ulp", x, got, want);
			}
		}
	}
	printf("erff vs libm erf: %ld of %ld differ by one ulp\n", unequal, n);
	cr_expect(unequal * 100000L <= n, "%ld of %ld not correctly rounded", unequal, n);
}

Test(detmath, erff_special_values)
{
	cr_expect(isnan(mb_detmath_erff(NAN)));
	cr_expect_eq(mb_detmath_erff(INFINITY), 1.0f);
	cr_expect_eq(mb_detmath_erff(-INFINITY), -1.0f);
	cr_expect_eq(mb_detmath_erff(0.0f), 0.0f);
	cr_expect(signbit(mb_detmath_erff(-0.0f)));
	cr_expect_eq(mb_detmath_erff(-1.5f), -mb_detmath_erff(1.5f));
	/* interval edges: both sides of each 1/16 boundary agree to rounding */
	for (int k = 1; k < 64; k++) {
		float b = (float)k / 16.0f, lo = nextafterf(b, 0.0f);

		cr_expect(mb_detmath_erff(b) >= mb_detmath_erff(lo), "not monotone at %g", b);
	}
}

/* The vectorized span function is the scalar one, bit for bit, on every
 * kind of input (both interval kinds, >= 4, +-0, NaN, inf, tails of n).
 * N = 8 m + 7: on an AVX-512 CPU the 8-lane, 4-lane and scalar loops all
 * run. */
Test(detmath, erff_n_equals_erff_bit_for_bit)
{
	enum { N = 4103 };
	static float in[N], out[N];
	uint64_t s = 7;

	for (int i = 0; i < N; i++) {
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		in[i] = ((float)(s >> 40) / 16777216.0f - 0.5f) * (i % 3 ? 10.0f : 0.3f);
	}
	in[0] = 0.0f;
	in[1] = -0.0f;
	in[2] = NAN;
	in[3] = 4.0f;
	in[4] = -0.0625f;
	in[5] = INFINITY;
	in[6] = -INFINITY;
	in[7] = 3.9999998f;
	mb_detmath_erff_n(out, in, N);
	for (int i = 0; i < N; i++) {
		float want = mb_detmath_erff(in[i]);

		cr_expect(memcmp(&out[i], &want, sizeof(float)) == 0, "erff_n(%a) = %a, erff %a",
			  in[i], out[i], want);
	}
}
