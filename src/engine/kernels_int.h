/*
 * kernels_int.h: the engine's numeric kernels (private to src/engine, used by
 * the forward, the backward and the tests).
 *
 * Shape letters: R rows, D row width, K inner dimension, N output columns,
 * V vocab, T positions, L valid positions of one item, Dh head width.
 *
 * Every kernel is deterministic: per-row work in OpenMP loops over disjoint
 * rows, reductions inside a row in a fixed order (16 lanes, then a fixed
 * tree), no float atomics. Kernels never allocate.
 */
#ifndef MB_ENGINE_KERNELS_INT_H
#define MB_ENGINE_KERNELS_INT_H

#include <stddef.h>

#include <mechbench/engine.h>
#include <mechbench/gemm.h>

/*
 * The GEMM layer (gemm.h): C (M, N) = alpha * op(A) @ op(B), beta = 0,
 * single-threaded on the calling thread, with the process's backend
 * (portable: one FMA chain per element over k in order; openblas: cblas_sgemm
 * made single-threaded). Every matrix product in the engine goes through it
 * (mb_k_gemm below, attention, the backward's weight gradients).
 */
void mb_k_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
		int lda, const float *B, int ldb, float *C, int ldc);

/*
 * C (M, N) = A (M, K) @ op(B) on dense row-major operands (row strides K, N,
 * and N or K for B; with trans_b, B is (N, K)), through oneDNN's matmul
 * primitive, single-threaded on the calling thread, when the backend is
 * onednn: returns 1. Returns 0 (nothing done) under any other backend. The
 * bits depend only on the shape and the data. Aborts when oneDNN cannot make
 * or run the primitive (out of memory), rather than give other bits.
 */
int mb_k_dense_matmul(int trans_b, int M, int N, int K, const float *A, const float *B, float *C);

/* Sets the backend and the portable kernels' ISA (tests and benchmarks: one
 * process compares them); -1 (nothing changed) for an ISA this CPU lacks or
 * onednn in a build without it. Not while GEMMs run. */
int mb_k_gemm_force(mb_gemm_backend b, mb_gemm_isa isa);

/*
 * C (R, N) = alpha * A (R, K) @ op(W): op(W) = W (K, N) row-major with leading
 * dimension ldw, or with trans_w, W^T where W is (N, K). Rows are split into
 * chunks starting at multiples of u, each a single-threaded mb_k_sgemm run by
 * one OpenMP thread, so a row's bits never depend on the thread count; with
 * R a multiple of u they depend only on the row's own data and its position
 * modulo u (engine.h, "Why packed and why U"). u < 1: one single-threaded
 * call (deterministic, slow). Callable inside a parallel region (then runs on
 * the calling thread).
 */
void mb_k_gemm(float *C, int ldc, const float *A, int lda, const float *W, int ldw, int trans_w,
	       int R, int N, int K, float alpha, int u);

/* The smallest row group u (from 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64,
 * 96, 128) for which single-threaded sgemm calls on u-aligned row ranges, of
 * lengths that are multiples of u, reproduce the rows of one larger call bit
 * for bit, for this (K, N, trans_w); 0 when none does. Uses its own random
 * data; N is capped at 512 columns (the kernels' row blocking does not depend
 * on the column count). */
int mb_k_gemm_probe_group(int K, int N, int trans_w);

/* exp(x) to about 2 ulp on [-86, 88] (inputs clamped to it); same bits on
 * every machine with IEEE float and on every vectorisation of the loop. */
float mb_k_expf(float x);

/* Sum of x[0..n) in the engine's fixed order (16 lanes, then a tree). */
float mb_k_sum(const float *x, int n);
/* Dot product of a and b in the same fixed order. */
float mb_k_dot(const float *a, const float *b, int n);

/*
 * LayerNorm of R rows of width D: mean, rstd = 1 / sqrt(var + eps) (biased
 * variance), xhat = (x - mean) / sqrt(var + eps), out = xhat * w + b.
 * xhat may be NULL (not stored); out may be NULL (only xhat and statistics).
 * x may alias out but not xhat.
 */
void mb_k_layernorm(float *out, float *xhat, float *mean, float *rstd, const float *x,
		    const float *w, const float *b, int R, int D, float eps);
