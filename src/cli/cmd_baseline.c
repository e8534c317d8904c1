/* cmd_baseline.c: `mechbench baseline save`, a stored run as a baseline file. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include <mechbench/baseline.h>
#include <mechbench/file.h>
#include <mechbench/parse.h>
#include <mechbench/store.h>

#include "suite_cli.h"

static const char usage[] =
	"usage: mechbench baseline save --run ID --out FILE [--db FILE] [--entry NAME]\n\n"
	"Writes stored run ID as a baseline file: per-item values keyed by item content\n"
	"hash, aggregates and the run's full provenance (format in the README,\n"
	"\"Baseline files\"). Review it and commit it under baselines/; `gate` reads it\n"
	"at a git ref.\n\n"
	"  --run ID       the run (printed by `mechbench run`)\n"
	"  --out FILE     where to write it, e.g. baselines/canonical.json\n"
	"  --db FILE      results database (default mechbench.db)\n"
	"  --entry NAME   only this entry of the run\n\n"
	"Exit codes: 0 written, 1 error, 2 usage.\n";

int mb_cmd_baseline(int argc, char **argv)
{
	const char *run_s = NULL, *out = NULL, *db = "mechbench.db", *entry = NULL;
	mb_store_opts so = {.readonly = 1};
	mb_store *store = NULL;
	mb_run_result run;
	mb_error err;
	int64_t id = 0;
	char *text = NULL;
	size_t len = 0, items = 0;
	int rc, error = 0;

	if (mb_cli_wants_help(argc, argv) || argc < 2) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? MB_EXIT_USAGE : MB_EXIT_OK;
	}
	if (strcmp(argv[1], "save") != 0)
		return mb_cli_usage_error("baseline", "unknown subcommand '%s' (expected save)",
					  argv[1]);
	for (int i = 2; i < argc; i++) {
		if ((rc = mb_cli_opt(argc, argv, &i, "--run", &run_s, "baseline")) ||
		    (rc = mb_cli_opt(argc, argv, &i, "--out", &out, "baseline")) ||
		    (rc = mb_cli_opt(argc, argv, &i, "--db", &db, "baseline")) ||
		    (rc = mb_cli_opt(argc, argv, &i, "--entry", &entry, "baseline"))) {
			if (rc < 0)
				return MB_EXIT_USAGE;
		} else {
			return mb_cli_usage_error("baseline", "unexpected argument '%s'", argv[i]);
		}
	}
	if (!run_s || !out)
		return mb_cli_usage_error("baseline", "--run ID and --out FILE are required");
	mb_error_clear(&err);
	if (mb_parse_i64(run_s, 1, INT64_MAX, &id, "--run", &err) < 0)
		return mb_cli_usage_error("baseline", "%s", err.msg);
	memset(&run, 0, sizeof(run));
	if ((error = mb_file_check_output(out, &err)) < 0 ||
	    (error = mb_store_open(&store, db, &so, &err)) < 0 ||
	    (error = mb_store_get_run(&run, store, id, &err)) < 0 ||
	    (error = mb_baseline_render(&text, &len, &run, entry, &err)) < 0 ||
	    (error = mb_file_write_all(out, text, len, &err)) < 0)
		goto cleanup;
	for (size_t i = 0; i < run.n_entries; i++)
		if (!entry || strcmp(run.entries[i].name, entry) == 0)
			items += run.entries[i].n_items;
	if (run.prov.spec_committed != 1 || run.prov.code_dirty)
		fprintf(stderr, "mechbench: warning: run %lld was made with %s; a baseline should "
				"come from committed code and a committed spec\n", (long long)id,
			run.prov.spec_committed != 1 ? "a spec that was not committed"
						     : "a dirty build of mechbench");
	printf("wrote %s: run %lld, suite %s, %zu item(s); review it and commit it\n", out,
	       (long long)id, run.prov.suite, items);
cleanup:
	free(text);
	mb_run_result_dispose(&run);
	mb_store_free(store);
	return error < 0 ? mb_cli_fail(&err) : MB_EXIT_OK;
}
