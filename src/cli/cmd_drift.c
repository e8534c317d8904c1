/* cmd_drift.c: `mechbench drift`, a suite over a checkpoint series. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mechbench/dataset.h>
#include <mechbench/dist.h>
#include <mechbench/drift.h>
#include <mechbench/figure.h>
#include <mechbench/html.h>
#include <mechbench/report.h>
#include <mechbench/results.h>
#include <mechbench/runner.h>
#include <mechbench/store.h>
#include <mechbench/str.h>

#include "series_cli.h"
#include "suite_cli.h"

/* Bytes of a series' name, with its NUL. */
#define MB_DRIFT_NAME_MAX 128

typedef struct drift_args {
	const char *suite, *series, *name, *db, *html, *json;
	mb_cli_list entries;
	double penalty, db_timeout;
	int64_t min_seg, threads;
	int append, fail_on_alarm, quiet;
} drift_args;

static const mb_cli_opt drift_opts[] = {
	{MB_OPT(PATH, "--suite", drift_args, suite), .meta = "FILE", .required = 1,
	 .help = "the suite spec (its margins and thresholds are the bands)"},
	{MB_OPT(STRING, "--series", drift_args, series), .meta = "DIR_OR_GLOB", .required = 1,
	 .help = "the checkpoints"},
	{MB_OPT(LIST, "--entry", drift_args, entries), .meta = "NAME", .repeat = 1,
	 .help = "drift only this entry of the suite (repeatable; default: every entry); "
		 "--append must name the same entries"},
	{MB_OPT(STRING, "--name", drift_args, name), .meta = "NAME",
	 .help = "the series' name in the database (default SUITE:DIR)"},
	{MB_OPT(FLAG, "--append", drift_args, append),
	 .help = "add the checkpoints not stored yet to an existing series (they must come "
		 "after its last one); without it an existing series is an error"},
	{MB_OPT(PATH, "--db", drift_args, db), .meta = "FILE", .def = "mechbench.db",
	 .help = "results database"},
	MB_CLI_OPT_DB_TIMEOUT(drift_args, db_timeout),
	{MB_OPT(PATH, "--html", drift_args, html), .meta = "FILE",
	 .help = "also write the self-contained HTML report of the series"},
	{MB_OPT(PATH, "--json", drift_args, json), .meta = "FILE",
	 .help = "also write the analysis as JSON"},
	MB_CLI_OPT_PENALTY(drift_args, penalty),
	MB_CLI_OPT_MIN_SEG(drift_args, min_seg),
	MB_CLI_OPT_THREADS(drift_args, threads),
	{MB_OPT(FLAG, "--fail-on-alarm", drift_args, fail_on_alarm),
	 .help = "exit 3 when a metric's monitor has alarmed"},
	{MB_OPT(FLAG, "--quiet", drift_args, quiet), .help = "no progress lines"},
};

static const mb_cli_cmd drift_cmd = {
	.name = "drift",
	.opts = drift_opts,
	.n_opts = MB_CLI_N(drift_opts),
	.about =
	"Runs a suite on every checkpoint of a series and stores each run in the\n"
	"results database as one series (table series_points), each checkpoint in one\n"
	"transaction with its figures. Checkpoints are the sub-folders of DIR (or the\n"
	"folders a quoted glob matches), ordered by the \"step\" of their\n"
	"training_state.json, else by the N of a folder named stepN (Pythia's\n"
	"revisions: step0 ... step143000), else by name. Checkpoint 0 is the\n"
	"reference. For every\n"
	"metric it then reports the changepoints of its trajectory (PELT), each\n"
	"checkpoint that left the band the spec registers (its margin around the\n"
	"reference, judged like `gate`, and its threshold), and an always-valid\n"
	"monitor (mSPRT) whose alarm stays valid however often the series is checked.\n"
	"When the spec declares phases for a metric (\"phases\" in a task entry), the\n"
	"trajectory is split into exactly those phases (the exact least-squares\n"
	"segmentation, a line or a level per phase) and each phase's steps are\n"
	"reported; a boundary outside its pre-registered window fails the run.\n",
	.notes =
	"Exit codes: 0 done, 1 error, 2 usage, 3 a phase boundary outside its\n"
	"registered window (or an alarm with --fail-on-alarm), 4 a registered window\n"
	"that could not be judged (too few checkpoints to locate the phases).\n",
};

