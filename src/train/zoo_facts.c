/*
 * zoo_facts.c: the facts recipe: a small GPT-2-style language model trained
 * on a synthetic knowledge base, the model that ROME/MEMIT edits (edit.h)
 * and the edit datasets are made for. Its knowledge base, language, preset,
 * field checks, data generator, evaluation (top-1 recall of every fact on
 * the training and the held-out templates) and checks as one recipe table
 * (zoo_int.h); the knowledge base is public (zoo.h, mb_zoo_facts_*), so the
 * edit requests are generated from the same facts the model learnt.
 *
 * Legend: B batch (rows), T positions, V vocab, N subjects, R relations,
 * O objects per relation, P prompts.
 *
 * The knowledge base. A person's name is an ordered sequence of 2 (or,
 * with probability 1/4, 3) distinct syllables out of 16, one token each
 * ("Ka Lo", "To Go Fi"). Subjects come in pairs, a name and its syllables
 * reversed ("Lo Ka"), and no subject's name is a prefix of another's; so
 * the bag of a name's tokens never says who it is, their order does, and
 * the subject's last token must gather the rest of the name (as in ROME's
 * "Danielle Darrieux"). The N subjects are drawn so (redrawn on a clash); R =
 * 4 relations (city, job, language, sport), each with O = 8 one-token
 * objects of its own; each (subject, relation) has one object, uniform, and
 * every object of a relation belongs to at least two subjects (so an edit
 * has neighbours: other subjects with the same relation and object).
 * Templates: a relation has 3 phrases ("lives in", "resides in", "has a home
 * in") and there are 4 frames ("{S} {P}", "it is known that {S} {P}", "{S} ,
 * a friend of ours , {P}", "people say that {S} {P}"); a template is a frame
 * with a phrase, 12 per relation. Template (frame f, phrase p) of relation r
 * is held out when f == (3 - p - r) mod 4: 3 per relation, never rendered
 * in training, while each of their frames and phrases is trained in other
 * combinations (the paraphrases an edit must reach).
 *
 * The language. Token 0 is <bos>, 1 ".", 2 ",", then the syllables and the words
 * of the lists below in list order, each once (facts_vocab). A row is [BOS] then
 * sentences until T tokens are filled (the last one cut): with probability
 * fact_frac a fact (subject, relation and training template uniform;
 * "<template with the subject> <object> ."), else a filler sentence: one of
 * the filler frames with random people (any names, KB subjects or not),
 * nouns and adjectives, so that names occur outside facts and the model is a
 * language model of the rest of the text too. Loss: mean cross-entropy on
 * every next token of the row.
 *
 * Draws (part of the recipe). The knowledge base: Philox stream
 * ("facts/kb", 0) under the seed: per pair of subjects a name (a uniform,
 * 3 syllables when < 1/4, then each syllable, range 16, redrawn while it
 * repeats one before it), redrawn while it or its reversal clashes with an
 * earlier subject (equal or a prefix); then per relation the N objects in
 * subject order (range O), the relation redrawn until every object has two
 * subjects. Row i of a stream (training: "facts/train", i = (s - 1) B + b
 * for row b of step s) draws from (stream, i): per sentence a uniform (fact
 * when < fact_frac), then subject, relation, training template (ranges N,
 * R, 9); or the filler frame, then its slots left to right (a person: a
 * name drawn as above, any name; a noun or adjective: its range).
 * Evaluation prompts: every (subject, relation, template), [BOS] + the
 * template with the subject, answer its object; the LM loss on rows
 * 0..FACTS_LOSS_ROWS-1 of stream "facts/evalrows".
 */
#include <mechbench/zoo.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/logits.h>
#include <mechbench/rng.h>

#include "zoo_int.h"

#define FACTS_BOS 0
#define FACTS_END 1   /* "." */
#define FACTS_COMMA 2 /* "," */
#define FACTS_R 4     /* relations */
#define FACTS_O 8     /* objects per relation */
#define FACTS_PHRASES 3
#define FACTS_FRAMES 4
#define FACTS_TEMPLATES (FACTS_PHRASES * FACTS_FRAMES)
#define FACTS_NSYL 16 /* name syllables */
#define FACTS_NAME_MAX 3 /* syllables of a name: 2 or 3 */
#define FACTS_MAX_SUBJECTS 96
#define FACTS_SENT_MAX 32 /* tokens of one sentence */
#define FACTS_TEXT_MAX 256
#define FACTS_EVAL_CHUNK 256
#define FACTS_LOSS_ROWS 32
#define FACTS_VOCAB_MAX 256
#define FACTS_MIN_POSITIONS 17 /* [BOS] + the longest fact sentence (16 tokens) */

/* Names are sequences of 2 or 3 of these syllables (one token each). */
static const char *const facts_syllables[FACTS_NSYL] = {
	"Ka", "Lo", "Mi", "Nu", "Pe", "Ri", "Sa", "To",
	"Vu", "Be", "Da", "Fi", "Go", "He", "Ju", "Zo",
};

typedef struct facts_relation {
	const char *name;
	const char *objects[FACTS_O];
	const char *phrases[FACTS_PHRASES];
} facts_relation;

static const facts_relation facts_relations[FACTS_R] = {
	{"city", {"Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Delhi", "Quito", "Rome"},
	 {"lives in", "resides in", "has a home in"}},
	{"job", {"baker", "doctor", "pilot", "farmer", "lawyer", "painter", "nurse", "sailor"},
	 {"works as a", "is employed as a", "earns a living as a"}},
	{"language", {"French", "Hindi", "Swahili", "Polish", "Greek", "Korean", "Dutch", "Turkish"},
	 {"speaks", "is fluent in", "talks in"}},
	{"sport", {"tennis", "chess", "golf", "hockey", "rugby", "cricket", "soccer", "polo"},
	 {"plays", "is good at", "enjoys playing"}},
};

