/*
 * cache: the built mechbench binary writes hook points as .npy that match the
 * PyTorch reference's (valid positions, 1e-4 abs + 1e-4 rel); bad input gives
 * exit 1 and one stderr line naming it, bad flags exit 2.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mechbench/npy.h>

#include "support/cli_run.h"
#include "support/engine_fx.h"

#define MODEL FX_ENGINE_DIR "/models/gpt2_ln_gelu"

Test(cache, written_hooks_match_the_reference)
{
	static const char *const hooks[] = {"hook_embed", "blocks.0.ln1.hook_normalized",
					    "blocks.1.attn.hook_pattern", "blocks.1.attn.hook_z",
					    "blocks.0.attn.hook_result", "blocks.1.mlp.hook_post",
					    "blocks.1.hook_resid_post", NULL};
	char dir[] = "/tmp/mb-cache-test-XXXXXX";
	const char *args[32];
	int n = 0, B, T;
	int32_t *tok, *len;
	mbt_cli_result r;
	long bad = 0;

	cr_assert(mkdtemp(dir));
	fx_batch("gpt2_ln_gelu", "batch0", &tok, &len, &B, &T);
	args[n++] = "cache";
	args[n++] = "--model";
	args[n++] = MODEL;
	args[n++] = "--tokens-npy";
	args[n++] = FX_ENGINE_DIR "/gpt2_ln_gelu/batch0/tokens.npy";
	args[n++] = "--lengths";
	args[n++] = "11,7,16";
	for (int i = 0; hooks[i]; i++) {
		args[n++] = "--hook";
		args[n++] = hooks[i];
	}
	args[n++] = "--out";
	args[n++] = dir;
	args[n] = NULL;
	cr_assert_eq(len[0], 11);
	cr_assert_eq(len[1], 7);
	cr_assert_eq(len[2], 16);
	mbt_cli_run(&r, args);
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	cr_expect_str_empty(r.err);
	for (int i = 0; i <= 7; i++) {
		const char *name = i < 7 ? hooks[i] : "logits";
		char path[512], rel[256];
		mb_npy got, want;
		mb_error err = {0};

		snprintf(path, sizeof(path), "%s/%s.npy", dir, name);
		cr_assert_eq(mb_npy_read(&got, path, &err), 0, "%s", err.msg);
		cr_assert_eq(got.dtype, MB_DTYPE_F32);
		snprintf(rel, sizeof(rel), "gpt2_ln_gelu/batch0/%s.npy", name);
		fx_npy(&want, rel);
		cr_assert_eq(got.ndim, want.ndim, "%s", name);
		for (int d = 0; d < got.ndim; d++)
			cr_assert_eq(got.shape[d], want.shape[d], "%s dim %d", name, d);
		bad += fx_compare(name, got.data, &want, len, strstr(name, "pattern") != NULL, 1e-4, 1e-4,
				  NULL);
		mb_npy_dispose(&got);
		mb_npy_dispose(&want);
		unlink(path);
	}
	cr_expect_eq(bad, 0);
	rmdir(dir);
	free(tok);
	free(len);
}

Test(cache, text_is_encoded_with_the_model_tokenizer)
{
	const char *args[] = {"cache", "--model", MODEL, "--text", "<bos> a b", "--hook",
			      "hook_embed", "--out", "/tmp/mb-cache-text", NULL};
	mbt_cli_result r;
	mb_npy a;
	mb_error err = {0};

	mbt_cli_run(&r, args);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_eq(mb_npy_read(&a, "/tmp/mb-cache-text/logits.npy", &err), 0, "%s", err.msg);
	cr_expect_eq(a.shape[0], 1);
	cr_expect_eq(a.shape[1], 3);
	cr_expect_eq(a.shape[2], 61);
	mb_npy_dispose(&a);
	unlink("/tmp/mb-cache-text/logits.npy");
	unlink("/tmp/mb-cache-text/hook_embed.npy");
	rmdir("/tmp/mb-cache-text");
}

typedef struct bad_case {
	char args[8][64];
	int status;
	char expect[64];
} bad_case;

static bad_case bad_cases[] = {
	{{"--model", "/nonexistent", "--tokens", "1,2", "--hook", "hook_embed", "--out", "/tmp/mbx"},
	 1, "/nonexistent: model directory not found"},
	{{"--model", MODEL, "--tokens", "1,2", "--hook", "blocks.0.attn.hook_zz", "--out", "/tmp/mbx"},
	 1, "unknown hook point 'blocks.0.attn.hook_zz'"},
	{{"--model", MODEL, "--tokens", "1,2", "--hook", "blocks.7.hook_resid_pre", "--out", "/tmp/mbx"},
	 1, "layer 7 out of range"},
	{{"--model", MODEL, "--tokens", "1,61", "--hook", "hook_embed", "--out", "/tmp/mbx"},
	 1, "--tokens: item 0 position 1: token 61 out of range [0, 61)"},
	{{"--model", MODEL, "--tokens", "1,-2", "--hook", "hook_embed", "--out", "/tmp/mbx"},
	 1, "--tokens: item 0 position 1: token -2 out of range"},
	{{"--model", MODEL, "--tokens-npy", "/nonexistent.npy", "--hook", "hook_embed", "--out", "/tmp/mbx"},
	 1, "/nonexistent.npy"},
	{{"--model", MODEL, "--tokens", "1,2", "--hook", "hook_embed", "--out", "/nonexistent/x/y"},
	 1, "/nonexistent/x/y"},
	{{"--model", MODEL, "--tokens", "1,2", "--hook", "hook_embed", "--bogus", "x"},
	 2, "unknown option '--bogus'"},
	{{"--model", MODEL, "--tokens", "1,2", "--out", "/tmp/mbx"}, 2, "at least one --hook"},
	{{"--model", MODEL, "--hook", "hook_embed", "--out", "/tmp/mbx"}, 2, "exactly one of"},
	{{"--tokens", "1", "--hook", "hook_embed", "--out", "/tmp/mbx"}, 2, "--model DIR is required"},
	{{"--model", MODEL, "--tokens", "1,2", "--hook", "hook_embed", "--out"}, 2, "--out: needs a value"},
};

ParameterizedTestParameters(cache, bad_input_exits_1_and_bad_flags_exit_2_with_one_line)
{
	return cr_make_param_array(bad_case, bad_cases, sizeof(bad_cases) / sizeof(bad_cases[0]));
}

ParameterizedTest(bad_case *bc, cache, bad_input_exits_1_and_bad_flags_exit_2_with_one_line)
{
	const char *args[10] = {"cache"};
	mbt_cli_result r;
	int n = 0;

	for (; n < 8 && bc->args[n][0]; n++)
		args[n + 1] = bc->args[n];
	args[n + 1] = NULL;
	mbt_cli_run(&r, args);
	cr_expect_eq(r.status, bc->status, "exit %d, expected %d: %s", r.status, bc->status, r.err);
	cr_expect(strstr(r.err, bc->expect) != NULL, "stderr \"%s\" lacks \"%s\"", r.err, bc->expect);
	if (bc->status == 1) {
		cr_expect_eq(mbt_count_lines(r.err), 1, "stderr: %s", r.err);
		cr_expect(strncmp(r.err, "mechbench: ", 11) == 0, "%s", r.err);
	}
	cr_expect_eq(access("/tmp/mbx/logits.npy", F_OK), -1, "a failed run wrote output");
}

Test(cache, help_exits_0)
{
	const char *args[] = {"cache", "--help", NULL};
	mbt_cli_result r;

	mbt_cli_run(&r, args);
	cr_expect_eq(r.status, 0);
	cr_expect(strstr(r.out, "usage: mechbench cache") != NULL);
}

/* Tokens from a file are judged against the model's vocabulary with the
 * file named (the engine's message said "run: item 1 position 2: ..."). */
Test(cache, a_token_npy_outside_the_vocabulary_names_the_file_item_and_position)
{
	const char *path = "/tmp/mb-cache-bad-tokens.npy";
	const int64_t tok[6] = {1, 2, 3, 4, 5, 61};
	const int64_t shape[2] = {2, 3};
	const char *args[] = {"cache", "--model", MODEL, "--tokens-npy", path, "--hook",
			      "hook_embed", "--out", "/tmp/mbx", NULL};
	mbt_cli_result r;
	mb_error err = {0};

	cr_assert_eq(mb_npy_write(path, MB_DTYPE_I64, 2, shape, tok, &err), 0, "%s", err.msg);
	mbt_cli_run(&r, args);
	unlink(path);
	cr_expect_eq(r.status, 1, "%s", r.err);
	cr_expect(strstr(r.err, "mechbench: /tmp/mb-cache-bad-tokens.npy: item 1 position 2: "
				"token 61 out of range [0, 61)") != NULL && mbt_count_lines(r.err) == 1,
		  "%s", r.err);
	cr_expect_eq(access("/tmp/mbx/logits.npy", F_OK), -1, "a failed run wrote output");
}
