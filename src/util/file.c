/* file.c: whole-file reads and safe output writes (file.h). */
#include <mechbench/file.h>
#include <mechbench/str.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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

/* The folder of path (".", "/" or "a/b") into dir. */
static void dir_of(char *dir, size_t cap, const char *path)
{
	char *slash;

	snprintf(dir, cap, "%s", path);
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		snprintf(dir, cap, ".");
}

/* Outputs that name an already open descriptor: "-" (stdout) and the
 * /dev/std* and /dev/fd/N links. -1 for any other path. */
static int named_fd(const char *path)
{
	if (strcmp(path, "-") == 0 || strcmp(path, "/dev/stdout") == 0)
		return STDOUT_FILENO;
	if (strcmp(path, "/dev/stderr") == 0)
		return STDERR_FILENO;
	if (strncmp(path, "/dev/fd/", 8) == 0 || strncmp(path, "/proc/self/fd/", 14) == 0) {
		const char *d = path + (path[1] == 'd' ? 8 : 14);
		char *end;
		long v = strtol(d, &end, 10);
		if (*d && !*end && v >= 0 && v < 1024)
			return (int)v;
	}
	return -1;
}

static int is_stream(mode_t m)
{
	return S_ISFIFO(m) || S_ISCHR(m);
}

int mb_file_same(const char *a, const char *b)
{
	struct stat sa, sb;
	int ea, eb;
	const char *na, *nb;
	char da[4096], db[4096];

	if (!a || !b || !a[0] || !b[0] || named_fd(a) >= 0 || named_fd(b) >= 0)
		return 0;
	ea = stat(a, &sa) == 0;
	eb = stat(b, &sb) == 0;
	if (ea && eb)
		return !is_stream(sa.st_mode) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
	if (ea || eb)
		return 0;
	na = strrchr(a, '/') ? strrchr(a, '/') + 1 : a;
	nb = strrchr(b, '/') ? strrchr(b, '/') + 1 : b;
	if (strcmp(na, nb) != 0)
		return 0;
	dir_of(da, sizeof(da), a);
	dir_of(db, sizeof(db), b);
	if (stat(da, &sa) == 0 && stat(db, &sb) == 0)
		return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
	return strcmp(da, db) == 0; /* folders still to be made: by their spelling */
}

int mb_file_check_output(const char *path, mb_error *err)
{
	char dir[4096];
	struct stat st;

	if (!path || !path[0])
		return mb_error_set(err, MB_EINVALID, "output path is empty");
	if (named_fd(path) >= 0)
		return 0;
	if (path[strlen(path) - 1] == '/')
		return mb_error_set(err, MB_EINVALID, "%s: names a folder, not a file to write", path);
	if (lstat(path, &st) == 0) {
		if (S_ISLNK(st.st_mode)) {
			if (stat(path, &st) == 0 && is_stream(st.st_mode))
				return 0; /* a link to a pipe or terminal: streamed */
			return mb_error_set(err, MB_EINVALID, "%s: is a symbolic link; outputs are "
					    "never written through links (give its target's path)",
					    path);
		}
		if (S_ISDIR(st.st_mode))
			return mb_error_set(err, MB_EINVALID, "%s: is a folder, not a file to write",
					    path);
		if (is_stream(st.st_mode))
			return 0;
		if (!S_ISREG(st.st_mode))
			return mb_error_set(err, MB_EINVALID, "%s: not a regular file, pipe or "
					    "terminal; refusing to replace it", path);
	}
	dir_of(dir, sizeof(dir), path);
	return mb_file_check_dir(dir, err);
}

int mb_file_check_dir(const char *path, mb_error *err)
{
	char dir[4096];
	struct stat st;

	if (!path || !path[0])
		return mb_error_set(err, MB_EINVALID, "output folder is empty");
	snprintf(dir, sizeof(dir), "%s", path);
	/* the nearest folder that exists: the rest is created when written */
	for (;;) {
		char *slash;
		if (stat(dir, &st) == 0)
			break;
		if (errno == ENOTDIR)
			return mb_error_set(err, MB_EINVALID, "%s: cannot write here (a part of %s is "
					    "not a folder)", path, dir);
		if (errno != ENOENT)
			return mb_error_set(err, MB_EIO, "%s: %s", dir, strerror(errno));
		slash = strrchr(dir, '/');
		while (slash && slash > dir && slash[1] == '\0') {
			*slash = '\0';
			slash = strrchr(dir, '/');
		}
		if (!slash)
			snprintf(dir, sizeof(dir), ".");
		else if (slash == dir)
			slash[1] = '\0';
		else
			*slash = '\0';
	}
	if (!S_ISDIR(st.st_mode))
		return mb_error_set(err, MB_EINVALID, "%s: cannot write here (%s is not a folder)",
				    path, dir);
	if (access(dir, W_OK | X_OK) != 0)
		return mb_error_set(err, MB_EIO, "%s: cannot write here (folder %s is not writable)",
				    path, dir);
	return 0;
}

