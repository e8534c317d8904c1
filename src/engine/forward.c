/*
 * forward.c: the batched GPT-2 forward with hook dispatch.
 *
 * Shape letters: B batch, T positions, D d_model, H heads, Dh d_head, M d_mlp,
 * V vocab, L layers, R packed rows of the run (engine.h), Rc packed rows of the
 * largest run, N selected logit rows per item, U the GEMM row group.
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
 */
#include <mechbench/engine.h>
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
	float *tail_z; /* (max_batch, D) the last layer's z at each item's last position */
	size_t tail_z_cap;

	/* logits of the last run */
	mb_logits_mode lmode;
	int lrows;     /* rows per item: T, 1, N or 0 */
	float *logits; /* ALL: (R, V) packed; LAST/POSITIONS: (B, N, V) */
	size_t logits_cap;
	float *sel_x;  /* (B * N, D) rows of the selected positions: resid, then final LN */
	size_t sel_x_cap;
	float *sel_y;  /* (B * N, D) scratch of the last layer on selected rows */
	size_t sel_y_cap;
	float *sel_z;  /* (B * N, D) their attention output */
	size_t sel_z_cap;
	float *sel_m;  /* (B * N, M) their MLP activations */
	size_t sel_m_cap;
	float *att_p;  /* (threads, T) attention weights of one query row */
	size_t att_p_cap;
	int tail_done; /* the last layer ran on the selected rows only */

	/* hook scratch, grown on first need and kept */
	float *view;   /* a hook's (B, T, ...) tensor */
	size_t view_cap;
	float *tmp_a;  /* (R, D): embeddings, or one head's split input */
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
	int B = e->B, T = e->T;

#pragma omp parallel for schedule(static)
	for (int bt = 0; bt < B * T; bt++) {
		int b = bt / T, t = bt % T;
		float *dst = view + (size_t)bt * w;

		if (t < e->len[b])
			memcpy(dst, buf + (size_t)(e->row0[b] + t) * ld, sizeof(float) * (size_t)w);
		else
			memset(dst, 0, sizeof(float) * (size_t)w);
	}
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
	free(e->sel_y);
	free(e->sel_z);
	free(e->sel_m);
	free(e->att_p);
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

/* LN (or the identity with normalization none) of R rows with its hook. */
static int norm(mb_engine *e, const mb_hooks *h, mb_hook_point p, const float *x, float *xhat,
		float *mean, float *rstd, float *out, const float *w, const float *b,
		mb_error *err)
{
	int D = e->cfg.d_model, R = e->R, rc;
	int obs = h && mb_hooks_observes(h, p);

	if (e->cfg.norm == MB_NORM_NONE) {
		if (!obs && !e->keep) {
			memcpy(out, x, sizeof(float) * (size_t)R * D);
			return 0;
		}
		memcpy(xhat, x, sizeof(float) * (size_t)R * D);
		for (int i = 0; i < R; i++) {
			mean[i] = 0.0f;
			rstd[i] = 1.0f;
		}
		rc = dispatch_rows(e, h, p, xhat, D, D, err);
		if (rc < 0)
			return rc;
		memcpy(out, xhat, sizeof(float) * (size_t)R * D);
		return 0;
	}
	if (!obs && !e->keep) {
		mb_k_layernorm(out, NULL, mean, rstd, x, w, b, R, D, e->cfg.ln_eps);
		return 0;
	}
	mb_k_layernorm(NULL, xhat, mean, rstd, x, w, b, R, D, e->cfg.ln_eps);
	rc = dispatch_rows(e, h, p, xhat, D, D, err);
	if (rc < 0)
		return rc;
	mb_k_ln_affine(out, xhat, w, b, R, D);
	return 0;
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

	rc = grow(&e->view, &e->view_cap, n, "split input view", err);
	if (rc == 0)
		rc = grow(&e->tmp_a, &e->tmp_a_cap, (size_t)e->R * D, "split input", err);
	if (rc == 0)
		rc = grow(&e->tmp_b, &e->tmp_b_cap, (size_t)e->R * D, "split input", err);
	if (rc < 0)
		return rc;
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
		if (c->norm == MB_NORM_LN)
			mb_k_layernorm(e->tmp_b, NULL, NULL, NULL, e->tmp_a, e->w.ln1_w + (size_t)l * D,
				       e->w.ln1_b + (size_t)l * D, e->R, D, c->ln_eps);
		else
			memcpy(e->tmp_b, e->tmp_a, sizeof(float) * (size_t)e->R * D);
		mb_k_gemm(a->qkv + X * D + hh * Dh, 3 * D, e->tmp_b, D, wq + X * D + hh * Dh, 3 * D, 0,
			  e->R, Dh, D, 1.0f, e->gu);
	}
	return 0;
}

