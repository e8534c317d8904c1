/* task.c: items, content keys, metric references and the task registry. */
#include <mechbench/task.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/file.h>
#include <mechbench/parse.h>

#define MB_TASK(name) extern const mb_task mb_task_##name;
#include "tasks.def"
#undef MB_TASK

static const mb_task *const registry[] = {
#define MB_TASK(name) &mb_task_##name,
#include "tasks.def"
#undef MB_TASK
};

size_t mb_task_count(void)
{
	return sizeof(registry) / sizeof(registry[0]);
}

const mb_task *mb_task_at(size_t i)
{
	return i < mb_task_count() ? registry[i] : NULL;
}

const mb_task *mb_task_find(const char *name)
{
	for (size_t i = 0; i < mb_task_count(); i++)
		if (strcmp(registry[i]->name, name) == 0)
			return registry[i];
	return NULL;
}

int mb_task_metric_index(const mb_task *t, const char *name)
{
	for (size_t m = 0; m < t->n_metrics; m++)
		if (strcmp(t->metrics[m].name, name) == 0)
			return (int)m;
	return -1;
}

int mb_task_finish(const mb_task *t, const mb_item *items, size_t n, double *values,
		   mb_error *err)
{
	size_t nm = t->n_metrics;

	for (size_t k = 0; k < t->n_derived; k++) {
		const mb_metric_diff *d = &t->derived[k];
		int m = mb_task_metric_index(t, d->metric), a = mb_task_metric_index(t, d->a),
		    b = mb_task_metric_index(t, d->b);

		MB_ASSERT(m >= 0 && a >= 0 && b >= 0);
		for (size_t j = 0; j < t->n_derived; j++)
			MB_ASSERT(strcmp(t->derived[j].metric, d->a) != 0 &&
				  strcmp(t->derived[j].metric, d->b) != 0);
		for (size_t i = 0; i < n; i++)
			values[i * nm + (size_t)m] =
				values[i * nm + (size_t)a] - values[i * nm + (size_t)b];
	}
	for (size_t i = 0; i < n; i++)
		for (size_t m = 0; m < nm; m++)
			if (!isfinite(values[i * nm + m]))
				return mb_error_set(err, MB_EINVALID, "item %s: %s is not finite",
						    items[i].key, t->metrics[m].name);
	return 0;
}

int mb_task_run(const mb_task *t, void *state, const mb_item *items, size_t n, double *values,
		mb_error *err)
{
	int rc = t->run(state, items, n, values, err);

	return rc < 0 ? rc : mb_task_finish(t, items, n, values, err);
}

int mb_metric_ref_parse(const char *ref, char *name, size_t cap, int *version)
{
	const char *at = strrchr(ref, '@');
	int64_t v;

	if (!at || at == ref || (size_t)(at - ref) >= cap)
		return MB_EINVALID;
	if (mb_parse_i64(at + 1, 1, 1000000, &v, "metric version", NULL) < 0)
		return MB_EINVALID;
	memcpy(name, ref, (size_t)(at - ref));
	name[at - ref] = '\0';
	if (strchr(name, '@'))
		return MB_EINVALID;
	*version = (int)v;
	return 0;
}

const char *mb_metric_kind_name(mb_metric_kind k)
{
	switch (k) {
	case MB_METRIC_CONTINUOUS: return "continuous";
	case MB_METRIC_BINARY: return "binary";
	case MB_METRIC_RATIO: return "ratio";
	}
	return "unknown";
}

const char *mb_metric_direction_name(mb_metric_direction d)
{
	return d == MB_LOWER_IS_BETTER ? "lower" : "higher";
}

