/*
 * heads: the pattern scores on hand-made patterns whose scores follow from
 * the definitions (heads.h): a perfect induction head, a perfect
 * previous-token head, a duplicate-token head, uniform attention; and the
 * running diagonal sum the trainer uses.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include <mechbench/heads.h>

#define R 5
#define N (2 * R + 1)

/* [BOS] R R with R = 1..R (no repeats inside R). */
static void prompt(int32_t *tok)
{
	tok[0] = 0;
	for (int j = 0; j < R; j++)
		tok[1 + j] = tok[1 + R + j] = 1 + j;
}

/* Row q attends only to key(q) (or to 0 when key(q) is out of [0, q]). */
static void one_hot(float *p, int (*key)(int q))
{
	for (int q = 0; q < N; q++) {
		int k = key(q);
		for (int j = 0; j < N; j++)
			p[q * N + j] = 0;
		p[q * N + (k >= 0 && k <= q ? k : 0)] = 1;
	}
}

static int induction_key(int q) { return q > R ? q - R + 1 : 0; }
static int prev_key(int q) { return q - 1; }
static int dup_key(int q) { return q > R ? q - R : 0; }

Test(heads, pattern_scores_of_one_hot_heads_follow_the_definitions)
{
	float p[N * N];
	int32_t tok[N];
	double s[MB_HEADS_N_SCORES];

	prompt(tok);
	one_hot(p, induction_key);
	mb_heads_pattern_scores(s, p, N, tok, R);
	cr_expect_eq(s[MB_HEADS_INDUCTION], 1.0);
	cr_expect_eq(s[MB_HEADS_PREFIX], 1.0, "no repeats inside R: prefix = induction");
	cr_expect_eq(s[MB_HEADS_DUP], 0.0);
	/* rows q > R look at q - R + 1 = q - 1 only when R = 2; here never */
	cr_expect_float_eq(s[MB_HEADS_PREV], 1.0 / (N - 1), 1e-15, "only row 1 looks at 0");
	cr_expect_eq(mb_heads_diag(p, N, R), 1.0);

	one_hot(p, prev_key);
	mb_heads_pattern_scores(s, p, N, tok, R);
	cr_expect_eq(s[MB_HEADS_PREV], 1.0);
	cr_expect_eq(s[MB_HEADS_INDUCTION], 0.0);

	one_hot(p, dup_key);
	mb_heads_pattern_scores(s, p, N, tok, R);
	cr_expect_eq(s[MB_HEADS_DUP], 1.0);
	cr_expect_eq(s[MB_HEADS_INDUCTION], 0.0);
	cr_expect_eq(s[MB_HEADS_PREFIX], 0.0);
}

Test(heads, uniform_attention_scores_the_mean_of_one_over_q_plus_one)
{
	float p[N * N];
	int32_t tok[N];
	double s[MB_HEADS_N_SCORES], ind = 0;

	prompt(tok);
	for (int q = 0; q < N; q++)
		for (int k = 0; k < N; k++)
			p[q * N + k] = k <= q ? 1.0f / (float)(q + 1) : 0.0f;
	mb_heads_pattern_scores(s, p, N, tok, R);
	for (int q = R + 1; q <= 2 * R; q++)
		ind += 1.0f / (float)(q + 1);
	cr_expect_float_eq(s[MB_HEADS_INDUCTION], ind / R, 1e-12);
	cr_expect_float_eq(s[MB_HEADS_DUP], ind / R, 1e-12);
}

Test(heads, the_running_diagonal_sum_adds_prompts_in_order)
{
	float a[N * N], b[N * N];
	double acc = 0, want = 0;

	for (int i = 0; i < N * N; i++) {
		a[i] = (float)((i * 37) % 101) / 101.0f;
		b[i] = (float)((i * 53) % 97) / 97.0f;
	}
	acc = mb_heads_diag_add(mb_heads_diag_add(0, a, N, R), b, N, R);
	for (int q = R + 1; q <= 2 * R; q++)
		want += a[q * N + q - R + 1];
	for (int q = R + 1; q <= 2 * R; q++)
		want += b[q * N + q - R + 1];
	cr_expect(acc == want, "%.17g vs %.17g", acc, want);
	cr_expect(mb_heads_diag(a, N, R) == mb_heads_diag_add(0, a, N, R) / R);
}
