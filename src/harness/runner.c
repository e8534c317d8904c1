/*
 * runner.c: runs suite entries over their items with OpenMP, and computes
 * aggregates (runner.h).
 *
 * Legend: N items, M metrics, B items per batch (the task's).
 */
#include <mechbench/runner.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <mechbench/gemm.h>
#include <omp.h>

#include <mechbench/artifact.h>
#include <mechbench/buildinfo.h>
#include <mechbench/file.h>
#include <mechbench/stats.h>
#include <mechbench/str.h>
#include <mechbench/verdict.h>

double mb_runner_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void mb_provenance_init(mb_provenance *p, int threads)
{
	const char *commit = mb_build_commit();
	size_t n = strlen(commit);
	static const char dirty[] = "-dirty";

	memset(p, 0, sizeof(*p));
	p->spec_committed = -1;
	p->repo_dirty = -1;
	snprintf(p->code_version, sizeof(p->code_version), "%s", mb_build_version());
	p->code_dirty = n > sizeof(dirty) - 1 && strcmp(commit + n - (sizeof(dirty) - 1), dirty) == 0;
	snprintf(p->code_commit, sizeof(p->code_commit), "%.*s",
		 (int)(p->code_dirty ? n - (sizeof(dirty) - 1) : n), commit);
	p->threads = threads > 0 ? threads : omp_get_max_threads();
	mb_cpu_model(p->cpu, sizeof(p->cpu));
	{
		/* The GEMM backend and ISA ride inside the BLAS string (no schema change). */
		char g[128];

		mb_gemm_describe(g, sizeof(g));
		snprintf(p->blas_config, sizeof(p->blas_config), "%s; %s", mb_blas_config(), g);
	}
	snprintf(p->blas_core, sizeof(p->blas_core), "%s", mb_blas_core());
	p->blas_threads = mb_blas_threads();
	snprintf(p->compiler, sizeof(p->compiler), "%s", mb_build_compiler());
	snprintf(p->cflags, sizeof(p->cflags), "%s", mb_build_cflags());
	snprintf(p->build_type, sizeof(p->build_type), "%s", mb_build_type());
	mb_str_utc(p->started_at, sizeof(p->started_at), time(NULL));
}

void mb_provenance_finish(mb_provenance *p, double started)
{
	mb_str_utc(p->finished_at, sizeof(p->finished_at), time(NULL));
	p->wall_seconds = mb_runner_now() - started;
}

json_t *mb_file_digests_to_json(const mb_file_digest *d, size_t n)
{
	json_t *files = json_array();

	for (size_t f = 0; files && f < n; f++)
		if (json_array_append_new(files, json_pack("{s:s, s:s, s:I}", "path", d[f].path,
							   "sha256", d[f].sha256, "bytes",
							   (json_int_t)d[f].bytes)) < 0) {
			json_decref(files);
			return NULL;
		}
	return files;
}

/* --- model digests: mb_model_digest is in model_digest.c ------------------- */

void mb_file_digests_free(mb_file_digest *d, size_t n)
{
	for (size_t i = 0; d && i < n; i++)
		free(d[i].path);
	free(d);
}

/* --- datasets ------------------------------------------------------------------ */

