/*
 * fuzz_bpe_merges: libFuzzer target for GPT-2's merges.txt (with a fixed
 * byte-level vocab.json) and the byte-level BPE encoder.
 *
 * Every input either fails with one line starting with "merges.txt:" (or
 * the vocab's name, never), or gives a tokenizer that encodes a few texts
 * (valid and invalid UTF-8) into ids that are tokens and decode back to the
 * text, or into one-line errors.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer_int.h"

#define NAME "merges.txt"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char vocab[] =
		"{\"a\": 0, \"b\": 1, \"c\": 2, \"\\u0120\": 3, \"ab\": 4, \"\\u0120a\": 5, "
		"\"abc\": 6, \"'\": 7, \"s\": 8, \"'s\": 9, \"<|endoftext|>\": 10, \"\\u010a\": 11, "
		"\"\\u00c3\": 12, \"\\u00a9\": 13, \"\\u00c3\\u00a9\": 14, \"\\u0120\\u0120\": 15, "
		"\"bb\": 16, \"bbb\": 17, \"bbbb\": 18}";
	static const char *const texts[] = {"", "abc ab", "'s a's", "bbbbbbbbb",
					    "\xc3\xa9 ab<|endoftext|>c", "   a\n\n", "a\xff"};
	char *merges = malloc(size + 1);
	mb_tokenizer *t = NULL;
	mb_error err;

	if (!merges)
		return 0;
	memcpy(merges, data, size);
	merges[size] = '\0';
	mb_error_clear(&err);
	if (mb_tok_parse_bpe_files(&t, vocab, strlen(vocab), "vocab.json", merges, size, NAME,
				   &err) < 0) {
		if (err.code >= 0 || strncmp(err.msg, NAME ":", strlen(NAME) + 1) != 0 ||
		    strchr(err.msg, '\n') != NULL || t != NULL)
			__builtin_trap();
		free(merges);
		return 0;
	}
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		int32_t *ids = NULL;
		int n = 0;
		char *back = NULL;
		size_t len = 0;

		mb_error_clear(&err);
		if (mb_tokenizer_encode(t, texts[i], &ids, &n, &err) < 0) {
			if (err.code >= 0 || strchr(err.msg, '\n') != NULL || !err.msg[0])
				__builtin_trap();
			continue;
		}
		if (mb_tokenizer_decode(t, ids, n, &back, &len, &err) < 0 ||
		    len != strlen(texts[i]) || memcmp(back, texts[i], len) != 0)
			__builtin_trap();
		free(back);
		free(ids);
	}
	mb_tokenizer_free(t);
	free(merges);
	return 0;
}
