/* Philox4x32-10 against Random123's published known-answer vectors
 * (Random123 kat_vectors, "philox4x32 10" lines), and the stream rules. */
#include <criterion/criterion.h>
#include <omp.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/rng.h>

typedef struct kat {
	uint32_t ctr[4], key[2], want[4];
} kat;

static const kat kats[] = {
	{{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
	{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
	 {0xffffffff, 0xffffffff},
	 {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
	{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
	 {0xa4093822, 0x299f31d0},
	 {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

Test(rng, matches_random123_known_answer_vectors)
{
	for (size_t k = 0; k < sizeof(kats) / sizeof(kats[0]); k++) {
		uint32_t out[4];
		mb_philox4x32_10(out, kats[k].ctr, kats[k].key);
		for (int w = 0; w < 4; w++)
			cr_expect_eq(out[w], kats[k].want[w], "vector %zu word %d: %08x != %08x", k,
				     w, out[w], kats[k].want[w]);
	}
}

Test(rng, generator_words_are_philox_of_seed_stream_and_block)
{
	mb_rng r;
	uint64_t seed = 0x299f31d0a4093822ull, stream = 0x0370734413198a2eull;
	mb_rng_init(&r, seed, stream);
	mb_rng_seek(&r, 0x85a308d3243f6a88ull);
	for (int w = 0; w < 4; w++)
		cr_expect_eq(mb_rng_u32(&r), kats[2].want[w]);
}

Test(rng, named_streams_do_not_depend_on_use_order)
{
	mb_rng a, b;
	uint32_t first_a[64], second_a[64];

	mb_rng_init_named(&a, 42, "ioi/prompts", 0);
	for (int i = 0; i < 64; i++)
		first_a[i] = mb_rng_u32(&a);
	/* Use another stream first, then the same stream again. */
	mb_rng_init_named(&b, 42, "bootstrap/ioi.logit_diff", 7);
	for (int i = 0; i < 1000; i++)
		(void)mb_rng_u32(&b);
	mb_rng_init_named(&a, 42, "ioi/prompts", 0);
	for (int i = 0; i < 64; i++)
		second_a[i] = mb_rng_u32(&a);
	cr_expect(memcmp(first_a, second_a, sizeof(first_a)) == 0);
	cr_expect_neq(mb_rng_stream_id("ioi/prompts", 0), mb_rng_stream_id("ioi/prompts", 1));
	cr_expect_neq(mb_rng_stream_id("a", 0), mb_rng_stream_id("b", 0));
}

/* Each thread draws whole streams; results land in disjoint slots, so the
 * table must be identical for 1 and 2 threads. */
static void draw_table(uint64_t *out, int streams, int per, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
	for (int s = 0; s < streams; s++) {
		mb_rng r;
		mb_rng_init_named(&r, 7, "test/table", (uint64_t)s);
		for (int i = 0; i < per; i++)
			out[(size_t)s * per + i] = mb_rng_u64(&r);
	}
}

Test(rng, draws_are_identical_for_one_and_two_threads)
{
	enum { S = 64, P = 257 };
	uint64_t *t1 = malloc(sizeof(uint64_t) * S * P), *t2 = malloc(sizeof(uint64_t) * S * P);
	draw_table(t1, S, P, 1);
	draw_table(t2, S, P, 2);
	cr_expect(memcmp(t1, t2, sizeof(uint64_t) * S * P) == 0);
	free(t1);
	free(t2);
}

Test(rng, uniform_normal_and_range_have_the_right_moments)
{
	mb_rng r;
	enum { N = 200000 };
	double su = 0, sn = 0, sn2 = 0;
	long counts[7] = {0};

	mb_rng_init_named(&r, 1, "test/moments", 0);
	for (int i = 0; i < N; i++) {
		double u = mb_rng_uniform(&r);
		cr_assert(u >= 0.0 && u < 1.0);
		su += u;
		double z = mb_rng_normal(&r);
		sn += z;
		sn2 += z * z;
		counts[mb_rng_range(&r, 7)]++;
	}
	/* 5-sigma bands: mean of U(0,1) has SD 0.2887/sqrt(N). */
	cr_expect(fabs(su / N - 0.5) < 5 * 0.2887 / 447.2);
	cr_expect(fabs(sn / N) < 5.0 / 447.2);
	cr_expect(fabs(sn2 / N - 1.0) < 5 * 1.414 / 447.2);
	for (int k = 0; k < 7; k++) /* binomial SD sqrt(N p (1-p)) ~ 156 */
		cr_expect(labs(counts[k] - N / 7) < 5 * 157, "bucket %d: %ld", k, counts[k]);
}

Test(rng, permutation_is_a_permutation_and_is_seeded)
{
	mb_rng r1, r2;
	uint32_t p[1000], q[1000];
	unsigned char seen[1000] = {0};

	mb_rng_init_named(&r1, 3, "test/perm", 0);
	mb_rng_init_named(&r2, 3, "test/perm", 0);
	mb_rng_permutation(&r1, p, 1000);
	mb_rng_permutation(&r2, q, 1000);
	cr_expect(memcmp(p, q, sizeof(p)) == 0);
	int fixed = 0;
	for (int i = 0; i < 1000; i++) {
		cr_assert(p[i] < 1000);
		cr_expect(!seen[p[i]], "value %u repeated", p[i]);
		seen[p[i]] = 1;
		fixed += p[i] == (uint32_t)i;
	}
	cr_expect(fixed < 10, "%d fixed points: not shuffled", fixed);
}
