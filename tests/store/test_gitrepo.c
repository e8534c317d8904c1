/* libgit2 access: resolve refs (merge-base included), read files at a ref
 * without checkout in a dirty tree, tell a changed file from a committed one,
 * record HEAD and dirty state; bad refs give one clear line. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/gitrepo.h>

#include "support/harness_support.h"

#define GIT "git -c user.email=t@example.com -c user.name=t -c init.defaultBranch=main "

static void sh_ok(const char *dir, const char *cmd)
{
	char *out = NULL;
	int rc = mbt_sh(dir, cmd, &out);
	cr_assert_eq(rc, 0, "%s: %s", cmd, out);
	free(out);
}

/* main: c1 (spec v1) -> c2 (spec v2); feature from c1: c3 (other file). */
static void make_repo(char *dir, size_t cap)
{
	mbt_tmpdir(dir, cap);
	sh_ok(dir, GIT "init -q .");
	mbt_write(dir, "benchmarks/s.json", "{\"v\": 1}\n");
	sh_ok(dir, GIT "add -A && " GIT "commit -qm c1 && " GIT "tag v1");
	mbt_write(dir, "benchmarks/s.json", "{\"v\": 2}\n");
	sh_ok(dir, GIT "commit -qam c2");
	sh_ok(dir, GIT "checkout -q -b feature v1");
	mbt_write(dir, "other.txt", "x\n");
	sh_ok(dir, GIT "add other.txt && " GIT "commit -qm c3");
}

static void rev(const char *dir, const char *ref, char out[41])
{
	char cmd[256], *o = NULL;
	snprintf(cmd, sizeof(cmd), "git rev-parse '%s'", ref);
	cr_assert_eq(mbt_sh(dir, cmd, &o), 0);
	snprintf(out, 41, "%s", o);
	free(o);
}

Test(gitrepo, refs_resolve_like_git_including_merge_base)
{
	char dir[256], want[41], got[MB_GIT_OID_HEX_LEN], sub[512];
	mb_git *g;
	mb_error err;

	make_repo(dir, sizeof(dir));
	snprintf(sub, sizeof(sub), "%s/benchmarks", dir);
	cr_assert_eq(mb_git_open(&g, sub, &err), 0, "%s", err.msg);
	cr_expect_eq(strncmp(mb_git_workdir(g), "/tmp/mbtest-", 12), 0);
	cr_expect_eq(mb_git_workdir(g)[strlen(mb_git_workdir(g)) - 1], '/');
	const char *refs[] = {"HEAD", "main", "v1", "feature~1", "main^"};
	for (size_t i = 0; i < 5; i++) {
		rev(dir, refs[i], want);
		cr_assert_eq(mb_git_resolve(got, g, refs[i], &err), 0, "%s", err.msg);
		cr_expect_str_eq(got, want, "%s", refs[i]);
	}
	/* HEAD is feature; its merge base with main is v1 (c1). */
	rev(dir, "v1", want);
	cr_assert_eq(mb_git_resolve(got, g, "merge-base:main", &err), 0, "%s", err.msg);
	cr_expect_str_eq(got, want);
	mb_git_free(g);
	mbt_rmtree(dir);
}

Test(gitrepo, a_ref_that_does_not_resolve_is_one_clear_error)
{
	char dir[256], got[MB_GIT_OID_HEX_LEN];
	mb_git *g;
	mb_error err;

	make_repo(dir, sizeof(dir));
	cr_assert_eq(mb_git_open(&g, dir, &err), 0, "%s", err.msg);
	cr_expect_eq(mb_git_resolve(got, g, "no-such-branch", &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "git ref 'no-such-branch' does not resolve") != NULL, "%s",
		  err.msg);
	cr_expect(strchr(err.msg, '\n') == NULL);
	cr_expect_eq(mb_git_resolve(got, g, "merge-base:nope", &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "'nope'") != NULL, "%s", err.msg);
	cr_expect_eq(mb_git_resolve(got, g, "", &err), MB_EINVALID);
	mb_git_free(g);
	cr_expect_eq(mb_git_open(&g, "/", &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "not inside a git work tree") != NULL, "%s", err.msg);
	mbt_rmtree(dir);
}

Test(gitrepo, files_read_at_a_ref_without_checkout_in_a_dirty_tree)
{
	char dir[256], c[MB_GIT_OID_HEX_LEN], blob[MB_GIT_OID_HEX_LEN], want[41], path[512];
	char rel[256], head[MB_GIT_OID_HEX_LEN];
	mb_git *g;
	mb_error err;
	char *text = NULL;
	size_t len;
	int differs = -1, dirty = -1;

	make_repo(dir, sizeof(dir));
	sh_ok(dir, GIT "checkout -q main");
	cr_assert_eq(mb_git_open(&g, dir, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_git_head(head, &dirty, g, &err), 0, "%s", err.msg);
	cr_expect_eq(dirty, 0);
	/* Dirty the tree: the committed version is still what a ref reads. */
	mbt_write(dir, "benchmarks/s.json", "{\"v\": 3}\n");
	cr_assert_eq(mb_git_resolve(c, g, "v1", &err), 0);
	cr_assert_eq(mb_git_read(&text, &len, blob, g, c, "benchmarks/s.json", &err), 0, "%s",
		     err.msg);
	cr_expect_str_eq(text, "{\"v\": 1}\n");
	cr_expect_eq(len, 9);
	rev(dir, "v1:benchmarks/s.json", want);
	cr_expect_str_eq(blob, want, "the blob id is git's");
	free(text);
	cr_expect_eq(mb_git_read(&text, &len, blob, g, c, "other.txt", &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "other.txt is not committed at") != NULL, "%s", err.msg);
	/* Working file vs committed versions. */
	cr_assert_eq(mb_git_resolve(c, g, "HEAD", &err), 0);
	cr_assert_eq(mb_git_file_differs(&differs, g, c, "benchmarks/s.json", &err), 0);
	cr_expect_eq(differs, 1);
	mbt_write(dir, "benchmarks/s.json", "{\"v\": 2}\n");
	cr_assert_eq(mb_git_file_differs(&differs, g, c, "benchmarks/s.json", &err), 0);
	cr_expect_eq(differs, 0);
	mbt_write(dir, "benchmarks/s.json", "{\"v\": 4}\n");
	cr_assert_eq(mb_git_head(head, &dirty, g, &err), 0);
	rev(dir, "HEAD", want);
	cr_expect_str_eq(head, want);
	cr_expect_eq(dirty, 1);
	/* Untracked files do not make a tree dirty. */
	sh_ok(dir, GIT "checkout -q -- benchmarks/s.json");
	mbt_write(dir, "scratch.txt", "untracked\n");
	cr_assert_eq(mb_git_head(head, &dirty, g, &err), 0);
	cr_expect_eq(dirty, 0);
	/* Paths relative to the work tree. */
	snprintf(path, sizeof(path), "%s/benchmarks/s.json", dir);
	cr_assert_eq(mb_git_relpath(rel, sizeof(rel), g, path, &err), 0, "%s", err.msg);
	cr_expect_str_eq(rel, "benchmarks/s.json");
	cr_expect_eq(mb_git_relpath(rel, sizeof(rel), g, "/etc/hostname", &err), MB_EINVALID);
	/* hash-object. */
	cr_assert_eq(mb_git_blob_id(blob, "{\"v\": 1}\n", 9, &err), 0);
	rev(dir, "v1:benchmarks/s.json", want);
	cr_expect_str_eq(blob, want);
	mb_git_free(g);
	mbt_rmtree(dir);
}
