/*
 * npy.c: NumPy .npy files (numpy/lib/format.py, "Format Version 1.0/2.0/3.0").
 *
 * Layout:
 *   "\x93NUMPY" major minor           8 bytes
 *   header length                    uint16 LE (1.0) or uint32 LE (2.0, 3.0)
 *   header                           a Python dict literal, e.g.
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 *     padded with spaces and a final '\n' to a multiple of 64 bytes
 *   data                             numel * itemsize bytes, C order
 *
 * The header is a Python literal, not JSON: single or double quotes, True and
 * False, tuples with a trailing comma for one element, optional trailing
 * commas, and (in files from Python 2) integers with an L suffix. We parse
 * exactly that subset and reject anything else with the byte offset.
 */
#include <mechbench/npy.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/file.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c assumes a little-endian host"
#endif

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64
/* numpy leaves room for the first axis to grow to this many digits. */
#define NPY_GROWTH_DIGITS 21

/* --- the header literal -------------------------------------------------- */

typedef struct lit {
	const char *s; /* header text, not NUL-terminated */
	size_t n, i;
	size_t base;   /* file offset of s[0], for messages */
	const char *name;
	mb_error *err;
} lit;

static int lit_fail(lit *p, const char *what)
{
	return mb_error_set(p->err, MB_EINVALID, "%s: header: byte %zu: %s", p->name, p->base + p->i,
			    what);
}

static void lit_ws(lit *p)
{
	while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' ||
			       p->s[p->i] == '\r'))
		p->i++;
}

static int lit_peek(lit *p)
{
	lit_ws(p);
	return p->i < p->n ? (unsigned char)p->s[p->i] : -1;
}

static int lit_expect(lit *p, char c, const char *what)
{
	if (lit_peek(p) != (unsigned char)c)
		return lit_fail(p, what);
	p->i++;
	return 0;
}

/* A quoted string without escapes, into buf (truncated to cap-1). */
static int lit_string(lit *p, char *buf, size_t cap)
{
	int q = lit_peek(p);
	size_t k = 0;

	if (q != '\'' && q != '"')
		return lit_fail(p, "expected a quoted string");
	p->i++;
	while (p->i < p->n && p->s[p->i] != q) {
		unsigned char c = (unsigned char)p->s[p->i];
		if (c == '\\')
			return lit_fail(p, "escape sequences in strings are not supported");
		if (c < 0x20 || c >= 0x7f)
			return lit_fail(p, "control or non-ASCII character in string");
		if (k + 1 < cap)
			buf[k++] = (char)c;
		p->i++;
	}
	if (p->i >= p->n)
		return lit_fail(p, "unterminated string");
	p->i++;
	buf[k] = '\0';
	return 0;
}

/* A word (True, False, ...) made of letters. */
static int lit_word(lit *p, char *buf, size_t cap)
{
	size_t k = 0;

	lit_ws(p);
	while (p->i < p->n && ((p->s[p->i] >= 'A' && p->s[p->i] <= 'Z') ||
			       (p->s[p->i] >= 'a' && p->s[p->i] <= 'z') || p->s[p->i] == '_')) {
		if (k + 1 < cap)
			buf[k++] = p->s[p->i];
		p->i++;
	}
	buf[k] = '\0';
	return k ? 0 : lit_fail(p, "expected True or False");
}

/* A decimal integer, optional sign, optional L suffix (Python 2 files). */
static int lit_int(lit *p, int64_t *out)
{
	int neg = 0;
	uint64_t v = 0;
	size_t start;

	lit_ws(p);
	if (p->i < p->n && (p->s[p->i] == '-' || p->s[p->i] == '+')) {
		neg = p->s[p->i] == '-';
		p->i++;
	}
	start = p->i;
	while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
		unsigned d = (unsigned)(p->s[p->i] - '0');
		if (v > ((uint64_t)INT64_MAX - d) / 10)
			return lit_fail(p, "shape: dimension does not fit in 64 bits");
		v = v * 10 + d;
		p->i++;
	}
	if (p->i == start)
		return lit_fail(p, "shape: expected an integer");
	if (p->i < p->n && (p->s[p->i] == 'L' || p->s[p->i] == 'l'))
		p->i++;
	*out = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

