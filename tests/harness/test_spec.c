/* Suite specs: a valid spec parses into what it says; every malformed one
 * gets one line naming file:line:col and the field (table-driven, jq-style);
 * deviations between a registered and a working spec are named by field. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include <mechbench/spec.h>

#define SHA "3f2a000000000000000000000000000000000000000000000000000000000000"

static const char good[] =
	"{\n"
	"  \"format\": 1,\n"
	"  \"suite\": \"demo\",\n"
	"  \"alpha\": 0.05,\n"
	"  \"power\": 0.8,\n"
	"  \"bootstrap\": 2000,\n"
	"  \"seed\": 7,\n"
	"  \"tasks\": [\n"
	"    {\n"
	"      \"name\": \"toy\",\n"
	"      \"task\": \"synthetic\",\n"
	"      \"model\": \"models/toy\",\n"
	"      \"baseline\": \"baselines/demo.json\",\n"
	"      \"dataset\": {\"path\": \"datasets/toy.jsonl\", \"sha256\": \"" SHA "\"},\n"
	"      \"params\": {\"delay_ms\": 0},\n"
	"      \"strata\": {\"easy\": 0.25, \"hard\": 0.75},\n"
	"      \"metrics\": [\n"
	"        {\"metric\": \"synthetic.score@1\", \"kind\": \"continuous\",\n"
	"         \"direction\": \"higher\", \"margin\": 0.5, \"threshold\": 1.5},\n"
	"        {\"metric\": \"synthetic.loss@1\", \"kind\": \"ratio\", \"direction\": \"lower\",\n"
	"         \"margin\": 0.1, \"strata\": {\"hard\": {\"threshold\": 0.5}}, \"combine\": \"all\"}\n"
	"      ],\n"
	"      \"phases\": [\n"
	"        {\"metric\": \"synthetic.score@1\", \"names\": [\"early\", \"middle\", \"late\"],\n"
	"         \"cost\": \"linear\", \"min_segment\": 4, \"windows\": [[100, 400], null]}\n"
	"      ]\n"
	"    }\n"
	"  ]\n"
	"}\n";

Test(spec, a_valid_spec_parses_into_what_it_says)
{
	mb_spec s;
	mb_error err;

	cr_assert_eq(mb_spec_parse(&s, good, strlen(good), "benchmarks/demo.json", &err), 0, "%s",
		     err.msg);
	cr_expect_str_eq(s.suite, "demo");
	cr_expect_eq(s.alpha, 0.05);
	cr_expect_eq(s.bootstrap, 2000);
	cr_assert_eq(s.n_entries, 1);
	const mb_spec_entry *e = mb_spec_find_entry(&s, "toy");
	cr_assert_not_null(e);
	cr_expect_str_eq(e->task->name, "synthetic");
	cr_expect_str_eq(e->model, "models/toy");
	cr_expect_str_eq(e->dataset_sha256, SHA);
	cr_assert_eq(e->n_strata, 2);
	cr_expect_eq(e->metrics[0].n_strata, 0);
	cr_expect_eq(e->metrics[0].combine, MB_SPEC_COMBINE_NONE);
	cr_assert_eq(e->metrics[1].n_strata, 1);
	cr_expect_str_eq(e->metrics[1].strata[0].name, "hard");
	cr_expect_eq(e->metrics[1].strata[0].threshold, 0.5);
	cr_expect_eq(e->metrics[1].combine, MB_SPEC_COMBINE_ALL);
	cr_expect_str_eq(e->strata[1], "hard");
	cr_expect_eq(e->weights[1], 0.75);
	cr_assert_eq(e->n_metrics, 2);
	cr_expect_str_eq(e->metrics[0].name, "synthetic.score");
	cr_expect(e->metrics[0].has_threshold);
	cr_expect_eq(e->metrics[0].threshold, 1.5);
	cr_expect_not(e->metrics[1].has_threshold);
	cr_expect_eq(e->metrics[1].direction, MB_LOWER_IS_BETTER);
	cr_assert_eq(e->n_phases, 1);
	cr_expect_str_eq(e->phases[0].metric, "synthetic.score");
	cr_expect_eq(e->phases[0].version, 1);
	cr_assert_eq(e->phases[0].n_phases, 3);
	cr_expect_str_eq(e->phases[0].names[1], "middle");
	cr_expect_eq(e->phases[0].cost, MB_STATS_COST_LINEAR);
	cr_expect_eq(e->phases[0].min_segment, 4);
	cr_expect(e->phases[0].has_window[0] && !e->phases[0].has_window[1]);
	cr_expect(e->phases[0].windows[0][0] == 100 && e->phases[0].windows[0][1] == 400);
	mb_spec_dispose(&s);
}

Test(spec, phases_default_to_the_linear_cost_and_its_minimum_segment)
{
	static const char *const from = "\"cost\": \"linear\", \"min_segment\": 4, ";
	char text[4096];
	const char *at = strstr(good, from);
	mb_spec s;
	mb_error err;

	cr_assert_not_null(at);
	snprintf(text, sizeof(text), "%.*s%s", (int)(at - good), good, at + strlen(from));
	cr_assert_eq(mb_spec_parse(&s, text, strlen(text), "d.json", &err), 0, "%s", err.msg);
	cr_expect_eq(s.entries[0].phases[0].cost, MB_STATS_COST_LINEAR);
	cr_expect_eq(s.entries[0].phases[0].min_segment, 3);
	mb_spec_dispose(&s);
	snprintf(text, sizeof(text), "%.*s\"cost\": \"mean\", %s", (int)(at - good), good,
		 at + strlen(from));
	cr_assert_eq(mb_spec_parse(&s, text, strlen(text), "d.json", &err), 0, "%s", err.msg);
	cr_expect_eq(s.entries[0].phases[0].cost, MB_STATS_COST_MEAN);
	cr_expect_eq(s.entries[0].phases[0].min_segment, 2);
	mb_spec_dispose(&s);
}

/* Each bad spec replaces one piece of `good` and names what the error says. */
struct bad_case {
	char from[96];
	char to[160];
	char expect[128];
};

