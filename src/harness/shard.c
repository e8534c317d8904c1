/*
 * shard.c: the split of an entry's items over parts and the whole entry put
 * back together (shard.h).
 *
 * Legend: N items of the entry, M metrics of its task.
 */
#include <mechbench/shard.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/parse.h>
#include <mechbench/str.h>

#define SHARD_MARK "; shard "

int mb_shard_parse(mb_shard *out, const char *text, mb_error *err)
{
	const char *slash = text ? strchr(text, '/') : NULL;
	char idx[32];
	int64_t i, n;

	if (!slash || (size_t)(slash - text) >= sizeof(idx) || slash == text)
		return mb_error_set(err, MB_EINVALID, "--shard: expected i/n (e.g. 0/4), not '%s'",
				    text ? text : "");
	memcpy(idx, text, (size_t)(slash - text));
	idx[slash - text] = '\0';
	if (mb_parse_i64(slash + 1, 1, 65536, &n, "--shard count", err) < 0 ||
	    mb_parse_i64(idx, 0, n - 1, &i, "--shard index", err) < 0)
		return mb_error_set(err, MB_EINVALID, "--shard: expected i/n with 0 <= i < n <= "
				    "65536, not '%s'", text);
	out->index = (unsigned)i;
	out->count = (unsigned)n;
	return 0;
}

int mb_shard_items(size_t **out, size_t *n, const mb_dataset *d, mb_shard s, mb_error *err)
{
	size_t *idx = malloc((d->items.n ? d->items.n : 1) * sizeof(*idx));
	size_t k = 0;

	*out = NULL;
	*n = 0;
	if (!idx)
		return mb_error_oom(err, "shard items", d->items.n * sizeof(*idx));
	MB_ASSERT(d->by_key && s.count > 0 && s.index < s.count);
	/* the items of key rank r = index, index + count, ..., then back in
	 * dataset order (a part keeps the dataset's order among its items) */
	for (size_t r = s.index; r < d->items.n; r += s.count)
		idx[k++] = d->by_key[r];
	for (size_t a = 1; a < k; a++) {
		size_t v = idx[a], b = a;
		for (; b > 0 && idx[b - 1] > v; b--)
			idx[b] = idx[b - 1];
		idx[b] = v;
	}
	*out = idx;
	*n = k;
	return 0;
}

int mb_shard_view(mb_dataset *out, const mb_dataset *d, const size_t *idx, size_t n,
		  mb_error *err)
{
	*out = *d;
	out->by_key = NULL;
	out->items.items = malloc((n ? n : 1) * sizeof(*out->items.items));
	out->items.n = out->items.cap = 0;
	if (!out->items.items)
		return mb_error_oom(err, "shard view", n * sizeof(*out->items.items));
	for (size_t j = 0; j < n; j++)
		out->items.items[j] = d->items.items[idx[j]];
	out->items.n = out->items.cap = n;
	return 0;
}

void mb_shard_view_dispose(mb_dataset *v)
{
	free(v->items.items);
	memset(v, 0, sizeof(*v));
}

int mb_shard_run_entry(void *payload, mb_entry_result *out, const mb_spec *spec,
		       const mb_spec_entry *e, const mb_dataset *d, const char *root,
		       const char *model_dir, const char *model_label, const mb_runner_opts *opts,
		       mb_error *err)
{
	const mb_shard *s = payload;
	mb_runner_opts plain = *opts;
	mb_dataset view;
	size_t *idx = NULL, n = 0;
	int error;

	(void)spec;
	memset(out, 0, sizeof(*out));
	memset(&view, 0, sizeof(view));
	plain.split = NULL;
	if ((error = mb_shard_items(&idx, &n, d, *s, err)) < 0 ||
	    (error = mb_shard_view(&view, d, idx, n, err)) < 0 ||
	    (error = mb_runner_run_values(out, e, d, &view, root, model_dir, model_label,
					  &plain, err)) < 0)
		goto cleanup;
	/* a part's aggregates mean nothing: NaN, stored as NULL */
	for (size_t m = 0; m < out->n_metrics; m++)
		out->aggregates[m] = (mb_aggregate){out->n_items, NAN, NAN, NAN, NAN, NAN,
						    MB_STATS_METHOD_NONE};
cleanup:
	mb_shard_view_dispose(&view);
	free(idx);
	return error;
}

