/*
 * attr_pairs.c: task items as clean/corrupted pairs and a metric for
 * attribution patching (attr_pairs.h has the formats).
 *
 * Legend: B batch, T positions, V vocab.
 */
#include <mechbench/attr_pairs.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <mechbench/edit.h>

static const char *const formats[] = {"induction", "ioi", "edit"};
#define N_FORMATS 3

const char *mb_attr_format_name(mb_attr_format f)
{
	return (unsigned)f < N_FORMATS ? formats[f] : "?";
}

int mb_attr_format_parse(mb_attr_format *out, const char *name, mb_error *err)
{
	for (int i = 0; i < N_FORMATS; i++)
		if (name && strcmp(name, formats[i]) == 0) {
			*out = (mb_attr_format)i;
			return 0;
		}
	return mb_error_set(err, MB_EINVALID, "'%s': not an attribution format (induction, ioi, "
			    "edit)",
			    name ? name : "(null)");
}

void mb_attr_pairs_dispose(mb_attr_pairs *p)
{
	free(p->clean);
	free(p->corrupt);
	free(p->len);
	free(p->t0);
	free(p->t1);
	free(p->good);
	free(p->bad);
	memset(p, 0, sizeof(*p));
}

/* An int array field of an item, every value in [0, V); *n its length. */
static int item_ids(const json_t *a, const mb_item *it, const char *what, int V, int32_t *dst,
		    int cap, int *n, mb_error *err)
{
	size_t k = json_is_array(a) ? json_array_size(a) : 0;

	if (!json_is_array(a) || k < 1)
		return mb_error_set(err, MB_EINVALID, "item %s: %s: expected an array of token ids",
				    it->key, what);
	if ((int)k > cap)
		return mb_error_set(err, MB_EINVALID, "item %s: %s: %zu tokens, the model has %d "
				    "positions", it->key, what, k, cap);
	for (size_t j = 0; j < k; j++) {
		json_t *v = json_array_get(a, j);
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= V)
			return mb_error_set(err, MB_EINVALID, "item %s: %s[%zu]: not a token id in "
					    "[0, %d)", it->key, what, j, V);
		if (dst)
			dst[j] = (int32_t)json_integer_value(v);
	}
	*n = (int)k;
	return 0;
}

/* The first token of " <object>" (the edit task's encoding of an object). */
static int object_token(int32_t *out, const mb_tokenizer *t, const mb_item *it, const char *field,
			int V, mb_error *err)
{
	const char *obj = json_string_value(json_object_get(it->input, field));
	char text[256];
	int32_t *tk = NULL;
	int n = 0, rc;

	if (!obj || !obj[0] || strlen(obj) > sizeof(text) - 2)
		return mb_error_set(err, MB_EINVALID, "item %s: %s: expected a non-empty string "
				    "(at most %zu bytes)", it->key, field, sizeof(text) - 2);
	snprintf(text, sizeof(text), "%s%s", obj[0] == ' ' ? "" : " ", obj);
	if ((rc = mb_tokenizer_encode(t, text, &tk, &n, err)) < 0)
		return mb_error_prefix(err, "item %s: %s", it->key, field);
	rc = n < 1 || tk[0] < 0 || tk[0] >= V
		     ? mb_error_set(err, MB_EINVALID, "item %s: %s: no token in the vocabulary of "
				    "%d", it->key, field, V)
		     : 0;
	if (rc == 0)
		*out = tk[0];
	free(tk);
	return rc;
}

/* An edit request as a pair: the prompt with its subject, and with the first
 * attribute subject of as many tokens (attr_pairs.h). */
