/* fileio.c: whole-file reads and atomic writes (temp file, fsync, rename). */
#include <mechbench/fileio.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int mb_file_read(char **out, size_t *len, const char *path, mb_error *err)
{
	FILE *f;
	char *buf = NULL;
	size_t cap = 0, n = 0;
	int error = 0;

	*out = NULL;
	*len = 0;
	f = fopen(path, "rb");
	if (!f)
		return mb_error_set(err, errno == ENOENT ? MB_ENOTFOUND : MB_EIO, "%s: %s", path,
				    strerror(errno));
	for (;;) {
		if (n + 1 >= cap) {
			size_t ncap = cap ? cap * 2 : 1 << 14;
			char *nb = realloc(buf, ncap);
			if (!nb) {
				error = mb_error_oom(err, path, ncap);
				goto cleanup;
			}
			buf = nb;
			cap = ncap;
		}
		size_t got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		error = mb_error_set(err, MB_EIO, "%s: read error", path);
		goto cleanup;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
cleanup:
	free(buf);
	fclose(f);
	return error;
}

static void dir_of(char *buf, size_t cap, const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(buf, cap, ".");
	else if (slash == path)
		snprintf(buf, cap, "/");
	else
		snprintf(buf, cap, "%.*s", (int)(slash - path), path);
}

/* mkdir -p of path's folder. Failures surface at the write that follows. */
static void make_parents(const char *path)
{
	char dir[4096];

	dir_of(dir, sizeof(dir), path);
	for (char *p = dir + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			mkdir(dir, 0755);
			*p = '/';
		}
	mkdir(dir, 0755);
}

int mb_file_write_atomic(const char *path, const void *buf, size_t len, mb_error *err)
{
	char tmp[4096], dir[4096];
	const char *p = buf;
	size_t done = 0;
	int fd, dfd, error = 0;

	make_parents(path);
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path) >= sizeof(tmp))
		return mb_error_set(err, MB_EINVALID, "%s: path too long", path);
	fd = mkstemp(tmp);
	if (fd < 0)
		return mb_error_set(err, MB_EIO, "%s: cannot create a temporary file: %s", path,
				    strerror(errno));
	while (done < len) {
		ssize_t w = write(fd, p + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			error = mb_error_set(err, MB_EIO, "%s: write failed: %s", path,
					     strerror(errno));
			break;
		}
		done += (size_t)w;
	}
	if (!error && fsync(fd) < 0)
		error = mb_error_set(err, MB_EIO, "%s: fsync failed: %s", path, strerror(errno));
	/* mkstemp makes 0600 files; datasets, baselines and reports are shared. */
	if (!error && fchmod(fd, 0644) < 0)
		error = mb_error_set(err, MB_EIO, "%s: chmod failed: %s", path, strerror(errno));
	if (close(fd) < 0 && !error)
		error = mb_error_set(err, MB_EIO, "%s: close failed: %s", path, strerror(errno));
	if (!error && rename(tmp, path) < 0)
		error = mb_error_set(err, MB_EIO, "%s: rename failed: %s", path, strerror(errno));
	if (error) {
		unlink(tmp);
		return error;
	}
	dir_of(dir, sizeof(dir), path);
	dfd = open(dir, O_RDONLY);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

int mb_path_join(char *buf, size_t cap, const char *dir, const char *rel, mb_error *err)
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
