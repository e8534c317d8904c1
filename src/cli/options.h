/*
 * options.h: one option table per command, driving both the parsing of its
 * command line and its `--help` (private to src/cli).
 *
 * A command declares its options as a static table of rows over its own
 * arguments struct, at file scope:
 *
 *	typedef struct run_args { const char *suite, *db; int64_t threads; int quiet; } run_args;
 *	static const mb_cli_opt run_opts[] = {
 *		{MB_OPT(PATH, "--suite", run_args, suite), .meta = "FILE", .required = 1,
 *		 .help = "the suite spec"},
 *		{MB_OPT(PATH, "--db", run_args, db), .meta = "FILE", .def = "mechbench.db",
 *		 .help = "results database"},
 *		{MB_OPT(INT, "--threads", run_args, threads), .meta = "N", .range = "[1, 4096]",
 *		 .help = "OpenMP threads (default: all)"},
 *		{MB_OPT(FLAG, "--quiet", run_args, quiet), .help = "no progress bar"},
 *	};
 *
 * MB_OPT checks at compile time that the field has the kind's C type. Every
 * option is accepted as `--name value` and `--name=value` (a flag only as
 * `--name`); -h/--help anywhere before `--` prints the help; `--` ends the
 * options. A separate value that is itself one of the command's option names
 * (or --help) counts as missing: write `--text=--quiet` to pass such text.
 * A bad command line is ONE line on stderr naming the command and the option
 * ("mechbench run: --threads: expected an integer in [1, 4096], not '0'"),
 * then "Try 'mechbench run --help'.", and exit status 2 (MB_EXIT_USAGE).
 */
#ifndef MB_CLI_OPTIONS_H
#define MB_CLI_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <mechbench/error.h>

typedef enum mb_cli_kind {
	MB_OPT_FLAG,   /* no value; sets an int to 1 */
	MB_OPT_STRING, /* const char *, borrowed from argv (or the table's .def) */
	MB_OPT_PATH,   /* const char *, a file or folder (the file layer checks it) */
	MB_OPT_INT,    /* int64_t, base 10, checked against .range */
	MB_OPT_DOUBLE, /* double, finite, checked against .range */
	MB_OPT_ENUM,   /* int: the index of the value in .choices */
	MB_OPT_LIST,   /* mb_cli_list: every value of a repeatable string option */
} mb_cli_kind;

/* The values of a MB_OPT_LIST option in the order given (v is malloc'd:
 * mb_cli_args_dispose frees it; the strings are argv's). */
typedef struct mb_cli_list {
	const char **v;
	size_t n;
} mb_cli_list;

typedef struct mb_cli_opt {
	const char *name;    /* "--suite" */
	const char *alias;   /* a second spelling, or NULL */
	mb_cli_kind kind;
	size_t offset;       /* of the destination in the command's args struct */
	const char *meta;    /* the value's placeholder in help ("FILE"); an enum
			      * without one shows its choices ("exit4|pass|fail") */
	const char *def;     /* default, as command-line text (parsed like a value and
			      * shown in help); NULL: zero / NULL / not given */
	const char *range;   /* INT and DOUBLE: "[1, 4096]", "(0, 1)", "(0, 1]",
			      * "> 0", ">= 0"; NULL: any */
	const char *const *choices; /* ENUM: NULL-terminated allowed values */
	int required;        /* a usage error when not given */
	int repeat;          /* may be given more than once (the last wins; LIST
			      * always collects every value) */
	const char *help;    /* one line (wrapped in --help); '\n' forces a break */
} mb_cli_opt;

/* offsetof(T, field), but only when field has C type `type` (else a compile
 * error: _Generic has no match). */
#define MB_CLI_AT(T, field, type) _Generic(((T *)0)->field, type: offsetof(T, field))
#define MB_CLI_OFF_FLAG(T, f) MB_CLI_AT(T, f, int)
#define MB_CLI_OFF_STRING(T, f) MB_CLI_AT(T, f, const char *)
#define MB_CLI_OFF_PATH(T, f) MB_CLI_AT(T, f, const char *)
#define MB_CLI_OFF_INT(T, f) MB_CLI_AT(T, f, int64_t)
#define MB_CLI_OFF_DOUBLE(T, f) MB_CLI_AT(T, f, double)
#define MB_CLI_OFF_ENUM(T, f) MB_CLI_AT(T, f, int)
#define MB_CLI_OFF_LIST(T, f) MB_CLI_AT(T, f, mb_cli_list)
/* The head of a row: kind (FLAG, STRING, PATH, INT, DOUBLE, ENUM, LIST), the
 * long name, the args struct type and its field. */
