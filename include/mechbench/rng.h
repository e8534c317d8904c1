/*
 * rng.h: Philox4x32-10 counter-based random numbers with named streams.
 *
 * A draw is a pure function of (seed, stream, counter): the 64-bit seed is
 * the Philox key, the 64-bit stream id fills counter words 2-3 and a 64-bit
 * block index fills words 0-1 (Salmon et al. 2011, "Parallel random numbers:
 * as easy as 1, 2, 3"). Streams are named ("ioi/prompts") and indexed, and
 * the id is the first 8 bytes of SHA-256("name#index"), so no draw depends on
 * thread schedule or on which other streams were used before.
 */
#ifndef MECHBENCH_RNG_H
#define MECHBENCH_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct mb_rng {
	uint32_t key[2];  /* from the seed */
	uint64_t stream;  /* counter words 2-3 */
	uint64_t block;   /* counter words 0-1: index of the next 128-bit block */
	uint32_t buf[4];  /* the current block's output */
	unsigned pos;     /* next unused word of buf; 4 when empty */
} mb_rng;

/* The raw bijection: 10 rounds of Philox4x32 on ctr under key. Checked
 * against the Random123 known-answer vectors. */
void mb_philox4x32_10(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]);

/* Stream id of a name and index: first 8 bytes (big-endian) of
 * SHA-256 of "<name>#<index>". */
uint64_t mb_rng_stream_id(const char *name, uint64_t index);

/* Starts a generator at block 0 of a stream. */
void mb_rng_init(mb_rng *r, uint64_t seed, uint64_t stream);
void mb_rng_init_named(mb_rng *r, uint64_t seed, const char *name, uint64_t index);

/* Jumps to a block index (each block gives 4 words): random access. */
void mb_rng_seek(mb_rng *r, uint64_t block);

uint32_t mb_rng_u32(mb_rng *r);
uint64_t mb_rng_u64(mb_rng *r);
/* Uniform on [0, 1): 53 random bits. */
double mb_rng_uniform(mb_rng *r);
/* Uniform float on [0, 1): 24 random bits. */
float mb_rng_uniformf(mb_rng *r);
/* Standard normal by Box-Muller on two uniforms (one pair per draw, the
 * second value is discarded so every draw consumes the same words). */
double mb_rng_normal(mb_rng *r);
/* Uniform integer in [0, n), unbiased (Lemire's method with rejection).
 * n must be > 0. */
uint64_t mb_rng_range(mb_rng *r, uint64_t n);
/* Fills out[0..n) with a uniform random permutation of 0..n-1 (Fisher-Yates). */
void mb_rng_permutation(mb_rng *r, uint32_t *out, size_t n);
/* Shuffles an array of n elements of `size` bytes in place (Fisher-Yates). */
void mb_rng_shuffle(mb_rng *r, void *base, size_t n, size_t size);

#endif
