/* cmd_leaderboard.c: `mechbench leaderboard`, models by metrics from the store. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include <mechbench/html.h>
#include <mechbench/leaderboard.h>
#include <mechbench/report.h>
#include <mechbench/results.h>
#include <mechbench/store.h>

#include "series_cli.h"
#include "suite_cli.h"

typedef enum { FMT_MD, FMT_HTML, FMT_CSV, FMT_JSON } lb_format;

typedef struct lb_args {
	const char *db, *suite, *out;
	int format; /* index in formats[] */
	double alpha;
} lb_args;

static const char *const formats[] = {"md", "markdown", "html", "csv", "json", NULL};
static const lb_format format_of[] = {FMT_MD, FMT_MD, FMT_HTML, FMT_CSV, FMT_JSON};

static const mb_cli_opt lb_opts[] = {
	{MB_OPT(PATH, "--db", lb_args, db), .meta = "FILE", .def = "mechbench.db",
	 .help = "results database"},
	{MB_OPT(STRING, "--suite", lb_args, suite), .meta = "NAME", .help = "only this suite's runs"},
	{MB_OPT(ENUM, "--format", lb_args, format), .choices = formats, .def = "md",
	 .help = "markdown, html (a self-contained page), csv or json"},
	{MB_OPT(PATH, "--out", lb_args, out), .meta = "FILE",
	 .help = "write there instead of standard output"},
	{MB_OPT(DOUBLE, "--alpha", lb_args, alpha), .meta = "A", .range = "(0, 1)", .def = "0.05",
	 .help = "family-wise error of each metric's pairwise tests"},
};

static const mb_cli_cmd lb_cmd = {
	.name = "leaderboard",
	.opts = lb_opts,
	.n_opts = MB_CLI_N(lb_opts),
	.about =
	"Models by metrics from the results database: one table per (suite, entry), a\n"
	"row per stored run (a model), each metric's mean with its 95% CI and a rank\n"
	"interval. Ranks are simultaneous confidence intervals: every pair of rows is\n"
	"compared on the items they share (paired t, exact McNemar for binary metrics,\n"
	"a seeded bootstrap for ratio metrics), the p-values of each metric are\n"
	"Holm-adjusted, and a row's ranks are those consistent with every significant\n"
	"difference (Al Mohamad, Goeman & van Zwet 2022), so rows that do not differ\n"
	"significantly share ranks and two runs of one model tie. Every row carries its\n"
	"stamp (mechbench commit, spec blob, dataset sha256, model sha256) and the\n"
	"command that reproduces it.\n",
	.notes = "Exit codes: 0 done, 1 error, 2 usage.\n",
};


static int render(FILE *f, const void *arg, mb_error *err)
{
	const void *const *a = arg;
	const mb_leaderboard *lb = a[0];
	lb_format fmt = *(const lb_format *)a[1];
	json_t *doc;
	char *text;

	switch (fmt) {
	case FMT_MD:
		mb_leaderboard_markdown(f, lb);
		return 0;
	case FMT_CSV:
		mb_leaderboard_csv(f, lb);
		return 0;
	case FMT_HTML:
		return mb_leaderboard_html(f, lb, err);
	case FMT_JSON:
		doc = mb_leaderboard_json(lb);
		text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(17)) : NULL;
		json_decref(doc);
		if (!text)
			return mb_error_oom(err, "leaderboard JSON", 0);
		fputs(text, f);
		fputc('\n', f);
		free(text);
		return 0;
	}
	return 0;
}

int mb_cmd_leaderboard(int argc, char **argv)
{
	lb_args a = {0};
	mb_cli_parsed parsed;
	const char *db, *suite, *out;
	lb_format fmt;
	mb_leaderboard_opts lo = {0.05, 0, 0};
	mb_error err;
	mb_store *store = NULL;
	mb_store_opts so = {.readonly = 1};
	int64_t *ids = NULL;
	size_t n_ids = 0, n_runs = 0;
	mb_run_result *runs = NULL;
	mb_leaderboard lb;
	int rc, error = 0;

	if ((rc = mb_cli_parse(&parsed, &a, &lb_cmd, argc, argv)) != MB_CLI_GO)
		return rc;
	db = a.db;
	suite = a.suite;
	out = a.out;
	fmt = format_of[a.format];
	lo.alpha = a.alpha;
	mb_error_clear(&err);
	memset(&lb, 0, sizeof(lb));
	if ((error = mb_cli_check_outputs(&(mb_cli_path){"--out", out}, 1,
					  &(mb_cli_path){"--db", db}, 1, &err)) < 0)
		goto cleanup;
	if ((error = mb_store_open(&store, db, &so, &err)) < 0)
		goto cleanup;
	if ((error = mb_results_run_ids(&ids, &n_ids, store, suite, &err)) < 0)
		goto cleanup;
	if (n_ids == 0) {
		char **names = NULL, list[512];
		size_t n = 0, len = 0;
		if ((error = mb_results_suite_names(&names, &n, store, &err)) < 0)
			goto cleanup;
		list[0] = '\0';
		for (size_t i = 0; i < n && len < sizeof(list); i++)
			len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "",
						names[i]);
		mb_results_names_free(names, n);
		if (suite)
			error = mb_error_set(&err, MB_ENOTFOUND, "%s: no runs of suite '%s' (suites: "
					     "%s)", db, suite, n ? list : "none");
		else
			error = mb_error_set(&err, MB_ENOTFOUND, "%s: no runs stored yet", db);
		goto cleanup;
	}
	if (!(runs = calloc(n_ids, sizeof(*runs)))) {
		error = mb_error_oom(&err, "runs", n_ids);
		goto cleanup;
	}
	for (size_t i = 0; i < n_ids; i++) {
		if ((error = mb_store_get_run(&runs[i], store, ids[i], &err)) < 0)
			goto cleanup;
		n_runs = i + 1;
		for (size_t e = 0; e < runs[i].n_entries; e++)
			if ((error = mb_cli_strata_stored(&runs[i].entries[e], &runs[i].prov,
							  &err)) < 0)
				goto cleanup;
	}
	if ((error = mb_leaderboard_build(&lb, runs, n_runs, &lo, &err)) < 0)
		goto cleanup;
	{
		const void *arg[2] = {&lb, &fmt};
		if (out) {
			error = mb_html_write(out, render, arg, &err);
		} else {
			error = render(stdout, arg, &err);
			fflush(stdout);
		}
	}
cleanup:
	mb_leaderboard_dispose(&lb);
	for (size_t i = 0; i < n_runs; i++)
		mb_run_result_dispose(&runs[i]);
	free(runs);
	free(ids);
	mb_store_free(store);
	return error < 0 ? mb_cli_fail(&err) : MB_EXIT_OK;
}
