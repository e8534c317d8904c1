/*
 * effect.c: the paired-effect layer (effect.h): clean, source and arm
 * forwards on one engine, each reduced by the metric, effects arm - clean.
 *
 * Shape letters: B batch, T positions, L layers, H heads, Dh d_head, D
 * d_model, G value groups.
 */
#include <mechbench/effect.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct mb_effect {
	mb_engine *e;
	const mb_engine_config *c;
	mb_effect_metric_fn metric;
	void *payload;
	mb_hooks *hooks;  /* the registry of the run in flight */
	mb_cache *clean;
	mb_cache *src[MB_EFFECT_MAX_SOURCES];
	mb_iv *iv;
	mb_run run;       /* the clean run (hooks cleared) */
	int have_clean;
	double *clean_v;  /* (B) */
	double *arm_v;    /* (B) */
	uint8_t *mask;    /* (B, L, H) head sweep scratch */
	int cap;          /* B the buffers hold */
	float *z;         /* (B, T, D) a head input sweep's start_z */
	size_t z_cap;
};

static mb_hook_point pt(mb_hook_kind k, int layer)
{
	mb_hook_point p = {k, layer};

	return p;
}

int mb_effect_init(mb_effect **out, mb_engine *e, mb_effect_metric_fn metric, void *payload,
		   mb_error *err)
{
	mb_effect *fx = calloc(1, sizeof(*fx));
	int rc;

	*out = NULL;
	if (!fx)
		return mb_error_oom(err, "effect", sizeof(*fx));
	fx->e = e;
	fx->c = mb_engine_cfg(e);
	fx->metric = metric;
	fx->payload = payload;
	if ((rc = mb_hooks_init(&fx->hooks, err)) < 0 || (rc = mb_cache_init(&fx->clean, err)) < 0 ||
	    (rc = mb_iv_init(&fx->iv, err)) < 0) {
		mb_effect_free(fx);
		return rc;
	}
	*out = fx;
	return 0;
}

void mb_effect_free(mb_effect *fx)
{
	if (!fx)
		return;
	mb_iv_free(fx->iv);
	mb_hooks_free(fx->hooks);
	mb_cache_free(fx->clean);
	for (int s = 0; s < MB_EFFECT_MAX_SOURCES; s++)
		mb_cache_free(fx->src[s]);
	free(fx->clean_v);
	free(fx->arm_v);
	free(fx->mask);
	free(fx->z);
	free(fx);
}

int mb_effect_cache(mb_effect *fx, mb_hook_point p, mb_error *err)
{
	return mb_cache_add(fx->clean, p, err);
}

int mb_effect_cache_restart(mb_effect *fx, mb_error *err)
{
	int rc = 0;

	for (int l = 0; l < fx->c->n_layer && rc == 0; l++)
		if ((rc = mb_cache_add(fx->clean, pt(MB_HOOK_RESID_PRE, l), err)) == 0)
			rc = mb_cache_add(fx->clean, pt(MB_HOOK_Z, l), err);
	return rc;
}

static int grow(mb_effect *fx, int B, mb_error *err)
{
	size_t L = (size_t)fx->c->n_layer, H = (size_t)fx->c->n_head;
	double *cv, *av;
	uint8_t *m;

	if (B <= fx->cap)
		return 0;
	cv = realloc(fx->clean_v, sizeof(double) * (size_t)B);
	if (cv)
		fx->clean_v = cv;
	av = realloc(fx->arm_v, sizeof(double) * (size_t)B);
	if (av)
		fx->arm_v = av;
	m = realloc(fx->mask, (size_t)B * L * H);
	if (m)
		fx->mask = m;
	if (!cv || !av || !m)
		return mb_error_oom(err, "effect values", sizeof(double) * (size_t)B);
	fx->cap = B;
	return 0;
}

/* Runs r (hooks already in fx->hooks) and its metric into out (B). */
static int forward_metric(mb_effect *fx, const mb_run *r, double *out, mb_error *err)
{
	int rc = mb_engine_forward(fx->e, r, err);

	if (rc == 0 && out && fx->metric)
		rc = fx->metric(out, fx->e, r->batch, fx->payload, err);
	return rc;
}

