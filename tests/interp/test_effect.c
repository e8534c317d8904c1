/*
 * effect: the paired-effect layer on the engine fixtures (tests/fixtures/
 * engine, gpt2_ln_gelu and attn_only, batch0). Each arm's per-item effect
 * must equal, bit for bit, the metric of an independently built forward
 * (interventions.h hooks registered by hand, or mb_interp_path_patch) minus
 * the metric of a plain forward; an item's effects must be the same alone
 * and in a batch, and on 1 and 2 threads; control draws must depend only on
 * the item's key.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/effect.h>
#include <mechbench/logits.h>

#include "support/engine_fx.h"

/* Tokens of one batch; the metric's payload. */
typedef struct batch {
	const int32_t *tok; /* (B, T) */
	const int32_t *len; /* (B) */
	int T, V;
} batch;

/* Mean next-token cross-entropy over item b's valid positions. */
static int ce_metric(double *out, const mb_engine *e, int B, void *payload, mb_error *err)
{
	const batch *bt = payload;

	(void)err;
	for (int b = 0; b < B; b++) {
		double s = 0;
		int n = bt->len[b];
		for (int t = 1; t < n; t++)
			s += mb_logits_ce(NULL, mb_engine_logits_row(e, b, t - 1), bt->V,
					  bt->tok[(size_t)b * bt->T + t], MB_LOGITS_LIBM);
		out[b] = n > 1 ? s / (n - 1) : 0;
	}
	return 0;
}

typedef struct fix {
	mb_model *m;
	int32_t *tok, *len, *src_tok;
	int B, T, L, H, Dh, D;
	mb_engine *e;
	batch bt;
} fix;

static void fix_open(fix *f, const char *model)
{
	memset(f, 0, sizeof(*f));
	f->m = fx_model(model);
	fx_batch(model, "batch0", &f->tok, &f->len, &f->B, &f->T);
	f->src_tok = fx_source_tokens(model);
	f->e = fx_engine(f->m, f->B, f->T, 0);
	f->L = f->m->cfg.n_layer;
	f->H = f->m->cfg.n_head;
	f->Dh = f->m->cfg.d_head;
	f->D = f->m->cfg.d_model;
	f->bt = (batch){f->tok, f->len, f->T, f->m->cfg.n_vocab};
}

static void fix_close(fix *f)
{
	mb_engine_free(f->e);
	mb_model_free(f->m);
	free(f->tok);
	free(f->len);
	free(f->src_tok);
}

/* The metric of a plain forward of the batch with hooks h (NULL: none). */
static void direct(double *out, fix *f, const mb_hooks *h)
{
	mb_error err = {0};
	mb_run r = fx_run(f->tok, f->len, f->B, f->T);

	r.hooks = h;
	cr_assert_eq(mb_engine_forward(f->e, &r, &err), 0, "%s", err.msg);
	ce_metric(out, f->e, f->B, &f->bt, &err);
}

