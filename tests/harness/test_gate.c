/* The gate's logic on real runs of the synthetic task: IDENTICAL, REGRESSED,
 * thresholds on CI bounds, METRIC-CHANGED, THRESHOLD-CHANGED, refusals before
 * running (power, item sets) and the exit policy. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/gate.h>
#include <mechbench/power.h>
#include <mechbench/stats.h>

#include "support/harness_support.h"

typedef struct fx {
	char dir[256];
	mb_spec spec;
	mb_dataset d;
	mb_entry_result base, cand;
	mb_gate_result g;
} fx;

static void run_model(fx *f, mb_entry_result *out, const char *rel)
{
	char model[512];
	mb_runner_opts o = {.threads = 2};
	mb_error err;
	snprintf(model, sizeof(model), "%s/%s", f->dir, rel);
	cr_assert_eq(mb_runner_run_entry(out, &f->spec, &f->spec.entries[0], &f->d, f->dir, model,
					 rel, &o, &err), 0, "%s", err.msg);
}

static void setup(fx *f, int n, const char *metrics)
{
	char *text;
	mb_error err;
	const double wp[8] = {1, -1, 1, 1, -1, 1, 1, -1};

	memset(f, 0, sizeof(*f));
	mbt_tmpdir(f->dir, sizeof(f->dir));
	mbt_suite_fixture(f->dir, n, "", metrics ? metrics : MBT_METRICS_ALL, &text);
	mbt_synthetic_model(f->dir, "models/perturbed", wp, 8, 0);
	cr_assert_eq(mb_spec_parse(&f->spec, text, strlen(text), "demo.json", &err), 0, "%s",
		     err.msg);
	free(text);
	cr_assert_eq(mb_runner_load_dataset(&f->d, &f->spec.entries[0], f->dir, &err), 0, "%s",
		     err.msg);
	run_model(f, &f->base, "models/true");
	cr_assert_eq(mb_gate_init(&f->g, &f->spec, "benchmarks/demo.json", "HEAD",
				  "0123456789012345678901234567890123456789",
				  "abcdefabcdefabcdefabcdefabcdefabcdefabcd", &err), 0);
}

static void teardown(fx *f)
{
	mb_gate_dispose(&f->g);
	mb_entry_result_dispose(&f->base);
	mb_entry_result_dispose(&f->cand);
	mb_dataset_dispose(&f->d);
	mb_spec_dispose(&f->spec);
	mbt_rmtree(f->dir);
}

/* plan, check power, run the candidate, compare, finish. */
static int gate(fx *f, const char *cand_model, mb_error *err)
{
	const mb_spec_entry *e = &f->spec.entries[0];
	int rc;
	if ((rc = mb_gate_plan_entry(&f->g, &f->spec, e, &f->base, &f->d, err)) < 0 ||
	    (rc = mb_gate_check_power(&f->g, err)) < 0)
		return rc;
	run_model(f, &f->cand, cand_model);
	if ((rc = mb_gate_compare_entry(&f->g, &f->spec, e, &f->base, &f->cand, err)) < 0)
		return rc;
	mb_gate_finish(&f->g, MB_GATE_POLICY_EXIT4, MB_GATE_POLICY_EXIT4);
	return 0;
}

Test(gate, the_same_model_is_identical_and_passes)
{
	fx f;
	mb_error err;

	setup(&f, 100, NULL);
	cr_assert_eq(gate(&f, "models/true", &err), 0, "%s", err.msg);
	for (size_t i = 0; i < f.g.n_rows; i++) {
		cr_expect_eq(f.g.rows[i].status, MB_GATE_IDENTICAL, "%s", f.g.rows[i].metric);
		cr_expect_eq(f.g.rows[i].n, 200);
		cr_expect(f.g.rows[i].mde_planned > 0 && f.g.rows[i].mde_planned < f.g.rows[i].margin);
	}
	cr_expect(f.g.rows[0].threshold_checked);
	cr_expect_eq(f.g.rows[0].threshold_verdict, MB_STATS_VERDICT_PASS);
	cr_expect_eq(f.g.outcome, MB_GATE_IDENTICAL);
	cr_expect_eq(f.g.exit_code, 0);
	teardown(&f);
}

