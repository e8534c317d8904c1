/*
 * modadd.c: the modular-addition (grokking) task.
 *
 * Legend: P modulus, V vocab (P + 1), D d_model, M d_mlp, N = P^2 pairs,
 * K = (P - 1) / 2 frequencies, S key frequencies.
 *
 * Items (generate, params {"p": odd int, "train_frac": (0, 1)}, seed): all
 * P^2 pairs (a, b) in pair order i = a P + b, tokens "a b =" (zoo.h), answer
 * c = (a + b) mod P. The train/test split is the zoo's own
 * (mb_zoo_modadd_split with the same seed and fraction), so a dataset built
 * with a recipe's seed and train_frac holds exactly the pairs that recipe
 * trained on under "train/...". Input {"a", "b", "split": "train"|"test"};
 * stratum "<split>/wrap" when a + b >= P (the sum wraps around) else
 * "<split>/nowrap"; cluster "c=<answer>" (items that share an answer).
 *
 * Model: any checkpoint with vocab P + 1 ('=' is token P), at least 3
 * positions and an MLP (the last layer's neurons are analysed). open runs
 * the whole P x P grid once (batch invariant engine forwards, logits at the
 * last position, the last layer's hook_post there), and run reads each
 * item's row of that grid: the values of an item never depend on the others.
 *
 * Key frequencies (open): from the Fourier norms of the neuron-to-logit map
 * W_L = W_out W_U^T restricted to the P answer logits (M, P), transformed
 * over the answer c (fourier.h: the shortest set of frequencies holding 90% of
 * the non-constant squared norm), or given by the run param
 * "key_frequencies" (drift uses the final model's, as Nanda et al. do).
 *
 * Metrics (each @1). Losses are cross-entropies over the P answer logits
 * (Nanda et al. 2023 use logits[:, -1, :-1]; the zoo's training loss also
 * counts the '=' logit, so the two differ slightly).
 *   modadd.loss             ratio, lower:  -log softmax(l)[c]
 *   modadd.correct          binary, higher: argmax l == c
 *   modadd.restricted_loss  ratio, lower:  loss of l projected onto the
 *       constant and the key frequencies' cos/sin directions over c (Nanda
 *       et al. 2023, section 5.1 "restricted loss", applied per item to the
 *       output space: the logits of a Fourier-multiplication circuit are
 *       sum_k a_k cos(w_k (a + b - c)), which lies in that span for each item)
 *   modadd.excluded_loss    ratio, higher: loss of l with the key
 *       frequencies' cos/sin components removed (section 5.1 "excluded loss")
 *   modadd.control_loss@2   ratio, lower:  loss of l with S random non-key
 *       frequencies removed, each drawn with probability proportional to its
 *       Fourier energy in W_L (mb_fourier_control_frequencies; Philox stream
 *       "modadd/control", seed control_seed, index = mb_item_key_index of the
 *       item's content key: a fresh draw per item, the same in every run).
 *       Why energy-weighted (version 2): version 1 drew the S frequencies
 *       uniformly from the non-key ones, and in a grokked model those carry
 *       ~no energy (the zoo's key set holds 99.5% of W_L's), so it moved the
 *       loss by ~4e-8 and could not fail. Nanda et al. 2023 (section 5.1, the
 *       key frequencies and the restricted / excluded losses) claim that the
 *       key frequencies ARE the mechanism and everything else is noise; the
 *       control must be able to catch a claim that left part of the
 *       mechanism out. A set matched in total energy to the key set cannot
 *       be made of non-key frequencies in a sparse model (they hold 0.5%),
 *       and one allowed to take key frequencies just repeats the necessity
 *       test; drawing S non-key frequencies by energy instead removes the
 *       strongest non-key frequencies most often, so a frequency outside the
 *       claimed set that carries the answer is removed with probability ~ its
 *       energy share, not 1 / (K - S). It fails when the key set misses part
 *       of the mechanism (test_modadd: the zoo model, keys {2, 22, 27}, given
 *       only {27}: 0.67 nats [0.63, 0.70], where version 1 expected 0.006)
 *       and passes when the claim is complete (-3e-8 [-1.3e-7, 7.6e-8]).
 *   modadd.sufficiency_gap  continuous, lower:  restricted_loss - loss
 *   modadd.necessity_effect continuous, higher: excluded_loss - loss
 *   modadd.control_effect@2 continuous, lower:  control_loss - loss (version 2
 *       with control_loss@2)
 * Model-level quantities, deterministic functions of the weights, written as
 * the same value on every item (their CI is the point; the gate compares
 * them exactly like any item value):
 *   modadd.key_freq_count   continuous, lower: S (sparser is better; the
 *       suite bounds it above, the tests also below)
 *   modadd.gini_embed       continuous, higher: Gini of the P Fourier
 *       component norms of W_E's rows 0..P-1 (section 5.1)
 *   modadd.gini_unembed     continuous, higher: Gini of the P component
 *       norms of W_L over c (section 5.1, W_L = W_out W_U)
 *   modadd.neuron_frac      continuous, higher: fraction of the last layer's
 *       neurons with >= 85% of their variance over the grid explained by one
 *       frequency (section 5.2 / appendix; fourier.h)
 *   modadd.weight_norm      continuous, lower: sum of squared weights of
 *       every parameter (section 5.1 "total sum of squared weights")
 */
