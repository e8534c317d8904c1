/*
 * zoo.c: the recipe registry (zoo_registry.h), recipe lookup with presets,
 * the checks and JSON form of the fields every recipe shares, and the named
 * eval fields. Each recipe's own part is its table (zoo_int.h) in
 * src/train/zoo_<name>.c.
 */
#include <mechbench/zoo.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/logits.h>

#include "zoo_int.h"

static const mb_zoo_recipe_ops *const registry[] = {
#define MB_ZOO_RECIPE(id) &mb_zoo_recipe_##id,
#include "zoo_registry.h"
#undef MB_ZOO_RECIPE
};

#define NRECIPES (sizeof(registry) / sizeof(registry[0]))

size_t mb_zoo_recipe_count(void) { return NRECIPES; }
const char *mb_zoo_recipe_name(size_t i) { return i < NRECIPES ? registry[i]->name : NULL; }
const char *mb_zoo_recipe_summary(size_t i) { return i < NRECIPES ? registry[i]->summary : NULL; }
const char *const *mb_zoo_recipe_presets(size_t i) { return i < NRECIPES ? registry[i]->presets : NULL; }

/* The NULL-terminated names joined by ", " into buf (truncated). */
static const char *join_names(char *buf, size_t cap, const char *const *names)
{
	size_t len = 0;

	if (cap == 0)
		return buf;
	buf[0] = '\0';
	for (size_t i = 0; names[i] && len < cap; i++)
		len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", names[i]);
	return buf;
}

const char *mb_zoo_recipe_names(char *buf, size_t cap)
{
	const char *names[NRECIPES + 1];

	for (size_t i = 0; i < NRECIPES; i++)
		names[i] = registry[i]->name;
	names[NRECIPES] = NULL;
	return join_names(buf, cap, names);
}

int mb_zoo_recipe_get(mb_zoo_recipe *out, const char *name, const char *preset, uint64_t seed,
		      mb_error *err)
{
	const mb_zoo_recipe_ops *ops = NULL;
	char known[256];
	size_t k;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < NRECIPES && !ops; i++)
		if (strcmp(registry[i]->name, name) == 0)
			ops = registry[i];
	if (!ops)
		return mb_error_set(err, MB_ENOTFOUND, "zoo: unknown recipe '%s' (known: %s)", name,
				    mb_zoo_recipe_names(known, sizeof(known)));
	for (k = 0; ops->presets[k]; k++)
		if (strcmp(ops->presets[k], preset) == 0)
			break;
	if (!ops->presets[k])
		return mb_error_set(err, MB_ENOTFOUND, "zoo: recipe %s has no preset '%s' (known: %s)",
				    name, preset, join_names(known, sizeof(known), ops->presets));
	ops->preset(out, preset);
	snprintf(out->name, sizeof(out->name), "%s", name);
	snprintf(out->preset, sizeof(out->preset), "%s", preset);
	out->seed = seed;
	out->ops = ops;
	return mb_zoo_recipe_check(out, err);
}

int mb_zoo_recipe_check(const mb_zoo_recipe *r, mb_error *err)
{
	const char *n = r->name;

	if (!r->ops)
		return mb_error_set(err, MB_EINVALID, "recipe %s: no recipe table (use "
				    "mb_zoo_recipe_get)", n);
	if (r->n_layer < 1 || r->n_embd < 1 || r->n_head < 1 || r->vocab_size < 2 ||
	    r->n_positions < 1)
		return mb_error_set(err, MB_EINVALID,
				    "recipe %s: n_layer, n_embd, n_head, vocab_size and n_positions "
				    "must be positive (vocab_size >= 2)", n);
	if (r->n_embd % r->n_head != 0)
		return mb_error_set(err, MB_EINVALID,
				    "recipe %s: n_embd %d is not a multiple of n_head %d", n,
				    r->n_embd, r->n_head);
	if (!r->attn_only && r->n_inner < 1)
		return mb_error_set(err, MB_EINVALID, "recipe %s: n_inner must be positive", n);
	if (strcmp(r->activation, "relu") != 0 && strcmp(r->activation, "gelu_new") != 0 &&
	    strcmp(r->activation, "gelu") != 0)
		return mb_error_set(err, MB_EINVALID,
				    "recipe %s: activation '%s' (relu | gelu_new | gelu)", n,
				    r->activation);
	if (!(r->init_std > 0) || !isfinite(r->init_std))
		return mb_error_set(err, MB_EINVALID, "recipe %s: init_std must be > 0", n);
	if (mb_adamw_config_check(&r->adamw, err) < 0)
		return mb_error_prefix(err, "recipe %s", n);
	if (r->steps < 1 || r->warmup_steps < 0 || r->decay_steps < 0 || r->batch_size < 0 ||
	    r->eval_every < 1)
		return mb_error_set(err, MB_EINVALID,
				    "recipe %s: steps >= 1, warmup_steps >= 0, decay_steps >= 0, "
				    "batch_size >= 0 and eval_every >= 1 are required", n);
	if (!(r->clip_norm >= 0) || !isfinite(r->clip_norm))
		return mb_error_set(err, MB_EINVALID, "recipe %s: clip_norm must be >= 0", n);
	return r->ops->check(r, err);
}

