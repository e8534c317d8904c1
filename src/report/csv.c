/* csv.c: one row per metric (RFC 4180 quoting), for spreadsheets and pandas. */
#include "report_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/str.h>

static void csv_field(FILE *f, const char *s, int last)
{
	mb_str_put_csv(f, s);
	fputc(last ? '\n' : ',', f);
}

/* Full precision for machines; empty for NaN. */
static void csv_num(FILE *f, double v, int last)
{
	char buf[40];
	if (isnan(v)) {
		buf[0] = '\0';
	} else {
		/* The shortest of 15-17 digits that reads back to the same double. */
		for (int p = 15; p <= 17; p++) {
			snprintf(buf, sizeof(buf), "%.*g", p, v);
			if (strtod(buf, NULL) == v)
				break;
		}
	}
	csv_field(f, buf, last);
}

void mb_report_gate_csv(FILE *f, const mb_gate_result *g)
{
	fputs("suite,entry,metric,version,baseline_version,kind,direction,status,verdict,n,"
	      "baseline_mean,candidate_mean,diff,se,ci_level,ci_low,ci_high,p_noninferior,"
	      "method,margin,mde_planned,mde_observed,threshold,threshold_verdict,note\n", f);
	for (size_t i = 0; i < g->n_rows; i++) {
		const mb_gate_row *r = &g->rows[i];
		const mb_stats_comparison *c = &r->cmp;
		char buf[32];
		int cmp = r->compared;
		csv_field(f, g->suite, 0);
		csv_field(f, r->entry, 0);
		csv_field(f, r->metric, 0);
		snprintf(buf, sizeof(buf), "%d", r->version);
		csv_field(f, buf, 0);
		snprintf(buf, sizeof(buf), "%d", r->baseline_version);
		csv_field(f, buf, 0);
		csv_field(f, mb_metric_kind_name(r->kind), 0);
		csv_field(f, mb_metric_direction_name(r->direction), 0);
		csv_field(f, mb_gate_status_name(r->status), 0);
		csv_field(f, cmp ? mb_stats_verdict_name(c->verdict) : "", 0);
		snprintf(buf, sizeof(buf), "%zu", r->n);
		csv_field(f, buf, 0);
		csv_num(f, cmp ? c->mean_base : NAN, 0);
		csv_num(f, cmp ? c->mean_cand : NAN, 0);
		csv_num(f, cmp ? c->diff.mean : NAN, 0);
		csv_num(f, cmp ? c->diff.se : NAN, 0);
		csv_num(f, cmp ? c->diff.level : NAN, 0);
		csv_num(f, cmp ? c->diff.lo : NAN, 0);
		csv_num(f, cmp ? c->diff.hi : NAN, 0);
		csv_num(f, cmp ? c->p_noninferior : NAN, 0);
		csv_field(f, cmp ? mb_stats_method_name(c->diff.method) : "", 0);
		csv_num(f, r->margin, 0);
		csv_num(f, r->mde_planned, 0);
		csv_num(f, r->mde_observed, 0);
		csv_num(f, r->has_threshold ? r->threshold : NAN, 0);
		csv_field(f, r->threshold_checked ? mb_stats_verdict_name(r->threshold_verdict) : "",
			  0);
		csv_field(f, r->note, 1);
	}
}

void mb_report_run_csv(FILE *f, const mb_run_result *r)
{
	fputs("run_id,suite,entry,metric,version,kind,direction,n,mean,se,ci_level,ci_low,"
	      "ci_high,method\n", f);
	for (size_t i = 0; i < r->n_entries; i++) {
		const mb_entry_result *e = &r->entries[i];
		for (size_t m = 0; m < e->n_metrics; m++) {
			const mb_aggregate *a = &e->aggregates[m];
			char buf[32];
			snprintf(buf, sizeof(buf), "%lld", (long long)r->id);
			csv_field(f, buf, 0);
			csv_field(f, r->prov.suite, 0);
			csv_field(f, e->name, 0);
			csv_field(f, e->metrics[m].name, 0);
			snprintf(buf, sizeof(buf), "%d", e->metrics[m].version);
			csv_field(f, buf, 0);
			csv_field(f, mb_metric_kind_name(e->metrics[m].kind), 0);
			csv_field(f, mb_metric_direction_name(e->metrics[m].direction), 0);
			snprintf(buf, sizeof(buf), "%zu", a->n);
			csv_field(f, buf, 0);
			csv_num(f, a->mean, 0);
			csv_num(f, a->se, 0);
			csv_num(f, a->level, 0);
			csv_num(f, a->lo, 0);
			csv_num(f, a->hi, 0);
			csv_field(f, mb_stats_method_name(a->method), 1);
		}
	}
}
