/*
 * induction.c: the induction task (TASKS.md "Induction"): induction heads on
 * repeated random tokens, their head scores, and the causal tests that back
 * the claim (pattern-preserving ablation against random heads of the same
 * layers, and path patching of the previous-token head into the induction
 * head's key input against its query and value inputs).
 *
 * Legend: B batch, T positions of a run, L layers, H heads, Dh d_head,
 * D d_model, V vocab, r |R| (the repeated segment), n = 2r + 1 tokens of a
 * prompt, K top_k heads.
 *
 * Items (generate). One item is a random segment R of r tokens and a control
 * segment C of r tokens: the repeated prompt is [BOS] R R, the control prompt
 * [BOS] R C (same length, nothing repeats on the induction diagonal:
 * C[i] != R[i]). Tokens are uniform (with replacement) over a token band
 * [lo, hi]; strata are |R| x band. Generator params:
 *   "lengths": [int, ...]   |R| strata, each in [2, 2047]      (default [10, 25, 50, 100])
 *   "n_per_stratum": int    items per stratum, [2, 100000]      (default 50)
 *   "bos": int              the [BOS] token id, >= 0            (default 0)
 *   "bands": [{"name", "lo", "hi"}, ...] token-id bands, lo < hi, none may
 *                           contain bos (default one band "all" = [1, 127]);
 *                           with known unigram frequencies a band is a
 *                           frequency band (e.g. GPT-2's BPE ids are close to
 *                           merge order, so id ranges are frequency bands).
 * Draws: stream "induction/items", index = stratum * 1000000 + item; R is
 * drawn first, then C (each C[i] redrawn while it equals R[i]).
 * Stratum names: "len=<r>" with one band, "len=<r>/<band>" with several;
 * the cluster is the stratum.
 *
 * Model-level analysis (open). A reference set of 32 repeated prompts
 * (r_ref = min(25, max_len), tokens uniform over [0, V) without bos, stream
 * "induction/reference" under the run seed) fixes, before any item is seen:
 * the head scores of every head (below, averaged over the reference set),
 * the receiver = the head of layer >= 1 with the largest induction score, the
 * top_k induction heads (largest induction scores in layers >= 1), the
 * sender = the head of a layer below the receiver with the largest
 * previous-token score, and the per-head mean of hook_z over the reference
 * set's valid positions (the value of mean ablation). Selecting heads on data
 * that is not the dataset keeps the per-item statistics free of selection
 * bias. The OV copying score of every head is computed from the weights.
 *
 * Head scores: induction, previous-token, duplicate-token and
 * prefix-matching on [BOS] R R, and the OV copying score from the weights,
 * as heads.h defines them (TransformerLens; Olsson et al. 2022).
 *
 * Per-item metrics (losses are mean cross-entropy in nats; rep1 over the
 * targets at positions 2..r, rep2 over r+2..2r, i.e. the r - 1 tokens of
 * each repeat after its first, which nothing in context predicts):
 *   induction.score@1           receiver's induction score on the item
 *   induction.score_vs_control@1 that minus the same diagonal's attention on
 *                               the control prompt (Olsson et al.: ~0 on
 *                               non-repeating text)
 *   induction.prev_score@1      sender's previous-token score on the item
 *   induction.loss_rep1@1, induction.loss_rep2@1  per-token loss on the first
 *                               and second repeat
 *   induction.loss_drop@1       rep1 - rep2 (the in-context loss drop)
 *   induction.ablate_top@1      rep2 loss with the top_k induction heads
 *                               ablated minus clean rep2 loss, attention
 *                               patterns of every head frozen to the clean
 *                               run's (pattern-preserving ablation)
 *   induction.ablate_random@1   the same for top_k random heads of the same
 *                               layers (not top heads), drawn per item from
 *                               stream "induction/random_heads" indexed by
 *                               mb_item_key_index(item key). As in
 *                               TransformerLens / Olsson et al., the pool is
 *                               the layer's other heads, with no induction-
 *                               score filter; a spec makes this a null
 *                               control by setting top_k to the number of
 *                               heads that score as induction heads (the
 *                               canonical entry: 3 of the zoo model's 8
 *                               layer-1 heads)
 *   induction.ablate_excess@1   ablate_top - ablate_random (paired)
 *   induction.kcomp_k@1, _q@1, _v@1  rep2 loss increase when the sender's
 *                               change under ablation reaches ONLY the
 *                               receiver's key (query, value) input: path
 *                               patching with delta = (ablated - clean)
 *                               sender output, i.e. (zbar - z) W_O[sender]
 *                               at every position (engine_spec.md's path
 *                               patching, with the sender ablated in the
 *                               "source" run). Why ablation and not a prompt
 *                               with the first repeat resampled: resampling
 *                               changes the sender's output only where the
 *                               tokens changed (the first repeat, i.e. the
 *                               keys), so the query control would be ~0 by
 *                               construction; ablating sends the same delta
 *                               into all three inputs at every position, so
 *                               the comparison measures which input reads
 *                               the sender (K-composition), not where the
 *                               corruption happened to be.
 *   induction.kcomp_k_over_q@1, induction.kcomp_k_over_v@1  kcomp_k minus the
 *                               control path's effect (paired)
 *
 * Run params: {"top_k": 1..16 (default 1), "ablation": "mean" | "zero"
 * (default "mean"), "bos": token id (default 0), "max_len": the largest |R|
 * a run accepts (default min(100, (n_positions - 1) / 2)), "seed": the
 * reference set's and random heads' seed (default 0)}.
 */
#include <mechbench/task.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/effect.h>
#include <mechbench/engine.h>
#include <mechbench/figure.h>
#include <mechbench/heads.h>
#include <mechbench/hooks.h>
#include <mechbench/interventions.h>
#include <mechbench/logits.h>
#include <mechbench/model.h>
#include <mechbench/rng.h>

