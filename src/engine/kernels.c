/*
 * kernels.c: GEMM wrapper, LayerNorm, activations, softmax, causal attention.
 *
 * Shape letters: R rows, D row width, K inner dimension, N output columns,
 * T positions, L valid positions of one item, Dh head width.
 *
 * Fixed-order reductions: a row's sum runs in 16 independent lanes (lane j
 * takes elements j, j+16, ...), then lanes are combined by a fixed tree. The
 * compiler may vectorise the lane loop any way it likes without changing a
 * bit (ISO C mode: no FMA contraction, no reassociation).
 */
#include "kernels_int.h"

#include <mechbench/detmath.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#include <immintrin.h>
#endif

#define LANES 16

static inline float tree16(float acc[LANES])
{
	for (int s = LANES / 2; s > 0; s >>= 1)
		for (int j = 0; j < s; j++)
			acc[j] += acc[j + s];
	return acc[0];
}

float mb_k_sum(const float *x, int n)
{
	float acc[LANES] = {0};
	int i = 0;

	for (; i + LANES <= n; i += LANES)
		for (int j = 0; j < LANES; j++)
			acc[j] += x[i + j];
	for (int j = 0; i + j < n; j++)
		acc[j] += x[i + j];
	return tree16(acc);
}

/* Inlined into the row kernels, so that their AVX2 clones vectorise it too. */
static inline float dot1(const float *a, const float *b, int n)
{
	float acc[LANES] = {0};
	int i = 0;

	for (; i + LANES <= n; i += LANES)
		for (int j = 0; j < LANES; j++)
			acc[j] += a[i + j] * b[i + j];
	for (int j = 0; i + j < n; j++)
		acc[j] += a[i + j] * b[i + j];
	return tree16(acc);
}

float mb_k_dot(const float *a, const float *b, int n) { return dot1(a, b, n); }

/* GEMM ------------------------------------------------------------------- */

static void sgemm1(float *C, int ldc, const float *A, int lda, const float *W, int ldw,
		   int trans_w, int R, int N, int K, float alpha)
{
	mb_k_sgemm(0, trans_w, R, N, K, alpha, A, lda, W, ldw, C, ldc);
}

void mb_k_gemm(float *C, int ldc, const float *A, int lda, const float *W, int ldw, int trans_w,
	       int R, int N, int K, float alpha, int u)
{
	int groups, chunks;

	if (R <= 0 || N <= 0)
		return;
	if (K <= 0) {
		for (int r = 0; r < R; r++)
			memset(C + (size_t)r * ldc, 0, sizeof(float) * (size_t)N);
		return;
	}
	if (u < 1) {
		u = R; /* no known row group: one single-threaded call */
		chunks = 1;
	} else {
		chunks = omp_in_parallel() ? 1 : omp_get_max_threads();
	}
	groups = (R + u - 1) / u;
	if (chunks > groups)
		chunks = groups;
	if (chunks < 1)
		chunks = 1;
	/* Even with one chunk we enter a region: inside it, and only there,
	 * omp_set_num_threads(1) makes OpenBLAS's OpenMP build run on the calling
	 * thread (its thread count follows omp_get_max_threads()). */
#pragma omp parallel num_threads(chunks)
	{
		int nth = omp_get_num_threads();

		omp_set_num_threads(1);
		for (int c = omp_get_thread_num(); c < chunks; c += nth) {
			int g0 = (int)((long)groups * c / chunks);
			int g1 = (int)((long)groups * (c + 1) / chunks);
			int r0 = g0 * u, r1 = g1 * u < R ? g1 * u : R;

			if (r1 > r0)
				sgemm1(C + (size_t)r0 * ldc, ldc, A + (size_t)r0 * lda, lda, W, ldw,
				       trans_w, r1 - r0, N, K, alpha);
		}
	}
}

static float probe_rand(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float)((int)((*s >> 40) % 2001) - 1000) / 1000.0f;
}

#define PROBE_ROWS (3 * 128 + 5) /* every candidate's groups, and a partial one */

/* One candidate u: sub-calls on u-aligned row ranges of lengths that are
 * multiples of u must reproduce the rows of the full call C0 (PROBE_ROWS rows
 * of A) bit for bit. Runs single-threaded (called from inside a region with
 * omp_set_num_threads(1)). */
static int probe_one(int u, int K, int N, int trans_w, const float *W, const float *A,
		     const float *C0, float *C1)
{
	int ldw = trans_w ? K : N;
	int starts[4] = {0, u, 2 * u, 5 * u}, lens[4] = {u, 2 * u, u, (PROBE_ROWS / 2) / u * u};

	for (int i = 0; i < 4; i++) {
		int r0 = starts[i], n = lens[i];

		if (r0 + n > PROBE_ROWS || n < 1)
			continue;
		sgemm1(C1, N, A + (size_t)r0 * K, K, W, ldw, trans_w, n, N, K, 1.0f);
		if (memcmp(C1, C0 + (size_t)r0 * N, sizeof(float) * (size_t)n * N) != 0)
			return 0;
	}
	return 1;
}

