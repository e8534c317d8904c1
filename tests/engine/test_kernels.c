/*
 * kernels: each engine kernel against a naive double-precision loop, with an
 * explicit tolerance and the max difference printed; plus the bitwise
 * properties the engine relies on (row invariance of the GEMM wrapper on
 * aligned rows, fused = phased attention, row kernel = mb_k_dot).
 *
 * Shape letters: R rows, K inner, N columns, L positions, Dh head width.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "engine/kernels_int.h"

static uint64_t seed = 7;

static float urand(void)
{
	seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float)((double)(seed >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static float *rand_buf(size_t n, float scale)
{
	float *p = malloc(sizeof(float) * (n ? n : 1));

	cr_assert(p);
	for (size_t i = 0; i < n; i++)
		p[i] = urand() * scale;
	return p;
}

static void report(const char *what, double mx, double tol)
{
	printf("%-40s max diff %.3g (tolerance %.3g)\n", what, mx, tol);
	cr_expect(mx <= tol, "%s: max diff %g > %g", what, mx, tol);
}

Test(kernels, gemm_matches_a_double_loop_for_both_layouts)
{
	const int shapes[][3] = {{37, 24, 16}, {100, 96, 32}, {12, 50, 64}, {1, 7, 3}, {130, 200, 72}};

	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		int R = shapes[s][0], N = shapes[s][1], K = shapes[s][2];

		for (int tw = 0; tw < 2; tw++) {
			float *A = rand_buf((size_t)R * K, 1.0f), *W = rand_buf((size_t)K * N, 0.3f);
			float *C = malloc(sizeof(float) * (size_t)R * (N + 3));
			double mx = 0.0;
			char what[64];

			/* ldc wider than N: the wrapper must respect strides */
			mb_k_gemm(C, N + 3, A, K, W, tw ? K : N, tw, R, N, K, 0.5f, 12);
			for (int r = 0; r < R; r++)
				for (int c = 0; c < N; c++) {
					double ref = 0.0;

					for (int k = 0; k < K; k++)
						ref += (double)A[r * K + k] *
						       (tw ? W[(size_t)c * K + k] : W[(size_t)k * N + c]);
					ref *= 0.5;
					mx = fmax(mx, fabs(ref - C[(size_t)r * (N + 3) + c]));
				}
			snprintf(what, sizeof(what), "gemm %dx%dx%d%s", R, N, K, tw ? " (W^T)" : "");
			report(what, mx, 1e-5 * K);
			free(A);
			free(W);
			free(C);
		}
	}
}

/* The packed layout's premise: with the probed group u, a u-aligned block of
 * rows gives the same bits alone as inside a larger call, for 1 and 2 threads. */
Test(kernels, gemm_rows_are_bitwise_invariant_on_aligned_groups)
{
	const int K = 64, N = 96, R = 240;
	int u = mb_k_gemm_probe_group(K, N, 0);
	float *A = rand_buf((size_t)R * K, 1.0f), *W = rand_buf((size_t)K * N, 0.2f);
	float *C = malloc(sizeof(float) * R * N), *C2 = malloc(sizeof(float) * R * N);
	int saved = omp_get_max_threads();

	printf("probed row group for K=%d N=%d: %d\n", K, N, u);
	cr_assert_gt(u, 0, "no row group reproduces sgemm bit for bit on this BLAS");
	omp_set_num_threads(2);
	mb_k_gemm(C, N, A, K, W, N, 0, R / u * u, N, K, 1.0f, u);
	for (int threads = 1; threads <= 2; threads++) {
		omp_set_num_threads(threads);
		for (int g0 = 0; g0 < 4; g0++)
			for (int ng = 1; g0 * u + ng * u <= R && ng < 6; ng += 2) {
				mb_k_gemm(C2, N, A + (size_t)g0 * u * K, K, W, N, 0, ng * u, N, K, 1.0f, u);
				cr_expect_eq(memcmp(C2, C + (size_t)g0 * u * N, sizeof(float) * ng * u * N), 0,
					     "rows %d..%d differ with %d threads", g0 * u, (g0 + ng) * u,
					     threads);
			}
	}
	omp_set_num_threads(saved);
	free(A);
	free(W);
	free(C);
	free(C2);
}

