/*
 * att_avx512.c: causal attention under the openblas and onednn backends on
 * AVX-512 CPUs: fused QK^T / softmax / PV register tiles, and the onednn
 * backend's fast softmax row.
 *
 * Why not the libraries' GEMMs: on the attention's block shapes (one
 * dimension Dh = 64) OpenBLAS runs at 71-77% of its dense rate; oneDNN's
 * matmul primitive reaches 87-95% but only on dense copies, with a (block,
 * T) score buffer in L2 and whole query blocks computed (bench_neox
 * backends, "its GEMMs alone"). Here one (item, head) runs in groups of four tiles of
 * ATT512_ROWS query rows: the group's scores chunk by chunk of 64 keys (each
 * chunk of the packed K used by the four tiles while it is in L1), its
 * softmax, then its PV chunk by chunk of V the same way; only the causal
 * part of each row (to the tile's last row) is computed. At T = 2048 the
 * packed K and V fill the L2 between them, so the sharing takes ~7% off
 * (bench_neox backends --attention).
 *
 * Bits. With q, k, v rows as stored (row stride ld):
 *   score S[i][j] = scale * f, f: acc = +0; for d = 0..Dh-1:
 *                   acc = fma(q_i[d], k_j[d], acc)        (the portable rule)
 *   pattern       = the caller's softmax of row i, zeros past i: kernels.c's
 *                   exact softmax_row under openblas (the attention then
 *                   gives the portable backend's bits, for finite values),
 *                   mb_k_softmax_row_fast (below) under onednn
 *   z_i[c]        = acc = +0; for j = 0..i: acc = fma(P[i][j], v_j[c], acc)
 * Every value depends on its own rows only: not on the tile, the thread, the
 * batch, or whether a hook saw the scores or the pattern (the phased
 * kernels run the same tiles). Scores past i, up to the tile's last row,
 * are computed and stored too (the contract allows junk there); z never
 * reads the pattern past i.
 */
#include "kernels_int.h"

#ifdef MB_HAVE_ATT512

#include <stdint.h>
#include <string.h>

#include <immintrin.h>

#define LANES 16
#define TARGET __attribute__((target("avx512f")))
#define INLINE __attribute__((always_inline)) inline
#define KCHUNK 64 /* keys per packed K chunk: four vectors */
#define GROUP_ROWS (4 * ATT512_ROWS) /* query rows sharing each K and V chunk */

/* The fast softmax ----------------------------------------------------------- */

/* 2^t: n = round-to-nearest-even(t), f = t - n (exact), 2^f by a degree-5
 * polynomial (near-minimax on [-1/2, 1/2], relative error 1.1e-7), times 2^n
 * by vscalefps (exact, subnormals included). t is clamped below at -150
 * (2^t rounds to 0 or the smallest subnormal there), NaN kept. */
TARGET static INLINE __m512 exp2_fast(__m512 t)
{
	__m512 n, f, p;

	/* MAXPS returns its second operand when either is NaN: t stays NaN */
	t = _mm512_max_ps(_mm512_set1_ps(-150.0f), t);
	n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	f = _mm512_sub_ps(t, n);
	p = _mm512_set1_ps(1.326472731307149e-3f);
	p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.671512991189957e-3f));
	p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550733581185341e-2f));
	p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022242426872253e-1f));
	p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931470036506653e-1f));
	p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
	return _mm512_scalef_ps(p, n);
}

static float tree16(float acc[LANES])
{
	for (int s = LANES / 2; s > 0; s >>= 1)
		for (int j = 0; j < s; j++)
			acc[j] += acc[j + s];
	return acc[0];
}

