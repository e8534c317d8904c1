/*
 * lm.c: the `lm` task: next-token language modelling on held-out text, per
 * item, so that any language model can be gated on it: a change of the model
 * (an edit, a fine-tune, a quantisation) that degrades its text prediction is
 * REGRESSED item by item, paired against the base. The edit-safety gate
 * (`gate --edited`) runs it on an edited model as on every other entry of
 * the edit's base model: a rank-one edit that looks fine on its own metrics
 * but damages the model's language is caught here.
 *
 * Legend: B batch (items), T positions, V vocab.
 *
 * Items: input {"text": a passage}; stratum the text's source. generate:
 * with params {"source": a text file (path relative to the repository root,
 * where `mechbench datasets` runs, or absolute), "source_sha256": the sha256
 * of its bytes, "stratum": the stratum name (default "text")}, one item per
 * non-empty line (a trailing '\r' dropped), cluster "line <n>"; any other
 * params are the zoo facts model's (mb_facts_text_generate, facts_requests.h:
 * held-out sentences of its own language, strata "fact", "fact_heldout",
 * "filler").
 *
 * Run params: "bos" (a token prepended to every item; default
 * "<|endoftext|>" when the tokenizer has it, else none) and "max_tokens"
 * (default and at most n_positions): an item's token sequence x_0..x_{n-1}
 * (the BOS, then the text's tokens) is cut to its first max_tokens tokens
 * and must keep at least 2.
 *
 * Metrics (version 1), over the n - 1 predicted tokens x_1..x_{n-1} of an
 * item, z_t the logits at position t (one forward, every position):
 *   lm.loss@1   (1/(n-1)) sum_{t=1}^{n-1} -log softmax(z_{t-1})[x_t], nats:
 *               the per-token cross-entropy whose exponential is the
 *               perplexity language models report (Radford et al. 2019,
 *               "Language Models are Unsupervised Multitask Learners", sec.
 *               3; Jelinek et al. 1977); each term mb_logits_ce with detmath
 *               (logits.h: the same bits on every CPU), summed in double in t
 *               order
 *   lm.top1@1   (1/(n-1)) #{t : the first argmax of z_{t-1} is x_t}: next-
 *               token top-1 accuracy
 * Both are continuous and compared per item (paired t, clustered SE).
 */
#include <mechbench/task.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/engine.h>
#include <mechbench/facts_requests.h>
#include <mechbench/logits.h>
#include <mechbench/model.h>
#include <mechbench/tokenizer.h>

enum { M_LOSS, M_TOP1, M_COUNT };

static const mb_metric_def lm_metrics[M_COUNT] = {
	{"lm.loss", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "mean next-token cross-entropy over the item's tokens, nats (Radford et al. 2019 sec. 3; "
	 "lm.c)"},
	{"lm.top1", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "fraction of the item's next tokens that are the model's first argmax (lm.c)"},
};

/* ---- generate ---------------------------------------------------------------- */

static int lm_generate(mb_item_list *out, uint64_t seed, const json_t *params, mb_error *err)
{
	json_t *p = params ? json_object_get(params, "source") : NULL;
	json_t *sv = params ? json_object_get(params, "stratum") : NULL;
	char *text = NULL, *line;
	const char *key, *stratum = "text";
	json_t *v;
	size_t len = 0;
	int rc = 0, lineno = 0;

	if (params && !json_is_object(params))
		return mb_error_set(err, MB_EINVALID, "params: expected an object");
	if (!p) /* the zoo facts model's language (facts_requests.h) */
		return mb_facts_text_generate(out, seed, params, err);
	json_object_foreach((json_t *)params, key, v)
		if (strcmp(key, "source") && strcmp(key, "source_sha256") && strcmp(key, "stratum"))
			return mb_error_set(err, MB_EINVALID, "params.%s: unknown field (lm takes "
					    "source, source_sha256, stratum)", key);
	if (sv && (!json_is_string(sv) || !json_string_length(sv)))
		return mb_error_set(err, MB_EINVALID, "params.stratum: expected a non-empty string");
	if (sv)
		stratum = json_string_value(sv);
	if ((rc = mb_task_read_source(&text, &len, params, "text, one item per line", err)) < 0)
		return rc;
	for (line = text; line && *line;) {
		char *nl = strchr(line, '\n'), cluster[32];
		size_t n;
		json_t *in;

		if (nl)
			*nl = '\0';
		lineno++;
		n = strlen(line);
		if (n && line[n - 1] == '\r')
			line[--n] = '\0';
		if (n) {
			snprintf(cluster, sizeof(cluster), "line %d", lineno);
			if (!(in = json_pack("{s:s}", "text", line))) {
				rc = mb_error_set(err, MB_EINVALID, "%s:%d: not UTF-8 text",
						  json_string_value(p), lineno);
				goto cleanup;
			}
			if ((rc = mb_item_list_add(out, stratum, cluster, in, err)) < 0)
				goto cleanup;
		}
		line = nl ? nl + 1 : NULL;
	}
	if (out->n == 0)
		rc = mb_error_set(err, MB_EINVALID, "%s: no text lines", json_string_value(p));
cleanup:
	free(text);
	return rc;
}

/* ---- params and open --------------------------------------------------------- */

typedef struct lm_state {
	mb_model *m;
	int32_t bos; /* -1: none */
	int max_tokens;
} lm_state;

