/*
 * bench_forward: the C side of benchmarks/perf/run_forward.sh.
 *
 * usage: bench_forward MODEL_DIR OUT.json [--batch 4] [--seq 256] [--reps 5]
 *                      [--sweep-prompts 64] [--sweep-len 32] [--sweep-heads sample|all|none]
 *
 * On a GPT-2-small-shaped checkpoint (written by bench_forward_torch.py write),
 * in one process and one run:
 *  - peak RSS of a plain forward (VmHWM reset after loading the weights);
 *  - (a) the GEMM-bound limit: every GEMM of one forward alone through
 *    OpenBLAS: the dense layers and the unembedding as one multi-threaded
 *    sgemm each over all B*T rows, and the causal attention's QK^T and PV in
 *    the same query blocks the engine uses, per (item, head) on one thread
 *    each (a multi-threaded sgemm on a 64 x 256 block would be slower);
 *  - (b) our forward, plain (all logits) and with every hook point cached;
 *  - the difference OpenBLAS makes between an item's rows alone and inside
 *    a batch (what the engine's packed rows avoid), in units of the last
 *    place of the largest output;
 *  - the 144-head zero-ablation sweep on P prompts of S tokens: every
 *    ablation a full forward from the embedding (all logits; last-position
 *    logits) against restarting at the ablated layer from cached activations
 *    (last-position logits). "sample" times head 0 of each layer and
 *    multiplies by H (heads of one layer cost the same; the clean caching run
 *    is counted once); "all" runs all 144.
 * It also writes MODEL_DIR/tokens.npy (B, T) and MODEL_DIR/c_logits_last.npy
 * (item 0's last-position logits) for the PyTorch side.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>
#include <omp.h>

#include <mechbench/buildinfo.h>
#include <mechbench/engine.h>
#include <mechbench/hooks.h>
#include <mechbench/interventions.h>
#include <mechbench/model.h>
#include <mechbench/npy.h>

#include "engine/kernels_int.h"

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* CPU seconds of this process (all threads): a contention-robust proxy for
 * wall time when other jobs share the cores (with OMP_WAIT_POLICY=passive, so
 * that waiting threads do not burn CPU). */
static double cpu_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
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

/* kB value of a "Key:" line of /proc/self/status. */
static long status_kb(const char *key)
{
	char line[256];
	long v = -1;
	size_t n = strlen(key);
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, n) == 0) {
			v = strtol(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static void reset_hwm(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");

	if (f) {
		fputs("5", f);
		fclose(f);
	}
}

static void die(const char *what, const mb_error *err)
{
	fprintf(stderr, "bench_forward: %s: %s\n", what, err ? err->msg : "");
	exit(1);
}

static void fill_tokens(int32_t *tok, int B, int T, int V, uint64_t seed)
{
	for (int i = 0; i < B * T; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		tok[i] = (int32_t)((seed >> 33) % (uint64_t)V);
	}
}

/* (a): every GEMM of one forward through OpenBLAS. */
static double gemm_forward(const mb_engine_config *c, const mb_engine_weights *w, int B, int T,
			   float *X, float *Y, float *QKV, float *F, float *LG, float *S)
{
	int D = c->d_model, M = c->d_mlp, V = c->n_vocab, H = c->n_head, Dh = c->d_head;
	int R = B * T;
	double t0 = now();

	for (int l = 0; l < c->n_layer; l++) {
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, 3 * D, D, 1.0f, X, D,
			    w->qkv_w + (size_t)l * D * 3 * D, 3 * D, 0.0f, QKV, 3 * D);
#pragma omp parallel
		{
			omp_set_num_threads(1);
#pragma omp for schedule(dynamic, 1)
			for (int bh = 0; bh < B * H; bh++) {
				int b = bh / H, h = bh % H;
				const float *q = QKV + (size_t)b * T * 3 * D + (size_t)h * Dh;
				float *s = S + (size_t)bh * T * T;

				for (int i0 = 0; i0 < T; i0 += MB_K_ATT_BLOCK) {
					int i1 = i0 + MB_K_ATT_BLOCK < T ? i0 + MB_K_ATT_BLOCK : T;

					cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, i1 - i0, i1, Dh,
						    1.0f / sqrtf((float)Dh), q + (size_t)i0 * 3 * D, 3 * D, q + D, 3 * D, 0.0f,
						    s + (size_t)i0 * T, T);
					cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, i1 - i0, Dh,
						    i1, 1.0f, s + (size_t)i0 * T, T, q + 2 * D, 3 * D, 0.0f,
						    Y + ((size_t)b * T + i0) * D + (size_t)h * Dh, D);
				}
			}
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, D, D, 1.0f, Y, D,
			    w->o_w + (size_t)l * D * D, D, 0.0f, X, D);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, M, D, 1.0f, X, D,
			    w->fc_w + (size_t)l * D * M, M, 0.0f, F, M);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, D, M, 1.0f, F, M,
			    w->proj_w + (size_t)l * M * D, D, 0.0f, X, D);
		/* keep magnitudes bounded across layers */
		for (size_t i = 0; i < (size_t)R * D; i++)
			X[i] = X[i] > 1.0f ? 1.0f : (X[i] < -1.0f ? -1.0f : X[i]);
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, V, D, 1.0f, X, D, w->unembed, D, 0.0f,
		    LG, V);
	return now() - t0;
}