static mb_effect *effect_clean(fix *f, int restart)
{
	mb_effect *fx;
	mb_error err = {0};
	mb_run r = fx_run(f->tok, f->len, f->B, f->T);

	cr_assert_eq(mb_effect_init(&fx, f->e, ce_metric, &f->bt, &err), 0, "%s", err.msg);
	for (int l = 0; l < f->L; l++) {
		mb_hook_point p = {MB_HOOK_PATTERN, l}, z = {MB_HOOK_Z, l};
		cr_assert_eq(mb_effect_cache(fx, p, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_effect_cache(fx, z, &err), 0, "%s", err.msg);
	}
	if (restart)
		cr_assert_eq(mb_effect_cache_restart(fx, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_effect_clean(fx, &r, &err), 0, "%s", err.msg);
	return fx;
}

static void expect_same(const double *got, const double *want, int n, const char *what)
{
	for (int b = 0; b < n; b++)
		cr_expect(memcmp(&got[b], &want[b], sizeof(double)) == 0,
			  "%s: item %d: %.17g, by hand %.17g", what, b, got[b], want[b]);
}

Test(effect, per_item_head_arms_equal_hand_built_forwards_minus_clean)
{
	fix f;
	mb_error err = {0};
	double clean[64], arm[64], eff[64], want[64];
	mb_hooks *h;
	mb_iv *iv;
	mb_effect *fx;
	float mean[64];

	fix_open(&f, "gpt2_ln_gelu");
	cr_assert_leq(f.B, 64);
	fx = effect_clean(&f, 0);
	direct(clean, &f, NULL);
	expect_same(mb_effect_clean_values(fx), clean, f.B, "clean");
	cr_assert_eq(mb_hooks_init(&h, &err), 0);
	cr_assert_eq(mb_iv_init(&iv, &err), 0);

	/* zero ablation of head (1, 2) on every item vs mb_iv_ablate_head */
	{
		uint8_t *mask = calloc((size_t)f.B * f.L * f.H, 1);
		mb_effect_heads heads = {mask, NULL, NULL, -1};
		mb_effect_arm a = {.heads = &heads};
		for (int b = 0; b < f.B; b++)
			mask[((size_t)b * f.L + 1) * f.H + 2] = 1;
		cr_assert_eq(mb_effect_run_arm(eff, arm, fx, &a, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_iv_ablate_head(iv, &f.m->cfg, 1, 2, NULL, &err), 0);
		cr_assert_eq(mb_iv_attach(iv, h, &err), 0);
		direct(want, &f, h);
		expect_same(arm, want, f.B, "zero ablation, arm value");
		for (int b = 0; b < f.B; b++)
			want[b] -= clean[b];
		expect_same(eff, want, f.B, "zero ablation, effect");
		free(mask);
	}
	/* mean ablation of (0, 1) with every pattern frozen, on every item, vs
	 * freeze + mean-ablate interventions over an independent cache; then on
	 * even items only: odd items keep effect 0, even items the same effect */
	{
		uint8_t *mask = calloc((size_t)f.B * f.L * f.H, 1);
		float *values = calloc((size_t)f.L * f.H * f.Dh, sizeof(float));
		mb_effect_heads heads = {mask, values, NULL, -1};
		mb_effect_arm a = {.freeze_patterns = 1, .heads = &heads};
		mb_hook_point z0 = {MB_HOOK_Z, 0};
		mb_cache *pc;
		mb_hooks *ph;
		mb_run r = fx_run(f.tok, f.len, f.B, f.T);

		cr_assert_eq(mb_iv_unit_mean(mean, mb_effect_clean_get(fx, z0), 1, &err), 0);
		memcpy(values + ((size_t)0 * f.H + 1) * f.Dh, mean, sizeof(float) * f.Dh);
		for (int b = 0; b < f.B; b++)
			mask[((size_t)b * f.L + 0) * f.H + 1] = 1;
		cr_assert_eq(mb_effect_run_arm(eff, arm, fx, &a, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_cache_init(&pc, &err), 0);
		cr_assert_eq(mb_hooks_init(&ph, &err), 0);
		for (int l = 0; l < f.L; l++) {
			mb_hook_point p = {MB_HOOK_PATTERN, l};
			cr_assert_eq(mb_cache_add(pc, p, &err), 0);
		}
		cr_assert_eq(mb_cache_attach(pc, ph, &err), 0);
		r.hooks = ph;
		cr_assert_eq(mb_engine_forward(f.e, &r, &err), 0, "%s", err.msg);
		mb_hooks_clear(h);
		mb_iv_clear(iv);
		cr_assert_eq(mb_iv_freeze_patterns(iv, &f.m->cfg, pc, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_iv_ablate_head(iv, &f.m->cfg, 0, 1, mean, &err), 0);
		cr_assert_eq(mb_iv_attach(iv, h, &err), 0);
		direct(want, &f, h);
		for (int b = 0; b < f.B; b++)
			want[b] -= clean[b];
		expect_same(eff, want, f.B, "frozen mean ablation, effect");
		memset(mask, 0, (size_t)f.B * f.L * f.H);
		for (int b = 0; b < f.B; b += 2)
			mask[((size_t)b * f.L + 0) * f.H + 1] = 1;
		cr_assert_eq(mb_effect_run_arm(arm, NULL, fx, &a, &err), 0, "%s", err.msg);
		for (int b = 0; b < f.B; b++)
			if (b % 2)
				cr_expect_eq(arm[b], 0.0, "item %d not ablated: %.3g", b, arm[b]);
			else
				expect_same(&arm[b], &eff[b], 1, "even item");
		mb_cache_free(pc);
		mb_hooks_free(ph);
		free(mask);
		free(values);
	}
	/* per-group values: item b takes group b % 2's value for head (1, 3); each
	 * group's items match a forward setting that value on every item */
	{
		uint8_t *mask = calloc((size_t)f.B * f.L * f.H, 1);
		float *values = calloc((size_t)2 * f.L * f.H * f.Dh, sizeof(float));
		int32_t group[64];
		mb_effect_heads heads = {mask, values, group, -1};
		mb_effect_arm a = {.heads = &heads};

		for (int g = 0; g < 2; g++)
			for (int k = 0; k < f.Dh; k++)
				values[(((size_t)g * f.L + 1) * f.H + 3) * f.Dh + k] =
					(g ? 0.5f : -0.75f) * (float)(k % 3);
		for (int b = 0; b < f.B; b++) {
			mask[((size_t)b * f.L + 1) * f.H + 3] = 1;
			group[b] = b % 2;
		}
		cr_assert_eq(mb_effect_run_arm(eff, arm, fx, &a, &err), 0, "%s", err.msg);
		for (int g = 0; g < 2; g++) {
			mb_hooks_clear(h);
			mb_iv_clear(iv);
			cr_assert_eq(mb_iv_ablate_head(iv, &f.m->cfg, 1, 3,
						       values + (((size_t)g * f.L + 1) * f.H + 3) * f.Dh,
						       &err), 0);
			cr_assert_eq(mb_iv_attach(iv, h, &err), 0);
			direct(want, &f, h);
			for (int b = g; b < f.B; b += 2)
				expect_same(&arm[b], &want[b], 1, g ? "group 1" : "group 0");
		}
		free(mask);
		free(values);
	}
	mb_iv_free(iv);
	mb_hooks_free(h);
	mb_effect_free(fx);
	fix_close(&f);
}

Test(effect, path_arm_from_a_source_delta_equals_mb_interp_path_patch)
{
	fix f;
	mb_error err = {0};
	double clean[64], want[64], eff[64];
	mb_effect *fx;
	mb_hook_point z0 = {MB_HOOK_Z, 0}, rp1 = {MB_HOOK_RESID_PRE, 1};
	float *delta;

	fix_open(&f, "gpt2_ln_gelu");
	fx = effect_clean(&f, 1);
	direct(clean, &f, NULL);
	{
		mb_run src = fx_run(f.src_tok, f.len, f.B, f.T);
		src.logits = MB_LOGITS_NONE;
		cr_assert_eq(mb_effect_source(fx, 1, &src, &z0, 1, NULL, &err), 0, "%s", err.msg);
	}
	delta = malloc(sizeof(float) * (size_t)f.B * f.T * f.D);
	mb_interp_head_delta_patch(delta, &f.m->cfg, &f.m->w, 0, 3, mb_effect_clean_get(fx, z0),
				   mb_effect_source_get(fx, 1, z0));
	cr_assert_not_null(mb_effect_clean_get(fx, rp1));
	for (int via = 0; via < 3; via++) {
		mb_effect_path p = {1, 1, via, delta};
		mb_effect_arm a = {.path = &p};
		mb_path path = {0, 3, 1, 1, via};
		mb_run clean_run = fx_run(f.tok, f.len, f.B, f.T);
		mb_run src_run = fx_run(f.src_tok, f.len, f.B, f.T);

		cr_assert_eq(mb_effect_run_arm(eff, NULL, fx, &a, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_interp_path_patch(f.e, &clean_run, &src_run, &path, &err), 0, "%s",
			     err.msg);
		ce_metric(want, f.e, f.B, &f.bt, &err);
		for (int b = 0; b < f.B; b++)
			want[b] -= clean[b];
		expect_same(eff, want, f.B, "path patch");
	}
	free(delta);
	mb_effect_free(fx);
	fix_close(&f);
}

Test(effect, head_sweep_with_restart_equals_full_forward_arms)
{
	fix f;
	mb_error err = {0};
	mb_effect *fx;
	mb_effect_heads zero = {NULL, NULL, NULL, -1};
	double *full, *fast;
	size_t n;

	fix_open(&f, "gpt2_ln_gelu");
	n = (size_t)f.L * f.H * f.B;
	full = malloc(sizeof(double) * n);
	fast = malloc(sizeof(double) * n);
	fx = effect_clean(&f, 1);
	cr_assert_eq(mb_effect_head_sweep(full, fx, NULL, &zero, 0, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_effect_head_sweep(fast, fx, NULL, &zero, 1, &err), 0, "%s", err.msg);
	cr_expect_eq(memcmp(full, fast, sizeof(double) * n), 0, "restarted sweep differs");
	/* patching every head from the clean run itself moves nothing */
	{
		mb_run self = fx_run(f.tok, f.len, f.B, f.T);
		mb_hook_point pts[2] = {{MB_HOOK_Z, 0}, {MB_HOOK_Z, 1}};
		mb_effect_heads from = {NULL, NULL, NULL, 0};
		self.logits = MB_LOGITS_NONE;
		cr_assert_eq(mb_effect_source(fx, 0, &self, pts, 2, NULL, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_effect_head_sweep(fast, fx, NULL, &from, 1, &err), 0, "%s",
			     err.msg);
		for (size_t i = 0; i < n; i++)
			cr_expect_eq(fast[i], 0.0, "entry %zu: %.3g", i, fast[i]);
	}
	free(full);
	free(fast);
	mb_effect_free(fx);
	fix_close(&f);
}

/* Metric on the last position only: logit of the item's last token there
 * (MB_LOGITS_LAST, where the engine's last layer takes its exact tail). */
static int last_metric(double *out, const mb_engine *e, int B, void *payload, mb_error *err)
{
	const batch *bt = payload;

	(void)err;
	for (int b = 0; b < B; b++)
		out[b] = mb_engine_logits_row(e, b, 0)[bt->tok[(size_t)b * bt->T + bt->len[b] - 1]];
	return 0;
}

static int leave_as_is(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	(void)t;
	(void)payload;
	(void)err;
	return 0;
}

/* With the metric at the last position, the sweep's arms (a hook at the
 * patched layer only, exact_tail) and its restarts give the bits of arms
 * whose last layer runs in full (a writer on its resid_post forces it), the
 * code path of full forwards before the exact tail; on GPT-2 (MLPs) and the
 * attention-only model, heads patched from the source prompt. */
Test(effect, head_sweep_at_the_last_position_has_the_full_last_layers_bits)
{
	static const char *const models[] = {"gpt2_ln_gelu", "attn_only"};

	for (int mi = 0; mi < 2; mi++) {
		fix f;
		mb_error err = {0};
		mb_effect *fx;
		mb_effect_heads from = {NULL, NULL, NULL, 0};
		mb_hook_point zs[16];
		double *full, *fast, *ref;
		uint8_t *mask;
		size_t n;
		int nz = 0;

		fix_open(&f, models[mi]);
		n = (size_t)f.L * f.H * f.B;
		full = malloc(sizeof(double) * n);
		fast = malloc(sizeof(double) * n);
		ref = malloc(sizeof(double) * n);
		mask = calloc((size_t)f.B * f.L * f.H, 1);
		cr_assert_eq(mb_effect_init(&fx, f.e, last_metric, &f.bt, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_effect_cache_restart(fx, &err), 0, "%s", err.msg);
		{
			mb_run r = fx_run(f.tok, f.len, f.B, f.T), src = fx_run(f.src_tok, f.len, f.B,
										f.T);

			r.logits = MB_LOGITS_LAST;
			src.logits = MB_LOGITS_NONE;
			for (int l = 0; l < f.L; l++)
				zs[nz++] = (mb_hook_point){MB_HOOK_Z, l};
			cr_assert_eq(mb_effect_clean(fx, &r, &err), 0, "%s", err.msg);
			cr_assert_eq(mb_effect_source(fx, 0, &src, zs, nz, NULL, &err), 0, "%s",
				     err.msg);
		}
		cr_assert_eq(mb_effect_head_sweep(full, fx, NULL, &from, 0, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_effect_head_sweep(fast, fx, NULL, &from, 1, &err), 0, "%s", err.msg);
		for (int l = 0; l < f.L; l++)
			for (int h = 0; h < f.H; h++) {
				mb_effect_heads how = {mask, NULL, NULL, 0};
				mb_effect_hook keep = {{MB_HOOK_RESID_POST, f.L - 1}, leave_as_is, NULL};
				mb_effect_arm a = {.heads = &how, .hooks = &keep, .n_hooks = 1};

				memset(mask, 0, (size_t)f.B * f.L * f.H);
				for (int b = 0; b < f.B; b++)
					mask[((size_t)b * f.L + l) * f.H + h] = 1;
				cr_assert_eq(mb_effect_run_arm(ref + ((size_t)l * f.H + h) * f.B, NULL, fx,
							       &a, &err),
					     0, "%s", err.msg);
			}
		cr_expect_eq(memcmp(full, ref, sizeof(double) * n), 0,
			     "%s: full forwards differ from the full last layer's", models[mi]);
		cr_expect_eq(memcmp(fast, ref, sizeof(double) * n), 0,
			     "%s: restarts differ from the full last layer's", models[mi]);
		{
			double moved = 0;

			for (size_t i = 0; i < n; i++)
				moved += fabs(ref[i]);
			cr_expect_gt(moved, 0.0, "%s: the source moves some patch", models[mi]);
		}
		free(mask);
		free(full);
		free(fast);
		free(ref);
		mb_effect_free(fx);
		fix_close(&f);
	}
}

/* Head input sweeps (q, k, v of every head patched from the source prompt)
 * equal, bit for bit, full forwards with the iv patch (start_layer 0), with
 * the metric on every position and at the last one, on GPT-2 (MLPs) and the
 * attention-only model: with the clean q/k/v cached (layers below the last
 * start at hook_z with one head's attention recomputed) and without (every
 * arm the iv arm). And mb_engine_head_attention on the clean q, k, v gives
 * each head's clean hook_z, writing no other head's columns. */
Test(effect, head_input_sweep_equals_full_forward_patches)
{
	static const char *const models[] = {"gpt2_ln_gelu", "attn_only"};

	for (int mi = 0; mi < 2; mi++)
		for (int last = 0; last < 2; last++)
			for (int cached = 0; cached < 2; cached++) {
				fix f;
				mb_error err = {0};
				mb_effect *fx;
				mb_hook_point pts[64];
				double *fast, *ref, moved = 0;
				size_t n;
				int np = 0;

				fix_open(&f, models[mi]);
				n = (size_t)f.L * f.H * f.B;
				fast = calloc(2 * n, sizeof(double)); /* (2, L, H, B): sweep, by hand */
				ref = fast + n;
				cr_assert_eq(mb_effect_init(&fx, f.e, last ? last_metric : ce_metric,
							    &f.bt, &err),
					     0, "%s", err.msg);
				cr_assert_eq(mb_effect_cache_restart(fx, &err), 0, "%s", err.msg);
				for (int l = 0; l < f.L; l++)
					for (int X = 0; X < 3; X++) {
						pts[np] = (mb_hook_point){(mb_hook_kind)(MB_HOOK_Q + X), l};
						if (cached)
							cr_assert_eq(mb_effect_cache(fx, pts[np], &err), 0,
								     "%s", err.msg);
						np++;
					}
				{
					mb_run r = fx_run(f.tok, f.len, f.B, f.T);
					mb_run src = fx_run(f.src_tok, f.len, f.B, f.T);

					r.logits = last ? MB_LOGITS_LAST : MB_LOGITS_ALL;
					src.logits = MB_LOGITS_NONE;
					cr_assert_eq(mb_effect_clean(fx, &r, &err), 0, "%s", err.msg);
					cr_assert_eq(mb_effect_source(fx, 1, &src, pts, np, NULL, &err),
						     0, "%s", err.msg);
				}
				for (int X = 0; X < 3; X++) {
					mb_hook_kind kind = (mb_hook_kind)(MB_HOOK_Q + X);

					cr_assert_eq(mb_effect_head_input_sweep(fast, fx, NULL, kind, 1,
										&err),
						     0, "%s", err.msg);
					for (int l = 0; l < f.L; l++)
						for (int h = 0; h < f.H; h++) {
							mb_hook_point p = {kind, l};
							mb_iv_spec iv = {
								.point = p, .unit = h, .op = MB_IV_PATCH,
								.source = mb_effect_source_get(fx, 1, p)};
							mb_effect_arm a = {.iv = &iv, .n_iv = 1};

							cr_assert_eq(mb_effect_run_arm(
									     ref + ((size_t)l * f.H + h) * f.B,
									     NULL, fx, &a, &err),
								     0, "%s", err.msg);
						}
					for (size_t i = 0; i < n; i++)
						moved += fabs(ref[i]);
					cr_expect_eq(memcmp(fast, ref, sizeof(double) * n), 0,
						     "%s, kind %d, metric at the last position %d, q/k/v "
						     "cached %d: the sweep differs from full forwards",
						     models[mi], X, last, cached);
				}
				cr_expect_gt(moved, 0.0, "%s: the source moves some patch", models[mi]);
				if (cached) {
					const mb_hook_tensor *q, *k, *v, *z;
					float *got = malloc(sizeof(float) * (size_t)f.B * f.T * f.D);

					for (int l = 0; l < f.L; l++) {
						q = mb_effect_clean_get(fx, (mb_hook_point){MB_HOOK_Q, l});
						k = mb_effect_clean_get(fx, (mb_hook_point){MB_HOOK_K, l});
						v = mb_effect_clean_get(fx, (mb_hook_point){MB_HOOK_V, l});
						z = mb_effect_clean_get(fx, (mb_hook_point){MB_HOOK_Z, l});
						for (int h = 0; h < f.H; h++) {
							for (size_t i = 0; i < z->numel; i++)
								got[i] = -7.0f;
							cr_assert_eq(mb_engine_head_attention(
									     f.e, got, q->data, k->data, v->data,
									     f.B, f.T, f.len, h, &err),
								     0, "%s", err.msg);
							for (int b = 0; b < f.B; b++)
								for (int t = 0; t < f.T; t++)
									for (int j = 0; j < f.D; j++) {
										size_t at = ((size_t)b * f.T + t) * f.D + j;
										int mine = j / f.Dh == h && t < f.len[b];
										cr_assert(mine ? memcmp(&got[at], &z->data[at], sizeof(float)) == 0
											       : got[at] == -7.0f,
											  "%s layer %d head %d: item %d position %d column %d",
											  models[mi], l, h, b, t, j);
									}
						}
					}
					free(got);
				}
				free(fast);
				mb_effect_free(fx);
				fix_close(&f);
			}
}

/* Effects of per-item arms (zero ablation of head (l, h) = (b % L, b % H)
 * for item b, and mean ablation with per-group values, group b % 2) for
 * items [0, B) of the fixture batch. */
static void per_item_effects(double *out, fix *f, int B)
{
	mb_error err = {0};
	mb_effect *fx;
	mb_run r = fx_run(f->tok, f->len, B, f->T);
	uint8_t *mask = calloc((size_t)B * f->L * f->H, 1);
	float *values = malloc(sizeof(float) * 2 * f->L * f->H * f->Dh);
	int32_t group[64];
	mb_effect_heads heads = {mask, NULL, NULL, -1};
	mb_effect_arm a = {.heads = &heads};

	for (size_t i = 0; i < (size_t)2 * f->L * f->H * f->Dh; i++)
		values[i] = (float)((int)(i % 7) - 3) * 0.25f;
	for (int b = 0; b < B; b++) {
		mask[((size_t)b * f->L + b % f->L) * f->H + b % f->H] = 1;
		group[b] = b % 2;
	}
	cr_assert_eq(mb_effect_init(&fx, f->e, ce_metric, &f->bt, &err), 0);
	cr_assert_eq(mb_effect_clean(fx, &r, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_effect_run_arm(out, NULL, fx, &a, &err), 0, "%s", err.msg);
	heads.values = values;
	heads.group = group;
	cr_assert_eq(mb_effect_run_arm(out + B, NULL, fx, &a, &err), 0, "%s", err.msg);
	mb_effect_free(fx);
	free(mask);
	free(values);
}

Test(effect, an_items_effect_is_the_same_alone_and_in_a_batch)
{
	fix f;
	double all[128], one[2];

	fix_open(&f, "attn_only");
	cr_assert_leq(f.B, 64);
	per_item_effects(all, &f, f.B);
	for (int b = 0; b < f.B; b++) {
		/* item b alone: shift it to row 0 by pointing the batch at it */
		fix g = f;
		g.tok = f.tok + (size_t)b * f.T;
		g.len = f.len + b;
		g.bt.tok = g.tok;
		g.bt.len = g.len;
		/* the arms are defined by the item's index: run it as a 1-item batch
		 * whose only item keeps b's head and group */
		{
			mb_error err = {0};
			mb_effect *fx;
			mb_run r = fx_run(g.tok, g.len, 1, g.T);
			uint8_t *mask = calloc((size_t)g.L * g.H, 1);
			float *values = malloc(sizeof(float) * 2 * g.L * g.H * g.Dh);
			int32_t group = b % 2;
			mb_effect_heads heads = {mask, NULL, NULL, -1};
			mb_effect_arm a = {.heads = &heads};

			for (size_t i = 0; i < (size_t)2 * g.L * g.H * g.Dh; i++)
				values[i] = (float)((int)(i % 7) - 3) * 0.25f;
			mask[(size_t)(b % g.L) * g.H + b % g.H] = 1;
			cr_assert_eq(mb_effect_init(&fx, g.e, ce_metric, &g.bt, &err), 0);
			cr_assert_eq(mb_effect_clean(fx, &r, &err), 0, "%s", err.msg);
			cr_assert_eq(mb_effect_run_arm(&one[0], NULL, fx, &a, &err), 0, "%s", err.msg);
			heads.values = values;
			heads.group = &group;
			cr_assert_eq(mb_effect_run_arm(&one[1], NULL, fx, &a, &err), 0, "%s", err.msg);
			mb_effect_free(fx);
			free(mask);
			free(values);
		}
		cr_expect(memcmp(&one[0], &all[b], sizeof(double)) == 0,
			  "item %d zero arm: alone %.17g, in the batch %.17g", b, one[0], all[b]);
		cr_expect(memcmp(&one[1], &all[f.B + b], sizeof(double)) == 0,
			  "item %d group arm: alone %.17g, in the batch %.17g", b, one[1],
			  all[f.B + b]);
	}
	fix_close(&f);
}

Test(effect, effects_are_the_same_on_one_and_two_threads)
{
	fix f;
	double a[128], b[128];
	int saved = omp_get_max_threads();

	fix_open(&f, "gpt2_ln_gelu");
	omp_set_num_threads(1);
	per_item_effects(a, &f, f.B);
	omp_set_num_threads(2);
	per_item_effects(b, &f, f.B);
	omp_set_num_threads(saved);
	cr_expect_eq(memcmp(a, b, sizeof(double) * 2 * f.B), 0);
	fix_close(&f);
}

Test(effect, control_draws_depend_only_on_the_item_key)
{
	enum { L = 3, H = 8, N = 200 };
	static const int layer_of[3] = {1, 1, 2};
	uint8_t exclude[L * H] = {0}, m1[L * H], m2[L * H];
	int differ = 0;

	exclude[1 * H + 0] = exclude[1 * H + 5] = exclude[2 * H + 3] = 1;
	for (uint64_t key = 0; key < N; key++) {
		mb_rng r1, r2, r3;
		float d1[48], d2[48];
		double nn = 0;

		memset(m1, 0, sizeof(m1));
		memset(m2, 0, sizeof(m2));
		mb_rng_init_named(&r1, 9, "test/heads", key * 7919);
		/* the same key drawn after unrelated draws from other items' streams */
		mb_rng_init_named(&r3, 9, "test/heads", key * 7919 + 1);
		(void)mb_rng_u64(&r3);
		mb_rng_init_named(&r2, 9, "test/heads", key * 7919);
		mb_effect_control_heads(m1, &r1, H, layer_of, 3, exclude);
		mb_effect_control_heads(m2, &r2, H, layer_of, 3, exclude);
		cr_assert_eq(memcmp(m1, m2, sizeof(m1)), 0);
		/* matched by layer: two heads in layer 1, one in layer 2, none excluded */
		for (int l = 0; l < L; l++) {
			int c = 0;
			for (int h = 0; h < H; h++) {
				c += m1[l * H + h];
				cr_assert(!(m1[l * H + h] && exclude[l * H + h]));
			}
			cr_assert_eq(c, l == 1 ? 2 : l == 2 ? 1 : 0);
		}
		if (key > 0) {
			uint8_t m0[L * H] = {0};
			mb_rng r0;
			mb_rng_init_named(&r0, 9, "test/heads", (key - 1) * 7919);
			mb_effect_control_heads(m0, &r0, H, layer_of, 3, exclude);
			differ += memcmp(m0, m1, sizeof(m1)) != 0;
		}
		/* directions: equal norm, same bits for the same key */
		mb_rng_init_named(&r1, 9, "test/dir", key);
		mb_rng_init_named(&r2, 9, "test/dir", key);
		mb_effect_control_direction(d1, &r1, 48, 2.5);
		mb_effect_control_direction(d2, &r2, 48, 2.5);
		cr_assert_eq(memcmp(d1, d2, sizeof(d1)), 0);
		for (int i = 0; i < 48; i++)
			nn += (double)d1[i] * d1[i];
		cr_assert_float_eq(sqrt(nn), 2.5, 1e-5, "norm %.9g", sqrt(nn));
	}
	/* different keys give different draws (most of the time) */
	cr_expect_gt(differ, N / 2, "%d of %d consecutive keys drew the same heads", differ, N - 1);
}

Test(effect, a_missing_cached_point_is_an_error_naming_it)
{
	fix f;
	mb_error err = {0};
	mb_effect *fx;
	mb_run r;
	double eff[64];
	mb_effect_arm a = {.start_layer = 1};

	fix_open(&f, "gpt2_ln_gelu");
	r = fx_run(f.tok, f.len, f.B, f.T);
	cr_assert_eq(mb_effect_init(&fx, f.e, ce_metric, &f.bt, &err), 0);
	cr_assert_eq(mb_effect_clean(fx, &r, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_effect_run_arm(eff, NULL, fx, &a, &err), MB_ENOTFOUND);
	cr_assert(strstr(err.msg, "blocks.1.hook_resid_pre"), "%s", err.msg);
	mb_effect_free(fx);
	fix_close(&f);
}

Test(effect, collect_last_keeps_each_sequences_last_logits_and_activation)
{
	fix f;
	mb_error err = {0};
	mb_hook_point post = {MB_HOOK_MLP_POST, 1};
	int S = 5, M, V, n = 0;
	int32_t *seqs;
	float *acts, *logits;

	fix_open(&f, "gpt2_ln_gelu");
	M = f.m->cfg.d_mlp;
	V = f.m->cfg.n_vocab;
	/* the fixture's full-length items, truncated to S tokens */
	seqs = malloc(sizeof(int32_t) * (size_t)f.B * S);
	for (int b = 0; b < f.B; b++)
		if (f.len[b] >= S)
			memcpy(seqs + (size_t)n++ * S, f.tok + (size_t)b * f.T, sizeof(int32_t) * S);
	cr_assert_geq(n, 2);
	acts = malloc(sizeof(float) * (size_t)n * M);
	logits = malloc(sizeof(float) * (size_t)n * V);
	/* batches of 2, so a batch boundary falls inside the list */
	cr_assert_eq(mb_effect_collect_last(acts, logits, V, f.e, seqs, (size_t)n, S, 2, &post,
					    &err), 0, "%s", err.msg);
	for (int i = 0; i < n; i++) {
		mb_cache *c;
		mb_hooks *h;
		mb_run r = {.batch = 1, .seq = S, .tokens = seqs + (size_t)i * S,
			    .logits = MB_LOGITS_LAST};
		cr_assert_eq(mb_cache_init(&c, &err), 0);
		cr_assert_eq(mb_hooks_init(&h, &err), 0);
		cr_assert_eq(mb_cache_add(c, post, &err), 0);
		cr_assert_eq(mb_cache_attach(c, h, &err), 0);
		r.hooks = h;
		cr_assert_eq(mb_engine_forward(f.e, &r, &err), 0, "%s", err.msg);
		cr_expect_eq(memcmp(logits + (size_t)i * V, mb_engine_logits_row(f.e, 0, 0),
				    sizeof(float) * V), 0, "sequence %d: logits differ", i);
		cr_expect_eq(memcmp(acts + (size_t)i * M,
				    mb_cache_get(c, post)->data + (size_t)(S - 1) * M,
				    sizeof(float) * M), 0, "sequence %d: hook_post differs", i);
		mb_cache_free(c);
		mb_hooks_free(h);
	}
	free(seqs);
	free(acts);
	free(logits);
	fix_close(&f);
}

Test(effect, row_sums_give_the_unit_mean_and_split_by_group)
{
	fix f;
	mb_error err = {0};
	mb_effect *fx;
	mb_hook_point z1 = {MB_HOOK_Z, 1};
	const mb_hook_tensor *z;
	int W;
	double *sum, *gsum;
	long count = 0, gcount[2] = {0, 0};
	float *mean, *want;
	int32_t group[64];

	fix_open(&f, "gpt2_ln_gelu");
	fx = effect_clean(&f, 0);
	z = mb_effect_clean_get(fx, z1);
	W = f.H * f.Dh;
	sum = calloc((size_t)W, sizeof(double));
	gsum = calloc((size_t)2 * W, sizeof(double));
	mean = malloc(sizeof(float) * W);
	want = malloc(sizeof(float) * W);
	mb_iv_sum_rows(sum, &count, z, NULL);
	for (int i = 0; i < W; i++)
		mean[i] = (float)(sum[i] / (double)count);
	cr_assert_eq(mb_iv_unit_mean(want, z, -1, &err), 0, "%s", err.msg);
	cr_expect_eq(memcmp(mean, want, sizeof(float) * W), 0);
	/* groups: the two groups' sums add up to the whole, counts too */
	for (int b = 0; b < f.B; b++)
		group[b] = b % 2;
	mb_iv_sum_rows(gsum, gcount, z, group);
	cr_expect_eq(gcount[0] + gcount[1], count);
	for (int i = 0; i < W; i++)
		cr_expect_float_eq(gsum[i] + gsum[W + i], sum[i], 1e-9 * (1 + fabs(sum[i])));
	free(sum);
	free(gsum);
	free(mean);
	free(want);
	mb_effect_free(fx);
	fix_close(&f);
}

/* Zeroes head 2's hook_z at every valid position (a task's own hook). */
static int zero_head2(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	int H = (int)t->shape[2], Dh = (int)t->shape[3];

	(void)payload;
	(void)err;
	for (int b = 0; b < t->batch; b++)
		for (int p = 0; p < t->lengths[b]; p++)
			memset(t->data + (((size_t)b * t->seq + p) * H + 2) * Dh, 0,
			       sizeof(float) * Dh);
	return 0;
}

Test(effect, task_hooks_and_an_edited_models_engine_are_arms_too)
{
	fix f;
	mb_error err = {0};
	mb_effect *fx;
	double a[64], b[64], clean[64], want[64];
	mb_effect_hook hk = {{MB_HOOK_Z, 1}, zero_head2, NULL};
	mb_effect_arm by_hook = {.hooks = &hk, .n_hooks = 1};
	uint8_t *mask;
	mb_effect_heads heads = {NULL, NULL, NULL, -1};
	mb_effect_arm by_mask = {.heads = &heads};

	fix_open(&f, "gpt2_ln_gelu");
	fx = effect_clean(&f, 0);
	mask = calloc((size_t)f.B * f.L * f.H, 1);
	for (int i = 0; i < f.B; i++)
		mask[((size_t)i * f.L + 1) * f.H + 2] = 1;
	heads.mask = mask;
	cr_assert_eq(mb_effect_run_arm(a, NULL, fx, &by_hook, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_effect_run_arm(b, NULL, fx, &by_mask, &err), 0, "%s", err.msg);
	expect_same(a, b, f.B, "hook vs mask");
	/* an edited copy of the weights (the last layer's output bias shifted) on
	 * its own engine, vs the same engine run by hand */
	{
		mb_model *m2 = fx_model("gpt2_ln_gelu");
		mb_engine *e2;
		mb_effect_arm edited = {0};
		mb_run r = fx_run(f.tok, f.len, f.B, f.T);

		for (int k = 0; k < f.D; k++)
			m2->w.o_b[(size_t)(f.L - 1) * f.D + k] += 0.125f * (float)(k % 5);
		e2 = fx_engine(m2, f.B, f.T, 0);
		edited.engine = e2;
		cr_assert_eq(mb_effect_run_arm(a, NULL, fx, &edited, &err), 0, "%s", err.msg);
		direct(clean, &f, NULL);
		cr_assert_eq(mb_engine_forward(e2, &r, &err), 0, "%s", err.msg);
		ce_metric(want, e2, f.B, &f.bt, &err);
		for (int i = 0; i < f.B; i++) {
			want[i] -= clean[i];
			cr_expect_neq(a[i], 0.0);
		}
		expect_same(a, want, f.B, "edited model");
		mb_engine_free(e2);
		mb_model_free(m2);
	}
	free(mask);
	mb_effect_free(fx);
	fix_close(&f);
}