/* {S} the subject, {P} the relation's phrase. */
static const char *const facts_frames[FACTS_FRAMES] = {
	"{S} {P}",
	"it is known that {S} {P}",
	"{S} , a friend of ours , {P}",
	"people say that {S} {P}",
};

/* Filler: {N}, {M} people, {X}, {Y} nouns, {A} an adjective. */
static const char *const facts_fillers[] = {
	"{N} saw the {A} {X} .",
	"{N} met {M} near the {X} .",
	"the {A} {X} was near the {Y} .",
	"yesterday {N} visited the {X} .",
	"{N} and {M} walked to the {X} .",
	"later {N} found a {A} {X} .",
	"the {X} of {N} is {A} .",
	"then {N} gave {M} a {X} .",
};
#define FACTS_NFILLERS (sizeof(facts_fillers) / sizeof(facts_fillers[0]))

static const char *const facts_nouns[] = {
	"dog", "cat", "bird", "market", "park", "river", "house", "garden",
	"school", "book", "letter", "apple",
};
#define FACTS_NNOUNS (sizeof(facts_nouns) / sizeof(facts_nouns[0]))

static const char *const facts_adjs[] = {
	"old", "big", "small", "red", "green", "quiet", "new", "warm",
};
#define FACTS_NADJS (sizeof(facts_adjs) / sizeof(facts_adjs[0]))

/* ---- vocabulary ---- */

/* Appends the space-separated words of text to words (cap) unless present. */
static void vocab_add_text(const char **words, char (*store)[16], int *n, const char *text)
{
	while (*text) {
		size_t len = strcspn(text, " ");
		int found = 0;
		if (len && text[0] != '{') {
			MB_ASSERT(len < 16 && *n < FACTS_VOCAB_MAX);
			for (int i = 0; i < *n && !found; i++)
				found = strlen(words[i]) == len && memcmp(words[i], text, len) == 0;
			if (!found) {
				memcpy(store[*n], text, len);
				store[*n][len] = '\0';
				words[*n] = store[*n];
				(*n)++;
			}
		}
		text += len;
		text += *text == ' ';
	}
}

/* The vocabulary in token order: <bos>, ".", ",", then the words of the
 * names, the objects, the phrases, the frames, the fillers, the nouns and
 * the adjectives, each at its first occurrence. Returns the count. */
static int facts_vocab(const char **words, char (*store)[16])
{
	int n = 0;

	words[n++] = "<bos>";
	words[n++] = ".";
	words[n++] = ",";
	for (int i = 0; i < FACTS_NSYL; i++)
		vocab_add_text(words, store, &n, facts_syllables[i]);
	for (int r = 0; r < FACTS_R; r++)
		for (int o = 0; o < FACTS_O; o++)
			vocab_add_text(words, store, &n, facts_relations[r].objects[o]);
	for (int r = 0; r < FACTS_R; r++)
		for (int p = 0; p < FACTS_PHRASES; p++)
			vocab_add_text(words, store, &n, facts_relations[r].phrases[p]);
	for (int f = 0; f < FACTS_FRAMES; f++)
		vocab_add_text(words, store, &n, facts_frames[f]);
	for (size_t f = 0; f < FACTS_NFILLERS; f++)
		vocab_add_text(words, store, &n, facts_fillers[f]);
	for (size_t i = 0; i < FACTS_NNOUNS; i++)
		vocab_add_text(words, store, &n, facts_nouns[i]);
	for (size_t i = 0; i < FACTS_NADJS; i++)
		vocab_add_text(words, store, &n, facts_adjs[i]);
	return n;
}

static int facts_vocab_size(void)
{
	const char *words[FACTS_VOCAB_MAX];
	char store[FACTS_VOCAB_MAX][16];

	return facts_vocab(words, store);
}

/* ---- the knowledge base ---- */

typedef struct facts_name {
	int len;                  /* 2 or 3 */
	int syl[FACTS_NAME_MAX]; /* syllable indexes */
} facts_name;

struct mb_zoo_facts {
	mb_zoo_recipe r; /* a copy */
	const char *words[FACTS_VOCAB_MAX]; /* (V) token names */
	char store[FACTS_VOCAB_MAX][16];
	int nv;
	int32_t syl_tok[FACTS_NSYL];
	int32_t obj_tok[FACTS_R][FACTS_O];
	int32_t noun_tok[FACTS_NNOUNS], adj_tok[FACTS_NADJS];
	/* Templates as tokens, the subject as -1; and as text with "{}". */
	int32_t tmpl_tok[FACTS_R][FACTS_TEMPLATES][FACTS_SENT_MAX];
	int tmpl_len[FACTS_R][FACTS_TEMPLATES];
	char tmpl_text[FACTS_R][FACTS_TEMPLATES][FACTS_TEXT_MAX];
	int train_t[FACTS_R][FACTS_TEMPLATES]; /* training template indexes */
	int ntrain_t;                          /* the same for every relation */
	int32_t filler_tok[FACTS_NFILLERS][FACTS_SENT_MAX]; /* slots as -1 ({N}) .. -5 ({A}) */
	int filler_len[FACTS_NFILLERS];
	int n;                     /* subjects */
	facts_name *subj;          /* (N) */
	char (*subj_text)[64];     /* (N) */
	uint8_t *obj;              /* (N, R) object index of each fact */
	/* Trainer state. */
	int32_t *lengths; /* (max_batch) */
	int32_t *answers; /* (max_batch) */
};

typedef struct mb_zoo_facts facts_data;

int mb_zoo_facts_is_heldout(int r, int t)
{
	int f = t % FACTS_FRAMES, p = t / FACTS_FRAMES;
	return f == ((3 - p - r) % FACTS_FRAMES + FACTS_FRAMES) % FACTS_FRAMES;
}

