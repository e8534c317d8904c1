/* cmd_report.c: `mechbench report`, the HTML report of a stored run or series. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include <mechbench/html.h>
#include <mechbench/results.h>
#include <mechbench/store.h>

#include "series_cli.h"
#include "suite_cli.h"

typedef struct report_args {
	const char *html, *db, *series;
	int64_t run, min_seg;
	double penalty;
} report_args;

static const mb_cli_opt report_opts[] = {
	{MB_OPT(INT, "--run", report_args, run), .meta = "ID", .range = ">= 1",
	 .help = "a stored run (its id, as `run` printed it)"},
	{MB_OPT(STRING, "--series", report_args, series), .meta = "NAME",
	 .help = "a stored series (as `drift` named it)"},
	{MB_OPT(PATH, "--html", report_args, html), .meta = "FILE", .required = 1,
	 .help = "where to write the page"},
	{MB_OPT(PATH, "--db", report_args, db), .meta = "FILE", .def = "mechbench.db",
	 .help = "results database"},
	MB_CLI_OPT_PENALTY(report_args, penalty),
	MB_CLI_OPT_MIN_SEG(report_args, min_seg),
};

static const mb_cli_cmd report_cmd = {
	.name = "report",
	.opts = report_opts,
	.n_opts = MB_CLI_N(report_opts),
	.synopsis = "mechbench report (--run ID | --series NAME) --html FILE [--db FILE]\n"
		    "                        [--penalty X] [--min-seg N]\n",
	.about =
	"Writes one self-contained HTML file (inline SVG, no scripts, nothing fetched)\n"
	"from the results database: for a run, its provenance, each entry's aggregates\n"
	"with 95% CIs and the figures its tasks attached (heatmaps, attention patterns,\n"
	"spectra); for a checkpoint series (see `mechbench drift`), the drift of every\n"
	"metric with CI bands, its registered band, changepoints, band exits and the\n"
	"monitor's alarm, and the figures of the checkpoints around each main change.\n"
	"--penalty and --min-seg apply to a series, as in `drift`.\n",
	.notes = "Exit codes: 0 written, 1 error, 2 usage.\n",
};

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
	report_args a = {0};
	mb_cli_parsed parsed;
	const char *series, *html, *db;
	int64_t run_id;
	mb_drift_opts dopts;
	int rc, error = 0;
	mb_error err;
	mb_store *store = NULL;
	mb_store_opts so = {.readonly = 1};
	mb_run_result run;
	mb_figure_list *figs = NULL;
	mb_cli_series_view view;

	if ((rc = mb_cli_parse(&parsed, &a, &report_cmd, argc, argv)) != MB_CLI_GO)
		return rc;
	if (!mb_cli_given(&parsed, &report_cmd, "--run") == !a.series)
		return mb_cli_usage_error("report", "give exactly one of --run ID and --series NAME");
	if ((rc = mb_cli_only_with(&parsed, &report_cmd, "--penalty", a.series != NULL,
				   "--series")) != MB_CLI_GO ||
	    (rc = mb_cli_only_with(&parsed, &report_cmd, "--min-seg", a.series != NULL,
				   "--series")) != MB_CLI_GO)
		return rc;
	run_id = a.run;
	series = a.series;
	html = a.html;
	db = a.db;
	dopts = mb_cli_series_opts(&parsed, &report_cmd, a.penalty, a.min_seg);
	mb_error_clear(&err);
	memset(&run, 0, sizeof(run));
	memset(&view, 0, sizeof(view));
	if ((error = mb_cli_check_outputs(&(mb_cli_path){"--html", html}, 1,
					  &(mb_cli_path){"--db", db}, 1, &err)) < 0)
		goto cleanup;
	if ((error = mb_store_open(&store, db, &so, &err)) < 0)
		goto cleanup;
	if (!series) {
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
