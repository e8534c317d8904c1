/*
 * gemm.c: the GEMM backend layer (gemm.h) and the portable fixed-order
 * kernels.
 *
 * Shape letters: M rows of C, N columns of C, K inner dimension; MR x NR the
 * register tile, MC x KC a packed block of A, KC x NC a packed block of B.
 *
 * The portable backend's one rule: C[i][j] = alpha * f(i, j) where f is
 *   acc = +0; for k = 0..K-1: acc = fma(A[i][k], B[k][j], acc)
 * with every fma a single IEEE rounding. Packing, tiling, k-blocking (the
 * running sum is stored to C as a float between KC blocks and loaded again,
 * which is exact) and the vector width change only which elements are
 * computed together, never the operations on one element. So AVX-512,
 * AVX2+FMA and scalar fmaf (and NEON's vfmaq, should we build there) give the
 * same bits, and a row's result depends on nothing but its own row of A and
 * B: no row groups (U = 1), no batch or thread-count effects.
 */
#include <mechbench/gemm.h>

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

#include "kernels_int.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define MB_X86 1
#include <immintrin.h>
#else
#define MB_X86 0
#endif

#ifdef MB_HAVE_DNNL
#include <dnnl.h>
#endif
#include <time.h>

static void openblas_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A,
			   int lda, const float *B, int ldb, float *C, int ldc);
#ifdef MB_HAVE_DNNL
static void onednn_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A,
			 int lda, const float *B, int ldb, float *C, int ldc);
static const char *onednn_isa(void);
#endif

/* Backend selection ---------------------------------------------------------- */

static atomic_int g_state = 0; /* 0 unset, 1 set */
static mb_gemm_backend g_backend = MB_GEMM_PORTABLE;
static mb_gemm_isa g_isa = MB_GEMM_ISA_SCALAR;

mb_gemm_isa mb_gemm_isa_best(void)
{
#if MB_X86
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f"))
		return MB_GEMM_ISA_AVX512;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return MB_GEMM_ISA_AVX2;
#endif
	return MB_GEMM_ISA_SCALAR;
}

const char *mb_gemm_backend_name(mb_gemm_backend b)
{
	switch (b) {
	case MB_GEMM_PORTABLE: return "portable";
	case MB_GEMM_OPENBLAS: return "openblas";
	case MB_GEMM_ONEDNN: return "onednn";
	}
	return "unknown";
}

const char *mb_gemm_isa_name(mb_gemm_isa isa)
{
	switch (isa) {
	case MB_GEMM_ISA_SCALAR: return "scalar";
	case MB_GEMM_ISA_AVX2: return "avx2";
	case MB_GEMM_ISA_AVX512: return "avx512";
	}
	return "unknown";
}

int mb_gemm_have_onednn(void)
{
#ifdef MB_HAVE_DNNL
	return 1;
#else
	return 0;
#endif
}

#ifdef MB_HAVE_DNNL
/* Thread CPU seconds: the calls below run on the calling thread, so this
 * is their cost, whatever else shares the cores. (Only auto's probe uses it,
 * and only a build with oneDNN probes.) */
