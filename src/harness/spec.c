/* spec.c: suite specs, parsed and validated with file:line:col errors, and
 * the deviations between a registered spec and a working one (spec.h). */
#include <mechbench/spec.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/file.h>
#include <mechbench/json.h>
#include <mechbench/str.h>

#define PATH_MAX_LEN 512

static int get_relpath(const mb_json_doc *doc, json_t *obj, const char *at, const char *key,
		       int required, char **out, mb_error *err)
{
	char path[PATH_MAX_LEN];
	const char *s = NULL;
	int rc = mb_json_get_string(doc, obj, at, key, required, &s, err);

	if (rc != 0)
		return rc;
	mb_json_path_key(path, sizeof(path), at, key);
	if (!mb_file_path_is_safe(s))
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "'%s' must be a path relative to the repository root, "
					   "without '..'", s);
	*out = strdup(s);
	return *out ? 0 : mb_error_oom(err, "spec path", strlen(s));
}

static int get_nonempty_string(const mb_json_doc *doc, json_t *obj, const char *at,
			       const char *key, char **out, mb_error *err)
{
	char path[PATH_MAX_LEN];
	const char *s = NULL;
	int rc = mb_json_get_string(doc, obj, at, key, 1, &s, err);
	long bad;

	if (rc < 0)
		return rc;
	mb_json_path_key(path, sizeof(path), at, key);
	if (!s[0])
		return mb_json_field_error(doc, err, MB_EINVALID, path, "must not be empty");
	/* names reach terminals, markdown and JUnit (mb_str_find_control) */
	if ((bad = mb_str_find_control(s)) >= 0)
		return mb_json_field_error(doc, err, MB_EINVALID, path, "must not contain "
					   "control characters (0x%02x at offset %ld)",
					   (unsigned char)s[bad], bad);
	*out = strdup(s);
	return *out ? 0 : mb_error_oom(err, "spec string", strlen(s));
}

int mb_spec_combine_parse(const char *s, mb_spec_combine *out)
{
	if (strcmp(s, "all") == 0)
		*out = MB_SPEC_COMBINE_ALL;
	else if (strcmp(s, "pooled") == 0)
		*out = MB_SPEC_COMBINE_POOLED;
	else
		return -1;
	return 0;
}

const char *mb_spec_combine_name(mb_spec_combine c)
{
	return c == MB_SPEC_COMBINE_ALL ? "all" : c == MB_SPEC_COMBINE_POOLED ? "pooled" : "none";
}

/* A metric's per-stratum thresholds and how they combine with the pooled
 * verdict: "strata": {"<stratum>": {"threshold": x}, ...}, "combine": "all" |
 * "pooled". Both or neither. */
static int parse_metric_strata(const mb_json_doc *doc, json_t *obj, const char *at,
			       mb_spec_metric *m, mb_error *err)
{
	static const char *const skeys[] = {"threshold", NULL};
	char path[PATH_MAX_LEN], sub[PATH_MAX_LEN];
	json_t *strata = NULL, *v;
	const char *combine = NULL, *key;
	int rc, has_strata;
	size_t i = 0;

	if ((rc = mb_json_get_object(doc, obj, at, "strata", 0, &strata, err)) < 0)
		return rc;
	has_strata = rc == 0;
	if ((rc = mb_json_get_string(doc, obj, at, "combine", 0, &combine, err)) < 0)
		return rc;
	mb_json_path_key(path, sizeof(path), at, "combine");
	if (combine && mb_spec_combine_parse(combine, &m->combine) < 0)
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "'%s' is not all (every stratum with a threshold must "
					   "pass) or pooled (the pooled value decides)", combine);
	if (combine && !has_strata)
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "nothing to combine: register per-stratum thresholds "
					   "under strata, or leave combine out");
	if (!has_strata)
		return 0;
	mb_json_path_key(path, sizeof(path), at, "strata");
	if (!combine)
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "per-stratum thresholds need \"combine\": \"all\" or "
					   "\"pooled\" next to them");
	if (json_object_size(strata) == 0)
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "an empty object; leave strata out instead");
	m->strata = calloc(json_object_size(strata), sizeof(*m->strata));
	if (!m->strata)
		return mb_error_oom(err, "metric strata", json_object_size(strata));
	json_object_foreach(strata, key, v) {
		mb_json_path_key(sub, sizeof(sub), path, key);
		if (!key[0])
			return mb_json_field_error(doc, err, MB_EINVALID, sub,
						   "a stratum name must not be empty");
		if (!json_is_object(v))
			return mb_json_field_error(doc, err, MB_EINVALID, sub,
						   "expected an object, {\"threshold\": number}");
		if ((rc = mb_json_check_keys(doc, v, sub, skeys, err)) < 0 ||
		    (rc = mb_json_get_number(doc, v, sub, "threshold", 1, &m->strata[i].threshold,
					     err)) < 0)
			return rc;
		if (!(m->strata[i].name = strdup(key)))
			return mb_error_oom(err, "stratum name", strlen(key));
		m->n_strata = ++i;
	}
	return 0;
}