typedef struct sweep_sink {
	double checksum;
} sweep_sink;

static int sink(const mb_engine *e, int layer, int head, void *payload, mb_error *err)
{
	sweep_sink *s = payload;
	const float *row = mb_engine_logits_row(e, 0, 0);

	(void)layer;
	(void)head;
	(void)err;
	s->checksum += row ? row[0] : 0.0;
	return 0;
}

/* Wall seconds of one sweep; *cpu gets its CPU seconds. */
static double time_sweep(mb_engine *e, const mb_run *r, const uint8_t *mask, int restart,
			 double *cpu)
{
	mb_error err = {0};
	sweep_sink s = {0};
	double t0 = now(), c0 = cpu_now();

	if (mb_interp_head_sweep(e, r, mask, 0, restart, sink, &s, &err) < 0)
		die("sweep", &err);
	*cpu = cpu_now() - c0;
	return now() - t0;
}

int main(int argc, char **argv)
{
	const char *dir, *out_path;
	int B = 4, T = 256, reps = 5, SP = 64, SL = 32, sweep_all = 0, sweep_none = 0;
	mb_model *m = NULL;
	mb_engine *e = NULL;
	mb_error err = {0};
	mb_engine_opts eo;
	mb_run r;
	int32_t *tok;
	double *ts, *cs, t_load, t_plain, t_cached, t_gemm, c_plain, c_cached, c_gemm;
	long rss_loaded, hwm_forward;
	size_t weights_bytes;
	double ulp_max = 0.0, ulp_frac = 0.0;
	double sw_full_all = -1, sw_full_last = -1, sw_restart_last = -1, sw_clean = -1;
	double cw_full_all = -1, cw_full_last = -1, cw_restart_last = -1, cw_clean = -1;
	int sweep_heads_timed = 0;
	FILE *out;
	char path[4096];

	if (argc < 3) {
		fprintf(stderr, "usage: bench_forward MODEL_DIR OUT.json [--batch B] [--seq T] [--reps N]"
				" [--sweep-prompts P] [--sweep-len S] [--sweep-heads sample|all|none]\n");
		return 2;
	}
	dir = argv[1];
	out_path = argv[2];
	for (int i = 3; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--batch") == 0)
			B = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--seq") == 0)
			T = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--reps") == 0)
			reps = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--sweep-prompts") == 0)
			SP = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--sweep-len") == 0)
			SL = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--sweep-heads") == 0) {
			sweep_all = strcmp(argv[i + 1], "all") == 0;
			sweep_none = strcmp(argv[i + 1], "none") == 0;
		} else {
			fprintf(stderr, "bench_forward: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (B < 1 || T < 1 || reps < 1 || SP < 1 || SL < 1) {
		fprintf(stderr, "bench_forward: bad sizes\n");
		return 2;
	}
	fprintf(stderr, "bench_forward: %d OpenMP threads, OpenBLAS %s (parallel mode %d, core %s)\n",
		omp_get_max_threads(), mb_blas_config(), mb_blas_parallel(), mb_blas_core());
	if (mb_blas_parallel() != 2)
		fprintf(stderr, "bench_forward: warning: OpenBLAS is not the OpenMP build\n");
	ts = calloc((size_t)reps, sizeof(double));
	cs = calloc((size_t)reps, sizeof(double));
	t_load = now();
	if (mb_model_load(&m, dir, &err) < 0)
		die("load", &err);
	t_load = now() - t_load;
	weights_bytes = m->n_params * sizeof(float);
	rss_loaded = status_kb("VmRSS");

	/* tokens, shared with the PyTorch side */
	tok = malloc(sizeof(int32_t) * (size_t)B * T);
	fill_tokens(tok, B, T, m->cfg.n_vocab, 42);
	{
		int64_t *t64 = malloc(sizeof(int64_t) * (size_t)B * T), shape[2] = {B, T};

		for (int i = 0; i < B * T; i++)
			t64[i] = tok[i];
		snprintf(path, sizeof(path), "%s/tokens.npy", dir);
		if (mb_npy_write(path, MB_DTYPE_I64, 2, shape, t64, &err) < 0)
			die("tokens.npy", &err);
		free(t64);
	}

	/* peak RSS of a plain forward: engine, arena, first-touch, logits */
	reset_hwm();
	eo = (mb_engine_opts){B, T, 0};
	if (mb_engine_init(&e, &m->cfg, &m->w, &eo, &err) < 0)
		die("engine", &err);
	memset(&r, 0, sizeof(r));
	r.batch = B;
	r.seq = T;
	r.tokens = tok;
	r.logits = MB_LOGITS_ALL;
	for (int i = 0; i < 2; i++)
		if (mb_engine_forward(e, &r, &err) < 0)
			die("forward", &err);
	hwm_forward = status_kb("VmHWM");
	{
		int64_t shape[1] = {m->cfg.n_vocab};

		snprintf(path, sizeof(path), "%s/c_logits_last.npy", dir);
		if (mb_npy_write(path, MB_DTYPE_F32, 1, shape, mb_engine_logits_row(e, 0, T - 1), &err) < 0)
			die("c_logits_last.npy", &err);
	}

	/* (b) our forward, plain */
	for (int i = 0; i < reps; i++) {
		double t0 = now(), c0 = cpu_now();

		if (mb_engine_forward(e, &r, &err) < 0)
			die("forward", &err);
		ts[i] = now() - t0;
		cs[i] = cpu_now() - c0;
	}
	t_plain = median(ts, reps);
	c_plain = median(cs, reps);
	fprintf(stderr, "our forward: %.3f s (%.0f tokens/s)\n", t_plain, B * T / t_plain);

	/* our forward with every hook point cached */
	{
		mb_hooks *h;
		mb_cache *c;

		if (mb_hooks_init(&h, &err) < 0 || mb_cache_init(&c, &err) < 0 ||
		    mb_cache_add_all(c, &m->cfg, 0, &err) < 0 || mb_cache_attach(c, h, &err) < 0)
			die("cache", &err);
		r.hooks = h;
		if (mb_engine_forward(e, &r, &err) < 0)
			die("cached forward", &err);
		for (int i = 0; i < reps; i++) {
			double t0 = now(), c0 = cpu_now();

			if (mb_engine_forward(e, &r, &err) < 0)
				die("cached forward", &err);
			ts[i] = now() - t0;
			cs[i] = cpu_now() - c0;
		}
		t_cached = median(ts, reps);
		c_cached = median(cs, reps);
		r.hooks = NULL;
		mb_cache_free(c);
		mb_hooks_free(h);
		fprintf(stderr, "our forward, every hook cached: %.3f s\n", t_cached);
	}
	mb_engine_free(e);
	e = NULL;

	/* (a) the GEMM-bound limit */
	{
		const mb_engine_config *c = &m->cfg;
		size_t R = (size_t)B * T;
		float *X = malloc(sizeof(float) * R * c->d_model), *Y = calloc(R * c->d_model, sizeof(float));
		float *QKV = malloc(sizeof(float) * R * 3 * c->d_model);
		float *F = malloc(sizeof(float) * R * c->d_mlp);
		float *LG = malloc(sizeof(float) * R * c->n_vocab);
		float *S = malloc(sizeof(float) * (size_t)B * c->n_head * T * T);
		float *C1 = malloc(sizeof(float) * R * 3 * c->d_model);
		float *C2 = malloc(sizeof(float) * (size_t)T * 3 * c->d_model);
		uint64_t s = 7;
		long diff = 0;

		for (size_t i = 0; i < R * c->d_model; i++) {
			s = s * 6364136223846793005ULL + 1442695040888963407ULL;
			X[i] = (float)((s >> 40) % 2001) / 1000.0f - 1.0f;
		}
		memcpy(Y, X, sizeof(float) * R * c->d_model);
		/* the ULP difference of an item's rows alone vs in the batch (OpenBLAS as is) */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, 3 * c->d_model, c->d_model,
			    1.0f, X, c->d_model, m->w.qkv_w, 3 * c->d_model, 0.0f, C1, 3 * c->d_model);
		{
			double cmax = 0.0;

			for (size_t i = 0; i < R * 3 * c->d_model; i++)
				cmax = fabs(C1[i]) > cmax ? fabs(C1[i]) : cmax;
			/* differences in units of the last place of the largest output */
			cmax = cmax * ldexp(1.0, -23);
			for (int b = 0; b < B; b++) {
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T - b,
					    3 * c->d_model, c->d_model, 1.0f,
					    X + (size_t)b * T * c->d_model, c->d_model, m->w.qkv_w,
					    3 * c->d_model, 0.0f, C2, 3 * c->d_model);
				for (size_t i = 0; i < (size_t)(T - b) * 3 * c->d_model; i++) {
					double u = fabs((double)C2[i] -
							(double)C1[(size_t)b * T * 3 * c->d_model + i]) /
						   cmax;

					if (u > 0)
						diff++;
					ulp_max = u > ulp_max ? u : ulp_max;
				}
			}
		}
		ulp_frac = (double)diff / ((double)B * T * 3 * c->d_model);
		gemm_forward(c, &m->w, B, T, X, Y, QKV, F, LG, S);
		for (int i = 0; i < reps; i++) {
			double c0;

			memcpy(X, Y, sizeof(float) * R * c->d_model);
			c0 = cpu_now();
			ts[i] = gemm_forward(c, &m->w, B, T, X, Y, QKV, F, LG, S);
			cs[i] = cpu_now() - c0;
		}
		t_gemm = median(ts, reps);
		c_gemm = median(cs, reps);
		fprintf(stderr, "GEMM-bound limit: %.3f s (%.0f tokens/s)\n", t_gemm, B * T / t_gemm);
		free(X);
		free(Y);
		free(QKV);
		free(F);
		free(LG);
		free(S);
		free(C1);
		free(C2);
	}

	/* the 144-head sweep */
	if (!sweep_none) {
		const mb_engine_config *c = &m->cfg;
		int L = c->n_layer, H = c->n_head;
		uint8_t *mask = calloc((size_t)L * H, 1), *none = calloc((size_t)L * H, 1);
		int32_t *stok = malloc(sizeof(int32_t) * (size_t)SP * SL);
		mb_run sr;
		double scale;

		fill_tokens(stok, SP, SL, c->n_vocab, 4242);
		eo = (mb_engine_opts){SP, SL, 0};
		if (mb_engine_init(&e, c, &m->w, &eo, &err) < 0)
			die("sweep engine", &err);
		for (int l = 0; l < L; l++)
			for (int h = 0; h < H; h++)
				mask[l * H + h] = sweep_all || h == 0;
		sweep_heads_timed = sweep_all ? L * H : L;
		scale = sweep_all ? 1.0 : (double)H;
		memset(&sr, 0, sizeof(sr));
		sr.batch = SP;
		sr.seq = SL;
		sr.tokens = stok;
		sr.logits = MB_LOGITS_LAST;
		{
			double c, w;

			time_sweep(e, &sr, none, 1, &c); /* warm-up: first touch of the arena */
			sw_clean = time_sweep(e, &sr, none, 1, &cw_clean);
			w = time_sweep(e, &sr, mask, 1, &c);
			sw_restart_last = sw_clean + scale * (w - sw_clean);
			cw_restart_last = cw_clean + scale * (c - cw_clean);
			fprintf(stderr, "sweep, restart at the ablated layer, last-position logits: "
					"%.2f s (cpu %.2f s)\n",
				sw_restart_last, cw_restart_last);
			sw_full_last = scale * time_sweep(e, &sr, mask, 0, &c);
			cw_full_last = scale * c;
			fprintf(stderr, "sweep, full forwards, last-position logits: %.2f s (cpu %.2f s)\n",
				sw_full_last, cw_full_last);
			sr.logits = MB_LOGITS_ALL;
			sw_full_all = scale * time_sweep(e, &sr, mask, 0, &c);
			cw_full_all = scale * c;
			fprintf(stderr, "sweep, full forwards, all logits: %.2f s (cpu %.2f s)\n",
				sw_full_all, cw_full_all);
		}
		mb_engine_free(e);
		e = NULL;
		free(mask);
		free(none);
		free(stok);
	}

	out = fopen(out_path, "w");
	if (!out) {
		perror(out_path);
		return 1;
	}
	fprintf(out,
		"{\n \"batch\": %d, \"seq\": %d, \"reps\": %d, \"threads\": %d,\n"
		" \"blas_core\": \"%s\", \"blas_parallel\": %d,\n"
		" \"load_s\": %.4f, \"weights_bytes\": %zu, \"rss_loaded_kb\": %ld,\n"
		" \"peak_rss_forward_kb\": %ld,\n"
		" \"gemm_limit_s\": %.5f, \"ours_plain_s\": %.5f, \"ours_cached_s\": %.5f,\n"
		" \"gemm_limit_cpu_s\": %.5f, \"ours_plain_cpu_s\": %.5f, \"ours_cached_cpu_s\": %.5f,\n"
		" \"blas_row_ulp_max\": %.1f, \"blas_row_ulp_fraction\": %.5f,\n"
		" \"sweep_prompts\": %d, \"sweep_len\": %d, \"sweep_heads_timed\": %d,\n"
		" \"sweep_clean_s\": %.4f, \"sweep_restart_last_s\": %.4f,\n"
		" \"sweep_full_last_s\": %.4f, \"sweep_full_all_s\": %.4f,\n"
		" \"sweep_clean_cpu_s\": %.4f, \"sweep_restart_last_cpu_s\": %.4f,\n"
		" \"sweep_full_last_cpu_s\": %.4f, \"sweep_full_all_cpu_s\": %.4f,\n"
		" \"omp_wait_policy\": \"%s\",\n"
		" \"row_group\": %d\n}\n",
		B, T, reps, omp_get_max_threads(), mb_blas_core(), mb_blas_parallel(), t_load,
		weights_bytes, rss_loaded, hwm_forward, t_gemm, t_plain, t_cached, c_gemm, c_plain,
		c_cached, ulp_max, ulp_frac, SP, SL, sweep_heads_timed, sw_clean, sw_restart_last,
		sw_full_last, sw_full_all, cw_clean, cw_restart_last, cw_full_last, cw_full_all,
		getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "",
		mb_k_gemm_probe_group(m->cfg.d_model, 3 * m->cfg.d_model, 0));
	fclose(out);
	mb_model_free(m);
	free(tok);
	free(ts);
	free(cs);
	return 0;
}
