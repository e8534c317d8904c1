/*
 * The SVG writer: palettes against matplotlib's own samples, escaping of
 * data, what each plot draws (cells and colour bar, CI band, changepoint
 * and alarm lines, stems), text never under 12px, and refusals of data that
 * cannot be drawn.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/svg.h>

#include "support/report_support.h"

/* Renders into a malloc'd string. */
typedef int (*draw_fn)(FILE *f, const void *arg, mb_error *err);

static char *render(int (*draw)(FILE *, const void *, mb_error *), const void *arg, int *rc,
		    mb_error *err)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	cr_assert(f);
	*rc = draw(f, arg, err);
	cr_assert_eq(fclose(f), 0);
	return buf;
}

static int draw_heatmap(FILE *f, const void *a, mb_error *err)
{
	return mb_svg_write_heatmap(f, a, err);
}

static int draw_lines(FILE *f, const void *a, mb_error *err)
{
	return mb_svg_write_lineplot(f, a, err);
}

static int draw_stem(FILE *f, const void *a, mb_error *err)
{
	return mb_svg_write_stem(f, a, err);
}

/* Every font-size="N" in svg is >= 12. */
static void expect_readable_text(const char *svg)
{
	size_t seen = 0;
	for (const char *p = svg; (p = strstr(p, "font-size=\"")) != NULL; p++) {
		double px = strtod(p + 11, NULL);
		cr_expect_geq(px, 12, "text at %gpx", px);
		seen++;
	}
	cr_expect_gt(seen, 0, "no text at all");
}

Test(svg, palettes_match_matplotlib_within_three_levels_of_255_per_channel)
{
	FILE *f = fopen(MB_SOURCE_DIR "/tests/fixtures/report/palettes.txt", "r");
	char line[256];
	mb_svg_palette pal = MB_SVG_VIRIDIS;
	int sampling = 0, max_diff = 0;
	size_t checked = 0;

	cr_assert(f, "palettes.txt missing");
	while (fgets(line, sizeof(line), f)) {
		int k, r, g, b;
		if (strncmp(line, "samples ", 8) == 0) {
			sampling = 1;
			pal = strstr(line, "cividis") ? MB_SVG_CIVIDIS
			      : strstr(line, "PuOr")  ? MB_SVG_PUOR
						      : MB_SVG_VIRIDIS;
			continue;
		}
		if (strncmp(line, "stops ", 6) == 0) {
			sampling = 0;
			continue;
		}
		if (sampling && sscanf(line, "%d %d %d %d", &k, &r, &g, &b) == 4) {
			unsigned char rgb[3];
			int want[3] = {r, g, b};
			mb_svg_palette_rgb(rgb, pal, k / 100.0);
			for (int c = 0; c < 3; c++) {
				int d = abs((int)rgb[c] - want[c]);
				max_diff = d > max_diff ? d : max_diff;
			}
			checked++;
		}
	}
	fclose(f);
	printf("palettes: %zu samples, max channel difference %d/255\n", checked, max_diff);
	cr_expect_eq(checked, 303);
	/* matplotlib itself picks the nearest of 256 table entries; we interpolate
	 * 65 stops: the two differ by a few levels, invisibly. */
	cr_expect_leq(max_diff, 3, "max channel difference %d", max_diff);
}

Test(svg, diverging_scale_is_white_at_zero_purple_below_and_orange_above)
{
	unsigned char mid[3], lo[3], hi[3];
	mb_svg_palette_rgb(mid, MB_SVG_PUOR, 0.5);
	mb_svg_palette_rgb(lo, MB_SVG_PUOR, 0.0);
	mb_svg_palette_rgb(hi, MB_SVG_PUOR, 1.0);
	cr_expect(mid[0] > 240 && mid[1] > 240 && mid[2] > 240, "centre %d %d %d", mid[0], mid[1],
		  mid[2]);
	cr_expect(lo[2] > lo[1] && lo[0] > lo[1], "low end is purple: %d %d %d", lo[0], lo[1], lo[2]);
	cr_expect(hi[0] > hi[1] && hi[1] > hi[2], "high end is orange: %d %d %d", hi[0], hi[1],
		  hi[2]);
}

