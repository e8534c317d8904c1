/* error.c: one-line error messages on a caller-owned context. */
#include <mechbench/error.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mb_error_clear(mb_error *err)
{
	if (!err)
		return;
	err->code = 0;
	err->msg[0] = '\0';
}

static void one_line(char *s)
{
	for (; *s; s++)
		if (*s == '\n' || *s == '\r')
			*s = ' ';
}

int mb_error_set(mb_error *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	one_line(err->msg);
	err->code = code;
	return code;
}

int mb_error_prefix(mb_error *err, const char *fmt, ...)
{
	char prefix[MB_ERROR_MSG_MAX];
	char old[MB_ERROR_MSG_MAX];
	va_list ap;

	if (!err)
		return MB_ERROR;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
	one_line(err->msg);
	if (err->code == 0)
		err->code = MB_ERROR;
	return err->code;
}

int mb_error_oom(mb_error *err, const char *what, size_t bytes)
{
	return mb_error_set(err, MB_ENOMEM, "out of memory allocating %zu bytes for %s",
			    bytes, what);
}

const char *mb_error_name(int code)
{
	switch (code) {
	case MB_OK: return "OK";
	case MB_ENOTFOUND: return "ENOTFOUND";
	case MB_EMISMATCH: return "EMISMATCH";
	case MB_EIO: return "EIO";
	case MB_EINVALID: return "EINVALID";
	case MB_ENOMEM: return "ENOMEM";
	case MB_EBUSY: return "EBUSY";
	default: return "ERROR";
	}
}

void mb_assert_fail(const char *expr, const char *file, int line)
{
	fprintf(stderr, "mechbench: assertion failed: %s (%s:%d)\n", expr, file, line);
	abort();
}