Test(kernels, expf_is_within_three_ulp_of_exp)
{
	double worst = 0.0;

	for (int i = 0; i <= 200000; i++) {
		float x = -86.0f + 174.0f * (float)i / 200000.0f;
		double ref = exp((double)x), got = mb_k_expf(x);
		double rel = fabs(got - ref) / ref;

		worst = fmax(worst, rel);
	}
	report("expf relative error on [-86, 88]", worst, 3.0 * 5.97e-8);
	cr_expect_eq(mb_k_expf(0.0f), 1.0f);
	cr_expect(mb_k_expf(-1000.0f) >= 0.0f && mb_k_expf(-1000.0f) < 1e-36f);
	cr_expect(isfinite(mb_k_expf(1000.0f)));
}

Test(kernels, activations_match_their_double_formulas)
{
	double mg = 0.0, me = 0.0, mr = 0.0;
	float in[4001], out[4001];

	for (int i = 0; i <= 4000; i++)
		in[i] = -12.0f + 24.0f * (float)i / 4000.0f;
	mb_k_act(out, in, 4001, MB_ACT_GELU_NEW);
	for (int i = 0; i <= 4000; i++) {
		double x = in[i];
		double ref = 0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));

		mg = fmax(mg, fabs(ref - out[i]) / (1.0 + fabs(ref)));
		cr_expect_eq(out[i], mb_k_gelu_new(in[i]));
	}
	mb_k_act(out, in, 4001, MB_ACT_GELU);
	for (int i = 0; i <= 4000; i++) {
		double x = in[i], ref = 0.5 * x * (1.0 + erf(x / sqrt(2.0)));

		me = fmax(me, fabs(ref - out[i]) / (1.0 + fabs(ref)));
	}
	mb_k_act(out, in, 4001, MB_ACT_RELU);
	for (int i = 0; i <= 4000; i++)
		mr = fmax(mr, fabs((in[i] > 0 ? in[i] : 0.0) - out[i]));
	report("gelu_new vs tanh formula (rel)", mg, 1e-6);
	report("gelu vs erf formula (rel)", me, 1e-6);
	report("relu", mr, 0.0);
}

Test(kernels, bias_act_equals_bias_then_act)
{
	const int R = 5, N = 37;
	float *x = rand_buf(R * N, 3.0f), *b = rand_buf(N, 1.0f);
	float *y = malloc(sizeof(float) * R * N), *z = malloc(sizeof(float) * R * N);

	memcpy(z, x, sizeof(float) * R * N);
	mb_k_bias_act(y, x, b, R, N, MB_ACT_GELU_NEW);
	mb_k_add_bias(z, N, b, R, N);
	cr_expect_eq(memcmp(x, z, sizeof(float) * R * N), 0); /* in += bias */
	mb_k_act(z, z, (size_t)R * N, MB_ACT_GELU_NEW);
	cr_expect_eq(memcmp(y, z, sizeof(float) * R * N), 0);
	free(x);
	free(b);
	free(y);
	free(z);
}

Test(kernels, layernorm_matches_a_double_loop)
{
	const int R = 9, D = 45;
	float *x = rand_buf(R * D, 2.0f), *w = rand_buf(D, 1.0f), *b = rand_buf(D, 0.5f);
	float *out = malloc(sizeof(float) * R * D), *xh = malloc(sizeof(float) * R * D);
	float *out2 = malloc(sizeof(float) * R * D), mean[9], rstd[9];
	double mo = 0.0, mx = 0.0, ms = 0.0;

	for (int c = 0; c < D; c++)
		x[c] += 100.0f; /* an offset row: variance must be computed around the mean */
	mb_k_layernorm(out, xh, mean, rstd, x, w, b, R, D, 1e-5f);
	for (int r = 0; r < R; r++) {
		double m = 0.0, v = 0.0;

		for (int c = 0; c < D; c++)
			m += x[r * D + c];
		m /= D;
		for (int c = 0; c < D; c++)
			v += (x[r * D + c] - m) * (x[r * D + c] - m);
		v /= D;
		ms = fmax(ms, fabs(1.0 / sqrt(v + 1e-5) - rstd[r]) * sqrt(v + 1e-5));
		for (int c = 0; c < D; c++) {
			double xhat = (x[r * D + c] - m) / sqrt(v + 1e-5);

			mx = fmax(mx, fabs(xhat - xh[r * D + c]));
			mo = fmax(mo, fabs(xhat * w[c] + b[c] - out[r * D + c]));
		}
	}
	report("layernorm xhat", mx, 1e-5);
	report("layernorm out", mo, 1e-5);
	report("layernorm rstd (relative)", ms, 1e-6);
	/* the fused path (no xhat) gives the same bits as xhat then affine */
	mb_k_layernorm(out2, NULL, NULL, NULL, x, w, b, R, D, 1e-5f);
	cr_expect_eq(memcmp(out, out2, sizeof(float) * R * D), 0);
	mb_k_ln_affine(out2, xh, w, b, R, D);
	cr_expect_eq(memcmp(out, out2, sizeof(float) * R * D), 0);
	free(x);
	free(w);
	free(b);
	free(out);
	free(xh);
	free(out2);
}

