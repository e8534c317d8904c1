/*
 * safetensors.h: read (mmap) and write Hugging Face safetensors files.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"k": "v"}}, then the data section. The reader validates
 * everything before any tensor is used: header length within the file, JSON,
 * known dtypes, shape x dtype size == end - begin, offsets inside the data
 * section, no two tensors overlapping, string-to-string metadata.
 * Gaps between tensors and bytes after the last one are tolerated (the
 * reference reader rejects them; nothing we read depends on them).
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
 * or field ("model.safetensors: tensor 'h.0.attn.c_attn.weight': data_offsets
 * [0, 99]: end is past the data section of 64 bytes"); codes: MB_ENOTFOUND
 * (no such file), MB_EIO (open/mmap), MB_EINVALID (malformed), MB_EMISMATCH
 * (span != shape x dtype size), MB_ENOMEM. *out is NULL on failure. */
int mb_safetensors_open(mb_safetensors **out, const char *path, mb_error *err);
/* The same over a caller-owned buffer that must outlive the object. */
int mb_safetensors_open_mem(mb_safetensors **out, const void *buf, size_t len,
			    const char *name, mb_error *err);
/* A safetensors view of another container's bytes (ptbin.h's PyTorch files):
 * header is a safetensors JSON header (hlen bytes, no length prefix) whose
 * data_offsets index data (len bytes), validated as a file's header is, except
 * that spans may share bytes (tensors of one storage, as tied weights are in a
 * torch.save file). map (may be NULL) is a mapping of map_len bytes holding
 * data: the object owns it from this call on, success or not (munmap on free),
 * and mb_safetensors_release drops its pages. header is not kept. */
int mb_safetensors_open_view(mb_safetensors **out, const char *header, size_t hlen,
			     const void *data, size_t len, void *map, size_t map_len,
			     const char *name, mb_error *err);
void mb_safetensors_free(mb_safetensors *st);

size_t mb_safetensors_count(const mb_safetensors *st);
/* The i-th tensor, in order of data_offsets begin. Borrowed. */
const mb_st_tensor *mb_safetensors_at(const mb_safetensors *st, size_t i);
/* NULL when absent. */
const mb_st_tensor *mb_safetensors_find(const mb_safetensors *st, const char *name);
/* A __metadata__ value, NULL when absent. Borrowed. */
const char *mb_safetensors_metadata(const mb_safetensors *st, const char *key);
/* Number of __metadata__ entries, and the i-th (in file order) into *key and
 * *value (borrowed); MB_ENOTFOUND when i is out of range. */
size_t mb_safetensors_metadata_count(const mb_safetensors *st);
int mb_safetensors_metadata_at(const mb_safetensors *st, size_t i, const char **key,
			       const char **value);
/* The path or label the object was opened with. Borrowed. */
const char *mb_safetensors_name(const mb_safetensors *st);
/* Raw bytes of a tensor (little-endian, in its own dtype). Borrowed. Only
 * 1-byte aligned in general (the header length need not be a multiple of 8
 * in files from other writers): read through memcpy or mb_safetensors_read_f32. */
const void *mb_safetensors_data(const mb_safetensors *st, const mb_st_tensor *t);

/* Drops the resident pages of t's bytes of a file opened with
 * mb_safetensors_open, or of a view's map (madvise MADV_DONTNEED on the read-only private map:
 * the data is re-read from the file if used again), so a loader converting
 * tensor by tensor holds only the tensor at hand. No-op for open_mem. */
void mb_safetensors_release(const mb_safetensors *st, const mb_st_tensor *t);

/* Converts a tensor to float32 into dst (t->numel floats, caller-owned).
 * F32, F16, BF16 (exact), F64 (rounded), I32, I64 (rounded above 2^24) are
 * accepted; U8 and BOOL are refused (MB_EINVALID). Non-finite values (and
 * F64 values beyond float32's range) are an error naming the tensor and the
 * flat index when reject_nonfinite is set; dst may then be partly written. */
int mb_safetensors_read_f32(const mb_safetensors *st, const mb_st_tensor *t, float *dst,
			    int reject_nonfinite, mb_error *err);

/* One tensor to write: float32 data in C order. */
typedef struct mb_st_entry {
	const char *name;
	int ndim;
	int64_t shape[MB_MAX_DIMS];
	const float *data;
} mb_st_entry;

/* Writes n float32 tensors and optional metadata (meta_kv: key, value, key,
 * value, ..., NULL; may be NULL). The header is compact JSON, __metadata__
 * first (keys sorted), then tensors sorted by name, padded with spaces to a
 * multiple of 8 bytes, so the data section starts 8-byte aligned; tensors
 * follow one another without gaps (the reference reader rejects gaps), which
 * is byte for byte the layout of the reference serializer. Names must be
 * unique, non-NULL, valid UTF-8 and not "__metadata__"; shapes non-negative.
 * Written to "<path>.tmp", fsync'd and renamed: on any failure nothing is
 * left at path (an older file there stays intact) and the .tmp is removed. */
int mb_safetensors_write_f32(const char *path, const mb_st_entry *entries, size_t n,
			     const char *const *meta_kv, mb_error *err);

#endif
