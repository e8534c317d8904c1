/*
 * The store's series and figures (results.h): a version-1 database is
 * migrated to version 2 keeping its runs, series and figures round-trip
 * inside a run's transaction, a rolled-back run leaves none of them, and an
 * unknown series is named with the ones that exist.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include <mechbench/results.h>
#include <mechbench/store.h>

#include "support/harness_support.h"

static char dir[256], db[512];

static void setup(void)
{
	mbt_tmpdir(dir, sizeof(dir));
	snprintf(db, sizeof(db), "%s/m.db", dir);
}

static void teardown(void)
{
	mbt_rmtree(dir);
}

TestSuite(results, .init = setup, .fini = teardown);

static void exec_raw(const char *sql)
{
	sqlite3 *h;
	cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(h));
	sqlite3_close(h);
}

static void exec_on(mb_store *s, const char *sql)
{
	cr_assert_eq(sqlite3_exec(mb_store_sqlite(s), sql, NULL, NULL, NULL), SQLITE_OK, "%s", sql);
}

static long long scalar(const char *sql)
{
	sqlite3 *h;
	sqlite3_stmt *st;
	long long v = -1;
	cr_assert_eq(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(h));
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(h);
	return v;
}

/* A run of one entry "toy" with no items, stored in an open transaction. */
static int64_t begin_run(mb_store *s)
{
	mb_provenance p;
	mb_entry_result e;
	mb_error err;
	int64_t id = 0;

	mb_provenance_init(&p, 1);
	snprintf(p.suite, sizeof(p.suite), "demo");
	cr_assert_eq(mb_store_run_begin(s, &id, &p, &err), 0, "%s", err.msg);
	memset(&e, 0, sizeof(e));
	e.name = "toy";
	e.task = "synthetic";
	e.task_version = 1;
	e.model = "m";
	e.dataset = "d.jsonl";
	cr_assert_eq(mb_store_run_put_entry(s, id, &e, &err), 0, "%s", err.msg);
	return id;
}

static void commit_run(mb_store *s, int64_t id)
{
	mb_provenance p;
	mb_error err;
	mb_provenance_init(&p, 1);
	mb_provenance_finish(&p, mb_runner_now());
	cr_assert_eq(mb_store_run_commit(s, id, &p, &err), 0, "%s", err.msg);
}

/* Back from schema 5 to 4: no artifacts table. */
#define UNDO_V5 "DROP TABLE artifacts; "

/* Back from schema 4 to the item_values table of schemas 1 to 3. */
#define UNDO_V4 UNDO_V5 \
	"DROP VIEW item_values; DROP TABLE item_value; DROP TABLE items; DROP TABLE metrics; " \
	"CREATE TABLE item_values (run_id INTEGER NOT NULL, entry TEXT NOT NULL, " \
	"metric TEXT NOT NULL, item_key TEXT NOT NULL, ordinal INTEGER NOT NULL, " \
	"stratum TEXT NOT NULL, cluster TEXT NOT NULL, value REAL NOT NULL, " \
	"PRIMARY KEY (run_id, entry, metric, item_key)) WITHOUT ROWID; " \
	"CREATE INDEX item_values_by_key ON item_values(item_key); "

Test(results, migrates_a_version_1_database_keeping_its_runs)
{
	mb_store *s = NULL;
	mb_error err;
	int64_t id;

	cr_assert_eq(mb_store_open(&s, db, NULL, &err), 0, "%s", err.msg);
	id = begin_run(s);
	commit_run(s, id);
	mb_store_free(s);
	/* Back to what a version-1 build wrote. */
	exec_raw(UNDO_V4 "DROP TABLE series_phases; DROP TABLE figures; DROP TABLE series_points; "
		 "DROP TABLE series_monitors; "
		 "DROP TABLE series; PRAGMA user_version = 1;");
	cr_assert_eq(scalar("SELECT count(*) FROM sqlite_master WHERE name = 'series'"), 0);
	cr_assert_eq(mb_store_open(&s, db, NULL, &err), 0, "%s", err.msg);
	mb_store_free(s);
	cr_expect_eq(scalar("PRAGMA user_version"), MB_STORE_SCHEMA_VERSION);
	cr_expect_eq(scalar("SELECT count(*) FROM sqlite_master WHERE name IN ('series', "
			    "'series_points', 'series_monitors', 'figures', 'series_phases', "
			    "'artifacts')"), 6);
	cr_expect_eq(scalar("SELECT count(*) FROM runs"), 1);
}