static int edit_pair(mb_attr_pairs *p, int b, int32_t *c, int32_t *x, int cap, int off,
		     const mb_item *it, const mb_tokenizer *t, int V, mb_error *err)
{
	const json_t *in = it->input, *attr = json_object_get(in, "attribute_prompts");
	const char *tmpl = json_string_value(json_object_get(in, "prompt")),
		   *subj = json_string_value(json_object_get(in, "subject"));
	int32_t *tc = NULL, *tx = NULL;
	int n = 0, nx = 0, first, last, xl, rc;
	size_t i;

	if (!t)
		return mb_error_set(err, MB_EINVALID, "item %s: the edit format needs the model's "
				    "tokenizer (tokenizer.json)", it->key);
	if (!tmpl || !subj)
		return mb_error_set(err, MB_EINVALID, "item %s: prompt, subject: expected strings "
				    "(an edit request)", it->key);
	if ((rc = mb_edit_encode(&tc, &n, &first, &last, t, tmpl, subj, err)) < 0) {
		mb_error_prefix(err, "item %s: prompt", it->key);
		goto done;
	}
	if (n + off > cap) {
		rc = mb_error_set(err, MB_EINVALID, "item %s: prompt: %d tokens, the model has %d "
				  "positions", it->key, n + off, cap);
		goto done;
	}
	for (i = 0; i < json_array_size(attr); i++) {
		const char *alt = json_string_value(json_object_get(json_array_get(attr, i),
								    "subject"));
		if (!alt || strcmp(alt, subj) == 0)
			continue;
		free(tx);
		tx = NULL;
		if ((rc = mb_edit_encode(&tx, &nx, NULL, &xl, t, tmpl, alt, err)) < 0) {
			mb_error_prefix(err, "item %s: attribute_prompts[%zu].subject", it->key, i);
			goto done;
		}
		if (nx == n)
			break;
	}
	if (i == json_array_size(attr)) {
		rc = mb_error_set(err, MB_EINVALID, "item %s: attribute_prompts: no subject of as "
				  "many tokens as '%s' (%d) to corrupt the prompt with", it->key, subj,
				  last - first + 1);
		goto done;
	}
	for (int j = 0; j < n; j++)
		if (tc[j] < 0 || tc[j] >= V || tx[j] < 0 || tx[j] >= V) {
			rc = mb_error_set(err, MB_EINVALID, "item %s: prompt: token %d outside the "
					  "vocabulary of %d", it->key, j, V);
			goto done;
		}
	memcpy(c + off, tc, sizeof(int32_t) * (size_t)n);
	memcpy(x + off, tx, sizeof(int32_t) * (size_t)n);
	p->len[b] = n + off;
	if ((rc = object_token(&p->good[b], t, it, "target_true", V, err)) < 0 ||
	    (rc = object_token(&p->bad[b], t, it, "target_new", V, err)) < 0)
		goto done;
	if (p->good[b] == p->bad[b])
		rc = mb_error_set(err, MB_EINVALID, "item %s: target_true and target_new start with "
				  "the same token", it->key);
done:
	free(tc);
	free(tx);
	return rc;
}

