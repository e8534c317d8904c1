/* cmd_run.c: `mechbench run`, run a suite and store the results. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include <mechbench/parse.h>
#include <mechbench/report.h>
#include <mechbench/runner.h>
#include <mechbench/store.h>

#include "figures_cli.h"
#include "suite_cli.h"

static const char usage[] =
	"usage: mechbench run --suite FILE [--model DIR] [--db FILE] [--json FILE]\n"
	"                     [--csv FILE] [--threads N] [--strata] [--quiet]\n\n"
	"Runs every entry of a suite spec (a task on a model over its frozen dataset)\n"
	"and stores per-item values, aggregates with 95% CIs and full provenance in the\n"
	"results database, in one transaction: a run that dies leaves nothing behind.\n"
	"Prints a table of aggregates; the run's id is what `baseline save --run`\n"
	"takes.\n\n"
	"  --suite FILE    the suite spec (benchmarks/<suite>.json)\n"
	"  --model DIR     run every entry on this model folder instead of the\n"
	"                  entries' own \"model\"\n"
	"  --db FILE       results database (default mechbench.db; created if absent)\n"
	"  --json FILE     also write the aggregates and provenance as JSON\n"
	"  --csv FILE      also write the aggregates as CSV\n"
	"  --threads N     OpenMP threads (default: all)\n"
	"  --strata        also print each metric per stratum of its dataset (the JSON\n"
	"                  report always carries the strata); pooled rows leave strata\n"
	"                  the dataset recipe marks \"ood\" (OUT-OF-DISTRIBUTION) out\n"
	"  --quiet         no progress bar\n\n"
	"Paths in the spec are relative to the root of its git work tree (the current\n"
	"directory outside git). Exit codes: 0 done, 1 error, 2 usage.\n";

typedef struct store_sink {
	mb_store *store;
	int64_t run_id;
	/* for the figures the entries' tasks attach (figures_cli.h) */
	const mb_spec *spec;
	const char *root, *model;
} store_sink;

static int put_entry(void *payload, const mb_entry_result *e, mb_error *err)
{
	store_sink *s = payload;
	int error = mb_store_run_put_entry(s->store, s->run_id, e, err);
	return error < 0 ? error
			 : mb_cli_store_figures(s->store, s->run_id, s->spec, s->root, s->model, e, err);
}

static void render_run_csv(FILE *f, const void *arg)
{
	mb_report_run_csv(f, arg);
}

int mb_cmd_run(int argc, char **argv)
{
	const char *suite = NULL, *model = NULL, *db = "mechbench.db", *json = NULL, *csv = NULL;
	const char *threads_s = NULL;
	int64_t threads = 0;
	int quiet = 0, show_strata = 0, rc, error = 0;
	mb_error err;
	mb_cli_spec_home home;
	mb_spec spec;
	mb_provenance prov;
	mb_run_result run;
	mb_store *store = NULL;
	mb_runner_opts opts;
	store_sink sink = {0};
	json_t *doc = NULL;

	if (mb_cli_wants_help(argc, argv)) {
		fputs(usage, stdout);
		return MB_EXIT_OK;
	}
	for (int i = 1; i < argc; i++) {
		if ((rc = mb_cli_opt(argc, argv, &i, "--suite", &suite, "run")) ||
		    (rc = mb_cli_opt(argc, argv, &i, "--model", &model, "run")) ||
		    (rc = mb_cli_opt(argc, argv, &i, "--db", &db, "run")) ||
		    (rc = mb_cli_opt(argc, argv, &i, "--json", &json, "run")) ||
		    (rc = mb_cli_opt(argc, argv, &i, "--csv", &csv, "run")) ||
		    (rc = mb_cli_opt(argc, argv, &i, "--threads", &threads_s, "run"))) {
			if (rc < 0)
				return MB_EXIT_USAGE;
		} else if (strcmp(argv[i], "--quiet") == 0) {
			quiet = 1;
		} else if (strcmp(argv[i], "--strata") == 0) {
			show_strata = 1;
		} else {
			return mb_cli_usage_error("run", "unexpected argument '%s'", argv[i]);
		}
	}
	if (!suite)
		return mb_cli_usage_error("run", "--suite FILE is required");
	mb_error_clear(&err);
	if (threads_s && mb_parse_i64(threads_s, 1, 4096, &threads, "--threads", &err) < 0)
		return mb_cli_usage_error("run", "%s", err.msg);

	memset(&spec, 0, sizeof(spec));
	memset(&run, 0, sizeof(run));
	if ((error = mb_cli_spec_home_open(&home, suite, 0, &err)) < 0)
		return mb_cli_fail(&err);
	if ((error = mb_spec_parse(&spec, home.text, home.len, suite, &err)) < 0)
		goto cleanup;
	mb_provenance_init(&prov, (int)threads);
	if ((error = mb_cli_provenance_spec(&prov, &home, &spec, &err)) < 0)
		goto cleanup;
	/* Take the write lock before the work, so a locked or read-only
	 * database fails in a second, not after the whole run. */
	if ((error = mb_store_open(&store, db, NULL, &err)) < 0 ||
	    (error = mb_store_run_begin(store, &sink.run_id, &prov, &err)) < 0)
		goto cleanup;
	sink.store = store;
	sink.spec = &spec;
	sink.root = home.root;
	sink.model = model;
	memset(&opts, 0, sizeof(opts));
	opts.threads = (int)threads;
	opts.progress = mb_cli_want_progress(quiet);
	opts.on_entry = put_entry;
	opts.payload = &sink;
	if ((error = mb_runner_run_suite(&run, &prov, &spec, home.root, model, &opts, &err)) < 0)
		goto cleanup;
	if ((error = mb_store_run_commit(store, sink.run_id, &run.prov, &err)) < 0)
		goto cleanup;
	run.id = sink.run_id;
	mb_report_run_terminal(stdout, &run, mb_cli_want_color());
	if (show_strata)
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
	if (!quiet)
		fprintf(stderr, "mechbench: stored run %lld in %s\n", (long long)run.id, db);
cleanup:
	json_decref(doc);
	mb_store_free(store); /* rolls back an uncommitted run */
	mb_run_result_dispose(&run);
	mb_spec_dispose(&spec);
	mb_cli_spec_home_dispose(&home);
	return error < 0 ? mb_cli_fail(&err) : MB_EXIT_OK;
}