#define IND_BATCH 8
#define IND_REF_ITEMS 32
#define IND_MAX_K 16
#define IND_MAX_BANDS 16
#define IND_MAX_LENGTHS 16

enum {
	M_SCORE,
	M_SCORE_VS_CONTROL,
	M_PREV_SCORE,
	M_LOSS_REP1,
	M_LOSS_REP2,
	M_LOSS_DROP,
	M_ABLATE_TOP,
	M_ABLATE_RANDOM,
	M_ABLATE_EXCESS,
	M_KCOMP_K,
	M_KCOMP_Q,
	M_KCOMP_V,
	M_KCOMP_K_OVER_Q,
	M_KCOMP_K_OVER_V,
	M_COUNT
};

static const mb_metric_def ind_metrics[M_COUNT] = {
	{"induction.score", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "receiver head's induction score: mean attention from the second repeat to the token "
	 "after the previous occurrence (TransformerLens; induction.c)"},
	{"induction.score_vs_control", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "induction score minus the same diagonal's attention on the non-repeating control "
	 "prompt (induction.c)"},
	{"induction.prev_score", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "sender head's previous-token score: mean attention to position q-1 (TransformerLens; "
	 "induction.c)"},
	{"induction.loss_rep1", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "mean per-token loss on the first repeat, its first token excluded (induction.c)"},
	{"induction.loss_rep2", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "mean per-token loss on the second repeat, its first token excluded (induction.c)"},
	{"induction.loss_drop", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "in-context loss drop: loss_rep1 - loss_rep2 (Olsson et al. 2022; induction.c)"},
	{"induction.ablate_top", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "second-repeat loss increase when the top_k induction heads are ablated with all "
	 "attention patterns frozen (pattern-preserving ablation; induction.c)"},
	{"induction.ablate_random", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "the same for top_k random heads of the same layers (control; induction.c)"},
	{"induction.ablate_excess", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "ablate_top - ablate_random, paired per item (induction.c)"},
	{"induction.kcomp_k", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "second-repeat loss increase when the previous-token head's ablation delta reaches "
	 "only the induction head's key input (path patching; induction.c)"},
	{"induction.kcomp_q", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "the same through the query input (control; induction.c)"},
	{"induction.kcomp_v", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "the same through the value input (control; induction.c)"},
	{"induction.kcomp_k_over_q", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "kcomp_k - kcomp_q, paired per item (induction.c)"},
	{"induction.kcomp_k_over_v", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "kcomp_k - kcomp_v, paired per item (induction.c)"},
};

extern const mb_task mb_task_induction;

/* The paired differences, declared as data (task.h; the runner and
 * mb_task_run computes them). */
static const mb_metric_diff ind_derived[] = {
	{"induction.loss_drop", "induction.loss_rep1", "induction.loss_rep2"},
	{"induction.ablate_excess", "induction.ablate_top", "induction.ablate_random"},
	{"induction.kcomp_k_over_q", "induction.kcomp_k", "induction.kcomp_q"},
	{"induction.kcomp_k_over_v", "induction.kcomp_k", "induction.kcomp_v"},
};

typedef struct ind_state {
	mb_model *model;
	mb_engine *engine; /* mutated by forwards: parallel_inside = 1 keeps run on one thread */
	int bos, top_k, mean_ablation, max_len, max_seq;
	uint64_t seed;
	double *scores;  /* (MB_HEADS_N_SCORES, L, H) reference-set head scores */
	double *copying; /* (L, H) OV eigenvalue positivity */
	float *zmean;    /* (L, H, Dh) mean hook_z over the reference set, or zeros */
	int recv_l, recv_h, send_l, send_h;
	int top_l[IND_MAX_K], top_h[IND_MAX_K];
	uint8_t *is_top; /* (L, H) */
} ind_state;

/* ---- generate ------------------------------------------------------------------ */

typedef struct ind_band {
	char name[32];
	int64_t lo, hi;
} ind_band;

static int gen_int(const json_t *params, const char *key, int64_t min, int64_t max, int64_t *out,
		   mb_error *err)
{
	json_t *v = params ? json_object_get(params, key) : NULL;

	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return mb_error_set(err, MB_EINVALID, "params.%s: expected an integer in [%lld, %lld]",
				    key, (long long)min, (long long)max);
	*out = json_integer_value(v);
	return 0;
}

