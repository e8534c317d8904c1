/*
 * provenance.h: where a run came from (ARCHITECTURE.md, determinism rule 5),
 * written down ONCE. MB_PROVENANCE_FIELDS is the list; from it come the
 * struct's members (below), the runs table's columns (store.c's first
 * migration), the store's INSERT and SELECT (store.c), and the JSON object
 * of baseline files and reports, both ways (provenance.c).
 *
 * X(kind, name, size, at, sql), one row per field, in the runs table's
 * column order (which is also the JSON key order and the struct's):
 *   kind  TEXT   char name[size], "" allowed, TEXT column
 *         OTEXT  char name[size], "" stored as NULL (no repository)
 *         TRI    int, 1 / 0 / -1 unknown: INTEGER or NULL; true/false/null
 *         BOOL   int, 0 or 1
 *         INT    int >= 0 (JSON: up to 2^20)
 *         U64    uint64_t (stored as a signed 64-bit integer; JSON up to INT64_MAX)
 *         REAL   double
 *   size  the char array's size (0 for the other kinds)
 *   at    BEGIN: written with the run's row; COMMIT: when the run commits
 *   sql   the column's declared type
 *
 * Adding a field: a row here, and a NEW store migration that adds its column
 * (ALTER TABLE runs ADD COLUMN): released migrations never change, and the
 * first one creates exactly the columns of MB_PROVENANCE_V1_FIELDS (store.c
 * checks the count).
 */
#ifndef MECHBENCH_PROVENANCE_H
#define MECHBENCH_PROVENANCE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <mechbench/error.h>
#include <mechbench/json.h>

#define MB_PROVENANCE_FIELDS(X)                                                              \
	X(TEXT, suite, 128, BEGIN, "TEXT NOT NULL")                                          \
	X(TEXT, spec_path, 512, BEGIN, "TEXT NOT NULL")   /* repo-relative when in git */    \
	X(TEXT, spec_blob, 41, BEGIN, "TEXT NOT NULL")    /* git blob id of the spec */      \
	X(TRI, spec_committed, 0, BEGIN, "INTEGER")       /* identical to HEAD's */          \
	X(OTEXT, repo_head, 41, BEGIN, "TEXT")            /* HEAD of the spec's repo */      \
	X(TRI, repo_dirty, 0, BEGIN, "INTEGER")           /* tracked files modified */       \
	X(TEXT, code_version, 32, BEGIN, "TEXT NOT NULL") /* mechbench's version */          \
	X(TEXT, code_commit, 64, BEGIN, "TEXT NOT NULL")  /* built from, no "-dirty" */      \
	X(BOOL, code_dirty, 0, BEGIN, "INTEGER NOT NULL")                                    \
	X(U64, seed, 0, BEGIN, "INTEGER NOT NULL")                                           \
	X(INT, threads, 0, BEGIN, "INTEGER NOT NULL")     /* OpenMP threads of the runner */ \
	X(TEXT, cpu, 256, BEGIN, "TEXT NOT NULL")                                            \
	X(TEXT, blas_config, 256, BEGIN, "TEXT NOT NULL") /* with the GEMM backend, ISA */   \
	X(TEXT, blas_core, 64, BEGIN, "TEXT NOT NULL")                                       \
	X(INT, blas_threads, 0, BEGIN, "INTEGER NOT NULL")                                   \
	X(TEXT, compiler, 128, BEGIN, "TEXT NOT NULL")                                       \
	X(TEXT, cflags, 512, BEGIN, "TEXT NOT NULL")                                         \
	X(TEXT, build_type, 32, BEGIN, "TEXT NOT NULL")                                      \
	X(TEXT, started_at, 32, BEGIN, "TEXT NOT NULL")   /* ISO 8601 UTC */                 \
	X(TEXT, finished_at, 32, COMMIT, "TEXT")                                             \
	X(REAL, wall_seconds, 0, COMMIT, "REAL")

/* The fields the store's first migration (schema 1) created. */
#define MB_PROVENANCE_V1_FIELDS 21

#define MB_PROVENANCE_MEMBER_TEXT(name, size) char name[size];
#define MB_PROVENANCE_MEMBER_OTEXT(name, size) char name[size];
#define MB_PROVENANCE_MEMBER_TRI(name, size) int name;
#define MB_PROVENANCE_MEMBER_BOOL(name, size) int name;
#define MB_PROVENANCE_MEMBER_INT(name, size) int name;
#define MB_PROVENANCE_MEMBER_U64(name, size) uint64_t name;
#define MB_PROVENANCE_MEMBER_REAL(name, size) double name;
#define MB_PROVENANCE_MEMBER(kind, name, size, at, sql) MB_PROVENANCE_MEMBER_##kind(name, size)

/* Strings are NUL-terminated and truncated to their arrays. */
typedef struct mb_provenance {
	MB_PROVENANCE_FIELDS(MB_PROVENANCE_MEMBER)
} mb_provenance;

typedef enum mb_provenance_kind {
	MB_PROVENANCE_TEXT,
	MB_PROVENANCE_OTEXT,
	MB_PROVENANCE_TRI,
	MB_PROVENANCE_BOOL,
	MB_PROVENANCE_INT,
	MB_PROVENANCE_U64,
	MB_PROVENANCE_REAL,
} mb_provenance_kind;

typedef enum mb_provenance_at {
	MB_PROVENANCE_BEGIN,
	MB_PROVENANCE_COMMIT,
} mb_provenance_at;

/* One row of the list, as data: for code that loops over the fields. */
typedef struct mb_provenance_field {
	const char *name;
	mb_provenance_kind kind;
	size_t offset; /* offsetof(mb_provenance, name) */
	size_t size;   /* the char array's size; 0 for numbers */
	mb_provenance_at at;
} mb_provenance_field;

/* The rows of MB_PROVENANCE_FIELDS, in order (borrowed, static). */
extern const mb_provenance_field mb_provenance_fields[];
extern const size_t mb_provenance_n_fields;

/* The provenance as a JSON object (new reference; NULL on allocation
 * failure): every field under its own name, in list order, tri-states as
 * true/false/null. Baseline files and JSON reports embed it. */
json_t *mb_provenance_to_json(const mb_provenance *p);

/* Reads the object o (at JSON path `at`, for messages) into p: every field
 * is required except "suite" (a baseline's top-level "suite" is the one
 * read; p->suite is left as it is). Errors name the field (mb_json_*). */
int mb_provenance_from_json(mb_provenance *p, const mb_json_doc *doc, json_t *o, const char *at,
			    mb_error *err);

#endif
