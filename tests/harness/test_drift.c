/*
 * Drift across checkpoints: discovery and order of a series, and the real
 * mechbench binary on synthetic series with a planted change (the model's
 * weights scale up at a known step): the change is found at that step, the
 * checkpoints after it leave their band and the monitor alarms; a series
 * without a change raises nothing; appending checkpoints one at a time gives
 * exactly the batch result; the monitor's p-values match an independent
 * evaluation of the mSPRT formula; bad inputs give one line and exit 1.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sqlite3.h>

#include <mechbench/drift.h>

#include "support/harness_support.h"
#include "support/report_support.h"


static char dir[256];

static void setup(void)
{
	mbt_tmpdir(dir, sizeof(dir));
}

static void teardown(void)
{
	mbt_rmtree(dir);
}

TestSuite(drift, .init = setup, .fini = teardown, .timeout = 300);

/* --- discovery ------------------------------------------------------------------------------ */

Test(drift, orders_checkpoints_by_training_state_step_not_by_name)
{
	char root[512];
	mb_drift_checkpoint *c = NULL;
	size_t n = 0;
	mb_error err;

	mbt_true_model(dir, "s/b");
	mbt_write(dir, "s/b/training_state.json", "{\"step\": 1000}");
	mbt_true_model(dir, "s/a");
	mbt_write(dir, "s/a/training_state.json", "{\"step\": 20}");
	mbt_true_model(dir, "s/c");
	mbt_write(dir, "s/c/training_state.json", "{\"step\": 300}");
	snprintf(root, sizeof(root), "%s/s", dir);
	cr_assert_eq(mb_drift_discover(&c, &n, root, &err), 0, "%s", err.msg);
	cr_assert_eq(n, 3);
	cr_expect_str_eq(c[0].name, "a");
	cr_expect_str_eq(c[1].name, "c");
	cr_expect_str_eq(c[2].name, "b");
	cr_expect(c[0].has_step && c[0].step == 20 && c[2].step == 1000);
	mb_drift_checkpoints_free(c, n);
}

Test(drift, orders_by_name_in_natural_order_without_training_state)
{
	char pattern[512];
	mb_drift_checkpoint *c = NULL;
	size_t n = 0;
	mb_error err;

	mbt_true_model(dir, "s/step_1000");
	mbt_true_model(dir, "s/step_200");
	mbt_true_model(dir, "s/step_30");
	mbt_write(dir, "s/not_a_folder.txt", "x");
	snprintf(pattern, sizeof(pattern), "%s/s/step_*", dir);
	cr_assert_eq(mb_drift_discover(&c, &n, pattern, &err), 0, "%s", err.msg);
	cr_assert_eq(n, 3);
	cr_expect_str_eq(c[0].name, "step_30");
	cr_expect_str_eq(c[1].name, "step_200");
	cr_expect_str_eq(c[2].name, "step_1000");
	cr_expect(!c[0].has_step);
	mb_drift_checkpoints_free(c, n);
}