static int ind_generate(mb_item_list *out, uint64_t seed, const json_t *params, mb_error *err)
{
	int64_t lengths[IND_MAX_LENGTHS] = {10, 25, 50, 100};
	size_t n_len = 4, n_band = 1;
	int64_t n_per = 50, bos = 0;
	ind_band bands[IND_MAX_BANDS] = {{"all", 1, 127}};
	int error;

	if (params && !json_is_object(params))
		return mb_error_set(err, MB_EINVALID, "params: expected an object");
	if (params) {
		const char *key;
		json_t *v;
		json_object_foreach((json_t *)params, key, v) {
			if (strcmp(key, "lengths") != 0 && strcmp(key, "n_per_stratum") != 0 &&
			    strcmp(key, "bos") != 0 && strcmp(key, "bands") != 0)
				return mb_error_set(err, MB_EINVALID,
						    "params.%s: unknown field (induction takes lengths, "
						    "n_per_stratum, bos, bands)", key);
		}
	}
	if ((error = gen_int(params, "n_per_stratum", 2, 100000, &n_per, err)) < 0 ||
	    (error = gen_int(params, "bos", 0, INT32_MAX, &bos, err)) < 0)
		return error;
	if (params && json_object_get(params, "lengths")) {
		json_t *a = json_object_get(params, "lengths");
		if (!json_is_array(a) || json_array_size(a) < 1 ||
		    json_array_size(a) > IND_MAX_LENGTHS)
			return mb_error_set(err, MB_EINVALID,
					    "params.lengths: expected 1 to %d integers",
					    IND_MAX_LENGTHS);
		n_len = json_array_size(a);
		for (size_t i = 0; i < n_len; i++) {
			json_t *v = json_array_get(a, i);
			if (!json_is_integer(v) || json_integer_value(v) < 2 ||
			    json_integer_value(v) > 2047)
				return mb_error_set(err, MB_EINVALID,
						    "params.lengths[%zu]: expected an integer in "
						    "[2, 2047]", i);
			lengths[i] = json_integer_value(v);
			for (size_t j = 0; j < i; j++)
				if (lengths[j] == lengths[i])
					return mb_error_set(err, MB_EINVALID,
							    "params.lengths[%zu]: %lld is listed "
							    "twice", i, (long long)lengths[i]);
		}
	}
	if (params && json_object_get(params, "bands")) {
		json_t *a = json_object_get(params, "bands");
		if (!json_is_array(a) || json_array_size(a) < 1 ||
		    json_array_size(a) > IND_MAX_BANDS)
			return mb_error_set(err, MB_EINVALID, "params.bands: expected 1 to %d "
					    "objects {\"name\", \"lo\", \"hi\"}", IND_MAX_BANDS);
		n_band = json_array_size(a);
		for (size_t i = 0; i < n_band; i++) {
			json_t *b = json_array_get(a, i);
			json_t *nm = json_object_get(b, "name"), *lo = json_object_get(b, "lo"),
			       *hi = json_object_get(b, "hi");
			if (!json_is_object(b) || json_object_size(b) != 3 || !json_is_string(nm) ||
			    !json_is_integer(lo) || !json_is_integer(hi) ||
			    json_string_length(nm) < 1 || json_string_length(nm) >= 32 ||
			    strpbrk(json_string_value(nm), "/= ") ||
			    json_integer_value(lo) < 0 ||
			    json_integer_value(hi) <= json_integer_value(lo) ||
			    json_integer_value(hi) > INT32_MAX)
				return mb_error_set(err, MB_EINVALID,
						    "params.bands[%zu]: expected {\"name\": 1-31 "
						    "chars without '/', '=' or spaces, \"lo\": int "
						    ">= 0, \"hi\": int > lo}", i);
			snprintf(bands[i].name, sizeof(bands[i].name), "%s", json_string_value(nm));
			bands[i].lo = json_integer_value(lo);
			bands[i].hi = json_integer_value(hi);
			for (size_t j = 0; j < i; j++)
				if (strcmp(bands[j].name, bands[i].name) == 0)
					return mb_error_set(err, MB_EINVALID,
							    "params.bands[%zu]: name '%s' is used "
							    "twice", i, bands[i].name);
		}
	}
	for (size_t i = 0; i < n_band; i++)
		if (bos >= bands[i].lo && bos <= bands[i].hi)
			return mb_error_set(err, MB_EINVALID,
					    "params.bands[%zu]: [%lld, %lld] contains the bos token "
					    "%lld", i, (long long)bands[i].lo, (long long)bands[i].hi,
					    (long long)bos);

	for (size_t li = 0; li < n_len; li++)
		for (size_t bi = 0; bi < n_band; bi++) {
			size_t s = li * n_band + bi;
			uint64_t width = (uint64_t)(bands[bi].hi - bands[bi].lo + 1);
			char stratum[64];

			if (n_band == 1)
				snprintf(stratum, sizeof(stratum), "len=%lld", (long long)lengths[li]);
			else
				snprintf(stratum, sizeof(stratum), "len=%lld/%s",
					 (long long)lengths[li], bands[bi].name);
			for (int64_t i = 0; i < n_per; i++) {
				int64_t r = lengths[li];
				int64_t R[2047];
				json_t *input = json_object(), *rep = json_array(), *ctl = json_array();
				mb_rng rng;

				if (!input || !rep || !ctl) {
					json_decref(input);
					json_decref(rep);
					json_decref(ctl);
					return mb_error_oom(err, "induction item", 0);
				}
				mb_rng_init_named(&rng, seed, "induction/items",
						  (uint64_t)s * 1000000u + (uint64_t)i);
				for (int64_t j = 0; j < r; j++) {
					R[j] = bands[bi].lo + (int64_t)mb_rng_range(&rng, width);
					json_array_append_new(rep, json_integer(R[j]));
				}
				for (int64_t j = 0; j < r; j++) {
					int64_t c;
					do
						c = bands[bi].lo + (int64_t)mb_rng_range(&rng, width);
					while (c == R[j]);
					json_array_append_new(ctl, json_integer(c));
				}
				json_object_set_new(input, "bos", json_integer(bos));
				json_object_set_new(input, "rep", rep);
				json_object_set_new(input, "ctl", ctl);
				error = mb_item_list_add(out, stratum, stratum, input, err);
				if (error < 0)
					return error;
			}
		}
	return 0;
}

/* ---- params -------------------------------------------------------------------- */