int mb_runner_check_dataset(const mb_dataset *d, const mb_spec_entry *e, mb_error *err)
{
	if (strcmp(d->sha256, e->dataset_sha256) != 0)
		return mb_error_set(err, MB_EMISMATCH,
				    "%s: sha256 %s, but the spec registers %s for entry %s",
				    d->name, d->sha256, e->dataset_sha256, e->name);
	if (strcmp(d->task, e->task->name) != 0)
		return mb_error_set(err, MB_EMISMATCH, "%s: made by task %s, but entry %s runs %s",
				    d->name, d->task, e->name, e->task->name);
	for (size_t m = 0; m < e->n_metrics; m++)
		for (size_t k = 0; k < e->metrics[m].n_strata; k++) {
			const char *sn = e->metrics[m].strata[k].name;
			size_t i = 0;
			while (i < d->items.n && strcmp(d->items.items[i].stratum, sn) != 0)
				i++;
			if (i == d->items.n)
				return mb_error_set(err, MB_EMISMATCH,
						    "%s: entry %s registers a threshold of %s for "
						    "stratum '%s', which has no items", d->name,
						    e->name, e->metrics[m].name, sn);
		}
	for (size_t k = 0; k < e->n_strata; k++)
		if (e->weights[k] > 0 && mb_dataset_is_ood(d, e->strata[k]))
			return mb_error_set(err, MB_EMISMATCH,
					    "%s: stratum '%s' is out of distribution (recipe \"ood\") "
					    "but entry %s weighs it %g; an in-distribution claim "
					    "gives it weight 0", d->name, e->strata[k], e->name,
					    e->weights[k]);
	if (e->n_strata == 0)
		return 0;
	for (size_t i = 0; i < d->items.n; i++) {
		size_t k = 0;
		while (k < e->n_strata && strcmp(e->strata[k], d->items.items[i].stratum) != 0)
			k++;
		if (k == e->n_strata)
			return mb_error_set(err, MB_EMISMATCH,
					    "%s: item %s is in stratum '%s', which entry %s does "
					    "not register", d->name, d->items.items[i].key,
					    d->items.items[i].stratum, e->name);
	}
	for (size_t k = 0; k < e->n_strata; k++) {
		size_t count = 0;
		for (size_t i = 0; i < d->items.n; i++)
			count += strcmp(d->items.items[i].stratum, e->strata[k]) == 0;
		if (count == 0)
			return mb_error_set(err, MB_EMISMATCH,
					    "%s: entry %s registers stratum '%s', which has no "
					    "items", d->name, e->name, e->strata[k]);
	}
	return 0;
}

int mb_runner_load_dataset(mb_dataset *out, const mb_spec_entry *e, const char *root,
			   mb_error *err)
{
	char path[4096];
	int error;

	char sha[MB_SHA256_HEX_LEN];
	char *text = NULL;
	size_t len;

	memset(out, 0, sizeof(*out));
	if ((error = mb_file_path_join(path, sizeof(path), root, e->dataset, err)) < 0 ||
	    (error = mb_file_read_text(&text, &len, path, err)) < 0)
		return error;
	/* The sha256 before parsing: an edited file is named as such. */
	mb_sha256_hex_buf(sha, text, len);
	if (strcmp(sha, e->dataset_sha256) != 0) {
		free(text);
		return mb_error_set(err, MB_EMISMATCH,
				    "%s: sha256 %s, but the spec registers %s for entry %s", path,
				    sha, e->dataset_sha256, e->name);
	}
	error = mb_dataset_parse(out, text, len, path, err);
	free(text);
	if (error < 0)
		return error;
	error = mb_runner_check_dataset(out, e, err);
	if (error < 0)
		mb_dataset_dispose(out);
	return error;
}

/* --- progress -------------------------------------------------------------------- */

static void progress_draw(const char *label, size_t done, size_t total, double started)
{
	int width = 30, fill = total ? (int)((double)done / (double)total * width) : width;
	double el = mb_runner_now() - started;

	fprintf(stderr, "\r%-20.20s [%.*s%*s] %zu/%zu items %6.1fs", label, fill,
		"##############################", width - fill, "", done, total, el);
	fflush(stderr);
}

static void progress_clear(void)
{
	fprintf(stderr, "\r%*s\r", 80, "");
	fflush(stderr);
}

/* --- running an entry -------------------------------------------------------------- */

