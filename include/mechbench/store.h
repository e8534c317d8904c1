/*
 * store.h: the results store, one SQLite file (WAL mode).
 *
 * Every run is written in ONE transaction: mb_store_run_begin takes the
 * write lock (BEGIN IMMEDIATE) and inserts the run's row, each entry's rows
 * follow, and mb_store_run_commit commits. A run that dies before the commit
 * (error, SIGKILL, power loss) leaves nothing behind. Callers compute first
 * and write last, so the lock is held for the write alone (well under a
 * second for a canonical run): several processes can run suites against one
 * database at once; a writer waits up to the busy timeout (default 10
 * minutes) for another's lock.
 * The schema is versioned with PRAGMA user_version and brought forward by
 * migrations on open; it is documented for people who query it in the
 * README ("The results store").
 *
 * Errors name the database file: MB_EBUSY when another process holds the
 * lock longer than the busy timeout, MB_EIO for a read-only file or folder,
 * a full disk or an I/O error, MB_EINVALID for a file that is not a
 * mechbench database or has a newer schema.
 */
#ifndef MECHBENCH_STORE_H
#define MECHBENCH_STORE_H

#include <stdint.h>

#include <mechbench/error.h>
#include <mechbench/gate.h>
#include <mechbench/runner.h>

/* 1: runs, entries, model_files, aggregates, item_values, gates, comparisons;
 * 2: series, series_points, series_monitors, figures (results.h);
 * 3: series_phases (results.h);
 * 4: item values interned: metrics (id, entry, metric), items (id, item_key,
 *    stratum, cluster), item_value (run_id, metric_id, ordinal, item_id,
 *    value) WITHOUT ROWID, and the view item_values with the old columns;
 * 5: artifacts (run_id, entry, kind, data): an entry's artifact (artifact.h,
 *    the task's prepare hook), data its JSON text (compact, reals with 17
 *    significant digits, so it reads back bit for bit); no row when the
 *    entry has none. */
#define MB_STORE_SCHEMA_VERSION 5

/* How long a writer waits for another's lock by default: 10 minutes. */
#define MB_STORE_BUSY_TIMEOUT_MS 600000

typedef struct mb_store mb_store;

typedef struct mb_store_opts {
	int readonly;        /* open for reading only (no migrations, no writes) */
	int busy_timeout_ms; /* how long to wait for a lock; 0 means
			      * MB_STORE_BUSY_TIMEOUT_MS */
	int must_exist;      /* writable, but never create the file (upkeep of a
			      * database that should be there: `db`) */
} mb_store_opts;

/* Opens (creating when writable, absent and not opts->must_exist) the
 * database at path, sets WAL mode and migrates the schema. opts may be NULL.
 * *out is freed with mb_store_free. An absent file that is not created is
 * MB_EIO naming the path and the system's reason. */
int mb_store_open(mb_store **out, const char *path, const mb_store_opts *opts, mb_error *err);
void mb_store_free(mb_store *s);

/* The SQLite connection (borrowed) and the database's path, for the modules
 * that keep their own tables in the same file (results.h: series and
 * figures), so that their rows join a run's open transaction. */
struct sqlite3 *mb_store_sqlite(mb_store *s);
const char *mb_store_path(const mb_store *s);

/* Starts a run's transaction and inserts its row from p (finished_at and
 * wall_seconds are written at commit). *out_id is the new run's id. */
int mb_store_run_begin(mb_store *s, int64_t *out_id, const mb_provenance *p, mb_error *err);
/* Inserts one entry's rows (entry, model files, aggregates, item values,
 * artifact) into the open run transaction. */
int mb_store_run_put_entry(mb_store *s, int64_t run_id, const mb_entry_result *e,
			   mb_error *err);
/* Writes the finish time and commits. */
int mb_store_run_commit(mb_store *s, int64_t run_id, const mb_provenance *p, mb_error *err);
/* Rolls the open run transaction back (safe when none is open). */
void mb_store_run_abort(mb_store *s);

/* A whole run at once: begin, every entry, commit. Sets run->id. */
int mb_store_put_run(mb_store *s, mb_run_result *run, mb_error *err);

/* Reads run id back into *out (disposed with mb_run_result_dispose).
 * MB_ENOTFOUND when there is no such run; MB_EINVALID naming the run, entry
 * and field for a stored artifact that is not valid (mb_artifact_check). */
int mb_store_get_run(mb_run_result *out, mb_store *s, int64_t id, mb_error *err);

/* Records a gate's verdicts for the stored run g->run_id, in one
 * transaction. *out_id is the gate's id. */
int mb_store_put_gate(mb_store *s, int64_t *out_id, const mb_gate_result *g, mb_error *err);

/* What `mechbench db stats` prints: the file's size and free space, rows,
 * and the bytes the item values take (their tables and indexes, as
 * SQLite's dbstat counts pages) per stored value. */
typedef struct mb_store_stats {
	int schema_version;
	int64_t page_size, pages, free_pages;
	int64_t runs, series, item_values, items, metrics;
	int64_t item_value_bytes;    /* item_value + items + metrics, with indexes */
	int64_t table_bytes;         /* item_value alone */
	double bytes_per_item_value; /* item_value_bytes / item_values (NaN when none) */
} mb_store_stats;

int mb_store_stats_get(mb_store_stats *out, mb_store *s, mb_error *err);

/* VACUUM: rewrites the file without free pages (needs as much free disk as
 * the file; takes the write lock for its duration). */
int mb_store_vacuum(mb_store *s, mb_error *err);

#endif
