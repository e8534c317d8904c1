/*
 * bench_gemm: the GEMM backends side by side in one run, on GPT-2-small's
 * shapes (M = 1024 rows: B = 4, T = 256), through mb_k_gemm exactly as the
 * engine calls it (each backend with its own row group U, all OpenMP threads).
 *
 * usage: bench_gemm [--rows 1024] [--reps 5] [--unembed 1]
 *
 * Prints one line per (shape, backend): best-of-reps wall GF/s and CPU GF/s
 * (CPU seconds of all threads, robust when other jobs share the cores; with
 * OMP_WAIT_POLICY=passive), and each backend's ratio to OpenBLAS. The
 * portable backend is timed at every ISA this CPU has (same bits; see
 * tests/engine/test_gemm.c). Also an FMA-peak probe (independent FMA chains
 * in registers) per ISA, so the ratios can be read against the machine.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include <mechbench/buildinfo.h>
#include <mechbench/gemm.h>

#include "engine/kernels_int.h"

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* 2 * 16 * 12 flops per iteration per chain set: 12 independent FMA chains. */
__attribute__((target("avx512f"))) static float peak512(long iters)
{
	__m512 a[12], b = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(0.001f);

	for (int i = 0; i < 12; i++)
		a[i] = _mm512_set1_ps((float)i);
	for (long it = 0; it < iters; it++)
#pragma GCC unroll 12
		for (int i = 0; i < 12; i++)
			a[i] = _mm512_fmadd_ps(a[i], b, c);
	for (int i = 1; i < 12; i++)
		a[0] = _mm512_add_ps(a[0], a[i]);
	return _mm512_reduce_add_ps(a[0]);
}

__attribute__((target("avx2,fma"))) static float peak256(long iters)
{
	__m256 a[12], b = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(0.001f);
	float out[8];

	for (int i = 0; i < 12; i++)
		a[i] = _mm256_set1_ps((float)i);
	for (long it = 0; it < iters; it++)
#pragma GCC unroll 12
		for (int i = 0; i < 12; i++)
			a[i] = _mm256_fmadd_ps(a[i], b, c);
	for (int i = 1; i < 12; i++)
		a[0] = _mm256_add_ps(a[0], a[i]);
	_mm256_storeu_ps(out, a[0]);
	return out[0];
}

static void peak(mb_gemm_isa isa)
{
	const long iters = 20000000;
	double t0 = now(), c0 = cpu_now(), t, c;
	float sink = 0;
	int nth = omp_get_max_threads();

#pragma omp parallel reduction(+ : sink)
	sink += isa == MB_GEMM_ISA_AVX512 ? peak512(iters) : peak256(iters);
	t = now() - t0;
	c = cpu_now() - c0;
	printf("fma peak %-7s %8.1f GF/s wall (%d threads), %7.1f GF/s per CPU-second%s\n",
	       mb_gemm_isa_name(isa), 2.0 * 12 * (isa == MB_GEMM_ISA_AVX512 ? 16 : 8) * iters * nth / t / 1e9,
	       nth, 2.0 * 12 * (isa == MB_GEMM_ISA_AVX512 ? 16 : 8) * iters * nth / c / 1e9,
	       sink == 12345.0f ? " " : "");
}
#endif

typedef struct shape {
	const char *name;
	int K, N, trans;
} shape;

static void fill(float *x, size_t n, uint64_t s)
{
	for (size_t i = 0; i < n; i++) {
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		x[i] = (float)((int)((s >> 40) % 2001) - 1000) / 1000.0f;
	}
}

