/* baseline.c: baseline files written from and read into run results
 * (baseline.h). */
#include <mechbench/baseline.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/artifact.h>
#include <mechbench/file.h>
#include <mechbench/json.h>

#define REAL_FLAGS JSON_REAL_PRECISION(17)
#define FIELD_MAX 512

static json_t *entry_json(const mb_entry_result *e, const char *marker)
{
	json_t *files = mb_file_digests_to_json(e->model_files, e->n_model_files);
	json_t *metrics = json_array();

	for (size_t m = 0; m < e->n_metrics; m++) {
		const mb_aggregate *a = &e->aggregates[m];
		json_array_append_new(
			metrics,
			json_pack("{s:s, s:i, s:s, s:s, s:{s:I, s:f, s:f, s:f, s:f, s:f, s:s}}",
				  "name", e->metrics[m].name, "version", e->metrics[m].version,
				  "kind", mb_metric_kind_name(e->metrics[m].kind), "direction",
				  mb_metric_direction_name(e->metrics[m].direction), "aggregate",
				  "n", (json_int_t)a->n, "mean", a->mean, "se", a->se, "level",
				  a->level, "lo", a->lo, "hi", a->hi, "method",
				  mb_stats_method_name(a->method)));
	}
	json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:o, s:s, s:s, s:O?, s:f}", "name", e->name,
			      "task", e->task, "task_version", e->task_version, "model", e->model,
			      "model_files", files, "dataset", e->dataset, "dataset_sha256",
			      e->dataset_sha256, "params", e->params, "seconds", e->seconds);

	/* an entry without an artifact renders as before artifacts existed */
	if (!o || (e->artifact && json_object_set(o, "artifact", e->artifact) < 0)) {
		json_decref(metrics);
		json_decref(o);
		return NULL;
	}
	/* _set_new takes the value, also when it fails */
	if (json_object_set_new(o, "metrics", metrics) < 0 ||
	    json_object_set_new(o, "items", json_string(marker)) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Items one per line: "[\n      {...},\n      {...}\n    ]". */
static char *items_text(const mb_entry_result *e, const char *indent)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	int ok = f != NULL;

	if (ok)
		fputc('[', f);
	for (size_t i = 0; i < e->n_items && ok; i++) {
		json_t *vals = json_array(), *item;
		char *line;
		for (size_t m = 0; m < e->n_metrics; m++)
			json_array_append_new(vals, json_real(e->values[i * e->n_metrics + m]));
		item = json_pack("{s:s, s:s, s:s, s:o}", "key", e->items[i].key, "stratum",
				 e->items[i].stratum, "cluster", e->items[i].cluster, "values", vals);
		line = item ? json_dumps(item, JSON_COMPACT | REAL_FLAGS) : NULL;
		json_decref(item);
		ok = line != NULL;
		if (ok)
			fprintf(f, "%s\n%s  %s", i ? "," : "", indent, line);
		free(line);
	}
	if (ok && e->n_items)
		fprintf(f, "\n%s", indent);
	if (f) {
		fputc(']', f);
		ok = fclose(f) == 0 && ok;
	}
	if (!ok) {
		free(out);
		return NULL;
	}
	return out;
}

