/*
 * profiles: benchmarks/gpt2-small.json and benchmarks/pythia-160m.json are
 * meant for a user's download of gpt2 / EleutherAI/pythia-160m (not here).
 * To show the plumbing end to end, every entry of each runs here through
 * `mechbench run --model DIR` on a random checkpoint of the same family and
 * vocabulary at small dims, written in Hugging Face layout by this test:
 * GPT-2 Conv1D names (12 layers x 12 heads, the heads Wang et al.'s IOI
 * circuit names, d_model 96), or GPT-NeoX names (12 layers, 4 heads, d_model
 * 32: fused per-head q/k/v, nn.Linear, rotary, parallel residual, untied
 * embed_out), each with GPT-2's byte-level BPE tokenizer.json (the text
 * entries tokenize with the model folder's own tokenizer; Pythia's cannot be
 * fetched here, and it is the same kind of file). The tasks pick the model
 * through the engine only; every metric of every entry must come back finite.
 * Each folder also goes through `cache --text` (issue 16: a GPT-2-layout and
 * a NeoX-layout folder with a BPE tokenizer.json).
 *
 * What differs from the profile as a user runs it, and why:
 *  - the SAE entry's params.sae names the SAELens folder a user downloads
 *    (gpt2-small-res-jb); here a random SAE in the same layout and for the
 *    same hook (blocks.8.hook_resid_pre, context 128, prepend_bos) stands in
 *  - the IOI entry's figures average over params.patch_items items (16: the
 *    patching heatmaps of all 144 heads and path patching into the name
 *    movers); here 1, the least the param takes, so the same code runs at a
 *    sixteenth of the cost. Everything else the entry gates (the
 *    pre-registered circuit's faithfulness, completeness search, name movers)
 *    runs as in the profile, on the test's 12 prompts (below)
 *  - the edit entry's key second moment C: the profile samples 128 x 32
 *    tokens (GPT-2's d_mlp is 3,072: C needs more rows than that to be of full
 *    rank); the test's models have d_mlp 48 and 64, so EDIT_SEQUENCES x 32
 *    are enough, at a thirtieth of the sampling
 *  - a random model does not prefer IO, and the IOI task refuses a model
 *    whose F(M) <= 0 (faithfulness F(C)/F(M) is undefined); so the GPT-2
 *    checkpoint's last layer is set to a negative copy head (see plant_ioi)
 *  - each entry's items: the profiles' datasets (360 IOI prompts, 100
 *    induction sequences, 16 edit requests, 24 passages) on 12 layers of a
 *    50,257-token vocabulary cost minutes; the test rebuilds each from its own
 *    recipe in datasets/MANIFEST with fewer items (`mechbench datasets build`
 *    on a MANIFEST of its own: n_per_stratum SMALL_PER_STRATUM; for IOI one
 *    prompt per stratum of its first IOI_TEMPLATES templates; or the first
 *    SMALL_LINES lines of a source file), so every
 *    generator, every task and every metric of the profile runs, on the same
 *    kind of items
 * These changes are written into a copy of the suite in the test's folder
 * (under the build folder: a suite's dataset paths are relative to the
 * repository root); the profile files are read, never changed.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mechbench/npy.h>
#include <mechbench/safetensors.h>
#include <mechbench/sae.h>
#include <mechbench/sha256.h>

#include "support/cli_run.h"

#define PCTX 256
#define NL 12
#define MAXT (16 * NL + 8)
#define SMALL_PER_STRATUM 4
#define SMALL_LINES 3
#define IOI_TEMPLATES 6 /* of 18: t00 to t05, both orders, one prompt each */
#define EDIT_SEQUENCES 4 /* x corpus_len 32 = 128 key rows >= d_mlp (48, 64) */

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
	mb_st_entry e[MAXT];
	char names[MAXT][96];
	int n;
	uint64_t s;
} ck;

