/*
 * backward: parameter gradients against central finite differences of an
 * independent double-precision forward (written here from engine_spec.md),
 * on tiny random models covering every component: LayerNorm or none, each
 * MLP activation (exact GELU too, which the PyTorch fixtures lack),
 * attention-only, tied and untied unembedding; and bitwise thread-count
 * invariance of the gradients on a model large enough to split every kernel.
 *
 * Shape letters: B batch, T positions, D d_model, H heads, Dh d_head, M d_mlp,
 * V vocab, P n_ctx.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/backward.h>
#include <mechbench/checkpoint.h>
#include <mechbench/rng.h>

/* ---- an independent double-precision forward ---- */

typedef struct dweights {
	const double *wte, *wpe, *ln1_w, *ln1_b, *qkv_w, *qkv_b, *o_w, *o_b, *ln2_w, *ln2_b, *fc_w,
		*fc_b, *proj_w, *proj_b, *lnf_w, *lnf_b, *unembed;
} dweights;

/* The same offsets as the engine layout over base (float block fb). */
static const double *off(const float *p, const float *fb, const double *base)
{
	return p ? base + (p - fb) : NULL;
}

static dweights dlayout(const mb_engine_weights *w, const float *fb, const double *base)
{
	dweights d = {off(w->wte, fb, base),     off(w->wpe, fb, base),    off(w->ln1_w, fb, base),
		      off(w->ln1_b, fb, base),   off(w->qkv_w, fb, base),  off(w->qkv_b, fb, base),
		      off(w->o_w, fb, base),     off(w->o_b, fb, base),    off(w->ln2_w, fb, base),
		      off(w->ln2_b, fb, base),   off(w->fc_w, fb, base),   off(w->fc_b, fb, base),
		      off(w->proj_w, fb, base),  off(w->proj_b, fb, base), off(w->lnf_w, fb, base),
		      off(w->lnf_b, fb, base),   off(w->unembed, fb, base)};
	return d;
}

/* out (D) = LN(x) (or x without LN). */
static void dln(double *out, const double *x, const double *w, const double *b, int D, int ln)
{
	double mean = 0, var = 0;
	if (!ln) {
		memcpy(out, x, sizeof(double) * (size_t)D);
		return;
	}
	for (int i = 0; i < D; i++)
		mean += x[i];
	mean /= D;
	for (int i = 0; i < D; i++)
		var += (x[i] - mean) * (x[i] - mean);
	var /= D;
	for (int i = 0; i < D; i++)
		out[i] = (x[i] - mean) / sqrt(var + 1e-5) * w[i] + b[i];
}

static double dact(double x, mb_activation a)
{
	switch (a) {
	case MB_ACT_RELU:
		return x > 0 ? x : 0;
	case MB_ACT_GELU:
		return 0.5 * x * (1 + erf(x / sqrt(2.0)));
	default:
		return 0.5 * x * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
	}
}

