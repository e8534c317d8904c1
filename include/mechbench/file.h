/*
 * file.h: whole-file reads and the one safe writer every output goes through.
 *
 * A writer that fails half way (disk full, a killed process) must never leave
 * a half-written file where a reader will find it: mb_file_atomic_* writes to
 * a fresh temporary "<dir>/.<name>.XXXXXX.tmp" in the target's folder (opened
 * O_CREAT|O_EXCL|O_NOFOLLOW, so a planted file or link there is never
 * followed or truncated), fsyncs it, renames it over path and fsyncs the
 * folder; on any failure the temporary is removed and an older file at path
 * stays intact.
 *
 * Outputs that are not regular files:
 *   - "-", /dev/stdout, /dev/stderr, /dev/fd/N: written directly to that
 *     descriptor (streamed);
 *   - a FIFO or character device (or a symbolic link to one): opened and
 *     written directly (streamed), never replaced;
 *   - a symbolic link to anything else: refused (MB_EINVALID, "is a symbolic
 *     link"). Outputs are never written through links: give the target.
 *   - a folder, socket or block device: refused.
 * A streamed output cannot be all-or-nothing: a failure part way leaves what
 * was already written in the pipe.
 */
#ifndef MECHBENCH_FILE_H
#define MECHBENCH_FILE_H

#include <stddef.h>

#include <mechbench/error.h>

/* Reads the regular file at path into *out (malloc'd, owned by the caller,
 * one extra NUL byte after the data) and its size into *len. Errors name the
 * path: MB_ENOTFOUND when absent, MB_EINVALID for a directory or other
 * non-regular file, MB_EIO for read errors, MB_ENOMEM. */
int mb_file_read_all(unsigned char **out, size_t *len, const char *path, mb_error *err);

/* mb_file_read_all for text parsers, which take char: the same bytes, NUL
 * terminated, in a char buffer. */
int mb_file_read_text(char **out, size_t *len, const char *path, mb_error *err);

typedef struct mb_file_atomic {
	char *path; /* owned copy of the final path */
	char *tmp;  /* owned: path + ".tmp" */
	int fd;     /* -1 once closed */
	int failed; /* a write failed; commit refuses */
	int direct; /* streamed to a pipe, terminal or descriptor: no tmp, no rename */
} mb_file_atomic;

/* Checks, before any work, that path can be written by mb_file_atomic_open:
 * not empty, not a folder, link or special file (see above), and its folder
 * (or the nearest existing ancestor, when the rest is created on write) is a
 * writable folder. MB_EINVALID or MB_EIO naming path. Every command checks
 * each of its outputs with this before it runs or stores anything. */
int mb_file_check_output(const char *path, mb_error *err);
/* 1 when the paths a and b name one regular file, or would once written:
 * the same inode when both exist, else (neither exists) the same last
 * component in the same folder. Streams ("-", /dev/std*, FIFOs,
 * terminals) are never the same file as anything: they are written to,
 * not replaced. */
int mb_file_same(const char *a, const char *b);
/* The same for an output folder (created if missing): not empty, and it or
 * its nearest existing ancestor is a writable folder. */
int mb_file_check_dir(const char *path, mb_error *err);

/* Creates a fresh temporary next to path for writing (or opens a streamed
 * output). Checks path as mb_file_check_output. On error nothing is created. */
int mb_file_atomic_open(mb_file_atomic *f, const char *path, mb_error *err);
/* Appends n bytes; retries short writes. On error the message names the tmp
 * and the OS reason (e.g. "No space left on device"); call _abort next. */
int mb_file_atomic_write(mb_file_atomic *f, const void *buf, size_t n, mb_error *err);
/* fsync, close and rename into place (a streamed output is just closed); on
 * error the tmp is removed and f is
 * disposed as by _abort. */
int mb_file_atomic_commit(mb_file_atomic *f, mb_error *err);
/* Closes and removes the tmp and frees f's strings. Safe to call again, after
 * _commit, and after _open whatever it returned (not on a merely zeroed f). */
void mb_file_atomic_abort(mb_file_atomic *f);

/* All of the above in one call, for a buffer already in memory: creates
 * path's missing parent folders, then writes len bytes through
 * mb_file_atomic_*. Errors as mb_file_atomic_*. */
int mb_file_write_all(const char *path, const void *buf, size_t len, mb_error *err);

/* 1 when p is a relative path that stays inside its root: not empty, not
 * absolute, no ".." and no empty segment ("a//b"). Paths in suite specs and
 * manifests must be. */
int mb_file_path_is_safe(const char *p);

/* Joins a folder and a relative path into buf ("dir/rel"; rel alone when dir
 * is empty or rel is absolute). MB_EINVALID naming both when it does not fit. */
int mb_file_path_join(char *buf, size_t cap, const char *dir, const char *rel, mb_error *err);

#endif
