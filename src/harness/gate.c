/*
 * gate.c: a candidate against a baseline under the registered spec (gate.h).
 *
 * Legend: N paired items of an entry, M metrics of its task.
 */
#include <mechbench/gate.h>

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/item_index.h>
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
			r->combine = sm->combine;
			r->power_stratum = -1;
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
		for (size_t k = 0; k < g->rows[i].n_strata; k++)
			free(g->rows[i].strata[k].name);
		free(g->rows[i].strata);
	}
	free(g->rows);
	for (size_t i = 0; i < g->n_notes; i++)
		free(g->notes[i]);
	free(g->notes);
	for (size_t i = 0; i < g->n_artifacts; i++)
		mb_artifact_diff_dispose(&g->artifacts[i]);
	free(g->artifacts);
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

static int check_item_sets(const mb_spec_entry *e, const mb_entry_result *base,
			   const mb_dataset *d, mb_error *err)
{
	mb_item_index bk;
	size_t missing = 0, extra = 0;
	const char *first_missing = NULL, *first_extra = NULL;
	int error;

	if ((error = mb_item_index_init(&bk, base, err)) < 0)
		return error;
	for (size_t i = 0; i < d->items.n; i++)
		if (mb_item_index_find(&bk, d->items.items[i].key) < 0) {
			if (!extra++)
				first_extra = d->items.items[i].key;
		}
	for (size_t i = 0; i < base->n_items; i++)
		if (mb_dataset_find(d, base->items[i].key) < 0) {
			if (!missing++)
				first_missing = base->items[i].key;
		}
	mb_item_index_dispose(&bk);
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

/* The planning variance over the items idx[0..n) (all items when idx is NULL). */
static double planning_var(const mb_entry_result *base, size_t m, double margin,
			   const size_t *idx, size_t n)
{
	double *col = malloc((n ? n : 1) * sizeof(*col)); /* (n) */
	double var;

	MB_ASSERT(n >= 2);
	if (!col)
		return NAN;
	for (size_t j = 0; j < n; j++)
		col[j] = base->values[(idx ? idx[j] : j) * base->n_metrics + m];
	var = mb_stats_var(col, n);
	free(col);
	/* A binary metric cannot move by delta without at least a delta fraction
	 * of discordant items, and var_d ~ p_disc (Miller 2024, power.h): never
	 * plan below that. */
	if (base->metrics[m].kind == MB_METRIC_BINARY && var < margin)
		var = margin;
	return var;
}

double mb_gate_planning_var(const mb_entry_result *base, size_t m, double margin)
{
	return planning_var(base, m, margin, NULL, base->n_items);
}

/* A borrowed view of base with its strata (and their OOD marks) from d. */
static int strata_view(mb_entry_result *view, const mb_entry_result *base, const mb_dataset *d,
		       mb_error *err)
{
	*view = *base;
	view->strata = NULL;
	view->n_strata = 0;
	return mb_runner_strata_init(view, d, err);
}

static void strata_view_free(mb_entry_result *view)
{
	for (size_t k = 0; k < view->n_strata; k++) {
		free(view->strata[k].name);
		free(view->strata[k].aggregates);
	}
	free(view->strata);
	view->strata = NULL;
	view->n_strata = 0;
}

/* The row's strata, from the dataset's strata with the spec's thresholds. */
static int row_strata(mb_gate_row *r, const mb_spec_metric *sm, const mb_entry_result *view,
		      mb_error *err)
{
	if (r->strata)
		return 0;
	r->strata = calloc(view->n_strata ? view->n_strata : 1, sizeof(*r->strata));
	if (!r->strata)
		return mb_error_oom(err, "gate strata", view->n_strata);
	r->n_ood = 0;
	for (size_t k = 0; k < view->n_strata; k++) {
		mb_gate_stratum *st = &r->strata[k];
		if (!(st->name = strdup(view->strata[k].name)))
			return mb_error_oom(err, "stratum name", 0);
		r->n_strata = k + 1;
		st->ood = view->strata[k].ood;
		st->n = view->strata[k].n;
		st->mde_planned = NAN;
		if (st->ood)
			r->n_ood += st->n;
		for (size_t j = 0; j < sm->n_strata; j++)
			if (strcmp(sm->strata[j].name, st->name) == 0) {
				st->has_threshold = 1;
				st->threshold = sm->strata[j].threshold;
			}
	}
	return 0;
}

int mb_gate_plan_entry(mb_gate_result *g, const mb_spec *spec, const mb_spec_entry *e,
		       const mb_entry_result *base, const mb_dataset *d, mb_error *err)
{
	mb_entry_result view;
	size_t *pool = NULL, n_pool = 0;
	int error = 0;

	memset(&view, 0, sizeof(view));

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
	if ((error = strata_view(&view, base, d, err)) < 0)
		goto cleanup;
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
	if ((error = mb_runner_select(&pool, &n_pool, &view, NULL, err)) < 0)
		goto cleanup;
	for (size_t m = 0; m < e->n_metrics && !error; m++) {
		mb_gate_row *r = find_row(g, e->name, e->metrics[m].name);
		int bm = mb_entry_result_metric(base, e->metrics[m].name);
		mb_stats_estimate est;
		mb_stats_power_opts po;
		double var;
		char stream[512];

		if ((error = row_strata(r, &e->metrics[m], &view, err)) < 0)
			break;
		r->n = n_pool;
		if (r->metric_changed)
			continue;
		if (n_pool < 2) {
			error = mb_error_set(err, MB_EINVALID, "%s: the baseline has %zu "
					     "in-distribution item(s); a paired comparison needs "
					     "at least 2", e->name, n_pool);
			break;
		}
		var = planning_var(base, (size_t)bm, r->margin, pool, n_pool);
		if (isnan(var)) {
			error = mb_error_oom(err, "baseline column", base->n_items * sizeof(double));
			break;
		}
		snprintf(stream, sizeof(stream), "plan/%s/%s/%s@%d", spec->suite, e->name,
			 r->metric, r->version);
		if ((error = mb_runner_estimate(&est, spec, e, &view, (size_t)bm, 0.95, stream,
						err)) < 0)
			break;
		power_opts(&po, g, var, est.deff);
		r->power_target = po.power;
		if (!(var > 0))
			r->mde_planned = 0;
		else if ((error = mb_stats_power_mde(&r->mde_planned, &po, (double)n_pool,
						     err)) < 0)
			break;
		/* Per-stratum power: the smallest stratum that carries a registered
		 * threshold, with its own variance (HARNESS.md, "Strata"); among
		 * strata of that size, the one with the largest variance. */
		{
			double best_var = -1;
			size_t min_n = SIZE_MAX;
			for (size_t k = 0; k < r->n_strata; k++)
				if (r->strata[k].has_threshold && r->strata[k].n >= 2 &&
				    r->strata[k].n < min_n)
					min_n = r->strata[k].n;
			for (size_t k = 0; k < r->n_strata && !error; k++) {
				mb_gate_stratum *st = &r->strata[k];
				size_t *idx = NULL, ns = 0;
				if (!st->has_threshold || st->n != min_n)
					continue;
				if ((error = mb_runner_select(&idx, &ns, &view, st->name, err)) < 0)
					break;
				var = planning_var(base, (size_t)bm, r->margin, idx, ns);
				free(idx);
				if (!(var > best_var))
					continue;
				best_var = var;
				r->power_stratum = (long)k;
				power_opts(&po, g, var, 1.0);
				if (!(var > 0))
					st->mde_planned = 0;
				else
					error = mb_stats_power_mde(&st->mde_planned, &po, (double)ns,
								   err);
			}
			/* only the chosen stratum keeps its MDE */
			for (size_t k = 0; k < r->n_strata; k++)
				if ((long)k != r->power_stratum)
					r->strata[k].mde_planned = NAN;
		}
	}
cleanup:
	free(pool);
	strata_view_free(&view);
	return error;
}

int mb_gate_check_power(const mb_gate_result *g, mb_error *err)
{
	char msg[MB_ERROR_MSG_MAX];
	size_t len = 0, bad = 0;

	msg[0] = '\0';
	for (size_t r = 0; r < g->n_rows; r++) {
		const mb_gate_row *row = &g->rows[r];
		const mb_gate_stratum *st =
			row->power_stratum >= 0 ? &row->strata[row->power_stratum] : NULL;
		if (!row->metric_changed && st && row->combine == MB_SPEC_COMBINE_ALL &&
		    st->mde_planned > row->margin) {
			double need = (double)st->n * (st->mde_planned / row->margin) *
				      (st->mde_planned / row->margin);
			bad++;
			if (len < sizeof(msg))
				len += (size_t)snprintf(msg + len, sizeof(msg) - len,
							"%s%s/%s@%d stratum %s: MDE %.4g at n=%zu "
							"exceeds margin %.4g (needs n >= %.0f in the "
							"stratum)", bad > 1 ? "; " : "", row->entry,
							row->metric, row->version, st->name,
							st->mde_planned, st->n, row->margin,
							ceil(need));
		}
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

/* The paired comparison of a row over the candidate items idx[0..n): cv and bv
 * are the whole columns (candidate order, baseline paired). The policy is
 * mb_stats_compare's under the entry's design, without registered weights
 * for a single stratum. */
static int compare_sel(mb_stats_comparison *out, const mb_gate_result *g, const mb_gate_row *r,
		       const mb_runner_design *dsg, const mb_entry_result *cand, const double *cv,
		       const double *bv, const size_t *idx, size_t n, int pooled,
		       const char *stream, mb_error *err)
{
	double *c = malloc((n ? n : 1) * sizeof(*c)); /* (n) */
	double *b = malloc((n ? n : 1) * sizeof(*b)); /* (n) */
	uint32_t *groups = NULL;
	size_t n_groups = 0;
	int stratified = 0, error;
	mb_stats_compare_opts co;

	if (!c || !b) {
		error = mb_error_oom(err, "paired values", n * sizeof(double));
		goto cleanup;
	}
	for (size_t j = 0; j < n; j++) {
		c[j] = cv[idx[j]];
		b[j] = bv[idx[j]];
	}
	if ((error = mb_runner_design_groups(&groups, &n_groups, &stratified, dsg, cand, idx, n,
					     pooled, err)) < 0)
		goto cleanup;
	memset(&co, 0, sizeof(co));
	co.kind = (mb_stats_kind)r->kind;
	co.direction = (mb_stats_direction)r->direction;
	co.alpha = g->alpha;
	co.delta = r->margin;
	if (stratified) {
		co.stratum = groups;
		co.stratum_weights = dsg->entry->weights;
		co.n_strata = dsg->entry->n_strata;
	} else if (groups) {
		co.cluster = groups;
		co.n_clusters = n_groups;
	}
	co.seed = dsg->seed;
	co.stream = stream;
	co.boot_B = (size_t)dsg->bootstrap;
	co.boot_ci = MB_STATS_BOOT_CI_BCA;
	error = mb_stats_compare(out, c, b, n, &co, err);
cleanup:
	free(c);
	free(b);
	free(groups);
	return error;
}

/* The comparison of entry e's artifacts, appended to g->artifacts. */
static int compare_artifact(mb_gate_result *g, const mb_spec_entry *e,
			    const mb_entry_result *base, const mb_entry_result *cand,
			    mb_error *err)
{
	mb_artifact_diff *na;
	int error;

	if (!base->artifact && !cand->artifact)
		return 0;
	na = realloc(g->artifacts, (g->n_artifacts + 1) * sizeof(*na));
	if (!na)
		return mb_error_oom(err, "artifact comparisons", (g->n_artifacts + 1) * sizeof(*na));
	g->artifacts = na;
	if ((error = mb_artifact_diff_make(&na[g->n_artifacts], e->name, base->artifact,
					   cand->artifact, err)) < 0)
		return error;
	g->n_artifacts++;
	return 0;
}

int mb_gate_compare_entry(mb_gate_result *g, const mb_spec *spec, const mb_spec_entry *e,
			  const mb_entry_result *base, const mb_entry_result *cand, mb_error *err)
{
	size_t n = cand->n_items;
	double *cv = malloc((n ? n : 1) * sizeof(*cv)); /* (N) candidate, dataset order */
	double *bv = malloc((n ? n : 1) * sizeof(*bv)); /* (N) baseline, paired */
	long *pair = malloc((n ? n : 1) * sizeof(*pair)); /* (N) baseline index of item i */
	size_t *pool = NULL, n_pool = 0;
	mb_entry_result view;
	const mb_entry_result *cr = cand;
	mb_runner_design dsg;
	size_t n_shared = 0;
	int error = 0;

	memset(&view, 0, sizeof(view));
	mb_runner_design_init(&dsg, spec, e);
	if (!cv || !bv || !pair) {
		error = mb_error_oom(err, "paired values", n * sizeof(double));
		goto cleanup;
	}
	if (n != base->n_items) {
		error = mb_error_set(err, MB_EMISMATCH, "entry %s: %zu candidate items, %zu in the "
				     "baseline", e->name, n, base->n_items);
		goto cleanup;
	}
	if ((error = mb_item_index_pair(pair, &n_shared, cand, base, err)) < 0)
		goto cleanup;
	for (size_t i = 0; i < n && n_shared < n; i++) {
		if (pair[i] < 0) {
			error = mb_error_set(err, MB_EMISMATCH, "entry %s: item %s is not in the "
					     "baseline", e->name, cand->items[i].key);
			goto cleanup;
		}
	}
	/* A candidate made by the runner knows its strata; one built otherwise
	 * gets them from its items (no OOD marks). */
	if (!cand->n_strata) {
		if ((error = strata_view(&view, cand, NULL, err)) < 0)
			goto cleanup;
		cr = &view;
	}
	if ((error = mb_runner_select(&pool, &n_pool, cr, NULL, err)) < 0)
		goto cleanup;
	for (size_t m = 0; m < e->n_metrics; m++) {
		mb_gate_row *r = find_row(g, e->name, e->metrics[m].name);
		int cm = mb_entry_result_metric(cand, r->metric);
		int bm = mb_entry_result_metric(base, r->metric);
		char stream[512];

		if ((error = row_strata(r, &e->metrics[m], cr, err)) < 0)
			goto cleanup;
		r->n = n_pool;
		if (r->metric_changed)
			continue;
		MB_ASSERT(cm >= 0 && bm >= 0);
		for (size_t i = 0; i < n; i++) {
			cv[i] = cand->values[i * cand->n_metrics + (size_t)cm];
			bv[i] = base->values[(size_t)pair[i] * base->n_metrics + (size_t)bm];
		}
		snprintf(stream, sizeof(stream), "gate/%s/%s/%s@%d", spec->suite, e->name,
			 r->metric, r->version);
		if ((error = compare_sel(&r->cmp, g, r, &dsg, cr, cv, bv, pool, n_pool, 1, stream,
					 err)) < 0) {
			mb_error_prefix(err, "%s/%s", e->name, r->metric);
			goto cleanup;
		}
		r->compared = 1;
		if (r->cmp.verdict == MB_STATS_VERDICT_IDENTICAL) {
			r->mde_observed = 0;
		} else if (r->cmp.diff.se_naive > 0) {
			mb_stats_power_opts po;
			power_opts(&po, g, r->cmp.diff.se_naive * r->cmp.diff.se_naive *
					      (double)n_pool, r->cmp.diff.deff);
			if ((error = mb_stats_power_mde(&r->mde_observed, &po, (double)n_pool,
							err)) < 0)
				goto cleanup;
		}
		if (r->has_threshold) {
			snprintf(stream, sizeof(stream), "threshold/%s/%s/%s@%d", spec->suite,
				 e->name, r->metric, r->version);
			if ((error = mb_runner_estimate(&r->cand, spec, e, cr, (size_t)cm, g->level,
							stream, err)) < 0)
				goto cleanup;
			r->threshold_verdict = mb_stats_threshold_verdict(
				r->cand.lo, r->cand.hi, r->threshold,
				(mb_stats_direction)r->direction);
			r->threshold_checked = 1;
		}
		for (size_t k = 0; k < r->n_strata; k++) {
			mb_gate_stratum *st = &r->strata[k];
			size_t *idx = NULL, ns = 0;
			if (st->n < 2)
				continue; /* one item has no interval: reported without one */
			if ((error = mb_runner_select(&idx, &ns, cr, st->name, err)) < 0)
				goto cleanup;
			snprintf(stream, sizeof(stream), "gate/%s/%s/%s@%d/stratum=%s", spec->suite,
				 e->name, r->metric, r->version, st->name);
			error = compare_sel(&st->cmp, g, r, &dsg, cr, cv, bv, idx, ns, 0, stream, err);
			if (!error && st->has_threshold) {
				snprintf(stream, sizeof(stream), "threshold/%s/%s/%s@%d/stratum=%s",
					 spec->suite, e->name, r->metric, r->version, st->name);
				error = mb_runner_estimate_items(&st->cand, &dsg, cr, (size_t)cm, idx,
								 ns, 0, g->level, stream, err);
				st->threshold_verdict = mb_stats_threshold_verdict(
					st->cand.lo, st->cand.hi, st->threshold,
					(mb_stats_direction)r->direction);
				st->threshold_checked = !error;
			}
			free(idx);
			if (error < 0) {
				mb_error_prefix(err, "%s/%s: stratum %s", e->name, r->metric,
						st->name);
				goto cleanup;
			}
			st->compared = 1;
		}
	}
	error = compare_artifact(g, e, base, cand, err);
cleanup:
	free(cv);
	free(bv);
	free(pair);
	free(pool);
	if (cr == &view)
		strata_view_free(&view);
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

/* A comparison's verdict, then its threshold test. */
static mb_gate_status judged_status(mb_stats_verdict v, int threshold_checked,
				    mb_stats_verdict tv)
{
	mb_gate_status s;

	switch (v) {
	case MB_STATS_VERDICT_IDENTICAL: s = MB_GATE_IDENTICAL; break;
	case MB_STATS_VERDICT_IMPROVED: s = MB_GATE_IMPROVED; break;
	case MB_STATS_VERDICT_PASS: s = MB_GATE_PASS; break;
	case MB_STATS_VERDICT_REGRESSED: s = MB_GATE_REGRESSED; break;
	default: s = MB_GATE_INCONCLUSIVE; break;
	}
	if (s != MB_GATE_REGRESSED && threshold_checked && tv != MB_STATS_VERDICT_PASS)
		s = MB_GATE_THRESHOLD_FAILED;
	return s;
}

/* Appends "; <text>" (or "<text>") to the row's note, truncating. */
static void note_append(mb_gate_row *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void note_append(mb_gate_row *r, const char *fmt, ...)
{
	size_t len = strlen(r->note);
	va_list ap;

	if (len + 3 >= sizeof(r->note))
		return;
	if (len) {
		memcpy(r->note + len, "; ", 3);
		len += 2;
	}
	va_start(ap, fmt);
	vsnprintf(r->note + len, sizeof(r->note) - len, fmt, ap);
	va_end(ap);
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

		r->strata_failed = 0;
		if (r->metric_changed) {
			s = MB_GATE_METRIC_CHANGED;
		} else if (!r->compared) {
			s = MB_GATE_INCONCLUSIVE; /* not reached by the CLI: every row is compared */
		} else {
			s = judged_status(r->cmp.verdict, r->threshold_checked, r->threshold_verdict);
			r->pooled_status = s;
			for (size_t k = 0; k < r->n_strata; k++) {
				mb_gate_stratum *st = &r->strata[k];
				int failed;
				if (!st->compared && !st->has_threshold)
					continue;
				/* a registered stratum too small to judge is not a pass */
				st->status = st->compared ? judged_status(st->cmp.verdict,
									  st->threshold_checked,
									  st->threshold_verdict)
							  : MB_GATE_INCONCLUSIVE;
				if (!st->has_threshold)
					continue;
				failed = st->status != MB_GATE_IDENTICAL &&
					 st->status != MB_GATE_IMPROVED && st->status != MB_GATE_PASS;
				r->strata_failed += (size_t)failed;
				if (r->combine == MB_SPEC_COMBINE_ALL &&
				    severity(st->status) > severity(s))
					s = st->status;
				if (failed && r->combine == MB_SPEC_COMBINE_POOLED)
					note_append(r, "stratum %s %s (combine pooled: reported, "
						    "not gating)", st->name,
						    mb_gate_status_name(st->status));
				else if (failed)
					note_append(r, "stratum %s %s", st->name,
						    mb_gate_status_name(st->status));
			}
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
