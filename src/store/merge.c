/*
 * merge.c: shard databases into one run (merge.h).
 *
 * Legend: N items of an entry, M metrics of its task, S shards.
 */
#include <mechbench/merge.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/artifact.h>
#include <mechbench/dataset.h>
#include <mechbench/results.h>
#include <mechbench/shard.h>
#include <mechbench/store.h>

typedef struct shard_run {
	const char *path;
	mb_shard part;
	mb_run_result run;
} shard_run;

/* Reads the one shard run of the database at path. */
static int read_shard(shard_run *out, const char *path, mb_error *err)
{
	mb_store_opts so = {.readonly = 1};
	mb_store *s = NULL;
	int64_t *ids = NULL;
	size_t n = 0;
	int error;

	out->path = path;
	if ((error = mb_store_open(&s, path, &so, err)) < 0 ||
	    (error = mb_results_run_ids(&ids, &n, s, NULL, err)) < 0)
		goto cleanup;
	if (n != 1) {
		error = mb_error_set(err, MB_EINVALID, "%s: holds %zu finished runs; a shard database "
				     "holds exactly one (`run --shard i/n` into a fresh --db)",
				     path, n);
		goto cleanup;
	}
	if ((error = mb_store_get_run(&out->run, s, ids[0], err)) < 0)
		goto cleanup;
	if (!mb_shard_unmark(&out->run.prov, &out->part))
		error = mb_error_set(err, MB_EINVALID, "%s: run %lld is not a shard (its provenance "
				     "has no '; shard i/n'); merge takes the databases of `run "
				     "--shard`", path, (long long)ids[0]);
cleanup:
	free(ids);
	mb_store_free(s);
	return error;
}

#define DIFFER(field, what)                                                                   \
	mb_error_set(err, MB_EMISMATCH, "%s: %s %s, but %s has %s: shards must come from one "  \
		     "run of one build", b->path, what, y->field, a->path, x->field)

/* Shard b against the first shard a: same provenance that matters and the
 * same entries. */
static int check_same(const shard_run *a, const shard_run *b, mb_error *err)
{
	const mb_provenance *x = &a->run.prov, *y = &b->run.prov;
	char where[256];

	if (b->part.count != a->part.count)
		return mb_error_set(err, MB_EMISMATCH, "%s: shard %u/%u, but %s is shard %u/%u",
				    b->path, b->part.index, b->part.count, a->path, a->part.index,
				    a->part.count);
	if (strcmp(x->suite, y->suite) != 0)
		return DIFFER(suite, "suite");
	if (strcmp(x->spec_blob, y->spec_blob) != 0)
		return DIFFER(spec_blob, "spec blob");
	if (strcmp(x->code_commit, y->code_commit) != 0 || x->code_dirty != y->code_dirty)
		return mb_error_set(err, MB_EMISMATCH, "%s: code commit %s%s, but %s has %s%s: "
				    "shards must come from one build", b->path, y->code_commit,
				    y->code_dirty ? "-dirty" : "", a->path, x->code_commit,
				    x->code_dirty ? "-dirty" : "");
	if (x->seed != y->seed)
		return mb_error_set(err, MB_EMISMATCH, "%s: seed %llu, but %s has %llu", b->path,
				    (unsigned long long)y->seed, a->path, (unsigned long long)x->seed);
	if (a->run.n_entries != b->run.n_entries)
		return mb_error_set(err, MB_EMISMATCH, "%s: %zu entries, but %s has %zu", b->path,
				    b->run.n_entries, a->path, a->run.n_entries);
	for (size_t i = 0; i < a->run.n_entries; i++) {
		const mb_entry_result *p = &a->run.entries[i], *q = &b->run.entries[i];
		if (strcmp(p->name, q->name) != 0 || strcmp(p->task, q->task) != 0 ||
		    p->task_version != q->task_version)
			return mb_error_set(err, MB_EMISMATCH, "%s: entry %zu is %s (task %s@%d), but "
					    "%s has %s (task %s@%d)", b->path, i, q->name, q->task,
					    q->task_version, a->path, p->name, p->task,
					    p->task_version);
		if (strcmp(p->dataset, q->dataset) != 0 ||
		    strcmp(p->dataset_sha256, q->dataset_sha256) != 0)
			return mb_error_set(err, MB_EMISMATCH, "%s: entry %s: dataset %s (sha256 %s), "
					    "but %s has %s (sha256 %s)", b->path, q->name, q->dataset,
					    q->dataset_sha256, a->path, p->dataset,
					    p->dataset_sha256);
		if (strcmp(p->model, q->model) != 0)
			return mb_error_set(err, MB_EMISMATCH, "%s: entry %s: model %s, but %s has %s",
					    b->path, q->name, q->model, a->path, p->model);
		if (p->n_model_files != q->n_model_files)
			return mb_error_set(err, MB_EMISMATCH, "%s: entry %s: %zu model files, but %s "
					    "has %zu", b->path, q->name, q->n_model_files, a->path,
					    p->n_model_files);
		for (size_t f = 0; f < p->n_model_files; f++)
			if (strcmp(p->model_files[f].path, q->model_files[f].path) != 0 ||
			    strcmp(p->model_files[f].sha256, q->model_files[f].sha256) != 0)
				return mb_error_set(err, MB_EMISMATCH, "%s: entry %s: model file %s "
						    "sha256 %s, but %s has %s %s", b->path, q->name,
						    q->model_files[f].path, q->model_files[f].sha256,
						    a->path, p->model_files[f].path,
						    p->model_files[f].sha256);
		if (p->n_metrics != q->n_metrics)
			return mb_error_set(err, MB_EMISMATCH, "%s: entry %s: %zu metrics, but %s has "
					    "%zu", b->path, q->name, q->n_metrics, a->path,
					    p->n_metrics);
		for (size_t m = 0; m < p->n_metrics; m++)
			if (strcmp(p->metrics[m].name, q->metrics[m].name) != 0 ||
			    p->metrics[m].version != q->metrics[m].version)
				return mb_error_set(err, MB_EMISMATCH, "%s: entry %s: metric %s@%d, but "
						    "%s has %s@%d", b->path, q->name,
						    q->metrics[m].name, q->metrics[m].version, a->path,
						    p->metrics[m].name, p->metrics[m].version);
		if (!(p->params ? q->params && json_equal(p->params, q->params) : !q->params))
			return mb_error_set(err, MB_EMISMATCH, "%s: entry %s: params differ from %s's",
					    b->path, q->name, a->path);
		/* every part computed the artifact from all the items (shard.h) */
		if (!p->artifact != !q->artifact)
			return mb_error_set(err, MB_EMISMATCH, "%s: entry %s has %s artifact, but %s "
					    "has %s", b->path, q->name, q->artifact ? "an" : "no",
					    a->path, p->artifact ? "one" : "none");
		if (mb_artifact_first_diff(where, sizeof(where), p->artifact, q->artifact,
					   "artifact"))
			return mb_error_set(err, MB_EMISMATCH, "%s: entry %s: the artifact differs "
					    "from %s's at %s; every shard computes it from all the "
					    "entry's items, so they must agree (is the task's "
					    "prepare deterministic?)", b->path, q->name, a->path,
					    where);
	}
	return 0;
}

