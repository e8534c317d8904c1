/* Concurrent writers on one results database (issue 22 case 3): several
 * `run`s and a `drift` started together all succeed, every row is there and
 * the file passes integrity_check. Runs compute first and take the write
 * lock only for their short final transaction; a writer that finds the lock
 * taken waits (--db-timeout, default 10 minutes). */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>


#include "support/harness_support.h"
#include "support/report_support.h"

#define N_RUNS 6

static long long scalar(const char *dir, const char *sql)
{
	char cmd[1024], *out = NULL;
	long long v = -1;
	snprintf(cmd, sizeof(cmd), "sqlite3 m.db \"%s\"", sql);
	cr_assert_eq(mbt_sh(dir, cmd, &out), 0, "%s: %s", sql, out ? out : "");
	if (out)
		v = strtoll(out, NULL, 10);
	free(out);
	return v;
}

Test(concurrency, parallel_runs_and_a_drift_on_one_database_all_succeed, .timeout = 600)
{
	char dir[256], cmd[2048], *out = NULL;
	int rc;

	char *spec = NULL;

	mbt_tmpdir(dir, sizeof(dir));
	/* 400 items, 10 ms each: every run computes for 4 s. Holding the lock
	 * for the whole computation (before issue 22), the sixth writer waited
	 * past the old 5 s timeout and failed. */
	mbt_suite_fixture(dir, 200, "\"params\": {\"delay_ms\": 10},", MBT_METRICS_ALL, &spec);
	mbt_write(dir, "demo.json", spec);
	free(spec);
	mbt_series(dir, "ck", 4, 10, 3, 1.0, 1.0, 0.0, 1);
	/* each writer's exit code into rc.N; all started before any finishes */
	snprintf(cmd, sizeof(cmd),
		 "for i in 1 2 3 4 5 6; do (" MBT_CLI "run --suite demo.json --db m.db --quiet"
		 " --threads 1 > out.$i 2>&1; echo $? > rc.$i) & done;"
		 " (" MBT_CLI "drift --suite demo.json --series ck --name s --db m.db --quiet"
		 " --threads 1 > out.d 2>&1; echo $? > rc.d) & wait;"
		 " cat rc.1 rc.2 rc.3 rc.4 rc.5 rc.6 rc.d | tr -d '\\n'");
	rc = mbt_sh(dir, cmd, &out);
	cr_assert_eq(rc, 0, "%s", out);
	cr_expect_str_eq(out, "0000000", "exit codes of 6 runs and the drift: %s", out);
	if (strcmp(out, "0000000") != 0) {
		char *log = NULL;
		mbt_sh(dir, "cat out.*", &log);
		cr_log_error("%s", log ? log : "");
		free(log);
	}
	free(out);
	/* 6 runs + 4 checkpoints, each with all its rows (items x metrics) */
	cr_expect_eq(scalar(dir, "SELECT count(*) FROM runs WHERE finished_at IS NOT NULL"),
		     N_RUNS + 4);
	cr_expect_eq(scalar(dir, "SELECT min(n_items) FROM entries"), 400);
	cr_expect_eq(scalar(dir, "SELECT count(*) FROM item_value"), (N_RUNS + 4) * 400LL * 3);
	cr_expect_eq(scalar(dir, "SELECT count(*) FROM (SELECT run_id, count(*) c FROM item_value"
				 " GROUP BY run_id HAVING c = 1200)"), N_RUNS + 4);
	cr_expect_eq(scalar(dir, "SELECT count(*) FROM series_points"), 4);
	cr_expect_eq(mbt_sh(dir, "sqlite3 m.db 'PRAGMA integrity_check' | grep -qx ok", NULL), 0);
	cr_expect_eq(mbt_sh(dir, MBT_CLI "db check --db m.db > /dev/null", NULL), 0);
	mbt_rmtree(dir);
}

/* A writer that cannot get the lock within --db-timeout fails cleanly,
 * naming the option, and stores nothing. */
Test(concurrency, a_writer_that_waits_past_its_timeout_fails_cleanly, .timeout = 120)
{
	char dir[256], *out = NULL;
	int rc;

	mbt_tmpdir(dir, sizeof(dir));
	mbt_demo_suite(dir, 20);
	mbt_sh_ok(dir, MBT_CLI "run --suite demo.json --db m.db --quiet > /dev/null");
	/* hold the write lock for 3 s from another connection */
	rc = mbt_sh(dir, "(sqlite3 m.db 'BEGIN IMMEDIATE; SELECT 1;' \".system sleep 3\" 'COMMIT;'"
			 " > /dev/null &) ; sleep 0.5; " MBT_CLI "run --suite demo.json --db m.db"
			 " --db-timeout 0.5 --quiet", &out);
	cr_expect_eq(rc, 1, "%s", out);
	cr_expect(strstr(out, "locked") && strstr(out, "--db-timeout"), "%s", out);
	free(out);
	sleep(3);
	cr_expect_eq(scalar(dir, "SELECT count(*) FROM runs"), 1);
	mbt_rmtree(dir);
}