static double thread_cpu(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
#endif

/* auto: the faster of the fast backends, measured once here on two GPT-2-sized
 * blocks (96 x 768 @ 768 x 768 and @ 768 x 2304, single-threaded as the
 * engine calls them, best of 4 after a warm-up, in thread CPU time so that
 * other jobs on the cores do not decide it); openblas when the build has no
 * oneDNN. oneDNN must win by more than AUTO_MARGIN: where the two are close
 * (a CPU without AVX-512, where oneDNN runs AVX2 kernels at 0.87-1.0x of
 * OpenBLAS's Haswell ones) a noisy draw could otherwise pick the slower one,
 * and auto must never be slower than openblas. */
#define AUTO_MARGIN 0.90
static mb_gemm_backend auto_pick(void)
{
	static mb_gemm_backend picked = MB_GEMM_OPENBLAS;
#ifdef MB_HAVE_DNNL
	static int done = 0;
	const int M = 96, K = 768, Ns[2] = {768, 2304};
	float *A, *B, *C;
	double total[2] = {0, 0};

	if (done)
		return picked;
	done = 1;
	A = calloc((size_t)M * K, sizeof(float));
	B = calloc((size_t)K * Ns[1], sizeof(float));
	C = calloc((size_t)M * Ns[1], sizeof(float));
	if (A && B && C) {
		for (size_t i = 0; i < (size_t)K * Ns[1]; i++)
			B[i] = (float)(i % 7) * 0.01f;
		for (size_t i = 0; i < (size_t)M * K; i++)
			A[i] = (float)(i % 5) * 0.1f;
		for (int n = 0; n < 2; n++) {
			double best[2] = {1e30, 1e30};

			for (int r = 0; r < 5; r++)
				for (int b = 0; b < 2; b++) {
					double t0 = thread_cpu(), s;

					(b ? onednn_sgemm : openblas_sgemm)(0, 0, M, Ns[n], K, 1.0f, A, K,
									    B, Ns[n], C, Ns[n]);
					s = thread_cpu() - t0;
					if (r > 0 && s < best[b])
						best[b] = s;
				}
			total[0] += best[0];
			total[1] += best[1];
		}
		picked = total[1] < AUTO_MARGIN * total[0] ? MB_GEMM_ONEDNN : MB_GEMM_OPENBLAS;
	}
	free(A);
	free(B);
	free(C);
#endif
	return picked;
}

static int parse_backend(const char *name, mb_gemm_backend *out)
{
	if (strcmp(name, "portable") == 0)
		*out = MB_GEMM_PORTABLE;
	else if (strcmp(name, "openblas") == 0)
		*out = MB_GEMM_OPENBLAS;
	else if (strcmp(name, "onednn") == 0)
		*out = MB_GEMM_ONEDNN;
	else if (strcmp(name, "auto") == 0)
		*out = auto_pick();
	else
		return MB_EINVALID;
	return 0;
}

static void init_isa(void)
{
	const char *s = getenv("MB_ISA");
	mb_gemm_isa best = mb_gemm_isa_best(), want = best;

	if (s && *s) {
		if (strcmp(s, "scalar") == 0)
			want = MB_GEMM_ISA_SCALAR;
		else if (strcmp(s, "avx2") == 0)
			want = MB_GEMM_ISA_AVX2;
		else if (strcmp(s, "avx512") == 0)
			want = MB_GEMM_ISA_AVX512;
		else {
			fprintf(stderr, "mechbench: MB_ISA=%s: expected scalar, avx2 or avx512\n", s);
			exit(2);
		}
		if (want > best) {
			fprintf(stderr, "mechbench: MB_ISA=%s: this CPU offers at most %s\n", s,
				mb_gemm_isa_name(best));
			exit(2);
		}
	}
	g_isa = want;
}

static void init_once(void)
{
	const char *s;

	if (atomic_load(&g_state))
		return;
#pragma omp critical(mb_gemm_init)
	if (!atomic_load(&g_state)) {
		init_isa();
		s = getenv("MB_GEMM");
		if (s && *s) {
			if (parse_backend(s, &g_backend) < 0) {
				fprintf(stderr, "mechbench: MB_GEMM=%s: expected auto, portable, "
						"openblas or onednn\n", s);
				exit(2);
			}
			if (g_backend == MB_GEMM_ONEDNN && !mb_gemm_have_onednn()) {
				fprintf(stderr, "mechbench: MB_GEMM=onednn: this build has no "
						"oneDNN (libdnnl-dev was not found)\n");
				exit(2);
			}
		}
		atomic_store(&g_state, 1);
	}
}

int mb_gemm_select(const char *name, mb_error *err)
{
	mb_gemm_backend b;

	init_once();
	if (parse_backend(name, &b) < 0)
		return mb_error_set(err, MB_EINVALID,
				    "--gemm %s: expected auto, portable, openblas or onednn", name);
	if (b == MB_GEMM_ONEDNN && !mb_gemm_have_onednn())
		return mb_error_set(err, MB_ENOTFOUND,
				    "--gemm onednn: this build has no oneDNN (libdnnl-dev was not "
				    "found at configure time)");
	g_backend = b;
	return 0;
}

int mb_k_gemm_force(mb_gemm_backend b, mb_gemm_isa isa)
{
	init_once();
	if (isa > mb_gemm_isa_best() || (b == MB_GEMM_ONEDNN && !mb_gemm_have_onednn()))
		return -1;
	g_backend = b;
	g_isa = isa;
	return 0;
}

mb_gemm_backend mb_gemm_current(void)
{
	init_once();
	return g_backend;
}

mb_gemm_isa mb_gemm_isa_current(void)
{
	init_once();
	return g_isa;
}

void mb_gemm_describe(char *buf, size_t cap)
{
	mb_gemm_backend b = mb_gemm_current();
	/* openblas and onednn: the engine's kernels' ISA (MB_ISA) and whether
	 * attention runs in its AVX-512 tiles or the library's block GEMMs
	 * (kernels_int.h); both change those backends' bits */
	const char *att = mb_k_att_tiles_on() ? "tiles" : "blocks";

	switch (b) {
	case MB_GEMM_PORTABLE:
		snprintf(buf, cap, "gemm=portable isa=%s", mb_gemm_isa_name(mb_gemm_isa_current()));
		break;
	case MB_GEMM_OPENBLAS:
		snprintf(buf, cap, "gemm=openblas core=%s isa=%s att=%s", openblas_get_corename(),
			 mb_gemm_isa_name(mb_gemm_isa_current()), att);
		break;
	case MB_GEMM_ONEDNN:
#ifdef MB_HAVE_DNNL
		snprintf(buf, cap, "gemm=onednn isa=%s att=%s", onednn_isa(), att);
#endif
		break;
	}
}

/* The value of "key=" in a provenance string, up to the next space or ';'. */
static void prov_field(char *out, size_t cap, const char *s, const char *key)
{
	const char *p = s;
	size_t kl = strlen(key), n;

	out[0] = '\0';
	while ((p = strstr(p, key)) != NULL) {
		if ((p == s || p[-1] == ' ' || p[-1] == ';') && p[kl] == '=') {
			p += kl + 1;
			n = strcspn(p, " ;");
			snprintf(out, cap, "%.*s", (int)n, p);
			return;
		}
		p += kl;
	}
}

int mb_gemm_prov_diff(char *buf, size_t cap, const char *base_config, const char *base_core,
		      const char *cand_config, const char *cand_core)
{
	char bg[32], cg[32], bi[32], ci[32], ba[32], ca[32];
	int portable;

	buf[0] = '\0';
	prov_field(bg, sizeof(bg), base_config, "gemm");
	prov_field(cg, sizeof(cg), cand_config, "gemm");
	prov_field(bi, sizeof(bi), base_config, "isa");
	prov_field(ci, sizeof(ci), cand_config, "isa");
	/* "att" is absent from records made before the attention tiles: blocks */
	prov_field(ba, sizeof(ba), base_config, "att");
	prov_field(ca, sizeof(ca), cand_config, "att");
	if (!ba[0])
		snprintf(ba, sizeof(ba), "blocks");
	if (!ca[0])
		snprintf(ca, sizeof(ca), "blocks");
	if (!bg[0])
		snprintf(bg, sizeof(bg), "openblas"); /* recorded before the backend layer */
	if (!cg[0])
		snprintf(cg, sizeof(cg), "openblas");
	if (!bi[0])
		snprintf(bi, sizeof(bi), "?");
	if (!ci[0])
		snprintf(ci, sizeof(ci), "?");
	portable = strcmp(bg, "portable") == 0 && strcmp(cg, "portable") == 0;
	if (strcmp(bg, cg) != 0) {
		snprintf(buf, cap,
			 "GEMM backend differs: baseline %s (core %s, isa %s), this run %s (core "
			 "%s, isa %s): results may differ in the last bits, so a PASS that is "
			 "not IDENTICAL is expected",
			 bg, base_core, bi, cg, cand_core, ci);
		return 1;
	}
	if (strcmp(base_core, cand_core) == 0 && strcmp(bi, ci) == 0 &&
	    (portable || strcmp(ba, ca) == 0))
		return 0;
	if (portable)
		snprintf(buf, cap,
			 "BLAS core/ISA differ (baseline core %s, isa %s; this run core %s, isa "
			 "%s); both ran the portable GEMM, whose bits do not depend on them",
			 base_core, bi, cand_core, ci);
	else
		snprintf(buf, cap,
			 "GEMM kernels differ: baseline %s core %s isa %s att %s, this run %s core "
			 "%s isa %s att %s: %s rounds by kernel, so a PASS that is not IDENTICAL "
			 "is expected (use --gemm portable for bitwise results across CPUs)",
			 bg, base_core, bi, ba, cg, cand_core, ci, ca, cg);
	return 1;
}

/* Portable kernels ------------------------------------------------------------ */

#define KC 256
#define MC 144 /* a multiple of every MR: 12, 6, 4 */
#define NC 384 /* a multiple of every NR: 32, 16 */
#define MR_MAX 12
#define NR_MAX 32

typedef void (*ukr_fn)(int kc, const float *a, const float *b, float *c, int ldc, int first,
		       int last, float alpha);

/* Scalar: MR 4, NR 16, fmaf (correctly rounded by definition, so equal to
 * the hardware FMA of the vector kernels). */
static void ukr_scalar(int kc, const float *a, const float *b, float *c, int ldc, int first,
		       int last, float alpha)
{
	float acc[4][16];

	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 16; j++)
			acc[i][j] = first ? 0.0f : c[(size_t)i * ldc + j];
	for (int k = 0; k < kc; k++, a += 4, b += 16)
		for (int i = 0; i < 4; i++)
			for (int j = 0; j < 16; j++)
				acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 16; j++)
			c[(size_t)i * ldc + j] = last && alpha != 1.0f ? alpha * acc[i][j] : acc[i][j];
}

