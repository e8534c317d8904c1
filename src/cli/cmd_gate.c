/*
 * cmd_gate.c: `mechbench gate`, a suite run judged against a baseline pinned
 * in git under the spec registered at the same ref.
 *
 * Order of work: resolve the ref; read the registered spec there (and note
 * how the working one deviates); read each entry's baseline there; check
 * versions, item sets and power BEFORE running anything; run the candidate;
 * compare; report; exit 0 / 3 / 4 (or 1 on any error).
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mechbench/baseline.h>
#include <mechbench/file.h>
#include <mechbench/gate.h>
#include <mechbench/gemm.h>
#include <mechbench/json.h>
#include <mechbench/report.h>
#include <mechbench/store.h>
#include <mechbench/str.h>

#include "suite_cli.h"

typedef struct gate_args {
	const char *suite, *ref, *model, *baseline, *db, *edited;
	const char *md, *junit, *json, *csv;
	int on_inconclusive, on_changed; /* index in policies[] */
	double db_timeout;
	int64_t threads;
	int strata, quiet;
} gate_args;

/* --on-inconclusive and --on-changed, in the order of policy_of[] */
static const char *const policies[] = {"exit4", "pass", "fail", NULL};
static const mb_gate_policy policy_of[] = {MB_GATE_POLICY_EXIT4, MB_GATE_POLICY_PASS,
					   MB_GATE_POLICY_FAIL};

static const mb_cli_opt gate_opts[] = {
	{MB_OPT(PATH, "--suite", gate_args, suite), .meta = "FILE", .required = 1,
	 .help = "the suite spec, inside a git work tree"},
	{MB_OPT(STRING, "--baseline-ref", gate_args, ref), .meta = "REF", .required = 1,
	 .help = "a commit, branch, tag, HEAD~1, or merge-base:REF (the merge base of HEAD and "
		 "REF, as a pull-request check)"},
	{MB_OPT(PATH, "--model", gate_args, model), .meta = "DIR",
	 .help = "the candidate model for every entry (default: each entry's \"model\")"},
	{MB_OPT(PATH, "--edited", gate_args, edited), .meta = "DIR",
	 .help = "an edited checkpoint (`mechbench edit`): every entry whose model is the "
		 "edit's base (the file digests its MANIFEST names) runs on it instead, paired "
		 "with that entry's baseline; the other entries run as registered"},
	{MB_OPT(PATH, "--baseline", gate_args, baseline), .meta = "PATH",
	 .help = "the baseline file at REF for every entry (default: each entry's "
		 "\"baseline\")"},
	{MB_OPT(PATH, "--db", gate_args, db), .meta = "FILE",
	 .help = "also store the candidate run and the verdicts"},
	MB_CLI_OPT_DB_TIMEOUT(gate_args, db_timeout),
	{MB_OPT(PATH, "--report-md", gate_args, md), .meta = "FILE",
	 .help = "markdown for a PR comment or $GITHUB_STEP_SUMMARY"},
	{MB_OPT(PATH, "--junit", gate_args, junit), .meta = "FILE",
	 .help = "JUnit XML, one testcase per metric"},
	{MB_OPT(PATH, "--json", gate_args, json), .meta = "FILE",
	 .help = "JSON report (schema in the README)"},
	{MB_OPT(PATH, "--csv", gate_args, csv), .meta = "FILE", .help = "CSV, one row per metric"},
	{MB_OPT(ENUM, "--on-inconclusive", gate_args, on_inconclusive), .choices = policies,
	 .def = "exit4", .help = "what INCONCLUSIVE does to the exit code"},
	{MB_OPT(ENUM, "--on-changed", gate_args, on_changed), .choices = policies, .def = "exit4",
	 .help = "the same for THRESHOLD-CHANGED and METRIC-CHANGED"},
	MB_CLI_OPT_THREADS(gate_args, threads),
	{MB_OPT(FLAG, "--strata", gate_args, strata),
	 .help = "also print every metric per stratum (the markdown and JSON reports always "
		 "carry the strata)"},
	MB_CLI_OPT_QUIET(gate_args, quiet),
};

