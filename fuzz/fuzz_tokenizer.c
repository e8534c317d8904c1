/*
 * fuzz_tokenizer: libFuzzer target for the tokenizer.json parser and the
 * WordLevel and byte-level BPE encoders (and decode).
 *
 * Every input either fails to parse with one line starting with
 * "tokenizer.json:", or gives a tokenizer whose encodings of a few texts are
 * ids below its vocabulary size (or one-line errors naming the word).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/tokenizer.h>

#define NAME "tokenizer.json"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const texts[] = {"", "a b c", "<bos> a  b\tc\nd", "Hello, world!",
					    "zz <unk>ab,ac", "\xc3\xa9t\xc3\xa9 _x_ 12",
					    "abc ab's  <|endoftext|>\n", "a\xff\xfe", "e\xcc\x81"};
	mb_tokenizer *t = NULL;
	mb_error err;

	mb_error_clear(&err);
	if (mb_tokenizer_parse(&t, (const char *)data, size, NAME, &err) < 0) {
		if (err.code >= 0 || strncmp(err.msg, NAME ":", strlen(NAME) + 1) != 0 ||
		    strchr(err.msg, '\n') != NULL || t != NULL)
			__builtin_trap();
		return 0;
	}
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		int32_t *ids = NULL;
		int n = 0;

		mb_error_clear(&err);
		if (mb_tokenizer_encode(t, texts[i], &ids, &n, &err) < 0) {
			if (err.code >= 0 || strchr(err.msg, '\n') != NULL || !err.msg[0])
				__builtin_trap();
			continue;
		}
		for (int k = 0; k < n; k++)
			if (ids[k] < 0 || ids[k] >= mb_tokenizer_vocab_size(t) ||
			    !mb_tokenizer_token(t, ids[k]))
				__builtin_trap();
		{
			char *back = NULL;
			size_t len = 0;

			if (mb_tokenizer_decode(t, ids, n, &back, &len, &err) < 0)
				__builtin_trap();
			free(back);
		}
		free(ids);
	}
	mb_tokenizer_free(t);
	return 0;
}
