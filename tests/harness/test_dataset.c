/* Datasets: canonical JSONL with content keys, tamper detection with line
 * numbers, and datasets/MANIFEST build and verify. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/dataset.h>
#include <mechbench/file.h>

#include "support/harness_support.h"

static char *generate(size_t *len, uint64_t seed)
{
	char *text = NULL;
	mb_error err;
	json_t *p = json_pack("{s:i}", "n_per_stratum", 10);
	cr_assert_eq(mb_dataset_generate(&text, len, mb_task_find("synthetic"), seed, p, &err), 0,
		     "%s", err.msg);
	json_decref(p);
	return text;
}

Test(dataset, render_then_parse_gives_the_same_items_and_bytes)
{
	size_t len, len2;
	char *text = generate(&len, 4), *again = NULL;
	mb_dataset d;
	mb_error err;

	cr_assert_eq(mb_dataset_parse(&d, text, len, "d.jsonl", &err), 0, "%s", err.msg);
	cr_expect_eq(d.items.n, 20);
	cr_expect_str_eq(d.task, "synthetic");
	cr_expect_eq(d.seed, 4);
	cr_assert_eq(mb_dataset_render(&again, &len2, d.task, d.task_version, d.seed, d.params,
				       &d.items, &err), 0);
	cr_expect_eq(len2, len);
	cr_expect_eq(memcmp(again, text, len), 0, "render(parse(x)) == x");
	for (size_t i = 0; i < d.items.n; i++)
		cr_expect_eq(mb_dataset_find(&d, d.items.items[i].key), (long)i);
	cr_expect_eq(mb_dataset_find(&d, "00"), -1);
	mb_dataset_dispose(&d);
	free(text);
	free(again);
}

Test(dataset, an_edited_item_is_caught_by_its_key_with_the_line)
{
	size_t len;
	char *text = generate(&len, 4);
	mb_dataset d;
	mb_error err;
	/* Line 3 is the second item: change one feature value. */
	char *line3 = strchr(strchr(text, '\n') + 1, '\n') + 1;
	char *x = strstr(line3, "\"x\":[") + 5;
	*x = *x == '1' ? '2' : '1';
	cr_expect_eq(mb_dataset_parse(&d, text, len, "d.jsonl", &err), MB_EMISMATCH);
	cr_expect(strstr(err.msg, "d.jsonl:3: item key") != NULL, "%s", err.msg);
	free(text);
}

Test(dataset, duplicates_bad_json_and_wrong_counts_are_rejected)
{
	size_t len;
	char *text = generate(&len, 4), *dup;
	mb_dataset d;
	mb_error err;
	char *line2 = strchr(text, '\n') + 1;
	size_t l2 = (size_t)(strchr(line2, '\n') + 1 - line2);

	/* A copy of line 2 appended, and the header's count bumped to match. */
	dup = malloc(len + l2 + 1);
	memcpy(dup, text, len);
	memcpy(dup + len, line2, l2);
	char *n = strstr(dup, "\"n_items\":20");
	n[11] = '1';
	cr_expect_eq(mb_dataset_parse(&d, dup, len + l2, "d.jsonl", &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "duplicate item key") != NULL, "%s", err.msg);
	cr_expect(strstr(err.msg, "d.jsonl:22") != NULL, "%s", err.msg);
	/* Wrong count. */
	cr_expect_eq(mb_dataset_parse(&d, text, len - l2 + 0, "d.jsonl", &err) < 0, 1);
	/* Bad JSON: line and column. */
	line2[5] = '}';
	cr_expect_eq(mb_dataset_parse(&d, text, len, "d.jsonl", &err), MB_EINVALID);
	cr_expect(strncmp(err.msg, "d.jsonl:2:", 10) == 0, "%s", err.msg);
	cr_expect_eq(mb_dataset_parse(&d, "", 0, "e.jsonl", &err), MB_EINVALID);
	free(text);
	free(dup);
}

