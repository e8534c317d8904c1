/* The gate's logic on real runs of the synthetic task: IDENTICAL, REGRESSED,
 * thresholds on CI bounds, METRIC-CHANGED, THRESHOLD-CHANGED, refusals before
 * running (power, item sets) and the exit policy. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/gate.h>

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
	cr_assert_eq(mb_runner_run_entry(out, &f->spec, &f->spec.entries[0], &f->d, model, rel, &o,
					 &err), 0, "%s", err.msg);
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
