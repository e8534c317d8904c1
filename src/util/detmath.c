/* detmath.c: CPU-independent elementary functions (detmath.h). */
#include <mechbench/detmath.h>

#include <math.h>
#include <stddef.h>
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

#include "erf_table.h"

float mb_detmath_erff(float xf)
{
	/* Piecewise polynomials in double from a generated table (erf_table.py
	 * says how they were made and checked): |x| < 1/16 the odd Maclaurin
	 * series, else the degree-9 Taylor polynomial about the centre of x's
	 * 1/16-wide interval, by Horner's rule. Relative error ~2e-16 in double,
	 * so the float result is erf's correctly rounded value except within
	 * ~1e-16 of a rounding midpoint. Plain IEEE double products and sums
	 * (no FMA contraction under -std=c11): the same bits on every CPU. At
	 * |x| >= 4, erf rounds to +-1 in float. */
	double ax = xf < 0 ? -(double)xf : (double)xf, p, t;
	const double *c;
	int k;

	if (xf != xf || xf == 0.0f)
		return xf; /* NaN; +-0 keeps its sign */
	if (ax >= 4.0)
		return xf < 0 ? -1.0f : 1.0f;
	if (ax < 0.0625) {
		double x2 = ax * ax;

		p = mb_erf_odd[5];
		for (int n = 4; n >= 0; n--)
			p = p * x2 + mb_erf_odd[n];
		p *= ax;
	} else {
		k = (int)(ax * 16.0);
		c = mb_erf_tab[k - 1];
		t = ax - ((double)k + 0.5) * 0.0625;
		p = c[MB_ERF_DEG];
		for (int n = MB_ERF_DEG - 1; n >= 0; n--)
			p = p * t + c[n];
	}
	return (float)(xf < 0 ? -p : p);
}

/* mb_detmath_erff_n: the same operations per element as mb_detmath_erff,
 * four lanes at a time with AVX2 (IEEE double products and sums, the table
 * read by gathers, the branches as blends), so the bits are the scalar
 * function's on every CPU; CPUs without AVX2 run the scalar loop. */
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx2"))) static size_t erff_avx2(float *out, const float *in, size_t n)
{
	const __m256d sign = _mm256_set1_pd(-0.0), one = _mm256_set1_pd(1.0);
	const __m256d lo = _mm256_set1_pd(0.0625), hi = _mm256_set1_pd(4.0);
	const __m256d top = _mm256_set1_pd(63.0), half = _mm256_set1_pd(0.5);
	const __m256d sixteen = _mm256_set1_pd(16.0), zero = _mm256_setzero_pd();
	const __m128i deg1 = _mm_set1_epi32(MB_ERF_DEG + 1);
	size_t i = 0;

	for (; i + 4 <= n; i += 4) {
		__m256d x = _mm256_cvtps_pd(_mm_loadu_ps(in + i));
		__m256d ax = _mm256_andnot_pd(sign, x), x2 = _mm256_mul_pd(ax, ax);
		/* maxpd returns its second operand for a NaN: k = 1 there */
		__m256d kd = _mm256_min_pd(_mm256_max_pd(_mm256_mul_pd(ax, sixteen), one), top);
		__m128i k = _mm256_cvttpd_epi32(kd);
		__m128i base = _mm_mullo_epi32(_mm_sub_epi32(k, _mm_set1_epi32(1)), deg1);
		__m256d t = _mm256_sub_pd(
			ax, _mm256_mul_pd(_mm256_add_pd(_mm256_cvtepi32_pd(k), half), lo));
		__m256d po = _mm256_set1_pd(mb_erf_odd[5]), pt, r, keep;

		for (int j = 4; j >= 0; j--)
			po = _mm256_add_pd(_mm256_mul_pd(po, x2), _mm256_set1_pd(mb_erf_odd[j]));
		po = _mm256_mul_pd(po, ax);
		pt = _mm256_i32gather_pd(&mb_erf_tab[0][MB_ERF_DEG], base, 8);
		for (int j = MB_ERF_DEG - 1; j >= 0; j--)
			pt = _mm256_add_pd(_mm256_mul_pd(pt, t),
					   _mm256_i32gather_pd(&mb_erf_tab[0][j], base, 8));
		r = _mm256_blendv_pd(pt, po, _mm256_cmp_pd(ax, lo, _CMP_LT_OQ));
		r = _mm256_blendv_pd(one, r, _mm256_cmp_pd(ax, hi, _CMP_LT_OQ));
		r = _mm256_xor_pd(r, _mm256_and_pd(x, sign)); /* -r where x < 0 */
		keep = _mm256_or_pd(_mm256_cmp_pd(x, x, _CMP_UNORD_Q),
				    _mm256_cmp_pd(x, zero, _CMP_EQ_OQ));
		r = _mm256_blendv_pd(r, x, keep);
		_mm_storeu_ps(out + i, _mm256_cvtpd_ps(r));
	}
	return i;
}

