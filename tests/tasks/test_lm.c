/*
 * lm task (src/tasks/lm.c) on the committed zoo facts model (a 4-layer
 * GPT-2 of d 64, read, never trained here):
 *  - lm.loss and lm.top1 against PyTorch (tests/fixtures/lm/gen_lm.py:
 *    its own GPT-2 forward, the metrics written from their definitions in
 *    float64), items with and without a BOS, all in one batch;
 *  - an item's values do not depend on the batch it runs in (bits), and
 *    max_tokens scores an item's first tokens;
 *  - generate: the facts texts are the three strata, in the model's
 *    vocabulary, deterministic; a source file gives one item per line and
 *    its sha256 is checked;
 *  - bad params, items and sources are one line naming the field or item.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/file.h>
#include <mechbench/sha256.h>
#include <mechbench/task.h>

#include "support/harness_support.h"

#define FACTS MB_SOURCE_DIR "/baselines/models/facts"
#define FIXTURE MB_SOURCE_DIR "/tests/fixtures/lm/facts.json"

/* Opens lm on the facts model with params (JSON text or NULL) and runs
 * items[0..n) in one call; values (n, 2). */
static int run_lm(double *v, const mb_item *items, size_t n, const char *params, mb_error *err)
{
	const mb_task *t = mb_task_find("lm");
	json_t *p = params ? mbt_json(params) : NULL;
	void *st = NULL;
	int rc;

	cr_assert(t);
	rc = t->open(&st, FACTS, p, err);
	if (rc == 0)
		rc = mb_task_run(t, st, items, n, v, err);
	t->close(st);
	json_decref(p);
	return rc;
}

static void add_text(mb_item_list *l, const char *stratum, const char *text)
{
	mb_error err = {0};
	char cluster[32];

	snprintf(cluster, sizeof(cluster), "c%zu", l->n);
	cr_assert_eq(mb_item_list_add(l, stratum, cluster, json_pack("{s:s}", "text", text), &err),
		     0, "%s", err.msg);
}

Test(lm, loss_and_top1_match_pytorch_with_and_without_a_bos)
{
	json_error_t je;
	json_t *fx = json_load_file(FIXTURE, 0, &je), *arr;
	mb_item_list bos = {0}, nobos = {0};
	double v[32][2], w[8][2], max_loss = 0, max_top1 = 0;
	mb_error err = {0};
	size_t i, nb = 0, nn = 0;

	omp_set_num_threads(1);
	cr_assert(fx, "%s: %s", FIXTURE, je.text);
	arr = json_object_get(fx, "items");
	cr_assert(json_array_size(arr) >= 8 && json_array_size(arr) <= 32);
	for (i = 0; i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		add_text(json_is_true(json_object_get(o, "bos")) ? &bos : &nobos, "s",
			 json_string_value(json_object_get(o, "text")));
	}
	cr_assert_eq(run_lm(&v[0][0], bos.items, bos.n, "{\"bos\": \"<bos>\"}", &err), 0, "%s",
		     err.msg);
	/* The facts tokenizer has no <|endoftext|>: by default no BOS. */
	cr_assert_eq(run_lm(&w[0][0], nobos.items, nobos.n, NULL, &err), 0, "%s", err.msg);
	cr_assert(nobos.n >= 1);
	for (i = 0; i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		const double *got = json_is_true(json_object_get(o, "bos")) ? v[nb++] : w[nn++];
		double dl = fabs(got[0] - json_real_value(json_object_get(o, "loss")));
		double dt = fabs(got[1] - json_real_value(json_object_get(o, "top1")));
		max_loss = fmax(max_loss, dl);
		max_top1 = fmax(max_top1, dt);
		cr_expect(dl < 1e-4, "item %zu: loss %.9g, PyTorch %.9g", i, got[0],
			  json_real_value(json_object_get(o, "loss")));
		cr_expect(dt == 0, "item %zu: top1 %.9g, PyTorch %.9g", i, got[1],
			  json_real_value(json_object_get(o, "top1")));
	}
	printf("lm vs PyTorch, %zu items: max |loss diff| %.3g, max |top1 diff| %.3g\n", i,
	       max_loss, max_top1);
	mb_item_list_dispose(&bos);
	mb_item_list_dispose(&nobos);
	json_decref(fx);
}

