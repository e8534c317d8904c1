/*
 * attribution.c: AtP, AtP*, EAP and EAP-IG on the engine's backward at hook
 * points, exact patching of every component through the effect layer, and
 * the agreement statistics (attribution.h).
 *
 * Legend: B batch, T positions, L layers, H heads, Dh d_head, D d_model,
 * M d_mlp, V vocab, N logit rows per item, S edge senders, R edge
 * receivers, C components.
 *
 * One batch (mb_attr_run):
 *   corrupted forward (cache c_corr)  -> M(corrupt)
 *   clean forward (cache c_clean, keep_activations) -> M(clean), dM/dlogits
 *   EAP: sender deltas (B, T, S, D) from the two caches
 *   backward (gradient cache c_grad; EAP receivers through callbacks that
 *   dot each receiver's input gradient with its senders' deltas)
 *   node scores = sum over valid positions of (corrupt - clean) . gradient
 *   AtP*: QK fix from the pattern gradient; GradDrop = L more forwards and
 *   backwards on a second engine whose layer l has W_O = W_proj = 0 and whose
 *   layer-l outputs are overwritten with the clean ones (so its activations
 *   are the clean run's bit for bit and no gradient crosses layer l)
 *   EAP-IG: m forwards with interpolated input embeddings, each a backward.
 */
#include <mechbench/attribution.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/backward.h>
#include <mechbench/detmath.h>
#include <mechbench/effect.h>
#include <mechbench/gemm.h>
#include <mechbench/hooks.h>
#include <mechbench/interventions.h>
#include <mechbench/logits.h>
#include <mechbench/rng.h>

/* ---- names ------------------------------------------------------------------ */

static const char *const method_names[] = {"atp", "atp-star", "eap", "eap-ig"};

const char *mb_attr_method_name(mb_attr_method m)
{
	MB_ASSERT((int)m >= 0 && (int)m < 4);
	return method_names[m];
}

int mb_attr_method_parse(mb_attr_method *out, const char *name, mb_error *err)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(name, method_names[i]) == 0) {
			*out = (mb_attr_method)i;
			return 0;
		}
	return mb_error_set(err, MB_EINVALID,
			    "attribution method '%s': expected atp, atp-star, eap or eap-ig", name);
}

/* ---- graph ------------------------------------------------------------------ */

static int has_mlp(const mb_engine_config *c)
{
	return !c->attn_only;
}

int mb_attr_n_senders(const mb_engine_config *c)
{
	return 1 + c->n_layer * (c->n_head + has_mlp(c));
}

int mb_attr_n_receivers(const mb_engine_config *c)
{
	return c->n_layer * (3 * c->n_head + has_mlp(c)) + 1;
}

int mb_attr_n_senders_of(const mb_engine_config *c, int r)
{
	int per = 3 * c->n_head + has_mlp(c), l = r / per, j = r % per;

	MB_ASSERT(r >= 0 && r < mb_attr_n_receivers(c));
	if (l == c->n_layer)
		return mb_attr_n_senders(c);
	/* heads of layer l read every sender below l; the MLP also reads layer l's heads */
	return 1 + l * (c->n_head + has_mlp(c)) + (j == 3 * c->n_head ? c->n_head : 0);
}

void mb_attr_sender_name(char *buf, size_t cap, const mb_engine_config *c, int s)
{
	int per = c->n_head + has_mlp(c);

	if (s == 0)
		snprintf(buf, cap, "in");
	else if ((s - 1) % per < c->n_head)
		snprintf(buf, cap, "a%d.%d", (s - 1) / per, (s - 1) % per);
	else
		snprintf(buf, cap, "m%d", (s - 1) / per);
}

void mb_attr_receiver_name(char *buf, size_t cap, const mb_engine_config *c, int r)
{
	int per = 3 * c->n_head + has_mlp(c), l = r / per, j = r % per;

	if (l == c->n_layer)
		snprintf(buf, cap, "out");
	else if (j < 3 * c->n_head)
		snprintf(buf, cap, "a%d.%d.%c", l, j % c->n_head, "qkv"[j / c->n_head]);
	else
		snprintf(buf, cap, "m%d", l);
}

int mb_attr_n_components(const mb_engine_config *c)
{
	return c->n_layer * c->n_head + (has_mlp(c) ? c->n_layer : 0);
}

void mb_attr_component_name(char *buf, size_t cap, const mb_engine_config *c, int i)
{
	int LH = c->n_layer * c->n_head;

	if (i < LH)
		snprintf(buf, cap, "a%d.%d", i / c->n_head, i % c->n_head);
	else
		snprintf(buf, cap, "m%d", i - LH);
}

void mb_attr_components(double *out, const mb_attr_scores *s)
{
	int L = s->n_layer, LH = L * s->n_head, C = LH + (s->mlp ? L : 0);

	for (int b = 0; b < s->batch; b++) {
		memcpy(out + (size_t)b * C, s->z + (size_t)b * LH, sizeof(double) * (size_t)LH);
		if (s->mlp)
			memcpy(out + (size_t)b * C + LH, s->mlp + (size_t)b * L,
			       sizeof(double) * (size_t)L);
	}
}

/* ---- scores ----------------------------------------------------------------- */

int mb_attr_scores_init(mb_attr_scores **out, const mb_engine_config *c, int B, int T, int edges,
			mb_error *err)
{
	mb_attr_scores *s = calloc(1, sizeof(*s));
	size_t LH = (size_t)c->n_layer * c->n_head, Bs = (size_t)B;
	int mlp = has_mlp(c);

	*out = NULL;
	if (!s)
		return mb_error_oom(err, "attribution scores", sizeof(*s));
	s->batch = B;
	s->n_layer = c->n_layer;
	s->n_head = c->n_head;
	s->d_mlp = mlp ? c->d_mlp : 0;
	s->seq = T;
	s->metric_clean = calloc(Bs, sizeof(double));
	s->metric_corrupt = calloc(Bs, sizeof(double));
	s->z = calloc(Bs * LH, sizeof(double));
	s->q = calloc(Bs * LH, sizeof(double));
	s->k = calloc(Bs * LH, sizeof(double));
	s->v = calloc(Bs * LH, sizeof(double));
	s->resid = calloc(Bs * c->n_layer * T, sizeof(double));
	if (mlp) {
		s->mlp = calloc(Bs * c->n_layer, sizeof(double));
		s->neuron = calloc(Bs * c->n_layer * c->d_mlp, sizeof(double));
	}
	if (edges) {
		s->n_senders = mb_attr_n_senders(c);
		s->n_receivers = mb_attr_n_receivers(c);
		s->edges = calloc(Bs * s->n_senders * s->n_receivers, sizeof(double));
	}
	if (!s->metric_clean || !s->metric_corrupt || !s->z || !s->q || !s->k || !s->v ||
	    !s->resid || (mlp && (!s->mlp || !s->neuron)) || (edges && !s->edges)) {
		mb_attr_scores_free(s);
		return mb_error_oom(err, "attribution scores", 0);
	}
	*out = s;
	return 0;
}

void mb_attr_scores_free(mb_attr_scores *s)
{
	if (!s)
		return;
	free(s->metric_clean);
	free(s->metric_corrupt);
	free(s->z);
	free(s->q);
	free(s->k);
	free(s->v);
	free(s->mlp);
	free(s->neuron);
	free(s->resid);
	free(s->edges);
	free(s);
}

static void scores_zero(mb_attr_scores *s)
{
	size_t B = (size_t)s->batch, L = (size_t)s->n_layer, LH = L * s->n_head;

	memset(s->z, 0, sizeof(double) * B * LH);
	memset(s->q, 0, sizeof(double) * B * LH);
	memset(s->k, 0, sizeof(double) * B * LH);
	memset(s->v, 0, sizeof(double) * B * LH);
	memset(s->resid, 0, sizeof(double) * B * L * s->seq);
	if (s->mlp) {
		memset(s->mlp, 0, sizeof(double) * B * L);
		memset(s->neuron, 0, sizeof(double) * B * L * s->d_mlp);
	}
	if (s->edges)
		memset(s->edges, 0, sizeof(double) * B * s->n_senders * s->n_receivers);
}

