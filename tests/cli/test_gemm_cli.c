/*
 * gemm_cli: choosing the GEMM backend from the command line: --gemm on any
 * command (and MB_GEMM), MB_ISA for the portable kernels, and what --version
 * says about them.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/gemm.h>

#include "support/cli_run.h"

Test(gemm_cli, version_names_the_default_portable_backend_and_its_isa)
{
	static const char *const args[] = {"--version", NULL};
	mbt_cli_result *r = calloc(1, sizeof(*r));
	char want[64];

	cr_assert(r);
	mbt_cli_run(r, args);
	cr_expect_eq(r->status, 0, "%s", r->err);
	snprintf(want, sizeof(want), "gemm=portable isa=%s", mb_gemm_isa_name(mb_gemm_isa_best()));
	cr_expect(strstr(r->out, want) != NULL, "no '%s' in: %s", want, r->out);
	cr_expect(strstr(r->out, mb_gemm_have_onednn() ? ", onednn;" : "onednn not built") != NULL,
		  "%s", r->out);
	free(r);
}

Test(gemm_cli, gemm_option_selects_a_backend_anywhere_on_the_line)
{
	static const char *const a1[] = {"version", "--gemm", "openblas", NULL};
	static const char *const a2[] = {"--gemm=portable", "version", NULL};
	mbt_cli_result *r = calloc(1, sizeof(*r));

	cr_assert(r);
	mbt_cli_run(r, a1);
	cr_expect_eq(r->status, 0, "%s", r->err);
	cr_expect(strstr(r->out, "gemm=openblas core=") != NULL, "%s", r->out);
	mbt_cli_run(r, a2);
	cr_expect_eq(r->status, 0, "%s", r->err);
	cr_expect(strstr(r->out, "gemm=portable") != NULL, "%s", r->out);
	free(r);
}

Test(gemm_cli, bad_backend_names_are_usage_errors)
{
	static const char *const a1[] = {"version", "--gemm", "fastest", NULL};
	static const char *const a2[] = {"version", "--gemm", NULL};
	mbt_cli_result *r = calloc(1, sizeof(*r));

	cr_assert(r);
	mbt_cli_run(r, a1);
	cr_expect_eq(r->status, 2);
	cr_expect(strstr(r->err, "--gemm fastest: expected auto, portable, openblas or onednn"),
		  "%s", r->err);
	mbt_cli_run(r, a2);
	cr_expect_eq(r->status, 2);
	free(r);
}

Test(gemm_cli, env_selects_backend_and_forces_the_portable_isa)
{
	char *out = NULL;

	cr_expect_eq(mbt_sh(".", "MB_ISA=scalar " MBT_CLI "--version", &out), 0, "%s", out);
	cr_expect(strstr(out, "gemm=portable isa=scalar") != NULL, "%s", out);
	free(out);
	out = NULL;
	cr_expect_eq(mbt_sh(".", "MB_GEMM=openblas " MBT_CLI "--version", &out), 0, "%s", out);
	cr_expect(strstr(out, "gemm=openblas") != NULL, "%s", out);
	free(out);
	out = NULL;
	cr_expect_eq(mbt_sh(".", "MB_ISA=sse9 " MBT_CLI "--version", &out), 2, "%s", out);
	cr_expect(strstr(out, "MB_ISA=sse9: expected scalar, avx2 or avx512") != NULL, "%s", out);
	free(out);
}