/* Item it as one pair into row b of p (rows of cap positions). */
static int item_pair(mb_attr_pairs *p, int b, int cap, const mb_item *it, mb_attr_format f, int V,
		     const mb_tokenizer *tok, int bos, mb_error *err)
{
	int32_t *c = p->clean + (size_t)b * cap, *x = p->corrupt + (size_t)b * cap;
	int rc, n, nc, off = 0;

	if (f == MB_ATTR_FORMAT_INDUCTION) {
		json_t *jb = json_object_get(it->input, "bos");
		int r;
		if (!json_is_integer(jb) || json_integer_value(jb) < 0 || json_integer_value(jb) >= V)
			return mb_error_set(err, MB_EINVALID, "item %s: bos: expected a token id in "
					    "[0, %d)", it->key, V);
		if ((rc = item_ids(json_object_get(it->input, "rep"), it, "rep", V, NULL, cap, &r,
				   err)) < 0 ||
		    (rc = item_ids(json_object_get(it->input, "ctl"), it, "ctl", V, NULL, cap, &n,
				   err)) < 0)
			return rc;
		if (n != r || r < 2 || 2 * r + 1 > cap)
			return mb_error_set(err, MB_EINVALID, "item %s: rep and ctl need equal lengths "
					    ">= 2 and 2 |R| + 1 <= %d positions", it->key, cap);
		c[0] = x[0] = (int32_t)json_integer_value(jb);
		item_ids(json_object_get(it->input, "rep"), it, "rep", V, c + 1, cap, &r, err);
		item_ids(json_object_get(it->input, "rep"), it, "rep", V, c + 1 + r, cap, &r, err);
		item_ids(json_object_get(it->input, "rep"), it, "rep", V, x + 1, cap, &r, err);
		item_ids(json_object_get(it->input, "ctl"), it, "ctl", V, x + 1 + r, cap, &r, err);
		p->len[b] = 2 * r + 1;
		p->t0[b] = r + 2;
		p->t1[b] = 2 * r;
		return 0;
	}
	if (bos >= 0) {
		if (bos >= V)
			return mb_error_set(err, MB_EINVALID, "--bos %d: outside the vocabulary of %d",
					    bos, V);
		c[0] = x[0] = bos;
		off = 1;
	}
	if (f == MB_ATTR_FORMAT_EDIT)
		return edit_pair(p, b, c, x, cap, off, it, tok, V, err);
	/* ioi */
	{
		json_t *abc = json_object_get(it->input, "abc");
		json_t *io = json_object_get(it->input, "io_id"), *s = json_object_get(it->input, "s_id");
		if ((rc = item_ids(json_object_get(it->input, "tokens"), it, "tokens", V, c + off,
				   cap - off, &n, err)) < 0 ||
		    (rc = item_ids(json_object_get(abc, "tokens"), it, "abc.tokens", V, x + off,
				   cap - off, &nc, err)) < 0)
			return rc;
		if (nc != n)
			return mb_error_set(err, MB_EINVALID, "item %s: abc.tokens has %d tokens, "
					    "tokens %d", it->key, nc, n);
		if (!json_is_integer(io) || !json_is_integer(s) || json_integer_value(io) < 0 ||
		    json_integer_value(io) >= V || json_integer_value(s) < 0 ||
		    json_integer_value(s) >= V)
			return mb_error_set(err, MB_EINVALID, "item %s: io_id, s_id: expected token "
					    "ids in [0, %d)", it->key, V);
		p->len[b] = n + off;
		p->good[b] = (int32_t)json_integer_value(io);
		p->bad[b] = (int32_t)json_integer_value(s);
		return 0;
	}
}

int mb_attr_pairs_load(mb_attr_pairs *p, const mb_item *items, int B, mb_attr_format f,
		       const mb_engine_config *cfg, const mb_tokenizer *tok, int bos,
		       mb_error *err)
{
	int cap = cfg->n_ctx, V = cfg->n_vocab, rc;

	memset(p, 0, sizeof(*p));
	p->B = B;
	p->clean = calloc((size_t)B * cap, sizeof(int32_t));
	p->corrupt = calloc((size_t)B * cap, sizeof(int32_t));
	p->len = calloc((size_t)B, sizeof(int32_t));
	p->t0 = calloc((size_t)B, sizeof(int32_t));
	p->t1 = calloc((size_t)B, sizeof(int32_t));
	p->good = calloc((size_t)B, sizeof(int32_t));
	p->bad = calloc((size_t)B, sizeof(int32_t));
	if (!p->clean || !p->corrupt || !p->len || !p->t0 || !p->t1 || !p->good || !p->bad)
		return mb_error_oom(err, "pairs", 0);
	for (int b = 0; b < B; b++) {
		if ((rc = item_pair(p, b, cap, &items[b], f, V, tok, bos, err)) < 0)
			return rc;
		if (p->len[b] > p->T)
			p->T = p->len[b];
	}
	for (int b = 1; b < B; b++) { /* rows of cap -> rows of T */
		memmove(p->clean + (size_t)b * p->T, p->clean + (size_t)b * cap,
			sizeof(int32_t) * (size_t)p->T);
		memmove(p->corrupt + (size_t)b * p->T, p->corrupt + (size_t)b * cap,
			sizeof(int32_t) * (size_t)p->T);
	}
	p->ab.batch = B;
	p->ab.seq = p->T;
	p->ab.clean = p->clean;
	p->ab.corrupt = p->corrupt;
	p->ab.lengths = p->len;
	p->ab.logits = MB_LOGITS_ALL;
	if (f == MB_ATTR_FORMAT_INDUCTION) {
		p->span = (mb_attr_span){p->clean, p->T, p->t0, p->t1};
		p->ab.metric = mb_attr_metric_span_loss;
		p->ab.payload = &p->span;
	} else {
		p->ld = (mb_attr_logit_diff){p->good, p->bad, p->len};
		p->ab.metric = mb_attr_metric_logit_diff;
		p->ab.payload = &p->ld;
	}
	return 0;
}