static struct bad_case bad_cases[] = {
	{"\"alpha\": 0.05", "\"alpha\": 0.5", "demo.json:4:3: alpha: one-sided alpha must be in (0, 0.5)"},
	{"\"power\": 0.8", "\"power\": 1", "demo.json:5:3: power: target power"},
	{"\"bootstrap\": 2000", "\"bootstrap\": 10", "demo.json:6:3: bootstrap: 10 is out of range"},
	{"\"seed\": 7", "\"seed\": -1", "demo.json:7:3: seed:"},
	{"\"format\": 1", "\"format\": 2", "demo.json:2:3: format:"},
	{"\"suite\": \"demo\"", "\"suite\": \"\"", "demo.json:3:3: suite: must not be empty"},
	{"\"seed\": 7,", "\"seed\": 7, \"sede\": 1,", "demo.json:7:14: sede: unknown field"},
	{"\"task\": \"synthetic\"", "\"task\": \"no_such_task\"", "demo.json:11:7: tasks[0].task: unknown task 'no_such_task'"},
	{"\"model\": \"models/toy\"", "\"model\": \"../toy\"", "demo.json:12:7: tasks[0].model: '../toy' must be a path relative"},
	{"\"sha256\": \"3f2a", "\"sha256\": \"3F2A", "tasks[0].dataset.sha256: expected 64 lower-case hex digits"},
	{"\"delay_ms\": 0", "\"delay_ms\": -5", "tasks[0].params.delay_ms: -5 is out of range"},
	{"\"delay_ms\": 0", "\"delay\": 5", "tasks[0].params.delay: unknown field"},
	{"\"hard\": 0.75", "\"hard\": 0.7", "demo.json:16:7: tasks[0].strata: stratum weights sum to 0.95"},
	{"\"hard\": 0.75", "\"hard\": \"x\"", "tasks[0].strata.hard: a stratum weight must be a number"},
	{"\"strata\": {", "\"clusters\": true, \"strata\": {", "tasks[0].clusters: registered strata weights and clustered SEs together"},
	{"synthetic.score@1", "synthetic.score", "demo.json:18:10: tasks[0].metrics[0].metric: 'synthetic.score' is not <metric>@<version>"},
	{"synthetic.score@1", "synthetic.scor@1", "tasks[0].metrics[0].metric: task synthetic has no metric 'synthetic.scor'"},
	{"\"kind\": \"continuous\"", "\"kind\": \"binary\"", "demo.json:18:41: tasks[0].metrics[0].kind: synthetic.score@1 is continuous, not binary"},
	{"\"kind\": \"continuous\"", "\"kind\": \"count\"", "tasks[0].metrics[0].kind: 'count' is not continuous, binary or ratio"},
	{"\"direction\": \"higher\"", "\"direction\": \"lower\"", "demo.json:19:10: tasks[0].metrics[0].direction: synthetic.score@1 is higher-is-better"},
	{"\"margin\": 0.5", "\"margin\": 0", "tasks[0].metrics[0].margin: the non-inferiority margin must be > 0"},
	{"\"margin\": 0.5", "\"treshold\": 1, \"margin\": 0.5", "tasks[0].metrics[0].treshold: unknown field"},
	{"\"margin\": 0.5, ", "", "demo.json:18:9: tasks[0].metrics[0].margin: required field is missing"},
	{"\"synthetic.loss@1\", \"kind\": \"ratio\", \"direction\": \"lower\"", "\"synthetic.score@1\", \"kind\": \"continuous\", \"direction\": \"higher\"", "demo.json:20:10: tasks[0].metrics[1].metric: metric synthetic.score is listed twice"},
	{"\"threshold\": 1.5", "\"threshold\": \"high\"", "tasks[0].metrics[0].threshold: expected a number, got a string"},
	{"\"name\": \"toy\"", "\"name\": 3", "demo.json:10:7: tasks[0].name: expected a string, got an integer"},
	{"\"tasks\": [", "\"tasks\": [], \"x\": [", "demo.json:8:16: x: unknown field"},
	{"\"seed\": 7,", "\"seed\": 7,,", "demo.json:7:13: invalid JSON"},
	{"\"synthetic.score@1\", \"names", "\"synthetic.loss@2\", \"names", "demo.json:24:10: tasks[0].phases[0].metric: 'synthetic.loss@2' is not one of this entry's metrics"},
	{"\"synthetic.score@1\", \"names", "\"synthetic.score\", \"names", "tasks[0].phases[0].metric: 'synthetic.score' is not one of this entry's metrics"},
	{"[\"early\", \"middle\", \"late\"]", "[\"early\"]", "tasks[0].phases[0].names: needs at least two phase names (one boundary)"},
	{"[\"early\", \"middle\", \"late\"]", "[\"early\", \"early\", \"late\"]", "tasks[0].phases[0].names[1]: phase name 'early' is used twice"},
	{"[\"early\", \"middle\", \"late\"]", "[\"early\", \"\", \"late\"]", "tasks[0].phases[0].names[1]: a phase name is a non-empty string"},
	{"\"cost\": \"linear\"", "\"cost\": \"slope\"", "demo.json:25:10: tasks[0].phases[0].cost: 'slope' is not linear"},
	{"\"min_segment\": 4", "\"min_segment\": 0", "tasks[0].phases[0].min_segment: 0 is out of range"},
	{"\"min_segment\": 4", "\"min_segment\": 2", "tasks[0].phases[0].min_segment: 2 is out of range [3, 10000]"},
	{"[[100, 400], null]", "[[100, 400]]", "tasks[0].phases[0].windows: 3 phases have 2 boundaries, so 2 windows (null for none), not 1"},
	{"[[100, 400], null]", "[[400, 100], null]", "tasks[0].phases[0].windows[0]: [400, 100] is not a window of steps"},
	{"[[100, 400], null]", "[[100, 400], \"late\"]", "tasks[0].phases[0].windows[1]: a window is null or [first step, last step]"},
	{"[[100, 400], null]", "[[100, 400], [50, 100]]", "tasks[0].phases[0].windows[1]: ends at step 100, not after boundary 1's window begins (100)"},
	{"\"windows\": [", "\"window\": [", "tasks[0].phases[0].window: unknown field"},
	/* per-stratum thresholds and their combine rule (line 21) */
	{"\"combine\": \"all\"", "\"combine\": \"any\"", "demo.json:21:"},
	{"\"combine\": \"all\"", "\"combine\": \"any\"", "tasks[0].metrics[1].combine: 'any' is not all (every stratum with a threshold must pass) or pooled"},
	{"\"combine\": \"all\"", "\"combine\": 1", "tasks[0].metrics[1].combine: expected a string"},
	{", \"combine\": \"all\"", "", "tasks[0].metrics[1].strata: per-stratum thresholds need \"combine\": \"all\" or \"pooled\""},
	{"\"strata\": {\"hard\": {\"threshold\": 0.5}}, ", "", "tasks[0].metrics[1].combine: nothing to combine"},
	{"{\"hard\": {\"threshold\"", "{\"medium\": {\"threshold\"", "tasks[0].metrics[1].strata.medium: stratum 'medium' is not one of the entry's registered strata"},
	{"{\"threshold\": 0.5}", "{\"threshold\": \"x\"}", "tasks[0].metrics[1].strata.hard.threshold: expected a number"},
	{"{\"threshold\": 0.5}", "{}", "tasks[0].metrics[1].strata.hard.threshold: required field is missing"},
	{"{\"threshold\": 0.5}", "{\"threshold\": 0.5, \"margin\": 1}", "tasks[0].metrics[1].strata.hard.margin: unknown field"},
	{"{\"hard\": {\"threshold\": 0.5}}", "{\"hard\": 0.5}", "tasks[0].metrics[1].strata.hard: expected an object"},
	{"{\"hard\": {\"threshold\": 0.5}}", "{}", "tasks[0].metrics[1].strata: an empty object; leave strata out instead"},
	{"{\"hard\": {\"threshold\": 0.5}}", "[0.5]", "tasks[0].metrics[1].strata: expected an object"},
	{"null]}\n      ]", "null]},\n {\"metric\": \"synthetic.score@1\", \"names\": [\"a\", \"b\"]}]", "tasks[0].phases[1].metric: phases of synthetic.score are declared twice"},
};

