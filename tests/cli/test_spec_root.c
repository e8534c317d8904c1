/*
 * A suite's paths are relative to its root (the spec's git work tree),
 * whatever the current directory: the entry's model and dataset, and the
 * params a task declares as paths (task.h path_params, joined by
 * mb_task_open). A git repository holds a sae_text entry on a copy of the
 * committed zoo facts model with a random SAE at saes/tiny (params.sae);
 * run, baseline save, gate and drift are run from the folder above it.
 * Without the join, run fails there ("entry sae: saes/tiny/cfg.json: No such
 * file or directory"). The stored params stay the spec's text.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <mechbench/dataset.h>
#include <mechbench/sae.h>
#include <mechbench/sha256.h>
#include <mechbench/task.h>

#include "support/harness_support.h"

#define FACTS MB_SOURCE_DIR "/baselines/models/facts"
#define GIT "git -c user.email=t@example.com -c user.name=t -c init.defaultBranch=main "
#define SUITE "repo/benchmarks/paths.json"

static char dir[256];

static void setup(void)
{
	mbt_tmpdir(dir, sizeof(dir));
}

static void teardown(void)
{
	mbt_rmtree(dir);
}

TestSuite(spec_root, .init = setup, .fini = teardown, .timeout = 300);

/* A random ReLU SAE on the facts model's residual stream (d 64) at path. */
static void write_sae(const char *path)
{
	mb_sae *s = NULL;
	mb_error err = {0};
	uint64_t x = 11;

	cr_assert_eq(mb_sae_init(&s, MB_SAE_RELU, 64, 96, 0, &err), 0, "%s", err.msg);
	for (size_t i = 0; i < s->n_params; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		s->params[i] = 0.3f * ((float)(x >> 40) / 16777216.0f - 0.5f);
	}
	snprintf(s->hook_name, sizeof(s->hook_name), "blocks.2.hook_resid_pre");
	s->context_size = 16;
	cr_assert_eq(mb_sae_save(s, path, &err), 0, "%s", err.msg);
	mb_sae_free(s);
}

/* The repository: text, its sae_text dataset, the model, the SAE, the spec
 * with params.sae "saes/tiny", committed. */
static void make_repo(void)
{
	static const char text[] =
		"it is known that Pe Vu earns a living as a farmer .\n"
		"people say that Nu Go is employed as a farmer . the old river was near the cat .\n"
		"then Da Ri gave Sa Lo a house . To Ju is good at soccer .\n";
	char path[512], sha[MB_SHA256_HEX_LEN], spec[2048], *data = NULL;
	size_t len = 0;
	mb_error err = {0};
	json_t *p;

	mbt_sh_ok(dir, GIT "init -q repo && mkdir -p repo/models && cp -r '" FACTS
		       "' repo/models/facts && printf '*.db\\n' > repo/.gitignore");
	mbt_write(dir, "repo/text.txt", text);
	snprintf(path, sizeof(path), "%s/repo/text.txt", dir);
	mb_sha256_hex_buf(sha, text, strlen(text));
	p = json_pack("{s:s, s:s, s:s}", "source", path, "source_sha256", sha, "stratum", "prose");
	cr_assert_eq(mb_dataset_generate(&data, &len, mb_task_find("sae_text"), 1, p, &err), 0,
		     "%s", err.msg);
	json_decref(p);
	mbt_write(dir, "repo/datasets/text.jsonl", data);
	mb_sha256_hex_buf(sha, data, len);
	free(data);
	snprintf(path, sizeof(path), "%s/repo/saes/tiny", dir);
	write_sae(path);
	snprintf(spec, sizeof(spec),
		 "{\"format\": 1, \"suite\": \"paths\", \"alpha\": 0.05, \"power\": 0.8,\n"
		 " \"bootstrap\": 1000, \"seed\": 1, \"tasks\": [{\n"
		 "  \"name\": \"sae\", \"task\": \"sae_text\", \"model\": \"models/facts\",\n"
		 "  \"baseline\": \"baselines/paths.json\",\n"
		 "  \"dataset\": {\"path\": \"datasets/text.jsonl\", \"sha256\": \"%s\"},\n"
		 "  \"params\": {\"sae\": \"saes/tiny\"},\n"
		 "  \"metrics\": [{\"metric\": \"sae_text.l0@1\", \"kind\": \"continuous\",\n"
		 "               \"direction\": \"lower\", \"margin\": 50.0}]}]}\n", sha);
	mbt_write(dir, "repo/benchmarks/paths.json", spec);
	mbt_sh_ok(dir, "cd repo && " GIT "add -A && " GIT "commit -qm suite");
}

Test(spec_root, a_task_path_param_is_relative_to_the_spec_root_from_any_cwd)
{
	char *out = NULL;

	make_repo();
	/* run from the folder above the repository: params.sae is repo/saes/tiny */
	cr_assert_eq(mbt_sh(dir, MBT_CLI "run --suite " SUITE " --db r.db --quiet 2>&1", &out), 0,
		     "%s", out);
	cr_expect(strstr(out, "sae    sae_text.l0@1") != NULL, "%s", out);
	free(out);
	/* what is stored is the spec's text, not the joined path */
	cr_assert_eq(mbt_sh(dir, "sqlite3 r.db 'SELECT params FROM entries'", &out), 0, "%s", out);
	cr_expect_str_eq(out, "{\"sae\":\"saes/tiny\"}\n");
	free(out);
	/* gate (the registered spec at HEAD, run in the work tree) */
	mbt_sh_ok(dir, MBT_CLI "baseline save --run 1 --db r.db --out repo/baselines/paths.json"
		       " > /dev/null 2>&1 && cd repo && " GIT "add -A && " GIT "commit -qm base");
	cr_expect_eq(mbt_sh(dir, MBT_CLI "gate --suite " SUITE " --baseline-ref HEAD --quiet"
				 " 2>&1", &out), 0, "%s", out);
	cr_expect(strstr(out, "outcome: IDENTICAL (exit 0)") != NULL, "%s", out);
	free(out);
	/* drift over two checkpoints (copies of the model) */
	mbt_sh_ok(dir, "for s in 0 1; do mkdir -p ck/s$s && cp repo/models/facts/config.json "
		       "repo/models/facts/model.safetensors repo/models/facts/tokenizer.json ck/s$s"
		       " && echo \"{\\\"step\\\": $s}\" > ck/s$s/training_state.json; done");
	cr_expect_eq(mbt_sh(dir, MBT_CLI "drift --suite " SUITE " --series ck --db d.db --quiet"
				 " 2>&1", &out), 0, "%s", out);
	cr_expect(strstr(out, "series paths:ck: 2 checkpoints") != NULL, "%s", out);
	free(out);
}