Test(kernels, sum_and_dot_match_double_and_follow_one_order)
{
	double ms = 0.0, md = 0.0;

	for (int n = 0; n < 100; n++) {
		float *a = rand_buf((size_t)n, 1.0f), *b = rand_buf((size_t)n, 1.0f);
		double s = 0.0, d = 0.0;

		for (int i = 0; i < n; i++) {
			s += a[i];
			d += (double)a[i] * b[i];
		}
		ms = fmax(ms, fabs(s - mb_k_sum(a, n)));
		md = fmax(md, fabs(d - mb_k_dot(a, b, n)));
		free(a);
		free(b);
	}
	report("sum, n < 100", ms, 1e-5);
	report("dot, n < 100", md, 1e-5);
}

/* Naive causal attention in double for one head: q, k, v (L, Dh). */
static void naive_attention(double *z, double *pat, const float *q, const float *k,
			    const float *v, int ld, int L, int Dh)
{
	for (int i = 0; i < L; i++) {
		double mx = -INFINITY, sum = 0.0;
		double *p = pat + (size_t)i * L;

		for (int j = 0; j <= i; j++) {
			double s = 0.0;

			for (int d = 0; d < Dh; d++)
				s += (double)q[i * ld + d] * k[j * ld + d];
			p[j] = s / sqrt((double)Dh);
			mx = fmax(mx, p[j]);
		}
		for (int j = 0; j <= i; j++) {
			p[j] = exp(p[j] - mx);
			sum += p[j];
		}
		for (int j = 0; j < L; j++)
			p[j] = j <= i ? p[j] / sum : 0.0;
		for (int d = 0; d < Dh; d++) {
			double acc = 0.0;

			for (int j = 0; j <= i; j++)
				acc += p[j] * v[j * ld + d];
			z[i * Dh + d] = acc;
		}
	}
}

