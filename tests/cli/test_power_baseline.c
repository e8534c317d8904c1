/* `mechbench power --baseline FILE --metric NAME`: var_d planned from a
 * baseline's per-item values exactly as the gate plans it, checked against a
 * direct computation from the committed self-test baseline. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "support/harness_support.h"

#define MB "'" MB_CLI_PATH "' power "
#define BASELINE MB_SOURCE_DIR "/baselines/synthetic-selftest.json"

/* Sample variance (n - 1) of metric column m of the baseline, two-pass in
 * long double, straight from the JSON. */
static double baseline_var(size_t m, size_t *n)
{
	json_error_t jerr;
	json_t *doc = json_load_file(BASELINE, 0, &jerr);
	json_t *items;
	long double sum = 0, ss = 0, mean;

	cr_assert_not_null(doc, "%s", jerr.text);
	items = json_object_get(json_array_get(json_object_get(doc, "entries"), 0), "items");
	*n = json_array_size(items);
	for (size_t i = 0; i < *n; i++)
		sum += json_real_value(json_array_get(
			json_object_get(json_array_get(items, i), "values"), m));
	mean = sum / (long double)*n;
	for (size_t i = 0; i < *n; i++) {
		long double d = json_real_value(json_array_get(
					json_object_get(json_array_get(items, i), "values"), m)) -
				mean;
		ss += d * d;
	}
	json_decref(doc);
	return (double)(ss / (long double)(*n - 1));
}

static double run_number(const char *args, const char *key)
{
	char cmd[1024], *out = NULL;
	double v = NAN;
	snprintf(cmd, sizeof(cmd), MB "--baseline '%s' %s 2>/dev/null", BASELINE, args);
	cr_assert_eq(mbt_sh("/", cmd, &out), 0, "%s: %s", cmd, out);
	cr_assert(strncmp(out, key, strlen(key)) == 0, "%s", out);
	v = strtod(out + strlen(key), NULL);
	free(out);
	return v;
}

Test(power_baseline, mde_at_the_baselines_n_uses_its_variance)
{
	const double z95 = 1.6448536269514722, z80 = 0.8416212335729143;
	size_t n;
	double var = baseline_var(0, &n);
	double want = (z95 + z80) * sqrt(var / (double)n);
	double got = run_number("--metric synthetic.score --sides 1", "mde = ");
	cr_log_info("mde %.9g, direct %.9g, relative difference %g", got, want,
		    fabs(got - want) / want);
	cr_expect(fabs(got - want) <= 1e-5 * want, "mde %.9g vs %.9g", got, want);
}

/* The spec, the gate's table and power's own var_d line write NAME@VERSION;
 * --metric takes that form too, with the same answer as the bare name (it
 * said "has no synthetic.score@1"). */
Test(power_baseline, metric_at_version_is_the_same_metric)
{
	double bare = run_number("--metric synthetic.score --sides 1", "mde = ");
	double versioned = run_number("--metric synthetic.score@1 --sides 1", "mde = ");
	cr_expect_eq(bare, versioned, "mde %.9g vs %.9g", bare, versioned);
}

Test(power_baseline, a_binary_metric_is_planned_with_at_least_delta_discordance)
{
	const double z95 = 1.6448536269514722, z80 = 0.8416212335729143;
	size_t n;
	double var = baseline_var(1, &n), delta = 0.05;
	double v = var > delta ? var : delta;
	double want = ceil((z95 + z80) * (z95 + z80) * v / (delta * delta) - 1e-9);
	double got = run_number("--metric synthetic.correct --sides 1 --delta 0.05", "n = ");
	cr_expect_eq(got, want, "n %g vs %g (var %g)", got, want, var);
}

Test(power_baseline, bad_combinations_name_the_flag)
{
	static const struct {
		const char *args, *expect;
		int code;
	} cases[] = {
		{"--baseline " BASELINE " --metric nope", "--metric: ", 2},
		{"--baseline " BASELINE, "--metric: required with --baseline", 2},
		{"--baseline " BASELINE " --metric synthetic.score --sd 1", "--baseline: give it", 2},
		{"--baseline " BASELINE " --metric synthetic.score --entry other", "in entry other", 2},
		{"--metric synthetic.score --sd 1 --n 5", "--metric: only with --baseline", 2},
		{"--baseline /nonexistent.json --metric x", "/nonexistent.json", 1},
		/* a wrong name or version lists what the file has */
		{"--baseline " BASELINE " --metric synthetic.score@2",
		 "has no synthetic.score@2 (it has: toy/synthetic.score@1, ", 2},
		{"--baseline " BASELINE " --metric synthetic.score@x",
		 "--metric: 'synthetic.score@x' is not NAME or NAME@VERSION", 2},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char cmd[1024], *out = NULL;
		snprintf(cmd, sizeof(cmd), MB "%s 2>&1 >/dev/null", cases[i].args);
		cr_expect_eq(mbt_sh("/", cmd, &out), cases[i].code, "%s: %s", cases[i].args, out);
		cr_expect(strstr(out, cases[i].expect) != NULL, "%s: %s", cases[i].args, out);
		free(out);
	}
}

