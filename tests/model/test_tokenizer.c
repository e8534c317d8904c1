/*
 * tokenizer: WordLevel tokenizer.json. The fixture model's tokenizer against
 * the ids Hugging Face tokenizers produced (tokenizer_cases.json), then each
 * supported component and each rejection.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/json.h>
#include <mechbench/tokenizer.h>

#define FIXDIR MB_SOURCE_DIR "/tests/fixtures/engine/models/gpt2_ln_gelu/"

static mb_tokenizer *parse(const char *text)
{
	mb_tokenizer *t = NULL;
	mb_error err = {0};

	cr_assert_eq(mb_tokenizer_parse(&t, text, strlen(text), "tokenizer.json", &err), 0, "%s",
		     err.msg);
	return t;
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

Test(tokenizer, the_fixture_tokenizer_reproduces_hugging_face_ids)
{
	mb_tokenizer *t = NULL;
	mb_json_doc cases;
	mb_error err = {0};

	cr_assert_eq(mb_tokenizer_load(&t, FIXDIR "tokenizer.json", &err), 0, "%s", err.msg);
	cr_expect_eq(mb_tokenizer_vocab_size(t), 61);
	cr_expect_eq(mb_tokenizer_id(t, "az"), 52);
	cr_expect_str_eq(mb_tokenizer_token(t, 60), "<unk>");
	cr_expect_null(mb_tokenizer_token(t, 61));
	cr_assert_eq(mb_json_doc_load(&cases, MB_SOURCE_DIR "/tests/fixtures/engine/gpt2_ln_gelu/tokenizer_cases.json", &err), 0, "%s",
		     err.msg);
	cr_assert(json_array_size(cases.root) >= 8);
	for (size_t i = 0; i < json_array_size(cases.root); i++) {
		json_t *c = json_array_get(cases.root, i), *ids = json_object_get(c, "ids");
		int32_t want[64];
		int n = (int)json_array_size(ids);

		for (int k = 0; k < n; k++)
			want[k] = (int32_t)json_integer_value(json_array_get(ids, (size_t)k));
		expect_ids(t, json_string_value(json_object_get(c, "text")), want, n);
	}
	mb_json_doc_dispose(&cases);
	mb_tokenizer_free(t);
}

#define VOCAB "\"vocab\": {\"[UNK]\": 0, \"hello\": 1, \"world\": 2, \",\": 3, \"!\": 4, \"it's\": 5, \"it\": 6, \"'\": 7, \"s\": 8}"

Test(tokenizer, whitespace_pre_tokenizer_splits_words_from_punctuation)
{
	mb_tokenizer *t = parse("{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {\"type\": "
				"\"WordLevel\", " VOCAB ", \"unk_token\": \"[UNK]\"}}");
	const int32_t a[] = {1, 3, 2, 4}, b[] = {6, 7, 8};

	expect_ids(t, "hello, world!", a, 4);
	expect_ids(t, "it's", b, 3);
	mb_tokenizer_free(t);
}

Test(tokenizer, whitespace_split_keeps_punctuation_attached)
{
	mb_tokenizer *t = parse("{\"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}, \"model\": "
				"{\"type\": \"WordLevel\", " VOCAB ", \"unk_token\": \"[UNK]\"}}");
	const int32_t a[] = {0, 2}, b[] = {5};

	expect_ids(t, "hello, world", a, 2);
	expect_ids(t, "it's", b, 1);
	mb_tokenizer_free(t);
}

Test(tokenizer, lowercase_normalizer_and_template_post_processor_apply)
{
	mb_tokenizer *t = parse(
		"{\"normalizer\": {\"type\": \"Lowercase\"}, \"pre_tokenizer\": {\"type\": "
		"\"Whitespace\"}, \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": "
		"[{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", "
		"\"type_id\": 0}}, {\"SpecialToken\": {\"id\": \"</s>\", \"type_id\": 0}}], \"pair\": [], "
		"\"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [9], \"tokens\": [\"<s>\"]}, "
		"\"</s>\": {\"id\": \"</s>\", \"ids\": [10], \"tokens\": [\"</s>\"]}}}, \"added_tokens\": "
		"[{\"id\": 9, \"content\": \"<s>\", \"special\": true}, {\"id\": 10, \"content\": "
		"\"</s>\", \"special\": true}], \"model\": {\"type\": \"WordLevel\", " VOCAB
		", \"unk_token\": \"[UNK]\"}}");
	const int32_t a[] = {9, 1, 2, 10}, b[] = {9, 9, 1, 10};

	expect_ids(t, "Hello WORLD", a, 4);
	expect_ids(t, "<s>HeLLo", b, 4);
	cr_expect_eq(mb_tokenizer_vocab_size(t), 11);
	mb_tokenizer_free(t);
}

Test(tokenizer, an_unknown_word_without_unk_token_is_an_error_naming_it)
{
	mb_tokenizer *t = parse("{\"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}, \"model\": "
				"{\"type\": \"WordLevel\", " VOCAB "}}");
	int32_t *ids = NULL;
	int n;
	mb_error err = {0};

	cr_expect_lt(mb_tokenizer_encode(t, "hello moon", &ids, &n, &err), 0);
	cr_expect(strstr(err.msg, "\"moon\" at byte 6") != NULL, "%s", err.msg);
	free(ids);
	mb_tokenizer_free(t);
}

Test(tokenizer, a_word_level_tokenizer_refuses_invalid_utf8_naming_the_byte)
{
	mb_tokenizer *t = parse("{\"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}, \"model\": "
				"{\"type\": \"WordLevel\", " VOCAB ", \"unk_token\": \"[UNK]\"}}");
	const int32_t ok[] = {1, 0};
	int32_t *ids = NULL;
	int n = 0;
	mb_error err = {0};

	/* a lone 0xFF, a truncated 2-byte character, a surrogate, an overlong '/' */
	cr_expect_eq(mb_tokenizer_encode(t, "hello \xff world", &ids, &n, &err), MB_EINVALID);
	cr_expect_str_eq(err.msg, "text: invalid UTF-8 at byte 6 (0xFF)");
	cr_expect_eq(mb_tokenizer_encode(t, "hello w\xc3", &ids, &n, &err), MB_EINVALID);
	cr_expect_str_eq(err.msg, "text: invalid UTF-8 at byte 7 (0xC3)");
	cr_expect_eq(mb_tokenizer_encode(t, "\xed\xa0\x80", &ids, &n, &err), MB_EINVALID);
	cr_expect_eq(mb_tokenizer_encode(t, "\xc0\xaf", &ids, &n, &err), MB_EINVALID);
	cr_expect_null(ids);
	/* valid multi-byte text is still an unknown word, not an error */
	expect_ids(t, "hello d\xc3\xa9j\xc3\xa0", ok, 2);
	mb_tokenizer_free(t);
}