int mb_effect_clean(mb_effect *fx, const mb_run *run, mb_error *err)
{
	int rc;

	fx->have_clean = 0;
	if ((rc = grow(fx, run->batch, err)) < 0)
		return rc;
	mb_hooks_clear(fx->hooks);
	if ((rc = mb_cache_attach(fx->clean, fx->hooks, err)) < 0)
		return rc;
	fx->run = *run;
	fx->run.hooks = fx->hooks;
	rc = forward_metric(fx, &fx->run, fx->clean_v, err);
	fx->run.hooks = NULL;
	if (rc < 0)
		return mb_error_prefix(err, "clean run");
	fx->have_clean = 1;
	return 0;
}

const double *mb_effect_clean_values(const mb_effect *fx)
{
	return fx->have_clean ? fx->clean_v : NULL;
}

const mb_hook_tensor *mb_effect_clean_get(const mb_effect *fx, mb_hook_point p)
{
	return fx->have_clean ? mb_cache_get(fx->clean, p) : NULL;
}

int mb_effect_source(mb_effect *fx, int slot, const mb_run *run, const mb_hook_point *points,
		     int n_points, double *out_values, mb_error *err)
{
	mb_cache **c = &fx->src[slot];
	mb_run r;
	int rc = 0;

	MB_ASSERT(slot >= 0 && slot < MB_EFFECT_MAX_SOURCES);
	if (fx->have_clean && run->batch != fx->run.batch)
		return mb_error_set(err, MB_EMISMATCH, "source run %d: %d items, the clean run has %d",
				    slot, run->batch, fx->run.batch);
	mb_cache_free(*c);
	*c = NULL;
	if ((rc = mb_cache_init(c, err)) < 0)
		return rc;
	for (int i = 0; i < n_points && rc == 0; i++)
		rc = mb_cache_add(*c, points[i], err);
	mb_hooks_clear(fx->hooks);
	if (rc < 0 || (rc = mb_cache_attach(*c, fx->hooks, err)) < 0)
		return rc;
	r = *run;
	r.hooks = fx->hooks;
	if ((rc = forward_metric(fx, &r, out_values, err)) < 0)
		return mb_error_prefix(err, "source run %d", slot);
	return 0;
}

const mb_hook_tensor *mb_effect_source_get(const mb_effect *fx, int slot, mb_hook_point p)
{
	MB_ASSERT(slot >= 0 && slot < MB_EFFECT_MAX_SOURCES);
	return fx->src[slot] ? mb_cache_get(fx->src[slot], p) : NULL;
}

/* ---- arms ------------------------------------------------------------------- */

typedef struct heads_ctx {
	const mb_effect *fx;
	const mb_effect_heads *how;
} heads_ctx;

/* z (B, T, H, Dh), hook_z of layer l: item b's masked heads set at its
 * valid positions (effect.h); src the source slot's hook_z or NULL. */
static void heads_set(float *z, int B, int T, const int32_t *lengths, const mb_engine_config *c,
		      int l, const mb_effect_heads *how, const float *src)
{
	int L = c->n_layer, H = c->n_head, Dh = c->d_head;

	for (int b = 0; b < B; b++) {
		int g = how->group ? how->group[b] : 0;
		for (int h = 0; h < H; h++) {
			const float *v = how->values ? how->values + (((size_t)g * L + l) * H + h) * Dh
						     : NULL;
			if (!how->mask[((size_t)b * L + l) * H + h])
				continue;
			for (int p = 0; p < (lengths ? lengths[b] : T); p++) {
				size_t at = (((size_t)b * T + p) * H + h) * Dh;
				if (src)
					memcpy(z + at, src + at, sizeof(float) * Dh);
				else if (v)
					memcpy(z + at, v, sizeof(float) * Dh);
				else
					memset(z + at, 0, sizeof(float) * Dh);
			}
		}
	}
}

/* The source slot's hook_z of layer l for how (NULL when how has no source;
 * *bad when it should and does not). */
