/*
 * gemm: the backend layer and the portable kernels' one rule (gemm.h):
 * every output element is alpha times one FMA chain over k = 0..K-1 in order,
 * so the AVX-512, AVX2+FMA and scalar kernels give the same bits as each
 * other and as a plain fmaf loop written here, for every layout, stride,
 * edge tile and k-block boundary; a row's bits never depend on its batch or
 * the thread count; and the values agree with a double-precision product.
 *
 * Shape letters: M rows, N columns, K inner dimension.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include <mechbench/gemm.h>

#include "engine/kernels_int.h"

static uint64_t seed = 11;

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

/* The rule itself, one element at a time. */
static float chain(const float *A, int lda, int ta, const float *B, int ldb, int tb, int i, int j,
		   int K, float alpha)
{
	float acc = 0.0f;

	for (int k = 0; k < K; k++) {
		float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
		float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];

		acc = fmaf(a, b, acc);
	}
	return alpha != 1.0f ? alpha * acc : acc;
}

static const int shapes[][3] = {
	/* M, N, K: edge tiles in both directions, K across the 256-wide k-blocks,
	 * N across the 384-wide column blocks, M across the 144-row blocks */
	{1, 1, 1}, {1, 7, 3}, {5, 33, 17}, {13, 31, 64}, {37, 24, 256},
	{12, 32, 257}, {150, 390, 300}, {7, 100, 600}, {64, 64, 64},
};

static void run_isa(mb_gemm_isa isa, int ta, int tb, int M, int N, int K, float alpha,
		    const float *A, int lda, const float *B, int ldb, float *C, int ldc)
{
	cr_assert_eq(mb_k_gemm_force(MB_GEMM_PORTABLE, isa), 0);
	for (size_t i = 0; i < (size_t)M * ldc; i++)
		C[i] = NAN; /* the kernel must write every element it owns */
	mb_k_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, C, ldc);
}

Test(gemm, portable_is_one_fma_chain_per_element_on_every_isa)
{
	mb_gemm_isa best = mb_gemm_isa_best();
	int checked = 0;

	printf("portable ISAs here: scalar..%s\n", mb_gemm_isa_name(best));
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
		for (int ta = 0; ta < 2; ta++)
			for (int tb = 0; tb < 2; tb++) {
				int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
				int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
				float alpha = (s & 1) ? 0.125f * 3.0f : 1.0f;
				float *A = rand_buf((size_t)(ta ? K : M) * lda, 1.0f);
				float *B = rand_buf((size_t)(tb ? N : K) * ldb, 0.3f);
				float *want = malloc(sizeof(float) * (size_t)M * ldc);
				float *got = malloc(sizeof(float) * (size_t)M * ldc);

				cr_assert(want && got);
				for (int i = 0; i < M; i++)
					for (int j = 0; j < N; j++)
						want[(size_t)i * ldc + j] =
							chain(A, lda, ta, B, ldb, tb, i, j, K, alpha);
				for (int isa = MB_GEMM_ISA_SCALAR; isa <= (int)best; isa++) {
					run_isa((mb_gemm_isa)isa, ta, tb, M, N, K, alpha, A, lda, B, ldb,
						got, ldc);
					for (int i = 0; i < M; i++)
						cr_assert(memcmp(got + (size_t)i * ldc, want + (size_t)i * ldc,
								 sizeof(float) * (size_t)N) == 0,
							  "isa %s, M %d N %d K %d, ta %d tb %d: row %d "
							  "differs from the fmaf chain",
							  mb_gemm_isa_name((mb_gemm_isa)isa), M, N, K, ta,
							  tb, i);
					checked++;
				}
				free(A);
				free(B);
				free(want);
				free(got);
			}
	printf("%d (shape, layout, isa) cases bitwise equal to the fmaf chain\n", checked);
	cr_assert_geq(checked, 36);
}

