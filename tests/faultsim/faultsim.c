/*
 * faultsim.c: fault injection for the mechbench binary, SQLite style
 * (do_faultsim_test): linked only into build/mechbench_faultsim with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=write,
 * --wrap=fsync,--wrap=rename, so every call our own code makes (the CLI and
 * libmechbench_core; not SQLite's, jansson's or libc's internal ones) passes
 * through a counter. The production binary is unchanged.
 *
 * Environment:
 *   MB_FAULT_MALLOC=N   the Nth allocation (1-based) returns NULL (ENOMEM);
 *                       the ones after it succeed (a transient fault).
 *   MB_FAULT_IO=N       the Nth write/fsync/rename fails ...
 *   MB_FAULT_IO_KIND=K  ... as K: enospc (default), eio, or short (a write
 *                       that writes half and then fails with ENOSPC).
 *   MB_FAULT_REPORT=F   at exit, append "allocs N io M hit H" to file F:
 *                       the counts a sweep iterates over, and whether the
 *                       fault was reached.
 * ci/faultsim runs the sweeps.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
ssize_t __real_write(int fd, const void *buf, size_t n);
int __real_fsync(int fd);
int __real_rename(const char *from, const char *to);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
ssize_t __wrap_write(int fd, const void *buf, size_t n);
int __wrap_fsync(int fd);
int __wrap_rename(const char *from, const char *to);

static long alloc_fail = -1, io_fail = -1, allocs, ios, hit;
static int io_kind; /* 0 enospc, 1 eio, 2 short */
static int ready;

static void report(void)
{
	const char *f = getenv("MB_FAULT_REPORT");
	FILE *fp;

	if (!f || !(fp = fopen(f, "a")))
		return;
	fprintf(fp, "allocs %ld io %ld hit %ld\n", allocs, ios, hit);
	fclose(fp);
}

static void setup(void)
{
	const char *a = getenv("MB_FAULT_MALLOC"), *i = getenv("MB_FAULT_IO");
	const char *k = getenv("MB_FAULT_IO_KIND");

	ready = 1;
	alloc_fail = a ? strtol(a, NULL, 10) : -1;
	io_fail = i ? strtol(i, NULL, 10) : -1;
	io_kind = k && strcmp(k, "eio") == 0 ? 1 : k && strcmp(k, "short") == 0 ? 2 : 0;
	atexit(report);
}

static int alloc_fails(void)
{
	if (!ready)
		setup();
	if (++allocs == alloc_fail) {
		hit++;
		errno = ENOMEM;
		return 1;
	}
	return 0;
}

/* Only descriptors above stderr: the tool's own outputs and files. */
static int io_fails(void)
{
	if (!ready)
		setup();
	if (++ios == io_fail) {
		hit++;
		errno = io_kind == 1 ? EIO : ENOSPC;
		return 1;
	}
	return 0;
}

void *__wrap_malloc(size_t n)
{
	return alloc_fails() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return alloc_fails() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
	return alloc_fails() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
	return alloc_fails() ? NULL : __real_strdup(s);
}

ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
	static int short_fd = -1;

	if (fd > 2 && fd == short_fd) { /* the rest after a short write: disk full */
		short_fd = -1;
		errno = ENOSPC;
		return -1;
	}
	if (fd > 2 && io_fails()) {
		if (io_kind == 2 && n > 1) {
			ssize_t w = __real_write(fd, buf, n / 2);
			if (w > 0) {
				short_fd = fd;
				return w;
			}
		}
		return -1;
	}
	return __real_write(fd, buf, n);
}

int __wrap_fsync(int fd)
{
	return io_fails() ? -1 : __real_fsync(fd);
}

int __wrap_rename(const char *from, const char *to)
{
	return io_fails() ? -1 : __real_rename(from, to);
}
