/*
 * edit: `mechbench edit` on the random GPT-2 fixture with its WordLevel
 * tokenizer (tests/fixtures/engine/models/gpt2_ln_gelu): the edited
 * checkpoint loads, says the new object, carries a MANIFEST with the base
 * model's digests and the edits, is the same bits on 1 and 2 threads and
 * with statistics read back from --stats; a malformed edits file is one line
 * naming the file, the request and the field; an existing --out is refused.
 * MEMIT over layers 0-1 of tests/fixtures/edit/model3 changes exactly those
 * layers' c_proj, the same bits on 1 and 2 threads. `mechbench trace` writes
 * per-fact restorations and per-group effects with CIs, the same bits on 1
 * and 2 threads, and names a malformed fact's field.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mechbench/file.h>
#include <mechbench/json.h>
#include <mechbench/logits.h>
#include <mechbench/model.h>
#include <mechbench/sha256.h>

#include "support/cli_run.h"
#include "support/engine_fx.h"

#define MODEL FX_ENGINE_DIR "/models/gpt2_ln_gelu"
/* 3 layers (tests/fixtures/edit/gen_memit.py): MEMIT's z layer must not be the last */
#define MODEL3 MB_SOURCE_DIR "/tests/fixtures/edit/model3"

static void put_file(const char *path, const char *text)
{
	mb_error err = {0};
	cr_assert_eq(mb_file_write_all(path, text, strlen(text), &err), 0, "%s", err.msg);
}

/* 800 words of the fixture's vocabulary (a..z, aa..bg), a fixed LCG. */
static void write_corpus(const char *path)
{
	static char text[8192];
	size_t n = 0;
	unsigned x = 12345;

	for (int i = 0; i < 800; i++) {
		int v;
		x = x * 1103515245u + 12345u;
		v = 1 + (int)((x >> 16) % 59);
		if (v <= 26)
			n += (size_t)snprintf(text + n, sizeof(text) - n, "%c ", 'a' + v - 1);
		else
			n += (size_t)snprintf(text + n, sizeof(text) - n, "%c%c ", 'a' + (v - 27) / 26,
					      'a' + (v - 27) % 26);
	}
	put_file(path, text);
}

/* Each test has its own folder: Criterion runs them in parallel. */
static void setup_in(const char *dir)
{
	char cmd[512], path[512];

	snprintf(cmd, sizeof(cmd), "rm -rf %s && mkdir -p %s", dir, dir);
	cr_assert_eq(mbt_sh("/tmp", cmd, NULL), 0);
	snprintf(path, sizeof(path), "%s/corpus.txt", dir);
	write_corpus(path);
	snprintf(path, sizeof(path), "%s/edits.json", dir);
	put_file(path,
	      "[{\"subject\": \"c d\", \"prompt\": \"a b {}\", \"target_new\": \"z\",\n"
	      "  \"target_true\": \"y\"}]\n");
}

static void sha(char hex[MB_SHA256_HEX_LEN], const char *path)
{
	mb_error err = {0};
	cr_assert_eq(mb_sha256_hex_file(hex, path, &err), 0, "%s", err.msg);
}

#undef TMP
#define TMP "/tmp/mb-edit-cli-0"
static void setup_0(void)
{
	setup_in(TMP);
}

