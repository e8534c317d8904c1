/*
 * bench_neox: GPT-NeoX (Pythia) performance and loading memory; a program,
 * never a test.
 *
 *   bench_neox forward [--batch B] [--seq T] [--reps N]
 *     A Pythia-160M-shaped model with random weights in memory (12 layers,
 *     d_model 768, 12 heads, d_mlp 3072, vocab 50304, rotary_pct 0.25,
 *     parallel residual, untied), B=4 T=256 by default, in one run:
 *     (a) the GEMM bound: every GEMM of one forward alone through mb_k_gemm
 *         (the dense GEMMs over all B*T rows in the engine's row chunks, the
 *         causal attention's QK^T and PV in the engine's query blocks, one
 *         (item, head) per thread), (b) our forward with all logits, and
 *         (c) rotary alone: the rotation of q and k of every layer, as the
 *         forward applies it; prints (a)/(b) and (c)/(b).
 *   bench_neox load DIR
 *     Loads a checkpoint directory and prints the weights' float32 bytes,
 *     the peak resident memory (VmHWM) and VmRSS after loading.
 *
 * Shape letters: B batch, T positions, D d_model, H heads, Dh d_head,
 * M d_mlp, V vocab, L layers.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include <mechbench/engine.h>
#include <mechbench/model.h>

#include "engine/engine_int.h"
#include "engine/kernels_int.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long status_kb(const char *key)
{
	char line[256];
	long v = -1;
	size_t n = strlen(key);
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, n) == 0 && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* (a): every GEMM of one forward (dense ones in row chunks of u). */
static void gemm_forward(const mb_engine_config *c, const mb_engine_weights *w, int B, int T,
			 int u, float *X, float *Y, float *QKV, float *F, float *LG, float *S)
{
	int D = c->d_model, M = c->d_mlp, V = c->n_vocab, H = c->n_head, Dh = c->d_head;
	int R = B * T;

	for (int l = 0; l < c->n_layer; l++) {
		mb_k_gemm(QKV, 3 * D, X, D, w->qkv_w + (size_t)l * D * 3 * D, 3 * D, 0, R, 3 * D, D,
			  1.0f, u);
#pragma omp parallel for schedule(dynamic, 1)
		for (int bh = 0; bh < B * H; bh++) {
			int b = bh / H, h = bh % H;
			const float *q = QKV + (size_t)b * T * 3 * D + (size_t)h * Dh;
			float *s = S + (size_t)omp_get_thread_num() * T * T;

			for (int i0 = 0; i0 < T; i0 += MB_K_ATT_BLOCK) {
				int i1 = i0 + MB_K_ATT_BLOCK < T ? i0 + MB_K_ATT_BLOCK : T;

				mb_k_gemm(s + (size_t)i0 * T, T, q + (size_t)i0 * 3 * D, 3 * D, q + D, 3 * D,
					  1, i1 - i0, i1, Dh, 1.0f / sqrtf((float)Dh), 0);
				mb_k_gemm(Y + ((size_t)b * T + i0) * D + (size_t)h * Dh, D,
					  s + (size_t)i0 * T, T, q + 2 * D, 3 * D, 0, i1 - i0, Dh, i1,
					  1.0f, 0);
			}
		}
		mb_k_gemm(X, D, Y, D, w->o_w + (size_t)l * D * D, D, 0, R, D, D, 1.0f, u);
		mb_k_gemm(F, M, X, D, w->fc_w + (size_t)l * D * M, M, 0, R, M, D, 1.0f, u);
		mb_k_gemm(Y, D, F, M, w->proj_w + (size_t)l * M * D, D, 0, R, D, M, 1.0f, u);
		for (size_t i = 0; i < (size_t)R * D; i++)
			X[i] = Y[i] > 1.0f ? 1.0f : (Y[i] < -1.0f ? -1.0f : Y[i]);
	}
	mb_k_gemm(LG, V, X, D, w->unembed, D, 1, R, V, D, 1.0f, u);
}

