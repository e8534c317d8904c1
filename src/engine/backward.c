/*
 * backward.c: reverse-mode gradients through the engine's forward.
 *
 * Shape letters: B batch, T positions, D d_model, H heads, Dh d_head, M d_mlp,
 * V vocab, P n_ctx, R packed rows of the last run (engine.h), N logit rows per
 * item, S = B * N selected logit rows (LAST / POSITIONS modes).
 *
 * Data flow, mirrored from forward.c (d* is a gradient; hook points whose
 * gradient is delivered are named):
 *   dlogits (logits) -> dlnf_out = dlogits W_U, dW_U = dlogits^T lnf_out
 *   -> LN_f backward (ln_final.hook_normalized) -> dres
 *   per layer, top down: dres (resid_post) -> MLP: dproj = post^T dres,
 *   dpost = dres W_proj^T (mlp.hook_post), dpre = dpost act'(pre)
 *   (mlp.hook_pre), dfc = ln2_out^T dpre, LN2 backward of dpre W_fc^T
 *   (ln2.hook_normalized) added to dres (resid_mid) -> attention: dW_O =
 *   z^T dres (hook_attn_out, hook_result), dz = dres W_O^T (hook_z), per
 *   (item, head): dP = dz v^T (hook_pattern), dS = P (dP - rowsum(P dP))
 *   (hook_attn_scores), dq = dS k / sqrt(Dh), dk = dS^T q / sqrt(Dh),
 *   dv = P^T dz (hook_q/k/v), dW_qkv = ln1_out^T dqkv, LN1 backward of
 *   dqkv W_qkv^T (ln1.hook_normalized, hook_{q,k,v}_input) added to dres
 *   (resid_pre) -> embeddings (hook_embed, hook_pos_embed): scatter-adds
 *   into wte and wpe rows.
 * Rotary models: the head backward yields the gradients of the rotated q and
 *   k (hook_rot_q/k); the inverse rotation (the transpose) gives hook_q/k's.
 * Parallel residual: LN2's backward goes to dpar, not dres, so the attention
 *   sees dres = d resid_post; dpar is added to dres before resid_pre.
 *
 * Determinism: dX = dY W^T products go through mb_k_gemm (u-aligned row
 * chunks, thread-count invariant); weight gradients dW = X^T dY through
 * single-threaded mb_k_sgemm calls over a fixed partition of dW's rows (the same
 * calls for any thread count); column reductions (biases, LayerNorm
 * parameters, embedding rows) run over rows in index order for fixed column
 * blocks; per-row and per-(item, head) work writes disjoint outputs.
 */
#include <mechbench/backward.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/detmath.h>
#include <omp.h>

#include "hooks_int.h"
#include "kernels_int.h"
#include "engine_int.h"

/* Columns per task of a column reduction (one cache line of floats). */
#define COLS 16
/* Rows of dW per single-threaded sgemm of a weight gradient. */
#define WROWS 32

struct mb_backward {
	mb_engine *e;
	const mb_engine_config *cfg;

	/* the last run's plan, refreshed by each call */
	mb_engine_rows rows;
	int gu;              /* row group for mb_k_gemm */
	unsigned char *valid; /* (R) 1 for a row of a valid position */
	size_t valid_cap;

	/* dM/dlogits in the run's logits layout (B, N, V) */
	float *dlogits;
	size_t dlogits_cap;
	int dl_B, dl_N;      /* shape of the dlogits last set */
	int have_dlogits;

	/* scratch, grown to the largest run and kept */
	float *dres;   /* (R, D) gradient of the residual stream */
	float *dtmp;   /* (R, D) dln_out */
	float *dxhat;  /* (R, D) gradient at a hook_normalized point */
	float *dz;     /* (R, D) */
	float *dqkv;   /* (R, 3D) */
	float *dmlp;   /* (R, M) dpost then dpre */
	float *dlog;   /* ALL: (R, V) packed; else (S, D) for the selected rows */
	float *xsel;   /* (S, D) lnf_out at the selected rows */
	float *datt;   /* (B, H, T, T) dP, or per-thread (T, T) scratch */
	float *datt2;  /* (B, H, T, T) dS when attn_scores is observed */
	float *view;   /* a hook's (B, T, ...) tensor */
	float *result; /* (R, H, D) hook_result gradient */
	float *dunemb; /* (V, D) unembedding gradient of a tied model */
	float *dpar;   /* (R, D) parallel residual: the MLP branch's share of d resid_pre */
	float *rot_cos; /* (P, Rd/2) rotary tables (rotary models) */
	float *rot_sin;
	size_t dpar_cap;
	double *loss_row;      /* (B * N) per-row losses of mb_backward_xent */
	unsigned char *hit;    /* (B * N) per-row argmax == target */
	size_t loss_row_cap;
	size_t dres_cap, dtmp_cap, dxhat_cap, dz_cap, dqkv_cap, dmlp_cap, dlog_cap, xsel_cap,
		datt_cap, datt2_cap, view_cap, result_cap, dunemb_cap;
};

/* Helpers ------------------------------------------------------------------ */

static void fill_meta(const mb_backward *bw, mb_hook_tensor *t, mb_hook_point p, float *data)
{
	t->point = p;
	t->data = data;
	t->ndim = mb_hook_shape(t->shape, p, bw->cfg, bw->rows.batch, bw->rows.seq, bw->dl_N);
	t->numel = 1;
	for (int i = 0; i < t->ndim; i++)
		t->numel *= (size_t)t->shape[i];
	t->batch = bw->rows.batch;
	t->seq = bw->rows.seq;
	t->lengths = bw->rows.len;
}

/* Delivers a gradient already in hook layout to the hooks of p (caches copy
 * it; callbacks read it). */
static int deliver_direct(mb_backward *bw, const mb_hooks *h, mb_hook_point p, float *data,
			  mb_error *err)
{
	mb_hook_tensor t;

	if (!h || !mb_hooks_observes(h, p))
		return 0;
	fill_meta(bw, &t, p, data);
	return mb_hooks_deliver(h, &t, "gradient hook", NULL, err);
}

/* Delivers a gradient held in packed rows (width w, stride ld). */
static int deliver_rows(mb_backward *bw, const mb_hooks *h, mb_hook_point p, const float *buf,
			int w, int ld, mb_error *err)
{
	size_t n = (size_t)bw->rows.batch * bw->rows.seq * w;
	int rc;

	if (!h || !mb_hooks_observes(h, p))
		return 0;
	rc = grow(&bw->view, &bw->view_cap, n, "gradient hook view", err);
	if (rc < 0)
		return rc;
	unpack_rows(&bw->rows, bw->view, buf, w, ld);
	return deliver_direct(bw, h, p, bw->view, err);
}

