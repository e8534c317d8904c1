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
#include <mechbench/parse.h>
#include <mechbench/power.h>

static const char usage[] =
	"usage: mechbench power (--sd X | --discordant P) (--delta X | --n N)\n"
	"                       [--alpha A] [--power B] [--sides 1|2] [--deff D]\n"
	"       mechbench power --baseline FILE --metric NAME [--entry NAME]\n"
	"                       [--stratum NAME | --spec FILE] [--delta X | --n N]\n"
	"                       [--alpha A] [--power B] ...\n\n"
	"Sample size or minimum detectable effect (MDE) of a paired comparison, by the\n"
	"normal approximation (Miller 2024, \"Adding Error Bars to Evals\"):\n"
	"    n   = (z_{1-a} + z_{1-b})^2 * var_d * DEFF / delta^2\n"
	"    MDE = (z_{1-a} + z_{1-b}) * sqrt(var_d * DEFF / n)\n"
	"with a = alpha (one-sided) or alpha/2 (two-sided) and b = 1 - power.\n\n"
	"  --sd X          SD of the paired differences of a continuous metric (var_d = X^2)\n"
	"  --discordant P  share of discordant items of a binary metric, in (0, 1]\n"
	"                  (var_d = P, Miller's rule)\n"
	"  --delta X       effect to detect, in metric units (0.02 = 2 points): prints n = N,\n"
	"                  rounded up\n"
	"  --n N           items available: prints mde = X\n"
	"  --baseline FILE take var_d from a baseline file's per-item values of\n"
	"                  --metric NAME (in --entry NAME, default the first entry that\n"
	"                  has it), as `gate` plans it: their variance, and for a\n"
	"                  binary metric at least |delta|. Without --delta or --n,\n"
	"                  prints the MDE at the baseline's number of items.\n"
	"  --stratum NAME  with --baseline: only the items of this stratum (their\n"
	"                  variance and count)\n"
	"  --spec FILE     with --baseline: the stratum is the smallest (fewest\n"
	"                  baseline items) of those the spec registers a threshold\n"
	"                  for under --metric, as the gate's pre-run check plans it\n"
	"  --alpha A       significance level, in (0, 1) (default 0.05; total over both\n"
	"                  tails when --sides 2)\n"
	"  --power B       power 1 - beta, in (0, 1) (default 0.8)\n"
	"  --sides 1|2     one-sided (non-inferiority) or two-sided test (default 2)\n"
	"  --deff D        design effect of clustered items, > 0 (default 1)\n\n"
	"Example (Miller's worked case, 10% discordant, 2 points, two-sided, power 0.8):\n"
	"    mechbench power --discordant 0.1 --delta 0.02     prints  n = 1963\n\n"
	"Exit codes: 0 success, 1 unreadable baseline, 2 usage error (one line naming\n"
	"the flag).\n";

/* One flag's value: "--flag value" or "--flag=value". Returns the value, or
 * NULL when argv[*i] is not this flag; advances *i past a separate value. */
static const char *flag_value(int argc, char **argv, int *i, const char *flag, int *missing)
{
	size_t len = strlen(flag);
	const char *a = argv[*i];

	*missing = 0;
	if (strncmp(a, flag, len) != 0)
		return NULL;
	if (a[len] == '=')
		return a + len + 1;
	if (a[len] != '\0')
		return NULL;
	if (*i + 1 >= argc) {
		*missing = 1;
		return NULL;
	}
	return argv[++*i];
}

typedef struct power_args {
	const char *sd, *discordant, *delta, *n, *alpha, *power, *sides, *deff;
	const char *baseline, *metric, *entry, *stratum, *spec;
} power_args;

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
	char *text = NULL;
	size_t len;
	int rc = 0;

	memset(&run, 0, sizeof(run));
	if (mb_file_read_text(&text, &len, a->baseline, &err) < 0 ||
	    mb_baseline_parse(&run, text, len, a->baseline, &err) < 0) {
		free(text);
		return mb_cli_fail(&err);
	}
	free(text);
	for (size_t i = 0; i < run.n_entries; i++) {
		const mb_entry_result *e = &run.entries[i];
		int m = mb_entry_result_metric(e, a->metric);
		if ((a->entry && strcmp(e->name, a->entry) != 0) || m < 0)
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
	rc = mb_cli_usage_error("power", "--metric: %s has no %s%s%s", a->baseline, a->metric,
				a->entry ? " in entry " : "", a->entry ? a->entry : "");
cleanup:
	mb_run_result_dispose(&run);
	return rc;
}

static int parse_number(double *out, const char *text, const char *flag)
{
	mb_error err;

	if (mb_parse_f64(text, out, flag, &err) < 0)
		return mb_cli_usage_error("power", "%s", err.msg);
	return 0;
}

