/* report.c: shared helpers of the report renderers, and atomic report files. */
#include "report_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/file.h>

void mb_fmt_num(char *buf, size_t cap, double v)
{
	if (isnan(v))
		snprintf(buf, cap, "-");
	else if (v == 0)
		snprintf(buf, cap, "0");
	else
		snprintf(buf, cap, "%.6g", v);
}

void mb_fmt_ci(char *buf, size_t cap, double lo, double hi)
{
	char a[32], b[32];
	mb_fmt_num(a, sizeof(a), lo);
	mb_fmt_num(b, sizeof(b), hi);
	snprintf(buf, cap, "[%s, %s]", a, b);
}

void mb_fmt_threshold(char *buf, size_t cap, const mb_gate_row *r)
{
	char t[32];

	if (!r->has_threshold) {
		snprintf(buf, cap, "-");
		return;
	}
	mb_fmt_num(t, sizeof(t), r->threshold);
	snprintf(buf, cap, "%s %s%s%s", r->direction == MB_LOWER_IS_BETTER ? "<=" : ">=", t,
		 r->threshold_checked ? " " : "",
		 r->threshold_checked
			 ? (r->threshold_verdict == MB_STATS_VERDICT_PASS ? "met" : "NOT MET")
			 : "");
}

void mb_row_text_fill(mb_row_text *t, const mb_gate_row *r)
{
	snprintf(t->metric, sizeof(t->metric), "%s@%d", r->metric, r->version);
	mb_fmt_num(t->base, sizeof(t->base), r->compared ? r->cmp.mean_base : NAN);
	mb_fmt_num(t->cand, sizeof(t->cand), r->compared ? r->cmp.mean_cand : NAN);
	mb_fmt_num(t->diff, sizeof(t->diff), r->compared ? r->cmp.diff.mean : NAN);
	if (r->compared)
		mb_fmt_ci(t->ci, sizeof(t->ci), r->cmp.diff.lo, r->cmp.diff.hi);
	else
		snprintf(t->ci, sizeof(t->ci), "-");
	mb_fmt_num(t->margin, sizeof(t->margin), r->margin);
	mb_fmt_num(t->mde, sizeof(t->mde), r->mde_planned);
	mb_fmt_threshold(t->threshold, sizeof(t->threshold), r);
}

void mb_stratum_text_fill(mb_stratum_text *t, const mb_gate_row *r, const mb_gate_stratum *st)
{
	const mb_stats_comparison *c = &st->cmp;
	char th[32], lo[32], hi[32];

	snprintf(t->stratum, sizeof(t->stratum), "%s%s", st->name,
		 st->ood ? " (OUT-OF-DISTRIBUTION)" : "");
	snprintf(t->n, sizeof(t->n), "%zu", st->n);
	mb_fmt_num(t->base, sizeof(t->base), st->compared ? c->mean_base : NAN);
	mb_fmt_num(t->cand, sizeof(t->cand), st->compared ? c->mean_cand : NAN);
	mb_fmt_num(t->diff, sizeof(t->diff), st->compared ? c->diff.mean : NAN);
	if (st->compared)
		mb_fmt_ci(t->ci, sizeof(t->ci), c->diff.lo, c->diff.hi);
	else
		snprintf(t->ci, sizeof(t->ci), "-");
	if (st->has_threshold) {
		mb_fmt_num(th, sizeof(th), st->threshold);
		mb_fmt_num(lo, sizeof(lo), st->threshold_checked ? st->cand.lo : NAN);
		mb_fmt_num(hi, sizeof(hi), st->threshold_checked ? st->cand.hi : NAN);
		snprintf(t->threshold, sizeof(t->threshold), "%s %s %s [%s, %s]",
			 r->direction == MB_LOWER_IS_BETTER ? "<=" : ">=", th,
			 !st->threshold_checked ? "not checked"
			 : st->threshold_verdict == MB_STATS_VERDICT_PASS ? "met" : "NOT MET",
			 lo, hi);
	} else {
		snprintf(t->threshold, sizeof(t->threshold), "-");
	}
	snprintf(t->status, sizeof(t->status), "%s",
		 st->compared || (st->has_threshold && r->compared)
			 ? mb_gate_status_name(st->status) : "-");
	snprintf(t->role, sizeof(t->role), "%s",
		 !st->has_threshold ? (st->ood ? "reported, not pooled" : "reported")
		 : r->combine == MB_SPEC_COMBINE_ALL ? "gates (combine all)"
						     : "reported (combine pooled)");
}

