/*
 * sae_corpus.c: token corpora, the activation stream and the toy model of
 * superposition that SAE training reads (sae_train.h).
 *
 * Legend: B sequences per batch, T positions, D d_in, N buffer rows.
 */
#include <mechbench/sae_train.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/adamw.h>
#include <mechbench/json.h>
#include <mechbench/rng.h>
#include <mechbench/tokenizer.h>
#include <mechbench/zoo.h>

#include "zoo_int.h"

struct mb_sae_corpus {
	int kind; /* 0 zoo, 1 text */
	char desc[512];
	int max_batch, seq;
	int32_t *tokens;  /* (B, T) */
	int32_t *targets; /* (B, T) */
	/* zoo */
	mb_zoo_recipe recipe;
	mb_zoo_ctx ctx;
	int64_t step; /* the next batch is the recipe's batch of step + 1 */
	/* text */
	FILE *f;
	char *path;
	const mb_tokenizer *tok;
	int32_t *pend;    /* tokens encoded but not yet used */
	size_t npend, cappend, pend0;
	int64_t line;     /* lines read in this epoch */
	int64_t epoch_tokens;
	char *linebuf;
	size_t linecap;
};

void mb_sae_corpus_free(mb_sae_corpus *c)
{
	if (!c)
		return;
	if (c->kind == 0 && c->recipe.ops && c->ctx.data)
		c->recipe.ops->data_free(c->ctx.data);
	if (c->f)
		fclose(c->f);
	free(c->path);
	free(c->pend);
	free(c->linebuf);
	free(c->tokens);
	free(c->targets);
	free(c);
}

static int skip_batches(mb_sae_corpus *c, int64_t n, mb_error *err)
{
	mb_sae_batch b;
	int error;

	for (int64_t i = 0; i < n; i++)
		if ((error = mb_sae_corpus_next(c, &b, err)) < 0)
			return error;
	return 0;
}

int mb_sae_corpus_open_zoo(mb_sae_corpus **out, const char *model_dir, int64_t first_batch,
			   mb_error *err)
{
	char path[4096];
	mb_json_doc doc;
	json_t *recipe;
	const char *name = NULL, *preset = NULL;
	int64_t seed = 0;
	mb_sae_corpus *c;
	int error;

	*out = NULL;
	snprintf(path, sizeof(path), "%s/training_state.json", model_dir);
	if ((error = mb_json_doc_load(&doc, path, err)) < 0)
		return error;
	if ((error = mb_json_get_object(&doc, doc.root, "", "recipe", 1, &recipe, err)) < 0 ||
	    (error = mb_json_get_string(&doc, recipe, "recipe", "name", 1, &name, err)) < 0 ||
	    (error = mb_json_get_string(&doc, recipe, "recipe", "preset", 1, &preset, err)) < 0 ||
	    (error = mb_json_get_int(&doc, recipe, "recipe", "seed", 1, 0, INT64_MAX, &seed, err)) <
		    0) {
		mb_json_doc_dispose(&doc);
		return error;
	}
	if (strcmp(preset, "custom") == 0) {
		error = mb_json_field_error(&doc, err, MB_EINVALID, "recipe.preset",
					    "a \"custom\" recipe's corpus cannot be regenerated; "
					    "use --text");
		mb_json_doc_dispose(&doc);
		return error;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		mb_json_doc_dispose(&doc);
		return mb_error_oom(err, "corpus", sizeof(*c));
	}
	c->kind = 0;
	error = mb_zoo_recipe_get(&c->recipe, name, preset, (uint64_t)seed, err);
	if (error < 0)
		mb_error_prefix(err, "%s: recipe", path);
	mb_json_doc_dispose(&doc);
	if (error < 0)
		goto fail;
	c->ctx.r = &c->recipe;
	c->ctx.V = c->recipe.vocab_size;
	if ((error = c->recipe.ops->data_init(&c->ctx, err)) < 0)
		goto fail;
	c->max_batch = c->ctx.max_batch;
	c->seq = c->ctx.max_seq;
	c->tokens = calloc((size_t)c->max_batch * c->seq, sizeof(int32_t));
	c->targets = calloc((size_t)c->max_batch * c->seq, sizeof(int32_t));
	if (!c->tokens || !c->targets) {
		error = mb_error_oom(err, "corpus batch", 0);
		goto fail;
	}
	c->ctx.tokens = c->tokens;
	c->ctx.targets = c->targets;
	snprintf(c->desc, sizeof(c->desc), "zoo:%s/%s seed %llu", c->recipe.name, c->recipe.preset,
		 (unsigned long long)c->recipe.seed);
	c->step = first_batch;
	*out = c;
	return 0;
fail:
	mb_sae_corpus_free(c);
	return error;
}