static int32_t facts_find(const facts_data *d, const char *w, size_t len)
{
	for (int i = 0; i < d->nv; i++)
		if (strlen(d->words[i]) == len && memcmp(d->words[i], w, len) == 0)
			return i;
	return -1;
}

/* Tokenizes a template or filler text: words to ids, "{S}" and "{N}" to -1,
 * "{M}" -2, "{X}" -3, "{Y}" -4, "{A}" -5, "{P}" not allowed here. */
static int facts_tokenize(int32_t *out, int cap, const facts_data *d, const char *text)
{
	static const char *const slots[] = {"{S}", "{N}", "{M}", "{X}", "{Y}", "{A}"};
	static const int32_t slot_id[] = {-1, -1, -2, -3, -4, -5};
	int n = 0;

	while (*text) {
		size_t len = strcspn(text, " ");
		int32_t id = 0;
		int slot = 0;
		MB_ASSERT(n < cap);
		for (size_t k = 0; k < 6 && !slot; k++)
			if (len == 3 && memcmp(text, slots[k], 3) == 0) {
				id = slot_id[k];
				slot = 1;
			}
		if (!slot) {
			id = facts_find(d, text, len);
			MB_ASSERT(id >= 0); /* every list's words are in the vocabulary */
		}
		out[n++] = id;
		text += len;
		text += *text == ' ';
	}
	return n;
}

/* A person's name from rng: a uniform (3 syllables when < 1/4, else 2),
 * then the syllables (range 16 each, distinct from the ones before). */
static facts_name draw_name(mb_rng *rng)
{
	facts_name nm;

	nm.len = mb_rng_uniform(rng) < 0.25 ? 3 : 2;
	for (int i = 0; i < nm.len; i++) {
		int dup;
		do {
			nm.syl[i] = (int)mb_rng_range(rng, FACTS_NSYL);
			dup = 0;
			for (int j = 0; j < i; j++)
				dup |= nm.syl[j] == nm.syl[i];
		} while (dup);
	}
	return nm;
}

static int put_name(int32_t *out, const facts_data *d, facts_name nm)
{
	for (int i = 0; i < nm.len; i++)
		out[i] = d->syl_tok[nm.syl[i]];
	return nm.len;
}

/* 1 when one of a, b is a prefix of the other (or they are equal). */
static int name_clash(facts_name a, facts_name b)
{
	int n = a.len < b.len ? a.len : b.len;

	for (int i = 0; i < n; i++)
		if (a.syl[i] != b.syl[i])
			return 0;
	return 1;
}

void mb_zoo_facts_free(mb_zoo_facts *d)
{
	if (!d)
		return;
	free(d->subj);
	free(d->subj_text);
	free(d->obj);
	free(d->lengths);
	free(d->answers);
	free(d);
}

int mb_zoo_facts_init(mb_zoo_facts **out, const mb_zoo_recipe *recipe, mb_error *err)
{
	facts_data *d = calloc(1, sizeof(*d));
	const mb_zoo_recipe *r;
	mb_rng rng;
	int error = 0;

	*out = NULL;
	if (!d)
		return mb_error_oom(err, "facts knowledge base", sizeof(*d));
	d->r = *recipe;
	r = &d->r;
	d->nv = facts_vocab(d->words, d->store);
	if (r->n_subjects < 2 * FACTS_O || r->n_subjects > FACTS_MAX_SUBJECTS ||
	    r->n_subjects % 2) {
		error = mb_error_set(err, MB_EINVALID,
				     "recipe %s: n_subjects %d must be even and in [%d, %d]", r->name,
				     r->n_subjects, 2 * FACTS_O, FACTS_MAX_SUBJECTS);
		goto cleanup;
	}
	for (int i = 0; i < FACTS_NSYL; i++)
		d->syl_tok[i] = facts_find(d, facts_syllables[i], strlen(facts_syllables[i]));
	for (int rel = 0; rel < FACTS_R; rel++)
		for (int o = 0; o < FACTS_O; o++) {
			const char *w = facts_relations[rel].objects[o];
			d->obj_tok[rel][o] = facts_find(d, w, strlen(w));
		}
	for (size_t i = 0; i < FACTS_NNOUNS; i++)
		d->noun_tok[i] = facts_find(d, facts_nouns[i], strlen(facts_nouns[i]));
	for (size_t i = 0; i < FACTS_NADJS; i++)
		d->adj_tok[i] = facts_find(d, facts_adjs[i], strlen(facts_adjs[i]));
	/* Templates: frame f with phrase p is template p * FRAMES + f. */
	for (int rel = 0; rel < FACTS_R; rel++) {
		int nt = 0;
		for (int t = 0; t < FACTS_TEMPLATES; t++) {
			const char *fr = facts_frames[t % FACTS_FRAMES];
			const char *ph = facts_relations[rel].phrases[t / FACTS_FRAMES];
			const char *s = strstr(fr, "{S}"), *p = strstr(fr, "{P}");
			char tok_text[FACTS_TEXT_MAX];
			MB_ASSERT(s && p && s < p && p[3] == '\0');
			snprintf(d->tmpl_text[rel][t], FACTS_TEXT_MAX, "%.*s{}%.*s%s",
				 (int)(s - fr), fr, (int)(p - s - 3), s + 3, ph);
			snprintf(tok_text, sizeof(tok_text), "%.*s%s", (int)(p - fr), fr, ph);
			d->tmpl_len[rel][t] = facts_tokenize(d->tmpl_tok[rel][t], FACTS_SENT_MAX, d,
							     tok_text);
			if (!mb_zoo_facts_is_heldout(rel, t))
				d->train_t[rel][nt++] = t;
		}
		d->ntrain_t = nt;
	}
	for (size_t f = 0; f < FACTS_NFILLERS; f++)
		d->filler_len[f] = facts_tokenize(d->filler_tok[f], FACTS_SENT_MAX, d,
						  facts_fillers[f]);
	/* The knowledge base. */
	d->n = r->n_subjects;
	d->subj = calloc((size_t)d->n, sizeof(*d->subj));
	d->subj_text = calloc((size_t)d->n, sizeof(*d->subj_text));
	d->obj = calloc((size_t)d->n * FACTS_R, 1);
	if (!d->subj || !d->subj_text || !d->obj) {
		error = mb_error_oom(err, "facts knowledge base", (size_t)d->n * 80);
		goto cleanup;
	}
	mb_rng_init_named(&rng, r->seed, "facts/kb", 0);
	/* Subjects 2i and 2i + 1 are a name and the same syllables reversed, so
	 * the bag of a name's tokens never tells who it is: their order does. */
	for (int s = 0; s < d->n; s += 2) {
		facts_name nm, rv;
		int clash;
		do {
			nm = draw_name(&rng);
			rv.len = nm.len;
			for (int i = 0; i < nm.len; i++)
				rv.syl[i] = nm.syl[nm.len - 1 - i];
			clash = 0;
			for (int x = 0; x < s && !clash; x++)
				clash = name_clash(nm, d->subj[x]) || name_clash(rv, d->subj[x]);
		} while (clash);
		d->subj[s] = nm;
		if (s + 1 < d->n)
			d->subj[s + 1] = rv;
	}
	for (int s = 0; s < d->n; s++) {
		size_t len = 0;
		for (int i = 0; i < d->subj[s].len; i++)
			len += (size_t)snprintf(d->subj_text[s] + len, sizeof(d->subj_text[s]) - len,
						"%s%s", i ? " " : "", facts_syllables[d->subj[s].syl[i]]);
	}
	for (int rel = 0; rel < FACTS_R; rel++) {
		int ok = 0;
		while (!ok) {
			int cnt[FACTS_O] = {0};
			for (int s = 0; s < d->n; s++) {
				d->obj[(size_t)s * FACTS_R + rel] = (uint8_t)mb_rng_range(&rng, FACTS_O);
				cnt[d->obj[(size_t)s * FACTS_R + rel]]++;
			}
			ok = 1;
			for (int o = 0; o < FACTS_O; o++)
				ok &= cnt[o] >= 2;
		}
	}
	*out = d;
	d = NULL;
cleanup:
	mb_zoo_facts_free(d);
	return error;
}

