/*
 * facts_requests.c: CounterFact-shaped edit requests from the zoo facts
 * model's knowledge base. The items, their input JSON, the params and the
 * draws are defined in facts_requests.h.
 */
#include <mechbench/facts_requests.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/rng.h>
#include <mechbench/zoo.h>

#define FR_TEXT_MAX 256

typedef struct fr_params {
	mb_zoo_recipe recipe;
	int64_t model_seed, n_per_relation, n_neighbors, n_unrelated;
	int64_t n_per_stratum; /* text (mb_facts_text_generate) */
} fr_params;

static int fr_int(int64_t *out, json_t *v, const char *key, int64_t lo, int64_t hi,
		  mb_error *err)
{
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return mb_error_set(err, MB_EINVALID,
				    "params.%s: expected an integer in [%lld, %lld]", key,
				    (long long)lo, (long long)hi);
	*out = json_integer_value(v);
	return 0;
}

/* Reads and checks params; builds the recipe (and so the knowledge base's
 * definition) it names. text: the params of mb_facts_text_generate (counts:
 * n_per_stratum) instead of the requests' (n_per_relation, n_neighbors,
 * n_unrelated). */
static int fr_read_params(fr_params *p, const json_t *params, int text, mb_error *err)
{
	const char *recipe = NULL, *preset = NULL, *key;
	int have_seed = 0, error;
	json_t *v;

	p->n_per_relation = 25;
	p->n_neighbors = 8;
	p->n_unrelated = 8;
	p->model_seed = 0;
	p->n_per_stratum = 64;
	if (!json_is_object(params))
		return mb_error_set(err, MB_EINVALID, "params: expected an object with recipe, "
				    "preset and model_seed");
	json_object_foreach((json_t *)params, key, v) {
		error = 0;
		if (strcmp(key, "recipe") == 0 || strcmp(key, "preset") == 0) {
			if (!json_is_string(v))
				return mb_error_set(err, MB_EINVALID, "params.%s: expected a string",
						    key);
			*(key[0] == 'r' ? &recipe : &preset) = json_string_value(v);
		} else if (strcmp(key, "model_seed") == 0) {
			error = fr_int(&p->model_seed, v, key, 0, INT64_MAX, err);
			have_seed = 1;
		} else if (text && strcmp(key, "n_per_stratum") == 0) {
			error = fr_int(&p->n_per_stratum, v, key, 1, 1 << 20, err);
		} else if (text) {
			return mb_error_set(err, MB_EINVALID,
					    "params.%s: unknown field (facts text takes recipe, "
					    "preset, model_seed, n_per_stratum)", key);
		} else if (strcmp(key, "n_per_relation") == 0) {
			error = fr_int(&p->n_per_relation, v, key, 1, 1 << 20, err);
		} else if (strcmp(key, "n_neighbors") == 0) {
			error = fr_int(&p->n_neighbors, v, key, 0, 1 << 20, err);
		} else if (strcmp(key, "n_unrelated") == 0) {
			error = fr_int(&p->n_unrelated, v, key, 0, 1 << 20, err);
		} else {
			return mb_error_set(err, MB_EINVALID,
					    "params.%s: unknown field (edit requests take recipe, "
					    "preset, model_seed, n_per_relation, n_neighbors, "
					    "n_unrelated)", key);
		}
		if (error < 0)
			return error;
	}
	if (!recipe || !preset || !have_seed)
		return mb_error_set(err, MB_EINVALID, "params.%s: required (the facts model's "
				    "recipe)", !recipe ? "recipe" : !preset ? "preset" : "model_seed");
	if (strcmp(recipe, "facts") != 0)
		return mb_error_set(err, MB_EINVALID, "params.recipe: '%s': %s come from the "
				    "'facts' recipe's knowledge base", recipe,
				    text ? "facts texts" : "edit requests");
	error = mb_zoo_recipe_get(&p->recipe, recipe, preset, (uint64_t)p->model_seed, err);
	if (error < 0) {
		mb_error_prefix(err, "params.preset");
		return MB_EINVALID; /* a bad params value, whatever the lookup said */
	}
	if (p->n_per_relation > p->recipe.n_subjects)
		return mb_error_set(err, MB_EINVALID,
				    "params.n_per_relation: %lld is more than the %d subjects",
				    (long long)p->n_per_relation, p->recipe.n_subjects);
	return 0;
}

