/*
 * edit.c: causal tracing and ROME (see edit.h for the definitions and the
 * paper they come from).
 *
 * Shape letters: B batch, T positions, D d_model, M d_mlp, V vocab, L layers,
 * S noise samples, K prefixes, N logit rows per item.
 */
#include <mechbench/edit.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/backward.h>
#include <mechbench/detmath.h>
#include <mechbench/gemm.h>
#include <mechbench/hooks.h>
#include <mechbench/logits.h>
#include <mechbench/rng.h>

/* ---- shared pieces ---------------------------------------------------------- */

static int check_tokens(const int32_t *tok, int n, int V, const char *what, mb_error *err)
{
	for (int t = 0; t < n; t++)
		if (tok[t] < 0 || tok[t] >= V)
			return mb_error_set(err, MB_EINVALID, "%s: token %d at position %d is not in "
					    "the vocabulary [0, %d)", what, (int)tok[t], t, V);
	return 0;
}

/* Registry with one read-only cache of the given points; *h and *c owned. */
static int cache_points(mb_hooks **h, mb_cache **c, const mb_hook_point *p, int n, mb_error *err)
{
	int rc;

	*h = NULL;
	*c = NULL;
	if ((rc = mb_hooks_init(h, err)) < 0 || (rc = mb_cache_init(c, err)) < 0)
		return rc;
	for (int i = 0; i < n; i++)
		if ((rc = mb_cache_add(*c, p[i], err)) < 0)
			return rc;
	return mb_cache_attach(*c, *h, err);
}

/* Log-softmax statistics of a row in double: returns logsumexp(z). */
static double row_lse(const float *z, int V)
{
	double m = z[0], s = 0.0;

	for (int v = 1; v < V; v++)
		if (z[v] > m)
			m = z[v];
	for (int v = 0; v < V; v++)
		s += mb_detmath_exp((double)z[v] - m);
	return m + mb_detmath_log(s);
}

/* ---- prompts with a subject ------------------------------------------------- */

int mb_edit_encode(int32_t **tok, int *n, int *subj_first, int *subj_last, const mb_tokenizer *t,
		   const char *tmpl, const char *subject, mb_error *err)
{
	const char *at = strstr(tmpl, "{}");
	size_t pre = at ? (size_t)(at - tmpl) : 0, ls = strlen(subject), lt = strlen(tmpl), pb;
	char *text = NULL;
	int32_t *head = NULL, *before = NULL;
	int nh = 0, nb = 0, rc;

	*tok = NULL;
	if (!at || strstr(at + 2, "{}"))
		return mb_error_set(err, MB_EINVALID, "must contain {} (the subject) exactly once");
	text = malloc(lt + ls + 1);
	if (!text)
		return mb_error_oom(err, "prompt", lt + ls + 1);
	memcpy(text, tmpl, pre);
	memcpy(text + pre, subject, ls);
	text[pre + ls] = '\0';
	if ((rc = mb_tokenizer_encode(t, text, &head, &nh, err)) < 0)
		goto cleanup;
	/* the text before the subject without its trailing spaces: byte-level BPE
	 * puts a space in front of the word that follows it */
	pb = pre;
	while (pb && text[pb - 1] == ' ')
		pb--;
	text[pb] = '\0';
	if ((rc = mb_tokenizer_encode(t, text, &before, &nb, err)) < 0)
		goto cleanup;
	memcpy(text, tmpl, pre);
	memcpy(text + pre, subject, ls);
	memcpy(text + pre + ls, at + 2, lt - pre - 2 + 1);
	if ((rc = mb_tokenizer_encode(t, text, tok, n, err)) < 0)
		goto cleanup;
	if (nh <= nb || nh > *n || memcmp(head, *tok, sizeof(int32_t) * (size_t)nh) != 0 ||
	    (nb && memcmp(before, *tok, sizeof(int32_t) * (size_t)nb) != 0)) {
		rc = mb_error_set(err, MB_EINVALID, "the subject does not start and end on token "
				  "boundaries of \"%s\"", text);
		goto cleanup;
	}
	*subj_last = nh - 1;
	if (subj_first)
		*subj_first = nb;
cleanup:
	if (rc < 0) {
		free(*tok);
		*tok = NULL;
	}
	free(text);
	free(head);
	free(before);
	return rc;
}


/* ---- causal tracing --------------------------------------------------------- */

const char *mb_trace_kind_name(mb_trace_kind kind)
{
	switch (kind) {
	case MB_TRACE_RESID: return "resid";
	case MB_TRACE_MLP: return "mlp";
	case MB_TRACE_ATTN: return "attn";
	}
	return "?";
}

const char *mb_trace_pos_name(int group)
{
	static const char *const names[MB_TRACE_POS_COUNT] = {
		"first_subject", "middle_subject", "last_subject", "first_subsequent", "further",
		"last"};
	return group >= 0 && group < MB_TRACE_POS_COUNT ? names[group] : "?";
}

double mb_trace_embed_sd(const mb_engine_config *cfg, const mb_engine_weights *w,
			 const int32_t *tokens, size_t n)
{
	const int D = cfg->d_model;
	size_t rows = tokens ? n : (size_t)cfg->n_vocab;
	double sum = 0.0, ss = 0.0, mean, count = (double)rows * D;

	for (size_t i = 0; i < rows; i++) {
		const float *x = w->wte + (size_t)(tokens ? tokens[i] : (int32_t)i) * D;
		for (int d = 0; d < D; d++)
			sum += x[d];
	}
	mean = sum / count;
	for (size_t i = 0; i < rows; i++) {
		const float *x = w->wte + (size_t)(tokens ? tokens[i] : (int32_t)i) * D;
		for (int d = 0; d < D; d++)
			ss += ((double)x[d] - mean) * ((double)x[d] - mean);
	}
	return sqrt(ss / count);
}

/* Adds the noise (S, n_subj, D) to items 1..S at the subject's positions. */
typedef struct noise_payload {
	const float *noise;
	int first, n_subj;
} noise_payload;

static int noise_fn(const mb_hook_tensor *x, void *payload, mb_error *err)
{
	const noise_payload *np = payload;
	const int T = x->seq;
	const size_t D = x->numel / ((size_t)x->batch * (size_t)T);

	(void)err;
	for (int b = 1; b < x->batch; b++)
		for (int j = 0; j < np->n_subj; j++) {
			float *row = x->data + ((size_t)b * T + (size_t)(np->first + j)) * D;
			const float *nz = np->noise + ((size_t)(b - 1) * np->n_subj + j) * D;
			for (size_t d = 0; d < D; d++)
				row[d] += nz[d];
		}
	return 0;
}

/* Copies item 0's row at position *payload into items 1..B-1. */
static int restore_fn(const mb_hook_tensor *x, void *payload, mb_error *err)
{
	const int t = *(const int *)payload, T = x->seq;
	const size_t W = x->numel / ((size_t)x->batch * (size_t)T);
	const float *src = x->data + (size_t)t * W;

	(void)err;
	for (int b = 1; b < x->batch; b++)
		memcpy(x->data + ((size_t)b * T + (size_t)t) * W, src, W * sizeof(float));
	return 0;
}

