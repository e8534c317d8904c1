/*
 * backward_golden: the backward against PyTorch autograd in float64
 * (tests/fixtures/engine/<model>/batch0/grads and hookgrads, gen_fixtures.py):
 * the loss and every parameter gradient of the mean next-token cross-entropy
 * over valid positions, and the gradient of the metric M = sum over items of
 * logits[b, len-1, 3] - logits[b, len-1, 5] at hook points, for the three
 * fixture models (LN + gelu_new tied; attention-only; no LN, ReLU, untied).
 *
 * Tolerances. Our float32 backward against float64 autograd, measured:
 * parameter gradients (of a mean over 31 positions, |g| <= ~0.5) within
 * 4e-7, hook gradients (of a sum over 3 items, |g| up to ~10) within 6e-6.
 * Limits: 2e-6 absolute for parameters and 2e-5 for hooks, + 1e-4 relative,
 * a few times the measured error and far below what a wrong or missing term
 * would change. Every comparison prints its max difference.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mechbench/backward.h>
#include <mechbench/checkpoint.h>
#include <mechbench/hooks.h>
#include <mechbench/safetensors.h>

#include "support/engine_fx.h"

#define ATOL_PARAM 2e-6
#define ATOL 2e-5
#define RTOL 1e-4

/* Max |got - want| over all entries and the count outside ATOL + RTOL |want|. */
static long compare_all(const char *label, const float *got, const mb_npy *want, double *mx)
{
	const float *w = want->data;
	long bad = 0;
	*mx = 0;
	for (size_t i = 0; i < want->numel; i++) {
		double d = fabs((double)got[i] - (double)w[i]);
		if (!(d <= ATOL_PARAM + RTOL * fabs((double)w[i])))
			bad++;
		if (!(d <= *mx))
			*mx = d;
	}
	printf("%-44s max |diff| = %.3g%s\n", label, *mx, bad ? "  OUT OF TOLERANCE" : "");
	return bad;
}

static void param_grads(const char *model, mb_logits_mode mode)
{
	mb_model *m = fx_model(model);
	int32_t *tok, *len, *targets;
	int B, T;
	mb_engine *e;
	mb_backward *bw;
	mb_error err = {0};
	mb_engine_weights g;
	float *gblock;
	double loss;
	mb_npy want;
	char rel[512];
	long bad = 0;

	fx_batch(model, "batch0", &tok, &len, &B, &T);
	e = fx_engine(m, B, T, 1);
	cr_assert_eq(mb_backward_init(&bw, e, &err), 0, "%s", err.msg);
	mb_run r = fx_run(tok, len, B, T);
	r.logits = mode;
	int N = mode == MB_LOGITS_ALL ? T : T - 1;
	int32_t *pos = NULL;
	if (mode == MB_LOGITS_POSITIONS) {
		/* every position but the last (as many rows per item as the shortest
		 * allows, repeating the last valid one): exercises the scatter path */
		pos = malloc(sizeof(int32_t) * (size_t)B * N);
		for (int b = 0; b < B; b++)
			for (int i = 0; i < N; i++)
				pos[b * N + i] = i < len[b] - 1 ? i : len[b] - 1;
		r.positions = pos;
		r.n_positions = N;
	}
	cr_assert_eq(mb_engine_forward(e, &r, &err), 0, "%s", err.msg);
	targets = malloc(sizeof(int32_t) * (size_t)B * N);
	for (int b = 0; b < B; b++)
		for (int i = 0; i < N; i++) {
			int t = mode == MB_LOGITS_POSITIONS ? pos[b * N + i] : i;
			int dup = mode == MB_LOGITS_POSITIONS && i >= len[b] - 1;
			targets[b * N + i] = t + 1 < len[b] && !dup ? tok[b * T + t + 1] : -1;
		}
	cr_assert_eq(mb_backward_xent(bw, targets, &loss, NULL, &err), 0, "%s", err.msg);
	size_t np = mb_engine_weights_layout(&g, &m->cfg, NULL);
	gblock = malloc(np * sizeof(float));
	for (size_t i = 0; i < np; i++)
		gblock[i] = NAN; /* every entry must be written */
	mb_engine_weights_layout(&g, &m->cfg, gblock);
	cr_assert_eq(mb_backward_run(bw, &r, &g, NULL, &err), 0, "%s", err.msg);

	printf("== %s (logits %s)\n", model,
	       mode == MB_LOGITS_ALL ? "ALL" : "POSITIONS");
	snprintf(rel, sizeof(rel), "%s/batch0/grads/loss.npy", model);
	fx_npy(&want, rel);
	double wl = ((float *)want.data)[0];
	printf("%-44s %.9f vs %.9f, |diff| = %.3g\n", "loss", loss, wl, fabs(loss - wl));
	cr_expect(fabs(loss - wl) <= 1e-5, "%s: loss %.9f vs %.9f", model, loss, wl);
	mb_npy_dispose(&want);

	size_t n = mb_checkpoint_tensors(NULL, 0, &m->cfg, &g);
	mb_checkpoint_tensor *ts = calloc(n, sizeof(*ts));
	mb_checkpoint_tensors(ts, n, &m->cfg, &g);
	for (size_t i = 0; i < n; i++) {
		double mx;
		snprintf(rel, sizeof(rel), "%s/batch0/grads/%s.npy", model, ts[i].name);
		fx_npy(&want, rel);
		size_t numel = (size_t)ts[i].shape[0] * (size_t)(ts[i].ndim > 1 ? ts[i].shape[1] : 1);
		cr_assert_eq(numel, want.numel, "%s: %zu vs %zu elements", ts[i].name, numel,
			     want.numel);
		bad += compare_all(ts[i].name, ts[i].data, &want, &mx);
		mb_npy_dispose(&want);
	}
	cr_expect_eq(bad, 0, "%s: %ld gradient entries out of tolerance", model, bad);
	free(ts);
	free(gblock);
	free(targets);
	free(pos);
	free(tok);
	free(len);
	mb_backward_free(bw);
	mb_engine_free(e);
	mb_model_free(m);
}