int mb_sae_corpus_open_text(mb_sae_corpus **out, const char *path, const mb_tokenizer *tok,
			    int ctx, int batch, int64_t first_batch, mb_error *err)
{
	mb_sae_corpus *c;
	int error;

	*out = NULL;
	if (ctx < 2 || batch < 1)
		return mb_error_set(err, MB_EINVALID,
				    "%s: context %d must be >= 2 and batch %d >= 1", path, ctx, batch);
	c = calloc(1, sizeof(*c));
	if (!c)
		return mb_error_oom(err, "corpus", sizeof(*c));
	c->kind = 1;
	c->tok = tok;
	c->seq = ctx;
	c->max_batch = batch;
	c->path = malloc(strlen(path) + 1);
	c->tokens = calloc((size_t)batch * ctx, sizeof(int32_t));
	c->targets = calloc((size_t)batch * ctx, sizeof(int32_t));
	if (!c->path || !c->tokens || !c->targets) {
		mb_sae_corpus_free(c);
		return mb_error_oom(err, "corpus", 0);
	}
	memcpy(c->path, path, strlen(path) + 1);
	c->f = fopen(path, "rb");
	if (!c->f) {
		error = mb_error_set(err, MB_ENOTFOUND, "%s: cannot open the text corpus: %s", path,
				     strerror(errno));
		mb_sae_corpus_free(c);
		return error;
	}
	snprintf(c->desc, sizeof(c->desc), "text:%s ctx %d", path, ctx);
	if ((error = skip_batches(c, first_batch, err)) < 0) {
		mb_sae_corpus_free(c);
		return error;
	}
	*out = c;
	return 0;
}

/* Appends the tokens of the next line (rewinding at the end of the file). */
static int text_read_line(mb_sae_corpus *c, mb_error *err)
{
	int32_t *ids = NULL;
	int n = 0, error;
	size_t len = 0;
	int ch;

	/* One line into linebuf (the newline kept), NUL-terminated. */
	while ((ch = fgetc(c->f)) != EOF) {
		if (len + 2 > c->linecap) {
			size_t cap = c->linecap ? 2 * c->linecap : 4096;
			char *nb = realloc(c->linebuf, cap);
			if (!nb)
				return mb_error_oom(err, "text line", cap);
			c->linebuf = nb;
			c->linecap = cap;
		}
		c->linebuf[len++] = (char)ch;
		if (ch == '\n')
			break;
	}
	if (len == 0) {
		if (ferror(c->f))
			return mb_error_set(err, MB_EIO, "%s: cannot read the text corpus: %s", c->path,
					    strerror(errno));
		if (c->epoch_tokens == 0)
			return mb_error_set(err, MB_EINVALID, "%s: the text has no tokens", c->path);
		rewind(c->f);
		c->line = 0;
		c->epoch_tokens = 0;
		return 0;
	}
	c->linebuf[len] = '\0';
	c->line++;
	if (memchr(c->linebuf, '\0', len))
		return mb_error_set(err, MB_EINVALID, "%s:%lld: a NUL byte in the text", c->path,
				    (long long)c->line);
	if ((error = mb_tokenizer_encode(c->tok, c->linebuf, &ids, &n, err)) < 0)
		return mb_error_prefix(err, "%s:%lld", c->path, (long long)c->line);
	if (c->npend + (size_t)n > c->cappend) {
		/* compact, then grow */
		if (c->pend0 > 0) {
			memmove(c->pend, c->pend + c->pend0, (c->npend - c->pend0) * sizeof(int32_t));
			c->npend -= c->pend0;
			c->pend0 = 0;
		}
		if (c->npend + (size_t)n > c->cappend) {
			size_t cap = c->npend + (size_t)n + 4096;
			int32_t *np = realloc(c->pend, cap * sizeof(int32_t));
			if (!np) {
				free(ids);
				return mb_error_oom(err, "token buffer", cap * sizeof(int32_t));
			}
			c->pend = np;
			c->cappend = cap;
		}
	}
	if (n > 0)
		memcpy(c->pend + c->npend, ids, (size_t)n * sizeof(int32_t));
	c->npend += (size_t)n;
	c->epoch_tokens += n;
	free(ids);
	return 0;
}

