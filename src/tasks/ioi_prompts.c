/*
 * ioi_prompts.c: the IOI prompt generator. Definitions (items, input JSON,
 * streams, split, params) are in ioi_prompts.h; this file holds the code of
 * the items, their corruptions and the split. The template table, the word
 * lists, rendering, the held-out pairs and the zoo vocabulary are in
 * src/train/ioi_templates.c (ioi_templates.h).
 */
#include <mechbench/ioi_prompts.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/rng.h>

#define IOI_TEXT_MAX 512
#define IOI_MIN_NAMES 5 /* IO, S and three ABC names */
#define IOI_STREAM_STRIDE 1000000u

const char *mb_ioi_split_name(mb_ioi_split s)
{
	return s == MB_IOI_DISCOVERY ? "discovery" : "evaluation";
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
				    mb_ioi_template_count() - 1);
	memset(flags, 0, MB_IOI_MAX_TEMPLATES);
	json_array_foreach(a, i, v) {
		int str = json_is_string(v);
		int k = str ? mb_ioi_template_find(json_string_value(v)) : -1;

		if (k < 0)
			return mb_error_set(err, MB_EINVALID,
					    "params.%s[%zu]: %s%s%s is not an IOI template (t00 "
					    "to t%02zu)", field, i, str ? "'" : "",
					    str ? json_string_value(v) : "a non-string",
					    str ? "'" : "", mb_ioi_template_count() - 1);
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
	const char *const *dflt;
	const char *key;
	size_t ndflt;
	json_t *v;
	int error;

	memset(out, 0, sizeof(*out));
	out->n_per_stratum = 20;
	out->heldout_pair_fraction = 0.2;
	out->discovery_fraction = 0.5;
	for (size_t i = 0; i < mb_ioi_template_count(); i++)
		out->use[i] = 1;
	dflt = mb_ioi_heldout_default(&ndflt);
	for (size_t i = 0; i < ndflt; i++)
		out->heldout[mb_ioi_template_find(dflt[i])] = 1;
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
	const char *const *list[3], *lname[3];
	size_t nlist[3], total = 0, at = 0;
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
	for (int l = 0; l < 3; l++) {
		list[l] = mb_ioi_words((mb_ioi_list)l, &nlist[l]);
		lname[l] = mb_ioi_list_name((mb_ioi_list)l);
		total += nlist[l];
	}
	out->mem = malloc(total * (sizeof(const char *) + sizeof(int32_t)));
	if (!out->mem)
		return mb_error_oom(err, "ioi lexicon", total * (sizeof(char *) + sizeof(int32_t)));
	words = out->mem;
	ids = (int32_t *)(words + total);
	for (int l = 0; l < 3; l++) {
		out->words[l] = words + at;
		out->ids[l] = ids + at;
		for (size_t i = 0; i < nlist[l]; i++) {
			int32_t id = single_token(tok, bpe, list[l][i], &error);
			int dup = 0;

			if (error < 0) {
				mb_ioi_lexicon_dispose(out);
				return mb_error_oom(err, "ioi lexicon: encoding", 0);
			}
			for (size_t j = 0; id >= 0 && j < at + out->n[l]; j++)
				dup |= ids[j] == id;
			if (id < 0 || dup)
				continue;
			words[at + out->n[l]] = list[l][i];
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
					     "under %s", lname[l], nlist[l],
					     lname[l], label);
		else
			error = mb_error_set(err, MB_EINVALID, "ioi: %s: only %zu of the %zu %s "
					     "encode to one token under %s; IO, S and the three "
					     "ABC names need %d", lname[l], out->n[l],
					     nlist[l], lname[l], label,
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

/* ---- the split ----------------------------------------------- */


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
	const mb_ioi_template *t = mb_ioi_template_at(ti);
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
	for (size_t ti = 0; ti < mb_ioi_template_count() && error == 0; ti++) {
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
