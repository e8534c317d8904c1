/*
 * error.h: error codes and the one-line error message carried on a context.
 *
 * Every fallible function returns 0 or a negative MB_E* code and, when it
 * fails, writes one line into the caller's mb_error naming the file, field,
 * offset, tensor, hook or layer at fault (libgit2's error-handling rule).
 * The mb_error may be NULL when the caller does not want the message.
 */
#ifndef MECHBENCH_ERROR_H
#define MECHBENCH_ERROR_H

#include <stddef.h>

enum {
	MB_OK = 0,
	MB_ERROR = -1,     /* anything not listed below */
	MB_ENOTFOUND = -2, /* a file, tensor, ref, key or item that does not exist */
	MB_EMISMATCH = -3, /* a checksum, shape, version or item set that disagrees */
	MB_EIO = -4,       /* the operating system refused (read, write, mmap, disk full) */
	MB_EINVALID = -5,  /* malformed input: JSON, header, field value */
	MB_ENOMEM = -6,    /* an allocation failed */
	MB_EBUSY = -7,     /* a locked database or a resource in use */
};

#define MB_ERROR_MSG_MAX 1024

typedef struct mb_error {
	int code;                   /* last code set, 0 when clear */
	char msg[MB_ERROR_MSG_MAX]; /* one line, no trailing newline */
} mb_error;

/* Resets err to "no error". Safe on NULL. */
void mb_error_clear(mb_error *err);

/* Formats a message into err (printf-style) and returns code, so a caller can
 * write `return mb_error_set(err, MB_EINVALID, "%s: ...", path);`. Newlines in
 * the formatted text are replaced with spaces to keep the message one line. */
int mb_error_set(mb_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prepends "<prefix>: " to the message already in err (adding context as an
 * error travels up, e.g. the file name) and returns err->code. */
int mb_error_prefix(mb_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Sets MB_ENOMEM with a message naming what could not be allocated. */
int mb_error_oom(mb_error *err, const char *what, size_t bytes);

/* A short name for a code ("EINVALID"), for logs. */
const char *mb_error_name(int code);

/* Programming errors: abort with file and line. Not for runtime input errors. */
#define MB_ASSERT(cond)                                                        \
	((cond) ? (void)0 : mb_assert_fail(#cond, __FILE__, __LINE__))
void mb_assert_fail(const char *expr, const char *file, int line)
	__attribute__((noreturn));

#endif