int main(int argc, char **argv)
{
	int rows = 1024, reps = 5, unembed = 1;
	shape shapes[] = {
		{"qkv   768x2304", 768, 2304, 0},  {"attn_o 768x768", 768, 768, 0},
		{"fc    768x3072", 768, 3072, 0},  {"proj  3072x768", 3072, 768, 0},
		{"unemb 768x50257^T", 768, 50257, 1},
	};
	int nshapes = (int)(sizeof(shapes) / sizeof(shapes[0]));
	struct {
		mb_gemm_backend b;
		mb_gemm_isa isa;
	} cfgs[6];
	int ncfg = 0;
	double tot_wall[6] = {0}, tot_cpu[6] = {0}, flops_all = 0;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--rows") == 0)
			rows = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--reps") == 0)
			reps = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--unembed") == 0)
			unembed = atoi(argv[i + 1]);
	}
	if (!unembed)
		nshapes--;
	cfgs[ncfg].b = MB_GEMM_OPENBLAS, cfgs[ncfg++].isa = mb_gemm_isa_best();
	if (mb_gemm_have_onednn())
		cfgs[ncfg].b = MB_GEMM_ONEDNN, cfgs[ncfg++].isa = mb_gemm_isa_best();
	for (int isa = mb_gemm_isa_best(); isa >= MB_GEMM_ISA_AVX2; isa--)
		cfgs[ncfg].b = MB_GEMM_PORTABLE, cfgs[ncfg++].isa = (mb_gemm_isa)isa;

	printf("bench_gemm: M = %d rows, %d threads, best of %d; OpenBLAS core %s; cpu ", rows,
	       omp_get_max_threads(), reps, mb_blas_core());
	{
		char cpu[256];
		mb_cpu_model(cpu, sizeof(cpu));
		printf("%s\n", cpu);
	}
#if defined(__x86_64__) && defined(__GNUC__)
	for (int isa = mb_gemm_isa_best(); isa >= MB_GEMM_ISA_AVX2; isa--)
		peak((mb_gemm_isa)isa);
#endif
	for (int s = 0; s < nshapes; s++) {
		const shape *sh = &shapes[s];
		float *A = malloc(sizeof(float) * (size_t)rows * sh->K);
		float *W = malloc(sizeof(float) * (size_t)sh->K * sh->N);
		float *C = malloc(sizeof(float) * (size_t)rows * sh->N);
		double flops = 2.0 * rows * sh->K * (double)sh->N, base_w = 0, base_c = 0;

		if (!A || !W || !C)
			return 1;
		fill(A, (size_t)rows * sh->K, 1);
		fill(W, (size_t)sh->K * sh->N, 2);
		flops_all += flops;
		for (int c = 0; c < ncfg; c++) {
			double bw = 1e30, bc = 1e30;
			int u;

			mb_k_gemm_force(cfgs[c].b, cfgs[c].isa);
			u = mb_k_gemm_probe_group(sh->K, sh->N, sh->trans);
			for (int r = 0; r < reps + 1; r++) {
				double t0 = now(), c0 = cpu_now(), t, cc;

				mb_k_gemm(C, sh->N, A, sh->K, W, sh->trans ? sh->K : sh->N, sh->trans,
					  rows, sh->N, sh->K, 1.0f, u);
				t = now() - t0;
				cc = cpu_now() - c0;
				if (r > 0 && t < bw)
					bw = t;
				if (r > 0 && cc < bc)
					bc = cc;
			}
			if (c == 0)
				base_w = bw, base_c = bc;
			tot_wall[c] += bw;
			tot_cpu[c] += bc;
			printf("%-18s %-8s %-6s U=%-3d %7.1f GF/s wall %7.1f GF/s/CPU-s  x%.2f of "
			       "openblas (wall), x%.2f (CPU)\n",
			       sh->name, mb_gemm_backend_name(cfgs[c].b), mb_gemm_isa_name(cfgs[c].isa),
			       u, flops / bw / 1e9, flops / bc / 1e9, base_w / bw, base_c / bc);
		}
		free(A);
		free(W);
		free(C);
	}
	printf("all shapes:\n");
	for (int c = 0; c < ncfg; c++)
		printf("  %-8s %-6s %7.1f GF/s wall  x%.2f of openblas (wall), x%.2f (CPU)\n",
		       mb_gemm_backend_name(cfgs[c].b), mb_gemm_isa_name(cfgs[c].isa),
		       flops_all / tot_wall[c] / 1e9, tot_wall[0] / tot_wall[c], tot_cpu[0] / tot_cpu[c]);
	return 0;
}
