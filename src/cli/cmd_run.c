/* cmd_run.c: `mechbench run`, run a suite and store the results. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include <mechbench/dist.h>
#include <mechbench/report.h>
#include <mechbench/results.h>
#include <mechbench/runner.h>
#include <mechbench/shard.h>
#include <mechbench/store.h>

#include "figures_cli.h"
#include "suite_cli.h"

typedef struct run_args {
	const char *suite, *model, *db, *json, *csv, *shard;
	mb_cli_list entries;
	double db_timeout;
	int64_t threads;
	int strata, quiet;
} run_args;

static const mb_cli_opt run_opts[] = {
	{MB_OPT(PATH, "--suite", run_args, suite), .meta = "FILE", .required = 1,
	 .help = "the suite spec (benchmarks/<suite>.json)"},
	{MB_OPT(PATH, "--model", run_args, model), .meta = "DIR",
	 .help = "run every entry on this model folder instead of the entries' own \"model\""},
	{MB_OPT(LIST, "--entry", run_args, entries), .meta = "NAME", .repeat = 1,
	 .help = "run only this entry of the suite (repeatable; default: every entry)"},
	{MB_OPT(PATH, "--db", run_args, db), .meta = "FILE", .def = "mechbench.db",
	 .help = "results database (created if absent)"},
	MB_CLI_OPT_DB_TIMEOUT(run_args, db_timeout),
	{MB_OPT(PATH, "--json", run_args, json), .meta = "FILE",
	 .help = "also write the aggregates and provenance as JSON"},
	{MB_OPT(PATH, "--csv", run_args, csv), .meta = "FILE",
	 .help = "also write the aggregates as CSV"},
	MB_CLI_OPT_THREADS(run_args, threads),
	{MB_OPT(FLAG, "--strata", run_args, strata),
	 .help = "also print each metric per stratum of its dataset (the JSON report always "
		 "carries the strata); pooled rows leave strata the dataset recipe marks "
		 "\"ood\" (OUT-OF-DISTRIBUTION) out"},
	MB_CLI_OPT_QUIET(run_args, quiet),
	{MB_OPT(STRING, "--shard", run_args, shard), .meta = "I/N",
	 .help = "run part I (0-based) of N of every entry's items (sorted by content key, "
		 "dealt round robin) into a shard database for `merge`: item values, no "
		 "aggregates (not with --json, --csv or mpirun)"},
};

static const mb_cli_cmd run_cmd = {
	.name = "run",
	.opts = run_opts,
	.n_opts = MB_CLI_N(run_opts),
	.about = "Runs every entry of a suite spec (a task on a model over its frozen dataset)\n"
		 "and stores per-item values, aggregates with 95% CIs and full provenance in the\n"
		 "results database, in one transaction: a run that dies leaves nothing behind.\n"
		 "Prints a table of aggregates; the run's id is what `baseline save --run`\n"
		 "takes. The run is computed first, then written in one short transaction, so\n"
		 "parallel runs can share a database.\n",
	.notes = "Paths in the spec are relative to the root of its git work tree (the current\n"
		 "directory outside git). Exit codes: 0 done, 1 error, 2 usage.\n",
};

typedef struct figure_sink {
	/* the figures the entries' tasks attach (figures_cli.h), one list per
	 * entry, kept until the run is written */
	mb_figure_list *figs; /* (n_entries of the spec) */
	size_t n;
	const mb_spec *spec;
	const char *root, *model;
} figure_sink;

static int compute_figures(void *payload, const mb_entry_result *e, mb_error *err)
{
	figure_sink *s = payload;
	MB_ASSERT(s->n < s->spec->n_entries);
	return mb_cli_figures_compute(&s->figs[s->n++], s->spec, s->root, s->model, e, err);
}

static void render_run_csv(FILE *f, const void *arg)
{
	mb_report_run_csv(f, arg);
}

