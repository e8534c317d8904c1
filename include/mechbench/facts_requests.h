/*
 * facts_requests.h: CounterFact-shaped edit requests (Meng et al. 2022,
 * sec. 3 and appendix C, the CounterFact dataset) generated from the zoo
 * facts model's knowledge base (zoo.h, mb_zoo_facts_*), for the `edit` task
 * and `mechbench edit`.
 *
 * An item is one request: stratum the relation ("city", "job", "language",
 * "sport"), cluster the subject. Its input JSON:
 *   "case_id"               int, the request's index in generation order
 *   "subject"               the subject's name ("Adam van Berg")
 *   "relation"              the relation (= the stratum)
 *   "prompt"                a training template with "{}" for the subject
 *                           ("{} lives in"): the edit prompt
 *   "target_true"           the subject's object (one word, one token)
 *   "target_new"            another object of the relation (one token)
 *   "paraphrase_prompts"    [{"prompt": text, "template": text with {},
 *                             "heldout": bool}]: every other template of the
 *                           relation, the held-out ones (never trained) last
 *   "neighborhood_prompts"  [{"subject", "prompt", "target"}]: other subjects
 *                           with the same relation and object (target =
 *                           target_true): an edit must leave them alone
 *   "attribute_prompts"     [{"subject", "prompt", "target"}]: subjects whose
 *                           object is target_new (target = target_new)
 *   "same_subject_prompts"  [{"relation", "prompt", "target"}]: the subject's
 *                           other relations, which must not move
 *   "unrelated_prompts"     [text]: filler text without facts, cut before
 *                           its last word (the KL on unrelated text)
 *   "generation_prompts"    [text]: prompts for greedy continuations
 *                           (fluency)
 * subject, prompt, target_new and target_true are the fields of
 * `mechbench edit --edits`. Every prompt text is space-separated words of
 * the model's vocabulary and ends where the object follows.
 *
 * Params (every field required but the counts):
 *   {"recipe": "facts", "preset": "fast", "model_seed": int >= 0,
 *    "n_per_relation": int in [1, n_subjects] (default 25),
 *    "n_neighbors": int >= 0 (default 8), "n_unrelated": int >= 0 (default 8)}
 * The knowledge base is the one of recipe (recipe, preset, model_seed).
 *
 * Draws (part of the definition): per relation r (in order) a Philox
 * permutation of the subjects (stream "facts_edit/subjects", index r under
 * the seed), the first n_per_relation of which are the relation's requests,
 * case_id = r * n_per_relation + i; per request, stream
 * ("facts_edit/request", case_id): the edit template (range over the
 * relation's training templates), target_new (range O - 1 over the other
 * objects, in object order), then for the neighbours, the attribute
 * subjects and the subject's other relations (each list in subject or
 * relation order, shuffled by mb_rng_shuffle, cut to n_neighbors) a
 * training template each; unrelated prompt k is filler sentence
 * ("facts_edit/unrelated", case_id * n_unrelated + k).
 */
#ifndef MECHBENCH_FACTS_REQUESTS_H
#define MECHBENCH_FACTS_REQUESTS_H

#include <stdint.h>

#include <jansson.h>

#include <mechbench/error.h>
#include <mechbench/task.h>

/* The task name and version the requests are rendered under (the `edit`
 * task's generate hook is this function). */
#define MB_FACTS_REQUESTS_TASK "edit"
#define MB_FACTS_REQUESTS_VERSION 1

/* Appends the requests of (seed, params) to out, in case_id order. Errors:
 * MB_EINVALID naming params.<field>; the recipe's. A task generate hook. */
int mb_facts_requests_generate(mb_item_list *out, uint64_t seed, const json_t *params,
			       mb_error *err);

/* Held-out text of the zoo facts model's language for the `lm` task (lm.c):
 * one sentence per item, input {"text": the sentence}, in three strata (the
 * text sources): "fact", facts in a training template ("<template with the
 * subject> <object> ."), the first n_per_stratum of a Philox permutation
 * (stream "facts_text/fact", 0 under the seed) of all (subject, relation,
 * training template) triples, in (subject, relation, template) order;
 * "fact_heldout", the same over the held-out templates (stream
 * "facts_text/heldout"), sentences the model never saw in training; and
 * "filler", filler sentence i of stream ("facts_text/filler", i) for i <
 * n_per_stratum (fresh draws of the training distribution's non-fact text).
 * Clusters: the subject; "filler/<i>". Params {"recipe": "facts", "preset",
 * "model_seed", "n_per_stratum": int >= 1 (default 64)}; errors name
 * params.<field>. */
int mb_facts_text_generate(mb_item_list *out, uint64_t seed, const json_t *params,
			   mb_error *err);

/* Text for the key second moment of `mechbench edit --corpus`: rows 0..n-1
 * of the recipe's stream "facts/corpus" (the training distribution), one
 * line each, without [BOS] and the cut last sentence. *out is malloc'd. */
int mb_facts_corpus(char **out, size_t *len, const json_t *params, int rows, mb_error *err);

#endif
