/*
 * ioi_templates.c: the IOI language: our templates, the word lists, rendering,
 * the held-out name pairs and the zoo's word-level vocabulary
 * (ioi_templates.h). The task-side generator (items, corruptions, split) is
 * src/tasks/ioi_prompts.c; the zoo's `ioi` recipe (src/train/zoo_ioi.c)
 * trains on these templates.
 */
#include <mechbench/ioi_templates.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/rng.h>

#define IOI_TEXT_MAX 512

/* Our own templates. Shapes: "subordinate" (names coordinated in a fronted
 * clause, S2 in the main clause), "two-sentence", "long-gap" (a long phrase
 * between the introduction and S2), "apart" (the names in different roles,
 * tokens between them), "give-it" (the object introduced with the names),
 * "said" (no object), "relative" (a relative clause). Rules the tests check:
 * exactly one {A}, {B} and {S}, each preceded and followed by a space; no
 * placeholder at the start; the text ends with a word. */
static const mb_ioi_template ioi_templates[] = {
	{"t00", "subordinate", "When {A} and {B} arrived at the {P}, {S} handed a {O} to"},
	{"t01", "subordinate", "As soon as {A} and {B} reached the {P}, {S} passed a {O} to"},
	{"t02", "subordinate", "While {A} and {B} were cleaning the {P}, {S} tossed a {O} to"},
	{"t03", "two-sentence", "Later, {A} and {B} walked to the {P}. {S} offered a {O} to"},
	{"t04", "two-sentence", "On Monday, {A} and {B} visited the {P}. There, {S} sold a {O} to"},
	{"t05", "long-gap",
	 "When {A} and {B} went to the {P} on a cold and rainy afternoon last week, {S} brought "
	 "a {O} to"},
	{"t06", "long-gap",
	 "Last summer {A} and {B} spent many quiet hours together at the {P}, and one evening {S} "
	 "gave a {O} to"},
	{"t07", "apart", "At the {P}, {A} met {B} by chance, and {S} showed a {O} to"},
	{"t08", "apart", "Yesterday {A} went to the {P} with {B} and later {S} lent a {O} to"},
	{"t09", "apart",
	 "Early this morning {A} called {B} from the {P}, and then {S} mailed a {O} to"},
	{"t10", "give-it", "When {A} and {B} found a {O} at the {P}, {S} gave it to"},
	{"t11", "give-it", "After {A} and {B} bought a {O} at the {P}, {S} decided to give it to"},
	{"t12", "said", "In the {P}, {A} and {B} had a long argument, and afterwards {S} said to"},
	{"t13", "relative", "The {P} that {A} and {B} liked was closed, so {S} wrote a {O} for"},
	{"t14", "apart",
	 "Inside the {P}, {A} sat next to {B} for an hour. Without a word, {S} slid a {O} over to"},
	{"t15", "long-gap",
	 "While {A} and {B} were waiting at the {P}, it started to rain, so {S} handed a {O} to"},
	{"t16", "two-sentence",
	 "Then, {A} and {B} cleaned the {P} together. When they had finished, {S} gave a {O} to"},
	{"t17", "relative",
	 "After lunch {A} and {B} walked over to the {P}, where {S} quietly passed a {O} to"},
};
#define IOI_N_TEMPLATES (sizeof(ioi_templates) / sizeof(ioi_templates[0]))

/* Held out of the zoo's training text by default: one template of each
 * shape that has siblings in training, so the test is a new sentence, not a
 * new construction. */
static const char *const ioi_default_heldout[] = {"t02", "t04", "t09", "t11"};

/* English first names. The last ones are rarer names that GPT-2 splits into
 * several tokens (the filter test drops them there). No name equals a place
 * or an object up to case. */
static const char *const ioi_names[] = {
	"Mary",   "John",   "Tom",     "James",    "Michael",     "David",     "Robert",   "Daniel",
	"Paul",   "Mark",   "Sarah",   "Anna",     "Emma",        "Alice",     "Kate",     "Laura",
	"Lisa",   "Rachel", "Susan",   "Linda",    "Karen",       "Jessica",   "Emily",    "Amy",
	"Helen",  "Ruth",   "Grace",   "Jane",     "Anne",        "Peter",     "Andrew",   "Steven",
	"Kevin",  "Brian",  "George",  "Edward",   "Richard",     "Thomas",    "Charles",  "Joseph",
	"Frank",  "Henry",  "Jack",    "Sam",      "Ben",         "Adam",      "Eric",     "Ryan",
	"Jason",  "Scott",  "Chris",   "Alex",     "Max",         "Dan",       "Ian",      "Luke",
	"Jacob",  "Nick",   "Tim",     "Jim",      "Joe",         "Bob",       "Jeff",     "Greg",
	"Carl",   "Carol",  "Diana",   "Julia",    "Maria",       "Nancy",     "Nora",     "Olivia",
	"Sophie", "Hannah", "Ezekiel", "Thaddeus", "Bartholomew", "Guinevere", "Philippa",
	"Winifred",
};

