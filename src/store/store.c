/*
 * store.c: the SQLite results store (store.h). Schema in `migrations`, one
 * entry per user_version; the README documents the tables.
 */
#include <mechbench/store.h>

#include <mechbench/artifact.h>
#include <mechbench/file.h>
#include <mechbench/results.h>
#include <mechbench/str.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "store_int.h"

struct mb_store {
	sqlite3 *db;
	char *path;
	int busy_ms;
	int in_run; /* a run transaction is open */
};

/* The runs table's columns, one per provenance field (provenance.h). */
#define RUNS_COLUMN(kind, name, size, at, sql) ",\n  " #name " " sql
#define COUNT_FIELD(kind, name, size, at, sql) +1
_Static_assert(0 MB_PROVENANCE_FIELDS(COUNT_FIELD) == MB_PROVENANCE_V1_FIELDS,
	       "migration 0 -> 1 creates the provenance columns of schema 1 alone: a new "
	       "field needs its own migration (ALTER TABLE runs ADD COLUMN)");

/* migrations[v] brings a database from user_version v to v + 1. Never edit a
 * released migration: append a new one and bump MB_STORE_SCHEMA_VERSION. */
static const char *const migrations[MB_STORE_SCHEMA_VERSION] = {
	/* 0 -> 1 */
	"CREATE TABLE runs (\n"
	"  id             INTEGER PRIMARY KEY"
	MB_PROVENANCE_FIELDS(RUNS_COLUMN)
	"\n);\n"
	"CREATE TABLE entries (\n"
	"  run_id         INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
	"  entry          TEXT NOT NULL,\n"
	"  ordinal        INTEGER NOT NULL,\n"
	"  task           TEXT NOT NULL,\n"
	"  task_version   INTEGER NOT NULL,\n"
	"  model          TEXT NOT NULL,\n"
	"  dataset        TEXT NOT NULL,\n"
	"  dataset_sha256 TEXT NOT NULL,\n"
	"  params         TEXT,\n"
	"  n_items        INTEGER NOT NULL,\n"
	"  seconds        REAL NOT NULL,\n"
	"  PRIMARY KEY (run_id, entry)\n"
	");\n"
	"CREATE TABLE model_files (\n"
	"  run_id INTEGER NOT NULL,\n"
	"  entry  TEXT NOT NULL,\n"
	"  path   TEXT NOT NULL,\n"
	"  sha256 TEXT NOT NULL,\n"
	"  bytes  INTEGER NOT NULL,\n"
	"  PRIMARY KEY (run_id, entry, path),\n"
	"  FOREIGN KEY (run_id, entry) REFERENCES entries(run_id, entry) ON DELETE CASCADE\n"
	");\n"
	"CREATE TABLE aggregates (\n"
	"  run_id    INTEGER NOT NULL,\n"
	"  entry     TEXT NOT NULL,\n"
	"  metric    TEXT NOT NULL,\n"
	"  ordinal   INTEGER NOT NULL,\n"
	"  version   INTEGER NOT NULL,\n"
	"  kind      TEXT NOT NULL,\n"
	"  direction TEXT NOT NULL,\n"
	"  n         INTEGER NOT NULL,\n"
	"  mean      REAL,\n"
	"  se        REAL,\n"
	"  ci_level  REAL,\n"
	"  ci_low    REAL,\n"
	"  ci_high   REAL,\n"
	"  method    TEXT NOT NULL,\n"
	"  PRIMARY KEY (run_id, entry, metric),\n"
	"  FOREIGN KEY (run_id, entry) REFERENCES entries(run_id, entry) ON DELETE CASCADE\n"
	");\n"
	"CREATE TABLE item_values (\n"
	"  run_id   INTEGER NOT NULL,\n"
	"  entry    TEXT NOT NULL,\n"
	"  metric   TEXT NOT NULL,\n"
	"  item_key TEXT NOT NULL,\n"
	"  ordinal  INTEGER NOT NULL,\n"
	"  stratum  TEXT NOT NULL,\n"
	"  cluster  TEXT NOT NULL,\n"
	"  value    REAL NOT NULL,\n"
	"  PRIMARY KEY (run_id, entry, metric, item_key),\n"
	"  FOREIGN KEY (run_id, entry) REFERENCES entries(run_id, entry) ON DELETE CASCADE\n"
	") WITHOUT ROWID;\n"
	"CREATE INDEX item_values_by_key ON item_values(item_key);\n"
	"CREATE TABLE gates (\n"
	"  id              INTEGER PRIMARY KEY,\n"
	"  run_id          INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
	"  created_at      TEXT NOT NULL,\n"
	"  baseline_ref    TEXT NOT NULL,\n"
	"  baseline_commit TEXT NOT NULL,\n"
	"  spec_path       TEXT NOT NULL,\n"
	"  spec_blob       TEXT NOT NULL,\n"
	"  spec_changed    INTEGER NOT NULL,\n"
	"  alpha           REAL NOT NULL,\n"
	"  power           REAL NOT NULL,\n"
	"  outcome         TEXT NOT NULL,\n"
	"  exit_code       INTEGER NOT NULL\n"
	");\n"
	"CREATE TABLE comparisons (\n"
	"  gate_id           INTEGER NOT NULL REFERENCES gates(id) ON DELETE CASCADE,\n"
	"  entry             TEXT NOT NULL,\n"
	"  metric            TEXT NOT NULL,\n"
	"  version           INTEGER NOT NULL,\n"
	"  baseline_version  INTEGER NOT NULL,\n"
	"  status            TEXT NOT NULL,\n"
	"  verdict           TEXT,\n"
	"  n                 INTEGER NOT NULL,\n"
	"  mean_base         REAL,\n"
	"  mean_cand         REAL,\n"
	"  diff              REAL,\n"
	"  se                REAL,\n"
	"  ci_level          REAL,\n"
	"  ci_low            REAL,\n"
	"  ci_high           REAL,\n"
	"  p                 REAL,\n"
	"  method            TEXT,\n"
	"  margin            REAL NOT NULL,\n"
	"  mde_planned       REAL,\n"
	"  mde_observed      REAL,\n"
	"  threshold         REAL,\n"
	"  threshold_verdict TEXT,\n"
	"  note              TEXT,\n"
	"  PRIMARY KEY (gate_id, entry, metric)\n"
	");\n",
	/* 1 -> 2: checkpoint series and figures, kept by src/store/results.c */
	mb_results_migration_v2,
	/* 2 -> 3: the phases drift located, kept by src/store/results.c */
	mb_results_migration_v3,
	/* 3 -> 4: item values keyed by interned integer ids (about 25 bytes a
	 * value instead of about 220); the view item_values keeps the old
	 * columns for queries written against them. */
	"CREATE TABLE metrics (\n"
	"  id     INTEGER PRIMARY KEY,\n"
	"  entry  TEXT NOT NULL,\n"
	"  metric TEXT NOT NULL,\n"
	"  UNIQUE (entry, metric)\n"
	");\n"
	"CREATE TABLE items (\n"
	"  id       INTEGER PRIMARY KEY,\n"
	"  item_key TEXT NOT NULL,\n"
	"  stratum  TEXT NOT NULL,\n"
	"  cluster  TEXT NOT NULL,\n"
	"  UNIQUE (item_key, stratum, cluster)\n"
	");\n"
	"CREATE TABLE item_value (\n"
	"  run_id    INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
	"  metric_id INTEGER NOT NULL REFERENCES metrics(id),\n"
	"  ordinal   INTEGER NOT NULL,\n"
	"  item_id   INTEGER NOT NULL REFERENCES items(id),\n"
	"  value     REAL NOT NULL,\n"
	"  PRIMARY KEY (run_id, metric_id, ordinal)\n"
	") WITHOUT ROWID;\n"
	"INSERT INTO metrics (entry, metric)\n"
	"  SELECT DISTINCT entry, metric FROM aggregates ORDER BY entry, metric;\n"
	"INSERT OR IGNORE INTO metrics (entry, metric)\n"
	"  SELECT DISTINCT entry, metric FROM item_values ORDER BY entry, metric;\n"
	"INSERT INTO items (item_key, stratum, cluster)\n"
	"  SELECT item_key, stratum, cluster FROM item_values\n"
	"  GROUP BY item_key, stratum, cluster ORDER BY min(run_id), min(ordinal);\n"
	"INSERT INTO item_value (run_id, metric_id, ordinal, item_id, value)\n"
	"  SELECT v.run_id, m.id, v.ordinal, i.id, v.value FROM item_values v\n"
	"  JOIN metrics m ON m.entry = v.entry AND m.metric = v.metric\n"
	"  JOIN items i ON i.item_key = v.item_key AND i.stratum = v.stratum\n"
	"    AND i.cluster = v.cluster\n"
	"  ORDER BY v.run_id, m.id, v.ordinal;\n"
	"DROP TABLE item_values;\n"
	"CREATE VIEW item_values (run_id, entry, metric, item_key, ordinal, stratum, cluster,\n"
	"                         value) AS\n"
	"  SELECT v.run_id, m.entry, m.metric, i.item_key, v.ordinal, i.stratum, i.cluster,\n"
	"         v.value\n"
	"  FROM item_value v JOIN metrics m ON m.id = v.metric_id\n"
	"  JOIN items i ON i.id = v.item_id;\n",
	/* 4 -> 5: each entry's artifact (artifact.h), JSON text */
	"CREATE TABLE artifacts (\n"
	"  run_id INTEGER NOT NULL,\n"
	"  entry  TEXT NOT NULL,\n"
	"  kind   TEXT NOT NULL,\n"
	"  data   TEXT NOT NULL,\n"
	"  PRIMARY KEY (run_id, entry),\n"
	"  FOREIGN KEY (run_id, entry) REFERENCES entries(run_id, entry) ON DELETE CASCADE\n"
	");\n",
};

