/*
 * sae.c: the feature-causality task (issue 19 item 6). The SAE is part of
 * the model under test: a suite entry names the model and, in its params,
 * the SAE folder (SAELens layout, sae.h); the SAE reads the hook point its
 * cfg.json names.
 *
 * Items (generate). Sequences of a zoo induction language (zoo.h): recipe
 * params.recipe at params.preset with the dataset's seed, stream "sae/items"
 * (disjoint from the model's "induction/train" and the labelling
 * "induction/eval" streams), index i, scanned in order until every topic has
 * n_per_topic sequences. Input {"tokens": [...], "topic": t}; stratum and
 * cluster "topic=<t>", so a per-stratum estimate is one labelled feature's.
 *
 * params (generate):
 *   "recipe": string       zoo recipe, "induction" (the one with labelled
 *                          variables)                       (default "induction")
 *   "preset": string       its preset                                (default "fast")
 *   "n_per_topic": int     items per topic, [2, 10000]                  (default 16)
 *
 * params (run):
 *   "sae": string          the SAE folder (required)
 *   "steer": number        steering clamp multiple k, (0, 100]           (default 4)
 *   "match_seqs": int      sequences "induction/eval" 0.. that label the
 *                          features and give their max activations, [8, 100000]
 *                          (default 128)
 *   "seed": int            seed of the random-direction controls        (default 0)
 *   "curves": bool         the figures hook also trains the TMS recovery
 *                          sweep and the L0 / CE-recovered Pareto SAEs (tens
 *                          of seconds; `run` and `report` only, never `gate`)
 *                                                                  (default false)
 * The SAE folder is read relative to the working directory (the repository
 * root, where suites run).
 *
 * open: loads the model and the SAE, reads the recipe from the model's
 * training_state.json, labels each topic's latent (mb_sae_topic_features_init).
 * prepare: the causal battery of every labelled feature over all the
 * entry's items (mb_sae_battery_run; each item's values depend on the item
 * alone: controls are drawn from its own stream, its content key), kept in
 * the state and returned as the artifact
 *   {"kind": "sae-battery", "version": 1, "steer", "n_items",
 *    "features": [{"value", "variable", "latent", "auroc", "max_act",
 *                  "necessity", "necessity_control", "steering",
 *                  "steering_control", "selectivity", "collateral":
 *                  [per item, in the items' order; null where the arm
 *                   does not apply]}]}
 * from which the report computes each feature's verdict and the fraction
 * passing with its interval (sae_verdict.h, harness: above this layer).
 * run: per batch, the quality metrics with the SAE spliced in
 * (mb_sae_item_quality), and prepare's battery values of each item: item i
 * of topic t gets its own feature's necessity (t is present), so a stratum's
 * necessity is one feature's; and the mean over the other topics' features
 * (absent there) of steering, selectivity and collateral.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/engine.h>
#include <mechbench/model.h>
#include <mechbench/sae.h>
#include <mechbench/sae_train.h>
#include <mechbench/task.h>
#include <mechbench/zoo.h>

#define SAE_BATCH 32
#define SAE_MAX_TOPICS 64

enum {
	M_CE_RECOVERED = 0,
	M_KL,
	M_L0,
	M_COS,
	M_NECESSITY,
	M_NECESSITY_CONTROL,
	M_NECESSITY_EXCESS,
	M_STEERING,
	M_STEERING_CONTROL,
	M_STEERING_EXCESS,
	M_SELECTIVITY,
	M_COLLATERAL,
	M_CAUSAL_HIT,
	M_COUNT
};

static const mb_metric_def sae_metrics[M_COUNT] = {
	{"sae.ce_recovered", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "CE loss recovered with the SAE spliced in, (CE_zero - CE_sae) / (CE_zero - CE_clean) "
	 "over the item's next-token targets (SAEBench ce_loss_score, per item)"},
	{"sae.kl", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "mean KL(clean || SAE spliced in) of the next-token distributions (SAEBench "
	 "kl_div_with_sae, per item)"},
	{"sae.l0", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "mean active latents per position (SAEBench l0)"},
	{"sae.cos", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "mean cosine of the reconstruction to the activation (SAEBench cossim)"},
	{"sae.necessity", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "the item's topic feature ablated (error term kept): drop of the next token's log-mass "
	 "on the topic's tokens (sae.h battery)"},
	{"sae.necessity_control", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "the same edit along a random direction of the same norm at the same positions"},
	{"sae.necessity_excess", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "necessity - necessity_control, paired per item"},
	{"sae.steering", 2, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "the other topics' features clamped to k x their max activation here, where their "
	 "label is absent: rise of each one's topic log-mass relative to the other absent "
	 "topics' (sae.h battery, steering version 2), mean over them"},
	{"sae.steering_control", 2, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "the same clamps along random directions of the same norm at the same positions "
	 "(0 in expectation: the absent topics are exchangeable under a random edit)"},
	{"sae.steering_excess", 2, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "steering - steering_control, paired per item"},
	{"sae.selectivity", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "other topics' features ablated here, where their label is absent: drop of their "
	 "log-mass (near 0 for selective features)"},
	{"sae.collateral", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "other topics' features clamped to k x their max activation here: KL(clean || steered) "
	 "over the tokens outside the steered topic, mean over them"},
	{"sae.causal_hit", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "the fraction of the item's K battery comparisons that the labelled features win "
	 "against their matched random directions: its own feature's necessity > control, and "
	 "each absent feature's steering > control (0.5 for features no better than random)"},
};

static const mb_metric_diff sae_derived[] = {
	{"sae.necessity_excess", "sae.necessity", "sae.necessity_control"},
	{"sae.steering_excess", "sae.steering", "sae.steering_control"},
};

/* ---- generate ---- */