int mb_k_gemm_probe_group(int K, int N, int trans_w)
{
	static const int cand[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128};
	const int ncand = (int)(sizeof(cand) / sizeof(cand[0]));
	float *W = NULL, *A = NULL, *C0 = NULL, *C1 = NULL;
	int found = 0;
	uint64_t s = 987654321u;

	if (N > 512)
		N = 512;
	if (K < 1 || N < 1)
		return 1;
	W = malloc(sizeof(float) * (size_t)K * N);
	A = malloc(sizeof(float) * (size_t)PROBE_ROWS * K);
	C0 = malloc(sizeof(float) * (size_t)PROBE_ROWS * N);
	C1 = malloc(sizeof(float) * (size_t)PROBE_ROWS * N);
	if (!W || !A || !C0 || !C1)
		goto cleanup;
	for (size_t i = 0; i < (size_t)K * N; i++)
		W[i] = probe_rand(&s) * 0.05f;
	for (size_t i = 0; i < (size_t)PROBE_ROWS * K; i++)
		A[i] = probe_rand(&s);
#pragma omp parallel num_threads(1)
	{
		omp_set_num_threads(1);
		sgemm1(C0, N, A, K, W, trans_w ? K : N, trans_w, PROBE_ROWS, N, K, 1.0f);
		for (int i = 0; i < ncand && !found; i++)
			if (probe_one(cand[i], K, N, trans_w, W, A, C0, C1))
				found = cand[i];
	}
cleanup:
	free(W);
	free(A);
	free(C0);
	free(C1);
	return found;
}

/* Elementwise ------------------------------------------------------------- */

/* Cephes expf: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial, scale by 2^n
 * through the exponent bits. Branch-free so loops over it vectorise. */
static inline float expf_core(float x)
{
	float t, n, r, p;
	int32_t bits;
	int32_t ni;

	x = x > 88.0f ? 88.0f : x;
	x = x < -86.0f ? -86.0f : x;
	t = x * 1.44269504088896341f;
	n = (t + 12582912.0f) - 12582912.0f; /* round to nearest (|t| < 2^22) */
	ni = (int32_t)n;
	r = x - n * 0.693359375f;
	r = r - n * -2.12194440e-4f;
	p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * r * r + r + 1.0f;
	memcpy(&bits, &p, sizeof(bits));
	bits += (int32_t)((uint32_t)ni << 23);
	memcpy(&p, &bits, sizeof(p));
	return p;
}

float mb_k_expf(float x) { return expf_core(x); }

/* gelu_new(x) = 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x +
 * 0.044715 x^3): the second form has no cancellation for negative x. */
static inline float gelu_new_core(float x)
{
	float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);

	return x / (1.0f + expf_core(-2.0f * u));
}

float mb_k_gelu_new(float x) { return gelu_new_core(x); }

float mb_k_gelu(float x)
{
	return 0.5f * x * (1.0f + mb_detmath_erff(x * 0.70710678118654752f));
}

/* AVX2 and baseline clones of the hot elementwise loops: identical bits (the
 * same IEEE operations per lane, no FMA contraction in ISO C mode), twice the
 * lanes where the CPU has them. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define MB_CLONES __attribute__((target_clones("avx2", "default")))
#define MB_CLONES_WIDE __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MB_CLONES
#define MB_CLONES_WIDE
#endif

MB_CLONES static void act_span(float *out, const float *in, int n, mb_activation act)
{
	switch (act) {
	case MB_ACT_GELU_NEW:
		for (int i = 0; i < n; i++)
			out[i] = gelu_new_core(in[i]);
		break;
	case MB_ACT_GELU:
		/* mb_k_gelu's operations, with erf over blocks of 256 by
		 * mb_detmath_erff_n (the same bits, vectorized; out may equal in) */
		for (int i0 = 0; i0 < n; i0 += 256) {
			float e[256];
			int m = n - i0 < 256 ? n - i0 : 256;

			for (int j = 0; j < m; j++)
				e[j] = in[i0 + j] * 0.70710678118654752f;
			mb_detmath_erff_n(e, e, (size_t)m);
			for (int j = 0; j < m; j++)
				out[i0 + j] = 0.5f * in[i0 + j] * (1.0f + e[j]);
		}
		break;
	case MB_ACT_RELU:
		for (int i = 0; i < n; i++)
			out[i] = in[i] > 0.0f ? in[i] : 0.0f;
		break;
	}
}

