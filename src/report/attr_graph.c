/*
 * attr_graph.c: the edge graph of an attribution figure in the HTML report.
 *
 * The `attribution` task (src/tasks/attribution.c) stores an edge method's
 * mean edge scores as a HEATMAP figure named "attribution.edges_<method>":
 * rows the receivers ("a<l>.<h>.q|k|v", "m<l>", "out"), columns the senders
 * ("in", "a<l>.<h>", "m<l>"; attribution.h "Graph indices"), NaN where a
 * sender does not feed a receiver. Beside that matrix the report draws the
 * graph a reader looks for: the MB_ATTR_GRAPH_TOP edges of largest |score|
 * as a layered graph (svg.h mb_svg_write_graph): the input embedding at the
 * bottom, layer l's heads (circles, column = head) and MLP (square, last
 * column) on row l + 1, the logits on top; an edge's width by |score|, its
 * colour by sign, its dash by what it enters (q dashed, k dotted, v solid,
 * an MLP or the logits dash-dot). A node's fill is the sum of the drawn
 * edges leaving it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/svg.h>

#include "report_int.h"

#define MB_ATTR_GRAPH_TOP 24
#define MB_ATTR_GRAPH_PREFIX "attribution.edges_"

/* A node id ("in", "out", "a<l>.<h>", "m<l>", with an optional ".q|k|v"
 * suffix on heads) as (row, col, kind); *via gets 'q', 'k', 'v' or 0.
 * Returns 0, or -1 for a name that is none of these. */
static int parse_id(const char *id, int *layer, int *head, char *via)
{
	int n = 0;

	*via = 0;
	*head = -1;
	if (strcmp(id, "in") == 0) {
		*layer = -1;
		return 0;
	}
	if (strcmp(id, "out") == 0) {
		*layer = -2;
		return 0;
	}
	if (sscanf(id, "a%d.%d%n", layer, head, &n) == 2) {
		if (id[n] == '.' && strchr("qkv", id[n + 1]) && id[n + 1] && !id[n + 2])
			*via = id[n + 1];
		else if (id[n])
			return -1;
		return *layer >= 0 && *head >= 0 ? 0 : -1;
	}
	if (sscanf(id, "m%d%n", layer, &n) == 1 && !id[n] && *layer >= 0)
		return 0;
	return -1;
}