static const mb_cli_cmd gate_cmd = {
	.name = "gate",
	.opts = gate_opts,
	.n_opts = MB_CLI_N(gate_opts),
	.about =
	"Runs the suite on the candidate model and compares it, item by item, with the\n"
	"baseline committed at REF, under the spec committed at REF (the\n"
	"pre-registration): the working tree's spec is never applied silently; if it\n"
	"differs, the affected metrics are THRESHOLD-CHANGED and the deviation is printed.\n"
	"Before running, a gate whose minimum detectable effect at the spec's n exceeds\n"
	"its margin is refused.\n",
	.notes =
	"Verdicts per metric (one-sided alpha, margin delta, CI of candidate - baseline\n"
	"oriented so higher is better): IDENTICAL (every item bitwise equal), IMPROVED\n"
	"(L > delta), PASS (L > -delta), REGRESSED (U < -delta), else INCONCLUSIVE.\n"
	"Absolute thresholds are tested on the CI bound, not the mean.\n"
	"Strata: each metric is also compared per stratum of its dataset. Strata the\n"
	"dataset recipe marks \"ood\" are OUT-OF-DISTRIBUTION: left out of the pooled\n"
	"value, judged on their own registered thresholds. A metric's per-stratum\n"
	"thresholds combine per the spec: \"all\" (a failing stratum fails the metric)\n"
	"or \"pooled\" (the pooled value decides; the failing stratum is reported).\n\n"
	"Exit codes: 0 pass; 1 error; 2 usage; 3 a metric REGRESSED or failed its\n"
	"threshold (pooled, or a stratum under combine \"all\"); 4 INCONCLUSIVE,\n"
	"THRESHOLD-CHANGED or METRIC-CHANGED (see the --on-* options).\n\n"
	"Edit safety: with --edited DIR every entry on the edited model's base is run on\n"
	"the edit and judged against the base's baseline: its own metrics against their\n"
	"thresholds and every other task on that model paired per item, so an edit that\n"
	"breaks another task is REGRESSED however good its edit metrics look.\n",
};

typedef struct report_files {
	const char *md, *junit, *json, *csv;
} report_files;

static void render_md(FILE *f, const void *g)
{
	mb_report_gate_markdown(f, g);
}

static void render_csv(FILE *f, const void *g)
{
	mb_report_gate_csv(f, g);
}

static void render_junit(FILE *f, const void *g)
{
	char ts[MB_STR_UTC_LEN], host[256];

	/* junit-4.xsd's timestamp pattern has no zone designator: drop the Z. */
	mb_str_utc(ts, sizeof(ts), time(NULL));
	ts[MB_STR_UTC_LEN - 2] = '\0';
	if (gethostname(host, sizeof(host)) != 0)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	mb_report_gate_junit(f, g, ts, host);
}

static int write_reports(const mb_gate_result *g, const report_files *rf, mb_error *err)
{
	int error = 0;
	json_t *doc;

	if (rf->md && (error = mb_report_write(rf->md, render_md, g, err)) < 0)
		return error;
	if (rf->junit && (error = mb_report_write(rf->junit, render_junit, g, err)) < 0)
		return error;
	if (rf->csv && (error = mb_report_write(rf->csv, render_csv, g, err)) < 0)
		return error;
	if (rf->json) {
		doc = mb_report_gate_json(g);
		error = doc ? mb_report_write_json(rf->json, doc, err)
			    : mb_error_oom(err, rf->json, 0);
		json_decref(doc);
	}
	return error;
}

/* The baselines named by the spec's entries, each file read once at the ref. */
typedef struct baseline_file {
	char path[1024];
	mb_run_result run;
} baseline_file;

static int load_baseline(mb_run_result **out, baseline_file *files, size_t *n_files,
			 mb_gate_result *g, mb_git *git, const char *ref, const char *commit,
			 const char *path, mb_error *err)
{
	char label[1400];
	char *text = NULL;
	size_t len;
	int error;

	for (size_t i = 0; i < *n_files; i++)
		if (strcmp(files[i].path, path) == 0) {
			*out = &files[i].run;
			return 0;
		}
	error = mb_git_read(&text, &len, NULL, git, commit, path, err);
	if (error == MB_ENOTFOUND)
		return mb_error_set(err, MB_ENOTFOUND, "baseline %s is not committed at %s (%.12s); "
				    "save one with `mechbench baseline save`, review it and commit "
				    "it", path, ref, commit);
	if (error < 0)
		return error;
	snprintf(label, sizeof(label), "%s:%s", ref, path);
	error = mb_baseline_parse(&files[*n_files].run, text, len, label, err);
	free(text);
	if (error < 0)
		return error;
	if (strcmp(files[*n_files].run.prov.spec_blob, g->spec_blob) != 0 &&
	    (error = mb_gate_note(g, err, "%s was made under spec blob %.12s, the spec "
				  "registered at %s is %.12s: re-baseline when the spec changes",
				  path, files[*n_files].run.prov.spec_blob, ref, g->spec_blob)) < 0) {
		mb_run_result_dispose(&files[*n_files].run);
		return error;
	}
	snprintf(files[*n_files].path, sizeof(files[*n_files].path), "%s", path);
	*out = &files[*n_files].run;
	(*n_files)++;
	return 0;
}