Test(gate, a_perturbed_model_regresses_every_metric_with_exit_3)
{
	fx f;
	mb_error err;

	setup(&f, 100, NULL);
	cr_assert_eq(gate(&f, "models/perturbed", &err), 0, "%s", err.msg);
	for (size_t i = 0; i < f.g.n_rows; i++) {
		const mb_gate_row *r = &f.g.rows[i];
		cr_expect_eq(r->status, MB_GATE_REGRESSED, "%s: %s", r->metric,
			     mb_gate_status_name(r->status));
		cr_expect(r->cmp.diff.hi < r->cmp.diff.lo + 10, "interval is finite");
		cr_expect(r->mde_observed > 0);
	}
	/* Direction is honoured: the loss rises, the score falls. */
	cr_expect_lt(f.g.rows[0].cmp.diff.hi, -f.g.rows[0].margin);
	cr_expect_gt(f.g.rows[2].cmp.diff.lo, f.g.rows[2].margin);
	cr_expect(f.g.rows[1].cmp.has_mcnemar, "binary metrics get exact McNemar");
	cr_expect_eq(f.g.outcome, MB_GATE_REGRESSED);
	cr_expect_eq(f.g.exit_code, 3);
	teardown(&f);
}

Test(gate, an_absolute_threshold_is_judged_on_the_ci_bound_even_when_identical)
{
	fx f;
	mb_error err;
	char metrics[512];
	double mean;

	/* First learn the mean, then set the threshold just below it: the mean
	 * clears it, the lower CI bound does not. */
	setup(&f, 100, NULL);
	mean = f.base.aggregates[0].mean;
	teardown(&f);
	snprintf(metrics, sizeof(metrics),
		 "[{\"metric\": \"synthetic.score@1\", \"kind\": \"continuous\", \"direction\": "
		 "\"higher\", \"margin\": 1.0, \"threshold\": %.17g}]", mean - 0.01);
	setup(&f, 100, metrics);
	cr_assert_eq(gate(&f, "models/true", &err), 0, "%s", err.msg);
	cr_expect_eq(f.g.rows[0].cmp.verdict, MB_STATS_VERDICT_IDENTICAL);
	cr_expect_gt(f.g.rows[0].cand.mean, f.g.rows[0].threshold);
	cr_expect_lt(f.g.rows[0].cand.lo, f.g.rows[0].threshold);
	cr_expect_eq(f.g.rows[0].status, MB_GATE_THRESHOLD_FAILED);
	cr_expect_eq(f.g.exit_code, 3);
	teardown(&f);
}

Test(gate, a_definition_version_mismatch_is_metric_changed_not_a_number)
{
	fx f;
	mb_error err;

	setup(&f, 100, NULL);
	f.base.metrics[1].version = 2; /* the baseline holds synthetic.correct@2 */
	cr_assert_eq(gate(&f, "models/true", &err), 0, "%s", err.msg);
	cr_expect_eq(f.g.rows[1].status, MB_GATE_METRIC_CHANGED);
	cr_expect_not(f.g.rows[1].compared);
	cr_expect(strstr(f.g.rows[1].note, "the baseline holds @2") != NULL, "%s", f.g.rows[1].note);
	cr_expect_eq(f.g.rows[0].status, MB_GATE_IDENTICAL);
	cr_expect_eq(f.g.outcome, MB_GATE_METRIC_CHANGED);
	cr_expect_eq(f.g.exit_code, 4);
	teardown(&f);
}

Test(gate, a_gate_that_cannot_see_its_margin_is_refused_before_running)
{
	fx f;
	mb_error err;

	setup(&f, 3, NULL); /* 6 items */
	cr_expect_eq(gate(&f, "models/true", &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "gate refused before running") != NULL, "%s", err.msg);
	cr_expect(strstr(err.msg, "toy/synthetic.score@1: MDE") != NULL, "%s", err.msg);
	cr_expect(strstr(err.msg, "needs n >=") != NULL, "%s", err.msg);
	cr_expect_eq(f.cand.n_items, 0, "nothing ran");
	teardown(&f);
}

