/*
 * gate.c: a candidate against a baseline under the registered spec (gate.h).
 *
 * Legend: N paired items of an entry, M metrics of its task.
 */
#include <mechbench/gate.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/power.h>
#include <mechbench/stats.h>

const char *mb_gate_status_name(mb_gate_status s)
{
	switch (s) {
	case MB_GATE_IDENTICAL: return "IDENTICAL";
	case MB_GATE_IMPROVED: return "IMPROVED";
	case MB_GATE_PASS: return "PASS";
	case MB_GATE_INCONCLUSIVE: return "INCONCLUSIVE";
	case MB_GATE_REGRESSED: return "REGRESSED";
	case MB_GATE_THRESHOLD_FAILED: return "THRESHOLD-FAILED";
	case MB_GATE_THRESHOLD_CHANGED: return "THRESHOLD-CHANGED";
	case MB_GATE_METRIC_CHANGED: return "METRIC-CHANGED";
	}
	return "UNKNOWN";
}

int mb_gate_init(mb_gate_result *g, const mb_spec *registered, const char *spec_path,
		 const char *ref, const char *commit, const char *spec_blob, mb_error *err)
{
	size_t n = 0;

	memset(g, 0, sizeof(*g));
	snprintf(g->suite, sizeof(g->suite), "%s", registered->suite);
	snprintf(g->spec_path, sizeof(g->spec_path), "%s", spec_path);
	snprintf(g->ref, sizeof(g->ref), "%s", ref);
	snprintf(g->commit, sizeof(g->commit), "%s", commit);
	snprintf(g->spec_blob, sizeof(g->spec_blob), "%s", spec_blob);
	g->alpha = registered->alpha;
	g->power = registered->power;
	g->level = 1.0 - 2.0 * registered->alpha;
	for (size_t i = 0; i < registered->n_entries; i++)
		n += registered->entries[i].n_metrics;
	g->rows = calloc(n ? n : 1, sizeof(*g->rows));
	if (!g->rows)
		return mb_error_oom(err, "gate rows", n * sizeof(*g->rows));
	for (size_t i = 0; i < registered->n_entries; i++) {
		const mb_spec_entry *e = &registered->entries[i];
		for (size_t m = 0; m < e->n_metrics; m++) {
			const mb_spec_metric *sm = &e->metrics[m];
			mb_gate_row *r = &g->rows[g->n_rows++];
			int idx = mb_task_metric_index(e->task, sm->name);
			r->entry = strdup(e->name);
			r->metric = strdup(sm->name);
			if (!r->entry || !r->metric)
				return mb_error_oom(err, "gate row", 0);
			r->version = sm->version;
			r->build_version = idx >= 0 ? e->task->metrics[idx].version : 0;
			r->kind = sm->kind;
			r->direction = sm->direction;
			r->margin = sm->margin;
			r->has_threshold = sm->has_threshold;
			r->threshold = sm->threshold;
			r->mde_planned = NAN;
			r->mde_observed = NAN;
			r->power_target = NAN;
		}
	}
	return 0;
}

void mb_gate_dispose(mb_gate_result *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->n_rows; i++) {
		free(g->rows[i].entry);
		free(g->rows[i].metric);
	}
	free(g->rows);
	for (size_t i = 0; i < g->n_notes; i++)
		free(g->notes[i]);
	free(g->notes);
	mb_spec_deviations_free(g->deviations, g->n_deviations);
	memset(g, 0, sizeof(*g));
}

void mb_gate_set_deviations(mb_gate_result *g, mb_spec_deviation *d, size_t n)
{
	mb_spec_deviations_free(g->deviations, g->n_deviations);
	g->deviations = d;
	g->n_deviations = n;
	for (size_t r = 0; r < g->n_rows; r++)
		for (size_t i = 0; i < n; i++)
			if (mb_spec_deviation_touches(&d[i], g->rows[r].entry, g->rows[r].metric))
				g->rows[r].spec_changed = 1;
}

int mb_gate_note(mb_gate_result *g, mb_error *err, const char *fmt, ...)
{
	char line[1024];
	char **nn;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	nn = realloc(g->notes, (g->n_notes + 1) * sizeof(*nn));
	if (!nn)
		return mb_error_oom(err, "gate notes", (g->n_notes + 1) * sizeof(*nn));
	g->notes = nn;
	g->notes[g->n_notes] = strdup(line);
	if (!g->notes[g->n_notes])
		return mb_error_oom(err, "gate note", strlen(line));
	g->n_notes++;
	return 0;
}

