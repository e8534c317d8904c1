/*
 * forward.c: the batched GPT-2 forward with hook dispatch.
 *
 * Shape letters: B batch, T positions, D d_model, H heads, Dh d_head, M d_mlp,
 * V vocab, L layers, R packed rows of the run (engine.h), Rc packed rows of the
 * largest run, N selected logit rows per item, U the GEMM row group, n the
 * rows a block runs over (R, or B * N in the last layer's tail). Every matrix
 * product says its shapes: "qkv (R, 3D) = ln1_out (R, D) W_qkv (D, 3D)".
 *
 * Data flow of one layer (packed rows; every arrow that names a hook point
 * dispatches it when observed):
 *   resid_pre -> LN1 (ln1.hook_normalized) -> qkv = ln1_out W + b (hook_q/k/v)
 *   -> rotary models: q, k rotated in place (hook_rot_q/k)
 *   -> per (item, head) causal attention (hook_attn_scores, hook_pattern)
 *   -> z (hook_z) -> attn_out = z W_O + b_O (hook_result, hook_attn_out)
 *   -> resid_mid = resid_pre + attn_out -> LN2 -> pre = ln2_out W_fc + b
 *   (hook_pre) -> post = act(pre) (hook_post) -> mlp_out = post W_proj + b
 *   (hook_mlp_out) -> resid_post = resid_mid + mlp_out (hook_resid_post).
 * Parallel residual (GPT-NeoX): LN2 reads resid_pre instead of resid_mid, and
 * resid_mid (= resid_pre + attn_out, no hook) is only the partial sum.
 * Logits at a few positions: the last layer may run its tail, everything
 * after q/k/v on the selected rows only (tail_plan).
 */
#include <mechbench/engine.h>
#include <mechbench/gemm.h>
#include <mechbench/hooks.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "hooks_int.h"
#include "kernels_int.h"
#include "engine_int.h"

struct mb_engine {
	mb_engine_config cfg;
	mb_engine_weights w;
	int max_batch, max_seq, keep;
	int U;            /* packed-row group */
	int invariant;    /* the probe found a row group */
	int gu;           /* row group passed to mb_k_gemm: U, or 0 (one chunk) when none was found */
	int rows_cap;     /* Rc */
	float *arena;     /* every activation buffer, one block */
	mb_engine_acts acts;
	mb_engine_layer_acts *slots;

	/* the run plan */
	int B, T, R;
	int32_t *len;  /* (max_batch) */
	int32_t *row0; /* (max_batch) */
	int32_t *span; /* (max_batch) rows of item b: len[b] and its padding */
	int dense;     /* mb_engine_set_dense_rows */
	int compact;   /* mb_engine_set_compact_tail */
	int tail;      /* the run's tail_plan */
	int tail_rows; /* B * N when the last layer ran its tail, else 0 */
	float *tail_z; /* (B * N, D) the tail's z */
	size_t tail_z_cap;

	/* logits of the last run */
	mb_logits_mode lmode;
	int lrows;     /* rows per item: T, 1, N or 0 */
	float *logits; /* ALL: (R, V) packed; LAST/POSITIONS: (B, N, V) */
	size_t logits_cap;
	float *sel_x;  /* (B * N, D) selected rows gathered from a full last layer */
	size_t sel_x_cap;
	float *att_p;  /* (threads, T) attention weights of one query row */
	size_t att_p_cap;
	float *att_w;  /* (threads, att_w_per) attention scratch per thread (kernels_int.h) */
	size_t att_w_cap, att_w_per;

	/* hook scratch, grown on first need and kept */
	float *view;   /* a hook's (B, T, ...) tensor */
	size_t view_cap;
	float *tmp_a;  /* (R, D): embeddings, one head's split input, or the tail's resid_pre */
	size_t tmp_a_cap;
	float *tmp_b;  /* (R, D): position embeddings, or LN1 of one head's split input */
	size_t tmp_b_cap;
	float *result; /* (R, H, D) per-head outputs */
	size_t result_cap;

	/* rotary positions */
	float *rot_cos; /* (P, Rd/2) */
	float *rot_sin; /* (P, Rd/2) */
};

/* Helpers ------------------------------------------------------------------ */

static size_t pad16(size_t n) { return (n + 15) & ~(size_t)15; }

static int row_len(const mb_engine *e, int b) { return e->span[b]; }

/* view (B, T, w) <- packed rows (width w, stride ld); zeros at padded positions. */
static void unpack(const mb_engine *e, float *view, const float *buf, int w, int ld)
{
	mb_engine_rows ro;

	mb_engine_rows_of(&ro, e);
	unpack_rows(&ro, view, buf, w, ld);
}

/* packed rows <- view (B, T, w) at valid positions; padding rows zeroed when
 * zero_pad (inputs of a GEMM must hold finite values). */
static void pack(const mb_engine *e, float *buf, int ld, const float *view, int w, int zero_pad)
{
	int B = e->B, T = e->T;

#pragma omp parallel for schedule(static)
	for (int b = 0; b < B; b++) {
		for (int t = 0; t < e->len[b]; t++)
			memcpy(buf + (size_t)(e->row0[b] + t) * ld, view + ((size_t)b * T + t) * w,
			       sizeof(float) * (size_t)w);
		if (zero_pad)
			for (int t = e->len[b]; t < row_len(e, b); t++)
				memset(buf + (size_t)(e->row0[b] + t) * ld, 0, sizeof(float) * (size_t)w);
	}
}

static void zero_padding_rows(const mb_engine *e, float *buf, int w, int ld)
{
	for (int b = 0; b < e->B; b++)
		for (int t = e->len[b]; t < row_len(e, b); t++)
			memset(buf + (size_t)(e->row0[b] + t) * ld, 0, sizeof(float) * (size_t)w);
}

static void fill_meta(const mb_engine *e, mb_hook_tensor *t, mb_hook_point p, float *data)
{
	t->point = p;
	t->data = data;
	t->ndim = mb_hook_shape(t->shape, p, &e->cfg, e->B, e->T, e->lrows);
	t->numel = 1;
	for (int i = 0; i < t->ndim; i++)
		t->numel *= (size_t)t->shape[i];
	t->batch = e->B;
	t->seq = e->T;
	t->lengths = e->len;
}

/* Runs the hooks of p on data, a tensor already in hook layout. */
static int dispatch_direct(const mb_engine *e, const mb_hooks *h, mb_hook_point p, float *data,
			   int *wrote, mb_error *err)
{
	mb_hook_tensor t;

	if (wrote)
		*wrote = 0;
	if (!h || !mb_hooks_observes(h, p))
		return 0;
	fill_meta(e, &t, p, data);
	return mb_hooks_deliver(h, &t, "hook", wrote, err);
}

/* Runs the hooks of p on packed rows buf (width w, stride ld): unpacks into a
 * (B, T, w) view, and packs back what writable hooks left. Caches alone are
 * filled straight from the packed rows. */
static int dispatch_rows(mb_engine *e, const mb_hooks *h, mb_hook_point p, float *buf, int w,
			 int ld, mb_error *err)
{
	int only_caches = 1, wrote = 0, rc;
	size_t numel = (size_t)e->B * e->T * w;

	if (!h || !mb_hooks_observes(h, p))
		return 0;
	for (size_t i = 0; i < h->n; i++)
		if (h->v[i].point.kind == p.kind && h->v[i].point.layer == p.layer && !h->v[i].cache)
			only_caches = 0;
	if (only_caches) {
		mb_hook_tensor t;

		fill_meta(e, &t, p, NULL);
		MB_ASSERT(t.numel == numel);
		for (size_t i = 0; i < h->n; i++) {
			const mb_hook_entry *en = &h->v[i];
			float *dst;

			if (en->point.kind != p.kind || en->point.layer != p.layer)
				continue;
			dst = mb_cache_slot_prepare(en->cache, &t, err);
			if (!dst)
				return mb_hooks_error(err, "hook", p, err ? err->code : MB_ENOMEM);
			unpack(e, dst, buf, w, ld);
		}
		return 0;
	}
	rc = grow(&e->view, &e->view_cap, numel, "hook view", err);
	if (rc < 0)
		return rc;
	unpack(e, e->view, buf, w, ld);
	rc = dispatch_direct(e, h, p, e->view, &wrote, err);
	if (rc < 0)
		return rc;
	if (wrote)
		pack(e, buf, ld, e->view, w, 0);
	return 0;
}

