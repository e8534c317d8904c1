/*
 * circuit.c: circuits of heads and MLPs (circuit.h): the evaluator (every
 * node outside a mask ablated, per item), knock-out and path-patching
 * effects, discovery, faithfulness, completeness, minimality, the random
 * control, bootstrap stability, precision/recall and the JSON artifact.
 *
 * Shape letters: n items, T positions, L layers, H heads, Dh d_head, D
 * d_model, G groups, N nodes, P masks, B batch.
 */
#include <mechbench/circuit.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/effect.h>
#include <mechbench/interventions.h>
#include <mechbench/rng.h>

/* ---- names ------------------------------------------------------------------ */

static const char *const ablation_names[] = {"mean-abc", "resample", "zero"};
static const char *const faith_names[] = {"ratio", "normalized"};
static const char *const via_names[] = {"q", "k", "v", "resid"};

const char *mb_circuit_ablation_name(mb_circuit_ablation a)
{
	return (unsigned)a < 3 ? ablation_names[a] : "?";
}

const char *mb_circuit_faith_name(mb_circuit_faith f)
{
	return (unsigned)f < 2 ? faith_names[f] : "?";
}

const char *mb_circuit_via_name(mb_circuit_via v)
{
	return (unsigned)v < 4 ? via_names[v] : "?";
}

static int parse_name(int *out, const char *s, const char *const *names, int n, const char *what,
		      mb_error *err)
{
	char allowed[128];
	size_t len = 0;

	for (int i = 0; i < n; i++)
		if (s && strcmp(s, names[i]) == 0) {
			*out = i;
			return 0;
		}
	allowed[0] = '\0';
	for (int i = 0; i < n && len < sizeof(allowed); i++)
		len += (size_t)snprintf(allowed + len, sizeof(allowed) - len, "%s%s", i ? ", " : "",
					names[i]);
	return mb_error_set(err, MB_EINVALID, "%s: '%s': expected one of %s", what, s ? s : "",
			    allowed);
}

int mb_circuit_ablation_parse(mb_circuit_ablation *out, const char *s, const char *what,
			      mb_error *err)
{
	int v = 0, rc = parse_name(&v, s, ablation_names, 3, what, err);

	*out = (mb_circuit_ablation)v;
	return rc;
}

int mb_circuit_faith_parse(mb_circuit_faith *out, const char *s, const char *what, mb_error *err)
{
	int v = 0, rc = parse_name(&v, s, faith_names, 2, what, err);

	*out = (mb_circuit_faith)v;
	return rc;
}

/* ---- nodes ------------------------------------------------------------------ */

static int has_mlps(const mb_engine_config *c, int mlps)
{
	return mlps && !c->attn_only;
}

int mb_circuit_n_nodes(const mb_engine_config *c, int mlps)
{
	return c->n_layer * c->n_head + (has_mlps(c, mlps) ? c->n_layer : 0);
}

int mb_circuit_node_layer(const mb_engine_config *c, int node)
{
	int LH = c->n_layer * c->n_head;

	return node < LH ? node / c->n_head : node - LH;
}

int mb_circuit_node_head(const mb_engine_config *c, int node)
{
	return node < c->n_layer * c->n_head ? node % c->n_head : -1;
}

void mb_circuit_node_id(char out[MB_CIRCUIT_ID_MAX], const mb_engine_config *c, int node)
{
	int h = mb_circuit_node_head(c, node), l = mb_circuit_node_layer(c, node);

	if (h >= 0)
		snprintf(out, MB_CIRCUIT_ID_MAX, "a%d.%d", l, h);
	else
		snprintf(out, MB_CIRCUIT_ID_MAX, "m%d", l);
}

/* A non-negative decimal of at most 6 digits at *s; advances *s. -1: none. */
static int parse_small(const char **s)
{
	int v = 0, k = 0;

	while (**s >= '0' && **s <= '9' && k < 6) {
		v = v * 10 + (**s - '0');
		(*s)++;
		k++;
	}
	return k ? v : -1;
}

int mb_circuit_node_parse(int *node, const char *id, const mb_engine_config *c, int mlps,
			  const char *what, mb_error *err)
{
	const char *s = id;
	int l, h = -1;

	if (s[0] == 'a') {
		s++;
		l = parse_small(&s);
		if (*s == '.') {
			s++;
			h = parse_small(&s);
		}
		if (l < 0 || h < 0 || *s)
			return mb_error_set(err, MB_EINVALID, "%s: '%s': expected a<layer>.<head> or "
					    "m<layer>", what, id);
		if (l >= c->n_layer || h >= c->n_head)
			return mb_error_set(err, MB_EINVALID, "%s: '%s': the model has %d layers of "
					    "%d heads", what, id, c->n_layer, c->n_head);
		*node = l * c->n_head + h;
		return 0;
	}
	if (s[0] == 'm') {
		s++;
		l = parse_small(&s);
		if (l < 0 || *s)
			return mb_error_set(err, MB_EINVALID, "%s: '%s': expected a<layer>.<head> or "
					    "m<layer>", what, id);
		if (!has_mlps(c, mlps) || l >= c->n_layer)
			return mb_error_set(err, MB_EINVALID, "%s: '%s': %s", what, id,
					    has_mlps(c, mlps) ? "no such layer"
							      : "MLPs are not nodes here");
		*node = c->n_layer * c->n_head + l;
		return 0;
	}
	return mb_error_set(err, MB_EINVALID, "%s: '%s': expected a<layer>.<head> or m<layer>",
			    what, id);
}

/* ---- the evaluator ---------------------------------------------------------- */

struct mb_circuit_eval {
	mb_engine *e;
	const mb_engine_config *c;
	const mb_circuit_data *d;
	mb_circuit_opts o;
	int N, L, H, Dh, D, T, mlps, B;
	/* read-only tables, owned by the root evaluator */
	int owner;
	float *mean_z;    /* (G, T, L, H Dh) mean-abc */
	float *mean_mlp;  /* (G, T, L, D) mean-abc with MLPs */
	size_t *pick;     /* (n) resample sources */
	/* scratch of the batch in flight */
	mb_effect *fx;
	size_t *cur;          /* (B) data indexes */
	int32_t *tok, *src, *len, *pos; /* (B, T), (B, T), (B), (B, n_positions) */
	const uint8_t **keep; /* (B) the mask of each batch item */
	double *vals;         /* (B) */
	double *ref;          /* (B) */
	double *eff;          /* (B) effects nobody reads */
	float *delta;         /* (B, T, D) */
	mb_effect_hook *hooks; /* (2 L) */
};

static mb_hook_point pt(mb_hook_kind k, int layer)
{
	mb_hook_point p = {k, layer};

	return p;
}

static int metric_wrap(double *out, const mb_engine *e, int batch, void *payload, mb_error *err)
{
	const mb_circuit_eval *ev = payload;

	return ev->d->metric(out, e, ev->cur, batch, ev->d->payload, err);
}

static int item_len(const mb_circuit_eval *ev, size_t i)
{
	return ev->d->lengths ? ev->d->lengths[i] : ev->T;
}

static int item_group(const mb_circuit_eval *ev, size_t i)
{
	return ev->d->group ? ev->d->group[i] : 0;
}

/* hook_z (B, T, H, Dh) of layer l, or hook_mlp_out (B, T, D): every node of
 * the point not kept by the item's mask is replaced (circuit.h, "Ablation"). */
static int ablate_hook(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	const mb_circuit_eval *ev = payload;
	int l = t->point.layer, is_mlp = t->point.kind == MB_HOOK_MLP_OUT;
	int units = is_mlp ? 1 : ev->H, W = is_mlp ? ev->D : ev->Dh;
	size_t row = (size_t)ev->D; /* H Dh or D: both D wide */
	const mb_hook_tensor *src = NULL;

	if (ev->o.ablation == MB_CIRCUIT_RESAMPLE) {
		src = mb_effect_source_get(ev->fx, 0, t->point);
		if (!src)
			return mb_error_set(err, MB_ENOTFOUND, "circuit: the resample run has no "
					    "layer %d %s", l, is_mlp ? "hook_mlp_out" : "hook_z");
	}
	for (int b = 0; b < t->batch; b++) {
		size_t i = ev->cur[b];
		int g = item_group(ev, i);
		for (int u = 0; u < units; u++) {
			int node = is_mlp ? ev->L * ev->H + l : l * ev->H + u;
			if (ev->keep[b][node])
				continue;
			for (int p = 0; p < t->lengths[b]; p++) {
				size_t at = ((size_t)b * t->seq + p) * row + (size_t)u * W;
				float *x = t->data + at;
				if (src)
					memcpy(x, src->data + at, sizeof(float) * W);
				else if (ev->o.ablation == MB_CIRCUIT_MEAN_ABC)
					memcpy(x, (is_mlp ? ev->mean_mlp : ev->mean_z) +
							  (((size_t)g * ev->T + p) * ev->L + l) * row +
							  (size_t)u * W,
					       sizeof(float) * W);
				else
					memset(x, 0, sizeof(float) * W);
			}
		}
	}
	return 0;
}

