/*
 * sae_train.c: the deterministic SAE trainer and the SAE evaluation with the
 * SAE spliced into the model's forward (sae_train.h).
 *
 * Legend: R rows per step, D d_in, S d_sae, NP parameter floats, V vocab.
 *
 * Step t (1-based) of `steps`: mb_sae_train_step on the next R rows from the
 * source (read as the step goes), times the normalisation factor, at
 * lambda_t (ReLU: lambda min(1, t / (0.05 steps))) with the dead mask of the
 * rows before this step (TopK); ReLU: global-norm clipping at 1; TopK: each
 * decoder row's gradient loses its component along the (unit) row; Adam
 * (adamw.h with weight decay 0) at lr_t (ReLU: lr times min(1, (steps - t +
 * 1) / (0.2 steps)) over the last 20%); TopK: decoder rows renormalised.
 * Dead latents: rows since each latent last fired (in this step's forward)
 * reach dead_tokens.
 */
#include <mechbench/sae_train.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mechbench/adamw.h>
#include <mechbench/detmath.h>
#include <mechbench/ioi_templates.h>
#include <mechbench/logits.h>
#include <mechbench/rng.h>

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

mb_sae_train_config mb_sae_train_defaults(mb_sae_arch arch)
{
	mb_sae_train_config c;

	memset(&c, 0, sizeof(c));
	c.arch = arch;
	c.width = 512;
	c.k = 32;
	c.l1 = 5.0;
	c.tokens = 2000000;
	c.batch = 4096;
	c.aux_coef = 1.0 / 32.0;
	return c;
}

/* Weiszfeld's iteration for the geometric median of rows (n, D), from the
 * mean, in double and row order; stops after 100 iterations or when the
 * step is below 1e-6 of the median's norm. */
static int geometric_median(float *out, const float *rows, int64_t n, int D, mb_error *err)
{
	double *y = calloc((size_t)D, sizeof(double)), *ny = calloc((size_t)D, sizeof(double));

	if (!y || !ny) {
		free(y);
		free(ny);
		return mb_error_oom(err, "geometric median", 0);
	}
	for (int64_t r = 0; r < n; r++)
		for (int i = 0; i < D; i++)
			y[i] += rows[(size_t)r * D + i];
	for (int i = 0; i < D; i++)
		y[i] /= (double)n;
	for (int it = 0; it < 100; it++) {
		double wsum = 0.0, step = 0.0, norm = 0.0;
		for (int i = 0; i < D; i++)
			ny[i] = 0.0;
		for (int64_t r = 0; r < n; r++) {
			const float *x = rows + (size_t)r * D;
			double d2 = 0.0;
			for (int i = 0; i < D; i++) {
				double d = (double)x[i] - y[i];
				d2 += d * d;
			}
			double w = 1.0 / (sqrt(d2) > 1e-12 ? sqrt(d2) : 1e-12);
			wsum += w;
			for (int i = 0; i < D; i++)
				ny[i] += w * (double)x[i];
		}
		for (int i = 0; i < D; i++) {
			ny[i] /= wsum;
			step += (ny[i] - y[i]) * (ny[i] - y[i]);
			norm += ny[i] * ny[i];
			y[i] = ny[i];
		}
		if (sqrt(step) <= 1e-6 * sqrt(norm))
			break;
	}
	for (int i = 0; i < D; i++)
		out[i] = (float)y[i];
	free(y);
	free(ny);
	return 0;
}

/* Scales row j of W (S, D) to norm `norm` (in double). */
static void set_row_norm(float *row, int D, double norm)
{
	double n2 = 0.0;
	for (int i = 0; i < D; i++)
		n2 += (double)row[i] * (double)row[i];
	if (n2 <= 0.0)
		return;
	double c = norm / sqrt(n2);
	for (int i = 0; i < D; i++)
		row[i] = (float)((double)row[i] * c);
}

static json_t *loss_json(int64_t step, const mb_sae_loss *l, double dead)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "step", json_integer(step));
	json_object_set_new(o, "loss", json_real(l->total));
	json_object_set_new(o, "mse", json_real(l->mse));
	json_object_set_new(o, "sparsity", json_real(l->sparse));
	json_object_set_new(o, "aux", json_real(l->aux));
	json_object_set_new(o, "l0", json_real(l->l0));
	json_object_set_new(o, "dead_frac", json_real(dead));
	return o;
}