#if MB_X86
__attribute__((target("avx2,fma"))) static void ukr_avx2(int kc, const float *a, const float *b,
							float *c, int ldc, int first, int last,
							float alpha)
{
	__m256 acc[6][2];

#pragma GCC unroll 6
	for (int i = 0; i < 6; i++) {
		acc[i][0] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(c + (size_t)i * ldc);
		acc[i][1] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(c + (size_t)i * ldc + 8);
	}
	for (int k = 0; k < kc; k++, a += 6, b += 16) {
		__m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);

#pragma GCC unroll 6
		for (int i = 0; i < 6; i++) {
			__m256 ai = _mm256_broadcast_ss(a + i);

			acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
			acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
		}
	}
	if (last && alpha != 1.0f) {
		__m256 al = _mm256_set1_ps(alpha);

#pragma GCC unroll 6
		for (int i = 0; i < 6; i++) {
			acc[i][0] = _mm256_mul_ps(al, acc[i][0]);
			acc[i][1] = _mm256_mul_ps(al, acc[i][1]);
		}
	}
#pragma GCC unroll 6
	for (int i = 0; i < 6; i++) {
		_mm256_storeu_ps(c + (size_t)i * ldc, acc[i][0]);
		_mm256_storeu_ps(c + (size_t)i * ldc + 8, acc[i][1]);
	}
}