/* Zeros the rows that hold no valid position (their gradient is 0 by
 * definition; kernels may leave junk there). */
static void zero_invalid(const mb_backward *bw, float *buf, int w, int ld)
{
	int R = bw->rows.rows;

#pragma omp parallel for schedule(static)
	for (int r = 0; r < R; r++)
		if (!bw->valid[r])
			memset(buf + (size_t)r * ld, 0, sizeof(float) * (size_t)w);
}

/* out[c] = sum over rows r in order of X[r][c], or with Y of X[r][c] * Y[r][c]
 * (N columns, R rows, both stride ld). */
static void colsum(float *out, const float *X, const float *Y, int ld, int R, int N)
{
	int nblk = (N + COLS - 1) / COLS;

#pragma omp parallel for schedule(static)
	for (int k = 0; k < nblk; k++) {
		int c0 = k * COLS, c1 = c0 + COLS < N ? c0 + COLS : N;
		float acc[COLS] = {0};

		for (int r = 0; r < R; r++) {
			const float *x = X + (size_t)r * ld, *y = Y ? Y + (size_t)r * ld : NULL;

			if (y)
				for (int c = c0; c < c1; c++)
					acc[c - c0] += x[c] * y[c];
			else
				for (int c = c0; c < c1; c++)
					acc[c - c0] += x[c];
		}
		for (int c = c0; c < c1; c++)
			out[c] = acc[c - c0];
	}
}

/* dW (Kin, N) = X^T (Kin x R) dY (R, N): X is (R, Kin) with stride ldx, dY (R,
 * N) with stride ldy, dW dense. Single-threaded sgemm calls over blocks of
 * WROWS rows of dW: the same calls whatever the thread count. */
static void gemm_tn(float *dW, const float *X, int ldx, const float *dY, int ldy, int R, int Kin,
		    int N)
{
	int nblk = (Kin + WROWS - 1) / WROWS;

	if (R == 0) {
		memset(dW, 0, sizeof(float) * (size_t)Kin * N);
		return;
	}
#pragma omp parallel
	{
		/* Inside the region OpenBLAS's OpenMP build then runs on the caller. */
		omp_set_num_threads(1);
#pragma omp for schedule(dynamic, 1)
		for (int k = 0; k < nblk; k++) {
			int r0 = k * WROWS, r1 = r0 + WROWS < Kin ? r0 + WROWS : Kin;

			mb_k_sgemm(1, 0, r1 - r0, N, R, 1.0f, X + r0, ldx, dY, ldy,
				   dW + (size_t)r0 * N, N);
		}
	}
}

/* The backward of y (R, N) = x (R, K) W (K, N) + b over R rows: with gW
 * (and gb) non-NULL, gb = column sums of dy and gW = x^T dy; always
 * dx (R, K) = dy (R, N) W^T. */
static void linear_backward(const mb_backward *bw, float *dx, const float *dy, const float *x,
			    const float *W, float *gW, float *gb, int R, int K, int N)
{
	if (gW) {
		colsum(gb, dy, NULL, N, R, N);
		gemm_tn(gW, x, K, dy, N, R, K, N);
	}
	mb_k_gemm(dx, K, dy, N, W, N, 1, R, K, N, 1.0f, bw->gu);
}

/* LayerNorm backward over R rows (the run's, or the compact tail's): dxhat = dy * w (or dy without LN; written
 * to bw->dxhat for the hook), then dres += rstd (dxhat - mean(dxhat) - xhat
 * mean(dxhat xhat)). With LN and gw/gb non-NULL, gw = sum_r dy xhat and
 * gb = sum_r dy. */
static void ln_backward(mb_backward *bw, int R, float *dres, const float *dy, const float *xhat,
			const float *rstd, const float *w, float *gw, float *gb)
{
	const int D = bw->cfg->d_model;
	const int ln = bw->cfg->norm == MB_NORM_LN;
	float *dxh = bw->dxhat;

	if (ln && gw) {
		colsum(gw, dy, xhat, D, R, D);
		colsum(gb, dy, NULL, D, R, D);
	}
#pragma omp parallel for schedule(static)
	for (int r = 0; r < R; r++) {
		const float *g = dy + (size_t)r * D;
		float *dh = dxh + (size_t)r * D, *dr = dres + (size_t)r * D;

		if (!ln) {
			memcpy(dh, g, sizeof(float) * (size_t)D);
			for (int c = 0; c < D; c++)
				dr[c] += g[c];
			continue;
		}
		const float *xh = xhat + (size_t)r * D;
		for (int c = 0; c < D; c++)
			dh[c] = g[c] * w[c];
		float m1 = mb_k_sum(dh, D) / (float)D;
		float m2 = mb_k_dot(dh, xh, D) / (float)D;
		float s = rstd[r];
		for (int c = 0; c < D; c++)
			dr[c] += s * (dh[c] - m1 - xh[c] * m2);
	}
}

/* act'(x) for the MLP activations, matching kernels.c's forward. */
static inline float act_grad(float x, mb_activation act)
{
	switch (act) {
	case MB_ACT_RELU:
		return x > 0.0f ? 1.0f : 0.0f;
	case MB_ACT_GELU: {
		float cdf = 0.5f * (1.0f + mb_detmath_erff(x * 0.70710678118654752f));
		return cdf + x * 0.3989422804014327f * mb_k_expf(-0.5f * x * x);
	}
	case MB_ACT_GELU_NEW:
	default: {
		/* gelu_new = x s, s = 1 / (1 + exp(-2u)), u = c (x + 0.044715 x^3) */
		float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
		float s = 1.0f / (1.0f + mb_k_expf(-2.0f * u));
		float du = 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * x * x);
		return s + x * s * (1.0f - s) * 2.0f * du;
	}
	}
}

/* Init --------------------------------------------------------------------- */

int mb_backward_init(mb_backward **out, mb_engine *e, mb_error *err)
{
	mb_backward *bw;

	*out = NULL;
	if (mb_engine_activations(e)->n_slots != mb_engine_cfg(e)->n_layer)
		return mb_error_set(err, MB_EINVALID,
				    "backward: the engine keeps no per-layer activations "
				    "(create it with keep_activations)");
	bw = calloc(1, sizeof(*bw));
	if (!bw)
		return mb_error_oom(err, "backward", sizeof(*bw));
	bw->e = e;
	bw->cfg = mb_engine_cfg(e);
	bw->gu = mb_engine_row_group(e);
	if (bw->cfg->pos == MB_POS_ROTARY) {
		int rc = mb_rotary_table(&bw->rot_cos, &bw->rot_sin, bw->cfg, err);

		if (rc < 0) {
			free(bw);
			return rc;
		}
	}
	*out = bw;
	return 0;
}