int mb_sae_train(mb_sae **out, mb_sae_train_result *res, mb_sae_source *src,
		 const mb_sae_train_config *cfg_in, mb_sae_progress_fn progress, void *payload,
		 mb_error *err)
{
	mb_sae_train_config cfg = *cfg_in;
	mb_sae *s = NULL;
	mb_sae_work w;
	mb_adamw opt;
	mb_adamw_config ac;
	float *grad = NULL, *init = NULL, *init_own = NULL;
	int64_t *last = NULL;
	uint8_t *dead = NULL;
	json_t *losses = NULL;
	const int D = src->d_in;
	int64_t steps;
	double t0 = now_seconds(), scale = 1.0;
	int error;

	*out = NULL;
	memset(res, 0, sizeof(*res));
	memset(&w, 0, sizeof(w));
	memset(&opt, 0, sizeof(opt));
	memset(&ac, 0, sizeof(ac));
	if (cfg.arch != MB_SAE_RELU && cfg.arch != MB_SAE_TOPK)
		return mb_error_set(err, MB_EINVALID, "sae train: arch must be relu or topk");
	if (cfg.batch < 1 || cfg.tokens < cfg.batch)
		return mb_error_set(err, MB_EINVALID,
				    "sae train: tokens %lld must be >= batch %d >= 1",
				    (long long)cfg.tokens, cfg.batch);
	if (cfg.arch == MB_SAE_RELU && !(cfg.l1 >= 0.0 && isfinite(cfg.l1)))
		return mb_error_set(err, MB_EINVALID, "sae train: l1 %g must be >= 0", cfg.l1);
	steps = cfg.tokens / cfg.batch;
	if (cfg.lr <= 0.0) {
		cfg.lr = 2e-4 * sqrt(16384.0 / (double)cfg.width);
		if (cfg.lr > 1e-3)
			cfg.lr = 1e-3;
	}
	if (cfg.dead_tokens <= 0)
		cfg.dead_tokens = cfg.tokens / 4 < 10000000 ? cfg.tokens / 4 : 10000000;
	if (cfg.init_rows <= 0)
		cfg.init_rows = 4 * (int64_t)cfg.batch;
	if (cfg.log_every <= 0)
		cfg.log_every = steps / 100 > 0 ? steps / 100 : 1;

	if ((error = mb_sae_init(&s, cfg.arch, D, cfg.width, cfg.k, err)) < 0)
		return error;
	if ((error = mb_sae_work_init(&w, s, cfg.batch, 1, err)) < 0)
		goto cleanup;
	grad = calloc(s->n_params, sizeof(float));
	/* The initialisation rows live in the gradient's block when they fit: no
	 * step has run yet, and each step overwrites the whole block. */
	if ((size_t)cfg.init_rows * D <= s->n_params)
		init = grad;
	else
		init = init_own = malloc((size_t)cfg.init_rows * D * sizeof(float));
	last = calloc((size_t)cfg.width, sizeof(int64_t));
	dead = calloc((size_t)cfg.width, 1);
	losses = json_array();
	if (!grad || !init || !last || !dead || !losses) {
		error = mb_error_oom(err, "sae training buffers", 0);
		goto cleanup;
	}

	/* Normalisation (E|x|^2 = D) and the geometric median of the first rows. */
	if ((error = src->next(src->self, init, (int)cfg.init_rows, err)) < 0)
		goto cleanup;
	{
		double sq = 0.0;
		for (int64_t r = 0; r < cfg.init_rows; r++)
			for (int i = 0; i < D; i++)
				sq += (double)init[(size_t)r * D + i] * (double)init[(size_t)r * D + i];
		sq /= (double)cfg.init_rows;
		scale = sq > 0.0 ? sqrt((double)D / sq) : 1.0;
		float fs = (float)scale;
		for (size_t i = 0; i < (size_t)cfg.init_rows * D; i++)
			init[i] *= fs;
	}
	if ((error = geometric_median(s->b_dec, init, cfg.init_rows, D, err)) < 0)
		goto cleanup;
	free(init_own); /* only the initialisation reads these rows */
	init = init_own = NULL;

	/* Decoder rows: random directions; encoder: their transpose. */
	{
		mb_rng r;
		const double dn = cfg.arch == MB_SAE_TOPK ? 1.0 : 0.1;
		mb_rng_init_named(&r, cfg.seed, "sae/init", 0);
		for (int j = 0; j < cfg.width; j++) {
			float *row = s->W_dec + (size_t)j * D;
			for (int i = 0; i < D; i++)
				row[i] = (float)mb_rng_normal(&r);
			set_row_norm(row, D, dn);
			for (int i = 0; i < D; i++)
				s->W_enc[(size_t)i * cfg.width + j] = row[i];
		}
	}

	ac.lr = cfg.lr;
	ac.beta1 = 0.9;
	ac.beta2 = 0.999;
	ac.eps = cfg.arch == MB_SAE_TOPK ? 6.25e-10 : 1e-8;
	ac.weight_decay = 0.0;
	if ((error = mb_adamw_init(&opt, s->n_params, &ac, err)) < 0)
		goto cleanup;

	const float fscale = (float)scale;
	int64_t tokens = 0;
	mb_sae_loss loss;
	double dead_frac = 0.0;
	memset(&loss, 0, sizeof(loss));
	for (int64_t t = 1; t <= steps; t++) {
		double lambda = cfg.l1;
		double wu = 0.05 * (double)steps;
		if (cfg.arch == MB_SAE_RELU && (double)t < wu)
			lambda = cfg.l1 * (double)t / wu;
		if ((error = mb_sae_train_step(&loss, s, &w, src, fscale, cfg.batch, lambda,
					       cfg.arch == MB_SAE_TOPK ? dead : NULL, cfg.aux_coef,
					       grad, err)) < 0)
			goto cleanup;
		double lr = cfg.lr;
		if (cfg.arch == MB_SAE_RELU) {
			mb_grad_clip(grad, s->n_params, 1.0);
			double tail = 0.2 * (double)steps, left = (double)(steps - t + 1);
			if (left < tail)
				lr = cfg.lr * left / tail;
		} else {
			/* Remove each decoder row's gradient component along the row. */
			mb_sae g = *s;
			mb_sae_carve(&g, grad);
#pragma omp parallel for schedule(static) if ((size_t)cfg.width * D >= ((size_t)1 << 16))
			for (int j = 0; j < cfg.width; j++) {
				const float *row = s->W_dec + (size_t)j * D;
				float *gr = g.W_dec + (size_t)j * D;
				double dot = 0.0, nn = 0.0;
				for (int i = 0; i < D; i++) {
					dot += (double)gr[i] * (double)row[i];
					nn += (double)row[i] * (double)row[i];
				}
				if (nn > 0.0) {
					float c = (float)(dot / nn);
					for (int i = 0; i < D; i++)
						gr[i] -= c * row[i];
				}
			}
		}
		mb_adamw_step(&opt, s->params, grad, lr);
		if (cfg.arch == MB_SAE_TOPK) {
#pragma omp parallel for schedule(static) if ((size_t)cfg.width * D >= ((size_t)1 << 16))
			for (int j = 0; j < cfg.width; j++)
				set_row_norm(s->W_dec + (size_t)j * D, D, 1.0);
		}
		tokens += cfg.batch;
		/* Dead latents: rows since each last fired. */
		int64_t nd = 0;
		for (int j = 0; j < cfg.width; j++) {
			if (w.fired[j])
				last[j] = tokens;
			dead[j] = tokens - last[j] >= cfg.dead_tokens;
			nd += dead[j];
		}
		dead_frac = (double)nd / cfg.width;
		if (t % cfg.log_every == 0 || t == steps) {
			json_t *o = loss_json(t, &loss, dead_frac);
			if (!o || json_array_append_new(losses, o) != 0) {
				error = mb_error_oom(err, "loss record", 0);
				goto cleanup;
			}
		}
		if (progress) {
			mb_sae_progress p;
			p.step = t;
			p.steps = steps;
			p.tokens = tokens;
			p.seconds = now_seconds() - t0;
			p.loss = loss;
			p.dead_frac = dead_frac;
			progress(&p, payload);
		}
	}

	/* Fold the normalisation into the weights: the SAE reads raw rows. */
	for (size_t i = 0; i < (size_t)D * cfg.width; i++)
		s->W_enc[i] *= fscale;
	for (size_t i = 0; i < (size_t)D * cfg.width; i++)
		s->W_dec[i] /= fscale;
	for (int i = 0; i < D; i++)
		s->b_dec[i] /= fscale;

	res->steps = steps;
	res->tokens = tokens;
	res->seconds = now_seconds() - t0;
	res->norm_scale = scale;
	res->final = loss;
	res->dead_frac = dead_frac;
	res->record = json_object();
	if (!res->record) {
		error = mb_error_oom(err, "training record", 0);
		goto cleanup;
	}
	json_object_set_new(res->record, "arch", json_string(cfg.arch == MB_SAE_TOPK ? "topk" : "relu"));
	json_object_set_new(res->record, "width", json_integer(cfg.width));
	if (cfg.arch == MB_SAE_TOPK) {
		json_object_set_new(res->record, "k", json_integer(cfg.k));
		json_object_set_new(res->record, "aux_coef", json_real(cfg.aux_coef));
	} else {
		json_object_set_new(res->record, "l1", json_real(cfg.l1));
	}
	json_object_set_new(res->record, "tokens", json_integer(tokens));
	json_object_set_new(res->record, "batch", json_integer(cfg.batch));
	json_object_set_new(res->record, "steps", json_integer(steps));
	json_object_set_new(res->record, "seed", json_integer((json_int_t)cfg.seed));
	json_object_set_new(res->record, "lr", json_real(cfg.lr));
	json_object_set_new(res->record, "adam_eps", json_real(ac.eps));
	json_object_set_new(res->record, "dead_tokens", json_integer(cfg.dead_tokens));
	json_object_set_new(res->record, "init_rows", json_integer(cfg.init_rows));
	json_object_set_new(res->record, "norm_scale", json_real(scale));
	json_object_set_new(res->record, "losses", losses);
	losses = NULL;
	*out = s;
	s = NULL;
	error = 0;
cleanup:
	mb_sae_free(s);
	mb_sae_work_dispose(&w);
	mb_adamw_dispose(&opt);
	free(grad);
	free(init_own);
	free(last);
	free(dead);
	json_decref(losses);
	return error;
}