Test(lm, an_items_values_do_not_depend_on_its_batch)
{
	mb_item_list l = {0};
	double all[3][2], one[2];
	mb_error err = {0};

	add_text(&l, "s", "Ka Lo lives in Paris .");
	add_text(&l, "s", "the big market was near the book . then Mi Ka gave Sa Ri a park .");
	add_text(&l, "s", "Lo Ka plays");
	cr_assert_eq(run_lm(&all[0][0], l.items, 3, "{\"bos\": \"<bos>\"}", &err), 0, "%s",
		     err.msg);
	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(run_lm(one, &l.items[i], 1, "{\"bos\": \"<bos>\"}", &err), 0, "%s",
			     err.msg);
		cr_expect(memcmp(one, all[i], sizeof(one)) == 0, "item %zu: %.17g %.17g alone, "
			  "%.17g %.17g in the batch", i, one[0], one[1], all[i][0], all[i][1]);
	}
	mb_item_list_dispose(&l);
}

/* max_tokens keeps an item's first tokens: "Ka Lo lives in" cut to [BOS] Ka Lo
 * scores what the text "Ka Lo" scores in full (a causal model). */
Test(lm, max_tokens_scores_the_items_first_tokens)
{
	mb_item_list a = {0}, b = {0};
	double cut[2], whole[2];
	mb_error err = {0};

	add_text(&a, "s", "Ka Lo lives in");
	add_text(&b, "s", "Ka Lo");
	cr_assert_eq(run_lm(cut, a.items, 1, "{\"bos\": \"<bos>\", \"max_tokens\": 3}", &err), 0,
		     "%s", err.msg);
	cr_assert_eq(run_lm(whole, b.items, 1, "{\"bos\": \"<bos>\"}", &err), 0, "%s", err.msg);
	cr_expect(memcmp(cut, whole, sizeof(cut)) == 0, "cut %.17g %.17g, whole %.17g %.17g",
		  cut[0], cut[1], whole[0], whole[1]);
	mb_item_list_dispose(&a);
	mb_item_list_dispose(&b);
}

Test(lm, facts_texts_are_three_strata_of_the_models_language)
{
	const mb_task *t = mb_task_find("lm");
	json_t *p = mbt_json("{\"recipe\": \"facts\", \"preset\": \"fast\", \"model_seed\": 0, "
			   "\"n_per_stratum\": 5}");
	mb_item_list a = {0}, b = {0};
	mb_error err = {0};
	double v[15][2];
	int n_held = 0, n_fact = 0, n_filler = 0;

	cr_assert_eq(t->generate(&a, 7, p, &err), 0, "%s", err.msg);
	cr_assert_eq(t->generate(&b, 7, p, &err), 0, "%s", err.msg);
	cr_assert_eq(a.n, 15);
	for (size_t i = 0; i < a.n; i++) {
		cr_expect_str_eq(a.items[i].key, b.items[i].key);
		n_fact += strcmp(a.items[i].stratum, "fact") == 0;
		n_held += strcmp(a.items[i].stratum, "fact_heldout") == 0;
		n_filler += strcmp(a.items[i].stratum, "filler") == 0;
	}
	cr_expect(n_fact == 5 && n_held == 5 && n_filler == 5);
	/* every word is the model's (its tokenizer has no unknown token) */
	cr_assert_eq(run_lm(&v[0][0], a.items, a.n, "{\"bos\": \"<bos>\"}", &err), 0, "%s",
		     err.msg);
	json_decref(p);
	p = mbt_json("{\"recipe\": \"facts\", \"preset\": \"fast\", \"model_seed\": 0, "
		   "\"n_per_stratum\": 100000}");
	mb_item_list_dispose(&b);
	cr_expect_lt(t->generate(&b, 7, p, &err), 0);
	cr_expect(strstr(err.msg, "params.n_per_stratum"), "%s", err.msg);
	json_decref(p);
	mb_item_list_dispose(&a);
	mb_item_list_dispose(&b);
}