Test(drift, orders_pythia_revision_folders_by_the_step_in_their_names)
{
	static const char *const names[] = {"step143000", "step1000", "step0", "step20000",
					    "step9"};
	static const int64_t order[] = {0, 9, 1000, 20000, 143000};
	char root[512], path[64];
	mb_drift_checkpoint *c = NULL;
	size_t n = 0;
	mb_error err;

	for (int i = 0; i < 5; i++) {
		snprintf(path, sizeof(path), "pythia/%s", names[i]);
		mbt_true_model(dir, path);
	}
	snprintf(root, sizeof(root), "%s/pythia", dir);
	cr_assert_eq(mb_drift_discover(&c, &n, root, &err), 0, "%s", err.msg);
	cr_assert_eq(n, 5);
	for (int i = 0; i < 5; i++) {
		cr_expect(c[i].has_step, "%s", c[i].name);
		cr_expect_eq(c[i].step, order[i], "checkpoint %d: %s, step %lld", i, c[i].name,
			     (long long)c[i].step);
	}
	mb_drift_checkpoints_free(c, n);

	/* training_state.json says otherwise: it wins over the name. */
	mbt_write(dir, "pythia/step9/training_state.json", "{\"step\": 150000}");
	cr_assert_eq(mb_drift_discover(&c, &n, root, &err), 0, "%s", err.msg);
	cr_expect_str_eq(c[4].name, "step9");
	cr_expect_eq(c[4].step, 150000);
	mb_drift_checkpoints_free(c, n);

	/* One folder without a step among stepN folders; and "step" alone. */
	mbt_true_model(dir, "pythia/main");
	cr_expect_eq(mb_drift_discover(&c, &n, root, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "pythia/main: no training_state.json (nor a name stepN)"), "%s",
		  err.msg);
	snprintf(root, sizeof(root), "%s/plain", dir);
	mbt_true_model(dir, "plain/step");
	mbt_true_model(dir, "plain/step1x");
	cr_assert_eq(mb_drift_discover(&c, &n, root, &err), 0, "%s", err.msg);
	cr_expect(!c[0].has_step && !c[1].has_step);
	mb_drift_checkpoints_free(c, n);
}

Test(drift, refuses_an_empty_mixed_or_ambiguous_series_naming_the_path)
{
	char root[512];
	mb_drift_checkpoint *c = NULL;
	size_t n = 0;
	mb_error err;

	snprintf(root, sizeof(root), "%s/empty", dir);
	mbt_write(dir, "empty/readme.txt", "no checkpoints here");
	cr_expect_eq(mb_drift_discover(&c, &n, root, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "empty series"), "%s", err.msg);

	snprintf(root, sizeof(root), "%s/none", dir);
	cr_expect_eq(mb_drift_discover(&c, &n, root, &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, root), "%s", err.msg);

	snprintf(root, sizeof(root), "%s/mixed", dir);
	mbt_true_model(dir, "mixed/a");
	mbt_write(dir, "mixed/a/training_state.json", "{\"step\": 1}");
	mbt_true_model(dir, "mixed/b");
	cr_expect_eq(mb_drift_discover(&c, &n, root, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "mixed/b: no training_state.json"), "%s", err.msg);

	snprintf(root, sizeof(root), "%s/dup", dir);
	mbt_true_model(dir, "dup/a");
	mbt_write(dir, "dup/a/training_state.json", "{\"step\": 5}");
	mbt_true_model(dir, "dup/b");
	mbt_write(dir, "dup/b/training_state.json", "{\"step\": 5}");
	cr_expect_eq(mb_drift_discover(&c, &n, root, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "the same step 5"), "%s", err.msg);

	snprintf(root, sizeof(root), "%s/bad", dir);
	mbt_true_model(dir, "bad/a");
	mbt_write(dir, "bad/a/training_state.json", "{\"step\": -3}");
	cr_expect_eq(mb_drift_discover(&c, &n, root, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "training_state.json") && strstr(err.msg, "step"), "%s",
		  err.msg);
}

/* --- planted changes, end to end --------------------------------------------------------------- */

static const json_t *metric(const json_t *doc, const char *name)
{
	json_t *ms = json_object_get(doc, "metrics"), *m;
	size_t i;
	json_array_foreach(ms, i, m)
		if (strcmp(json_string_value(json_object_get(m, "metric")), name) == 0)
			return m;
	cr_assert_fail("no metric %s in the drift report", name);
	return NULL;
}

static json_int_t step_of(const json_t *doc, json_int_t ordinal)
{
	json_t *c = json_array_get(json_object_get(doc, "checkpoints"), (size_t)ordinal);
	return json_integer_value(json_object_get(c, "step"));
}

