/*
 * The leaderboard: rank intervals from Holm-adjusted pairwise tests (ties
 * shared, a chain a ~ b ~ c with a > c gives overlapping intervals), two
 * runs of one model tie, every row carries its stamp and the command that
 * reproduces it, the markdown renders as a table (cmark-gfm), CSV, JSON and
 * HTML hold the same rows, and bad inputs give one line and a non-zero exit.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <mechbench/leaderboard.h>
#include <mechbench/paired.h>

#include "support/harness_support.h"
#include "support/report_support.h"


static char dir[256];

static void setup(void)
{
	mbt_tmpdir(dir, sizeof(dir));
}

static void teardown(void)
{
	mbt_rmtree(dir);
}

TestSuite(leaderboard, .init = setup, .fini = teardown, .timeout = 300);

/* --- rank intervals on runs built by hand ----------------------------------------------------- */

enum { N = 40 };

/* A run (id) of suite "s", entry "e", one continuous higher-is-better
 * metric "m" with per-item values v (N). */
static void fake_run(mb_run_result *r, int64_t id, const double *v)
{
	mb_entry_result *e;
	double sum = 0;

	memset(r, 0, sizeof(*r));
	r->id = id;
	snprintf(r->prov.suite, sizeof(r->prov.suite), "s");
	snprintf(r->prov.code_commit, sizeof(r->prov.code_commit), "%040d", 1);
	snprintf(r->prov.spec_path, sizeof(r->prov.spec_path), "benchmarks/s.json");
	r->entries = calloc(1, sizeof(*r->entries));
	r->n_entries = 1;
	e = &r->entries[0];
	e->name = strdup("e");
	e->task = strdup("synthetic");
	e->model = strdup("models/x");
	e->dataset = strdup("d.jsonl");
	e->n_items = N;
	e->n_metrics = 1;
	e->items = calloc(N, sizeof(*e->items));
	e->values = malloc(N * sizeof(double));
	e->metrics = calloc(1, sizeof(*e->metrics));
	e->aggregates = calloc(1, sizeof(*e->aggregates));
	e->metrics[0].name = strdup("m");
	e->metrics[0].version = 1;
	for (int i = 0; i < N; i++) {
		snprintf(e->items[i].key, sizeof(e->items[i].key), "%064d", i);
		e->items[i].stratum = strdup("x");
		e->items[i].cluster = strdup("x");
		e->values[i] = v[i];
		sum += v[i];
	}
	e->aggregates[0].n = N;
	e->aggregates[0].mean = sum / N;
}

static int cmp_double(const void *x, const void *y)
{
	double u = *(const double *)x, v = *(const double *)y;
	return (u > v) - (u < v);
}

static const mb_leaderboard_row *row_of(const mb_leaderboard_table *t, int64_t id)
{
	for (size_t r = 0; r < t->n_rows; r++)
		if (t->rows[r].run_id == id)
			return &t->rows[r];
	cr_assert_fail("no row for run %lld", (long long)id);
	return NULL;
}