/* Runs every entry of the spec on the checkpoint at path into entries[i]
 * (*n_done of them) and their figures into figs[i]; root is the spec's (its
 * entries' path params are joined with it). */
static int compute_entries(mb_entry_result *entries, size_t *n_done, mb_figure_list *figs,
			   const mb_spec *spec, const char *root, const mb_dataset *datasets,
			   const char *path, const mb_runner_opts *opts, mb_error *err)
{
	int error = 0;

	for (size_t i = 0; i < spec->n_entries && !error; i++) {
		const mb_spec_entry *e = &spec->entries[i];
		if ((error = mb_runner_run_entry(&entries[i], spec, e, &datasets[i], root, path,
						 path, opts, err)) < 0)
			break;
		*n_done = i + 1;
		error = mb_figure_compute(&figs[i], e->task, root, path, e->params,
					  datasets[i].items.items, datasets[i].items.n,
					  entries[i].values, err);
	}
	return error;
}

/* Runs one checkpoint (or, with owner > 0, receives it whole from MPI rank
 * owner), then stores its run, figures and series point (and, for the first
 * point, the series and its monitors) in one short transaction after the
 * work, so parallel writers share the database. */
static int run_checkpoint(mb_store *store, const mb_spec *spec, const char *root,
			  const mb_dataset *datasets, const mb_provenance *base,
			  const mb_drift_checkpoint *c, size_t ordinal,
			  const char *series, const mb_results_series *create, const mb_runner_opts *opts,
			  int owner, int64_t *out_id, mb_error *err)
{
	mb_run_result run;
	mb_provenance prov = *base, fresh;
	mb_figure_list *figs = NULL;
	double started = mb_runner_now();
	int64_t id = 0;
	int error = 0, in_tx = 0;

	memset(&run, 0, sizeof(run));
	mb_provenance_init(&fresh, opts->threads);
	memcpy(prov.started_at, fresh.started_at, sizeof(prov.started_at));
	run.prov = prov;
	if (!(run.entries = calloc(spec->n_entries, sizeof(*run.entries))) ||
	    !(figs = calloc(spec->n_entries, sizeof(*figs)))) {
		error = mb_error_oom(err, "run entries", spec->n_entries);
		goto cleanup;
	}
	if (owner > 0)
		error = mb_dist_recv_unit(run.entries, &run.n_entries, figs, owner, spec, datasets,
					  c->path, err);
	else
		error = compute_entries(run.entries, &run.n_entries, figs, spec, root, datasets,
					c->path, opts, err);
	if (error < 0)
		goto cleanup;
	mb_provenance_finish(&run.prov, started);
	if ((error = mb_store_run_begin(store, &id, &run.prov, err)) < 0)
		goto cleanup;
	in_tx = 1;
	run.id = id;
	for (size_t i = 0; i < spec->n_entries; i++)
		if ((error = mb_store_run_put_entry(store, id, &run.entries[i], err)) < 0 ||
		    (error = mb_results_put_figures(store, id, spec->entries[i].name, &figs[i],
						    err)) < 0)
			goto cleanup;
	if (create) {
		mb_drift_monitor *mon = NULL;
		size_t n_mon = 0;
		if ((error = mb_results_series_put(store, create, err)) < 0 ||
		    (error = mb_drift_monitors(&mon, &n_mon, spec, &run, err)) < 0)
			goto cleanup;
		for (size_t i = 0; i < n_mon && error == 0; i++) {
			mb_results_monitor rm = {mon[i].entry, mon[i].metric, mon[i].theta0,
						 mon[i].sigma2, mon[i].tau2, mon[i].alpha};
			error = mb_results_series_put_monitor(store, create->name, &rm, err);
		}
		free(mon);
		if (error < 0)
			goto cleanup;
	}
	{
		mb_results_point p = {ordinal, c->has_step, c->step, c->path, id};
		if ((error = mb_results_series_put_point(store, series, &p, err)) < 0)
			goto cleanup;
	}
	error = mb_store_run_commit(store, id, &run.prov, err);
cleanup:
	if (error < 0 && in_tx)
		mb_store_run_abort(store);
	else if (error == 0)
		*out_id = id;
	for (size_t i = 0; figs && i < spec->n_entries; i++)
		mb_figure_list_dispose(&figs[i]);
	free(figs);
	mb_run_result_dispose(&run);
	return error;
}

