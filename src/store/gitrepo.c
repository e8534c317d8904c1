/* gitrepo.c: read-only access to specs and baselines in git, via libgit2. */
#define _XOPEN_SOURCE 700 /* realpath */
#include <mechbench/gitrepo.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <git2.h>

#include <mechbench/file.h>

struct mb_git {
	git_repository *repo;
	char *workdir; /* realpath of the work tree, with a trailing '/' */
};

/* Copies libgit2's last error into err, after our own context. */
static int git_fail(mb_error *err, int code, const char *fmt, const char *arg)
{
	const git_error *e = git_error_last();
	char ctx[MB_ERROR_MSG_MAX];

	snprintf(ctx, sizeof(ctx), fmt, arg);
	return mb_error_set(err, code, "%s: %s", ctx, e && e->message ? e->message : "libgit2 error");
}

int mb_git_open(mb_git **out, const char *path, mb_error *err)
{
	git_buf found = {0};
	mb_git *g = NULL;
	char real[PATH_MAX];
	const char *wd;
	int error = 0, rc;

	*out = NULL;
	git_libgit2_init();
	g = calloc(1, sizeof(*g));
	if (!g) {
		error = mb_error_oom(err, "git repository", sizeof(*g));
		goto cleanup;
	}
	if (!realpath(path, real)) {
		error = mb_error_set(err, errno == ENOENT ? MB_ENOTFOUND : MB_EIO, "%s: %s", path,
				     strerror(errno));
		goto cleanup;
	}
	rc = git_repository_discover(&found, real, 0, NULL);
	if (rc < 0) {
		error = mb_error_set(err, MB_ENOTFOUND, "%s: not inside a git work tree", path);
		goto cleanup;
	}
	if (git_repository_open(&g->repo, found.ptr) < 0) {
		error = git_fail(err, MB_ERROR, "%s: cannot open the git repository", path);
		goto cleanup;
	}
	wd = git_repository_workdir(g->repo);
	if (!wd) {
		error = mb_error_set(err, MB_EINVALID, "%s: the repository is bare", path);
		goto cleanup;
	}
	if (!realpath(wd, real)) {
		error = mb_error_set(err, MB_EIO, "%s: %s", wd, strerror(errno));
		goto cleanup;
	}
	g->workdir = malloc(strlen(real) + 2);
	if (!g->workdir) {
		error = mb_error_oom(err, "git work tree path", strlen(real) + 2);
		goto cleanup;
	}
	memcpy(g->workdir, real, strlen(real) + 1);
	if (strcmp(real, "/") != 0)
		strncat(g->workdir, "/", 2);
	*out = g;
	g = NULL;
cleanup:
	git_buf_dispose(&found);
	mb_git_free(g);
	if (error < 0 && !*out)
		git_libgit2_shutdown();
	return error;
}

void mb_git_free(mb_git *g)
{
	if (!g)
		return;
	git_repository_free(g->repo);
	free(g->workdir);
	free(g);
	git_libgit2_shutdown();
}

const char *mb_git_workdir(const mb_git *g)
{
	return g->workdir;
}

int mb_git_relpath(char *out, size_t cap, const mb_git *g, const char *path, mb_error *err)
{
	char real[PATH_MAX];
	size_t wl = strlen(g->workdir);

	if (!realpath(path, real))
		return mb_error_set(err, errno == ENOENT ? MB_ENOTFOUND : MB_EIO, "%s: %s", path,
				    strerror(errno));
	if (strncmp(real, g->workdir, wl) != 0)
		return mb_error_set(err, MB_EINVALID, "%s: outside the git work tree %s", path,
				    g->workdir);
	if ((size_t)snprintf(out, cap, "%s", real + wl) >= cap)
		return mb_error_set(err, MB_EINVALID, "%s: path too long", path);
	return 0;
}

static int peel_commit(git_oid *out, mb_git *g, const char *spec, mb_error *err)
{
	git_object *obj = NULL, *commit = NULL;
	int error = 0;

	if (git_revparse_single(&obj, g->repo, spec) < 0) {
		error = git_fail(err, MB_ENOTFOUND, "git ref '%s' does not resolve", spec);
		goto cleanup;
	}
	if (git_object_peel(&commit, obj, GIT_OBJECT_COMMIT) < 0) {
		error = git_fail(err, MB_ENOTFOUND, "git ref '%s' does not name a commit", spec);
		goto cleanup;
	}
	git_oid_cpy(out, git_object_id(commit));
cleanup:
	git_object_free(commit);
	git_object_free(obj);
	return error;
}

int mb_git_resolve(char out[MB_GIT_OID_HEX_LEN], mb_git *g, const char *ref, mb_error *err)
{
	static const char mb_prefix[] = "merge-base:";
	git_oid oid, head, other;
	int error;

	out[0] = '\0';
	if (!ref[0])
		return mb_error_set(err, MB_EINVALID, "empty git ref");
	if (strncmp(ref, mb_prefix, sizeof(mb_prefix) - 1) == 0) {
		const char *other_ref = ref + sizeof(mb_prefix) - 1;
		if ((error = peel_commit(&head, g, "HEAD", err)) < 0 ||
		    (error = peel_commit(&other, g, other_ref, err)) < 0)
			return error;
		if (git_merge_base(&oid, g->repo, &head, &other) < 0)
			return git_fail(err, MB_ENOTFOUND,
					"'%s': HEAD and the ref have no merge base", ref);
	} else if ((error = peel_commit(&oid, g, ref, err)) < 0) {
		return error;
	}
	git_oid_tostr(out, MB_GIT_OID_HEX_LEN, &oid);
	return 0;
}