int mb_sae_corpus_next(mb_sae_corpus *c, mb_sae_batch *out, mb_error *err)
{
	mb_run run;
	int error;

	memset(out, 0, sizeof(*out));
	if (c->kind == 0) {
		memset(&run, 0, sizeof(run));
		c->recipe.ops->train_batch(&c->ctx, ++c->step, &run);
		out->batch = run.batch;
		out->seq = run.seq;
		out->logits = run.logits;
		out->rows_per_item = run.logits == MB_LOGITS_LAST ? 1 : run.seq;
	} else {
		const size_t need = (size_t)c->max_batch * (size_t)c->seq;
		while (c->npend - c->pend0 < need)
			if ((error = text_read_line(c, err)) < 0)
				return error;
		memcpy(c->tokens, c->pend + c->pend0, need * sizeof(int32_t));
		c->pend0 += need;
		for (int b = 0; b < c->max_batch; b++) {
			int32_t *tk = c->tokens + (size_t)b * c->seq, *tg = c->targets + (size_t)b * c->seq;
			for (int t = 0; t + 1 < c->seq; t++)
				tg[t] = tk[t + 1];
			tg[c->seq - 1] = -1;
		}
		out->batch = c->max_batch;
		out->seq = c->seq;
		out->logits = MB_LOGITS_ALL;
		out->rows_per_item = c->seq;
	}
	out->tokens = c->tokens;
	out->targets = c->targets;
	return 0;
}

void mb_sae_corpus_shape(const mb_sae_corpus *c, int *max_batch, int *seq)
{
	*max_batch = c->max_batch;
	*seq = c->seq;
}

const char *mb_sae_corpus_describe(const mb_sae_corpus *c)
{
	return c->desc;
}

const mb_zoo_recipe *mb_sae_corpus_recipe(const mb_sae_corpus *c)
{
	return c->kind == 0 ? &c->recipe : NULL;
}

/* ---- the activation stream ---- */

struct mb_sae_acts {
	const mb_model *model;
	mb_hook_point point;
	mb_sae_corpus *corpus;
	mb_engine *e;
	mb_hooks *hooks;
	int D;
	int buffer_batches;
	uint64_t seed;
	float *buf;      /* (N, D) */
	uint32_t *perm;  /* (N) */
	int64_t cap;     /* N */
	int64_t n, pos;  /* rows in the buffer, next to serve */
	int64_t refill;  /* refills done */
	int64_t filled;  /* rows gathered in the current refill */
};