static int alloc_scratch(mb_circuit_eval *ev, mb_error *err)
{
	size_t B = (size_t)ev->B, T = (size_t)ev->T, np = (size_t)(ev->d->n_positions > 0
								     ? ev->d->n_positions : 1);
	int rc;

	ev->cur = calloc(B, sizeof(*ev->cur));
	ev->tok = calloc(B * T, sizeof(int32_t));
	ev->src = calloc(B * T, sizeof(int32_t));
	ev->len = calloc(B, sizeof(int32_t));
	ev->pos = calloc(B * np, sizeof(int32_t));
	ev->keep = calloc(B, sizeof(*ev->keep));
	ev->vals = calloc(B, sizeof(double));
	ev->ref = calloc(B, sizeof(double));
	ev->eff = calloc(B, sizeof(double));
	ev->delta = calloc(B * T * (size_t)ev->D, sizeof(float));
	ev->hooks = calloc(2 * (size_t)ev->L, sizeof(*ev->hooks));
	if (!ev->cur || !ev->tok || !ev->src || !ev->len || !ev->pos || !ev->keep || !ev->vals ||
	    !ev->ref || !ev->eff || !ev->delta || !ev->hooks)
		return mb_error_oom(err, "circuit evaluator", B * T * (size_t)ev->D * sizeof(float));
	if ((rc = mb_effect_init(&ev->fx, ev->e, metric_wrap, ev, err)) < 0 ||
	    (rc = mb_effect_cache_restart(ev->fx, err)) < 0)
		return rc;
	for (int l = 0; l < ev->L && ev->mlps && rc == 0; l++)
		rc = mb_effect_cache(ev->fx, pt(MB_HOOK_MLP_OUT, l), err);
	return rc;
}

/* Loads batch items items[0..B) into the scratch and returns its run. */
static mb_run load_batch(mb_circuit_eval *ev, const size_t *items, int B, int corrupt)
{
	const mb_circuit_data *d = ev->d;
	size_t T = (size_t)ev->T;
	int np = d->n_positions;
	mb_run r = {.batch = B, .seq = ev->T, .tokens = ev->tok, .lengths = ev->len,
		    .logits = d->logits};

	for (int b = 0; b < B; b++) {
		size_t i = items[b];
		ev->cur[b] = i;
		memcpy(ev->tok + (size_t)b * T, (corrupt ? d->corrupt : d->tokens) + i * T,
		       T * sizeof(int32_t));
		ev->len[b] = item_len(ev, i);
		if (d->logits == MB_LOGITS_POSITIONS)
			memcpy(ev->pos + (size_t)b * np, d->positions + i * (size_t)np,
			       (size_t)np * sizeof(int32_t));
	}
	if (d->logits == MB_LOGITS_POSITIONS) {
		r.n_positions = np;
		r.positions = ev->pos;
	}
	return r;
}

/* The points the resample source run keeps. */
static int source_points(const mb_circuit_eval *ev, mb_hook_point *out)
{
	int n = 0;

	for (int l = 0; l < ev->L; l++) {
		out[n++] = pt(MB_HOOK_Z, l);
		if (ev->mlps)
			out[n++] = pt(MB_HOOK_MLP_OUT, l);
	}
	return n;
}

/* Clean run (and the resample source run) of batch items[0..B). */
static int start_batch(mb_circuit_eval *ev, const size_t *items, int B, mb_error *err)
{
	mb_run r = load_batch(ev, items, B, 0);
	int rc;

	if ((rc = mb_effect_clean(ev->fx, &r, err)) < 0)
		return rc;
	if (ev->o.ablation == MB_CIRCUIT_RESAMPLE) {
		mb_hook_point pts[256];
		size_t T = (size_t)ev->T;
		mb_run s = r;
		int np = source_points(ev, pts);
		for (int b = 0; b < B; b++)
			memcpy(ev->src + (size_t)b * T, ev->d->corrupt + ev->pick[items[b]] * T,
			       T * sizeof(int32_t));
		s.tokens = ev->src;
		if ((rc = mb_effect_source(ev->fx, 0, &s, pts, np, NULL, err)) < 0)
			return rc;
	}
	return 0;
}

/* Runs the ablation arm with ev->keep set: ev->vals (B) = metric. */
static int ablation_arm(mb_circuit_eval *ev, mb_error *err)
{
	mb_effect_arm arm = {0};
	int n = 0;
	for (int l = 0; l < ev->L; l++) {
		ev->hooks[n++] = (mb_effect_hook){pt(MB_HOOK_Z, l), ablate_hook, ev};
		if (ev->mlps)
			ev->hooks[n++] = (mb_effect_hook){pt(MB_HOOK_MLP_OUT, l), ablate_hook, ev};
	}
	arm.hooks = ev->hooks;
	arm.n_hooks = n;
	return mb_effect_run_arm(ev->eff, ev->vals, ev->fx, &arm, err);
}

static int check_data(const mb_circuit_eval *ev, mb_error *err)
{
	const mb_circuit_data *d = ev->d;
	int G = d->group ? d->n_groups : 1;
	int *glen = NULL;
	int rc = 0;

	if (!d->tokens || !d->corrupt || !d->metric || !d->key || d->seq < 1)
		return mb_error_set(err, MB_EINVALID, "circuit data: tokens, corrupt, key, metric "
				    "and seq >= 1 are required");
	if (d->group && d->n_groups < 1)
		return mb_error_set(err, MB_EINVALID, "circuit data: n_groups %d with a group "
				    "array", d->n_groups);
	if (d->logits != MB_LOGITS_LAST &&
	    !(d->logits == MB_LOGITS_POSITIONS && d->positions && d->n_positions > 0))
		return mb_error_set(err, MB_EINVALID, "circuit data: logits must be LAST, or "
				    "POSITIONS with positions");
	glen = malloc(sizeof(int) * (size_t)G);
	if (!glen)
		return mb_error_oom(err, "circuit groups", sizeof(int) * (size_t)G);
	for (int g = 0; g < G; g++)
		glen[g] = -1;
	for (size_t i = 0; i < d->n && rc == 0; i++) {
		int g = item_group(ev, i), len = item_len(ev, i);
		if (g < 0 || g >= G)
			rc = mb_error_set(err, MB_EINVALID, "circuit data: item %zu: group %d not in "
					  "[0, %d)", i, g, G);
		else if (len < 1 || len > d->seq)
			rc = mb_error_set(err, MB_EINVALID, "circuit data: item %zu: length %d not "
					  "in [1, %d]", i, len, d->seq);
		else if (ev->o.ablation != MB_CIRCUIT_ZERO && glen[g] >= 0 && glen[g] != len)
			rc = mb_error_set(err, MB_EINVALID, "circuit data: item %zu: length %d, "
					  "other items of group %d have %d (positions must align "
					  "for %s)", i, len, g, glen[g],
					  mb_circuit_ablation_name(ev->o.ablation));
		else
			glen[g] = len;
	}
	free(glen);
	return rc;
}

/* mean-abc: per (group, position) means of every node over the corrupted
 * prompts of all items, summed in double in item order. */
