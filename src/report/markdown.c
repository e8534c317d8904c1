/* markdown.c: the gate for PR comments and $GITHUB_STEP_SUMMARY (GitHub
 * flavoured markdown: a heading, a table, details blocks). */
#include "report_int.h"

#include <math.h>
#include <string.h>

/* Writes s with the characters that would break a table cell escaped. */
static void md_cell(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '|' || *s == '\\' || *s == '`' || *s == '*' || *s == '_' || *s == '<')
			fputc('\\', f);
		fputc(*s == '\n' ? ' ' : *s, f);
	}
}

static const char *status_mark(mb_gate_status s)
{
	switch (s) {
	case MB_GATE_IDENTICAL:
	case MB_GATE_IMPROVED:
	case MB_GATE_PASS: return "";
	case MB_GATE_REGRESSED:
	case MB_GATE_THRESHOLD_FAILED: return "**";
	default: return "_";
	}
}

/* Every metric per stratum, next to the pooled row above: the same
 * comparison per stratum, the stratum's own threshold and whether it gates. */
static void strata_markdown(FILE *f, const mb_gate_result *g)
{
	size_t any = 0;

	for (size_t i = 0; i < g->n_rows; i++)
		any += g->rows[i].n_strata;
	if (!any)
		return;
	fprintf(f, "\n### Per stratum\n\n");
	fprintf(f, "Pooled rows above leave out-of-distribution strata out. A stratum with a "
		   "registered threshold gates under `combine: all` and is reported under "
		   "`combine: pooled`; its threshold is judged on its own %g%% CI.\n\n",
		g->level * 100);
	fprintf(f, "| entry | metric | stratum | n | baseline | candidate | diff | %g%% CI | "
		   "threshold (candidate CI) | status | role |\n", g->level * 100);
	fprintf(f, "|---|---|---|---:|---:|---:|---:|---|---|---|---|\n");
	for (size_t i = 0; i < g->n_rows; i++) {
		const mb_gate_row *r = &g->rows[i];
		for (size_t k = 0; k < r->n_strata; k++) {
			const mb_gate_stratum *st = &r->strata[k];
			const char *mark = mb_stratum_failed(r, st) ? "**" : "";
			mb_stratum_text x;
			mb_stratum_text_fill(&x, r, st);
			fprintf(f, "| ");
			md_cell(f, r->entry);
			fprintf(f, " | `%s@%d` | ", r->metric, r->version);
			md_cell(f, x.stratum);
			fprintf(f, " | %s | %s | %s | %s | ", x.n, x.base, x.cand, x.diff);
			md_cell(f, x.ci);
			fprintf(f, " | ");
			md_cell(f, x.threshold);
			fprintf(f, " | %s%s%s | %s |\n", mark, x.status, mark, x.role);
		}
	}
}

/* Each entry's artifact against the baseline's (a discovered circuit):
 * reported next to the metrics, never gating (gate.h). */
static void artifacts_markdown(FILE *f, const mb_gate_result *g)
{
	char line[2048];

	if (!g->n_artifacts)
		return;
	fprintf(f, "\n### Artifacts\n\n");
	fprintf(f, "Reported, not gating: what a circuit does is gated by its metrics above. A "
		   "changed circuit is within resampling noise when the Jaccard similarity of the "
		   "two circuits' nodes is at least the lower bound of the stability interval "
		   "(bootstrap resamples of the discovery split).\n\n");
	for (size_t i = 0; i < g->n_artifacts; i++) {
		const mb_artifact_diff *d = &g->artifacts[i];
		const char *mark = d->noise == MB_ARTIFACT_NOISE_BEYOND ? "**" : "";
		mb_artifact_head(line, sizeof(line), d);
		fprintf(f, "- ");
		md_cell(f, d->entry);
		fprintf(f, ": %s", mark);
		md_cell(f, line);
		fprintf(f, "%s\n", mark);
		mb_artifact_stability_text(line, sizeof(line), d);
		if (line[0] && d->change == MB_ARTIFACT_CHANGED) {
			fprintf(f, "  - stability: ");
			md_cell(f, line);
			fputc('\n', f);
		}
		if (d->n_nodes_removed || d->n_nodes_added || d->n_edges_removed ||
		    d->n_edges_added) {
			mb_artifact_lists lists;
			mb_artifact_lists_fill(&lists, d);
			fprintf(f, "\n  | change | nodes / edges |\n  |---|---|\n");
			for (int k = 0; k < 4; k++) {
				if (!lists.text[k][0])
					continue;
				fprintf(f, "  | %s | ", lists.label[k]);
				md_cell(f, lists.text[k]);
				fprintf(f, " |\n");
			}
			fputc('\n', f);
		}
	}
}