Test(svg, escapes_every_string_from_data)
{
	const char *labels[2] = {"<script>alert(1)</script>", "a & b \"q\" 'x'"};
	double v[2] = {1, 2};
	mb_svg_heatmap h = {"title <b>", "x&y", "rows", "value", 2, 1, v, labels, NULL, 0};
	mb_error err;
	int rc;
	char *svg = render(draw_heatmap, &h, &rc, &err);

	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_expect_null(strstr(svg, "<script"), "unescaped tag in the SVG");
	cr_expect_null(strstr(svg, "<b>"));
	cr_expect(strstr(svg, "&lt;script&gt;alert(1)&lt;/script&gt;"));
	cr_expect(strstr(svg, "a &amp; b &quot;q&quot; &#39;x&#39;"));
	cr_expect(strstr(svg, "x&amp;y"));
	free(svg);
}

Test(svg, heatmap_draws_one_cell_per_value_a_colour_bar_and_readable_text)
{
	enum { R = 3, C = 4 };
	double v[R * C];
	mb_svg_heatmap h = {"Head effects", "head", "layer", "effect", R, C, v, NULL, NULL, 1};
	mb_error err;
	int rc;
	char *svg;

	for (int i = 0; i < R * C; i++)
		v[i] = i - 5.0;
	v[7] = NAN; /* a missing cell is drawn grey, not skipped */
	svg = render(draw_heatmap, &h, &rc, &err);
	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_expect(strncmp(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\"", 39) == 0);
	cr_expect_eq(mbt_count(svg, "<rect"), 1 + R * C + 64 + 2, "%zu rects",
		     mbt_count(svg, "<rect"));
	cr_expect(strstr(svg, "fill=\"#d9d9d9\""), "missing cell not grey");
	/* The most negative value is the purple end, the most positive orange:
	 * -5 and 6 around 0 on a symmetric scale of +-6. */
	cr_expect(strstr(svg, "<title>0, 0: -5</title>"));
	cr_expect(strstr(svg, "<title>2, 3: 6</title>"));
	cr_expect(strstr(svg, "Head effects") && strstr(svg, ">effect<"));
	expect_readable_text(svg);
	free(svg);
}

Test(svg, heatmap_refuses_a_matrix_without_a_finite_value)
{
	double v[2] = {NAN, INFINITY};
	mb_svg_heatmap h = {"empty", NULL, NULL, NULL, 1, 2, v, NULL, NULL, 0};
	mb_error err;
	int rc;
	char *svg = render(draw_heatmap, &h, &rc, &err);
	cr_expect_eq(rc, MB_EINVALID);
	cr_expect(strstr(err.msg, "heatmap 'empty': no finite value"), "%s", err.msg);
	free(svg);
}

Test(svg, line_plot_draws_the_ci_band_changepoints_alarm_band_and_marks)
{
	double x[5] = {0, 100, 200, 300, 400}, y[5] = {1, 1.1, 0.9, 3, 3.1};
	double lo[5] = {0.8, 0.9, 0.7, 2.8, 2.9}, hi[5] = {1.2, 1.3, 1.1, 3.2, 3.3};
	int marks[5] = {0, 0, 0, MB_SVG_MARK_BETTER, MB_SVG_MARK_BETTER};
	mb_svg_series se = {"mean", x, y, lo, hi, marks, 5};
	mb_svg_vline vl[2] = {{300, "step 300", 0}, {400, "alarm", 1}};
	mb_svg_lineplot p;
	mb_error err;
	int rc;
	char *svg;

	memset(&p, 0, sizeof(p));
	p.title = "drift";
	p.x_label = "step";
	p.y_label = "score";
	p.series = &se;
	p.n_series = 1;
	p.vlines = vl;
	p.n_vlines = 2;
	p.has_band = 1;
	p.band_lo = 0;
	p.band_hi = 2;
	p.band_label = "band";
	p.has_hline = 1;
	p.hline = 2.5;
	svg = render(draw_lines, &p, &rc, &err);
	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_expect(strstr(svg, "fill-opacity=\"0.22\""), "no CI band");
	cr_expect_eq(mbt_count(svg, "stroke-dasharray=\"6 4\""), 2, "changepoint line + legend");
	cr_expect(strstr(svg, "stroke=\"#CC79A7\""), "no alarm line");
	cr_expect(strstr(svg, ">step 300<") && strstr(svg, ">alarm<"));
	cr_expect_eq(mbt_count(svg, "fill=\"#009E73\""), 3, "two marks and the legend's");
	cr_expect_eq(mbt_count(svg, "<circle"), 5);
	cr_expect(strstr(svg, ">left band: better<"));
	expect_readable_text(svg);
	free(svg);
}