#include <mechbench/task.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/effect.h>
#include <mechbench/engine.h>
#include <mechbench/figure.h>
#include <mechbench/fourier.h>
#include <mechbench/model.h>
#include <mechbench/rng.h>
#include <mechbench/zoo.h>

#define MA_ENERGY 0.9          /* key-frequency rule, fourier.h */
#define MA_NEURON_SHARE 0.85   /* Nanda et al. 2023 */
#define MA_BATCH 256           /* grid forward batch */

enum {
	MA_LOSS, MA_CORRECT, MA_RESTRICTED, MA_EXCLUDED, MA_CONTROL,
	MA_SUFF, MA_NEC, MA_CTRL_EFFECT,
	MA_NKEY, MA_GINI_E, MA_GINI_U, MA_NEURON, MA_WNORM,
	MA_NMETRICS
};

static const mb_metric_def ma_metrics[MA_NMETRICS] = {
	{"modadd.loss", 1, MB_METRIC_RATIO, MB_LOWER_IS_BETTER,
	 "cross-entropy over the P answer logits at '=' (Nanda et al. 2023)"},
	{"modadd.correct", 1, MB_METRIC_BINARY, MB_HIGHER_IS_BETTER,
	 "1 when the argmax answer logit is (a + b) mod P"},
	{"modadd.restricted_loss", 1, MB_METRIC_RATIO, MB_LOWER_IS_BETTER,
	 "loss with only the key frequencies' logit components (Nanda et al. 2023, 5.1)"},
	{"modadd.excluded_loss", 1, MB_METRIC_RATIO, MB_HIGHER_IS_BETTER,
	 "loss with the key frequencies' logit components removed (Nanda et al. 2023, 5.1)"},
	{"modadd.control_loss", 2, MB_METRIC_RATIO, MB_LOWER_IS_BETTER,
	 "loss with as many non-key frequencies removed, drawn by Fourier energy (control)"},
	{"modadd.sufficiency_gap", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "restricted_loss - loss, paired per item (sufficiency)"},
	{"modadd.necessity_effect", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "excluded_loss - loss, paired per item (necessity)"},
	{"modadd.control_effect", 2, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "control_loss - loss, paired per item (energy-weighted random-frequency control)"},
	{"modadd.key_freq_count", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "number of key frequencies of W_out W_U (90% of its Fourier energy; model-level)"},
	{"modadd.gini_embed", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "Gini of the Fourier component norms of W_E (Nanda et al. 2023, 5.1; model-level)"},
	{"modadd.gini_unembed", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "Gini of the Fourier component norms of W_out W_U (Nanda et al. 2023, 5.1; model-level)"},
	{"modadd.neuron_frac", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "fraction of neurons >= 85% explained by one frequency (Nanda et al. 2023, 5.2)"},
	{"modadd.weight_norm", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "sum of squared weights (Nanda et al. 2023, 5.1; model-level)"},
};

