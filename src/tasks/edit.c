/*
 * edit.c: the `edit` task: how well ROME (edit.h; Meng et al. 2022) rewrites
 * a fact of a model, and what else the rewrite moves, scored per edit request
 * with CounterFact's metrics (Meng et al. 2022, section 3.2 and appendix C,
 * "Evaluation metrics"; the authors' experiments/py/eval_utils_counterfact.py).
 *
 * Legend: B batch, T positions, D d_model, M d_mlp, V vocab, L layers, K
 * contexts (the bare prompt and the sampled prefixes), U unrelated prompts,
 * G generation prompts.
 *
 * Items. One edit request per item, in the fields of the zoo's facts
 * datasets (CounterFact's, Meng et al. 2022 appendix C):
 *   "subject"       the subject ("Danielle Darrieux"; may be several tokens)
 *   "relation"      its relation (the stratum)
 *   "prompt"        the edit prompt, "{}" where the subject goes ("The mother
 *                   tongue of {} is"); the object follows after a space
 *   "target_true"   the object the model should know (o^c)
 *   "target_new"    the object the edit writes (o*)
 *   "paraphrase_prompts"   full prompts stating the same fact in other words
 *   "neighborhood_prompts" full prompts of other subjects with the same
 *                   relation and the same true object: they must keep it
 *   "unrelated_prompts"    full prompts for the KL of the next token
 *   "generation_prompts"   optional, full prompts for the fluency
 *                   continuations; default: the edit prompt and paraphrases
 *   "kl_prompt"     optional: the essence prompt of v* ("{} is a" in the
 *                   paper); default: the edit prompt
 * A prompt list holds strings or objects whose "prompt" is the string;
 * "case_id", "attribute_prompts" and "same_subject_prompts" are accepted and
 * not read. generate: with params {"source": path relative to the repository
 * root (where `mechbench datasets` runs) or absolute, "source_sha256": the
 * sha256 of its bytes}, one request object per line of that file becomes an
 * item (stratum the relation, cluster the subject): CounterFact itself, or
 * requests written for a downloaded model; any other params are the zoo
 * facts model's ({"recipe": "facts", ...}: mb_facts_requests_generate,
 * facts_requests.h, which writes these fields from its knowledge base).
 *
 * Run params (check_params): "layer" (required: the MLP ROME edits, the
 * decisive layer of causal tracing), "control_layer" (required: a
 * non-decisive layer, the wrong-layer control), "seed" (0), "steps" (20),
 * "lr", "clamp", "weight_decay", "kl_factor" (the v* optimisation; default
 * the published values, mb_rome_params_default), "sequential" (below),
 * "prefixes" (5) and "prefix_len" (5): the sampled
 * contexts of k* and v*, "corpus_sequences" (64) and "corpus_len" (min(32,
 * n_positions)): the corpus of the key second moment C, "gen_tokens" (10):
 * greedy continuation length, "control_scale" (1): the norm of the random
 * update as a multiple of the edit's (1 is the control; the test raises it to
 * show the control can fail). "method" ("rome"): "memit" makes each item's
 * edit with MEMIT (edit.h, mb_memit_edit: the one request, published
 * hyperparameters, clamp 0.75) over "memit_layers" (default [layer]; the
 * last below the model's last layer), with C of each, and "mom2_weight"
 * (lambda, default the published 20000). lambda weighs C against the new
 * key: by Sherman-Morrison one request's update is C^-1 k r^T / (lambda +
 * k^T C^-1 k), and k^T C^-1 k is about d_mlp for a typical key, so the
 * published 20000 of GPT-2 XL (d_mlp 6400) writes ~24% of the residual
 * there but ~1% on a model of d_mlp 256: set lambda for the model. With
 * memit the control is a random rank-one update at each edited layer of that
 * layer's update's Frobenius norm (mb_rome_control_norm, the layers in
 * order from the same stream), the wrong-layer edit is MEMIT over
 * [control_layer], update_norm the Frobenius norm of the whole update (all
 * layers), and the "sequential" battery edits with MEMIT too (one request at
 * a time, each on the model edited so far).
 *
 * open. Contexts: mb_rome_prefixes(prefixes, prefix_len, first, top_k 5,
 * seed), first the tokenizer's "<|endoftext|>" or, without one, a uniform
 * draw; the contexts are the bare prompt then those. Corpus: the model's own
 * text, mb_rome_prefixes(corpus_sequences, corpus_len, first, 5, seed + 1),
 * and C = mb_rome_stats_compute over it (batch 8) at layer and at
 * control_layer. (A model's own samples stand in for the paper's Wikipedia:
 * the zoo models know no other text; C needs corpus tokens >= M.)
 *
 * Per item (run, one edit per item on a private copy of mlp.c_proj, so an
 * item's values depend on nothing but the item, the model and the params):
 * P(o | prompt) = exp(-mean over o's tokens of -log p(token)), as the
 * authors' code compares objects of different lengths; "before" is the
 * model as loaded, "edited" the model with the item's ROME edit at layer.
 *   edit.efficacy@1              binary, higher: P(new) > P(true) on the
 *                                edit prompt, edited (ES, "efficacy score")
 *   edit.efficacy_magnitude@1    P(new) - P(true) on the edit prompt (EM)
 *   edit.paraphrase@1            fraction of the paraphrases with P(new) >
 *                                P(true) (PS)
 *   edit.paraphrase_magnitude@1  mean P(new) - P(true) over them (PM)
 *   edit.neighbourhood@1         fraction of the neighbourhood prompts with
 *                                P(true) > P(new) (NS: they keep the old object)
 *   edit.neighbourhood_magnitude@1 mean P(true) - P(new) over them (NM)
 *   edit.score@1                 harmonic mean of efficacy, paraphrase and
 *                                neighbourhood of the item (0 when one is 0);
 *                                the paper's S is the harmonic mean of the
 *                                three means, which the report can compute
 *                                from the pooled values; the per-item form
 *                                is what a paired gate can compare
 *   edit.base_magnitude@1        P(new) - P(true) on the edit prompt before
 *                                the edit (negative when the model knows)
 *   edit.entropy@1               generation entropy, edited: per generation
 *                                prompt, the greedy continuation of gen_tokens
 *                                tokens; its n-gram entropies H_n = -sum f log2
 *                                f over the frequencies f of its token n-grams,
 *                                combined as mean(2/3 H_2, 4/3 H_3) (the
 *                                authors' compute_n_gram_entropy, over tokens
 *                                instead of NLTK words); the mean over prompts
 *   edit.base_entropy@1          the same before the edit
 *   edit.entropy_drop@1          base_entropy - entropy (derived)
 *   edit.kl_unrelated@1          mean over the unrelated prompts of KL(P_before
 *                                || P_edited) of the next token, in nats
 *   edit.control_kl_unrelated@1  the same for the control: a rank-one update
 *                                of the same Frobenius norm in a random
 *                                direction (mb_rome_control, times
 *                                control_scale; stream "edit/control", index
 *                                the item's content key) instead of the edit
 *   edit.kl_excess@1             kl_unrelated - control_kl_unrelated (derived:
 *                                the collateral the edit has beyond any change
 *                                of its size)
 *                                The control's role: it is matched on the
 *                                update's Frobenius norm, so its KL says how
 *                                much collateral a change of the edit's size
 *                                makes when nothing aims it; an edit whose
 *                                own KL is at or below that (kl_excess <= 0)
 *                                moves unrelated text no more than its size
 *                                alone explains. A random direction is not
 *                                harmless: a unit u' carries the keys'
 *                                average variance u'^T C u' ~ tr(C)/M, while
 *                                the edit's u = C^-1 k* / |.| points where
 *                                the corpus keys vary little (u^T C u is
 *                                small), so the control's KL is larger than
 *                                a good edit's and kl_excess is negative; the
 *                                gate bounds kl_excess from above (threshold
 *                                0.1 nats in the canonical entry), and the
 *                                test shows the control is not ~0 by
 *                                construction (1000x its norm gives a KL of
 *                                ~1). The control whose collateral is ~0
 *                                when the edit is specific is the second,
 *                                energy-matched one (energy_control_kl
 *                                below).
 *   edit.control_magnitude@1     P(new) - P(true) on the edit prompt under the
 *                                control (the control must not say o*)
 *   edit.control_neighbourhood@1 neighbourhood under the control
 *   edit.wrong_layer_efficacy@1, _paraphrase@1, _neighbourhood@1, _score@1
 *                                the same with the edit made at
 *                                control_layer (the paper's figure 5: the
 *                                decisive layer generalises and stays
 *                                specific, others do not)
 *   edit.layer_score_gain@1      score - wrong_layer_score (derived)
 *   edit.update_norm@1           ||u r^T||_F = ||r|| (u is a unit vector)
 *   edit.energy_control_kl@1     the KL on unrelated prompts for the second
 *                                control, matched on what the update does to
 *                                the model's own activations instead of on
 *                                its norm: the edit's output energy on the
 *                                corpus keys, E = mean over k of ||k^T dW||^2
 *                                = tr(dW^T C dW) (rome: ||r||^2 u^T C u;
 *                                memit: per edited layer from the weights'
 *                                change), and a random rank-one update
 *                                u' r'^T with ||u'|| = 1 and ||r'||^2 u'^T C
 *                                u' = E (times control_scale), u', r' drawn
 *                                by mb_rome_control_norm from stream
 *                                ("edit/energy_control", the item's content
 *                                key), per edited layer in order: a change
 *                                that moves the MLP's output on the model's
 *                                own text as much as the edit does, spread
 *                                over every key instead of aimed at one
 *   edit.energy_kl_excess@1      kl_unrelated - energy_control_kl (derived)
 *
 * Figures: "edit.trace_mlp" and "edit.trace_resid", heatmaps of the causal
 * trace (mb_trace_run: noise 3 x the SD of the subjects' embeddings, 10
 * samples, an MLP window of L / 5 layers, 1 to 10: the paper's 10 of GPT-2
 * XL's 48) averaged over the entry's first 8 items, by
 * layer and the paper's position groups (mb_trace_groups).
 */
#include <mechbench/task.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/detmath.h>
#include <mechbench/edit.h>
#include <mechbench/engine.h>
#include <mechbench/facts_requests.h>
#include <mechbench/file.h>
#include <mechbench/figure.h>
#include <mechbench/logits.h>
#include <mechbench/model.h>
#include <mechbench/rng.h>
#include <mechbench/sha256.h>
#include <mechbench/tokenizer.h>

#define ED_TRACE_ITEMS 8
#define ED_TRACE_SAMPLES 10
#define ED_TRACE_WINDOW 10

