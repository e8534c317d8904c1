/*
 * weights: model.safetensors into the engine layout, and checkpoint
 * directories. Small checkpoints are written here with mb_safetensors_write_f32;
 * each defect must be an error naming the file and the tensor.
 *
 * Shape letters: V vocab, P positions, D d_model, M d_mlp.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mechbench/model.h>

#define V 5
#define P 4
#define D 8
#define M 16

typedef struct tensor {
	char name[64];
	int ndim;
	int64_t shape[2];
	float *data;
} tensor;

static tensor ts[32];
static int nts;
static char dir[64];

static void add(const char *name, int ndim, int64_t a, int64_t b)
{
	tensor *t = &ts[nts++];
	size_t n = (size_t)a * (ndim == 2 ? (size_t)b : 1);

	snprintf(t->name, sizeof(t->name), "%s", name);
	t->ndim = ndim;
	t->shape[0] = a;
	t->shape[1] = b;
	t->data = malloc(sizeof(float) * n);
	for (size_t i = 0; i < n; i++)
		t->data[i] = (float)((i * 7 + (size_t)nts) % 13) / 13.0f - 0.5f;
}

/* The tensors of a one-layer LN + MLP model with tied embeddings. */
static void standard(void)
{
	nts = 0;
	add("wte.weight", 2, V, D);
	add("wpe.weight", 2, P, D);
	add("h.0.ln_1.weight", 1, D, 0);
	add("h.0.ln_1.bias", 1, D, 0);
	add("h.0.attn.c_attn.weight", 2, D, 3 * D);
	add("h.0.attn.c_attn.bias", 1, 3 * D, 0);
	add("h.0.attn.c_proj.weight", 2, D, D);
	add("h.0.attn.c_proj.bias", 1, D, 0);
	add("h.0.ln_2.weight", 1, D, 0);
	add("h.0.ln_2.bias", 1, D, 0);
	add("h.0.mlp.c_fc.weight", 2, D, M);
	add("h.0.mlp.c_fc.bias", 1, M, 0);
	add("h.0.mlp.c_proj.weight", 2, M, D);
	add("h.0.mlp.c_proj.bias", 1, D, 0);
	add("ln_f.weight", 1, D, 0);
	add("ln_f.bias", 1, D, 0);
}

static tensor *find(const char *name)
{
	for (int i = 0; i < nts; i++)
		if (strcmp(ts[i].name, name) == 0)
			return &ts[i];
	cr_assert_fail("no tensor %s", name);
	return NULL;
}

static void drop(const char *name)
{
	tensor *t = find(name);

	free(t->data);
	*t = ts[--nts];
}

static void write_dir(const char *extra_config)
{
	char path[256];
	mb_st_entry e[32];
	mb_error err = {0};
	FILE *f;

	snprintf(dir, sizeof(dir), "/tmp/mb-weights-XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/config.json", dir);
	f = fopen(path, "w");
	cr_assert(f);
	fprintf(f, "{\"vocab_size\": %d, \"n_positions\": %d, \"n_embd\": %d, \"n_layer\": 1, "
		   "\"n_head\": 2, \"n_inner\": %d%s}\n",
		V, P, D, M, extra_config ? extra_config : "");
	fclose(f);
	for (int i = 0; i < nts; i++) {
		e[i].name = ts[i].name;
		e[i].ndim = ts[i].ndim;
		e[i].shape[0] = ts[i].shape[0];
		e[i].shape[1] = ts[i].shape[1];
		e[i].data = ts[i].data;
	}
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	cr_assert_eq(mb_safetensors_write_f32(path, e, (size_t)nts, NULL, &err), 0, "%s", err.msg);
}

static void cleanup_dir(void)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/config.json", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	unlink(path);
	rmdir(dir);
	for (int i = 0; i < nts; i++)
		free(ts[i].data);
	nts = 0;
}

/* Loads dir; returns rc and leaves the message in err. */
static int load(mb_model **m, mb_error *err)
{
	mb_error_clear(err);
	*m = NULL;
	return mb_model_load(m, dir, err);
}

static void expect_error(const char *extra_config, const char *what)
{
	mb_model *m;
	mb_error err;

	write_dir(extra_config);
	cr_expect_lt(load(&m, &err), 0, "accepted (expected: %s)", what);
	cr_expect(strstr(err.msg, what) != NULL, "message \"%s\" lacks \"%s\"", err.msg, what);
	cr_expect(strchr(err.msg, '\n') == NULL);
	mb_model_free(m);
	cleanup_dir();
}

Test(weights, a_standard_checkpoint_lands_in_the_layout)
{
	mb_model *m;
	mb_error err;

	standard();
	write_dir(NULL);
	cr_assert_eq(load(&m, &err), 0, "%s", err.msg);
	cr_expect_eq(memcmp(m->w.wte, find("wte.weight")->data, sizeof(float) * V * D), 0);
	cr_expect_eq(memcmp(m->w.qkv_w, find("h.0.attn.c_attn.weight")->data,
			    sizeof(float) * D * 3 * D), 0);
	cr_expect_eq(memcmp(m->w.proj_w, find("h.0.mlp.c_proj.weight")->data, sizeof(float) * M * D),
		     0);
	cr_expect_eq(memcmp(m->w.lnf_b, find("ln_f.bias")->data, sizeof(float) * D), 0);
	cr_expect_eq(m->w.unembed, m->w.wte);
	cr_expect_eq(m->n_params, mb_engine_weights_layout(&(mb_engine_weights){0}, &m->cfg, NULL));
	cr_expect_null(m->tok);
	mb_model_free(m);
	cleanup_dir();
}

