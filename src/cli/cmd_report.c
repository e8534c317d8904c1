/* cmd_report.c: `mechbench report`, the HTML report of a stored run or series. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/html.h>
#include <mechbench/parse.h>
#include <mechbench/results.h>
#include <mechbench/store.h>

#include "series_cli.h"
#include "suite_cli.h"

static const char usage[] =
	"usage: mechbench report (--run ID | --series NAME) --html FILE [--db FILE]\n"
	"                        [--penalty X] [--min-seg N]\n\n"
	"Writes one self-contained HTML file (inline SVG, no scripts, nothing fetched)\n"
	"from the results database: for a run, its provenance, each entry's aggregates\n"
	"with 95% CIs and the figures its tasks attached (heatmaps, attention patterns,\n"
	"spectra); for a checkpoint series (see `mechbench drift`), the drift of every\n"
	"metric with CI bands, its registered band, changepoints, band exits and the\n"
	"monitor's alarm, and the figures of the checkpoints around each main change.\n\n"
	"  --run ID        a stored run (its id, as `run` printed it)\n"
	"  --series NAME   a stored series (as `drift` named it)\n"
	"  --html FILE     where to write the page\n"
	"  --db FILE       results database (default mechbench.db)\n"
	"  --penalty X     for a series: PELT penalty, as `drift --penalty`\n"
	"  --min-seg N     for a series: as `drift --min-seg`\n\n"
	"Exit codes: 0 written, 1 error, 2 usage.\n";

typedef struct run_page {
	const mb_run_result *run;
	const mb_figure_list *figures;
} run_page;

static int render_run(FILE *f, const void *arg, mb_error *err)
{
	const run_page *p = arg;
	char title[256];
	int error;

	snprintf(title, sizeof(title), "mechbench run %lld: %s", (long long)p->run->id,
		 p->run->prov.suite);
	mb_html_begin(f, title);
	if ((error = mb_html_run(f, p->run, p->figures, err)) < 0)
		return error;
	mb_html_end(f);
	return 0;
}

int mb_cmd_report(int argc, char **argv)
{
	const char *run_s = NULL, *series = NULL, *html = NULL, *db = "mechbench.db";
	const char *penalty_s = NULL, *minseg_s = NULL;
	int64_t run_id = 0, min_seg = 0;
	mb_drift_opts dopts = {NAN, 0};
	int rc, error = 0;
	mb_error err;
	mb_store *store = NULL;
	mb_store_opts so = {1, 0};
	mb_run_result run;
	mb_figure_list *figs = NULL;
	mb_cli_series_view view;

	if (mb_cli_wants_help(argc, argv)) {
		fputs(usage, stdout);
		return MB_EXIT_OK;
	}
	for (int i = 1; i < argc; i++) {
		if ((rc = mb_cli_opt(argc, argv, &i, "--run", &run_s, "report")) ||
		    (rc = mb_cli_opt(argc, argv, &i, "--series", &series, "report")) ||
		    (rc = mb_cli_opt(argc, argv, &i, "--html", &html, "report")) ||
		    (rc = mb_cli_opt(argc, argv, &i, "--db", &db, "report")) ||
		    (rc = mb_cli_opt(argc, argv, &i, "--penalty", &penalty_s, "report")) ||
		    (rc = mb_cli_opt(argc, argv, &i, "--min-seg", &minseg_s, "report"))) {
			if (rc < 0)
				return MB_EXIT_USAGE;
		} else {
			return mb_cli_usage_error("report", "unexpected argument '%s'", argv[i]);
		}
	}
	if (!run_s == !series)
		return mb_cli_usage_error("report", "give exactly one of --run ID and --series NAME");
	if (!html)
		return mb_cli_usage_error("report", "--html FILE is required");
	mb_error_clear(&err);
	if (run_s && mb_parse_i64(run_s, 1, INT64_MAX, &run_id, "--run", &err) < 0)
		return mb_cli_usage_error("report", "%s", err.msg);
	if (minseg_s && mb_parse_i64(minseg_s, 1, 1000000, &min_seg, "--min-seg", &err) < 0)
		return mb_cli_usage_error("report", "%s", err.msg);
	if (penalty_s && (mb_parse_f64(penalty_s, &dopts.penalty, "--penalty", &err) < 0 ||
			  !(dopts.penalty >= 0)))
		return mb_cli_usage_error("report", "--penalty: expected a number >= 0, not '%s'",
					  penalty_s);
	dopts.min_seg = (size_t)min_seg;
	memset(&run, 0, sizeof(run));
	memset(&view, 0, sizeof(view));
	if ((error = mb_cli_check_writable(html, &err)) < 0)
		goto cleanup;
	if ((error = mb_store_open(&store, db, &so, &err)) < 0)
		goto cleanup;
	if (run_s) {
		run_page page;
		if ((error = mb_store_get_run(&run, store, run_id, &err)) < 0)
			goto cleanup;
		if (!(figs = calloc(run.n_entries ? run.n_entries : 1, sizeof(*figs)))) {
			error = mb_error_oom(&err, "figures", run.n_entries);
			goto cleanup;
		}
		for (size_t e = 0; e < run.n_entries; e++)
			if ((error = mb_results_get_figures(&figs[e], store, run.id,
							    run.entries[e].name, &err)) < 0 ||
			    (error = mb_cli_strata_stored(&run.entries[e], &run.prov, &err)) < 0)
				goto cleanup;
		page.run = &run;
		page.figures = figs;
		error = mb_html_write(html, render_run, &page, &err);
	} else {
		if ((error = mb_cli_series_view_load(&view, store, series, &dopts, &err)) < 0)
			goto cleanup;
		error = mb_html_write(html, mb_cli_series_render_html, &view, &err);
	}
cleanup:
	for (size_t e = 0; figs && e < run.n_entries; e++)
		mb_figure_list_dispose(&figs[e]);
	free(figs);
	mb_run_result_dispose(&run);
	mb_cli_series_view_dispose(&view);
	mb_store_free(store);
	return error < 0 ? mb_cli_fail(&err) : MB_EXIT_OK;
}