/* Init --------------------------------------------------------------------- */

static int probe(const mb_engine_config *c)
{
	int shapes[][3] = {
		{c->d_model, 3 * c->d_model, 0}, {c->d_model, c->d_model, 0},
		{c->d_head, c->d_model, 0},      {c->d_model, c->d_head, 0},
		{c->d_model, c->n_vocab, 1},     {c->d_model, c->d_mlp, 0},
		{c->d_mlp, c->d_model, 0},
	};
	int n = (int)(sizeof(shapes) / sizeof(shapes[0])) - (c->attn_only ? 2 : 0);
	int u = 1;

	for (int i = 0; i < n; i++) {
		int ui = mb_k_gemm_probe_group(shapes[i][0], shapes[i][1], shapes[i][2]);

		if (ui == 0)
			return 0;
		if (ui > u)
			u = ui;
	}
	/* the largest group must also hold for every shape */
	for (int i = 0; i < n; i++) {
		int ui = mb_k_gemm_probe_group(shapes[i][0], shapes[i][1], shapes[i][2]);

		if (ui == 0 || u % ui != 0) /* 0: the probe could not allocate */
			return 0;
	}
	return u;
}

int mb_engine_init(mb_engine **out, const mb_engine_config *cfg, const mb_engine_weights *w,
		   const mb_engine_opts *opts, mb_error *err)
{
	mb_engine *e = NULL;
	int rc;
	size_t D, M, H, Rc, att, per_slot, total;
	float *cur;

	*out = NULL;
	rc = mb_engine_config_check(cfg, err);
	if (rc < 0)
		return rc;
	if (opts->max_batch < 1 || opts->max_batch > (1 << 20))
		return mb_error_set(err, MB_EINVALID, "engine: max_batch %d out of range",
				    opts->max_batch);
	if (opts->max_seq < 1 || opts->max_seq > cfg->n_ctx)
		return mb_error_set(err, MB_EINVALID,
				    "engine: max_seq %d out of range [1, n_positions = %d]",
				    opts->max_seq, cfg->n_ctx);
	e = calloc(1, sizeof(*e));
	if (!e)
		return mb_error_oom(err, "engine", sizeof(*e));
	e->cfg = *cfg;
	e->w = *w;
	e->max_batch = opts->max_batch;
	e->max_seq = opts->max_seq;
	e->keep = opts->keep_activations != 0;
	e->U = probe(cfg);
	e->invariant = e->U > 0;
	if (!e->invariant)
		e->U = 1;
	e->gu = e->invariant ? e->U : 0;
	if (cfg->pos == MB_POS_ROTARY) {
		rc = mb_rotary_table(&e->rot_cos, &e->rot_sin, cfg, err);
		if (rc < 0)
			goto cleanup;
	}
	e->len = calloc((size_t)e->max_batch, sizeof(int32_t));
	e->row0 = calloc((size_t)e->max_batch, sizeof(int32_t));
	e->span = calloc((size_t)e->max_batch, sizeof(int32_t));
	if (!e->len || !e->row0 || !e->span) {
		rc = mb_error_oom(err, "engine plan", 3 * sizeof(int32_t) * (size_t)e->max_batch);
		goto cleanup;
	}
	D = (size_t)cfg->d_model;
	M = (size_t)cfg->d_mlp;
	H = (size_t)cfg->n_head;
	Rc = (size_t)e->max_batch * (size_t)((e->max_seq + e->U - 1) / e->U * e->U);
	if (Rc > (size_t)1 << 30) {
		rc = mb_error_set(err, MB_EINVALID, "engine: max_batch x max_seq too large");
		goto cleanup;
	}
	e->rows_cap = (int)Rc;
	att = (size_t)e->max_batch * H * (size_t)e->max_seq * (size_t)e->max_seq;
	per_slot = 9 * pad16(Rc * D) + 4 * pad16(Rc) + pad16(Rc * 3 * D) + pad16(att) +
		   2 * pad16(Rc * M);
	e->acts.n_slots = e->keep ? cfg->n_layer : 1;
	total = (size_t)e->acts.n_slots * per_slot + 3 * pad16(Rc * D) + 2 * pad16(Rc);
	if (posix_memalign((void **)&e->arena, 64, total * sizeof(float)) != 0) {
		e->arena = NULL;
		rc = mb_error_oom(err, "activation arena", total * sizeof(float));
		goto cleanup;
	}
	e->slots = calloc((size_t)e->acts.n_slots, sizeof(*e->slots));
	if (!e->slots) {
		rc = mb_error_oom(err, "activation slots", sizeof(*e->slots));
		goto cleanup;
	}
	e->acts.layer = e->slots;
	cur = e->arena;
#define TAKE(ptr, n)                                                                   \
	do {                                                                           \
		(ptr) = cur;                                                           \
		cur += pad16(n);                                                       \
	} while (0)
	for (int s = 0; s < e->acts.n_slots; s++) {
		mb_engine_layer_acts *a = &e->slots[s];

		TAKE(a->resid_pre, Rc * D);
		TAKE(a->ln1_xhat, Rc * D);
		TAKE(a->ln1_mean, Rc);
		TAKE(a->ln1_rstd, Rc);
		TAKE(a->ln1_out, Rc * D);
		TAKE(a->qkv, Rc * 3 * D);
		TAKE(a->att, att);
		TAKE(a->z, Rc * D);
		TAKE(a->attn_out, Rc * D);
		TAKE(a->resid_mid, Rc * D);
		TAKE(a->ln2_xhat, Rc * D);
		TAKE(a->ln2_mean, Rc);
		TAKE(a->ln2_rstd, Rc);
		TAKE(a->ln2_out, Rc * D);
		TAKE(a->mlp_pre, Rc * M);
		TAKE(a->mlp_post, Rc * M);
		TAKE(a->mlp_out, Rc * D);
	}
	TAKE(e->acts.resid_final, Rc * D);
	TAKE(e->acts.lnf_xhat, Rc * D);
	TAKE(e->acts.lnf_mean, Rc);
	TAKE(e->acts.lnf_rstd, Rc);
	TAKE(e->acts.lnf_out, Rc * D);
#undef TAKE
	MB_ASSERT((size_t)(cur - e->arena) <= total);
	*out = e;
	e = NULL;
	rc = 0;
cleanup:
	mb_engine_free(e);
	return rc;
}

void mb_engine_free(mb_engine *e)
{
	if (!e)
		return;
	free(e->arena);
	free(e->slots);
	free(e->len);
	free(e->row0);
	free(e->span);
	free(e->tail_z);
	free(e->logits);
	free(e->sel_x);
	free(e->att_p);
	free(e->att_w);
	free(e->view);
	free(e->tmp_a);
	free(e->tmp_b);
	free(e->result);
	free(e->rot_cos);
	free(e->rot_sin);
	free(e);
}

void mb_engine_set_dense_rows(mb_engine *e, int dense) { e->dense = dense != 0; }

void mb_engine_set_compact_tail(mb_engine *e, int compact) { e->compact = compact != 0; }

/* Run checks --------------------------------------------------------------- */