/* The same eight lanes at a time with AVX-512 (masks for the blends): the
 * long-context NeoX forward spends ~10% of its time in exact GELU's erf. */
__attribute__((target("avx512f,avx512dq"))) static size_t erff_avx512(float *out, const float *in,
								       size_t n)
{
	const __m512d sign = _mm512_set1_pd(-0.0), one = _mm512_set1_pd(1.0);
	const __m512d lo = _mm512_set1_pd(0.0625), hi = _mm512_set1_pd(4.0);
	const __m512d top = _mm512_set1_pd(63.0), half = _mm512_set1_pd(0.5);
	const __m512d sixteen = _mm512_set1_pd(16.0), zero = _mm512_setzero_pd();
	const __m256i deg1 = _mm256_set1_epi32(MB_ERF_DEG + 1);
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		__m512d x = _mm512_cvtps_pd(_mm256_loadu_ps(in + i));
		__m512d ax = _mm512_andnot_pd(sign, x), x2 = _mm512_mul_pd(ax, ax);
		/* maxpd returns its second operand for a NaN: k = 1 there */
		__m512d kd = _mm512_min_pd(_mm512_max_pd(_mm512_mul_pd(ax, sixteen), one), top);
		__m256i k = _mm512_cvttpd_epi32(kd);
		__m256i base = _mm256_mullo_epi32(_mm256_sub_epi32(k, _mm256_set1_epi32(1)), deg1);
		__m512d t = _mm512_sub_pd(
			ax, _mm512_mul_pd(_mm512_add_pd(_mm512_cvtepi32_pd(k), half), lo));
		__m512d po = _mm512_set1_pd(mb_erf_odd[5]), pt, r;
		__mmask8 keep;

		for (int j = 4; j >= 0; j--)
			po = _mm512_add_pd(_mm512_mul_pd(po, x2), _mm512_set1_pd(mb_erf_odd[j]));
		po = _mm512_mul_pd(po, ax);
		pt = _mm512_i32gather_pd(base, &mb_erf_tab[0][MB_ERF_DEG], 8);
		for (int j = MB_ERF_DEG - 1; j >= 0; j--)
			pt = _mm512_add_pd(_mm512_mul_pd(pt, t),
					   _mm512_i32gather_pd(base, &mb_erf_tab[0][j], 8));
		r = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(ax, lo, _CMP_LT_OQ), pt, po);
		r = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(ax, hi, _CMP_LT_OQ), one, r);
		r = _mm512_xor_pd(r, _mm512_and_pd(x, sign)); /* -r where x < 0 */
		keep = _mm512_cmp_pd_mask(x, x, _CMP_UNORD_Q) | _mm512_cmp_pd_mask(x, zero, _CMP_EQ_OQ);
		r = _mm512_mask_blend_pd(keep, r, x);
		_mm256_storeu_ps(out + i, _mm512_cvtpd_ps(r));
	}
	return i;
}
#endif

void mb_detmath_erff_n(float *out, const float *in, size_t n)
{
	size_t i = 0;

#if defined(__GNUC__) && defined(__x86_64__)
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"))
		i = erff_avx512(out, in, n);
	if (__builtin_cpu_supports("avx2"))
		i += erff_avx2(out + i, in + i, n - i);
#endif
	for (; i < n; i++)
		out[i] = mb_detmath_erff(in[i]);
}