/* ---- evaluation ---- */

/* An engine of model for runs of up to B sequences of T tokens, no kept
 * activations. */
static int engine_for(mb_engine **e, const mb_model *model, int B, int T, mb_error *err)
{
	mb_engine_opts opts;
	memset(&opts, 0, sizeof(opts));
	opts.max_batch = B;
	opts.max_seq = T;
	return mb_engine_init(e, &model->cfg, &model->w, &opts, err);
}

typedef struct eval_gather {
	float *rows;
	int n, D;
} eval_gather;

static int eval_gather_hook(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	eval_gather *g = payload;
	return mb_sae_rows_gather(g->rows, &g->n, t, g->D, err);
}

/* log-softmax of z (V) into out, in double with detmath (logits.h order). */
static void log_softmax(double *out, const float *z, int V)
{
	int a = mb_logits_argmax(z, V);
	double mx = z[a], s = 0.0;
	for (int v = 0; v < V; v++)
		s += mb_detmath_exp((double)z[v] - mx);
	double lse = mx + mb_detmath_log(s);
	for (int v = 0; v < V; v++)
		out[v] = (double)z[v] - lse;
}

/* KL(softmax(zp) || softmax(zq)) over V logits, in double (detmath);
 * lp, lq: (V) scratch. */
static double kl_logits(double *lp, double *lq, const float *zp, const float *zq, int V)
{
	double k = 0.0;
	log_softmax(lp, zp, V);
	log_softmax(lq, zq, V);
	for (int v = 0; v < V; v++)
		k += mb_detmath_exp(lp[v]) * (lp[v] - lq[v]);
	return k;
}

/* L0, MSE and cos of each of nb items of seq rows of the last mb_sae_forward
 * over rows (nb seq, D). */
static void recon_metrics(mb_sae_item_metrics *items, const mb_sae_work *w, const float *rows,
			  int nb, int seq, int D)
{
	for (int b = 0; b < nb; b++) {
		double l0 = 0, sse = 0, cs = 0;
		for (int t = 0; t < seq; t++) {
			int r = b * seq + t;
			l0 += w->nnz[r];
			sse += w->sse[r];
			cs += mb_sae_cos(rows + (size_t)r * D, w->x_hat + (size_t)r * D, D);
		}
		items[b].l0 = l0 / seq;
		items[b].mse = sse / ((double)seq * D);
		items[b].cos = cs / seq;
	}
}

void mb_sae_eval_dispose(mb_sae_eval_result *r)
{
	free(r->items);
	memset(r, 0, sizeof(*r));
}

/* What an evaluation with the SAE spliced in holds for batches of up to
 * `rows` positions: the hooks, the SAE's work, the splice (reading the rows
 * the gather hook collects), the clean logits (rows, V) and two (V)
 * log-softmax rows. */
typedef struct splice_eval {
	mb_hooks *hooks;
	mb_sae_work w;
	mb_sae_splice sp;
	eval_gather g;
	float *clean;    /* (rows, V) */
	double *lp, *lq; /* (V) */
} splice_eval;

static void splice_eval_dispose(splice_eval *q)
{
	mb_hooks_free(q->hooks);
	mb_sae_work_dispose(&q->w);
	free(q->g.rows);
	free(q->clean);
	free(q->lp);
	free(q->lq);
	memset(q, 0, sizeof(*q));
}