static int check_run(const mb_engine *e, const mb_run *r, mb_error *err)
{
	const mb_engine_config *c = &e->cfg;
	int rc;

	if (r->batch < 1 || r->batch > e->max_batch)
		return mb_error_set(err, MB_EINVALID, "run: batch %d out of range [1, %d]",
				    r->batch, e->max_batch);
	if (r->seq < 1 || r->seq > e->max_seq)
		return mb_error_set(err, MB_EINVALID, "run: seq %d out of range [1, %d]", r->seq,
				    e->max_seq);
	for (int b = 0; b < r->batch; b++) {
		int L = r->lengths ? r->lengths[b] : r->seq;

		if (L < 1 || L > r->seq)
			return mb_error_set(err, MB_EINVALID, "run: item %d: length %d out of range [1, %d]",
					    b, L, r->seq);
	}
	if (r->start_layer < 0 || r->start_layer >= c->n_layer)
		return mb_error_set(err, MB_EINVALID, "run: start_layer %d out of range [0, %d)",
				    r->start_layer, c->n_layer);
	if (r->start_layer > 0 && !r->start_resid)
		return mb_error_set(err, MB_EINVALID,
				    "run: start_layer %d needs start_resid (blocks.%d.hook_resid_pre)",
				    r->start_layer, r->start_layer);
	if (r->start_z && !r->start_resid)
		return mb_error_set(err, MB_EINVALID, "run: start_z needs start_resid");
	if (!r->start_resid) {
		if (!r->tokens)
			return mb_error_set(err, MB_EINVALID, "run: no tokens");
		for (int b = 0; b < r->batch; b++) {
			int L = r->lengths ? r->lengths[b] : r->seq;

			for (int t = 0; t < L; t++) {
				int32_t tok = r->tokens[(size_t)b * r->seq + t];

				if (tok < 0 || tok >= c->n_vocab)
					return mb_error_set(err, MB_EINVALID,
							    "run: item %d position %d: token %d out of range [0, %d)",
							    b, t, (int)tok, c->n_vocab);
			}
		}
	}
	switch (r->logits) {
	case MB_LOGITS_ALL:
	case MB_LOGITS_LAST:
	case MB_LOGITS_NONE:
		break;
	case MB_LOGITS_POSITIONS:
		if (r->n_positions < 1 || r->n_positions > r->seq || !r->positions)
			return mb_error_set(err, MB_EINVALID,
					    "run: n_positions %d out of range [1, %d] or no positions",
					    r->n_positions, r->seq);
		for (int b = 0; b < r->batch; b++) {
			int L = r->lengths ? r->lengths[b] : r->seq;

			for (int i = 0; i < r->n_positions; i++) {
				int32_t p = r->positions[(size_t)b * r->n_positions + i];

				if (p < 0 || p >= L)
					return mb_error_set(err, MB_EINVALID,
							    "run: item %d: logits position %d out of range [0, %d)",
							    b, (int)p, L);
			}
		}
		break;
	default:
		return mb_error_set(err, MB_EINVALID, "run: unknown logits mode %d", (int)r->logits);
	}
	rc = mb_hooks_check(r->hooks, c, err);
	return rc;
}

/* Stages ------------------------------------------------------------------- */

static mb_engine_layer_acts *slot(mb_engine *e, int l) { return &e->slots[e->keep ? l : 0]; }

static int embed(mb_engine *e, const mb_run *r, float *resid, mb_error *err)
{
	const mb_hooks *h = r->hooks;
	int D = e->cfg.d_model, rc;
	int obs = observes(h, MB_HOOK_EMBED, -1) || observes(h, MB_HOOK_POS_EMBED, -1);
	float *tok_e = resid, *pos_e = NULL;

	if (obs) {
		rc = grow(&e->tmp_a, &e->tmp_a_cap, (size_t)e->R * D, "embedding scratch", err);
		if (rc == 0)
			rc = grow(&e->tmp_b, &e->tmp_b_cap, (size_t)e->R * D, "embedding scratch", err);
		if (rc < 0)
			return rc;
		tok_e = e->tmp_a;
		pos_e = e->tmp_b;
	}
#pragma omp parallel for schedule(static)
	for (int b = 0; b < e->B; b++) {
		int Lp = row_len(e, b);

		for (int t = 0; t < Lp; t++) {
			size_t row = (size_t)(e->row0[b] + t) * D;

			if (t >= e->len[b]) {
				memset(tok_e + row, 0, sizeof(float) * (size_t)D);
				if (pos_e)
					memset(pos_e + row, 0, sizeof(float) * (size_t)D);
				continue;
			}
			const float *we = e->w.wte + (size_t)r->tokens[(size_t)b * r->seq + t] * D;
			const float *wp = e->w.wpe ? e->w.wpe + (size_t)t * D : NULL;

			if (!wp) {
				memcpy(tok_e + row, we, sizeof(float) * (size_t)D);
			} else if (pos_e) {
				memcpy(tok_e + row, we, sizeof(float) * (size_t)D);
				memcpy(pos_e + row, wp, sizeof(float) * (size_t)D);
			} else {
				for (int c = 0; c < D; c++)
					resid[row + c] = we[c] + wp[c];
			}
		}
	}
	if (!obs)
		return 0;
	rc = dispatch_rows(e, h, pt(MB_HOOK_EMBED, -1), tok_e, D, D, err);
	if (rc == 0 && e->w.wpe)
		rc = dispatch_rows(e, h, pt(MB_HOOK_POS_EMBED, -1), pos_e, D, D, err);
	if (rc < 0)
		return rc;
	if (e->w.wpe)
		mb_k_add(resid, tok_e, pos_e, (size_t)e->R * D);
	else
		memcpy(resid, tok_e, sizeof(float) * (size_t)e->R * D);
	return 0;
}

/* The weight and bias of LayerNorm k (the hook kind: ln1 or ln2 of layer l,
 * else ln_final); NULL with normalization none. */
static void ln_params(const mb_engine *e, mb_hook_kind k, int l, const float **w, const float **b)
{
	int ln1 = k == MB_HOOK_LN1_NORMALIZED, ln2 = k == MB_HOOK_LN2_NORMALIZED;
	size_t off = ln1 || ln2 ? (size_t)l * e->cfg.d_model : 0;

	*w = *b = NULL;
	if (e->cfg.norm == MB_NORM_LN) {
		*w = (ln1 ? e->w.ln1_w : ln2 ? e->w.ln2_w : e->w.lnf_w) + off;
		*b = (ln1 ? e->w.ln1_b : ln2 ? e->w.ln2_b : e->w.lnf_b) + off;
	}
}

/* out = LN(x) over n rows (a copy with normalization none; out may be x);
 * mean and rstd (may be NULL) get LN's statistics. */
static void ln_apply(const mb_engine *e, float *out, float *mean, float *rstd, const float *x,
		     int n, const float *w, const float *b)
{
	if (e->cfg.norm == MB_NORM_LN)
		mb_k_layernorm(out, NULL, mean, rstd, x, w, b, n, e->cfg.d_model, e->cfg.ln_eps);
	else if (out != x)
		memcpy(out, x, sizeof(float) * (size_t)n * e->cfg.d_model);
}

/* LayerNorm k (ln_params) of n rows x into out, with its hook (observed
 * only over the run's R rows). With keep_activations or an observer, xhat,
 * mean and rstd are kept (normalization none: x, 0 and 1). */
static int norm(mb_engine *e, const mb_hooks *h, mb_hook_kind k, int l, int n, const float *x,
		float *xhat, float *mean, float *rstd, float *out, mb_error *err)
{
	mb_hook_point p = pt(k, l);
	int D = e->cfg.d_model, none = e->cfg.norm == MB_NORM_NONE, rc;
	int obs = h && mb_hooks_observes(h, p);
	const float *w, *b;

	ln_params(e, k, l, &w, &b);
	if (!obs && !e->keep) {
		ln_apply(e, out, mean, rstd, x, n, w, b);
		return 0;
	}
	MB_ASSERT(!obs || n == e->R);
	if (none) {
		memcpy(xhat, x, sizeof(float) * (size_t)n * D);
		for (int i = 0; i < n; i++) {
			mean[i] = 0.0f;
			rstd[i] = 1.0f;
		}
	} else {
		mb_k_layernorm(NULL, xhat, mean, rstd, x, w, b, n, D, e->cfg.ln_eps);
	}
	rc = dispatch_rows(e, h, p, xhat, D, D, err);
	if (rc < 0)
		return rc;
	if (none)
		memcpy(out, xhat, sizeof(float) * (size_t)n * D);
	else
		mb_k_ln_affine(out, xhat, w, b, n, D);
	return 0;
}