void mb_report_gate_markdown(FILE *f, const mb_gate_result *g)
{
	fprintf(f, "## mechbench gate: ");
	md_cell(f, g->suite);
	fprintf(f, " — %s (exit %d)\n\n", mb_gate_status_name(g->outcome), g->exit_code);
	fprintf(f, "Baseline `%s` at `%.12s`, spec `%s` (blob `%.12s`); one-sided alpha %g, "
		   "%g%% intervals of candidate − baseline, power target %g.\n\n",
		g->ref, g->commit, g->spec_path, g->spec_blob, g->alpha, g->level * 100, g->power);
	fprintf(f, "| entry | metric | better | baseline | candidate | diff | %g%% CI | margin "
		   "| MDE | threshold | status |\n", g->level * 100);
	fprintf(f, "|---|---|---|---:|---:|---:|---|---:|---:|---|---|\n");
	for (size_t i = 0; i < g->n_rows; i++) {
		const mb_gate_row *r = &g->rows[i];
		mb_row_text x;
		mb_row_text_fill(&x, r);
		fprintf(f, "| ");
		md_cell(f, r->entry);
		fprintf(f, " | `%s` | %s | %s | %s | %s | ", x.metric,
			mb_metric_direction_name(r->direction), x.base, x.cand, x.diff);
		md_cell(f, x.ci);
		fprintf(f, " | %s | %s | ", x.margin, x.mde);
		md_cell(f, x.threshold);
		fprintf(f, " | %s%s%s |\n", status_mark(r->status), mb_gate_status_name(r->status),
			status_mark(r->status));
	}
	fputc('\n', f);
	for (size_t i = 0; i < g->n_rows; i++) {
		const mb_gate_row *r = &g->rows[i];
		char why[1024];
		if (!mb_row_failed(r) && !r->note[0])
			continue;
		mb_row_explain(why, sizeof(why), r, g->level);
		fprintf(f, "- ");
		md_cell(f, r->entry);
		fprintf(f, "/`%s`: ", r->metric);
		md_cell(f, why);
		fputc('\n', f);
	}
	strata_markdown(f, g);
	artifacts_markdown(f, g);
	if (g->n_deviations) {
		fprintf(f, "\n**THRESHOLD-CHANGED**: the spec in the working tree differs from the "
			   "one registered at `%s`. The gate used the registered spec; commit the "
			   "change and re-baseline to register it.\n\n", g->ref);
		fprintf(f, "| field | registered | working tree |\n|---|---|---|\n");
		for (size_t i = 0; i < g->n_deviations; i++) {
			fprintf(f, "| ");
			md_cell(f, g->deviations[i].path);
			fprintf(f, " | ");
			md_cell(f, g->deviations[i].before);
			fprintf(f, " | ");
			md_cell(f, g->deviations[i].after);
			fprintf(f, " |\n");
		}
	}
	if (g->n_notes) {
		fprintf(f, "\n<details><summary>Notes (%zu)</summary>\n\n", g->n_notes);
		for (size_t i = 0; i < g->n_notes; i++) {
			fprintf(f, "- ");
			md_cell(f, g->notes[i]);
			fputc('\n', f);
		}
		fprintf(f, "\n</details>\n");
	}
}
