/*
 * hooks.c: hook point names and shapes, the hook registry, activation caches.
 *
 * Shape letters: B batch, T positions, D d_model, H heads, Dh d_head, M d_mlp,
 * V vocab.
 */
#include "hooks_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct kind_name {
	mb_hook_kind kind;
	const char *name; /* full name (model-level) or suffix after "blocks.{l}." */
} kind_name;

static const kind_name names[] = {
	{MB_HOOK_EMBED, "hook_embed"},
	{MB_HOOK_POS_EMBED, "hook_pos_embed"},
	{MB_HOOK_LN_FINAL_NORMALIZED, "ln_final.hook_normalized"},
	{MB_HOOK_LOGITS, "logits"},
	{MB_HOOK_RESID_PRE, "hook_resid_pre"},
	{MB_HOOK_LN1_NORMALIZED, "ln1.hook_normalized"},
	{MB_HOOK_Q_INPUT, "hook_q_input"},
	{MB_HOOK_K_INPUT, "hook_k_input"},
	{MB_HOOK_V_INPUT, "hook_v_input"},
	{MB_HOOK_Q, "attn.hook_q"},
	{MB_HOOK_K, "attn.hook_k"},
	{MB_HOOK_V, "attn.hook_v"},
	{MB_HOOK_ROT_Q, "attn.hook_rot_q"},
	{MB_HOOK_ROT_K, "attn.hook_rot_k"},
	{MB_HOOK_ATTN_SCORES, "attn.hook_attn_scores"},
	{MB_HOOK_PATTERN, "attn.hook_pattern"},
	{MB_HOOK_Z, "attn.hook_z"},
	{MB_HOOK_RESULT, "attn.hook_result"},
	{MB_HOOK_ATTN_OUT, "hook_attn_out"},
	{MB_HOOK_RESID_MID, "hook_resid_mid"},
	{MB_HOOK_LN2_NORMALIZED, "ln2.hook_normalized"},
	{MB_HOOK_MLP_PRE, "mlp.hook_pre"},
	{MB_HOOK_MLP_POST, "mlp.hook_post"},
	{MB_HOOK_MLP_OUT, "hook_mlp_out"},
	{MB_HOOK_RESID_POST, "hook_resid_post"},
};

#define NNAMES (sizeof(names) / sizeof(names[0]))

int mb_hook_kind_is_layer(mb_hook_kind kind)
{
	return kind >= MB_HOOK_FIRST_LAYER_KIND && kind < MB_HOOK_KIND_COUNT;
}

static const char *kind_str(mb_hook_kind kind)
{
	for (size_t i = 0; i < NNAMES; i++)
		if (names[i].kind == kind)
			return names[i].name;
	return "?";
}

int mb_hook_parse(mb_hook_point *out, const char *name, mb_error *err)
{
	const char *p;
	long layer = 0;

	if (!name || !*name)
		return mb_error_set(err, MB_EINVALID, "hook name is empty");
	if (strncmp(name, "blocks.", 7) != 0) {
		for (size_t i = 0; i < NNAMES; i++)
			if (!mb_hook_kind_is_layer(names[i].kind) && strcmp(name, names[i].name) == 0) {
				out->kind = names[i].kind;
				out->layer = -1;
				return 0;
			}
		return mb_error_set(err, MB_EINVALID, "unknown hook point '%s'", name);
	}
	p = name + 7;
	if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
		return mb_error_set(err, MB_EINVALID, "hook point '%s': bad layer number", name);
	while (*p >= '0' && *p <= '9') {
		layer = layer * 10 + (*p - '0');
		if (layer > 1000000)
			return mb_error_set(err, MB_EINVALID, "hook point '%s': layer out of range",
					    name);
		p++;
	}
	if (*p != '.')
		return mb_error_set(err, MB_EINVALID, "hook point '%s': bad layer number", name);
	p++;
	for (size_t i = 0; i < NNAMES; i++)
		if (mb_hook_kind_is_layer(names[i].kind) && strcmp(p, names[i].name) == 0) {
			out->kind = names[i].kind;
			out->layer = (int)layer;
			return 0;
		}
	return mb_error_set(err, MB_EINVALID, "unknown hook point '%s'", name);
}