/* y (n, N) = x (n, K) W (K, N), W row-major (Conv1D layout), dense rows: a
 * row-grouped GEMM (mb_k_gemm, group e->gu), or with row_kernels the row
 * kernel (a row's bits depend only on its own data, wherever it sits). */
static void linear(const mb_engine *e, int row_kernels, float *y, const float *x, int n,
		   const float *W, int N, int K)
{
	if (row_kernels)
		mb_k_matmul_nn_rows(y, N, x, K, n, W, N, K);
	else
		mb_k_gemm(y, N, x, K, W, N, 0, n, N, K, 1.0f, e->gu);
}

/* One split input X (0 q, 1 k, 2 v): the residual copied per head, its hook,
 * then per head LN1 and the head's columns of W_X. */
static int split_input(mb_engine *e, const mb_hooks *h, int l, int X, mb_engine_layer_acts *a,
		       mb_error *err)
{
	const mb_engine_config *c = &e->cfg;
	int D = c->d_model, H = c->n_head, Dh = c->d_head, B = e->B, T = e->T, rc;
	size_t n = (size_t)B * T * H * D;
	mb_hook_point p = pt((mb_hook_kind)(MB_HOOK_Q_INPUT + X), l);
	const float *wq = e->w.qkv_w + (size_t)l * D * 3 * D;
	const float *lw, *lb;

	rc = grow(&e->view, &e->view_cap, n, "split input view", err);
	if (rc == 0)
		rc = grow(&e->tmp_a, &e->tmp_a_cap, (size_t)e->R * D, "split input", err);
	if (rc == 0)
		rc = grow(&e->tmp_b, &e->tmp_b_cap, (size_t)e->R * D, "split input", err);
	if (rc < 0)
		return rc;
	ln_params(e, MB_HOOK_LN1_NORMALIZED, l, &lw, &lb);
#pragma omp parallel for schedule(static)
	for (int bt = 0; bt < B * T; bt++) {
		int b = bt / T, t = bt % T;

		for (int hh = 0; hh < H; hh++) {
			float *dst = e->view + ((size_t)bt * H + hh) * D;

			if (t < e->len[b])
				memcpy(dst, a->resid_pre + (size_t)(e->row0[b] + t) * D,
				       sizeof(float) * (size_t)D);
			else
				memset(dst, 0, sizeof(float) * (size_t)D);
		}
	}
	rc = dispatch_direct(e, h, p, e->view, NULL, err);
	if (rc < 0)
		return rc;
	for (int hh = 0; hh < H; hh++) {
		/* slice hh of the view, packed: rows of width D at stride H*D */
#pragma omp parallel for schedule(static)
		for (int b = 0; b < B; b++)
			for (int t = 0; t < e->len[b]; t++)
				memcpy(e->tmp_a + (size_t)(e->row0[b] + t) * D,
				       e->view + (((size_t)b * T + t) * H + hh) * D,
				       sizeof(float) * (size_t)D);
		zero_padding_rows(e, e->tmp_a, D, D);
		ln_apply(e, e->tmp_b, NULL, NULL, e->tmp_a, e->R, lw, lb);
		/* qkv[:, X, hh] (R, Dh) = LN1(slice) (R, D) W_X[:, hh] (D, Dh), ld 3D */
		mb_k_gemm(a->qkv + X * D + hh * Dh, 3 * D, e->tmp_b, D, wq + X * D + hh * Dh, 3 * D, 0,
			  e->R, Dh, D, 1.0f, e->gu);
	}
	return 0;
}

/* One step of the causal attention of slot a for every (item, head), in
 * parallel. flag: with ATT_FUSED keep the full pattern, with ATT_SCORES fill
 * the masked scores with -inf (for an observed hook_attn_scores).
 * ATT_BLOCKS: the fused step when nothing reads the pattern: each thread's
 * query blocks go through its own (MB_K_ATT_BLOCK, T) scratch in e->att_w,
 * which stays in cache, instead of a (T, T) block of att (same bits of z). */
enum att_step { ATT_FUSED, ATT_BLOCKS, ATT_SCORES, ATT_SOFTMAX, ATT_PV };

static void att_heads(mb_engine *e, mb_engine_layer_acts *a, enum att_step step, int flag)
{
	const mb_engine_config *c = &e->cfg;
	int D = c->d_model, H = c->n_head, Dh = c->d_head, T = e->T;
	float scale = 1.0f / sqrtf((float)Dh);
	size_t TT = (size_t)T * T;

#pragma omp parallel
	{
		/* the per-head GEMMs then run on the calling thread */
		omp_set_num_threads(1);
#pragma omp for schedule(dynamic, 1)
		for (int bh = 0; bh < e->B * H; bh++) {
			int b = bh / H, hh = bh % H, L = e->len[b];
			const float *q = a->qkv + (size_t)e->row0[b] * 3 * D + (size_t)hh * Dh;
			float *S = a->att + (size_t)bh * TT;
			float *z = a->z + (size_t)e->row0[b] * D + (size_t)hh * Dh;
			float *W = e->att_w + (size_t)omp_get_thread_num() * e->att_w_per;

			switch (step) {
			case ATT_FUSED:
				mb_k_att_fused(z, D, S, T, q, q + D, q + 2 * D, 3 * D, L, Dh, scale, flag,
					       W);
				break;
			case ATT_BLOCKS:
				mb_k_att_fused_scratch(z, D, W, T, q, q + D, q + 2 * D, 3 * D, L, Dh,
						       scale);
				break;
			case ATT_SCORES:
				mb_k_att_scores(S, T, q, q + D, 3 * D, L, Dh, scale, W);
				if (flag)
					mb_k_att_mask_scores(S, T, L);
				break;
			case ATT_SOFTMAX:
				mb_k_att_softmax(S, T, L, 1);
				break;
			case ATT_PV:
				mb_k_att_zero_masked(S, T, L);
				mb_k_att_pv(z, D, S, T, q + 2 * D, 3 * D, L, Dh, W);
				break;
			}
		}
	}
}

int mb_engine_head_attention(mb_engine *e, float *z, const float *q, const float *k,
			     const float *v, int batch, int seq, const int32_t *lengths, int head,
			     mb_error *err)
{
	const mb_engine_config *c = &e->cfg;
	int D = c->d_model, Dh = c->d_head, rc;
	size_t per = mb_k_att_scratch_floats(seq, Dh);
	float scale = 1.0f / sqrtf((float)Dh);

	MB_ASSERT(head >= 0 && head < c->n_head && batch > 0 && seq > 0);
	/* head's q | k | v at the forward's offsets of a (rows, 3D) qkv block,
	 * item b's rows at b * seq; then one scratch per thread */
	rc = grow(&e->view, &e->view_cap, (size_t)batch * seq * 3 * D, "head attention", err);
	if (rc == 0)
		rc = grow(&e->att_w, &e->att_w_cap, (size_t)omp_get_max_threads() * per,
			  "attention scratch", err);
	if (rc < 0)
		return rc;
#pragma omp parallel
	{
		/* the per-head GEMMs run on the calling thread, as in att_heads */
		omp_set_num_threads(1);
#pragma omp for schedule(dynamic, 1)
		for (int b = 0; b < batch; b++) {
			int L = lengths ? lengths[b] : seq;
			float *qkv = e->view + (size_t)b * seq * 3 * D + (size_t)head * Dh;
			float *W = e->att_w + (size_t)omp_get_thread_num() * per;

			for (int t = 0; t < L; t++) {
				size_t in = ((size_t)b * seq + t) * D + (size_t)head * Dh;

				memcpy(qkv + (size_t)t * 3 * D, q + in, sizeof(float) * (size_t)Dh);
				memcpy(qkv + (size_t)t * 3 * D + D, k + in, sizeof(float) * (size_t)Dh);
				memcpy(qkv + (size_t)t * 3 * D + 2 * D, v + in,
				       sizeof(float) * (size_t)Dh);
			}
			mb_k_att_fused_scratch(z + (size_t)b * seq * D + (size_t)head * Dh, D, W, seq,
					       qkv, qkv + D, qkv + 2 * D, 3 * D, L, Dh, scale);
		}
	}
	return 0;
}

