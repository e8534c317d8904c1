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

/* Skips the test when the command-line tool is not on PATH, or FAILS it when
 * the environment has MB_REQUIRE_TOOLS=1: ci/test sets it after ci/setup has
 * installed every tool, so a tool still missing there is a broken setup that
 * must not pass as a skip. `why` says what cannot be checked without it. */
#define MBT_NEED_TOOL(tool, why)                                                                  \
	do {                                                                                      \
		if (!mbt_have_tool(tool)) {                                                       \
			if (mbt_require_tools())                                                  \
				cr_assert_fail("%s is missing although MB_REQUIRE_TOOLS=1 (ci/test " \
					       "installed it): %s", tool, why);                    \
			cr_skip_test("%s is not installed (ci/setup installs it): %s", tool, why); \
		}                                                                                 \
	} while (0)
/* 1 when `command -v tool` finds it. */
int mbt_have_tool(const char *tool);
/* 1 when the environment variable MB_REQUIRE_TOOLS is "1". */
int mbt_require_tools(void);

/* Number of lines ('\n') in s. */
size_t mbt_count_lines(const char *s);

#endif
