/* edit_cli.c: the subject-template tokenizer `edit` and `trace` share (edit_cli.h). */
#include "edit_cli.h"

#include <stdlib.h>
#include <string.h>

int mb_edit_cli_encode(int32_t **tok, int *n, int *subj_first, int *subj_last,
		       const mb_tokenizer *t, const mb_json_doc *doc, const char *field,
		       const char *tmpl, const char *subject, mb_error *err)
{
	const char *at = strstr(tmpl, "{}");
	size_t pre = at ? (size_t)(at - tmpl) : 0, ls = strlen(subject), lt = strlen(tmpl);
	char *text = NULL;
	int32_t *head = NULL, *before = NULL;
	int nh = 0, nb = 0, rc;

	*tok = NULL;
	if (!at || strstr(at + 2, "{}"))
		return mb_json_field_error(doc, err, MB_EINVALID, field,
					   "must contain {} (the subject) exactly once");
	text = malloc(lt + ls + 1);
	if (!text)
		return mb_error_oom(err, field, lt + ls + 1);
	memcpy(text, tmpl, pre);
	memcpy(text + pre, subject, ls);
	text[pre + ls] = '\0';
	if ((rc = mb_tokenizer_encode(t, text, &head, &nh, err)) < 0)
		goto cleanup;
	/* the text before the subject without its trailing spaces: byte-level BPE
	 * puts a space in front of the word that follows it */
	size_t pb = pre;
	while (pb && text[pb - 1] == ' ')
		pb--;
	text[pb] = '\0';
	if ((rc = mb_tokenizer_encode(t, text, &before, &nb, err)) < 0)
		goto cleanup;
	memcpy(text, tmpl, pre);
	memcpy(text + pre, subject, ls);
	memcpy(text + pre + ls, at + 2, lt - pre - 2 + 1);
	if ((rc = mb_tokenizer_encode(t, text, tok, n, err)) < 0)
		goto cleanup;
	if (nh <= nb || nh > *n || memcmp(head, *tok, sizeof(int32_t) * (size_t)nh) != 0 ||
	    (nb && memcmp(before, *tok, sizeof(int32_t) * (size_t)nb) != 0)) {
		rc = mb_json_field_error(doc, err, MB_EINVALID, field,
					 "the subject does not start and end on token boundaries of \"%s\"", text);
		goto cleanup;
	}
	*subj_last = nh - 1;
	if (subj_first)
		*subj_first = nb;
cleanup:
	if (rc < 0) {
		if (err->msg[0] && !strstr(err->msg, field))
			mb_error_prefix(err, "%s: %s", doc->name, field);
		free(*tok);
		*tok = NULL;
	}
	free(text);
	free(head);
	free(before);
	return rc;
}