int mb_baseline_render(char **out, size_t *len, const mb_run_result *run, const char *entry,
		       mb_error *err)
{
	json_t *doc = NULL, *entries = NULL;
	char *text = NULL, *result = NULL;
	char marker[64];
	size_t total;
	int error = 0, found = 0;

	*out = NULL;
	*len = 0;
	/* A NaN aggregate is stored as NULL; JSON has no NaN, and dropping the
	 * metric would leave a baseline that gate rejects later. */
	for (size_t i = 0; i < run->n_entries; i++) {
		const mb_entry_result *e = &run->entries[i];
		if (entry && strcmp(e->name, entry) != 0)
			continue;
		for (size_t m = 0; m < e->n_metrics; m++) {
			const mb_aggregate *a = &e->aggregates[m];
			const char *bad = !isfinite(a->mean) ? "mean" : !isfinite(a->se) ? "se"
					  : !isfinite(a->level) ? "ci_level" : !isfinite(a->lo) ? "ci_low"
					  : !isfinite(a->hi) ? "ci_high" : NULL;
			if (bad)
				return mb_error_set(err, MB_EINVALID, "run %lld entry %s metric %s: "
						    "aggregate %s is NULL (not a number); a baseline "
						    "needs finite aggregates", (long long)run->id,
						    e->name, e->metrics[m].name, bad);
		}
	}
	entries = json_array();
	for (size_t i = 0; i < run->n_entries; i++) {
		if (entry && strcmp(run->entries[i].name, entry) != 0)
			continue;
		snprintf(marker, sizeof(marker), "\x01mb-items-%zu\x01", i);
		json_array_append_new(entries, entry_json(&run->entries[i], marker));
		found++;
	}
	if (entry && !found) {
		error = mb_error_set(err, MB_ENOTFOUND, "run %lld has no entry '%s'",
				     (long long)run->id, entry);
		goto cleanup;
	}
	doc = json_pack("{s:i, s:s, s:I, s:o, s:O}", "mechbench_baseline", MB_BASELINE_FORMAT,
			"suite", run->prov.suite, "run_id", (json_int_t)run->id, "provenance",
			mb_provenance_to_json(&run->prov), "entries", entries);
	text = doc ? json_dumps(doc, JSON_INDENT(2) | REAL_FLAGS) : NULL;
	if (!text || json_array_size(entries) != (size_t)found) {
		error = mb_error_oom(err, "baseline", 0);
		goto cleanup;
	}
	/* Splice each entry's items, one per line, where its marker string is.
	 * jansson escapes the marker's \x01 bytes as \u0001, which no other
	 * string in the document can produce from these fields. */
	result = text;
	text = NULL;
	for (size_t i = 0; i < run->n_entries; i++) {
		char quoted[80], *at, *items, *next;
		if (entry && strcmp(run->entries[i].name, entry) != 0)
			continue;
		snprintf(quoted, sizeof(quoted), "\"\\u0001mb-items-%zu\\u0001\"", i);
		at = strstr(result, quoted);
		items = at ? items_text(&run->entries[i], "    ") : NULL;
		if (!items) {
			error = mb_error_oom(err, "baseline items", 0);
			goto cleanup;
		}
		total = strlen(result) - strlen(quoted) + strlen(items) + 1;
		next = malloc(total);
		if (!next) {
			free(items);
			error = mb_error_oom(err, "baseline", total);
			goto cleanup;
		}
		snprintf(next, total, "%.*s%s%s", (int)(at - result), result, items,
			 at + strlen(quoted));
		free(items);
		free(result);
		result = next;
	}
	total = strlen(result);
	{
		char *with_nl = realloc(result, total + 2);
		if (!with_nl) {
			error = mb_error_oom(err, "baseline", total + 2);
			goto cleanup;
		}
		result = with_nl;
		result[total++] = '\n';
		result[total] = '\0';
	}
	*out = result;
	*len = total;
	result = NULL;
cleanup:
	free(result);
	free(text);
	json_decref(doc);
	json_decref(entries);
	return error;
}

/* --- parsing ------------------------------------------------------------------------- */

static int get_str_into(const mb_json_doc *doc, json_t *obj, const char *at, const char *key,
			char *buf, size_t cap, mb_error *err)
{
	const char *s = NULL;
	int rc = mb_json_get_string(doc, obj, at, key, 1, &s, err);
	if (rc < 0)
		return rc;
	snprintf(buf, cap, "%s", s);
	return 0;
}

static int get_str_dup(const mb_json_doc *doc, json_t *obj, const char *at, const char *key,
		       char **out, mb_error *err)
{
	const char *s = NULL;
	int rc = mb_json_get_string(doc, obj, at, key, 1, &s, err);
	if (rc < 0)
		return rc;
	*out = strdup(s);
	return *out ? 0 : mb_error_oom(err, "baseline string", strlen(s));
}

