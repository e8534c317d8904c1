/*
 * safetensors.c: validate-then-use reader (mmap) and atomic float32 writer for
 * Hugging Face safetensors files.
 *
 * Layout (https://github.com/huggingface/safetensors, "Format"):
 *   bytes [0, 8)        N, unsigned little-endian 64-bit header length
 *   bytes [8, 8+N)      UTF-8 JSON object, possibly padded with trailing spaces
 *   bytes [8+N, EOF)    the data section; data_offsets are relative to it
 *
 * Every check is done in mb_safetensors_open, before any tensor is handed out,
 * so a caller never sees a half-valid file. Messages name the file first, then
 * the tensor or field, then what is wrong, with the numbers involved.
 *
 * Legend for shape comments: n = number of tensors in the file.
 */
/* madvise(MADV_DONTNEED): glibc's posix_madvise ignores POSIX_MADV_DONTNEED */
#define _DEFAULT_SOURCE
#include <mechbench/safetensors.h>

#include <mechbench/file.h>
#include <mechbench/str.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the format is little-endian)"
#endif

/* The reference implementation's limit (safetensors/src/tensor.rs MAX_HEADER_SIZE). */
#define MB_ST_MAX_HEADER 100000000ull
/* Room for a tensor name or key quoted in a message. */
#define MB_ST_SHOW_MAX 160

struct mb_safetensors {
	char *name;                /* owned: path or label used in messages */
	void *map;                 /* owned mmap of the file, NULL for open_mem */
	size_t map_len;
	const unsigned char *buf;  /* the whole file */
	size_t len;
	const unsigned char *data; /* the data section, buf + 8 + N */
	size_t data_len;
	json_t *root;              /* owned: the header; names and metadata borrow from it */
	json_t *meta;              /* borrowed from root; NULL without __metadata__ */
	mb_st_tensor *tensors;     /* (n) owned, sorted by (begin, end, name) */
	size_t *by_name;           /* (n) owned, indices into tensors sorted by name */
	size_t n;
	int view;                  /* open_view: spans may share bytes */
};

/* Copies s into buf for a message: printable ASCII kept, everything else
 * (control bytes, non-ASCII, quotes) as \xNN, cut with "..." when long, so a
 * hostile name can neither break the one-line rule nor flood the message. */
static const char *show(char *buf, size_t cap, const char *s)
{
	size_t k = 0;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		int esc = c < 0x20 || c >= 0x7f || c == '\\' || c == '\'';
		size_t need = esc ? 4 : 1;
		if (k + need + 4 > cap) {
			memcpy(buf + k, "...", 3);
			k += 3;
			break;
		}
		if (esc) {
			snprintf(buf + k, 5, "\\x%02x", c);
			k += 4;
		} else {
			buf[k++] = (char)c;
		}
	}
	buf[k] = '\0';
	return buf;
}

static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a real number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

static uint64_t load_le64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* --- validation ---------------------------------------------------------- */

static int parse_metadata(mb_safetensors *st, json_t *meta, mb_error *err)
{
	const char *key;
	json_t *v;
	char kb[MB_ST_SHOW_MAX];

	if (!json_is_object(meta))
		return mb_error_set(err, MB_EINVALID,
				    "%s: __metadata__: expected an object of strings, got %s",
				    st->name, json_kind(meta));
	json_object_foreach(meta, key, v) {
		if (!json_is_string(v))
			return mb_error_set(err, MB_EINVALID,
					    "%s: __metadata__: key '%s': expected a string value, got %s",
					    st->name, show(kb, sizeof(kb), key), json_kind(v));
	}
	st->meta = meta;
	return 0;
}