int mb_report_attr_graph(FILE *f, const mb_figure *fig, mb_error *err)
{
	size_t R = fig->rows, S = fig->cols, n_top = 0, n_nodes = 0;
	int L = 0, H = 0, rc = 0;
	size_t *top = NULL;
	mb_svg_graph_node *nodes = NULL;
	mb_svg_graph_edge *edges = NULL;
	char (*tips)[96] = NULL, (*labels)[16] = NULL, (*rlab)[16] = NULL;
	const char **rows = NULL;
	long *node_of = NULL; /* (L (H + 1) + 2) node index of each grid slot, -1 none */
	const char *styles[MB_SVG_EDGE_STYLES] = {0};
	mb_svg_graph g;

	if (fig->kind != MB_FIGURE_HEATMAP || !fig->row_labels || !fig->col_labels ||
	    strncmp(fig->name, MB_ATTR_GRAPH_PREFIX, strlen(MB_ATTR_GRAPH_PREFIX)) != 0)
		return 0;
	/* the grid's size from every label */
	for (size_t i = 0; i < R + S; i++) {
		const char *id = i < R ? fig->row_labels[i] : fig->col_labels[i - R];
		int l, h;
		char via;
		if (parse_id(id, &l, &h, &via) < 0)
			return mb_error_set(err, MB_EINVALID, "figure %s: '%s' is not a node of the "
					    "attribution graph", fig->name, id);
		L = l + 1 > L ? l + 1 : L;
		H = h + 1 > H ? h + 1 : H;
	}
	/* the top edges by |score|, ties by index */
	top = malloc(sizeof(size_t) * MB_ATTR_GRAPH_TOP);
	node_of = malloc(sizeof(long) * ((size_t)L * (H + 1) + 2));
	nodes = calloc((size_t)L * (H + 1) + 2, sizeof(*nodes));
	labels = calloc((size_t)L * (H + 1) + 2, sizeof(*labels));
	edges = calloc(MB_ATTR_GRAPH_TOP, sizeof(*edges));
	tips = calloc(MB_ATTR_GRAPH_TOP + (size_t)L * (H + 1) + 2, sizeof(*tips));
	rlab = calloc((size_t)L + 2, sizeof(*rlab));
	rows = calloc((size_t)L + 2, sizeof(*rows));
	if (!top || !node_of || !nodes || !labels || !edges || !tips || !rlab || !rows) {
		rc = mb_error_oom(err, "attribution graph", 0);
		goto cleanup;
	}
	for (size_t i = 0; i < R * S; i++) {
		double v = fig->values[i];
		size_t j;
		if (isnan(v) || v == 0 ||
		    (n_top == MB_ATTR_GRAPH_TOP && fabs(v) <= fabs(fig->values[top[n_top - 1]])))
			continue;
		j = n_top < MB_ATTR_GRAPH_TOP ? n_top : MB_ATTR_GRAPH_TOP - 1;
		for (; j > 0 && fabs(fig->values[top[j - 1]]) < fabs(v); j--)
			top[j] = top[j - 1];
		top[j] = i;
		if (n_top < MB_ATTR_GRAPH_TOP)
			n_top++;
	}
	if (n_top == 0) {
		fputs("<p class=\"note\">No edge has a nonzero mean score.</p>\n", f);
		goto cleanup;
	}
	for (size_t i = 0; i < (size_t)L * (H + 1) + 2; i++)
		node_of[i] = -1;
	for (size_t k = 0; k < n_top; k++) {
		const char *ids[2] = {fig->col_labels[top[k] % S], fig->row_labels[top[k] / S]};
		long at[2];
		char via = 0;
		for (int e = 0; e < 2; e++) {
			int l, h;
			char v;
			size_t slot;
			parse_id(ids[e], &l, &h, &v);
			if (e == 1)
				via = v;
			slot = l == -1	 ? 0
			       : l == -2 ? 1
					 : 2 + (size_t)l * (H + 1) + (h < 0 ? (size_t)H : (size_t)h);
			if (node_of[slot] < 0) {
				mb_svg_graph_node *nd = &nodes[n_nodes];
				node_of[slot] = (long)n_nodes++;
				nd->row = l == -1 ? 0 : l == -2 ? (size_t)L + 1 : (size_t)l + 1;
				nd->col = l < 0 ? (double)H / 2 : h < 0 ? (double)H : (double)h;
				nd->square = h < 0;
				snprintf(labels[node_of[slot]], sizeof(labels[0]), "%s",
					 l == -1   ? "in"
					 : l == -2 ? "out"
					 : h < 0   ? "MLP"
						   : strchr(ids[e], '.') + 1);
				if (via)
					labels[node_of[slot]][strcspn(labels[node_of[slot]], ".")] = 0;
				nd->label = labels[node_of[slot]];
				nd->value = 0;
			}
			at[e] = node_of[slot];
		}
		edges[k].from = (size_t)at[0];
		edges[k].to = (size_t)at[1];
		edges[k].weight = fig->values[top[k]];
		edges[k].style = via == 'v'   ? MB_SVG_EDGE_SOLID
				 : via == 'q' ? MB_SVG_EDGE_DASHED
				 : via == 'k' ? MB_SVG_EDGE_DOTTED
					      : MB_SVG_EDGE_DASHDOT;
		styles[edges[k].style] = via == 'v'   ? "into a head's values (v)"
					 : via == 'q' ? "into a head's queries (q)"
					 : via == 'k' ? "into a head's keys (k)"
						      : "into an MLP or the logits";
		nodes[at[0]].value += fig->values[top[k]];
		{
			char num[32];
			mb_fmt_num(num, sizeof(num), fig->values[top[k]]);
			snprintf(tips[k], sizeof(tips[0]), "%s -> %s: %s", ids[0], ids[1], num);
		}
		edges[k].tip = tips[k];
	}
	for (size_t i = 0; i < n_nodes; i++) {
		char num[32];
		mb_fmt_num(num, sizeof(num), nodes[i].value);
		snprintf(tips[MB_ATTR_GRAPH_TOP + i], sizeof(tips[0]), "%s: drawn edges out sum %s",
			 nodes[i].label, num);
		nodes[i].tip = tips[MB_ATTR_GRAPH_TOP + i];
	}
	for (int r = 0; r < L + 2; r++) {
		if (r == 0)
			snprintf(rlab[r], sizeof(rlab[0]), "embed");
		else if (r == L + 1)
			snprintf(rlab[r], sizeof(rlab[0]), "logits");
		else
			snprintf(rlab[r], sizeof(rlab[0]), "layer %d", r - 1);
		rows[r] = rlab[r];
	}
	g = (mb_svg_graph){.title = "Top edges by |mean score|: layers as rows, heads as nodes",
			   .value_label = "edges out (drawn)", .weight_label = "edge score",
			   .rows = (size_t)L + 2, .cols = (size_t)H + 1, .row_labels = rows, .nodes = nodes,
			   .n_nodes = n_nodes, .edges = edges, .n_edges = n_top};
	memcpy(g.style_labels, styles, sizeof(styles));
	fputs("<figure>\n", f);
	rc = mb_svg_write_graph(f, &g, err);
	fprintf(f, "<figcaption class=\"note\">%s: the %zu edges of largest |mean score| of the "
		   "matrix above; hover an edge for its number.</figcaption>\n</figure>\n",
		fig->name, n_top);
cleanup:
	free(top);
	free(node_of);
	free(nodes);
	free(labels);
	free(edges);
	free(tips);
	free(rlab);
	free(rows);
	return rc;
}
