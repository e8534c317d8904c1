/*
 * sae_battery.c: the per-feature causal battery (sae.h, "the causal
 * battery"): one latent ablated or clamped with the SAE's error term kept,
 * and a random direction of the same norm at the same point as its control.
 *
 * Legend: B items of a forward, T positions, D d_in, S d_sae, V vocab,
 * F features, n items.
 */
#include <mechbench/sae.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/detmath.h>
#include <mechbench/effect.h>
#include <mechbench/logits.h>
#include <mechbench/rng.h>

enum { ARM_ABLATE = 0, ARM_ABLATE_CTRL, ARM_STEER, ARM_STEER_CTRL, N_ARMS };

/* The hook of one arm: x += (target - f_j) dir at every valid position. */
typedef struct edit_hook {
	const mb_sae *sae;
	mb_sae_work *work;
	float *rows;        /* (B T, D) */
	int latent;
	int clamp;          /* 0: target 0 (ablate); 1: target = value */
	float value;
	const float *dir;   /* (B, D) per-item direction, or NULL: W_dec[latent] */
} edit_hook;

/* f_j of row r of the last mb_sae_forward (0 when inactive). */
static float latent_value(const mb_sae_work *w, int r, int j)
{
	const int32_t *idx = w->idx + (size_t)r * w->cap;
	for (int e = 0; e < w->nnz[r]; e++)
		if (idx[e] == j)
			return w->val[(size_t)r * w->cap + e];
	return 0.0f;
}

static int edit_hook_fn(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	edit_hook *h = payload;
	const int D = h->sae->d_in;
	int n, r = 0, error;

	if ((error = mb_sae_rows_gather(h->rows, &n, t, D, err)) < 0)
		return error;
	if (n > h->work->max_rows)
		return mb_error_set(err, MB_EINVALID,
				    "sae battery: %d positions exceed the work's %d rows", n,
				    h->work->max_rows);
	mb_sae_forward(h->sae, h->work, h->rows, n);
	for (int b = 0; b < t->batch; b++) {
		int len = t->lengths ? t->lengths[b] : t->seq;
		const float *d = h->dir ? h->dir + (size_t)b * D
					: h->sae->W_dec + (size_t)h->latent * D;
		for (int p = 0; p < len; p++, r++) {
			float f = latent_value(h->work, r, h->latent);
			float delta = (h->clamp ? h->value : 0.0f) - f;
			float *x = t->data + ((size_t)b * t->seq + p) * (size_t)D;
			if (delta == 0.0f)
				continue;
			for (int i = 0; i < D; i++)
				x[i] += delta * d[i];
		}
	}
	return 0;
}

/* The run of items i0 .. i0 + nb - 1 of tokens (n, seq). */
static void batch_run(mb_run *run, const int32_t *tokens, size_t i0, int nb, int seq,
		      const mb_hooks *hooks, mb_logits_mode logits)
{
	memset(run, 0, sizeof(*run));
	run->batch = nb;
	run->seq = seq;
	run->tokens = tokens + i0 * (size_t)seq;
	run->hooks = hooks;
	run->logits = logits;
}

/* A read-only hook that gathers the point's rows. */
typedef struct gather {
	int d_in, n;
	float *rows; /* (B T, D) */
} gather;

static int gather_hook_fn(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	gather *g = payload;
	return mb_sae_rows_gather(g->rows, &g->n, t, g->d_in, err);
}

/* log of the softmax mass of z (V) on the tokens with mask[v] set: log of
 * (sum over them of exp(z - max)) / (sum over all), in double (detmath). */
static double log_mass(const float *z, int V, const uint8_t *mask)
{
	double mx = z[mb_logits_argmax(z, V)], s = 0, ss = 0;
	for (int v = 0; v < V; v++) {
		double x = mb_detmath_exp((double)z[v] - mx);
		s += x;
		if (mask[v])
			ss += x;
	}
	if (ss == 0.0) { /* every masked logit underflowed: shift by their own max */
		double ms = -INFINITY;
		for (int v = 0; v < V; v++)
			if (mask[v] && z[v] > ms)
				ms = z[v];
		if (ms == -INFINITY)
			return -INFINITY; /* an empty readout; callers never pass one */
		for (int v = 0; v < V; v++)
			if (mask[v])
				ss += mb_detmath_exp((double)z[v] - ms);
		return (ms - mx) + mb_detmath_log(ss) - mb_detmath_log(s);
	}
	return mb_detmath_log(ss) - mb_detmath_log(s);
}

/* L (K) the log-mass of z (V) on each of the K readouts (K, V), as log_mass
 * computes it, with the exponentials (scratch ex (V)) taken once. */
