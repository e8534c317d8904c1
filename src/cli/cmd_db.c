/* cmd_db.c: `mechbench db stats|vacuum|check`, upkeep of the results database. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include <mechbench/store.h>

#include "suite_cli.h"

typedef struct db_args {
	const char *db;
	double db_timeout;
} db_args;

static const mb_cli_opt db_opts[] = {
	{MB_OPT(PATH, "--db", db_args, db), .meta = "FILE", .def = "mechbench.db",
	 .help = "the results database"},
	MB_CLI_OPT_DB_TIMEOUT(db_args, db_timeout),
};

static const mb_cli_cmd db_cmd = {
	.name = "db",
	.opts = db_opts,
	.n_opts = MB_CLI_N(db_opts),
	.synopsis = "mechbench db stats  [--db FILE]\n"
		    "       mechbench db vacuum [--db FILE] [--db-timeout S]\n"
		    "       mechbench db check  [--db FILE]\n",
	.about =
	"Upkeep of the results database.\n"
	"  stats   schema version, file size, free pages, rows, and the bytes the\n"
	"          item values take per stored value\n"
	"  vacuum  rewrite the file without its free pages (needs as much free disk\n"
	"          as the file; waits for other writers, then holds the lock)\n"
	"  check   SQLite's integrity_check and foreign_key_check; exit 1 on a fault\n\n"
	"Opening migrates an older database to this build's schema first; a --db that\n"
	"does not exist is an error (nothing is created).\n",
	.notes = "Exit codes: 0 done, 1 error (or a failed check), 2 usage.\n",
};

static int check(mb_store *store, const char *db, mb_error *err)
{
	sqlite3 *h = mb_store_sqlite(store);
	sqlite3_stmt *st = NULL;
	const char *sql[] = {"PRAGMA integrity_check", "PRAGMA foreign_key_check"};
	int faults = 0;

	for (int q = 0; q < 2; q++) {
		int rc = sqlite3_prepare_v2(h, sql[q], -1, &st, NULL);
		if (rc == SQLITE_OK)
			rc = SQLITE_ROW;
		while (rc == SQLITE_ROW && (rc = sqlite3_step(st)) == SQLITE_ROW) {
			const char *t = (const char *)sqlite3_column_text(st, 0);
			if (q == 0 && t && strcmp(t, "ok") == 0)
				continue;
			faults++;
			printf("%s: %s\n", sql[q] + 7, t ? t : "(row)");
		}
		sqlite3_finalize(st);
		st = NULL;
		if (rc != SQLITE_DONE)
			return mb_error_set(err, MB_EIO, "%s: %s: %s", db, sql[q], sqlite3_errmsg(h));
	}
	if (faults)
		return mb_error_set(err, MB_EINVALID, "%s: %d fault(s) found", db, faults);
	printf("%s: ok\n", db);
	return 0;
}

int mb_cmd_db(int argc, char **argv)
{
	db_args a = {0};
	mb_cli_parsed parsed;
	const char *db, *sub;
	mb_store_opts so = {.must_exist = 1};
	mb_store *store = NULL;
	mb_store_stats st;
	mb_error err;
	int rc, error = 0;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		mb_cli_help(argc < 2 ? stderr : stdout, &db_cmd);
		return argc < 2 ? MB_EXIT_USAGE : MB_EXIT_OK;
	}
	sub = argv[1];
	if (strcmp(sub, "stats") != 0 && strcmp(sub, "vacuum") != 0 && strcmp(sub, "check") != 0)
		return mb_cli_usage_error("db", "unknown subcommand '%s' (expected stats, vacuum "
					  "or check)", sub);
	if ((rc = mb_cli_parse(&parsed, &a, &db_cmd, argc - 1, argv + 1)) != MB_CLI_GO)
		return rc;
	db = a.db;
	mb_cli_db_timeout(&so, a.db_timeout);
	mb_error_clear(&err);
	if ((error = mb_store_open(&store, db, &so, &err)) < 0)
		goto cleanup;
	if (strcmp(sub, "vacuum") == 0) {
		mb_store_stats before;
		if ((error = mb_store_stats_get(&before, store, &err)) < 0 ||
		    (error = mb_store_vacuum(store, &err)) < 0 ||
		    (error = mb_store_stats_get(&st, store, &err)) < 0)
			goto cleanup;
		printf("%s: %lld -> %lld bytes\n", db, (long long)(before.pages * before.page_size),
		       (long long)(st.pages * st.page_size));
	} else if (strcmp(sub, "check") == 0) {
		error = check(store, db, &err);
	} else {
		if ((error = mb_store_stats_get(&st, store, &err)) < 0)
			goto cleanup;
		printf("database        %s\n", db);
		printf("schema version  %d\n", st.schema_version);
		printf("file bytes      %lld (%lld pages of %lld, %lld free)\n",
		       (long long)(st.pages * st.page_size), (long long)st.pages,
		       (long long)st.page_size, (long long)st.free_pages);
		printf("runs            %lld\n", (long long)st.runs);
		printf("series          %lld\n", (long long)st.series);
		printf("item values     %lld (%lld items, %lld metrics)\n", (long long)st.item_values,
		       (long long)st.items, (long long)st.metrics);
		if (st.item_values > 0 && st.table_bytes > 0)
			printf("item_value bytes %.1f per value (the table alone; items and metrics "
			       "are shared by all runs)\n", (double)st.table_bytes / (double)st.item_values);
		if (isnan(st.bytes_per_item_value))
			printf("bytes per value -\n");
		else
			printf("bytes per value %.1f (%lld bytes)\n", st.bytes_per_item_value,
			       (long long)st.item_value_bytes);
	}
cleanup:
	mb_store_free(store);
	return error < 0 ? mb_cli_fail(&err) : MB_EXIT_OK;
}
