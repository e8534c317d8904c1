/* cmd_power.c: `mechbench power`: required n or minimum detectable effect of a
 * paired comparison (HARNESS.md "Power"; src/stats/power.c). */
#include "cli.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/baseline.h>
#include <mechbench/file.h>
#include <mechbench/gate.h>
#include <mechbench/power.h>
#include <mechbench/runner.h>

#include "suite_cli.h"

typedef struct power_args {
	double sd, discordant, delta, alpha, power, deff;
	int64_t n;
	int sides; /* index in sides[]: 0 one-sided, 1 two-sided */
	const char *baseline, *metric, *entry, *stratum, *spec, *suite;
	char metric_name[256]; /* --metric without its @VERSION */
	int metric_version;    /* the VERSION of --metric NAME@VERSION, 0 without */
} power_args;

static const char *const sides[] = {"1", "2", NULL};

static const mb_cli_opt power_opts[] = {
	{MB_OPT(DOUBLE, "--sd", power_args, sd), .meta = "X", .range = "> 0",
	 .help = "SD of the paired differences of a continuous metric (var_d = X^2)"},
	{MB_OPT(DOUBLE, "--discordant", power_args, discordant), .meta = "P", .range = "(0, 1]",
	 .help = "share of discordant items of a binary metric (var_d = P, Miller's rule)"},
	{MB_OPT(DOUBLE, "--delta", power_args, delta), .meta = "X",
	 .help = "effect to detect, in metric units (0.02 = 2 points), not 0: prints n = N, "
		 "rounded up"},
	{MB_OPT(INT, "--n", power_args, n), .meta = "N", .range = "[1, 1000000000000000]",
	 .help = "items available: prints mde = X"},
	{MB_OPT(PATH, "--baseline", power_args, baseline), .meta = "FILE",
	 .help = "take var_d from a baseline file's per-item values of --metric NAME (in --entry "
		 "NAME, default the first entry that has it), as `gate` plans it: their variance, "
		 "and for a binary metric at least |delta|. Without --delta or --n, prints the MDE "
		 "at the baseline's number of items."},
	{MB_OPT(STRING, "--metric", power_args, metric), .meta = "NAME",
	 .help = "with --baseline: the metric (NAME or NAME@VERSION, as the spec writes it)"},
	{MB_OPT(STRING, "--entry", power_args, entry), .meta = "NAME",
	 .help = "with --baseline: the entry"},
	{MB_OPT(STRING, "--stratum", power_args, stratum), .meta = "NAME",
	 .help = "with --baseline: only the items of this stratum (their variance and count)"},
	{MB_OPT(PATH, "--spec", power_args, spec), .meta = "FILE",
	 .help = "with --baseline: the stratum is the smallest (fewest baseline items) of those "
		 "the spec registers a threshold for under --metric, as the gate's pre-run check "
		 "plans it"},
	{MB_OPT(PATH, "--suite", power_args, suite), .meta = "FILE",
	 .help = "plan every margin of a suite spec as `gate` will: the working tree's spec, "
		 "each entry's baseline and dataset files, power 1 - beta/m over the suite's m "
		 "metrics; prints each metric's MDE against its margin and exits 3 when the "
		 "gate would refuse one (check before committing a new entry or margin)"},
	{MB_OPT(DOUBLE, "--alpha", power_args, alpha), .meta = "A", .range = "(0, 1)",
	 .def = "0.05", .help = "significance level (total over both tails when --sides 2)"},
	{MB_OPT(DOUBLE, "--power", power_args, power), .meta = "B", .range = "(0, 1)",
	 .def = "0.8", .help = "power 1 - beta"},
	{MB_OPT(ENUM, "--sides", power_args, sides), .choices = sides, .def = "2",
	 .help = "one-sided (non-inferiority) or two-sided test"},
	{MB_OPT(DOUBLE, "--deff", power_args, deff), .meta = "D", .range = "> 0", .def = "1",
	 .help = "design effect of clustered items"},
};