static const mb_hook_tensor *heads_source(const mb_effect *fx, const mb_effect_heads *how, int l,
					  int B, int T, mb_error *err)
{
	const mb_hook_tensor *src;

	if (how->source < 0)
		return NULL;
	src = mb_effect_source_get(fx, how->source, pt(MB_HOOK_Z, l));
	if (!src || src->batch != B || src->seq != T)
		mb_error_set(err, MB_ENOTFOUND, "head patch: source run %d has no "
			     "blocks.%d.attn.hook_z of this batch", how->source, l);
	return src && src->batch == B && src->seq == T ? src : NULL;
}

/* hook_z (B, T, H, Dh) of layer l: item b's masked heads set (effect.h). */
static int heads_hook(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	const heads_ctx *a = payload;
	const mb_hook_tensor *src = heads_source(a->fx, a->how, t->point.layer, t->batch, t->seq,
						 err);

	if (a->how->source >= 0 && !src)
		return MB_ENOTFOUND;
	heads_set(t->data, t->batch, t->seq, t->lengths, a->fx->c, t->point.layer, a->how,
		  src ? src->data : NULL);
	return 0;
}

/* fx->z with room for n floats. */
static int z_scratch(mb_effect *fx, size_t n, mb_error *err)
{
	float *g;

	if (n <= fx->z_cap)
		return 0;
	if (!(g = realloc(fx->z, sizeof(float) * n)))
		return mb_error_oom(err, "head sweep", sizeof(float) * n);
	fx->z = g;
	fx->z_cap = n;
	return 0;
}

/* Runs r (its start_z fx->z) and the metric: out (B) = arm - clean. */
static int run_from_z(double *out, mb_effect *fx, const mb_run *r, mb_error *err)
{
	int rc;

	if ((rc = mb_engine_forward(fx->e, r, err)) < 0 ||
	    (rc = fx->metric(fx->arm_v, fx->e, r->batch, fx->payload, err)) < 0)
		return rc;
	for (int b = 0; b < r->batch; b++)
		out[b] = fx->arm_v[b] - fx->clean_v[b];
	return 0;
}

/* Whether how masks a head of layer l for any of the B items. */
static int heads_at(const mb_effect_heads *how, int B, const mb_engine_config *c, int l)
{
	int L = c->n_layer, H = c->n_head;

	for (int b = 0; b < B; b++)
		for (int h = 0; h < H; h++)
			if (how->mask[((size_t)b * L + l) * H + h])
				return 1;
	return 0;
}

static const mb_hook_tensor *need(const mb_effect *fx, mb_hook_kind k, int layer, mb_error *err)
{
	const mb_hook_tensor *t = mb_effect_clean_get(fx, pt(k, layer));
	char name[MB_HOOK_NAME_MAX];

	if (!t) {
		mb_hook_name(name, sizeof(name), pt(k, layer));
		mb_error_set(err, MB_ENOTFOUND, "effect arm: %s is not in the clean run's cache "
			     "(mb_effect_cache)", name);
	}
	return t;
}