/* A non-negative JSON integer; what names the field for the message. */
static int get_index(const mb_safetensors *st, const char *tname, const char *what,
		     const json_t *v, int64_t *out, mb_error *err)
{
	if (!json_is_integer(v))
		return mb_error_set(err, MB_EINVALID, "%s: tensor '%s': %s: expected an integer, got %s",
				    st->name, tname, what, json_kind(v));
	if (json_integer_value(v) < 0)
		return mb_error_set(err, MB_EINVALID, "%s: tensor '%s': %s: %lld is negative",
				    st->name, tname, what, (long long)json_integer_value(v));
	*out = (int64_t)json_integer_value(v);
	return 0;
}

static int parse_tensor(mb_safetensors *st, const char *name, json_t *obj, mb_st_tensor *t,
			mb_error *err)
{
	char nb[MB_ST_SHOW_MAX], kb[MB_ST_SHOW_MAX];
	const char *tname = show(nb, sizeof(nb), name);
	const char *key;
	json_t *v, *dtype, *shape, *offs;
	int64_t begin, end;
	int overflow = 0;
	int error;

	memset(t, 0, sizeof(*t));
	t->name = name;
	if (!json_is_object(obj))
		return mb_error_set(err, MB_EINVALID, "%s: tensor '%s': expected an object, got %s",
				    st->name, tname, json_kind(obj));
	json_object_foreach(obj, key, v) {
		if (strcmp(key, "dtype") != 0 && strcmp(key, "shape") != 0 &&
		    strcmp(key, "data_offsets") != 0)
			return mb_error_set(err, MB_EINVALID,
					    "%s: tensor '%s': unknown field '%s' (expected dtype, "
					    "shape, data_offsets)",
					    st->name, tname, show(kb, sizeof(kb), key));
	}
	dtype = json_object_get(obj, "dtype");
	shape = json_object_get(obj, "shape");
	offs = json_object_get(obj, "data_offsets");
	if (!dtype || !shape || !offs)
		return mb_error_set(err, MB_EINVALID, "%s: tensor '%s': %s: required field is missing",
				    st->name, tname,
				    !dtype ? "dtype" : !shape ? "shape" : "data_offsets");

	if (!json_is_string(dtype))
		return mb_error_set(err, MB_EINVALID, "%s: tensor '%s': dtype: expected a string, got %s",
				    st->name, tname, json_kind(dtype));
	if (mb_dtype_from_name(&t->dtype, json_string_value(dtype)) < 0)
		return mb_error_set(err, MB_EINVALID,
				    "%s: tensor '%s': dtype: unsupported dtype '%s' (supported: F32, "
				    "F16, BF16, F64, I32, I64, U8, BOOL)",
				    st->name, tname, show(kb, sizeof(kb), json_string_value(dtype)));

	if (!json_is_array(shape))
		return mb_error_set(err, MB_EINVALID, "%s: tensor '%s': shape: expected an array, got %s",
				    st->name, tname, json_kind(shape));
	if (json_array_size(shape) > MB_MAX_DIMS)
		return mb_error_set(err, MB_EINVALID,
				    "%s: tensor '%s': shape: %zu dimensions, at most %d are supported",
				    st->name, tname, json_array_size(shape), MB_MAX_DIMS);
	t->ndim = (int)json_array_size(shape);
	for (int i = 0; i < t->ndim; i++) {
		char what[32];
		snprintf(what, sizeof(what), "shape[%d]", i);
		error = get_index(st, tname, what, json_array_get(shape, (size_t)i), &t->shape[i], err);
		if (error < 0)
			return error;
	}
	t->numel = mb_shape_numel(t->ndim, t->shape, &overflow);
	if (overflow || t->numel > SIZE_MAX / mb_dtype_size(t->dtype))
		return mb_error_set(err, MB_EINVALID,
				    "%s: tensor '%s': shape: element count overflows the address space",
				    st->name, tname);

	if (!json_is_array(offs) || json_array_size(offs) != 2)
		return mb_error_set(err, MB_EINVALID,
				    "%s: tensor '%s': data_offsets: expected [begin, end], got %s%s",
				    st->name, tname, json_kind(offs),
				    json_is_array(offs) ? " of the wrong length" : "");
	error = get_index(st, tname, "data_offsets[0]", json_array_get(offs, 0), &begin, err);
	if (error < 0)
		return error;
	error = get_index(st, tname, "data_offsets[1]", json_array_get(offs, 1), &end, err);
	if (error < 0)
		return error;
	if (begin > end)
		return mb_error_set(err, MB_EINVALID,
				    "%s: tensor '%s': data_offsets [%lld, %lld]: begin is after end",
				    st->name, tname, (long long)begin, (long long)end);
	if ((uint64_t)end > st->data_len)
		return mb_error_set(err, MB_EINVALID,
				    "%s: tensor '%s': data_offsets [%lld, %lld]: end is past the data "
				    "section of %zu bytes",
				    st->name, tname, (long long)begin, (long long)end, st->data_len);
	t->begin = (size_t)begin;
	t->end = (size_t)end;
	if (t->end - t->begin != t->numel * mb_dtype_size(t->dtype)) {
		char shape[160];
		return mb_error_set(err, MB_EMISMATCH,
				    "%s: tensor '%s': data_offsets [%zu, %zu] span %zu bytes but shape "
				    "%s of %s is %zu bytes",
				    st->name, tname, t->begin, t->end, t->end - t->begin,
				    mb_shape_str(shape, sizeof(shape), t->ndim, t->shape),
				    mb_dtype_name(t->dtype), t->numel * mb_dtype_size(t->dtype));
	}
	return 0;
}