Test(gate, mismatched_item_sets_are_an_error_naming_them)
{
	fx f;
	mb_error err;

	setup(&f, 100, NULL);
	/* Drop the baseline's last item. */
	f.base.n_items--;
	free(f.base.items[f.base.n_items].stratum);
	free(f.base.items[f.base.n_items].cluster);
	cr_expect_eq(mb_gate_plan_entry(&f.g, &f.spec, &f.spec.entries[0], &f.base, &f.d, &err),
		     MB_EMISMATCH);
	cr_expect(strstr(err.msg, "item sets differ: 0 baseline item(s)") != NULL, "%s", err.msg);
	cr_expect(strstr(err.msg, "1 dataset item(s) are not in the baseline (first ") != NULL,
		  "%s", err.msg);
	teardown(&f);
}

Test(gate, deviations_mark_their_rows_and_a_regression_still_fails)
{
	fx f;
	mb_error err;
	mb_spec_deviation *d = calloc(1, sizeof(*d));

	setup(&f, 100, NULL);
	d->path = strdup("tasks[toy].metrics[synthetic.loss].margin");
	d->before = strdup("0.25");
	d->after = strdup("0.5");
	d->entry = strdup("toy");
	d->metric = strdup("synthetic.loss");
	mb_gate_set_deviations(&f.g, d, 1);
	cr_assert_eq(gate(&f, "models/true", &err), 0, "%s", err.msg);
	cr_expect_eq(f.g.rows[0].status, MB_GATE_IDENTICAL);
	cr_expect_eq(f.g.rows[2].status, MB_GATE_THRESHOLD_CHANGED);
	cr_expect_eq(f.g.exit_code, 4);
	mb_gate_finish(&f.g, MB_GATE_POLICY_EXIT4, MB_GATE_POLICY_PASS);
	cr_expect_eq(f.g.exit_code, 0, "--on-changed pass");
	/* A regression under the registered spec is not masked by the change. */
	f.g.rows[2].cmp.verdict = MB_STATS_VERDICT_REGRESSED;
	mb_gate_finish(&f.g, MB_GATE_POLICY_EXIT4, MB_GATE_POLICY_PASS);
	cr_expect_eq(f.g.rows[2].status, MB_GATE_REGRESSED);
	cr_expect_eq(f.g.exit_code, 3);
	teardown(&f);
}

Test(gate, inconclusive_follows_its_policy)
{
	fx f;
	mb_error err;

	setup(&f, 100, NULL);
	cr_assert_eq(gate(&f, "models/true", &err), 0, "%s", err.msg);
	f.g.rows[0].cmp.verdict = MB_STATS_VERDICT_INCONCLUSIVE;
	mb_gate_finish(&f.g, MB_GATE_POLICY_EXIT4, MB_GATE_POLICY_EXIT4);
	cr_expect_eq(f.g.exit_code, 4);
	cr_expect_eq(f.g.outcome, MB_GATE_INCONCLUSIVE);
	mb_gate_finish(&f.g, MB_GATE_POLICY_PASS, MB_GATE_POLICY_EXIT4);
	cr_expect_eq(f.g.exit_code, 0);
	mb_gate_finish(&f.g, MB_GATE_POLICY_FAIL, MB_GATE_POLICY_EXIT4);
	cr_expect_eq(f.g.exit_code, 3);
	f.g.rows[1].cmp.verdict = MB_STATS_VERDICT_PASS;
	f.g.rows[2].cmp.verdict = MB_STATS_VERDICT_IMPROVED;
	f.g.rows[0].cmp.verdict = MB_STATS_VERDICT_IDENTICAL;
	mb_gate_finish(&f.g, MB_GATE_POLICY_EXIT4, MB_GATE_POLICY_EXIT4);
	cr_expect_eq(f.g.outcome, MB_GATE_PASS, "PASS is worse than IMPROVED and IDENTICAL");
	cr_expect_eq(f.g.exit_code, 0);
	teardown(&f);
}