void mb_backward_free(mb_backward *bw)
{
	if (!bw)
		return;
	free(bw->valid);
	free(bw->dlogits);
	free(bw->dres);
	free(bw->dtmp);
	free(bw->dxhat);
	free(bw->dz);
	free(bw->dqkv);
	free(bw->dmlp);
	free(bw->dlog);
	free(bw->xsel);
	free(bw->datt);
	free(bw->datt2);
	free(bw->view);
	free(bw->result);
	free(bw->dunemb);
	free(bw->dpar);
	free(bw->rot_cos);
	free(bw->rot_sin);
	free(bw->loss_row);
	free(bw->hit);
	free(bw);
}

/* Loss --------------------------------------------------------------------- */

int mb_backward_xent(mb_backward *bw, const int32_t *targets, double *out_loss, int64_t *correct,
		     mb_error *err)
{
	mb_engine_rows ro;
	const int V = bw->cfg->n_vocab;
	int N = mb_engine_logits_per_item(bw->e), B, rc;
	int64_t count = 0, ok = 0;
	double sum = 0;
	double *loss_row;
	unsigned char *hit;

	mb_engine_rows_of(&ro, bw->e);
	B = ro.batch;
	bw->have_dlogits = 0;
	if (N == 0)
		return mb_error_set(err, MB_EINVALID, "backward: the last run computed no logits");
	for (int b = 0; b < B; b++)
		for (int i = 0; i < N; i++) {
			int32_t tg = targets[(size_t)b * N + i];
			if (tg < 0)
				continue;
			if (tg >= V)
				return mb_error_set(err, MB_EINVALID,
						    "backward: item %d logit row %d: target %d out of "
						    "range [0, %d)", b, i, (int)tg, V);
			if (!mb_engine_logits_row(bw->e, b, i))
				return mb_error_set(err, MB_EINVALID,
						    "backward: item %d logit row %d: target at a padded "
						    "position", b, i);
			count++;
		}
	if (count == 0)
		return mb_error_set(err, MB_EINVALID, "backward: no target to compute a loss on");
	rc = grow(&bw->dlogits, &bw->dlogits_cap, (size_t)B * N * V, "dlogits", err);
	if (rc < 0)
		return rc;
	if ((size_t)B * N > bw->loss_row_cap) {
		size_t n = (size_t)B * N;
		double *lr = realloc(bw->loss_row, n * sizeof(double));
		if (lr)
			bw->loss_row = lr;
		unsigned char *hh = realloc(bw->hit, n);
		if (hh)
			bw->hit = hh;
		if (!lr || !hh)
			return mb_error_oom(err, "loss rows", n * (sizeof(double) + 1));
		bw->loss_row_cap = n;
	}
	loss_row = bw->loss_row;
	hit = bw->hit;
	const double inv = 1.0 / (double)count;
#pragma omp parallel for schedule(static)
	for (int bi = 0; bi < B * N; bi++) {
		int b = bi / N, i = bi % N;
		int32_t tg = targets[bi];
		float *d = bw->dlogits + (size_t)bi * V;

		loss_row[bi] = 0;
		hit[bi] = 0;
		if (tg < 0) {
			memset(d, 0, sizeof(float) * (size_t)V);
			continue;
		}
		const float *l = mb_engine_logits_row(bw->e, b, i);
		double mx = l[0], s = 0;
		int arg = 0;
		for (int v = 1; v < V; v++)
			if (l[v] > mx) {
				mx = l[v];
				arg = v;
			}
		for (int v = 0; v < V; v++) {
			double ev = mb_detmath_exp((double)l[v] - mx);
			s += ev;
			d[v] = (float)ev;
		}
		/* softmax = exp(l - mx) / s; dM/dl = (softmax - onehot) / count */
		for (int v = 0; v < V; v++)
			d[v] = (float)(((double)d[v] / s - (v == tg ? 1.0 : 0.0)) * inv);
		loss_row[bi] = mx + mb_detmath_log(s) - (double)l[tg];
		hit[bi] = arg == tg;
	}
	for (int bi = 0; bi < B * N; bi++) {
		sum += loss_row[bi];
		ok += hit[bi];
	}
	*out_loss = sum * inv;
	if (correct)
		*correct = ok;
	bw->dl_B = B;
	bw->dl_N = N;
	bw->have_dlogits = 1;
	return 0;
}

int mb_backward_set_dlogits(mb_backward *bw, const float *dlogits, mb_error *err)
{
	mb_engine_rows ro;
	int N = mb_engine_logits_per_item(bw->e), rc;
	size_t n;

	mb_engine_rows_of(&ro, bw->e);
	bw->have_dlogits = 0;
	if (N == 0)
		return mb_error_set(err, MB_EINVALID, "backward: the last run computed no logits");
	n = (size_t)ro.batch * N * bw->cfg->n_vocab;
	rc = grow(&bw->dlogits, &bw->dlogits_cap, n, "dlogits", err);
	if (rc < 0)
		return rc;
	memcpy(bw->dlogits, dlogits, n * sizeof(float));
	bw->dl_B = ro.batch;
	bw->dl_N = N;
	bw->have_dlogits = 1;
	return 0;
}

/* Stages ------------------------------------------------------------------- */

/* The packed row of logit row i of item b. */
static int logit_row(const mb_backward *bw, const mb_run *run, int b, int i)
{
	const mb_engine_rows *ro = &bw->rows;

	switch (run->logits) {
	case MB_LOGITS_ALL:
		return i < ro->len[b] ? ro->row0[b] + i : -1;
	case MB_LOGITS_LAST:
		return ro->row0[b] + ro->len[b] - 1;
	case MB_LOGITS_POSITIONS:
		return ro->row0[b] + run->positions[(size_t)b * bw->dl_N + i];
	default:
		return -1;
	}
}

/* dlogits -> dres (the gradient at resid_final) and the unembedding and
 * LN_f gradients. */