Test(leaderboard, ranks_are_intervals_consistent_with_the_significant_differences)
{
	double a[N], b[N], c[N], d[N];
	mb_run_result runs[5];
	mb_leaderboard lb;
	mb_error err;
	const mb_leaderboard_table *t;

	/* b is noisy (paired SE ~0.1 against a and c) and 0.15 from each of
	 * them: a ~ b ~ c; c is 0.3 below a with little noise: a > c; d is far
	 * below all; run 5 is a second run of a. */
	for (int i = 0; i < N; i++) {
		double item = 3 * sin(1.3 * i);
		a[i] = item;
		b[i] = item - 0.15 + 0.9 * sin(2.1 * i + 0.5);
		c[i] = item - 0.3 + 0.1 * sin(2.9 * i + 1.0);
		d[i] = item - 5.0 + 0.3 * sin(0.7 * i);
	}
	fake_run(&runs[0], 1, a);
	fake_run(&runs[1], 2, b);
	fake_run(&runs[2], 3, c);
	fake_run(&runs[3], 4, d);
	fake_run(&runs[4], 5, a);
	cr_assert_eq(mb_leaderboard_build(&lb, runs, 5, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(lb.n_tables, 1);
	t = &lb.tables[0];
	cr_assert_eq(t->n_rows, 5);
	for (size_t r = 0; r < 5; r++)
		printf("run %lld: rank %zu-%zu\n", (long long)t->rows[r].run_id,
		       t->rows[r].cells[0].rank_lo, t->rows[r].cells[0].rank_hi);
	/* Runs 1 and 5 are the same model: one interval. */
	cr_expect_eq(row_of(t, 1)->cells[0].rank_lo, row_of(t, 5)->cells[0].rank_lo);
	cr_expect_eq(row_of(t, 1)->cells[0].rank_hi, row_of(t, 5)->cells[0].rank_hi);
	cr_expect_eq(row_of(t, 1)->cells[0].rank_lo, 1);
	cr_expect_eq(row_of(t, 1)->cells[0].rank_hi, 3);  /* may tie with b, never below c */
	cr_expect_eq(row_of(t, 2)->cells[0].rank_lo, 1);  /* b ties everyone but d */
	cr_expect_eq(row_of(t, 2)->cells[0].rank_hi, 4);
	cr_expect_eq(row_of(t, 3)->cells[0].rank_lo, 3);  /* two copies of a beat c */
	cr_expect_eq(row_of(t, 3)->cells[0].rank_hi, 4);
	cr_expect_eq(row_of(t, 4)->cells[0].rank_lo, 5);  /* d is last for sure */
	cr_expect_eq(row_of(t, 4)->cells[0].rank_hi, 5);
	cr_expect_eq(t->rows[4].run_id, 4, "rows sorted by rank");
	mb_leaderboard_dispose(&lb);
	for (int i = 0; i < 5; i++)
		mb_run_result_dispose(&runs[i]);
}

/* A ratio metric is compared as the gate compares it: the BCa interval of
 * the stream's replicates, inverted. The shift between the two runs is
 * chosen (first on a grid) where the BCa p and the old percentile test's p
 * (2 min(#{d* <= 0}, #{d* >= 0}) + 1 over B + 1) fall on opposite sides of
 * alpha = 0.05, so the ranks show which test ran. */
Test(leaderboard, ratio_metrics_are_ranked_by_the_bca_bootstrap)
{
	enum { B = 2000 };
	double a[N], b[N], d[N], jack[N], reps[B], sorted[B];
	double p_bca = 1, p_pct = 1, shift = 0, sum;
	mb_run_result runs[2];
	mb_leaderboard lb;
	mb_error err;
	const mb_leaderboard_table *t;
	int found = 0;

	for (int k = 1; k <= 400 && !found; k++) {
		mb_stats_boot_opts bo = {.seed = 0, .stream = "leaderboard/s/e/m@1/1/2", .B = B,
					 .level = 0.95};
		mb_stats_estimate est;
		size_t le = 0, ge = 0;
		shift = 0.002 * k;
		sum = 0;
		for (int i = 0; i < N; i++) {
			/* skewed (loss-like) per-item values */
			a[i] = exp(1.2 * sin(1.3 * i));
			b[i] = a[i] + shift + 0.8 * exp(sin(2.1 * i + 0.5)) - 0.8 * 1.2660658777520082;
			d[i] = a[i] - b[i];
			sum += d[i];
		}
		cr_assert_eq(mb_stats_bootstrap(&est, reps, d, N, &bo, &err), 0, "%s", err.msg);
		for (int i = 0; i < N; i++)
			jack[i] = (sum - d[i]) / (N - 1);
		memcpy(sorted, reps, sizeof(reps));
		qsort(sorted, B, sizeof(double), cmp_double);
		cr_assert_eq(mb_stats_boot_p(&p_bca, sorted, B, est.mean, jack, N, 0.0,
					     MB_STATS_BOOT_CI_BCA, &err), 0, "%s", err.msg);
		for (int r = 0; r < B; r++) {
			le += reps[r] <= 0;
			ge += reps[r] >= 0;
		}
		p_pct = fmin(1.0, 2.0 * ((double)(le < ge ? le : ge) + 1.0) / (B + 1.0));
		found = (p_bca <= 0.05) != (p_pct <= 0.05);
	}
	cr_assert(found, "no shift on the grid separates the two tests");
	printf("ratio: shift %g, BCa p %.4f, percentile p %.4f\n", shift, p_bca, p_pct);
	fake_run(&runs[0], 1, a);
	fake_run(&runs[1], 2, b);
	for (int r = 0; r < 2; r++) {
		runs[r].entries[0].metrics[0].kind = MB_METRIC_RATIO;
		runs[r].entries[0].metrics[0].direction = MB_LOWER_IS_BETTER;
	}
	cr_assert_eq(mb_leaderboard_build(&lb, runs, 2, NULL, &err), 0, "%s", err.msg);
	t = &lb.tables[0];
	if (p_bca <= 0.05) { /* a is lower (better): a first for sure */
		cr_expect_eq(row_of(t, 1)->cells[0].rank_hi, 1);
		cr_expect_eq(row_of(t, 2)->cells[0].rank_lo, 2);
	} else { /* not significant: a tie */
		cr_expect_eq(row_of(t, 1)->cells[0].rank_hi, 2);
		cr_expect_eq(row_of(t, 2)->cells[0].rank_lo, 1);
	}
	mb_leaderboard_dispose(&lb);
	for (int i = 0; i < 2; i++)
		mb_run_result_dispose(&runs[i]);
}

/* --- end to end -------------------------------------------------------------------------------- */

static void three_models(void)
{
	const double half[8] = {0.5, -0.5, 0.5, -0.5, 0.5, -0.5, 0.5, -0.5};
	const double fifth[8] = {0.2, -0.2, 0.2, -0.2, 0.2, -0.2, 0.2, -0.2};
	mbt_demo_suite(dir, 50);
	mbt_synthetic_model(dir, "models/half", half, 8, 0);
	mbt_synthetic_model(dir, "models/fifth", fifth, 8, 0);
	mbt_sh_ok(dir, MBT_CLI "run --suite demo.json --db m.db --quiet > /dev/null");
	mbt_sh_ok(dir, MBT_CLI "run --suite demo.json --model models/half --db m.db --quiet > /dev/null");
	mbt_sh_ok(dir, MBT_CLI "run --suite demo.json --db m.db --quiet > /dev/null");
	mbt_sh_ok(dir, MBT_CLI "run --suite demo.json --model models/fifth --db m.db --quiet > /dev/null");
}

static int is_hex64(const char *s)
{
	if (!s || strlen(s) != 64)
		return 0;
	for (int i = 0; i < 64; i++)
		if (!strchr("0123456789abcdef", s[i]))
			return 0;
	return 1;
}

Test(leaderboard, two_runs_of_the_same_model_tie_and_every_row_is_stamped)
{
	json_t *doc, *t, *rows, *row;
	size_t i;
	char *ranks[5] = {0};

	three_models();
	mbt_sh_ok(dir, MBT_CLI "leaderboard --db m.db --format json --out lb.json");
	doc = mbt_json_file(dir, "lb.json");
	cr_assert_eq(json_array_size(json_object_get(doc, "tables")), 1);
	t = json_array_get(json_object_get(doc, "tables"), 0);
	rows = json_object_get(t, "rows");
	cr_assert_eq(json_array_size(rows), 4);
	json_array_foreach(rows, i, row) {
		json_t *stamp = json_object_get(row, "stamp"), *cell;
		json_int_t id = json_integer_value(json_object_get(row, "run_id"));
		size_t m;
		cr_expect(is_hex64(json_string_value(json_object_get(stamp, "dataset_sha256"))));
		cr_expect(is_hex64(json_string_value(json_object_get(stamp, "model_sha256"))));
		cr_expect_eq(strlen(json_string_value(json_object_get(stamp, "spec_blob"))), 40);
		cr_expect_gt(strlen(json_string_value(json_object_get(stamp, "code_commit"))), 0);
		cr_expect(strncmp(json_string_value(json_object_get(row, "command")),
				  "git checkout ", 13) == 0);
		cr_expect(strstr(json_string_value(json_object_get(row, "command")),
				 "mechbench run --suite demo.json"));
		/* The rank intervals of every metric, as one string per run. */
		ranks[id] = calloc(1, 256);
		json_array_foreach(json_object_get(row, "cells"), m, cell)
			snprintf(ranks[id] + strlen(ranks[id]), 256 - strlen(ranks[id]), "%lld-%lld ",
				 (long long)json_integer_value(json_object_get(cell, "rank_lo")),
				 (long long)json_integer_value(json_object_get(cell, "rank_hi")));
	}
	printf("ranks (score, correct, loss): run 1 %s| run 2 %s| run 3 %s| run 4 %s\n", ranks[1],
	       ranks[2], ranks[3], ranks[4]);
	cr_expect_str_eq(ranks[1], ranks[3], "the true model's two runs differ: %s vs %s",
			 ranks[1], ranks[3]);
	/* The score separates the models: true (twice) 1-2, half 3, fifth 4. */
	cr_expect(strncmp(ranks[1], "1-2 ", 4) == 0, "%s", ranks[1]);
	cr_expect(strncmp(ranks[2], "3-3 ", 4) == 0, "%s", ranks[2]);
	cr_expect(strncmp(ranks[4], "4-4 ", 4) == 0, "%s", ranks[4]);
	for (int k = 1; k <= 4; k++)
		free(ranks[k]);
	json_decref(doc);
}

Test(leaderboard, markdown_renders_as_a_table_with_a_row_per_run)
{
	char *md = NULL, *html = NULL;

	MBT_NEED_TOOL("cmark-gfm", "cannot check that the markdown renders");
	three_models();
	mbt_sh_ok(dir, MBT_CLI "leaderboard --db m.db --suite demo > lb.md");
	cr_assert_eq(mbt_sh(dir, "cat lb.md", &md), 0);
	cr_assert_eq(mbt_sh(dir, "cmark-gfm --extension table lb.md", &html), 0, "%s", html);
	/* the ranked table, then the same cells per stratum */
	cr_expect_eq(mbt_count(html, "<table>"), 2, "%s", html);
	char *strata = strstr(strstr(html, "<table>") + 1, "<table>");
	cr_assert_not_null(strata);
	cr_expect_eq(mbt_count(strata, "<tr>"), 1 + 4 * 3 * 2,
		     "header, 4 runs x 3 metrics x 2 strata: %s", strata);
	cr_expect_eq(mbt_count(strata, "</td>"), 4 * 3 * 2 * 6, "6 cells a row: %s", strata);
	cr_expect(strstr(strata, "<td>hard</td>") != NULL, "%s", strata);
	*strata = '\0';
	cr_expect_eq(mbt_count(html, "<tr>"), 5, "header and 4 runs: %s", html);
	cr_expect_eq(mbt_count(html, "</th>"), 8, "columns: %s", html);
	/* every body row has all 8 cells: a stray '|' would add one */
	cr_expect_eq(mbt_count(html, "</td>"), 32, "%s", html);
	cr_expect(strstr(html, "<code>git checkout "), "%s", html);
	free(md);
	free(html);
}

Test(leaderboard, csv_and_html_hold_the_same_rows)
{
	char *csv = NULL, *html = NULL;

	three_models();
	mbt_sh_ok(dir, MBT_CLI "leaderboard --db m.db --format csv --out lb.csv");
	mbt_sh_ok(dir, MBT_CLI "leaderboard --db m.db --format html --out lb.html");
	cr_assert_eq(mbt_sh(dir, "cat lb.csv", &csv), 0);
	cr_assert_eq(mbt_sh(dir, "cat lb.html", &html), 0);
	cr_expect_eq(mbt_count(csv, "\n"), 1 + 4 * 3, "%s", csv);
	cr_expect(strncmp(csv, "suite,entry,task,run_id,model,metric,", 37) == 0);
	cr_expect_eq(mbt_count(html, "<tr>"), 5);
	cr_expect_null(strstr(html, "<script"));
	free(csv);
	free(html);
}

Test(leaderboard, bad_inputs_give_one_line_and_a_non_zero_exit)
{
	static const struct {
		const char *args;
		int rc;
		const char *says;
	} cases[] = {
		{"leaderboard --db m.db --suite nosuch", 1, "no runs of suite 'nosuch' (suites: demo)"},
		{"leaderboard --db m.db --format pdf", 2, "--format"},
		{"leaderboard --db absent.db", 1, "absent.db"},
		{"leaderboard --db m.db --alpha 2", 2, "--alpha"},
		{"leaderboard --db m.db --out demo.json/x.md", 1, "cannot write here"},
	};
	mbt_demo_suite(dir, 10);
	mbt_sh_ok(dir, MBT_CLI "run --suite demo.json --db m.db --quiet > /dev/null");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char cmd[512], *out = NULL;
		int rc;
		snprintf(cmd, sizeof(cmd), MBT_CLI "%s", cases[i].args);
		rc = mbt_sh(dir, cmd, &out);
		cr_expect_eq(rc, cases[i].rc, "case %zu (%s): exit %d: %s", i, cases[i].args, rc, out);
		cr_expect(strstr(out, cases[i].says), "case %zu (%s): %s", i, cases[i].args, out);
		if (cases[i].rc == 1)
			cr_expect_eq(mbt_count(out, "\n"), 1, "case %zu: not one line: %s", i, out);
		free(out);
	}
}