/* Mean next-token cross-entropy over every item's valid positions. */
static double dloss(const mb_engine_config *c, const dweights *w, const int32_t *tok,
		    const int32_t *len, int B, int T)
{
	const int D = c->d_model, H = c->n_head, Dh = c->d_head, M = c->d_mlp, V = c->n_vocab;
	const int ln = c->norm == MB_NORM_LN;
	double *x = calloc((size_t)T * D, sizeof(double)), *h = calloc((size_t)T * D, sizeof(double));
	double *qkv = calloc((size_t)T * 3 * D, sizeof(double)), *z = calloc((size_t)D * T, sizeof(double));
	double *m = calloc((size_t)(M > 0 ? M : 1), sizeof(double)), *lg = calloc((size_t)V, sizeof(double));
	double total = 0;
	int count = 0;

	for (int b = 0; b < B; b++) {
		int L = len[b];
		for (int t = 0; t < L; t++)
			for (int i = 0; i < D; i++)
				x[t * D + i] = w->wte[tok[b * T + t] * D + i] + w->wpe[t * D + i];
		for (int l = 0; l < c->n_layer; l++) {
			const double *Wq = w->qkv_w + (size_t)l * D * 3 * D, *bq = w->qkv_b + l * 3 * D;
			for (int t = 0; t < L; t++) {
				dln(h + t * D, x + t * D, ln ? w->ln1_w + l * D : NULL,
				    ln ? w->ln1_b + l * D : NULL, D, ln);
				for (int j = 0; j < 3 * D; j++) {
					double s = bq[j];
					for (int i = 0; i < D; i++)
						s += h[t * D + i] * Wq[i * 3 * D + j];
					qkv[t * 3 * D + j] = s;
				}
			}
			for (int hh = 0; hh < H; hh++)
				for (int t = 0; t < L; t++) {
					double sc[64], mx = -1e300, sum = 0;
					for (int k = 0; k <= t; k++) {
						double s = 0;
						for (int e = 0; e < Dh; e++)
							s += qkv[t * 3 * D + hh * Dh + e] *
							     qkv[k * 3 * D + D + hh * Dh + e];
						sc[k] = s / sqrt((double)Dh);
						if (sc[k] > mx)
							mx = sc[k];
					}
					for (int k = 0; k <= t; k++)
						sum += (sc[k] = exp(sc[k] - mx));
					for (int e = 0; e < Dh; e++) {
						double s = 0;
						for (int k = 0; k <= t; k++)
							s += sc[k] / sum * qkv[k * 3 * D + 2 * D + hh * Dh + e];
						z[t * D + hh * Dh + e] = s;
					}
				}
			const double *Wo = w->o_w + (size_t)l * D * D, *bo = w->o_b + l * D;
			for (int t = 0; t < L; t++)
				for (int j = 0; j < D; j++) {
					double s = bo[j];
					for (int i = 0; i < D; i++)
						s += z[t * D + i] * Wo[i * D + j];
					x[t * D + j] += s;
				}
			if (c->attn_only)
				continue;
			const double *Wf = w->fc_w + (size_t)l * D * M, *bf = w->fc_b + l * M;
			const double *Wp = w->proj_w + (size_t)l * M * D, *bp = w->proj_b + l * D;
			for (int t = 0; t < L; t++) {
				dln(h, x + t * D, ln ? w->ln2_w + l * D : NULL, ln ? w->ln2_b + l * D : NULL,
				    D, ln);
				for (int j = 0; j < M; j++) {
					double s = bf[j];
					for (int i = 0; i < D; i++)
						s += h[i] * Wf[i * M + j];
					m[j] = dact(s, c->act);
				}
				for (int j = 0; j < D; j++) {
					double s = bp[j];
					for (int i = 0; i < M; i++)
						s += m[i] * Wp[i * D + j];
					x[t * D + j] += s;
				}
			}
		}
		for (int t = 0; t + 1 < L; t++) {
			double mx = -1e300, sum = 0;
			dln(h, x + t * D, w->lnf_w, w->lnf_b, D, ln);
			for (int v = 0; v < V; v++) {
				double s = 0;
				for (int i = 0; i < D; i++)
					s += h[i] * w->unembed[v * D + i];
				lg[v] = s;
				if (s > mx)
					mx = s;
			}
			for (int v = 0; v < V; v++)
				sum += exp(lg[v] - mx);
			total += mx + log(sum) - lg[tok[b * T + t + 1]];
			count++;
		}
	}
	free(x);
	free(h);
	free(qkv);
	free(z);
	free(m);
	free(lg);
	return total / count;
}

/* ---- the tests ---- */

static void random_weights(float *p, const mb_engine_config *c, const mb_engine_weights *w,
			   uint64_t seed)
{
	size_t n = mb_checkpoint_tensors(NULL, 0, c, w);
	mb_checkpoint_tensor *ts = calloc(n, sizeof(*ts));
	mb_rng r;
	(void)p;
	mb_checkpoint_tensors(ts, n, c, w);
	mb_rng_init_named(&r, seed, "test/backward", 0);
	for (size_t i = 0; i < n; i++) {
		size_t numel = (size_t)ts[i].shape[0] * (size_t)(ts[i].ndim > 1 ? ts[i].shape[1] : 1);
		int ln_w = strstr(ts[i].name, "ln_") && strstr(ts[i].name, "weight");
		double sd = ts[i].ndim == 2 ? 0.4 : ln_w ? 0.2 : 0.1;
		for (size_t k = 0; k < numel; k++)
			ts[i].data[k] = (float)((ln_w ? 1.0 : 0.0) + sd * mb_rng_normal(&r));
	}
	free(ts);
}

