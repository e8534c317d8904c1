/*
 * End to end: the real mechbench binary (MB_CLI_PATH) in a throw-away git
 * repository with a committed dataset, spec, model and baseline:
 *   an unchanged model          -> IDENTICAL, exit 0
 *   a perturbed model           -> REGRESSED, exit 3, the metric named
 *   an uncommitted threshold    -> THRESHOLD-CHANGED, exit 4, deviation printed
 *   a ref that does not resolve -> one clear error line, exit 1
 * and the reports: JUnit valid against tests/fixtures/junit/junit.xsd
 * (xmllint), markdown that is a table, JSON with the documented fields.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "support/harness_support.h"

#define GIT "git -c user.email=t@example.com -c user.name=t -c init.defaultBranch=main "
#define XSD MB_SOURCE_DIR "/tests/fixtures/junit/junit.xsd"

static char dir[256];

/* The repository every scenario starts from (harness_support.h). */
static void setup_repo(void)
{
	mbt_gate_repo(dir, sizeof(dir), "");
}

static void teardown_repo(void)
{
	mbt_rmtree(dir);
}

static void expect_junit_valid(const char *file)
{
	char cmd[1024], *out = NULL;
	snprintf(cmd, sizeof(cmd), "xmllint --noout --schema '%s' %s", XSD, file);
	cr_expect_eq(mbt_sh(dir, cmd, &out), 0, "%s: %s", file, out);
	free(out);
}

/* Every row of the first table has as many cells as its header, and the
 * second row is the |---| separator GitHub needs to render a table. */
static void expect_markdown_table(const char *md)
{
	const char *p = strstr(md, "\n| entry |");
	int cols = -1, rows = 0;

	cr_assert_not_null(p, "a table header: %s", md);
	for (p = p + 1; *p == '|'; rows++) {
		const char *end = strchr(p, '\n');
		int cells = 0;
		for (const char *c = p; c < end; c++)
			cells += *c == '|' && c[-1] != '\\';
		if (cols < 0)
			cols = cells;
		cr_expect_eq(cells, cols, "row %d: %.*s", rows, (int)(end - p), p);
		if (rows == 1)
			cr_expect_eq(strncmp(p, "|---|", 5), 0, "separator row");
		p = end + 1;
	}
	cr_expect_eq(rows, 2 + 3, "header, separator, one row per metric");
}

TestSuite(cli_gate, .init = setup_repo, .fini = teardown_repo, .timeout = 300);

Test(cli_gate, an_unchanged_model_is_identical_and_exits_0)
{
	char *out = NULL, *md, *json;
	json_t *doc;

	cr_assert_eq(mbt_sh(dir, MBT_CLI "gate --suite benchmarks/demo.json --baseline-ref HEAD --quiet"
			   " --junit out/j.xml --report-md out/r.md --json out/r.json --csv out/r.csv"
			   " 2>&1 || echo exit=$?", &out), 0);
	cr_expect(strstr(out, "exit=") == NULL, "exit 0: %s", out);
	cr_expect(strstr(out, "outcome: IDENTICAL (exit 0)") != NULL, "%s", out);
	cr_expect(strstr(out, "toy    synthetic.score@1") != NULL, "%s", out);
	free(out);
	expect_junit_valid("out/j.xml");
	md = mbt_read(dir, "out/r.md");
	cr_assert_not_null(md);
	expect_markdown_table(md);
	cr_expect(strstr(md, "— IDENTICAL (exit 0)") != NULL, "%s", md);
	/* every metric per stratum, in its own table */
	cr_expect(strstr(md, "\n### Per stratum\n") != NULL, "%s", md);
	cr_expect(strstr(md, "| toy | `synthetic.score@1` | easy | 100 | ") != NULL, "%s", md);
	cr_expect(strstr(md, "| toy | `synthetic.loss@1` | hard | 100 | ") != NULL, "%s", md);
	free(md);
	json = mbt_read(dir, "out/r.json");
	doc = json_loads(json, 0, NULL);
	cr_assert_not_null(doc);
	cr_expect_str_eq(json_string_value(json_object_get(doc, "outcome")), "IDENTICAL");
	cr_expect_eq(json_integer_value(json_object_get(doc, "exit_code")), 0);
	cr_expect_eq(json_array_size(json_object_get(doc, "metrics")), 3);
	json_t *m0 = json_array_get(json_object_get(doc, "metrics"), 0);
	cr_expect_str_eq(json_string_value(json_object_get(m0, "verdict")), "IDENTICAL");
	cr_expect(json_is_real(json_object_get(m0, "mde_planned")));
	json_t *strata = json_object_get(m0, "strata");
	cr_assert_eq(json_array_size(strata), 2, "strata of the dataset");
	for (size_t k = 0; k < 2; k++) {
		json_t *st = json_array_get(strata, k);
		cr_expect_str_eq(json_string_value(json_object_get(st, "name")), k ? "hard" : "easy");
		cr_expect_eq(json_integer_value(json_object_get(st, "n")), 100);
		cr_expect(json_is_false(json_object_get(st, "ood")));
		cr_expect_str_eq(json_string_value(json_object_get(st, "status")), "IDENTICAL");
		cr_expect(json_is_real(json_object_get(st, "candidate_mean")));
	}
	json_decref(doc);
	free(json);
	char *csv = mbt_read(dir, "out/r.csv");
	cr_expect(strncmp(csv, "suite,entry,metric,version,", 27) == 0);
	cr_expect(strstr(csv, "\ndemo,toy,synthetic.loss,1,1,ratio,lower,IDENTICAL,") != NULL, "%s",
		  csv);
	free(csv);
}