__attribute__((target("avx512f"))) static void ukr_avx512(int kc, const float *a, const float *b,
							 float *c, int ldc, int first, int last,
							 float alpha)
{
	__m512 acc[12][2];

#pragma GCC unroll 12
	for (int i = 0; i < 12; i++) {
		acc[i][0] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(c + (size_t)i * ldc);
		acc[i][1] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(c + (size_t)i * ldc + 16);
	}
	for (int k = 0; k < kc; k++, a += 12, b += 32) {
		__m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);

#pragma GCC unroll 12
		for (int i = 0; i < 12; i++) {
			__m512 ai = _mm512_set1_ps(a[i]);

			acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
			acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
		}
	}
	if (last && alpha != 1.0f) {
		__m512 al = _mm512_set1_ps(alpha);

#pragma GCC unroll 12
		for (int i = 0; i < 12; i++) {
			acc[i][0] = _mm512_mul_ps(al, acc[i][0]);
			acc[i][1] = _mm512_mul_ps(al, acc[i][1]);
		}
	}
#pragma GCC unroll 12
	for (int i = 0; i < 12; i++) {
		_mm512_storeu_ps(c + (size_t)i * ldc, acc[i][0]);
		_mm512_storeu_ps(c + (size_t)i * ldc + 16, acc[i][1]);
	}
}
#endif

