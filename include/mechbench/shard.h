/*
 * shard.h: a suite's items split over processes (`run --shard i/n`, the ranks
 * of an MPI run, dist.h) and put back together, so that the stored values,
 * aggregates, CIs and verdicts are bitwise those of one process.
 *
 * The split rule: within each entry, the dataset's items sorted by content
 * key are dealt round robin: the item of key rank r belongs to part r mod n.
 * It depends only on the items' contents (not on the dataset's line order, a
 * thread count or a machine), every part of an entry is within one item of
 * the others' size, and each part draws items from every stratum (keys are
 * hashes). Items, not whole entries, because the suites we run have few
 * entries of very different sizes; the cost is one model load per entry and
 * part, small next to the items (scaling.md).
 *
 * A part computes item values only (mb_runner_run_values); aggregates are
 * computed once, on all the values in dataset order (mb_runner_entry_finish),
 * by whoever holds them all: the root rank, or `merge`. A shard's stored
 * aggregates are NaN with method none and its provenance's blas_config ends
 * in "; shard i/n" (no schema change), which is how `merge` knows a shard.
 */
#ifndef MECHBENCH_SHARD_H
#define MECHBENCH_SHARD_H

#include <stddef.h>

#include <mechbench/dataset.h>
#include <mechbench/error.h>
#include <mechbench/runner.h>

typedef struct mb_shard {
	unsigned index; /* 0 .. count - 1 */
	unsigned count; /* 1: the whole suite */
} mb_shard;

/* Parses "i/n" (0 <= i < n <= 65536) into *out; MB_EINVALID naming text. */
int mb_shard_parse(mb_shard *out, const char *text, mb_error *err);

/* Indices (ascending, dataset order) of d's items in part s: *out (n) is
 * malloc'd. */
int mb_shard_items(size_t **out, size_t *n, const mb_dataset *d, mb_shard s, mb_error *err);

/* A view of d holding only items idx[0..n) (in that order): its item array is
 * malloc'd, the items themselves and every other field borrowed from d, so
 * the view is freed with mb_shard_view_dispose (never mb_dataset_dispose)
 * and must not outlive d. */
int mb_shard_view(mb_dataset *out, const mb_dataset *d, const size_t *idx, size_t n,
		  mb_error *err);
void mb_shard_view_dispose(mb_dataset *v);

/* A runner split (runner.h, opts->split with split_payload a mb_shard *):
 * runs part s of the entry's items, values only; the aggregates are NaN with
 * method none and n the part's items. The task's prepare hook (task.h) sees
 * all of d's items, so every part carries the same artifact; `merge` refuses
 * parts whose artifacts differ. */
int mb_shard_run_entry(void *payload, mb_entry_result *out, const mb_spec *spec,
		       const mb_spec_entry *e, const mb_dataset *d, const char *root,
		       const char *model_dir, const char *model_label, const mb_runner_opts *opts,
		       mb_error *err);

/* Makes *out the whole entry from a part's result `head` (its name, task,
 * model, file digests, metrics, params and artifact are copied) and every
 * item's values: values (N, M) in d's item order, taken over by *out (freed
 * with it, also on error). Items come from d. The aggregates are left to
 * mb_runner_entry_finish. */
int mb_shard_whole_entry(mb_entry_result *out, const mb_entry_result *head, const mb_dataset *d,
			 double *values, mb_error *err);

/* Writes " ; shard i/n" into p's blas_config (shard marks), or reads it:
 * mb_shard_unmark fills *out ({0, 1} when p is no shard) and strips the mark. */
void mb_shard_mark(mb_provenance *p, mb_shard s);
int mb_shard_unmark(mb_provenance *p, mb_shard *out);

#endif