static int parse_metric(const mb_json_doc *doc, json_t *obj, const char *at,
			const mb_task *task, mb_spec_metric *m, mb_error *err)
{
	static const char *const keys[] = {"metric", "kind", "direction", "margin", "threshold",
					   "strata", "combine", NULL};
	char path[PATH_MAX_LEN], name[128];
	const char *ref = NULL, *kind = NULL, *dir = NULL;
	int rc, idx;

	if (!json_is_object(obj))
		return mb_json_field_error(doc, err, MB_EINVALID, at, "expected an object");
	if ((rc = mb_json_check_keys(doc, obj, at, keys, err)) < 0 ||
	    (rc = mb_json_get_string(doc, obj, at, "metric", 1, &ref, err)) < 0 ||
	    (rc = mb_json_get_string(doc, obj, at, "kind", 1, &kind, err)) < 0 ||
	    (rc = mb_json_get_string(doc, obj, at, "direction", 1, &dir, err)) < 0 ||
	    (rc = mb_json_get_number(doc, obj, at, "margin", 1, &m->margin, err)) < 0)
		return rc;
	mb_json_path_key(path, sizeof(path), at, "metric");
	if (mb_metric_ref_parse(ref, name, sizeof(name), &m->version) < 0)
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "'%s' is not <metric>@<version> (e.g. %s@%d)", ref,
					   task->metrics[0].name, task->metrics[0].version);
	idx = mb_task_metric_index(task, name);
	if (idx < 0)
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "task %s has no metric '%s'", task->name, name);
	m->name = strdup(name);
	if (!m->name)
		return mb_error_oom(err, "metric name", strlen(name));
	mb_json_path_key(path, sizeof(path), at, "kind");
	if (mb_metric_kind_parse(kind, &m->kind) < 0)
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "'%s' is not continuous, binary or ratio", kind);
	mb_json_path_key(path, sizeof(path), at, "direction");
	if (mb_metric_direction_parse(dir, &m->direction) < 0)
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "'%s' is not higher or lower", dir);
	if (task->metrics[idx].version == m->version) {
		const mb_metric_def *def = &task->metrics[idx];
		if (def->kind != m->kind) {
			mb_json_path_key(path, sizeof(path), at, "kind");
			return mb_json_field_error(doc, err, MB_EINVALID, path,
						   "%s@%d is %s, not %s", def->name, def->version,
						   mb_metric_kind_name(def->kind), kind);
		}
		if (def->direction != m->direction) {
			mb_json_path_key(path, sizeof(path), at, "direction");
			return mb_json_field_error(doc, err, MB_EINVALID, path,
						   "%s@%d is %s-is-better, not %s", def->name,
						   def->version,
						   mb_metric_direction_name(def->direction), dir);
		}
	}
	mb_json_path_key(path, sizeof(path), at, "margin");
	if (!(m->margin > 0) || !isfinite(m->margin))
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "the non-inferiority margin must be > 0 (metric units)");
	rc = mb_json_get_number(doc, obj, at, "threshold", 0, &m->threshold, err);
	if (rc < 0)
		return rc;
	m->has_threshold = rc == 0;
	return parse_metric_strata(doc, obj, at, m, err);
}

