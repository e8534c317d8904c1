/* test_options.c: the option-table parser and the help it generates
 * (src/cli/options.c), on a table of every kind, then through the binary. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/options.h"
#include "support/cli_run.h"

typedef struct t_args {
	const char *suite, *db, *text;
	int64_t threads;
	double alpha, sd;
	int format, quiet;
	mb_cli_list hooks;
} t_args;

static const char *const formats[] = {"md", "markdown", "html", NULL};

static const mb_cli_opt t_opts[] = {
	{MB_OPT(PATH, "--suite", t_args, suite), .meta = "FILE", .required = 1,
	 .help = "the suite spec"},
	{MB_OPT(PATH, "--db", t_args, db), .alias = "--database", .meta = "FILE",
	 .def = "mechbench.db", .help = "results database"},
	{MB_OPT(STRING, "--text", t_args, text), .meta = "TEXT", .help = "some text"},
	{MB_OPT(INT, "--threads", t_args, threads), .meta = "N", .range = "[1, 4096]",
	 .help = "OpenMP threads"},
	{MB_OPT(DOUBLE, "--alpha", t_args, alpha), .meta = "A", .range = "(0, 1)", .def = "0.05",
	 .help = "significance level"},
	{MB_OPT(DOUBLE, "--sd", t_args, sd), .meta = "X", .range = "> 0", .help = "an SD"},
	{MB_OPT(ENUM, "--format", t_args, format), .choices = formats, .def = "md",
	 .help = "output format, a long help line that has to be wrapped onto a second line "
		 "because it does not fit in eighty columns"},
	{MB_OPT(FLAG, "--quiet", t_args, quiet), .help = "no progress"},
	{MB_OPT(LIST, "--hook", t_args, hooks), .meta = "NAME", .help = "repeatable"},
};

static const mb_cli_cmd t_cmd = {
	.name = "t",
	.opts = t_opts,
	.n_opts = MB_CLI_N(t_opts),
	.operands = "FILE",
	.max_operands = 1,
	.about = "About t.\n",
	.notes = "Exit codes: 0, 2.\n",
};

#define MAX_ARGV 10

typedef struct parse_case {
	int line;
	const char *argv[MAX_ARGV]; /* after the command name */
	int rc;                     /* 0, MB_CLI_HELP or MB_EINVALID */
	const char *error;          /* the whole error message, for rc MB_EINVALID */
} parse_case;

