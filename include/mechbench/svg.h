/*
 * svg.h: a small SVG writer for the HTML report: heatmaps with a colour bar,
 * line plots with CI bands, a shaded band, threshold line and vertical
 * changepoint markers, stem plots (spectra) and layered graphs (circuits). Output is plain SVG 1.1
 * text meant to sit inline in HTML (no scripts, no external references).
 *
 * Readability rules the writer keeps: every text is >= 12px (ticks 13px,
 * axis labels 14px, titles 16px); sequential scales are viridis, signed
 * values use a diverging purple-white-orange scale (matplotlib's PuOr,
 * reversed) centred on 0, categorical colours are Okabe & Ito's (2008)
 * colour-blind-safe set; every string that came from data is XML-escaped.
 * Palette tables are matplotlib's, sampled at 33 stops and interpolated
 * linearly (tests/fixtures/report/gen_palettes.py).
 *
 * Writers return 0, or MB_EINVALID naming the plot for data that cannot be
 * drawn (no finite value, mismatched shapes); a FILE error is the caller's
 * to detect (ferror), as with the other report renderers.
 */
#ifndef MECHBENCH_SVG_H
#define MECHBENCH_SVG_H

#include <stddef.h>
#include <stdio.h>

#include <mechbench/error.h>
#include <mechbench/figure.h>

typedef enum mb_svg_palette {
	MB_SVG_VIRIDIS = 0, /* sequential */
	MB_SVG_CIVIDIS,     /* sequential, also readable by blue-yellow colour blindness */
	MB_SVG_PUOR,        /* diverging: purple (low) - white - orange (high) */
} mb_svg_palette;

/* The palette's colour at t in [0, 1] (clamped; NaN gives light grey). */
void mb_svg_palette_rgb(unsigned char rgb[3], mb_svg_palette p, double t);
/* Okabe-Ito colour i (cycled) as "#rrggbb": blue, orange, bluish green,
 * reddish purple, sky blue, vermillion, black. */
const char *mb_svg_category_color(size_t i);

typedef struct mb_svg_heatmap {
	const char *title, *x_label, *y_label, *value_label; /* may be NULL */
	size_t rows, cols;
	const double *values;          /* (rows, cols) row-major; NaN: missing (grey) */
	const char *const *row_labels; /* (rows) or NULL: indices */
	const char *const *col_labels; /* (cols) or NULL: indices */
	int diverging;                 /* symmetric scale around 0, PuOr */
} mb_svg_heatmap;

int mb_svg_write_heatmap(FILE *f, const mb_svg_heatmap *h, mb_error *err);

/* Marks on a line plot's points. */
enum { MB_SVG_MARK_NONE = 0, MB_SVG_MARK_WORSE = 1, MB_SVG_MARK_BETTER = 2 };

typedef struct mb_svg_series {
	const char *name;
	const double *x, *y;   /* (n); a NaN y breaks the line */
	const double *lo, *hi; /* (n) CI band, or NULL */
	const int *marks;      /* (n) MB_SVG_MARK_*, or NULL */
	size_t n;
} mb_svg_series;

typedef struct mb_svg_vline {
	double x;
	const char *label; /* drawn at the top; may be NULL */
	int alarm;         /* 0: changepoint (dashed black), 1: alarm (solid reddish purple) */
} mb_svg_vline;

typedef struct mb_svg_lineplot {
	const char *title, *x_label, *y_label;
	const mb_svg_series *series;
	size_t n_series;
	const mb_svg_vline *vlines; /* ascending x: a label overlapping the previous one is left out */
	size_t n_vlines;
	int has_band;          /* a shaded horizontal band [band_lo, band_hi] */
	double band_lo, band_hi;
	const char *band_label;
	int has_hline;         /* a dashed horizontal line (a threshold) */
	double hline;
	const char *hline_label;
} mb_svg_lineplot;

int mb_svg_write_lineplot(FILE *f, const mb_svg_lineplot *p, mb_error *err);

typedef struct mb_svg_stem {
	const char *title, *x_label, *y_label;
	const double *x; /* (n) or NULL: 0..n-1 */
	const double *y; /* (n) */
	size_t n;
} mb_svg_stem;

int mb_svg_write_stem(FILE *f, const mb_svg_stem *s, mb_error *err);

/* A layered graph (a circuit): nodes on rows, row 0 at the bottom (the
 * residual stream flows up), at a column each; edges drawn beneath the nodes
 * from node to node, their width by |weight| (the largest is 6px), their
 * colour by sign (orange positive, purple negative, grey NaN) and their dash
 * pattern by style; node fill by value on the diverging scale centred on 0
 * (symmetric around the largest |value|). Circles or squares; the label
 * inside (keep it to a few characters), the tooltip (<title>) gives `tip`. */
typedef struct mb_svg_graph_node {
	const char *label; /* inside the node: "6", "MLP" */
	const char *tip;   /* tooltip, or NULL: label */
	size_t row;        /* < rows; 0 at the bottom */
	double col;        /* position in columns, [0, cols) */
	double value;      /* fill; NaN: light grey */
	int square;        /* 1: a square, 0: a circle */
} mb_svg_graph_node;

/* Dash patterns of edges (a legend names what each means). */
enum { MB_SVG_EDGE_SOLID = 0, MB_SVG_EDGE_DASHED, MB_SVG_EDGE_DOTTED, MB_SVG_EDGE_DASHDOT,
       MB_SVG_EDGE_STYLES };

typedef struct mb_svg_graph_edge {
	size_t from, to; /* node indices */
	double weight;   /* NaN: a thin grey line */
	int style;       /* MB_SVG_EDGE_* */
	const char *tip; /* tooltip, or NULL */
} mb_svg_graph_edge;

typedef struct mb_svg_graph {
	const char *title, *value_label, *weight_label; /* may be NULL */
	size_t rows, cols;
	const char *const *row_labels; /* (rows), or NULL: indices */
	const char *const *col_labels; /* (cols), or NULL: none drawn */
	const mb_svg_graph_node *nodes;
	size_t n_nodes;
	const mb_svg_graph_edge *edges;
	size_t n_edges;
	const char *style_labels[MB_SVG_EDGE_STYLES]; /* legend; NULL: style unused */
} mb_svg_graph;

/* MB_EINVALID naming the graph for no nodes, a node outside the grid or an
 * edge naming a node that does not exist. */
int mb_svg_write_graph(FILE *f, const mb_svg_graph *g, mb_error *err);

/* Draws a figure (figure.h) as the plot of its kind. */
int mb_svg_write_figure(FILE *f, const mb_figure *fig, mb_error *err);

#endif