/* Causal attention of layer l over every row: z from slot a's q/k/v, with
 * the scores and pattern hooks (scores, softmax and PV as separate steps
 * when one is observed). */
static int attention(mb_engine *e, const mb_hooks *h, int l, mb_engine_layer_acts *a,
		     mb_error *err)
{
	int obs_s = observes(h, MB_HOOK_ATTN_SCORES, l), obs_p = observes(h, MB_HOOK_PATTERN, l);
	int rc;

	/* one scratch per thread of the region att_heads opens */
	e->att_w_per = mb_k_att_scratch_floats(e->T, e->cfg.d_head);
	rc = grow(&e->att_w, &e->att_w_cap, (size_t)omp_get_max_threads() * e->att_w_per,
		  "attention scratch", err);
	if (rc < 0)
		return rc;
	if (!obs_s && !obs_p && !e->keep) {
		att_heads(e, a, ATT_BLOCKS, 0);
	} else if (!obs_s && !obs_p) {
		att_heads(e, a, ATT_FUSED, e->keep);
	} else {
		att_heads(e, a, ATT_SCORES, obs_s);
		rc = dispatch_direct(e, h, pt(MB_HOOK_ATTN_SCORES, l), a->att, NULL, err);
		if (rc < 0)
			return rc;
		att_heads(e, a, ATT_SOFTMAX, 0);
		rc = dispatch_direct(e, h, pt(MB_HOOK_PATTERN, l), a->att, NULL, err);
		if (rc < 0)
			return rc;
		att_heads(e, a, ATT_PV, 0);
	}
	zero_padding_rows(e, a->z, e->cfg.d_model, e->cfg.d_model);
	return 0;
}

/* LN1, the q/k/v projection (split per head for observed inputs) and the
 * q/k/v hooks, over every row. */
static int qkv_stage(mb_engine *e, const mb_hooks *h, int l, mb_engine_layer_acts *a,
		     mb_error *err)
{
	const mb_engine_config *c = &e->cfg;
	const mb_engine_weights *w = &e->w;
	int D = c->d_model, R = e->R, rc, split[3];
	const float *wqkv = w->qkv_w + (size_t)l * D * 3 * D;

	rc = norm(e, h, MB_HOOK_LN1_NORMALIZED, l, R, a->resid_pre, a->ln1_xhat, a->ln1_mean,
		  a->ln1_rstd, a->ln1_out, err);
	if (rc < 0)
		return rc;
	for (int X = 0; X < 3; X++)
		split[X] = observes(h, (mb_hook_kind)(MB_HOOK_Q_INPUT + X), l);
	if (!split[0] && !split[1] && !split[2]) {
		/* qkv (R, 3D) = ln1_out (R, D) W_qkv (D, 3D) */
		linear(e, 0, a->qkv, a->ln1_out, R, wqkv, 3 * D, D);
	} else {
		for (int X = 0; X < 3; X++) {
			if (split[X])
				rc = split_input(e, h, l, X, a, err);
			else /* qkv[:, X] (R, D) = ln1_out (R, D) W_qkv[:, X] (D, D), ld 3D */
				mb_k_gemm(a->qkv + X * D, 3 * D, a->ln1_out, D, wqkv + X * D, 3 * D, 0,
					  R, D, D, 1.0f, e->gu);
			if (rc < 0)
				return rc;
		}
	}
	mb_k_add_bias(a->qkv, 3 * D, w->qkv_b + (size_t)l * 3 * D, R, 3 * D);
	for (int X = 0; X < 3 && rc == 0; X++)
		rc = dispatch_rows(e, h, pt((mb_hook_kind)(MB_HOOK_Q + X), l), a->qkv + X * D, D,
				   3 * D, err);
	if (rc < 0 || c->pos != MB_POS_ROTARY)
		return rc;
	/* q and k rotated in place at valid rows (padding rows stay finite) */
#pragma omp parallel for schedule(static)
	for (int b = 0; b < e->B; b++)
		mb_rotary_rows(a->qkv + (size_t)e->row0[b] * 3 * D, 3 * D, e->len[b], 0, 2, c,
			       e->rot_cos, e->rot_sin, 0);
	for (int X = 0; X < 2 && rc == 0; X++)
		rc = dispatch_rows(e, h, pt((mb_hook_kind)(MB_HOOK_ROT_Q + X), l), a->qkv + X * D, D,
				   3 * D, err);
	return rc;
}

/*
 * The rows that the block after the attention runs over: the run's R packed
 * rows (hooks dispatched), or the last layer's tail, B x N selected rows
 * gathered in order b * N + i (no hooks).
 */
typedef struct block_rows {
	int n;             /* rows */
	const float *z;    /* (n, D) attention output */
	const float *x;    /* (n, D) resid_pre */
	float *out;        /* (n, D) resid_post (may be x) */
	int row_kernels;   /* products by the row kernels instead of row-grouped GEMMs */
	const mb_hooks *h; /* the run's hooks, NULL on the tail */
} block_rows;

/* attn_out = z W_O + b_O over the rows of s (hook_result: per-head outputs,
 * summed in head order). */
static int attn_out(mb_engine *e, int l, mb_engine_layer_acts *a, const block_rows *s,
		    mb_error *err)
{
	const mb_engine_config *c = &e->cfg;
	int D = c->d_model, H = c->n_head, Dh = c->d_head, n = s->n, rc;
	const float *wo = e->w.o_w + (size_t)l * D * D, *bo = e->w.o_b + (size_t)l * D;

	if (!observes(s->h, MB_HOOK_RESULT, l)) {
		/* attn_out (n, D) = z (n, D) W_O (D, D) */
		linear(e, s->row_kernels, a->attn_out, s->z, n, wo, D, D);
		mb_k_add_bias(a->attn_out, D, bo, n, D);
		return 0;
	}
	rc = grow(&e->result, &e->result_cap, (size_t)n * H * D, "hook_result", err);
	if (rc < 0)
		return rc;
	for (int hh = 0; hh < H; hh++) /* result[:, hh] (R, D) = z[:, hh] (R, Dh) W_O[hh] (Dh, D) */
		mb_k_gemm(e->result + (size_t)hh * D, H * D, s->z + (size_t)hh * Dh, D,
			  wo + (size_t)hh * Dh * D, D, 0, n, D, Dh, 1.0f, e->gu);
	rc = dispatch_rows(e, s->h, pt(MB_HOOK_RESULT, l), e->result, H * D, H * D, err);
	if (rc < 0)
		return rc;
#pragma omp parallel for schedule(static)
	for (int r = 0; r < n; r++) {
		float *o = a->attn_out + (size_t)r * D;
		const float *res = e->result + (size_t)r * H * D;

		memcpy(o, res, sizeof(float) * (size_t)D);
		for (int hh = 1; hh < H; hh++)
			for (int k = 0; k < D; k++)
				o[k] += res[(size_t)hh * D + k];
		for (int k = 0; k < D; k++)
			o[k] += bo[k];
	}
	return 0;
}

/* LN2 of ln_in, then the MLP over the rows of s: mlp_out = act(ln2_out W_fc
 * + b_fc) W_proj + b_proj, with the ln2, mlp_pre, mlp_post and mlp_out hooks. */
