/*
 * html.h: the HTML report, one self-contained file: inline CSS and inline
 * SVG plots (svg.h), no scripts, no fonts or images to fetch (a Content
 * Security Policy in the page forbids any), so it opens the same anywhere,
 * offline, with JavaScript off. Every string that came from data (suite,
 * entry, metric and model names, paths, labels) is HTML-escaped.
 *
 * A page is mb_html_begin, sections, mb_html_end; mb_html_write renders a
 * page into memory and writes it atomically.
 */
#ifndef MECHBENCH_HTML_H
#define MECHBENCH_HTML_H

#include <stddef.h>
#include <stdio.h>

#include <mechbench/drift.h>
#include <mechbench/error.h>
#include <mechbench/figure.h>
#include <mechbench/runner.h>

/* The document head (title escaped, inline style sheet) and <body>. */
void mb_html_begin(FILE *f, const char *title);
/* The footer (generator and version) and the closing tags. */
void mb_html_end(FILE *f);
/* Data strings are escaped with mb_str_put_xml (str.h), which is safe for
 * HTML text and attribute values too. */

/* A run: provenance, each entry's aggregates with CIs, its artifact (a
 * circuit as a graph of layers and heads with a table of its numbers,
 * artifact.h; another kind as its JSON) and the figures its task attached
 * (figures: one list per entry, in run order, or NULL). */
int mb_html_run(FILE *f, const mb_run_result *run, const mb_figure_list *figures,
		mb_error *err);

/* Figures under headings: each group is an <h3> and its plots. */
typedef struct mb_html_figure_group {
	const char *heading;
	const mb_figure_list *figures;
} mb_html_figure_group;
int mb_html_figures(FILE *f, const mb_html_figure_group *groups, size_t n, mb_error *err);

/* A checkpoint series: what it is, the method, a summary per metric (main
 * change, first band exit, monitor alarm), and per metric the drift line
 * (means with 95% CI band, the reference's band of +- margin, threshold,
 * changepoints, alarm, flagged checkpoints) and a table of checkpoints. */
typedef struct mb_html_series {
	const char *name, *suite, *spec_path, *spec_blob, *source, *created_at;
	const mb_drift_result *drift;
} mb_html_series;
int mb_html_series_section(FILE *f, const mb_html_series *s, mb_error *err);

/* Renders a page with render(f, arg, err) into memory and writes it to path
 * atomically (its folders created). A render error or an unwritable path
 * leaves nothing at path. */
int mb_html_write(const char *path, int (*render)(FILE *f, const void *arg, mb_error *err),
		  const void *arg, mb_error *err);

#endif
