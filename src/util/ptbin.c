/*
 * ptbin.c: PyTorch zip checkpoints (torch.save) to a safetensors image.
 *
 * Two parts: a zip reader (end-of-central-directory record, ZIP64 records
 * and extra fields, STORED entries only) and a pickle interpreter with a
 * whitelist of globals (ptbin.h lists them). Values live in one list owned
 * by the interpreter and freed together; strings point into the pickle.
 */
#include <mechbench/ptbin.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mechbench/dtype.h>
#include <mechbench/safetensors.h>

#define MAX_MEMO    (1u << 20)
#define MAX_ENTRIES (1u << 20)

/* Zip ----------------------------------------------------------------------- */

typedef struct zentry {
	const char *name; /* into the buffer, not NUL-terminated */
	size_t name_len;
	size_t data; /* offset of the entry's bytes */
	size_t size;
} zentry;

typedef struct zip {
	const uint8_t *buf;
	size_t len;
	const char *file; /* for errors */
	zentry *e;
	size_t n;
} zip;

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16;
}
static uint64_t rd64(const uint8_t *p)
{
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/* ZIP64 extended information (extra field 0x0001): the 64-bit values of the
 * fields whose 32-bit slot holds 0xFFFFFFFF, in this order. */
static int zip64_extra(const zip *z, const uint8_t *ex, size_t ex_len, uint64_t *usize,
                       uint64_t *csize, uint64_t *off, const char *ename, mb_error *err)
{
	size_t p = 0;

	while (p + 4 <= ex_len) {
		uint16_t id = rd16(ex + p), sz = rd16(ex + p + 2);
		size_t q = p + 4, end = p + 4 + sz;

		if (end > ex_len)
			break;
		if (id == 1) {
			uint64_t *f[3] = {usize, csize, off};

			for (int i = 0; i < 3; i++) {
				if (*f[i] != 0xFFFFFFFFu)
					continue;
				if (q + 8 > end)
					return mb_error_set(
					    err, MB_EINVALID,
					    "%s: zip entry %s: ZIP64 extra field too short",
					    z->file, ename);
				*f[i] = rd64(ex + q);
				q += 8;
			}
			return 0;
		}
		p = end;
	}
	if (*usize == 0xFFFFFFFFu || *csize == 0xFFFFFFFFu || *off == 0xFFFFFFFFu)
		return mb_error_set(err, MB_EINVALID, "%s: zip entry %s: no ZIP64 extra field",
		                    z->file, ename);
	return 0;
}

static int zip_open(zip *z, const uint8_t *buf, size_t len, const char *file, mb_error *err)
{
	size_t eocd = SIZE_MAX, p, lim;
	uint64_t n, cd_off, cd_size;

	memset(z, 0, sizeof(*z));
	z->buf = buf;
	z->len = len;
	z->file = file;
	if (len < 22)
		return mb_error_set(err, MB_EINVALID,
		                    "%s: not a zip archive (%zu bytes; torch.save writes a zip)",
		                    file, len);
	lim = len - 22 > 65535 ? len - 22 - 65535 : 0;
	for (p = len - 22 + 1; p-- > lim;)
		if (rd32(buf + p) == 0x06054b50u) {
			eocd = p;
			break;
		}
	if (eocd == SIZE_MAX)
		return mb_error_set(err, MB_EINVALID,
		                    "%s: not a zip archive (no end-of-central-directory record; "
		                    "an old non-zip torch.save file?)",
		                    file);
	n = rd16(buf + eocd + 10);
	cd_size = rd32(buf + eocd + 12);
	cd_off = rd32(buf + eocd + 16);
	if (n == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
		size_t loc, r;

		if (eocd < 20 || rd32(buf + eocd - 20) != 0x07064b50u)
			return mb_error_set(err, MB_EINVALID,
			                    "%s: zip: ZIP64 values but no ZIP64 locator", file);
		loc = eocd - 20;
		if (loc < 56 || rd64(buf + loc + 8) > loc - 56)
			return mb_error_set(err, MB_EINVALID,
			                    "%s: zip: ZIP64 record offset %llu out of range", file,
			                    (unsigned long long)rd64(buf + loc + 8));
		r = (size_t)rd64(buf + loc + 8);
		if (rd32(buf + r) != 0x06064b50u)
			return mb_error_set(
			    err, MB_EINVALID,
			    "%s: zip: no ZIP64 end-of-central-directory record at %zu", file, r);
		n = rd64(buf + r + 32);
		cd_size = rd64(buf + r + 40);
		cd_off = rd64(buf + r + 48);
		eocd = r; /* the central directory ends before the ZIP64 record */
	}
	if (cd_off > eocd || cd_size > eocd - cd_off)
		return mb_error_set(err, MB_EINVALID,
		                    "%s: zip: central directory [%llu, +%llu) out of range", file,
		                    (unsigned long long)cd_off, (unsigned long long)cd_size);
	if (n > MAX_ENTRIES || n > cd_size / 46)
		return mb_error_set(err, MB_EINVALID,
		                    "%s: zip: %llu entries do not fit a central directory of %llu "
		                    "bytes",
		                    file, (unsigned long long)n, (unsigned long long)cd_size);
	z->e = calloc(n ? n : 1, sizeof(*z->e));
	if (!z->e)
		return mb_error_oom(err, "zip entries", n * sizeof(*z->e));
	p = (size_t)cd_off;
	for (uint64_t i = 0; i < n; i++) {
		const uint8_t *c = buf + p;
		size_t nl, xl, cl, end = (size_t)(cd_off + cd_size);
		uint64_t usize, csize, off;
		uint16_t method, flags;
		char ename[128];
		zentry *e = &z->e[z->n];

		if (p + 46 > end || rd32(c) != 0x02014b50u)
			return mb_error_set(
			    err, MB_EINVALID,
			    "%s: zip: central directory entry %llu: bad signature or "
			    "truncated",
			    file, (unsigned long long)i);
		flags = rd16(c + 8);
		method = rd16(c + 10);
		csize = rd32(c + 20);
		usize = rd32(c + 24);
		nl = rd16(c + 28);
		xl = rd16(c + 30);
		cl = rd16(c + 32);
		off = rd32(c + 42);
		if (p + 46 + nl + xl + cl > end)
			return mb_error_set(err, MB_EINVALID,
			                    "%s: zip: central directory entry %llu: truncated",
			                    file, (unsigned long long)i);
		snprintf(ename, sizeof(ename), "%.*s", (int)(nl < 100 ? nl : 100),
		         (const char *)c + 46);
		for (char *s = ename; *s; s++)
			if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
				*s = '?';
		if (zip64_extra(z, c + 46 + nl, xl, &usize, &csize, &off, ename, err) < 0)
			return err->code;
		if (flags & 1)
			return mb_error_set(err, MB_EINVALID, "%s: zip entry %s: encrypted", file,
			                    ename);
		if (method != 0)
			return mb_error_set(err, MB_EINVALID,
			                    "%s: zip entry %s: compressed (method %u); only stored "
			                    "entries are read, as torch.save writes them",
			                    file, ename, method);
		if (csize != usize)
			return mb_error_set(
			    err, MB_EINVALID,
			    "%s: zip entry %s: stored but sizes differ (%llu, %llu)", file, ename,
			    (unsigned long long)csize, (unsigned long long)usize);
		if (off > len || len - off < 30 || rd32(buf + off) != 0x04034b50u)
			return mb_error_set(err, MB_EINVALID,
			                    "%s: zip entry %s: no local header at offset %llu",
			                    file, ename, (unsigned long long)off);
		{
			size_t data =
			    (size_t)off + 30 + rd16(buf + off + 26) + rd16(buf + off + 28);

			if (data > len || usize > len - data)
				return mb_error_set(
				    err, MB_EINVALID,
				    "%s: zip entry %s: %llu bytes at offset %zu run past "
				    "the end of the file (%zu bytes)",
				    file, ename, (unsigned long long)usize, data, len);
			e->data = data;
		}
		e->name = (const char *)c + 46;
		e->name_len = nl;
		e->size = (size_t)usize;
		z->n++;
		p += 46 + nl + xl + cl;
	}
	return 0;
}

static const zentry *zip_find(const zip *z, const char *prefix, size_t plen, const char *rest)
{
	size_t rlen = strlen(rest);

	for (size_t i = 0; i < z->n; i++) {
		const zentry *e = &z->e[i];

		if (e->name_len == plen + 1 + rlen && memcmp(e->name, prefix, plen) == 0 &&
		    e->name[plen] == '/' && memcmp(e->name + plen + 1, rest, rlen) == 0)
			return e;
	}
	return NULL;
}

/* Pickle values ------------------------------------------------------------- */

typedef enum vkind {
	V_NONE,
	V_BOOL,
	V_INT,
	V_FLOAT,
	V_STR,
	V_BYTES,
	V_TUPLE,
	V_LIST,
	V_DICT, /* dict and OrderedDict: items are key, value, key, value, ... */
	V_GLOBAL,
	V_STORAGE,
	V_TENSOR,
} vkind;

typedef enum gkind {
	G_ODICT,
	G_REBUILD,
	G_STORAGE,
} gkind;

typedef struct val val;
struct val {
	vkind k;
	int64_t i;     /* V_BOOL, V_INT */
	const char *s; /* V_STR, V_BYTES: into the pickle */
	size_t slen;
	val **items; /* V_TUPLE, V_LIST, V_DICT */
	size_t n, cap;
	gkind g;            /* V_GLOBAL */
	mb_dtype dtype;     /* V_GLOBAL storage type, V_STORAGE, V_TENSOR */
	const zentry *blob; /* V_STORAGE: its data/<key> entry */
	int64_t numel;      /* V_STORAGE: elements */
	val *storage;       /* V_TENSOR */
	int64_t offset;     /* V_TENSOR: storage offset, elements */
	int ndim;
	int64_t shape[MB_MAX_DIMS];
};

typedef struct vm {
	const char *file;
	const zip *z;
	const char *prefix;
	size_t plen;
	const uint8_t *p, *end, *start;
	val **all; /* every value, freed together */
	size_t n_all, cap_all;
	val **stack;
	size_t sp, stack_cap;
	size_t *marks;
	size_t n_marks, marks_cap;
	val **memo;
	size_t memo_cap;
	size_t memo_len; /* for MEMOIZE: highest index + 1 */
	mb_error *err;
} vm;

static int vm_err(vm *m, const char *fmt, const char *arg)
{
	return mb_error_set(m->err, MB_EINVALID, "%s: data.pkl: byte %zu: %s%s", m->file,
	                    (size_t)(m->p - m->start), fmt, arg ? arg : "");
}

static int grow(void **v, size_t *cap, size_t need, size_t elem)
{
	size_t c;
	void *p;

	if (need <= *cap)
		return 0;
	c = *cap ? *cap : 16;
	while (c < need)
		c *= 2;
	p = realloc(*v, c * elem);
	if (!p)
		return -1;
	*v = p;
	*cap = c;
	return 0;
}

static val *vnew(vm *m, vkind k)
{
	val *v;

	if (grow((void **)&m->all, &m->cap_all, m->n_all + 1, sizeof(*m->all)) < 0)
		return NULL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	v->k = k;
	m->all[m->n_all++] = v;
	return v;
}

static int vadd(val *c, val *x)
{
	if (grow((void **)&c->items, &c->cap, c->n + 1, sizeof(*c->items)) < 0)
		return -1;
	c->items[c->n++] = x;
	return 0;
}

static int push(vm *m, val *v)
{
	if (!v)
		return mb_error_oom(m->err, "pickle value", sizeof(val));
	if (grow((void **)&m->stack, &m->stack_cap, m->sp + 1, sizeof(*m->stack)) < 0)
		return mb_error_oom(m->err, "pickle stack", m->sp);
	m->stack[m->sp++] = v;
	return 0;
}

/* Values above the top MARK: as in Python's pickle, an opcode never pops
 * past a MARK (MARK starts a new stack). */
static size_t avail(const vm *m)
{
	return m->sp - (m->n_marks ? m->marks[m->n_marks - 1] : 0);
}

/* The index of the top mark; values above it are the mark's items. */
static int pop_mark(vm *m, size_t *at)
{
	if (m->n_marks == 0)
		return vm_err(m, "no MARK on the stack", NULL);
	*at = m->marks[--m->n_marks];
	MB_ASSERT(*at <= m->sp);
	return 0;
}

static const char *kind_name(const val *v)
{
	static const char *names[] = {"None",  "bool", "int",  "float",  "str",     "bytes",
	                              "tuple", "list", "dict", "global", "storage", "tensor"};
	return names[v->k];
}

static int str_is(const val *v, const char *s)
{
	return v->k == V_STR && v->slen == strlen(s) && memcmp(v->s, s, v->slen) == 0;
}

static const struct {
	const char *name;
	mb_dtype dtype;
} storages[] = {
    {"FloatStorage", MB_DTYPE_F32},     {"HalfStorage", MB_DTYPE_F16},
    {"BFloat16Storage", MB_DTYPE_BF16}, {"DoubleStorage", MB_DTYPE_F64},
    {"IntStorage", MB_DTYPE_I32},       {"LongStorage", MB_DTYPE_I64},
    {"ByteStorage", MB_DTYPE_U8},       {"BoolStorage", MB_DTYPE_BOOL},
};

static int global(vm *m, const char *mod, size_t ml, const char *name, size_t nl)
{
	char what[160];
	val *g = vnew(m, V_GLOBAL);

	if (!g)
		return mb_error_oom(m->err, "pickle value", sizeof(val));
#define IS(s, l, lit) ((l) == strlen(lit) && memcmp((s), (lit), (l)) == 0)
	if (IS(mod, ml, "collections") && IS(name, nl, "OrderedDict")) {
		g->g = G_ODICT;
		return push(m, g);
	}
	if (IS(mod, ml, "torch._utils") && IS(name, nl, "_rebuild_tensor_v2")) {
		g->g = G_REBUILD;
		return push(m, g);
	}
	if (IS(mod, ml, "torch"))
		for (size_t i = 0; i < sizeof(storages) / sizeof(storages[0]); i++)
			if (IS(name, nl, storages[i].name)) {
				g->g = G_STORAGE;
				g->dtype = storages[i].dtype;
				return push(m, g);
			}
#undef IS
	snprintf(what, sizeof(what), "%.*s.%.*s", (int)(ml < 70 ? ml : 70), mod,
	         (int)(nl < 70 ? nl : 70), name);
	for (char *s = what; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			*s = '?';
	return vm_err(m, "global not allowed in a state dict: ", what);
}

static int need(vm *m, size_t n)
{
	if ((size_t)(m->end - m->p) < n)
		return vm_err(m, "truncated", NULL);
	return 0;
}

/* BINPERSID: ('storage', <storage type>, key, location, numel). */
static int persid(vm *m, val *pid)
{
	char key[64];
	val *s;
	const zentry *blob;
	size_t esz;

	if (pid->k != V_TUPLE || pid->n != 5 || !str_is(pid->items[0], "storage") ||
	    pid->items[1]->k != V_GLOBAL || pid->items[1]->g != G_STORAGE ||
	    pid->items[2]->k != V_STR || pid->items[3]->k != V_STR || pid->items[4]->k != V_INT)
		return vm_err(m, "persistent id is not ('storage', type, key, location, numel)",
		              NULL);
	if (pid->items[2]->slen == 0 || pid->items[2]->slen >= 48 ||
	    memchr(pid->items[2]->s, '/', pid->items[2]->slen))
		return vm_err(m, "persistent id: bad storage key", NULL);
	snprintf(key, sizeof(key), "data/%.*s", (int)pid->items[2]->slen, pid->items[2]->s);
	blob = zip_find(m->z, m->prefix, m->plen, key);
	if (!blob)
		return mb_error_set(m->err, MB_EINVALID,
		                    "%s: storage %s: no entry %.*s/%s in the archive", m->file,
		                    key + 5, (int)m->plen, m->prefix, key);
	esz = mb_dtype_size(pid->items[1]->dtype);
	if (pid->items[4]->i < 0 || (uint64_t)pid->items[4]->i > blob->size / esz ||
	    (size_t)pid->items[4]->i * esz != blob->size)
		return mb_error_set(
		    m->err, MB_EINVALID,
		    "%s: storage %s: %lld elements of %s do not match its %zu bytes", m->file,
		    key + 5, (long long)pid->items[4]->i, mb_dtype_name(pid->items[1]->dtype),
		    blob->size);
	s = vnew(m, V_STORAGE);
	if (!s)
		return mb_error_oom(m->err, "pickle value", sizeof(val));
	s->dtype = pid->items[1]->dtype;
	s->blob = blob;
	s->numel = pid->items[4]->i;
	return push(m, s);
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
 * backward_hooks[, metadata]) */
static int rebuild(vm *m, val *args)
{
	val *t, **a = args->items;
	int64_t expect = 1;

	if (args->k != V_TUPLE || (args->n != 6 && args->n != 7) || a[0]->k != V_STORAGE ||
	    a[1]->k != V_INT || a[2]->k != V_TUPLE || a[3]->k != V_TUPLE || a[2]->n != a[3]->n ||
	    a[4]->k != V_BOOL)
		return vm_err(m,
		              "_rebuild_tensor_v2 arguments are not (storage, offset, size, "
		              "stride, requires_grad, hooks)",
		              NULL);
	if (a[2]->n > MB_MAX_DIMS)
		return vm_err(m, "tensor with more than 8 dimensions", NULL);
	t = vnew(m, V_TENSOR);
	if (!t)
		return mb_error_oom(m->err, "pickle value", sizeof(val));
	t->storage = a[0];
	t->dtype = a[0]->dtype;
	t->offset = a[1]->i;
	t->ndim = (int)a[2]->n;
	for (int d = 0; d < t->ndim; d++) {
		if (a[2]->items[d]->k != V_INT || a[2]->items[d]->i < 0 ||
		    a[3]->items[d]->k != V_INT)
			return vm_err(m, "tensor size or stride is not a non-negative int", NULL);
		t->shape[d] = a[2]->items[d]->i;
	}
	/* contiguous: each stride is the product of the later sizes, except for
	 * dimensions of size 1 (any stride addresses the same element) */
	for (int d = t->ndim - 1; d >= 0; d--) {
		if (t->shape[d] != 1 && a[3]->items[d]->i != expect)
			return vm_err(m,
			              "tensor is not contiguous (stride does not describe "
			              "row-major memory; save tensor.contiguous())",
			              NULL);
		if (t->shape[d] != 0 && expect > INT64_MAX / t->shape[d])
			return vm_err(m, "tensor size overflows", NULL);
		expect *= t->shape[d];
	}
	t->numel = expect;
	if (t->offset < 0 ||
	    (expect > 0 && (t->offset > a[0]->numel || expect > a[0]->numel - t->offset)))
		return vm_err(m, "tensor runs past the end of its storage", NULL);
	return push(m, t);
}

static int reduce(vm *m)
{
	val *args, *f;

	if (avail(m) < 2)
		return vm_err(m, "REDUCE on a short stack", NULL);
	args = m->stack[--m->sp];
	f = m->stack[--m->sp];
	if (f->k != V_GLOBAL || args->k != V_TUPLE)
		return vm_err(m, "REDUCE of a non-global", NULL);
	if (f->g == G_ODICT) {
		if (args->n != 0)
			return vm_err(m, "OrderedDict with arguments", NULL);
		return push(m, vnew(m, V_DICT));
	}
	if (f->g == G_REBUILD)
		return rebuild(m, args);
	return vm_err(m, "REDUCE of a storage type", NULL);
}

static int setitems(vm *m, size_t from)
{
	val *d;

	if (from <= (m->n_marks ? m->marks[m->n_marks - 1] : 0) || (m->sp - from) % 2 != 0)
		return vm_err(m, "SETITEM(S) needs a dict and key/value pairs", NULL);
	d = m->stack[from - 1];
	if (d->k != V_DICT)
		return vm_err(m, "SETITEM(S) on a ", kind_name(d));
	for (size_t i = from; i < m->sp; i++)
		if (vadd(d, m->stack[i]) < 0)
			return mb_error_oom(m->err, "dict", d->n);
	m->sp = from;
	return 0;
}

static int run(vm *m, val **result)
{
	for (;;) {
		uint8_t op;
		uint64_t n = 0;
		val *v;
		size_t at = 0;
		int rc = 0;
		char opname[24];

		if (need(m, 1) < 0)
			return m->err->code;
		op = *m->p++;
		switch (op) {
		case 0x80: /* PROTO */
			if (need(m, 1) < 0)
				return m->err->code;
			if (*m->p > 5)
				return vm_err(m, "unknown pickle protocol", NULL);
			m->p++;
			break;
		case 0x95: /* FRAME: a length hint */
			if (need(m, 8) < 0)
				return m->err->code;
			m->p += 8;
			break;
		case '.': /* STOP */
			if (m->sp != 1)
				return vm_err(m, "STOP with a stack of other than one value", NULL);
			*result = m->stack[0];
			return 0;
		case '(': /* MARK */
			if (grow((void **)&m->marks, &m->marks_cap, m->n_marks + 1,
			         sizeof(*m->marks)) < 0)
				return mb_error_oom(m->err, "pickle marks", m->n_marks);
			m->marks[m->n_marks++] = m->sp;
			break;
		case '}': /* EMPTY_DICT */
			rc = push(m, vnew(m, V_DICT));
			break;
		case ']': /* EMPTY_LIST */
			rc = push(m, vnew(m, V_LIST));
			break;
		case ')': /* EMPTY_TUPLE */
			rc = push(m, vnew(m, V_TUPLE));
			break;
		case 't': /* TUPLE */
		case 'l': /* LIST */
			if (pop_mark(m, &at) < 0)
				return m->err->code;
			v = vnew(m, op == 't' ? V_TUPLE : V_LIST);
			if (!v)
				return mb_error_oom(m->err, "pickle value", sizeof(val));
			for (size_t i = at; i < m->sp; i++)
				if (vadd(v, m->stack[i]) < 0)
					return mb_error_oom(m->err, "tuple", v->n);
			m->sp = at;
			rc = push(m, v);
			break;
		case 0x85: /* TUPLE1 */
		case 0x86: /* TUPLE2 */
		case 0x87: /* TUPLE3 */
			n = op - 0x84u;
			if (avail(m) < n)
				return vm_err(m, "TUPLEn on a short stack", NULL);
			v = vnew(m, V_TUPLE);
			if (!v)
				return mb_error_oom(m->err, "pickle value", sizeof(val));
			for (size_t i = m->sp - n; i < m->sp; i++)
				if (vadd(v, m->stack[i]) < 0)
					return mb_error_oom(m->err, "tuple", v->n);
			m->sp -= n;
			rc = push(m, v);
			break;
		case 'N':
			rc = push(m, vnew(m, V_NONE));
			break;
		case 0x88: /* NEWTRUE */
		case 0x89: /* NEWFALSE */
			v = vnew(m, V_BOOL);
			if (v)
				v->i = op == 0x88;
			rc = push(m, v);
			break;
		case 'J': /* BININT */
		case 'K': /* BININT1 */
		case 'M': /* BININT2 */
			n = op == 'J' ? 4 : op == 'K' ? 1 : 2;
			if (need(m, n) < 0)
				return m->err->code;
			v = vnew(m, V_INT);
			if (v)
				v->i = op == 'J'   ? (int64_t)(int32_t)rd32(m->p)
				       : op == 'K' ? m->p[0]
				                   : rd16(m->p);
			m->p += n;
			rc = push(m, v);
			break;
		case 0x8a: { /* LONG1: n-byte little-endian two's complement */
			uint64_t u = 0;

			if (need(m, 1) < 0)
				return m->err->code;
			n = *m->p++;
			if (n > 8)
				return vm_err(m, "LONG1 integer wider than 64 bits", NULL);
			if (need(m, n) < 0)
				return m->err->code;
			for (uint64_t i = 0; i < n; i++)
				u |= (uint64_t)m->p[i] << (8 * i);
			if (n > 0 && n < 8 && (m->p[n - 1] & 0x80))
				u |= ~(uint64_t)0 << (8 * n);
			m->p += n;
			v = vnew(m, V_INT);
			if (v)
				memcpy(&v->i, &u, sizeof(u));
			rc = push(m, v);
			break;
		}
		case 'G': /* BINFLOAT (value unused: metadata only) */
			if (need(m, 8) < 0)
				return m->err->code;
			m->p += 8;
			rc = push(m, vnew(m, V_FLOAT));
			break;
		case 'X':  /* BINUNICODE */
		case 0x8c: /* SHORT_BINUNICODE */
		case 0x8d: /* BINUNICODE8 */
		case 'T':  /* BINSTRING */
		case 'U':  /* SHORT_BINSTRING */
		case 'B':  /* BINBYTES */
		case 'C':  /* SHORT_BINBYTES */
		case 0x8e: /* BINBYTES8 */ {
			size_t w = (op == 0x8c || op == 'U' || op == 'C') ? 1
			           : (op == 0x8d || op == 0x8e)           ? 8
			                                                  : 4;

			if (need(m, w) < 0)
				return m->err->code;
			n = w == 1 ? m->p[0] : w == 4 ? rd32(m->p) : rd64(m->p);
			m->p += w;
			if (need(m, n) < 0)
				return m->err->code;
			v = vnew(m, (op == 'B' || op == 'C' || op == 0x8e) ? V_BYTES : V_STR);
			if (v) {
				v->s = (const char *)m->p;
				v->slen = (size_t)n;
			}
			m->p += n;
			rc = push(m, v);
			break;
		}
		case 'c': { /* GLOBAL: module\nname\n */
			const uint8_t *a = m->p, *b, *e;

			b = memchr(a, '\n', (size_t)(m->end - a));
			e = b ? memchr(b + 1, '\n', (size_t)(m->end - b - 1)) : NULL;
			if (!e)
				return vm_err(m, "GLOBAL truncated", NULL);
			m->p = e + 1;
			rc = global(m, (const char *)a, (size_t)(b - a), (const char *)b + 1,
			            (size_t)(e - b - 1));
			break;
		}
		case 0x93: { /* STACK_GLOBAL */
			val *mod, *name;

			if (avail(m) < 2)
				return vm_err(m, "STACK_GLOBAL on a short stack", NULL);
			name = m->stack[--m->sp];
			mod = m->stack[--m->sp];
			if (mod->k != V_STR || name->k != V_STR)
				return vm_err(m, "STACK_GLOBAL of non-strings", NULL);
			rc = global(m, mod->s, mod->slen, name->s, name->slen);
			break;
		}
		case 'q':  /* BINPUT */
		case 'r':  /* LONG_BINPUT */
		case 0x94: /* MEMOIZE */
			if (op == 0x94) {
				n = m->memo_len;
			} else {
				size_t w = op == 'q' ? 1 : 4;

				if (need(m, w) < 0)
					return m->err->code;
				n = w == 1 ? m->p[0] : rd32(m->p);
				m->p += w;
			}
			if (avail(m) == 0)
				return vm_err(m, "memo store from an empty stack", NULL);
			if (n >= MAX_MEMO)
				return vm_err(m, "memo index too large", NULL);
			if (n >= m->memo_cap) {
				size_t old = m->memo_cap;

				if (grow((void **)&m->memo, &m->memo_cap, (size_t)n + 1,
				         sizeof(*m->memo)) < 0)
					return mb_error_oom(m->err, "pickle memo", (size_t)n);
				memset(m->memo + old, 0, (m->memo_cap - old) * sizeof(*m->memo));
			}
			m->memo[n] = m->stack[m->sp - 1];
			if (n + 1 > m->memo_len)
				m->memo_len = (size_t)n + 1;
			break;
		case 'h': /* BINGET */
		case 'j': /* LONG_BINGET */ {
			size_t w = op == 'h' ? 1 : 4;

			if (need(m, w) < 0)
				return m->err->code;
			n = w == 1 ? m->p[0] : rd32(m->p);
			m->p += w;
			if (n >= m->memo_cap || !m->memo[n])
				return vm_err(m, "memo get of an unset index", NULL);
			rc = push(m, m->memo[n]);
			break;
		}
		case 's': /* SETITEM */
			if (avail(m) < 3)
				return vm_err(m, "SETITEM on a short stack", NULL);
			rc = setitems(m, m->sp - 2);
			break;
		case 'u': /* SETITEMS */
			if (pop_mark(m, &at) < 0)
				return m->err->code;
			rc = setitems(m, at);
			break;
		case 'a': /* APPEND */
		case 'e': /* APPENDS */
			if (op == 'a') {
				if (avail(m) < 2)
					return vm_err(m, "APPEND on a short stack", NULL);
				at = m->sp - 1;
			} else if (pop_mark(m, &at) < 0) {
				return m->err->code;
			}
			if (at <= (m->n_marks ? m->marks[m->n_marks - 1] : 0) ||
			    m->stack[at - 1]->k != V_LIST)
				return vm_err(m, "APPEND(S) to a non-list", NULL);
			for (size_t i = at; i < m->sp; i++)
				if (vadd(m->stack[at - 1], m->stack[i]) < 0)
					return mb_error_oom(m->err, "list", m->sp);
			m->sp = at;
			break;
		case 'R': /* REDUCE */
			rc = reduce(m);
			break;
		case 'b': /* BUILD: only a dict's state onto a dict (OrderedDict._metadata) */
			if (avail(m) < 2)
				return vm_err(m, "BUILD on a short stack", NULL);
			if (m->stack[m->sp - 2]->k != V_DICT || m->stack[m->sp - 1]->k != V_DICT)
				return vm_err(m, "BUILD of anything but a dict's attributes", NULL);
			m->sp--;
			break;
		case 'Q': /* BINPERSID */
			if (avail(m) < 1)
				return vm_err(m, "BINPERSID on an empty stack", NULL);
			rc = persid(m, m->stack[--m->sp]);
			break;
		default:
			if (op >= 0x21 && op < 0x7f)
				snprintf(opname, sizeof(opname), "0x%02x '%c'", op, op);
			else
				snprintf(opname, sizeof(opname), "0x%02x", op);
			m->p--;
			return vm_err(m, "opcode not supported in a state dict: ", opname);
		}
		if (rc < 0)
			return rc;
	}
}

static void vm_dispose(vm *m)
{
	for (size_t i = 0; i < m->n_all; i++) {
		free(m->all[i]->items);
		free(m->all[i]);
	}
	free(m->all);
	free(m->stack);
	free(m->marks);
	free(m->memo);
}

/* Safetensors image --------------------------------------------------------- */

typedef struct sbuf {
	char *p;
	size_t n, cap;
	int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
	if (b->oom || grow((void **)&b->p, &b->cap, b->n + n + 1, 1) < 0) {
		b->oom = 1;
		return;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
}

static void sb_printf(sbuf *b, const char *fmt, long long x)
{
	char tmp[32];
	int k = snprintf(tmp, sizeof(tmp), fmt, x);

	sb_put(b, tmp, (size_t)k);
}

static void sb_json_str(sbuf *b, const char *s, size_t n)
{
	sb_put(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};

			sb_put(b, e, 2);
		} else if (c < 0x20) {
			sb_printf(b, "\\u%04llx", c);
		} else {
			sb_put(b, (const char *)&c, 1);
		}
	}
	sb_put(b, "\"", 1);
}

/* A tensor name the safetensors header can carry: valid UTF-8 (no overlong
 * forms, surrogates or code points past U+10FFFF), no NUL, not __metadata__. */
static int name_ok(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	if (n == 12 && memcmp(s, "__metadata__", 12) == 0)
		return 0;
	while (i < n) {
		unsigned c = p[i];
		size_t k = c < 0x80             ? 0
		           : (c & 0xE0) == 0xC0 ? 1
		           : (c & 0xF0) == 0xE0 ? 2
		           : (c & 0xF8) == 0xF0 ? 3
		                                : 4;
		uint32_t cp;

		if (c == 0 || k == 4 || (k > 0 && i + k >= n))
			return 0;
		cp = k == 0 ? c : c & (0x3Fu >> k);
		for (size_t j = 1; j <= k; j++) {
			if ((p[i + j] & 0xC0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + j] & 0x3Fu);
		}
		if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += k + 1;
	}
	return 1;
}

/* Where tensor t's bytes start in the archive buffer. */
static size_t tensor_at(const val *t)
{
	return t->storage->blob->data + (size_t)t->offset * mb_dtype_size(t->dtype);
}

/* The safetensors JSON header of the state dict root into h (*data: the bytes
 * of all tensors). packed: data_offsets lay the tensors one after another, as
 * an image holds them; otherwise they are the tensors' own offsets in the
 * archive (a view over it; tensors of one storage share bytes). */
static int header(sbuf *h, size_t *data_total, const val *root, int packed, const char *file,
                  mb_error *err)
{
	size_t data = 0;

	if (root->k != V_DICT)
		return mb_error_set(err, MB_EINVALID,
		                    "%s: data.pkl: the top-level object: %s, not a state dict",
		                    file, kind_name(root));
	sb_put(h, "{", 1);
	for (size_t i = 0; i < root->n; i += 2) {
		const val *k = root->items[i], *t = root->items[i + 1];
		size_t bytes;

		if (k->k != V_STR) return mb_error_set(err, MB_EINVALID,
		                  "%s: data.pkl: state dict key %zu: %s, not a string",
		                  file, i / 2, kind_name(k));
		if (!name_ok(k->s, k->slen)) return mb_error_set(
		    err, MB_EINVALID,
		    "%s: data.pkl: state dict key %zu: not valid UTF-8, or NUL, or "
		    "__metadata__",
		    file, i / 2);
		if (t->k != V_TENSOR) return mb_error_set(err, MB_EINVALID,
		                  "%s: data.pkl: state dict entry %.*s: %s, not a tensor",
		                  file, (int)(k->slen < 200 ? k->slen : 200), k->s,
		                  kind_name(t));
		for (size_t j = 0; j < i; j += 2)
			if (root->items[j]->slen == k->slen &&
			    memcmp(root->items[j]->s, k->s, k->slen) == 0) return mb_error_set(
			    err, MB_EINVALID,
			    "%s: data.pkl: state dict entry %.*s present twice", file,
			    (int)(k->slen < 200 ? k->slen : 200), k->s);
		bytes = (size_t)t->numel * mb_dtype_size(t->dtype);
		if (bytes > SIZE_MAX / 2 - data) return mb_error_set(err, MB_EINVALID,
		                  "%s: data.pkl: tensors too large in total", file);
		if (i)
			sb_put(h, ",", 1);
		sb_json_str(h, k->s, k->slen);
		sb_put(h, ":{\"dtype\":\"", 11);
		sb_put(h, mb_dtype_name(t->dtype), strlen(mb_dtype_name(t->dtype)));
		sb_put(h, "\",\"shape\":[", 11);
		for (int d = 0; d < t->ndim; d++)
			sb_printf(h, d ? ",%lld" : "%lld", (long long)t->shape[d]);
		{
			size_t at = packed ? data : tensor_at(t);

			sb_printf(h, "],\"data_offsets\":[%lld,", (long long)at);
			sb_printf(h, "%lld]}", (long long)(at + bytes));
		}
		data += bytes;
	}
	sb_put(h, "}", 1);
	while (packed && !h->oom && h->n % 8 != 0)
		sb_put(h, " ", 1);
	if (h->oom)
		return mb_error_oom(err, "safetensors header", h->n);
	*data_total = data;
	return 0;
}

static int image(void **out, size_t *out_len, const zip *z, const val *root, const char *file,
                 mb_error *err)
{
	sbuf h = {0};
	size_t data = 0, hlen, total;
	uint8_t *img;
	int rc;

	rc = header(&h, &data, root, 1, file, err);
	if (rc < 0)
		goto fail;
	hlen = h.n;
	total = 8 + hlen + data;
	img = malloc(total);
	if (!img) {
		rc = mb_error_oom(err, "safetensors image", total);
		goto fail;
	}
	for (int i = 0; i < 8; i++)
		img[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
	memcpy(img + 8, h.p, hlen);
	data = 8 + hlen;
	for (size_t i = 0; i < root->n; i += 2) {
		const val *t = root->items[i + 1];
		size_t esz = mb_dtype_size(t->dtype), bytes = (size_t)t->numel * esz;

		if (bytes)
			memcpy(img + data, z->buf + tensor_at(t), bytes);
		data += bytes;
	}
	*out = img;
	*out_len = total;
fail:
	free(h.p);
	return rc;
}

/* Reads the archive in buf (zip directory and data.pkl) into z, m and *root;
 * the caller disposes of m and frees z.e whatever the outcome. */
static int parse(zip *z, vm *m, val **root, const void *buf, size_t len, const char *name,
                 mb_error *err)
{
	const zentry *pkl = NULL, *bo;
	int rc;

	memset(m, 0, sizeof(*m));
	rc = zip_open(z, buf, len, name, err);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < z->n && !pkl; i++) {
		const zentry *e = &z->e[i];
		const char *slash = memchr(e->name, '/', e->name_len);

		if (slash && (size_t)(slash - e->name) + 9 == e->name_len &&
		    memcmp(slash, "/data.pkl", 9) == 0)
			pkl = e;
	}
	if (!pkl)
		return mb_error_set(err, MB_EINVALID,
		                    "%s: no <prefix>/data.pkl in the archive (not a torch.save file)",
		                    name);
	m->prefix = pkl->name;
	m->plen = pkl->name_len - 9;
	bo = zip_find(z, m->prefix, m->plen, "byteorder");
	if (bo && !(bo->size == 6 && memcmp(z->buf + bo->data, "little", 6) == 0))
		return mb_error_set(
		    err, MB_EINVALID,
		    "%s: byteorder is not \"little\" (big-endian checkpoints are not read)", name);
	m->file = name;
	m->z = z;
	m->start = m->p = z->buf + pkl->data;
	m->end = m->p + pkl->size;
	m->err = err;
	return run(m, root);
}

int mb_ptbin_to_safetensors_mem(void **out, size_t *out_len, const void *buf, size_t len,
                                const char *name, mb_error *err)
{
	zip z = {0};
	vm m;
	val *root = NULL;
	int rc;

	*out = NULL;
	*out_len = 0;
	rc = parse(&z, &m, &root, buf, len, name, err);
	if (rc == 0)
		rc = image(out, out_len, &z, root, name, err);
	vm_dispose(&m);
	free(z.e);
	return rc;
}

/* Maps the file at path read-only (*map NULL for an empty file). */
static int map_file(void **map, size_t *len, const char *path, mb_error *err)
{
	struct stat sb;
	int fd, rc = 0;

	*map = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mb_error_set(err, errno == ENOENT ? MB_ENOTFOUND : MB_EIO, "%s: %s", path,
		                    strerror(errno));
	if (fstat(fd, &sb) != 0) {
		rc = mb_error_set(err, MB_EIO, "%s: %s", path, strerror(errno));
	} else if (sb.st_size > 0) {
		void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);

		if (p == MAP_FAILED) {
			rc = mb_error_set(err, MB_EIO, "%s: mmap: %s", path, strerror(errno));
		} else {
			*map = p;
			*len = (size_t)sb.st_size;
		}
	}
	close(fd);
	return rc;
}