/* (d0, d1, ...) with Python's tuple rules: () empty, (3,) one element. */
static int lit_shape(lit *p, int *ndim, int64_t *shape)
{
	int error;

	*ndim = 0;
	if (lit_peek(p) == '[')
		return lit_fail(p, "shape: expected a tuple, got a list");
	if ((error = lit_expect(p, '(', "shape: expected a tuple '('")) < 0)
		return error;
	if (lit_peek(p) == ')') {
		p->i++;
		return 0;
	}
	for (;;) {
		int64_t d = 0;
		size_t at;
		lit_ws(p);
		at = p->i;
		if ((error = lit_int(p, &d)) < 0)
			return error;
		if (d < 0) {
			p->i = at;
			return lit_fail(p, "shape: negative dimension");
		}
		if (*ndim == MB_MAX_DIMS)
			return lit_fail(p, "shape: more than 8 dimensions are not supported");
		shape[(*ndim)++] = d;
		int c = lit_peek(p);
		if (c == ',') {
			p->i++;
			if (lit_peek(p) == ')') {
				p->i++;
				return 0;
			}
			continue;
		}
		if (c == ')') {
			if (*ndim == 1)
				return lit_fail(p, "shape: a one-element tuple needs a trailing comma");
			p->i++;
			return 0;
		}
		return lit_fail(p, "shape: expected ',' or ')'");
	}
}

typedef struct npy_header {
	char descr[32];
	int fortran;
	int ndim;
	int64_t shape[MB_MAX_DIMS];
	int have_descr, have_fortran, have_shape;
} npy_header;

static int parse_dict(lit *p, npy_header *h)
{
	int error;

	memset(h, 0, sizeof(*h));
	if ((error = lit_expect(p, '{', "expected '{' opening the header dict")) < 0)
		return error;
	for (;;) {
		char key[32];
		size_t key_at;
		if (lit_peek(p) == '}') {
			p->i++;
			break;
		}
		key_at = p->i;
		if ((error = lit_string(p, key, sizeof(key))) < 0)
			return error;
		if ((error = lit_expect(p, ':', "expected ':' after a key")) < 0)
			return error;
		if (strcmp(key, "descr") == 0 && !h->have_descr) {
			if (lit_peek(p) == '[')
				return lit_fail(p, "descr: structured dtypes are not supported");
			if ((error = lit_string(p, h->descr, sizeof(h->descr))) < 0)
				return error;
			h->have_descr = 1;
		} else if (strcmp(key, "fortran_order") == 0 && !h->have_fortran) {
			char w[8];
			if ((error = lit_word(p, w, sizeof(w))) < 0)
				return error;
			if (strcmp(w, "True") == 0)
				h->fortran = 1;
			else if (strcmp(w, "False") != 0)
				return lit_fail(p, "fortran_order: expected True or False");
			h->have_fortran = 1;
		} else if (strcmp(key, "shape") == 0 && !h->have_shape) {
			if ((error = lit_shape(p, &h->ndim, h->shape)) < 0)
				return error;
			h->have_shape = 1;
		} else {
			p->i = key_at;
			return lit_fail(p, (strcmp(key, "descr") == 0 ||
					    strcmp(key, "fortran_order") == 0 ||
					    strcmp(key, "shape") == 0)
						   ? "duplicate key"
						   : "unknown key (expected descr, fortran_order, shape)");
		}
		int c = lit_peek(p);
		if (c == ',') {
			p->i++;
			continue;
		}
		if (c == '}') {
			p->i++;
			break;
		}
		return lit_fail(p, "expected ',' or '}' after a value");
	}
	lit_ws(p);
	if (p->i != p->n)
		return lit_fail(p, "unexpected text after the header dict");
	if (!h->have_descr || !h->have_fortran || !h->have_shape)
		return mb_error_set(p->err, MB_EINVALID, "%s: header: %s: required key is missing",
				    p->name, !h->have_descr ? "descr" : !h->have_fortran ? "fortran_order"
											: "shape");
	return 0;
}

