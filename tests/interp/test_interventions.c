/*
 * interventions: each intervention against the PyTorch reference's logits
 * (tests/fixtures/engine/<model>/batch0/interventions/), valid positions,
 * 1e-4 abs + 1e-4 rel, max differences printed; restarting at a layer equals
 * the full run bit for bit; resample and direction ablations do what they say.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/interventions.h>

#include "support/engine_fx.h"

#define ATOL 1e-4
#define RTOL 1e-4

typedef struct fx {
	const char *model;
	mb_model *m;
	int32_t *tok, *len, *src_tok;
	int B, T;
	mb_engine *e;
	mb_hooks *h;
	mb_iv *iv;
	float *logits;
} fx;

static void fx_open(fx *f, const char *model)
{
	mb_error err = {0};

	memset(f, 0, sizeof(*f));
	f->model = model;
	f->m = fx_model(model);
	fx_batch(model, "batch0", &f->tok, &f->len, &f->B, &f->T);
	f->src_tok = fx_source_tokens(model);
	f->e = fx_engine(f->m, f->B, f->T, 0);
	cr_assert_eq(mb_hooks_init(&f->h, &err), 0);
	cr_assert_eq(mb_iv_init(&f->iv, &err), 0);
	f->logits = malloc(sizeof(float) * (size_t)f->B * f->T * f->m->cfg.n_vocab);
}

static void fx_close(fx *f)
{
	mb_iv_free(f->iv);
	mb_hooks_free(f->h);
	mb_engine_free(f->e);
	mb_model_free(f->m);
	free(f->tok);
	free(f->len);
	free(f->src_tok);
	free(f->logits);
}

/* Runs batch0 with the interventions in f->iv (plus extra hooks already in
 * f->h) and compares the logits with the fixture file. */
static long run_and_compare(fx *f, const char *file)
{
	mb_error err = {0};
	mb_run r = fx_run(f->tok, f->len, f->B, f->T);
	mb_npy want;
	char rel[256], label[256];
	long bad;

	cr_assert_eq(mb_iv_attach(f->iv, f->h, &err), 0, "%s", err.msg);
	r.hooks = f->h;
	cr_assert_eq(mb_engine_forward(f->e, &r, &err), 0, "%s", err.msg);
	mb_engine_logits_copy(f->e, f->logits);
	snprintf(rel, sizeof(rel), "%s/batch0/interventions/%s", f->model, file);
	fx_npy(&want, rel);
	snprintf(label, sizeof(label), "%s %s", f->model, file);
	bad = fx_compare(label, f->logits, &want, f->len, 0, ATOL, RTOL, NULL);
	mb_npy_dispose(&want);
	mb_hooks_clear(f->h);
	mb_iv_clear(f->iv);
	return bad;
}