int mb_ptbin_to_safetensors(void **out, size_t *out_len, const char *path, mb_error *err)
{
	void *map;
	size_t len;
	int rc;

	*out = NULL;
	*out_len = 0;
	rc = map_file(&map, &len, path, err);
	if (rc < 0)
		return rc;
	rc = mb_ptbin_to_safetensors_mem(out, out_len, map ? map : "", len, path, err);
	if (map)
		munmap(map, len);
	return rc;
}

/* The view of the archive in buf (len bytes); map (may be NULL: then buf is
 * the caller's) passes to the view, or is unmapped on failure. */
static int open_view(mb_safetensors **out, const void *buf, size_t len, void *map,
                     const char *name, mb_error *err)
{
	zip z = {0};
	vm m;
	val *root = NULL;
	sbuf h = {0};
	size_t data;
	int rc;

	*out = NULL;
	rc = parse(&z, &m, &root, buf, len, name, err);
	if (rc == 0)
		rc = header(&h, &data, root, 0, name, err);
	vm_dispose(&m); /* the header holds copies of every name it needs */
	free(z.e);
	if (rc == 0) /* the view owns map from here, success or not */
		rc = mb_safetensors_open_view(out, h.p, h.n, buf, len, map, len, name, err);
	else if (map)
		munmap(map, len);
	free(h.p);
	return rc;
}

int mb_ptbin_open_mem(mb_safetensors **out, const void *buf, size_t len, const char *name,
                      mb_error *err)
{
	return open_view(out, buf, len, NULL, name, err);
}

int mb_ptbin_open(mb_safetensors **out, const char *path, mb_error *err)
{
	void *map;
	size_t len;
	int rc;

	*out = NULL;
	rc = map_file(&map, &len, path, err);
	if (rc < 0)
		return rc;
	return open_view(out, map ? map : "", len, map, path, err);
}