static const char *const ioi_places[] = {
	"store",  "park",   "school",     "station", "garden", "office", "market", "library",
	"beach",  "hospital", "restaurant", "museum", "house", "hotel",  "church", "kitchen",
	"bank",   "airport", "cafe",      "farm",    "bakery", "theater", "gym",   "lake",
	"zoo",    "harbor", "cathedral",  "observatory", "laundromat",
};

/* Objects take "a": each starts with a consonant sound. */
static const char *const ioi_objects[] = {
	"drink",  "book",   "ball",   "letter",   "pencil",   "bottle",   "cake",   "ring",
	"basket", "key",    "hat",    "card",     "bag",      "box",      "toy",    "shirt",
	"rose",   "candle", "coin",   "map",      "cup",      "gift",     "note",   "watch",
	"phone",  "knife",  "jacket", "sandwich", "necklace", "bracelet", "lantern", "ribbon",
	"scarf",  "guitar", "kite",   "harmonica", "thermos",
};

static const struct {
	const char *const *w;
	size_t n;
	const char *name;
} ioi_lists[3] = {
	{ioi_names, sizeof(ioi_names) / sizeof(ioi_names[0]), "names"},
	{ioi_places, sizeof(ioi_places) / sizeof(ioi_places[0]), "places"},
	{ioi_objects, sizeof(ioi_objects) / sizeof(ioi_objects[0]), "objects"},
};

const char *const *mb_ioi_heldout_default(size_t *n)
{
	*n = sizeof(ioi_default_heldout) / sizeof(ioi_default_heldout[0]);
	return ioi_default_heldout;
}

/* ---- tables --------------------------------------------------------------------- */

size_t mb_ioi_template_count(void)
{
	return IOI_N_TEMPLATES;
}

const mb_ioi_template *mb_ioi_template_at(size_t i)
{
	MB_ASSERT(i < IOI_N_TEMPLATES);
	return &ioi_templates[i];
}

int mb_ioi_template_find(const char *id)
{
	for (size_t i = 0; i < IOI_N_TEMPLATES; i++)
		if (strcmp(ioi_templates[i].id, id) == 0)
			return (int)i;
	return -1;
}

const char *const *mb_ioi_words(mb_ioi_list which, size_t *n)
{
	MB_ASSERT(which >= MB_IOI_NAMES && which <= MB_IOI_OBJECTS);
	*n = ioi_lists[which].n;
	return ioi_lists[which].w;
}

const char *mb_ioi_list_name(mb_ioi_list which)
{
	MB_ASSERT(which >= MB_IOI_NAMES && which <= MB_IOI_OBJECTS);
	return ioi_lists[which].name;
}

const char *mb_ioi_order_name(mb_ioi_order o)
{
	return o == MB_IOI_ABBA ? "ABBA" : "BABA";
}

/* ---- rendering ------------------------------------------------------------------ */

int mb_ioi_render(char *buf, size_t cap, size_t off[3], const mb_ioi_template *t, const char *a,
		  const char *b, const char *s, const char *place, const char *object,
		  mb_error *err)
{
	size_t len = 0;

	off[0] = off[1] = off[2] = 0;
	for (const char *p = t->text; *p; p++) {
		const char *w = NULL;
		int slot = -1;
		size_t wl;

		if (p[0] == '{' && p[1] && p[2] == '}') {
			switch (p[1]) {
			case 'A': w = a, slot = 0; break;
			case 'B': w = b, slot = 1; break;
			case 'S': w = s, slot = 2; break;
			case 'P': w = place; break;
			case 'O': w = object; break;
			default: break;
			}
		}
		if (!w) {
			if (len + 1 >= cap)
				goto too_long;
			buf[len++] = *p;
			continue;
		}
		wl = strlen(w);
		if (len + wl >= cap)
			goto too_long;
		if (slot >= 0)
			off[slot] = len;
		memcpy(buf + len, w, wl);
		len += wl;
		p += 2;
	}
	buf[len] = '\0';
	return 0;
too_long:
	return mb_error_set(err, MB_EINVALID,
			    "ioi template %s: the prompt is longer than %zu bytes", t->id, cap - 1);
}

/* ---- held-out pairs ----------------------------------------------------------- */

int mb_ioi_pair_heldout(uint64_t pair_seed, double fraction, const char *a, const char *b)
{
	char pair[256];
	mb_rng r;

	if (strcmp(a, b) > 0) {
		const char *t = a;
		a = b;
		b = t;
	}
	snprintf(pair, sizeof(pair), "%s|%s", a, b);
	mb_rng_init_named(&r, pair_seed, "ioi/heldout_pair", mb_rng_stream_id(pair, 0));
	return mb_rng_uniform(&r) < fraction;
}

/* ---- the zoo's vocabulary ------------------------------------------------------- */

