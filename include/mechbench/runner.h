/*
 * runner.h: runs a suite's entries (a task on a model over a dataset) and
 * holds the results every later stage reads: per-item values, aggregates
 * with CIs, and the provenance of the run. Baseline files and the store hold
 * exactly these structures.
 *
 * Parallelism: items are cut into fixed batches of the task's batch size
 * (never by thread count), and batches are spread over OpenMP threads with
 * OpenBLAS held at one thread, so BLAS and OpenMP never oversubscribe the
 * cores; a task that parallelises inside itself (parallel_inside) gets its
 * batches one after another with every thread. Each batch writes its own rows
 * of values, and every reduction (aggregates) runs afterwards in item order,
 * so results are bitwise identical for any thread count.
 *
 * Legend: N items of the entry, M metrics of its task.
 */
#ifndef MECHBENCH_RUNNER_H
#define MECHBENCH_RUNNER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <mechbench/dataset.h>
#include <mechbench/error.h>
#include <mechbench/paired.h>
#include <mechbench/provenance.h>
#include <mechbench/sha256.h>
#include <mechbench/spec.h>
#include <mechbench/task.h>

typedef struct mb_file_digest {
	char *path; /* owned, relative to the model folder */
	char sha256[MB_SHA256_HEX_LEN];
	uint64_t bytes;
} mb_file_digest;

typedef struct mb_metric_info {
	char *name; /* owned */
	int version;
	mb_metric_kind kind;
	mb_metric_direction direction;
} mb_metric_info;

typedef struct mb_item_ref {
	char key[MB_SHA256_HEX_LEN];
	char *stratum; /* owned */
	char *cluster; /* owned */
} mb_item_ref;

/* A metric's aggregate: the mean over items with its interval under the
 * entry's design (registered strata, clusters, or i.i.d.; bootstrap for
 * ratio metrics). */
typedef struct mb_aggregate {
	size_t n;
	double mean;
	double se;
	double level; /* two-sided coverage of [lo, hi] */
	double lo, hi;
	mb_stats_method method;
} mb_aggregate;

/* One stratum of an entry's items (the items' stratum labels, in order of
 * first appearance) and each metric's aggregate over its items alone. */
typedef struct mb_stratum_result {
	char *name;               /* owned */
	int ood;                  /* the dataset recipe marks it out of distribution */
	size_t n;                 /* items */
	mb_aggregate *aggregates; /* (M); NULL until computed */
} mb_stratum_result;

typedef struct mb_entry_result {
	char *name;    /* the suite entry */
	char *task;
	int task_version;
	char *model;   /* the model folder as given */
	mb_file_digest *model_files; /* (n_model_files), sorted by path */
	size_t n_model_files;
	char *dataset; /* repo-relative path */
	char dataset_sha256[MB_SHA256_HEX_LEN];
	json_t *params; /* owned reference or NULL */
	size_t n_items, n_metrics;
	mb_item_ref *items;        /* (N) in dataset order */
	mb_metric_info *metrics;   /* (M) */
	double *values;            /* (N, M) row-major */
	mb_aggregate *aggregates;  /* (M) pooled over the in-distribution items */
	mb_stratum_result *strata; /* (n_strata) per stratum; not stored, recomputed */
	size_t n_strata;
	double seconds;            /* wall time of the entry's items (prepare included) */
	json_t *artifact;          /* owned reference or NULL: what the task's prepare
				    * returned (artifact.h), computed from all items */
} mb_entry_result;

typedef struct mb_run_result {
	int64_t id; /* store id; 0 when not stored */
	mb_provenance prov;
	mb_entry_result *entries; /* (n_entries) */
	size_t n_entries;
} mb_run_result;

typedef struct mb_runner_opts {
	int threads;  /* OpenMP threads; 0: omp_get_max_threads() */
	int progress; /* draw a progress bar on stderr (the CLI sets it on a TTY) */
	/* Called after each entry completes, in spec order (the CLI writes it into
	 * the store's open transaction). A negative return stops the run. */
	int (*on_entry)(void *payload, const mb_entry_result *e, mb_error *err);
	void *payload;
	/* When set, mb_runner_run_entry hands the whole entry to split (same
	 * arguments and contract), which runs a share of its items in this
	 * process (shard.h: `run --shard`; dist.h: MPI ranks) through
	 * mb_runner_run_values with split cleared. */
	int (*split)(void *split_payload, struct mb_entry_result *out, const mb_spec *spec,
		     const mb_spec_entry *e, const mb_dataset *d, const char *root,
		     const char *model_dir, const char *model_label,
		     const struct mb_runner_opts *opts, mb_error *err);
	void *split_payload;
} mb_runner_opts;

