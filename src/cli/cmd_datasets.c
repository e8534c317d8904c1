/* cmd_datasets.c: `mechbench datasets build|verify`, the frozen datasets. */
#include "cli.h"

#include <string.h>

#include <mechbench/dataset.h>

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
		    "       mechbench datasets verify [--manifest FILE]\n",
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
	if (strcmp(argv[1], "build") != 0 && strcmp(argv[1], "verify") != 0)
		return mb_cli_usage_error("datasets", "unknown subcommand '%s' (expected build or "
					  "verify)", argv[1]);
	if ((rc = mb_cli_parse(&parsed, &a, &datasets_cmd, argc - 1, argv + 1)) != MB_CLI_GO)
		return rc;
	mb_error_clear(&err);
	if (mb_manifest_load(&m, a.manifest, &err) < 0)
		return mb_cli_fail(&err);
	rc = strcmp(argv[1], "build") == 0 ? build(&m) : verify(&m);
	mb_manifest_dispose(&m);
	return rc;
}