/* A tensor of `name`, shape (a) or (a, b), uniform in shift +- scale / 2. */
static float *put(ck *c, const char *name, int64_t a, int64_t b, float scale, float shift)
{
	mb_st_entry *e = &c->e[c->n];

	cr_assert_lt(c->n, MAXT);
	snprintf(c->names[c->n], 96, "%s", name);
	e->name = c->names[c->n];
	e->ndim = b ? 2 : 1;
	e->shape[0] = a;
	e->shape[1] = b;
	e->data = rnd((size_t)a * (size_t)(b ? b : 1), scale, shift, &c->s);
	c->n++;
	return (float *)e->data;
}

static void copy_file(const char *from, const char *to)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
	mbt_sh_ok(MB_SOURCE_DIR, cmd);
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
	/* GPT-2's own BPE (tests/fixtures/bpe/prepare_gpt2.py; the ids of
	 * datasets/ioi/gpt2.jsonl) */
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	copy_file("datasets/ioi/gpt2-tokenizer.json", path);
}

/*
 * The last layer as a negative copy head: queries and keys zero (every head
 * attends uniformly to the positions so far), values the identity on the
 * residual's LayerNorm, c_proj -6 I. At the last position the output is -6
 * times the mean of the prompt's normalised residuals; under the tied
 * unembedding a name's logit falls with the number of times it occurred, so
 * S (twice) falls below IO (once) and F(M) > 0, whatever the other layers'
 * random weights add (they are kept small).
 */
static void plant_ioi(float *c_attn, float *c_attn_b, float *c_proj, float *c_proj_b, int D)
{
	memset(c_attn, 0, sizeof(float) * (size_t)D * 3 * D);
	memset(c_attn_b, 0, sizeof(float) * 3 * (size_t)D);
	memset(c_proj, 0, sizeof(float) * (size_t)D * D);
	memset(c_proj_b, 0, sizeof(float) * (size_t)D);
	for (int i = 0; i < D; i++) {
		c_attn[(size_t)i * 3 * D + 2 * D + i] = 1.0f; /* Conv1D: (in, out) */
		c_proj[(size_t)i * D + i] = -20.0f;
	}
}

static void write_gpt2(const char *dir)
{
	enum { D = 96, M = 48, H = 12 };
	ck c = {.s = 11};
	char name[96], cfg[512];
	const int V = 50257;

	put(&c, "wte.weight", V, D, 0.2f, 0);
	put(&c, "wpe.weight", PCTX, D, 0.1f, 0);
	for (int l = 0; l < NL; l++) {
		float *w[4];
#define P2(suf, a, b, sc, sh)                                                   \
	(snprintf(name, sizeof(name), "h.%d.%s", l, suf), put(&c, name, a, b, sc, sh))
		P2("ln_1.weight", D, 0, 0.1f, 1.0f);
		P2("ln_1.bias", D, 0, 0.1f, 0);
		w[0] = P2("attn.c_attn.weight", D, 3 * D, 0.5f, 0);
		w[1] = P2("attn.c_attn.bias", 3 * D, 0, 0.1f, 0);
		w[2] = P2("attn.c_proj.weight", D, D, 0.05f, 0);
		w[3] = P2("attn.c_proj.bias", D, 0, 0.01f, 0);
		P2("ln_2.weight", D, 0, 0.1f, 1.0f);
		P2("ln_2.bias", D, 0, 0.1f, 0);
		P2("mlp.c_fc.weight", D, M, 0.3f, 0);
		P2("mlp.c_fc.bias", M, 0, 0.1f, 0);
		P2("mlp.c_proj.weight", M, D, 0.05f, 0);
		P2("mlp.c_proj.bias", D, 0, 0.01f, 0);
#undef P2
		if (l == 0)
			plant_ioi(w[0], w[1], w[2], w[3], D);
	}
	put(&c, "ln_f.weight", D, 0, 0.1f, 1.0f);
	put(&c, "ln_f.bias", D, 0, 0.1f, 0);
	snprintf(cfg, sizeof(cfg),
		 "{\"model_type\": \"gpt2\", \"vocab_size\": %d, \"n_positions\": %d, \"n_embd\": %d, "
		 "\"n_layer\": %d, \"n_head\": %d, \"n_inner\": %d, \"activation_function\": "
		 "\"gelu_new\", \"layer_norm_epsilon\": 1e-5, \"tie_word_embeddings\": true}\n",
		 V, PCTX, D, NL, H, M);
	finish(&c, dir, cfg);
}