static int parse_strata(const mb_json_doc *doc, json_t *obj, const char *at, mb_spec_entry *e,
			mb_error *err)
{
	const char *key;
	json_t *v;
	double sum = 0;
	size_t i = 0, n = json_object_size(obj);
	char path[PATH_MAX_LEN];

	if (n == 0)
		return mb_json_field_error(doc, err, MB_EINVALID, at,
					   "needs at least one stratum weight");
	e->strata = calloc(n, sizeof(*e->strata));
	e->weights = calloc(n, sizeof(*e->weights));
	if (!e->strata || !e->weights)
		return mb_error_oom(err, "strata", n * sizeof(double));
	e->n_strata = n;
	/* jansson keeps insertion order, so strata are listed as written. */
	json_object_foreach(obj, key, v) {
		mb_json_path_key(path, sizeof(path), at, key);
		if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1)
			return mb_json_field_error(doc, err, MB_EINVALID, path,
						   "a stratum weight must be a number in [0, 1]");
		e->strata[i] = strdup(key);
		if (!e->strata[i])
			return mb_error_oom(err, "stratum name", strlen(key));
		e->weights[i] = json_number_value(v);
		sum += e->weights[i];
		i++;
	}
	if (fabs(sum - 1.0) > 1e-9)
		return mb_json_field_error(doc, err, MB_EINVALID, at,
					   "stratum weights sum to %.12g, not 1", sum);
	return 0;
}

static int parse_window(const mb_json_doc *doc, json_t *w, const char *at, int64_t out[2],
			mb_error *err)
{
	if (!json_is_array(w) || json_array_size(w) != 2 ||
	    !json_is_integer(json_array_get(w, 0)) || !json_is_integer(json_array_get(w, 1)))
		return mb_json_field_error(doc, err, MB_EINVALID, at,
					   "a window is null or [first step, last step], two "
					   "integers");
	out[0] = json_integer_value(json_array_get(w, 0));
	out[1] = json_integer_value(json_array_get(w, 1));
	if (out[0] < 0 || out[1] < out[0])
		return mb_json_field_error(doc, err, MB_EINVALID, at,
					   "[%lld, %lld] is not a window of steps (0 <= first <= "
					   "last)", (long long)out[0], (long long)out[1]);
	return 0;
}

static int parse_phases(const mb_json_doc *doc, json_t *obj, const char *at,
			const mb_spec_entry *e, mb_spec_phases *p, mb_error *err)
{
	static const char *const keys[] = {"metric", "names", "cost", "min_segment", "windows",
					   NULL};
	char path[PATH_MAX_LEN], sub[PATH_MAX_LEN], name[128];
	const char *ref = NULL, *cost = "linear";
	json_t *names = NULL, *windows = NULL;
	int64_t min_seg = 0;
	int rc, found = 0;

	if (!json_is_object(obj))
		return mb_json_field_error(doc, err, MB_EINVALID, at, "expected an object");
	if ((rc = mb_json_check_keys(doc, obj, at, keys, err)) < 0 ||
	    (rc = mb_json_get_string(doc, obj, at, "metric", 1, &ref, err)) < 0)
		return rc;
	mb_json_path_key(path, sizeof(path), at, "metric");
	if (mb_metric_ref_parse(ref, name, sizeof(name), &p->version) == 0)
		for (size_t m = 0; m < e->n_metrics && !found; m++)
			found = strcmp(e->metrics[m].name, name) == 0 &&
				e->metrics[m].version == p->version;
	if (!found)
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "'%s' is not one of this entry's metrics (name@version "
					   "as listed under metrics, e.g. %s@%d)", ref,
					   e->metrics[0].name, e->metrics[0].version);
	if (!(p->metric = strdup(name)))
		return mb_error_oom(err, "phases metric", strlen(name));
	if ((rc = mb_json_get_array(doc, obj, at, "names", 1, &names, err)) < 0)
		return rc;
	mb_json_path_key(path, sizeof(path), at, "names");
	if (json_array_size(names) < 2)
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "needs at least two phase names (one boundary)");
	if (json_array_size(names) > 64)
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "at most 64 phases, not %zu", json_array_size(names));
	p->n_phases = json_array_size(names);
	p->names = calloc(p->n_phases, sizeof(*p->names));
	p->has_window = calloc(p->n_phases - 1, sizeof(*p->has_window));
	p->windows = calloc(p->n_phases - 1, sizeof(*p->windows));
	if (!p->names || !p->has_window || !p->windows)
		return mb_error_oom(err, "phases", p->n_phases);
	for (size_t i = 0; i < p->n_phases; i++) {
		const char *s = json_string_value(json_array_get(names, i));
		mb_json_path_index(sub, sizeof(sub), path, i);
		if (!s || !s[0])
			return mb_json_field_error(doc, err, MB_EINVALID, sub,
						   "a phase name is a non-empty string");
		for (size_t j = 0; j < i; j++)
			if (strcmp(p->names[j], s) == 0)
				return mb_json_field_error(doc, err, MB_EINVALID, sub,
							   "phase name '%s' is used twice", s);
		if (!(p->names[i] = strdup(s)))
			return mb_error_oom(err, "phase name", strlen(s));
	}
	if ((rc = mb_json_get_string(doc, obj, at, "cost", 0, &cost, err)) < 0)
		return rc;
	if (mb_stats_cost_parse(cost, &p->cost) < 0) {
		mb_json_path_key(path, sizeof(path), at, "cost");
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "'%s' is not linear (a least-squares line per phase) or "
					   "mean (a level per phase)", cost);
	}
	/* a line through one or two points costs nothing: linear phases need 3 */
	min_seg = p->cost == MB_STATS_COST_LINEAR ? 3 : 2;
	if ((rc = mb_json_get_int(doc, obj, at, "min_segment", 0, min_seg, 10000, &min_seg,
				  err)) < 0)
		return rc;
	p->min_segment = (size_t)min_seg;
	if ((rc = mb_json_get_array(doc, obj, at, "windows", 0, &windows, err)) < 0)
		return rc;
	if (rc == 1)
		return 0;
	mb_json_path_key(path, sizeof(path), at, "windows");
	if (json_array_size(windows) != p->n_phases - 1)
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "%zu phases have %zu boundaries, so %zu windows (null "
					   "for none), not %zu", p->n_phases, p->n_phases - 1,
					   p->n_phases - 1, json_array_size(windows));
	for (size_t i = 0; i + 1 < p->n_phases; i++) {
		json_t *w = json_array_get(windows, i);
		mb_json_path_index(sub, sizeof(sub), path, i);
		if (json_is_null(w))
			continue;
		if ((rc = parse_window(doc, w, sub, p->windows[i], err)) < 0)
			return rc;
		p->has_window[i] = 1;
		for (size_t j = 0; j < i; j++)
			if (p->has_window[j] && p->windows[i][1] <= p->windows[j][0])
				return mb_json_field_error(
					doc, err, MB_EINVALID, sub,
					"ends at step %lld, not after boundary %zu's window "
					"begins (%lld): boundaries are in step order",
					(long long)p->windows[i][1], j + 1,
					(long long)p->windows[j][0]);
	}
	return 0;
}

