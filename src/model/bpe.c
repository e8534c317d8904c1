/*
 * bpe.c: byte-level BPE, the tokenizer of GPT-2 and GPT-NeoX (Pythia).
 *
 * Semantics are OpenAI's encoder.py (gpt-2/src/encoder.py), which Hugging
 * Face's ByteLevel pre-tokenizer + BPE model reproduce:
 *   1. the text is split by GPT-2's pattern
 *        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      matched here by hand (pre_split), with \p{L}, \p{N} and \s exactly as
 *      Python's `regex` module defines them (unicode_tables.h);
 *   2. each piece's UTF-8 bytes become symbols (one vocabulary token per byte,
 *      through GPT-2's bytes_to_unicode alphabet);
 *   3. adjacent symbols merge, lowest merge rank first and leftmost first
 *      among equal ranks, until no adjacent pair has a rank.
 * Pieces already encoded are kept in a bounded cache (a word -> ids table
 * guarded by a mutex, so encode stays safe to call from several threads).
 */
#include "model/tokenizer_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/unicode_tables.h"

#define CACHE_SLOTS (1u << 16) /* word cache: at most 3/4 of this many words */
#define CACHE_WORD_MAX 64      /* longer pieces are not cached */

typedef struct merge_slot {
	uint64_t key; /* (left id << 32) | right id; UINT64_MAX = empty */
	int32_t rank;
	int32_t id;   /* the merged token */
} merge_slot;

typedef struct cache_slot {
	uint64_t hash; /* 0 = empty */
	uint32_t word; /* offset of the word's bytes in cache_bytes */
	uint32_t len;
	uint32_t ids;  /* offset of its ids in cache_ids */
	uint32_t n;
} cache_slot;

struct mb_bpe {
	int32_t byte_id[256];     /* vocabulary id of each byte's symbol, -1 if none */
	uint32_t byte_cp[256];    /* bytes_to_unicode: byte -> code point */
	int16_t cp_byte[0x144];   /* its inverse over code points < 0x144, -1 elsewhere */
	merge_slot *merges;       /* (merge_cap) open addressing */
	size_t merge_cap, n_merges;
	char *raw;                /* token bytes of every id, back to back */
	uint32_t *raw_off;        /* (size + 1) offsets into raw */
	int add_prefix_space, use_regex, ignore_merges;
	pthread_mutex_t lock;     /* guards the cache */
	cache_slot *cache;        /* (CACHE_SLOTS) */
	size_t cache_n;
	char *cache_bytes;
	size_t cache_bytes_n, cache_bytes_cap;
	int32_t *cache_ids;
	size_t cache_ids_n, cache_ids_cap;
};

/* Unicode ------------------------------------------------------------------- */

static int in_ranges(const uint32_t (*r)[2], size_t n, uint32_t c)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (c < r[mid][0])
			hi = mid;
		else if (c > r[mid][1])
			lo = mid + 1;
		else
			return 1;
	}
	return 0;
}

enum { CL_OTHER, CL_LETTER, CL_NUMBER, CL_SPACE };

static size_t put_utf8(char *o, uint32_t cp);

static int char_class(uint32_t c)
{
	if (c < 0x80) {
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
			return CL_LETTER;
		if (c >= '0' && c <= '9')
			return CL_NUMBER;
		if (c == ' ' || (c >= 0x09 && c <= 0x0D))
			return CL_SPACE;
		return CL_OTHER;
	}
#define N_OF(a) (sizeof(a) / sizeof(a[0]))
	if (in_ranges(mb_uc_letter, N_OF(mb_uc_letter), c))
		return CL_LETTER;
	if (in_ranges(mb_uc_number, N_OF(mb_uc_number), c))
		return CL_NUMBER;
	if (in_ranges(mb_uc_space, N_OF(mb_uc_space), c))
		return CL_SPACE;
	return CL_OTHER;
}