/* Packs op(A)[i0..i0+mc)[k0..k0+kc) into MR-row panels, k-major inside a
 * panel (a[k * MR + i]), zero rows past mc. */
static void pack_a(float *dst, const float *A, int lda, int ta, int i0, int mc, int k0, int kc,
		   int mr)
{
	for (int p = 0; p < mc; p += mr) {
		float *d = dst + (size_t)p * kc;
		int rows = mc - p < mr ? mc - p : mr;

		if (!ta) {
			for (int i = 0; i < rows; i++) {
				const float *src = A + (size_t)(i0 + p + i) * lda + k0;

				for (int k = 0; k < kc; k++)
					d[(size_t)k * mr + i] = src[k];
			}
		} else {
			for (int k = 0; k < kc; k++) {
				const float *src = A + (size_t)(k0 + k) * lda + i0 + p;

				for (int i = 0; i < rows; i++)
					d[(size_t)k * mr + i] = src[i];
			}
		}
		for (int i = rows; i < mr; i++)
			for (int k = 0; k < kc; k++)
				d[(size_t)k * mr + i] = 0.0f;
	}
}

/* Packs op(B)[k0..k0+kc)[j0..j0+nc) into NR-column panels (b[k * NR + j]),
 * zero columns past nc. */
static void pack_b(float *dst, const float *B, int ldb, int tb, int k0, int kc, int j0, int nc,
		   int nr)
{
	for (int q = 0; q < nc; q += nr) {
		float *d = dst + (size_t)q * kc;
		int cols = nc - q < nr ? nc - q : nr;

		if (!tb) {
			for (int k = 0; k < kc; k++) {
				const float *src = B + (size_t)(k0 + k) * ldb + j0 + q;
				float *dk = d + (size_t)k * nr;

				for (int j = 0; j < cols; j++)
					dk[j] = src[j];
				for (int j = cols; j < nr; j++)
					dk[j] = 0.0f;
			}
		} else {
			for (int j = 0; j < cols; j++) {
				const float *src = B + (size_t)(j0 + q + j) * ldb + k0;

				for (int k = 0; k < kc; k++)
					d[(size_t)k * nr + j] = src[k];
			}
			for (int k = 0; k < kc; k++)
				for (int j = cols; j < nr; j++)
					d[(size_t)k * nr + j] = 0.0f;
		}
	}
}

static _Thread_local _Alignas(64) float g_pa[MC * KC];
static _Thread_local _Alignas(64) float g_pb[KC * NC];

