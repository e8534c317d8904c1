/*
 * drift.c: checkpoint series (drift.h). Legend: K checkpoints, N items of an
 * entry, M (entry, metric) pairs of the spec.
 */
#include <mechbench/drift.h>

#include <ctype.h>
#include <dirent.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mechbench/file.h>
#include <mechbench/gate.h>
#include <mechbench/sequential.h>
#include <mechbench/stats.h>
#include <mechbench/str.h>

/* --- checkpoints ------------------------------------------------------------------------ */

void mb_drift_checkpoints_free(mb_drift_checkpoint *c, size_t n)
{
	for (size_t i = 0; c && i < n; i++) {
		free(c[i].path);
		free(c[i].name);
	}
	free(c);
}

static int is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Natural order: runs of digits compare as numbers, the rest bytewise. */
static int natural_cmp(const char *a, const char *b)
{
	while (*a && *b) {
		if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
			const char *ea = a, *eb = b;
			size_t la, lb;
			while (*a == '0' && isdigit((unsigned char)a[1]))
				a++;
			while (*b == '0' && isdigit((unsigned char)b[1]))
				b++;
			for (ea = a; isdigit((unsigned char)*ea); ea++)
				;
			for (eb = b; isdigit((unsigned char)*eb); eb++)
				;
			la = (size_t)(ea - a);
			lb = (size_t)(eb - b);
			if (la != lb)
				return la < lb ? -1 : 1;
			for (size_t i = 0; i < la; i++)
				if (a[i] != b[i])
					return a[i] < b[i] ? -1 : 1;
			a = ea;
			b = eb;
		} else {
			if (*a != *b)
				return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
			a++;
			b++;
		}
	}
	return *a ? 1 : *b ? -1 : 0;
}

static int cmp_checkpoint(const void *pa, const void *pb)
{
	const mb_drift_checkpoint *a = pa, *b = pb;
	int c;
	if (a->has_step && b->has_step && a->step != b->step)
		return a->step < b->step ? -1 : 1;
	c = natural_cmp(a->name, b->name);
	return c ? c : strcmp(a->path, b->path);
}

static int add_checkpoint(mb_drift_checkpoint **list, size_t *n, const char *path, mb_error *err)
{
	mb_drift_checkpoint *nl = realloc(*list, (*n + 1) * sizeof(*nl));
	const char *slash;
	size_t len = strlen(path);
	char *trimmed;

	if (!nl)
		return mb_error_oom(err, "checkpoint list", (*n + 1) * sizeof(*nl));
	*list = nl;
	if (!(trimmed = mb_str_dup(path)))
		return mb_error_oom(err, "checkpoint path", len + 1);
	while (len > 1 && trimmed[len - 1] == '/')
		trimmed[--len] = '\0';
	slash = strrchr(trimmed, '/');
	memset(&nl[*n], 0, sizeof(*nl));
	nl[*n].path = trimmed;
	nl[*n].name = mb_str_dup(slash ? slash + 1 : trimmed);
	if (!nl[*n].name) {
		free(trimmed);
		return mb_error_oom(err, "checkpoint name", len + 1);
	}
	(*n)++;
	return 0;
}

/* Reads dir/training_state.json's "step" when the file exists. */
static int read_step(mb_drift_checkpoint *c, mb_error *err)
{
	char path[4096];
	mb_json_doc doc;
	int64_t step = 0;
	struct stat st;
	int error;

	if ((error = mb_file_path_join(path, sizeof(path), c->path, "training_state.json", err)) < 0)
		return error;
	if (stat(path, &st) != 0)
		return 0;
	if ((error = mb_json_doc_load(&doc, path, err)) < 0)
		return error;
	if (!json_is_object(doc.root))
		error = mb_json_field_error(&doc, err, MB_EINVALID, "", "expected an object");
	else
		error = mb_json_get_int(&doc, doc.root, "", "step", 1, 0, INT64_MAX, &step, err);
	mb_json_doc_dispose(&doc);
	if (error < 0)
		return error;
	c->has_step = 1;
	c->step = step;
	return 0;
}