/* Mean P(target) over items 1..B-1 of the last run, and item 0's. */
static void trace_probs(const mb_engine *e, int B, int V, int32_t target, double *p0,
			double *mean)
{
	double s = 0.0;

	if (p0)
		*p0 = mb_logits_prob(mb_engine_logits_row(e, 0, 0), V, target, MB_LOGITS_LIBM);
	for (int b = 1; b < B; b++)
		s += mb_logits_prob(mb_engine_logits_row(e, b, 0), V, target, MB_LOGITS_LIBM);
	*mean = s / (B - 1);
}

int mb_trace_run(double *restored, double *p_clean, double *p_corrupt, mb_engine *e,
		 const mb_trace_item *it, mb_trace_kind kind, const mb_trace_opts *o,
		 mb_error *err)
{
	const mb_engine_config *c = mb_engine_cfg(e);
	const int L = c->n_layer, D = c->d_model, T = it->len, S = o->samples, B = S + 1;
	int32_t *tok = NULL;
	float *noise = NULL;
	mb_hooks *h = NULL;
	noise_payload np;
	mb_rng r;
	int rc, n_subj;
	int *pos = NULL;

	if (T < 1 || it->subj_first < 0 || it->subj_last < it->subj_first || it->subj_last >= T)
		return mb_error_set(err, MB_EINVALID, "trace item: subject span [%d, %d] is not "
				    "inside its %d tokens", it->subj_first, it->subj_last, T);
	if (it->target < 0 || it->target >= c->n_vocab)
		return mb_error_set(err, MB_EINVALID, "trace item: target %d is not in the "
				    "vocabulary [0, %d)", (int)it->target, c->n_vocab);
	if (S < 1 || !(o->noise >= 0.0) || (kind != MB_TRACE_RESID && o->window < 1))
		return mb_error_set(err, MB_EINVALID, "trace: samples %d, noise %g, window %d: need "
				    "samples >= 1, noise >= 0, window >= 1", S, o->noise, o->window);
	if (kind == MB_TRACE_MLP && c->attn_only)
		return mb_error_set(err, MB_EINVALID, "trace: an attention-only model has no MLP "
				    "outputs to restore");
	if ((rc = check_tokens(it->tokens, T, c->n_vocab, "trace item", err)) < 0)
		return rc;
	n_subj = it->subj_last - it->subj_first + 1;
	tok = malloc(sizeof(*tok) * (size_t)B * T);
	noise = malloc(sizeof(*noise) * (size_t)S * n_subj * D);
	pos = malloc(sizeof(*pos) * (size_t)T);
	if (!tok || !noise || !pos) {
		rc = mb_error_oom(err, "trace buffers", sizeof(float) * (size_t)S * n_subj * D);
		goto cleanup;
	}
	for (int b = 0; b < B; b++)
		memcpy(tok + (size_t)b * T, it->tokens, sizeof(*tok) * (size_t)T);
	for (int t = 0; t < T; t++)
		pos[t] = t;
	mb_rng_init_named(&r, o->seed, "trace/noise", it->stream);
	for (size_t i = 0; i < (size_t)S * n_subj * D; i++)
		noise[i] = (float)(o->noise * mb_rng_normal(&r));
	np = (noise_payload){.noise = noise, .first = it->subj_first, .n_subj = n_subj};
	if ((rc = mb_hooks_init(&h, err)) < 0)
		goto cleanup;

	mb_run run = {.batch = B, .seq = T, .tokens = tok, .hooks = h, .logits = MB_LOGITS_LAST};
	mb_hook_point embed = {MB_HOOK_EMBED, -1};

	if ((rc = mb_hooks_add(h, embed, noise_fn, &np, 0, err)) < 0 ||
	    (rc = mb_engine_forward(e, &run, err)) < 0)
		goto cleanup;
	trace_probs(e, B, c->n_vocab, it->target, p_clean, p_corrupt);

	for (int l = 0; l < L; l++) {
		int lo = l, hi = l + 1;
		mb_hook_kind hk = MB_HOOK_RESID_POST;

		if (kind != MB_TRACE_RESID) {
			lo = l - o->window / 2 > 0 ? l - o->window / 2 : 0;
			hi = l + o->window - o->window / 2 < L ? l + o->window - o->window / 2 : L;
			hk = kind == MB_TRACE_MLP ? MB_HOOK_MLP_OUT : MB_HOOK_ATTN_OUT;
		}
		for (int t = 0; t < T; t++) {
			mb_hooks_clear(h);
			if ((rc = mb_hooks_add(h, embed, noise_fn, &np, 0, err)) < 0)
				goto cleanup;
			for (int j = lo; j < hi; j++) {
				mb_hook_point p = {hk, j};
				if ((rc = mb_hooks_add(h, p, restore_fn, &pos[t], 0, err)) < 0)
					goto cleanup;
			}
			if ((rc = mb_engine_forward(e, &run, err)) < 0)
				goto cleanup;
			trace_probs(e, B, c->n_vocab, it->target, NULL, &restored[(size_t)l * T + t]);
		}
	}
cleanup:
	mb_hooks_free(h);
	free(tok);
	free(noise);
	free(pos);
	return rc;
}

void mb_trace_groups(double *out, const double *restored, double p_corrupt, int n_layer,
		     const mb_trace_item *it)
{
	const int T = it->len;

	for (int l = 0; l < n_layer; l++)
		for (int g = 0; g < MB_TRACE_POS_COUNT; g++) {
			double s = 0.0;
			int n = 0;

			for (int t = 0; t < T; t++) {
				int in;
				switch (g) {
				case MB_TRACE_POS_FIRST_SUBJ: in = t == it->subj_first; break;
				case MB_TRACE_POS_MID_SUBJ:
					in = t > it->subj_first && t < it->subj_last;
					break;
				case MB_TRACE_POS_LAST_SUBJ: in = t == it->subj_last; break;
				case MB_TRACE_POS_FIRST_AFTER:
					in = t == it->subj_last + 1 && t < T - 1;
					break;
				case MB_TRACE_POS_FURTHER:
					in = t > it->subj_last + 1 && t < T - 1;
					break;
				default: in = t == T - 1 && t > it->subj_last; break;
				}
				if (in) {
					s += restored[(size_t)l * T + t] - p_corrupt;
					n++;
				}
			}
			out[l * MB_TRACE_POS_COUNT + g] = n ? s / n : NAN;
		}
}

/* ---- ROME: key statistics --------------------------------------------------- */

void mb_rome_stats_dispose(mb_rome_stats *s)
{
	if (!s)
		return;
	free(s->mom2);
	memset(s, 0, sizeof(*s));
}

/* Row blocks of k^T k: a fixed partition, so the bits do not follow the
 * thread count under any backend. */
#define STATS_BLOCK 64

