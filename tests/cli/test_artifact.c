/*
 * Per-entry artifacts end to end, with the real binary in a throw-away git
 * repository whose spec turns on the synthetic task's toy circuit
 * (params.circuit): `run` stores it and its JSON report carries it, `baseline
 * save` writes it, `gate` reports a changed circuit next to the metrics
 * without gating on it, a malformed one in a baseline is one error line,
 * shards merge with it and a shard whose artifact differs is refused, and
 * the HTML report draws it.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "support/harness_support.h"
#include "support/report_support.h"

#define GIT "git -c user.email=t@example.com -c user.name=t -c init.defaultBranch=main "

static char dir[256];

/* The gate tests' repository (harness_support.h) with the toy circuit on. */
static void setup_repo(void)
{
	mbt_gate_repo(dir, sizeof(dir),
		      "    \"params\": {\"circuit\": {\"top\": 3, \"resamples\": 20}},\n");
}

static void teardown_repo(void)
{
	mbt_rmtree(dir);
}

TestSuite(cli_artifact, .init = setup_repo, .fini = teardown_repo, .timeout = 300);

/* The baseline's artifact (a new reference) and the feature index of a
 * toy-circuit node id "a<l>.<h>" (4 heads a layer). */
static json_t *baseline_artifact(json_t **doc)
{
	*doc = mbt_json_file(dir, "baselines/demo.json");
	return json_object_get(json_array_get(json_object_get(*doc, "entries"), 0), "artifact");
}

static int feature_of(const char *id)
{
	int l = 0, h = 0;
	cr_assert_eq(sscanf(id, "a%d.%d", &l, &h), 2, "%s", id);
	return l * 4 + h;
}

/* The first feature that is not a node of circuit a. */
static int feature_outside(json_t *a)
{
	int in[8] = {0};
	json_t *nodes = json_object_get(a, "nodes");
	for (size_t i = 0; i < json_array_size(nodes); i++)
		in[feature_of(json_string_value(json_object_get(json_array_get(nodes, i), "id")))] = 1;
	for (int j = 0; j < 8; j++)
		if (!in[j])
			return j;
	cr_assert_fail("the circuit holds every feature");
	return -1;
}

static void commit_baseline(json_t *doc)
{
	char *text = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
	mbt_write(dir, "baselines/demo.json", text);
	free(text);
	mbt_sh_ok(dir, GIT "commit -qam 'baseline edited'");
}

Test(cli_artifact, run_and_baseline_carry_the_circuit_and_the_report_draws_it)
{
	json_t *doc, *a, *run;
	char *html = NULL;

	mbt_sh_ok(dir, MBT_CLI "run --suite benchmarks/demo.json --db run.db --quiet"
		       " --json out/run.json > /dev/null");
	run = mbt_json_file(dir, "out/run.json");

	a = json_object_get(json_array_get(json_object_get(run, "entries"), 0), "artifact");
	cr_assert(json_is_object(a), "run --json carries the artifact");
	cr_expect_str_eq(json_string_value(json_object_get(a, "kind")), "circuit");
	cr_expect_eq(json_array_size(json_object_get(a, "nodes")), 3);
	cr_expect(json_equal(a, baseline_artifact(&doc)), "the baseline holds the same circuit");
	json_decref(doc);
	json_decref(run);
	mbt_sh_ok(dir, MBT_CLI "report --run 1 --db run.db --html out/r.html");
	cr_assert_eq(mbt_sh(dir, "cat out/r.html", &html), 0);
	cr_expect(strstr(html, "<h3>Circuit</h3>") != NULL);
	cr_expect_eq(mbt_count(html, "<svg "), 4, "3 figures and the circuit: %zu",
		     mbt_count(html, "<svg "));
	cr_expect(strstr(html, "Circuit: layers as rows, heads as nodes") != NULL);
	cr_expect(strstr(html, ">layer ") != NULL, "layers as rows");
	cr_expect(strstr(html, ">logits</text>") != NULL && strstr(html, ">embed</text>") != NULL);
	cr_expect(strstr(html, "<th>stability</th><td>resamples 20, jaccard_mean ") != NULL,
		  "the artifact's numbers in a table");
	cr_expect(strstr(html, "<th>method</th><td>synthetic top-k") != NULL);
	cr_expect_null(strstr(html, "<script"));
	free(html);
}