static int compute_means(mb_circuit_eval *ev, mb_error *err)
{
	const mb_circuit_data *d = ev->d;
	size_t G = (size_t)(d->group ? d->n_groups : 1), T = (size_t)ev->T, L = (size_t)ev->L;
	size_t D = (size_t)ev->D, cells = G * T * L * D;
	double *sz = calloc(cells, sizeof(double));
	double *sm = ev->mlps ? calloc(cells, sizeof(double)) : NULL;
	long *cnt = calloc(G * T, sizeof(long));
	size_t *idx = malloc(sizeof(size_t) * (size_t)ev->B);
	mb_hook_point pts[256];
	int np = source_points(ev, pts), rc = 0;

	ev->mean_z = calloc(cells, sizeof(float));
	if (ev->mlps)
		ev->mean_mlp = calloc(cells, sizeof(float));
	if (!sz || (ev->mlps && (!sm || !ev->mean_mlp)) || !cnt || !idx || !ev->mean_z) {
		rc = mb_error_oom(err, "circuit means", cells * sizeof(double));
		goto cleanup;
	}
	for (size_t i0 = 0; i0 < d->n && rc == 0; i0 += (size_t)ev->B) {
		int B = (int)(d->n - i0 < (size_t)ev->B ? d->n - i0 : (size_t)ev->B);
		mb_run r;
		for (int b = 0; b < B; b++)
			idx[b] = i0 + (size_t)b;
		r = load_batch(ev, idx, B, 1);
		if ((rc = mb_effect_source(ev->fx, 1, &r, pts, np, NULL, err)) < 0) {
			mb_error_prefix(err, "circuit means (corrupted prompts)");
			break;
		}
		for (int k = 0; k < np; k++) {
			const mb_hook_tensor *t = mb_effect_source_get(ev->fx, 1, pts[k]);
			double *s = pts[k].kind == MB_HOOK_MLP_OUT ? sm : sz;
			size_t l = (size_t)pts[k].layer;
			for (int b = 0; b < B; b++) {
				size_t g = (size_t)item_group(ev, idx[b]);
				for (int p = 0; p < t->lengths[b]; p++) {
					const float *x = t->data + ((size_t)b * t->seq + p) * D;
					double *o = s + ((g * T + (size_t)p) * L + l) * D;
					for (size_t j = 0; j < D; j++)
						o[j] += x[j];
					if (k == 0)
						cnt[g * T + (size_t)p]++;
				}
			}
		}
	}
	for (size_t g = 0; g < G && rc == 0; g++)
		for (size_t p = 0; p < T; p++) {
			long c = cnt[g * T + p];
			for (size_t x = 0; c > 0 && x < L * D; x++) {
				size_t at = (g * T + p) * L * D + x;
				ev->mean_z[at] = (float)(sz[at] / (double)c);
				if (ev->mlps)
					ev->mean_mlp[at] = (float)(sm[at] / (double)c);
			}
		}
cleanup:
	free(sz);
	free(sm);
	free(cnt);
	free(idx);
	return rc;
}

/* resample: each item's source among the other items of its group, drawn
 * from the item's own stream. */
static int compute_picks(mb_circuit_eval *ev, mb_error *err)
{
	const mb_circuit_data *d = ev->d;
	size_t G = (size_t)(d->group ? d->n_groups : 1);
	size_t *start = calloc(G + 1, sizeof(size_t)), *fill = calloc(G, sizeof(size_t));
	size_t *members = malloc(sizeof(size_t) * (d->n ? d->n : 1));
	size_t *rank = malloc(sizeof(size_t) * (d->n ? d->n : 1));
	int rc = 0;

	ev->pick = malloc(sizeof(size_t) * (d->n ? d->n : 1));
	if (!start || !fill || !members || !rank || !ev->pick) {
		rc = mb_error_oom(err, "circuit resample picks", sizeof(size_t) * d->n);
		goto cleanup;
	}
	for (size_t i = 0; i < d->n; i++)
		start[item_group(ev, i) + 1]++;
	for (size_t g = 0; g < G; g++)
		start[g + 1] += start[g];
	for (size_t i = 0; i < d->n; i++) {
		size_t g = (size_t)item_group(ev, i);
		rank[i] = fill[g];
		members[start[g] + fill[g]++] = i;
	}
	for (size_t i = 0; i < d->n; i++) {
		size_t g = (size_t)item_group(ev, i), size = start[g + 1] - start[g];
		mb_rng r;
		int32_t k;
		mb_rng_init_named(&r, ev->o.seed, "circuit/resample", d->key[i]);
		k = mb_iv_resample_pick(&r, (int)rank[i], (int)size, 1);
		ev->pick[i] = members[start[g] + (size_t)k];
	}
cleanup:
	free(start);
	free(fill);
	free(members);
	free(rank);
	return rc;
}

static int eval_new(mb_circuit_eval **out, mb_engine *e, const mb_circuit_data *data,
		    const mb_circuit_opts *opts, mb_error *err)
{
	const mb_engine_config *c = mb_engine_cfg(e);
	mb_circuit_eval *ev;

	*out = NULL;
	if (opts->batch < 1)
		return mb_error_set(err, MB_EINVALID, "circuit: opts.batch %d: give the items per "
				    "forward (at most the engine's max_batch)", opts->batch);
	ev = calloc(1, sizeof(*ev));
	if (!ev)
		return mb_error_oom(err, "circuit evaluator", sizeof(*ev));
	ev->e = e;
	ev->c = c;
	ev->d = data;
	ev->o = *opts;
	ev->L = c->n_layer;
	ev->H = c->n_head;
	ev->Dh = c->d_head;
	ev->D = c->d_model;
	ev->T = data->seq;
	ev->mlps = has_mlps(c, opts->mlps);
	ev->N = mb_circuit_n_nodes(c, opts->mlps);
	ev->B = opts->batch;
	*out = ev;
	return alloc_scratch(ev, err);
}

int mb_circuit_eval_init(mb_circuit_eval **out, mb_engine *e, const mb_circuit_data *data,
			 const mb_circuit_opts *opts, mb_error *err)
{
	mb_circuit_eval *ev;
	int rc = eval_new(&ev, e, data, opts, err);

	if (rc == 0) {
		ev->owner = 1;
		rc = check_data(ev, err);
	}
	if (rc == 0 && opts->ablation == MB_CIRCUIT_MEAN_ABC)
		rc = compute_means(ev, err);
	if (rc == 0 && opts->ablation == MB_CIRCUIT_RESAMPLE)
		rc = compute_picks(ev, err);
	if (rc < 0) {
		mb_circuit_eval_free(ev);
		*out = NULL;
		return rc;
	}
	*out = ev;
	return 0;
}

int mb_circuit_eval_fork(mb_circuit_eval **out, const mb_circuit_eval *ev, mb_engine *e,
			 mb_error *err)
{
	mb_circuit_eval *f;
	int rc = eval_new(&f, e, ev->d, &ev->o, err);

	if (rc == 0) {
		f->mean_z = ev->mean_z;
		f->mean_mlp = ev->mean_mlp;
		f->pick = ev->pick;
		*out = f;
		return 0;
	}
	mb_circuit_eval_free(f);
	*out = NULL;
	return rc;
}

void mb_circuit_eval_free(mb_circuit_eval *ev)
{
	if (!ev)
		return;
	if (ev->owner) {
		free(ev->mean_z);
		free(ev->mean_mlp);
		free(ev->pick);
	}
	mb_effect_free(ev->fx);
	free(ev->cur);
	free(ev->tok);
	free(ev->src);
	free(ev->len);
	free(ev->pos);
	free(ev->keep);
	free(ev->vals);
	free(ev->ref);
	free(ev->eff);
	free(ev->delta);
	free(ev->hooks);
	free(ev);
}

int mb_circuit_eval_nodes(const mb_circuit_eval *ev)
{
	return ev->N;
}

const mb_engine_config *mb_circuit_eval_cfg(const mb_circuit_eval *ev)
{
	return ev->c;
}

size_t mb_circuit_eval_pick(const mb_circuit_eval *ev, size_t i)
{
	return ev->pick ? ev->pick[i] : i;
}

static int check_items(const mb_circuit_eval *ev, const size_t *items, size_t n, mb_error *err)
{
	for (size_t j = 0; j < n; j++)
		if (items[j] >= ev->d->n)
			return mb_error_set(err, MB_EINVALID, "circuit: items[%zu] = %zu: the data "
					    "has %zu items", j, items[j], ev->d->n);
	return 0;
}

/* out (P, n) with keep (P, N) (stride N per mask), or per item (P = 1,
 * keep (n, N)). */
static int eval_masks(double *out, mb_circuit_eval *ev, const uint8_t *keep, size_t P,
		      int per_item, const size_t *items, size_t n, mb_error *err)
{
	int rc = check_items(ev, items, n, err);

	for (size_t j0 = 0; j0 < n && rc == 0; j0 += (size_t)ev->B) {
		int B = (int)(n - j0 < (size_t)ev->B ? n - j0 : (size_t)ev->B);
		if ((rc = start_batch(ev, items + j0, B, err)) < 0)
			break;
		for (size_t p = 0; p < P && rc == 0; p++) {
			for (int b = 0; b < B; b++)
				ev->keep[b] = keep + (per_item ? (j0 + (size_t)b) : p) * (size_t)ev->N;
			if ((rc = ablation_arm(ev, err)) < 0)
				break;
			for (int b = 0; b < B; b++)
				out[p * n + j0 + (size_t)b] = ev->vals[b];
		}
	}
	return rc;
}

int mb_circuit_eval_run(double *out, mb_circuit_eval *ev, const uint8_t *keep, size_t P,
			const size_t *items, size_t n_items, mb_error *err)
{
	return eval_masks(out, ev, keep, P, 0, items, n_items, err);
}

