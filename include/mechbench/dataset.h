/*
 * dataset.h: frozen, stratified item lists (JSONL) and datasets/MANIFEST.
 *
 * A dataset file is JSON Lines, written by mb_dataset_render and nothing else:
 *   line 1: the header, the recipe that regenerates it
 *     {"mechbench_dataset":1,"n_items":N,"params":{...},"seed":S,"task":"synthetic","task_version":1}
 *   lines 2..N+1: one item each
 *     {"cluster":"easy/c0","input":{...},"key":"<sha256 hex>","stratum":"easy"}
 * A recipe may mark strata outside the model's training distribution with
 * "ood": ["<stratum>", ...] among its params (mb_dataset_is_ood).
 * Every line is compact JSON with sorted keys; the file ends with a newline.
 * The key is the item's content hash (mb_item_key); keys are unique.
 *
 * datasets/MANIFEST lists every frozen dataset with its sha256 and recipe,
 * one per line ('#' starts a comment):
 *   <sha256 or ->  <path relative to the MANIFEST>  <task>@<version>  <seed>  <params JSON>
 * `mechbench datasets build` regenerates each file from its recipe and writes
 * the sha256 ("-" marks a dataset not built yet); `datasets verify` checks
 * that each file's sha256 matches and that its recipe still reproduces it.
 */
#ifndef MECHBENCH_DATASET_H
#define MECHBENCH_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <mechbench/error.h>
#include <mechbench/sha256.h>
#include <mechbench/task.h>

#define MB_DATASET_FORMAT 1

typedef struct mb_dataset {
	char *name;                    /* owned: path or label used in messages */
	char sha256[MB_SHA256_HEX_LEN]; /* of the file's bytes */
	char *task;                    /* owned: recipe from the header */
	int task_version;
	uint64_t seed;
	json_t *params;                /* owned reference (an object) */
	mb_item_list items;
	size_t *by_key;                /* owned: item indices sorted by key */
} mb_dataset;

/* Parses a dataset from len bytes of text (a file's contents or a git blob);
 * name labels messages ("datasets/x.jsonl:7:12: ..."). Checks the header,
 * every item's fields, that each key is its content hash, that keys are
 * unique, and that n_items matches. Returns 0 or MB_EINVALID / MB_ENOMEM. */
int mb_dataset_parse(mb_dataset *out, const char *text, size_t len, const char *name,
		     mb_error *err);
/* Reads and parses the file at path. */
int mb_dataset_load(mb_dataset *out, const char *path, mb_error *err);
void mb_dataset_dispose(mb_dataset *d);

/* Renders a dataset's canonical bytes: header from the recipe, then items.
 * *out is malloc'd (caller frees), *len its length. */
int mb_dataset_render(char **out, size_t *len, const char *task, int task_version,
		      uint64_t seed, const json_t *params, const mb_item_list *items,
		      mb_error *err);

/* Runs task t's generator on (seed, params) and renders the result. */
int mb_dataset_generate(char **out, size_t *len, const mb_task *t, uint64_t seed,
			const json_t *params, mb_error *err);

/* 1 when the dataset's recipe marks `stratum` out of the model's training
 * distribution: its params carry "ood": ["<stratum>", ...] (checked at parse
 * time: unique names of strata that have items). The generator never sees
 * "ood"; reports show such strata as OUT-OF-DISTRIBUTION and the pooled
 * (in-distribution) estimate leaves their items out (runner.h). */
int mb_dataset_is_ood(const mb_dataset *d, const char *stratum);

/* Index of the item with this key in d->items, or -1 (binary search over a
 * sorted index built at parse time). */
long mb_dataset_find(const mb_dataset *d, const char *key);

/* --- datasets/MANIFEST ----------------------------------------------------- */

typedef struct mb_manifest_entry {
	char sha256[MB_SHA256_HEX_LEN]; /* "" when not built yet ("-") */
	char *path;                    /* owned, relative to the manifest's folder */
	char *task;                    /* owned */
	int task_version;
	uint64_t seed;
	json_t *params;                /* owned reference (an object) */
	int line;                      /* 1-based line in the manifest */
} mb_manifest_entry;

typedef struct mb_manifest {
	char *path; /* owned: the MANIFEST file */
	char *dir;  /* owned: its folder, which entry paths are relative to */
	mb_manifest_entry *entries;
	size_t n;
} mb_manifest;

/* Parses the manifest at path. Errors: "path:line: message". */
int mb_manifest_load(mb_manifest *out, const char *path, mb_error *err);
/* Rewrites the manifest atomically (header comment, then one line per entry). */
int mb_manifest_save(const mb_manifest *m, mb_error *err);
void mb_manifest_dispose(mb_manifest *m);

/* Regenerates entry e of m from its recipe; writes the file (atomically)
 * only when its bytes differ, and updates e->sha256. *changed is set to 1
 * when the file or its sha256 changed. The task must exist at the recorded
 * version. */
int mb_manifest_build_entry(mb_manifest *m, size_t e, int *changed, mb_error *err);

/* Checks entry e: the file's sha256 equals the manifest's, the file parses
 * (keys are content hashes), its header matches the recipe, and the recipe
 * regenerates the same bytes. Returns 0, MB_EMISMATCH or another error,
 * with a message naming the file. */
int mb_manifest_verify_entry(const mb_manifest *m, size_t e, mb_error *err);

#endif