Test(cli_artifact, a_changed_circuit_is_reported_next_to_the_metrics_not_gated)
{
	json_t *doc, *a = baseline_artifact(&doc), *node;
	char *out = NULL, *md, id[16], want[64];
	int j = feature_outside(a);

	/* the baseline's circuit with one node more: the candidate "lost" it,
	 * while every metric is bit for bit the same */
	snprintf(id, sizeof(id), "a%d.%d", j / 4, j % 4);
	node = json_pack("{s:s, s:i, s:i, s:s, s:f, s:f}", "id", id, "layer", j / 4, "head",
			 j % 4, "kind", "head", "effect", 0.5, "inclusion", 0.35);
	json_array_append_new(json_object_get(a, "nodes"), node);
	commit_baseline(doc);
	json_decref(doc);
	cr_assert_eq(mbt_sh(dir, MBT_CLI "gate --suite benchmarks/demo.json --baseline-ref HEAD"
			   " --quiet --report-md out/r.md --json out/r.json", &out), 0, "%s", out);
	cr_expect(strstr(out, "outcome: IDENTICAL (exit 0)") != NULL, "%s", out);
	cr_expect(strstr(out, "Artifacts (reported, not gating):\n  toy: circuit CHANGED, ") != NULL,
		  "%s", out);
	snprintf(want, sizeof(want), "    nodes removed: %s (effect 0.5, inclusion 0.35)\n", id);
	cr_expect(strstr(out, want) != NULL, "%s", out);
	cr_expect(strstr(out, "node Jaccard 0.75") != NULL, "3 of 4 nodes shared: %s", out);
	cr_expect(strstr(out, "    stability: baseline Jaccard ") != NULL, "%s", out);
	free(out);
	md = mbt_read(dir, "out/r.md");
	cr_expect(strstr(md, "\n### Artifacts\n") != NULL, "%s", md);
	cr_expect(strstr(md, "| nodes removed | ") != NULL, "%s", md);
	free(md);
	doc = mbt_json_file(dir, "out/r.json");
	a = json_array_get(json_object_get(doc, "artifacts"), 0);
	cr_expect_str_eq(json_string_value(json_object_get(a, "change")), "CHANGED");
	cr_expect(json_is_false(json_object_get(a, "gates")));
	cr_expect_eq(json_real_value(json_object_get(a, "node_jaccard")), 0.75);
	cr_expect_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(
			 json_object_get(a, "nodes"), "removed"), 0), "id")), id);
	cr_expect(json_is_object(json_object_get(json_object_get(a, "stability"), "baseline")));
	json_decref(doc);
}

Test(cli_artifact, a_model_that_moves_the_circuit_shows_the_node_it_added)
{
	json_t *doc, *a = baseline_artifact(&doc);
	double w[8] = {1, -1, 1, -1, 1, -1, 1, -1};
	char *out = NULL, want[64];
	int j = feature_outside(a), rc;

	json_decref(doc);
	w[j] *= 4; /* four times the weight: the largest contribution to the margin */
	mbt_synthetic_model(dir, "models/heavy", w, 8, 0);
	rc = mbt_sh(dir, MBT_CLI "gate --suite benchmarks/demo.json --baseline-ref HEAD --quiet"
		    " --model models/heavy", &out);
	cr_expect_neq(rc, 1, "a verdict, not an error: %s", out);
	snprintf(want, sizeof(want), "    nodes added: a%d.%d (effect ", j / 4, j % 4);
	cr_expect(strstr(out, "toy: circuit CHANGED, ") != NULL, "%s", out);
	cr_expect(strstr(out, want) != NULL, "%s", out);
	cr_expect(strstr(out, "    nodes removed: ") != NULL, "%s", out);
	free(out);
}

