/*
 * zoo_modadd.c: the modadd recipe: a 1-layer transformer on "a b =" ->
 * (a + b) mod P that memorises and then groks (Nanda et al. 2023). Its
 * presets, field checks, data (the pair split, full-batch or shuffled
 * mini-batch order), evaluation (loss and accuracy on the train and test
 * pairs) and checks (grokking after memorisation) as one recipe table
 * (zoo_int.h).
 *
 * Legend: B batch (pairs), P modulus, V vocab = P + 1 ('=' is token P).
 *
 * Data order (part of the recipe): batch_size 0 (full batch): every step sees
 * all train pairs in ascending pair order. batch_size > 0: epoch e is the
 * Philox permutation (stream "modadd/order", index e) of the train pairs;
 * step s of the epoch takes entries [s * batch_size, (s + 1) * batch_size)
 * of it (the tail that does not fill a batch is skipped). Loss: mean
 * cross-entropy at the '=' position, target (a + b) mod P.
 */
#include <mechbench/zoo.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/logits.h>
#include <mechbench/rng.h>

#include "zoo_int.h"

/*
 * modadd, preset "paper": Nanda et al. 2023, "Progress measures for grokking
 * via mechanistic interpretability", section 3 / appendix (their TransformerLens
 * config): p = 113, 30% of the pairs for training, 1 layer, d_model 128, 4
 * heads of 32, d_mlp 512, ReLU, no LayerNorm, untied unembedding, full-batch
 * AdamW lr 1e-3, weight decay 1.0, betas (0.9, 0.98), 10 warmup steps,
 * weights N(0, 0.8 / sqrt(d_model)) (TransformerLens's default
 * initializer_range), biases 0. Our unembedding covers all p + 1 tokens
 * (HF's lm_head is (V, D)); '=' is never a target, so its logit just learns
 * to be low.
 * Preset "fast": the same model on p = 59 with 50% of the pairs for training
 * (3,481 pairs, 1,740 train), 2,500 steps: train accuracy is 100% from step
 * ~200 while test accuracy sits at 20-45% and then climbs to 99% by step
 * ~1,300 (measured with this trainer, seed 0), so the checkpoint series shows
 * the memorisation plateau and the grokking transition. (PyTorch prototype
 * runs: with 40% of the pairs the climb had not started by step 1,500; with
 * 60% test accuracy followed train accuracy almost at once.)
 */
static void modadd_preset(mb_zoo_recipe *r, const char *preset)
{
	int paper = strcmp(preset, "paper") == 0;

	r->p = paper ? 113 : 59;
	r->train_frac = paper ? 0.3 : 0.5;
	r->n_layer = 1;
	r->n_embd = 128;
	r->n_head = 4;
	r->n_inner = 512;
	r->vocab_size = r->p + 1;
	r->n_positions = 3;
	r->attn_only = 0;
	r->layer_norm = 0;
	r->tie_word_embeddings = 0;
	snprintf(r->activation, sizeof(r->activation), "relu");
	r->init_std = 0.8 / sqrt((double)r->n_embd);
	r->adamw.lr = 1e-3;
	r->adamw.beta1 = 0.9;
	r->adamw.beta2 = 0.98;
	r->adamw.eps = 1e-8;
	r->adamw.weight_decay = 1.0;
	r->warmup_steps = 10;
	r->clip_norm = 0;
	r->steps = paper ? 25000 : 2500;
	r->batch_size = 0;
	r->eval_every = paper ? 250 : 50;
	r->check_test_acc = 0.99;
}