/* The template with the subject in place of "{}". */
static json_t *fr_render(const char *tmpl, const char *subject)
{
	char text[FR_TEXT_MAX];
	const char *at = strstr(tmpl, "{}");

	MB_ASSERT(at);
	snprintf(text, sizeof(text), "%.*s%s%s", (int)(at - tmpl), tmpl, subject, at + 2);
	return json_string(text);
}

/* A training template of relation r, drawn uniformly. */
static int fr_train_template(mb_rng *rng, int r)
{
	int train[64], n = 0;

	for (int t = 0; t < mb_zoo_facts_templates(); t++)
		if (!mb_zoo_facts_is_heldout(r, t))
			train[n++] = t;
	return train[mb_rng_range(rng, (uint64_t)n)];
}

/* [{"subject", "prompt", "target"}] for the subjects other than s whose
 * object of r is o: in subject order, shuffled, the first max of them, each
 * in a training template. */
static json_t *fr_others(mb_rng *rng, const mb_zoo_facts *kb, int s, int r, int o, int64_t max)
{
	const int n = mb_zoo_facts_subjects(kb);
	int *pick = malloc((size_t)n * sizeof(*pick)), np = 0;
	json_t *a = json_array();

	if (!pick || !a) {
		free(pick);
		json_decref(a);
		return NULL;
	}
	for (int x = 0; x < n; x++)
		if (x != s && mb_zoo_facts_object_of(kb, x, r) == o)
			pick[np++] = x;
	mb_rng_shuffle(rng, pick, (size_t)np, sizeof(*pick));
	for (int i = 0; i < np && i < max; i++) {
		const char *sub = mb_zoo_facts_subject(kb, pick[i]);
		int t = fr_train_template(rng, r);
		if (json_array_append_new(a, json_pack("{s:s, s:o, s:s}", "subject", sub, "prompt",
						       fr_render(mb_zoo_facts_template(kb, r, t), sub),
						       "target", mb_zoo_facts_object(r, o))) < 0) {
			json_decref(a);
			a = NULL;
			break;
		}
	}
	free(pick);
	return a;
}

/* The input of request case_id: subject s, relation r. NULL on allocation
 * failure. */
static json_t *fr_request(const mb_zoo_facts *kb, const fr_params *p, uint64_t seed,
			  int64_t case_id, int s, int r)
{
	const char *sub = mb_zoo_facts_subject(kb, s);
	const int O = mb_zoo_facts_objects(), K = mb_zoo_facts_templates();
	const int R = mb_zoo_facts_relations();
	const int old = mb_zoo_facts_object_of(kb, s, r);
	json_t *para = json_array(), *same = json_array(), *unrel = json_array(), *gen;
	json_t *nb = NULL, *attr = NULL, *o = NULL;
	char text[FR_TEXT_MAX];
	mb_rng rng;
	int t, nw;
	int bad = !para || !same || !unrel;

	mb_rng_init_named(&rng, seed, "facts_edit/request", (uint64_t)case_id);
	t = fr_train_template(&rng, r);
	nw = (old + 1 + (int)mb_rng_range(&rng, (uint64_t)(O - 1))) % O;
	/* Paraphrases: the other training templates, then the held-out ones. */
	for (int pass = 0; pass < 2 && !bad; pass++)
		for (int k = 0; k < K && !bad; k++) {
			int held = mb_zoo_facts_is_heldout(r, k);
			if (k == t || held != pass)
				continue;
			const char *tm = mb_zoo_facts_template(kb, r, k);
			bad |= json_array_append_new(para, json_pack("{s:o, s:s, s:b}", "prompt",
								      fr_render(tm, sub), "template",
								      tm, "heldout", held)) < 0;
		}
	if (!bad)
		nb = fr_others(&rng, kb, s, r, old, p->n_neighbors);
	if (nb)
		attr = fr_others(&rng, kb, s, r, nw, p->n_neighbors);
	bad |= !nb || !attr;
	for (int q = 0; q < R && !bad; q++) {
		if (q == r)
			continue;
		int tq = fr_train_template(&rng, q);
		bad |= json_array_append_new(
			same, json_pack("{s:s, s:o, s:s}", "relation", mb_zoo_facts_relation(q),
					"prompt", fr_render(mb_zoo_facts_template(kb, q, tq), sub),
					"target",
					mb_zoo_facts_object(q, mb_zoo_facts_object_of(kb, s, q)))) < 0;
	}
	for (int64_t k = 0; k < p->n_unrelated && !bad; k++) {
		int len = mb_zoo_facts_filler(text, sizeof(text), kb, seed, "facts_edit/unrelated",
					      (uint64_t)(case_id * p->n_unrelated + k));
		MB_ASSERT(len > 0);
		/* Cut before the last word: drop " ." and the word before it. */
		char *end = strrchr(text, ' ');
		MB_ASSERT(end);
		*end = '\0';
		end = strrchr(text, ' ');
		MB_ASSERT(end);
		*end = '\0';
		bad |= json_array_append_new(unrel, json_string(text)) < 0;
	}
	snprintf(text, sizeof(text), "people say that %s", sub);
	gen = json_pack("[s, s]", sub, text);
	bad |= !gen;
	if (!bad)
		o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:O, s:O, s:O, s:O, s:O, s:O}",
			      "case_id", (json_int_t)case_id, "subject", sub, "relation",
			      mb_zoo_facts_relation(r), "prompt", mb_zoo_facts_template(kb, r, t),
			      "target_true", mb_zoo_facts_object(r, old), "target_new",
			      mb_zoo_facts_object(r, nw), "paraphrase_prompts", para,
			      "neighborhood_prompts", nb, "attribute_prompts", attr,
			      "same_subject_prompts", same, "unrelated_prompts", unrel,
			      "generation_prompts", gen);
	json_decref(para);
	json_decref(nb);
	json_decref(attr);
	json_decref(same);
	json_decref(unrel);
	json_decref(gen);
	return o;
}

