/*
 * forward_golden: the engine against the independent PyTorch reference
 * (tests/fixtures/engine/, gen_fixtures.py): every hook point and the logits
 * of three tiny models (GPT-2 style LN + gelu_new; attention-only; no LN, ReLU,
 * untied unembedding), on a padded batch (lengths 11, 7, 16) and a single
 * item. Valid positions only; tolerance 1e-4 absolute + 1e-4 relative (the
 * reference's own float32 vs float64 error is <= 5.4e-6). Each comparison
 * prints its max difference.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>

#include <mechbench/hooks.h>

#include "support/engine_fx.h"

#define ATOL 1e-4
#define RTOL 1e-4

/* Runs model on batch with a cache of every hook point (expensive: the
 * split q/k/v inputs and hook_result too) and compares each with its fixture. */
static void check(const char *model, const char *batch, int expensive, int keep)
{
	mb_model *m = fx_model(model);
	int32_t *tok, *len;
	int B, T;
	mb_engine *e;
	mb_hooks *h;
	mb_cache *c;
	mb_error err = {0};
	mb_run r;
	long bad = 0;
	int compared = 0;
	double worst = 0.0;

	fx_batch(model, batch, &tok, &len, &B, &T);
	e = fx_engine(m, B, T, keep);
	cr_assert_eq(mb_hooks_init(&h, &err), 0);
	cr_assert_eq(mb_cache_init(&c, &err), 0);
	cr_assert_eq(mb_cache_add_all(c, &m->cfg, expensive, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_cache_attach(c, h, &err), 0);
	r = fx_run(tok, len, B, T);
	r.hooks = h;
	cr_assert_eq(mb_engine_forward(e, &r, &err), 0, "%s", err.msg);
	printf("== %s/%s (%s hooks%s, row group %d)\n", model, batch,
	       expensive ? "all" : "cheap", keep ? ", keep_activations" : "",
	       mb_engine_row_group(e));
	for (int k = 0; k < MB_HOOK_KIND_COUNT; k++) {
		int nl = mb_hook_kind_is_layer((mb_hook_kind)k) ? m->cfg.n_layer : 1;

		for (int l = 0; l < nl; l++) {
			mb_hook_point p = {(mb_hook_kind)k, mb_hook_kind_is_layer((mb_hook_kind)k) ? l : -1};
			char name[MB_HOOK_NAME_MAX], rel[512];
			const mb_hook_tensor *t;
			mb_npy want;
			double d;
			int attn = k == MB_HOOK_ATTN_SCORES || k == MB_HOOK_PATTERN;

			if (mb_hook_check(p, &m->cfg, NULL) != 0)
				continue;
			if (!expensive && (k == MB_HOOK_Q_INPUT || k == MB_HOOK_K_INPUT ||
					   k == MB_HOOK_V_INPUT || k == MB_HOOK_RESULT))
				continue;
			mb_hook_name(name, sizeof(name), p);
			t = mb_cache_get(c, p);
			cr_assert(t != NULL, "%s was not cached", name);
			snprintf(rel, sizeof(rel), "%s/%s/%s.npy", model, batch, name);
			fx_npy(&want, rel);
			cr_assert_eq(want.numel, t->numel, "%s: %zu values, fixture has %zu", name,
				     t->numel, want.numel);
			cr_assert_eq(want.ndim, t->ndim, "%s: ndim", name);
			for (int i = 0; i < t->ndim; i++)
				cr_assert_eq(want.shape[i], t->shape[i], "%s: dim %d", name, i);
			bad += fx_compare(name, t->data, &want, len, attn, ATOL, RTOL, &d);
			if (d > worst)
				worst = d;
			compared++;
			mb_npy_dispose(&want);
		}
	}
	printf("%s/%s: %d tensors compared, worst max |diff| %.3g\n", model, batch, compared, worst);
	cr_expect_eq(bad, 0, "%ld values out of tolerance", bad);
	cr_expect_geq(compared, 26);
	mb_cache_free(c);
	mb_hooks_free(h);
	mb_engine_free(e);
	mb_model_free(m);
	free(tok);
	free(len);
}

Test(forward_golden, gpt2_ln_gelu_padded_batch_matches_every_hook_point)
{
	check("gpt2_ln_gelu", "batch0", 1, 0);
}

Test(forward_golden, gpt2_ln_gelu_plain_run_matches_every_cheap_hook_point)
{
	check("gpt2_ln_gelu", "batch0", 0, 0);
}

Test(forward_golden, gpt2_ln_gelu_single_item_matches_every_hook_point)
{
	check("gpt2_ln_gelu", "batch1", 1, 0);
}

Test(forward_golden, attn_only_padded_batch_matches_every_hook_point)
{
	check("attn_only", "batch0", 1, 0);
}

Test(forward_golden, attn_only_single_item_matches_every_cheap_hook_point)
{
	check("attn_only", "batch1", 0, 0);
}

Test(forward_golden, noln_relu_untied_padded_batch_matches_every_hook_point)
{
	check("noln_relu_untied", "batch0", 1, 0);
}

Test(forward_golden, noln_relu_untied_single_item_matches_every_cheap_hook_point)
{
	check("noln_relu_untied", "batch1", 0, 0);
}

Test(forward_golden, keep_activations_mode_matches_every_hook_point)
{
	check("gpt2_ln_gelu", "batch0", 1, 1);
	check("noln_relu_untied", "batch0", 0, 1);
}

/* GPT-NeoX (Pythia) blocks: rotary q/k (hook_rot_q/k), parallel residual
 * (no hook_resid_mid) or sequential, untied or tied unembedding, exact GELU;
 * the reference is gen_neox_fixtures.py. */
Test(forward_golden, neox_parallel_padded_batch_matches_every_hook_point)
{
	check("neox_par", "batch0", 1, 0);
	check("neox_par", "batch0", 0, 1);
}

Test(forward_golden, neox_parallel_single_item_matches_every_hook_point)
{
	check("neox_par", "batch1", 1, 0);
}

Test(forward_golden, neox_sequential_padded_batch_matches_every_hook_point)
{
	check("neox_seq", "batch0", 1, 0);
	check("neox_seq", "batch0", 0, 1);
}

Test(forward_golden, neox_sequential_single_item_matches_every_hook_point)
{
	check("neox_seq", "batch1", 1, 0);
}

/* The logits of LAST and POSITIONS mode (our row kernel, not BLAS) against
 * the fixture's full logits at those positions. */
Test(forward_golden, selected_position_logits_match_the_reference)
{
	for (int mi = 0; mi < FX_N_MODELS; mi++) {
		const char *model = fx_models[mi];
		mb_model *m = fx_model(model);
		int32_t *tok, *len, pos[3 * 2];
		int B, T;
		mb_engine *e;
		mb_error err = {0};
		mb_run r;
		mb_npy want;
		char rel[256];
		int V = m->cfg.n_vocab;
		double mx = 0.0;

		fx_batch(model, "batch0", &tok, &len, &B, &T);
		cr_assert_eq(B, 3);
		e = fx_engine(m, B, T, 0);
		snprintf(rel, sizeof(rel), "%s/batch0/logits.npy", model);
		fx_npy(&want, rel);
		for (int mode = 0; mode < 2; mode++) {
			r = fx_run(tok, len, B, T);
			if (mode == 0) {
				r.logits = MB_LOGITS_LAST;
			} else {
				r.logits = MB_LOGITS_POSITIONS;
				r.n_positions = 2;
				for (int b = 0; b < B; b++) {
					pos[2 * b] = 0;
					pos[2 * b + 1] = len[b] / 2;
				}
				r.positions = pos;
			}
			cr_assert_eq(mb_engine_forward(e, &r, &err), 0, "%s", err.msg);
			cr_assert_eq(mb_engine_logits_per_item(e), mode == 0 ? 1 : 2);
			for (int b = 0; b < B; b++)
				for (int i = 0; i < (mode == 0 ? 1 : 2); i++) {
					int t = mode == 0 ? len[b] - 1 : pos[2 * b + i];
					const float *got = mb_engine_logits_row(e, b, i);
					const float *w = (const float *)want.data + ((size_t)b * T + t) * V;

					cr_assert(got);
					for (int v = 0; v < V; v++) {
						double d = fabs((double)got[v] - w[v]);
						mx = d > mx ? d : mx;
						cr_expect(d <= ATOL + RTOL * fabs(w[v]),
							  "%s item %d pos %d vocab %d: %g vs %g", model, b,
							  t, v, got[v], w[v]);
					}
				}
		}
		printf("%s: selected-position logits max |diff| = %.3g\n", model, mx);
		mb_npy_dispose(&want);
		mb_engine_free(e);
		mb_model_free(m);
		free(tok);
		free(len);
	}
}