static int parse_metric(const mb_json_doc *doc, json_t *o, const char *at, mb_metric_info *mi,
			mb_aggregate *a, mb_error *err)
{
	const char *kind = NULL, *dir = NULL, *method = NULL;
	char path[FIELD_MAX];
	json_t *agg = NULL;
	int64_t version = 0, n = 0;
	int rc;

	if ((rc = get_str_dup(doc, o, at, "name", &mi->name, err)) ||
	    (rc = mb_json_get_int(doc, o, at, "version", 1, 1, 1000000, &version, err)) ||
	    (rc = mb_json_get_string(doc, o, at, "kind", 1, &kind, err)) ||
	    (rc = mb_json_get_string(doc, o, at, "direction", 1, &dir, err)) ||
	    (rc = mb_json_get_object(doc, o, at, "aggregate", 1, &agg, err)))
		return rc;
	mi->version = (int)version;
	if (mb_metric_kind_parse(kind, &mi->kind) < 0 ||
	    mb_metric_direction_parse(dir, &mi->direction) < 0)
		return mb_json_field_error(doc, err, MB_EINVALID, at,
					   "unknown kind '%s' or direction '%s'", kind, dir);
	mb_json_path_key(path, sizeof(path), at, "aggregate");
	if ((rc = mb_json_get_int(doc, agg, path, "n", 1, 0, INT64_MAX, &n, err)) ||
	    (rc = mb_json_get_number(doc, agg, path, "mean", 1, &a->mean, err)) ||
	    (rc = mb_json_get_number(doc, agg, path, "se", 1, &a->se, err)) ||
	    (rc = mb_json_get_number(doc, agg, path, "level", 1, &a->level, err)) ||
	    (rc = mb_json_get_number(doc, agg, path, "lo", 1, &a->lo, err)) ||
	    (rc = mb_json_get_number(doc, agg, path, "hi", 1, &a->hi, err)) ||
	    (rc = mb_json_get_string(doc, agg, path, "method", 1, &method, err)))
		return rc;
	a->n = (size_t)n;
	a->method = MB_STATS_METHOD_NONE;
	for (int k = MB_STATS_METHOD_NONE; k <= MB_STATS_METHOD_BOOT_BCA; k++)
		if (strcmp(method, mb_stats_method_name((mb_stats_method)k)) == 0)
			a->method = (mb_stats_method)k;
	return 0;
}