static int gen_string(const json_t *params, const char *key, const char **out, mb_error *err)
{
	json_t *v = params ? json_object_get(params, key) : NULL;
	if (!v)
		return 0;
	if (!json_is_string(v))
		return mb_error_set(err, MB_EINVALID, "params.%s: expected a string", key);
	*out = json_string_value(v);
	return 0;
}

static int sae_generate(mb_item_list *out, uint64_t seed, const json_t *params, mb_error *err)
{
	const char *recipe = "induction", *preset = "fast";
	int64_t n_per = 16;
	int count[SAE_MAX_TOPICS] = {0};
	mb_zoo_recipe r;
	int error;

	if (params && !json_is_object(params))
		return mb_error_set(err, MB_EINVALID, "params: expected an object");
	if (params) {
		const char *key;
		json_t *v;
		json_object_foreach((json_t *)params, key, v) {
			if (strcmp(key, "recipe") != 0 && strcmp(key, "preset") != 0 &&
			    strcmp(key, "n_per_topic") != 0)
				return mb_error_set(err, MB_EINVALID,
						    "params.%s: unknown field (sae takes recipe, preset, "
						    "n_per_topic)",
						    key);
		}
		json_t *n = json_object_get(params, "n_per_topic");
		if (n && (!json_is_integer(n) || json_integer_value(n) < 2 ||
			  json_integer_value(n) > 10000))
			return mb_error_set(err, MB_EINVALID,
					    "params.n_per_topic: expected an integer in [2, 10000]");
		if (n)
			n_per = json_integer_value(n);
	}
	if ((error = gen_string(params, "recipe", &recipe, err)) < 0 ||
	    (error = gen_string(params, "preset", &preset, err)) < 0 ||
	    (error = mb_zoo_recipe_get(&r, recipe, preset, seed, err)) < 0)
		return error;
	if (strcmp(r.name, "induction") != 0)
		return mb_error_set(err, MB_EINVALID,
				    "params.recipe: %s: only the induction language has labelled "
				    "variables (its topics)",
				    recipe);
	if (r.n_topics > SAE_MAX_TOPICS)
		return mb_error_set(err, MB_EINVALID, "params.recipe: %d topics (at most %d)",
				    r.n_topics, SAE_MAX_TOPICS);
	const int T = r.n_positions;
	int32_t *tok = malloc((size_t)T * sizeof(int32_t));
	if (!tok)
		return mb_error_oom(err, "sae items", (size_t)T * sizeof(int32_t));
	int done = 0;
	for (uint64_t i = 0; done < r.n_topics; i++) {
		mb_zoo_segment seg;
		mb_zoo_induction_sequence(tok, &seg, &r, "sae/items", i);
		if (count[seg.topic] >= n_per)
			continue;
		if (++count[seg.topic] == n_per)
			done++;
		json_t *a = json_array(), *in = json_object();
		char stratum[32];
		for (int t = 0; t < T; t++)
			json_array_append_new(a, json_integer(tok[t]));
		json_object_set_new(in, "tokens", a);
		json_object_set_new(in, "topic", json_integer(seg.topic));
		snprintf(stratum, sizeof(stratum), "topic=%d", seg.topic);
		if ((error = mb_item_list_add(out, stratum, stratum, in, err)) < 0)
			break;
	}
	free(tok);
	return error;
}