static int run_suite(const run_args *a)
{
	int error = 0;
	mb_error err;
	mb_cli_spec_home home;
	mb_spec spec;
	mb_provenance prov;
	mb_run_result run;
	mb_store *store = NULL;
	mb_runner_opts opts;
	mb_store_opts so = {0};
	figure_sink sink = {0};
	json_t *doc = NULL;
	const char *model, *db, *json, *csv;
	mb_shard shard = {0, 1};

	model = a->model;
	db = a->db;
	json = a->json;
	csv = a->csv;
	mb_cli_db_timeout(&so, a->db_timeout);
	mb_error_clear(&err);
	if (a->shard && mb_shard_parse(&shard, a->shard, &err) < 0)
		return mb_cli_usage_error("run", "%s", err.msg);
	if (a->shard && mb_dist_size() > 1)
		return mb_cli_usage_error("run", "--shard splits a suite without MPI; under mpirun "
					  "the ranks split it themselves");
	if (a->shard && (json || csv))
		return mb_cli_usage_error("run", "--json and --csv describe a whole run: write them "
					  "from the merged run (`merge`, then `report`)");

	memset(&spec, 0, sizeof(spec));
	memset(&run, 0, sizeof(run));
	if ((error = mb_cli_spec_home_open(&home, a->suite, 0, &err)) < 0)
		return mb_cli_fail(&err);
	if ((error = mb_spec_parse(&spec, home.text, home.len, a->suite, &err)) < 0)
		goto cleanup;
	if (a->entries.n &&
	    (error = mb_spec_keep_entries(&spec, a->entries.v, a->entries.n, &err)) < 0)
		goto cleanup;
	mb_provenance_init(&prov, (int)a->threads);
	if ((error = mb_cli_provenance_spec(&prov, &home, &spec, &err)) < 0)
		goto cleanup;
	if (a->shard)
		mb_shard_mark(&prov, shard);
	/* Every output and the database checked before the work (a read-only
	 * database fails now, not after the whole run); the lock is taken only
	 * for the short write at the end, so parallel runs share a database. */
	{
		const mb_cli_path outs[] = {{"--json", json}, {"--csv", csv}};
		const mb_cli_path ins[] = {{"--suite", a->suite}, {"--db", db}};
		if ((error = mb_cli_check_outputs(outs, 2, ins, 2, &err)) < 0 ||
		    (mb_dist_rank() == 0 && (error = mb_store_open(&store, db, &so, &err)) < 0))
			goto cleanup;
	}
	if (!(sink.figs = calloc(spec.n_entries ? spec.n_entries : 1, sizeof(*sink.figs)))) {
		error = mb_error_oom(&err, "figures", spec.n_entries);
		goto cleanup;
	}
	sink.spec = &spec;
	sink.root = home.root;
	sink.model = model;
	memset(&opts, 0, sizeof(opts));
	opts.threads = (int)a->threads;
	opts.progress = mb_cli_want_progress(a->quiet);
	opts.on_entry = compute_figures;
	opts.payload = &sink;
	if (a->shard) {
		/* a part's figures would be wrong: `merge` draws them on the whole */
		opts.on_entry = NULL;
		opts.split = mb_shard_run_entry;
		opts.split_payload = &shard;
	} else if (mb_dist_size() > 1) {
		/* ranks split every entry's items; rank 0 alone stores and reports */
		opts.split = mb_dist_run_entry;
		if (mb_dist_rank() != 0)
			opts.on_entry = NULL;
	}
	if ((error = mb_runner_run_suite(&run, &prov, &spec, home.root, model, &opts, &err)) < 0 ||
	    mb_dist_rank() != 0)
		goto cleanup;
	if ((error = mb_cli_store_run(store, &run, sink.figs, sink.n, &err)) < 0)
		goto cleanup;
	if (a->shard) {
		for (size_t i = 0; i < run.n_entries; i++)
			printf("%s: shard %u/%u: %zu items\n", run.entries[i].name, shard.index,
			       shard.count, run.entries[i].n_items);
	} else {
		mb_report_run_terminal(stdout, &run, mb_cli_want_color());
	}
	if (a->strata && !a->shard)
		mb_report_run_terminal_strata(stdout, &run);
	fflush(stdout);
	if (json) {
		doc = mb_report_run_json(&run);
		error = doc ? mb_report_write_json(json, doc, &err) : mb_error_oom(&err, json, 0);
		if (error < 0)
			goto cleanup;
	}
	if (csv && (error = mb_report_write(csv, render_run_csv, &run, &err)) < 0)
		goto cleanup;
	if (!a->quiet)
		fprintf(stderr, "mechbench: stored run %lld in %s\n", (long long)run.id, db);
cleanup:
	json_decref(doc);
	mb_store_free(store); /* rolls back an uncommitted run */
	for (size_t i = 0; sink.figs && i < spec.n_entries; i++)
		mb_figure_list_dispose(&sink.figs[i]);
	free(sink.figs);
	mb_run_result_dispose(&run);
	mb_spec_dispose(&spec);
	mb_cli_spec_home_dispose(&home);
	return error < 0 ? mb_cli_fail(&err) : MB_EXIT_OK;
}

int mb_cmd_run(int argc, char **argv)
{
	run_args a = {0};
	mb_cli_parsed parsed;
	int rc;

	if ((rc = mb_cli_parse(&parsed, &a, &run_cmd, argc, argv)) == MB_CLI_GO)
		rc = run_suite(&a);
	mb_cli_args_dispose(&a, &run_cmd);
	return rc;
}