static const mb_cli_cmd power_cmd = {
	.name = "power",
	.opts = power_opts,
	.n_opts = MB_CLI_N(power_opts),
	.synopsis =
	"mechbench power (--sd X | --discordant P) (--delta X | --n N)\n"
	"                       [--alpha A] [--power B] [--sides 1|2] [--deff D]\n"
	"       mechbench power --baseline FILE --metric NAME [--entry NAME]\n"
	"                       [--stratum NAME | --spec FILE] [--delta X | --n N]\n"
	"                       [--alpha A] [--power B] ...\n"
	"       mechbench power --suite FILE\n",
	.about =
	"Sample size or minimum detectable effect (MDE) of a paired comparison, by the\n"
	"normal approximation (Miller 2024, \"Adding Error Bars to Evals\"):\n"
	"    n   = (z_{1-a} + z_{1-b})^2 * var_d * DEFF / delta^2\n"
	"    MDE = (z_{1-a} + z_{1-b}) * sqrt(var_d * DEFF / n)\n"
	"with a = alpha (one-sided) or alpha/2 (two-sided) and b = 1 - power.\n",
	.notes =
	"Example (Miller's worked case, 10% discordant, 2 points, two-sided, power 0.8):\n"
	"    mechbench power --discordant 0.1 --delta 0.02     prints  n = 1963\n\n"
	"With --suite, alpha and power are the spec's, and a margin \"plans\" when its\n"
	"MDE at the baseline's n (and, for per-stratum thresholds combined \"all\", at\n"
	"the smallest such stratum's n) is at most the margin; headroom is margin/MDE.\n"
	"Adding entries raises m, so margins with headroom near 1 are the next refused.\n\n"
	"Exit codes: 0 success, 1 unreadable baseline, spec or dataset, 2 usage error\n"
	"(one line naming the flag), 3 (--suite) the gate would refuse a margin.\n",
};

/* The smallest stratum of e (by items) that the spec registers a threshold of
 * metric m for (among equally small ones, the one with the largest planning
 * variance, as the gate picks it); NULL (after printing the usage error) when
 * there is none. The name points into e. */
static const char *spec_stratum(const power_args *a, const mb_entry_result *e, size_t em,
				double delta, int *rc);

/* A view of e holding only the items of `stratum` (all when NULL): its own
 * values array (free it), everything else borrowed. */
static int stratum_view(mb_entry_result *out, const mb_entry_result *e, const char *stratum)
{
	size_t n = 0;

	*out = *e;
	out->values = malloc((e->n_items ? e->n_items : 1) * e->n_metrics * sizeof(double));
	if (!out->values) {
		fprintf(stderr, "mechbench: out of memory\n");
		return MB_EXIT_ERROR;
	}
	for (size_t i = 0; i < e->n_items; i++) {
		if (stratum && strcmp(e->items[i].stratum, stratum) != 0)
			continue;
		memcpy(out->values + n * e->n_metrics, e->values + i * e->n_metrics,
		       e->n_metrics * sizeof(double));
		n++;
	}
	out->n_items = n;
	return 0;
}

static const char *spec_stratum(const power_args *a, const mb_entry_result *e, size_t em,
				double delta, int *rc)
{
	mb_spec spec;
	mb_error err;
	const mb_spec_entry *se;
	const char *best = NULL;
	size_t best_n = SIZE_MAX;
	double best_var = -1;

	*rc = 0;
	if (mb_spec_load(&spec, a->spec, &err) < 0) {
		*rc = mb_cli_fail(&err);
		return NULL;
	}
	se = mb_spec_find_entry(&spec, e->name);
	for (size_t m = 0; se && m < se->n_metrics && !*rc; m++) {
		if (strcmp(se->metrics[m].name, a->metric) != 0)
			continue;
		for (size_t k = 0; k < se->metrics[m].n_strata && !*rc; k++) {
			const char *name = NULL;
			mb_entry_result sub;
			double var;
			for (size_t i = 0; i < e->n_items && !name; i++)
				if (strcmp(e->items[i].stratum, se->metrics[m].strata[k].name) == 0)
					name = e->items[i].stratum;
			if (!name || (*rc = stratum_view(&sub, e, name)) != 0)
				continue;
			var = sub.n_items >= 2 ? mb_gate_planning_var(&sub, em, fabs(delta)) : -1;
			if (sub.n_items >= 2 &&
			    (sub.n_items < best_n || (sub.n_items == best_n && var > best_var))) {
				best = name;
				best_n = sub.n_items;
				best_var = var;
			}
			free(sub.values);
		}
	}
	if (!best && !*rc)
		*rc = mb_cli_usage_error("power", "--spec: %s registers no per-stratum threshold "
					 "of %s in entry %s (with >= 2 baseline items)", a->spec,
					 a->metric, e->name);
	mb_spec_dispose(&spec);
	return best;
}

