/*
 * fuzz_safetensors: libFuzzer target for the safetensors reader.
 *
 * Every input must either open, and then every tensor must convert without
 * touching memory outside the buffer (ASan watches), or fail with one
 * non-empty line that starts with the file's name. Anything else traps.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/safetensors.h>

#define NAME "fuzz.safetensors"

static void check_error(const mb_error *err)
{
	if (err->code >= 0 || strncmp(err->msg, NAME ": ", strlen(NAME) + 2) != 0 ||
	    strchr(err->msg, '\n') != NULL || strlen(err->msg) <= strlen(NAME) + 2)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mb_safetensors *st = NULL;
	mb_error err;

	mb_error_clear(&err);
	if (mb_safetensors_open_mem(&st, data, size, NAME, &err) < 0) {
		check_error(&err);
		return 0;
	}
	for (size_t i = 0; i < mb_safetensors_count(st); i++) {
		const mb_st_tensor *t = mb_safetensors_at(st, i);
		/* validated: the span fits in the input, so numel is bounded by size */
		float *dst = malloc(t->numel * sizeof(float) + 1);
		if (!dst)
			__builtin_trap();
		if (t->end > size || mb_safetensors_find(st, t->name) == NULL)
			__builtin_trap();
		if (mb_safetensors_read_f32(st, t, dst, i & 1, &err) < 0)
			check_error(&err);
		free(dst);
	}
	for (size_t i = 0; i < mb_safetensors_metadata_count(st); i++) {
		const char *k, *v;
		if (mb_safetensors_metadata_at(st, i, &k, &v) < 0 ||
		    mb_safetensors_metadata(st, k) != v)
			__builtin_trap();
	}
	mb_safetensors_free(st);
	return 0;
}