static int unembed_backward(mb_backward *bw, const mb_run *run, const mb_engine_weights *g,
			    const mb_hooks *h, mb_error *err)
{
	const mb_engine_config *c = bw->cfg;
	const mb_engine_acts *a = mb_engine_activations(bw->e);
	const mb_engine_weights *w = mb_engine_w(bw->e);
	const mb_engine_rows *ro = &bw->rows;
	const int D = c->d_model, V = c->n_vocab, R = ro->rows, B = ro->batch, N = bw->dl_N;
	float *dunemb = NULL;
	int rc;

	rc = deliver_direct(bw, h, pt(MB_HOOK_LOGITS, -1), bw->dlogits, err);
	if (rc < 0)
		return rc;
	if (g) {
		if (c->tied) {
			rc = grow(&bw->dunemb, &bw->dunemb_cap, (size_t)V * D, "unembedding gradient",
				  err);
			if (rc < 0)
				return rc;
			dunemb = bw->dunemb;
		} else {
			dunemb = g->unembed;
		}
	}
	if (a->tail > 0) {
		/* compact tail: lnf_out rows 0..B-1 are the last positions */
		int S = a->tail;

		/* dlnf_out (S, D) = dlogits (S, V) W_U (V, D); dW_U (V, D) = dlogits^T lnf_out */
		mb_k_gemm(bw->dtmp, D, bw->dlogits, V, w->unembed, D, 0, S, D, V, 1.0f, bw->gu);
		if (dunemb)
			gemm_tn(dunemb, bw->dlogits, V, a->lnf_out, D, S, V, D);
		memset(bw->dres, 0, sizeof(float) * (size_t)S * D);
		ln_backward(bw, S, bw->dres, bw->dtmp, a->lnf_xhat, a->lnf_rstd, w->lnf_w,
			    g ? g->lnf_w : NULL, g ? g->lnf_b : NULL);
		return 0;
	}
	memset(bw->dtmp, 0, sizeof(float) * (size_t)R * D);
	if (run->logits == MB_LOGITS_ALL) {
		rc = grow(&bw->dlog, &bw->dlog_cap, (size_t)R * V, "packed dlogits", err);
		if (rc < 0)
			return rc;
#pragma omp parallel for schedule(static)
		for (int r = 0; r < R; r++)
			memset(bw->dlog + (size_t)r * V, 0, sizeof(float) * (size_t)V);
#pragma omp parallel for schedule(static)
		for (int b = 0; b < B; b++)
			for (int i = 0; i < ro->len[b]; i++)
				memcpy(bw->dlog + (size_t)(ro->row0[b] + i) * V,
				       bw->dlogits + ((size_t)b * N + i) * V, sizeof(float) * (size_t)V);
		/* dlnf_out (R, D) = dlog (R, V) W_U (V, D); dW_U (V, D) = dlog^T lnf_out */
		mb_k_gemm(bw->dtmp, D, bw->dlog, V, w->unembed, D, 0, R, D, V, 1.0f, bw->gu);
		if (dunemb)
			gemm_tn(dunemb, bw->dlog, V, a->lnf_out, D, R, V, D);
	} else {
		int S = B * N;

		rc = grow(&bw->dlog, &bw->dlog_cap, (size_t)S * D, "selected dlogits", err);
		if (rc == 0)
			rc = grow(&bw->xsel, &bw->xsel_cap, (size_t)S * D, "selected rows", err);
		if (rc < 0)
			return rc;
		/* dsel (S, D) = dlogits (S, V) W_U (V, D); dW_U (V, D) = dlogits^T xsel */
		mb_k_gemm(bw->dlog, D, bw->dlogits, V, w->unembed, D, 0, S, D, V, 1.0f, bw->gu);
#pragma omp parallel for schedule(static)
		for (int b = 0; b < B; b++)
			for (int i = 0; i < N; i++) {
				int r = logit_row(bw, run, b, i);
				float *dst = bw->dtmp + (size_t)r * D;
				const float *src = bw->dlog + ((size_t)b * N + i) * D;

				for (int k = 0; k < D; k++)
					dst[k] += src[k];
				memcpy(bw->xsel + ((size_t)b * N + i) * D, a->lnf_out + (size_t)r * D,
				       sizeof(float) * (size_t)D);
			}
		if (dunemb)
			gemm_tn(dunemb, bw->dlogits, V, bw->xsel, D, S, V, D);
	}
	/* LN_f: dtmp is dlnf_out. */
	memset(bw->dres, 0, sizeof(float) * (size_t)R * D);
	ln_backward(bw, R, bw->dres, bw->dtmp, a->lnf_xhat, a->lnf_rstd, w->lnf_w,
		    g ? g->lnf_w : NULL, g ? g->lnf_b : NULL);
	return deliver_rows(bw, h, pt(MB_HOOK_LN_FINAL_NORMALIZED, -1), bw->dxhat, D, D, err);
}

/* The MLP of layer l over R rows (the run's, valid marks its valid rows; or
 * the compact tail's, valid NULL: all rows). LN2's input gradient is added to
 * dln_in (dres, or dpar with a parallel residual). */
static int mlp_backward(mb_backward *bw, int l, int R, const unsigned char *valid,
			const mb_engine_weights *g, const mb_hooks *h, float *dln_in, mb_error *err)
{
	const mb_engine_config *c = bw->cfg;
	const mb_engine_layer_acts *a = &mb_engine_activations(bw->e)->layer[l];
	const mb_engine_weights *w = mb_engine_w(bw->e);
	const int D = c->d_model, M = c->d_mlp;
	const float *proj_w = w->proj_w + (size_t)l * M * D, *fc_w = w->fc_w + (size_t)l * D * M;
	int rc;

	rc = deliver_rows(bw, h, pt(MB_HOOK_MLP_OUT, l), bw->dres, D, D, err);
	if (rc < 0)
		return rc;
	/* dpost (R, M) = dres (R, D) W_proj^T, W_proj (M, D); dW_proj (M, D) = post^T dres */
	linear_backward(bw, bw->dmlp, bw->dres, a->mlp_post, proj_w,
			g ? g->proj_w + (size_t)l * M * D : NULL, g ? g->proj_b + (size_t)l * D : NULL,
			R, M, D);
	rc = deliver_rows(bw, h, pt(MB_HOOK_MLP_POST, l), bw->dmlp, M, M, err);
	if (rc < 0)
		return rc;
#pragma omp parallel for schedule(static)
	for (int r = 0; r < R; r++) {
		float *d = bw->dmlp + (size_t)r * M;
		const float *x = a->mlp_pre + (size_t)r * M;

		if (valid && !valid[r]) {
			memset(d, 0, sizeof(float) * (size_t)M);
			continue;
		}
		for (int k = 0; k < M; k++)
			d[k] *= act_grad(x[k], c->act);
	}
	rc = deliver_rows(bw, h, pt(MB_HOOK_MLP_PRE, l), bw->dmlp, M, M, err);
	if (rc < 0)
		return rc;
	/* dln2_out (R, D) = dpre (R, M) W_fc^T, W_fc (D, M); dW_fc (D, M) = ln2_out^T dpre */
	linear_backward(bw, bw->dtmp, bw->dmlp, a->ln2_out, fc_w,
			g ? g->fc_w + (size_t)l * D * M : NULL, g ? g->fc_b + (size_t)l * M : NULL, R,
			D, M);
	ln_backward(bw, R, dln_in, bw->dtmp, a->ln2_xhat, a->ln2_rstd,
		    c->norm == MB_NORM_LN ? w->ln2_w + (size_t)l * D : NULL,
		    g && c->norm == MB_NORM_LN ? g->ln2_w + (size_t)l * D : NULL,
		    g && c->norm == MB_NORM_LN ? g->ln2_b + (size_t)l * D : NULL);
	return deliver_rows(bw, h, pt(MB_HOOK_LN2_NORMALIZED, l), bw->dxhat, D, D, err);
}