static void portable_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A,
			   int lda, const float *B, int ldb, float *C, int ldc)
{
	_Alignas(64) float tile[MR_MAX * NR_MAX];
	ukr_fn ukr = ukr_scalar;
	int mr = 4, nr = 16;

#if MB_X86
	switch (mb_gemm_isa_current()) {
	case MB_GEMM_ISA_AVX512:
		ukr = ukr_avx512, mr = 12, nr = 32;
		break;
	case MB_GEMM_ISA_AVX2:
		ukr = ukr_avx2, mr = 6, nr = 16;
		break;
	case MB_GEMM_ISA_SCALAR:
		break;
	}
#endif
	for (int jc = 0; jc < N; jc += NC) {
		int nc = N - jc < NC ? N - jc : NC;

		for (int pc = 0; pc < K; pc += KC) {
			int kc = K - pc < KC ? K - pc : KC;
			int first = pc == 0, last = pc + kc == K;

			pack_b(g_pb, B, ldb, tb, pc, kc, jc, nc, nr);
			for (int ic = 0; ic < M; ic += MC) {
				int mc = M - ic < MC ? M - ic : MC;

				pack_a(g_pa, A, lda, ta, ic, mc, pc, kc, mr);
				for (int jr = 0; jr < nc; jr += nr) {
					int nrr = nc - jr < nr ? nc - jr : nr;
					const float *b = g_pb + (size_t)jr * kc;

					for (int ir = 0; ir < mc; ir += mr) {
						int mrr = mc - ir < mr ? mc - ir : mr;
						const float *a = g_pa + (size_t)ir * kc;
						float *c = C + (size_t)(ic + ir) * ldc + jc + jr;

						if (mrr == mr && nrr == nr) {
							ukr(kc, a, b, c, ldc, first, last, alpha);
							continue;
						}
						for (int i = 0; i < mrr; i++)
							for (int j = 0; j < nrr; j++)
								tile[i * nr + j] =
									first ? 0.0f : c[(size_t)i * ldc + j];
						ukr(kc, a, b, tile, nr, first, last, alpha);
						for (int i = 0; i < mrr; i++)
							memcpy(c + (size_t)i * ldc, tile + i * nr,
							       sizeof(float) * (size_t)nrr);
					}
				}
			}
		}
	}
}

/* The layer ------------------------------------------------------------------- */

static void openblas_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A,
			   int lda, const float *B, int ldb, float *C, int ldc)
{
	if (omp_in_parallel()) {
		cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
			    tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, 0.0f, C,
			    ldc);
		return;
	}
	/* Inside a region, and only there, omp_set_num_threads(1) makes OpenBLAS's
	 * OpenMP build run on the calling thread. */
#pragma omp parallel num_threads(1)
	{
		omp_set_num_threads(1);
		cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
			    tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, 0.0f, C,
			    ldc);
	}
}

#ifdef MB_HAVE_DNNL
static void onednn_call(int ta, int tb, int M, int N, int K, float alpha, const float *A,
			int lda, const float *B, int ldb, float *C, int ldc)
{
	/* dnnl_sgemm is row-major like cblas. oneDNN 2.6.3 measured (ARCHITECTURE.md):
	 * a row block of >= 2 rows gives the same bits alone as inside a larger call,
	 * at any offset; a 1-row call takes a GEMV path whose bits differ. So a lone
	 * row is computed as a 2-row call (the row twice) and one copy kept. */
	if (M == 1) {
		float *a2 = malloc(sizeof(float) * 2 * (size_t)K);
		float *c2 = malloc(sizeof(float) * 2 * (size_t)N);

		if (a2 && c2) {
			for (int k = 0; k < K; k++)
				a2[k] = a2[K + k] = ta ? A[(size_t)k * lda] : A[k];
			dnnl_sgemm('N', tb ? 'T' : 'N', 2, N, K, alpha, a2, K, B, ldb, 0.0f, c2, N);
			memcpy(C, c2, sizeof(float) * (size_t)N);
			free(a2);
			free(c2);
			return;
		}
		free(a2);
		free(c2);
	}
	dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, 0.0f, C, ldc);
}

/* Single-threaded, like the openblas backend: oneDNN's OpenMP runtime runs a
 * call nested in our region on the calling thread. */
static void onednn_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A,
			 int lda, const float *B, int ldb, float *C, int ldc)
{
	if (omp_in_parallel()) {
		onednn_call(ta, tb, M, N, K, alpha, A, lda, B, ldb, C, ldc);
		return;
	}
#pragma omp parallel num_threads(1)
	{
		omp_set_num_threads(1);
		onednn_call(ta, tb, M, N, K, alpha, A, lda, B, ldb, C, ldc);
	}
}