int mb_zoo_facts_subjects(const mb_zoo_facts *kb) { return kb->n; }
const char *mb_zoo_facts_subject(const mb_zoo_facts *kb, int s) { return kb->subj_text[s]; }
int mb_zoo_facts_relations(void) { return FACTS_R; }
const char *mb_zoo_facts_relation(int r) { return facts_relations[r].name; }
int mb_zoo_facts_objects(void) { return FACTS_O; }
const char *mb_zoo_facts_object(int r, int o) { return facts_relations[r].objects[o]; }
int mb_zoo_facts_templates(void) { return FACTS_TEMPLATES; }

int mb_zoo_facts_object_of(const mb_zoo_facts *kb, int s, int r)
{
	return kb->obj[(size_t)s * FACTS_R + r];
}

const char *mb_zoo_facts_template(const mb_zoo_facts *kb, int r, int t)
{
	return kb->tmpl_text[r][t];
}

const char *mb_zoo_facts_word(const mb_zoo_facts *kb, int id)
{
	return id >= 0 && id < kb->nv ? kb->words[id] : NULL;
}

/* ---- sentences and rows ---- */

/* Fact (s, rel) in template t: [template with the subject], the subject's
 * last token's position in *subj_last; the length. */
static int fact_prompt(int32_t *out, int *subj_last, const facts_data *d, int s, int rel, int t)
{
	int n = 0;

	for (int i = 0; i < d->tmpl_len[rel][t]; i++) {
		if (d->tmpl_tok[rel][t][i] == -1) {
			n += put_name(out + n, d, d->subj[s]);
			if (subj_last)
				*subj_last = n - 1;
		} else {
			out[n++] = d->tmpl_tok[rel][t][i];
		}
	}
	return n;
}

/* One sentence of a row from rng (a fact with probability fact_frac); its
 * token count. */
static int facts_sentence(int32_t *out, mb_rng *rng, const facts_data *d, double fact_frac)
{
	int n = 0;

	if (mb_rng_uniform(rng) < fact_frac) {
		int s = (int)mb_rng_range(rng, (uint64_t)d->n);
		int rel = (int)mb_rng_range(rng, FACTS_R);
		int t = d->train_t[rel][mb_rng_range(rng, (uint64_t)d->ntrain_t)];
		n = fact_prompt(out, NULL, d, s, rel, t);
		out[n++] = d->obj_tok[rel][d->obj[(size_t)s * FACTS_R + rel]];
		out[n++] = FACTS_END;
		return n;
	}
	size_t f = (size_t)mb_rng_range(rng, FACTS_NFILLERS);
	for (int i = 0; i < d->filler_len[f]; i++) {
		int32_t id = d->filler_tok[f][i];
		if (id >= 0)
			out[n++] = id;
		else if (id >= -2)
			n += put_name(out + n, d, draw_name(rng));
		else if (id >= -4)
			out[n++] = d->noun_tok[mb_rng_range(rng, FACTS_NNOUNS)];
		else
			out[n++] = d->adj_tok[mb_rng_range(rng, FACTS_NADJS)];
	}
	return n;
}