int mb_circuit_eval_run_per_item(double *out, mb_circuit_eval *ev, const uint8_t *keep,
				 const size_t *items, size_t n_items, mb_error *err)
{
	return eval_masks(out, ev, keep, 1, 1, items, n_items, err);
}

int mb_circuit_node_effects(double *out, mb_circuit_eval *ev, const size_t *items,
			    size_t n_items, mb_error *err)
{
	size_t N = (size_t)ev->N, n = n_items;
	uint8_t *masks = malloc((N + 1) * N);
	double *v = malloc(sizeof(double) * (N + 1) * (n ? n : 1));
	int rc;

	if (!masks || !v) {
		free(masks);
		free(v);
		return mb_error_oom(err, "circuit node effects", sizeof(double) * (N + 1) * n);
	}
	memset(masks, 1, (N + 1) * N);
	for (size_t k = 0; k < N; k++)
		masks[(k + 1) * N + k] = 0;
	rc = eval_masks(v, ev, masks, N + 1, 0, items, n, err);
	for (size_t k = 0; k < N && rc == 0; k++)
		for (size_t j = 0; j < n; j++)
			out[k * n + j] = v[(k + 1) * n + j] - v[j];
	free(masks);
	free(v);
	return rc;
}

/* ---- path patching ---------------------------------------------------------- */

/* ev->delta (B, T, D) = ablated - clean output of sender node s at the
 * valid positions of the batch in flight (0 elsewhere): for a head,
 * (z_abl - z_clean) W_O[h] summed in float over Dh in order; for an MLP,
 * mlp_abl - mlp_clean. */
static int sender_delta(mb_circuit_eval *ev, int s, int B, mb_error *err)
{
	const mb_engine_weights *w = mb_engine_w(ev->e);
	int l = mb_circuit_node_layer(ev->c, s), h = mb_circuit_node_head(ev->c, s);
	int is_mlp = h < 0, T = ev->T, D = ev->D, Dh = ev->Dh;
	mb_hook_point p = pt(is_mlp ? MB_HOOK_MLP_OUT : MB_HOOK_Z, l);
	const mb_hook_tensor *cl = mb_effect_clean_get(ev->fx, p), *src = NULL;
	float diff[4096];

	if (!cl)
		return mb_error_set(err, MB_ENOTFOUND, "circuit: clean run lacks layer %d output", l);
	if (ev->o.ablation == MB_CIRCUIT_RESAMPLE &&
	    !(src = mb_effect_source_get(ev->fx, 0, p)))
		return mb_error_set(err, MB_ENOTFOUND, "circuit: resample run lacks layer %d "
				    "output", l);
	MB_ASSERT(D <= 4096);
	memset(ev->delta, 0, sizeof(float) * (size_t)B * T * D);
	for (int b = 0; b < B; b++) {
		int g = item_group(ev, ev->cur[b]);
		for (int t = 0; t < cl->lengths[b]; t++) {
			size_t at = ((size_t)b * T + t) * D;
			int W = is_mlp ? D : Dh, off = is_mlp ? 0 : h * Dh;
			const float *mean = (is_mlp ? ev->mean_mlp : ev->mean_z);
			float *o = ev->delta + at;
			for (int k = 0; k < W; k++) {
				float a = 0;
				if (src)
					a = src->data[at + off + k];
				else if (ev->o.ablation == MB_CIRCUIT_MEAN_ABC)
					a = mean[(((size_t)g * T + t) * ev->L + l) * D + off + k];
				diff[k] = a - cl->data[at + off + k];
			}
			if (is_mlp) {
				memcpy(o, diff, sizeof(float) * D);
				continue;
			}
			for (int k = 0; k < Dh; k++) {
				const float *wo = w->o_w + ((size_t)l * D + (size_t)off + k) * D;
				for (int j = 0; j < D; j++)
					o[j] += diff[k] * wo[j];
			}
		}
	}
	return 0;
}

typedef struct edge_req {
	int from, to;
	mb_circuit_via via;
} edge_req;

/* out (n_edges, n): path-patching effects of each edge on each item. */
static int edge_effects(double *out, mb_circuit_eval *ev, const edge_req *edges, size_t n_edges,
			const size_t *items, size_t n, mb_error *err)
{
	int rc = check_items(ev, items, n, err);

	for (size_t k = 0; k < n_edges && rc == 0; k++) {
		const edge_req *q = &edges[k];
		if (q->from < 0 || q->from >= ev->N || q->to < 0 || q->to >= ev->N ||
		    mb_circuit_node_head(ev->c, q->to) < 0 || q->via > MB_CIRCUIT_VIA_V ||
		    mb_circuit_node_layer(ev->c, q->from) >= mb_circuit_node_layer(ev->c, q->to))
			rc = mb_error_set(err, MB_EINVALID, "circuit edge %d -> %d via %s: the "
					  "receiver must be a head of a later layer, via q, k or v",
					  q->from, q->to, mb_circuit_via_name(q->via));
	}
	for (size_t j0 = 0; j0 < n && rc == 0; j0 += (size_t)ev->B) {
		int B = (int)(n - j0 < (size_t)ev->B ? n - j0 : (size_t)ev->B);
		int ref_layer = -1;
		if ((rc = start_batch(ev, items + j0, B, err)) < 0)
			break;
		for (size_t k = 0; k < n_edges && rc == 0; k++) {
			const edge_req *q = &edges[k];
			int lr = mb_circuit_node_layer(ev->c, q->to);
			mb_effect_path path = {lr, mb_circuit_node_head(ev->c, q->to), (int)q->via,
					       ev->delta};
			mb_effect_arm arm = {.path = &path};
			if (lr != ref_layer) {
				/* the reference: the same path forward with no change */
				memset(ev->delta, 0,
				       sizeof(float) * (size_t)B * (size_t)ev->T * (size_t)ev->D);
				if ((rc = mb_effect_run_arm(ev->eff, ev->ref, ev->fx, &arm, err)) < 0)
					break;
				ref_layer = lr;
			}
			if ((rc = sender_delta(ev, q->from, B, err)) < 0 ||
			    (rc = mb_effect_run_arm(ev->eff, ev->vals, ev->fx, &arm, err)) < 0)
				break;
			for (int b = 0; b < B; b++)
				out[k * n + j0 + (size_t)b] = ev->vals[b] - ev->ref[b];
		}
	}
	return rc;
}

int mb_circuit_edge_effects(double *out, mb_circuit_eval *ev, int sender, int receiver,
			    mb_circuit_via via, const size_t *items, size_t n_items,
			    mb_error *err)
{
	edge_req q = {sender, receiver, via};

	return edge_effects(out, ev, &q, 1, items, n_items, err);
}

/* ---- a memo of evaluated masks ---------------------------------------------- */

/* Per-item values of masks on one item list, so that searches that revisit a
 * node set (growth over resamples, completeness, minimality) run it once. */
typedef struct memo {
	mb_circuit_eval *ev;
	const size_t *items;
	size_t n, N;
	size_t count, cap;
	uint8_t *masks; /* (cap, N) */
	double *vals;   /* (cap, n) */
} memo;

static void memo_init(memo *m, mb_circuit_eval *ev, const size_t *items, size_t n)
{
	memset(m, 0, sizeof(*m));
	m->ev = ev;
	m->items = items;
	m->n = n;
	m->N = (size_t)ev->N;
}

static void memo_dispose(memo *m)
{
	free(m->masks);
	free(m->vals);
}

static long memo_find(const memo *m, const uint8_t *mask)
{
	for (size_t i = 0; i < m->count; i++)
		if (memcmp(m->masks + i * m->N, mask, m->N) == 0)
			return (long)i;
	return -1;
}

/* Evaluates the masks (P, N) not in the memo yet (in one pass over the
 * items) and sets at[p] to each mask's row. */
static int memo_get(memo *m, const uint8_t *masks, size_t P, const double **at, mb_error *err)
{
	size_t missing = 0, N = m->N;
	uint8_t *todo = NULL;
	int rc = 0;

	for (size_t p = 0; p < P; p++) {
		const uint8_t *k = masks + p * N;
		int dup = memo_find(m, k) >= 0;
		for (size_t q = 0; q < missing && !dup; q++)
			dup = memcmp(todo + q * N, k, N) == 0;
		if (dup)
			continue;
		if (!todo && !(todo = malloc(P * N)))
			return mb_error_oom(err, "circuit masks", P * N);
		memcpy(todo + missing++ * N, k, N);
	}
	if (missing) {
		if (m->count + missing > m->cap) {
			size_t cap = (m->count + missing) * 2;
			uint8_t *nm = realloc(m->masks, cap * N);
			double *nv = nm ? realloc(m->vals, cap * (m->n ? m->n : 1) * sizeof(double))
					: NULL;
			if (nm)
				m->masks = nm;
			if (nv)
				m->vals = nv;
			if (!nm || !nv) {
				free(todo);
				return mb_error_oom(err, "circuit memo", cap * m->n * sizeof(double));
			}
			m->cap = cap;
		}
		rc = eval_masks(m->vals + m->count * m->n, m->ev, todo, missing, 0, m->items, m->n,
				err);
		if (rc == 0) {
			memcpy(m->masks + m->count * N, todo, missing * N);
			m->count += missing;
		}
	}
	free(todo);
	for (size_t p = 0; p < P && rc == 0; p++)
		at[p] = m->vals + (size_t)memo_find(m, masks + p * N) * m->n;
	return rc;
}

