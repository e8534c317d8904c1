/*
 * store_int.h: what store.c and results.c share: one mapping of SQLite
 * result codes to mechbench errors, the statement helpers built on it, and
 * the column readers.
 */
#ifndef MB_STORE_INT_H
#define MB_STORE_INT_H

#include <mechbench/store.h>

#include <sqlite3.h>

/* Maps SQLite result rc to one error naming the database file and `what`:
 *   BUSY, LOCKED              -> MB_EBUSY (with the time waited)
 *   READONLY, FULL, IOERR,
 *   CANTOPEN, PERM, AUTH      -> MB_EIO
 *   NOTADB, CORRUPT,
 *   CONSTRAINT, MISMATCH      -> MB_EINVALID
 *   NOMEM                     -> MB_ENOMEM
 *   anything else             -> MB_EIO
 * and copies sqlite3_errmsg into the message. Returns the code. */
int mb_store_fail(mb_store *s, mb_error *err, int rc, const char *what);

/* sqlite3_exec / prepare / step-to-DONE (then reset and clear bindings),
 * failing through mb_store_fail. */
int mb_store_exec(mb_store *s, const char *sql, const char *what, mb_error *err);
int mb_store_prepare(mb_store *s, sqlite3_stmt **st, const char *sql, mb_error *err);
int mb_store_step_done(mb_store *s, sqlite3_stmt *st, const char *what, mb_error *err);

/* Column i of the current row as text: copied into buf (truncated to cap),
 * or as a malloc'd copy (NULL when out of memory); a NULL column reads "". */
void mb_store_col_into(char *buf, size_t cap, sqlite3_stmt *st, int i);
char *mb_store_col_dup(sqlite3_stmt *st, int i);

#endif