int mb_stratum_failed(const mb_gate_row *r, const mb_gate_stratum *st)
{
	return r->compared && st->has_threshold &&
	       (st->status == MB_GATE_REGRESSED || st->status == MB_GATE_THRESHOLD_FAILED ||
		st->status == MB_GATE_INCONCLUSIVE);
}

int mb_row_failed(const mb_gate_row *r)
{
	return r->status == MB_GATE_REGRESSED || r->status == MB_GATE_THRESHOLD_FAILED;
}

void mb_row_explain(char *buf, size_t cap, const mb_gate_row *r, double level)
{
	char d[32], lo[32], hi[32], m[32], base[32], cand[32];
	const mb_stats_comparison *c = &r->cmp;

	if (!r->compared) {
		snprintf(buf, cap, "%s: %s", mb_gate_status_name(r->status), r->note);
		return;
	}
	mb_fmt_num(d, sizeof(d), c->diff.mean);
	mb_fmt_num(lo, sizeof(lo), c->diff.lo);
	mb_fmt_num(hi, sizeof(hi), c->diff.hi);
	mb_fmt_num(m, sizeof(m), r->margin);
	mb_fmt_num(base, sizeof(base), c->mean_base);
	mb_fmt_num(cand, sizeof(cand), c->mean_cand);
	if (r->status == MB_GATE_THRESHOLD_FAILED && r->threshold_checked &&
	    r->threshold_verdict != MB_STATS_VERDICT_PASS) {
		char t[32], clo[32], chi[32];
		mb_fmt_num(t, sizeof(t), r->threshold);
		mb_fmt_num(clo, sizeof(clo), r->cand.lo);
		mb_fmt_num(chi, sizeof(chi), r->cand.hi);
		snprintf(buf, cap, "THRESHOLD-FAILED: candidate mean %s, %g%% CI [%s, %s], must be "
			 "%s %s at one-sided alpha", cand, level * 100, clo, chi,
			 r->direction == MB_LOWER_IS_BETTER ? "<=" : ">=", t);
		return;
	}
	snprintf(buf, cap, "%s: %s %s -> %s (diff %s, %g%% CI [%s, %s], %s is better, margin %s, "
		 "n %zu, %s)%s%s", mb_gate_status_name(r->status), r->metric, base, cand, d,
		 level * 100, lo, hi, mb_metric_direction_name(r->direction), m, r->n,
		 mb_stats_method_name(c->diff.method), r->note[0] ? "; " : "", r->note);
}

/* --- artifacts in words ------------------------------------------------------------ */

/* Appends formatted text at *len; past cap the text ends in ", ..." once. */
static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
	va_list ap;
	int w;

	if (*len >= cap)
		return;
	va_start(ap, fmt);
	w = vsnprintf(buf + *len, cap - *len, fmt, ap);
	va_end(ap);
	if (w < 0)
		return;
	if ((size_t)w >= cap - *len) {
		/* did not fit: end in ", ..." where there is room for it */
		size_t at = cap > 6 ? cap - 6 : 0;
		snprintf(buf + at, cap - at, ", ...");
		*len = cap;
		return;
	}
	*len += (size_t)w;
}

void mb_artifact_head(char *buf, size_t cap, const mb_artifact_diff *d)
{
	char j[32], b[32];
	size_t len = 0;

	buf[0] = '\0';
	append(buf, cap, &len, "%s %s", d->kind, mb_artifact_change_name(d->change));
	if (d->change == MB_ARTIFACT_NEW) {
		append(buf, cap, &len, ": the baseline has none");
		return;
	}
	if (d->change == MB_ARTIFACT_GONE) {
		append(buf, cap, &len, ": the candidate has none");
		return;
	}
	if (d->change == MB_ARTIFACT_CHANGED && d->circuits) {
		mb_fmt_num(j, sizeof(j), d->node_jaccard);
		mb_fmt_num(b, sizeof(b), d->noise_bound);
		append(buf, cap, &len, ", %s: node Jaccard %s", mb_artifact_noise_name(d->noise), j);
		if (d->noise == MB_ARTIFACT_NOISE_WITHIN)
			append(buf, cap, &len, " >= %s (the lower stability bound)", b);
		else if (d->noise == MB_ARTIFACT_NOISE_BEYOND)
			append(buf, cap, &len, " < %s (the lower stability bound)", b);
	} else if (d->change == MB_ARTIFACT_CHANGED) {
		append(buf, cap, &len, ": first difference at %s", d->first_diff);
	} else if (d->change == MB_ARTIFACT_MOVED) {
		append(buf, cap, &len, ": the same nodes and edges, numbers differ (first at %s)",
		       d->first_diff);
	}
	if (d->circuits)
		append(buf, cap, &len, "; baseline %zu nodes %zu edges, candidate %zu nodes %zu "
		       "edges", d->base_nodes, d->base_edges, d->cand_nodes, d->cand_edges);
}