/* The step in a revision name as Pythia publishes them ("step0",
 * "step143000": "step" then decimal digits, nothing else), into *step.
 * Returns 1 when name has that form. */
static int name_step(const char *name, int64_t *step)
{
	int64_t v = 0;
	const char *p = name + 4;

	if (strncmp(name, "step", 4) != 0 || !*p)
		return 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9' || v > (INT64_MAX - (*p - '0')) / 10)
			return 0;
		v = v * 10 + (*p - '0');
	}
	*step = v;
	return 1;
}

int mb_drift_discover(mb_drift_checkpoint **out, size_t *n, const char *dir_or_glob,
		      mb_error *err)
{
	mb_drift_checkpoint *list = NULL;
	size_t count = 0, with_step = 0;
	int error = 0;

	*out = NULL;
	*n = 0;
	if (strpbrk(dir_or_glob, "*?[")) {
		glob_t g;
		int rc = glob(dir_or_glob, GLOB_MARK, NULL, &g);
		if (rc != 0 && rc != GLOB_NOMATCH) {
			globfree(&g);
			return mb_error_set(err, MB_EIO, "%s: the pattern could not be expanded",
					    dir_or_glob);
		}
		for (size_t i = 0; rc == 0 && i < g.gl_pathc && !error; i++)
			if (is_dir(g.gl_pathv[i]))
				error = add_checkpoint(&list, &count, g.gl_pathv[i], err);
		globfree(&g);
	} else {
		DIR *d;
		struct dirent *de;
		if (!is_dir(dir_or_glob))
			return mb_error_set(err, MB_ENOTFOUND, "%s: not a folder of checkpoints (and "
					    "not a glob pattern)", dir_or_glob);
		if (!(d = opendir(dir_or_glob)))
			return mb_error_set(err, MB_EIO, "%s: cannot read the folder", dir_or_glob);
		while (!error && (de = readdir(d)) != NULL) {
			char path[4096];
			if (de->d_name[0] == '.')
				continue;
			if ((error = mb_file_path_join(path, sizeof(path), dir_or_glob, de->d_name,
						       err)) < 0)
				break;
			if (is_dir(path))
				error = add_checkpoint(&list, &count, path, err);
		}
		closedir(d);
	}
	if (error < 0)
		goto fail;
	if (count == 0) {
		error = mb_error_set(err, MB_EINVALID, "%s: no checkpoint folders (an empty series)",
				     dir_or_glob);
		goto fail;
	}
	for (size_t i = 0; i < count; i++) {
		if ((error = read_step(&list[i], err)) < 0)
			goto fail;
		/* A revision folder named as Pythia's ("step1000") has that step
		 * unless its training_state.json says otherwise. */
		if (!list[i].has_step)
			list[i].has_step = name_step(list[i].name, &list[i].step);
		with_step += (size_t)list[i].has_step;
	}
	if (with_step != 0 && with_step != count) {
		for (size_t i = 0; i < count; i++)
			if (!list[i].has_step) {
				error = mb_error_set(err, MB_EINVALID, "%s: no training_state.json (nor a "
						     "name stepN), but other checkpoints of %s have a "
						     "step (order by step needs them all)",
						     list[i].path, dir_or_glob);
				goto fail;
			}
	}
	qsort(list, count, sizeof(*list), cmp_checkpoint);
	for (size_t i = 1; i < count; i++)
		if (list[i].has_step && list[i].step == list[i - 1].step) {
			error = mb_error_set(err, MB_EINVALID, "%s and %s: the same step %lld (from "
					     "training_state.json or the name)", list[i - 1].path,
					     list[i].path,
					     (long long)list[i].step);
			goto fail;
		}
	*out = list;
	*n = count;
	return 0;
fail:
	mb_drift_checkpoints_free(list, count);
	return error;
}

/* --- monitors --------------------------------------------------------------------------- */

