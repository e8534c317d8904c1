/*
 * weights_published: weights as Hugging Face publishes them. Half precision
 * (F16, BF16) converted to float32 at load, bit for bit as numpy (half) and
 * torch (bfloat16) convert every 16-bit pattern (tests/fixtures/neox/
 * half_table.json); a NeoX checkpoint in F16 shards and in BF16 gives the
 * logits torch computes from the same converted weights; sharded checkpoints
 * (model.safetensors.index.json) load the same parameters as one file, and
 * every inconsistency between the index and the shards is one clear error.
 *
 * Shape letters: V vocab, P positions, D d_model, M d_mlp.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include <mechbench/dtype.h>
#include <mechbench/json.h>
#include <mechbench/model.h>
#include <mechbench/sha256.h>

#include "support/engine_fx.h"

/* Half conversions ---------------------------------------------------------- */

static void table_sha(char hex[MB_SHA256_HEX_LEN], int bf16, int *nans)
{
	uint32_t *u = malloc(65536 * sizeof(uint32_t));

	*nans = 0;
	for (uint32_t h = 0; h < 65536; h++) {
		float f = bf16 ? mb_bf16_to_f32((uint16_t)h) : mb_f16_to_f32((uint16_t)h);

		if (isnan(f)) {
			u[h] = 0x7fc00000u;
			(*nans)++;
		} else {
			memcpy(&u[h], &f, sizeof(f));
		}
	}
	mb_sha256_hex_buf(hex, u, 65536 * sizeof(uint32_t));
	free(u);
}

Test(weights_published, every_half_and_bfloat16_pattern_converts_as_numpy_and_torch_do)
{
	mb_json_doc doc;
	mb_error err = {0};
	char hex[MB_SHA256_HEX_LEN];
	int nans;
	json_t *cases;
	size_t i;
	json_t *c;

	cr_assert_eq(mb_json_doc_load(&doc, FX_NEOX_DIR "/half_table.json", &err), 0, "%s", err.msg);
	table_sha(hex, 0, &nans);
	printf("f16: %s, %d NaNs\n", hex, nans);
	cr_expect_str_eq(hex, json_string_value(json_object_get(doc.root, "f16_sha256")));
	cr_expect_eq(nans, json_integer_value(json_object_get(doc.root, "f16_nan_count")));
	table_sha(hex, 1, &nans);
	printf("bf16: %s, %d NaNs\n", hex, nans);
	cr_expect_str_eq(hex, json_string_value(json_object_get(doc.root, "bf16_sha256")));
	cr_expect_eq(nans, json_integer_value(json_object_get(doc.root, "bf16_nan_count")));
	cases = json_object_get(doc.root, "cases");
	cr_assert(json_array_size(cases) >= 10);
	json_array_foreach(cases, i, c) {
		uint16_t h = (uint16_t)json_integer_value(json_object_get(c, "bits"));
		float a = mb_f16_to_f32(h), b = mb_bf16_to_f32(h);
		uint32_t ua, ub;

		memcpy(&ua, &a, 4);
		memcpy(&ub, &b, 4);
		if (!isnan(a))
			cr_expect_eq(ua, (uint32_t)json_integer_value(json_object_get(c, "f16")),
				     "f16 0x%04x", h);
		if (!isnan(b))
			cr_expect_eq(ub, (uint32_t)json_integer_value(json_object_get(c, "bf16")),
				     "bf16 0x%04x", h);
	}
	/* subnormals and infinities named explicitly */
	cr_expect_eq(mb_f16_to_f32(0x0001), ldexpf(1.0f, -24));
	cr_expect_eq(mb_f16_to_f32(0x03ff), ldexpf(1023.0f, -24));
	cr_expect(isinf(mb_f16_to_f32(0x7c00)) && mb_f16_to_f32(0xfc00) < 0);
	cr_expect(isnan(mb_f16_to_f32(0x7e00)) && isnan(mb_bf16_to_f32(0x7fc0)));
	mb_json_doc_dispose(&doc);
}

