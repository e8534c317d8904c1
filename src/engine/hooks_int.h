/*
 * hooks_int.h: the hook registry's insides, shared by hooks.c, forward.c and
 * backward.c.
 */
#ifndef MB_ENGINE_HOOKS_INT_H
#define MB_ENGINE_HOOKS_INT_H

#include <mechbench/hooks.h>

typedef struct mb_hook_entry {
	mb_hook_point point;
	mb_hook_fn fn;   /* NULL for a cache copy */
	void *payload;
	unsigned flags;
	mb_cache *cache; /* set for a cache copy */
} mb_hook_entry;

struct mb_hooks {
	mb_hook_entry *v; /* (n) in registration order */
	size_t n, cap;
};

/* Marks every cache attached to h as empty (start of a run). */
void mb_hooks_begin_run(const mb_hooks *h);

/* Delivers t (a filled tensor at t->point, in hook layout) to every entry of
 * h registered at that point, in registration order: a cache copies it
 * (parallel chunks), a callback is called with it. *wrote (when non-NULL) is
 * set to 1 when a callback that may write ran. An error is prefixed
 * "<what> <hook name>" (what: "hook" or "gradient hook"). */
int mb_hooks_deliver(const mb_hooks *h, mb_hook_tensor *t, const char *what, int *wrote,
		     mb_error *err);

/* Reports an error at point p, prefixed "<what> <hook name>" (a message is
 * supplied when the failing callback left none); returns rc. */
int mb_hooks_error(mb_error *err, const char *what, mb_hook_point p, int rc);

/* The cache's buffer for meta->point, grown to meta->numel floats; records
 * meta (shape, lengths copied) as the slot's tensor with data = the buffer.
 * NULL with err set when out of memory. */
float *mb_cache_slot_prepare(mb_cache *c, const mb_hook_tensor *meta, mb_error *err);

#endif
