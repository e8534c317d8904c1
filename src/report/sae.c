/*
 * sae.c: the feature table of an `sae` entry in the HTML run report (issue
 * 19 item 7), from the entry's artifact (src/tasks/sae.c, kind
 * "sae-battery": the causal battery's per-item effects of each labelled
 * feature): the verdicts of sae_verdict.h on them (95% paired intervals, BH
 * across the features at q = 0.05, pass when necessity and steering both
 * beat their random-direction controls), one row per feature, then the
 * fraction passing with its Wilson interval.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/sae_verdict.h>
#include <mechbench/str.h>

#include "report_int.h"

enum { N_ARMS = 6 };

static const char *const arms[N_ARMS] = {"necessity",	     "necessity_control", "steering",
					 "steering_control", "selectivity",	  "collateral"};

static void cell_est(FILE *f, const mb_stats_estimate *e)
{
	if (e->n < 2 || isnan(e->mean))
		fputs("<td class=\"num\">n/a</td>", f);
	else
		fprintf(f, "<td class=\"num\">%.4g [%.4g, %.4g]</td>", e->mean, e->lo, e->hi);
}

/* b (its block owned) from the artifact's features: each arm an array of
 * n_items numbers or nulls (NaN). */
static int battery_from(mb_sae_battery *b, const json_t *fs, size_t n, mb_error *err)
{
	const size_t F = json_array_size(fs), FN = F * n;
	double *col[N_ARMS];

	memset(b, 0, sizeof(*b));
	b->block = malloc((FN ? FN : 1) * 8 * sizeof(double));
	if (!b->block)
		return mb_error_oom(err, "sae feature table", FN * 8 * sizeof(double));
	for (size_t i = 0; i < 8 * FN; i++)
		b->block[i] = NAN;
	b->n_features = (int)F;
	b->n = n;
	b->necessity = col[0] = b->block;
	b->necessity_control = col[1] = b->block + FN;
	b->steering = col[2] = b->block + 2 * FN;
	b->steering_control = col[3] = b->block + 3 * FN;
	b->selectivity = col[4] = b->block + 4 * FN;
	b->collateral = col[5] = b->block + 5 * FN;
	b->sufficiency = b->block + 6 * FN;
	b->sufficiency_control = b->block + 7 * FN;
	for (size_t k = 0; k < F; k++)
		for (int r = 0; r < N_ARMS; r++) {
			const json_t *a = json_object_get(json_array_get(fs, k), arms[r]);
			if (!json_is_array(a) || json_array_size(a) != n) {
				mb_sae_battery_dispose(b);
				return mb_error_set(err, MB_EINVALID,
						    "sae-battery artifact: features[%zu].%s: expected "
						    "%zu numbers or nulls",
						    k, arms[r], n);
			}
			for (size_t i = 0; i < n; i++) {
				const json_t *x = json_array_get(a, i);
				if (json_is_number(x))
					col[r][k * n + i] = json_number_value(x);
			}
		}
	return 0;
}

int mb_html_sae_features(FILE *f, const mb_entry_result *r, mb_error *err)
{
	const json_t *a = r->artifact;
	const char *kind = json_string_value(json_object_get(a, "kind"));
	const json_t *fs = json_object_get(a, "features");
	const json_t *ni = json_object_get(a, "n_items");
	mb_sae_battery b;
	mb_sae_verdict *v = NULL;
	double frac = 0, lo, hi;
	int error, passed = 0;

	if (!kind || strcmp(kind, "sae-battery") != 0)
		return 0; /* a run without the battery's artifact */
	if (!json_is_array(fs) || !json_is_integer(ni) || json_integer_value(ni) < 0)
		return mb_error_set(err, MB_EINVALID,
				    "sae-battery artifact: needs features (an array) and n_items");
	if ((error = battery_from(&b, fs, (size_t)json_integer_value(ni), err)) < 0)
		return error;
	v = calloc(b.n_features ? (size_t)b.n_features : 1, sizeof(*v));
	if (!v) {
		error = mb_error_oom(err, "sae verdicts", (size_t)b.n_features * sizeof(*v));
		goto cleanup;
	}
	if ((error = mb_sae_verdicts(v, &frac, &b, 0.95, 0.05, err)) < 0)
		goto cleanup;
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
	for (int k = 0; k < b.n_features; k++) {
		const json_t *ft = json_array_get(fs, (size_t)k);
		const char *name = json_string_value(json_object_get(ft, "variable"));
		const mb_sae_verdict *x = &v[k];
		passed += x->pass;
		fputs("<tr><td><code>", f);
		mb_str_put_xml(f, name ? name : "?");
		fprintf(f, "</code></td><td class=\"num\">%lld</td>",
			(long long)json_integer_value(json_object_get(ft, "latent")));
		cell_est(f, &x->necessity);
		cell_est(f, &x->necessity_control);
		cell_est(f, &x->steering);
		cell_est(f, &x->steering_control);
		cell_est(f, &x->selectivity);
		cell_est(f, &x->collateral);
		fprintf(f, "<td class=\"num\">%.3g</td><td class=\"num\">%.3g</td><td>%s</td></tr>\n",
			x->q_necessity, x->q_steering, x->pass ? "PASS" : "<strong>fail</strong>");
	}
	mb_sae_pass_interval(&lo, &hi, passed, b.n_features, 0.95);
	fprintf(f, "</table>\n<p>Features passing: %d of %d (%.3g, 95%% Wilson interval "
		"[%.3g, %.3g]).</p>\n",
		passed, b.n_features, frac, lo, hi);
cleanup:
	free(v);
	mb_sae_battery_dispose(&b);
	return error;
}
