/* edit_cli.c: the subject-template tokenizer `edit` and `trace` share (edit_cli.h). */
#include "edit_cli.h"

#include <stdio.h>
#include <string.h>

#include <mechbench/edit.h>

int mb_edit_cli_encode(int32_t **tok, int *n, int *subj_first, int *subj_last,
		       const mb_tokenizer *t, const mb_json_doc *doc, const char *field,
		       const char *tmpl, const char *subject, mb_error *err)
{
	int rc = mb_edit_encode(tok, n, subj_first, subj_last, t, tmpl, subject, err);
	char why[sizeof(err->msg)];

	if (rc == MB_EINVALID) {
		snprintf(why, sizeof(why), "%s", err->msg);
		return mb_json_field_error(doc, err, rc, field, "%s", why);
	}
	if (rc < 0 && err->msg[0] && !strstr(err->msg, field))
		mb_error_prefix(err, "%s: %s", doc->name, field);
	return rc;
}