/* --- columns (store_int.h) ---------------------------------------------------------- */

void mb_store_col_into(char *buf, size_t cap, sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	snprintf(buf, cap, "%s", t ? (const char *)t : "");
}

char *mb_store_col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	size_t n = t ? (size_t)sqlite3_column_bytes(st, i) + 1 : 1;
	char *p = malloc(n);
	if (p) {
		if (t)
			memcpy(p, t, n);
		else
			p[0] = '\0';
	}
	return p;
}

/* --- errors (store_int.h) ---------------------------------------------------------- */

int mb_store_fail(mb_store *s, mb_error *err, int rc, const char *what)
{
	int prim = rc & 0xff;
	const char *msg = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);

	switch (prim) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return mb_error_set(err, MB_EBUSY,
				    "%s: database is locked by another process (waited %.1f s; "
				    "see --db-timeout) while %s", s->path, s->busy_ms / 1000.0, what);
	case SQLITE_READONLY:
		return mb_error_set(err, MB_EIO,
				    "%s: database is read-only (check the permissions of the file "
				    "and its folder) while %s: %s", s->path, what, msg);
	case SQLITE_FULL:
		return mb_error_set(err, MB_EIO, "%s: disk full while %s", s->path, what);
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		return mb_error_set(err, MB_EINVALID, "%s: not a database, or corrupt, while %s: %s",
				    s->path, what, msg);
	case SQLITE_CONSTRAINT:
	case SQLITE_MISMATCH:
		return mb_error_set(err, MB_EINVALID, "%s: %s: %s", s->path, what, msg);
	case SQLITE_NOMEM:
		return mb_error_set(err, MB_ENOMEM, "%s: out of memory while %s", s->path, what);
	case SQLITE_CANTOPEN: {
		/* Past the open itself it is the -wal or -shm file beside the
		 * database that could not be made, which even a reader needs
		 * (SQLite's errno is then its last retry's, a misleading ENOENT). */
		mb_error why;
		if (mb_file_check_output(s->path, &why) < 0)
			return mb_error_set(err, MB_EIO, "%s: cannot open the database while %s: its "
					    "-wal and -shm files cannot be made beside it (%s)",
					    s->path, what, why.msg);
		return mb_error_set(err, MB_EIO, "%s: cannot open the database while %s: %s",
				    s->path, what, msg);
	}
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return mb_error_set(err, MB_EIO, "%s: cannot open the database while %s: %s",
				    s->path, what, msg);
	default:
		return mb_error_set(err, MB_EIO, "%s: %s: %s", s->path, what, msg);
	}
}

int mb_store_exec(mb_store *s, const char *sql, const char *what, mb_error *err)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : mb_store_fail(s, err, rc, what);
}

int mb_store_prepare(mb_store *s, sqlite3_stmt **st, const char *sql, mb_error *err)
{
	int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
	return rc == SQLITE_OK ? 0 : mb_store_fail(s, err, rc, "preparing a statement");
}

int mb_store_step_done(mb_store *s, sqlite3_stmt *st, const char *what, mb_error *err)
{
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return mb_store_fail(s, err, rc, what);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return 0;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

/* NaN and infinities are stored as NULL (SQLite has no NaN). */
static void bind_real(sqlite3_stmt *st, int i, double v)
{
	if (isfinite(v))
		sqlite3_bind_double(st, i, v);
	else
		sqlite3_bind_null(st, i);
}

static void bind_tristate(sqlite3_stmt *st, int i, int v)
{
	if (v < 0)
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_int(st, i, v);
}

/* SQL over the provenance columns written at `at` (-1: all of them, in
 * order): head, then the names joined by sep, then mid; with a non-NULL mid,
 * one `mark` per column joined by msep, then tail. Asserts that it fits. */
static void prov_sql(char *buf, size_t cap, const char *head, int at, const char *sep,
		     const char *mid, const char *mark, const char *msep, const char *tail)
{
	size_t len = (size_t)snprintf(buf, cap, "%s", head), k = 0;

	for (size_t f = 0; f < mb_provenance_n_fields; f++)
		if (at < 0 || mb_provenance_fields[f].at == (mb_provenance_at)at)
			len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%s%s",
						k++ ? sep : "", mb_provenance_fields[f].name);
	len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%s", mid);
	for (size_t i = 0; tail && i < k; i++)
		len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%s%s",
					i ? msep : "", mark);
	if (tail)
		len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%s", tail);
	MB_ASSERT(len < cap);
}

