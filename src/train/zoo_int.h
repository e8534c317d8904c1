/*
 * zoo_int.h: the table of operations of one zoo recipe (private to
 * src/train). Everything the registry, the trainer and the CLI need to know
 * about a recipe is here; nothing else in the zoo looks at which recipe it
 * runs.
 *
 * Legend: B batch, T positions (n_positions), V vocab.
 *
 * Adding a recipe: write src/train/zoo_<name>.c defining
 * `const mb_zoo_recipe_ops mb_zoo_recipe_<name>` and add one line
 * MB_ZOO_RECIPE(<name>) to zoo_registry.h. Its own numeric fields live in
 * mb_zoo_recipe (zoo.h), read only by its table.
 *
 * Calling order (trainer.c): preset (mb_zoo_recipe_get), check, data_init
 * once per trainer, then per step train_batch, and eval at step 0, every
 * eval_every steps and the last; checks once after the last step; data_free.
 * The order of the ops' random draws and of their sums is part of each
 * recipe's definition: the committed zoo (zoo verify) fixes its bits.
 * Evaluations take cross-entropy from the logits toolkit (logits.h) with
 * MB_LOGITS_DETMATH, so their values do not depend on the CPU either.
 */
#ifndef MECHBENCH_TRAIN_ZOO_INT_H
#define MECHBENCH_TRAIN_ZOO_INT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <mechbench/engine.h>
#include <mechbench/error.h>
#include <mechbench/zoo.h>

/* What a recipe's data ops work with: the trainer's engine (weights being
 * trained, activations kept) and its batch buffers. */
typedef struct mb_zoo_ctx {
	const mb_zoo_recipe *r;
	mb_engine *e;     /* sized (max_batch, max_seq) */
	int V;            /* vocab (r->vocab_size) */
	int max_batch, max_seq;
	int32_t *tokens;  /* (max_batch, max_seq) */
	int32_t *targets; /* (max_batch, max_seq): the trained token of each row, -1 = none
			   * (mb_backward_xent; rows as the batch's logits mode reads them) */
	void *data;       /* the recipe's own state (data_init) */
} mb_zoo_ctx;

struct mb_zoo_recipe_ops {
	const char *name;           /* recipe name; training_state.json recipe "task" */
	const char *summary;        /* one line for `zoo list` and the usage text */
	const char *const *presets; /* NULL-terminated; the first is the default */

	/* Fills every field of r but name, preset, seed and ops for preset
	 * (one of presets); r is zeroed before. */
	void (*preset)(mb_zoo_recipe *r, const char *preset);
	/* Checks the recipe's own fields (the common ones are checked before);
	 * MB_EINVALID naming the field, prefixed "recipe NAME: ". */
	int (*check)(const mb_zoo_recipe *r, mb_error *err);
	/* Adds the recipe's own fields to o (training_state.json "recipe");
	 * nonzero on allocation failure. */
	int (*to_json)(json_t *o, const mb_zoo_recipe *r);

	/* Vocabulary (tokenizer.json, config.json): the name of token id (fits
	 * 16 bytes), the token the tokenizer's unknown word maps to, and the BOS
	 * token (-1: none; when >= 0 it is also the one special token and
	 * config.json's bos/eos_token_id). */
	void (*token_name)(char out[16], const mb_zoo_recipe *r, int id);
	int (*unk_token)(const mb_zoo_recipe *r);
	int bos_token;

	/* The recipe's data state (splits, orders, segment records): allocates
	 * c->data and sets c->max_batch and c->max_seq (the engine and batch
	 * buffers are sized from them after). */
	int (*data_init)(mb_zoo_ctx *c, mb_error *err);
	void (*data_free)(void *data);
	/* Fills c->tokens and c->targets with the batch of optimizer step s
	 * (1-based) and sets run->batch, run->seq and run->logits (run->tokens
	 * is c->tokens). A pure function of (recipe, s) however it is called. */
	void (*train_batch)(mb_zoo_ctx *c, int64_t s, mb_run *run);

	/* Evaluation of the current weights into ev->value, one value per eval
	 * field; may overwrite the batch buffers and the engine's activations. */
	const mb_zoo_eval_field *eval_fields;
	size_t n_eval_fields;
	int (*eval)(mb_zoo_ctx *c, mb_zoo_eval *ev, mb_error *err);

	/* The post-training checks over every evaluation (evals[n - 1] is the
	 * final one): sets res->checks_passed and res->checks (one "; "-separated
	 * line). */
	void (*checks)(mb_zoo_result *res, const mb_zoo_recipe *r, const mb_zoo_eval *evals,
		       size_t n);
};

/* The registry (zoo_registry.h): one table per recipe. */
#define MB_ZOO_RECIPE(id) extern const mb_zoo_recipe_ops mb_zoo_recipe_##id;
#include "zoo_registry.h"
#undef MB_ZOO_RECIPE

/* The data ops' context of trainer t (modadd's train pairs accessor). */
const mb_zoo_ctx *mb_zoo_trainer_ctx(const mb_zoo_trainer *t);

/* A language-model evaluation: the mean next-token cross-entropy
 * (MB_LOGITS_DETMATH) of the first rows rows of c->tokens (T =
 * c->r->n_positions tokens each) against c->targets at positions 0..T-2,
 * summed row by row, position by position. One forward (MB_LOGITS_ALL);
 * overwrites the engine's activations. */
int mb_zoo_lm_loss(double *out, mb_zoo_ctx *c, int rows, mb_error *err);

#endif