/* Entry i of every shard into out: values by key in dataset order, then the
 * aggregates from all of them. */
static int merge_entry(mb_entry_result *out, const shard_run *sh, size_t n_sh, size_t i,
		       const mb_spec *spec, const char *root, mb_error *err)
{
	const mb_entry_result *head = &sh[0].run.entries[i];
	const mb_spec_entry *se = mb_spec_find_entry(spec, head->name);
	size_t nm = head->n_metrics, n;
	double *values = NULL; /* (N, M) */
	size_t *owner = NULL;  /* (N) 1 + the shard holding item i; 0: none yet */
	double seconds = 0;
	mb_dataset d;
	int error;

	memset(&d, 0, sizeof(d));
	if (!se || se->task->version != head->task_version ||
	    strcmp(se->task->name, head->task) != 0)
		return mb_error_set(err, MB_EMISMATCH, "%s: entry %s (task %s@%d) is not in suite %s",
				    sh[0].path, head->name, head->task, head->task_version,
				    spec->suite);
	if ((error = mb_runner_load_dataset(&d, se, root, err)) < 0)
		return error;
	if (strcmp(d.sha256, head->dataset_sha256) != 0) {
		error = mb_error_set(err, MB_EMISMATCH, "%s: entry %s ran dataset sha256 %s, but %s "
				     "is %s", sh[0].path, head->name, head->dataset_sha256, d.name,
				     d.sha256);
		goto cleanup;
	}
	n = d.items.n;
	values = malloc((n ? n : 1) * (nm ? nm : 1) * sizeof(*values));
	owner = calloc(n ? n : 1, sizeof(*owner));
	if (!values || !owner) {
		error = mb_error_oom(err, "merged values", n * nm * sizeof(*values));
		goto cleanup;
	}
	for (size_t s = 0; s < n_sh; s++) {
		const mb_entry_result *p = &sh[s].run.entries[i];
		seconds += p->seconds;
		for (size_t j = 0; j < p->n_items; j++) {
			const mb_item_ref *it = &p->items[j];
			long at = mb_dataset_find(&d, it->key);
			if (at < 0) {
				error = mb_error_set(err, MB_EMISMATCH, "%s: entry %s: item %s is not in "
						     "dataset %s", sh[s].path, p->name, it->key,
						     d.name);
				goto cleanup;
			}
			if (owner[at]) {
				error = mb_error_set(err, MB_EMISMATCH, "%s: entry %s: item %s is also "
						     "in %s: shards must cover each item once",
						     sh[s].path, p->name, it->key,
						     sh[owner[at] - 1].path);
				goto cleanup;
			}
			if (strcmp(it->stratum, d.items.items[at].stratum) != 0 ||
			    strcmp(it->cluster, d.items.items[at].cluster) != 0) {
				error = mb_error_set(err, MB_EMISMATCH, "%s: entry %s: item %s has "
						     "stratum '%s' cluster '%s', but %s says '%s' "
						     "'%s'", sh[s].path, p->name, it->key,
						     it->stratum, it->cluster, d.name,
						     d.items.items[at].stratum,
						     d.items.items[at].cluster);
				goto cleanup;
			}
			owner[at] = s + 1;
			memcpy(values + (size_t)at * nm, p->values + j * nm, nm * sizeof(*values));
		}
	}
	for (size_t j = 0; j < n; j++)
		if (!owner[j]) {
			error = mb_error_set(err, MB_EMISMATCH, "entry %s: item %s of %s is in none of "
					     "the %zu shards", head->name, d.items.items[j].key,
					     d.name, n_sh);
			goto cleanup;
		}
	error = mb_shard_whole_entry(out, head, &d, values, err);
	values = NULL; /* taken over */
	if (error < 0)
		goto cleanup;
	out->seconds = seconds;
	if ((error = mb_runner_entry_finish(out, spec, se, &d, err)) < 0)
		mb_entry_result_dispose(out);
cleanup:
	free(values);
	free(owner);
	mb_dataset_dispose(&d);
	return error;
}