TARGET void mb_k_softmax_row_fast(float *s, int i, int end)
{
	float acc[LANES], mx;
	int n = i + 1, j = 0;
	__m512 m0 = _mm512_set1_ps(s[0]), m1 = m0, m2 = m0, m3 = m0, vc;
	__m512 l2e = _mm512_set1_ps(1.44269504088896341f);
	__m512 a = _mm512_setzero_ps(), rc;
	__mmask16 tail = (__mmask16)((1u << (n % LANES)) - 1u);

	/* the max in four chains (a max chain is latency-bound): max is exact,
	 * so the value is the sequential max's, up to the sign of a zero, which
	 * cannot change c */
	for (; j + 4 * LANES <= n; j += 4 * LANES) {
		m0 = _mm512_max_ps(_mm512_loadu_ps(s + j), m0);
		m1 = _mm512_max_ps(_mm512_loadu_ps(s + j + LANES), m1);
		m2 = _mm512_max_ps(_mm512_loadu_ps(s + j + 2 * LANES), m2);
		m3 = _mm512_max_ps(_mm512_loadu_ps(s + j + 3 * LANES), m3);
	}
	for (; j + LANES <= n; j += LANES)
		m0 = _mm512_max_ps(_mm512_loadu_ps(s + j), m0);
	if (tail)
		m0 = _mm512_mask_max_ps(m0, tail, _mm512_maskz_loadu_ps(tail, s + j), m0);
	mx = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
	vc = _mm512_set1_ps(-(mx * 1.44269504088896341f));
	for (j = 0; j + LANES <= n; j += LANES) {
		__m512 e = exp2_fast(_mm512_fmadd_ps(_mm512_loadu_ps(s + j), l2e, vc));

		_mm512_storeu_ps(s + j, e);
		a = _mm512_add_ps(a, e);
	}
	/* the tail's missing lanes add +0, which leaves a lane's sum (>= +0) as is */
	if (tail) {
		__m512 e = exp2_fast(_mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, s + j), l2e, vc));

		e = _mm512_maskz_mov_ps(tail, e);
		_mm512_mask_storeu_ps(s + j, tail, e);
		a = _mm512_add_ps(a, e);
	}
	_mm512_storeu_ps(acc, a);
	rc = _mm512_set1_ps(1.0f / tree16(acc));
	for (j = 0; j + LANES <= n; j += LANES)
		_mm512_storeu_ps(s + j, _mm512_mul_ps(_mm512_loadu_ps(s + j), rc));
	if (tail)
		_mm512_mask_storeu_ps(s + j, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, s + j), rc));
	if (end > n)
		memset(s + n, 0, sizeof(float) * (size_t)(end - n));
}

/* Packing ---------------------------------------------------------------------- */

/* The 16 x 16 transpose of r (r[a] element b -> r[b] element a). */
TARGET static INLINE void transpose16(__m512 r[16])
{
	__m512 t[16], u[16];

	for (int i = 0; i < 8; i++) {
		t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
		t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
	}
	/* u[4g + m], 128-bit lane l: element 4l + m of rows 4g..4g+3 */
	for (int g = 0; g < 4; g++) {
		__m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
		__m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);

		u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
		u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
		u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
		u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
	}
	/* r[4l + m] = lane l of u[m], u[4 + m], u[8 + m], u[12 + m] */
	for (int m = 0; m < 4; m++) {
		__m512 v0 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x44);
		__m512 v1 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xEE);
		__m512 v2 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x44);
		__m512 v3 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xEE);

		r[m] = _mm512_shuffle_f32x4(v0, v2, 0x88);
		r[4 + m] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
		r[8 + m] = _mm512_shuffle_f32x4(v1, v3, 0x88);
		r[12 + m] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
	}
}

/* kp[c][d][x] = k row 64c + x, element d (row stride ld), for keys below n
 * (rounded up to 16), zeros for keys n.. of the last 16. */
TARGET static void pack_k(float *kp, const float *k, int ld, int n, int Dh)
{
	for (int j0 = 0; j0 < n; j0 += LANES) {
		float *dst = kp + (size_t)(j0 / KCHUNK) * KCHUNK * Dh + j0 % KCHUNK;
		int rows = n - j0 < LANES ? n - j0 : LANES;

		for (int d0 = 0; d0 < Dh; d0 += LANES) {
			__m512 r[16];

			for (int a = 0; a < LANES; a++)
				r[a] = a < rows ? _mm512_loadu_ps(k + (size_t)(j0 + a) * ld + d0)
						: _mm512_setzero_ps();
			transpose16(r);
			for (int b = 0; b < LANES; b++)
				_mm512_store_ps(dst + (size_t)(d0 + b) * KCHUNK, r[b]);
		}
	}
}

/* vd (n, Dh) dense = v rows 0..n-1 (row stride ld). */
TARGET static void pack_v(float *vd, const float *v, int ld, int n, int Dh)
{
	for (int j = 0; j < n; j++)
		for (int c = 0; c < Dh; c += LANES)
			_mm512_store_ps(vd + (size_t)j * Dh + c, _mm512_loadu_ps(v + (size_t)j * ld + c));
}

