/*
 * bench_ioi: the IOI task's costs on a model folder (the zoo's `ioi`, or
 * `ioi-planted`), on items the task generates with the folder's tokenizer.
 *
 * Usage: bench_ioi MODEL_DIR [N_ITEMS] [REPS] [BOS] [HEAD_STEP] [PARTS]
 *   (defaults 64 items, best of 3, no BOS; BOS is a token id; HEAD_STEP 1:
 *   every head of a layer, k: heads 0, k, 2k, ... of each layer; PARTS any of
 *   s (1.), a (2.), e (3.), default "sae"). MODEL_DIR `gpt2-random` is a
 *   GPT-2-small-shaped model (12 layers, 12 heads, D 768, M 3072, V 50257)
 *   with seeded random weights in memory and GPT-2's BPE
 *   (datasets/ioi/gpt2-tokenizer.json; run from the source tree): parts s, a.
 *
 * 1. Head-level activation patching of every (layer, head), hook_z from the
 *    name-swapped prompt into the clean run (effect.h, mb_effect_head_sweep),
 *    three ways: a full forward per patch with the last layer in full (a
 *    writer on its resid_post: the code path before the exact tail), a full
 *    forward per patch with the engine's exact tail (engine.h: exact_tail),
 *    and restarting at the patched layer from the cached clean resid_pre and
 *    hook_z; all three must give the same bits (checked; the values' sha256
 *    is printed), and the ratios are the speedups of reusing the caches.
 * 2. The entry's head patching as the figures run it (src/tasks/ioi.c,
 *    ioi_figures): per batch and direction (clean <- name swap, swap <-
 *    clean) one clean run caching every layer's resid_pre and hook_z and one
 *    source run caching hook_z, hook_q, hook_k and hook_v of every layer,
 *    then 4 sweeps over every (layer, head): hook_z, and the head's q, k, v.
 *    Three ways: a full forward per patch, restarting at the patched layer
 *    (the entry), and the restarts without the patch (an arm that changes
 *    nothing: what the restarts cost with no copy from the source; the
 *    bound a restart can reach). The first two give the same bits (checked;
 *    sha256 printed).
 * 3. The whole IOI entry as the runner runs it: open, prepare (discovery on
 *    one half and the other, stability, completeness, minimality, control)
 *    and run over every item, with the default run params.
 * Times are wall seconds and process CPU seconds (robust when other jobs
 * share the cores). Prints one line per measurement.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mechbench/effect.h>
#include <mechbench/engine.h>
#include <mechbench/logits.h>
#include <mechbench/model.h>
#include <mechbench/rng.h>
#include <mechbench/sha256.h>
#include <mechbench/task.h>
#include <mechbench/tokenizer.h>

#define BATCH 16
#define MAX_T 128

static double now(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what, const mb_error *err)
{
	fprintf(stderr, "bench_ioi: %s: %s\n", what, err->msg);
	exit(1);
}

typedef struct batch {
	int B, T;
	int32_t clean[BATCH * MAX_T], swap[BATCH * MAX_T], len[BATCH], io[BATCH], s[BATCH];
} batch;

static int ld_metric(double *out, const mb_engine *e, int B, void *payload, mb_error *err)
{
	const batch *b = payload;

	(void)err;
	for (int i = 0; i < B; i++)
		out[i] = mb_logits_diff(mb_engine_logits_row(e, i, 0), b->io[i], b->s[i]);
	return 0;
}

static void load(batch *b, const mb_item *items, int B, int bos)
{
	memset(b, 0, sizeof(*b));
	b->B = B;
	for (int i = 0; i < B; i++) {
		json_t *in = items[i].input, *c = json_object_get(in, "tokens");
		int n = (int)json_array_size(c), off = bos >= 0;
		b->len[i] = n + off;
		if (b->len[i] > b->T)
			b->T = b->len[i];
		b->io[i] = (int32_t)json_integer_value(json_object_get(in, "io_id"));
		b->s[i] = (int32_t)json_integer_value(json_object_get(in, "s_id"));
	}
	for (int i = 0; i < B; i++) {
		json_t *in = items[i].input, *c = json_object_get(in, "tokens"),
		       *s = json_object_get(json_object_get(in, "swap"), "tokens");
		int off = bos >= 0;
		if (off)
			b->clean[i * b->T] = b->swap[i * b->T] = bos;
		for (size_t k = 0; k < json_array_size(c); k++) {
			b->clean[i * b->T + off + (int)k] = (int32_t)json_integer_value(json_array_get(c, k));
			b->swap[i * b->T + off + (int)k] = (int32_t)json_integer_value(json_array_get(s, k));
		}
	}
}

/* A writer that leaves every value as it was: observing the last layer's
 * resid_post makes the engine run that layer in full (engine.h). */