static int cmp_offsets(const void *a, const void *b)
{
	const mb_st_tensor *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* qsort has no context argument; the index sort reads the tensors from here.
 * Only ever set inside open (no callbacks escape), so reentrancy is per thread. */
static _Thread_local const mb_st_tensor *sort_tensors;

static int cmp_names(const void *a, const void *b)
{
	return strcmp(sort_tensors[*(const size_t *)a].name, sort_tensors[*(const size_t *)b].name);
}

/* Tensors sorted by begin must not share a byte. Zero-size tensors occupy no
 * bytes but may not sit strictly inside another tensor's span either (the
 * reference reader demands contiguous, ordered spans; we allow gaps only). */
static int check_overlaps(const mb_safetensors *st, mb_error *err)
{
	size_t far = 0; /* index of the tensor reaching furthest so far */
	char ab[MB_ST_SHOW_MAX], bb[MB_ST_SHOW_MAX];

	for (size_t i = 1; i < st->n; i++) {
		const mb_st_tensor *p = &st->tensors[far], *t = &st->tensors[i];
		if (t->begin < p->end && (t->end > t->begin || t->begin > p->begin))
			return mb_error_set(err, MB_EINVALID,
					    "%s: tensors '%s' [%zu, %zu] and '%s' [%zu, %zu] overlap",
					    st->name, show(ab, sizeof(ab), p->name), p->begin, p->end,
					    show(bb, sizeof(bb), t->name), t->begin, t->end);
		if (t->end > p->end)
			far = i;
	}
	return 0;
}

static int parse_header_json(mb_safetensors *st, const char *hjson, size_t hlen, mb_error *err);

static int parse_header(mb_safetensors *st, mb_error *err)
{
	uint64_t hlen;

	if (st->len < 8)
		return mb_error_set(err, MB_EINVALID,
				    "%s: file is %zu bytes, too short for the 8-byte header length",
				    st->name, st->len);
	hlen = load_le64(st->buf);
	if (hlen > MB_ST_MAX_HEADER)
		return mb_error_set(err, MB_EINVALID,
				    "%s: header length %llu exceeds the limit of %llu bytes", st->name,
				    (unsigned long long)hlen, MB_ST_MAX_HEADER);
	if (hlen > st->len - 8)
		return mb_error_set(err, MB_EINVALID,
				    "%s: header length %llu is past the end of the file (%zu bytes "
				    "follow the length)",
				    st->name, (unsigned long long)hlen, st->len - 8);
	st->data = st->buf + 8 + hlen;
	st->data_len = st->len - 8 - (size_t)hlen;
	return parse_header_json(st, (const char *)st->buf + 8, (size_t)hlen, err);
}

/* The JSON header (hlen bytes at hjson) against the data section st already
 * names: the tensor table, sorted and checked. */
static int parse_header_json(mb_safetensors *st, const char *hjson, size_t hlen, mb_error *err)
{
	json_error_t jerr;
	const char *key;
	json_t *v;
	size_t i = 0, ntensors;
	int error = 0;

	st->root = json_loadb(hjson, hlen, JSON_REJECT_DUPLICATES, &jerr);
	if (!st->root)
		return mb_error_set(err, MB_EINVALID,
				    "%s: header: invalid JSON at header byte %d: %s", st->name,
				    jerr.position, jerr.text);
	if (!json_is_object(st->root))
		return mb_error_set(err, MB_EINVALID, "%s: header: expected a JSON object, got %s",
				    st->name, json_kind(st->root));

	ntensors = json_object_size(st->root);
	v = json_object_get(st->root, "__metadata__");
	if (v) {
		error = parse_metadata(st, v, err);
		if (error < 0)
			return error;
		ntensors--;
	}
	st->tensors = calloc(ntensors ? ntensors : 1, sizeof(*st->tensors));
	st->by_name = calloc(ntensors ? ntensors : 1, sizeof(*st->by_name));
	if (!st->tensors || !st->by_name)
		return mb_error_oom(err, "safetensors tensor table", ntensors * sizeof(*st->tensors));
	/* jansson iterates in insertion order, so the first bad tensor in the
	 * file is the one reported, the same on every run. */
	json_object_foreach(st->root, key, v) {
		if (strcmp(key, "__metadata__") == 0)
			continue;
		error = parse_tensor(st, key, v, &st->tensors[i], err);
		if (error < 0)
			return error;
		i++;
	}
	st->n = i;
	qsort(st->tensors, st->n, sizeof(*st->tensors), cmp_offsets);
	error = st->view ? 0 : check_overlaps(st, err);
	if (error < 0)
		return error;
	for (i = 0; i < st->n; i++)
		st->by_name[i] = i;
	sort_tensors = st->tensors;
	qsort(st->by_name, st->n, sizeof(*st->by_name), cmp_names);
	sort_tensors = NULL;
	return 0;
}

static int open_common(mb_safetensors **out, mb_safetensors *st, mb_error *err)
{
	int error = parse_header(st, err);
	if (error < 0) {
		mb_safetensors_free(st);
		return error;
	}
	*out = st;
	return 0;
}

int mb_safetensors_open_mem(mb_safetensors **out, const void *buf, size_t len, const char *name,
			    mb_error *err)
{
	mb_safetensors *st;

	*out = NULL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return mb_error_oom(err, "safetensors object", sizeof(*st));
	st->name = mb_str_dup(name ? name : "<safetensors>");
	if (!st->name) {
		free(st);
		return mb_error_oom(err, "safetensors name", 0);
	}
	st->buf = buf;
	st->len = len;
	return open_common(out, st, err);
}

int mb_safetensors_open_view(mb_safetensors **out, const char *header, size_t hlen,
			     const void *data, size_t len, void *map, size_t map_len,
			     const char *name, mb_error *err)
{
	mb_safetensors *st;
	int error;

	*out = NULL;
	st = calloc(1, sizeof(*st));
	if (!st || !(st->name = mb_str_dup(name ? name : "<safetensors>"))) {
		free(st);
		if (map)
			munmap(map, map_len);
		return mb_error_oom(err, "safetensors object", sizeof(*st));
	}
	st->map = map;
	st->map_len = map_len;
	st->buf = st->data = data;
	st->len = st->data_len = len;
	st->view = 1;
	error = parse_header_json(st, header, hlen, err);
	if (error < 0) {
		mb_safetensors_free(st);
		return error;
	}
	*out = st;
	return 0;
}

int mb_safetensors_open(mb_safetensors **out, const char *path, mb_error *err)
{
	mb_safetensors *st = NULL;
	struct stat sb;
	int fd = -1;
	int error = 0;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		error = mb_error_set(err, errno == ENOENT ? MB_ENOTFOUND : MB_EIO, "%s: %s", path,
				     strerror(errno));
		goto cleanup;
	}
	if (fstat(fd, &sb) < 0) {
		error = mb_error_set(err, MB_EIO, "%s: %s", path, strerror(errno));
		goto cleanup;
	}
	if (!S_ISREG(sb.st_mode)) {
		error = mb_error_set(err, MB_EINVALID, "%s: not a regular file", path);
		goto cleanup;
	}
	st = calloc(1, sizeof(*st));
	if (!st || !(st->name = mb_str_dup(path))) {
		error = mb_error_oom(err, "safetensors object", sizeof(*st));
		goto cleanup;
	}
	st->len = (size_t)sb.st_size;
	if (st->len > 0) {
		void *map = mmap(NULL, st->len, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map == MAP_FAILED) {
			error = mb_error_set(err, MB_EIO, "%s: mmap of %zu bytes failed: %s", path,
					     st->len, strerror(errno));
			goto cleanup;
		}
		st->map = map;
		st->map_len = st->len;
		st->buf = map;
	} else {
		st->buf = (const unsigned char *)"";
	}
	close(fd);
	fd = -1;
	error = open_common(out, st, err);
	st = NULL; /* freed by open_common on failure, owned by *out on success */

cleanup:
	if (fd >= 0)
		close(fd);
	mb_safetensors_free(st);
	return error;
}