static void stability_part(char *buf, size_t cap, size_t *len, const char *who,
			   const mb_artifact_stability *s)
{
	char m[32], lo[32], hi[32];

	if (!s->present)
		return;
	mb_fmt_num(m, sizeof(m), s->mean);
	mb_fmt_num(lo, sizeof(lo), s->lo);
	mb_fmt_num(hi, sizeof(hi), s->hi);
	append(buf, cap, len, "%s%s Jaccard %s [%s, %s] over %lld resamples", *len ? "; " : "",
	       who, m, lo, hi, (long long)s->resamples);
}

void mb_artifact_stability_text(char *buf, size_t cap, const mb_artifact_diff *d)
{
	size_t len = 0;

	buf[0] = '\0';
	stability_part(buf, cap, &len, "baseline", &d->base_stability);
	stability_part(buf, cap, &len, "candidate", &d->cand_stability);
}

static void nodes_text(char *buf, size_t cap, const mb_artifact_node_change *v, size_t n)
{
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		char e[32], inc[32];
		mb_fmt_num(e, sizeof(e), v[i].effect);
		mb_fmt_num(inc, sizeof(inc), v[i].inclusion);
		append(buf, cap, &len, "%s%s (effect %s, inclusion %s)", i ? ", " : "", v[i].id, e,
		       isnan(v[i].inclusion) ? "not reported" : inc);
	}
}

static void edges_text(char *buf, size_t cap, const mb_artifact_edge_change *v, size_t n)
{
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		char e[32];
		mb_fmt_num(e, sizeof(e), v[i].effect);
		append(buf, cap, &len, "%s%s -> %s via %s (effect %s)", i ? ", " : "", v[i].from,
		       v[i].to, v[i].via, e);
	}
}

void mb_artifact_lists_fill(mb_artifact_lists *out, const mb_artifact_diff *d)
{
	static const char *const labels[4] = {"nodes removed", "nodes added", "edges removed",
					      "edges added"};

	for (int k = 0; k < 4; k++)
		out->label[k] = labels[k];
	nodes_text(out->text[0], sizeof(out->text[0]), d->nodes_removed, d->n_nodes_removed);
	nodes_text(out->text[1], sizeof(out->text[1]), d->nodes_added, d->n_nodes_added);
	edges_text(out->text[2], sizeof(out->text[2]), d->edges_removed, d->n_edges_removed);
	edges_text(out->text[3], sizeof(out->text[3]), d->edges_added, d->n_edges_added);
}

/* --- report files ----------------------------------------------------------------- */

int mb_report_write(const char *path, void (*render)(FILE *f, const void *arg), const void *arg,
		    mb_error *err)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int error;

	if (!f)
		return mb_error_oom(err, path, 0);
	render(f, arg);
	if (fclose(f) != 0) {
		free(buf);
		return mb_error_oom(err, path, len);
	}
	error = mb_file_write_all(path, buf, len, err);
	free(buf);
	return error;
}

int mb_report_write_json(const char *path, const json_t *doc, mb_error *err)
{
	char *text = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
	size_t len;
	int error;

	if (!text)
		return mb_error_oom(err, path, 0);
	len = strlen(text);
	{
		char *nl = realloc(text, len + 2);
		if (!nl) {
			free(text);
			return mb_error_oom(err, path, len + 2);
		}
		text = nl;
		text[len++] = '\n';
		text[len] = '\0';
	}
	error = mb_file_write_all(path, text, len, err);
	free(text);
	return error;
}
