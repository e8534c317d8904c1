/*
 * Figures as data: shapes and names are checked, the JSON form reads back
 * bit for bit and refuses malformed documents with the field named, and the
 * synthetic task's figures hold what its definition says (the true model's
 * weight spectrum is all at the Nyquist frequency).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/figure.h>
#include <mechbench/task.h>

#include "support/harness_support.h"

Test(figure, refuses_empty_duplicate_and_oversized_figures)
{
	mb_figure_list l;
	mb_figure *f;
	mb_error err;

	memset(&l, 0, sizeof(l));
	cr_expect_eq(mb_figure_list_add(&l, &f, MB_FIGURE_HEATMAP, "", 2, 2, &err), MB_EINVALID);
	cr_expect_eq(mb_figure_list_add(&l, &f, MB_FIGURE_HEATMAP, "a", 0, 2, &err), MB_EINVALID);
	cr_expect_eq(mb_figure_list_add(&l, &f, MB_FIGURE_HEATMAP, "a", 300, 300, &err),
		     MB_EINVALID);
	cr_expect(strstr(err.msg, "figure a: shape (300, 300)"), "%s", err.msg);
	cr_expect_eq(mb_figure_list_add(&l, &f, MB_FIGURE_STEM, "s", 2, 3, &err), MB_EINVALID);
	cr_assert_eq(mb_figure_list_add(&l, &f, MB_FIGURE_HEATMAP, "a", 2, 2, &err), 0);
	cr_expect(isnan(f->values[3]), "new cells start missing");
	cr_expect_eq(mb_figure_list_add(&l, &f, MB_FIGURE_LINES, "a", 1, 2, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "exists"), "%s", err.msg);
	cr_expect_eq(l.n, 1);
	mb_figure_list_dispose(&l);
}

Test(figure, json_round_trip_is_bit_exact)
{
	mb_figure_list l, back;
	mb_figure *f;
	mb_error err;
	json_t *doc;
	char *text;
	double x[3] = {1, 2.5, 7};

	memset(&l, 0, sizeof(l));
	memset(&back, 0, sizeof(back));
	cr_assert_eq(mb_figure_list_add(&l, &f, MB_FIGURE_LINES, "t.curves", 2, 3, &err), 0);
	f->values[0] = 0.1;
	f->values[1] = -1.0 / 3.0;
	f->values[2] = 1e-300;
	f->values[3] = NAN;
	f->values[4] = 6.02214076e23;
	f->values[5] = -0.0;
	cr_assert_eq(mb_figure_set_text(f, "T \"quoted\"", "x", "y", "", &err), 0);
	cr_assert_eq(mb_figure_set_row_label(f, 1, "second", &err), 0);
	cr_assert_eq(mb_figure_set_x(f, x, &err), 0);
	doc = mb_figure_to_json(f);
	cr_assert(doc);
	text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(doc);
	doc = json_loads(text, 0, NULL);
	free(text);
	cr_assert_eq(mb_figure_list_add_json(&back, doc, "doc", &err), 0, "%s", err.msg);
	json_decref(doc);
	cr_assert_eq(back.n, 1);
	f = &l.items[0];
	{
		const mb_figure *g = &back.items[0];
		cr_expect_str_eq(g->name, "t.curves");
		cr_expect_eq(g->kind, MB_FIGURE_LINES);
		cr_expect_str_eq(g->title, "T \"quoted\"");
		cr_expect_str_eq(g->row_labels[0], "0");
		cr_expect_str_eq(g->row_labels[1], "second");
		cr_expect_null(g->col_labels);
		for (int i = 0; i < 6; i++) {
			if (isnan(f->values[i]))
				cr_expect(isnan(g->values[i]));
			else
				cr_expect_eq(memcmp(&f->values[i], &g->values[i], sizeof(double)), 0,
					     "value %d: %.17g read back as %.17g", i, f->values[i],
					     g->values[i]);
		}
		for (int j = 0; j < 3; j++)
			cr_expect_eq(g->x[j], x[j]);
	}
	mb_figure_list_dispose(&l);
	mb_figure_list_dispose(&back);
}

Test(figure, refuses_malformed_json_naming_the_field)
{
	static const struct {
		const char *json;
		const char *says;
	} cases[] = {
		{"[]", "expected a JSON object"},
		{"{\"mechbench_figure\": 2}", "mechbench_figure: expected 1"},
		{"{\"mechbench_figure\": 1, \"name\": \"a\", \"kind\": \"pie\", \"title\": \"\", "
		 "\"x_label\": \"\", \"y_label\": \"\", \"value_label\": \"\", \"diverging\": false, "
		 "\"rows\": 1, \"cols\": 1, \"values\": [1]}", "kind: expected heatmap"},
		{"{\"mechbench_figure\": 1, \"name\": \"a\", \"kind\": \"heatmap\", \"title\": \"\", "
		 "\"x_label\": \"\", \"y_label\": \"\", \"value_label\": \"\", \"diverging\": false, "
		 "\"rows\": 1, \"cols\": 2, \"values\": [1]}", "values: expected 2 numbers"},
		{"{\"mechbench_figure\": 1, \"name\": \"a\", \"kind\": \"heatmap\", \"title\": \"\", "
		 "\"x_label\": \"\", \"y_label\": \"\", \"value_label\": \"\", \"diverging\": false, "
		 "\"rows\": 1, \"cols\": 2, \"values\": [1, \"x\"]}", "values[1]: expected a number"},
		{"{\"mechbench_figure\": 1, \"name\": \"a\", \"kind\": \"stem\", \"title\": \"\", "
		 "\"x_label\": \"\", \"y_label\": \"\", \"value_label\": \"\", \"diverging\": false, "
		 "\"rows\": 1, \"cols\": 2, \"values\": [1, 2], \"x\": [2, 1]}", "x[1]"},
		{"{\"mechbench_figure\": 1, \"surprise\": 1}", "surprise: unknown field"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mb_figure_list l;
		mb_error err;
		json_t *doc = json_loads(cases[i].json, 0, NULL);
		memset(&l, 0, sizeof(l));
		cr_assert(doc, "case %zu is not JSON", i);
		cr_expect_eq(mb_figure_list_add_json(&l, doc, "fig", &err), MB_EINVALID, "case %zu", i);
		cr_expect(strstr(err.msg, cases[i].says), "case %zu: %s", i, err.msg);
		cr_expect_eq(l.n, 0, "case %zu left a half-read figure", i);
		json_decref(doc);
		mb_figure_list_dispose(&l);
	}
}

Test(figure, synthetic_true_model_spectrum_is_all_at_nyquist)
{
	const mb_task *t = mb_task_find("synthetic");
	char dir[256], model[512];
	mb_item_list items;
	mb_figure_list figs;
	mb_error err;
	double *values;
	void *state = NULL;
	const mb_figure *spec, *acc;
	double max_off = 0;

	cr_assert(t && t->figures);
	mbt_tmpdir(dir, sizeof(dir));
	mbt_true_model(dir, "m");
	snprintf(model, sizeof(model), "%s/m", dir);
	memset(&items, 0, sizeof(items));
	memset(&figs, 0, sizeof(figs));
	cr_assert_eq(t->generate(&items, 7, NULL, &err), 0, "%s", err.msg);
	values = malloc(items.n * t->n_metrics * sizeof(double));
	cr_assert_eq(t->open(&state, model, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_task_run(t, state, items.items, items.n, values, &err), 0, "%s", err.msg);
	t->close(state);
	cr_assert_eq(mb_figure_compute(&figs, t, NULL, model, NULL, items.items, items.n, values,
				       &err), 0, "%s", err.msg);
	spec = mb_figure_list_find(&figs, "synthetic.weight_spectrum");
	cr_assert(spec);
	cr_assert_eq(spec->cols, 5);
	for (size_t k = 0; k < 4; k++)
		max_off = fmax(max_off, fabs(spec->values[k]));
	printf("spectrum: |DFT|_4 = %.17g, largest other %.3g\n", spec->values[4], max_off);
	cr_expect_lt(fabs(spec->values[4] - 8.0), 1e-12);
	cr_expect_lt(max_off, 1e-12);
	/* The accuracy heatmap is the mean of synthetic.correct per cell. */
	acc = mb_figure_list_find(&figs, "synthetic.accuracy_by_cluster");
	cr_assert(acc && acc->rows == 2 && acc->cols == 4);
	{
		double sum = 0, want = 0;
		size_t n = 0;
		for (size_t i = 0; i < items.n; i++)
			if (strcmp(items.items[i].cluster, "hard/c2") == 0) {
				sum += values[i * t->n_metrics + 1];
				n++;
			}
		want = sum / (double)n;
		cr_expect_eq(acc->values[1 * 4 + 2], want, "%g vs %g", acc->values[6], want);
		cr_expect_str_eq(acc->row_labels[1], "hard");
		cr_expect_str_eq(acc->col_labels[2], "c2");
	}
	free(values);
	mb_item_list_dispose(&items);
	mb_figure_list_dispose(&figs);
	mbt_rmtree(dir);
}

Test(figure, fuzz_seeds_parse_when_valid_and_are_refused_when_bad)
{
	static const char *const seeds[] = {"valid_heatmap.json", "valid_stem.json",
					    "valid_lines.json", "bad_too_big.json",
					    "bad_x_unordered.json", "bad_truncated.json"};
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		char path[1024];
		mb_figure_list l;
		mb_error err;
		json_t *doc;
		int rc = MB_EINVALID;
		snprintf(path, sizeof(path), "%s/fuzz/corpus/figure/%s", MB_SOURCE_DIR, seeds[i]);
		memset(&l, 0, sizeof(l));
		doc = json_load_file(path, 0, NULL);
		if (doc)
			rc = mb_figure_list_add_json(&l, doc, seeds[i], &err);
		if (strncmp(seeds[i], "valid_", 6) == 0)
			cr_expect_eq(rc, 0, "%s: %s", seeds[i], err.msg);
		else
			cr_expect_neq(rc, 0, "%s was accepted", seeds[i]);
		json_decref(doc);
		mb_figure_list_dispose(&l);
	}
}
