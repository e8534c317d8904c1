/*
 * test_task_fixtures.c: every per-item metric of the modadd and induction
 * tasks on the committed zoo models and datasets against an independent
 * float64 PyTorch/numpy implementation written from the metric definitions
 * (tests/fixtures/tasks/gen_fixtures.py; README.md there says how the
 * fixtures were made and how to regenerate them after a zoo retrain).
 *
 * Each value must match within rel * |ref| + abs: rel = 1e-5 for every
 * metric; abs is a per-metric floor for values near 0, where a relative
 * bound means nothing (the engine runs in float32, the reference in float64),
 * stated and justified in the table below. The max differences are printed.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/dataset.h>
#include <mechbench/sha256.h>
#include <mechbench/task.h>

#define FX MB_SOURCE_DIR "/tests/fixtures/tasks/"

typedef struct tol {
	const char *metric;
	double abs; /* floor added to 1e-5 * |ref| */
} tol;

/*
 * Absolute floors. modadd: the losses of a grokked model are ~1e-7 nats
 * (softmax tails exp(-15)), and a float32 logit carries an absolute rounding
 * of ~1e-6 of its magnitude (~20): the loss's own absolute error is then
 * ~1e-6 * loss, well under 1e-9; the paired differences of two such losses
 * (sufficiency_gap, control_effect) are ~1e-8 and get the same floor. The
 * excluded loss and necessity effect are O(1) to O(10): relative. Model-level
 * values are O(0.1) to O(1000): relative.
 * induction: per-token losses are O(0.01) to O(5) and are averages of
 * float32-logit cross-entropies (absolute error ~1e-6 per term); the
 * ablation / path-patching effects are differences of two such averages and
 * may be ~0 (kcomp_q, ablate_random on some items): 2e-6 absolute. Scores are
 * attention sums in [0, 1] from float32 softmax: 1e-6 absolute.
 */
static const tol tols[] = {
	{"modadd.loss", 1e-9},
	{"modadd.correct", 0},
	{"modadd.restricted_loss", 1e-9},
	{"modadd.excluded_loss", 0},
	{"modadd.control_loss", 1e-9},
	{"modadd.sufficiency_gap", 1e-9},
	{"modadd.necessity_effect", 0},
	{"modadd.control_effect", 1e-9},
	{"modadd.key_freq_count", 0},
	{"modadd.gini_embed", 0},
	{"modadd.gini_unembed", 0},
	{"modadd.neuron_frac", 0},
	{"modadd.weight_norm", 0},
	{"induction.score", 1e-6},
	{"induction.score_vs_control", 1e-6},
	{"induction.prev_score", 1e-6},
	{"induction.loss_rep1", 2e-6},
	{"induction.loss_rep2", 2e-6},
	{"induction.loss_drop", 2e-6},
	{"induction.ablate_top", 2e-6},
	{"induction.ablate_random", 2e-6},
	{"induction.ablate_excess", 2e-6},
	{"induction.kcomp_k", 2e-6},
	{"induction.kcomp_q", 2e-6},
	{"induction.kcomp_v", 2e-6},
	{"induction.kcomp_k_over_q", 2e-6},
	{"induction.kcomp_k_over_v", 2e-6},
};

static const tol *find_tol(const char *metric)
{
	for (size_t i = 0; i < sizeof(tols) / sizeof(tols[0]); i++)
		if (strcmp(tols[i].metric, metric) == 0)
			return &tols[i];
	return NULL;
}

/* Runs task `name` on the fixture's items (found by key in its dataset) and
 * compares every metric of every item. */