static int parse_entry(const mb_spec *s, const mb_json_doc *doc, json_t *obj, const char *at,
		       mb_spec_entry *e, mb_error *err)
{
	static const char *const keys[] = {"name", "task", "model", "baseline", "dataset",
					   "params", "strata", "clusters", "metrics", "phases", NULL};
	static const char *const dkeys[] = {"path", "sha256", NULL};
	char path[PATH_MAX_LEN], dpath[PATH_MAX_LEN];
	const char *task = NULL, *sha = NULL;
	json_t *dataset = NULL, *strata = NULL, *metrics = NULL, *phases = NULL, *params;
	int rc;

	if (!json_is_object(obj))
		return mb_json_field_error(doc, err, MB_EINVALID, at, "expected an object");
	if ((rc = mb_json_check_keys(doc, obj, at, keys, err)) < 0 ||
	    (rc = get_nonempty_string(doc, obj, at, "name", &e->name, err)) < 0)
		return rc;
	for (size_t i = 0; i < s->n_entries; i++)
		if (strcmp(s->entries[i].name, e->name) == 0) {
			mb_json_path_key(path, sizeof(path), at, "name");
			return mb_json_field_error(doc, err, MB_EINVALID, path,
						   "entry name '%s' is used twice", e->name);
		}
	if ((rc = mb_json_get_string(doc, obj, at, "task", 1, &task, err)) < 0)
		return rc;
	e->task = mb_task_find(task);
	if (!e->task) {
		mb_json_path_key(path, sizeof(path), at, "task");
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "unknown task '%s' (this build has %s%s)", task,
					   mb_task_at(0)->name, mb_task_count() > 1 ? ", ..." : "");
	}
	if ((rc = get_relpath(doc, obj, at, "model", 0, &e->model, err)) < 0 ||
	    (rc = get_relpath(doc, obj, at, "baseline", 0, &e->baseline, err)) < 0 ||
	    (rc = mb_json_get_object(doc, obj, at, "dataset", 1, &dataset, err)) < 0)
		return rc;
	mb_json_path_key(dpath, sizeof(dpath), at, "dataset");
	if ((rc = mb_json_check_keys(doc, dataset, dpath, dkeys, err)) < 0 ||
	    (rc = get_relpath(doc, dataset, dpath, "path", 1, &e->dataset, err)) < 0 ||
	    (rc = mb_json_get_string(doc, dataset, dpath, "sha256", 1, &sha, err)) < 0)
		return rc;
	if (!mb_sha256_is_hex(sha)) {
		mb_json_path_key(path, sizeof(path), dpath, "sha256");
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "expected 64 lower-case hex digits");
	}
	memcpy(e->dataset_sha256, sha, MB_SHA256_HEX_LEN);
	params = json_object_get(obj, "params");
	mb_json_path_key(path, sizeof(path), at, "params");
	if ((rc = e->task->check_params(doc, params, path, err)) < 0)
		return rc;
	e->params = params ? json_incref(params) : NULL;
	if ((rc = mb_json_get_object(doc, obj, at, "strata", 0, &strata, err)) < 0)
		return rc;
	mb_json_path_key(path, sizeof(path), at, "strata");
	if (rc == 0 && (rc = parse_strata(doc, strata, path, e, err)) < 0)
		return rc;
	if ((rc = mb_json_get_bool(doc, obj, at, "clusters", 0, &e->clusters, err)) < 0)
		return rc;
	if (e->clusters && e->n_strata) {
		mb_json_path_key(path, sizeof(path), at, "clusters");
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "registered strata weights and clustered SEs together "
					   "are not supported yet; choose one");
	}
	if ((rc = mb_json_get_array(doc, obj, at, "metrics", 1, &metrics, err)) < 0)
		return rc;
	mb_json_path_key(path, sizeof(path), at, "metrics");
	if (json_array_size(metrics) == 0)
		return mb_json_field_error(doc, err, MB_EINVALID, path, "needs at least one metric");
	e->metrics = calloc(json_array_size(metrics), sizeof(*e->metrics));
	if (!e->metrics)
		return mb_error_oom(err, "metrics", json_array_size(metrics));
	for (size_t i = 0; i < json_array_size(metrics); i++) {
		char mpath[PATH_MAX_LEN];
		mb_json_path_index(mpath, sizeof(mpath), path, i);
		e->n_metrics = i + 1;
		rc = parse_metric(doc, json_array_get(metrics, i), mpath, e->task, &e->metrics[i],
				  err);
		if (rc < 0)
			return rc;
		for (size_t k = 0; k < e->metrics[i].n_strata && e->n_strata; k++) {
			const char *sn = e->metrics[i].strata[k].name;
			size_t w = 0;
			char field[PATH_MAX_LEN], sfield[PATH_MAX_LEN];
			while (w < e->n_strata && strcmp(e->strata[w], sn) != 0)
				w++;
			if (w < e->n_strata)
				continue;
			mb_json_path_key(field, sizeof(field), mpath, "strata");
			mb_json_path_key(sfield, sizeof(sfield), field, sn);
			return mb_json_field_error(doc, err, MB_EINVALID, sfield,
						   "stratum '%s' is not one of the entry's registered "
						   "strata", sn);
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(e->metrics[j].name, e->metrics[i].name) == 0) {
				char field[PATH_MAX_LEN];
				mb_json_path_key(field, sizeof(field), mpath, "metric");
				return mb_json_field_error(doc, err, MB_EINVALID, field,
							   "metric %s is listed twice",
							   e->metrics[i].name);
			}
	}
	if ((rc = mb_json_get_array(doc, obj, at, "phases", 0, &phases, err)) < 0)
		return rc;
	if (rc == 1)
		return 0;
	mb_json_path_key(path, sizeof(path), at, "phases");
	if (json_array_size(phases) == 0)
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "an empty list; leave phases out instead");
	e->phases = calloc(json_array_size(phases), sizeof(*e->phases));
	if (!e->phases)
		return mb_error_oom(err, "phases", json_array_size(phases));
	for (size_t i = 0; i < json_array_size(phases); i++) {
		char ppath[PATH_MAX_LEN];
		mb_json_path_index(ppath, sizeof(ppath), path, i);
		e->n_phases = i + 1;
		if ((rc = parse_phases(doc, json_array_get(phases, i), ppath, e, &e->phases[i],
				       err)) < 0)
			return rc;
		for (size_t j = 0; j < i; j++)
			if (strcmp(e->phases[j].metric, e->phases[i].metric) == 0) {
				char field[PATH_MAX_LEN];
				mb_json_path_key(field, sizeof(field), ppath, "metric");
				return mb_json_field_error(doc, err, MB_EINVALID, field,
							   "phases of %s are declared twice",
							   e->phases[i].metric);
			}
	}
	return 0;
}