static int keep_as_is(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	(void)t;
	(void)payload;
	(void)err;
	return 0;
}

/* The sweep as full forwards per patch computed it before the exact tail:
 * each head's arm with the last layer in full (a hook on its resid_post). */
static int full_layer_sweep(double *out, mb_effect *fx, const mb_engine_config *c, int B,
			    mb_error *err)
{
	static uint8_t mask[BATCH * 64 * 64];
	mb_effect_heads how = {mask, NULL, NULL, 0};
	mb_effect_hook keep = {{MB_HOOK_RESID_POST, c->n_layer - 1}, keep_as_is, NULL};
	mb_effect_arm arm = {.heads = &how, .hooks = &keep, .n_hooks = 1};
	int L = c->n_layer, H = c->n_head, rc;

	for (int l = 0; l < L; l++)
		for (int h = 0; h < H; h++) {
			memset(mask, 0, (size_t)B * L * H);
			for (int b = 0; b < B; b++)
				mask[((size_t)b * L + l) * H + h] = 1;
			rc = mb_effect_run_arm(out + ((size_t)l * H + h) * B, NULL, fx, &arm, err);
			if (rc < 0)
				return rc;
		}
	return 0;
}

/* One sweep over items[0..n): restart 0 full forwards per patch, 1 restart
 * at the patched layer, 2 full forwards with the last layer in full (the
 * code path before the exact tail); out (n_batches, L, H, B).
 * *cpu: its process CPU seconds; *shared: those of the clean and source runs
 * (cached the same way in both modes), so *cpu - *shared is the patches'. */
static double sweep(double *out, mb_engine *e, const mb_engine_config *c, const mb_item *items,
		    size_t n, int bos, int restart, double *cpu, double *shared)
{
	double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID), f0;
	mb_error err = {0};
	batch b;

	for (size_t i0 = 0; i0 < n; i0 += BATCH) {
		int B = (int)(n - i0 < BATCH ? n - i0 : BATCH);
		mb_effect *fx = NULL;
		mb_hook_point zs[64];
		uint8_t mask[BATCH * 1024];
		mb_effect_heads how = {mask, NULL, NULL, 0};
		mb_run clean, swap;

		load(&b, items + i0, B, bos);
		clean = (mb_run){.batch = B, .seq = b.T, .tokens = b.clean, .lengths = b.len,
				 .logits = MB_LOGITS_LAST};
		swap = clean;
		swap.tokens = b.swap;
		swap.logits = MB_LOGITS_NONE;
		for (int l = 0; l < c->n_layer; l++)
			zs[l] = (mb_hook_point){MB_HOOK_Z, l};
		f0 = now(CLOCK_PROCESS_CPUTIME_ID);
		if (mb_effect_init(&fx, e, ld_metric, &b, &err) < 0 ||
		    mb_effect_cache_restart(fx, &err) < 0 || mb_effect_clean(fx, &clean, &err) < 0 ||
		    mb_effect_source(fx, 0, &swap, zs, c->n_layer, NULL, &err) < 0)
			die("clean and source runs", &err);
		*shared += now(CLOCK_PROCESS_CPUTIME_ID) - f0;
		if (restart < 2 &&
		    mb_effect_head_sweep(out + i0 / BATCH * (size_t)c->n_layer * c->n_head * BATCH,
					 fx, NULL, &how, restart, &err) < 0)
			die("head sweep", &err);
		if (restart == 2 &&
		    full_layer_sweep(out + i0 / BATCH * (size_t)c->n_layer * c->n_head * BATCH, fx,
				     c, B, &err) < 0)
			die("head sweep, full last layer", &err);
		mb_effect_free(fx);
	}
	*cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
	return now(CLOCK_MONOTONIC) - t0;
}

/* One arm of the entry's sweeps, mode 0 or 2: head h of layer l, `kind`
 * (hook_z, q, k or v) patched from source slot 1 by a full forward (mode
 * 0, ioi.c's arms with start_layer 0), or the entry's restart with nothing
 * patched (mode 2: at layer l's hook_z, or for q/k/v at the last layer its
 * q/k/v, as the entry's arms start). */
