/* `mechbench power`, run as a program (MB_CLI_PATH): a table of command lines
 * with their exit code, exact stdout, and the flag the error line names. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/cli_run.h"

#define MAX_ARGS 16

typedef struct cli_case {
	int line;
	const char *args[MAX_ARGS]; /* after "mechbench power", NULL-terminated */
	int exit_code;
	const char *stdout_is;   /* exact stdout, or NULL to skip */
	const char *stderr_has;  /* substring of stderr's first line, or NULL */
} cli_case;

static const cli_case cases[] = {
	/* Miller (2024) worked example: 1962.2 -> 1963; 2140.96 -> 2141. */
	{__LINE__, {"--discordant", "0.1", "--delta", "0.02"}, 0, "n = 1963\n", NULL},
	{__LINE__, {"--discordant", "0.1", "--delta", "0.02", "--alpha", "0.05", "--power", "0.8",
		    "--sides", "2"}, 0, "n = 1963\n", NULL},
	{__LINE__, {"--discordant", "0.1", "--delta", "0.02", "--sides", "1", "--power", "0.9"}, 0,
	 "n = 2141\n", NULL},
	{__LINE__, {"--discordant=0.1", "--delta=0.02", "--sides=1", "--power=0.9"}, 0,
	 "n = 2141\n", NULL},
	/* statsmodels NormalIndPower(ratio=0): one-sided, es 0.2, 0.05, 0.8 -> 154.56 */
	{__LINE__, {"--sd", "1", "--delta", "0.2", "--sides", "1"}, 0, "n = 155\n", NULL},
	/* two-sided closed form 196.22 -> 197; DEFF 1.7 with sd 2.5, delta 0.1 -> 15809.35 */
	{__LINE__, {"--sd", "1", "--delta", "-0.2"}, 0, "n = 197\n", NULL},
	{__LINE__, {"--sd", "2.5", "--delta", "0.1", "--alpha", "0.01", "--power", "0.9",
		    "--deff", "1.7"}, 0, "n = 15810\n", NULL},
	/* MDE: closed forms by scipy, 0.11119853624953677 (one-sided, n 500) and
	 * 0.019996 (Miller, n 1963) */
	{__LINE__, {"--sd", "1", "--n", "500", "--sides", "1"}, 0, "mde = 0.111199\n", NULL},
	{__LINE__, {"--discordant", "0.1", "--n", "1963"}, 0, "mde = 0.019996\n", NULL},
	{__LINE__, {"--help"}, 0, NULL, NULL},
	/* usage errors: exit 2, the first stderr line names the flag */
	{__LINE__, {"--delta", "0.02"}, 2, "", "--sd or --discordant"},
	{__LINE__, {"--sd", "1", "--discordant", "0.1", "--delta", "0.1"}, 2, "", "--sd and --discordant"},
	{__LINE__, {"--sd", "1"}, 2, "", "--delta or --n"},
	{__LINE__, {"--sd", "1", "--delta", "0.1", "--n", "100"}, 2, "", "--delta and --n"},
	{__LINE__, {"--sd", "-1", "--delta", "0.1"}, 2, "", "--sd"},
	{__LINE__, {"--sd", "abc", "--delta", "0.1"}, 2, "", "--sd: 'abc'"},
	{__LINE__, {"--discordant", "1.5", "--delta", "0.1"}, 2, "", "--discordant"},
	{__LINE__, {"--sd", "1", "--delta", "0"}, 2, "", "--delta"},
	{__LINE__, {"--sd", "1", "--delta", "0.1", "--alpha", "1.5"}, 2, "", "--alpha"},
	{__LINE__, {"--sd", "1", "--delta", "0.1", "--power", "0"}, 2, "", "--power"},
	{__LINE__, {"--sd", "1", "--delta", "0.1", "--alpha", "0.5", "--power", "0.2", "--sides", "1"},
	 2, "", "--power"},
	{__LINE__, {"--sd", "1", "--delta", "0.1", "--sides", "3"}, 2, "", "--sides"},
	{__LINE__, {"--sd", "1", "--delta", "0.1", "--deff", "0"}, 2, "", "--deff"},
	{__LINE__, {"--sd", "1", "--n", "0"}, 2, "", "--n"},
	{__LINE__, {"--sd", "1", "--n", "12.5"}, 2, "", "--n"},
	{__LINE__, {"--sd", "1", "--delta"}, 2, "", "--delta: needs a value"},
	{__LINE__, {"--sd", "1", "--sd", "2", "--delta", "0.1"}, 2, "", "--sd: given twice"},
	{__LINE__, {"--sd", "1", "--delta", "0.1", "--bogus"}, 2, "", "'--bogus'"},
};

#define N_CASES (sizeof(cases) / sizeof(cases[0]))

/* Criterion copies parameters into its worker processes, where pointers into
 * the table (string literals) need not be valid: pass indices instead. */
static size_t case_index[N_CASES];

ParameterizedTestParameters(cli_power, command_lines_give_their_output_and_exit_code)
{
	for (size_t i = 0; i < N_CASES; i++)
		case_index[i] = i;
	return cr_make_param_array(size_t, case_index, N_CASES);
}

ParameterizedTest(size_t *idx, cli_power, command_lines_give_their_output_and_exit_code)
{
	const cli_case *c = &cases[*idx];
	const char *args[MAX_ARGS + 2] = {"power"};
	mbt_cli_result *r = malloc(sizeof(*r));
	char *out, *err;
	int argc = 1;

	cr_assert(r != NULL);
	for (int i = 0; i < MAX_ARGS && c->args[i]; i++)
		args[argc++] = c->args[i];
	args[argc] = NULL;
	mbt_cli_run(r, args);
	out = r->out;
	err = r->err;

	cr_assert(r->exited, "line %d: did not exit normally", c->line);
	cr_expect_eq(r->status, c->exit_code, "line %d: exit %d, want %d; stderr: %s", c->line,
		     r->status, c->exit_code, err);
	if (c->stdout_is)
		cr_expect_str_eq(out, c->stdout_is, "line %d: stdout '%s', want '%s'", c->line, out,
				 c->stdout_is);
	if (c->exit_code == 0 && c->stdout_is)
		cr_expect_str_eq(err, "", "line %d: unexpected stderr: %s", c->line, err);
	if (c->stderr_has) {
		char *nl = strchr(err, '\n');
		if (nl)
			*nl = '\0';
		cr_expect(strstr(err, c->stderr_has) != NULL,
			  "line %d: first stderr line '%s' does not name '%s'", c->line, err,
			  c->stderr_has);
		cr_expect(strncmp(err, "mechbench power: ", 17) == 0, "line %d: '%s'", c->line, err);
	}
	free(r);
}

Test(cli_power, help_lists_every_flag_and_the_command_is_in_the_table)
{
	static const char *const flags[] = {"--sd", "--discordant", "--delta", "--n", "--alpha",
					    "--power", "--sides", "--deff"};
	mbt_cli_result *r = malloc(sizeof(*r));

	cr_assert(r != NULL);
	mbt_cli_run(r, (const char *[]){"power", "--help", NULL});
	cr_expect_eq(r->status, 0);
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		cr_expect(strstr(r->out, flags[i]) != NULL, "--help does not mention %s", flags[i]);
	mbt_cli_run(r, (const char *[]){"--help", NULL});
	cr_expect(strstr(r->out, "  power ") != NULL, "mechbench --help does not list power");
	free(r);
}
