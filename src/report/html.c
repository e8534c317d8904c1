/*
 * html.c: the self-contained HTML report (html.h). Legend: K checkpoints.
 */
#include <mechbench/html.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/artifact.h>
#include <mechbench/buildinfo.h>
#include <mechbench/file.h>
#include <mechbench/str.h>
#include <mechbench/svg.h>

#include "report_int.h"

static const char style[] =
	"body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;font-size:15px;color:#222;"
	"background:#fff;margin:24px auto;max-width:1100px;padding:0 16px;line-height:1.4}"
	"h1{font-size:26px;margin:0 0 12px}h2{font-size:21px;margin:32px 0 10px;"
	"border-bottom:2px solid #ddd;padding-bottom:4px}h3{font-size:17px;margin:22px 0 8px}"
	"table{border-collapse:collapse;margin:8px 0 16px;font-size:14px}"
	"th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
	"th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums;"
	"white-space:nowrap}code{font-family:'DejaVu Sans Mono',monospace;font-size:13px;"
	"word-break:break-all}.worse{color:#b34700;font-weight:bold}"
	".better{color:#00704f;font-weight:bold}.alarm{color:#8f3c7a;font-weight:bold}"
	".note{color:#555;font-size:14px}figure{margin:12px 0 24px}"
	"figure svg{max-width:100%;height:auto;border:1px solid #eee}"
	"footer{margin-top:40px;color:#666;font-size:13px}";

void mb_html_begin(FILE *f, const char *title)
{
	fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
	      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
	      "style-src 'unsafe-inline'\">\n"
	      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>", f);
	mb_str_put_xml(f, title);
	fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n", style);
}

void mb_html_end(FILE *f)
{
	fputs("<footer>Made by mechbench ", f);
	mb_str_put_xml(f, mb_build_version());
	fputs(" (", f);
	mb_str_put_xml(f, mb_build_commit());
	fputs("). A self-contained page: inline SVG, no scripts, nothing fetched.</footer>\n"
	      "</body>\n</html>\n", f);
}

static void cell_text(FILE *f, const char *tag, const char *s)
{
	fprintf(f, "<%s>", tag);
	mb_str_put_xml(f, s);
	fprintf(f, "</%s>", tag);
}

static void cell_num(FILE *f, double v)
{
	if (isnan(v))
		fputs("<td class=\"num\">n/a</td>", f);
	else
		fprintf(f, "<td class=\"num\">%.6g</td>", v);
}

static void cell_ci(FILE *f, double lo, double hi)
{
	if (isnan(lo) || isnan(hi))
		fputs("<td class=\"num\">n/a</td>", f);
	else
		fprintf(f, "<td class=\"num\">[%.6g, %.6g]</td>", lo, hi);
}

static void kv_row(FILE *f, const char *k, const char *v)
{
	fputs("<tr>", f);
	cell_text(f, "th", k);
	fputs("<td><code>", f);
	mb_str_put_xml(f, v && v[0] ? v : "(none)");
	fputs("</code></td></tr>\n", f);
}

/* --- figures ---------------------------------------------------------------------------- */

static int figure_list(FILE *f, const mb_figure_list *l, mb_error *err)
{
	for (size_t i = 0; l && i < l->n; i++) {
		int error;
		fputs("<figure>\n", f);
		if ((error = mb_svg_write_figure(f, &l->items[i], err)) < 0)
			return error;
		fputs("<figcaption class=\"note\">", f);
		mb_str_put_xml(f, l->items[i].name);
		fputs("</figcaption>\n</figure>\n", f);
		if ((error = mb_report_attr_graph(f, &l->items[i], err)) < 0)
			return error;
	}
	return 0;
}

int mb_html_figures(FILE *f, const mb_html_figure_group *groups, size_t n, mb_error *err)
{
	for (size_t g = 0; g < n; g++) {
		int error;
		if (!groups[g].figures || groups[g].figures->n == 0)
			continue;
		cell_text(f, "h3", groups[g].heading);
		fputc('\n', f);
		if ((error = figure_list(f, groups[g].figures, err)) < 0)
			return error;
	}
	return 0;
}

/* --- artifacts ------------------------------------------------------------------------- */

