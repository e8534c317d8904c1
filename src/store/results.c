/*
 * results.c: series, figures and listings in the results store (results.h).
 * The schema migration to version 2 lives here, apart from store.c's own,
 * and store.c runs it in order with the others.
 */
#include <mechbench/results.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store_int.h"

const char mb_results_migration_v2[] =
	"CREATE TABLE series (\n"
	"  name       TEXT PRIMARY KEY,\n"
	"  suite      TEXT NOT NULL,\n"
	"  spec_path  TEXT NOT NULL,\n"
	"  spec_blob  TEXT NOT NULL,\n"
	"  spec       TEXT NOT NULL,\n"
	"  source     TEXT NOT NULL,\n"
	"  created_at TEXT NOT NULL\n"
	");\n"
	"CREATE TABLE series_points (\n"
	"  series     TEXT NOT NULL REFERENCES series(name) ON DELETE CASCADE,\n"
	"  ordinal    INTEGER NOT NULL,\n"
	"  step       INTEGER,\n"
	"  checkpoint TEXT NOT NULL,\n"
	"  run_id     INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
	"  PRIMARY KEY (series, ordinal)\n"
	");\n"
	"CREATE TABLE series_monitors (\n"
	"  series TEXT NOT NULL REFERENCES series(name) ON DELETE CASCADE,\n"
	"  entry  TEXT NOT NULL,\n"
	"  metric TEXT NOT NULL,\n"
	"  theta0 REAL NOT NULL,\n"
	"  sigma2 REAL NOT NULL,\n"
	"  tau2   REAL NOT NULL,\n"
	"  alpha  REAL NOT NULL,\n"
	"  PRIMARY KEY (series, entry, metric)\n"
	");\n"
	"CREATE TABLE figures (\n"
	"  run_id  INTEGER NOT NULL,\n"
	"  entry   TEXT NOT NULL,\n"
	"  name    TEXT NOT NULL,\n"
	"  ordinal INTEGER NOT NULL,\n"
	"  kind    TEXT NOT NULL,\n"
	"  data    TEXT NOT NULL,\n"
	"  PRIMARY KEY (run_id, entry, name),\n"
	"  FOREIGN KEY (run_id, entry) REFERENCES entries(run_id, entry) ON DELETE CASCADE\n"
	");\n";

const char mb_results_migration_v3[] =
	"CREATE TABLE series_phases (\n"
	"  series       TEXT NOT NULL REFERENCES series(name) ON DELETE CASCADE,\n"
	"  entry        TEXT NOT NULL,\n"
	"  metric       TEXT NOT NULL,\n"
	"  version      INTEGER NOT NULL,\n"
	"  phase        INTEGER NOT NULL,\n"
	"  name         TEXT NOT NULL,\n"
	"  cost         TEXT NOT NULL,\n"
	"  first_point  INTEGER NOT NULL,\n"
	"  first_step   INTEGER,\n"
	"  last_step    INTEGER,\n"
	"  window_first INTEGER,\n"
	"  window_last  INTEGER,\n"
	"  window_met   INTEGER,\n"
	"  n_points     INTEGER NOT NULL,\n"
	"  PRIMARY KEY (series, entry, metric, phase)\n"
	");\n";

/* --- helpers ---------------------------------------------------------------------------- */

static void in_transaction(mb_store *s)
{
	/* Writers join the caller's transaction; outside one they would commit
	 * on their own and could leave a half-written checkpoint behind. */
	MB_ASSERT(sqlite3_get_autocommit(mb_store_sqlite(s)) == 0);
}

void mb_results_names_free(char **names, size_t n)
{
	for (size_t i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
}

static int names_query(char ***out, size_t *n, mb_store *s, const char *sql, mb_error *err)
{
	sqlite3_stmt *st = NULL;
	char **names = NULL;
	size_t count = 0;
	int rc, error;

	*out = NULL;
	*n = 0;
	if ((error = mb_store_prepare(s, &st, sql, err)) < 0)
		return error;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		char **nn = realloc(names, (count + 1) * sizeof(*nn));
		if (!nn || !(nn[count] = mb_store_col_dup(st, 0))) {
			if (nn)
				names = nn;
			error = mb_error_oom(err, "names", 0);
			goto cleanup;
		}
		names = nn;
		count++;
	}
	if (rc != SQLITE_DONE)
		error = mb_store_fail(s, err, rc, "listing names");
cleanup:
	sqlite3_finalize(st);
	if (error < 0) {
		mb_results_names_free(names, count);
		return error;
	}
	*out = names;
	*n = count;
	return 0;
}

