/*
 * fuzz_index: libFuzzer target for model.safetensors.index.json (sharded
 * checkpoints).
 *
 * Every input either parses into an index whose tensors are sorted and
 * distinct, each mapped to one of its sorted, distinct plain-named files, or
 * fails with one line starting with "model.safetensors.index.json:".
 */
#include <stdint.h>
#include <string.h>

#include <mechbench/model.h>

#define NAME "model.safetensors.index.json"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mb_model_index ix;
	mb_error err;

	mb_error_clear(&err);
	if (mb_model_index_parse(&ix, (const char *)data, size, NAME, &err) < 0) {
		if (err.code >= 0 || strncmp(err.msg, NAME ":", strlen(NAME) + 1) != 0 ||
		    strchr(err.msg, '\n') != NULL)
			__builtin_trap();
		return 0;
	}
	if (ix.n == 0 || ix.n_files == 0 || ix.n_files > ix.n)
		__builtin_trap();
	for (size_t i = 0; i < ix.n; i++) {
		if (i > 0 && strcmp(ix.tensor[i - 1], ix.tensor[i]) >= 0)
			__builtin_trap();
		if (ix.file_of[i] < 0 || (size_t)ix.file_of[i] >= ix.n_files)
			__builtin_trap();
	}
	for (size_t f = 0; f < ix.n_files; f++)
		if ((f > 0 && strcmp(ix.files[f - 1], ix.files[f]) >= 0) || strchr(ix.files[f], '/') ||
		    ix.files[f][0] == '.' || ix.files[f][0] == '\0')
			__builtin_trap();
	mb_model_index_dispose(&ix);
	return 0;
}