Test(kernels, causal_attention_matches_a_double_loop_and_phases_agree)
{
	const int lens[] = {1, 5, 63, 64, 65, 150, 257};

	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		int L = lens[li], T = L + 3, Dh = 16, ld = 3 * Dh + 5;
		float *qkv = rand_buf((size_t)L * ld, 1.5f);
		float *S = malloc(sizeof(float) * T * T), *S2 = malloc(sizeof(float) * T * T);
		float *W = malloc(sizeof(float) * mb_k_att_scratch_floats(T, Dh));
		float *z = malloc(sizeof(float) * L * Dh), *z2 = malloc(sizeof(float) * L * Dh);
		double *zr = malloc(sizeof(double) * L * Dh), *pr = malloc(sizeof(double) * L * L);
		double mz = 0.0, mp = 0.0;
		float scale = 1.0f / sqrtf((float)Dh);
		char what[64];

		naive_attention(zr, pr, qkv, qkv + Dh, qkv + 2 * Dh, ld, L, Dh);
		mb_k_att_fused(z, Dh, S, T, qkv, qkv + Dh, qkv + 2 * Dh, ld, L, Dh, scale, 1, W);
		for (int i = 0; i < L; i++) {
			for (int j = 0; j < T; j++)
				mp = fmax(mp, fabs((j < L ? pr[i * L + j] : 0.0) - S[i * T + j]));
			for (int d = 0; d < Dh; d++)
				mz = fmax(mz, fabs(zr[i * Dh + d] - z[i * Dh + d]));
		}
		for (int i = L; i < T; i++)
			for (int j = 0; j < T; j++)
				cr_expect_eq(S[i * T + j], 0.0f);
		snprintf(what, sizeof(what), "attention pattern, L=%d", L);
		report(what, mp, 1e-6);
		snprintf(what, sizeof(what), "attention z, L=%d", L);
		report(what, mz, 1e-5);
		/* the phased path (used when scores/pattern hooks observe) gives the same bits */
		mb_k_att_scores(S2, T, qkv, qkv + Dh, ld, L, Dh, scale, W);
		mb_k_att_mask_scores(S2, T, L);
		for (int i = 0; i < L; i++)
			for (int j = i + 1; j < T; j++)
				cr_expect(isinf(S2[i * T + j]) && S2[i * T + j] < 0);
		mb_k_att_softmax(S2, T, L, 1);
		cr_expect_eq(memcmp(S, S2, sizeof(float) * T * T), 0, "pattern bits, L=%d", L);
		mb_k_att_zero_masked(S2, T, L);
		mb_k_att_pv(z2, Dh, S2, T, qkv + 2 * Dh, ld, L, Dh, W);
		cr_expect_eq(memcmp(z, z2, sizeof(float) * L * Dh), 0, "z bits, L=%d", L);
		/* the per-thread block scratch (no pattern kept) gives the same z bits */
		memset(z2, 0x7f, sizeof(float) * L * Dh);
		mb_k_att_fused_scratch(z2, Dh, W, T, qkv, qkv + Dh, qkv + 2 * Dh, ld, L, Dh, scale);
		cr_expect_eq(memcmp(z, z2, sizeof(float) * L * Dh), 0, "scratch z bits, L=%d", L);
		/* the fused path without the full pattern (training keeps it) */
		memset(z2, 0x7f, sizeof(float) * L * Dh);
		mb_k_att_fused(z2, Dh, S2, T, qkv, qkv + Dh, qkv + 2 * Dh, ld, L, Dh, scale, 0, W);
		cr_expect_eq(memcmp(z, z2, sizeof(float) * L * Dh), 0, "fused z bits, L=%d", L);
		free(W);
		free(qkv);
		free(S);
		free(S2);
		free(z);
		free(z2);
		free(zr);
		free(pr);
	}
}

/* The causal softmax in the form it had before its passes were fused (a
 * sequential max, exp, mb_k_sum, one division per entry): the fused kernel
 * must give these bits exactly, or every stored metric would move. */
static void softmax_row_reference(float *s, int n)
{
	float mx = s[0], sum;

	for (int j = 1; j < n; j++)
		mx = s[j] > mx ? s[j] : mx;
	for (int j = 0; j < n; j++)
		s[j] = mb_k_expf(s[j] - mx);
	sum = mb_k_sum(s, n);
	for (int j = 0; j < n; j++)
		s[j] = s[j] / sum;
}

/* The oneDNN backend's softmax on AVX-512 (kernels.c, softmax_row_fast),
 * written out in scalar C: e_j = 2^t_j, t_j = fmaf(s_j, log2 e, -(max log2
 * e)), t clamped below at -150 with NaN kept, n = t rounded to nearest
 * even, 2^(t - n) by the degree-5 polynomial in fmaf, scaled by ldexpf
 * (vscalefps is that exactly); mb_k_sum of the e_j; one reciprocal, then a
 * product per entry. */
static float exp2_fast_reference(float t)
{
	float n, f, p;

	t = isnan(t) ? t : (t < -150.0f ? -150.0f : t);
	n = nearbyintf(t);
	f = t - n;
	p = 1.326472731307149e-3f;
	p = fmaf(p, f, 9.671512991189957e-3f);
	p = fmaf(p, f, 5.550733581185341e-2f);
	p = fmaf(p, f, 2.4022242426872253e-1f);
	p = fmaf(p, f, 6.931470036506653e-1f);
	p = fmaf(p, f, 1.0f);
	return isnan(n) ? n : ldexpf(p, (int)n);
}