/* var_d and n of --metric in the --baseline file, as the gate plans them.
 * Returns 0, MB_EXIT_USAGE for a metric or entry that is not there (after
 * printing the usage error), or MB_EXIT_ERROR (after printing it). */
static int baseline_var(double *var_d, int64_t *n, const power_args *a, double delta)
{
	mb_run_result run;
	mb_error err;
	int rc = 0;

	if (mb_baseline_load(&run, a->baseline, &err) < 0)
		return mb_cli_fail(&err);
	for (size_t i = 0; i < run.n_entries; i++) {
		const mb_entry_result *e = &run.entries[i];
		int m = mb_entry_result_metric(e, a->metric);
		if ((a->entry && strcmp(e->name, a->entry) != 0) || m < 0 ||
		    (a->metric_version && e->metrics[m].version != a->metric_version))
			continue;
		const char *stratum = a->stratum;
		mb_entry_result sub;
		if (a->spec && !(stratum = spec_stratum(a, e, (size_t)m, delta, &rc)))
			goto cleanup;
		if ((rc = stratum_view(&sub, e, stratum)) != 0)
			goto cleanup;
		if (sub.n_items < 2) {
			rc = mb_cli_usage_error("power", "--baseline: entry %s has %zu item(s)%s%s",
						e->name, sub.n_items, stratum ? " in stratum " : "",
						stratum ? stratum : "");
			free(sub.values);
			goto cleanup;
		}
		*var_d = mb_gate_planning_var(&sub, (size_t)m, fabs(delta));
		*n = (int64_t)sub.n_items;
		free(sub.values);
		fprintf(stderr, "mechbench power: var_d %.6g from %s, %s/%s@%d%s%s%s (%lld items)\n",
			*var_d, a->baseline, e->name, a->metric, e->metrics[m].version,
			stratum ? ", stratum " : "", stratum ? stratum : "",
			a->spec ? " (the smallest with a registered threshold)" : "",
			(long long)*n);
		if (!(*var_d > 0))
			rc = mb_cli_usage_error("power", "--baseline: %s/%s has no spread (every "
						"value equal); no MDE to compute", e->name, a->metric);
		goto cleanup;
	}
	{
		/* what the file has, so that the next try can be right */
		char have[512], want[300];
		size_t at = 0;
		have[0] = '\0';
		for (size_t i = 0; i < run.n_entries && at < sizeof(have); i++)
			for (size_t m = 0; (!a->entry || strcmp(run.entries[i].name, a->entry) == 0) &&
					   m < run.entries[i].n_metrics && at < sizeof(have); m++)
				at += (size_t)snprintf(have + at, sizeof(have) - at, "%s%s/%s@%d",
						       at ? ", " : "", run.entries[i].name,
						       run.entries[i].metrics[m].name,
						       run.entries[i].metrics[m].version);
		if (a->metric_version)
			snprintf(want, sizeof(want), "%s@%d", a->metric, a->metric_version);
		else
			snprintf(want, sizeof(want), "%s", a->metric);
		rc = mb_cli_usage_error("power", "--metric: %s has no %s%s%s (it has: %s)",
					a->baseline, want, a->entry ? " in entry " : "",
					a->entry ? a->entry : "",
					at ? have : a->entry ? "no such entry" : "no metrics");
	}
cleanup:
	mb_run_result_dispose(&run);
	return rc;
}

/* One planned row as `power --suite` prints it: the MDE against the margin,
 * at n items (the whole pool, or the smallest thresholded stratum). Returns 1
 * when the gate would refuse it. */
static int plan_line(const mb_gate_row *r, const char *stratum, size_t n, double mde)
{
	int refused = mde > r->margin;

	printf("%-26s %-34s %-14s %6zu %10.4g %10.4g %8.3g  %s", r->entry, r->metric,
	       stratum ? stratum : "(pooled)", n, mde, r->margin,
	       mde > 0 ? r->margin / mde : INFINITY, refused ? "REFUSED" : "plans");
	if (refused)
		printf(": needs n >= %.0f or margin >= %.4g",
		       ceil((double)n * (mde / r->margin) * (mde / r->margin)), mde);
	printf("\n");
	return refused;
}

/* --suite: every margin of the working spec planned by the gate's own code
 * (mb_gate_plan_entry) against the working tree's baselines and datasets. */
