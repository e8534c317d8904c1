/* Baseline files: a run written and read back bit for bit, and malformed
 * files named by field. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/artifact.h>
#include <mechbench/baseline.h>

#include "support/harness_support.h"


Test(baseline, a_run_reads_back_bit_for_bit)
{
	char dir[256];
	mb_run_result run, back;
	mb_error err;
	char *text = NULL;
	size_t len;

	mbt_tmpdir(dir, sizeof(dir));
	mbt_run_fixture(&run, dir);
	run.id = 42;
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

	mbt_tmpdir(dir, sizeof(dir));
	mbt_run_fixture(&run, dir);
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

Test(baseline, an_artifact_reads_back_and_a_malformed_one_is_named_by_field)
{
	char dir[256], where[256];
	mb_run_result run, back;
	mb_error err;
	char *text = NULL, *bad, *at;
	size_t len;

	mbt_tmpdir(dir, sizeof(dir));
	mbt_run_fixture(&run, dir);
	cr_assert_eq(mb_baseline_render(&text, &len, &run, NULL, &err), 0, "%s", err.msg);
	cr_expect_null(strstr(text, "\"artifact\""), "no artifact, no key: files stay as before");
	free(text);
	run.entries[0].artifact = json_pack(
		"{s:s, s:i, s:[{s:s, s:i, s:i, s:s, s:f, s:f}], s:[], s:{s:i, s:f, s:f, s:f}}",
		"kind", "circuit", "version", 1, "nodes", "id", "a0.1", "layer", 0, "head", 1, "kind",
		"head", "effect", 0.1 + 0.2, "inclusion", 0.95, "edges", "stability", "resamples", 40,
		"jaccard_mean", 0.9, "jaccard_lo", 2.0 / 3.0, "jaccard_hi", 1.0);
	cr_assert_eq(mb_baseline_render(&text, &len, &run, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_baseline_parse(&back, text, len, "b.json", &err), 0, "%s", err.msg);
	cr_expect_eq(mb_artifact_first_diff(where, sizeof(where), run.entries[0].artifact,
					    back.entries[0].artifact, "artifact"), 0,
		     "differs at %s", where);
	cr_expect_eq(memcmp(run.entries[0].values, back.entries[0].values,
			    run.entries[0].n_items * 3 * sizeof(double)), 0);
	mb_run_result_dispose(&back);
	/* an inclusion frequency above 1: the file, line, column and field */
	bad = strdup(text);
	at = strstr(bad, "\"inclusion\": 0.94999999999999996");
	cr_assert_not_null(at, "%s", bad);
	memcpy(at + 13, "1.9", 3);
	cr_expect_eq(mb_baseline_parse(&back, bad, strlen(bad), "REF:baselines/b.json", &err),
		     MB_EINVALID);
	cr_expect(strncmp(err.msg, "REF:baselines/b.json:", 21) == 0, "%s", err.msg);
	cr_expect(strstr(err.msg, ": entries[0].artifact.nodes[0].inclusion: expected a finite "
				  "number in [0, 1]") != NULL, "%s", err.msg);
	free(bad);
	free(text);
	mb_run_result_dispose(&run);
	mbt_rmtree(dir);
}
