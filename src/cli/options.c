/* options.c: table-driven command-line parsing and --help (options.h). */
#include "options.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/parse.h>

#include "cli.h"

#define WIDTH 80 /* help lines wrap before this column */

/* The last error a command failed with (mb_cli_last_error). */
static mb_error last_error;

const mb_error *mb_cli_last_error(void)
{
	return &last_error;
}

int mb_cli_fail(const mb_error *err)
{
	if (err)
		last_error = *err;
	fprintf(stderr, "mechbench: %s\n", err && err->msg[0] ? err->msg : "unknown error");
	return MB_EXIT_ERROR;
}

int mb_cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mechbench %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'mechbench %s --help'.\n", cmd);
	return MB_EXIT_USAGE;
}

/* --- ranges: "[1, 4096]", "(0, 1]", "> 0", ">= 0", "< 1", "<= 1" ----------------------- */

typedef struct range {
	double lo, hi;
	int lo_open, hi_open;
} range;

static int range_parse(range *r, const char *s)
{
	char *end;

	r->lo = -INFINITY;
	r->hi = INFINITY;
	r->lo_open = r->hi_open = 0;
	if (!s)
		return 0;
	if (s[0] == '>' || s[0] == '<') {
		int open = s[1] != '=';
		double v = strtod(s + (open ? 1 : 2), &end);
		if (*end != '\0')
			return -1;
		if (s[0] == '>') {
			r->lo = v;
			r->lo_open = open;
		} else {
			r->hi = v;
			r->hi_open = open;
		}
		return 0;
	}
	if (s[0] != '[' && s[0] != '(')
		return -1;
	r->lo_open = s[0] == '(';
	r->lo = strtod(s + 1, &end);
	if (*end != ',')
		return -1;
	r->hi = strtod(end + 1, &end);
	if ((*end != ']' && *end != ')') || end[1] != '\0')
		return -1;
	r->hi_open = *end == ')';
	return 0;
}

static int range_has(const range *r, double v)
{
	return (r->lo_open ? v > r->lo : v >= r->lo) && (r->hi_open ? v < r->hi : v <= r->hi);
}

/* " in [1, 4096]" or " >= 0" as it reads after "expected a number"; "" when
 * there is no range. Written into buf. */
static char *range_words(char *buf, size_t cap, const char *s)
{
	if (!s)
		buf[0] = '\0';
	else
		snprintf(buf, cap, "%s%s", s[0] == '[' || s[0] == '(' ? " in " : " ", s);
	return buf;
}

/* --- parsing ---------------------------------------------------------------------------- */

static const mb_cli_opt *find(const mb_cli_cmd *cmd, const char *arg, size_t len)
{
	for (size_t k = 0; k < cmd->n_opts; k++) {
		const mb_cli_opt *o = &cmd->opts[k];
		if ((strlen(o->name) == len && strncmp(o->name, arg, len) == 0) ||
		    (o->alias && strlen(o->alias) == len && strncmp(o->alias, arg, len) == 0))
			return o;
	}
	return NULL;
}

static int is_help(const char *a)
{
	return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0;
}

/* A separate value that is really the next option: an option name of this
 * command, -h/--help or "--". */
static int looks_like_option(const mb_cli_cmd *cmd, const char *a)
{
	return is_help(a) || strcmp(a, "--") == 0 || find(cmd, a, strlen(a)) != NULL;
}