Test(cli_gate, a_perturbed_model_regresses_with_exit_3_naming_the_metric)
{
	char *out = NULL, *xml;
	int rc = mbt_sh(dir, MBT_CLI "gate --suite benchmarks/demo.json --baseline-ref HEAD --quiet"
		       " --model models/perturbed --junit out/j.xml --report-md out/r.md", &out);

	cr_expect_eq(rc, 3, "%s", out);
	cr_expect(strstr(out, "toy/synthetic.score: REGRESSED: synthetic.score ") != NULL, "%s",
		  out);
	cr_expect(strstr(out, "outcome: REGRESSED (exit 3)") != NULL, "%s", out);
	free(out);
	expect_junit_valid("out/j.xml");
	xml = mbt_read(dir, "out/j.xml");
	cr_expect(strstr(xml, "<testcase name=\"toy/synthetic.score@1\"") != NULL, "%s", xml);
	cr_expect(strstr(xml, "type=\"REGRESSED\"") != NULL, "%s", xml);
	cr_expect(strstr(xml, "failures=\"3\"") != NULL, "%s", xml);
	cr_expect(strstr(xml, "90% CI [") != NULL, "failures carry the numbers: %s", xml);
	free(xml);
	char *md = mbt_read(dir, "out/r.md");
	expect_markdown_table(md);
	cr_expect(strstr(md, "**REGRESSED**") != NULL, "%s", md);
	free(md);
}

