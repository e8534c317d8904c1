/*
 * trainer.c: deterministic training of the zoo's recipes on the engine.
 *
 * Shape letters: B batch (sequences per step), T positions, V vocab, NP the
 * number of parameters (one flat block in the engine's weights layout).
 *
 * Data order (part of each recipe's definition):
 * - modadd, batch_size 0 (full batch): every step sees all train pairs in
 *   ascending pair order. batch_size > 0: epoch e is the Philox permutation
 *   (stream "modadd/order", index e) of the train pairs; step s of the epoch
 *   takes entries [s * batch_size, (s + 1) * batch_size) of it (the tail that
 *   does not fill a batch is skipped).
 * - induction: step s (1-based) trains on sequences (s - 1) * B .. s * B - 1
 *   of stream "induction/train" (zoo.h): fresh data every step.
 * Loss: mean cross-entropy over the rows read (modadd: the '=' position,
 * whose target is (a + b) mod p; induction: every position t < T - 1,
 * target token t + 1).
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
#include <mechbench/detmath.h>
#include <mechbench/checkpoint.h>
#include <mechbench/engine.h>
#include <mechbench/hooks.h>
#include <mechbench/rng.h>

/* Sequences of [BOS, R, R] for the induction score, and |R|. */
#define IND_SCORE_BATCH 32
#define IND_EVAL_BATCH 64

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
	/* modadd */
	uint32_t *train, *test;
	size_t ntrain, ntest;
	uint32_t *order; /* (ntrain) the current epoch's permutation (mini-batch) */
	int64_t order_epoch;
	/* batch buffers */
	int max_batch, max_seq;
	int32_t *tokens;  /* (max_batch, max_seq) */
	int32_t *targets; /* (max_batch, max_seq) */
	mb_zoo_segment *segs; /* (max_batch) */
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

static char *make_tokenizer(const mb_zoo_recipe *r)
{
	int V = r->vocab_size;
	char **names = calloc((size_t)V, sizeof(*names));
	char *json = NULL;
	int special[1] = {0};

	if (!names)
		return NULL;
	for (int i = 0; i < V; i++) {
		names[i] = malloc(16);
		if (!names[i])
			goto cleanup;
		if (r->task == MB_ZOO_MODADD)
			snprintf(names[i], 16, i == r->p ? "=" : "%d", i);
		else
			snprintf(names[i], 16, i == 0 ? "<bos>" : "t%d", i);
	}
	/* The vocabulary is exactly the model's (p + 1 for modadd): the unknown
	 * word maps to an existing token ('=' / <bos>), which the recipes' data
	 * never needs (the loader requires unk_token to be in the vocabulary). */
	json = mb_checkpoint_wordlevel_tokenizer((const char *const *)names, V, special,
						 r->task == MB_ZOO_MODADD ? 0 : 1,
						 r->task == MB_ZOO_MODADD ? "=" : "<bos>");
cleanup:
	for (int i = 0; i < V; i++)
		free(names[i]);
	free(names);
	return json;
}

/* ---- batches ---- */

/* Fills tokens (B, 3) and targets (B, 1) for pairs[0..B). */
static void modadd_batch(trainer *t, const uint32_t *pairs, int B)
{
	for (int b = 0; b < B; b++) {
		mb_zoo_modadd_tokens(t->tokens + 3 * b, t->r->p, pairs[b]);
		t->targets[b] = mb_zoo_modadd_target(t->r->p, pairs[b]);
	}
}