int mb_results_series_names(char ***out, size_t *n, mb_store *s, mb_error *err)
{
	return names_query(out, n, s, "SELECT name FROM series ORDER BY name", err);
}

int mb_results_suite_names(char ***out, size_t *n, mb_store *s, mb_error *err)
{
	return names_query(out, n, s, "SELECT DISTINCT suite FROM runs WHERE finished_at IS NOT"
			   " NULL ORDER BY suite", err);
}

/* "a, b, c" (or "none") into buf, for messages that list what exists. */
static void join_names(char *buf, size_t cap, char **names, size_t n)
{
	size_t len = 0;
	buf[0] = '\0';
	if (n == 0)
		snprintf(buf, cap, "none");
	for (size_t i = 0; i < n && len < cap; i++)
		len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", names[i]);
}

/* --- series ----------------------------------------------------------------------------- */

void mb_results_series_dispose(mb_results_series *sr)
{
	if (!sr)
		return;
	free(sr->spec);
	memset(sr, 0, sizeof(*sr));
}

int mb_results_series_get(mb_results_series *out, mb_store *s, const char *name, mb_error *err)
{
	sqlite3_stmt *st = NULL;
	int rc, error;

	memset(out, 0, sizeof(*out));
	if ((error = mb_store_prepare(s, &st, "SELECT name, suite, spec_path, spec_blob, spec, source,"
			     " created_at FROM series WHERE name = ?", err)) < 0)
		return error;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		char **names = NULL, list[512];
		size_t n = 0;
		sqlite3_finalize(st);
		if ((error = mb_results_series_names(&names, &n, s, err)) < 0)
			return error;
		join_names(list, sizeof(list), names, n);
		mb_results_names_free(names, n);
		return mb_error_set(err, MB_ENOTFOUND, "%s: no series '%s' (series: %s)",
				    mb_store_path(s), name, list);
	}
	if (rc != SQLITE_ROW) {
		error = mb_store_fail(s, err, rc, "reading a series");
		goto cleanup;
	}
	mb_store_col_into(out->name, sizeof(out->name), st, 0);
	mb_store_col_into(out->suite, sizeof(out->suite), st, 1);
	mb_store_col_into(out->spec_path, sizeof(out->spec_path), st, 2);
	mb_store_col_into(out->spec_blob, sizeof(out->spec_blob), st, 3);
	out->spec_len = (size_t)sqlite3_column_bytes(st, 4);
	out->spec = mb_store_col_dup(st, 4);
	mb_store_col_into(out->source, sizeof(out->source), st, 5);
	mb_store_col_into(out->created_at, sizeof(out->created_at), st, 6);
	if (!out->spec)
		error = mb_error_oom(err, "series spec", out->spec_len);
cleanup:
	sqlite3_finalize(st);
	if (error < 0)
		mb_results_series_dispose(out);
	return error;
}

int mb_results_series_put(mb_store *s, const mb_results_series *sr, mb_error *err)
{
	sqlite3_stmt *st = NULL;
	int error;

	in_transaction(s);
	if ((error = mb_store_prepare(s, &st, "INSERT INTO series (name, suite, spec_path, spec_blob, spec,"
			     " source, created_at) VALUES (?,?,?,?,?,?,?)", err)) < 0)
		return error;
	sqlite3_bind_text(st, 1, sr->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, sr->suite, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, sr->spec_path, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, sr->spec_blob, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, sr->spec ? sr->spec : "", (int)sr->spec_len, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, sr->source, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, sr->created_at, -1, SQLITE_STATIC);
	error = mb_store_step_done(s, st, "inserting a series", err);
	sqlite3_finalize(st);
	return error;
}