static int analysis_arm(double *out, mb_effect *fx, uint8_t *mask, const mb_engine_config *c,
			int B, mb_hook_kind kind, int l, int h, int mode, mb_error *err)
{
	mb_hook_point p = {kind, l};
	mb_iv_spec iv = {.point = p, .unit = h, .op = MB_IV_PATCH,
			 .source = mb_effect_source_get(fx, 1, p)};
	mb_effect_heads how = {mask, NULL, NULL, 1};
	mb_effect_arm arm = {.start_layer = mode ? l : 0};

	memset(mask, 0, (size_t)B * c->n_layer * c->n_head);
	if (kind == MB_HOOK_Z || (mode == 2 && l < c->n_layer - 1)) {
		/* mb_effect_head_sweep's arm for one head; mode 2: a mask of no
		 * head (no hook, the restart at hook_z) */
		for (int b = 0; mode < 2 && b < B; b++)
			mask[((size_t)b * c->n_layer + l) * c->n_head + h] = 1;
		arm.heads = &how;
		arm.start_z = mode != 0;
	} else if (mode < 2) {
		arm.iv = &iv;
		arm.n_iv = 1;
	}
	return mb_effect_run_arm(out, NULL, fx, &arm, err);
}

/* The entry's head patching (2. above) over items[0..n), heads h % step ==
 * 0 of each layer; out (n_batches, 2, 4, L, H, BATCH), skipped heads
 * untouched. Mode 1 is the entry's code (ioi.c sweep(): mb_effect_head_sweep
 * and mb_effect_head_input_sweep), 0 and 2 analysis_arm. *cpu its process
 * CPU seconds, *shared those of the clean and source runs. */
static void analysis(double *out, mb_engine *e, const mb_engine_config *c, const mb_item *items,
		     size_t n, int bos, int mode, int step, double *cpu, double *shared)
{
	static const mb_hook_kind kinds[4] = {MB_HOOK_Z, MB_HOOK_Q, MB_HOOK_K, MB_HOOK_V};
	int L = c->n_layer, H = c->n_head;
	size_t cell = 8 * (size_t)L * H * BATCH;
	double c0 = now(CLOCK_PROCESS_CPUTIME_ID), f0;
	uint8_t *mask = malloc((size_t)BATCH * L * H), *heads = calloc((size_t)L * H, 1);
	mb_hook_point *pts = malloc(sizeof(*pts) * 4 * (size_t)L);
	double *eff = malloc(sizeof(double) * (size_t)L * H * BATCH);
	mb_error err = {0};
	batch b;

	if (!mask || !pts || !heads || !eff)
		die("analysis", &(mb_error){.msg = "out of memory"});
	for (int l = 0; l < L; l++) {
		for (int k = 0; k < 4; k++)
			pts[l * 4 + k] = (mb_hook_point){kinds[k], l};
		for (int h = 0; h < H; h += step)
			heads[l * H + h] = 1;
	}
	for (size_t i0 = 0; i0 < n; i0 += BATCH) {
		int B = (int)(n - i0 < BATCH ? n - i0 : BATCH);

		load(&b, items + i0, B, bos);
		for (int dir = 0; dir < 2; dir++) {
			mb_effect *fx = NULL;
			mb_run clean = {.batch = B, .seq = b.T, .tokens = dir ? b.swap : b.clean,
					.lengths = b.len, .logits = MB_LOGITS_LAST};
			mb_run src = clean;
			int rc = 0;

			src.tokens = dir ? b.clean : b.swap;
			src.logits = MB_LOGITS_NONE;
			f0 = now(CLOCK_PROCESS_CPUTIME_ID);
			if (mb_effect_init(&fx, e, ld_metric, &b, &err) < 0 ||
			    mb_effect_cache_restart(fx, &err) < 0)
				die("analysis: effect", &err);
			for (int l = 0; l < L && rc == 0; l++)
				for (int k = 1; k < 4 && rc == 0; k++)
					rc = mb_effect_cache(fx, pts[l * 4 + k], &err);
			if (rc < 0 || mb_effect_clean(fx, &clean, &err) < 0 ||
			    mb_effect_source(fx, 1, &src, pts, 4 * L, NULL, &err) < 0)
				die("analysis: clean and source runs", &err);
			*shared += now(CLOCK_PROCESS_CPUTIME_ID) - f0;
			for (int k = 0; k < 4; k++) {
				double *o = out + i0 / BATCH * cell + ((size_t)dir * 4 + k) * L * H * BATCH;
				mb_effect_heads how = {mask, NULL, NULL, 1};

				if (mode == 1) {
					rc = k == 0 ? mb_effect_head_sweep(eff, fx, heads, &how, 1, &err)
						    : mb_effect_head_input_sweep(eff, fx, heads, kinds[k],
										 1, &err);
					if (rc < 0)
						die("analysis sweep", &err);
					for (int lh = 0; lh < L * H; lh++)
						if (heads[lh])
							memcpy(o + (size_t)lh * BATCH,
							       eff + (size_t)lh * B, sizeof(double) * B);
					continue;
				}
				for (int l = 0; l < L; l++)
					for (int h = 0; h < H; h += step)
						if (analysis_arm(o + ((size_t)l * H + h) * BATCH, fx, mask,
								 c, B, kinds[k], l, h, mode, &err) < 0)
							die("analysis arm", &err);
			}
			mb_effect_free(fx);
		}
	}
	free(mask);
	free(heads);
	free(pts);
	free(eff);
	*cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
}

