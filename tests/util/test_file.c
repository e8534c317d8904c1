/* file: whole-file reads and all-or-nothing writes (tmp + fsync + rename). */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mechbench/file.h>

static int exists(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0;
}

static void scratch_dir(char *buf, size_t cap, const char *name)
{
	snprintf(buf, cap, "%s/test-scratch-file-%s-%ld", MB_BINARY_DIR, name, (long)getpid());
	cr_assert(mkdir(buf, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", buf, strerror(errno));
}

Test(file, atomic_commit_replaces_the_file_and_removes_the_tmp)
{
	char dir[512], path[600], tmp[700];
	mb_file_atomic f;
	mb_error err;
	unsigned char *buf;
	size_t len;

	scratch_dir(dir, sizeof(dir), "commit");
	snprintf(path, sizeof(path), "%s/a.bin", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	cr_assert_eq(mb_file_atomic_open(&f, path, &err), 0, "%s", err.msg);
	cr_expect(exists(tmp));
	cr_expect_not(exists(path), "nothing at path before commit");
	cr_assert_eq(mb_file_atomic_write(&f, "hello ", 6, &err), 0);
	cr_assert_eq(mb_file_atomic_write(&f, "world", 5, &err), 0);
	cr_assert_eq(mb_file_atomic_commit(&f, &err), 0, "%s", err.msg);
	mb_file_atomic_abort(&f); /* harmless after commit */
	cr_expect_not(exists(tmp));
	cr_assert_eq(mb_file_read_all(&buf, &len, path, &err), 0, "%s", err.msg);
	cr_expect_eq(len, 11);
	cr_expect_str_eq((char *)buf, "hello world"); /* NUL-terminated */
	free(buf);
	unlink(path);
	rmdir(dir);
}

Test(file, atomic_abort_leaves_the_old_file_untouched)
{
	char dir[512], path[600], tmp[700];
	mb_file_atomic f;
	mb_error err;
	unsigned char *buf;
	size_t len;
	FILE *fp;

	scratch_dir(dir, sizeof(dir), "abort");
	snprintf(path, sizeof(path), "%s/a.bin", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fp = fopen(path, "wb");
	cr_assert_not_null(fp);
	fputs("old", fp);
	fclose(fp);
	cr_assert_eq(mb_file_atomic_open(&f, path, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_file_atomic_write(&f, "new contents", 12, &err), 0);
	mb_file_atomic_abort(&f);
	cr_expect_not(exists(tmp));
	cr_assert_eq(mb_file_read_all(&buf, &len, path, &err), 0, "%s", err.msg);
	cr_expect_str_eq((char *)buf, "old");
	free(buf);
	unlink(path);
	rmdir(dir);
}

Test(file, a_failed_rename_removes_the_tmp)
{
	char dir[512], path[600], tmp[700];
	mb_file_atomic f;
	mb_error err;

	/* path is a non-empty directory: the rename over it must fail */
	scratch_dir(dir, sizeof(dir), "rename");
	snprintf(path, sizeof(path), "%s/target", dir);
	snprintf(tmp, sizeof(tmp), "%s/target/inner", dir);
	cr_assert_eq(mkdir(path, 0755), 0);
	cr_assert_eq(mkdir(tmp, 0755), 0);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	cr_assert_eq(mb_file_atomic_open(&f, path, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_file_atomic_write(&f, "x", 1, &err), 0);
	cr_expect_eq(mb_file_atomic_commit(&f, &err), MB_EIO);
	cr_expect(strstr(err.msg, "renaming") != NULL && strstr(err.msg, path) != NULL, "%s",
		  err.msg);
	cr_expect_not(exists(tmp), "%s was left behind", tmp);
	snprintf(tmp, sizeof(tmp), "%s/target/inner", dir);
	rmdir(tmp);
	rmdir(path);
	rmdir(dir);
}

Test(file, read_all_names_missing_files_and_directories)
{
	unsigned char *buf = (unsigned char *)"x";
	size_t len = 7;
	mb_error err;

	cr_expect_eq(mb_file_read_all(&buf, &len, MB_BINARY_DIR "/no/such/file", &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "/no/such/file: No such file or directory") != NULL, "%s", err.msg);
	cr_expect_null(buf);
	cr_expect_eq(len, 0);
	cr_expect_eq(mb_file_read_all(&buf, &len, MB_BINARY_DIR, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "not a regular file") != NULL, "%s", err.msg);
}

Test(file, read_all_reads_an_empty_file)
{
	char dir[512], path[600];
	unsigned char *buf;
	size_t len = 9;
	mb_error err;
	FILE *fp;

	scratch_dir(dir, sizeof(dir), "emptyread");
	snprintf(path, sizeof(path), "%s/e", dir);
	fp = fopen(path, "wb");
	cr_assert_not_null(fp);
	fclose(fp);
	cr_assert_eq(mb_file_read_all(&buf, &len, path, &err), 0, "%s", err.msg);
	cr_expect_eq(len, 0);
	cr_expect_eq(buf[0], 0);
	free(buf);
	unlink(path);
	rmdir(dir);
}