int mb_merge_shards(mb_run_result *out, const char *const *paths, size_t n, const mb_spec *spec,
		    const char *spec_blob, const char *root, mb_error *err)
{
	shard_run *sh = calloc(n ? n : 1, sizeof(*sh));
	const shard_run **by_index = NULL; /* (count) */
	int error = 0;

	memset(out, 0, sizeof(*out));
	if (!sh)
		return mb_error_oom(err, "shards", n * sizeof(*sh));
	if (n == 0) {
		error = mb_error_set(err, MB_EINVALID, "merge: no shard databases given");
		goto cleanup;
	}
	for (size_t s = 0; s < n; s++) {
		if ((error = read_shard(&sh[s], paths[s], err)) < 0 ||
		    (s > 0 && (error = check_same(&sh[0], &sh[s], err)) < 0))
			goto cleanup;
	}
	if (strcmp(sh[0].run.prov.spec_blob, spec_blob) != 0) {
		error = mb_error_set(err, MB_EMISMATCH, "%s: ran spec blob %s, but suite %s is blob "
				     "%s now", sh[0].path, sh[0].run.prov.spec_blob, spec->name,
				     spec_blob);
		goto cleanup;
	}
	if (!(by_index = calloc(sh[0].part.count, sizeof(*by_index)))) {
		error = mb_error_oom(err, "shards", sh[0].part.count * sizeof(*by_index));
		goto cleanup;
	}
	for (size_t s = 0; s < n; s++) {
		const shard_run *other = by_index[sh[s].part.index];
		if (other) {
			error = mb_error_set(err, MB_EMISMATCH, "%s: shard %u/%u again (also %s)",
					     sh[s].path, sh[s].part.index, sh[s].part.count,
					     other->path);
			goto cleanup;
		}
		by_index[sh[s].part.index] = &sh[s];
	}
	for (unsigned k = 0; k < sh[0].part.count; k++)
		if (!by_index[k]) {
			error = mb_error_set(err, MB_EMISMATCH, "shard %u/%u is missing (given %zu of "
					     "%u shards)", k, sh[0].part.count, n,
					     sh[0].part.count);
			goto cleanup;
		}
	out->prov = sh[0].run.prov;
	for (size_t s = 1; s < n; s++) {
		const mb_provenance *p = &sh[s].run.prov;
		if (strcmp(p->started_at, out->prov.started_at) < 0)
			memcpy(out->prov.started_at, p->started_at, sizeof(p->started_at));
		if (strcmp(p->finished_at, out->prov.finished_at) > 0)
			memcpy(out->prov.finished_at, p->finished_at, sizeof(p->finished_at));
		if (p->wall_seconds > out->prov.wall_seconds)
			out->prov.wall_seconds = p->wall_seconds;
	}
	if (!(out->entries = calloc(sh[0].run.n_entries ? sh[0].run.n_entries : 1,
				    sizeof(*out->entries)))) {
		error = mb_error_oom(err, "merged entries", sh[0].run.n_entries);
		goto cleanup;
	}
	for (size_t i = 0; i < sh[0].run.n_entries; i++) {
		if ((error = merge_entry(&out->entries[i], sh, n, i, spec, root, err)) < 0)
			goto cleanup;
		out->n_entries = i + 1;
	}
cleanup:
	for (size_t s = 0; s < n; s++)
		mb_run_result_dispose(&sh[s].run);
	free(sh);
	free(by_index);
	if (error < 0)
		mb_run_result_dispose(out);
	return error;
}

int mb_merge_spec_path(char *out, size_t cap, const char *path, mb_error *err)
{
	shard_run sh;
	int error;

	memset(&sh, 0, sizeof(sh));
	if ((error = read_shard(&sh, path, err)) == 0)
		snprintf(out, cap, "%s", sh.run.prov.spec_path);
	mb_run_result_dispose(&sh.run);
	return error;
}