/* The train pairs of step s (1-based) and their count. */
static const uint32_t *modadd_step_pairs(trainer *t, int64_t s, int *B)
{
	int64_t bs = t->r->batch_size;

	if (bs == 0) {
		*B = (int)t->ntrain;
		return t->train;
	}
	int64_t per_epoch = (int64_t)t->ntrain / bs;
	int64_t epoch = (s - 1) / per_epoch, k = (s - 1) % per_epoch;
	if (epoch != t->order_epoch) {
		mb_rng rng;
		memcpy(t->order, t->train, t->ntrain * sizeof(*t->order));
		mb_rng_init_named(&rng, t->r->seed, "modadd/order", (uint64_t)epoch);
		mb_rng_shuffle(&rng, t->order, t->ntrain, sizeof(*t->order));
		t->order_epoch = epoch;
	}
	*B = (int)bs;
	return t->order + k * bs;
}

/* Induction sequences first .. first + B - 1 of stream into tokens (B, T),
 * targets (B, T) = next token, -1 at the last position. */
static void induction_batch(trainer *t, const char *stream, uint64_t first, int B)
{
	const int T = t->r->n_positions;
	for (int b = 0; b < B; b++) {
		int32_t *tok = t->tokens + (size_t)b * T, *tg = t->targets + (size_t)b * T;
		mb_zoo_induction_sequence(tok, &t->segs[b], t->r, stream, first + (uint64_t)b);
		for (int i = 0; i < T - 1; i++)
			tg[i] = tok[i + 1];
		tg[T - 1] = -1;
	}
}

/* ---- evaluation ---- */

/* Loss (double) and argmax-correctness of one logits row. */
static double row_loss(const float *logits, int V, int target, int *correct)
{
	double mx = logits[0], s = 0;
	int arg = 0;
	for (int v = 1; v < V; v++)
		if (logits[v] > mx) {
			mx = logits[v];
			arg = v;
		}
	for (int v = 0; v < V; v++)
		s += mb_detmath_exp((double)logits[v] - mx);
	*correct = arg == target;
	return mx + mb_detmath_log(s) - (double)logits[target];
}

/* Mean loss and accuracy of the model on pairs[0..n), in batches. */
static int modadd_eval_split(trainer *t, const uint32_t *pairs, size_t n, double *loss,
			     double *acc, mb_error *err)
{
	double sum = 0;
	int64_t ok = 0;

	for (size_t at = 0; at < n; at += (size_t)t->max_batch) {
		int B = (int)(n - at < (size_t)t->max_batch ? n - at : (size_t)t->max_batch);
		mb_run run = {.batch = B, .seq = 3, .tokens = t->tokens, .logits = MB_LOGITS_LAST};
		modadd_batch(t, pairs + at, B);
		int error = mb_engine_forward(t->e, &run, err);
		if (error < 0)
			return error;
		for (int b = 0; b < B; b++) {
			int c;
			sum += row_loss(mb_engine_logits_row(t->e, b, 0), t->cfg.n_vocab, t->targets[b],
					&c);
			ok += c;
		}
	}
	*loss = sum / (double)n;
	*acc = (double)ok / (double)n;
	return 0;
}

typedef struct score_payload {
	int len;      /* |R| */
	double *sums; /* (H) */
} score_payload;

/* hook_pattern (B, H, T, T) of layer 1: mean over items and over queries i
 * of the second repeat (positions len+1 .. 2 len) of pattern[i][i - len + 1]. */
static int score_hook(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	score_payload *sp = payload;
	const int B = (int)t->shape[0], H = (int)t->shape[1], T = (int)t->shape[2];
	(void)err;
	for (int h = 0; h < H; h++) {
		double s = 0;
		for (int b = 0; b < B; b++)
			for (int i = sp->len + 1; i <= 2 * sp->len; i++)
				s += t->data[(((size_t)b * H + h) * T + i) * T + (i - sp->len + 1)];
		sp->sums[h] = s / ((double)B * sp->len);
	}
	return 0;
}