int mb_drift_monitors(mb_drift_monitor **out, size_t *n, const mb_spec *spec,
		      const mb_run_result *reference, mb_error *err)
{
	size_t M = 0, k = 0;
	mb_drift_monitor *mon;
	double z = mb_stats_norm_ppf(1.0 - spec->alpha) + mb_stats_norm_ppf(spec->power);

	*out = NULL;
	*n = 0;
	for (size_t e = 0; e < spec->n_entries; e++)
		M += spec->entries[e].n_metrics;
	if (!(mon = calloc(M ? M : 1, sizeof(*mon))))
		return mb_error_oom(err, "monitors", M * sizeof(*mon));
	for (size_t e = 0; e < spec->n_entries; e++) {
		const mb_spec_entry *se = &spec->entries[e];
		const mb_entry_result *r = mb_run_result_entry(reference, se->name);
		for (size_t m = 0; m < se->n_metrics; m++, k++) {
			const mb_spec_metric *sm = &se->metrics[m];
			int im = r ? mb_entry_result_metric(r, sm->name) : -1;
			double floor_se = sm->margin / z, se2;
			if (im < 0) {
				free(mon);
				return mb_error_set(err, MB_EMISMATCH, "reference run %lld lacks %s/%s",
						    (long long)reference->id, se->name, sm->name);
			}
			snprintf(mon[k].entry, sizeof(mon[k].entry), "%s", se->name);
			snprintf(mon[k].metric, sizeof(mon[k].metric), "%s", sm->name);
			se2 = r->aggregates[im].se;
			se2 = isfinite(se2) ? se2 * se2 : 0;
			mon[k].theta0 = r->aggregates[im].mean;
			mon[k].sigma2 = fmax(se2, floor_se * floor_se);
			mon[k].tau2 = sm->margin * sm->margin;
			mon[k].alpha = spec->alpha;
		}
	}
	*out = mon;
	*n = M;
	return 0;
}

/* --- analysis --------------------------------------------------------------------------- */

const char *mb_drift_band_name(mb_drift_band b)
{
	switch (b) {
	case MB_DRIFT_REFERENCE: return "reference";
	case MB_DRIFT_INSIDE: return "inside";
	case MB_DRIFT_WORSE: return "worse";
	case MB_DRIFT_BETTER: return "better";
	}
	return "?";
}

double mb_drift_x(const mb_drift_result *r, size_t k)
{
	return r->has_steps ? (double)r->steps[k] : (double)k;
}

size_t mb_drift_phase_last(const mb_drift_result *r, const mb_drift_phases *p, size_t i)
{
	return (i + 1 < p->n_phases ? p->start[i + 1] : r->n_points) - 1;
}

void mb_drift_phase_range(const mb_drift_result *r, const mb_drift_phases *p, size_t i,
			  double *first, double *last)
{
	*first = mb_drift_x(r, p->start[i]);
	*last = mb_drift_x(r, mb_drift_phase_last(r, p, i));
}

void mb_drift_windows_summary(const mb_drift_result *r, size_t *missed, size_t *unjudged)
{
	size_t m = 0, u = 0;
	for (size_t i = 0; i < r->n_phases; i++)
		for (size_t b = 0; b + 1 < r->phases[i].n_phases; b++) {
			if (!r->phases[i].has_window[b])
				continue;
			if (!r->phases[i].located)
				u++;
			else if (!r->phases[i].in_window[b])
				m++;
		}
	if (missed)
		*missed = m;
	if (unjudged)
		*unjudged = u;
}

static void phases_dispose(mb_drift_phases *p)
{
	for (size_t i = 0; p->names && i < p->n_phases; i++)
		free(p->names[i]);
	free(p->names);
	free(p->entry);
	free(p->metric);
	free(p->start);
	free(p->has_window);
	free(p->windows);
	free(p->in_window);
}

void mb_drift_result_dispose(mb_drift_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_phases; i++)
		phases_dispose(&r->phases[i]);
	free(r->phases);
	for (size_t m = 0; m < r->n_metrics; m++) {
		free(r->metrics[m].entry);
		free(r->metrics[m].metric);
		free(r->metrics[m].points);
		free(r->metrics[m].changepoints);
	}
	free(r->metrics);
	for (size_t k = 0; r->checkpoints && k < r->n_points; k++)
		free(r->checkpoints[k]);
	free(r->checkpoints);
	free(r->steps);
	free(r->run_ids);
	memset(r, 0, sizeof(*r));
}