/* A GPT-2-small-shaped model (the shape only: 12 layers, 12 heads, D 768,
 * M 3072, V 50257, 1024 positions, tied) with weights drawn from a seeded
 * stream, small enough that every logit is finite; GPT-2's tokenizer. */
static void random_gpt2(mb_model *m)
{
	mb_engine_config c = {.n_vocab = 50257, .n_ctx = 1024, .d_model = 768, .n_layer = 12,
			      .n_head = 12, .d_head = 64, .d_mlp = 3072,
			      .act = MB_ACT_GELU_NEW, .norm = MB_NORM_LN, .tied = 1,
			      .ln_eps = 1e-5f};
	mb_error err = {0};
	mb_rng r;
	size_t np;

	memset(m, 0, sizeof(*m));
	np = mb_engine_weights_layout(&m->w, &c, NULL);
	m->cfg = c;
	m->n_params = np;
	if (!(m->params = malloc(sizeof(float) * np)))
		die("gpt2-random", &(mb_error){.msg = "out of memory"});
	mb_engine_weights_layout(&m->w, &c, m->params);
	mb_rng_init(&r, 17, 0);
	for (size_t i = 0; i < np; i++)
		m->params[i] = 0.04f * (mb_rng_uniformf(&r) - 0.5f);
	for (int l = 0; l < c.n_layer; l++)
		for (int i = 0; i < c.d_model; i++)
			m->w.ln1_w[(size_t)l * c.d_model + i] = m->w.ln2_w[(size_t)l * c.d_model + i] =
				1.0f;
	for (int i = 0; i < c.d_model; i++)
		m->w.lnf_w[i] = 1.0f;
	if (mb_tokenizer_load(&m->tok, "datasets/ioi/gpt2-tokenizer.json", &err) < 0)
		die("datasets/ioi/gpt2-tokenizer.json", &err);
}

/* Part 2: the entry's head patching three ways, best of reps. */
static void run_analysis(mb_engine *e, const mb_engine_config *c, const mb_item *items, size_t n,
			 int bos, int reps, int step)
{
	static const char *const what[3] = {"full forward per patch          ",
					    "restart at the layer (the entry)",
					    "restarts with nothing patched   "};
	size_t cells = ((n + BATCH - 1) / BATCH) * 8 * (size_t)c->n_layer * c->n_head * BATCH;
	double cpu[3] = {1e30, 1e30, 1e30}, arms[3] = {1e30, 1e30, 1e30}, sh_best = 1e30, *out[3];
	int per_layer = (c->n_head + step - 1) / step;
	char sha[MB_SHA256_HEX_LEN];

	for (int m = 0; m < 3; m++)
		if (!(out[m] = calloc(cells, sizeof(double))))
			die("analysis", &(mb_error){.msg = "out of memory"});
	for (int r = 0; r < reps; r++)
		for (int m = 0; m < 3; m++) {
			double t, sh = 0;
			analysis(out[m], e, c, items, n, bos, m, step, &t, &sh);
			if (t < cpu[m])
				cpu[m] = t;
			if (t - sh < arms[m])
				arms[m] = t - sh;
			if (sh < sh_best)
				sh_best = sh;
		}
	printf("the entry's head patching (2 directions x z, q, k, v), %zu items, %d x %d heads "
	       "(%d per layer swept), best of %d, process CPU seconds:\n",
	       n, c->n_layer, c->n_head, per_layer, reps);
	for (int m = 0; m < 3; m++)
		printf("  %s %.3f s (patches alone %.3f s)\n", what[m], cpu[m], arms[m]);
	printf("  clean and source runs (in each): %.3f s\n", sh_best);
	printf("  restart vs full forwards: x%.2f (patches alone x%.2f); bound (restarts with "
	       "nothing patched) x%.2f (patches alone x%.2f)\n",
	       cpu[0] / cpu[1], arms[0] / arms[1], cpu[0] / cpu[2], arms[0] / arms[2]);
	if (step > 1) {
		/* every head: each layer's heads cost the same, the shared runs once */
		double k = (double)c->n_head / per_layer;
		printf("  scaled to all %d heads per layer (shared runs once, patches x%.0f): "
		       "x%.2f, bound x%.2f\n",
		       c->n_head, k, (sh_best + k * arms[0]) / (sh_best + k * arms[1]),
		       (sh_best + k * arms[0]) / (sh_best + k * arms[2]));
	}
	mb_sha256_hex_buf(sha, out[1], cells * sizeof(double));
	printf("  bits equal (full forwards, restarts): %s; sha256 of the %zu values (doubles): "
	       "%s\n",
	       memcmp(out[0], out[1], cells * sizeof(double)) == 0 ? "yes" : "NO", cells, sha);
	for (int m = 0; m < 3; m++)
		free(out[m]);
}