static int mlp(mb_engine *e, int l, mb_engine_layer_acts *a, const block_rows *s,
	       const float *ln_in, mb_error *err)
{
	const mb_engine_config *c = &e->cfg;
	const mb_engine_weights *w = &e->w;
	const mb_hooks *h = s->h;
	int D = c->d_model, M = c->d_mlp, n = s->n, rc;
	const float *fc_b = w->fc_b + (size_t)l * M;

	rc = norm(e, h, MB_HOOK_LN2_NORMALIZED, l, n, ln_in, a->ln2_xhat, a->ln2_mean, a->ln2_rstd,
		  a->ln2_out, err);
	if (rc < 0)
		return rc;
	/* mlp_pre (n, M) = ln2_out (n, D) W_fc (D, M) */
	linear(e, s->row_kernels, a->mlp_pre, a->ln2_out, n, w->fc_w + (size_t)l * D * M, M, D);
	if (observes(h, MB_HOOK_MLP_PRE, l)) {
		mb_k_add_bias(a->mlp_pre, M, fc_b, n, M);
		rc = dispatch_rows(e, h, pt(MB_HOOK_MLP_PRE, l), a->mlp_pre, M, M, err);
		if (rc < 0)
			return rc;
		mb_k_act(a->mlp_post, a->mlp_pre, (size_t)n * M, c->act);
	} else {
		mb_k_bias_act(a->mlp_post, a->mlp_pre, fc_b, n, M, c->act);
	}
	rc = dispatch_rows(e, h, pt(MB_HOOK_MLP_POST, l), a->mlp_post, M, M, err);
	if (rc < 0)
		return rc;
	/* mlp_out (n, D) = mlp_post (n, M) W_proj (M, D) */
	linear(e, s->row_kernels, a->mlp_out, a->mlp_post, n, w->proj_w + (size_t)l * M * D, D, M);
	mb_k_add_bias(a->mlp_out, D, w->proj_b + (size_t)l * D, n, D);
	return dispatch_rows(e, h, pt(MB_HOOK_MLP_OUT, l), a->mlp_out, D, D, err);
}

/* The block after the attention over the rows of s, in slot a's rows 0..n-1
 * (GPT-2 and GPT-NeoX alike): attn_out, resid_mid = x + attn_out, LN2 of
 * resid_mid (of x with a parallel residual, where resid_mid is only the
 * partial sum and has no hook) and the MLP, out = resid_mid + mlp_out. */
static int block_out(mb_engine *e, int l, mb_engine_layer_acts *a, const block_rows *s,
		     mb_error *err)
{
	const mb_engine_config *c = &e->cfg;
	const mb_hooks *h = s->h;
	int D = c->d_model, rc;
	size_t nD = (size_t)s->n * D;

	MB_ASSERT(!h || s->n == e->R);
	rc = attn_out(e, l, a, s, err);
	if (rc == 0)
		rc = dispatch_rows(e, h, pt(MB_HOOK_ATTN_OUT, l), a->attn_out, D, D, err);
	if (rc < 0)
		return rc;
	mb_k_add(a->resid_mid, s->x, a->attn_out, nD);
	if (!c->parallel) {
		rc = dispatch_rows(e, h, pt(MB_HOOK_RESID_MID, l), a->resid_mid, D, D, err);
		if (rc < 0)
			return rc;
	}
	if (c->attn_only) {
		memcpy(s->out, a->resid_mid, sizeof(float) * nD);
	} else {
		rc = mlp(e, l, a, s, c->parallel ? s->x : a->resid_mid, err);
		if (rc < 0)
			return rc;
		mb_k_add(s->out, a->resid_mid, a->mlp_out, nD);
	}
	return dispatch_rows(e, h, pt(MB_HOOK_RESID_POST, l), s->out, D, D, err);
}

/* The last layer's tail ------------------------------------------------------ */

/*
 * How the last layer runs when the metric reads logits at a few positions
 * (LAST / POSITIONS): after its q/k/v (every row: the keys and values), only
 * the B x N selected rows go on (the tail), or every row (TAIL_NONE).
 *   TAIL_SELECTED: nothing kept for a backward, no hook on what follows the
 *     last layer's q/k/v, no exact_tail: attention for the selected query
 *     rows alone, and every product by the row kernels, so an item's bits do
 *     not depend on its batch.
 *   TAIL_COMPACT (mb_engine_set_compact_tail, training on the last position):
 *     keep_activations, LAST, no hooks, no start_z, every item of length T, no
 *     parallel residual: the full attention (the backward reads the pattern),
 *     then the B last rows through the row-grouped GEMMs of a full run (a
 *     training batch is thousands of rows), kept for the backward
 *     (mb_engine_acts.tail).
 *   TAIL_EXACT: where TAIL_NONE would run (a hook on the scores, pattern or
 *     hook_z, start_z at the last layer, or exact_tail) and nothing after
 *     hook_z nor ln_final is observed, on the portable GEMM: the selected
 *     rows' bits of TAIL_NONE at the cost of the selected rows. Every GEMM
 *     element there is one FMA chain over k whatever other rows are computed
 *     with it (gemm.c), LayerNorm, biases, activations and residual adds are
 *     per row, and mb_k_att_row is the full attention's query row: so the
 *     selected rows go through the same GEMMs after hook_z, and before it,
 *     when nothing observes the layer's LN1, q/k/v, scores, pattern or z and
 *     positions are learned, only the keys and values run over every row
 *     (q on the selected rows alone).
 *   TAIL_STOP: MB_LOGITS_NONE, nothing kept, nothing after the last layer's
 *     hook_z observed (a run for its caches, e.g. a patching source): the
 *     last layer stops after hook_z; acts.resid_final is not written.
 */
enum { TAIL_NONE, TAIL_SELECTED, TAIL_COMPACT, TAIL_EXACT, TAIL_STOP };

static int tail_plan(const mb_engine *e, const mb_run *r)
{
	static const mb_hook_kind after_z[] = {
		MB_HOOK_RESULT,	   MB_HOOK_ATTN_OUT, MB_HOOK_RESID_MID,  MB_HOOK_LN2_NORMALIZED,
		MB_HOOK_MLP_PRE,   MB_HOOK_MLP_POST, MB_HOOK_MLP_OUT,	 MB_HOOK_RESID_POST,
	};
	static const mb_hook_kind att[] = {MB_HOOK_ATTN_SCORES, MB_HOOK_PATTERN, MB_HOOK_Z};
	int last = e->cfg.n_layer - 1, selected = !r->exact_tail;

	if (r->logits == MB_LOGITS_NONE && !e->keep &&
	    !observes(r->hooks, MB_HOOK_LN_FINAL_NORMALIZED, -1)) {
		for (size_t i = 0; i < sizeof(after_z) / sizeof(after_z[0]); i++)
			if (observes(r->hooks, after_z[i], last))
				return TAIL_NONE;
		return TAIL_STOP;
	}
	if (r->logits != MB_LOGITS_LAST && r->logits != MB_LOGITS_POSITIONS)
		return TAIL_NONE;
	if (e->keep) {
		if (!e->compact || r->logits != MB_LOGITS_LAST || r->hooks || r->start_z ||
		    e->cfg.parallel)
			return TAIL_NONE;
		for (int b = 0; b < e->B; b++)
			if (e->len[b] != e->T)
				return TAIL_NONE;
		return TAIL_COMPACT;
	}
	if (observes(r->hooks, MB_HOOK_LN_FINAL_NORMALIZED, -1))
		return TAIL_NONE;
	for (size_t i = 0; i < sizeof(after_z) / sizeof(after_z[0]); i++)
		if (observes(r->hooks, after_z[i], last))
			return TAIL_NONE;
	if (r->start_z && r->start_layer == last)
		selected = 0;
	for (size_t i = 0; i < sizeof(att) / sizeof(att[0]); i++)
		if (observes(r->hooks, att[i], last))
			selected = 0;
	if (selected)
		return TAIL_SELECTED;
	return mb_gemm_current() == MB_GEMM_PORTABLE && e->invariant ? TAIL_EXACT : TAIL_NONE;
}

/* The selected logit position of item b, row i. */
static int sel_pos(const mb_engine *e, const mb_run *r, int b, int i)
{
	return r->logits == MB_LOGITS_LAST ? e->len[b] - 1 : r->positions[(size_t)b * e->lrows + i];
}