static void prov_bind(sqlite3_stmt *st, int i, const mb_provenance *p,
		      const mb_provenance_field *f)
{
	const char *v = (const char *)p + f->offset;

	switch (f->kind) {
	case MB_PROVENANCE_TEXT: bind_text(st, i, v); break;
	case MB_PROVENANCE_OTEXT: bind_text(st, i, v[0] ? v : NULL); break;
	case MB_PROVENANCE_TRI: bind_tristate(st, i, *(const int *)(const void *)v); break;
	case MB_PROVENANCE_BOOL:
	case MB_PROVENANCE_INT: sqlite3_bind_int(st, i, *(const int *)(const void *)v); break;
	case MB_PROVENANCE_U64:
		sqlite3_bind_int64(st, i, (sqlite3_int64) * (const uint64_t *)(const void *)v);
		break;
	case MB_PROVENANCE_REAL: sqlite3_bind_double(st, i, *(const double *)(const void *)v); break;
	}
}

static void prov_col(mb_provenance *p, const mb_provenance_field *f, sqlite3_stmt *st, int i)
{
	char *v = (char *)p + f->offset;

	switch (f->kind) {
	case MB_PROVENANCE_TEXT:
	case MB_PROVENANCE_OTEXT: mb_store_col_into(v, f->size, st, i); break;
	case MB_PROVENANCE_TRI:
		*(int *)(void *)v =
			sqlite3_column_type(st, i) == SQLITE_NULL ? -1 : sqlite3_column_int(st, i);
		break;
	case MB_PROVENANCE_BOOL:
	case MB_PROVENANCE_INT: *(int *)(void *)v = sqlite3_column_int(st, i); break;
	case MB_PROVENANCE_U64:
		*(uint64_t *)(void *)v = (uint64_t)sqlite3_column_int64(st, i);
		break;
	case MB_PROVENANCE_REAL: *(double *)(void *)v = sqlite3_column_double(st, i); break;
	}
}

/* --- open and migrate ----------------------------------------------------------------- */

static int user_version(mb_store *s, int *out, mb_error *err)
{
	sqlite3_stmt *st = NULL;
	int rc, error;

	if ((error = mb_store_prepare(s, &st, "PRAGMA user_version", err)) < 0)
		return error;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : mb_store_fail(s, err, rc, "reading the schema version");
}

/* The schema version and the number of schema objects, read in one
 * transaction: read apart, another process creating the database between
 * the two reads made a new database look foreign (version 0, tables > 0). */
static int schema_state(mb_store *s, int *version, int *tables, mb_error *err)
{
	sqlite3_stmt *st = NULL;
	int rc, error;

	if ((error = mb_store_exec(s, "BEGIN", "reading the schema", err)) < 0)
		return error;
	if ((error = user_version(s, version, err)) < 0 ||
	    (error = mb_store_prepare(s, &st, "SELECT count(*) FROM sqlite_master", err)) < 0)
		goto done;
	rc = sqlite3_step(st);
	*tables = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		error = mb_store_fail(s, err, rc, "reading the schema");
done:
	sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	return error;
}

static int migrate(mb_store *s, int readonly, mb_error *err)
{
	int version = 0, tables = 0, error;

	if ((error = schema_state(s, &version, &tables, err)) < 0)
		return error;
	if (version > MB_STORE_SCHEMA_VERSION)
		return mb_error_set(err, MB_EINVALID,
				    "%s: schema version %d is newer than this build's %d; use a newer "
				    "mechbench", s->path, version, MB_STORE_SCHEMA_VERSION);
	if (version == MB_STORE_SCHEMA_VERSION)
		return 0;
	if (version == 0 && tables > 0)
		return mb_error_set(err, MB_EINVALID, "%s: not a mechbench results database (it has "
				    "tables but no mechbench schema version)", s->path);
	/* an empty file (touch, or a writer that died before its first commit)
	 * holds nothing to read; "needs migrating" would send the user astray */
	if (readonly && version == 0)
		return mb_error_set(err, MB_ENOTFOUND, "%s: an empty database (no runs stored "
				    "yet)", s->path);
	if (readonly)
		return mb_error_set(err, MB_EINVALID, "%s: schema version %d needs migrating to %d; "
				    "open it once read-write", s->path, version,
				    MB_STORE_SCHEMA_VERSION);
	if ((error = mb_store_exec(s, "BEGIN IMMEDIATE", "migrating the schema", err)) < 0)
		return error;
	/* Re-read inside the lock: another process may have migrated meanwhile. */
	if ((error = user_version(s, &version, err)) < 0)
		goto rollback;
	for (int v = version; v < MB_STORE_SCHEMA_VERSION; v++) {
		char pragma[64];
		if ((error = mb_store_exec(s, migrations[v], "migrating the schema", err)) < 0)
			goto rollback;
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", v + 1);
		if ((error = mb_store_exec(s, pragma, "migrating the schema", err)) < 0)
			goto rollback;
	}
	if ((error = mb_store_exec(s, "COMMIT", "migrating the schema", err)) < 0)
		goto rollback;
	return 0;
rollback:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return error;
}

/* journal_mode = WAL needs the file to itself for a moment. While another
 * connection holds a lock on it (several processes creating one database
 * together: store_test_concurrency saw it), SQLite does not call the busy
 * handler: it answers SQLITE_BUSY at once, or leaves the rollback journal
 * mode it had and returns that mode's name. Both are retried, pausing 1 ms
 * growing to 50 ms, until the busy timeout has passed. The mode is kept in
 * the file: once one process has switched, the others' first try says "wal"
 * without taking the lock. */
static int is_rollback_mode(const char *m)
{
	return strcmp(m, "delete") == 0 || strcmp(m, "truncate") == 0 ||
	       strcmp(m, "persist") == 0;
}

