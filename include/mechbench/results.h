/*
 * results.h: the results store beyond runs and gates (store.h): checkpoint
 * series for drift monitoring, the figures tasks attach to runs, and the
 * listings the leaderboard and the report read. Same SQLite file, same
 * connection (mb_store_sqlite); the tables arrive with schema version 2
 * (mb_results_migration_v2, run by store.c's migrations):
 *
 *   series          (name PK, suite, spec_path, spec_blob, spec, source, created_at)
 *                   spec: the registered spec's bytes when the series began,
 *                   so a report re-judges the series under the same bands.
 *   series_points   (series, ordinal, step, checkpoint, run_id), PK (series, ordinal):
 *                   the checkpoint order; step NULL when ordered by name.
 *   series_monitors (series, entry, metric, theta0, sigma2, tau2, alpha):
 *                   each metric's always-valid monitor (drift.h), fixed when
 *                   the series began.
 *   figures         (run_id, entry, name, ordinal, kind, data), PK (run_id, entry, name):
 *                   data is the figure's JSON (figure.h).
 *
 * and with schema version 3 (mb_results_migration_v3):
 *
 *   series_phases   (series, entry, metric, version, phase, name, cost, first_point,
 *                   first_step, last_step, window_first, window_last, window_met,
 *                   n_points), PK (series, entry, metric, phase): the phases drift
 *                   located (drift.h) when the series had n_points checkpoints;
 *                   phase 0, 1, ... in order; first_point the ordinal of its
 *                   first checkpoint; steps NULL when ordered by name; the window
 *                   registered for the boundary at the phase's start (NULL: none,
 *                   and always for phase 0) and whether it was met. Replaced as a
 *                   whole each time drift analyses the series.
 *
 * Writers (the _put functions) must run inside an open transaction (a run's,
 * mb_store_run_begin), so a checkpoint's run, figures and series point land
 * together or not at all; they assert it. Errors name the database file.
 */
#ifndef MECHBENCH_RESULTS_H
#define MECHBENCH_RESULTS_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/error.h>
#include <mechbench/figure.h>
#include <mechbench/store.h>

/* SQL of the schema migrations 1 -> 2 and 2 -> 3 (the tables above). */
extern const char mb_results_migration_v2[];
extern const char mb_results_migration_v3[];

typedef struct mb_results_series {
	char name[128];
	char suite[128];
	char spec_path[512];
	char spec_blob[41];
	char source[1024];    /* the --series argument */
	char created_at[32];  /* ISO 8601 UTC */
	char *spec;           /* owned: the registered spec's bytes */
	size_t spec_len;
} mb_results_series;

typedef struct mb_results_point {
	size_t ordinal;       /* 0, 1, ... in checkpoint order */
	int has_step;
	int64_t step;
	char *checkpoint;     /* owned: the model folder as run */
	int64_t run_id;
} mb_results_point;

typedef struct mb_results_monitor {
	char *entry, *metric; /* owned */
	double theta0, sigma2, tau2, alpha;
} mb_results_monitor;

typedef struct mb_results_phase {
	const char *entry, *metric, *name, *cost; /* borrowed */
	int version;
	size_t phase;         /* 0, 1, ... in order */
	size_t first_point;   /* ordinal of its first checkpoint */
	int has_step;
	int64_t first_step, last_step;
	int has_window;       /* a window registered for the boundary at its start */
	int64_t window_first, window_last;
	int window_met;       /* -1: not judged */
	size_t n_points;      /* the series' length when located */
} mb_results_phase;

/* Reads series `name`. MB_ENOTFOUND ("DB: no series NAME (series: a, b)")
 * when absent. *out is disposed with mb_results_series_dispose. */
int mb_results_series_get(mb_results_series *out, mb_store *s, const char *name, mb_error *err);
void mb_results_series_dispose(mb_results_series *sr);
/* Inserts the series row (spec copied from sr->spec). In a transaction. */
int mb_results_series_put(mb_store *s, const mb_results_series *sr, mb_error *err);

/* The series' points in ordinal order; *out (malloc'd, n of them) is freed
 * with mb_results_points_free. An unknown series has none. */
int mb_results_series_points(mb_results_point **out, size_t *n, mb_store *s, const char *name,
			     mb_error *err);
void mb_results_points_free(mb_results_point *p, size_t n);
int mb_results_series_put_point(mb_store *s, const char *series, const mb_results_point *p,
				mb_error *err);

int mb_results_series_monitors(mb_results_monitor **out, size_t *n, mb_store *s,
			       const char *name, mb_error *err);
void mb_results_monitors_free(mb_results_monitor *m, size_t n);
int mb_results_series_put_monitor(mb_store *s, const char *series, const mb_results_monitor *m,
				  mb_error *err);

/* Replaces the stored phases of series `series` by rows[0..n), in a
 * transaction of its own (so it must be called outside one): either the old
 * rows or the new ones are stored, never a mixture. */
int mb_results_series_put_phases(mb_store *s, const char *series, const mb_results_phase *rows,
				 size_t n, mb_error *err);

/* Every series name, sorted; *out (n strings) freed with mb_results_names_free. */
int mb_results_series_names(char ***out, size_t *n, mb_store *s, mb_error *err);
/* Every suite that has runs, sorted. */
int mb_results_suite_names(char ***out, size_t *n, mb_store *s, mb_error *err);
void mb_results_names_free(char **names, size_t n);

/* Stores figures of entry `entry` of run run_id, in list order. In a
 * transaction. */
int mb_results_put_figures(mb_store *s, int64_t run_id, const char *entry,
			   const mb_figure_list *figs, mb_error *err);
/* Appends the stored figures of (run_id, entry) to out, in stored order. */
int mb_results_get_figures(mb_figure_list *out, mb_store *s, int64_t run_id, const char *entry,
			   mb_error *err);

/* Ids of the finished runs (finished_at set) of `suite` (NULL: all), ascending.
 * *out is malloc'd (free()). */
int mb_results_run_ids(int64_t **out, size_t *n, mb_store *s, const char *suite, mb_error *err);

#endif
