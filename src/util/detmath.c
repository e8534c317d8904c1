/* detmath.c: CPU-independent elementary functions (detmath.h). */
#include <mechbench/detmath.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

static const double LN2_HI = 6.93147180369123816490e-01; /* 0x3fe62e42fee00000 */
static const double LN2_LO = 1.90821492927058770002e-10; /* 0x3dea39ef35793c76 */

/* Round to the nearest integer (ties away from zero) without libm. */
static double round_int(double t)
{
	return (double)(int64_t)(t >= 0 ? t + 0.5 : t - 0.5);
}

/* 2^n as a double for -1074 <= n <= 1023, exactly (bits, then one product
 * for subnormals). */
static double pow2i(int n)
{
	uint64_t bits;
	double d;

	if (n < -1022) {
		bits = (uint64_t)(n + 1022 + 1023 + 0) << 52;
		memcpy(&d, &bits, sizeof(d));
		return d * 2.2250738585072014e-308; /* 2^-1022, exact */
	}
	bits = (uint64_t)(n + 1023) << 52;
	memcpy(&d, &bits, sizeof(d));
	return d;
}

double mb_detmath_exp(double x)
{
	double n, r, p;
	int ni;

	if (x != x)
		return x;
	if (x > 709.782712893384)
		return INFINITY;
	if (x < -745.2)
		return 0.0;
	n = round_int(x * 1.44269504088896340736);
	ni = (int)n;
	r = (x - n * LN2_HI) - n * LN2_LO; /* |r| <= ln2 / 2 + tiny */
	/* Taylor to r^13 / 13!: the remainder is below 2^-60 relative. */
	p = 1.0 / 6227020800.0;
	p = p * r + 1.0 / 479001600.0;
	p = p * r + 1.0 / 39916800.0;
	p = p * r + 1.0 / 3628800.0;
	p = p * r + 1.0 / 362880.0;
	p = p * r + 1.0 / 40320.0;
	p = p * r + 1.0 / 5040.0;
	p = p * r + 1.0 / 720.0;
	p = p * r + 1.0 / 120.0;
	p = p * r + 1.0 / 24.0;
	p = p * r + 1.0 / 6.0;
	p = p * r + 0.5;
	p = p * r * r + r + 1.0;
	if (ni > 1023) /* x near the top: split the scale */
		return p * pow2i(ni - 1) * 2.0;
	if (ni < -1022)
		return (p * pow2i(ni + 60)) * pow2i(-60);
	return p * pow2i(ni);
}

double mb_detmath_log(double x)
{
	uint64_t bits;
	int e;
	double m, f, s, s2, t, sum;

	if (x != x || x < 0)
		return NAN;
	if (x == 0)
		return -INFINITY;
	if (x == INFINITY)
		return x;
	memcpy(&bits, &x, sizeof(bits));
	e = (int)((bits >> 52) & 0x7ff);
	if (e == 0) { /* subnormal: scale up by 2^54 */
		x *= 18014398509481984.0;
		memcpy(&bits, &x, sizeof(bits));
		e = (int)((bits >> 52) & 0x7ff) - 54;
	}
	e -= 1023;
	bits = (bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL; /* m in [1, 2) */
	memcpy(&m, &bits, sizeof(m));
	if (m > 1.4142135623730951) {
		m *= 0.5;
		e += 1;
	}
	/* ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716 */
	f = m - 1.0;
	s = f / (2.0 + f);
	s2 = s * s;
	t = 1.0 / 25.0;
	for (int k = 23; k >= 3; k -= 2)
		t = t * s2 + 1.0 / (double)k;
	sum = 2.0 * s + 2.0 * s * s2 * t;
	return (double)e * LN2_HI + ((double)e * LN2_LO + sum);
}

double mb_detmath_powi(double x, int64_t n)
{
	double r = 1.0;

	while (n > 0) {
		if (n & 1)
			r *= x;
		x *= x;
		n >>= 1;
	}
	return r;
}

float mb_detmath_erff(float xf)
{
	/* Maclaurin series, 80 terms, in double: for |x| < 4 the largest term is
	 * ~1e5, so cancellation costs ~1e-11 relative at worst, far below a float
	 * ulp; beyond 4, erf rounds to +-1 in float. */
	double x = xf, ax = x < 0 ? -x : x, x2, term, sum;

	if (xf != xf)
		return xf;
	if (ax >= 4.0)
		return x < 0 ? -1.0f : 1.0f;
	x2 = x * x;
	term = x;
	sum = x;
	for (int n = 1; n < 80; n++) {
		term = -term * x2 / (double)n;
		sum += term / (double)(2 * n + 1);
	}
	return (float)(sum * 1.1283791670955126); /* 2 / sqrt(pi) */
}