static int set_wal(mb_store *s, mb_error *err)
{
	long waited_ms = 0, pause_ms = 1;

	for (;;) {
		sqlite3_stmt *st = NULL;
		char mode[16] = "";
		int rc, error = mb_store_prepare(s, &st, "PRAGMA journal_mode = WAL", err);

		if (error < 0)
			return error;
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			snprintf(mode, sizeof(mode), "%s", (const char *)sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
		if (rc == SQLITE_ROW && strcmp(mode, "wal") == 0)
			return 0;
		if (rc == SQLITE_ROW && !is_rollback_mode(mode))
			return mb_error_set(err, MB_EIO, "%s: cannot use WAL mode (journal mode "
					    "stays '%s')", s->path, mode);
		if (rc != SQLITE_ROW && (rc & 0xff) != SQLITE_BUSY)
			return mb_store_fail(s, err, rc, "switching to WAL mode");
		if (waited_ms >= s->busy_ms)
			return mb_store_fail(s, err, SQLITE_BUSY, "switching to WAL mode");
		{
			struct timespec ts = {0, pause_ms * 1000000L};

			nanosleep(&ts, NULL);
		}
		waited_ms += pause_ms;
		pause_ms = pause_ms < 25 ? pause_ms * 2 : 50;
	}
}

int mb_store_open(mb_store **out, const char *path, const mb_store_opts *opts, mb_error *err)
{
	mb_store *s;
	int readonly = opts && opts->readonly;
	int flags = readonly ? SQLITE_OPEN_READONLY
			     : opts && opts->must_exist ? SQLITE_OPEN_READWRITE
							: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	int rc, error = 0;

	*out = NULL;
	if (!path || !path[0])
		return mb_error_set(err, MB_EINVALID, "the results database path is empty (--db '')");
	s = calloc(1, sizeof(*s));
	if (!s)
		return mb_error_oom(err, "store", sizeof(*s));
	s->busy_ms = opts && opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms
							    : MB_STORE_BUSY_TIMEOUT_MS;
	s->path = malloc(strlen(path) + 1);
	if (!s->path) {
		free(s);
		return mb_error_oom(err, "store path", strlen(path) + 1);
	}
	memcpy(s->path, path, strlen(path) + 1);
	rc = sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		/* SQLite says only "unable to open database file"; the system's
		 * reason (no such file, no such folder, permission) is what a
		 * user can act on. */
		int sys = (rc & 0xff) == SQLITE_CANTOPEN && s->db ? sqlite3_system_errno(s->db) : 0;
		struct stat st;
		/* A create that the folder refuses ends with SQLite's read-only
		 * retry, whose errno is ENOENT: name the folder instead. */
		if (sys && (flags & SQLITE_OPEN_CREATE) && stat(path, &st) != 0 && errno == ENOENT &&
		    mb_file_check_output(path, err) < 0) {
			mb_error_prefix(err, "%s: cannot create the database", path);
			error = MB_EIO;
		} else {
			error = sys ? mb_error_set(err, MB_EIO, "%s: cannot open the database: %s",
						   path, strerror(sys))
				    : mb_store_fail(s, err, rc, "opening");
		}
		goto cleanup;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, s->busy_ms);
	/* SQLite silently opens a write-protected file read-only; say so now,
	 * before any work is done, rather than at the first write. */
	if (!readonly && sqlite3_db_readonly(s->db, "main") == 1) {
		error = mb_error_set(err, MB_EIO, "%s: database is read-only (check the "
				     "permissions of the file and its folder)", path);
		goto cleanup;
	}
	if ((error = mb_store_exec(s, "PRAGMA foreign_keys = ON", "configuring", err)) < 0)
		goto cleanup;
	if (!readonly && (error = set_wal(s, err)) < 0)
		goto cleanup;
	if ((error = migrate(s, readonly, err)) < 0)
		goto cleanup;
	*out = s;
	s = NULL;
cleanup:
	mb_store_free(s);
	return error;
}

void mb_store_free(mb_store *s)
{
	if (!s)
		return;
	if (s->in_run)
		mb_store_run_abort(s);
	sqlite3_close_v2(s->db);
	free(s->path);
	free(s);
}

struct sqlite3 *mb_store_sqlite(mb_store *s)
{
	return s->db;
}

const char *mb_store_path(const mb_store *s)
{
	return s->path;
}

/* --- writing runs ---------------------------------------------------------------------- */

int mb_store_run_begin(mb_store *s, int64_t *out_id, const mb_provenance *p, mb_error *err)
{
	sqlite3_stmt *st = NULL;
	char sql[1024];
	int error;

	*out_id = 0;
	MB_ASSERT(!s->in_run);
	if ((error = mb_store_exec(s, "BEGIN IMMEDIATE", "starting the run's transaction", err)) < 0)
		return error;
	s->in_run = 1;
	prov_sql(sql, sizeof(sql), "INSERT INTO runs (", MB_PROVENANCE_BEGIN, ", ", ") VALUES (",
		 "?", ", ", ")");
	if ((error = mb_store_prepare(s, &st, sql, err)) < 0)
		goto fail;
	for (size_t f = 0, i = 1; f < mb_provenance_n_fields; f++)
		if (mb_provenance_fields[f].at == MB_PROVENANCE_BEGIN)
			prov_bind(st, (int)i++, p, &mb_provenance_fields[f]);
	if ((error = mb_store_step_done(s, st, "inserting the run", err)) < 0)
		goto fail;
	sqlite3_finalize(st);
	*out_id = sqlite3_last_insert_rowid(s->db);
	return 0;
fail:
	sqlite3_finalize(st);
	mb_store_run_abort(s);
	return error;
}

/* The id of the row (k1, k2[, k3]) of an interning table (metrics, items),
 * inserted when absent: find selects id by the key, add inserts it. */
static int intern(mb_store *s, int64_t *out, sqlite3_stmt *find, sqlite3_stmt *add,
		  const char *const *key, int n_key, const char *what, mb_error *err)
{
	int rc, error;

	for (int k = 0; k < n_key; k++) {
		sqlite3_bind_text(find, k + 1, key[k], -1, SQLITE_STATIC);
		sqlite3_bind_text(add, k + 1, key[k], -1, SQLITE_STATIC);
	}
	rc = sqlite3_step(find);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(find, 0);
		sqlite3_reset(find);
		return 0;
	}
	sqlite3_reset(find);
	if (rc != SQLITE_DONE)
		return mb_store_fail(s, err, rc, what);
	if ((error = mb_store_step_done(s, add, what, err)) < 0)
		return error;
	*out = sqlite3_last_insert_rowid(s->db);
	return 0;
}

/* item_value rows of entry e: (run, metric id, ordinal) -> (item id, value),
 * inserted in key order so the pages fill up. */