ParameterizedTestParameters(spec, bad_specs_get_one_located_line)
{
	return cr_make_param_array(struct bad_case, bad_cases,
				   sizeof(bad_cases) / sizeof(bad_cases[0]));
}

ParameterizedTest(struct bad_case *c, spec, bad_specs_get_one_located_line)
{
	char text[4096];
	const char *at = strstr(good, c->from);
	mb_spec s;
	mb_error err;

	cr_assert_not_null(at, "case text '%s' is in the good spec", c->from);
	snprintf(text, sizeof(text), "%.*s%s%s", (int)(at - good), good, c->to,
		 at + strlen(c->from));
	mb_error_clear(&err);
	cr_expect_lt(mb_spec_parse(&s, text, strlen(text), "benchmarks/demo.json", &err), 0,
		     "'%s' -> '%s' is rejected", c->from, c->to);
	cr_expect(strstr(err.msg, c->expect) != NULL, "expected '%s' in: %s", c->expect, err.msg);
	cr_expect(strchr(err.msg, '\n') == NULL, "one line");
}

static void parse_pair(mb_spec *a, mb_spec *b, const char *from, const char *to)
{
	char text[4096];
	const char *at = strstr(good, from);
	mb_error err;

	cr_assert_not_null(at);
	snprintf(text, sizeof(text), "%.*s%s%s", (int)(at - good), good, to, at + strlen(from));
	cr_assert_eq(mb_spec_parse(a, good, strlen(good), "reg", &err), 0, "%s", err.msg);
	cr_assert_eq(mb_spec_parse(b, text, strlen(text), "work", &err), 0, "%s", err.msg);
}