enum {
	M_EFFICACY,
	M_EFF_MAG,
	M_PARA,
	M_PARA_MAG,
	M_NEIGH,
	M_NEIGH_MAG,
	M_SCORE,
	M_BASE_MAG,
	M_ENTROPY,
	M_BASE_ENTROPY,
	M_ENTROPY_DROP,
	M_KL,
	M_CTL_KL,
	M_KL_EXCESS,
	M_CTL_MAG,
	M_CTL_NEIGH,
	M_WL_EFFICACY,
	M_WL_PARA,
	M_WL_NEIGH,
	M_WL_SCORE,
	M_LAYER_GAIN,
	M_NORM,
	M_ECTL_KL,
	M_ECTL_EXCESS,
	M_COUNT
};

#define CF "(CounterFact, Meng et al. 2022 sec. 3.2; edit.c)"

static const mb_metric_def ed_metrics[M_COUNT] = {
	{"edit.efficacy", 1, MB_METRIC_BINARY, MB_HIGHER_IS_BETTER,
	 "1 when P(new) > P(true) on the edit prompt after the edit " CF},
	{"edit.efficacy_magnitude", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "P(new) - P(true) on the edit prompt after the edit " CF},
	{"edit.paraphrase", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "fraction of paraphrases with P(new) > P(true) after the edit " CF},
	{"edit.paraphrase_magnitude", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "mean P(new) - P(true) over the paraphrases after the edit " CF},
	{"edit.neighbourhood", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "fraction of neighbourhood prompts keeping P(true) > P(new) after the edit " CF},
	{"edit.neighbourhood_magnitude", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "mean P(true) - P(new) over the neighbourhood prompts after the edit " CF},
	{"edit.score", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "harmonic mean of the item's efficacy, paraphrase and neighbourhood " CF},
	{"edit.base_magnitude", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "P(new) - P(true) on the edit prompt before the edit (the model knows its fact; edit.c)"},
	{"edit.entropy", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "n-gram entropy mean(2/3 H2, 4/3 H3) of greedy continuations after the edit (fluency, "
	 "Meng et al. 2022 sec. 3.2; edit.c)"},
	{"edit.base_entropy", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "the same generation entropy before the edit (edit.c)"},
	{"edit.entropy_drop", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "base_entropy - entropy, paired per item (edit.c)"},
	{"edit.kl_unrelated", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "mean KL(before || edited) of the next token on unrelated prompts, nats (edit.c)"},
	{"edit.control_kl_unrelated", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "the same KL for a random rank-one update of the edit's norm (control; edit.c)"},
	{"edit.kl_excess", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "kl_unrelated - control_kl_unrelated, paired per item (edit.c)"},
	{"edit.control_magnitude", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "P(new) - P(true) on the edit prompt under the random update (control; edit.c)"},
	{"edit.control_neighbourhood", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "neighbourhood success under the random update (control; edit.c)"},
	{"edit.wrong_layer_efficacy", 1, MB_METRIC_BINARY, MB_HIGHER_IS_BETTER,
	 "efficacy of the edit made at the non-decisive control_layer (control; edit.c)"},
	{"edit.wrong_layer_paraphrase", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "paraphrase success of the edit made at control_layer (control; edit.c)"},
	{"edit.wrong_layer_neighbourhood", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "neighbourhood success of the edit made at control_layer (control; edit.c)"},
	{"edit.wrong_layer_score", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "score of the edit made at control_layer (control; edit.c)"},
	{"edit.layer_score_gain", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "score - wrong_layer_score, paired per item (edit.c)"},
	{"edit.update_norm", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "Frobenius norm of the rank-one update u r^T (edit.c)"},
	{"edit.energy_control_kl", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "the KL on unrelated prompts for a random rank-one update matched to the edit's output "
	 "energy on the corpus keys (control; edit.c)"},
	{"edit.energy_kl_excess", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "kl_unrelated - energy_control_kl, paired per item (edit.c)"},
};

static const mb_metric_diff ed_derived[] = {
	{"edit.entropy_drop", "edit.base_entropy", "edit.entropy"},
	{"edit.kl_excess", "edit.kl_unrelated", "edit.control_kl_unrelated"},
	{"edit.layer_score_gain", "edit.score", "edit.wrong_layer_score"},
	{"edit.energy_kl_excess", "edit.kl_unrelated", "edit.energy_control_kl"},
};

/* ---- items ------------------------------------------------------------------- */

static const char *const ed_fields[] = {"case_id", "subject", "relation", "prompt",
					"target_true", "target_new", "paraphrase_prompts",
					"neighborhood_prompts", "unrelated_prompts",
					"generation_prompts", "attribute_prompts",
					"same_subject_prompts", "kl_prompt", NULL};

/* The text of element i of a prompt list: a string, or an object's "prompt". */
static const char *prompt_at(const json_t *arr, size_t i)
{
	const json_t *v = json_array_get(arr, i);

	if (json_is_object(v))
		v = json_object_get(v, "prompt");
	return json_is_string(v) && json_string_length(v) ? json_string_value(v) : NULL;
}

/* Checks one request object; what names it in errors ("file:7", "item <key>"). */
static int check_request(const json_t *o, const char *what, mb_error *err)
{
	static const char *const strs[] = {"subject", "relation", "prompt", "target_true",
					   "target_new"};
	static const char *const lists[] = {"paraphrase_prompts", "neighborhood_prompts",
					    "unrelated_prompts", "generation_prompts"};
	const char *key;
	json_t *v;

	if (!json_is_object(o))
		return mb_error_set(err, MB_EINVALID, "%s: expected an edit request object", what);
	json_object_foreach((json_t *)o, key, v) {
		int ok = 0;
		for (int i = 0; ed_fields[i]; i++)
			ok |= strcmp(key, ed_fields[i]) == 0;
		if (!ok)
			return mb_error_set(err, MB_EINVALID, "%s: unknown field \"%s\"", what, key);
	}
	for (int i = 0; i < 5; i++) {
		v = json_object_get(o, strs[i]);
		if (!json_is_string(v) || !json_string_length(v))
			return mb_error_set(err, MB_EINVALID, "%s: \"%s\": expected a non-empty "
					    "string", what, strs[i]);
	}
	if (!strstr(json_string_value(json_object_get(o, "prompt")), "{}"))
		return mb_error_set(err, MB_EINVALID, "%s: \"prompt\": must contain {} (the subject)",
				    what);
	if (strcmp(json_string_value(json_object_get(o, "target_true")),
		   json_string_value(json_object_get(o, "target_new"))) == 0)
		return mb_error_set(err, MB_EINVALID, "%s: \"target_new\": equals target_true", what);
	v = json_object_get(o, "kl_prompt");
	if (v && !json_is_string(v))
		return mb_error_set(err, MB_EINVALID, "%s: \"kl_prompt\": expected a string", what);
	for (int i = 0; i < 4; i++) {
		v = json_object_get(o, lists[i]);
		if (!v && i == 3)
			continue;
		if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > 256)
			return mb_error_set(err, MB_EINVALID, "%s: \"%s\": expected an array of 1 to "
					    "256 prompts", what, lists[i]);
		for (size_t j = 0; j < json_array_size(v); j++)
			if (!prompt_at(v, j))
				return mb_error_set(err, MB_EINVALID, "%s: \"%s\"[%zu]: expected a "
						    "non-empty string or an object with one in "
						    "\"prompt\"", what, lists[i], j);
	}
	return 0;
}

static int ed_generate(mb_item_list *out, uint64_t seed, const json_t *params, mb_error *err)
{
	json_t *p = params ? json_object_get(params, "source") : NULL;
	char *text = NULL, *line;
	const char *key;
	json_t *v;
	size_t len = 0;
	int rc, lineno = 0;

	if (params && !json_is_object(params))
		return mb_error_set(err, MB_EINVALID, "params: expected an object");
	if (!p) /* the zoo facts model's knowledge base (facts_requests.h) */
		return mb_facts_requests_generate(out, seed, params, err);
	json_object_foreach((json_t *)params, key, v)
		if (strcmp(key, "source") && strcmp(key, "source_sha256"))
			return mb_error_set(err, MB_EINVALID, "params.%s: unknown field (edit takes "
					    "source, source_sha256)", key);
	if ((rc = mb_task_read_source(&text, &len, params, "one JSON request per line", err)) < 0)
		return rc;
	for (line = text; line && *line;) {
		char *nl = strchr(line, '\n'), what[1200];
		json_error_t je;
		json_t *o;

		if (nl)
			*nl = '\0';
		lineno++;
		snprintf(what, sizeof(what), "%s:%d", json_string_value(p), lineno);
		if (line[0]) {
			o = json_loads(line, JSON_REJECT_DUPLICATES, &je);
			if (!o) {
				rc = mb_error_set(err, MB_EINVALID, "%s:%d: %s", what, je.column,
						  je.text);
				goto cleanup;
			}
			if ((rc = check_request(o, what, err)) < 0) {
				json_decref(o);
				goto cleanup;
			}
			rc = mb_item_list_add(out, json_string_value(json_object_get(o, "relation")),
					      json_string_value(json_object_get(o, "subject")),
					      json_incref(o), err);
			json_decref(o);
			if (rc < 0)
				goto cleanup;
		}
		line = nl ? nl + 1 : NULL;
	}
	if (out->n == 0)
		rc = mb_error_set(err, MB_EINVALID, "%s: no requests", json_string_value(p));
cleanup:
	free(text);
	return rc;
}

/* ---- params ------------------------------------------------------------------ */

#define ED_MAX_SEQ_POINTS 16

typedef struct ed_params {
	int64_t layer, control_layer, seed, steps, prefixes, prefix_len, corpus_sequences,
		corpus_len, gen_tokens;
	double control_scale;
	double lr, clamp, weight_decay, kl_factor; /* v*; < 0: the published value */
	double mom2_weight;                        /* memit's lambda; < 0: published */
	int64_t seq[ED_MAX_SEQ_POINTS]; /* "sequential": ascending edit counts */
	int n_seq;
	int memit;                      /* "method": 0 rome, 1 memit */
	int layers[MB_MEMIT_MAX_LAYERS]; /* "memit_layers" (default: [layer]) */
	int n_layers;
} ed_params;

/* o's key: 1 to max strictly ascending integers in [lo, hi] into out (*n
 * of them; *n = 0 when absent); what names them in the field error. */
static int read_ascending_ints(const mb_json_doc *doc, const json_t *o, const char *at,
			       const char *key, int64_t lo, int64_t hi, int max, const char *what,
			       int64_t *out, int *n, mb_error *err)
{
	json_t *a = json_object_get(o, key);
	char f[256];

	*n = 0;
	if (!a)
		return 0;
	mb_json_path_key(f, sizeof(f), at, key);
	if (!json_is_array(a) || json_array_size(a) < 1 || json_array_size(a) > (size_t)max)
		return doc ? mb_json_field_error(doc, err, MB_EINVALID, f, "expected 1 to %d %s",
						 max, what)
			   : MB_EINVALID;
	for (size_t i = 0; i < json_array_size(a); i++) {
		json_t *v = json_array_get(a, i);
		if (!json_is_integer(v) || json_integer_value(v) < lo ||
		    json_integer_value(v) > hi || (i && json_integer_value(v) <= out[i - 1]))
			return doc ? mb_json_field_error(doc, err, MB_EINVALID, f,
							 "expected ascending %s in [%lld, %lld]",
							 what, (long long)lo, (long long)hi)
				   : MB_EINVALID;
		out[(*n)++] = json_integer_value(v);
	}
	return 0;
}

