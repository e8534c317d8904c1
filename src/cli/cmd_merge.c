/* cmd_merge.c: `mechbench merge`, shard databases into one stored run. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mechbench/figure.h>
#include <mechbench/merge.h>
#include <mechbench/report.h>
#include <mechbench/spec.h>
#include <mechbench/store.h>

#include "figures_cli.h"
#include "suite_cli.h"

typedef struct merge_args {
	const char *db, *suite;
	double db_timeout;
	int quiet;
} merge_args;

static const mb_cli_opt merge_opts[] = {
	{MB_OPT(PATH, "--db", merge_args, db), .meta = "FILE", .def = "mechbench.db",
	 .help = "the results database to store the merged run in (created if absent; not "
		 "one of the shards)"},
	{MB_OPT(PATH, "--suite", merge_args, suite), .meta = "FILE",
	 .help = "the suite spec the shards ran (default: the spec path they recorded); its "
		 "git blob must be theirs, its datasets are read from its work tree"},
	MB_CLI_OPT_DB_TIMEOUT(merge_args, db_timeout),
	{MB_OPT(FLAG, "--quiet", merge_args, quiet), .help = "no closing line on stderr"},
};

static const mb_cli_cmd merge_cmd = {
	.name = "merge",
	.opts = merge_opts,
	.n_opts = MB_CLI_N(merge_opts),
	.operands = "SHARD.db...",
	.min_operands = 1,
	.max_operands = MB_CLI_MAX_ARGS,
	.about = "Combines the shard databases of `run --shard i/n` (every i of one n, each\n"
		 "given once) into one run stored in --db, bit for bit the run one process\n"
		 "would have stored: item values placed by content key in dataset order, then\n"
		 "every aggregate, CI and figure computed from all of them. Refused with one\n"
		 "line naming the shard and the field or item: shards of another suite, spec\n"
		 "blob, code commit, seed, dataset sha256 or model digest than the first; a\n"
		 "shard missing or given twice; an item in two shards or in none. The merged\n"
		 "run is written in one transaction after all checks; a new --db that could\n"
		 "not be written is removed. Then `leaderboard`, `report` and `baseline save`\n"
		 "read it like any run.\n",
	.notes = "Exit codes: 0 merged, 1 error, 2 usage.\n",
};

static void remove_db(const char *path)
{
	static const char *const tails[] = {"", "-wal", "-shm", "-journal"};
	char buf[4096];

	for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
		snprintf(buf, sizeof(buf), "%s%s", path, tails[i]);
		unlink(buf);
	}
}

int mb_cmd_merge(int argc, char **argv)
{
	merge_args a = {0};
	mb_cli_parsed parsed;
	const char *db, *suite;
	const char *const *shards;
	size_t n_shards;
	char spec_path[1024];
	int rc, error = 0, created = 0;
	mb_error err;
	mb_cli_spec_home home;
	mb_spec spec;
	mb_run_result run;
	mb_store *store = NULL;
	mb_store_opts so = {0};
	mb_figure_list *figs = NULL;

	if ((rc = mb_cli_parse(&parsed, &a, &merge_cmd, argc, argv)) != MB_CLI_GO)
		return rc;
	db = a.db;
	suite = a.suite;
	shards = parsed.operands;
	n_shards = (size_t)parsed.n_operands;
	mb_cli_db_timeout(&so, a.db_timeout);
	mb_error_clear(&err);
	memset(&home, 0, sizeof(home));
	memset(&spec, 0, sizeof(spec));
	memset(&run, 0, sizeof(run));
	for (size_t s = 0; s < n_shards; s++)
		if (strcmp(shards[s], db) == 0)
			return mb_cli_usage_error("merge", "--db %s is one of the shards: merge into "
						  "another database", db);
	if (!suite) {
		if ((error = mb_merge_spec_path(spec_path, sizeof(spec_path), shards[0], &err)) < 0)
			goto cleanup;
		suite = spec_path;
	}
	if ((error = mb_cli_spec_home_open(&home, suite, 0, &err)) < 0) {
		/* a recorded path is relative to where the shards ran, not to here */
		if (!a.suite)
			mb_error_prefix(&err, "%s: the spec the shards recorded, read from the "
					"current directory (name it with --suite)", shards[0]);
		goto cleanup;
	}
	if ((error = mb_spec_parse(&spec, home.text, home.len, suite, &err)) < 0 ||
	    (error = mb_merge_shards(&run, shards, n_shards, &spec, home.blob, home.root,
				     &err)) < 0)
		goto cleanup;
	if (!(figs = calloc(run.n_entries ? run.n_entries : 1, sizeof(*figs)))) {
		error = mb_error_oom(&err, "figures", run.n_entries);
		goto cleanup;
	}
	for (size_t i = 0; i < run.n_entries; i++) {
		const mb_spec_entry *se = mb_spec_find_entry(&spec, run.entries[i].name);
		const char *model = run.entries[i].model;
		/* the shards ran the spec's model, or --model as they recorded it */
		if ((error = mb_cli_figures_compute(&figs[i], &spec, home.root,
						    se && se->model && strcmp(se->model, model) == 0
						    ? NULL : model, &run.entries[i], &err)) < 0)
			goto cleanup;
	}
	created = access(db, F_OK) != 0;
	if ((error = mb_store_open(&store, db, &so, &err)) < 0 ||
	    (error = mb_cli_store_run(store, &run, figs, run.n_entries, &err)) < 0)
		goto cleanup;
	mb_report_run_terminal(stdout, &run, mb_cli_want_color());
	fflush(stdout);
	if (!a.quiet)
		fprintf(stderr, "mechbench: merged %zu shards into run %lld in %s\n", n_shards,
			(long long)run.id, db);
cleanup:
	mb_store_free(store);
	if (error < 0 && created)
		remove_db(db);
	for (size_t i = 0; figs && i < run.n_entries; i++)
		mb_figure_list_dispose(&figs[i]);
	free(figs);
	mb_run_result_dispose(&run);
	mb_spec_dispose(&spec);
	mb_cli_spec_home_dispose(&home);
	return error < 0 ? mb_cli_fail(&err) : MB_EXIT_OK;
}