static int induction_eval(trainer *t, mb_zoo_eval *ev, mb_error *err)
{
	const int T = t->r->n_positions, V = t->cfg.n_vocab, H = t->cfg.n_head;
	const int len = (T - 1) / 2;
	double s1 = 0, s2 = 0, sums[256];
	int64_t n1 = 0, n2 = 0;
	mb_hooks *hooks = NULL;
	mb_hook_point pt = {MB_HOOK_PATTERN, t->cfg.n_layer > 1 ? 1 : 0};
	score_payload sp = {len, sums};
	int error, c;

	MB_ASSERT(H <= 256);
	/* Loss on the two occurrences of the segment. */
	induction_batch(t, "induction/eval", 0, IND_EVAL_BATCH);
	mb_run run = {.batch = IND_EVAL_BATCH, .seq = T, .tokens = t->tokens,
		      .logits = MB_LOGITS_ALL};
	error = mb_engine_forward(t->e, &run, err);
	if (error < 0)
		return error;
	for (int b = 0; b < IND_EVAL_BATCH; b++) {
		const mb_zoo_segment *sg = &t->segs[b];
		const int32_t *tok = t->tokens + (size_t)b * T;
		/* Token at position p is predicted by logits row p - 1. */
		for (int j = 1; j < sg->len; j++) {
			s1 += row_loss(mb_engine_logits_row(t->e, b, sg->first + j - 1), V,
				       tok[sg->first + j], &c);
			n1++;
			s2 += row_loss(mb_engine_logits_row(t->e, b, sg->second + j - 1), V,
				       tok[sg->second + j], &c);
			n2++;
		}
	}
	ev->rep1_loss = s1 / (double)n1;
	ev->rep2_loss = s2 / (double)n2;
	/* Induction score through the hook_pattern hook point. */
	for (int b = 0; b < IND_SCORE_BATCH; b++)
		mb_zoo_repeated_tokens(t->tokens + (size_t)b * (2 * len + 1), len, V, t->r->seed,
				       (uint64_t)b);
	error = mb_hooks_init(&hooks, err);
	if (error < 0)
		return error;
	error = mb_hooks_add(hooks, pt, score_hook, &sp, MB_HOOK_READONLY, err);
	if (error < 0)
		goto cleanup;
	mb_run srun = {.batch = IND_SCORE_BATCH, .seq = 2 * len + 1, .tokens = t->tokens,
		       .hooks = hooks, .logits = MB_LOGITS_NONE};
	error = mb_engine_forward(t->e, &srun, err);
	if (error < 0)
		goto cleanup;
	ev->induction_score = -1;
	ev->induction_heads = 0;
	for (int h = 0; h < H; h++)
		ev->induction_heads += sums[h] >= MB_ZOO_INDUCTION_HEAD_SCORE;
	for (int h = 0; h < H; h++)
		if (sums[h] > ev->induction_score) {
			ev->induction_score = sums[h];
			ev->induction_head = h;
		}
cleanup:
	mb_hooks_free(hooks);
	return error;
}