/* The paired effects, declared as data (task.h). */
static const mb_metric_diff ma_derived[] = {
	{"modadd.sufficiency_gap", "modadd.restricted_loss", "modadd.loss"},
	{"modadd.necessity_effect", "modadd.excluded_loss", "modadd.loss"},
	{"modadd.control_effect", "modadd.control_loss", "modadd.loss"},
};

extern const mb_task mb_task_modadd;

typedef struct ma_state {
	int p;
	float *logits;      /* (N, P) answer logits at '=' */
	double *basis;      /* (P, P) fourier.h */
	int key[MB_FOURIER_MAX_P / 2]; /* (S) ascending */
	int nkey;
	int key_given;      /* 1: from params */
	uint64_t control_seed;
	double comp_embed[MB_FOURIER_MAX_P];        /* (P) W_E component norms */
	double freq_embed[MB_FOURIER_MAX_P / 2 + 1]; /* (K + 1) */
	double comp_unembed[MB_FOURIER_MAX_P];      /* (P) W_L component norms */
	double freq_unembed[MB_FOURIER_MAX_P / 2 + 1];
	double model_level[5]; /* key count, gini_e, gini_u, neuron frac, weight norm */
} ma_state;

/* ---- generate ---------------------------------------------------------- */

static int ma_gen_params(const json_t *params, int *p, double *frac, mb_error *err)
{
	json_t *v;
	const char *key;

	*p = 59;
	*frac = 0.5;
	if (!params)
		return 0;
	if (!json_is_object(params))
		return mb_error_set(err, MB_EINVALID, "params: expected an object");
	json_object_foreach((json_t *)params, key, v) {
		if (strcmp(key, "p") == 0) {
			if (!json_is_integer(v) || json_integer_value(v) < 3 ||
			    json_integer_value(v) > MB_FOURIER_MAX_P || json_integer_value(v) % 2 == 0)
				return mb_error_set(err, MB_EINVALID, "params.p: expected an odd "
						    "integer in [3, %d]", MB_FOURIER_MAX_P);
			*p = (int)json_integer_value(v);
		} else if (strcmp(key, "train_frac") == 0) {
			if (!json_is_number(v) || !(json_number_value(v) > 0) ||
			    !(json_number_value(v) < 1))
				return mb_error_set(err, MB_EINVALID, "params.train_frac: expected a "
						    "number in (0, 1)");
			*frac = json_number_value(v);
		} else {
			return mb_error_set(err, MB_EINVALID, "params.%s: unknown field (modadd "
					    "takes p, train_frac)", key);
		}
	}
	return 0;
}

static int ma_generate(mb_item_list *out, uint64_t seed, const json_t *params, mb_error *err)
{
	uint32_t *train = NULL, *test = NULL;
	size_t ntrain = 0, ntest = 0;
	double frac;
	int p, error;

	if ((error = ma_gen_params(params, &p, &frac, err)) < 0)
		return error;
	error = mb_zoo_modadd_split(&train, &ntrain, &test, &ntest, p, frac, seed, err);
	if (error < 0)
		return error;
	/* items in pair order, each tagged with its split */
	for (size_t i = 0, it = 0, ie = 0; i < (size_t)p * (size_t)p; i++) {
		int is_train = it < ntrain && train[it] == i;
		int a = (int)(i / (size_t)p), b = (int)(i % (size_t)p);
		char stratum[32], cluster[32];
		json_t *input;

		if (is_train)
			it++;
		else {
			MB_ASSERT(ie < ntest && test[ie] == i);
			ie++;
		}
		snprintf(stratum, sizeof(stratum), "%s/%s", is_train ? "train" : "test",
			 a + b >= p ? "wrap" : "nowrap");
		snprintf(cluster, sizeof(cluster), "c=%d", (a + b) % p);
		input = json_pack("{si si ss}", "a", a, "b", b, "split", is_train ? "train" : "test");
		if (!input) {
			error = mb_error_oom(err, "modadd item", 0);
			goto cleanup;
		}
		if ((error = mb_item_list_add(out, stratum, cluster, input, err)) < 0)
			goto cleanup;
	}
cleanup:
	free(train);
	free(test);
	return error;
}