static int copy_item_refs(mb_entry_result *out, const mb_dataset *d, mb_error *err)
{
	out->items = calloc(d->items.n ? d->items.n : 1, sizeof(*out->items));
	if (!out->items)
		return mb_error_oom(err, "item list", d->items.n * sizeof(*out->items));
	for (size_t i = 0; i < d->items.n; i++) {
		const mb_item *it = &d->items.items[i];
		memcpy(out->items[i].key, it->key, sizeof(it->key));
		out->items[i].stratum = strdup(it->stratum);
		out->items[i].cluster = strdup(it->cluster);
		out->n_items = i + 1;
		if (!out->items[i].stratum || !out->items[i].cluster)
			return mb_error_oom(err, "item labels", 0);
	}
	out->n_items = d->items.n;
	return 0;
}

static int run_items(const mb_task *t, void *state, const mb_dataset *d, double *values,
		     const mb_runner_opts *opts, const char *label, mb_error *err)
{
	size_t n = d->items.n, nm = t->n_metrics;
	size_t batch = t->batch ? t->batch : 1;
	long n_batches = (long)((n + batch - 1) / batch);
	int threads = opts && opts->threads > 0 ? opts->threads : omp_get_max_threads();
	int progress = opts && opts->progress;
	int failed = 0;
	size_t done = 0;
	double started = mb_runner_now();

	if (t->parallel_inside) {
		for (long b = 0; b < n_batches && !failed; b++) {
			size_t lo = (size_t)b * batch, len = n - lo < batch ? n - lo : batch;
			failed = mb_task_run(t, state, d->items.items + lo, len, values + lo * nm, err);
			done += len;
			if (progress)
				progress_draw(label, done, n, started);
		}
	} else {
		/* The item loop owns the cores (ARCHITECTURE.md, "Scale"): a GEMM
		 * inside an item runs on its calling thread (the GEMM layer's
		 * contract, gemm.h), and any nested OpenMP region is inactive. */
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
		for (long b = 0; b < n_batches; b++) {
			size_t lo = (size_t)b * batch, len = n - lo < batch ? n - lo : batch;
			mb_error local;
			int stop, rc;
#pragma omp atomic read
			stop = failed;
			if (stop)
				continue;
			mb_error_clear(&local);
			rc = mb_task_run(t, state, d->items.items + lo, len, values + lo * nm, &local);
			if (rc < 0) {
#pragma omp critical(mb_runner_error)
				{
					if (!failed) {
						failed = rc;
						if (err)
							*err = local;
					}
				}
			}
#pragma omp atomic update
			done += len;
			if (progress && omp_get_thread_num() == 0) {
				size_t now;
#pragma omp atomic read
				now = done;
				progress_draw(label, now, n, started);
			}
		}
	}
	if (progress) {
		if (!failed)
			progress_draw(label, n, n, started);
		progress_clear();
	}
	return failed;
}

int mb_runner_run_entry(mb_entry_result *out, const mb_spec *spec, const mb_spec_entry *e,
			const mb_dataset *d, const char *root, const char *model_dir,
			const char *model_label, const mb_runner_opts *opts, mb_error *err)
{
	int error;

	if (opts && opts->split)
		return opts->split(opts->split_payload, out, spec, e, d, root, model_dir,
				   model_label, opts, err);
	if ((error = mb_runner_run_values(out, e, d, d, root, model_dir, model_label, opts,
					  err)) < 0)
		return error;
	if ((error = mb_runner_entry_finish(out, spec, e, d, err)) < 0)
		mb_entry_result_dispose(out);
	return error;
}

/* The task's prepare hook on all the entry's items (task.h): its artifact,
 * checked, into out->artifact. */
static int prepare_entry(mb_entry_result *out, const mb_task *t, void *state,
			 const mb_dataset *all, mb_error *err)
{
	json_t *artifact = NULL;
	int error;

	if (!t->prepare)
		return 0;
	if ((error = t->prepare(state, all->items.items, all->items.n, &artifact, err)) < 0) {
		json_decref(artifact);
		return error;
	}
	if (artifact && (error = mb_artifact_check(NULL, t->name, artifact, "artifact", err)) < 0) {
		mb_error_prefix(err, "prepare of task %s returned a bad artifact", t->name);
		json_decref(artifact);
		return error;
	}
	out->artifact = artifact;
	return 0;
}

