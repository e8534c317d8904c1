/*
 * figure.h: plots as data. A task attaches named figures to a run (its
 * optional `figures` hook in task.h); the store keeps them (results.h, table
 * `figures`, one JSON document each) and the HTML report draws them
 * (svg.h). A figure never holds pixels or SVG: only numbers and labels, so
 * it can be stored, compared and re-rendered. This module is in util (it
 * knows nothing of tasks); task.h declares mb_figure_compute, which runs a
 * task's hook into a figure list.
 *
 * Three kinds:
 *   HEATMAP  a (rows, cols) matrix: head effects (layer x head), attention
 *            patterns (query x key). `diverging` centres the colour scale on
 *            0 (purple negative, orange positive) for signed values; otherwise
 *            viridis from the smallest to the largest value.
 *   LINES    `rows` series of `cols` points each over shared x (loss per
 *            position, ...); row_labels name the series.
 *   STEM     one row of `cols` values over x: a spectrum (Fourier norms per
 *            frequency), a bar per x.
 *
 * Legend: R rows, C cols.
 *
 * JSON form (what the store keeps; keys in this order):
 *   {"mechbench_figure": 1, "name": "...", "kind": "heatmap"|"lines"|"stem",
 *    "title": "...", "x_label": "...", "y_label": "...", "value_label": "...",
 *    "diverging": bool, "rows": R, "cols": C,
 *    "row_labels": [R strings] | null, "col_labels": [C strings] | null,
 *    "x": [C numbers] | null, "values": [R*C numbers or null (missing)]}
 * Values carry 17 significant digits, so they read back bit for bit.
 */
#ifndef MECHBENCH_FIGURE_H
#define MECHBENCH_FIGURE_H

#include <stddef.h>

#include <jansson.h>

#include <mechbench/error.h>

#define MB_FIGURE_FORMAT 1
/* Upper bound on rows * cols: a 256 x 256 attention pattern is the largest
 * picture a report can still draw cell by cell. */
#define MB_FIGURE_MAX_CELLS 65536
#define MB_FIGURE_MAX_ROWS 1024 /* LINES series, HEATMAP rows */

typedef enum mb_figure_kind {
	MB_FIGURE_HEATMAP = 0,
	MB_FIGURE_LINES,
	MB_FIGURE_STEM,
} mb_figure_kind;

typedef struct mb_figure {
	char *name;        /* "induction.head_scores": task-prefixed, unique in an entry */
	mb_figure_kind kind;
	char *title;       /* "" when none; every string is owned and never NULL */
	char *x_label;     /* HEATMAP: the columns' axis; LINES/STEM: x */
	char *y_label;     /* HEATMAP: the rows' axis; LINES/STEM: the value */
	char *value_label; /* HEATMAP: the colour bar's label */
	int diverging;     /* HEATMAP: scale symmetric around 0 */
	size_t rows, cols;
	double *values;    /* (R, C) row-major; NaN marks a missing cell or point */
	char **row_labels; /* (R) or NULL: HEATMAP row ticks, LINES series names */
	char **col_labels; /* (C) or NULL: HEATMAP column ticks */
	double *x;         /* (C) or NULL (0..C-1): LINES and STEM abscissae */
} mb_figure;

typedef struct mb_figure_list {
	mb_figure *items;
	size_t n, cap;
} mb_figure_list;

/* "heatmap", "lines", "stem"; the parser returns 0 or MB_EINVALID. */
const char *mb_figure_kind_name(mb_figure_kind k);
int mb_figure_kind_parse(const char *s, mb_figure_kind *out);

/* Appends a figure of `kind` called `name` with a (rows, cols) matrix of
 * NaN, empty labels and no x, and points *out at it (valid until the next
 * add). STEM needs rows == 1. MB_EINVALID for an empty or duplicate name, a
 * zero or too large shape (see the limits above); MB_ENOMEM. The caller then
 * fills values and, with the setters below, titles and labels. */
int mb_figure_list_add(mb_figure_list *l, mb_figure **out, mb_figure_kind kind, const char *name,
		       size_t rows, size_t cols, mb_error *err);

/* Sets title, x_label, y_label and value_label (NULL leaves one as it is). */
int mb_figure_set_text(mb_figure *f, const char *title, const char *x_label, const char *y_label,
		       const char *value_label, mb_error *err);
/* Sets row label i (< rows) / column label j (< cols); the other labels of
 * that axis start as their index ("0", "1", ...). */
int mb_figure_set_row_label(mb_figure *f, size_t i, const char *label, mb_error *err);
int mb_figure_set_col_label(mb_figure *f, size_t j, const char *label, mb_error *err);
/* Sets the abscissae x[0..cols) (copied; must be finite and increasing). */
int mb_figure_set_x(mb_figure *f, const double *x, mb_error *err);

/* The figure as a JSON document (new reference, format above); NULL on
 * allocation failure. */
json_t *mb_figure_to_json(const mb_figure *f);
/* Appends the figure in doc (format above) to l, checking every field; name
 * labels messages ("run 3 entry toy figure x: values[4]: ..."). */
int mb_figure_list_add_json(mb_figure_list *l, const json_t *doc, const char *name,
			    mb_error *err);

/* The figure called name in l, or NULL. */
const mb_figure *mb_figure_list_find(const mb_figure_list *l, const char *name);

void mb_figure_list_dispose(mb_figure_list *l);

#endif
