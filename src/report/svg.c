/*
 * svg.c: the SVG writer (svg.h). Coordinates are in CSS pixels; numbers
 * print with %.2f for geometry and %.4g for values.
 *
 * Legend: R rows, C cols of a heatmap; n points of a series.
 */
#include <mechbench/svg.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/str.h>

/* Palette stops: matplotlib 3.6.3 viridis, cividis and PuOr_r at t = k/64
 * (tests/fixtures/report/gen_palettes.py prints them). */
static const unsigned char viridis_stops[65][3] = {
	{68, 1, 84}, {70, 7, 90}, {71, 13, 96}, {71, 19, 101},
	{72, 24, 106}, {72, 29, 111}, {72, 35, 116}, {72, 40, 120},
	{71, 45, 123}, {70, 50, 126}, {69, 55, 129}, {68, 59, 132},
	{66, 64, 134}, {64, 69, 136}, {62, 73, 137}, {61, 78, 138},
	{59, 82, 139}, {57, 86, 140}, {55, 91, 141}, {53, 95, 141},
	{51, 99, 141}, {49, 103, 142}, {47, 107, 142}, {46, 111, 142},
	{44, 114, 142}, {42, 118, 142}, {41, 122, 142}, {39, 126, 142},
	{38, 130, 142}, {37, 133, 142}, {35, 137, 142}, {34, 141, 141},
	{33, 145, 140}, {31, 148, 140}, {31, 152, 139}, {30, 156, 137},
	{31, 160, 136}, {32, 163, 134}, {34, 167, 133}, {37, 171, 130},
	{40, 174, 128}, {45, 178, 125}, {50, 182, 122}, {56, 185, 119},
	{63, 188, 115}, {70, 192, 111}, {78, 195, 107}, {86, 198, 103},
	{94, 201, 98}, {103, 204, 92}, {112, 207, 87}, {122, 209, 81},
	{132, 212, 75}, {142, 214, 69}, {152, 216, 62}, {162, 218, 55},
	{173, 220, 48}, {184, 222, 41}, {194, 223, 35}, {205, 225, 29},
	{216, 226, 25}, {226, 228, 24}, {236, 229, 27}, {246, 230, 32},
	{253, 231, 37},
};
static const unsigned char cividis_stops[65][3] = {
	{0, 34, 78}, {0, 37, 84}, {0, 40, 91}, {0, 43, 98},
	{0, 46, 106}, {0, 48, 112}, {5, 51, 113}, {18, 53, 112},
	{26, 56, 111}, {33, 59, 110}, {39, 62, 110}, {45, 65, 109},
	{50, 67, 109}, {54, 70, 108}, {59, 73, 108}, {63, 76, 108},
	{67, 78, 108}, {71, 81, 108}, {75, 84, 108}, {79, 87, 108},
	{83, 90, 109}, {86, 92, 109}, {90, 95, 110}, {94, 98, 110},
	{97, 101, 111}, {101, 104, 112}, {104, 106, 113}, {108, 109, 114},
	{111, 112, 115}, {114, 115, 116}, {118, 118, 118}, {121, 121, 119},
	{125, 124, 120}, {128, 127, 120}, {132, 130, 121}, {136, 133, 120},
	{140, 136, 120}, {144, 139, 120}, {147, 142, 120}, {151, 145, 119},
	{155, 148, 118}, {159, 151, 117}, {163, 154, 116}, {167, 157, 115},
	{171, 160, 114}, {175, 164, 113}, {180, 167, 111}, {184, 170, 110},
	{188, 174, 108}, {192, 177, 106}, {196, 180, 104}, {200, 184, 102},
	{205, 187, 99}, {209, 191, 97}, {213, 194, 94}, {218, 198, 91},
	{222, 201, 88}, {226, 205, 84}, {231, 209, 80}, {235, 212, 75},
	{240, 216, 70}, {245, 220, 65}, {249, 224, 58}, {254, 228, 52},
	{254, 232, 56},
};
static const unsigned char puor_stops[65][3] = {
	{45, 0, 75}, {51, 6, 85}, {57, 12, 94}, {63, 18, 104},
	{69, 24, 113}, {76, 31, 123}, {82, 37, 132}, {88, 46, 140},
	{95, 58, 145}, {102, 70, 151}, {109, 82, 156}, {116, 94, 162},
	{123, 106, 168}, {130, 117, 173}, {138, 126, 179}, {146, 135, 185},
	{153, 144, 191}, {161, 152, 197}, {169, 161, 203}, {177, 170, 209},
	{183, 177, 213}, {189, 185, 217}, {195, 192, 221}, {201, 200, 225},
	{207, 207, 229}, {213, 214, 233}, {218, 220, 236}, {223, 225, 238},
	{228, 229, 240}, {233, 234, 242}, {238, 238, 243}, {243, 243, 245},
	{247, 247, 246}, {248, 243, 236}, {249, 239, 225}, {250, 236, 215},
	{252, 232, 205}, {253, 229, 195}, {254, 225, 185}, {254, 219, 172},
	{254, 213, 159}, {254, 207, 146}, {253, 200, 133}, {253, 194, 120},
	{253, 188, 107}, {251, 181, 94}, {247, 172, 82}, {242, 164, 70},
	{238, 155, 57}, {233, 147, 45}, {229, 138, 32}, {224, 130, 20},
	{217, 123, 18}, {210, 117, 16}, {203, 110, 13}, {196, 104, 11},
	{189, 97, 9}, {182, 90, 7}, {174, 85, 6}, {166, 81, 7},
	{158, 76, 7}, {149, 72, 7}, {141, 67, 7}, {133, 62, 8},
	{127, 59, 8},
};

