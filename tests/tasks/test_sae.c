/* The sae task (src/tasks/sae.c): its generator (topics as strata, the same
 * items twice, one-line errors), its params, and a run on the committed zoo
 * SAE: every value finite, an item's values the same bits whatever batch it
 * is in, the quality metrics in their ranges. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/json.h>
#include <mechbench/task.h>

#define INDUCTION MB_SOURCE_DIR "/baselines/models/induction"
#define SAE_DIR MB_SOURCE_DIR "/baselines/saes/induction-resid1"

static const mb_task *sae_task(void)
{
	const mb_task *t = mb_task_find("sae");
	cr_assert(t != NULL, "the sae task is registered");
	cr_assert_eq(mb_task_metric_index(t, "sae.necessity_excess"), 6);
	return t;
}

static void generate(mb_item_list *l, int n_per)
{
	mb_error err;
	json_t *p = json_pack("{s:i}", "n_per_topic", n_per);
	memset(l, 0, sizeof(*l));
	cr_assert_eq(sae_task()->generate(l, 20240613, p, &err), 0, "%s", err.msg);
	json_decref(p);
}

Test(sae_task, generate_gives_n_per_topic_items_with_topics_as_strata)
{
	mb_item_list a, b;
	int count[8] = {0};
	generate(&a, 3);
	generate(&b, 3);
	cr_assert_eq(a.n, 24);
	cr_assert_eq(b.n, a.n);
	for (size_t i = 0; i < a.n; i++) {
		cr_expect_str_eq(a.items[i].key, b.items[i].key);
		int t = (int)json_integer_value(json_object_get(a.items[i].input, "topic"));
		char want[32];
		snprintf(want, sizeof(want), "topic=%d", t);
		cr_expect_str_eq(a.items[i].stratum, want);
		cr_expect_eq(json_array_size(json_object_get(a.items[i].input, "tokens")), 64);
		cr_assert(t >= 0 && t < 8);
		count[t]++;
	}
	for (int t = 0; t < 8; t++)
		cr_expect_eq(count[t], 3, "topic %d: %d items", t, count[t]);
	mb_item_list_dispose(&a);
	mb_item_list_dispose(&b);
}

Test(sae_task, bad_generator_params_are_one_clear_error)
{
	static const char *const cases[][2] = {
		{"{\"n_per_topic\": 1}", "params.n_per_topic"},
		{"{\"n_topics\": 4}", "params.n_topics: unknown field"},
		{"{\"recipe\": \"modadd\"}", "only the induction language"},
		{"{\"preset\": \"huge\"}", "huge"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mb_item_list l;
		mb_error err;
		json_t *p = json_loads(cases[i][0], 0, NULL);
		memset(&l, 0, sizeof(l));
		cr_expect_lt(sae_task()->generate(&l, 1, p, &err), 0, "%s", cases[i][0]);
		cr_expect(strstr(err.msg, cases[i][1]) != NULL, "%s: %s", cases[i][0], err.msg);
		mb_item_list_dispose(&l);
		json_decref(p);
	}
}

Test(sae_task, check_params_names_the_bad_field)
{
	static const char *const cases[][2] = {
		{"{\"params\": {\"steer\": 4}}", "params.sae"},
		{"{\"params\": {\"sae\": \"x\", \"steer\": 0}}", "params.steer"},
		{"{\"params\": {\"sae\": \"x\", \"match_seqs\": 2}}", "params.match_seqs"},
		{"{\"params\": {\"sae\": \"x\", \"stear\": 2}}", "stear"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mb_json_doc doc;
		mb_error err;
		cr_assert_eq(mb_json_doc_parse(&doc, cases[i][0], strlen(cases[i][0]), "spec.json",
					       &err), 0);
		cr_expect_lt(sae_task()->check_params(&doc, json_object_get(doc.root, "params"),
						      "params", &err), 0, "%s", cases[i][0]);
		cr_expect(strstr(err.msg, cases[i][1]) && strstr(err.msg, "spec.json:"), "%s: %s",
			  cases[i][0], err.msg);
		mb_json_doc_dispose(&doc);
	}
}

Test(sae_task, values_are_finite_in_range_and_batch_invariant)
{
	const mb_task *t = sae_task();
	mb_item_list l;
	mb_error err;
	void *st;
	json_t *p = json_pack("{s:s,s:i}", "sae", SAE_DIR, "match_seqs", 16);
	generate(&l, 2);
	const size_t n = l.n, M = t->n_metrics;
	double *all = calloc(n * M, sizeof(double)), *part = calloc(n * M, sizeof(double));
	json_t *art = NULL;
	cr_assert_eq(t->open(&st, INDUCTION, p, &err), 0, "%s", err.msg);
	/* run before prepare: one line naming the item */
	cr_expect_lt(mb_task_run(t, st, l.items, 1, all, &err), 0);
	cr_expect(strstr(err.msg, l.items[0].key) != NULL, "%s", err.msg);
	cr_assert_eq(t->prepare(st, l.items, n, &art, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_task_run(t, st, l.items, n, all, &err), 0, "%s", err.msg);
	/* The artifact: every feature's per-item effects, each item's own
	 * feature's necessity as the item's value. */
	cr_expect_str_eq(json_string_value(json_object_get(art, "kind")), "sae-battery");
	const json_t *fs = json_object_get(art, "features");
	cr_expect_eq(json_array_size(fs), 8);
	for (size_t k = 0; k < json_array_size(fs); k++)
		cr_expect_eq(json_array_size(json_object_get(json_array_get(fs, k), "steering")), n);
	for (size_t i = 0; i < n; i++) {
		int topic = (int)json_integer_value(json_object_get(l.items[i].input, "topic"));
		const json_t *nec = json_object_get(json_array_get(fs, (size_t)topic), "necessity");
		cr_expect(json_number_value(json_array_get(nec, i)) == all[i * M + 4],
			  "item %zu: necessity", i);
	}
	json_decref(art);
	/* The battery over the first item alone, then the rest together: an
	 * item's values do not depend on the items it is prepared or run with. */
	cr_assert_eq(t->prepare(st, l.items, 1, &art, &err), 0, "%s", err.msg);
	json_decref(art);
	cr_assert_eq(mb_task_run(t, st, l.items, 1, part, &err), 0, "%s", err.msg);
	cr_assert_eq(t->prepare(st, l.items + 1, n - 1, &art, &err), 0, "%s", err.msg);
	json_decref(art);
	cr_assert_eq(mb_task_run(t, st, l.items + 1, n - 1, part + M, &err), 0, "%s", err.msg);
	cr_expect(memcmp(all, part, n * M * sizeof(double)) == 0,
		  "an item's values depend on its batch");
	for (size_t i = 0; i < n; i++) {
		const double *r = all + i * M;
		cr_expect(r[0] > 0.5 && r[0] < 1.0, "item %zu: CE recovered %g", i, r[0]);
		cr_expect(r[1] > 0, "item %zu: KL %g", i, r[1]);
		cr_expect(r[2] > 0 && r[2] <= 8, "item %zu: L0 %g above k", i, r[2]);
		cr_expect(r[3] > 0.5 && r[3] <= 1, "item %zu: cos %g", i, r[3]);
		cr_expect(fabs(r[6] - (r[4] - r[5])) == 0, "item %zu: excess is not the difference",
			  i);
		cr_expect(fabs(r[9] - (r[7] - r[8])) == 0, "item %zu: steering excess", i);
		cr_expect(r[11] > 0, "item %zu: steering leaves the other tokens untouched", i);
		cr_expect(r[12] >= 0 && r[12] <= 1 && r[12] * 8 == floor(r[12] * 8),
			  "item %zu: causal hit %g is not a count of 8", i, r[12]);
	}
	/* The figures: by-topic activations, top items, density. */
	mb_figure_list figs;
	memset(&figs, 0, sizeof(figs));
	cr_assert_eq(t->figures(st, l.items, n, all, &figs, &err), 0, "%s", err.msg);
	cr_assert_eq(figs.n, 3);
	cr_expect_str_eq(figs.items[0].name, "sae.activation_by_topic");
	const mb_figure *bt = &figs.items[0];
	int own = 0;
	for (size_t a = 0; a < bt->rows; a++) {
		size_t arg = 0;
		for (size_t c = 1; c < bt->cols; c++)
			if (bt->values[a * bt->cols + c] > bt->values[a * bt->cols + arg])
				arg = c;
		own += arg == a;
	}
	cr_expect(own >= 6, "only %d of 8 topic features fire most on their own topic", own);
	const mb_figure *dn = &figs.items[2];
	double l0 = 0;
	for (size_t j = 0; j < dn->cols; j++)
		l0 += dn->values[j];
	double want = 0;
	for (size_t i = 0; i < n; i++)
		want += all[i * M + 2] / n;
	cr_expect(fabs(l0 - want) < 1e-9, "density sums to %g, mean L0 is %g", l0, want);
	mb_figure_list_dispose(&figs);
	t->close(st);
	/* An SAE folder that is not there: one line naming it. */
	json_object_set_new(p, "sae", json_string("/nonexistent/sae"));
	cr_expect_lt(t->open(&st, INDUCTION, p, &err), 0);
	cr_expect(strstr(err.msg, "/nonexistent/sae") != NULL, "%s", err.msg);
	json_decref(p);
	free(all);
	free(part);
	mb_item_list_dispose(&l);
}