static const parse_case cases[] = {
	{__LINE__, {"--suite", "s.json"}, 0, NULL},
	{__LINE__, {"--suite=s.json", "--threads=4"}, 0, NULL},
	{__LINE__, {"--help", "--bogus"}, MB_CLI_HELP, NULL},
	{__LINE__, {"--bogus", "-h"}, MB_CLI_HELP, NULL},
	{__LINE__, {"--db", "--help"}, MB_CLI_HELP, NULL},
	{__LINE__, {"--suite", "s", "a", "--", "--help"}, MB_EINVALID,
	 "unexpected argument '--help'"},
	{__LINE__, {"--suite", "s", "--bogus"}, MB_EINVALID, "unknown option '--bogus'"},
	{__LINE__, {"--suite", "s", "--bogus=3"}, MB_EINVALID, "unknown option '--bogus'"},
	{__LINE__, {"--suite", "s", "-x"}, MB_EINVALID, "unknown option '-x'"},
	{__LINE__, {"--suite", "s", "--quiet", "--quiet"}, MB_EINVALID, "--quiet: given twice"},
	{__LINE__, {"--suite", "s", "--db", "a", "--db=b"}, MB_EINVALID, "--db: given twice"},
	{__LINE__, {"--suite", "s", "--db", "a", "--database", "b"}, MB_EINVALID,
	 "--database: given twice"},
	{__LINE__, {"--suite", "s", "--quiet=1"}, MB_EINVALID, "--quiet: takes no value"},
	{__LINE__, {"--suite"}, MB_EINVALID, "--suite: needs a value"},
	{__LINE__, {"--suite", "--quiet"}, MB_EINVALID, "--suite: needs a value"},
	{__LINE__, {"--suite=", "--text="}, 0, NULL}, /* empty values: the file layer's errors */
	{__LINE__, {"--quiet"}, MB_EINVALID, "--suite FILE is required"},
	{__LINE__, {"--suite", "s", "--threads", "abc"}, MB_EINVALID,
	 "--threads: 'abc' is not an integer"},
	{__LINE__, {"--suite", "s", "--threads", "4.5"}, MB_EINVALID,
	 "--threads: '4.5' is not an integer"},
	{__LINE__, {"--suite", "s", "--threads", "0"}, MB_EINVALID,
	 "--threads: expected an integer in [1, 4096], not '0'"},
	{__LINE__, {"--suite", "s", "--threads=4097"}, MB_EINVALID,
	 "--threads: expected an integer in [1, 4096], not '4097'"},
	{__LINE__, {"--suite", "s", "--threads", "99999999999999999999"}, MB_EINVALID,
	 "--threads: '99999999999999999999' is not an integer"},
	{__LINE__, {"--suite", "s", "--alpha", "1"}, MB_EINVALID,
	 "--alpha: expected a number in (0, 1), not '1'"},
	{__LINE__, {"--suite", "s", "--alpha", "nan"}, MB_EINVALID,
	 "--alpha: 'nan' is not a finite number"},
	{__LINE__, {"--suite", "s", "--sd", "0"}, MB_EINVALID,
	 "--sd: expected a number > 0, not '0'"},
	{__LINE__, {"--suite", "s", "--sd", "-1"}, MB_EINVALID,
	 "--sd: expected a number > 0, not '-1'"},
	{__LINE__, {"--suite", "s", "--format", "pdf"}, MB_EINVALID,
	 "--format: expected md, markdown or html, not 'pdf'"},
	{__LINE__, {"--suite", "s", "a", "b"}, MB_EINVALID, "unexpected argument 'b'"},
};

Test(options, every_case_of_the_table_parses_or_fails_with_its_one_line)
{
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		char *argv[MAX_ARGV + 1] = {"t"};
		int argc = 1, rc;
		t_args a;
		mb_cli_parsed p;
		mb_error err;

		for (; cases[c].argv[argc - 1]; argc++)
			argv[argc] = (char *)cases[c].argv[argc - 1];
		mb_error_clear(&err);
		memset(&a, 0xff, sizeof(a)); /* the parser must set every field */
		a.hooks = (mb_cli_list){0};
		rc = mb_cli_opts_parse(&p, &a, &t_cmd, argc, argv, &err);
		cr_expect_eq(rc, cases[c].rc, "line %d: rc %d (%s)", cases[c].line, rc, err.msg);
		if (cases[c].error)
			cr_expect_str_eq(err.msg, cases[c].error, "line %d", cases[c].line);
		mb_cli_args_dispose(&a, &t_cmd);
	}
}