int mb_spec_parse(mb_spec *out, const char *text, size_t len, const char *name, mb_error *err)
{
	static const char *const keys[] = {"format", "suite", "alpha", "power", "bootstrap",
					   "seed", "tasks", NULL};
	mb_json_doc doc;
	int64_t format = 0, bootstrap = 0, seed = 0;
	json_t *tasks = NULL;
	int error;

	memset(out, 0, sizeof(*out));
	error = mb_json_doc_parse(&doc, text, len, name, err);
	if (error < 0)
		return error;
	out->name = strdup(doc.name);
	if (!out->name) {
		error = mb_error_oom(err, "spec", 0);
		goto cleanup;
	}
	if (!json_is_object(doc.root)) {
		error = mb_json_field_error(&doc, err, MB_EINVALID, "", "a suite spec is an object");
		goto cleanup;
	}
	if ((error = mb_json_check_keys(&doc, doc.root, "", keys, err)) < 0 ||
	    (error = mb_json_get_int(&doc, doc.root, "", "format", 1, MB_SPEC_FORMAT,
				     MB_SPEC_FORMAT, &format, err)) < 0 ||
	    (error = get_nonempty_string(&doc, doc.root, "", "suite", &out->suite, err)) < 0 ||
	    (error = mb_json_get_number(&doc, doc.root, "", "alpha", 1, &out->alpha, err)) < 0)
		goto cleanup;
	if (!(out->alpha > 0 && out->alpha < 0.5)) {
		error = mb_json_field_error(&doc, err, MB_EINVALID, "alpha",
					    "one-sided alpha must be in (0, 0.5)");
		goto cleanup;
	}
	if ((error = mb_json_get_number(&doc, doc.root, "", "power", 1, &out->power, err)) < 0)
		goto cleanup;
	if (!(out->power > 0.5 && out->power < 1)) {
		error = mb_json_field_error(&doc, err, MB_EINVALID, "power",
					    "target power must be in (0.5, 1)");
		goto cleanup;
	}
	if ((error = mb_json_get_int(&doc, doc.root, "", "bootstrap", 1, 1000, 1000000,
				     &bootstrap, err)) < 0 ||
	    (error = mb_json_get_int(&doc, doc.root, "", "seed", 1, 0, INT64_MAX, &seed, err)) < 0 ||
	    (error = mb_json_get_array(&doc, doc.root, "", "tasks", 1, &tasks, err)) < 0)
		goto cleanup;
	out->bootstrap = (uint64_t)bootstrap;
	out->seed = (uint64_t)seed;
	if (json_array_size(tasks) == 0) {
		error = mb_json_field_error(&doc, err, MB_EINVALID, "tasks",
					    "needs at least one entry");
		goto cleanup;
	}
	out->entries = calloc(json_array_size(tasks), sizeof(*out->entries));
	if (!out->entries) {
		error = mb_error_oom(err, "spec entries", json_array_size(tasks));
		goto cleanup;
	}
	for (size_t i = 0; i < json_array_size(tasks); i++) {
		char at[PATH_MAX_LEN];
		mb_json_path_index(at, sizeof(at), "tasks", i);
		error = parse_entry(out, &doc, json_array_get(tasks, i), at, &out->entries[i], err);
		out->n_entries = i + 1;
		if (error < 0)
			goto cleanup;
	}
	out->root = json_incref(doc.root);
cleanup:
	mb_json_doc_dispose(&doc);
	if (error < 0)
		mb_spec_dispose(out);
	return error;
}