static int cmp_keys(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int parse_items(const mb_json_doc *doc, json_t *arr, const char *at, mb_entry_result *e,
		       mb_error *err)
{
	size_t n = json_array_size(arr);
	const char **keys;
	char path[FIELD_MAX];
	int rc = 0;

	e->items = calloc(n ? n : 1, sizeof(*e->items));
	e->values = malloc((n ? n : 1) * (e->n_metrics ? e->n_metrics : 1) * sizeof(double));
	keys = malloc((n ? n : 1) * sizeof(*keys));
	if (!e->items || !e->values || !keys) {
		free(keys);
		return mb_error_oom(err, "baseline items", n * sizeof(double));
	}
	for (size_t i = 0; i < n && !rc; i++) {
		json_t *it = json_array_get(arr, i), *vals = NULL;
		const char *key = NULL, *stratum = NULL, *cluster = NULL;
		mb_json_path_index(path, sizeof(path), at, i);
		if ((rc = mb_json_get_string(doc, it, path, "key", 1, &key, err)) ||
		    (rc = mb_json_get_string(doc, it, path, "stratum", 1, &stratum, err)) ||
		    (rc = mb_json_get_string(doc, it, path, "cluster", 1, &cluster, err)) ||
		    (rc = mb_json_get_array(doc, it, path, "values", 1, &vals, err)))
			break;
		if (!mb_sha256_is_hex(key)) {
			char kp[FIELD_MAX];
			mb_json_path_key(kp, sizeof(kp), path, "key");
			rc = mb_json_field_error(doc, err, MB_EINVALID, kp,
						 "expected a sha256 item key (64 hex digits)");
			break;
		}
		memcpy(e->items[i].key, key, MB_SHA256_HEX_LEN);
		e->items[i].stratum = strdup(stratum);
		e->items[i].cluster = strdup(cluster);
		e->n_items = i + 1;
		keys[i] = e->items[i].key;
		if (!e->items[i].stratum || !e->items[i].cluster) {
			rc = mb_error_oom(err, "item labels", 0);
			break;
		}
		if (json_array_size(vals) != e->n_metrics) {
			char vp[FIELD_MAX];
			mb_json_path_key(vp, sizeof(vp), path, "values");
			rc = mb_json_field_error(doc, err, MB_EINVALID, vp,
						 "expected %zu values (one per metric), got %zu",
						 e->n_metrics, json_array_size(vals));
			break;
		}
		for (size_t m = 0; m < e->n_metrics; m++) {
			json_t *v = json_array_get(vals, m);
			if (!json_is_number(v) || !isfinite(json_number_value(v))) {
				char vp[FIELD_MAX];
				snprintf(vp, sizeof(vp), "%s.values[%zu]", path, m);
				rc = mb_json_field_error(doc, err, MB_EINVALID, vp,
							 "expected a finite number");
				break;
			}
			e->values[i * e->n_metrics + m] = json_number_value(v);
		}
	}
	if (!rc && n > 1) {
		qsort(keys, n, sizeof(*keys), cmp_keys);
		for (size_t i = 1; i < n; i++)
			if (strcmp(keys[i], keys[i - 1]) == 0) {
				rc = mb_json_field_error(doc, err, MB_EINVALID, at,
							 "item key %s appears twice", keys[i]);
				break;
			}
	}
	free(keys);
	return rc;
}

static int parse_entry(const mb_json_doc *doc, json_t *o, const char *at, mb_entry_result *e,
		       mb_error *err)
{
	json_t *files = NULL, *metrics = NULL, *items = NULL, *params, *artifact;
	const char *sha = NULL;
	char path[FIELD_MAX];
	int64_t tv = 0;
	int rc;

	if ((rc = get_str_dup(doc, o, at, "name", &e->name, err)) ||
	    (rc = get_str_dup(doc, o, at, "task", &e->task, err)) ||
	    (rc = mb_json_get_int(doc, o, at, "task_version", 1, 1, 1000000, &tv, err)) ||
	    (rc = get_str_dup(doc, o, at, "model", &e->model, err)) ||
	    (rc = mb_json_get_array(doc, o, at, "model_files", 1, &files, err)) ||
	    (rc = get_str_dup(doc, o, at, "dataset", &e->dataset, err)) ||
	    (rc = mb_json_get_string(doc, o, at, "dataset_sha256", 1, &sha, err)) ||
	    (rc = mb_json_get_number(doc, o, at, "seconds", 1, &e->seconds, err)) ||
	    (rc = mb_json_get_array(doc, o, at, "metrics", 1, &metrics, err)) ||
	    (rc = mb_json_get_array(doc, o, at, "items", 1, &items, err)))
		return rc;
	e->task_version = (int)tv;
	if (!mb_sha256_is_hex(sha)) {
		mb_json_path_key(path, sizeof(path), at, "dataset_sha256");
		return mb_json_field_error(doc, err, MB_EINVALID, path, "expected 64 hex digits");
	}
	memcpy(e->dataset_sha256, sha, MB_SHA256_HEX_LEN);
	params = json_object_get(o, "params");
	e->params = params && !json_is_null(params) ? json_incref(params) : NULL;
	artifact = json_object_get(o, "artifact");
	if (artifact && !json_is_null(artifact)) {
		mb_json_path_key(path, sizeof(path), at, "artifact");
		if ((rc = mb_artifact_check(doc, NULL, artifact, path, err)) < 0)
			return rc;
		e->artifact = json_incref(artifact);
	}
	e->model_files = calloc(json_array_size(files) + 1, sizeof(*e->model_files));
	if (!e->model_files)
		return mb_error_oom(err, "model files", json_array_size(files));
	for (size_t f = 0; f < json_array_size(files); f++) {
		json_t *fo = json_array_get(files, f);
		const char *fsha = NULL;
		int64_t bytes = 0;
		snprintf(path, sizeof(path), "%s.model_files[%zu]", at, f);
		if ((rc = get_str_dup(doc, fo, path, "path", &e->model_files[f].path, err)))
			return rc;
		e->n_model_files = f + 1;
		if ((rc = mb_json_get_string(doc, fo, path, "sha256", 1, &fsha, err)) ||
		    (rc = mb_json_get_int(doc, fo, path, "bytes", 1, 0, INT64_MAX, &bytes, err)))
			return rc;
		snprintf(e->model_files[f].sha256, MB_SHA256_HEX_LEN, "%s", fsha);
		e->model_files[f].bytes = (uint64_t)bytes;
	}
	e->metrics = calloc(json_array_size(metrics) + 1, sizeof(*e->metrics));
	e->aggregates = calloc(json_array_size(metrics) + 1, sizeof(*e->aggregates));
	if (!e->metrics || !e->aggregates)
		return mb_error_oom(err, "baseline metrics", json_array_size(metrics));
	mb_json_path_key(path, sizeof(path), at, "metrics");
	if (json_array_size(metrics) == 0)
		return mb_json_field_error(doc, err, MB_EINVALID, path, "needs at least one metric");
	for (size_t m = 0; m < json_array_size(metrics); m++) {
		char mp[FIELD_MAX];
		snprintf(mp, sizeof(mp), "%s.metrics[%zu]", at, m);
		e->n_metrics = m + 1;
		if ((rc = parse_metric(doc, json_array_get(metrics, m), mp, &e->metrics[m],
				       &e->aggregates[m], err)))
			return rc;
	}
	mb_json_path_key(path, sizeof(path), at, "items");
	return parse_items(doc, items, path, e, err);
}

int mb_baseline_parse(mb_run_result *out, const char *text, size_t len, const char *name,
		      mb_error *err)
{
	mb_json_doc doc;
	json_t *prov = NULL, *entries = NULL;
	int64_t format = 0, run_id = 0;
	int error;

	memset(out, 0, sizeof(*out));
	error = mb_json_doc_parse(&doc, text, len, name, err);
	if (error < 0)
		return error;
	if (!json_is_object(doc.root)) {
		error = mb_json_field_error(&doc, err, MB_EINVALID, "", "a baseline is an object");
		goto cleanup;
	}
	if ((error = mb_json_get_int(&doc, doc.root, "", "mechbench_baseline", 1,
				     MB_BASELINE_FORMAT, MB_BASELINE_FORMAT, &format, err)) ||
	    (error = get_str_into(&doc, doc.root, "", "suite", out->prov.suite,
				  sizeof(out->prov.suite), err)) ||
	    (error = mb_json_get_int(&doc, doc.root, "", "run_id", 1, 0, INT64_MAX, &run_id,
				     err)) ||
	    (error = mb_json_get_object(&doc, doc.root, "", "provenance", 1, &prov, err)) ||
	    (error = mb_provenance_from_json(&out->prov, &doc, prov, "provenance", err)) ||
	    (error = mb_json_get_array(&doc, doc.root, "", "entries", 1, &entries, err)))
		goto cleanup;
	out->id = run_id;
	out->entries = calloc(json_array_size(entries) + 1, sizeof(*out->entries));
	if (!out->entries) {
		error = mb_error_oom(err, "baseline entries", json_array_size(entries));
		goto cleanup;
	}
	for (size_t i = 0; i < json_array_size(entries); i++) {
		char at[FIELD_MAX];
		mb_json_path_index(at, sizeof(at), "entries", i);
		out->n_entries = i + 1;
		error = parse_entry(&doc, json_array_get(entries, i), at, &out->entries[i], err);
		if (error)
			goto cleanup;
		for (size_t j = 0; j < i; j++)
			if (strcmp(out->entries[j].name, out->entries[i].name) == 0) {
				error = mb_json_field_error(&doc, err, MB_EINVALID, at,
							    "entry '%s' appears twice",
							    out->entries[i].name);
				goto cleanup;
			}
	}
cleanup:
	mb_json_doc_dispose(&doc);
	if (error < 0)
		mb_run_result_dispose(out);
	return error;
}

int mb_baseline_load(mb_run_result *out, const char *path, mb_error *err)
{
	char *text = NULL;
	size_t len;
	int error;

	memset(out, 0, sizeof(*out));
	if ((error = mb_file_read_text(&text, &len, path, err)) < 0)
		return error;
	error = mb_baseline_parse(out, text, len, path, err);
	free(text);
	return error;
}
