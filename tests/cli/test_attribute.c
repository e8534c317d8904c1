/*
 * attribute: `mechbench attribute` end to end on the zoo's induction model
 * (two items): the JSON's shape, the exact-patching agreement present and
 * consistent with the components it lists, and one-line errors for a
 * dataset of another task and an unknown --truth component.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "support/cli_run.h"

#define IND_MODEL MB_SOURCE_DIR "/baselines/models/induction"
#define IND_DATA MB_SOURCE_DIR "/datasets/induction/zoo.jsonl"

Test(attribute, writes_scores_and_their_agreement_with_exact_patching)
{
	static const char *const args[] = {"attribute", "--model", IND_MODEL, "--task", "induction",
					   "--dataset", IND_DATA, "--method", "atp", "--items", "2",
					   "--exact", "--boot", "50", NULL};
	mbt_cli_result r;
	json_error_t je;

	mbt_cli_run(&r, args);
	cr_assert_eq(r.status, 0, "%s", r.err);
	json_t *d = json_loads(r.out, 0, &je);
	cr_assert_not_null(d, "not JSON: %s", je.text);
	cr_expect_str_eq(json_string_value(json_object_get(d, "method")), "atp");
	cr_expect_eq(json_integer_value(json_object_get(d, "n_items")), 2);
	json_t *comps = json_object_get(d, "components");
	cr_assert_eq(json_array_size(comps), 16, "2 layers x 8 heads, no MLP");
	json_t *ag = json_object_get(d, "agreement");
	cr_assert_not_null(ag);
	int k = (int)json_integer_value(json_object_get(ag, "k"));
	cr_expect(k >= 1 && k <= 16);
	double p = json_real_value(json_object_get(json_object_get(ag, "precision"), "estimate"));
	/* recount the top-k overlap from the listed means */
	double sc[16], ex[16];
	for (int i = 0; i < 16; i++) {
		json_t *c = json_array_get(comps, (size_t)i);
		sc[i] = fabs(json_real_value(json_object_get(c, "score")));
		ex[i] = fabs(json_real_value(json_object_get(c, "exact")));
	}
	int hit = 0;
	for (int i = 0; i < 16; i++) {
		int ra = 0, re = 0;
		for (int j = 0; j < 16; j++) {
			ra += sc[j] > sc[i] || (sc[j] == sc[i] && j < i);
			re += ex[j] > ex[i] || (ex[j] == ex[i] && j < i);
		}
		hit += ra < k && re < k;
	}
	cr_expect_float_eq(p, (double)hit / k, 1e-12, "precision %g, recount %d / %d", p, hit, k);
	cr_expect_not_null(json_object_get(d, "qk_agreement"));
	json_decref(d);
}

Test(attribute, refuses_a_dataset_of_another_task_and_an_unknown_truth_component)
{
	static const char *const a1[] = {"attribute", "--model", IND_MODEL, "--task", "ioi",
					 "--dataset", IND_DATA, "--method", "atp", NULL};
	static const char *const a2[] = {"attribute", "--model", IND_MODEL, "--task", "induction",
					 "--dataset", IND_DATA, "--method", "atp", "--items", "1",
					 "--truth", "a1.3,a9.9", NULL};
	mbt_cli_result r;

	mbt_cli_run(&r, a1);
	cr_expect_eq(r.status, 1);
	cr_expect(strstr(r.err, "a dataset of task 'induction', not 'ioi'") != NULL, "%s", r.err);
	mbt_cli_run(&r, a2);
	cr_expect_eq(r.status, 1);
	cr_expect(strstr(r.err, "--truth: 'a9.9' is not a component") != NULL, "%s", r.err);
}