/* The circuit's layers as rows (an "embed" row below, a "logits" row above
 * when edges use them), its heads as columns (MLPs in a column of their
 * own), nodes filled by effect, edges by effect, dashed by what they feed. */
static int circuit_graph(FILE *f, const mb_artifact_circuit *c, mb_error *err)
{
	int lo = 1 << 30, hi = -1, max_head = -1, mlp = 0, embed = 0, logits = 0, error = 0;
	size_t rows, cols, n_nodes = c->n_nodes;
	mb_svg_graph_node *nodes = calloc(c->n_nodes + 2, sizeof(*nodes));
	mb_svg_graph_edge *edges = calloc(c->n_edges + 1, sizeof(*edges));
	char (*tips)[160] = calloc(c->n_nodes + c->n_edges + 1, sizeof(*tips));
	char (*labels)[40] = NULL;
	const char **row_labels = NULL, **col_labels = NULL;
	const char *styles[MB_SVG_EDGE_STYLES] = {NULL}; /* legend of the dash patterns used */
	mb_svg_graph g;

	if (!nodes || !edges || !tips) {
		error = mb_error_oom(err, "circuit graph", c->n_nodes * sizeof(*nodes));
		goto cleanup;
	}
	for (size_t i = 0; i < c->n_nodes; i++) {
		lo = c->nodes[i].layer < lo ? c->nodes[i].layer : lo;
		hi = c->nodes[i].layer > hi ? c->nodes[i].layer : hi;
		max_head = c->nodes[i].head > max_head ? c->nodes[i].head : max_head;
		mlp |= c->nodes[i].head < 0;
	}
	for (size_t k = 0; k < c->n_edges; k++) {
		embed |= strcmp(c->edges[k].from, "embed") == 0;
		logits |= strcmp(c->edges[k].to, "logits") == 0;
	}
	if (!c->n_nodes)
		lo = hi = 0;
	rows = (size_t)(hi - lo + 1) + (size_t)embed + (size_t)logits;
	cols = (size_t)(max_head + 1) + (size_t)mlp;
	if (cols == 0)
		cols = 1;
	labels = calloc(rows + cols + 2, sizeof(*labels));
	row_labels = calloc(rows, sizeof(*row_labels));
	col_labels = calloc(cols, sizeof(*col_labels));
	if (!labels || !row_labels || !col_labels) {
		error = mb_error_oom(err, "circuit graph", rows * sizeof(*labels));
		goto cleanup;
	}
	for (size_t r = 0; r < rows; r++) {
		if (embed && r == 0)
			snprintf(labels[r], sizeof(labels[r]), "embed");
		else if (logits && r + 1 == rows)
			snprintf(labels[r], sizeof(labels[r]), "logits");
		else
			snprintf(labels[r], sizeof(labels[r]), "layer %d", lo + (int)r - embed);
		row_labels[r] = labels[r];
	}
	for (size_t j = 0; j < cols; j++) {
		if (mlp && j + 1 == cols)
			snprintf(labels[rows + j], sizeof(labels[0]), "MLP");
		else
			snprintf(labels[rows + j], sizeof(labels[0]), "head %zu", j);
		col_labels[j] = labels[rows + j];
	}
	for (size_t i = 0; i < c->n_nodes; i++) {
		const mb_artifact_node *v = &c->nodes[i];
		char e[32], inc[32];
		mb_fmt_num(e, sizeof(e), v->effect);
		mb_fmt_num(inc, sizeof(inc), v->inclusion);
		snprintf(tips[i], sizeof(tips[i]), "%s: effect %s, inclusion %s", v->id, e,
			 isnan(v->inclusion) ? "not reported" : inc);
		nodes[i].tip = tips[i];
		nodes[i].label = v->head < 0 ? "MLP" : v->id + 1 + strcspn(v->id + 1, ".") + 1;
		nodes[i].row = (size_t)(v->layer - lo + embed);
		nodes[i].col = v->head < 0 ? (double)(cols - 1) : (double)v->head;
		nodes[i].value = v->effect;
		nodes[i].square = v->head < 0;
	}
	/* the embedding and the logits, centred */
	if (embed)
		nodes[n_nodes++] = (mb_svg_graph_node){"emb", "the token embedding", 0,
						       (double)(cols - 1) / 2, NAN, 1};
	if (logits)
		nodes[n_nodes++] = (mb_svg_graph_node){"out", "the logits", rows - 1,
						       (double)(cols - 1) / 2, NAN, 1};
	for (size_t k = 0; k < c->n_edges; k++) {
		const mb_artifact_edge *a = &c->edges[k];
		long from = -1, to = -1;
		char e[32];
		for (size_t i = 0; i < c->n_nodes; i++) {
			if (strcmp(c->nodes[i].id, a->from) == 0)
				from = (long)i;
			if (strcmp(c->nodes[i].id, a->to) == 0)
				to = (long)i;
		}
		if (from < 0) /* "embed" (checked by mb_artifact_check) */
			from = (long)c->n_nodes;
		if (to < 0) /* "logits": after the embedding's node when there is one */
			to = (long)c->n_nodes + embed;
		mb_fmt_num(e, sizeof(e), a->effect);
		snprintf(tips[c->n_nodes + k], sizeof(tips[0]), "%s -> %s via %s: effect %s",
			 a->from, a->to, a->via, e);
		edges[k].from = (size_t)from;
		edges[k].to = (size_t)to;
		edges[k].weight = a->effect;
		edges[k].tip = tips[c->n_nodes + k];
		edges[k].style = strcmp(a->via, "v") == 0   ? MB_SVG_EDGE_SOLID
				 : strcmp(a->via, "q") == 0 ? MB_SVG_EDGE_DASHED
				 : strcmp(a->via, "k") == 0 ? MB_SVG_EDGE_DOTTED
							    : MB_SVG_EDGE_DASHDOT;
		styles[edges[k].style] =
			edges[k].style == MB_SVG_EDGE_SOLID	 ? "into a head's values (v)"
			: edges[k].style == MB_SVG_EDGE_DASHED ? "into a head's queries (q)"
			: edges[k].style == MB_SVG_EDGE_DOTTED ? "into a head's keys (k)"
								: "through the residual stream";
	}
	g = (mb_svg_graph){.title = "Circuit: layers as rows, heads as nodes",
			   .value_label = "node effect", .weight_label = "edge effect",
			   .rows = rows, .cols = cols, .row_labels = row_labels,
			   .col_labels = col_labels, .nodes = nodes, .n_nodes = n_nodes,
			   .edges = edges, .n_edges = c->n_edges};
	memcpy(g.style_labels, styles, sizeof(styles));
	if (n_nodes == 0) {
		fputs("<p class=\"note\">The circuit is empty: no node met the criterion.</p>\n", f);
		goto cleanup;
	}
	fputs("<figure>\n", f);
	error = mb_svg_write_graph(f, &g, err);
	fputs("<figcaption class=\"note\">Edges run from the lower layer up; hover a node or "
	      "an edge for its numbers.</figcaption>\n</figure>\n", f);
cleanup:
	free(nodes);
	free(edges);
	free(tips);
	free(labels);
	free(row_labels);
	free(col_labels);
	return error;
}