int mb_shard_whole_entry(mb_entry_result *out, const mb_entry_result *head, const mb_dataset *d,
			 double *values, mb_error *err)
{
	size_t nm = head->n_metrics, n = d->items.n;
	int error = 0;

	memset(out, 0, sizeof(*out));
	out->values = values;
	out->name = mb_str_dup(head->name);
	out->task = mb_str_dup(head->task);
	out->task_version = head->task_version;
	out->model = mb_str_dup(head->model);
	out->dataset = mb_str_dup(head->dataset);
	out->params = head->params ? json_incref(head->params) : NULL;
	out->artifact = head->artifact ? json_incref(head->artifact) : NULL;
	memcpy(out->dataset_sha256, head->dataset_sha256, sizeof(out->dataset_sha256));
	out->seconds = head->seconds;
	out->n_metrics = nm;
	out->metrics = calloc(nm ? nm : 1, sizeof(*out->metrics));
	out->aggregates = calloc(nm ? nm : 1, sizeof(*out->aggregates));
	out->model_files = calloc(head->n_model_files ? head->n_model_files : 1,
				  sizeof(*out->model_files));
	out->items = calloc(n ? n : 1, sizeof(*out->items));
	if (!out->name || !out->task || !out->model || !out->dataset || !out->metrics ||
	    !out->aggregates || !out->model_files || !out->items) {
		error = mb_error_oom(err, "whole entry", n * sizeof(*out->items));
		goto cleanup;
	}
	for (size_t m = 0; m < nm; m++) {
		out->metrics[m] = head->metrics[m];
		if (!(out->metrics[m].name = mb_str_dup(head->metrics[m].name))) {
			error = mb_error_oom(err, "metric name", 0);
			goto cleanup;
		}
	}
	for (size_t f = 0; f < head->n_model_files; f++) {
		out->model_files[f] = head->model_files[f];
		out->n_model_files = f + 1;
		if (!(out->model_files[f].path = mb_str_dup(head->model_files[f].path))) {
			error = mb_error_oom(err, "model file path", 0);
			goto cleanup;
		}
	}
	for (size_t i = 0; i < n; i++) {
		const mb_item *it = &d->items.items[i];
		memcpy(out->items[i].key, it->key, sizeof(it->key));
		out->items[i].stratum = mb_str_dup(it->stratum);
		out->items[i].cluster = mb_str_dup(it->cluster);
		out->n_items = i + 1;
		if (!out->items[i].stratum || !out->items[i].cluster) {
			error = mb_error_oom(err, "item labels", 0);
			goto cleanup;
		}
	}
cleanup:
	if (error < 0)
		mb_entry_result_dispose(out);
	return error;
}

void mb_shard_mark(mb_provenance *p, mb_shard s)
{
	size_t len = strlen(p->blas_config);
	char mark[64];
	int w = snprintf(mark, sizeof(mark), SHARD_MARK "%u/%u", s.index, s.count);

	/* the mark always fits: the BLAS text gives way to it */
	if (len + (size_t)w >= sizeof(p->blas_config))
		len = sizeof(p->blas_config) - 1 - (size_t)w;
	memcpy(p->blas_config + len, mark, (size_t)w + 1);
}

int mb_shard_unmark(mb_provenance *p, mb_shard *out)
{
	char *at = NULL, *next = p->blas_config;
	unsigned i, n;
	char tail;

	out->index = 0;
	out->count = 1;
	while ((next = strstr(next, SHARD_MARK)) != NULL)
		at = next++;
	if (!at || sscanf(at + strlen(SHARD_MARK), "%u/%u%c", &i, &n, &tail) != 2 || n == 0 ||
	    i >= n)
		return 0;
	out->index = i;
	out->count = n;
	*at = '\0';
	return 1;
}