static int put_item_values(mb_store *s, int64_t run_id, const mb_entry_result *e, mb_error *err)
{
	sqlite3_stmt *find_m = NULL, *add_m = NULL, *find_i = NULL, *add_i = NULL, *ins = NULL;
	int64_t *mid = NULL, *iid = NULL;
	int error;

	mid = malloc(e->n_metrics * sizeof(*mid));
	iid = malloc(e->n_items * sizeof(*iid));
	if (!mid || !iid) {
		error = mb_error_oom(err, "item ids", e->n_items * sizeof(*iid));
		goto cleanup;
	}
	if ((error = mb_store_prepare(s, &find_m, "SELECT id FROM metrics WHERE entry = ?"
				      " AND metric = ?", err)) < 0 ||
	    (error = mb_store_prepare(s, &add_m, "INSERT INTO metrics (entry, metric) VALUES (?,?)",
				      err)) < 0 ||
	    (error = mb_store_prepare(s, &find_i, "SELECT id FROM items WHERE item_key = ? AND"
				      " stratum = ? AND cluster = ?", err)) < 0 ||
	    (error = mb_store_prepare(s, &add_i, "INSERT INTO items (item_key, stratum, cluster)"
				      " VALUES (?,?,?)", err)) < 0 ||
	    (error = mb_store_prepare(s, &ins, "INSERT INTO item_value (run_id, metric_id,"
				      " ordinal, item_id, value) VALUES (?,?,?,?,?)", err)) < 0)
		goto cleanup;
	for (size_t m = 0; m < e->n_metrics; m++) {
		const char *key[2] = {e->name, e->metrics[m].name};
		if ((error = intern(s, &mid[m], find_m, add_m, key, 2, "interning metrics", err)) < 0)
			goto cleanup;
	}
	for (size_t i = 0; i < e->n_items; i++) {
		const char *key[3] = {e->items[i].key, e->items[i].stratum ? e->items[i].stratum : "",
				      e->items[i].cluster ? e->items[i].cluster : ""};
		if ((error = intern(s, &iid[i], find_i, add_i, key, 3, "interning items", err)) < 0)
			goto cleanup;
	}
	for (size_t m = 0; m < e->n_metrics; m++)
		for (size_t i = 0; i < e->n_items; i++) {
			sqlite3_bind_int64(ins, 1, run_id);
			sqlite3_bind_int64(ins, 2, mid[m]);
			sqlite3_bind_int64(ins, 3, (sqlite3_int64)i);
			sqlite3_bind_int64(ins, 4, iid[i]);
			sqlite3_bind_double(ins, 5, e->values[i * e->n_metrics + m]);
			if ((error = mb_store_step_done(s, ins, "inserting item values", err)) < 0)
				goto cleanup;
		}
cleanup:
	sqlite3_finalize(find_m);
	sqlite3_finalize(add_m);
	sqlite3_finalize(find_i);
	sqlite3_finalize(add_i);
	sqlite3_finalize(ins);
	free(mid);
	free(iid);
	return error;
}

/* The artifacts row of entry e (which has one). */
static int put_artifact(mb_store *s, int64_t run_id, const mb_entry_result *e, mb_error *err)
{
	const char *kind = json_string_value(json_object_get(e->artifact, "kind"));
	char *text = json_dumps(e->artifact, JSON_COMPACT | JSON_REAL_PRECISION(17));
	sqlite3_stmt *st = NULL;
	int error;

	if (!text)
		return mb_error_oom(err, "artifact text", 0);
	if ((error = mb_store_prepare(s, &st, "INSERT INTO artifacts (run_id, entry, kind, data)"
				      " VALUES (?,?,?,?)", err)) == 0) {
		sqlite3_bind_int64(st, 1, run_id);
		bind_text(st, 2, e->name);
		bind_text(st, 3, kind ? kind : "");
		bind_text(st, 4, text);
		error = mb_store_step_done(s, st, "inserting an artifact", err);
	}
	sqlite3_finalize(st);
	free(text);
	return error;
}

int mb_store_run_put_entry(mb_store *s, int64_t run_id, const mb_entry_result *e,
			   mb_error *err)
{
	sqlite3_stmt *st = NULL;
	char *params = NULL;
	int error;

	MB_ASSERT(s->in_run);
	params = e->params ? json_dumps(e->params, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	/* entries: ordinal is the count of entries already stored for the run. */
	error = mb_store_prepare(s, &st,
			"INSERT INTO entries (run_id, entry, ordinal, task, task_version, model,"
			" dataset, dataset_sha256, params, n_items, seconds) VALUES (?1, ?2,"
			" (SELECT count(*) FROM entries WHERE run_id = ?1), ?3,?4,?5,?6,?7,?8,?9,?10)",
			err);
	if (error < 0)
		goto cleanup;
	sqlite3_bind_int64(st, 1, run_id);
	bind_text(st, 2, e->name);
	bind_text(st, 3, e->task);
	sqlite3_bind_int(st, 4, e->task_version);
	bind_text(st, 5, e->model);
	bind_text(st, 6, e->dataset);
	bind_text(st, 7, e->dataset_sha256);
	bind_text(st, 8, params);
	sqlite3_bind_int64(st, 9, (sqlite3_int64)e->n_items);
	sqlite3_bind_double(st, 10, e->seconds);
	if ((error = mb_store_step_done(s, st, "inserting an entry", err)) < 0)
		goto cleanup;
	sqlite3_finalize(st);
	st = NULL;

	if ((error = mb_store_prepare(s, &st, "INSERT INTO model_files (run_id, entry, path, sha256, bytes)"
			     " VALUES (?,?,?,?,?)", err)) < 0)
		goto cleanup;
	for (size_t f = 0; f < e->n_model_files; f++) {
		sqlite3_bind_int64(st, 1, run_id);
		bind_text(st, 2, e->name);
		bind_text(st, 3, e->model_files[f].path);
		bind_text(st, 4, e->model_files[f].sha256);
		sqlite3_bind_int64(st, 5, (sqlite3_int64)e->model_files[f].bytes);
		if ((error = mb_store_step_done(s, st, "inserting model files", err)) < 0)
			goto cleanup;
	}
	sqlite3_finalize(st);
	st = NULL;

	if ((error = mb_store_prepare(s, &st, "INSERT INTO aggregates (run_id, entry, metric, ordinal,"
			     " version, kind, direction, n, mean, se, ci_level, ci_low, ci_high,"
			     " method) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", err)) < 0)
		goto cleanup;
	for (size_t m = 0; m < e->n_metrics; m++) {
		const mb_aggregate *a = &e->aggregates[m];
		sqlite3_bind_int64(st, 1, run_id);
		bind_text(st, 2, e->name);
		bind_text(st, 3, e->metrics[m].name);
		sqlite3_bind_int(st, 4, (int)m);
		sqlite3_bind_int(st, 5, e->metrics[m].version);
		bind_text(st, 6, mb_metric_kind_name(e->metrics[m].kind));
		bind_text(st, 7, mb_metric_direction_name(e->metrics[m].direction));
		sqlite3_bind_int64(st, 8, (sqlite3_int64)a->n);
		bind_real(st, 9, a->mean);
		bind_real(st, 10, a->se);
		bind_real(st, 11, a->level);
		bind_real(st, 12, a->lo);
		bind_real(st, 13, a->hi);
		bind_text(st, 14, mb_stats_method_name(a->method));
		if ((error = mb_store_step_done(s, st, "inserting aggregates", err)) < 0)
			goto cleanup;
	}
	sqlite3_finalize(st);
	st = NULL;

	if (e->n_items && e->n_metrics && (error = put_item_values(s, run_id, e, err)) < 0)
		goto cleanup;
	if (e->artifact)
		error = put_artifact(s, run_id, e, err);
cleanup:
	sqlite3_finalize(st);
	free(params);
	if (error < 0)
		mb_store_run_abort(s);
	return error;
}

int mb_store_run_commit(mb_store *s, int64_t run_id, const mb_provenance *p, mb_error *err)
{
	sqlite3_stmt *st = NULL;
	char sql[256];
	int k = 1, error;

	MB_ASSERT(s->in_run);
	prov_sql(sql, sizeof(sql), "UPDATE runs SET ", MB_PROVENANCE_COMMIT, " = ?, ",
		 " = ? WHERE id = ?", NULL, NULL, NULL);
	if ((error = mb_store_prepare(s, &st, sql, err)) < 0)
		goto fail;
	for (size_t f = 0; f < mb_provenance_n_fields; f++)
		if (mb_provenance_fields[f].at == MB_PROVENANCE_COMMIT)
			prov_bind(st, k++, p, &mb_provenance_fields[f]);
	sqlite3_bind_int64(st, k, run_id);
	if ((error = mb_store_step_done(s, st, "finishing the run", err)) < 0)
		goto fail;
	sqlite3_finalize(st);
	st = NULL;
	if ((error = mb_store_exec(s, "COMMIT", "committing the run", err)) < 0)
		goto fail;
	s->in_run = 0;
	return 0;
fail:
	sqlite3_finalize(st);
	mb_store_run_abort(s);
	return error;
}

void mb_store_run_abort(mb_store *s)
{
	if (s && s->in_run) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		s->in_run = 0;
	}
}

