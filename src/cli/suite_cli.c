/* suite_cli.c: helpers shared by the suite commands (suite_cli.h). */
#include "suite_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mechbench/file.h>

#include "cli.h"

int mb_cli_spec_home_open(mb_cli_spec_home *h, const char *path, int need_git, mb_error *err)
{
	int error;

	memset(h, 0, sizeof(*h));
	if ((error = mb_file_read_text(&h->text, &h->len, path, err)) < 0)
		return error;
	if ((error = mb_git_blob_id(h->blob, h->text, h->len, err)) < 0)
		goto fail;
	error = mb_git_open(&h->git, path, err);
	if (error == MB_ENOTFOUND && !need_git) {
		mb_error_clear(err);
		snprintf(h->root, sizeof(h->root), ".");
		snprintf(h->relpath, sizeof(h->relpath), "%s", path);
		return 0;
	}
	if (error == MB_ENOTFOUND) {
		error = mb_error_set(err, MB_ENOTFOUND, "%s: not inside a git repository; a gate "
				     "reads the registered spec and baseline from git", path);
		goto fail;
	}
	if (error < 0)
		goto fail;
	snprintf(h->root, sizeof(h->root), "%s", mb_git_workdir(h->git));
	if ((error = mb_git_relpath(h->relpath, sizeof(h->relpath), h->git, path, err)) < 0)
		goto fail;
	return 0;
fail:
	mb_cli_spec_home_dispose(h);
	return error;
}

void mb_cli_spec_home_dispose(mb_cli_spec_home *h)
{
	mb_git_free(h->git);
	free(h->text);
	memset(h, 0, sizeof(*h));
}

int mb_cli_provenance_spec(mb_provenance *p, mb_cli_spec_home *h, const mb_spec *spec,
			   mb_error *err)
{
	int error, differs = 1;

	snprintf(p->suite, sizeof(p->suite), "%s", spec->suite);
	snprintf(p->spec_path, sizeof(p->spec_path), "%s", h->relpath);
	snprintf(p->spec_blob, sizeof(p->spec_blob), "%s", h->blob);
	p->seed = spec->seed;
	if (!h->git)
		return 0;
	if ((error = mb_git_head(p->repo_head, &p->repo_dirty, h->git, err)) < 0)
		return error;
	if (!p->repo_head[0]) {
		p->spec_committed = 0;
		return 0;
	}
	if ((error = mb_git_file_differs(&differs, h->git, p->repo_head, h->relpath, err)) < 0)
		return error;
	p->spec_committed = !differs;
	return 0;
}

int mb_cli_want_progress(int quiet)
{
	return !quiet && isatty(STDERR_FILENO);
}

int mb_cli_want_color(void)
{
	const char *nc = getenv("NO_COLOR");
	return isatty(STDOUT_FILENO) && !(nc && nc[0]);
}

int mb_cli_strata_stored(mb_entry_result *e, const mb_provenance *prov, mb_error *err)
{
	mb_dataset d;
	mb_error ignored;
	int have = mb_dataset_load(&d, e->dataset, &ignored) == 0;
	int error = mb_runner_strata_stored(e, prov, have ? &d : NULL, err);

	if (have)
		mb_dataset_dispose(&d);
	return error;
}

int mb_cli_check_outputs(const mb_cli_path *outs, size_t n, const mb_cli_path *ins, size_t n_in,
			 mb_error *err)
{
	for (size_t i = 0; i < n; i++) {
		int error;
		if (!outs[i].path)
			continue;
		if ((error = mb_file_check_output(outs[i].path, err)) < 0)
			return error;
		for (size_t k = 0; k < i; k++)
			if (mb_file_same(outs[i].path, outs[k].path))
				return mb_error_set(err, MB_EINVALID, "%s %s and %s %s: one file for "
						    "two outputs; give each its own", outs[k].opt,
						    outs[k].path, outs[i].opt, outs[i].path);
		for (size_t k = 0; k < n_in; k++)
			if (mb_file_same(outs[i].path, ins[k].path))
				return mb_error_set(err, MB_EINVALID, "%s %s: is the %s file; writing "
						    "there would replace it", outs[i].opt,
						    outs[i].path, ins[k].opt);
	}
	return 0;
}

void mb_cli_db_timeout(mb_store_opts *opts, double seconds)
{
	opts->busy_timeout_ms = seconds * 1000 < 1 ? 1 : (int)(seconds * 1000);
}