/* '<f4' and friends. numpy writes '|' for one-byte types and '<' or '>' for
 * the rest; '=' (native) is little-endian here. */
static int parse_descr(const char *name, const char *d, mb_dtype *out, mb_error *err)
{
	static const struct {
		const char *code;
		mb_dtype t;
	} codes[] = {{"f4", MB_DTYPE_F32}, {"f8", MB_DTYPE_F64}, {"i4", MB_DTYPE_I32},
		     {"i8", MB_DTYPE_I64}, {"f2", MB_DTYPE_F16}, {"u1", MB_DTYPE_U8},
		     {"b1", MB_DTYPE_BOOL}};
	const char *full = d;
	char order = d[0];

	if (order == '<' || order == '>' || order == '|' || order == '=')
		d++;
	else
		order = '=';
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		if (strcmp(d, codes[i].code) != 0)
			continue;
		if (order == '>' && mb_dtype_size(codes[i].t) > 1)
			return mb_error_set(err, MB_EINVALID,
					    "%s: header: descr: '>%s' is big-endian; only "
					    "little-endian data is supported",
					    name, d);
		*out = codes[i].t;
		return 0;
	}
	return mb_error_set(err, MB_EINVALID,
			    "%s: header: descr: unsupported dtype '%s' (supported: <f4 <f8 <i4 "
			    "<i8 <f2 |u1 |b1)",
			    name, full);
}