static mb_gate_row *find_row(mb_gate_result *g, const char *entry, const char *metric)
{
	for (size_t r = 0; r < g->n_rows; r++)
		if (strcmp(g->rows[r].entry, entry) == 0 && strcmp(g->rows[r].metric, metric) == 0)
			return &g->rows[r];
	return NULL;
}

/* Rows that will be compared (not METRIC-CHANGED): the m of power 1 - beta/m. */
static size_t gated_rows(const mb_gate_result *g)
{
	size_t m = 0;
	for (size_t r = 0; r < g->n_rows; r++)
		m += !g->rows[r].metric_changed;
	return m;
}

/* --- item sets ---------------------------------------------------------------------- */

typedef struct key_ix {
	const char *key;
	size_t idx;
} key_ix;

static int cmp_key_ix(const void *a, const void *b)
{
	return strcmp(((const key_ix *)a)->key, ((const key_ix *)b)->key);
}

/* Sorted (key, index) pairs of a result's items. */
static key_ix *sorted_keys(const mb_entry_result *r, mb_error *err)
{
	key_ix *k = malloc((r->n_items ? r->n_items : 1) * sizeof(*k));
	if (!k) {
		mb_error_oom(err, "item keys", r->n_items * sizeof(*k));
		return NULL;
	}
	for (size_t i = 0; i < r->n_items; i++)
		k[i] = (key_ix){r->items[i].key, i};
	qsort(k, r->n_items, sizeof(*k), cmp_key_ix);
	return k;
}

static long find_key(const key_ix *k, size_t n, const char *key)
{
	key_ix probe = {key, 0};
	const key_ix *hit = bsearch(&probe, k, n, sizeof(*k), cmp_key_ix);
	return hit ? (long)hit->idx : -1;
}

static int check_item_sets(const mb_spec_entry *e, const mb_entry_result *base,
			   const mb_dataset *d, mb_error *err)
{
	key_ix *bk = sorted_keys(base, err);
	size_t missing = 0, extra = 0;
	const char *first_missing = NULL, *first_extra = NULL;

	if (!bk)
		return MB_ENOMEM;
	for (size_t i = 0; i < d->items.n; i++)
		if (find_key(bk, base->n_items, d->items.items[i].key) < 0) {
			if (!extra++)
				first_extra = d->items.items[i].key;
		}
	for (size_t i = 0; i < base->n_items; i++)
		if (mb_dataset_find(d, base->items[i].key) < 0) {
			if (!missing++)
				first_missing = base->items[i].key;
		}
	free(bk);
	if (!missing && !extra)
		return 0;
	return mb_error_set(err, MB_EMISMATCH,
			    "entry %s: item sets differ: %zu baseline item(s) are not in %s%s%.16s%s"
			    ", %zu dataset item(s) are not in the baseline%s%.16s%s; re-baseline "
			    "on the registered dataset", e->name, missing, d->name,
			    missing ? " (first " : "", missing ? first_missing : "",
			    missing ? "...)" : "", extra, extra ? " (first " : "",
			    extra ? first_extra : "", extra ? "...)" : "");
}

/* --- planning ------------------------------------------------------------------------- */

static int power_opts(mb_stats_power_opts *o, const mb_gate_result *g, double var_d,
		      double deff)
{
	size_t m = gated_rows(g);
	o->alpha = g->alpha;
	o->power = 1.0 - (1.0 - g->power) / (double)(m ? m : 1);
	o->sides = 1;
	o->var_d = var_d;
	o->deff = deff > 0 && isfinite(deff) ? deff : 1.0;
	return 0;
}

double mb_gate_planning_var(const mb_entry_result *base, size_t m, double margin)
{
	double *col = malloc(base->n_items * sizeof(*col)); /* (N) */
	double var;

	MB_ASSERT(base->n_items >= 2);
	if (!col)
		return NAN;
	for (size_t i = 0; i < base->n_items; i++)
		col[i] = base->values[i * base->n_metrics + m];
	var = mb_stats_var(col, base->n_items);
	free(col);
	/* A binary metric cannot move by delta without at least a delta fraction
	 * of discordant items, and var_d ~ p_disc (Miller 2024, power.h): never
	 * plan below that. */
	if (base->metrics[m].kind == MB_METRIC_BINARY && var < margin)
		var = margin;
	return var;
}