Test(gemm, portable_agrees_with_a_double_product)
{
	const int M = 70, N = 200, K = 700;
	float *A = rand_buf((size_t)M * K, 1.0f), *B = rand_buf((size_t)K * N, 0.3f);
	float *C = malloc(sizeof(float) * (size_t)M * N);
	double mx = 0;

	cr_assert(C);
	cr_assert_eq(mb_k_gemm_force(MB_GEMM_PORTABLE, mb_gemm_isa_best()), 0);
	mb_k_sgemm(0, 0, M, N, K, 1.0f, A, K, B, N, C, N);
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++) {
			double ref = 0, mag = 0, d;

			for (int k = 0; k < K; k++) {
				ref += (double)A[(size_t)i * K + k] * B[(size_t)k * N + j];
				mag += fabs((double)A[(size_t)i * K + k] * B[(size_t)k * N + j]);
			}
			d = fabs(C[(size_t)i * N + j] - ref) / mag;
			mx = d > mx ? d : mx;
		}
	printf("portable vs double: max |diff| / sum |a b| = %.3g (tolerance %g)\n", mx,
	       K * 6e-8);
	cr_expect(mx <= K * 6e-8);
	free(A);
	free(B);
	free(C);
}

Test(gemm, portable_rows_do_not_depend_on_batch_or_threads)
{
	const int R = 203, N = 150, K = 300;
	float *A = rand_buf((size_t)R * K, 1.0f), *W = rand_buf((size_t)N * K, 0.3f);
	float *C1 = malloc(sizeof(float) * (size_t)R * N), *C2 = malloc(sizeof(float) * (size_t)R * N);
	float *one = malloc(sizeof(float) * (size_t)N);
	int u;

	cr_assert(C1 && C2 && one);
	cr_assert_eq(mb_k_gemm_force(MB_GEMM_PORTABLE, mb_gemm_isa_best()), 0);
	u = mb_k_gemm_probe_group(K, N, 1);
	cr_expect_eq(u, 1, "the portable backend needs no row groups (got U = %d)", u);
	omp_set_num_threads(1);
	mb_k_gemm(C1, N, A, K, W, K, 1, R, N, K, 1.0f, 1);
	omp_set_num_threads(2);
	mb_k_gemm(C2, N, A, K, W, K, 1, R, N, K, 1.0f, 1);
	cr_expect(memcmp(C1, C2, sizeof(float) * (size_t)R * N) == 0, "1 vs 2 threads differ");
	for (int r = 0; r < R; r += 17) {
		mb_k_gemm(one, N, A + (size_t)r * K, K, W, K, 1, 1, N, K, 1.0f, 1);
		cr_expect(memcmp(one, C1 + (size_t)r * N, sizeof(float) * (size_t)N) == 0,
			  "row %d alone differs from the row in a %d-row call", r, R);
	}
	free(A);
	free(W);
	free(C1);
	free(C2);
	free(one);
}

/* Every library backend the build has agrees with the portable kernels to
 * rounding. Also what the sanitizer pass keeps of the other backends: ci/test
 * runs the engine tests' per-backend repeats (label `backend`) in the release
 * pass only, so these calls are where OpenBLAS and oneDNN run under ASan. */
Test(gemm, library_backends_match_the_portable_one_to_rounding)
{
	const int M = 64, N = 96, K = 512;
	const mb_gemm_backend libs[] = {MB_GEMM_OPENBLAS, MB_GEMM_ONEDNN};
	float *A = rand_buf((size_t)M * K, 1.0f), *B = rand_buf((size_t)K * N, 0.3f);
	float *P = malloc(sizeof(float) * (size_t)M * N), *O = malloc(sizeof(float) * (size_t)M * N);

	cr_assert(P && O);
	cr_assert_eq(mb_k_gemm_force(MB_GEMM_PORTABLE, mb_gemm_isa_best()), 0);
	mb_k_sgemm(0, 0, M, N, K, 1.0f, A, K, B, N, P, N);
	for (size_t b = 0; b < sizeof(libs) / sizeof(libs[0]); b++) {
		double mx = 0;

		if (libs[b] == MB_GEMM_ONEDNN && !mb_gemm_have_onednn())
			continue;
		cr_assert_eq(mb_k_gemm_force(libs[b], mb_gemm_isa_best()), 0);
		mb_k_sgemm(0, 0, M, N, K, 1.0f, A, K, B, N, O, N);
		for (size_t i = 0; i < (size_t)M * N; i++) {
			double d = fabs((double)P[i] - O[i]);
			mx = d > mx ? d : mx;
		}
		printf("%s vs portable: max |diff| %.3g\n", mb_gemm_backend_name(libs[b]), mx);
		cr_expect(mx < 1e-4, "%s", mb_gemm_backend_name(libs[b]));
	}
	cr_assert_eq(mb_k_gemm_force(MB_GEMM_PORTABLE, mb_gemm_isa_best()), 0);
	free(A);
	free(B);
	free(P);
	free(O);
}

