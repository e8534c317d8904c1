/*
 * bench_edit: the cost of ROME and MEMIT edits (edit.h) on a random GPT-2-style
 * model the size of a small zoo model, the mechbench side of
 * benchmarks/perf/run_edit.sh, which runs the same edits in PyTorch
 * (bench_edit_torch.py) on the same weights, corpus and requests.
 *
 *   bench_edit --prepare DIR   writes DIR/model (config.json, model.safetensors:
 *       L 4, D 128, H 4, M 512, V 512, 64 positions, gelu_new, LN, tied; weights
 *       N(0, 0.05) from Philox stream "bench/edit/weights"), DIR/corpus.npy
 *       (int32 (1024, 64)), DIR/requests.npy (int32 (E, 12): prompt 8 tokens with
 *       the subject's last at 4, the new object, the kl prompt of 3 tokens with
 *       the subject's last at 1), DIR/prefixes.npy (int32 (21, 10): the bare
 *       prompt, 10 of 5 tokens, 10 of 10; right-padded).
 *   bench_edit --run DIR [--edits E] [--threads T]
 *       C of layers 1 and 2 over the corpus (tokens/s), one ROME edit at layer
 *       1 (20 steps, 21 contexts; C precomputed), MEMIT of E edits (default
 *       100) over layers 1-2; prints one JSON line {"impl", "threads",
 *       "stats_tokens_per_s", "rome_s", "rome_loss", "memit_s", "memit_edits",
 *       "stats_cpu_s", "rome_cpu_s", "memit_cpu_s"} (*_s wall, *_cpu_s the
 *       process's CPU time over all threads, getrusage).
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <mechbench/checkpoint.h>
#include <mechbench/edit.h>
#include <mechbench/model.h>
#include <mechbench/npy.h>
#include <mechbench/parse.h>
#include <mechbench/rng.h>

#define NSEQ 1024
#define SEQ 64
#define NREQ 100
#define NPRE 21

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the process, every thread (getrusage: user + system). */
static double cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
	       (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static int die(const mb_error *err)
{
	fprintf(stderr, "bench_edit: %s\n", err->msg);
	return 1;
}

static int prepare(const char *dir)
{
	mb_engine_config c = {.n_vocab = 512, .n_ctx = SEQ, .d_model = 128, .n_layer = 4,
			      .n_head = 4, .d_head = 32, .d_mlp = 512, .act = MB_ACT_GELU_NEW,
			      .norm = MB_NORM_LN, .tied = 1, .ln_eps = 1e-5f};
	mb_engine_weights w;
	mb_checkpoint_info info = {.initializer_range = 0.05, .bos_token_id = -1};
	mb_error err = {0};
	mb_rng r;
	size_t n = mb_engine_weights_layout(&w, &c, NULL);
	float *block = calloc(n, sizeof(float));
	int32_t *tok = malloc(sizeof(int32_t) * NSEQ * SEQ), req[NREQ][12], pre[NPRE][10];
	char path[4096];
	int64_t shape[2];

	mb_engine_weights_layout(&w, &c, block);
	w.unembed = w.wte;
	mb_rng_init_named(&r, 0, "bench/edit/weights", 0);
	for (size_t i = 0; i < n; i++)
		block[i] = (float)(0.05 * mb_rng_normal(&r));
	for (int l = 0; l < c.n_layer; l++)
		for (int d = 0; d < c.d_model; d++) {
			w.ln1_w[l * c.d_model + d] = 1.0f;
			w.ln2_w[l * c.d_model + d] = 1.0f;
		}
	for (int d = 0; d < c.d_model; d++)
		w.lnf_w[d] = 1.0f;
	snprintf(path, sizeof(path), "%s/model", dir);
	if (mb_checkpoint_write(path, &c, &w, &info, NULL, &err) < 0)
		return die(&err);
	mb_rng_init_named(&r, 0, "bench/edit/data", 0);
	for (size_t i = 0; i < (size_t)NSEQ * SEQ; i++)
		tok[i] = (int32_t)mb_rng_range(&r, 512);
	for (int j = 0; j < NREQ; j++) {
		for (int t = 0; t < 9; t++) /* prompt (8) and the new object */
			req[j][t] = (int32_t)mb_rng_range(&r, 512);
		req[j][9] = req[j][3];  /* kl prompt: the subject's last two tokens ... */
		req[j][10] = req[j][4];
		req[j][11] = (int32_t)mb_rng_range(&r, 512); /* ... and one more */
	}
	memset(pre, 0, sizeof(pre));
	for (int i = 1; i < NPRE; i++)
		for (int t = 0; t < (i <= 10 ? 5 : 10); t++)
			pre[i][t] = (int32_t)mb_rng_range(&r, 512);
	snprintf(path, sizeof(path), "%s/corpus.npy", dir);
	shape[0] = NSEQ;
	shape[1] = SEQ;
	if (mb_npy_write(path, MB_DTYPE_I32, 2, shape, tok, &err) < 0)
		return die(&err);
	snprintf(path, sizeof(path), "%s/requests.npy", dir);
	shape[0] = NREQ;
	shape[1] = 12;
	if (mb_npy_write(path, MB_DTYPE_I32, 2, shape, req, &err) < 0)
		return die(&err);
	snprintf(path, sizeof(path), "%s/prefixes.npy", dir);
	shape[0] = NPRE;
	shape[1] = 10;
	if (mb_npy_write(path, MB_DTYPE_I32, 2, shape, pre, &err) < 0)
		return die(&err);
	free(block);
	free(tok);
	return 0;
}

static int run(const char *dir, int n_edits)
{
	mb_model *m = NULL;
	mb_engine *e = NULL, *se = NULL;
	mb_error err = {0};
	mb_npy corpus, reqs, pres;
	mb_rome_stats s[2];
	mb_rome_prefix pre[NPRE];
	mb_rome_request rq[NREQ];
	mb_rome_result res;
	mb_rome_params p;
	mb_memit_params mp;
	char path[4096];
	const int layers[2] = {1, 2};
	mb_engine_opts so = {.max_batch = 16, .max_seq = SEQ};
	mb_engine_opts eo = {.max_batch = NPRE + 1, .max_seq = SEQ, .keep_activations = 1};
	float *saved;
	double t0, t_stats, t_rome, t_memit, c0, c_stats, c_rome, c_memit;

	snprintf(path, sizeof(path), "%s/model", dir);
	if (mb_model_load(&m, path, &err) < 0)
		return die(&err);
	snprintf(path, sizeof(path), "%s/corpus.npy", dir);
	if (mb_npy_read(&corpus, path, &err) < 0)
		return die(&err);
	snprintf(path, sizeof(path), "%s/requests.npy", dir);
	if (mb_npy_read(&reqs, path, &err) < 0)
		return die(&err);
	snprintf(path, sizeof(path), "%s/prefixes.npy", dir);
	if (mb_npy_read(&pres, path, &err) < 0)
		return die(&err);
	for (int i = 0; i < NPRE; i++)
		pre[i] = (mb_rome_prefix){.tokens = (int32_t *)pres.data + i * 10,
					  .n = i == 0 ? 0 : (i <= 10 ? 5 : 10)};
	for (int j = 0; j < NREQ; j++) {
		const int32_t *q = (int32_t *)reqs.data + j * 12;
		rq[j] = (mb_rome_request){.prompt = q, .n_prompt = 8, .subj_last = 4,
					  .target = q + 8, .n_target = 1, .kl_prompt = q + 9,
					  .n_kl = 3, .kl_subj_last = 1};
	}
	if (mb_engine_init(&se, &m->cfg, &m->w, &so, &err) < 0 ||
	    mb_engine_init(&e, &m->cfg, &m->w, &eo, &err) < 0)
		return die(&err);

	t0 = now();
	c0 = cpu();
	for (int i = 0; i < 2; i++)
		if (mb_rome_stats_compute(&s[i], se, layers[i], corpus.data, NSEQ, SEQ, 16, &err) < 0)
			return die(&err);
	t_stats = now() - t0;
	c_stats = cpu() - c0;

	saved = malloc(sizeof(float) * m->n_params);
	memcpy(saved, m->params, sizeof(float) * m->n_params);
	mb_rome_params_default(&p, 1);
	t0 = now();
	c0 = cpu();
	if (mb_rome_compute(&res, e, &s[0], &rq[0], pre, NPRE, &p, &err) < 0)
		return die(&err);
	mb_rome_apply(&m->cfg, &m->w, 1, res.u, res.r);
	t_rome = now() - t0;
	c_rome = cpu() - c0;
	memcpy(m->params, saved, sizeof(float) * m->n_params);

	mb_memit_params_default(&mp, layers, 2);
	t0 = now();
	c0 = cpu();
	if (mb_memit_edit(NULL, e, &m->w, s, rq, n_edits, pre, NPRE, &mp, &err) < 0)
		return die(&err);
	t_memit = now() - t0;
	c_memit = cpu() - c0;

	printf("{\"impl\": \"mechbench\", \"threads\": %d, \"stats_tokens_per_s\": %.0f, "
	       "\"rome_s\": %.4f, \"rome_loss\": [%.6f, %.6f], \"rome_steps\": %d, \"memit_s\": %.3f, "
	       "\"memit_edits\": %d, \"stats_cpu_s\": %.3f, \"rome_cpu_s\": %.4f, "
	       "\"memit_cpu_s\": %.3f}\n", omp_get_max_threads(), 2.0 * NSEQ * SEQ / t_stats,
	       t_rome, res.loss_first, res.loss[0] + res.loss[1] + res.loss[2], res.steps_run,
	       t_memit, n_edits, c_stats, c_rome, c_memit);
	mb_rome_result_dispose(&res);
	for (int i = 0; i < 2; i++)
		mb_rome_stats_dispose(&s[i]);
	free(saved);
	mb_npy_dispose(&corpus);
	mb_npy_dispose(&reqs);
	mb_npy_dispose(&pres);
	mb_engine_free(e);
	mb_engine_free(se);
	mb_model_free(m);
	return 0;
}

int main(int argc, char **argv)
{
	mb_error err = {0};
	int64_t edits = NREQ, threads = 0;

	for (int i = 3; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--edits") &&
		    mb_parse_i64(argv[i + 1], 1, NREQ, &edits, "--edits", &err) < 0)
			return die(&err);
		if (!strcmp(argv[i], "--threads") &&
		    mb_parse_i64(argv[i + 1], 1, 256, &threads, "--threads", &err) < 0)
			return die(&err);
	}
	if (threads > 0)
		omp_set_num_threads((int)threads);
	if (argc >= 3 && !strcmp(argv[1], "--prepare"))
		return prepare(argv[2]);
	if (argc >= 3 && !strcmp(argv[1], "--run"))
		return run(argv[2], (int)edits);
	fprintf(stderr, "usage: bench_edit --prepare DIR | --run DIR [--edits E] [--threads T]\n");
	return 2;
}