/* out = xhat * w + b over R rows of width D (out may alias xhat). */
void mb_k_ln_affine(float *out, const float *xhat, const float *w, const float *b, int R, int D);

/* y[r][c] += bias[c] for R rows of N columns with row stride ld. */
void mb_k_add_bias(float *y, int ld, const float *bias, int R, int N);
/* out = a + b, n floats (out may alias a or b). */
void mb_k_add(float *out, const float *a, const float *b, size_t n);
/* in += bias, then out = act(in), over R rows of N columns (row stride N), row
 * by row so the second pass reads from cache; out may alias in. */
void mb_k_bias_act(float *out, float *in, const float *bias, int R, int N, mb_activation act);
/* out = act(in), n floats (out may alias in). */
void mb_k_act(float *out, const float *in, size_t n, mb_activation act);
/* The scalar activations the vector kernels implement, for tests. */
float mb_k_gelu_new(float x);
float mb_k_gelu(float x);

/*
 * Causal attention of one (item, head), single-threaded, in query blocks of
 * MB_K_ATT_BLOCK rows so that the masked upper half is mostly skipped.
 * q, k, v: (L, Dh) with row stride ld (the item's rows of the qkv buffer at the
 * head's column offset). S: the (T, T) block of att for this (item, head),
 * row stride T. z: (L, Dh) with row stride ldz.
 * scores: S[i][0..blockend(i)) = scale * q_i . k_j (entries j > i are junk:
 *          computed, or with the tiles past the tile's last row unwritten).
 * softmax: for rows i < L, S[i][j] = softmax over j <= i, zeros for i < j <
 *          blockend(i); with full, also zeros beyond and zero rows i >= L.
 * mask_scores (full fill of the scores view): S[i][j > i] = -inf, rows i >= L -inf.
 * pv: z_i = sum over j < blockend(i) of S[i][j] v_j (the block kernels; the
 *          tiles sum over j <= i, the same when (i, blockend) holds +0, as
 *          softmax and zero_masked leave it).
 * fused: scores, softmax and pv block by block (cache friendly).
 * fused_scratch: the same bits of z as fused (full = 0), but every query
 *          block's scores and pattern go to W (MB_K_ATT_BLOCK, T), row stride
 *          T (i1 on the dense path; with the tiles a group's 24 rows at
 *          stride T rounded up to 16, after the packed K and V), reused block
 *          after block, so they stay in cache at long context and no (T, T)
 *          block is written (when nothing reads the pattern).
 */
/* 128 rows: oneDNN runs the QK^T and PV GEMMs of a block (K or N = Dh = 64)
 * at 60% of its dense rate with 64-row blocks and at 74-77% with 128
 * (OpenBLAS: 73-78% either way), for 3% more masked work on the diagonal
 * blocks at T = 2048. The portable backend's z has the same bits at any block
 * size: each element is one FMA chain over j in order, and a larger block
 * only appends terms whose pattern entry is +0 (tests/engine/test_kernels.c). */
#define MB_K_ATT_BLOCK 128
/* The end of row i's query block (of L rows): the pattern's zeros run on
 * (i, block end), and the block kernels' PV (portable; openblas and onednn
 * without the tiles below) sums over j < block end. */
static inline int mb_k_att_block_end(int i, int L)
{
	int e = (i / MB_K_ATT_BLOCK + 1) * MB_K_ATT_BLOCK;

	return e < L ? e : L;
}

/*
 * att_avx512.c: the openblas and onednn backends' attention on AVX-512
 * (GCC, x86-64): onednn's fast softmax row (exp by a degree-5 polynomial and
 * vscalefps, one reciprocal per row) and QK^T / softmax / PV in register tiles of
 * ATT512_ROWS query rows, whose bits that file's head comment defines
 * (scores and z one FMA chain per element, z over j <= i exactly; the
 * softmax the caller's: fast under onednn, the exact one under openblas).
 * kernels.c takes them (mb_k_att_* below) when the backend is onednn or
 * openblas, the portable kernels' ISA is AVX-512 and Dh is a multiple of 16
 * up to 64; the same contracts as the mb_k_att_* they serve.
 */
