/*
 * bench_ioi: the IOI task's costs on a model folder (the zoo's `ioi`, or
 * `ioi-planted`), on items the task generates with the folder's tokenizer.
 *
 * Usage: bench_ioi MODEL_DIR [N_ITEMS] [REPS] [BOS]
 *   (defaults 64 items, best of 3, no BOS; BOS is a token id)
 *
 * 1. Head-level activation patching of every (layer, head), hook_z from the
 *    name-swapped prompt into the clean run (effect.h, mb_effect_head_sweep),
 *    three ways: a full forward per patch with the last layer in full (a
 *    writer on its resid_post: the code path before the exact tail), a full
 *    forward per patch with the engine's exact tail (engine.h: exact_tail),
 *    and restarting at the patched layer from the cached clean resid_pre and
 *    hook_z; all three must give the same bits (checked; the values' sha256
 *    is printed), and the ratios are the speedups of reusing the caches.
 * 2. The whole IOI entry as the runner runs it: open, prepare (discovery on
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
#include <mechbench/sha256.h>
#include <mechbench/task.h>

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

int main(int argc, char **argv)
{
	const mb_task *t = mb_task_find("ioi");
	size_t want = argc > 2 ? (size_t)strtol(argv[2], NULL, 10) : 64;
	int reps = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 3;
	int bos = argc > 4 ? (int)strtol(argv[4], NULL, 10) : -1;
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

	if (argc < 2 || !t) {
		fprintf(stderr, "usage: bench_ioi MODEL_DIR [N_ITEMS] [REPS] [BOS]\n");
		return 2;
	}
	snprintf(tok, sizeof(tok), "%s/tokenizer.json", argv[1]);
	if (mb_sha256_hex_file(sha, tok, &err) < 0)
		die(tok, &err);
	gp = json_pack("{s:s, s:s, s:i}", "tokenizer", tok, "tokenizer_sha256", sha,
		       "n_per_stratum", (int)(want / 36 + 1));
	if (t->generate(&items, 1, gp, &err) < 0)
		die("generate", &err);
	n = want < items.n ? want : items.n;
	if (mb_model_load(&m, argv[1], &err) < 0)
		die(argv[1], &err);
	if (o.max_seq > m->cfg.n_ctx)
		o.max_seq = m->cfg.n_ctx;
	if (mb_engine_init(&e, &m->cfg, &m->w, &o, &err) < 0)
		die(argv[1], &err);
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
	mb_engine_free(e);
	mb_model_free(m);
	free(out[0]);
	free(out[1]);
	free(out[2]);

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
	json_decref(gp);
	json_decref(rp);
	mb_item_list_dispose(&items);
	return 0;
}