Test(cli_gate, an_uncommitted_threshold_edit_is_threshold_changed)
{
	char *spec = mbt_read(dir, "benchmarks/demo.json"), *out = NULL;
	char *at = strstr(spec, "\"threshold\": 1.0");
	cr_assert_not_null(at);
	memcpy(at, "\"threshold\": 2.0", 16);
	mbt_write(dir, "benchmarks/demo.json", spec);
	free(spec);

	int rc = mbt_sh(dir, MBT_CLI "gate --suite benchmarks/demo.json --baseline-ref HEAD --quiet"
		       " --junit out/j.xml --json out/r.json", &out);
	cr_expect_eq(rc, 4, "%s", out);
	cr_expect(strstr(out, "THRESHOLD-CHANGED") != NULL, "%s", out);
	cr_expect(strstr(out, "tasks[toy].metrics[synthetic.score].threshold: 1.0 -> 2.0") != NULL,
		  "the deviation is printed: %s", out);
	cr_expect(strstr(out, "The gate used the registered spec") != NULL, "%s", out);
	cr_expect(strstr(out, ">= 1 met") != NULL, "the registered threshold applies: %s", out);
	free(out);
	expect_junit_valid("out/j.xml");
	char *json = mbt_read(dir, "out/r.json");
	json_t *doc = json_loads(json, 0, NULL);
	json_t *devs = json_object_get(doc, "deviations");
	cr_assert_eq(json_array_size(devs), 1);
	cr_expect_str_eq(json_string_value(json_object_get(json_array_get(devs, 0), "path")),
			 "tasks[toy].metrics[synthetic.score].threshold");
	json_t *m0 = json_array_get(json_object_get(doc, "metrics"), 0);
	cr_expect_str_eq(json_string_value(json_object_get(m0, "status")), "THRESHOLD-CHANGED");
	json_t *m1 = json_array_get(json_object_get(doc, "metrics"), 1);
	cr_expect_str_eq(json_string_value(json_object_get(m1, "status")), "IDENTICAL");
	json_decref(doc);
	free(json);
	/* --on-changed pass lets it through. */
	cr_expect_eq(mbt_sh(dir, MBT_CLI "gate --suite benchmarks/demo.json --baseline-ref HEAD --quiet"
			   " --on-changed pass >/dev/null", NULL), 0);
}

Test(cli_gate, a_baseline_ref_that_does_not_resolve_is_one_error_line_and_exit_1)
{
	char *out = NULL;
	int rc = mbt_sh(dir, MBT_CLI "gate --suite benchmarks/demo.json --baseline-ref no-such-ref 2>&1 >/dev/null",
		    &out);
	cr_expect_eq(rc, 1);
	cr_expect_eq(strncmp(out, "mechbench: --baseline-ref: git ref 'no-such-ref' does not "
				  "resolve", 63), 0, "%s", out);
	cr_expect_eq(strchr(out, '\n'), out + strlen(out) - 1, "exactly one line: %s", out);
	free(out);
}

Test(cli_gate, merge_base_gates_a_branch_against_where_it_left_main)
{
	char *out = NULL;
	/* main moves on with a tighter (committed) margin; the branch is judged
	 * against the merge base, where the baseline and the old spec live. */
	mbt_sh_ok(dir, GIT "checkout -q -b feature");
	mbt_sh_ok(dir, GIT "checkout -q main");
	char *spec = mbt_read(dir, "benchmarks/demo.json");
	char *at = strstr(spec, "\"margin\": 0.25");
	memcpy(at, "\"margin\": 0.35", 14);
	mbt_write(dir, "benchmarks/demo.json", spec);
	free(spec);
	mbt_sh_ok(dir, GIT "commit -qam 'main moves on'");
	mbt_sh_ok(dir, GIT "checkout -q feature");
	int rc = mbt_sh(dir, MBT_CLI "gate --suite benchmarks/demo.json --baseline-ref merge-base:main --quiet",
		    &out);
	cr_expect_eq(rc, 0, "%s", out);
	cr_expect(strstr(out, "baseline merge-base:main") != NULL, "%s", out);
	cr_expect(strstr(out, "THRESHOLD-CHANGED") == NULL, "%s", out);
	free(out);
}

Test(cli_gate, missing_baselines_and_uncommitted_specs_are_clear_errors)
{
	char *out = NULL;
	int rc = mbt_sh(dir, MBT_CLI "gate --suite benchmarks/demo.json --baseline-ref HEAD~1 2>&1", &out);
	cr_expect_eq(rc, 1, "%s", out);
	cr_expect(strstr(out, "baseline baselines/demo.json is not committed at HEAD~1") != NULL,
		  "%s", out);
	free(out);
	mbt_sh_ok(dir, "cp benchmarks/demo.json benchmarks/new.json");
	rc = mbt_sh(dir, MBT_CLI "gate --suite benchmarks/new.json --baseline-ref HEAD 2>&1", &out);
	cr_expect_eq(rc, 1, "%s", out);
	cr_expect(strstr(out, "benchmarks/new.json is not committed at HEAD") != NULL, "%s", out);
	free(out);
	rc = mbt_sh(dir, MBT_CLI "gate --suite benchmarks/demo.json 2>&1", &out);
	cr_expect_eq(rc, 2, "usage error: %s", out);
	free(out);
}

