/* The runner: results bitwise identical for any thread count, aggregates by
 * the entry's design, model digests, and dataset checks against the spec. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/runner.h>
#include <mechbench/stats.h>

#include "support/harness_support.h"

typedef mbt_entry_fixture fixture;

Test(runner, results_are_bitwise_identical_for_any_thread_count)
{
	fixture f;
	mb_entry_result r1, r2, r3;

	mbt_entry_setup(&f, 150, "");
	mbt_entry_run(&f, &r1, 1);
	mbt_entry_run(&f, &r2, 2);
	mbt_entry_run(&f, &r3, 3);
	cr_assert_eq(r1.n_items, 300);
	cr_expect_eq(memcmp(r1.values, r2.values, 300 * 3 * sizeof(double)), 0);
	cr_expect_eq(memcmp(r1.values, r3.values, 300 * 3 * sizeof(double)), 0);
	cr_expect_eq(memcmp(r1.aggregates, r3.aggregates, 3 * sizeof(mb_aggregate)), 0,
		     "aggregates, bootstrap included");
	cr_expect_str_eq(r1.model, "models/true");
	cr_expect_str_eq(r1.items[17].key, f.d.items.items[17].key);
	mb_entry_result_dispose(&r1);
	mb_entry_result_dispose(&r2);
	mb_entry_result_dispose(&r3);
	mbt_entry_teardown(&f);
}

Test(runner, aggregates_follow_the_entry_design)
{
	fixture f;
	mb_entry_result r;
	mb_error err;
	double *col;
	mb_stats_summary s;

	/* Without strata or clusters: paired t on the raw values, bootstrap for ratio. */
	mbt_entry_setup(&f, 40, "");
	mbt_entry_run(&f, &r, 2);
	cr_expect_eq(r.aggregates[0].method, MB_STATS_METHOD_PAIRED_T);
	cr_expect_eq(r.aggregates[2].method, MB_STATS_METHOD_BOOT_BCA);
	col = malloc(r.n_items * sizeof(double));
	for (size_t i = 0; i < r.n_items; i++)
		col[i] = r.values[i * 3];
	cr_assert_eq(mb_stats_describe(&s, col, r.n_items, &err), 0);
	cr_expect_eq(r.aggregates[0].mean, s.mean);
	cr_expect_eq(r.aggregates[0].se, s.se);
	cr_expect_eq(r.aggregates[0].level, 0.95);
	cr_expect(r.aggregates[0].lo < s.mean && s.mean < r.aggregates[0].hi);
	free(col);
	mb_entry_result_dispose(&r);
	mbt_entry_teardown(&f);

	mbt_entry_setup(&f, 40, "\"strata\": {\"easy\": 0.5, \"hard\": 0.5},");
	mbt_entry_run(&f, &r, 2);
	cr_expect_eq(r.aggregates[0].method, MB_STATS_METHOD_STRATIFIED_T);
	mb_entry_result_dispose(&r);
	mbt_entry_teardown(&f);

	/* 8 clusters: clustered t with 7 df; the ratio metric: a cluster bootstrap. */
	mbt_entry_setup(&f, 40, "\"clusters\": true,");
	mbt_entry_run(&f, &r, 2);
	cr_expect_eq(r.aggregates[0].method, MB_STATS_METHOD_CLUSTERED_T);
	cr_expect_eq(r.aggregates[2].method, MB_STATS_METHOD_BOOT_BCA);
	mb_entry_result_dispose(&r);
	mbt_entry_teardown(&f);
}

Test(runner, cluster_indices_follow_first_appearance)
{
	mb_entry_result r;
	const char *labels[] = {"b", "a", "b", "c", "a"};
	uint32_t *idx = NULL;
	size_t n = 0;
	mb_error err;

	memset(&r, 0, sizeof(r));
	r.n_items = 5;
	r.items = calloc(5, sizeof(*r.items));
	for (size_t i = 0; i < 5; i++)
		r.items[i].cluster = (char *)labels[i];
	cr_assert_eq(mb_runner_cluster_index(&idx, &n, &r, &err), 0);
	cr_expect_eq(n, 3);
	uint32_t want[] = {0, 1, 0, 2, 1};
	cr_expect_eq(memcmp(idx, want, sizeof(want)), 0);
	free(idx);
	free(r.items);
}