/* The registered dataset: the working tree's file when its sha256 is the
 * registered one, else the file as committed at the ref. */
static int load_dataset(mb_dataset *d, mb_gate_result *g, const mb_spec_entry *e,
			mb_cli_spec_home *home, const char *commit, mb_error *err)
{
	char label[1400];
	char *text = NULL;
	size_t len;
	int error = mb_runner_load_dataset(d, e, home->root, err);

	if (error != MB_EMISMATCH && error != MB_ENOTFOUND)
		return error;
	if (mb_git_read(&text, &len, NULL, home->git, commit, e->dataset, NULL) < 0)
		return error; /* keep the working tree's error: it names both sha256s */
	snprintf(label, sizeof(label), "%s:%s", g->ref, e->dataset);
	error = mb_dataset_parse(d, text, len, label, err);
	free(text);
	if (error == 0 && (error = mb_runner_check_dataset(d, e, err)) < 0)
		mb_dataset_dispose(d);
	if (error == 0)
		error = mb_gate_note(g, err, "%s: the working tree's %s is not the registered "
				     "dataset; used the one committed at %s", e->name, e->dataset,
				     g->ref);
	return error;
}

/* --edited: the base files named by DIR/MANIFEST ({"kind": "edit", "base":
 * {"files": {path: sha256}}}, as `mechbench edit` writes it). */
static int edited_load(mb_json_doc *doc, json_t **files, const char *dir, mb_error *err)
{
	char path[4096];
	json_t *kind, *base;
	int error;

	snprintf(path, sizeof(path), "%s/MANIFEST", dir);
	if ((error = mb_json_doc_load(doc, path, err)) < 0)
		return mb_error_prefix(err, "--edited");
	kind = json_object_get(doc->root, "kind");
	base = json_object_get(doc->root, "base");
	*files = base ? json_object_get(base, "files") : NULL;
	if (!json_is_string(kind) || strcmp(json_string_value(kind), "edit") != 0)
		return mb_json_field_error(doc, err, MB_EINVALID, "kind", "expected \"edit\": "
					   "--edited takes a checkpoint `mechbench edit` wrote");
	if (!json_is_object(*files) || json_object_size(*files) == 0)
		return mb_json_field_error(doc, err, MB_EINVALID, "base.files", "expected the base "
					   "model's file digests");
	return 0;
}

/* *match = 1 when the files of model folder dir are exactly base_files. */
static int edited_is_base(int *match, const json_t *base_files, const char *dir, mb_error *err)
{
	mb_file_digest *d = NULL;
	size_t n = 0;
	int error = mb_model_digest(&d, &n, dir, err);

	*match = 0;
	if (error < 0)
		return error;
	*match = n == json_object_size(base_files);
	for (size_t i = 0; *match && i < n; i++) {
		json_t *h = json_object_get(base_files, d[i].path);
		*match = json_is_string(h) && strcmp(json_string_value(h), d[i].sha256) == 0;
	}
	mb_file_digests_free(d, n);
	return 0;
}