void mb_k_act(float *out, const float *in, size_t n, mb_activation act)
{
	const long chunk = 4096;
	long nchunks = (long)((n + (size_t)chunk - 1) / (size_t)chunk);

#pragma omp parallel for schedule(static)
	for (long c = 0; c < nchunks; c++) {
		size_t i0 = (size_t)c * (size_t)chunk;
		size_t m = n - i0 < (size_t)chunk ? n - i0 : (size_t)chunk;

		act_span(out + i0, in + i0, (int)m, act);
	}
}

void mb_k_bias_act(float *out, float *in, const float *bias, int R, int N, mb_activation act)
{
#pragma omp parallel for schedule(static)
	for (int r = 0; r < R; r++) {
		float *o = out + (size_t)r * N;
		float *x = in + (size_t)r * N;

		for (int c = 0; c < N; c++)
			x[c] += bias[c];
		act_span(o, x, N, act);
	}
}

void mb_k_add_bias(float *y, int ld, const float *bias, int R, int N)
{
#pragma omp parallel for schedule(static)
	for (int r = 0; r < R; r++) {
		float *row = y + (size_t)r * ld;

		for (int c = 0; c < N; c++)
			row[c] += bias[c];
	}
}

void mb_k_add(float *out, const float *a, const float *b, size_t n)
{
	const long chunk = 16384;
	long nchunks = (long)((n + (size_t)chunk - 1) / (size_t)chunk);

#pragma omp parallel for schedule(static)
	for (long c = 0; c < nchunks; c++) {
		size_t i0 = (size_t)c * (size_t)chunk;
		size_t i1 = i0 + (size_t)chunk < n ? i0 + (size_t)chunk : n;

		for (size_t i = i0; i < i1; i++)
			out[i] = a[i] + b[i];
	}
}

/* LayerNorm ---------------------------------------------------------------- */

MB_CLONES static void ln_row(float *out, float *xhat, float *mean_out, float *rstd_out, const float *x,
		   const float *w, const float *b, int D, float eps)
{
	float acc[LANES] = {0};
	float mean, var, scale;
	int i = 0;

	mean = mb_k_sum(x, D) / (float)D;
	for (; i + LANES <= D; i += LANES)
		for (int j = 0; j < LANES; j++) {
			float d = x[i + j] - mean;
			acc[j] += d * d;
		}
	for (int j = 0; i + j < D; j++) {
		float d = x[i + j] - mean;
		acc[j] += d * d;
	}
	var = tree16(acc) / (float)D;
	scale = sqrtf(var + eps);
	if (mean_out)
		*mean_out = mean;
	if (rstd_out)
		*rstd_out = 1.0f / scale;
	if (xhat) {
		for (int c = 0; c < D; c++)
			xhat[c] = (x[c] - mean) / scale;
		if (out)
			for (int c = 0; c < D; c++)
				out[c] = xhat[c] * w[c] + b[c];
	} else if (out) {
		for (int c = 0; c < D; c++)
			out[c] = ((x[c] - mean) / scale) * w[c] + b[c];
	}
}

void mb_k_layernorm(float *out, float *xhat, float *mean, float *rstd, const float *x,
		    const float *w, const float *b, int R, int D, float eps)
{
#pragma omp parallel for schedule(static)
	for (int r = 0; r < R; r++)
		ln_row(out ? out + (size_t)r * D : NULL, xhat ? xhat + (size_t)r * D : NULL,
		       mean ? mean + r : NULL, rstd ? rstd + r : NULL, x + (size_t)r * D, w, b, D,
		       eps);
}

void mb_k_ln_affine(float *out, const float *xhat, const float *w, const float *b, int R, int D)
{
#pragma omp parallel for schedule(static)
	for (int r = 0; r < R; r++) {
		float *o = out + (size_t)r * D;
		const float *x = xhat + (size_t)r * D;

		for (int c = 0; c < D; c++)
			o[c] = x[c] * w[c] + b[c];
	}
}

/* Attention ---------------------------------------------------------------- */

static int block_end(int i, int L) { return mb_k_att_block_end(i, L); }

/* Sb: row i0 of the scores (row stride T); rows i0..i1 of S = scale q k^T. */
static void scores_block(float *Sb, int T, const float *q, const float *k, int ld, int i0, int i1,
			 int Dh, float scale)
{
	sgemm1(Sb, T, q + (size_t)i0 * ld, ld, k, ld, 1, i1 - i0, i1, Dh, scale);
}

/* The softmax of one causal row: s[0..i] = exp(s_j - max) / sum, zeros on
 * (i, end). The max runs in 16 lanes (the same value as a sequential max:
 * max is exact, and a zero's sign cannot change exp's result), exp and the
 * sum share one pass whose lanes are exactly mb_k_sum's (lane j adds
 * elements j, j+16, ... in order, then tree16), then one division pass: the
 * bits of the three-pass form (max; exp; mb_k_sum; divide) in two passes
 * over the row fewer, and vectorised (MB_CLONES_WIDE: AVX-512 too). */