/* Decodes one UTF-8 character at s[i] (i < n, known valid); returns its
 * length and stores the code point. */
static size_t utf8_next(const unsigned char *s, size_t i, size_t n, uint32_t *cp)
{
	unsigned char c = s[i];

	(void)n;
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c < 0xE0) {
		*cp = ((uint32_t)(c & 0x1F) << 6) | (s[i + 1] & 0x3F);
		return 2;
	}
	if (c < 0xF0) {
		*cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[i + 1] & 0x3F) << 6) |
		      (s[i + 2] & 0x3F);
		return 3;
	}
	*cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3F) << 12) |
	      ((uint32_t)(s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
	return 4;
}

/* Length of the valid UTF-8 character at s[i], or 0 (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_valid(const unsigned char *s, size_t i, size_t n)
{
	unsigned char c = s[i];
	size_t len;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		len = 3;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4;
	else
		return 0;
	if (n - i < len)
		return 0;
	for (size_t k = 1; k < len; k++)
		if ((s[i + k] & 0xC0) != 0x80)
			return 0;
	utf8_next(s, i, n, &cp);
	if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
		return 0;
	return len;
}

int mb_tok_check_text(const mb_tokenizer *t, const char *seg, size_t n, size_t off,
		      int *needs_nfc, mb_error *err)
{
	const unsigned char *s = (const unsigned char *)seg;
	size_t i = 0;

	(void)t;
	if (needs_nfc)
		*needs_nfc = 0;
	while (i < n) {
		size_t k;
		uint32_t cp;

		if (s[i] < 0x80) {
			i++;
			continue;
		}
		k = utf8_valid(s, i, n);
		if (!k)
			return mb_error_set(err, MB_EINVALID,
					    "text: invalid UTF-8 at byte %zu (0x%02X)", off + i,
					    s[i]);
		utf8_next(s, i, n, &cp);
		if (needs_nfc && !*needs_nfc &&
		    in_ranges(mb_uc_nfc_unsafe, N_OF(mb_uc_nfc_unsafe), cp))
			*needs_nfc = 1;
		i += k;
	}
	return 0;
}

/* NFC (Unicode Standard Annex #15): full canonical decomposition, canonical
 * ordering of combining marks, then canonical composition, with the tables
 * tools/gen_unicode_tables.py takes from Python's unicodedata and Hangul
 * done arithmetically (Unicode 14, section 3.12). */

enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7, L_COUNT = 19,
       V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT, S_COUNT = L_COUNT * N_COUNT };

static int ccc_of(uint32_t c)
{
	size_t lo = 0, hi = N_OF(mb_uc_ccc);

	if (c < 0x300)
		return 0;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (c < mb_uc_ccc[mid][0])
			hi = mid;
		else if (c > mb_uc_ccc[mid][1])
			lo = mid + 1;
		else
			return (int)mb_uc_ccc[mid][2];
	}
	return 0;
}

static size_t decompose(uint32_t c, uint32_t *o)
{
	size_t lo = 0, hi = N_OF(mb_uc_decomp);

	if (c >= S_BASE && c < S_BASE + S_COUNT) {
		uint32_t si = c - S_BASE, t = si % T_COUNT;

		o[0] = L_BASE + si / N_COUNT;
		o[1] = V_BASE + (si % N_COUNT) / T_COUNT;
		if (t) {
			o[2] = T_BASE + t;
			return 3;
		}
		return 2;
	}
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (c < mb_uc_decomp[mid][0])
			hi = mid;
		else if (c > mb_uc_decomp[mid][0])
			lo = mid + 1;
		else {
			for (uint32_t k = 0; k < mb_uc_decomp[mid][2]; k++)
				o[k] = mb_uc_decomp_pool[mb_uc_decomp[mid][1] + k];
			return mb_uc_decomp[mid][2];
		}
	}
	o[0] = c;
	return 1;
}

