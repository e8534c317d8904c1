/*
 * arena.h: a bump allocator for per-run scratch (ggml's context idea).
 *
 * One block is allocated once and reused across runs: first touch of fresh
 * memory is slow on our VMs, so hot paths reset the arena instead of freeing.
 * Allocations are 64-byte aligned (a cache line, and AVX-512 friendly).
 */
#ifndef MECHBENCH_ARENA_H
#define MECHBENCH_ARENA_H

#include <stddef.h>

#include <mechbench/error.h>

typedef struct mb_arena {
	unsigned char *base; /* owned */
	size_t cap;          /* bytes in base */
	size_t used;         /* bytes handed out since the last reset */
	size_t peak;         /* high-water mark of used, for sizing */
} mb_arena;

/* Allocates cap bytes. Returns 0 or MB_ENOMEM. */
int mb_arena_init(mb_arena *a, size_t cap, mb_error *err);

/* Frees the block; the arena may be re-initialised. Safe on a zeroed arena. */
void mb_arena_dispose(mb_arena *a);

/* Returns 64-byte aligned memory for n bytes, or NULL when the arena is full
 * (the caller reports it; mb_arena_alloc_err does so into err). Memory is not
 * zeroed. */
void *mb_arena_alloc(mb_arena *a, size_t n);
void *mb_arena_alloc_err(mb_arena *a, size_t n, const char *what, mb_error *err);

/* A mark lets a caller release everything allocated after it. */
static inline size_t mb_arena_mark(const mb_arena *a) { return a->used; }
static inline void mb_arena_release(mb_arena *a, size_t mark) { a->used = mark; }
static inline void mb_arena_reset(mb_arena *a) { a->used = 0; }

#endif