static int ind_check_params(const mb_json_doc *doc, const json_t *params, const char *at,
			    mb_error *err)
{
	static const char *const allowed[] = {"top_k", "ablation", "bos", "max_len", "seed",
					      NULL};
	int64_t v;
	const char *s = NULL;
	int rc;

	if (!params)
		return 0;
	if (!json_is_object(params))
		return mb_json_field_error(doc, err, MB_EINVALID, at, "expected an object");
	if ((rc = mb_json_check_keys(doc, (json_t *)params, at, allowed, err)) < 0 ||
	    (rc = mb_json_get_int(doc, (json_t *)params, at, "top_k", 0, 1, IND_MAX_K, &v, err)) <
		    0 ||
	    (rc = mb_json_get_int(doc, (json_t *)params, at, "bos", 0, 0, INT32_MAX, &v, err)) < 0 ||
	    (rc = mb_json_get_int(doc, (json_t *)params, at, "max_len", 0, 2, 2047, &v, err)) < 0 ||
	    (rc = mb_json_get_int(doc, (json_t *)params, at, "seed", 0, 0, INT64_MAX, &v, err)) <
		    0 ||
	    (rc = mb_json_get_string(doc, (json_t *)params, at, "ablation", 0, &s, err)) < 0)
		return rc;
	if (s && strcmp(s, "mean") != 0 && strcmp(s, "zero") != 0) {
		char field[256];
		mb_json_path_key(field, sizeof(field), at, "ablation");
		return mb_json_field_error(doc, err, MB_EINVALID, field,
					   "expected \"mean\" or \"zero\"");
	}
	return 0;
}

/* ---- scores -------------------------------------------------------------------- */

/* Mean cross-entropy (nats, double) of the targets at positions [t0, t1] of
 * item b of the last run (logits mode ALL), predicted from position t - 1. */
static double span_loss(const mb_engine *e, int b, const int32_t *tok, int t0, int t1, int V)
{
	double sum = 0;

	for (int t = t0; t <= t1; t++) {
		sum += mb_logits_ce(NULL, mb_engine_logits_row(e, b, t - 1), V, tok[t],
				    MB_LOGITS_LIBM);
	}
	return sum / (t1 - t0 + 1);
}

/* ---- open ---------------------------------------------------------------------- */

static int param_int(const json_t *params, const char *key, int64_t def)
{
	json_t *v = params ? json_object_get(params, key) : NULL;
	return v ? (int)json_integer_value(v) : (int)def;
}

static void ind_close(void *state)
{
	ind_state *st = state;

	if (!st)
		return;
	mb_engine_free(st->engine);
	mb_model_free(st->model);
	free(st->scores);
	free(st->copying);
	free(st->zmean);
	free(st->is_top);
	free(st);
}

/* Reference analysis: scores, head choices and z means (see the top). */
static int reference(ind_state *st, mb_error *err)
{
	const mb_engine_config *c = &st->model->cfg;
	int L = c->n_layer, H = c->n_head, Dh = c->d_head, V = c->n_vocab;
	int r = st->max_len < 25 ? st->max_len : 25, n = 2 * r + 1, rc = 0;
	int32_t *tok = malloc(sizeof(int32_t) * IND_BATCH * (size_t)n); /* (B, n) */
	double *zsum = calloc((size_t)L * H * Dh, sizeof(double));       /* (L, H, Dh) */
	long *count = calloc((size_t)L, sizeof(long));
	mb_effect *fx = NULL;

	if (!tok || !zsum || !count) {
		rc = mb_error_oom(err, "induction reference", 0);
		goto cleanup;
	}
	if ((rc = mb_effect_init(&fx, st->engine, NULL, NULL, err)) < 0)
		goto cleanup;
	for (int l = 0; l < L && rc == 0; l++) {
		mb_hook_point pp = {MB_HOOK_PATTERN, l}, zp = {MB_HOOK_Z, l};
		if ((rc = mb_effect_cache(fx, pp, err)) == 0)
			rc = mb_effect_cache(fx, zp, err);
	}
	for (int b0 = 0; b0 < IND_REF_ITEMS && rc == 0; b0 += IND_BATCH) {
		mb_run run = {.batch = IND_BATCH, .seq = n, .tokens = tok, .logits = MB_LOGITS_NONE};
		for (int b = 0; b < IND_BATCH; b++) {
			mb_rng rng;
			mb_rng_init_named(&rng, st->seed, "induction/reference", (uint64_t)(b0 + b));
			tok[b * n] = st->bos;
			for (int j = 0; j < r; j++) {
				int32_t t = (int32_t)mb_rng_range(&rng, (uint64_t)V - 1);
				if (t >= st->bos)
					t++; /* uniform over [0, V) without bos */
				tok[b * n + 1 + j] = t;
				tok[b * n + 1 + r + j] = t;
			}
		}
		if ((rc = mb_effect_clean(fx, &run, err)) < 0)
			goto cleanup;
		for (int l = 0; l < L; l++) {
			mb_hook_point pp = {MB_HOOK_PATTERN, l}, zp = {MB_HOOK_Z, l};
			const mb_hook_tensor *pt = mb_effect_clean_get(fx, pp);
			for (int b = 0; b < IND_BATCH; b++)
				for (int h = 0; h < H; h++) {
					double s[MB_HEADS_N_SCORES];
					mb_heads_pattern_scores(s, pt->data + ((size_t)b * H + h) * n * n,
								n, tok + b * n, r);
					for (int k = 0; k < MB_HEADS_N_SCORES; k++)
						st->scores[((size_t)k * L + l) * H + h] += s[k];
				}
			mb_iv_sum_rows(zsum + (size_t)l * H * Dh, &count[l],
				       mb_effect_clean_get(fx, zp), NULL);
		}
	}
	for (size_t i = 0; i < (size_t)MB_HEADS_N_SCORES * L * H; i++)
		st->scores[i] /= IND_REF_ITEMS;
	for (size_t i = 0; i < (size_t)L * H * Dh; i++)
		st->zmean[i] = st->mean_ablation ? (float)(zsum[i] / (double)count[0]) : 0.0f;
cleanup:
	mb_effect_free(fx);
	free(tok);
	free(zsum);
	free(count);
	return rc;
}

