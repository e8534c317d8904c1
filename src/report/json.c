/* json.c: JSON reports of gates and runs (schema in the README, "Reports"). */
#include "report_int.h"

#include <math.h>

static json_t *num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

static json_t *estimate_json(const mb_stats_estimate *e)
{
	return json_pack("{s:s, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "method",
			 mb_stats_method_name(e->method), "n", (json_int_t)e->n, "groups",
			 (json_int_t)e->n_groups, "mean", num(e->mean), "se", num(e->se),
			 "deff", num(e->deff), "df", num(e->df), "level", num(e->level), "lo",
			 num(e->lo), "hi", num(e->hi));
}

static json_t *strata_json(const mb_gate_row *r)
{
	json_t *a = json_array();

	for (size_t k = 0; a && k < r->n_strata; k++) {
		const mb_gate_stratum *st = &r->strata[k];
		const mb_stats_comparison *c = &st->cmp;
		json_t *o = json_pack("{s:s, s:b, s:I, s:o, s:o}", "name", st->name, "ood", st->ood,
				      "n", (json_int_t)st->n, "status",
				      st->compared || (st->has_threshold && r->compared)
					      ? json_string(mb_gate_status_name(st->status))
					      : json_null(),
				      "mde_planned", num(st->mde_planned));
		if (!o)
			continue;
		json_object_set_new(o, "gates", json_boolean(st->has_threshold &&
							     r->combine == MB_SPEC_COMBINE_ALL));
		json_object_set_new(o, "verdict", st->compared
							  ? json_string(mb_stats_verdict_name(c->verdict))
							  : json_null());
		json_object_set_new(o, "baseline_mean", st->compared ? num(c->mean_base) : json_null());
		json_object_set_new(o, "candidate_mean", st->compared ? num(c->mean_cand) : json_null());
		json_object_set_new(o, "diff", st->compared ? estimate_json(&c->diff) : json_null());
		json_object_set_new(
			o, "threshold",
			st->has_threshold
				? json_pack("{s:f, s:s, s:o, s:s}", "value", st->threshold, "verdict",
					    st->threshold_checked
						    ? mb_stats_verdict_name(st->threshold_verdict)
						    : "NOT-CHECKED",
					    "candidate",
					    st->threshold_checked ? estimate_json(&st->cand)
								  : json_null(),
					    "comparison",
					    r->direction == MB_LOWER_IS_BETTER ? "<=" : ">=")
				: json_null());
		json_array_append_new(a, o);
	}
	return a;
}

static json_t *row_json(const mb_gate_row *r)
{
	const mb_stats_comparison *c = &r->cmp;
	json_t *o = json_pack(
		"{s:s, s:s, s:i, s:i, s:i, s:s, s:s, s:s, s:I, s:o, s:o, s:o, s:o}", "entry",
		r->entry, "metric", r->metric, "version", r->version, "build_version",
		r->build_version, "baseline_version", r->baseline_version, "kind",
		mb_metric_kind_name(r->kind), "direction", mb_metric_direction_name(r->direction),
		"status", mb_gate_status_name(r->status), "n", (json_int_t)r->n, "margin",
		num(r->margin), "mde_planned", num(r->mde_planned), "mde_observed",
		num(r->mde_observed), "power_target", num(r->power_target));

	if (!o)
		return NULL;
	json_object_set_new(o, "spec_changed", json_boolean(r->spec_changed));
	json_object_set_new(o, "metric_changed", json_boolean(r->metric_changed));
	if (r->compared) {
		json_object_set_new(o, "verdict", json_string(mb_stats_verdict_name(c->verdict)));
		json_object_set_new(o, "baseline_mean", num(c->mean_base));
		json_object_set_new(o, "candidate_mean", num(c->mean_cand));
		json_object_set_new(o, "diff", estimate_json(&c->diff));
		json_object_set_new(o, "p_noninferior", num(c->p_noninferior));
		json_object_set_new(o, "mcnemar",
				    c->has_mcnemar
					    ? json_pack("{s:I, s:I, s:I, s:o, s:o, s:o}", "n",
							(json_int_t)c->mcnemar.n, "n10",
							(json_int_t)c->mcnemar.n10, "n01",
							(json_int_t)c->mcnemar.n01, "p_two_sided",
							num(c->mcnemar.p_two_sided), "p_less",
							num(c->mcnemar.p_less), "discordant_rate",
							num(c->mcnemar.discordant_rate))
					    : json_null());
	} else {
		json_object_set_new(o, "verdict", json_null());
		json_object_set_new(o, "baseline_mean", json_null());
		json_object_set_new(o, "candidate_mean", json_null());
		json_object_set_new(o, "diff", json_null());
		json_object_set_new(o, "p_noninferior", json_null());
		json_object_set_new(o, "mcnemar", json_null());
	}
	if (r->has_threshold)
		json_object_set_new(
			o, "threshold",
			json_pack("{s:f, s:s, s:o, s:o}", "value", r->threshold, "verdict",
				  r->threshold_checked ? mb_stats_verdict_name(r->threshold_verdict)
						       : "NOT-CHECKED",
				  "candidate",
				  r->threshold_checked ? estimate_json(&r->cand) : json_null(),
				  "comparison",
				  json_string(r->direction == MB_LOWER_IS_BETTER ? "<=" : ">=")));
	else
		json_object_set_new(o, "threshold", json_null());
	json_object_set_new(o, "note", json_string(r->note));
	json_object_set_new(o, "combine", r->combine == MB_SPEC_COMBINE_NONE
						  ? json_null()
						  : json_string(mb_spec_combine_name(r->combine)));
	json_object_set_new(o, "pooled_status", r->compared
							? json_string(mb_gate_status_name(r->pooled_status))
							: json_null());
	json_object_set_new(o, "n_ood", json_integer((json_int_t)r->n_ood));
	json_object_set_new(o, "strata", strata_json(r));
	return o;
}

