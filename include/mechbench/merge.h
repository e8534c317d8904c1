/*
 * merge.h: the shard databases of `run --shard i/n` (shard.h) combined into
 * one run, equal bit for bit to the run of one process: item values placed
 * by content key in dataset order, then every aggregate recomputed from them
 * (mb_runner_entry_finish), never combined from the shards' parts.
 *
 * Refused, with one line naming the shard file and the field or item: a file
 * that is not a database of exactly one shard run; shards of different
 * counts, a shard index given twice or missing; a different suite, spec blob,
 * code commit (or dirty flag), seed, entry list, task version, metric list,
 * params, dataset path or sha256, model label or model file digest than the
 * first shard's; an entry artifact (artifact.h) that is not bitwise the first
 * shard's (every shard computes it from all the entry's items; the message
 * names the first field that differs); an item in two shards, in none, or
 * not in the dataset; and a spec whose blob is not the shards'. The merged
 * run carries the shards' artifact.
 */
#ifndef MECHBENCH_MERGE_H
#define MECHBENCH_MERGE_H

#include <stddef.h>

#include <mechbench/error.h>
#include <mechbench/runner.h>
#include <mechbench/spec.h>

/* Reads the shard databases paths[0..n) (read-only; nothing is written) and
 * fills *out (disposed with mb_run_result_dispose) with the whole run:
 * provenance of the first shard without its shard mark, started at the
 * earliest shard's start, finished at the latest's finish, wall time the
 * longest shard's. spec is the suite the shards ran (its blob spec_blob, the
 * caller's check), its datasets read from root. */
int mb_merge_shards(mb_run_result *out, const char *const *paths, size_t n, const mb_spec *spec,
		    const char *spec_blob, const char *root, mb_error *err);

/* The spec path the shard at path recorded (repo-relative when the spec was
 * in git) into out (cap bytes). */
int mb_merge_spec_path(char *out, size_t cap, const char *path, mb_error *err);

#endif