int mb_gate_plan_entry(mb_gate_result *g, const mb_spec *spec, const mb_spec_entry *e,
		       const mb_entry_result *base, const mb_dataset *d, mb_error *err)
{
	int error = 0;

	if (strcmp(base->dataset_sha256, e->dataset_sha256) != 0 &&
	    (error = mb_gate_note(g, err, "%s: the baseline was run on dataset sha256 %.12s..., "
				  "the spec registers %.12s...", e->name, base->dataset_sha256,
				  e->dataset_sha256)) < 0)
		return error;
	if (strcmp(base->task, e->task->name) != 0 || base->task_version != e->task->version) {
		if ((error = mb_gate_note(g, err, "%s: the baseline ran %s@%d, this build runs "
					  "%s@%d", e->name, base->task, base->task_version,
					  e->task->name, e->task->version)) < 0)
			return error;
	}
	if ((error = check_item_sets(e, base, d, err)) < 0)
		return error;
	/* Versions first: METRIC-CHANGED rows do not count towards m. */
	for (size_t m = 0; m < e->n_metrics; m++) {
		mb_gate_row *r = find_row(g, e->name, e->metrics[m].name);
		int bm = mb_entry_result_metric(base, e->metrics[m].name);
		MB_ASSERT(r);
		r->baseline_version = bm >= 0 ? base->metrics[bm].version : 0;
		if (r->build_version != r->version) {
			r->metric_changed = 1;
			snprintf(r->note, sizeof(r->note), "registered @%d, this build defines @%d",
				 r->version, r->build_version);
		} else if (r->baseline_version != r->version) {
			r->metric_changed = 1;
			if (bm < 0)
				snprintf(r->note, sizeof(r->note), "the baseline has no %s",
					 r->metric);
			else
				snprintf(r->note, sizeof(r->note),
					 "registered @%d, the baseline holds @%d", r->version,
					 r->baseline_version);
		}
	}
	for (size_t m = 0; m < e->n_metrics && !error; m++) {
		mb_gate_row *r = find_row(g, e->name, e->metrics[m].name);
		int bm = mb_entry_result_metric(base, e->metrics[m].name);
		mb_stats_estimate est;
		mb_stats_power_opts po;
		double var;
		char stream[512];

		r->n = base->n_items;
		if (r->metric_changed)
			continue;
		if (base->n_items < 2) {
			error = mb_error_set(err, MB_EINVALID, "%s: the baseline has %zu item(s); a "
					     "paired comparison needs at least 2", e->name,
					     base->n_items);
			break;
		}
		var = mb_gate_planning_var(base, (size_t)bm, r->margin);
		if (isnan(var)) {
			error = mb_error_oom(err, "baseline column", base->n_items * sizeof(double));
			break;
		}
		snprintf(stream, sizeof(stream), "plan/%s/%s/%s@%d", spec->suite, e->name,
			 r->metric, r->version);
		if ((error = mb_runner_estimate(&est, spec, e, base, (size_t)bm, 0.95, stream,
						err)) < 0)
			break;
		power_opts(&po, g, var, est.deff);
		r->power_target = po.power;
		if (!(var > 0)) {
			r->mde_planned = 0;
			continue;
		}
		error = mb_stats_power_mde(&r->mde_planned, &po, (double)base->n_items, err);
	}
	return error;
}

int mb_gate_check_power(const mb_gate_result *g, mb_error *err)
{
	char msg[MB_ERROR_MSG_MAX];
	size_t len = 0, bad = 0;

	msg[0] = '\0';
	for (size_t r = 0; r < g->n_rows; r++) {
		const mb_gate_row *row = &g->rows[r];
		if (row->metric_changed || !(row->mde_planned > row->margin))
			continue;
		bad++;
		if (len < sizeof(msg)) {
			/* n needed = n * (MDE / margin)^2, from MDE ~ 1/sqrt(n). */
			double need = (double)row->n * (row->mde_planned / row->margin) *
				      (row->mde_planned / row->margin);
			len += (size_t)snprintf(msg + len, sizeof(msg) - len,
						"%s%s/%s@%d: MDE %.4g at n=%zu exceeds margin %.4g "
						"(needs n >= %.0f)", bad > 1 ? "; " : "", row->entry,
						row->metric, row->version, row->mde_planned, row->n,
						row->margin, ceil(need));
		}
	}
	if (!bad)
		return 0;
	return mb_error_set(err, MB_EINVALID,
			    "gate refused before running: it could not see the regressions it "
			    "guards against (power %.3g, one-sided alpha %.3g): %s", g->power,
			    g->alpha, msg);
}