/* A value of the artifact as one cell: numbers, strings, booleans, and
 * objects or arrays of them ("mean 0.91, lo 0.85"); deeper ones as JSON. */
static void value_cell(FILE *f, const json_t *v)
{
	char *text;

	fputs("<td>", f);
	if (json_is_number(v)) {
		fprintf(f, "%.6g", json_number_value(v));
	} else if (json_is_string(v)) {
		mb_str_put_xml(f, json_string_value(v));
	} else if (json_is_object(v)) {
		const char *key;
		json_t *x;
		size_t k = 0;
		json_object_foreach((json_t *)v, key, x) {
			fputs(k++ ? ", " : "", f);
			mb_str_put_xml(f, key);
			fputc(' ', f);
			if (json_is_number(x)) {
				fprintf(f, "%.6g", json_number_value(x));
			} else if (json_is_string(x)) {
				mb_str_put_xml(f, json_string_value(x));
			} else if ((text = json_dumps(x, JSON_COMPACT | JSON_ENCODE_ANY))) {
				fputs("<code>", f);
				mb_str_put_xml(f, text);
				fputs("</code>", f);
				free(text);
			}
		}
	} else if ((text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY))) {
		fputs("<code>", f);
		mb_str_put_xml(f, text);
		fputs("</code>", f);
		free(text);
	}
	fputs("</td>", f);
}