int mb_runner_run_values(mb_entry_result *out, const mb_spec_entry *e, const mb_dataset *all,
			 const mb_dataset *d, const char *root, const char *model_dir,
			 const char *model_label, const mb_runner_opts *opts, mb_error *err)
{
	const mb_task *t = e->task;
	void *state = NULL;
	double started;
	int error;

	memset(out, 0, sizeof(*out));
	out->name = strdup(e->name);
	out->task = strdup(t->name);
	out->task_version = t->version;
	out->model = strdup(model_label ? model_label : model_dir);
	out->dataset = strdup(e->dataset);
	out->params = e->params ? json_incref(e->params) : NULL;
	memcpy(out->dataset_sha256, d->sha256, sizeof(d->sha256));
	out->n_metrics = t->n_metrics;
	out->metrics = calloc(t->n_metrics, sizeof(*out->metrics));
	out->aggregates = calloc(t->n_metrics, sizeof(*out->aggregates));
	out->values = malloc((d->items.n ? d->items.n : 1) * t->n_metrics * sizeof(double));
	if (!out->name || !out->task || !out->model || !out->dataset || !out->metrics ||
	    !out->aggregates || !out->values) {
		error = mb_error_oom(err, "entry result", d->items.n * t->n_metrics * sizeof(double));
		goto cleanup;
	}
	for (size_t m = 0; m < t->n_metrics; m++) {
		out->metrics[m].name = strdup(t->metrics[m].name);
		out->metrics[m].version = t->metrics[m].version;
		out->metrics[m].kind = t->metrics[m].kind;
		out->metrics[m].direction = t->metrics[m].direction;
		if (!out->metrics[m].name) {
			error = mb_error_oom(err, "metric name", 0);
			goto cleanup;
		}
	}
	if ((error = copy_item_refs(out, d, err)) < 0)
		goto cleanup;
	if ((error = mb_model_digest(&out->model_files, &out->n_model_files, model_dir, err)) < 0)
		goto cleanup;
	if ((error = mb_task_open(&state, t, root, model_dir, e->params, err)) < 0)
		goto cleanup;
	started = mb_runner_now();
	if ((error = prepare_entry(out, t, state, all, err)) < 0)
		goto cleanup;
	error = run_items(t, state, d, out->values, opts, e->name, err);
	out->seconds = mb_runner_now() - started;
cleanup:
	if (state)
		t->close(state);
	if (error < 0) {
		mb_error_prefix(err, "entry %s", e->name);
		mb_entry_result_dispose(out);
	}
	return error;
}

int mb_runner_entry_finish(mb_entry_result *out, const mb_spec *spec, const mb_spec_entry *e,
			   const mb_dataset *d, mb_error *err)
{
	int error;

	if ((error = mb_runner_strata_init(out, d, err)) < 0)
		goto cleanup;
	for (size_t m = 0; m < out->n_metrics; m++) {
		char stream[512];
		mb_stats_estimate est;
		snprintf(stream, sizeof(stream), "aggregate/%s/%s/%s@%d", spec->suite, e->name,
			 out->metrics[m].name, out->metrics[m].version);
		if ((error = mb_runner_estimate(&est, spec, e, out, m, 0.95, stream, err)) < 0)
			goto cleanup;
		out->aggregates[m] = (mb_aggregate){est.n, est.mean, est.se, est.level, est.lo,
						    est.hi, est.method};
	}
	{
		mb_runner_design dsg;
		mb_runner_design_init(&dsg, spec, e);
		if ((error = mb_runner_strata_aggregates(out, &dsg, spec->suite, err)) < 0)
			goto cleanup;
	}
cleanup:
	if (error < 0)
		mb_error_prefix(err, "entry %s", e->name);
	return error;
}