/* --- strata ----------------------------------------------------------------------- */


/* The stratum with the lower mean score in f->base, and the other one. */
static void weak_strong(const fx *f, const mb_stratum_result **weak,
			const mb_stratum_result **strong)
{
	cr_assert_eq(f->base.n_strata, 2);
	*weak = &f->base.strata[0];
	*strong = &f->base.strata[1];
	if ((*weak)->aggregates[0].mean > (*strong)->aggregates[0].mean) {
		const mb_stratum_result *t = *weak;
		*weak = *strong;
		*strong = t;
	}
}

struct combine_case {
	char combine[8]; /* an array: parameters cross into the test process by value */
	mb_gate_status status; /* of the row */
	int exit_code;
};

static struct combine_case combine_cases[] = {
	{"all", MB_GATE_THRESHOLD_FAILED, 3},
	{"pooled", MB_GATE_IDENTICAL, 0},
};

ParameterizedTestParameters(gate, a_failing_stratum_under_a_passing_pool_follows_the_combine_rule)
{
	return cr_make_param_array(struct combine_case, combine_cases,
				   sizeof(combine_cases) / sizeof(combine_cases[0]));
}

/* The planted case of issue 14: the pooled score clears its threshold by a
 * wide margin, one stratum's CI lies wholly below its own registered
 * threshold. The gate names the stratum either way; the exit code is the
 * registered rule's. */
ParameterizedTest(struct combine_case *c, gate,
		  a_failing_stratum_under_a_passing_pool_follows_the_combine_rule)
{
	fx f;
	mb_error err;
	char metrics[1024], weak[64], strong[64];
	double pooled_t, weak_t, strong_t;
	const mb_stratum_result *w, *s;

	setup(&f, 100, NULL);
	weak_strong(&f, &w, &s);
	snprintf(weak, sizeof(weak), "%s", w->name);
	snprintf(strong, sizeof(strong), "%s", s->name);
	pooled_t = f.base.aggregates[0].lo - 1.0;
	weak_t = w->aggregates[0].hi + 0.5;  /* the weak stratum's CI is below it */
	strong_t = s->aggregates[0].lo - 1.0; /* the strong stratum clears it */
	cr_assert_gt(pooled_t, w->aggregates[0].mean - 100, "fixture sanity");
	teardown(&f);
	snprintf(metrics, sizeof(metrics),
		 "[{\"metric\": \"synthetic.score@1\", \"kind\": \"continuous\", \"direction\": "
		 "\"higher\", \"margin\": 1.0, \"threshold\": %.17g, \"strata\": {\"%s\": "
		 "{\"threshold\": %.17g}, \"%s\": {\"threshold\": %.17g}}, \"combine\": \"%s\"}]",
		 pooled_t, weak, weak_t, strong, strong_t, c->combine);
	setup(&f, 100, metrics);
	cr_assert_eq(gate(&f, "models/true", &err), 0, "%s", err.msg);
	const mb_gate_row *r = &f.g.rows[0];
	cr_assert_eq(r->n_strata, 2);
	cr_expect_eq(r->threshold_verdict, MB_STATS_VERDICT_PASS, "the pool passes");
	cr_expect_eq(r->pooled_status, MB_GATE_IDENTICAL);
	for (size_t k = 0; k < r->n_strata; k++) {
		const mb_gate_stratum *st = &r->strata[k];
		int is_weak = strcmp(st->name, weak) == 0;
		cr_expect(st->compared && st->has_threshold && st->threshold_checked);
		cr_expect_eq(st->n, 100);
		cr_expect_eq(st->cmp.verdict, MB_STATS_VERDICT_IDENTICAL);
		cr_expect_eq(st->status, is_weak ? MB_GATE_THRESHOLD_FAILED : MB_GATE_IDENTICAL,
			     "%s: %s", st->name, mb_gate_status_name(st->status));
		cr_expect_eq(st->threshold_verdict,
			     is_weak ? MB_STATS_VERDICT_REGRESSED : MB_STATS_VERDICT_PASS);
		/* its own interval: over its 100 items, at the gate's level */
		cr_expect_eq(st->cand.n, 100);
		cr_expect_eq(st->cand.level, f.g.level);
	}
	cr_expect_eq(r->strata_failed, 1);
	cr_expect_eq(r->status, c->status, "combine %s: %s", c->combine,
		     mb_gate_status_name(r->status));
	cr_expect_eq(f.g.exit_code, c->exit_code, "combine %s", c->combine);
	cr_expect(strstr(r->note, weak) && strstr(r->note, "THRESHOLD-FAILED"),
		  "the stratum is named: %s", r->note);
	teardown(&f);
}