/* ---- metrics ---------------------------------------------------------------- */

/* dlogits row (V) += scale * (softmax(z) - onehot(target)), in double (detmath's
 * exp: the same bits on every CPU). */
static void ce_grad(float *d, const float *z, int V, int target, double scale)
{
	double mx = z[0], sum = 0;

	for (int v = 1; v < V; v++)
		if (z[v] > mx)
			mx = z[v];
	for (int v = 0; v < V; v++)
		sum += mb_detmath_exp((double)z[v] - mx);
	for (int v = 0; v < V; v++)
		d[v] += (float)(scale * (mb_detmath_exp((double)z[v] - mx) / sum - (v == target)));
}

int mb_attr_metric_span_loss(double *out, float *dlogits, const mb_engine *e, int B, void *payload,
			     mb_error *err)
{
	const mb_attr_span *sp = payload;
	int V = mb_engine_cfg(e)->n_vocab, N = mb_engine_logits_per_item(e);

	if (N != sp->seq)
		return mb_error_set(err, MB_EINVALID,
				    "span loss: the run has %d logit rows per item, needs %d (logits "
				    "mode ALL)", N, sp->seq);
	for (int b = 0; b < B; b++) {
		const int32_t *tok = sp->tokens + (size_t)b * sp->seq;
		int t0 = sp->t0[b], t1 = sp->t1[b];
		double sum = 0, n = t1 - t0 + 1;

		if (t0 < 1 || t1 < t0 || t1 >= sp->seq)
			return mb_error_set(err, MB_EINVALID, "span loss: item %d: span [%d, %d] "
					    "outside [1, %d)", b, t0, t1, sp->seq);
		for (int t = t0; t <= t1; t++) {
			const float *z = mb_engine_logits_row(e, b, t - 1);
			if (!z)
				return mb_error_set(err, MB_EINVALID, "span loss: item %d: no logits "
						    "at position %d", b, t - 1);
			sum += mb_logits_ce(NULL, z, V, tok[t], MB_LOGITS_LIBM);
			if (dlogits)
				ce_grad(dlogits + ((size_t)b * N + (size_t)(t - 1)) * V, z, V, tok[t],
					1.0 / n);
		}
		out[b] = sum / n;
	}
	return 0;
}

int mb_attr_metric_logit_diff(double *out, float *dlogits, const mb_engine *e, int B,
			      void *payload, mb_error *err)
{
	const mb_attr_logit_diff *ld = payload;
	int V = mb_engine_cfg(e)->n_vocab, N = mb_engine_logits_per_item(e);

	for (int b = 0; b < B; b++) {
		int row = N - 1;
		const float *z;

		if (ld->lengths && N > 1)
			row = ld->lengths[b] - 1;
		z = mb_engine_logits_row(e, b, row);
		if (!z || ld->good[b] < 0 || ld->good[b] >= V || ld->bad[b] < 0 || ld->bad[b] >= V)
			return mb_error_set(err, MB_EINVALID, "logit difference: item %d: no logits "
					    "row %d or a token outside [0, %d)", b, row, V);
		out[b] = mb_logits_diff(z, ld->good[b], ld->bad[b]);
		if (dlogits) {
			dlogits[((size_t)b * N + row) * V + ld->good[b]] += 1.0f;
			dlogits[((size_t)b * N + row) * V + ld->bad[b]] -= 1.0f;
		}
	}
	return 0;
}

/* ---- the workspace ---------------------------------------------------------- */

struct mb_attr {
	mb_engine *e;
	const mb_engine_config *cfg;
	mb_backward *bw;
	mb_hooks *h_clean, *h_corr, *h_grad, *h_fwd;
	mb_cache *c_clean, *c_corr, *c_grad;
	int cached_star, cached_eap; /* what the caches were built for */

	/* GradDrop: a second engine over weights that differ in W_O and W_proj */
	mb_engine *e_gd;
	mb_backward *bw_gd;
	mb_engine_weights w_gd;
	float *gd_o, *gd_proj; /* (L, D, D), (L, M, D) copies */
	int gd_B, gd_T;

	float *dlogits;        /* (B, N, V) */
	size_t dlogits_cap;

	/* EAP state for the gradient callbacks */
	mb_attr_scores *out;
	const int32_t *len;    /* (B) */
	int B, T, S;
	double weight;
	float *delta;          /* (B, T, S, D) sender output changes */
	float *gpost;          /* (B, T, D) gradient at resid_post of the layer being walked */
	float *gsum;           /* (B, T, D) parallel residual: sum of the split-input gradients */
	float *gtmp;           /* (B, T, D) */
	float *cbuf;           /* (B, H, S) sgemm outputs */
	size_t delta_cap, g_cap, cbuf_cap;

	/* EAP-IG's input interpolation */
	const mb_hook_tensor *ig_clean, *ig_corr;
	float ig_alpha;
	/* GradDrop's overwrite of layer l's outputs */
	const mb_hook_tensor *gd_attn, *gd_mlp;
};

static int grow(float **p, size_t *cap, size_t n, const char *what, mb_error *err)
{
	float *q;

	if (n <= *cap)
		return 0;
	q = realloc(*p, sizeof(float) * n);
	if (!q)
		return mb_error_oom(err, what, sizeof(float) * n);
	*p = q;
	*cap = n;
	return 0;
}

int mb_attr_init(mb_attr **out, mb_engine *e, mb_error *err)
{
	mb_attr *a = calloc(1, sizeof(*a));
	int rc;

	*out = NULL;
	if (!a)
		return mb_error_oom(err, "attribution workspace", sizeof(*a));
	a->e = e;
	a->cfg = mb_engine_cfg(e);
	a->cached_star = a->cached_eap = -1;
	if ((rc = mb_backward_init(&a->bw, e, err)) < 0 || (rc = mb_hooks_init(&a->h_clean, err)) < 0 ||
	    (rc = mb_hooks_init(&a->h_corr, err)) < 0 || (rc = mb_hooks_init(&a->h_grad, err)) < 0 ||
	    (rc = mb_hooks_init(&a->h_fwd, err)) < 0) {
		mb_attr_free(a);
		return rc;
	}
	*out = a;
	return 0;
}

void mb_attr_free(mb_attr *a)
{
	if (!a)
		return;
	mb_backward_free(a->bw);
	mb_backward_free(a->bw_gd);
	mb_engine_free(a->e_gd);
	mb_hooks_free(a->h_clean);
	mb_hooks_free(a->h_corr);
	mb_hooks_free(a->h_grad);
	mb_hooks_free(a->h_fwd);
	mb_cache_free(a->c_clean);
	mb_cache_free(a->c_corr);
	mb_cache_free(a->c_grad);
	free(a->gd_o);
	free(a->gd_proj);
	free(a->dlogits);
	free(a->delta);
	free(a->gpost);
	free(a->gsum);
	free(a->gtmp);
	free(a->cbuf);
	free(a);
}

static mb_hook_point hp(mb_hook_kind k, int l)
{
	mb_hook_point p = {k, l};
	return p;
}

static int eap_hook(const mb_hook_tensor *t, void *payload, mb_error *err);

