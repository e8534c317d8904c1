/*
 * zoo.c: the recipe registry, presets, recipe checks and JSON form, and the
 * data generators of modular addition and induction.
 *
 * Legend: T positions, V vocab, P modulus.
 */
#include <mechbench/zoo.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/rng.h>

typedef struct recipe_entry {
	const char *name;
	const char *summary;
	const char *const *presets;
} recipe_entry;

static const char *const modadd_presets[] = {"fast", "paper", NULL};
static const char *const induction_presets[] = {"fast", NULL};

static const recipe_entry recipes[] = {
	{"modadd", "1-layer transformer on (a + b) mod p; groks (Nanda et al. 2023)",
	 modadd_presets},
	{"induction", "2-layer attention-only transformer on sequences with repeated segments",
	 induction_presets},
};

#define NRECIPES (sizeof(recipes) / sizeof(recipes[0]))

size_t mb_zoo_recipe_count(void) { return NRECIPES; }
const char *mb_zoo_recipe_name(size_t i) { return i < NRECIPES ? recipes[i].name : NULL; }
const char *mb_zoo_recipe_summary(size_t i) { return i < NRECIPES ? recipes[i].summary : NULL; }
const char *const *mb_zoo_recipe_presets(size_t i) { return i < NRECIPES ? recipes[i].presets : NULL; }

static void set_str(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src);
}

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
 * (3,481 pairs, 1,740 train): train accuracy reaches ~100% by step ~200 and
 * test accuracy follows from step ~1000 to ~1700 (PyTorch prototype of the
 * same recipe), so the checkpoint series shows the memorisation plateau and
 * the grokking transition. With 40% it took over 1,500 steps to start; with
 * 60% test accuracy followed train accuracy almost at once.
 */
static void modadd_preset(mb_zoo_recipe *r, int paper)
{
	r->task = MB_ZOO_MODADD;
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
	set_str(r->activation, sizeof(r->activation), "relu");
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

/*
 * induction, preset "fast": 2 attention-only layers, d_model 64, 4 heads of
 * 16, LayerNorm, untied, on sequences of 64 tokens ([BOS] + 63) from a
 * vocabulary of 128 with one repeated segment of 16..31 tokens; weights
 * N(0, 0.8 / sqrt(d_model)); AdamW lr 1e-3, betas (0.9, 0.98), weight decay
 * 0.01, 100 warmup steps, clipping at 1.0, 32 fresh sequences per step. The
 * induction phase change (a previous-token head in layer 0 composing with a
 * layer-1 head that attends to the token after the earlier occurrence) comes
 * after a plateau of ~1000 steps at the unigram loss (measured with a
 * PyTorch prototype of the same recipe: score 0.02 at step 1000, 0.73 at
 * 1300, 0.9 at 1700), inside the run.
 */
static void induction_preset(mb_zoo_recipe *r)
{
	r->task = MB_ZOO_INDUCTION;
	r->n_layer = 2;
	r->n_embd = 64;
	r->n_head = 4;
	r->n_inner = 0;
	r->vocab_size = 128;
	r->n_positions = 64;
	r->attn_only = 1;
	r->layer_norm = 1;
	r->tie_word_embeddings = 0;
	set_str(r->activation, sizeof(r->activation), "gelu_new");
	r->init_std = 0.8 / sqrt((double)r->n_embd);
	r->adamw.lr = 1e-3;
	r->adamw.beta1 = 0.9;
	r->adamw.beta2 = 0.98;
	r->adamw.eps = 1e-8;
	r->adamw.weight_decay = 0.01;
	r->warmup_steps = 100;
	r->clip_norm = 1.0;
	r->steps = 3000;
	r->batch_size = 32;
	r->eval_every = 50;
	r->seg_min = 16;
	r->seg_max = 31;
	r->check_induction_score = 0.5;
	r->check_loss_ratio = 0.25;
}

int mb_zoo_recipe_get(mb_zoo_recipe *out, const char *name, const char *preset, uint64_t seed,
		      mb_error *err)
{
	size_t i, k;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < NRECIPES; i++)
		if (strcmp(recipes[i].name, name) == 0)
			break;
	if (i == NRECIPES)
		return mb_error_set(err, MB_ENOTFOUND,
				    "zoo: unknown recipe '%s' (known: modadd, induction)", name);
	for (k = 0; recipes[i].presets[k]; k++)
		if (strcmp(recipes[i].presets[k], preset) == 0)
			break;
	if (!recipes[i].presets[k])
		return mb_error_set(err, MB_ENOTFOUND, "zoo: recipe %s has no preset '%s' (known: %s)",
				    name, preset,
				    i == 0 ? "fast, paper" : "fast");
	set_str(out->name, sizeof(out->name), name);
	set_str(out->preset, sizeof(out->preset), preset);
	out->seed = seed;
	if (i == 0)
		modadd_preset(out, strcmp(preset, "paper") == 0);
	else
		induction_preset(out);
	return mb_zoo_recipe_check(out, err);
}