/* Mean of v over the items, each counted w[j] times (w NULL: once), in
 * order. */
static double pooled(const double *v, const unsigned *w, size_t n)
{
	double s = 0, c = 0;

	for (size_t j = 0; j < n; j++) {
		double k = w ? (double)w[j] : 1.0;
		s += k * v[j];
		c += k;
	}
	return c > 0 ? s / c : 0;
}

static double faith_of(mb_circuit_faith f, double fc, double fm, double fe)
{
	if (f == MB_CIRCUIT_FAITH_NORMALIZED)
		return (fc - fe) / (fm - fe);
	return fc / fm;
}

/* ---- discovery -------------------------------------------------------------- */

/* order (N): nodes by |score| descending, ties by index (insertion sort:
 * stable and deterministic). */
static void rank_nodes(int *order, const double *score, int N)
{
	for (int i = 0; i < N; i++) {
		int j = i;
		while (j > 0 && fabs(score[order[j - 1]]) < fabs(score[i]))
			j--;
		memmove(order + j + 1, order + j, sizeof(int) * (size_t)(i - j));
		order[j] = i;
	}
}

/* Scores (N) from effects (N, n) weighted by w. */
static void node_scores(double *score, const double *effects, const unsigned *w, size_t n, int N)
{
	for (int v = 0; v < N; v++)
		score[v] = pooled(effects + (size_t)v * n, w, n);
}

/* Grows prefixes of order until the criterion holds; *k_out its size,
 * *faith_out its faithfulness; masks evaluated through the memo, pooled with
 * weights w. fm, fe: pooled F(M), F(empty) under w. */
static int grow(size_t *k_out, double *faith_out, int *reached, memo *m, const int *order,
		const unsigned *w, double fm, double fe, const mb_circuit_criterion *crit,
		mb_error *err)
{
	size_t N = m->N, kmax = crit->max_nodes > 0 && (size_t)crit->max_nodes < N
					 ? (size_t)crit->max_nodes : N;
	enum { CHUNK = 8 };
	uint8_t *masks = malloc(CHUNK * N);
	const double *at[CHUNK];
	int rc = 0;

	*reached = 0;
	*k_out = kmax;
	*faith_out = NAN;
	if (!masks)
		return mb_error_oom(err, "circuit growth", CHUNK * N);
	for (size_t k0 = 1; k0 <= kmax && rc == 0 && !*reached; k0 += CHUNK) {
		size_t P = kmax - k0 + 1 < CHUNK ? kmax - k0 + 1 : CHUNK;
		for (size_t p = 0; p < P; p++) {
			memset(masks + p * N, 0, N);
			for (size_t i = 0; i < k0 + p; i++)
				masks[p * N + (size_t)order[i]] = 1;
		}
		if ((rc = memo_get(m, masks, P, at, err)) < 0)
			break;
		for (size_t p = 0; p < P; p++) {
			double f = faith_of(crit->faith, pooled(at[p], w, m->n), fm, fe);
			*faith_out = f;
			*k_out = k0 + p;
			if (f >= crit->min) {
				*reached = 1;
				break;
			}
		}
	}
	free(masks);
	return rc;
}

/* F(M) and F(empty) rows from the memo. */
static int model_rows(const double **fm, const double **fe, memo *m, mb_error *err)
{
	size_t N = m->N;
	uint8_t *masks = malloc(2 * N);
	const double *at[2];
	int rc;

	if (!masks)
		return mb_error_oom(err, "circuit masks", 2 * N);
	memset(masks, 1, N);
	memset(masks + N, 0, N);
	rc = memo_get(m, masks, 2, at, err);
	free(masks);
	if (rc == 0) {
		*fm = at[0];
		*fe = at[1];
	}
	return rc;
}

static mb_circuit *circuit_new(const mb_engine_config *c, int mlps)
{
	mb_circuit *k = calloc(1, sizeof(*k));
	int N = mb_circuit_n_nodes(c, mlps);

	if (!k)
		return NULL;
	k->cfg = *c;
	k->mlps = has_mlps(c, mlps);
	k->N = N;
	k->member = calloc((size_t)N, 1);
	k->rank = calloc((size_t)N, sizeof(int));
	k->score = calloc((size_t)N, sizeof(double));
	k->nodes = calloc((size_t)N, sizeof(int));
	if (!k->member || !k->rank || !k->score || !k->nodes) {
		mb_circuit_free(k);
		return NULL;
	}
	for (int v = 0; v < N; v++)
		k->rank[v] = v;
	return k;
}

void mb_circuit_free(mb_circuit *c)
{
	if (!c)
		return;
	free(c->member);
	free(c->rank);
	free(c->score);
	free(c->nodes);
	free(c->edges);
	free(c->stability.jaccard);
	free(c->stability.inclusion);
	free(c);
}

/* Scores every edge between members and keeps the strong ones. */
static int discover_edges(mb_circuit *c, mb_circuit_eval *ev, const size_t *items, size_t n,
			  mb_error *err)
{
	size_t cap = c->n_nodes * c->n_nodes * 3, ne = 0;
	edge_req *req = calloc(cap ? cap : 1, sizeof(*req));
	double *eff = NULL;
	int rc = 0;

	if (!req)
		return mb_error_oom(err, "circuit edges", cap * sizeof(*req));
	/* receivers by layer so the reference forward is shared */
	for (int r = 0; r < c->N; r++) {
		if (!c->member[r] || mb_circuit_node_head(&c->cfg, r) < 0)
			continue;
		for (int s = 0; s < c->N; s++) {
			if (!c->member[s] || mb_circuit_node_layer(&c->cfg, s) >=
						     mb_circuit_node_layer(&c->cfg, r))
				continue;
			for (int via = 0; via < 3; via++)
				req[ne++] = (edge_req){s, r, (mb_circuit_via)via};
		}
	}
	if (ne) {
		eff = malloc(sizeof(double) * ne * (n ? n : 1));
		c->edges = calloc(ne, sizeof(*c->edges));
		if (!eff || !c->edges)
			rc = mb_error_oom(err, "circuit edges", sizeof(double) * ne * n);
		if (rc == 0)
			rc = edge_effects(eff, ev, req, ne, items, n, err);
	}
	for (size_t k = 0; k < ne && rc == 0; k++) {
		double e = pooled(eff + k * n, NULL, n);
		if (fabs(e) >= c->criterion.edge_min * fabs(c->f_model))
			c->edges[c->n_edges++] = (mb_circuit_edge){req[k].from, req[k].to,
								  req[k].via, e};
	}
	free(req);
	free(eff);
	return rc;
}