/* what: the caller's name for its buffers in an out-of-memory message. */
static int splice_eval_init(splice_eval *q, const mb_sae *sae, int rows, int V, const char *what,
			    mb_error *err)
{
	const int D = sae->d_in;
	int error;

	memset(q, 0, sizeof(*q));
	if ((error = mb_hooks_init(&q->hooks, err)) < 0 ||
	    (error = mb_sae_work_init(&q->w, sae, rows, 0, err)) < 0)
		goto fail;
	q->g.rows = malloc((size_t)rows * D * sizeof(float));
	q->g.D = D;
	q->clean = malloc((size_t)rows * V * sizeof(float));
	q->lp = malloc((size_t)V * sizeof(double));
	q->lq = malloc((size_t)V * sizeof(double));
	if (!q->g.rows || !q->clean || !q->lp || !q->lq) {
		error = mb_error_oom(err, what, (size_t)rows * V * sizeof(float));
		goto fail;
	}
	q->sp.sae = sae;
	q->sp.work = &q->w;
	q->sp.rows = q->g.rows;
	return 0;
fail:
	splice_eval_dispose(q);
	return error;
}

int mb_sae_evaluate(mb_sae_eval_result *out, const mb_model *model, const mb_sae *sae,
		    mb_hook_point point, mb_sae_corpus *corpus, int64_t n_batches,
		    mb_error *err)
{
	mb_engine *e = NULL;
	mb_sae_stats st;
	splice_eval q;
	int B, T, error;
	const int V = model->cfg.n_vocab, D = sae->d_in;
	double ce[3] = {0, 0, 0}, kl[2] = {0, 0};
	int64_t n_ce = 0, n_kl = 0, cap_items = 0;

	memset(out, 0, sizeof(*out));
	memset(&st, 0, sizeof(st));
	memset(&q, 0, sizeof(q));
	if (n_batches < 1)
		return mb_error_set(err, MB_EINVALID, "sae eval: batches %lld must be >= 1",
				    (long long)n_batches);
	mb_sae_corpus_shape(corpus, &B, &T);
	if ((error = engine_for(&e, model, B, T, err)) < 0)
		return error;
	if ((error = splice_eval_init(&q, sae, B * T, V, "sae eval buffers", err)) < 0 ||
	    (error = mb_sae_stats_init(&st, D, sae->d_sae, err)) < 0)
		goto cleanup;

	for (int64_t bi = 0; bi < n_batches; bi++) {
		mb_sae_batch b;
		mb_run run;
		if ((error = mb_sae_corpus_next(corpus, &b, err)) < 0)
			goto cleanup;
		if (out->n_items + b.batch > cap_items) {
			int64_t cap = (out->n_items + b.batch) * 2;
			mb_sae_item_metrics *ni = realloc(out->items, (size_t)cap * sizeof(*ni));
			if (!ni) {
				error = mb_error_oom(err, "sae eval items", 0);
				goto cleanup;
			}
			out->items = ni;
			cap_items = cap;
		}
		mb_sae_item_metrics *items = out->items + out->n_items;
		memset(items, 0, (size_t)b.batch * sizeof(*items));
		memset(&run, 0, sizeof(run));
		run.batch = b.batch;
		run.seq = b.seq;
		run.tokens = b.tokens;
		run.hooks = q.hooks;
		run.logits = b.logits;

		/* Clean run: the point's rows and the clean logits. */
		mb_hooks_clear(q.hooks);
		if ((error = mb_hooks_add(q.hooks, point, eval_gather_hook, &q.g,
					  MB_HOOK_READONLY,
					  err)) < 0 ||
		    (error = mb_engine_forward(e, &run, err)) < 0)
			goto cleanup;
		mb_sae_forward(sae, &q.w, q.g.rows, q.g.n);
		mb_sae_stats_add(&st, &q.w, q.g.rows, q.g.n);
		recon_metrics(items, &q.w, q.g.rows, b.batch, b.seq, D);
		const int rows = b.rows_per_item;
		for (int it = 0; it < b.batch; it++)
			for (int i = 0; i < rows; i++)
				memcpy(q.clean + ((size_t)it * rows + i) * V,
				       mb_engine_logits_row(e, it, i),
				       (size_t)V * sizeof(float));

		/* Clean, spliced and zero-ablated cross-entropy; KL to clean. */
		for (int arm = 0; arm < 3; arm++) {
			if (arm > 0) {
				q.sp.mode =
					arm == 1 ? MB_SAE_SPLICE_RECONSTRUCT : MB_SAE_SPLICE_ZERO;
				mb_hooks_clear(q.hooks);
				if ((error = mb_hooks_add(q.hooks, point, mb_sae_splice_hook,
							  &q.sp, 0, err)) < 0 ||
				    (error = mb_engine_forward(e, &run, err)) < 0)
					goto cleanup;
			}
			for (int it = 0; it < b.batch; it++) {
				double ice = 0, ikl = 0;
				int nce = 0;
				for (int i = 0; i < rows; i++) {
					const float *zc = q.clean + ((size_t)it * rows + i) * V;
					const float *z =
						arm == 0 ? zc : mb_engine_logits_row(e, it, i);
					int32_t tg = b.targets[(size_t)it * rows + i];
					if (tg >= 0 && tg < V) {
						double c = mb_logits_ce(NULL, z, V, tg, MB_LOGITS_DETMATH);
						ice += c;
						ce[arm] += c;
						nce++;
						if (arm == 0)
							n_ce++;
					}
					if (arm > 0) {
						double k = kl_logits(q.lp, q.lq, zc, z, V);
						ikl += k;
						kl[arm - 1] += k;
						if (arm == 1)
							n_kl++;
					}
				}
				double m = nce ? ice / nce : 0.0;
				if (arm == 0)
					items[it].ce_clean = m;
				else if (arm == 1) {
					items[it].ce_sae = m;
					items[it].kl_sae = ikl / rows;
				} else {
					items[it].ce_zero = m;
					items[it].kl_zero = ikl / rows;
				}
			}
		}
		out->n_items += b.batch;
	}
	mb_sae_stats_finish(&out->stats, &st);
	if (n_ce > 0) {
		out->ce_clean = ce[0] / n_ce;
		out->ce_sae = ce[1] / n_ce;
		out->ce_zero = ce[2] / n_ce;
		double den = out->ce_zero - out->ce_clean;
		out->ce_recovered = den != 0.0 ? (out->ce_zero - out->ce_sae) / den : 0.0;
	}
	if (n_kl > 0) {
		out->kl_sae = kl[0] / n_kl;
		out->kl_zero = kl[1] / n_kl;
		out->kl_score = out->kl_zero != 0.0 ? (out->kl_zero - out->kl_sae) / out->kl_zero : 0.0;
	}
	error = 0;
cleanup:
	if (error < 0)
		mb_sae_eval_dispose(out);
	mb_engine_free(e);
	splice_eval_dispose(&q);
	mb_sae_stats_dispose(&st);
	return error;
}

