/*
 * sae.c: the feature table of an `sae` entry in the HTML run report (issue
 * 19 item 7). The sae task's strata are its labelled features (one topic's
 * latent each, src/tasks/sae.c), so each stratum's intervals are that
 * feature's causal effects: necessity and steering next to their
 * random-direction controls, selectivity and collateral; a feature passes
 * when necessity and steering both beat their controls (one-sided paired t
 * of the per-item excess, H1 > 0, Benjamini-Hochberg across the features at
 * q = 0.05: the rule of sae_verdict.h, here on the stored aggregates).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/multiplicity.h>
#include <mechbench/paired.h>
#include <mechbench/str.h>

#include "report_int.h"

enum { NEC, NEC_CTL, NEC_EXC, STE, STE_CTL, STE_EXC, SEL, COL, N_COLS };

static const char *const col_metric[N_COLS] = {
	"sae.necessity", "sae.necessity_control", "sae.necessity_excess", "sae.steering",
	"sae.steering_control", "sae.steering_excess", "sae.selectivity", "sae.collateral",
};

/* One-sided p (H1: mean > 0) of a per-stratum paired-t aggregate. */
static double p_greater(const mb_aggregate *a)
{
	mb_stats_estimate e;
	if (a->n < 2 || isnan(a->mean))
		return 1.0;
	if (a->se == 0.0)
		return a->mean > 0.0 ? 0.0 : 1.0;
	memset(&e, 0, sizeof(e));
	e.method = MB_STATS_METHOD_PAIRED_T;
	e.n = a->n;
	e.mean = a->mean;
	e.se = a->se;
	e.df = (double)a->n - 1;
	double p = mb_stats_estimate_p(&e, 0.0, MB_STATS_ALTERNATIVE_GREATER);
	return isnan(p) ? 1.0 : p;
}

static void cell_est(FILE *f, const mb_aggregate *a)
{
	if (isnan(a->mean))
		fputs("<td class=\"num\">n/a</td>", f);
	else
		fprintf(f, "<td class=\"num\">%.4g [%.4g, %.4g]</td>", a->mean, a->lo, a->hi);
}

int mb_html_sae_features(FILE *f, const mb_entry_result *r, mb_error *err)
{
	int idx[N_COLS];
	size_t S = 0;
	double *p = NULL;
	int error = 0, passed = 0;

	for (int c = 0; c < N_COLS; c++) {
		idx[c] = -1;
		for (size_t m = 0; m < r->n_metrics; m++)
			if (strcmp(r->metrics[m].name, col_metric[c]) == 0)
				idx[c] = (int)m;
		if (idx[c] < 0)
			return 0; /* the entry does not register the whole battery */
	}
	for (size_t k = 0; k < r->n_strata; k++)
		S += r->strata[k].aggregates != NULL;
	if (S == 0)
		return 0;
	p = malloc(2 * S * sizeof(double));
	if (!p)
		return mb_error_oom(err, "sae feature table", 2 * S * sizeof(double));
	for (size_t k = 0; k < S; k++) {
		p[k] = p_greater(&r->strata[k].aggregates[idx[NEC_EXC]]);
		p[S + k] = p_greater(&r->strata[k].aggregates[idx[STE_EXC]]);
	}
	if ((error = mb_stats_bh(p, p, S, err)) < 0 ||
	    (error = mb_stats_bh(p + S, p + S, S, err)) < 0)
		goto cleanup;
	fputs("<h3>Features: the causal battery</h3>\n<p class=\"note\">One row per labelled "
	      "feature (stratum). Each edit changes only that latent, with the SAE's error term "
	      "kept; each control is a random direction of the same norm at the same point and "
	      "positions. Means with 95% paired intervals over the stratum's items; q: "
	      "Benjamini-Hochberg across the features of the one-sided p that the effect beats "
	      "its control.</p>\n<table>\n<tr><th>feature</th><th>n</th><th>necessity</th>"
	      "<th>control</th><th>steering</th><th>control</th><th>selectivity</th>"
	      "<th>collateral KL</th><th>q necessity</th><th>q steering</th><th>verdict</th>"
	      "</tr>\n",
	      f);
	for (size_t k = 0; k < S; k++) {
		const mb_aggregate *a = r->strata[k].aggregates;
		int pass = p[k] <= 0.05 && p[S + k] <= 0.05;
		passed += pass;
		fputs("<tr><td><code>", f);
		mb_str_put_xml(f, r->strata[k].name);
		fprintf(f, "</code></td><td class=\"num\">%zu</td>", r->strata[k].n);
		cell_est(f, &a[idx[NEC]]);
		cell_est(f, &a[idx[NEC_CTL]]);
		cell_est(f, &a[idx[STE]]);
		cell_est(f, &a[idx[STE_CTL]]);
		cell_est(f, &a[idx[SEL]]);
		cell_est(f, &a[idx[COL]]);
		fprintf(f, "<td class=\"num\">%.3g</td><td class=\"num\">%.3g</td><td>%s</td></tr>\n",
			p[k], p[S + k], pass ? "PASS" : "<strong>fail</strong>");
	}
	fprintf(f, "</table>\n<p>Features passing: %d of %zu (%.3g).</p>\n", passed, S,
		(double)passed / (double)S);
cleanup:
	free(p);
	return error;
}