int mb_circuit_discover(mb_circuit **out, mb_circuit_eval *ev, const double *effects,
			const size_t *items, size_t n_items, const mb_circuit_criterion *crit,
			mb_error *err)
{
	mb_circuit *c = circuit_new(ev->c, ev->o.mlps);
	double *own = NULL;
	const double *fm = NULL, *fe = NULL;
	size_t k = 0;
	memo m;
	int rc = 0;

	*out = NULL;
	if (!c)
		return mb_error_oom(err, "circuit", sizeof(*c));
	memo_init(&m, ev, items, n_items);
	if (n_items == 0) {
		rc = mb_error_set(err, MB_EINVALID, "circuit discovery: no items");
		goto cleanup;
	}
	if (!effects) {
		own = malloc(sizeof(double) * (size_t)ev->N * n_items);
		if (!own) {
			rc = mb_error_oom(err, "circuit node effects", sizeof(double) * n_items);
			goto cleanup;
		}
		if ((rc = mb_circuit_node_effects(own, ev, items, n_items, err)) < 0)
			goto cleanup;
		effects = own;
	}
	c->ablation = ev->o.ablation;
	c->criterion = *crit;
	node_scores(c->score, effects, NULL, n_items, c->N);
	rank_nodes(c->rank, c->score, c->N);
	if ((rc = model_rows(&fm, &fe, &m, err)) < 0)
		goto cleanup;
	c->f_model = pooled(fm, NULL, n_items);
	c->f_empty = pooled(fe, NULL, n_items);
	if ((rc = grow(&k, &c->faithfulness, &c->reached, &m, c->rank, NULL, c->f_model,
		       c->f_empty, crit, err)) < 0)
		goto cleanup;
	c->n_nodes = k;
	for (size_t i = 0; i < k; i++) {
		c->nodes[i] = c->rank[i];
		c->member[c->rank[i]] = 1;
	}
	rc = discover_edges(c, ev, items, n_items, err);
cleanup:
	memo_dispose(&m);
	free(own);
	if (rc < 0) {
		mb_circuit_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* ---- faithfulness, completeness, minimality -------------------------------- */

int mb_circuit_faithfulness(mb_circuit_faithfulness_result *out, double *fc, double *fm,
			    double *fe, mb_circuit_eval *ev, const uint8_t *keep,
			    const size_t *items, size_t n_items, mb_error *err)
{
	size_t N = (size_t)ev->N, n = n_items;
	uint8_t *masks = malloc(3 * N);
	double *v = malloc(sizeof(double) * 3 * (n ? n : 1));
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (!masks || !v) {
		rc = mb_error_oom(err, "circuit faithfulness", sizeof(double) * 3 * n);
		goto cleanup;
	}
	memcpy(masks, keep, N);
	memset(masks + N, 1, N);
	memset(masks + 2 * N, 0, N);
	if ((rc = eval_masks(v, ev, masks, 3, 0, items, n, err)) < 0)
		goto cleanup;
	out->f_circuit = pooled(v, NULL, n);
	out->f_model = pooled(v + n, NULL, n);
	out->f_empty = pooled(v + 2 * n, NULL, n);
	out->ratio = faith_of(MB_CIRCUIT_FAITH_RATIO, out->f_circuit, out->f_model, out->f_empty);
	out->normalized = faith_of(MB_CIRCUIT_FAITH_NORMALIZED, out->f_circuit, out->f_model,
				   out->f_empty);
	if (fc)
		memcpy(fc, v, sizeof(double) * n);
	if (fm)
		memcpy(fm, v + n, sizeof(double) * n);
	if (fe)
		memcpy(fe, v + 2 * n, sizeof(double) * n);
cleanup:
	free(masks);
	free(v);
	return rc;
}

/* The members of keep in node order; returns their count. */
static size_t members_of(int *out, const uint8_t *keep, int N)
{
	size_t k = 0;

	for (int v = 0; v < N; v++)
		if (keep[v])
			out[k++] = v;
	return k;
}

/* Scratch of the subset searches (completeness, minimality). */
typedef struct search {
	memo m;
	size_t N, n;
	int *mem;          /* (N) the circuit's members in node order */
	size_t k;          /* their count */
	uint8_t *K;        /* (N) the removed subset */
	uint8_t *masks;    /* (2 (N + 1), N) */
	const double **at; /* (2 (N + 1)) */
	double f_model;    /* pooled F(M) */
} search;

static void search_dispose(search *s)
{
	memo_dispose(&s->m);
	free(s->mem);
	free(s->K);
	free(s->masks);
	free(s->at);
}

static int search_init(search *s, mb_circuit_eval *ev, const uint8_t *keep, const size_t *items,
		       size_t n, const char *what, mb_error *err)
{
	size_t N = (size_t)ev->N;
	int rc;

	memset(s, 0, sizeof(*s));
	memo_init(&s->m, ev, items, n);
	s->N = N;
	s->n = n;
	s->mem = malloc(sizeof(int) * N);
	s->K = calloc(N, 1);
	s->masks = malloc(2 * (N + 1) * N);
	s->at = malloc(sizeof(*s->at) * 2 * (N + 1));
	if (!s->mem || !s->K || !s->masks || !s->at)
		return mb_error_oom(err, what, 2 * (N + 1) * N);
	s->k = members_of(s->mem, keep, (int)N);
	memset(s->masks, 1, N);
	if ((rc = memo_get(&s->m, s->masks, 1, s->at, err)) < 0)
		return rc;
	s->f_model = pooled(s->at[0], NULL, n);
	return 0;
}

/* Mask p of the search: keep (or every node when full) minus K, minus also
 * node x when x >= 0. */
static uint8_t *search_mask(search *s, size_t p, const uint8_t *keep, int full, int x)
{
	uint8_t *m = s->masks + p * s->N;

	if (full)
		memset(m, 1, s->N);
	else
		memcpy(m, keep, s->N);
	for (size_t v = 0; v < s->N; v++)
		if (s->K[v] || (int)v == x)
			m[v] = 0;
	return m;
}

int mb_circuit_completeness(mb_circuit_completeness_result *out, double *fck, double *fmk,
			    mb_circuit_eval *ev, const uint8_t *keep, const size_t *items,
			    size_t n_items, int max_steps, mb_error *err)
{
	size_t n = n_items, steps;
	search s;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = search_init(&s, ev, keep, items, n, "circuit completeness", err)) < 0)
		goto cleanup;
	if (!(out->worst = calloc(s.N, 1))) {
		rc = mb_error_oom(err, "circuit completeness", s.N);
		goto cleanup;
	}
	steps = max_steps > 0 && (size_t)max_steps < s.k ? (size_t)max_steps : s.k;
	/* K = {}: F(C) against F(M) */
	search_mask(&s, 0, keep, 0, -1);
	search_mask(&s, 1, keep, 1, -1);
	if ((rc = memo_get(&s.m, s.masks, 2, s.at, err)) < 0)
		goto cleanup;
	out->f_c_k = pooled(s.at[0], NULL, n);
	out->f_m_k = pooled(s.at[1], NULL, n);
	out->score = fabs(out->f_c_k - out->f_m_k);
	for (size_t step = 0; step < steps; step++) {
		size_t P = 0;
		int best = -1;
		double best_d = -1, bc = 0, bm = 0;
		/* each candidate v of C \ K: C \ (K u {v}) and M \ (K u {v}) */
		for (size_t i = 0; i < s.k; i++)
			if (!s.K[s.mem[i]]) {
				search_mask(&s, 2 * P, keep, 0, s.mem[i]);
				search_mask(&s, 2 * P + 1, keep, 1, s.mem[i]);
				P++;
			}
		if ((rc = memo_get(&s.m, s.masks, 2 * P, s.at, err)) < 0)
			goto cleanup;
		for (size_t p = 0, i = 0; i < s.k; i++) {
			double c, mm;
			if (s.K[s.mem[i]])
				continue;
			c = pooled(s.at[2 * p], NULL, n);
			mm = pooled(s.at[2 * p + 1], NULL, n);
			if (fabs(c - mm) > best_d) {
				best_d = fabs(c - mm);
				best = s.mem[i];
				bc = c;
				bm = mm;
			}
			p++;
		}
		s.K[best] = 1;
		if (best_d > out->score) {
			out->score = best_d;
			out->f_c_k = bc;
			out->f_m_k = bm;
			memcpy(out->worst, s.K, s.N);
			out->worst_size = step + 1;
		}
	}
	out->relative = out->score / fabs(s.f_model);
	if (fck || fmk) {
		memcpy(s.K, out->worst, s.N);
		search_mask(&s, 0, keep, 0, -1);
		search_mask(&s, 1, keep, 1, -1);
		if ((rc = memo_get(&s.m, s.masks, 2, s.at, err)) < 0)
			goto cleanup;
		if (fck)
			memcpy(fck, s.at[0], sizeof(double) * n);
		if (fmk)
			memcpy(fmk, s.at[1], sizeof(double) * n);
	}
cleanup:
	search_dispose(&s);
	if (rc < 0) {
		free(out->worst);
		out->worst = NULL;
	}
	return rc;
}

