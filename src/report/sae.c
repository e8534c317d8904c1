/*
 * sae.c: the feature table of an `sae` entry in the HTML run report (issue
 * 19 item 7), drawn from the entry's artifact (src/tasks/sae.c, kind
 * "sae-battery"): per labelled feature the causal battery's estimates with
 * their 95% paired intervals, necessity and steering next to their
 * random-direction controls, selectivity and collateral, the
 * Benjamini-Hochberg q of each excess and the verdict (sae_verdict.h), then
 * the fraction of features passing with its Wilson interval.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/str.h>

#include "report_int.h"

static const char *const cols[] = {"necessity",	"necessity_control", "steering",
				   "steering_control", "selectivity",	     "collateral"};

static double num(const json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_number(v) ? json_number_value(v) : NAN;
}

static void cell_est(FILE *f, const json_t *e)
{
	double m = num(e, "mean");
	if (isnan(m))
		fputs("<td class=\"num\">n/a</td>", f);
	else
		fprintf(f, "<td class=\"num\">%.4g [%.4g, %.4g]</td>", m, num(e, "lo"),
			num(e, "hi"));
}

int mb_html_sae_features(FILE *f, const mb_entry_result *r, mb_error *err)
{
	const json_t *a = r->artifact;
	const char *kind = json_string_value(json_object_get(a, "kind"));
	json_t *fs = json_object_get(a, "features"), *ft;
	size_t k;

	(void)err;
	if (!kind || strcmp(kind, "sae-battery") != 0 || !json_is_array(fs))
		return 0; /* a run without the battery's artifact */
	fputs("<h3>Features: the causal battery</h3>\n<p class=\"note\">One row per labelled "
	      "feature. Each edit changes only that latent, with the SAE's error term kept; each "
	      "control is a random direction of the same norm at the same point and positions. "
	      "Necessity on the feature's own items (drop of its topic's log-mass); steering on "
	      "the other items (rise of its topic's log-mass relative to the other absent "
	      "topics'). Means with 95% paired intervals; q: Benjamini-Hochberg across the "
	      "features of the one-sided p that the effect beats its control.</p>\n<table>\n"
	      "<tr><th>feature</th><th>latent</th><th>necessity</th><th>control</th>"
	      "<th>steering</th><th>control</th><th>selectivity</th><th>collateral KL</th>"
	      "<th>q necessity</th><th>q steering</th><th>verdict</th></tr>\n",
	      f);
	json_array_foreach(fs, k, ft) {
		fputs("<tr><td><code>", f);
		mb_str_put_xml(f, json_string_value(json_object_get(ft, "variable")) ?
					  json_string_value(json_object_get(ft, "variable")) : "?");
		fprintf(f, "</code></td><td class=\"num\">%.0f</td>", num(ft, "latent"));
		for (size_t c = 0; c < sizeof(cols) / sizeof(cols[0]); c++)
			cell_est(f, json_object_get(ft, cols[c]));
		fprintf(f, "<td class=\"num\">%.3g</td><td class=\"num\">%.3g</td><td>%s</td></tr>\n",
			num(ft, "q_necessity"), num(ft, "q_steering"),
			json_is_true(json_object_get(ft, "pass")) ? "PASS" : "<strong>fail</strong>");
	}
	fprintf(f, "</table>\n<p>Features passing: %.0f of %.0f (%.3g, 95%% Wilson interval "
		"[%.3g, %.3g]).</p>\n",
		num(a, "passed"), num(a, "n_features"), num(a, "pass_fraction"), num(a, "pass_lo"),
		num(a, "pass_hi"));
	return 0;
}