/* Computes the checkpoint at path and sends it (or its error) to rank 0. */
static int send_checkpoint(const mb_spec *spec, const char *root, const mb_dataset *datasets,
			   const char *path, const mb_runner_opts *opts, mb_error *err)
{
	mb_entry_result *entries = calloc(spec->n_entries ? spec->n_entries : 1, sizeof(*entries));
	mb_figure_list *figs = calloc(spec->n_entries ? spec->n_entries : 1, sizeof(*figs));
	size_t done = 0;
	int error = entries && figs ? 0 : mb_error_oom(err, "checkpoint entries", spec->n_entries);

	if (error == 0)
		error = compute_entries(entries, &done, figs, spec, root, datasets, path, opts,
					err);
	error = mb_dist_send_unit(path, entries, figs, done, error, err);
	for (size_t i = 0; i < spec->n_entries; i++) {
		if (entries)
			mb_entry_result_dispose(&entries[i]);
		if (figs)
			mb_figure_list_dispose(&figs[i]);
	}
	free(entries);
	free(figs);
	return error;
}

/* An MPI rank other than 0 (dist.h): runs its share of the items of every
 * checkpoint rank 0 runs, in the same order; rank 0 stores and analyses. */
static int follow_rank0(const mb_spec *spec, const char *root, const mb_runner_opts *opts,
			mb_error *err)
{
	char **paths = NULL;
	size_t n = 0;
	mb_dataset *datasets = calloc(spec->n_entries ? spec->n_entries : 1, sizeof(*datasets));
	int error = 0;

	if (!datasets)
		return mb_error_oom(err, "datasets", spec->n_entries);
	if ((error = mb_dist_bcast_strings(&paths, &n, err)) < 0)
		goto cleanup;
	for (size_t e = 0; n && e < spec->n_entries && !error; e++)
		error = mb_runner_load_dataset(&datasets[e], &spec->entries[e], root, err);
	if (mb_dist_whole_units(n)) {
		/* whole checkpoints: this rank's, computed and sent to rank 0 */
		mb_runner_opts whole = *opts;
		whole.split = NULL;
		whole.progress = 0;
		/* one message per checkpoint, also after a failure (rank 0 drains them) */
		for (size_t c = (size_t)mb_dist_rank(); c < n; c += (size_t)mb_dist_size())
			if (error == 0)
				error = send_checkpoint(spec, root, datasets, paths[c], &whole,
							err);
			else
				mb_dist_send_unit(paths[c], NULL, NULL, 0, error, err);
		goto cleanup;
	}
	for (size_t c = 0; c < n && !error; c++)
		for (size_t i = 0; i < spec->n_entries && !error; i++) {
			mb_entry_result share;
			error = mb_runner_run_entry(&share, spec, &spec->entries[i], &datasets[i],
						    root, paths[c], paths[c], opts, err);
			mb_entry_result_dispose(&share);
		}
cleanup:
	for (size_t e = 0; e < spec->n_entries; e++)
		mb_dataset_dispose(&datasets[e]);
	free(datasets);
	mb_dist_strings_free(paths, n);
	return error;
}

/* Replaces the series' stored phases by those just located. */
static int store_phases(mb_store *store, const char *series, const mb_drift_result *r,
			mb_error *err)
{
	size_t n = 0, w = 0;
	mb_results_phase *rows;
	int error;

	for (size_t i = 0; i < r->n_phases; i++)
		n += r->phases[i].located ? r->phases[i].n_phases : 0;
	if (!(rows = calloc(n ? n : 1, sizeof(*rows))))
		return mb_error_oom(err, "phase rows", n * sizeof(*rows));
	for (size_t i = 0; i < r->n_phases; i++) {
		const mb_drift_phases *p = &r->phases[i];
		for (size_t k = 0; p->located && k < p->n_phases; k++, w++) {
			mb_results_phase *row = &rows[w];
			row->entry = p->entry;
			row->metric = p->metric;
			row->version = p->version;
			row->name = p->names[k];
			row->cost = mb_stats_cost_name(p->cost);
			row->phase = k;
			row->first_point = p->start[k];
			row->has_step = r->has_steps;
			row->first_step = r->steps[p->start[k]];
			row->last_step = r->steps[mb_drift_phase_last(r, p, k)];
			row->has_window = k > 0 && p->has_window[k - 1];
			row->window_first = row->has_window ? p->windows[k - 1][0] : 0;
			row->window_last = row->has_window ? p->windows[k - 1][1] : 0;
			row->window_met = row->has_window ? p->in_window[k - 1] : -1;
			row->n_points = r->n_points;
		}
	}
	error = mb_results_series_put_phases(store, series, rows, n, err);
	free(rows);
	return error;
}