int mb_circuit_minimality(mb_circuit_minimality_result *out, mb_circuit_eval *ev,
			  const uint8_t *keep, const size_t *items, size_t n_items, int max_steps,
			  double min_rel, mb_error *err)
{
	size_t n = n_items, steps;
	search s;
	int rc;

	if ((rc = search_init(&s, ev, keep, items, n, "circuit minimality", err)) < 0)
		goto cleanup;
	steps = max_steps > 0 && (size_t)max_steps < s.k ? (size_t)max_steps
							  : (s.k ? s.k - 1 : 0);
	for (size_t i = 0; i < s.k && rc == 0; i++) {
		int v = s.mem[i];
		mb_circuit_minimality_result *r = &out[i];
		memset(s.K, 0, s.N);
		memset(r, 0, sizeof(*r));
		r->node = v;
		r->score = -1;
		for (size_t step = 0; step <= steps; step++) {
			/* step 0: K = {}; then K' = K u {u} for each u of C \ (K u {v}):
			 * C \ (K' u {v}) and C \ K' */
			size_t P = 0;
			int best = -1;
			double best_d = -1;
			for (size_t j = 0; j < s.k; j++) {
				int u = step == 0 ? -1 : s.mem[j];
				if (step == 0 ? j > 0 : (u == v || s.K[u]))
					continue;
				search_mask(&s, 2 * P, keep, 0, u)[v] = 0;
				search_mask(&s, 2 * P + 1, keep, 0, u);
				P++;
			}
			if (P == 0)
				break;
			if ((rc = memo_get(&s.m, s.masks, 2 * P, s.at, err)) < 0)
				break;
			for (size_t p = 0, j = 0; j < s.k && p < P; j++) {
				int u = step == 0 ? -1 : s.mem[j];
				double d;
				if (step == 0 ? j > 0 : (u == v || s.K[u]))
					continue;
				d = fabs(pooled(s.at[2 * p], NULL, n) - pooled(s.at[2 * p + 1], NULL, n));
				if (d > best_d) {
					best_d = d;
					best = u;
				}
				p++;
			}
			if (best_d > r->score) {
				r->score = best_d;
				r->k_size = step;
			}
			if (best >= 0)
				s.K[best] = 1;
		}
		r->relative = r->score / fabs(s.f_model);
		r->pass = r->score >= min_rel * fabs(s.f_model);
	}
cleanup:
	search_dispose(&s);
	return rc;
}

/* ---- the random control ----------------------------------------------------- */

int mb_circuit_control(double *out, uint8_t *masks, mb_circuit_eval *ev, const uint8_t *keep,
		       const size_t *items, size_t n_items, mb_error *err)
{
	int N = ev->N, L = ev->L, H = ev->H, LH = L * H;
	int *layer_of = malloc(sizeof(int) * (size_t)N);
	uint8_t *own = masks ? NULL : malloc((size_t)N * (n_items ? n_items : 1));
	uint8_t *mk = masks ? masks : own;
	int k_heads = 0, k_mlps = 0, free_mlps = 0, rc = 0;

	if (!layer_of || !mk) {
		rc = mb_error_oom(err, "circuit control", (size_t)N * n_items);
		goto cleanup;
	}
	if ((rc = check_items(ev, items, n_items, err)) < 0)
		goto cleanup;
	for (int v = 0; v < LH; v++)
		if (keep[v])
			layer_of[k_heads++] = v / H;
	for (int l = 0; l < L && ev->mlps; l++) {
		k_mlps += keep[LH + l];
		free_mlps += !keep[LH + l];
	}
	for (int l = 0; l < L; l++) {
		int in = 0;
		for (int h = 0; h < H; h++)
			in += keep[l * H + h];
		if (in > 0 && 2 * in > H)
			rc = mb_error_set(err, MB_EINVALID, "circuit control: layer %d has %d of "
					  "its %d heads in the circuit: too few left to match", l,
					  in, H);
	}
	if (rc == 0 && k_mlps > free_mlps)
		rc = mb_error_set(err, MB_EINVALID, "circuit control: %d MLPs in the circuit, %d "
				  "outside it to draw from", k_mlps, free_mlps);
	for (size_t j = 0; j < n_items && rc == 0; j++) {
		uint8_t *m = mk + j * (size_t)N;
		mb_rng r;
		memset(m, 0, (size_t)N);
		mb_rng_init_named(&r, ev->o.seed, "circuit/control", ev->d->key[items[j]]);
		mb_effect_control_heads(m, &r, H, layer_of, k_heads, keep);
		for (int t = 0; t < k_mlps; t++) {
			int avail = 0, pick, l;
			for (l = 0; l < L; l++)
				avail += !keep[LH + l] && !m[LH + l];
			pick = (int)mb_rng_range(&r, (uint64_t)avail);
			for (l = 0; l < L; l++)
				if (!keep[LH + l] && !m[LH + l] && pick-- == 0)
					break;
			m[LH + l] = 1;
		}
	}
	if (rc == 0)
		rc = eval_masks(out, ev, mk, 1, 1, items, n_items, err);
cleanup:
	free(layer_of);
	free(own);
	return rc;
}

/* ---- stability -------------------------------------------------------------- */

