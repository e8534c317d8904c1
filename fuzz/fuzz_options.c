/* fuzz_options.c: the CLI's option-table parser (src/cli/options.c) on any
 * command line. The input is split at NUL bytes into at most 15 words after
 * the command name. Beyond "no sanitizer report": the result is 0, --help or
 * MB_EINVALID with one non-empty line; a parse that succeeds holds values the
 * table allows (ranges, choices, one value per non-repeatable option); the
 * generated help is written without a fault. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/options.h"

typedef struct f_args {
	const char *path, *text;
	int64_t n;
	double x;
	int choice, flag;
	mb_cli_list list;
} f_args;

static const char *const choices[] = {"a", "bb", "ccc", NULL};

static const mb_cli_opt f_opts[] = {
	{MB_OPT(PATH, "--path", f_args, path), .alias = "--p", .meta = "FILE", .def = "x.db",
	 .help = "a path"},
	{MB_OPT(STRING, "--text", f_args, text), .meta = "TEXT", .help = "text"},
	{MB_OPT(INT, "--n", f_args, n), .meta = "N", .range = "[1, 4096]", .help = "an integer"},
	{MB_OPT(DOUBLE, "--x", f_args, x), .meta = "X", .range = "(0, 1]", .def = "0.5",
	 .help = "a number"},
	{MB_OPT(ENUM, "--choice", f_args, choice), .choices = choices, .def = "bb",
	 .help = "a choice"},
	{MB_OPT(FLAG, "--flag", f_args, flag), .help = "a flag"},
	{MB_OPT(LIST, "--item", f_args, list), .meta = "V", .help = "repeatable"},
};

static const mb_cli_cmd f_cmd = {
	.name = "fuzz",
	.opts = f_opts,
	.n_opts = MB_CLI_N(f_opts),
	.operands = "ARG",
	.max_operands = 2,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1), *argv[17] = {"fuzz"};
	int argc = 1, rc;
	f_args a;
	mb_cli_parsed p;
	mb_error err;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	for (size_t i = 0; i <= size && argc < 16;) {
		argv[argc++] = buf + i;
		i += strlen(buf + i) + 1;
	}
	argv[argc] = NULL;
	mb_error_clear(&err);
	rc = mb_cli_opts_parse(&p, &a, &f_cmd, argc, argv, &err);
	if (rc == MB_EINVALID) {
		if (!err.msg[0] || strchr(err.msg, '\n'))
			abort();
	} else if (rc == 0) {
		if (mb_cli_given(&p, &f_cmd, "--n") && !(a.n >= 1 && a.n <= 4096))
			abort();
		if (!(a.x > 0 && a.x <= 1) || a.choice < 0 || a.choice > 2 || !a.path)
			abort();
		if (a.list.n != mb_cli_given(&p, &f_cmd, "--item") || p.n_operands > 2)
			abort();
		for (size_t k = 0; k + 1 < f_cmd.n_opts; k++) /* all but the LIST */
			if (p.count[k] > 1)
				abort();
	} else if (rc != MB_CLI_HELP) {
		abort();
	}
	mb_cli_args_dispose(&a, &f_cmd);
	{
		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);
		if (f) {
			mb_cli_help(f, &f_cmd);
			fclose(f);
		}
		free(text);
	}
	free(buf);
	return 0;
}