/* Fills the build and machine fields of p (code, compiler, BLAS, CPU,
 * threads) and started_at; the caller fills suite, spec and repository. */
void mb_provenance_init(mb_provenance *p, int threads);
/* Sets finished_at and wall_seconds from a start time (CLOCK_MONOTONIC
 * seconds, mb_runner_now). */
void mb_provenance_finish(mb_provenance *p, double started);
double mb_runner_now(void);
/* Model file digests as a JSON array of {"path", "sha256", "bytes"} (new
 * reference; NULL on allocation failure). */
json_t *mb_file_digests_to_json(const mb_file_digest *d, size_t n);

/* sha256 of exactly the files a model is loaded from (src/harness/
 * model_digest.c: MANIFEST, config.json, model.safetensors or its index and
 * shards, tokenizer.json, training_state.json, synthetic.json), sorted by
 * relative path; other files and sub-folders are not hashed. A symbolic link
 * must resolve inside dir; a special file is refused (MB_EINVALID). *out is
 * malloc'd (free with mb_file_digests_free). MB_ENOTFOUND when dir does not
 * exist, MB_EINVALID when it holds none of those files. */
int mb_model_digest(mb_file_digest **out, size_t *n, const char *dir, mb_error *err);
void mb_file_digests_free(mb_file_digest *d, size_t n);

/* Loads entry e's dataset from root/e->dataset and checks it against the
 * spec: sha256 equal to the registered one (MB_EMISMATCH naming both), made
 * by e's task, and its strata exactly the registered ones. */
int mb_runner_load_dataset(mb_dataset *out, const mb_spec_entry *e, const char *root,
			   mb_error *err);
/* The same checks on a dataset already in memory (e.g. read from git). */
int mb_runner_check_dataset(const mb_dataset *d, const mb_spec_entry *e, mb_error *err);

/* Runs entry e's task on the model in model_dir over d's items into *out
 * (disposed with mb_entry_result_dispose), then computes aggregates at 95%.
 * root is the spec's root: the task is opened with mb_task_open (task.h),
 * which joins its path params with it (the result keeps e->params as
 * written). model_label is what the result records as its model (the
 * spec's repo-relative path, or --model as given); NULL records model_dir.
 * Errors name the entry, the item or the model file. */
int mb_runner_run_entry(mb_entry_result *out, const mb_spec *spec, const mb_spec_entry *e,
			const mb_dataset *d, const char *root, const char *model_dir,
			const char *model_label, const mb_runner_opts *opts, mb_error *err);

/* The two halves of mb_runner_run_entry. run_values fills *out with the
 * entry's header (names, model file digests, metrics), d's item references
 * and every item's values (checked finite), aggregates zeroed and no strata;
 * when the task has a prepare hook it runs first, once, on all the entry's
 * items, `all` (d itself, or the whole dataset when d is a shard's or rank's
 * view of it), so every part computes the same artifact (checked with
 * mb_artifact_check, then kept in out->artifact);
 * entry_finish then lists the strata and computes every aggregate from the
 * values alone, in item order: whoever calls it on the same items and values
 * (one process, the root rank of an MPI run, `merge` of shards) gets the same
 * bits. entry_finish leaves *out to the caller's dispose on error. */
int mb_runner_run_values(mb_entry_result *out, const mb_spec_entry *e, const mb_dataset *all,
			 const mb_dataset *d, const char *root, const char *model_dir,
			 const char *model_label, const mb_runner_opts *opts, mb_error *err);
int mb_runner_entry_finish(mb_entry_result *out, const mb_spec *spec, const mb_spec_entry *e,
			   const mb_dataset *d, mb_error *err);

/* Runs every entry of spec: datasets from root, models from model_override
 * when given, else root/<entry.model> (MB_EINVALID when neither). Calls
 * opts->on_entry after each. out->prov starts as a copy of prov (made with
 * mb_provenance_init, spec and repository fields filled by the caller) and
 * gets its finish time. */
int mb_runner_run_suite(mb_run_result *out, const mb_provenance *prov, const mb_spec *spec,
			const char *root, const char *model_override, const mb_runner_opts *opts,
			mb_error *err);