/* Chooses the receiver, the top_k heads and the sender from the scores. */
static int choose_heads(ind_state *st, mb_error *err)
{
	const mb_engine_config *c = &st->model->cfg;
	int L = c->n_layer, H = c->n_head;
	const double *ind = st->scores + (size_t)MB_HEADS_INDUCTION * L * H;
	const double *prev = st->scores + (size_t)MB_HEADS_PREV * L * H;

	if ((L - 1) * H < st->top_k)
		return mb_error_set(err, MB_EINVALID,
				    "params.top_k: %d heads asked for, the model has %d in layers >= 1",
				    st->top_k, (L - 1) * H);
	for (int k = 0; k < st->top_k; k++) {
		int bl = -1, bh = -1;
		for (int l = 1; l < L; l++)
			for (int h = 0; h < H; h++)
				if (!st->is_top[l * H + h] &&
				    (bl < 0 || ind[l * H + h] > ind[bl * H + bh])) {
					bl = l;
					bh = h;
				}
		st->top_l[k] = bl;
		st->top_h[k] = bh;
		st->is_top[bl * H + bh] = 1;
	}
	for (int l = 1; l < L; l++) {
		int tops = 0;
		for (int h = 0; h < H; h++)
			tops += st->is_top[l * H + h];
		if (tops > H - tops)
			return mb_error_set(err, MB_EINVALID,
					    "params.top_k: layer %d holds %d of the top %d induction "
					    "heads and only %d other heads for the random control",
					    l, tops, st->top_k, H - tops);
	}
	st->recv_l = st->top_l[0];
	st->recv_h = st->top_h[0];
	st->send_l = -1;
	for (int l = 0; l < st->recv_l; l++)
		for (int h = 0; h < H; h++)
			if (st->send_l < 0 || prev[l * H + h] > prev[st->send_l * H + st->send_h]) {
				st->send_l = l;
				st->send_h = h;
			}
	return 0;
}

static int ind_open(void **out, const char *model_dir, const json_t *params, mb_error *err)
{
	ind_state *st = calloc(1, sizeof(*st));
	const json_t *abl = params ? json_object_get(params, "ablation") : NULL;
	mb_engine_opts opts = {0};
	int rc, L, H;

	*out = NULL;
	if (!st)
		return mb_error_oom(err, "induction state", sizeof(*st));
	if ((rc = mb_model_load(&st->model, model_dir, err)) < 0)
		goto cleanup;
	L = st->model->cfg.n_layer;
	H = st->model->cfg.n_head;
	if (L < 2) {
		rc = mb_error_set(err, MB_EINVALID,
				  "%s/config.json: n_layer: induction needs at least 2 layers (a "
				  "previous-token head below an induction head), got %d", model_dir, L);
		goto cleanup;
	}
	st->bos = param_int(params, "bos", 0);
	st->top_k = param_int(params, "top_k", 1);
	st->mean_ablation = !abl || strcmp(json_string_value(abl), "mean") == 0;
	st->seed = params && json_object_get(params, "seed")
			   ? (uint64_t)json_integer_value(json_object_get(params, "seed"))
			   : 0;
	{
		int fit = (st->model->cfg.n_ctx - 1) / 2;
		st->max_len = param_int(params, "max_len", fit < 100 ? fit : 100);
		if (st->max_len > fit || st->max_len < 2) {
			rc = mb_error_set(err, MB_EINVALID,
					  "params.max_len: %d does not fit %s/config.json's "
					  "n_positions %d ([BOS] R R needs 2 |R| + 1 <= %d)",
					  st->max_len, model_dir, st->model->cfg.n_ctx,
					  st->model->cfg.n_ctx);
			goto cleanup;
		}
	}
	if (st->bos >= st->model->cfg.n_vocab) {
		rc = mb_error_set(err, MB_EINVALID, "params.bos: token %d is outside %s's vocabulary "
				  "of %d", st->bos, model_dir, st->model->cfg.n_vocab);
		goto cleanup;
	}
	st->max_seq = 2 * st->max_len + 1;
	opts.max_batch = IND_BATCH;
	opts.max_seq = st->max_seq;
	st->scores = calloc((size_t)MB_HEADS_N_SCORES * L * H, sizeof(double));
	st->copying = calloc((size_t)L * H, sizeof(double));
	st->zmean = calloc((size_t)L * H * st->model->cfg.d_head, sizeof(float));
	st->is_top = calloc((size_t)L * H, 1);
	if (!st->scores || !st->copying || !st->zmean || !st->is_top) {
		rc = mb_error_oom(err, "induction state", 0);
		goto cleanup;
	}
	if ((rc = mb_engine_init(&st->engine, &st->model->cfg, &st->model->w, &opts, err)) < 0 ||
	    (rc = reference(st, err)) < 0 || (rc = choose_heads(st, err)) < 0 ||
	    (rc = mb_heads_copying(st->copying, &st->model->cfg, &st->model->w, err)) < 0)
		goto cleanup;
	*out = st;
	st = NULL;
cleanup:
	ind_close(st);
	return rc;
}

/* ---- run ----------------------------------------------------------------------- */

