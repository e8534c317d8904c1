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
 *     With --shape gpt2-medium the model is GPT-2-medium-shaped instead (24
 *     layers, d_model 1024, 16 heads, d_mlp 4096, vocab 50257, learned
 *     positions, tanh GELU, sequential residual, tied; T <= 1024), and (c)
 *     is skipped. The backend is the process's (MB_GEMM).
 *   bench_neox backends [--reps N] [--attention]
 *     OpenBLAS against oneDNN in one run, interleaved (each repetition runs
 *     every figure under openblas, then under onednn; medians of N, default
 *     5), wall and CPU time (getrusage: user + system of every thread):
 *     (d) the backend's dense GEMM rate (the qkv GEMM, 1024 x 768 @ 768 x
 *         2304, in the engine's row chunks);
 *     (e) causal attention alone at T = 1024 and 2048 (B = 1, 12 layers of
 *         12 heads, d_head 64, as the forward runs it: mb_k_att_fused_scratch
 *         per (item, head), one per thread; on AVX-512 both backends run
 *         att_avx512.c's tiles) and the backend library's own block GEMMs
 *         alone (QK^T and PV in the engine's query blocks of MB_K_ATT_BLOCK,
 *         what attention ran before the tiles), against its GEMM FLOPs
 *         (query blocks counted as computed; also the causal FLOPs alone) at
 *         the rate (d): attention / (FLOPs / rate);
 *     (f) the forward's share of its GEMM bound, (a)/(b) above, at B=4
 *         T=256 and B=1 T=2048, each backend with its own engine.
 *     --attention: (d) and (e) alone.
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

#include <sys/resource.h>

#include <omp.h>

#include <mechbench/engine.h>
#include <mechbench/gemm.h>
#include <mechbench/model.h>

#include "engine/engine_int.h"
#include "engine/kernels_int.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of this process, every thread (getrusage: user + system). */
static double cpu_now(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
	       (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
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

/* One layer's causal attention, one (item, head) per thread (as att_heads
 * runs it), z (B*T, D) at the head's columns:
 *   ATT_GEMMS    QK^T and PV alone in the engine's query blocks;
 *   ATT_FUSED    scores, softmax and PV per query block (mb_k_att_fused,
 *                the layout before ATT_BLOCKS);
 *   ATT_SCRATCH  the forward when nothing reads the pattern (ATT_BLOCKS):
 *                the same through a per-thread scratch W.
 * The scores of GEMMS and FUSED go to S, one (T, T) block per (item, head)
 * with per_head, else one per thread. */
enum att_mode { ATT_GEMMS, ATT_FUSED, ATT_SCRATCH };

/* ATT_GEMMS under oneDNN, as the engine's dense path runs them (kernels.c):
 * q, k, v of the head copied to dense (T, Dh) blocks in the thread's scratch
 * w (the copies are O(T Dh) against the GEMMs' O(T^2 Dh) and are counted),
 * then each query block's QK^T and PV through the matmul primitive. */
static void att_gemms_dense(float *w, const float *q, int ld, int T, int Dh)
{
	float *Sd = w, *Qd = Sd + (size_t)MB_K_ATT_BLOCK * T, *Kd = Qd + (size_t)T * Dh;
	float *Vd = Kd + (size_t)T * Dh, *Zd = Vd + (size_t)T * Dh;

	for (int i = 0; i < T; i++)
		for (int X = 0; X < 3; X++)
			memcpy((X == 0 ? Qd : X == 1 ? Kd : Vd) + (size_t)i * Dh,
			       q + (size_t)i * ld + (size_t)X * (ld / 3), sizeof(float) * (size_t)Dh);
	for (int i0 = 0; i0 < T; i0 += MB_K_ATT_BLOCK) {
		int i1 = i0 + MB_K_ATT_BLOCK < T ? i0 + MB_K_ATT_BLOCK : T;

		mb_k_dense_matmul(1, i1 - i0, i1, Dh, Qd + (size_t)i0 * Dh, Kd, Sd);
		mb_k_dense_matmul(0, i1 - i0, Dh, i1, Sd, Vd, Zd);
	}
}

static void att_layer(const mb_engine_config *c, int B, int T, const float *QKV, float *Z,
		      float *S, float *W, enum att_mode mode, int per_head)
{
	int D = c->d_model, H = c->n_head, Dh = c->d_head;
	float scale = 1.0f / sqrtf((float)Dh);

#pragma omp parallel
	{
		omp_set_num_threads(1);
#pragma omp for schedule(dynamic, 1)
		for (int bh = 0; bh < B * H; bh++) {
			int b = bh / H, h = bh % H, th = omp_get_thread_num();
			const float *q = QKV + (size_t)b * T * 3 * D + (size_t)h * Dh;
			float *z = Z + (size_t)b * T * D + (size_t)h * Dh;
			float *s = S + (size_t)(per_head ? bh : th) * T * T;

			float *w = W + (size_t)th * mb_k_att_scratch_floats(T, Dh);

			if (mode == ATT_FUSED)
				mb_k_att_fused(z, D, s, T, q, q + D, q + 2 * D, 3 * D, T, Dh, scale, 0,
					       w);
			else if (mode == ATT_SCRATCH)
				mb_k_att_fused_scratch(z, D, w, T, q, q + D, q + 2 * D, 3 * D, T, Dh,
						       scale);
			else if (mb_gemm_current() == MB_GEMM_ONEDNN)
				att_gemms_dense(w, q, 3 * D, T, Dh);
			else
				for (int i0 = 0; i0 < T; i0 += MB_K_ATT_BLOCK) {
					int i1 = i0 + MB_K_ATT_BLOCK < T ? i0 + MB_K_ATT_BLOCK : T;

					mb_k_gemm(s + (size_t)i0 * T, T, q + (size_t)i0 * 3 * D, 3 * D,
						  q + D, 3 * D, 1, i1 - i0, i1, Dh, scale, 0);
					mb_k_gemm(z + (size_t)i0 * D, D, s + (size_t)i0 * T, T, q + 2 * D,
						  3 * D, 0, i1 - i0, Dh, i1, 1.0f, 0);
				}
		}
	}
}

/* (a): every GEMM of one forward (dense ones in row chunks of u). */
static void gemm_forward(const mb_engine_config *c, const mb_engine_weights *w, int B, int T,
			 int u, float *X, float *Y, float *QKV, float *F, float *LG, float *S,
			 float *W)
{
	int D = c->d_model, M = c->d_mlp, V = c->n_vocab;
	int R = B * T;

	for (int l = 0; l < c->n_layer; l++) {
		mb_k_gemm(QKV, 3 * D, X, D, w->qkv_w + (size_t)l * D * 3 * D, 3 * D, 0, R, 3 * D, D,
			  1.0f, u);
		att_layer(c, B, T, QKV, Y, S, W, ATT_GEMMS, 0);
		mb_k_gemm(X, D, Y, D, w->o_w + (size_t)l * D * D, D, 0, R, D, D, 1.0f, u);
		mb_k_gemm(F, M, X, D, w->fc_w + (size_t)l * D * M, M, 0, R, M, D, 1.0f, u);
		mb_k_gemm(Y, D, F, M, w->proj_w + (size_t)l * M * D, D, 0, R, D, M, 1.0f, u);
		for (size_t i = 0; i < (size_t)R * D; i++)
			X[i] = Y[i] > 1.0f ? 1.0f : (Y[i] < -1.0f ? -1.0f : Y[i]);
	}
	mb_k_gemm(LG, V, X, D, w->unembed, D, 1, R, V, D, 1.0f, u);
}

/* The attention GEMMs' FLOPs of one layer, query blocks counted as computed. */
static double att_flops(const mb_engine_config *c, int B, int T)
{
	double f = 0;

	for (int i0 = 0; i0 < T; i0 += MB_K_ATT_BLOCK) {
		int i1 = i0 + MB_K_ATT_BLOCK < T ? i0 + MB_K_ATT_BLOCK : T;

		f += (double)B * c->n_head * 2.0 * 2.0 * (i1 - i0) * i1 * c->d_head;
	}
	return f;
}

/* Every GEMM FLOP of one forward (dense: 2 R (3D D + D D + 2 D M) per layer
 * + 2 R V D, and the attention's). */
static double forward_flops(const mb_engine_config *c, int B, int T)
{
	double R = (double)B * T, D = c->d_model, M = c->d_mlp;

	return c->n_layer * (2.0 * R * (3.0 * D * D + D * D + 2.0 * D * M) + att_flops(c, B, T)) +
	       2.0 * R * (double)c->n_vocab * D;
}

/* One Pythia-160M-shaped model with random weights and the buffers of the
 * GEMM bound, for B items of T tokens. */
typedef struct neox_case {
	int B, T;
	mb_engine_config c;
	mb_engine_weights w;
	float *params;
	int32_t *tok;
	float *X, *Y, *QKV, *F, *LG; /* (R, D) (R, D) (R, 3D) (R, M) (R, V) */
	float *S;                    /* (B H, T, T) attention scores, one per (item, head) */
	float *W;                    /* (threads, mb_k_att_scratch_floats) per-thread scratch */
	mb_run r;
} neox_case;

static void case_free(neox_case *k)
{
	free(k->params);
	free(k->tok);
	free(k->X);
	free(k->Y);
	free(k->QKV);
	free(k->F);
	free(k->LG);
	free(k->S);
	free(k->W);
}

/* The model shapes forward can time (Pythia-160M is the default). */
static const mb_engine_config shape_pythia = {
	.n_vocab = 50304, .n_ctx = 2048, .d_model = 768, .n_layer = 12, .n_head = 12,
	.d_head = 64, .d_mlp = 3072, .act = MB_ACT_GELU, .norm = MB_NORM_LN, .tied = 0,
	.ln_eps = 1e-5f, .pos = MB_POS_ROTARY, .rotary_dim = 16, .rotary_base = 10000.0f,
	.parallel = 1};
static const mb_engine_config shape_gpt2_medium = {
	.n_vocab = 50257, .n_ctx = 1024, .d_model = 1024, .n_layer = 24, .n_head = 16,
	.d_head = 64, .d_mlp = 4096, .act = MB_ACT_GELU_NEW, .norm = MB_NORM_LN, .tied = 1,
	.ln_eps = 1e-5f, .pos = MB_POS_LEARNED, .parallel = 0};
static const mb_engine_config *g_shape = &shape_pythia;

static int case_init(neox_case *k, int B, int T)
{
	mb_engine_config c = *g_shape;
	size_t np = mb_engine_weights_layout(&k->w, &c, NULL), R = (size_t)B * T;
	uint64_t s = 1;
	int D = c.d_model;

	memset(k, 0, sizeof(*k));
	k->B = B;
	k->T = T;
	k->c = c;
	k->params = malloc(np * sizeof(float));
	k->tok = malloc(sizeof(int32_t) * R);
	k->X = calloc(R * D, sizeof(float));
	k->Y = calloc(R * D, sizeof(float));
	k->QKV = calloc(R * 3 * D, sizeof(float));
	k->F = calloc(R * c.d_mlp, sizeof(float));
	k->LG = calloc(R * c.n_vocab, sizeof(float));
	k->S = calloc((size_t)B * c.n_head * T * T, sizeof(float));
	k->W = calloc((size_t)omp_get_max_threads() * mb_k_att_scratch_floats(T, c.d_head),
		      sizeof(float));
	if (!k->params || !k->tok || !k->X || !k->Y || !k->QKV || !k->F || !k->LG || !k->S ||
	    !k->W) {
		fprintf(stderr, "bench_neox: out of memory (B=%d T=%d)\n", B, T);
		case_free(k);
		return -1;
	}
	mb_engine_weights_layout(&k->w, &c, k->params);
	for (size_t i = 0; i < np; i++) {
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		k->params[i] = ((float)(s >> 40) / 16777216.0f - 0.5f) * 0.04f;
	}
	for (int i = 0; i < c.n_layer * D; i++) {
		k->w.ln1_w[i] += 1.0f;
		k->w.ln2_w[i] += 1.0f;
	}
	for (int i = 0; i < D; i++)
		k->w.lnf_w[i] += 1.0f;
	for (size_t i = 0; i < R; i++)
		k->tok[i] = (int32_t)((i * 7919 + 13) % (size_t)c.n_vocab);
	for (size_t i = 0; i < R * D; i++)
		k->X[i] = (float)(i % 17) / 17.0f - 0.5f;
	for (size_t i = 0; i < R * 3 * D; i++)
		k->QKV[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
	k->r.batch = B;
	k->r.seq = T;
	k->r.tokens = k->tok;
	k->r.logits = MB_LOGITS_ALL;
	return 0;
}

static int engine_for(mb_engine **e, const neox_case *k)
{
	mb_engine_opts o = {k->B, k->T, 0};
	mb_error err = {0};

	if (mb_engine_init(e, &k->c, &k->w, &o, &err) < 0) {
		fprintf(stderr, "bench_neox: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int forward_bench(int B, int T, int reps)
{
	neox_case k;
	mb_engine *e = NULL;
	mb_error err = {0};
	double *tg = calloc((size_t)reps, sizeof(double)), *tf = calloc((size_t)reps, sizeof(double));
	double *tr = calloc((size_t)reps, sizeof(double));
	/* CPU seconds of the same figures (getrusage): steadier on shared cores */
	double *cg = calloc((size_t)reps, sizeof(double)), *cf = calloc((size_t)reps, sizeof(double));
	double *cr = calloc((size_t)reps, sizeof(double));
	int D, R = B * T, u;
	float *cs, *sn;

	if (case_init(&k, B, T) < 0 || engine_for(&e, &k) < 0)
		return 1;
	D = k.c.d_model;
	u = mb_engine_row_group(e);
	if (mb_rotary_table(&cs, &sn, &k.c, &err) < 0)
		return 1;
	/* warm up every buffer once */
	gemm_forward(&k.c, &k.w, B, T, u, k.X, k.Y, k.QKV, k.F, k.LG, k.S, k.W);
	if (mb_engine_forward(e, &k.r, &err) < 0) {
		fprintf(stderr, "bench_neox: %s\n", err.msg);
		return 1;
	}
	for (int i = 0; i < reps; i++) {
		double t0 = now(), c0 = cpu_now();

		gemm_forward(&k.c, &k.w, B, T, u, k.X, k.Y, k.QKV, k.F, k.LG, k.S, k.W);
		tg[i] = now() - t0;
		cg[i] = cpu_now() - c0;
		t0 = now();
		c0 = cpu_now();
		mb_engine_forward(e, &k.r, &err);
		tf[i] = now() - t0;
		cf[i] = cpu_now() - c0;
		t0 = now();
		c0 = cpu_now();
		for (int l = 0; l < k.c.n_layer && k.c.pos == MB_POS_ROTARY; l++) {
#pragma omp parallel for schedule(static)
			for (int b = 0; b < B; b++)
				mb_rotary_rows(k.QKV + (size_t)b * T * 3 * D, 3 * D, T, 0, 2, &k.c, cs, sn,
					       0);
		}
		tr[i] = now() - t0;
		cr[i] = cpu_now() - c0;
	}
	{
		double g = median(tg, reps), f = median(tf, reps), ro = median(tr, reps);
		double gc = median(cg, reps), fc = median(cf, reps), rc = median(cr, reps);
		double flops = forward_flops(&k.c, B, T);

		printf("bench_neox forward: %s shape (L %d, D %d, H %d, M %d, V %d%s), B=%d T=%d, "
		       "backend %s, %d threads, row group %d, median of %d\n",
		       g_shape == &shape_pythia ? "Pythia-160M" : "GPT-2-medium", k.c.n_layer, D,
		       k.c.n_head, k.c.d_mlp, k.c.n_vocab,
		       g_shape == &shape_pythia ? ", rotary 16 of 64, parallel residual" : "", B, T,
		       mb_gemm_backend_name(mb_gemm_current()), omp_get_max_threads(), u, reps);
		printf("  (a) GEMM bound (every GEMM alone through mb_k_gemm): %.3f s (%.1f GF/s)\n", g,
		       flops / g * 1e-9);
		printf("  (b) our forward, all logits:                         %.3f s (%.0f tokens/s)\n",
		       f, R / f);
		printf("  forward as a fraction of the GEMM bound (a)/(b):     %.1f%%\n", 100.0 * g / f);
		printf("  by CPU time: (a) %.3f CPU-s, (b) %.3f CPU-s, (a)/(b) %.1f%%\n", gc, fc,
		       100.0 * gc / fc);
		if (k.c.pos == MB_POS_ROTARY)
			printf("  (c) rotary alone (q and k of 12 layers):             %.4f s = %.2f%% of "
			       "(b)\n",
			       ro, 100.0 * ro / f);
		if (k.c.pos == MB_POS_ROTARY)
			printf("  (c) by CPU time: %.4f CPU-s = %.2f%% of (b)\n", rc, 100.0 * rc / fc);
	}
	free(cs);
	free(sn);
	free(tg);
	free(tf);
	free(tr);
	free(cg);
	free(cf);
	free(cr);
	case_free(&k);
	mb_engine_free(e);
	return 0;
}

/* Wall and CPU seconds of one figure over the repetitions. */
typedef struct fig {
	double *w, *c;
} fig;

#define FIG_BACKENDS 2
enum { FIG_RATE, FIG_ATT, FIG_ATT_HEADS, FIG_ATT_GEMMS, FIG_BOUND, FIG_FWD, FIG_N };

typedef struct case_figs {
	fig f[FIG_N][FIG_BACKENDS];
} case_figs;

#define TIMED(F, i, stmt)                                                                     \
	do {                                                                                  \
		double w0_ = now(), c0_ = cpu_now();                                          \
		stmt;                                                                         \
		(F).w[i] = now() - w0_;                                                       \
		(F).c[i] = cpu_now() - c0_;                                                   \
	} while (0)

static double med_of(const double *v, int n)
{
	double *t = malloc(sizeof(double) * (size_t)n), m;

	memcpy(t, v, sizeof(double) * (size_t)n);
	m = median(t, n);
	free(t);
	return m;
}

/* One case (B, T), every repetition under each backend in turn: the rate
 * (d), attention (e) when att, and the forward's bound and forward (f) when
 * fwd. */
static int backends_case(case_figs *cf, int B, int T, int att, int fwd, int reps)
{
	static const mb_gemm_backend bk[FIG_BACKENDS] = {MB_GEMM_OPENBLAS, MB_GEMM_ONEDNN};
	mb_gemm_isa isa = mb_gemm_isa_current();
	mb_engine *e[FIG_BACKENDS] = {NULL, NULL};
	mb_error err = {0};
	neox_case k;
	int D, rate_rows = 1024, rc = 0;

	if (case_init(&k, B, T) < 0)
		return -1;
	D = k.c.d_model;
	for (int b = 0; b < FIG_BACKENDS && rc == 0; b++) {
		if (mb_k_gemm_force(bk[b], isa) < 0) {
			fprintf(stderr, "bench_neox: backend %s is not in this build\n",
				mb_gemm_backend_name(bk[b]));
			rc = -1;
		} else {
			rc = engine_for(&e[b], &k);
		}
	}
	for (int f = 0; f < FIG_N; f++)
		for (int b = 0; b < FIG_BACKENDS; b++) {
			cf->f[f][b].w = calloc((size_t)reps, sizeof(double));
			cf->f[f][b].c = calloc((size_t)reps, sizeof(double));
		}
	/* one untimed round warms every buffer and every oneDNN shape */
	for (int i = -1; i < reps && rc == 0; i++) {
		for (int b = 0; b < FIG_BACKENDS && rc == 0; b++) {
			int u = mb_engine_row_group(e[b]), j = i < 0 ? 0 : i;

			mb_k_gemm_force(bk[b], isa);
			TIMED(cf->f[FIG_RATE][b], j,
			      for (int l = 0; l < k.c.n_layer; l++)
				      mb_k_gemm(k.QKV, 3 * D, k.X, D, k.w.qkv_w + (size_t)l * D * 3 * D,
						3 * D, 0, rate_rows, 3 * D, D, 1.0f, u));
			if (att) {
				TIMED(cf->f[FIG_ATT][b], j,
				      for (int l = 0; l < k.c.n_layer; l++)
					      att_layer(&k.c, B, T, k.QKV, k.Y, k.S, k.W, ATT_SCRATCH, 0));
				TIMED(cf->f[FIG_ATT_HEADS][b], j,
				      for (int l = 0; l < k.c.n_layer; l++)
					      att_layer(&k.c, B, T, k.QKV, k.Y, k.S, k.W, ATT_FUSED, 1));
				TIMED(cf->f[FIG_ATT_GEMMS][b], j,
				      for (int l = 0; l < k.c.n_layer; l++)
					      att_layer(&k.c, B, T, k.QKV, k.Y, k.S, k.W, ATT_GEMMS, 1));
			}
			if (fwd) {
				TIMED(cf->f[FIG_BOUND][b], j,
				      gemm_forward(&k.c, &k.w, B, T, u, k.X, k.Y, k.QKV, k.F, k.LG, k.S, k.W));
				TIMED(cf->f[FIG_FWD][b], j, rc = mb_engine_forward(e[b], &k.r, &err));
				if (rc < 0)
					fprintf(stderr, "bench_neox: %s\n", err.msg);
			}
		}
	}
	for (int b = 0; b < FIG_BACKENDS; b++)
		mb_engine_free(e[b]);
	case_free(&k);
	return rc;
}

static void print_backends(case_figs *cf, int B, int T, int att, int fwd, int reps)
{
	mb_engine_config c = {.n_vocab = 50304, .n_layer = 12, .n_head = 12, .d_head = 64,
			      .d_model = 768, .d_mlp = 3072};
	double rate_flops = 12.0 * 2.0 * 1024 * 768 * 2304;

	for (int b = 0; b < FIG_BACKENDS; b++) {
		const char *name = b ? "onednn" : "openblas";
		double rw = rate_flops / med_of(cf->f[FIG_RATE][b].w, reps);
		double rc = rate_flops / med_of(cf->f[FIG_RATE][b].c, reps);

		printf("B=%d T=%d %-8s (d) dense GEMM rate %.1f GF/s wall, %.1f GF/s per CPU-s\n", B,
		       T, name, rw * 1e-9, rc * 1e-9);
		if (att) {
			double fl = 12.0 * att_flops(&c, B, T);
			double aw = med_of(cf->f[FIG_ATT][b].w, reps), ac = med_of(cf->f[FIG_ATT][b].c, reps);
			double gw = med_of(cf->f[FIG_ATT_GEMMS][b].w, reps);
			double gc = med_of(cf->f[FIG_ATT_GEMMS][b].c, reps);
			double hw = med_of(cf->f[FIG_ATT_HEADS][b].w, reps);
			double hc = med_of(cf->f[FIG_ATT_HEADS][b].c, reps);

			printf("  (e) attention, 12 layers: %.3f s wall (%.3f CPU-s); with (T, T) blocks "
			       "per head %.3f s (%.3f CPU-s); its GEMMs alone %.3f s (%.3f CPU-s, %.1f GF/s "
			       "per CPU-s)\n",
			       aw, ac, hw, hc, gw, gc, fl / gc * 1e-9);
			printf("      attention / its GEMMs alone = %.2fx wall, %.2fx CPU\n", aw / gw,
			       ac / gc);
			printf("      %.2f GFLOP at the rate (d): %.3f s wall, %.3f CPU-s -> attention / "
			       "GEMM-FLOP time = %.2fx wall, %.2fx CPU (target <= 1.2x)\n",
			       fl * 1e-9, fl / rw, fl / rc, aw / (fl / rw), ac / (fl / rc));
			/* the work causal attention needs, whatever the block: T (T + 1) / 2
			 * scores per (item, head), QK^T and PV, 12 layers */
			fl = 12.0 * B * c.n_head * 2.0 * 2.0 * 0.5 * T * (T + 1.0) * c.d_head;
			printf("      causal FLOPs only (%.2f GFLOP, no masked entries): attention / their "
			       "time at (d) = %.2fx wall, %.2fx CPU\n",
			       fl * 1e-9, aw / (fl / rw), ac / (fl / rc));
		}
		if (fwd) {
			double bw = med_of(cf->f[FIG_BOUND][b].w, reps), bc = med_of(cf->f[FIG_BOUND][b].c, reps);
			double fw = med_of(cf->f[FIG_FWD][b].w, reps), fc = med_of(cf->f[FIG_FWD][b].c, reps);

			printf("  (f) GEMM bound %.3f s wall (%.3f CPU-s), forward %.3f s (%.3f CPU-s) -> "
			       "share of the bound %.1f%% wall, %.1f%% CPU (target >= 85%%)\n",
			       bw, bc, fw, fc, 100.0 * bw / fw, 100.0 * bc / fc);
		}
	}
	for (int f = 0; f < FIG_N; f++)
		for (int b = 0; b < FIG_BACKENDS; b++) {
			free(cf->f[f][b].w);
			free(cf->f[f][b].c);
		}
}

static int backends_bench(int reps, int att_only)
{
	static const struct {
		int B, T, att, fwd;
	} cases[] = {{4, 256, 0, 1}, {1, 1024, 1, 0}, {1, 2048, 1, 1}};
	double l1 = 0, l5 = 0, l15 = 0;
	FILE *la = fopen("/proc/loadavg", "r");

	if (!mb_gemm_have_onednn()) {
		fprintf(stderr, "bench_neox backends: this build has no oneDNN\n");
		return 1;
	}
	if (la) {
		if (fscanf(la, "%lf %lf %lf", &l1, &l5, &l15) != 3)
			l1 = l5 = l15 = -1;
		fclose(la);
	}
	printf("bench_neox backends: Pythia-160M shape, %d threads, openblas and onednn "
	       "interleaved, median of %d; load average at start %.2f %.2f %.2f\n",
	       omp_get_max_threads(), reps, l1, l5, l15);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		case_figs cf;
		int fwd = att_only ? 0 : cases[i].fwd;

		if (att_only && !cases[i].att)
			continue;
		memset(&cf, 0, sizeof(cf));
		if (backends_case(&cf, cases[i].B, cases[i].T, cases[i].att, fwd, reps) < 0)
			return 1;
		print_backends(&cf, cases[i].B, cases[i].T, cases[i].att, fwd, reps);
		fflush(stdout);
	}
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
	int B = 4, T = 256, reps = 3, att_only = 0;

	if (argc >= 3 && strcmp(argv[1], "load") == 0)
		return load_bench(argv[2]);
	if (argc < 2 || (strcmp(argv[1], "forward") != 0 && strcmp(argv[1], "backends") != 0)) {
		fprintf(stderr, "usage: bench_neox forward [--batch B] [--seq T] [--reps N] "
				"[--shape pythia-160m|gpt2-medium] | "
				"bench_neox backends [--reps N] [--attention] | bench_neox load DIR\n");
		return 2;
	}
	for (int i = 2; i < argc; i += 2) {
		if (strcmp(argv[i], "--attention") == 0) {
			att_only = 1;
			i--;
			continue;
		}
		if (i + 1 >= argc)
			break;
		if (strcmp(argv[i], "--batch") == 0)
			B = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--seq") == 0)
			T = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--reps") == 0)
			reps = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--shape") == 0) {
			if (strcmp(argv[i + 1], "gpt2-medium") == 0)
				g_shape = &shape_gpt2_medium;
			else if (strcmp(argv[i + 1], "pythia-160m") != 0) {
				fprintf(stderr, "bench_neox: --shape %s: expected pythia-160m or "
						"gpt2-medium\n",
					argv[i + 1]);
				return 2;
			}
		}
	}
	if (B < 1 || T < 1 || T > g_shape->n_ctx || reps < 1) {
		fprintf(stderr, "bench_neox: need B >= 1, 1 <= T <= %d, reps >= 1\n", g_shape->n_ctx);
		return 2;
	}
	if (att_only && strcmp(argv[1], "backends") != 0) {
		fprintf(stderr, "bench_neox: --attention: only with backends\n");
		return 2;
	}
	if (strcmp(argv[1], "backends") == 0 && g_shape != &shape_pythia) {
		fprintf(stderr, "bench_neox backends: only the Pythia-160M shape\n");
		return 2;
	}
	if (strcmp(argv[1], "backends") == 0)
		return backends_bench(reps, att_only);
	return forward_bench(B, T, reps);
}