static int attention(mb_engine *e, const mb_hooks *h, int l, mb_engine_layer_acts *a,
		     mb_error *err)
{
	const mb_engine_config *c = &e->cfg;
	int D = c->d_model, H = c->n_head, Dh = c->d_head, T = e->T, BH = e->B * H, rc;
	int obs_s = observes(h, MB_HOOK_ATTN_SCORES, l), obs_p = observes(h, MB_HOOK_PATTERN, l);
	int full = e->keep || obs_s || obs_p;
	float scale = 1.0f / sqrtf((float)Dh);
	size_t TT = (size_t)T * T;

	if (!obs_s && !obs_p) {
#pragma omp parallel
		{
			omp_set_num_threads(1);
#pragma omp for schedule(dynamic, 1)
			for (int bh = 0; bh < BH; bh++) {
				int b = bh / H, hh = bh % H;
				const float *q = a->qkv + (size_t)e->row0[b] * 3 * D + (size_t)hh * Dh;

				mb_k_att_fused(a->z + (size_t)e->row0[b] * D + (size_t)hh * Dh, D,
					       a->att + (size_t)bh * TT, T, q, q + D, q + 2 * D, 3 * D,
					       e->len[b], Dh, scale, full);
			}
		}
	} else {
#pragma omp parallel
		{
			omp_set_num_threads(1);
#pragma omp for schedule(dynamic, 1)
			for (int bh = 0; bh < BH; bh++) {
				int b = bh / H, hh = bh % H;
				const float *q = a->qkv + (size_t)e->row0[b] * 3 * D + (size_t)hh * Dh;

				mb_k_att_scores(a->att + (size_t)bh * TT, T, q, q + D, 3 * D, e->len[b],
						Dh, scale);
				if (obs_s)
					mb_k_att_mask_scores(a->att + (size_t)bh * TT, T, e->len[b]);
			}
		}
		rc = dispatch_direct(e, h, pt(MB_HOOK_ATTN_SCORES, l), a->att, NULL, err);
		if (rc < 0)
			return rc;
#pragma omp parallel for schedule(dynamic, 1)
		for (int bh = 0; bh < BH; bh++)
			mb_k_att_softmax(a->att + (size_t)bh * TT, T, e->len[bh / H], 1);
		rc = dispatch_direct(e, h, pt(MB_HOOK_PATTERN, l), a->att, NULL, err);
		if (rc < 0)
			return rc;
#pragma omp parallel
		{
			omp_set_num_threads(1);
#pragma omp for schedule(dynamic, 1)
			for (int bh = 0; bh < BH; bh++) {
				int b = bh / H, hh = bh % H;
				const float *v = a->qkv + (size_t)e->row0[b] * 3 * D + 2 * (size_t)D +
						 (size_t)hh * Dh;

				mb_k_att_zero_masked(a->att + (size_t)bh * TT, T, e->len[b]);
				mb_k_att_pv(a->z + (size_t)e->row0[b] * D + (size_t)hh * Dh, D,
					    a->att + (size_t)bh * TT, T, v, 3 * D, e->len[b], Dh);
			}
		}
	}
	zero_padding_rows(e, a->z, D, D);
	return 0;
}