static void log_mass_all(double *L, const float *z, int V, const uint8_t *readout, int K,
			 double *ex)
{
	double mx = z[mb_logits_argmax(z, V)], s = 0;
	for (int v = 0; v < V; v++) {
		ex[v] = mb_detmath_exp((double)z[v] - mx);
		s += ex[v];
	}
	const double ls = mb_detmath_log(s);
	for (int h = 0; h < K; h++) {
		const uint8_t *mask = readout + (size_t)h * V;
		double ss = 0;
		for (int v = 0; v < V; v++)
			if (mask[v])
				ss += ex[v];
		L[h] = ss > 0.0 ? mb_detmath_log(ss) - ls : log_mass(z, V, mask);
	}
}

/* rel (sae.h) of item b of the run whose logits row (b, t) logits_row gives:
 * mean over t of L_k - mean over the absent values h != k of L_h; NaN when
 * no other value is absent. absent (K): the item's absent values. */
static double rel_readout(const float *(*row)(void *, int, int), void *ctx, int b, int T, int V,
			  const mb_sae_labels *lab, int k, const uint8_t *absent, double *L,
			  double *ex)
{
	const int K = lab->n_values;
	int np = 0;
	for (int h = 0; h < K; h++)
		np += h != k && absent[h];
	if (np == 0)
		return NAN;
	double s = 0;
	for (int t = 0; t < T; t++) {
		double o = 0;
		log_mass_all(L, row(ctx, b, t), V, lab->readout, K, ex);
		for (int h = 0; h < K; h++)
			if (h != k && absent[h])
				o += L[h];
		s += L[k] - o / np;
	}
	return s / T;
}

/* Logit rows of the clean copy (B, T, V) and of the engine's last run. */
typedef struct clean_rows {
	const float *z;
	int T, V;
} clean_rows;

static const float *clean_row(void *ctx, int b, int t)
{
	const clean_rows *c = ctx;
	return c->z + ((size_t)b * c->T + t) * c->V;
}

static const float *engine_row(void *ctx, int b, int t)
{
	return mb_engine_logits_row((const mb_engine *)ctx, b, t);
}

/* KL(p || q) of the distributions of z_p and z_q (V) renormalised over the
 * tokens with mask[v] == 0. */
static double kl_outside(const float *zp, const float *zq, int V, const uint8_t *mask)
{
	double mp = -INFINITY, mq = -INFINITY, sp = 0, sq = 0, kl = 0;
	for (int v = 0; v < V; v++)
		if (!mask[v]) {
			if (zp[v] > mp)
				mp = zp[v];
			if (zq[v] > mq)
				mq = zq[v];
		}
	if (mp == -INFINITY)
		return 0.0;
	for (int v = 0; v < V; v++)
		if (!mask[v]) {
			sp += mb_detmath_exp((double)zp[v] - mp);
			sq += mb_detmath_exp((double)zq[v] - mq);
		}
	double lp0 = mp + mb_detmath_log(sp), lq0 = mq + mb_detmath_log(sq);
	for (int v = 0; v < V; v++)
		if (!mask[v]) {
			double lp = (double)zp[v] - lp0, lq = (double)zq[v] - lq0;
			kl += mb_detmath_exp(lp) * (lp - lq);
		}
	return kl;
}

void mb_sae_battery_dispose(mb_sae_battery *b)
{
	free(b->block);
	memset(b, 0, sizeof(*b));
}