Test(drift, finds_a_planted_change_at_its_step_and_flags_what_follows)
{
	json_t *doc;
	const json_t *score, *cps, *pts;
	size_t i;
	json_t *p;
	json_int_t main_ordinal;

	mbt_demo_suite(dir, 50);
	mbt_series(dir, "ckpts", 12, 250, 7, 0.3, 1.0, 0.03, 1);
	mbt_sh_ok(dir, MBT_CLI "drift --suite demo.json --series ckpts --db m.db --json d.json --quiet");
	doc = mbt_json_file(dir, "d.json");
	cr_assert_eq(json_array_size(json_object_get(doc, "checkpoints")), 12);
	score = metric(doc, "synthetic.score");
	cps = json_object_get(score, "changepoints");
	cr_assert(json_is_integer(json_object_get(score, "main_change")), "no main change");
	main_ordinal = json_integer_value(json_object_get(
		json_array_get(cps, (size_t)json_integer_value(json_object_get(score, "main_change"))),
		"ordinal"));
	cr_expect_eq(main_ordinal, 7, "main change at checkpoint %lld, planted at 7",
		     (long long)main_ordinal);
	cr_expect_eq(step_of(doc, main_ordinal), 1750);
	cr_expect_eq(json_array_size(cps), 1, "%zu changepoints", json_array_size(cps));
	/* Band: nothing leaves before the change; everything after it is better. */
	pts = json_object_get(score, "points");
	json_array_foreach(pts, i, p) {
		const char *band = json_string_value(json_object_get(p, "band"));
		if (i == 0)
			cr_expect_str_eq(band, "reference");
		else if (i < 7)
			cr_expect_str_eq(band, "inside", "checkpoint %zu", i);
		else
			cr_expect_str_eq(band, "better", "checkpoint %zu", i);
	}
	/* The monitor alarms after the change, never before it: its evidence is
	 * the running mean since the reference, so it needs a checkpoint or two
	 * past the jump. */
	cr_assert(json_is_object(json_object_get(score, "alarm")));
	{
		json_int_t a = json_integer_value(
			json_object_get(json_object_get(score, "alarm"), "ordinal"));
		printf("planted change at checkpoint 7, monitor alarm at %lld\n", (long long)a);
		cr_expect(a >= 7 && a <= 9, "alarm at checkpoint %lld", (long long)a);
	}
	/* The loss falls with the change: its main change is at the same step. */
	{
		const json_t *loss = metric(doc, "synthetic.loss");
		const json_t *lc = json_array_get(
			json_object_get(loss, "changepoints"),
			(size_t)json_integer_value(json_object_get(loss, "main_change")));
		cr_expect_eq(json_integer_value(json_object_get(lc, "ordinal")), 7);
		cr_expect_lt(json_real_value(json_object_get(lc, "after")),
			     json_real_value(json_object_get(lc, "before")));
	}
	json_decref(doc);
}

Test(drift, a_series_of_pythia_revision_folders_reports_their_steps)
{
	json_t *doc;
	char *html = NULL;

	mbt_demo_suite(dir, 50);
	mbt_series(dir, "ckpts", 12, 250, 7, 0.3, 1.0, 0.03, 0); /* no training_state.json */
	/* step_000250 -> step250, as Hugging Face revision folders are named */
	mbt_sh_ok(dir, "cd ckpts && for d in step_*; do n=${d#step_}; "
		       "mv \"$d\" \"step$(expr \"$n\" + 0)\"; done");
	mbt_sh_ok(dir, MBT_CLI "drift --suite demo.json --series ckpts --db m.db --json d.json "
			       "--html d.html --quiet");
	doc = mbt_json_file(dir, "d.json");
	cr_assert_eq(json_array_size(json_object_get(doc, "checkpoints")), 12);
	cr_expect(json_is_true(json_object_get(doc, "has_steps")));
	cr_expect_eq(step_of(doc, 0), 0);
	cr_expect_eq(step_of(doc, 4), 1000);
	cr_expect_eq(step_of(doc, 11), 2750);
	json_decref(doc);
	cr_assert_eq(mbt_sh(dir, "grep -c 'step 1750' d.html", &html), 0, "%s", html ? html : "");
	free(html);
}

