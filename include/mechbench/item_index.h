/*
 * item_index.h: items found by content key, the one way results are paired.
 * The gate pairs a candidate's items with its baseline's, the leaderboard
 * two runs' shared items; both through this index (a sorted copy of the
 * keys, binary search), so pairing means the same everywhere: by the item's
 * content key (sha256 of its content), never by position.
 */
#ifndef MECHBENCH_ITEM_INDEX_H
#define MECHBENCH_ITEM_INDEX_H

#include <stddef.h>

#include <mechbench/error.h>
#include <mechbench/runner.h>

typedef struct mb_item_index_entry {
	const char *key; /* borrowed from the result's items */
	size_t idx;      /* the item's index in the result */
} mb_item_index_entry;

typedef struct mb_item_index {
	mb_item_index_entry *sorted; /* (n) by key */
	size_t n;
} mb_item_index;

/* Indexes r's items by key. The index borrows r's keys: r outlives it.
 * Disposed with mb_item_index_dispose. MB_ENOMEM. */
int mb_item_index_init(mb_item_index *out, const mb_entry_result *r, mb_error *err);
void mb_item_index_dispose(mb_item_index *ix);

/* The index in the result of the item with this key, or -1. */
long mb_item_index_find(const mb_item_index *ix, const char *key);

/* pair[i] = the index in b of a's item i (same key), or -1, for i in
 * [0, a->n_items); *n_shared the items found. pair is caller-owned
 * (a->n_items longs). MB_ENOMEM. */
int mb_item_index_pair(long *pair, size_t *n_shared, const mb_entry_result *a,
		       const mb_entry_result *b, mb_error *err);

#endif