/* params.method ("rome" or "memit") and params.memit_layers (1 to
 * MB_MEMIT_MAX_LAYERS ascending layers; memit only). */
static int read_method(ed_params *p, const mb_json_doc *doc, const json_t *o, const char *at,
		       mb_error *err)
{
	json_t *m = json_object_get(o, "method");
	int64_t layers[MB_MEMIT_MAX_LAYERS];
	char f[256];
	int rc;

	p->memit = 0;
	p->n_layers = 0;
	if (m) {
		mb_json_path_key(f, sizeof(f), at, "method");
		if (!json_is_string(m) || (strcmp(json_string_value(m), "rome") &&
					   strcmp(json_string_value(m), "memit")))
			return doc ? mb_json_field_error(doc, err, MB_EINVALID, f, "expected "
							 "\"rome\" or \"memit\"")
				   : MB_EINVALID;
		p->memit = strcmp(json_string_value(m), "memit") == 0;
	}
	if (!json_object_get(o, "memit_layers"))
		return 0;
	mb_json_path_key(f, sizeof(f), at, "memit_layers");
	if (!p->memit)
		return doc ? mb_json_field_error(doc, err, MB_EINVALID, f, "only with method "
						 "\"memit\"")
			   : MB_EINVALID;
	if ((rc = read_ascending_ints(doc, o, at, "memit_layers", 0, 4095, MB_MEMIT_MAX_LAYERS,
				      "layers", layers, &p->n_layers, err)) < 0)
		return rc;
	for (int i = 0; i < p->n_layers; i++)
		p->layers[i] = (int)layers[i];
	return 0;
}