/* One (item, head): dP, dS, dq, dk, dv. dP and dS are (T, T) blocks (stride
 * T); dq/dk/dv rows of the head's columns in dqkv (stride 3D). */
static inline int all_zero(const float *x, int n)
{
	for (int i = 0; i < n; i++)
		if (x[i] != 0.0f)
			return 0;
	return 1;
}

/* One (item, head) of L <= T rows with scalar loops (short items): rows of dz
 * that are exactly zero (every row but the last in the compact tail's last
 * layer) contribute nothing and are skipped. dq, dk and dv are disjoint
 * column ranges of dqkv. */
static void head_backward(float *restrict dP, float *restrict dS, int T, const float *restrict P,
			  const float *restrict q, const float *restrict k, const float *restrict v,
			  int ld, const float *restrict dz, int ldz, float *restrict dq,
			  float *restrict dk, float *restrict dv, int L, int Dh, float scale)
{
	for (int j = 0; j < L; j++) {
		memset(dq + (size_t)j * ld, 0, sizeof(float) * (size_t)Dh);
		memset(dk + (size_t)j * ld, 0, sizeof(float) * (size_t)Dh);
		memset(dv + (size_t)j * ld, 0, sizeof(float) * (size_t)Dh);
	}
	for (int i = 0; i < L; i++) {
		float *dp = dP + (size_t)i * T, *ds = dS + (size_t)i * T;
		const float *p = P + (size_t)i * T, *dzi = dz + (size_t)i * ldz;
		const float *qi = q + (size_t)i * ld;
		float *dqi = dq + (size_t)i * ld;
		float rs = 0.0f;

		if (all_zero(dzi, Dh)) {
			memset(dp, 0, sizeof(float) * (size_t)(i + 1));
			memset(ds, 0, sizeof(float) * (size_t)(i + 1));
			continue;
		}
		for (int j = 0; j <= i; j++) {
			/* mb_k_dot: 16 lanes then a fixed tree, so it vectorises */
			float s = mb_k_dot(dzi, v + (size_t)j * ld, Dh);
			dp[j] = s;
			rs += p[j] * s;
		}
		for (int j = 0; j <= i; j++)
			ds[j] = p[j] * (dp[j] - rs);
		for (int j = 0; j <= i; j++) {
			const float *kj = k + (size_t)j * ld;
			float *dkj = dk + (size_t)j * ld, *dvj = dv + (size_t)j * ld;
			float sij = ds[j] * scale, pij = p[j];
			for (int x = 0; x < Dh; x++) {
				dqi[x] += sij * kj[x];
				dkj[x] += sij * qi[x];
				dvj[x] += pij * dzi[x];
			}
		}
	}
}

/* The same with four single-threaded sgemm calls, for items long enough that
 * BLAS beats the scalar loops (the masked upper half is computed and
 * discarded: the pattern is 0 there, and dS is set to 0). */
#define HEAD_BLAS_MIN 16
static void head_backward_blas(float *dP, float *dS, int T, const float *P, const float *q,
			       const float *k, const float *v, int ld, const float *dz, int ldz,
			       float *dq, float *dk, float *dv, int L, int Dh, float scale)
{
	/* dP (L, L) = dz (L, Dh) v^T (Dh, L) */
	mb_k_sgemm(0, 1, L, L, Dh, 1.0f, dz, ldz, v, ld, dP, T);
	for (int i = 0; i < L; i++) {
		float *dp = dP + (size_t)i * T, *ds = dS + (size_t)i * T;
		const float *p = P + (size_t)i * T;
		float rs = mb_k_dot(p, dp, i + 1);

		for (int j = 0; j <= i; j++)
			ds[j] = p[j] * (dp[j] - rs);
		for (int j = i + 1; j < L; j++)
			ds[j] = 0.0f;
	}
	/* dv (L, Dh) = P^T (L, L) dz (L, Dh); dq = dS (L, L) k (L, Dh) and dk = dS^T q, scaled */
	mb_k_sgemm(1, 0, L, Dh, L, 1.0f, P, T, dz, ldz, dv, ld);
	mb_k_sgemm(0, 0, L, Dh, L, scale, dS, T, k, ld, dq, ld);
	mb_k_sgemm(1, 0, L, Dh, L, scale, dS, T, q, ld, dk, ld);
}

/* Zeros a (T, T) block outside rows < L, columns <= row. */
static void zero_outside(float *S, int T, int L)
{
	for (int i = 0; i < T; i++) {
		int from = i < L ? i + 1 : 0;
		memset(S + (size_t)i * T + from, 0, sizeof(float) * (size_t)(T - from));
	}
}

static int attn_core_backward(mb_backward *bw, int l, const mb_engine_weights *g,
			      const mb_hooks *h, mb_error *err);