static void softmax_row_fast_reference(float *s, int n)
{
	float mx = s[0], c, rc;

	for (int j = 1; j < n; j++)
		mx = s[j] > mx ? s[j] : mx;
	c = -(mx * 1.44269504088896341f);
	for (int j = 0; j < n; j++)
		s[j] = exp2_fast_reference(fmaf(s[j], 1.44269504088896341f, c));
	rc = 1.0f / mb_k_sum(s, n);
	for (int j = 0; j < n; j++)
		s[j] = s[j] * rc;
}

static void softmax_rows_reference(float *S, int T, int L, int fast)
{
	for (int i = 0; i < L; i++) {
		float *s = S + (size_t)i * T;

		if (fast)
			softmax_row_fast_reference(s, i + 1);
		else
			softmax_row_reference(s, i + 1);
		for (int j = i + 1; j < T; j++)
			s[j] = 0.0f;
	}
	for (int i = L; i < T; i++)
		memset(S + (size_t)i * T, 0, sizeof(float) * (size_t)T);
}

/* 1 when mb_k_att_softmax takes the oneDNN backend's form (kernels.c,
 * softmax_fast_on): the backend is onednn and the ISA AVX-512. */
static int softmax_is_fast(int isa)
{
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
	return mb_gemm_current() == MB_GEMM_ONEDNN && isa == (int)MB_GEMM_ISA_AVX512;
#else
	(void)isa;
	return 0;
#endif
}

static void softmax_bits_check(int isa)
{
	const int lens[] = {1, 2, 15, 16, 17, 31, 33, 64, 65, 200, 301, 1031};
	int fast = softmax_is_fast(isa);
	double worst = 0.0;

	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		int L = lens[li], T = L + 2;
		float *S = rand_buf((size_t)T * T, 12.0f), *R = malloc(sizeof(float) * T * T);
		float *X = malloc(sizeof(float) * T * T);

		cr_assert(R && X);
		/* ties, signed zeros, a huge spread (subnormal exps), -inf, wherever
		 * the lanes split */
		for (int i = 0; i < L; i++) {
			S[(size_t)i * T + i / 2] = S[(size_t)i * T];
			if (i % 3 == 0)
				S[(size_t)i * T + i] = (i % 2) ? -0.0f : 0.0f;
			if (i % 5 == 1)
				S[(size_t)i * T + i / 3] = -90.0f;
			if (i % 7 == 3)
				S[(size_t)i * T + i / 4 + 1] = -INFINITY;
		}
		memcpy(R, S, sizeof(float) * T * T);
		memcpy(X, S, sizeof(float) * T * T);
		mb_k_att_softmax(S, T, L, 1);
		softmax_rows_reference(R, T, L, fast);
		cr_expect_eq(memcmp(S, R, sizeof(float) * T * T), 0,
			     "softmax bits differ, L=%d, isa %s, backend %s", L,
			     mb_gemm_isa_name((mb_gemm_isa)isa), mb_gemm_backend_name(mb_gemm_current()));
		/* and either form is the softmax: relative error against double */
		for (int i = 0; i < L; i++) {
			const float *x = X + (size_t)i * T;
			double mx = x[0], sum = 0.0;

			for (int j = 1; j <= i; j++)
				mx = x[j] > mx ? x[j] : mx;
			for (int j = 0; j <= i; j++)
				sum += exp((double)x[j] - mx);
			for (int j = 0; j <= i; j++) {
				double p = exp((double)x[j] - mx) / sum;
				double d = fabs(S[(size_t)i * T + j] - p);

				/* relative where the mass is: an exp's error grows
				 * with |s_j - max| (the rounding of s_j - max, or of t
				 * in the onednn form, up to log2 e times larger) */
				worst = fmax(worst, d / fmax(p, 1e-6));
			}
		}
		free(S);
		free(R);
		free(X);
	}
	report(fast ? "causal softmax (onednn form), rel >= 1e-6" : "causal softmax, rel >= 1e-6",
	       worst, 1.5e-6);
}