/* (Re)builds the caches and the gradient registry for this method. */
static int setup_caches(mb_attr *a, int star, int eap, mb_error *err)
{
	const mb_engine_config *c = a->cfg;
	int L = c->n_layer, rot = c->pos == MB_POS_ROTARY, rc = 0;

	if (a->cached_star == star && a->cached_eap == eap)
		return 0;
	mb_cache_free(a->c_clean);
	mb_cache_free(a->c_corr);
	mb_cache_free(a->c_grad);
	a->c_clean = a->c_corr = a->c_grad = NULL;
	mb_hooks_clear(a->h_clean);
	mb_hooks_clear(a->h_corr);
	mb_hooks_clear(a->h_grad);
	if ((rc = mb_cache_init(&a->c_clean, err)) < 0 || (rc = mb_cache_init(&a->c_corr, err)) < 0 ||
	    (rc = mb_cache_init(&a->c_grad, err)) < 0)
		return rc;
	for (int l = 0; l < L && rc == 0; l++) {
		mb_hook_kind both[] = {MB_HOOK_RESID_PRE, MB_HOOK_Q, MB_HOOK_K, MB_HOOK_V, MB_HOOK_Z,
				       MB_HOOK_MLP_POST, MB_HOOK_MLP_OUT};
		int nb = has_mlp(c) ? 7 : 5;

		for (int i = 0; i < nb && rc == 0; i++) {
			rc = mb_cache_add(a->c_clean, hp(both[i], l), err);
			if (rc == 0)
				rc = mb_cache_add(a->c_corr, hp(both[i], l), err);
			if (rc == 0)
				rc = mb_cache_add(a->c_grad, hp(both[i], l), err);
		}
		if (rc == 0 && star) {
			/* the QK fix: scores from the (rotated) q and k, the clean pattern and
			 * its gradient; GradDrop: the clean layer outputs it writes back */
			mb_hook_kind qk[2] = {rot ? MB_HOOK_ROT_Q : MB_HOOK_Q, rot ? MB_HOOK_ROT_K : MB_HOOK_K};
			for (int i = 0; i < 2 && rc == 0; i++) {
				rc = mb_cache_add(a->c_clean, hp(qk[i], l), err);
				if (rc == 0)
					rc = mb_cache_add(a->c_corr, hp(qk[i], l), err);
			}
			if (rc == 0)
				rc = mb_cache_add(a->c_grad, hp(MB_HOOK_PATTERN, l), err);
			if (rc == 0)
				rc = mb_cache_add(a->c_clean, hp(MB_HOOK_ATTN_OUT, l), err);
		}
	}
	if (rc == 0 && (rc = mb_cache_attach(a->c_clean, a->h_clean, err)) == 0 &&
	    (rc = mb_cache_attach(a->c_corr, a->h_corr, err)) == 0)
		rc = mb_cache_attach(a->c_grad, a->h_grad, err);
	for (int l = 0; l < L && rc == 0 && eap; l++) {
		for (int X = 0; X < 3 && rc == 0; X++)
			rc = mb_hooks_add(a->h_grad, hp((mb_hook_kind)(MB_HOOK_Q_INPUT + X), l), eap_hook,
					  a, MB_HOOK_READONLY, err);
		if (rc == 0)
			rc = mb_hooks_add(a->h_grad, hp(MB_HOOK_RESID_POST, l), eap_hook, a,
					  MB_HOOK_READONLY, err);
		if (rc == 0 && has_mlp(c))
			rc = mb_hooks_add(a->h_grad,
					  hp(c->parallel ? MB_HOOK_RESID_PRE : MB_HOOK_RESID_MID, l),
					  eap_hook, a, MB_HOOK_READONLY, err);
	}
	if (rc < 0)
		return rc;
	a->cached_star = star;
	a->cached_eap = eap;
	return 0;
}

/* ---- node scores ------------------------------------------------------------ */

static const float *cdata(const mb_cache *c, mb_hook_kind k, int l)
{
	const mb_hook_tensor *t = mb_cache_get(c, hp(k, l));
	return t ? t->data : NULL;
}

/* sum over i < n of (x1[i] - x0[i]) g[i], in double. */
static double dot_diff(const float *x1, const float *x0, const float *g, int n)
{
	double s = 0;

	for (int i = 0; i < n; i++)
		s += ((double)x1[i] - (double)x0[i]) * (double)g[i];
	return s;
}

static void put(double *dst, double v, double w, int absval)
{
	*dst += w * (absval ? fabs(v) : v);
}

/* Causal softmax of row i of one head, scores scale * q_i . k_j (j <= i), into
 * p (i + 1), in double. qs/ks: stride between positions. */
static void softmax_row(double *p, const float *qi, const float *k, int ks, int i, int Dh,
			double scale)
{
	double mx = -INFINITY, sum = 0;

	for (int j = 0; j <= i; j++) {
		double s = 0;
		for (int d = 0; d < Dh; d++)
			s += (double)qi[d] * (double)k[(size_t)j * ks + d];
		p[j] = s * scale;
		if (p[j] > mx)
			mx = p[j];
	}
	for (int j = 0; j <= i; j++) {
		p[j] = mb_detmath_exp(p[j] - mx); /* the same bits on every CPU (detmath.h) */
		sum += p[j];
	}
	for (int j = 0; j <= i; j++)
		p[j] /= sum;
}

/*
 * Adds w * (|.| when absval) of each node's per-item score, with the
 * gradients of c_grad (a backward of the clean run, or a GradDrop / IG
 * variant of it), into out. qk: q and k nodes by the QK fix. drop: the layer
 * GradDrop cut (-1: none), whose MLP output, being that layer's own write to
 * the residual, gets no gradient (its heads' and neurons' gradients are
 * already 0 there: the cut engine has W_O = W_proj = 0).
 */
static int node_scores(mb_attr *a, mb_attr_scores *out, const mb_cache *grad, double w, int absval,
		       int qk, int drop, mb_error *err)
{
	const mb_engine_config *c = a->cfg;
	const mb_cache *c0 = a->c_clean, *c1 = a->c_corr;
	const int L = c->n_layer, H = c->n_head, Dh = c->d_head, D = c->d_model, B = a->B,
		  T = a->T, M = has_mlp(c) ? c->d_mlp : 0;
	const int rot = c->pos == MB_POS_ROTARY;
	const double scale = 1.0 / sqrt((double)Dh);
	double *prow = NULL;
	int oom = 0;

	for (int l = 0; l < L; l++) {
		if (!cdata(grad, MB_HOOK_Z, l) || !cdata(c0, MB_HOOK_Z, l) || !cdata(c1, MB_HOOK_Z, l) ||
		    (qk && !cdata(grad, MB_HOOK_PATTERN, l)))
			return mb_error_set(err, MB_EINVALID, "attribution: layer %d: a run did not "
					    "reach its hook points", l);
	}
	prow = malloc(sizeof(double) * (size_t)T * 2 * (size_t)B * L * H + 1);
	if (!prow)
		return mb_error_oom(err, "attribution softmax rows", 0);
#pragma omp parallel for schedule(dynamic, 1)
	for (int blh = 0; blh < B * L * H; blh++) {
		int b = blh / (L * H), l = (blh / H) % L, h = blh % H, len = a->len[b];
		size_t o = (size_t)blh;
		mb_hook_kind kinds[4] = {MB_HOOK_Z, MB_HOOK_Q, MB_HOOK_K, MB_HOOK_V};
		double *dst[4] = {out->z + o, out->q + o, out->k + o, out->v + o};

		for (int i = 0; i < 4; i++) {
			const float *x0 = cdata(c0, kinds[i], l), *x1 = cdata(c1, kinds[i], l),
				    *g = cdata(grad, kinds[i], l);
			double s = 0;
			if (qk && (i == 1 || i == 2))
				continue;
			for (int t = 0; t < len; t++) {
				size_t at = (((size_t)b * T + t) * H + h) * Dh;
				s += dot_diff(x1 + at, x0 + at, g + at, Dh);
			}
			put(dst[i], s, w, absval);
		}
		if (qk) {
			/* QK fix: exact pattern change of this head with its corrupted queries
			 * (keys), linear in the pattern: sum (A' - A) dM/dA */
			const float *q0 = cdata(c0, rot ? MB_HOOK_ROT_Q : MB_HOOK_Q, l),
				    *k0 = cdata(c0, rot ? MB_HOOK_ROT_K : MB_HOOK_K, l),
				    *q1 = cdata(c1, rot ? MB_HOOK_ROT_Q : MB_HOOK_Q, l),
				    *k1 = cdata(c1, rot ? MB_HOOK_ROT_K : MB_HOOK_K, l),
				    *gp = cdata(grad, MB_HOOK_PATTERN, l);
			double *p0 = prow + (size_t)blh * 2 * T, *p1 = p0 + T, sq = 0, sk = 0;
			size_t hb = ((size_t)b * T * H + h) * Dh; /* item b, head h, t = 0 */
			int ks = H * Dh;

			for (int t = 0; t < len; t++) {
				const float *grow_ = gp + (((size_t)b * H + h) * T + t) * T;
				size_t qi = hb + (size_t)t * ks;
				softmax_row(p0, q0 + qi, k0 + hb, ks, t, Dh, scale);
				softmax_row(p1, q1 + qi, k0 + hb, ks, t, Dh, scale);
				for (int j = 0; j <= t; j++)
					sq += (p1[j] - p0[j]) * (double)grow_[j];
				softmax_row(p1, q0 + qi, k1 + hb, ks, t, Dh, scale);
				for (int j = 0; j <= t; j++)
					sk += (p1[j] - p0[j]) * (double)grow_[j];
			}
			put(out->q + o, sq, w, absval);
			put(out->k + o, sk, w, absval);
		}
	}
	free(prow);
	oom = 0;
	/* MLPs, neurons, residual positions */
#pragma omp parallel for schedule(dynamic, 1) reduction(| : oom)
	for (int bl = 0; bl < B * L; bl++) {
		int b = bl / L, l = bl % L, len = a->len[b];
		const float *r0 = cdata(c0, MB_HOOK_RESID_PRE, l), *r1 = cdata(c1, MB_HOOK_RESID_PRE, l),
			    *gr = cdata(grad, MB_HOOK_RESID_PRE, l);

		for (int t = 0; t < len; t++) {
			size_t at = ((size_t)b * T + t) * D;
			put(out->resid + (size_t)bl * T + t, dot_diff(r1 + at, r0 + at, gr + at, D), w,
			    absval);
		}
		if (M) {
			const float *m0 = cdata(c0, MB_HOOK_MLP_OUT, l), *m1 = cdata(c1, MB_HOOK_MLP_OUT, l),
				    *gm = cdata(grad, MB_HOOK_MLP_OUT, l),
				    *n0 = cdata(c0, MB_HOOK_MLP_POST, l),
				    *n1 = cdata(c1, MB_HOOK_MLP_POST, l),
				    *gn = cdata(grad, MB_HOOK_MLP_POST, l);
			double s = 0;
			for (int t = 0; t < len; t++) {
				size_t at = ((size_t)b * T + t) * D;
				s += dot_diff(m1 + at, m0 + at, gm + at, D);
			}
			put(out->mlp + bl, l == drop ? 0.0 : s, w, absval);
			/* per neuron, the sum over t in order; rows walked contiguously */
			double *sn = calloc((size_t)M, sizeof(double));
			if (!sn) {
				oom = 1;
				continue;
			}
			for (int t = 0; t < len; t++) {
				size_t at = ((size_t)b * T + t) * M;
				for (int n = 0; n < M; n++)
					sn[n] += ((double)n1[at + n] - (double)n0[at + n]) * (double)gn[at + n];
			}
			for (int n = 0; n < M; n++)
				put(out->neuron + (size_t)bl * M + n, sn[n], w, absval);
			free(sn);
		}
	}
	return oom ? mb_error_oom(err, "neuron sums", sizeof(double) * (size_t)M) : 0;
}

