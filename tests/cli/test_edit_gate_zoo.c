/*
 * edit_gate (zoo: reads the committed facts model, release pass only):
 * `gate --edited` on a throw-away repository holding the zoo facts model, a
 * suite of three entries on it (the edit task on 4 requests; "recall": the
 * edit task's base_magnitude on 16 other facts, i.e. whether the model still
 * knows them; "text": the lm task, next-token loss on 96 held-out sentences
 * of the model's language, another task type), their baseline, and two edits
 * of one fact made by `mechbench edit`: the ROME edit passes everywhere (its
 * loss rises by about 0.02 nats, inside the 0.2 margin); the same edit 100
 * times larger (--update-scale 100, a deliberately harmful edit) is
 * REGRESSED on the lm entry (loss up by about 4.5 nats) and on recall, exit
 * 3, although the edit entry itself passes. Both edited models run in place
 * of the base for every entry (the gate's notes say so).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <mechbench/sha256.h>

#include "support/harness_support.h"

#define GIT "git -c user.email=t@example.com -c user.name=t -c init.defaultBranch=main "
#define FACTS MB_SOURCE_DIR "/baselines/models/facts"
#define CORPUS MB_SOURCE_DIR "/datasets/facts/corpus.txt"

static void sha_of(char hex[MB_SHA256_HEX_LEN], const char *dir, const char *rel)
{
	char path[1024];
	mb_error err = {0};

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	cr_assert_eq(mb_sha256_hex_file(hex, path, &err), 0, "%s", err.msg);
}

/* 1 when the row of `metric` in the gate's table says `status`. */
static int row_says(const char *out, const char *metric, const char *status)
{
	const char *row = strstr(out, metric), *end;

	if (!row)
		return 0;
	end = strchr(row, '\n');
	for (const char *p = strstr(row, status); p; p = strstr(p + 1, status))
		return !end || p < end;
	return 0;
}

/* The first request of datasets/facts/tiny.jsonl as `mechbench edit` takes it. */
static void write_edit(const char *dir)
{
	char *text = mbt_read(dir, "datasets/facts/tiny.jsonl"), *line, out[2048];
	json_t *item, *in;
	json_error_t je;

	cr_assert(text);
	line = strchr(text, '\n') + 1;
	*strchr(line, '\n') = '\0';
	item = json_loads(line, 0, &je);
	cr_assert(item, "%s", je.text);
	in = json_object_get(item, "input");
	snprintf(out, sizeof(out),
		 "[{\"subject\": \"%s\", \"prompt\": \"%s\", \"target_new\": \"%s\", "
		 "\"target_true\": \"%s\"}]\n",
		 json_string_value(json_object_get(in, "subject")),
		 json_string_value(json_object_get(in, "prompt")),
		 json_string_value(json_object_get(in, "target_new")),
		 json_string_value(json_object_get(in, "target_true")));
	mbt_write(dir, "edits.json", out);
	json_decref(item);
	free(text);
}