int mb_runner_run_suite(mb_run_result *out, const mb_provenance *prov, const mb_spec *spec,
			const char *root, const char *model_override, const mb_runner_opts *opts,
			mb_error *err)
{
	double started = mb_runner_now();
	int error = 0;

	memset(out, 0, sizeof(*out));
	out->prov = *prov;
	out->entries = calloc(spec->n_entries, sizeof(*out->entries));
	if (!out->entries)
		return mb_error_oom(err, "run entries", spec->n_entries);
	for (size_t i = 0; i < spec->n_entries; i++) {
		const mb_spec_entry *e = &spec->entries[i];
		char model[4096];
		mb_dataset d;

		if (model_override) {
			snprintf(model, sizeof(model), "%s", model_override);
		} else if (!e->model) {
			error = mb_error_set(err, MB_EINVALID, "%s: entry %s names no model; pass "
					     "--model DIR", spec->name, e->name);
			break;
		} else if ((error = mb_file_path_join(model, sizeof(model), root, e->model, err)) < 0) {
			break;
		}
		if ((error = mb_runner_load_dataset(&d, e, root, err)) < 0)
			break;
		error = mb_runner_run_entry(&out->entries[i], spec, e, &d, root, model,
					    model_override ? model_override : e->model, opts, err);
		mb_dataset_dispose(&d);
		if (error < 0)
			break;
		out->n_entries = i + 1;
		if (opts && opts->on_entry &&
		    (error = opts->on_entry(opts->payload, &out->entries[i], err)) < 0)
			break;
	}
	mb_provenance_finish(&out->prov, started);
	if (error < 0)
		mb_run_result_dispose(out);
	return error;
}

/* --- estimates ------------------------------------------------------------------------ */

int mb_runner_strata_index(uint32_t **out, const mb_spec_entry *e, const mb_entry_result *r,
			   mb_error *err)
{
	uint32_t *idx = malloc((r->n_items ? r->n_items : 1) * sizeof(*idx));

	*out = NULL;
	if (!idx)
		return mb_error_oom(err, "stratum index", r->n_items * sizeof(*idx));
	for (size_t i = 0; i < r->n_items; i++) {
		size_t k = 0;
		while (k < e->n_strata && strcmp(e->strata[k], r->items[i].stratum) != 0)
			k++;
		if (k == e->n_strata) {
			free(idx);
			return mb_error_set(err, MB_EMISMATCH, "item %s: stratum '%s' is not "
					    "registered for entry %s", r->items[i].key,
					    r->items[i].stratum, e->name);
		}
		idx[i] = (uint32_t)k;
	}
	*out = idx;
	return 0;
}

typedef struct label_ix {
	const char *label;
	size_t item;
} label_ix;

static int cmp_label(const void *a, const void *b)
{
	const label_ix *x = a, *y = b;
	int c = strcmp(x->label, y->label);
	return c ? c : (x->item < y->item ? -1 : x->item > y->item);
}

int mb_runner_cluster_index(uint32_t **out, size_t *n_groups, const mb_entry_result *r,
			    mb_error *err)
{
	size_t n = r->n_items, groups = 0;
	uint32_t *idx = malloc((n ? n : 1) * sizeof(*idx));      /* (N) */
	uint32_t *renum = malloc((n ? n : 1) * sizeof(*renum));  /* (N) sorted group -> number */
	label_ix *sorted = malloc((n ? n : 1) * sizeof(*sorted)); /* (N) */
	int error = 0;

	*out = NULL;
	*n_groups = 0;
	if (!idx || !renum || !sorted) {
		error = mb_error_oom(err, "cluster index", n * sizeof(*sorted));
		goto cleanup;
	}
	for (size_t i = 0; i < n; i++)
		sorted[i] = (label_ix){r->items[i].cluster, i};
	qsort(sorted, n, sizeof(*sorted), cmp_label);
	for (size_t i = 0; i < n; i++) {
		if (i == 0 || strcmp(sorted[i].label, sorted[i - 1].label) != 0)
			renum[groups++] = UINT32_MAX;
		idx[sorted[i].item] = (uint32_t)(groups - 1);
	}
	/* Number clusters in order of first appearance, so the numbering does
	 * not depend on how labels sort. idx[i] is read before it is rewritten. */
	for (size_t i = 0; i < n; i++) {
		if (renum[idx[i]] == UINT32_MAX)
			renum[idx[i]] = (uint32_t)(*n_groups)++;
		idx[i] = renum[idx[i]];
	}
	*out = idx;
	idx = NULL;
cleanup:
	free(idx);
	free(renum);
	free(sorted);
	return error;
}

