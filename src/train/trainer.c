/*
 * trainer.c: deterministic training of the zoo's recipes on the engine.
 *
 * Shape letters: B batch (sequences per step), T positions, V vocab, NP the
 * number of parameters (one flat block in the engine's weights layout).
 *
 * The recipe's table (zoo_int.h) supplies everything that differs
 * between recipes: the data order and batches (each recipe's file documents
 * its own), the evaluation and its named fields, the vocabulary and the
 * post-training checks. Loss: mean cross-entropy over the rows the batch
 * marks with a target (mb_backward_xent).
 *
 * Step s: forward (keeping activations), loss and dlogits, backward into the
 * gradient block, optional global-norm clipping, AdamW at the warmup
 * schedule's learning rate for step s. Nothing depends on the thread count:
 * the engine's and the backward's kernels are thread-count invariant, the
 * loss is summed in row order, and AdamW is elementwise.
 */
#include <mechbench/zoo.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mechbench/adamw.h>
#include <mechbench/backward.h>
#include <mechbench/buildinfo.h>
#include <mechbench/checkpoint.h>
#include <mechbench/engine.h>
#include <mechbench/rng.h>
#include <mechbench/str.h>

#include "zoo_int.h"

struct mb_zoo_trainer {
	const mb_zoo_recipe *r;
	mb_engine_config cfg;
	float *params; /* (NP) */
	float *grads;  /* (NP) */
	size_t np;
	mb_engine_weights w, g;
	mb_engine *e;
	mb_backward *bw;
	mb_adamw opt;
	char *tokenizer;
	mb_zoo_ctx ctx; /* the recipe's data state, batch buffers and the engine */
	/* history */
	double *losses;   /* (cap_losses) training loss of each step */
	size_t cap_losses;
	mb_zoo_eval *evals;
	size_t nevals, cap_evals;
	int64_t step; /* optimizer steps taken */
	time_t started;
	double t0;
	const mb_zoo_train_opts *opts; /* set by mb_zoo_train */
	mb_zoo_recipe recipe;          /* a copy: r points here */
};

typedef struct mb_zoo_trainer trainer;

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void recipe_engine_config(mb_engine_config *c, const mb_zoo_recipe *r)
{
	memset(c, 0, sizeof(*c));
	c->n_vocab = r->vocab_size;
	c->n_ctx = r->n_positions;
	c->d_model = r->n_embd;
	c->n_layer = r->n_layer;
	c->n_head = r->n_head;
	c->d_head = r->n_embd / r->n_head;
	c->d_mlp = r->attn_only ? 0 : r->n_inner;
	c->act = strcmp(r->activation, "relu") == 0   ? MB_ACT_RELU
		 : strcmp(r->activation, "gelu") == 0 ? MB_ACT_GELU
						      : MB_ACT_GELU_NEW;
	c->norm = r->layer_norm ? MB_NORM_LN : MB_NORM_NONE;
	c->attn_only = r->attn_only;
	c->tied = r->tie_word_embeddings;
	c->ln_eps = 1e-5f;
}

/* Matrices N(0, init_std) from one Philox stream, in the checkpoint tensor
 * order; biases 0; LayerNorm weights 1. */
static int init_weights(trainer *t, mb_error *err)
{
	size_t n = mb_checkpoint_tensors(NULL, 0, &t->cfg, &t->w);
	mb_checkpoint_tensor *ts = calloc(n, sizeof(*ts));
	mb_rng rng;

	if (!ts)
		return mb_error_oom(err, "tensor list", n * sizeof(*ts));
	mb_checkpoint_tensors(ts, n, &t->cfg, &t->w);
	mb_rng_init_named(&rng, t->r->seed, "zoo/init", 0);
	for (size_t i = 0; i < n; i++) {
		size_t numel = (size_t)ts[i].shape[0] * (size_t)(ts[i].ndim > 1 ? ts[i].shape[1] : 1);
		const char *name = ts[i].name;
		size_t len = strlen(name);
		int is_ln = strstr(name, "ln_") != NULL;
		int is_bias = len > 5 && strcmp(name + len - 5, ".bias") == 0;
		for (size_t k = 0; k < numel; k++) {
			if (ts[i].ndim == 2)
				ts[i].data[k] = (float)(mb_rng_normal(&rng) * t->r->init_std);
			else
				ts[i].data[k] = is_ln && !is_bias ? 1.0f : 0.0f;
		}
	}
	free(ts);
	return 0;
}