/*
 * oneDNN's matmul primitive for the attention's block GEMMs (mb_k_dense_matmul).
 * On dense operands (row stride = width) oneDNN 2.6.3 picks its brgemm kernel,
 * which runs QK^T (K = d_head) and PV (N = d_head) at 90-100% of its dense rate
 * where dnnl_sgemm on the engine's strided layout reaches 60-80% (perf README).
 * A primitive is JIT-compiled per shape, so each thread keeps its own: one
 * created inside a parallel region sees one thread (omp_set_num_threads(1) in
 * the caller's region) and runs on the calling thread, so its bits depend only
 * on the shape, never on the thread or the thread count. Kept for the process
 * (a few hundred shapes at most: block rows x block ends); freed with the
 * thread's cache when it fills.
 */
#define DENSE_CACHE_MAX 512

typedef struct dense_prim {
	int trans_b, M, N, K;
	dnnl_primitive_t prim;
	dnnl_memory_t a, b, c;
} dense_prim;

typedef struct dense_cache {
	dnnl_engine_t eng;
	dnnl_stream_t stream;
	dense_prim *e;
	int n;
} dense_cache;

static _Thread_local dense_cache t_dense;

static void dense_prim_free(dense_prim *d)
{
	dnnl_memory_destroy(d->a);
	dnnl_memory_destroy(d->b);
	dnnl_memory_destroy(d->c);
	dnnl_primitive_destroy(d->prim);
}

/* The primitive for one shape, made on first use; NULL when oneDNN refuses. */
static dense_prim *dense_get(int trans_b, int M, int N, int K)
{
	dense_cache *t = &t_dense;
	dnnl_memory_desc_t ma, mb, mc;
	dnnl_matmul_desc_t md;
	dnnl_primitive_desc_t pd = NULL;
	dense_prim d = {trans_b, M, N, K, NULL, NULL, NULL, NULL};
	dnnl_dims_t da = {M, K}, db = {K, N}, dc = {M, N};

	for (int i = 0; i < t->n; i++)
		if (t->e[i].M == M && t->e[i].N == N && t->e[i].K == K &&
		    t->e[i].trans_b == trans_b)
			return &t->e[i];
	if (!t->eng) {
		if (dnnl_engine_create(&t->eng, dnnl_cpu, 0) != dnnl_success)
			return NULL;
		if (dnnl_stream_create(&t->stream, t->eng, dnnl_stream_default_flags) !=
		    dnnl_success) {
			dnnl_engine_destroy(t->eng);
			t->eng = NULL;
			return NULL;
		}
	}
	if (!t->e) {
		t->e = malloc(sizeof(*t->e) * DENSE_CACHE_MAX);
		if (!t->e)
			return NULL;
	}
	if (t->n == DENSE_CACHE_MAX) {
		for (int i = 0; i < t->n; i++)
			dense_prim_free(&t->e[i]);
		t->n = 0;
	}
	/* B^T: B is (N, K) row-major, so op(B) (K, N) has strides (1, K): tag ba */
	if (dnnl_memory_desc_init_by_tag(&ma, 2, da, dnnl_f32, dnnl_ab) != dnnl_success ||
	    dnnl_memory_desc_init_by_tag(&mb, 2, db, dnnl_f32, trans_b ? dnnl_ba : dnnl_ab) !=
		    dnnl_success ||
	    dnnl_memory_desc_init_by_tag(&mc, 2, dc, dnnl_f32, dnnl_ab) != dnnl_success ||
	    dnnl_matmul_desc_init(&md, &ma, &mb, NULL, &mc) != dnnl_success ||
	    dnnl_primitive_desc_create(&pd, &md, NULL, t->eng, NULL) != dnnl_success)
		return NULL;
	if (dnnl_primitive_create(&d.prim, pd) != dnnl_success)
		d.prim = NULL;
	dnnl_primitive_desc_destroy(pd);
	if (!d.prim || dnnl_memory_create(&d.a, &ma, t->eng, DNNL_MEMORY_NONE) != dnnl_success ||
	    dnnl_memory_create(&d.b, &mb, t->eng, DNNL_MEMORY_NONE) != dnnl_success ||
	    dnnl_memory_create(&d.c, &mc, t->eng, DNNL_MEMORY_NONE) != dnnl_success) {
		dense_prim_free(&d);
		return NULL;
	}
	t->e[t->n] = d;
	return &t->e[t->n++];
}

