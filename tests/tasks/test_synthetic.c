/* The task interface and the synthetic test task: deterministic items keyed by
 * content, values checked against a direct computation, perturbations that
 * really move the values, and errors that name the file and field. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/task.h>

#include "support/harness_support.h"

static const mb_task *syn(void)
{
	const mb_task *t = mb_task_find("synthetic");
	cr_assert(t != NULL, "the synthetic task is registered");
	return t;
}

Test(task, registry_lists_synthetic_with_metric_definitions)
{
	const mb_task *t = syn();
	size_t found = 0;
	for (size_t i = 0; i < mb_task_count(); i++)
		found += mb_task_at(i) == t;
	cr_expect_eq(found, 1);
	cr_expect_null(mb_task_find("nope"));
	cr_expect_eq(mb_task_metric_index(t, "synthetic.correct"), 1);
	cr_expect_eq(t->metrics[1].kind, MB_METRIC_BINARY);
	cr_expect_eq(t->metrics[2].direction, MB_LOWER_IS_BETTER);
	cr_expect_eq(mb_task_metric_index(t, "synthetic.nope"), -1);
}

Test(task, metric_references_parse_name_and_version)
{
	char name[64];
	int v = 0;
	cr_assert_eq(mb_metric_ref_parse("ioi.logit_diff@12", name, sizeof(name), &v), 0);
	cr_expect_str_eq(name, "ioi.logit_diff");
	cr_expect_eq(v, 12);
	cr_expect_eq(mb_metric_ref_parse("ioi.logit_diff", name, sizeof(name), &v), MB_EINVALID);
	cr_expect_eq(mb_metric_ref_parse("@1", name, sizeof(name), &v), MB_EINVALID);
	cr_expect_eq(mb_metric_ref_parse("a@0", name, sizeof(name), &v), MB_EINVALID);
	cr_expect_eq(mb_metric_ref_parse("a@1x", name, sizeof(name), &v), MB_EINVALID);
	cr_expect_eq(mb_metric_ref_parse("a@b@1", name, sizeof(name), &v), MB_EINVALID);
}

Test(synthetic, generation_is_deterministic_and_depends_on_the_seed)
{
	mb_item_list a = {0}, b = {0}, c = {0};
	mb_error err;
	json_t *params = json_pack("{s:i, s:i}", "n_per_stratum", 30, "dim", 5);

	cr_assert_eq(syn()->generate(&a, 11, params, &err), 0, "%s", err.msg);
	cr_assert_eq(syn()->generate(&b, 11, params, &err), 0, "%s", err.msg);
	cr_assert_eq(syn()->generate(&c, 12, params, &err), 0, "%s", err.msg);
	cr_assert_eq(a.n, 60);
	size_t same_as_other_seed = 0;
	for (size_t i = 0; i < a.n; i++) {
		cr_expect_str_eq(a.items[i].key, b.items[i].key);
		cr_expect(json_equal(a.items[i].input, b.items[i].input));
		same_as_other_seed += strcmp(a.items[i].key, c.items[i].key) == 0;
		cr_expect_eq(json_array_size(json_object_get(a.items[i].input, "x")), 5);
	}
	cr_expect_eq(same_as_other_seed, 0, "another seed gives other items");
	cr_expect_str_eq(a.items[0].stratum, "easy");
	cr_expect_str_eq(a.items[59].stratum, "hard");
	mb_item_list_dispose(&a);
	mb_item_list_dispose(&b);
	mb_item_list_dispose(&c);
	json_decref(params);
}

Test(synthetic, item_keys_are_content_hashes)
{
	mb_item_list l = {0};
	mb_error err;
	char key[MB_SHA256_HEX_LEN];

	cr_assert_eq(syn()->generate(&l, 3, NULL, &err), 0, "%s", err.msg);
	for (size_t i = 0; i < l.n; i += 17) {
		cr_assert_eq(mb_item_key(key, l.items[i].stratum, l.items[i].cluster,
					 l.items[i].input, &err), 0);
		cr_expect_str_eq(key, l.items[i].key);
	}
	/* Changing any part of an item changes its key. */
	cr_assert_eq(mb_item_key(key, "hard", l.items[0].cluster, l.items[0].input, &err), 0);
	cr_expect_str_neq(key, l.items[0].key);
	mb_item_list_dispose(&l);
}

Test(synthetic, generator_rejects_unknown_or_out_of_range_params)
{
	mb_item_list l = {0};
	mb_error err;
	json_t *p = json_pack("{s:i}", "n_per_stratm", 3);
	cr_expect_eq(syn()->generate(&l, 1, p, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "params.n_per_stratm: unknown field") != NULL, "%s", err.msg);
	json_decref(p);
	p = json_pack("{s:i}", "dim", 65);
	cr_expect_eq(syn()->generate(&l, 1, p, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "params.dim") != NULL, "%s", err.msg);
	json_decref(p);
	mb_item_list_dispose(&l);
}