/* Locates the phases declared by sp (of entry se) on the trajectory of dm. */
static int locate_phases(mb_drift_phases *dp, const mb_drift_result *r, const char *entry,
			 const mb_spec_phases *sp, const mb_drift_metric *dm, mb_error *err)
{
	size_t K = r->n_points, B;
	double *x = NULL, *y = NULL; /* (K) */
	int error = 0;

	MB_ASSERT(sp->n_phases >= 2); /* spec.c: two or more names */
	B = sp->n_phases - 1;

	dp->entry = mb_str_dup(entry);
	dp->metric = mb_str_dup(sp->metric);
	dp->version = sp->version;
	dp->cost = sp->cost;
	dp->min_segment = sp->min_segment;
	dp->n_phases = sp->n_phases;
	dp->names = calloc(sp->n_phases, sizeof(*dp->names));
	dp->start = calloc(sp->n_phases, sizeof(*dp->start));
	dp->has_window = calloc(B, sizeof(*dp->has_window));
	dp->windows = calloc(B, sizeof(*dp->windows));
	dp->in_window = calloc(B, sizeof(*dp->in_window));
	x = malloc(K * sizeof(*x));
	y = malloc(K * sizeof(*y));
	if (!dp->entry || !dp->metric || !dp->names || !dp->start || !dp->has_window ||
	    !dp->windows || !dp->in_window || !x || !y) {
		error = mb_error_oom(err, "phases", K * sizeof(double));
		goto cleanup;
	}
	for (size_t i = 0; i < sp->n_phases; i++)
		if (!(dp->names[i] = mb_str_dup(sp->names[i]))) {
			error = mb_error_oom(err, "phase name", strlen(sp->names[i]));
			goto cleanup;
		}
	memcpy(dp->has_window, sp->has_window, B * sizeof(*dp->has_window));
	memcpy(dp->windows, sp->windows, B * sizeof(*dp->windows));
	dp->cost_value = NAN;
	if (K / sp->n_phases < sp->min_segment) {
		dp->not_located = "too few checkpoints";
		goto cleanup;
	}
	{
		double ymin = INFINITY, ymax = -INFINITY;
		for (size_t k = 0; k < K; k++) {
			x[k] = mb_drift_x(r, k);
			y[k] = dm->points[k].mean;
			ymin = fmin(ymin, y[k]);
			ymax = fmax(ymax, y[k]);
		}
		/* every split of a constant trajectory costs the same: the boundaries
		 * would be the tie-break's, not the data's */
		if (!(ymax > ymin)) {
			dp->not_located = "the trajectory is constant";
			goto cleanup;
		}
	}
	if ((error = mb_stats_segment(dp->start + 1, &dp->cost_value, x, y, K, B, sp->cost,
				      sp->min_segment, err)) < 0) {
		mb_error_prefix(err, "%s/%s: phases", entry, sp->metric);
		goto cleanup;
	}
	dp->located = 1;
	for (size_t b = 0; b < B; b++) {
		double step = x[dp->start[b + 1]];
		dp->in_window[b] = dp->has_window[b] && step >= (double)dp->windows[b][0] &&
				   step <= (double)dp->windows[b][1];
	}
cleanup:
	free(x);
	free(y);
	return error;
}