static int forward_bench(int B, int T, int reps)
{
	mb_engine_config c = {.n_vocab = 50304, .n_ctx = 2048, .d_model = 768, .n_layer = 12,
			      .n_head = 12, .d_head = 64, .d_mlp = 3072, .act = MB_ACT_GELU,
			      .norm = MB_NORM_LN, .tied = 0, .ln_eps = 1e-5f,
			      .pos = MB_POS_ROTARY, .rotary_dim = 16, .rotary_base = 10000.0f,
			      .parallel = 1};
	mb_engine_weights w;
	mb_engine *e = NULL;
	mb_engine_opts o = {B, T, 0};
	mb_error err = {0};
	size_t np = mb_engine_weights_layout(&w, &c, NULL);
	float *params = malloc(np * sizeof(float)), *cs, *sn;
	int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * T);
	double *tg = calloc((size_t)reps, sizeof(double)), *tf = calloc((size_t)reps, sizeof(double));
	double *tr = calloc((size_t)reps, sizeof(double));
	uint64_t s = 1;
	int D = c.d_model, R = B * T, u;
	float *X, *Y, *QKV, *F, *LG, *S;
	mb_run r;

	mb_engine_weights_layout(&w, &c, params);
	for (size_t i = 0; i < np; i++) {
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		params[i] = ((float)(s >> 40) / 16777216.0f - 0.5f) * 0.04f;
	}
	for (int i = 0; i < c.n_layer * D; i++) {
		w.ln1_w[i] += 1.0f;
		w.ln2_w[i] += 1.0f;
	}
	for (int i = 0; i < D; i++)
		w.lnf_w[i] += 1.0f;
	for (int i = 0; i < B * T; i++)
		tok[i] = (int32_t)((i * 7919 + 13) % c.n_vocab);
	if (mb_engine_init(&e, &c, &w, &o, &err) < 0) {
		fprintf(stderr, "bench_neox: %s\n", err.msg);
		return 1;
	}
	u = mb_engine_row_group(e);
	X = calloc((size_t)R * D, sizeof(float));
	Y = calloc((size_t)R * D, sizeof(float));
	QKV = calloc((size_t)R * 3 * D, sizeof(float));
	F = calloc((size_t)R * c.d_mlp, sizeof(float));
	LG = calloc((size_t)R * c.n_vocab, sizeof(float));
	S = calloc((size_t)omp_get_max_threads() * T * T, sizeof(float));
	for (size_t i = 0; i < (size_t)R * D; i++)
		X[i] = (float)(i % 17) / 17.0f - 0.5f;
	if (mb_rotary_table(&cs, &sn, &c, &err) < 0)
		return 1;
	memset(&r, 0, sizeof(r));
	r.batch = B;
	r.seq = T;
	r.tokens = tok;
	r.logits = MB_LOGITS_ALL;
	/* warm up every buffer once */
	gemm_forward(&c, &w, B, T, u, X, Y, QKV, F, LG, S);
	if (mb_engine_forward(e, &r, &err) < 0) {
		fprintf(stderr, "bench_neox: %s\n", err.msg);
		return 1;
	}
	for (int i = 0; i < reps; i++) {
		double t0 = now();

		gemm_forward(&c, &w, B, T, u, X, Y, QKV, F, LG, S);
		tg[i] = now() - t0;
		t0 = now();
		mb_engine_forward(e, &r, &err);
		tf[i] = now() - t0;
		t0 = now();
		for (int l = 0; l < c.n_layer; l++) {
#pragma omp parallel for schedule(static)
			for (int b = 0; b < B; b++)
				mb_rotary_rows(QKV + (size_t)b * T * 3 * D, 3 * D, T, 0, 2, &c, cs, sn, 0);
		}
		tr[i] = now() - t0;
	}
	{
		double g = median(tg, reps), f = median(tf, reps), ro = median(tr, reps);
		double flops = 0;
		int L = c.n_layer, M = c.d_mlp, V = c.n_vocab;

		/* dense: 2 R (3D D + D D + 2 D M) per layer + 2 R V D; attention with the
		 * engine's query blocks counted as computed */
		flops = (double)L * 2.0 * R * (3.0 * D * D + (double)D * D + 2.0 * D * M) +
			2.0 * R * (double)V * D;
		for (int i0 = 0; i0 < T; i0 += MB_K_ATT_BLOCK) {
			int i1 = i0 + MB_K_ATT_BLOCK < T ? i0 + MB_K_ATT_BLOCK : T;
			flops += (double)L * B * c.n_head * 2.0 * 2.0 * (i1 - i0) * i1 * c.d_head;
		}
		printf("bench_neox forward: Pythia-160M shape (L 12, D 768, H 12, M 3072, V 50304, "
		       "rotary 16 of 64, parallel residual), B=%d T=%d, %d threads, row group %d, "
		       "median of %d\n",
		       B, T, omp_get_max_threads(), u, reps);
		printf("  (a) GEMM bound (every GEMM alone through mb_k_gemm): %.3f s (%.1f GF/s)\n", g,
		       flops / g * 1e-9);
		printf("  (b) our forward, all logits:                         %.3f s (%.0f tokens/s)\n",
		       f, R / f);
		printf("  forward as a fraction of the GEMM bound (a)/(b):     %.1f%%\n", 100.0 * g / f);
		printf("  (c) rotary alone (q and k of 12 layers):             %.4f s = %.2f%% of (b)\n",
		       ro, 100.0 * ro / f);
	}
	free(cs);
	free(sn);
	free(X);
	free(Y);
	free(QKV);
	free(F);
	free(LG);
	free(S);
	free(tg);
	free(tf);
	free(tr);
	free(tok);
	free(params);
	mb_engine_free(e);
	return 0;
}

static int load_bench(const char *dir)
{
	mb_model *m = NULL;
	mb_error err = {0};
	double t0 = now();
	long rss0 = status_kb("VmRSS"), hwm, rss;

	if (mb_model_load(&m, dir, &err) < 0) {
		fprintf(stderr, "bench_neox: %s\n", err.msg);
		return 1;
	}
	hwm = status_kb("VmHWM");
	rss = status_kb("VmRSS");
	printf("bench_neox load %s: %.2f s; weights (float32) %.1f MB; RSS before %.1f MB, "
	       "peak (VmHWM) %.1f MB = weights + %.1f%%, after %.1f MB\n",
	       dir, now() - t0, (double)m->n_params * 4 / 1048576.0, rss0 / 1024.0, hwm / 1024.0,
	       100.0 * ((double)hwm * 1024.0 / ((double)m->n_params * 4) - 1.0), rss / 1024.0);
	mb_model_free(m);
	return 0;
}

int main(int argc, char **argv)
{
	int B = 4, T = 256, reps = 3;

	if (argc >= 3 && strcmp(argv[1], "load") == 0)
		return load_bench(argv[2]);
	if (argc < 2 || strcmp(argv[1], "forward") != 0) {
		fprintf(stderr, "usage: bench_neox forward [--batch B] [--seq T] [--reps N] | "
				"bench_neox load DIR\n");
		return 2;
	}
	for (int i = 2; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--batch") == 0)
			B = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--seq") == 0)
			T = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--reps") == 0)
			reps = (int)strtol(argv[i + 1], NULL, 10);
	}
	if (B < 1 || T < 1 || T > 2048 || reps < 1)
		return 2;
	return forward_bench(B, T, reps);
}
