/*
 * cli.h: shared pieces of the mechbench command-line tool.
 *
 * Each subcommand lives in src/cli/cmd_<name>.c, exports
 * `int mb_cmd_<name>(int argc, char **argv)` (argv[0] is the command name)
 * and is listed once in src/cli/commands.def. Its options are one table
 * (options.h) that drives both their parsing and its `--help`.
 */
#ifndef MB_CLI_H
#define MB_CLI_H

#include <stdio.h>

#include <mechbench/error.h>

#include "options.h"

/* Documented exit codes (README, `mechbench --help`). */
enum {
	MB_EXIT_OK = 0,           /* success, gate passed */
	MB_EXIT_ERROR = 1,        /* runtime error: bad file, I/O, database */
	MB_EXIT_USAGE = 2,        /* bad command line */
	MB_EXIT_GATE_FAILED = 3,  /* a REGRESSED metric or a failed absolute threshold */
	MB_EXIT_INCONCLUSIVE = 4, /* INCONCLUSIVE, THRESHOLD-CHANGED or METRIC-CHANGED */
};

/* Option rows many commands share (options.h): --threads (an int64_t, 0 when
 * not given: all) and --quiet (an int). */
#define MB_CLI_OPT_THREADS(T, field)                                                     \
	{MB_OPT(INT, "--threads", T, field), .meta = "N", .range = "[1, 4096]",            \
	 .help = "OpenMP threads (default: all)"}
#define MB_CLI_OPT_QUIET(T, field) {MB_OPT(FLAG, "--quiet", T, field), .help = "no progress bar"}

#define MB_COMMAND(name, summary) int mb_cmd_##name(int argc, char **argv);
#include "commands.def"
#undef MB_COMMAND

/* (options.c) Prints "mechbench: <message>" for err on stderr and returns MB_EXIT_ERROR. */
int mb_cli_fail(const mb_error *err);
/* The error of the last mb_cli_fail (empty before any): what a rank whose
 * stderr is closed reports when it aborts an MPI job (dist.h). */
const mb_error *mb_cli_last_error(void);
/* Prints "mechbench <cmd>: <message>\nTry 'mechbench <cmd> --help'." and
 * returns MB_EXIT_USAGE. */
int mb_cli_usage_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
