/* dtype.c: element sizes and names, shape products, half and bfloat16 decoding. */
#include <mechbench/dtype.h>

#include <stdio.h>
#include <string.h>

#include <mechbench/error.h>

typedef struct dtype_info {
	const char *name;
	size_t size;
} dtype_info;

/* Indexed by mb_dtype. */
static const dtype_info infos[] = {
	[MB_DTYPE_F32] = {"F32", 4}, [MB_DTYPE_F16] = {"F16", 2}, [MB_DTYPE_BF16] = {"BF16", 2},
	[MB_DTYPE_F64] = {"F64", 8}, [MB_DTYPE_I32] = {"I32", 4}, [MB_DTYPE_I64] = {"I64", 8},
	[MB_DTYPE_U8] = {"U8", 1},   [MB_DTYPE_BOOL] = {"BOOL", 1},
};

#define NDTYPES (sizeof(infos) / sizeof(infos[0]))

size_t mb_dtype_size(mb_dtype t)
{
	MB_ASSERT((size_t)t < NDTYPES);
	return infos[t].size;
}

const char *mb_dtype_name(mb_dtype t)
{
	MB_ASSERT((size_t)t < NDTYPES);
	return infos[t].name;
}

int mb_dtype_from_name(mb_dtype *out, const char *name)
{
	for (size_t i = 0; i < NDTYPES; i++) {
		if (strcmp(name, infos[i].name) == 0) {
			*out = (mb_dtype)i;
			return 0;
		}
	}
	return MB_ENOTFOUND;
}

char *mb_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
	size_t off = (size_t)snprintf(buf, cap, "[");

	for (int i = 0; i < ndim && off < cap; i++)
		off += (size_t)snprintf(buf + off, cap - off, "%s%lld", i ? ", " : "",
					(long long)shape[i]);
	if (off < cap)
		snprintf(buf + off, cap - off, "]");
	return buf;
}

size_t mb_shape_numel(int ndim, const int64_t *shape, int *overflow)
{
	size_t n = 1;

	if (overflow)
		*overflow = 0;
	/* Negative dimensions first, then a zero dimension makes the product 0
	 * however large the others are (numpy agrees: (2**62, 2**62, 0) is empty). */
	for (int i = 0; i < ndim; i++)
		if (shape[i] < 0 || (uint64_t)shape[i] > (uint64_t)SIZE_MAX)
			goto overflowed;
	for (int i = 0; i < ndim; i++)
		if (shape[i] == 0)
			return 0;
	for (int i = 0; i < ndim; i++) {
		size_t d = (size_t)shape[i];
		if (n > SIZE_MAX / d)
			goto overflowed;
		n *= d;
	}
	return n;

overflowed:
	if (overflow)
		*overflow = 1;
	return 0;
}

static float bits_to_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

/*
 * IEEE 754 binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Every
 * half is exactly representable in binary32, so the conversion is a re-bias of
 * the exponent; subnormal halves are normalised by shifting the mantissa up.
 */
float mb_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t man = h & 0x3ffu;

	if (exp == 0x1f) /* Inf or NaN: keep the payload in the top mantissa bits */
		return bits_to_f32(sign | 0x7f800000u | (man << 13));
	if (exp == 0) {
		if (man == 0)
			return bits_to_f32(sign);
		/* Subnormal: value = man * 2^-24. Shift until the implicit bit
		 * (bit 10) is set, lowering the exponent once per shift. */
		int32_t e = -14;
		while (!(man & 0x400u)) {
			man <<= 1;
			e--;
		}
		man &= 0x3ffu;
		return bits_to_f32(sign | ((uint32_t)(e + 127) << 23) | (man << 13));
	}
	return bits_to_f32(sign | ((exp - 15 + 127) << 23) | (man << 13));
}

/* bfloat16 is the top half of a binary32. */
float mb_bf16_to_f32(uint16_t b)
{
	return bits_to_f32((uint32_t)b << 16);
}
