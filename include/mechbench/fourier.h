/*
 * fourier.h: the discrete Fourier basis over Z_P and the analyses built on
 * it: Fourier norms of a matrix's rows, key frequencies by energy, Gini
 * coefficients, single-frequency neurons, the loss of a logits row projected
 * onto (or with removed) frequencies, and an energy-weighted random-frequency
 * control. The modular-addition task (src/tasks/modadd.c, Nanda et al. 2023)
 * uses all of it; any task whose inputs live on a cyclic group can.
 *
 * Legend: P modulus (odd), K = (P - 1) / 2 frequencies, C columns, M
 * neurons, S key frequencies.
 *
 * The Fourier basis (Nanda et al. 2023, "Progress measures for grokking via
 * mechanistic interpretability", section 4 / appendix, their fourier_basis):
 * P orthonormal vectors over x = 0..P-1, in this order:
 *   row 0       the constant 1 / sqrt(P)
 *   row 2k - 1  cos(2 pi k x / P) / ||.||,   k = 1..K
 *   row 2k      sin(2 pi k x / P) / ||.||
 * "Frequency k" is the pair of rows (2k - 1, 2k); its norm is the root of the
 * sum of the squared norms of the two components.
 *
 * Everything here is plain double-precision C in a fixed summation order, so
 * the results are bitwise reproducible on any thread count.
 */
#ifndef MECHBENCH_FOURIER_H
#define MECHBENCH_FOURIER_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/error.h>
#include <mechbench/rng.h>

/* Largest modulus the analyses accept (the basis is P x P doubles). */
#define MB_FOURIER_MAX_P 1024

/* Fills out (P, P) with the basis above. P must be odd and in [3, MAX_P]. */
void mb_fourier_basis(double *out, int p);

/* Per-frequency norms of a (P, C) matrix X whose rows are indexed by x
 * (W_E's token rows): out_comp (P) gets the L2 norm of each basis
 * component's row of F X, out_freq (K + 1) the norm of each frequency k
 * (out_freq[0] is the constant component's). basis is (P, P). */
void mb_fourier_rows(double *out_comp, double *out_freq, const double *basis,
			    const float *x, int p, int cols, size_t stride);
/* The same with element (x, j) at x[x * row_stride + j * col_stride], so a
 * matrix stored transposed (W_L (M, P) transformed over its columns c) needs
 * no copy; the sums run in the same order, so the bits are the same. */
void mb_fourier_rows_strided(double *out_comp, double *out_freq, const double *basis,
			     const float *x, int p, int cols, size_t row_stride,
			     size_t col_stride);

/* The Gini coefficient of n non-negative values (Nanda et al. 2023, section
 * 5.1 "Gini coefficient of the Fourier norms", the usual mean-difference
 * form): G = sum_i sum_j |x_i - x_j| / (2 n sum_i x_i), computed as
 * sum_i (2 i - n - 1) x_(i) / (n sum x) over the sorted values. 0 when every
 * value is equal (or all are zero), (n - 1) / n for a single non-zero. */
double mb_fourier_gini(const double *x, size_t n);

/*
 * Key frequencies from per-frequency norms freq_norm[1..K] (index 0, the
 * constant, is ignored). Rule (version 1): sort the squared norms in
 * descending order and take the shortest prefix holding at least `energy`
 * (0.9 in the task) of the total squared norm of the non-constant
 * frequencies; a frequency whose squared norm ties the last one taken is
 * taken too. Writes the chosen frequencies to out (ascending), returns
 * their count (>= 1 when any norm is positive, else 0). out holds K.
 */
int mb_fourier_key_frequencies(int *out, const double *freq_norm, int p, double energy);

/*
 * Fraction of neurons whose activation over the P x P grid of inputs is
 * explained to at least `threshold` (0.85 in Nanda et al. 2023, section
 * 5.2 / appendix) by one frequency: for neuron n with activations A(a, b)
 * (acts[(a * P + b) * stride + n]), the 2D transform C = F A F^T; its
 * variance is the sum of C(i, j)^2 over (i, j) != (0, 0) (Parseval: the
 * centred sum of squares), and frequency k explains the share held by the
 * components whose indices lie in {0, 2k-1, 2k}^2 minus (0, 0) (the
 * linear terms in a or b and their products). A neuron with zero variance
 * counts as not explained. out_best (M) may be NULL; else it gets each
 * neuron's best frequency (0 when none). Parallel over neurons, each writing
 * its own entries.
 */
double mb_fourier_neuron_fraction(int *out_best, const double *basis, const float *acts,
				 size_t stride, int p, int m, double threshold);

/* What happens to one item's logits (P values over answers c). */
typedef enum mb_fourier_projection {
	MB_FOURIER_FULL = 0,  /* unchanged */
	MB_FOURIER_RESTRICT,  /* keep only the constant and the listed frequencies */
	MB_FOURIER_EXCLUDE,   /* remove the listed frequencies' components */
} mb_fourier_projection;

/* Cross-entropy -log softmax(l')[target] of the projected logits l' of l
 * (P values) over the listed frequencies freqs[0..nf) (each in 1..K).
 * basis is (P, P). Writes the argmax of l' (first index on ties) to
 * *out_argmax when non-NULL. */
double mb_fourier_projected_loss(int *out_argmax, const double *basis, const float *logits,
				int p, int target, mb_fourier_projection how, const int *freqs,
				int nf);

/*
 * The random-frequency control's set (modadd.control_loss@2 uses it): n
 * frequencies drawn without replacement from the non-key ones (k in 1..K not
 * in key[0..nkey)), each draw with probability proportional to its squared
 * norm freq_norm[k]^2 (its Fourier energy) among those not drawn yet. Draw j:
 * u = mb_rng_uniform(r) * (sum of the remaining squared norms, ascending k),
 * then the first remaining k in ascending order whose running sum exceeds u
 * (the last remaining one when rounding leaves none); when every remaining
 * norm is 0, the mb_rng_range(r, count)-th remaining one instead. Writes
 * out[0..n) ascending. Needs 1 <= n <= K - nkey.
 */
void mb_fourier_control_frequencies(int *out, mb_rng *r, const double *freq_norm, int p,
				   const int *key, int nkey, int n);

#endif