int mb_spec_load(mb_spec *out, const char *path, mb_error *err)
{
	char *text = NULL;
	size_t len;
	int error;

	memset(out, 0, sizeof(*out));
	error = mb_file_read_text(&text, &len, path, err);
	if (error < 0)
		return error;
	error = mb_spec_parse(out, text, len, path, err);
	free(text);
	return error;
}

static void entry_dispose(mb_spec_entry *e)
{
	free(e->name);
	free(e->model);
	free(e->baseline);
	free(e->dataset);
	json_decref(e->params);
	for (size_t k = 0; k < e->n_strata; k++)
		free(e->strata ? e->strata[k] : NULL);
	free(e->strata);
	free(e->weights);
	for (size_t m = 0; m < e->n_metrics; m++) {
		for (size_t k = 0; k < e->metrics[m].n_strata; k++)
			free(e->metrics[m].strata[k].name);
		free(e->metrics[m].strata);
		free(e->metrics[m].name);
	}
	free(e->metrics);
	for (size_t p = 0; p < e->n_phases; p++) {
		mb_spec_phases *ph = &e->phases[p];
		for (size_t k = 0; ph->names && k < ph->n_phases; k++)
			free(ph->names[k]);
		free(ph->names);
		free(ph->has_window);
		free(ph->windows);
		free(ph->metric);
	}
	free(e->phases);
}