int mb_metric_kind_parse(const char *s, mb_metric_kind *out)
{
	static const mb_metric_kind all[] = {MB_METRIC_CONTINUOUS, MB_METRIC_BINARY,
					     MB_METRIC_RATIO};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (strcmp(s, mb_metric_kind_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	return MB_EINVALID;
}

int mb_metric_direction_parse(const char *s, mb_metric_direction *out)
{
	if (strcmp(s, "higher") == 0)
		*out = MB_HIGHER_IS_BETTER;
	else if (strcmp(s, "lower") == 0)
		*out = MB_LOWER_IS_BETTER;
	else
		return MB_EINVALID;
	return 0;
}

/* --- items ----------------------------------------------------------------- */

uint64_t mb_item_key_index(const char *key)
{
	uint64_t v = 0;

	for (int i = 0; i < 16; i++) {
		char ch = key[i];
		MB_ASSERT((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'));
		v = v * 16 + (uint64_t)(ch >= 'a' ? ch - 'a' + 10 : ch - '0');
	}
	return v;
}

int mb_item_key(char key[MB_SHA256_HEX_LEN], const char *stratum, const char *cluster,
		const json_t *input, mb_error *err)
{
	json_t *obj = json_object();
	char *text = NULL;
	int error = 0;

	if (!obj || json_object_set_new(obj, "stratum", json_string(stratum)) < 0 ||
	    json_object_set_new(obj, "cluster", json_string(cluster)) < 0 ||
	    json_object_set(obj, "input", (json_t *)input) < 0) {
		error = mb_error_oom(err, "item key", 0);
		goto cleanup;
	}
	text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
	if (!text) {
		error = mb_error_oom(err, "item key", 0);
		goto cleanup;
	}
	mb_sha256_hex_buf(key, text, strlen(text));
cleanup:
	free(text);
	json_decref(obj);
	return error;
}

int mb_item_list_add(mb_item_list *l, const char *stratum, const char *cluster, json_t *input,
		     mb_error *err)
{
	mb_item it;
	int error;

	memset(&it, 0, sizeof(it));
	it.input = input;
	if (!input || !stratum || !stratum[0] || !cluster || !cluster[0]) {
		error = mb_error_set(err, MB_EINVALID,
				     "item %zu: empty stratum, cluster or input", l->n);
		goto fail;
	}
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;
		mb_item *ni = realloc(l->items, ncap * sizeof(*ni));
		if (!ni) {
			error = mb_error_oom(err, "item list", ncap * sizeof(*ni));
			goto fail;
		}
		l->items = ni;
		l->cap = ncap;
	}
	it.stratum = strdup(stratum);
	it.cluster = strdup(cluster);
	if (!it.stratum || !it.cluster) {
		error = mb_error_oom(err, "item labels", strlen(stratum) + strlen(cluster));
		goto fail;
	}
	error = mb_item_key(it.key, stratum, cluster, input, err);
	if (error < 0)
		goto fail;
	l->items[l->n++] = it;
	return 0;
fail:
	free(it.stratum);
	free(it.cluster);
	json_decref(it.input);
	return error;
}

void mb_item_list_dispose(mb_item_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++) {
		free(l->items[i].stratum);
		free(l->items[i].cluster);
		json_decref(l->items[i].input);
	}
	free(l->items);
	memset(l, 0, sizeof(*l));
}

int mb_task_open(void **out, const mb_task *t, const char *root, const char *model_dir,
		 const json_t *params, mb_error *err)
{
	json_t *joined = NULL; /* a shallow copy of params with the joined paths */
	int error = 0;

	*out = NULL;
	if (!t->path_params || !root || !root[0] || !json_is_object(params))
		return t->open(out, model_dir, params, err);
	for (const char *const *k = t->path_params; *k; k++) {
		const json_t *v = json_object_get(params, *k);
		char path[4096];
		if (!json_is_string(v) || !json_string_length(v) || json_string_value(v)[0] == '/')
			continue;
		if (!joined && !(joined = json_copy((json_t *)params)))
			return mb_error_oom(err, "params", json_object_size(params));
		if (mb_file_path_join(path, sizeof(path), root, json_string_value(v), err) < 0) {
			/* the root alone may fill a line: name the param and its value */
			error = mb_error_set(err, MB_EINVALID, "params.%s: '%s' under the spec's "
					     "root (%zu bytes) is too long a path", *k,
					     json_string_value(v), strlen(root));
			goto cleanup;
		}
		/* nocheck: root's bytes are the file system's, not necessarily UTF-8 */
		if (json_object_set_new(joined, *k, json_string_nocheck(path)) < 0) {
			error = mb_error_oom(err, "params", strlen(path));
			goto cleanup;
		}
	}
	error = t->open(out, model_dir, joined ? joined : params, err);
cleanup:
	json_decref(joined);
	return error;
}

int mb_task_read_source(char **out, size_t *len, const json_t *params, const char *what,
			mb_error *err)
{
	const json_t *p = json_object_get(params, "source");
	const json_t *h = json_object_get(params, "source_sha256");
	char sha[MB_SHA256_HEX_LEN];
	int rc;

	*out = NULL;
	*len = 0;
	if (!json_is_string(p) || !json_string_length(p))
		return mb_error_set(err, MB_EINVALID, "params.source: required: the path of the "
				    "source file (%s)", what);
	if (!json_is_string(h) || json_string_length(h) != MB_SHA256_HEX_LEN - 1)
		return mb_error_set(err, MB_EINVALID, "params.source_sha256: required: the sha256 "
				    "of %s", json_string_value(p));
	if ((rc = mb_file_read_text(out, len, json_string_value(p), err)) < 0)
		return rc;
	mb_sha256_hex_buf(sha, *out, *len);
	if (strcmp(sha, json_string_value(h)) != 0) {
		rc = mb_error_set(err, MB_EMISMATCH, "%s: sha256 %s, params.source_sha256 says %s",
				  json_string_value(p), sha, json_string_value(h));
		free(*out);
		*out = NULL;
		*len = 0;
	}
	return rc;
}

int mb_task_text_tokens(int32_t *out, int *n, const mb_tokenizer *tok, int n_vocab, int32_t bos,
			const mb_item *it, int cap, const char *why, mb_error *err)
{
	const json_t *tx = json_object_get(it->input, "text");
	int32_t *ids = NULL;
	int k = 0, len = 0, rc;

	*n = 0;
	if (!json_is_string(tx))
		return mb_error_set(err, MB_EINVALID, "item %.16s: \"text\": expected a string",
				    it->key);
	if ((rc = mb_tokenizer_encode(tok, json_string_value(tx), &ids, &len, err)) < 0)
		return mb_error_prefix(err, "item %.16s: text", it->key);
	if (bos >= 0 && k < cap)
		out[k++] = bos;
	for (int j = 0; j < len && k < cap; j++) {
		if (ids[j] < 0 || ids[j] >= n_vocab) {
			rc = mb_error_set(err, MB_EINVALID, "item %.16s: token id %d is outside the "
					  "model's vocabulary %d", it->key, (int)ids[j], n_vocab);
			break;
		}
		out[k++] = ids[j];
	}
	free(ids);
	if (rc == 0 && k < 2)
		rc = mb_error_set(err, MB_EINVALID, "item %.16s: %d token%s: %s", it->key, k,
				  k == 1 ? "" : "s", why);
	*n = k;
	return rc;
}