int mb_rome_stats_compute(mb_rome_stats *out, mb_engine *e, int layer, const int32_t *tokens,
			  size_t n, int seq, int batch, mb_error *err)
{
	const mb_engine_config *c = mb_engine_cfg(e);
	const int M = c->d_mlp;
	mb_hook_point post = {MB_HOOK_MLP_POST, layer};
	mb_hooks *h = NULL;
	mb_cache *cache = NULL;
	double *sum = NULL;
	float *g = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (c->attn_only)
		return mb_error_set(err, MB_EINVALID, "ROME statistics: an attention-only model has "
				    "no MLP");
	if (layer < 0 || layer >= c->n_layer)
		return mb_error_set(err, MB_EINVALID, "ROME statistics: layer %d is not in [0, %d)",
				    layer, c->n_layer);
	if (n == 0 || seq < 1 || batch < 1)
		return mb_error_set(err, MB_EINVALID, "ROME statistics: no tokens in the corpus");
	sum = calloc((size_t)M * M, sizeof(*sum));
	g = malloc(sizeof(*g) * (size_t)M * M);
	out->mom2 = malloc(sizeof(float) * (size_t)M * M);
	if (!sum || !g || !out->mom2) {
		rc = mb_error_oom(err, "ROME statistics", sizeof(double) * (size_t)M * M);
		goto cleanup;
	}
	if ((rc = cache_points(&h, &cache, &post, 1, err)) < 0)
		goto cleanup;
	for (size_t i0 = 0; i0 < n; i0 += (size_t)batch) {
		int B = (int)(n - i0 < (size_t)batch ? n - i0 : (size_t)batch);
		mb_run run = {.batch = B, .seq = seq, .tokens = tokens + i0 * (size_t)seq,
			      .hooks = h, .logits = MB_LOGITS_NONE};
		const mb_hook_tensor *k;

		if ((rc = check_tokens(run.tokens, B * seq, c->n_vocab, "ROME corpus", err)) < 0 ||
		    (rc = mb_engine_forward(e, &run, err)) < 0)
			goto cleanup;
		k = mb_cache_get(cache, post); /* (B, seq, M) */
		for (int b = 0; b < B; b++) {
			const float *kb = k->data + (size_t)b * seq * M; /* (seq, M) */
			const int nblk = (M + STATS_BLOCK - 1) / STATS_BLOCK;

#pragma omp parallel for schedule(static)
			for (int blk = 0; blk < nblk; blk++) {
				int i0b = blk * STATS_BLOCK;
				int rows = M - i0b < STATS_BLOCK ? M - i0b : STATS_BLOCK;

				mb_gemm_sgemm(1, 0, rows, M, seq, 1.0f, kb + i0b, M, kb, M,
					      g + (size_t)i0b * M, M);
				for (size_t x = (size_t)i0b * M; x < (size_t)(i0b + rows) * M; x++)
					sum[x] += g[x];
			}
		}
	}
	out->layer = layer;
	out->d_mlp = M;
	out->tokens = (int64_t)n * seq;
	for (size_t x = 0; x < (size_t)M * M; x++)
		out->mom2[x] = (float)(sum[x] / (double)out->tokens);
cleanup:
	mb_cache_free(cache);
	mb_hooks_free(h);
	free(sum);
	free(g);
	if (rc < 0)
		mb_rome_stats_dispose(out);
	return rc;
}

/* ---- ROME: vectors ---------------------------------------------------------- */

void mb_rome_params_default(mb_rome_params *p, int layer)
{
	*p = (mb_rome_params){.layer = layer, .steps = 20, .lr = 0.5, .weight_decay = 0.5,
			      .clamp = 4.0, .kl_factor = 0.0625, .stop_loss = 5e-2};
}

void mb_rome_result_dispose(mb_rome_result *res)
{
	if (!res)
		return;
	free(res->kstar);
	free(res->u);
	free(res->r);
	free(res->v0);
	free(res->vstar);
	memset(res, 0, sizeof(*res));
}

/* A right-padded batch of contexts: prefix_i + body (+ tail), tokens (K, T),
 * lengths (K). */
typedef struct ctx_batch {
	int32_t *tokens;
	int32_t *len;
	int B, T;
} ctx_batch;

static void ctx_dispose(ctx_batch *cb)
{
	free(cb->tokens);
	free(cb->len);
}

/* Rows 0..K-1: prefix_i + body + tail[0..n_tail); then, when extra is not
 * NULL, one more row holding extra alone. */
static int ctx_build(ctx_batch *cb, const mb_rome_prefix *pre, int K, const int32_t *body,
		     int n_body, const int32_t *tail, int n_tail, const int32_t *extra, int n_extra,
		     mb_error *err)
{
	int T = n_extra;

	cb->B = K + (extra != NULL);
	for (int i = 0; i < K; i++)
		if (pre[i].n + n_body + n_tail > T)
			T = pre[i].n + n_body + n_tail;
	cb->T = T;
	cb->tokens = calloc((size_t)cb->B * T, sizeof(int32_t));
	cb->len = malloc(sizeof(int32_t) * (size_t)cb->B);
	if (!cb->tokens || !cb->len) {
		ctx_dispose(cb);
		return mb_error_oom(err, "ROME contexts", sizeof(int32_t) * (size_t)cb->B * T);
	}
	for (int i = 0; i < K; i++) {
		int32_t *row = cb->tokens + (size_t)i * T;
		if (pre[i].n)
			memcpy(row, pre[i].tokens, sizeof(int32_t) * (size_t)pre[i].n);
		memcpy(row + pre[i].n, body, sizeof(int32_t) * (size_t)n_body);
		if (n_tail)
			memcpy(row + pre[i].n + n_body, tail, sizeof(int32_t) * (size_t)n_tail);
		cb->len[i] = pre[i].n + n_body + n_tail;
	}
	if (extra) {
		memcpy(cb->tokens + (size_t)K * T, extra, sizeof(int32_t) * (size_t)n_extra);
		cb->len[K] = n_extra;
	}
	return 0;
}

