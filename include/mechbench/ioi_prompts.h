/*
 * ioi_prompts.h: the IOI (indirect object identification) prompt generator
 * (TASKS.md, "IOI (indirect object identification)"), a standalone module the
 * `ioi` task and the zoo's `ioi` recipe call.
 *
 * A prompt has the shape of Wang et al. 2023 ("Interpretability in the Wild",
 * section 2): two names are introduced, one of them (the subject S) is
 * mentioned again, and the prompt ends where the other (the indirect object
 * IO) is the natural next word: "When Mary and John arrived at the store,
 * John handed a drink to" -> " Mary". The templates are our own (18 of them,
 * seven syntactic shapes, S1 to S2 and IO to S gaps of different lengths;
 * mb_ioi_template_at). Order ABBA puts IO first ("Mary and John ... John"),
 * BABA puts S first ("John and Mary ... John").
 *
 * The templates, the word lists, rendering, the held-out pairs and the zoo's
 * vocabulary are the IOI language of ioi_templates.h (layer train, so the
 * zoo's `ioi` recipe trains on the same sentences); this header adds the
 * items, their corruptions and the split.
 *
 * Words. Names, places and objects come from lists in ioi_templates.c. A
 * tokenizer decides which are usable: only a word that encodes, with a
 * leading space (" Mary"), to exactly one token that decodes back to it is
 * kept (mb_ioi_lexicon_init), so one generator serves a word-level zoo
 * vocabulary and GPT-2's byte-level BPE. Every name slot of a template is
 * preceded and followed by a space, so a name is that same one token inside
 * a prompt under BPE and under both word-level pre-tokenizers.
 *
 * Items (mb_ioi_generate) go into an mb_item_list: stratum "<template>/
 * <order>" ("t03/ABBA"), cluster the template id ("t03"), so content keys
 * come from mb_item_key. The input JSON of an item:
 *   "template"   template id, "t00".."t17"
 *   "order"      "ABBA" or "BABA"
 *   "io", "s"    the IO and S names; "place", "object" the fillers
 *   "text"       the clean prompt (no BOS, no trailing space)
 *   "answer"     " " + io, the completion (one token, id io_id)
 *   "tokens"     the clean prompt's ids under the tokenizer
 *   "io_id", "s_id"  the ids of " " + io and " " + s
 *   "pos"        {"io", "s1", "s2", "end"}: indexes into tokens of the IO
 *                name, the first and second S, and the last token (where
 *                the task reads logit(IO) - logit(S)); found by encoding the
 *                text before each name and checked against the ids, never
 *                assumed. A task that prepends BOS adds 1.
 *   "abc"        the ABC corruption: {"io", "s1", "s2"} three distinct names,
 *                none equal to io or s, in the IO, S1 and S2 slots (the
 *                IO/S structure is gone; per-template means over these
 *                prompts are the mean-ablation values), "text", "tokens"
 *   "swap"       the symmetric name swap: io and s exchanged everywhere
 *                (same order, same positions; its answer is " " + s),
 *                {"text", "tokens"}
 *   "heldout_template"  the template is held out of the zoo's training text
 *   "heldout_pair"      the unordered pair {io, s} is held out of the zoo's
 *                training text (mb_ioi_pair_heldout)
 *   "split"      "discovery" or "evaluation" (mb_ioi_split_of)
 * The corrupted prompts have the clean prompt's length and positions (the
 * generator checks it), and every prompt of a template has the same length.
 *
 * Randomness: all from named Philox streams (rng.h). Item i of template t
 * (its index in the table, not in params) and order o draws from stream
 * "ioi/items", index (2 t + o) * 1000000 + i, under the dataset seed: IO, S
 * (distinct), place, object, then the three ABC names (distinct, not IO or
 * S), each by mb_rng_range with redraws on a clash. Items are emitted in
 * table order whatever the order of params.templates.
 *
 * Split: an item is in the discovery half when mb_rng_uniform on stream
 * "ioi/split", index mb_item_key_index(key), under the dataset seed is below
 * discovery_fraction, where key is the content key of the item without its
 * "split" field: a function of the item's content alone, never of its
 * position or of the other items.
 *
 * Generator params (JSON object, every field optional):
 *   "n_per_stratum"          items per template x order, [1, 100000] (20)
 *   "templates"              template ids to generate (default all)
 *   "heldout_templates"      template ids marked held out
 *                            (default ["t02", "t04", "t09", "t11"])
 *   "heldout_pair_fraction"  share of name pairs held out, [0, 1) (0.2)
 *   "pair_seed"              seed of the held-out pair draw, >= 0 (0); the
 *                            zoo recipe must use the same value
 *   "discovery_fraction"     share of items in discovery, (0, 1) (0.5)
 */