static int modadd_check(const mb_zoo_recipe *r, mb_error *err)
{
	const char *n = r->name;

	if (r->p < 2 || r->p > 4096)
		return mb_error_set(err, MB_EINVALID, "recipe %s: p = %d must be in [2, 4096]", n,
				    r->p);
	if (r->vocab_size != r->p + 1 || r->n_positions != 3)
		return mb_error_set(err, MB_EINVALID,
				    "recipe %s: modadd needs vocab_size = p + 1 = %d and "
				    "n_positions = 3 (got %d, %d)",
				    n, r->p + 1, r->vocab_size, r->n_positions);
	if (!(r->train_frac > 0 && r->train_frac < 1))
		return mb_error_set(err, MB_EINVALID, "recipe %s: train_frac = %g must be in (0, 1)",
				    n, r->train_frac);
	double ntrain = floor(r->train_frac * r->p * r->p + 0.5);
	if (ntrain < 1 || ntrain >= (double)r->p * r->p)
		return mb_error_set(err, MB_EINVALID,
				    "recipe %s: train_frac = %g leaves an empty train or test split",
				    n, r->train_frac);
	if (r->batch_size > ntrain)
		return mb_error_set(err, MB_EINVALID,
				    "recipe %s: batch_size %lld exceeds the %.0f train pairs", n,
				    (long long)r->batch_size, ntrain);
	return 0;
}

static int modadd_to_json(json_t *o, const mb_zoo_recipe *r)
{
	int bad = 0;

	bad |= json_object_set_new(o, "p", json_integer(r->p));
	bad |= json_object_set_new(o, "train_frac", json_real(r->train_frac));
	bad |= json_object_set_new(o, "split_stream", json_string("modadd/split"));
	bad |= json_object_set_new(o, "check_test_acc", json_real(r->check_test_acc));
	return bad;
}

/* Tokens 0..P-1 are the numbers, token P is '='. The vocabulary is exactly
 * the model's: the unknown word maps to '=', which the data never needs (the
 * loader requires unk_token to be in the vocabulary). */
static void modadd_token_name(char out[16], const mb_zoo_recipe *r, int id)
{
	snprintf(out, 16, id == r->p ? "=" : "%d", id);
}

static int modadd_unk_token(const mb_zoo_recipe *r) { return r->p; }

void mb_zoo_modadd_tokens(int32_t out[3], int p, uint32_t pair)
{
	out[0] = (int32_t)(pair / (uint32_t)p);
	out[1] = (int32_t)(pair % (uint32_t)p);
	out[2] = p;
}