int mb_rome_key(float *kstar, mb_engine *e, const mb_rome_request *req,
		const mb_rome_prefix *prefixes, int n_prefix, int layer, mb_error *err)
{
	const mb_engine_config *c = mb_engine_cfg(e);
	const int M = c->d_mlp;
	mb_hook_point post = {MB_HOOK_MLP_POST, layer};
	mb_hooks *h = NULL;
	mb_cache *cache = NULL;
	ctx_batch cb = {0};
	double *acc = NULL;
	int rc;

	if (n_prefix < 1)
		return mb_error_set(err, MB_EINVALID, "ROME key: no contexts (give at least the "
				    "empty prefix)");
	if ((rc = ctx_build(&cb, prefixes, n_prefix, req->prompt, req->n_prompt, NULL, 0, NULL, 0,
			    err)) < 0)
		return rc;
	acc = calloc((size_t)M, sizeof(*acc));
	if (!acc) {
		rc = mb_error_oom(err, "ROME key", sizeof(double) * (size_t)M);
		goto cleanup;
	}
	if ((rc = cache_points(&h, &cache, &post, 1, err)) < 0)
		goto cleanup;
	mb_run run = {.batch = cb.B, .seq = cb.T, .tokens = cb.tokens, .lengths = cb.len,
		      .hooks = h, .logits = MB_LOGITS_NONE};
	if ((rc = mb_engine_forward(e, &run, err)) < 0)
		goto cleanup;
	const mb_hook_tensor *k = mb_cache_get(cache, post); /* (B, T, M) */
	for (int i = 0; i < n_prefix; i++) {
		const float *row = k->data + ((size_t)i * cb.T + (size_t)(prefixes[i].n + req->subj_last)) * M;
		for (int m = 0; m < M; m++)
			acc[m] += row[m];
	}
	for (int m = 0; m < M; m++)
		kstar[m] = (float)(acc[m] / n_prefix);
cleanup:
	mb_cache_free(cache);
	mb_hooks_free(h);
	ctx_dispose(&cb);
	free(acc);
	return rc;
}

/* Cholesky factor of the symmetric M x M matrix a in place: a = G G^T, G in
 * the lower triangle (the upper one is left as it was). Returns the first
 * pivot that is not positive, or -1. Rows below the pivot in parallel:
 * each entry is one fixed-order sum, whatever the thread count. */
static int chol_factor(double *a, int M)
{
	for (int j = 0; j < M; j++) {
		double d = a[(size_t)j * M + j];
		for (int p = 0; p < j; p++)
			d -= a[(size_t)j * M + p] * a[(size_t)j * M + p];
		if (!(d > 0.0))
			return j;
		d = sqrt(d);
		a[(size_t)j * M + j] = d;
#pragma omp parallel for schedule(static)
		for (int i = j + 1; i < M; i++) {
			double v = a[(size_t)i * M + j];
			for (int p = 0; p < j; p++)
				v -= a[(size_t)i * M + p] * a[(size_t)j * M + p];
			a[(size_t)i * M + j] = v / d;
		}
	}
	return -1;
}

/* Solves G G^T x = y in place (y (M)) with the factor of chol_factor. */
static void chol_solve(const double *a, int M, double *y)
{
	for (int i = 0; i < M; i++) {
		double v = y[i];
		for (int p = 0; p < i; p++)
			v -= a[(size_t)i * M + p] * y[p];
		y[i] = v / a[(size_t)i * M + i];
	}
	for (int i = M - 1; i >= 0; i--) {
		double v = y[i];
		for (int p = i + 1; p < M; p++)
			v -= a[(size_t)p * M + i] * y[p];
		y[i] = v / a[(size_t)i * M + i];
	}
}

static int not_pd(mb_error *err, const mb_rome_stats *s, int pivot)
{
	return mb_error_set(err, MB_EINVALID, "statistics of layer %d: the key second moment is "
			    "not positive definite (pivot %d; %lld tokens for %d keys: use a "
			    "larger corpus)", s->layer, pivot, (long long)s->tokens, s->d_mlp);
}

int mb_rome_left(float *u, const mb_rome_stats *s, const float *k, mb_error *err)
{
	const int M = s->d_mlp;
	double *a = malloc(sizeof(double) * (size_t)M * M), *y = malloc(sizeof(double) * (size_t)M);
	double norm = 0.0;
	int rc = 0, piv;

	if (!a || !y) {
		rc = mb_error_oom(err, "ROME inverse", sizeof(double) * (size_t)M * M);
		goto cleanup;
	}
	for (size_t x = 0; x < (size_t)M * M; x++)
		a[x] = s->mom2[x];
	if ((piv = chol_factor(a, M)) >= 0) {
		rc = not_pd(err, s, piv);
		goto cleanup;
	}
	for (int i = 0; i < M; i++)
		y[i] = k[i];
	chol_solve(a, M, y);
	for (int i = 0; i < M; i++)
		norm += y[i] * y[i];
	norm = sqrt(norm);
	if (!(norm > 0.0)) {
		rc = mb_error_set(err, MB_EINVALID, "ROME left vector: the key is zero");
		goto cleanup;
	}
	for (int i = 0; i < M; i++)
		u[i] = (float)(y[i] / norm);
cleanup:
	free(a);
	free(y);
	return rc;
}

/* The forward hook of the v* optimisation at blocks.{l}.hook_mlp_out. */
typedef struct delta_payload {
	const int32_t *lookup; /* (B) */
	const float *delta;    /* (D) */
	float *v0;             /* (D) written when record is set */
	int record;
	double *grad;          /* (D) the backward's sum of the rows' gradients */
} delta_payload;

static int delta_fn(const mb_hook_tensor *x, void *payload, mb_error *err)
{
	delta_payload *dp = payload;
	const int T = x->seq;
	const size_t D = x->numel / ((size_t)x->batch * (size_t)T);

	(void)err;
	if (dp->record) {
		memcpy(dp->v0, x->data + (size_t)dp->lookup[0] * D, D * sizeof(float));
		dp->record = 0;
	}
	for (int b = 0; b < x->batch; b++) {
		float *row = x->data + ((size_t)b * T + (size_t)dp->lookup[b]) * D;
		for (size_t d = 0; d < D; d++)
			row[d] += dp->delta[d];
	}
	return 0;
}

static int grad_fn(const mb_hook_tensor *x, void *payload, mb_error *err)
{
	delta_payload *dp = payload;
	const int T = x->seq;
	const size_t D = x->numel / ((size_t)x->batch * (size_t)T);

	(void)err;
	for (size_t d = 0; d < D; d++)
		dp->grad[d] = 0.0;
	for (int b = 0; b < x->batch; b++) {
		const float *row = x->data + ((size_t)b * T + (size_t)dp->lookup[b]) * D;
		for (size_t d = 0; d < D; d++)
			dp->grad[d] += row[d];
	}
	return 0;
}

static double norm_f(const float *x, int n)
{
	double s = 0.0;
	for (int i = 0; i < n; i++)
		s += (double)x[i] * x[i];
	return sqrt(s);
}

static int check_request(const mb_rome_request *q, const mb_engine_config *c, mb_error *err)
{
	int rc;

	if (q->n_target < 1)
		return mb_error_set(err, MB_EINVALID, "ROME request: the new object has no tokens");
	if (q->n_prompt < 1 || q->subj_last < 0 || q->subj_last >= q->n_prompt)
		return mb_error_set(err, MB_EINVALID, "ROME request: subject position %d is not in "
				    "the prompt's %d tokens", q->subj_last, q->n_prompt);
	if (q->n_kl < 1 || q->kl_subj_last < 0 || q->kl_subj_last >= q->n_kl)
		return mb_error_set(err, MB_EINVALID, "ROME request: subject position %d is not in "
				    "the kl prompt's %d tokens", q->kl_subj_last, q->n_kl);
	if ((rc = check_tokens(q->prompt, q->n_prompt, c->n_vocab, "ROME prompt", err)) < 0 ||
	    (rc = check_tokens(q->target, q->n_target, c->n_vocab, "ROME target", err)) < 0 ||
	    (rc = check_tokens(q->kl_prompt, q->n_kl, c->n_vocab, "ROME kl prompt", err)) < 0)
		return rc;
	return 0;
}

