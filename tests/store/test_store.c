/* The results store: runs round-trip exactly, the schema is versioned, and
 * faults (a run killed mid-transaction, a locked or read-only database, a
 * file that is not ours) leave no trace and give one clear error. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include <mechbench/artifact.h>
#include <mechbench/dataset.h>
#include <mechbench/results.h>
#include <mechbench/store.h>

#include "support/harness_support.h"


static long long scalar(const char *db, const char *sql)
{
	sqlite3 *h;
	sqlite3_stmt *st;
	long long v = -1;
	cr_assert_eq(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK, "%s",
		     sqlite3_errmsg(h));
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(h);
	return v;
}

static void text_of(const char *db, const char *sql, char *out, size_t cap)
{
	sqlite3 *h;
	sqlite3_stmt *st;
	cr_assert_eq(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	out[0] = '\0';
	if (sqlite3_step(st) == SQLITE_ROW)
		snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(h);
}

static void exec_raw(const char *db, const char *sql)
{
	sqlite3 *h;
	cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(h));
	sqlite3_close(h);
}

Test(store, a_run_round_trips_exactly)
{
	char dir[256], db[512], mode[32];
	mb_store *s;
	mb_run_result run, back;
	mb_error err;

	mbt_tmpdir(dir, sizeof(dir));
	snprintf(db, sizeof(db), "%s/r.db", dir);
	mbt_run_fixture(&run, dir);
	snprintf(run.prov.spec_blob, sizeof(run.prov.spec_blob), "%040d", 5);
	cr_assert_eq(mb_store_open(&s, db, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_store_put_run(s, &run, &err), 0, "%s", err.msg);
	cr_expect_eq(run.id, 1);
	cr_assert_eq(mb_store_get_run(&back, s, run.id, &err), 0, "%s", err.msg);
	cr_expect_str_eq(back.prov.spec_blob, "0000000000000000000000000000000000000005");
	cr_expect_str_eq(back.prov.spec_path, "benchmarks/demo.json");
	cr_expect_str_eq(back.prov.blas_config, run.prov.blas_config);
	cr_expect_eq(back.prov.spec_committed, -1);
	cr_expect_eq(back.prov.threads, 2);
	cr_assert_eq(back.n_entries, 1);
	const mb_entry_result *a = &run.entries[0], *b = &back.entries[0];
	cr_assert_eq(b->n_items, a->n_items);
	cr_assert_eq(b->n_metrics, a->n_metrics);
	cr_expect_eq(memcmp(a->values, b->values, a->n_items * a->n_metrics * sizeof(double)), 0);
	cr_expect_str_eq(b->items[5].key, a->items[5].key);
	cr_expect_str_eq(b->items[5].cluster, a->items[5].cluster);
	cr_expect_str_eq(b->model_files[0].sha256, a->model_files[0].sha256);
	cr_expect_eq(b->aggregates[1].mean, a->aggregates[1].mean);
	cr_expect_eq(b->aggregates[2].method, a->aggregates[2].method);
	cr_expect_eq(mb_store_get_run(&back, s, 99, &err), MB_ENOTFOUND);
	mb_store_free(s);
	text_of(db, "PRAGMA journal_mode", mode, sizeof(mode));
	cr_expect_str_eq(mode, "wal");
	cr_expect_eq(scalar(db, "PRAGMA user_version"), MB_STORE_SCHEMA_VERSION);
	cr_expect_eq(scalar(db, "SELECT count(*) FROM item_values"), 40 * 3);
	cr_expect_eq(scalar(db, "SELECT count(*) FROM runs WHERE finished_at IS NOT NULL"), 1);
	mb_run_result_dispose(&back);
	mb_run_result_dispose(&run);
	mbt_rmtree(dir);
}

Test(store, an_entry_artifact_round_trips_bit_for_bit_and_a_bad_one_is_named)
{
	char dir[256], db[512], where[256], want[1024];
	mb_store *s;
	mb_run_result run, back;
	mb_error err;

	mbt_tmpdir(dir, sizeof(dir));
	snprintf(db, sizeof(db), "%s/r.db", dir);
	mbt_run_fixture(&run, dir);
	cr_assert_eq(mb_store_open(&s, db, NULL, &err), 0, "%s", err.msg);
	/* a run without an artifact stores no artifacts row */
	cr_assert_eq(mb_store_put_run(s, &run, &err), 0, "%s", err.msg);
	run.entries[0].artifact = json_pack(
		"{s:s, s:i, s:[{s:s, s:i, s:i, s:s, s:f, s:f}], s:[{s:s, s:s, s:s, s:f}]}", "kind",
		"circuit", "version", 1, "nodes", "id", "a1.2", "layer", 1, "head", 2, "kind",
		"head", "effect", 0.1 + 0.2, "inclusion", 1.0 / 3.0, "edges", "from", "a1.2", "to",
		"logits", "via", "resid", "effect", -1e-300);
	cr_assert_not_null(run.entries[0].artifact);
	cr_assert_eq(mb_store_put_run(s, &run, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_store_get_run(&back, s, 1, &err), 0, "%s", err.msg);
	cr_expect_null(back.entries[0].artifact);
	mb_run_result_dispose(&back);
	cr_assert_eq(mb_store_get_run(&back, s, 2, &err), 0, "%s", err.msg);
	cr_expect_eq(mb_artifact_first_diff(where, sizeof(where), run.entries[0].artifact,
					    back.entries[0].artifact, "artifact"), 0,
		     "differs at %s", where);
	mb_run_result_dispose(&back);
	mb_store_free(s);
	cr_expect_eq(scalar(db, "SELECT count(*) FROM artifacts"), 1);
	text_of(db, "SELECT kind FROM artifacts WHERE run_id = 2 AND entry = 'toy'", where,
		sizeof(where));
	cr_expect_str_eq(where, "circuit");
	/* a stored artifact that is not valid is named by database, run, entry, field */
	exec_raw(db, "UPDATE artifacts SET data = '{\"kind\": \"circuit\", \"version\": 1, "
		     "\"nodes\": [], \"edges\": [{\"from\": \"a1.0\", \"to\": \"logits\", "
		     "\"via\": \"resid\", \"effect\": 1}]}'");
	cr_assert_eq(mb_store_open(&s, db, NULL, &err), 0, "%s", err.msg);
	cr_expect_eq(mb_store_get_run(&back, s, 2, &err), MB_EINVALID);
	snprintf(want, sizeof(want), "%s: run 2 entry toy: artifact.edges[0].from: 'a1.0' is not a "
		 "node of this circuit (nor \"embed\")", db);
	cr_expect_str_eq(err.msg, want);
	exec_raw(db, "UPDATE artifacts SET data = '{\"kind\": '");
	cr_expect_eq(mb_store_get_run(&back, s, 2, &err), MB_EINVALID);
	snprintf(want, sizeof(want), "%s: run 2 entry toy: artifact: 1:", db);
	cr_expect(strncmp(err.msg, want, strlen(want)) == 0, "%s", err.msg);
	mb_store_free(s);
	/* deleting a run deletes its artifact with its entries */
	exec_raw(db, "PRAGMA foreign_keys = ON; DELETE FROM runs WHERE id = 2");
	cr_expect_eq(scalar(db, "SELECT count(*) FROM artifacts"), 0);
	mb_run_result_dispose(&run);
	mbt_rmtree(dir);
}