static int artifact_section(FILE *f, const json_t *a, mb_error *err)
{
	static const char *const drawn[] = {"kind", "version", "nodes", "edges", NULL};
	mb_artifact_circuit c;
	const char *key;
	json_t *v;
	int error;

	if (!mb_artifact_is_circuit(a)) {
		char *text = json_dumps(a, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
		fputs("<h3>Artifact</h3>\n<pre><code>", f);
		mb_str_put_xml(f, text ? text : "");
		fputs("</code></pre>\n", f);
		free(text);
		return text ? 0 : mb_error_oom(err, "artifact text", 0);
	}
	if ((error = mb_artifact_circuit_read(&c, a, err)) < 0)
		return error;
	fputs("<h3>Circuit</h3>\n", f);
	if ((error = circuit_graph(f, &c, err)) < 0)
		goto cleanup;
	/* the circuit's own numbers: how it was found, how stable it is, and
	 * whatever else the task recorded (faithfulness and the like) */
	fprintf(f, "<table>\n<tr><th>nodes</th><td class=\"num\">%zu</td></tr>\n"
		"<tr><th>edges</th><td class=\"num\">%zu</td></tr>\n", c.n_nodes, c.n_edges);
	json_object_foreach((json_t *)a, key, v) {
		size_t k = 0;
		while (drawn[k] && strcmp(drawn[k], key) != 0)
			k++;
		if (drawn[k])
			continue;
		fputs("<tr>", f);
		cell_text(f, "th", key);
		value_cell(f, v);
		fputs("</tr>\n", f);
	}
	fputs("</table>\n", f);
	fputs("<table>\n<tr><th>node</th><th>kind</th><th>layer</th><th>head</th><th>effect</th>"
	      "<th>inclusion</th></tr>\n", f);
	for (size_t i = 0; i < c.n_nodes; i++) {
		const mb_artifact_node *n = &c.nodes[i];
		fputs("<tr><td><code>", f);
		mb_str_put_xml(f, n->id);
		fprintf(f, "</code></td><td>%s</td><td class=\"num\">%d</td>",
			n->head < 0 ? "mlp" : "head", n->layer);
		if (n->head < 0)
			fputs("<td></td>", f);
		else
			fprintf(f, "<td class=\"num\">%d</td>", n->head);
		cell_num(f, n->effect);
		cell_num(f, n->inclusion);
		fputs("</tr>\n", f);
	}
	fputs("</table>\n", f);
cleanup:
	mb_artifact_circuit_dispose(&c);
	return error;
}

/* --- a run ------------------------------------------------------------------------------ */

int mb_html_run(FILE *f, const mb_run_result *run, const mb_figure_list *figures,
		mb_error *err)
{
	const mb_provenance *p = &run->prov;
	char buf[64];

	fprintf(f, "<h1>Run %lld: ", (long long)run->id);
	mb_str_put_xml(f, p->suite);
	fputs("</h1>\n<h2>Provenance</h2>\n<table>\n", f);
	kv_row(f, "suite", p->suite);
	kv_row(f, "spec", p->spec_path);
	kv_row(f, "spec blob", p->spec_blob);
	kv_row(f, "spec committed", p->spec_committed < 0 ? "no repository"
				    : p->spec_committed ? "yes" : "no (working copy differs)");
	kv_row(f, "repository HEAD", p->repo_head);
	snprintf(buf, sizeof(buf), "%s%s", p->code_commit, p->code_dirty ? "-dirty" : "");
	kv_row(f, "mechbench", buf);
	kv_row(f, "version", p->code_version);
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)p->seed);
	kv_row(f, "seed", buf);
	snprintf(buf, sizeof(buf), "%d", p->threads);
	kv_row(f, "threads", buf);
	kv_row(f, "CPU", p->cpu);
	kv_row(f, "BLAS", p->blas_config);
	kv_row(f, "compiler", p->compiler);
	kv_row(f, "build type", p->build_type);
	kv_row(f, "started", p->started_at);
	kv_row(f, "finished", p->finished_at);
	snprintf(buf, sizeof(buf), "%.3f s", p->wall_seconds);
	kv_row(f, "wall time", buf);
	fputs("</table>\n", f);
	for (size_t e = 0; e < run->n_entries; e++) {
		const mb_entry_result *r = &run->entries[e];
		int error;
		fputs("<h2>Entry ", f);
		mb_str_put_xml(f, r->name);
		fputs("</h2>\n<table>\n", f);
		snprintf(buf, sizeof(buf), "@%d", r->task_version);
		fputs("<tr><th>task</th><td><code>", f);
		mb_str_put_xml(f, r->task);
		mb_str_put_xml(f, buf);
		fputs("</code></td></tr>\n", f);
		kv_row(f, "model", r->model);
		kv_row(f, "dataset", r->dataset);
		kv_row(f, "dataset sha256", r->dataset_sha256);
		for (size_t m = 0; m < r->n_model_files; m++) {
			char k[600];
			snprintf(k, sizeof(k), "sha256 of %s", r->model_files[m].path);
			kv_row(f, k, r->model_files[m].sha256);
		}
		fputs("</table>\n<table>\n<tr><th>metric</th><th>kind</th><th>better</th><th>n</th>"
		      "<th>mean</th><th>95% CI</th><th>method</th></tr>\n", f);
		for (size_t m = 0; m < r->n_metrics; m++) {
			const mb_aggregate *a = &r->aggregates[m];
			fputs("<tr><td><code>", f);
			mb_str_put_xml(f, r->metrics[m].name);
			fprintf(f, "@%d</code></td><td>%s</td><td>%s</td><td class=\"num\">%zu</td>",
				r->metrics[m].version, mb_metric_kind_name(r->metrics[m].kind),
				mb_metric_direction_name(r->metrics[m].direction), a->n);
			cell_num(f, a->mean);
			cell_ci(f, a->lo, a->hi);
			fprintf(f, "<td>%s</td></tr>\n", mb_stats_method_name(a->method));
			/* per stratum, under the pooled row (which leaves OOD strata out) */
			for (size_t k = 0; k < r->n_strata && r->strata[k].aggregates; k++) {
				const mb_aggregate *sa = &r->strata[k].aggregates[m];
				fputs("<tr><td>&nbsp;&nbsp;stratum <code>", f);
				mb_str_put_xml(f, r->strata[k].name);
				fprintf(f, "</code>%s</td><td></td><td></td><td class=\"num\">%zu</td>",
					r->strata[k].ood ? " <strong>OUT-OF-DISTRIBUTION</strong>" : "",
					r->strata[k].n);
				cell_num(f, sa->mean);
				cell_ci(f, sa->lo, sa->hi);
				fprintf(f, "<td>%s</td></tr>\n", mb_stats_method_name(sa->method));
			}
		}
		fputs("</table>\n", f);
		if (strcmp(r->task, "sae") == 0 && (error = mb_html_sae_features(f, r, err)) < 0)
			return error;
		if (r->artifact && (error = artifact_section(f, r->artifact, err)) < 0)
			return error;
		if (figures && figures[e].n) {
			fputs("<h3>Figures</h3>\n", f);
			if ((error = figure_list(f, &figures[e], err)) < 0)
				return error;
		}
	}
	return 0;
}

