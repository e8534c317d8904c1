/*
 * heads.h: scores that classify attention heads, shared by the tasks that
 * name heads by role (induction: previous-token and induction heads; IOI:
 * duplicate-token, previous-token, induction and name-mover heads, the
 * latter by their OV copying score).
 *
 * Legend: T positions of a pattern's rows, r |R|, n = 2r + 1, L layers, H
 * heads, D d_model, Dh d_head, V vocab.
 *
 * Pattern scores (TransformerLens's definitions; p = hook_pattern of one
 * head, rows of stride T, on a repeated prompt [BOS] R R, positions 0..2r):
 *   induction        mean over q in [r+1, 2r] of p[q][q - r + 1]: attention
 *                    from each position of the second repeat to the position
 *                    right after the previous occurrence of its token.
 *   previous-token   mean over q in [1, 2r] of p[q][q - 1].
 *   duplicate-token  mean over q in [r+1, 2r] of p[q][q - r]: to the previous
 *                    occurrence itself.
 *   prefix-matching  Olsson et al. 2022 ("In-context Learning and Induction
 *                    Heads", definitions): attention to earlier tokens that
 *                    were preceded by the current token; mean over positions
 *                    q that have such keys of sum_{k in [1, q-1], tok[k-1] ==
 *                    tok[q]} p[q][k]. On [BOS] R R with no repeats inside R
 *                    it equals the induction score; repeats inside R add keys.
 * Copying (OV), Elhage et al. 2021 / Olsson et al. 2022: eigenvalue
 * positivity sum(l) / sum|l| of the full OV circuit W_E W_V^h W_O^h W_U
 * (V x V), computed as the eigenvalues of the Dh x Dh matrix W_O^h (W_U W_E)
 * W_V^h (same nonzero spectrum), with LayerNorm weights folded in (ln_1 into
 * W_V, ln_f into W_U) and LN centring and scaling ignored, as
 * TransformerLens's fold_ln does; 0 when every eigenvalue is 0. Eigenvalues
 * by mb_eig_real (not LAPACK), so the score has the same bits on any machine.
 */
#ifndef MECHBENCH_HEADS_H
#define MECHBENCH_HEADS_H

#include <stdint.h>

#include <mechbench/engine.h>
#include <mechbench/error.h>

/* Indices of mb_heads_pattern_scores' output. */
enum {
	MB_HEADS_INDUCTION,
	MB_HEADS_PREV,
	MB_HEADS_DUP,
	MB_HEADS_PREFIX,
	MB_HEADS_N_SCORES
};

/* The four pattern scores of one head on one repeated prompt tok (n) from
 * its pattern p (rows of stride T): out[MB_HEADS_N_SCORES], each summed in
 * double in ascending q (and k). */
void mb_heads_pattern_scores(double out[MB_HEADS_N_SCORES], const float *p, int T,
			     const int32_t *tok, int r);

/* The induction diagonal's mean attention on any prompt of n = 2r + 1
 * positions (the induction score's sum, without looking at the tokens: on a
 * non-repeating control prompt it should be ~0). */
double mb_heads_diag(const float *p, int T, int r);
/* acc plus the diagonal's terms p[q][q - r + 1], q = r+1..2r, added to it in
 * order: a running sum over several prompts (the trainer's induction score,
 * one accumulator over items then queries, divided by B r). */
double mb_heads_diag_add(double acc, const float *p, int T, int r);

/* OV copying score of every head: out (L, H). Errors: out of memory, the
 * eigenvalue solver not converging (named). */
int mb_heads_copying(double *out, const mb_engine_config *c, const mb_engine_weights *w,
		     mb_error *err);

#endif