/* Changepoints of one metric's trajectory y (K). */
static int find_changepoints(mb_drift_metric *dm, const double *y, size_t K,
			     const mb_drift_opts *opts, mb_error *err)
{
	size_t min_seg = opts && opts->min_seg ? opts->min_seg : 2;
	size_t *cp = malloc(K * sizeof(*cp)), count = 0; /* (K) */
	double ymin = INFINITY, ymax = -INFINITY, best = -1;
	int error;

	dm->main_change = SIZE_MAX;
	if (!cp)
		return mb_error_oom(err, "changepoints", K * sizeof(*cp));
	for (size_t k = 0; k < K; k++) {
		ymin = fmin(ymin, y[k]);
		ymax = fmax(ymax, y[k]);
	}
	dm->penalty = opts && !isnan(opts->penalty) ? opts->penalty
						      : mb_stats_changepoint_penalty(y, K);
	if (isnan(dm->penalty)) {
		free(cp);
		return mb_error_oom(err, "changepoint penalty", K * sizeof(double));
	}
	/* A constant trajectory has no change; PELT with a zero penalty would
	 * be free to split it anywhere. */
	if (ymax > ymin) {
		if ((error = mb_stats_changepoints(cp, &count, y, K, dm->penalty, min_seg, err)) < 0) {
			free(cp);
			return error;
		}
	}
	dm->changepoints = calloc(count ? count : 1, sizeof(*dm->changepoints));
	if (!dm->changepoints) {
		free(cp);
		return mb_error_oom(err, "changepoints", count);
	}
	for (size_t c = 0; c < count; c++) {
		size_t lo = c ? cp[c - 1] : 0, mid = cp[c], hi = c + 1 < count ? cp[c + 1] : K;
		double before = mb_stats_mean(y + lo, mid - lo), after = mb_stats_mean(y + mid, hi - mid);
		dm->changepoints[c].index = mid;
		dm->changepoints[c].before = before;
		dm->changepoints[c].after = after;
		if (fabs(after - before) > best) {
			best = fabs(after - before);
			dm->main_change = c;
		}
	}
	dm->n_changepoints = count;
	free(cp);
	return 0;
}

int mb_drift_check_windows(const mb_spec *spec, int has_steps, mb_error *err)
{
	for (size_t i = 0; !has_steps && i < spec->n_entries; i++)
		for (size_t p = 0; p < spec->entries[i].n_phases; p++) {
			const mb_spec_phases *ph = &spec->entries[i].phases[p];
			for (size_t b = 0; b + 1 < ph->n_phases; b++)
				if (ph->has_window[b])
					return mb_error_set(err, MB_EINVALID,
							    "%s/%s: phases: windows are in training "
							    "steps, but the series' checkpoints have none "
							    "(no training_state.json \"step\")",
							    spec->entries[i].name, ph->metric);
		}
	return 0;
}