Test(lm, a_source_file_is_one_item_per_line_checked_by_its_sha256)
{
	const mb_task *t = mb_task_find("lm");
	const char *text = "Ka Lo lives in Paris .\r\n\nthe dog is red .\n";
	char path[] = "/tmp/mb_lm_XXXXXX", sha[MB_SHA256_HEX_LEN], params[512];
	mb_item_list l = {0};
	mb_error err = {0};
	json_t *p;
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");

	cr_assert(f);
	fputs(text, f);
	fclose(f);
	mb_sha256_hex_buf(sha, text, strlen(text));
	snprintf(params, sizeof(params), "{\"source\": \"%s\", \"source_sha256\": \"%s\", "
		 "\"stratum\": \"web\"}", path, sha);
	p = mbt_json(params);
	cr_assert_eq(t->generate(&l, 0, p, &err), 0, "%s", err.msg);
	cr_assert_eq(l.n, 2);
	cr_expect_str_eq(json_string_value(json_object_get(l.items[0].input, "text")),
			 "Ka Lo lives in Paris .");
	cr_expect_str_eq(l.items[1].stratum, "web");
	cr_expect_str_eq(l.items[1].cluster, "line 3");
	json_decref(p);
	mb_item_list_dispose(&l);
	sha[0] = sha[0] == '0' ? '1' : '0';
	snprintf(params, sizeof(params), "{\"source\": \"%s\", \"source_sha256\": \"%s\"}", path,
		 sha);
	p = mbt_json(params);
	cr_expect_lt(t->generate(&l, 0, p, &err), 0);
	cr_expect(strstr(err.msg, "params.source_sha256 says"), "%s", err.msg);
	json_decref(p);
	p = mbt_json("{\"source\": \"x.txt\", \"sha\": 1}");
	cr_expect_lt(t->generate(&l, 0, p, &err), 0);
	cr_expect(strstr(err.msg, "params.sha: unknown field"), "%s", err.msg);
	json_decref(p);
	mb_item_list_dispose(&l);
	remove(path);
}

Test(lm, bad_params_and_items_are_one_line_naming_them)
{
	mb_item_list l = {0};
	mb_error err = {0};
	double v[2];
	mb_json_doc doc = {0};

	char what[32];
	const char *spec = "{\"max_tokens\": 1, \"bos\": \"x\"}";

	add_text(&l, "s", "Ka");
	snprintf(what, sizeof(what), "item %.16s", l.items[0].key);
	cr_expect_lt(run_lm(v, l.items, 1, NULL, &err), 0);
	cr_expect(strstr(err.msg, what) && strstr(err.msg, "1 token"), "%s", err.msg);
	cr_expect_lt(run_lm(v, l.items, 1, "{\"bos\": \"<s>\"}", &err), 0);
	cr_expect(strstr(err.msg, "params.bos: '<s>'"), "%s", err.msg);
	mb_item_list_dispose(&l);
	cr_assert_eq(mb_item_list_add(&l, "s", "c", json_pack("{s:i}", "text", 3), &err), 0);
	cr_expect_lt(run_lm(v, l.items, 1, NULL, &err), 0);
	cr_expect(strstr(err.msg, "item ") && strstr(err.msg, "\"text\": expected a string"), "%s",
		  err.msg);
	mb_item_list_dispose(&l);
	cr_assert_eq(mb_json_doc_parse(&doc, spec, strlen(spec), "spec", &err), 0, "%s", err.msg);
	cr_expect_lt(mb_task_find("lm")->check_params(&doc, doc.root, "params", &err), 0);
	cr_expect(strstr(err.msg, "max_tokens"), "%s", err.msg);
	mb_json_doc_dispose(&doc);
}