#define MB_OPT(KIND, NAME, T, FIELD)                                                     \
	.name = NAME, .kind = MB_OPT_##KIND, .offset = MB_CLI_OFF_##KIND(T, FIELD)

#define MB_CLI_MAX_OPTS 48
#define MB_CLI_MAX_ARGS 1024 /* merge takes one operand per shard */

/* A command: its name as typed after `mechbench` ("gate", "zoo train"), its
 * option table, its operands and its help text. */
typedef struct mb_cli_cmd {
	const char *name;
	const mb_cli_opt *opts;
	size_t n_opts;
	const char *operands;  /* operands in the synopsis ("FILE"), NULL: none */
	int min_operands, max_operands; /* max <= MB_CLI_MAX_ARGS */
	const char *synopsis;  /* usage lines after "usage: " instead of the generated
				* one (alternatives, groups); each line starts with
				* "mechbench" */
	const char *about;     /* what the command does: after the usage */
	const char *notes;     /* after the option list (exit codes, examples) */
} mb_cli_cmd;

#define MB_CLI_N(table) (sizeof(table) / sizeof((table)[0]))

/* What a parse saw besides the args struct. */
typedef struct mb_cli_parsed {
	const char *operands[MB_CLI_MAX_ARGS];
	int n_operands;
	unsigned count[MB_CLI_MAX_OPTS]; /* times each row was given */
} mb_cli_parsed;

/* Go on with the command (mb_cli_parse); any other value is an exit code. */
#define MB_CLI_GO (-1)
/* mb_cli_opts_parse: --help was asked for. */
#define MB_CLI_HELP 1

/* Parses argv[1..argc) by cmd into args: first every row's default (or
 * zero), then the command line. Returns 0, MB_CLI_HELP when -h/--help is
 * given (nothing else is checked then), MB_EINVALID with err naming the
 * option for a bad command line, or MB_ENOMEM. args holds LIST arrays even
 * on error: free them with mb_cli_args_dispose. */
int mb_cli_opts_parse(mb_cli_parsed *p, void *args, const mb_cli_cmd *cmd, int argc,
		      char **argv, mb_error *err);

/* mb_cli_opts_parse for a command's entry point: prints the help on stdout
 * (returns MB_EXIT_OK), or one usage error on stderr (returns
 * MB_EXIT_USAGE, or MB_EXIT_ERROR when out of memory), else returns
 * MB_CLI_GO. Free args with mb_cli_args_dispose in every case. */
int mb_cli_parse(mb_cli_parsed *p, void *args, const mb_cli_cmd *cmd, int argc, char **argv);

/* Frees the LIST arrays in args. */
void mb_cli_args_dispose(void *args, const mb_cli_cmd *cmd);

/* Times the option named `name` (either spelling) was given; the name must be
 * in cmd's table (asserted). */
unsigned mb_cli_given(const mb_cli_parsed *p, const mb_cli_cmd *cmd, const char *name);

/* For an option that means something only in some cases (--l1 with --arch
 * relu): MB_CLI_GO when `name` was not given or `applies`, else the usage
 * error "NAME: only with WHEN" on stderr and MB_EXIT_USAGE, so that an
 * option is never silently ignored. */
int mb_cli_only_with(const mb_cli_parsed *p, const mb_cli_cmd *cmd, const char *name,
		     int applies, const char *when);

/* The help generated from the table: usage, about, options, notes. */
void mb_cli_help(FILE *f, const mb_cli_cmd *cmd);
/* The generated synopsis alone ("usage: mechbench gate --suite FILE ..."),
 * with `lead` ("usage: " or "       ") before it. */
void mb_cli_synopsis(FILE *f, const mb_cli_cmd *cmd, const char *lead);
/* The help of a command with subcommands (`zoo`): each one's synopsis, the
 * about text, then each one's about and options. */
void mb_cli_help_group(FILE *f, const char *about, const mb_cli_cmd *const *cmds, size_t n);
/* The option list alone, one option per entry (wrapped at 80 columns). */
void mb_cli_option_list(FILE *f, const mb_cli_cmd *cmd);

#endif