void mb_spec_dispose(mb_spec *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_entries; i++)
		entry_dispose(&s->entries[i]);
	free(s->entries);
	free(s->suite);
	free(s->name);
	json_decref(s->root);
	memset(s, 0, sizeof(*s));
}

const mb_spec_entry *mb_spec_find_entry(const mb_spec *s, const char *name)
{
	for (size_t i = 0; i < s->n_entries; i++)
		if (strcmp(s->entries[i].name, name) == 0)
			return &s->entries[i];
	return NULL;
}

int mb_spec_keep_entries(mb_spec *s, const char *const *names, size_t n, mb_error *err)
{
	size_t kept = 0;

	for (size_t k = 0; k < n; k++) {
		if (!mb_spec_find_entry(s, names[k])) {
			char list[512];
			size_t at = 0;
			list[0] = '\0';
			for (size_t i = 0; i < s->n_entries && at < sizeof(list); i++)
				at += (size_t)snprintf(list + at, sizeof(list) - at, "%s%s",
						       i ? ", " : "", s->entries[i].name);
			return mb_error_set(err, MB_EINVALID, "%s: no entry named '%s' (entries: %s)",
					    s->name, names[k], list);
		}
	}
	for (size_t i = 0; i < s->n_entries; i++) {
		int keep = 0;
		for (size_t k = 0; k < n && !keep; k++)
			keep = strcmp(s->entries[i].name, names[k]) == 0;
		if (keep)
			s->entries[kept++] = s->entries[i];
		else
			entry_dispose(&s->entries[i]);
	}
	s->n_entries = kept;
	return 0;
}

/* --- deviations --------------------------------------------------------------- */

typedef struct diff_ctx {
	mb_spec_deviation *d;
	size_t n, cap;
	mb_error *err;
	int failed;
} diff_ctx;

static char *dump_or_absent(const json_t *v)
{
	if (!v)
		return strdup("(absent)");
	/* 15 digits: the value as a person wrote it (0.2, not 0.20000000000000001);
	 * whether two values differ was decided exactly by json_equal. */
	return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY |
				     JSON_REAL_PRECISION(15));
}

static void add_dev(diff_ctx *c, const char *path, const json_t *a, const json_t *b,
		    const char *entry, const char *metric)
{
	mb_spec_deviation *d;

	if (c->failed)
		return;
	if (c->n == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 8;
		mb_spec_deviation *nd = realloc(c->d, ncap * sizeof(*nd));
		if (!nd) {
			c->failed = 1;
			mb_error_oom(c->err, "spec deviations", ncap * sizeof(*nd));
			return;
		}
		c->d = nd;
		c->cap = ncap;
	}
	d = &c->d[c->n++];
	d->path = strdup(path);
	d->before = dump_or_absent(a);
	d->after = dump_or_absent(b);
	d->entry = entry ? strdup(entry) : NULL;
	d->metric = metric ? strdup(metric) : NULL;
	if (!d->path || !d->before || !d->after || (entry && !d->entry) ||
	    (metric && !d->metric)) {
		c->failed = 1;
		mb_error_oom(c->err, "spec deviation", 0);
	}
}

/* The key an array element is matched by: the entry's name, or the metric's
 * name without its version (for metrics and for phases, which name theirs).
 * Writes "" when the element has none. */
static void element_key(char *buf, size_t cap, const json_t *v, int metrics)
{
	const char *s = json_string_value(json_object_get(v, metrics ? "metric" : "name"));
	buf[0] = '\0';
	if (!s)
		return;
	snprintf(buf, cap, "%s", s);
	if (metrics) {
		char *at = strrchr(buf, '@');
		if (at)
			*at = '\0';
	}
}