/* Loss and dlogits (B, N, V) of one v* evaluation; logq (V) is the kl
 * prompt's initial log-distribution, set when *have_q is 0. */
static void v_loss(double loss[3], float *dlogits, double *logq, int *have_q,
		   const mb_engine *e, const mb_rome_request *q, int K, int V,
		   const mb_rome_params *p)
{
	const int N = q->n_target;
	const double scale = 1.0 / ((double)N * K);
	double nll = 0.0, kl = 0.0;

	memset(dlogits, 0, sizeof(float) * (size_t)(K + 1) * N * V);
	for (int b = 0; b < K; b++) {
		double each = 0.0;
		for (int j = 0; j < N; j++) {
			const float *z = mb_engine_logits_row(e, b, j);
			float *dz = dlogits + ((size_t)b * N + j) * V;
			double lse = row_lse(z, V);
			each -= (double)z[q->target[j]] - lse;
			for (int v = 0; v < V; v++)
				dz[v] = (float)(mb_detmath_exp((double)z[v] - lse) * scale);
			dz[q->target[j]] -= (float)scale;
		}
		nll += each / N;
	}
	nll /= K;
	{
		const float *z = mb_engine_logits_row(e, K, 0);
		float *dz = dlogits + (size_t)K * N * V;
		double lse = row_lse(z, V);

		if (!*have_q) {
			for (int v = 0; v < V; v++)
				logq[v] = (double)z[v] - lse;
			*have_q = 1;
		}
		for (int v = 0; v < V; v++) {
			double lp = (double)z[v] - lse;
			kl += mb_detmath_exp(lp) * (lp - logq[v]);
		}
		for (int v = 0; v < V; v++) {
			double lp = (double)z[v] - lse;
			dz[v] = (float)(p->kl_factor * mb_detmath_exp(lp) * (lp - logq[v] - kl));
		}
	}
	loss[0] = nll;
	loss[1] = p->kl_factor * kl;
}

/* Adam (Kingma and Ba 2015) as torch.optim.Adam computes it: betas 0.9,
 * 0.999, eps 1e-8, no weight decay; step t counts from 1. */
static void adam_step(float *x, float *m, float *v, const double *g, int n, int t, double lr)
{
	const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
	const double bc1 = 1.0 - mb_detmath_powi(b1, t), bc2s = sqrt(1.0 - mb_detmath_powi(b2, t));

	for (int i = 0; i < n; i++) {
		float gi = (float)g[i];
		m[i] = m[i] * (float)b1 + gi * (float)(1.0 - b1);
		v[i] = v[i] * (float)b2 + gi * gi * (float)(1.0 - b2);
		float denom = sqrtf(v[i]) / (float)bc2s + (float)eps;
		x[i] = x[i] - (float)(lr / bc1) * (m[i] / denom);
	}
}

/* The v* (ROME) or z (MEMIT) optimisation: delta added at point `at`
 * (hook_mlp_out or hook_resid_post of its layer) at the subject's last token
 * of every rewriting prompt and of the kl prompt, minimising the objective of
 * edit.h. Writes v0 (D), the value there before the edit, and delta (D);
 * out's steps_run, loss, loss_first and p_target. */
static int value_opt(float *v0, float *delta, mb_rome_result *out, mb_engine *e,
		     const mb_rome_request *req, const mb_rome_prefix *prefixes, int K,
		     mb_hook_point at, const mb_rome_params *p, mb_error *err)
{
	const mb_engine_config *c = mb_engine_cfg(e);
	const int D = c->d_model, V = c->n_vocab, N = req->n_target;
	ctx_batch cb = {0};
	mb_backward *bw = NULL;
	mb_hooks *fh = NULL, *gh = NULL, *fh0 = NULL;
	mb_cache *c0 = NULL;
	mb_hook_point pre_pt = {MB_HOOK_RESID_PRE, at.layer};
	int32_t *lookup = NULL, *positions = NULL;
	float *am = NULL, *av = NULL, *dlogits = NULL, *resid = NULL;
	double *grad = NULL, *logq = NULL, v0n2 = 0.0;
	int have_q = 0, rc;
	delta_payload dp;

	memset(delta, 0, sizeof(float) * (size_t)D);
	am = calloc((size_t)D, sizeof(float));
	av = calloc((size_t)D, sizeof(float));
	grad = calloc((size_t)D, sizeof(double));
	logq = malloc(sizeof(double) * (size_t)V);
	lookup = malloc(sizeof(int32_t) * (size_t)(K + 1));
	positions = malloc(sizeof(int32_t) * (size_t)(K + 1) * N);
	dlogits = malloc(sizeof(float) * (size_t)(K + 1) * N * V);
	if (!am || !av || !grad || !logq || !lookup || !positions || !dlogits) {
		rc = mb_error_oom(err, "edit optimisation", sizeof(float) * (size_t)(K + 1) * N * V);
		goto cleanup;
	}
	/* The rewriting prompts prefix_i + prompt + target[0..N-1) and the kl prompt. */
	if ((rc = ctx_build(&cb, prefixes, K, req->prompt, req->n_prompt, req->target, N - 1,
			    req->kl_prompt, req->n_kl, err)) < 0)
		goto cleanup;
	for (int i = 0; i < K; i++) {
		lookup[i] = prefixes[i].n + req->subj_last;
		for (int j = 0; j < N; j++)
			positions[(size_t)i * N + j] = cb.len[i] - N + j;
	}
	lookup[K] = req->kl_subj_last;
	for (int j = 0; j < N; j++)
		positions[(size_t)K * N + j] = req->kl_subj_last;

	dp = (delta_payload){.lookup = lookup, .delta = delta, .v0 = v0, .record = 1,
			     .grad = grad};
	/* Only the MLP output of layer l changes from step to step: the first
	 * forward keeps blocks.{l}.hook_resid_pre and every later step (forward
	 * and backward) restarts there, which gives the full forward's bits
	 * (engine.h, start_layer) at (L - l) / L of its cost. */
	if ((rc = mb_backward_init(&bw, e, err)) < 0 || (rc = mb_hooks_init(&fh, err)) < 0 ||
	    (rc = mb_hooks_init(&gh, err)) < 0 ||
	    (rc = mb_hooks_add(fh, at, delta_fn, &dp, 0, err)) < 0 ||
	    (rc = mb_hooks_add(gh, at, grad_fn, &dp, MB_HOOK_READONLY, err)) < 0 ||
	    (rc = cache_points(&fh0, &c0, &pre_pt, 1, err)) < 0 ||
	    (rc = mb_hooks_add(fh0, at, delta_fn, &dp, 0, err)) < 0)
		goto cleanup;

	mb_run run = {.batch = cb.B, .seq = cb.T, .tokens = cb.tokens, .lengths = cb.len,
		      .hooks = fh0, .logits = MB_LOGITS_POSITIONS, .n_positions = N,
		      .positions = positions};
	for (int it = 0; it < p->steps; it++) {
		double loss[3], total, dn, max_norm;

		if ((rc = mb_engine_forward(e, &run, err)) < 0)
			goto cleanup;
		if (it == 0 && at.layer > 0) {
			const mb_hook_tensor *x = mb_cache_get(c0, pre_pt);
			resid = malloc(sizeof(float) * x->numel);
			if (!resid) {
				rc = mb_error_oom(err, "edit optimisation", sizeof(float) * x->numel);
				goto cleanup;
			}
			memcpy(resid, x->data, sizeof(float) * x->numel);
		}
		if (it == 0)
			v0n2 = norm_f(v0, D) * norm_f(v0, D);
		v_loss(loss, dlogits, logq, &have_q, e, req, K, V, p);
		dn = norm_f(delta, D);
		loss[2] = v0n2 > 0.0 ? p->weight_decay * dn / v0n2 : 0.0;
		total = loss[0] + loss[1] + loss[2];
		if (!isfinite(total)) {
			rc = mb_error_set(err, MB_EINVALID, "edit: the loss is not finite at step %d",
					  it);
			goto cleanup;
		}
		if (it == 0)
			out->loss_first = total;
		memcpy(out->loss, loss, sizeof(loss));
		out->p_target = mb_detmath_exp(-loss[0]);
		out->steps_run = it + 1;
		if (total < p->stop_loss || it == p->steps - 1)
			break;
		if ((rc = mb_backward_set_dlogits(bw, dlogits, err)) < 0 ||
		    (rc = mb_backward_run(bw, &run, NULL, gh, err)) < 0)
			goto cleanup;
		run.hooks = fh;
		if (resid) {
			run.start_layer = at.layer;
			run.start_resid = resid;
		}
		if (dn > 0.0 && v0n2 > 0.0)
			for (int d = 0; d < D; d++)
				grad[d] += p->weight_decay * delta[d] / (dn * v0n2);
		adam_step(delta, am, av, grad, D, it + 1, p->lr);
		dn = norm_f(delta, D);
		max_norm = p->clamp * sqrt(v0n2);
		if (dn > max_norm)
			for (int d = 0; d < D; d++)
				delta[d] = (float)(delta[d] * max_norm / dn);
	}
cleanup:
	mb_backward_free(bw);
	mb_hooks_free(fh);
	mb_hooks_free(gh);
	mb_hooks_free(fh0);
	mb_cache_free(c0);
	free(resid);
	ctx_dispose(&cb);
	free(lookup);
	free(positions);
	free(am);
	free(av);
	free(grad);
	free(logq);
	free(dlogits);
	return rc;
}