/* The primary composite of a + b, or 0. */
static uint32_t compose(uint32_t a, uint32_t b)
{
	size_t lo = 0, hi = N_OF(mb_uc_comp);

	if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
		return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
	if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE &&
	    b < T_BASE + T_COUNT)
		return a + (b - T_BASE);
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (a < mb_uc_comp[mid][0] || (a == mb_uc_comp[mid][0] && b < mb_uc_comp[mid][1]))
			hi = mid;
		else if (a > mb_uc_comp[mid][0] || b > mb_uc_comp[mid][1])
			lo = mid + 1;
		else
			return mb_uc_comp[mid][2];
	}
	return 0;
}

static size_t put_utf8_any(char *o, uint32_t cp)
{
	if (cp < 0x800)
		return put_utf8(o, cp);
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

int mb_tok_nfc(char **out, size_t *out_n, const char *seg, size_t n, mb_error *err)
{
	const unsigned char *s = (const unsigned char *)seg;
	uint32_t *x = malloc(sizeof(uint32_t) * (4 * n + 4));
	size_t m = 0, i = 0, comp, starter;
	int last;
	char *o;

	*out = NULL;
	*out_n = 0;
	if (!x)
		return mb_error_oom(err, "NFC buffer", sizeof(uint32_t) * 4 * n);
	while (i < n) {
		uint32_t cp;

		i += utf8_next(s, i, n, &cp);
		m += decompose(cp, x + m);
	}
	/* Canonical ordering: a stable sort of each run of marks by class. */
	for (size_t k = 1; k < m; k++) {
		int c = ccc_of(x[k]);

		for (size_t j = k; c && j > 0 && ccc_of(x[j - 1]) > c; j--) {
			uint32_t tmp = x[j];

			x[j] = x[j - 1];
			x[j - 1] = tmp;
		}
	}
	/* Composition (UAX #15's reference algorithm). */
	comp = m ? 1 : 0;
	starter = 0;
	last = m ? ccc_of(x[0]) : 0;
	if (last)
		last = 256;
	for (size_t k = 1; k < m; k++) {
		uint32_t ch = x[k], c2 = compose(x[starter], ch);
		int cc = ccc_of(ch);

		if (c2 && (last < cc || last == 0)) {
			x[starter] = c2;
			continue;
		}
		if (cc == 0)
			starter = comp;
		last = cc;
		x[comp++] = ch;
	}
	o = malloc(4 * comp + 1);
	if (!o) {
		free(x);
		return mb_error_oom(err, "NFC text", 4 * comp + 1);
	}
	for (size_t k = 0; k < comp; k++)
		*out_n += put_utf8_any(o + *out_n, x[k]);
	o[*out_n] = '\0';
	free(x);
	*out = o;
	return 0;
}

/* Tables --------------------------------------------------------------------- */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100.. in byte order. */
static void byte_tables(mb_bpe *b)
{
	int n = 0;

	for (int c = 0; c < 0x144; c++)
		b->cp_byte[c] = -1;
	for (int c = 0; c < 256; c++) {
		int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) ||
				(c >= 0xAE && c <= 0xFF);

		b->byte_cp[c] = printable ? (uint32_t)c : (uint32_t)(256 + n++);
		b->cp_byte[b->byte_cp[c]] = (int16_t)c;
	}
}

static size_t put_utf8(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	o[0] = (char)(0xC0 | (cp >> 6));
	o[1] = (char)(0x80 | (cp & 0x3F));
	return 2; /* the byte alphabet stays below U+0800 */
}

/* Token text in the byte alphabet -> raw bytes into o (capacity >= strlen).
 * A token with a character outside the alphabet (an added token such as
 * "<|padding|>" is inside it; CJK text in a NeoX added token is not) keeps
 * its UTF-8 as is, as Hugging Face's ByteLevel decoder does. */