/* Every ISA form of the row max (kernels.c, lanes_max, chosen by the portable
 * kernels' ISA) gives the reference's bits; under the onednn backend at
 * AVX-512, the fast form's scalar reference's bits. */
Test(kernels, causal_softmax_keeps_the_bits_of_the_unfused_passes)
{
	mb_gemm_backend be = mb_gemm_current();
	mb_gemm_isa was = mb_gemm_isa_current();

	for (int isa = 0; isa <= (int)mb_gemm_isa_best(); isa++) {
		cr_assert_eq(mb_k_gemm_force(be, (mb_gemm_isa)isa), 0);
		softmax_bits_check(isa);
	}
	cr_assert_eq(mb_k_gemm_force(be, was), 0);
}

/* Causal attention of one head as the portable GEMM defines it, one row at a
 * time and with no query blocks: s_j = scale * (an FMA chain over d in
 * order from +0), the softmax sm of s_0..s_i, then z_i = an FMA chain over
 * j <= i in order from +0. P, when not NULL: the pattern rows (stride T,
 * zeros past i). */
static void chain_attention(float *z, float *P, int T, const float *q, const float *k,
			    const float *v, int ld, int L, int Dh, float scale,
			    void (*sm)(float *s, int n))
{
	float *s = malloc(sizeof(float) * (size_t)L);

	cr_assert(s);
	for (int i = 0; i < L; i++) {
		for (int j = 0; j <= i; j++) {
			float acc = 0.0f;

			for (int d = 0; d < Dh; d++)
				acc = fmaf(q[(size_t)i * ld + d], k[(size_t)j * ld + d], acc);
			s[j] = scale * acc;
		}
		sm(s, i + 1);
		for (int d = 0; d < Dh; d++) {
			float acc = 0.0f;

			for (int j = 0; j <= i; j++)
				acc = fmaf(s[j], v[(size_t)j * ld + d], acc);
			z[(size_t)i * Dh + d] = acc;
		}
		if (P)
			for (int j = 0; j < T; j++)
				P[(size_t)i * T + j] = j <= i ? s[j] : 0.0f;
	}
	free(s);
}

/* The query block size (MB_K_ATT_BLOCK) is a speed setting: under the
 * portable backend (what the canonical suite and the zoo run) every path
 * gives the bits of the block-free chains above, so changing the block moves
 * no stored metric. Lengths straddle the block edges of 64 and 128. */
Test(kernels, portable_attention_bits_do_not_depend_on_the_query_block)
{
	const int lens[] = {1, 63, 64, 65, 127, 128, 129, 200, 257};

	if (mb_gemm_current() != MB_GEMM_PORTABLE)
		cr_skip_test("the block-free reference is the portable GEMM's order");
	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		int L = lens[li], T = L + 5, Dh = 64, ld = 3 * Dh + 3;
		float *qkv = rand_buf((size_t)L * ld, 2.0f), *S = malloc(sizeof(float) * T * T);
		float *z = malloc(sizeof(float) * L * Dh), *zr = malloc(sizeof(float) * L * Dh);
		float *W = malloc(sizeof(float) * mb_k_att_scratch_floats(T, Dh));
		float scale = 1.0f / sqrtf((float)Dh);

		cr_assert(S && z && zr && W);
		chain_attention(zr, NULL, T, qkv, qkv + Dh, qkv + 2 * Dh, ld, L, Dh, scale,
				softmax_row_reference);
		mb_k_att_fused(z, Dh, S, T, qkv, qkv + Dh, qkv + 2 * Dh, ld, L, Dh, scale, 1, W);
		cr_expect_eq(memcmp(z, zr, sizeof(float) * L * Dh), 0, "fused z bits, L=%d", L);
		mb_k_att_fused_scratch(z, Dh, W, T, qkv, qkv + Dh, qkv + 2 * Dh, ld, L, Dh, scale);
		cr_expect_eq(memcmp(z, zr, sizeof(float) * L * Dh), 0, "scratch z bits, L=%d", L);
		free(W);
		free(qkv);
		free(S);
		free(z);
		free(zr);
	}
}

#define CANARY 16 /* floats past each output the kernels must leave alone */

