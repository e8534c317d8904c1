/*
 * tokenizer.h: Hugging Face tokenizer.json with the WordLevel model (the zoo's
 * tokenizers). Byte-level BPE for real GPT-2 comes later; raw token ids are
 * always accepted by the engine.
 *
 * Supported: "model": {"type": "WordLevel", "vocab": {token: id},
 * "unk_token": ...}; "normalizer": null or {"type": "Lowercase"} (ASCII letters);
 * "pre_tokenizer": null, {"type": "WhitespaceSplit"} (split on runs of
 * whitespace) or {"type": "Whitespace"} (runs of \w, or of other non-space
 * characters; ASCII classes, bytes >= 0x80 count as \w); "added_tokens": matched verbatim in the text
 * before pre-tokenisation, longest first; "post_processor": null or
 * TemplateProcessing whose "single" template is special tokens and one
 * sequence $A; "decoder": ignored (decode joins tokens with spaces).
 * Anything else is an error naming the field.
 */
#ifndef MECHBENCH_TOKENIZER_H
#define MECHBENCH_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/error.h>

typedef struct mb_tokenizer mb_tokenizer;

int mb_tokenizer_load(mb_tokenizer **out, const char *path, mb_error *err);
/* Parses tokenizer.json text; name labels messages. */
int mb_tokenizer_parse(mb_tokenizer **out, const char *text, size_t len, const char *name,
		       mb_error *err);
void mb_tokenizer_free(mb_tokenizer *t);

/* Number of ids: 1 + the largest id of the vocabulary and added tokens. */
int mb_tokenizer_vocab_size(const mb_tokenizer *t);
/* The id of an exact token, or -1. */
int32_t mb_tokenizer_id(const mb_tokenizer *t, const char *token);
/* The token of id, or NULL when no token has it. Borrowed. */
const char *mb_tokenizer_token(const mb_tokenizer *t, int32_t id);

/* Encodes NUL-terminated UTF-8 text into *out (malloc'd, caller frees) and
 * *n. Unknown words become unk_token's id; without an unk_token they are an
 * error naming the word and its byte offset. */
int mb_tokenizer_encode(const mb_tokenizer *t, const char *text, int32_t **out, int *n,
			mb_error *err);

#endif