Test(spec, a_changed_stratum_threshold_is_a_deviation_of_that_metric)
{
	mb_spec a, b;
	mb_spec_deviation *d = NULL;
	size_t n = 0;
	mb_error err;

	parse_pair(&a, &b, "{\"threshold\": 0.5}", "{\"threshold\": 0.4}");
	cr_assert_eq(mb_spec_diff(&d, &n, &a, &b, &err), 0);
	cr_assert_eq(n, 1);
	cr_expect_str_eq(d[0].path, "tasks[toy].metrics[synthetic.loss].strata.hard.threshold");
	cr_expect(mb_spec_deviation_touches(&d[0], "toy", "synthetic.loss"));
	cr_expect(!mb_spec_deviation_touches(&d[0], "toy", "synthetic.score"));
	mb_spec_deviations_free(d, n);
	mb_spec_dispose(&a);
	mb_spec_dispose(&b);
}

Test(spec, a_changed_margin_is_one_deviation_touching_that_metric_only)
{
	mb_spec a, b;
	mb_spec_deviation *d = NULL;
	size_t n = 0;
	mb_error err;

	parse_pair(&a, &b, "\"margin\": 0.1", "\"margin\": 0.3");
	cr_assert_eq(mb_spec_diff(&d, &n, &a, &b, &err), 0);
	cr_assert_eq(n, 1);
	cr_expect_str_eq(d[0].path, "tasks[toy].metrics[synthetic.loss].margin");
	cr_expect_str_eq(d[0].before, "0.1");
	cr_expect_str_eq(d[0].after, "0.3");
	cr_expect(mb_spec_deviation_touches(&d[0], "toy", "synthetic.loss"));
	cr_expect_not(mb_spec_deviation_touches(&d[0], "toy", "synthetic.score"));
	mb_spec_deviations_free(d, n);
	mb_spec_dispose(&a);
	mb_spec_dispose(&b);
}