static int suite_plan(const char *suite)
{
	mb_cli_spec_home home;
	mb_spec spec;
	mb_gate_result g;
	mb_error err;
	mb_run_result *runs = NULL;
	char **paths = NULL;
	size_t n_runs = 0, refused = 0, rows = 0;
	int error, rc = MB_EXIT_ERROR;

	memset(&spec, 0, sizeof(spec));
	memset(&g, 0, sizeof(g));
	mb_error_clear(&err);
	if ((error = mb_cli_spec_home_open(&home, suite, 0, &err)) < 0)
		return mb_cli_fail(&err);
	if ((error = mb_spec_parse(&spec, home.text, home.len, suite, &err)) < 0 ||
	    (error = mb_gate_init(&g, &spec, home.relpath, "working tree", "", home.blob,
				  &err)) < 0)
		goto cleanup;
	runs = calloc(spec.n_entries ? spec.n_entries : 1, sizeof(*runs));
	paths = calloc(spec.n_entries ? spec.n_entries : 1, sizeof(*paths));
	if (!runs || !paths) {
		error = mb_error_oom(&err, "baselines", spec.n_entries * sizeof(*runs));
		goto cleanup;
	}
	for (size_t i = 0; i < spec.n_entries; i++) {
		const mb_spec_entry *e = &spec.entries[i];
		const mb_entry_result *be = NULL;
		mb_dataset d;
		char path[4096];
		size_t k;

		if (!e->baseline) {
			error = mb_error_set(&err, MB_EINVALID, "%s: entry %s names no baseline: "
					     "nothing to plan its margins from", suite, e->name);
			goto cleanup;
		}
		if ((error = mb_file_path_join(path, sizeof(path), home.root, e->baseline,
					       &err)) < 0)
			goto cleanup;
		for (k = 0; k < n_runs && strcmp(paths[k], path) != 0; k++)
			;
		if (k == n_runs) {
			if ((paths[k] = strdup(path)) == NULL) {
				error = mb_error_oom(&err, "path", strlen(path));
				goto cleanup;
			}
			n_runs++;
			if ((error = mb_baseline_load(&runs[k], path, &err)) < 0) {
				mb_error_prefix(&err, "entry %s: baseline", e->name);
				goto cleanup;
			}
		}
		if (!(be = mb_run_result_entry(&runs[k], e->name))) {
			error = mb_error_set(&err, MB_ENOTFOUND, "%s has no entry '%s'; save a "
					     "baseline that includes it", path, e->name);
			goto cleanup;
		}
		if ((error = mb_runner_load_dataset(&d, e, home.root, &err)) < 0)
			goto cleanup;
		error = mb_gate_plan_entry(&g, &spec, e, be, &d, &err);
		mb_dataset_dispose(&d);
		if (error < 0)
			goto cleanup;
	}

	printf("%s: power %.3g over m = %zu metrics (each planned at 1 - beta/m), one-sided "
	       "alpha %.3g\n", suite, g.power, g.n_rows, g.alpha);
	printf("%-26s %-34s %-14s %6s %10s %10s %8s  %s\n", "entry", "metric", "stratum", "n",
	       "MDE", "margin", "headroom", "plan");
	for (size_t r = 0; r < g.n_rows; r++) {
		const mb_gate_row *row = &g.rows[r];
		if (row->metric_changed) {
			printf("%-26s %-34s not planned: %s\n", row->entry, row->metric, row->note);
			continue;
		}
		rows++;
		refused += (size_t)plan_line(row, NULL, row->n, row->mde_planned);
		if (row->power_stratum >= 0 && row->combine == MB_SPEC_COMBINE_ALL) {
			const mb_gate_stratum *st = &row->strata[row->power_stratum];
			refused += (size_t)plan_line(row, st->name, st->n, st->mde_planned);
		}
	}
	/* The gate's own check decides; the table above explains it. */
	if ((error = mb_gate_check_power(&g, &err)) < 0) {
		fprintf(stderr, "mechbench power: %zu margin(s) of %zu metrics would be refused by "
			"`gate`\n", refused, rows);
		rc = MB_EXIT_GATE_FAILED;
		error = 0;
		goto cleanup;
	}
	printf("every margin plans (%zu metrics)\n", rows);
	rc = MB_EXIT_OK;
cleanup:
	if (error < 0)
		rc = mb_cli_fail(&err);
	for (size_t k = 0; k < n_runs; k++) {
		mb_run_result_dispose(&runs[k]);
		free(paths[k]);
	}
	free(runs);
	free(paths);
	mb_gate_dispose(&g);
	mb_spec_dispose(&spec);
	mb_cli_spec_home_dispose(&home);
	return rc;
}