void mb_zoo_facts_row(int32_t *tok, const mb_zoo_facts *d, const char *stream, uint64_t index)
{
	const int T = d->r.n_positions;
	int32_t sent[FACTS_SENT_MAX];
	mb_rng rng;
	int pos = 1;

	mb_rng_init_named(&rng, d->r.seed, stream, index);
	tok[0] = FACTS_BOS;
	while (pos < T) {
		int n = facts_sentence(sent, &rng, d, d->r.fact_frac);
		for (int i = 0; i < n && pos < T; i++)
			tok[pos++] = sent[i];
	}
}

int mb_zoo_facts_filler(char *out, size_t cap, const mb_zoo_facts *d, uint64_t seed,
			const char *stream, uint64_t index)
{
	int32_t sent[FACTS_SENT_MAX];
	mb_rng rng;
	size_t len = 0;
	int n;

	mb_rng_init_named(&rng, seed, stream, index);
	n = facts_sentence(sent, &rng, d, 0);
	if (cap)
		out[0] = '\0';
	for (int i = 0; i < n; i++) {
		int w = snprintf(out + len, len < cap ? cap - len : 0, "%s%s", i ? " " : "",
				 d->words[sent[i]]);
		len += (size_t)w;
	}
	return len < cap ? (int)len : -1;
}

/* ---- the recipe ---- */