Test(drift, raises_nothing_on_a_series_without_a_change)
{
	json_t *doc, *m;
	size_t i, k;
	json_t *p;

	mbt_demo_suite(dir, 50);
	mbt_series(dir, "ckpts", 10, 100, 99, 1.0, 1.0, 0.002, 1);
	mbt_sh_ok(dir, MBT_CLI "drift --suite demo.json --series ckpts --db m.db --json d.json --quiet");
	doc = mbt_json_file(dir, "d.json");
	json_array_foreach(json_object_get(doc, "metrics"), i, m) {
		const char *name = json_string_value(json_object_get(m, "metric"));
		cr_expect(json_is_null(json_object_get(m, "alarm")), "%s alarmed", name);
		cr_expect_eq(json_array_size(json_object_get(m, "changepoints")), 0,
			     "%s: %zu changepoints", name,
			     json_array_size(json_object_get(m, "changepoints")));
		json_array_foreach(json_object_get(m, "points"), k, p) {
			const char *band = json_string_value(json_object_get(p, "band"));
			cr_expect(strcmp(band, "worse") != 0 && strcmp(band, "better") != 0,
				  "%s checkpoint %zu left its band", name, k);
		}
	}
	json_decref(doc);
}

/* p_n of the mSPRT from its definition (sequential.h), written out here
 * independently of src/stats/sequential.c. */
static double msprt_p(const double *x, size_t n, double theta0, double s2, double t2)
{
	double p = 1, sum = 0;
	for (size_t k = 1; k <= n; k++) {
		double xbar, lambda;
		sum += x[k - 1];
		xbar = sum / (double)k;
		lambda = sqrt(s2 / (s2 + (double)k * t2)) *
			 exp((double)k * (double)k * t2 * (xbar - theta0) * (xbar - theta0) /
			     (2 * s2 * (s2 + (double)k * t2)));
		p = fmin(p, 1 / lambda);
	}
	return p;
}

Test(drift, monitor_p_values_match_the_msprt_formula)
{
	json_t *doc, *m;
	size_t i;
	double max_rel = 0;

	mbt_demo_suite(dir, 50);
	mbt_series(dir, "ckpts", 9, 10, 5, 0.6, 0.8, 0.03, 1);
	mbt_sh_ok(dir, MBT_CLI "drift --suite demo.json --series ckpts --db m.db --json d.json --quiet");
	doc = mbt_json_file(dir, "d.json");
	json_array_foreach(json_object_get(doc, "metrics"), i, m) {
		json_t *mon = json_object_get(m, "monitor"), *pts = json_object_get(m, "points");
		double theta0 = json_real_value(json_object_get(mon, "theta0"));
		double s2 = json_real_value(json_object_get(mon, "sigma2"));
		double t2 = json_real_value(json_object_get(mon, "tau2"));
		double x[16];
		size_t K = json_array_size(pts);
		cr_assert_lt(K, 17);
		cr_expect_gt(s2, 0);
		for (size_t k = 1; k < K; k++) {
			double want, got;
			x[k - 1] = json_real_value(json_object_get(json_array_get(pts, k), "mean"));
			want = msprt_p(x, k, theta0, s2, t2);
			got = json_real_value(json_object_get(json_array_get(pts, k), "p"));
			max_rel = fmax(max_rel, fabs(got - want) / fmax(want, 1e-300));
		}
	}
	printf("monitor p-values: max relative difference %.3g\n", max_rel);
	cr_expect_lt(max_rel, 1e-9, "max relative difference %.3g", max_rel);
	json_decref(doc);
}