/* Renumbers groups[idx[j]] (j < n) by first appearance into out[j];
 * *n_groups receives the count. */
static void subset_groups(uint32_t *out, size_t *n_groups, const uint32_t *groups,
			  const size_t *idx, size_t n, uint32_t *map, size_t n_map)
{
	*n_groups = 0;
	for (size_t g = 0; g < n_map; g++)
		map[g] = UINT32_MAX;
	for (size_t j = 0; j < n; j++) {
		uint32_t g = groups[idx[j]];
		if (map[g] == UINT32_MAX)
			map[g] = (uint32_t)(*n_groups)++;
		out[j] = map[g];
	}
}

/* 1 when item i's stratum is out of distribution (r->strata). */
static int item_ood(const mb_entry_result *r, size_t i)
{
	for (size_t k = 0; k < r->n_strata; k++)
		if (r->strata[k].ood && strcmp(r->strata[k].name, r->items[i].stratum) == 0)
			return 1;
	return 0;
}

int mb_runner_select(size_t **out, size_t *n, const mb_entry_result *r, const char *stratum,
		     mb_error *err)
{
	size_t *idx = malloc((r->n_items ? r->n_items : 1) * sizeof(*idx));

	*out = NULL;
	*n = 0;
	if (!idx)
		return mb_error_oom(err, "item selection", r->n_items * sizeof(*idx));
	for (size_t i = 0; i < r->n_items; i++)
		if (stratum ? strcmp(r->items[i].stratum, stratum) == 0 : !item_ood(r, i))
			idx[(*n)++] = i;
	*out = idx;
	return 0;
}

int mb_runner_design_groups(uint32_t **out, size_t *n_groups, int *stratified,
			    const mb_runner_design *dsg, const mb_entry_result *r, const size_t *idx,
			    size_t n, int pooled, mb_error *err)
{
	uint32_t *full = NULL, *map = NULL, *sub = NULL;
	size_t n_full = 0;
	int error = 0;

	*out = NULL;
	*n_groups = 0;
	*stratified = 0;
	if (pooled && dsg->entry && dsg->entry->n_strata) {
		error = mb_runner_strata_index(&full, dsg->entry, r, err);
		n_full = dsg->entry->n_strata;
		*stratified = 1;
	} else if (dsg->clusters) {
		error = mb_runner_cluster_index(&full, &n_full, r, err);
	} else {
		return 0;
	}
	if (error < 0)
		return error;
	map = malloc((n_full ? n_full : 1) * sizeof(*map));
	sub = malloc((n ? n : 1) * sizeof(*sub));
	if (!map || !sub) {
		error = mb_error_oom(err, "group index", n * sizeof(*sub));
		goto cleanup;
	}
	if (*stratified) {
		/* registered strata keep their spec numbering (weights are by it) */
		for (size_t j = 0; j < n; j++)
			sub[j] = full[idx[j]];
		*n_groups = n_full;
	} else {
		subset_groups(sub, n_groups, full, idx, n, map, n_full);
		/* One cluster in a stratum says nothing about clustering: plain items. */
		if (!pooled && *n_groups < 2) {
			*n_groups = 0;
			goto cleanup;
		}
	}
	*out = sub;
	sub = NULL;
cleanup:
	free(full);
	free(map);
	free(sub);
	return error;
}

