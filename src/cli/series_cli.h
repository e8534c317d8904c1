/*
 * series_cli.h: what `drift` and `report --series` share: a stored series
 * read back and analysed (drift.h), and its terminal, JSON and HTML forms.
 */
#ifndef MB_SERIES_CLI_H
#define MB_SERIES_CLI_H

#include <stdio.h>

#include <jansson.h>

#include <mechbench/drift.h>
#include <mechbench/error.h>
#include <mechbench/figure.h>
#include <mechbench/results.h>
#include <mechbench/runner.h>
#include <mechbench/spec.h>
#include <mechbench/store.h>

#include "options.h"

#define MB_DRIFT_JSON_FORMAT 1

/* Option rows of `drift` and `report --series` (options.h): --penalty (a
 * double; NAN when not given: mb_cli_series_penalty) and --min-seg (int64_t,
 * 0: the default, 2). */
#define MB_CLI_OPT_PENALTY(T, field)                                                     \
	{MB_OPT(DOUBLE, "--penalty", T, field), .meta = "X", .range = ">= 0",               \
	 .help = "PELT penalty (default 2 sigma^2 ln K, sigma from the differences of the " \
		 "trajectory)"}
#define MB_CLI_OPT_MIN_SEG(T, field)                                                     \
	{MB_OPT(INT, "--min-seg", T, field), .meta = "N", .range = "[1, 1000000]",          \
	 .help = "fewest checkpoints between changepoints (default 2)"}

typedef struct mb_cli_series_view {
	mb_results_series meta;
	mb_spec spec;            /* parsed from meta.spec: the bands the series began with */
	mb_results_point *points;
	size_t n_points;
	mb_run_result *runs;     /* (K) */
	mb_drift_result drift;
	/* Figures of a few checkpoints (the first, the last, either side of each
	 * main change): one group per (checkpoint, entry) that has figures. */
	mb_figure_list *figures; /* (n_groups) */
	char (*headings)[512];   /* (n_groups) */
	size_t n_groups;
} mb_cli_series_view;

/* The drift options from the rows above: the penalty when --penalty was
 * given (else NAN: the default), the minimum segment (0: the default). */
mb_drift_opts mb_cli_series_opts(const mb_cli_parsed *p, const mb_cli_cmd *cmd, double penalty,
				 int64_t min_seg);

/* Reads series `name` from s and analyses the entries of its registered spec
 * that it holds (all, or those `drift --entry` named: its first run's). */
int mb_cli_series_view_load(mb_cli_series_view *v, mb_store *s, const char *name,
			    const mb_drift_opts *opts, mb_error *err);
void mb_cli_series_view_dispose(mb_cli_series_view *v);

/* A few lines per metric: main change, changepoints, band exits, alarm. */
void mb_cli_series_print(FILE *f, const mb_cli_series_view *v);
/* The located phases of r (drift.h), one block per phases declaration:
 * each phase's step range and each boundary's registered window. */
void mb_cli_series_print_phases(FILE *f, const mb_drift_result *r);
/* The analysis as JSON (format in the README, "Drift"); NULL on OOM. */
json_t *mb_cli_series_json(const mb_cli_series_view *v);
/* The whole HTML page (for mb_html_write). */
int mb_cli_series_render_html(FILE *f, const void *view, mb_error *err);

#endif