/* ---- params ------------------------------------------------------------ */

static int ma_check_params(const mb_json_doc *doc, const json_t *params, const char *at,
			   mb_error *err)
{
	static const char *const allowed[] = {"key_frequencies", "control_seed", NULL};
	json_t *keys;
	int64_t seed;
	int rc;

	if (!params)
		return 0;
	if (!json_is_object(params))
		return mb_json_field_error(doc, err, MB_EINVALID, at, "expected an object");
	if ((rc = mb_json_check_keys(doc, (json_t *)params, at, allowed, err)) < 0)
		return rc;
	if ((rc = mb_json_get_int(doc, (json_t *)params, at, "control_seed", 0, 0, INT64_MAX,
				  &seed, err)) < 0)
		return rc;
	keys = json_object_get(params, "key_frequencies");
	if (keys) {
		char field[256];
		mb_json_path_key(field, sizeof(field), at, "key_frequencies");
		if (!json_is_array(keys) || json_array_size(keys) < 1 ||
		    json_array_size(keys) > MB_FOURIER_MAX_P / 2)
			return mb_json_field_error(doc, err, MB_EINVALID, field,
						   "expected an array of 1 to %d frequencies",
						   MB_FOURIER_MAX_P / 2);
		for (size_t i = 0; i < json_array_size(keys); i++) {
			json_t *v = json_array_get(keys, i);
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > MB_FOURIER_MAX_P / 2) {
				char f2[300];
				mb_json_path_index(f2, sizeof(f2), field, i);
				return mb_json_field_error(doc, err, MB_EINVALID, f2,
							   "expected a frequency in [1, %d]",
							   MB_FOURIER_MAX_P / 2);
			}
			for (size_t j = 0; j < i; j++)
				if (json_integer_value(json_array_get(keys, j)) ==
				    json_integer_value(v)) {
					char f2[300];
					mb_json_path_index(f2, sizeof(f2), field, i);
					return mb_json_field_error(doc, err, MB_EINVALID, f2,
								   "duplicate frequency");
				}
		}
	}
	return 0;
}

/* ---- open: the grid forward and the model-level analyses --------------- */

/* Every pair's answer logits at '=' (st->logits) and the last layer's
 * hook_post there (acts (N, M)), in batch-invariant forwards. */
static int run_grid(ma_state *st, float *acts, const mb_model *m, mb_error *err)
{
	size_t n = (size_t)st->p * (size_t)st->p;
	int32_t *tokens = malloc(n * 3 * sizeof(int32_t)); /* (N, 3) */
	mb_engine_opts eo = {MA_BATCH, 3, 0};
	mb_hook_point hp = {MB_HOOK_MLP_POST, m->cfg.n_layer - 1};
	mb_engine *e = NULL;
	int error;

	if (!tokens)
		return mb_error_oom(err, "modadd grid", n * 3 * sizeof(int32_t));
	for (size_t i = 0; i < n; i++)
		mb_zoo_modadd_tokens(tokens + 3 * i, st->p, (uint32_t)i);
	if ((error = mb_engine_init(&e, &m->cfg, &m->w, &eo, err)) == 0)
		error = mb_effect_collect_last(acts, st->logits, st->p, e, tokens, n, 3, MA_BATCH,
					       &hp, err);
	mb_engine_free(e);
	free(tokens);
	return error;
}