typedef struct fd_case {
	const char *label;
	mb_engine_config cfg;
} fd_case;

static void fd_check(const fd_case *fc)
{
	const mb_engine_config *c = &fc->cfg;
	enum { B = 2, T = 5 };
	const int32_t len[B] = {5, 3};
	int32_t tok[B * T], targets[B * T];
	mb_engine_weights w, g;
	mb_engine *e;
	mb_backward *bw;
	mb_error err;
	mb_rng r;
	double loss;

	size_t np = mb_engine_weights_layout(&w, c, NULL);
	float *p = malloc(np * sizeof(float)), *gp = malloc(np * sizeof(float));
	double *dp = malloc(np * sizeof(double));
	mb_engine_weights_layout(&w, c, p);
	mb_engine_weights_layout(&g, c, gp);
	random_weights(p, c, &w, 11);
	mb_rng_init_named(&r, 3, "test/tokens", 0);
	for (int i = 0; i < B * T; i++)
		tok[i] = (int32_t)mb_rng_range(&r, (uint64_t)c->n_vocab);
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++)
			targets[b * T + t] = t + 1 < len[b] && t + 1 < T ? tok[b * T + t + 1] : -1;
	mb_engine_opts o = {B, T, 1};
	cr_assert_eq(mb_engine_init(&e, c, &w, &o, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_backward_init(&bw, e, &err), 0, "%s", err.msg);
	mb_run run = {.batch = B, .seq = T, .tokens = tok, .lengths = len, .logits = MB_LOGITS_ALL};
	cr_assert_eq(mb_engine_forward(e, &run, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_backward_xent(bw, targets, &loss, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_backward_run(bw, &run, &g, NULL, &err), 0, "%s", err.msg);

	for (size_t i = 0; i < np; i++)
		dp[i] = p[i];
	dweights dw = dlayout(&w, p, dp);
	double l0 = dloss(c, &dw, tok, len, B, T);
	printf("== %s: loss float32 %.9f, float64 %.9f\n", fc->label, loss, l0);
	cr_expect(fabs(loss - l0) < 1e-5, "%s: loss %.9f vs %.9f", fc->label, loss, l0);

	/* Central differences at 6 random entries of every tensor. */
	size_t nt = mb_checkpoint_tensors(NULL, 0, c, &w);
	mb_checkpoint_tensor *ts = calloc(nt, sizeof(*ts)), *gs = calloc(nt, sizeof(*gs));
	mb_checkpoint_tensors(ts, nt, c, &w);
	mb_checkpoint_tensors(gs, nt, c, &g);
	long bad = 0;
	for (size_t k = 0; k < nt; k++) {
		size_t numel = (size_t)ts[k].shape[0] * (size_t)(ts[k].ndim > 1 ? ts[k].shape[1] : 1);
		double mx = 0;
		for (int s = 0; s < 6; s++) {
			size_t i = (size_t)mb_rng_range(&r, numel);
			size_t at = (size_t)(ts[k].data - p) + i;
			const double hstep = 1e-6;
			double keep = dp[at];
			dp[at] = keep + hstep;
			double lp = dloss(c, &dw, tok, len, B, T);
			dp[at] = keep - hstep;
			double lm = dloss(c, &dw, tok, len, B, T);
			dp[at] = keep;
			double fd = (lp - lm) / (2 * hstep), got = gs[k].data[i];
			double d = fabs(got - fd);
			/* float32 backward vs the exact gradient: ~1e-7 absolute */
			if (!(d <= 2e-6 + 1e-4 * fabs(fd)))
				bad++;
			if (d > mx)
				mx = d;
		}
		printf("%-28s max |backward - finite difference| = %.3g\n", ts[k].name, mx);
	}
	cr_expect_eq(bad, 0, "%s: %ld entries differ from the finite differences", fc->label, bad);
	free(ts);
	free(gs);
	free(p);
	free(gp);
	free(dp);
	mb_backward_free(bw);
	mb_engine_free(e);
}

static mb_engine_config tiny(int attn_only, mb_activation act, mb_norm norm, int tied)
{
	mb_engine_config c = {.n_vocab = 11, .n_ctx = 6, .d_model = 8, .n_layer = 2,
			      .n_head = 2, .d_head = 4, .d_mlp = attn_only ? 0 : 12,
			      .act = act, .norm = norm, .attn_only = attn_only, .tied = tied,
			      .ln_eps = 1e-5f};
	return c;
}

Test(backward, matches_finite_differences_with_layernorm_exact_gelu_tied)
{
	fd_case fc = {"LN, gelu (erf), tied", tiny(0, MB_ACT_GELU, MB_NORM_LN, 1)};
	fd_check(&fc);
}

Test(backward, matches_finite_differences_with_layernorm_gelu_new_untied)
{
	fd_case fc = {"LN, gelu_new, untied", tiny(0, MB_ACT_GELU_NEW, MB_NORM_LN, 0)};
	fd_check(&fc);
}

Test(backward, matches_finite_differences_without_layernorm_relu)
{
	fd_case fc = {"no LN, relu, untied", tiny(0, MB_ACT_RELU, MB_NORM_NONE, 0)};
	fd_check(&fc);
}

Test(backward, matches_finite_differences_attention_only)
{
	fd_case fc = {"attn-only, LN, tied", tiny(1, MB_ACT_GELU_NEW, MB_NORM_LN, 1)};
	fd_check(&fc);
	fd_case fc2 = {"attn-only, no LN, untied", tiny(1, MB_ACT_GELU_NEW, MB_NORM_NONE, 0)};
	fd_check(&fc2);
}

/* Gradients on a model and batch large enough that every GEMM, column
 * reduction and attention loop splits across threads: the same bits on 1 and
 * 2 threads, with the engine's default packing and with dense rows. */
static void thread_invariance(mb_engine_config c);

Test(backward, parameter_gradients_are_bitwise_the_same_on_one_and_two_threads)
{
	mb_engine_config c = {.n_vocab = 97, .n_ctx = 40, .d_model = 64, .n_layer = 2,
			      .n_head = 4, .d_head = 16, .d_mlp = 160, .act = MB_ACT_GELU_NEW,
			      .norm = MB_NORM_LN, .attn_only = 0, .tied = 1, .ln_eps = 1e-5f};

	thread_invariance(c);
}

Test(backward, neox_parameter_gradients_are_bitwise_the_same_on_one_and_two_threads)
{
	mb_engine_config c = {.n_vocab = 97, .n_ctx = 40, .d_model = 64, .n_layer = 2,
			      .n_head = 4, .d_head = 16, .d_mlp = 160, .act = MB_ACT_GELU,
			      .norm = MB_NORM_LN, .attn_only = 0, .tied = 0, .ln_eps = 1e-5f,
			      .pos = MB_POS_ROTARY, .rotary_dim = 4, .rotary_base = 10000.0f,
			      .parallel = 1};

	thread_invariance(c);
}

static void thread_invariance(mb_engine_config c)
{
	enum { B = 9, T = 37 };
	int32_t tok[B * T], len[B], targets[B * T];
	mb_engine_weights w, g;
	mb_error err;
	mb_rng r;
	size_t np = mb_engine_weights_layout(&w, &c, NULL);
	float *p = malloc(np * sizeof(float)), *gp[2][2];

	mb_engine_weights_layout(&w, &c, p);
	random_weights(p, &c, &w, 5);
	mb_rng_init_named(&r, 4, "test/tokens", 1);
	for (int b = 0; b < B; b++)
		len[b] = T - 3 * b;
	for (int i = 0; i < B * T; i++)
		tok[i] = (int32_t)mb_rng_range(&r, (uint64_t)c.n_vocab);
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++)
			targets[b * T + t] = t + 1 < len[b] && t + 1 < T ? tok[b * T + t + 1] : -1;
	for (int dense = 0; dense < 2; dense++)
		for (int th = 0; th < 2; th++) {
			mb_engine *e;
			mb_backward *bw;
			double loss;
			mb_engine_opts o = {B, T, 1};
			omp_set_num_threads(th + 1);
			gp[dense][th] = malloc(np * sizeof(float));
			mb_engine_weights_layout(&g, &c, gp[dense][th]);
			cr_assert_eq(mb_engine_init(&e, &c, &w, &o, &err), 0, "%s", err.msg);
			mb_engine_set_dense_rows(e, dense);
			cr_assert_eq(mb_backward_init(&bw, e, &err), 0);
			mb_run run = {.batch = B, .seq = T, .tokens = tok, .lengths = len,
				      .logits = MB_LOGITS_ALL};
			cr_assert_eq(mb_engine_forward(e, &run, &err), 0, "%s", err.msg);
			cr_assert_eq(mb_backward_xent(bw, targets, &loss, NULL, &err), 0);
			cr_assert_eq(mb_backward_run(bw, &run, &g, NULL, &err), 0, "%s", err.msg);
			mb_backward_free(bw);
			mb_engine_free(e);
		}
	omp_set_num_threads(2);
	for (int dense = 0; dense < 2; dense++) {
		size_t diff = 0;
		for (size_t i = 0; i < np; i++)
			diff += memcmp(&gp[dense][0][i], &gp[dense][1][i], sizeof(float)) != 0;
		printf("%s rows: %zu of %zu gradient entries differ between 1 and 2 threads\n",
		       dense ? "dense" : "packed", diff, np);
		cr_expect_eq(diff, 0);
	}
	/* Packing changes rounding only: dense and packed agree closely. */
	double mx = 0;
	for (size_t i = 0; i < np; i++)
		mx = fmax(mx, fabs((double)gp[0][0][i] - gp[1][0][i]));
	printf("dense vs packed rows: max |diff| %.3g\n", mx);
	cr_expect_leq(mx, 1e-5);
	for (int dense = 0; dense < 2; dense++)
		for (int th = 0; th < 2; th++)
			free(gp[dense][th]);
	free(p);
}

Test(backward, refuses_an_engine_without_kept_activations_and_a_run_without_dlogits)
{
	mb_engine_config c = tiny(0, MB_ACT_RELU, MB_NORM_LN, 1);
	mb_engine_weights w;
	mb_engine *e;
	mb_backward *bw;
	mb_error err;
	size_t np = mb_engine_weights_layout(&w, &c, NULL);
	float *p = calloc(np, sizeof(float));
	mb_engine_weights_layout(&w, &c, p);
	mb_engine_opts o = {2, 4, 0};
	cr_assert_eq(mb_engine_init(&e, &c, &w, &o, &err), 0);
	cr_expect_eq(mb_backward_init(&bw, e, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "keep_activations"), "%s", err.msg);
	mb_engine_free(e);
	o.keep_activations = 1;
	cr_assert_eq(mb_engine_init(&e, &c, &w, &o, &err), 0);
	cr_assert_eq(mb_backward_init(&bw, e, &err), 0);
	int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8}, tg[8];
	mb_run run = {.batch = 2, .seq = 4, .tokens = tok, .logits = MB_LOGITS_ALL};
	cr_assert_eq(mb_engine_forward(e, &run, &err), 0);
	cr_expect_eq(mb_backward_run(bw, &run, NULL, NULL, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "no dlogits"), "%s", err.msg);
	for (int i = 0; i < 8; i++)
		tg[i] = -1;
	double loss;
	cr_expect_eq(mb_backward_xent(bw, tg, &loss, NULL, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "no target"), "%s", err.msg);
	tg[0] = 11;
	cr_expect_eq(mb_backward_xent(bw, tg, &loss, NULL, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "item 0 logit row 0: target 11"), "%s", err.msg);
	mb_backward_free(bw);
	mb_engine_free(e);
	free(p);
}