/* The MDE `power --suite` prints for synthetic.score (its table's fifth
 * column), NAN when the row is missing. */
static double power_suite_score_mde(const char *out)
{
	const char *row = strstr(out, "\ntoy ");
	char entry[64], metric[64], stratum[64];
	size_t n;
	double mde;

	if (!row || sscanf(row + 1, "%63s %63s %63s %zu %lf", entry, metric, stratum, &n, &mde) != 5 ||
	    strcmp(metric, "synthetic.score") != 0)
		return NAN;
	return mde;
}

Test(cli_gate, an_underpowered_gate_is_refused_before_running)
{
	char *out = NULL, *pout = NULL, *spec = mbt_read(dir, "benchmarks/demo.json");
	const char *at_mde;
	int rc;

	/* `power --suite` plans the registered margins as the gate does: all plan. */
	rc = mbt_sh(dir, MBT_CLI "power --suite benchmarks/demo.json 2>&1", &pout);
	cr_expect_eq(rc, 0, "%s", pout);
	cr_expect(strstr(pout, "every margin plans (3 metrics)") != NULL, "%s", pout);
	free(pout);

	/* A margin far below what 200 items can see: `power --suite` sees it in the
	 * working tree, before the commit; the gate refuses it once committed. */
	char *at = strstr(spec, "\"margin\": 1.0");
	memcpy(at, "\"margin\": 0.1", 13);
	mbt_write(dir, "benchmarks/demo.json", spec);
	free(spec);
	rc = mbt_sh(dir, MBT_CLI "power --suite benchmarks/demo.json 2>&1", &pout);
	cr_expect_eq(rc, 3, "%s", pout);
	cr_expect(strstr(pout, "REFUSED: needs n >= ") != NULL, "%s", pout);
	cr_expect(strstr(pout, "1 margin(s) of 3 metrics would be refused") != NULL, "%s", pout);
	mbt_sh_ok(dir, GIT "commit -qam 'tight margin'");
	rc = mbt_sh(dir, MBT_CLI "gate --suite benchmarks/demo.json --baseline-ref HEAD 2>&1", &out);
	cr_expect_eq(rc, 1, "%s", out);
	cr_expect(strstr(out, "gate refused before running") != NULL, "%s", out);
	at_mde = strstr(out, "toy/synthetic.score@1: MDE ");
	cr_expect(at_mde != NULL, "%s", out);
	/* the same number, printed by both at 4 significant digits */
	if (at_mde)
		cr_expect_eq(strtod(at_mde + strlen("toy/synthetic.score@1: MDE "), NULL),
			     power_suite_score_mde(pout), "gate: %s\npower: %s", out, pout);
	free(out);
	free(pout);

	/* an entry whose baseline file is missing is one error naming it */
	mbt_sh_ok(dir, "rm baselines/demo.json");
	rc = mbt_sh(dir, MBT_CLI "power --suite benchmarks/demo.json 2>&1", &pout);
	cr_expect_eq(rc, 1, "%s", pout);
	cr_expect(strstr(pout, "baselines/demo.json") != NULL, "%s", pout);
	free(pout);
}

Test(cli_gate, the_gate_stores_its_run_and_verdicts_when_asked)
{
	char *out = NULL;
	cr_expect_eq(mbt_sh(dir, MBT_CLI "gate --suite benchmarks/demo.json --baseline-ref HEAD --quiet"
			   " --db gate.db >/dev/null", NULL), 0);
	cr_expect_eq(mbt_sh(dir, "sqlite3 gate.db 'SELECT outcome, exit_code FROM gates;"
			" SELECT count(*) FROM comparisons; SELECT count(*) FROM item_values'",
			&out), 0);
	cr_expect_str_eq(out, "IDENTICAL|0\n3\n600\n");
	free(out);
}

