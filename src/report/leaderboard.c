/*
 * leaderboard.c: renders the leaderboard (leaderboard.h) as Markdown, CSV,
 * JSON and HTML. src/harness/leaderboard.c computes it.
 */
#include <mechbench/leaderboard.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/html.h>
#include <mechbench/str.h>

void mb_leaderboard_rank_text(char *buf, size_t cap, const mb_leaderboard_cell *c, int ascii)
{
	if (!c->present)
		snprintf(buf, cap, "-");
	else if (c->rank_lo == c->rank_hi)
		snprintf(buf, cap, "%zu", c->rank_lo);
	else
		snprintf(buf, cap, "%zu%s%zu", c->rank_lo, ascii ? "-" : "\xe2\x80\x93", c->rank_hi);
}

/* --- markdown ---------------------------------------------------------------------------- */

/* Table-cell text: '|' escaped, newlines as spaces, backslashes kept literal. */
static void md_cell(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		if (*s == '|')
			fputs("\\|", f);
		else if (*s == '\n' || *s == '\r')
			fputc(' ', f);
		else if (strchr("\\`*_[]<>", *s))
			fprintf(f, "\\%c", *s);
		else
			fputc(*s, f);
	}
}

/* A row's overall rank text: the rank of its first metric (a table without
 * metrics ranks every row as an absent cell). */
static void row_rank_text(char *buf, size_t cap, const mb_leaderboard_table *tb,
			  const mb_leaderboard_row *row)
{
	mb_leaderboard_rank_text(buf, cap, tb->n_metrics ? &row->cells[0]
							 : &(mb_leaderboard_cell){0},
				 0);
}

/* Inline code for a table cell: `` s `` (a single backtick in s cannot close it). */
static void md_code(FILE *f, const char *s)
{
	fputs("`` ", f);
	for (; s && *s; s++) {
		if (*s == '|')
			fputs("\\|", f); /* GFM: a table cell's pipe, even inside code */
		else
			fputc(*s == '\n' || *s == '\r' ? ' ' : *s, f);
	}
	fputs(" ``", f);
}

/* Every cell per stratum, under the table (estimates and 95% CIs; ranks are
 * of the pooled values only). */
static void strata_markdown(FILE *f, const mb_leaderboard_table *tb)
{
	int any = 0;

	for (size_t r = 0; r < tb->n_rows && !any; r++)
		for (size_t m = 0; m < tb->n_metrics && !any; m++)
			any = tb->rows[r].cells[m].n_strata > 0;
	if (!any)
		return;
	fputs("\nPer stratum (the pooled values above leave OUT-OF-DISTRIBUTION strata out):\n\n"
	      "| model | run | metric | stratum | n | mean [95% CI] |\n|---|---:|---|---|---:|---|\n",
	      f);
	for (size_t r = 0; r < tb->n_rows; r++) {
		const mb_leaderboard_row *row = &tb->rows[r];
		for (size_t m = 0; m < tb->n_metrics; m++)
			for (size_t k = 0; k < row->cells[m].n_strata; k++) {
				const mb_leaderboard_stratum *st = &row->cells[m].strata[k];
				fputs("| ", f);
				md_cell(f, row->model);
				fprintf(f, " | %lld | `", (long long)row->run_id);
				md_cell(f, tb->metrics[m]);
				fprintf(f, "@%d` | ", tb->versions[m]);
				md_cell(f, st->name);
				fprintf(f, "%s | %zu | %.4g [%.4g, %.4g] |\n",
					st->ood ? " (OUT-OF-DISTRIBUTION)" : "", st->n, st->mean, st->lo,
					st->hi);
			}
	}
}