Test(drift, entry_drifts_only_the_named_entries_and_append_keeps_them)
{
	char *out = NULL;
	json_t *doc, *m;
	size_t i;

	mbt_demo_suite(dir, 20);
	mbt_suite_add_entry(dir, "demo.json", "two.json", "toy2");
	mbt_series(dir, "ck", 4, 100, 2, 0.3, 1.0, 0.03, 1);

	/* A name that is no entry: one line naming it and the entries, nothing stored. */
	cr_expect_eq(mbt_sh(dir, MBT_CLI "drift --suite two.json --series ck --db m.db --entry toy2"
				 " --entry nope --quiet 2>&1", &out), 1);
	cr_expect(strstr(out, "two.json: no entry named 'nope' (entries: toy, toy2)") != NULL,
		  "%s", out);
	free(out);
	cr_expect_neq(mbt_sh(dir, "test -e m.db && sqlite3 m.db 'SELECT id FROM runs' | grep -q .",
			     NULL), 0, "stored nothing");

	mbt_sh_ok(dir, MBT_CLI "drift --suite two.json --series ck --db m.db --entry toy2 --json "
		       "d.json --quiet");
	doc = mbt_json_file(dir, "d.json");
	cr_expect_eq(json_array_size(json_object_get(doc, "metrics")), 3);
	json_array_foreach(json_object_get(doc, "metrics"), i, m)
		cr_expect_str_eq(json_string_value(json_object_get(m, "entry")), "toy2");
	json_decref(doc);
	cr_assert_eq(mbt_sh(dir, "sqlite3 m.db 'SELECT DISTINCT entry FROM item_values; SELECT "
				 "count(*) FROM runs'", &out), 0, "%s", out);
	cr_expect_str_eq(out, "toy2\n4\n");
	free(out);

	/* --append must name the entries the series holds */
	cr_expect_eq(mbt_sh(dir, MBT_CLI "drift --suite two.json --series ck --db m.db --append "
				 "--quiet 2>&1", &out), 1);
	cr_expect(strstr(out, "m.db: series 'demo:ck' holds entries toy2, not toy, toy2: append "
			      "with --entry for exactly those") != NULL, "%s", out);
	free(out);
	mbt_series(dir, "ck", 5, 100, 2, 0.3, 1.0, 0.03, 1);
	mbt_sh_ok(dir, MBT_CLI "drift --suite two.json --series ck --db m.db --append --entry "
		       "toy2 --json d.json --quiet");
	doc = mbt_json_file(dir, "d.json");
	cr_expect_eq(json_array_size(json_object_get(doc, "checkpoints")), 5);
	cr_expect_eq(json_array_size(json_object_get(doc, "metrics")), 3);
	json_decref(doc);
}

Test(drift, appending_one_checkpoint_at_a_time_gives_the_batch_result)
{
	char cmd[512];
	json_t *batch, *inc;

	mbt_demo_suite(dir, 30);
	mbt_series(dir, "all", 8, 100, 5, 0.3, 1.0, 0.03, 1);
	mbt_sh_ok(dir, MBT_CLI "drift --suite demo.json --series all --name s --db batch.db --json b.json --quiet");
	/* The same checkpoints arriving one by one into another folder. */
	for (int k = 0; k < 8; k++) {
		snprintf(cmd, sizeof(cmd), "mkdir -p live && cp -r all/step_%06d live/ && " MBT_CLI
			 "drift --suite demo.json --series live --name s --db inc.db --append "
			 "--json i.json --quiet", k * 100);
		mbt_sh_ok(dir, cmd);
	}
	batch = mbt_json_file(dir, "b.json");
	inc = mbt_json_file(dir, "i.json");
	/* Everything but the checkpoint paths (all/ vs live/) and the source. */
	json_object_del(batch, "source");
	json_object_del(inc, "source");
	json_object_del(batch, "checkpoints");
	json_object_del(inc, "checkpoints");
	cr_expect(json_equal(batch, inc), "appended series differs from the batch one");
	/* A checkpoint that would go before the series' end is refused. */
	mbt_sh_ok(dir, "mkdir -p live/early && cp all/step_000000/synthetic.json live/early/ && "
	      "echo '{\"step\": 250}' > live/early/training_state.json");
	{
		char *out = NULL;
		int rc = mbt_sh(dir, MBT_CLI "drift --suite demo.json --series live --name s --db inc.db --append "
			       "--quiet", &out);
		cr_expect_eq(rc, 1, "%s", out);
		cr_expect(strstr(out, "only grows at its end"), "%s", out);
		free(out);
	}
	json_decref(batch);
	json_decref(inc);
}