#ifndef MECHBENCH_IOI_PROMPTS_H
#define MECHBENCH_IOI_PROMPTS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <mechbench/error.h>
#include <mechbench/ioi_templates.h>
#include <mechbench/task.h>
#include <mechbench/tokenizer.h>

#define MB_IOI_MAX_N_PER_STRATUM 100000

typedef enum mb_ioi_split {
	MB_IOI_DISCOVERY = 0,
	MB_IOI_EVALUATION = 1,
} mb_ioi_split;

/* "discovery" / "evaluation". */
const char *mb_ioi_split_name(mb_ioi_split s);

/* Parsed generator params (the header comment lists the JSON fields). */
typedef struct mb_ioi_params {
	int64_t n_per_stratum;
	uint8_t use[MB_IOI_MAX_TEMPLATES];     /* by template index */
	uint8_t heldout[MB_IOI_MAX_TEMPLATES]; /* by template index */
	double heldout_pair_fraction;
	uint64_t pair_seed;
	double discovery_fraction;
} mb_ioi_params;

/* Parses params (NULL: defaults) into *out. Returns 0 or MB_EINVALID with
 * one line naming the field ("params.templates[2]: ..."). */
int mb_ioi_params_parse(mb_ioi_params *out, const json_t *params, mb_error *err);

/* The words of the three lists that the tokenizer keeps (see the header
 * comment), in list order, with their ids. One allocation; the strings are
 * the static list entries. */
typedef struct mb_ioi_lexicon {
	const char **words[3]; /* by mb_ioi_list */
	int32_t *ids[3];
	size_t n[3];
	void *mem;
} mb_ioi_lexicon;

/* Filters the lists through tok. tok_name labels messages (a path; NULL:
 * the tokenizer's kind). A word is kept when encode(" " + word) is one id
 * that decodes to " " + word (BPE) or to word up to ASCII case (WordLevel)
 * and no earlier word of any list has that id; a word the tokenizer cannot
 * encode at all is dropped. Errors (MB_EINVALID): fewer than 5 names (IO, S
 * and three ABC names), no place or no object kept, each naming the list and
 * the tokenizer; MB_ENOMEM. */
int mb_ioi_lexicon_init(mb_ioi_lexicon *out, const mb_tokenizer *tok, const char *tok_name,
			mb_error *err);
void mb_ioi_lexicon_dispose(mb_ioi_lexicon *lx);

/* The split of an item (stratum, cluster, input as the generator wrote
 * them; a "split" field in input is ignored): see the header comment.
 * Returns 0 or MB_ENOMEM. */
int mb_ioi_split_of(mb_ioi_split *out, uint64_t seed, double discovery_fraction,
		    const char *stratum, const char *cluster, const json_t *input, mb_error *err);

/* Generates the dataset of (seed, params) under tok into out (appends).
 * Same (seed, params, tokenizer): byte-identical items. Errors: params as
 * mb_ioi_params_parse; the lexicon's; a prompt whose name positions cannot
 * be found in its tokenization, or whose corruption differs in length or
 * positions (naming the template, order and item; MB_EINVALID); the
 * tokenizer's own (naming the prompt). */
int mb_ioi_generate(mb_item_list *out, uint64_t seed, const json_t *params,
		    const mb_tokenizer *tok, const char *tok_name, mb_error *err);

#endif
