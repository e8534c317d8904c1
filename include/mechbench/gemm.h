/*
 * gemm.h: the engine's GEMM backends, chosen at run time.
 *
 * Every matrix product in mechbench goes through one layer (the engine's
 * mb_k_gemm and mb_gemm_sgemm below); the backend underneath is one of
 *
 *   portable  our own kernels: every output element is one fused
 *             multiply-add chain over k = 0..K-1 in that order, started
 *             from +0 and scaled by alpha once at the end. Vectorised across
 *             output columns only (AVX-512, AVX2+FMA, or scalar fmaf: the
 *             same bits on each, and on any CPU with IEEE float), so results
 *             are bitwise identical across CPUs, ISAs, thread counts and
 *             batch composition. The default.
 *   openblas  OpenBLAS's sgemm (the OpenMP build), single-threaded per row
 *             chunk: fast, bitwise reproducible on one machine, but its
 *             kernels (and so the last bits) follow the CPU (OPENBLAS_CORETYPE).
 *   onednn    oneDNN's dnnl_sgemm, where the build found libdnnl (issue 15).
 *   auto      the fastest backend measured for this CPU (never portable).
 *
 * The choice is process-wide: the CLI sets it from --gemm (any command) or
 * MB_GEMM before any engine is made; without either the backend is portable.
 * MB_ISA=scalar|avx2|avx512 forces the portable kernels' ISA (for tests:
 * every ISA gives the same bits); an ISA the CPU lacks is an error.
 */
#ifndef MECHBENCH_GEMM_H
#define MECHBENCH_GEMM_H

#include <stddef.h>

#include <mechbench/error.h>

typedef enum mb_gemm_backend {
	MB_GEMM_PORTABLE = 0,
	MB_GEMM_OPENBLAS,
	MB_GEMM_ONEDNN,
} mb_gemm_backend;

typedef enum mb_gemm_isa {
	MB_GEMM_ISA_SCALAR = 0, /* fmaf, one element at a time */
	MB_GEMM_ISA_AVX2,       /* AVX2 + FMA, 16 columns per step */
	MB_GEMM_ISA_AVX512,     /* AVX-512F, 32 columns per step */
} mb_gemm_isa;

/*
 * Selects the backend by name: "portable", "openblas", "onednn" or "auto".
 * Call before making engines (their row group U is probed for the backend
 * of the moment). Returns MB_EINVALID for an unknown name, MB_ENOTFOUND for
 * onednn in a build without it; the backend is then unchanged.
 */
int mb_gemm_select(const char *name, mb_error *err);

/* The backend in use (reads MB_GEMM and MB_ISA on first use). A bad MB_GEMM
 * or MB_ISA value aborts with a message: it is the user's explicit request. */
mb_gemm_backend mb_gemm_current(void);
const char *mb_gemm_backend_name(mb_gemm_backend b);

/* The ISA the portable kernels run here (after MB_ISA), and its name. */
mb_gemm_isa mb_gemm_isa_current(void);
const char *mb_gemm_isa_name(mb_gemm_isa isa);

/* The best ISA this CPU offers to the portable kernels. */
mb_gemm_isa mb_gemm_isa_best(void);

/* 1 when the build has the oneDNN backend. */
int mb_gemm_have_onednn(void);

/*
 * One line naming the backend and what decides its bits, for --version and
 * provenance (inside the BLAS configuration string):
 *   "gemm=portable isa=avx512", "gemm=openblas core=Haswell isa=avx512
 *   att=tiles" or "gemm=onednn isa=avx512_core_bf16 att=tiles"
 * isa: the engine's own kernels' (MB_ISA; oneDNN's own for onednn); att:
 * whether causal attention runs in the engine's AVX-512 tiles or the
 * library's block GEMMs (absent from records made before the tiles, which
 * ran the block GEMMs).
 */
void mb_gemm_describe(char *buf, size_t cap);

/*
 * Compares two provenance BLAS strings (blas_config with the gemm part, and
 * blas_core) and writes one sentence saying how they differ in backend, BLAS
 * core, ISA or attention kernels (not for portable, which has one) and what
 * that means for bitwise identity; returns 1 when they differ, 0 (buf
 * empty) when they agree.
 */
int mb_gemm_prov_diff(char *buf, size_t cap, const char *base_config, const char *base_core,
		      const char *cand_config, const char *cand_core);

/*
 * C (M, N) = alpha * op(A) (M, K) @ op(B) (K, N), row-major, beta = 0:
 * op(A) = A (M, K) with leading dimension lda, or A^T with A (K, M); op(B) =
 * B (K, N), or B^T with B (N, K). Single-threaded, on the calling thread,
 * with the current backend (portable: each element one FMA chain over k in
 * order). For code above the engine; the engine uses mb_k_gemm.
 */
void mb_gemm_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
		   int lda, const float *B, int ldb, float *C, int ldc);

#endif