Test(drift, refuses_an_existing_series_without_append_and_a_changed_spec)
{
	char *out = NULL;
	int rc;

	mbt_demo_suite(dir, 20);
	mbt_series(dir, "ckpts", 3, 100, 9, 1.0, 1.0, 0.0, 1);
	mbt_sh_ok(dir, MBT_CLI "drift --suite demo.json --series ckpts --name s --db m.db --quiet");
	rc = mbt_sh(dir, MBT_CLI "drift --suite demo.json --series ckpts --name s --db m.db --quiet", &out);
	cr_expect_eq(rc, 1, "%s", out);
	cr_expect(strstr(out, "series 's' exists; pass --append"), "%s", out);
	free(out);
	mbt_sh_ok(dir, "sed -i 's/\"margin\": 1.0/\"margin\": 2.0/' demo.json");
	rc = mbt_sh(dir, MBT_CLI "drift --suite demo.json --series ckpts --name s --db m.db --append --quiet", &out);
	cr_expect_eq(rc, 1, "%s", out);
	cr_expect(strstr(out, "its bands would change"), "%s", out);
	free(out);
}

Test(drift, a_checkpoint_that_fails_leaves_the_stored_ones_and_no_half_run)
{
	char *out = NULL, db[512];
	sqlite3 *h;
	sqlite3_stmt *st;
	int rc, runs = -1, points = -1;

	mbt_demo_suite(dir, 20);
	mbt_series(dir, "ckpts", 4, 100, 9, 1.0, 1.0, 0.0, 1);
	mbt_write(dir, "ckpts/step_000200/synthetic.json", "{\"format\": \"mechbench-synthetic\"");
	rc = mbt_sh(dir, MBT_CLI "drift --suite demo.json --series ckpts --name s --db m.db --quiet", &out);
	cr_expect_eq(rc, 1, "%s", out);
	cr_expect(strstr(out, "step_000200/synthetic.json"), "%s", out);
	cr_expect_eq(mbt_count(out, "\n"), 1, "more than one line: %s", out);
	free(out);
	snprintf(db, sizeof(db), "%s/m.db", dir);
	cr_assert_eq(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(h, "SELECT (SELECT count(*) FROM runs), (SELECT count(*) "
				       "FROM series_points WHERE series = 's')", -1, &st, NULL),
		     SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW) {
		runs = sqlite3_column_int(st, 0);
		points = sqlite3_column_int(st, 1);
	}
	sqlite3_finalize(st);
	sqlite3_close(h);
	cr_expect_eq(runs, 2, "%d runs", runs);
	cr_expect_eq(points, 2, "%d series points", points);
}