/* Attention of layer l from the residual gradient at resid_mid. */
static int attn_backward(mb_backward *bw, int l, const mb_engine_weights *g, const mb_hooks *h,
			 mb_error *err)
{
	const mb_engine_config *c = bw->cfg;
	const mb_engine_layer_acts *a = &mb_engine_activations(bw->e)->layer[l];
	const mb_engine_weights *w = mb_engine_w(bw->e);
	const mb_engine_rows *ro = &bw->rows;
	const int D = c->d_model, H = c->n_head, R = ro->rows;
	int rc;

	rc = deliver_rows(bw, h, pt(MB_HOOK_ATTN_OUT, l), bw->dres, D, D, err);
	if (rc < 0)
		return rc;
	if (observes(h, MB_HOOK_RESULT, l)) {
		rc = grow(&bw->result, &bw->result_cap, (size_t)R * H * D, "hook_result gradient",
			  err);
		if (rc < 0)
			return rc;
#pragma omp parallel for schedule(static)
		for (int r = 0; r < R; r++)
			for (int hh = 0; hh < H; hh++)
				memcpy(bw->result + ((size_t)r * H + hh) * D, bw->dres + (size_t)r * D,
				       sizeof(float) * (size_t)D);
		rc = deliver_rows(bw, h, pt(MB_HOOK_RESULT, l), bw->result, H * D, H * D, err);
		if (rc < 0)
			return rc;
	}
	/* dz (R, D) = dres (R, D) W_O^T, W_O (D, D); dW_O (D, D) = z^T dres */
	linear_backward(bw, bw->dz, bw->dres, a->z, w->o_w + (size_t)l * D * D,
			g ? g->o_w + (size_t)l * D * D : NULL, g ? g->o_b + (size_t)l * D : NULL, R, D,
			D);
	zero_invalid(bw, bw->dz, D, D);
	rc = deliver_rows(bw, h, pt(MB_HOOK_Z, l), bw->dz, D, D, err);
	if (rc < 0)
		return rc;
	return attn_core_backward(bw, l, g, h, err);
}

/* The compact tail's output projection: dres holds the gradient of the B last
 * positions in rows 0..B-1; afterwards dres and dz are in the run's rows
 * (zero but at each item's last row). */
static void attn_tail_backward(mb_backward *bw, int l, const mb_engine_weights *g)
{
	const mb_engine_config *c = bw->cfg;
	const mb_engine_acts *acts = mb_engine_activations(bw->e);
	const mb_engine_weights *w = mb_engine_w(bw->e);
	const mb_engine_rows *ro = &bw->rows;
	const int D = c->d_model, S = acts->tail, R = ro->rows;

	/* dz of the last positions (S, D) = dres (S, D) W_O^T into dxhat; dW_O = tail_z^T dres */
	linear_backward(bw, bw->dxhat, bw->dres, acts->tail_z, w->o_w + (size_t)l * D * D,
			g ? g->o_w + (size_t)l * D * D : NULL, g ? g->o_b + (size_t)l * D : NULL, S, D,
			D);
	/* the residual gradient into dtmp */
	memcpy(bw->dtmp, bw->dres, sizeof(float) * (size_t)S * D);
	memset(bw->dres, 0, sizeof(float) * (size_t)R * D);
	memset(bw->dz, 0, sizeof(float) * (size_t)R * D);
	for (int b = 0; b < S; b++) {
		size_t row = (size_t)(ro->row0[b] + ro->len[b] - 1) * D;
		memcpy(bw->dres + row, bw->dtmp + (size_t)b * D, sizeof(float) * (size_t)D);
		memcpy(bw->dz + row, bw->dxhat + (size_t)b * D, sizeof(float) * (size_t)D);
	}
}

/* Attention of layer l from dz (hook_z's gradient) down to resid_pre: per
 * (item, head) softmax backward, the QKV projection and LN1. */
static int attn_core_backward(mb_backward *bw, int l, const mb_engine_weights *g,
			      const mb_hooks *h, mb_error *err)
{
	const mb_engine_config *c = bw->cfg;
	const mb_engine_layer_acts *a = &mb_engine_activations(bw->e)->layer[l];
	const mb_engine_weights *w = mb_engine_w(bw->e);
	const mb_engine_rows *ro = &bw->rows;
	const int D = c->d_model, H = c->n_head, Dh = c->d_head, R = ro->rows, B = ro->batch;
	const int T = ro->seq, BH = B * H;
	const size_t TT = (size_t)T * T;
	const float scale = 1.0f / sqrtf((float)Dh);
	const float *qkv_w = w->qkv_w + (size_t)l * D * 3 * D;
	int obs_p = observes(h, MB_HOOK_PATTERN, l), obs_s = observes(h, MB_HOOK_ATTN_SCORES, l);
	int full = obs_p || obs_s;
	int rc;

	/* Per (item, head). dP and dS blocks: the full (B, H, T, T) arrays when a
	 * pattern or scores gradient is observed, else per-thread scratch. */
	{
		int nth = omp_get_max_threads();
		size_t need = full ? (size_t)BH * TT : (size_t)nth * 2 * TT;

		rc = grow(&bw->datt, &bw->datt_cap, need, "attention gradient", err);
		if (rc == 0 && full)
			rc = grow(&bw->datt2, &bw->datt2_cap, (size_t)BH * TT, "scores gradient", err);
		if (rc < 0)
			return rc;
	}
	memset(bw->dqkv, 0, sizeof(float) * (size_t)R * 3 * D);
#pragma omp parallel
	{
	/* Inside the region OpenBLAS's OpenMP build runs on the calling thread. */
	omp_set_num_threads(1);
#pragma omp for schedule(dynamic, 1)
	for (int bh = 0; bh < BH; bh++) {
		int b = bh / H, hh = bh % H, L = ro->len[b];
		size_t base = (size_t)ro->row0[b];
		const float *q = a->qkv + base * 3 * D + (size_t)hh * Dh;
		float *dq = bw->dqkv + base * 3 * D + (size_t)hh * Dh;
		float *dP, *dS;

		if (full) {
			dP = bw->datt + (size_t)bh * TT;
			dS = bw->datt2 + (size_t)bh * TT;
		} else {
			dP = bw->datt + (size_t)omp_get_thread_num() * 2 * TT;
			dS = dP + TT;
		}
		(L >= HEAD_BLAS_MIN ? head_backward_blas : head_backward)(
			dP, dS, T, a->att + (size_t)bh * TT, q, q + D, q + 2 * D, 3 * D,
			bw->dz + base * D + (size_t)hh * Dh, D, dq, dq + D, dq + 2 * D, L, Dh, scale);
		if (full) {
			zero_outside(dP, T, L);
			zero_outside(dS, T, L);
		}
	}
	}
	if (full) {
		rc = deliver_direct(bw, h, pt(MB_HOOK_PATTERN, l), bw->datt, err);
		if (rc == 0)
			rc = deliver_direct(bw, h, pt(MB_HOOK_ATTN_SCORES, l), bw->datt2, err);
		if (rc < 0)
			return rc;
	}
	if (c->pos == MB_POS_ROTARY) {
		for (int X = 1; X >= 0; X--) {
			rc = deliver_rows(bw, h, pt((mb_hook_kind)(MB_HOOK_ROT_Q + X), l),
					  bw->dqkv + X * D, D, 3 * D, err);
			if (rc < 0)
				return rc;
		}
#pragma omp parallel for schedule(static)
		for (int b = 0; b < B; b++)
			mb_rotary_rows(bw->dqkv + (size_t)ro->row0[b] * 3 * D, 3 * D, ro->len[b], 0, 2,
				       c, bw->rot_cos, bw->rot_sin, 1);
	}
	for (int X = 2; X >= 0; X--) {
		rc = deliver_rows(bw, h, pt((mb_hook_kind)(MB_HOOK_Q + X), l), bw->dqkv + X * D, D,
				  3 * D, err);
		if (rc < 0)
			return rc;
	}
	/* Split inputs: the gradient at head hh's copy of resid_pre for input X is
	 * LN1's backward of dX_hh W_X[:, hh]^T alone. */
	for (int X = 2; X >= 0; X--) {
		mb_hook_point p = pt((mb_hook_kind)(MB_HOOK_Q_INPUT + X), l);
		size_t n = (size_t)B * T * H * D;

		if (!h || !mb_hooks_observes(h, p))
			continue;
		rc = grow(&bw->result, &bw->result_cap, n > (size_t)R * D ? n : (size_t)R * D,
			  "split input gradient", err);
		if (rc == 0)
			rc = grow(&bw->view, &bw->view_cap, n, "split input gradient", err);
		if (rc < 0)
			return rc;
		for (int hh = 0; hh < H; hh++) {
			float *dx = bw->result; /* (R, D) */
			/* dtmp (R, D) = dX_hh (R, Dh) W_X[:, hh]^T, W_X[:, hh] (D, Dh), ld 3D */
			mb_k_gemm(bw->dtmp, D, bw->dqkv + X * D + hh * Dh, 3 * D,
				  qkv_w + X * D + hh * Dh, 3 * D, 1, R, D, Dh, 1.0f, bw->gu);
			memset(dx, 0, sizeof(float) * (size_t)R * D);
			ln_backward(bw, R, dx, bw->dtmp, a->ln1_xhat, a->ln1_rstd,
				    c->norm == MB_NORM_LN ? w->ln1_w + (size_t)l * D : NULL, NULL,
				    NULL);
#pragma omp parallel for schedule(static)
			for (int bt = 0; bt < B * T; bt++) {
				int b = bt / T, t = bt % T;
				float *dst = bw->view + ((size_t)bt * H + hh) * D;
				if (t < ro->len[b])
					memcpy(dst, dx + (size_t)(ro->row0[b] + t) * D,
					       sizeof(float) * (size_t)D);
				else
					memset(dst, 0, sizeof(float) * (size_t)D);
			}
		}
		rc = deliver_direct(bw, h, p, bw->view, err);
		if (rc < 0)
			return rc;
	}
	/* dln1_out (R, D) = dqkv (R, 3D) W_qkv^T, W_qkv (D, 3D); dW_qkv (D, 3D) = ln1_out^T dqkv */
	linear_backward(bw, bw->dtmp, bw->dqkv, a->ln1_out, qkv_w,
			g ? g->qkv_w + (size_t)l * D * 3 * D : NULL,
			g ? g->qkv_b + (size_t)l * 3 * D : NULL, R, D, 3 * D);
	ln_backward(bw, R, bw->dres, bw->dtmp, a->ln1_xhat, a->ln1_rstd,
		    c->norm == MB_NORM_LN ? w->ln1_w + (size_t)l * D : NULL,
		    g && c->norm == MB_NORM_LN ? g->ln1_w + (size_t)l * D : NULL,
		    g && c->norm == MB_NORM_LN ? g->ln1_b + (size_t)l * D : NULL);
	return deliver_rows(bw, h, pt(MB_HOOK_LN1_NORMALIZED, l), bw->dxhat, D, D, err);
}

