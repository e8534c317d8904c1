/* terminal.c: aligned tables for people at a terminal (colour only when asked). */
#include "report_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define COLS_MAX 12
#define CELL_MAX 96

typedef struct table {
	size_t cols, rows, cap;
	char (*cells)[CELL_MAX]; /* (rows, cols) */
	const char **color;      /* (rows) escape for the status cell, or NULL */
	size_t status_col;
} table;

static int table_add(table *t, const char *const *cells, const char *color)
{
	if (t->rows == t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 16;
		char(*nc)[CELL_MAX] = realloc(t->cells, ncap * t->cols * CELL_MAX);
		const char **ncol;
		if (!nc)
			return -1;
		t->cells = nc;
		ncol = realloc(t->color, ncap * sizeof(*ncol));
		if (!ncol)
			return -1;
		t->color = ncol;
		t->cap = ncap;
	}
	for (size_t c = 0; c < t->cols; c++)
		snprintf(t->cells[t->rows * t->cols + c], CELL_MAX, "%s", cells[c]);
	t->color[t->rows] = color;
	t->rows++;
	return 0;
}

static void table_print(FILE *f, const table *t, int color)
{
	size_t w[COLS_MAX] = {0};

	for (size_t r = 0; r < t->rows; r++)
		for (size_t c = 0; c < t->cols; c++) {
			size_t n = strlen(t->cells[r * t->cols + c]);
			if (n > w[c])
				w[c] = n;
		}
	for (size_t r = 0; r < t->rows; r++) {
		for (size_t c = 0; c < t->cols; c++) {
			const char *cell = t->cells[r * t->cols + c];
			int paint = color && c == t->status_col && t->color[r];
			fprintf(f, "%s%s%-*s%s", c ? "  " : "", paint ? t->color[r] : "",
				c + 1 == t->cols ? 0 : (int)w[c], cell, paint ? "\033[0m" : "");
		}
		fputc('\n', f);
		if (r == 0) {
			size_t total = 0;
			for (size_t c = 0; c < t->cols; c++)
				total += w[c] + (c ? 2 : 0);
			for (size_t i = 0; i < total; i++)
				fputc('-', f);
			fputc('\n', f);
		}
	}
}

static void table_free(table *t)
{
	free(t->cells);
	free(t->color);
}

static const char *status_color(mb_gate_status s)
{
	switch (s) {
	case MB_GATE_IDENTICAL:
	case MB_GATE_IMPROVED:
	case MB_GATE_PASS: return "\033[32m";
	case MB_GATE_REGRESSED:
	case MB_GATE_THRESHOLD_FAILED: return "\033[1;31m";
	default: return "\033[33m";
	}
}