/* Register tiles ----------------------------------------------------------------- */

/* One step of a register tile: acc[r][c] += a[r][x] * b[16c..16c+15] for rows
 * r0 <= r < ATT512_ROWS and nc vectors of b (64-byte aligned), each an FMA.
 * Inlined with constant r0 and nc, so that acc stays in registers. */
TARGET static INLINE void tile_step(__m512 acc[ATT512_ROWS][4], const float *const a[ATT512_ROWS],
				    size_t x, const float *b, int nc, int r0)
{
	__m512 bv[4];

#pragma GCC unroll 4
	for (int c = 0; c < nc; c++)
		bv[c] = _mm512_load_ps(b + c * LANES);
#pragma GCC unroll 6
	for (int r = r0; r < ATT512_ROWS; r++) {
		__m512 s = _mm512_set1_ps(a[r][x]);

#pragma GCC unroll 4
		for (int c = 0; c < nc; c++)
			acc[r][c] = _mm512_fmadd_ps(s, bv[c], acc[r][c]);
	}
}

/* S rows r < nr (row stride lds), columns [0, e) with e <= 16 nc: scale *
 * q_r . k_j, q row r at q + min(r, nr - 1) ld, k_j column j of the packed
 * chunk kp. ATT512_ROWS x nc accumulators. */
TARGET static INLINE void qk_tile(float *S, int lds, const float *q, int ld, int nr,
				  const float *kp, int nc, int Dh, int e, float scale)
{
	__m512 acc[ATT512_ROWS][4], sc = _mm512_set1_ps(scale);
	const float *qr[ATT512_ROWS];

#pragma GCC unroll 6
	for (int r = 0; r < ATT512_ROWS; r++) {
		qr[r] = q + (size_t)(r < nr ? r : nr - 1) * ld;
#pragma GCC unroll 4
		for (int c = 0; c < nc; c++)
			acc[r][c] = _mm512_setzero_ps();
	}
	for (int d = 0; d < Dh; d++)
		tile_step(acc, qr, (size_t)d, kp + (size_t)d * KCHUNK, nc, 0);
	/* unrolled with constant indices, so that acc stays in registers */
#pragma GCC unroll 6
	for (int r = 0; r < ATT512_ROWS; r++) {
		float *o = S + (size_t)r * lds;

		if (r >= nr)
			break;
#pragma GCC unroll 4
		for (int c = 0; c < nc; c++) {
			int left = e - c * LANES;
			__m512 x = _mm512_mul_ps(acc[r][c], sc);

			if (left >= LANES)
				_mm512_storeu_ps(o + c * LANES, x);
			else
				_mm512_mask_storeu_ps(o + c * LANES, (__mmask16)((1u << left) - 1u), x);
		}
	}
}

/* z rows r < nr (row stride ldz), nc vectors, for query rows i0 + r: the
 * FMA chain of P row r (stride lds; read at min(r, nr - 1)) @ vd (dense, row
 * stride Dh) over keys [ja, jb), every row, starting from +0 (first) or
 * from z as stored (a chain continued: a float stored and loaded is
 * exact); then, with diag, the diagonal: key i0 + t for rows r >= t only.
 * A row's chain over [0, i0) in ascending pieces and then the diagonal is
 * the FMA chain over j <= i exactly. */
TARGET static INLINE void pv_tile(float *z, int ldz, const float *P, int lds, int nr,
				  const float *vd, int nc, int Dh, int ja, int jb, int first, int diag,
				  int i0)
{
	__m512 acc[ATT512_ROWS][4];
	const float *pr[ATT512_ROWS];

#pragma GCC unroll 6
	for (int r = 0; r < ATT512_ROWS; r++) {
		pr[r] = P + (size_t)(r < nr ? r : nr - 1) * lds;
#pragma GCC unroll 4
		for (int c = 0; c < nc; c++)
			acc[r][c] = first || r >= nr ? _mm512_setzero_ps()
						     : _mm512_loadu_ps(z + (size_t)r * ldz + c * LANES);
	}
	for (int j = ja; j < jb; j++)
		tile_step(acc, pr, (size_t)j, vd + (size_t)j * Dh, nc, 0);
	/* the diagonal: key i0 + t is the last for row t */
#pragma GCC unroll 6
	for (int t = 0; t < ATT512_ROWS; t++) {
		if (!diag || t >= nr)
			break;
		tile_step(acc, pr, (size_t)(i0 + t), vd + (size_t)(i0 + t) * Dh, nc, t);
	}
#pragma GCC unroll 6
	for (int r = 0; r < ATT512_ROWS; r++) {
		if (r >= nr)
			break;
#pragma GCC unroll 4
		for (int c = 0; c < nc; c++)
			_mm512_storeu_ps(z + (size_t)r * ldz + c * LANES, acc[r][c]);
	}
}

