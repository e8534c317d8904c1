/* Reports carry every metric per stratum: the run's JSON and --strata table
 * (from a real run of the synthetic fixture), and the gate's markdown and
 * JSON (from a gate result built by hand, with an OUT-OF-DISTRIBUTION
 * stratum and a failing thresholded one). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <mechbench/report.h>

#include "support/harness_support.h"
#include "support/report_support.h"

static char *render(void (*fn)(FILE *, const void *), const void *arg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	cr_assert_not_null(f);
	fn(f, arg);
	fclose(f);
	return buf;
}

static void run_strata_table(FILE *f, const void *arg)
{
	mb_report_run_terminal_strata(f, arg);
}

Test(report_strata, a_run_reports_each_metric_per_stratum_in_json_and_the_table)
{
	char dir[256];
	mb_run_result run;
	json_t *doc, *metrics;
	char *table;

	mbt_tmpdir(dir, sizeof(dir));
	mbt_run_fixture(&run, dir);
	cr_assert_eq(run.entries[0].n_strata, 2);
	doc = mb_report_run_json(&run);
	cr_assert_not_null(doc);
	metrics = json_object_get(json_array_get(json_object_get(doc, "entries"), 0), "metrics");
	cr_assert_eq(json_array_size(metrics), 3);
	for (size_t m = 0; m < 3; m++) {
		json_t *strata = json_object_get(json_array_get(metrics, m), "strata");
		double pooled = json_real_value(json_object_get(json_array_get(metrics, m), "mean"));
		double sum = 0;
		cr_assert_eq(json_array_size(strata), 2);
		for (size_t k = 0; k < 2; k++) {
			json_t *st = json_array_get(strata, k);
			cr_expect_str_eq(json_string_value(json_object_get(st, "name")),
					 run.entries[0].strata[k].name);
			cr_expect_eq(json_integer_value(json_object_get(st, "n")), 20);
			cr_expect(json_is_false(json_object_get(st, "ood")));
			cr_expect(json_real_value(json_object_get(st, "lo")) <=
				  json_real_value(json_object_get(st, "hi")));
			sum += json_real_value(json_object_get(st, "mean"));
		}
		/* equal strata, no registered weights: the pool is their average */
		cr_expect(fabs(sum / 2 - pooled) <= 1e-12 * (1 + fabs(pooled)), "%g vs %g", sum / 2,
			  pooled);
	}
	json_decref(doc);
	table = render(run_strata_table, &run);
	cr_expect(strstr(table, "synthetic.score@1") && strstr(table, " easy ") &&
		  strstr(table, " hard "), "%s", table);
	cr_expect_eq(mbt_count(table, "toy "), 3 * 2, "a line per metric and stratum: %s", table);
	free(table);
	mb_run_result_dispose(&run);
	mbt_rmtree(dir);
}

/* One gated row: pooled PASS, stratum "len=25" THRESHOLD-FAILED under combine
 * all, stratum "len=10" OUT-OF-DISTRIBUTION. */