/* --- a series --------------------------------------------------------------------------- */

static void x_label(char *buf, size_t cap, const mb_drift_result *r, size_t k)
{
	if (r->has_steps)
		snprintf(buf, cap, "step %lld", (long long)r->steps[k]);
	else
		snprintf(buf, cap, "#%zu", k);
}

static int drift_plot(FILE *f, const mb_drift_result *r, const mb_drift_metric *dm,
		      mb_error *err)
{
	size_t K = r->n_points, nv = 0;
	double *x = malloc(K * sizeof(double)), *y = malloc(K * sizeof(double));   /* (K) */
	double *lo = malloc(K * sizeof(double)), *hi = malloc(K * sizeof(double)); /* (K) */
	int *marks = malloc(K * sizeof(int));                                      /* (K) */
	mb_svg_vline *vl = malloc((dm->n_changepoints + 1) * sizeof(*vl));
	char (*labels)[48] = malloc((dm->n_changepoints + 1) * sizeof(*labels));
	char title[512], band[128], thr[128];
	mb_svg_series se;
	mb_svg_lineplot p;
	int error = 0;

	if (!x || !y || !lo || !hi || !marks || !vl || !labels) {
		error = mb_error_oom(err, "drift plot", K * sizeof(double));
		goto cleanup;
	}
	for (size_t k = 0; k < K; k++) {
		x[k] = mb_drift_x(r, k);
		y[k] = dm->points[k].mean;
		lo[k] = dm->points[k].lo;
		hi[k] = dm->points[k].hi;
		marks[k] = dm->points[k].band == MB_DRIFT_WORSE    ? MB_SVG_MARK_WORSE
			   : dm->points[k].band == MB_DRIFT_BETTER ? MB_SVG_MARK_BETTER
								   : MB_SVG_MARK_NONE;
	}
	for (size_t c = 0; c < dm->n_changepoints; c++, nv++) {
		size_t k = dm->changepoints[c].index;
		x_label(labels[nv], sizeof(labels[0]), r, k);
		vl[nv].x = x[k];
		vl[nv].label = labels[nv];
		vl[nv].alarm = 0;
	}
	if (dm->alarm != SIZE_MAX) {
		char at[40];
		x_label(at, sizeof(at), r, dm->alarm);
		snprintf(labels[nv], sizeof(labels[0]), "alarm (%s)", at);
		vl[nv].x = x[dm->alarm];
		vl[nv].label = labels[nv];
		vl[nv].alarm = 1;
		nv++;
	}
	snprintf(title, sizeof(title), "%s / %s@%d across checkpoints", dm->entry, dm->metric,
		 dm->version);
	snprintf(band, sizeof(band), "band: reference \xc2\xb1 margin %.4g", dm->margin);
	snprintf(thr, sizeof(thr), "threshold %.4g", dm->threshold);
	memset(&se, 0, sizeof(se));
	se.name = "mean with its 95% CI";
	se.x = x;
	se.y = y;
	se.lo = lo;
	se.hi = hi;
	se.marks = marks;
	se.n = K;
	memset(&p, 0, sizeof(p));
	p.title = title;
	p.x_label = r->has_steps ? "training step" : "checkpoint";
	p.y_label = dm->metric;
	p.series = &se;
	p.n_series = 1;
	p.vlines = vl;
	p.n_vlines = nv;
	p.has_band = 1;
	p.band_lo = dm->points[0].mean - dm->margin;
	p.band_hi = dm->points[0].mean + dm->margin;
	p.band_label = band;
	p.has_hline = dm->has_threshold;
	p.hline = dm->threshold;
	p.hline_label = thr;
	fputs("<figure>\n", f);
	error = mb_svg_write_lineplot(f, &p, err);
	fputs("</figure>\n", f);
cleanup:
	free(x);
	free(y);
	free(lo);
	free(hi);
	free(marks);
	free(vl);
	free(labels);
	return error;
}

