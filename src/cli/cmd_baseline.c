/* cmd_baseline.c: `mechbench baseline save`, a stored run as a baseline file. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include <mechbench/baseline.h>
#include <mechbench/file.h>
#include <mechbench/shard.h>
#include <mechbench/store.h>

#include "suite_cli.h"

typedef struct baseline_args {
	const char *out, *db, *entry;
	int64_t run;
} baseline_args;

static const mb_cli_opt baseline_opts[] = {
	{MB_OPT(INT, "--run", baseline_args, run), .meta = "ID", .range = ">= 1", .required = 1,
	 .help = "the run (printed by `mechbench run`)"},
	{MB_OPT(PATH, "--out", baseline_args, out), .meta = "FILE", .required = 1,
	 .help = "where to write it, e.g. baselines/canonical.json"},
	{MB_OPT(PATH, "--db", baseline_args, db), .meta = "FILE", .def = "mechbench.db",
	 .help = "results database"},
	{MB_OPT(STRING, "--entry", baseline_args, entry), .meta = "NAME",
	 .help = "only this entry of the run"},
};

static const mb_cli_cmd baseline_cmd = {
	.name = "baseline save",
	.opts = baseline_opts,
	.n_opts = MB_CLI_N(baseline_opts),
	.about =
	"Writes stored run ID as a baseline file: per-item values keyed by item content\n"
	"hash, aggregates and the run's full provenance (format in the README,\n"
	"\"Baseline files\"). Review it and commit it under baselines/; `gate` reads it\n"
	"at a git ref.\n",
	.notes = "Exit codes: 0 written, 1 error, 2 usage.\n",
};

int mb_cmd_baseline(int argc, char **argv)
{
	baseline_args a = {0};
	mb_cli_parsed parsed;
	const char *out, *entry;
	mb_store_opts so = {.readonly = 1};
	mb_store *store = NULL;
	mb_run_result run;
	mb_error err;
	int64_t id = 0;
	char *text = NULL;
	size_t len = 0, items = 0;
	int rc, error = 0;

	if (argc < 2) {
		mb_cli_help(stderr, &baseline_cmd);
		return MB_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		mb_cli_help(stdout, &baseline_cmd);
		return MB_EXIT_OK;
	}
	if (strcmp(argv[1], "save") != 0)
		return mb_cli_usage_error("baseline", "unknown subcommand '%s' (expected save)",
					  argv[1]);
	if ((rc = mb_cli_parse(&parsed, &a, &baseline_cmd, argc - 1, argv + 1)) != MB_CLI_GO)
		return rc;
	id = a.run;
	out = a.out;
	entry = a.entry;
	mb_error_clear(&err);
	memset(&run, 0, sizeof(run));
	if ((error = mb_cli_check_outputs(&(mb_cli_path){"--out", out}, 1,
					  &(mb_cli_path){"--db", a.db}, 1, &err)) < 0 ||
	    (error = mb_store_open(&store, a.db, &so, &err)) < 0 ||
	    (error = mb_store_get_run(&run, store, id, &err)) < 0)
		goto cleanup;
	{
		/* a shard holds part of the items and no whole-run aggregates */
		mb_provenance prov = run.prov;
		mb_shard part;
		if (mb_shard_unmark(&prov, &part)) {
			error = mb_error_set(&err, MB_EINVALID, "%s: run %lld is shard %u/%u of a "
					     "sharded run; merge the shards (`mechbench merge`) and "
					     "save the merged run", a.db, (long long)id, part.index,
					     part.count);
			goto cleanup;
		}
	}
	if ((error = mb_baseline_render(&text, &len, &run, entry, &err)) < 0 ||
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