Test(gemm, select_parses_names_and_prov_diff_explains_a_difference)
{
	mb_error err;
	char buf[512];

	cr_expect_eq(mb_gemm_select("nonsense", &err), MB_EINVALID);
	cr_expect_eq(mb_gemm_select("openblas", &err), 0);
	cr_expect_eq(mb_gemm_current(), MB_GEMM_OPENBLAS);
	cr_expect_eq(mb_gemm_select("portable", &err), 0);
	cr_expect_eq(mb_gemm_current(), MB_GEMM_PORTABLE);
	if (!mb_gemm_have_onednn())
		cr_expect_eq(mb_gemm_select("onednn", &err), MB_ENOTFOUND);
	mb_gemm_describe(buf, sizeof(buf));
	cr_expect(strncmp(buf, "gemm=portable isa=", 18) == 0, "%s", buf);

	cr_expect_eq(mb_gemm_prov_diff(buf, sizeof(buf), "OpenBLAS x; gemm=portable isa=avx512",
				       "Haswell", "OpenBLAS x; gemm=portable isa=avx512", "Haswell"),
		     0);
	cr_expect_eq(mb_gemm_prov_diff(buf, sizeof(buf), "OpenBLAS x; gemm=portable isa=avx512",
				       "Haswell", "OpenBLAS x; gemm=portable isa=avx2", "SkylakeX"),
		     1);
	cr_expect(strstr(buf, "do not depend") != NULL, "%s", buf);
	cr_expect_eq(mb_gemm_prov_diff(buf, sizeof(buf), "OpenBLAS x", "Haswell",
				       "OpenBLAS x; gemm=portable isa=avx512", "Haswell"),
		     1);
	cr_expect(strstr(buf, "backend differs: baseline openblas") != NULL, "%s", buf);
	cr_expect_eq(mb_gemm_prov_diff(buf, sizeof(buf),
				       "OpenBLAS x; gemm=openblas core=Haswell isa=avx512", "Haswell",
				       "OpenBLAS x; gemm=openblas core=SkylakeX isa=avx512",
				       "SkylakeX"),
		     1);
	cr_expect(strstr(buf, "kernels differ") != NULL, "%s", buf);
	/* the attention's kernels: a record without "att" ran the block GEMMs */
	cr_expect_eq(mb_gemm_prov_diff(buf, sizeof(buf),
				       "OpenBLAS x; gemm=openblas core=Haswell isa=avx512", "Haswell",
				       "OpenBLAS x; gemm=openblas core=Haswell isa=avx512 att=tiles",
				       "Haswell"),
		     1);
	cr_expect(strstr(buf, "att blocks, this run openblas core Haswell isa avx512 att tiles"),
		  "%s", buf);
	cr_expect_eq(mb_gemm_prov_diff(buf, sizeof(buf), "OpenBLAS x; gemm=onednn isa=avx512 att=tiles",
				       "Haswell", "OpenBLAS x; gemm=onednn isa=avx512 att=tiles",
				       "Haswell"),
		     0);
	cr_expect_eq(mb_gemm_prov_diff(buf, sizeof(buf),
				       "OpenBLAS x; gemm=openblas core=Haswell isa=avx512 att=blocks",
				       "Haswell", "OpenBLAS x; gemm=openblas core=Haswell isa=avx512",
				       "Haswell"),
		     0);
	/* the description names both, and MB_ISA's choice, for openblas */
	cr_assert_eq(mb_k_gemm_force(MB_GEMM_OPENBLAS, mb_gemm_isa_best()), 0);
	mb_gemm_describe(buf, sizeof(buf));
	cr_expect(strstr(buf, mb_k_att_tiles_on() ? " att=tiles" : " att=blocks"), "%s", buf);
	cr_assert_eq(mb_k_gemm_force(MB_GEMM_OPENBLAS, MB_GEMM_ISA_SCALAR), 0);
	mb_gemm_describe(buf, sizeof(buf));
	cr_expect(strstr(buf, " isa=scalar att=blocks"), "%s", buf);
	cr_assert_eq(mb_k_gemm_force(MB_GEMM_PORTABLE, mb_gemm_isa_best()), 0);
}