Test(dataset, manifest_build_fills_sha256s_and_verify_checks_them)
{
	char dir[256], path[512];
	mb_manifest m;
	mb_error err;
	int changed = 0;

	mbt_tmpdir(dir, sizeof(dir));
	mbt_write(dir, "datasets/MANIFEST",
		  "# two datasets\n"
		  "-  synthetic/a.jsonl  synthetic@1  1  {\"n_per_stratum\": 5}\n"
		  "\n"
		  "-  b.jsonl  synthetic@1  2  {}\n");
	snprintf(path, sizeof(path), "%s/datasets/MANIFEST", dir);
	cr_assert_eq(mb_manifest_load(&m, path, &err), 0, "%s", err.msg);
	cr_assert_eq(m.n, 2);
	cr_expect_eq(m.entries[1].line, 4);
	cr_expect_eq(mb_manifest_verify_entry(&m, 0, &err), MB_EMISMATCH, "not built yet");
	for (size_t i = 0; i < m.n; i++) {
		cr_assert_eq(mb_manifest_build_entry(&m, i, &changed, &err), 0, "%s", err.msg);
		cr_expect_eq(changed, 1);
	}
	cr_assert_eq(mb_manifest_save(&m, &err), 0, "%s", err.msg);
	mb_manifest_dispose(&m);

	cr_assert_eq(mb_manifest_load(&m, path, &err), 0, "%s", err.msg);
	cr_expect_eq(strlen(m.entries[0].sha256), 64);
	for (size_t i = 0; i < m.n; i++) {
		cr_expect_eq(mb_manifest_verify_entry(&m, i, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_manifest_build_entry(&m, i, &changed, &err), 0, "%s", err.msg);
		cr_expect_eq(changed, 0, "a rebuild changes nothing");
	}
	/* Tampering with a file is caught, naming it. */
	char *b = mbt_read(dir, "datasets/b.jsonl");
	b[strlen(b) - 3] = b[strlen(b) - 3] == 'y' ? 'z' : 'y';
	mbt_write(dir, "datasets/b.jsonl", b);
	free(b);
	cr_expect_eq(mb_manifest_verify_entry(&m, 1, &err), MB_EMISMATCH);
	cr_expect(strstr(err.msg, "b.jsonl: sha256") != NULL, "%s", err.msg);
	mb_manifest_dispose(&m);
	mbt_rmtree(dir);
}

Test(dataset, manifest_errors_name_the_line)
{
	char dir[256], path[512];
	mb_manifest m;
	mb_error err;
	static const struct {
		const char *text, *expect;
	} cases[] = {
		{"-  a.jsonl  synthetic@1  1\n", "MANIFEST:1: expected"},
		{"# x\nabc  a.jsonl  synthetic@1  1  {}\n", "MANIFEST:2: 'abc' is not a sha256"},
		{"-  ../a.jsonl  synthetic@1  1  {}\n", "MANIFEST:1: path '../a.jsonl'"},
		{"-  a.jsonl  synthetic  1  {}\n", "MANIFEST:1: 'synthetic' is not <task>@<version>"},
		{"-  a.jsonl  synthetic@1  -3  {}\n", "MANIFEST:1: seed"},
		{"-  a.jsonl  synthetic@1  1  [1]\n", "MANIFEST:1:29: params must be a JSON object"},
		{"-  a.jsonl  synthetic@1  1  {}\n-  a.jsonl  synthetic@1  2  {}\n",
		 "MANIFEST:2: a.jsonl is listed twice"},
	};

	mbt_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/MANIFEST", dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mbt_write(dir, "MANIFEST", cases[i].text);
		cr_expect_eq(mb_manifest_load(&m, path, &err), MB_EINVALID, "case %zu", i);
		cr_expect(strstr(err.msg, cases[i].expect) != NULL, "case %zu: %s", i, err.msg);
	}
	/* An unknown task is caught when building. */
	mbt_write(dir, "MANIFEST", "-  a.jsonl  nosuch@1  1  {}\n");
	cr_assert_eq(mb_manifest_load(&m, path, &err), 0, "%s", err.msg);
	int changed;
	cr_expect_eq(mb_manifest_build_entry(&m, 0, &changed, &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "unknown task 'nosuch'") != NULL, "%s", err.msg);
	mb_manifest_dispose(&m);
	mbt_write(dir, "MANIFEST", "-  a.jsonl  synthetic@9  1  {}\n");
	cr_assert_eq(mb_manifest_load(&m, path, &err), 0, "%s", err.msg);
	cr_expect_eq(mb_manifest_build_entry(&m, 0, &changed, &err), MB_EMISMATCH);
	cr_expect(strstr(err.msg, "synthetic@9 but this build has synthetic@1") != NULL, "%s",
		  err.msg);
	mb_manifest_dispose(&m);
	mbt_rmtree(dir);
}

