/*
 * interventions.c: ablation, patching, steering and path patching as hooks.
 *
 * Shape letters: B batch, T positions, H heads, Dh d_head, D d_model, W unit
 * width, Bs source items, L layers.
 */
#include <mechbench/interventions.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct iv_entry {
	mb_iv_spec spec;     /* arrays point at the owned copies below */
	float *value;        /* (W) owned */
	int32_t *items;      /* (n_items) owned */
	int32_t *positions;  /* (n_positions) owned */
	double uu;           /* u.u for DIR_* */
} iv_entry;

struct mb_iv {
	iv_entry **v;
	size_t n, cap;
};

int mb_iv_init(mb_iv **out, mb_error *err)
{
	*out = calloc(1, sizeof(mb_iv));
	return *out ? 0 : mb_error_oom(err, "interventions", sizeof(mb_iv));
}

static void entry_free(iv_entry *e)
{
	if (!e)
		return;
	free(e->value);
	free(e->items);
	free(e->positions);
	free(e);
}

void mb_iv_clear(mb_iv *iv)
{
	for (size_t i = 0; i < iv->n; i++)
		entry_free(iv->v[i]);
	iv->n = 0;
}

void mb_iv_free(mb_iv *iv)
{
	if (!iv)
		return;
	mb_iv_clear(iv);
	free(iv->v);
	free(iv);
}

/* Units --------------------------------------------------------------------- */

static int is_attn_matrix(mb_hook_kind k) { return k == MB_HOOK_ATTN_SCORES || k == MB_HOOK_PATTERN; }

/* Number of units U and the width X of one unit's vector for point p (X = 0
 * for the attention matrices, whose width is the run's T). 4-D points have H
 * units of X; 3-D points have X units of 1. */
static void unit_dims(const mb_engine_config *c, mb_hook_kind k, int *four_d, int *U, int *X)
{
	*four_d = 1;
	*U = c->n_head;
	switch (k) {
	case MB_HOOK_Q_INPUT:
	case MB_HOOK_K_INPUT:
	case MB_HOOK_V_INPUT:
	case MB_HOOK_RESULT:
		*X = c->d_model;
		return;
	case MB_HOOK_Q:
	case MB_HOOK_K:
	case MB_HOOK_V:
	case MB_HOOK_ROT_Q:
	case MB_HOOK_ROT_K:
	case MB_HOOK_Z:
		*X = c->d_head;
		return;
	case MB_HOOK_ATTN_SCORES:
	case MB_HOOK_PATTERN:
		*X = 0;
		return;
	case MB_HOOK_MLP_PRE:
	case MB_HOOK_MLP_POST:
		*four_d = 0;
		*U = *X = c->d_mlp;
		return;
	case MB_HOOK_LOGITS:
		*four_d = 0;
		*U = *X = c->n_vocab;
		return;
	default:
		*four_d = 0;
		*U = *X = c->d_model;
		return;
	}
}

/* Width W of spec's unit (-1 for the attention matrices: the run's T). */
static int unit_width(const mb_engine_config *c, mb_hook_kind k, int unit)
{
	int four_d, U, X;

	unit_dims(c, k, &four_d, &U, &X);
	if (X == 0)
		return -1;
	if (four_d)
		return unit >= 0 ? X : U * X;
	return unit >= 0 ? 1 : X;
}

/* Pointer to unit u (>= 0, or -1 for all, not for attention matrices) of
 * item b, position t of tensor x. */
static float *unit_ptr(const mb_hook_tensor *x, int b, int t, int u)
{
	size_t T = (size_t)x->seq;

	if (is_attn_matrix(x->point.kind)) {
		size_t H = (size_t)x->shape[1];

		return x->data + (((size_t)b * H + (size_t)u) * T + (size_t)t) * T;
	}
	if (x->ndim == 4) {
		size_t U = (size_t)x->shape[2], X = (size_t)x->shape[3];

		return x->data + (((size_t)b * T + (size_t)t) * U + (size_t)(u < 0 ? 0 : u)) * X;
	}
	return x->data + ((size_t)b * T + (size_t)t) * (size_t)x->shape[2] + (size_t)(u < 0 ? 0 : u);
}

/* Adding ----------------------------------------------------------------------- */

static int copy_array(void **dst, const void *src, size_t n, size_t size, mb_error *err)
{
	*dst = NULL;
	if (!src || n == 0)
		return 0;
	*dst = malloc(n * size);
	if (!*dst)
		return mb_error_oom(err, "intervention", n * size);
	memcpy(*dst, src, n * size);
	return 0;
}

