/*
 * edit: causal tracing, ROME and MEMIT (edit.h).
 *  - ROME on the random GPT-2 fixture (tests/fixtures/engine/models/
 *    gpt2_ln_gelu) against tests/fixtures/edit/gen_rome.py, an independent
 *    PyTorch implementation: C, k*, u, the v* optimisation (loss per
 *    evaluation, steps run, v0, v*), r and the edited c_proj weight, each
 *    with its tolerance and max difference printed; then the edit's efficacy
 *    (the new object becomes the prompt's top-1) and the same bits on 1 and 2
 *    threads; the random rank-one update of the same norm (the control)
 *    moves P(new object) far less than the edit.
 *  - Causal tracing on a hand-built model whose fact is stored in one known
 *    place (layer 1's MLP at the subject's last token, moved to the last
 *    position by layer 2's attention): the MLP and attention restorations
 *    must peak there.
 *  - MEMIT over layers 0-1 with two requests against gen_memit.py (z, both
 *    edited c_proj weights).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/edit.h>
#include <mechbench/logits.h>
#include <mechbench/model.h>
#include <mechbench/npy.h>

#define FX_EDIT MB_SOURCE_DIR "/tests/fixtures/edit/"
#define FX_MODEL MB_SOURCE_DIR "/tests/fixtures/engine/models/gpt2_ln_gelu"

static mb_npy load(const char *name)
{
	char path[512];
	mb_npy a;
	mb_error err = {0};

	snprintf(path, sizeof(path), FX_EDIT "%s", name);
	cr_assert_eq(mb_npy_read(&a, path, &err), 0, "%s", err.msg);
	return a;
}

/* max |got - want| over n floats; counts entries beyond atol + rtol |want|. */
static long cmp(const char *label, const float *got, const float *want, size_t n, double atol,
		double rtol)
{
	double worst = 0;
	long bad = 0;

	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)got[i] - want[i]);
		if (d > worst)
			worst = d;
		if (!(d <= atol + rtol * fabs(want[i])))
			bad++;
	}
	printf("%s: max |diff| = %.3g over %zu\n", label, worst, n);
	return bad;
}

/* The fixture's request, prefixes and engine. */
typedef struct rome_fx {
	mb_model *m;
	mb_engine *e;
	mb_npy prompt, target, kl, prefixes;
	mb_rome_prefix pre[4];
	mb_rome_request req;
} rome_fx;