static void check_task(const char *name)
{
	const mb_task *t = mb_task_find(name);
	char path[512], model[512], dspath[512];
	json_error_t jerr;
	json_t *fx, *items;
	mb_dataset d;
	mb_item_list sel = {0};
	mb_error err = {0};
	void *st = NULL;
	double *v, maxrel[64] = {0}, maxabs[64] = {0};
	size_t M, n, bad = 0;
	int covered[64] = {0};

	cr_assert_not_null(t);
	M = t->n_metrics;
	cr_assert_leq(M, 64);
	snprintf(path, sizeof(path), FX "%s.json", name);
	fx = json_load_file(path, 0, &jerr);
	cr_assert_not_null(fx, "%s: %s", path, jerr.text);
	snprintf(model, sizeof(model), MB_SOURCE_DIR "/%s",
		 json_string_value(json_object_get(fx, "model")));
	snprintf(dspath, sizeof(dspath), MB_SOURCE_DIR "/%s",
		 json_string_value(json_object_get(fx, "dataset")));
	/* a retrained zoo model or rebuilt dataset: say so, not 300 mismatches */
	{
		char hex[MB_SHA256_HEX_LEN], mpath[600];
		snprintf(mpath, sizeof(mpath), "%s/model.safetensors", model);
		cr_assert_eq(mb_sha256_hex_file(hex, mpath, &err), 0, "%s", err.msg);
		cr_assert_str_eq(hex, json_string_value(json_object_get(fx, "model_sha256")),
				 "%s was made from another %s: regenerate it with /usr/bin/python3 "
				 "tests/fixtures/tasks/gen_fixtures.py (README.md there)", path, mpath);
		cr_assert_eq(mb_sha256_hex_file(hex, dspath, &err), 0, "%s", err.msg);
		cr_assert_str_eq(hex, json_string_value(json_object_get(fx, "dataset_sha256")),
				 "%s was made from another %s: regenerate it with /usr/bin/python3 "
				 "tests/fixtures/tasks/gen_fixtures.py (README.md there)", path, dspath);
	}
	cr_assert_eq(mb_dataset_load(&d, dspath, &err), 0, "%s", err.msg);
	items = json_object_get(fx, "items");
	n = json_array_size(items);
	cr_assert_gt(n, 0);
	for (size_t i = 0; i < n; i++) {
		const char *key = json_string_value(json_object_get(json_array_get(items, i), "key"));
		size_t j = 0;
		while (j < d.items.n && strcmp(d.items.items[j].key, key) != 0)
			j++;
		cr_assert_lt(j, d.items.n, "%s: fixture item %s is not in %s: regenerate the "
			     "fixtures (README.md)", name, key, dspath);
		cr_assert_eq(mb_item_list_add(&sel, d.items.items[j].stratum, d.items.items[j].cluster,
					      json_incref(d.items.items[j].input), &err), 0, "%s",
			     err.msg);
	}
	cr_assert_eq(t->open(&st, model, json_object_get(fx, "run_params"), &err), 0, "%s", err.msg);
	v = malloc(n * M * sizeof(double));
	for (size_t i0 = 0; i0 < n; i0 += t->batch) {
		size_t b = n - i0 < t->batch ? n - i0 : t->batch;
		cr_assert_eq(mb_task_run(t, st, sel.items + i0, b, v + i0 * M, &err), 0, "%s", err.msg);
	}
	t->close(st);
	for (size_t i = 0; i < n; i++) {
		json_t *ref = json_object_get(json_array_get(items, i), "values");
		const char *stratum =
			json_string_value(json_object_get(json_array_get(items, i), "stratum"));
		cr_assert_str_eq(stratum, sel.items[i].stratum);
		for (size_t m = 0; m < M; m++) {
			const char *metric = t->metrics[m].name;
			json_t *r = json_object_get(ref, metric);
			const tol *tl = find_tol(metric);
			double want, got = v[i * M + m], d_abs;

			cr_assert_not_null(r, "%s: the fixture has no %s: regenerate it", name, metric);
			cr_assert_not_null(tl, "%s: no tolerance for %s in this test", name, metric);
			covered[m] = 1;
			want = json_number_value(r);
			d_abs = fabs(got - want);
			maxabs[m] = fmax(maxabs[m], d_abs);
			if (want != 0)
				maxrel[m] = fmax(maxrel[m], d_abs / fabs(want));
			if (!(d_abs <= 1e-5 * fabs(want) + tl->abs)) {
				if (bad++ < 10)
					printf("%s item %zu (%s) %s: C %.17g vs reference %.17g\n",
					       name, i, stratum, metric, got, want);
			}
		}
	}
	for (size_t m = 0; m < M; m++)
		printf("%-28s max rel diff %.3g, max abs diff %.3g (abs floor %g)\n",
		       t->metrics[m].name, maxrel[m], maxabs[m], find_tol(t->metrics[m].name)->abs);
	for (size_t m = 0; m < M; m++)
		cr_assert(covered[m], "%s not covered", t->metrics[m].name);
	cr_assert_eq(bad, 0, "%s: %zu values outside the tolerance", name, bad);
	free(v);
	mb_item_list_dispose(&sel);
	mb_dataset_dispose(&d);
	json_decref(fx);
}

/* Every stratum of the dataset is in the fixture. */
static void check_strata(const char *name)
{
	char path[512], dspath[512];
	json_error_t jerr;
	json_t *fx = NULL;
	mb_dataset d;
	mb_error err = {0};

	snprintf(path, sizeof(path), FX "%s.json", name);
	fx = json_load_file(path, 0, &jerr);
	cr_assert_not_null(fx, "%s: %s", path, jerr.text);
	snprintf(dspath, sizeof(dspath), MB_SOURCE_DIR "/%s",
		 json_string_value(json_object_get(fx, "dataset")));
	cr_assert_eq(mb_dataset_load(&d, dspath, &err), 0, "%s", err.msg);
	for (size_t j = 0; j < d.items.n; j++) {
		json_t *items = json_object_get(fx, "items");
		int found = 0;
		for (size_t i = 0; i < json_array_size(items) && !found; i++)
			found = strcmp(json_string_value(json_object_get(json_array_get(items, i),
									 "stratum")),
				       d.items.items[j].stratum) == 0;
		cr_assert(found, "%s: stratum %s has no fixture item", name, d.items.items[j].stratum);
	}
	mb_dataset_dispose(&d);
	json_decref(fx);
}

TestSuite(task_fixtures, .timeout = 600);

Test(task_fixtures, modadd_metrics_match_the_pytorch_reference_per_item)
{
	check_strata("modadd");
	check_task("modadd");
}

Test(task_fixtures, induction_metrics_match_the_pytorch_reference_per_item)
{
	check_strata("induction");
	check_task("induction");
}