static int evaluate(trainer *t, int64_t step, mb_error *err)
{
	mb_zoo_eval ev;
	int error;

	memset(&ev, 0, sizeof(ev));
	ev.step = step;
	if (t->r->task == MB_ZOO_MODADD) {
		error = modadd_eval_split(t, t->train, t->ntrain, &ev.train_loss, &ev.train_acc, err);
		if (error == 0)
			error = modadd_eval_split(t, t->test, t->ntest, &ev.test_loss, &ev.test_acc,
						  err);
	} else {
		error = induction_eval(t, &ev, err);
	}
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

static json_t *eval_json(const mb_zoo_recipe *r, const mb_zoo_eval *ev)
{
	if (r->task == MB_ZOO_MODADD)
		return json_pack("{sI sf sf sf sf}", "step", (json_int_t)ev->step, "train_loss",
				 ev->train_loss, "train_acc", ev->train_acc, "test_loss",
				 ev->test_loss, "test_acc", ev->test_acc);
	return json_pack("{sI sf sf sf si si}", "step", (json_int_t)ev->step, "rep1_loss",
			 ev->rep1_loss, "rep2_loss", ev->rep2_loss, "induction_score",
			 ev->induction_score, "induction_head", ev->induction_head,
			 "induction_heads", ev->induction_heads);
}

static int write_state(trainer *t, const char *dir, int64_t step, const mb_zoo_result *res,
		       mb_error *err)
{
	json_t *root = json_object(), *losses = json_array(), *evals = json_array();
	json_t *recipe = mb_zoo_recipe_to_json(t->r);
	char path[4096], when[64], cpu[256];
	char *text = NULL;
	struct tm tmv;
	int bad = !root || !losses || !evals || !recipe, error;

	for (int64_t s = 0; s < step && !bad; s++)
		bad |= json_array_append_new(losses, json_real(t->losses[s]));
	for (size_t i = 0; i < t->nevals && !bad; i++)
		if (t->evals[i].step <= step)
			bad |= json_array_append_new(evals, eval_json(t->r, &t->evals[i]));
	gmtime_r(&t->started, &tmv);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tmv);
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

/* ---- checks ---- */

static void run_checks(trainer *t, mb_zoo_result *res)
{
	const mb_zoo_recipe *r = t->r;
	const mb_zoo_eval *f = &res->final;
	char *c = res->checks;
	size_t cap = sizeof(res->checks);

	res->memorised_step = res->grokked_step = -1;
	for (size_t i = 0; i < t->nevals; i++) {
		const mb_zoo_eval *ev = &t->evals[i];
		if (r->task == MB_ZOO_MODADD) {
			if (res->memorised_step < 0 && ev->train_acc >= 0.99)
				res->memorised_step = ev->step;
			if (res->grokked_step < 0 && ev->test_acc >= r->check_test_acc)
				res->grokked_step = ev->step;
		} else if (res->grokked_step < 0 && ev->induction_score >= r->check_induction_score) {
			res->grokked_step = ev->step;
		}
	}
	if (r->task == MB_ZOO_MODADD) {
		int ok_test = f->test_acc >= r->check_test_acc;
		/* Grokking, not plain generalisation: train accuracy was ~100% at
		 * an evaluation strictly before test accuracy got there. */
		int ok_gap = res->memorised_step >= 0 && res->grokked_step > res->memorised_step;
		res->checks_passed = ok_test && ok_gap;
		snprintf(c, cap,
			 "test accuracy %.4f >= %.2f: %s; train accuracy >= 0.99 from step %lld, "
			 "test accuracy >= %.2f from step %lld (grokking after memorisation): %s",
			 f->test_acc, r->check_test_acc, ok_test ? "pass" : "FAIL",
			 (long long)res->memorised_step, r->check_test_acc,
			 (long long)res->grokked_step, ok_gap ? "pass" : "FAIL");
	} else {
		int ok_score = f->induction_score >= r->check_induction_score;
		int ok_loss = f->rep2_loss <= r->check_loss_ratio * f->rep1_loss;
		int ok_phase = res->grokked_step > 0;
		/* A random-head control needs layer-1 heads that are not induction
		 * heads (zoo.c, the induction preset). */
		int ok_other = f->induction_heads < t->cfg.n_head;
		res->checks_passed = ok_score && ok_loss && ok_phase && ok_other;
		snprintf(c, cap,
			 "layer-1 head %d induction score %.3f >= %.2f: %s; loss on 2nd repeat %.3f "
			 "<= %.2f x 1st %.3f: %s; score reached %.2f at step %lld (after step 0): %s; "
			 "%d of %d layer-1 heads score >= %.1f (some must not): %s",
			 f->induction_head, f->induction_score, r->check_induction_score,
			 ok_score ? "pass" : "FAIL", f->rep2_loss, r->check_loss_ratio, f->rep1_loss,
			 ok_loss ? "pass" : "FAIL", r->check_induction_score,
			 (long long)res->grokked_step, ok_phase ? "pass" : "FAIL", f->induction_heads,
			 t->cfg.n_head, MB_ZOO_INDUCTION_HEAD_SCORE, ok_other ? "pass" : "FAIL");
	}
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
	free(t->train);
	free(t->test);
	free(t->order);
	free(t->tokens);
	free(t->targets);
	free(t->segs);
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
	t->order_epoch = -1;
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
	if (r->task == MB_ZOO_MODADD) {
		error = mb_zoo_modadd_split(&t->train, &t->ntrain, &t->test, &t->ntest, r->p,
					    r->train_frac, r->seed, err);
		if (error < 0)
			goto cleanup;
		t->order = malloc(t->ntrain * sizeof(*t->order));
		t->max_batch = (int)t->ntrain;
		t->max_seq = 3;
		if (!t->order) {
			error = mb_error_oom(err, "data order", t->ntrain * sizeof(*t->order));
			goto cleanup;
		}
	} else {
		t->max_batch = (int)(r->batch_size > IND_EVAL_BATCH ? r->batch_size : IND_EVAL_BATCH);
		t->max_seq = r->n_positions;
	}
	t->tokens = malloc((size_t)t->max_batch * t->max_seq * sizeof(int32_t));
	t->targets = malloc((size_t)t->max_batch * t->max_seq * sizeof(int32_t));
	t->segs = malloc((size_t)t->max_batch * sizeof(*t->segs));
	if (!t->tokens || !t->targets || !t->segs) {
		error = mb_error_oom(err, "batch buffers", 0);
		goto cleanup;
	}
	memset(&eo, 0, sizeof(eo));
	eo.max_batch = t->max_batch;
	eo.max_seq = t->max_seq;
	eo.keep_activations = 1;
	if ((error = mb_engine_init(&t->e, &t->cfg, &t->w, &eo, err)) < 0)
		goto cleanup;
	/* One fixed batch per step: no per-item padding to the row group; and
	 * modadd reads only the last position: the last layer's tail is computed
	 * there alone. */
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
	double loss = 0;
	mb_run run;
	int error, B;

	memset(&run, 0, sizeof(run));
	if (r->task == MB_ZOO_MODADD) {
		const uint32_t *pairs = modadd_step_pairs(t, s, &B);
		modadd_batch(t, pairs, B);
		run.seq = 3;
		run.logits = MB_LOGITS_LAST;
	} else {
		B = (int)r->batch_size;
		induction_batch(t, "induction/train", (uint64_t)(s - 1) * (uint64_t)B, B);
		run.seq = r->n_positions;
		run.logits = MB_LOGITS_ALL;
	}
	run.batch = B;
	run.tokens = t->tokens;
	error = mb_engine_forward(t->e, &run, err);
	if (error < 0)
		return error;
	error = mb_backward_xent(t->bw, t->targets, &loss, NULL, err);
	if (error < 0)
		return error;
	if (!isfinite(loss))
		return mb_error_set(err, MB_EINVALID, "recipe %s: loss is %g at step %lld", r->name,
				    loss, (long long)s);
	error = mb_backward_run(t->bw, &run, &t->g, NULL, err);
	if (error < 0)
		return error;
	mb_grad_clip(t->grads, t->np, r->clip_norm);
	mb_adamw_step(&t->opt, t->params, t->grads, mb_lr_warmup(r->adamw.lr, s, r->warmup_steps));
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
	mb_checkpoint_info info = {t->r->init_std, t->r->task == MB_ZOO_INDUCTION ? 0 : -1};
	return mb_checkpoint_write(dir, &t->cfg, &t->w, &info, t->tokenizer, err);
}

const uint32_t *mb_zoo_trainer_train_pairs(const mb_zoo_trainer *t, size_t *n)
{
	*n = t->ntrain;
	return t->train;
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
	run_checks(t, out);
	out->seconds = now_seconds() - t->t0;
	error = write_checkpoint(t, opts->out_dir, r->steps, out, err);
cleanup:
	mb_zoo_trainer_free(t);
	return error;
}