/* Item b's tokens and |R|, checked against the model. */
static int item_tokens(int32_t *rep, int32_t *ctl, int *r_out, const ind_state *st,
		       const mb_item *it, mb_error *err)
{
	json_t *bos = json_object_get(it->input, "bos"), *R = json_object_get(it->input, "rep"),
	       *C = json_object_get(it->input, "ctl");
	int V = st->model->cfg.n_vocab;
	size_t r;

	if (!json_is_integer(bos) || !json_is_array(R) || !json_is_array(C) ||
	    json_array_size(R) != json_array_size(C) || json_array_size(R) < 2)
		return mb_error_set(err, MB_EINVALID,
				    "item %s: expected {\"bos\": int, \"rep\": [>= 2 ints], \"ctl\": "
				    "[as many ints]}", it->key);
	r = json_array_size(R);
	if ((int)r > st->max_len)
		return mb_error_set(err, MB_EINVALID,
				    "item %s: |R| = %zu needs %zu positions; this run allows |R| <= %d "
				    "(n_positions %d, params.max_len)", it->key, r, 2 * r + 1,
				    st->max_len, st->model->cfg.n_ctx);
	if (json_integer_value(bos) < 0 || json_integer_value(bos) >= V)
		return mb_error_set(err, MB_EINVALID, "item %s: bos %lld is outside the vocabulary "
				    "of %d", it->key, (long long)json_integer_value(bos), V);
	rep[0] = ctl[0] = (int32_t)json_integer_value(bos);
	for (size_t j = 0; j < r; j++) {
		json_t *a = json_array_get(R, j), *c = json_array_get(C, j);
		if (!json_is_integer(a) || !json_is_integer(c) || json_integer_value(a) < 0 ||
		    json_integer_value(a) >= V || json_integer_value(c) < 0 ||
		    json_integer_value(c) >= V)
			return mb_error_set(err, MB_EINVALID,
					    "item %s: token %zu is not an id in [0, %d)", it->key, j,
					    V);
		rep[1 + j] = rep[1 + r + j] = (int32_t)json_integer_value(a);
		ctl[1 + j] = (int32_t)json_integer_value(a);
		ctl[1 + r + j] = (int32_t)json_integer_value(c);
	}
	*r_out = (int)r;
	return 0;
}

/* One batch of items: repeated and control prompts (B, T), lengths (B), |R|. */
typedef struct ind_batch {
	const ind_state *st;
	int32_t *rep, *ctl, *len;
	int r[IND_BATCH];
	int T;
} ind_batch;

/* The effect metric: each item's second-repeat loss. */
static int rep2_metric(double *out, const mb_engine *e, int B, void *payload, mb_error *err)
{
	const ind_batch *ib = payload;

	(void)err;
	for (int b = 0; b < B; b++)
		out[b] = span_loss(e, b, ib->rep + (size_t)b * ib->T, ib->r[b] + 2, 2 * ib->r[b],
				   ib->st->model->cfg.n_vocab);
	return 0;
}

static int load_batch(ind_batch *ib, const ind_state *st, const mb_item *items, int B,
		      mb_error *err)
{
	int rc;

	ib->st = st;
	ib->T = 0;
	ib->rep = calloc((size_t)B * st->max_seq, sizeof(int32_t));
	ib->ctl = calloc((size_t)B * st->max_seq, sizeof(int32_t));
	ib->len = calloc((size_t)B, sizeof(int32_t));
	if (!ib->rep || !ib->ctl || !ib->len)
		return mb_error_oom(err, "induction batch", 0);
	for (int b = 0; b < B; b++) {
		if ((rc = item_tokens(ib->rep + (size_t)b * st->max_seq,
				      ib->ctl + (size_t)b * st->max_seq, &ib->r[b], st, &items[b],
				      err)) < 0)
			return rc;
		ib->len[b] = 2 * ib->r[b] + 1;
		if (ib->len[b] > ib->T)
			ib->T = ib->len[b];
	}
	/* repack (B, max_seq) -> (B, T) */
	for (int b = 1; b < B; b++) {
		memmove(ib->rep + (size_t)b * ib->T, ib->rep + (size_t)b * st->max_seq,
			sizeof(int32_t) * ib->T);
		memmove(ib->ctl + (size_t)b * ib->T, ib->ctl + (size_t)b * st->max_seq,
			sizeof(int32_t) * ib->T);
	}
	return 0;
}

/* Metric m of items 0..B-1 (rows of M_COUNT) from one arm's effects (B). */
static void put(double *values, int m, const double *eff, int B)
{
	for (int b = 0; b < B; b++)
		values[(size_t)b * M_COUNT + (size_t)m] = eff[b];
}