static size_t token_bytes(const mb_bpe *b, const char *tok, char *o)
{
	const unsigned char *s = (const unsigned char *)tok;
	size_t n = strlen(tok), i = 0, k = 0;

	while (i < n) {
		uint32_t cp;
		size_t len = utf8_valid(s, i, n);

		if (!len)
			break;
		utf8_next(s, i, n, &cp);
		if (cp >= 0x144 || b->cp_byte[cp] < 0)
			break;
		o[k++] = (char)b->cp_byte[cp];
		i += len;
	}
	if (i == n)
		return k;
	memcpy(o, tok, n);
	return n;
}

int mb_bpe_same_bytes(const char *raw, const char *tok)
{
	mb_bpe b;
	size_t n = strlen(raw), k = 0;
	char *enc = malloc(2 * n + 1);
	int same;

	if (!enc)
		return 0;
	byte_tables(&b);
	for (size_t i = 0; i < n; i++)
		k += put_utf8(enc + k, b.byte_cp[(unsigned char)raw[i]]);
	enc[k] = '\0';
	same = strcmp(enc, tok) == 0;
	free(enc);
	return same;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static const merge_slot *merge_find(const mb_bpe *b, int32_t l, int32_t r)
{
	uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
	size_t mask = b->merge_cap - 1, i = mix64(key) & mask;

	while (b->merges[i].key != UINT64_MAX) {
		if (b->merges[i].key == key)
			return &b->merges[i];
		i = (i + 1) & mask;
	}
	return NULL;
}

void mb_bpe_free(mb_bpe *b)
{
	if (!b)
		return;
	pthread_mutex_destroy(&b->lock);
	free(b->merges);
	free(b->raw);
	free(b->raw_off);
	free(b->cache);
	free(b->cache_bytes);
	free(b->cache_ids);
	free(b);
}

int mb_bpe_init(mb_bpe **out, const mb_tokenizer *t, mb_error *err)
{
	mb_bpe *b = calloc(1, sizeof(*b));
	size_t total = 0;

	*out = NULL;
	if (!b)
		return mb_error_oom(err, "BPE model", sizeof(*b));
	pthread_mutex_init(&b->lock, NULL);
	byte_tables(b);
	b->use_regex = 1;
	for (int id = 0; id < t->size; id++)
		total += t->by_id[id] ? strlen(t->by_id[id]) : 0;
	b->merge_cap = 1024;
	b->merges = malloc(sizeof(*b->merges) * b->merge_cap);
	b->raw = malloc(total + 1);
	b->raw_off = malloc(sizeof(*b->raw_off) * ((size_t)t->size + 1));
	if (!b->merges || !b->raw || !b->raw_off) {
		mb_bpe_free(b);
		return mb_error_oom(err, "BPE tables", total);
	}
	memset(b->merges, 0xFF, sizeof(*b->merges) * b->merge_cap);
	total = 0;
	for (int id = 0; id < t->size; id++) {
		b->raw_off[id] = (uint32_t)total;
		if (t->by_id[id])
			total += token_bytes(b, t->by_id[id], b->raw + total);
	}
	b->raw_off[t->size] = (uint32_t)total;
	for (int c = 0; c < 256; c++) {
		char sym[3] = {0};

		put_utf8(sym, b->byte_cp[c]);
		b->byte_id[c] = mb_tokenizer_id(t, sym);
	}
	*out = b;
	return 0;
}

void mb_bpe_set_options(mb_bpe *b, int add_prefix_space, int use_regex, int ignore_merges)
{
	b->add_prefix_space = add_prefix_space;
	b->use_regex = use_regex;
	b->ignore_merges = ignore_merges;
}

const char *mb_bpe_bytes(const mb_bpe *b, int32_t id, size_t *len)
{
	*len = b->raw_off[id + 1] - b->raw_off[id];
	return b->raw + b->raw_off[id];
}

static int grow_merges(mb_bpe *b, mb_error *err)
{
	size_t cap = b->merge_cap * 2;
	merge_slot *m = malloc(sizeof(*m) * cap);

	if (!m)
		return mb_error_oom(err, "BPE merges", sizeof(*m) * cap);
	memset(m, 0xFF, sizeof(*m) * cap);
	for (size_t i = 0; i < b->merge_cap; i++) {
		size_t j;

		if (b->merges[i].key == UINT64_MAX)
			continue;
		j = mix64(b->merges[i].key) & (cap - 1);
		while (m[j].key != UINT64_MAX)
			j = (j + 1) & (cap - 1);
		m[j] = b->merges[i];
	}
	free(b->merges);
	b->merges = m;
	b->merge_cap = cap;
	return 0;
}

int mb_bpe_add_merge(mb_bpe *b, const mb_tokenizer *t, const char *left, const char *right,
		     mb_error *err)
{
	int32_t l = mb_tokenizer_id(t, left), r = mb_tokenizer_id(t, right), id;
	size_t nl = strlen(left), nr = strlen(right);
	char small[256], *cat = nl + nr < sizeof(small) ? small : malloc(nl + nr + 1);
	uint64_t key;
	size_t i;
	int rc;

	if (!cat)
		return mb_error_oom(err, "merge", nl + nr + 1);
	memcpy(cat, left, nl);
	memcpy(cat + nl, right, nr + 1);
	id = mb_tokenizer_id(t, cat);
	if (l < 0 || r < 0 || id < 0) {
		rc = mb_error_set(err, MB_EINVALID, "the merge \"%s %s\" names \"%s\", which is "
				  "not in the vocabulary", left, right,
				  l < 0 ? left : r < 0 ? right : cat);
		if (cat != small)
			free(cat);
		return rc;
	}
	if (cat != small)
		free(cat);
	if (merge_find(b, l, r)) {
		return mb_error_set(err, MB_EINVALID, "the merge \"%s %s\" is listed twice "
				    "(rank %d and again here)", left, right,
				    merge_find(b, l, r)->rank);
	}
	if ((b->n_merges + 1) * 2 > b->merge_cap && (rc = grow_merges(b, err)) < 0)
		return rc;
	key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
	i = mix64(key) & (b->merge_cap - 1);
	while (b->merges[i].key != UINT64_MAX)
		i = (i + 1) & (b->merge_cap - 1);
	b->merges[i].key = key;
	b->merges[i].rank = (int32_t)b->n_merges++;
	b->merges[i].id = id;
	return 0;
}

/* BPE on one piece -------------------------------------------------------------- */

typedef struct heap_item {
	int32_t rank;
	int32_t pos; /* index of the left symbol */
} heap_item;

static int heap_less(heap_item a, heap_item b)
{
	return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static void heap_push(heap_item *h, int *n, heap_item x)
{
	int i = (*n)++;

	while (i > 0 && heap_less(x, h[(i - 1) / 2])) {
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = x;
}

static heap_item heap_pop(heap_item *h, int *n)
{
	heap_item top = h[0], x = h[--(*n)];
	int i = 0;

	for (;;) {
		int c = 2 * i + 1;

		if (c >= *n)
			break;
		if (c + 1 < *n && heap_less(h[c + 1], h[c]))
			c++;
		if (!heap_less(h[c], x))
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n > 0)
		h[i] = x;
	return top;
}

#define WORD_STACK 128

/* Per-piece work arrays: on the stack for pieces up to WORD_STACK bytes,
 * malloc'd (and kept for the segment) beyond. */
typedef struct word_scratch {
	int32_t *id, *next, *prev;
	heap_item *heap;
	size_t cap;
	int heap_owned;
	int32_t s_id[WORD_STACK], s_next[WORD_STACK], s_prev[WORD_STACK];
	heap_item s_heap[2 * WORD_STACK]; /* pairs pending: <= n - 1 + merges <= 2n */
} word_scratch;

static void scratch_init(word_scratch *s)
{
	s->id = s->s_id;
	s->next = s->s_next;
	s->prev = s->s_prev;
	s->heap = s->s_heap;
	s->cap = WORD_STACK;
	s->heap_owned = 0;
}

static void scratch_dispose(word_scratch *s)
{
	if (!s->heap_owned)
		return;
	free(s->id);
	free(s->next);
	free(s->prev);
	free(s->heap);
}

static int scratch_fit(word_scratch *s, size_t n, mb_error *err)
{
	size_t cap = s->cap;

	if (n <= s->cap)
		return 0;
	while (cap < n)
		cap *= 2;
	scratch_dispose(s);
	s->heap_owned = 1;
	s->id = malloc(sizeof(int32_t) * cap);
	s->next = malloc(sizeof(int32_t) * cap);
	s->prev = malloc(sizeof(int32_t) * cap);
	s->heap = malloc(sizeof(heap_item) * 2 * cap);
	s->cap = cap;
	if (!s->id || !s->next || !s->prev || !s->heap) {
		scratch_dispose(s);
		scratch_init(s);
		return mb_error_oom(err, "BPE word", sizeof(int32_t) * cap * 5);
	}
	return 0;
}

static void try_pair(const mb_bpe *b, word_scratch *s, int *nh, int32_t pos)
{
	const merge_slot *m;

	if (pos < 0 || s->next[pos] < 0)
		return;
	m = merge_find(b, s->id[pos], s->id[s->next[pos]]);
	if (m)
		heap_push(s->heap, nh, (heap_item){m->rank, pos});
}

/* Merges the bytes w[0..n) into ids appended to out. A pair popped from the
 * heap is stale when either side was merged since; its rank then no longer
 * matches the pair now at pos. */
static int bpe_word(const mb_tokenizer *t, const unsigned char *w, size_t n, word_scratch *s,
		    mb_tok_ids *out, size_t off, mb_error *err)
{
	const mb_bpe *b = t->bpe;
	int nh = 0, rc;

	if ((rc = scratch_fit(s, n, err)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		s->id[i] = b->byte_id[w[i]];
		if (s->id[i] < 0) {
			if (t->unk < 0)
				return mb_error_set(err, MB_EINVALID,
						    "%s: byte 0x%02X at byte %zu has no token in the "
						    "vocabulary and there is no unk_token",
						    t->name, w[i], off + i);
			s->id[i] = t->unk;
		}
		s->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
		s->prev[i] = (int32_t)i - 1;
	}
	for (size_t i = 0; i + 1 < n; i++)
		try_pair(b, s, &nh, (int32_t)i);
	while (nh > 0) {
		heap_item h = heap_pop(s->heap, &nh);
		int32_t p = h.pos, q;
		const merge_slot *m;

		if (s->id[p] < 0 || (q = s->next[p]) < 0)
			continue;
		m = merge_find(b, s->id[p], s->id[q]);
		if (!m || m->rank != h.rank)
			continue;
		s->id[p] = m->id;
		s->id[q] = -1;
		s->next[p] = s->next[q];
		if (s->next[q] >= 0)
			s->prev[s->next[q]] = p;
		try_pair(b, s, &nh, s->prev[p]);
		try_pair(b, s, &nh, p);
	}
	for (int32_t i = 0; i >= 0; i = s->next[i])
		if ((rc = mb_tok_push(out, s->id[i], err)) < 0)
			return rc;
	return 0;
}

/* The cache ------------------------------------------------------------------ */

static uint64_t hash_bytes(const unsigned char *w, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ w[i]) * 0x100000001b3ULL;
	return h ? h : 1;
}

/* Appends the cached ids of w to out; 1 when found. */
static int cache_get(mb_bpe *b, const unsigned char *w, size_t n, uint64_t h, mb_tok_ids *out,
		     mb_error *err, int *rc)
{
	size_t i = h & (CACHE_SLOTS - 1);
	int found = 0;

	*rc = 0;
	pthread_mutex_lock(&b->lock);
	while (b->cache && b->cache[i].hash) {
		const cache_slot *c = &b->cache[i];

		if (c->hash == h && c->len == n && memcmp(b->cache_bytes + c->word, w, n) == 0) {
			found = 1;
			for (uint32_t k = 0; k < c->n && *rc == 0; k++)
				*rc = mb_tok_push(out, b->cache_ids[c->ids + k], err);
			break;
		}
		i = (i + 1) & (CACHE_SLOTS - 1);
	}
	pthread_mutex_unlock(&b->lock);
	return found;
}

static int reserve(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t c = *cap ? *cap : 4096;
	void *q;

	if (need <= *cap)
		return 0;
	while (c < need)
		c *= 2;
	q = realloc(*p, c * elem);
	if (!q)
		return -1;
	*p = q;
	*cap = c;
	return 0;
}

/* Remembers w -> ids; a full cache (or no memory) just stops remembering. */
static void cache_put(mb_bpe *b, const unsigned char *w, size_t n, uint64_t h, const int32_t *ids,
		      int n_ids)
{
	size_t i = h & (CACHE_SLOTS - 1);

	pthread_mutex_lock(&b->lock);
	if (!b->cache)
		b->cache = calloc(CACHE_SLOTS, sizeof(*b->cache)); /* on first use */
	if (!b->cache || b->cache_n * 4 >= CACHE_SLOTS * 3 ||
	    reserve((void **)&b->cache_bytes, &b->cache_bytes_cap, b->cache_bytes_n + n, 1) < 0 ||
	    reserve((void **)&b->cache_ids, &b->cache_ids_cap, b->cache_ids_n + (size_t)n_ids,
		    sizeof(int32_t)) < 0)
		goto done;
	while (b->cache[i].hash) {
		if (b->cache[i].hash == h && b->cache[i].len == n &&
		    memcmp(b->cache_bytes + b->cache[i].word, w, n) == 0)
			goto done; /* another thread got here first */
		i = (i + 1) & (CACHE_SLOTS - 1);
	}
	memcpy(b->cache_bytes + b->cache_bytes_n, w, n);
	memcpy(b->cache_ids + b->cache_ids_n, ids, sizeof(int32_t) * (size_t)n_ids);
	b->cache[i] = (cache_slot){h, (uint32_t)b->cache_bytes_n, (uint32_t)n,
				   (uint32_t)b->cache_ids_n, (uint32_t)n_ids};
	b->cache_bytes_n += n;
	b->cache_ids_n += (size_t)n_ids;
	b->cache_n++;
done:
	pthread_mutex_unlock(&b->lock);
}

static int encode_piece(const mb_tokenizer *t, const unsigned char *w, size_t n, word_scratch *s,
			mb_tok_ids *out, size_t off, mb_error *err)
{
	mb_bpe *b = t->bpe;
	uint64_t h = 0;
	int rc, start = out->n;

	if (n == 0)
		return 0;
	if (n == 1 && b->byte_id[w[0]] >= 0)
		return mb_tok_push(out, b->byte_id[w[0]], err);
	if (n <= CACHE_WORD_MAX) {
		h = hash_bytes(w, n);
		if (cache_get(b, w, n, h, out, err, &rc))
			return rc;
	}
	if (b->ignore_merges) {
		/* Hugging Face's ignore_merges: a piece that is a token is that token. */
		char *sym = malloc(2 * n + 1);
		size_t k = 0;
		int32_t id;

		if (!sym)
			return mb_error_oom(err, "piece", 2 * n + 1);
		for (size_t i = 0; i < n; i++)
			k += put_utf8(sym + k, b->byte_cp[w[i]]);
		sym[k] = '\0';
		id = mb_tokenizer_id(t, sym);
		free(sym);
		if (id >= 0)
			return mb_tok_push(out, id, err);
	}
	rc = bpe_word(t, w, n, s, out, off, err);
	if (rc == 0 && n <= CACHE_WORD_MAX)
		cache_put(b, w, n, h, out->v + start, out->n - start);
	return rc;
}

/* Pre-tokenization ------------------------------------------------------------------ */

/* Length of the GPT-2 pattern's match at s[i] (i < n). The alternatives are
 * tried in the pattern's order, as the regex engine does. */
static size_t pre_match(const unsigned char *s, size_t i, size_t n)
{
	uint32_t c, d;
	size_t k, j;
	int cl;

	if (s[i] == '\'' && i + 1 < n) {
		unsigned char a = s[i + 1], z = i + 2 < n ? s[i + 2] : 0;

		if (a == 's' || a == 't' || a == 'm' || a == 'd')
			return 2;
		if ((a == 'r' && z == 'e') || (a == 'v' && z == 'e') || (a == 'l' && z == 'l'))
			return 3;
	}
	k = utf8_next(s, i, n, &c);
	j = i;
	cl = char_class(c);
	if (c == ' ' && i + 1 < n) {
		size_t k2 = utf8_next(s, i + 1, n, &d);
		int cl2 = char_class(d);

		if (cl2 != CL_SPACE) {
			/* " ?X+": the space joins the run of the next character's class. */
			j = i + 1 + k2;
			cl = cl2;
			goto run;
		}
	}
	if (cl != CL_SPACE) {
		j = i + k;
		goto run;
	}
	/* \s+(?!\S) then \s+: a run of whitespace gives back its last character
	 * when a non-space follows (that character may then lead the next piece
	 * as " ?X+"), unless the run is that one character. */
	{
		size_t last = i, end = i + k;

		while (end < n) {
			size_t k2 = utf8_next(s, end, n, &d);

			if (char_class(d) != CL_SPACE)
				break;
			last = end;
			end += k2;
		}
		if (end == n || last == i)
			return end - i;
		return last - i;
	}
run:
	while (j < n) {
		size_t k2 = utf8_next(s, j, n, &d);

		if (char_class(d) != cl)
			break;
		j += k2;
	}
	return j - i;
}

int mb_bpe_encode_segment(const mb_tokenizer *t, mb_tok_ids *ids, const char *seg, size_t n,
			  size_t off, mb_error *err)
{
	const unsigned char *s = (const unsigned char *)seg;
	unsigned char *buf = NULL;
	word_scratch ws;
	char *nfc = NULL;
	int needs_nfc = 0;
	size_t i = 0;
	int rc;

	if (n == 0)
		return 0;
	if ((rc = mb_tok_check_text(t, seg, n, off, &needs_nfc, err)) < 0)
		return rc;
	if (t->nfc && needs_nfc) {
		/* Offsets in later messages are then in the normalized text. */
		if ((rc = mb_tok_nfc(&nfc, &n, seg, n, err)) < 0)
			return rc;
		s = (const unsigned char *)nfc;
		seg = nfc;
	}
	scratch_init(&ws);
	if (t->bpe->add_prefix_space && s[0] != ' ') {
		/* Hugging Face prepends the space to each piece of text between
		 * added tokens; offsets in messages then run one byte ahead. */
		buf = malloc(n + 1);
		if (!buf) {
			free(nfc);
			return mb_error_oom(err, "text", n + 1);
		}
		buf[0] = ' ';
		memcpy(buf + 1, seg, n);
		s = buf;
		n++;
	}
	while (i < n && rc == 0) {
		size_t len = t->bpe->use_regex ? pre_match(s, i, n) : n;

		rc = encode_piece(t, s + i, len, &ws, ids, off + i, err);
		i += len;
	}
	scratch_dispose(&ws);
	free(buf);
	free(nfc);
	return rc;
}