/* The nc-specialised forms (nc a constant after inlining). */
#define NC_CASES(X) X(1) X(2) X(3) X(4)
#define QK_FN(n)                                                                               \
	TARGET static void qk_tile_##n(float *S, int lds, const float *q, int ld, int nr,      \
				       const float *kp, int Dh, int e, float scale)            \
	{                                                                                      \
		qk_tile(S, lds, q, ld, nr, kp, n, Dh, e, scale);                               \
	}
#define PV_FN(n)                                                                               \
	TARGET static void pv_tile_##n(float *z, int ldz, const float *P, int lds, int nr,     \
				       const float *vd, int Dh, int ja, int jb, int first,     \
				       int diag, int i0)                                       \
	{                                                                                      \
		pv_tile(z, ldz, P, lds, nr, vd, n, Dh, ja, jb, first, diag, i0);               \
	}
NC_CASES(QK_FN)
NC_CASES(PV_FN)

/* One row tile's scores over one packed 64-key chunk kc: S rows (stride
 * lds) of nr rows, the chunk's keys below e (e > 0; at most 64 are taken). */
static void chunk_scores(float *S, int lds, const float *q, int ld, int nr, const float *kc,
			 int Dh, int e, float scale)
{
	int vecs = (e + LANES - 1) / LANES;

	switch (vecs > 4 ? 4 : vecs) {
	case 1: qk_tile_1(S, lds, q, ld, nr, kc, Dh, e, scale); break;
	case 2: qk_tile_2(S, lds, q, ld, nr, kc, Dh, e, scale); break;
	case 3: qk_tile_3(S, lds, q, ld, nr, kc, Dh, e, scale); break;
	default: qk_tile_4(S, lds, q, ld, nr, kc, Dh, e, scale); break;
	}
}

/* One row tile's scores: S rows (stride lds) of nr rows, keys 0..e-1 (e:
 * the tile's end), from the packed k. */
static void tile_scores(float *S, int lds, const float *q, int ld, int nr, const float *kp, int Dh,
			int e, float scale)
{
	for (int j0 = 0; j0 < e; j0 += KCHUNK)
		chunk_scores(S + j0, lds, q, ld, nr, kp + (size_t)j0 * Dh, Dh, e - j0, scale);
}

/* One row tile's z (rows i0..i0+nr-1, P's rows at stride lds, @ vd): its
 * chain over keys [ja, jb) (first: from +0), then with diag the diagonal. */
static void tile_pv(float *z, int ldz, const float *P, int lds, int nr, const float *vd, int Dh,
		    int ja, int jb, int first, int diag, int i0)
{
	switch (Dh / LANES) {
	case 1: pv_tile_1(z, ldz, P, lds, nr, vd, Dh, ja, jb, first, diag, i0); break;
	case 2: pv_tile_2(z, ldz, P, lds, nr, vd, Dh, ja, jb, first, diag, i0); break;
	case 3: pv_tile_3(z, ldz, P, lds, nr, vd, Dh, ja, jb, first, diag, i0); break;
	default: pv_tile_4(z, ldz, P, lds, nr, vd, Dh, ja, jb, first, diag, i0); break;
	}
}

/* The drivers ---------------------------------------------------------------------- */

typedef struct att512_buf {
	float *kp; /* (ceil64(T) / 64, Dh, 64): k packed */
	float *vd; /* (T, Dh): v dense */
	float *s;  /* (GROUP_ROWS, lds): one group's scores and pattern */
	int lds;
} att512_buf;

static int round_up(int n, int m) { return (n + m - 1) / m * m; }