static const char *band_html(mb_drift_band b)
{
	switch (b) {
	case MB_DRIFT_WORSE: return "<span class=\"worse\">&#9660; left: worse</span>";
	case MB_DRIFT_BETTER: return "<span class=\"better\">&#9650; left: better</span>";
	case MB_DRIFT_REFERENCE: return "reference";
	default: return "inside";
	}
}

/* The located phases, next to the summary: they are the series' headline. */
static void phases_section(FILE *f, const mb_drift_result *r)
{
	fputs("<h2>Phases</h2>\n<p>Each pre-registered metric's trajectory split into its "
	      "declared phases by the exact least-squares segmentation with that many segments; "
	      "a boundary is the first checkpoint of the new phase.</p>\n", f);
	for (size_t i = 0; i < r->n_phases; i++) {
		const mb_drift_phases *p = &r->phases[i];
		fputs("<h3>", f);
		mb_str_put_xml(f, p->entry);
		fputc('/', f);
		mb_str_put_xml(f, p->metric);
		fprintf(f, "@%d</h3>\n<p>%s cost, at least %zu checkpoints per phase</p>\n",
			p->version, mb_stats_cost_name(p->cost), p->min_segment);
		if (!p->located) {
			fprintf(f, "<p>Not located: %s (%zu checkpoints, %zu phases).</p>\n",
				p->not_located, r->n_points, p->n_phases);
			continue;
		}
		fprintf(f, "<table>\n<tr><th>phase</th><th>first %s</th><th>last %s</th>"
			"<th>registered window of its start</th><th>window</th></tr>\n",
			r->has_steps ? "step" : "checkpoint", r->has_steps ? "step" : "checkpoint");
		for (size_t k = 0; k < p->n_phases; k++) {
			double first, last;
			mb_drift_phase_range(r, p, k, &first, &last);
			fputs("<tr><td>", f);
			mb_str_put_xml(f, p->names[k]);
			fprintf(f, "</td><td>%.0f</td><td>%.0f</td>", first, last);
			if (k > 0 && p->has_window[k - 1])
				fprintf(f, "<td>[%lld, %lld]</td><td>%s</td></tr>\n",
					(long long)p->windows[k - 1][0],
					(long long)p->windows[k - 1][1],
					p->in_window[k - 1] ? "met" : "<strong>MISSED</strong>");
			else
				fputs("<td>&mdash;</td><td>&mdash;</td></tr>\n", f);
		}
		fputs("</table>\n", f);
	}
}

