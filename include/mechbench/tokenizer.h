/*
 * tokenizer.h: Hugging Face tokenizer.json (WordLevel, as the zoo writes it,
 * and byte-level BPE, as GPT-2 and GPT-NeoX/Pythia ship it) and the older
 * vocab.json + merges.txt pair of GPT-2 downloads. Raw token ids are always
 * accepted by the engine.
 *
 * WordLevel: "model": {"type": "WordLevel", "vocab": {token: id},
 * "unk_token": ...}; "normalizer": null or {"type": "Lowercase"} (ASCII letters);
 * "pre_tokenizer": null, {"type": "WhitespaceSplit"} (split on runs of
 * whitespace) or {"type": "Whitespace"} (runs of \w, or of other non-space
 * characters; ASCII classes, bytes >= 0x80 count as \w); "decoder" ignored
 * (decode joins tokens with spaces).
 *
 * BPE: "model": {"type": "BPE", "vocab", "merges" (strings "a b" or pairs
 * ["a", "b"], rank = position), "unk_token", "ignore_merges"; dropout,
 * continuing_subword_prefix, end_of_word_suffix, fuse_unk and byte_fallback
 * only at their no-op defaults}; "pre_tokenizer": {"type": "ByteLevel",
 * "add_prefix_space", "use_regex", "trim_offsets"}; "decoder": null or
 * ByteLevel; "post_processor": null, ByteLevel (no id changes) or
 * TemplateProcessing; "normalizer": null, Lowercase or NFC (Unicode
 * normalization form C, tables from Python's unicodedata).
 * Encoding follows OpenAI's encoder.py: GPT-2's pre-tokenization pattern with
 * Python `regex` Unicode classes, GPT-2's byte alphabet, merges by rank.
 *
 * Both: text must be valid UTF-8 (errors name the byte offset); "added_tokens" are matched verbatim in the text before
 * pre-tokenisation, longest first (so "<|endoftext|>" in text is id 50256 for
 * GPT-2, as Hugging Face does; encoder.py reads it as plain text);
 * "post_processor" TemplateProcessing whose "single" template is special
 * tokens and one sequence $A. Anything else is an error naming the field;
 * malformed merges name the file and line.
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

/* Loads GPT-2's vocab.json ({token: id}) and merges.txt ("#version" line,
 * then "left right" per rank) as a byte-level BPE tokenizer (no prefix
 * space; "<|endoftext|>", when in the vocabulary, is an added token). Errors
 * name the file and line: a merge naming a token not in vocab.json (or whose
 * concatenation is not), a merge listed twice, invalid UTF-8. */
int mb_tokenizer_load_bpe_files(mb_tokenizer **out, const char *vocab_path,
				const char *merges_path, mb_error *err);
/* Loads DIR/tokenizer.json, else DIR/vocab.json + DIR/merges.txt;
 * MB_ENOTFOUND when the directory has neither. */
int mb_tokenizer_load_dir(mb_tokenizer **out, const char *dir, mb_error *err);

/* "WordLevel" or "BPE". */
const char *mb_tokenizer_kind(const mb_tokenizer *t);

/* Decodes ids[0..n) into *out (malloc'd, NUL-terminated, caller frees) and
 * *len bytes. BPE: the tokens' bytes back to back (ByteLevel decoder), so
 * decode(encode(s)) == s; the bytes may be invalid UTF-8 when the ids split
 * a character. WordLevel: tokens joined with spaces. An id that is no token
 * is MB_EINVALID naming it. */
int mb_tokenizer_decode(const mb_tokenizer *t, const int32_t *ids, int n, char **out,
			size_t *len, mb_error *err);

#endif