int mb_sae_item_quality(mb_sae_item_metrics *out, mb_engine *e, const mb_sae *sae,
			mb_hook_point point, const int32_t *tokens, size_t n, int seq, int batch,
			mb_error *err)
{
	const int V = mb_engine_cfg(e)->n_vocab, D = sae->d_in;
	splice_eval q;
	int error;

	if (seq < 2 || batch < 1)
		return mb_error_set(err, MB_EINVALID, "sae quality: seq %d, batch %d", seq, batch);
	if ((error = splice_eval_init(&q, sae, batch * seq, V, "sae quality buffers", err)) < 0)
		return error;
	for (size_t i0 = 0; i0 < n; i0 += (size_t)batch) {
		const int nb = n - i0 < (size_t)batch ? (int)(n - i0) : batch;
		const int32_t *tok = tokens + i0 * (size_t)seq;
		mb_sae_item_metrics *items = out + i0;
		mb_run run;
		memset(items, 0, (size_t)nb * sizeof(*items));
		memset(&run, 0, sizeof(run));
		run.batch = nb;
		run.seq = seq;
		run.tokens = tok;
		run.hooks = q.hooks;
		run.logits = MB_LOGITS_ALL;
		mb_hooks_clear(q.hooks);
		if ((error = mb_hooks_add(q.hooks, point, eval_gather_hook, &q.g,
					  MB_HOOK_READONLY,
					  err)) < 0 ||
		    (error = mb_engine_forward(e, &run, err)) < 0)
			goto cleanup;
		mb_engine_logits_copy(e, q.clean);
		mb_sae_forward(sae, &q.w, q.g.rows, q.g.n);
		recon_metrics(items, &q.w, q.g.rows, nb, seq, D);
		for (int arm = 0; arm < 3; arm++) {
			if (arm > 0) {
				q.sp.mode =
					arm == 1 ? MB_SAE_SPLICE_RECONSTRUCT : MB_SAE_SPLICE_ZERO;
				mb_hooks_clear(q.hooks);
				if ((error = mb_hooks_add(q.hooks, point, mb_sae_splice_hook,
							  &q.sp, 0, err)) < 0 ||
				    (error = mb_engine_forward(e, &run, err)) < 0)
					goto cleanup;
			}
			for (int b = 0; b < nb; b++) {
				double ce = 0, kl = 0;
				for (int t = 0; t < seq; t++) {
					const float *zc = q.clean + ((size_t)b * seq + t) * V;
					const float *z = arm == 0 ? zc : mb_engine_logits_row(e, b, t);
					if (t + 1 < seq)
						ce += mb_logits_ce(NULL, z, V, tok[(size_t)b * seq + t + 1],
								   MB_LOGITS_DETMATH);
					if (arm > 0)
						kl += kl_logits(q.lp, q.lq, zc, z, V);
				}
				ce /= seq - 1;
				if (arm == 0)
					items[b].ce_clean = ce;
				else if (arm == 1) {
					items[b].ce_sae = ce;
					items[b].kl_sae = kl / seq;
				} else {
					items[b].ce_zero = ce;
					items[b].kl_zero = kl / seq;
				}
			}
		}
	}
	error = 0;
cleanup:
	splice_eval_dispose(&q);
	return error;
}

/* ---- ground truth in a zoo language ---- */

/* What a match holds: the engine with a read-only hook gathering the
 * point's rows, the SAE's work, a token batch (B, T), the dense activations
 * (N, S) and labels (NV, N) of the N matched rows, and the result (NV). */
typedef struct match_ctx {
	mb_engine *e;
	mb_hooks *hooks;
	mb_sae_work w;
	eval_gather g;
	int32_t *tok;      /* (B, T) */
	float *acts;       /* (N, S) */
	uint8_t *labels;   /* (NV, N) */
	double *au;        /* (NV) */
	mb_sae_match *m;   /* (NV), latent -1 and AUROC NaN until matched */
	int S, T;
	size_t N;
} match_ctx;

static void match_ctx_dispose(match_ctx *c)
{
	free(c->m);
	free(c->au);
	free(c->labels);
	free(c->acts);
	free(c->tok);
	free(c->g.rows);
	mb_sae_work_dispose(&c->w);
	mb_hooks_free(c->hooks);
	mb_engine_free(c->e);
	memset(c, 0, sizeof(*c));
}

static int match_ctx_init(match_ctx *c, const mb_model *model, const mb_sae *sae,
			  mb_hook_point point, int B, int T, size_t N, int NV, mb_error *err)
{
	const int S = sae->d_sae, D = sae->d_in;
	int error;

	memset(c, 0, sizeof(*c));
	c->S = S;
	c->T = T;
	c->N = N;
	c->g.D = D;
	if ((error = engine_for(&c->e, model, B, T, err)) < 0 ||
	    (error = mb_hooks_init(&c->hooks, err)) < 0 ||
	    (error = mb_hooks_add(c->hooks, point, eval_gather_hook, &c->g, MB_HOOK_READONLY,
				  err)) < 0 ||
	    (error = mb_sae_work_init(&c->w, sae, B * T, 0, err)) < 0)
		goto fail;
	c->g.rows = malloc((size_t)B * T * D * sizeof(float));
	c->tok = malloc((size_t)B * T * sizeof(int32_t));
	c->acts = calloc(N * (size_t)S, sizeof(float));
	c->labels = calloc(N * (size_t)NV, 1);
	c->au = malloc((size_t)NV * sizeof(double));
	c->m = calloc((size_t)NV, sizeof(*c->m));
	if (!c->g.rows || !c->tok || !c->acts || !c->labels || !c->au || !c->m) {
		error = mb_error_oom(err, "sae match buffers", N * (size_t)S * sizeof(float));
		goto fail;
	}
	for (int v = 0; v < NV; v++) {
		c->m[v].latent = -1;
		c->m[v].auroc = NAN;
	}
	return 0;
fail:
	match_ctx_dispose(c);
	return error;
}