/* W_L = W_out W_U^T over the answer logits: (M, P), row n column c. */
static void neuron_logit_map(float *out, const mb_model *m, int p)
{
	int D = m->cfg.d_model, M = m->cfg.d_mlp;
	const float *wout = m->w.proj_w + (size_t)(m->cfg.n_layer - 1) * (size_t)M * (size_t)D;

	for (int n = 0; n < M; n++)
		for (int c = 0; c < p; c++) {
			double v = 0;
			for (int d = 0; d < D; d++)
				v += (double)wout[(size_t)n * (size_t)D + (size_t)d] *
				     (double)m->w.unembed[(size_t)c * (size_t)D + (size_t)d];
			out[(size_t)n * (size_t)p + (size_t)c] = (float)v;
		}
}

static int ma_open(void **out, const char *model_dir, const json_t *params, mb_error *err)
{
	mb_model *m = NULL;
	ma_state *st = NULL;
	float *acts = NULL, *wl = NULL;
	json_t *keys, *cs;
	int p, error;

	*out = NULL;
	if ((error = mb_model_load(&m, model_dir, err)) < 0)
		return error;
	p = m->cfg.n_vocab - 1;
	if (p < 3 || p > MB_FOURIER_MAX_P || p % 2 == 0 || m->cfg.n_ctx < 3 || m->cfg.attn_only ||
	    m->cfg.d_mlp < 1) {
		error = mb_error_set(err, MB_EINVALID, "%s/config.json: modadd needs vocab_size "
				     "P + 1 with P odd in [3, %d], n_positions >= 3 and an MLP "
				     "(got vocab_size %d, n_positions %d, attn_only %d)",
				     model_dir, MB_FOURIER_MAX_P, m->cfg.n_vocab, m->cfg.n_ctx,
				     m->cfg.attn_only);
		goto cleanup;
	}
	st = calloc(1, sizeof(*st));
	if (!st) {
		error = mb_error_oom(err, "modadd state", sizeof(*st));
		goto cleanup;
	}
	st->p = p;
	st->logits = malloc((size_t)p * (size_t)p * (size_t)p * sizeof(float));
	st->basis = malloc((size_t)p * (size_t)p * sizeof(double));
	acts = malloc((size_t)p * (size_t)p * (size_t)m->cfg.d_mlp * sizeof(float));
	wl = malloc((size_t)m->cfg.d_mlp * (size_t)p * sizeof(float));
	if (!st->logits || !st->basis || !acts || !wl) {
		error = mb_error_oom(err, "modadd grid", (size_t)p * (size_t)p * (size_t)m->cfg.d_mlp *
				     sizeof(float));
		goto cleanup;
	}
	mb_fourier_basis(st->basis, p);
	if ((error = run_grid(st, acts, m, err)) < 0) {
		mb_error_prefix(err, "%s", model_dir);
		goto cleanup;
	}

	/* Fourier norms: W_E over its token rows, W_L over the answer c */
	mb_fourier_rows(st->comp_embed, st->freq_embed, st->basis, m->w.wte, p,
			       m->cfg.d_model, (size_t)m->cfg.d_model);
	neuron_logit_map(wl, m, p);
	/* over the answer c: element (c, n) of W_L^T is wl[n * p + c] */
	mb_fourier_rows_strided(st->comp_unembed, st->freq_unembed, st->basis, wl, p,
				m->cfg.d_mlp, 1, (size_t)p);

	keys = params ? json_object_get(params, "key_frequencies") : NULL;
	if (keys) {
		st->key_given = 1;
		st->nkey = (int)json_array_size(keys);
		for (int i = 0; i < st->nkey; i++) {
			st->key[i] = (int)json_integer_value(json_array_get(keys, (size_t)i));
			if (st->key[i] > (p - 1) / 2) {
				error = mb_error_set(err, MB_EINVALID, "params.key_frequencies[%d]: "
						     "%d is above this model's largest frequency %d",
						     i, st->key[i], (p - 1) / 2);
				goto cleanup;
			}
		}
	} else {
		st->nkey = mb_fourier_key_frequencies(st->key, st->freq_unembed, p, MA_ENERGY);
	}
	if (st->nkey < 1 || 2 * st->nkey > (p - 1) / 2) {
		error = mb_error_set(err, MB_EINVALID, "%s: %d key frequencies of %d: the random "
				     "control needs 1 to %d, so that as many non-key ones remain",
				     model_dir, st->nkey, (p - 1) / 2, (p - 1) / 4);
		goto cleanup;
	}
	cs = params ? json_object_get(params, "control_seed") : NULL;
	st->control_seed = cs ? (uint64_t)json_integer_value(cs) : 0;

	st->model_level[0] = st->nkey;
	st->model_level[1] = mb_fourier_gini(st->comp_embed, (size_t)p);
	st->model_level[2] = mb_fourier_gini(st->comp_unembed, (size_t)p);
	st->model_level[3] = mb_fourier_neuron_fraction(NULL, st->basis, acts,
						       (size_t)m->cfg.d_mlp, p, m->cfg.d_mlp,
						       MA_NEURON_SHARE);
	{
		double s = 0;
		for (size_t i = 0; i < m->n_params; i++)
			s += (double)m->params[i] * (double)m->params[i];
		st->model_level[4] = s;
	}
	*out = st;
	st = NULL;
cleanup:
	if (st) {
		free(st->logits);
		free(st->basis);
		free(st);
	}
	free(acts);
	free(wl);
	mb_model_free(m);
	return error;
}