int mb_drift_analyze(mb_drift_result *out, const mb_spec *spec, const mb_run_result *runs,
		     size_t K, const int64_t *steps, const char *const *checkpoints,
		     const mb_drift_monitor *monitors, size_t n_monitors,
		     const mb_drift_opts *opts, mb_error *err)
{
	size_t M = 0;
	double *y = NULL; /* (K) one trajectory */
	mb_gate_result g;
	int gate_open = 0, error = 0;

	memset(out, 0, sizeof(*out));
	memset(&g, 0, sizeof(g));
	if (K == 0)
		return mb_error_set(err, MB_EINVALID, "%s: an empty series", spec->name);
	if ((error = mb_drift_check_windows(spec, steps != NULL, err)) < 0)
		return error;
	for (size_t e = 0; e < spec->n_entries; e++)
		M += spec->entries[e].n_metrics;
	out->n_points = K;
	out->alpha = spec->alpha;
	out->has_steps = steps != NULL;
	out->steps = calloc(K, sizeof(*out->steps));
	out->run_ids = calloc(K, sizeof(*out->run_ids));
	out->checkpoints = calloc(K, sizeof(*out->checkpoints));
	out->metrics = calloc(M ? M : 1, sizeof(*out->metrics));
	y = malloc(K * sizeof(*y));
	if (!out->steps || !out->run_ids || !out->checkpoints || !out->metrics || !y) {
		error = mb_error_oom(err, "drift result", K * sizeof(double));
		goto cleanup;
	}
	for (size_t k = 0; k < K; k++) {
		const char *label = checkpoints ? checkpoints[k]
				    : runs[k].n_entries ? runs[k].entries[0].model : "";
		out->steps[k] = steps ? steps[k] : (int64_t)k;
		out->run_ids[k] = runs[k].id;
		if (!(out->checkpoints[k] = mb_str_dup(label))) {
			error = mb_error_oom(err, "checkpoint label", strlen(label) + 1);
			goto cleanup;
		}
	}
	/* Every (entry, metric) of the spec, its stored aggregates and monitor. */
	for (size_t e = 0; e < spec->n_entries; e++) {
		const mb_spec_entry *se = &spec->entries[e];
		for (size_t m = 0; m < se->n_metrics; m++) {
			const mb_spec_metric *sm = &se->metrics[m];
			mb_drift_metric *dm = &out->metrics[out->n_metrics];
			size_t mi = 0;
			while (mi < n_monitors && (strcmp(monitors[mi].entry, se->name) != 0 ||
						   strcmp(monitors[mi].metric, sm->name) != 0))
				mi++;
			dm->entry = mb_str_dup(se->name);
			dm->metric = mb_str_dup(sm->name);
			dm->points = calloc(K, sizeof(*dm->points));
			out->n_metrics++;
			if (!dm->entry || !dm->metric || !dm->points) {
				error = mb_error_oom(err, "drift metric", K * sizeof(*dm->points));
				goto cleanup;
			}
			if (mi == n_monitors) {
				error = mb_error_set(err, MB_ENOTFOUND, "%s/%s: the series has no "
						     "monitor for this metric (was it added to the spec "
						     "after the series began?)", se->name, sm->name);
				goto cleanup;
			}
			dm->monitor = monitors[mi];
			dm->version = sm->version;
			dm->kind = sm->kind;
			dm->direction = sm->direction;
			dm->margin = sm->margin;
			dm->has_threshold = sm->has_threshold;
			dm->threshold = sm->threshold;
			dm->alarm = SIZE_MAX;
			for (size_t k = 0; k < K; k++) {
				const mb_entry_result *r = mb_run_result_entry(&runs[k], se->name);
				int im = r ? mb_entry_result_metric(r, sm->name) : -1;
				mb_drift_point *p = &dm->points[k];
				if (im < 0) {
					error = mb_error_set(err, MB_EMISMATCH, "%s (run %lld): no "
							     "metric %s/%s", out->checkpoints[k],
							     (long long)runs[k].id, se->name,
							     sm->name);
					goto cleanup;
				}
				p->mean = r->aggregates[im].mean;
				p->lo = r->aggregates[im].lo;
				p->hi = r->aggregates[im].hi;
				p->band = k ? MB_DRIFT_INSIDE : MB_DRIFT_REFERENCE;
				p->diff = p->diff_lo = p->diff_hi = k ? NAN : 0;
				p->p = 1;
				p->cs_lo = -INFINITY;
				p->cs_hi = INFINITY;
				y[k] = p->mean;
			}
			if ((error = find_changepoints(dm, y, K, opts, err)) < 0) {
				mb_error_prefix(err, "%s/%s", se->name, sm->name);
				goto cleanup;
			}
			{
				mb_stats_msprt ms;
				if ((error = mb_stats_msprt_init(&ms, dm->monitor.theta0,
								 dm->monitor.sigma2, dm->monitor.tau2,
								 dm->monitor.alpha, err)) < 0) {
					mb_error_prefix(err, "%s/%s: monitor", se->name, sm->name);
					goto cleanup;
				}
				for (size_t k = 1; k < K; k++) {
					mb_stats_msprt_update(&ms, y[k]);
					dm->points[k].p = ms.p;
					dm->points[k].cs_lo = ms.lo;
					dm->points[k].cs_hi = ms.hi;
					if (dm->alarm == SIZE_MAX && mb_stats_msprt_rejected(&ms))
						dm->alarm = k;
				}
			}
		}
	}
	/* The phases the spec declares, on the trajectories just read. */
	{
		size_t P = 0;
		for (size_t e = 0; e < spec->n_entries; e++)
			P += spec->entries[e].n_phases;
		if (P && !(out->phases = calloc(P, sizeof(*out->phases)))) {
			error = mb_error_oom(err, "phases", P * sizeof(*out->phases));
			goto cleanup;
		}
	}
	for (size_t e = 0; e < spec->n_entries; e++) {
		const mb_spec_entry *se = &spec->entries[e];
		for (size_t i = 0; i < se->n_phases; i++) {
			const mb_drift_metric *dm = NULL;
			for (size_t m = 0; m < out->n_metrics && !dm; m++)
				if (strcmp(out->metrics[m].entry, se->name) == 0 &&
				    strcmp(out->metrics[m].metric, se->phases[i].metric) == 0)
					dm = &out->metrics[m];
			out->n_phases++;
			if (!dm) {
				error = mb_error_set(err, MB_EINVALID, "%s/%s: phases of a metric the "
						     "entry does not list", se->name,
						     se->phases[i].metric);
				goto cleanup;
			}
			if ((error = locate_phases(&out->phases[out->n_phases - 1], out, se->name,
						   &se->phases[i], dm, err)) < 0)
				goto cleanup;
		}
	}
	/* The band: checkpoint k against the reference, as a gate would judge it. */
	for (size_t k = 1; k < K; k++) {
		if ((error = mb_gate_init(&g, spec, spec->name, "reference", "", "", err)) < 0)
			goto cleanup;
		gate_open = 1;
		for (size_t e = 0; e < spec->n_entries; e++) {
			const mb_spec_entry *se = &spec->entries[e];
			const mb_entry_result *base = mb_run_result_entry(&runs[0], se->name);
			const mb_entry_result *cand = mb_run_result_entry(&runs[k], se->name);
			if (!base || !cand) {
				error = mb_error_set(err, MB_EMISMATCH, "%s: no entry %s",
						     out->checkpoints[base ? k : 0], se->name);
				goto cleanup;
			}
			if ((error = mb_gate_compare_entry(&g, spec, se, base, cand, err)) < 0) {
				mb_error_prefix(err, "%s vs the reference %s", out->checkpoints[k],
						out->checkpoints[0]);
				goto cleanup;
			}
		}
		for (size_t r = 0; r < g.n_rows; r++) {
			const mb_gate_row *row = &g.rows[r];
			mb_drift_point *p = NULL;
			for (size_t m = 0; m < out->n_metrics && !p; m++)
				if (strcmp(out->metrics[m].entry, row->entry) == 0 &&
				    strcmp(out->metrics[m].metric, row->metric) == 0)
					p = &out->metrics[m].points[k];
			if (!p || !row->compared)
				continue;
			p->verdict = row->cmp.verdict;
			p->diff = row->cmp.diff.mean;
			p->diff_lo = row->cmp.diff.lo;
			p->diff_hi = row->cmp.diff.hi;
			p->band = row->cmp.verdict == MB_STATS_VERDICT_REGRESSED ? MB_DRIFT_WORSE
				  : row->cmp.verdict == MB_STATS_VERDICT_IMPROVED ? MB_DRIFT_BETTER
										   : MB_DRIFT_INSIDE;
			p->threshold_checked = row->threshold_checked;
			p->threshold_verdict = row->threshold_verdict;
		}
		mb_gate_dispose(&g);
		gate_open = 0;
	}
	/* The reference's own threshold test (a gate never judges a baseline). */
	for (size_t m = 0; m < out->n_metrics; m++) {
		mb_drift_metric *dm = &out->metrics[m];
		const mb_spec_entry *se = mb_spec_find_entry(spec, dm->entry);
		const mb_entry_result *r = mb_run_result_entry(&runs[0], dm->entry);
		mb_stats_estimate est;
		char stream[512];
		int im;
		if (!dm->has_threshold || !se || !r)
			continue;
		im = mb_entry_result_metric(r, dm->metric);
		snprintf(stream, sizeof(stream), "threshold/%s/%s/%s@%d", spec->suite, dm->entry,
			 dm->metric, dm->version);
		if ((error = mb_runner_estimate(&est, spec, se, r, (size_t)im, 1.0 - 2.0 * spec->alpha,
						stream, err)) < 0)
			goto cleanup;
		dm->points[0].threshold_checked = 1;
		dm->points[0].threshold_verdict = mb_stats_threshold_verdict(
			est.lo, est.hi, dm->threshold, (mb_stats_direction)dm->direction);
	}
cleanup:
	if (gate_open)
		mb_gate_dispose(&g);
	free(y);
	if (error < 0)
		mb_drift_result_dispose(out);
	return error;
}
