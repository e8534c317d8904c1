/*
 * ioi_templates.h: the IOI language: our prompt templates in the shape of
 * Wang et al. 2023 ("Interpretability in the Wild", section 2), the name,
 * place and object lists, rendering, the held-out name pairs and the
 * word-level vocabulary of every prompt. The zoo's `ioi` recipe
 * (src/train/zoo_ioi.c) trains on these sentences and the task-side
 * generator (ioi_prompts.h) makes its items from them, so both see the same
 * templates, words and held-out pairs. The templates are our own (18 of
 * them, seven syntactic shapes, S1 to S2 and IO to S gaps of different
 * lengths); ioi_prompts.h describes the prompts, orders and items.
 */
#ifndef MECHBENCH_IOI_TEMPLATES_H
#define MECHBENCH_IOI_TEMPLATES_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/error.h>

#define MB_IOI_MAX_TEMPLATES 32

/* A template: "{A}" and "{B}" the first and second names introduced, "{S}"
 * the repeated subject, "{P}" a place, "{O}" an object (zero or more). */
typedef struct mb_ioi_template {
	const char *id;    /* "t00" */
	const char *shape; /* "subordinate", "two-sentence", "long-gap", ... */
	const char *text;  /* "When {A} and {B} arrived at the {P}, {S} handed a {O} to" */
} mb_ioi_template;

typedef enum mb_ioi_order {
	MB_IOI_ABBA = 0, /* IO introduced first */
	MB_IOI_BABA = 1, /* S introduced first */
} mb_ioi_order;

typedef enum mb_ioi_list {
	MB_IOI_NAMES = 0,
	MB_IOI_PLACES = 1,
	MB_IOI_OBJECTS = 2,
} mb_ioi_list;

/* The template table, in id order. */
size_t mb_ioi_template_count(void);
const mb_ioi_template *mb_ioi_template_at(size_t i);
/* The index of template id, or -1. */
int mb_ioi_template_find(const char *id);

/* A source list (every word, before any tokenizer filter); *n its length.
 * Borrowed, static. "names", "places", "objects" for messages. */
const char *const *mb_ioi_words(mb_ioi_list which, size_t *n);
const char *mb_ioi_list_name(mb_ioi_list which);
/* "ABBA" / "BABA". */
const char *mb_ioi_order_name(mb_ioi_order o);
/* The ids of the templates held out of the zoo's training text by default
 * (ioi_prompts.h "heldout_templates"): t02, t04, t09, t11; *n of them. */
const char *const *mb_ioi_heldout_default(size_t *n);

/* Renders template t with names a (slot {A}), b ({B}), s ({S}), place and
 * object into buf (cap bytes, NUL-terminated). off[0..3) get the byte offsets
 * of the {A}, {B} and {S} names in buf. Returns 0, or MB_EINVALID when the
 * text does not fit (naming the template). */
int mb_ioi_render(char *buf, size_t cap, size_t off[3], const mb_ioi_template *t, const char *a,
		  const char *b, const char *s, const char *place, const char *object,
		  mb_error *err);

/* Whether the unordered pair {a, b} is held out of the zoo's training text:
 * mb_rng_uniform < fraction on stream "ioi/heldout_pair" under pair_seed,
 * index mb_rng_stream_id("<min(a,b)>|<max(a,b)>", 0) (strcmp order). A pure
 * function of the two names, independent of any tokenizer or dataset. */
int mb_ioi_pair_heldout(uint64_t pair_seed, double fraction, const char *a, const char *b);

/* The generator's vocabulary for a word-level zoo tokenizer: every token the
 * pre-tokenizer pre_tokenizer ("WhitespaceSplit": runs of non-space, so
 * "store," is one token; "Whitespace": runs of [A-Za-z0-9_] or of other
 * non-space characters) makes of any prompt any template can render, plus
 * every list word, before any filter: sorted by strcmp, no duplicates. *out
 * is one allocation (the pointer array and the strings), freed with free().
 * Errors: an unknown pre_tokenizer (MB_EINVALID), MB_ENOMEM. */
int mb_ioi_vocab(char ***out, size_t *n, const char *pre_tokenizer, mb_error *err);

#endif