static void ma_close(void *state)
{
	ma_state *st = state;

	if (!st)
		return;
	free(st->logits);
	free(st->basis);
	free(st);
}

/* ---- run --------------------------------------------------------------- */

static int ma_run(void *state, const mb_item *items, size_t n, double *values, mb_error *err)
{
	const ma_state *st = state;
	int p = st->p;

	for (size_t i = 0; i < n; i++) {
		json_t *ja = json_object_get(items[i].input, "a");
		json_t *jb = json_object_get(items[i].input, "b");
		double *v = values + i * MA_NMETRICS;
		int ctrl[MB_FOURIER_MAX_P / 2];
		const float *l;
		int a, b, c, arg;
		size_t pair;
		mb_rng r;

		if (!json_is_integer(ja) || !json_is_integer(jb) || json_integer_value(ja) < 0 ||
		    json_integer_value(ja) >= p || json_integer_value(jb) < 0 ||
		    json_integer_value(jb) >= p)
			return mb_error_set(err, MB_EINVALID, "item %s: expected integers a and b "
					    "in [0, %d) for this model (P = %d)", items[i].key, p, p);
		a = (int)json_integer_value(ja);
		b = (int)json_integer_value(jb);
		c = (a + b) % p;
		pair = (size_t)a * (size_t)p + (size_t)b;
		l = st->logits + pair * (size_t)p;

		/* the control: S non-key frequencies drawn by energy, a fresh draw
		 * per item from the item's own stream */
		mb_rng_init_named(&r, st->control_seed, "modadd/control",
				  mb_item_key_index(items[i].key));
		mb_fourier_control_frequencies(ctrl, &r, st->freq_unembed, p, st->key, st->nkey,
					      st->nkey);

		v[MA_LOSS] = mb_fourier_projected_loss(&arg, st->basis, l, p, c, MB_FOURIER_FULL,
						      NULL, 0);
		v[MA_CORRECT] = arg == c ? 1.0 : 0.0;
		v[MA_RESTRICTED] = mb_fourier_projected_loss(NULL, st->basis, l, p, c,
							    MB_FOURIER_RESTRICT, st->key, st->nkey);
		v[MA_EXCLUDED] = mb_fourier_projected_loss(NULL, st->basis, l, p, c,
							  MB_FOURIER_EXCLUDE, st->key, st->nkey);
		v[MA_CONTROL] = mb_fourier_projected_loss(NULL, st->basis, l, p, c,
							 MB_FOURIER_EXCLUDE, ctrl, st->nkey);
		for (int q = 0; q < 5; q++)
			v[MA_NKEY + q] = st->model_level[q];
	}
	return 0;
}

/* ---- figures ------------------------------------------------------------ */