int32_t mb_zoo_modadd_target(int p, uint32_t pair)
{
	return (int32_t)((pair / (uint32_t)p + pair % (uint32_t)p) % (uint32_t)p);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

int mb_zoo_modadd_split(uint32_t **out_train, size_t *ntrain, uint32_t **out_test,
			size_t *ntest, int p, double train_frac, uint64_t seed, mb_error *err)
{
	size_t n = (size_t)p * (size_t)p, nt;
	uint32_t *perm = NULL, *tr = NULL, *te = NULL;
	mb_rng rng;

	*out_train = *out_test = NULL;
	*ntrain = *ntest = 0;
	if (p < 2 || !(train_frac > 0 && train_frac < 1))
		return mb_error_set(err, MB_EINVALID, "modadd split: p = %d, train_frac = %g", p,
				    train_frac);
	nt = (size_t)floor(train_frac * (double)n + 0.5);
	if (nt < 1 || nt >= n)
		return mb_error_set(err, MB_EINVALID,
				    "modadd split: train_frac = %g of %zu pairs leaves an empty split",
				    train_frac, n);
	perm = malloc(n * sizeof(*perm));
	tr = malloc(nt * sizeof(*tr));
	te = malloc((n - nt) * sizeof(*te));
	if (!perm || !tr || !te) {
		free(perm);
		free(tr);
		free(te);
		return mb_error_oom(err, "modadd split", 2 * n * sizeof(*perm));
	}
	mb_rng_init_named(&rng, seed, "modadd/split", 0);
	mb_rng_permutation(&rng, perm, n);
	memcpy(tr, perm, nt * sizeof(*tr));
	memcpy(te, perm + nt, (n - nt) * sizeof(*te));
	free(perm);
	qsort(tr, nt, sizeof(*tr), cmp_u32);
	qsort(te, n - nt, sizeof(*te), cmp_u32);
	*out_train = tr;
	*ntrain = nt;
	*out_test = te;
	*ntest = n - nt;
	return 0;
}


/* ---- trainer state ---- */

typedef struct modadd_data {
	uint32_t *train, *test; /* (ntrain), (ntest) sorted pair indices */
	size_t ntrain, ntest;
	uint32_t *order;        /* (ntrain) the current epoch's permutation (mini-batch) */
	int64_t order_epoch;    /* -1 before the first */
} modadd_data;

static void modadd_data_free(void *data)
{
	modadd_data *d = data;

	if (!d)
		return;
	free(d->train);
	free(d->test);
	free(d->order);
	free(d);
}

static int modadd_data_init(mb_zoo_ctx *c, mb_error *err)
{
	const mb_zoo_recipe *r = c->r;
	modadd_data *d = calloc(1, sizeof(*d));
	int error;

	if (!d)
		return mb_error_oom(err, "modadd data", sizeof(*d));
	d->order_epoch = -1;
	error = mb_zoo_modadd_split(&d->train, &d->ntrain, &d->test, &d->ntest, r->p,
				    r->train_frac, r->seed, err);
	if (error < 0)
		goto cleanup;
	d->order = malloc(d->ntrain * sizeof(*d->order));
	if (!d->order) {
		error = mb_error_oom(err, "data order", d->ntrain * sizeof(*d->order));
		goto cleanup;
	}
	/* Full batch: every train pair in one forward; evaluation uses the same
	 * batches. */
	c->max_batch = (int)d->ntrain;
	c->max_seq = 3;
	c->data = d;
	d = NULL;
cleanup:
	modadd_data_free(d);
	return error;
}

/* Fills tokens (B, 3) and targets (B, 1) for pairs[0..B). */
static void modadd_batch(mb_zoo_ctx *c, const uint32_t *pairs, int B)
{
	for (int b = 0; b < B; b++) {
		mb_zoo_modadd_tokens(c->tokens + 3 * b, c->r->p, pairs[b]);
		c->targets[b] = mb_zoo_modadd_target(c->r->p, pairs[b]);
	}
}

/* The train pairs of step s (1-based) and their count. */
static const uint32_t *modadd_step_pairs(mb_zoo_ctx *c, int64_t s, int *B)
{
	modadd_data *d = c->data;
	int64_t bs = c->r->batch_size;

	if (bs == 0) {
		*B = (int)d->ntrain;
		return d->train;
	}
	int64_t per_epoch = (int64_t)d->ntrain / bs;
	int64_t epoch = (s - 1) / per_epoch, k = (s - 1) % per_epoch;
	if (epoch != d->order_epoch) {
		mb_rng rng;
		memcpy(d->order, d->train, d->ntrain * sizeof(*d->order));
		mb_rng_init_named(&rng, c->r->seed, "modadd/order", (uint64_t)epoch);
		mb_rng_shuffle(&rng, d->order, d->ntrain, sizeof(*d->order));
		d->order_epoch = epoch;
	}
	*B = (int)bs;
	return d->order + k * bs;
}

static void modadd_train_batch(mb_zoo_ctx *c, int64_t s, mb_run *run)
{
	int B;
	const uint32_t *pairs = modadd_step_pairs(c, s, &B);

	modadd_batch(c, pairs, B);
	run->batch = B;
	run->seq = 3;
	run->logits = MB_LOGITS_LAST;
}

/* ---- evaluation and checks ---- */

enum { EV_TRAIN_LOSS, EV_TRAIN_ACC, EV_TEST_LOSS, EV_TEST_ACC, EV_COUNT };

_Static_assert(EV_COUNT <= MB_ZOO_EVAL_MAX, "mb_zoo_eval holds MB_ZOO_EVAL_MAX values");

static const mb_zoo_eval_field modadd_fields[EV_COUNT] = {
	[EV_TRAIN_LOSS] = {"train_loss", 0, NULL, "mean cross-entropy on the train pairs"},
	[EV_TRAIN_ACC] = {"train_acc", 0, NULL, "argmax accuracy on the train pairs"},
	[EV_TEST_LOSS] = {"test_loss", 0, NULL, "mean cross-entropy on the test pairs"},
	[EV_TEST_ACC] = {"test_acc", 0, "test acc %.3f", "argmax accuracy on the test pairs"},
};

/* Mean loss and accuracy of the model on pairs[0..n), in batches. */
static int modadd_eval_split(mb_zoo_ctx *c, const uint32_t *pairs, size_t n, double *loss,
			     double *acc, mb_error *err)
{
	double sum = 0;
	int64_t ok = 0;

	for (size_t at = 0; at < n; at += (size_t)c->max_batch) {
		int B = (int)(n - at < (size_t)c->max_batch ? n - at : (size_t)c->max_batch);
		mb_run run = {.batch = B, .seq = 3, .tokens = c->tokens, .logits = MB_LOGITS_LAST};
		modadd_batch(c, pairs + at, B);
		int error = mb_engine_forward(c->e, &run, err);
		if (error < 0)
			return error;
		for (int b = 0; b < B; b++) {
			int arg;
			sum += mb_logits_ce(&arg, mb_engine_logits_row(c->e, b, 0), c->V, c->targets[b],
					    MB_LOGITS_DETMATH);
			ok += arg == c->targets[b];
		}
	}
	*loss = sum / (double)n;
	*acc = (double)ok / (double)n;
	return 0;
}

static int modadd_eval(mb_zoo_ctx *c, mb_zoo_eval *ev, mb_error *err)
{
	modadd_data *d = c->data;
	int error = modadd_eval_split(c, d->train, d->ntrain, &ev->value[EV_TRAIN_LOSS],
				      &ev->value[EV_TRAIN_ACC], err);
	if (error == 0)
		error = modadd_eval_split(c, d->test, d->ntest, &ev->value[EV_TEST_LOSS],
					  &ev->value[EV_TEST_ACC], err);
	return error;
}

static void modadd_checks(mb_zoo_result *res, const mb_zoo_recipe *r, const mb_zoo_eval *evals,
			  size_t n)
{
	const mb_zoo_eval *f = &evals[n - 1];
	int64_t memorised = -1, grokked = -1;

	for (size_t i = 0; i < n; i++) {
		if (memorised < 0 && evals[i].value[EV_TRAIN_ACC] >= 0.99)
			memorised = evals[i].step;
		if (grokked < 0 && evals[i].value[EV_TEST_ACC] >= r->check_test_acc)
			grokked = evals[i].step;
	}
	int ok_test = f->value[EV_TEST_ACC] >= r->check_test_acc;
	/* Grokking, not plain generalisation: train accuracy was ~100% at an
	 * evaluation strictly before test accuracy got there. */
	int ok_gap = memorised >= 0 && grokked > memorised;
	res->checks_passed = ok_test && ok_gap;
	snprintf(res->checks, sizeof(res->checks),
		 "test accuracy %.4f >= %.2f: %s; train accuracy >= 0.99 from step %lld, "
		 "test accuracy >= %.2f from step %lld (grokking after memorisation): %s",
		 f->value[EV_TEST_ACC], r->check_test_acc, ok_test ? "pass" : "FAIL",
		 (long long)memorised, r->check_test_acc, (long long)grokked,
		 ok_gap ? "pass" : "FAIL");
}

const uint32_t *mb_zoo_trainer_train_pairs(const mb_zoo_trainer *t, size_t *n)
{
	const mb_zoo_ctx *c = mb_zoo_trainer_ctx(t);
	const modadd_data *d = c->data;

	*n = 0;
	if (c->r->ops != &mb_zoo_recipe_modadd)
		return NULL; /* another recipe's trainer: no pairs */
	*n = d->ntrain;
	return d->train;
}

static const char *const modadd_presets[] = {"fast", "paper", NULL};

const mb_zoo_recipe_ops mb_zoo_recipe_modadd = {
	.name = "modadd",
	.summary = "1-layer transformer on (a + b) mod p; groks (Nanda et al. 2023)",
	.presets = modadd_presets,
	.preset = modadd_preset,
	.check = modadd_check,
	.to_json = modadd_to_json,
	.token_name = modadd_token_name,
	.unk_token = modadd_unk_token,
	.bos_token = -1,
	.data_init = modadd_data_init,
	.data_free = modadd_data_free,
	.train_batch = modadd_train_batch,
	.eval_fields = modadd_fields,
	.n_eval_fields = EV_COUNT,
	.eval = modadd_eval,
	.checks = modadd_checks,
};