void mb_hook_name(char *buf, size_t cap, mb_hook_point p)
{
	if (mb_hook_kind_is_layer(p.kind))
		snprintf(buf, cap, "blocks.%d.%s", p.layer, kind_str(p.kind));
	else
		snprintf(buf, cap, "%s", kind_str(p.kind));
}

int mb_hook_check(mb_hook_point p, const mb_engine_config *cfg, mb_error *err)
{
	char name[MB_HOOK_NAME_MAX];

	if ((int)p.kind < 0 || p.kind >= MB_HOOK_KIND_COUNT)
		return mb_error_set(err, MB_EINVALID, "hook kind %d is not a hook point", (int)p.kind);
	mb_hook_name(name, sizeof(name), p);
	if (mb_hook_kind_is_layer(p.kind)) {
		if (p.layer < 0 || p.layer >= cfg->n_layer)
			return mb_error_set(err, MB_EINVALID,
					    "hook %s: layer %d out of range (the model has %d layers)",
					    name, p.layer, cfg->n_layer);
		if (cfg->attn_only &&
		    (p.kind == MB_HOOK_LN2_NORMALIZED || p.kind == MB_HOOK_MLP_PRE ||
		     p.kind == MB_HOOK_MLP_POST || p.kind == MB_HOOK_MLP_OUT))
			return mb_error_set(err, MB_EINVALID,
					    "hook %s: the model is attention-only (no MLP, no ln2)",
					    name);
		if (cfg->pos != MB_POS_ROTARY && (p.kind == MB_HOOK_ROT_Q || p.kind == MB_HOOK_ROT_K))
			return mb_error_set(err, MB_EINVALID,
					    "hook %s: the model has no rotary embeddings", name);
		if (cfg->parallel && p.kind == MB_HOOK_RESID_MID)
			return mb_error_set(err, MB_EINVALID,
					    "hook %s: the model has a parallel residual (attention and "
					    "MLP both read resid_pre; there is no resid_mid)",
					    name);
	} else if (p.layer != -1) {
		return mb_error_set(err, MB_EINVALID, "hook %s: a model-level point has no layer",
				    name);
	} else if (p.kind == MB_HOOK_POS_EMBED && cfg->pos == MB_POS_ROTARY) {
		return mb_error_set(err, MB_EINVALID,
				    "hook %s: the model has rotary positions (no learned position "
				    "embedding)",
				    name);
	}
	return 0;
}

int mb_hook_shape(int64_t shape[4], mb_hook_point p, const mb_engine_config *cfg, int B, int T,
		  int logits_rows)
{
	int64_t D = cfg->d_model, H = cfg->n_head, Dh = cfg->d_head, M = cfg->d_mlp;

	shape[0] = B;
	shape[1] = T;
	shape[3] = 0;
	switch (p.kind) {
	case MB_HOOK_Q_INPUT:
	case MB_HOOK_K_INPUT:
	case MB_HOOK_V_INPUT:
	case MB_HOOK_RESULT:
		shape[2] = H;
		shape[3] = D;
		return 4;
	case MB_HOOK_Q:
	case MB_HOOK_K:
	case MB_HOOK_V:
	case MB_HOOK_ROT_Q:
	case MB_HOOK_ROT_K:
	case MB_HOOK_Z:
		shape[2] = H;
		shape[3] = Dh;
		return 4;
	case MB_HOOK_ATTN_SCORES:
	case MB_HOOK_PATTERN:
		shape[1] = H;
		shape[2] = T;
		shape[3] = T;
		return 4;
	case MB_HOOK_MLP_PRE:
	case MB_HOOK_MLP_POST:
		shape[2] = M;
		return 3;
	case MB_HOOK_LOGITS:
		shape[1] = logits_rows;
		shape[2] = cfg->n_vocab;
		return 3;
	default:
		shape[2] = D;
		return 3;
	}
}

/* Registry ---------------------------------------------------------------- */

int mb_hooks_init(mb_hooks **out, mb_error *err)
{
	mb_hooks *h = calloc(1, sizeof(*h));

	*out = NULL;
	if (!h)
		return mb_error_oom(err, "hook registry", sizeof(*h));
	*out = h;
	return 0;
}

void mb_hooks_free(mb_hooks *h)
{
	if (!h)
		return;
	free(h->v);
	free(h);
}

void mb_hooks_clear(mb_hooks *h) { h->n = 0; }

