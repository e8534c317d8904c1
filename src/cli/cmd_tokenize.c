/* cmd_tokenize.c: `mechbench tokenize --model DIR (--text S | --file F) [--ids]`:
 * what a model's tokenizer makes of a text. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/file.h>
#include <mechbench/tokenizer.h>

static const char usage[] =
	"usage: mechbench tokenize --model DIR (--text TEXT | --file FILE) [--ids]\n\n"
	"Encodes UTF-8 text with the tokenizer of the model directory DIR:\n"
	"DIR/tokenizer.json (WordLevel, or byte-level BPE as GPT-2 and Pythia ship\n"
	"it), else DIR/vocab.json + DIR/merges.txt (GPT-2's older layout). Only the\n"
	"tokenizer files are read; DIR needs no weights.\n\n"
	"Options:\n"
	"  --model DIR   the model (or tokenizer) directory\n"
	"  --text TEXT   the text to encode\n"
	"  --file FILE   encode the contents of FILE (UTF-8, no NUL bytes)\n"
	"  --ids         print only the ids, comma-separated on one line (the form\n"
	"                `mechbench cache --tokens` takes)\n\n"
	"Without --ids, one line per token: its id, a tab, and the token's text as a\n"
	"JSON string (for BPE the bytes it stands for, so the lines concatenated are\n"
	"the input; a token that ends inside a UTF-8 character shows \\\\xNN escapes).\n"
	"Invalid UTF-8, an unreadable file or a malformed tokenizer is one line on\n"
	"stderr and exit status 1; a bad command line exits 2.\n";

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
	const char *model = NULL, *text = NULL, *file = NULL;
	mb_tokenizer *t = NULL;
	char *buf = NULL;
	int32_t *ids = NULL;
	int n = 0, only_ids = 0, status = MB_EXIT_ERROR;
	mb_error err = {0};

	if (mb_cli_wants_help(argc, argv)) {
		fputs(usage, stdout);
		return MB_EXIT_OK;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], **slot = NULL;

		if (strcmp(a, "--ids") == 0) {
			only_ids = 1;
			continue;
		}
		if (strcmp(a, "--model") == 0)
			slot = &model;
		else if (strcmp(a, "--text") == 0)
			slot = &text;
		else if (strcmp(a, "--file") == 0)
			slot = &file;
		else
			return mb_cli_usage_error("tokenize", "unknown argument '%s'", a);
		if (i + 1 >= argc)
			return mb_cli_usage_error("tokenize", "%s needs a value", a);
		if (*slot)
			return mb_cli_usage_error("tokenize", "%s given twice", a);
		*slot = argv[++i];
	}
	if (!model)
		return mb_cli_usage_error("tokenize", "--model DIR is required");
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
