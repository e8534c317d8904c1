/*
 * inspect: the built mechbench binary on every file of the fuzz corpora
 * (fuzz/corpus/{safetensors,npy,json}, made by fuzz/make_corpus.py). Each
 * bad_* file must give exit 1 and exactly one stderr line, starting with
 * "mechbench: " and containing the file's path; each valid_* file exit 0 with
 * nothing on stderr. Plus the listing itself on the golden fixtures.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/cli_run.h"

#define CORPUS MB_SOURCE_DIR "/fuzz/corpus/"
#define FIX MB_SOURCE_DIR "/tests/fixtures/util/"

/* Runs inspect on every file of one corpus directory; returns the number of
 * bad_ files seen (so an empty or missing corpus cannot pass). */
static size_t check_corpus(const char *kind, size_t *valid)
{
	char dir[512], path[1024];
	struct dirent *de;
	DIR *d;
	size_t bad = 0;
	mbt_cli_result *r = malloc(sizeof(*r));

	*valid = 0;
	snprintf(dir, sizeof(dir), CORPUS "%s", kind);
	d = opendir(dir);
	cr_assert_not_null(d, "%s is missing: run /usr/bin/python3 fuzz/make_corpus.py", dir);
	while ((de = readdir(d)) != NULL) {
		int is_bad = strncmp(de->d_name, "bad_", 4) == 0;
		if (!is_bad && strncmp(de->d_name, "valid_", 6) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		mbt_cli_run(r, (const char *[]){"inspect", path, "--stats", NULL});
		if (is_bad) {
			bad++;
			cr_expect_eq(r->status, 1, "%s: exit %d, expected 1", de->d_name, r->status);
			cr_expect_eq(mbt_count_lines(r->err), 1, "%s: %zu stderr lines:\n%s", de->d_name,
				     mbt_count_lines(r->err), r->err);
			cr_expect(strncmp(r->err, "mechbench: ", 11) == 0, "%s: %s", de->d_name,
				  r->err);
			cr_expect(strstr(r->err, path) != NULL, "%s: path missing from: %s",
				  de->d_name, r->err);
			cr_expect(strlen(r->err) > strlen(path) + 16, "%s: says nothing: %s", de->d_name,
				  r->err);
		} else {
			(*valid)++;
			cr_expect_eq(r->status, 0, "%s: exit %d: %s", de->d_name, r->status, r->err);
			cr_expect_str_empty(r->err, "%s", de->d_name);
		}
	}
	closedir(d);
	free(r);
	return bad;
}

Test(inspect, every_malformed_safetensors_file_gives_one_error_line_and_exit_1)
{
	size_t valid, bad = check_corpus("safetensors", &valid);
	cr_expect_geq(bad, 40, "only %zu bad files", bad);
	cr_expect_geq(valid, 3, "only %zu valid seeds", valid);
}

Test(inspect, every_malformed_npy_file_gives_one_error_line_and_exit_1)
{
	size_t valid, bad = check_corpus("npy", &valid);
	cr_expect_geq(bad, 30, "only %zu bad files", bad);
	cr_expect_geq(valid, 3, "only %zu valid seeds", valid);
}

Test(inspect, every_malformed_json_file_gives_one_error_line_and_exit_1)
{
	size_t valid, bad = check_corpus("json", &valid);
	cr_expect_geq(bad, 25, "only %zu bad files", bad);
	cr_expect_geq(valid, 2, "only %zu valid seeds", valid);
}

Test(inspect, lists_safetensors_tensors_metadata_and_stats)
{
	mbt_cli_result *r = malloc(sizeof(*r));
	mbt_cli_run(r, (const char *[]){"inspect", "--stats", FIX "safetensors/mixed.safetensors", NULL});
	cr_expect_eq(r->status, 0, "%s", r->err);
	cr_expect(strstr(r->out, "safetensors, 9 tensors, 2 metadata entries") != NULL, "%s",
		  r->out);
	cr_expect(strstr(r->out, "metadata  source = gen_fixtures.py\n") != NULL, "%s", r->out);
	cr_expect(strstr(r->out, "tensor  attn.w      F32   (2, 3)") != NULL, "%s", r->out);
	cr_expect(strstr(r->out, "tensor  empty       F32   (0, 3)") != NULL, "%s", r->out);
	/* i32 holds 1, -2, 3, 2147483647 */
	cr_expect(strstr(r->out, "I32   (2, 2)            bytes [64, 80)  min -2  max 2147483647  "
				 "mean 536870912.25  all finite") != NULL,
		  "%s", r->out);
	cr_expect(strstr(r->out, "tensor  scalar      F32   ()  ") != NULL, "%s", r->out);
	/* the BF16 table's exponent-255 rows: 2 signs x 4 NaN mantissas, 2 infinities */
	cr_expect(strstr(r->out, "NON-FINITE: 8 NaN, 2 Inf") != NULL, "%s", r->out);
	free(r);
}

Test(inspect, lists_npy_dtype_and_shape)
{
	mbt_cli_result *r = malloc(sizeof(*r));
	mbt_cli_run(r, (const char *[]){"inspect", FIX "npy/f32_2x3x4.npy", "--stats", NULL});
	cr_expect_eq(r->status, 0, "%s", r->err);
	cr_expect(strstr(r->out, "npy, dtype F32, shape (2, 3, 4), 24 elements  min -3  max 8.5  "
				 "mean 2.75  all finite\n") != NULL,
		  "%s", r->out);
	mbt_cli_run(r, (const char *[]){"inspect", FIX "npy/f32_scalar.npy", NULL});
	cr_expect(strstr(r->out, "npy, dtype F32, shape (), 1 element\n") != NULL, "%s", r->out);
	free(r);
}

Test(inspect, reports_nonfinite_values_without_failing)
{
	mbt_cli_result *r = malloc(sizeof(*r));
	mbt_cli_run(r, (const char *[]){"inspect", "--stats", FIX "safetensors/nonfinite.safetensors", NULL});
	cr_expect_eq(r->status, 0, "%s", r->err);
	cr_expect(strstr(r->out, "NON-FINITE: 1 NaN, 0 Inf") != NULL, "%s", r->out);
	cr_expect(strstr(r->out, "NON-FINITE: 0 NaN, 1 Inf") != NULL, "%s", r->out);
	free(r);
}

Test(inspect, usage_errors_exit_2_and_missing_files_exit_1)
{
	mbt_cli_result *r = malloc(sizeof(*r));
	mbt_cli_run(r, (const char *[]){"inspect", NULL});
	cr_expect_eq(r->status, 2);
	cr_expect(strstr(r->err, "missing FILE") != NULL, "%s", r->err);
	mbt_cli_run(r, (const char *[]){"inspect", "a.npy", "b.npy", NULL});
	cr_expect_eq(r->status, 2);
	mbt_cli_run(r, (const char *[]){"inspect", "--bogus", "a.npy", NULL});
	cr_expect_eq(r->status, 2);
	mbt_cli_run(r, (const char *[]){"inspect", "--help", NULL});
	cr_expect_eq(r->status, 0);
	cr_expect(strstr(r->out, "usage: mechbench inspect FILE [--stats]") != NULL, "%s", r->out);
	mbt_cli_run(r, (const char *[]){"inspect", "/nonexistent/model.safetensors", NULL});
	cr_expect_eq(r->status, 1);
	cr_expect_str_eq(r->err,
			 "mechbench: /nonexistent/model.safetensors: No such file or directory\n");
	mbt_cli_run(r, (const char *[]){"inspect", MB_SOURCE_DIR "/README.md", NULL});
	cr_expect_eq(r->status, 1);
	cr_expect(strstr(r->err, "README.md: unknown file type") != NULL, "%s", r->err);
	free(r);
}