/* A half-precision checkpoint whose tensor holds the 16-bit pattern bad at
 * index 3 must be refused naming the tensor (non-finite weights). */
static void write_half_st(const char *path, const char *dtype, uint16_t bad)
{
	char hdr[256];
	uint16_t v[8] = {0x3c00, 0x0001, 0x8001, bad, 0x3555, 0, 0, 0};
	FILE *f = fopen(path, "wb");
	uint64_t n;

	snprintf(hdr, sizeof(hdr), "{\"x\":{\"dtype\":\"%s\",\"shape\":[8],\"data_offsets\":[0,16]}}",
		 dtype);
	n = strlen(hdr);
	cr_assert(f);
	fwrite(&n, 8, 1, f);
	fwrite(hdr, 1, n, f);
	fwrite(v, 2, 8, f);
	fclose(f);
}

Test(weights_published, half_precision_nan_and_inf_weights_are_errors_naming_the_tensor)
{
	static const struct {
		const char *dtype;
		uint16_t bits;
		const char *what;
	} cases[] = {{"F16", 0x7e00, "NaN"},  {"F16", 0x7c00, "+Inf"}, {"F16", 0xfc00, "-Inf"},
		     {"BF16", 0x7fc0, "NaN"}, {"BF16", 0x7f80, "+Inf"}, {"BF16", 0xff80, "-Inf"}};
	char path[64];

	snprintf(path, sizeof(path), "/tmp/mb-half-%d.safetensors", (int)getpid());
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mb_safetensors *st;
		mb_error err = {0};
		float out[8];

		write_half_st(path, cases[i].dtype, cases[i].bits);
		cr_assert_eq(mb_safetensors_open(&st, path, &err), 0, "%s", err.msg);
		cr_expect_lt(mb_safetensors_read_f32(st, mb_safetensors_at(st, 0), out, 1, &err), 0);
		cr_expect(strstr(err.msg, "'x'") && strstr(err.msg, "element 3") &&
				  strstr(err.msg, cases[i].what),
			  "%s: %s", cases[i].dtype, err.msg);
		mb_error_clear(&err);
		/* without the check the value converts, subnormals exactly */
		cr_expect_eq(mb_safetensors_read_f32(st, mb_safetensors_at(st, 0), out, 0, &err), 0);
		cr_expect_eq(out[0], strcmp(cases[i].dtype, "F16") == 0 ? 1.0f : 0.0078125f);
		if (strcmp(cases[i].dtype, "F16") == 0)
			cr_expect_eq(out[2], -ldexpf(1.0f, -24));
		mb_safetensors_free(st);
	}
	unlink(path);
}

/* The NeoX fixture published as F16 shards and as BF16 ------------------- */

static void half_model_logits(const char *name)
{
	mb_model *m = fx_model(name);
	int32_t *tok, *len;
	int B, T;
	mb_engine *e;
	mb_error err = {0};
	mb_npy want;
	char rel[256];
	double mx;
	float *got;

	fx_batch(name, "batch1", &tok, &len, &B, &T);
	e = fx_engine(m, B, T, 0);
	mb_run r = fx_run(tok, len, B, T);
	cr_assert_eq(mb_engine_forward(e, &r, &err), 0, "%s", err.msg);
	got = malloc(sizeof(float) * (size_t)B * T * m->cfg.n_vocab);
	mb_engine_logits_copy(e, got);
	snprintf(rel, sizeof(rel), "%s/batch1/logits.npy", name);
	fx_npy(&want, rel);
	cr_expect_eq(fx_compare(name, got, &want, len, 0, 1e-4, 1e-4, &mx), 0);
	mb_npy_dispose(&want);
	free(got);
	mb_engine_free(e);
	mb_model_free(m);
	free(tok);
	free(len);
}

Test(weights_published, an_f16_sharded_neox_checkpoint_gives_torchs_logits)
{
	half_model_logits("neox_par_f16_sharded");
}