void mb_results_points_free(mb_results_point *p, size_t n)
{
	for (size_t i = 0; p && i < n; i++)
		free(p[i].checkpoint);
	free(p);
}

int mb_results_series_points(mb_results_point **out, size_t *n, mb_store *s, const char *name,
			     mb_error *err)
{
	sqlite3_stmt *st = NULL;
	mb_results_point *pts = NULL;
	size_t count = 0;
	int rc, error;

	*out = NULL;
	*n = 0;
	if ((error = mb_store_prepare(s, &st, "SELECT ordinal, step, checkpoint, run_id FROM series_points"
			     " WHERE series = ? ORDER BY ordinal", err)) < 0)
		return error;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		mb_results_point *np = realloc(pts, (count + 1) * sizeof(*np));
		if (!np) {
			error = mb_error_oom(err, "series points", 0);
			goto cleanup;
		}
		pts = np;
		memset(&pts[count], 0, sizeof(*pts));
		pts[count].ordinal = (size_t)sqlite3_column_int64(st, 0);
		pts[count].has_step = sqlite3_column_type(st, 1) != SQLITE_NULL;
		pts[count].step = sqlite3_column_int64(st, 1);
		pts[count].checkpoint = mb_store_col_dup(st, 2);
		pts[count].run_id = sqlite3_column_int64(st, 3);
		count++;
		if (!pts[count - 1].checkpoint) {
			error = mb_error_oom(err, "series points", 0);
			goto cleanup;
		}
		if (pts[count - 1].ordinal != count - 1) {
			error = mb_error_set(err, MB_EINVALID, "%s: series '%s': ordinals are not "
					     "0, 1, ... (found %zu at position %zu)",
					     mb_store_path(s), name, pts[count - 1].ordinal,
					     count - 1);
			goto cleanup;
		}
	}
	if (rc != SQLITE_DONE)
		error = mb_store_fail(s, err, rc, "reading series points");
cleanup:
	sqlite3_finalize(st);
	if (error < 0) {
		mb_results_points_free(pts, count);
		return error;
	}
	*out = pts;
	*n = count;
	return 0;
}

int mb_results_series_put_point(mb_store *s, const char *series, const mb_results_point *p,
				mb_error *err)
{
	sqlite3_stmt *st = NULL;
	int error;

	in_transaction(s);
	if ((error = mb_store_prepare(s, &st, "INSERT INTO series_points (series, ordinal, step, checkpoint,"
			     " run_id) VALUES (?,?,?,?,?)", err)) < 0)
		return error;
	sqlite3_bind_text(st, 1, series, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)p->ordinal);
	if (p->has_step)
		sqlite3_bind_int64(st, 3, p->step);
	else
		sqlite3_bind_null(st, 3);
	sqlite3_bind_text(st, 4, p->checkpoint, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, p->run_id);
	error = mb_store_step_done(s, st, "inserting a series point", err);
	sqlite3_finalize(st);
	return error;
}

void mb_results_monitors_free(mb_results_monitor *m, size_t n)
{
	for (size_t i = 0; m && i < n; i++) {
		free(m[i].entry);
		free(m[i].metric);
	}
	free(m);
}

int mb_results_series_monitors(mb_results_monitor **out, size_t *n, mb_store *s,
			       const char *name, mb_error *err)
{
	sqlite3_stmt *st = NULL;
	mb_results_monitor *ms = NULL;
	size_t count = 0;
	int rc, error;

	*out = NULL;
	*n = 0;
	if ((error = mb_store_prepare(s, &st, "SELECT entry, metric, theta0, sigma2, tau2, alpha FROM"
			     " series_monitors WHERE series = ? ORDER BY rowid", err)) < 0)
		return error;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		mb_results_monitor *nm = realloc(ms, (count + 1) * sizeof(*nm));
		if (!nm) {
			error = mb_error_oom(err, "series monitors", 0);
			goto cleanup;
		}
		ms = nm;
		memset(&ms[count], 0, sizeof(*ms));
		ms[count].entry = mb_store_col_dup(st, 0);
		ms[count].metric = mb_store_col_dup(st, 1);
		ms[count].theta0 = sqlite3_column_double(st, 2);
		ms[count].sigma2 = sqlite3_column_double(st, 3);
		ms[count].tau2 = sqlite3_column_double(st, 4);
		ms[count].alpha = sqlite3_column_double(st, 5);
		count++;
		if (!ms[count - 1].entry || !ms[count - 1].metric) {
			error = mb_error_oom(err, "series monitors", 0);
			goto cleanup;
		}
	}
	if (rc != SQLITE_DONE)
		error = mb_store_fail(s, err, rc, "reading series monitors");