#define FONT "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""
#define WIDTH 760.0

static const char *const okabe_ito[] = {"#0072B2", "#E69F00", "#009E73", "#CC79A7",
					"#56B4E9", "#D55E00", "#000000"};

const char *mb_svg_category_color(size_t i)
{
	return okabe_ito[i % (sizeof(okabe_ito) / sizeof(okabe_ito[0]))];
}

void mb_svg_palette_rgb(unsigned char rgb[3], mb_svg_palette p, double t)
{
	const unsigned char(*stops)[3] = p == MB_SVG_CIVIDIS ? cividis_stops
					 : p == MB_SVG_PUOR  ? puor_stops
							     : viridis_stops;
	double u, frac;
	size_t k;

	if (isnan(t)) {
		rgb[0] = rgb[1] = rgb[2] = 217; /* missing: light grey */
		return;
	}
	t = t < 0 ? 0 : t > 1 ? 1 : t;
	u = t * 64.0;
	k = (size_t)u;
	if (k >= 64)
		k = 63;
	frac = u - (double)k;
	for (int c = 0; c < 3; c++) {
		double v = (1.0 - frac) * stops[k][c] + frac * stops[k + 1][c];
		rgb[c] = (unsigned char)lround(v);
	}
}

/* --- shared pieces ------------------------------------------------------------------------ */

static void fmt_value(char *buf, size_t cap, double v)
{
	if (isnan(v))
		snprintf(buf, cap, "n/a");
	else if (v == 0)
		snprintf(buf, cap, "0");
	else if (fabs(v) < 1e7 && v == floor(v))
		snprintf(buf, cap, "%.0f", v); /* steps and counts: 25000, not 2.5e+04 */
	else
		snprintf(buf, cap, "%.4g", v);
}

/* Rough width of s at font size px (DejaVu Sans averages ~0.6 em). */
static double text_width(const char *s, double px)
{
	return s ? 0.6 * px * (double)strlen(s) : 0;
}

static void text(FILE *f, double x, double y, double px, const char *anchor, const char *extra,
		 const char *s)
{
	fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"%.0f\" text-anchor=\"%s\" fill=\"#222\"%s%s>",
		x, y, px, anchor, extra ? " " : "", extra ? extra : "");
	mb_str_put_xml(f, s);
	fputs("</text>\n", f);
}

static void text_num(FILE *f, double x, double y, double px, const char *anchor, double v)
{
	char buf[32];
	fmt_value(buf, sizeof(buf), v);
	text(f, x, y, px, anchor, NULL, buf);
}

static void svg_open(FILE *f, double w, double h, const char *title)
{
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
		"viewBox=\"0 0 %.0f %.0f\" role=\"img\" " FONT ">\n<title>", w, h, w, h);
	mb_str_put_xml(f, title && title[0] ? title : "plot");
	fputs("</title>\n", f);
	fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n", w, h);
	if (title && title[0])
		text(f, 12, 22, 16, "start", "font-weight=\"bold\"", title);
}

/* "Nice" ticks (1, 2, 5 x 10^k) covering [lo, hi]: writes up to cap ticks
 * into t and returns how many; widens [lo, hi] to the outer ticks. */
static size_t nice_ticks(double *lo, double *hi, double *t, size_t cap, int target)
{
	double range, raw, mag, step, first;
	size_t n = 0;

	if (!(*hi > *lo)) {
		double pad = fabs(*lo) > 0 ? fabs(*lo) * 0.1 : 1.0;
		*lo -= pad;
		*hi += pad;
	}
	range = *hi - *lo;
	raw = range / target;
	mag = pow(10.0, floor(log10(raw)));
	step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag
									      : 10 * mag;
	first = floor(*lo / step) * step;
	*lo = first;
	*hi = ceil(*hi / step - 1e-9) * step;
	for (double v = first; v <= *hi + step * 1e-6 && n < cap; v += step) {
		/* snap -0 and accumulated error to the grid */
		double snapped = round(v / step) * step;
		t[n++] = fabs(snapped) < step * 1e-9 ? 0 : snapped;
	}
	return n;
}

typedef struct axes {
	double x0, y0, w, h;   /* plot area: left, top, width, height */
	double xlo, xhi, ylo, yhi;
} axes;

static double ax_x(const axes *a, double x)
{
	return a->x0 + (x - a->xlo) / (a->xhi - a->xlo) * a->w;
}

static double ax_y(const axes *a, double y)
{
	return a->y0 + a->h - (y - a->ylo) / (a->yhi - a->ylo) * a->h;
}

/* Frame, grid, ticks and axis labels of a plot area. */
static void draw_axes(FILE *f, const axes *a, const double *xt, size_t nxt, const double *yt,
		      size_t nyt, const char *x_label, const char *y_label)
{
	for (size_t i = 0; i < nyt; i++) {
		double y = ax_y(a, yt[i]);
		fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#e3e3e3\"/>\n",
			a->x0, y, a->x0 + a->w, y);
		text_num(f, a->x0 - 6, y + 4.5, 13, "end", yt[i]);
	}
	for (size_t i = 0; i < nxt; i++) {
		double x = ax_x(a, xt[i]);
		fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#e3e3e3\"/>\n",
			x, a->y0, x, a->y0 + a->h);
		text_num(f, x, a->y0 + a->h + 18, 13, "middle", xt[i]);
	}
	fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
		"stroke=\"#555\"/>\n", a->x0, a->y0, a->w, a->h);
	if (x_label && x_label[0])
		text(f, a->x0 + a->w / 2, a->y0 + a->h + 40, 14, "middle", NULL, x_label);
	if (y_label && y_label[0]) {
		char rot[96];
		double cx = a->x0 - 62, cy = a->y0 + a->h / 2;
		snprintf(rot, sizeof(rot), "transform=\"rotate(-90 %.2f %.2f)\"", cx, cy);
		text(f, cx, cy, 14, "middle", rot, y_label);
	}
}