/* tokenizer.json: the recipe's vocabulary as a word-level tokenizer. */
static char *make_tokenizer(const mb_zoo_recipe *r)
{
	const mb_zoo_recipe_ops *ops = r->ops;
	int V = r->vocab_size;
	char **names = calloc((size_t)V, sizeof(*names));
	char *json = NULL;
	int special[1] = {ops->bos_token};

	if (!names)
		return NULL;
	for (int i = 0; i < V; i++) {
		names[i] = malloc(16);
		if (!names[i])
			goto cleanup;
		ops->token_name(names[i], r, i);
	}
	json = mb_checkpoint_wordlevel_tokenizer((const char *const *)names, V, special,
						 ops->bos_token >= 0 ? 1 : 0,
						 names[ops->unk_token(r)]);
cleanup:
	for (int i = 0; i < V; i++)
		free(names[i]);
	free(names);
	return json;
}

/* ---- evaluation ---- */

static int evaluate(trainer *t, int64_t step, mb_error *err)
{
	mb_zoo_eval ev;
	int error;

	memset(&ev, 0, sizeof(ev));
	ev.step = step;
	error = t->r->ops->eval(&t->ctx, &ev, err);
	if (error < 0)
		return error;
	if (t->nevals == t->cap_evals) {
		size_t cap = t->cap_evals ? 2 * t->cap_evals : 64;
		mb_zoo_eval *ne = realloc(t->evals, cap * sizeof(*ne));
		if (!ne)
			return mb_error_oom(err, "evaluations", cap * sizeof(*ne));
		t->evals = ne;
		t->cap_evals = cap;
	}
	t->evals[t->nevals++] = ev;
	return 0;
}

/* ---- training state and checkpoints ---- */

/* One evaluation as training_state.json writes it: "step" and the recipe's
 * named fields. */