/* The nb sequences of c->tok through the engine and the SAE. */
static int match_ctx_forward(match_ctx *c, const mb_sae *sae, int nb, mb_error *err)
{
	mb_run run;
	int error;
	memset(&run, 0, sizeof(run));
	run.batch = nb;
	run.seq = c->T;
	run.tokens = c->tok;
	run.hooks = c->hooks;
	run.logits = MB_LOGITS_NONE;
	if ((error = mb_engine_forward(c->e, &run, err)) < 0)
		return error;
	mb_sae_forward(sae, &c->w, c->g.rows, c->g.n);
	return 0;
}

/* Row `row` of the last forward's activations as matched row i. */
static void match_ctx_store(match_ctx *c, int row, size_t i)
{
	for (int e = 0; e < c->w.nnz[row]; e++)
		c->acts[i * c->S + c->w.idx[(size_t)row * c->w.cap + e]] =
			c->w.val[(size_t)row * c->w.cap + e];
}

/* For each variable v, the latent of the highest AUROC of its activation
 * (lowest index on ties) and that latent's F1, its base rate; hands the
 * result to *out. */
static int match_ctx_finish(mb_sae_match **out, int *n_out, match_ctx *c, int NV, mb_error *err)
{
	const size_t N = c->N;
	const int S = c->S;
	int error;
	for (int v = 0; v < NV; v++) {
		double pos = 0, counted = 0;
		for (size_t i = 0; i < N; i++) {
			const uint8_t l = c->labels[(size_t)v * N + i];
			pos += l == 1;
			counted += l != MB_SAE_LABEL_SKIP;
		}
		c->m[v].base_rate = counted > 0 ? pos / counted : 0.0;
	}
	for (int j = 0; j < S; j++) {
		if ((error = mb_sae_auroc(c->au, c->acts + j, (size_t)S, c->labels, NV, N, err)) < 0)
			return error;
		for (int v = 0; v < NV; v++)
			if (!isnan(c->au[v]) && (c->m[v].latent < 0 || c->au[v] > c->m[v].auroc)) {
				c->m[v].latent = j;
				c->m[v].auroc = c->au[v];
			}
	}
	for (int v = 0; v < NV; v++)
		if (c->m[v].latent >= 0)
			c->m[v].f1 = mb_sae_f1(c->acts + c->m[v].latent, (size_t)S,
					       c->labels + (size_t)v * N, N);
	*out = c->m;
	*n_out = NV;
	c->m = NULL;
	return 0;
}

int mb_sae_match_induction(mb_sae_match **out, int *n_out, const mb_model *model,
			   const mb_sae *sae, mb_hook_point point, const mb_zoo_recipe *r,
			   int n_seqs, mb_error *err)
{
	const int T = r->n_positions, K = r->n_topics, NV = K + 1, B = 32;
	match_ctx c;
	int error;

	*out = NULL;
	*n_out = 0;
	if (strcmp(r->name, "induction") != 0)
		return mb_error_set(err, MB_EINVALID,
				    "sae match: recipe %s: only the induction language's variables "
				    "are listed",
				    r->name);
	if (n_seqs < 1 || model->cfg.n_ctx < T)
		return mb_error_set(err, MB_EINVALID, "sae match: %d sequences of %d tokens", n_seqs, T);
	const size_t N = (size_t)n_seqs * (size_t)(T - 1);
	if ((error = match_ctx_init(&c, model, sae, point, B, T, N, NV, err)) < 0)
		return error;
	/* Activations and labels of every non-BOS token. */
	for (int s0 = 0; s0 < n_seqs; s0 += B) {
		int nb = n_seqs - s0 < B ? n_seqs - s0 : B;
		mb_zoo_segment seg[32];
		for (int b = 0; b < nb; b++)
			mb_zoo_induction_sequence(c.tok + (size_t)b * T, &seg[b], r, "induction/eval",
						  (uint64_t)(s0 + b));
		if ((error = match_ctx_forward(&c, sae, nb, err)) < 0)
			goto cleanup;
		for (int b = 0; b < nb; b++)
			for (int t = 1; t < T; t++) {
				size_t i = (size_t)(s0 + b) * (T - 1) + (size_t)(t - 1);
				match_ctx_store(&c, b * T + t, i);
				c.labels[(size_t)seg[b].topic * N + i] = 1;
				c.labels[(size_t)K * N + i] =
					t >= seg[b].second && t < seg[b].second + seg[b].len;
			}
	}
	for (int v = 0; v < NV; v++) {
		if (v < K)
			snprintf(c.m[v].variable, sizeof(c.m[v].variable), "topic=%d", v);
		else
			snprintf(c.m[v].variable, sizeof(c.m[v].variable), "repeat");
	}
	error = match_ctx_finish(out, n_out, &c, NV, err);
cleanup:
	match_ctx_dispose(&c);
	return error;
}

int mb_sae_match_modadd(mb_sae_match **out, int *n_out, const mb_model *model,
			const mb_sae *sae, mb_hook_point point, const mb_zoo_recipe *r,
			mb_error *err)
{
	const int P = r->p, T = 3, NF = (P - 1) / 2, NV = 2 * NF, B = 64;
	const size_t N = (size_t)P * (size_t)P;
	match_ctx c;
	int error;

	*out = NULL;
	*n_out = 0;
	if (strcmp(r->name, "modadd") != 0 || P < 3 || model->cfg.n_ctx < T)
		return mb_error_set(err, MB_EINVALID,
				    "sae match: recipe %s: not a modular-addition language", r->name);
	if ((error = match_ctx_init(&c, model, sae, point, B, T, N, NV, err)) < 0)
		return error;
	/* Every pair (a, b) as "a b =", the SAE's activations at '=' (where the
	 * answer is read), pair i = a P + b. */
	for (size_t i0 = 0; i0 < N; i0 += B) {
		const int nb = N - i0 < (size_t)B ? (int)(N - i0) : B;
		for (int b = 0; b < nb; b++) {
			c.tok[b * T] = (int32_t)((i0 + (size_t)b) / (size_t)P);
			c.tok[b * T + 1] = (int32_t)((i0 + (size_t)b) % (size_t)P);
			c.tok[b * T + 2] = P;
		}
		if ((error = match_ctx_forward(&c, sae, nb, err)) < 0)
			goto cleanup;
		for (int b = 0; b < nb; b++)
			match_ctx_store(&c, b * T + 2, i0 + (size_t)b);
	}
	/* Variable (k, cos): cos(2 pi k (a + b) / P) > 0; (k, sin) likewise. The
	 * phase (a + b) k mod P is exact in integers. */
	for (int k = 1; k <= NF; k++) {
		for (size_t i = 0; i < N; i++) {
			const int ph = (int)((i / (size_t)P + i % (size_t)P) * (size_t)k % (size_t)P);
			const double th = 6.283185307179586 * ph / P; /* 2 pi ph / P */
			c.labels[(size_t)(2 * (k - 1)) * N + i] = cos(th) > 1e-9;
			c.labels[(size_t)(2 * (k - 1) + 1) * N + i] = sin(th) > 1e-9;
		}
		snprintf(c.m[2 * (k - 1)].variable, sizeof(c.m[0].variable), "cos%d", k);
		snprintf(c.m[2 * (k - 1) + 1].variable, sizeof(c.m[0].variable), "sin%d", k);
	}
	error = match_ctx_finish(out, n_out, &c, NV, err);
cleanup:
	match_ctx_dispose(&c);
	return error;
}

