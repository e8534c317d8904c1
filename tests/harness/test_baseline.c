/* Baseline files: a run written and read back bit for bit, and malformed
 * files named by field. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/baseline.h>

#include "support/harness_support.h"

static void make_run(mb_run_result *run, char *dir, size_t cap)
{
	char *text, model[512];
	mb_spec spec;
	mb_dataset d;
	mb_error err;
	mb_runner_opts o = {.threads = 2};

	mbt_tmpdir(dir, cap);
	mbt_suite_fixture(dir, 20, "", MBT_METRICS_ALL, &text);
	cr_assert_eq(mb_spec_parse(&spec, text, strlen(text), "demo.json", &err), 0, "%s", err.msg);
	free(text);
	cr_assert_eq(mb_runner_load_dataset(&d, &spec.entries[0], dir, &err), 0, "%s", err.msg);
	memset(run, 0, sizeof(*run));
	mb_provenance_init(&run->prov, 2);
	snprintf(run->prov.suite, sizeof(run->prov.suite), "demo");
	snprintf(run->prov.spec_blob, sizeof(run->prov.spec_blob), "%040d", 7);
	run->id = 42;
	run->entries = calloc(1, sizeof(*run->entries));
	snprintf(model, sizeof(model), "%s/models/true", dir);
	cr_assert_eq(mb_runner_run_entry(&run->entries[0], &spec, &spec.entries[0], &d, model,
					 "models/true", &o, &err), 0, "%s", err.msg);
	run->n_entries = 1;
	mb_dataset_dispose(&d);
	mb_spec_dispose(&spec);
}

Test(baseline, a_run_reads_back_bit_for_bit)
{
	char dir[256];
	mb_run_result run, back;
	mb_error err;
	char *text = NULL;
	size_t len;

	make_run(&run, dir, sizeof(dir));
	cr_assert_eq(mb_baseline_render(&text, &len, &run, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_baseline_parse(&back, text, len, "b.json", &err), 0, "%s", err.msg);
	cr_expect_eq(back.id, 42);
	cr_expect_str_eq(back.prov.suite, "demo");
	cr_expect_str_eq(back.prov.cpu, run.prov.cpu);
	cr_assert_eq(back.n_entries, 1);
	const mb_entry_result *a = &run.entries[0], *b = &back.entries[0];
	cr_expect_str_eq(b->model, "models/true");
	cr_expect_str_eq(b->dataset_sha256, a->dataset_sha256);
	cr_assert_eq(b->n_items, a->n_items);
	cr_assert_eq(b->n_metrics, 3);
	cr_expect_eq(memcmp(a->values, b->values, a->n_items * 3 * sizeof(double)), 0,
		     "values survive JSON exactly");
	cr_expect_eq(b->metrics[2].kind, MB_METRIC_RATIO);
	cr_expect_eq(b->aggregates[0].mean, a->aggregates[0].mean);
	cr_expect_eq(b->aggregates[2].method, MB_STATS_METHOD_BOOT_BCA);
	for (size_t i = 0; i < a->n_items; i++)
		cr_expect_str_eq(b->items[i].key, a->items[i].key);
	/* Items are one per line, for readable diffs. */
	cr_expect(strstr(text, "\n      {\"key\": \"") != NULL || strstr(text, "\n      {\"key\":\"") != NULL);
	free(text);
	/* Rendering only one entry, and an entry that is not there. */
	cr_expect_eq(mb_baseline_render(&text, &len, &run, "toy", &err), 0);
	free(text);
	cr_expect_eq(mb_baseline_render(&text, &len, &run, "nope", &err), MB_ENOTFOUND);
	mb_run_result_dispose(&back);
	mb_run_result_dispose(&run);
	mbt_rmtree(dir);
}

Test(baseline, malformed_files_are_named_by_field)
{
	char dir[256];
	mb_run_result run, back;
	mb_error err;
	char *text = NULL, *bad;
	size_t len;

	make_run(&run, dir, sizeof(dir));
	cr_assert_eq(mb_baseline_render(&text, &len, &run, NULL, &err), 0);
	/* Drop the first item's last value. */
	bad = strdup(text);
	char *vals = strstr(bad, "\"values\":");
	char *comma = strchr(vals, ',');
	char *close = strchr(vals, ']');
	memmove(comma, close, strlen(close) + 1);
	cr_expect_eq(mb_baseline_parse(&back, bad, strlen(bad), "REF:b.json", &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "REF:b.json:") != NULL, "%s", err.msg);
	cr_expect(strstr(err.msg, "entries[0].items[0].values: expected 3 values") != NULL, "%s",
		  err.msg);
	free(bad);
	/* A duplicated item key. */
	bad = strdup(text);
	char *k1 = strstr(bad, "\"key\": \"") ? strstr(bad, "\"key\": \"") : strstr(bad, "\"key\":\"");
	char *k2 = strstr(k1 + 10, "\"key\"");
	char *q1 = strchr(k1 + 6, '"') + 1, *q2 = strchr(k2 + 6, '"') + 1;
	memcpy(q2, q1, 64);
	cr_expect_eq(mb_baseline_parse(&back, bad, strlen(bad), "b.json", &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "appears twice") != NULL, "%s", err.msg);
	free(bad);
	cr_expect_eq(mb_baseline_parse(&back, "[]", 2, "b.json", &err), MB_EINVALID);
	cr_expect_eq(mb_baseline_parse(&back, "{\"mechbench_baseline\": 2}", 25, "b.json", &err),
		     MB_EINVALID);
	cr_expect(strstr(err.msg, "mechbench_baseline") != NULL, "%s", err.msg);
	free(text);
	mb_run_result_dispose(&run);
	mbt_rmtree(dir);
}