Test(weights_published, a_bf16_neox_checkpoint_gives_torchs_logits)
{
	half_model_logits("neox_par_bf16");
}

/* Sharded GPT-2 checkpoints written here ------------------------------------ */

#define V 5
#define P 4
#define D 8
#define M 16
#define NT 16

static const char *const names[NT] = {
	"wte.weight",	      "wpe.weight",	       "h.0.ln_1.weight",   "h.0.ln_1.bias",
	"h.0.attn.c_attn.weight", "h.0.attn.c_attn.bias", "h.0.attn.c_proj.weight",
	"h.0.attn.c_proj.bias",   "h.0.ln_2.weight",	   "h.0.ln_2.bias",	"h.0.mlp.c_fc.weight",
	"h.0.mlp.c_fc.bias",	  "h.0.mlp.c_proj.weight", "h.0.mlp.c_proj.bias", "ln_f.weight",
	"ln_f.bias"};
static const int64_t shapes[NT][2] = {{V, D}, {P, D}, {D, 0}, {D, 0}, {D, 3 * D}, {3 * D, 0},
				      {D, D}, {D, 0}, {D, 0}, {D, 0}, {D, M}, {M, 0},
				      {M, D}, {D, 0}, {D, 0}, {D, 0}};

static char dir[64];
static float *data[NT];

/* Writes config.json, model.safetensors (all tensors) and two shards: shard
 * a holds the even tensors, shard b the odd ones, plus tensor extra_b (-1:
 * none) again. The index maps per map_to (NULL: the truth) and lists every
 * tensor but skip (-1: none). */
static void write_sharded(int extra_b, const char *const *map_to, int skip, const char *extra_json)
{
	char path[256];
	mb_st_entry all[NT], a[NT], b[NT + 1];
	size_t na = 0, nb = 0;
	mb_error err = {0};
	FILE *f;

	snprintf(dir, sizeof(dir), "/tmp/mb-shards-XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/config.json", dir);
	f = fopen(path, "w");
	fprintf(f, "{\"vocab_size\": %d, \"n_positions\": %d, \"n_embd\": %d, \"n_layer\": 1, "
		   "\"n_head\": 2, \"n_inner\": %d}\n",
		V, P, D, M);
	fclose(f);
	for (int i = 0; i < NT; i++) {
		size_t n = (size_t)shapes[i][0] * (size_t)(shapes[i][1] ? shapes[i][1] : 1);

		if (!data[i]) {
			data[i] = malloc(n * sizeof(float));
			for (size_t k = 0; k < n; k++)
				data[i][k] = (float)((k * 5 + (size_t)i) % 11) / 11.0f - 0.5f;
		}
		all[i] = (mb_st_entry){names[i], shapes[i][1] ? 2 : 1, {shapes[i][0], shapes[i][1]},
				       data[i]};
		if (i % 2 == 0)
			a[na++] = all[i];
		else
			b[nb++] = all[i];
	}
	if (extra_b >= 0)
		b[nb++] = all[extra_b];
	snprintf(path, sizeof(path), "%s/whole.safetensors", dir);
	cr_assert_eq(mb_safetensors_write_f32(path, all, NT, NULL, &err), 0, "%s", err.msg);
	snprintf(path, sizeof(path), "%s/model-a.safetensors", dir);
	cr_assert_eq(mb_safetensors_write_f32(path, a, na, NULL, &err), 0, "%s", err.msg);
	snprintf(path, sizeof(path), "%s/model-b.safetensors", dir);
	cr_assert_eq(mb_safetensors_write_f32(path, b, nb, NULL, &err), 0, "%s", err.msg);
	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
	f = fopen(path, "w");
	fprintf(f, "{\"metadata\": {\"total_size\": 1}%s, \"weight_map\": {", extra_json ? extra_json : "");
	for (int i = 0, first = 1; i < NT; i++) {
		if (i == skip)
			continue;
		fprintf(f, "%s\"%s\": \"%s\"", first ? "" : ", ", names[i],
			map_to && map_to[i] ? map_to[i] : i % 2 == 0 ? "model-a.safetensors"
								    : "model-b.safetensors");
		first = 0;
	}
	fprintf(f, "}}\n");
	fclose(f);
}