cleanup:
	sqlite3_finalize(st);
	if (error < 0) {
		mb_results_monitors_free(ms, count);
		return error;
	}
	*out = ms;
	*n = count;
	return 0;
}

int mb_results_series_put_monitor(mb_store *s, const char *series, const mb_results_monitor *m,
				  mb_error *err)
{
	sqlite3_stmt *st = NULL;
	int error;

	in_transaction(s);
	if ((error = mb_store_prepare(s, &st, "INSERT INTO series_monitors (series, entry, metric, theta0,"
			     " sigma2, tau2, alpha) VALUES (?,?,?,?,?,?,?)", err)) < 0)
		return error;
	sqlite3_bind_text(st, 1, series, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, m->entry, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, m->metric, -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 4, m->theta0);
	sqlite3_bind_double(st, 5, m->sigma2);
	sqlite3_bind_double(st, 6, m->tau2);
	sqlite3_bind_double(st, 7, m->alpha);
	error = mb_store_step_done(s, st, "inserting a series monitor", err);
	sqlite3_finalize(st);
	return error;
}

int mb_results_series_put_phases(mb_store *s, const char *series, const mb_results_phase *rows,
				 size_t n, mb_error *err)
{
	sqlite3 *db = mb_store_sqlite(s);
	sqlite3_stmt *st = NULL;
	int rc, error = 0;

	MB_ASSERT(sqlite3_get_autocommit(db) != 0);
	if ((rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) != SQLITE_OK)
		return mb_store_fail(s, err, rc, "starting the phases' transaction");
	if ((error = mb_store_prepare(s, &st, "DELETE FROM series_phases WHERE series = ?", err)) < 0)
		goto cleanup;
	sqlite3_bind_text(st, 1, series, -1, SQLITE_STATIC);
	error = mb_store_step_done(s, st, "replacing the series' phases", err);
	sqlite3_finalize(st);
	st = NULL;
	if (error < 0 ||
	    (error = mb_store_prepare(s, &st, "INSERT INTO series_phases (series, entry, metric, version,"
			     " phase, name, cost, first_point, first_step, last_step, window_first,"
			     " window_last, window_met, n_points) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
			     err)) < 0)
		goto cleanup;
	for (size_t i = 0; i < n && error == 0; i++) {
		const mb_results_phase *p = &rows[i];
		sqlite3_bind_text(st, 1, series, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, p->entry, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, p->metric, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 4, p->version);
		sqlite3_bind_int64(st, 5, (sqlite3_int64)p->phase);
		sqlite3_bind_text(st, 6, p->name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 7, p->cost, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 8, (sqlite3_int64)p->first_point);
		if (p->has_step) {
			sqlite3_bind_int64(st, 9, p->first_step);
			sqlite3_bind_int64(st, 10, p->last_step);
		}
		if (p->has_window) {
			sqlite3_bind_int64(st, 11, p->window_first);
			sqlite3_bind_int64(st, 12, p->window_last);
		}
		if (p->window_met >= 0)
			sqlite3_bind_int(st, 13, p->window_met);
		sqlite3_bind_int64(st, 14, (sqlite3_int64)p->n_points);
		error = mb_store_step_done(s, st, "inserting a series phase", err);
	}
	if (error == 0 && (rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
		error = mb_store_fail(s, err, rc, "committing the series' phases");
cleanup:
	sqlite3_finalize(st);
	if (error < 0)
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return error;
}

/* --- figures ---------------------------------------------------------------------------- */

int mb_results_put_figures(mb_store *s, int64_t run_id, const char *entry,
			   const mb_figure_list *figs, mb_error *err)
{
	sqlite3_stmt *st = NULL;
	int error;

	in_transaction(s);
	if (figs->n == 0)
		return 0;
	if ((error = mb_store_prepare(s, &st, "INSERT INTO figures (run_id, entry, name, ordinal, kind, data)"
			     " VALUES (?,?,?,?,?,?)", err)) < 0)
		return error;
	for (size_t i = 0; i < figs->n; i++) {
		const mb_figure *f = &figs->items[i];
		json_t *doc = mb_figure_to_json(f);
		char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER |
						  JSON_REAL_PRECISION(17)) : NULL;
		json_decref(doc);
		if (!text) {
			error = mb_error_oom(err, "figure JSON", 0);
			break;
		}
		sqlite3_bind_int64(st, 1, run_id);
		sqlite3_bind_text(st, 2, entry, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, f->name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)i);
		sqlite3_bind_text(st, 5, mb_figure_kind_name(f->kind), -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 6, text, -1, SQLITE_TRANSIENT);
		error = mb_store_step_done(s, st, "inserting a figure", err);
		free(text);
		if (error < 0)
			break;
	}
	sqlite3_finalize(st);
	return error;
}

