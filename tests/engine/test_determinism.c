/*
 * determinism: bitwise-identical logits and hook values across repeated runs,
 * across 1 and 2 threads (OpenMP and OpenBLAS), and for an item alone or
 * inside batches of other items of other lengths (batch invariance); and
 * observing cheap hook points read-only, or keeping activations for the
 * backward, leaves every bit unchanged.
 *
 * Besides the fixture models (D <= 32) a random in-memory model with
 * D = 128, M = 512, V = 300 exercises OpenBLAS's blocking on larger shapes.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

#include <mechbench/hooks.h>

#include "support/engine_fx.h"

typedef struct rand_model {
	mb_engine_config cfg;
	mb_engine_weights w;
	float *params;
} rand_model;

static void make_random(rand_model *m, int L, int D, int H, int M, int V, int P)
{
	uint64_t s = 99;
	size_t n;

	memset(m, 0, sizeof(*m));
	m->cfg = (mb_engine_config){.n_vocab = V, .n_ctx = P, .d_model = D, .n_layer = L,
				    .n_head = H, .d_head = D / H, .d_mlp = M,
				    .act = MB_ACT_GELU_NEW, .norm = MB_NORM_LN, .tied = 1,
				    .ln_eps = 1e-5f};
	n = mb_engine_weights_layout(&m->w, &m->cfg, NULL);
	m->params = malloc(sizeof(float) * n);
	cr_assert(m->params);
	mb_engine_weights_layout(&m->w, &m->cfg, m->params);
	for (size_t i = 0; i < n; i++) {
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		m->params[i] = ((float)(s >> 40) / 16777216.0f - 0.5f) * 0.2f;
	}
	for (int i = 0; i < L * D; i++) {
		m->w.ln1_w[i] += 1.0f;
		m->w.ln2_w[i] += 1.0f;
	}
	for (int i = 0; i < D; i++)
		m->w.lnf_w[i] += 1.0f;
}

static void set_threads(int n)
{
	omp_set_num_threads(n);
	openblas_set_num_threads(n);
}

/* Runs r on a fresh engine with every cheap hook cached; returns the cache
 * (caller frees) and the logits copy (B, T, V). */