static void planted_gate(mb_gate_result *g, mb_gate_row *r, mb_gate_stratum st[2])
{
	memset(g, 0, sizeof(*g));
	memset(r, 0, sizeof(*r));
	memset(st, 0, 2 * sizeof(*st));
	snprintf(g->suite, sizeof(g->suite), "demo");
	snprintf(g->ref, sizeof(g->ref), "HEAD");
	g->alpha = 0.05;
	g->level = 0.9;
	g->power = 0.8;
	g->outcome = MB_GATE_THRESHOLD_FAILED;
	g->exit_code = 3;
	g->rows = r;
	g->n_rows = 1;
	r->entry = "induction";
	r->metric = "induction.score";
	r->version = r->build_version = r->baseline_version = 1;
	r->direction = MB_HIGHER_IS_BETTER;
	r->margin = 0.1;
	r->has_threshold = 1;
	r->threshold = 0.5;
	r->compared = 1;
	r->n = 60;
	r->cmp.verdict = MB_STATS_VERDICT_PASS;
	r->cmp.mean_base = r->cmp.mean_cand = 0.8;
	r->cmp.diff.lo = -0.01;
	r->cmp.diff.hi = 0.01;
	r->threshold_checked = 1;
	r->threshold_verdict = MB_STATS_VERDICT_PASS;
	r->pooled_status = MB_GATE_PASS;
	r->status = MB_GATE_THRESHOLD_FAILED;
	r->combine = MB_SPEC_COMBINE_ALL;
	r->strata = st;
	r->n_strata = 2;
	r->n_ood = 60;
	r->strata_failed = 1;
	snprintf(r->note, sizeof(r->note), "stratum len=25 THRESHOLD-FAILED");
	st[0].name = "len=10";
	st[0].ood = 1;
	st[1].name = "len=25";
	for (int k = 0; k < 2; k++) {
		st[k].n = 60;
		st[k].compared = 1;
		st[k].cmp.verdict = MB_STATS_VERDICT_PASS;
		st[k].cmp.mean_base = st[k].cmp.mean_cand = k ? 0.45 : 0.28;
		st[k].has_threshold = 1;
		st[k].threshold = k ? 0.5 : 0.2;
		st[k].threshold_checked = 1;
		st[k].threshold_verdict = k ? MB_STATS_VERDICT_REGRESSED : MB_STATS_VERDICT_PASS;
		st[k].cand.lo = k ? 0.43 : 0.26;
		st[k].cand.hi = k ? 0.47 : 0.30;
		st[k].status = k ? MB_GATE_THRESHOLD_FAILED : MB_GATE_PASS;
		st[k].mde_planned = NAN;
	}
}

static void gate_md(FILE *f, const void *g)
{
	mb_report_gate_markdown(f, g);
}

Test(report_strata, gate_markdown_and_json_carry_per_stratum_lines)
{
	mb_gate_result g;
	mb_gate_row r;
	mb_gate_stratum st[2];
	char *md;
	json_t *doc, *row, *strata;

	planted_gate(&g, &r, st);
	md = render(gate_md, &g);
	cr_expect(strstr(md, "\n### Per stratum\n") != NULL, "%s", md);
	cr_expect(strstr(md, "| induction | `induction.score@1` | len=10 (OUT-OF-DISTRIBUTION) | 60 "
			 "| 0.28 | 0.28 | ") != NULL, "%s", md);
	cr_expect(strstr(md, "| >= 0.2 met [0.26, 0.3] | PASS | gates (combine all) |") != NULL,
		  "%s", md);
	cr_expect(strstr(md, "| induction | `induction.score@1` | len=25 | 60 | 0.45 | 0.45 | ") !=
		  NULL, "%s", md);
	cr_expect(strstr(md, "| >= 0.5 NOT MET [0.43, 0.47] | **THRESHOLD-FAILED** | gates "
			 "(combine all) |") != NULL, "%s", md);
	/* the metric's line names the stratum, not the pooled threshold (which is met) */
	cr_expect(strstr(md, "stratum len=25 THRESHOLD-FAILED") != NULL, "%s", md);
	cr_expect(strstr(md, "must be >= 0.5") == NULL, "%s", md);
	free(md);

	doc = mb_report_gate_json(&g);
	cr_assert_not_null(doc);
	row = json_array_get(json_object_get(doc, "metrics"), 0);
	cr_expect_str_eq(json_string_value(json_object_get(row, "combine")), "all");
	cr_expect_str_eq(json_string_value(json_object_get(row, "pooled_status")), "PASS");
	cr_expect_str_eq(json_string_value(json_object_get(row, "status")), "THRESHOLD-FAILED");
	cr_expect_eq(json_integer_value(json_object_get(row, "n_ood")), 60);
	strata = json_object_get(row, "strata");
	cr_assert_eq(json_array_size(strata), 2);
	cr_expect(json_is_true(json_object_get(json_array_get(strata, 0), "ood")));
	cr_expect(json_is_false(json_object_get(json_array_get(strata, 1), "ood")));
	cr_expect_str_eq(json_string_value(json_object_get(json_array_get(strata, 1), "status")),
			 "THRESHOLD-FAILED");
	cr_expect(json_is_true(json_object_get(json_array_get(strata, 1), "gates")));
	cr_expect_str_eq(json_string_value(json_object_get(
				 json_object_get(json_array_get(strata, 1), "threshold"), "verdict")),
			 "REGRESSED");
	json_decref(doc);
}
