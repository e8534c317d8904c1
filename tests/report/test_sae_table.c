/*
 * The feature table of an `sae` entry in the HTML report (src/report/sae.c),
 * drawn from the entry's "sae-battery" artifact (per-item effects): one row
 * per feature with its verdict, the variable name escaped, the fraction
 * passing with its Wilson interval; a malformed arm named; nothing for an
 * entry without that artifact.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/report_int.h"

static char *draw(const json_t *artifact, int *rc, mb_error *err)
{
	mb_entry_result r;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	cr_assert(f);
	memset(&r, 0, sizeof(r));
	r.artifact = (json_t *)artifact;
	*rc = mb_html_sae_features(f, &r, err);
	cr_assert_eq(fclose(f), 0);
	return buf;
}

enum { N = 6 };

/* One feature's arms over N items (items 0-2 its own, 3-5 others), every
 * effect `eff` (plus a little spread) and every control about 0. */
static json_t *feature(const char *name, int latent, double eff)
{
	static const char *const arms[] = {"necessity", "necessity_control", "steering",
					   "steering_control", "selectivity", "collateral"};
	json_t *f = json_pack("{s:s, s:i}", "variable", name, "latent", latent);
	for (int r = 0; r < 6; r++) {
		json_t *a = json_array();
		for (int i = 0; i < N; i++) {
			int own = i < 3, applies = r < 2 ? own : !own;
			double x = (r == 0 || r == 2 ? eff : 0.0) + 0.01 * (i % 3 - 1) * (r + 1);
			json_array_append_new(a, applies ? json_real(x) : json_null());
		}
		json_object_set_new(f, arms[r], a);
	}
	return f;
}

static json_t *artifact(void)
{
	return json_pack("{s:s, s:i, s:i, s:[o, o]}", "kind", "sae-battery", "version", 1,
			 "n_items", N, "features", feature("topic=<0>", 115, 1.0),
			 feature("topic=1", 42, 0.0));
}

Test(sae_table, draws_each_features_verdict_from_the_artifact)
{
	json_t *a = artifact();
	mb_error err = {0};
	int rc;
	char *html = draw(a, &rc, &err);
	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_expect(strstr(html, "<code>topic=&lt;0&gt;</code>") != NULL, "%s", html);
	cr_expect(strstr(html, ">PASS<") != NULL && strstr(html, "<strong>fail</strong>") != NULL,
		  "%s", html);
	/* topic=1's control column: items 3-5 only, mean 0 */
	cr_expect(strstr(html, "Features passing: 1 of 2 (0.5, 95% Wilson interval [0.0945, "
			       "0.905])") != NULL,
		  "%s", html);
	free(html);
	/* an arm of the wrong length: one line naming it */
	json_array_remove(json_object_get(json_array_get(json_object_get(a, "features"), 0),
					  "steering"),
			  0);
	html = draw(a, &rc, &err);
	cr_expect_lt(rc, 0);
	cr_expect(strstr(err.msg, "features[0].steering") != NULL, "%s", err.msg);
	free(html);
	json_decref(a);
}

Test(sae_table, draws_nothing_without_the_battery_artifact)
{
	json_t *circuit = json_pack("{s:s}", "kind", "circuit");
	mb_error err = {0};
	int rc;
	char *html = draw(NULL, &rc, &err);
	cr_expect_str_eq(html, "");
	free(html);
	html = draw(circuit, &rc, &err);
	cr_expect_str_eq(html, "");
	free(html);
	json_decref(circuit);
}