static json_t *eval_json(const mb_zoo_recipe *r, const mb_zoo_eval *ev)
{
	json_t *o = json_object();
	int bad = !o;

	if (o)
		bad |= json_object_set_new(o, "step", json_integer((json_int_t)ev->step));
	for (size_t i = 0; i < r->ops->n_eval_fields && !bad; i++) {
		const mb_zoo_eval_field *f = &r->ops->eval_fields[i];
		bad |= json_object_set_new(o, f->name,
					   f->integer ? json_integer((json_int_t)ev->value[i])
						      : json_real(ev->value[i]));
	}
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int write_state(trainer *t, const char *dir, int64_t step, const mb_zoo_result *res,
		       mb_error *err)
{
	json_t *root = json_object(), *losses = json_array(), *evals = json_array();
	json_t *recipe = mb_zoo_recipe_to_json(t->r);
	char path[4096], when[64], cpu[256];
	char *text = NULL;
	int bad = !root || !losses || !evals || !recipe, error;

	for (int64_t s = 0; s < step && !bad; s++)
		bad |= json_array_append_new(losses, json_real(t->losses[s]));
	for (size_t i = 0; i < t->nevals && !bad; i++)
		if (t->evals[i].step <= step)
			bad |= json_array_append_new(evals, eval_json(t->r, &t->evals[i]));
	mb_str_utc(when, sizeof(when), t->started);
	mb_cpu_model(cpu, sizeof(cpu));
	bad |= json_object_set_new(root, "format", json_integer(1));
	bad |= json_object_set_new(root, "step", json_integer((json_int_t)step));
	bad |= json_object_set_new(root, "seed", json_integer((json_int_t)t->r->seed));
	bad |= json_object_set_new(root, "recipe", recipe);
	recipe = NULL;
	bad |= json_object_set_new(root, "losses", losses);
	losses = NULL;
	bad |= json_object_set_new(root, "evals", evals);
	evals = NULL;
	bad |= json_object_set_new(root, "started_utc", json_string(when));
	bad |= json_object_set_new(root, "seconds", json_real(now_seconds() - t->t0));
	bad |= json_object_set_new(root, "threads", json_integer(omp_get_max_threads()));
	bad |= json_object_set_new(root, "machine", json_string(cpu));
	bad |= json_object_set_new(root, "commit", json_string(mb_build_commit()));
	bad |= json_object_set_new(root, "command",
				   t->opts->command ? json_string(t->opts->command) : json_null());
	if (res) {
		bad |= json_object_set_new(root, "checks_passed", json_boolean(res->checks_passed));
		bad |= json_object_set_new(root, "checks", json_string(res->checks));
	}
	if (bad) {
		error = mb_error_oom(err, "training_state.json", 0);
		goto cleanup;
	}
	text = json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
	if (!text) {
		error = mb_error_oom(err, "training_state.json", 0);
		goto cleanup;
	}
	snprintf(path, sizeof(path), "%s/training_state.json", dir);
	error = mb_checkpoint_write_text(path, text, err);
cleanup:
	free(text);
	json_decref(root);
	json_decref(losses);
	json_decref(evals);
	json_decref(recipe);
	return error;
}

static int write_checkpoint(trainer *t, const char *dir, int64_t step, const mb_zoo_result *res,
			    mb_error *err)
{
	int error = mb_zoo_trainer_write_model(t, dir, err);
	if (error == 0)
		error = write_state(t, dir, step, res, err);
	return error;
}

static int write_series(trainer *t, int64_t step, mb_error *err)
{
	char dir[4096];
	int64_t every = t->opts->checkpoint_every;

	if (every <= 0 || (step % every != 0 && step != t->r->steps))
		return 0;
	snprintf(dir, sizeof(dir), "%s/checkpoints/step_%06lld", t->opts->out_dir, (long long)step);
	return write_checkpoint(t, dir, step, NULL, err);
}

/* ---- the step API ---- */

void mb_zoo_trainer_free(mb_zoo_trainer *t)
{
	if (!t)
		return;
	mb_backward_free(t->bw);
	mb_engine_free(t->e);
	mb_adamw_dispose(&t->opt);
	free(t->params);
	free(t->grads);
	free(t->tokenizer);
	if (t->ctx.data)
		t->r->ops->data_free(t->ctx.data);
	free(t->ctx.tokens);
	free(t->ctx.targets);
	free(t->losses);
	free(t->evals);
	free(t);
}

int mb_zoo_trainer_init(mb_zoo_trainer **out, const mb_zoo_recipe *recipe, mb_error *err)
{
	trainer *t;
	mb_engine_opts eo;
	const mb_zoo_recipe *r;
	int error;

	*out = NULL;
	error = mb_zoo_recipe_check(recipe, err);
	if (error < 0)
		return error;
	t = calloc(1, sizeof(*t));
	if (!t)
		return mb_error_oom(err, "trainer", sizeof(*t));
	t->recipe = *recipe;
	t->r = r = &t->recipe;
	t->ctx.r = r;
	t->ctx.V = r->vocab_size;
	t->started = time(NULL);
	t->t0 = now_seconds();
	recipe_engine_config(&t->cfg, r);
	error = mb_engine_config_check(&t->cfg, err);
	if (error < 0) {
		mb_error_prefix(err, "recipe %s", r->name);
		goto cleanup;
	}
	t->np = mb_engine_weights_layout(&t->w, &t->cfg, NULL);
	t->params = calloc(t->np, sizeof(float));
	t->grads = calloc(t->np, sizeof(float));
	if (!t->params || !t->grads) {
		error = mb_error_oom(err, "parameters and gradients", 2 * t->np * sizeof(float));
		goto cleanup;
	}
	mb_engine_weights_layout(&t->w, &t->cfg, t->params);
	mb_engine_weights_layout(&t->g, &t->cfg, t->grads);
	if ((error = init_weights(t, err)) < 0)
		goto cleanup;
	t->tokenizer = make_tokenizer(r);
	if (!t->tokenizer) {
		error = mb_error_oom(err, "tokenizer.json", 0);
		goto cleanup;
	}
	if ((error = r->ops->data_init(&t->ctx, err)) < 0)
		goto cleanup;
	t->ctx.tokens = malloc((size_t)t->ctx.max_batch * t->ctx.max_seq * sizeof(int32_t));
	t->ctx.targets = malloc((size_t)t->ctx.max_batch * t->ctx.max_seq * sizeof(int32_t));
	if (!t->ctx.tokens || !t->ctx.targets) {
		error = mb_error_oom(err, "batch buffers", 0);
		goto cleanup;
	}
	memset(&eo, 0, sizeof(eo));
	eo.max_batch = t->ctx.max_batch;
	eo.max_seq = t->ctx.max_seq;
	eo.keep_activations = 1;
	if ((error = mb_engine_init(&t->e, &t->cfg, &t->w, &eo, err)) < 0)
		goto cleanup;
	t->ctx.e = t->e;
	/* One fixed batch per step: no per-item padding to the row group; and a
	 * batch whose logits mode reads only the last position (modadd) gets the
	 * last layer's tail computed there alone. */
	mb_engine_set_dense_rows(t->e, 1);
	mb_engine_set_compact_tail(t->e, 1);
	if ((error = mb_backward_init(&t->bw, t->e, err)) < 0 ||
	    (error = mb_adamw_init(&t->opt, t->np, &r->adamw, err)) < 0)
		goto cleanup;
	*out = t;
	t = NULL;
cleanup:
	mb_zoo_trainer_free(t);
	return error;
}

int mb_zoo_trainer_step(mb_zoo_trainer *t, double *out_loss, mb_error *err)
{
	const mb_zoo_recipe *r = t->r;
	int64_t s = t->step + 1;
	double loss = 0, lr;
	mb_run run;
	int error;

	memset(&run, 0, sizeof(run));
	r->ops->train_batch(&t->ctx, s, &run);
	run.tokens = t->ctx.tokens;
	error = mb_engine_forward(t->e, &run, err);
	if (error < 0)
		return error;
	error = mb_backward_xent(t->bw, t->ctx.targets, &loss, NULL, err);
	if (error < 0)
		return error;
	if (!isfinite(loss))
		return mb_error_set(err, MB_EINVALID, "recipe %s: loss is %g at step %lld", r->name,
				    loss, (long long)s);
	error = mb_backward_run(t->bw, &run, &t->g, NULL, err);
	if (error < 0)
		return error;
	mb_grad_clip(t->grads, t->np, r->clip_norm);
	lr = mb_lr_warmup(r->adamw.lr, s, r->warmup_steps);
	if (r->decay_steps > 0 && s > r->steps - r->decay_steps)
		lr *= (double)(r->steps - s + 1) / (double)r->decay_steps;
	mb_adamw_step(&t->opt, t->params, t->grads, lr);
	if ((size_t)s > t->cap_losses) {
		size_t cap = t->cap_losses ? 2 * t->cap_losses : 1024;
		double *nl = realloc(t->losses, cap * sizeof(*nl));
		if (!nl)
			return mb_error_oom(err, "losses", cap * sizeof(*nl));
		t->losses = nl;
		t->cap_losses = cap;
	}
	t->losses[s - 1] = loss;
	t->step = s;
	if (out_loss)
		*out_loss = loss;
	return 0;
}

int mb_zoo_trainer_eval(mb_zoo_trainer *t, mb_zoo_eval *out, mb_error *err)
{
	int error = evaluate(t, t->step, err);
	if (error == 0 && out)
		*out = t->evals[t->nevals - 1];
	return error;
}

int mb_zoo_trainer_write_model(const mb_zoo_trainer *t, const char *dir, mb_error *err)
{
	mb_checkpoint_info info = {t->r->init_std, t->r->ops->bos_token};
	return mb_checkpoint_write(dir, &t->cfg, &t->w, &info, t->tokenizer, err);
}

const mb_zoo_ctx *mb_zoo_trainer_ctx(const mb_zoo_trainer *t)
{
	return &t->ctx;
}

const float *mb_zoo_trainer_params(const mb_zoo_trainer *t, size_t *n)
{
	*n = t->np;
	return t->params;
}

/* ---- the whole run ---- */

int mb_zoo_train(mb_zoo_result *out, const mb_zoo_recipe *r, const mb_zoo_train_opts *opts,
		 mb_error *err)
{
	trainer *t = NULL;
	int error;

	memset(out, 0, sizeof(*out));
	if (!opts || !opts->out_dir)
		return mb_error_set(err, MB_EINVALID, "recipe %s: no output directory", r->name);
	error = mb_zoo_trainer_init(&t, r, err);
	if (error < 0)
		return error;
	t->opts = opts;
	r = t->r;
	if ((error = evaluate(t, 0, err)) < 0 || (error = write_series(t, 0, err)) < 0)
		goto cleanup;
	for (int64_t s = 1; s <= r->steps; s++) {
		double loss = 0;
		int evaluated = 0;
		error = mb_zoo_trainer_step(t, &loss, err);
		if (error < 0)
			goto cleanup;
		if (s % r->eval_every == 0 || s == r->steps) {
			if ((error = evaluate(t, s, err)) < 0)
				goto cleanup;
			evaluated = 1;
		}
		if ((error = write_series(t, s, err)) < 0)
			goto cleanup;
		if (opts->progress) {
			mb_zoo_progress p = {r, s, r->steps, loss, now_seconds() - t->t0,
					     evaluated ? &t->evals[t->nevals - 1] : NULL};
			opts->progress(&p, opts->payload);
		}
	}
	out->steps = r->steps;
	out->final_loss = t->losses[r->steps - 1];
	out->final = t->evals[t->nevals - 1];
	r->ops->checks(out, r, t->evals, t->nevals);
	out->seconds = now_seconds() - t->t0;
	error = write_checkpoint(t, opts->out_dir, r->steps, out, err);
cleanup:
	mb_zoo_trainer_free(t);
	return error;
}