/* The 16 lanes of the row's max over full chunks of s[0..n): m[l] = the max
 * of s[0] and s[j + l] over those chunks, each step m = s > m ? s : m. GCC
 * does not vectorise that select (it keeps IEEE compare semantics), so the
 * wide forms use max instructions, whose definition is that select exactly
 * (MAXPS dst = src1 > src2 ? src1 : src2, NaN and zeros included). Returns
 * the index after the last full chunk. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
__attribute__((target("avx512f"))) static int lanes_max_avx512(float *m, const float *s, int n)
{
	__m512 v = _mm512_set1_ps(s[0]);
	int j = 0;

	for (; j + LANES <= n; j += LANES)
		v = _mm512_max_ps(_mm512_loadu_ps(s + j), v);
	_mm512_storeu_ps(m, v);
	return j;
}

__attribute__((target("avx"))) static int lanes_max_avx(float *m, const float *s, int n)
{
	__m256 lo = _mm256_set1_ps(s[0]), hi = lo;
	int j = 0;

	for (; j + LANES <= n; j += LANES) {
		lo = _mm256_max_ps(_mm256_loadu_ps(s + j), lo);
		hi = _mm256_max_ps(_mm256_loadu_ps(s + j + 8), hi);
	}
	_mm256_storeu_ps(m, lo);
	_mm256_storeu_ps(m + 8, hi);
	return j;
}
#endif

static int lanes_max(float *m, const float *s, int n)
{
	int j = 0;

	/* the portable kernels' ISA (MB_ISA), so a test can run every form */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
	switch (mb_gemm_isa_current()) {
	case MB_GEMM_ISA_AVX512: return lanes_max_avx512(m, s, n);
	case MB_GEMM_ISA_AVX2: return lanes_max_avx(m, s, n);
	case MB_GEMM_ISA_SCALAR: break;
	}
#endif
	for (int l = 0; l < LANES; l++)
		m[l] = s[0];
	for (; j + LANES <= n; j += LANES)
		for (int l = 0; l < LANES; l++)
			m[l] = s[j + l] > m[l] ? s[j + l] : m[l];
	return j;
}

MB_CLONES_WIDE static void softmax_row(float *s, int i, int end)
{
	float m[LANES], acc[LANES] = {0}, mx, sum;
	int n = i + 1, j;

	j = lanes_max(m, s, n);
	for (int l = 0; j + l < n; l++)
		m[l] = s[j + l] > m[l] ? s[j + l] : m[l];
	mx = m[0];
	for (int l = 1; l < LANES; l++)
		mx = m[l] > mx ? m[l] : mx;
	for (j = 0; j + LANES <= n; j += LANES)
		for (int l = 0; l < LANES; l++) {
			float x = expf_core(s[j + l] - mx);

			s[j + l] = x;
			acc[l] += x;
		}
	for (int l = 0; j + l < n; l++) {
		float x = expf_core(s[j + l] - mx);

		s[j + l] = x;
		acc[l] += x;
	}
	sum = tree16(acc);
	for (j = 0; j < n; j++)
		s[j] = s[j] / sum;
	if (end > n)
		memset(s + n, 0, sizeof(float) * (size_t)(end - n));
}

/* 1 when the causal softmax takes mb_k_softmax_row_fast: the backend is onednn and
 * the portable kernels' ISA is AVX-512 (MB_ISA=avx2 or scalar keep
 * softmax_row, as on a CPU without AVX-512). */
static int softmax_fast_on(void)
{
#ifdef MB_HAVE_ATT512
	return mb_gemm_current() == MB_GEMM_ONEDNN && mb_gemm_isa_current() == MB_GEMM_ISA_AVX512;
#else
	return 0;
#endif
}

/* The causal softmax of row i, zeros on (i, end): softmax_row, or with fast
 * (softmax_fast_on) the oneDNN backend's form. */
static void att_softmax_row(float *s, int i, int end, int fast)
{
#ifdef MB_HAVE_ATT512
	if (fast) {
		mb_k_softmax_row_fast(s, i, end);
		return;
	}
#else
	(void)fast;
#endif
	softmax_row(s, i, end);
}

#ifdef MB_HAVE_ATT512
/* 1 when attention takes att_avx512.c's tiles (kernels_int.h): the backend
 * is onednn or openblas (whose block GEMMs run at 71-77% of their dense rate
 * on these shapes), the portable kernels' ISA is AVX-512 and the head width
 * is 16, 32, 48 or 64. The portable backend keeps its block kernels: its
 * bits are the canonical baselines'. */
