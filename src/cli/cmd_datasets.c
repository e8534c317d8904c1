/* cmd_datasets.c: `mechbench datasets build|verify`, the frozen datasets. */
#include "cli.h"

#include <string.h>

#include <mechbench/dataset.h>
#include <mechbench/facts_requests.h>
#include <mechbench/file.h>

#include "suite_cli.h"

typedef struct datasets_args {
	const char *manifest;
} datasets_args;

static const mb_cli_opt datasets_opts[] = {
	{MB_OPT(PATH, "--manifest", datasets_args, manifest), .meta = "FILE",
	 .def = "datasets/MANIFEST", .help = "the list of datasets"},
};

static const mb_cli_cmd datasets_cmd = {
	.name = "datasets",
	.opts = datasets_opts,
	.n_opts = MB_CLI_N(datasets_opts),
	.synopsis = "mechbench datasets build  [--manifest FILE]\n"
		    "       mechbench datasets verify [--manifest FILE]\n"
		    "       mechbench datasets facts  [--out DIR] [--check] (see datasets facts "
		    "--help)\n",
	.about =
	"Datasets are frozen, stratified item lists (JSON Lines, items keyed by content\n"
	"hash) listed with their sha256 and seeded recipe in datasets/MANIFEST:\n"
	"  <sha256 or ->  <path>  <task>@<version>  <seed>  <generator params JSON>\n\n"
	"  build    regenerates every listed dataset from its recipe, rewrites files\n"
	"           whose bytes changed and fills in the sha256s ('-' marks a new\n"
	"           dataset)\n"
	"  verify   checks each file's sha256 against the MANIFEST, its items' keys, and\n"
	"           that its recipe still regenerates exactly the same bytes\n",
	.notes = "Exit codes: 0 done / all verified, 1 error or a dataset failed, 2 usage.\n",
};

/* ---- datasets facts: the edit requests and corpus of the zoo facts model ---- */

typedef struct facts_args {
	const char *out;
	int64_t seed, model_seed, per_relation, neighbors, unrelated, corpus_rows;
	int check;
} facts_args;

static const mb_cli_opt facts_opts[] = {
	{MB_OPT(PATH, "--out", facts_args, out), .meta = "DIR", .def = "datasets/facts",
	 .help = "where edits.jsonl, corpus.txt and SHA256SUMS go"},
	{MB_OPT(INT, "--seed", facts_args, seed), .meta = "S", .def = "20261204", .range = ">= 0",
	 .help = "the requests' seed"},
	{MB_OPT(INT, "--model-seed", facts_args, model_seed), .meta = "S", .def = "0",
	 .range = ">= 0", .help = "the facts model's seed (its knowledge base)"},
	{MB_OPT(INT, "--n-per-relation", facts_args, per_relation), .meta = "N", .def = "25",
	 .range = ">= 1", .help = "requests per relation"},
	{MB_OPT(INT, "--n-neighbors", facts_args, neighbors), .meta = "N", .def = "8",
	 .range = ">= 0", .help = "neighbourhood (and attribute) prompts per request"},
	{MB_OPT(INT, "--n-unrelated", facts_args, unrelated), .meta = "N", .def = "8",
	 .range = ">= 0", .help = "unrelated (filler) prompts per request"},
	{MB_OPT(INT, "--corpus-rows", facts_args, corpus_rows), .meta = "N", .def = "2000",
	 .range = "[1, 1000000]", .help = "lines of corpus.txt (text for `edit --corpus`)"},
	{MB_OPT(FLAG, "--check", facts_args, check),
	 .help = "write nothing: regenerate and compare with the files and SHA256SUMS in --out"},
};

static const mb_cli_cmd facts_cmd = {
	.name = "datasets facts",
	.opts = facts_opts,
	.n_opts = MB_CLI_N(facts_opts),
	.about =
	"CounterFact-shaped edit requests generated from the zoo facts model's knowledge\n"
	"base (facts_requests.h: subject, relation, old and new object, prompt,\n"
	"paraphrases with held-out templates, neighbourhood, attribute, same-subject and\n"
	"unrelated prompts; strata by relation), rendered as a dataset of the edit task\n"
	"(edits.jsonl), and a text corpus of the model's training distribution for the\n"
	"key second moment (corpus.txt); SHA256SUMS lists both.\n",
	.notes = "Exit codes: 0 written / matches, 1 error or a mismatch, 2 usage.\n",
};

static int facts_files(char **text, size_t *len, const facts_args *a, mb_error *err)
{
	json_t *params = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "recipe", "facts", "preset",
				   "fast", "model_seed", (json_int_t)a->model_seed,
				   "n_per_relation", (json_int_t)a->per_relation, "n_neighbors",
				   (json_int_t)a->neighbors, "n_unrelated", (json_int_t)a->unrelated);
	mb_item_list items = {0};
	int rc;

	if (!params)
		return mb_error_oom(err, "params", 0);
	rc = mb_facts_requests_generate(&items, (uint64_t)a->seed, params, err);
	if (rc == 0)
		rc = mb_dataset_render(&text[0], &len[0], MB_FACTS_REQUESTS_TASK,
				       MB_FACTS_REQUESTS_VERSION, (uint64_t)a->seed, params, &items,
				       err);
	if (rc == 0)
		rc = mb_facts_corpus(&text[1], &len[1], params, (int)a->corpus_rows, err);
	mb_item_list_dispose(&items);
	json_decref(params);
	return rc;
}

