/*
 * The feature table of an `sae` entry in the HTML report (src/report/sae.c),
 * drawn from the entry's "sae-battery" artifact: one row per feature with
 * its estimates and verdict ("n/a" where an arm had too few items), the
 * variable name escaped, the fraction passing with its interval; nothing
 * for an entry without that artifact.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/report_int.h"

static char *draw(const json_t *artifact)
{
	mb_entry_result r;
	mb_error err = {0};
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	cr_assert(f);
	memset(&r, 0, sizeof(r));
	r.artifact = (json_t *)artifact;
	cr_assert_eq(mb_html_sae_features(f, &r, &err), 0, "%s", err.msg);
	cr_assert_eq(fclose(f), 0);
	return buf;
}

static json_t *est(double mean, double lo, double hi)
{
	return json_pack("{s:i, s:f, s:f, s:f}", "n", 16, "mean", mean, "lo", lo, "hi", hi);
}

static json_t *feature(const char *name, int latent, int pass, json_t *necessity)
{
	return json_pack("{s:s, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:f, s:f, s:b}", "variable",
			 name, "latent", latent, "necessity", necessity, "necessity_control",
			 est(0.01, -0.01, 0.03), "steering", est(3.5, 3.25, 3.75),
			 "steering_control", est(0.04, -0.05, 0.125), "selectivity",
			 est(0.03, 0.02, 0.04), "collateral", est(2.0, 1.5, 2.5), "q_necessity",
			 pass ? 0.001 : 0.5, "q_steering", 1e-6, "pass", pass);
}

Test(sae_table, draws_each_feature_from_the_artifact)
{
	json_t *n_a = json_pack("{s:i, s:n, s:n, s:n}", "n", 1, "mean", "lo", "hi");
	json_t *a = json_pack("{s:s, s:i, s:[o, o], s:i, s:i, s:f, s:f, s:f}", "kind", "sae-battery",
			      "version", 1, "features",
			      feature("topic=<0>", 115, 1, est(0.125, 0.0625, 0.1875)),
			      feature("topic=1", 42, 0, n_a), "passed", 1, "n_features", 2,
			      "pass_fraction", 0.5, "pass_lo", 0.0945, "pass_hi", 0.906);
	cr_assert(a);
	char *html = draw(a);
	cr_expect(strstr(html, "<code>topic=&lt;0&gt;</code>") != NULL, "%s", html);
	cr_expect(strstr(html, "0.125 [0.0625, 0.1875]") != NULL, "%s", html);
	cr_expect(strstr(html, "<td class=\"num\">n/a</td>") != NULL, "%s", html);
	cr_expect(strstr(html, ">PASS<") != NULL && strstr(html, "<strong>fail</strong>") != NULL,
		  "%s", html);
	cr_expect(strstr(html, "Features passing: 1 of 2 (0.5, 95% Wilson interval [0.0945, "
			       "0.906])") != NULL,
		  "%s", html);
	free(html);
	json_decref(a);
}

Test(sae_table, draws_nothing_without_the_battery_artifact)
{
	json_t *circuit = json_pack("{s:s}", "kind", "circuit");
	char *html = draw(NULL);
	cr_expect_str_eq(html, "");
	free(html);
	html = draw(circuit);
	cr_expect_str_eq(html, "");
	free(html);
	json_decref(circuit);
}