/* 1 when this process's attention takes the tiles (for head widths 16, 32,
 * 48 and 64): what the provenance's "att=tiles|blocks" records. */
int mb_k_att_tiles_on(void);
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define MB_HAVE_ATT512 1
#define ATT512_ROWS 6
/* A causal softmax of row i, zeros on (i, end). */
typedef void (*mb_k_softmax_fn)(float *s, int i, int end);
void mb_k_softmax_row_fast(float *s, int i, int end);
size_t mb_k_att512_scratch_floats(int T, int Dh);
void mb_k_att512_fused(float *z, int ldz, float *S, int T, const float *q, const float *k,
		       const float *v, int ld, int L, int Dh, float scale, int full,
		       mb_k_softmax_fn sm, float *W);
void mb_k_att512_scores(float *S, int T, const float *q, const float *k, int ld, int L, int Dh,
			float scale, float *W);
void mb_k_att512_pv(float *z, int ldz, const float *S, int T, const float *v, int ld, int L,
		    int Dh, float *W);
#endif

/* W: the calling thread's scratch of mb_k_att_scratch_floats(T, Dh) floats,
 * taken by every kernel below that multiplies. With the tiles (att_avx512.c)
 * W holds the packed K, the dense V and a group's scores. Under the onednn
 * backend without them the block GEMMs run on dense copies in W (q scaled,
 * k, v per head; a block's scores at row stride i1) through
 * mb_k_dense_matmul, on every path, so that fused, phased and scratch give
 * the same bits; under portable (and openblas without the tiles) only
 * fused_scratch uses W (its first MB_K_ATT_BLOCK * T floats). */
size_t mb_k_att_scratch_floats(int T, int Dh);
void mb_k_att_scores(float *S, int T, const float *q, const float *k, int ld, int L, int Dh,
		     float scale, float *W);
void mb_k_att_mask_scores(float *S, int T, int L);
void mb_k_att_softmax(float *S, int T, int L, int full);
/* Zeros the masked entries inside the query blocks (after a pattern hook). */
void mb_k_att_zero_masked(float *S, int T, int L);
void mb_k_att_pv(float *z, int ldz, const float *S, int T, const float *v, int ld, int L, int Dh,
		 float *W);
void mb_k_att_fused(float *z, int ldz, float *S, int T, const float *q, const float *k,
		    const float *v, int ld, int L, int Dh, float scale, int full, float *W);
void mb_k_att_fused_scratch(float *z, int ldz, float *W, int T, const float *q, const float *k,
			    const float *v, int ld, int L, int Dh, float scale);

/*
 * out[r][c] = X[r] . W[c] for R rows of X (R, K) and N rows of W (N, K), each
 * a mb_k_dot: a row's result depends only on its own data (no BLAS row
 * blocking), for the handful of rows of selected-position logits.
 * out has row stride ldo. Parallel over blocks of W rows.
 */
void mb_k_matmul_nt_rows(float *out, int ldo, const float *X, int R, const float *W, int N, int K);

/* out (R, N), row stride ldo = X (R, K), row stride ldx, @ W (K, N) (Conv1D
 * layout): each element summed over k in order; row-invariant like the above.
 * Parallel over blocks of columns. */
void mb_k_matmul_nn_rows(float *out, int ldo, const float *X, int ldx, int R, const float *W, int N,
			 int K);

/* Causal attention of one query row t of one head: p (t + 1) scratch, z (Dh)
 * = softmax over j <= t of scale q.k_j, times v_j (rows of k and v at stride
 * ld). Single-threaded. */
void mb_k_att_query(float *z, float *p, const float *q, const float *k, const float *v, int ld,
		    int t, int Dh, float scale);

/* The same query row t of an item of L valid rows, with the bits of row t of
 * mb_k_att_fused_scratch / mb_k_att_fused over the whole item: the same
 * scores GEMM, softmax and P V GEMM on t's query block, restricted to row t
 * (its scores over j < the block's end, zeros past t). w: scratch of at
 * least L floats. Single-threaded. The GEMM backend must be portable (each
 * element one FMA chain, whatever rows are computed with it). */
void mb_k_att_row(float *z, float *w, const float *q, const float *k, const float *v, int ld,
		  int t, int L, int Dh, float scale);

#endif