int mb_zoo_recipe_check(const mb_zoo_recipe *r, mb_error *err)
{
	const char *n = r->name;

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
	if (r->steps < 1 || r->warmup_steps < 0 || r->batch_size < 0 || r->eval_every < 1)
		return mb_error_set(err, MB_EINVALID,
				    "recipe %s: steps >= 1, warmup_steps >= 0, batch_size >= 0 "
				    "and eval_every >= 1 are required", n);
	if (!(r->clip_norm >= 0) || !isfinite(r->clip_norm))
		return mb_error_set(err, MB_EINVALID, "recipe %s: clip_norm must be >= 0", n);
	if (r->task == MB_ZOO_MODADD) {
		if (r->p < 2 || r->p > 4096)
			return mb_error_set(err, MB_EINVALID, "recipe %s: p = %d must be in [2, 4096]",
					    n, r->p);
		if (r->vocab_size != r->p + 1 || r->n_positions != 3)
			return mb_error_set(err, MB_EINVALID,
					    "recipe %s: modadd needs vocab_size = p + 1 = %d and "
					    "n_positions = 3 (got %d, %d)",
					    n, r->p + 1, r->vocab_size, r->n_positions);
		if (!(r->train_frac > 0 && r->train_frac < 1))
			return mb_error_set(err, MB_EINVALID,
					    "recipe %s: train_frac = %g must be in (0, 1)", n,
					    r->train_frac);
		double ntrain = floor(r->train_frac * r->p * r->p + 0.5);
		if (ntrain < 1 || ntrain >= (double)r->p * r->p)
			return mb_error_set(err, MB_EINVALID,
					    "recipe %s: train_frac = %g leaves an empty train or test "
					    "split", n, r->train_frac);
		if (r->batch_size > ntrain)
			return mb_error_set(err, MB_EINVALID,
					    "recipe %s: batch_size %lld exceeds the %.0f train pairs", n,
					    (long long)r->batch_size, ntrain);
	} else if (r->task == MB_ZOO_INDUCTION) {
		if (r->batch_size < 1)
			return mb_error_set(err, MB_EINVALID,
					    "recipe %s: induction needs batch_size >= 1", n);
		if (r->seg_min < 2 || r->seg_max < r->seg_min)
			return mb_error_set(err, MB_EINVALID,
					    "recipe %s: need 2 <= seg_min <= seg_max (got %d, %d)", n,
					    r->seg_min, r->seg_max);
		if (2 * r->seg_max > r->n_positions - 1)
			return mb_error_set(err, MB_EINVALID,
					    "recipe %s: two segments of seg_max %d do not fit in "
					    "n_positions - 1 = %d", n, r->seg_max, r->n_positions - 1);
		/* All non-BOS tokens but the repeat are distinct. */
		if (r->n_positions - 1 - r->seg_min > r->vocab_size - 1)
			return mb_error_set(err, MB_EINVALID,
					    "recipe %s: vocab_size %d too small for %d distinct tokens "
					    "per sequence", n, r->vocab_size,
					    r->n_positions - 1 - r->seg_min);
	} else {
		return mb_error_set(err, MB_EINVALID, "recipe %s: unknown task %d", n, (int)r->task);
	}
	return 0;
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
	bad |= json_object_set_new(o, "task", json_string(r->task == MB_ZOO_MODADD ? "modadd"
										     : "induction"));
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
	bad |= json_object_set_new(o, "clip_norm", json_real(r->clip_norm));
	bad |= json_object_set_new(o, "steps", json_integer(r->steps));
	bad |= json_object_set_new(o, "batch_size", json_integer(r->batch_size));
	bad |= json_object_set_new(o, "eval_every", json_integer(r->eval_every));
	if (r->task == MB_ZOO_MODADD) {
		bad |= json_object_set_new(o, "p", json_integer(r->p));
		bad |= json_object_set_new(o, "train_frac", json_real(r->train_frac));
		bad |= json_object_set_new(o, "split_stream", json_string("modadd/split"));
		bad |= json_object_set_new(o, "check_test_acc", json_real(r->check_test_acc));
	} else {
		bad |= json_object_set_new(o, "seg_min", json_integer(r->seg_min));
		bad |= json_object_set_new(o, "seg_max", json_integer(r->seg_max));
		bad |= json_object_set_new(o, "check_induction_score",
					   json_real(r->check_induction_score));
		bad |= json_object_set_new(o, "check_loss_ratio", json_real(r->check_loss_ratio));
	}
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* ---- modular addition ---- */

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

/* ---- induction ---- */

/*
 * Layout of one sequence (T = n_positions): position 0 is [BOS] (token 0);
 * the other T - 1 positions hold a segment S of r tokens twice and T - 1 - 2r
 * background tokens, S and the background together drawn without
 * replacement from 1..V-1 (so nothing repeats but S). r is uniform in
 * [seg_min, seg_max]; the background is cut into three runs (before the
 * first S, between, after the second S) by two uniform cut points in
 * [0, T - 1 - 2r]:
 *     [BOS] bg[0..x) S bg[x..y) S bg[y..)
 * Draw order (fixed, part of the data definition): r, the distinct tokens by
 * a partial Fisher-Yates over 1..V-1 (S first), then the two cut points.
 */
void mb_zoo_induction_sequence(int32_t *out, mb_zoo_segment *seg, const mb_zoo_recipe *r,
			       const char *stream, uint64_t index)
{
	const int T = r->n_positions, V = r->vocab_size;
	int32_t pool[4096]; /* tokens 1..V-1; V <= 4097 is checked below */
	mb_rng rng;
	int len, need, nb, x, y, pos;

	MB_ASSERT(V - 1 <= 4096);
	mb_rng_init_named(&rng, r->seed, stream, index);
	len = r->seg_min + (int)mb_rng_range(&rng, (uint64_t)(r->seg_max - r->seg_min + 1));
	need = T - 1 - len;
	MB_ASSERT(need <= V - 1 && 2 * len <= T - 1);
	for (int i = 0; i < V - 1; i++)
		pool[i] = i + 1;
	for (int i = 0; i < need; i++) {
		int j = i + (int)mb_rng_range(&rng, (uint64_t)(V - 1 - i));
		int32_t t = pool[i];
		pool[i] = pool[j];
		pool[j] = t;
	}
	nb = T - 1 - 2 * len;
	x = (int)mb_rng_range(&rng, (uint64_t)nb + 1);
	y = (int)mb_rng_range(&rng, (uint64_t)nb + 1);
	if (x > y) {
		int t = x;
		x = y;
		y = t;
	}
	/* pool[0..len) is S, pool[len..need) the background. */
	const int32_t *S = pool, *bg = pool + len;
	pos = 0;
	out[pos++] = 0;
	for (int i = 0; i < x; i++)
		out[pos++] = bg[i];
	seg->first = pos;
	for (int i = 0; i < len; i++)
		out[pos++] = S[i];
	for (int i = x; i < y; i++)
		out[pos++] = bg[i];
	seg->second = pos;
	for (int i = 0; i < len; i++)
		out[pos++] = S[i];
	for (int i = y; i < nb; i++)
		out[pos++] = bg[i];
	seg->len = len;
	MB_ASSERT(pos == T);
}

void mb_zoo_repeated_tokens(int32_t *out, int len, int vocab_size, uint64_t seed,
			    uint64_t index)
{
	mb_rng rng;

	mb_rng_init_named(&rng, seed, "induction/repeated", index);
	out[0] = 0;
	for (int i = 0; i < len; i++) {
		out[1 + i] = 1 + (int32_t)mb_rng_range(&rng, (uint64_t)(vocab_size - 1));
		out[1 + len + i] = out[1 + i];
	}
}