/* --- comparing ------------------------------------------------------------------------ */

int mb_gate_compare_entry(mb_gate_result *g, const mb_spec *spec, const mb_spec_entry *e,
			  const mb_entry_result *base, const mb_entry_result *cand, mb_error *err)
{
	size_t n = cand->n_items;
	double *cv = malloc((n ? n : 1) * sizeof(*cv)); /* (N) candidate, dataset order */
	double *bv = malloc((n ? n : 1) * sizeof(*bv)); /* (N) baseline, paired */
	long *pair = malloc((n ? n : 1) * sizeof(*pair)); /* (N) baseline index of item i */
	uint32_t *groups = NULL;
	size_t n_groups = 0;
	key_ix *bk = NULL;
	int error = 0;

	if (!cv || !bv || !pair) {
		error = mb_error_oom(err, "paired values", n * sizeof(double));
		goto cleanup;
	}
	if (n != base->n_items) {
		error = mb_error_set(err, MB_EMISMATCH, "entry %s: %zu candidate items, %zu in the "
				     "baseline", e->name, n, base->n_items);
		goto cleanup;
	}
	if (!(bk = sorted_keys(base, err))) {
		error = MB_ENOMEM;
		goto cleanup;
	}
	for (size_t i = 0; i < n; i++) {
		pair[i] = find_key(bk, base->n_items, cand->items[i].key);
		if (pair[i] < 0) {
			error = mb_error_set(err, MB_EMISMATCH, "entry %s: item %s is not in the "
					     "baseline", e->name, cand->items[i].key);
			goto cleanup;
		}
	}
	if (e->n_strata)
		error = mb_runner_strata_index(&groups, e, cand, err);
	else if (e->clusters)
		error = mb_runner_cluster_index(&groups, &n_groups, cand, err);
	if (error < 0)
		goto cleanup;
	for (size_t m = 0; m < e->n_metrics; m++) {
		mb_gate_row *r = find_row(g, e->name, e->metrics[m].name);
		int cm = mb_entry_result_metric(cand, r->metric);
		int bm = mb_entry_result_metric(base, r->metric);
		mb_stats_compare_opts co;
		char stream[512];

		r->n = n;
		if (r->metric_changed)
			continue;
		MB_ASSERT(cm >= 0 && bm >= 0);
		for (size_t i = 0; i < n; i++) {
			cv[i] = cand->values[i * cand->n_metrics + (size_t)cm];
			bv[i] = base->values[(size_t)pair[i] * base->n_metrics + (size_t)bm];
		}
		snprintf(stream, sizeof(stream), "gate/%s/%s/%s@%d", spec->suite, e->name,
			 r->metric, r->version);
		memset(&co, 0, sizeof(co));
		co.kind = (mb_stats_kind)r->kind;
		co.direction = (mb_stats_direction)r->direction;
		co.alpha = g->alpha;
		co.delta = r->margin;
		if (e->n_strata) {
			co.stratum = groups;
			co.stratum_weights = e->weights;
			co.n_strata = e->n_strata;
		} else if (e->clusters) {
			co.cluster = groups;
			co.n_clusters = n_groups;
		}
		co.seed = spec->seed;
		co.stream = stream;
		co.boot_B = (size_t)spec->bootstrap;
		co.boot_ci = MB_STATS_BOOT_CI_BCA;
		if ((error = mb_stats_compare(&r->cmp, cv, bv, n, &co, err)) < 0) {
			mb_error_prefix(err, "%s/%s", e->name, r->metric);
			goto cleanup;
		}
		r->compared = 1;
		if (r->cmp.verdict == MB_STATS_VERDICT_IDENTICAL) {
			r->mde_observed = 0;
		} else if (r->cmp.diff.se_naive > 0) {
			mb_stats_power_opts po;
			power_opts(&po, g, r->cmp.diff.se_naive * r->cmp.diff.se_naive * (double)n,
				   r->cmp.diff.deff);
			if ((error = mb_stats_power_mde(&r->mde_observed, &po, (double)n, err)) < 0)
				goto cleanup;
		}
		if (r->has_threshold) {
			snprintf(stream, sizeof(stream), "threshold/%s/%s/%s@%d", spec->suite,
				 e->name, r->metric, r->version);
			if ((error = mb_runner_estimate(&r->cand, spec, e, cand, (size_t)cm, g->level,
							stream, err)) < 0)
				goto cleanup;
			r->threshold_verdict = mb_stats_threshold_verdict(
				r->cand.lo, r->cand.hi, r->threshold,
				(mb_stats_direction)r->direction);
			r->threshold_checked = 1;
		}
	}
cleanup:
	free(cv);
	free(bv);
	free(pair);
	free(groups);
	free(bk);
	return error;
}