Test(edit, writes_an_edited_checkpoint_that_says_the_new_object, .init = setup_0)
{
	const char *a1[] = {"edit", "--model", MODEL, "--edits", TMP "/edits.json", "--layer", "0",
			    "--corpus", TMP "/corpus.txt", "--stats", TMP "/stats.safetensors",
			    "--prefix-lens", "3", "--prefixes", "2", "--prefix-sep", "",
			    "--threads", "1", "--out", TMP "/out1", NULL};
	const char *a2[] = {"edit", "--model", MODEL, "--edits", TMP "/edits.json", "--layer", "0",
			    "--stats", TMP "/stats.safetensors", "--prefix-lens", "3",
			    "--prefixes", "2", "--prefix-sep", "", "--threads", "2", "--out",
			    TMP "/out2", NULL};
	mbt_cli_result r;
	mb_model *m = NULL;
	mb_engine *e = NULL;
	mb_error err = {0};
	mb_engine_opts eo = {.max_batch = 1, .max_seq = 16};
	char h1[MB_SHA256_HEX_LEN], h2[MB_SHA256_HEX_LEN], hb[MB_SHA256_HEX_LEN];
	char *manifest = NULL;
	size_t len;
	const int32_t prompt[4] = {1, 2, 3, 4}; /* a b c d */

	mbt_cli_run(&r, a1);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_expect(strstr(r.out, "edit 0: \"c d\" -> \"z\": P(new)") != NULL, "%s", r.out);
	mbt_cli_run(&r, a2);
	cr_assert_eq(r.status, 0, "%s", r.err);

	/* the same bits on 1 and 2 threads, C computed or read back */
	sha(h1, TMP "/out1/model.safetensors");
	sha(h2, TMP "/out2/model.safetensors");
	sha(hb, MODEL "/model.safetensors");
	cr_expect_str_eq(h1, h2);
	cr_expect_str_neq(h1, hb);

	cr_assert_eq(mb_file_read_text(&manifest, &len, TMP "/out1/MANIFEST", &err), 0, "%s",
		     err.msg);
	cr_expect(strstr(manifest, hb) != NULL, "the MANIFEST names the base model's sha256");
	cr_expect(strstr(manifest, h1) != NULL, "and the edited model's");
	cr_expect(strstr(manifest, "\"target_new\": \"z\"") != NULL, "%s", manifest);
	cr_expect(strstr(manifest, "\"tokens\": 800") != NULL, "C over 50 windows of 16: %s",
		  manifest);
	free(manifest);

	/* efficacy: the edited model's top-1 after "a b c d" is z */
	cr_assert_eq(mb_model_load(&m, TMP "/out1", &err), 0, "%s", err.msg);
	cr_assert_eq(mb_engine_init(&e, &m->cfg, &m->w, &eo, &err), 0, "%s", err.msg);
	mb_run run = {.batch = 1, .seq = 4, .tokens = prompt, .logits = MB_LOGITS_LAST};
	cr_assert_eq(mb_engine_forward(e, &run, &err), 0, "%s", err.msg);
	cr_expect_eq(mb_logits_argmax(mb_engine_logits_row(e, 0, 0), m->cfg.n_vocab), 26);
	mb_engine_free(e);
	mb_model_free(m);

	/* --out must be new; nothing is left half-written */
	mbt_cli_run(&r, a2);
	cr_expect_eq(r.status, 1);
	cr_expect(strstr(r.err, "exists") != NULL, "%s", r.err);
	cr_expect_eq(mbt_count_lines(r.err), 1);
	cr_expect_neq(mbt_sh(TMP, "ls | grep -q tmp", NULL), 0, "no temporary folder left");
}

/* A malformed edits file: one line naming the file, position and field. */
static const struct {
	const char *json, *want;
} bad[] = {
	{"{}", "edits.json:1:1: (root): must be a non-empty array"},
	{"[{\"prompt\": \"a {}\", \"target_new\": \"z\"}]", "[0].subject: required field is missing"},
	{"[{\"subject\": \"c\", \"prompt\": \"a b\", \"target_new\": \"z\"}]",
	 "[0].prompt: must contain {} (the subject) exactly once"},
	{"[{\"subject\": \"c\", \"prompt\": \"a {}\", \"target_new\": \"\"}]",
	 "[0].target_new: must not be empty"},
	{"[{\"subject\": \"c\", \"prompt\": \"a {}\", \"target_new\": \"z\", \"tagret\": 1}]",
	 "tagret"},
	{"[{\"subject\": \"c\", \"prompt\": \"a {}\", \"target_new\": 3}]", "[0].target_new"},
	{"[{\"subject\": \"c\", \"prompt\": \"a {}\", \"target_new\": \"z\", "
	 "\"kl_prompt\": \"{} {}\"}]", "[0].kl_prompt: must contain {}"},
};