/* Stores text as o's value into args. `shown` names the option as typed. */
static int store(void *args, const mb_cli_opt *o, const char *shown, const char *text,
		 mb_error *err)
{
	char *at = (char *)args + o->offset, words[96];
	range r = {-INFINITY, INFINITY, 0, 0};

	if ((o->kind == MB_OPT_INT || o->kind == MB_OPT_DOUBLE) && range_parse(&r, o->range) < 0)
		return mb_error_set(err, MB_EINVALID, "%s: bad range '%s' in the option table",
				    shown, o->range);
	switch (o->kind) {
	case MB_OPT_FLAG:
		*(int *)at = 1;
		return 0;
	case MB_OPT_PATH: /* an empty path is the file layer's error (exit 1) */
	case MB_OPT_STRING:
		*(const char **)at = text;
		return 0;
	case MB_OPT_INT: {
		int64_t v;
		if (mb_parse_i64(text, INT64_MIN, INT64_MAX, &v, shown, err) < 0)
			return MB_EINVALID;
		if (!range_has(&r, (double)v))
			return mb_error_set(err, MB_EINVALID, "%s: expected an integer%s, not '%s'",
					    shown, range_words(words, sizeof(words), o->range), text);
		*(int64_t *)at = v;
		return 0;
	}
	case MB_OPT_DOUBLE: {
		double v;
		if (mb_parse_f64(text, &v, shown, err) < 0)
			return MB_EINVALID;
		if (!range_has(&r, v))
			return mb_error_set(err, MB_EINVALID, "%s: expected a number%s, not '%s'",
					    shown, range_words(words, sizeof(words), o->range), text);
		*(double *)at = v;
		return 0;
	}
	case MB_OPT_ENUM: {
		char list[256];
		size_t len = 0, n = 0;
		for (; o->choices[n]; n++)
			if (strcmp(o->choices[n], text) == 0) {
				*(int *)at = (int)n;
				return 0;
			}
		list[0] = '\0';
		for (size_t c = 0; c < n && len < sizeof(list); c++)
			len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s",
						c == 0 ? "" : c + 1 == n ? " or " : ", ",
						o->choices[c]);
		return mb_error_set(err, MB_EINVALID, "%s: expected %s, not '%s'", shown, list,
				    text);
	}
	case MB_OPT_LIST: {
		mb_cli_list *l = (mb_cli_list *)at;
		/* capacity: argc values at most; grown one at a time is enough here */
		const char **v = realloc(l->v, (l->n + 1) * sizeof(*v));
		if (!v)
			return mb_error_oom(err, shown, (l->n + 1) * sizeof(*v));
		v[l->n++] = text;
		l->v = v;
		return 0;
	}
	}
	return mb_error_set(err, MB_EINVALID, "%s: unknown option kind", shown);
}

static void set_defaults(void *args, const mb_cli_cmd *cmd)
{
	for (size_t k = 0; k < cmd->n_opts; k++) {
		const mb_cli_opt *o = &cmd->opts[k];
		char *at = (char *)args + o->offset;
		switch (o->kind) {
		case MB_OPT_FLAG:
		case MB_OPT_ENUM: *(int *)at = 0; break;
		case MB_OPT_STRING:
		case MB_OPT_PATH: *(const char **)at = NULL; break;
		case MB_OPT_INT: *(int64_t *)at = 0; break;
		case MB_OPT_DOUBLE: *(double *)at = 0; break;
		case MB_OPT_LIST: memset(at, 0, sizeof(mb_cli_list)); break;
		}
	}
}