int mb_runner_estimate_items(mb_stats_estimate *out, const mb_runner_design *dsg,
			     const mb_entry_result *r, size_t m, const size_t *idx, size_t n,
			     int pooled, double level, const char *stream, mb_error *err)
{
	double *x = malloc((n ? n : 1) * sizeof(*x)); /* (n) */
	uint32_t *groups = NULL;
	size_t n_groups = 0;
	int stratified = 0, error;

	if (!x)
		return mb_error_oom(err, "metric column", n * sizeof(*x));
	for (size_t j = 0; j < n; j++)
		x[j] = r->values[idx[j] * r->n_metrics + m];
	if ((error = mb_runner_design_groups(&groups, &n_groups, &stratified, dsg, r, idx, n,
					     pooled, err)) < 0)
		goto cleanup;
	{
		mb_stats_policy pol = {.kind = (mb_stats_kind)r->metrics[m].kind,
				       .seed = dsg->seed, .stream = stream,
				       .boot_B = (size_t)dsg->bootstrap,
				       .boot_ci = MB_STATS_BOOT_CI_BCA};
		if (stratified) {
			pol.stratum = groups;
			pol.stratum_weights = dsg->entry->weights;
			pol.n_strata = dsg->entry->n_strata;
		} else {
			pol.cluster = groups;
			pol.n_clusters = n_groups;
		}
		error = mb_stats_policy_estimate(out, NULL, x, n, &pol, level, err);
	}
cleanup:
	free(groups);
	free(x);
	return error;
}

void mb_runner_design_init(mb_runner_design *out, const mb_spec *spec, const mb_spec_entry *e)
{
	out->seed = spec->seed;
	out->bootstrap = spec->bootstrap;
	out->clusters = e->clusters;
	out->entry = e;
}

int mb_runner_estimate(mb_stats_estimate *out, const mb_spec *spec, const mb_spec_entry *e,
		       const mb_entry_result *r, size_t m, double level, const char *stream,
		       mb_error *err)
{
	mb_runner_design dsg;
	size_t *idx = NULL, n = 0;
	int error;

	mb_runner_design_init(&dsg, spec, e);
	if ((error = mb_runner_select(&idx, &n, r, NULL, err)) == 0)
		error = mb_runner_estimate_items(out, &dsg, r, m, idx, n, 1, level, stream, err);
	if (error < 0)
		mb_error_prefix(err, "%s: %s", e->name, r->metrics[m].name);
	free(idx);
	return error;
}

int mb_runner_strata_init(mb_entry_result *r, const mb_dataset *d, mb_error *err)
{
	for (size_t k = 0; k < r->n_strata; k++) {
		free(r->strata[k].name);
		free(r->strata[k].aggregates);
	}
	free(r->strata);
	r->strata = NULL;
	r->n_strata = 0;
	for (size_t i = 0; i < r->n_items; i++) {
		size_t k = 0;
		mb_stratum_result *ns;
		while (k < r->n_strata && strcmp(r->strata[k].name, r->items[i].stratum) != 0)
			k++;
		if (k < r->n_strata) {
			r->strata[k].n++;
			continue;
		}
		if (!(ns = realloc(r->strata, (r->n_strata + 1) * sizeof(*ns))))
			return mb_error_oom(err, "strata", (r->n_strata + 1) * sizeof(*ns));
		r->strata = ns;
		memset(&ns[k], 0, sizeof(ns[k]));
		if (!(ns[k].name = strdup(r->items[i].stratum)))
			return mb_error_oom(err, "stratum name", 0);
		r->n_strata = k + 1;
		ns[k].n = 1;
		ns[k].ood = d ? mb_dataset_is_ood(d, ns[k].name) : 0;
	}
	return 0;
}

