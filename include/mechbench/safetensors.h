/*
 * safetensors.h: read (mmap) and write Hugging Face safetensors files.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"k": "v"}}, then the data section. The reader validates
 * everything before any tensor is used: header length within the file, JSON,
 * known dtypes, shape x dtype size == end - begin, offsets inside the data
 * section, no two tensors overlapping, string-to-string metadata.
 */
#ifndef MECHBENCH_SAFETENSORS_H
#define MECHBENCH_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/dtype.h>
#include <mechbench/error.h>

typedef struct mb_st_tensor {
	const char *name; /* borrowed from the file object */
	mb_dtype dtype;
	int ndim;
	int64_t shape[MB_MAX_DIMS];
	size_t numel;
	size_t begin, end; /* byte offsets within the data section */
} mb_st_tensor;

typedef struct mb_safetensors mb_safetensors; /* opaque */

/* Maps and validates the file at path. Errors name the path and the tensor
 * or field ("model.safetensors: tensor h.0.attn.c_attn.weight: data_offsets
 * [0, 99] end past data section of 64 bytes"). */
int mb_safetensors_open(mb_safetensors **out, const char *path, mb_error *err);
/* The same over a caller-owned buffer that must outlive the object. */
int mb_safetensors_open_mem(mb_safetensors **out, const void *buf, size_t len,
			    const char *name, mb_error *err);
void mb_safetensors_free(mb_safetensors *st);

size_t mb_safetensors_count(const mb_safetensors *st);
/* The i-th tensor, in order of data_offsets begin. Borrowed. */
const mb_st_tensor *mb_safetensors_at(const mb_safetensors *st, size_t i);
/* NULL when absent. */
const mb_st_tensor *mb_safetensors_find(const mb_safetensors *st, const char *name);
/* A __metadata__ value, NULL when absent. Borrowed. */
const char *mb_safetensors_metadata(const mb_safetensors *st, const char *key);
/* Raw bytes of a tensor (little-endian, in its own dtype). Borrowed. */
const void *mb_safetensors_data(const mb_safetensors *st, const mb_st_tensor *t);

/* Converts a tensor to float32 into dst (t->numel floats, caller-owned).
 * F32, F16, BF16 (and F64, I32, I64) are accepted. Non-finite values are an
 * error naming the tensor and the flat index when reject_nonfinite is set. */
int mb_safetensors_read_f32(const mb_safetensors *st, const mb_st_tensor *t, float *dst,
			    int reject_nonfinite, mb_error *err);

/* One tensor to write: float32 data in C order. */
typedef struct mb_st_entry {
	const char *name;
	int ndim;
	int64_t shape[MB_MAX_DIMS];
	const float *data;
} mb_st_entry;

/* Writes n float32 tensors (stored sorted by name, aligned to 8 bytes) and
 * optional metadata (meta_kv: key, value, key, value, ..., NULL; may be NULL).
 * Written to "<path>.tmp" and renamed: nothing half-written is left at path. */
int mb_safetensors_write_f32(const char *path, const mb_st_entry *entries, size_t n,
			     const char *const *meta_kv, mb_error *err);

#endif