Test(gate, an_ood_stratum_is_left_out_of_the_pool_and_judged_on_its_own)
{
	fx f;
	mb_error err;
	char *text, sha[MB_SHA256_HEX_LEN], spec[2048];
	size_t len;
	json_t *p = json_pack("{s:i, s:[s]}", "n_per_stratum", 100, "ood", "hard");

	/* a dataset whose recipe marks "hard" out of distribution */
	memset(&f, 0, sizeof(f));
	mbt_tmpdir(f.dir, sizeof(f.dir));
	cr_assert_eq(mb_dataset_generate(&text, &len, mb_task_find("synthetic"), 7, p, &err), 0,
		     "%s", err.msg);
	json_decref(p);
	mb_sha256_hex_buf(sha, text, len);
	mbt_write(f.dir, "datasets/toy.jsonl", text);
	free(text);
	mbt_true_model(f.dir, "models/true");
	snprintf(spec, sizeof(spec),
		 "{\"format\": 1, \"suite\": \"demo\", \"alpha\": 0.05, \"power\": 0.8, "
		 "\"bootstrap\": 2000, \"seed\": 1234, \"tasks\": [{\"name\": \"toy\", \"task\": "
		 "\"synthetic\", \"dataset\": {\"path\": \"datasets/toy.jsonl\", \"sha256\": \"%s\"}, "
		 "\"metrics\": [{\"metric\": \"synthetic.score@1\", \"kind\": \"continuous\", "
		 "\"direction\": \"higher\", \"margin\": 1.0, \"threshold\": -1000, \"strata\": "
		 "{\"hard\": {\"threshold\": 1000}}, \"combine\": \"all\"}]}]}", sha);
	cr_assert_eq(mb_spec_parse(&f.spec, spec, strlen(spec), "demo.json", &err), 0, "%s",
		     err.msg);
	cr_assert_eq(mb_runner_load_dataset(&f.d, &f.spec.entries[0], f.dir, &err), 0, "%s",
		     err.msg);
	cr_expect(mb_dataset_is_ood(&f.d, "hard") && !mb_dataset_is_ood(&f.d, "easy"));
	run_model(&f, &f.base, "models/true");
	/* the run: pooled over "easy" only, both strata listed, "hard" marked */
	cr_expect_eq(f.base.aggregates[0].n, 100);
	cr_assert_eq(f.base.n_strata, 2);
	for (size_t k = 0; k < 2; k++) {
		const mb_stratum_result *st = &f.base.strata[k];
		cr_expect_eq(st->ood, strcmp(st->name, "hard") == 0);
		cr_expect_eq(st->aggregates[0].n, 100);
		if (!st->ood)
			cr_expect_eq(st->aggregates[0].mean, f.base.aggregates[0].mean,
				     "the pool is the in-distribution stratum");
	}
	cr_assert_eq(mb_gate_init(&f.g, &f.spec, "benchmarks/demo.json", "HEAD",
				  "0123456789012345678901234567890123456789",
				  "abcdefabcdefabcdefabcdefabcdefabcdefabcd", &err), 0);
	cr_assert_eq(gate(&f, "models/true", &err), 0, "%s", err.msg);
	const mb_gate_row *r = &f.g.rows[0];
	cr_expect_eq(r->n, 100, "pooled over the in-distribution items");
	cr_expect_eq(r->n_ood, 100);
	cr_expect_eq(r->pooled_status, MB_GATE_IDENTICAL);
	for (size_t k = 0; k < r->n_strata; k++)
		if (r->strata[k].ood)
			cr_expect_eq(r->strata[k].status, MB_GATE_THRESHOLD_FAILED,
				     "the OOD stratum's own expectation is judged");
	cr_expect_eq(r->status, MB_GATE_THRESHOLD_FAILED);
	cr_expect_eq(f.g.exit_code, 3);
	teardown(&f);
}