static int run_arm(mb_effect *fx, const mb_effect_arm *arm, mb_error *err)
{
	const mb_engine_config *c = fx->c;
	heads_ctx ctx = {fx, arm->heads};
	mb_run r = fx->run;
	int rc = 0;

	if (arm->path) {
		const mb_hook_tensor *resid = need(fx, MB_HOOK_RESID_PRE, arm->path->layer, err);
		MB_ASSERT(!arm->n_iv && !arm->freeze_patterns && !arm->heads && !arm->n_hooks &&
			  !arm->start_layer && !arm->start_z && !arm->engine);
		if (!resid)
			return MB_ENOTFOUND;
		return mb_interp_path_patch_delta(fx->e, &fx->run, resid, arm->path->delta,
						  arm->path->layer, arm->path->head,
						  arm->path->via, err);
	}
	mb_hooks_clear(fx->hooks);
	mb_iv_clear(fx->iv);
	if (arm->freeze_patterns && (rc = mb_iv_freeze_patterns(fx->iv, c, fx->clean, err)) < 0)
		return rc;
	for (int i = 0; i < arm->n_iv && rc == 0; i++)
		rc = mb_iv_add(fx->iv, c, &arm->iv[i], err);
	if (rc < 0 || (rc = mb_iv_attach(fx->iv, fx->hooks, err)) < 0)
		return rc;
	if (arm->heads) {
		if (arm->heads->source >= 0 &&
		    (arm->heads->source >= MB_EFFECT_MAX_SOURCES || !fx->src[arm->heads->source]))
			return mb_error_set(err, MB_EINVALID, "effect arm: heads.source %d: no such "
					    "source run", arm->heads->source);
		/* only at layers with a masked head; exact_tail keeps the bits of a
		 * run whose last layer is observed (the clean run's cache) */
		for (int l = 0; l < c->n_layer && rc == 0; l++)
			if (heads_at(arm->heads, fx->run.batch, c, l))
				rc = mb_hooks_add(fx->hooks, pt(MB_HOOK_Z, l), heads_hook, &ctx, 0,
						  err);
		if (rc < 0)
			return rc;
		r.exact_tail = 1;
	}
	for (int i = 0; i < arm->n_hooks && rc == 0; i++)
		rc = mb_hooks_add(fx->hooks, arm->hooks[i].point, arm->hooks[i].fn,
				  arm->hooks[i].payload, 0, err);
	if (rc < 0)
		return rc;
	if (arm->start_layer > 0 || arm->start_z) {
		const mb_hook_tensor *resid = need(fx, MB_HOOK_RESID_PRE, arm->start_layer, err);
		const mb_hook_tensor *z = arm->start_z ? need(fx, MB_HOOK_Z, arm->start_layer, err)
						       : NULL;
		if (!resid || (arm->start_z && !z))
			return MB_ENOTFOUND;
		r.start_layer = arm->start_layer;
		r.start_resid = resid->data;
		r.start_z = z ? z->data : NULL;
	}
	r.hooks = fx->hooks;
	return mb_engine_forward(arm->engine ? arm->engine : fx->e, &r, err);
}

int mb_effect_run_arm(double *out, double *out_values, mb_effect *fx, const mb_effect_arm *arm,
		  mb_error *err)
{
	int B = fx->run.batch, rc;

	MB_ASSERT(fx->have_clean && fx->metric);
	if ((rc = run_arm(fx, arm, err)) < 0 ||
	    (rc = fx->metric(fx->arm_v, arm->engine ? arm->engine : fx->e, B, fx->payload,
			     err)) < 0)
		return rc;
	for (int b = 0; b < B; b++) {
		out[b] = fx->arm_v[b] - fx->clean_v[b];
		if (out_values)
			out_values[b] = fx->arm_v[b];
	}
	return 0;
}

/* A head sweep's restart at layer l: the arm {heads: how, start_layer l,
 * start_z} with its hook's writes made on a copy of the clean hook_z that
 * the run starts from (no hook, no view of z per arm); exact_tail as the
 * heads arm sets it. */
static int sweep_from_z(double *out, mb_effect *fx, const mb_effect_heads *how, int l,
			mb_error *err)
{
	const mb_hook_tensor *resid = need(fx, MB_HOOK_RESID_PRE, l, err), *z, *src;
	mb_run r = fx->run;
	int rc;

	if (!resid || !(z = need(fx, MB_HOOK_Z, l, err)))
		return MB_ENOTFOUND;
	if (how->source >= 0 &&
	    (how->source >= MB_EFFECT_MAX_SOURCES || !fx->src[how->source]))
		return mb_error_set(err, MB_EINVALID, "effect arm: heads.source %d: no such source "
				    "run", how->source);
	src = heads_source(fx, how, l, r.batch, r.seq, err);
	if (how->source >= 0 && !src)
		return MB_ENOTFOUND;
	if ((rc = z_scratch(fx, z->numel, err)) < 0)
		return rc;
	memcpy(fx->z, z->data, sizeof(float) * z->numel);
	heads_set(fx->z, r.batch, r.seq, r.lengths, fx->c, l, how, src ? src->data : NULL);
	r.start_layer = l;
	r.start_resid = resid->data;
	r.start_z = fx->z;
	r.exact_tail = 1;
	return run_from_z(out, fx, &r, err);
}