static int push(mb_hooks *h, const mb_hook_entry *e, mb_error *err)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? 2 * h->cap : 16;
		mb_hook_entry *v = realloc(h->v, cap * sizeof(*v));

		if (!v)
			return mb_error_oom(err, "hook registry", cap * sizeof(*v));
		h->v = v;
		h->cap = cap;
	}
	h->v[h->n++] = *e;
	return 0;
}

int mb_hooks_add(mb_hooks *h, mb_hook_point p, mb_hook_fn fn, void *payload, unsigned flags,
		 mb_error *err)
{
	mb_hook_entry e = {p, fn, payload, flags, NULL};

	MB_ASSERT(fn != NULL);
	if ((int)p.kind < 0 || p.kind >= MB_HOOK_KIND_COUNT)
		return mb_error_set(err, MB_EINVALID, "hook kind %d is not a hook point", (int)p.kind);
	return push(h, &e, err);
}

int mb_hooks_add_name(mb_hooks *h, const char *name, mb_hook_fn fn, void *payload,
		      unsigned flags, mb_error *err)
{
	mb_hook_point p;
	int rc = mb_hook_parse(&p, name, err);

	if (rc < 0)
		return rc;
	return mb_hooks_add(h, p, fn, payload, flags, err);
}

int mb_hooks_observes(const mb_hooks *h, mb_hook_point p)
{
	if (!h)
		return 0;
	for (size_t i = 0; i < h->n; i++)
		if (h->v[i].point.kind == p.kind && h->v[i].point.layer == p.layer)
			return 1;
	return 0;
}

int mb_hooks_error(mb_error *err, const char *what, mb_hook_point p, int rc)
{
	char name[MB_HOOK_NAME_MAX];

	mb_hook_name(name, sizeof(name), p);
	if (err && err->code == 0)
		mb_error_set(err, rc, "failed without a message");
	mb_error_prefix(err, "%s %s", what, name);
	return rc;
}

/* memcpy in parallel chunks (large hook tensors: attention matrices, logits). */
static void par_copy(float *dst, const float *src, size_t n)
{
	const size_t chunk = 1 << 16;
	long nchunks = (long)((n + chunk - 1) / chunk);

#pragma omp parallel for schedule(static)
	for (long c = 0; c < nchunks; c++) {
		size_t i0 = (size_t)c * chunk, m = n - i0 < chunk ? n - i0 : chunk;

		memcpy(dst + i0, src + i0, m * sizeof(float));
	}
}

int mb_hooks_deliver(const mb_hooks *h, mb_hook_tensor *t, const char *what, int *wrote,
		     mb_error *err)
{
	const mb_hook_point p = t->point;

	if (wrote)
		*wrote = 0;
	for (size_t i = 0; h && i < h->n; i++) {
		const mb_hook_entry *en = &h->v[i];

		if (en->point.kind != p.kind || en->point.layer != p.layer)
			continue;
		if (en->cache) {
			float *dst = mb_cache_slot_prepare(en->cache, t, err);

			if (!dst)
				return mb_hooks_error(err, what, p, err ? err->code : MB_ENOMEM);
			par_copy(dst, t->data, t->numel);
		} else {
			int rc = en->fn(t, en->payload, err);

			if (rc < 0)
				return mb_hooks_error(err, what, p, rc);
			if (!(en->flags & MB_HOOK_READONLY) && wrote)
				*wrote = 1;
		}
	}
	return 0;
}

int mb_hooks_check(const mb_hooks *h, const mb_engine_config *cfg, mb_error *err)
{
	if (!h)
		return 0;
	for (size_t i = 0; i < h->n; i++) {
		int rc = mb_hook_check(h->v[i].point, cfg, err);

		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Caches ------------------------------------------------------------------ */

typedef struct cache_slot {
	mb_hook_point point;
	float *buf;         /* owned, cap floats */
	size_t cap;
	int32_t *lengths;   /* owned, len_cap ints */
	int len_cap;
	mb_hook_tensor t;   /* the last run's tensor, valid when valid */
	int valid;
} cache_slot;

struct mb_cache {
	cache_slot *slots;
	size_t n, cap;
};

int mb_cache_init(mb_cache **out, mb_error *err)
{
	mb_cache *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		return mb_error_oom(err, "cache", sizeof(*c));
	*out = c;
	return 0;
}

void mb_cache_free(mb_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->slots[i].buf);
		free(c->slots[i].lengths);
	}
	free(c->slots);
	free(c);
}