Test(gate, an_ood_stratum_with_a_registered_weight_is_refused)
{
	mb_error err;
	char dir[256], *text, sha[MB_SHA256_HEX_LEN], spec[2048];
	size_t len;
	mb_spec s;
	mb_dataset d;
	json_t *p = json_pack("{s:i, s:[s]}", "n_per_stratum", 10, "ood", "hard");

	mbt_tmpdir(dir, sizeof(dir));
	cr_assert_eq(mb_dataset_generate(&text, &len, mb_task_find("synthetic"), 7, p, &err), 0,
		     "%s", err.msg);
	json_decref(p);
	mb_sha256_hex_buf(sha, text, len);
	mbt_write(dir, "datasets/toy.jsonl", text);
	free(text);
	snprintf(spec, sizeof(spec),
		 "{\"format\": 1, \"suite\": \"demo\", \"alpha\": 0.05, \"power\": 0.8, "
		 "\"bootstrap\": 2000, \"seed\": 1234, \"tasks\": [{\"name\": \"toy\", \"task\": "
		 "\"synthetic\", \"dataset\": {\"path\": \"datasets/toy.jsonl\", \"sha256\": \"%s\"}, "
		 "\"strata\": {\"easy\": 0.5, \"hard\": 0.5}, \"metrics\": [{\"metric\": "
		 "\"synthetic.score@1\", \"kind\": \"continuous\", \"direction\": \"higher\", "
		 "\"margin\": 1.0}]}]}", sha);
	cr_assert_eq(mb_spec_parse(&s, spec, strlen(spec), "demo.json", &err), 0, "%s", err.msg);
	cr_expect_eq(mb_runner_load_dataset(&d, &s.entries[0], dir, &err), MB_EMISMATCH);
	cr_expect(strstr(err.msg, "stratum 'hard' is out of distribution (recipe \"ood\") but "
			 "entry toy weighs it 0.5") != NULL, "%s", err.msg);
	mb_spec_dispose(&s);
	mbt_rmtree(dir);
}

/* Per-stratum power: with 30 "easy" and 100 "hard" items and thresholds on
 * both, the gate plans on "easy" (the smallest), at its n and variance; under
 * combine "all" a margin between the pooled MDE and that stratum's MDE is
 * refused before running, naming the stratum; under "pooled" it is not. */
