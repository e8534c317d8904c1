/* `mechbench run` as a program: results stored and identical for any thread
 * count, progress only on a TTY (script(1) provides one) and never with
 * --quiet, JSON and CSV reports, and usage errors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "support/harness_support.h"


static char dir[256];

static void setup(void)
{
	char *spec;
	mbt_tmpdir(dir, sizeof(dir));
	mbt_suite_fixture(dir, 100, "\"params\": {\"delay_ms\": 2},", MBT_METRICS_ALL, &spec);
	mbt_write(dir, "spec.json", spec);
	free(spec);
}

static void teardown(void)
{
	mbt_rmtree(dir);
}

TestSuite(cli_run, .init = setup, .fini = teardown, .timeout = 120);

Test(cli_run, runs_are_stored_and_identical_for_any_thread_count)
{
	char *out = NULL;
	cr_assert_eq(mbt_sh(dir, MBT_CLI "run --suite spec.json --db r.db --threads 1 --csv a.csv"
				 " --json a.json --quiet", &out), 0, "%s", out);
	cr_expect(strstr(out, "mechbench run 1: suite demo") != NULL, "%s", out);
	cr_expect(strstr(out, "toy    synthetic.loss@1") != NULL, "%s", out);
	free(out);
	cr_assert_eq(mbt_sh(dir, MBT_CLI "run --suite spec.json --db r.db --threads 2 --csv b.csv"
				 " --quiet >/dev/null", NULL), 0);
	/* Every item value of run 1 equals run 2's, bit for bit (SQLite REAL). */
	cr_assert_eq(mbt_sh(dir, "sqlite3 r.db \"SELECT count(*) FROM item_values a JOIN"
				 " item_values b ON a.entry = b.entry AND a.metric = b.metric AND"
				 " a.item_key = b.item_key WHERE a.run_id = 1 AND b.run_id = 2 AND"
				 " a.value = b.value; SELECT threads FROM runs ORDER BY id\"", &out), 0);
	cr_expect_str_eq(out, "600\n1\n2\n");
	free(out);
	/* Same aggregates, bootstrap intervals included; only run_id differs. */
	cr_expect_eq(mbt_sh(dir, "cut -d, -f2- a.csv > a2 && cut -d, -f2- b.csv > b2 && cmp a2 b2",
			    &out), 0, "%s", out);
	free(out);
	char *j = mbt_read(dir, "a.json");
	json_t *doc = json_loads(j, 0, NULL);
	cr_assert_not_null(doc);
	cr_expect_eq(json_integer_value(json_object_get(doc, "run_id")), 1);
	json_t *prov = json_object_get(doc, "provenance");
	cr_expect_eq(json_integer_value(json_object_get(prov, "threads")), 1);
	cr_expect_eq(json_is_null(json_object_get(prov, "spec_committed")), 1, "not in git");
	json_t *e = json_array_get(json_object_get(doc, "entries"), 0);
	cr_expect_eq(json_integer_value(json_object_get(e, "n_items")), 200);
	cr_expect_eq(json_array_size(json_object_get(e, "metrics")), 3);
	json_decref(doc);
	free(j);
}

Test(cli_run, progress_shows_on_a_tty_only_and_never_with_quiet)
{
	char *out = NULL;
	/* script(1) gives the command a terminal. */
	cr_assert_eq(mbt_sh(dir, "script -qec \"" MBT_CLI "run --suite spec.json --db r.db\" /dev/null",
			    &out), 0, "%s", out);
	cr_expect(strstr(out, "/200 items") != NULL, "a progress bar: %s", out);
	cr_expect(strstr(out, "] 200/200 items") != NULL, "%s", out);
	free(out);
	cr_assert_eq(mbt_sh(dir, "script -qec \"" MBT_CLI "run --suite spec.json --db r.db --quiet\""
				 " /dev/null", &out), 0, "%s", out);
	cr_expect(strstr(out, "items") == NULL, "--quiet: %s", out);
	free(out);
	cr_assert_eq(mbt_sh(dir, MBT_CLI "run --suite spec.json --db r.db 2>&1 >/dev/null", &out), 0);
	cr_expect(strstr(out, "items") == NULL, "not a TTY: %s", out);
	cr_expect(strstr(out, "stored run 3 in r.db") != NULL, "%s", out);
	free(out);
}