static json_t *stability_json(const mb_artifact_stability *s)
{
	if (!s->present)
		return json_null();
	return json_pack("{s:I, s:o, s:o, s:o}", "resamples", (json_int_t)s->resamples,
			 "jaccard_mean", num(s->mean), "jaccard_lo", num(s->lo), "jaccard_hi",
			 num(s->hi));
}

static json_t *nodes_json(const mb_artifact_node_change *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, json_pack("{s:s, s:o, s:o}", "id", v[i].id, "effect",
						   num(v[i].effect), "inclusion",
						   num(v[i].inclusion)));
	return a;
}

static json_t *edges_json(const mb_artifact_edge_change *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:o}", "from", v[i].from, "to",
						   v[i].to, "via", v[i].via, "effect",
						   num(v[i].effect)));
	return a;
}

/* One artifact comparison (artifact.h); "gates" is always false. */
static json_t *artifact_json(const mb_artifact_diff *d)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:o, s:o}", "entry", d->entry, "kind",
			      d->kind, "change", mb_artifact_change_name(d->change), "gates", 0,
			      "noise", d->noise == MB_ARTIFACT_NOISE_NONE
					       ? json_null()
					       : json_string(d->noise == MB_ARTIFACT_NOISE_WITHIN
								     ? "within"
							     : d->noise == MB_ARTIFACT_NOISE_BEYOND
								     ? "beyond"
								     : "unknown"),
			      "first_diff", d->first_diff[0] ? json_string(d->first_diff)
							     : json_null());

	if (!o || !d->circuits)
		return o;
	json_object_set_new(o, "nodes", json_pack("{s:I, s:I, s:o, s:o}", "baseline",
						  (json_int_t)d->base_nodes, "candidate",
						  (json_int_t)d->cand_nodes, "removed",
						  nodes_json(d->nodes_removed, d->n_nodes_removed),
						  "added",
						  nodes_json(d->nodes_added, d->n_nodes_added)));
	json_object_set_new(o, "edges", json_pack("{s:I, s:I, s:o, s:o}", "baseline",
						  (json_int_t)d->base_edges, "candidate",
						  (json_int_t)d->cand_edges, "removed",
						  edges_json(d->edges_removed, d->n_edges_removed),
						  "added",
						  edges_json(d->edges_added, d->n_edges_added)));
	json_object_set_new(o, "node_jaccard", num(d->node_jaccard));
	json_object_set_new(o, "edge_jaccard", num(d->edge_jaccard));
	json_object_set_new(o, "noise_bound", num(d->noise_bound));
	json_object_set_new(o, "stability", json_pack("{s:o, s:o}", "baseline",
						      stability_json(&d->base_stability),
						      "candidate",
						      stability_json(&d->cand_stability)));
	return o;
}