int mb_effect_head_sweep(double *out, mb_effect *fx, const uint8_t *heads,
			 const mb_effect_heads *how, int restart, mb_error *err)
{
	int L = fx->c->n_layer, H = fx->c->n_head, B = fx->run.batch, rc;
	mb_effect_heads one = *how;
	mb_effect_arm arm = {0};

	MB_ASSERT(fx->have_clean);
	one.mask = fx->mask;
	arm.heads = &one;
	for (int l = 0; l < L; l++)
		for (int h = 0; h < H; h++) {
			if (heads && !heads[l * H + h])
				continue;
			memset(fx->mask, 0, (size_t)B * L * H);
			for (int b = 0; b < B; b++)
				fx->mask[((size_t)b * L + l) * H + h] = 1;
			arm.start_layer = restart ? l : 0;
			arm.start_z = restart;
			rc = restart ? sweep_from_z(out + ((size_t)l * H + h) * B, fx, &one, l, err)
				     : mb_effect_run_arm(out + ((size_t)l * H + h) * B, NULL, fx, &arm,
							 err);
			if (rc < 0)
				return mb_error_prefix(err, "head sweep (%d, %d)", l, h);
		}
	return 0;
}

/* Head h's `kind` input of layer l patched from slot `source` by starting
 * at layer l's hook_z: the clean z with head h recomputed from the clean
 * q, k, v where the source's replaces `kind` (mb_engine_head_attention),
 * then the run of the iv arm after that layer. *done 0 when the clean cache
 * lacks what this needs (the caller runs the iv arm). */
static int input_arm_from_z(double *out, int *done, mb_effect *fx, const mb_hook_tensor *src,
			    mb_hook_kind kind, int l, int h, mb_error *err)
{
	const mb_hook_tensor *x[3], *z = mb_effect_clean_get(fx, pt(MB_HOOK_Z, l));
	const mb_hook_tensor *resid = mb_effect_clean_get(fx, pt(MB_HOOK_RESID_PRE, l));
	mb_run r = fx->run;
	size_t n;
	int B = r.batch, rc;

	*done = 0;
	for (int X = 0; X < 3; X++)
		x[X] = mb_effect_clean_get(fx, pt((mb_hook_kind)(MB_HOOK_Q + X), l));
	if (!z || !resid || !x[0] || !x[1] || !x[2])
		return 0;
	x[kind - MB_HOOK_Q] = src;
	n = z->numel;
	if ((rc = z_scratch(fx, n, err)) < 0)
		return rc;
	memcpy(fx->z, z->data, sizeof(float) * n);
	if ((rc = mb_engine_head_attention(fx->e, fx->z, x[0]->data, x[1]->data, x[2]->data, B,
					   r.seq, r.lengths, h, err)) < 0)
		return rc;
	r.start_layer = l;
	r.start_resid = resid->data;
	r.start_z = fx->z;
	if ((rc = run_from_z(out, fx, &r, err)) < 0)
		return rc;
	*done = 1;
	return 0;
}

int mb_effect_head_input_sweep(double *out, mb_effect *fx, const uint8_t *heads,
			       mb_hook_kind kind, int source, mb_error *err)
{
	const mb_engine_config *c = fx->c;
	int L = c->n_layer, H = c->n_head, B = fx->run.batch, rc = 0, done;

	MB_ASSERT(fx->have_clean && fx->metric);
	MB_ASSERT(kind == MB_HOOK_Q || kind == MB_HOOK_K || kind == MB_HOOK_V);
	if (source < 0 || source >= MB_EFFECT_MAX_SOURCES || !fx->src[source])
		return mb_error_set(err, MB_EINVALID, "head input sweep: source %d: no such source "
				    "run", source);
	for (int l = 0; l < L; l++) {
		mb_hook_point p = pt(kind, l);
		const mb_hook_tensor *src = mb_effect_source_get(fx, source, p);
		mb_iv_spec iv = {.point = p, .op = MB_IV_PATCH, .source = src};
		mb_effect_arm arm = {.iv = &iv, .n_iv = 1, .start_layer = l};
		char name[MB_HOOK_NAME_MAX];

		if (!src || src->batch != B || src->seq != fx->run.seq) {
			mb_hook_name(name, sizeof(name), p);
			return mb_error_set(err, MB_ENOTFOUND, "head input sweep: source run %d has "
					    "no %s of this batch", source, name);
		}
		for (int h = 0; h < H; h++) {
			double *o = out + ((size_t)l * H + h) * B;

			if (heads && !heads[l * H + h])
				continue;
			done = 0;
			/* the last layer's iv arm takes the selected-row tail, which a
			 * run starting at its hook_z would not (engine.h) */
			if (l < L - 1 && c->pos != MB_POS_ROTARY &&
			    (rc = input_arm_from_z(o, &done, fx, src, kind, l, h, err)) < 0)
				return mb_error_prefix(err, "head input sweep (%d, %d)", l, h);
			iv.unit = h;
			if (!done && (rc = mb_effect_run_arm(o, NULL, fx, &arm, err)) < 0)
				return mb_error_prefix(err, "head input sweep (%d, %d)", l, h);
		}
	}
	return 0;
}