static void diff_value(diff_ctx *c, const json_t *a, const json_t *b, const char *path,
		       const char *entry, const char *metric, int depth);

static const json_t *find_keyed(const json_t *arr, const char *key, int metrics)
{
	char k[256];
	for (size_t i = 0; i < json_array_size(arr); i++) {
		element_key(k, sizeof(k), json_array_get(arr, i), metrics);
		if (k[0] && strcmp(k, key) == 0)
			return json_array_get(arr, i);
	}
	return NULL;
}

static void diff_keyed(diff_ctx *c, const json_t *a, const json_t *b, const char *path,
		       const char *entry, int metrics, int depth)
{
	char key[256], sub[PATH_MAX_LEN];

	/* Fall back to a whole-array comparison when an element has no key. */
	for (int side = 0; side < 2; side++) {
		const json_t *arr = side ? b : a;
		for (size_t i = 0; i < json_array_size(arr); i++) {
			element_key(key, sizeof(key), json_array_get(arr, i), metrics);
			if (!key[0]) {
				add_dev(c, path, a, b, entry, NULL);
				return;
			}
		}
	}
	for (size_t i = 0; i < json_array_size(a); i++) {
		const json_t *ea = json_array_get(a, i);
		element_key(key, sizeof(key), ea, metrics);
		snprintf(sub, sizeof(sub), "%s[%s]", path, key);
		diff_value(c, ea, find_keyed(b, key, metrics), sub, metrics ? entry : key,
			   metrics ? key : NULL, depth + 1);
	}
	for (size_t i = 0; i < json_array_size(b); i++) {
		const json_t *eb = json_array_get(b, i);
		element_key(key, sizeof(key), eb, metrics);
		if (find_keyed(a, key, metrics))
			continue;
		snprintf(sub, sizeof(sub), "%s[%s]", path, key);
		add_dev(c, sub, NULL, eb, metrics ? entry : key, metrics ? key : NULL);
	}
}

static void diff_value(diff_ctx *c, const json_t *a, const json_t *b, const char *path,
		       const char *entry, const char *metric, int depth)
{
	char sub[PATH_MAX_LEN];
	const char *key;
	json_t *v;

	if (c->failed || (a && b && json_equal((json_t *)a, (json_t *)b)))
		return;
	if (depth > 64 || !a || !b || !json_is_object(a) || !json_is_object(b)) {
		if (a && b && json_is_array(a) && json_is_array(b) && depth < 64 &&
		    (strcmp(path, "tasks") == 0 ||
		     (entry && !metric && (strstr(path, ".metrics") || strstr(path, ".phases")))))
			diff_keyed(c, a, b, path, entry, strcmp(path, "tasks") != 0, depth);
		else
			add_dev(c, path, a, b, entry, metric);
		return;
	}
	json_object_foreach((json_t *)a, key, v) {
		mb_json_path_key(sub, sizeof(sub), path, key);
		diff_value(c, v, json_object_get(b, key), sub, entry, metric, depth + 1);
	}
	json_object_foreach((json_t *)b, key, v) {
		if (json_object_get(a, key))
			continue;
		mb_json_path_key(sub, sizeof(sub), path, key);
		add_dev(c, sub, NULL, v, entry, metric);
	}
}

int mb_spec_diff(mb_spec_deviation **out, size_t *n, const mb_spec *registered,
		 const mb_spec *working, mb_error *err)
{
	diff_ctx c = {.err = err};

	diff_value(&c, registered->root, working->root, "", NULL, NULL, 0);
	if (c.failed) {
		mb_spec_deviations_free(c.d, c.n);
		*out = NULL;
		*n = 0;
		return MB_ENOMEM;
	}
	*out = c.d;
	*n = c.n;
	return 0;
}

void mb_spec_deviations_free(mb_spec_deviation *d, size_t n)
{
	for (size_t i = 0; d && i < n; i++) {
		free(d[i].path);
		free(d[i].before);
		free(d[i].after);
		free(d[i].entry);
		free(d[i].metric);
	}
	free(d);
}

int mb_spec_deviation_touches(const mb_spec_deviation *d, const char *entry, const char *metric)
{
	if (!d->entry)
		return 1;
	if (strcmp(d->entry, entry) != 0)
		return 0;
	return !d->metric || strcmp(d->metric, metric) == 0;
}