/* The compact tail (engine.h mb_engine_set_compact_tail) computes the last
 * layer after the attention only at the last positions: same loss, logits
 * and parameter gradients as the full run to float rounding, bitwise the
 * same on 1 and 2 threads. */
Test(backward, compact_tail_gives_the_full_runs_gradients)
{
	enum { B = 13, T = 3 };
	int32_t tok[B * T], targets[B];
	mb_error err;
	mb_rng r;
	mb_rng_init_named(&r, 9, "test/tokens", 2);
	for (int i = 0; i < B * T; i++)
		tok[i] = (int32_t)mb_rng_range(&r, 11);
	for (int b = 0; b < B; b++)
		targets[b] = (int32_t)mb_rng_range(&r, 11);
	for (int variant = 0; variant < 5; variant++) {
		mb_engine_config c = variant == 0   ? tiny(0, MB_ACT_RELU, MB_NORM_NONE, 0)
				     : variant == 1 ? tiny(0, MB_ACT_GELU_NEW, MB_NORM_LN, 1)
				     : variant == 2 ? tiny(1, MB_ACT_GELU_NEW, MB_NORM_LN, 0)
						    : tiny(0, MB_ACT_GELU, MB_NORM_LN, 0);
		if (variant >= 3) {
			/* NeoX: rotary, sequential (3) or parallel (4: runs stay full) */
			c.pos = MB_POS_ROTARY;
			c.rotary_dim = 2;
			c.rotary_base = 10.0f;
			c.parallel = variant == 4;
		}
		mb_engine_weights w, g;
		size_t np = mb_engine_weights_layout(&w, &c, NULL);
		float *p = malloc(np * sizeof(float)), *gp[3], lg[3][B * 11];
		double loss[3];
		mb_engine_weights_layout(&w, &c, p);
		random_weights(p, &c, &w, 21 + (uint64_t)variant);
		for (int k = 0; k < 3; k++) {
			/* k = 0: full; 1: compact tail, 2 threads; 2: compact tail, 1 thread */
			mb_engine *e;
			mb_backward *bw;
			mb_engine_opts o = {B, T, 1};
			omp_set_num_threads(k == 2 ? 1 : 2);
			gp[k] = malloc(np * sizeof(float));
			mb_engine_weights_layout(&g, &c, gp[k]);
			cr_assert_eq(mb_engine_init(&e, &c, &w, &o, &err), 0, "%s", err.msg);
			mb_engine_set_dense_rows(e, 1);
			mb_engine_set_compact_tail(e, k > 0);
			cr_assert_eq(mb_backward_init(&bw, e, &err), 0);
			mb_run run = {.batch = B, .seq = T, .tokens = tok, .logits = MB_LOGITS_LAST};
			cr_assert_eq(mb_engine_forward(e, &run, &err), 0, "%s", err.msg);
			cr_expect_eq(mb_engine_activations(e)->tail, k > 0 && !c.parallel ? B : 0);
			mb_engine_logits_copy(e, lg[k]);
			cr_assert_eq(mb_backward_xent(bw, targets, &loss[k], NULL, &err), 0);
			cr_assert_eq(mb_backward_run(bw, &run, &g, NULL, &err), 0, "%s", err.msg);
			mb_backward_free(bw);
			mb_engine_free(e);
		}
		omp_set_num_threads(2);
		double dl = 0, dg = 0;
		for (int i = 0; i < B * 11; i++)
			dl = fmax(dl, fabs((double)lg[0][i] - lg[1][i]));
		for (size_t i = 0; i < np; i++)
			dg = fmax(dg, fabs((double)gp[0][i] - gp[1][i]));
		printf("compact tail, variant %d: |logits - full| %.3g, |loss - full| %.3g, "
		       "|grads - full| %.3g\n", variant, dl, fabs(loss[0] - loss[1]), dg);
		cr_expect_leq(dl, 1e-5);
		cr_expect_leq(fabs(loss[0] - loss[1]), 1e-6);
		cr_expect_leq(dg, 1e-6);
		cr_expect(memcmp(gp[1], gp[2], np * sizeof(float)) == 0,
			  "compact tail: 1 and 2 threads differ");
		for (int k = 0; k < 3; k++)
			free(gp[k]);
		free(p);
	}
}