void mb_report_gate_terminal(FILE *f, const mb_gate_result *g, int color)
{
	table t = {.cols = 11, .status_col = 10};
	const char *head[] = {"entry", "metric", "better", "baseline", "candidate", "diff",
			      "", "margin", "MDE", "threshold", "status"};
	char ci_head[32];
	int failed = 0;

	snprintf(ci_head, sizeof(ci_head), "%g%% CI of diff", g->level * 100);
	head[6] = ci_head;
	fprintf(f, "mechbench gate: suite %s, baseline %s (%.12s), spec %s\n", g->suite, g->ref,
		g->commit, g->spec_path);
	fprintf(f, "one-sided alpha %g, intervals %g%%, power target %g per suite\n\n", g->alpha,
		g->level * 100, g->power);
	failed |= table_add(&t, head, NULL);
	for (size_t i = 0; i < g->n_rows && !failed; i++) {
		const mb_gate_row *r = &g->rows[i];
		mb_row_text x;
		mb_row_text_fill(&x, r);
		const char *cells[11] = {r->entry, x.metric, mb_metric_direction_name(r->direction),
					 x.base, x.cand, x.diff, x.ci, x.margin, x.mde,
					 x.threshold, mb_gate_status_name(r->status)};
		failed |= table_add(&t, cells, status_color(r->status));
	}
	if (!failed)
		table_print(f, &t, color);
	table_free(&t);
	for (size_t i = 0; i < g->n_rows; i++) {
		const mb_gate_row *r = &g->rows[i];
		char why[1024];
		if (!mb_row_failed(r) && !r->note[0])
			continue;
		mb_row_explain(why, sizeof(why), r, g->level);
		fprintf(f, "  %s/%s: %s\n", r->entry, r->metric, why);
	}
	if (g->n_artifacts) {
		fprintf(f, "\nArtifacts (reported, not gating):\n");
		for (size_t i = 0; i < g->n_artifacts; i++) {
			const mb_artifact_diff *d = &g->artifacts[i];
			mb_artifact_lists lists;
			char line[2048];
			mb_artifact_head(line, sizeof(line), d);
			fprintf(f, "  %s: %s\n", d->entry, line);
			mb_artifact_stability_text(line, sizeof(line), d);
			if (line[0] && d->change == MB_ARTIFACT_CHANGED)
				fprintf(f, "    stability: %s\n", line);
			mb_artifact_lists_fill(&lists, d);
			for (int k = 0; k < 4; k++)
				if (lists.text[k][0])
					fprintf(f, "    %s: %s\n", lists.label[k], lists.text[k]);
		}
	}
	if (g->n_deviations) {
		fprintf(f, "\nTHRESHOLD-CHANGED: the spec in the working tree differs from the one "
			   "registered at %s (%.12s):\n", g->ref, g->commit);
		for (size_t i = 0; i < g->n_deviations; i++)
			fprintf(f, "  %s: %s -> %s\n", g->deviations[i].path, g->deviations[i].before,
				g->deviations[i].after);
		fprintf(f, "The gate used the registered spec. Commit the change and re-baseline "
			   "to register it.\n");
	}
	if (g->n_notes) {
		fprintf(f, "\nNotes:\n");
		for (size_t i = 0; i < g->n_notes; i++)
			fprintf(f, "  - %s\n", g->notes[i]);
	}
	fprintf(f, "\noutcome: %s%s%s (exit %d)\n", color ? status_color(g->outcome) : "",
		mb_gate_status_name(g->outcome), color ? "\033[0m" : "", g->exit_code);
}

void mb_report_run_terminal(FILE *f, const mb_run_result *r, int color)
{
	table t = {.cols = 8, .status_col = 99};
	const char *head[] = {"entry", "metric", "better", "n", "mean", "95% CI", "se", "method"};
	int failed;

	(void)color;
	fprintf(f, "mechbench run%s%lld: suite %s, spec %s (blob %.12s)%s\n", r->id ? " " : "",
		(long long)r->id, r->prov.suite, r->prov.spec_path, r->prov.spec_blob,
		r->prov.spec_committed == 0 ? ", NOT COMMITTED" : "");
	fprintf(f, "code %s%s, %d threads, %.2f s\n\n", r->prov.code_commit,
		r->prov.code_dirty ? "-dirty" : "", r->prov.threads, r->prov.wall_seconds);
	failed = table_add(&t, head, NULL);
	for (size_t i = 0; i < r->n_entries && !failed; i++) {
		const mb_entry_result *e = &r->entries[i];
		for (size_t m = 0; m < e->n_metrics && !failed; m++) {
			const mb_aggregate *a = &e->aggregates[m];
			char metric[CELL_MAX], n[32], mean[32], ci[64], se[32];
			const char *cells[8];
			snprintf(metric, sizeof(metric), "%s@%d", e->metrics[m].name,
				 e->metrics[m].version);
			snprintf(n, sizeof(n), "%zu", a->n);
			mb_fmt_num(mean, sizeof(mean), a->mean);
			mb_fmt_ci(ci, sizeof(ci), a->lo, a->hi);
			mb_fmt_num(se, sizeof(se), a->se);
			cells[0] = e->name;
			cells[1] = metric;
			cells[2] = mb_metric_direction_name(e->metrics[m].direction);
			cells[3] = n;
			cells[4] = mean;
			cells[5] = ci;
			cells[6] = se;
			cells[7] = mb_stats_method_name(a->method);
			failed |= table_add(&t, cells, NULL);
		}
	}
	if (!failed)
		table_print(f, &t, 0);
	table_free(&t);
	for (size_t i = 0; i < r->n_entries; i++) {
		const mb_entry_result *e = &r->entries[i];
		mb_artifact_circuit c;
		const char *kind = json_string_value(json_object_get(e->artifact, "kind"));
		if (!e->artifact)
			continue;
		if (!mb_artifact_is_circuit(e->artifact) ||
		    mb_artifact_circuit_read(&c, e->artifact, NULL) < 0) {
			fprintf(f, "%s: artifact %s\n", e->name, kind ? kind : "(no kind)");
			continue;
		}
		fprintf(f, "%s: circuit of %zu nodes and %zu edges", e->name, c.n_nodes, c.n_edges);
		if (c.stability.present) {
			char m[32], lo[32], hi[32];
			mb_fmt_num(m, sizeof(m), c.stability.mean);
			mb_fmt_num(lo, sizeof(lo), c.stability.lo);
			mb_fmt_num(hi, sizeof(hi), c.stability.hi);
			fprintf(f, ", stability Jaccard %s [%s, %s] over %lld resamples", m, lo, hi,
				(long long)c.stability.resamples);
		}
		fputc('\n', f);
		mb_artifact_circuit_dispose(&c);
	}
}