static cache_slot *find_slot(const mb_cache *c, mb_hook_point p)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->slots[i].point.kind == p.kind && c->slots[i].point.layer == p.layer)
			return &c->slots[i];
	return NULL;
}

int mb_cache_add(mb_cache *c, mb_hook_point p, mb_error *err)
{
	if ((int)p.kind < 0 || p.kind >= MB_HOOK_KIND_COUNT)
		return mb_error_set(err, MB_EINVALID, "hook kind %d is not a hook point", (int)p.kind);
	if (find_slot(c, p))
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;
		cache_slot *v = realloc(c->slots, cap * sizeof(*v));

		if (!v)
			return mb_error_oom(err, "cache", cap * sizeof(*v));
		c->slots = v;
		c->cap = cap;
	}
	memset(&c->slots[c->n], 0, sizeof(c->slots[0]));
	c->slots[c->n].point = p;
	c->n++;
	return 0;
}

int mb_cache_add_name(mb_cache *c, const char *name, mb_error *err)
{
	mb_hook_point p;
	int rc = mb_hook_parse(&p, name, err);

	if (rc < 0)
		return rc;
	return mb_cache_add(c, p, err);
}

int mb_cache_add_all(mb_cache *c, const mb_engine_config *cfg, int with_expensive, mb_error *err)
{
	int rc = 0;

	for (int k = 0; k < MB_HOOK_KIND_COUNT && rc == 0; k++) {
		mb_hook_point p = {(mb_hook_kind)k, -1};

		if (!with_expensive &&
		    (k == MB_HOOK_Q_INPUT || k == MB_HOOK_K_INPUT || k == MB_HOOK_V_INPUT ||
		     k == MB_HOOK_RESULT))
			continue;
		if (!mb_hook_kind_is_layer(p.kind)) {
			if (mb_hook_check(p, cfg, NULL) == 0)
				rc = mb_cache_add(c, p, err);
			continue;
		}
		for (int l = 0; l < cfg->n_layer && rc == 0; l++) {
			p.layer = l;
			if (mb_hook_check(p, cfg, NULL) == 0)
				rc = mb_cache_add(c, p, err);
		}
	}
	return rc;
}

int mb_cache_attach(mb_cache *c, mb_hooks *h, mb_error *err)
{
	for (size_t i = 0; i < c->n; i++) {
		mb_hook_entry e = {c->slots[i].point, NULL, NULL, MB_HOOK_READONLY, c};
		int rc = push(h, &e, err);

		if (rc < 0)
			return rc;
	}
	return 0;
}

const mb_hook_tensor *mb_cache_get(const mb_cache *c, mb_hook_point p)
{
	cache_slot *s = find_slot(c, p);

	return s && s->valid ? &s->t : NULL;
}

void mb_cache_reset(mb_cache *c)
{
	for (size_t i = 0; i < c->n; i++)
		c->slots[i].valid = 0;
}

void mb_hooks_begin_run(const mb_hooks *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->n; i++)
		if (h->v[i].cache)
			mb_cache_reset(h->v[i].cache);
}

float *mb_cache_slot_prepare(mb_cache *c, const mb_hook_tensor *meta, mb_error *err)
{
	cache_slot *s = find_slot(c, meta->point);

	MB_ASSERT(s != NULL);
	if (meta->numel > s->cap) {
		float *buf = NULL;

		if (posix_memalign((void **)&buf, 64, meta->numel * sizeof(float)) != 0) {
			char name[MB_HOOK_NAME_MAX];

			mb_hook_name(name, sizeof(name), meta->point);
			mb_error_oom(err, name, meta->numel * sizeof(float));
			return NULL;
		}
		free(s->buf);
		s->buf = buf;
		s->cap = meta->numel;
	}
	if (meta->batch > s->len_cap) {
		int32_t *len = realloc(s->lengths, sizeof(int32_t) * (size_t)meta->batch);

		if (!len) {
			mb_error_oom(err, "cache lengths", sizeof(int32_t) * (size_t)meta->batch);
			return NULL;
		}
		s->lengths = len;
		s->len_cap = meta->batch;
	}
	memcpy(s->lengths, meta->lengths, sizeof(int32_t) * (size_t)meta->batch);
	s->t = *meta;
	s->t.data = s->buf;
	s->t.lengths = s->lengths;
	s->valid = 1;
	return s->buf;
}