/* --- heatmap ------------------------------------------------------------------------------ */

int mb_svg_write_heatmap(FILE *f, const mb_svg_heatmap *h, mb_error *err)
{
	const size_t R = h->rows, C = h->cols;
	double vmin = INFINITY, vmax = -INFINITY, cell, label_w = 0, x0, y0, pw, ph, W, H;
	double ticks[16], tlo, thi;
	size_t nt, row_every, col_every;
	int rotate_cols = 0;
	const char *title = h->title ? h->title : "";

	if (R == 0 || C == 0 || !h->values)
		return mb_error_set(err, MB_EINVALID, "heatmap '%s': no cells", title);
	for (size_t i = 0; i < R * C; i++)
		if (isfinite(h->values[i])) {
			vmin = fmin(vmin, h->values[i]);
			vmax = fmax(vmax, h->values[i]);
		}
	if (!(vmin <= vmax))
		return mb_error_set(err, MB_EINVALID, "heatmap '%s': no finite value in %zu cells",
				    title, R * C);
	if (h->diverging) {
		double m = fmax(fabs(vmin), fabs(vmax));
		vmin = m > 0 ? -m : -1;
		vmax = m > 0 ? m : 1;
	} else if (vmin == vmax) {
		vmin -= 0.5;
		vmax += 0.5;
	}
	/* Cells as square as the space allows; labels thinned so ticks do not
	 * overlap at 13px. */
	cell = fmin(520.0 / (double)C, 440.0 / (double)R);
	cell = fmin(fmax(cell, 1.0), 60.0);
	for (size_t i = 0; i < R; i++) {
		char num[32];
		snprintf(num, sizeof(num), "%zu", i);
		label_w = fmax(label_w, text_width(h->row_labels ? h->row_labels[i] : num, 13));
	}
	label_w = fmin(label_w, 180);
	for (size_t j = 0; j < C && h->col_labels; j++)
		if (text_width(h->col_labels[j], 13) > cell * 0.95)
			rotate_cols = 1;
	row_every = (size_t)ceil(16.0 / cell);
	col_every = rotate_cols ? (size_t)ceil(16.0 / cell) : (size_t)ceil(34.0 / cell);
	if (row_every < 1)
		row_every = 1;
	if (col_every < 1)
		col_every = 1;
	x0 = 40 + label_w + 12;
	y0 = 44;
	pw = cell * (double)C;
	ph = cell * (double)R;
	W = fmax(WIDTH, x0 + pw + 130);
	H = y0 + fmax(ph, 160) + (rotate_cols ? 120 : 62);
	svg_open(f, W, H, h->title);
	fprintf(f, "<g shape-rendering=\"crispEdges\">\n");
	for (size_t i = 0; i < R; i++)
		for (size_t j = 0; j < C; j++) {
			double v = h->values[i * C + j];
			unsigned char rgb[3];
			mb_svg_palette_rgb(rgb, h->diverging ? MB_SVG_PUOR : MB_SVG_VIRIDIS,
					   isfinite(v) ? (v - vmin) / (vmax - vmin) : NAN);
			fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
				"fill=\"#%02x%02x%02x\"><title>",
				x0 + cell * (double)j, y0 + cell * (double)i, cell + 0.02, cell + 0.02,
				rgb[0], rgb[1], rgb[2]);
			if (h->row_labels)
				mb_str_put_xml(f, h->row_labels[i]);
			else
				fprintf(f, "%zu", i);
			fputs(", ", f);
			if (h->col_labels)
				mb_str_put_xml(f, h->col_labels[j]);
			else
				fprintf(f, "%zu", j);
			{
				char buf[32];
				fmt_value(buf, sizeof(buf), v);
				fprintf(f, ": %s</title></rect>\n", buf);
			}
		}
	fputs("</g>\n", f);
	fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
		"stroke=\"#555\"/>\n", x0, y0, pw, ph);
	for (size_t i = 0; i < R; i += row_every) {
		char num[32];
		snprintf(num, sizeof(num), "%zu", i);
		text(f, x0 - 6, y0 + cell * ((double)i + 0.5) + 4.5, 13, "end", NULL,
		     h->row_labels ? h->row_labels[i] : num);
	}
	for (size_t j = 0; j < C; j += col_every) {
		char num[32], rot[96];
		double cx = x0 + cell * ((double)j + 0.5), cy = y0 + ph + 16;
		snprintf(num, sizeof(num), "%zu", j);
		if (rotate_cols) {
			snprintf(rot, sizeof(rot), "transform=\"rotate(-60 %.2f %.2f)\"", cx, cy - 4);
			text(f, cx, cy - 4, 13, "end", rot, h->col_labels ? h->col_labels[j] : num);
		} else {
			text(f, cx, cy, 13, "middle", NULL, h->col_labels ? h->col_labels[j] : num);
		}
	}
	if (h->x_label && h->x_label[0])
		text(f, x0 + pw / 2, y0 + ph + (rotate_cols ? 100 : 40), 14, "middle", NULL,
		     h->x_label);
	if (h->y_label && h->y_label[0]) {
		char rot[96];
		double cx = x0 - label_w - 22, cy = y0 + ph / 2;
		snprintf(rot, sizeof(rot), "transform=\"rotate(-90 %.2f %.2f)\"", cx, cy);
		text(f, cx, cy, 14, "middle", rot, h->y_label);
	}
	/* Colour bar: 64 slices, ticks at nice values inside [vmin, vmax]. */
	{
		double bx = x0 + pw + 24, bh = fmax(ph, 160), by = y0;
		for (int k = 0; k < 64; k++) {
			unsigned char rgb[3];
			mb_svg_palette_rgb(rgb, h->diverging ? MB_SVG_PUOR : MB_SVG_VIRIDIS,
					   (k + 0.5) / 64.0);
			fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"16\" height=\"%.2f\" "
				"fill=\"#%02x%02x%02x\" shape-rendering=\"crispEdges\"/>\n", bx,
				by + bh - bh * (k + 1) / 64.0, bh / 64.0 + 0.05, rgb[0], rgb[1],
				rgb[2]);
		}
		fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"16\" height=\"%.2f\" fill=\"none\" "
			"stroke=\"#555\"/>\n", bx, by, bh);
		tlo = vmin;
		thi = vmax;
		nt = nice_ticks(&tlo, &thi, ticks, 16, 4);
		for (size_t k = 0; k < nt; k++) {
			double y;
			if (ticks[k] < vmin - 1e-12 * fabs(vmin) || ticks[k] > vmax + 1e-12 * fabs(vmax))
				continue;
			y = by + bh - (ticks[k] - vmin) / (vmax - vmin) * bh;
			fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" "
				"stroke=\"#222\"/>\n", bx + 16, y, bx + 20, y);
			text_num(f, bx + 23, y + 4.5, 13, "start", ticks[k]);
		}
		if (h->value_label && h->value_label[0]) {
			char rot[96];
			double cx = bx + 90, cy = by + bh / 2;
			snprintf(rot, sizeof(rot), "transform=\"rotate(-90 %.2f %.2f)\"", cx, cy);
			text(f, cx, cy, 14, "middle", rot, h->value_label);
		}
	}
	fputs("</svg>\n", f);
	return 0;
}