/* With --append: the entries the spec keeps (--entry) must be those the
 * series holds, the entries of its first checkpoint's run. */
static void add_name(char *list, size_t cap, const char *name)
{
	size_t at = strlen(list);
	snprintf(list + at, cap - at, "%s%s", at ? ", " : "", name);
}

static int check_series_entries(mb_store *store, const mb_results_point *first,
				const mb_spec *spec, const char *db, const char *name,
				mb_error *err)
{
	mb_run_result run;
	char have[512] = "", want[512] = "";
	int error, same;

	if ((error = mb_store_get_run(&run, store, first->run_id, err)) < 0)
		return error;
	same = run.n_entries == spec->n_entries;
	for (size_t i = 0; i < run.n_entries; i++) {
		same = same && mb_spec_find_entry(spec, run.entries[i].name) != NULL;
		add_name(have, sizeof(have), run.entries[i].name);
	}
	for (size_t i = 0; i < spec->n_entries; i++)
		add_name(want, sizeof(want), spec->entries[i].name);
	if (!same)
		error = mb_error_set(err, MB_EMISMATCH, "%s: series '%s' holds entries %s, not %s: "
				     "append with --entry for exactly those, or start a new series "
				     "with --name", db, name, have, want);
	mb_run_result_dispose(&run);
	return error;
}