static mb_cache *run_cached(const mb_engine_config *cfg, const mb_engine_weights *w,
			    const mb_run *r0, float **logits, int keep)
{
	mb_engine *e = NULL;
	mb_engine_opts o = {r0->batch, r0->seq, keep};
	mb_hooks *h;
	mb_cache *c;
	mb_error err = {0};
	mb_run r = *r0;

	cr_assert_eq(mb_engine_init(&e, cfg, w, &o, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_hooks_init(&h, &err), 0);
	cr_assert_eq(mb_cache_init(&c, &err), 0);
	cr_assert_eq(mb_cache_add_all(c, cfg, 0, &err), 0);
	cr_assert_eq(mb_cache_attach(c, h, &err), 0);
	r.hooks = h;
	cr_assert_eq(mb_engine_forward(e, &r, &err), 0, "%s", err.msg);
	*logits = malloc(sizeof(float) * (size_t)r.batch * r.seq * cfg->n_vocab);
	mb_engine_logits_copy(e, *logits);
	mb_hooks_free(h);
	mb_engine_free(e);
	return c;
}

static void expect_same_caches(const mb_cache *a, const mb_cache *b, const mb_engine_config *cfg,
			       const char *what)
{
	int n = 0;

	for (int k = 0; k < MB_HOOK_KIND_COUNT; k++)
		for (int l = -1; l < cfg->n_layer; l++) {
			mb_hook_point p = {(mb_hook_kind)k, l};
			const mb_hook_tensor *x = mb_cache_get(a, p), *y = mb_cache_get(b, p);
			char name[MB_HOOK_NAME_MAX];

			if (!x && !y)
				continue;
			mb_hook_name(name, sizeof(name), p);
			cr_assert(x && y, "%s: %s cached in one run only", what, name);
			cr_assert_eq(x->numel, y->numel);
			cr_expect_eq(memcmp(x->data, y->data, x->numel * sizeof(float)), 0,
				     "%s: %s differs", what, name);
			n++;
		}
	printf("%s: %d hook tensors bitwise equal\n", what, n);
	cr_expect_gt(n, 20);
}

Test(determinism, repeated_runs_and_thread_counts_give_identical_bits)
{
	for (int mi = 0; mi < FX_N_MODELS; mi++) {
		mb_model *m = fx_model(fx_models[mi]);
		int32_t *tok, *len;
		int B, T;
		float *l1, *l2, *l3;
		mb_cache *c1, *c2, *c3;
		mb_run r;
		size_t n;

		fx_batch(fx_models[mi], "batch0", &tok, &len, &B, &T);
		r = fx_run(tok, len, B, T);
		n = (size_t)B * T * m->cfg.n_vocab;
		set_threads(2);
		c1 = run_cached(&m->cfg, &m->w, &r, &l1, 0);
		c2 = run_cached(&m->cfg, &m->w, &r, &l2, 0);
		set_threads(1);
		c3 = run_cached(&m->cfg, &m->w, &r, &l3, 0);
		set_threads(2);
		cr_expect_eq(memcmp(l1, l2, n * sizeof(float)), 0, "%s: repeated run", fx_models[mi]);
		cr_expect_eq(memcmp(l1, l3, n * sizeof(float)), 0, "%s: 1 vs 2 threads",
			     fx_models[mi]);
		expect_same_caches(c1, c2, &m->cfg, "repeated run");
		expect_same_caches(c1, c3, &m->cfg, "1 vs 2 threads");
		mb_cache_free(c1);
		mb_cache_free(c2);
		mb_cache_free(c3);
		free(l1);
		free(l2);
		free(l3);
		free(tok);
		free(len);
		mb_model_free(m);
	}
}

/* Logits of one item: alone at its own length, vs in several batches. */
static void check_batch_invariance(const mb_engine_config *cfg, const mb_engine_weights *w,
				   const int32_t *items, const int32_t *lens, int n_items,
				   int stride, mb_logits_mode mode, const char *what)
{
	int V = cfg->n_vocab, Tmax = 0, extra;
	mb_engine *e = NULL;
	mb_engine_opts o;
	mb_error err = {0};
	float **alone = calloc((size_t)n_items, sizeof(float *));
	int32_t *tok, *blen;
	long checked = 0;

	for (int i = 0; i < n_items; i++)
		Tmax = lens[i] > Tmax ? lens[i] : Tmax;
	extra = cfg->n_ctx - Tmax < 4 ? cfg->n_ctx - Tmax : 4; /* padding beyond the longest item */
	o = (mb_engine_opts){n_items, Tmax + extra, 0};
	cr_assert_eq(mb_engine_init(&e, cfg, w, &o, &err), 0, "%s", err.msg);
	tok = calloc((size_t)n_items * (Tmax + extra), sizeof(int32_t));
	blen = calloc((size_t)n_items, sizeof(int32_t));
	for (int i = 0; i < n_items; i++) {
		mb_run r;
		int rows;

		memset(&r, 0, sizeof(r));
		r.batch = 1;
		r.seq = lens[i];
		r.tokens = items + (size_t)i * stride;
		r.logits = mode;
		cr_assert_eq(mb_engine_forward(e, &r, &err), 0, "%s", err.msg);
		rows = mb_engine_logits_per_item(e);
		alone[i] = malloc(sizeof(float) * (size_t)rows * V);
		mb_engine_logits_copy(e, alone[i]);
	}
	/* batches: every rotation of the items, padded beyond the longest */
	for (int rot = 0; rot < n_items; rot++) {
		mb_run r;
		int T = Tmax + rot % (extra + 1);

		for (int b = 0; b < n_items; b++) {
			int i = (b + rot) % n_items;

			blen[b] = lens[i];
			for (int t = 0; t < T; t++)
				tok[(size_t)b * T + t] = t < lens[i] ? items[(size_t)i * stride + t]
								     : (int32_t)((b * 7 + t) % V);
		}
		memset(&r, 0, sizeof(r));
		r.batch = n_items;
		r.seq = T;
		r.tokens = tok;
		r.lengths = blen;
		r.logits = mode;
		cr_assert_eq(mb_engine_forward(e, &r, &err), 0, "%s", err.msg);
		for (int b = 0; b < n_items; b++) {
			int i = (b + rot) % n_items;
			int rows = mode == MB_LOGITS_ALL ? lens[i] : 1;

			for (int k = 0; k < rows; k++) {
				const float *got = mb_engine_logits_row(e, b, k);

				cr_assert(got);
				cr_expect_eq(memcmp(got, alone[i] + (size_t)k * V, sizeof(float) * V), 0,
					     "%s: item %d (length %d) at batch slot %d, row %d differs",
					     what, i, lens[i], b, k);
				checked++;
			}
		}
	}
	printf("%s: %ld logit rows bitwise equal alone and in %d batches\n", what, checked,
	       n_items);
	for (int i = 0; i < n_items; i++)
		free(alone[i]);
	free(alone);
	free(tok);
	free(blen);
	mb_engine_free(e);
}

Test(determinism, fixture_items_give_identical_bits_alone_and_in_batches)
{
	for (int mi = 0; mi < FX_N_MODELS; mi++) {
		mb_model *m = fx_model(fx_models[mi]);
		int32_t *tok, *len;
		int B, T;

		fx_batch(fx_models[mi], "batch0", &tok, &len, &B, &T);
		check_batch_invariance(&m->cfg, &m->w, tok, len, B, T, MB_LOGITS_ALL, fx_models[mi]);
		check_batch_invariance(&m->cfg, &m->w, tok, len, B, T, MB_LOGITS_LAST, fx_models[mi]);
		free(tok);
		free(len);
		mb_model_free(m);
	}
}

Test(determinism, a_larger_random_model_is_batch_invariant)
{
	rand_model m;
	/* 150 and 129 span two query blocks of the attention (MB_K_ATT_BLOCK) */
	const int n = 5, lens[5] = {37, 150, 1, 129, 13};
	int32_t items[5 * 150], lens32[5];

	make_random(&m, 2, 128, 4, 512, 300, 160);
	for (int i = 0; i < n * 150; i++)
		items[i] = (int32_t)((i * 131 + 17) % 300);
	for (int i = 0; i < n; i++)
		lens32[i] = lens[i];
	set_threads(2);
	check_batch_invariance(&m.cfg, &m.w, items, lens32, n, 150, MB_LOGITS_ALL, "D=128 model");
	check_batch_invariance(&m.cfg, &m.w, items, lens32, n, 150, MB_LOGITS_LAST,
			       "D=128 model, last position");
	free(m.params);
}

Test(determinism, hook_values_are_identical_alone_and_in_a_batch)
{
	mb_model *m = fx_model("gpt2_ln_gelu");
	int32_t *tok, *len;
	int B, T;
	float *lb, *la;
	mb_cache *cb, *ca;
	mb_run r;
	int b = 1; /* the length-7 item */

	fx_batch("gpt2_ln_gelu", "batch0", &tok, &len, &B, &T);
	r = fx_run(tok, len, B, T);
	cb = run_cached(&m->cfg, &m->w, &r, &lb, 0);
	r = fx_run(tok + (size_t)b * T, NULL, 1, len[b]);
	ca = run_cached(&m->cfg, &m->w, &r, &la, 0);
	for (int k = 0; k < MB_HOOK_KIND_COUNT; k++)
		for (int l = -1; l < m->cfg.n_layer; l++) {
			mb_hook_point p = {(mb_hook_kind)k, l};
			const mb_hook_tensor *x = mb_cache_get(cb, p), *y = mb_cache_get(ca, p);
			char name[MB_HOOK_NAME_MAX];

			if (!x)
				continue;
			mb_hook_name(name, sizeof(name), p);
			cr_assert(y);
			if (k == MB_HOOK_ATTN_SCORES || k == MB_HOOK_PATTERN) {
				int H = (int)x->shape[1], L = len[b];

				for (int hh = 0; hh < H; hh++)
					for (int q = 0; q < L; q++)
						cr_expect_eq(memcmp(x->data + (((size_t)b * H + hh) * T + q) * T,
								    y->data + ((size_t)hh * L + q) * L,
								    sizeof(float) * L), 0,
							     "%s head %d row %d", name, hh, q);
			} else {
				size_t per_t = x->numel / ((size_t)B * T);

				cr_expect_eq(memcmp(x->data + (size_t)b * T * per_t, y->data,
						    sizeof(float) * per_t * len[b]), 0, "%s", name);
			}
		}
	mb_cache_free(cb);
	mb_cache_free(ca);
	free(lb);
	free(la);
	free(tok);
	free(len);
	mb_model_free(m);
}

/* Caching (read-only hooks) and keep_activations take other code paths
 * (LN through xhat, attention in phases); they must not move a bit. */
Test(determinism, observing_hooks_or_keeping_activations_changes_no_bit)
{
	for (int mi = 0; mi < FX_N_MODELS; mi++) {
		mb_model *m = fx_model(fx_models[mi]);
		int32_t *tok, *len;
		int B, T;
		float *lc, *lk, *lp;
		mb_cache *c;
		mb_engine *e;
		mb_error err = {0};
		mb_run r;
		size_t n;

		fx_batch(fx_models[mi], "batch0", &tok, &len, &B, &T);
		r = fx_run(tok, len, B, T);
		n = (size_t)B * T * m->cfg.n_vocab;
		c = run_cached(&m->cfg, &m->w, &r, &lc, 0);
		mb_cache_free(c);
		c = run_cached(&m->cfg, &m->w, &r, &lk, 1);
		mb_cache_free(c);
		e = fx_engine(m, B, T, 0);
		cr_assert_eq(mb_engine_forward(e, &r, &err), 0, "%s", err.msg);
		lp = malloc(n * sizeof(float));
		mb_engine_logits_copy(e, lp);
		cr_expect_eq(memcmp(lp, lc, n * sizeof(float)), 0, "%s: cached vs plain", fx_models[mi]);
		cr_expect_eq(memcmp(lp, lk, n * sizeof(float)), 0, "%s: keep vs plain", fx_models[mi]);
		mb_engine_free(e);
		free(lc);
		free(lk);
		free(lp);
		free(tok);
		free(len);
		mb_model_free(m);
	}
}

/* A Pythia-shaped random model (rotary on a quarter of each head, parallel
 * residual, exact GELU, untied; D = 128, Dh = 32, M = 512): batch invariance,
 * and 1 vs 2 threads bit for bit with every cheap hook (hook_rot_q/k
 * included) cached, and with activations kept for the backward. */
Test(determinism, a_random_neox_model_is_batch_and_thread_invariant)
{
	rand_model m;
	const int n = 5, lens[5] = {37, 100, 1, 64, 13};
	int32_t items[5 * 100], lens32[5], tok[3 * 100];
	float *l1, *l2, *l3;
	mb_cache *c1, *c2, *c3;
	mb_run r;
	size_t nl;

	make_random(&m, 2, 128, 4, 512, 300, 128);
	free(m.params);
	m.cfg.pos = MB_POS_ROTARY;
	m.cfg.rotary_dim = 8;
	m.cfg.rotary_base = 10000.0f;
	m.cfg.parallel = 1;
	m.cfg.act = MB_ACT_GELU;
	m.cfg.tied = 0;
	{
		uint64_t s = 7;
		size_t np = mb_engine_weights_layout(&m.w, &m.cfg, NULL);

		m.params = malloc(sizeof(float) * np);
		mb_engine_weights_layout(&m.w, &m.cfg, m.params);
		cr_assert_null(m.w.wpe);
		for (size_t i = 0; i < np; i++) {
			s = s * 6364136223846793005ULL + 1442695040888963407ULL;
			m.params[i] = ((float)(s >> 40) / 16777216.0f - 0.5f) * 0.2f;
		}
		for (int i = 0; i < 2 * 128; i++) {
			m.w.ln1_w[i] += 1.0f;
			m.w.ln2_w[i] += 1.0f;
		}
		for (int i = 0; i < 128; i++)
			m.w.lnf_w[i] += 1.0f;
	}
	for (int i = 0; i < n * 100; i++)
		items[i] = (int32_t)((i * 131 + 17) % 300);
	for (int i = 0; i < n; i++)
		lens32[i] = lens[i];
	set_threads(2);
	check_batch_invariance(&m.cfg, &m.w, items, lens32, n, 100, MB_LOGITS_ALL, "NeoX D=128");
	check_batch_invariance(&m.cfg, &m.w, items, lens32, n, 100, MB_LOGITS_LAST,
			       "NeoX D=128, last position");
	for (int i = 0; i < 3 * 100; i++)
		tok[i] = items[i];
	int32_t blen[3] = {100, 37, 64};
	r = fx_run(tok, blen, 3, 100);
	nl = (size_t)3 * 100 * 300;
	c1 = run_cached(&m.cfg, &m.w, &r, &l1, 0);
	set_threads(1);
	c2 = run_cached(&m.cfg, &m.w, &r, &l2, 0);
	c3 = run_cached(&m.cfg, &m.w, &r, &l3, 1);
	set_threads(2);
	cr_expect_eq(memcmp(l1, l2, nl * sizeof(float)), 0, "NeoX: 1 vs 2 threads");
	cr_expect_eq(memcmp(l1, l3, nl * sizeof(float)), 0, "NeoX: keep_activations");
	expect_same_caches(c1, c2, &m.cfg, "NeoX 1 vs 2 threads");
	expect_same_caches(c1, c3, &m.cfg, "NeoX keep_activations");
	mb_hook_point rq = {MB_HOOK_ROT_Q, 1};
	cr_expect_not_null(mb_cache_get(c1, rq), "hook_rot_q was cached");
	mb_cache_free(c1);
	mb_cache_free(c2);
	mb_cache_free(c3);
	free(l1);
	free(l2);
	free(l3);
	free(m.params);
}

/* Logits (B, N, V) of r on a fresh engine; with `observe`, a read-only cache
 * on point p of the run (a point after hook_z of the last layer makes the
 * last layer run in full: the reference). */
static float *logits_of(const mb_engine_config *cfg, const mb_engine_weights *w, const mb_run *r0,
			const mb_hook_point *p, mb_cache **keep_cache)
{
	mb_engine *e = NULL;
	mb_engine_opts o = {r0->batch, r0->seq, 0};
	mb_hooks *h = NULL;
	mb_cache *c = NULL;
	mb_error err = {0};
	mb_run r = *r0;
	size_t n;
	float *out;

	cr_assert_eq(mb_engine_init(&e, cfg, w, &o, &err), 0, "%s", err.msg);
	if (p) {
		cr_assert_eq(mb_hooks_init(&h, &err), 0);
		cr_assert_eq(mb_cache_init(&c, &err), 0);
		cr_assert_eq(mb_cache_add(c, *p, &err), 0);
		if (keep_cache) {
			mb_hook_point pre = {MB_HOOK_RESID_PRE, cfg->n_layer - 1};
			mb_hook_point z = {MB_HOOK_Z, cfg->n_layer - 1};

			cr_assert_eq(mb_cache_add(c, pre, &err), 0);
			if (p->kind != MB_HOOK_Z)
				cr_assert_eq(mb_cache_add(c, z, &err), 0);
		}
		cr_assert_eq(mb_cache_attach(c, h, &err), 0);
		r.hooks = h;
	}
	cr_assert_eq(mb_engine_forward(e, &r, &err), 0, "%s", err.msg);
	n = (size_t)r.batch * mb_engine_logits_per_item(e) * cfg->n_vocab;
	out = malloc(sizeof(float) * (n ? n : 1));
	cr_assert(out);
	mb_engine_logits_copy(e, out);
	if (keep_cache)
		*keep_cache = c;
	else
		mb_cache_free(c);
	mb_hooks_free(h);
	mb_engine_free(e);
	return out;
}

/* The last layer's exact tail (engine.h: exact_tail; a hook on hook_z of the
 * last layer; start_z there) gives the selected logits the bits of the full
 * last layer, which a hook on its resid_post forces: on the fixture models
 * (GPT-2 with and without LN, attention-only, GPT-NeoX) and a random model
 * of 200 positions whose selected rows fall in several attention blocks. */
static void check_exact_tail(const mb_engine_config *cfg, const mb_engine_weights *w,
			     const mb_run *r, const char *what)
{
	int last = cfg->n_layer - 1;
	mb_hook_point post = {MB_HOOK_RESID_POST, last}, z = {MB_HOOK_Z, last};
	mb_cache *c = NULL;
	float *ref = logits_of(cfg, w, r, &post, &c), *got;
	size_t n = (size_t)r->batch * (r->logits == MB_LOGITS_LAST ? 1 : r->n_positions) *
		   cfg->n_vocab;
	mb_run x = *r, s = *r;
	const mb_hook_tensor *pre = mb_cache_get(c, (mb_hook_point){MB_HOOK_RESID_PRE, last});
	const mb_hook_tensor *zt = mb_cache_get(c, z);

	x.exact_tail = 1;
	got = logits_of(cfg, w, &x, NULL, NULL);
	cr_expect_eq(memcmp(got, ref, n * sizeof(float)), 0, "%s: exact_tail vs full last layer",
		     what);
	free(got);
	got = logits_of(cfg, w, r, &z, NULL);
	cr_expect_eq(memcmp(got, ref, n * sizeof(float)), 0,
		     "%s: hook_z observed vs full last layer", what);
	free(got);
	cr_assert(pre && zt);
	s.start_layer = last;
	s.start_resid = pre->data;
	s.start_z = zt->data;
	s.tokens = NULL;
	got = logits_of(cfg, w, &s, NULL, NULL);
	cr_expect_eq(memcmp(got, ref, n * sizeof(float)), 0, "%s: start_z vs full last layer",
		     what);
	free(got);
	/* a run without logits stops after the last hook_z: the same z */
	{
		mb_run nz = *r;
		mb_cache *cz = NULL;
		const mb_hook_tensor *zn;

		nz.logits = MB_LOGITS_NONE;
		free(logits_of(cfg, w, &nz, &z, &cz));
		zn = mb_cache_get(cz, z);
		cr_assert(zn && zn->numel == zt->numel);
		cr_expect_eq(memcmp(zn->data, zt->data, zt->numel * sizeof(float)), 0,
			     "%s: hook_z of a run without logits", what);
		mb_cache_free(cz);
	}
	/* the plain run's row-kernel tail is the control: it rounds otherwise */
	got = logits_of(cfg, w, r, NULL, NULL);
	printf("%s: exact tail checked; the row-kernel tail %s\n", what,
	       memcmp(got, ref, n * sizeof(float)) ? "differs (as expected)" : "agrees");
	free(got);
	free(ref);
	mb_cache_free(c);
}

Test(determinism, the_exact_tail_gives_the_full_last_layers_bits)
{
	rand_model m;
	const int B = 3, T = 200;
	int32_t tok[3 * 200], len[3] = {200, 131, 57}, pos[3 * 3] = {5, 127, 199, 0, 128, 130,
									 56, 20, 1};
	mb_run r;

	set_threads(2);
	for (int mi = 0; mi < FX_N_MODELS; mi++) {
		mb_model *fm = fx_model(fx_models[mi]);
		int32_t *ft, *fl;
		int fB, fT;

		fx_batch(fx_models[mi], "batch0", &ft, &fl, &fB, &fT);
		r = fx_run(ft, fl, fB, fT);
		r.logits = MB_LOGITS_LAST;
		check_exact_tail(&fm->cfg, &fm->w, &r, fx_models[mi]);
		free(ft);
		free(fl);
		mb_model_free(fm);
	}
	make_random(&m, 2, 64, 4, 256, 300, 256);
	for (int i = 0; i < B * T; i++)
		tok[i] = (int32_t)((i * 131 + 17) % 300);
	r = fx_run(tok, len, B, T);
	r.logits = MB_LOGITS_POSITIONS;
	r.n_positions = 3;
	r.positions = pos;
	check_exact_tail(&m.cfg, &m.w, &r, "random T=200, positions in three attention blocks");
	r.logits = MB_LOGITS_LAST;
	set_threads(1);
	check_exact_tail(&m.cfg, &m.w, &r, "random T=200, last position, 1 thread");
	set_threads(2);
	free(m.params);
}