/* --- line plot ---------------------------------------------------------------------------- */

static void widen(double *lo, double *hi, double v)
{
	if (isfinite(v)) {
		*lo = fmin(*lo, v);
		*hi = fmax(*hi, v);
	}
}

/* Draws the marker of kind mark at (x, y). */
static void marker(FILE *f, double x, double y, int mark)
{
	if (mark == MB_SVG_MARK_WORSE)
		fprintf(f, "<path d=\"M %.2f %.2f L %.2f %.2f L %.2f %.2f Z\" fill=\"#D55E00\" "
			"stroke=\"#222\" stroke-width=\"0.8\"/>\n", x - 7, y - 5, x + 7, y - 5, x, y + 7);
	else if (mark == MB_SVG_MARK_BETTER)
		fprintf(f, "<path d=\"M %.2f %.2f L %.2f %.2f L %.2f %.2f Z\" fill=\"#009E73\" "
			"stroke=\"#222\" stroke-width=\"0.8\"/>\n", x - 7, y + 5, x + 7, y + 5, x, y - 7);
}

static unsigned long clip_seq;

/* A legend's pen: items go left to right and wrap at xmax. */
typedef struct legend {
	double x, y, x0, xmax;
} legend;

static void legend_place(legend *lg, double width)
{
	if (lg->x > lg->x0 && lg->x + width > lg->xmax) {
		lg->x = lg->x0;
		lg->y += 22;
	}
}