/* dst (B * N, D), row b * N + i <- src's packed row of item b's selected
 * position i. */
static void gather_sel(const mb_engine *e, const mb_run *r, float *dst, const float *src)
{
	int D = e->cfg.d_model, N = e->lrows;

	for (int b = 0; b < e->B; b++)
		for (int i = 0; i < N; i++)
			memcpy(dst + ((size_t)b * N + i) * D,
			       src + (size_t)(e->row0[b] + sel_pos(e, r, b, i)) * D,
			       sizeof(float) * (size_t)D);
}

/* TAIL_EXACT without an observer before hook_z: LN1 and the keys and values
 * over every row (qkv's K | V columns), q of the selected rows alone (into
 * e->tmp_a), each through the GEMMs of qkv_stage; then mb_k_att_row for each
 * selected (item, head, position) into e->tail_z. */
static int exact_attention(mb_engine *e, const mb_run *r, int l, mb_engine_layer_acts *a,
			   mb_error *err)
{
	const mb_engine_config *c = &e->cfg;
	int D = c->d_model, H = c->n_head, Dh = c->d_head, B = e->B, N = e->lrows, n = B * N;
	const float *wqkv = e->w.qkv_w + (size_t)l * D * 3 * D, *bqkv = e->w.qkv_b + (size_t)l * 3 * D;
	const float *lw, *lb;
	float scale = 1.0f / sqrtf((float)Dh);
	int rc;

	rc = grow(&e->tmp_b, &e->tmp_b_cap, (size_t)n * D, "tail rows", err);
	if (rc == 0)
		rc = grow(&e->att_p, &e->att_p_cap, (size_t)omp_get_max_threads() * e->T,
			  "attention scratch", err);
	if (rc < 0)
		return rc;
	ln_params(e, MB_HOOK_LN1_NORMALIZED, l, &lw, &lb);
	ln_apply(e, a->ln1_out, a->ln1_mean, a->ln1_rstd, a->resid_pre, e->R, lw, lb);
	/* qkv[:, K | V] (R, 2D) = ln1_out (R, D) W_qkv[:, D:3D] (D, 2D), ld 3D */
	mb_k_gemm(a->qkv + D, 3 * D, a->ln1_out, D, wqkv + D, 3 * D, 0, e->R, 2 * D, D, 1.0f,
		  e->gu);
	mb_k_add_bias(a->qkv + D, 3 * D, bqkv + D, e->R, 2 * D);
	/* q (n, D) = ln1_out[selected] (n, D) W_qkv[:, 0:D] (D, D) */
	gather_sel(e, r, e->tmp_b, a->ln1_out);
	mb_k_gemm(e->tmp_a, D, e->tmp_b, D, wqkv, 3 * D, 0, n, D, D, 1.0f, e->gu);
	mb_k_add_bias(e->tmp_a, D, bqkv, n, D);
#pragma omp parallel for schedule(dynamic, 1)
	for (int bh = 0; bh < B * H; bh++) {
		int b = bh / H, hh = bh % H, tid = omp_get_thread_num();
		const float *base = a->qkv + (size_t)e->row0[b] * 3 * D + (size_t)hh * Dh;

		for (int i = 0; i < N; i++) {
			size_t row = ((size_t)b * N + i) * D + (size_t)hh * Dh;

			mb_k_att_row(e->tail_z + row, e->att_p + (size_t)tid * e->T, e->tmp_a + row,
				     base + D, base + 2 * D, 3 * D, sel_pos(e, r, b, i), e->len[b], Dh,
				     scale);
		}
	}
	return 0;
}

/* The last layer with a tail (tail_plan): q/k/v over every row (TAIL_EXACT:
 * or only the keys and values), z at the selected rows (gathered into
 * e->tail_z), then the block after the attention on those rows; out rows
 * 0..B*N-1 get their resid_post and e->tail_rows is set. start_z: the run's,
 * when it starts at this layer (TAIL_EXACT only). */
static int tail_layer(mb_engine *e, const mb_run *r, int l, const float *start_z, float *out,
		      mb_error *err)
{
	static const mb_hook_kind before_z[] = {
		MB_HOOK_LN1_NORMALIZED, MB_HOOK_Q_INPUT, MB_HOOK_K_INPUT,     MB_HOOK_V_INPUT,
		MB_HOOK_Q,		MB_HOOK_K,	 MB_HOOK_V,	      MB_HOOK_ROT_Q,
		MB_HOOK_ROT_K,		MB_HOOK_Z,	 MB_HOOK_ATTN_SCORES, MB_HOOK_PATTERN,
	};
	const mb_engine_config *c = &e->cfg;
	const mb_hooks *h = r->hooks;
	mb_engine_layer_acts *a = slot(e, l);
	int D = c->d_model, H = c->n_head, Dh = c->d_head, T = e->T, B = e->B;
	int N = e->lrows, n = B * N, compact = e->tail == TAIL_COMPACT;
	int exact = e->tail == TAIL_EXACT, full_z = compact || start_z, rc;
	float scale = 1.0f / sqrtf((float)Dh);
	block_rows s;

	if (exact && !start_z) {
		full_z = c->pos == MB_POS_ROTARY;
		for (size_t i = 0; i < sizeof(before_z) / sizeof(before_z[0]); i++)
			full_z |= observes(h, before_z[i], l);
	}
	rc = dispatch_rows(e, h, pt(MB_HOOK_RESID_PRE, l), a->resid_pre, D, D, err);
	if (rc == 0 && !start_z && (full_z || !exact))
		rc = qkv_stage(e, h, l, a, err);
	if (rc == 0)
		rc = grow(&e->tail_z, &e->tail_z_cap, (size_t)n * D, "tail rows", err);
	if (rc == 0)
		rc = grow(&e->tmp_a, &e->tmp_a_cap, (size_t)n * D, "tail rows", err);
	if (rc == 0 && !full_z && !exact)
		rc = grow(&e->att_p, &e->att_p_cap, (size_t)omp_get_max_threads() * T,
			  "attention scratch", err);
	if (rc < 0)
		return rc;
	if (start_z) {
		pack(e, a->z, D, start_z, D, 1);
	} else if (full_z) {
		rc = attention(e, compact ? NULL : h, l, a, err);
		if (rc < 0)
			return rc;
	}
	if (full_z) {
		if (exact)
			rc = dispatch_rows(e, h, pt(MB_HOOK_Z, l), a->z, D, D, err);
		if (rc < 0)
			return rc;
		gather_sel(e, r, e->tail_z, a->z);
		if (compact)
			e->acts.tail_z = e->tail_z;
	} else if (exact) {
		rc = exact_attention(e, r, l, a, err);
		if (rc < 0)
			return rc;
	} else {
#pragma omp parallel for schedule(dynamic, 1)
		for (int bh = 0; bh < B * H; bh++) {
			int b = bh / H, hh = bh % H, tid = omp_get_thread_num();
			const float *base = a->qkv + (size_t)e->row0[b] * 3 * D + (size_t)hh * Dh;

			for (int i = 0; i < N; i++) {
				int t = sel_pos(e, r, b, i);

				mb_k_att_query(e->tail_z + ((size_t)b * N + i) * D + (size_t)hh * Dh,
					       e->att_p + (size_t)tid * T, base + (size_t)t * 3 * D,
					       base + D, base + 2 * D, 3 * D, t, Dh, scale);
			}
		}
	}
	gather_sel(e, r, e->tmp_a, a->resid_pre);
	s = (block_rows){n, e->tail_z, e->tmp_a, out, !compact && !exact, NULL};
	rc = block_out(e, l, a, &s, err);
	if (rc == 0)
		e->tail_rows = n;
	return rc;
}

/* Layers and logits ---------------------------------------------------------- */

