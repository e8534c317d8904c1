/*
 * The attribution edge graph of the HTML report (src/report/attr_graph.c):
 * drawn only after an "attribution.edges_*" figure, the top edges by |mean
 * score| (ties by index) and no zero or missing edge, each edge's tooltip
 * with its number, and a label that is not a graph node refused naming the
 * figure.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/figure.h>

#include "report/report_int.h"
#include "support/report_support.h"

static char *draw(const mb_figure *fig, int *rc, mb_error *err)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	cr_assert(f);
	*rc = mb_report_attr_graph(f, fig, err);
	cr_assert_eq(fclose(f), 0);
	return buf;
}

/* receivers x senders of a 2-layer, 2-head attention-only model */
static mb_figure *edge_figure(mb_figure_list *l, const char *name)
{
	static const char *const rows[] = {"a0.0.q", "a0.1.k", "a1.0.q", "a1.0.k", "a1.1.v", "out"};
	static const char *const cols[] = {"in", "a0.0", "a0.1", "a1.0", "a1.1"};
	mb_figure *f;
	mb_error err = {0};

	cr_assert_eq(mb_figure_list_add(l, &f, MB_FIGURE_HEATMAP, name, 6, 5, &err), 0, "%s",
		     err.msg);
	for (size_t r = 0; r < 6; r++)
		cr_assert_eq(mb_figure_set_row_label(f, r, rows[r], &err), 0);
	for (size_t c = 0; c < 5; c++)
		cr_assert_eq(mb_figure_set_col_label(f, c, cols[c], &err), 0);
	/* (NaN stays where a sender does not feed the receiver) */
	f->values[0 * 5 + 0] = 0.5;  /* in -> a0.0.q */
	f->values[1 * 5 + 0] = 0;    /* in -> a0.1.k: zero, not drawn */
	f->values[2 * 5 + 1] = -5.5; /* a0.0 -> a1.0.q */
	f->values[3 * 5 + 2] = 2.25; /* a0.1 -> a1.0.k */
	f->values[4 * 5 + 1] = -1;   /* a0.0 -> a1.1.v */
	f->values[5 * 5 + 3] = 4;    /* a1.0 -> out */
	return f;
}

Test(attr_graph, draws_the_nonzero_edges_with_their_scores)
{
	mb_figure_list l = {0};
	mb_figure *f = edge_figure(&l, "attribution.edges_eap-ig");
	mb_error err = {0};
	int rc;
	char *svg = draw(f, &rc, &err);

	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_expect(strstr(svg, "<svg") != NULL);
	cr_expect(strstr(svg, "a0.0 -&gt; a1.0.q: -5.5") != NULL || strstr(svg, "a0.0 -> a1.0.q: -5.5"),
		  "%s", svg);
	cr_expect(strstr(svg, "a1.0 -&gt; out: 4") != NULL || strstr(svg, "a1.0 -> out: 4"));
	cr_expect(strstr(svg, "in -&gt; a0.1.k") == NULL && strstr(svg, "in -> a0.1.k") == NULL,
		  "a zero edge is not drawn");
	cr_expect(strstr(svg, "the 5 edges of largest") != NULL, "%s", svg);
	free(svg);
	mb_figure_list_dispose(&l);
}

Test(attr_graph, keeps_the_largest_edges_only)
{
	mb_figure_list l = {0};
	mb_figure *f;
	mb_error err = {0};
	int rc;
	char *svg, name[16];

	/* 40 senders into one receiver, |score| = index: the top 24 are 16..39 */
	cr_assert_eq(mb_figure_list_add(&l, &f, MB_FIGURE_HEATMAP, "attribution.edges_eap", 1, 40,
					&err),
		     0);
	cr_assert_eq(mb_figure_set_row_label(f, 0, "out", &err), 0);
	for (int s = 0; s < 40; s++) {
		snprintf(name, sizeof(name), "a%d.0", s);
		cr_assert_eq(mb_figure_set_col_label(f, (size_t)s, name, &err), 0);
		f->values[s] = s % 2 ? -(double)s : (double)s;
	}
	svg = draw(f, &rc, &err);
	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_expect(strstr(svg, "the 24 edges of largest") != NULL);
	cr_expect_eq(mbt_count(svg, "-&gt; out:") + mbt_count(svg, "-> out:"), 24);
	cr_expect(strstr(svg, "a16.0 -&gt; out: 16") || strstr(svg, "a16.0 -> out: 16"));
	cr_expect(!strstr(svg, "a15.0 -&gt; out") && !strstr(svg, "a15.0 -> out"));
	free(svg);
	mb_figure_list_dispose(&l);
}

Test(attr_graph, other_figures_draw_nothing_and_bad_labels_are_refused)
{
	mb_figure_list l = {0};
	mb_figure *f = edge_figure(&l, "attribution.heads_atp");
	mb_error err = {0};
	int rc;
	char *svg = draw(f, &rc, &err);

	cr_expect_eq(rc, 0);
	cr_expect_str_eq(svg, "");
	free(svg);
	f = edge_figure(&l, "attribution.edges_eap");
	cr_assert_eq(mb_figure_set_row_label(f, 2, "attn7", &err), 0);
	svg = draw(f, &rc, &err);
	cr_expect_lt(rc, 0);
	cr_expect(strstr(err.msg, "attribution.edges_eap") && strstr(err.msg, "attn7"), "%s",
		  err.msg);
	free(svg);
	mb_figure_list_dispose(&l);
}