#undef TMP
#define TMP "/tmp/mb-edit-cli-1"
static void setup_1(void)
{
	setup_in(TMP);
}

Test(edit, a_malformed_request_is_one_line_naming_its_field, .init = setup_1)
{
	const char *args[] = {"edit", "--model", MODEL, "--edits", TMP "/edits.json", "--layer", "0",
			      "--corpus", TMP "/corpus.txt", "--out", TMP "/bad", NULL};
	mbt_cli_result r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		put_file(TMP "/edits.json", bad[i].json);
		mbt_cli_run(&r, args);
		cr_expect_eq(r.status, 1, "case %zu: status %d", i, r.status);
		cr_expect(strstr(r.err, bad[i].want) != NULL, "case %zu: %s", i, r.err);
		cr_expect_eq(mbt_count_lines(r.err), 1, "case %zu: %s", i, r.err);
		cr_expect(access(TMP "/bad", F_OK) != 0, "case %zu wrote --out", i);
	}
}

#undef TMP
#define TMP "/tmp/mb-edit-cli-2"
static void setup_2(void)
{
	setup_in(TMP);
}

Test(edit, trace_writes_effects_with_cis_and_the_same_bits_on_1_and_2_threads, .init = setup_2)
{
	const char *a1[] = {"trace", "--model", MODEL, "--facts", TMP "/facts.json", "--samples", "3",
			    "--window", "2", "--threads", "1", "--out", TMP "/t1.json", NULL};
	const char *a2[] = {"trace", "--model", MODEL, "--facts", TMP "/facts.json", "--samples", "3",
			    "--window", "2", "--threads", "2", "--out", TMP "/t2.json", NULL};
	const char *bad[] = {"trace", "--model", MODEL, "--facts", TMP "/bad.json", "--out",
			     TMP "/t3.json", NULL};
	mbt_cli_result r;
	char h1[MB_SHA256_HEX_LEN], h2[MB_SHA256_HEX_LEN];
	mb_json_doc doc = {0};
	mb_error err = {0};
	json_t *aie, *row;

	put_file(TMP "/facts.json",
	      "[{\"subject\": \"c d\", \"prompt\": \"a b {} e\", \"target\": \"z\"},\n"
	      " {\"subject\": \"f\", \"prompt\": \"g {} h i\"},\n"
	      " {\"subject\": \"j k\", \"prompt\": \"{} l m\"}]\n");
	mbt_cli_run(&r, a1);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_expect(strstr(r.out, "decisive layer") != NULL, "%s", r.out);
	mbt_cli_run(&r, a2);
	cr_assert_eq(r.status, 0, "%s", r.err);
	sha(h1, TMP "/t1.json");
	sha(h2, TMP "/t2.json");
	cr_expect_str_eq(h1, h2);

	cr_assert_eq(mb_json_doc_load(&doc, TMP "/t1.json", &err), 0, "%s", err.msg);
	cr_expect_eq(json_array_size(json_object_get(doc.root, "items")), 3);
	aie = json_object_get(json_object_get(doc.root, "aie"), "mlp");
	cr_assert_eq(json_array_size(aie), 2, "one row per layer");
	row = json_array_get(json_array_get(aie, 0), 2); /* layer 0, last subject token */
	cr_expect_eq(json_integer_value(json_object_get(row, "n")), 3);
	cr_expect(json_real_value(json_object_get(row, "lo")) <=
		  json_real_value(json_object_get(row, "mean")));
	cr_expect(json_real_value(json_object_get(row, "mean")) <=
		  json_real_value(json_object_get(row, "hi")));
	/* one-token subjects have no middle token: NaN is null, n counts the rest */
	row = json_array_get(json_array_get(aie, 0), 1);
	cr_expect_eq(json_integer_value(json_object_get(row, "n")), 0);
	cr_expect(json_is_null(json_object_get(row, "mean")));
	cr_expect(json_integer_value(json_object_get(json_object_get(doc.root, "decisive_layer"),
						     "mlp")) >= 0);
	mb_json_doc_dispose(&doc);

	put_file(TMP "/bad.json", "[{\"subject\": \"c\", \"prompt\": \"a {}\"}, {\"subject\": \"c\"}]");
	mbt_cli_run(&r, bad);
	cr_expect_eq(r.status, 1);
	cr_expect(strstr(r.err, "bad.json:1:") != NULL && strstr(r.err, "[1].prompt") != NULL,
		  "%s", r.err);
	cr_expect_eq(mbt_count_lines(r.err), 1);
}