/* --- outcome -------------------------------------------------------------------------- */

/* Severity order for the outcome: the worst status names the gate. */
static int severity(mb_gate_status s)
{
	switch (s) {
	case MB_GATE_IDENTICAL: return 0;
	case MB_GATE_IMPROVED: return 1;
	case MB_GATE_PASS: return 2;
	case MB_GATE_INCONCLUSIVE: return 3;
	case MB_GATE_METRIC_CHANGED: return 4;
	case MB_GATE_THRESHOLD_CHANGED: return 5;
	case MB_GATE_THRESHOLD_FAILED: return 6;
	case MB_GATE_REGRESSED: return 7;
	}
	return 0;
}

static int policy_exit(mb_gate_policy p)
{
	return p == MB_GATE_POLICY_PASS ? 0 : p == MB_GATE_POLICY_FAIL ? 3 : 4;
}

static int worse_exit(int a, int b)
{
	/* 3 beats 4 beats 0. */
	if (a == 3 || b == 3)
		return 3;
	if (a == 4 || b == 4)
		return 4;
	return 0;
}

void mb_gate_finish(mb_gate_result *g, mb_gate_policy on_inconclusive,
		    mb_gate_policy on_changed)
{
	int code = 0;

	g->outcome = MB_GATE_IDENTICAL;
	for (size_t i = 0; i < g->n_rows; i++) {
		mb_gate_row *r = &g->rows[i];
		mb_gate_status s;

		if (r->metric_changed) {
			s = MB_GATE_METRIC_CHANGED;
		} else if (!r->compared) {
			s = MB_GATE_INCONCLUSIVE; /* not reached by the CLI: every row is compared */
		} else {
			switch (r->cmp.verdict) {
			case MB_STATS_VERDICT_IDENTICAL: s = MB_GATE_IDENTICAL; break;
			case MB_STATS_VERDICT_IMPROVED: s = MB_GATE_IMPROVED; break;
			case MB_STATS_VERDICT_PASS: s = MB_GATE_PASS; break;
			case MB_STATS_VERDICT_REGRESSED: s = MB_GATE_REGRESSED; break;
			default: s = MB_GATE_INCONCLUSIVE; break;
			}
			if (s != MB_GATE_REGRESSED && r->threshold_checked &&
			    r->threshold_verdict != MB_STATS_VERDICT_PASS)
				s = MB_GATE_THRESHOLD_FAILED;
		}
		if (r->spec_changed && s != MB_GATE_REGRESSED && s != MB_GATE_THRESHOLD_FAILED)
			s = MB_GATE_THRESHOLD_CHANGED;
		r->status = s;
		if (severity(s) > severity(g->outcome))
			g->outcome = s;
		switch (s) {
		case MB_GATE_REGRESSED:
		case MB_GATE_THRESHOLD_FAILED: code = worse_exit(code, 3); break;
		case MB_GATE_INCONCLUSIVE: code = worse_exit(code, policy_exit(on_inconclusive)); break;
		case MB_GATE_THRESHOLD_CHANGED:
		case MB_GATE_METRIC_CHANGED: code = worse_exit(code, policy_exit(on_changed)); break;
		default: break;
		}
	}
	/* A deviation touching no row (an entry added to the working spec) still
	 * means the spec in the tree is not the registered one. */
	if (g->n_deviations) {
		code = worse_exit(code, policy_exit(on_changed));
		if (severity(MB_GATE_THRESHOLD_CHANGED) > severity(g->outcome))
			g->outcome = MB_GATE_THRESHOLD_CHANGED;
	}
	g->exit_code = code;
}