static int att512_on(int Dh)
{
	mb_gemm_backend be = mb_gemm_current();

	return (be == MB_GEMM_ONEDNN || be == MB_GEMM_OPENBLAS) &&
	       mb_gemm_isa_current() == MB_GEMM_ISA_AVX512 && Dh % 16 == 0 && Dh <= 64;
}

/* The tiles' softmax: the fast form under onednn, softmax_row under openblas. */
static mb_k_softmax_fn att512_softmax(void)
{
	return softmax_fast_on() ? mb_k_softmax_row_fast : softmax_row;
}
#endif

int mb_k_att_tiles_on(void)
{
#ifdef MB_HAVE_ATT512
	return att512_on(64);
#else
	return 0;
#endif
}

/* Sb: row i0 of the pattern (row stride T); z rows i0..i1 = P V. */
static void pv_block(float *z, int ldz, const float *Sb, int T, const float *v, int ld, int i0,
		     int i1, int Dh)
{
	sgemm1(z + (size_t)i0 * ldz, ldz, Sb, T, v, ld, 0, i1 - i0, Dh, i1, 1.0f);
}

/* The oneDNN path. oneDNN's matmul primitive is fast on these shapes only on
 * dense operands, so each (item, head)'s q (scaled), k and v are copied to
 * dense (L, Dh) blocks and a query block's scores live densely, row stride
 * i1, in the caller's scratch; every path (fused, phased, scratch) computes
 * the block GEMMs this way, so a hook sees the bits of a plain run. The
 * portable and OpenBLAS backends never take it (their bits are as before). */
typedef struct dense_att {
	float *S; /* (MB_K_ATT_BLOCK, T): one block's scores, row stride i1 */
	float *q; /* (T, Dh): scale * q */
	float *k; /* (T, Dh) */
	float *v; /* (T, Dh) */
	float *z; /* (MB_K_ATT_BLOCK, Dh) */
} dense_att;

size_t mb_k_att_scratch_floats(int T, int Dh)
{
	size_t n = (size_t)MB_K_ATT_BLOCK * T + 3 * (size_t)T * Dh + (size_t)MB_K_ATT_BLOCK * Dh;

#ifdef MB_HAVE_ATT512
	if (mb_k_att512_scratch_floats(T, Dh) > n)
		n = mb_k_att512_scratch_floats(T, Dh);
#endif
	return n;
}

/* 1 when the attention's block GEMMs take the dense path (the backend is oneDNN). */
static int dense_path(void) { return mb_gemm_current() == MB_GEMM_ONEDNN; }

static dense_att dense_carve(float *W, int T, int Dh)
{
	dense_att d;

	d.S = W;
	d.q = d.S + (size_t)MB_K_ATT_BLOCK * T;
	d.k = d.q + (size_t)T * Dh;
	d.v = d.k + (size_t)T * Dh;
	d.z = d.v + (size_t)T * Dh;
	return d;
}

/* dst rows (row stride ldd) = scale * src rows (row stride lds), n rows of
 * Dh floats; scale 1 copies. The same bits in every form (one product per
 * float, or none); the AVX-512 form spares a memcpy call per 64-float row. */
#ifdef MB_HAVE_ATT512
__attribute__((target("avx512f"))) static void copy_rows_avx512(float *dst, int ldd,
								const float *src, int lds, int n,
								int Dh, float scale)
{
	__m512 sc = _mm512_set1_ps(scale);

	for (int i = 0; i < n; i++) {
		const float *r = src + (size_t)i * lds;
		float *o = dst + (size_t)i * ldd;

		if (scale == 1.0f)
			for (int c = 0; c < Dh; c += LANES)
				_mm512_storeu_ps(o + c, _mm512_loadu_ps(r + c));
		else
			for (int c = 0; c < Dh; c += LANES)
				_mm512_storeu_ps(o + c, _mm512_mul_ps(sc, _mm512_loadu_ps(r + c)));
	}
}
#endif

static void copy_rows(float *dst, int ldd, const float *src, int lds, int n, int Dh, float scale)
{
#ifdef MB_HAVE_ATT512
	if (Dh % LANES == 0 && mb_gemm_isa_best() == MB_GEMM_ISA_AVX512) {
		copy_rows_avx512(dst, ldd, src, lds, n, Dh, scale);
		return;
	}
#endif
	for (int i = 0; i < n; i++) {
		const float *r = src + (size_t)i * lds;
		float *o = dst + (size_t)i * ldd;

		if (scale == 1.0f)
			memcpy(o, r, sizeof(float) * (size_t)Dh);
		else
			for (int c = 0; c < Dh; c++)
				o[c] = scale * r[c];
	}
}