int mb_store_put_run(mb_store *s, mb_run_result *run, mb_error *err)
{
	int64_t id;
	int error = mb_store_run_begin(s, &id, &run->prov, err);

	for (size_t i = 0; i < run->n_entries && !error; i++)
		error = mb_store_run_put_entry(s, id, &run->entries[i], err);
	if (!error)
		error = mb_store_run_commit(s, id, &run->prov, err);
	if (!error)
		run->id = id;
	return error;
}

/* --- reading runs ---------------------------------------------------------------------- */

static double col_real(sqlite3_stmt *st, int i)
{
	return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

/* Entry e's artifact, when it has one, into e->artifact (checked). */
static int load_artifact(mb_store *s, int64_t id, mb_entry_result *e, mb_error *err)
{
	sqlite3_stmt *st = NULL;
	json_error_t jerr;
	char name[1024];
	int rc, error;

	if ((error = mb_store_prepare(s, &st, "SELECT data FROM artifacts WHERE run_id = ? AND"
				      " entry = ?", err)) < 0)
		return error;
	sqlite3_bind_int64(st, 1, id);
	bind_text(st, 2, e->name);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *text = (const char *)sqlite3_column_text(st, 0);
		snprintf(name, sizeof(name), "%s: run %lld entry %s", s->path, (long long)id,
			 e->name);
		e->artifact = text ? json_loads(text, JSON_DECODE_ANY, &jerr) : NULL;
		if (!e->artifact)
			error = mb_error_set(err, MB_EINVALID, "%s: artifact: %d:%d: %s", name,
					     text ? jerr.line : 0, text ? jerr.column : 0,
					     text ? jerr.text : "NULL");
		else
			error = mb_artifact_check(NULL, name, e->artifact, "artifact", err);
	} else if (rc != SQLITE_DONE) {
		error = mb_store_fail(s, err, rc, "reading an artifact");
	}
	sqlite3_finalize(st);
	return error;
}