static void remove_dir(void)
{
	static const char *const files[] = {"config.json", "whole.safetensors", "model-a.safetensors",
					    "model-b.safetensors", "model.safetensors.index.json",
					    "model.safetensors"};
	char path[256];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
}

static void expect_load_error(const char *what)
{
	mb_model *m = NULL;
	mb_error err = {0};

	cr_expect_lt(mb_model_load(&m, dir, &err), 0, "accepted (expected: %s)", what);
	cr_expect(strstr(err.msg, what) != NULL, "message \"%s\" lacks \"%s\"", err.msg, what);
	cr_expect(strchr(err.msg, '\n') == NULL);
	printf("%s\n", err.msg);
	mb_model_free(m);
	remove_dir();
}

Test(weights_published, two_shards_load_the_same_parameters_as_one_file)
{
	mb_model *m = NULL;
	mb_error err = {0};
	mb_safetensors *st;
	mb_engine_weights w;
	float *params;
	size_t n;
	char path[256];

	write_sharded(-1, NULL, -1, NULL);
	cr_assert_eq(mb_model_load(&m, dir, &err), 0, "%s", err.msg);
	snprintf(path, sizeof(path), "%s/whole.safetensors", dir);
	cr_assert_eq(mb_safetensors_open(&st, path, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_model_weights_load(&w, &params, &n, &m->cfg, st, &err), 0, "%s", err.msg);
	cr_assert_eq(n, m->n_params);
	cr_expect_eq(memcmp(params, m->params, n * sizeof(float)), 0);
	free(params);
	mb_safetensors_free(st);
	mb_model_free(m);
	remove_dir();
}

Test(weights_published, an_index_naming_a_missing_shard_is_an_error)
{
	const char *map[NT] = {0};

	map[3] = "model-c.safetensors";
	write_sharded(-1, map, -1, NULL);
	expect_load_error("tensor h.0.ln_1.bias: shard");
}

Test(weights_published, a_tensor_absent_from_its_shard_is_an_error)
{
	const char *map[NT] = {0};

	map[2] = "model-b.safetensors"; /* h.0.ln_1.weight is in shard a */
	write_sharded(-1, map, -1, NULL);
	expect_load_error("tensor h.0.ln_1.weight: not in its shard");
}

Test(weights_published, a_tensor_in_two_shards_is_an_error)
{
	write_sharded(0, NULL, -1, NULL); /* wte.weight also in shard b */
	expect_load_error("wte.weight: ");
}

Test(weights_published, a_shard_tensor_the_index_does_not_list_is_an_error)
{
	write_sharded(-1, NULL, 5, NULL);
	expect_load_error("h.0.attn.c_attn.bias: not listed");
}

Test(weights_published, a_model_file_next_to_an_index_wins)
{
	mb_model *m = NULL;
	mb_error err = {0};
	char a[256], b[256];
	const char *map[NT] = {0};

	map[3] = "model-c.safetensors"; /* a broken index: ignored */
	write_sharded(-1, map, -1, NULL);
	snprintf(a, sizeof(a), "%s/whole.safetensors", dir);
	snprintf(b, sizeof(b), "%s/model.safetensors", dir);
	cr_assert_eq(rename(a, b), 0);
	cr_expect_eq(mb_model_load(&m, dir, &err), 0, "%s", err.msg);
	mb_model_free(m);
	remove_dir();
}

/* Malformed index files: one clear error each (fuzz/corpus/index holds these). */
Test(weights_published, malformed_index_files_are_one_clear_error)
{
	static const struct {
		const char *text, *what;
	} cases[] = {
		{"[]", "expected a JSON object"},
		{"{\"metadata\": {}}", "weight_map: missing"},
		{"{\"weight_map\": []}", "weight_map: expected an object"},
		{"{\"weight_map\": {}}", "weight_map: is empty"},
		{"{\"weight_map\": {\"a\": 3}}", "expected a shard file name"},
		{"{\"weight_map\": {\"a\": \"../x.safetensors\"}}", "not a plain file name"},
		{"{\"weight_map\": {\"a\": \"sub/x.safetensors\"}}", "not a plain file name"},
		{"{\"weight_map\": {\"a\": \"\"}}", "not a plain file name"},
		{"{\"weight_map\": {\"a\": \"x\"}, \"extra\": 1}", "unknown field"},
		{"{\"metadata\": 3, \"weight_map\": {\"a\": \"x\"}}", "metadata: expected an object"},
		{"{\"weight_map\": {\"a\": \"x\"", "index.json"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mb_model_index ix;
		mb_error err = {0};
		int rc = mb_model_index_parse(&ix, cases[i].text, strlen(cases[i].text), "index.json",
					      &err);

		cr_expect_lt(rc, 0, "case %zu accepted", i);
		cr_expect(strstr(err.msg, cases[i].what) != NULL, "case %zu: \"%s\" lacks \"%s\"", i,
			  err.msg, cases[i].what);
		cr_expect(strncmp(err.msg, "index.json", 10) == 0, "case %zu: %s", i, err.msg);
		cr_expect(strchr(err.msg, '\n') == NULL);
	}
	{
		const char *ok = "{\"metadata\": {\"total_size\": 8}, \"weight_map\": {\"b\": \"2.st\", "
				 "\"a\": \"1.st\", \"c\": \"2.st\"}}";
		mb_model_index ix;
		mb_error err = {0};

		cr_assert_eq(mb_model_index_parse(&ix, ok, strlen(ok), "index.json", &err), 0, "%s",
			     err.msg);
		cr_expect_eq(ix.n, 3);
		cr_expect_eq(ix.n_files, 2);
		cr_expect_str_eq(ix.tensor[0], "a");
		cr_expect_str_eq(ix.files[ix.file_of[2]], "2.st");
		mb_model_index_dispose(&ix);
	}
}

/* fuzz/corpus/index (fuzz/make_corpus.py): valid_ files parse, bad_ ones are
 * one line naming the file. */
Test(weights_published, the_index_fuzz_corpus_seeds_parse_or_fail_as_named)
{
	DIR *d = opendir(MB_SOURCE_DIR "/fuzz/corpus/index");
	struct dirent *de;
	int valid = 0, bad = 0;

	cr_assert_not_null(d, "fuzz/corpus/index is missing: run fuzz/make_corpus.py");
	while ((de = readdir(d))) {
		char path[512], *buf;
		FILE *f;
		long n;
		mb_model_index ix;
		mb_error err = {0};
		int is_valid = strncmp(de->d_name, "valid_", 6) == 0, rc;

		if (!is_valid && strncmp(de->d_name, "bad_", 4) != 0)
			continue;
		snprintf(path, sizeof(path), MB_SOURCE_DIR "/fuzz/corpus/index/%s", de->d_name);
		f = fopen(path, "rb");
		cr_assert(f);
		fseek(f, 0, SEEK_END);
		n = ftell(f);
		fseek(f, 0, SEEK_SET);
		buf = malloc((size_t)n + 1);
		cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
		fclose(f);
		rc = mb_model_index_parse(&ix, buf, (size_t)n, de->d_name, &err);
		if (is_valid) {
			cr_expect_eq(rc, 0, "%s: %s", de->d_name, err.msg);
			if (rc == 0)
				mb_model_index_dispose(&ix);
			valid++;
		} else {
			cr_expect_lt(rc, 0, "%s accepted", de->d_name);
			cr_expect(strncmp(err.msg, de->d_name, strlen(de->d_name)) == 0 &&
					  !strchr(err.msg, '\n'),
				  "%s: %s", de->d_name, err.msg);
			bad++;
		}
		free(buf);
	}
	closedir(d);
	cr_expect_geq(valid, 2);
	cr_expect_geq(bad, 10);
}