json_t *mb_zoo_recipe_to_json(const mb_zoo_recipe *r)
{
	json_t *o = json_object();
	json_t *a = json_object();
	int bad = 0;

	if (!o || !a) {
		json_decref(o);
		json_decref(a);
		return NULL;
	}
	bad |= json_object_set_new(o, "name", json_string(r->name));
	bad |= json_object_set_new(o, "preset", json_string(r->preset));
	bad |= json_object_set_new(o, "task", json_string(r->ops->name));
	bad |= json_object_set_new(o, "seed", json_integer((json_int_t)r->seed));
	bad |= json_object_set_new(o, "n_layer", json_integer(r->n_layer));
	bad |= json_object_set_new(o, "n_embd", json_integer(r->n_embd));
	bad |= json_object_set_new(o, "n_head", json_integer(r->n_head));
	bad |= json_object_set_new(o, "n_inner", json_integer(r->n_inner));
	bad |= json_object_set_new(o, "vocab_size", json_integer(r->vocab_size));
	bad |= json_object_set_new(o, "n_positions", json_integer(r->n_positions));
	bad |= json_object_set_new(o, "attn_only", json_boolean(r->attn_only));
	bad |= json_object_set_new(o, "normalization_type",
				   json_string(r->layer_norm ? "LN" : "none"));
	bad |= json_object_set_new(o, "tie_word_embeddings", json_boolean(r->tie_word_embeddings));
	bad |= json_object_set_new(o, "activation_function", json_string(r->activation));
	bad |= json_object_set_new(o, "init_std", json_real(r->init_std));
	bad |= json_object_set_new(a, "lr", json_real(r->adamw.lr));
	bad |= json_object_set_new(a, "beta1", json_real(r->adamw.beta1));
	bad |= json_object_set_new(a, "beta2", json_real(r->adamw.beta2));
	bad |= json_object_set_new(a, "eps", json_real(r->adamw.eps));
	bad |= json_object_set_new(a, "weight_decay", json_real(r->adamw.weight_decay));
	bad |= json_object_set_new(o, "adamw", a);
	bad |= json_object_set_new(o, "warmup_steps", json_integer(r->warmup_steps));
	if (r->decay_steps > 0) /* absent from the recipes without a decay */
		bad |= json_object_set_new(o, "decay_steps", json_integer(r->decay_steps));
	bad |= json_object_set_new(o, "clip_norm", json_real(r->clip_norm));
	bad |= json_object_set_new(o, "steps", json_integer(r->steps));
	bad |= json_object_set_new(o, "batch_size", json_integer(r->batch_size));
	bad |= json_object_set_new(o, "eval_every", json_integer(r->eval_every));
	bad |= r->ops->to_json(o, r);
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int mb_zoo_lm_loss(double *out, mb_zoo_ctx *c, int rows, mb_error *err)
{
	const int T = c->r->n_positions;
	mb_run run = {.batch = rows, .seq = T, .tokens = c->tokens, .logits = MB_LOGITS_ALL};
	double loss = 0;
	int64_t n = 0;
	int error = mb_engine_forward(c->e, &run, err);

	if (error < 0)
		return error;
	for (int b = 0; b < rows; b++)
		for (int i = 0; i < T - 1; i++) {
			loss += mb_logits_ce(NULL, mb_engine_logits_row(c->e, b, i), c->V,
					     c->targets[(size_t)b * T + i], MB_LOGITS_DETMATH);
			n++;
		}
	*out = loss / (double)n;
	return 0;
}

const mb_zoo_eval_field *mb_zoo_eval_fields(const mb_zoo_recipe *r, size_t *n)
{
	*n = r->ops->n_eval_fields;
	return r->ops->eval_fields;
}

double mb_zoo_eval_get(const mb_zoo_recipe *r, const mb_zoo_eval *ev, const char *name)
{
	for (size_t i = 0; i < r->ops->n_eval_fields; i++)
		if (strcmp(r->ops->eval_fields[i].name, name) == 0)
			return ev->value[i];
	return NAN;
}
