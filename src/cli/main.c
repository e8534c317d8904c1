/* main.c: mechbench's entry point and command table. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include <mechbench/buildinfo.h>
#include <mechbench/dist.h>
#include <mechbench/gemm.h>

typedef struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
} command;

static const command commands[] = {
#define MB_COMMAND(name, summary) {#name, mb_cmd_##name, summary},
#include "commands.def"
#undef MB_COMMAND
};

static void print_help(FILE *out)
{
	fprintf(out,
		"usage: mechbench <command> [options]\n"
		"       mechbench --version | --help\n\n"
		"Reproducible benchmarks and regression gates for mechanistic interpretability.\n\n"
		"Commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-14s %s\n", commands[i].name, commands[i].summary);
	fprintf(out,
		"\nEvery command takes --gemm auto|portable|openblas|onednn (or MB_GEMM): the\n"
		"GEMM backend. portable (the default) gives the same bits on any CPU;\n"
		"openblas and onednn are faster and reproducible on one machine (gemm.h).\n"
		"\nRun 'mechbench <command> --help' for a command's options.\n\n"
		"Exit codes:\n"
		"  0  success (gate passed)\n"
		"  1  error (bad input file, I/O, database)\n"
		"  2  usage error (bad command line)\n"
		"  3  gate failed (a REGRESSED metric or a failed absolute threshold)\n"
		"  4  inconclusive (INCONCLUSIVE, THRESHOLD-CHANGED, METRIC-CHANGED)\n");
}

/* Takes --gemm NAME / --gemm=NAME out of argv (anywhere before "--") and
 * selects that backend for the whole process; returns argc after removal, or
 * -1 after printing a usage error. */
static int take_gemm_option(int argc, char **argv)
{
	int out = 1;

	for (int i = 1; i < argc; i++) {
		const char *name = NULL;
		mb_error err;

		if (strcmp(argv[i], "--") == 0) {
			while (i < argc)
				argv[out++] = argv[i++];
			break;
		}
		if (strcmp(argv[i], "--gemm") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "mechbench: --gemm: needs a value (auto, portable, "
						"openblas, onednn)\n");
				return -1;
			}
			name = argv[++i];
		} else if (strncmp(argv[i], "--gemm=", 7) == 0) {
			name = argv[i] + 7;
		}
		if (!name) {
			argv[out++] = argv[i];
			continue;
		}
		if (mb_gemm_select(name, &err) < 0) {
			fprintf(stderr, "mechbench: %s\n", err.msg);
			return -1;
		}
	}
	argv[out] = NULL;
	return out;
}

int main(int argc, char **argv)
{
	/* A bad MB_GEMM or MB_ISA is refused (one line, exit 2) here, before any
	 * output; read lazily, `version` printed half its lines first. */
	(void)mb_gemm_current();
	argc = take_gemm_option(argc, argv);
	if (argc < 0)
		return MB_EXIT_USAGE;
	if (argc < 2) {
		print_help(stderr);
		return MB_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		print_help(stdout);
		return MB_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0)
		return mb_cmd_version(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0) {
			/* under mpirun every rank runs the command (dist.h) */
			mb_error err;
			int rc;
			mb_error_clear(&err);
			if (mb_dist_init(&argc, &argv, &err) < 0)
				return mb_cli_fail(&err);
			rc = commands[i].fn(argc - 1, argv + 1);
			mb_dist_finalize(rc, mb_cli_last_error());
			return rc;
		}
	fprintf(stderr, "mechbench: unknown command '%s'\nTry 'mechbench --help'.\n", argv[1]);
	return MB_EXIT_USAGE;
}