static int ind_run(void *state, const mb_item *items, size_t n, double *values, mb_error *err)
{
	ind_state *st = state;
	const mb_engine_config *c = &st->model->cfg;
	int L = c->n_layer, H = c->n_head, D = c->d_model, Dh = c->d_head, V = c->n_vocab;
	int B = (int)n, T, rc = 0;
	ind_batch ib = {0};
	double eff[IND_BATCH];
	uint8_t *mask = NULL;  /* (B, L, H) */
	float *delta = NULL;   /* (B, T, D) */
	mb_effect *fx = NULL;
	mb_effect_heads heads = {NULL, st->zmean, NULL, -1};
	mb_effect_arm ablate = {.freeze_patterns = 1, .heads = &heads};
	mb_hook_point recv_pat = {MB_HOOK_PATTERN, st->recv_l}, send_pat = {MB_HOOK_PATTERN, st->send_l};
	mb_hook_point send_z = {MB_HOOK_Z, st->send_l}, recv_resid = {MB_HOOK_RESID_PRE, st->recv_l};

	MB_ASSERT(n >= 1 && n <= IND_BATCH);
	if ((rc = load_batch(&ib, st, items, B, err)) < 0)
		goto cleanup;
	T = ib.T;
	mask = calloc((size_t)B * L * H, 1);
	delta = malloc(sizeof(float) * (size_t)B * T * D);
	if (!mask || !delta) {
		rc = mb_error_oom(err, "induction batch", sizeof(float) * (size_t)B * T * D);
		goto cleanup;
	}
	if ((rc = mb_effect_init(&fx, st->engine, rep2_metric, &ib, err)) < 0)
		goto cleanup;

	/* 1. clean repeated run: every pattern (frozen later), the sender's z and the
	 * receiver layer's input */
	for (int l = 0; l < L && rc == 0; l++) {
		mb_hook_point pp = {MB_HOOK_PATTERN, l};
		rc = mb_effect_cache(fx, pp, err);
	}
	if (rc < 0 || (rc = mb_effect_cache(fx, send_z, err)) < 0 ||
	    (rc = mb_effect_cache(fx, recv_resid, err)) < 0)
		goto cleanup;
	{
		mb_run run = {.batch = B, .seq = T, .tokens = ib.rep, .lengths = ib.len,
			      .logits = MB_LOGITS_ALL};
		if ((rc = mb_effect_clean(fx, &run, err)) < 0)
			goto cleanup;
	}
	{
		const mb_hook_tensor *rp = mb_effect_clean_get(fx, recv_pat);
		const mb_hook_tensor *sp = mb_effect_clean_get(fx, send_pat);
		for (int b = 0; b < B; b++) {
			double *v = values + (size_t)b * M_COUNT;
			double s[MB_HEADS_N_SCORES];
			const int32_t *tk = ib.rep + (size_t)b * T;

			mb_heads_pattern_scores(s, rp->data + ((size_t)b * H + st->recv_h) * T * T, T,
						tk, ib.r[b]);
			v[M_SCORE] = s[MB_HEADS_INDUCTION];
			mb_heads_pattern_scores(s, sp->data + ((size_t)b * H + st->send_h) * T * T, T,
						tk, ib.r[b]);
			v[M_PREV_SCORE] = s[MB_HEADS_PREV];
			v[M_LOSS_REP1] = span_loss(st->engine, b, tk, 2, ib.r[b], V);
			v[M_LOSS_REP2] = mb_effect_clean_values(fx)[b];
		}
	}

	/* 2. control run: the receiver's diagonal on [BOS] R C */
	{
		mb_run run = {.batch = B, .seq = T, .tokens = ib.ctl, .lengths = ib.len,
			      .logits = MB_LOGITS_NONE};
		const mb_hook_tensor *rp;
		if ((rc = mb_effect_source(fx, 0, &run, &recv_pat, 1, NULL, err)) < 0)
			goto cleanup;
		rp = mb_effect_source_get(fx, 0, recv_pat);
		for (int b = 0; b < B; b++) {
			double *v = values + (size_t)b * M_COUNT;
			const float *p = rp->data + ((size_t)b * H + st->recv_h) * T * T;
			v[M_SCORE_VS_CONTROL] = v[M_SCORE] - mb_heads_diag(p, T, ib.r[b]);
		}
	}

	/* 3. pattern-preserving ablation of the top heads, then of random heads of
	 * the same layers drawn per item (the matched control) */
	heads.mask = mask;
	for (int b = 0; b < B; b++)
		for (int k = 0; k < st->top_k; k++)
			mask[((size_t)b * L + st->top_l[k]) * H + st->top_h[k]] = 1;
	if ((rc = mb_effect_run_arm(eff, NULL, fx, &ablate, err)) < 0)
		goto cleanup;
	put(values, M_ABLATE_TOP, eff, B);
	memset(mask, 0, (size_t)B * L * H);
	for (int b = 0; b < B; b++) {
		mb_rng rng;
		mb_rng_init_named(&rng, st->seed, "induction/random_heads",
				  mb_item_key_index(items[b].key));
		mb_effect_control_heads(mask + (size_t)b * L * H, &rng, H, st->top_l, st->top_k,
					st->is_top);
	}
	if ((rc = mb_effect_run_arm(eff, NULL, fx, &ablate, err)) < 0)
		goto cleanup;
	put(values, M_ABLATE_RANDOM, eff, B);

	/* 4. path patching sender -> receiver via q, k, v: the receiver's input is the
	 * clean resid_pre plus the sender's output change under ablation,
	 * (zbar - z) W_O[sender]; the run restarts at the receiver's layer, so
	 * nothing else sees the change */
	mb_interp_head_delta_set(delta, c, &st->model->w, st->send_l, st->send_h,
				 mb_effect_clean_get(fx, send_z),
				 st->zmean + ((size_t)st->send_l * H + st->send_h) * Dh);
	for (int via = 0; via < 3; via++) {
		static const int metric_of[3] = {M_KCOMP_Q, M_KCOMP_K, M_KCOMP_V};
		mb_effect_path path = {st->recv_l, st->recv_h, via, delta};
		mb_effect_arm arm = {.path = &path};

		if ((rc = mb_effect_run_arm(eff, NULL, fx, &arm, err)) < 0)
			goto cleanup;
		put(values, metric_of[via], eff, B);
	}
	rc = 0;
cleanup:
	mb_effect_free(fx);
	free(ib.rep);
	free(ib.ctl);
	free(ib.len);
	free(mask);
	free(delta);
	return rc;
}

/* ---- figures ------------------------------------------------------------------- */

/* Figures:
 *   induction.head_scores.{induction,previous,duplicate,prefix,copying}
 *       layer x head heatmaps of the reference-set scores and the OV copying
 *       score (diverging: it lies in [-1, 1])
 *   induction.top_pattern   the receiver's attention pattern (query x key) on
 *       the first item's repeated prompt
 *   induction.loss_by_len   mean clean and ablated second-repeat loss per |R|
 *       stratum (lines over |R|) */