Test(svg, line_plot_writes_step_ticks_as_integers_and_leaves_out_overlapping_labels)
{
	double x[6] = {0, 5000, 10000, 15000, 20000, 25000}, y[6] = {5, 27, 20, 1, 0, 0};
	mb_svg_series se = {"mean", x, y, NULL, NULL, NULL, 6};
	/* 8000 and 8500 are ~10 px apart on a 25,000-step axis: one label fits */
	mb_svg_vline vl[3] = {{2000, "step 2000", 0}, {8000, "step 8000", 0}, {8500, "step 8500", 0}};
	mb_svg_lineplot p;
	mb_error err;
	int rc;
	char *svg;

	memset(&p, 0, sizeof(p));
	p.title = "steps";
	p.series = &se;
	p.n_series = 1;
	p.vlines = vl;
	p.n_vlines = 3;
	svg = render(draw_lines, &p, &rc, &err);
	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_expect(strstr(svg, ">25000<") && strstr(svg, ">10000<"), "integer step ticks");
	cr_expect_null(strstr(svg, "e+0"), "no exponent notation for steps");
	cr_expect(strstr(svg, ">step 2000<") && strstr(svg, ">step 8000<"));
	cr_expect_null(strstr(svg, ">step 8500<"), "an overlapping label was drawn");
	cr_expect_eq(mbt_count(svg, "stroke-dasharray=\"6 4\""), 4,
		     "every changepoint keeps its line (3, and the legend's)");
	free(svg);
}

Test(svg, line_plot_breaks_at_missing_points_and_refuses_no_points)
{
	double x[3] = {0, 1, 2}, y[3] = {1, NAN, 2}, none[2] = {NAN, NAN};
	mb_svg_series se = {"s", x, y, NULL, NULL, NULL, 3}, empty = {"e", x, none, NULL, NULL, NULL, 2};
	mb_svg_lineplot p;
	mb_error err;
	int rc;
	char *svg;

	memset(&p, 0, sizeof(p));
	p.series = &se;
	p.n_series = 1;
	svg = render(draw_lines, &p, &rc, &err);
	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_expect_eq(mbt_count(svg, "<circle"), 2);
	cr_expect(strstr(svg, "d=\"M ") && mbt_count(svg, " L ") == 0, "the gap was bridged");
	free(svg);
	p.title = "nothing";
	p.series = &empty;
	svg = render(draw_lines, &p, &rc, &err);
	cr_expect_eq(rc, MB_EINVALID);
	cr_expect(strstr(err.msg, "no finite point"), "%s", err.msg);
	free(svg);
}

Test(svg, stem_plot_draws_one_stem_per_frequency)
{
	double y[6] = {0, 0.5, 4, 0.2, 0, 1};
	mb_svg_stem s = {"spectrum", "frequency k", "norm", NULL, y, 6};
	mb_error err;
	int rc;
	char *svg = render(draw_stem, &s, &rc, &err);
	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_expect_eq(mbt_count(svg, "stroke=\"#0072B2\""), 6);
	cr_expect(strstr(svg, "<title>2: 4</title>"));
	expect_readable_text(svg);
	free(svg);
}

Test(svg, draws_each_kind_of_figure)
{
	mb_figure_list l;
	mb_figure *f;
	mb_error err;
	char *buf = NULL;
	size_t len = 0;
	FILE *out;

	memset(&l, 0, sizeof(l));
	cr_assert_eq(mb_figure_list_add(&l, &f, MB_FIGURE_HEATMAP, "t.pattern", 4, 4, &err), 0);
	for (int i = 0; i < 16; i++)
		f->values[i] = (i % 5 == 0) ? 1.0 : 0.0;
	cr_assert_eq(mb_figure_list_add(&l, &f, MB_FIGURE_LINES, "t.loss", 2, 3, &err), 0);
	for (int i = 0; i < 6; i++)
		f->values[i] = i;
	cr_assert_eq(mb_figure_set_row_label(f, 1, "second <repeat>", &err), 0);
	cr_assert_eq(mb_figure_list_add(&l, &f, MB_FIGURE_STEM, "t.spectrum", 1, 5, &err), 0);
	for (int i = 0; i < 5; i++)
		f->values[i] = i * i;
	out = open_memstream(&buf, &len);
	for (size_t i = 0; i < l.n; i++)
		cr_expect_eq(mb_svg_write_figure(out, &l.items[i], &err), 0, "%s", err.msg);
	fclose(out);
	cr_expect_eq(mbt_count(buf, "<svg "), 3);
	cr_expect(strstr(buf, "second &lt;repeat&gt;"));
	free(buf);
	mb_figure_list_dispose(&l);
}