/* The interval of the mean of metric m of r under entry e's design, over
 * the pooled (in-distribution) items, at two-sided level: registered strata -> stratified t; ratio metrics -> seeded
 * (cluster) bootstrap (stream named by `stream`, spec->bootstrap replicates);
 * clusters -> clustered t with C - 1 df; else paired t. The same policy
 * mb_stats_compare applies to differences (with its default min_clusters_t). */
int mb_runner_estimate(mb_stats_estimate *out, const mb_spec *spec, const mb_spec_entry *e,
		       const mb_entry_result *r, size_t m, double level, const char *stream,
		       mb_error *err);

/* How an entry's intervals are made (the policy of mb_runner_estimate), for
 * callers that hold a result but maybe not its spec. */
typedef struct mb_runner_design {
	uint64_t seed;
	uint64_t bootstrap;          /* replicates for ratio metrics */
	int clusters;                /* clustered SEs by the items' cluster labels */
	const mb_spec_entry *entry;  /* registered stratum weights; NULL: none */
} mb_runner_design;

void mb_runner_design_init(mb_runner_design *out, const mb_spec *spec, const mb_spec_entry *e);

/* Indices of r's items in stratum `stratum`, or (NULL) the pooled set: every
 * item whose stratum is not out of distribution (r->strata[k].ood). *out (n)
 * is malloc'd. */
int mb_runner_select(size_t **out, size_t *n, const mb_entry_result *r, const char *stratum,
		     mb_error *err);

/* The group index of the items idx[0..n) under the design: pooled with
 * registered weights -> the registered strata (*stratified = 1, numbering
 * of the spec); clusters -> clusters renumbered within the selection (a
 * single stratum with fewer than 2 clusters gets none: plain items). *out
 * is NULL when the design has no groups. */
int mb_runner_design_groups(uint32_t **out, size_t *n_groups, int *stratified,
			    const mb_runner_design *dsg, const mb_entry_result *r, const size_t *idx,
			    size_t n, int pooled, mb_error *err);

/* The interval of metric m over the items idx[0..n): the policy of
 * mb_runner_estimate; pooled = 0 for a single stratum (never stratified). */
int mb_runner_estimate_items(mb_stats_estimate *out, const mb_runner_design *dsg,
			     const mb_entry_result *r, size_t m, const size_t *idx, size_t n,
			     int pooled, double level, const char *stream, mb_error *err);

/* Lists r's strata (order of first appearance) with their item counts and,
 * when d is given, the recipe's out-of-distribution marks. Aggregates are
 * left NULL. Replaces any earlier list. */
int mb_runner_strata_init(mb_entry_result *r, const mb_dataset *d, mb_error *err);
/* Each stratum's aggregates at 95% under the design (streams
 * "aggregate/<suite>/<entry>/<metric>@<v>/stratum=<name>"). A stratum of one
 * item gets its value with NaN bounds, method none. */
int mb_runner_strata_aggregates(mb_entry_result *r, const mb_runner_design *dsg,
				const char *suite, mb_error *err);
/* For a run read from the store (which keeps items, not strata): lists the
 * strata and computes their aggregates with the run's seed,
 * MB_STATS_BOOT_DEFAULT_B replicates and clusters when a pooled aggregate was
 * clustered. OOD marks come from d when it is the run's dataset (same
 * sha256); the store does not record them. d may be NULL. */
int mb_runner_strata_stored(mb_entry_result *r, const mb_provenance *prov, const mb_dataset *d,
			    mb_error *err);

/* Index arrays for the stats module: the registered stratum of each item
 * (spec order) and the cluster of each item (clusters numbered in order of
 * first appearance). *out (N) is malloc'd; *n_groups receives the count. */
int mb_runner_strata_index(uint32_t **out, const mb_spec_entry *e, const mb_entry_result *r,
			   mb_error *err);
int mb_runner_cluster_index(uint32_t **out, size_t *n_groups, const mb_entry_result *r,
			    mb_error *err);

/* The index of metric `name` in r->metrics, or -1. */
int mb_entry_result_metric(const mb_entry_result *r, const char *name);
/* The entry called name in run, or NULL. */
const mb_entry_result *mb_run_result_entry(const mb_run_result *run, const char *name);

void mb_entry_result_dispose(mb_entry_result *e);
void mb_run_result_dispose(mb_run_result *r);

#endif