Test(cli_artifact, a_malformed_artifact_in_the_baseline_is_one_error_line)
{
	json_t *doc, *a = baseline_artifact(&doc);
	char *out = NULL;

	json_object_set_new(json_array_get(json_object_get(a, "nodes"), 0), "inclusion",
			    json_real(7));
	commit_baseline(doc);
	json_decref(doc);
	cr_expect_eq(mbt_sh(dir, MBT_CLI "gate --suite benchmarks/demo.json --baseline-ref HEAD"
			   " --quiet --json out/r.json 2>&1", &out), 1, "%s", out);
	cr_expect(strncmp(out, "mechbench: HEAD:baselines/demo.json:", 36) == 0, "%s", out);
	cr_expect(strstr(out, ": entries[0].artifact.nodes[0].inclusion: expected a finite number "
			      "in [0, 1]\n") != NULL, "%s", out);
	cr_expect_eq(mbt_count_lines(out), 1, "one line: %s", out);
	cr_expect_null(mbt_read(dir, "out/r.json"), "no report half-written");
	free(out);
}

Test(cli_artifact, shards_merge_with_their_artifact_and_a_differing_one_is_refused)
{
	char *one = NULL, *merged = NULL, *out = NULL;

	MBT_NEED_TOOL("sqlite3", "reading and editing the shards' artifacts");
	mbt_sh_ok(dir, MBT_CLI "run --suite benchmarks/demo.json --shard 0/2 --db s0.db --quiet"
		       " > /dev/null && " MBT_CLI "run --suite benchmarks/demo.json --shard 1/2"
		       " --db s1.db --quiet > /dev/null");
	mbt_sh_ok(dir, MBT_CLI "merge --db m.db --quiet s0.db s1.db");
	cr_assert_eq(mbt_sh(dir, "sqlite3 run.db 'SELECT kind, data FROM artifacts'", &one), 0);
	cr_assert_eq(mbt_sh(dir, "sqlite3 m.db 'SELECT kind, data FROM artifacts'", &merged), 0);
	cr_expect(strncmp(one, "circuit|{", 9) == 0, "%s", one);
	cr_expect_str_eq(merged, one, "the merged run's artifact is the one process's");
	free(one);
	free(merged);
	/* a shard whose circuit differs in one number */
	mbt_sh_ok(dir, "sqlite3 s1.db \"UPDATE artifacts SET data = json_set(data,"
		       " '$.nodes[0].effect', 123.5)\"");
	cr_expect_eq(mbt_sh(dir, MBT_CLI "merge --db m2.db --quiet s0.db s1.db 2>&1", &out), 1,
		     "%s", out);
	cr_expect_str_eq(out, "mechbench: s1.db: entry toy: the artifact differs from s0.db's at "
			      "artifact.nodes[0].effect; every shard computes it from all the "
			      "entry's items, so they must agree (is the task's prepare "
			      "deterministic?)\n");
	cr_expect_null(mbt_read(dir, "m2.db"), "no database left behind");
	free(out);
	/* from another directory the recorded spec path is not found: one line naming the
	 * shard and the way out */
	cr_expect_eq(mbt_sh(dir, "mkdir -p sub && cd sub && " MBT_CLI "merge --db ../m3.db --quiet"
			    " ../s0.db ../s1.db 2>&1", &out), 1, "%s", out);
	cr_expect_str_eq(out, "mechbench: ../s0.db: the spec the shards recorded, read from the "
			      "current directory (name it with --suite): benchmarks/demo.json: No "
			      "such file or directory\n");
	cr_expect_null(mbt_read(dir, "m3.db"), "no database left behind");
	free(out);
}