/* ---- edges ------------------------------------------------------------------ */

/* EAP buffers for a batch of (B, T): deltas, receiver gradients, sgemm outputs. */
static int eap_buffers(mb_attr *a, mb_error *err)
{
	const mb_engine_config *c = a->cfg;
	size_t n = (size_t)a->B * a->T * c->d_model;
	int rc;

	if ((rc = grow(&a->delta, &a->delta_cap, n * a->S, "EAP sender deltas", err)) < 0 ||
	    (rc = grow(&a->cbuf, &a->cbuf_cap, (size_t)a->B * c->n_head * a->S, "EAP scratch",
		       err)) < 0)
		return rc;
	if (n > a->g_cap) {
		float *p[3];
		for (int i = 0; i < 3; i++)
			p[i] = malloc(sizeof(float) * n);
		if (!p[0] || !p[1] || !p[2]) {
			for (int i = 0; i < 3; i++)
				free(p[i]);
			return mb_error_oom(err, "EAP gradients", sizeof(float) * n * 3);
		}
		free(a->gpost);
		free(a->gsum);
		free(a->gtmp);
		a->gpost = p[0];
		a->gsum = p[1];
		a->gtmp = p[2];
		a->g_cap = n;
	}
	memset(a->gsum, 0, sizeof(float) * n);
	return 0;
}

/* Sender deltas (B, T, S, D) from the clean and corrupted caches: the input
 * embedding's, each head's output z_h W_O[h] and each MLP's. */
static void sender_deltas(mb_attr *a)
{
	const mb_engine_config *c = a->cfg;
	const mb_engine_weights *w = mb_engine_w(a->e);
	const int L = c->n_layer, H = c->n_head, Dh = c->d_head, D = c->d_model, B = a->B,
		  T = a->T, S = a->S, per = H + has_mlp(c);

	memset(a->delta, 0, sizeof(float) * (size_t)B * T * S * D);
#pragma omp parallel for schedule(dynamic, 1)
	for (int b = 0; b < B; b++) {
		int len = a->len[b];
		float *dz = a->gtmp + (size_t)b * T * D; /* (T, D) item b's change of z */
		const float *r0 = cdata(a->c_clean, MB_HOOK_RESID_PRE, 0),
			    *r1 = cdata(a->c_corr, MB_HOOK_RESID_PRE, 0);

		for (int t = 0; t < len; t++) {
			float *dst = a->delta + ((size_t)b * T + t) * S * D;
			size_t at = ((size_t)b * T + t) * D;
			for (int d = 0; d < D; d++)
				dst[d] = r1[at + d] - r0[at + d];
		}
		for (int l = 0; l < L; l++) {
			const float *z0 = cdata(a->c_clean, MB_HOOK_Z, l) + (size_t)b * T * D,
				    *z1 = cdata(a->c_corr, MB_HOOK_Z, l) + (size_t)b * T * D;
			const float *wo = w->o_w + (size_t)l * D * D;
			int s0 = 1 + l * per;

			for (size_t i = 0; i < (size_t)len * D; i++)
				dz[i] = z1[i] - z0[i];
			for (int h = 0; h < H; h++)
				/* (len, D) = dz[:, h] (len, Dh) W_O[h] (Dh, D), rows S D apart */
				mb_gemm_sgemm(0, 0, len, D, Dh, 1.0f, dz + (size_t)h * Dh, D,
					      wo + (size_t)h * Dh * D, D,
					      a->delta + ((size_t)b * T * S + s0 + h) * D, S * D);
			if (has_mlp(c)) {
				const float *m0 = cdata(a->c_clean, MB_HOOK_MLP_OUT, l),
					    *m1 = cdata(a->c_corr, MB_HOOK_MLP_OUT, l);
				for (int t = 0; t < len; t++) {
					float *dst = a->delta + (((size_t)b * T + t) * S + s0 + H) * D;
					size_t at = ((size_t)b * T + t) * D;
					for (int d = 0; d < D; d++)
						dst[d] = m1[at + d] - m0[at + d];
				}
			}
		}
	}
}

/* edges[b, r0 + i, s] += weight * sum_t g[b, t, i, :] . delta[b, t, s, :] for
 * i < nr receivers (rows of g at each position, D apart; g_t = stride between
 * positions), s < ns senders. */
static void receiver_dots(mb_attr *a, const float *g, size_t g_t, int nr, int r0, int ns)
{
	const int B = a->B, T = a->T, S = a->S, D = a->cfg->d_model, R = a->out->n_receivers;

#pragma omp parallel for schedule(dynamic, 1)
	for (int b = 0; b < B; b++) {
		float *cb = a->cbuf + (size_t)b * a->cfg->n_head * S;
		double *dst = a->out->edges + ((size_t)b * R + r0) * S;

		for (int t = 0; t < a->len[b]; t++) {
			/* cb (nr, ns) = g rows (nr, D) delta^T (D, ns) */
			mb_gemm_sgemm(0, 1, nr, ns, D, 1.0f, g + ((size_t)b * T + t) * g_t, D,
				      a->delta + ((size_t)b * T + t) * S * D, D, cb, ns);
			for (int i = 0; i < nr; i++)
				for (int s = 0; s < ns; s++)
					dst[(size_t)i * S + s] += a->weight * (double)cb[(size_t)i * ns + s];
		}
	}
}

