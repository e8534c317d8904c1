/*
 * gitrepo.h: the git repository that holds suite specs and baselines, through
 * libgit2: resolve a ref, read a file at a commit without checking it out,
 * tell whether a working file differs from its committed version, and record
 * HEAD and the dirty state of the tree. Works in a dirty tree; never writes.
 */
#ifndef MECHBENCH_GITREPO_H
#define MECHBENCH_GITREPO_H

#include <stddef.h>

#include <mechbench/error.h>

#define MB_GIT_OID_HEX_LEN 41 /* 40 hex digits and a NUL */

typedef struct mb_git mb_git;

/* Opens the repository containing path (a file or folder; searched upwards
 * like git does). MB_ENOTFOUND when path is not inside a work tree. *out is
 * freed with mb_git_free. */
int mb_git_open(mb_git **out, const char *path, mb_error *err);
void mb_git_free(mb_git *g);

/* The work tree's absolute path, ending in '/'. Borrowed. */
const char *mb_git_workdir(const mb_git *g);

/* The path of `path` (relative to the current directory, or absolute)
 * relative to the work tree root, into out. MB_EINVALID when it lies outside
 * the work tree, MB_ENOTFOUND when it does not exist. */
int mb_git_relpath(char *out, size_t cap, const mb_git *g, const char *path, mb_error *err);

/* Resolves ref to a commit id (40 hex): anything `git rev-parse` accepts
 * (HEAD, branches, tags, ids, HEAD~2), or "merge-base:REF", the merge base of
 * HEAD and REF (what a pull-request check compares against). MB_ENOTFOUND
 * with one line naming the ref when it does not resolve. */
int mb_git_resolve(char out[MB_GIT_OID_HEX_LEN], mb_git *g, const char *ref, mb_error *err);

/* Reads the file at relpath (work-tree relative) as committed in commit
 * (40 hex) into *out (malloc'd, NUL-terminated; *len excludes the NUL) and
 * its blob id into blob (may be NULL). MB_ENOTFOUND when the commit has no
 * such file. */
int mb_git_read(char **out, size_t *len, char blob[MB_GIT_OID_HEX_LEN], mb_git *g,
		const char *commit, const char *relpath, mb_error *err);

/* The blob id git would give the bytes buf[0..len) (`git hash-object`). */
int mb_git_blob_id(char out[MB_GIT_OID_HEX_LEN], const void *buf, size_t len, mb_error *err);

/* HEAD's commit id and whether tracked files differ from it (in the index
 * or the work tree; untracked files do not count). An unborn HEAD gives ""
 * and dirty 1. */
int mb_git_head(char out[MB_GIT_OID_HEX_LEN], int *dirty, mb_git *g, mb_error *err);

/* *differs = 1 when the work-tree file at relpath is not byte-identical to
 * its version in commit (or the commit lacks it), 0 when identical. */
int mb_git_file_differs(int *differs, mb_git *g, const char *commit, const char *relpath,
			mb_error *err);

#endif
