/* file.c: whole-file reads and write-to-tmp-then-rename writes. */
#include <mechbench/file.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int mb_file_read_all(unsigned char **out, size_t *len, const char *path, mb_error *err)
{
	unsigned char *buf = NULL;
	struct stat sb;
	size_t cap, got = 0;
	int fd;
	int error = 0;

	*out = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mb_error_set(err, errno == ENOENT ? MB_ENOTFOUND : MB_EIO, "%s: %s", path,
				    strerror(errno));
	if (fstat(fd, &sb) < 0) {
		error = mb_error_set(err, MB_EIO, "%s: %s", path, strerror(errno));
		goto cleanup;
	}
	if (!S_ISREG(sb.st_mode)) {
		error = mb_error_set(err, MB_EINVALID, "%s: not a regular file", path);
		goto cleanup;
	}
	/* Size from fstat, but read to EOF in case the file grew meanwhile. */
	cap = (size_t)sb.st_size + 1;
	buf = malloc(cap);
	if (!buf) {
		error = mb_error_oom(err, path, cap);
		goto cleanup;
	}
	for (;;) {
		ssize_t r;
		if (got + 1 == cap) {
			size_t ncap = cap * 2;
			unsigned char *nb = realloc(buf, ncap);
			if (!nb) {
				error = mb_error_oom(err, path, ncap);
				goto cleanup;
			}
			buf = nb;
			cap = ncap;
		}
		r = read(fd, buf + got, cap - 1 - got);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			error = mb_error_set(err, MB_EIO, "%s: read error: %s", path, strerror(errno));
			goto cleanup;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	buf[got] = 0;
	*out = buf;
	*len = got;
	buf = NULL;

cleanup:
	free(buf);
	close(fd);
	return error;
}

int mb_file_read_text(char **out, size_t *len, const char *path, mb_error *err)
{
	unsigned char *raw = NULL;
	int error = mb_file_read_all(&raw, len, path, err);

	*out = (char *)raw;
	return error;
}

static char *dup_str(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = malloc(n);
	if (p)
		memcpy(p, s, n);
	return p;
}

int mb_file_atomic_open(mb_file_atomic *f, const char *path, mb_error *err)
{
	size_t n = strlen(path);

	memset(f, 0, sizeof(*f));
	f->fd = -1;
	f->path = dup_str(path);
	f->tmp = malloc(n + 5);
	if (!f->path || !f->tmp) {
		mb_file_atomic_abort(f);
		return mb_error_oom(err, path, n + 5);
	}
	memcpy(f->tmp, path, n);
	memcpy(f->tmp + n, ".tmp", 5);
	f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (f->fd < 0) {
		int e = errno;
		free(f->tmp); /* not created: nothing to remove */
		f->tmp = NULL;
		mb_file_atomic_abort(f);
		return mb_error_set(err, e == ENOENT ? MB_ENOTFOUND : MB_EIO, "%s: cannot create %s.tmp: %s",
				    path, path, strerror(e));
	}
	return 0;
}

int mb_file_atomic_write(mb_file_atomic *f, const void *buf, size_t n, mb_error *err)
{
	const unsigned char *p = buf;

	if (f->failed || f->fd < 0)
		return mb_error_set(err, MB_EIO, "%s: write after a failed write", f->path);
	while (n > 0) {
		ssize_t w = write(f->fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			f->failed = 1;
			return mb_error_set(err, MB_EIO, "%s: writing %s: %s", f->path, f->tmp,
					    strerror(errno));
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int mb_file_atomic_commit(mb_file_atomic *f, mb_error *err)
{
	int error = 0;

	if (f->failed || f->fd < 0) {
		error = mb_error_set(err, MB_EIO, "%s: commit after a failed write", f->path ? f->path : "?");
		goto cleanup;
	}
	if (fsync(f->fd) < 0) {
		error = mb_error_set(err, MB_EIO, "%s: fsync of %s: %s", f->path, f->tmp,
				     strerror(errno));
		goto cleanup;
	}
	{
		int rc = close(f->fd);
		f->fd = -1;
		if (rc < 0) {
			error = mb_error_set(err, MB_EIO, "%s: closing %s: %s", f->path, f->tmp,
					     strerror(errno));
			goto cleanup;
		}
	}
	if (rename(f->tmp, f->path) < 0) {
		error = mb_error_set(err, MB_EIO, "%s: renaming %s into place: %s", f->path, f->tmp,
				     strerror(errno));
		goto cleanup;
	}
	free(f->tmp); /* renamed: nothing left to remove */
	f->tmp = NULL;

cleanup:
	mb_file_atomic_abort(f);
	return error;
}

void mb_file_atomic_abort(mb_file_atomic *f)
{
	if (!f)
		return;
	if (f->fd >= 0)
		close(f->fd);
	if (f->tmp)
		unlink(f->tmp);
	free(f->tmp);
	free(f->path);
	f->tmp = NULL;
	f->path = NULL;
	f->fd = -1;
}

/* mkdir -p of path's folder. A failure shows up as the write's error. */
static void make_parents(const char *path)
{
	char *dir = dup_str(path);
	char *slash = dir ? strrchr(dir, '/') : NULL;

	if (slash && slash != dir) {
		*slash = '\0';
		for (char *p = dir + 1; *p; p++)
			if (*p == '/') {
				*p = '\0';
				mkdir(dir, 0755);
				*p = '/';
			}
		mkdir(dir, 0755);
	}
	free(dir);
}

int mb_file_write_all(const char *path, const void *buf, size_t len, mb_error *err)
{
	mb_file_atomic f;
	int error;

	make_parents(path);
	if ((error = mb_file_atomic_open(&f, path, err)) < 0)
		return error;
	if ((error = mb_file_atomic_write(&f, buf, len, err)) < 0) {
		mb_file_atomic_abort(&f);
		return error;
	}
	return mb_file_atomic_commit(&f, err);
}

int mb_file_path_join(char *buf, size_t cap, const char *dir, const char *rel, mb_error *err)
{
	int n;

	if (!dir || !dir[0] || rel[0] == '/')
		n = snprintf(buf, cap, "%s", rel);
	else if (dir[strlen(dir) - 1] == '/')
		n = snprintf(buf, cap, "%s%s", dir, rel);
	else
		n = snprintf(buf, cap, "%s/%s", dir, rel);
	if (n < 0 || (size_t)n >= cap)
		return mb_error_set(err, MB_EINVALID, "%s/%s: path too long", dir, rel);
	return 0;
}

int mb_file_path_is_safe(const char *p)
{
	if (!p[0] || p[0] == '/')
		return 0;
	for (const char *s = p; *s;) {
		size_t n = strcspn(s, "/");
		if (n == 0 || (n == 2 && s[0] == '.' && s[1] == '.'))
			return 0;
		s += n;
		if (*s == '/')
			s++;
	}
	return 1;
}