void mb_leaderboard_markdown(FILE *f, const mb_leaderboard *lb)
{
	fprintf(f, "# Leaderboard\n\nMeans with 95%% CIs. Ranks are simultaneous intervals from "
		"pairwise paired tests on shared items (Holm, family-wise alpha %g per metric): "
		"rows whose difference is not significant share ranks.\n", lb->alpha);
	for (size_t t = 0; t < lb->n_tables; t++) {
		const mb_leaderboard_table *tb = &lb->tables[t];
		fputs("\n## ", f);
		md_cell(f, tb->suite);
		fputs(" / ", f);
		md_cell(f, tb->entry);
		fputs(" (", f);
		md_cell(f, tb->task);
		fputs(")\n\n| rank | model | run |", f);
		for (size_t m = 0; m < tb->n_metrics; m++) {
			fputc(' ', f);
			md_cell(f, tb->metrics[m]);
			fprintf(f, "@%d (%s) |", tb->versions[m],
				tb->directions[m] == MB_HIGHER_IS_BETTER ? "higher is better"
									 : "lower is better");
		}
		fputs(" stamp (code, spec, data, model) | reproduce |\n|---|---|--:|", f);
		for (size_t m = 0; m < tb->n_metrics; m++)
			fputs("---|", f);
		fputs("---|---|\n", f);
		for (size_t r = 0; r < tb->n_rows; r++) {
			const mb_leaderboard_row *row = &tb->rows[r];
			char rank[32];
			row_rank_text(rank, sizeof(rank), tb, row);
			fprintf(f, "| %s | ", rank);
			md_cell(f, row->model);
			fprintf(f, " | %lld |", (long long)row->run_id);
			for (size_t m = 0; m < tb->n_metrics; m++) {
				const mb_leaderboard_cell *c = &row->cells[m];
				char rk[32];
				if (!c->present) {
					fputs(" - |", f);
					continue;
				}
				mb_leaderboard_rank_text(rk, sizeof(rk), c, 0);
				fprintf(f, " %.4g [%.4g, %.4g] (rank %s) |", c->mean, c->lo, c->hi, rk);
			}
			fprintf(f, " %.12s%s %.12s %.12s %.12s | ", row->code_commit,
				row->code_dirty ? "-dirty" : "", row->spec_blob, row->dataset_sha256,
				row->model_sha256);
			md_code(f, row->command);
			fputs(" |\n", f);
		}
		strata_markdown(f, tb);
	}
}

/* --- CSV --------------------------------------------------------------------------------- */

void mb_leaderboard_csv(FILE *f, const mb_leaderboard *lb)
{
	fputs("suite,entry,task,run_id,model,metric,version,kind,direction,n,mean,ci_low,ci_high,"
	      "rank_low,rank_high,code_commit,code_dirty,spec_blob,spec_path,dataset_sha256,"
	      "model_sha256,command\n", f);
	for (size_t t = 0; t < lb->n_tables; t++) {
		const mb_leaderboard_table *tb = &lb->tables[t];
		for (size_t r = 0; r < tb->n_rows; r++) {
			const mb_leaderboard_row *row = &tb->rows[r];
			for (size_t m = 0; m < tb->n_metrics; m++) {
				const mb_leaderboard_cell *c = &row->cells[m];
				if (!c->present)
					continue;
				mb_str_put_csv(f, tb->suite);
				fputc(',', f);
				mb_str_put_csv(f, tb->entry);
				fputc(',', f);
				mb_str_put_csv(f, tb->task);
				fprintf(f, ",%lld,", (long long)row->run_id);
				mb_str_put_csv(f, row->model);
				fputc(',', f);
				mb_str_put_csv(f, tb->metrics[m]);
				fprintf(f, ",%d,%s,%s,%zu,%.17g,%.17g,%.17g,%zu,%zu,", tb->versions[m],
					mb_metric_kind_name(tb->kinds[m]),
					mb_metric_direction_name(tb->directions[m]), c->n, c->mean, c->lo,
					c->hi, c->rank_lo, c->rank_hi);
				mb_str_put_csv(f, row->code_commit);
				fprintf(f, ",%d,", row->code_dirty);
				mb_str_put_csv(f, row->spec_blob);
				fputc(',', f);
				mb_str_put_csv(f, row->spec_path);
				fprintf(f, ",%s,%s,", row->dataset_sha256, row->model_sha256);
				mb_str_put_csv(f, row->command);
				fputc('\n', f);
			}
		}
	}
}