Test(runner, model_digests_cover_exactly_the_files_a_model_loads_in_path_order)
{
	char dir[256], path[512];
	mb_file_digest *d = NULL;
	size_t n = 0;
	mb_error err;
	char hex[MB_SHA256_HEX_LEN];

	mbt_tmpdir(dir, sizeof(dir));
	mbt_write(dir, "m/tokenizer.json", "t");
	mbt_write(dir, "m/config.json", "c");
	mbt_write(dir, "m/model.safetensors.index.json",
		  "{\"weight_map\": {\"a\": \"model-1.safetensors\", \"b\": \"model-2.safetensors\"}}");
	mbt_write(dir, "m/model-1.safetensors", "1");
	mbt_write(dir, "m/model-2.safetensors", "2");
	mbt_write(dir, "m/notes.txt", "not loaded");
	mbt_write(dir, "m/checkpoints/step_100/config.json", "a checkpoint, not this model");
	mbt_write(dir, "m/.hidden", "h");
	snprintf(path, sizeof(path), "%s/m", dir);
	cr_assert_eq(mb_model_digest(&d, &n, path, &err), 0, "%s", err.msg);
	cr_assert_eq(n, 5);
	cr_expect_str_eq(d[0].path, "config.json");
	cr_expect_str_eq(d[1].path, "model-1.safetensors");
	cr_expect_str_eq(d[2].path, "model-2.safetensors");
	cr_expect_str_eq(d[3].path, "model.safetensors.index.json");
	cr_expect_str_eq(d[4].path, "tokenizer.json");
	mb_sha256_hex_buf(hex, "c", 1);
	cr_expect_str_eq(d[0].sha256, hex);
	cr_expect_eq(d[0].bytes, 1);
	mb_file_digests_free(d, n);
	/* a shard the index names must be there */
	snprintf(path, sizeof(path), "rm %s/m/model-2.safetensors", dir);
	cr_assert_eq(system(path), 0);
	snprintf(path, sizeof(path), "%s/m", dir);
	cr_expect_eq(mb_model_digest(&d, &n, path, &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "model-2.safetensors is missing"), "%s", err.msg);
	snprintf(path, sizeof(path), "%s/none", dir);
	cr_expect_eq(mb_model_digest(&d, &n, path, &err), MB_ENOTFOUND);
	mbt_rmtree(dir);
}

Test(runner, a_dataset_that_is_not_the_registered_one_is_refused)
{
	fixture f;
	mb_dataset d;
	mb_error err;

	mbt_entry_setup(&f, 10, "");
	/* Append a byte: the sha256 no longer matches the spec. */
	char *data = mbt_read(f.dir, "datasets/toy.jsonl");
	size_t n = strlen(data);
	data = realloc(data, n + 2);
	memcpy(data + n, "\n", 2);
	mbt_write(f.dir, "datasets/toy.jsonl", data);
	free(data);
	cr_expect_eq(mb_runner_load_dataset(&d, &f.spec.entries[0], f.dir, &err), MB_EMISMATCH);
	cr_expect(strstr(err.msg, "the spec registers") != NULL, "%s", err.msg);
	mbt_entry_teardown(&f);
}

Test(runner, registered_strata_must_match_the_dataset)
{
	fixture f;
	mb_dataset d;
	mb_error err;

	mbt_entry_spec(&f, 10, "\"strata\": {\"easy\": 0.5, \"mid\": 0.5},");
	cr_expect_eq(mb_runner_load_dataset(&d, &f.spec.entries[0], f.dir, &err), MB_EMISMATCH);
	cr_expect(strstr(err.msg, "is in stratum 'hard', which entry toy does not register") !=
		  NULL, "%s", err.msg);
	mbt_entry_teardown(&f);
}

/* A probe task: records the OpenMP team its run() is called from and the
 * team a nested region inside it gets (what a GEMM library's OpenMP loops get). */
#include <omp.h>

static int probe_max_nested, probe_max_omp, probe_calls;

static int probe_open(void **out, const char *dir, const json_t *params, mb_error *err)
{
	(void)dir;
	(void)params;
	(void)err;
	*out = &probe_calls;
	return 0;
}

static void probe_close(void *st)
{
	(void)st;
}

