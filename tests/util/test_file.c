/* file: whole-file reads and all-or-nothing writes (tmp + fsync + rename). */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
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
	cr_assert_eq(mb_file_atomic_open(&f, path, &err), 0, "%s", err.msg);
	snprintf(tmp, sizeof(tmp), "%s", f.tmp);
	cr_expect(strncmp(tmp, dir, strlen(dir)) == 0, "tmp %s not in the target's folder", tmp);
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
	snprintf(tmp, sizeof(tmp), "%s", f.tmp);
	cr_assert_eq(mb_file_atomic_write(&f, "new contents", 12, &err), 0);
	mb_file_atomic_abort(&f);
	cr_expect_not(exists(tmp));
	cr_assert_eq(mb_file_read_all(&buf, &len, path, &err), 0, "%s", err.msg);
	cr_expect_str_eq((char *)buf, "old");
	free(buf);
	unlink(path);
	rmdir(dir);
}

Test(file, a_folder_output_is_refused_before_anything_is_created)
{
	char dir[512], path[600], inner[700];
	mb_file_atomic f;
	mb_error err;

	scratch_dir(dir, sizeof(dir), "rename");
	snprintf(path, sizeof(path), "%s/target", dir);
	snprintf(inner, sizeof(inner), "%s/target/inner", dir);
	cr_assert_eq(mkdir(path, 0755), 0);
	cr_assert_eq(mkdir(inner, 0755), 0);
	cr_expect_eq(mb_file_atomic_open(&f, path, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "is a folder") != NULL && strstr(err.msg, path) != NULL, "%s",
		  err.msg);
	cr_expect_eq(rmdir(inner), 0);
	cr_expect_eq(rmdir(path), 0);
	cr_expect_eq(rmdir(dir), 0, "something was left in %s", dir);
}

/* Issue 22 case 1: a planted "<path>.tmp" symlink (or a user's own file of
 * that name) is never followed, truncated or removed. */