/* Gradient callback of the EAP receivers (see the legend at the top). */
static int eap_hook(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	mb_attr *a = payload;
	const mb_engine_config *c = a->cfg;
	const int H = c->n_head, D = c->d_model, l = t->point.layer, per = 3 * H + has_mlp(c);
	const size_t n = (size_t)a->B * a->T * D;

	(void)err;
	switch (t->point.kind) {
	case MB_HOOK_RESID_POST:
		if (l == c->n_layer - 1)
			receiver_dots(a, t->data, D, 1, mb_attr_n_receivers(c) - 1, a->S);
		memcpy(a->gpost, t->data, sizeof(float) * n);
		memset(a->gsum, 0, sizeof(float) * n);
		return 0;
	case MB_HOOK_Q_INPUT:
	case MB_HOOK_K_INPUT:
	case MB_HOOK_V_INPUT: {
		int X = (int)(t->point.kind - MB_HOOK_Q_INPUT), r0 = l * per + X * H;
		receiver_dots(a, t->data, (size_t)H * D, H, r0, mb_attr_n_senders_of(c, r0));
		if (c->parallel)
			for (size_t i = 0; i < n; i++)
				for (int h = 0; h < H; h++)
					a->gsum[i] += t->data[(i / D * H + h) * D + i % D];
		return 0;
	}
	case MB_HOOK_RESID_MID:
	case MB_HOOK_RESID_PRE: {
		/* the MLP's input gradient through its own branch only */
		int r = l * per + 3 * H;
		for (size_t i = 0; i < n; i++)
			a->gtmp[i] = t->data[i] - a->gpost[i] - a->gsum[i];
		receiver_dots(a, a->gtmp, D, 1, r, mb_attr_n_senders_of(c, r));
		return 0;
	}
	default:
		return 0;
	}
}

/* ---- runs ------------------------------------------------------------------- */

static mb_run make_run(const mb_attr_batch *ab, const int32_t *tokens, const mb_hooks *h)
{
	mb_run r = {0};

	r.batch = ab->batch;
	r.seq = ab->seq;
	r.tokens = tokens;
	r.lengths = ab->lengths;
	r.hooks = h;
	r.logits = ab->logits;
	r.n_positions = ab->n_positions;
	r.positions = ab->positions;
	return r;
}

/* The metric of e's last run into values and dM/dlogits into a->dlogits. */
static int metric_grad(mb_attr *a, double *values, const mb_engine *e, const mb_attr_batch *ab,
		       mb_error *err)
{
	size_t n = (size_t)ab->batch * mb_engine_logits_per_item(e) * a->cfg->n_vocab;
	int rc = grow(&a->dlogits, &a->dlogits_cap, n ? n : 1, "metric gradient", err);

	if (rc < 0)
		return rc;
	memset(a->dlogits, 0, sizeof(float) * n);
	if ((rc = ab->metric(values, a->dlogits, e, ab->batch, ab->payload, err)) < 0)
		return rc;
	for (int b = 0; b < ab->batch; b++)
		if (!isfinite(values[b]))
			return mb_error_set(err, MB_EINVALID, "attribution: item %d: the metric is "
					    "not finite", b);
	return 0;
}

/* Forward hook: blocks.0.hook_resid_pre = corrupt + alpha (clean - corrupt). */
static int ig_hook(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	const mb_attr *a = payload;
	const float *x0 = a->ig_clean->data, *x1 = a->ig_corr->data;

	(void)err;
	for (size_t i = 0; i < t->numel; i++)
		t->data[i] = x1[i] + a->ig_alpha * (x0[i] - x1[i]);
	return 0;
}

/* Forward hook: layer l's attn_out / mlp_out = the clean run's. */
static int gd_hook(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	const mb_attr *a = payload;
	const mb_hook_tensor *src = t->point.kind == MB_HOOK_ATTN_OUT ? a->gd_attn : a->gd_mlp;

	(void)err;
	memcpy(t->data, src->data, sizeof(float) * t->numel);
	return 0;
}

/* The GradDrop engine for runs of (B, T). */
static int gd_setup(mb_attr *a, int B, int T, mb_error *err)
{
	const mb_engine_config *c = a->cfg;
	const mb_engine_weights *w = mb_engine_w(a->e);
	size_t no = (size_t)c->n_layer * c->d_model * c->d_model;
	size_t np = has_mlp(c) ? (size_t)c->n_layer * c->d_mlp * c->d_model : 0;
	mb_engine_opts eo = {B, T, 1};
	int rc;

	if (a->e_gd && B <= a->gd_B && T <= a->gd_T)
		return 0;
	mb_backward_free(a->bw_gd);
	mb_engine_free(a->e_gd);
	a->bw_gd = NULL;
	a->e_gd = NULL;
	if (!a->gd_o) {
		a->gd_o = malloc(sizeof(float) * no);
		a->gd_proj = np ? malloc(sizeof(float) * np) : NULL;
		if (!a->gd_o || (np && !a->gd_proj))
			return mb_error_oom(err, "GradDrop weights", sizeof(float) * (no + np));
		memcpy(a->gd_o, w->o_w, sizeof(float) * no);
		if (np)
			memcpy(a->gd_proj, w->proj_w, sizeof(float) * np);
	}
	a->w_gd = *w;
	a->w_gd.o_w = a->gd_o;
	if (np)
		a->w_gd.proj_w = a->gd_proj;
	if ((rc = mb_engine_init(&a->e_gd, c, &a->w_gd, &eo, err)) < 0 ||
	    (rc = mb_backward_init(&a->bw_gd, a->e_gd, err)) < 0)
		return rc;
	a->gd_B = B;
	a->gd_T = T;
	return 0;
}

/* Zeroes (on) or restores (off) layer l's W_O and W_proj in the GradDrop copies. */
static void gd_layer(mb_attr *a, int l, int on)
{
	const mb_engine_config *c = a->cfg;
	const mb_engine_weights *w = mb_engine_w(a->e);
	size_t no = (size_t)c->d_model * c->d_model, np = (size_t)c->d_mlp * c->d_model;

	if (on)
		memset(a->gd_o + l * no, 0, sizeof(float) * no);
	else
		memcpy(a->gd_o + l * no, w->o_w + l * no, sizeof(float) * no);
	if (has_mlp(c)) {
		if (on)
			memset(a->gd_proj + l * np, 0, sizeof(float) * np);
		else
			memcpy(a->gd_proj + l * np, w->proj_w + l * np, sizeof(float) * np);
	}
}

static int grad_drop(mb_attr *a, mb_attr_scores *out, const mb_attr_batch *ab, int qk,
		     mb_error *err)
{
	const mb_engine_config *c = a->cfg;
	const int L = c->n_layer;
	mb_run run = make_run(ab, ab->clean, a->h_fwd);
	int rc;

	if ((rc = gd_setup(a, ab->batch, ab->seq, err)) < 0)
		return rc;
	scores_zero(out);
	for (int l = 0; l < L; l++) {
		a->gd_attn = mb_cache_get(a->c_clean, hp(MB_HOOK_ATTN_OUT, l));
		a->gd_mlp = has_mlp(c) ? mb_cache_get(a->c_clean, hp(MB_HOOK_MLP_OUT, l)) : NULL;
		mb_hooks_clear(a->h_fwd);
		gd_layer(a, l, 1);
		rc = mb_hooks_add(a->h_fwd, hp(MB_HOOK_ATTN_OUT, l), gd_hook, a, 0, err);
		if (rc == 0 && has_mlp(c))
			rc = mb_hooks_add(a->h_fwd, hp(MB_HOOK_MLP_OUT, l), gd_hook, a, 0, err);
		if (rc == 0)
			rc = mb_engine_forward(a->e_gd, &run, err);
		if (rc == 0)
			rc = mb_backward_set_dlogits(a->bw_gd, a->dlogits, err);
		if (rc == 0)
			rc = mb_backward_run(a->bw_gd, &run, NULL, a->h_grad, err);
		gd_layer(a, l, 0);
		if (rc == 0)
			rc = node_scores(a, out, a->c_grad, 1.0 / (L - 1), 1, qk, l, err);
		if (rc < 0)
			return mb_error_prefix(err, "GradDrop layer %d", l);
	}
	mb_hooks_clear(a->h_fwd);
	return 0;
}