/* A name no other writer uses: "<dir>/.<base>.<6 letters>.tmp". */
static void tmp_name(char *buf, size_t cap, const char *path, unsigned attempt)
{
	static const char letters[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	static unsigned counter;
	char dir[4096], suffix[7];
	const char *base = strrchr(path, '/');
	unsigned long x;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	x = (unsigned long)ts.tv_nsec * 2654435761u ^ (unsigned long)getpid() * 40503u ^
	    (unsigned long)(++counter + attempt) * 97u;
	for (int i = 0; i < 6; i++, x /= 36)
		suffix[i] = letters[x % 36];
	suffix[6] = '\0';
	dir_of(dir, sizeof(dir), path);
	base = base ? base + 1 : path;
	snprintf(buf, cap, "%s/.%.200s.%s.tmp", dir, base, suffix);
}

int mb_file_atomic_open(mb_file_atomic *f, const char *path, mb_error *err)
{
	size_t cap = strlen(path) + 32;
	struct stat st;
	int have = 0, fd, error;

	memset(f, 0, sizeof(*f));
	f->fd = -1;
	if ((error = mb_file_check_output(path, err)) < 0)
		return error;
	f->path = mb_str_dup(path);
	if (!f->path)
		return mb_error_oom(err, path, cap);
	if ((fd = named_fd(path)) >= 0) {
		/* an open descriptor: write to it directly */
		f->direct = 1;
		f->fd = dup(fd);
		if (f->fd < 0) {
			int e = errno;
			mb_file_atomic_abort(f);
			return mb_error_set(err, MB_EIO, "%s: %s", path, strerror(e));
		}
		return 0;
	}
	if (lstat(path, &st) == 0) {
		have = 1;
		if (S_ISLNK(st.st_mode) || is_stream(st.st_mode)) {
			/* a pipe or terminal (or a link to one): streamed, never replaced */
			f->direct = 1;
			f->fd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
			if (f->fd < 0) {
				int e = errno;
				mb_file_atomic_abort(f);
				return mb_error_set(err, MB_EIO, "%s: %s", path, strerror(e));
			}
			return 0;
		}
	}
	f->tmp = malloc(cap + 4096);
	if (!f->tmp) {
		mb_file_atomic_abort(f);
		return mb_error_oom(err, path, cap);
	}
	for (unsigned attempt = 0; attempt < 100; attempt++) {
		tmp_name(f->tmp, cap + 4096, path, attempt);
		f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (f->fd >= 0 || errno != EEXIST)
			break;
	}
	if (f->fd < 0) {
		int e = errno;
		char tmp[4200];
		snprintf(tmp, sizeof(tmp), "%s", f->tmp);
		free(f->tmp); /* not created: nothing to remove */
		f->tmp = NULL;
		mb_file_atomic_abort(f);
		return mb_error_set(err, e == ENOENT ? MB_ENOTFOUND : MB_EIO, "%s: cannot create %s: %s",
				    path, tmp, strerror(e));
	}
	if (have && S_ISREG(st.st_mode))
		(void)fchmod(f->fd, st.st_mode & 07777); /* keep the replaced file's mode */
	return 0;
}

int mb_file_atomic_write(mb_file_atomic *f, const void *buf, size_t n, mb_error *err)
{
	const unsigned char *p = buf;

	if (f->failed || f->fd < 0)
		return mb_error_set(err, MB_EIO, "%s: write after a failed write",
				    f->path ? f->path : "?");
	while (n > 0) {
		ssize_t w = write(f->fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			f->failed = 1;
			return mb_error_set(err, MB_EIO, "%s: writing %s: %s", f->path,
					    f->tmp ? f->tmp : f->path, strerror(errno));
		}
		if (w == 0) {
			f->failed = 1;
			return mb_error_set(err, MB_EIO, "%s: writing %s: no progress", f->path,
					    f->tmp ? f->tmp : f->path);
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* fsync of path's folder, so the rename itself survives a crash. */
static void sync_dir(const char *path)
{
	char dir[4096];
	int fd;

	dir_of(dir, sizeof(dir), path);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

int mb_file_atomic_commit(mb_file_atomic *f, mb_error *err)
{
	int error = 0;

	if (f->failed || f->fd < 0) {
		error = mb_error_set(err, MB_EIO, "%s: commit after a failed write", f->path ? f->path : "?");
		goto cleanup;
	}
	if (f->direct) {
		int rc = close(f->fd);
		f->fd = -1;
		if (rc < 0)
			error = mb_error_set(err, MB_EIO, "%s: %s", f->path, strerror(errno));
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
	sync_dir(f->path);

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
	char *dir = mb_str_dup(path);
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

	if (path && path[0] && named_fd(path) < 0)
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