int mb_cli_opts_parse(mb_cli_parsed *p, void *args, const mb_cli_cmd *cmd, int argc,
		      char **argv, mb_error *err)
{
	int error, operands_only = 0;

	MB_ASSERT(cmd->n_opts <= MB_CLI_MAX_OPTS && cmd->max_operands <= MB_CLI_MAX_ARGS);
	memset(p, 0, sizeof(*p));
	set_defaults(args, cmd);
	/* the defaults first, also before --help: a bad row in a table shows at once */
	for (size_t k = 0; k < cmd->n_opts; k++) {
		const mb_cli_opt *o = &cmd->opts[k];
		range r;
		MB_ASSERT(range_parse(&r, o->range) == 0 && (o->kind != MB_OPT_ENUM || o->choices));
		if (o->def && (error = store(args, o, o->name, o->def, err)) < 0) {
			mb_error_prefix(err, "option table of %s", cmd->name);
			return error;
		}
	}
	/* -h/--help wins over any error, wherever it is (but not as a value) */
	for (int i = 1; i < argc; i++) {
		const mb_cli_opt *o = find(cmd, argv[i], strlen(argv[i]));
		if (strcmp(argv[i], "--") == 0)
			break;
		if (is_help(argv[i]))
			return MB_CLI_HELP;
		if (o && o->kind != MB_OPT_FLAG && i + 1 < argc &&
		    !looks_like_option(cmd, argv[i + 1]))
			i++;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *eq, *value = NULL;
		const mb_cli_opt *o;
		char shown[128];
		size_t len, k;

		if (operands_only || a[0] != '-' || a[1] == '\0') {
			if (p->n_operands >= cmd->max_operands)
				return mb_error_set(err, MB_EINVALID, "unexpected argument '%s'", a);
			p->operands[p->n_operands++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			operands_only = 1;
			continue;
		}
		eq = strchr(a, '=');
		len = eq ? (size_t)(eq - a) : strlen(a);
		if (!(o = find(cmd, a, len)))
			return mb_error_set(err, MB_EINVALID, "unknown option '%.*s'", (int)len, a);
		snprintf(shown, sizeof(shown), "%.*s", (int)len, a);
		k = (size_t)(o - cmd->opts);
		if (p->count[k] && !o->repeat && o->kind != MB_OPT_LIST)
			return mb_error_set(err, MB_EINVALID, "%s: given twice", shown);
		if (o->kind == MB_OPT_FLAG) {
			if (eq)
				return mb_error_set(err, MB_EINVALID, "%s: takes no value", shown);
		} else if (eq) {
			value = eq + 1;
		} else if (i + 1 < argc && !looks_like_option(cmd, argv[i + 1])) {
			value = argv[++i];
		} else {
			return mb_error_set(err, MB_EINVALID, "%s: needs a value", shown);
		}
		if ((error = store(args, o, shown, value, err)) < 0)
			return error;
		p->count[k]++;
	}
	for (size_t k = 0; k < cmd->n_opts; k++) {
		const mb_cli_opt *o = &cmd->opts[k];
		if (!o->required || p->count[k])
			continue;
		return mb_error_set(err, MB_EINVALID, "%s%s%s%s is required",
				    o->kind == MB_OPT_LIST ? "at least one " : "", o->name,
				    o->meta ? " " : "", o->meta ? o->meta : "");
	}
	if (p->n_operands < cmd->min_operands)
		return mb_error_set(err, MB_EINVALID, "missing %s", cmd->operands);
	return 0;
}

int mb_cli_parse(mb_cli_parsed *p, void *args, const mb_cli_cmd *cmd, int argc, char **argv)
{
	mb_error err;
	int error;

	mb_error_clear(&err);
	error = mb_cli_opts_parse(p, args, cmd, argc, argv, &err);
	if (error == MB_CLI_HELP) {
		mb_cli_help(stdout, cmd);
		return MB_EXIT_OK;
	}
	if (error == MB_ENOMEM)
		return mb_cli_fail(&err);
	if (error < 0)
		return mb_cli_usage_error(cmd->name, "%s", err.msg);
	return MB_CLI_GO;
}

void mb_cli_args_dispose(void *args, const mb_cli_cmd *cmd)
{
	for (size_t k = 0; k < cmd->n_opts; k++) {
		if (cmd->opts[k].kind != MB_OPT_LIST)
			continue;
		mb_cli_list *l = (mb_cli_list *)((char *)args + cmd->opts[k].offset);
		free(l->v);
		memset(l, 0, sizeof(*l));
	}
}

unsigned mb_cli_given(const mb_cli_parsed *p, const mb_cli_cmd *cmd, const char *name)
{
	const mb_cli_opt *o = find(cmd, name, strlen(name));

	MB_ASSERT(o != NULL);
	return p->count[o - cmd->opts];
}

int mb_cli_only_with(const mb_cli_parsed *p, const mb_cli_cmd *cmd, const char *name,
		     int applies, const char *when)
{
	if (applies || mb_cli_given(p, cmd, name) == 0)
		return MB_CLI_GO;
	return mb_cli_usage_error(cmd->name, "%s: only with %s", name, when);
}

/* --- help ------------------------------------------------------------------------------- */

/* "--suite FILE", "--on-changed exit4|pass|fail", "--quiet" */
static void opt_words(char *buf, size_t cap, const mb_cli_opt *o, int with_alias)
{
	size_t n = (size_t)snprintf(buf, cap, "%s", o->name);

	if (with_alias && o->alias && n < cap)
		n += (size_t)snprintf(buf + n, cap - n, ", %s", o->alias);
	if (o->kind == MB_OPT_FLAG || n >= cap)
		return;
	if (o->meta) {
		snprintf(buf + n, cap - n, " %s", o->meta);
		return;
	}
	if (o->kind == MB_OPT_ENUM) {
		for (size_t c = 0; o->choices[c] && n < cap; c++)
			n += (size_t)snprintf(buf + n, cap - n, "%s%s", c ? "|" : " ", o->choices[c]);
		return;
	}
	snprintf(buf + n, cap - n, " %s", o->kind == MB_OPT_INT ? "N" : o->kind == MB_OPT_DOUBLE ? "X" : "VALUE");
}

void mb_cli_synopsis(FILE *f, const mb_cli_cmd *cmd, const char *lead)
{
	char word[160];
	size_t indent = strlen(lead) + strlen("mechbench ") + strlen(cmd->name) + 1, col;

	col = (size_t)fprintf(f, "%smechbench %s", lead, cmd->name);
	if (cmd->operands)
		col += (size_t)fprintf(f, " %s", cmd->operands);
	for (size_t k = 0; k < cmd->n_opts; k++) {
		const mb_cli_opt *o = &cmd->opts[k];
		char w[140];
		opt_words(w, sizeof(w), o, 0);
		snprintf(word, sizeof(word), o->required && o->kind == MB_OPT_LIST ? "%s [%s ...]"
					     : o->required                          ? "%s"
					     : o->kind == MB_OPT_LIST               ? "[%s ...]"
										    : "[%s]",
			 w, w);
		if (col + 1 + strlen(word) >= WIDTH && col > indent) {
			fprintf(f, "\n%*s", (int)indent - 1, "");
			col = indent - 1;
		}
		col += (size_t)fprintf(f, " %s", word);
	}
	fputc('\n', f);
}

/* A space that wrap() does not break at ("[0, 86400]" stays on one line). */
#define NBSP '\x01'

/* Writes text word-wrapped from column `at` (already there) to WIDTH,
 * continuation lines indented to `at`; '\n' forces a break. */
static void wrap(FILE *f, const char *text, size_t at)
{
	size_t col = at;

	while (*text) {
		size_t n = strcspn(text, " \n");
		if (col > at && col + 1 + n >= WIDTH) {
			fprintf(f, "\n%*s", (int)at, "");
			col = at;
		} else if (col > at) {
			fputc(' ', f);
			col++;
		}
		for (size_t i = 0; i < n; i++)
			fputc(text[i] == NBSP ? ' ' : text[i], f);
		col += n;
		text += n;
		if (*text == '\n') {
			fprintf(f, "\n%*s", (int)at, "");
			col = at;
			text++;
		}
		while (*text == ' ')
			text++;
	}
	fputc('\n', f);
}

void mb_cli_option_list(FILE *f, const mb_cli_cmd *cmd)
{
	size_t at = strlen("-h, --help");
	char w[160], help[1024];

	for (size_t k = 0; k < cmd->n_opts; k++) {
		opt_words(w, sizeof(w), &cmd->opts[k], 1);
		if (strlen(w) > at)
			at = strlen(w);
	}
	at = at + 4 > 26 ? 26 : at + 4; /* 2 before, 2 after; long ones get their own line */
	for (size_t k = 0; k <= cmd->n_opts; k++) {
		const mb_cli_opt *o = k < cmd->n_opts ? &cmd->opts[k] : NULL;
		int col;
		if (o) {
			opt_words(w, sizeof(w), o, 1);
			char rw[96];
			char *rs = range_words(rw, sizeof(rw), o->range);
			for (char *c = rs + 1; *c; c++) /* "in [0, 86400]" stays whole */
				if (*c == ' ')
					*c = NBSP;
			snprintf(help, sizeof(help), "%s%s%s%s%s%s%s", o->help ? o->help : "",
				 o->range || o->def ? " (" : "", o->range ? rs + 1 : "",
				 o->range && o->def ? "; " : "", o->def ? "default " : "",
				 o->def ? o->def : "", o->range || o->def ? ")" : "");
		} else {
			snprintf(w, sizeof(w), "-h, --help");
			snprintf(help, sizeof(help), "this help");
		}
		col = fprintf(f, "  %s", w);
		if ((size_t)col + 2 > at) {
			fprintf(f, "\n%*s", (int)at, "");
		} else {
			fprintf(f, "%*s", (int)(at - (size_t)col), "");
		}
		wrap(f, help, at);
	}
}

void mb_cli_help(FILE *f, const mb_cli_cmd *cmd)
{
	if (cmd->synopsis)
		fprintf(f, "usage: %s", cmd->synopsis);
	else
		mb_cli_synopsis(f, cmd, "usage: ");
	if (cmd->about)
		fprintf(f, "\n%s", cmd->about);
	fputs("\nOptions:\n", f);
	mb_cli_option_list(f, cmd);
	fputs("  (and --gemm NAME, the GEMM backend, as every command: mechbench --help)\n", f);
	if (cmd->notes)
		fprintf(f, "\n%s", cmd->notes);
}

void mb_cli_help_group(FILE *f, const char *about, const mb_cli_cmd *const *cmds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		mb_cli_synopsis(f, cmds[i], i == 0 ? "usage: " : "       ");
	if (about)
		fprintf(f, "\n%s", about);
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "\nmechbench %s%s%s\n", cmds[i]->name, cmds[i]->operands ? " " : "",
			cmds[i]->operands ? cmds[i]->operands : "");
		if (cmds[i]->about)
			fputs(cmds[i]->about, f);
		if (cmds[i]->n_opts)
			mb_cli_option_list(f, cmds[i]);
	}
	fputs("\nEvery command also takes --gemm auto|portable|openblas|onednn "
	      "(mechbench --help).\n", f);
}