static void fx_open(rome_fx *f)
{
	mb_error err = {0};
	static const int lens[4] = {0, 3, 4, 4}; /* meta.json prefix_lens */
	mb_engine_opts eo = {.max_batch = 5, .max_seq = 16, .keep_activations = 1};

	cr_assert_eq(mb_model_load(&f->m, FX_MODEL, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_engine_init(&f->e, &f->m->cfg, &f->m->w, &eo, &err), 0, "%s", err.msg);
	f->prompt = load("prompt.npy");
	f->target = load("target.npy");
	f->kl = load("kl_prompt.npy");
	f->prefixes = load("prefixes.npy"); /* (4, 4) right-padded */
	for (int i = 0; i < 4; i++)
		f->pre[i] = (mb_rome_prefix){.tokens = (int32_t *)f->prefixes.data + i * 4,
					     .n = lens[i]};
	f->req = (mb_rome_request){.prompt = f->prompt.data, .n_prompt = (int)f->prompt.numel,
				   .subj_last = 3, .target = f->target.data,
				   .n_target = (int)f->target.numel, .kl_prompt = f->kl.data,
				   .n_kl = (int)f->kl.numel, .kl_subj_last = 1};
}

static void fx_close(rome_fx *f)
{
	mb_npy_dispose(&f->prompt);
	mb_npy_dispose(&f->target);
	mb_npy_dispose(&f->kl);
	mb_npy_dispose(&f->prefixes);
	mb_engine_free(f->e);
	mb_model_free(f->m);
}

static double norm(const float *x, int n)
{
	double s = 0;
	for (int i = 0; i < n; i++)
		s += (double)x[i] * x[i];
	return sqrt(s);
}

/* P(the new object's first token) at the end of the request's prompt. */
static double prob_last(mb_engine *e, const mb_rome_request *q)
{
	mb_error err = {0};
	mb_run run = {.batch = 1, .seq = q->n_prompt, .tokens = q->prompt, .logits = MB_LOGITS_LAST};

	cr_assert_eq(mb_engine_forward(e, &run, &err), 0, "%s", err.msg);
	return mb_logits_prob(mb_engine_logits_row(e, 0, 0), mb_engine_cfg(e)->n_vocab,
			      q->target[0], MB_LOGITS_LIBM);
}

static void stats_of(mb_rome_stats *s, rome_fx *f)
{
	mb_error err = {0};
	mb_npy corpus = load("corpus.npy");

	cr_assert_eq(mb_rome_stats_compute(s, f->e, 0, corpus.data, (size_t)corpus.shape[0],
					   (int)corpus.shape[1], 3, &err), 0, "%s", err.msg);
	cr_assert_eq(s->tokens, (int64_t)corpus.numel);
	mb_npy_dispose(&corpus);
}

Test(edit, rome_matches_the_pytorch_reference)
{
	rome_fx f;
	mb_rome_stats s;
	mb_rome_params p;
	mb_rome_result res;
	mb_error err = {0};
	mb_npy mom2 = load("mom2.npy"), kstar = load("kstar.npy"), u = load("u.npy"),
	       v0 = load("v0.npy"), vstar = load("vstar.npy"), r = load("r.npy"),
	       losses = load("losses.npy"), proj = load("proj_edited.npy");
	const double *lw = losses.data;
	int steps_ref = (int)losses.shape[0];

	fx_open(&f);
	stats_of(&s, &f);
	cr_expect_eq(cmp("C", s.mom2, mom2.data, mom2.numel, 1e-6, 1e-5), 0);
	mb_rome_params_default(&p, 0);
	cr_assert_eq(mb_rome_compute(&res, f.e, &s, &f.req, f.pre, 4, &p, &err), 0, "%s",
		     err.msg);
	cr_expect_eq(cmp("k*", res.kstar, kstar.data, kstar.numel, 1e-6, 1e-5), 0);
	cr_expect_eq(cmp("u", res.u, u.data, u.numel, 1e-5, 1e-4), 0);
	cr_expect_eq(cmp("v0", res.v0, v0.data, v0.numel, 1e-6, 1e-5), 0);
	cr_assert_eq(res.steps_run, steps_ref, "steps %d, reference %d", res.steps_run, steps_ref);
	for (int k = 0; k < 3; k++) {
		double want = lw[(size_t)(steps_ref - 1) * 3 + k];
		printf("loss[%d]: %.8f, reference %.8f\n", k, res.loss[k], want);
		cr_expect(fabs(res.loss[k] - want) <= 1e-4 + 1e-3 * fabs(want), "loss term %d", k);
	}
	cr_expect(fabs(res.loss_first - (lw[0] + lw[1] + lw[2])) < 1e-5);
	cr_expect_eq(cmp("v*", res.vstar, vstar.data, vstar.numel, 1e-3, 1e-3), 0);
	cr_expect_eq(cmp("r", res.r, r.data, r.numel, 1e-3, 1e-3), 0);

	/* the rank-one update, then efficacy: the new object is top-1 */
	mb_rome_apply(&f.m->cfg, &f.m->w, 0, res.u, res.r);
	cr_expect_eq(cmp("W_proj", f.m->w.proj_w, proj.data, proj.numel, 1e-4, 1e-3), 0);
	mb_run run = {.batch = 1, .seq = f.req.n_prompt, .tokens = f.req.prompt,
		      .logits = MB_LOGITS_LAST};
	cr_assert_eq(mb_engine_forward(f.e, &run, &err), 0, "%s", err.msg);
	cr_expect_eq(mb_logits_argmax(mb_engine_logits_row(f.e, 0, 0), f.m->cfg.n_vocab),
		     f.req.target[0]);
	double p_edit = prob_last(f.e, &f.req);

	/* the control: a rank-one update of the same norm in a random direction
	 * moves P(new) far less (the edit's effect is the edit's, not its size's) */
	{
		mb_model *base = NULL;
		mb_engine *be = NULL;
		mb_engine_opts beo = {.max_batch = 1, .max_seq = 16};
		float uc[64], rc[32];
		mb_rng rng;
		double p0, pc;

		cr_assert_eq(mb_model_load(&base, FX_MODEL, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_engine_init(&be, &base->cfg, &base->w, &beo, &err), 0, "%s", err.msg);
		p0 = prob_last(be, &f.req);
		mb_rng_init_named(&rng, 0, "edit/control", 0);
		mb_rome_control(uc, rc, res.u, res.r, 64, 32, &rng);
		cr_expect(fabs(norm(uc, 64) * norm(rc, 32) - norm(res.u, 64) * norm(res.r, 32)) <
			  1e-5 * norm(res.u, 64) * norm(res.r, 32), "the same Frobenius norm");
		cr_expect(fabs(norm(uc, 64) - 1.0) < 1e-6);
		mb_rome_apply(&base->cfg, &base->w, 0, uc, rc);
		pc = prob_last(be, &f.req);
		printf("P(new): base %.4f, edited %.4f, random control %.4f\n", p0, p_edit, pc);
		cr_expect(p_edit - p0 > 0.1, "the edit moves P(new)");
		cr_expect(fabs(pc - p0) < 0.2 * (p_edit - p0), "the control barely does");
		mb_engine_free(be);
		mb_model_free(base);
	}

	mb_rome_result_dispose(&res);
	mb_rome_stats_dispose(&s);
	mb_npy_dispose(&mom2);
	mb_npy_dispose(&kstar);
	mb_npy_dispose(&u);
	mb_npy_dispose(&v0);
	mb_npy_dispose(&vstar);
	mb_npy_dispose(&r);
	mb_npy_dispose(&losses);
	mb_npy_dispose(&proj);
	fx_close(&f);
}

Test(edit, rome_gives_the_same_bits_on_1_and_2_threads)
{
	rome_fx f;
	mb_rome_stats s[2];
	mb_rome_result res[2];
	mb_rome_params p;
	mb_error err = {0};
	int32_t pre[2][3 * 6];

	fx_open(&f);
	mb_rome_params_default(&p, 0);
	p.steps = 6;
	for (int k = 0; k < 2; k++) {
		omp_set_num_threads(k + 1);
		stats_of(&s[k], &f);
		cr_assert_eq(mb_rome_prefixes(pre[k], f.e, 3, 6, -1, 5, 7, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_rome_compute(&res[k], f.e, &s[k], &f.req, f.pre, 4, &p, &err), 0,
			     "%s", err.msg);
	}
	cr_expect_eq(memcmp(s[0].mom2, s[1].mom2, sizeof(float) * 64 * 64), 0);
	cr_expect_eq(memcmp(pre[0], pre[1], sizeof(pre[0])), 0);
	cr_expect_eq(memcmp(res[0].u, res[1].u, sizeof(float) * 64), 0);
	cr_expect_eq(memcmp(res[0].r, res[1].r, sizeof(float) * 32), 0);
	for (int i = 0; i < 3 * 6; i++)
		cr_expect(pre[0][i] >= 0 && pre[0][i] < f.m->cfg.n_vocab);
	for (int k = 0; k < 2; k++) {
		mb_rome_result_dispose(&res[k]);
		mb_rome_stats_dispose(&s[k]);
	}
	fx_close(&f);
}

Test(edit, rome_rejects_a_bad_request_layer_or_statistics)
{
	rome_fx f;
	mb_rome_stats s;
	mb_rome_params p;
	mb_rome_result res;
	mb_error err = {0};

	fx_open(&f);
	stats_of(&s, &f);
	mb_rome_params_default(&p, 0);
	f.req.subj_last = f.req.n_prompt;
	cr_expect_eq(mb_rome_compute(&res, f.e, &s, &f.req, f.pre, 4, &p, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "subject position 6") != NULL, "%s", err.msg);
	f.req.subj_last = 3;
	s.layer = 1; /* statistics of another layer */
	cr_expect_eq(mb_rome_compute(&res, f.e, &s, &f.req, f.pre, 4, &p, &err), MB_EMISMATCH);
	cr_expect(strstr(err.msg, "statistics of layer 1") != NULL, "%s", err.msg);
	p.layer = 1; /* the last layer cannot carry the fact to later positions */
	cr_expect_eq(mb_rome_compute(&res, f.e, &s, &f.req, f.pre, 4, &p, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "never reaches the later positions") != NULL, "%s", err.msg);
	mb_rome_stats_dispose(&s);
	fx_close(&f);
}

/* ---- causal tracing on a hand-built model ----------------------------------- */

/* Tokens: 0, 4, 5 fillers; 1, 2 the subject "A B"; 3 the object O. Residual
 * dims 0..5 one-hot token identity, 6 "fact", 7 "moved". Layer 0's MLP
 * erases the fact channel (relu(x) - relu(-x) = x, subtracted), so the noise
 * on the subject's embeddings reaches the fact only through x_B. Layer 1's MLP
 * writes fact = tent(x_B) (1 at x_B = 1, 0 outside (0.75, 1.25)) at the
 * subject's last token; layer 2's one head, whose key reads the fact
 * channel, moves it to every later position's "moved" channel; the
 * unembedding reads logit(O) = 10 moved. Everything else is zero. */
static void hand_model(mb_engine_config *c, mb_engine_weights *w, float **block)
{
	size_t n;

	*c = (mb_engine_config){.n_vocab = 6, .n_ctx = 8, .d_model = 8, .n_layer = 4,
				.n_head = 1, .d_head = 8, .d_mlp = 4, .act = MB_ACT_RELU,
				.norm = MB_NORM_NONE, .tied = 0, .ln_eps = 1e-5f};
	n = mb_engine_weights_layout(w, c, NULL);
	*block = calloc(n, sizeof(float));
	mb_engine_weights_layout(w, c, *block);
	for (int t = 0; t < 6; t++)
		w->wte[t * 8 + t] = 1.0f;
	const int M = 4, D = 8;
	/* layer 0 MLP: dim 6 -= relu(x6) - relu(-x6) */
	w->fc_w[6 * M + 0] = 1.0f;
	w->fc_w[6 * M + 1] = -1.0f;
	w->proj_w[0 * D + 6] = -1.0f;
	w->proj_w[1 * D + 6] = 1.0f;
	/* layer 1 MLP: neurons 0..2 read x_B (dim 2) */
	float *fc = w->fc_w + (size_t)1 * D * M, *fb = w->fc_b + 1 * M;
	float *pr = w->proj_w + (size_t)1 * M * D;
	for (int k = 0; k < 3; k++)
		fc[2 * M + k] = 1.0f;
	fb[0] = -0.75f;
	fb[1] = -1.0f;
	fb[2] = -1.25f;
	pr[0 * D + 6] = 4.0f;
	pr[1 * D + 6] = -8.0f;
	pr[2 * D + 6] = 4.0f;
	/* layer 2 attention: q = e0 (bias), k[0] = 30 fact, v[0] = fact, out -> moved */
	float *qkv = w->qkv_w + (size_t)2 * D * 3 * D, *qb = w->qkv_b + 2 * 3 * D;
	float *ow = w->o_w + (size_t)2 * D * D;
	qb[0] = 1.0f;
	qkv[6 * 3 * D + D + 0] = 30.0f;
	qkv[6 * 3 * D + 2 * D + 0] = 1.0f;
	ow[0 * D + 7] = 1.0f;
	w->unembed[3 * D + 7] = 10.0f;
}

/* (l, t) of the largest entry of restored (L, T). */
static void peak(const double *x, int L, int T, int *pl, int *pt)
{
	*pl = *pt = 0;
	for (int l = 0; l < L; l++)
		for (int t = 0; t < T; t++)
			if (x[l * T + t] > x[*pl * T + *pt]) {
				*pl = l;
				*pt = t;
			}
}

Test(edit, causal_tracing_finds_the_hand_built_storage_location)
{
	mb_engine_config c;
	mb_engine_weights w;
	float *block;
	mb_engine *e = NULL;
	mb_error err = {0};
	const int32_t tok[6] = {0, 1, 2, 4, 5, 0};
	mb_trace_item it = {.tokens = tok, .len = 6, .subj_first = 1, .subj_last = 2,
			    .target = 3, .stream = 42};
	mb_trace_opts o = {.seed = 1, .samples = 10, .window = 1};
	mb_engine_opts eo = {.max_batch = 11, .max_seq = 8};
	double mlp[4 * 6], attn[4 * 6], resid[4 * 6], pc, px, pc2, px2, groups[4 * 6];
	int l, t;

	hand_model(&c, &w, &block);
	o.noise = 3.0 * mb_trace_embed_sd(&c, &w, NULL, 0);
	cr_assert_eq(mb_engine_init(&e, &c, &w, &eo, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_trace_run(mlp, &pc, &px, e, &it, MB_TRACE_MLP, &o, &err), 0, "%s",
		     err.msg);
	printf("trace: P(O) clean %.4f, corrupted %.4f\n", pc, px);
	cr_expect(pc > 0.99 && px < 0.5 * pc, "clean %g, corrupted %g", pc, px);
	peak(mlp, 4, 6, &l, &t);
	cr_expect(l == 1 && t == 2, "MLP restoration peaks at layer %d, position %d", l, t);
	cr_expect(mlp[1 * 6 + 2] - px > 0.9 * (pc - px), "restoring the stored fact gives %g",
		  mlp[1 * 6 + 2]);
	/* MLPs that store nothing restore nothing */
	cr_expect(fabs(mlp[3 * 6 + 2] - px) < 1e-12 && fabs(mlp[2 * 6 + 2] - px) < 1e-12);

	cr_assert_eq(mb_trace_run(attn, &pc2, &px2, e, &it, MB_TRACE_ATTN, &o, &err), 0, "%s",
		     err.msg);
	cr_expect(pc2 == pc && px2 == px, "the same noise for every kind");
	peak(attn, 4, 6, &l, &t);
	cr_expect(l == 2 && t == 5, "attention restoration peaks at layer %d, position %d", l, t);

	cr_assert_eq(mb_trace_run(resid, &pc2, &px2, e, &it, MB_TRACE_RESID, &o, &err), 0, "%s",
		     err.msg);
	/* the hidden state carries the fact at the subject after layer 1, at the end after 2 */
	cr_expect(resid[1 * 6 + 2] - px > 0.9 * (pc - px));
	cr_expect(resid[3 * 6 + 5] - px > 0.9 * (pc - px));
	cr_expect(fabs(resid[3 * 6 + 2] - px) < 1e-12, "after layer 2 the subject no longer matters");

	mb_trace_groups(groups, mlp, px, 4, &it);
	cr_expect(groups[1 * MB_TRACE_POS_COUNT + MB_TRACE_POS_LAST_SUBJ] > 0.9 * (pc - px));
	cr_expect(isnan(groups[1 * MB_TRACE_POS_COUNT + MB_TRACE_POS_MID_SUBJ]));
	cr_expect(fabs(groups[1 * MB_TRACE_POS_COUNT + MB_TRACE_POS_FURTHER]) < 0.1 * (pc - px));

	/* a window of 3 around layer 2 is layers 1..3 */
	o.window = 3;
	cr_assert_eq(mb_trace_run(mlp, &pc2, &px2, e, &it, MB_TRACE_MLP, &o, &err), 0, "%s",
		     err.msg);
	cr_expect(mlp[2 * 6 + 2] - px > 0.9 * (pc - px), "window 3 at layer 2 covers layer 1");
	cr_expect(fabs(mlp[3 * 6 + 2] - px) < 1e-12, "window 3 at layer 3 is layers 2..3");

	it.subj_last = 6;
	cr_expect_eq(mb_trace_run(mlp, &pc2, &px2, e, &it, MB_TRACE_MLP, &o, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "subject span [1, 6]") != NULL, "%s", err.msg);
	mb_engine_free(e);
	free(block);
}

/* ---- MEMIT ------------------------------------------------------------------ */

Test(edit, memit_matches_the_pytorch_reference)
{
	rome_fx f;
	mb_model *m = NULL;
	mb_engine *e = NULL;
	mb_rome_stats s[2];
	mb_memit_params p;
	mb_error err = {0};
	mb_engine_opts eo = {.max_batch = 5, .max_seq = 16, .keep_activations = 1};
	mb_npy c0 = load("mom2_m3_0.npy"), c1 = load("mom2_m3_1.npy"),
	       pb = load("memit_prompt_b.npy"), tb = load("memit_target_b.npy"),
	       kb = load("memit_kl_b.npy"), zr = load("memit_z.npy"), w0 = load("memit_proj0.npy"),
	       w1 = load("memit_proj1.npy"), corpus = load("corpus.npy");
	const int layers[2] = {0, 1};
	const size_t MD = 64 * 32;
	mb_rome_request reqs[2];
	float z[2 * 32], *w2 = malloc(sizeof(float) * MD);

	fx_open(&f); /* the request and prefixes; the model is model3 */
	cr_assert_eq(mb_model_load(&m, FX_EDIT "model3", &err), 0, "%s", err.msg);
	cr_assert_eq(mb_engine_init(&e, &m->cfg, &m->w, &eo, &err), 0, "%s", err.msg);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(mb_rome_stats_compute(&s[i], e, i, corpus.data, 40, 16, 5, &err), 0, "%s",
			     err.msg);
	cr_expect_eq(cmp("C layer 0", s[0].mom2, c0.data, c0.numel, 1e-6, 1e-5), 0);
	cr_expect_eq(cmp("C layer 1", s[1].mom2, c1.data, c1.numel, 1e-6, 1e-5), 0);
	reqs[0] = f.req;
	reqs[1] = (mb_rome_request){.prompt = pb.data, .n_prompt = 5, .subj_last = 2,
				    .target = tb.data, .n_target = 1, .kl_prompt = kb.data,
				    .n_kl = 4, .kl_subj_last = 1};
	mb_memit_params_default(&p, layers, 2);
	cr_expect_eq(p.z.clamp, 0.75);
	cr_expect_eq(p.mom2_weight, 20000.0);
	p.mom2_weight = 10.0; /* as gen_memit.py */
	memcpy(w2, m->w.proj_w + 2 * MD, sizeof(float) * MD);
	cr_assert_eq(mb_memit_edit(z, e, &m->w, s, reqs, 2, f.pre, 4, &p, &err), 0, "%s",
		     err.msg);
	cr_expect_eq(cmp("z", z, zr.data, zr.numel, 1e-3, 1e-3), 0);
	cr_expect_eq(cmp("W_proj 0", m->w.proj_w, w0.data, MD, 1e-4, 1e-3), 0);
	cr_expect_eq(cmp("W_proj 1", m->w.proj_w + MD, w1.data, MD, 1e-4, 1e-3), 0);
	cr_expect_eq(memcmp(w2, m->w.proj_w + 2 * MD, sizeof(float) * MD), 0, "layer 2 untouched");

	p.layers[1] = 0;
	cr_expect_eq(mb_memit_edit(z, e, &m->w, s, reqs, 2, f.pre, 4, &p, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "must ascend") != NULL, "%s", err.msg);
	p.layers[0] = 1;
	p.layers[1] = 2;
	cr_expect_eq(mb_memit_edit(z, e, &m->w, s, reqs, 2, f.pre, 4, &p, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "last layer") != NULL, "%s", err.msg);
	for (int i = 0; i < 2; i++)
		mb_rome_stats_dispose(&s[i]);
	free(w2);
	mb_npy_dispose(&c0);
	mb_npy_dispose(&c1);
	mb_npy_dispose(&pb);
	mb_npy_dispose(&tb);
	mb_npy_dispose(&kb);
	mb_npy_dispose(&zr);
	mb_npy_dispose(&w0);
	mb_npy_dispose(&w1);
	mb_npy_dispose(&corpus);
	mb_engine_free(e);
	mb_model_free(m);
	fx_close(&f);
}