Test(backward_golden, parameter_gradients_match_torch_for_gpt2_ln_gelu)
{
	param_grads("gpt2_ln_gelu", MB_LOGITS_ALL);
}
Test(backward_golden, parameter_gradients_match_torch_for_attn_only)
{
	param_grads("attn_only", MB_LOGITS_ALL);
}
Test(backward_golden, parameter_gradients_match_torch_for_noln_relu_untied)
{
	param_grads("noln_relu_untied", MB_LOGITS_ALL);
}
Test(backward_golden, selected_logit_rows_give_the_same_parameter_gradients)
{
	param_grads("gpt2_ln_gelu", MB_LOGITS_POSITIONS);
	param_grads("noln_relu_untied", MB_LOGITS_POSITIONS);
}

/* dM/d(hook) for M = sum_b logits[b, len-1, 3] - logits[b, len-1, 5]. */
static void hook_grads(const char *model, mb_logits_mode mode)
{
	static const char *const points[] = {
		"hook_embed", "blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre",
		"blocks.0.attn.hook_z", "blocks.1.attn.hook_z", "blocks.0.attn.hook_pattern",
		"blocks.1.attn.hook_pattern", "blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post",
		"ln_final.hook_normalized"};
	mb_model *m = fx_model(model);
	int32_t *tok, *len;
	int B, T;
	mb_engine *e;
	mb_backward *bw;
	mb_hooks *h;
	mb_cache *c;
	mb_error err = {0};
	long bad = 0;

	fx_batch(model, "batch0", &tok, &len, &B, &T);
	e = fx_engine(m, B, T, 1);
	cr_assert_eq(mb_backward_init(&bw, e, &err), 0, "%s", err.msg);
	mb_run r = fx_run(tok, len, B, T);
	r.logits = mode;
	cr_assert_eq(mb_engine_forward(e, &r, &err), 0, "%s", err.msg);
	int N = mode == MB_LOGITS_ALL ? T : 1, V = m->cfg.n_vocab;
	float *dl = calloc((size_t)B * N * V, sizeof(float));
	for (int b = 0; b < B; b++) {
		int i = mode == MB_LOGITS_ALL ? len[b] - 1 : 0;
		dl[((size_t)b * N + i) * V + 3] = 1.0f;
		dl[((size_t)b * N + i) * V + 5] = -1.0f;
	}
	cr_assert_eq(mb_backward_set_dlogits(bw, dl, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_hooks_init(&h, &err), 0);
	cr_assert_eq(mb_cache_init(&c, &err), 0);
	for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
		if (m->cfg.attn_only && strstr(points[i], "mlp"))
			continue;
		cr_assert_eq(mb_cache_add_name(c, points[i], &err), 0, "%s", err.msg);
	}
	cr_assert_eq(mb_cache_attach(c, h, &err), 0);
	cr_assert_eq(mb_backward_run(bw, &r, NULL, h, &err), 0, "%s", err.msg);
	printf("== %s hook gradients (logits %s)\n", model, mode == MB_LOGITS_ALL ? "ALL" : "LAST");
	for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
		mb_hook_point p;
		mb_npy want;
		char rel[512];
		double mx = 0;
		if (m->cfg.attn_only && strstr(points[i], "mlp"))
			continue;
		cr_assert_eq(mb_hook_parse(&p, points[i], &err), 0);
		const mb_hook_tensor *t = mb_cache_get(c, p);
		cr_assert_not_null(t, "%s: no gradient delivered", points[i]);
		snprintf(rel, sizeof(rel), "%s/batch0/hookgrads/%s.npy", model, points[i]);
		fx_npy(&want, rel);
		cr_assert_eq(t->numel, want.numel, "%s: shape", points[i]);
		if (p.kind == MB_HOOK_PATTERN) {
			/* The fixture is dense (masked entries carry dz . v); ours is
			 * defined on k <= q: compare there, and check the rest is 0. */
			const float *w = want.data;
			int H = (int)want.shape[1];
			long nb = 0;
			for (int b = 0; b < B; b++)
				for (int hh = 0; hh < H; hh++)
					for (int q = 0; q < T; q++)
						for (int k = 0; k < T; k++) {
							size_t f = (((size_t)b * H + hh) * T + q) * T + k;
							if (q >= len[b] || k > q) {
								if (t->data[f] != 0.0f)
									nb++;
								continue;
							}
							double d = fabs((double)t->data[f] - w[f]);
							if (!(d <= ATOL + RTOL * fabs((double)w[f])))
								nb++;
							if (d > mx)
								mx = d;
						}
			printf("%-44s max |diff| = %.3g (k <= q)%s\n", points[i], mx,
			       nb ? "  OUT OF TOLERANCE" : "");
			bad += nb;
		} else {
			bad += fx_compare(points[i], t->data, &want, len, 0, ATOL, RTOL, &mx);
			/* padded positions are exactly 0 */
			size_t inner = want.numel / ((size_t)B * T);
			for (int b = 0; b < B; b++)
				for (int tt = len[b]; tt < T; tt++)
					for (size_t k = 0; k < inner; k++)
						if (t->data[((size_t)b * T + tt) * inner + k] != 0.0f)
							bad++;
		}
		mb_npy_dispose(&want);
	}
	cr_expect_eq(bad, 0, "%s: %ld hook gradient entries out of tolerance", model, bad);
	free(dl);
	free(tok);
	free(len);
	mb_cache_free(c);
	mb_hooks_free(h);
	mb_backward_free(bw);
	mb_engine_free(e);
	mb_model_free(m);
}

