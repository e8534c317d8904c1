/*
 * npy.h: NumPy .npy files (format 1.0, 2.0 and 3.0 headers), C order,
 * little-endian float32 / float64 / int32 / int64 (and float16/uint8/bool on read).
 * This is how hook points, golden fixtures and users' token arrays travel.
 */
#ifndef MECHBENCH_NPY_H
#define MECHBENCH_NPY_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/dtype.h>
#include <mechbench/error.h>

typedef struct mb_npy {
	mb_dtype dtype;
	int ndim;
	int64_t shape[MB_MAX_DIMS];
	size_t numel;
	void *data; /* owned, numel * mb_dtype_size(dtype) bytes, native little-endian */
} mb_npy;

/* Reads a whole .npy file. Errors name the path and the header field or byte
 * offset at fault (bad magic, unsupported version, Fortran order, big-endian
 * or unknown dtype, shape/data size mismatch, truncation). */
int mb_npy_read(mb_npy *out, const char *path, mb_error *err);
/* The same from memory; name labels messages (used by the fuzz target). */
int mb_npy_read_mem(mb_npy *out, const void *buf, size_t len, const char *name, mb_error *err);
/* Reads a file and converts to float32 whatever its dtype (F32/F64/I32/I64/F16;
 * uint8 and bool files are refused with MB_EINVALID). */
int mb_npy_read_f32(mb_npy *out, const char *path, mb_error *err);
void mb_npy_dispose(mb_npy *a);

/* Writes data (numel elements of dtype, C order) as a format 1.0 file (2.0
 * when the header needs it). Written to "<path>.tmp" and renamed, so a
 * failed write (disk full) leaves no half-written file at path. */
int mb_npy_write(const char *path, mb_dtype dtype, int ndim, const int64_t *shape,
		 const void *data, mb_error *err);

#endif