int mb_attr_run(mb_attr_scores *out, mb_attr *a, const mb_attr_batch *ab, const mb_attr_opts *o,
		mb_error *err)
{
	const mb_engine_config *c = a->cfg;
	int star = o->method == MB_ATTR_ATP_STAR, ig = o->method == MB_ATTR_EAP_IG;
	int eap = o->method == MB_ATTR_EAP || ig;
	int qk = star && !o->no_qk_fix, gd = star && !o->no_grad_drop;
	int steps = o->ig_steps > 0 ? o->ig_steps : 5;
	int32_t *len = NULL;
	mb_run run;
	int rc;

	if (out->batch != ab->batch || out->seq != ab->seq || out->n_layer != c->n_layer ||
	    out->n_head != c->n_head || (eap && !out->edges))
		return mb_error_set(err, MB_EINVALID, "attribution: scores for %d x %d%s, the batch "
				    "is %d x %d", out->batch, out->seq, out->edges ? " with edges" : "",
				    ab->batch, ab->seq);
	len = malloc(sizeof(int32_t) * (size_t)ab->batch);
	if (!len)
		return mb_error_oom(err, "lengths", 0);
	for (int b = 0; b < ab->batch; b++)
		len[b] = ab->lengths ? ab->lengths[b] : ab->seq;
	a->len = len;
	a->B = ab->batch;
	a->T = ab->seq;
	a->S = mb_attr_n_senders(c);
	a->out = out;
	a->weight = 1.0;
	scores_zero(out);
	if ((rc = setup_caches(a, star, eap, err)) < 0)
		goto cleanup;
	/* corrupted, then clean (the backward differentiates the last forward) */
	run = make_run(ab, ab->corrupt, a->h_corr);
	if ((rc = mb_engine_forward(a->e, &run, err)) < 0 ||
	    (rc = ab->metric(out->metric_corrupt, NULL, a->e, ab->batch, ab->payload, err)) < 0) {
		mb_error_prefix(err, "corrupted run");
		goto cleanup;
	}
	run = make_run(ab, ab->clean, a->h_clean);
	if ((rc = mb_engine_forward(a->e, &run, err)) < 0 ||
	    (rc = metric_grad(a, out->metric_clean, a->e, ab, err)) < 0) {
		mb_error_prefix(err, "clean run");
		goto cleanup;
	}
	if (eap) {
		if ((rc = eap_buffers(a, err)) < 0)
			goto cleanup;
		sender_deltas(a);
	}
	if (!ig) {
		if ((rc = mb_backward_set_dlogits(a->bw, a->dlogits, err)) < 0 ||
		    (rc = mb_backward_run(a->bw, &run, NULL, a->h_grad, err)) < 0 ||
		    (rc = node_scores(a, out, a->c_grad, 1.0, 0, qk, -1, err)) < 0)
			goto cleanup;
		if (gd && c->n_layer >= 2) {
			rc = grad_drop(a, out, ab, qk, err);
		} else if (gd) {
			size_t nn = (size_t)ab->batch * c->n_layer * c->n_head;
			for (size_t i = 0; i < nn; i++) {
				out->z[i] = fabs(out->z[i]);
				out->q[i] = fabs(out->q[i]);
				out->k[i] = fabs(out->k[i]);
				out->v[i] = fabs(out->v[i]);
			}
			for (size_t i = 0; i < (size_t)ab->batch * c->n_layer * ab->seq; i++)
				out->resid[i] = fabs(out->resid[i]);
			for (size_t i = 0; out->mlp && i < (size_t)ab->batch * c->n_layer; i++)
				out->mlp[i] = fabs(out->mlp[i]);
			for (size_t i = 0; out->neuron && i < (size_t)ab->batch * c->n_layer * c->d_mlp;
			     i++)
				out->neuron[i] = fabs(out->neuron[i]);
		}
		goto cleanup;
	}
	/* EAP-IG: the clean run's caches stay; each step interpolates the input */
	{
		double *vals = malloc(sizeof(double) * (size_t)ab->batch);
		a->ig_clean = mb_cache_get(a->c_clean, hp(MB_HOOK_RESID_PRE, 0));
		a->ig_corr = mb_cache_get(a->c_corr, hp(MB_HOOK_RESID_PRE, 0));
		a->weight = 1.0 / steps;
		mb_hooks_clear(a->h_fwd);
		if (!vals) {
			rc = mb_error_oom(err, "metric values", 0);
			goto cleanup;
		}
		rc = mb_hooks_add(a->h_fwd, hp(MB_HOOK_RESID_PRE, 0), ig_hook, a, 0, err);
		for (int k = 1; k <= steps && rc == 0; k++) {
			run = make_run(ab, ab->clean, a->h_fwd);
			a->ig_alpha = (float)k / (float)steps;
			if ((rc = mb_engine_forward(a->e, &run, err)) == 0 &&
			    (rc = metric_grad(a, vals, a->e, ab, err)) == 0 &&
			    (rc = mb_backward_set_dlogits(a->bw, a->dlogits, err)) == 0 &&
			    (rc = mb_backward_run(a->bw, &run, NULL, a->h_grad, err)) == 0)
				rc = node_scores(a, out, a->c_grad, a->weight, 0, 0, -1, err);
			if (rc < 0)
				mb_error_prefix(err, "EAP-IG step %d", k);
		}
		mb_hooks_clear(a->h_fwd);
		free(vals);
	}

cleanup:
	free(len);
	a->len = NULL;
	a->out = NULL;
	return rc;
}

/* ---- exact patching ----------------------------------------------------------- */

static int effect_metric(double *out, const mb_engine *e, int B, void *payload, mb_error *err)
{
	const mb_attr_batch *ab = payload;
	return ab->metric(out, NULL, e, B, ab->payload, err);
}

int mb_attr_exact(double *out, mb_engine *e, const mb_attr_batch *ab, mb_error *err)
{
	const mb_engine_config *c = mb_engine_cfg(e);
	const int L = c->n_layer, H = c->n_head, B = ab->batch, C = mb_attr_n_components(c);
	mb_effect *fx = NULL;
	mb_hook_point *pts = NULL;
	double *sweep = NULL, *eff = NULL;
	mb_effect_heads how = {NULL, NULL, NULL, 0};
	mb_run clean = make_run(ab, ab->clean, NULL), corr = make_run(ab, ab->corrupt, NULL);
	int np = 0, rc;

	pts = malloc(sizeof(*pts) * 2 * (size_t)L);
	sweep = malloc(sizeof(double) * (size_t)L * H * B);
	eff = malloc(sizeof(double) * (size_t)B);
	if (!pts || !sweep || !eff) {
		rc = mb_error_oom(err, "exact patching", 0);
		goto cleanup;
	}
	for (int l = 0; l < L; l++) {
		pts[np++] = hp(MB_HOOK_Z, l);
		if (has_mlp(c))
			pts[np++] = hp(MB_HOOK_MLP_OUT, l);
	}
	if ((rc = mb_effect_init(&fx, e, effect_metric, (void *)ab, err)) < 0 ||
	    (rc = mb_effect_cache_restart(fx, err)) < 0 || (rc = mb_effect_clean(fx, &clean, err)) < 0 ||
	    (rc = mb_effect_source(fx, 0, &corr, pts, np, NULL, err)) < 0 ||
	    (rc = mb_effect_head_sweep(sweep, fx, NULL, &how, 1, err)) < 0)
		goto cleanup;
	for (int b = 0; b < B; b++)
		for (int i = 0; i < L * H; i++)
			out[(size_t)b * C + i] = sweep[(size_t)i * B + b];
	for (int l = 0; l < L && has_mlp(c); l++) {
		mb_iv_spec spec = {0};
		mb_effect_arm arm = {0};

		spec.point = hp(MB_HOOK_MLP_OUT, l);
		spec.unit = -1;
		spec.op = MB_IV_PATCH;
		spec.source = mb_effect_source_get(fx, 0, spec.point);
		arm.iv = &spec;
		arm.n_iv = 1;
		arm.start_layer = l;
		arm.start_z = 1;
		if ((rc = mb_effect_run_arm(eff, NULL, fx, &arm, err)) < 0) {
			mb_error_prefix(err, "exact patching of m%d", l);
			goto cleanup;
		}
		for (int b = 0; b < B; b++)
			out[(size_t)b * C + L * H + l] = eff[b];
	}

cleanup:
	mb_effect_free(fx);
	free(pts);
	free(sweep);
	free(eff);
	return rc;
}