int mb_iv_add(mb_iv *iv, const mb_engine_config *cfg, const mb_iv_spec *spec, mb_error *err)
{
	char name[MB_HOOK_NAME_MAX];
	int four_d, U, X, W, rc;
	iv_entry *e = NULL;
	mb_iv_op op = spec->op;
	int needs_value = op == MB_IV_SET || op == MB_IV_ADD || op == MB_IV_DIR_ZERO ||
			  op == MB_IV_DIR_SET || op == MB_IV_DIR_PATCH;
	int needs_source = op == MB_IV_PATCH || op == MB_IV_DIR_PATCH;

	rc = mb_hook_check(spec->point, cfg, err);
	if (rc < 0)
		return rc;
	mb_hook_name(name, sizeof(name), spec->point);
	if ((int)op < MB_IV_ZERO || (int)op > MB_IV_DIR_PATCH)
		return mb_error_set(err, MB_EINVALID, "intervention at %s: unknown operation %d", name,
				    (int)op);
	unit_dims(cfg, spec->point.kind, &four_d, &U, &X);
	if (spec->unit < -1 || spec->unit >= U)
		return mb_error_set(err, MB_EINVALID, "intervention at %s: unit %d out of range [-1, %d)",
				    name, spec->unit, U);
	W = unit_width(cfg, spec->point.kind, spec->unit);
	if (W < 0 && needs_value)
		return mb_error_set(err, MB_EINVALID,
				    "intervention at %s: only zeroing and patching apply to attention "
				    "matrices",
				    name);
	if (needs_value && (!spec->value || spec->n_value != W))
		return mb_error_set(err, MB_EINVALID,
				    "intervention at %s: needs a value of %d floats (got %d)", name, W,
				    spec->value ? spec->n_value : 0);
	if (needs_source && !spec->source)
		return mb_error_set(err, MB_EINVALID, "intervention at %s: needs a source tensor",
				    name);
	if (needs_source && (spec->source->point.kind != spec->point.kind && spec->source->ndim != 3))
		return mb_error_set(err, MB_EINVALID,
				    "intervention at %s: the source is neither this point nor a "
				    "(B, T, W) slice",
				    name);
	if (spec->source_item && spec->n_items < 1)
		return mb_error_set(err, MB_EINVALID, "intervention at %s: source_item needs n_items",
				    name);
	if (spec->positions && spec->n_positions < 1)
		return mb_error_set(err, MB_EINVALID,
				    "intervention at %s: positions needs n_positions", name);
	if (iv->n == iv->cap) {
		size_t cap = iv->cap ? 2 * iv->cap : 8;
		iv_entry **v = realloc(iv->v, cap * sizeof(*v));

		if (!v)
			return mb_error_oom(err, "interventions", cap * sizeof(*v));
		iv->v = v;
		iv->cap = cap;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return mb_error_oom(err, "intervention", sizeof(*e));
	e->spec = *spec;
	rc = copy_array((void **)&e->value, needs_value ? spec->value : NULL, (size_t)W,
			sizeof(float), err);
	if (rc == 0)
		rc = copy_array((void **)&e->items, spec->source_item, (size_t)spec->n_items,
				sizeof(int32_t), err);
	if (rc == 0)
		rc = copy_array((void **)&e->positions, spec->positions, (size_t)spec->n_positions,
				sizeof(int32_t), err);
	if (rc < 0) {
		entry_free(e);
		return rc;
	}
	e->spec.value = e->value;
	e->spec.source_item = e->items;
	e->spec.positions = e->positions;
	if (op == MB_IV_DIR_ZERO || op == MB_IV_DIR_SET || op == MB_IV_DIR_PATCH) {
		for (int i = 0; i < W; i++)
			e->uu += (double)e->value[i] * e->value[i];
		if (!(e->uu > 0.0)) {
			entry_free(e);
			return mb_error_set(err, MB_EINVALID, "intervention at %s: zero direction",
					    name);
		}
	}
	iv->v[iv->n++] = e;
	return 0;
}

/* Applying ------------------------------------------------------------------ */

static double dot(const float *a, const float *b, int n)
{
	double s = 0.0;

	for (int i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

/* The source vector for item b (source item sb), position t, unit u. */
static const float *source_vec(const iv_entry *e, const mb_hook_tensor *x, int sb, int t, int u,
			       int W, mb_error *err)
{
	const mb_hook_tensor *s = e->spec.source;
	char name[MB_HOOK_NAME_MAX];

	mb_hook_name(name, sizeof(name), x->point);
	if (s->seq != x->seq) {
		mb_error_set(err, MB_EMISMATCH, "patch at %s: source has %d positions, the run %d",
			     name, s->seq, x->seq);
		return NULL;
	}
	if (sb < 0 || sb >= s->batch) {
		mb_error_set(err, MB_EINVALID, "patch at %s: source item %d out of range [0, %d)",
			     name, sb, s->batch);
		return NULL;
	}
	if (t >= s->lengths[sb]) {
		mb_error_set(err, MB_EMISMATCH,
			     "patch at %s: source item %d has %d positions, position %d needed", name,
			     sb, (int)s->lengths[sb], t);
		return NULL;
	}
	if (s->point.kind == x->point.kind && s->ndim == x->ndim) {
		for (int i = 1; i < x->ndim; i++)
			if (s->shape[i] != x->shape[i]) {
				mb_error_set(err, MB_EMISMATCH, "patch at %s: source shape differs in dim %d",
					     name, i);
				return NULL;
			}
		return unit_ptr(s, sb, t, u);
	}
	if (s->ndim == 3 && s->shape[2] == W)
		return s->data + ((size_t)sb * s->seq + (size_t)t) * (size_t)W;
	mb_error_set(err, MB_EMISMATCH, "patch at %s: source is not (B, T, %d)", name, W);
	return NULL;
}

static int apply_at(const iv_entry *e, const mb_hook_tensor *x, int b, int t, int u, int W,
		    mb_error *err)
{
	float *v = unit_ptr(x, b, t, u);
	const float *s = NULL, *val = e->value;
	int sb = e->items ? e->items[b] : b;
	double c;

	if (e->spec.op == MB_IV_PATCH || e->spec.op == MB_IV_DIR_PATCH) {
		s = source_vec(e, x, sb, t, u, W, err);
		if (!s)
			return MB_EINVALID;
	}
	switch (e->spec.op) {
	case MB_IV_ZERO:
		memset(v, 0, sizeof(float) * (size_t)W);
		break;
	case MB_IV_SET:
		memcpy(v, val, sizeof(float) * (size_t)W);
		break;
	case MB_IV_PATCH:
		memcpy(v, s, sizeof(float) * (size_t)W);
		break;
	case MB_IV_ADD:
		for (int i = 0; i < W; i++)
			v[i] += e->spec.alpha * val[i];
		break;
	case MB_IV_DIR_ZERO:
	case MB_IV_DIR_SET:
	case MB_IV_DIR_PATCH:
		c = e->spec.op == MB_IV_DIR_ZERO  ? 0.0
		    : e->spec.op == MB_IV_DIR_SET ? (double)e->spec.alpha
						  : dot(s, val, W);
		c = (c - dot(v, val, W)) / e->uu;
		for (int i = 0; i < W; i++)
			v[i] = (float)((double)v[i] + c * val[i]);
		break;
	}
	return 0;
}

static int iv_hook(const mb_hook_tensor *x, void *payload, mb_error *err)
{
	const iv_entry *e = payload;
	int attn = is_attn_matrix(x->point.kind);
	int W, u0, u1;

	if (attn) {
		W = x->seq;
		u0 = e->spec.unit < 0 ? 0 : e->spec.unit;
		u1 = e->spec.unit < 0 ? (int)x->shape[1] : e->spec.unit + 1;
	} else {
		W = x->ndim == 4 ? (int)(e->spec.unit >= 0 ? x->shape[3] : x->shape[2] * x->shape[3])
				 : (e->spec.unit >= 0 ? 1 : (int)x->shape[2]);
		u0 = e->spec.unit;
		u1 = e->spec.unit + 1;
	}
	if (e->items && e->spec.n_items < x->batch) {
		char name[MB_HOOK_NAME_MAX];

		mb_hook_name(name, sizeof(name), x->point);
		return mb_error_set(err, MB_EINVALID,
				    "intervention at %s: source_item has %d entries for %d items", name,
				    e->spec.n_items, x->batch);
	}
	for (int b = 0; b < x->batch; b++) {
		int np = e->positions ? e->spec.n_positions : x->lengths[b];

		for (int i = 0; i < np; i++) {
			int t = e->positions ? e->positions[i] : i;

			if (t < 0 || t >= x->lengths[b])
				continue;
			for (int u = u0; u < u1; u++) {
				int rc = apply_at(e, x, b, t, u, W, err);

				if (rc < 0)
					return rc;
			}
		}
	}
	return 0;
}

int mb_iv_attach(mb_iv *iv, mb_hooks *h, mb_error *err)
{
	for (size_t i = 0; i < iv->n; i++) {
		int rc = mb_hooks_add(h, iv->v[i]->spec.point, iv_hook, iv->v[i], 0, err);

		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Shorthands ---------------------------------------------------------------- */

static mb_hook_point lp(mb_hook_kind k, int layer)
{
	mb_hook_point p = {k, layer};

	return p;
}

int mb_iv_ablate_head(mb_iv *iv, const mb_engine_config *cfg, int layer, int head,
		      const float *mean, mb_error *err)
{
	mb_iv_spec s = {lp(MB_HOOK_Z, layer), head, mean ? MB_IV_SET : MB_IV_ZERO, mean,
			cfg->d_head, 0.0f, NULL, NULL, 0, NULL, 0};

	return mb_iv_add(iv, cfg, &s, err);
}

int mb_iv_ablate_neuron(mb_iv *iv, const mb_engine_config *cfg, int layer, int neuron,
			const float *mean, mb_error *err)
{
	mb_iv_spec s = {lp(MB_HOOK_MLP_POST, layer), neuron, mean ? MB_IV_SET : MB_IV_ZERO, mean, 1,
			0.0f, NULL, NULL, 0, NULL, 0};

	return mb_iv_add(iv, cfg, &s, err);
}

int mb_iv_patch_head(mb_iv *iv, const mb_engine_config *cfg, mb_hook_point point, int head,
		     const mb_hook_tensor *source, const int32_t *source_item, int n_items,
		     mb_error *err)
{
	mb_iv_spec s = {point, head, MB_IV_PATCH, NULL, 0, 0.0f, source, source_item, n_items,
			NULL, 0};

	return mb_iv_add(iv, cfg, &s, err);
}

int mb_iv_steer(mb_iv *iv, const mb_engine_config *cfg, mb_hook_point point,
		const float *direction, float alpha, mb_error *err)
{
	mb_iv_spec s = {point, -1, MB_IV_ADD, direction, cfg->d_model, alpha, NULL, NULL, 0, NULL, 0};

	return mb_iv_add(iv, cfg, &s, err);
}

int mb_iv_freeze_patterns(mb_iv *iv, const mb_engine_config *cfg, const mb_cache *source,
			  mb_error *err)
{
	for (int l = 0; l < cfg->n_layer; l++) {
		const mb_hook_tensor *t = mb_cache_get(source, lp(MB_HOOK_PATTERN, l));
		int rc;

		if (!t)
			return mb_error_set(err, MB_ENOTFOUND,
					    "freeze patterns: blocks.%d.attn.hook_pattern is not in the "
					    "source cache",
					    l);
		rc = mb_iv_patch_head(iv, cfg, lp(MB_HOOK_PATTERN, l), -1, t, NULL, 0, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int mb_iv_unit_mean(float *out, const mb_hook_tensor *t, int unit, mb_error *err)
{
	int W;
	double *acc;
	long n = 0;

	if (is_attn_matrix(t->point.kind))
		return mb_error_set(err, MB_EINVALID, "unit mean: not defined for attention matrices");
	W = t->ndim == 4 ? (int)(unit >= 0 ? t->shape[3] : t->shape[2] * t->shape[3])
			 : (unit >= 0 ? 1 : (int)t->shape[2]);
	acc = calloc((size_t)W, sizeof(double));
	if (!acc)
		return mb_error_oom(err, "unit mean", sizeof(double) * (size_t)W);
	for (int b = 0; b < t->batch; b++)
		for (int p = 0; p < t->lengths[b]; p++) {
			const float *v = unit_ptr(t, b, p, unit);

			for (int i = 0; i < W; i++)
				acc[i] += v[i];
			n++;
		}
	for (int i = 0; i < W; i++)
		out[i] = n ? (float)(acc[i] / (double)n) : 0.0f;
	free(acc);
	return 0;
}

void mb_iv_sum_rows(double *sum, long *count, const mb_hook_tensor *t, const int32_t *group)
{
	size_t W = t->numel / ((size_t)t->batch * (size_t)t->seq);

	MB_ASSERT(!is_attn_matrix(t->point.kind));
	for (int b = 0; b < t->batch; b++) {
		int g = group ? group[b] : 0;
		for (int p = 0; p < t->lengths[b]; p++) {
			const float *row = t->data + ((size_t)b * t->seq + (size_t)p) * W;
			for (size_t i = 0; i < W; i++)
				sum[(size_t)g * W + i] += row[i];
		}
		count[g] += t->lengths[b];
	}
}

int32_t mb_iv_resample_pick(mb_rng *r, int self, int Bs, int avoid_self)
{
	if (avoid_self && Bs > 1 && self < Bs) {
		int32_t k = (int32_t)mb_rng_range(r, (uint64_t)(Bs - 1));

		return k >= self ? k + 1 : k;
	}
	return (int32_t)mb_rng_range(r, (uint64_t)Bs);
}

void mb_iv_resample_map(int32_t *out, int B, int Bs, int avoid_self, mb_rng *r)
{
	for (int b = 0; b < B; b++)
		out[b] = mb_iv_resample_pick(r, b, Bs, avoid_self);
}

/* Path patching ------------------------------------------------------------- */

static int same_shape(const mb_run *a, const mb_run *b)
{
	if (a->batch != b->batch || a->seq != b->seq)
		return 0;
	for (int i = 0; i < a->batch; i++) {
		int la = a->lengths ? a->lengths[i] : a->seq, lb = b->lengths ? b->lengths[i] : b->seq;

		if (la != lb)
			return 0;
	}
	return 1;
}

/* head h's output z_h W_O[h] in column c: summed in double over Dh, rounded. */
static float head_out_col(const float *z, const float *wo, int Dh, int D, int c)
{
	double s = 0.0;

	for (int k = 0; k < Dh; k++)
		s += (double)z[k] * wo[(size_t)k * D + c];
	return (float)s;
}

/* The sender delta of head (layer, head) at every valid position: from a
 * source run (z_source) or a set value (interventions.h gives each order). */
static void head_delta(float *out, const mb_engine_config *c, const mb_engine_weights *w,
		       int layer, int head, const mb_hook_tensor *z_clean,
		       const mb_hook_tensor *z_source, const float *value)
{
	int D = c->d_model, Dh = c->d_head, H = c->n_head, T = z_clean->seq;
	const float *wo = w->o_w + (size_t)layer * D * D + (size_t)head * Dh * D; /* (Dh, D) */

	memset(out, 0, sizeof(float) * (size_t)z_clean->batch * T * D);
	for (int b = 0; b < z_clean->batch; b++)
		for (int t = 0; t < z_clean->lengths[b]; t++) {
			size_t bt = (size_t)b * T + (size_t)t;
			const float *z = z_clean->data + (bt * H + (size_t)head) * Dh;
			const float *zs = z_source ? z_source->data + (bt * H + (size_t)head) * Dh
						   : NULL;

			for (int k = 0; k < D; k++) {
				float d = 0;
				if (zs) {
					d = head_out_col(zs, wo, Dh, D, k) - head_out_col(z, wo, Dh, D, k);
				} else {
					for (int a = 0; a < Dh; a++)
						d += (value[a] - z[a]) * wo[(size_t)a * D + k];
				}
				out[bt * D + k] = d;
			}
		}
}

void mb_interp_head_delta_patch(float *out, const mb_engine_config *c, const mb_engine_weights *w,
				int layer, int head, const mb_hook_tensor *z_clean,
				const mb_hook_tensor *z_source)
{
	head_delta(out, c, w, layer, head, z_clean, z_source, NULL);
}

void mb_interp_head_delta_set(float *out, const mb_engine_config *c, const mb_engine_weights *w,
			      int layer, int head, const mb_hook_tensor *z_clean,
			      const float *value)
{
	head_delta(out, c, w, layer, head, z_clean, NULL, value);
}

int mb_interp_path_patch_delta(mb_engine *e, const mb_run *clean, const mb_hook_tensor *resid_pre,
			       const float *delta, int layer, int head, int via, mb_error *err)
{
	const mb_engine_config *c = mb_engine_cfg(e);
	int D = c->d_model, B = clean->batch, T = clean->seq, rc;
	mb_hooks *h = NULL;
	mb_iv *iv = NULL;
	float *patched = NULL; /* (B, T, D) */
	mb_hook_tensor src;
	mb_run r;

	if (layer < 1 || layer >= c->n_layer || head < 0 || head >= c->n_head || via < 0 ||
	    via > 2)
		return mb_error_set(err, MB_EINVALID,
				    "path patch: receiver (%d, %d) via %d is not a receiver (layers 1 "
				    "<= l < %d, heads < %d, via q/k/v)", layer, head, via, c->n_layer,
				    c->n_head);
	if (resid_pre->point.kind != MB_HOOK_RESID_PRE || resid_pre->point.layer != layer ||
	    resid_pre->batch != B || resid_pre->seq != T)
		return mb_error_set(err, MB_EMISMATCH,
				    "path patch: the cached tensor is not blocks.%d.hook_resid_pre of "
				    "this run (%d x %d)", layer, B, T);
	patched = calloc((size_t)B * T * D, sizeof(float));
	if (!patched)
		return mb_error_oom(err, "path patch", sizeof(float) * (size_t)B * T * D);
	for (int b = 0; b < B; b++)
		for (int t = 0; t < resid_pre->lengths[b]; t++) {
			size_t bt = (size_t)b * T + (size_t)t;

			for (int k = 0; k < D; k++)
				patched[bt * D + k] = resid_pre->data[bt * D + k] + delta[bt * D + k];
		}
	src = *resid_pre;
	src.data = patched;
	if ((rc = mb_hooks_init(&h, err)) < 0 || (rc = mb_iv_init(&iv, err)) < 0 ||
	    (rc = mb_iv_patch_head(iv, c, lp((mb_hook_kind)(MB_HOOK_Q_INPUT + via), layer), head,
				   &src, NULL, 0, err)) < 0 ||
	    (rc = mb_iv_attach(iv, h, err)) < 0)
		goto cleanup;
	r = *clean;
	r.hooks = h;
	r.start_layer = layer;
	r.start_resid = resid_pre->data;
	r.start_z = NULL;
	rc = mb_engine_forward(e, &r, err);
cleanup:
	mb_iv_free(iv);
	mb_hooks_free(h);
	free(patched);
	return rc;
}

int mb_interp_path_patch(mb_engine *e, const mb_run *clean, const mb_run *source,
			 const mb_path *path, mb_error *err)
{
	const mb_engine_config *c = mb_engine_cfg(e);
	int D = c->d_model, H = c->n_head, B = clean->batch, T = clean->seq;
	int ls = path->sender_layer, lr = path->receiver_layer, rc;
	mb_hooks *h = NULL;
	mb_cache *cc = NULL, *cs = NULL;
	float *delta = NULL; /* (B, T, D) */
	mb_run r;
	mb_hook_point zp = lp(MB_HOOK_Z, ls), rp = lp(MB_HOOK_RESID_PRE, lr);

	if (ls < 0 || lr >= c->n_layer || ls >= lr || path->sender_head < 0 ||
	    path->sender_head >= H || path->receiver_head < 0 || path->receiver_head >= H ||
	    path->via < 0 || path->via > 2)
		return mb_error_set(err, MB_EINVALID,
				    "path patch: sender (%d, %d) -> receiver (%d, %d) via %d is not a "
				    "path (layers 0 <= ls < lr < %d, heads < %d, via q/k/v)",
				    ls, path->sender_head, lr, path->receiver_head, path->via, c->n_layer,
				    H);
	if (!same_shape(clean, source))
		return mb_error_set(err, MB_EMISMATCH,
				    "path patch: clean and source runs differ in batch, seq or lengths");
	if ((rc = mb_hooks_init(&h, err)) < 0 || (rc = mb_cache_init(&cc, err)) < 0 ||
	    (rc = mb_cache_init(&cs, err)) < 0)
		goto cleanup;
	/* clean run: the sender's z and the receiver layer's input */
	if ((rc = mb_cache_add(cc, zp, err)) < 0 || (rc = mb_cache_add(cc, rp, err)) < 0 ||
	    (rc = mb_cache_attach(cc, h, err)) < 0)
		goto cleanup;
	r = *clean;
	r.hooks = h;
	r.logits = MB_LOGITS_NONE;
	if ((rc = mb_engine_forward(e, &r, err)) < 0)
		goto cleanup;
	mb_hooks_clear(h);
	if ((rc = mb_cache_add(cs, zp, err)) < 0 || (rc = mb_cache_attach(cs, h, err)) < 0)
		goto cleanup;
	r = *source;
	r.hooks = h;
	r.logits = MB_LOGITS_NONE;
	if ((rc = mb_engine_forward(e, &r, err)) < 0)
		goto cleanup;
	delta = malloc(sizeof(float) * (size_t)B * T * D);
	if (!delta) {
		rc = mb_error_oom(err, "path patch", sizeof(float) * (size_t)B * T * D);
		goto cleanup;
	}
	/* receiver input = clean resid_pre + (source result - clean result) of the sender */
	mb_interp_head_delta_patch(delta, c, mb_engine_w(e), ls, path->sender_head,
				   mb_cache_get(cc, zp), mb_cache_get(cs, zp));
	rc = mb_interp_path_patch_delta(e, clean, mb_cache_get(cc, rp), delta, lr,
					path->receiver_head, path->via, err);
cleanup:
	if (rc < 0)
		mb_error_prefix(err, "path patch (%d, %d) -> (%d, %d)", ls, path->sender_head, lr,
				path->receiver_head);
	mb_cache_free(cc);
	mb_cache_free(cs);
	mb_hooks_free(h);
	free(delta);
	return rc;
}

/* Head sweep ---------------------------------------------------------------- */

int mb_interp_head_sweep(mb_engine *e, const mb_run *clean, const uint8_t *heads, int mean,
			 int restart, mb_sweep_fn fn, void *payload, mb_error *err)
{
	const mb_engine_config *c = mb_engine_cfg(e);
	int L = c->n_layer, H = c->n_head, Dh = c->d_head, rc = 0;
	mb_hooks *h = NULL;
	mb_cache *cc = NULL;
	mb_iv *iv = NULL;
	float *means = NULL; /* (L, H, Dh) */
	mb_run r;

	if ((rc = mb_hooks_init(&h, err)) < 0 || (rc = mb_cache_init(&cc, err)) < 0 ||
	    (rc = mb_iv_init(&iv, err)) < 0)
		goto cleanup;
	if (restart || mean) {
		for (int l = 0; l < L && rc == 0; l++) {
			rc = mb_cache_add(cc, lp(MB_HOOK_Z, l), err);
			if (rc == 0 && restart)
				rc = mb_cache_add(cc, lp(MB_HOOK_RESID_PRE, l), err);
		}
		if (rc == 0)
			rc = mb_cache_attach(cc, h, err);
		r = *clean;
		r.hooks = h;
		r.logits = MB_LOGITS_NONE;
		if (rc == 0)
			rc = mb_engine_forward(e, &r, err);
		if (rc < 0)
			goto cleanup;
	}
	if (mean) {
		means = malloc(sizeof(float) * (size_t)L * H * Dh);
		if (!means) {
			rc = mb_error_oom(err, "head means", sizeof(float) * (size_t)L * H * Dh);
			goto cleanup;
		}
		for (int l = 0; l < L && rc == 0; l++)
			for (int hh = 0; hh < H && rc == 0; hh++)
				rc = mb_iv_unit_mean(means + ((size_t)l * H + hh) * Dh,
						     mb_cache_get(cc, lp(MB_HOOK_Z, l)), hh, err);
		if (rc < 0)
			goto cleanup;
	}
	for (int l = 0; l < L; l++)
		for (int hh = 0; hh < H; hh++) {
			if (heads && !heads[l * H + hh])
				continue;
			mb_hooks_clear(h);
			mb_iv_clear(iv);
			rc = mb_iv_ablate_head(iv, c, l, hh,
					       mean ? means + ((size_t)l * H + hh) * Dh : NULL, err);
			if (rc == 0)
				rc = mb_iv_attach(iv, h, err);
			if (rc < 0)
				goto cleanup;
			r = *clean;
			r.hooks = h;
			if (restart) {
				r.start_layer = l;
				r.start_resid = mb_cache_get(cc, lp(MB_HOOK_RESID_PRE, l))->data;
				r.start_z = mb_cache_get(cc, lp(MB_HOOK_Z, l))->data;
			}
			rc = mb_engine_forward(e, &r, err);
			if (rc == 0 && fn)
				rc = fn(e, l, hh, payload, err);
			if (rc < 0)
				goto cleanup;
		}
cleanup:
	mb_iv_free(iv);
	mb_cache_free(cc);
	mb_hooks_free(h);
	free(means);
	return rc;
}