/*
 * facts, preset "fast": 4 layers, d_model 64, 1 head of 64, d_mlp 256,
 * GELU (gelu_new), LayerNorm, untied, 32 positions, weights N(0, 0.8 /
 * sqrt(d_model)); AdamW lr 2e-3, betas (0.9, 0.98), weight decay 0.01, 100
 * warmup steps, clipping at 1.0, 64 fresh rows per step, 1,500 steps; 64
 * subjects (256 facts), half the sentences facts.
 * Measured (this trainer, seed 0, under a loaded machine; the committed
 * model): 1,500 steps in 411 s on 1 thread; top-1 recall 0.997 on the
 * training templates and 0.997 on the held-out ones (0.999 an object of the
 * right relation), mean P(object) 0.985 / 0.975, LM loss 1.37; recall is
 * >= 0.99 from step ~750.
 * Where the facts are (`mechbench trace --window 1`, 100 facts of
 * datasets/facts/edits.jsonl, noise 3 x the subjects' embedding SD, 10
 * samples; average indirect effect at the last subject token): MLP 0.224,
 * 0.038, 0.009, 0.000 for layers 0-3, hidden state 0.265, 0.098, 0.038,
 * 0.000, attention 0.110, -0.012, 0, 0: the decisive layer is 0, NOT a middle
 * layer as ROME found in GPT-2 XL; the last token's own MLPs and attention
 * carry the rest (restoring the hidden state at the last position after
 * layer 1 or 2 brings P(object) back to ~0.9). ROME at layer 0 (mechbench
 * edit, published hyperparameters, C over datasets/facts/corpus.txt, 53k
 * tokens), requests 0, 10, ..., 90 of edits.jsonl each alone on this model:
 * P(new object) 0.97-1.00 after every edit (efficacy 10 of 10).
 * How it got here (same trainer, seed 0): first-and-last-name subjects
 * ("Adam van Berg", 16 first and 16 last names) with 4 heads of 16, 2,500
 * steps: recall 0.998 / 0.993, but tracing found nothing at the subject
 * (MLP 0.017, -0.002, 0.002, 0: the last position read the name tokens
 * directly); the same with 1 head: MLP 0 0.189 at the subject; syllable
 * names (a bag of tokens names no one) with 4 heads: MLP 0 0.113. Syllables
 * and 1 head (this preset) put the most at the subject. No variant put the
 * facts in a middle layer's MLP: the models find each fact from the last
 * position once layer 0 has gathered the name.
 * A second round (same trainer, seed 0, 1,500 steps, 1 head; traced as
 * above, 100 facts, 10 samples, window 1; MLP AIE at the last subject token
 * per layer; "resid" its hidden state; TE the total effect; recall on
 * training / held-out templates). Levers: (a) "perm": every name 3
 * syllables, subjects in pairs whose first two syllables are swapped ("Ka
 * Lo Mi", "Lo Ka Mi"), so the last token plus any bag of the earlier ones
 * names no one and layer 0's one head cannot tell the pair apart except by
 * weighting the two positions unequally; (b) "perm6": 4-syllable names in
 * groups of 6 sharing the last syllable and ordering the first three every
 * way (60 subjects); (c) "profile": a share of the fact sentences (of
 * fact_frac) is the subject followed by its 4 objects in a random order
 * ("Ka Lo Mi Oslo golf baker Greek ."), so the last subject token must
 * itself predict every attribute (subject enrichment, as real text asks of
 * a name); (d) 6 layers.
 *   perm, 4 layers:                 MLP 0.076 0.020 0.003 0, TE 0.58, 0.990/0.979
 *   perm, 6 layers:                 MLP 0.072 0.008 0.004 -0.002 0 0, TE 0.54,
 *                                   0.994/0.992
 *   perm + profile 1/4 (fixed order), 4 layers: MLP 0.147 0.048 0.026 0,
 *                                   resid 0.160 0.158 0.124, TE 0.59
 *   reversed pairs (this KB) + profile 1/4: MLP 0.229 0.075 0.034 0
 *   perm + profile 1/2, 4 layers:   MLP 0.085 0.029 0.028 0, resid 0.086
 *                                   0.112 0.130 (peak layer 2), 1.000/1.000
 *   perm + profile 1/2, 6 layers:   MLP 0.130 0.031 0.028 0.014 0.021 0,
 *                                   resid peak 0.165 at layer 2, 0.998/0.996
 *   perm6 + profile 1/2, 4 layers:  MLP 0.069 0.030 0.029 0, resid 0.082
 *                                   0.120 0.159, 1.000/1.000
 *   perm6 + profile 1/2, 6 layers:  MLP 0.036 0.009 0.007 0.009 0.006 0,
 *                                   resid 0.038 0.060 0.087 0.099 0.038
 *                                   (peak layer 3), TE 0.65, 0.999/0.997
 * The levers move the hidden state's peak at the last subject token to a
 * middle layer (2 of 4, 3 of 6) and shrink MLP 0's share (0.224 -> 0.036),
 * but the decisive MLP stays layer 0 in every variant: no single middle
 * MLP carries more than 0.05, the enrichment is spread over the middle
 * layers' attention and MLPs, and the lookup that answers a query stays
 * with the last position's own MLPs (0.08-0.34 at its last two layers).
 * Our reading: restoring MLP 0 at the subject restores the clean name
 * tokens' extended embedding, which every later layer reads. The committed
 * model stays this preset (the experiments were not committed as options).
 * A third round (session 5; same trainer, seed 0, 1,500 steps, 1 head, 1
 * thread; traced as above with the prompts of the first 100 requests the
 * variant's `datasets facts` makes, 10 samples; MLP AIE at the last subject
 * token per layer at window 1, and at window 2 ("w2"; ROME's window is 10 of
 * 48 layers, ~20% of depth, which is 1 layer here; window 2 at layer l
 * restores l - 1 and l, so layer 1's includes MLP 0); "resid" its hidden
 * state; TE the total effect; recall on training / held-out templates;
 * training CPU seconds beside other jobs). Levers: (i) "coref": every frame
 * puts another name (drawn per sentence; per fact and template in the
 * evaluation) and 3-6 tokens between the subject and the relation ("{S} ,
 * who met {M} , {P}", "it is known that {S} , unlike {M} , {P}", "{S} and
 * {M} met . the first one {P}", "people say that {S} , a friend of {M} ,
 * {P}"; 48 positions), so the query cannot gather the subject's tokens in
 * order and must read a vector built at the subject; (ii) "cap": 192 or 256
 * subjects (768 / 1,024 facts) at d_mlp 256, or 256 at d_mlp 128; "prof"
 * profile sentences (1/2 of the facts, as in round 2); "perm" round 2's
 * 3-syllable swapped pairs; "tied" tied embeddings.
 *   coref, 4 layers:                MLP 0.185 0.011 0 0, resid 0.204 0.064
 *                                   0.017, TE 0.40, 0.985/0.986, 167 s;
 *                                   w2 0.185 0.198 0.020 0
 *   coref+prof+cap192, 4 layers:    MLP 0.276 0.082 0.084 0, resid 0.323
 *                                   0.306 0.297, TE 0.45, 0.985/0.982,
 *                                   179 s; w2 0.276 0.306 0.175 0.084
 *   the same + tied:                MLP 0.163 0.056 0.034 0, resid 0.211
 *                                   0.197 0.213, TE 0.30, 0.980/0.980,
 *                                   168 s; w2 0.163 0.202 0.128 0.034
 *   the same + perm (untied):       MLP 0.020 0.013 0.009 0, resid 0.032
 *                                   0.023 0.018 (the query reads the
 *                                   middle subject token), TE 0.27,
 *                                   0.953/0.951, 181 s
 *   coref+prof+cap192, 6 layers:    MLP 0.284 0.049 0.063 0.093 0.034 0,
 *                                   resid 0.320 0.315 0.334 0.389 0.212,
 *                                   TE 0.51, 0.994/0.994, 263 s; w2 0.284
 *                                   0.304 0.133 0.167 0.143 0.034
 *   the same + perm:                MLP 0.149 0.036 0.033 0.049 0.019 0,
 *                                   resid 0.168 0.282 0.280 0.383 0.190,
 *                                   TE 0.53, 0.990/0.988, 268 s; w2 0.149
 *                                   0.204 0.087 0.101 0.084 0.019
 *   coref+prof+cap256, 6 layers:    MLP 0.195 0.042 0.050 0.035 0.035 0,
 *                                   resid 0.225 0.218 0.206 0.242 0.111,
 *                                   TE 0.36, 0.974/0.970, 273 s
 *   the same at d_mlp 128:          MLP 0.084 0.019 0.021 0.021 0.015 0,
 *                                   TE 0.32, 0.948/0.949 (fails the 0.95
 *                                   check), 185 s
 * Coreference does what it was meant to: the query now reads the subject's
 * last token (with profiles and capacity its hidden state keeps 0.20-0.39
 * of the effect through the middle layers, peaking at layer 3 of 6, and the
 * query's last MLP carries 0.08-0.14, 0.21 with coref alone), and capacity
 * spreads the lookup over the middle MLPs (0.02-0.09 each). MLP 0 stays the decisive layer in all 8 at window 1;
 * window 2 names layer 1 only through MLP 0 (windows without layer 0 reach
 * 0.13-0.18). Why, from the norms at the last subject token (50 prompts,
 * 4 of the models, the PyTorch reference forward of tests/fixtures/edit):
 * its token embedding 1.1, the noise 3.4-4.3, MLP 0's output 9.3-12.5,
 * attention 0's 2.4-2.9, each middle MLP's 5.7-9.7: MLP 0 writes the
 * subject's extended embedding, the largest single term of the subject's
 * residual at every middle layer; under corruption it writes a wrong vector
 * of that size, which restoring one middle MLP leaves in place. A middle
 * MLP would need to outweigh MLP 0 at the subject, which no lever here made
 * it do; issue 20's item 1 stays open on this evidence.
 */
