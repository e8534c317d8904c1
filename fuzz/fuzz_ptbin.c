/*
 * fuzz_ptbin: libFuzzer target for the PyTorch zip checkpoint reader
 * (mb_ptbin_to_safetensors_mem: zip, pickle, safetensors image; and
 * mb_ptbin_open_mem: the view over the archive that loading uses).
 *
 * Every input must either convert, and then the image must open as
 * safetensors (it is ours: a refusal is a bug) and every tensor convert or be
 * refused with one line, or fail with one non-empty line that starts with the
 * file's name. The view must agree: refused with the same line, or holding
 * the same tensors with the same bytes as the image. Anything else traps.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/ptbin.h>
#include <mechbench/safetensors.h>

#define NAME "fuzz.bin"

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
	void *img = NULL;
	size_t len = 0;

	mb_safetensors *view = NULL;
	mb_error verr;
	int rc, vrc;

	mb_error_clear(&err);
	mb_error_clear(&verr);
	rc = mb_ptbin_to_safetensors_mem(&img, &len, data, size, NAME, &err);
	vrc = mb_ptbin_open_mem(&view, data, size, NAME, &verr);
	if (rc < 0) {
		check_error(&err);
		if (img || vrc != rc || view || strcmp(err.msg, verr.msg) != 0)
			__builtin_trap();
		return 0;
	}
	if (vrc < 0 || mb_safetensors_open_mem(&st, img, len, NAME, &err) < 0 ||
	    mb_safetensors_count(view) != mb_safetensors_count(st))
		__builtin_trap();
	for (size_t i = 0; i < mb_safetensors_count(st); i++) {
		const mb_st_tensor *t = mb_safetensors_at(st, i);
		const mb_st_tensor *v = mb_safetensors_find(view, t->name);
		float *dst;

		if (!v || v->dtype != t->dtype || v->numel != t->numel ||
		    memcmp(mb_safetensors_data(view, v), mb_safetensors_data(st, t),
			   t->end - t->begin) != 0)
			__builtin_trap();
		dst = malloc(t->numel * sizeof(float) + 1);

		if (!dst)
			__builtin_trap();
		if (mb_safetensors_read_f32(st, t, dst, 0, &err) < 0)
			check_error(&err);
		free(dst);
	}
	mb_safetensors_free(view);
	mb_safetensors_free(st);
	free(img);
	return 0;
}