void mb_safetensors_free(mb_safetensors *st)
{
	if (!st)
		return;
	if (st->map)
		munmap(st->map, st->map_len);
	if (st->root)
		json_decref(st->root);
	free(st->tensors);
	free(st->by_name);
	free(st->name);
	free(st);
}

size_t mb_safetensors_count(const mb_safetensors *st)
{
	return st->n;
}

const mb_st_tensor *mb_safetensors_at(const mb_safetensors *st, size_t i)
{
	return i < st->n ? &st->tensors[i] : NULL;
}

const mb_st_tensor *mb_safetensors_find(const mb_safetensors *st, const char *name)
{
	size_t lo = 0, hi = st->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const mb_st_tensor *t = &st->tensors[st->by_name[mid]];
		int c = strcmp(name, t->name);
		if (c == 0)
			return t;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

const char *mb_safetensors_metadata(const mb_safetensors *st, const char *key)
{
	return st->meta ? json_string_value(json_object_get(st->meta, key)) : NULL;
}

size_t mb_safetensors_metadata_count(const mb_safetensors *st)
{
	return st->meta ? json_object_size(st->meta) : 0;
}

int mb_safetensors_metadata_at(const mb_safetensors *st, size_t i, const char **key,
			       const char **value)
{
	const char *k;
	json_t *v;
	size_t j = 0;

	if (!st->meta)
		return MB_ENOTFOUND;
	json_object_foreach(st->meta, k, v) {
		if (j++ == i) {
			*key = k;
			*value = json_string_value(v);
			return 0;
		}
	}
	return MB_ENOTFOUND;
}

const char *mb_safetensors_name(const mb_safetensors *st)
{
	return st->name;
}

const void *mb_safetensors_data(const mb_safetensors *st, const mb_st_tensor *t)
{
	return st->data + t->begin;
}

void mb_safetensors_release(const mb_safetensors *st, const mb_st_tensor *t)
{
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), lo, hi;
	const unsigned char *base = st->data + t->begin;

	if (!st->map || t->end <= t->begin)
		return;
	lo = (uintptr_t)base & ~(pg - 1);
	hi = ((uintptr_t)base + (t->end - t->begin) + pg - 1) & ~(pg - 1);
	if (hi > (uintptr_t)st->map + st->map_len)
		hi = (uintptr_t)st->map + st->map_len;
	if (hi > lo)
		(void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* --- conversion ---------------------------------------------------------- */

static const char *nonfinite_name(double x)
{
	if (isnan(x))
		return "NaN";
	return x > 0 ? "+Inf" : "-Inf";
}

int mb_safetensors_read_f32(const mb_safetensors *st, const mb_st_tensor *t, float *dst,
			    int reject_nonfinite, mb_error *err)
{
	const unsigned char *src = st->data + t->begin;
	char nb[MB_ST_SHOW_MAX];
	size_t n = t->numel;

	switch (t->dtype) {
	case MB_DTYPE_F32:
		if (n > 0)
			memcpy(dst, src, n * sizeof(float));
		break;
	case MB_DTYPE_F16:
	case MB_DTYPE_BF16:
		for (size_t i = 0; i < n; i++) {
			uint16_t h = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
			dst[i] = t->dtype == MB_DTYPE_F16 ? mb_f16_to_f32(h) : mb_bf16_to_f32(h);
		}
		break;
	case MB_DTYPE_F64:
		for (size_t i = 0; i < n; i++) {
			double x;
			memcpy(&x, src + 8 * i, sizeof(x));
			if (reject_nonfinite && isfinite(x) && !isfinite((float)x))
				return mb_error_set(err, MB_EINVALID,
						    "%s: tensor '%s': element %zu (%g) overflows float32",
						    st->name, show(nb, sizeof(nb), t->name), i, x);
			dst[i] = (float)x;
		}
		break;
	case MB_DTYPE_I32:
		for (size_t i = 0; i < n; i++) {
			int32_t x;
			memcpy(&x, src + 4 * i, sizeof(x));
			dst[i] = (float)x;
		}
		break;
	case MB_DTYPE_I64:
		for (size_t i = 0; i < n; i++) {
			int64_t x;
			memcpy(&x, src + 8 * i, sizeof(x));
			dst[i] = (float)x;
		}
		break;
	default:
		return mb_error_set(err, MB_EINVALID,
				    "%s: tensor '%s': dtype %s cannot be read as float32", st->name,
				    show(nb, sizeof(nb), t->name), mb_dtype_name(t->dtype));
	}
	if (reject_nonfinite) {
		for (size_t i = 0; i < n; i++)
			if (!isfinite(dst[i]))
				return mb_error_set(err, MB_EINVALID,
						    "%s: tensor '%s': element %zu is %s", st->name,
						    show(nb, sizeof(nb), t->name), i,
						    nonfinite_name(dst[i]));
	}
	return 0;
}

/* --- writing ------------------------------------------------------------- */

static int cmp_entries(const void *a, const void *b)
{
	const mb_st_entry *x = *(const mb_st_entry *const *)a, *y = *(const mb_st_entry *const *)b;
	return strcmp(x->name, y->name);
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Builds the header JSON: __metadata__ first (keys sorted), then the tensors
 * in name order, each {"dtype","shape","data_offsets"} in that key order;
 * compact separators. This is byte for byte what the reference serializer
 * writes for float32 tensors (it orders by dtype, then name). */
static int build_header(json_t **out, const mb_st_entry *const *sorted, size_t n,
			const char *const *meta_kv, const char *path, mb_error *err)
{
	json_t *root = json_object(), *meta = NULL;
	const char **keys = NULL;
	size_t nmeta = 0;
	size_t off = 0;
	char nb[MB_ST_SHOW_MAX];
	int error = 0;

	if (!root) {
		error = mb_error_oom(err, "safetensors header", 0);
		goto cleanup;
	}
	if (meta_kv) {
		while (meta_kv[2 * nmeta])
			nmeta++;
		keys = malloc((nmeta ? nmeta : 1) * sizeof(*keys));
		meta = json_object();
		if (!keys || !meta) {
			error = mb_error_oom(err, "safetensors metadata", nmeta * sizeof(*keys));
			goto cleanup;
		}
		for (size_t i = 0; i < nmeta; i++) {
			keys[i] = meta_kv[2 * i];
			if (!meta_kv[2 * i + 1]) {
				error = mb_error_set(err, MB_EINVALID,
						     "%s: __metadata__: key '%s' has no value", path,
						     show(nb, sizeof(nb), keys[i]));
				goto cleanup;
			}
		}
		qsort(keys, nmeta, sizeof(*keys), cmp_strp);
		for (size_t i = 0; i < nmeta; i++) {
			const char *val = NULL;
			for (size_t j = 0; j < nmeta; j++)
				if (strcmp(meta_kv[2 * j], keys[i]) == 0)
					val = meta_kv[2 * j + 1];
			if (i > 0 && strcmp(keys[i - 1], keys[i]) == 0) {
				error = mb_error_set(err, MB_EINVALID,
						     "%s: __metadata__: duplicate key '%s'", path,
						     show(nb, sizeof(nb), keys[i]));
				goto cleanup;
			}
			json_t *s = json_string(val);
			if (!s || json_object_set_new(meta, keys[i], s) < 0) {
				error = mb_error_set(err, MB_EINVALID,
						     "%s: __metadata__: key '%s': key or value is not "
						     "valid UTF-8",
						     path, show(nb, sizeof(nb), keys[i]));
				goto cleanup;
			}
		}
		if (json_object_set_new(root, "__metadata__", meta) < 0) {
			meta = NULL;
			error = mb_error_oom(err, "safetensors metadata", 0);
			goto cleanup;
		}
		meta = NULL;
	}
	for (size_t i = 0; i < n; i++) {
		const mb_st_entry *e = sorted[i];
		size_t bytes = 0;
		int overflow;
		json_t *t = NULL, *shape = NULL;

		bytes = mb_shape_numel(e->ndim, e->shape, &overflow) * sizeof(float);
		t = json_object();
		shape = json_array();
		if (!t || !shape) {
			json_decref(t);
			json_decref(shape);
			error = mb_error_oom(err, "safetensors header", 0);
			goto cleanup;
		}
		for (int d = 0; d < e->ndim; d++)
			json_array_append_new(shape, json_integer((json_int_t)e->shape[d]));
		json_object_set_new(t, "dtype", json_string("F32"));
		json_object_set_new(t, "shape", shape);
		json_object_set_new(t, "data_offsets",
				    json_pack("[II]", (json_int_t)off, (json_int_t)(off + bytes)));
		off += bytes;
		if (json_object_set_new(root, e->name, t) < 0) {
			error = mb_error_set(err, MB_EINVALID,
					     "%s: tensor '%s': name is not valid UTF-8", path,
					     show(nb, sizeof(nb), e->name));
			goto cleanup;
		}
	}
	*out = root;
	root = NULL;

cleanup:
	json_decref(meta);
	json_decref(root);
	free(keys);
	return error;
}

/* Checks entries before anything touches the disk. */
static int check_entries(const mb_st_entry *const *sorted, size_t n, const char *path,
			 mb_error *err)
{
	char nb[MB_ST_SHOW_MAX];
	size_t total = 0;

	for (size_t i = 0; i < n; i++) {
		const mb_st_entry *e = sorted[i];
		int overflow = 0;
		size_t numel;

		if (!e->name)
			return mb_error_set(err, MB_EINVALID, "%s: tensor %zu has no name", path, i);
		if (strcmp(e->name, "__metadata__") == 0)
			return mb_error_set(err, MB_EINVALID,
					    "%s: tensor '__metadata__': the name is reserved", path);
		if (i > 0 && strcmp(sorted[i - 1]->name, e->name) == 0)
			return mb_error_set(err, MB_EINVALID, "%s: tensor '%s': duplicate name", path,
					    show(nb, sizeof(nb), e->name));
		if (e->ndim < 0 || e->ndim > MB_MAX_DIMS)
			return mb_error_set(err, MB_EINVALID,
					    "%s: tensor '%s': ndim %d is outside [0, %d]", path,
					    show(nb, sizeof(nb), e->name), e->ndim, MB_MAX_DIMS);
		for (int d = 0; d < e->ndim; d++)
			if (e->shape[d] < 0)
				return mb_error_set(err, MB_EINVALID,
						    "%s: tensor '%s': shape[%d] is negative (%lld)",
						    path, show(nb, sizeof(nb), e->name), d,
						    (long long)e->shape[d]);
		numel = mb_shape_numel(e->ndim, e->shape, &overflow);
		if (overflow || numel > (SIZE_MAX - total) / sizeof(float) ||
		    total + numel * sizeof(float) > (size_t)INT64_MAX)
			return mb_error_set(err, MB_EINVALID,
					    "%s: tensor '%s': shape overflows the file size", path,
					    show(nb, sizeof(nb), e->name));
		if (numel > 0 && !e->data)
			return mb_error_set(err, MB_EINVALID, "%s: tensor '%s': data is NULL", path,
					    show(nb, sizeof(nb), e->name));
		total += numel * sizeof(float);
	}
	return 0;
}

/* Writes header and data through f. */
static int write_body(mb_file_atomic *f, const char *hjson, size_t hlen,
		      const mb_st_entry *const *sorted, size_t n, mb_error *err)
{
	static const char spaces[8] = "        ";
	size_t padded = (hlen + 7) & ~(size_t)7;
	unsigned char lenbuf[8];
	int error;

	for (int i = 0; i < 8; i++)
		lenbuf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
	if ((error = mb_file_atomic_write(f, lenbuf, 8, err)) < 0 ||
	    (error = mb_file_atomic_write(f, hjson, hlen, err)) < 0 ||
	    (error = mb_file_atomic_write(f, spaces, padded - hlen, err)) < 0)
		return error;
	for (size_t i = 0; i < n; i++) {
		size_t numel = mb_shape_numel(sorted[i]->ndim, sorted[i]->shape, NULL);
		if (numel > 0 &&
		    (error = mb_file_atomic_write(f, sorted[i]->data, numel * sizeof(float), err)) < 0)
			return error;
	}
	return 0;
}

int mb_safetensors_write_f32(const char *path, const mb_st_entry *entries, size_t n,
			     const char *const *meta_kv, mb_error *err)
{
	const mb_st_entry **sorted = NULL;
	json_t *header = NULL;
	char *hjson = NULL;
	mb_file_atomic f;
	int opened = 0;
	int error = 0;

	sorted = malloc((n ? n : 1) * sizeof(*sorted));
	if (!sorted) {
		error = mb_error_oom(err, "safetensors writer", n * sizeof(*sorted));
		goto cleanup;
	}
	for (size_t i = 0; i < n; i++) {
		if (!entries[i].name) {
			error = mb_error_set(err, MB_EINVALID, "%s: tensor %zu has no name", path, i);
			goto cleanup;
		}
		sorted[i] = &entries[i];
	}
	qsort(sorted, n, sizeof(*sorted), cmp_entries);
	error = check_entries(sorted, n, path, err);
	if (error < 0)
		goto cleanup;
	error = build_header(&header, sorted, n, meta_kv, path, err);
	if (error < 0)
		goto cleanup;
	hjson = json_dumps(header, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!hjson) {
		error = mb_error_oom(err, "safetensors header text", 0);
		goto cleanup;
	}
	error = mb_file_atomic_open(&f, path, err);
	if (error < 0)
		goto cleanup;
	opened = 1;
	error = write_body(&f, hjson, strlen(hjson), sorted, n, err);
	if (error < 0)
		goto cleanup;
	error = mb_file_atomic_commit(&f, err);

cleanup:
	if (opened)
		mb_file_atomic_abort(&f);
	free(hjson);
	json_decref(header);
	free(sorted);
	return error;
}
