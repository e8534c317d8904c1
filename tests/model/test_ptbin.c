/*
 * ptbin: PyTorch's zip checkpoints (pytorch_model.bin) read without Python.
 * The fixtures (tests/fixtures/ptbin/gen_ptbin.py) are torch.save files and
 * the same tensors in a safetensors file written by the script's own writer:
 * a folder with only pytorch_model.bin must load to exactly the float32
 * parameters the safetensors file gives, every tensor must convert to the
 * same dtype, shape and bytes, and each malformed file is one clear error.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mechbench/model.h>
#include <mechbench/ptbin.h>
#include <mechbench/safetensors.h>

#define FX MB_SOURCE_DIR "/tests/fixtures/ptbin"

static void load_reference(float **params, size_t *n, const char *dir, const char *ref_dir)
{
	char path[512];
	mb_engine_config cfg;
	mb_engine_weights w;
	mb_safetensors *st = NULL;
	mb_error err = {0};

	snprintf(path, sizeof(path), "%s/config.json", dir);
	cr_assert_eq(mb_model_config_load(&cfg, path, &err), 0, "%s", err.msg);
	snprintf(path, sizeof(path), "%s/reference.safetensors", ref_dir);
	cr_assert_eq(mb_safetensors_open(&st, path, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_model_weights_load(&w, params, n, &cfg, st, &err), 0, "%s", err.msg);
	mb_safetensors_free(st);
}

static void check_same_params(const char *dir, const char *ref_dir)
{
	mb_model *m = NULL;
	mb_error err = {0};
	float *ref;
	size_t n_ref, nonzero = 0;
	double maxdiff = 0;

	cr_assert_eq(mb_model_load(&m, dir, &err), 0, "%s", err.msg);
	load_reference(&ref, &n_ref, dir, ref_dir);
	cr_assert_eq(m->n_params, n_ref);
	for (size_t i = 0; i < n_ref; i++) {
		double d = (double)m->params[i] - (double)ref[i];

		if (d < 0)
			d = -d;
		if (d > maxdiff)
			maxdiff = d;
		nonzero += ref[i] != 0.0f;
	}
	printf("%s: %zu parameters, max |bin - safetensors| = %g\n", dir, n_ref, maxdiff);
	cr_expect(nonzero > n_ref / 2, "the fixture's weights are mostly zero");
	cr_expect_eq(memcmp(m->params, ref, n_ref * sizeof(float)), 0,
	             "%s: float32 parameters differ from the safetensors load", dir);
	free(ref);
	mb_model_free(m);
}

Test(ptbin, gpt2_bin_with_tied_head_loads_the_same_float32_weights_as_safetensors)
{
	check_same_params(FX "/gpt2", FX "/gpt2");
}

Test(ptbin, gpt2_bin_without_lm_head_loads_tied_like_safetensors)
{
	check_same_params(FX "/gpt2_no_head", FX "/gpt2");
}

Test(ptbin, neox_f16_bin_with_storage_views_loads_the_same_float32_weights_as_safetensors)
{
	check_same_params(FX "/neox_f16", FX "/neox_f16");
}

Test(ptbin, sharded_bin_with_its_index_loads_the_same_float32_weights_as_one_file)
{
	check_same_params(FX "/neox_f16_sharded", FX "/neox_f16");
}

static void image_of(void **img, size_t *len, mb_safetensors **st, const char *path)
{
	mb_error err = {0};

	cr_assert_eq(mb_ptbin_to_safetensors(img, len, path, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_safetensors_open_mem(st, *img, *len, path, &err), 0, "%s", err.msg);
}

/* Every tensor of the reference is in the image (view 0) or in the view of
 * the mapped file (view 1, mb_ptbin_open) with its dtype, shape, bytes. */