double mb_circuit_jaccard(const uint8_t *a, const uint8_t *b, int N)
{
	int in = 0, un = 0;

	for (int v = 0; v < N; v++) {
		in += a[v] && b[v];
		un += a[v] || b[v];
	}
	return un ? (double)in / un : 1.0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Quantile q of sorted v (n) by linear interpolation (Hyndman & Fan type 7). */
static double quantile(const double *v, size_t n, double q)
{
	double h = (double)(n - 1) * q;
	size_t lo = (size_t)floor(h);

	if (lo + 1 >= n)
		return v[n - 1];
	return v[lo] + (h - (double)lo) * (v[lo + 1] - v[lo]);
}

int mb_circuit_stability(mb_circuit *ref, mb_circuit_eval *ev, const double *effects,
			 const size_t *items, size_t n_items, int B, double level,
			 mb_error *err)
{
	size_t N = (size_t)ev->N, n = n_items;
	mb_circuit_stability_result *st = &ref->stability;
	unsigned *w = calloc(n ? n : 1, sizeof(unsigned));
	double *score = malloc(sizeof(double) * N), *sorted = NULL;
	int *order = malloc(sizeof(int) * N);
	uint8_t *mask = malloc(N);
	const double *fm_at = NULL, *fe_at = NULL;
	double *fm_row = malloc(sizeof(double) * (n ? n : 1));
	double *fe_row = malloc(sizeof(double) * (n ? n : 1));
	memo m;
	int rc = 0;

	memo_init(&m, ev, items, n);
	free(st->jaccard);
	free(st->inclusion);
	memset(st, 0, sizeof(*st));
	st->jaccard = calloc((size_t)(B > 0 ? B : 1), sizeof(double));
	st->inclusion = calloc(N, sizeof(double));
	sorted = malloc(sizeof(double) * (size_t)(B > 0 ? B : 1));
	if (!w || !score || !order || !mask || !st->jaccard || !st->inclusion || !sorted ||
	    !fm_row || !fe_row) {
		rc = mb_error_oom(err, "circuit stability", sizeof(double) * N * n);
		goto cleanup;
	}
	if (B < 1 || n == 0 || !(level > 0 && level < 1)) {
		rc = mb_error_set(err, MB_EINVALID, "circuit stability: %d resamples of %zu items "
				  "at level %g", B, n, level);
		goto cleanup;
	}
	if ((rc = model_rows(&fm_at, &fe_at, &m, err)) < 0)
		goto cleanup;
	/* copies: later memo growth moves its rows */
	memcpy(fm_row, fm_at, sizeof(double) * n);
	memcpy(fe_row, fe_at, sizeof(double) * n);
	for (int r = 0; r < B && rc == 0; r++) {
		mb_rng g;
		size_t k = 0;
		double f, fm, fe;
		int reached;
		memset(w, 0, sizeof(unsigned) * n);
		mb_rng_init_named(&g, ev->o.seed, "circuit/bootstrap", (uint64_t)r);
		for (size_t j = 0; j < n; j++)
			w[mb_rng_range(&g, n)]++;
		node_scores(score, effects, w, n, (int)N);
		rank_nodes(order, score, (int)N);
		fm = pooled(fm_row, w, n);
		fe = pooled(fe_row, w, n);
		if ((rc = grow(&k, &f, &reached, &m, order, w, fm, fe, &ref->criterion, err)) < 0)
			break;
		memset(mask, 0, N);
		for (size_t i = 0; i < k; i++)
			mask[order[i]] = 1;
		st->jaccard[r] = mb_circuit_jaccard(mask, ref->member, (int)N);
		for (size_t v = 0; v < N; v++)
			st->inclusion[v] += mask[v];
	}
	if (rc < 0)
		goto cleanup;
	st->resamples = B;
	st->level = level;
	st->jaccard_mean = pooled(st->jaccard, NULL, (size_t)B);
	memcpy(sorted, st->jaccard, sizeof(double) * (size_t)B);
	qsort(sorted, (size_t)B, sizeof(double), cmp_double);
	st->jaccard_lo = quantile(sorted, (size_t)B, (1 - level) / 2);
	st->jaccard_hi = quantile(sorted, (size_t)B, (1 + level) / 2);
	for (size_t v = 0; v < N; v++)
		st->inclusion[v] /= B;
cleanup:
	memo_dispose(&m);
	free(w);
	free(score);
	free(order);
	free(mask);
	free(sorted);
	free(fm_row);
	free(fe_row);
	if (rc < 0) {
		free(st->jaccard);
		free(st->inclusion);
		memset(st, 0, sizeof(*st));
	}
	return rc;
}

/* ---- precision and recall --------------------------------------------------- */

static double ratio1(int num, int den)
{
	return den ? (double)num / den : 1.0;
}

void mb_circuit_compare(mb_circuit_pr *out, mb_circuit *found, const mb_circuit *truth)
{
	int tp = 0, nf = 0, nt = 0, etp = 0;
	int N = found->N < truth->N ? found->N : truth->N;

	for (int v = 0; v < found->N; v++)
		nf += found->member[v];
	for (int v = 0; v < truth->N; v++)
		nt += truth->member[v];
	for (int v = 0; v < N; v++)
		tp += found->member[v] && truth->member[v];
	for (size_t i = 0; i < found->n_edges; i++)
		for (size_t j = 0; j < truth->n_edges; j++)
			if (found->edges[i].from == truth->edges[j].from &&
			    found->edges[i].to == truth->edges[j].to &&
			    found->edges[i].via == truth->edges[j].via) {
				etp++;
				break;
			}
	out->node_precision = ratio1(tp, nf);
	out->node_recall = ratio1(tp, nt);
	out->edge_precision = ratio1(etp, (int)found->n_edges);
	out->edge_recall = ratio1(etp, (int)truth->n_edges);
	found->truth = *out;
	found->has_truth = 1;
}

/* ---- JSON ------------------------------------------------------------------- */

json_t *mb_circuit_to_json(const mb_circuit *c, const char *method)
{
	json_t *o = json_object(), *nodes = json_array(), *edges = json_array(), *crit;
	char id[MB_CIRCUIT_ID_MAX], to[MB_CIRCUIT_ID_MAX];
	int bad = !o || !nodes || !edges;

	crit = json_pack("{s:s, s:f, s:s, s:f, s:b, s:f}", "metric", "faithfulness", "min",
			 c->criterion.min, "definition", mb_circuit_faith_name(c->criterion.faith),
			 "edge_min", c->criterion.edge_min, "reached", c->reached, "value",
			 isfinite(c->faithfulness) ? c->faithfulness : 0.0);
	bad |= !crit;
	if (!bad) {
		bad |= json_object_set_new(o, "kind", json_string("circuit"));
		bad |= json_object_set_new(o, "version", json_integer(1));
		bad |= json_object_set_new(o, "method", json_string(method ? method : "patching"));
		bad |= json_object_set_new(o, "ablation",
					   json_string(mb_circuit_ablation_name(c->ablation)));
		bad |= json_object_set_new(o, "criterion", crit);
		crit = NULL;
		bad |= json_object_set_new(o, "f_model", json_real(c->f_model));
		bad |= json_object_set_new(o, "f_empty", json_real(c->f_empty));
	}
	json_decref(crit);
	for (size_t i = 0; i < c->n_nodes && !bad; i++) {
		int v = c->nodes[i], h = mb_circuit_node_head(&c->cfg, v);
		json_t *n;
		mb_circuit_node_id(id, &c->cfg, v);
		n = json_pack("{s:s, s:i, s:i, s:s, s:f}", "id", id, "layer",
			      mb_circuit_node_layer(&c->cfg, v), "head", h, "kind",
			      h >= 0 ? "head" : "mlp", "effect", c->score[v]);
		if (n && c->stability.resamples > 0)
			bad |= json_object_set_new(n, "inclusion",
						   json_real(c->stability.inclusion[v]));
		bad |= json_array_append_new(nodes, n);
	}
	for (size_t i = 0; i < c->n_edges && !bad; i++) {
		mb_circuit_node_id(id, &c->cfg, c->edges[i].from);
		mb_circuit_node_id(to, &c->cfg, c->edges[i].to);
		bad |= json_array_append_new(edges, json_pack("{s:s, s:s, s:s, s:f}", "from", id,
							      "to", to, "via",
							      mb_circuit_via_name(c->edges[i].via),
							      "effect", c->edges[i].effect));
	}
	if (!bad) {
		bad |= json_object_set(o, "nodes", nodes) | json_object_set(o, "edges", edges);
		if (c->stability.resamples > 0)
			bad |= json_object_set_new(
				o, "stability",
				json_pack("{s:i, s:f, s:f, s:f, s:f}", "resamples",
					  c->stability.resamples, "level", c->stability.level,
					  "jaccard_mean", c->stability.jaccard_mean, "jaccard_lo",
					  c->stability.jaccard_lo, "jaccard_hi",
					  c->stability.jaccard_hi));
		if (c->has_truth)
			bad |= json_object_set_new(
				o, "truth",
				json_pack("{s:f, s:f, s:f, s:f}", "node_precision",
					  c->truth.node_precision, "node_recall", c->truth.node_recall,
					  "edge_precision", c->truth.edge_precision, "edge_recall",
					  c->truth.edge_recall));
	}
	json_decref(nodes);
	json_decref(edges);
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int parse_via(mb_circuit_via *out, const char *s)
{
	for (int v = 0; v < 4; v++)
		if (s && strcmp(s, via_names[v]) == 0) {
			*out = (mb_circuit_via)v;
			return 0;
		}
	return -1;
}

int mb_circuit_from_json(mb_circuit **out, const json_t *doc, const mb_engine_config *cfg,
			 int mlps, const char *name, mb_error *err)
{
	mb_circuit *c = circuit_new(cfg, mlps);
	const json_t *nodes = json_object_get(doc, "nodes"), *edges = json_object_get(doc, "edges");
	const json_t *abl = json_object_get(doc, "ablation");
	char what[160];
	int rc = 0;

	*out = NULL;
	if (!c)
		return mb_error_oom(err, "circuit", sizeof(*c));
	if (!json_is_object(doc) || !json_is_array(nodes) || (edges && !json_is_array(edges)))
		rc = mb_error_set(err, MB_EINVALID, "%s: expected an object with a \"nodes\" array "
				  "(and an \"edges\" array)", name);
	if (rc == 0 && abl) {
		snprintf(what, sizeof(what), "%s: ablation", name);
		rc = mb_circuit_ablation_parse(&c->ablation, json_string_value(abl), what, err);
	}
	for (size_t i = 0; rc == 0 && i < json_array_size(nodes); i++) {
		const char *id = json_string_value(json_object_get(json_array_get(nodes, i), "id"));
		int v = 0;
		snprintf(what, sizeof(what), "%s: nodes[%zu].id", name, i);
		if (!id)
			rc = mb_error_set(err, MB_EINVALID, "%s: missing or not a string", what);
		else if ((rc = mb_circuit_node_parse(&v, id, cfg, mlps, what, err)) == 0 &&
			 c->member[v])
			rc = mb_error_set(err, MB_EINVALID, "%s: '%s' listed twice", what, id);
		if (rc == 0) {
			c->member[v] = 1;
			c->nodes[c->n_nodes++] = v;
		}
	}
	if (rc == 0 && json_array_size(edges) > 0 &&
	    !(c->edges = calloc(json_array_size(edges), sizeof(*c->edges))))
		rc = mb_error_oom(err, "circuit edges", json_array_size(edges));
	for (size_t i = 0; rc == 0 && i < json_array_size(edges); i++) {
		const json_t *e = json_array_get(edges, i);
		const char *f = json_string_value(json_object_get(e, "from"));
		const char *t = json_string_value(json_object_get(e, "to"));
		const char *via = json_string_value(json_object_get(e, "via"));
		mb_circuit_edge *x = &c->edges[c->n_edges];
		snprintf(what, sizeof(what), "%s: edges[%zu]", name, i);
		if (!f || !t || !via)
			rc = mb_error_set(err, MB_EINVALID, "%s: needs string fields from, to, via",
					  what);
		else if (parse_via(&x->via, via) < 0)
			rc = mb_error_set(err, MB_EINVALID, "%s.via: '%s': expected q, k, v or "
					  "resid", what, via);
		else if ((rc = mb_circuit_node_parse(&x->from, f, cfg, mlps, what, err)) == 0 &&
			 (rc = mb_circuit_node_parse(&x->to, t, cfg, mlps, what, err)) == 0) {
			if (!c->member[x->from] || !c->member[x->to])
				rc = mb_error_set(err, MB_EINVALID, "%s: %s -> %s: both ends must be "
						  "nodes of the circuit", what, f, t);
			else if (mb_circuit_node_layer(cfg, x->from) >= mb_circuit_node_layer(cfg, x->to))
				rc = mb_error_set(err, MB_EINVALID, "%s: %s -> %s: the sender must be "
						  "in an earlier layer", what, f, t);
			else
				c->n_edges++;
		}
	}
	if (rc < 0) {
		mb_circuit_free(c);
		return rc;
	}
	*out = c;
	return 0;
}