Test(cli_gate, a_tampered_dataset_is_caught_by_datasets_verify)
{
	char *out = NULL;
	char *data = mbt_read(dir, "datasets/synthetic/toy.jsonl");
	char *y = strstr(strchr(data, '\n'), "\"y\":");
	cr_assert_not_null(y);
	y[4] = y[4] == '-' ? ' ' : '2'; /* flip the label of the first item */
	mbt_write(dir, "datasets/synthetic/toy.jsonl", data);
	free(data);
	int rc = mbt_sh(dir, MBT_CLI "datasets verify 2>&1", &out);
	cr_expect_eq(rc, 1, "%s", out);
	cr_expect(strstr(out, "toy.jsonl: sha256") != NULL, "%s", out);
	free(out);
	/* The gate then reads the registered dataset from git. */
	rc = mbt_sh(dir, MBT_CLI "gate --suite benchmarks/demo.json --baseline-ref HEAD --quiet 2>&1", &out);
	cr_expect_eq(rc, 0, "%s", out);
	cr_expect(strstr(out, "not the registered dataset; used the one committed at HEAD") !=
		  NULL, "%s", out);
	free(out);
}

/* The planted case end to end: a committed spec whose pool passes and whose
 * "hard" stratum registers a threshold it cannot meet; the exit code follows
 * the registered combine rule, and the stratum is named either way. */
Test(cli_gate, a_failing_stratum_exits_per_its_combine_rule)
{
	static const char *const rules[] = {"all", "pooled"};

	for (int i = 0; i < 2; i++) {
		char *spec = mbt_read(dir, "benchmarks/demo.json"), *out = NULL, text[8192];
		/* first the registration, then only its rule changes */
		const char *from = i == 0 ? "\"margin\": 1.0, \"threshold\": 1.0}"
					  : "\"combine\": \"all\"}";
		char *at = strstr(spec, from);
		cr_assert_not_null(at);
		if (i == 0)
			snprintf(text, sizeof(text), "%.*s\"margin\": 2.0, \"threshold\": -1000, "
				 "\"strata\": {\"hard\": {\"threshold\": 1000}}, \"combine\": "
				 "\"all\"}%s", (int)(at - spec), spec, at + strlen(from));
		else
			snprintf(text, sizeof(text), "%.*s\"combine\": \"pooled\"}%s",
				 (int)(at - spec), spec, at + strlen(from));
		free(spec);
		mbt_write(dir, "benchmarks/demo.json", text);
		mbt_sh_ok(dir, GIT "commit -qam 'register a stratum threshold'");
		int rc = mbt_sh(dir, MBT_CLI "gate --suite benchmarks/demo.json --baseline-ref HEAD "
			       "--quiet --strata --report-md out/r.md --json out/r.json", &out);
		cr_expect_eq(rc, i == 0 ? 3 : 0, "combine %s: %s", rules[i], out);
		cr_expect(strstr(out, "stratum hard THRESHOLD-FAILED") != NULL, "%s", out);
		cr_expect(strstr(out, ">= 1000 NOT MET") != NULL, "--strata prints it: %s", out);
		free(out);
		char *md = mbt_read(dir, "out/r.md");
		cr_expect(strstr(md, "| toy | `synthetic.score@1` | hard | 100 | ") != NULL, "%s", md);
		cr_expect(strstr(md, "**THRESHOLD-FAILED**") != NULL, "%s", md);
		cr_expect(strstr(md, i == 0 ? "gates (combine all)" : "reported (combine pooled)"),
			  "%s", md);
		free(md);
		char *json = mbt_read(dir, "out/r.json");
		json_t *doc = json_loads(json, 0, NULL), *m0;
		cr_assert_not_null(doc);
		m0 = json_array_get(json_object_get(doc, "metrics"), 0);
		cr_expect_str_eq(json_string_value(json_object_get(m0, "combine")), rules[i]);
		cr_expect_str_eq(json_string_value(json_object_get(m0, "pooled_status")), "IDENTICAL");
		cr_expect_eq(json_integer_value(json_object_get(doc, "exit_code")), i == 0 ? 3 : 0);
		json_decref(doc);
		free(json);
	}
}