static void write_neox(const char *dir)
{
	enum { D = 32, M = 64, H = 4 };
	ck c = {.s = 13};
	char name[96], cfg[768];
	const int V = 50304;

	put(&c, "gpt_neox.embed_in.weight", V, D, 0.2f, 0);
	for (int l = 0; l < NL; l++) {
#define PN(suf, a, b, sc, sh)                                                     \
	(snprintf(name, sizeof(name), "gpt_neox.layers.%d.%s", l, suf), put(&c, name, a, b, sc, sh))
		PN("input_layernorm.weight", D, 0, 0.1f, 1.0f);
		PN("input_layernorm.bias", D, 0, 0.1f, 0);
		PN("post_attention_layernorm.weight", D, 0, 0.1f, 1.0f);
		PN("post_attention_layernorm.bias", D, 0, 0.1f, 0);
		PN("attention.query_key_value.weight", 3 * D, D, 0.5f, 0);
		PN("attention.query_key_value.bias", 3 * D, 0, 0.1f, 0);
		PN("attention.dense.weight", D, D, 0.1f, 0);
		PN("attention.dense.bias", D, 0, 0.05f, 0);
		PN("mlp.dense_h_to_4h.weight", M, D, 0.3f, 0);
		PN("mlp.dense_h_to_4h.bias", M, 0, 0.1f, 0);
		PN("mlp.dense_4h_to_h.weight", D, M, 0.1f, 0);
		PN("mlp.dense_4h_to_h.bias", D, 0, 0.05f, 0);
#undef PN
	}
	put(&c, "gpt_neox.final_layer_norm.weight", D, 0, 0.1f, 1.0f);
	put(&c, "gpt_neox.final_layer_norm.bias", D, 0, 0.1f, 0);
	put(&c, "embed_out.weight", V, D, 0.2f, 0);
	snprintf(cfg, sizeof(cfg),
		 "{\"architectures\": [\"GPTNeoXForCausalLM\"], \"model_type\": \"gpt_neox\", "
		 "\"vocab_size\": %d, \"max_position_embeddings\": %d, \"hidden_size\": %d, "
		 "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"intermediate_size\": %d, "
		 "\"hidden_act\": \"gelu\", \"rotary_pct\": 0.25, \"rotary_emb_base\": 10000, "
		 "\"use_parallel_residual\": true, \"tie_word_embeddings\": false, "
		 "\"layer_norm_eps\": 1e-5, \"torch_dtype\": \"float16\"}\n",
		 V, PCTX, D, NL, H, M);
	finish(&c, dir, cfg);
}

/* A random ReLU SAE in SAELens layout at out, reading hook with the
 * metadata of gpt2-small-res-jb (context 128, prepend_bos). */
static void write_sae(const char *out, int d_in, const char *hook)
{
	mb_sae *s = NULL;
	mb_error err = {0};
	uint64_t seed = 17;
	float *p;

	cr_assert_eq(mb_sae_init(&s, MB_SAE_RELU, d_in, 4 * d_in, 0, &err), 0, "%s", err.msg);
	p = rnd(s->n_params, 0.5f, 0, &seed);
	memcpy(s->params, p, s->n_params * sizeof(float));
	free(p);
	snprintf(s->hook_name, sizeof(s->hook_name), "%s", hook);
	snprintf(s->model_name, sizeof(s->model_name), "gpt2-small");
	s->context_size = 128;
	s->prepend_bos = 1;
	cr_assert_eq(mb_sae_save(s, out, &err), 0, "%s", err.msg);
	mb_sae_free(s);
}

