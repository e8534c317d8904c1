/*
 * bench_attribution: all-heads attribution patching (AtP) against exact
 * activation patching of every head with the restart sweep, on the
 * GPT-2-small shape with random weights, in one process and one run.
 *
 * usage: bench_attribution [--batch 4] [--seq 256] [--reps 3] [--method atp|atp-star|eap]
 *                          [--no-exact]
 * (--no-exact times the attribution method alone: for profiling it.)
 *
 * Model: L = 12, D = 768, H = 12, M = 3072, V = 50257, P = 1024, LayerNorm,
 * gelu_new, tied; every weight N(0, 0.02^2) from Philox stream
 * "bench/attribution/weights" (LayerNorm weights 1, biases 0). Items: B
 * random sequences of T tokens (stream "bench/attribution/tokens"); the
 * corrupted ones redraw every other token. Metric: logit(a) - logit(b) at the
 * last position (MB_LOGITS_LAST), the IOI metric.
 *
 * Timed (median of --reps, wall and process CPU seconds):
 *  (a) mb_attr_run (after one untimed run that allocates its caches):
 *      corrupted forward + clean forward (caching the points
 *      the nodes read) + one backward + every node score (heads' z, q, k, v,
 *      MLPs, neurons, residual positions), on an engine with kept activations;
 *  (b) exact patching of all L H heads (hook_z from the corrupted run at
 *      every position): the clean run caching every layer's resid_pre and
 *      hook_z, the corrupted run, and mb_effect_head_sweep restarting each
 *      head's forward at its layer, on an engine without kept activations.
 * Prints both and the ratio (b) / (a), and the agreement of the two (Spearman
 * of the 144 heads' mean effects; the random model has no circuit, so this is
 * a sanity number, not a claim).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mechbench/attribution.h>
#include <mechbench/buildinfo.h>
#include <mechbench/effect.h>
#include <mechbench/engine.h>
#include <mechbench/gemm.h>
#include <mechbench/rng.h>

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

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const mb_error *err, const char *what)
{
	fprintf(stderr, "bench_attribution: %s: %s\n", what, err->msg);
	exit(1);
}

static int effect_metric(double *out, const mb_engine *e, int B, void *payload, mb_error *err)
{
	const mb_attr_batch *ab = payload;
	return ab->metric(out, NULL, e, B, ab->payload, err);
}

int main(int argc, char **argv)
{
	int B = 4, T = 256, reps = 3, no_exact = 0;
	mb_attr_method method = MB_ATTR_ATP;
	mb_engine_config cfg = {.n_vocab = 50257, .n_ctx = 1024, .d_model = 768, .n_layer = 12,
				.n_head = 12, .d_head = 64, .d_mlp = 3072, .act = MB_ACT_GELU_NEW,
				.norm = MB_NORM_LN, .attn_only = 0, .tied = 1, .ln_eps = 1e-5f};
	mb_engine_weights w;
	mb_error err = {0};
	mb_rng r;

	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(argv[i], "--no-exact") == 0) {
			no_exact = 1;
			continue;
		}
		if (!v) {
			fprintf(stderr, "bench_attribution: %s needs a value\n", argv[i]);
			return 2;
		}
		if (strcmp(argv[i], "--batch") == 0)
			B = (int)strtol(v, NULL, 10);
		else if (strcmp(argv[i], "--seq") == 0)
			T = (int)strtol(v, NULL, 10);
		else if (strcmp(argv[i], "--reps") == 0)
			reps = (int)strtol(v, NULL, 10);
		else if (strcmp(argv[i], "--method") == 0) {
			if (mb_attr_method_parse(&method, v, &err) < 0)
				die(&err, "--method");
		} else {
			fprintf(stderr, "usage: bench_attribution [--batch 4] [--seq 256] [--reps 3] "
					"[--method atp|atp-star|eap] [--no-exact]\n");
			return 2;
		}
		i++;
	}
	if (B < 1 || T < 2 || T > cfg.n_ctx || reps < 1 || reps > 100) {
		fprintf(stderr, "bench_attribution: --batch >= 1, --seq in [2, 1024], --reps in "
				"[1, 100]\n");
		return 2;
	}

	size_t n = mb_engine_weights_layout(&w, &cfg, NULL);
	float *block = malloc(sizeof(float) * n);
	if (!block) {
		fprintf(stderr, "bench_attribution: out of memory for %zu weights\n", n);
		return 1;
	}
	mb_engine_weights_layout(&w, &cfg, block);
	mb_rng_init_named(&r, 1, "bench/attribution/weights", 0);
	for (size_t i = 0; i < n; i++)
		block[i] = (float)(0.02 * mb_rng_normal(&r));
	for (int i = 0; i < cfg.n_layer * cfg.d_model; i++) {
		w.ln1_w[i] = w.ln2_w[i] = 1;
		w.ln1_b[i] = w.ln2_b[i] = 0;
	}
	for (int i = 0; i < cfg.d_model; i++) {
		w.lnf_w[i] = 1;
		w.lnf_b[i] = 0;
	}

	int32_t *clean = malloc(sizeof(int32_t) * (size_t)B * T),
		*corr = malloc(sizeof(int32_t) * (size_t)B * T), *good = malloc(sizeof(int32_t) * B),
		*bad = malloc(sizeof(int32_t) * B);
	mb_rng_init_named(&r, 1, "bench/attribution/tokens", 0);
	for (int i = 0; i < B * T; i++) {
		clean[i] = (int32_t)mb_rng_range(&r, (uint64_t)cfg.n_vocab);
		corr[i] = i % 2 ? (int32_t)mb_rng_range(&r, (uint64_t)cfg.n_vocab) : clean[i];
	}
	for (int b = 0; b < B; b++) {
		good[b] = (int32_t)mb_rng_range(&r, (uint64_t)cfg.n_vocab);
		bad[b] = (int32_t)mb_rng_range(&r, (uint64_t)cfg.n_vocab);
	}
	mb_attr_logit_diff ld = {good, bad, NULL};
	mb_attr_batch ab = {.batch = B, .seq = T, .clean = clean, .corrupt = corr,
			    .logits = MB_LOGITS_LAST, .metric = mb_attr_metric_logit_diff,
			    .payload = &ld};

	mb_engine *ek = NULL, *ex = NULL;
	mb_engine_opts ok = {B, T, 1}, ox = {B, T, 0};
	if (mb_engine_init(&ek, &cfg, &w, &ok, &err) < 0 || mb_engine_init(&ex, &cfg, &w, &ox, &err) < 0)
		die(&err, "engine");
	mb_attr *at = NULL;
	mb_attr_scores *s = NULL;
	mb_attr_opts o = {.method = method};
	if (mb_attr_init(&at, ek, &err) < 0 ||
	    mb_attr_scores_init(&s, &cfg, B, T, method == MB_ATTR_EAP || method == MB_ATTR_EAP_IG,
				&err) < 0)
		die(&err, "attribution");

	int LH = cfg.n_layer * cfg.n_head;
	double *sweep = malloc(sizeof(double) * (size_t)LH * B);
	double *ta = malloc(sizeof(double) * reps * 6), *ca = ta + reps, *tx = ca + reps,
	       *cx = tx + reps, *tf = cx + reps, *cf = tf + reps;
	mb_hook_point zpts[12];
	for (int l = 0; l < cfg.n_layer; l++)
		zpts[l] = (mb_hook_point){MB_HOOK_Z, l};

	/* one untimed run first: the workspace's caches are allocated and touched
	 * once per batch shape, not per batch (the exact sweep's per-batch setup
	 * stays inside its timing, as mb_attr_exact pays it per batch) */
	if (mb_attr_run(s, at, &ab, &o, &err) < 0)
		die(&err, "mb_attr_run");
	for (int rep = 0; rep < reps; rep++) {
		double t0 = now(), c0 = cpu_now();
		if (mb_attr_run(s, at, &ab, &o, &err) < 0)
			die(&err, "mb_attr_run");
		ta[rep] = now() - t0;
		ca[rep] = cpu_now() - c0;
		{
			mb_run rf = {.batch = B, .seq = T, .tokens = clean, .logits = MB_LOGITS_LAST};
			t0 = now();
			c0 = cpu_now();
			if (mb_engine_forward(ex, &rf, &err) < 0)
				die(&err, "forward");
			tf[rep] = now() - t0;
			cf[rep] = cpu_now() - c0;
		}
		if (no_exact) {
			printf("rep %d: %s %.2f s wall (%.2f CPU-s); one forward %.2f s (%.2f CPU-s)\n",
			       rep, mb_attr_method_name(method), ta[rep], ca[rep], tf[rep], cf[rep]);
			fflush(stdout);
			continue;
		}

		mb_effect *fx = NULL;
		mb_effect_heads how = {NULL, NULL, NULL, 0};
		mb_run rc = {.batch = B, .seq = T, .tokens = clean, .logits = MB_LOGITS_LAST};
		mb_run rx = rc;
		rx.tokens = corr;
		t0 = now();
		c0 = cpu_now();
		if (mb_effect_init(&fx, ex, effect_metric, &ab, &err) < 0 ||
		    mb_effect_cache_restart(fx, &err) < 0 || mb_effect_clean(fx, &rc, &err) < 0 ||
		    mb_effect_source(fx, 0, &rx, zpts, cfg.n_layer, NULL, &err) < 0 ||
		    mb_effect_head_sweep(sweep, fx, NULL, &how, 1, &err) < 0)
			die(&err, "exact sweep");
		tx[rep] = now() - t0;
		cx[rep] = cpu_now() - c0;
		mb_effect_free(fx);
		printf("rep %d: %s %.2f s wall (%.2f CPU-s); exact 144-head sweep %.2f s (%.2f CPU-s)\n",
		       rep, mb_attr_method_name(method), ta[rep], ca[rep], tx[rep], cx[rep]);
		fflush(stdout);
	}
	if (no_exact) {
		double a_c = median(ca, reps), f_c = median(cf, reps);
		printf("%s: median %.2f s wall, %.2f CPU-s over %d reps; one forward %.2f CPU-s; "
		       "%.2f forwards\n", mb_attr_method_name(method), median(ta, reps), a_c, reps,
		       f_c, a_c / f_c);
		goto done;
	}
	/* agreement of the mean head effects (sanity only: random weights) */
	double *ma = calloc((size_t)LH * 2, sizeof(double)), *me = ma + LH;
	for (int i = 0; i < LH; i++)
		for (int b = 0; b < B; b++) {
			ma[i] += s->z[(size_t)b * LH + i] / B;
			me[i] += sweep[(size_t)i * B + b] / B;
		}
	double rho = mb_attr_spearman(ma, me, LH);
	double wa = median(ta, reps), wca = median(ca, reps), wx = median(tx, reps),
	       wcx = median(cx, reps), wf = median(tf, reps), wcf = median(cf, reps);
	char g[128];
	mb_gemm_describe(g, sizeof(g));
	printf("\nGPT-2-small shape, B=%d T=%d, random weights, %s, gemm %s, median of %d\n", B, T,
	       mb_build_type(), g, reps);
	printf("%-34s %9s %9s\n", "", "wall s", "CPU s");
	printf("%-34s %9.2f %9.2f\n", mb_attr_method_name(method), wa, wca);
	printf("%-34s %9.2f %9.2f\n", "exact, 144 heads, restart sweep", wx, wcx);
	printf("%-34s %9.2f %9.2f\n", "one forward (no kept activations)", wf, wcf);
	printf("%-34s %9.1fx %8.1fx\n", "ratio exact / attribution", wx / wa, wcx / wca);
	printf("%-34s %9.2f %9.2f\n", "attribution in forwards", wa / wf, wca / wcf);
	printf("%-34s %9.2f %9.2f\n", "exact sweep in forwards", wx / wf, wcx / wcf);
	printf("Spearman(mean AtP z score, mean exact effect) over %d heads: %.3f\n", LH, rho);

	free(ma);
done:
	free(ta);
	free(sweep);
	mb_attr_scores_free(s);
	mb_attr_free(at);
	mb_engine_free(ek);
	mb_engine_free(ex);
	free(clean);
	free(corr);
	free(good);
	free(bad);
	free(block);
	return 0;
}