static void dense_run(int trans_b, int M, int N, int K, const float *A, const float *B, float *C)
{
	dense_prim *d = dense_get(trans_b, M, N, K);

	if (d && dnnl_memory_set_data_handle(d->a, (void *)A) == dnnl_success &&
	    dnnl_memory_set_data_handle(d->b, (void *)B) == dnnl_success &&
	    dnnl_memory_set_data_handle(d->c, C) == dnnl_success) {
		dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, d->a}, {DNNL_ARG_WEIGHTS, d->b},
					   {DNNL_ARG_DST, d->c}};

		if (dnnl_primitive_execute(d->prim, t_dense.stream, 3, args) == dnnl_success &&
		    dnnl_stream_wait(t_dense.stream) == dnnl_success)
			return;
	}
	/* Only when oneDNN cannot make or run the primitive (out of memory): fail
	 * loudly rather than give other bits for this shape. */
	fprintf(stderr, "mechbench: oneDNN matmul primitive (%d x %d x %d) failed\n", M, N, K);
	abort();
}
#endif

int mb_k_dense_matmul(int trans_b, int M, int N, int K, const float *A, const float *B, float *C)
{
#ifdef MB_HAVE_DNNL
	if (mb_gemm_current() != MB_GEMM_ONEDNN)
		return 0;
	if (M <= 0 || N <= 0)
		return 1;
	if (K <= 0) {
		memset(C, 0, sizeof(float) * (size_t)M * (size_t)N);
		return 1;
	}
	if (omp_in_parallel()) {
		/* a primitive made with more than one thread could split K */
		omp_set_num_threads(1);
		dense_run(trans_b, M, N, K, A, B, C);
		return 1;
	}
#pragma omp parallel num_threads(1)
	{
		omp_set_num_threads(1);
		dense_run(trans_b, M, N, K, A, B, C);
	}
	return 1;
#else
	(void)trans_b;
	(void)M;
	(void)N;
	(void)K;
	(void)A;
	(void)B;
	(void)C;
	return 0;
#endif
}

#ifdef MB_HAVE_DNNL
static const char *onednn_isa(void)
{
	switch (dnnl_get_effective_cpu_isa()) {
	case dnnl_cpu_isa_sse41: return "sse41";
	case dnnl_cpu_isa_avx: return "avx";
	case dnnl_cpu_isa_avx2: return "avx2";
	case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
	case dnnl_cpu_isa_avx512_core: return "avx512_core";
	case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
	case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
	case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
	default: return "other";
	}
}
#endif

void mb_k_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
		int lda, const float *B, int ldb, float *C, int ldc)
{
	if (M <= 0 || N <= 0)
		return;
	if (K <= 0) {
		for (int i = 0; i < M; i++)
			memset(C + (size_t)i * ldc, 0, sizeof(float) * (size_t)N);
		return;
	}
	switch (mb_gemm_current()) {
	case MB_GEMM_PORTABLE:
		portable_sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, C, ldc);
		return;
	case MB_GEMM_OPENBLAS:
		openblas_sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, C, ldc);
		return;
	case MB_GEMM_ONEDNN:
#ifdef MB_HAVE_DNNL
		onednn_sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, C, ldc);
#else
		MB_ASSERT(!"onednn backend selected in a build without oneDNN");
#endif
		return;
	}
}

void mb_gemm_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
		   int lda, const float *B, int ldb, float *C, int ldc)
{
	mb_k_sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, C, ldc);
}