int main(int argc, char **argv)
{
	const mb_task *t = mb_task_find("ioi");
	size_t want = argc > 2 ? (size_t)strtol(argv[2], NULL, 10) : 64;
	int reps = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 3;
	int bos = argc > 4 ? (int)strtol(argv[4], NULL, 10) : -1;
	int step = argc > 5 ? (int)strtol(argv[5], NULL, 10) : 1;
	const char *parts = argc > 6 ? argv[6] : "sae";
	int rnd = argc > 1 && strcmp(argv[1], "gpt2-random") == 0;
	char tok[4096], sha[MB_SHA256_HEX_LEN];
	mb_item_list items = {0};
	mb_error err = {0};
	mb_model *m = NULL;
	mb_engine *e = NULL;
	mb_engine_opts o = {.max_batch = BATCH, .max_seq = MAX_T};
	json_t *gp, *rp;
	double best[3] = {1e30, 1e30, 1e30}, best_cpu[3] = {1e30, 1e30, 1e30}, *out[3];
	double best_arms[3] = {1e30, 1e30, 1e30};
	double plain_wall = 0, plain_cpu = 0;
	size_t n, cells;

	if (argc < 2 || !t || step < 1) {
		fprintf(stderr, "usage: bench_ioi MODEL_DIR|gpt2-random [N_ITEMS] [REPS] [BOS] "
				"[HEAD_STEP] [PARTS]\n");
		return 2;
	}
	if (rnd)
		snprintf(tok, sizeof(tok), "datasets/ioi/gpt2-tokenizer.json");
	else
		snprintf(tok, sizeof(tok), "%s/tokenizer.json", argv[1]);
	if (mb_sha256_hex_file(sha, tok, &err) < 0)
		die(tok, &err);
	gp = json_pack("{s:s, s:s, s:i}", "tokenizer", tok, "tokenizer_sha256", sha,
		       "n_per_stratum", (int)(want / 36 + 1));
	if (t->generate(&items, 1, gp, &err) < 0)
		die("generate", &err);
	n = want < items.n ? want : items.n;
	if (rnd) {
		if (!(m = malloc(sizeof(*m))))
			die("gpt2-random", &(mb_error){.msg = "out of memory"});
		random_gpt2(m);
	} else if (mb_model_load(&m, argv[1], &err) < 0) {
		die(argv[1], &err);
	}
	if (o.max_seq > m->cfg.n_ctx)
		o.max_seq = m->cfg.n_ctx;
	if (mb_engine_init(&e, &m->cfg, &m->w, &o, &err) < 0)
		die(argv[1], &err);
	if (strchr(parts, 'a'))
		run_analysis(e, &m->cfg, items.items, n, bos, reps, step);
	if (!strchr(parts, 's'))
		goto entry;
	cells = ((n + BATCH - 1) / BATCH) * (size_t)m->cfg.n_layer * m->cfg.n_head * BATCH;
	out[0] = calloc(cells, sizeof(double));
	out[1] = calloc(cells, sizeof(double));
	out[2] = calloc(cells, sizeof(double));
	for (int r = 0; r < reps; r++)
		for (int restart = 0; restart < 3; restart++) {
			double cpu, sh = 0, w = sweep(out[restart], e, &m->cfg, items.items, n, bos,
						      restart, &cpu, &sh);
			if (w < best[restart])
				best[restart] = w;
			if (cpu < best_cpu[restart])
				best_cpu[restart] = cpu;
			if (cpu - sh < best_arms[restart])
				best_arms[restart] = cpu - sh;
		}
	printf("head patching (hook_z from the name swap), %zu items, %d x %d heads, best of %d:\n"
	       "  full forward per patch, last layer in full  %.3f s wall, %.3f s CPU (patches "
	       "alone %.3f s)\n"
	       "  full forward per patch, exact tail         %.3f s wall, %.3f s CPU (patches "
	       "alone %.3f s)\n"
	       "  restart at the layer, exact tail           %.3f s wall, %.3f s CPU (patches "
	       "alone %.3f s)\n"
	       "  restart vs full forwards, last layer in full: x%.2f wall, x%.2f CPU; patches "
	       "alone x%.2f CPU\n"
	       "  restart vs full forwards, exact tail:         x%.2f wall, x%.2f CPU; patches "
	       "alone x%.2f CPU\n"
	       "  bits equal (all three): %s\n",
	       n, m->cfg.n_layer, m->cfg.n_head, reps, best[2], best_cpu[2], best_arms[2], best[0],
	       best_cpu[0], best_arms[0], best[1], best_cpu[1], best_arms[1], best[2] / best[1],
	       best_cpu[2] / best_cpu[1], best_arms[2] / best_arms[1], best[0] / best[1],
	       best_cpu[0] / best_cpu[1], best_arms[0] / best_arms[1],
	       memcmp(out[0], out[1], cells * sizeof(double)) == 0 &&
		       memcmp(out[2], out[1], cells * sizeof(double)) == 0
		   ? "yes"
		   : "NO");
	/* the values' digest: the same before and after a change that must not move them */
	mb_sha256_hex_buf(sha, out[1], cells * sizeof(double));
	printf("  sha256 of the %zu patched values (doubles): %s\n", cells, sha);
	/* the unit of the entry's cost: one plain forward over every item */
	{
		double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
		batch b;
		for (size_t i0 = 0; i0 < items.n; i0 += BATCH) {
			int B = (int)(items.n - i0 < BATCH ? items.n - i0 : BATCH);
			mb_run run;
			load(&b, items.items + i0, B, bos);
			run = (mb_run){.batch = B, .seq = b.T, .tokens = b.clean, .lengths = b.len,
				       .logits = MB_LOGITS_LAST};
			if (mb_engine_forward(e, &run, &err) < 0)
				die("forward", &err);
		}
		plain_wall = now(CLOCK_MONOTONIC) - t0;
		plain_cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
	}
	free(out[0]);
	free(out[1]);
	free(out[2]);
entry:
	mb_engine_free(e);
	mb_model_free(m);
	if (rnd || !strchr(parts, 'e'))
		goto done;
	/* the whole entry */
	rp = bos >= 0 ? json_pack("{s:i}", "bos", bos) : json_object();
	{
		double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID), t1, t2;
		double *v = calloc(items.n * t->n_metrics, sizeof(double));
		json_t *art = NULL;
		void *st = NULL;

		if (t->open(&st, argv[1], rp, &err) < 0 ||
		    t->prepare(st, items.items, items.n, &art, &err) < 0)
			die("open/prepare", &err);
		t1 = now(CLOCK_MONOTONIC);
		for (size_t i = 0; i < items.n; i += t->batch) {
			size_t b = items.n - i < t->batch ? items.n - i : t->batch;
			if (mb_task_run(t, st, items.items + i, b, v + i * t->n_metrics, &err) < 0)
				die("run", &err);
		}
		t2 = now(CLOCK_MONOTONIC);
		double cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
		printf("whole IOI entry, %zu items (default params): open + prepare %.3f s, run "
		       "%.3f s, total %.3f s wall, %.3f s CPU; circuit of %zu nodes\n"
		       "  one plain forward over the items: %.4f s wall, %.4f s CPU: the entry costs "
		       "x%.0f wall, x%.0f CPU of it\n",
		       items.n, t1 - t0, t2 - t1, t2 - t0, cpu,
		       json_array_size(json_object_get(art, "nodes")), plain_wall, plain_cpu,
		       (t2 - t0) / plain_wall, cpu / plain_cpu);
		t->close(st);
		json_decref(art);
		free(v);
	}
	json_decref(rp);
done:
	json_decref(gp);
	mb_item_list_dispose(&items);
	return 0;
}