/* ---- params, open, close ---- */

static int sae_check_params(const mb_json_doc *doc, const json_t *params, const char *at,
			    mb_error *err)
{
	static const char *const allowed[] = {"sae", "steer", "match_seqs", "seed", "curves", NULL};
	int curves;
	const char *s = NULL;
	double k = 4;
	int64_t v;
	int rc;

	if (!params)
		return mb_json_field_error(doc, err, MB_EINVALID, at,
					   "the sae task needs params.sae (the SAE folder)");
	if (!json_is_object(params))
		return mb_json_field_error(doc, err, MB_EINVALID, at, "expected an object");
	if ((rc = mb_json_check_keys(doc, (json_t *)params, at, allowed, err)) < 0 ||
	    (rc = mb_json_get_string(doc, (json_t *)params, at, "sae", 1, &s, err)) < 0 ||
	    (rc = mb_json_get_number(doc, (json_t *)params, at, "steer", 0, &k, err)) < 0 ||
	    (rc = mb_json_get_int(doc, (json_t *)params, at, "match_seqs", 0, 8, 100000, &v,
				  err)) < 0 ||
	    (rc = mb_json_get_int(doc, (json_t *)params, at, "seed", 0, 0, INT64_MAX, &v, err)) < 0 ||
	    (rc = mb_json_get_bool(doc, (json_t *)params, at, "curves", 0, &curves, err)) < 0)
		return rc;
	if (!(k > 0 && k <= 100)) {
		char field[256];
		mb_json_path_key(field, sizeof(field), at, "steer");
		return mb_json_field_error(doc, err, MB_EINVALID, field, "expected a number in (0, 100]");
	}
	return 0;
}

typedef struct sae_state {
	mb_model *model;
	mb_sae *sae;
	mb_hook_point point;
	mb_engine *engine;
	mb_sae_corpus *corpus; /* only for its recipe */
	mb_sae_topic_features tf;
	double steer;
	uint64_t seed;
	int seq;
	int curves;
	char model_dir[4096];
	/* prepare's battery over the entry's items, by item (sorted by key) */
	size_t n_prepared;
	char (*keys)[MB_SHA256_HEX_LEN]; /* (n) sorted */
	double *battery;                 /* (n, N_BAT) at the sorted position */
} sae_state;

/* prepare's per-item battery values (the metrics of the same names). */
enum { B_NEC, B_NEC_CTL, B_STEER, B_STEER_CTL, B_SEL, B_COL, B_HIT, N_BAT };

static void sae_close(void *state)
{
	sae_state *st = state;
	if (!st)
		return;
	mb_sae_topic_features_dispose(&st->tf);
	free(st->keys);
	free(st->battery);
	mb_engine_free(st->engine);
	mb_sae_corpus_free(st->corpus);
	mb_sae_free(st->sae);
	mb_model_free(st->model);
	free(st);
}