static int draw_graph(FILE *f, const void *a, mb_error *err)
{
	return mb_svg_write_graph(f, a, err);
}

Test(svg, graph_draws_layers_as_rows_nodes_by_value_and_edges_by_weight)
{
	/* two layers of three heads and an MLP; node 0 in row 0, node 2 in row 1 */
	mb_svg_graph_node nodes[4] = {
		{"0", "a0.0 <left>", 0, 0, -2.0, 0},
		{"2", NULL, 0, 2, 0.5, 0},
		{"1", "a1.1", 1, 1, 2.0, 0},
		{"MLP", "m1", 1, 3, NAN, 1},
	};
	mb_svg_graph_edge edges[3] = {
		{0, 2, 3.0, MB_SVG_EDGE_DASHED, "q"},
		{1, 2, -1.5, MB_SVG_EDGE_SOLID, NULL},
		{2, 3, NAN, MB_SVG_EDGE_DOTTED, NULL},
	};
	const char *rows[2] = {"layer 0", "layer 1"};
	mb_svg_graph g = {.title = "Circuit", .value_label = "effect", .weight_label = "effect",
			  .rows = 2, .cols = 4, .row_labels = rows, .nodes = nodes,
			  .n_nodes = 4, .edges = edges, .n_edges = 3,
			  .style_labels = {"values", "queries", NULL, NULL}};
	mb_error err;
	int rc;
	char *svg = render(draw_graph, &g, &rc, &err);
	const char *y0, *y1;

	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_expect_eq(mbt_count(svg, "<circle "), 3);
	cr_expect_eq(mbt_count(svg, "<path "), 3);
	/* the widest edge is 6px, the other by its |weight| (1 + 5 * 1.5 / 3), NaN thin */
	cr_expect(strstr(svg, "stroke-width=\"6.00\" stroke-opacity=\"0.8\" stroke-dasharray=\"8 4\""),
		  "%s", svg);
	cr_expect(strstr(svg, "stroke-width=\"3.50\" stroke-opacity=\"0.8\"><title>"));
	cr_expect(strstr(svg, "stroke=\"#999999\" stroke-width=\"1.00\""), "a NaN weight: thin grey");
	/* the fill scale is symmetric: -2 is the purple end, +2 the orange end */
	{
		unsigned char lo[3], hi[3];
		char want[64];
		mb_svg_palette_rgb(lo, MB_SVG_PUOR, 0.0);
		mb_svg_palette_rgb(hi, MB_SVG_PUOR, 1.0);
		snprintf(want, sizeof(want), "fill=\"#%02x%02x%02x\"", lo[0], lo[1], lo[2]);
		cr_expect(strstr(svg, want), "%s", want);
		snprintf(want, sizeof(want), "fill=\"#%02x%02x%02x\"", hi[0], hi[1], hi[2]);
		cr_expect(strstr(svg, want), "%s", want);
	}
	/* layer 1 is drawn above layer 0 */
	y0 = strstr(svg, ">layer 0</text>");
	y1 = strstr(svg, ">layer 1</text>");
	cr_assert(y0 && y1);
	{
		const char *t0 = y0, *t1 = y1;
		while (t0 > svg && strncmp(t0, "<text", 5) != 0)
			t0--;
		while (t1 > svg && strncmp(t1, "<text", 5) != 0)
			t1--;
		cr_expect_gt(strtod(strstr(t0, "y=\"") + 3, NULL), strtod(strstr(t1, "y=\"") + 3, NULL));
	}
	cr_expect(strstr(svg, "<title>a0.0 &lt;left&gt;</title>"), "tooltips escaped");
	cr_expect(strstr(svg, ">queries</text>") && strstr(svg, ">values</text>"), "the legend");
	expect_readable_text(svg);
	free(svg);
	/* refusals: a node off the grid, an edge to no node */
	nodes[3].col = 4;
	svg = render(draw_graph, &g, &rc, &err);
	cr_expect_eq(rc, MB_EINVALID);
	cr_expect(strstr(err.msg, "graph 'Circuit': node 3 (MLP) at row 1 column 4 is outside 2 x 4"),
		  "%s", err.msg);
	free(svg);
	nodes[3].col = 3;
	edges[2].to = 9;
	svg = render(draw_graph, &g, &rc, &err);
	cr_expect_eq(rc, MB_EINVALID);
	cr_expect(strstr(err.msg, "graph 'Circuit': edge 2 joins nodes 2 and 9 of 4"), "%s", err.msg);
	free(svg);
}