static int load_entry_details(mb_store *s, int64_t id, mb_entry_result *e, mb_error *err)
{
	sqlite3_stmt *st = NULL;
	size_t filled = 0;
	int rc, error = 0;

	/* model files */
	if ((error = mb_store_prepare(s, &st, "SELECT path, sha256, bytes FROM model_files WHERE run_id = ?"
			     " AND entry = ? ORDER BY path", err)) < 0)
		return error;
	sqlite3_bind_int64(st, 1, id);
	bind_text(st, 2, e->name);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		mb_file_digest *nf = realloc(e->model_files,
					     (e->n_model_files + 1) * sizeof(*nf));
		if (!nf) {
			error = mb_error_oom(err, "model files", 0);
			goto cleanup;
		}
		e->model_files = nf;
		memset(&nf[e->n_model_files], 0, sizeof(*nf));
		nf[e->n_model_files].path = mb_store_col_dup(st, 0);
		mb_store_col_into(nf[e->n_model_files].sha256, MB_SHA256_HEX_LEN, st, 1);
		nf[e->n_model_files].bytes = (uint64_t)sqlite3_column_int64(st, 2);
		e->n_model_files++;
		if (!nf[e->n_model_files - 1].path) {
			error = mb_error_oom(err, "model file path", 0);
			goto cleanup;
		}
	}
	if (rc != SQLITE_DONE) {
		error = mb_store_fail(s, err, rc, "reading model files");
		goto cleanup;
	}
	sqlite3_finalize(st);
	st = NULL;

	/* metrics and aggregates */
	if ((error = mb_store_prepare(s, &st, "SELECT metric, version, kind, direction, n, mean, se,"
			     " ci_level, ci_low, ci_high, method FROM aggregates WHERE run_id = ?"
			     " AND entry = ? ORDER BY ordinal", err)) < 0)
		return error;
	sqlite3_bind_int64(st, 1, id);
	bind_text(st, 2, e->name);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		size_t m = e->n_metrics;
		mb_metric_info *nm = realloc(e->metrics, (m + 1) * sizeof(*nm));
		mb_aggregate *na;
		const char *method = (const char *)sqlite3_column_text(st, 10);
		if (nm)
			e->metrics = nm;
		na = nm ? realloc(e->aggregates, (m + 1) * sizeof(*na)) : NULL;
		if (!nm || !na) {
			error = mb_error_oom(err, "metrics", 0);
			goto cleanup;
		}
		e->aggregates = na;
		memset(&nm[m], 0, sizeof(*nm));
		nm[m].name = mb_store_col_dup(st, 0);
		nm[m].version = sqlite3_column_int(st, 1);
		e->n_metrics++;
		if (!nm[m].name) {
			error = mb_error_oom(err, "metric name", 0);
			goto cleanup;
		}
		if (mb_metric_kind_parse((const char *)sqlite3_column_text(st, 2), &nm[m].kind) < 0 ||
		    mb_metric_direction_parse((const char *)sqlite3_column_text(st, 3),
					      &nm[m].direction) < 0) {
			error = mb_error_set(err, MB_EINVALID, "%s: run %lld entry %s: bad kind or "
					     "direction of %s", s->path, (long long)id, e->name,
					     nm[m].name);
			goto cleanup;
		}
		na[m].n = (size_t)sqlite3_column_int64(st, 4);
		na[m].mean = col_real(st, 5);
		na[m].se = col_real(st, 6);
		na[m].level = col_real(st, 7);
		na[m].lo = col_real(st, 8);
		na[m].hi = col_real(st, 9);
		na[m].method = MB_STATS_METHOD_NONE;
		for (int k = MB_STATS_METHOD_NONE; method && k <= MB_STATS_METHOD_BOOT_BCA; k++)
			if (strcmp(method, mb_stats_method_name((mb_stats_method)k)) == 0)
				na[m].method = (mb_stats_method)k;
	}
	if (rc != SQLITE_DONE) {
		error = mb_store_fail(s, err, rc, "reading aggregates");
		goto cleanup;
	}
	sqlite3_finalize(st);
	st = NULL;

	/* items and values, by (ordinal, metric ordinal) */
	e->items = calloc(e->n_items ? e->n_items : 1, sizeof(*e->items));
	e->values = malloc((e->n_items ? e->n_items : 1) * (e->n_metrics ? e->n_metrics : 1) *
			   sizeof(double));
	if (!e->items || !e->values) {
		error = mb_error_oom(err, "item values", e->n_items * sizeof(double));
		goto cleanup;
	}
	if ((error = mb_store_prepare(s, &st, "SELECT v.ordinal, a.ordinal, i.item_key,"
				      " i.stratum, i.cluster, v.value FROM aggregates a"
				      " JOIN metrics m ON m.entry = a.entry AND m.metric = a.metric"
				      " JOIN item_value v ON v.run_id = a.run_id AND v.metric_id = m.id"
				      " JOIN items i ON i.id = v.item_id"
				      " WHERE a.run_id = ?1 AND a.entry = ?2 ORDER BY v.ordinal, a.ordinal",
				      err)) < 0)
		goto cleanup;
	sqlite3_bind_int64(st, 1, id);
	bind_text(st, 2, e->name);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t i = sqlite3_column_int64(st, 0), m = sqlite3_column_int64(st, 1);
		if (i < 0 || (size_t)i >= e->n_items || m < 0 || (size_t)m >= e->n_metrics ||
		    filled != (size_t)i * e->n_metrics + (size_t)m) {
			error = mb_error_set(err, MB_EINVALID, "%s: run %lld entry %s: item values "
					     "are inconsistent (row %zu)", s->path, (long long)id,
					     e->name, filled);
			goto cleanup;
		}
		if (m == 0) {
			mb_store_col_into(e->items[i].key, MB_SHA256_HEX_LEN, st, 2);
			e->items[i].stratum = mb_store_col_dup(st, 3);
			e->items[i].cluster = mb_store_col_dup(st, 4);
			if (!e->items[i].stratum || !e->items[i].cluster) {
				error = mb_error_oom(err, "item labels", 0);
				goto cleanup;
			}
		}
		e->values[filled++] = sqlite3_column_double(st, 5);
	}
	if (rc != SQLITE_DONE) {
		error = mb_store_fail(s, err, rc, "reading item values");
		goto cleanup;
	}
	if (filled != e->n_items * e->n_metrics) {
		error = mb_error_set(err, MB_EINVALID, "%s: run %lld entry %s: %zu item values, "
				     "expected %zu", s->path, (long long)id, e->name, filled,
				     e->n_items * e->n_metrics);
		goto cleanup;
	}
	sqlite3_finalize(st);
	st = NULL;
	error = load_artifact(s, id, e, err);
cleanup:
	sqlite3_finalize(st);
	return error;
}

int mb_store_get_run(mb_run_result *out, mb_store *s, int64_t id, mb_error *err)
{
	sqlite3_stmt *st = NULL;
	char sql[1024];
	mb_provenance *p = &out->prov;
	int rc, error;

	memset(out, 0, sizeof(*out));
	prov_sql(sql, sizeof(sql), "SELECT ", -1, ", ", " FROM runs WHERE id = ?", NULL, NULL,
		 NULL);
	if ((error = mb_store_prepare(s, &st, sql, err)) < 0)
		return error;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		error = mb_error_set(err, MB_ENOTFOUND, "%s: no run %lld", s->path, (long long)id);
		goto cleanup;
	}
	if (rc != SQLITE_ROW) {
		error = mb_store_fail(s, err, rc, "reading a run");
		goto cleanup;
	}
	out->id = id;
	for (size_t f = 0; f < mb_provenance_n_fields; f++)
		prov_col(p, &mb_provenance_fields[f], st, (int)f);
	sqlite3_finalize(st);
	st = NULL;

	if ((error = mb_store_prepare(s, &st, "SELECT entry, task, task_version, model, dataset,"
			     " dataset_sha256, params, n_items, seconds FROM entries WHERE"
			     " run_id = ? ORDER BY ordinal", err)) < 0)
		goto cleanup;
	sqlite3_bind_int64(st, 1, id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		mb_entry_result *ne = realloc(out->entries, (out->n_entries + 1) * sizeof(*ne));
		mb_entry_result *e;
		const char *params = (const char *)sqlite3_column_text(st, 6);
		if (!ne) {
			error = mb_error_oom(err, "run entries", 0);
			goto cleanup;
		}
		out->entries = ne;
		e = &ne[out->n_entries++];
		memset(e, 0, sizeof(*e));
		e->name = mb_store_col_dup(st, 0);
		e->task = mb_store_col_dup(st, 1);
		e->task_version = sqlite3_column_int(st, 2);
		e->model = mb_store_col_dup(st, 3);
		e->dataset = mb_store_col_dup(st, 4);
		mb_store_col_into(e->dataset_sha256, MB_SHA256_HEX_LEN, st, 5);
		e->params = params ? json_loads(params, 0, NULL) : NULL;
		e->n_items = (size_t)sqlite3_column_int64(st, 7);
		e->seconds = sqlite3_column_double(st, 8);
		if (!e->name || !e->task || !e->model || !e->dataset) {
			error = mb_error_oom(err, "run entry", 0);
			goto cleanup;
		}
	}
	if (rc != SQLITE_DONE) {
		error = mb_store_fail(s, err, rc, "reading entries");
		goto cleanup;
	}
	sqlite3_finalize(st);
	st = NULL;
	for (size_t i = 0; i < out->n_entries && !error; i++)
		error = load_entry_details(s, id, &out->entries[i], err);
cleanup:
	sqlite3_finalize(st);
	if (error < 0)
		mb_run_result_dispose(out);
	return error;
}