static int attn_out(mb_engine *e, const mb_hooks *h, int l, mb_engine_layer_acts *a,
		    mb_error *err)
{
	const mb_engine_config *c = &e->cfg;
	int D = c->d_model, H = c->n_head, Dh = c->d_head, R = e->R, rc;
	const float *wo = e->w.o_w + (size_t)l * D * D, *bo = e->w.o_b + (size_t)l * D;

	if (!observes(h, MB_HOOK_RESULT, l)) {
		mb_k_gemm(a->attn_out, D, a->z, D, wo, D, 0, R, D, D, 1.0f, e->gu);
		mb_k_add_bias(a->attn_out, D, bo, R, D);
		return 0;
	}
	rc = grow(&e->result, &e->result_cap, (size_t)R * H * D, "hook_result", err);
	if (rc < 0)
		return rc;
	for (int hh = 0; hh < H; hh++)
		mb_k_gemm(e->result + (size_t)hh * D, H * D, a->z + (size_t)hh * Dh, D,
			  wo + (size_t)hh * Dh * D, D, 0, R, D, Dh, 1.0f, e->gu);
	rc = dispatch_rows(e, h, pt(MB_HOOK_RESULT, l), e->result, H * D, H * D, err);
	if (rc < 0)
		return rc;
#pragma omp parallel for schedule(static)
	for (int r = 0; r < R; r++) {
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

/*
 * The last layer after hook_z when the run reads only each item's last
 * position (engine.h, mb_engine_set_compact_tail): the rows of the B last
 * positions are gathered into rows 0..B-1 and everything after the attention
 * (attn_out, resid_mid, LN2, MLP, resid_post into next) runs on those B rows.
 */
static int layer_tail(mb_engine *e, int l, mb_engine_layer_acts *a, float *next, mb_error *err)
{
	const mb_engine_config *c = &e->cfg;
	const mb_engine_weights *w = &e->w;
	int D = c->d_model, M = c->d_mlp, S = e->B, rc;
	size_t SD = (size_t)S * D;
	float *zs, *rs;

	rc = grow(&e->tail_z, &e->tail_z_cap, SD, "compact tail", err);
	if (rc == 0)
		rc = grow(&e->tmp_a, &e->tmp_a_cap, SD, "compact tail", err);
	if (rc < 0)
		return rc;
	zs = e->tail_z;
	rs = e->tmp_a;
	for (int b = 0; b < S; b++) {
		size_t row = (size_t)(e->row0[b] + e->len[b] - 1) * D;

		memcpy(zs + (size_t)b * D, a->z + row, sizeof(float) * (size_t)D);
		memcpy(rs + (size_t)b * D, a->resid_pre + row, sizeof(float) * (size_t)D);
	}
	mb_k_gemm(a->attn_out, D, zs, D, w->o_w + (size_t)l * D * D, D, 0, S, D, D, 1.0f, e->gu);
	mb_k_add_bias(a->attn_out, D, w->o_b + (size_t)l * D, S, D);
	mb_k_add(a->resid_mid, rs, a->attn_out, SD);
	if (c->attn_only) {
		memcpy(next, a->resid_mid, sizeof(float) * SD);
		return 0;
	}
	if (c->norm == MB_NORM_LN) {
		mb_k_layernorm(NULL, a->ln2_xhat, a->ln2_mean, a->ln2_rstd, a->resid_mid,
			       w->ln2_w + (size_t)l * D, w->ln2_b + (size_t)l * D, S, D, c->ln_eps);
		mb_k_ln_affine(a->ln2_out, a->ln2_xhat, w->ln2_w + (size_t)l * D,
			       w->ln2_b + (size_t)l * D, S, D);
	} else {
		memcpy(a->ln2_xhat, a->resid_mid, sizeof(float) * SD);
		memcpy(a->ln2_out, a->resid_mid, sizeof(float) * SD);
		for (int i = 0; i < S; i++) {
			a->ln2_mean[i] = 0.0f;
			a->ln2_rstd[i] = 1.0f;
		}
	}
	mb_k_gemm(a->mlp_pre, M, a->ln2_out, D, w->fc_w + (size_t)l * D * M, M, 0, S, M, D, 1.0f,
		  e->gu);
	mb_k_add_bias(a->mlp_pre, M, w->fc_b + (size_t)l * M, S, M);
	mb_k_act(a->mlp_post, a->mlp_pre, (size_t)S * M, c->act);
	mb_k_gemm(a->mlp_out, D, a->mlp_post, M, w->proj_w + (size_t)l * M * D, D, 0, S, D, M, 1.0f,
		  e->gu);
	mb_k_add_bias(a->mlp_out, D, w->proj_b + (size_t)l * D, S, D);
	mb_k_add(next, a->resid_mid, a->mlp_out, SD);
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
	int ln = c->norm == MB_NORM_LN;

	rc = norm(e, h, pt(MB_HOOK_LN1_NORMALIZED, l), a->resid_pre, a->ln1_xhat, a->ln1_mean,
		  a->ln1_rstd, a->ln1_out, ln ? w->ln1_w + (size_t)l * D : NULL,
		  ln ? w->ln1_b + (size_t)l * D : NULL, err);
	if (rc < 0)
		return rc;
	for (int X = 0; X < 3; X++)
		split[X] = observes(h, (mb_hook_kind)(MB_HOOK_Q_INPUT + X), l);
	if (!split[0] && !split[1] && !split[2]) {
		mb_k_gemm(a->qkv, 3 * D, a->ln1_out, D, w->qkv_w + (size_t)l * D * 3 * D, 3 * D, 0, R,
			  3 * D, D, 1.0f, e->gu);
	} else {
		for (int X = 0; X < 3; X++) {
			if (split[X])
				rc = split_input(e, h, l, X, a, err);
			else
				mb_k_gemm(a->qkv + X * D, 3 * D, a->ln1_out, D,
					  w->qkv_w + (size_t)l * D * 3 * D + X * D, 3 * D, 0, R, D, D,
					  1.0f, e->gu);
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

/* The selected logit position of item b, row i. */
static int sel_pos(const mb_engine *e, const mb_run *r, int b, int i)
{
	return r->logits == MB_LOGITS_LAST ? e->len[b] - 1 : r->positions[(size_t)b * e->lrows + i];
}

/* Whether the last layer may run on the selected rows only: logits at a few
 * positions, nothing kept for a backward, and no hook reading or writing what
 * follows that layer's q/k/v. */
static int tail_ok(const mb_engine *e, const mb_run *r, int l, const float *start_z)
{
	static const mb_hook_kind after_qkv[] = {
		MB_HOOK_ATTN_SCORES, MB_HOOK_PATTERN,	   MB_HOOK_Z,	     MB_HOOK_RESULT,
		MB_HOOK_ATTN_OUT,    MB_HOOK_RESID_MID,	   MB_HOOK_LN2_NORMALIZED, MB_HOOK_MLP_PRE,
		MB_HOOK_MLP_POST,    MB_HOOK_MLP_OUT,	   MB_HOOK_RESID_POST,
	};

	if (l != e->cfg.n_layer - 1 || e->keep || start_z ||
	    (r->logits != MB_LOGITS_LAST && r->logits != MB_LOGITS_POSITIONS))
		return 0;
	if (observes(r->hooks, MB_HOOK_LN_FINAL_NORMALIZED, -1))
		return 0;
	for (size_t i = 0; i < sizeof(after_qkv) / sizeof(after_qkv[0]); i++)
		if (observes(r->hooks, after_qkv[i], l))
			return 0;
	return 1;
}

/* The last layer on the selected rows only (logits at LAST/POSITIONS): q/k/v
 * for every row (the keys and values), then attention, W_O, LN2 and the MLP
 * for the B x N selected query rows, with the row kernels. Leaves the selected
 * rows' resid_post in e->sel_x and sets e->tail_done. */
static int tail_layer(mb_engine *e, const mb_run *r, int l, mb_error *err)
{
	const mb_engine_config *c = &e->cfg;
	const mb_engine_weights *w = &e->w;
	const mb_hooks *h = r->hooks;
	mb_engine_layer_acts *a = slot(e, l);
	int D = c->d_model, M = c->d_mlp, H = c->n_head, Dh = c->d_head, T = e->T, B = e->B;
	int N = e->lrows, nsel = B * N, nt = omp_get_max_threads(), rc;
	float scale = 1.0f / sqrtf((float)Dh);

	rc = dispatch_rows(e, h, pt(MB_HOOK_RESID_PRE, l), a->resid_pre, D, D, err);
	if (rc == 0)
		rc = qkv_stage(e, h, l, a, err);
	if (rc == 0)
		rc = grow(&e->sel_x, &e->sel_x_cap, (size_t)nsel * D, "selected rows", err);
	if (rc == 0)
		rc = grow(&e->sel_y, &e->sel_y_cap, (size_t)nsel * D, "selected rows", err);
	if (rc == 0)
		rc = grow(&e->sel_z, &e->sel_z_cap, (size_t)nsel * D, "selected rows", err);
	if (rc == 0 && !c->attn_only)
		rc = grow(&e->sel_m, &e->sel_m_cap, (size_t)nsel * M, "selected rows", err);
	if (rc == 0)
		rc = grow(&e->att_p, &e->att_p_cap, (size_t)nt * T, "attention scratch", err);
	if (rc < 0)
		return rc;
#pragma omp parallel for schedule(dynamic, 1)
	for (int bh = 0; bh < B * H; bh++) {
		int b = bh / H, hh = bh % H, tid = omp_get_thread_num();
		const float *base = a->qkv + (size_t)e->row0[b] * 3 * D + (size_t)hh * Dh;

		for (int i = 0; i < N; i++) {
			int t = sel_pos(e, r, b, i);

			mb_k_att_query(e->sel_z + ((size_t)b * N + i) * D + (size_t)hh * Dh,
				       e->att_p + (size_t)tid * T, base + (size_t)t * 3 * D, base + D,
				       base + 2 * D, 3 * D, t, Dh, scale);
		}
	}
	for (int b = 0; b < B; b++)
		for (int i = 0; i < N; i++)
			memcpy(e->sel_x + ((size_t)b * N + i) * D,
			       a->resid_pre + (size_t)(e->row0[b] + sel_pos(e, r, b, i)) * D,
			       sizeof(float) * (size_t)D);
	mb_k_matmul_nn_rows(e->sel_y, D, e->sel_z, D, nsel, w->o_w + (size_t)l * D * D, D, D);
	mb_k_add_bias(e->sel_y, D, w->o_b + (size_t)l * D, nsel, D);
	if (c->parallel) {
		/* LN2 of resid_pre into sel_z (z is consumed) before the sum */
		if (c->norm == MB_NORM_LN)
			mb_k_layernorm(e->sel_z, NULL, NULL, NULL, e->sel_x, w->ln2_w + (size_t)l * D,
				       w->ln2_b + (size_t)l * D, nsel, D, c->ln_eps);
		else
			memcpy(e->sel_z, e->sel_x, sizeof(float) * (size_t)nsel * D);
	}
	mb_k_add(e->sel_x, e->sel_x, e->sel_y, (size_t)nsel * D);
	if (!c->attn_only) {
		if (c->parallel)
			memcpy(e->sel_y, e->sel_z, sizeof(float) * (size_t)nsel * D);
		else if (c->norm == MB_NORM_LN)
			mb_k_layernorm(e->sel_y, NULL, NULL, NULL, e->sel_x, w->ln2_w + (size_t)l * D,
				       w->ln2_b + (size_t)l * D, nsel, D, c->ln_eps);
		else
			memcpy(e->sel_y, e->sel_x, sizeof(float) * (size_t)nsel * D);
		mb_k_matmul_nn_rows(e->sel_m, M, e->sel_y, D, nsel, w->fc_w + (size_t)l * D * M, M, D);
		mb_k_bias_act(e->sel_m, e->sel_m, w->fc_b + (size_t)l * M, nsel, M, c->act);
		mb_k_matmul_nn_rows(e->sel_y, D, e->sel_m, M, nsel, w->proj_w + (size_t)l * M * D, D, M);
		mb_k_add_bias(e->sel_y, D, w->proj_b + (size_t)l * D, nsel, D);
		mb_k_add(e->sel_x, e->sel_x, e->sel_y, (size_t)nsel * D);
	}
	e->tail_done = 1;
	return 0;
}

static int layer(mb_engine *e, const mb_run *r, int l, const float *start_z, float *next,
		 mb_error *err)
{
	const mb_engine_config *c = &e->cfg;
	const mb_hooks *h = r->hooks;
	mb_engine_layer_acts *a = slot(e, l);
	int D = c->d_model, M = c->d_mlp, R = e->R, rc;
	size_t RD = (size_t)R * D;
	const mb_engine_weights *w = &e->w;
	int ln = c->norm == MB_NORM_LN;

	if (tail_ok(e, r, l, start_z))
		return tail_layer(e, r, l, err);
	rc = dispatch_rows(e, h, pt(MB_HOOK_RESID_PRE, l), a->resid_pre, D, D, err);
	if (rc < 0)
		return rc;
	if (start_z) {
		pack(e, a->z, D, start_z, D, 1);
	} else {
		rc = qkv_stage(e, h, l, a, err);
		if (rc < 0)
			return rc;
		rc = attention(e, h, l, a, err);
		if (rc < 0)
			return rc;
	}
	rc = dispatch_rows(e, h, pt(MB_HOOK_Z, l), a->z, D, D, err);
	if (rc == 0 && e->acts.tail > 0 && l == c->n_layer - 1)
		return layer_tail(e, l, a, next, err);
	if (rc == 0)
		rc = attn_out(e, h, l, a, err);
	if (rc == 0)
		rc = dispatch_rows(e, h, pt(MB_HOOK_ATTN_OUT, l), a->attn_out, D, D, err);
	if (rc < 0)
		return rc;
	mb_k_add(a->resid_mid, a->resid_pre, a->attn_out, RD);
	if (!c->parallel) {
		rc = dispatch_rows(e, h, pt(MB_HOOK_RESID_MID, l), a->resid_mid, D, D, err);
		if (rc < 0)
			return rc;
	}
	if (c->attn_only) {
		memcpy(next, a->resid_mid, sizeof(float) * RD);
	} else {
		rc = norm(e, h, pt(MB_HOOK_LN2_NORMALIZED, l), c->parallel ? a->resid_pre : a->resid_mid,
			  a->ln2_xhat, a->ln2_mean,
			  a->ln2_rstd, a->ln2_out, ln ? w->ln2_w + (size_t)l * D : NULL,
			  ln ? w->ln2_b + (size_t)l * D : NULL, err);
		if (rc < 0)
			return rc;
		mb_k_gemm(a->mlp_pre, M, a->ln2_out, D, w->fc_w + (size_t)l * D * M, M, 0, R, M, D,
			  1.0f, e->gu);
		if (observes(h, MB_HOOK_MLP_PRE, l)) {
			mb_k_add_bias(a->mlp_pre, M, w->fc_b + (size_t)l * M, R, M);
			rc = dispatch_rows(e, h, pt(MB_HOOK_MLP_PRE, l), a->mlp_pre, M, M, err);
			if (rc < 0)
				return rc;
			mb_k_act(a->mlp_post, a->mlp_pre, (size_t)R * M, c->act);
		} else {
			mb_k_bias_act(a->mlp_post, a->mlp_pre, w->fc_b + (size_t)l * M, R, M, c->act);
		}
		rc = dispatch_rows(e, h, pt(MB_HOOK_MLP_POST, l), a->mlp_post, M, M, err);
		if (rc < 0)
			return rc;
		mb_k_gemm(a->mlp_out, D, a->mlp_post, M, w->proj_w + (size_t)l * M * D, D, 0, R, D, M,
			  1.0f, e->gu);
		mb_k_add_bias(a->mlp_out, D, w->proj_b + (size_t)l * D, R, D);
		rc = dispatch_rows(e, h, pt(MB_HOOK_MLP_OUT, l), a->mlp_out, D, D, err);
		if (rc < 0)
			return rc;
		mb_k_add(next, a->resid_mid, a->mlp_out, RD);
	}
	return dispatch_rows(e, h, pt(MB_HOOK_RESID_POST, l), next, D, D, err);
}

static int unembed(mb_engine *e, const mb_run *r, const float *resid, mb_error *err)
{
	const mb_engine_config *c = &e->cfg;
	const mb_hooks *h = r->hooks;
	int D = c->d_model, V = c->n_vocab, rc;
	int obs_lnf = observes(h, MB_HOOK_LN_FINAL_NORMALIZED, -1);
	int full = r->logits == MB_LOGITS_ALL || obs_lnf || e->keep;
	int ln = c->norm == MB_NORM_LN;
	mb_engine_acts *a = &e->acts;

	if (a->tail > 0) {
		/* compact tail: resid holds the B last positions in rows 0..B-1 */
		int S = a->tail;

		rc = grow(&e->logits, &e->logits_cap, (size_t)S * V, "logits", err);
		if (rc < 0)
			return rc;
		if (ln) {
			mb_k_layernorm(NULL, a->lnf_xhat, a->lnf_mean, a->lnf_rstd, resid, e->w.lnf_w,
				       e->w.lnf_b, S, D, c->ln_eps);
			mb_k_ln_affine(a->lnf_out, a->lnf_xhat, e->w.lnf_w, e->w.lnf_b, S, D);
		} else {
			memcpy(a->lnf_xhat, resid, sizeof(float) * (size_t)S * D);
			memcpy(a->lnf_out, resid, sizeof(float) * (size_t)S * D);
			for (int i = 0; i < S; i++) {
				a->lnf_mean[i] = 0.0f;
				a->lnf_rstd[i] = 1.0f;
			}
		}
		/* thousands of training rows: BLAS, not the row kernel */
		mb_k_gemm(e->logits, V, a->lnf_out, D, e->w.unembed, D, 1, S, V, D, 1.0f, e->gu);
		return 0;
	}
	if (full) {
		rc = norm(e, h, pt(MB_HOOK_LN_FINAL_NORMALIZED, -1), resid, a->lnf_xhat, a->lnf_mean,
			  a->lnf_rstd, a->lnf_out, ln ? e->w.lnf_w : NULL, ln ? e->w.lnf_b : NULL,
			  err);
		if (rc < 0)
			return rc;
	}
	if (r->logits == MB_LOGITS_NONE)
		return 0;
	if (r->logits == MB_LOGITS_ALL) {
		rc = grow(&e->logits, &e->logits_cap, (size_t)e->R * V, "logits", err);
		if (rc < 0)
			return rc;
		mb_k_gemm(e->logits, V, a->lnf_out, D, e->w.unembed, D, 1, e->R, V, D, 1.0f, e->gu);
		return dispatch_rows(e, h, pt(MB_HOOK_LOGITS, -1), e->logits, V, V, err);
	}
	{
		int N = e->lrows, nsel = e->B * N;

		rc = grow(&e->logits, &e->logits_cap, (size_t)nsel * V, "logits", err);
		if (rc == 0)
			rc = grow(&e->sel_x, &e->sel_x_cap, (size_t)nsel * D, "selected rows", err);
		if (rc < 0)
			return rc;
		for (int b = 0; b < e->B && !e->tail_done; b++)
			for (int i = 0; i < N; i++) {
				const float *src = (full ? a->lnf_out : resid) +
						   (size_t)(e->row0[b] + sel_pos(e, r, b, i)) * D;

				memcpy(e->sel_x + ((size_t)b * N + i) * D, src, sizeof(float) * (size_t)D);
			}
		if (!full && ln)
			mb_k_layernorm(e->sel_x, NULL, NULL, NULL, e->sel_x, e->w.lnf_w, e->w.lnf_b,
				       nsel, D, c->ln_eps);
		mb_k_matmul_nt_rows(e->logits, V, e->sel_x, nsel, e->w.unembed, V, D);
		return dispatch_direct(e, h, pt(MB_HOOK_LOGITS, -1), e->logits, NULL, err);
	}
}

/* Forward ------------------------------------------------------------------ */

int mb_engine_forward(mb_engine *e, const mb_run *r, mb_error *err)
{
	const mb_engine_config *c = &e->cfg;
	int D = c->d_model, rc, l0 = r->start_layer;
	float *resid;

	e->lrows = 0;
	e->lmode = MB_LOGITS_NONE;
	e->tail_done = 0;
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
	/* The compact tail (for the backward, so with keep_activations; without,
	 * tail_ok's selected-row path does the same job): only the last positions
	 * are read, nothing observes the tail, every item has the same length. */
	e->acts.tail = 0;
	e->acts.tail_z = NULL;
	if (e->compact && e->keep && r->logits == MB_LOGITS_LAST && !r->hooks && !r->start_z &&
	    !c->parallel) {
		int same = 1;

		for (int b = 0; b < e->B; b++)
			same &= e->len[b] == e->T;
		if (same) {
			int rc2 = grow(&e->tail_z, &e->tail_z_cap, (size_t)e->B * D, "compact tail", err);

			if (rc2 < 0)
				return rc2;
			e->acts.tail = e->B;
			e->acts.tail_z = e->tail_z;
		}
	}
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
	return unembed(e, r, e->acts.resid_final, err);
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