int mb_svg_write_lineplot(FILE *f, const mb_svg_lineplot *p, mb_error *err)
{
	double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
	double xt[32], yt[32], H, legend_y;
	size_t nxt, nyt, points = 0;
	int any_mark[3] = {0, 0, 0}, any_alarm = 0, any_cp = 0;
	axes a;
	unsigned long clip;
	const char *title = p->title ? p->title : "";

	for (size_t s = 0; s < p->n_series; s++) {
		const mb_svg_series *se = &p->series[s];
		for (size_t i = 0; i < se->n; i++) {
			if (!isfinite(se->x[i]) || !isfinite(se->y[i]))
				continue;
			points++;
			widen(&xlo, &xhi, se->x[i]);
			widen(&ylo, &yhi, se->y[i]);
			if (se->lo)
				widen(&ylo, &yhi, se->lo[i]);
			if (se->hi)
				widen(&ylo, &yhi, se->hi[i]);
			if (se->marks && se->marks[i] > 0 && se->marks[i] < 3)
				any_mark[se->marks[i]] = 1;
		}
	}
	if (points == 0)
		return mb_error_set(err, MB_EINVALID, "line plot '%s': no finite point", title);
	for (size_t v = 0; v < p->n_vlines; v++) {
		widen(&xlo, &xhi, p->vlines[v].x);
		if (p->vlines[v].alarm)
			any_alarm = 1;
		else
			any_cp = 1;
	}
	if (p->has_band) {
		widen(&ylo, &yhi, p->band_lo);
		widen(&ylo, &yhi, p->band_hi);
	}
	if (p->has_hline)
		widen(&ylo, &yhi, p->hline);
	{
		double pad = (yhi - ylo) * 0.06;
		ylo -= pad;
		yhi += pad;
	}
	nxt = nice_ticks(&xlo, &xhi, xt, 32, 6);
	nyt = nice_ticks(&ylo, &yhi, yt, 32, 5);
	a.x0 = 96;
	a.y0 = 58;
	a.w = WIDTH - a.x0 - 24;
	a.h = 300;
	a.xlo = xlo;
	a.xhi = xhi;
	a.ylo = ylo;
	a.yhi = yhi;
	legend_y = a.y0 + a.h + 66;
	H = legend_y + 22.0 * (double)((p->n_series + 1) / 2 + 3) + 6;
	svg_open(f, WIDTH, H, p->title);
	/* ids must be unique in an HTML page; a counter keeps the output the
	 * same for the same sequence of plots. */
	clip = ++clip_seq;
	fprintf(f, "<defs><clipPath id=\"mbclip%lu\"><rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
		"height=\"%.2f\"/></clipPath></defs>\n", clip, a.x0, a.y0, a.w, a.h);
	if (p->has_band) {
		double y1 = ax_y(&a, p->band_hi), y2 = ax_y(&a, p->band_lo);
		fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
			"fill=\"#bbbbbb\" fill-opacity=\"0.35\"/>\n", a.x0, y1, a.w, y2 - y1);
	}
	draw_axes(f, &a, xt, nxt, yt, nyt, p->x_label, p->y_label);
	fprintf(f, "<g clip-path=\"url(#mbclip%lu)\">\n", clip);
	if (p->has_hline) {
		double y = ax_y(&a, p->hline);
		fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#444\" "
			"stroke-width=\"1.5\" stroke-dasharray=\"2 4\"/>\n", a.x0, y, a.x0 + a.w, y);
	}
	/* CI bands first, lines and points on top. A band is one polygon per
	 * run of points with finite bounds. */
	for (size_t s = 0; s < p->n_series; s++) {
		const mb_svg_series *se = &p->series[s];
		size_t i = 0;
		if (!se->lo || !se->hi)
			continue;
		while (i < se->n) {
			size_t j = i;
			while (j < se->n && isfinite(se->lo[j]) && isfinite(se->hi[j]) &&
			       isfinite(se->x[j]))
				j++;
			if (j > i) {
				fprintf(f, "<path d=\"");
				for (size_t k = i; k < j; k++)
					fprintf(f, "%s %.2f %.2f ", k == i ? "M" : "L", ax_x(&a, se->x[k]),
						ax_y(&a, se->hi[k]));
				for (size_t k = j; k-- > i;)
					fprintf(f, "L %.2f %.2f ", ax_x(&a, se->x[k]), ax_y(&a, se->lo[k]));
				fprintf(f, "Z\" fill=\"%s\" fill-opacity=\"0.22\" stroke=\"none\"/>\n",
					mb_svg_category_color(s));
			}
			i = j > i ? j : i + 1;
		}
	}
	for (size_t s = 0; s < p->n_series; s++) {
		const mb_svg_series *se = &p->series[s];
		int open = 0;
		fprintf(f, "<path d=\"");
		for (size_t i = 0; i < se->n; i++) {
			if (!isfinite(se->x[i]) || !isfinite(se->y[i])) {
				open = 0;
				continue;
			}
			fprintf(f, "%s %.2f %.2f ", open ? "L" : "M", ax_x(&a, se->x[i]),
				ax_y(&a, se->y[i]));
			open = 1;
		}
		fprintf(f, "\" fill=\"none\" stroke=\"%s\" stroke-width=\"2.2\"/>\n",
			mb_svg_category_color(s));
		for (size_t i = 0; i < se->n; i++) {
			char buf[32], xb[32];
			if (!isfinite(se->x[i]) || !isfinite(se->y[i]))
				continue;
			fmt_value(buf, sizeof(buf), se->y[i]);
			fmt_value(xb, sizeof(xb), se->x[i]);
			fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3.2\" fill=\"%s\"><title>%s: ",
				ax_x(&a, se->x[i]), ax_y(&a, se->y[i]), mb_svg_category_color(s), xb);
			fprintf(f, "%s</title></circle>\n", buf);
			if (se->marks)
				marker(f, ax_x(&a, se->x[i]), ax_y(&a, se->y[i]) - 14, se->marks[i]);
		}
	}
	fputs("</g>\n", f);
	double label_end = -1e300; /* right edge of the last changepoint label drawn */
	for (size_t v = 0; v < p->n_vlines; v++) {
		const mb_svg_vline *vl = &p->vlines[v];
		double x = ax_x(&a, vl->x);
		fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" "
			"stroke-width=\"1.8\"%s/>\n", x, a.y0, x, a.y0 + a.h,
			vl->alarm ? "#CC79A7" : "#222", vl->alarm ? "" : " stroke-dasharray=\"6 4\"");
		/* changepoint labels above the frame, alarm labels inside it */
		if (vl->label && vl->alarm)
			text(f, x + 4, a.y0 + a.h - 8, 12, "start", "fill-opacity=\"0.9\"", vl->label);
		else if (vl->label && x - text_width(vl->label, 12) / 2 > label_end + 4) {
			/* a label that would overlap the one before is left out (its
			 * line stays; the tables list every changepoint) */
			text(f, x, a.y0 - 6, 12, "middle", NULL, vl->label);
			label_end = x + text_width(vl->label, 12) / 2;
		}
	}
	/* Legend below the plot: series two to a row, then the other symbols
	 * left to right, wrapping at the plot's right edge. */
	{
		legend lg = {a.x0, legend_y, a.x0, a.x0 + a.w};
		for (size_t s = 0; s < p->n_series; s++) {
			const char *name = p->series[s].name ? p->series[s].name : "";
			double lx = a.x0 + (double)(s % 2) * 320, ly = legend_y + 22.0 * (double)(s / 2);
			fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" "
				"stroke-width=\"3\"/>\n", lx, ly - 4, lx + 24, ly - 4,
				mb_svg_category_color(s));
			text(f, lx + 30, ly, 13, "start", NULL, name);
		}
		lg.y = legend_y + 22.0 * (double)((p->n_series + 1) / 2);
		if (p->has_band) {
			const char *l = p->band_label ? p->band_label : "band";
			legend_place(&lg, 30 + text_width(l, 13));
			fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"24\" height=\"12\" "
				"fill=\"#bbbbbb\" fill-opacity=\"0.6\"/>\n", lg.x, lg.y - 11);
			text(f, lg.x + 30, lg.y, 13, "start", NULL, l);
			lg.x += 30 + text_width(l, 13) + 16;
		}
		if (p->has_hline) {
			const char *l = p->hline_label ? p->hline_label : "threshold";
			legend_place(&lg, 30 + text_width(l, 13));
			fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" "
				"stroke=\"#444\" stroke-width=\"1.5\" stroke-dasharray=\"2 4\"/>\n",
				lg.x, lg.y - 4, lg.x + 24, lg.y - 4);
			text(f, lg.x + 30, lg.y, 13, "start", NULL, l);
			lg.x += 30 + text_width(l, 13) + 16;
		}
		if (any_cp) {
			legend_place(&lg, 14 + text_width("changepoint", 13));
			fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" "
				"stroke=\"#222\" stroke-width=\"1.8\" stroke-dasharray=\"6 4\"/>\n",
				lg.x + 6, lg.y - 12, lg.x + 6, lg.y + 2);
			text(f, lg.x + 14, lg.y, 13, "start", NULL, "changepoint");
			lg.x += 14 + text_width("changepoint", 13) + 16;
		}
		if (any_alarm) {
			legend_place(&lg, 14 + text_width("monitor alarm", 13));
			fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" "
				"stroke=\"#CC79A7\" stroke-width=\"1.8\"/>\n", lg.x + 6, lg.y - 12,
				lg.x + 6, lg.y + 2);
			text(f, lg.x + 14, lg.y, 13, "start", NULL, "monitor alarm");
			lg.x += 14 + text_width("monitor alarm", 13) + 16;
		}
		if (any_mark[MB_SVG_MARK_WORSE]) {
			legend_place(&lg, 18 + text_width("left band: worse", 13));
			marker(f, lg.x + 7, lg.y - 5, MB_SVG_MARK_WORSE);
			text(f, lg.x + 18, lg.y, 13, "start", NULL, "left band: worse");
			lg.x += 18 + text_width("left band: worse", 13) + 16;
		}
		if (any_mark[MB_SVG_MARK_BETTER]) {
			legend_place(&lg, 18 + text_width("left band: better", 13));
			marker(f, lg.x + 7, lg.y - 5, MB_SVG_MARK_BETTER);
			text(f, lg.x + 18, lg.y, 13, "start", NULL, "left band: better");
		}
	}
	fputs("</svg>\n", f);
	return 0;
}

