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
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char cmd[1024], *out = NULL;
		snprintf(cmd, sizeof(cmd), MB "%s 2>&1 >/dev/null", cases[i].args);
		cr_expect_eq(mbt_sh("/", cmd, &out), cases[i].code, "%s: %s", cases[i].args, out);
		cr_expect(strstr(out, cases[i].expect) != NULL, "%s: %s", cases[i].args, out);
		free(out);
	}
}