Test(spec, suite_and_entry_changes_touch_every_metric_below_them)
{
	mb_spec a, b;
	mb_spec_deviation *d = NULL;
	size_t n = 0;
	mb_error err;

	parse_pair(&a, &b, "\"alpha\": 0.05", "\"alpha\": 0.01");
	cr_assert_eq(mb_spec_diff(&d, &n, &a, &b, &err), 0);
	cr_assert_eq(n, 1);
	cr_expect_str_eq(d[0].path, "alpha");
	cr_expect(mb_spec_deviation_touches(&d[0], "toy", "synthetic.score"));
	mb_spec_deviations_free(d, n);
	mb_spec_dispose(&a);
	mb_spec_dispose(&b);

	parse_pair(&a, &b, "\"hard\": 0.75", "\"hard\": 0.5, \"mid\": 0.25");
	cr_assert_eq(mb_spec_diff(&d, &n, &a, &b, &err), 0);
	cr_assert_eq(n, 2);
	cr_expect_str_eq(d[0].path, "tasks[toy].strata.hard");
	cr_expect_str_eq(d[1].path, "tasks[toy].strata.mid");
	cr_expect_str_eq(d[1].before, "(absent)");
	cr_expect(mb_spec_deviation_touches(&d[1], "toy", "synthetic.loss"));
	mb_spec_deviations_free(d, n);
	mb_spec_dispose(&a);
	mb_spec_dispose(&b);
}

Test(spec, a_version_bump_and_a_removed_metric_are_named)
{
	mb_spec a, b;
	mb_spec_deviation *d = NULL;
	size_t n = 0;
	mb_error err;

	parse_pair(&a, &b,
		   ",\n        {\"metric\": \"synthetic.loss@1\", \"kind\": \"ratio\", \"direction\": "
		   "\"lower\",\n         \"margin\": 0.1, \"strata\": {\"hard\": {\"threshold\": 0.5}}, "
		   "\"combine\": \"all\"}",
		   "");
	cr_assert_eq(mb_spec_diff(&d, &n, &a, &b, &err), 0);
	cr_assert_eq(n, 1);
	cr_expect_str_eq(d[0].path, "tasks[toy].metrics[synthetic.loss]");
	cr_expect_str_eq(d[0].after, "(absent)");
	mb_spec_deviations_free(d, n);
	mb_spec_dispose(&a);
	mb_spec_dispose(&b);
}

Test(spec, an_empty_phases_list_is_an_error_not_a_silent_nothing)
{
	char text[4096];
	const char *a = strstr(good, "\"phases\": ["), *b = strstr(good, "null]}\n      ]");
	mb_spec s;
	mb_error err;

	cr_assert(a && b);
	b += strlen("null]}\n      ]");
	snprintf(text, sizeof(text), "%.*s\"phases\": []%s", (int)(a - good), good, b);
	cr_expect_eq(mb_spec_parse(&s, text, strlen(text), "benchmarks/demo.json", &err),
		     MB_EINVALID);
	cr_expect_str_eq(err.msg, "benchmarks/demo.json:23:7: tasks[0].phases: an empty list; "
				  "leave phases out instead");
}

Test(spec, a_changed_phase_window_touches_that_metric_only)
{
	mb_spec a, b;
	mb_spec_deviation *d = NULL;
	size_t n = 0;
	mb_error err;

	parse_pair(&a, &b, "[[100, 400], null]", "[[100, 500], null]");
	cr_assert_eq(mb_spec_diff(&d, &n, &a, &b, &err), 0);
	cr_assert_eq(n, 1);
	cr_expect_str_eq(d[0].path, "tasks[toy].phases[synthetic.score].windows");
	cr_expect(mb_spec_deviation_touches(&d[0], "toy", "synthetic.score"));
	cr_expect_not(mb_spec_deviation_touches(&d[0], "toy", "synthetic.loss"));
	mb_spec_deviations_free(d, n);
	mb_spec_dispose(&a);
	mb_spec_dispose(&b);
}

Test(spec, layout_only_changes_are_no_deviation)
{
	mb_spec a, b;
	mb_spec_deviation *d = NULL;
	size_t n = 7;
	mb_error err;

	parse_pair(&a, &b, "\"format\": 1,\n", "\"format\":1,     \n\n");
	cr_assert_eq(mb_spec_diff(&d, &n, &a, &b, &err), 0);
	cr_expect_eq(n, 0);
	mb_spec_deviations_free(d, n);
	mb_spec_dispose(&a);
	mb_spec_dispose(&b);
}