int mb_sae_battery_run(mb_sae_battery *out, mb_engine *e, const mb_sae *sae,
		       mb_hook_point point, const int32_t *tokens, size_t n, int seq, int batch,
		       const uint64_t *item_index, const mb_sae_labels *labels,
		       const mb_sae_feature *features, int n_features, double steer_k,
		       uint64_t seed, mb_error *err)
{
	const int D = sae->d_in, V = mb_engine_cfg(e)->n_vocab;
	const size_t FN = (size_t)n_features * n;
	mb_hooks *hooks = NULL;
	mb_sae_work w;
	edit_hook h;
	float *clean = NULL, *dirs = NULL;
	double *rclean = NULL, *relclean = NULL, *L = NULL, *ex = NULL;
	uint8_t *absent = NULL;
	const int K = labels->n_values;
	int error;

	memset(out, 0, sizeof(*out));
	memset(&w, 0, sizeof(w));
	memset(&h, 0, sizeof(h));
	if (steer_k <= 0 || !isfinite(steer_k))
		return mb_error_set(err, MB_EINVALID, "sae battery: steering multiple %g must be > 0",
				    steer_k);
	if (batch < 1 || seq < 1)
		return mb_error_set(err, MB_EINVALID, "sae battery: batch %d, seq %d", batch, seq);
	for (int f = 0; f < n_features; f++)
		if (features[f].latent < 0 || features[f].latent >= sae->d_sae ||
		    features[f].value < 0 || features[f].value >= K ||
		    !isfinite(features[f].max_act))
			return mb_error_set(err, MB_EINVALID,
					    "sae battery: feature %d: latent %d not in [0, %d), value "
					    "%d not in [0, %d) or max activation %g not finite",
					    f, features[f].latent, sae->d_sae, features[f].value, K,
					    features[f].max_act);
	out->n_features = n_features;
	out->n = n;
	out->block = malloc((FN ? FN : 1) * 8 * sizeof(double));
	clean = malloc((size_t)batch * seq * V * sizeof(float));
	dirs = malloc((size_t)batch * D * sizeof(float));
	h.rows = malloc((size_t)batch * seq * D * sizeof(float));
	rclean = malloc((size_t)batch * sizeof(double));
	relclean = malloc((size_t)batch * sizeof(double));
	L = malloc((size_t)(K > 0 ? K : 1) * sizeof(double));
	ex = malloc((size_t)V * sizeof(double));
	absent = malloc((size_t)batch * (K > 0 ? K : 1));
	if (!out->block || !clean || !dirs || !h.rows || !rclean || !relclean || !L || !ex ||
	    !absent) {
		error = mb_error_oom(err, "sae battery buffers", FN * 8 * sizeof(double));
		goto cleanup;
	}
	out->necessity = out->block;
	out->necessity_control = out->block + FN;
	out->selectivity = out->block + 2 * FN;
	out->steering = out->block + 3 * FN;
	out->steering_control = out->block + 4 * FN;
	out->collateral = out->block + 5 * FN;
	out->sufficiency = out->block + 6 * FN;
	out->sufficiency_control = out->block + 7 * FN;
	for (size_t i = 0; i < 8 * FN; i++)
		out->block[i] = NAN;
	if ((error = mb_hooks_init(&hooks, err)) < 0 ||
	    (error = mb_sae_work_init(&w, sae, batch * seq, 0, err)) < 0)
		goto cleanup;
	h.sae = sae;
	h.work = &w;

	for (size_t i0 = 0; i0 < n; i0 += (size_t)batch) {
		const int nb = n - i0 < (size_t)batch ? (int)(n - i0) : batch;
		mb_run run;
		batch_run(&run, tokens, i0, nb, seq, hooks, MB_LOGITS_ALL);
		mb_hooks_clear(hooks);
		if ((error = mb_engine_forward(e, &run, err)) < 0)
			goto cleanup;
		mb_engine_logits_copy(e, clean);
		for (int b = 0; b < nb; b++)
			for (int k = 0; k < K; k++)
				absent[(size_t)b * K + k] =
					labels->present[(size_t)k * n + i0 + (size_t)b] == 0;
		clean_rows cr = {clean, seq, V};

		for (int f = 0; f < n_features; f++) {
			const mb_sae_feature *ft = &features[f];
			const int j = ft->latent, k = ft->value;
			const uint8_t *readout = labels->readout + (size_t)k * V;
			const uint8_t *present = labels->present + (size_t)k * n;
			double nrm = 0;
			for (int i = 0; i < D; i++)
				nrm += (double)sae->W_dec[(size_t)j * D + i] * sae->W_dec[(size_t)j * D + i];
			nrm = sqrt(nrm);
			char stream[48];
			snprintf(stream, sizeof(stream), "sae/battery/control/%d", j);
			for (int b = 0; b < nb; b++) {
				mb_rng r;
				uint64_t idx = item_index ? item_index[i0 + b] : (uint64_t)(i0 + b);
				mb_rng_init_named(&r, seed, stream, idx);
				mb_effect_control_direction(dirs + (size_t)b * D, &r, D, nrm);
			}
			for (int b = 0; b < nb; b++) {
				double s = 0;
				for (int t = 0; t < seq; t++)
					s += log_mass(clean + ((size_t)b * seq + t) * V, V, readout);
				rclean[b] = s / seq;
				relclean[b] = present[i0 + b]
						      ? NAN
						      : rel_readout(clean_row, &cr, b, seq, V, labels, k,
								    absent + (size_t)b * K, L, ex);
			}
			for (int arm = 0; arm < N_ARMS; arm++) {
				h.latent = j;
				h.clamp = arm == ARM_STEER || arm == ARM_STEER_CTRL;
				h.value = (float)(steer_k * ft->max_act);
				h.dir = arm == ARM_ABLATE_CTRL || arm == ARM_STEER_CTRL ? dirs : NULL;
				mb_hooks_clear(hooks);
				if ((error = mb_hooks_add(hooks, point, edit_hook_fn, &h, 0, err)) < 0 ||
				    (error = mb_engine_forward(e, &run, err)) < 0)
					goto cleanup;
				for (int b = 0; b < nb; b++) {
					const size_t at = (size_t)f * n + i0 + (size_t)b;
					const int here = present[i0 + b] != 0;
					double s = 0, kl = 0, rel = NAN;
					for (int t = 0; t < seq; t++) {
						const float *z = mb_engine_logits_row(e, b, t);
						s += log_mass(z, V, readout);
						if (arm == ARM_STEER && !here)
							kl += kl_outside(clean + ((size_t)b * seq + t) * V,
									 z, V, readout);
					}
					if (!here && (arm == ARM_STEER || arm == ARM_STEER_CTRL))
						rel = rel_readout(engine_row, (void *)e, b, seq, V, labels, k,
								  absent + (size_t)b * K, L, ex);
					const double r = s / seq;
					switch (arm) {
					case ARM_ABLATE:
						if (here)
							out->necessity[at] = rclean[b] - r;
						else
							out->selectivity[at] = rclean[b] - r;
						break;
					case ARM_ABLATE_CTRL:
						if (here)
							out->necessity_control[at] = rclean[b] - r;
						break;
					case ARM_STEER:
						if (!here) {
							out->steering[at] = rel - relclean[b];
							out->collateral[at] = kl / seq;
						} else
							out->sufficiency[at] = r - rclean[b];
						break;
					default:
						if (!here)
							out->steering_control[at] = rel - relclean[b];
						else
							out->sufficiency_control[at] = r - rclean[b];
						break;
					}
				}
			}
		}
	}
	error = 0;
cleanup:
	if (error < 0)
		mb_sae_battery_dispose(out);
	mb_hooks_free(hooks);
	mb_sae_work_dispose(&w);
	free(clean);
	free(dirs);
	free(h.rows);
	free(rclean);
	free(relclean);
	free(L);
	free(ex);
	free(absent);
	return error;
}