/* The checks shared by ROME and MEMIT. */
static int check_edit(const mb_engine_config *c, const mb_rome_request *req,
		      const mb_rome_prefix *prefixes, int K, int steps, const char *what,
		      mb_error *err)
{
	int rc;

	if (c->attn_only)
		return mb_error_set(err, MB_EINVALID, "%s: an attention-only model has no MLP", what);
	if (steps < 1)
		return mb_error_set(err, MB_EINVALID, "%s: steps %d < 1", what, steps);
	if ((rc = check_request(req, c, err)) < 0)
		return rc;
	if (K < 1)
		return mb_error_set(err, MB_EINVALID, "%s: no contexts (give at least the empty "
				    "prefix)", what);
	for (int i = 0; i < K; i++)
		if ((rc = check_tokens(prefixes[i].tokens, prefixes[i].n, c->n_vocab, "prefix",
				       err)) < 0)
			return rc;
	return 0;
}

int mb_rome_compute(mb_rome_result *out, mb_engine *e, const mb_rome_stats *s,
		    const mb_rome_request *req, const mb_rome_prefix *prefixes, int n_prefix,
		    const mb_rome_params *p, mb_error *err)
{
	const mb_engine_config *c = mb_engine_cfg(e);
	const int D = c->d_model, M = c->d_mlp, K = n_prefix, l = p->layer;
	mb_hook_point out_pt = {MB_HOOK_MLP_OUT, l}, pts[2] = {{MB_HOOK_MLP_POST, l},
							       {MB_HOOK_MLP_OUT, l}};
	mb_hooks *bh = NULL;
	mb_cache *bc = NULL;
	float *delta = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = check_edit(c, req, prefixes, K, p->steps, "ROME", err)) < 0)
		return rc;
	if (l < 0 || l >= c->n_layer - 1)
		return mb_error_set(err, MB_EINVALID, "ROME: layer %d is not in [0, %d): the last "
				    "layer's MLP output at the subject never reaches the later "
				    "positions the objective reads", l, c->n_layer - 1);
	if (s->layer != l || s->d_mlp != M)
		return mb_error_set(err, MB_EMISMATCH, "ROME: statistics of layer %d (d_mlp %d) for "
				    "an edit at layer %d (d_mlp %d)", s->layer, s->d_mlp, l, M);
	out->kstar = malloc(sizeof(float) * (size_t)M);
	out->u = malloc(sizeof(float) * (size_t)M);
	out->r = malloc(sizeof(float) * (size_t)D);
	out->v0 = calloc((size_t)D, sizeof(float));
	out->vstar = malloc(sizeof(float) * (size_t)D);
	delta = calloc((size_t)D, sizeof(float));
	if (!out->kstar || !out->u || !out->r || !out->v0 || !out->vstar || !delta) {
		rc = mb_error_oom(err, "ROME vectors", sizeof(float) * (size_t)(2 * M + 3 * D));
		goto cleanup;
	}
	/* u = C^-1 k* / ||C^-1 k*||, then v* */
	if ((rc = mb_rome_key(out->kstar, e, req, prefixes, K, l, err)) < 0 ||
	    (rc = mb_rome_left(out->u, s, out->kstar, err)) < 0 ||
	    (rc = value_opt(out->v0, delta, out, e, req, prefixes, K, out_pt, p, err)) < 0)
		goto cleanup;
	for (int d = 0; d < D; d++)
		out->vstar[d] = out->v0[d] + delta[d];

	/* r = (v* - v(p)) / (k(p) . u) at the bare prompt. */
	{
		mb_run bare = {.batch = 1, .seq = req->n_prompt, .tokens = req->prompt,
			       .logits = MB_LOGITS_NONE};
		const float *kp, *vp;
		double dot = 0.0;

		if ((rc = cache_points(&bh, &bc, pts, 2, err)) < 0)
			goto cleanup;
		bare.hooks = bh;
		if ((rc = mb_engine_forward(e, &bare, err)) < 0)
			goto cleanup;
		kp = mb_cache_get(bc, pts[0])->data + (size_t)req->subj_last * M;
		vp = mb_cache_get(bc, pts[1])->data + (size_t)req->subj_last * D;
		for (int m = 0; m < M; m++)
			dot += (double)kp[m] * out->u[m];
		if (!(fabs(dot) > 0.0)) {
			rc = mb_error_set(err, MB_EINVALID, "ROME: the prompt's key is orthogonal to "
					  "the left vector");
			goto cleanup;
		}
		for (int d = 0; d < D; d++)
			out->r[d] = (float)(((double)out->vstar[d] - vp[d]) / dot);
	}