/* --- JSON -------------------------------------------------------------------------------- */

static json_t *num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

json_t *mb_leaderboard_json(const mb_leaderboard *lb)
{
	json_t *tables = json_array(), *doc;
	int bad = !tables;

	for (size_t t = 0; !bad && t < lb->n_tables; t++) {
		const mb_leaderboard_table *tb = &lb->tables[t];
		json_t *mets = json_array(), *rows = json_array(), *o;
		bad |= !mets || !rows;
		for (size_t m = 0; !bad && m < tb->n_metrics; m++)
			bad |= json_array_append_new(
				       mets, json_pack("{s:s,s:i,s:s,s:s}", "name", tb->metrics[m],
						       "version", tb->versions[m], "kind",
						       mb_metric_kind_name(tb->kinds[m]), "direction",
						       mb_metric_direction_name(tb->directions[m]))) < 0;
		for (size_t r = 0; !bad && r < tb->n_rows; r++) {
			const mb_leaderboard_row *row = &tb->rows[r];
			json_t *cells = json_array(), *rj;
			bad |= !cells;
			for (size_t m = 0; !bad && m < tb->n_metrics; m++) {
				const mb_leaderboard_cell *c = &row->cells[m];
				json_t *st = json_array();
				for (size_t k = 0; st && k < c->n_strata; k++)
					json_array_append_new(
						st, json_pack("{s:s,s:b,s:I,s:o,s:o,s:o}", "name",
							      c->strata[k].name, "ood", c->strata[k].ood,
							      "n", (json_int_t)c->strata[k].n, "mean",
							      num(c->strata[k].mean), "lo",
							      num(c->strata[k].lo), "hi",
							      num(c->strata[k].hi)));
				if (!c->present)
					json_decref(st);
				bad |= json_array_append_new(
					       cells, c->present
							      ? json_pack("{s:I,s:o,s:o,s:o,s:I,s:I,s:o}", "n",
									  (json_int_t)c->n, "mean",
									  num(c->mean), "lo", num(c->lo),
									  "hi", num(c->hi), "rank_lo",
									  (json_int_t)c->rank_lo,
									  "rank_hi",
									  (json_int_t)c->rank_hi,
									  "strata", st)
							      : json_null()) < 0;
			}
			rj = bad ? NULL
				 : json_pack("{s:I,s:s,s:{s:s,s:b,s:s,s:s,s:s,s:s},s:s,s:o}", "run_id",
					     (json_int_t)row->run_id, "model", row->model, "stamp",
					     "code_commit", row->code_commit, "code_dirty",
					     row->code_dirty, "spec_blob", row->spec_blob, "spec_path",
					     row->spec_path, "dataset_sha256", row->dataset_sha256,
					     "model_sha256", row->model_sha256, "command", row->command,
					     "cells", cells);
			if (!rj) {
				json_decref(cells);
				bad = 1;
				break;
			}
			bad |= json_array_append_new(rows, rj) < 0;
		}
		o = bad ? NULL
			: json_pack("{s:s,s:s,s:s,s:o,s:o}", "suite", tb->suite, "entry", tb->entry,
				    "task", tb->task, "metrics", mets, "rows", rows);
		if (!o) {
			json_decref(mets);
			json_decref(rows);
			bad = 1;
			break;
		}
		bad |= json_array_append_new(tables, o) < 0;
	}
	doc = bad ? NULL
		  : json_pack("{s:i,s:f,s:s,s:o}", "mechbench_leaderboard", MB_LEADERBOARD_JSON_FORMAT,
			      "alpha", lb->alpha, "ranks",
			      "simultaneous rank intervals from Holm-adjusted pairwise paired tests "
			      "on shared items (Al Mohamad, Goeman & van Zwet 2022)",
			      "tables", tables);
	if (!doc)
		json_decref(tables);
	return doc;
}

/* --- HTML -------------------------------------------------------------------------------- */