int mb_results_get_figures(mb_figure_list *out, mb_store *s, int64_t run_id, const char *entry,
			   mb_error *err)
{
	sqlite3_stmt *st = NULL;
	int rc, error;

	if ((error = mb_store_prepare(s, &st, "SELECT name, data FROM figures WHERE run_id = ? AND entry = ?"
			     " ORDER BY ordinal", err)) < 0)
		return error;
	sqlite3_bind_int64(st, 1, run_id);
	sqlite3_bind_text(st, 2, entry, -1, SQLITE_TRANSIENT);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *data = (const char *)sqlite3_column_text(st, 1);
		char label[512];
		json_error_t je;
		json_t *doc;
		snprintf(label, sizeof(label), "%s: run %lld entry %s figure %s", mb_store_path(s),
			 (long long)run_id, entry, (const char *)sqlite3_column_text(st, 0));
		doc = data ? json_loads(data, 0, &je) : NULL;
		if (!doc) {
			error = mb_error_set(err, MB_EINVALID, "%s: not JSON: %s", label,
					     data ? je.text : "NULL");
			goto cleanup;
		}
		error = mb_figure_list_add_json(out, doc, label, err);
		json_decref(doc);
		if (error < 0)
			goto cleanup;
	}
	if (rc != SQLITE_DONE)
		error = mb_store_fail(s, err, rc, "reading figures");
cleanup:
	sqlite3_finalize(st);
	return error;
}

/* --- runs ------------------------------------------------------------------------------- */

int mb_results_run_ids(int64_t **out, size_t *n, mb_store *s, const char *suite, mb_error *err)
{
	sqlite3_stmt *st = NULL;
	int64_t *ids = NULL;
	size_t count = 0;
	int rc, error;

	*out = NULL;
	*n = 0;
	if ((error = mb_store_prepare(s, &st, "SELECT id FROM runs WHERE finished_at IS NOT NULL AND"
			     " (?1 IS NULL OR suite = ?1) ORDER BY id", err)) < 0)
		return error;
	if (suite)
		sqlite3_bind_text(st, 1, suite, -1, SQLITE_TRANSIENT);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t *ni = realloc(ids, (count + 1) * sizeof(*ni));
		if (!ni) {
			error = mb_error_oom(err, "run ids", 0);
			goto cleanup;
		}
		ids = ni;
		ids[count++] = sqlite3_column_int64(st, 0);
	}
	if (rc != SQLITE_DONE)
		error = mb_store_fail(s, err, rc, "listing runs");
cleanup:
	sqlite3_finalize(st);
	if (error < 0) {
		free(ids);
		return error;
	}
	*out = ids;
	*n = count;
	return 0;
}