int mb_cmd_power(int argc, char **argv)
{
	static const char *const flags[] = {"--sd", "--discordant", "--delta", "--n",
					    "--alpha", "--power", "--sides", "--deff",
					    "--baseline", "--metric", "--entry", "--stratum", "--spec"};
	power_args a = {0};
	const char **slots[] = {&a.sd, &a.discordant, &a.delta, &a.n,
				&a.alpha, &a.power, &a.sides, &a.deff,
				&a.baseline, &a.metric, &a.entry, &a.stratum, &a.spec};
	mb_stats_power_opts o = {.alpha = 0.05, .power = 0.8, .sides = 2, .deff = 1.0};
	double x, delta = 0.0;
	int64_t n = 0;
	mb_error err;
	int rc;

	if (mb_cli_wants_help(argc, argv)) {
		fputs(usage, stdout);
		return MB_EXIT_OK;
	}
	for (int i = 1; i < argc; i++) {
		int matched = 0;
		for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]) && !matched; f++) {
			int missing;
			const char *v = flag_value(argc, argv, &i, flags[f], &missing);
			if (missing)
				return mb_cli_usage_error("power", "%s: needs a value", flags[f]);
			if (!v)
				continue;
			if (*slots[f])
				return mb_cli_usage_error("power", "%s: given twice", flags[f]);
			*slots[f] = v;
			matched = 1;
		}
		if (!matched)
			return mb_cli_usage_error("power", "unknown argument '%s'", argv[i]);
	}

	if (a.baseline && (a.sd || a.discordant))
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
	if (!a.baseline && !a.sd == !a.discordant)
		return mb_cli_usage_error("power", "%s",
					  a.sd ? "--sd and --discordant: give only one"
					       : "--sd or --discordant: one is required (or "
						 "--baseline FILE --metric NAME)");
	if (a.delta && a.n)
		return mb_cli_usage_error("power", "--delta and --n: give only one");
	if (!a.baseline && !a.delta && !a.n)
		return mb_cli_usage_error("power", "--delta or --n: one is required");
	if (a.baseline) {
		int64_t base_n = 0;
		if (a.delta && (rc = parse_number(&delta, a.delta, "--delta")) != 0)
			return rc;
		if ((rc = baseline_var(&o.var_d, &base_n, &a, delta)) != 0)
			return rc;
		n = base_n;
	} else if (a.sd) {
		if ((rc = parse_number(&x, a.sd, "--sd")) != 0)
			return rc;
		if (!(x > 0.0))
			return mb_cli_usage_error("power", "--sd: %s is not > 0", a.sd);
		o.var_d = x * x;
	} else {
		if ((rc = parse_number(&x, a.discordant, "--discordant")) != 0)
			return rc;
		if (!(x > 0.0 && x <= 1.0))
			return mb_cli_usage_error("power", "--discordant: %s is not in (0, 1]",
						  a.discordant);
		o.var_d = mb_stats_power_var_binary(x);
	}
	if (a.alpha) {
		if ((rc = parse_number(&o.alpha, a.alpha, "--alpha")) != 0)
			return rc;
		if (!(o.alpha > 0.0 && o.alpha < 1.0))
			return mb_cli_usage_error("power", "--alpha: %s is not in (0, 1)", a.alpha);
	}
	if (a.power) {
		if ((rc = parse_number(&o.power, a.power, "--power")) != 0)
			return rc;
		if (!(o.power > 0.0 && o.power < 1.0))
			return mb_cli_usage_error("power", "--power: %s is not in (0, 1)", a.power);
	}
	if (a.sides) {
		if (strcmp(a.sides, "1") != 0 && strcmp(a.sides, "2") != 0)
			return mb_cli_usage_error("power", "--sides: '%s' is not 1 or 2", a.sides);
		o.sides = a.sides[0] - '0';
	}
	if (a.deff) {
		if ((rc = parse_number(&o.deff, a.deff, "--deff")) != 0)
			return rc;
		if (!(o.deff > 0.0))
			return mb_cli_usage_error("power", "--deff: %s is not > 0", a.deff);
	}
	if (a.delta) {
		if ((rc = parse_number(&delta, a.delta, "--delta")) != 0)
			return rc;
		if (delta == 0.0)
			return mb_cli_usage_error("power", "--delta: must not be 0");
	} else if (a.n) {
		if (mb_parse_i64(a.n, 1, INT64_C(1000000000000000), &n, "--n", &err) < 0)
			return mb_cli_usage_error("power", "%s", err.msg);
	}
	if (mb_stats_power_check(&o, &err) < 0)
		return mb_cli_usage_error("power", "%s", err.msg);

	if (a.delta) {
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
