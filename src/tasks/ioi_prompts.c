/*
 * ioi_prompts.c: the IOI prompt generator. Definitions (items, input JSON,
 * streams, split, params) are in ioi_prompts.h; this file holds the
 * templates, the word lists and the code.
 */
#include <mechbench/ioi_prompts.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/rng.h>

#define IOI_TEXT_MAX 512
#define IOI_MIN_NAMES 5 /* IO, S and three ABC names */
#define IOI_STREAM_STRIDE 1000000u

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

const char *mb_ioi_split_name(mb_ioi_split s)
{
	return s == MB_IOI_DISCOVERY ? "discovery" : "evaluation";
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

/* ---- params --------------------------------------------------------------------- */

/* Reads a list of template ids into flags (by template index). */
static int parse_template_ids(uint8_t *flags, const json_t *a, const char *field, int allow_empty,
			      mb_error *err)
{
	size_t i;
	json_t *v;

	if (!json_is_array(a) || (!allow_empty && json_array_size(a) == 0))
		return mb_error_set(err, MB_EINVALID,
				    "params.%s: expected %sarray of template ids (t00 to t%02zu)",
				    field, allow_empty ? "an " : "a non-empty ",
				    IOI_N_TEMPLATES - 1);
	memset(flags, 0, MB_IOI_MAX_TEMPLATES);
	json_array_foreach(a, i, v) {
		int str = json_is_string(v);
		int k = str ? mb_ioi_template_find(json_string_value(v)) : -1;

		if (k < 0)
			return mb_error_set(err, MB_EINVALID,
					    "params.%s[%zu]: %s%s%s is not an IOI template (t00 "
					    "to t%02zu)", field, i, str ? "'" : "",
					    str ? json_string_value(v) : "a non-string",
					    str ? "'" : "", IOI_N_TEMPLATES - 1);
		if (flags[k])
			return mb_error_set(err, MB_EINVALID,
					    "params.%s[%zu]: '%s' is listed twice", field, i,
					    json_string_value(v));
		flags[k] = 1;
	}
	return 0;
}

static int parse_fraction(double *out, const json_t *params, const char *key, int open_low,
			  mb_error *err)
{
	json_t *v = json_object_get(params, key);
	double x;

	if (!v)
		return 0;
	x = json_is_number(v) ? json_number_value(v) : -1.0;
	if (!json_is_number(v) || !(open_low ? x > 0.0 : x >= 0.0) || !(x < 1.0))
		return mb_error_set(err, MB_EINVALID, "params.%s: expected a number in %s0, 1)",
				    key, open_low ? "(" : "[");
	*out = x;
	return 0;
}

int mb_ioi_params_parse(mb_ioi_params *out, const json_t *params, mb_error *err)
{
	static const char *const fields[] = {"n_per_stratum", "templates", "heldout_templates",
					     "heldout_pair_fraction", "pair_seed",
					     "discovery_fraction", NULL};
	const char *key;
	json_t *v;
	int error;

	memset(out, 0, sizeof(*out));
	out->n_per_stratum = 20;
	out->heldout_pair_fraction = 0.2;
	out->discovery_fraction = 0.5;
	for (size_t i = 0; i < IOI_N_TEMPLATES; i++)
		out->use[i] = 1;
	for (size_t i = 0; i < sizeof(ioi_default_heldout) / sizeof(ioi_default_heldout[0]); i++)
		out->heldout[mb_ioi_template_find(ioi_default_heldout[i])] = 1;
	if (!params)
		return 0;
	if (!json_is_object(params))
		return mb_error_set(err, MB_EINVALID, "params: expected an object");
	json_object_foreach((json_t *)params, key, v) {
		size_t k = 0;
		while (fields[k] && strcmp(fields[k], key) != 0)
			k++;
		if (!fields[k])
			return mb_error_set(err, MB_EINVALID, "params.%s: unknown field (ioi takes "
					    "n_per_stratum, templates, heldout_templates, "
					    "heldout_pair_fraction, pair_seed, discovery_fraction)",
					    key);
	}
	if ((v = json_object_get(params, "n_per_stratum"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > MB_IOI_MAX_N_PER_STRATUM)
			return mb_error_set(err, MB_EINVALID, "params.n_per_stratum: expected an "
					    "integer in [1, %d]", MB_IOI_MAX_N_PER_STRATUM);
		out->n_per_stratum = json_integer_value(v);
	}
	if ((v = json_object_get(params, "pair_seed"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return mb_error_set(err, MB_EINVALID,
					    "params.pair_seed: expected an integer >= 0");
		out->pair_seed = (uint64_t)json_integer_value(v);
	}
	if ((v = json_object_get(params, "templates")) &&
	    (error = parse_template_ids(out->use, v, "templates", 0, err)) < 0)
		return error;
	if ((v = json_object_get(params, "heldout_templates")) &&
	    (error = parse_template_ids(out->heldout, v, "heldout_templates", 1, err)) < 0)
		return error;
	if ((error = parse_fraction(&out->heldout_pair_fraction, params, "heldout_pair_fraction", 0,
				    err)) < 0 ||
	    (error = parse_fraction(&out->discovery_fraction, params, "discovery_fraction", 1,
				    err)) < 0)
		return error;
	return 0;
}

/* ---- the single-token filter ---------------------------------------------------- */

static int ascii_caseeq(const char *a, size_t na, const char *b)
{
	size_t nb = strlen(b);

	if (na != nb)
		return 0;
	for (size_t i = 0; i < na; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y - 'A' + 'a');
		if (x != y)
			return 0;
	}
	return 1;
}

/* The one id of " " + word, or -1 when it is not exactly one token that
 * decodes back to the word. Allocation failure is MB_ENOMEM in *error. */
static int32_t single_token(const mb_tokenizer *tok, int bpe, const char *word, int *error)
{
	char text[128], *dec = NULL;
	int32_t *ids = NULL, id = -1;
	size_t dlen = 0;
	int n = 0;
	mb_error e = {0};

	if (snprintf(text, sizeof(text), " %s", word) >= (int)sizeof(text))
		return -1;
	if (mb_tokenizer_encode(tok, text, &ids, &n, &e) < 0) {
		if (e.code == MB_ENOMEM)
			*error = MB_ENOMEM;
		return -1;
	}
	if (n == 1 && mb_tokenizer_decode(tok, ids, 1, &dec, &dlen, &e) == 0) {
		int same = bpe ? dlen == strlen(text) && memcmp(dec, text, dlen) == 0
			       : ascii_caseeq(dec, dlen, word);
		if (same)
			id = ids[0];
	}
	free(dec);
	free(ids);
	return id;
}

int mb_ioi_lexicon_init(mb_ioi_lexicon *out, const mb_tokenizer *tok, const char *tok_name,
			mb_error *err)
{
	size_t total = 0, at = 0;
	int bpe = strcmp(mb_tokenizer_kind(tok), "BPE") == 0;
	char label[256];
	const char **words;
	int32_t *ids;
	int error = 0;

	memset(out, 0, sizeof(*out));
	if (tok_name)
		snprintf(label, sizeof(label), "tokenizer %s (%s)", tok_name,
			 mb_tokenizer_kind(tok));
	else
		snprintf(label, sizeof(label), "a %s tokenizer", mb_tokenizer_kind(tok));
	for (int l = 0; l < 3; l++)
		total += ioi_lists[l].n;
	out->mem = malloc(total * (sizeof(const char *) + sizeof(int32_t)));
	if (!out->mem)
		return mb_error_oom(err, "ioi lexicon", total * (sizeof(char *) + sizeof(int32_t)));
	words = out->mem;
	ids = (int32_t *)(words + total);
	for (int l = 0; l < 3; l++) {
		out->words[l] = words + at;
		out->ids[l] = ids + at;
		for (size_t i = 0; i < ioi_lists[l].n; i++) {
			int32_t id = single_token(tok, bpe, ioi_lists[l].w[i], &error);
			int dup = 0;

			if (error < 0) {
				mb_ioi_lexicon_dispose(out);
				return mb_error_oom(err, "ioi lexicon: encoding", 0);
			}
			for (size_t j = 0; id >= 0 && j < at + out->n[l]; j++)
				dup |= ids[j] == id;
			if (id < 0 || dup)
				continue;
			words[at + out->n[l]] = ioi_lists[l].w[i];
			ids[at + out->n[l]] = id;
			out->n[l]++;
		}
		at += out->n[l];
	}
	for (int l = 0; l < 3; l++) {
		size_t need = l == MB_IOI_NAMES ? IOI_MIN_NAMES : 1;
		if (out->n[l] >= need)
			continue;
		if (out->n[l] == 0)
			error = mb_error_set(err, MB_EINVALID,
					     "ioi: %s: none of the %zu %s encodes to one token "
					     "under %s", ioi_lists[l].name, ioi_lists[l].n,
					     ioi_lists[l].name, label);
		else
			error = mb_error_set(err, MB_EINVALID, "ioi: %s: only %zu of the %zu %s "
					     "encode to one token under %s; IO, S and the three "
					     "ABC names need %d", ioi_lists[l].name, out->n[l],
					     ioi_lists[l].n, ioi_lists[l].name, label,
					     IOI_MIN_NAMES);
		mb_ioi_lexicon_dispose(out);
		return error;
	}
	return 0;
}

void mb_ioi_lexicon_dispose(mb_ioi_lexicon *lx)
{
	if (!lx)
		return;
	free(lx->mem);
	memset(lx, 0, sizeof(*lx));
}

/* ---- held-out pairs and the split ----------------------------------------------- */

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

int mb_ioi_split_of(mb_ioi_split *out, uint64_t seed, double discovery_fraction,
		    const char *stratum, const char *cluster, const json_t *input, mb_error *err)
{
	char key[MB_SHA256_HEX_LEN];
	json_t *base = json_copy((json_t *)input);
	mb_rng r;
	int error;

	if (!base)
		return mb_error_oom(err, "ioi split: item copy", 0);
	json_object_del(base, "split");
	error = mb_item_key(key, stratum, cluster, base, err);
	json_decref(base);
	if (error < 0)
		return error;
	mb_rng_init_named(&r, seed, "ioi/split", mb_item_key_index(key));
	*out = mb_rng_uniform(&r) < discovery_fraction ? MB_IOI_DISCOVERY : MB_IOI_EVALUATION;
	return 0;
}

/* ---- generation ----------------------------------------------------------------- */

/* One prompt rendered and tokenized, with its three name positions. */
typedef struct ioi_prompt {
	char text[IOI_TEXT_MAX];
	int32_t *ids; /* owned */
	int n;
	int pos[3]; /* token index of the {A}, {B}, {S} names */
} ioi_prompt;

/* Renders and encodes a prompt. Each name's position is the token count of
 * the text before it (without the space, which belongs to the name's token),
 * checked against want[slot], the name's own id; `what` labels errors. */
static int prompt_build(ioi_prompt *p, const mb_tokenizer *tok, const mb_ioi_template *t,
			const char *const names[3], const int32_t want[3], const char *place,
			const char *object, const char *what, mb_error *err)
{
	size_t off[3];
	int error;

	p->ids = NULL;
	p->n = 0;
	error = mb_ioi_render(p->text, sizeof(p->text), off, t, names[0], names[1], names[2],
			      place, object, err);
	if (error < 0)
		return error;
	if ((error = mb_tokenizer_encode(tok, p->text, &p->ids, &p->n, err)) < 0)
		return mb_error_prefix(err, "%s: \"%s\"", what, p->text);
	for (int k = 0; k < 3; k++) {
		char prefix[IOI_TEXT_MAX];
		int32_t *pids = NULL;
		int pn = 0;

		MB_ASSERT(off[k] >= 1 && p->text[off[k] - 1] == ' ');
		memcpy(prefix, p->text, off[k] - 1);
		prefix[off[k] - 1] = '\0';
		error = mb_tokenizer_encode(tok, prefix, &pids, &pn, err);
		free(pids);
		if (error < 0)
			return mb_error_prefix(err, "%s: \"%s\"", what, prefix);
		if (pn >= p->n || p->ids[pn] != want[k])
			return mb_error_set(err, MB_EINVALID,
					    "%s: \"%s\": the name '%s' is not token %d (id %d) "
					    "of the prompt's %d tokens", what, p->text, names[k],
					    pn, (int)want[k], p->n);
		p->pos[k] = pn;
	}
	return 0;
}

static json_t *ids_json(const int32_t *ids, int n)
{
	json_t *a = json_array();

	for (int k = 0; a && k < n; k++)
		if (json_array_append_new(a, json_integer(ids[k])) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

/* Draws an index in [0, n) not in avoid[0..n_avoid). */
static size_t draw_other(mb_rng *r, size_t n, const size_t *avoid, int n_avoid)
{
	for (;;) {
		size_t x = (size_t)mb_rng_range(r, n);
		int clash = 0;
		for (int k = 0; k < n_avoid; k++)
			clash |= x == avoid[k];
		if (!clash)
			return x;
	}
}

static int gen_item(mb_item_list *out, uint64_t seed, const mb_ioi_params *pr,
		    const mb_ioi_lexicon *lx, const mb_tokenizer *tok, size_t ti, mb_ioi_order o,
		    int64_t i, mb_error *err)
{
	const mb_ioi_template *t = &ioi_templates[ti];
	const char *const *nw = lx->words[MB_IOI_NAMES];
	const int32_t *nid = lx->ids[MB_IOI_NAMES];
	/* slots {A}, {B}, {S} of each role: ABBA introduces IO first */
	const int io_slot = o == MB_IOI_ABBA ? 0 : 1, s1_slot = 1 - io_slot;
	ioi_prompt clean, abc, swap;
	size_t pick[5]; /* io, s, abc io, abc s1, abc s2 */
	size_t pl, ob;
	const char *names[3], *abc_names[3], *swap_names[3], *place, *object;
	int32_t ids[3], abc_ids[3], swap_ids[3];
	char what[96], stratum[32], answer[128];
	json_t *input = NULL;
	mb_ioi_split split;
	mb_rng r;
	int error;

	clean.ids = abc.ids = swap.ids = NULL;
	mb_rng_init_named(&r, seed, "ioi/items",
			  (uint64_t)(2 * ti + (size_t)o) * IOI_STREAM_STRIDE + (uint64_t)i);
	pick[0] = (size_t)mb_rng_range(&r, lx->n[MB_IOI_NAMES]);
	pick[1] = draw_other(&r, lx->n[MB_IOI_NAMES], pick, 1);
	pl = (size_t)mb_rng_range(&r, lx->n[MB_IOI_PLACES]);
	ob = (size_t)mb_rng_range(&r, lx->n[MB_IOI_OBJECTS]);
	for (int k = 2; k < 5; k++)
		pick[k] = draw_other(&r, lx->n[MB_IOI_NAMES], pick, k);
	place = lx->words[MB_IOI_PLACES][pl];
	object = lx->words[MB_IOI_OBJECTS][ob];

	/* role r in {io, s1, s2} -> slot; clean: io, s, s; abc: three others;
	 * swap: s, io, io */
	names[io_slot] = nw[pick[0]], ids[io_slot] = nid[pick[0]];
	names[s1_slot] = nw[pick[1]], ids[s1_slot] = nid[pick[1]];
	names[2] = nw[pick[1]], ids[2] = nid[pick[1]];
	abc_names[io_slot] = nw[pick[2]], abc_ids[io_slot] = nid[pick[2]];
	abc_names[s1_slot] = nw[pick[3]], abc_ids[s1_slot] = nid[pick[3]];
	abc_names[2] = nw[pick[4]], abc_ids[2] = nid[pick[4]];
	swap_names[io_slot] = nw[pick[1]], swap_ids[io_slot] = nid[pick[1]];
	swap_names[s1_slot] = nw[pick[0]], swap_ids[s1_slot] = nid[pick[0]];
	swap_names[2] = nw[pick[0]], swap_ids[2] = nid[pick[0]];

	snprintf(stratum, sizeof(stratum), "%s/%s", t->id, mb_ioi_order_name(o));
	snprintf(what, sizeof(what), "ioi %s item %lld clean prompt", stratum, (long long)i);
	if ((error = prompt_build(&clean, tok, t, names, ids, place, object, what, err)) < 0)
		goto cleanup;
	snprintf(what, sizeof(what), "ioi %s item %lld ABC prompt", stratum, (long long)i);
	if ((error = prompt_build(&abc, tok, t, abc_names, abc_ids, place, object, what, err)) < 0)
		goto cleanup;
	snprintf(what, sizeof(what), "ioi %s item %lld swap prompt", stratum, (long long)i);
	if ((error = prompt_build(&swap, tok, t, swap_names, swap_ids, place, object, what, err)) <
	    0)
		goto cleanup;
	for (int c = 0; c < 2; c++) {
		const ioi_prompt *q = c ? &swap : &abc;
		if (q->n != clean.n || memcmp(q->pos, clean.pos, sizeof(clean.pos)) != 0) {
			error = mb_error_set(err, MB_EINVALID,
					     "ioi %s item %lld: the %s prompt has %d tokens and "
					     "names at %d, %d, %d; the clean prompt %d tokens and "
					     "names at %d, %d, %d", stratum,
					     (long long)i, c ? "swap" : "ABC", q->n, q->pos[0],
					     q->pos[1], q->pos[2], clean.n, clean.pos[0],
					     clean.pos[1], clean.pos[2]);
			goto cleanup;
		}
	}

	snprintf(answer, sizeof(answer), " %s", nw[pick[0]]);
	input = json_pack(
		"{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:i, s:i, s:{s:i, s:i, s:i, s:i},"
		" s:{s:s, s:s, s:s, s:s, s:o}, s:{s:s, s:o}, s:b, s:b}",
		"template", t->id, "order", mb_ioi_order_name(o), "io", nw[pick[0]], "s",
		nw[pick[1]], "place", place, "object", object, "text", clean.text, "answer", answer,
		"tokens", ids_json(clean.ids, clean.n), "io_id", (int)nid[pick[0]], "s_id",
		(int)nid[pick[1]], "pos", "io", clean.pos[io_slot], "s1", clean.pos[s1_slot], "s2",
		clean.pos[2], "end", clean.n - 1, "abc", "io", nw[pick[2]], "s1", nw[pick[3]], "s2",
		nw[pick[4]], "text", abc.text, "tokens", ids_json(abc.ids, abc.n), "swap", "text",
		swap.text, "tokens", ids_json(swap.ids, swap.n), "heldout_template",
		(int)pr->heldout[ti], "heldout_pair",
		mb_ioi_pair_heldout(pr->pair_seed, pr->heldout_pair_fraction, nw[pick[0]],
				    nw[pick[1]]));
	if (!input) {
		error = mb_error_oom(err, "ioi item", 0);
		goto cleanup;
	}
	error = mb_ioi_split_of(&split, seed, pr->discovery_fraction, stratum, t->id, input, err);
	if (error < 0)
		goto cleanup;
	if (json_object_set_new(input, "split", json_string(mb_ioi_split_name(split))) < 0) {
		error = mb_error_oom(err, "ioi item", 0);
		goto cleanup;
	}
	error = mb_item_list_add(out, stratum, t->id, input, err);
	input = NULL; /* taken, even on error */
cleanup:
	json_decref(input);
	free(clean.ids);
	free(abc.ids);
	free(swap.ids);
	return error;
}

int mb_ioi_generate(mb_item_list *out, uint64_t seed, const json_t *params,
		    const mb_tokenizer *tok, const char *tok_name, mb_error *err)
{
	mb_ioi_params pr;
	mb_ioi_lexicon lx;
	int error;

	if ((error = mb_ioi_params_parse(&pr, params, err)) < 0)
		return error;
	if ((error = mb_ioi_lexicon_init(&lx, tok, tok_name, err)) < 0)
		return error;
	for (size_t ti = 0; ti < IOI_N_TEMPLATES && error == 0; ti++) {
		if (!pr.use[ti])
			continue;
		for (int o = 0; o < 2 && error == 0; o++)
			for (int64_t i = 0; i < pr.n_per_stratum && error == 0; i++)
				error = gen_item(out, seed, &pr, &lx, tok, ti, (mb_ioi_order)o, i,
						 err);
	}
	mb_ioi_lexicon_dispose(&lx);
	return error;
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