Test(weights, prefixed_names_buffers_and_a_tied_copy_of_wte_are_accepted)
{
	mb_model *m;
	mb_error err;

	standard();
	for (int i = 0; i < nts; i++) {
		char tmp[64];

		snprintf(tmp, sizeof(tmp), "transformer.%s", ts[i].name);
		snprintf(ts[i].name, sizeof(ts[i].name), "%s", tmp);
	}
	add("transformer.h.0.attn.bias", 2, P, P);
	add("transformer.h.0.attn.masked_bias", 1, 1, 0);
	add("lm_head.weight", 2, V, D);
	memcpy(find("lm_head.weight")->data, find("transformer.wte.weight")->data,
	       sizeof(float) * V * D);
	write_dir(NULL);
	cr_assert_eq(load(&m, &err), 0, "%s", err.msg);
	mb_model_free(m);
	cleanup_dir();
}

Test(weights, an_untied_checkpoint_reads_lm_head)
{
	mb_model *m;
	mb_error err;

	standard();
	add("lm_head.weight", 2, V, D);
	write_dir(", \"tie_word_embeddings\": false");
	cr_assert_eq(load(&m, &err), 0, "%s", err.msg);
	cr_expect_neq(m->w.unembed, m->w.wte);
	cr_expect_eq(memcmp(m->w.unembed, find("lm_head.weight")->data, sizeof(float) * V * D), 0);
	mb_model_free(m);
	cleanup_dir();
}

Test(weights, a_missing_tensor_is_named)
{
	standard();
	drop("h.0.mlp.c_fc.bias");
	expect_error(NULL, "tensor h.0.mlp.c_fc.bias (or transformer.h.0.mlp.c_fc.bias) is missing");
}

Test(weights, an_untied_model_without_lm_head_is_an_error)
{
	standard();
	expect_error(", \"tie_word_embeddings\": false", "tensor lm_head.weight");
}

Test(weights, a_misshapen_tensor_is_named_with_both_shapes)
{
	standard();
	drop("h.0.attn.c_attn.weight");
	add("h.0.attn.c_attn.weight", 2, 3 * D, D);
	expect_error(NULL, "tensor h.0.attn.c_attn.weight: shape [24, 8], expected [8, 24]");
}

Test(weights, an_unexpected_tensor_is_named)
{
	standard();
	add("h.1.ln_1.weight", 1, D, 0);
	expect_error(NULL, "tensor h.1.ln_1.weight: unexpected");
}

Test(weights, ln_tensors_in_a_model_without_normalization_are_unexpected)
{
	standard();
	expect_error(", \"normalization_type\": \"none\"", "tensor h.0.ln_1.bias: unexpected");
}

Test(weights, mlp_tensors_in_an_attention_only_model_are_unexpected)
{
	standard();
	drop("h.0.ln_2.weight");
	drop("h.0.ln_2.bias");
	expect_error(", \"attn_only\": true", "tensor h.0.mlp.c_fc.bias: unexpected");
}

Test(weights, a_tensor_present_with_and_without_prefix_is_an_error)
{
	standard();
	add("transformer.wpe.weight", 2, P, D);
	expect_error(NULL, "present twice");
}

Test(weights, a_tied_lm_head_that_differs_from_wte_is_an_error)
{
	standard();
	add("lm_head.weight", 2, V, D);
	expect_error(NULL, "tie_word_embeddings is true but it differs from wte.weight");
}

Test(weights, a_non_finite_weight_is_an_error_naming_the_tensor)
{
	standard();
	find("h.0.attn.c_proj.bias")->data[3] = NAN;
	expect_error(NULL, "h.0.attn.c_proj.bias");
}

Test(weights, a_missing_directory_or_file_is_named)
{
	mb_model *m = NULL;
	mb_error err = {0};
	char path[256];

	cr_expect_eq(mb_model_load(&m, "/nonexistent-model-dir", &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "/nonexistent-model-dir") != NULL, "%s", err.msg);
	standard();
	write_dir(NULL);
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	unlink(path);
	cr_expect_lt(load(&m, &err), 0);
	cr_expect(strstr(err.msg, "model.safetensors") != NULL, "%s", err.msg);
	cleanup_dir();
}

Test(weights, a_tokenizer_larger_than_the_vocabulary_is_an_error)
{
	mb_model *m;
	mb_error err;
	char path[256];
	FILE *f;

	standard();
	write_dir(NULL);
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	f = fopen(path, "w");
	cr_assert(f);
	fputs("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0, \"b\": 9}}}", f);
	fclose(f);
	cr_expect_lt(load(&m, &err), 0);
	cr_expect(strstr(err.msg, "vocab_size is 5") != NULL, "%s", err.msg);
	cleanup_dir();
}