#undef TMP
#define TMP "/tmp/mb-edit-cli-3"
static void setup_3(void)
{
	setup_in(TMP);
}

Test(edit, memit_edits_a_range_of_layers_at_once_the_same_on_1_and_2_threads, .init = setup_3)
{
	const char *args[] = {"edit", "--model", MODEL3, "--edits", TMP "/edits2.json", "--method",
			      "memit", "--layers", "0,1", "--mom2-weight", "10", "--corpus",
			      TMP "/corpus.txt", "--stats", TMP "/stats2.safetensors",
			      "--prefix-lens", "3", "--prefixes", "2", "--prefix-sep", "", "--threads",
			      "1", "--out", TMP "/memit", NULL};
	const char *args2[] = {"edit", "--model", MODEL3, "--edits", TMP "/edits2.json", "--method",
			       "memit", "--layers", "0,1", "--mom2-weight", "10", "--stats",
			       TMP "/stats2.safetensors", "--prefix-lens", "3", "--prefixes", "2",
			       "--prefix-sep", "", "--threads", "2", "--out", TMP "/memit2", NULL};
	char h1[MB_SHA256_HEX_LEN], h2[MB_SHA256_HEX_LEN];
	const char *rome2[] = {"edit", "--model", MODEL3, "--edits", TMP "/edits2.json", "--layers",
			       "0,1", "--corpus", TMP "/corpus.txt", "--out", TMP "/x", NULL};
	mbt_cli_result r;
	mb_model *base = NULL, *m = NULL;
	mb_error err = {0};
	const size_t MD = 64 * 32;
	int differ[2] = {0, 0};

	put_file(TMP "/edits2.json",
	      "[{\"subject\": \"c d\", \"prompt\": \"a b {}\", \"target_new\": \"z\"},\n"
	      " {\"subject\": \"f\", \"prompt\": \"g {} h\", \"target_new\": \"ba\"}]\n");
	mbt_cli_run(&r, args);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_expect(strstr(r.out, "edit 1: \"f\" -> \"ba\"") != NULL, "%s", r.out);
	mbt_cli_run(&r, args2);
	cr_assert_eq(r.status, 0, "%s", r.err);
	sha(h1, TMP "/memit/model.safetensors");
	sha(h2, TMP "/memit2/model.safetensors");
	cr_expect_str_eq(h1, h2, "the same bits on 1 and 2 threads");
	cr_assert_eq(mb_model_load(&base, MODEL3, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_model_load(&m, TMP "/memit", &err), 0, "%s", err.msg);
	for (int l = 0; l < 2; l++)
		for (size_t i = 0; i < MD; i++)
			differ[l] |= base->w.proj_w[l * MD + i] != m->w.proj_w[l * MD + i];
	cr_expect(differ[0] && differ[1], "both layers' c_proj changed");
	cr_expect_eq(memcmp(base->w.proj_w + 2 * MD, m->w.proj_w + 2 * MD, sizeof(float) * MD), 0,
		     "layer 2's did not");
	cr_expect_eq(memcmp(base->w.fc_w, m->w.fc_w, sizeof(float) * MD * 3), 0, "nothing else");
	mb_model_free(base);
	mb_model_free(m);

	mbt_cli_run(&r, rome2);
	cr_expect_eq(r.status, 1);
	cr_expect(strstr(r.err, "rome edits one layer") != NULL, "%s", r.err);
}
