/*
 * facts_requests: the CounterFact-shaped edit requests (facts_requests.h)
 *  - the frozen datasets/facts/edits.jsonl and corpus.txt are exactly what
 *    the generator makes now (bytes), and SHA256SUMS lists their digests;
 *  - every request agrees with the knowledge base (zoo.h), checked here
 *    independently of the generator: the old object is the subject's,
 *    the new one another object of the relation, neighbours share the
 *    relation and the old object, attribute subjects have the new one, the
 *    paraphrases are the relation's other templates with the held-out flag
 *    of mb_zoo_facts_is_heldout, the same-subject prompts the other
 *    relations' objects;
 *  - bad params are one error naming the field.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/dataset.h>
#include <mechbench/facts_requests.h>
#include <mechbench/file.h>
#include <mechbench/sha256.h>
#include <mechbench/zoo.h>

#define FACTS_DS MB_SOURCE_DIR "/datasets/facts/"

static json_t *frozen_params(void)
{
	return json_pack("{s:s, s:s, s:i, s:i, s:i, s:i}", "recipe", "facts", "preset", "fast",
			 "model_seed", 0, "n_per_relation", 25, "n_neighbors", 8, "n_unrelated", 8);
}

static void expect_file(const char *name, const char *text, size_t len, const char *sums)
{
	char path[512], hex[MB_SHA256_HEX_LEN], line[128];
	char *have = NULL;
	size_t hlen = 0;
	mb_error err = {0};

	snprintf(path, sizeof(path), FACTS_DS "%s", name);
	cr_assert_eq(mb_file_read_text(&have, &hlen, path, &err), 0, "%s", err.msg);
	cr_expect(hlen == len && memcmp(have, text, len) == 0, "%s differs from the generator's",
		  name);
	mb_sha256_hex_buf(hex, text, len);
	snprintf(line, sizeof(line), "%s  %s\n", hex, name);
	cr_expect(strstr(sums, line), "SHA256SUMS lacks '%s'", line);
	free(have);
}

Test(facts_requests, frozen_files_are_what_the_generator_makes)
{
	json_t *params = frozen_params();
	mb_item_list items = {0};
	char *text = NULL, *corpus = NULL, *sums = NULL;
	size_t len = 0, clen = 0, slen = 0;
	mb_error err = {0};

	cr_assert_eq(mb_facts_requests_generate(&items, 20261204, params, &err), 0, "%s", err.msg);
	cr_assert_eq(items.n, 100);
	cr_assert_eq(mb_dataset_render(&text, &len, MB_FACTS_REQUESTS_TASK,
				       MB_FACTS_REQUESTS_VERSION, 20261204, params, &items, &err),
		     0, "%s", err.msg);
	cr_assert_eq(mb_facts_corpus(&corpus, &clen, params, 2000, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_file_read_text(&sums, &slen, FACTS_DS "SHA256SUMS", &err), 0, "%s",
		     err.msg);
	expect_file("edits.jsonl", text, len, sums);
	expect_file("corpus.txt", corpus, clen, sums);
	free(text);
	free(corpus);
	free(sums);
	mb_item_list_dispose(&items);
	json_decref(params);
}

static int subject_index(const mb_zoo_facts *kb, const char *name)
{
	for (int s = 0; s < mb_zoo_facts_subjects(kb); s++)
		if (strcmp(mb_zoo_facts_subject(kb, s), name) == 0)
			return s;
	return -1;
}

static int relation_index(const char *name)
{
	for (int r = 0; r < mb_zoo_facts_relations(); r++)
		if (strcmp(mb_zoo_facts_relation(r), name) == 0)
			return r;
	return -1;
}

static const char *str(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	cr_assert_not_null(v, "field %s", k);
	return v;
}

/* "prefix subject rest" == template with {} replaced by subject. */
static void expect_rendered(const char *prompt, const char *tmpl, const char *subject)
{
	char want[256];
	const char *at = strstr(tmpl, "{}");
	cr_assert_not_null(at, "%s", tmpl);
	snprintf(want, sizeof(want), "%.*s%s%s", (int)(at - tmpl), tmpl, subject, at + 2);
	cr_expect_str_eq(prompt, want);
}

