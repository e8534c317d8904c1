/* cmd_tokenize.c: `mechbench tokenize --model DIR (--text S | --file F) [--ids]`:
 * what a model's tokenizer makes of a text. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/file.h>
#include <mechbench/tokenizer.h>

typedef struct tokenize_args {
	const char *model, *text, *file;
	int ids;
} tokenize_args;

static const mb_cli_opt tokenize_opts[] = {
	{MB_OPT(PATH, "--model", tokenize_args, model), .meta = "DIR", .required = 1,
	 .help = "the model (or tokenizer) directory"},
	{MB_OPT(STRING, "--text", tokenize_args, text), .meta = "TEXT",
	 .help = "the text to encode"},
	{MB_OPT(PATH, "--file", tokenize_args, file), .meta = "FILE",
	 .help = "encode the contents of FILE (UTF-8, no NUL bytes)"},
	{MB_OPT(FLAG, "--ids", tokenize_args, ids),
	 .help = "print only the ids, comma-separated on one line (the form `mechbench cache "
		 "--tokens` takes)"},
};

static const mb_cli_cmd tokenize_cmd = {
	.name = "tokenize",
	.opts = tokenize_opts,
	.n_opts = MB_CLI_N(tokenize_opts),
	.synopsis = "mechbench tokenize --model DIR (--text TEXT | --file FILE) [--ids]\n",
	.about =
	"Encodes UTF-8 text with the tokenizer of the model directory DIR:\n"
	"DIR/tokenizer.json (WordLevel, or byte-level BPE as GPT-2 and Pythia ship\n"
	"it), else DIR/vocab.json + DIR/merges.txt (GPT-2's older layout). Only the\n"
	"tokenizer files are read; DIR needs no weights.\n",
	.notes =
	"Without --ids, one line per token: its id, a tab, and the token's text as a\n"
	"JSON string (for BPE the bytes it stands for, so the lines concatenated are\n"
	"the input; a token that ends inside a UTF-8 character shows \\\\xNN escapes).\n"
	"Invalid UTF-8, an unreadable file or a malformed tokenizer is one line on\n"
	"stderr and exit status 1; a bad command line exits 2.\n",
};

/* Writes bytes as a JSON string body; bytes that are not valid UTF-8 (a
 * token ending inside a character) are written as \xNN, which is not JSON
 * but is unambiguous. */
static void put_quoted(const unsigned char *s, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
		int ok = len > 0 && i + len <= n;

		for (size_t k = 1; ok && k < len; k++)
			ok = (s[i + k] & 0xC0) == 0x80;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\t')
			fputs("\\t", stdout);
		else if (c == '\r')
			fputs("\\r", stdout);
		else if (c < 0x20 || c == 0x7F)
			printf("\\u%04x", c);
		else if (!ok)
			printf("\\x%02X", c);
		else {
			fwrite(s + i, 1, len, stdout);
			i += len - 1;
		}
	}
	putchar('"');
}

int mb_cmd_tokenize(int argc, char **argv)
{
	tokenize_args a = {0};
	mb_cli_parsed parsed;
	const char *model, *text, *file;
	mb_tokenizer *t = NULL;
	char *buf = NULL;
	int32_t *ids = NULL;
	int n = 0, only_ids, rc, status = MB_EXIT_ERROR;
	mb_error err = {0};

	if ((rc = mb_cli_parse(&parsed, &a, &tokenize_cmd, argc, argv)) != MB_CLI_GO)
		return rc;
	model = a.model;
	text = a.text;
	file = a.file;
	only_ids = a.ids;
	if ((text != NULL) + (file != NULL) != 1)
		return mb_cli_usage_error("tokenize", "give exactly one of --text, --file");
	if (file) {
		size_t len = 0;

		if (mb_file_read_text(&buf, &len, file, &err) < 0)
			goto cleanup;
		if (strlen(buf) != len) {
			mb_error_set(&err, MB_EINVALID, "%s: NUL byte at offset %zu", file, strlen(buf));
			goto cleanup;
		}
		text = buf;
	}
	if (mb_tokenizer_load_dir(&t, model, &err) < 0 ||
	    mb_tokenizer_encode(t, text, &ids, &n, &err) < 0) {
		if (file)
			mb_error_prefix(&err, "%s", file);
		goto cleanup;
	}
	for (int i = 0; i < n; i++) {
		if (only_ids) {
			printf("%s%d", i ? "," : "", (int)ids[i]);
			continue;
		}
		{
			char *piece = NULL;
			size_t len = 0;

			if (mb_tokenizer_decode(t, &ids[i], 1, &piece, &len, &err) < 0)
				goto cleanup;
			printf("%d\t", (int)ids[i]);
			put_quoted((const unsigned char *)piece, len);
			putchar('\n');
			free(piece);
		}
	}
	if (only_ids)
		putchar('\n');
	status = MB_EXIT_OK;
cleanup:
	if (status != MB_EXIT_OK)
		status = mb_cli_fail(&err);
	free(ids);
	free(buf);
	mb_tokenizer_free(t);
	return status;
}