typedef struct bad_case {
	char text[320];
	char expect[64];
} bad_case;

static bad_case bad_cases[] = {
	{"{\"model\": {\"type\": \"Unigram\", \"vocab\": {}}}", "model.type: \"Unigram\" is not supported"},
	{"{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}", "model.merges: required field is missing"},
	{"{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": -1}}}", "model.vocab.a: expected an id"},
	{"{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0, \"b\": 0}}}", "is also used by"},
	{"{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}, \"unk_token\": \"?\"}}",
	 "model.unk_token: \"?\" is not in model.vocab"},
	{"{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}, \"dropout\": 0.1}}", "dropout"},
	{"{\"normalizer\": {\"type\": \"NFKC\"}, \"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}}}",
	 "normalizer.type: \"NFKC\" is not supported"},
	{"{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}}}",
	 "pre_tokenizer.type: \"ByteLevel\" is not supported"},
	{"{\"post_processor\": {\"type\": \"BertProcessing\"}, \"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}}}",
	 "post_processor.type: \"BertProcessing\" is not supported"},
	{"{\"truncation\": {\"max_length\": 5}, \"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}}}",
	 "truncation: not supported"},
	{"{\"added_tokens\": [{\"id\": 3, \"content\": \"a\"}], \"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}}}",
	 "added_tokens[0]: \"a\" has id 3 here but 0"},
	{"{\"model\": {\"type\": \"WordLevel\", \"vocab\": {}}}", "model.vocab: no tokens"},
	{"{\"model\": {\"type\": \"WordLevel\"}}", "model.vocab: required field is missing"},
	{"{\"modle\": {}}", "modle"},
	{"{\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}, {\"Sequence\": {\"id\": \"A\"}}], \"special_tokens\": {\"<s>\": {\"ids\": [7]}}}, \"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}}}",
	 "id 7 is neither in model.vocab"},
};

ParameterizedTestParameters(tokenizer, every_unsupported_or_bad_field_is_named)
{
	return cr_make_param_array(bad_case, bad_cases, sizeof(bad_cases) / sizeof(bad_cases[0]));
}

ParameterizedTest(bad_case *bc, tokenizer, every_unsupported_or_bad_field_is_named)
{
	mb_tokenizer *t = NULL;
	mb_error err = {0};

	cr_assert_lt(mb_tokenizer_parse(&t, bc->text, strlen(bc->text), "tokenizer.json", &err), 0,
		     "accepted: %s", bc->text);
	cr_expect(strstr(err.msg, bc->expect) != NULL, "message \"%s\" lacks \"%s\"", err.msg,
		  bc->expect);
	cr_expect(strncmp(err.msg, "tokenizer.json:", 15) == 0, "%s", err.msg);
	cr_expect_null(t);
}
