/*
 * dtype.h: element types of the tensors we read and write (.npy, safetensors).
 */
#ifndef MECHBENCH_DTYPE_H
#define MECHBENCH_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum mb_dtype {
	MB_DTYPE_F32 = 0,
	MB_DTYPE_F16,
	MB_DTYPE_BF16,
	MB_DTYPE_F64,
	MB_DTYPE_I32,
	MB_DTYPE_I64,
	MB_DTYPE_U8,
	MB_DTYPE_BOOL,
} mb_dtype;

#define MB_MAX_DIMS 8

/* Bytes per element. */
size_t mb_dtype_size(mb_dtype t);
/* "F32", "F16", ... (safetensors spelling). */
const char *mb_dtype_name(mb_dtype t);
/* The dtype spelled name in safetensors ("F32", "BF16", "BOOL", ...; exact,
 * case-sensitive). Returns 0, or MB_ENOTFOUND (-2) for any other text. */
int mb_dtype_from_name(mb_dtype *out, const char *name);
/* Product of shape[0..ndim); 1 for ndim 0. Returns 0 and sets *overflow when the
 * product does not fit in size_t or a dimension is negative (callers report
 * negative dimensions themselves, first); *overflow is cleared otherwise.
 * overflow may be NULL. */
size_t mb_shape_numel(int ndim, const int64_t *shape, int *overflow);
/* shape[0..ndim) as "[2, 3]" (as a safetensors header writes it) into buf
 * (cap bytes, truncated to fit), for messages. Returns buf. */
char *mb_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape);

/* IEEE half and bfloat16 to float (exact; NaN and Inf preserved). */
float mb_f16_to_f32(uint16_t h);
float mb_bf16_to_f32(uint16_t b);

#endif
