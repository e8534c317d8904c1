/* series_cli.c: see series_cli.h. Legend: K checkpoints. */
#include "series_cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mechbench/file.h>
#include <mechbench/html.h>

void mb_cli_series_view_dispose(mb_cli_series_view *v)
{
	if (!v)
		return;
	mb_drift_result_dispose(&v->drift);
	for (size_t k = 0; v->runs && k < v->n_points; k++)
		mb_run_result_dispose(&v->runs[k]);
	free(v->runs);
	mb_results_points_free(v->points, v->n_points);
	for (size_t g = 0; v->figures && g < v->n_groups; g++)
		mb_figure_list_dispose(&v->figures[g]);
	free(v->figures);
	free(v->headings);
	mb_spec_dispose(&v->spec);
	mb_results_series_dispose(&v->meta);
	memset(v, 0, sizeof(*v));
}

static void x_label(char *buf, size_t cap, const mb_drift_result *r, size_t k)
{
	if (r->has_steps)
		snprintf(buf, cap, "step %lld", (long long)r->steps[k]);
	else
		snprintf(buf, cap, "#%zu", k);
}

static int add_index(size_t *list, size_t *n, size_t k)
{
	for (size_t i = 0; i < *n; i++)
		if (list[i] == k)
			return 0;
	list[(*n)++] = k;
	return 1;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

static int load_figures(mb_cli_series_view *v, mb_store *s, mb_error *err)
{
	const mb_drift_result *r = &v->drift;
	size_t K = v->n_points, *pick = malloc((2 * r->n_metrics + 2) * sizeof(size_t)), n = 0;
	size_t cap;
	int error = 0;

	if (!pick)
		return mb_error_oom(err, "figure checkpoints", 0);
	add_index(pick, &n, 0);
	for (size_t m = 0; m < r->n_metrics; m++) {
		const mb_drift_metric *dm = &r->metrics[m];
		if (dm->main_change != SIZE_MAX) {
			size_t c = dm->changepoints[dm->main_change].index;
			add_index(pick, &n, c - 1);
			add_index(pick, &n, c);
		}
	}
	add_index(pick, &n, K - 1);
	qsort(pick, n, sizeof(*pick), cmp_size);
	if (n > 8)
		n = 8; /* a readable page: the earliest eight picks */
	cap = n * v->spec.n_entries;
	v->figures = calloc(cap ? cap : 1, sizeof(*v->figures));
	v->headings = calloc(cap ? cap : 1, sizeof(*v->headings));
	if (!v->figures || !v->headings) {
		error = mb_error_oom(err, "figures", cap);
		goto cleanup;
	}
	for (size_t i = 0; i < n; i++) {
		size_t k = pick[i];
		for (size_t e = 0; e < v->runs[k].n_entries; e++) {
			const char *entry = v->runs[k].entries[e].name;
			mb_figure_list *fl = &v->figures[v->n_groups];
			char at[64];
			if ((error = mb_results_get_figures(fl, s, v->runs[k].id, entry, err)) < 0) {
				mb_figure_list_dispose(fl); /* not counted in n_groups yet */
				goto cleanup;
			}
			if (fl->n == 0)
				continue;
			x_label(at, sizeof(at), r, k);
			snprintf(v->headings[v->n_groups], sizeof(v->headings[0]),
				 "%s at %s (%s, run %lld)", entry, at, r->checkpoints[k],
				 (long long)v->runs[k].id);
			v->n_groups++;
		}
	}
cleanup:
	free(pick);
	return error;
}

mb_drift_opts mb_cli_series_opts(const mb_cli_parsed *p, const mb_cli_cmd *cmd, double penalty,
				 int64_t min_seg)
{
	mb_drift_opts o = {NAN, (size_t)min_seg};

	if (mb_cli_given(p, cmd, "--penalty"))
		o.penalty = penalty;
	return o;
}

int mb_cli_series_view_load(mb_cli_series_view *v, mb_store *s, const char *name,
			    const mb_drift_opts *opts, mb_error *err)
{
	mb_results_monitor *rm = NULL;
	mb_drift_monitor *mon = NULL;
	size_t n_mon = 0;
	int64_t *steps = NULL;
	const char **labels = NULL;
	int has_steps = 1, error;

	memset(v, 0, sizeof(*v));
	if ((error = mb_results_series_get(&v->meta, s, name, err)) < 0)
		return error;
	if ((error = mb_spec_parse(&v->spec, v->meta.spec, v->meta.spec_len, v->meta.spec_path,
				   err)) < 0) {
		mb_error_prefix(err, "series %s: its registered spec", name);
		goto cleanup;
	}
	if ((error = mb_results_series_points(&v->points, &v->n_points, s, name, err)) < 0)
		goto cleanup;
	if (v->n_points == 0) {
		error = mb_error_set(err, MB_EINVALID, "%s: series %s has no checkpoints",
				     mb_store_path(s), name);
		goto cleanup;
	}
	v->runs = calloc(v->n_points, sizeof(*v->runs));
	steps = calloc(v->n_points, sizeof(*steps));
	labels = calloc(v->n_points, sizeof(*labels));
	if (!v->runs || !steps || !labels) {
		error = mb_error_oom(err, "series runs", v->n_points * sizeof(*v->runs));
		goto cleanup;
	}
	for (size_t k = 0; k < v->n_points; k++) {
		if ((error = mb_store_get_run(&v->runs[k], s, v->points[k].run_id, err)) < 0)
			goto cleanup;
		has_steps &= v->points[k].has_step;
		steps[k] = v->points[k].step;
		labels[k] = v->points[k].checkpoint;
	}
	/* A series drifted with --entry holds some of its spec's entries: those
	 * of its first checkpoint's run (drift --append keeps them the same). */
	if (v->runs[0].n_entries < v->spec.n_entries) {
		const char **kept = calloc(v->runs[0].n_entries + 1, sizeof(*kept));
		if (!kept) {
			error = mb_error_oom(err, "series entries", v->runs[0].n_entries);
			goto cleanup;
		}
		for (size_t i = 0; i < v->runs[0].n_entries; i++)
			kept[i] = v->runs[0].entries[i].name;
		error = mb_spec_keep_entries(&v->spec, kept, v->runs[0].n_entries, err);
		free(kept);
		if (error < 0) {
			mb_error_prefix(err, "series %s", name);
			goto cleanup;
		}
	}
	if ((error = mb_results_series_monitors(&rm, &n_mon, s, name, err)) < 0)
		goto cleanup;
	if (!(mon = calloc(n_mon ? n_mon : 1, sizeof(*mon)))) {
		error = mb_error_oom(err, "monitors", n_mon);
		goto cleanup;
	}
	for (size_t i = 0; i < n_mon; i++) {
		snprintf(mon[i].entry, sizeof(mon[i].entry), "%s", rm[i].entry);
		snprintf(mon[i].metric, sizeof(mon[i].metric), "%s", rm[i].metric);
		mon[i].theta0 = rm[i].theta0;
		mon[i].sigma2 = rm[i].sigma2;
		mon[i].tau2 = rm[i].tau2;
		mon[i].alpha = rm[i].alpha;
	}
	if ((error = mb_drift_analyze(&v->drift, &v->spec, v->runs, v->n_points,
				      has_steps ? steps : NULL, labels, mon, n_mon, opts, err)) < 0) {
		mb_error_prefix(err, "series %s", name);
		goto cleanup;
	}
	error = load_figures(v, s, err);
cleanup:
	mb_results_monitors_free(rm, n_mon);
	free(mon);
	free(steps);
	free(labels);
	if (error < 0)
		mb_cli_series_view_dispose(v);
	return error;
}

/* --- terminal --------------------------------------------------------------------------- */

void mb_cli_series_print(FILE *f, const mb_cli_series_view *v)
{
	const mb_drift_result *r = &v->drift;
	char at[64];

	fprintf(f, "series %s: %zu checkpoint%s of suite %s (%s)\n", v->meta.name, r->n_points,
		r->n_points == 1 ? "" : "s", v->meta.suite,
		r->has_steps ? "ordered by training step" : "ordered by name");
	for (size_t m = 0; m < r->n_metrics; m++) {
		const mb_drift_metric *dm = &r->metrics[m];
		size_t exits = 0;
		fprintf(f, "%s/%s@%d  %s is better, margin %.4g", dm->entry, dm->metric, dm->version,
			dm->direction == MB_HIGHER_IS_BETTER ? "higher" : "lower", dm->margin);
		if (dm->has_threshold)
			fprintf(f, ", threshold %.4g", dm->threshold);
		fputc('\n', f);
		fputs("  main change   ", f);
		if (dm->main_change != SIZE_MAX) {
			const mb_drift_changepoint *c = &dm->changepoints[dm->main_change];
			x_label(at, sizeof(at), r, c->index);
			fprintf(f, "%s: %.4g -> %.4g\n", at, c->before, c->after);
		} else {
			fputs("none\n", f);
		}
		fputs("  changepoints  ", f);
		for (size_t c = 0; c < dm->n_changepoints; c++) {
			x_label(at, sizeof(at), r, dm->changepoints[c].index);
			fprintf(f, "%s%s", c ? ", " : "", at);
		}
		fputs(dm->n_changepoints ? "\n" : "none\n", f);
		fputs("  left band     ", f);
		for (size_t k = 1; k < r->n_points; k++) {
			const mb_drift_point *p = &dm->points[k];
			if (p->band != MB_DRIFT_WORSE && p->band != MB_DRIFT_BETTER)
				continue;
			if (exits < 6) {
				x_label(at, sizeof(at), r, k);
				fprintf(f, "%s%s %s", exits ? ", " : "", at, mb_drift_band_name(p->band));
			}
			exits++;
		}
		if (exits > 6)
			fprintf(f, " (and %zu more)", exits - 6);
		fputs(exits ? "\n" : "none\n", f);
		fputs("  monitor       ", f);
		if (dm->alarm != SIZE_MAX) {
			x_label(at, sizeof(at), r, dm->alarm);
			fprintf(f, "alarm at %s (always-valid p = %.3g)\n", at, dm->points[dm->alarm].p);
		} else {
			fprintf(f, "no alarm (p = %.3g after %zu checkpoint%s)\n",
				dm->points[r->n_points - 1].p, r->n_points,
				r->n_points == 1 ? "" : "s");
		}
	}
	mb_cli_series_print_phases(f, r);
}

/* The located phases, one block per declaration. */
void mb_cli_series_print_phases(FILE *f, const mb_drift_result *r)
{
	for (size_t i = 0; i < r->n_phases; i++) {
		const mb_drift_phases *p = &r->phases[i];
		size_t width = 0;
		fprintf(f, "phases of %s/%s@%d  (%s cost, at least %zu checkpoints each)\n", p->entry,
			p->metric, p->version, mb_stats_cost_name(p->cost), p->min_segment);
		if (!p->located) {
			fprintf(f, "  not located: %s (%zu checkpoint%s, %zu phases)\n",
				p->not_located, r->n_points, r->n_points == 1 ? "" : "s",
				p->n_phases);
			continue;
		}
		for (size_t k = 0; k < p->n_phases; k++)
			width = strlen(p->names[k]) > width ? strlen(p->names[k]) : width;
		for (size_t k = 0; k < p->n_phases; k++) {
			double first, last;
			mb_drift_phase_range(r, p, k, &first, &last);
			fprintf(f, "  %-*s  %s %.0f to %.0f", (int)width, p->names[k],
				r->has_steps ? "steps" : "checkpoints", first, last);
			if (k > 0 && p->has_window[k - 1])
				fprintf(f, "  (boundary %.0f: window [%lld, %lld] %s)", first,
					(long long)p->windows[k - 1][0],
					(long long)p->windows[k - 1][1],
					p->in_window[k - 1] ? "met" : "MISSED");
			fputc('\n', f);
		}
	}
}

/* --- JSON ------------------------------------------------------------------------------- */

static json_t *num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

/* Checkpoint k's training step, or null in a series ordered by name. */
static json_t *step_json(const mb_drift_result *r, size_t k)
{
	return r->has_steps ? json_integer(r->steps[k]) : json_null();
}

static json_t *at_json(const mb_drift_result *r, size_t k)
{
	return json_pack("{s:I,s:o}", "ordinal", (json_int_t)k, "step", step_json(r, k));
}

static json_t *phases_json(const mb_drift_result *r)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < r->n_phases; i++) {
		const mb_drift_phases *p = &r->phases[i];
		json_t *ph = json_array(), *bs = json_array(), *o;
		int bad = !ph || !bs;
		for (size_t k = 0; !bad && p->located && k < p->n_phases; k++) {
			bad |= json_array_append_new(
				       ph, json_pack("{s:s,s:I,s:o,s:o}", "name", p->names[k],
						     "first_ordinal", (json_int_t)p->start[k],
						     "first_step", step_json(r, p->start[k]),
						     "last_step",
						     step_json(r, mb_drift_phase_last(r, p, k)))) < 0;
		}
		for (size_t b = 0; !bad && b + 1 < p->n_phases; b++) {
			json_t *w = p->has_window[b]
					    ? json_pack("[I,I]", (json_int_t)p->windows[b][0],
							(json_int_t)p->windows[b][1])
					    : json_null();
			json_t *at = p->located ? at_json(r, p->start[b + 1]) : json_null();
			json_t *met = p->has_window[b] && p->located ? json_boolean(p->in_window[b])
								      : json_null();
			bad |= json_array_append_new(
				       bs, json_pack("{s:s,s:s,s:o,s:o,s:o}", "from", p->names[b], "to",
						     p->names[b + 1], "at", at, "window", w, "met",
						     met)) < 0;
		}
		if (bad) {
			json_decref(ph);
			json_decref(bs);
			json_decref(arr);
			return NULL;
		}
		/* json_pack consumes its "o" arguments, also when it fails */
		o = json_pack("{s:s,s:s,s:i,s:s,s:I,s:b,s:o,s:o,s:o,s:o}", "entry", p->entry,
			      "metric", p->metric, "version", p->version, "cost",
			      mb_stats_cost_name(p->cost), "min_segment", (json_int_t)p->min_segment,
			      "located", p->located, "not_located",
			      p->located ? json_null() : json_string(p->not_located), "total_cost",
			      num(p->cost_value), "phases", ph, "boundaries", bs);
		if (!o) {
			json_decref(arr);
			return NULL;
		}
		if (json_array_append_new(arr, o) < 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

json_t *mb_cli_series_json(const mb_cli_series_view *v)
{
	const mb_drift_result *r = &v->drift;
	json_t *doc = NULL, *cks = json_array(), *mets = json_array(), *phs = NULL;
	int bad = !cks || !mets;

	for (size_t k = 0; !bad && k < r->n_points; k++)
		bad |= json_array_append_new(
			       cks, json_pack("{s:I,s:o,s:s,s:I}", "ordinal", (json_int_t)k, "step",
					      r->has_steps ? json_integer(r->steps[k]) : json_null(),
					      "checkpoint", r->checkpoints[k], "run_id",
					      (json_int_t)r->run_ids[k])) < 0;
	for (size_t m = 0; !bad && m < r->n_metrics; m++) {
		const mb_drift_metric *dm = &r->metrics[m];
		json_t *cps = json_array(), *pts = json_array(), *o;
		bad |= !cps || !pts;
		for (size_t c = 0; !bad && c < dm->n_changepoints; c++) {
			json_t *cj = at_json(r, dm->changepoints[c].index);
			bad |= !cj;
			if (cj) {
				json_object_set_new(cj, "before", num(dm->changepoints[c].before));
				json_object_set_new(cj, "after", num(dm->changepoints[c].after));
				bad |= json_array_append_new(cps, cj) < 0;
			}
		}
		for (size_t k = 0; !bad && k < r->n_points; k++) {
			const mb_drift_point *p = &dm->points[k];
			bad |= json_array_append_new(
				       pts,
				       json_pack("{s:o,s:o,s:o,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}",
						 "mean", num(p->mean), "lo", num(p->lo), "hi", num(p->hi),
						 "band", mb_drift_band_name(p->band), "verdict",
						 k ? json_string(mb_stats_verdict_name(p->verdict))
						   : json_null(),
						 "diff", num(p->diff), "diff_lo", num(p->diff_lo),
						 "diff_hi", num(p->diff_hi), "threshold",
						 p->threshold_checked
							 ? json_string(mb_stats_verdict_name(
								   p->threshold_verdict))
							 : json_null(),
						 "p", num(p->p), "cs_lo", num(p->cs_lo), "cs_hi",
						 num(p->cs_hi))) < 0;
		}
		if (bad) {
			json_decref(cps);
			json_decref(pts);
			break;
		}
		/* json_pack consumes its "o" arguments, also when it fails */
		o = json_pack("{s:s,s:s,s:i,s:s,s:s,s:f,s:o,s:f,s:{s:f,s:f,s:f,s:f},s:o,s:o,s:o,"
				    "s:o}",
				    "entry", dm->entry, "metric", dm->metric, "version", dm->version,
				    "kind", mb_metric_kind_name(dm->kind), "direction",
				    mb_metric_direction_name(dm->direction), "margin", dm->margin,
				    "threshold", dm->has_threshold ? json_real(dm->threshold)
								  : json_null(),
				    "penalty", dm->penalty, "monitor", "theta0", dm->monitor.theta0,
				    "sigma2", dm->monitor.sigma2, "tau2", dm->monitor.tau2, "alpha",
				    dm->monitor.alpha, "main_change",
				    dm->main_change != SIZE_MAX
					    ? json_integer((json_int_t)dm->main_change)
					    : json_null(),
				    "alarm", dm->alarm != SIZE_MAX ? at_json(r, dm->alarm) : json_null(),
				    "changepoints", cps, "points", pts);
		if (!o) {
			bad = 1;
			break;
		}
		bad |= json_array_append_new(mets, o) < 0;
	}
	phs = bad ? NULL : phases_json(r);
	if (!phs) {
		json_decref(cks);
		json_decref(mets);
		return NULL;
	}
	doc = json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:f,s:b,s:o,s:o,s:o}",
				"mechbench_drift_report", MB_DRIFT_JSON_FORMAT, "series",
				v->meta.name, "suite", v->meta.suite, "spec_path", v->meta.spec_path,
				"spec_blob", v->meta.spec_blob, "source", v->meta.source, "alpha",
				r->alpha, "has_steps", r->has_steps, "checkpoints", cks, "metrics",
				mets, "phases", phs);
	return doc; /* NULL when out of memory (cks, mets and phs consumed) */
}

/* --- HTML ------------------------------------------------------------------------------- */

int mb_cli_series_render_html(FILE *f, const void *view, mb_error *err)
{
	const mb_cli_series_view *v = view;
	mb_html_series hs = {v->meta.name, v->meta.suite, v->meta.spec_path, v->meta.spec_blob,
			     v->meta.source, v->meta.created_at, &v->drift};
	mb_html_figure_group *groups = NULL;
	char title[256];
	int error;

	snprintf(title, sizeof(title), "mechbench drift: %s", v->meta.name);
	mb_html_begin(f, title);
	if ((error = mb_html_series_section(f, &hs, err)) < 0)
		return error;
	if (v->n_groups) {
		if (!(groups = calloc(v->n_groups, sizeof(*groups))))
			return mb_error_oom(err, "figure groups", v->n_groups);
		for (size_t g = 0; g < v->n_groups; g++) {
			groups[g].heading = v->headings[g];
			groups[g].figures = &v->figures[g];
		}
		fputs("<h2>Figures the tasks attached</h2>\n", f);
		error = mb_html_figures(f, groups, v->n_groups, err);
		free(groups);
		if (error < 0)
			return error;
	}
	mb_html_end(f);
	return 0;
}
