/*
 * attribution: AtP, AtP*, EAP and EAP-IG against an independent PyTorch
 * implementation (tests/fixtures/attribution/gen_attribution.py, float64),
 * the hook gradients they use against that fixture and against central
 * finite differences of our own forward, and properties that pin the
 * methods down: AtP equals exact patching where the model is linear in the
 * nodes, the QK fix recovers a saturated key that plain AtP misses, a
 * sender's edges sum to its node score, GradDrop on a two-layer
 * attention-only model is the direct edge, batch invariance; and the
 * agreement statistics on hand-computed cases.
 *
 * Shape letters: B batch, T positions, L layers, H heads, D d_model, V vocab,
 * C components, S senders, R receivers.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/attribution.h>
#include <mechbench/backward.h>
#include <mechbench/hooks.h>
#include <mechbench/interventions.h>
#include <mechbench/npy.h>
#include <mechbench/rng.h>

#include "support/engine_fx.h"

#define AFX_DIR MB_SOURCE_DIR "/tests/fixtures/attribution"

/* ---- the PyTorch fixture ---- */

typedef struct afx {
	mb_model *m;
	mb_engine *e;
	int B, T;
	int32_t *clean, *corrupt, *len, *t0, *t1;
	mb_attr_span span;
	mb_attr_batch ab;
} afx;

static void afx_npy(mb_npy *out, const char *model, const char *rel)
{
	char path[1024];
	mb_error err = {0};

	snprintf(path, sizeof(path), "%s/%s/%s", AFX_DIR, model, rel);
	cr_assert_eq(mb_npy_read_f32(out, path, &err), 0, "%s", err.msg);
}

static int32_t *afx_ints(const char *model, const char *rel, size_t *n)
{
	mb_npy a;
	int32_t *out;

	afx_npy(&a, model, rel);
	out = malloc(sizeof(int32_t) * a.numel);
	cr_assert_not_null(out);
	for (size_t i = 0; i < a.numel; i++)
		out[i] = (int32_t)((float *)a.data)[i];
	if (n)
		*n = a.numel;
	mb_npy_dispose(&a);
	return out;
}

static void afx_open(afx *f, const char *model)
{
	size_t n;
	int32_t *span;

	memset(f, 0, sizeof(*f));
	f->m = fx_model(model);
	f->len = afx_ints(model, "inputs/lengths.npy", &n);
	f->B = (int)n;
	f->clean = afx_ints(model, "inputs/clean.npy", &n);
	f->T = (int)(n / (size_t)f->B);
	f->corrupt = afx_ints(model, "inputs/corrupt.npy", NULL);
	span = afx_ints(model, "inputs/span.npy", NULL);
	f->t0 = malloc(sizeof(int32_t) * (size_t)f->B);
	f->t1 = malloc(sizeof(int32_t) * (size_t)f->B);
	for (int b = 0; b < f->B; b++) {
		f->t0[b] = span[2 * b];
		f->t1[b] = span[2 * b + 1];
	}
	free(span);
	f->e = fx_engine(f->m, f->B, f->T, 1);
	f->span = (mb_attr_span){f->clean, f->T, f->t0, f->t1};
	f->ab = (mb_attr_batch){.batch = f->B, .seq = f->T, .clean = f->clean, .corrupt = f->corrupt,
				.lengths = f->len, .logits = MB_LOGITS_ALL,
				.metric = mb_attr_metric_span_loss, .payload = &f->span};
}

static void afx_close(afx *f)
{
	mb_engine_free(f->e);
	mb_model_free(f->m);
	free(f->clean);
	free(f->corrupt);
	free(f->len);
	free(f->t0);
	free(f->t1);
}

/* Compares n doubles with a fixture file; returns the number out of
 * atol + rtol |want| and prints the largest difference. */
static long cmp_d(const char *label, const double *got, size_t n, const char *model,
		  const char *rel, double atol, double rtol)
{
	mb_npy w;
	long bad = 0;
	double mx = 0;

	afx_npy(&w, model, rel);
	cr_assert_eq(w.numel, n, "%s: %zu values, the fixture has %zu", label, n, w.numel);
	for (size_t i = 0; i < n; i++) {
		double want = ((float *)w.data)[i], d = fabs(got[i] - want);
		if (!(d <= atol + rtol * fabs(want)))
			bad++;
		if (!(d <= mx))
			mx = d;
	}
	printf("%-28s %-12s max |diff| = %.3g%s\n", label, model, mx, bad ? "  OUT OF TOLERANCE" : "");
	mb_npy_dispose(&w);
	return bad;
}