/* --- stem plot ---------------------------------------------------------------------------- */

int mb_svg_write_stem(FILE *f, const mb_svg_stem *s, mb_error *err)
{
	double xlo = INFINITY, xhi = -INFINITY, ylo = 0, yhi = 0, xt[64], yt[32], base;
	size_t nxt, nyt, points = 0;
	axes a;
	const char *title = s->title ? s->title : "";

	for (size_t i = 0; i < s->n; i++) {
		double x = s->x ? s->x[i] : (double)i;
		if (!isfinite(x) || !isfinite(s->y[i]))
			continue;
		points++;
		widen(&xlo, &xhi, x);
		widen(&ylo, &yhi, s->y[i]);
	}
	if (points == 0)
		return mb_error_set(err, MB_EINVALID, "stem plot '%s': no finite value", title);
	{
		double pad = xhi > xlo ? (xhi - xlo) * 0.03 : 0.5;
		xlo -= pad;
		xhi += pad;
		yhi += (yhi - ylo) * 0.05;
	}
	int integers = s->n <= 40;
	for (size_t i = 0; i < s->n && integers && s->x; i++)
		integers = s->x[i] == floor(s->x[i]);
	if (integers) {
		/* integer abscissae (frequencies): a tick per point while they fit */
		size_t every = (s->n + 19) / 20;
		nxt = 0;
		for (size_t i = 0; i < s->n; i += every)
			xt[nxt++] = s->x ? s->x[i] : (double)i;
		xlo = fmin(xlo, xt[0] - 0.5);
		xhi = fmax(xhi, (s->x ? s->x[s->n - 1] : (double)(s->n - 1)) + 0.5);
	} else {
		nxt = nice_ticks(&xlo, &xhi, xt, 64, 8);
	}
	nyt = nice_ticks(&ylo, &yhi, yt, 32, 5);
	a.x0 = 96;
	a.y0 = 58;
	a.w = WIDTH - a.x0 - 24;
	a.h = 260;
	a.xlo = xlo;
	a.xhi = xhi;
	a.ylo = ylo;
	a.yhi = yhi;
	svg_open(f, WIDTH, a.y0 + a.h + 60, s->title);
	draw_axes(f, &a, xt, nxt, yt, nyt, s->x_label, s->y_label);
	base = ax_y(&a, fmax(ylo, fmin(0, yhi)));
	fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#555\"/>\n",
		a.x0, base, a.x0 + a.w, base);
	for (size_t i = 0; i < s->n; i++) {
		double x = s->x ? s->x[i] : (double)i;
		char xb[32], yb[32];
		if (!isfinite(x) || !isfinite(s->y[i]))
			continue;
		fmt_value(xb, sizeof(xb), x);
		fmt_value(yb, sizeof(yb), s->y[i]);
		fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#0072B2\" "
			"stroke-width=\"2.4\"/>\n", ax_x(&a, x), base, ax_x(&a, x), ax_y(&a, s->y[i]));
		fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"4\" fill=\"#0072B2\"><title>%s: %s"
			"</title></circle>\n", ax_x(&a, x), ax_y(&a, s->y[i]), xb, yb);
	}
	fputs("</svg>\n", f);
	return 0;
}