static int read_params(ed_params *p, const mb_json_doc *doc, const json_t *params,
		       const char *at, mb_error *err)
{
	static const char *const allowed[] = {"layer", "control_layer", "seed", "steps",
					      "prefixes", "prefix_len", "corpus_sequences",
					      "corpus_len", "gen_tokens", "control_scale",
					      "sequential", "lr", "clamp", "weight_decay",
					      "kl_factor", "method", "memit_layers", "mom2_weight",
					      NULL};
	static const char *const vstar[5] = {"lr", "clamp", "weight_decay", "kl_factor",
					     "mom2_weight"};
	json_t *o = (json_t *)params;
	double cs = 1.0;
	int rc;

	*p = (ed_params){.steps = 20, .prefixes = 5, .prefix_len = 5, .corpus_sequences = 64,
			 .gen_tokens = 10, .control_scale = 1.0, .lr = -1, .clamp = -1,
			 .weight_decay = -1, .kl_factor = -1, .mom2_weight = -1};
	double *vs[5] = {&p->lr, &p->clamp, &p->weight_decay, &p->kl_factor, &p->mom2_weight};
	if (!params || !json_is_object(params))
		return doc ? mb_json_field_error(doc, err, MB_EINVALID, at, "expected an object "
						 "with layer and control_layer")
			   : mb_error_set(err, MB_EINVALID, "params: expected an object");
	if ((rc = read_ascending_ints(doc, o, at, "sequential", 1, 100000, ED_MAX_SEQ_POINTS,
				      "edit counts", p->seq, &p->n_seq, err)) < 0 ||
	    (rc = read_method(p, doc, o, at, err)) < 0)
		return rc;
	if (!doc) /* already checked against the spec: read the values */
		goto read;
	if ((rc = mb_json_check_keys(doc, o, at, allowed, err)) < 0 ||
	    (rc = mb_json_get_int(doc, o, at, "layer", 1, 0, 4095, &p->layer, err)) < 0 ||
	    (rc = mb_json_get_int(doc, o, at, "control_layer", 1, 0, 4095, &p->control_layer,
				  err)) < 0 ||
	    (rc = mb_json_get_int(doc, o, at, "seed", 0, 0, INT64_MAX, &p->seed, err)) < 0 ||
	    (rc = mb_json_get_int(doc, o, at, "steps", 0, 1, 1000, &p->steps, err)) < 0 ||
	    (rc = mb_json_get_int(doc, o, at, "prefixes", 0, 0, 64, &p->prefixes, err)) < 0 ||
	    (rc = mb_json_get_int(doc, o, at, "prefix_len", 0, 1, 256, &p->prefix_len, err)) < 0 ||
	    (rc = mb_json_get_int(doc, o, at, "corpus_sequences", 0, 1, 100000,
				  &p->corpus_sequences, err)) < 0 ||
	    (rc = mb_json_get_int(doc, o, at, "corpus_len", 0, 2, 4096, &p->corpus_len, err)) < 0 ||
	    (rc = mb_json_get_int(doc, o, at, "gen_tokens", 0, 3, 256, &p->gen_tokens, err)) < 0 ||
	    (rc = mb_json_get_number(doc, o, at, "control_scale", 0, &cs, err)) < 0)
		return rc;
	if (!(cs > 0) || !isfinite(cs)) {
		char f[256];
		mb_json_path_key(f, sizeof(f), at, "control_scale");
		return mb_json_field_error(doc, err, MB_EINVALID, f, "expected a number > 0");
	}
	if (p->layer == p->control_layer) {
		char f[256];
		mb_json_path_key(f, sizeof(f), at, "control_layer");
		return mb_json_field_error(doc, err, MB_EINVALID, f, "must differ from layer");
	}
	p->control_scale = cs;
	for (int i = 0; i < 5; i++) {
		double x = -1;
		char f[256];
		if ((rc = mb_json_get_number(doc, o, at, vstar[i], 0, &x, err)) < 0)
			return rc;
		if (!json_object_get(o, vstar[i]))
			continue;
		mb_json_path_key(f, sizeof(f), at, vstar[i]);
		if (!isfinite(x) || x < 0 || ((i < 2 || i == 4) && x == 0))
			return mb_json_field_error(doc, err, MB_EINVALID, f, "expected a number %s 0",
						   i < 2 || i == 4 ? ">" : ">=");
		*vs[i] = x;
	}
	return 0;
read:
	for (int i = 0; i < 5; i++)
		if (json_object_get(o, vstar[i]))
			*vs[i] = json_number_value(json_object_get(o, vstar[i]));
#define ED_INT(name)                                                                       \
	if (json_object_get(o, #name))                                                     \
		p->name = (int64_t)json_integer_value(json_object_get(o, #name));
	ED_INT(layer)
	ED_INT(control_layer)
	ED_INT(seed)
	ED_INT(steps)
	ED_INT(prefixes)
	ED_INT(prefix_len)
	ED_INT(corpus_sequences)
	ED_INT(corpus_len)
	ED_INT(gen_tokens)
#undef ED_INT
	if (json_object_get(o, "control_scale"))
		p->control_scale = json_number_value(json_object_get(o, "control_scale"));
	return 0;
}

static int ed_check_params(const mb_json_doc *doc, const json_t *params, const char *at,
			   mb_error *err)
{
	ed_params p;
	return read_params(&p, doc, params, at, err);
}

/* ---- open -------------------------------------------------------------------- */

typedef struct ed_state {
	mb_model *m;
	ed_params p;
	mb_rome_params rp;      /* at p.layer */
	mb_rome_stats stats[2]; /* C at layer, at control_layer */
	mb_rome_stats *mstats;  /* (n_layers) memit: C at each of p.layers */
	mb_memit_params mp;     /* memit: over p.layers */
	mb_memit_params mp_wrong; /* memit: over [control_layer] */
	int32_t *pre_tok;       /* (prefixes, prefix_len) */
	mb_rome_prefix *pre;    /* (K) the bare prompt, then the sampled prefixes */
	int n_pre;              /* K */
} ed_state;

static void ed_close(void *state)
{
	ed_state *st = state;

	if (!st)
		return;
	mb_rome_stats_dispose(&st->stats[0]);
	mb_rome_stats_dispose(&st->stats[1]);
	for (int i = 0; st->mstats && i < st->p.n_layers; i++)
		mb_rome_stats_dispose(&st->mstats[i]);
	free(st->mstats);
	free(st->pre_tok);
	free(st->pre);
	mb_model_free(st->m);
	free(st);
}

/* The contexts and the statistics (see the header comment). */
static int ed_prepare_edit(ed_state *st, mb_error *err)
{
	const mb_engine_config *c = &st->m->cfg;
	int N = (int)st->p.corpus_sequences, T = (int)st->p.corpus_len, P = (int)st->p.prefixes;
	int PL = (int)st->p.prefix_len, batch = N > P ? N : P;
	int32_t first = mb_tokenizer_id(st->m->tok, "<|endoftext|>"), *corpus = NULL;
	mb_engine_opts eo = {.max_batch = batch > 8 ? batch : 8, .max_seq = T > PL ? T : PL};
	mb_engine *e = NULL;
	int rc;

	if (first >= c->n_vocab)
		first = -1;
	st->pre = calloc((size_t)P + 1, sizeof(*st->pre));
	st->pre_tok = malloc(sizeof(int32_t) * ((size_t)P * (size_t)PL + 1));
	corpus = malloc(sizeof(int32_t) * (size_t)N * (size_t)T);
	if (!st->pre || !st->pre_tok || !corpus) {
		free(corpus);
		return mb_error_oom(err, "edit contexts", sizeof(int32_t) * (size_t)N * (size_t)T);
	}
	if ((rc = mb_engine_init(&e, c, &st->m->w, &eo, err)) < 0)
		goto cleanup;
	st->pre[0] = (mb_rome_prefix){.tokens = st->pre_tok, .n = 0};
	st->n_pre = 1;
	if (P > 0) {
		if ((rc = mb_rome_prefixes(st->pre_tok, e, P, PL, first, 5, (uint64_t)st->p.seed,
					   err)) < 0)
			goto cleanup;
		for (int i = 0; i < P; i++)
			st->pre[st->n_pre++] = (mb_rome_prefix){
				.tokens = st->pre_tok + (size_t)i * (size_t)PL, .n = PL};
	}
	if ((rc = mb_rome_prefixes(corpus, e, N, T, first, 5, (uint64_t)st->p.seed + 1, err)) < 0 ||
	    (rc = mb_rome_stats_compute(&st->stats[0], e, (int)st->p.layer, corpus, (size_t)N, T,
					8, err)) < 0 ||
	    (rc = mb_rome_stats_compute(&st->stats[1], e, (int)st->p.control_layer, corpus,
					(size_t)N, T, 8, err)) < 0)
		goto cleanup;
	if (st->p.memit) {
		st->mstats = calloc((size_t)st->p.n_layers, sizeof(*st->mstats));
		if (!st->mstats) {
			rc = mb_error_oom(err, "memit statistics", (size_t)st->p.n_layers);
			goto cleanup;
		}
		for (int i = 0; i < st->p.n_layers && rc == 0; i++)
			rc = mb_rome_stats_compute(&st->mstats[i], e, st->p.layers[i], corpus,
						   (size_t)N, T, 8, err);
	}
cleanup:
	mb_engine_free(e);
	free(corpus);
	return rc;
}

static int ed_open(void **out, const char *model_dir, const json_t *params, mb_error *err)
{
	ed_state *st = calloc(1, sizeof(*st));
	const mb_engine_config *c;
	int rc;

	*out = NULL;
	if (!st)
		return mb_error_oom(err, "edit state", sizeof(*st));
	if ((rc = read_params(&st->p, NULL, params, "params", err)) < 0 ||
	    (rc = mb_model_load(&st->m, model_dir, err)) < 0)
		goto fail;
	c = &st->m->cfg;
	if (!st->m->tok) {
		rc = mb_error_set(err, MB_ENOTFOUND, "%s: no tokenizer: the edit task reads text "
				  "prompts", model_dir);
		goto fail;
	}
	if (c->attn_only || c->n_layer < 2) {
		rc = mb_error_set(err, MB_EINVALID, "%s/config.json: the edit task needs MLPs and "
				  "at least 2 layers", model_dir);
		goto fail;
	}
	if (st->p.layer >= c->n_layer - 1 || st->p.control_layer >= c->n_layer - 1) {
		rc = mb_error_set(err, MB_EINVALID, "params: layer %lld and control_layer %lld must "
				  "be below the last layer %d of %s", (long long)st->p.layer,
				  (long long)st->p.control_layer, c->n_layer - 1, model_dir);
		goto fail;
	}
	if (!st->p.corpus_len)
		st->p.corpus_len = c->n_ctx < 32 ? c->n_ctx : 32;
	if (st->p.corpus_len > c->n_ctx || st->p.prefix_len >= c->n_ctx) {
		rc = mb_error_set(err, MB_EINVALID, "params: corpus_len %lld or prefix_len %lld does "
				  "not fit n_positions %d of %s", (long long)st->p.corpus_len,
				  (long long)st->p.prefix_len, c->n_ctx, model_dir);
		goto fail;
	}
	if (st->p.corpus_sequences * st->p.corpus_len < c->d_mlp) {
		rc = mb_error_set(err, MB_EINVALID, "params: corpus_sequences x corpus_len = %lld "
				  "tokens, fewer than d_mlp %d keys: C would be singular",
				  (long long)(st->p.corpus_sequences * st->p.corpus_len), c->d_mlp);
		goto fail;
	}
	if (st->p.memit && !st->p.n_layers)
		st->p.layers[st->p.n_layers++] = (int)st->p.layer;
	if (st->p.memit && st->p.layers[st->p.n_layers - 1] >= c->n_layer - 1) {
		rc = mb_error_set(err, MB_EINVALID, "params.memit_layers: the last, %d, must be "
				  "below the last layer %d of %s", st->p.layers[st->p.n_layers - 1],
				  c->n_layer - 1, model_dir);
		goto fail;
	}
	mb_rome_params_default(&st->rp, (int)st->p.layer);
	mb_memit_params_default(&st->mp, st->p.layers, st->p.n_layers);
	{
		const int wrong = (int)st->p.control_layer;
		mb_memit_params_default(&st->mp_wrong, &wrong, 1);
	}
	if (st->p.mom2_weight >= 0)
		st->mp.mom2_weight = st->mp_wrong.mom2_weight = st->p.mom2_weight;
	mb_rome_params *vp[3] = {&st->rp, &st->mp.z, &st->mp_wrong.z};
	for (int i = 0; i < 3; i++) {
		vp[i]->steps = (int)st->p.steps;
		if (st->p.lr >= 0)
			vp[i]->lr = st->p.lr;
		if (st->p.clamp >= 0)
			vp[i]->clamp = st->p.clamp;
		if (st->p.weight_decay >= 0)
			vp[i]->weight_decay = st->p.weight_decay;
		if (st->p.kl_factor >= 0)
			vp[i]->kl_factor = st->p.kl_factor;
	}
	if ((rc = ed_prepare_edit(st, err)) < 0) {
		mb_error_prefix(err, "%s", model_dir);
		goto fail;
	}
	*out = st;
	return 0;
fail:
	ed_close(st);
	return rc;
}

/* ---- run: one item ----------------------------------------------------------- */

/* A tokenized prompt list. */
typedef struct ed_prompts {
	int32_t **tok; /* (n) each (len[i]) */
	int *len;
	int n;
	int cap;       /* slots of tok, NULL until filled */
} ed_prompts;

static void prompts_dispose(ed_prompts *p)
{
	for (int i = 0; p->tok && i < p->cap; i++)
		free(p->tok[i]);
	free(p->tok);
	free(p->len);
	memset(p, 0, sizeof(*p));
}

/* One item's request, tokenized. The probe set is the edit prompt (0), the
 * paraphrases (1..NP), the neighbourhood (NP+1..NP+NN). */
typedef struct ed_item {
	int32_t *prompt, *kl, *obj[2]; /* obj[0] new, obj[1] true */
	int n_prompt, subj_last, n_kl, kl_subj_last, n_obj[2];
	ed_prompts probe, unrel, gen;
	int n_para, n_neigh;
} ed_item;

static void item_dispose(ed_item *it)
{
	free(it->prompt);
	free(it->kl);
	free(it->obj[0]);
	free(it->obj[1]);
	prompts_dispose(&it->probe);
	prompts_dispose(&it->unrel);
	prompts_dispose(&it->gen);
}

static int encode_list(ed_prompts *p, const mb_tokenizer *t, const json_t *arr, int extra,
		       int V, int max_len, const char *what, const char *field, mb_error *err)
{
	size_t n = json_array_size(arr);
	int rc;

	p->tok = calloc(n + (size_t)extra, sizeof(*p->tok));
	p->len = calloc(n + (size_t)extra, sizeof(*p->len));
	if (!p->tok || !p->len)
		return mb_error_oom(err, what, n);
	p->cap = (int)n + extra;
	for (size_t i = 0; i < n; i++, p->n++) {
		int *len = &p->len[extra + (int)i];
		if ((rc = mb_tokenizer_encode(t, prompt_at(arr, i), &p->tok[extra + (int)i], len,
					      err)) < 0)
			return mb_error_prefix(err, "%s: %s[%zu]", what, field, i);
		if (*len < 1 || *len > max_len)
			return mb_error_set(err, MB_EINVALID, "%s: %s[%zu]: %d tokens, need 1 to %d "
					    "(n_positions less the continuation)", what, field, i,
					    *len, max_len);
		for (int j = 0; j < *len; j++)
			if (p->tok[extra + (int)i][j] < 0 || p->tok[extra + (int)i][j] >= V)
				return mb_error_set(err, MB_EINVALID, "%s: %s[%zu]: token id %d is "
						    "outside the model's vocabulary %d", what,
						    field, i, (int)p->tok[extra + (int)i][j], V);
	}
	p->n += extra;
	return 0;
}

static int item_parse(ed_item *it, const ed_state *st, const mb_item *item, int max_obj,
		      mb_error *err)
{
	const json_t *o = item->input;
	const mb_tokenizer *t = st->m->tok;
	const int V = st->m->cfg.n_vocab, T = st->m->cfg.n_ctx;
	const char *subj, *kl;
	char what[96];
	int rc;

	snprintf(what, sizeof(what), "item %.16s", item->key);
	if ((rc = check_request(o, what, err)) < 0)
		return rc;
	subj = json_string_value(json_object_get(o, "subject"));
	kl = json_object_get(o, "kl_prompt") ? json_string_value(json_object_get(o, "kl_prompt"))
					    : json_string_value(json_object_get(o, "prompt"));
	if ((rc = mb_edit_encode(&it->prompt, &it->n_prompt, NULL, &it->subj_last, t,
				 json_string_value(json_object_get(o, "prompt")), subj, err)) < 0)
		return mb_error_prefix(err, "%s: prompt", what);
	if ((rc = mb_edit_encode(&it->kl, &it->n_kl, NULL, &it->kl_subj_last, t, kl, subj, err)) <
	    0)
		return mb_error_prefix(err, "%s: kl_prompt", what);
	for (int k = 0; k < 2; k++) {
		const char *obj = json_string_value(json_object_get(o, k ? "target_true"
									 : "target_new"));
		size_t ol = strlen(obj) + 2;
		char *text = malloc(ol);

		if (!text)
			return mb_error_oom(err, what, ol);
		/* the object follows the prompt after a space (" Rome"), as cmd_edit.c */
		snprintf(text, ol, "%s%s", obj[0] == ' ' ? "" : " ", obj);
		rc = mb_tokenizer_encode(t, text, &it->obj[k], &it->n_obj[k], err);
		free(text);
		if (rc < 0)
			return mb_error_prefix(err, "%s: %s", what, k ? "target_true" : "target_new");
		if (it->n_obj[k] < 1 || it->n_obj[k] > max_obj)
			return mb_error_set(err, MB_EINVALID, "%s: %s: %d tokens (1 to %d)", what,
					    k ? "target_true" : "target_new", it->n_obj[k], max_obj);
		for (int j = 0; j < it->n_obj[k]; j++)
			if (it->obj[k][j] < 0 || it->obj[k][j] >= V)
				return mb_error_set(err, MB_EINVALID, "%s: %s: token id %d is outside "
						    "the vocabulary %d", what, k ? "target_true" :
						    "target_new", (int)it->obj[k][j], V);
	}
	{
		int max_probe = T - (it->n_obj[0] > it->n_obj[1] ? it->n_obj[0] : it->n_obj[1]) + 1;
		int ctx = (st->n_pre > 1 ? (int)st->p.prefix_len : 0) + it->n_prompt +
			  it->n_obj[0] - 1;
		const json_t *gen = json_object_get(o, "generation_prompts");

		if (ctx > T || it->n_kl + (st->n_pre > 1 ? (int)st->p.prefix_len : 0) > T ||
		    it->n_prompt > max_probe)
			return mb_error_set(err, MB_EINVALID, "%s: the longest context (a prefix, the "
					    "prompt and the new object) is %d tokens, more than "
					    "n_positions %d", what, ctx, T);
		if ((rc = encode_list(&it->probe, t, json_object_get(o, "paraphrase_prompts"), 1, V,
				      max_probe, what, "paraphrase_prompts", err)) < 0)
			return rc;
		it->n_para = it->probe.n - 1;
		{
			/* append the neighbourhood to the probe list */
			ed_prompts nb = {0};
			rc = encode_list(&nb, t, json_object_get(o, "neighborhood_prompts"), 0, V,
					 max_probe, what, "neighborhood_prompts", err);
			if (rc == 0) {
				int32_t **tk = realloc(it->probe.tok, sizeof(*tk) *
							(size_t)(it->probe.n + nb.n));
				int *ln = tk ? realloc(it->probe.len, sizeof(int) *
							(size_t)(it->probe.n + nb.n)) : NULL;
				if (tk)
					it->probe.tok = tk;
				if (ln)
					it->probe.len = ln;
				if (!tk || !ln) {
					rc = mb_error_oom(err, what, (size_t)nb.n);
				} else {
					for (int i = 0; i < nb.n; i++) {
						it->probe.tok[it->probe.n + i] = nb.tok[i];
						it->probe.len[it->probe.n + i] = nb.len[i];
						nb.tok[i] = NULL;
					}
					it->probe.n += nb.n;
					it->probe.cap = it->probe.n;
					it->n_neigh = nb.n;
				}
			}
			prompts_dispose(&nb);
			if (rc < 0)
				return rc;
		}
		it->probe.tok[0] = malloc(sizeof(int32_t) * (size_t)it->n_prompt);
		if (!it->probe.tok[0])
			return mb_error_oom(err, what, (size_t)it->n_prompt);
		memcpy(it->probe.tok[0], it->prompt, sizeof(int32_t) * (size_t)it->n_prompt);
		it->probe.len[0] = it->n_prompt;
		if ((rc = encode_list(&it->unrel, t, json_object_get(o, "unrelated_prompts"), 0, V, T,
				      what, "unrelated_prompts", err)) < 0)
			return rc;
		if (gen) {
			rc = encode_list(&it->gen, t, gen, 0, V, T - (int)st->p.gen_tokens, what,
					 "generation", err);
		} else {
			/* the edit prompt and the paraphrases */
			rc = encode_list(&it->gen, t, json_object_get(o, "paraphrase_prompts"), 1,
					 V, T - (int)st->p.gen_tokens, what, "paraphrase_prompts",
					 err);
			if (rc == 0) {
				it->gen.tok[0] = malloc(sizeof(int32_t) * (size_t)it->n_prompt);
				if (!it->gen.tok[0])
					return mb_error_oom(err, what, (size_t)it->n_prompt);
				memcpy(it->gen.tok[0], it->prompt, sizeof(int32_t) * (size_t)it->n_prompt);
				it->gen.len[0] = it->n_prompt;
				if (it->n_prompt > T - (int)st->p.gen_tokens)
					rc = mb_error_set(err, MB_EINVALID, "%s: prompt: %d tokens "
							  "leave no room for %lld generated ones",
							  what, it->n_prompt,
							  (long long)st->p.gen_tokens);
			}
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* A batch of sequences: row b is a prompt, optionally followed by tokens. */
typedef struct ed_batch {
	int32_t *tokens; /* (B, T) */
	int32_t *len;    /* (B) */
	int32_t *pos;    /* (B, N) */
	int B, T;
} ed_batch;

/* logp[b] = mean over the object's tokens of log p(token) after prompt b. */
static int object_logp(double *logp, mb_engine *e, ed_batch *bt, const ed_prompts *pr,
		       const int32_t *obj, int n_obj, mb_error *err)
{
	const int V = mb_engine_cfg(e)->n_vocab;
	int T = 0, rc;

	for (int b = 0; b < pr->n; b++)
		if (pr->len[b] + n_obj - 1 > T)
			T = pr->len[b] + n_obj - 1;
	memset(bt->tokens, 0, sizeof(int32_t) * (size_t)pr->n * (size_t)T);
	for (int b = 0; b < pr->n; b++) {
		int32_t *row = bt->tokens + (size_t)b * (size_t)T;
		memcpy(row, pr->tok[b], sizeof(int32_t) * (size_t)pr->len[b]);
		memcpy(row + pr->len[b], obj, sizeof(int32_t) * (size_t)(n_obj - 1));
		bt->len[b] = pr->len[b] + n_obj - 1;
		for (int j = 0; j < n_obj; j++)
			bt->pos[(size_t)b * (size_t)n_obj + (size_t)j] = pr->len[b] - 1 + j;
	}
	mb_run run = {.batch = pr->n, .seq = T, .tokens = bt->tokens, .lengths = bt->len,
		      .logits = MB_LOGITS_POSITIONS, .n_positions = n_obj, .positions = bt->pos};
	if ((rc = mb_engine_forward(e, &run, err)) < 0)
		return rc;
	for (int b = 0; b < pr->n; b++) {
		double s = 0.0;
		for (int j = 0; j < n_obj; j++)
			s -= mb_logits_ce(NULL, mb_engine_logits_row(e, b, j), V, obj[j],
					  MB_LOGITS_LIBM);
		logp[b] = s / n_obj;
	}
	return 0;
}

/* The probe results of one weight state: P(new) - P(true) per probe prompt. */
static int probe_margin(double *margin, mb_engine *e, ed_batch *bt, const ed_item *it,
			double *scratch, mb_error *err)
{
	int rc;

	if ((rc = object_logp(margin, e, bt, &it->probe, it->obj[0], it->n_obj[0], err)) < 0 ||
	    (rc = object_logp(scratch, e, bt, &it->probe, it->obj[1], it->n_obj[1], err)) < 0)
		return rc;
	for (int b = 0; b < it->probe.n; b++)
		margin[b] = mb_detmath_exp(margin[b]) - mb_detmath_exp(scratch[b]);
	return 0;
}

/* Efficacy, paraphrase and neighbourhood success and magnitudes from margins
 * (P(new) - P(true)): out[0..6) = ES, EM, PS, PM, NS, NM; out[6] the harmonic
 * mean of ES, PS, NS. */
static void probe_scores(double out[7], const double *margin, const ed_item *it)
{
	double ps = 0, pm = 0, ns = 0, nm = 0;

	out[0] = margin[0] > 0.0 ? 1.0 : 0.0;
	out[1] = margin[0];
	for (int i = 1; i <= it->n_para; i++) {
		ps += margin[i] > 0.0 ? 1.0 : 0.0;
		pm += margin[i];
	}
	for (int i = it->n_para + 1; i <= it->n_para + it->n_neigh; i++) {
		ns += margin[i] < 0.0 ? 1.0 : 0.0;
		nm -= margin[i];
	}
	out[2] = ps / it->n_para;
	out[3] = pm / it->n_para;
	out[4] = ns / it->n_neigh;
	out[5] = nm / it->n_neigh;
	out[6] = out[0] > 0 && out[2] > 0 && out[4] > 0
			 ? 3.0 / (1.0 / out[0] + 1.0 / out[2] + 1.0 / out[4])
			 : 0.0;
}

/* Last-position logits of the unrelated prompts into z (U, V). */
static int unrelated_logits(float *z, mb_engine *e, ed_batch *bt, const ed_prompts *pr,
			    mb_error *err)
{
	const int V = mb_engine_cfg(e)->n_vocab;
	int T = 0, rc;

	for (int b = 0; b < pr->n; b++)
		if (pr->len[b] > T)
			T = pr->len[b];
	memset(bt->tokens, 0, sizeof(int32_t) * (size_t)pr->n * (size_t)T);
	for (int b = 0; b < pr->n; b++) {
		memcpy(bt->tokens + (size_t)b * (size_t)T, pr->tok[b],
		       sizeof(int32_t) * (size_t)pr->len[b]);
		bt->len[b] = pr->len[b];
	}
	mb_run run = {.batch = pr->n, .seq = T, .tokens = bt->tokens, .lengths = bt->len,
		      .logits = MB_LOGITS_LAST};
	if ((rc = mb_engine_forward(e, &run, err)) < 0)
		return rc;
	for (int b = 0; b < pr->n; b++)
		memcpy(z + (size_t)b * (size_t)V, mb_engine_logits_row(e, b, 0),
		       sizeof(float) * (size_t)V);
	return 0;
}

/* log softmax of a row into out (V), in double. */
static void log_softmax(double *out, const float *z, int V)
{
	double mx = -INFINITY, s = 0.0, lse;

	for (int v = 0; v < V; v++)
		if (z[v] > mx)
			mx = z[v];
	for (int v = 0; v < V; v++)
		s += mb_detmath_exp((double)z[v] - mx);
	lse = mx + mb_detmath_log(s);
	for (int v = 0; v < V; v++)
		out[v] = (double)z[v] - lse;
}

/* Mean over the U prompts of KL(P_before || P_after), rows (U, V). */
static double mean_kl(const float *before, const float *after, int U, int V, double *scratch)
{
	double total = 0.0;

	for (int b = 0; b < U; b++) {
		double *lp = scratch, *lq = scratch + V, kl = 0.0;
		log_softmax(lp, before + (size_t)b * (size_t)V, V);
		log_softmax(lq, after + (size_t)b * (size_t)V, V);
		for (int v = 0; v < V; v++)
			kl += mb_detmath_exp(lp[v]) * (lp[v] - lq[v]);
		total += kl;
	}
	return total / U;
}

/* mean(2/3 H_2, 4/3 H_3) of a token sequence (see the header comment). */
static double ngram_entropy(const int32_t *x, int n)
{
	static const double weight[2] = {2.0 / 3.0, 4.0 / 3.0};
	double total = 0.0;

	for (int g = 2; g <= 3; g++) {
		int cnt = n - g + 1;
		double h = 0.0;

		/* the frequency of each distinct n-gram, counted at its first occurrence */
		for (int i = 0; i < cnt; i++) {
			int seen = 0, c = 0;
			for (int j = 0; j < cnt && !seen; j++)
				if (memcmp(x + j, x + i, sizeof(int32_t) * (size_t)g) == 0) {
					seen = j < i;
					if (!seen)
						break;
				}
			if (seen)
				continue;
			for (int j = i; j < cnt; j++)
				c += memcmp(x + j, x + i, sizeof(int32_t) * (size_t)g) == 0;
			h -= ((double)c / cnt) * log2((double)c / cnt);
		}
		total += weight[g - 2] * h;
	}
	return total / 2.0;
}

/* Generation entropy: the mean over the generation prompts of the n-gram
 * entropy of their greedy continuations of gen_tokens tokens. */
static int gen_entropy(double *out, mb_engine *e, ed_batch *bt, const ed_prompts *pr, int steps,
		       mb_error *err)
{
	const int V = mb_engine_cfg(e)->n_vocab;
	int T = 0, rc;
	double s = 0.0;

	for (int b = 0; b < pr->n; b++)
		if (pr->len[b] + steps > T)
			T = pr->len[b] + steps;
	memset(bt->tokens, 0, sizeof(int32_t) * (size_t)pr->n * (size_t)T);
	for (int b = 0; b < pr->n; b++) {
		memcpy(bt->tokens + (size_t)b * (size_t)T, pr->tok[b],
		       sizeof(int32_t) * (size_t)pr->len[b]);
		bt->len[b] = pr->len[b];
	}
	for (int t = 0; t < steps; t++) {
		/* rows keep their stride T; the run reads (B, T) with lengths */
		mb_run run = {.batch = pr->n, .seq = T, .tokens = bt->tokens, .lengths = bt->len,
			      .logits = MB_LOGITS_LAST};
		if ((rc = mb_engine_forward(e, &run, err)) < 0)
			return rc;
		for (int b = 0; b < pr->n; b++) {
			int32_t next = (int32_t)mb_logits_argmax(mb_engine_logits_row(e, b, 0), V);
			bt->tokens[(size_t)b * (size_t)T + (size_t)bt->len[b]] = next;
			bt->len[b]++;
		}
	}
	for (int b = 0; b < pr->n; b++)
		s += ngram_entropy(bt->tokens + (size_t)b * (size_t)T + (size_t)pr->len[b], steps);
	*out = s / pr->n;
	return 0;
}

/* The work of one item over a private copy of c_proj (w: the engine's
 * weights, base: the model's). */
typedef struct ed_work {
	const ed_state *st;
	mb_engine *e;
	mb_engine_weights w;
	float *proj;      /* (L, M, D) the private c_proj */
	ed_batch bt;
	double *margin, *scratch; /* (probes) */
	float *z_base, *z_new;    /* (U, V) */
	double *kl_scratch;       /* (2 V) */
} ed_work;

static void restore_layer(ed_work *wk, int layer)
{
	const mb_engine_config *c = &wk->st->m->cfg;
	size_t n = (size_t)c->d_mlp * (size_t)c->d_model;

	memcpy(wk->proj + (size_t)layer * n, wk->st->m->w.proj_w + (size_t)layer * n,
	       sizeof(float) * n);
}

/* Puts back every layer the item's edit changed (rome: layer; memit: each of
 * its layers). */
static void restore_edited(ed_work *wk)
{
	if (!wk->st->p.memit) {
		restore_layer(wk, (int)wk->st->p.layer);
		return;
	}
	for (int i = 0; i < wk->st->p.n_layers; i++)
		restore_layer(wk, wk->st->p.layers[i]);
}

/* ||W_proj[layer] - the model's||_F, in double: the Frobenius norm of the
 * update an edit made at layer. */
/* The Frobenius norm of layer's c_proj as edited minus ref (M, D). */
static double change_norm(const ed_work *wk, int layer, const float *ref)
{
	const mb_engine_config *c = &wk->st->m->cfg;
	const size_t n = (size_t)c->d_mlp * (size_t)c->d_model, off = (size_t)layer * n;
	double s = 0.0;

	for (size_t i = 0; i < n; i++) {
		double d = (double)wk->proj[off + i] - (double)ref[i];
		s += d * d;
	}
	return sqrt(s);
}

/* The same against the base model. */
static double update_norm(const ed_work *wk, int layer)
{
	const mb_engine_config *c = &wk->st->m->cfg;

	return change_norm(wk, layer,
			   wk->st->m->w.proj_w + (size_t)layer * c->d_mlp * (size_t)c->d_model);
}

/* x^T C x (x (M), C (M, M) float), in double, rows in order. */
static double quad_c(const mb_rome_stats *s, const float *x)
{
	const int M = s->d_mlp;
	double q = 0.0;

	for (int i = 0; i < M; i++) {
		double row = 0.0;
		for (int j = 0; j < M; j++)
			row += (double)s->mom2[(size_t)i * M + j] * x[j];
		q += x[i] * row;
	}
	return q;
}

/* The output energy of the update an edit made at layer: the mean over the
 * corpus keys k of ||k^T dW||^2 = tr(dW^T C dW), dW = W_proj[layer] - the
 * model's (M, D), column by column in double. */
static double update_energy(const ed_work *wk, int layer, const mb_rome_stats *s)
{
	const mb_engine_config *c = &wk->st->m->cfg;
	const int M = c->d_mlp, D = c->d_model;
	const size_t off = (size_t)layer * M * D;
	float *col = malloc(sizeof(float) * (size_t)M);
	double e = 0.0;

	if (!col)
		return NAN;
	for (int d = 0; d < D; d++) {
		for (int m = 0; m < M; m++)
			col[m] = (float)((double)wk->proj[off + (size_t)m * D + d] -
					 (double)wk->st->m->w.proj_w[off + (size_t)m * D + d]);
		e += quad_c(s, col);
	}
	free(col);
	return e;
}

static mb_rome_request request_of(const ed_item *it)
{
	return (mb_rome_request){.prompt = it->prompt, .n_prompt = it->n_prompt,
				 .subj_last = it->subj_last, .target = it->obj[0],
				 .n_target = it->n_obj[0], .kl_prompt = it->kl,
				 .n_kl = it->n_kl, .kl_subj_last = it->kl_subj_last};
}

static double norm2(const float *x, int n)
{
	double s = 0.0;
	for (int i = 0; i < n; i++)
		s += (double)x[i] * x[i];
	return sqrt(s);
}

static int run_item(ed_work *wk, const mb_item *item, const ed_item *it, double *v,
		    mb_error *err)
{
	const ed_state *st = wk->st;
	const mb_engine_config *c = &st->m->cfg;
	const int M = c->d_mlp, D = c->d_model, V = c->n_vocab, L0 = (int)st->p.layer;
	const int L1 = (int)st->p.control_layer, U = it->unrel.n;
	mb_rome_request req = request_of(it);
	mb_rome_result res = {0}, res2 = {0};
	mb_rome_params rp2 = st->rp;
	double sc[7], lnorm[MB_MEMIT_MAX_LAYERS], energy[MB_MEMIT_MAX_LAYERS];
	float *uc = NULL, *rc_ = NULL;
	int rc;
	mb_rng rng;

	/* before */
	if ((rc = probe_margin(wk->margin, wk->e, &wk->bt, it, wk->scratch, err)) < 0 ||
	    (rc = unrelated_logits(wk->z_base, wk->e, &wk->bt, &it->unrel, err)) < 0 ||
	    (rc = gen_entropy(&v[M_BASE_ENTROPY], wk->e, &wk->bt, &it->gen, (int)st->p.gen_tokens,
			      err)) < 0)
		goto cleanup;
	v[M_BASE_MAG] = wk->margin[0];

	/* the edit */
	if (st->p.memit) {
		if ((rc = mb_memit_edit(NULL, wk->e, &wk->w, st->mstats, &req, 1, st->pre,
					st->n_pre, &st->mp, err)) < 0)
			goto cleanup;
		v[M_NORM] = 0;
		for (int i = 0; i < st->p.n_layers; i++) {
			lnorm[i] = update_norm(wk, st->p.layers[i]);
			v[M_NORM] += lnorm[i] * lnorm[i];
		}
		v[M_NORM] = sqrt(v[M_NORM]);
	} else {
		if ((rc = mb_rome_compute(&res, wk->e, &st->stats[0], &req, st->pre, st->n_pre,
					  &st->rp, err)) < 0)
			goto cleanup;
		mb_rome_apply(c, &wk->w, L0, res.u, res.r);
		v[M_NORM] = norm2(res.u, M) * norm2(res.r, D);
	}
	if ((rc = probe_margin(wk->margin, wk->e, &wk->bt, it, wk->scratch, err)) < 0 ||
	    (rc = unrelated_logits(wk->z_new, wk->e, &wk->bt, &it->unrel, err)) < 0 ||
	    (rc = gen_entropy(&v[M_ENTROPY], wk->e, &wk->bt, &it->gen, (int)st->p.gen_tokens,
			      err)) < 0)
		goto cleanup;
	probe_scores(sc, wk->margin, it);
	v[M_EFFICACY] = sc[0];
	v[M_EFF_MAG] = sc[1];
	v[M_PARA] = sc[2];
	v[M_PARA_MAG] = sc[3];
	v[M_NEIGH] = sc[4];
	v[M_NEIGH_MAG] = sc[5];
	v[M_SCORE] = sc[6];
	v[M_KL] = mean_kl(wk->z_base, wk->z_new, U, V, wk->kl_scratch);
	/* the output energy of the edit on the corpus keys, per edited layer
	 * (rome: ||r||^2 u^T C u) */
	for (int i = 0; i < (st->p.memit ? st->p.n_layers : 1); i++) {
		if (st->p.memit) {
			energy[i] = update_energy(wk, st->p.layers[i], &st->mstats[i]);
		} else {
			double nr = norm2(res.r, D);
			energy[i] = nr * nr * quad_c(&st->stats[0], res.u);
		}
		if (!isfinite(energy[i])) {
			rc = mb_error_oom(err, "edit energy", sizeof(float) * (size_t)M);
			goto cleanup;
		}
	}
	restore_edited(wk);

	/* the control: a random rank-one update of the same norm (memit: at each
	 * edited layer, of that layer's update's norm) */
	uc = malloc(sizeof(float) * (size_t)M);
	rc_ = malloc(sizeof(float) * (size_t)D);
	if (!uc || !rc_) {
		rc = mb_error_oom(err, "edit control", sizeof(float) * (size_t)(M + D));
		goto cleanup;
	}
	mb_rng_init_named(&rng, (uint64_t)st->p.seed, "edit/control",
			  mb_item_key_index(item->key));
	for (int i = 0; i < (st->p.memit ? st->p.n_layers : 1); i++) {
		if (st->p.memit)
			mb_rome_control_norm(uc, rc_, lnorm[i], M, D, &rng);
		else
			mb_rome_control(uc, rc_, res.u, res.r, M, D, &rng);
		for (int d = 0; d < D; d++)
			rc_[d] = (float)(rc_[d] * st->p.control_scale);
		mb_rome_apply(c, &wk->w, st->p.memit ? st->p.layers[i] : L0, uc, rc_);
	}
	if ((rc = probe_margin(wk->margin, wk->e, &wk->bt, it, wk->scratch, err)) < 0 ||
	    (rc = unrelated_logits(wk->z_new, wk->e, &wk->bt, &it->unrel, err)) < 0)
		goto cleanup;
	probe_scores(sc, wk->margin, it);
	v[M_CTL_MAG] = sc[1];
	v[M_CTL_NEIGH] = sc[4];
	v[M_CTL_KL] = mean_kl(wk->z_base, wk->z_new, U, V, wk->kl_scratch);
	restore_edited(wk);

	/* the energy-matched control: a random rank-one update u' r'^T per edited
	 * layer with ||r'||^2 u'^T C u' = the edit's energy there */
	mb_rng_init_named(&rng, (uint64_t)st->p.seed, "edit/energy_control",
			  mb_item_key_index(item->key));
	for (int i = 0; i < (st->p.memit ? st->p.n_layers : 1); i++) {
		const mb_rome_stats *s = st->p.memit ? &st->mstats[i] : &st->stats[0];
		double q, scale;

		mb_rome_control_norm(uc, rc_, 1.0, M, D, &rng);
		q = quad_c(s, uc);
		scale = q > 0.0 ? sqrt(energy[i] / q) * st->p.control_scale : 0.0;
		for (int d = 0; d < D; d++)
			rc_[d] = (float)(rc_[d] * scale);
		mb_rome_apply(c, &wk->w, st->p.memit ? st->p.layers[i] : L0, uc, rc_);
	}
	if ((rc = unrelated_logits(wk->z_new, wk->e, &wk->bt, &it->unrel, err)) < 0)
		goto cleanup;
	v[M_ECTL_KL] = mean_kl(wk->z_base, wk->z_new, U, V, wk->kl_scratch);
	restore_edited(wk);

	/* the wrong layer (memit: over [control_layer]) */
	if (st->p.memit) {
		if ((rc = mb_memit_edit(NULL, wk->e, &wk->w, &st->stats[1], &req, 1, st->pre,
					st->n_pre, &st->mp_wrong, err)) < 0)
			goto cleanup;
	} else {
		rp2.layer = L1;
		if ((rc = mb_rome_compute(&res2, wk->e, &st->stats[1], &req, st->pre, st->n_pre,
					  &rp2, err)) < 0)
			goto cleanup;
		mb_rome_apply(c, &wk->w, L1, res2.u, res2.r);
	}
	if ((rc = probe_margin(wk->margin, wk->e, &wk->bt, it, wk->scratch, err)) < 0)
		goto cleanup;
	probe_scores(sc, wk->margin, it);
	v[M_WL_EFFICACY] = sc[0];
	v[M_WL_PARA] = sc[2];
	v[M_WL_NEIGH] = sc[4];
	v[M_WL_SCORE] = sc[6];
	restore_layer(wk, L1);
cleanup:
	if (rc < 0)
		mb_error_prefix(err, "item %.16s", item->key);
	mb_rome_result_dispose(&res);
	mb_rome_result_dispose(&res2);
	free(uc);
	free(rc_);
	return rc;
}

static void work_dispose(ed_work *wk)
{
	mb_engine_free(wk->e);
	free(wk->proj);
	free(wk->bt.tokens);
	free(wk->bt.len);
	free(wk->bt.pos);
	free(wk->margin);
	free(wk->scratch);
	free(wk->z_base);
	free(wk->z_new);
	free(wk->kl_scratch);
	memset(wk, 0, sizeof(*wk));
}

/* A private copy of c_proj and an engine over it for B rows, with room for
 * n_probe probe prompts and n_unrel unrelated ones. */
static int work_init(ed_work *wk, const ed_state *st, int B, int n_probe, int n_unrel,
		     mb_error *err)
{
	const mb_engine_config *c = &st->m->cfg;
	const size_t proj_n = (size_t)c->n_layer * (size_t)c->d_mlp * (size_t)c->d_model;
	const int T = c->n_ctx;
	mb_engine_opts eo = {.max_batch = B, .max_seq = T, .keep_activations = 1};

	memset(wk, 0, sizeof(*wk));
	wk->st = st;
	wk->w = st->m->w;
	wk->proj = malloc(sizeof(float) * proj_n);
	wk->bt.tokens = malloc(sizeof(int32_t) * (size_t)B * (size_t)T);
	wk->bt.len = malloc(sizeof(int32_t) * (size_t)B);
	wk->bt.pos = malloc(sizeof(int32_t) * (size_t)B * (size_t)T);
	wk->margin = malloc(sizeof(double) * (size_t)n_probe);
	wk->scratch = malloc(sizeof(double) * (size_t)n_probe);
	wk->z_base = malloc(sizeof(float) * (size_t)n_unrel * (size_t)c->n_vocab);
	wk->z_new = malloc(sizeof(float) * (size_t)n_unrel * (size_t)c->n_vocab);
	wk->kl_scratch = malloc(sizeof(double) * 2 * (size_t)c->n_vocab);
	if (!wk->proj || !wk->bt.tokens || !wk->bt.len || !wk->bt.pos || !wk->margin ||
	    !wk->scratch || !wk->z_base || !wk->z_new || !wk->kl_scratch) {
		work_dispose(wk);
		return mb_error_oom(err, "edit item", sizeof(float) * proj_n);
	}
	memcpy(wk->proj, st->m->w.proj_w, sizeof(float) * proj_n);
	wk->w.proj_w = wk->proj;
	return mb_engine_init(&wk->e, c, &wk->w, &eo, err);
}

/* The rows an item needs at once: its contexts, probes, unrelated and
 * generation prompts. */
static int item_rows(const ed_state *st, const ed_item *it)
{
	int B = st->n_pre + 1;

	B = it->probe.n > B ? it->probe.n : B;
	B = it->unrel.n > B ? it->unrel.n : B;
	return it->gen.n > B ? it->gen.n : B;
}

static int ed_run(void *state, const mb_item *items, size_t n, double *values, mb_error *err)
{
	const ed_state *st = state;
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		ed_item it = {0};
		ed_work wk = {0};

		if ((rc = item_parse(&it, st, &items[i], st->m->cfg.n_ctx - 1, err)) == 0 &&
		    (rc = work_init(&wk, st, item_rows(st, &it), it.probe.n, it.unrel.n, err)) == 0)
			rc = run_item(&wk, &items[i], &it, values + i * M_COUNT, err);
		work_dispose(&wk);
		item_dispose(&it);
	}
	return rc;
}

/* ---- the sequential battery -------------------------------------------------- */

/*
 * Run param "sequential": [n_1 < n_2 < ...]: the entry's first n_k requests
 * are edited one after another (ROME at layer, or MEMIT over memit_layers
 * with method memit; each computed on the model edited so far, with the base
 * model's C, as `mechbench edit` does), and
 * after n_k edits (Gupta et al. 2024, "Model editing at scale leads to
 * gradual and catastrophic forgetting"):
 *   efficacy, paraphrase, neighbourhood  the means over the n_k edits so
 *                       far of each edit's own metrics on the model as it is
 *   score               their harmonic mean (the paper's S)
 *   retention           the mean efficacy of the edits before the last one
 *                       (null after one edit)
 *   first_efficacy      the efficacy of the first edit
 *   kl_unrelated        KL(base || edited) on the first request's unrelated
 *                       prompts
 *   entropy             the generation entropy of the first request's
 *                       generation prompts
 *   update_norm         the last update's norm (memit: the Frobenius norm of
 *                       its change over all its layers)
 * prepare hands these over as the entry's artifact ({"kind":
 * "edit-sequence", "version": 1, "method", "layer" (memit: "layers"),
 * "points": [...]}), figures draws
 * them ("edit.sequential"). Per-item metrics do not change.
 */
enum { SQ_EFF, SQ_PARA, SQ_NEIGH, SQ_SCORE, SQ_RET, SQ_FIRST, SQ_KL, SQ_ENT, SQ_NORM, SQ_COUNT };

static const char *const sq_names[SQ_COUNT] = {"efficacy", "paraphrase", "neighbourhood",
					       "score", "retention", "first_efficacy",
					       "kl_unrelated", "entropy", "update_norm"};

static int seq_run(double *pts, const ed_state *st, const mb_item *items, size_t n,
		   mb_error *err)
{
	const mb_engine_config *c = &st->m->cfg;
	const int N = (int)st->p.seq[st->p.n_seq - 1], V = c->n_vocab;
	const size_t MD = (size_t)c->d_mlp * (size_t)c->d_model;
	ed_item *its = NULL;
	ed_work wk = {0};
	int rc = 0, B = 1, max_probe = 1, pi = 0;
	double *acc = NULL;
	float *prev = NULL; /* memit: (n_layers, M, D) c_proj before the edit */

	if ((size_t)N > n)
		return mb_error_set(err, MB_EINVALID, "params.sequential: %d edits, but the entry "
				    "has %zu requests", N, n);
	its = calloc((size_t)N, sizeof(*its));
	acc = calloc((size_t)N, sizeof(double));
	if (st->p.memit)
		prev = malloc((size_t)st->p.n_layers * MD * sizeof(float));
	if (!its || !acc || (st->p.memit && !prev)) {
		rc = mb_error_oom(err, "sequential edits", (size_t)N * sizeof(*its));
		goto cleanup;
	}
	for (int k = 0; k < N; k++) {
		if ((rc = item_parse(&its[k], st, &items[k], c->n_ctx - 1, err)) < 0)
			goto cleanup;
		B = item_rows(st, &its[k]) > B ? item_rows(st, &its[k]) : B;
		max_probe = its[k].probe.n > max_probe ? its[k].probe.n : max_probe;
	}
	if ((rc = work_init(&wk, st, B, max_probe, its[0].unrel.n, err)) < 0 ||
	    (rc = unrelated_logits(wk.z_base, wk.e, &wk.bt, &its[0].unrel, err)) < 0)
		goto cleanup;
	for (int k = 0; k < N; k++) {
		mb_rome_request req = request_of(&its[k]);
		mb_rome_result res = {0};
		double sum[3] = {0}, sc[7];

		if (st->p.memit) {
			for (int i = 0; i < st->p.n_layers; i++)
				memcpy(prev + (size_t)i * MD, wk.proj + (size_t)st->p.layers[i] * MD,
				       MD * sizeof(float));
			rc = mb_memit_edit(NULL, wk.e, &wk.w, st->mstats, &req, 1, st->pre,
					   st->n_pre, &st->mp, err);
		} else {
			rc = mb_rome_compute(&res, wk.e, &st->stats[0], &req, st->pre, st->n_pre,
					     &st->rp, err);
		}
		if (rc < 0) {
			mb_error_prefix(err, "sequential edit %d (item %.16s)", k + 1, items[k].key);
			goto cleanup;
		}
		if (st->p.memit) {
			acc[0] = 0;
			for (int i = 0; i < st->p.n_layers; i++) {
				double x = change_norm(&wk, st->p.layers[i], prev + (size_t)i * MD);
				acc[0] += x * x;
			}
			acc[0] = sqrt(acc[0]);
		} else {
			mb_rome_apply(c, &wk.w, (int)st->p.layer, res.u, res.r);
			acc[0] = norm2(res.u, c->d_mlp) * norm2(res.r, c->d_model);
			mb_rome_result_dispose(&res);
		}
		if (k + 1 != st->p.seq[pi])
			continue;
		double *pt = pts + (size_t)pi * SQ_COUNT, ret = 0;
		pt[SQ_NORM] = acc[0];
		for (int j = 0; j <= k; j++) {
			if ((rc = probe_margin(wk.margin, wk.e, &wk.bt, &its[j], wk.scratch, err)) < 0)
				goto cleanup;
			probe_scores(sc, wk.margin, &its[j]);
			sum[0] += sc[0];
			sum[1] += sc[2];
			sum[2] += sc[4];
			if (j == 0)
				pt[SQ_FIRST] = sc[0];
			if (j < k)
				ret += sc[0];
		}
		pt[SQ_EFF] = sum[0] / (k + 1);
		pt[SQ_PARA] = sum[1] / (k + 1);
		pt[SQ_NEIGH] = sum[2] / (k + 1);
		pt[SQ_SCORE] = pt[SQ_EFF] > 0 && pt[SQ_PARA] > 0 && pt[SQ_NEIGH] > 0
				       ? 3.0 / (1.0 / pt[SQ_EFF] + 1.0 / pt[SQ_PARA] +
						1.0 / pt[SQ_NEIGH])
				       : 0.0;
		pt[SQ_RET] = k ? ret / k : NAN;
		if ((rc = unrelated_logits(wk.z_new, wk.e, &wk.bt, &its[0].unrel, err)) < 0 ||
		    (rc = gen_entropy(&pt[SQ_ENT], wk.e, &wk.bt, &its[0].gen, (int)st->p.gen_tokens,
				      err)) < 0)
			goto cleanup;
		pt[SQ_KL] = mean_kl(wk.z_base, wk.z_new, its[0].unrel.n, V, wk.kl_scratch);
		pi++;
	}
cleanup:
	work_dispose(&wk);
	for (int k = 0; its && k < N; k++)
		item_dispose(&its[k]);
	free(its);
	free(acc);
	free(prev);
	return rc;
}

static int ed_prepare(void *state, const mb_item *items, size_t n, json_t **artifact,
		      mb_error *err)
{
	const ed_state *st = state;
	double pts[ED_MAX_SEQ_POINTS * SQ_COUNT];
	json_t *a, *arr;
	int rc;

	*artifact = NULL;
	if (!st->p.n_seq)
		return 0;
	if ((rc = seq_run(pts, st, items, n, err)) < 0)
		return rc;
	a = json_pack("{s:s, s:i, s:s}", "kind", "edit-sequence", "version", 1, "method",
		      st->p.memit ? "memit" : "rome");
	if (a && !st->p.memit) {
		rc = json_object_set_new(a, "layer", json_integer((json_int_t)st->p.layer));
	} else if (a) {
		json_t *ls = json_array();
		rc = json_object_set_new(a, "layers", ls);
		for (int i = 0; ls && i < st->p.n_layers; i++)
			rc |= json_array_append_new(ls, json_integer(st->p.layers[i]));
	}
	arr = json_array();
	if (!a || !arr || rc) {
		json_decref(a);
		json_decref(arr);
		return mb_error_oom(err, "edit-sequence artifact", 0);
	}
	json_object_set_new(a, "points", arr);
	for (int p = 0; p < st->p.n_seq; p++) {
		json_t *o = json_pack("{s:I}", "edits", (json_int_t)st->p.seq[p]);
		for (int q = 0; o && q < SQ_COUNT; q++) {
			double x = pts[p * SQ_COUNT + q];
			json_object_set_new(o, sq_names[q], isfinite(x) ? json_real(x) : json_null());
		}
		if (!o || json_array_append_new(arr, o) < 0) {
			json_decref(a);
			return mb_error_oom(err, "edit-sequence artifact", 0);
		}
	}
	*artifact = a;
	return 0;
}

/* The curve of the battery: efficacy, paraphrase, neighbourhood, retention
 * and the first edit's efficacy against the number of edits. */
static int seq_figure(const ed_state *st, const mb_item *items, size_t n, mb_figure_list *out,
		      mb_error *err)
{
	static const int series[5] = {SQ_EFF, SQ_PARA, SQ_NEIGH, SQ_RET, SQ_FIRST};
	double pts[ED_MAX_SEQ_POINTS * SQ_COUNT], x[ED_MAX_SEQ_POINTS];
	mb_figure *f;
	int rc;

	if ((rc = seq_run(pts, st, items, n, err)) < 0 ||
	    (rc = mb_figure_list_add(out, &f, MB_FIGURE_LINES, "edit.sequential", 5,
				     (size_t)st->p.n_seq, err)) < 0 ||
	    (rc = mb_figure_set_text(f, st->p.memit ? "Sequential MEMIT edits: the metrics of "
					"every edit so far"
				      : "Sequential ROME edits: the metrics of every edit so far",
				     "edits made", "mean over the edits so far", NULL, err)) < 0)
		return rc;
	for (int p = 0; p < st->p.n_seq; p++)
		x[p] = (double)st->p.seq[p];
	if ((rc = mb_figure_set_x(f, x, err)) < 0)
		return rc;
	for (int r = 0; r < 5; r++) {
		if ((rc = mb_figure_set_row_label(f, (size_t)r, sq_names[series[r]], err)) < 0)
			return rc;
		for (int p = 0; p < st->p.n_seq; p++)
			f->values[r * st->p.n_seq + p] = pts[p * SQ_COUNT + series[r]];
	}
	return 0;
}

/* ---- figures: the causal trace ----------------------------------------------- */

static int ed_figures(void *state, const mb_item *items, size_t n, const double *values,
		      mb_figure_list *out, mb_error *err)
{
	static const mb_trace_kind kinds[2] = {MB_TRACE_MLP, MB_TRACE_RESID};
	const ed_state *st = state;
	const mb_engine_config *c = &st->m->cfg;
	const int L = c->n_layer, G = MB_TRACE_POS_COUNT;
	size_t use = n < ED_TRACE_ITEMS ? n : ED_TRACE_ITEMS;
	double *sum = calloc((size_t)L * G * 2, sizeof(double)), *restored = NULL, *grp = NULL;
	size_t *cnt = calloc((size_t)L * G * 2, sizeof(size_t));
	int32_t *subj_tok = NULL, *toks[ED_TRACE_ITEMS] = {NULL};
	mb_trace_item tis[ED_TRACE_ITEMS] = {{0}};
	size_t n_subj = 0;
	mb_engine *e = NULL;
	int rc = 0;

	(void)values;
	if (st->p.n_seq && (rc = seq_figure(st, items, n, out, err)) < 0)
		goto cleanup;
	restored = malloc(sizeof(double) * (size_t)L * (size_t)c->n_ctx);
	grp = malloc(sizeof(double) * (size_t)L * G);
	subj_tok = malloc(sizeof(int32_t) * (size_t)c->n_ctx * (use ? use : 1));
	if (!sum || !cnt || !restored || !grp || !subj_tok) {
		rc = mb_error_oom(err, "edit trace", sizeof(double) * (size_t)L * (size_t)c->n_ctx);
		goto cleanup;
	}
	{
		mb_engine_opts eo = {.max_batch = ED_TRACE_SAMPLES + 1, .max_seq = c->n_ctx};
		if ((rc = mb_engine_init(&e, c, &st->m->w, &eo, err)) < 0)
			goto cleanup;
	}
	/* each item's prompt, subject span and true object; the noise is 3 x the
	 * SD of the subjects' token embeddings (the paper) */
	for (size_t i = 0; i < use; i++) {
		ed_item it = {0};
		mb_trace_item *ti = &tis[i];

		if ((rc = item_parse(&it, st, &items[i], c->n_ctx - 1, err)) == 0)
			rc = mb_edit_encode(&toks[i], &ti->len, &ti->subj_first, &ti->subj_last,
					    st->m->tok,
					    json_string_value(json_object_get(items[i].input, "prompt")),
					    json_string_value(json_object_get(items[i].input,
									      "subject")),
					    err);
		if (rc == 0) {
			ti->tokens = toks[i];
			ti->target = it.obj[1][0];
			ti->stream = mb_item_key_index(items[i].key);
			for (int t = ti->subj_first; t <= ti->subj_last; t++)
				subj_tok[n_subj++] = toks[i][t];
		}
		item_dispose(&it);
		if (rc < 0)
			goto cleanup;
	}
	for (size_t i = 0; i < use; i++)
		for (int k = 0; k < 2; k++) {
			mb_trace_opts to = {.seed = (uint64_t)st->p.seed,
					    .noise = 3.0 * mb_trace_embed_sd(c, &st->m->w, subj_tok,
									     n_subj),
					    .samples = ED_TRACE_SAMPLES,
					    .window = L / 5 < 1 ? 1 : L / 5 > ED_TRACE_WINDOW
									? ED_TRACE_WINDOW : L / 5};
			double pc, pk;

			if ((rc = mb_trace_run(restored, &pc, &pk, e, &tis[i], kinds[k], &to,
					       err)) < 0)
				goto cleanup;
			mb_trace_groups(grp, restored, pk, L, &tis[i]);
			for (int q = 0; q < L * G; q++)
				if (!isnan(grp[q])) {
					sum[(size_t)k * L * G + (size_t)q] += grp[q];
					cnt[(size_t)k * L * G + (size_t)q]++;
				}
		}
	for (int k = 0; k < 2; k++) {
		mb_figure *f;
		char title[160];

		snprintf(title, sizeof(title), "Causal trace (%s restored): mean indirect effect on "
			 "P(true object) over %zu items", mb_trace_kind_name(kinds[k]), use);
		if ((rc = mb_figure_list_add(out, &f, MB_FIGURE_HEATMAP,
					     k ? "edit.trace_resid" : "edit.trace_mlp", (size_t)L,
					     (size_t)G, err)) < 0 ||
		    (rc = mb_figure_set_text(f, title, "token position", "layer",
					     "indirect effect", err)) < 0)
			goto cleanup;
		f->diverging = 1;
		for (int g = 0; g < G; g++)
			if ((rc = mb_figure_set_col_label(f, (size_t)g, mb_trace_pos_name(g), err)) < 0)
				goto cleanup;
		for (int l = 0; l < L; l++) {
			char lab[16];
			snprintf(lab, sizeof(lab), "%d", l);
			if ((rc = mb_figure_set_row_label(f, (size_t)l, lab, err)) < 0)
				goto cleanup;
			for (int g = 0; g < G; g++) {
				size_t q = (size_t)k * L * G + (size_t)l * G + (size_t)g;
				/* NaN: no item has the group (two-token subjects have no middle) */
				f->values[l * G + g] = cnt[q] ? sum[q] / (double)cnt[q] : NAN;
			}
		}
	}
cleanup:
	mb_engine_free(e);
	free(sum);
	free(cnt);
	free(restored);
	free(grp);
	free(subj_tok);
	for (size_t i = 0; i < ED_TRACE_ITEMS; i++)
		free(toks[i]);
	return rc;
}

const mb_task mb_task_edit = {
	.name = "edit",
	.version = 1,
	.summary = "fact editing with ROME or MEMIT: CounterFact efficacy, paraphrase, "
		   "neighbourhood, fluency and KL, with random-update and wrong-layer controls "
		   "(Meng et al. 2022, 2023)",
	.metrics = ed_metrics,
	.n_metrics = M_COUNT,
	.batch = 1,
	.parallel_inside = 0,
	.generate = ed_generate,
	.check_params = ed_check_params,
	.open = ed_open,
	.close = ed_close,
	.prepare = ed_prepare,
	.run = ed_run,
	.figures = ed_figures,
	.derived = ed_derived,
	.n_derived = sizeof(ed_derived) / sizeof(ed_derived[0]),
};
