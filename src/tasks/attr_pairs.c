/*
 * attr_pairs.c: task items as clean/corrupted pairs and a metric for
 * attribution patching (attr_pairs.h has the formats).
 *
 * Legend: B batch, T positions, V vocab.
 */
#include <mechbench/attr_pairs.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static const char *const formats[] = {"induction", "ioi"};

const char *mb_attr_format_name(mb_attr_format f)
{
	return (unsigned)f < 2 ? formats[f] : "?";
}

int mb_attr_format_parse(mb_attr_format *out, const char *name, mb_error *err)
{
	for (int i = 0; i < 2; i++)
		if (name && strcmp(name, formats[i]) == 0) {
			*out = (mb_attr_format)i;
			return 0;
		}
	return mb_error_set(err, MB_EINVALID, "'%s': not an attribution format (induction, ioi)",
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

/* Item it as one pair into row b of p (rows of cap positions). */
static int item_pair(mb_attr_pairs *p, int b, int cap, const mb_item *it, mb_attr_format f, int V,
		     int bos, mb_error *err)
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
	/* ioi */
	{
		json_t *abc = json_object_get(it->input, "abc");
		json_t *io = json_object_get(it->input, "io_id"), *s = json_object_get(it->input, "s_id");
		if (bos >= 0) {
			if (bos >= V)
				return mb_error_set(err, MB_EINVALID, "--bos %d: outside the vocabulary "
						    "of %d", bos, V);
			c[0] = x[0] = bos;
			off = 1;
		}
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
		       const mb_engine_config *cfg, int bos, mb_error *err)
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
		if ((rc = item_pair(p, b, cap, &items[b], f, V, bos, err)) < 0)
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