int mb_cmd_gate(int argc, char **argv)
{
	gate_args a = {0};
	mb_cli_parsed parsed;
	const char *suite, *ref, *model, *baseline, *db;
	report_files rf = {0};
	mb_gate_policy p_inc, p_chg;
	int64_t threads;
	int rc, error = 0, code = MB_EXIT_ERROR;
	mb_error err;
	mb_cli_spec_home home;
	mb_spec reg, work;
	mb_gate_result g;
	mb_provenance prov;
	mb_run_result cand;
	mb_dataset *datasets = NULL;
	mb_json_doc edoc = {0};
	json_t *base_files = NULL;
	size_t n_edited = 0;
	mb_run_result **bases = NULL;
	baseline_file *files = NULL;
	size_t n_files = 0;
	mb_store *store = NULL;
	mb_store_opts so = {0};
	int64_t run_id = 0, gate_id = 0;
	char commit[MB_GIT_OID_HEX_LEN], blob[MB_GIT_OID_HEX_LEN], label[1400];
	char *reg_text = NULL;
	size_t reg_len = 0;
	double started;

	if ((rc = mb_cli_parse(&parsed, &a, &gate_cmd, argc, argv)) != MB_CLI_GO)
		return rc;
	suite = a.suite;
	ref = a.ref;
	model = a.model;
	baseline = a.baseline;
	db = a.db;
	rf = (report_files){a.md, a.junit, a.json, a.csv};
	p_inc = policy_of[a.on_inconclusive];
	p_chg = policy_of[a.on_changed];
	threads = a.threads;
	mb_cli_db_timeout(&so, a.db_timeout);
	mb_error_clear(&err);

	memset(&reg, 0, sizeof(reg));
	memset(&work, 0, sizeof(work));
	memset(&g, 0, sizeof(g));
	memset(&cand, 0, sizeof(cand));
	{
		const mb_cli_path outs[] = {{"--report-md", rf.md}, {"--junit", rf.junit},
					    {"--json", rf.json}, {"--csv", rf.csv}};
		const mb_cli_path ins[] = {{"--suite", suite}, {"--db", db}};
		if (mb_cli_check_outputs(outs, 4, ins, 2, &err) < 0)
			return mb_cli_fail(&err);
	}
	if (a.edited && model) {
		mb_error_set(&err, MB_EINVALID, "--edited and --model: give one (--edited picks the "
			     "entries on its base model)");
		return mb_cli_fail(&err);
	}
	if (a.edited && edited_load(&edoc, &base_files, a.edited, &err) < 0) {
		mb_json_doc_dispose(&edoc);
		return mb_cli_fail(&err);
	}
	if ((error = mb_cli_spec_home_open(&home, suite, 1, &err)) < 0) {
		mb_json_doc_dispose(&edoc);
		return mb_cli_fail(&err);
	}

	/* 1. The ref, and the spec registered there. */
	if ((error = mb_git_resolve(commit, home.git, ref, &err)) < 0) {
		mb_error_prefix(&err, "--baseline-ref");
		goto cleanup;
	}
	error = mb_git_read(&reg_text, &reg_len, blob, home.git, commit, home.relpath, &err);
	if (error == MB_ENOTFOUND)
		error = mb_error_set(&err, MB_ENOTFOUND, "%s is not committed at %s (%.12s): a "
				     "gate compares against the registered spec; commit it first",
				     home.relpath, ref, commit);
	if (error < 0)
		goto cleanup;
	snprintf(label, sizeof(label), "%s:%s", ref, home.relpath);
	if ((error = mb_spec_parse(&reg, reg_text, reg_len, label, &err)) < 0)
		goto cleanup;
	if ((error = mb_gate_init(&g, &reg, home.relpath, ref, commit, blob, &err)) < 0)
		goto cleanup;

	/* 2. The working spec's deviations: reported, never applied. */
	if (reg_len != home.len || memcmp(reg_text, home.text, reg_len) != 0) {
		mb_spec_deviation *dev = NULL;
		size_t n_dev = 0;
		if ((error = mb_spec_parse(&work, home.text, home.len, suite, &err)) < 0 ||
		    (error = mb_spec_diff(&dev, &n_dev, &reg, &work, &err)) < 0)
			goto cleanup;
		mb_gate_set_deviations(&g, dev, n_dev);
		if (n_dev == 0 && (error = mb_gate_note(&g, &err, "%s differs from %s only in "
							"layout; no field changed", suite,
							label)) < 0)
			goto cleanup;
	}

	/* 3. Baselines and datasets at the ref; versions, item sets, power. */
	datasets = calloc(reg.n_entries, sizeof(*datasets));
	bases = calloc(reg.n_entries, sizeof(*bases));
	files = calloc(reg.n_entries, sizeof(*files));
	if (!datasets || !bases || !files) {
		error = mb_error_oom(&err, "gate inputs", reg.n_entries * sizeof(*files));
		goto cleanup;
	}
	for (size_t i = 0; i < reg.n_entries; i++) {
		const mb_spec_entry *e = &reg.entries[i];
		const char *bpath = baseline ? baseline : e->baseline;
		const mb_entry_result *be;
		if (!bpath) {
			error = mb_error_set(&err, MB_EINVALID, "%s: entry %s names no baseline; pass "
					     "--baseline PATH", label, e->name);
			goto cleanup;
		}
		if ((error = load_baseline(&bases[i], files, &n_files, &g, home.git, ref, commit,
					   bpath, &err)) < 0)
			goto cleanup;
		be = mb_run_result_entry(bases[i], e->name);
		if (!be) {
			error = mb_error_set(&err, MB_ENOTFOUND, "%s:%s has no entry '%s'; save a "
					     "baseline that includes it", ref, bpath, e->name);
			goto cleanup;
		}
		if ((error = load_dataset(&datasets[i], &g, e, &home, commit, &err)) < 0 ||
		    (error = mb_gate_plan_entry(&g, &reg, e, be, &datasets[i], &err)) < 0)
			goto cleanup;
	}
	if ((error = mb_gate_check_power(&g, &err)) < 0)
		goto cleanup;

	/* 4. The candidate, stored in one transaction when --db is given. */
	mb_provenance_init(&prov, (int)threads);
	if ((error = mb_cli_provenance_spec(&prov, &home, &reg, &err)) < 0)
		goto cleanup;
	if (db && (error = mb_store_open(&store, db, &so, &err)) < 0)
		goto cleanup;
	cand.prov = prov;
	cand.entries = calloc(reg.n_entries, sizeof(*cand.entries));
	if (!cand.entries) {
		error = mb_error_oom(&err, "candidate", reg.n_entries);
		goto cleanup;
	}
	started = mb_runner_now();
	for (size_t i = 0; i < reg.n_entries; i++) {
		const mb_spec_entry *e = &reg.entries[i];
		mb_runner_opts opts = {.threads = (int)threads,
				       .progress = mb_cli_want_progress(a.quiet)};
		char mdir[4096];
		int on_edit = 0;

		if (model) {
			snprintf(mdir, sizeof(mdir), "%s", model);
		} else if (!e->model) {
			error = mb_error_set(&err, MB_EINVALID, "%s: entry %s names no model; pass "
					     "--model DIR", label, e->name);
			goto cleanup;
		} else if ((error = mb_file_path_join(mdir, sizeof(mdir), home.root, e->model, &err)) < 0) {
			goto cleanup;
		}
		if (base_files) {
			int match;

			if ((error = edited_is_base(&match, base_files, mdir, &err)) < 0)
				goto cleanup;
			if (match) {
				snprintf(mdir, sizeof(mdir), "%s", a.edited);
				on_edit = 1;
				n_edited++;
				if ((error = mb_gate_note(&g, &err, "%s: ran on the edited model %s "
							  "(its MANIFEST's base is %s)", e->name,
							  a.edited, e->model)) < 0)
					goto cleanup;
			}
		}
		if ((error = mb_runner_run_entry(&cand.entries[i], &reg, e, &datasets[i], home.root,
						 mdir,
						 model ? model : on_edit ? a.edited : e->model,
						 &opts, &err)) < 0)
			goto cleanup;
		cand.n_entries = i + 1;
		if ((error = mb_gate_compare_entry(&g, &reg, e, mb_run_result_entry(bases[i], e->name),
						   &cand.entries[i], &err)) < 0)
			goto cleanup;
	}
	if (base_files && n_edited == 0) {
		error = mb_error_set(&err, MB_ENOTFOUND, "--edited %s: no entry of %s runs on its "
				     "base model (the files its MANIFEST names)", a.edited, suite);
		goto cleanup;
	}
	mb_provenance_finish(&cand.prov, started);
	/* Say when the GEMM backend, BLAS core or ISA differ from a baseline's:
	 * that explains a PASS that is not IDENTICAL (or why it still is). */
	for (size_t i = 0; i < n_files; i++) {
		char why[900];

		if (mb_gemm_prov_diff(why, sizeof(why), files[i].run.prov.blas_config,
				      files[i].run.prov.blas_core, cand.prov.blas_config,
				      cand.prov.blas_core) &&
		    (error = mb_gate_note(&g, &err, "%s: %s", files[i].path, why)) < 0)
			goto cleanup;
	}
	mb_gate_finish(&g, p_inc, p_chg);
	if (store) {
		/* computed first, written in one short transaction (store.h) */
		if ((error = mb_store_put_run(store, &cand, &err)) < 0)
			goto cleanup;
		run_id = cand.id;
		g.run_id = run_id;
		if ((error = mb_store_put_gate(store, &gate_id, &g, &err)) < 0)
			goto cleanup;
	}

	/* 5. Reports and the verdict. */
	mb_report_gate_terminal(stdout, &g, mb_cli_want_color());
	if (a.strata)
		mb_report_gate_terminal_strata(stdout, &g, mb_cli_want_color());
	fflush(stdout);
	if ((error = write_reports(&g, &rf, &err)) < 0)
		goto cleanup;
	code = g.exit_code;
cleanup:
	if (error < 0)
		code = mb_cli_fail(&err);
	mb_store_free(store);
	for (size_t i = 0; datasets && i < reg.n_entries; i++)
		mb_dataset_dispose(&datasets[i]);
	free(datasets);
	for (size_t i = 0; i < n_files; i++)
		mb_run_result_dispose(&files[i].run);
	free(files);
	free(bases);
	mb_run_result_dispose(&cand);
	mb_gate_dispose(&g);
	mb_spec_dispose(&work);
	mb_spec_dispose(&reg);
	free(reg_text);
	mb_cli_spec_home_dispose(&home);
	mb_json_doc_dispose(&edoc);
	return code;
}