static int probe_run(void *st, const mb_item *items, size_t n, double *values, mb_error *err)
{
	int nested = 0, team = omp_get_num_threads();
	(void)st;
	(void)err;
	(void)items;
#pragma omp parallel num_threads(2)
	{
#pragma omp single
		nested = omp_get_num_threads();
	}
#pragma omp critical(probe)
	{
		if (nested > probe_max_nested)
			probe_max_nested = nested;
		if (team > probe_max_omp)
			probe_max_omp = team;
		probe_calls++;
	}
	for (size_t i = 0; i < n; i++)
		values[i] = (double)(i % 7);
	return 0;
}

static const mb_metric_def probe_metric[] = {
	{"probe.x", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER, "test probe"}};

static void run_probe(fixture *f, int parallel_inside)
{
	mb_task probe = {.name = "synthetic", .version = 1, .metrics = probe_metric,
			 .n_metrics = 1, .batch = 8, .parallel_inside = parallel_inside,
			 .open = probe_open, .close = probe_close, .run = probe_run};
	mb_spec_entry e = f->spec.entries[0];
	mb_entry_result r;
	mb_runner_opts o = {.threads = 2};
	mb_error err;
	char model[512];

	e.task = &probe;
	probe_max_nested = probe_max_omp = probe_calls = 0;
	snprintf(model, sizeof(model), "%s/models/true", f->dir);
	cr_assert_eq(mb_runner_run_entry(&r, &f->spec, &e, &f->d, f->dir, model, NULL, &o, &err),
		     0, "%s", err.msg);
	cr_expect_eq(probe_calls, (int)((r.n_items + 7) / 8), "fixed batches of the task's size");
	mb_entry_result_dispose(&r);
}

Test(runner, nested_regions_run_on_one_thread_inside_the_parallel_item_loop)
{
	fixture f;

	mbt_entry_setup(&f, 40, "");
	/* The harness sets no library's thread count: a GEMM inside an item is
	 * single-threaded because the GEMM layer runs it on the calling thread
	 * (tests/engine) and because a region nested in the item loop is inactive. */
	run_probe(&f, 0);
	cr_expect_eq(probe_max_nested, 1, "a nested region inside an item got %d threads",
		     probe_max_nested);
	cr_expect_eq(probe_max_omp, 2, "items run on a team of 2");
	/* A task that parallelises inside itself is called from one thread, and
	 * its own regions get the cores. */
	run_probe(&f, 1);
	cr_expect_eq(probe_max_nested, 2, "a region inside a parallel_inside task got %d threads",
		     probe_max_nested);
	cr_expect_eq(probe_max_omp, 1);
	mbt_entry_teardown(&f);
}

/* A task with path params (task.h path_params): what its open saw. */
static char seen_file[4096], seen_abs[256], seen_other[256];

static void seen(char *buf, size_t cap, const json_t *params, const char *key)
{
	const char *s = json_string_value(json_object_get(params, key));
	snprintf(buf, cap, "%s", s ? s : "(absent)");
}

static int paths_open(void **out, const char *dir, const json_t *params, mb_error *err)
{
	(void)dir;
	(void)err;
	seen(seen_file, sizeof(seen_file), params, "file");
	seen(seen_abs, sizeof(seen_abs), params, "abs");
	seen(seen_other, sizeof(seen_other), params, "other");
	*out = &probe_calls;
	return 0;
}

static int paths_run(void *st, const mb_item *items, size_t n, double *values, mb_error *err)
{
	(void)st;
	(void)items;
	(void)err;
	for (size_t i = 0; i < n; i++)
		values[i] = 1;
	return 0;
}

static int paths_figures(void *st, const mb_item *items, size_t n, const double *values,
			 mb_figure_list *out, mb_error *err)
{
	(void)st;
	(void)items;
	(void)n;
	(void)values;
	(void)out;
	(void)err;
	return 0;
}