Test(drift, bad_command_lines_and_inputs_give_one_line_and_a_non_zero_exit)
{
	static const struct {
		const char *args;
		int rc;
		const char *says;
	} cases[] = {
		{"drift --series ckpts", 2, "--suite FILE is required"},
		{"drift --suite demo.json", 2, "--series DIR_OR_GLOB is required"},
		{"drift --suite demo.json --series nowhere --db m.db", 1, "nowhere: not a folder"},
		{"drift --suite demo.json --series empty --db m.db", 1, "empty series"},
		{"drift --suite nosuch.json --series ckpts --db m.db", 1, "nosuch.json"},
		{"drift --suite demo.json --series ckpts --db m.db --html demo.json/x.html", 1,
		 "cannot write here"},
		{"drift --suite demo.json --series ckpts --penalty -1", 2, "--penalty"},
		/* a series name is checked as the spec's names are (it was stored
		 * empty, with a newline, or cut to 127 bytes) */
		{"drift --suite demo.json --series ckpts --db m.db --name ''", 2,
		 "--name: must not be empty"},
		{"drift --suite demo.json --series ckpts --db m.db --name \"$(printf 'a\\nb')\"", 2,
		 "--name: must not contain control characters (0x0a at offset 1)"},
		{"drift --suite demo.json --series ckpts --db m.db --name \"$(printf '%0130d' 0)\"", 2,
		 "--name: 130 bytes; at most 127"},
	};
	mbt_demo_suite(dir, 10);
	mbt_series(dir, "ckpts", 2, 100, 9, 1.0, 1.0, 0.0, 1);
	mbt_write(dir, "empty/.keep", "");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char cmd[512], *out = NULL;
		int rc;
		snprintf(cmd, sizeof(cmd), MBT_CLI "%s", cases[i].args);
		rc = mbt_sh(dir, cmd, &out);
		cr_expect_eq(rc, cases[i].rc, "case %zu (%s): exit %d: %s", i, cases[i].args, rc, out);
		cr_expect(strstr(out, cases[i].says), "case %zu (%s): %s", i, cases[i].args, out);
		if (cases[i].rc == 1)
			cr_expect_eq(mbt_count(out, "\n"), 1, "case %zu: not one line: %s", i, out);
		free(out);
	}
}

/* --- pre-registered phases ------------------------------------------------------------ */

/* demo.json with phases of synthetic.score: two phases, the given cost and
 * window text ("null" or "[a, b]"). */
static void phases_suite(const char *cost, const char *window)
{
	char extra[512], *spec;
	snprintf(extra, sizeof(extra),
		 "\"phases\": [{\"metric\": \"synthetic.score@1\", \"names\": [\"before\", "
		 "\"after\"], \"cost\": \"%s\", \"windows\": [%s]}],", cost, window);
	mbt_suite_fixture(dir, 50, extra, MBT_METRICS_ALL, &spec);
	mbt_write(dir, "demo.json", spec);
	free(spec);
}

static const json_t *phases_json(const json_t *doc)
{
	const json_t *ph = json_array_get(json_object_get(doc, "phases"), 0);
	cr_assert(json_is_object(ph), "the drift report has phases");
	return ph;
}

Test(drift, locates_pre_registered_phases_at_a_planted_change_inside_the_window)
{
	json_t *doc;
	const json_t *ph, *b, *phase1;
	char *html;

	phases_suite("mean", "[1500, 2000]");
	mbt_series(dir, "ckpts", 12, 250, 7, 0.3, 1.0, 0.03, 1);
	mbt_sh_ok(dir, MBT_CLI "drift --suite demo.json --series ckpts --db m.db --json d.json "
			       "--html d.html --quiet > out.txt");
	doc = mbt_json_file(dir, "d.json");
	ph = phases_json(doc);
	cr_expect_str_eq(json_string_value(json_object_get(ph, "metric")), "synthetic.score");
	cr_expect_str_eq(json_string_value(json_object_get(ph, "cost")), "mean");
	cr_expect(json_is_true(json_object_get(ph, "located")));
	b = json_array_get(json_object_get(ph, "boundaries"), 0);
	cr_expect_eq(json_integer_value(json_object_get(json_object_get(b, "at"), "step")), 1750,
		     "boundary at the planted step");
	cr_expect(json_is_true(json_object_get(b, "met")));
	phase1 = json_array_get(json_object_get(ph, "phases"), 0);
	cr_expect(json_is_integer(json_object_get(phase1, "first_step")));
	cr_expect_eq(json_integer_value(json_object_get(phase1, "first_step")), 0);
	cr_expect(json_is_integer(json_object_get(phase1, "last_step")));
	cr_expect_eq(json_integer_value(json_object_get(phase1, "last_step")), 1500);
	{
		char *out = mbt_read(dir, "out.txt");
		cr_expect(strstr(out, "phases of toy/synthetic.score@1") != NULL, "%s", out);
		cr_expect(strstr(out, "after") && strstr(out, "steps 1750 to 2750"), "%s", out);
		cr_expect(strstr(out, "window [1500, 2000] met") != NULL, "%s", out);
		free(out);
	}
	html = mbt_read(dir, "d.html");
	cr_expect(strstr(html, "<h2>Phases</h2>") != NULL);
	free(html);
	json_decref(doc);
}