/* dst (L, Dh) dense = scale * src rows (row stride ld); scale 1 copies. */
static void dense_rows(float *dst, const float *src, int ld, int L, int Dh, float scale)
{
	copy_rows(dst, Dh, src, ld, L, Dh, scale);
}

/* d->S (i1 - i0, i1) = d->q rows i0..i1 @ d->k rows 0..i1 ^T */
static void dense_scores(const dense_att *d, int i0, int i1, int Dh)
{
	int done = mb_k_dense_matmul(1, i1 - i0, i1, Dh, d->q + (size_t)i0 * Dh, d->k, d->S);

	MB_ASSERT(done);
}

/* z rows i0..i1 (row stride ldz) = P (i1 - i0, i1), row stride i1, @ d->v rows 0..i1 */
static void dense_pv(float *z, int ldz, const dense_att *d, const float *P, int i0, int i1, int Dh)
{
	int done = mb_k_dense_matmul(0, i1 - i0, Dh, i1, P, d->v, d->z);

	MB_ASSERT(done);
	copy_rows(z + (size_t)i0 * ldz, ldz, d->z, Dh, i1 - i0, Dh, 1.0f);
}

/* The dense path of fused (S != NULL: the block's pattern also goes to S,
 * row stride T, zeros beyond i1 with full) and of fused_scratch (S NULL). */
static void dense_fused(float *z, int ldz, float *S, int T, float *W, const float *q,
			const float *k, const float *v, int ld, int L, int Dh, float scale, int full)
{
	dense_att d = dense_carve(W, T, Dh);
	int fast = softmax_fast_on();

	dense_rows(d.q, q, ld, L, Dh, scale);
	dense_rows(d.k, k, ld, L, Dh, 1.0f);
	dense_rows(d.v, v, ld, L, Dh, 1.0f);
	for (int i0 = 0; i0 < L; i0 += MB_K_ATT_BLOCK) {
		int i1 = i0 + MB_K_ATT_BLOCK < L ? i0 + MB_K_ATT_BLOCK : L;

		dense_scores(&d, i0, i1, Dh);
		for (int i = i0; i < i1; i++)
			att_softmax_row(d.S + (size_t)(i - i0) * i1, i, i1, fast);
		dense_pv(z, ldz, &d, d.S, i0, i1, Dh);
		if (!S)
			continue;
		for (int i = i0; i < i1; i++) {
			float *row = S + (size_t)i * T;

			memcpy(row, d.S + (size_t)(i - i0) * i1, sizeof(float) * (size_t)i1);
			if (full && T > i1)
				memset(row + i1, 0, sizeof(float) * (size_t)(T - i1));
		}
	}
}

void mb_k_att_scores(float *S, int T, const float *q, const float *k, int ld, int L, int Dh,
		     float scale, float *W)
{
#ifdef MB_HAVE_ATT512
	if (att512_on(Dh)) {
		mb_k_att512_scores(S, T, q, k, ld, L, Dh, scale, W);
		return;
	}
#endif
	if (dense_path()) {
		dense_att d = dense_carve(W, T, Dh);

		dense_rows(d.q, q, ld, L, Dh, scale);
		dense_rows(d.k, k, ld, L, Dh, 1.0f);
		for (int i0 = 0; i0 < L; i0 += MB_K_ATT_BLOCK) {
			int i1 = i0 + MB_K_ATT_BLOCK < L ? i0 + MB_K_ATT_BLOCK : L;

			dense_scores(&d, i0, i1, Dh);
			for (int i = i0; i < i1; i++)
				memcpy(S + (size_t)i * T, d.S + (size_t)(i - i0) * i1,
				       sizeof(float) * (size_t)i1);
		}
		return;
	}
	for (int i0 = 0; i0 < L; i0 += MB_K_ATT_BLOCK) {
		int i1 = i0 + MB_K_ATT_BLOCK < L ? i0 + MB_K_ATT_BLOCK : L;

		scores_block(S + (size_t)i0 * T, T, q, k, ld, i0, i1, Dh, scale);
	}
}

void mb_k_att_mask_scores(float *S, int T, int L)
{
	for (int i = 0; i < T; i++) {
		float *row = S + (size_t)i * T;
		int first = i < L ? i + 1 : 0;

		for (int j = first; j < T; j++)
			row[j] = -INFINITY;
	}
}

void mb_k_att_softmax(float *S, int T, int L, int full)
{
	int fast = softmax_fast_on();

	for (int i = 0; i < L; i++)
		att_softmax_row(S + (size_t)i * T, i, full ? T : block_end(i, L), fast);
	if (full)
		for (int i = L; i < T; i++)
			memset(S + (size_t)i * T, 0, sizeof(float) * (size_t)T);
}

void mb_k_att_zero_masked(float *S, int T, int L)
{
	for (int i = 0; i < L; i++) {
		float *row = S + (size_t)i * T;

		for (int j = i + 1; j < block_end(i, L); j++)
			row[j] = 0.0f;
	}
}