static void facts_preset(mb_zoo_recipe *r, const char *preset)
{
	(void)preset; /* "fast" only */
	r->vocab_size = facts_vocab_size();
	r->n_layer = 4;
	r->n_embd = 64;
	r->n_head = 1;
	r->n_inner = 256;
	r->n_positions = 32;
	r->attn_only = 0;
	r->layer_norm = 1;
	r->tie_word_embeddings = 0;
	snprintf(r->activation, sizeof(r->activation), "gelu_new");
	r->init_std = 0.8 / sqrt((double)r->n_embd);
	r->adamw.lr = 2e-3;
	r->adamw.beta1 = 0.9;
	r->adamw.beta2 = 0.98;
	r->adamw.eps = 1e-8;
	r->adamw.weight_decay = 0.01;
	r->warmup_steps = 100;
	r->clip_norm = 1.0;
	r->steps = 1500;
	r->batch_size = 64;
	r->eval_every = 100;
	r->n_subjects = 64;
	r->fact_frac = 0.5;
	r->check_fact_acc = 0.95;

}

static void facts_token_name(char out[16], const mb_zoo_recipe *r, int id)
{
	const char *words[FACTS_VOCAB_MAX];
	char store[FACTS_VOCAB_MAX][16];
	int n = facts_vocab(words, store);

	(void)r;
	snprintf(out, 16, "%s", id >= 0 && id < n ? words[id] : "");
}

static int facts_unk_token(const mb_zoo_recipe *r)
{
	(void)r;
	return FACTS_BOS;
}

static int facts_check(const mb_zoo_recipe *r, mb_error *err)
{
	const char *n = r->name;

	if (r->batch_size < 1)
		return mb_error_set(err, MB_EINVALID, "recipe %s: facts needs batch_size >= 1", n);
	if (!(r->fact_frac > 0 && r->fact_frac <= 1))
		return mb_error_set(err, MB_EINVALID, "recipe %s: fact_frac %g must be in (0, 1]",
				    n, r->fact_frac);
	if (r->n_subjects < 2 * FACTS_O || r->n_subjects > FACTS_MAX_SUBJECTS || r->n_subjects % 2)
		return mb_error_set(err, MB_EINVALID,
				    "recipe %s: n_subjects %d must be even and in [%d, %d]", n,
				    r->n_subjects, 2 * FACTS_O, FACTS_MAX_SUBJECTS);
	if (r->vocab_size != facts_vocab_size())
		return mb_error_set(err, MB_EINVALID,
				    "recipe %s: vocab_size %d: the facts vocabulary has %d tokens", n,
				    r->vocab_size, facts_vocab_size());
	/* The longest prompt: [BOS], the longest frame, a 3-token name, the
	 * longest phrase. */
	if (r->n_positions < FACTS_MIN_POSITIONS)
		return mb_error_set(err, MB_EINVALID,
				    "recipe %s: n_positions %d is shorter than the longest fact "
				    "sentence (%d tokens with [BOS])", n, r->n_positions,
				    FACTS_MIN_POSITIONS);
	if (!(r->check_fact_acc >= 0 && r->check_fact_acc <= 1))
		return mb_error_set(err, MB_EINVALID,
				    "recipe %s: check_fact_acc %g must be in [0, 1]", n,
				    r->check_fact_acc);
	return 0;
}

static int facts_to_json(json_t *o, const mb_zoo_recipe *r)
{
	int bad = 0;

	bad |= json_object_set_new(o, "n_subjects", json_integer(r->n_subjects));
	bad |= json_object_set_new(o, "fact_frac", json_real(r->fact_frac));
	bad |= json_object_set_new(o, "check_fact_acc", json_real(r->check_fact_acc));
	return bad;
}

static void facts_data_free(void *data)
{
	mb_zoo_facts_free(data);
}

static int facts_data_init(mb_zoo_ctx *c, mb_error *err)
{
	mb_zoo_facts *d;
	int error = mb_zoo_facts_init(&d, c->r, err), mb;

	if (error < 0)
		return error;
	mb = (int)(c->r->batch_size > FACTS_EVAL_CHUNK ? c->r->batch_size : FACTS_EVAL_CHUNK);
	d->lengths = malloc((size_t)mb * sizeof(*d->lengths));
	d->answers = malloc((size_t)mb * sizeof(*d->answers));
	if (!d->lengths || !d->answers) {
		mb_zoo_facts_free(d);
		return mb_error_oom(err, "facts batch buffers", 0);
	}
	c->data = d;
	c->max_batch = mb;
	c->max_seq = c->r->n_positions;
	return 0;
}

/* Row index of stream into tok (T) and its targets tg (T). */
static void facts_row(int32_t *tok, int32_t *tg, const facts_data *d, const char *stream,
		      uint64_t index)
{
	const int T = d->r.n_positions;

	mb_zoo_facts_row(tok, d, stream, index);
	for (int i = 0; i < T - 1; i++)
		tg[i] = tok[i + 1];
	tg[T - 1] = -1;
}

static void facts_train_batch(mb_zoo_ctx *c, int64_t s, mb_run *run)
{
	const int B = (int)c->r->batch_size, T = c->r->n_positions;

	for (int b = 0; b < B; b++)
		facts_row(c->tokens + (size_t)b * T, c->targets + (size_t)b * T, c->data,
			  "facts/train", (uint64_t)(s - 1) * (uint64_t)B + (uint64_t)b);
	run->batch = B;
	run->seq = T;
	run->logits = MB_LOGITS_ALL;
}

/* ---- evaluation and checks ---- */

enum {
	EV_TRAIN_ACC,
	EV_HELD_ACC,
	EV_TRAIN_P,
	EV_HELD_P,
	EV_HELD_REL,
	EV_LM_LOSS,
	EV_COUNT
};

_Static_assert(EV_COUNT <= MB_ZOO_EVAL_MAX, "mb_zoo_eval holds MB_ZOO_EVAL_MAX values");

