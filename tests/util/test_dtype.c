/*
 * dtype: sizes, names, shape products with overflow, and exhaustive checks of
 * the half and bfloat16 decoders against an independent arithmetic decoding
 * (ldexp of the fields) over all 65,536 bit patterns each.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <mechbench/dtype.h>
#include <mechbench/error.h>

Test(dtype, sizes_and_names_round_trip)
{
	const struct {
		mb_dtype t;
		size_t size;
		const char *name;
	} want[] = {{MB_DTYPE_F32, 4, "F32"}, {MB_DTYPE_F16, 2, "F16"}, {MB_DTYPE_BF16, 2, "BF16"},
		    {MB_DTYPE_F64, 8, "F64"}, {MB_DTYPE_I32, 4, "I32"}, {MB_DTYPE_I64, 8, "I64"},
		    {MB_DTYPE_U8, 1, "U8"},   {MB_DTYPE_BOOL, 1, "BOOL"}};

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		mb_dtype t;
		cr_expect_eq(mb_dtype_size(want[i].t), want[i].size, "%s", want[i].name);
		cr_expect_str_eq(mb_dtype_name(want[i].t), want[i].name);
		cr_expect_eq(mb_dtype_from_name(&t, want[i].name), 0);
		cr_expect_eq(t, want[i].t);
	}
}

Test(dtype, from_name_rejects_other_spellings)
{
	mb_dtype t = MB_DTYPE_I64;
	cr_expect_eq(mb_dtype_from_name(&t, "f32"), MB_ENOTFOUND);
	cr_expect_eq(mb_dtype_from_name(&t, "F8_E4M3"), MB_ENOTFOUND);
	cr_expect_eq(mb_dtype_from_name(&t, ""), MB_ENOTFOUND);
	cr_expect_eq(mb_dtype_from_name(&t, "F32 "), MB_ENOTFOUND);
	cr_expect_eq(t, MB_DTYPE_I64, "out must be untouched on failure");
}

Test(dtype, shape_numel_handles_scalars_zeros_and_overflow)
{
	int of = -1;
	cr_expect_eq(mb_shape_numel(0, NULL, &of), 1);
	cr_expect_eq(of, 0);
	cr_expect_eq(mb_shape_numel(3, (int64_t[]){2, 3, 4}, &of), 24);
	cr_expect_eq(of, 0);
	cr_expect_eq(mb_shape_numel(2, (int64_t[]){0, 7}, &of), 0);
	cr_expect_eq(of, 0);
	/* a zero dimension wins over dimensions whose product would overflow */
	cr_expect_eq(mb_shape_numel(3, (int64_t[]){INT64_MAX, INT64_MAX, 0}, &of), 0);
	cr_expect_eq(of, 0);
	cr_expect_eq(mb_shape_numel(2, (int64_t[]){1LL << 32, 1LL << 32}, &of), 0);
	cr_expect_eq(of, 1);
	cr_expect_eq(mb_shape_numel(3, (int64_t[]){1LL << 31, 1LL << 31, 4}, &of), 0);
	cr_expect_eq(of, 1);
	cr_expect_eq(mb_shape_numel(2, (int64_t[]){1LL << 31, 1LL << 32}, &of), (size_t)1 << 63);
	cr_expect_eq(of, 0);
	cr_expect_eq(mb_shape_numel(2, (int64_t[]){0, -1}, &of), 0);
	cr_expect_eq(of, 1, "negative dimensions are flagged even after a zero");
	cr_expect_eq(mb_shape_numel(1, (int64_t[]){5}, NULL), 5);
}

/* Independent decoding: sign * 2^(e - bias) * (1 + m / 2^mbits), subnormals
 * 2^(1 - bias) * m / 2^mbits, computed in double with ldexp. */
static double decode_fields(unsigned sign, unsigned e, unsigned m, int ebits, int mbits)
{
	int bias = (1 << (ebits - 1)) - 1;
	unsigned emax = (1u << ebits) - 1;
	double v;

	if (e == emax)
		v = m ? NAN : INFINITY;
	else if (e == 0)
		v = ldexp((double)m, 1 - bias - mbits);
	else
		v = ldexp(1.0 + ldexp((double)m, -mbits), (int)e - bias);
	return sign ? -v : v;
}

static size_t compare_all(float (*fn)(uint16_t), int ebits, int mbits, const char *what)
{
	size_t bad = 0;
	double maxdiff = 0;

	for (uint32_t u = 0; u <= 0xffff; u++) {
		unsigned sign = u >> 15, e = (u >> mbits) & ((1u << ebits) - 1);
		unsigned m = u & ((1u << mbits) - 1);
		double want = decode_fields(sign, e, m, ebits, mbits);
		float got = fn((uint16_t)u);
		int ok;
		if (isnan(want)) {
			uint32_t gb;
			memcpy(&gb, &got, 4);
			/* NaN keeps its sign and payload in the top mantissa bits */
			ok = isnan(got) && !!signbit(got) == (int)sign &&
			     ((gb >> (23 - mbits)) & ((1u << mbits) - 1)) == m;
		} else {
			ok = (double)got == want && !!signbit(got) == !!signbit(want);
			if (isfinite(want) && fabs((double)got - want) > maxdiff)
				maxdiff = fabs((double)got - want);
		}
		if (!ok && bad++ < 10)
			cr_log_error("%s 0x%04x: got %a, want %a", what, u, (double)got, want);
	}
	cr_log_info("%s: 65536 patterns, max |diff| %g, %zu mismatches", what, maxdiff, bad);
	return bad;
}

Test(dtype, every_half_decodes_exactly)
{
	cr_expect_eq(compare_all(mb_f16_to_f32, 5, 10, "f16"), 0);
	cr_expect_eq(mb_f16_to_f32(0x3c00), 1.0f);
	cr_expect_eq(mb_f16_to_f32(0x7bff), 65504.0f);
	cr_expect_eq(mb_f16_to_f32(0x0001), 0x1p-24f);
	cr_expect_eq(mb_f16_to_f32(0x03ff), 0x1.ff8p-15f);
	cr_expect(isinf(mb_f16_to_f32(0xfc00)) && mb_f16_to_f32(0xfc00) < 0);
	cr_expect(signbit(mb_f16_to_f32(0x8000)));
}

Test(dtype, every_bfloat16_decodes_exactly)
{
	cr_expect_eq(compare_all(mb_bf16_to_f32, 8, 7, "bf16"), 0);
	cr_expect_eq(mb_bf16_to_f32(0x3f80), 1.0f);
	cr_expect_eq(mb_bf16_to_f32(0xc040), -3.0f);
	cr_expect_eq(mb_bf16_to_f32(0x0001), 0x1p-133f);
}