Test(cli_run, bad_command_lines_and_inputs_exit_2_and_1)
{
	static const struct {
		const char *args, *expect;
		int code;
	} cases[] = {
		{"run", "--suite FILE is required", 2},
		{"run --suite", "--suite: needs a value", 2},
		{"run --suite spec.json --threads 0", "--threads", 2},
		{"run --suite spec.json --bogus", "unknown option '--bogus'", 2},
		{"run --suite nope.json", "nope.json: No such file or directory", 1},
		{"run --suite spec.json --model nowhere --db r.db", "nowhere", 1},
		{"baseline save --run 1 --out b.json --db absent.db", "absent.db", 1},
		{"baseline", "usage: mechbench baseline save", 2},
		{"baseline load", "unknown subcommand 'load'", 2},
		{"datasets verify --manifest nope", "nope: No such file or directory", 1},
		{"gate --suite spec.json --baseline-ref HEAD", "not inside a git repository", 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char cmd[512], *out = NULL;
		snprintf(cmd, sizeof(cmd), MBT_CLI "%s 2>&1 >/dev/null", cases[i].args);
		cr_expect_eq(mbt_sh(dir, cmd, &out), cases[i].code, "%s: %s", cases[i].args, out);
		cr_expect(strstr(out, cases[i].expect) != NULL, "%s: %s", cases[i].args, out);
		free(out);
	}
}

Test(cli_run, a_run_that_fails_leaves_no_run_behind)
{
	char *out = NULL;
	/* A model of the wrong dimension fails on the first item. */
	double w[3] = {1, 2, 3};
	mbt_synthetic_model(dir, "models/true", w, 3, 0);
	cr_expect_eq(mbt_sh(dir, MBT_CLI "run --suite spec.json --db r.db 2>&1", &out), 1);
	cr_expect(strstr(out, "entry toy: item ") != NULL, "%s", out);
	free(out);
	cr_assert_eq(mbt_sh(dir, "sqlite3 r.db 'SELECT count(*) FROM runs; PRAGMA integrity_check'",
			    &out), 0);
	cr_expect_str_eq(out, "0\nok\n");
	free(out);
}

Test(cli_run, entry_runs_only_the_named_entries_and_names_an_unknown_one)
{
	char *out = NULL;

	mbt_suite_add_entry(dir, "spec.json", "two.json", "toy2");

	cr_assert_eq(mbt_sh(dir, MBT_CLI "run --suite two.json --db r.db --entry toy2 --quiet",
			    &out), 0, "%s", out);
	cr_expect(strstr(out, "toy2   synthetic.loss@1") != NULL, "%s", out);
	cr_expect(strstr(out, "toy    synthetic.loss@1") == NULL, "%s", out);
	free(out);
	/* A name that is no entry: one line naming it and the entries, nothing stored. */
	cr_expect_eq(mbt_sh(dir, MBT_CLI "run --suite two.json --db r.db --entry toy --entry nope"
				 " --quiet 2>&1", &out), 1);
	cr_expect(strstr(out, "two.json: no entry named 'nope' (entries: toy, toy2)") != NULL,
		  "%s", out);
	free(out);
	/* Repeated and given out of order: the spec's order, each once. */
	cr_assert_eq(mbt_sh(dir, MBT_CLI "run --suite two.json --db r.db --entry toy2 --entry toy"
				 " --entry toy2 --quiet >/dev/null", NULL), 0);
	cr_assert_eq(mbt_sh(dir, "sqlite3 r.db \"SELECT run_id, entry, count(*) FROM item_values"
				 " GROUP BY run_id, entry ORDER BY run_id, entry; SELECT count(*)"
				 " FROM runs\"", &out), 0);
	cr_expect_str_eq(out, "1|toy2|600\n2|toy|600\n2|toy2|600\n2\n");
	free(out);
}