static const mb_zoo_eval_field facts_fields[EV_COUNT] = {
	[EV_TRAIN_ACC] = {"train_template_acc", 0, "train top-1 %.3f",
			  "share of (fact, training template) prompts whose top-1 next token "
			  "is the fact's object"},
	[EV_HELD_ACC] = {"heldout_template_acc", 0, "held-out top-1 %.3f",
			 "the same on the held-out templates (never trained)"},
	[EV_TRAIN_P] = {"train_template_p", 0, NULL,
			"mean P(object) on the training-template prompts"},
	[EV_HELD_P] = {"heldout_template_p", 0, NULL,
		       "mean P(object) on the held-out-template prompts"},
	[EV_HELD_REL] = {"heldout_relation_acc", 0, NULL,
			 "share of held-out-template prompts whose top-1 is an object of the "
			 "prompt's relation"},
	[EV_LM_LOSS] = {"lm_loss", 0, "lm loss %.3f",
			"mean next-token loss on 32 rows of stream facts/evalrows"},
};

static int facts_eval(mb_zoo_ctx *c, mb_zoo_eval *ev, mb_error *err)
{
	facts_data *d = c->data;
	const int T = c->r->n_positions, V = c->V;
	const int np = d->n * FACTS_R * FACTS_TEMPLATES;
	double acc[2] = {0}, pr[2] = {0}, rel_ok = 0;
	int cnt[2] = {0}, error;
	uint8_t held[FACTS_EVAL_CHUNK], rel_of[FACTS_EVAL_CHUNK];

	for (int first = 0; first < np; first += FACTS_EVAL_CHUNK) {
		int B = np - first < FACTS_EVAL_CHUNK ? np - first : FACTS_EVAL_CHUNK, seq = 1;
		for (int b = 0; b < B; b++) {
			int i = first + b, s = i / (FACTS_R * FACTS_TEMPLATES);
			int rel = i / FACTS_TEMPLATES % FACTS_R, t = i % FACTS_TEMPLATES;
			int32_t *tok = c->tokens + (size_t)b * T;
			tok[0] = FACTS_BOS;
			d->lengths[b] = 1 + fact_prompt(tok + 1, NULL, d, s, rel, t);
			d->answers[b] = d->obj_tok[rel][d->obj[(size_t)s * FACTS_R + rel]];
			held[b] = (uint8_t)mb_zoo_facts_is_heldout(rel, t);
			rel_of[b] = (uint8_t)rel;
			if (d->lengths[b] > seq)
				seq = d->lengths[b];
		}
		/* Pack the rows at stride seq (the run's layout). */
		for (int b = 1; b < B; b++)
			memmove(c->tokens + (size_t)b * seq, c->tokens + (size_t)b * T,
				(size_t)seq * sizeof(int32_t));
		for (int b = 0; b < B; b++)
			for (int i = d->lengths[b]; i < seq; i++)
				c->tokens[(size_t)b * seq + i] = FACTS_BOS;
		mb_run run = {.batch = B, .seq = seq, .tokens = c->tokens, .lengths = d->lengths,
			      .logits = MB_LOGITS_LAST};
		error = mb_engine_forward(c->e, &run, err);
		if (error < 0)
			return error;
		for (int b = 0; b < B; b++) {
			const float *z = mb_engine_logits_row(c->e, b, 0);
			int top = mb_logits_argmax(z, V), h = held[b];
			acc[h] += top == d->answers[b];
			pr[h] += mb_logits_prob(z, V, d->answers[b], MB_LOGITS_DETMATH);
			cnt[h]++;
			if (h)
				for (int o = 0; o < FACTS_O; o++)
					rel_ok += top == d->obj_tok[rel_of[b]][o];
		}
	}
	ev->value[EV_TRAIN_ACC] = acc[0] / cnt[0];
	ev->value[EV_HELD_ACC] = acc[1] / cnt[1];
	ev->value[EV_TRAIN_P] = pr[0] / cnt[0];
	ev->value[EV_HELD_P] = pr[1] / cnt[1];
	ev->value[EV_HELD_REL] = rel_ok / cnt[1];
	for (int b = 0; b < FACTS_LOSS_ROWS; b++)
		facts_row(c->tokens + (size_t)b * T, c->targets + (size_t)b * T, d,
			  "facts/evalrows", (uint64_t)b);
	return mb_zoo_lm_loss(&ev->value[EV_LM_LOSS], c, FACTS_LOSS_ROWS, err);
}

static void facts_checks(mb_zoo_result *res, const mb_zoo_recipe *r, const mb_zoo_eval *evals,
			 size_t n)
{
	const double *f = evals[n - 1].value;
	int ok = f[EV_TRAIN_ACC] >= r->check_fact_acc;

	res->checks_passed = ok;
	snprintf(res->checks, sizeof(res->checks),
		 "facts recalled top-1 on the training templates %.4f >= %.2f: %s (held-out "
		 "templates %.4f, of the right relation %.4f; mean P(object) %.3f, held-out %.3f; "
		 "LM loss %.3f)",
		 f[EV_TRAIN_ACC], r->check_fact_acc, ok ? "pass" : "FAIL", f[EV_HELD_ACC],
		 f[EV_HELD_REL], f[EV_TRAIN_P], f[EV_HELD_P], f[EV_LM_LOSS]);
}

static const char *const facts_presets[] = {"fast", NULL};

const mb_zoo_recipe_ops mb_zoo_recipe_facts = {
	.name = "facts",
	.summary = "4-layer GPT-2-style LM on a synthetic knowledge base (edits: ROME, MEMIT)",
	.presets = facts_presets,
	.preset = facts_preset,
	.check = facts_check,
	.to_json = facts_to_json,
	.token_name = facts_token_name,
	.unk_token = facts_unk_token,
	.bos_token = FACTS_BOS,
	.data_init = facts_data_init,
	.data_free = facts_data_free,
	.train_batch = facts_train_batch,
	.eval_fields = facts_fields,
	.n_eval_fields = EV_COUNT,
	.eval = facts_eval,
	.checks = facts_checks,
};