int mb_npy_read_mem(mb_npy *out, const void *buf, size_t len, const char *name, mb_error *err)
{
	const unsigned char *b = buf;
	size_t prefix, hlen, need, data_len;
	npy_header h;
	char shape[160];
	lit p;
	int overflow = 0;
	int error;

	memset(out, 0, sizeof(*out));
	if (!name)
		name = "<npy>";
	if (len < NPY_MAGIC_LEN + 2 || memcmp(b, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
		return mb_error_set(err, MB_EINVALID,
				    "%s: bad magic: not a .npy file (expected \\x93NUMPY and 2 "
				    "version bytes; file is %zu bytes)",
				    name, len);
	if (b[6] < 1 || b[6] > 3 || b[7] != 0)
		return mb_error_set(err, MB_EINVALID,
				    "%s: version: unsupported format version %u.%u (1.0, 2.0, 3.0 "
				    "are)",
				    name, b[6], b[7]);
	prefix = b[6] == 1 ? 10 : 12;
	if (len < prefix)
		return mb_error_set(err, MB_EINVALID,
				    "%s: header length: file ends at byte %zu inside the %zu-byte "
				    "preamble",
				    name, len, prefix);
	hlen = b[6] == 1 ? (size_t)(b[8] | b[9] << 8)
			 : (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 |
				   (size_t)b[11] << 24;
	if (hlen > len - prefix)
		return mb_error_set(err, MB_EINVALID,
				    "%s: header length %zu is past the end of the file (%zu bytes "
				    "follow the preamble)",
				    name, hlen, len - prefix);

	p.s = (const char *)b + prefix;
	p.n = hlen;
	p.i = 0;
	p.base = prefix;
	p.name = name;
	p.err = err;
	error = parse_dict(&p, &h);
	if (error < 0)
		return error;
	error = parse_descr(name, h.descr, &out->dtype, err);
	if (error < 0)
		return error;
	if (h.fortran)
		return mb_error_set(err, MB_EINVALID,
				    "%s: header: fortran_order: Fortran-order arrays are not "
				    "supported (save with np.ascontiguousarray)",
				    name);
	out->ndim = h.ndim;
	memcpy(out->shape, h.shape, sizeof(h.shape));
	out->numel = mb_shape_numel(h.ndim, h.shape, &overflow);
	if (overflow || out->numel > SIZE_MAX / mb_dtype_size(out->dtype))
		return mb_error_set(err, MB_EINVALID,
				    "%s: header: shape: element count overflows the address space",
				    name);
	need = out->numel * mb_dtype_size(out->dtype);
	data_len = len - prefix - hlen;
	mb_shape_str(shape, sizeof(shape), out->ndim, out->shape);
	if (data_len < need)
		return mb_error_set(err, MB_EINVALID,
				    "%s: data: %zu bytes after the header, but shape %s of %s needs "
				    "%zu (truncated file)",
				    name, data_len, shape, h.descr, need);
	if (data_len > need)
		return mb_error_set(err, MB_EINVALID,
				    "%s: data: %zu trailing bytes after the %zu bytes that shape %s "
				    "of %s needs",
				    name, data_len - need, need, shape, h.descr);
	out->data = malloc(need ? need : 1);
	if (!out->data) {
		memset(out, 0, sizeof(*out));
		return mb_error_oom(err, name, need);
	}
	if (need)
		memcpy(out->data, b + prefix + hlen, need);
	return 0;
}

int mb_npy_read(mb_npy *out, const char *path, mb_error *err)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	int error;

	memset(out, 0, sizeof(*out));
	error = mb_file_read_all(&buf, &len, path, err);
	if (error < 0)
		return error;
	error = mb_npy_read_mem(out, buf, len, path, err);
	free(buf);
	return error;
}

int mb_npy_read_f32(mb_npy *out, const char *path, mb_error *err)
{
	float *f;
	const unsigned char *src;
	int error;

	error = mb_npy_read(out, path, err);
	if (error < 0 || out->dtype == MB_DTYPE_F32)
		return error;
	if (out->dtype == MB_DTYPE_BOOL || out->dtype == MB_DTYPE_U8) {
		/* Not numbers we would ever want as floats; a caller asking for
		 * float32 from them has the wrong file. */
		error = mb_error_set(err, MB_EINVALID, "%s: dtype %s cannot be read as float32", path,
				     mb_dtype_name(out->dtype));
		mb_npy_dispose(out);
		return error;
	}
	f = malloc(out->numel ? out->numel * sizeof(float) : 1);
	if (!f) {
		error = mb_error_oom(err, path, out->numel * sizeof(float));
		mb_npy_dispose(out);
		return error;
	}
	src = out->data;
	for (size_t i = 0; i < out->numel; i++) {
		switch (out->dtype) {
		case MB_DTYPE_F64: {
			double x;
			memcpy(&x, src + 8 * i, 8);
			f[i] = (float)x;
			break;
		}
		case MB_DTYPE_I32: {
			int32_t x;
			memcpy(&x, src + 4 * i, 4);
			f[i] = (float)x;
			break;
		}
		case MB_DTYPE_I64: {
			int64_t x;
			memcpy(&x, src + 8 * i, 8);
			f[i] = (float)x;
			break;
		}
		case MB_DTYPE_F16:
			f[i] = mb_f16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
			break;
		default:
			MB_ASSERT(0);
		}
	}
	free(out->data);
	out->data = f;
	out->dtype = MB_DTYPE_F32;
	return 0;
}

void mb_npy_dispose(mb_npy *a)
{
	if (!a)
		return;
	free(a->data);
	memset(a, 0, sizeof(*a));
}

/* --- writing ------------------------------------------------------------- */

static const char *descr_of(mb_dtype t)
{
	switch (t) {
	case MB_DTYPE_F32: return "<f4";
	case MB_DTYPE_F64: return "<f8";
	case MB_DTYPE_I32: return "<i4";
	case MB_DTYPE_I64: return "<i8";
	case MB_DTYPE_F16: return "<f2";
	case MB_DTYPE_U8: return "|u1";
	case MB_DTYPE_BOOL: return "|b1";
	default: return NULL;
	}
}

/* The header numpy 1.24 writes (format._write_array_header): keys sorted,
 * repr() values, spare spaces for the first axis to grow, then spaces and
 * '\n' up to a multiple of 64 bytes including the preamble. Matching it byte
 * for byte lets the tests compare our files with numpy's. */
static size_t format_header(char *buf, size_t cap, const char *descr, int ndim,
			    const int64_t *shape)
{
	size_t k = 0;
	char first[24];

	k += (size_t)snprintf(buf + k, cap - k, "{'descr': '%s', 'fortran_order': False, 'shape': (",
			      descr);
	for (int i = 0; i < ndim; i++)
		k += (size_t)snprintf(buf + k, cap - k, i ? ", %lld" : "%lld", (long long)shape[i]);
	k += (size_t)snprintf(buf + k, cap - k, "%s), }", ndim == 1 ? "," : "");
	if (ndim > 0) {
		int digits = snprintf(first, sizeof(first), "%lld", (long long)shape[0]);
		for (int i = digits; i < NPY_GROWTH_DIGITS && k + 1 < cap; i++)
			buf[k++] = ' ';
	}
	buf[k] = '\0';
	return k;
}

int mb_npy_write(const char *path, mb_dtype dtype, int ndim, const int64_t *shape,
		 const void *data, mb_error *err)
{
	char header[512]; /* 8 dims of 20 digits fit many times over */
	unsigned char pre[12];
	const char *descr = (unsigned)dtype <= MB_DTYPE_BOOL ? descr_of(dtype) : NULL;
	size_t hlen, total, prefix, numel, pad;
	mb_file_atomic f;
	int overflow = 0;
	int error;

	if (!descr)
		return mb_error_set(err, MB_EINVALID, "%s: dtype %s has no .npy equivalent", path,
				    (unsigned)dtype <= MB_DTYPE_BOOL ? mb_dtype_name(dtype) : "?");
	if (ndim < 0 || ndim > MB_MAX_DIMS)
		return mb_error_set(err, MB_EINVALID, "%s: ndim %d is outside [0, %d]", path, ndim,
				    MB_MAX_DIMS);
	for (int i = 0; i < ndim; i++)
		if (shape[i] < 0)
			return mb_error_set(err, MB_EINVALID, "%s: shape[%d] is negative (%lld)", path,
					    i, (long long)shape[i]);
	numel = mb_shape_numel(ndim, shape, &overflow);
	if (overflow || numel > SIZE_MAX / mb_dtype_size(dtype))
		return mb_error_set(err, MB_EINVALID, "%s: shape overflows the address space", path);
	if (numel > 0 && !data)
		return mb_error_set(err, MB_EINVALID, "%s: data is NULL", path);

	hlen = format_header(header, sizeof(header) - NPY_ALIGN - 1, descr, ndim, shape);
	/* Version 1.0 unless the header outgrows its 16-bit length. */
	prefix = 10;
	pad = NPY_ALIGN - (prefix + hlen + 1) % NPY_ALIGN;
	if (hlen + 1 + pad > 0xffff) {
		prefix = 12;
		pad = NPY_ALIGN - (prefix + hlen + 1) % NPY_ALIGN;
	}
	memset(header + hlen, ' ', pad);
	header[hlen + pad] = '\n';
	total = hlen + pad + 1;
	memcpy(pre, NPY_MAGIC, NPY_MAGIC_LEN);
	pre[6] = prefix == 10 ? 1 : 2;
	pre[7] = 0;
	for (size_t i = 0; i < prefix - 8; i++)
		pre[8 + i] = (unsigned char)(total >> (8 * i));

	error = mb_file_atomic_open(&f, path, err);
	if (error < 0)
		return error;
	if ((error = mb_file_atomic_write(&f, pre, prefix, err)) < 0 ||
	    (error = mb_file_atomic_write(&f, header, total, err)) < 0 ||
	    (numel > 0 &&
	     (error = mb_file_atomic_write(&f, data, numel * mb_dtype_size(dtype), err)) < 0)) {
		mb_file_atomic_abort(&f);
		return error;
	}
	return mb_file_atomic_commit(&f, err);
}