int mb_runner_strata_aggregates(mb_entry_result *r, const mb_runner_design *dsg,
				const char *suite, mb_error *err)
{
	int error = 0;

	for (size_t k = 0; k < r->n_strata && !error; k++) {
		mb_stratum_result *st = &r->strata[k];
		size_t *idx = NULL, n = 0;

		free(st->aggregates);
		st->aggregates = calloc(r->n_metrics ? r->n_metrics : 1, sizeof(*st->aggregates));
		if (!st->aggregates)
			return mb_error_oom(err, "stratum aggregates", r->n_metrics);
		if ((error = mb_runner_select(&idx, &n, r, st->name, err)) < 0)
			break;
		for (size_t m = 0; m < r->n_metrics && !error; m++) {
			char stream[512];
			mb_stats_estimate est;
			if (n < 2) {
				st->aggregates[m] = (mb_aggregate){n, n ? r->values[idx[0] *
							r->n_metrics + m] : NAN, NAN, 0.95,
							NAN, NAN, MB_STATS_METHOD_NONE};
				continue;
			}
			snprintf(stream, sizeof(stream), "aggregate/%s/%s/%s@%d/stratum=%s", suite,
				 r->name, r->metrics[m].name, r->metrics[m].version, st->name);
			error = mb_runner_estimate_items(&est, dsg, r, m, idx, n, 0, 0.95, stream,
							 err);
			if (error < 0)
				mb_error_prefix(err, "%s: %s: stratum %s", r->name,
						r->metrics[m].name, st->name);
			else
				st->aggregates[m] = (mb_aggregate){est.n, est.mean, est.se,
								   est.level, est.lo, est.hi,
								   est.method};
		}
		free(idx);
	}
	return error;
}

int mb_runner_strata_stored(mb_entry_result *r, const mb_provenance *prov, const mb_dataset *d,
			    mb_error *err)
{
	mb_runner_design dsg = {.seed = prov->seed, .bootstrap = MB_STATS_BOOT_DEFAULT_B};
	int error;

	/* A stored run keeps its design only in its pooled aggregates' methods. */
	for (size_t m = 0; m < r->n_metrics; m++)
		dsg.clusters |= r->aggregates[m].method == MB_STATS_METHOD_CLUSTERED_T;
	if (d && strcmp(d->sha256, r->dataset_sha256) != 0)
		d = NULL;
	if ((error = mb_runner_strata_init(r, d, err)) < 0)
		return error;
	return mb_runner_strata_aggregates(r, &dsg, prov->suite, err);
}

/* --- lookups and cleanup ---------------------------------------------------------------- */

int mb_entry_result_metric(const mb_entry_result *r, const char *name)
{
	for (size_t m = 0; m < r->n_metrics; m++)
		if (strcmp(r->metrics[m].name, name) == 0)
			return (int)m;
	return -1;
}

const mb_entry_result *mb_run_result_entry(const mb_run_result *run, const char *name)
{
	for (size_t i = 0; i < run->n_entries; i++)
		if (strcmp(run->entries[i].name, name) == 0)
			return &run->entries[i];
	return NULL;
}

void mb_entry_result_dispose(mb_entry_result *e)
{
	if (!e)
		return;
	free(e->name);
	free(e->task);
	free(e->model);
	free(e->dataset);
	json_decref(e->params);
	mb_file_digests_free(e->model_files, e->n_model_files);
	for (size_t i = 0; e->items && i < e->n_items; i++) {
		free(e->items[i].stratum);
		free(e->items[i].cluster);
	}
	free(e->items);
	for (size_t m = 0; e->metrics && m < e->n_metrics; m++)
		free(e->metrics[m].name);
	free(e->metrics);
	free(e->values);
	free(e->aggregates);
	for (size_t k = 0; e->strata && k < e->n_strata; k++) {
		free(e->strata[k].name);
		free(e->strata[k].aggregates);
	}
	free(e->strata);
	json_decref(e->artifact);
	memset(e, 0, sizeof(*e));
}

void mb_run_result_dispose(mb_run_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_entries; i++)
		mb_entry_result_dispose(&r->entries[i]);
	free(r->entries);
	memset(r, 0, sizeof(*r));
}