/* 1 when every one of the n floats at p is the canary's bit pattern. */
static int canary_intact(const float *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (memcmp(p + i, &(float){-1234.5f}, sizeof(float)) != 0)
			return 0;
	return 1;
}

static float *canaried(size_t n)
{
	float *p = malloc(sizeof(float) * (n + CANARY));

	cr_assert(p);
	for (size_t i = 0; i < n + CANARY; i++)
		p[i] = -1234.5f;
	return p;
}

/* z rows (stride ldz) against zr (stride Dh), and the canary columns
 * Dh..ldz-1 of every row and after the last. */
static int z_matches(const float *z, int ldz, const float *zr, int L, int Dh)
{
	for (int i = 0; i < L; i++)
		if (memcmp(z + (size_t)i * ldz, zr + (size_t)i * Dh, sizeof(float) * Dh) != 0 ||
		    !canary_intact(z + (size_t)i * ldz + Dh, (size_t)(ldz - Dh)))
			return 0;
	return canary_intact(z + (size_t)L * ldz, CANARY);
}

/* One backend's tiles (see the test below) at one width and length. */
static void tiles_check(int Dh, int L, int T, void (*sm)(float *s, int n), const char *be)
{
	int ld = 3 * Dh + 3, ldz = Dh + CANARY;
	float *qkv = rand_buf((size_t)L * ld, 2.0f);
	size_t nw = mb_k_att_scratch_floats(T, Dh), nz = (size_t)L * ldz;
	float *S = canaried((size_t)T * T), *P = malloc(sizeof(float) * T * T);
	float *z = canaried(nz), *zr = malloc(sizeof(float) * L * Dh), *W = canaried(nw);
	float scale = 1.0f / sqrtf((float)Dh);
	const float *q = qkv, *k = qkv + Dh, *v = qkv + 2 * Dh;

	cr_assert(P && zr);
	chain_attention(zr, P, T, q, k, v, ld, L, Dh, scale, sm);
	for (int i = L; i < T; i++)
		memset(P + (size_t)i * T, 0, sizeof(float) * T);
	mb_k_att_fused(z, ldz, S, T, q, k, v, ld, L, Dh, scale, 1, W);
	cr_expect(z_matches(z, ldz, zr, L, Dh), "%s fused z, Dh=%d L=%d T=%d", be, Dh, L, T);
	cr_expect_eq(memcmp(S, P, sizeof(float) * T * T), 0, "%s pattern, Dh=%d L=%d T=%d", be, Dh,
		     L, T);
	cr_expect(canary_intact(S + (size_t)T * T, CANARY) && canary_intact(W + nw, CANARY),
		  "%s fused wrote past S or W, Dh=%d L=%d T=%d", be, Dh, L, T);
	for (int i = 0; i < L; i++)
		memset(z + (size_t)i * ldz, 0x7f, sizeof(float) * Dh);
	mb_k_att_fused_scratch(z, ldz, W, T, q, k, v, ld, L, Dh, scale);
	cr_expect(z_matches(z, ldz, zr, L, Dh), "%s scratch z, Dh=%d L=%d T=%d", be, Dh, L, T);
	cr_expect(canary_intact(W + nw, CANARY), "%s scratch wrote past W, Dh=%d L=%d T=%d", be,
		  Dh, L, T);
	for (int i = 0; i < L; i++)
		memset(z + (size_t)i * ldz, 0x7f, sizeof(float) * Dh);
	mb_k_att_scores(S, T, q, k, ld, L, Dh, scale, W);
	mb_k_att_softmax(S, T, L, 1);
	for (int i = 0; i < L; i++)
		for (int j = i + 1; j < T; j++)
			S[(size_t)i * T + j] = 1e30f;
	mb_k_att_zero_masked(S, T, L);
	mb_k_att_pv(z, ldz, S, T, v, ld, L, Dh, W);
	cr_expect(z_matches(z, ldz, zr, L, Dh), "%s phased z, Dh=%d L=%d T=%d", be, Dh, L, T);
	cr_expect(canary_intact(S + (size_t)T * T, CANARY) && canary_intact(W + nw, CANARY),
		  "%s phased wrote past S or W, Dh=%d L=%d T=%d", be, Dh, L, T);
	free(qkv);
	free(S);
	free(P);
	free(z);
	free(zr);
	free(W);
}