static int drift(const drift_args *a, const mb_cli_parsed *parsed)
{
	const char *suite, *series, *db, *html, *json;
	mb_store_opts so = {0};
	int error = 0, exit_code = MB_EXIT_OK;
	mb_error err;
	mb_cli_spec_home home;
	mb_spec spec;
	mb_provenance prov;
	mb_store *store = NULL;
	mb_drift_checkpoint *cks = NULL;
	size_t n_cks = 0, n_stored = 0, ran = 0;
	mb_results_series meta;
	mb_results_point *stored = NULL;
	mb_dataset *datasets = NULL;
	mb_cli_series_view view;
	mb_drift_opts dopts;
	mb_runner_opts ropts;
	char name[MB_DRIFT_NAME_MAX];
	int exists = 0, whole = 0;
	json_t *doc = NULL;

	suite = a->suite;
	series = a->series;
	db = a->db;
	html = a->html;
	json = a->json;
	dopts = mb_cli_series_opts(parsed, &drift_cmd, a->penalty, a->min_seg);
	mb_cli_db_timeout(&so, a->db_timeout);
	mb_error_clear(&err);

	memset(&spec, 0, sizeof(spec));
	memset(&meta, 0, sizeof(meta));
	memset(&view, 0, sizeof(view));
	if ((error = mb_cli_spec_home_open(&home, suite, 0, &err)) < 0)
		return mb_cli_fail(&err);
	if ((error = mb_spec_parse(&spec, home.text, home.len, suite, &err)) < 0)
		goto cleanup;
	if (a->entries.n &&
	    (error = mb_spec_keep_entries(&spec, a->entries.v, a->entries.n, &err)) < 0)
		goto cleanup;
	{
		const mb_cli_path outs[] = {{"--html", html}, {"--json", json}};
		const mb_cli_path ins[] = {{"--suite", suite}, {"--db", db}};
		if ((error = mb_cli_check_outputs(outs, 2, ins, 2, &err)) < 0)
			goto cleanup;
	}
	mb_provenance_init(&prov, (int)a->threads);
	if ((error = mb_cli_provenance_spec(&prov, &home, &spec, &err)) < 0)
		goto cleanup;
	if (a->name) {
		snprintf(name, sizeof(name), "%s", a->name);
	} else {
		size_t len;
		snprintf(name, sizeof(name), "%s:%s", spec.suite, series);
		len = strlen(name);
		while (len > 1 && name[len - 1] == '/')
			name[--len] = '\0';
	}
	if ((error = mb_drift_discover(&cks, &n_cks, series, &err)) < 0)
		goto cleanup;
	/* before anything is run or stored (mb_drift_analyze checks it too) */
	if ((error = mb_drift_check_windows(&spec, n_cks && cks[0].has_step, &err)) < 0)
		goto cleanup;
	memset(&ropts, 0, sizeof(ropts));
	ropts.threads = (int)a->threads;
	ropts.progress = mb_cli_want_progress(a->quiet);
	if (mb_dist_size() > 1)
		ropts.split = mb_dist_run_entry; /* every entry's items over the ranks */
	if (mb_dist_rank() != 0) {
		error = follow_rank0(&spec, home.root, &ropts, &err);
		goto cleanup;
	}
	if ((error = mb_store_open(&store, db, &so, &err)) < 0)
		goto cleanup;
	error = mb_results_series_get(&meta, store, name, &err);
	if (error == MB_ENOTFOUND) {
		error = 0;
	} else if (error < 0) {
		goto cleanup;
	} else {
		exists = 1;
		if (!a->append) {
			error = mb_error_set(&err, MB_EINVALID, "%s: series '%s' exists; pass --append "
					     "to add new checkpoints to it, or --name for a new series",
					     db, name);
			goto cleanup;
		}
		if (strcmp(meta.spec_blob, home.blob) != 0) {
			error = mb_error_set(&err, MB_EMISMATCH, "%s: series '%s' began under spec blob "
					     "%s, but %s is now %s: its bands would change; start a "
					     "new series with --name", db, name, meta.spec_blob, suite,
					     home.blob);
			goto cleanup;
		}
		if ((error = mb_results_series_points(&stored, &n_stored, store, name, &err)) < 0 ||
		    (n_stored && (error = check_series_entries(store, &stored[0], &spec, db, name,
							       &err)) < 0))
			goto cleanup;
	}
	/* Which checkpoints are new: those not stored by path; they must all
	 * follow the series' last stored checkpoint. */
	{
		size_t w = 0;
		for (size_t i = 0; i < n_cks; i++) {
			int seen = 0;
			for (size_t j = 0; j < n_stored && !seen; j++)
				seen = strcmp(stored[j].checkpoint, cks[i].path) == 0;
			if (seen) {
				free(cks[i].path);
				free(cks[i].name);
				continue;
			}
			cks[w++] = cks[i];
		}
		n_cks = w;
		if (n_stored && n_cks) {
			const mb_results_point *last = &stored[n_stored - 1];
			const mb_drift_checkpoint *first = &cks[0];
			int after = last->has_step && first->has_step ? first->step > last->step
				    : !last->has_step && !first->has_step;
			if (last->has_step != first->has_step || !after) {
				error = mb_error_set(&err, MB_EINVALID, "%s: not after the series' last "
						     "checkpoint %s (step %lld): a monitored series "
						     "only grows at its end", first->path,
						     last->checkpoint, (long long)last->step);
				goto cleanup;
			}
		}
	}
	if (mb_dist_size() > 1) {
		/* the other ranks run the same new checkpoints (follow_rank0) */
		char **paths = calloc(n_cks ? n_cks : 1, sizeof(*paths));
		size_t n_paths = n_cks;
		if (!paths) {
			error = mb_error_oom(&err, "checkpoint list", n_cks);
			goto cleanup;
		}
		for (size_t i = 0; i < n_cks; i++)
			paths[i] = cks[i].path;
		error = mb_dist_bcast_strings(&paths, &n_paths, &err);
		free(paths);
		if (error < 0)
			goto cleanup;
	}
	/* many checkpoints: each rank runs whole ones (mb_dist_whole_units) */
	whole = mb_dist_whole_units(n_cks);
	if (whole) {
		ropts.split = NULL;
		ropts.progress = 0;
	}
	if (n_cks && !(datasets = calloc(spec.n_entries, sizeof(*datasets)))) {
		error = mb_error_oom(&err, "datasets", spec.n_entries);
		goto cleanup;
	}
	for (size_t e = 0; n_cks && e < spec.n_entries; e++)
		if ((error = mb_runner_load_dataset(&datasets[e], &spec.entries[e], home.root,
						    &err)) < 0)
			goto cleanup;
	for (size_t i = 0; i < n_cks; i++) {
		mb_results_series create;
		int64_t id = 0;
		memset(&create, 0, sizeof(create));
		if (!exists && i == 0) {
			/* the series, its spec and monitors arrive with its first run */
			snprintf(create.name, sizeof(create.name), "%s", name);
			snprintf(create.suite, sizeof(create.suite), "%s", spec.suite);
			snprintf(create.spec_path, sizeof(create.spec_path), "%s", home.relpath);
			snprintf(create.spec_blob, sizeof(create.spec_blob), "%s", home.blob);
			snprintf(create.source, sizeof(create.source), "%s", series);
			mb_str_utc(create.created_at, sizeof(create.created_at), time(NULL));
			create.spec = home.text;
			create.spec_len = home.len;
		}
		error = run_checkpoint(store, &spec, home.root, datasets, &prov, &cks[i],
				       n_stored + i, name, !exists && i == 0 ? &create : NULL,
				       &ropts, whole ? (int)(i % (size_t)mb_dist_size()) : 0, &id,
				       &err);
		if (error < 0) {
			if (whole)
				mb_dist_drain_units(i, n_cks);
			goto cleanup;
		}
		ran++;
		if (!a->quiet) {
			if (cks[i].has_step)
				fprintf(stderr, "mechbench: checkpoint %zu/%zu (step %lld): run %lld\n",
					i + 1, n_cks, (long long)cks[i].step, (long long)id);
			else
				fprintf(stderr, "mechbench: checkpoint %zu/%zu (%s): run %lld\n", i + 1,
					n_cks, cks[i].name, (long long)id);
		}
	}
	if (ran == 0 && !a->quiet)
		fprintf(stderr, "mechbench: series '%s': no new checkpoints in %s\n", name, series);
	if ((error = mb_cli_series_view_load(&view, store, name, &dopts, &err)) < 0)
		goto cleanup;
	if ((error = store_phases(store, name, &view.drift, &err)) < 0)
		goto cleanup;
	mb_cli_series_print(stdout, &view);
	fflush(stdout);
	if (html && (error = mb_html_write(html, mb_cli_series_render_html, &view, &err)) < 0)
		goto cleanup;
	if (json) {
		doc = mb_cli_series_json(&view);
		error = doc ? mb_report_write_json(json, doc, &err) : mb_error_oom(&err, json, 0);
		if (error < 0)
			goto cleanup;
	}
	{
		size_t missed = 0, unjudged = 0;
		mb_drift_windows_summary(&view.drift, &missed, &unjudged);
		if (missed) {
			fprintf(stderr, "mechbench: drift: %zu phase boundar%s outside %s "
				"pre-registered window\n", missed, missed == 1 ? "y" : "ies",
				missed == 1 ? "its" : "their");
			exit_code = MB_EXIT_GATE_FAILED;
		} else if (unjudged) {
			fprintf(stderr, "mechbench: drift: %zu pre-registered phase window%s not "
				"judged: the phases were not located (too few checkpoints, or a constant "
				"trajectory)\n", unjudged,
				unjudged == 1 ? "" : "s");
			exit_code = MB_EXIT_INCONCLUSIVE;
		}
	}
	if (a->fail_on_alarm)
		for (size_t m = 0; m < view.drift.n_metrics; m++)
			if (view.drift.metrics[m].alarm != SIZE_MAX)
				exit_code = MB_EXIT_GATE_FAILED;
cleanup:
	json_decref(doc);
	mb_cli_series_view_dispose(&view);
	for (size_t e = 0; datasets && e < spec.n_entries; e++)
		mb_dataset_dispose(&datasets[e]);
	free(datasets);
	mb_results_points_free(stored, n_stored);
	mb_results_series_dispose(&meta);
	mb_drift_checkpoints_free(cks, n_cks);
	mb_store_free(store);
	mb_spec_dispose(&spec);
	mb_cli_spec_home_dispose(&home);
	return error < 0 ? mb_cli_fail(&err) : exit_code;
}

int mb_cmd_drift(int argc, char **argv)
{
	drift_args a = {0};
	mb_cli_parsed parsed;
	int rc;

	rc = mb_cli_parse(&parsed, &a, &drift_cmd, argc, argv);
	/* the series' name is a key in the database and a heading in reports:
	 * checked as the spec's names are, and never cut short */
	if (rc == MB_CLI_GO && a.name) {
		long bad = mb_str_find_control(a.name);
		if (!a.name[0])
			rc = mb_cli_usage_error("drift", "--name: must not be empty");
		else if (bad >= 0)
			rc = mb_cli_usage_error("drift", "--name: must not contain control "
						"characters (0x%02x at offset %ld)",
						(unsigned char)a.name[bad], bad);
		else if (strlen(a.name) >= MB_DRIFT_NAME_MAX)
			rc = mb_cli_usage_error("drift", "--name: %zu bytes; at most %d",
						strlen(a.name), MB_DRIFT_NAME_MAX - 1);
	}
	if (rc == MB_CLI_GO)
		rc = drift(&a, &parsed);
	mb_cli_args_dispose(&a, &drift_cmd);
	return rc;
}