int mb_effect_collect_last(float *acts, float *logits, int n_logits, mb_engine *e,
			   const int32_t *tokens, size_t n, int seq, int batch,
			   const mb_hook_point *point, mb_error *err)
{
	mb_hooks *h = NULL;
	mb_cache *c = NULL;
	int rc;

	if ((rc = mb_hooks_init(&h, err)) < 0 || (rc = mb_cache_init(&c, err)) < 0 ||
	    (point && ((rc = mb_cache_add(c, *point, err)) < 0 ||
		       (rc = mb_cache_attach(c, h, err)) < 0)))
		goto cleanup;
	for (size_t i0 = 0; i0 < n; i0 += (size_t)batch) {
		int B = (int)(n - i0 < (size_t)batch ? n - i0 : (size_t)batch);
		mb_run run = {.batch = B, .seq = seq, .tokens = tokens + i0 * (size_t)seq,
			      .hooks = h, .logits = logits ? MB_LOGITS_LAST : MB_LOGITS_NONE};

		if ((rc = mb_engine_forward(e, &run, err)) < 0)
			goto cleanup;
		if (point) {
			const mb_hook_tensor *t = mb_cache_get(c, *point);
			size_t W = t->numel / ((size_t)B * (size_t)seq);
			for (int b = 0; b < B; b++)
				memcpy(acts + (i0 + (size_t)b) * W,
				       t->data + ((size_t)b * (size_t)seq + (size_t)(seq - 1)) * W,
				       W * sizeof(float));
		}
		for (int b = 0; logits && b < B; b++) {
			const float *row = mb_engine_logits_row(e, b, 0); /* (V) */
			for (int v = 0; v < n_logits; v++) {
				if (!isfinite(row[v])) {
					rc = mb_error_set(err, MB_EINVALID, "sequence %zu: logit %d "
							  "is not finite", i0 + (size_t)b, v);
					goto cleanup;
				}
				logits[(i0 + (size_t)b) * (size_t)n_logits + (size_t)v] = row[v];
			}
		}
	}
cleanup:
	mb_cache_free(c);
	mb_hooks_free(h);
	return rc;
}

/* ---- controls --------------------------------------------------------------- */

void mb_effect_control_heads(uint8_t *mask, mb_rng *r, int n_head, const int *layer_of, int k,
			     const uint8_t *exclude)
{
	const int H = n_head;

	for (int j = 0; j < k; j++) {
		int l = layer_of[j], avail = 0, pick, h;

		for (h = 0; h < H; h++)
			avail += !(exclude && exclude[l * H + h]) && !mask[l * H + h];
		MB_ASSERT(avail > 0);
		pick = (int)mb_rng_range(r, (uint64_t)avail);
		for (h = 0; h < H; h++)
			if (!(exclude && exclude[l * H + h]) && !mask[l * H + h] && pick-- == 0)
				break;
		mask[l * H + h] = 1;
	}
}

void mb_effect_control_direction(float *out, mb_rng *r, int D, double norm)
{
	double ss = 0, scale;

	for (int i = 0; i < D; i++) {
		out[i] = (float)mb_rng_normal(r);
		ss += (double)out[i] * out[i];
	}
	scale = ss > 0 ? norm / sqrt(ss) : 0;
	for (int i = 0; i < D; i++)
		out[i] = (float)(out[i] * scale);
}