Test(drift, a_boundary_outside_its_window_fails_with_exit_3)
{
	char *out = NULL;
	int rc;

	phases_suite("mean", "[250, 1000]");
	mbt_series(dir, "ckpts", 12, 250, 7, 0.3, 1.0, 0.03, 1);
	rc = mbt_sh(dir, MBT_CLI "drift --suite demo.json --series ckpts --db m.db --quiet", &out);
	cr_expect_eq(rc, 3, "exit %d: %s", rc, out);
	cr_expect(strstr(out, "window [250, 1000] MISSED") != NULL, "%s", out);
	cr_expect(strstr(out, "mechbench: drift: 1 phase boundary outside its pre-registered "
			      "window") != NULL, "%s", out);
	free(out);
}

Test(drift, a_series_too_short_for_its_phases_is_inconclusive_not_judged)
{
	char *out = NULL;
	int rc;

	phases_suite("linear", "[250, 1000]");
	mbt_series(dir, "ckpts", 5, 250, 3, 0.3, 1.0, 0.03, 1);
	rc = mbt_sh(dir, MBT_CLI "drift --suite demo.json --series ckpts --db m.db --quiet", &out);
	cr_expect_eq(rc, 4, "exit %d: %s", rc, out);
	cr_expect(strstr(out, "not located: too few checkpoints (5 checkpoints, 2 phases)") != NULL,
		  "%s", out);
	cr_expect(strstr(out, "1 pre-registered phase window not judged") != NULL, "%s", out);
	free(out);
}

Test(drift, a_constant_trajectory_has_no_phases_and_its_window_is_not_judged)
{
	json_t *doc;
	char *out = NULL;
	int rc;

	/* any split of a flat line costs the same: boundaries would be the
	 * tie-break's, so none is reported and the window is not judged */
	phases_suite("linear", "[250, 1000]");
	mbt_series(dir, "ckpts", 12, 250, 7, 1.0, 1.0, 0.0, 1);
	rc = mbt_sh(dir, MBT_CLI "drift --suite demo.json --series ckpts --db m.db --quiet "
			"--json d.json", &out);
	cr_expect_eq(rc, 4, "exit %d: %s", rc, out);
	cr_expect(strstr(out, "not located: the trajectory is constant") != NULL, "%s", out);
	doc = mbt_json_file(dir, "d.json");
	cr_expect(json_is_false(json_object_get(phases_json(doc), "located")));
	cr_expect_str_eq(json_string_value(json_object_get(phases_json(doc), "not_located")),
			 "the trajectory is constant");
	json_decref(doc);
	free(out);
}

Test(drift, windows_in_steps_are_refused_on_a_series_without_steps)
{
	char *out = NULL;
	int rc;

	phases_suite("mean", "[1500, 2000]");
	mbt_series(dir, "ckpts", 12, 250, 7, 0.3, 1.0, 0.03, 0); /* no training_state.json */
	rc = mbt_sh(dir, MBT_CLI "drift --suite demo.json --series ckpts --db m.db --quiet", &out);
	cr_expect_eq(rc, 1, "exit %d: %s", rc, out);
	cr_expect(strstr(out, "toy/synthetic.score: phases: windows are in training steps, but "
			      "the series' checkpoints have none") != NULL,
		  "%s", out);
	free(out);
	out = NULL;
	/* refused before anything ran: the database holds no run */
	rc = mbt_sh(dir, "test ! -e m.db || test \"$(sqlite3 m.db 'SELECT count(*) FROM runs')\" = 0",
		    &out);
	cr_expect_eq(rc, 0, "runs were stored before the refusal: %s", out);
	free(out);
}