/* "ood" in a recipe: the generator never sees it (synthetic rejects unknown
 * params), the header records it, and the marks are read back. */
Test(dataset, an_ood_recipe_marks_strata_and_is_recorded_in_the_header)
{
	char *text = NULL;
	size_t len;
	mb_dataset d;
	mb_error err;
	json_t *p = json_pack("{s:i, s:[s]}", "n_per_stratum", 4, "ood", "hard");

	cr_assert_eq(mb_dataset_generate(&text, &len, mb_task_find("synthetic"), 7, p, &err), 0,
		     "%s", err.msg);
	cr_expect(strstr(text, "\"ood\":[\"hard\"]") != NULL, "%.200s", text);
	cr_assert_eq(mb_dataset_parse(&d, text, len, "toy.jsonl", &err), 0, "%s", err.msg);
	cr_expect(mb_dataset_is_ood(&d, "hard"));
	cr_expect(!mb_dataset_is_ood(&d, "easy"));
	cr_expect(!mb_dataset_is_ood(&d, "medium"));
	mb_dataset_dispose(&d);
	free(text);
	json_decref(p);
}

struct ood_case {
	char ood[64];    /* the "ood" value, JSON */
	char expect[128];
};

static struct ood_case ood_cases[] = {
	{"[\"medium\"]", "recipe: params.ood[0]: no item is in stratum 'medium'"},
	{"[\"hard\", \"hard\"]", "recipe: params.ood[1]: 'hard' is listed twice"},
	{"[\"\"]", "recipe: params.ood[0]: expected a stratum name"},
	{"[3]", "recipe: params.ood[0]: expected a stratum name"},
	{"[]", "recipe: params.ood: expected a non-empty list of stratum names"},
	{"\"hard\"", "recipe: params.ood: expected a non-empty list of stratum names"},
};

ParameterizedTestParameters(dataset, a_bad_ood_list_is_one_line_naming_the_field)
{
	return cr_make_param_array(struct ood_case, ood_cases,
				   sizeof(ood_cases) / sizeof(ood_cases[0]));
}

ParameterizedTest(struct ood_case *c, dataset, a_bad_ood_list_is_one_line_naming_the_field)
{
	char json[256], *text = NULL;
	size_t len;
	mb_error err;
	json_t *p;

	snprintf(json, sizeof(json), "{\"n_per_stratum\": 4, \"ood\": %s}", c->ood);
	p = json_loads(json, 0, NULL);
	cr_assert_not_null(p, "%s", json);
	mb_error_clear(&err);
	cr_expect_eq(mb_dataset_generate(&text, &len, mb_task_find("synthetic"), 7, p, &err),
		     MB_EINVALID, "%s", c->ood);
	cr_expect(strstr(err.msg, c->expect) != NULL, "expected '%s' in: %s", c->expect, err.msg);
	cr_expect(strchr(err.msg, '\n') == NULL);
	free(text);
	json_decref(p);
}

/* A hand-edited header is checked the same way when the file is read. */
Test(dataset, a_parsed_header_with_a_bad_ood_names_the_file)
{
	char *text = NULL, *at, *edited;
	size_t len;
	mb_dataset d;
	mb_error err;
	json_t *p = json_pack("{s:i, s:[s]}", "n_per_stratum", 4, "ood", "hard");

	cr_assert_eq(mb_dataset_generate(&text, &len, mb_task_find("synthetic"), 7, p, &err), 0);
	at = strstr(text, "\"ood\":[\"hard\"]");
	cr_assert_not_null(at);
	edited = malloc(len + 8);
	cr_assert_not_null(edited);
	snprintf(edited, len + 8, "%.*s\"ood\":[\"harder\"]%s", (int)(at - text), text,
		 at + strlen("\"ood\":[\"hard\"]"));
	cr_expect_eq(mb_dataset_parse(&d, edited, strlen(edited), "toy.jsonl", &err),
		     MB_EINVALID);
	cr_expect(strstr(err.msg, "toy.jsonl: params.ood[0]: no item is in stratum 'harder'"),
		  "%s", err.msg);
	free(edited);
	free(text);
	json_decref(p);
}