/* --- figures ------------------------------------------------------------------------------ */

/* --- layered graph ------------------------------------------------------------------------ */

/* "#rrggbb" of the palette at t into buf (8 bytes). */
static void palette_hex(char buf[8], mb_svg_palette p, double t)
{
	unsigned char rgb[3];
	mb_svg_palette_rgb(rgb, p, t);
	snprintf(buf, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
}

static const char *const edge_dash[MB_SVG_EDGE_STYLES] = {"", " stroke-dasharray=\"8 4\"",
							  " stroke-dasharray=\"2 3\"",
							  " stroke-dasharray=\"8 3 2 3\""};

int mb_svg_write_graph(FILE *f, const mb_svg_graph *g, mb_error *err)
{
	const char *title = g->title ? g->title : "";
	double vmax = 0, wmax = 0, label_w = 0, x0, y0, dx, dy, W, H, r = 17;
	size_t legend_rows = 0;

	if (!g->n_nodes || !g->rows || !g->cols)
		return mb_error_set(err, MB_EINVALID, "graph '%s': no nodes", title);
	for (size_t i = 0; i < g->n_nodes; i++) {
		const mb_svg_graph_node *n = &g->nodes[i];
		if (n->row >= g->rows || !(n->col >= 0 && n->col < (double)g->cols))
			return mb_error_set(err, MB_EINVALID, "graph '%s': node %zu (%s) at row %zu "
					    "column %g is outside %zu x %zu", title, i,
					    n->label ? n->label : "", n->row, n->col, g->rows,
					    g->cols);
		if (isfinite(n->value))
			vmax = fmax(vmax, fabs(n->value));
	}
	for (size_t k = 0; k < g->n_edges; k++) {
		const mb_svg_graph_edge *e = &g->edges[k];
		if (e->from >= g->n_nodes || e->to >= g->n_nodes || e->style < 0 ||
		    e->style >= MB_SVG_EDGE_STYLES)
			return mb_error_set(err, MB_EINVALID, "graph '%s': edge %zu joins nodes %zu "
					    "and %zu of %zu (style %d)", title, k, e->from, e->to,
					    g->n_nodes, e->style);
		if (isfinite(e->weight))
			wmax = fmax(wmax, fabs(e->weight));
	}
	for (size_t i = 0; i < g->rows; i++) {
		char num[32];
		snprintf(num, sizeof(num), "%zu", i);
		label_w = fmax(label_w, text_width(g->row_labels ? g->row_labels[i] : num, 13));
	}
	label_w = fmin(label_w, 160);
	for (int s = 0; s < MB_SVG_EDGE_STYLES; s++)
		legend_rows += g->style_labels[s] != NULL;
	/* columns at least a node and a gap apart, rows far enough for the
	 * edges to be told apart */
	dx = fmin(fmax(560.0 / (double)g->cols, 2 * r + 10), 90);
	dy = 74;
	x0 = 24 + label_w + 16 + r;
	y0 = 44 + r + 6;
	W = fmax(WIDTH, x0 + dx * (double)(g->cols - 1) + r + 40);
	H = y0 + dy * (double)(g->rows - 1) + r + (g->col_labels ? 34 : 14) + 70 +
	    22.0 * (double)legend_rows;
	svg_open(f, W, H, g->title);
#define NODE_X(n) (x0 + dx * (n)->col)
#define NODE_Y(n) (y0 + dy * (double)(g->rows - 1 - (n)->row))
	for (size_t i = 0; i < g->rows; i++) {
		char num[32];
		double y = y0 + dy * (double)(g->rows - 1 - i);
		snprintf(num, sizeof(num), "%zu", i);
		fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#eee\"/>\n",
			x0 - r, y, x0 + dx * (double)(g->cols - 1) + r, y);
		text(f, x0 - r - 10, y + 4.5, 13, "end", NULL,
		     g->row_labels ? g->row_labels[i] : num);
	}
	for (size_t j = 0; g->col_labels && j < g->cols; j++)
		if (g->col_labels[j] && g->col_labels[j][0])
			text(f, x0 + dx * (double)j, y0 + dy * (double)(g->rows - 1) + r + 22, 13,
			     "middle", NULL, g->col_labels[j]);
	/* edges beneath the nodes */
	fputs("<g fill=\"none\" stroke-linecap=\"butt\">\n", f);
	for (size_t k = 0; k < g->n_edges; k++) {
		const mb_svg_graph_edge *e = &g->edges[k];
		const mb_svg_graph_node *a = &g->nodes[e->from], *b = &g->nodes[e->to];
		double ax = NODE_X(a), ay = NODE_Y(a), bx = NODE_X(b), by = NODE_Y(b);
		double w = isfinite(e->weight) && wmax > 0 ? 1.0 + 5.0 * fabs(e->weight) / wmax : 1.0;
		char col[8];
		if (!isfinite(e->weight))
			snprintf(col, sizeof(col), "#999999");
		else
			palette_hex(col, MB_SVG_PUOR, e->weight >= 0 ? 0.85 : 0.15);
		if (a->row == b->row) /* same row: an arc over the nodes between */
			fprintf(f, "<path d=\"M %.2f %.2f Q %.2f %.2f %.2f %.2f\"", ax, ay - r,
				(ax + bx) / 2, ay - r - 0.35 * dy, bx, by - r);
		else
			fprintf(f, "<path d=\"M %.2f %.2f L %.2f %.2f\"", ax, ay, bx, by);
		fprintf(f, " stroke=\"%s\" stroke-width=\"%.2f\" stroke-opacity=\"0.8\"%s><title>",
			col, w, edge_dash[e->style]);
		mb_str_put_xml(f, e->tip ? e->tip : "");
		fputs("</title></path>\n", f);
	}
	fputs("</g>\n", f);
	for (size_t i = 0; i < g->n_nodes; i++) {
		const mb_svg_graph_node *n = &g->nodes[i];
		double cx = NODE_X(n), cy = NODE_Y(n);
		double t = isfinite(n->value) ? (vmax > 0 ? 0.5 + 0.5 * n->value / vmax : 0.5) : NAN;
		unsigned char rgb[3];
		int dark;
		mb_svg_palette_rgb(rgb, MB_SVG_PUOR, t);
		/* white text on a dark fill (relative luminance below ~0.45) */
		dark = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2] < 115;
		if (n->square)
			fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"", cx - r,
				cy - r, 2 * r, 2 * r);
		else
			fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.2f\"", cx, cy, r);
		fprintf(f, " fill=\"#%02x%02x%02x\" stroke=\"#333\" stroke-width=\"1.2\"><title>",
			rgb[0], rgb[1], rgb[2]);
		mb_str_put_xml(f, n->tip ? n->tip : n->label ? n->label : "");
		fputs("</title></", f);
		fputs(n->square ? "rect>\n" : "circle>\n", f);
		fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"12\" text-anchor=\"middle\" "
			"fill=\"%s\" pointer-events=\"none\">", cx, cy + 4.2, dark ? "#ffffff" : "#222");
		mb_str_put_xml(f, n->label ? n->label : "");
		fputs("</text>\n", f);
	}