/* The width per position of a (B, T, ...) point; errors for other points. */
static int point_width(int *out, mb_hook_point p, const mb_engine_config *cfg, mb_error *err)
{
	int64_t shape[4];
	int nd;
	char name[MB_HOOK_NAME_MAX];
	int error;

	if ((error = mb_hook_check(p, cfg, err)) < 0)
		return error;
	mb_hook_name(name, sizeof(name), p);
	if (p.kind == MB_HOOK_ATTN_SCORES || p.kind == MB_HOOK_PATTERN || p.kind == MB_HOOK_LOGITS)
		return mb_error_set(err, MB_EINVALID,
				    "%s: an SAE reads (batch, position, ...) points, not attention "
				    "matrices or logits",
				    name);
	nd = mb_hook_shape(shape, p, cfg, 1, 1, 1);
	int64_t w = 1;
	for (int i = 2; i < nd; i++)
		w *= shape[i];
	*out = (int)w;
	return 0;
}

static int gather_hook(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	mb_sae_acts *a = payload;
	int n, error;

	if ((int64_t)t->batch * t->seq + a->filled > a->cap)
		return mb_error_set(err, MB_EINVALID, "sae: activation buffer overflow");
	if ((error = mb_sae_rows_gather(a->buf + (size_t)a->filled * a->D, &n, t, a->D, err)) < 0)
		return error;
	a->filled += n;
	return 0;
}

void mb_sae_acts_free(mb_sae_acts *a)
{
	if (!a)
		return;
	mb_engine_free(a->e);
	mb_hooks_free(a->hooks);
	free(a->buf);
	free(a->perm);
	free(a);
}

int mb_sae_acts_init(mb_sae_acts **out, const mb_model *model, mb_hook_point point,
		     mb_sae_corpus *corpus, int buffer_batches, uint64_t seed, mb_error *err)
{
	mb_sae_acts *a;
	mb_engine_opts opts;
	int B, T, error;

	*out = NULL;
	if (buffer_batches < 1)
		return mb_error_set(err, MB_EINVALID, "sae: buffer_batches %d must be >= 1",
				    buffer_batches);
	a = calloc(1, sizeof(*a));
	if (!a)
		return mb_error_oom(err, "activation stream", sizeof(*a));
	a->model = model;
	a->point = point;
	a->corpus = corpus;
	a->buffer_batches = buffer_batches;
	a->seed = seed;
	if ((error = point_width(&a->D, point, &model->cfg, err)) < 0)
		goto fail;
	mb_sae_corpus_shape(corpus, &B, &T);
	if (T > model->cfg.n_ctx) {
		error = mb_error_set(err, MB_EINVALID,
				     "sae: the corpus's sequences of %d tokens exceed the model's "
				     "n_ctx %d",
				     T, model->cfg.n_ctx);
		goto fail;
	}
	memset(&opts, 0, sizeof(opts));
	opts.max_batch = B;
	opts.max_seq = T;
	if ((error = mb_engine_init(&a->e, &model->cfg, &model->w, &opts, err)) < 0)
		goto fail;
	if ((error = mb_hooks_init(&a->hooks, err)) < 0 ||
	    (error = mb_hooks_add(a->hooks, point, gather_hook, a, MB_HOOK_READONLY, err)) < 0)
		goto fail;
	a->cap = (int64_t)buffer_batches * B * T;
	a->buf = malloc((size_t)a->cap * (size_t)a->D * sizeof(float));
	a->perm = malloc((size_t)a->cap * sizeof(uint32_t));
	if (!a->buf || !a->perm) {
		error = mb_error_oom(err, "activation buffer",
				     (size_t)a->cap * (size_t)a->D * sizeof(float));
		goto fail;
	}
	*out = a;
	return 0;
fail:
	mb_sae_acts_free(a);
	return error;
}

