/*
 * tokenizer_int.h: the tokenizer's private layout, shared by tokenizer.c
 * (tokenizer.json, WordLevel, added tokens, templates) and bpe.c (byte-level
 * BPE: GPT-2's pre-tokenizer, merges, vocab.json + merges.txt).
 */
#ifndef MECHBENCH_TOKENIZER_INT_H
#define MECHBENCH_TOKENIZER_INT_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/error.h>
#include <mechbench/json.h>
#include <mechbench/tokenizer.h>

#define MB_TOK_MAX_ID (1 << 24)

typedef enum { PRE_NONE, PRE_WHITESPACE_SPLIT, PRE_WHITESPACE, PRE_BYTE_LEVEL } mb_tok_pre;

typedef struct mb_tok_vocab_entry {
	const char *tok; /* owned by the tokenizer */
	int32_t id;
} mb_tok_vocab_entry;

typedef struct mb_tok_added {
	char *content; /* owned */
	size_t len;
	int32_t id;
} mb_tok_added;

typedef struct mb_bpe mb_bpe;

struct mb_tokenizer {
	mb_tok_vocab_entry *vocab; /* (n_vocab) sorted by tok */
	size_t n_vocab;
	const char **by_id; /* (size) token of each id, NULL for unused ids */
	int size;           /* 1 + largest id */
	mb_tok_added *added; /* (n_added) longest first */
	size_t n_added;
	int32_t unk;        /* -1 without unk_token */
	int lowercase;
	int nfc;            /* normalizer NFC */
	mb_tok_pre pre;
	int32_t *tmpl;      /* post-processor template: ids, -1 = the sequence; NULL = none */
	size_t n_tmpl;
	char *name;         /* owned, for messages */
	char **owned;       /* token strings */
	size_t n_owned;
	mb_bpe *bpe;        /* byte-level BPE model, NULL for WordLevel */
};

typedef struct mb_tok_ids {
	int32_t *v;
	int n, cap;
} mb_tok_ids;

int mb_tok_push(mb_tok_ids *b, int32_t id, mb_error *err);
int mb_tok_cmp_entry(const void *a, const void *b);
int mb_tok_cmp_added(const void *a, const void *b);
/* Fills t->by_id from the vocabulary and added tokens (checks id clashes). */
int mb_tok_index_ids(mb_tokenizer *t, const mb_json_doc *doc, const char *vocab_name,
		     mb_error *err);

/* mb_tokenizer_load_bpe_files on texts in memory (merges: mlen bytes and a
 * NUL after them, modified);
 * the names label messages. */
int mb_tok_parse_bpe_files(mb_tokenizer **out, const char *vocab, size_t vlen,
			   const char *vocab_name, char *merges, size_t mlen,
			   const char *merges_name, mb_error *err);

/* bpe.c. mb_bpe_init builds the byte tables from t's vocabulary; merges are
 * then added in rank order (the caller prefixes errors with the file and
 * line). */
int mb_bpe_init(mb_bpe **out, const mb_tokenizer *t, mb_error *err);
int mb_bpe_add_merge(mb_bpe *b, const mb_tokenizer *t, const char *left, const char *right,
		     mb_error *err);
void mb_bpe_set_options(mb_bpe *b, int add_prefix_space, int use_regex, int ignore_merges);
void mb_bpe_free(mb_bpe *b);
/* True when tok (in GPT-2's byte alphabet) stands for exactly the bytes of raw. */
int mb_bpe_same_bytes(const char *raw, const char *tok);
/* Pre-tokenizes and encodes seg[0..n) (byte offset off of the text), which
 * holds no added token, appending ids to ids. */
int mb_bpe_encode_segment(const mb_tokenizer *t, mb_tok_ids *ids, const char *seg, size_t n,
			  size_t off, mb_error *err);
/* Raw bytes of id (byte-level alphabet decoded), or NULL. */
const char *mb_bpe_bytes(const mb_bpe *b, int32_t id, size_t *len);
/* Checks that seg[0..n) is valid UTF-8; errors name the byte offset off + i.
 * *needs_nfc (when not NULL) is set when a code point NFC might change is in
 * it. */
int mb_tok_check_text(const mb_tokenizer *t, const char *seg, size_t n, size_t off,
		      int *needs_nfc, mb_error *err);
/* NFC of the valid UTF-8 seg[0..n) into *out (malloc'd, NUL-terminated). */
int mb_tok_nfc(char **out, size_t *out_n, const char *seg, size_t n, mb_error *err);

#endif