typedef struct ioi_strs {
	char **s;
	size_t n, cap;
} ioi_strs;

static int strs_add(ioi_strs *v, const char *s, size_t len)
{
	char *c;

	if (v->n == v->cap) {
		size_t cap = v->cap ? 2 * v->cap : 1024;
		char **p = realloc(v->s, cap * sizeof(*p));
		if (!p)
			return -1;
		v->s = p;
		v->cap = cap;
	}
	if (!(c = malloc(len + 1)))
		return -1;
	memcpy(c, s, len);
	c[len] = '\0';
	v->s[v->n++] = c;
	return 0;
}

static int is_word_byte(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c >= 0x80;
}

/* Adds the pre-tokens of a chunk without spaces. */
static int add_pretokens(ioi_strs *v, const char *chunk, int split_words)
{
	size_t len = strlen(chunk), a = 0;

	if (!split_words)
		return strs_add(v, chunk, len);
	while (a < len) {
		size_t b = a + 1;
		int w = is_word_byte((unsigned char)chunk[a]);
		while (b < len && is_word_byte((unsigned char)chunk[b]) == w)
			b++;
		if (strs_add(v, chunk + a, b - a) < 0)
			return -1;
		a = b;
	}
	return 0;
}

/* The pre-tokens of one space-free chunk of a template, its placeholder (at
 * most one) expanded over its whole list. */
static int add_chunk(ioi_strs *v, const char *chunk, size_t len, int split_words)
{
	char buf[IOI_TEXT_MAX];
	const char *ph = NULL;
	int which = -1;

	for (size_t k = 0; k + 2 < len; k++)
		if (chunk[k] == '{' && chunk[k + 2] == '}') {
			MB_ASSERT(!ph); /* one placeholder per chunk (the tests check it) */
			ph = chunk + k;
		}
	if (ph)
		which = ph[1] == 'P' ? MB_IOI_PLACES : ph[1] == 'O' ? MB_IOI_OBJECTS : MB_IOI_NAMES;
	for (size_t i = 0; i < (ph ? ioi_lists[which].n : 1); i++) {
		if (ph)
			snprintf(buf, sizeof(buf), "%.*s%s%.*s", (int)(ph - chunk), chunk,
				 ioi_lists[which].w[i], (int)(len - (size_t)(ph + 3 - chunk)),
				 ph + 3);
		else
			snprintf(buf, sizeof(buf), "%.*s", (int)len, chunk);
		if (add_pretokens(v, buf, split_words) < 0)
			return -1;
	}
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int mb_ioi_vocab(char ***out, size_t *n, const char *pre_tokenizer, mb_error *err)
{
	ioi_strs v = {0};
	int split_words, error = 0;
	size_t bytes = 0, kept = 0;
	char **res, *p;

	*out = NULL;
	*n = 0;
	if (strcmp(pre_tokenizer, "WhitespaceSplit") == 0)
		split_words = 0;
	else if (strcmp(pre_tokenizer, "Whitespace") == 0)
		split_words = 1;
	else
		return mb_error_set(err, MB_EINVALID,
				    "ioi vocabulary: pre_tokenizer '%s': expected WhitespaceSplit "
				    "or Whitespace", pre_tokenizer);
	for (size_t ti = 0; ti < IOI_N_TEMPLATES && error == 0; ti++) {
		const char *s = ioi_templates[ti].text;
		while (*s && error == 0) {
			size_t len = strcspn(s, " ");
			if (len)
				error = add_chunk(&v, s, len, split_words);
			s += len;
			s += *s == ' ';
		}
	}
	for (int l = 0; l < 3 && error == 0; l++)
		for (size_t i = 0; i < ioi_lists[l].n && error == 0; i++)
			error = strs_add(&v, ioi_lists[l].w[i], strlen(ioi_lists[l].w[i]));
	if (error < 0) {
		error = mb_error_oom(err, "ioi vocabulary", 0);
		goto cleanup;
	}
	qsort(v.s, v.n, sizeof(*v.s), cmp_str);
	for (size_t i = 0; i < v.n; i++)
		if (i == 0 || strcmp(v.s[i], v.s[i - 1]) != 0)
			bytes += strlen(v.s[i]) + 1, kept++;
	res = malloc(kept * sizeof(*res) + bytes);
	if (!res) {
		error = mb_error_oom(err, "ioi vocabulary", kept * sizeof(*res) + bytes);
		goto cleanup;
	}
	p = (char *)(res + kept);
	for (size_t i = 0, k = 0; i < v.n; i++) {
		size_t len;
		if (i > 0 && strcmp(v.s[i], v.s[i - 1]) == 0)
			continue;
		len = strlen(v.s[i]) + 1;
		memcpy(p, v.s[i], len);
		res[k++] = p;
		p += len;
	}
	*out = res;
	*n = kept;
cleanup:
	for (size_t i = 0; i < v.n; i++)
		free(v.s[i]);
	free(v.s);
	return error;
}