Test(backward_golden, hook_gradients_match_torch_for_gpt2_ln_gelu)
{
	hook_grads("gpt2_ln_gelu", MB_LOGITS_ALL);
	hook_grads("gpt2_ln_gelu", MB_LOGITS_LAST);
}
Test(backward_golden, hook_gradients_match_torch_for_attn_only)
{
	hook_grads("attn_only", MB_LOGITS_ALL);
}
Test(backward_golden, hook_gradients_match_torch_for_noln_relu_untied)
{
	hook_grads("noln_relu_untied", MB_LOGITS_LAST);
}

/* The gradients at points the fixtures do not store, by identities that hold
 * for an un-intervened run: resid_pre's gradient is resid_mid's (the skip
 * connection) plus the sum over inputs X in {q, k, v} and heads h of the split
 * inputs' hook_X_input[:, :, h] gradients; every head's hook_result gradient is
 * hook_attn_out's; attn_scores' gradient is the softmax backward of
 * pattern's: dS = P (dP - sum_k P dP). */
Test(backward_golden, split_input_result_and_scores_gradients_are_consistent)
{
	mb_model *m = fx_model("gpt2_ln_gelu");
	int32_t *tok, *len;
	int B, T;
	mb_engine *e;
	mb_backward *bw;
	mb_hooks *h;
	mb_cache *c;
	mb_error err = {0};
	const int l = 1;
	static const char *const names[] = {
		"blocks.1.hook_resid_pre", "blocks.1.hook_resid_mid",  "blocks.1.hook_q_input",
		"blocks.1.hook_k_input",   "blocks.1.hook_v_input",    "blocks.1.attn.hook_result",
		"blocks.1.hook_attn_out",  "blocks.1.attn.hook_pattern", "blocks.1.attn.hook_attn_scores"};
	const mb_hook_tensor *t[9];

	fx_batch("gpt2_ln_gelu", "batch0", &tok, &len, &B, &T);
	e = fx_engine(m, B, T, 1);
	cr_assert_eq(mb_backward_init(&bw, e, &err), 0, "%s", err.msg);
	mb_run r = fx_run(tok, len, B, T);
	r.logits = MB_LOGITS_LAST;
	cr_assert_eq(mb_engine_forward(e, &r, &err), 0, "%s", err.msg);
	int V = m->cfg.n_vocab, D = m->cfg.d_model, H = m->cfg.n_head;
	float *dl = calloc((size_t)B * V, sizeof(float));
	for (int b = 0; b < B; b++) {
		dl[(size_t)b * V + 3] = 1.0f;
		dl[(size_t)b * V + 5] = -1.0f;
	}
	cr_assert_eq(mb_backward_set_dlogits(bw, dl, &err), 0);
	cr_assert_eq(mb_hooks_init(&h, &err), 0);
	cr_assert_eq(mb_cache_init(&c, &err), 0);
	for (int i = 0; i < 9; i++)
		cr_assert_eq(mb_cache_add_name(c, names[i], &err), 0, "%s", err.msg);
	cr_assert_eq(mb_cache_attach(c, h, &err), 0);
	cr_assert_eq(mb_backward_run(bw, &r, NULL, h, &err), 0, "%s", err.msg);
	for (int i = 0; i < 9; i++) {
		mb_hook_point p;
		cr_assert_eq(mb_hook_parse(&p, names[i], &err), 0);
		t[i] = mb_cache_get(c, p);
		cr_assert_not_null(t[i], "%s", names[i]);
	}
	double d_split = 0, d_result = 0, d_scores = 0, scale = 0;
	for (int b = 0; b < B; b++)
		for (int tt = 0; tt < len[b]; tt++)
			for (int k = 0; k < D; k++) {
				size_t bt = (size_t)b * T + tt;
				double s = t[1]->data[bt * D + k];
				for (int X = 0; X < 3; X++)
					for (int hh = 0; hh < H; hh++)
						s += t[2 + X]->data[(bt * H + hh) * D + k];
				d_split = fmax(d_split, fabs(s - t[0]->data[bt * D + k]));
				scale = fmax(scale, fabs(t[0]->data[bt * D + k]));
				for (int hh = 0; hh < H; hh++)
					d_result = fmax(d_result, fabs((double)t[5]->data[(bt * H + hh) * D + k] -
								       t[6]->data[bt * D + k]));
			}
	/* dS from dP and the forward's pattern (cached through a forward hook) */
	mb_hooks *fh;
	mb_cache *fc;
	cr_assert_eq(mb_hooks_init(&fh, &err), 0);
	cr_assert_eq(mb_cache_init(&fc, &err), 0);
	cr_assert_eq(mb_cache_add_name(fc, "blocks.1.attn.hook_pattern", &err), 0);
	cr_assert_eq(mb_cache_attach(fc, fh, &err), 0);
	mb_run r2 = r;
	r2.hooks = fh;
	cr_assert_eq(mb_engine_forward(e, &r2, &err), 0, "%s", err.msg);
	mb_hook_point pp = {MB_HOOK_PATTERN, l};
	const float *P = mb_cache_get(fc, pp)->data, *dP = t[7]->data, *dS = t[8]->data;
	for (int b = 0; b < B; b++)
		for (int hh = 0; hh < H; hh++)
			for (int q = 0; q < len[b]; q++) {
				size_t row = (((size_t)b * H + hh) * T + q) * T;
				double rs = 0;
				for (int k = 0; k <= q; k++)
					rs += (double)P[row + k] * dP[row + k];
				for (int k = 0; k <= q; k++)
					d_scores = fmax(d_scores, fabs(P[row + k] * (dP[row + k] - rs) -
								       dS[row + k]));
			}
	printf("resid_pre vs resid_mid + split inputs: max |diff| %.3g (|grad| <= %.3g); "
	       "hook_result vs attn_out %.3g; attn_scores vs softmax backward %.3g\n",
	       d_split, scale, d_result, d_scores);
	cr_expect_leq(d_split, 1e-5 * fmax(1.0, scale));
	cr_expect_eq(d_result, 0.0);
	cr_expect_leq(d_scores, 1e-5);
	mb_cache_free(fc);
	mb_hooks_free(fh);
	free(dl);
	free(tok);
	free(len);
	mb_cache_free(c);
	mb_hooks_free(h);
	mb_backward_free(bw);
	mb_engine_free(e);
	mb_model_free(m);
}