static int lm_check_params(const mb_json_doc *doc, const json_t *params, const char *at,
			   mb_error *err)
{
	static const char *const allowed[] = {"bos", "max_tokens", NULL};
	json_t *o = (json_t *)params;
	const char *bos = NULL;
	int64_t mt = 0;
	int rc;

	if (!o)
		return 0;
	if (!json_is_object(o))
		return mb_json_field_error(doc, err, MB_EINVALID, at, "expected an object");
	if ((rc = mb_json_check_keys(doc, o, at, allowed, err)) < 0 ||
	    (rc = mb_json_get_string(doc, o, at, "bos", 0, &bos, err)) < 0 ||
	    (rc = mb_json_get_int(doc, o, at, "max_tokens", 0, 2, 1 << 20, &mt, err)) < 0)
		return rc;
	return 0;
}

static void lm_close(void *state)
{
	lm_state *st = state;

	if (!st)
		return;
	mb_model_free(st->m);
	free(st);
}

static int lm_open(void **out, const char *model_dir, const json_t *params, mb_error *err)
{
	lm_state *st = calloc(1, sizeof(*st));
	const json_t *b = params ? json_object_get(params, "bos") : NULL;
	const json_t *mt = params ? json_object_get(params, "max_tokens") : NULL;
	int rc;

	*out = NULL;
	if (!st)
		return mb_error_oom(err, "lm state", sizeof(*st));
	if ((rc = mb_model_load(&st->m, model_dir, err)) < 0)
		goto fail;
	if (!st->m->tok) {
		rc = mb_error_set(err, MB_ENOTFOUND, "%s: no tokenizer: the lm task reads text",
				  model_dir);
		goto fail;
	}
	st->max_tokens = st->m->cfg.n_ctx;
	if (mt && json_integer_value(mt) < st->max_tokens)
		st->max_tokens = (int)json_integer_value(mt);
	st->bos = mb_tokenizer_id(st->m->tok, b ? json_string_value(b) : "<|endoftext|>");
	if (b && (st->bos < 0 || st->bos >= st->m->cfg.n_vocab)) {
		rc = mb_error_set(err, MB_EINVALID, "params.bos: '%s' is not a token of %s's "
				  "vocabulary", json_string_value(b), model_dir);
		goto fail;
	}
	if (st->bos >= st->m->cfg.n_vocab)
		st->bos = -1;
	*out = st;
	return 0;
fail:
	lm_close(st);
	return rc;
}

/* ---- run --------------------------------------------------------------------- */

static int lm_run(void *state, const mb_item *items, size_t n, double *values, mb_error *err)
{
	const lm_state *st = state;
	const int T = st->max_tokens, V = st->m->cfg.n_vocab;
	int32_t *tok = calloc(n * (size_t)T, sizeof(*tok)), *lens = calloc(n, sizeof(*lens));
	mb_engine_opts eo = {.max_batch = (int)n, .max_seq = T};
	mb_engine *e = NULL;
	int rc = 0, seq = 1;

	if (!tok || !lens) {
		rc = mb_error_oom(err, "lm tokens", n * (size_t)T * sizeof(*tok));
		goto cleanup;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = mb_task_text_tokens(tok + i * (size_t)T, &lens[i], st->m->tok, st->m->cfg.n_vocab,
					 st->bos, &items[i], T, "the lm task predicts from the "
					 "second token on (give the text more, or a bos)", err);
		if (lens[i] > seq)
			seq = lens[i];
	}
	if (rc < 0)
		goto cleanup;
	/* The items packed at stride seq (the longest), as the run reads them. */
	for (size_t i = 1; i < n; i++)
		memmove(tok + i * (size_t)seq, tok + i * (size_t)T, sizeof(*tok) * (size_t)seq);
	eo.max_seq = seq;
	if ((rc = mb_engine_init(&e, &st->m->cfg, &st->m->w, &eo, err)) < 0)
		goto cleanup;
	mb_run run = {.batch = (int)n, .seq = seq, .tokens = tok, .lengths = lens,
		      .logits = MB_LOGITS_ALL};
	if ((rc = mb_engine_forward(e, &run, err)) < 0)
		goto cleanup;
	for (size_t i = 0; i < n; i++) {
		const int32_t *x = tok + i * (size_t)seq;
		double loss = 0, top1 = 0;

		for (int t = 1; t < lens[i]; t++) {
			int am;
			loss += mb_logits_ce(&am, mb_engine_logits_row(e, (int)i, t - 1), V, x[t],
					     MB_LOGITS_DETMATH);
			top1 += am == x[t];
		}
		values[i * M_COUNT + M_LOSS] = loss / (lens[i] - 1);
		values[i * M_COUNT + M_TOP1] = top1 / (lens[i] - 1);
	}
cleanup:
	mb_engine_free(e);
	free(tok);
	free(lens);
	return rc;
}

const mb_task mb_task_lm = {
	.name = "lm",
	.version = 1,
	.summary = "next-token loss and top-1 on held-out text, per item: a language model's "
		   "text prediction, gated paired against a base model",
	.metrics = lm_metrics,
	.n_metrics = M_COUNT,
	.batch = 16,
	.parallel_inside = 0,
	.generate = lm_generate,
	.check_params = lm_check_params,
	.open = lm_open,
	.close = lm_close,
	.run = lm_run,
};