int mb_attr_exact_qk(double *out, mb_engine *e, const mb_attr_batch *ab, mb_error *err)
{
	const mb_engine_config *c = mb_engine_cfg(e);
	const int L = c->n_layer, H = c->n_head, B = ab->batch;
	mb_effect *fx = NULL;
	mb_hook_point *pts = malloc(sizeof(mb_hook_point) * 2 * (size_t)L);
	double *eff = malloc(sizeof(double) * (size_t)B);
	mb_run clean = make_run(ab, ab->clean, NULL), corr = make_run(ab, ab->corrupt, NULL);
	int rc;

	if (!pts || !eff) {
		rc = mb_error_oom(err, "exact q/k patching", 0);
		goto cleanup;
	}
	for (int l = 0; l < L; l++) {
		pts[2 * l] = hp(MB_HOOK_Q, l);
		pts[2 * l + 1] = hp(MB_HOOK_K, l);
	}
	if ((rc = mb_effect_init(&fx, e, effect_metric, (void *)ab, err)) < 0 ||
	    (rc = mb_effect_cache_restart(fx, err)) < 0 || (rc = mb_effect_clean(fx, &clean, err)) < 0 ||
	    (rc = mb_effect_source(fx, 0, &corr, pts, 2 * L, NULL, err)) < 0)
		goto cleanup;
	for (int X = 0; X < 2; X++)
		for (int l = 0; l < L; l++)
			for (int h = 0; h < H; h++) {
				mb_iv_spec spec = {0};
				mb_effect_arm arm = {0};

				spec.point = pts[2 * l + X];
				spec.unit = h;
				spec.op = MB_IV_PATCH;
				spec.source = mb_effect_source_get(fx, 0, spec.point);
				arm.iv = &spec;
				arm.n_iv = 1;
				arm.start_layer = l;
				if ((rc = mb_effect_run_arm(eff, NULL, fx, &arm, err)) < 0) {
					mb_error_prefix(err, "exact patching of a%d.%d.%c", l, h, "qk"[X]);
					goto cleanup;
				}
				for (int b = 0; b < B; b++)
					out[(((size_t)b * 2 + X) * L + l) * H + h] = eff[b];
			}

cleanup:
	mb_effect_free(fx);
	free(pts);
	free(eff);
	return rc;
}

/* An effect hook adding sign * delta (B, T, D) to a residual point (head <
 * 0) or to head `head`'s slice of a (B, T, H, D) hook_{q,k,v}_input. */
typedef struct edge_add {
	const float *delta;
	float sign;
	int head;
} edge_add;

static int edge_add_hook(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	const edge_add *ea = payload;

	(void)err;
	if (ea->head < 0) {
		for (size_t i = 0; i < t->numel; i++)
			t->data[i] += ea->sign * ea->delta[i];
		return 0;
	}
	{
		const size_t H = (size_t)t->shape[2], D = (size_t)t->shape[3];
		for (size_t bt = 0; bt < (size_t)t->batch * t->seq; bt++)
			for (size_t d = 0; d < D; d++)
				t->data[(bt * H + (size_t)ea->head) * D + d] +=
					ea->sign * ea->delta[bt * D + d];
	}
	return 0;
}

int mb_attr_exact_edges(double *out, mb_attr *a, const mb_attr_batch *ab, mb_error *err)
{
	const mb_engine_config *c = a->cfg;
	const int L = c->n_layer, H = c->n_head, D = c->d_model, B = ab->batch, T = ab->seq;
	const int S = mb_attr_n_senders(c), R = mb_attr_n_receivers(c), per = 3 * H + has_mlp(c);
	mb_effect *fx = NULL;
	float *delta = NULL;
	double *eff = NULL;
	int32_t *len = NULL;
	mb_run clean = make_run(ab, ab->clean, NULL), run;
	int rc;

	if (has_mlp(c) && c->parallel)
		return mb_error_set(err, MB_EINVALID, "exact edge patching: an MLP's own input "
				    "needs a sequential residual (this model is parallel)");
	len = malloc(sizeof(int32_t) * (size_t)B);
	delta = malloc(sizeof(float) * (size_t)B * T * D);
	eff = malloc(sizeof(double) * (size_t)B);
	if (!len || !delta || !eff) {
		rc = mb_error_oom(err, "exact edge patching", 0);
		goto cleanup;
	}
	for (int b = 0; b < B; b++)
		len[b] = ab->lengths ? ab->lengths[b] : T;
	a->len = len;
	a->B = B;
	a->T = T;
	a->S = S;
	memset(out, 0, sizeof(double) * (size_t)B * R * S);
	/* the senders' deltas from a corrupted and a clean run, as EAP takes them */
	if ((rc = setup_caches(a, 0, 1, err)) < 0)
		goto cleanup;
	run = make_run(ab, ab->corrupt, a->h_corr);
	if ((rc = mb_engine_forward(a->e, &run, err)) < 0) {
		mb_error_prefix(err, "corrupted run");
		goto cleanup;
	}
	run = make_run(ab, ab->clean, a->h_clean);
	if ((rc = mb_engine_forward(a->e, &run, err)) < 0) {
		mb_error_prefix(err, "clean run");
		goto cleanup;
	}
	if ((rc = eap_buffers(a, err)) < 0)
		goto cleanup;
	sender_deltas(a);
	if ((rc = mb_effect_init(&fx, a->e, effect_metric, (void *)ab, err)) < 0 ||
	    (rc = mb_effect_cache_restart(fx, err)) < 0 || (rc = mb_effect_clean(fx, &clean, err)) < 0)
		goto cleanup;
	for (int r = 0; r < R; r++) {
		int l = r < L * per ? r / per : L - 1, i = r % per;
		for (int s = 0; s < mb_attr_n_senders_of(c, r); s++) {
			mb_effect_arm arm = {0};
			mb_effect_path path;
			mb_effect_hook hk[2];
			edge_add plus = {delta, 1.0f, -1}, minus = {delta, -1.0f, -1};
			char name[32];

			for (size_t bt = 0; bt < (size_t)B * T; bt++)
				memcpy(delta + bt * D, a->delta + (bt * S + s) * D, sizeof(float) * D);
			if (r == R - 1) { /* the logits: the final residual */
				hk[0] = (mb_effect_hook){hp(MB_HOOK_RESID_POST, L - 1), edge_add_hook, &plus};
				arm.hooks = hk;
				arm.n_hooks = 1;
				arm.start_layer = L - 1;
				arm.start_z = 1;
			} else if (i == 3 * H) { /* the MLP's input, its branch only */
				hk[0] = (mb_effect_hook){hp(MB_HOOK_RESID_MID, l), edge_add_hook, &plus};
				hk[1] = (mb_effect_hook){hp(MB_HOOK_MLP_OUT, l), edge_add_hook, &minus};
				arm.hooks = hk;
				arm.n_hooks = 2;
				arm.start_layer = l;
				arm.start_z = 1;
			} else if (l == 0) { /* below any path: the input embedding's edges */
				plus.head = i % H;
				hk[0] = (mb_effect_hook){hp((mb_hook_kind)(MB_HOOK_Q_INPUT + i / H), 0),
							 edge_add_hook, &plus};
				arm.hooks = hk;
				arm.n_hooks = 1;
			} else {
				path = (mb_effect_path){l, i % H, i / H, delta};
				arm.path = &path;
			}
			if ((rc = mb_effect_run_arm(eff, NULL, fx, &arm, err)) < 0) {
				mb_attr_sender_name(name, sizeof(name), c, s);
				mb_error_prefix(err, "exact patching of edge %s ->", name);
				goto cleanup;
			}
			for (int b = 0; b < B; b++)
				out[((size_t)b * R + r) * S + s] = eff[b];
		}
	}

cleanup:
	mb_effect_free(fx);
	free(len);
	free(delta);
	free(eff);
	a->len = NULL;
	return rc;
}