static int acts_refill(mb_sae_acts *a, mb_error *err)
{
	mb_sae_batch b;
	mb_run run;
	mb_rng r;
	int error;

	a->filled = 0;
	for (int i = 0; i < a->buffer_batches; i++) {
		if ((error = mb_sae_corpus_next(a->corpus, &b, err)) < 0)
			return error;
		memset(&run, 0, sizeof(run));
		run.batch = b.batch;
		run.seq = b.seq;
		run.tokens = b.tokens;
		run.hooks = a->hooks;
		run.logits = MB_LOGITS_NONE;
		if ((error = mb_engine_forward(a->e, &run, err)) < 0)
			return error;
	}
	a->n = a->filled;
	a->pos = 0;
	mb_rng_init_named(&r, a->seed, "sae/shuffle", (uint64_t)a->refill++);
	mb_rng_permutation(&r, a->perm, (size_t)a->n);
	return 0;
}

static int acts_next(void *self, float *out, int n, mb_error *err)
{
	mb_sae_acts *a = self;
	int error;

	for (int i = 0; i < n; i++) {
		if (a->pos >= a->n && (error = acts_refill(a, err)) < 0)
			return error;
		memcpy(out + (size_t)i * a->D, a->buf + (size_t)a->perm[a->pos++] * a->D,
		       (size_t)a->D * sizeof(float));
	}
	return 0;
}

mb_sae_source mb_sae_acts_source(mb_sae_acts *a)
{
	mb_sae_source s = {a->D, acts_next, a};
	return s;
}

/* ---- the toy model of superposition ---- */

int mb_sae_tms_init(mb_sae_tms *t, int n_features, int d, double p, uint64_t seed, mb_error *err)
{
	mb_rng r;

	memset(t, 0, sizeof(*t));
	if (n_features < 1 || n_features > 4096 || d < 1 || !(p > 0.0 && p <= 1.0))
		return mb_error_set(err, MB_EINVALID,
				    "tms: features %d in [1, 4096], dims %d >= 1, p %g in (0, 1]",
				    n_features, d, p);
	t->n_features = n_features;
	t->d = d;
	t->p = p;
	t->seed = seed;
	t->directions = malloc((size_t)n_features * (size_t)d * sizeof(float));
	if (!t->directions)
		return mb_error_oom(err, "tms directions", 0);
	mb_rng_init_named(&r, seed, "sae/tms/directions", 0);
	for (int i = 0; i < n_features; i++) {
		float *u = t->directions + (size_t)i * d;
		double nn = 0.0;
		double *tmp = malloc((size_t)d * sizeof(double));
		if (!tmp) {
			mb_sae_tms_dispose(t);
			return mb_error_oom(err, "tms directions", 0);
		}
		for (int j = 0; j < d; j++) {
			tmp[j] = mb_rng_normal(&r);
			nn += tmp[j] * tmp[j];
		}
		nn = sqrt(nn);
		for (int j = 0; j < d; j++)
			u[j] = (float)(tmp[j] / nn);
		free(tmp);
	}
	return 0;
}

void mb_sae_tms_dispose(mb_sae_tms *t)
{
	free(t->directions);
	memset(t, 0, sizeof(*t));
}

/* The sparse feature vector a (n_features) of row `row` of stream. */
static void tms_features(float *a, const mb_sae_tms *t, const char *stream, uint64_t row)
{
	mb_rng r;
	mb_rng_init_named(&r, t->seed, stream, row);
	for (int f = 0; f < t->n_features; f++) {
		double u = mb_rng_uniform(&r), v = mb_rng_uniform(&r);
		a[f] = u < t->p ? (float)v : 0.0f;
	}
}