Test(gate, per_stratum_power_plans_on_the_smallest_thresholded_stratum)
{
	static const char *const combine[] = {"all", "pooled"};
	mb_error err;
	double pooled_mde = 0, stratum_mde = 0;

	for (int pass = 0; pass < 3; pass++) {
		fx f;
		char *text, sha[MB_SHA256_HEX_LEN], spec[2048];
		size_t len;
		mb_item_list all = {0}, some = {0};
		size_t n_easy = 0;
		json_t *p = json_pack("{s:i}", "n_per_stratum", 100);
		double margin = pass == 0 ? 1.0 : (pooled_mde + stratum_mde) / 2;

		memset(&f, 0, sizeof(f));
		mbt_tmpdir(f.dir, sizeof(f.dir));
		cr_assert_eq(mb_task_find("synthetic")->generate(&all, 7, p, &err), 0, "%s",
			     err.msg);
		for (size_t i = 0; i < all.n; i++) {
			const mb_item *it = &all.items[i];
			if (strcmp(it->stratum, "easy") == 0 && n_easy++ >= 30)
				continue;
			cr_assert_eq(mb_item_list_add(&some, it->stratum, it->cluster,
						      json_incref(it->input), &err), 0, "%s",
				     err.msg);
		}
		cr_assert_eq(mb_dataset_render(&text, &len, "synthetic", 1, 7, p, &some, &err), 0,
			     "%s", err.msg);
		json_decref(p);
		mb_item_list_dispose(&all);
		mb_item_list_dispose(&some);
		mb_sha256_hex_buf(sha, text, len);
		mbt_write(f.dir, "datasets/toy.jsonl", text);
		free(text);
		mbt_true_model(f.dir, "models/true");
		snprintf(spec, sizeof(spec),
			 "{\"format\": 1, \"suite\": \"demo\", \"alpha\": 0.05, \"power\": 0.8, "
			 "\"bootstrap\": 2000, \"seed\": 1234, \"tasks\": [{\"name\": \"toy\", "
			 "\"task\": \"synthetic\", \"dataset\": {\"path\": \"datasets/toy.jsonl\", "
			 "\"sha256\": \"%s\"}, \"metrics\": [{\"metric\": \"synthetic.score@1\", "
			 "\"kind\": \"continuous\", \"direction\": \"higher\", \"margin\": %.17g, "
			 "\"strata\": {\"hard\": {\"threshold\": -1000}, \"easy\": {\"threshold\": "
			 "-1000}}, \"combine\": \"%s\"}]}]}",
			 sha, margin, combine[pass == 2]);
		cr_assert_eq(mb_spec_parse(&f.spec, spec, strlen(spec), "demo.json", &err), 0,
			     "%s", err.msg);
		cr_assert_eq(mb_runner_load_dataset(&f.d, &f.spec.entries[0], f.dir, &err), 0,
			     "%s", err.msg);
		run_model(&f, &f.base, "models/true");
		cr_assert_eq(mb_gate_init(&f.g, &f.spec, "benchmarks/demo.json", "HEAD",
					  "0123456789012345678901234567890123456789",
					  "abcdefabcdefabcdefabcdefabcdefabcdefabcd", &err), 0);
		cr_assert_eq(mb_gate_plan_entry(&f.g, &f.spec, &f.spec.entries[0], &f.base, &f.d,
						&err), 0, "%s", err.msg);
		const mb_gate_row *r = &f.g.rows[0];
		cr_assert_geq(r->power_stratum, 0);
		const mb_gate_stratum *st = &r->strata[r->power_stratum];
		cr_expect_str_eq(st->name, "easy", "the smallest stratum with a threshold");
		cr_expect_eq(st->n, 30);
		if (pass == 0) {
			/* its MDE: its own variance at n = 30, power 1 - beta/m (m = 1) */
			size_t *idx = NULL, n = 0;
			double col[30], mde;
			mb_stats_power_opts po = {.alpha = 0.05, .power = 0.8, .sides = 1,
						  .deff = 1.0};
			cr_assert_eq(mb_runner_select(&idx, &n, &f.base, "easy", &err), 0);
			cr_assert_eq(n, 30);
			for (size_t j = 0; j < n; j++)
				col[j] = f.base.values[idx[j] * f.base.n_metrics];
			free(idx);
			po.var_d = mb_stats_var(col, n);
			cr_assert_eq(mb_stats_power_mde(&mde, &po, 30, &err), 0);
			cr_expect_float_eq(st->mde_planned, mde, 1e-12 * mde, "%g vs %g",
					   st->mde_planned, mde);
			pooled_mde = r->mde_planned;
			stratum_mde = st->mde_planned;
			cr_assert_lt(pooled_mde, stratum_mde, "130 items plan finer than 30");
			cr_expect_eq(mb_gate_check_power(&f.g, &err), 0, "%s", err.msg);
		} else if (pass == 1) {
			cr_expect_eq(mb_gate_check_power(&f.g, &err), MB_EINVALID);
			cr_expect(strstr(err.msg, "toy/synthetic.score@1 stratum easy: MDE") != NULL,
				  "%s", err.msg);
			cr_expect(strstr(err.msg, "at n=30") != NULL, "%s", err.msg);
		} else {
			cr_expect_eq(mb_gate_check_power(&f.g, &err), 0,
				     "combine pooled: the stratum reports, it does not gate: %s",
				     err.msg);
		}
		teardown(&f);
	}
}