int mb_leaderboard_html(FILE *f, const mb_leaderboard *lb, mb_error *err)
{
	(void)err;
	mb_html_begin(f, "mechbench leaderboard");
	fprintf(f, "<h1>Leaderboard</h1>\n<p class=\"note\">Means with 95%% CIs. A rank is a "
		"simultaneous interval: the ranks consistent with every significant pairwise "
		"difference (paired tests on shared items, Holm-adjusted per metric at family-wise "
		"&alpha; = %g; Al Mohamad, Goeman &amp; van Zwet 2022). Rows whose difference is "
		"not significant share ranks.</p>\n", lb->alpha);
	for (size_t t = 0; t < lb->n_tables; t++) {
		const mb_leaderboard_table *tb = &lb->tables[t];
		fputs("<h2>", f);
		mb_str_put_xml(f, tb->suite);
		fputs(" / ", f);
		mb_str_put_xml(f, tb->entry);
		fputs(" <span class=\"note\">(", f);
		mb_str_put_xml(f, tb->task);
		fputs(")</span></h2>\n<table>\n<tr><th>rank</th><th>model</th><th>run</th>", f);
		for (size_t m = 0; m < tb->n_metrics; m++) {
			fputs("<th><code>", f);
			mb_str_put_xml(f, tb->metrics[m]);
			fprintf(f, "@%d</code><br><span class=\"note\">%s is better</span></th>",
				tb->versions[m],
				tb->directions[m] == MB_HIGHER_IS_BETTER ? "higher" : "lower");
		}
		fputs("<th>stamp</th><th>reproduce</th></tr>\n", f);
		for (size_t r = 0; r < tb->n_rows; r++) {
			const mb_leaderboard_row *row = &tb->rows[r];
			char rank[32];
			row_rank_text(rank, sizeof(rank), tb, row);
			fprintf(f, "<tr><td class=\"num\">%s</td><td><code>", rank);
			mb_str_put_xml(f, row->model);
			fprintf(f, "</code></td><td class=\"num\">%lld</td>", (long long)row->run_id);
			for (size_t m = 0; m < tb->n_metrics; m++) {
				const mb_leaderboard_cell *c = &row->cells[m];
				char rk[32];
				if (!c->present) {
					fputs("<td>&ndash;</td>", f);
					continue;
				}
				mb_leaderboard_rank_text(rk, sizeof(rk), c, 0);
				fprintf(f, "<td class=\"num\">%.4g [%.4g, %.4g]<br>rank %s", c->mean,
					c->lo, c->hi, rk);
				/* per stratum, one click away (ranks are of the pooled values) */
				if (c->n_strata)
					fputs("<details><summary>per stratum</summary>", f);
				for (size_t k = 0; k < c->n_strata; k++) {
					mb_str_put_xml(f, c->strata[k].name);
					fprintf(f, "%s (n %zu): %.4g [%.4g, %.4g]<br>",
						c->strata[k].ood ? " <strong>OUT-OF-DISTRIBUTION</strong>"
								 : "",
						c->strata[k].n, c->strata[k].mean, c->strata[k].lo,
						c->strata[k].hi);
				}
				fputs(c->n_strata ? "</details></td>" : "</td>", f);
			}
			/* Short hashes in the row; the whole stamp one click away
			 * (<details> needs no script). */
			fputs("<td><details><summary><code>", f);
			fprintf(f, "%.10s%s %.10s %.10s %.10s", row->code_commit,
				row->code_dirty ? "-dirty" : "", row->spec_blob, row->dataset_sha256,
				row->model_sha256);
			fputs("</code></summary><code>code ", f);
			mb_str_put_xml(f, row->code_commit);
			fprintf(f, "%s<br>spec ", row->code_dirty ? "-dirty" : "");
			mb_str_put_xml(f, row->spec_blob);
			fprintf(f, "<br>data %s<br>model %s</code></details></td><td><code>",
				row->dataset_sha256, row->model_sha256);
			mb_str_put_xml(f, row->command);
			fputs("</code></td></tr>\n", f);
		}
		fputs("</table>\n", f);
	}
	mb_html_end(f);
	return 0;
}