/* The ioi language's word -> token id, from the recipe's own table
 * (mb_zoo_ioi_word), sorted by word for bsearch. */
typedef struct ioi_word_id {
	char w[16];
	int32_t id;
} ioi_word_id;

static int cmp_word_id(const void *a, const void *b)
{
	return strcmp(((const ioi_word_id *)a)->w, ((const ioi_word_id *)b)->w);
}

/* Renders prompt k (template k mod nt, order (k / nt) mod 2; IO, S (distinct),
 * place and object from stream "sae/match/ioi" index k under r->seed) as
 * [BOS] + its tokens into tok (cap T); *len, and pos[0..3) the positions of
 * IO, S1 and S2. Errors: a word the vocabulary lacks, a prompt longer than
 * T (naming the template). */
static int ioi_match_prompt(int32_t *tok, int *len, int pos[3], const ioi_word_id *vocab,
			    int nv, const mb_zoo_recipe *r, int k, int T, mb_error *err)
{
	const size_t nt = mb_ioi_template_count();
	const mb_ioi_template *t = mb_ioi_template_at((size_t)k % nt);
	const int abba = (k / (int)nt) % 2 == 0;
	const char *const *names, *const *places, *const *objects;
	size_t nn, np, no, off[3], pick[2];
	char text[512];
	mb_rng rng;
	int error, n = 1;

	names = mb_ioi_words(MB_IOI_NAMES, &nn);
	places = mb_ioi_words(MB_IOI_PLACES, &np);
	objects = mb_ioi_words(MB_IOI_OBJECTS, &no);
	mb_rng_init_named(&rng, r->seed, "sae/match/ioi", (uint64_t)k);
	do {
		pick[0] = (size_t)mb_rng_range(&rng, nn);
		pick[1] = (size_t)mb_rng_range(&rng, nn);
	} while (pick[0] == pick[1]);
	const char *io = names[pick[0]], *sn = names[pick[1]];
	const char *pl = places[mb_rng_range(&rng, np)], *ob = objects[mb_rng_range(&rng, no)];
	if ((error = mb_ioi_render(text, sizeof(text), off, t, abba ? io : sn, abba ? sn : io, sn,
				   pl, ob, err)) < 0)
		return error;
	tok[0] = 0; /* <bos> */
	/* Words are separated by single spaces; a slot's word starts at its offset. */
	for (size_t at = 0; text[at];) {
		ioi_word_id key;
		size_t wl = strcspn(text + at, " ");
		if (wl >= sizeof(key.w) || n == T)
			return mb_error_set(err, MB_EINVALID,
					    "sae match: ioi template %s: prompt longer than %d tokens "
					    "or a word longer than 15 bytes",
					    t->id, T);
		memcpy(key.w, text + at, wl);
		key.w[wl] = '\0';
		const ioi_word_id *hit = bsearch(&key, vocab, (size_t)nv, sizeof(*vocab), cmp_word_id);
		if (!hit)
			return mb_error_set(err, MB_EINVALID,
					    "sae match: ioi template %s: word '%s' is not in the model's "
					    "vocabulary",
					    t->id, key.w);
		for (int slot = 0; slot < 3; slot++)
			if (off[slot] == at) {
				/* {A} is IO in ABBA, S1 in BABA; {B} the other; {S} is S2 */
				int role = slot == 2 ? 2 : (slot == 0) == abba ? 0 : 1;
				pos[role] = n;
			}
		tok[n++] = hit->id;
		at += wl;
		at += text[at] == ' ';
	}
	*len = n;
	return 0;
}

