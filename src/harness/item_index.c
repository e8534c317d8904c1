/*
 * item_index.c: items by content key (item_index.h).
 */
#include <mechbench/item_index.h>

#include <stdlib.h>
#include <string.h>

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const mb_item_index_entry *)a)->key, ((const mb_item_index_entry *)b)->key);
}

int mb_item_index_init(mb_item_index *out, const mb_entry_result *r, mb_error *err)
{
	out->n = r->n_items;
	out->sorted = malloc((r->n_items ? r->n_items : 1) * sizeof(*out->sorted));
	if (!out->sorted)
		return mb_error_oom(err, "item keys", r->n_items * sizeof(*out->sorted));
	for (size_t i = 0; i < r->n_items; i++)
		out->sorted[i] = (mb_item_index_entry){r->items[i].key, i};
	qsort(out->sorted, r->n_items, sizeof(*out->sorted), cmp_entry);
	return 0;
}

void mb_item_index_dispose(mb_item_index *ix)
{
	if (!ix)
		return;
	free(ix->sorted);
	ix->sorted = NULL;
	ix->n = 0;
}

long mb_item_index_find(const mb_item_index *ix, const char *key)
{
	mb_item_index_entry probe = {key, 0};
	const mb_item_index_entry *hit =
		bsearch(&probe, ix->sorted, ix->n, sizeof(*ix->sorted), cmp_entry);
	return hit ? (long)hit->idx : -1;
}

int mb_item_index_pair(long *pair, size_t *n_shared, const mb_entry_result *a,
		       const mb_entry_result *b, mb_error *err)
{
	mb_item_index ix;
	int error;

	*n_shared = 0;
	if ((error = mb_item_index_init(&ix, b, err)) < 0)
		return error;
	for (size_t i = 0; i < a->n_items; i++) {
		pair[i] = mb_item_index_find(&ix, a->items[i].key);
		*n_shared += pair[i] >= 0;
	}
	mb_item_index_dispose(&ix);
	return 0;
}