int mb_sae_act_summary(float *max, double *item_mean, double *density, mb_engine *e,
			const mb_sae *sae, mb_hook_point point, const int32_t *tokens, size_t n,
			int seq, int batch, mb_error *err)
{
	const int D = sae->d_in, S = sae->d_sae;
	mb_hooks *hooks = NULL;
	mb_sae_work w;
	gather g;
	int error;

	memset(&w, 0, sizeof(w));
	memset(&g, 0, sizeof(g));
	for (int j = 0; j < S; j++) {
		max[j] = 0.0f;
		if (density)
			density[j] = 0.0;
	}
	if (item_mean)
		memset(item_mean, 0, n * (size_t)S * sizeof(double));
	g.rows = malloc((size_t)batch * seq * D * sizeof(float));
	if (!g.rows)
		return mb_error_oom(err, "sae activation summary",
				    (size_t)batch * seq * D * sizeof(float));
	if ((error = mb_hooks_init(&hooks, err)) < 0 ||
	    (error = mb_sae_work_init(&w, sae, batch * seq, 0, err)) < 0 ||
	    (error = mb_hooks_add(hooks, point, gather_hook_fn, &g, MB_HOOK_READONLY, err)) < 0)
		goto cleanup;
	g.d_in = D;
	for (size_t i0 = 0; i0 < n; i0 += (size_t)batch) {
		const int nb = n - i0 < (size_t)batch ? (int)(n - i0) : batch;
		mb_run run;
		batch_run(&run, tokens, i0, nb, seq, hooks, MB_LOGITS_NONE);
		if ((error = mb_engine_forward(e, &run, err)) < 0)
			goto cleanup;
		mb_sae_forward(sae, &w, g.rows, g.n);
		for (int r = 0; r < g.n; r++) {
			const size_t item = i0 + (size_t)(r / seq);
			for (int k = 0; k < w.nnz[r]; k++) {
				int j = w.idx[(size_t)r * w.cap + k];
				float v = w.val[(size_t)r * w.cap + k];
				if (v > max[j])
					max[j] = v;
				if (item_mean)
					item_mean[item * S + j] += (double)v / seq;
				if (density && v != 0.0f)
					density[j] += 1.0;
			}
		}
	}
	if (density)
		for (int j = 0; j < S; j++)
			density[j] /= (double)n * seq;
	error = 0;
cleanup:
	mb_hooks_free(hooks);
	mb_sae_work_dispose(&w);
	free(g.rows);
	return error;
}