int mb_facts_requests_generate(mb_item_list *out, uint64_t seed, const json_t *params,
			       mb_error *err)
{
	fr_params p;
	mb_zoo_facts *kb = NULL;
	uint32_t *perm = NULL;
	int error;

	memset(&p, 0, sizeof(p));
	if ((error = fr_read_params(&p, params, 0, err)) < 0)
		return error;
	if ((error = mb_zoo_facts_init(&kb, &p.recipe, err)) < 0)
		return error;
	const int n = mb_zoo_facts_subjects(kb), R = mb_zoo_facts_relations();
	perm = malloc((size_t)n * sizeof(*perm));
	if (!perm) {
		error = mb_error_oom(err, "edit requests", (size_t)n * sizeof(*perm));
		goto cleanup;
	}
	for (int r = 0; r < R && error == 0; r++) {
		mb_rng rng;
		mb_rng_init_named(&rng, seed, "facts_edit/subjects", (uint64_t)r);
		mb_rng_permutation(&rng, perm, (size_t)n);
		for (int64_t i = 0; i < p.n_per_relation && error == 0; i++) {
			int s = (int)perm[i];
			json_t *in = fr_request(kb, &p, seed, r * p.n_per_relation + i, s, r);
			if (!in) {
				error = mb_error_oom(err, "edit request", 0);
				break;
			}
			error = mb_item_list_add(out, mb_zoo_facts_relation(r),
						 mb_zoo_facts_subject(kb, s), in, err);
		}
	}
cleanup:
	free(perm);
	mb_zoo_facts_free(kb);
	return error;
}

int mb_facts_corpus(char **out, size_t *len, const json_t *params, int rows, mb_error *err)
{
	fr_params p;
	mb_zoo_facts *kb = NULL;
	int32_t *tok = NULL;
	char *buf = NULL;
	size_t cap = 0, n = 0;
	int error, T;

	*out = NULL;
	*len = 0;
	memset(&p, 0, sizeof(p));
	if ((error = fr_read_params(&p, params, 0, err)) < 0)
		return error;
	if ((error = mb_zoo_facts_init(&kb, &p.recipe, err)) < 0)
		return error;
	T = p.recipe.n_positions;
	tok = malloc((size_t)T * sizeof(*tok));
	cap = (size_t)rows * (size_t)T * 16 + 1;
	buf = malloc(cap);
	if (!tok || !buf) {
		error = mb_error_oom(err, "corpus", cap);
		goto cleanup;
	}
	for (int i = 0; i < rows; i++) {
		int last = 0;
		mb_zoo_facts_row(tok, kb, "facts/corpus", (uint64_t)i);
		/* Whole sentences only: up to the last "." of the row. */
		for (int j = 1; j < T; j++)
			if (strcmp(mb_zoo_facts_word(kb, tok[j]), ".") == 0)
				last = j;
		for (int j = 1; j <= last; j++)
			n += (size_t)snprintf(buf + n, cap - n, "%s%s", j > 1 ? " " : "",
					      mb_zoo_facts_word(kb, tok[j]));
		n += (size_t)snprintf(buf + n, cap - n, "\n");
	}
	*out = buf;
	*len = n;
	buf = NULL;
cleanup:
	free(buf);
	free(tok);
	mb_zoo_facts_free(kb);
	return error;
}