void mb_k_att_pv(float *z, int ldz, const float *S, int T, const float *v, int ld, int L, int Dh,
		 float *W)
{
#ifdef MB_HAVE_ATT512
	if (att512_on(Dh)) {
		mb_k_att512_pv(z, ldz, S, T, v, ld, L, Dh, W);
		return;
	}
#endif
	if (dense_path()) {
		dense_att d = dense_carve(W, T, Dh);

		dense_rows(d.v, v, ld, L, Dh, 1.0f);
		for (int i0 = 0; i0 < L; i0 += MB_K_ATT_BLOCK) {
			int i1 = i0 + MB_K_ATT_BLOCK < L ? i0 + MB_K_ATT_BLOCK : L;

			for (int i = i0; i < i1; i++)
				memcpy(d.S + (size_t)(i - i0) * i1, S + (size_t)i * T,
				       sizeof(float) * (size_t)i1);
			dense_pv(z, ldz, &d, d.S, i0, i1, Dh);
		}
		return;
	}
	for (int i0 = 0; i0 < L; i0 += MB_K_ATT_BLOCK) {
		int i1 = i0 + MB_K_ATT_BLOCK < L ? i0 + MB_K_ATT_BLOCK : L;

		pv_block(z, ldz, S + (size_t)i0 * T, T, v, ld, i0, i1, Dh);
	}
}

void mb_k_att_fused(float *z, int ldz, float *S, int T, const float *q, const float *k,
		    const float *v, int ld, int L, int Dh, float scale, int full, float *W)
{
#ifdef MB_HAVE_ATT512
	if (att512_on(Dh))
		mb_k_att512_fused(z, ldz, S, T, q, k, v, ld, L, Dh, scale, full,
				  att512_softmax(), W);
	else
#endif
	if (dense_path())
		dense_fused(z, ldz, S, T, W, q, k, v, ld, L, Dh, scale, full);
	else
		for (int i0 = 0; i0 < L; i0 += MB_K_ATT_BLOCK) {
			int i1 = i0 + MB_K_ATT_BLOCK < L ? i0 + MB_K_ATT_BLOCK : L;
			float *Sb = S + (size_t)i0 * T;

			scores_block(Sb, T, q, k, ld, i0, i1, Dh, scale);
			for (int i = i0; i < i1; i++)
				softmax_row(S + (size_t)i * T, i, full ? T : i1);
			pv_block(z, ldz, Sb, T, v, ld, i0, i1, Dh);
		}
	if (full)
		for (int i = L; i < T; i++)
			memset(S + (size_t)i * T, 0, sizeof(float) * (size_t)T);
}

void mb_k_att_fused_scratch(float *z, int ldz, float *W, int T, const float *q, const float *k,
			    const float *v, int ld, int L, int Dh, float scale)
{
#ifdef MB_HAVE_ATT512
	if (att512_on(Dh)) {
		mb_k_att512_fused(z, ldz, NULL, T, q, k, v, ld, L, Dh, scale, 0, att512_softmax(),
				  W);
		return;
	}
#endif
	if (dense_path()) {
		dense_fused(z, ldz, NULL, T, W, q, k, v, ld, L, Dh, scale, 0);
		return;
	}
	for (int i0 = 0; i0 < L; i0 += MB_K_ATT_BLOCK) {
		int i1 = i0 + MB_K_ATT_BLOCK < L ? i0 + MB_K_ATT_BLOCK : L;
		/* row i of the block lands on row i - i0 of W */
		scores_block(W, T, q, k, ld, i0, i1, Dh, scale);
		for (int i = i0; i < i1; i++)
			softmax_row(W + (size_t)(i - i0) * T, i, i1);
		pv_block(z, ldz, W, T, v, ld, i0, i1, Dh);
	}
}

/* Row-wise kernels (selected positions) ------------------------------------ */

/* Four rows of X against one row of W, each exactly mb_k_dot's order. */
static inline void dot4(float out[4], const float *x0, const float *x1, const float *x2,
			const float *x3, const float *w, int K)
{
	float a0[LANES] = {0}, a1[LANES] = {0}, a2[LANES] = {0}, a3[LANES] = {0};
	int i = 0;

	for (; i + LANES <= K; i += LANES)
		for (int j = 0; j < LANES; j++) {
			float wj = w[i + j];
			a0[j] += x0[i + j] * wj;
			a1[j] += x1[i + j] * wj;
			a2[j] += x2[i + j] * wj;
			a3[j] += x3[i + j] * wj;
		}
	for (int j = 0; i + j < K; j++) {
		float wj = w[i + j];
		a0[j] += x0[i + j] * wj;
		a1[j] += x1[i + j] * wj;
		a2[j] += x2[i + j] * wj;
		a3[j] += x3[i + j] * wj;
	}
	out[0] = tree16(a0);
	out[1] = tree16(a1);
	out[2] = tree16(a2);
	out[3] = tree16(a3);
}