/*
 * Figures (task.h's optional hook):
 *   modadd.spectrum_unembed  stem: the Fourier norm of W_out W_U (over the
 *                            answer c) at each frequency k = 1..K; the title
 *                            lists the key frequencies
 *   modadd.spectrum_embed    stem: the same for W_E over its token rows
 *   modadd.loss_by_stratum   heatmap: mean full / restricted / excluded /
 *                            control loss (columns) per stratum (rows)
 */
static int ma_figures(void *state, const mb_item *items, size_t n, const double *values,
		      mb_figure_list *out, mb_error *err)
{
	static const char *const strata[4] = {"train/nowrap", "train/wrap", "test/nowrap",
					      "test/wrap"};
	static const char *const cols[4] = {"full", "restricted", "excluded", "control"};
	const ma_state *st = state;
	int K = (st->p - 1) / 2, error;
	double x[MB_FOURIER_MAX_P / 2];
	double sum[4][4] = {{0}};
	size_t count[4] = {0};
	char title[512];
	size_t len;
	mb_figure *f;

	for (int k = 1; k <= K; k++)
		x[k - 1] = k;
	len = (size_t)snprintf(title, sizeof(title), "Fourier norms of W_out W_U by frequency "
			       "(key%s:", st->key_given ? ", given" : "");
	for (int q = 0; q < st->nkey && len < sizeof(title) - 16; q++)
		len += (size_t)snprintf(title + len, sizeof(title) - len, "%s %d", q ? "," : "",
					st->key[q]);
	snprintf(title + len, sizeof(title) - len, ")");
	for (int which = 0; which < 2; which++) {
		const double *fr = which ? st->freq_embed : st->freq_unembed;
		if ((error = mb_figure_list_add(out, &f, MB_FIGURE_STEM,
						which ? "modadd.spectrum_embed"
						      : "modadd.spectrum_unembed",
						1, (size_t)K, err)) < 0 ||
		    (error = mb_figure_set_text(f, which ? "Fourier norms of W_E by frequency"
							 : title,
						"frequency k", "norm", NULL, err)) < 0 ||
		    (error = mb_figure_set_x(f, x, err)) < 0)
			return error;
		for (int k = 1; k <= K; k++)
			f->values[k - 1] = fr[k];
	}
	for (size_t i = 0; i < n; i++)
		for (int s = 0; s < 4; s++)
			if (strcmp(items[i].stratum, strata[s]) == 0) {
				for (int c = 0; c < 4; c++)
					sum[s][c] += values[i * MA_NMETRICS + (size_t)(c ? MA_RESTRICTED +
										     c - 1 : MA_LOSS)];
				count[s]++;
			}
	if ((error = mb_figure_list_add(out, &f, MB_FIGURE_HEATMAP, "modadd.loss_by_stratum", 4,
					4, err)) < 0 ||
	    (error = mb_figure_set_text(f, "Mean loss by stratum: full and with the key frequencies "
					"kept, removed, or random ones removed", "logits",
					"stratum", "mean loss", err)) < 0)
		return error;
	for (int s = 0; s < 4; s++) {
		if ((error = mb_figure_set_row_label(f, (size_t)s, strata[s], err)) < 0 ||
		    (error = mb_figure_set_col_label(f, (size_t)s, cols[s], err)) < 0)
			return error;
		for (int c = 0; c < 4; c++)
			f->values[s * 4 + c] = count[s] ? sum[s][c] / (double)count[s] : NAN;
	}
	return 0;
}

const mb_task mb_task_modadd = {
	.name = "modadd",
	.version = 1,
	.summary = "modular addition (grokking): losses, Fourier key frequencies, restricted/"
		   "excluded loss with a random-frequency control (Nanda et al. 2023)",
	.metrics = ma_metrics,
	.n_metrics = MA_NMETRICS,
	.batch = 64,
	.parallel_inside = 0,
	.generate = ma_generate,
	.check_params = ma_check_params,
	.open = ma_open,
	.close = ma_close,
	.run = ma_run,
	.figures = ma_figures,
	.derived = ma_derived,
	.n_derived = sizeof(ma_derived) / sizeof(ma_derived[0]),
};