static int layer(mb_engine *e, const mb_run *r, int l, const float *start_z, float *next,
		 mb_error *err)
{
	const mb_hooks *h = r->hooks;
	mb_engine_layer_acts *a = slot(e, l);
	int D = e->cfg.d_model, rc;
	block_rows s = {e->R, a->z, a->resid_pre, next, 0, h};

	if (l == e->cfg.n_layer - 1 && e->tail != TAIL_NONE && e->tail != TAIL_STOP)
		return tail_layer(e, r, l, start_z, next, err);
	rc = dispatch_rows(e, h, pt(MB_HOOK_RESID_PRE, l), a->resid_pre, D, D, err);
	if (rc < 0)
		return rc;
	if (start_z) {
		pack(e, a->z, D, start_z, D, 1);
	} else {
		rc = qkv_stage(e, h, l, a, err);
		if (rc == 0)
			rc = attention(e, h, l, a, err);
		if (rc < 0)
			return rc;
	}
	rc = dispatch_rows(e, h, pt(MB_HOOK_Z, l), a->z, D, D, err);
	if (rc < 0 || (l == e->cfg.n_layer - 1 && e->tail == TAIL_STOP))
		return rc;
	return block_out(e, l, a, &s, err);
}

/* LN_f and the logits of the last run from acts.resid_final: over every row
 * (ALL, or LN_f alone when kept or observed), or over the selected rows: the
 * tail's (rows 0..B*N-1), or gathered from a full last layer. */
static int unembed(mb_engine *e, const mb_run *r, mb_error *err)
{
	const mb_engine_config *c = &e->cfg;
	const mb_hooks *h = r->hooks;
	mb_engine_acts *a = &e->acts;
	int D = c->d_model, V = c->n_vocab, n = e->tail_rows, normed = 0, rc;
	const float *x = a->resid_final;

	if (n == 0) {
		int full = r->logits == MB_LOGITS_ALL ||
			   observes(h, MB_HOOK_LN_FINAL_NORMALIZED, -1) || e->keep;

		if (full) {
			rc = norm(e, h, MB_HOOK_LN_FINAL_NORMALIZED, -1, e->R, x, a->lnf_xhat,
				  a->lnf_mean, a->lnf_rstd, a->lnf_out, err);
			if (rc < 0)
				return rc;
		}
		if (r->logits == MB_LOGITS_NONE)
			return 0;
		if (r->logits == MB_LOGITS_ALL) {
			rc = grow(&e->logits, &e->logits_cap, (size_t)e->R * V, "logits", err);
			if (rc < 0)
				return rc;
			/* logits (R, V) = lnf_out (R, D) W_U^T, W_U (V, D) */
			mb_k_gemm(e->logits, V, a->lnf_out, D, e->w.unembed, D, 1, e->R, V, D, 1.0f,
				  e->gu);
			return dispatch_rows(e, h, pt(MB_HOOK_LOGITS, -1), e->logits, V, V, err);
		}
		n = e->B * e->lrows;
		rc = grow(&e->sel_x, &e->sel_x_cap, (size_t)n * D, "selected rows", err);
		if (rc < 0)
			return rc;
		gather_sel(e, r, e->sel_x, full ? a->lnf_out : x);
		x = e->sel_x;
		normed = full;
	}
	rc = grow(&e->logits, &e->logits_cap, (size_t)n * V, "logits", err);
	if (rc < 0)
		return rc;
	if (!normed) {
		/* LN_f of the selected rows (kept for the backward in the compact tail) */
		rc = norm(e, NULL, MB_HOOK_LN_FINAL_NORMALIZED, -1, n, x, a->lnf_xhat, a->lnf_mean,
			  a->lnf_rstd, a->lnf_out, err);
		if (rc < 0)
			return rc;
		x = a->lnf_out;
	}
	if (e->tail == TAIL_COMPACT) /* logits (B, V) = x (B, D) W_U^T, W_U (V, D) */
		mb_k_gemm(e->logits, V, x, D, e->w.unembed, D, 1, n, V, D, 1.0f, e->gu);
	else /* logits (B * N, V) = x (B * N, D) W_U^T, W_U (V, D); the row kernel */
		mb_k_matmul_nt_rows(e->logits, V, x, n, e->w.unembed, V, D);
	return dispatch_direct(e, h, pt(MB_HOOK_LOGITS, -1), e->logits, NULL, err);
}

/* Forward ------------------------------------------------------------------ */

int mb_engine_forward(mb_engine *e, const mb_run *r, mb_error *err)
{
	const mb_engine_config *c = &e->cfg;
	int D = c->d_model, rc, l0 = r->start_layer;
	float *resid;

	e->lrows = 0;
	e->lmode = MB_LOGITS_NONE;
	e->tail_rows = 0;
	e->tail = TAIL_NONE;
	rc = check_run(e, r, err);
	if (rc < 0)
		return rc;
	e->lmode = r->logits;
	e->lrows = r->logits == MB_LOGITS_ALL ? r->seq : r->logits == MB_LOGITS_LAST ? 1
			     : r->logits == MB_LOGITS_POSITIONS ? r->n_positions : 0;
	e->B = r->batch;
	e->T = r->seq;
	e->R = 0;
	for (int b = 0; b < e->B; b++) {
		e->len[b] = r->lengths ? r->lengths[b] : r->seq;
		e->row0[b] = e->R;
		e->span[b] = e->dense ? e->len[b] : (e->len[b] + e->U - 1) / e->U * e->U;
		e->R += e->span[b];
	}
	if (e->dense) {
		/* only the run's end is padded to the row group: the last item owns it */
		int Rp = (e->R + e->U - 1) / e->U * e->U;

		e->span[e->B - 1] += Rp - e->R;
		e->R = Rp;
	}
	e->tail = tail_plan(e, r);
	e->acts.tail = e->tail == TAIL_COMPACT ? e->B : 0;
	e->acts.tail_z = NULL;
	mb_hooks_begin_run(r->hooks);
	resid = slot(e, l0)->resid_pre;
	if (r->start_resid)
		pack(e, resid, D, r->start_resid, D, 1);
	else if ((rc = embed(e, r, resid, err)) < 0)
		return rc;
	for (int l = l0; l < c->n_layer; l++) {
		float *next = l + 1 < c->n_layer ? slot(e, l + 1)->resid_pre : e->acts.resid_final;

		rc = layer(e, r, l, l == l0 ? r->start_z : NULL, next, err);
		if (rc < 0)
			return rc;
	}
	return unembed(e, r, err);
}

/* Accessors ---------------------------------------------------------------- */

const float *mb_engine_logits_row(const mb_engine *e, int b, int i)
{
	if (!e->logits || e->lrows == 0 || b < 0 || b >= e->B || i < 0 || i >= e->lrows)
		return NULL;
	if (e->lmode == MB_LOGITS_ALL)
		return i < e->len[b] ? e->logits + (size_t)(e->row0[b] + i) * e->cfg.n_vocab : NULL;
	return e->logits + ((size_t)b * e->lrows + i) * e->cfg.n_vocab;
}

int mb_engine_logits_per_item(const mb_engine *e) { return e->lrows; }

void mb_engine_logits_copy(const mb_engine *e, float *out)
{
	size_t V = (size_t)e->cfg.n_vocab;

	for (int b = 0; b < e->B; b++)
		for (int i = 0; i < e->lrows; i++) {
			const float *src = mb_engine_logits_row(e, b, i);
			float *dst = out + ((size_t)b * e->lrows + i) * V;

			if (src)
				memcpy(dst, src, sizeof(float) * V);
			else
				memset(dst, 0, sizeof(float) * V);
		}
}

const mb_engine_config *mb_engine_cfg(const mb_engine *e) { return &e->cfg; }
const mb_engine_weights *mb_engine_w(const mb_engine *e) { return &e->w; }
const mb_engine_acts *mb_engine_activations(const mb_engine *e) { return &e->acts; }
int mb_engine_row_group(const mb_engine *e) { return e->invariant ? e->U : 0; }

void mb_engine_rows_of(mb_engine_rows *out, const mb_engine *e)
{
	out->batch = e->B;
	out->seq = e->T;
	out->group = e->U;
	out->rows = e->R;
	out->len = e->len;
	out->row0 = e->row0;
}