/* Under onednn and openblas at AVX-512 (att_avx512.c's tiles: groups of
 * four tiles of six query rows, keys in chunks of 64, the diagonal row by
 * row) every path gives the chains above, with the fast softmax's reference
 * under onednn and the exact one under openblas (the portable backend's
 * bits then), for every head width the tiles take (one to four vectors),
 * lengths around the tile (6), group (24), chunk (64) and query block (128)
 * edges, T = L (the forward's usual case: a store past the last row would
 * run into the next head's block) and T > L, z at a wider row stride with
 * canary columns, and canaries after S, z and W. The phased path gets junk
 * written past the diagonal after its softmax, as a pattern hook may:
 * zero_masked clears only up to the block's end, and z must not read past i
 * at all. The test selects the backends itself, so it runs in every pass
 * (the sanitizers' too). Fails with the tiles off (the backends' block
 * GEMMs round differently), a broken diagonal or a broken chain
 * continuation. */
Test(kernels, attention_tiles_are_the_portable_chains)
{
	const int lens[] = {1,  5,  6,  7,  12,  13,  23,  24,  25,  48,
			    49, 63, 64, 65, 127, 128, 129, 133, 200, 257};
	const int widths[] = {16, 32, 48, 64};
	const mb_gemm_backend bes[] = {MB_GEMM_OPENBLAS, MB_GEMM_ONEDNN};
	mb_gemm_backend was = mb_gemm_current();
	mb_gemm_isa was_isa = mb_gemm_isa_current();

#if !defined(__GNUC__) || !defined(__x86_64__) || defined(__clang__)
	cr_skip_test("the tiles are built by GCC on x86-64 only");
#endif
	if (mb_gemm_isa_best() != MB_GEMM_ISA_AVX512)
		cr_skip_test("the tiles run on AVX-512 CPUs only");
	for (size_t b = 0; b < sizeof(bes) / sizeof(bes[0]); b++) {
		const char *be = mb_gemm_backend_name(bes[b]);

		if (bes[b] == MB_GEMM_ONEDNN && !mb_gemm_have_onednn())
			continue;
		cr_assert_eq(mb_k_gemm_force(bes[b], MB_GEMM_ISA_AVX512), 0);
		cr_assert(mb_k_att_tiles_on(), "%s", be);
		for (size_t wi = 0; wi < sizeof(widths) / sizeof(widths[0]); wi++)
			for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++)
				for (int extra = 0; extra <= 5; extra += 5)
					tiles_check(widths[wi], lens[li], lens[li] + extra,
						    bes[b] == MB_GEMM_ONEDNN
							    ? softmax_row_fast_reference
							    : softmax_row_reference,
						    be);
	}
	cr_assert_eq(mb_k_gemm_force(was, was_isa), 0);
}

Test(kernels, row_matmul_matches_double_and_mb_k_dot_bitwise)
{
	const int R = 7, N = 150, K = 45;
	float *X = rand_buf(R * K, 1.0f), *W = rand_buf(N * K, 0.5f);
	float *out = malloc(sizeof(float) * R * N), *out1 = malloc(sizeof(float) * N);
	double mx = 0.0;

	mb_k_matmul_nt_rows(out, N, X, R, W, N, K);
	for (int r = 0; r < R; r++)
		for (int c = 0; c < N; c++) {
			double ref = 0.0;

			for (int k = 0; k < K; k++)
				ref += (double)X[r * K + k] * W[c * K + k];
			mx = fmax(mx, fabs(ref - out[r * N + c]));
			cr_expect_eq(out[r * N + c], mb_k_dot(X + r * K, W + c * K, K));
		}
	report("row matmul", mx, 1e-5);
	/* a row alone gives the bits it had among others */
	for (int r = 0; r < R; r++) {
		mb_k_matmul_nt_rows(out1, N, X + r * K, 1, W, N, K);
		cr_expect_eq(memcmp(out1, out + r * N, sizeof(float) * N), 0, "row %d", r);
	}
	free(X);
	free(W);
	free(out);
	free(out1);
}