Test(store, gates_are_recorded_with_one_row_per_metric)
{
	char dir[256], db[512], *text;
	mb_store *s;
	mb_run_result run;
	mb_spec spec;
	mb_gate_result g;
	mb_error err;
	int64_t gate_id;

	mbt_tmpdir(dir, sizeof(dir));
	snprintf(db, sizeof(db), "%s/r.db", dir);
	mbt_run_fixture(&run, dir);
	mbt_suite_fixture(dir, 20, "", MBT_METRICS_ALL, &text);
	cr_assert_eq(mb_spec_parse(&spec, text, strlen(text), "demo.json", &err), 0);
	free(text);
	cr_assert_eq(mb_store_open(&s, db, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_store_put_run(s, &run, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_gate_init(&g, &spec, "benchmarks/demo.json", "main", "c0ffee", "b10b",
				  &err), 0);
	g.rows[0].metric_changed = 1;
	mb_gate_finish(&g, MB_GATE_POLICY_EXIT4, MB_GATE_POLICY_EXIT4);
	g.run_id = run.id;
	cr_assert_eq(mb_store_put_gate(s, &gate_id, &g, &err), 0, "%s", err.msg);
	mb_store_free(s);
	cr_expect_eq(scalar(db, "SELECT count(*) FROM comparisons"), 3);
	cr_expect_eq(scalar(db, "SELECT exit_code FROM gates"), 4);
	cr_expect_eq(scalar(db, "SELECT count(*) FROM comparisons WHERE status = 'METRIC-CHANGED'"), 1);
	mb_gate_dispose(&g);
	mb_spec_dispose(&spec);
	mb_run_result_dispose(&run);
	mbt_rmtree(dir);
}

Test(store, files_that_are_not_our_schema_are_refused)
{
	char dir[256], db[512];
	mb_store *s;
	mb_error err;

	mbt_tmpdir(dir, sizeof(dir));
	snprintf(db, sizeof(db), "%s/newer.db", dir);
	exec_raw(db, "CREATE TABLE t(x); PRAGMA user_version = 99;");
	cr_expect_eq(mb_store_open(&s, db, NULL, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "schema version 99 is newer than this build's") != NULL, "%s",
		  err.msg);
	snprintf(db, sizeof(db), "%s/foreign.db", dir);
	exec_raw(db, "CREATE TABLE t(x);");
	cr_expect_eq(mb_store_open(&s, db, NULL, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "not a mechbench results database") != NULL, "%s", err.msg);
	mbt_write(dir, "junk.db", "this is not a database, not even close, and it is long enough "
				  "that sqlite reads a header from it...............................");
	snprintf(db, sizeof(db), "%s/junk.db", dir);
	cr_expect_eq(mb_store_open(&s, db, NULL, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "junk.db: not a database") != NULL, "%s", err.msg);
	/* Read-only opens never migrate; an empty file is called empty. */
	snprintf(db, sizeof(db), "%s/old.db", dir);
	exec_raw(db, "CREATE TABLE runs(x); PRAGMA user_version = 1;");
	mb_store_opts ro = {.readonly = 1};
	cr_expect_eq(mb_store_open(&s, db, &ro, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "schema version 1 needs migrating") != NULL, "%s", err.msg);
	snprintf(db, sizeof(db), "%s/empty.db", dir);
	exec_raw(db, "PRAGMA user_version = 0;");
	cr_expect_eq(mb_store_open(&s, db, &ro, &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "empty.db: an empty database (no runs stored yet)") != NULL,
		  "%s", err.msg);
	mbt_rmtree(dir);
}

Test(store, a_locked_database_gives_ebusy_naming_the_file_without_hanging)
{
	char dir[256], db[512];
	mb_store *s, *s2;
	mb_provenance p;
	mb_error err;
	sqlite3 *locker;
	int64_t id;
	mb_store_opts quick = {.busy_timeout_ms = 200};

	mbt_tmpdir(dir, sizeof(dir));
	snprintf(db, sizeof(db), "%s/r.db", dir);
	cr_assert_eq(mb_store_open(&s, db, NULL, &err), 0, "%s", err.msg);
	mb_store_free(s);
	cr_assert_eq(sqlite3_open(db, &locker), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(locker, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
	cr_assert_eq(mb_store_open(&s2, db, &quick, &err), 0, "%s", err.msg);
	mb_provenance_init(&p, 1);
	cr_expect_eq(mb_store_run_begin(s2, &id, &p, &err), MB_EBUSY);
	cr_expect(strstr(err.msg, db) != NULL, "names the file: %s", err.msg);
	cr_expect(strstr(err.msg, "locked by another process") != NULL, "%s", err.msg);
	mb_store_free(s2);
	sqlite3_exec(locker, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(locker);
	mbt_rmtree(dir);
}

/* Tries a writable open of db as an unprivileged user (root ignores file
 * modes); returns 0 when the expected error came back. */
static int try_readonly_open(const char *db)
{
	mb_store *s;
	mb_error err;
	int rc;

	if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
		return 10;
	rc = mb_store_open(&s, db, NULL, &err);
	if (rc == 0) {
		mb_store_free(s);
		return 11;
	}
	if (rc != MB_EIO || !strstr(err.msg, db) || !strstr(err.msg, "read-only")) {
		fprintf(stderr, "unexpected: %d %s\n", rc, err.msg);
		return 12;
	}
	return 0;
}

Test(store, a_read_only_database_gives_a_clear_error)
{
	char dir[256], db[512];
	mb_store *s;
	mb_error err;
	pid_t pid;
	int status;

	mbt_tmpdir(dir, sizeof(dir));
	chmod(dir, 0755);
	snprintf(db, sizeof(db), "%s/r.db", dir);
	cr_assert_eq(mb_store_open(&s, db, NULL, &err), 0, "%s", err.msg);
	mb_store_free(s);
	cr_assert_eq(chmod(db, 0444), 0);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0)
		_exit(try_readonly_open(db));
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d",
		  WEXITSTATUS(status));
	mbt_rmtree(dir);
}

static size_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

Test(store, a_run_killed_mid_transaction_leaves_no_trace, .timeout = 240)
{
	char dir[256], db[512], wal[520], spec[2048], sha[MB_SHA256_HEX_LEN], path[512];
	char *text = NULL, check[64];
	size_t len;
	mb_error err;
	json_t *p = json_pack("{s:i}", "n_per_stratum", 20000);
	pid_t pid;
	int status, killed = 0;

	/* 40,000 items: the run is computed first, then its rows (items
	 * interned, values) overflow SQLite's page cache into the WAL inside
	 * the one write transaction, during which the run is killed. */
	mbt_tmpdir(dir, sizeof(dir));
	cr_assert_eq(mb_dataset_generate(&text, &len, mb_task_find("synthetic"), 3, p, &err), 0);
	json_decref(p);
	mb_sha256_hex_buf(sha, text, len);
	mbt_write(dir, "datasets/big.jsonl", text);
	free(text);
	mbt_true_model(dir, "models/true");
	snprintf(spec, sizeof(spec),
		 "{\"format\": 1, \"suite\": \"kill\", \"alpha\": 0.05, \"power\": 0.8,"
		 " \"bootstrap\": 1000, \"seed\": 1, \"tasks\": ["
		 "{\"name\": \"fast\", \"task\": \"synthetic\", \"model\": \"models/true\","
		 " \"dataset\": {\"path\": \"datasets/big.jsonl\", \"sha256\": \"%s\"},"
		 " \"metrics\": [{\"metric\": \"synthetic.score@1\", \"kind\": \"continuous\","
		 " \"direction\": \"higher\", \"margin\": 1}]}]}\n", sha);
	mbt_write(dir, "spec.json", spec);
	snprintf(db, sizeof(db), "%s/r.db", dir);
	snprintf(wal, sizeof(wal), "%s-wal", db);
	snprintf(path, sizeof(path), "%s/spec.json", dir);

	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		/* Outside git, spec paths are relative to the current directory. */
		if (chdir(dir) != 0)
			_exit(126);
		dup2(null, 1);
		dup2(null, 2);
		execl(MB_CLI_PATH, "mechbench", "run", "--suite", path, "--db", db, "--quiet",
		      (char *)NULL);
		_exit(127);
	}
	/* Wait until the uncommitted transaction has spilled into the WAL. */
	for (int i = 0; i < 200000 && !killed; i++) {
		struct timespec ts = {0, 1000 * 1000};
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		if (file_size(wal) > (1u << 20)) {
			kill(pid, SIGKILL);
			killed = 1;
		}
		nanosleep(&ts, NULL);
	}
	if (!killed) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		cr_assert_fail("the run never wrote its first entry into the WAL");
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	cr_log_info("killed with %zu bytes of WAL", file_size(wal));

	text_of(db, "PRAGMA integrity_check", check, sizeof(check));
	cr_expect_str_eq(check, "ok");
	cr_expect_eq(scalar(db, "SELECT count(*) FROM runs"), 0, "no run row");
	cr_expect_eq(scalar(db, "SELECT count(*) FROM entries"), 0);
	cr_expect_eq(scalar(db, "SELECT count(*) FROM item_values"), 0, "no item rows");
	cr_expect_eq(scalar(db, "SELECT count(*) FROM aggregates"), 0);
	/* And the database takes the next run. */
	{
		mb_store *s;
		cr_expect_eq(mb_store_open(&s, db, NULL, &err), 0, "%s", err.msg);
		mb_store_free(s);
	}
	mbt_rmtree(dir);
}

/* The runs table is made from the provenance list (provenance.h); it must
 * still be schema 1's table, column for column, as written out here by hand
 * from the released migration (name, declared type, NOT NULL, primary key). */
Test(store, the_runs_table_made_from_the_provenance_list_is_schema_one)
{
	static const struct {
		const char *name, *type;
		int notnull, pk;
	} want[] = {
		{"id", "INTEGER", 0, 1},           {"suite", "TEXT", 1, 0},
		{"spec_path", "TEXT", 1, 0},       {"spec_blob", "TEXT", 1, 0},
		{"spec_committed", "INTEGER", 0, 0}, {"repo_head", "TEXT", 0, 0},
		{"repo_dirty", "INTEGER", 0, 0},   {"code_version", "TEXT", 1, 0},
		{"code_commit", "TEXT", 1, 0},     {"code_dirty", "INTEGER", 1, 0},
		{"seed", "INTEGER", 1, 0},         {"threads", "INTEGER", 1, 0},
		{"cpu", "TEXT", 1, 0},             {"blas_config", "TEXT", 1, 0},
		{"blas_core", "TEXT", 1, 0},       {"blas_threads", "INTEGER", 1, 0},
		{"compiler", "TEXT", 1, 0},        {"cflags", "TEXT", 1, 0},
		{"build_type", "TEXT", 1, 0},      {"started_at", "TEXT", 1, 0},
		{"finished_at", "TEXT", 0, 0},     {"wall_seconds", "REAL", 0, 0},
	};
	size_t nwant = sizeof(want) / sizeof(want[0]), k = 0;
	char dir[256], db[512];
	mb_store *s;
	mb_error err;
	sqlite3 *h;
	sqlite3_stmt *st;

	mbt_tmpdir(dir, sizeof(dir));
	snprintf(db, sizeof(db), "%s/r.db", dir);
	cr_assert_eq(mb_store_open(&s, db, NULL, &err), 0, "%s", err.msg);
	mb_store_free(s);
	cr_assert_eq(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(h, "PRAGMA table_info(runs)", -1, &st, NULL), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		cr_assert_lt(k, nwant, "more columns than schema 1's %zu", nwant);
		cr_expect_eq(sqlite3_column_int(st, 0), (int)k);
		cr_expect_str_eq((const char *)sqlite3_column_text(st, 1), want[k].name);
		cr_expect_str_eq((const char *)sqlite3_column_text(st, 2), want[k].type, "column %s",
				 want[k].name);
		cr_expect_eq(sqlite3_column_int(st, 3), want[k].notnull, "column %s", want[k].name);
		cr_expect_eq(sqlite3_column_int(st, 5), want[k].pk, "column %s", want[k].name);
		k++;
	}
	cr_expect_eq(k, nwant);
	sqlite3_finalize(st);
	sqlite3_close(h);
	mbt_rmtree(dir);
}

/* store.c and results.c fail through one mapping (store_int.h): a broken
 * constraint and a corrupt file are MB_EINVALID from either, naming the file. */
Test(store, constraint_and_corruption_map_the_same_from_store_and_results)
{
	char dir[256], db[512];
	mb_store *s;
	mb_run_result run, back;
	mb_results_series sr;
	mb_error err;
	int64_t id, *ids = NULL;
	size_t n_ids = 0;
	int rc;

	mbt_tmpdir(dir, sizeof(dir));
	snprintf(db, sizeof(db), "%s/r.db", dir);
	mbt_run_fixture(&run, dir);
	cr_assert_eq(mb_store_open(&s, db, NULL, &err), 0, "%s", err.msg);

	/* SQLITE_CONSTRAINT: one entry twice (store.c), one series twice (results.c) */
	cr_assert_eq(mb_store_run_begin(s, &id, &run.prov, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_store_run_put_entry(s, id, &run.entries[0], &err), 0, "%s", err.msg);
	rc = mb_store_run_put_entry(s, id, &run.entries[0], &err);
	cr_expect_eq(rc, MB_EINVALID, "store.c: %d %s", rc, err.msg);
	cr_expect(strstr(err.msg, db), "%s", err.msg);
	cr_assert_eq(mb_store_run_begin(s, &id, &run.prov, &err), 0, "%s", err.msg);
	memset(&sr, 0, sizeof(sr));
	snprintf(sr.name, sizeof(sr.name), "twice");
	snprintf(sr.created_at, sizeof(sr.created_at), "2026-12-04T00:00:00Z");
	cr_assert_eq(mb_results_series_put(s, &sr, &err), 0, "%s", err.msg);
	rc = mb_results_series_put(s, &sr, &err);
	cr_expect_eq(rc, MB_EINVALID, "results.c: %d %s", rc, err.msg);
	cr_expect(strstr(err.msg, db), "%s", err.msg);
	mb_store_run_abort(s);
	cr_assert_eq(mb_store_put_run(s, &run, &err), 0, "%s", err.msg);
	mb_store_free(s);

	/* SQLITE_CORRUPT: the runs table's root page overwritten (the schema kept) */
	{
		long page = (long)scalar(db, "SELECT rootpage FROM sqlite_master WHERE name = 'runs'");
		long size = (long)scalar(db, "PRAGMA page_size");
		FILE *f = fopen(db, "r+b");
		cr_assert(f && page > 1 && size > 0, "page %ld of %ld bytes", page, size);
		fseek(f, (page - 1) * size, SEEK_SET);
		for (long i = 0; i < size; i++)
			fputc(0xA5, f);
		fclose(f);
	}
	cr_assert_eq(mb_store_open(&s, db, NULL, &err), 0, "%s", err.msg);
	rc = mb_store_get_run(&back, s, 1, &err);
	cr_expect_eq(rc, MB_EINVALID, "store.c: %d %s", rc, err.msg);
	cr_expect(strstr(err.msg, db), "%s", err.msg);
	rc = mb_results_run_ids(&ids, &n_ids, s, NULL, &err);
	cr_expect_eq(rc, MB_EINVALID, "results.c: %d %s", rc, err.msg);
	cr_expect(strstr(err.msg, db), "%s", err.msg);
	free(ids);
	mb_store_free(s);
	mb_run_result_dispose(&run);
	mbt_rmtree(dir);
}

/* A folder that refuses new files: creating a database in it names the
 * folder (SQLite's last retry left errno ENOENT, "No such file or
 * directory"), and reading one there says that its -wal and -shm files
 * cannot be made (it said "unable to open database file"). The folder is
 * made unwritable with chmod, or, for root, chattr +i; where neither works
 * the test is skipped. */
Test(store, a_folder_that_refuses_new_files_is_named_for_create_and_read)
{
	char dir[256], sub[300], db[400], fresh[400], cmd[700];
	mb_store *s = NULL;
	mb_store_opts ro = {.readonly = 1};
	mb_error err;

	mbt_tmpdir(dir, sizeof(dir));
	snprintf(sub, sizeof(sub), "%s/ro", dir);
	cr_assert_eq(mkdir(sub, 0755), 0);
	snprintf(db, sizeof(db), "%s/m.db", sub);
	snprintf(fresh, sizeof(fresh), "%s/new.db", sub);
	cr_assert_eq(mb_store_open(&s, db, NULL, &err), 0, "%s", err.msg);
	mb_store_free(s);
	chmod(sub, 0555);
	if (access(sub, W_OK) == 0) {
		snprintf(cmd, sizeof(cmd), "chattr +i '%s' 2>/dev/null", sub);
		if (system(cmd) != 0 || access(sub, W_OK) == 0) {
			chmod(sub, 0755);
			mbt_rmtree(dir);
			cr_skip_test("cannot make a folder unwritable here (root without chattr)");
		}
	}
	cr_expect_eq(mb_store_open(&s, fresh, NULL, &err), MB_EIO);
	cr_expect(strstr(err.msg, "new.db: cannot create the database: ") &&
		  strstr(err.msg, "is not writable"), "%s", err.msg);
	cr_expect(access(fresh, F_OK) != 0, "nothing created");
	cr_expect_eq(mb_store_open(&s, db, &ro, &err), MB_EIO);
	cr_expect(strstr(err.msg, "m.db: cannot open the database while ") &&
		  strstr(err.msg, "its -wal and -shm files cannot be made beside it") &&
		  strstr(err.msg, "is not writable"), "%s", err.msg);
	snprintf(cmd, sizeof(cmd), "chattr -i '%s' 2>/dev/null", sub);
	if (system(cmd) != 0)
		cr_log_info("chattr -i: not needed or not available");
	chmod(sub, 0755);
	mbt_rmtree(dir);
}