MB_CLONES static void nt_block(float *out, int ldo, const float *X, int R, const float *W, int c0,
			       int c1, int K)
{
	int r = 0;

	for (; r + 4 <= R; r += 4) {
		const float *x0 = X + (size_t)r * K;

		for (int c = c0; c < c1; c++) {
			float o[4];

			dot4(o, x0, x0 + K, x0 + 2 * (size_t)K, x0 + 3 * (size_t)K, W + (size_t)c * K, K);
			for (int rr = 0; rr < 4; rr++)
				out[(size_t)(r + rr) * ldo + c] = o[rr];
		}
	}
	for (; r < R; r++)
		for (int c = c0; c < c1; c++)
			out[(size_t)r * ldo + c] = dot1(X + (size_t)r * K, W + (size_t)c * K, K);
}

void mb_k_matmul_nt_rows(float *out, int ldo, const float *X, int R, const float *W, int N, int K)
{
	const int nb = 64;
	int nblocks = (N + nb - 1) / nb;

#pragma omp parallel for schedule(static)
	for (int blk = 0; blk < nblocks; blk++) {
		int c0 = blk * nb, c1 = c0 + nb < N ? c0 + nb : N;

		nt_block(out, ldo, X, R, W, c0, c1, K);
	}
}

#define NN_COLS 128

/* out[r][c0..c1) = sum over k, in order, of X[r][k] W[k][c]. */
MB_CLONES static void nn_block(float *out, int ldo, const float *X, int ldx, int R,
			       const float *W, int N, int K, int c0, int c1)
{
	float acc[4][NN_COLS];
	int w = c1 - c0;

	for (int r = 0; r < R; r += 4) {
		int nr = R - r < 4 ? R - r : 4;

		for (int rr = 0; rr < 4; rr++)
			for (int c = 0; c < NN_COLS; c++)
				acc[rr][c] = 0.0f;
		for (int k = 0; k < K; k++) {
			const float *wk = W + (size_t)k * N + c0;

			for (int rr = 0; rr < nr; rr++) {
				float x = X[(size_t)(r + rr) * ldx + k];

				for (int c = 0; c < w; c++)
					acc[rr][c] += x * wk[c];
			}
		}
		for (int rr = 0; rr < nr; rr++)
			memcpy(out + (size_t)(r + rr) * ldo + c0, acc[rr], sizeof(float) * (size_t)w);
	}
}

void mb_k_matmul_nn_rows(float *out, int ldo, const float *X, int ldx, int R, const float *W, int N,
			 int K)
{
	int nblocks = (N + NN_COLS - 1) / NN_COLS;

#pragma omp parallel for schedule(static)
	for (int blk = 0; blk < nblocks; blk++) {
		int c0 = blk * NN_COLS, c1 = c0 + NN_COLS < N ? c0 + NN_COLS : N;

		nn_block(out, ldo, X, ldx, R, W, N, K, c0, c1);
	}
}

MB_CLONES void mb_k_att_query(float *z, float *p, const float *q, const float *k, const float *v,
			      int ld, int t, int Dh, float scale)
{
	float mx, sum;

	for (int j = 0; j <= t; j++)
		p[j] = dot1(q, k + (size_t)j * ld, Dh) * scale;
	mx = p[0];
	for (int j = 1; j <= t; j++)
		mx = p[j] > mx ? p[j] : mx;
	for (int j = 0; j <= t; j++)
		p[j] = expf_core(p[j] - mx);
	sum = mb_k_sum(p, t + 1);
	for (int j = 0; j <= t; j++)
		p[j] = p[j] / sum;
	for (int d = 0; d < Dh; d++)
		z[d] = 0.0f;
	for (int j = 0; j <= t; j++) {
		const float *vj = v + (size_t)j * ld;

		for (int d = 0; d < Dh; d++)
			z[d] += p[j] * vj[d];
	}
}

void mb_k_att_row(float *z, float *w, const float *q, const float *k, const float *v, int ld,
		  int t, int L, int Dh, float scale)
{
	int end = block_end(t, L);

	/* scores_block's row t: w[j] = scale q . k_j for j < end (an element's
	 * FMA chain does not depend on the other rows), softmax_row's zeros past
	 * t, then pv_block's row t: the same FMA chain over j < end */
	sgemm1(w, end, q, ld, k, ld, 1, 1, end, Dh, scale);
	softmax_row(w, t, end);
	sgemm1(z, Dh, w, end, v, ld, 0, 1, Dh, end, 1.0f);
}