/* --- per stratum (issue 14) ------------------------------------------------------ */

#define IND_BASELINE MB_SOURCE_DIR "/baselines/canonical-induction.json"
#define IND_SPEC MB_SOURCE_DIR "/benchmarks/canonical.json"

/* Sample variance of metric m over the items of `stratum` in the canonical
 * induction baseline, straight from the JSON. */
static double stratum_var(size_t m, const char *stratum, size_t *n)
{
	json_error_t jerr;
	json_t *doc = json_load_file(IND_BASELINE, 0, &jerr);
	json_t *items;
	long double sum = 0, ss = 0, mean = 0;

	cr_assert_not_null(doc, "%s", jerr.text);
	items = json_object_get(json_array_get(json_object_get(doc, "entries"), 0), "items");
	*n = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < json_array_size(items); i++) {
			json_t *it = json_array_get(items, i);
			long double v;
			if (strcmp(json_string_value(json_object_get(it, "stratum")), stratum) != 0)
				continue;
			v = json_real_value(json_array_get(json_object_get(it, "values"), m));
			if (pass == 0) {
				sum += v;
				++*n;
			} else {
				ss += (v - mean) * (v - mean);
			}
		}
		if (pass == 0)
			mean = sum / (long double)*n;
	}
	json_decref(doc);
	return (double)(ss / (long double)(*n - 1));
}

static double ind_mde(const char *args, char **err_out)
{
	char cmd[2048], *out = NULL;
	double v;
	snprintf(cmd, sizeof(cmd), MB "--baseline '%s' --metric induction.score --sides 1 %s "
		 "2>&1", IND_BASELINE, args);
	cr_assert_eq(mbt_sh("/", cmd, &out), 0, "%s: %s", cmd, out);
	cr_assert_not_null(strstr(out, "mde = "), "%s", out);
	v = strtod(strstr(out, "mde = ") + 6, NULL);
	*err_out = out;
	return v;
}

Test(power_baseline, spec_plans_on_the_smallest_thresholded_stratum_as_the_gate_does)
{
	const double z95 = 1.6448536269514722, z80 = 0.8416212335729143;
	size_t n10, n25;
	double v10 = stratum_var(0, "len=10", &n10), v25 = stratum_var(0, "len=25", &n25);
	char *out;
	double got;

	/* every stratum has 60 items; len=10 has the largest variance of the three */
	cr_assert_eq(n10, 60);
	cr_assert_eq(n25, 60);
	cr_assert_gt(v10, v25);
	got = ind_mde("--spec '" IND_SPEC "'", &out);
	cr_expect(strstr(out, "stratum len=10 (the smallest with a registered threshold) (60 items)"),
		  "%s", out);
	cr_expect(fabs(got - (z95 + z80) * sqrt(v10 / 60)) <= 1e-5 * got, "%s", out);
	free(out);
	got = ind_mde("--stratum len=25", &out);
	cr_expect(strstr(out, "stratum len=25 (60 items)"), "%s", out);
	cr_expect(fabs(got - (z95 + z80) * sqrt(v25 / 60)) <= 1e-5 * got, "%s", out);
	free(out);
}

Test(power_baseline, per_stratum_flags_misused_name_the_flag)
{
	static const struct {
		const char *args, *expect;
	} cases[] = {
		{"--sd 1 --n 10 --stratum len=10", "--stratum: only with --baseline"},
		{"--sd 1 --n 10 --spec x.json", "--spec: only with --baseline"},
		{"--baseline '" IND_BASELINE "' --metric induction.score --stratum len=10 --spec "
		 "'" IND_SPEC "'", "--stratum and --spec: give only one"},
		{"--baseline '" IND_BASELINE "' --metric induction.loss_rep1 --spec '" IND_SPEC "'",
		 "--spec: " IND_SPEC " registers no per-stratum threshold of induction.loss_rep1 in "
		 "entry induction"},
		{"--baseline '" IND_BASELINE "' --metric induction.score --stratum len=11",
		 "entry induction has 0 item(s) in stratum len=11"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char cmd[2048], *out = NULL;
		snprintf(cmd, sizeof(cmd), MB "%s 2>&1", cases[i].args);
		cr_expect_eq(mbt_sh("/", cmd, &out), 2, "%s: %s", cases[i].args, out);
		cr_expect(strstr(out, cases[i].expect) != NULL, "expected '%s' in: %s",
			  cases[i].expect, out);
		free(out);
	}
}