#undef NODE_X
#undef NODE_Y
	/* legend: the fill scale, the width scale, the dash patterns */
	{
		double ly = y0 + dy * (double)(g->rows - 1) + r + (g->col_labels ? 34 : 14) + 18;
		double lx = 24;
		char buf[160], v[32];
		for (int k = 0; k < 32; k++) {
			char col[8];
			palette_hex(col, MB_SVG_PUOR, (k + 0.5) / 32.0);
			fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"5\" height=\"14\" fill=\"%s\" "
				"shape-rendering=\"crispEdges\"/>\n", lx + 5.0 * k, ly - 11, col);
		}
		fmt_value(v, sizeof(v), vmax);
		snprintf(buf, sizeof(buf), "node fill: %s from -%s to %s",
			 g->value_label ? g->value_label : "value", v, v);
		text(f, lx + 170, ly, 13, "start", NULL, buf);
		ly += 24;
		fmt_value(v, sizeof(v), wmax);
		fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#555\" "
			"stroke-width=\"6\"/>\n", lx, ly - 4.5, lx + 40, ly - 4.5);
		snprintf(buf, sizeof(buf), "edge width: |%s| (widest %s); orange positive, purple "
			 "negative", g->weight_label ? g->weight_label : "weight", v);
		text(f, lx + 50, ly, 13, "start", NULL, buf);
		for (int s = 0; s < MB_SVG_EDGE_STYLES; s++) {
			if (!g->style_labels[s])
				continue;
			ly += 22;
			fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" "
				"stroke=\"#555\" stroke-width=\"2\"%s/>\n", lx, ly - 4.5, lx + 40,
				ly - 4.5, edge_dash[s]);
			text(f, lx + 50, ly, 13, "start", NULL, g->style_labels[s]);
		}
	}
	fputs("</svg>\n", f);
	return 0;
}

int mb_svg_write_figure(FILE *f, const mb_figure *fig, mb_error *err)
{
	const char *title = fig->title[0] ? fig->title : fig->name;
	int error = 0;

	switch (fig->kind) {
	case MB_FIGURE_HEATMAP: {
		mb_svg_heatmap h = {title, fig->x_label, fig->y_label, fig->value_label, fig->rows,
				    fig->cols, fig->values, (const char *const *)fig->row_labels,
				    (const char *const *)fig->col_labels, fig->diverging};
		error = mb_svg_write_heatmap(f, &h, err);
		break;
	}
	case MB_FIGURE_STEM: {
		mb_svg_stem s = {title, fig->x_label, fig->y_label, fig->x, fig->values, fig->cols};
		error = mb_svg_write_stem(f, &s, err);
		break;
	}
	case MB_FIGURE_LINES: {
		mb_svg_series *se = calloc(fig->rows, sizeof(*se));
		double *x = malloc(fig->cols * sizeof(double));
		mb_svg_lineplot p;
		if (!se || !x) {
			free(se);
			free(x);
			return mb_error_oom(err, "line plot", fig->rows * sizeof(*se));
		}
		for (size_t j = 0; j < fig->cols; j++)
			x[j] = fig->x ? fig->x[j] : (double)j;
		for (size_t r = 0; r < fig->rows; r++) {
			se[r].name = fig->row_labels ? fig->row_labels[r] : NULL;
			se[r].x = x;
			se[r].y = fig->values + r * fig->cols;
			se[r].n = fig->cols;
		}
		memset(&p, 0, sizeof(p));
		p.title = title;
		p.x_label = fig->x_label;
		p.y_label = fig->y_label;
		p.series = se;
		p.n_series = fig->rows;
		error = mb_svg_write_lineplot(f, &p, err);
		free(se);
		free(x);
		break;
	}
	default:
		error = mb_error_set(err, MB_EINVALID, "figure %s: unknown kind", fig->name);
	}
	if (error < 0)
		mb_error_prefix(err, "figure %s", fig->name);
	return error;
}
