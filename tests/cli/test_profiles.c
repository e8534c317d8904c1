/*
 * profiles: benchmarks/gpt2-small.json and benchmarks/pythia-160m.json are
 * meant for a user's download of gpt2 / EleutherAI/pythia-160m (not here).
 * To show the plumbing end to end, each runs here through `mechbench run
 * --model DIR` on a random checkpoint of the same family and vocabulary at
 * small dims (3 layers, d_model 64, 8 heads), written in Hugging Face layout
 * by this test: GPT-2 Conv1D names, or GPT-NeoX names (fused per-head q/k/v,
 * nn.Linear, rotary, parallel residual, untied embed_out). The task picks the
 * model through the engine only; every metric of the profile must come back.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mechbench/safetensors.h>

#include "support/cli_run.h"

#define D 64
#define M 128
#define L 3
#define PCTX 256

static float *rnd(size_t n, float scale, float shift, uint64_t *s)
{
	float *p = malloc(n * sizeof(float));

	for (size_t i = 0; i < n; i++) {
		*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
		p[i] = shift + scale * ((float)(*s >> 40) / 16777216.0f - 0.5f);
	}
	return p;
}

typedef struct ck {
	mb_st_entry e[64];
	char names[64][96];
	int n;
	uint64_t s;
} ck;

static void put(ck *c, const char *name, int64_t a, int64_t b, float scale, float shift)
{
	mb_st_entry *e = &c->e[c->n];

	snprintf(c->names[c->n], 96, "%s", name);
	e->name = c->names[c->n];
	e->ndim = b ? 2 : 1;
	e->shape[0] = a;
	e->shape[1] = b;
	e->data = rnd((size_t)a * (size_t)(b ? b : 1), scale, shift, &c->s);
	c->n++;
}

static void finish(ck *c, const char *dir, const char *config)
{
	char path[512];
	mb_error err = {0};
	FILE *f;

	snprintf(path, sizeof(path), "%s/config.json", dir);
	f = fopen(path, "w");
	cr_assert(f);
	fputs(config, f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	cr_assert_eq(mb_safetensors_write_f32(path, c->e, (size_t)c->n, NULL, &err), 0, "%s", err.msg);
	for (int i = 0; i < c->n; i++)
		free((void *)c->e[i].data);
}

static void write_gpt2(const char *dir)
{
	ck c = {.s = 11};
	char name[96], cfg[512];
	const int V = 50257;

	put(&c, "wte.weight", V, D, 0.2f, 0);
	put(&c, "wpe.weight", PCTX, D, 0.1f, 0);
	for (int l = 0; l < L; l++) {
#define P2(suf, a, b, sc, sh)                                                   \
	do {                                                                    \
		snprintf(name, sizeof(name), "h.%d.%s", l, suf);                \
		put(&c, name, a, b, sc, sh);                                    \
	} while (0)
		P2("ln_1.weight", D, 0, 0.1f, 1.0f);
		P2("ln_1.bias", D, 0, 0.1f, 0);
		P2("attn.c_attn.weight", D, 3 * D, 0.5f, 0);
		P2("attn.c_attn.bias", 3 * D, 0, 0.1f, 0);
		P2("attn.c_proj.weight", D, D, 0.3f, 0);
		P2("attn.c_proj.bias", D, 0, 0.1f, 0);
		P2("ln_2.weight", D, 0, 0.1f, 1.0f);
		P2("ln_2.bias", D, 0, 0.1f, 0);
		P2("mlp.c_fc.weight", D, M, 0.3f, 0);
		P2("mlp.c_fc.bias", M, 0, 0.1f, 0);
		P2("mlp.c_proj.weight", M, D, 0.3f, 0);
		P2("mlp.c_proj.bias", D, 0, 0.1f, 0);
#undef P2
	}
	put(&c, "ln_f.weight", D, 0, 0.1f, 1.0f);
	put(&c, "ln_f.bias", D, 0, 0.1f, 0);
	snprintf(cfg, sizeof(cfg),
		 "{\"model_type\": \"gpt2\", \"vocab_size\": %d, \"n_positions\": %d, \"n_embd\": %d, "
		 "\"n_layer\": %d, \"n_head\": 8, \"n_inner\": %d, \"activation_function\": "
		 "\"gelu_new\", \"layer_norm_epsilon\": 1e-5, \"tie_word_embeddings\": true}\n",
		 V, PCTX, D, L, M);
	finish(&c, dir, cfg);
}

static void write_neox(const char *dir)
{
	ck c = {.s = 13};
	char name[96], cfg[768];
	const int V = 50304;

	put(&c, "gpt_neox.embed_in.weight", V, D, 0.2f, 0);
	for (int l = 0; l < L; l++) {
#define PN(suf, a, b, sc, sh)                                                     \
	do {                                                                      \
		snprintf(name, sizeof(name), "gpt_neox.layers.%d.%s", l, suf);    \
		put(&c, name, a, b, sc, sh);                                      \
	} while (0)
		PN("input_layernorm.weight", D, 0, 0.1f, 1.0f);
		PN("input_layernorm.bias", D, 0, 0.1f, 0);
		PN("post_attention_layernorm.weight", D, 0, 0.1f, 1.0f);
		PN("post_attention_layernorm.bias", D, 0, 0.1f, 0);
		PN("attention.query_key_value.weight", 3 * D, D, 0.5f, 0);
		PN("attention.query_key_value.bias", 3 * D, 0, 0.1f, 0);
		PN("attention.dense.weight", D, D, 0.3f, 0);
		PN("attention.dense.bias", D, 0, 0.1f, 0);
		PN("mlp.dense_h_to_4h.weight", M, D, 0.3f, 0);
		PN("mlp.dense_h_to_4h.bias", M, 0, 0.1f, 0);
		PN("mlp.dense_4h_to_h.weight", D, M, 0.3f, 0);
		PN("mlp.dense_4h_to_h.bias", D, 0, 0.1f, 0);
#undef PN
	}
	put(&c, "gpt_neox.final_layer_norm.weight", D, 0, 0.1f, 1.0f);
	put(&c, "gpt_neox.final_layer_norm.bias", D, 0, 0.1f, 0);
	put(&c, "embed_out.weight", V, D, 0.2f, 0);
	snprintf(cfg, sizeof(cfg),
		 "{\"architectures\": [\"GPTNeoXForCausalLM\"], \"model_type\": \"gpt_neox\", "
		 "\"vocab_size\": %d, \"max_position_embeddings\": %d, \"hidden_size\": %d, "
		 "\"num_hidden_layers\": %d, \"num_attention_heads\": 8, \"intermediate_size\": %d, "
		 "\"hidden_act\": \"gelu\", \"rotary_pct\": 0.25, \"rotary_emb_base\": 10000, "
		 "\"use_parallel_residual\": true, \"tie_word_embeddings\": false, "
		 "\"layer_norm_eps\": 1e-5, \"torch_dtype\": \"float16\"}\n",
		 V, PCTX, D, L, M);
	finish(&c, dir, cfg);
}

static void run_profile(const char *suite, void (*write)(const char *))
{
	char dir[64], cmd[1024], *out = NULL;
	int rc;

	snprintf(dir, sizeof(dir), "/tmp/mb-profile-XXXXXX");
	cr_assert(mkdtemp(dir));
	write(dir);
	snprintf(cmd, sizeof(cmd),
		 MBT_CLI "run --suite benchmarks/%s --model %s --db %s/r.db --json %s/r.json "
			 "--threads 2 --quiet",
		 suite, dir, dir, dir);
	rc = mbt_sh(MB_SOURCE_DIR, cmd, &out);
	printf("%s\n%s\n", cmd, out ? out : "");
	cr_expect_eq(rc, 0, "%s exited %d:\n%s", suite, rc, out ? out : "");
	cr_expect(out && strstr(out, "induction.score"), "no induction.score in the table");
	cr_expect(out && strstr(out, "induction.ablate_excess"), "no ablate_excess in the table");
	free(out);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_expect_eq(mbt_sh("/", cmd, NULL), 0);
}

Test(profiles, gpt2_small_profile_runs_on_a_random_gpt2_checkpoint, .timeout = 600)
{
	run_profile("gpt2-small.json", write_gpt2);
}

Test(profiles, pythia_160m_profile_runs_on_a_random_neox_checkpoint, .timeout = 600)
{
	run_profile("pythia-160m.json", write_neox);
}