/* GPT-NeoX ----------------------------------------------------------------- */

/* The fixture's parameter gradients (Hugging Face GPT-NeoX names and layout:
 * nn.Linear (out, in), fused q/k/v per head) into the engine's layout,
 * through the production loader (a gradient maps by the same permutation as
 * its weight): written as one safetensors file, loaded as weights. */
static float *neox_expected_grads(const char *model, const mb_engine_config *cfg)
{
	static const char *const per_layer[] = {
		"input_layernorm.weight", "input_layernorm.bias", "post_attention_layernorm.weight",
		"post_attention_layernorm.bias", "attention.query_key_value.weight",
		"attention.query_key_value.bias", "attention.dense.weight", "attention.dense.bias",
		"mlp.dense_h_to_4h.weight", "mlp.dense_h_to_4h.bias", "mlp.dense_4h_to_h.weight",
		"mlp.dense_4h_to_h.bias"};
	const int L = cfg->n_layer, np = 12 * L + 4;
	char (*names)[128] = calloc((size_t)np, sizeof(*names));
	mb_st_entry *ents = calloc((size_t)np, sizeof(*ents));
	mb_npy *arrs = calloc((size_t)np, sizeof(*arrs));
	int n = 0;
	char path[512], rel[512];
	mb_error err = {0};
	mb_safetensors *st;
	mb_engine_weights w;
	float *params;
	size_t nparams;

	snprintf(names[n++], 128, "gpt_neox.embed_in.weight");
	for (int l = 0; l < L; l++)
		for (int i = 0; i < 12; i++)
			snprintf(names[n++], 128, "gpt_neox.layers.%d.%s", l, per_layer[i]);
	snprintf(names[n++], 128, "gpt_neox.final_layer_norm.weight");
	snprintf(names[n++], 128, "gpt_neox.final_layer_norm.bias");
	if (!cfg->tied)
		snprintf(names[n++], 128, "embed_out.weight");
	for (int i = 0; i < n; i++) {
		snprintf(rel, sizeof(rel), "%s/batch0/grads/%s.npy", model, names[i]);
		fx_npy(&arrs[i], rel);
		ents[i].name = names[i];
		ents[i].ndim = arrs[i].ndim;
		for (int d = 0; d < arrs[i].ndim; d++)
			ents[i].shape[d] = arrs[i].shape[d];
		ents[i].data = arrs[i].data;
	}
	snprintf(path, sizeof(path), "/tmp/mb_neox_grads_%d.safetensors", (int)getpid());
	cr_assert_eq(mb_safetensors_write_f32(path, ents, (size_t)n, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_safetensors_open(&st, path, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_model_weights_load(&w, &params, &nparams, cfg, st, &err), 0, "%s", err.msg);
	mb_safetensors_free(st);
	unlink(path);
	for (int i = 0; i < n; i++)
		mb_npy_dispose(&arrs[i]);
	free(arrs);
	free(ents);
	free(names);
	return params;
}

static void neox_param_grads(const char *model)
{
	static const char *const field[] = {"wte",   "wpe",   "ln1_w", "ln1_b",  "qkv_w",  "qkv_b",
					    "o_w",   "o_b",   "ln2_w", "ln2_b",  "fc_w",   "fc_b",
					    "proj_w", "proj_b", "lnf_w", "lnf_b", "unembed"};
	mb_model *m = fx_model(model);
	int32_t *tok, *len, *targets;
	int B, T;
	mb_engine *e;
	mb_backward *bw;
	mb_error err = {0};
	mb_engine_weights g, want;
	float *gblock, *wblock;
	double loss;
	mb_npy wl;
	char rel[512];
	long bad = 0;

	fx_batch(model, "batch0", &tok, &len, &B, &T);
	e = fx_engine(m, B, T, 1);
	cr_assert_eq(mb_backward_init(&bw, e, &err), 0, "%s", err.msg);
	mb_run r = fx_run(tok, len, B, T);
	cr_assert_eq(mb_engine_forward(e, &r, &err), 0, "%s", err.msg);
	targets = malloc(sizeof(int32_t) * (size_t)B * T);
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++)
			targets[b * T + t] = t + 1 < len[b] ? tok[b * T + t + 1] : -1;
	cr_assert_eq(mb_backward_xent(bw, targets, &loss, NULL, &err), 0, "%s", err.msg);
	size_t np = mb_engine_weights_layout(&g, &m->cfg, NULL);
	gblock = malloc(np * sizeof(float));
	for (size_t i = 0; i < np; i++)
		gblock[i] = NAN;
	mb_engine_weights_layout(&g, &m->cfg, gblock);
	cr_assert_eq(mb_backward_run(bw, &r, &g, NULL, &err), 0, "%s", err.msg);
	printf("== %s parameter gradients\n", model);
	snprintf(rel, sizeof(rel), "%s/batch0/grads/loss.npy", model);
	fx_npy(&wl, rel);
	printf("%-44s %.9f vs %.9f\n", "loss", loss, ((float *)wl.data)[0]);
	cr_expect(fabs(loss - ((float *)wl.data)[0]) <= 1e-5);
	mb_npy_dispose(&wl);
	wblock = neox_expected_grads(model, &m->cfg);
	mb_engine_weights_layout(&want, &m->cfg, wblock);
	/* field by field: the layout's tensors in order, each up to the next */
	const float *const *gp = (const float *const *)&g, *const *wp = (const float *const *)&want;
	size_t nf = sizeof(field) / sizeof(field[0]);
	for (size_t f = 0; f < nf; f++) {
		size_t begin, end = np;
		double mx = 0;
		long nb = 0;

		if (!gp[f] || (f == nf - 1 && m->cfg.tied))
			continue;
		begin = (size_t)(gp[f] - gblock);
		for (size_t k = f + 1; k < nf; k++)
			if (gp[k] && gp[k] != gp[0]) {
				end = (size_t)(gp[k] - gblock);
				break;
			}
		for (size_t i = begin; i < end; i++) {
			double d = fabs((double)gblock[i] - (double)wblock[i]);
			if (!(d <= ATOL_PARAM + RTOL * fabs((double)wblock[i])))
				nb++;
			if (!(d <= mx))
				mx = d;
		}
		cr_assert_eq(wp[f] - wblock, gp[f] - gblock);
		printf("%-44s max |diff| = %.3g%s\n", field[f], mx, nb ? "  OUT OF TOLERANCE" : "");
		bad += nb;
	}
	cr_expect_eq(bad, 0, "%s: %ld gradient entries out of tolerance", model, bad);
	free(wblock);
	free(gblock);
	free(targets);
	free(tok);
	free(len);
	mb_backward_free(bw);
	mb_engine_free(e);
	mb_model_free(m);
}

Test(backward_golden, parameter_gradients_match_torch_for_neox_parallel)
{
	neox_param_grads("neox_par");
}

Test(backward_golden, parameter_gradients_match_torch_for_neox_sequential)
{
	neox_param_grads("neox_seq");
}

/* dM/d(hook) through rotary and the parallel residual, at the points the
 * NeoX fixtures store (gen_neox_fixtures.py hookgrad_names). */
static void neox_hook_grads(const char *model, mb_logits_mode mode)
{
	static const char *const per_layer[] = {
		"hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_rot_q",
		"attn.hook_rot_k", "attn.hook_z", "ln2.hook_normalized", "mlp.hook_post",
		"hook_resid_post", "hook_resid_mid"};
	mb_model *m = fx_model(model);
	int32_t *tok, *len;
	int B, T, n = 0;
	mb_engine *e;
	mb_backward *bw;
	mb_hooks *h;
	mb_cache *c;
	mb_error err = {0};
	long bad = 0;
	char names[64][MB_HOOK_NAME_MAX];

	snprintf(names[n++], MB_HOOK_NAME_MAX, "hook_embed");
	snprintf(names[n++], MB_HOOK_NAME_MAX, "ln_final.hook_normalized");
	for (int l = 0; l < m->cfg.n_layer; l++)
		for (size_t i = 0; i < sizeof(per_layer) / sizeof(per_layer[0]); i++) {
			if (m->cfg.parallel && strcmp(per_layer[i], "hook_resid_mid") == 0)
				continue;
			snprintf(names[n++], MB_HOOK_NAME_MAX, "blocks.%d.%s", l, per_layer[i]);
		}
	fx_batch(model, "batch0", &tok, &len, &B, &T);
	e = fx_engine(m, B, T, 1);
	cr_assert_eq(mb_backward_init(&bw, e, &err), 0, "%s", err.msg);
	mb_run r = fx_run(tok, len, B, T);
	r.logits = mode;
	cr_assert_eq(mb_engine_forward(e, &r, &err), 0, "%s", err.msg);
	int N = mode == MB_LOGITS_ALL ? T : 1, V = m->cfg.n_vocab;
	float *dl = calloc((size_t)B * N * V, sizeof(float));
	for (int b = 0; b < B; b++) {
		int i = mode == MB_LOGITS_ALL ? len[b] - 1 : 0;
		dl[((size_t)b * N + i) * V + 3] = 1.0f;
		dl[((size_t)b * N + i) * V + 5] = -1.0f;
	}
	cr_assert_eq(mb_backward_set_dlogits(bw, dl, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_hooks_init(&h, &err), 0);
	cr_assert_eq(mb_cache_init(&c, &err), 0);
	for (int i = 0; i < n; i++)
		cr_assert_eq(mb_cache_add_name(c, names[i], &err), 0, "%s", err.msg);
	cr_assert_eq(mb_cache_attach(c, h, &err), 0);
	cr_assert_eq(mb_backward_run(bw, &r, NULL, h, &err), 0, "%s", err.msg);
	printf("== %s hook gradients (logits %s)\n", model, mode == MB_LOGITS_ALL ? "ALL" : "LAST");
	for (int i = 0; i < n; i++) {
		mb_hook_point p;
		mb_npy want;
		char rel[512];
		double mx = 0;

		cr_assert_eq(mb_hook_parse(&p, names[i], &err), 0);
		const mb_hook_tensor *t = mb_cache_get(c, p);
		cr_assert_not_null(t, "%s: no gradient delivered", names[i]);
		snprintf(rel, sizeof(rel), "%s/batch0/hookgrads/%s.npy", model, names[i]);
		fx_npy(&want, rel);
		cr_assert_eq(t->numel, want.numel, "%s: shape", names[i]);
		bad += fx_compare(names[i], t->data, &want, len, 0, ATOL, RTOL, &mx);
		mb_npy_dispose(&want);
	}
	cr_expect_eq(bad, 0, "%s: %ld hook gradient entries out of tolerance", model, bad);
	free(dl);
	free(tok);
	free(len);
	mb_cache_free(c);
	mb_hooks_free(h);
	mb_backward_free(bw);
	mb_engine_free(e);
	mb_model_free(m);
}

Test(backward_golden, hook_gradients_match_torch_for_neox_parallel)
{
	neox_hook_grads("neox_par", MB_LOGITS_ALL);
	neox_hook_grads("neox_par", MB_LOGITS_LAST);
}

Test(backward_golden, hook_gradients_match_torch_for_neox_sequential)
{
	neox_hook_grads("neox_seq", MB_LOGITS_ALL);
	neox_hook_grads("neox_seq", MB_LOGITS_LAST);
}