size_t mb_k_att512_scratch_floats(int T, int Dh)
{
	return 16 + (size_t)round_up(T, KCHUNK) * Dh + (size_t)T * Dh +
	       (size_t)GROUP_ROWS * round_up(T, LANES);
}

static att512_buf carve(float *W, int T, int Dh)
{
	att512_buf b;

	b.kp = (float *)(((uintptr_t)W + 63) & ~(uintptr_t)63);
	b.vd = b.kp + (size_t)round_up(T, KCHUNK) * Dh;
	b.s = b.vd + (size_t)T * Dh;
	b.lds = round_up(T, LANES);
	return b;
}

/* The end of the row tile that starts at i0. */
static int tile_end(int i0, int L) { return i0 + ATT512_ROWS < L ? i0 + ATT512_ROWS : L; }

void mb_k_att512_fused(float *z, int ldz, float *S, int T, const float *q, const float *k,
		       const float *v, int ld, int L, int Dh, float scale, int full,
		       mb_k_softmax_fn sm, float *W)
{
	att512_buf b = carve(W, T, Dh);

	pack_k(b.kp, k, ld, L, Dh);
	pack_v(b.vd, v, ld, L, Dh);
	/* a group of tiles shares each 64-key chunk of K, then of V, while it is
	 * in L1 (at T = 2048 the packed K and V fill the L2 between them) */
	for (int g0 = 0; g0 < L; g0 += GROUP_ROWS) {
		int g1 = g0 + GROUP_ROWS < L ? g0 + GROUP_ROWS : L;
		float *P = S ? S + (size_t)g0 * T : b.s;
		int lds = S ? T : b.lds;

		for (int j0 = 0; j0 < g1; j0 += KCHUNK)
			for (int i0 = g0; i0 < g1; i0 += ATT512_ROWS) {
				int e = tile_end(i0, L);

				if (j0 < e)
					chunk_scores(P + (size_t)(i0 - g0) * lds + j0, lds,
						     q + (size_t)i0 * ld, ld, e - i0,
						     b.kp + (size_t)j0 * Dh, Dh, e - j0, scale);
			}
		/* the zeros past i only where the pattern is kept: PV reads j <= i */
		for (int i = g0; i < g1; i++)
			sm(P + (size_t)(i - g0) * lds, i,
			   !S ? i + 1 : full ? T : mb_k_att_block_end(i, L));
		for (int j0 = 0; j0 < g1; j0 += KCHUNK)
			for (int i0 = g0; i0 < g1; i0 += ATT512_ROWS) {
				int jb = j0 + KCHUNK < i0 ? j0 + KCHUNK : i0;

				if (j0 < jb)
					tile_pv(z + (size_t)i0 * ldz, ldz,
						P + (size_t)(i0 - g0) * lds, lds,
						tile_end(i0, L) - i0, b.vd, Dh, j0, jb, j0 == 0, 0,
						i0);
			}
		for (int i0 = g0; i0 < g1; i0 += ATT512_ROWS)
			tile_pv(z + (size_t)i0 * ldz, ldz, P + (size_t)(i0 - g0) * lds, lds,
				tile_end(i0, L) - i0, b.vd, Dh, i0, i0, i0 == 0, 1, i0);
	}
}

void mb_k_att512_scores(float *S, int T, const float *q, const float *k, int ld, int L, int Dh,
			float scale, float *W)
{
	att512_buf b = carve(W, T, Dh);

	pack_k(b.kp, k, ld, L, Dh);
	for (int i0 = 0; i0 < L; i0 += ATT512_ROWS) {
		int e = tile_end(i0, L);

		tile_scores(S + (size_t)i0 * T, T, q + (size_t)i0 * ld, ld, e - i0, b.kp, Dh, e,
			    scale);
	}
}

void mb_k_att512_pv(float *z, int ldz, const float *S, int T, const float *v, int ld, int L,
		    int Dh, float *W)
{
	att512_buf b = carve(W, T, Dh);

	pack_v(b.vd, v, ld, L, Dh);
	for (int i0 = 0; i0 < L; i0 += ATT512_ROWS) {
		int e = tile_end(i0, L);

		tile_pv(z + (size_t)i0 * ldz, ldz, S + (size_t)i0 * T, T, e - i0, b.vd, Dh, 0, i0, 1,
			1, i0);
	}
}

#endif /* MB_HAVE_ATT512 */