cleanup:
	mb_hooks_free(bh);
	mb_cache_free(bc);
	free(delta);
	if (rc < 0)
		mb_rome_result_dispose(out);
	return rc;
}

/* ---- MEMIT ------------------------------------------------------------------ */

void mb_memit_params_default(mb_memit_params *p, const int *layers, int n)
{
	memset(p, 0, sizeof(*p));
	p->n_layers = n < MB_MEMIT_MAX_LAYERS ? n : MB_MEMIT_MAX_LAYERS;
	for (int i = 0; i < p->n_layers; i++)
		p->layers[i] = layers[i];
	mb_rome_params_default(&p->z, p->n_layers ? layers[p->n_layers - 1] : 0);
	p->z.clamp = 0.75;
	p->mom2_weight = 20000.0;
}

/* Per request j: keys (M) at layer l, mean of the bare prompt's key and the
 * mean over the other prefixes' (MEMIT's compute_ks: a mean over context
 * kinds), into ks (n, M); and hidden states (D) after layer L at the bare
 * prompt's subject, into zs (n, D) (NULL: not read). */
static int memit_reads(float *ks, float *zs, mb_engine *e, const mb_rome_request *reqs, int n,
		       const mb_rome_prefix *pre, int K, int l, int L, mb_error *err)
{
	const mb_engine_config *c = mb_engine_cfg(e);
	const int M = c->d_mlp, D = c->d_model;
	mb_hook_point pts[2] = {{MB_HOOK_MLP_POST, l}, {MB_HOOK_RESID_POST, L}};
	mb_hooks *h = NULL;
	mb_cache *cache = NULL;
	ctx_batch cb = {0};
	int rc;

	if ((rc = cache_points(&h, &cache, pts, 2, err)) < 0)
		goto cleanup;
	for (int j = 0; j < n; j++) {
		const mb_rome_request *q = &reqs[j];
		const mb_hook_tensor *k, *z;
		double *acc = NULL;

		if ((rc = ctx_build(&cb, pre, K, q->prompt, q->n_prompt, NULL, 0, NULL, 0, err)) < 0)
			goto cleanup;
		mb_run run = {.batch = cb.B, .seq = cb.T, .tokens = cb.tokens, .lengths = cb.len,
			      .hooks = h, .logits = MB_LOGITS_NONE};
		if ((rc = mb_engine_forward(e, &run, err)) < 0)
			goto cleanup;
		k = mb_cache_get(cache, pts[0]);
		z = mb_cache_get(cache, pts[1]);
		acc = calloc((size_t)M, sizeof(double));
		if (!acc) {
			rc = mb_error_oom(err, "MEMIT keys", sizeof(double) * (size_t)M);
			goto cleanup;
		}
		for (int i = 1; i < K; i++) {
			const float *row = k->data + ((size_t)i * cb.T + (size_t)(pre[i].n + q->subj_last)) * M;
			for (int m = 0; m < M; m++)
				acc[m] += row[m];
		}
		for (int m = 0; m < M; m++) {
			double k0 = k->data[(size_t)q->subj_last * M + m];
			ks[(size_t)j * M + m] = (float)(K > 1 ? (k0 + acc[m] / (K - 1)) / 2.0 : k0);
		}
		free(acc);
		if (zs)
			memcpy(zs + (size_t)j * D, z->data + (size_t)q->subj_last * D,
			       sizeof(float) * (size_t)D);
		ctx_dispose(&cb);
		cb = (ctx_batch){0};
	}
cleanup:
	ctx_dispose(&cb);
	mb_cache_free(cache);
	mb_hooks_free(h);
	return rc;
}

int mb_memit_edit(float *z, mb_engine *e, mb_engine_weights *w, const mb_rome_stats *stats,
		  const mb_rome_request *reqs, int n, const mb_rome_prefix *prefixes, int n_prefix,
		  const mb_memit_params *p, mb_error *err)
{
	const mb_engine_config *c = mb_engine_cfg(e);
	const int D = c->d_model, M = c->d_mlp, K = n_prefix, R = p->n_layers;
	const int L = R > 0 ? p->layers[R - 1] : -1;
	float *ks = NULL, *cur = NULL, *delta = NULL, *zz = z;
	double *a = NULL, *adj = NULL, *resid = NULL;
	mb_rome_result info;
	int rc = 0, piv;

	if (R < 1 || n < 1)
		return mb_error_set(err, MB_EINVALID, "MEMIT: %d layers, %d requests", R, n);
	if (L >= c->n_layer - 1)
		return mb_error_set(err, MB_EINVALID, "MEMIT: the last layer %d of a %d-layer model "
				    "cannot be the z layer: its output at the subject never reaches "
				    "the later positions the objective reads", L, c->n_layer);
	for (int i = 0; i < R; i++) {
		if (p->layers[i] < 0 || p->layers[i] >= c->n_layer || (i && p->layers[i] <= p->layers[i - 1]))
			return mb_error_set(err, MB_EINVALID, "MEMIT: layers must ascend inside [0, %d); "
					    "layer %d is %d", c->n_layer, i, p->layers[i]);
		if (stats[i].layer != p->layers[i] || stats[i].d_mlp != M)
			return mb_error_set(err, MB_EMISMATCH, "MEMIT: statistics %d are of layer %d "
					    "(d_mlp %d), the layer is %d (d_mlp %d)", i, stats[i].layer,
					    stats[i].d_mlp, p->layers[i], M);
	}
	for (int j = 0; j < n; j++)
		if ((rc = check_edit(c, &reqs[j], prefixes, K, p->z.steps, "MEMIT", err)) < 0)
			return mb_error_prefix(err, "request %d", j);
	ks = malloc(sizeof(float) * (size_t)n * M);
	cur = malloc(sizeof(float) * (size_t)n * D);
	delta = malloc(sizeof(float) * (size_t)D);
	a = malloc(sizeof(double) * (size_t)M * M);
	adj = malloc(sizeof(double) * (size_t)n * M);
	resid = malloc(sizeof(double) * (size_t)n * D);
	if (!zz)
		zz = malloc(sizeof(float) * (size_t)n * D);
	if (!ks || !cur || !delta || !a || !adj || !resid || !zz) {
		rc = mb_error_oom(err, "MEMIT", sizeof(double) * (size_t)M * M);
		goto cleanup;
	}
	/* z_j: the hidden state after layer L that says the new object */
	for (int j = 0; j < n; j++) {
		mb_hook_point at = {MB_HOOK_RESID_POST, L};
		memset(&info, 0, sizeof(info));
		if ((rc = value_opt(cur + (size_t)j * D, delta, &info, e, &reqs[j], prefixes, K, at,
				    &p->z, err)) < 0) {
			mb_error_prefix(err, "MEMIT request %d", j);
			goto cleanup;
		}
		for (int d = 0; d < D; d++)
			zz[(size_t)j * D + d] = cur[(size_t)j * D + d] + delta[d];
	}
	/* Spread the residual over the layers, lowest first. */
	for (int i = 0; i < R; i++) {
		const int l = p->layers[i];
		float *W = w->proj_w + (size_t)l * M * D; /* (M, D) */

		if ((rc = memit_reads(ks, cur, e, reqs, n, prefixes, K, l, L, err)) < 0)
			goto cleanup;
		for (int j = 0; j < n; j++)
			for (int d = 0; d < D; d++)
				resid[(size_t)j * D + d] = ((double)zz[(size_t)j * D + d] -
							    cur[(size_t)j * D + d]) / (R - i);
		/* A = lambda C + K K^T; adj_j = A^-1 k_j */
#pragma omp parallel for schedule(static)
		for (int r = 0; r < M; r++)
			for (int q = 0; q < M; q++) {
				double v = p->mom2_weight * (double)stats[i].mom2[(size_t)r * M + q];
				for (int j = 0; j < n; j++)
					v += (double)ks[(size_t)j * M + r] * ks[(size_t)j * M + q];
				a[(size_t)r * M + q] = v;
			}
		if ((piv = chol_factor(a, M)) >= 0) {
			rc = not_pd(err, &stats[i], piv);
			goto cleanup;
		}
		for (int j = 0; j < n; j++) {
			for (int m = 0; m < M; m++)
				adj[(size_t)j * M + m] = ks[(size_t)j * M + m];
			chol_solve(a, M, adj + (size_t)j * M);
		}
		/* W[m][d] += sum_j adj_j[m] resid_j[d] */
#pragma omp parallel for schedule(static)
		for (int m = 0; m < M; m++)
			for (int d = 0; d < D; d++) {
				double v = 0.0;
				for (int j = 0; j < n; j++)
					v += adj[(size_t)j * M + m] * resid[(size_t)j * D + d];
				W[(size_t)m * D + d] += (float)v;
			}
	}
cleanup:
	free(ks);
	free(cur);
	free(delta);
	free(a);
	free(adj);
	free(resid);
	if (zz != z)
		free(zz);
	return rc;
}