Test(file, a_planted_tmp_symlink_and_a_users_tmp_file_are_left_alone)
{
	char dir[512], path[600], tmp[700], victim[700], mine[700];
	mb_error err;
	unsigned char *buf;
	size_t len;
	FILE *fp;

	scratch_dir(dir, sizeof(dir), "planted");
	snprintf(path, sizeof(path), "%s/report.md", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	fp = fopen(victim, "wb");
	cr_assert_not_null(fp);
	fputs("precious", fp);
	fclose(fp);
	cr_assert_eq(symlink(victim, tmp), 0);
	cr_assert_eq(mb_file_write_all(path, "report", 6, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_file_read_all(&buf, &len, victim, &err), 0, "%s", err.msg);
	cr_expect_str_eq((char *)buf, "precious", "the link's target was overwritten");
	free(buf);
	cr_expect_eq(unlink(tmp), 0, "the planted link was removed");
	/* a user's own report.md.tmp survives */
	snprintf(mine, sizeof(mine), "%s.tmp", path);
	fp = fopen(mine, "wb");
	cr_assert_not_null(fp);
	fputs("mine", fp);
	fclose(fp);
	cr_assert_eq(mb_file_write_all(path, "report2", 7, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_file_read_all(&buf, &len, mine, &err), 0, "%s", err.msg);
	cr_expect_str_eq((char *)buf, "mine");
	free(buf);
	cr_assert_eq(mb_file_read_all(&buf, &len, path, &err), 0, "%s", err.msg);
	cr_expect_str_eq((char *)buf, "report2");
	free(buf);
	unlink(mine);
	unlink(path);
	unlink(victim);
	cr_expect_eq(rmdir(dir), 0, "a temporary was left in %s", dir);
}

/* Issue 22 case 2: a FIFO is written to (its reader gets the bytes), a
 * symlink to a regular file is refused, and neither is replaced. */
Test(file, a_fifo_is_streamed_and_a_symlink_is_refused)
{
	char dir[512], fifo[600], link[600], target[600], got[64] = {0};
	mb_error err;
	struct stat st;
	pid_t pid;
	FILE *fp;

	scratch_dir(dir, sizeof(dir), "special");
	snprintf(fifo, sizeof(fifo), "%s/pipe", dir);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		mb_error e2;
		_exit(mb_file_write_all(fifo, "streamed", 8, &e2) == 0 ? 0 : 1);
	}
	fp = fopen(fifo, "rb");
	cr_assert_not_null(fp);
	cr_expect_eq(fread(got, 1, sizeof(got) - 1, fp), 8);
	fclose(fp);
	cr_expect_str_eq(got, "streamed");
	{
		int status;
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	cr_assert_eq(lstat(fifo, &st), 0);
	cr_expect(S_ISFIFO(st.st_mode), "the FIFO was replaced");

	snprintf(target, sizeof(target), "%s/real.html", dir);
	snprintf(link, sizeof(link), "%s/link.html", dir);
	fp = fopen(target, "wb");
	cr_assert_not_null(fp);
	fputs("old", fp);
	fclose(fp);
	cr_assert_eq(symlink("real.html", link), 0);
	cr_expect_eq(mb_file_check_output(link, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "symbolic link") != NULL, "%s", err.msg);
	cr_expect_eq(mb_file_write_all(link, "new", 3, &err), MB_EINVALID);
	cr_assert_eq(lstat(link, &st), 0);
	cr_expect(S_ISLNK(st.st_mode), "the link was replaced");
	unlink(link);
	unlink(target);
	unlink(fifo);
	cr_expect_eq(rmdir(dir), 0, "a temporary was left in %s", dir);
}

Test(file, outputs_are_checked_before_any_work)
{
	char dir[512], ro[600], path[700];
	mb_error err;

	cr_expect_eq(mb_file_check_output("", &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "output path is empty") != NULL, "%s", err.msg);
	cr_expect_eq(mb_file_check_output("-", &err), 0);
	cr_expect_eq(mb_file_check_output("/dev/stdout", &err), 0);
	cr_expect_eq(mb_file_check_output("/dev/null", &err), 0, "%s", err.msg);
	scratch_dir(dir, sizeof(dir), "check");
	snprintf(path, sizeof(path), "%s/new/deeper/x.json", dir);
	cr_expect_eq(mb_file_check_output(path, &err), 0, "a missing folder is created: %s", err.msg);
	snprintf(path, sizeof(path), "%s/", dir);
	cr_expect_eq(mb_file_check_output(path, &err), MB_EINVALID);
	if (geteuid() != 0) { /* root writes anywhere */
		snprintf(ro, sizeof(ro), "%s/ro", dir);
		cr_assert_eq(mkdir(ro, 0555), 0);
		snprintf(path, sizeof(path), "%s/x.json", ro);
		cr_expect_eq(mb_file_check_output(path, &err), MB_EIO);
		cr_expect(strstr(err.msg, "not writable") != NULL, "%s", err.msg);
		rmdir(ro);
	}
	cr_expect_eq(mb_file_check_dir("", &err), MB_EINVALID);
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

Test(file, same_names_one_file_by_inode_or_by_folder_and_name)
{
	char dir[512], a[600], b[700], c[600], sub[600], x[700], y[700], fifo[600];
	mb_error err;

	scratch_dir(dir, sizeof(dir), "same");
	snprintf(a, sizeof(a), "%s/a.db", dir);
	snprintf(b, sizeof(b), "%s/./a.db", dir);
	snprintf(c, sizeof(c), "%s/c.db", dir);
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	cr_assert(mkdir(sub, 0755) == 0 || errno == EEXIST);
	/* existing files: by inode, whatever the spelling; a hard link is one file */
	cr_assert_eq(mb_file_write_all(a, "x", 1, &err), 0, "%s", err.msg);
	cr_expect(mb_file_same(a, b));
	cr_expect(link(a, c) == 0, "%s", strerror(errno));
	cr_expect(mb_file_same(a, c));
	unlink(c);
	cr_expect_not(mb_file_same(a, c), "an absent file is not an existing one");
	/* absent files: the same name in the same folder, however it is reached */
	snprintf(x, sizeof(x), "%s/sub/../new.json", dir);
	snprintf(y, sizeof(y), "%s/new.json", dir);
	cr_expect(mb_file_same(x, y));
	snprintf(y, sizeof(y), "%s/sub/new.json", dir);
	cr_expect_not(mb_file_same(x, y));
	snprintf(y, sizeof(y), "%s/other.json", dir);
	cr_expect_not(mb_file_same(x, y));
	/* streams are written to, never replaced: never the same file */
	cr_expect_not(mb_file_same("-", "-"));
	cr_expect_not(mb_file_same("/dev/stdout", "/dev/stdout"));
	snprintf(fifo, sizeof(fifo), "%s/p", dir);
	cr_assert(mkfifo(fifo, 0644) == 0 || errno == EEXIST);
	cr_expect_not(mb_file_same(fifo, fifo));
	cr_expect_not(mb_file_same(NULL, a));
	cr_expect_not(mb_file_same("", ""));
	unlink(fifo);
	unlink(a);
	rmdir(sub);
	rmdir(dir);
}