Test(results, migrates_a_version_2_database_to_hold_phases)
{
	mb_store *s = NULL;
	mb_error err;
	int64_t id;
	mb_results_phase rows[2] = {
		{"e", "m", "early", "linear", 1, 0, 0, 1, 0, 300, 0, 0, 0, -1, 8},
		{"e", "m", "late", "linear", 1, 1, 4, 1, 400, 700, 1, 350, 450, 1, 8},
	};
	mb_results_series sr;

	cr_assert_eq(mb_store_open(&s, db, NULL, &err), 0, "%s", err.msg);
	id = begin_run(s);
	commit_run(s, id);
	mb_store_free(s);
	exec_raw(UNDO_V4 "DROP TABLE series_phases; PRAGMA user_version = 2;");
	cr_assert_eq(mb_store_open(&s, db, NULL, &err), 0, "%s", err.msg);
	cr_expect_eq(scalar("PRAGMA user_version"), MB_STORE_SCHEMA_VERSION);
	cr_expect_eq(scalar("SELECT count(*) FROM runs"), 1);
	/* a series to hang the phases on, then the phases, twice: replaced, not added */
	memset(&sr, 0, sizeof(sr));
	snprintf(sr.name, sizeof(sr.name), "s");
	snprintf(sr.suite, sizeof(sr.suite), "demo");
	snprintf(sr.spec_path, sizeof(sr.spec_path), "b.json");
	snprintf(sr.spec_blob, sizeof(sr.spec_blob), "%040d", 0);
	snprintf(sr.source, sizeof(sr.source), "ck");
	snprintf(sr.created_at, sizeof(sr.created_at), "2026-01-01T00:00:00Z");
	sr.spec = "{}";
	sr.spec_len = 2;
	exec_on(s, "BEGIN");
	cr_assert_eq(mb_results_series_put(s, &sr, &err), 0, "%s", err.msg);
	exec_on(s, "COMMIT");
	cr_assert_eq(mb_results_series_put_phases(s, "s", rows, 2, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_results_series_put_phases(s, "s", rows, 2, &err), 0, "%s", err.msg);
	mb_store_free(s);
	cr_expect_eq(scalar("SELECT count(*) FROM series_phases WHERE series = 's'"), 2);
	cr_expect_eq(scalar("SELECT first_step FROM series_phases WHERE phase = 1"), 400);
	cr_expect_eq(scalar("SELECT window_met FROM series_phases WHERE phase = 1"), 1);
	cr_expect_eq(scalar("SELECT window_met IS NULL FROM series_phases WHERE phase = 0"), 1);
}

Test(results, series_and_figures_round_trip_in_a_runs_transaction)
{
	mb_store *s = NULL;
	mb_error err;
	mb_results_series sr, back;
	mb_results_point pt = {0, 1, 1500, "ckpts/step_1500", 0}, *pts = NULL;
	mb_results_monitor mon = {"toy", "synthetic.score", 1.5, 0.04, 1.0, 0.05}, *mons = NULL;
	mb_figure_list figs, got;
	mb_figure *f;
	size_t n = 0;
	int64_t id;

	memset(&sr, 0, sizeof(sr));
	memset(&figs, 0, sizeof(figs));
	memset(&got, 0, sizeof(got));
	snprintf(sr.name, sizeof(sr.name), "demo:ckpts");
	snprintf(sr.suite, sizeof(sr.suite), "demo");
	snprintf(sr.spec_path, sizeof(sr.spec_path), "demo.json");
	snprintf(sr.spec_blob, sizeof(sr.spec_blob), "%040d", 7);
	snprintf(sr.source, sizeof(sr.source), "ckpts");
	snprintf(sr.created_at, sizeof(sr.created_at), "2026-01-01T00:00:00Z");
	sr.spec = "{\"format\": 1}";
	sr.spec_len = strlen(sr.spec);
	cr_assert_eq(mb_figure_list_add(&figs, &f, MB_FIGURE_HEATMAP, "t.map", 2, 2, &err), 0);
	for (int i = 0; i < 4; i++)
		f->values[i] = 0.25 * i;

	cr_assert_eq(mb_store_open(&s, db, NULL, &err), 0, "%s", err.msg);
	id = begin_run(s);
	pt.run_id = id;
	cr_assert_eq(mb_results_series_put(s, &sr, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_results_series_put_monitor(s, sr.name, &mon, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_results_series_put_point(s, sr.name, &pt, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_results_put_figures(s, id, "toy", &figs, &err), 0, "%s", err.msg);
	commit_run(s, id);

	cr_assert_eq(mb_results_series_get(&back, s, "demo:ckpts", &err), 0, "%s", err.msg);
	cr_expect_str_eq(back.spec, "{\"format\": 1}");
	cr_expect_str_eq(back.source, "ckpts");
	mb_results_series_dispose(&back);
	cr_assert_eq(mb_results_series_points(&pts, &n, s, "demo:ckpts", &err), 0, "%s", err.msg);
	cr_assert_eq(n, 1);
	cr_expect(pts[0].has_step && pts[0].step == 1500 && pts[0].run_id == id);
	cr_expect_str_eq(pts[0].checkpoint, "ckpts/step_1500");
	mb_results_points_free(pts, n);
	cr_assert_eq(mb_results_series_monitors(&mons, &n, s, "demo:ckpts", &err), 0, "%s", err.msg);
	cr_assert_eq(n, 1);
	cr_expect(mons[0].theta0 == 1.5 && mons[0].sigma2 == 0.04 && mons[0].tau2 == 1.0);
	mb_results_monitors_free(mons, n);
	cr_assert_eq(mb_results_get_figures(&got, s, id, "toy", &err), 0, "%s", err.msg);
	cr_assert_eq(got.n, 1);
	cr_expect_eq(got.items[0].values[3], 0.75);

	/* An unknown series names those that exist. */
	cr_expect_eq(mb_results_series_get(&back, s, "nope", &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "no series 'nope' (series: demo:ckpts)"), "%s", err.msg);
	mb_store_free(s);
	mb_figure_list_dispose(&figs);
	mb_figure_list_dispose(&got);
}

Test(results, a_rolled_back_run_leaves_no_series_point_or_figure)
{
	mb_store *s = NULL;
	mb_error err;
	mb_figure_list figs;
	mb_figure *f;
	int64_t id;

	memset(&figs, 0, sizeof(figs));
	cr_assert_eq(mb_figure_list_add(&figs, &f, MB_FIGURE_STEM, "t.spec", 1, 3, &err), 0);
	cr_assert_eq(mb_store_open(&s, db, NULL, &err), 0, "%s", err.msg);
	id = begin_run(s);
	cr_assert_eq(mb_results_put_figures(s, id, "toy", &figs, &err), 0, "%s", err.msg);
	mb_store_run_abort(s);
	mb_store_free(s);
	cr_expect_eq(scalar("SELECT count(*) FROM figures"), 0);
	cr_expect_eq(scalar("SELECT count(*) FROM runs"), 0);
	mb_figure_list_dispose(&figs);
}
