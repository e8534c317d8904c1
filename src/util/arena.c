/* arena.c: bump allocation out of one reusable block. */
#include <mechbench/arena.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MB_ARENA_ALIGN 64

int mb_arena_init(mb_arena *a, size_t cap, mb_error *err)
{
	void *p = NULL;

	memset(a, 0, sizeof(*a));
	cap = (cap + MB_ARENA_ALIGN - 1) & ~(size_t)(MB_ARENA_ALIGN - 1);
	if (cap == 0)
		cap = MB_ARENA_ALIGN;
	if (posix_memalign(&p, MB_ARENA_ALIGN, cap) != 0)
		return mb_error_oom(err, "arena", cap);
	a->base = p;
	a->cap = cap;
	return 0;
}

void mb_arena_dispose(mb_arena *a)
{
	if (!a)
		return;
	free(a->base);
	memset(a, 0, sizeof(*a));
}

void *mb_arena_alloc(mb_arena *a, size_t n)
{
	size_t start = (a->used + MB_ARENA_ALIGN - 1) & ~(size_t)(MB_ARENA_ALIGN - 1);

	if (start > a->cap || n > a->cap - start)
		return NULL;
	a->used = start + n;
	if (a->used > a->peak)
		a->peak = a->used;
	return a->base + start;
}

void *mb_arena_alloc_err(mb_arena *a, size_t n, const char *what, mb_error *err)
{
	void *p = mb_arena_alloc(a, n);

	if (!p)
		mb_error_set(err, MB_ENOMEM,
			     "arena full: %s needs %zu bytes, %zu of %zu in use", what, n,
			     a->used, a->cap);
	return p;
}