/* Appends the item {"text": text}. */
static int fr_add_text(mb_item_list *out, const char *stratum, const char *cluster,
		       const char *text, mb_error *err)
{
	json_t *in = json_pack("{s:s}", "text", text);

	if (!in)
		return mb_error_oom(err, "facts text", strlen(text));
	return mb_item_list_add(out, stratum, cluster, in, err);
}

/* The n first of a Philox permutation (stream name, 0) of the facts (s, r, t)
 * whose template t is held out (held = 1) or trained (0), in that order:
 * items "<template with s> <object of (s, r)> ." of the stratum, cluster s. */
static int fr_fact_texts(mb_item_list *out, const mb_zoo_facts *kb, uint64_t seed,
			 const char *stratum, const char *stream, int held, int64_t n,
			 mb_error *err)
{
	const int N = mb_zoo_facts_subjects(kb), R = mb_zoo_facts_relations();
	const int K = mb_zoo_facts_templates();
	int32_t *all = malloc((size_t)N * (size_t)R * (size_t)K * sizeof(*all));
	size_t na = 0;
	mb_rng rng;
	int error = 0;

	if (!all)
		return mb_error_oom(err, "facts texts", (size_t)N * (size_t)R * (size_t)K);
	for (int s = 0; s < N; s++)
		for (int r = 0; r < R; r++)
			for (int t = 0; t < K; t++)
				if (mb_zoo_facts_is_heldout(r, t) == held)
					all[na++] = (s * R + r) * K + t;
	if ((size_t)n > na) {
		error = mb_error_set(err, MB_EINVALID, "params.n_per_stratum: %lld is more than "
				     "the %zu %s sentences of the knowledge base", (long long)n, na,
				     stratum);
		goto cleanup;
	}
	mb_rng_init_named(&rng, seed, stream, 0);
	mb_rng_shuffle(&rng, all, na, sizeof(*all));
	for (int64_t i = 0; i < n && error == 0; i++) {
		const int s = all[i] / (R * K), r = all[i] / K % R, t = all[i] % K;
		const char *tm = mb_zoo_facts_template(kb, r, t), *at = strstr(tm, "{}");
		char text[FR_TEXT_MAX];

		MB_ASSERT(at);
		snprintf(text, sizeof(text), "%.*s%s%s %s .", (int)(at - tm), tm,
			 mb_zoo_facts_subject(kb, s), at + 2,
			 mb_zoo_facts_object(r, mb_zoo_facts_object_of(kb, s, r)));
		error = fr_add_text(out, stratum, mb_zoo_facts_subject(kb, s), text, err);
	}
cleanup:
	free(all);
	return error;
}

int mb_facts_text_generate(mb_item_list *out, uint64_t seed, const json_t *params,
			   mb_error *err)
{
	fr_params p;
	mb_zoo_facts *kb = NULL;
	int error;

	memset(&p, 0, sizeof(p));
	if ((error = fr_read_params(&p, params, 1, err)) < 0)
		return error;
	if ((error = mb_zoo_facts_init(&kb, &p.recipe, err)) < 0)
		return error;
	if ((error = fr_fact_texts(out, kb, seed, "fact", "facts_text/fact", 0, p.n_per_stratum,
				   err)) < 0 ||
	    (error = fr_fact_texts(out, kb, seed, "fact_heldout", "facts_text/heldout", 1,
				   p.n_per_stratum, err)) < 0)
		goto cleanup;
	for (int64_t i = 0; i < p.n_per_stratum && error == 0; i++) {
		char text[FR_TEXT_MAX], cluster[32];
		int len = mb_zoo_facts_filler(text, sizeof(text), kb, seed, "facts_text/filler",
					      (uint64_t)i);

		MB_ASSERT(len > 0);
		snprintf(cluster, sizeof(cluster), "filler/%lld", (long long)i);
		error = fr_add_text(out, "filler", cluster, text, err);
	}
cleanup:
	mb_zoo_facts_free(kb);
	return error;
}