static void check_tensors(const char *dir, size_t extra, int view)
{
	char path[512];
	mb_safetensors *ref = NULL, *bin = NULL;
	mb_error err = {0};
	void *img = NULL;
	size_t len;

	snprintf(path, sizeof(path), "%s/reference.safetensors", dir);
	cr_assert_eq(mb_safetensors_open(&ref, path, &err), 0, "%s", err.msg);
	snprintf(path, sizeof(path), "%s/pytorch_model.bin", dir);
	if (view)
		cr_assert_eq(mb_ptbin_open(&bin, path, &err), 0, "%s", err.msg);
	else
		image_of(&img, &len, &bin, path);
	cr_assert_eq(mb_safetensors_count(bin), mb_safetensors_count(ref) + extra);
	for (size_t i = 0; i < mb_safetensors_count(ref); i++) {
		const mb_st_tensor *r = mb_safetensors_at(ref, i);
		const mb_st_tensor *b = mb_safetensors_find(bin, r->name);

		cr_assert_not_null(b, "%s missing from the .bin", r->name);
		cr_expect_eq(b->dtype, r->dtype, "%s: dtype", r->name);
		cr_assert_eq(b->ndim, r->ndim, "%s: ndim", r->name);
		for (int d = 0; d < r->ndim; d++)
			cr_expect_eq(b->shape[d], r->shape[d], "%s: dim %d", r->name, d);
		cr_assert_eq(b->end - b->begin, r->end - r->begin, "%s: bytes", r->name);
		cr_expect_eq(memcmp(mb_safetensors_data(bin, b), mb_safetensors_data(ref, r),
		                    r->end - r->begin),
		             0, "%s: bytes differ", r->name);
	}
	mb_safetensors_free(ref);
	mb_safetensors_free(bin);
	free(img);
}

Test(ptbin, every_tensor_converts_with_its_dtype_shape_and_bytes)
{
	for (int view = 0; view < 2; view++) {
		check_tensors(FX "/neox_f16", 0, view);
		check_tensors(FX "/gpt2", 1, view); /* + lm_head.weight, wte's storage */
	}
}

/* The view copies nothing: tensors of one storage are the same bytes of the
 * file, and dropping one's pages (as the loader does after converting it)
 * leaves the other readable, re-read from the file. */
Test(ptbin, a_view_reads_tied_tensors_from_their_one_storage)
{
	mb_safetensors *bin = NULL;
	mb_error err = {0};
	const mb_st_tensor *wte, *head;
	size_t bytes;
	void *copy;

	cr_assert_eq(mb_ptbin_open(&bin, FX "/gpt2/pytorch_model.bin", &err), 0, "%s", err.msg);
	wte = mb_safetensors_find(bin, "transformer.wte.weight");
	head = mb_safetensors_find(bin, "lm_head.weight");
	cr_assert(wte && head);
	cr_expect_eq(wte->begin, head->begin);
	cr_expect_eq(mb_safetensors_data(bin, wte), mb_safetensors_data(bin, head));
	bytes = wte->end - wte->begin;
	copy = malloc(bytes);
	cr_assert_not_null(copy);
	memcpy(copy, mb_safetensors_data(bin, wte), bytes);
	mb_safetensors_release(bin, wte);
	cr_expect_eq(memcmp(mb_safetensors_data(bin, head), copy, bytes), 0);
	free(copy);
	mb_safetensors_free(bin);
}

Test(ptbin, a_shared_storage_gives_each_tensor_its_own_copy)
{
	mb_safetensors *bin = NULL;
	void *img;
	size_t len;
	const mb_st_tensor *wte, *head;

	image_of(&img, &len, &bin, FX "/gpt2/pytorch_model.bin");
	wte = mb_safetensors_find(bin, "transformer.wte.weight");
	head = mb_safetensors_find(bin, "lm_head.weight");
	cr_assert(wte && head);
	cr_expect_neq(wte->begin, head->begin);
	cr_assert_eq(wte->end - wte->begin, head->end - head->begin);
	cr_expect_eq(memcmp(mb_safetensors_data(bin, wte), mb_safetensors_data(bin, head),
	                    wte->end - wte->begin),
	             0);
	mb_safetensors_free(bin);
	free(img);
}

/* Pickle protocol 4 and a ZIP64 end record give the same image as the
 * files they were made from. */