/* The first n lines of the file at from (relative to the repository root)
 * into to; its sha256 into hex. */
static void head_lines(char hex[MB_SHA256_HEX_LEN], const char *from, const char *to, int n)
{
	char path[1024], line[8192];
	size_t len = 0;
	char *buf = NULL;
	FILE *in, *out;

	snprintf(path, sizeof(path), "%s/%s", MB_SOURCE_DIR, from);
	in = fopen(path, "r");
	out = open_memstream(&buf, &len);
	cr_assert(in && out, "%s", path);
	for (int i = 0; i < n && fgets(line, sizeof(line), in); i++)
		fputs(line, out);
	fclose(in);
	fclose(out);
	mb_sha256_hex_buf(hex, buf, len);
	out = fopen(to, "w");
	cr_assert(out);
	fwrite(buf, 1, len, out);
	fclose(out);
	free(buf);
}

/* The MANIFEST line of dataset `path` ("datasets/ioi/gpt2.jsonl"): its task,
 * seed and params (owned). */
static json_t *recipe_of(const char *path, char *task, size_t cap, char *seed, size_t scap)
{
	char file[1024], line[8192], sha[80], p[512];
	FILE *f;
	json_t *params = NULL;

	snprintf(file, sizeof(file), "%s/datasets/MANIFEST", MB_SOURCE_DIR);
	f = fopen(file, "r");
	cr_assert(f);
	while (!params && fgets(line, sizeof(line), f)) {
		int at = 0;
		char t[64], sd[32];
		if (line[0] == '#' || sscanf(line, "%79s %511s %63s %31s %n", sha, p, t, sd, &at) != 4)
			continue;
		if (strcmp(p, path + strlen("datasets/")) != 0)
			continue;
		params = json_loads(line + at, JSON_DISABLE_EOF_CHECK, NULL);
		snprintf(task, cap, "%s", t);
		snprintf(seed, scap, "%s", sd);
	}
	fclose(f);
	cr_assert(params, "%s is not in datasets/MANIFEST", path);
	return params;
}

/*
 * The suite's copy for the test (see the top) at dir/suite.json: every
 * entry's dataset rebuilt smaller from its recipe under dir (rel: dir
 * relative to the repository root), every sae_text entry reading sae_dir,
 * every ioi entry's figures over one item.
 */