/* ---- agreement ---------------------------------------------------------------- */

typedef struct ranked {
	double v;
	int i;
} ranked;

static int cmp_ranked(const void *x, const void *y)
{
	const ranked *a = x, *b = y;
	if (a->v != b->v)
		return a->v < b->v ? -1 : 1;
	return a->i - b->i;
}

/* Average ranks (1-based) of x (n) into r; scratch (n). */
static void ranks(double *r, const double *x, int n, ranked *scratch)
{
	for (int i = 0; i < n; i++) {
		scratch[i].v = x[i];
		scratch[i].i = i;
	}
	qsort(scratch, (size_t)n, sizeof(*scratch), cmp_ranked);
	for (int i = 0; i < n;) {
		int j = i;
		while (j + 1 < n && scratch[j + 1].v == scratch[i].v)
			j++;
		for (int k = i; k <= j; k++)
			r[scratch[k].i] = 0.5 * (i + j) + 1;
		i = j + 1;
	}
}

static double pearson(const double *x, const double *y, int n)
{
	double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;

	for (int i = 0; i < n; i++) {
		mx += x[i];
		my += y[i];
	}
	mx /= n;
	my /= n;
	for (int i = 0; i < n; i++) {
		sxy += (x[i] - mx) * (y[i] - my);
		sxx += (x[i] - mx) * (x[i] - mx);
		syy += (y[i] - my) * (y[i] - my);
	}
	return sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : NAN;
}

double mb_attr_spearman(const double *x, const double *y, int n)
{
	double *rx = malloc(sizeof(double) * (size_t)n * 2);
	ranked *sc = malloc(sizeof(ranked) * (size_t)n);
	double r = NAN;

	if (rx && sc && n >= 2) {
		ranks(rx, x, n, sc);
		ranks(rx + n, y, n, sc);
		r = pearson(rx, rx + n, n);
	}
	free(rx);
	free(sc);
	return r;
}

void mb_attr_topk(int *idx, const double *score, int C, int k)
{
	ranked *sc = malloc(sizeof(ranked) * (size_t)C);

	MB_ASSERT(sc && k <= C);
	for (int i = 0; i < C; i++) {
		sc[i].v = -fabs(score[i]);
		sc[i].i = i;
	}
	qsort(sc, (size_t)C, sizeof(*sc), cmp_ranked);
	for (int i = 0; i < k; i++)
		idx[i] = sc[i].i;
	free(sc);
}

int mb_attr_circuit_size(const double *mean_exact, int C, double frac)
{
	double mx = 0;
	int k = 0;

	for (int i = 0; i < C; i++)
		if (fabs(mean_exact[i]) > mx)
			mx = fabs(mean_exact[i]);
	for (int i = 0; i < C; i++)
		if (fabs(mean_exact[i]) >= frac * mx && mx > 0)
			k++;
	return k > 0 ? k : 1;
}

/* Statistics of one (re)sample: item weights cnt (B) -> means -> stats. */
static void agree_once(double st[3], const double *approx, const double *exact,
		       const uint8_t *truth, const int *cnt, int B, int C, int k, int use_abs,
		       double *ma, double *me, int *ia, int *ie)
{
	int n = 0, hit = 0, nref = 0;

	for (int c = 0; c < C; c++)
		ma[c] = me[c] = 0;
	for (int b = 0; b < B; b++) {
		if (!cnt[b])
			continue;
		n += cnt[b];
		for (int c = 0; c < C; c++) {
			ma[c] += cnt[b] * approx[(size_t)b * C + c];
			if (exact)
				me[c] += cnt[b] * exact[(size_t)b * C + c];
		}
	}
	for (int c = 0; c < C; c++) {
		ma[c] /= n;
		me[c] /= n;
		if (use_abs) {
			ma[c] = fabs(ma[c]);
			me[c] = fabs(me[c]);
		}
	}
	st[0] = exact ? mb_attr_spearman(ma, me, C) : NAN;
	mb_attr_topk(ia, ma, C, k);
	if (truth) {
		for (int c = 0; c < C; c++)
			nref += truth[c] != 0;
		for (int i = 0; i < k; i++)
			hit += truth[ia[i]] != 0;
	} else {
		mb_attr_topk(ie, me, C, k);
		nref = k;
		for (int i = 0; i < k; i++)
			for (int j = 0; j < k; j++)
				hit += ia[i] == ie[j];
	}
	st[1] = (double)hit / k;
	st[2] = nref ? (double)hit / nref : NAN;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return (a > b) - (a < b);
}

/* Type-7 quantile of the finite values of v (n, sorted in place). */
static double quantile7(double *v, int n, double p)
{
	int m = 0;
	double h;

	for (int i = 0; i < n; i++)
		if (isfinite(v[i]))
			v[m++] = v[i];
	if (m == 0)
		return NAN;
	qsort(v, (size_t)m, sizeof(double), cmp_double);
	h = (m - 1) * p;
	return v[(int)h] + (h - (int)h) * ((int)h + 1 < m ? v[(int)h + 1] - v[(int)h] : 0);
}

int mb_attr_agree(mb_attr_agreement *out, const double *approx, const double *exact,
		  const uint8_t *truth, int B, int C, int k, int use_abs, int n_boot,
		  uint64_t seed, mb_error *err)
{
	double *ma = malloc(sizeof(double) * (size_t)C * 2), *bs = NULL, st[3];
	int *ia = malloc(sizeof(int) * (size_t)C * 2), *cnt = malloc(sizeof(int) * (size_t)B);
	mb_rng r;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (truth) {
		k = 0;
		for (int c = 0; c < C; c++)
			k += truth[c] != 0;
	}
	if (B < 1 || C < 1 || k < 1 || k > C || (!exact && !truth)) {
		rc = mb_error_set(err, MB_EINVALID, "attribution agreement: %d items, %d components, "
				  "k = %d (needs 1 <= k <= C and a reference)", B, C, k);
		goto cleanup;
	}
	bs = malloc(sizeof(double) * 3 * (size_t)(n_boot > 0 ? n_boot : 1));
	if (!ma || !ia || !cnt || !bs) {
		rc = mb_error_oom(err, "attribution agreement", 0);
		goto cleanup;
	}
	out->n_items = B;
	out->n_components = C;
	out->k = k;
	for (int b = 0; b < B; b++)
		cnt[b] = 1;
	agree_once(st, approx, exact, truth, cnt, B, C, k, use_abs, ma, ma + C, ia, ia + C);
	out->spearman = out->spearman_lo = out->spearman_hi = st[0];
	out->precision = out->precision_lo = out->precision_hi = st[1];
	out->recall = out->recall_lo = out->recall_hi = st[2];
	if (n_boot <= 0)
		goto cleanup;
	mb_rng_init_named(&r, seed, "attribution/bootstrap", 0);
	for (int i = 0; i < n_boot; i++) {
		memset(cnt, 0, sizeof(int) * (size_t)B);
		for (int b = 0; b < B; b++)
			cnt[mb_rng_range(&r, (uint64_t)B)]++;
		agree_once(bs + 3 * (size_t)i, approx, exact, truth, cnt, B, C, k, use_abs, ma, ma + C,
			   ia, ia + C);
	}
	{
		double *col = malloc(sizeof(double) * (size_t)n_boot);
		double lo[3], hi[3];
		if (!col) {
			rc = mb_error_oom(err, "bootstrap", 0);
			goto cleanup;
		}
		for (int j = 0; j < 3; j++) {
			for (int i = 0; i < n_boot; i++)
				col[i] = bs[3 * (size_t)i + j];
			lo[j] = quantile7(col, n_boot, 0.025);
			for (int i = 0; i < n_boot; i++)
				col[i] = bs[3 * (size_t)i + j];
			hi[j] = quantile7(col, n_boot, 0.975);
		}
		free(col);
		out->spearman_lo = lo[0];
		out->spearman_hi = hi[0];
		out->precision_lo = lo[1];
		out->precision_hi = hi[1];
		out->recall_lo = lo[2];
		out->recall_hi = hi[2];
	}

cleanup:
	free(ma);
	free(ia);
	free(cnt);
	free(bs);
	return rc;
}