Test(options, both_syntaxes_and_defaults_fill_the_same_fields)
{
	char *a1[] = {"t", "--suite", "s.json", "--threads", "4", "--alpha", "0.1", "--format",
		      "html", "--text", "-3", "--quiet", "x.npy", NULL};
	char *a2[] = {"t", "x.npy", "--suite=s.json", "--threads=4", "--alpha=0.1", "--format=html",
		      "--text=-3", "--quiet", NULL};
	char *a3[] = {"t", "--suite", "s.json", NULL};
	t_args r1, r2, r3;
	mb_cli_parsed p1, p2, p3;
	mb_error err;

	cr_assert_eq(mb_cli_opts_parse(&p1, &r1, &t_cmd, 13, a1, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_cli_opts_parse(&p2, &r2, &t_cmd, 8, a2, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_cli_opts_parse(&p3, &r3, &t_cmd, 3, a3, &err), 0, "%s", err.msg);
	for (int i = 0; i < 2; i++) {
		const t_args *r = i ? &r2 : &r1;
		const mb_cli_parsed *p = i ? &p2 : &p1;
		cr_expect_str_eq(r->suite, "s.json");
		cr_expect_eq(r->threads, 4);
		cr_expect_eq(r->alpha, 0.1);
		cr_expect_eq(r->format, 2);
		cr_expect_str_eq(r->text, "-3", "a value may start with '-'");
		cr_expect_eq(r->quiet, 1);
		cr_expect_str_eq(r->db, "mechbench.db");
		cr_expect_eq(p->n_operands, 1);
		cr_expect_str_eq(p->operands[0], "x.npy");
		cr_expect_eq(mb_cli_given(p, &t_cmd, "--alpha"), 1);
		cr_expect_eq(mb_cli_given(p, &t_cmd, "--db"), 0, "a default is not 'given'");
	}
	cr_expect_str_eq(r3.db, "mechbench.db");
	cr_expect_eq(r3.alpha, 0.05);
	cr_expect_eq(r3.format, 0);
	cr_expect_eq(r3.threads, 0);
	cr_expect_eq(r3.quiet, 0);
	cr_expect_null(r3.text);
	cr_expect_eq(r3.hooks.n, 0);
	cr_expect_eq(mb_cli_given(&p3, &t_cmd, "--sd"), 0);
}

Test(options, alias_list_and_double_dash)
{
	char *argv[] = {"t", "--suite", "s", "--database=d.db", "--hook", "a", "--hook=b",
			"--hook", "c", "--", "--quiet", NULL};
	t_args a;
	mb_cli_parsed p;
	mb_error err;

	cr_assert_eq(mb_cli_opts_parse(&p, &a, &t_cmd, 11, argv, &err), 0, "%s", err.msg);
	cr_expect_str_eq(a.db, "d.db");
	cr_expect_eq(mb_cli_given(&p, &t_cmd, "--db"), 1);
	cr_assert_eq(a.hooks.n, 3);
	cr_expect_str_eq(a.hooks.v[0], "a");
	cr_expect_str_eq(a.hooks.v[1], "b");
	cr_expect_str_eq(a.hooks.v[2], "c");
	cr_expect_eq(mb_cli_given(&p, &t_cmd, "--hook"), 3);
	cr_expect_eq(a.quiet, 0, "after --, --quiet is an operand");
	cr_expect_eq(p.n_operands, 1);
	cr_expect_str_eq(p.operands[0], "--quiet");
	mb_cli_args_dispose(&a, &t_cmd);
	cr_expect_null(a.hooks.v);
}

Test(options, help_is_generated_from_the_table)
{
	char *text = NULL, *line;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	cr_assert(f);
	mb_cli_help(f, &t_cmd);
	fclose(f);
	static const char head[] = "usage: mechbench t FILE --suite FILE [--db FILE] [--text TEXT]";
	cr_expect(strncmp(text, head, strlen(head)) == 0, "%s", text);
	cr_expect(strstr(text, "[--format md|markdown|html]") != NULL, "%s", text);
	cr_expect(strstr(text, "[--hook NAME ...]") != NULL, "%s", text);
	cr_expect(strstr(text, "\nAbout t.\n") != NULL, "%s", text);
	cr_expect(strstr(text, "  --db, --database FILE") != NULL, "%s", text);
	cr_expect(strstr(text, "results database (default mechbench.db)") != NULL, "%s", text);
	cr_expect(strstr(text, "OpenMP threads (in [1, 4096])") != NULL, "%s", text);
	cr_expect(strstr(text, "significance level (in (0, 1); default 0.05)") != NULL, "%s",
		  text);
	cr_expect(strstr(text, "  -h, --help") != NULL, "%s", text);
	cr_expect(strstr(text, "\nExit codes: 0, 2.\n") != NULL, "%s", text);
	/* every line fits in 80 columns; the long help is wrapped, not cut */
	cr_expect(strstr(text, "output format, a long help line") != NULL, "%s", text);
	cr_expect(strstr(text, "eighty columns (default md)\n") != NULL, "%s", text);
	for (line = text; *line;) {
		size_t n = strcspn(line, "\n");
		cr_expect(n < 80, "line of %zu columns: %.*s", n, (int)n, line);
		line += n + (line[n] == '\n');
	}
	free(text);
}

/* Through the binary: the uniform syntax and errors in commands that had
 * their own parsers before. */
typedef struct probe {
	int line;
	const char *args[14];
	int status;
	const char *err; /* the first stderr line, exactly */
} probe;

static const probe probes[] = {
	{__LINE__, {"zoo", "verify", "--threads=abc"}, 2,
	 "mechbench zoo verify: --threads: 'abc' is not an integer"},
	{__LINE__, {"zoo", "list", "--models"}, 2, "mechbench zoo list: --models: needs a value"},
	{__LINE__, {"gate", "--suite", "a", "--baseline-ref", "HEAD", "--suite", "b"}, 2,
	 "mechbench gate: --suite: given twice"},
	{__LINE__, {"gate", "--suite=a", "--baseline-ref=HEAD", "--on-changed=maybe"}, 2,
	 "mechbench gate: --on-changed: expected exit4, pass or fail, not 'maybe'"},
	{__LINE__, {"power", "--sd=1", "--delta=0.1", "--sides=3"}, 2,
	 "mechbench power: --sides: expected 1 or 2, not '3'"},
	{__LINE__, {"tokenize", "--model", "m", "--ids", "--ids"}, 2,
	 "mechbench tokenize: --ids: given twice"},
	{__LINE__, {"db", "stats", "--db-timeout", "-1"}, 2,
	 "mechbench db: --db-timeout: expected a number in [0, 86400], not '-1'"},
	{__LINE__, {"version", "extra"}, 2, "mechbench version: unexpected argument 'extra'"},
	/* an option that does not apply is refused, never silently ignored
	 * (mb_cli_only_with); each of these used to run and exit 0 */
	{__LINE__, {"attribute", "--model", "m", "--task", "induction", "--dataset", "d",
		    "--method", "atp", "--no-qk-fix"}, 2,
	 "mechbench attribute: --no-qk-fix: only with --method atp-star"},
	{__LINE__, {"attribute", "--model", "m", "--task", "induction", "--dataset", "d",
		    "--method", "eap", "--no-grad-drop"}, 2,
	 "mechbench attribute: --no-grad-drop: only with --method atp-star"},
	{__LINE__, {"attribute", "--model", "m", "--task", "induction", "--dataset", "d",
		    "--method", "atp-star", "--steps", "3"}, 2,
	 "mechbench attribute: --steps: only with --method eap-ig"},
	{__LINE__, {"sae", "tms", "--arch", "topk", "--l1", "2"}, 2,
	 "mechbench sae tms: --l1: only with --arch relu"},
	{__LINE__, {"sae", "tms", "--arch", "relu", "--k", "2"}, 2,
	 "mechbench sae tms: --k: only with --arch topk"},
	{__LINE__, {"sae", "train", "--model", "m", "--hook", "h", "--out", "o", "--l1", "1"}, 2,
	 "mechbench sae train: --l1: only with --arch relu"},
	{__LINE__, {"sae", "train", "--model", "m", "--hook", "h", "--out", "o", "--ctx", "8"}, 2,
	 "mechbench sae train: --ctx: only with --text"},
	{__LINE__, {"sae", "eval", "--model", "m", "--sae", "s", "--text-batch", "8"}, 2,
	 "mechbench sae eval: --text-batch: only with --text"},
	{__LINE__, {"report", "--run", "1", "--html", "r.html", "--penalty", "3"}, 2,
	 "mechbench report: --penalty: only with --series"},
	{__LINE__, {"report", "--run", "1", "--html", "r.html", "--min-seg", "3"}, 2,
	 "mechbench report: --min-seg: only with --series"},
	{__LINE__, {"trace", "--model", "m", "--facts", "f", "--out", "o", "--kind", "resid",
		    "--window", "2"}, 2, "mechbench trace: --window: only with --kind mlp, attn or all"},
	{__LINE__, {"trace", "--model", "m", "--facts", "f", "--out", "o", "--noise", "1",
		    "--noise-mult", "2"}, 2, "mechbench trace: --noise and --noise-mult: give only one"},
	{__LINE__, {"edit", "--model", "m", "--edits", "e", "--layers", "0", "--out", "o",
		    "--mom2-weight", "5"}, 2, "mechbench edit: --mom2-weight: only with --method memit"},
	{__LINE__, {"edit", "--model", "m", "--edits", "e", "--layers", "0", "--out", "o",
		    "--method", "memit", "--update-scale", "5"}, 2,
	 "mechbench edit: --update-scale: only with --method rome"},
};

Test(options, commands_parse_alike_through_the_binary)
{
	mbt_cli_result *r = malloc(sizeof(*r));

	cr_assert(r);
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		const char *argv[16] = {0};
		for (int k = 0; probes[i].args[k]; k++)
			argv[k] = probes[i].args[k];
		mbt_cli_run(r, argv);
		cr_expect_eq(r->status, probes[i].status, "line %d: exit %d: %s", probes[i].line,
			     r->status, r->err);
		cr_expect(strncmp(r->err, probes[i].err, strlen(probes[i].err)) == 0 &&
				  r->err[strlen(probes[i].err)] == '\n',
			  "line %d: %s", probes[i].line, r->err);
	}
	/* --help of every command comes from its table (each table's defaults,
	 * ranges and choices are parsed on the way: a bad row fails here) */
	static const char *const helps[][3] = {
		{"run", "--help", "  --suite FILE"},
		{"drift", "-h", "  --min-seg N"},
		{"gate", "--help", "  --on-changed exit4|pass|fail"},
		{"report", "--help", "  --penalty X"},
		{"leaderboard", "--help", "  --alpha A"},
		{"power", "--help", "  --sides 1|2"},
		{"cache", "--help", "  --hook NAME"},
		{"tokenize", "--help", "  --ids"},
		{"inspect", "--help", "  --stats"},
		{"version", "--help", "usage: mechbench version"},
		{"db", "--help", "  --db-timeout S"},
		{"datasets", "--help", "  --manifest FILE"},
		{"baseline", "--help", "  --run ID"},
		{"zoo", "list", "  --models DIR"},
		{"zoo", "train", "  --checkpoint-every N"},
		{"zoo", "verify", "  --no-retrain"},
	};
	for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
		const char *argv[4] = {helps[i][0], helps[i][1], "--help", NULL};
		if (strcmp(helps[i][0], "zoo") != 0)
			argv[2] = NULL;
		mbt_cli_run(r, argv);
		cr_expect_eq(r->status, 0, "%s: %s", helps[i][0], r->err);
		cr_expect(strstr(r->out, helps[i][2]) != NULL, "%s: %s", helps[i][0], r->out);
		cr_expect(strstr(r->out, "  -h, --help") != NULL, "%s: %s", helps[i][0], r->out);
	}
	free(r);
}

/* A bad MB_GEMM is one line and exit 2 before anything is printed or run
 * (version printed nine of its lines, then the error). */
Test(options, a_bad_mb_gemm_is_refused_before_any_output)
{
	static const char *const cmds[] = {"version", "--help", "run --suite nowhere.json"};

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char cmd[512], *out = NULL;
		snprintf(cmd, sizeof(cmd), "MB_GEMM=bogus " MBT_CLI "%s 2>&1", cmds[i]);
		cr_expect_eq(mbt_sh("/", cmd, &out), 2, "%s: %s", cmds[i], out);
		cr_expect(out && strcmp(out, "mechbench: MB_GEMM=bogus: expected auto, portable, "
					     "openblas or onednn\n") == 0,
			  "%s: %s", cmds[i], out);
		free(out);
	}
}