static mb_attr_scores *run_method(afx *f, mb_attr_method method, int steps)
{
	mb_attr *a;
	mb_attr_scores *s;
	mb_error err = {0};
	mb_attr_opts o = {.method = method, .ig_steps = steps};

	cr_assert_eq(mb_attr_init(&a, f->e, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_attr_scores_init(&s, &f->m->cfg, f->B, f->T,
					 method == MB_ATTR_EAP || method == MB_ATTR_EAP_IG, &err), 0);
	cr_assert_eq(mb_attr_run(s, a, &f->ab, &o, &err), 0, "%s", err.msg);
	mb_attr_free(a);
	return s;
}

/* Node arrays of s against <dir>/<node>.npy. */
static long cmp_nodes(const mb_attr_scores *s, const char *model, const char *dir, double atol,
		      double rtol)
{
	size_t BLH = (size_t)s->batch * s->n_layer * s->n_head, BL = (size_t)s->batch * s->n_layer;
	char rel[256];
	long bad = 0;
	struct {
		const char *name;
		const double *v;
		size_t n;
	} nodes[] = {{"z", s->z, BLH},
		     {"q", s->q, BLH},
		     {"k", s->k, BLH},
		     {"v", s->v, BLH},
		     {"resid", s->resid, BL * s->seq},
		     {"mlp", s->mlp, BL},
		     {"neuron", s->neuron, BL * s->d_mlp}};

	for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
		if (!nodes[i].v)
			continue;
		snprintf(rel, sizeof(rel), "%s/%s.npy", dir, nodes[i].name);
		bad += cmp_d(rel, nodes[i].v, nodes[i].n, model, rel, atol, rtol);
	}
	return bad;
}

static const char *const fixture_models[] = {"gpt2_ln_gelu", "attn_only"};