static int sae_open(void **out, const char *model_dir, const json_t *params, mb_error *err)
{
	sae_state *st = calloc(1, sizeof(*st));
	mb_engine_opts opts = {0};
	json_t *v;
	int match = 128, rc;

	*out = NULL;
	if (!st)
		return mb_error_oom(err, "sae state", sizeof(*st));
	st->steer = 4;
	if ((v = params ? json_object_get(params, "steer") : NULL))
		st->steer = json_number_value(v);
	if ((v = params ? json_object_get(params, "match_seqs") : NULL))
		match = (int)json_integer_value(v);
	if ((v = params ? json_object_get(params, "seed") : NULL))
		st->seed = (uint64_t)json_integer_value(v);
	if ((v = params ? json_object_get(params, "curves") : NULL))
		st->curves = json_is_true(v);
	v = params ? json_object_get(params, "sae") : NULL;
	if (!v || !json_is_string(v)) {
		rc = mb_error_set(err, MB_EINVALID, "params.sae: the SAE folder is required");
		goto cleanup;
	}
	snprintf(st->model_dir, sizeof(st->model_dir), "%s", model_dir);
	if ((rc = mb_model_load(&st->model, model_dir, err)) < 0 ||
	    (rc = mb_sae_load(&st->sae, json_string_value(v), err)) < 0)
		goto cleanup;
	if ((rc = mb_hook_parse(&st->point, st->sae->hook_name, err)) < 0) {
		char msg[sizeof(err->msg)];
		snprintf(msg, sizeof(msg), "%s", err->msg);
		rc = mb_error_set(err, rc, "%s/cfg.json: metadata.hook_name: %s",
				  json_string_value(v), msg);
		goto cleanup;
	}
	if ((rc = mb_sae_corpus_open_zoo(&st->corpus, model_dir, 0, err)) < 0 ||
	    (rc = mb_sae_topic_features_init(&st->tf, st->model, st->sae, st->point,
					     mb_sae_corpus_recipe(st->corpus), match, err)) < 0)
		goto cleanup;
	st->seq = mb_sae_corpus_recipe(st->corpus)->n_positions;
	opts.max_batch = SAE_BATCH;
	opts.max_seq = st->seq;
	if ((rc = mb_engine_init(&st->engine, &st->model->cfg, &st->model->w, &opts, err)) < 0)
		goto cleanup;
	*out = st;
	st = NULL;
cleanup:
	sae_close(st);
	return rc;
}

/* ---- run ---- */

/* Each item's tokens (n, T) and topic (n), checked. */
static int item_inputs(int32_t *tok, int *topic, const sae_state *st, const mb_item *items,
		       size_t n, mb_error *err)
{
	const int T = st->seq, K = st->tf.n;
	for (size_t i = 0; i < n; i++) {
		json_t *a = json_object_get(items[i].input, "tokens");
		json_t *t = json_object_get(items[i].input, "topic");
		if (!json_is_array(a) || json_array_size(a) != (size_t)T || !json_is_integer(t) ||
		    json_integer_value(t) < 0 || json_integer_value(t) >= K)
			return mb_error_set(err, MB_EINVALID,
					    "item %s: input needs tokens (%d ids) and topic in [0, %d)",
					    items[i].key, T, K);
		for (int p = 0; p < T; p++) {
			json_t *x = json_array_get(a, (size_t)p);
			int64_t id = json_is_integer(x) ? json_integer_value(x) : -1;
			if (id < 0 || id >= st->model->cfg.n_vocab)
				return mb_error_set(err, MB_EINVALID,
						    "item %s: tokens[%d] is not a token id of the model",
						    items[i].key, p);
			tok[i * (size_t)T + (size_t)p] = (int32_t)id;
		}
		topic[i] = (int)json_integer_value(t);
	}
	return 0;
}

/* x as a JSON number, null when it is not a number (the arm does not apply). */
static json_t *real_or_null(double x)
{
	return isfinite(x) ? json_real(x) : json_null();
}

static const char *const artifact_arms[] = {"necessity", "necessity_control", "steering",
					    "steering_control", "selectivity", "collateral"};