/* Embedding gradients: wte rows by token, wpe rows by position, each element
 * summed over rows in index order (parallel over column blocks). A tied
 * model's unembedding gradient is added last. */
static void embed_backward(mb_backward *bw, const mb_run *run, const mb_engine_weights *g)
{
	const mb_engine_config *c = bw->cfg;
	const mb_engine_rows *ro = &bw->rows;
	const int D = c->d_model, V = c->n_vocab, B = ro->batch, nblk = (D + COLS - 1) / COLS;

	memset(g->wte, 0, sizeof(float) * (size_t)V * D);
	if (g->wpe)
		memset(g->wpe, 0, sizeof(float) * (size_t)c->n_ctx * D);
#pragma omp parallel for schedule(static)
	for (int k = 0; k < nblk; k++) {
		int c0 = k * COLS, c1 = c0 + COLS < D ? c0 + COLS : D;

		for (int b = 0; b < B; b++)
			for (int t = 0; t < ro->len[b]; t++) {
				const float *d = bw->dres + (size_t)(ro->row0[b] + t) * D;
				float *we = g->wte + (size_t)run->tokens[(size_t)b * run->seq + t] * D;
				for (int x = c0; x < c1; x++)
					we[x] += d[x];
				if (g->wpe) {
					float *wp = g->wpe + (size_t)t * D;
					for (int x = c0; x < c1; x++)
						wp[x] += d[x];
				}
			}
	}
	if (c->tied)
		mb_k_add(g->wte, g->wte, bw->dunemb, (size_t)V * D);
}

/* Zeros every parameter gradient of layers below l0 and the embeddings. */
static void zero_below(const mb_backward *bw, const mb_engine_weights *g, int l0)
{
	const mb_engine_config *c = bw->cfg;
	const size_t D = (size_t)c->d_model, M = (size_t)c->d_mlp, L0 = (size_t)l0;

	if (!c->tied)
		memset(g->wte, 0, sizeof(float) * (size_t)c->n_vocab * D);
	if (g->wpe)
		memset(g->wpe, 0, sizeof(float) * (size_t)c->n_ctx * D);
	if (c->tied) {
		/* wte holds only the unembedding's share */
		memcpy(g->wte, bw->dunemb, sizeof(float) * (size_t)c->n_vocab * D);
	}
	if (l0 == 0)
		return;
	if (g->ln1_w) {
		memset(g->ln1_w, 0, sizeof(float) * L0 * D);
		memset(g->ln1_b, 0, sizeof(float) * L0 * D);
	}
	memset(g->qkv_w, 0, sizeof(float) * L0 * D * 3 * D);
	memset(g->qkv_b, 0, sizeof(float) * L0 * 3 * D);
	memset(g->o_w, 0, sizeof(float) * L0 * D * D);
	memset(g->o_b, 0, sizeof(float) * L0 * D);
	if (g->ln2_w) {
		memset(g->ln2_w, 0, sizeof(float) * L0 * D);
		memset(g->ln2_b, 0, sizeof(float) * L0 * D);
	}
	if (g->fc_w) {
		memset(g->fc_w, 0, sizeof(float) * L0 * D * M);
		memset(g->fc_b, 0, sizeof(float) * L0 * M);
		memset(g->proj_w, 0, sizeof(float) * L0 * M * D);
		memset(g->proj_b, 0, sizeof(float) * L0 * D);
	}
}