/* dM/d(hook) of the span loss at every hook point the methods read. */
Test(attribution, hook_gradients_match_torch_autograd)
{
	static const char *const per_layer[] = {
		"hook_resid_pre", "hook_q_input", "hook_k_input", "hook_v_input", "attn.hook_q",
		"attn.hook_k", "attn.hook_v", "attn.hook_pattern", "attn.hook_z", "hook_attn_out",
		"hook_resid_post", "hook_resid_mid", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out"};

	for (int mi = 0; mi < 2; mi++) {
		afx f;
		mb_backward *bw;
		mb_hooks *h;
		mb_cache *c;
		mb_error err = {0};
		double *vals;
		float *dl;
		long bad = 0;
		const char *model = fixture_models[mi];

		afx_open(&f, model);
		vals = calloc((size_t)f.B, sizeof(double));
		dl = calloc((size_t)f.B * f.T * f.m->cfg.n_vocab, sizeof(float));
		cr_assert_eq(mb_backward_init(&bw, f.e, &err), 0);
		cr_assert_eq(mb_hooks_init(&h, &err), 0);
		cr_assert_eq(mb_cache_init(&c, &err), 0);
		for (int l = 0; l < f.m->cfg.n_layer; l++)
			for (size_t i = 0; i < sizeof(per_layer) / sizeof(per_layer[0]); i++) {
				char name[MB_HOOK_NAME_MAX];
				if (f.m->cfg.attn_only && (strstr(per_layer[i], "mlp") ||
							   strstr(per_layer[i], "mid")))
					continue;
				snprintf(name, sizeof(name), "blocks.%d.%s", l, per_layer[i]);
				cr_assert_eq(mb_cache_add_name(c, name, &err), 0, "%s", err.msg);
			}
		cr_assert_eq(mb_cache_attach(c, h, &err), 0);
		mb_run r = fx_run(f.clean, f.len, f.B, f.T);
		cr_assert_eq(mb_engine_forward(f.e, &r, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_attr_metric_span_loss(vals, dl, f.e, f.B, &f.span, &err), 0);
		bad += cmp_d("metric_clean", vals, (size_t)f.B, model, "metric_clean.npy", 1e-5, 1e-5);
		cr_assert_eq(mb_backward_set_dlogits(bw, dl, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_backward_run(bw, &r, NULL, h, &err), 0, "%s", err.msg);
		for (int l = 0; l < f.m->cfg.n_layer; l++)
			for (size_t i = 0; i < sizeof(per_layer) / sizeof(per_layer[0]); i++) {
				char name[MB_HOOK_NAME_MAX], rel[256];
				mb_hook_point p;
				mb_npy want;
				if (f.m->cfg.attn_only && (strstr(per_layer[i], "mlp") ||
							   strstr(per_layer[i], "mid")))
					continue;
				snprintf(name, sizeof(name), "blocks.%d.%s", l, per_layer[i]);
				cr_assert_eq(mb_hook_parse(&p, name, &err), 0);
				const mb_hook_tensor *t = mb_cache_get(c, p);
				cr_assert_not_null(t, "%s: no gradient", name);
				snprintf(rel, sizeof(rel), "grads/%s.npy", name);
				afx_npy(&want, model, rel);
				cr_assert_eq(t->numel, want.numel, "%s: shape", name);
				bad += fx_compare(name, t->data, &want, f.len, p.kind == MB_HOOK_PATTERN,
						  2e-6, 1e-4, NULL);
				mb_npy_dispose(&want);
			}
		cr_expect_eq(bad, 0, "%s: %ld gradient entries out of tolerance", model, bad);
		mb_cache_free(c);
		mb_hooks_free(h);
		mb_backward_free(bw);
		free(vals);
		free(dl);
		afx_close(&f);
	}
}

/* Node scores of method on both fixture models against <dir>/<node>.npy. */
static void nodes_match_torch(mb_attr_method method, const char *dir)
{
	for (int mi = 0; mi < 2; mi++) {
		afx f;
		afx_open(&f, fixture_models[mi]);
		mb_attr_scores *s = run_method(&f, method, 0);
		long bad = cmp_nodes(s, fixture_models[mi], dir, 2e-6, 1e-4);
		bad += cmp_d("metric_corrupt", s->metric_corrupt, (size_t)f.B, fixture_models[mi],
			     "metric_corrupt.npy", 1e-5, 1e-5);
		cr_expect_eq(bad, 0, "%s: %ld %s scores out of tolerance", fixture_models[mi], bad,
			     mb_attr_method_name(method));
		mb_attr_scores_free(s);
		afx_close(&f);
	}
}

Test(attribution, atp_node_scores_match_torch)
{
	nodes_match_torch(MB_ATTR_ATP, "atp");
}

Test(attribution, atp_star_scores_match_torch)
{
	nodes_match_torch(MB_ATTR_ATP_STAR, "atpstar");
}

Test(attribution, eap_and_eap_ig_match_torch)
{
	for (int mi = 0; mi < 2; mi++) {
		afx f;
		long bad = 0;
		afx_open(&f, fixture_models[mi]);
		mb_attr_scores *s = run_method(&f, MB_ATTR_EAP, 0);
		size_t n = (size_t)f.B * s->n_receivers * s->n_senders;
		bad += cmp_d("eap/edges", s->edges, n, fixture_models[mi], "eap/edges.npy", 2e-6, 1e-4);
		mb_attr_scores_free(s);
		s = run_method(&f, MB_ATTR_EAP_IG, 3);
		bad += cmp_d("eapig/edges", s->edges, n, fixture_models[mi], "eapig/edges.npy", 2e-6,
			     1e-4);
		bad += cmp_nodes(s, fixture_models[mi], "eapig", 2e-6, 1e-4);
		cr_expect_eq(bad, 0, "%s: %ld EAP / EAP-IG scores out of tolerance", fixture_models[mi],
			     bad);
		mb_attr_scores_free(s);
		afx_close(&f);
	}
}

Test(attribution, exact_patching_matches_torch)
{
	for (int mi = 0; mi < 2; mi++) {
		afx f;
		mb_error err = {0};
		afx_open(&f, fixture_models[mi]);
		int C = mb_attr_n_components(&f.m->cfg);
		double *ex = calloc((size_t)f.B * C, sizeof(double));
		cr_assert_eq(mb_attr_exact(ex, f.e, &f.ab, &err), 0, "%s", err.msg);
		long bad = cmp_d("exact", ex, (size_t)f.B * C, fixture_models[mi], "exact.npy", 1e-5,
				 1e-4);
		cr_expect_eq(bad, 0, "%s: %ld exact effects out of tolerance", fixture_models[mi], bad);
		free(ex);
		afx_close(&f);
	}
}

/* ---- finite differences of our own forward ---- */

typedef struct bump {
	size_t idx;
	float d;
} bump;

static int bump_hook(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	const bump *b = payload;
	(void)err;
	t->data[b->idx] += b->d;
	return 0;
}

static double metric_sum(afx *f, const mb_hook_point *p, bump *bp)
{
	mb_hooks *h;
	mb_error err = {0};
	double v[8], s = 0;

	cr_assert_eq(mb_hooks_init(&h, &err), 0);
	cr_assert_eq(mb_hooks_add(h, *p, bump_hook, bp, 0, &err), 0, "%s", err.msg);
	mb_run r = fx_run(f->clean, f->len, f->B, f->T);
	r.hooks = h;
	cr_assert_eq(mb_engine_forward(f->e, &r, &err), 0, "%s", err.msg);
	cr_assert_eq(f->ab.metric(v, NULL, f->e, f->B, f->ab.payload, &err), 0);
	for (int b = 0; b < f->B; b++)
		s += v[b];
	mb_hooks_free(h);
	return s;
}

/* Every hook point the methods read, 3 random valid entries each: the
 * backward's gradient against (M(x + h) - M(x - h)) / 2h of our float
 * forward, h = 1e-2 (error ~ h^2 |M'''| plus float rounding / h). */
Test(attribution, hook_gradients_match_finite_differences)
{
	static const char *const per_layer[] = {
		"hook_resid_pre", "hook_q_input", "hook_k_input", "hook_v_input", "attn.hook_q",
		"attn.hook_k", "attn.hook_v", "attn.hook_pattern", "attn.hook_z", "hook_resid_post",
		"hook_resid_mid", "mlp.hook_post", "hook_mlp_out"};
	afx f;
	mb_backward *bw;
	mb_hooks *h;
	mb_cache *c;
	mb_error err = {0};
	mb_rng rng;
	double vals[8], worst = 0;
	long bad = 0;

	afx_open(&f, "gpt2_ln_gelu");
	float *dl = calloc((size_t)f.B * f.T * f.m->cfg.n_vocab, sizeof(float));
	cr_assert_eq(mb_backward_init(&bw, f.e, &err), 0);
	cr_assert_eq(mb_hooks_init(&h, &err), 0);
	cr_assert_eq(mb_cache_init(&c, &err), 0);
	for (int l = 0; l < 2; l++)
		for (size_t i = 0; i < sizeof(per_layer) / sizeof(per_layer[0]); i++) {
			char name[MB_HOOK_NAME_MAX];
			snprintf(name, sizeof(name), "blocks.%d.%s", l, per_layer[i]);
			cr_assert_eq(mb_cache_add_name(c, name, &err), 0);
		}
	cr_assert_eq(mb_cache_attach(c, h, &err), 0);
	mb_run r = fx_run(f.clean, f.len, f.B, f.T);
	cr_assert_eq(mb_engine_forward(f.e, &r, &err), 0);
	cr_assert_eq(mb_attr_metric_span_loss(vals, dl, f.e, f.B, &f.span, &err), 0);
	cr_assert_eq(mb_backward_set_dlogits(bw, dl, &err), 0);
	cr_assert_eq(mb_backward_run(bw, &r, NULL, h, &err), 0, "%s", err.msg);
	mb_rng_init_named(&rng, 7, "test/attribution/fd", 0);
	for (int l = 0; l < 2; l++)
		for (size_t i = 0; i < sizeof(per_layer) / sizeof(per_layer[0]); i++) {
			char name[MB_HOOK_NAME_MAX];
			mb_hook_point p;
			snprintf(name, sizeof(name), "blocks.%d.%s", l, per_layer[i]);
			cr_assert_eq(mb_hook_parse(&p, name, &err), 0);
			const mb_hook_tensor *g = mb_cache_get(c, p);
			cr_assert_not_null(g);
			for (int k = 0; k < 3; k++) {
				size_t idx;
				int b, t, tk = 0;
				do { /* a valid entry: t < len[b] (and key <= query for patterns) */
					idx = (size_t)mb_rng_range(&rng, g->numel);
					b = (int)(idx / (g->numel / (size_t)f.B));
					if (p.kind == MB_HOOK_PATTERN) {
						t = (int)(idx / (size_t)f.T % (size_t)f.T);
						tk = (int)(idx % (size_t)f.T);
					} else {
						t = (int)(idx / (g->numel / (size_t)f.B / (size_t)f.T) %
							  (size_t)f.T);
					}
				} while (t >= f.len[b] || tk > t);
				bump up = {idx, 1e-2f}, dn = {idx, -1e-2f};
				double fd = (metric_sum(&f, &p, &up) - metric_sum(&f, &p, &dn)) / 2e-2;
				double an = g->data[idx], d = fabs(fd - an);
				if (d > worst)
					worst = d;
				if (!(d <= 2e-4 + 1e-2 * fabs(an))) {
					bad++;
					printf("%s[%zu]: finite difference %.6g, gradient %.6g\n", name, idx,
					       fd, an);
				}
			}
		}
	printf("finite differences: max |diff| %.3g over %d entries\n", worst, 2 * 13 * 3);
	cr_expect_eq(bad, 0, "%ld gradients disagree with finite differences", bad);
	mb_cache_free(c);
	mb_hooks_free(h);
	mb_backward_free(bw);
	free(dl);
	afx_close(&f);
}

/* ---- constructed models ---- */

/* A GPT-2-shaped model with its own weight block; every tensor N(0, sd^2)
 * from a named stream, LayerNorm weights 1 and biases 0. */
typedef struct tiny {
	mb_engine_config cfg;
	mb_engine_weights w;
	float *block;
	mb_engine *e;
} tiny;

static void tiny_init(tiny *m, const mb_engine_config *cfg, float sd, uint64_t seed)
{
	mb_rng r;
	size_t n;

	memset(m, 0, sizeof(*m));
	m->cfg = *cfg;
	n = mb_engine_weights_layout(&m->w, cfg, NULL);
	m->block = malloc(sizeof(float) * n);
	cr_assert_not_null(m->block);
	mb_engine_weights_layout(&m->w, cfg, m->block);
	mb_rng_init_named(&r, seed, "test/attribution/weights", 0);
	for (size_t i = 0; i < n; i++)
		m->block[i] = (float)(sd * mb_rng_normal(&r));
	if (m->w.ln1_w)
		for (int i = 0; i < cfg->n_layer * cfg->d_model; i++) {
			m->w.ln1_w[i] = 1;
			m->w.ln1_b[i] = 0;
		}
}

static void tiny_engine(tiny *m, int B, int T)
{
	mb_error err = {0};
	mb_engine_opts o = {B, T, 1};
	cr_assert_eq(mb_engine_init(&m->e, &m->cfg, &m->w, &o, &err), 0, "%s", err.msg);
}

static void tiny_free(tiny *m)
{
	mb_engine_free(m->e);
	free(m->block);
}

/* Attention-only, no LayerNorm, and layer 1's W_Q = W_K = 0 (uniform
 * attention): the logits are linear in every head's z and in every residual
 * point, so a first-order estimate is exact. */
Test(attribution, atp_equals_exact_patching_where_the_model_is_linear)
{
	mb_engine_config cfg = {.n_vocab = 11, .n_ctx = 8, .d_model = 8, .n_layer = 2, .n_head = 2,
				.d_head = 4, .act = MB_ACT_GELU_NEW, .norm = MB_NORM_NONE,
				.attn_only = 1, .tied = 0, .ln_eps = 1e-5f};
	tiny m;
	const int B = 3, T = 6, D = 8;
	int32_t clean[18], corr[18], len[3] = {6, 5, 6}, good[3] = {1, 2, 3}, bad[3] = {4, 5, 6};
	mb_attr_logit_diff ld = {good, bad, NULL};
	mb_attr_batch ab = {.batch = B, .seq = T, .clean = clean, .corrupt = corr, .lengths = len,
			    .logits = MB_LOGITS_LAST, .metric = mb_attr_metric_logit_diff,
			    .payload = &ld};
	mb_attr *a;
	mb_attr_scores *s;
	mb_attr_opts o = {.method = MB_ATTR_ATP};
	mb_error err = {0};
	mb_rng r;
	double ex[3 * 4], worst = 0, scale = 0;

	tiny_init(&m, &cfg, 0.5f, 11);
	for (int i = 0; i < D; i++) /* layer 1: Q and K columns and biases zero */
		for (int j = 0; j < 2 * D; j++)
			m.w.qkv_w[(size_t)D * 3 * D + (size_t)i * 3 * D + j] = 0;
	for (int j = 0; j < 2 * D; j++)
		m.w.qkv_b[3 * D + j] = 0;
	tiny_engine(&m, B, T);
	mb_rng_init_named(&r, 3, "test/attribution/tokens", 0);
	for (int i = 0; i < B * T; i++) {
		clean[i] = (int32_t)mb_rng_range(&r, 11);
		corr[i] = i % T == 2 || i % T == 4 ? (int32_t)mb_rng_range(&r, 11) : clean[i];
	}
	cr_assert_eq(mb_attr_init(&a, m.e, &err), 0);
	cr_assert_eq(mb_attr_scores_init(&s, &cfg, B, T, 0, &err), 0);
	cr_assert_eq(mb_attr_run(s, a, &ab, &o, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_attr_exact(ex, m.e, &ab, &err), 0, "%s", err.msg);
	for (int b = 0; b < B; b++) {
		double total = s->metric_corrupt[b] - s->metric_clean[b], in = 0;
		for (int c = 0; c < 4; c++) {
			worst = fmax(worst, fabs(s->z[b * 4 + c] - ex[b * 4 + c]));
			scale = fmax(scale, fabs(ex[b * 4 + c]));
		}
		for (int t = 0; t < T; t++) /* layer 1's input, every position: the whole change */
			in += s->resid[((size_t)b * 2 + 1) * T + t];
		worst = fmax(worst, fabs(in - total));
	}
	printf("linear model: max |AtP - exact| = %.3g (largest effect %.3g)\n", worst, scale);
	cr_assert_gt(scale, 0.05, "the corruption must move the heads (largest effect %g)", scale);
	cr_expect_lt(worst, 1e-4 * (1 + scale), "AtP differs from exact patching by %g", worst);
	mb_attr_scores_free(s);
	mb_attr_free(a);
	tiny_free(&m);
}

/*
 * One head that attends, saturated (p ~ 0.9993), from the query token 3 to a
 * key token 1; corrupting that token to 2 gives its key 0 and the pattern
 * becomes uniform. The metric (logit 1 - logit 0) is linear in the pattern,
 * so the QK fix is exact for the key node, while plain AtP, linear through
 * the saturated softmax, sees almost nothing.
 */
Test(attribution, qk_fix_recovers_a_saturated_key_that_plain_atp_misses)
{
	mb_engine_config cfg = {.n_vocab = 4, .n_ctx = 3, .d_model = 4, .n_layer = 1, .n_head = 1,
				.d_head = 4, .act = MB_ACT_GELU_NEW, .norm = MB_NORM_NONE,
				.attn_only = 1, .tied = 0, .ln_eps = 1e-5f};
	tiny m;
	const int D = 4;
	int32_t clean[3] = {0, 1, 3}, corr[3] = {0, 2, 3}, good = 1, bad = 0;
	mb_attr_logit_diff ld = {&good, &bad, NULL};
	mb_attr_batch ab = {.batch = 1, .seq = 3, .clean = clean, .corrupt = corr,
			    .logits = MB_LOGITS_LAST, .metric = mb_attr_metric_logit_diff,
			    .payload = &ld};
	mb_attr *a;
	mb_attr_scores *plain, *star;
	mb_attr_opts po = {.method = MB_ATTR_ATP}, so = {.method = MB_ATTR_ATP_STAR, .no_grad_drop = 1};
	mb_error err = {0};

	tiny_init(&m, &cfg, 0, 1);
	for (int i = 0; i < D; i++) {
		m.w.wte[i * D + i] = 1;           /* token i -> e_i */
		m.w.unembed[i * D + i] = 1;       /* logit i = x_i */
		m.w.qkv_w[i * 3 * D + 2 * D + i] = 1; /* v = x */
		m.w.o_w[i * D + i] = 1;           /* W_O = I */
	}
	m.w.qkv_w[3 * 3 * D + 1] = 4;     /* q of token 3 = 4 e_1 */
	m.w.qkv_w[1 * 3 * D + D + 1] = 4; /* k of token 1 = 4 e_1: score 16 / 2 = 8 */
	tiny_engine(&m, 1, 3);
	cr_assert_eq(mb_attr_init(&a, m.e, &err), 0);
	cr_assert_eq(mb_attr_scores_init(&plain, &cfg, 1, 3, 0, &err), 0);
	cr_assert_eq(mb_attr_scores_init(&star, &cfg, 1, 3, 0, &err), 0);
	cr_assert_eq(mb_attr_run(plain, a, &ab, &po, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_attr_run(star, a, &ab, &so, &err), 0, "%s", err.msg);

	/* exact: hook_k patched from the corrupted run */
	mb_hooks *h;
	mb_cache *c;
	mb_iv *iv;
	mb_hook_point kp = {MB_HOOK_K, 0};
	mb_run r = {.batch = 1, .seq = 3, .tokens = corr, .logits = MB_LOGITS_LAST};
	double patched;
	cr_assert_eq(mb_hooks_init(&h, &err), 0);
	cr_assert_eq(mb_cache_init(&c, &err), 0);
	cr_assert_eq(mb_cache_add(c, kp, &err), 0);
	cr_assert_eq(mb_cache_attach(c, h, &err), 0);
	r.hooks = h;
	cr_assert_eq(mb_engine_forward(m.e, &r, &err), 0);
	mb_hooks_clear(h);
	cr_assert_eq(mb_iv_init(&iv, &err), 0);
	cr_assert_eq(mb_iv_patch_head(iv, &cfg, kp, 0, mb_cache_get(c, kp), NULL, 0, &err), 0,
		     "%s", err.msg);
	cr_assert_eq(mb_iv_attach(iv, h, &err), 0);
	r.tokens = clean;
	cr_assert_eq(mb_engine_forward(m.e, &r, &err), 0);
	cr_assert_eq(mb_attr_metric_logit_diff(&patched, NULL, m.e, 1, &ld, &err), 0);
	double exact = patched - plain->metric_clean[0], qk[2];
	cr_assert_eq(mb_attr_exact_qk(qk, m.e, &ab, &err), 0, "%s", err.msg);
	cr_expect_float_eq(qk[1], exact, 1e-6, "mb_attr_exact_qk %g vs a hand-made patch %g", qk[1],
			   exact);

	printf("saturated key: exact %.6f, AtP %.6f, AtP* (QK fix) %.6f\n", exact, plain->k[0],
	       star->k[0]);
	cr_assert_gt(plain->metric_clean[0], 0.99, "the head is not saturated (M = %g)",
		     plain->metric_clean[0]);
	cr_expect_lt(fabs(star->k[0] - exact), 1e-5, "QK fix %g vs exact %g", star->k[0], exact);
	cr_expect_lt(fabs(plain->k[0]), 0.05 * fabs(exact), "plain AtP %g should miss %g",
		     plain->k[0], exact);
	mb_iv_free(iv);
	mb_cache_free(c);
	mb_hooks_free(h);
	mb_attr_scores_free(plain);
	mb_attr_scores_free(star);
	mb_attr_free(a);
	tiny_free(&m);
}

/* The residual stream is a sum: a sender's output reaches the metric only
 * through its receivers' inputs, so its edges sum to its AtP node score. */
Test(attribution, edges_of_a_sender_sum_to_its_node_score)
{
	afx f;
	afx_open(&f, "gpt2_ln_gelu");
	mb_attr_scores *e = run_method(&f, MB_ATTR_EAP, 0);
	const mb_engine_config *c = &f.m->cfg;
	int S = e->n_senders, R = e->n_receivers, L = c->n_layer, H = c->n_head;
	double worst = 0;

	for (int b = 0; b < f.B; b++) {
		for (int s = 0; s < S; s++) {
			double sum = 0, node = 0;
			for (int r = 0; r < R; r++)
				sum += e->edges[((size_t)b * R + r) * S + s];
			if (s == 0) {
				for (int t = 0; t < f.T; t++)
					node += e->resid[(size_t)b * L * f.T + t];
			} else if ((s - 1) % (H + 1) < H) {
				node = e->z[((size_t)b * L + (s - 1) / (H + 1)) * H + (s - 1) % (H + 1)];
			} else {
				node = e->mlp[(size_t)b * L + (s - 1) / (H + 1)];
			}
			worst = fmax(worst, fabs(sum - node));
		}
	}
	printf("edge sums vs node scores: max |diff| %.3g\n", worst);
	cr_expect_lt(worst, 1e-5, "edges of a sender do not sum to its node score (%g)", worst);
	mb_attr_scores_free(e);
	afx_close(&f);
}

/* On two attention-only layers, GradDrop at layer 1 leaves a layer-0 head
 * only its direct path, so AtP* without the QK fix gives |edge(a0.h ->
 * out)| (GradDrop at layer 0 gives it 0; the mean is over L - 1 = 1), and a
 * layer-1 head |AtP|: two independent routes (a second engine with zeroed
 * layers, the receivers' gradients) to one number. */
Test(attribution, grad_drop_on_two_attention_layers_is_the_direct_edge)
{
	afx f;
	mb_attr *a;
	mb_attr_scores *star, *eap;
	mb_attr_opts so = {.method = MB_ATTR_ATP_STAR, .no_qk_fix = 1};
	mb_error err = {0};
	double worst = 0;

	afx_open(&f, "attn_only");
	const int H = f.m->cfg.n_head;
	eap = run_method(&f, MB_ATTR_EAP, 0);
	cr_assert_eq(mb_attr_init(&a, f.e, &err), 0);
	cr_assert_eq(mb_attr_scores_init(&star, &f.m->cfg, f.B, f.T, 0, &err), 0);
	cr_assert_eq(mb_attr_run(star, a, &f.ab, &so, &err), 0, "%s", err.msg);
	for (int b = 0; b < f.B; b++)
		for (int h = 0; h < H; h++) {
			int R = eap->n_receivers, S = eap->n_senders;
			double direct = eap->edges[((size_t)b * R + R - 1) * S + 1 + h];
			worst = fmax(worst, fabs(star->z[(size_t)b * 2 * H + h] - fabs(direct)));
			worst = fmax(worst, fabs(star->z[(size_t)b * 2 * H + H + h] -
						 fabs(eap->z[(size_t)b * 2 * H + H + h])));
		}
	printf("GradDrop vs direct edges: max |diff| %.3g\n", worst);
	cr_expect_lt(worst, 1e-5, "GradDrop differs from the direct edge by %g", worst);
	mb_attr_scores_free(star);
	mb_attr_scores_free(eap);
	mb_attr_free(a);
	afx_close(&f);
}

/* An item's scores do not depend on the other items of its batch. */
Test(attribution, an_items_scores_do_not_depend_on_its_batch)
{
	afx f;
	afx_open(&f, "gpt2_ln_gelu");
	mb_attr_scores *all = run_method(&f, MB_ATTR_EAP, 0), *one;
	mb_attr *a;
	mb_error err = {0};
	mb_attr_opts o = {.method = MB_ATTR_EAP};
	int32_t t0 = f.t0[2], t1 = f.t1[2];
	mb_attr_span sp = {f.clean + 2 * f.T, f.T, &t0, &t1};
	mb_attr_batch ab = f.ab;
	const int L = f.m->cfg.n_layer, H = f.m->cfg.n_head;
	size_t ne = (size_t)all->n_senders * all->n_receivers;

	ab.batch = 1;
	ab.clean = f.clean + 2 * f.T;
	ab.corrupt = f.corrupt + 2 * f.T;
	ab.lengths = f.len + 2;
	ab.payload = &sp;
	cr_assert_eq(mb_attr_init(&a, f.e, &err), 0);
	cr_assert_eq(mb_attr_scores_init(&one, &f.m->cfg, 1, f.T, 1, &err), 0);
	cr_assert_eq(mb_attr_run(one, a, &ab, &o, &err), 0, "%s", err.msg);
	cr_expect_eq(memcmp(one->z, all->z + 2 * L * H, sizeof(double) * L * H), 0);
	cr_expect_eq(memcmp(one->neuron, all->neuron + 2 * (size_t)L * all->d_mlp,
			    sizeof(double) * L * all->d_mlp), 0);
	cr_expect_eq(memcmp(one->edges, all->edges + 2 * ne, sizeof(double) * ne), 0);
	mb_attr_scores_free(one);
	mb_attr_scores_free(all);
	mb_attr_free(a);
	afx_close(&f);
}

/* ---- agreement statistics ---- */

Test(attribution, spearman_topk_and_circuit_size_on_hand_computed_cases)
{
	double x[5] = {1, 2, 3, 4, 5}, y[5] = {5, 6, 7, 8, 7}, z[5] = {2, 1, 4, 3, 5};
	int idx[3];

	/* y ranks 1 2 3.5 5 3.5: r = 0.82078 (Pearson of the ranks) */
	cr_expect_float_eq(mb_attr_spearman(x, y, 5), 0.8207826816681233, 1e-12);
	/* z: d = (1, 1, 1, 1, 0), 1 - 6 * 4 / (5 * 24) = 0.8 */
	cr_expect_float_eq(mb_attr_spearman(x, z, 5), 0.8, 1e-12);
	cr_expect(isnan(mb_attr_spearman(x, (double[5]){1, 1, 1, 1, 1}, 5)));
	mb_attr_topk(idx, (double[5]){0.1, -3, 2, -2, 0.5}, 5, 3);
	cr_expect(idx[0] == 1 && idx[1] == 2 && idx[2] == 3, "top-3 by |.|, ties by index");
	cr_expect_eq(mb_attr_circuit_size((double[4]){1, -0.5, 0.09, 0.1}, 4, 0.1), 3);
}

Test(attribution, agreement_counts_top_k_overlap_and_brackets_it_with_a_bootstrap)
{
	/* 4 items, 4 components; exact top-2 = {0, 1}; approx top-2 = {0, 2} */
	double exact[16], approx[16];
	uint8_t truth[4] = {1, 0, 1, 0};
	mb_attr_agreement g;
	mb_error err = {0};

	for (int b = 0; b < 4; b++) {
		double ex[4] = {3, 2, 0.5, 0.1}, ap[4] = {2.5, 0.2, 1.5, 0.3};
		for (int c = 0; c < 4; c++) {
			exact[b * 4 + c] = ex[c] + 0.01 * b;
			approx[b * 4 + c] = ap[c] - 0.01 * b;
		}
	}
	cr_assert_eq(mb_attr_agree(&g, approx, exact, NULL, 4, 4, 2, 0, 200, 1, &err), 0);
	cr_expect_float_eq(g.precision, 0.5, 1e-12);
	cr_expect_float_eq(g.recall, 0.5, 1e-12);
	cr_expect(g.precision_lo <= g.precision && g.precision <= g.precision_hi);
	cr_expect(g.spearman_lo <= g.spearman && g.spearman <= g.spearman_hi);
	/* against a true circuit {0, 2}: both found */
	cr_assert_eq(mb_attr_agree(&g, approx, NULL, truth, 4, 4, 0, 0, 0, 1, &err), 0);
	cr_expect_eq(g.k, 2);
	cr_expect_float_eq(g.precision, 1.0, 1e-12);
	cr_expect_float_eq(g.recall, 1.0, 1e-12);
	cr_expect(isnan(g.spearman));
	cr_expect_eq(mb_attr_agree(&g, approx, exact, NULL, 4, 4, 5, 0, 0, 1, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "k = 5") != NULL, "%s", err.msg);
}

Test(attribution, method_names_round_trip_and_unknown_names_are_refused)
{
	mb_attr_method m;
	mb_error err = {0};

	for (int i = 0; i < 4; i++) {
		cr_assert_eq(mb_attr_method_parse(&m, mb_attr_method_name((mb_attr_method)i), &err), 0);
		cr_expect_eq((int)m, i);
	}
	cr_expect_eq(mb_attr_method_parse(&m, "atp*", &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "'atp*'") != NULL, "%s", err.msg);
}