static int ind_figures(void *state, const mb_item *items, size_t n, const double *values,
		       mb_figure_list *out, mb_error *err)
{
	ind_state *st = state;
	const mb_engine_config *c = &st->model->cfg;
	int L = c->n_layer, H = c->n_head, rc = 0;
	static const char *const names[MB_HEADS_N_SCORES + 1] = {
		"induction.head_scores.induction", "induction.head_scores.previous",
		"induction.head_scores.duplicate", "induction.head_scores.prefix",
		"induction.head_scores.copying"};
	static const char *const titles[MB_HEADS_N_SCORES + 1] = {
		"Induction score per head (reference set)", "Previous-token score per head",
		"Duplicate-token score per head", "Prefix-matching score per head",
		"OV copying score (eigenvalue positivity) per head"};
	mb_figure *f;
	int32_t rep[4096], ctl[4096];
	int r;

	for (int k = 0; k <= MB_HEADS_N_SCORES; k++) {
		const double *src = k < MB_HEADS_N_SCORES ? st->scores + (size_t)k * L * H : st->copying;
		if ((rc = mb_figure_list_add(out, &f, MB_FIGURE_HEATMAP, names[k], (size_t)L,
					     (size_t)H, err)) < 0 ||
		    (rc = mb_figure_set_text(f, titles[k], "head", "layer",
					     k < MB_HEADS_N_SCORES ? "mean attention" : "positivity", err)) < 0)
			return rc;
		f->diverging = k == MB_HEADS_N_SCORES;
		for (int i = 0; i < L * H; i++)
			f->values[i] = src[i];
	}
	if (n == 0)
		return 0;
	/* the receiver's pattern on the first item */
	if ((rc = item_tokens(rep, ctl, &r, st, &items[0], err)) < 0)
		return rc;
	if (2 * r + 1 <= 256) { /* MB_FIGURE_MAX_CELLS */
		int T = 2 * r + 1;
		mb_effect *fx = NULL;
		mb_hook_point pp = {MB_HOOK_PATTERN, st->recv_l};
		mb_run run = {.batch = 1, .seq = T, .tokens = rep, .logits = MB_LOGITS_NONE};
		char title[128];

		snprintf(title, sizeof(title), "Attention pattern of head %d.%d on [BOS] R R, |R| = %d",
			 st->recv_l, st->recv_h, r);
		if ((rc = mb_effect_init(&fx, st->engine, NULL, NULL, err)) == 0 &&
		    (rc = mb_effect_cache(fx, pp, err)) == 0 &&
		    (rc = mb_effect_clean(fx, &run, err)) == 0 &&
		    (rc = mb_figure_list_add(out, &f, MB_FIGURE_HEATMAP, "induction.top_pattern",
					     (size_t)T, (size_t)T, err)) == 0 &&
		    (rc = mb_figure_set_text(f, title, "key position", "query position",
					     "attention", err)) == 0) {
			const float *pat = mb_effect_clean_get(fx, pp)->data; /* (1, H, T, T) */
			for (int i = 0; i < T * T; i++)
				f->values[i] = pat[(size_t)st->recv_h * T * T + i];
		}
		mb_effect_free(fx);
		if (rc < 0)
			return rc;
	}
	/* losses per |R| */
	{
		int lens[64], nl = 0;
		double sum[64][3] = {{0}};
		double x[64];
		size_t cnt[64] = {0};
		static const char *const series[3] = {"clean", "top heads ablated",
						      "random heads ablated"};

		for (size_t i = 0; i < n; i++) {
			int rl = (int)json_array_size(json_object_get(items[i].input, "rep")), k = 0;
			const double *v = values + i * M_COUNT;
			while (k < nl && lens[k] != rl)
				k++;
			if (k == nl) {
				if (nl == 64)
					continue;
				lens[nl++] = rl;
			}
			sum[k][0] += v[M_LOSS_REP2];
			sum[k][1] += v[M_LOSS_REP2] + v[M_ABLATE_TOP];
			sum[k][2] += v[M_LOSS_REP2] + v[M_ABLATE_RANDOM];
			cnt[k]++;
		}
		/* sort by |R| (insertion; a handful of strata) */
		for (int a = 1; a < nl; a++)
			for (int b = a; b > 0 && lens[b - 1] > lens[b]; b--) {
				int tl = lens[b];
				size_t tc = cnt[b];
				double ts[3];
				memcpy(ts, sum[b], sizeof(ts));
				lens[b] = lens[b - 1];
				cnt[b] = cnt[b - 1];
				memcpy(sum[b], sum[b - 1], sizeof(ts));
				lens[b - 1] = tl;
				cnt[b - 1] = tc;
				memcpy(sum[b - 1], ts, sizeof(ts));
			}
		if ((rc = mb_figure_list_add(out, &f, MB_FIGURE_LINES, "induction.loss_by_len", 3,
					     (size_t)nl, err)) < 0 ||
		    (rc = mb_figure_set_text(f, "Second-repeat loss by |R|", "|R|",
					     "mean loss (nats)", "", err)) < 0)
			return rc;
		for (int k = 0; k < nl; k++)
			x[k] = lens[k];
		if (nl > 0 && (rc = mb_figure_set_x(f, x, err)) < 0)
			return rc;
		for (int s = 0; s < 3; s++) {
			if ((rc = mb_figure_set_row_label(f, (size_t)s, series[s], err)) < 0)
				return rc;
			for (int k = 0; k < nl; k++)
				f->values[(size_t)s * nl + k] = sum[k][s] / (double)cnt[k];
		}
	}
	return 0;
}

const mb_task mb_task_induction = {
	.name = "induction",
	.version = 1,
	.summary = "induction heads on [BOS] R R: head scores, pattern-preserving ablation vs "
		   "random heads, K-composition path patching vs Q/V",
	.metrics = ind_metrics,
	.n_metrics = M_COUNT,
	.batch = IND_BATCH,
	.parallel_inside = 1,
	.generate = ind_generate,
	.check_params = ind_check_params,
	.open = ind_open,
	.close = ind_close,
	.run = ind_run,
	.figures = ind_figures,
	.derived = ind_derived,
	.n_derived = sizeof(ind_derived) / sizeof(ind_derived[0]),
};
