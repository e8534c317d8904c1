/*
 * fileio.h: whole-file reads and atomic whole-file writes.
 *
 * Nothing on disk is ever left half-written: a write goes to a temporary
 * file beside the target, is flushed with fsync, then renamed over it (and
 * the directory is synced), so a reader sees the old file or the new one.
 */
#ifndef MECHBENCH_FILEIO_H
#define MECHBENCH_FILEIO_H

#include <stddef.h>

#include <mechbench/error.h>

/* Reads the file at path into *out (malloc'd, NUL-terminated, caller frees;
 * *len excludes the NUL). Returns 0, MB_ENOTFOUND, MB_EIO or MB_ENOMEM; the
 * message names the path. */
int mb_file_read(char **out, size_t *len, const char *path, mb_error *err);

/* Writes len bytes to path atomically (temp file, fsync, rename, fsync of
 * the directory), creating missing parent folders first. Returns 0 or MB_EIO naming the path (disk full included);
 * on failure the target is untouched and the temp file removed. */
int mb_file_write_atomic(const char *path, const void *buf, size_t len, mb_error *err);

/* Joins dir and a relative path into buf ("dir/rel"; rel alone when dir is
 * empty or rel is absolute). Returns 0 or MB_EINVALID when it does not fit. */
int mb_path_join(char *buf, size_t cap, const char *dir, const char *rel, mb_error *err);

#endif
