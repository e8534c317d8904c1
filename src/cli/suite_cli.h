/*
 * suite_cli.h: what the suite commands (run, gate, baseline, datasets) share:
 * option parsing, where a spec lives (its git work tree), provenance of the
 * spec and the repository, and whether to draw progress or colour.
 */
#ifndef MB_SUITE_CLI_H
#define MB_SUITE_CLI_H

#include <stddef.h>

#include <mechbench/error.h>
#include <mechbench/gitrepo.h>
#include <mechbench/runner.h>
#include <mechbench/spec.h>
#include <mechbench/store.h>

#include "options.h"

/* The option row of --db-timeout (a double, seconds) that the commands
 * writing the store share (options.h). */
#define MB_CLI_OPT_DB_TIMEOUT(T, field)                                                  \
	{MB_OPT(DOUBLE, "--db-timeout", T, field), .meta = "S", .range = "[0, 86400]",     \
	 .def = "600", .help = "wait up to S seconds for another writer's lock"}

/* The spec file and the repository around it. */
typedef struct mb_cli_spec_home {
	mb_git *git;         /* NULL when the spec is not inside a git work tree */
	char root[4096];     /* the work tree, or "." outside git */
	char relpath[1024];  /* the spec's path relative to root (as given outside git) */
	char *text;          /* the working file's bytes (owned) */
	size_t len;
	char blob[MB_GIT_OID_HEX_LEN]; /* git blob id of text */
} mb_cli_spec_home;

/* Reads the spec file at path and finds its repository (none is fine unless
 * need_git, then MB_ENOTFOUND with a clear message). */
int mb_cli_spec_home_open(mb_cli_spec_home *h, const char *path, int need_git, mb_error *err);
void mb_cli_spec_home_dispose(mb_cli_spec_home *h);

/* Fills p's suite, spec and repository fields (spec_committed compares the
 * working file with HEAD's version). */
int mb_cli_provenance_spec(mb_provenance *p, mb_cli_spec_home *h, const mb_spec *spec,
			   mb_error *err);

/* Checks each non-NULL path of outs[0..n) with mb_file_check_output
 * (file.h), and that no two of them and none of them and a non-NULL path of
 * ins[0..n_in) (files the command reads or keeps: the spec, the results
 * database, a dataset) are one file (mb_file_same), so that a slip such as
 * `--json demo.json` or `--html mechbench.db` never replaces an input.
 * Every command calls it on all its outputs before it runs or stores
 * anything; the error names both options. */
typedef struct mb_cli_path {
	const char *opt;  /* "--json" */
	const char *path; /* NULL: not given */
} mb_cli_path;
int mb_cli_check_outputs(const mb_cli_path *outs, size_t n, const mb_cli_path *ins, size_t n_in,
			 mb_error *err);

/* Sets opts->busy_timeout_ms from --db-timeout SECONDS: how long a writer
 * waits for another's lock (at least 1 ms). */
void mb_cli_db_timeout(mb_store_opts *opts, double seconds);

/* Progress on stderr only on a TTY and without --quiet; colour on stdout
 * only on a TTY and without NO_COLOR. */
/* Per-stratum aggregates of a stored entry (mb_runner_strata_stored), with
 * OOD marks from its dataset when the file at its path (relative to the
 * current directory) is still the one it ran on; an unreadable dataset only
 * means no marks. */
int mb_cli_strata_stored(mb_entry_result *e, const mb_provenance *prov, mb_error *err);

int mb_cli_want_progress(int quiet);
int mb_cli_want_color(void);

#endif
