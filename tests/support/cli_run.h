/*
 * cli_run.h: running the built mechbench binary (MB_CLI_PATH) from a test,
 * either directly (argv, stdout and stderr captured apart) or through
 * /bin/sh in a folder (a command line, stdout and stderr captured together).
 */
#ifndef MB_TEST_CLI_RUN_H
#define MB_TEST_CLI_RUN_H

#include <stddef.h>

/* The binary quoted for a shell command line: MBT_CLI "run --suite s.json". */
#define MBT_CLI "'" MB_CLI_PATH "' "

typedef struct mbt_cli_result {
	int exited; /* 1 when it exited normally, 0 when a signal ended it */
	int status; /* exit code, or 128 + signal */
	char out[65536]; /* stdout, truncated to fit, NUL-terminated */
	char err[16384]; /* stderr, likewise */
} mbt_cli_result;

/* Runs mechbench with args (NULL-terminated; the words after the program
 * name, at most 62) without a shell, stdout and stderr captured through temp
 * files (no pipe deadlock whatever the output size). Fails the test when the
 * process cannot be started or waited for. */
void mbt_cli_run(mbt_cli_result *r, const char *const *args);

/* Runs `cd dir && <cmd>` through /bin/sh with stdout and stderr captured
 * into *out (malloc'd; may be NULL). Returns the exit status (or -1). */
int mbt_sh(const char *dir, const char *cmd, char **out);
/* mbt_sh that fails the test, showing cmd, its exit code and its output,
 * unless cmd exits 0. */
void mbt_sh_ok(const char *dir, const char *cmd);

/* Number of lines ('\n') in s. */
size_t mbt_count_lines(const char *s);

#endif