/* Checks that every point of h is in the model and at or above l0. */
static int check_grad_hooks(const mb_backward *bw, const mb_hooks *h, int l0, mb_error *err)
{
	int rc = mb_hooks_check(h, bw->cfg, err);

	if (rc < 0 || !h)
		return rc;
	for (size_t i = 0; i < h->n; i++) {
		mb_hook_point p = h->v[i].point;
		int before = p.layer >= 0 ? p.layer < l0
					  : (p.kind == MB_HOOK_EMBED || p.kind == MB_HOOK_POS_EMBED) &&
						    l0 > 0;
		if (before) {
			char name[MB_HOOK_NAME_MAX];
			mb_hook_name(name, sizeof(name), p);
			return mb_error_set(err, MB_EINVALID,
					    "backward: gradient hook %s is below the run's start "
					    "layer %d", name, l0);
		}
	}
	return 0;
}

int mb_backward_run(mb_backward *bw, const mb_run *run, const mb_engine_weights *grads,
		    const mb_hooks *grad_hooks, mb_error *err)
{
	const mb_engine_config *c = bw->cfg;
	const int D = c->d_model, M = c->d_mlp, l0 = run->start_layer;
	mb_engine_rows *ro = &bw->rows;
	const mb_hooks *h = grad_hooks;
	size_t RD;
	int rc, tail;

	mb_engine_rows_of(ro, bw->e);
	if (!bw->have_dlogits || bw->dl_B != ro->batch ||
	    bw->dl_N != mb_engine_logits_per_item(bw->e))
		return mb_error_set(err, MB_EINVALID,
				    "backward: no dlogits for the last run (call mb_backward_xent or "
				    "mb_backward_set_dlogits after the forward)");
	if (run->batch != ro->batch || run->seq != ro->seq || run->logits == MB_LOGITS_NONE)
		return mb_error_set(err, MB_EINVALID,
				    "backward: run (batch %d, seq %d) is not the engine's last run "
				    "(batch %d, seq %d) or computed no logits",
				    run->batch, run->seq, ro->batch, ro->seq);
	if (l0 == 0 && !run->tokens && grads)
		return mb_error_set(err, MB_EINVALID, "backward: run has no tokens");
	rc = check_grad_hooks(bw, h, l0, err);
	if (rc < 0)
		return rc;
	tail = mb_engine_activations(bw->e)->tail;
	if (tail > 0 && h && h->n > 0)
		return mb_error_set(err, MB_EINVALID,
				    "backward: gradient hooks need a run without the compact tail "
				    "(mb_engine_set_compact_tail(e, 0))");
	RD = (size_t)ro->rows * D;
	if ((rc = grow(&bw->dres, &bw->dres_cap, RD, "dres", err)) < 0 ||
	    (rc = grow(&bw->dtmp, &bw->dtmp_cap, RD, "dtmp", err)) < 0 ||
	    (rc = grow(&bw->dxhat, &bw->dxhat_cap, RD, "dxhat", err)) < 0 ||
	    (rc = grow(&bw->dz, &bw->dz_cap, RD, "dz", err)) < 0 ||
	    (rc = grow(&bw->dqkv, &bw->dqkv_cap, 3 * RD, "dqkv", err)) < 0 ||
	    (c->parallel && (rc = grow(&bw->dpar, &bw->dpar_cap, RD, "dpar", err)) < 0) ||
	    (rc = grow(&bw->dmlp, &bw->dmlp_cap, (size_t)ro->rows * (M > 0 ? M : 1), "dmlp",
		       err)) < 0)
		return rc;
	if ((size_t)ro->rows > bw->valid_cap) {
		unsigned char *v = realloc(bw->valid, (size_t)ro->rows);
		if (!v)
			return mb_error_oom(err, "row mask", (size_t)ro->rows);
		bw->valid = v;
		bw->valid_cap = (size_t)ro->rows;
	}
	memset(bw->valid, 0, (size_t)ro->rows);
	for (int b = 0; b < ro->batch; b++)
		memset(bw->valid + ro->row0[b], 1, (size_t)ro->len[b]);
	mb_hooks_begin_run(h);

	rc = unembed_backward(bw, run, grads, h, err);
	for (int l = c->n_layer - 1; l >= l0 && rc == 0; l--) {
		if (tail && l == c->n_layer - 1) {
			/* compact tail: the last layer's MLP and output projection on
			 * the B last positions, then the attention in the run's rows */
			if (!c->attn_only)
				rc = mlp_backward(bw, l, tail, NULL, grads, NULL, bw->dres, err);
			if (rc == 0) {
				attn_tail_backward(bw, l, grads);
				rc = attn_core_backward(bw, l, grads, NULL, err);
			}
			continue;
		}
		rc = deliver_rows(bw, h, pt(MB_HOOK_RESID_POST, l), bw->dres, D, D, err);
		if (rc == 0 && c->parallel)
			memset(bw->dpar, 0, sizeof(float) * RD);
		if (rc == 0 && !c->attn_only)
			rc = mlp_backward(bw, l, ro->rows, bw->valid, grads, h,
					  c->parallel ? bw->dpar : bw->dres, err);
		if (rc == 0 && !c->parallel)
			rc = deliver_rows(bw, h, pt(MB_HOOK_RESID_MID, l), bw->dres, D, D, err);
		if (rc == 0)
			rc = attn_backward(bw, l, grads, h, err);
		if (rc == 0 && c->parallel)
			mb_k_add(bw->dres, bw->dres, bw->dpar, RD);
		if (rc == 0)
			rc = deliver_rows(bw, h, pt(MB_HOOK_RESID_PRE, l), bw->dres, D, D, err);
	}
	if (rc < 0)
		return rc;
	if (l0 == 0) {
		rc = deliver_rows(bw, h, pt(MB_HOOK_POS_EMBED, -1), bw->dres, D, D, err);
		if (rc == 0)
			rc = deliver_rows(bw, h, pt(MB_HOOK_EMBED, -1), bw->dres, D, D, err);
		if (rc < 0)
			return rc;
		if (grads)
			embed_backward(bw, run, grads);
	} else if (grads) {
		zero_below(bw, grads, l0);
	}
	return 0;
}