int mb_html_series_section(FILE *f, const mb_html_series *s, mb_error *err)
{
	const mb_drift_result *r = s->drift;
	char buf[128];

	fputs("<h1>Drift: ", f);
	mb_str_put_xml(f, s->name);
	fputs("</h1>\n<table>\n", f);
	kv_row(f, "series", s->name);
	kv_row(f, "suite", s->suite);
	kv_row(f, "spec", s->spec_path);
	kv_row(f, "spec blob", s->spec_blob);
	kv_row(f, "checkpoints from", s->source);
	kv_row(f, "began", s->created_at);
	snprintf(buf, sizeof(buf), "%zu (%s)", r->n_points,
		 r->has_steps ? "ordered by training step" : "ordered by name");
	kv_row(f, "checkpoints", buf);
	snprintf(buf, sizeof(buf), "%g (one-sided)", r->alpha);
	kv_row(f, "alpha", buf);
	fputs("</table>\n", f);
	fputs("<p class=\"note\">Checkpoint 0 is the reference. <b>Changepoints</b>: PELT on each "
	      "metric's trajectory of checkpoint means (change in mean, penalty 2&sigma;&sup2; ln K); "
	      "the largest jump is the main change. <b>Band</b>: each checkpoint is compared with the "
	      "reference on the same items as <code>mechbench gate</code> compares a candidate with a "
	      "baseline; it left its band when the (1&nbsp;&minus;&nbsp;2&alpha;) interval of the "
	      "difference lies wholly beyond the registered margin (a per-checkpoint test at "
	      "&alpha;). <b>Monitor</b>: an always-valid mSPRT of &ldquo;the checkpoint means equal "
	      "the reference's&rdquo;, fixed when the series began; its p-value holds however often "
	      "the series is looked at, and the first checkpoint with p &le; &alpha; is the "
	      "alarm.</p>\n", f);
	fputs("<h2>Summary</h2>\n<table>\n<tr><th>entry / metric</th><th>main change</th>"
	      "<th>changepoints</th><th>first band exit</th><th>monitor alarm</th></tr>\n", f);
	for (size_t m = 0; m < r->n_metrics; m++) {
		const mb_drift_metric *dm = &r->metrics[m];
		size_t first_exit = SIZE_MAX;
		fputs("<tr><td><code>", f);
		mb_str_put_xml(f, dm->entry);
		fputs(" / ", f);
		mb_str_put_xml(f, dm->metric);
		fprintf(f, "@%d</code></td><td>", dm->version);
		if (dm->main_change != SIZE_MAX) {
			const mb_drift_changepoint *c = &dm->changepoints[dm->main_change];
			x_label(buf, sizeof(buf), r, c->index);
			fprintf(f, "%s: %.4g &rarr; %.4g", buf, c->before, c->after);
		} else {
			fputs("none", f);
		}
		fputs("</td><td>", f);
		for (size_t c = 0; c < dm->n_changepoints; c++) {
			x_label(buf, sizeof(buf), r, dm->changepoints[c].index);
			fprintf(f, "%s%s", c ? ", " : "", buf);
		}
		if (!dm->n_changepoints)
			fputs("none", f);
		fputs("</td><td>", f);
		for (size_t k = 1; k < r->n_points && first_exit == SIZE_MAX; k++)
			if (dm->points[k].band == MB_DRIFT_WORSE || dm->points[k].band == MB_DRIFT_BETTER)
				first_exit = k;
		if (first_exit != SIZE_MAX) {
			x_label(buf, sizeof(buf), r, first_exit);
			fprintf(f, "%s %s", buf, band_html(dm->points[first_exit].band));
		} else {
			fputs("none", f);
		}
		fputs("</td><td>", f);
		if (dm->alarm != SIZE_MAX) {
			x_label(buf, sizeof(buf), r, dm->alarm);
			fprintf(f, "<span class=\"alarm\">%s (p = %.3g)</span>", buf,
				dm->points[dm->alarm].p);
		} else {
			fputs("none", f);
		}
		fputs("</td></tr>\n", f);
	}
	fputs("</table>\n", f);
	if (r->n_phases)
		phases_section(f, r);
	for (size_t m = 0; m < r->n_metrics; m++) {
		const mb_drift_metric *dm = &r->metrics[m];
		int error;
		fputs("<h2>", f);
		mb_str_put_xml(f, dm->entry);
		fputs(" / ", f);
		mb_str_put_xml(f, dm->metric);
		fprintf(f, "@%d</h2>\n<p class=\"note\">%s, %s is better, margin %.4g", dm->version,
			mb_metric_kind_name(dm->kind),
			dm->direction == MB_HIGHER_IS_BETTER ? "higher" : "lower", dm->margin);
		if (dm->has_threshold)
			fprintf(f, ", threshold %s %.4g",
				dm->direction == MB_HIGHER_IS_BETTER ? "&ge;" : "&le;", dm->threshold);
		fprintf(f, ". Monitor: &theta;&#8320; = %.6g, &sigma;&sup2; = %.4g, &tau;&sup2; = %.4g; "
			"PELT penalty %.4g.</p>\n", dm->monitor.theta0, dm->monitor.sigma2,
			dm->monitor.tau2, dm->penalty);
		if ((error = drift_plot(f, r, dm, err)) < 0)
			return error;
		fputs("<table>\n<tr><th>#</th><th>step</th><th>checkpoint</th><th>run</th>"
		      "<th>mean</th><th>95% CI</th><th>vs reference</th><th>interval</th>"
		      "<th>band</th><th>threshold</th><th>monitor p</th></tr>\n", f);
		for (size_t k = 0; k < r->n_points; k++) {
			const mb_drift_point *p = &dm->points[k];
			fprintf(f, "<tr><td class=\"num\">%zu</td>", k);
			if (r->has_steps)
				fprintf(f, "<td class=\"num\">%lld</td>", (long long)r->steps[k]);
			else
				fputs("<td>&ndash;</td>", f);
			fputs("<td><code>", f);
			mb_str_put_xml(f, r->checkpoints[k]);
			fprintf(f, "</code></td><td class=\"num\">%lld</td>", (long long)r->run_ids[k]);
			cell_num(f, p->mean);
			cell_ci(f, p->lo, p->hi);
			if (k == 0) {
				fputs("<td>&ndash;</td><td>&ndash;</td>", f);
			} else {
				cell_num(f, p->diff);
				cell_ci(f, p->diff_lo, p->diff_hi);
			}
			fprintf(f, "<td>%s</td><td>%s</td>", band_html(p->band),
				!p->threshold_checked ? "&ndash;"
				: p->threshold_verdict == MB_STATS_VERDICT_PASS ? "met"
				: p->threshold_verdict == MB_STATS_VERDICT_REGRESSED
					? "<span class=\"worse\">violated</span>"
					: "inconclusive");
			if (k == 0)
				fputs("<td>&ndash;</td></tr>\n", f);
			else
				fprintf(f, "<td class=\"num\">%s%.3g%s</td></tr>\n",
					k == dm->alarm ? "<span class=\"alarm\">" : "", p->p,
					k == dm->alarm ? "</span>" : "");
		}
		fputs("</table>\n", f);
	}
	return 0;
}

/* --- writing ---------------------------------------------------------------------------- */

int mb_html_write(const char *path, int (*render)(FILE *f, const void *arg, mb_error *err),
		  const void *arg, mb_error *err)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int error;

	if (!f)
		return mb_error_oom(err, path, 0);
	error = render(f, arg, err);
	if (fclose(f) != 0 && error == 0)
		error = mb_error_oom(err, path, len);
	if (error == 0)
		error = mb_file_write_all(path, buf, len, err);
	free(buf);
	return error;
}