static void write_suite(const char *suite, const char *dir, const char *rel, const char *sae_dir)
{
	char from[512], path[1024], cmd[1536];
	json_error_t je;
	json_t *spec, *e;
	size_t i;
	FILE *man;

	snprintf(from, sizeof(from), "%s/benchmarks/%s", MB_SOURCE_DIR, suite);
	spec = json_load_file(from, 0, &je);
	cr_assert(spec, "%s: %s", from, je.text);
	snprintf(path, sizeof(path), "%s/MANIFEST", dir);
	man = fopen(path, "w");
	cr_assert(man);
	json_array_foreach(json_object_get(spec, "tasks"), i, e) {
		const char *task = json_string_value(json_object_get(e, "task"));
		json_t *params = json_object_get(e, "params");
		const char *ds = json_string_value(json_object_get(json_object_get(e, "dataset"), "path"));
		char rtask[64], seed[32], *text;
		json_t *gen = recipe_of(ds, rtask, sizeof(rtask), seed, sizeof(seed));

		if (json_object_get(gen, "n_per_stratum"))
			json_object_set_new(gen, "n_per_stratum",
					    json_integer(strcmp(task, "ioi") == 0 ? 1 : SMALL_PER_STRATUM));
		if (strcmp(task, "ioi") == 0) {
			json_t *t = json_array();
			for (int k = 0; k < IOI_TEMPLATES; k++) {
				char id[8];
				snprintf(id, sizeof(id), "t%02d", k);
				json_array_append_new(t, json_string(id));
			}
			json_object_set_new(gen, "templates", t);
		}
		if (json_object_get(gen, "source")) {
			char hex[MB_SHA256_HEX_LEN], to[1024], rto[1024];
			snprintf(to, sizeof(to), "%s/source-%zu.txt", dir, i);
			snprintf(rto, sizeof(rto), "%s/source-%zu.txt", rel, i);
			head_lines(hex, json_string_value(json_object_get(gen, "source")), to,
				   SMALL_LINES);
			json_object_set_new(gen, "source", json_string(rto));
			json_object_set_new(gen, "source_sha256", json_string(hex));
		}
		text = json_dumps(gen, JSON_COMPACT | JSON_SORT_KEYS);
		fprintf(man, "-  entry-%zu.jsonl  %s  %s  %s\n", i, rtask, seed, text);
		free(text);
		json_decref(gen);
		if (strcmp(task, "sae_text") == 0)
			json_object_set_new(params, "sae", json_string(sae_dir));
		if (strcmp(task, "ioi") == 0)
			json_object_set_new(params, "patch_items", json_integer(1));
		if (strcmp(task, "edit") == 0)
			json_object_set_new(params, "corpus_sequences", json_integer(EDIT_SEQUENCES));
	}
	fclose(man);
	snprintf(cmd, sizeof(cmd), MBT_CLI "datasets build --manifest %s/MANIFEST", rel);
	mbt_sh_ok(MB_SOURCE_DIR, cmd);
	/* the built sha256s, in entry order */
	man = fopen(path, "r");
	cr_assert(man);
	i = 0;
	for (char line[8192]; fgets(line, sizeof(line), man);) {
		char sha[80], p[512];
		json_t *d;
		if (line[0] == '#' || sscanf(line, "%79s %511s", sha, p) != 2)
			continue;
		d = json_object_get(json_array_get(json_object_get(spec, "tasks"), i++), "dataset");
		snprintf(path, sizeof(path), "%s/%s", rel, p);
		json_object_set_new(d, "path", json_string(path));
		json_object_set_new(d, "sha256", json_string(sha));
	}
	fclose(man);
	cr_assert_eq(i, json_array_size(json_object_get(spec, "tasks")));
	snprintf(path, sizeof(path), "%s/suite.json", dir);
	cr_assert_eq(json_dump_file(spec, path, JSON_INDENT(2)), 0);
	json_decref(spec);
}

/* Every metric every entry of the suite names is in the run's report with
 * a finite mean (the report writes null for one that is not). */
static void expect_every_metric(const char *suite, const char *run_json)
{
	json_error_t je;
	json_t *spec = json_load_file(suite, 0, &je), *run = json_load_file(run_json, 0, &je);
	json_t *e, *m;
	size_t i, j;

	cr_assert(spec && run, "%s / %s: %s", suite, run_json, je.text);
	json_array_foreach(json_object_get(spec, "tasks"), i, e) {
		const char *entry = json_string_value(json_object_get(e, "name"));
		json_t *got = NULL, *r;
		size_t k;
		json_array_foreach(json_object_get(run, "entries"), k, r)
			if (strcmp(json_string_value(json_object_get(r, "name")), entry) == 0)
				got = r;
		cr_expect(got, "entry %s is not in %s", entry, run_json);
		if (!got)
			continue;
		printf("entry %s: %lld items, %.2f s\n", entry,
		       (long long)json_integer_value(json_object_get(got, "n_items")),
		       json_number_value(json_object_get(got, "seconds")));
		json_array_foreach(json_object_get(e, "metrics"), j, m) {
			const char *ref = json_string_value(json_object_get(m, "metric"));
			const char *at = strchr(ref, '@');
			json_t *row, *found = NULL;
			size_t q;
			cr_assert(at, "%s", ref);
			json_array_foreach(json_object_get(got, "metrics"), q, row)
				if (strncmp(json_string_value(json_object_get(row, "name")), ref,
					    (size_t)(at - ref)) == 0 &&
				    json_string_value(json_object_get(row, "name"))[at - ref] == '\0' &&
				    json_integer_value(json_object_get(row, "version")) == atoi(at + 1))
					found = row;
			cr_expect(found && json_is_number(json_object_get(found, "mean")),
				  "entry %s: %s is not in the run, or its mean is not finite", entry, ref);
		}
	}
	json_decref(spec);
	json_decref(run);
}