int mb_sae_tms_train_model(mb_sae_tms *t, int64_t steps, int batch, double lr, int *represented,
			   mb_error *err)
{
	const int n = t->n_features, d = t->d;
	const size_t np = (size_t)n * d + (size_t)n;
	float *par = calloc(np, sizeof(float)), *grad = calloc(np, sizeof(float));
	float *a = malloc((size_t)batch * n * sizeof(float)), *h = malloc((size_t)batch * d * sizeof(float));
	float *go = malloc((size_t)n * sizeof(float)), *gh = malloc((size_t)d * sizeof(float));
	mb_adamw opt;
	mb_adamw_config ac = {lr, 0.9, 0.999, 1e-8, 0.0};
	int error = 0;

	memset(&opt, 0, sizeof(opt));
	if (!par || !grad || !a || !h || !go || !gh) {
		error = mb_error_oom(err, "tms model", np * sizeof(float));
		goto cleanup;
	}
	if (steps < 1 || batch < 1) {
		error = mb_error_set(err, MB_EINVALID, "tms model: steps and batch must be >= 1");
		goto cleanup;
	}
	/* par: W^T (n, d) (row i = W's column i), then b (n). */
	memcpy(par, t->directions, (size_t)n * d * sizeof(float));
	if ((error = mb_adamw_init(&opt, np, &ac, err)) < 0)
		goto cleanup;
	float *wt = par, *bias = par + (size_t)n * d, *gw = grad, *gb = grad + (size_t)n * d;
	const float g2 = (float)(2.0 / (double)batch);
	for (int64_t s = 0; s < steps; s++) {
		memset(grad, 0, np * sizeof(float));
		for (int r = 0; r < batch; r++)
			tms_features(a + (size_t)r * n, t, "sae/tms/model", (uint64_t)(s * batch + r));
		for (int r = 0; r < batch; r++) {
			const float *ar = a + (size_t)r * n;
			float *hr = h + (size_t)r * d;
			for (int k = 0; k < d; k++)
				hr[k] = 0.0f;
			for (int i = 0; i < n; i++)
				if (ar[i] != 0.0f)
					for (int k = 0; k < d; k++)
						hr[k] += ar[i] * wt[(size_t)i * d + k];
			for (int k = 0; k < d; k++)
				gh[k] = 0.0f;
			for (int i = 0; i < n; i++) {
				float o = bias[i];
				for (int k = 0; k < d; k++)
					o += wt[(size_t)i * d + k] * hr[k];
				go[i] = o > 0.0f ? g2 * (o - ar[i]) : 0.0f;
				gb[i] += go[i];
				for (int k = 0; k < d; k++) {
					gw[(size_t)i * d + k] += go[i] * hr[k];
					gh[k] += go[i] * wt[(size_t)i * d + k];
				}
			}
			for (int i = 0; i < n; i++)
				if (ar[i] != 0.0f)
					for (int k = 0; k < d; k++)
						gw[(size_t)i * d + k] += ar[i] * gh[k];
		}
		mb_adamw_step(&opt, par, grad, lr);
	}
	memcpy(t->directions, wt, (size_t)n * d * sizeof(float));
	*represented = 0;
	for (int i = 0; i < n; i++) {
		double nn = 0.0;
		for (int k = 0; k < d; k++)
			nn += (double)wt[(size_t)i * d + k] * wt[(size_t)i * d + k];
		*represented += sqrt(nn) >= 0.5;
	}
cleanup:
	mb_adamw_dispose(&opt);
	free(par);
	free(grad);
	free(a);
	free(h);
	free(go);
	free(gh);
	return error;
}

static int tms_next(void *self, float *out, int n, mb_error *err)
{
	mb_sae_tms *t = self;
	const int64_t first = t->next_row;

	(void)err;
#pragma omp parallel for schedule(static) if ((size_t)n * t->n_features >= ((size_t)1 << 14))
	for (int i = 0; i < n; i++) {
		float *x = out + (size_t)i * t->d;
		float a[4096];
		tms_features(a, t, "sae/tms/rows", (uint64_t)(first + i));
		for (int j = 0; j < t->d; j++)
			x[j] = 0.0f;
		for (int f = 0; f < t->n_features; f++)
			if (a[f] != 0.0f) {
				const float *dir = t->directions + (size_t)f * t->d;
				for (int j = 0; j < t->d; j++)
					x[j] += a[f] * dir[j];
			}
	}
	t->next_row += n;
	return 0;
}

mb_sae_source mb_sae_tms_source(mb_sae_tms *t)
{
	mb_sae_source s = {t->d, tms_next, t};
	return s;
}