/* The task's values against the definition computed here, item by item. */
static void expect_values(const mb_item_list *l, const double *values, const double *w,
			  double b)
{
	double max_diff = 0;
	for (size_t i = 0; i < l->n; i++) {
		json_t *x = json_object_get(l->items[i].input, "x");
		double y = (double)json_integer_value(json_object_get(l->items[i].input, "y"));
		double z = b;
		for (size_t j = 0; j < json_array_size(x); j++)
			z += w[j] * (double)json_integer_value(json_array_get(x, j)) / 10.0;
		double m = y * z;
		double loss = log(1.0 + exp(-m));
		max_diff = fmax(max_diff, fabs(values[i * 3] - m));
		max_diff = fmax(max_diff, fabs(values[i * 3 + 2] - loss) / fmax(1.0, loss));
		cr_expect_eq(values[i * 3 + 1], m > 0 ? 1.0 : 0.0);
	}
	cr_log_info("synthetic values: max difference %g", max_diff);
	cr_expect(max_diff <= 1e-12, "max difference %g", max_diff);
}

Test(synthetic, values_match_the_definition_and_a_perturbed_model_moves_them)
{
	char dir[256];
	mb_item_list l = {0};
	mb_error err;
	void *good = NULL, *bad = NULL;
	const double wt[8] = {1, -1, 1, -1, 1, -1, 1, -1};
	const double wp[8] = {1, -1, 1, 1, -1, 1, 1, -1};
	double *v1, *v2;
	size_t moved = 0;

	mbt_tmpdir(dir, sizeof(dir));
	mbt_synthetic_model(dir, "good", wt, 8, 0);
	mbt_synthetic_model(dir, "bad", wp, 8, 0.25);
	cr_assert_eq(syn()->generate(&l, 5, NULL, &err), 0, "%s", err.msg);
	v1 = malloc(l.n * 3 * sizeof(double));
	v2 = malloc(l.n * 3 * sizeof(double));
	char path[512];
	snprintf(path, sizeof(path), "%s/good", dir);
	cr_assert_eq(syn()->open(&good, path, NULL, &err), 0, "%s", err.msg);
	snprintf(path, sizeof(path), "%s/bad", dir);
	cr_assert_eq(syn()->open(&bad, path, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_task_run(syn(), good, l.items, l.n, v1, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_task_run(syn(), bad, l.items, l.n, v2, &err), 0, "%s", err.msg);
	expect_values(&l, v1, wt, 0);
	expect_values(&l, v2, wp, 0.25);
	for (size_t i = 0; i < l.n; i++)
		moved += v1[i * 3] != v2[i * 3];
	cr_expect_gt(moved, l.n / 2, "the perturbed model changes most items (%zu)", moved);
	syn()->close(good);
	syn()->close(bad);
	free(v1);
	free(v2);
	mb_item_list_dispose(&l);
	mbt_rmtree(dir);
}

Test(synthetic, run_is_batch_invariant)
{
	char dir[256], path[512];
	mb_item_list l = {0};
	mb_error err;
	void *st = NULL;
	double *all, one[3];

	mbt_tmpdir(dir, sizeof(dir));
	mbt_true_model(dir, "m");
	snprintf(path, sizeof(path), "%s/m", dir);
	cr_assert_eq(syn()->generate(&l, 9, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(syn()->open(&st, path, NULL, &err), 0, "%s", err.msg);
	all = malloc(l.n * 3 * sizeof(double));
	cr_assert_eq(mb_task_run(syn(), st, l.items, l.n, all, &err), 0);
	for (size_t i = 0; i < l.n; i += 7) {
		cr_assert_eq(mb_task_run(syn(), st, &l.items[i], 1, one, &err), 0);
		cr_expect_eq(memcmp(one, &all[i * 3], sizeof(one)), 0, "item %zu alone", i);
	}
	syn()->close(st);
	free(all);
	mb_item_list_dispose(&l);
	mbt_rmtree(dir);
}

Test(synthetic, model_errors_name_the_file_line_and_field)
{
	char dir[256], path[512];
	mb_error err;
	void *st = NULL;

	mbt_tmpdir(dir, sizeof(dir));
	mbt_write(dir, "m/synthetic.json",
		  "{\"format\": \"mechbench-synthetic\", \"version\": 1,\n"
		  " \"w\": [1, \"two\"], \"b\": 0}\n");
	snprintf(path, sizeof(path), "%s/m", dir);
	cr_expect_eq(syn()->open(&st, path, NULL, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "synthetic.json:2:") != NULL, "%s", err.msg);
	cr_expect(strstr(err.msg, "w[1]") != NULL, "%s", err.msg);
	snprintf(path, sizeof(path), "%s/absent", dir);
	cr_expect_eq(syn()->open(&st, path, NULL, &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "absent/synthetic.json") != NULL, "%s", err.msg);
	mbt_rmtree(dir);
}

Test(synthetic, a_model_of_the_wrong_dimension_names_the_item)
{
	char dir[256], path[512];
	mb_item_list l = {0};
	mb_error err;
	void *st = NULL;
	double w[3] = {1, 2, 3}, v[3];

	mbt_tmpdir(dir, sizeof(dir));
	mbt_synthetic_model(dir, "m", w, 3, 0);
	snprintf(path, sizeof(path), "%s/m", dir);
	cr_assert_eq(syn()->generate(&l, 1, NULL, &err), 0);
	cr_assert_eq(syn()->open(&st, path, NULL, &err), 0, "%s", err.msg);
	cr_expect_eq(mb_task_run(syn(), st, l.items, 1, v, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, l.items[0].key) != NULL, "%s", err.msg);
	syn()->close(st);
	mb_item_list_dispose(&l);
	mbt_rmtree(dir);
}