static int find_blob(git_blob **out, mb_git *g, const char *commit, const char *relpath,
		     mb_error *err)
{
	git_oid oid;
	git_commit *c = NULL;
	git_tree *tree = NULL;
	git_tree_entry *entry = NULL;
	int error = 0;

	*out = NULL;
	if (git_oid_fromstr(&oid, commit) < 0)
		return mb_error_set(err, MB_EINVALID, "'%s' is not a commit id", commit);
	if (git_commit_lookup(&c, g->repo, &oid) < 0 || git_commit_tree(&tree, c) < 0) {
		error = git_fail(err, MB_ENOTFOUND, "commit %s", commit);
		goto cleanup;
	}
	if (git_tree_entry_bypath(&entry, tree, relpath) < 0 ||
	    git_tree_entry_type(entry) != GIT_OBJECT_BLOB) {
		error = mb_error_set(err, MB_ENOTFOUND, "%s is not committed at %.12s", relpath,
				     commit);
		goto cleanup;
	}
	if (git_blob_lookup(out, g->repo, git_tree_entry_id(entry)) < 0)
		error = git_fail(err, MB_EIO, "%s: cannot read the blob", relpath);
cleanup:
	git_tree_entry_free(entry);
	git_tree_free(tree);
	git_commit_free(c);
	return error;
}

int mb_git_read(char **out, size_t *len, char blob[MB_GIT_OID_HEX_LEN], mb_git *g,
		const char *commit, const char *relpath, mb_error *err)
{
	git_blob *b = NULL;
	size_t n;
	int error;

	*out = NULL;
	*len = 0;
	error = find_blob(&b, g, commit, relpath, err);
	if (error < 0)
		return error;
	n = (size_t)git_blob_rawsize(b);
	*out = malloc(n + 1);
	if (!*out) {
		git_blob_free(b);
		return mb_error_oom(err, relpath, n + 1);
	}
	memcpy(*out, git_blob_rawcontent(b), n);
	(*out)[n] = '\0';
	*len = n;
	if (blob)
		git_oid_tostr(blob, MB_GIT_OID_HEX_LEN, git_blob_id(b));
	git_blob_free(b);
	return 0;
}

int mb_git_blob_id(char out[MB_GIT_OID_HEX_LEN], const void *buf, size_t len, mb_error *err)
{
	git_oid oid;

	git_libgit2_init();
	if (git_odb_hash(&oid, buf, len, GIT_OBJECT_BLOB) < 0) {
		git_libgit2_shutdown();
		return git_fail(err, MB_ERROR, "%s", "hashing a blob");
	}
	git_oid_tostr(out, MB_GIT_OID_HEX_LEN, &oid);
	git_libgit2_shutdown();
	return 0;
}

int mb_git_head(char out[MB_GIT_OID_HEX_LEN], int *dirty, mb_git *g, mb_error *err)
{
	git_status_options opts;
	git_status_list *list = NULL;
	git_oid oid;
	int rc;

	out[0] = '\0';
	*dirty = 1;
	rc = git_reference_name_to_id(&oid, g->repo, "HEAD");
	if (rc == GIT_ENOTFOUND || rc == GIT_EUNBORNBRANCH)
		return 0;
	if (rc < 0)
		return git_fail(err, MB_ERROR, "%s", "reading HEAD");
	git_oid_tostr(out, MB_GIT_OID_HEX_LEN, &oid);
	git_status_options_init(&opts, GIT_STATUS_OPTIONS_VERSION);
	opts.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
	opts.flags = GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
	if (git_status_list_new(&list, g->repo, &opts) < 0)
		return git_fail(err, MB_ERROR, "%s", "reading the work tree's status");
	*dirty = git_status_list_entrycount(list) > 0;
	git_status_list_free(list);
	return 0;
}

int mb_git_file_differs(int *differs, mb_git *g, const char *commit, const char *relpath,
			mb_error *err)
{
	git_blob *b = NULL;
	char path[4096];
	char *text = NULL;
	size_t len;
	int error;

	*differs = 1;
	error = find_blob(&b, g, commit, relpath, err);
	if (error == MB_ENOTFOUND) {
		mb_error_clear(err);
		return 0;
	}
	if (error < 0)
		return error;
	if ((error = mb_file_path_join(path, sizeof(path), g->workdir, relpath, err)) < 0 ||
	    (error = mb_file_read_text(&text, &len, path, err)) < 0)
		goto cleanup;
	*differs = len != (size_t)git_blob_rawsize(b) ||
		   memcmp(text, git_blob_rawcontent(b), len) != 0;
cleanup:
	free(text);
	git_blob_free(b);
	return error;
}
