/*
 * edit_cli.h: what `edit` and `trace` share: a prompt template with one "{}"
 * for the subject, tokenized with the subject's token span located.
 */
#ifndef MB_EDIT_CLI_H
#define MB_EDIT_CLI_H

#include <stdint.h>

#include <mechbench/error.h>
#include <mechbench/json.h>
#include <mechbench/tokenizer.h>

/* Tokenizes tmpl (exactly one "{}") with subject put in: *tok (malloc'd) the
 * whole text, *n its length, and the subject's tokens [*subj_first,
 * *subj_last] (subj_first may be NULL). The span is where the tokens of the
 * text before the subject end and where those of the text up to its end end;
 * both must be prefixes of the whole text's tokens and the subject must have
 * at least one token. Errors name doc's file, position and `field`. */
int mb_edit_cli_encode(int32_t **tok, int *n, int *subj_first, int *subj_last,
		       const mb_tokenizer *t, const mb_json_doc *doc, const char *field,
		       const char *tmpl, const char *subject, mb_error *err);

#endif