json_t *mb_report_gate_json(const mb_gate_result *g)
{
	json_t *rows = json_array(), *devs = json_array(), *notes = json_array();
	json_t *arts = json_array(), *doc;

	for (size_t i = 0; i < g->n_rows; i++)
		json_array_append_new(rows, row_json(&g->rows[i]));
	for (size_t i = 0; i < g->n_deviations; i++)
		json_array_append_new(devs, json_pack("{s:s, s:s, s:s}", "path",
						      g->deviations[i].path, "registered",
						      g->deviations[i].before, "working",
						      g->deviations[i].after));
	for (size_t i = 0; i < g->n_notes; i++)
		json_array_append_new(notes, json_string(g->notes[i]));
	for (size_t i = 0; i < g->n_artifacts; i++)
		json_array_append_new(arts, artifact_json(&g->artifacts[i]));
	doc = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:f, s:f, s:f, s:s, s:i, s:o, s:o, s:o,"
			" s:o}",
			"mechbench_gate_report", MB_REPORT_JSON_FORMAT, "suite", g->suite,
			"spec_path", g->spec_path, "baseline_ref", g->ref, "baseline_commit",
			g->commit, "spec_blob", g->spec_blob, "alpha", g->alpha, "power",
			g->power, "ci_level", g->level, "outcome", mb_gate_status_name(g->outcome),
			"exit_code", g->exit_code, "run_id",
			g->run_id ? json_integer(g->run_id) : json_null(), "deviations", devs,
			"notes", notes, "metrics", rows);
	if (!doc || json_object_set_new(doc, "artifacts", arts) < 0) {
		if (!doc)
			json_decref(arts);
		json_decref(doc);
		return NULL;
	}
	return doc;
}

json_t *mb_report_strata_json(const mb_entry_result *e, size_t m)
{
	json_t *a = json_array();

	for (size_t k = 0; a && k < e->n_strata; k++) {
		const mb_stratum_result *st = &e->strata[k];
		const mb_aggregate *g = st->aggregates ? &st->aggregates[m] : NULL;
		json_array_append_new(
			a, json_pack("{s:s, s:b, s:I, s:o, s:o, s:o, s:o, s:o, s:s}", "name",
				     st->name, "ood", st->ood, "n", (json_int_t)st->n, "mean",
				     num(g ? g->mean : NAN), "se", num(g ? g->se : NAN), "level",
				     num(g ? g->level : NAN), "lo", num(g ? g->lo : NAN), "hi",
				     num(g ? g->hi : NAN), "method",
				     mb_stats_method_name(g ? g->method : MB_STATS_METHOD_NONE)));
	}
	return a;
}

json_t *mb_report_run_json(const mb_run_result *r)
{
	json_t *entries = json_array();

	for (size_t i = 0; i < r->n_entries; i++) {
		const mb_entry_result *e = &r->entries[i];
		json_t *metrics = json_array();
		json_t *files = mb_file_digests_to_json(e->model_files, e->n_model_files);
		for (size_t m = 0; m < e->n_metrics; m++) {
			const mb_aggregate *a = &e->aggregates[m];
			json_array_append_new(
				metrics,
				json_pack("{s:s, s:i, s:s, s:s, s:I, s:o, s:o, s:o, s:o, s:o, s:s}",
					  "name", e->metrics[m].name, "version",
					  e->metrics[m].version, "kind",
					  mb_metric_kind_name(e->metrics[m].kind), "direction",
					  mb_metric_direction_name(e->metrics[m].direction), "n",
					  (json_int_t)a->n, "mean", num(a->mean), "se", num(a->se),
					  "level", num(a->level), "lo", num(a->lo), "hi", num(a->hi),
					  "method", mb_stats_method_name(a->method)));
			json_object_set_new(json_array_get(metrics, m), "strata",
					    mb_report_strata_json(e, m));
		}
		json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:o, s:s, s:s, s:I, s:f, s:o}", "name",
				      e->name, "task", e->task, "task_version", e->task_version,
				      "model", e->model, "model_files", files, "dataset",
				      e->dataset, "dataset_sha256", e->dataset_sha256, "n_items",
				      (json_int_t)e->n_items, "seconds", e->seconds, "metrics",
				      metrics);
		/* the task's artifact (artifact.h), only when the entry has one */
		if (o && e->artifact)
			json_object_set(o, "artifact", e->artifact);
		json_array_append_new(entries, o);
	}
	return json_pack("{s:i, s:o, s:s, s:o, s:o}", "mechbench_run_report",
			 MB_REPORT_JSON_FORMAT, "run_id",
			 r->id ? json_integer(r->id) : json_null(), "suite", r->prov.suite,
			 "provenance", mb_provenance_to_json(&r->prov), "entries", entries);
}