static int facts(int argc, char **argv)
{
	static const char *const names[2] = {"edits.jsonl", "corpus.txt"};
	facts_args a = {0};
	mb_cli_parsed parsed;
	char *text[2] = {NULL, NULL}, sums[256], path[4096], hex[MB_SHA256_HEX_LEN];
	size_t len[2] = {0, 0}, n = 0;
	mb_error err;
	int rc;

	if ((rc = mb_cli_parse(&parsed, &a, &facts_cmd, argc, argv)) != MB_CLI_GO)
		return rc;
	mb_error_clear(&err);
	if ((rc = facts_files(text, len, &a, &err)) < 0)
		goto cleanup;
	for (int i = 0; i < 2; i++) {
		mb_sha256_hex_buf(hex, text[i], len[i]);
		n += (size_t)snprintf(sums + n, sizeof(sums) - n, "%s  %s\n", hex, names[i]);
	}
	for (int i = 0; i < 3 && rc == 0; i++) {
		const char *body = i < 2 ? text[i] : sums;
		size_t blen = i < 2 ? len[i] : n;
		snprintf(path, sizeof(path), "%s/%s", a.out, i < 2 ? names[i] : "SHA256SUMS");
		if (!a.check) {
			rc = mb_file_write_all(path, body, blen, &err);
			continue;
		}
		char *have = NULL;
		size_t hlen = 0;
		rc = mb_file_read_text(&have, &hlen, path, &err);
		if (rc == 0 && (hlen != blen || memcmp(have, body, blen) != 0))
			rc = mb_error_set(&err, MB_EMISMATCH, "%s: differs from what the generator "
					  "makes now (%zu bytes, regenerated %zu)", path, hlen, blen);
		free(have);
	}
	if (rc == 0)
		printf("%s%s", a.check ? "ok\n" : "", sums);
cleanup:
	free(text[0]);
	free(text[1]);
	return rc < 0 ? mb_cli_fail(&err) : MB_EXIT_OK;
}

static int build(mb_manifest *m)
{
	mb_error err;
	int any = 0;

	for (size_t i = 0; i < m->n; i++) {
		int changed = 0;
		mb_error_clear(&err);
		if (mb_manifest_build_entry(m, i, &changed, &err) < 0)
			return mb_cli_fail(&err);
		printf("%-9s %s  %s\n", changed ? "built" : "unchanged", m->entries[i].sha256,
		       m->entries[i].path);
		any |= changed;
	}
	if (any && mb_manifest_save(m, &err) < 0)
		return mb_cli_fail(&err);
	return MB_EXIT_OK;
}

static int verify(const mb_manifest *m)
{
	mb_error err;
	size_t bad = 0;

	for (size_t i = 0; i < m->n; i++) {
		mb_error_clear(&err);
		if (mb_manifest_verify_entry(m, i, &err) < 0) {
			fprintf(stderr, "mechbench: %s\n", err.msg);
			bad++;
		} else {
			printf("ok  %s  %s\n", m->entries[i].sha256, m->entries[i].path);
		}
	}
	if (bad) {
		fprintf(stderr, "mechbench: %zu of %zu dataset(s) failed verification\n", bad, m->n);
		return MB_EXIT_ERROR;
	}
	return MB_EXIT_OK;
}

int mb_cmd_datasets(int argc, char **argv)
{
	datasets_args a = {0};
	mb_cli_parsed parsed;
	mb_manifest m;
	mb_error err;
	int rc;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		mb_cli_help(argc < 2 ? stderr : stdout, &datasets_cmd);
		return argc < 2 ? MB_EXIT_USAGE : MB_EXIT_OK;
	}
	if (strcmp(argv[1], "facts") == 0)
		return facts(argc - 1, argv + 1);
	if (strcmp(argv[1], "build") != 0 && strcmp(argv[1], "verify") != 0)
		return mb_cli_usage_error("datasets", "unknown subcommand '%s' (expected build, "
					  "verify or facts)", argv[1]);
	if ((rc = mb_cli_parse(&parsed, &a, &datasets_cmd, argc - 1, argv + 1)) != MB_CLI_GO)
		return rc;
	mb_error_clear(&err);
	if (mb_manifest_load(&m, a.manifest, &err) < 0)
		return mb_cli_fail(&err);
	/* nothing built or verified is not a success: a wrong or emptied file */
	if (m.n == 0) {
		mb_error_set(&err, MB_EINVALID, "%s: lists no datasets (one line each: <sha256|->  "
			     "<path>  <task>@<version>  <seed>  <params JSON>)", a.manifest);
		mb_manifest_dispose(&m);
		return mb_cli_fail(&err);
	}
	rc = strcmp(argv[1], "build") == 0 ? build(&m) : verify(&m);
	mb_manifest_dispose(&m);
	return rc;
}