static void run_profile(const char *suite, void (*write)(const char *), int d_model)
{
	const size_t root = strlen(MB_SOURCE_DIR);
	char dir[1024], model[1100], cmd[4096], sae[1100], json[1100], *out = NULL;
	int rc;

	/* under the build folder, which the suite's relative paths must reach */
	if (strncmp(MB_BINARY_DIR, MB_SOURCE_DIR, root) != 0 || MB_BINARY_DIR[root] != '/')
		cr_skip_test("the build folder %s is outside the repository %s: a suite's dataset "
			     "paths are relative to the repository root", MB_BINARY_DIR, MB_SOURCE_DIR);
	snprintf(dir, sizeof(dir), "%s/profile-XXXXXX", MB_BINARY_DIR);
	cr_assert(mkdtemp(dir));
	snprintf(model, sizeof(model), "%s/model", dir);
	cr_assert_eq(mkdir(model, 0755), 0);
	write(model);
	/* `cache --text` on the folder: its tokenizer.json, whatever the layout
	 * (8 GPT-2 tokens, test_bpe) */
	snprintf(cmd, sizeof(cmd),
		 MBT_CLI "cache --model %s --text 'When Mary and John went to the store' --hook "
			 "blocks.0.hook_resid_pre --out %s/cache",
		 model, dir);
	mbt_sh_ok(MB_SOURCE_DIR, cmd);
	{
		mb_npy a;
		mb_error err = {0};
		snprintf(cmd, sizeof(cmd), "%s/cache/logits.npy", dir);
		cr_assert_eq(mb_npy_read(&a, cmd, &err), 0, "%s", err.msg);
		cr_expect(a.ndim == 3 && a.shape[0] == 1 && a.shape[1] == 8 && a.shape[2] >= 50257,
			  "cache --text: logits of shape (%lld, %lld, %lld)", (long long)a.shape[0],
			  (long long)a.shape[1], (long long)a.shape[2]);
		mb_npy_dispose(&a);
	}
	snprintf(sae, sizeof(sae), "%s/sae", dir);
	write_sae(sae, d_model, "blocks.8.hook_resid_pre");
	write_suite(suite, dir, dir + root + 1, sae);
	snprintf(json, sizeof(json), "%s/r.json", dir);
	snprintf(cmd, sizeof(cmd),
		 MBT_CLI "run --suite %s/suite.json --model %s --db %s/r.db --json %s --threads 2 "
			 "--quiet",
		 dir, model, dir, json);
	rc = mbt_sh(MB_SOURCE_DIR, cmd, &out);
	printf("%s\n%s\n", cmd, out ? out : "");
	cr_expect_eq(rc, 0, "%s exited %d:\n%s", suite, rc, out ? out : "");
	if (rc == 0) {
		snprintf(cmd, sizeof(cmd), "%s/suite.json", dir);
		expect_every_metric(cmd, json);
	}
	free(out);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_expect_eq(mbt_sh("/", cmd, NULL), 0);
}

Test(profiles, gpt2_small_profile_runs_on_a_random_gpt2_checkpoint, .timeout = 900)
{
	run_profile("gpt2-small.json", write_gpt2, 96);
}

Test(profiles, pythia_160m_profile_runs_on_a_random_neox_checkpoint, .timeout = 900)
{
	run_profile("pythia-160m.json", write_neox, 32);
}