int mb_sae_match_ioi(mb_sae_match **out, int *n_out, const mb_model *model, const mb_sae *sae,
		     mb_hook_point point, const mb_zoo_recipe *r, int n_prompts, mb_error *err)
{
	static const char *const vars[] = {"name", "IO", "S1", "S2", "end"};
	const int NV = 5, B = 32, T = r->n_positions, V = model->cfg.n_vocab;
	ioi_word_id *vocab = NULL;
	int32_t *tok = NULL;
	int *len = NULL, (*pos)[3] = NULL, error;
	size_t N = 0;
	match_ctx c;

	*out = NULL;
	*n_out = 0;
	memset(&c, 0, sizeof(c));
	if (strcmp(r->name, "ioi") != 0)
		return mb_error_set(err, MB_EINVALID,
				    "sae match: recipe %s: not the ioi language", r->name);
	if (n_prompts < 1 || model->cfg.n_ctx < T)
		return mb_error_set(err, MB_EINVALID, "sae match: %d prompts of up to %d tokens",
				    n_prompts, T);
	vocab = malloc((size_t)V * sizeof(*vocab));
	tok = calloc((size_t)n_prompts * T, sizeof(*tok));
	len = malloc((size_t)n_prompts * sizeof(*len));
	pos = malloc((size_t)n_prompts * sizeof(*pos));
	if (!vocab || !tok || !len || !pos) {
		error = mb_error_oom(err, "sae match prompts", (size_t)n_prompts * T * sizeof(*tok));
		goto cleanup;
	}
	for (int id = 0; id < V; id++) {
		mb_zoo_ioi_word(vocab[id].w, id);
		vocab[id].id = id;
	}
	qsort(vocab, (size_t)V, sizeof(*vocab), cmp_word_id);
	/* The prompts first: the matched rows are their positions after BOS. */
	for (int k = 0; k < n_prompts; k++) {
		pos[k][0] = pos[k][1] = pos[k][2] = -1;
		if ((error = ioi_match_prompt(tok + (size_t)k * T, &len[k], pos[k], vocab, V, r, k,
					      T, err)) < 0)
			goto cleanup;
		MB_ASSERT(pos[k][0] > 0 && pos[k][1] > 0 && pos[k][2] > 0);
		N += (size_t)(len[k] - 1);
	}
	if ((error = match_ctx_init(&c, model, sae, point, B, T, N, NV, err)) < 0)
		goto cleanup;
	for (size_t i = 0, k0 = 0; k0 < (size_t)n_prompts; k0 += B) {
		const int nb = (size_t)n_prompts - k0 < (size_t)B ? (int)((size_t)n_prompts - k0) : B;
		/* Positions past a prompt hold "." (token 1); causal attention keeps
		 * them out of the prompt's rows. */
		for (int b = 0; b < nb; b++)
			for (int t = 0; t < T; t++)
				c.tok[b * T + t] = t < len[k0 + b] ? tok[(k0 + b) * T + t] : 1;
		if ((error = match_ctx_forward(&c, sae, nb, err)) < 0)
			goto cleanup;
		for (int b = 0; b < nb; b++) {
			const int k = (int)k0 + b, *p = pos[k];
			for (int t = 1; t < len[k]; t++, i++) {
				const int name = t == p[0] || t == p[1] || t == p[2];
				match_ctx_store(&c, b * T + t, i);
				c.labels[0 * N + i] = (uint8_t)name;
				c.labels[1 * N + i] = name ? t == p[0] : MB_SAE_LABEL_SKIP;
				c.labels[2 * N + i] = name ? t == p[1] : MB_SAE_LABEL_SKIP;
				c.labels[3 * N + i] = name ? t == p[2] : MB_SAE_LABEL_SKIP;
				c.labels[4 * N + i] = (uint8_t)(t == len[k] - 1);
			}
		}
	}
	for (int v = 0; v < NV; v++)
		snprintf(c.m[v].variable, sizeof(c.m[v].variable), "%s", vars[v]);
	error = match_ctx_finish(out, n_out, &c, NV, err);
cleanup:
	match_ctx_dispose(&c);
	free(vocab);
	free(tok);
	free(len);
	free(pos);
	return error;
}

/* ---- ground truth in one call ---- */

int mb_sae_tms_recovery(double *mmcs, double *recovered, double *l0, int n_features, int d,
			double p, uint64_t seed, const mb_sae_train_config *cfg, mb_error *err)
{
	mb_sae_tms t;
	mb_sae *s = NULL;
	mb_sae_train_result res;
	mb_sae_source src;
	int error;

	memset(&res, 0, sizeof(res));
	if ((error = mb_sae_tms_init(&t, n_features, d, p, seed, err)) < 0)
		return error;
	src = mb_sae_tms_source(&t);
	error = mb_sae_train(&s, &res, &src, cfg, NULL, NULL, err);
	if (error == 0)
		error = mb_sae_recovery(mmcs, recovered, NULL, s, t.directions, t.n_features, err);
	if (error == 0 && l0)
		*l0 = res.final.l0;
	json_decref(res.record);
	mb_sae_free(s);
	mb_sae_tms_dispose(&t);
	return error;
}

/* ---- labelled features for the causal battery ---- */

void mb_sae_topic_features_dispose(mb_sae_topic_features *tf)
{
	free(tf->match);
	free(tf->readout);
	free(tf->features);
	memset(tf, 0, sizeof(*tf));
}

int mb_sae_topic_features_init(mb_sae_topic_features *out, const mb_model *model,
			       const mb_sae *sae, mb_hook_point point, const mb_zoo_recipe *r,
			       int n_match, mb_error *err)
{
	const int V = model->cfg.n_vocab, T = r->n_positions, B = 32;
	mb_engine *e = NULL;
	int32_t *tok = NULL;
	float *mx = NULL;
	int nv = 0, error;

	memset(out, 0, sizeof(*out));
	if ((error = mb_sae_match_induction(&out->match, &nv, model, sae, point, r, n_match,
					    err)) < 0)
		return error;
	out->n = r->n_topics;
	out->vocab = V;
	out->readout = calloc((size_t)out->n * V, 1);
	out->features = calloc((size_t)out->n, sizeof(*out->features));
	tok = malloc((size_t)n_match * T * sizeof(int32_t));
	mx = malloc((size_t)sae->d_sae * sizeof(float));
	if (!out->readout || !out->features || !tok || !mx) {
		error = mb_error_oom(err, "sae topic features", (size_t)n_match * T * sizeof(int32_t));
		goto cleanup;
	}
	for (int i = 0; i < n_match; i++) {
		mb_zoo_segment seg;
		mb_zoo_induction_sequence(tok + (size_t)i * T, &seg, r, "induction/eval",
					  (uint64_t)i);
	}
	if ((error = engine_for(&e, model, B, T, err)) < 0 ||
	    (error = mb_sae_act_summary(mx, NULL, NULL, e, sae, point, tok, (size_t)n_match, T, B,
					       err)) < 0)
		goto cleanup;
	for (int t = 0; t < out->n; t++) {
		for (int v = 1; v < V; v++)
			out->readout[(size_t)t * V + v] = mb_zoo_token_topic(v, V, out->n) == t;
		out->features[t].latent = out->match[t].latent < 0 ? 0 : out->match[t].latent;
		out->features[t].value = t;
		out->features[t].max_act = mx[out->features[t].latent];
	}
	error = 0;
cleanup:
	if (error < 0)
		mb_sae_topic_features_dispose(out);
	mb_engine_free(e);
	free(tok);
	free(mx);
	return error;
}