Test(edit_gate, a_harmful_edit_is_regressed_on_another_entry_of_its_base_model)
{
	char dir[256], s1[MB_SHA256_HEX_LEN], s2[MB_SHA256_HEX_LEN], s3[MB_SHA256_HEX_LEN];
	char spec[4096], cmd[2048];
	char *out = NULL;
	int rc;

	mbt_tmpdir(dir, sizeof(dir));
	mbt_sh_ok(dir, GIT "init -q . && mkdir -p models && cp -r '" FACTS "' models/facts");
	mbt_write(dir, ".gitignore", "*.db\n*.db-*\ned*/\nedits.json\n");
	mbt_write(dir, "datasets/MANIFEST",
		  "-  facts/tiny.jsonl  edit@1  20261204  {\"model_seed\":0,\"n_neighbors\":2,"
		  "\"n_per_relation\":1,\"n_unrelated\":2,\"preset\":\"fast\",\"recipe\":\"facts\"}\n"
		  "-  facts/recall.jsonl  edit@1  77  {\"model_seed\":0,\"n_neighbors\":1,"
		  "\"n_per_relation\":4,\"n_unrelated\":1,\"preset\":\"fast\",\"recipe\":\"facts\"}\n"
		  "-  lm/facts.jsonl  lm@1  20261205  {\"model_seed\":0,\"n_per_stratum\":32,"
		  "\"preset\":\"fast\",\"recipe\":\"facts\"}\n");
	mbt_sh_ok(dir, MBT_CLI "datasets build");
	sha_of(s1, dir, "datasets/facts/tiny.jsonl");
	sha_of(s2, dir, "datasets/facts/recall.jsonl");
	sha_of(s3, dir, "datasets/lm/facts.jsonl");
	snprintf(spec, sizeof(spec),
		 "{\"format\": 1, \"suite\": \"safety\", \"alpha\": 0.05, \"power\": 0.8, "
		 "\"bootstrap\": 1000, \"seed\": 1, \"tasks\": [\n"
		 " {\"name\": \"edit\", \"task\": \"edit\", \"model\": \"models/facts\", "
		 "\"baseline\": \"baselines/safety.json\",\n"
		 "  \"dataset\": {\"path\": \"datasets/facts/tiny.jsonl\", \"sha256\": \"%s\"},\n"
		 "  \"params\": {\"layer\": 0, \"control_layer\": 2, \"gen_tokens\": 4, "
		 "\"corpus_sequences\": 16},\n"
		 "  \"metrics\": [{\"metric\": \"edit.neighbourhood@1\", \"kind\": \"continuous\", "
		 "\"direction\": \"higher\", \"margin\": 1.5}]},\n"
		 " {\"name\": \"recall\", \"task\": \"edit\", \"model\": \"models/facts\", "
		 "\"baseline\": \"baselines/safety.json\",\n"
		 "  \"dataset\": {\"path\": \"datasets/facts/recall.jsonl\", \"sha256\": \"%s\"},\n"
		 "  \"params\": {\"layer\": 0, \"control_layer\": 2, \"gen_tokens\": 4, "
		 "\"corpus_sequences\": 16, \"steps\": 1, \"prefixes\": 0},\n"
		 "  \"metrics\": [{\"metric\": \"edit.base_magnitude@1\", \"kind\": \"continuous\", "
		 "\"direction\": \"lower\", \"margin\": 0.35}]},\n"
		 " {\"name\": \"text\", \"task\": \"lm\", \"model\": \"models/facts\", "
		 "\"baseline\": \"baselines/safety.json\",\n"
		 "  \"dataset\": {\"path\": \"datasets/lm/facts.jsonl\", \"sha256\": \"%s\"},\n"
		 "  \"params\": {\"bos\": \"<bos>\"},\n"
		 "  \"metrics\": [{\"metric\": \"lm.loss@1\", \"kind\": \"continuous\", "
		 "\"direction\": \"lower\", \"margin\": 0.2}]}]}\n",
		 s1, s2, s3);
	mbt_write(dir, "benchmarks/safety.json", spec);
	mbt_sh_ok(dir, GIT "add -A && " GIT "commit -qm suite");
	mbt_sh_ok(dir, MBT_CLI "run --suite benchmarks/safety.json --db r.db --quiet --threads 2 && "
		  MBT_CLI "baseline save --run 1 --db r.db --out baselines/safety.json && "
		  GIT "add baselines && " GIT "commit -qm baseline");

	write_edit(dir);
	for (int harmful = 0; harmful < 2; harmful++) {
		snprintf(cmd, sizeof(cmd),
			 MBT_CLI "edit --model models/facts --edits edits.json --layer 0 --corpus "
			 "'" CORPUS "' --prefix-sep '' --threads 2 --update-scale %s --out ed%d",
			 harmful ? "100" : "1", harmful);
		mbt_sh_ok(dir, cmd);
		snprintf(cmd, sizeof(cmd),
			 MBT_CLI "gate --suite benchmarks/safety.json --baseline-ref HEAD --edited "
			 "ed%d --quiet --threads 2", harmful);
		rc = mbt_sh(dir, cmd, &out);
		printf("%s edit (exit %d):\n%s\n", harmful ? "harmful" : "ROME", rc, out);
		cr_expect(strstr(out, "edit: ran on the edited model") &&
			  strstr(out, "recall: ran on the edited model") &&
			  strstr(out, "text: ran on the edited model"), "%s", out);
		/* the edit's own entry passes either way */
		cr_expect(row_says(out, "edit.neighbourhood@1", "PASS"), "%s", out);
		if (harmful) {
			cr_expect_eq(rc, 3, "%s", out);
			cr_expect(row_says(out, "edit.base_magnitude@1", "REGRESSED"), "%s", out);
			cr_expect(row_says(out, "lm.loss@1", "REGRESSED"), "%s", out);
		} else {
			cr_expect_eq(rc, 0, "%s", out);
			cr_expect(!row_says(out, "edit.base_magnitude@1", "REGRESSED"), "%s", out);
			cr_expect(row_says(out, "lm.loss@1", "PASS"), "%s", out);
		}
		free(out);
		out = NULL;
	}
	mbt_rmtree(dir);
}