Test(facts_requests, every_request_agrees_with_the_knowledge_base)
{
	json_t *params = frozen_params();
	mb_item_list items = {0};
	mb_zoo_recipe r;
	mb_zoo_facts *kb = NULL;
	mb_error err = {0};
	const int K = mb_zoo_facts_templates();

	cr_assert_eq(mb_zoo_recipe_get(&r, "facts", "fast", 0, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_zoo_facts_init(&kb, &r, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_facts_requests_generate(&items, 7, params, &err), 0, "%s", err.msg);
	for (size_t i = 0; i < items.n; i++) {
		json_t *in = items.items[i].input, *a, *x;
		size_t k;
		int s = subject_index(kb, str(in, "subject")), rel = relation_index(str(in, "relation"));
		cr_assert(s >= 0 && rel >= 0);
		cr_expect_str_eq(items.items[i].stratum, str(in, "relation"));
		cr_expect_str_eq(items.items[i].cluster, str(in, "subject"));
		const char *old = mb_zoo_facts_object(rel, mb_zoo_facts_object_of(kb, s, rel));
		cr_expect_str_eq(str(in, "target_true"), old);
		int nw = -1;
		for (int o = 0; o < mb_zoo_facts_objects(); o++)
			if (strcmp(mb_zoo_facts_object(rel, o), str(in, "target_new")) == 0)
				nw = o;
		cr_expect(nw >= 0 && strcmp(mb_zoo_facts_object(rel, nw), old) != 0,
			  "new object of the relation, not the old one");
		/* the edit prompt is a training template */
		int t_edit = -1, nheld = 0;
		for (int t = 0; t < K; t++)
			if (strcmp(mb_zoo_facts_template(kb, rel, t), str(in, "prompt")) == 0)
				t_edit = t;
		cr_assert(t_edit >= 0 && !mb_zoo_facts_is_heldout(rel, t_edit));
		a = json_object_get(in, "paraphrase_prompts");
		cr_expect_eq(json_array_size(a), (size_t)K - 1);
		json_array_foreach(a, k, x) {
			int t = -1;
			for (int q = 0; q < K; q++)
				if (strcmp(mb_zoo_facts_template(kb, rel, q), str(x, "template")) == 0)
					t = q;
			cr_assert(t >= 0 && t != t_edit);
			cr_expect_eq(json_is_true(json_object_get(x, "heldout")),
				     mb_zoo_facts_is_heldout(rel, t));
			nheld += mb_zoo_facts_is_heldout(rel, t);
			expect_rendered(str(x, "prompt"), str(x, "template"), str(in, "subject"));
		}
		cr_expect_eq(nheld, 3);
		a = json_object_get(in, "neighborhood_prompts");
		cr_expect(json_array_size(a) >= 1 && json_array_size(a) <= 8);
		json_array_foreach(a, k, x) {
			int n = subject_index(kb, str(x, "subject"));
			cr_assert(n >= 0 && n != s);
			cr_expect_str_eq(mb_zoo_facts_object(rel, mb_zoo_facts_object_of(kb, n, rel)), old);
			cr_expect_str_eq(str(x, "target"), old);
		}
		a = json_object_get(in, "attribute_prompts");
		json_array_foreach(a, k, x) {
			int n = subject_index(kb, str(x, "subject"));
			cr_assert(n >= 0 && n != s);
			cr_expect_eq(mb_zoo_facts_object_of(kb, n, rel), nw);
		}
		a = json_object_get(in, "same_subject_prompts");
		cr_expect_eq(json_array_size(a), (size_t)mb_zoo_facts_relations() - 1);
		json_array_foreach(a, k, x) {
			int q = relation_index(str(x, "relation"));
			cr_assert(q >= 0 && q != rel);
			cr_expect_str_eq(str(x, "target"),
					 mb_zoo_facts_object(q, mb_zoo_facts_object_of(kb, s, q)));
		}
		cr_expect_eq(json_array_size(json_object_get(in, "unrelated_prompts")), 8);
	}
	mb_zoo_facts_free(kb);
	mb_item_list_dispose(&items);
	json_decref(params);
}

Test(facts_requests, bad_params_name_the_field)
{
	static const char *const cases[][2] = {
		{"{\"preset\":\"fast\",\"model_seed\":0}", "params.recipe"},
		{"{\"recipe\":\"modadd\",\"preset\":\"fast\",\"model_seed\":0}", "params.recipe"},
		{"{\"recipe\":\"facts\",\"preset\":\"slow\",\"model_seed\":0}", "params.preset"},
		{"{\"recipe\":\"facts\",\"preset\":\"fast\"}", "params.model_seed"},
		{"{\"recipe\":\"facts\",\"preset\":\"fast\",\"model_seed\":0,\"n_per_relation\":65}",
		 "params.n_per_relation"},
		{"{\"recipe\":\"facts\",\"preset\":\"fast\",\"model_seed\":0,\"colour\":1}",
		 "params.colour"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *p = json_loads(cases[i][0], 0, NULL);
		mb_item_list items = {0};
		mb_error err = {0};
		cr_assert_not_null(p);
		cr_expect_eq(mb_facts_requests_generate(&items, 1, p, &err), MB_EINVALID, "%s",
			     cases[i][0]);
		cr_expect(strstr(err.msg, cases[i][1]), "'%s' not in '%s'", cases[i][1], err.msg);
		cr_expect_eq(items.n, 0);
		mb_item_list_dispose(&items);
		json_decref(p);
	}
}