/* The artifact of battery b over the prepared items (see the top). */
static json_t *battery_artifact(const sae_state *st, const mb_sae_battery *b)
{
	const double *arm[6] = {b->necessity, b->necessity_control, b->steering,
				b->steering_control, b->selectivity, b->collateral};
	json_t *fs = json_array(), *a = NULL;
	int bad = !fs;

	for (int k = 0; k < b->n_features && !bad; k++) {
		json_t *f = json_pack("{s:i, s:s, s:i, s:o, s:f}", "value", st->tf.features[k].value,
				      "variable", st->tf.match[k].variable, "latent",
				      st->tf.features[k].latent, "auroc",
				      real_or_null(st->tf.match[k].auroc), "max_act",
				      st->tf.features[k].max_act);
		bad |= !f;
		for (int r = 0; r < 6 && !bad; r++) {
			json_t *col = json_array();
			bad |= !col;
			for (size_t i = 0; i < b->n && !bad; i++)
				bad |= json_array_append_new(col, real_or_null(arm[r][(size_t)k * b->n + i])) < 0;
			bad |= json_object_set_new(f, artifact_arms[r], col) < 0;
		}
		bad |= json_array_append_new(fs, f) < 0;
	}
	if (!bad)
		a = json_pack("{s:s, s:i, s:f, s:I, s:O}", "kind", "sae-battery", "version", 1, "steer",
			      st->steer, "n_items", (json_int_t)b->n, "features", fs);
	json_decref(fs);
	return a;
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The sorted position of key among prepare's items, or -1. */
static ptrdiff_t prepared_at(const sae_state *st, const char *key)
{
	size_t lo = 0, hi = st->n_prepared;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(st->keys[mid], key);
		if (c == 0)
			return (ptrdiff_t)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/*
 * The battery of every labelled feature over all n items, the verdicts and
 * each item's values (N_BAT), kept in st by item key. Each item's values
 * depend on that item alone (batch invariant), the verdicts on all of them.
 */
static int sae_prepare(void *state, const mb_item *items, size_t n, json_t **artifact,
		       mb_error *err)
{
	sae_state *st = state;
	const int T = st->seq, K = st->tf.n;
	int32_t *tok = malloc((n ? n : 1) * (size_t)T * sizeof(int32_t));
	int *topic = malloc((n ? n : 1) * sizeof(int));
	uint8_t *present = calloc((size_t)K * (n ? n : 1), 1);
	uint64_t *index = malloc((n ? n : 1) * sizeof(uint64_t));
	const char **order = malloc((n ? n : 1) * sizeof(char *));
	mb_sae_battery b;
	int rc;

	memset(&b, 0, sizeof(b));
	free(st->keys);
	free(st->battery);
	st->n_prepared = 0;
	st->keys = malloc((n ? n : 1) * sizeof(*st->keys));
	st->battery = malloc((n ? n : 1) * N_BAT * sizeof(double));
	if (!tok || !topic || !present || !index || !order || !st->keys || !st->battery) {
		rc = mb_error_oom(err, "sae prepare", n * (size_t)T * sizeof(int32_t));
		goto cleanup;
	}
	if ((rc = item_inputs(tok, topic, st, items, n, err)) < 0)
		goto cleanup;
	for (size_t i = 0; i < n; i++) {
		present[(size_t)topic[i] * n + i] = 1;
		index[i] = mb_item_key_index(items[i].key);
		order[i] = items[i].key;
	}
	const mb_sae_labels lab = {K, st->tf.readout, present};
	if ((rc = mb_sae_battery_run(&b, st->engine, st->sae, st->point, tok, n, T, SAE_BATCH,
				     index, &lab, st->tf.features, K, st->steer, st->seed,
				     err)) < 0)
		goto cleanup;
	qsort(order, n, sizeof(*order), key_cmp);
	for (size_t i = 0; i < n; i++)
		memcpy(st->keys[i], order[i], MB_SHA256_HEX_LEN);
	st->n_prepared = n;
	for (size_t i = 0; i < n; i++) {
		double *row = st->battery + (size_t)prepared_at(st, items[i].key) * N_BAT;
		const size_t own = (size_t)topic[i] * n + i;
		double ste = 0, ctl = 0, sel = 0, col = 0;
		int hits = b.necessity[own] > b.necessity_control[own];
		row[B_NEC] = b.necessity[own];
		row[B_NEC_CTL] = b.necessity_control[own];
		for (int f = 0; f < K; f++) {
			if (f == topic[i])
				continue;
			const size_t at = (size_t)f * n + i;
			ste += b.steering[at];
			ctl += b.steering_control[at];
			sel += b.selectivity[at];
			col += b.collateral[at];
			hits += b.steering[at] > b.steering_control[at];
		}
		row[B_STEER] = K > 1 ? ste / (K - 1) : 0.0;
		row[B_STEER_CTL] = K > 1 ? ctl / (K - 1) : 0.0;
		row[B_SEL] = K > 1 ? sel / (K - 1) : 0.0;
		row[B_COL] = K > 1 ? col / (K - 1) : 0.0;
		row[B_HIT] = (double)hits / K;
	}
	if (!(*artifact = battery_artifact(st, &b)))
		rc = mb_error_oom(err, "sae battery artifact", 0);
cleanup:
	if (rc < 0)
		st->n_prepared = 0;
	mb_sae_battery_dispose(&b);
	free(tok);
	free(topic);
	free(present);
	free(index);
	free(order);
	return rc;
}

static int sae_run(void *state, const mb_item *items, size_t n, double *values, mb_error *err)
{
	sae_state *st = state;
	const int T = st->seq;
	int32_t *tok = malloc(n * (size_t)T * sizeof(int32_t));
	int *topic = malloc(n * sizeof(int));
	mb_sae_item_metrics *q = calloc(n, sizeof(*q));
	int rc;

	if (!tok || !topic || !q) {
		rc = mb_error_oom(err, "sae run", n * (size_t)T * sizeof(int32_t));
		goto cleanup;
	}
	if ((rc = item_inputs(tok, topic, st, items, n, err)) < 0)
		goto cleanup;
	for (size_t i = 0; i < n; i++)
		if (prepared_at(st, items[i].key) < 0) {
			rc = mb_error_set(err, MB_EINVALID,
					  "item %s: not among the items the battery was prepared on",
					  items[i].key);
			goto cleanup;
		}
	if ((rc = mb_sae_item_quality(q, st->engine, st->sae, st->point, tok, n, T, SAE_BATCH,
				      err)) < 0)
		goto cleanup;
	for (size_t i = 0; i < n; i++) {
		double *row = values + i * M_COUNT;
		const double *bt = st->battery + (size_t)prepared_at(st, items[i].key) * N_BAT;
		double den = q[i].ce_zero - q[i].ce_clean;
		row[M_CE_RECOVERED] = den != 0.0 ? (q[i].ce_zero - q[i].ce_sae) / den : 0.0;
		row[M_KL] = q[i].kl_sae;
		row[M_L0] = q[i].l0;
		row[M_COS] = q[i].cos;
		row[M_NECESSITY] = bt[B_NEC];
		row[M_NECESSITY_CONTROL] = bt[B_NEC_CTL];
		row[M_STEERING] = bt[B_STEER];
		row[M_STEERING_CONTROL] = bt[B_STEER_CTL];
		row[M_SELECTIVITY] = bt[B_SEL];
		row[M_COLLATERAL] = bt[B_COL];
		row[M_CAUSAL_HIT] = bt[B_HIT];
	}
	rc = 0;
cleanup:
	free(tok);
	free(topic);
	free(q);
	return rc;
}

/* ---- figures ---- */

#define SAE_TOP 5
#define SAE_N_P 4      /* TMS sparsities: p = 0.04 x 2^i */
#define SAE_N_K 4      /* Pareto: TopK k = 2^(i+1) */
#define SAE_PARETO_TOKENS 32768

/* TMS recovery as features get denser: the preset of `sae tms` (48 features
 * in 24 dims, TopK width 96, k 3, 204,800 rows of 256, lr 3e-3, seed 1) at
 * p = 0.04, 0.08, 0.16, 0.32. */
static int tms_figure(mb_figure_list *out, mb_error *err)
{
	mb_sae_train_config cfg = mb_sae_train_defaults(MB_SAE_TOPK);
	double x[SAE_N_P], mm[SAE_N_P], rec[SAE_N_P];
	mb_figure *f;
	int rc;

	cfg.width = 96;
	cfg.k = 3;
	cfg.tokens = 256 * 800;
	cfg.batch = 256;
	cfg.lr = 0.003;
	cfg.seed = 1;
	for (int i = 0; i < SAE_N_P; i++) {
		x[i] = 0.04 * (double)(1 << i);
		if ((rc = mb_sae_tms_recovery(&mm[i], &rec[i], NULL, 48, 24, x[i], 1, &cfg, err)) < 0)
			return rc;
	}
	if ((rc = mb_figure_list_add(out, &f, MB_FIGURE_LINES, "sae.tms_recovery", 2, SAE_N_P,
				     err)) < 0 ||
	    (rc = mb_figure_set_text(f, "Toy model of superposition: recovery as features get "
				     "denser (48 features in 24 dims, TopK 96, k 3)",
				     "p (probability a feature is active)", "recovery", "", err)) < 0 ||
	    (rc = mb_figure_set_x(f, x, err)) < 0 ||
	    (rc = mb_figure_set_row_label(f, 0, "MMCS", err)) < 0 ||
	    (rc = mb_figure_set_row_label(f, 1, "fraction recovered (cos >= 0.9)", err)) < 0)
		return rc;
	for (int i = 0; i < SAE_N_P; i++) {
		f->values[i] = mm[i];
		f->values[SAE_N_P + i] = rec[i];
	}
	return 0;
}

/* L0 against CE loss recovered on the entry's items for TopK SAEs of the
 * entry SAE's width and hook at k = 2, 4, 8, 16, each trained on
 * SAE_PARETO_TOKENS rows of the model's language (seed 0). */
static int pareto_figure(mb_figure_list *out, sae_state *st, const int32_t *tok, size_t n,
			 mb_error *err)
{
	double l0[SAE_N_K], ce[SAE_N_K];
	mb_sae_item_metrics *q = malloc(n * sizeof(*q));
	mb_figure *f;
	int rc = 0;

	if (!q)
		return mb_error_oom(err, "sae pareto", n * sizeof(*q));
	for (int i = 0; i < SAE_N_K && rc == 0; i++) {
		mb_sae_corpus *c = NULL;
		mb_sae_acts *a = NULL;
		mb_sae *s = NULL;
		mb_sae_train_result res;
		mb_sae_source src;
		mb_sae_train_config cfg = mb_sae_train_defaults(MB_SAE_TOPK);
		cfg.width = st->sae->d_sae;
		cfg.k = 2 << i;
		cfg.tokens = SAE_PARETO_TOKENS;
		cfg.batch = 1024;
		memset(&res, 0, sizeof(res));
		if ((rc = mb_sae_corpus_open_zoo(&c, st->model_dir, 0, err)) == 0 &&
		    (rc = mb_sae_acts_init(&a, st->model, st->point, c, 8, 0, err)) == 0) {
			src = mb_sae_acts_source(a);
			rc = mb_sae_train(&s, &res, &src, &cfg, NULL, NULL, err);
		}
		if (rc == 0)
			rc = mb_sae_item_quality(q, st->engine, s, st->point, tok, n, st->seq, SAE_BATCH,
						 err);
		if (rc == 0) {
			double sl = 0, sc = 0;
			for (size_t j = 0; j < n; j++) {
				double den = q[j].ce_zero - q[j].ce_clean;
				sl += q[j].l0;
				sc += den != 0.0 ? (q[j].ce_zero - q[j].ce_sae) / den : 0.0;
			}
			l0[i] = sl / (double)n;
			ce[i] = sc / (double)n;
		}
		json_decref(res.record);
		mb_sae_free(s);
		mb_sae_acts_free(a);
		mb_sae_corpus_free(c);
	}
	if (rc == 0 &&
	    ((rc = mb_figure_list_add(out, &f, MB_FIGURE_LINES, "sae.pareto", 1, SAE_N_K, err)) <
		     0 ||
	     (rc = mb_figure_set_text(f, "Sparsity against fidelity: TopK SAEs at k = 2, 4, 8, 16 "
				      "on the entry's hook",
				      "L0 (mean active latents)", "CE loss recovered", "", err)) < 0 ||
	     (rc = mb_figure_set_row_label(f, 0, "CE loss recovered", err)) < 0)) {
		free(q);
		return rc;
	}
	if (rc == 0) {
		for (int i = 0; i < SAE_N_K; i++)
			f->values[i] = ce[i];
		/* L0 is at most k and grows with it; should two come out equal,
		 * plot over k instead */
		if (mb_figure_set_x(f, l0, err) < 0) {
			double kx[SAE_N_K];
			for (int i = 0; i < SAE_N_K; i++)
				kx[i] = 2 << i;
			rc = mb_figure_set_x(f, kx, err);
		}
	}
	free(q);
	return rc;
}

/*
 * The report's pictures of the SAE on the entry's items: each labelled
 * feature's mean activation by item topic (a selective feature lights its
 * own column), its top activating items (their mean activation, the row
 * label listing their topics), every latent's activation density; with
 * params.curves, TMS recovery against sparsity and the L0 / CE-recovered
 * Pareto curve.
 */
static int sae_figures(void *state, const mb_item *items, size_t n, const double *values,
		       mb_figure_list *out, mb_error *err)
{
	sae_state *st = state;
	const int T = st->seq, K = st->tf.n, S = st->sae->d_sae;
	if (n == 0)
		return 0;
	int32_t *tok = malloc(n * (size_t)T * sizeof(int32_t));
	int *topic = malloc(n * sizeof(int));
	float *mx = malloc((size_t)S * sizeof(float));
	double *im = malloc(n * (size_t)S * sizeof(double)), *dens = malloc((size_t)S * sizeof(double));
	mb_figure *f;
	int rc;

	(void)values;
	if (!tok || !topic || !mx || !im || !dens) {
		rc = mb_error_oom(err, "sae figures", n * (size_t)S * sizeof(double));
		goto cleanup;
	}
	if ((rc = item_inputs(tok, topic, st, items, n, err)) < 0 ||
	    (rc = mb_sae_act_summary(mx, im, dens, st->engine, st->sae, st->point, tok, n, T,
				     SAE_BATCH, err)) < 0)
		goto cleanup;
	if ((rc = mb_figure_list_add(out, &f, MB_FIGURE_HEATMAP, "sae.activation_by_topic",
				     (size_t)K, (size_t)K, err)) < 0 ||
	    (rc = mb_figure_set_text(f, "Labelled features: mean activation by the item's topic",
				     "item topic", "feature", "mean activation", err)) < 0)
		goto cleanup;
	for (int a = 0; a < K; a++) {
		char label[64];
		const int j = st->tf.features[a].latent;
		snprintf(label, sizeof(label), "topic=%d (latent %d)", a, j);
		if ((rc = mb_figure_set_row_label(f, (size_t)a, label, err)) < 0)
			goto cleanup;
		for (int t = 0; t < K; t++) {
			double s = 0;
			size_t c = 0;
			for (size_t i = 0; i < n; i++)
				if (topic[i] == t) {
					s += im[i * S + j];
					c++;
				}
			f->values[(size_t)a * K + t] = c ? s / (double)c : NAN;
		}
	}
	const int top = n < SAE_TOP ? (int)n : SAE_TOP;
	if ((rc = mb_figure_list_add(out, &f, MB_FIGURE_HEATMAP, "sae.top_items", (size_t)K,
				     (size_t)top, err)) < 0 ||
	    (rc = mb_figure_set_text(f, "Top activating items per feature (row: their topics)",
				     "rank", "feature", "item mean activation", err)) < 0)
		goto cleanup;
	for (int a = 0; a < K; a++) {
		const int j = st->tf.features[a].latent;
		size_t best[SAE_TOP];
		char label[128];
		int len = snprintf(label, sizeof(label), "topic=%d: items of topics", a);
		for (int r = 0; r < top; r++) {
			size_t b = n;
			for (size_t i = 0; i < n; i++) {
				int used = 0;
				for (int q = 0; q < r; q++)
					used |= best[q] == i;
				if (!used && (b == n || im[i * S + j] > im[b * S + j]))
					b = i;
			}
			best[r] = b;
			f->values[(size_t)a * top + r] = im[b * S + j];
			if (len > 0 && (size_t)len < sizeof(label))
				len += snprintf(label + len, sizeof(label) - (size_t)len, " %d",
						topic[b]);
		}
		if ((rc = mb_figure_set_row_label(f, (size_t)a, label, err)) < 0)
			goto cleanup;
	}
	for (int r = 0; r < top; r++) {
		char label[16];
		snprintf(label, sizeof(label), "#%d", r + 1);
		if ((rc = mb_figure_set_col_label(f, (size_t)r, label, err)) < 0)
			goto cleanup;
	}
	if ((rc = mb_figure_list_add(out, &f, MB_FIGURE_STEM, "sae.density", 1, (size_t)S, err)) <
		    0 ||
	    (rc = mb_figure_set_text(f, "Activation density per latent", "latent",
				     "fraction of positions firing", "", err)) < 0)
		goto cleanup;
	for (int j = 0; j < S; j++)
		f->values[j] = dens[j];
	if (st->curves &&
	    ((rc = tms_figure(out, err)) < 0 || (rc = pareto_figure(out, st, tok, n, err)) < 0))
		goto cleanup;
	rc = 0;
cleanup:
	free(tok);
	free(topic);
	free(mx);
	free(im);
	free(dens);
	return rc;
}

/* params.sae, the SAE folder, is relative to the spec's root (mb_task_open). */
static const char *const sae_path_params[] = {"sae", NULL};

const mb_task mb_task_sae = {
	.name = "sae",
	.version = 1,
	.summary = "feature causality of an SAE spliced into the model: quality (CE recovered, "
		   "KL, L0) and the causal battery of labelled features against random-direction "
		   "controls",
	.metrics = sae_metrics,
	.n_metrics = M_COUNT,
	.batch = SAE_BATCH,
	.parallel_inside = 1,
	.generate = sae_generate,
	.check_params = sae_check_params,
	.open = sae_open,
	.close = sae_close,
	.path_params = sae_path_params,
	.prepare = sae_prepare,
	.run = sae_run,
	.figures = sae_figures,
	.derived = sae_derived,
	.n_derived = sizeof(sae_derived) / sizeof(sae_derived[0]),
};