void mb_report_gate_terminal_strata(FILE *f, const mb_gate_result *g, int color)
{
	table t = {.cols = 10, .status_col = 8};
	const char *head[] = {"entry", "metric", "stratum", "n", "baseline", "candidate", "",
			      "threshold (candidate CI)", "status", "role"};
	char ci_head[32];
	int failed = 0;

	snprintf(ci_head, sizeof(ci_head), "%g%% CI of diff", g->level * 100);
	head[6] = ci_head;
	fprintf(f, "\nper stratum (pooled rows leave OUT-OF-DISTRIBUTION strata out):\n\n");
	failed |= table_add(&t, head, NULL);
	for (size_t i = 0; i < g->n_rows && !failed; i++) {
		const mb_gate_row *r = &g->rows[i];
		char metric[CELL_MAX];
		snprintf(metric, sizeof(metric), "%s@%d", r->metric, r->version);
		for (size_t k = 0; k < r->n_strata && !failed; k++) {
			const mb_gate_stratum *st = &r->strata[k];
			mb_stratum_text x;
			mb_stratum_text_fill(&x, r, st);
			const char *cells[10] = {r->entry, metric, x.stratum, x.n, x.base, x.cand,
						 x.ci, x.threshold, x.status, x.role};
			failed |= table_add(&t, cells,
					    st->compared ? status_color(st->status) : NULL);
		}
	}
	if (!failed)
		table_print(f, &t, color);
	table_free(&t);
}

void mb_report_run_terminal_strata(FILE *f, const mb_run_result *r)
{
	table t = {.cols = 7, .status_col = 99};
	const char *head[] = {"entry", "metric", "stratum", "n", "mean", "95% CI", "method"};
	int failed;

	fprintf(f, "\nper stratum (the pooled rows above leave OUT-OF-DISTRIBUTION strata out):\n\n");
	failed = table_add(&t, head, NULL);
	for (size_t i = 0; i < r->n_entries && !failed; i++) {
		const mb_entry_result *e = &r->entries[i];
		for (size_t m = 0; m < e->n_metrics && !failed; m++)
			for (size_t k = 0; k < e->n_strata && e->strata[k].aggregates && !failed;
			     k++) {
				const mb_stratum_result *st = &e->strata[k];
				const mb_aggregate *a = &st->aggregates[m];
				char metric[CELL_MAX], name[CELL_MAX], n[32], mean[32], ci[64];
				const char *cells[7];
				snprintf(metric, sizeof(metric), "%s@%d", e->metrics[m].name,
					 e->metrics[m].version);
				snprintf(name, sizeof(name), "%s%s", st->name,
					 st->ood ? " (OUT-OF-DISTRIBUTION)" : "");
				snprintf(n, sizeof(n), "%zu", st->n);
				mb_fmt_num(mean, sizeof(mean), a->mean);
				mb_fmt_ci(ci, sizeof(ci), a->lo, a->hi);
				cells[0] = e->name;
				cells[1] = metric;
				cells[2] = name;
				cells[3] = n;
				cells[4] = mean;
				cells[5] = ci;
				cells[6] = mb_stats_method_name(a->method);
				failed |= table_add(&t, cells, NULL);
			}
	}
	if (!failed)
		table_print(f, &t, 0);
	table_free(&t);
}