void mb_rome_apply(const mb_engine_config *cfg, mb_engine_weights *w, int layer, const float *u,
		   const float *r)
{
	const int M = cfg->d_mlp, D = cfg->d_model;
	float *W = w->proj_w + (size_t)layer * M * D; /* (M, D) */

	for (int i = 0; i < M; i++)
		for (int j = 0; j < D; j++)
			W[(size_t)i * D + j] += u[i] * r[j];
}

void mb_rome_control(float *u_ctl, float *r_ctl, const float *u, const float *r, int M, int D,
		     mb_rng *rng)
{
	mb_rome_control_norm(u_ctl, r_ctl, norm_f(u, M) * norm_f(r, D), M, D, rng);
}

void mb_rome_control_norm(float *u_ctl, float *r_ctl, double target, int M, int D, mb_rng *rng)
{
	double nu, nr;

	for (int i = 0; i < M; i++)
		u_ctl[i] = (float)mb_rng_normal(rng);
	for (int j = 0; j < D; j++)
		r_ctl[j] = (float)mb_rng_normal(rng);
	nu = norm_f(u_ctl, M);
	nr = norm_f(r_ctl, D);
	for (int i = 0; i < M; i++)
		u_ctl[i] = (float)(u_ctl[i] / nu);
	for (int j = 0; j < D; j++)
		r_ctl[j] = (float)(r_ctl[j] * target / nr);
}

/* ---- ROME: context prefixes ------------------------------------------------- */

int mb_rome_prefixes(int32_t *out, mb_engine *e, int n, int len, int32_t first, int top_k,
		     uint64_t seed, mb_error *err)
{
	const mb_engine_config *c = mb_engine_cfg(e);
	const int V = c->n_vocab;
	mb_rng *rng = NULL;
	int *top = NULL;
	double *pr = NULL;
	int rc = 0;

	if (n < 1 || len < 1 || top_k < 1 || top_k > V || first >= V)
		return mb_error_set(err, MB_EINVALID, "ROME prefixes: n %d, len %d, top_k %d, first "
				    "%d (vocabulary %d)", n, len, top_k, (int)first, V);
	rng = malloc(sizeof(*rng) * (size_t)n);
	top = malloc(sizeof(int) * (size_t)top_k);
	pr = malloc(sizeof(double) * (size_t)top_k);
	if (!rng || !top || !pr) {
		rc = mb_error_oom(err, "ROME prefixes", sizeof(*rng) * (size_t)n);
		goto cleanup;
	}
	for (int i = 0; i < n; i++) {
		mb_rng_init_named(&rng[i], seed, "rome/prefix", (uint64_t)i);
		out[(size_t)i * len] = first >= 0 ? first : (int32_t)mb_rng_range(&rng[i], (uint64_t)V);
	}
	for (int t = 1; t < len; t++) {
		/* out is (n, len) with stride len: the run reads the first t of each row */
		int32_t *tok = malloc(sizeof(int32_t) * (size_t)n * t);
		if (!tok) {
			rc = mb_error_oom(err, "ROME prefixes", sizeof(int32_t) * (size_t)n * t);
			goto cleanup;
		}
		for (int i = 0; i < n; i++)
			memcpy(tok + (size_t)i * t, out + (size_t)i * len, sizeof(int32_t) * (size_t)t);
		mb_run run = {.batch = n, .seq = t, .tokens = tok, .logits = MB_LOGITS_LAST};
		rc = mb_engine_forward(e, &run, err);
		if (rc < 0) {
			free(tok);
			goto cleanup;
		}
		for (int i = 0; i < n; i++) {
			const float *z = mb_engine_logits_row(e, i, 0);
			double s = 0.0, u;
			int k;

			/* the top_k largest logits, ties to the lower id */
			for (k = 0; k < top_k; k++) {
				int best = -1;
				for (int v = 0; v < V; v++) {
					int used = 0;
					for (int q = 0; q < k && !used; q++)
						used = top[q] == v;
					if (!used && (best < 0 || z[v] > z[best]))
						best = v;
				}
				top[k] = best;
			}
			for (k = 0; k < top_k; k++)
				s += (pr[k] = mb_detmath_exp((double)z[top[k]] - z[top[0]]));
			u = mb_rng_uniform(&rng[i]) * s;
			for (k = 0; k < top_k - 1 && u >= pr[k]; k++)
				u -= pr[k];
			out[(size_t)i * len + t] = top[k];
		}
		free(tok);
	}
cleanup:
	free(rng);
	free(top);
	free(pr);
	return rc;
}