/* A cache of the given points over a clean run of tokens. */
static mb_cache *cache_run(fx *f, const int32_t *tokens, const char *const *names)
{
	mb_cache *c;
	mb_hooks *h;
	mb_error err = {0};
	mb_run r = fx_run(tokens, f->len, f->B, f->T);

	cr_assert_eq(mb_cache_init(&c, &err), 0);
	cr_assert_eq(mb_hooks_init(&h, &err), 0);
	for (; *names; names++)
		cr_assert_eq(mb_cache_add_name(c, *names, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_cache_attach(c, h, &err), 0);
	r.hooks = h;
	cr_assert_eq(mb_engine_forward(f->e, &r, &err), 0, "%s", err.msg);
	mb_hooks_free(h);
	return c;
}

static void check_model(const char *model)
{
	fx f;
	mb_error err = {0};
	long bad = 0;
	mb_hook_point z0 = {MB_HOOK_Z, 0}, z1 = {MB_HOOK_Z, 1}, rp1 = {MB_HOOK_RESID_PRE, 1};

	fx_open(&f, model);
	/* zero ablation */
	cr_assert_eq(mb_iv_ablate_head(f.iv, &f.m->cfg, 1, 2, NULL, &err), 0, "%s", err.msg);
	bad += run_and_compare(&f, "zero_ablate_L1H2.logits.npy");
	/* mean ablation: the mean over the clean run's valid positions */
	{
		static const char *const names[] = {"blocks.0.attn.hook_z", NULL};
		mb_cache *c = cache_run(&f, f.tok, names);
		float mean[64];
		mb_npy want;
		char rel[256];
		double mx = 0.0;

		cr_assert_eq(mb_iv_unit_mean(mean, mb_cache_get(c, z0), 1, &err), 0, "%s", err.msg);
		snprintf(rel, sizeof(rel), "%s/batch0/interventions/mean_ablate_L0H1.mean.npy", model);
		fx_npy(&want, rel);
		cr_assert_eq(want.numel, (size_t)f.m->cfg.d_head);
		for (size_t i = 0; i < want.numel; i++)
			mx = fmax(mx, fabs(mean[i] - ((float *)want.data)[i]));
		printf("%s mean of L0H1's hook_z: max |diff| = %.3g\n", model, mx);
		cr_expect(mx <= 1e-5);
		mb_npy_dispose(&want);
		cr_assert_eq(mb_iv_ablate_head(f.iv, &f.m->cfg, 0, 1, mean, &err), 0, "%s", err.msg);
		bad += run_and_compare(&f, "mean_ablate_L0H1.logits.npy");
		mb_cache_free(c);
	}
	/* activation patching from the source run */
	{
		static const char *const names[] = {"blocks.1.attn.hook_z", NULL};
		mb_cache *c = cache_run(&f, f.src_tok, names);

		cr_assert_eq(mb_iv_patch_head(f.iv, &f.m->cfg, z1, 0, mb_cache_get(c, z1), NULL, 0, &err),
			     0, "%s", err.msg);
		bad += run_and_compare(&f, "act_patch_L1H0.logits.npy");
		mb_cache_free(c);
	}
	/* steering */
	{
		mb_npy dir;
		char rel[256];

		snprintf(rel, sizeof(rel), "%s/batch0/interventions/steer_direction.npy", model);
		fx_npy(&dir, rel);
		cr_assert_eq(mb_iv_steer(f.iv, &f.m->cfg, rp1, dir.data, 3.0f, &err), 0, "%s", err.msg);
		bad += run_and_compare(&f, "steer_L1.logits.npy");
		mb_npy_dispose(&dir);
	}
	/* neuron ablation */
	if (!f.m->cfg.attn_only) {
		const int neurons[3] = {0, 5, 7};

		for (int i = 0; i < 3; i++)
			cr_assert_eq(mb_iv_ablate_neuron(f.iv, &f.m->cfg, 0, neurons[i], NULL, &err), 0,
				     "%s", err.msg);
		bad += run_and_compare(&f, "neuron_ablate_L0.logits.npy");
	}
	/* pattern-preserving zero ablation */
	{
		static const char *const names[] = {"blocks.0.attn.hook_pattern",
						    "blocks.1.attn.hook_pattern", NULL};
		mb_cache *c = cache_run(&f, f.tok, names);

		cr_assert_eq(mb_iv_freeze_patterns(f.iv, &f.m->cfg, c, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_iv_ablate_head(f.iv, &f.m->cfg, 0, 1, NULL, &err), 0, "%s", err.msg);
		bad += run_and_compare(&f, "pattern_preserving_zero_ablate_L0H1.logits.npy");
		mb_cache_free(c);
	}
	/* path patching via q, k and v */
	for (int via = 0; via < 3; via++) {
		mb_run clean = fx_run(f.tok, f.len, f.B, f.T), src = fx_run(f.src_tok, f.len, f.B, f.T);
		mb_path p = {0, 3, 1, 1, via};
		mb_npy want;
		char rel[256], label[128];

		cr_assert_eq(mb_interp_path_patch(f.e, &clean, &src, &p, &err), 0, "%s", err.msg);
		mb_engine_logits_copy(f.e, f.logits);
		snprintf(rel, sizeof(rel), "%s/batch0/interventions/path_patch_L0H3_to_L1H1_%c.logits.npy",
			 model, "qkv"[via]);
		fx_npy(&want, rel);
		snprintf(label, sizeof(label), "%s path patch via %c", model, "qkv"[via]);
		bad += fx_compare(label, f.logits, &want, f.len, 0, ATOL, RTOL, NULL);
		mb_npy_dispose(&want);
	}
	cr_expect_eq(bad, 0, "%s: %ld logits out of tolerance", model, bad);
	fx_close(&f);
}

Test(interventions, gpt2_ln_gelu_matches_the_reference_after_each_intervention)
{
	check_model("gpt2_ln_gelu");
}

Test(interventions, attn_only_matches_the_reference_after_each_intervention)
{
	check_model("attn_only");
}

Test(interventions, noln_relu_untied_matches_the_reference_after_each_intervention)
{
	check_model("noln_relu_untied");
}

/* Restarting at the intervened layer from the clean run's cached resid_pre (or
 * hook_z) gives bit for bit the logits of a full run with the same ablation. */
Test(interventions, starting_from_a_cached_layer_equals_the_full_run_bitwise)
{
	for (int mi = 0; mi < FX_N_MODELS; mi++) {
		fx f;
		mb_error err = {0};
		static const char *const names[] = {"blocks.1.hook_resid_pre", "blocks.1.attn.hook_z",
						    NULL};
		mb_cache *c;
		mb_run r;
		size_t n;
		float *full;
		mb_hook_point rp = {MB_HOOK_RESID_PRE, 1}, zp = {MB_HOOK_Z, 1};

		fx_open(&f, fx_models[mi]);
		n = (size_t)f.B * f.T * f.m->cfg.n_vocab;
		full = malloc(n * sizeof(float));
		c = cache_run(&f, f.tok, names);
		for (int start = 0; start < 3; start++) {
			cr_assert_eq(mb_iv_ablate_head(f.iv, &f.m->cfg, 1, 2, NULL, &err), 0);
			cr_assert_eq(mb_iv_attach(f.iv, f.h, &err), 0);
			r = fx_run(f.tok, f.len, f.B, f.T);
			r.hooks = f.h;
			if (start >= 1) {
				r.start_layer = 1;
				r.start_resid = mb_cache_get(c, rp)->data;
				r.tokens = NULL;
			}
			if (start == 2)
				r.start_z = mb_cache_get(c, zp)->data;
			cr_assert_eq(mb_engine_forward(f.e, &r, &err), 0, "%s", err.msg);
			mb_engine_logits_copy(f.e, f.logits);
			if (start == 0)
				memcpy(full, f.logits, n * sizeof(float));
			else
				cr_expect_eq(memcmp(full, f.logits, n * sizeof(float)), 0,
					     "%s: start %s differs from the full run", fx_models[mi],
					     start == 1 ? "at resid_pre" : "at hook_z");
			mb_hooks_clear(f.h);
			mb_iv_clear(f.iv);
		}
		mb_cache_free(c);
		free(full);
		fx_close(&f);
	}
}

typedef struct sweep_log {
	float *rows; /* (L * H, B, V) last-position logits */
	int B, V, H;
} sweep_log;

static int log_sweep(const mb_engine *e, int layer, int head, void *payload, mb_error *err)
{
	sweep_log *s = payload;

	(void)err;
	for (int b = 0; b < s->B; b++)
		memcpy(s->rows + (((size_t)layer * s->H + head) * s->B + b) * s->V,
		       mb_engine_logits_row(e, b, 0), sizeof(float) * (size_t)s->V);
	return 0;
}

Test(interventions, a_head_sweep_with_restarts_equals_full_forwards_bitwise)
{
	fx f;
	mb_error err = {0};
	sweep_log a, b;
	size_t n;
	mb_run r;

	fx_open(&f, "gpt2_ln_gelu");
	n = (size_t)f.m->cfg.n_layer * f.m->cfg.n_head * f.B * f.m->cfg.n_vocab;
	a = (sweep_log){malloc(n * sizeof(float)), f.B, f.m->cfg.n_vocab, f.m->cfg.n_head};
	b = a;
	b.rows = malloc(n * sizeof(float));
	r = fx_run(f.tok, f.len, f.B, f.T);
	r.logits = MB_LOGITS_LAST;
	for (int mean = 0; mean < 2; mean++) {
		cr_assert_eq(mb_interp_head_sweep(f.e, &r, NULL, mean, 0, log_sweep, &a, &err), 0, "%s",
			     err.msg);
		cr_assert_eq(mb_interp_head_sweep(f.e, &r, NULL, mean, 1, log_sweep, &b, &err), 0, "%s",
			     err.msg);
		cr_expect_eq(memcmp(a.rows, b.rows, n * sizeof(float)), 0, "%s ablation sweep",
			     mean ? "mean" : "zero");
	}
	/* and the sweep's zero ablation of L1H2 is the fixture's, at the last positions */
	{
		mb_npy want;
		char rel[256];
		double mx = 0.0;
		int V = f.m->cfg.n_vocab;

		cr_assert_eq(mb_interp_head_sweep(f.e, &r, NULL, 0, 1, log_sweep, &b, &err), 0);
		snprintf(rel, sizeof(rel), "gpt2_ln_gelu/batch0/interventions/zero_ablate_L1H2.logits.npy");
		fx_npy(&want, rel);
		for (int it = 0; it < f.B; it++)
			for (int v = 0; v < V; v++) {
				float got = b.rows[(((size_t)1 * b.H + 2) * f.B + it) * V + v];
				float w = ((float *)want.data)[((size_t)it * f.T + f.len[it] - 1) * V + v];

				mx = fmax(mx, fabs(got - w));
			}
		printf("sweep L1H2 vs fixture, last positions: max |diff| = %.3g\n", mx);
		cr_expect(mx <= ATOL + RTOL * 20);
		mb_npy_dispose(&want);
	}
	free(a.rows);
	free(b.rows);
	fx_close(&f);
}

/* Resample ablation with a map is activation patching from other items; the
 * direction ablations leave the stated projection. */
Test(interventions, resample_and_direction_ablations_do_what_they_say)
{
	fx f;
	mb_error err = {0};
	static const char *const names[] = {"blocks.1.attn.hook_z", "blocks.1.hook_resid_pre", NULL};
	mb_cache *src, *after;
	mb_rng rng;
	int32_t map[3];
	mb_run r;
	mb_hook_point z1 = {MB_HOOK_Z, 1}, rp = {MB_HOOK_RESID_PRE, 1};
	float u[64];
	int D, Dh;

	fx_open(&f, "gpt2_ln_gelu");
	D = f.m->cfg.d_model;
	Dh = f.m->cfg.d_head;
	src = cache_run(&f, f.tok, names);
	mb_rng_init_named(&rng, 1, "test/resample", 0);
	mb_iv_resample_map(map, f.B, f.B, 1, &rng);
	for (int b = 0; b < f.B; b++)
		cr_expect_neq(map[b], b);
	/* a source item must have every position of the item it replaces */
	for (int b = 0; b < f.B; b++)
		if (f.len[map[b]] < f.len[b])
			map[b] = 2; /* item 2 has the full 16 positions */
	cr_assert_eq(mb_iv_patch_head(f.iv, &f.m->cfg, z1, 3, mb_cache_get(src, z1), map, f.B, &err), 0);
	{
		mb_iv_spec s = {rp, -1, MB_IV_DIR_ZERO, u, D, 0.0f, NULL, NULL, 0, NULL, 0};

		for (int i = 0; i < D; i++)
			u[i] = (float)((i * 7) % 5) - 2.0f;
		cr_assert_eq(mb_iv_add(f.iv, &f.m->cfg, &s, &err), 0, "%s", err.msg);
	}
	cr_assert_eq(mb_iv_attach(f.iv, f.h, &err), 0);
	cr_assert_eq(mb_cache_init(&after, &err), 0);
	cr_assert_eq(mb_cache_add_name(after, "blocks.1.attn.hook_z", &err), 0);
	cr_assert_eq(mb_cache_add_name(after, "blocks.1.hook_resid_pre", &err), 0);
	cr_assert_eq(mb_cache_attach(after, f.h, &err), 0); /* after the interventions */
	r = fx_run(f.tok, f.len, f.B, f.T);
	r.hooks = f.h;
	cr_assert_eq(mb_engine_forward(f.e, &r, &err), 0, "%s", err.msg);
	{
		const mb_hook_tensor *zs = mb_cache_get(src, z1), *za = mb_cache_get(after, z1);
		const mb_hook_tensor *ra = mb_cache_get(after, rp);
		int H = f.m->cfg.n_head;
		double maxproj = 0.0;

		for (int b = 0; b < f.B; b++)
			for (int t = 0; t < f.len[b]; t++) {
				size_t at = (((size_t)b * f.T + t) * H + 3) * Dh;
				size_t from = (((size_t)map[b] * f.T + t) * H + 3) * Dh;
				double p = 0.0;

				cr_expect_eq(memcmp(za->data + at, zs->data + from, sizeof(float) * Dh), 0,
					     "item %d position %d not resampled from item %d", b, t,
					     map[b]);
				for (int i = 0; i < D; i++)
					p += (double)ra->data[((size_t)b * f.T + t) * D + i] * u[i];
				maxproj = fmax(maxproj, fabs(p));
			}
		printf("direction zero ablation: max |x.u| left = %.3g\n", maxproj);
		cr_expect(maxproj < 1e-4);
	}
	mb_cache_free(after);
	mb_cache_free(src);
	fx_close(&f);
}

Test(interventions, bad_interventions_are_errors_naming_the_hook)
{
	fx f;
	mb_error err = {0};
	float v[8] = {0};

	fx_open(&f, "attn_only");
	cr_expect_lt(mb_iv_ablate_head(f.iv, &f.m->cfg, 0, 9, NULL, &err), 0);
	cr_expect(strstr(err.msg, "blocks.0.attn.hook_z: unit 9 out of range") != NULL, "%s", err.msg);
	cr_expect_lt(mb_iv_ablate_head(f.iv, &f.m->cfg, 5, 0, NULL, &err), 0);
	cr_expect(strstr(err.msg, "blocks.5.attn.hook_z") != NULL, "%s", err.msg);
	cr_expect_lt(mb_iv_ablate_neuron(f.iv, &f.m->cfg, 0, 0, NULL, &err), 0);
	cr_expect(strstr(err.msg, "attention-only") != NULL, "%s", err.msg);
	{
		mb_iv_spec s = {{MB_HOOK_RESID_PRE, 0}, -1, MB_IV_ADD, v, 8, 1.0f, NULL, NULL, 0, NULL, 0};

		cr_expect_lt(mb_iv_add(f.iv, &f.m->cfg, &s, &err), 0);
		cr_expect(strstr(err.msg, "needs a value of 24 floats (got 8)") != NULL, "%s", err.msg);
		s.op = MB_IV_PATCH;
		cr_expect_lt(mb_iv_add(f.iv, &f.m->cfg, &s, &err), 0);
		cr_expect(strstr(err.msg, "needs a source") != NULL, "%s", err.msg);
	}
	/* a source shorter than the items it patches is a run-time error */
	{
		static const char *const names[] = {"blocks.0.attn.hook_z", NULL};
		mb_cache *c = cache_run(&f, f.tok, names);
		mb_hook_point z0 = {MB_HOOK_Z, 0};
		int32_t map[3] = {1, 1, 1}; /* item 1 has 7 positions, item 2 needs 16 */
		mb_run r = fx_run(f.tok, f.len, f.B, f.T);

		cr_assert_eq(mb_iv_patch_head(f.iv, &f.m->cfg, z0, 0, mb_cache_get(c, z0), map, 3, &err),
			     0);
		cr_assert_eq(mb_iv_attach(f.iv, f.h, &err), 0);
		r.hooks = f.h;
		cr_expect_lt(mb_engine_forward(f.e, &r, &err), 0);
		cr_expect(strstr(err.msg, "hook blocks.0.attn.hook_z: patch at blocks.0.attn.hook_z: "
					  "source item 1 has 7 positions") != NULL,
			  "%s", err.msg);
		mb_cache_free(c);
	}
	fx_close(&f);
}

/* GPT-NeoX blocks (rotary q/k, parallel or sequential residual): every
 * intervention against gen_neox_fixtures.py's independent reference. */
Test(interventions, neox_parallel_matches_the_reference_after_each_intervention)
{
	check_model("neox_par");
}

Test(interventions, neox_sequential_matches_the_reference_after_each_intervention)
{
	check_model("neox_seq");
}