Test(ptbin, protocol_4_and_zip64_variants_convert_to_the_same_image)
{
	static const char *pairs[][2] = {
	    {FX "/variants/proto4.bin", FX "/gpt2/pytorch_model.bin"},
	    {FX "/variants/zip64.bin", FX "/neox_f16/pytorch_model.bin"},
	};
	mb_error err = {0};
	void *base, *img;
	size_t blen, len;

	for (size_t i = 0; i < 2; i++) {
		cr_assert_eq(mb_ptbin_to_safetensors(&base, &blen, pairs[i][1], &err), 0, "%s",
		             err.msg);
		cr_assert_eq(mb_ptbin_to_safetensors(&img, &len, pairs[i][0], &err), 0, "%s",
		             err.msg);
		cr_expect(len == blen && memcmp(img, base, len) == 0, "%s: image differs",
		          pairs[i][0]);
		free(img);
		free(base);
	}
}

static const struct {
	const char *file, *msg;
} bad[] = {
    {"big_endian.bin", "byteorder is not \"little\""},
    {"compressed.bin", "compressed (method 8)"},
    {"global.bin", "global not allowed in a state dict: __builtin__.print"},
    {"int_storage16.bin", "global not allowed in a state dict: torch.ShortStorage"},
    {"list_top.bin", "the top-level object: list, not a state dict"},
    {"missing_storage.bin", "storage 0: no entry"},
    {"no_pickle.bin", "no <prefix>/data.pkl in the archive"},
    {"noncontiguous.bin", "tensor is not contiguous"},
    {"not_tensor.bin", "state dict entry w: int, not a tensor"},
    {"not_zip.bin", "not a zip archive"},
    {"opcode.bin", "opcode not supported in a state dict: 0x8f"},
    {"short_storage.bin", "storage 0: 6 elements of F32 do not match its 20 bytes"},
    {"truncated.bin", "not a zip archive (no end-of-central-directory record"},
    {"truncated_pickle.bin", "data.pkl: byte"},
};

Test(ptbin, each_malformed_file_is_one_clear_error_naming_the_file)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char path[512];
		mb_error err = {0};
		void *img = (void *)1;
		size_t len = 1;
		int rc;

		mb_safetensors *view = (mb_safetensors *)1;
		mb_error verr = {0};

		snprintf(path, sizeof(path), "%s/bad/%s", FX, bad[i].file);
		rc = mb_ptbin_to_safetensors(&img, &len, path, &err);
		printf("%s\n", err.msg);
		cr_expect_lt(rc, 0, "%s: accepted", bad[i].file);
		cr_expect_null(img, "%s", bad[i].file);
		/* the view refuses it with the same message */
		cr_expect_eq(mb_ptbin_open(&view, path, &verr), rc, "%s: view", bad[i].file);
		cr_expect_null(view, "%s: view", bad[i].file);
		cr_expect_str_eq(verr.msg, err.msg, "%s: view", bad[i].file);
		cr_expect(strncmp(err.msg, path, strlen(path)) == 0 && err.msg[strlen(path)] == ':',
		          "%s: error does not start with the path: %s", bad[i].file, err.msg);
		cr_expect_null(strchr(err.msg, '\n'), "%s", bad[i].file);
		cr_expect_not_null(strstr(err.msg, bad[i].msg), "%s: got \"%s\", expected \"%s\"",
		                   bad[i].file, err.msg, bad[i].msg);
	}
}

Test(ptbin, a_folder_with_no_weights_names_every_file_it_looked_for)
{
	char dir[] = "/tmp/mb_ptbin_XXXXXX";
	char path[600];
	mb_model *m = NULL;
	mb_error err = {0};
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/config.json", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("{\"model_type\": \"gpt2\", \"n_embd\": 16, \"n_head\": 2, \"n_layer\": 1, "
	      "\"n_positions\": 8, \"vocab_size\": 24}\n",
	      f);
	fclose(f);
	cr_expect_eq(mb_model_load(&m, dir, &err), MB_ENOTFOUND, "%s", err.msg);
	cr_expect_not_null(strstr(err.msg, "pytorch_model.bin or pytorch_model.bin.index.json"),
	                   "%s", err.msg);
	remove(path);
	rmdir(dir);
}