int mb_cmd_power(int argc, char **argv)
{
	power_args a = {0};
	mb_cli_parsed parsed;
	mb_stats_power_opts o;
	double delta = 0.0;
	int64_t n = 0;
	mb_error err;
	int rc, has_sd, has_disc, has_delta, has_n;

	if ((rc = mb_cli_parse(&parsed, &a, &power_cmd, argc, argv)) != MB_CLI_GO)
		return rc;
	has_sd = mb_cli_given(&parsed, &power_cmd, "--sd") > 0;
	has_disc = mb_cli_given(&parsed, &power_cmd, "--discordant") > 0;
	has_delta = mb_cli_given(&parsed, &power_cmd, "--delta") > 0;
	has_n = mb_cli_given(&parsed, &power_cmd, "--n") > 0;
	if (a.suite) {
		if (a.baseline || has_sd || has_disc || has_delta || has_n || a.metric ||
		    a.entry || a.stratum || a.spec ||
		    mb_cli_given(&parsed, &power_cmd, "--alpha") > 0 ||
		    mb_cli_given(&parsed, &power_cmd, "--power") > 0 ||
		    mb_cli_given(&parsed, &power_cmd, "--sides") > 0 ||
		    mb_cli_given(&parsed, &power_cmd, "--deff") > 0)
			return mb_cli_usage_error("power", "--suite: give it alone (alpha and "
						  "power are the spec's)");
		return suite_plan(a.suite);
	}
	if (a.baseline && (has_sd || has_disc))
		return mb_cli_usage_error("power", "--baseline: give it instead of --sd or "
					  "--discordant, not with them");
	if (!a.baseline && (a.metric || a.entry || a.stratum || a.spec))
		return mb_cli_usage_error("power", "%s: only with --baseline",
					  a.metric ? "--metric" : a.entry ? "--entry"
							: a.stratum ? "--stratum" : "--spec");
	if (a.stratum && a.spec)
		return mb_cli_usage_error("power", "--stratum and --spec: give only one");
	if (a.baseline && !a.metric)
		return mb_cli_usage_error("power", "--metric: required with --baseline");
	/* NAME@VERSION, as specs, gate tables and this command's own var_d line
	 * write a metric: the name, and the version the baseline must have */
	if (a.metric && strchr(a.metric, '@')) {
		if (mb_metric_ref_parse(a.metric, a.metric_name, sizeof(a.metric_name),
					&a.metric_version) < 0)
			return mb_cli_usage_error("power", "--metric: '%s' is not NAME or "
						  "NAME@VERSION", a.metric);
		a.metric = a.metric_name;
	}
	if (!a.baseline && has_sd == has_disc)
		return mb_cli_usage_error("power", "%s",
					  has_sd ? "--sd and --discordant: give only one"
						 : "--sd or --discordant: one is required (or "
						   "--baseline FILE --metric NAME)");
	if (has_delta && has_n)
		return mb_cli_usage_error("power", "--delta and --n: give only one");
	if (!a.baseline && !has_delta && !has_n)
		return mb_cli_usage_error("power", "--delta or --n: one is required");
	if (has_delta && a.delta == 0.0)
		return mb_cli_usage_error("power", "--delta: must not be 0");
	delta = a.delta;
	o = (mb_stats_power_opts){.alpha = a.alpha, .power = a.power, .sides = a.sides + 1,
				  .deff = a.deff};
	if (a.baseline) {
		int64_t base_n = 0;
		if ((rc = baseline_var(&o.var_d, &base_n, &a, delta)) != 0)
			return rc;
		n = base_n;
	} else if (has_sd) {
		o.var_d = a.sd * a.sd;
	} else {
		o.var_d = mb_stats_power_var_binary(a.discordant);
	}
	if (has_n)
		n = a.n;
	mb_error_clear(&err);
	if (mb_stats_power_check(&o, &err) < 0)
		return mb_cli_usage_error("power", "%s", err.msg);

	if (has_delta) {
		double exact;
		uint64_t need;
		if (mb_stats_power_n(&exact, &need, &o, delta, &err) < 0)
			return mb_cli_usage_error("power", "--%s", err.msg);
		printf("n = %llu\n", (unsigned long long)need);
	} else {
		double mde;
		if (mb_stats_power_mde(&mde, &o, (double)n, &err) < 0)
			return mb_cli_usage_error("power", "--%s", err.msg);
		printf("mde = %.6g\n", mde);
	}
	return MB_EXIT_OK;
}