/* --- gates ---------------------------------------------------------------------------- */

int mb_store_put_gate(mb_store *s, int64_t *out_id, const mb_gate_result *g, mb_error *err)
{
	sqlite3_stmt *st = NULL;
	char now[MB_STR_UTC_LEN];
	int error;

	*out_id = 0;
	mb_str_utc(now, sizeof(now), time(NULL));
	if ((error = mb_store_exec(s, "BEGIN IMMEDIATE", "starting the gate's transaction", err)) < 0)
		return error;
	if ((error = mb_store_prepare(s, &st, "INSERT INTO gates (run_id, created_at, baseline_ref,"
			     " baseline_commit, spec_path, spec_blob, spec_changed, alpha, power,"
			     " outcome, exit_code) VALUES (?,?,?,?,?,?,?,?,?,?,?)", err)) < 0)
		goto fail;
	sqlite3_bind_int64(st, 1, g->run_id);
	bind_text(st, 2, now);
	bind_text(st, 3, g->ref);
	bind_text(st, 4, g->commit);
	bind_text(st, 5, g->spec_path);
	bind_text(st, 6, g->spec_blob);
	sqlite3_bind_int(st, 7, g->n_deviations > 0);
	sqlite3_bind_double(st, 8, g->alpha);
	sqlite3_bind_double(st, 9, g->power);
	bind_text(st, 10, mb_gate_status_name(g->outcome));
	sqlite3_bind_int(st, 11, g->exit_code);
	if ((error = mb_store_step_done(s, st, "inserting the gate", err)) < 0)
		goto fail;
	sqlite3_finalize(st);
	st = NULL;
	*out_id = sqlite3_last_insert_rowid(s->db);
	if ((error = mb_store_prepare(s, &st, "INSERT INTO comparisons (gate_id, entry, metric, version,"
			     " baseline_version, status, verdict, n, mean_base, mean_cand, diff, se,"
			     " ci_level, ci_low, ci_high, p, method, margin, mde_planned,"
			     " mde_observed, threshold, threshold_verdict, note) VALUES"
			     " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", err)) < 0)
		goto fail;
	for (size_t i = 0; i < g->n_rows; i++) {
		const mb_gate_row *r = &g->rows[i];
		const mb_stats_comparison *c = &r->cmp;
		sqlite3_bind_int64(st, 1, *out_id);
		bind_text(st, 2, r->entry);
		bind_text(st, 3, r->metric);
		sqlite3_bind_int(st, 4, r->version);
		sqlite3_bind_int(st, 5, r->baseline_version);
		bind_text(st, 6, mb_gate_status_name(r->status));
		bind_text(st, 7, r->compared ? mb_stats_verdict_name(c->verdict) : NULL);
		sqlite3_bind_int64(st, 8, (sqlite3_int64)r->n);
		if (r->compared) {
			bind_real(st, 9, c->mean_base);
			bind_real(st, 10, c->mean_cand);
			bind_real(st, 11, c->diff.mean);
			bind_real(st, 12, c->diff.se);
			bind_real(st, 13, c->diff.level);
			bind_real(st, 14, c->diff.lo);
			bind_real(st, 15, c->diff.hi);
			bind_real(st, 16, c->p_noninferior);
			bind_text(st, 17, mb_stats_method_name(c->diff.method));
		}
		sqlite3_bind_double(st, 18, r->margin);
		bind_real(st, 19, r->mde_planned);
		bind_real(st, 20, r->mde_observed);
		if (r->has_threshold)
			sqlite3_bind_double(st, 21, r->threshold);
		bind_text(st, 22, r->threshold_checked ? mb_stats_verdict_name(r->threshold_verdict)
						       : NULL);
		bind_text(st, 23, r->note[0] ? r->note : NULL);
		if ((error = mb_store_step_done(s, st, "inserting comparisons", err)) < 0)
			goto fail;
	}
	sqlite3_finalize(st);
	st = NULL;
	if ((error = mb_store_exec(s, "COMMIT", "committing the gate", err)) < 0)
		goto fail;
	return 0;
fail:
	sqlite3_finalize(st);
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	*out_id = 0;
	return error;
}

/* --- maintenance ---------------------------------------------------------------------- */

static int scalar_i64(mb_store *s, int64_t *out, const char *sql, mb_error *err)
{
	sqlite3_stmt *st = NULL;
	int rc, error;

	*out = 0;
	if ((error = mb_store_prepare(s, &st, sql, err)) < 0)
		return error;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : mb_store_fail(s, err, rc, "reading stats");
}

int mb_store_stats_get(mb_store_stats *out, mb_store *s, mb_error *err)
{
	int64_t v = 0;
	int error;

	memset(out, 0, sizeof(*out));
	if ((error = scalar_i64(s, &v, "PRAGMA user_version", err)) < 0)
		return error;
	out->schema_version = (int)v;
	if ((error = scalar_i64(s, &out->page_size, "PRAGMA page_size", err)) < 0 ||
	    (error = scalar_i64(s, &out->pages, "PRAGMA page_count", err)) < 0 ||
	    (error = scalar_i64(s, &out->free_pages, "PRAGMA freelist_count", err)) < 0 ||
	    (error = scalar_i64(s, &out->runs, "SELECT count(*) FROM runs", err)) < 0 ||
	    (error = scalar_i64(s, &out->series, "SELECT count(*) FROM series", err)) < 0 ||
	    (error = scalar_i64(s, &out->item_values, "SELECT count(*) FROM item_value", err)) < 0 ||
	    (error = scalar_i64(s, &out->items, "SELECT count(*) FROM items", err)) < 0 ||
	    (error = scalar_i64(s, &out->metrics, "SELECT count(*) FROM metrics", err)) < 0)
		return error;
	/* dbstat is optional in SQLite builds: without it the bytes stay 0 */
	if (scalar_i64(s, &out->item_value_bytes,
		       "SELECT sum(pgsize) FROM dbstat WHERE name IN ('item_value', 'items',"
		       " 'metrics', 'sqlite_autoindex_items_1', 'sqlite_autoindex_metrics_1')",
		       err) < 0) {
		mb_error_clear(err);
		out->item_value_bytes = 0;
	}
	if (out->item_value_bytes > 0 &&
	    scalar_i64(s, &out->table_bytes, "SELECT sum(pgsize) FROM dbstat WHERE name ="
		       " 'item_value'", err) < 0)
		mb_error_clear(err);
	out->bytes_per_item_value = out->item_values > 0 && out->item_value_bytes > 0
		? (double)out->item_value_bytes / (double)out->item_values : NAN;
	return 0;
}

int mb_store_vacuum(mb_store *s, mb_error *err)
{
	MB_ASSERT(!s->in_run);
	return mb_store_exec(s, "VACUUM", "vacuuming", err);
}