Test(runner, path_params_are_joined_with_the_root_before_open_and_kept_as_written)
{
	static const char *const paths[] = {"file", "abs", NULL};
	mb_task t = {.name = "synthetic", .version = 1, .metrics = probe_metric, .n_metrics = 1,
		     .batch = 8, .open = paths_open, .close = probe_close, .run = paths_run,
		     .figures = paths_figures, .path_params = paths};
	json_t *params = json_pack("{s:s, s:s, s:s, s:i}", "file", "saes/x", "abs", "/abs/y",
				   "other", "saes/z", "n", 3);
	json_t *written = json_deep_copy(params);
	mb_runner_opts o = {.threads = 1};
	mb_figure_list figs = {0};
	mb_entry_result r;
	mb_spec_entry e;
	mb_error err;
	char model[512], want[512], root[4096];
	void *st = NULL;
	fixture f;

	mbt_entry_setup(&f, 10, "");
	e = f.spec.entries[0];
	e.task = &t;
	e.params = params;
	snprintf(model, sizeof(model), "%s/models/true", f.dir);
	/* the runner: only the declared, relative ones are joined */
	cr_assert_eq(mb_runner_run_entry(&r, &f.spec, &e, &f.d, f.dir, model, NULL, &o, &err), 0,
		     "%s", err.msg);
	snprintf(want, sizeof(want), "%s/saes/x", f.dir);
	cr_expect_str_eq(seen_file, want);
	cr_expect_str_eq(seen_abs, "/abs/y");
	cr_expect_str_eq(seen_other, "saes/z", "not declared a path");
	/* the result (what the store and baselines keep) and the spec: as written */
	cr_expect(json_equal(r.params, written), "stored params.file %s",
		  json_string_value(json_object_get(r.params, "file")));
	cr_expect(json_equal(params, written));
	/* the figures hook opens the same way */
	cr_assert_eq(mb_figure_compute(&figs, &t, "/r/", model, params, f.d.items.items,
				       f.d.items.n, r.values, &err), 0, "%s", err.msg);
	cr_expect_str_eq(seen_file, "/r/saes/x");
	/* no root: as written */
	cr_assert_eq(mb_task_open(&st, &t, NULL, model, params, &err), 0, "%s", err.msg);
	cr_expect_str_eq(seen_file, "saes/x");
	/* a joined path that does not fit: one line naming the param */
	memset(root, 'a', sizeof(root) - 1);
	root[sizeof(root) - 1] = '\0';
	cr_expect_eq(mb_task_open(&st, &t, root, model, params, &err), MB_EINVALID);
	cr_expect(strncmp(err.msg, "params.file: ", 13) == 0 && strstr(err.msg, "too long"), "%s",
		  err.msg);
	mb_figure_list_dispose(&figs);
	mb_entry_result_dispose(&r);
	json_decref(params);
	json_decref(written);
	mbt_entry_teardown(&f);
}

/* Per stratum: the same policy over the stratum's items alone, never the
 * registered weights (a stratum is not stratified). With registered weights
 * the pooled score is stratified-t and each stratum's is the paired t of its
 * own values; the ratio metric is a bootstrap per stratum. With clusters, a
 * stratum holding >= 2 clusters gets clustered t within it. */
Test(runner, each_stratum_gets_the_pooled_policy_over_its_own_items)
{
	static const char *const designs[] = {"\"strata\": {\"easy\": 0.5, \"hard\": 0.5},",
					      "\"clusters\": true,"};
	for (int d = 0; d < 2; d++) {
		fixture f;
		mb_entry_result r;
		mb_error err;

		mbt_entry_setup(&f, 40, designs[d]);
		mbt_entry_run(&f, &r, 2);
		cr_assert_eq(r.n_strata, 2);
		for (size_t k = 0; k < r.n_strata; k++) {
			const mb_stratum_result *st = &r.strata[k];
			double col[40];
			size_t n = 0;
			mb_stats_summary s;
			cr_expect_eq(st->n, 40);
			cr_expect(!st->ood);
			for (size_t i = 0; i < r.n_items; i++)
				if (strcmp(r.items[i].stratum, st->name) == 0)
					col[n++] = r.values[i * 3];
			cr_assert_eq(n, 40);
			cr_assert_eq(mb_stats_describe(&s, col, n, &err), 0);
			cr_expect_eq(st->aggregates[0].mean, s.mean);
			cr_expect_eq(st->aggregates[0].method,
				     d == 0 ? MB_STATS_METHOD_PAIRED_T : MB_STATS_METHOD_CLUSTERED_T,
				     "%s: %s", st->name, mb_stats_method_name(st->aggregates[0].method));
			if (d == 0)
				cr_expect_eq(st->aggregates[0].se, s.se);
			cr_expect_eq(st->aggregates[2].method, MB_STATS_METHOD_BOOT_BCA);
			cr_expect(st->aggregates[0].lo < s.mean && s.mean < st->aggregates[0].hi);
		}
		cr_expect_eq(r.aggregates[0].method, d == 0 ? MB_STATS_METHOD_STRATIFIED_T
							    : MB_STATS_METHOD_CLUSTERED_T);
		mb_entry_result_dispose(&r);
		mbt_entry_teardown(&f);
	}
}
