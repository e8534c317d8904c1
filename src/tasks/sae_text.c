/*
 * sae_text.c: the `sae_text` task: the quality of a downloaded SAE spliced
 * into its model, per passage of held-out text, so that an SAE (or the model
 * under it) is gated like any change. The `sae` task judges an SAE's
 * labelled features causally and needs a zoo language that labels them; a
 * published SAE (SAELens's `gpt2-small-res-jb`, ...) on a downloaded model has
 * no labels, and what the literature reports for it is this core set
 * (SAEBench "core" metrics, Karvonen et al. 2025; SAELens's evals).
 *
 * Legend: T positions of an item, V vocab, D the SAE's d_in, S its d_sae.
 *
 * Items: the `lm` task's text items, input {"text": a passage}; generate is
 * lm's (a text file, one item per non-empty line, frozen by its sha256:
 * params {"source", "source_sha256", "stratum"}; lm.c).
 *
 * Run params (check_params):
 *   "sae"         the SAE folder, SAELens layout (sae.h; required): cfg.json
 *                 names the hook point, the context size and prepend_bos
 *   "bos"         a token (string) prepended to every item; default the
 *                 tokenizer's "<|endoftext|>" when cfg.json says prepend_bos
 *                 (SAELens's default), else none
 *   "max_tokens"  an item is cut to its first max_tokens tokens (the BOS
 *                 included); default cfg.json's context_size (what the SAE
 *                 was trained on; 128 for gpt2-small-res-jb), else n_ctx
 * The SAE folder is read relative to the working directory (the repository
 * root, where suites run).
 *
 * Metrics (version 1), per item over its tokens x_0..x_{n-1}, through
 * mb_sae_item_quality (sae_train.h; the `sae` task's definitions): a clean
 * forward, one with the SAE's reconstruction spliced in at the hook (every
 * position, the BOS included; SAEBench leaves special tokens out by default,
 * so its CE recovered can be higher than this one on models whose BOS
 * residual is large) and one with the hook zero-ablated; CE over the n - 1
 * next-token targets, KL over all n positions, in double with detmath:
 *   sae_text.ce_recovered@1  (CE_zero - CE_sae) / (CE_zero - CE_clean)
 *                            (SAEBench ce_loss_score); 0 where CE_zero ==
 *                            CE_clean
 *   sae_text.kl@1            mean KL(clean || SAE spliced in), nats
 *                            (SAEBench kl_div_with_sae)
 *   sae_text.l0@1            mean active latents per position (SAEBench l0)
 *   sae_text.cos@1           mean cosine of the reconstruction to the
 *                            activation (SAEBench cossim)
 * Each item's values depend on the item, the model and the SAE alone.
 */
#include <mechbench/task.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/engine.h>
#include <mechbench/model.h>
#include <mechbench/sae.h>
#include <mechbench/sae_train.h>
#include <mechbench/tokenizer.h>

enum { M_CE_RECOVERED, M_KL, M_L0, M_COS, M_COUNT };

static const mb_metric_def sae_text_metrics[M_COUNT] = {
	{"sae_text.ce_recovered", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "CE loss recovered with the SAE spliced in, (CE_zero - CE_sae) / (CE_zero - CE_clean) "
	 "over the passage's next tokens (SAEBench ce_loss_score, per item; sae_text.c)"},
	{"sae_text.kl", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "mean KL(clean || SAE spliced in) of the next-token distributions (SAEBench "
	 "kl_div_with_sae, per item)"},
	{"sae_text.l0", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "mean active latents per position (SAEBench l0)"},
	{"sae_text.cos", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "mean cosine of the reconstruction to the activation (SAEBench cossim)"},
};

/* lm's text items (lm.c): the same files serve both tasks. */
static int sae_text_generate(mb_item_list *out, uint64_t seed, const json_t *params,
			     mb_error *err)
{
	const mb_task *lm = mb_task_find("lm");

	if (!params || !json_object_get(params, "source"))
		return mb_error_set(err, MB_EINVALID, "params.source: required: a text file, one "
				    "passage per line (with source_sha256)");
	return lm->generate(out, seed, params, err);
}

typedef struct sae_text_state {
	mb_model *m;
	mb_sae *sae;
	mb_hook_point point;
	int32_t bos; /* -1: none */
	int max_tokens;
} sae_text_state;

static int sae_text_check_params(const mb_json_doc *doc, const json_t *params, const char *at,
				 mb_error *err)
{
	static const char *const allowed[] = {"sae", "bos", "max_tokens", NULL};
	json_t *o = (json_t *)params;
	const char *s = NULL;
	int64_t mt = 0;
	int rc;

	if (!o)
		return mb_json_field_error(doc, err, MB_EINVALID, at,
					   "the sae_text task needs params.sae (the SAE folder)");
	if (!json_is_object(o))
		return mb_json_field_error(doc, err, MB_EINVALID, at, "expected an object");
	if ((rc = mb_json_check_keys(doc, o, at, allowed, err)) < 0 ||
	    (rc = mb_json_get_string(doc, o, at, "sae", 1, &s, err)) < 0 ||
	    (rc = mb_json_get_string(doc, o, at, "bos", 0, &s, err)) < 0 ||
	    (rc = mb_json_get_int(doc, o, at, "max_tokens", 0, 2, 1 << 20, &mt, err)) < 0)
		return rc;
	return 0;
}

static void sae_text_close(void *state)
{
	sae_text_state *st = state;

	if (!st)
		return;
	mb_sae_free(st->sae);
	mb_model_free(st->m);
	free(st);
}

static int sae_text_open(void **out, const char *model_dir, const json_t *params, mb_error *err)
{
	sae_text_state *st = calloc(1, sizeof(*st));
	const json_t *sv = params ? json_object_get(params, "sae") : NULL;
	const json_t *b = params ? json_object_get(params, "bos") : NULL;
	const json_t *mt = params ? json_object_get(params, "max_tokens") : NULL;
	const char *dir = json_is_string(sv) ? json_string_value(sv) : NULL;
	int rc;

	*out = NULL;
	if (!st)
		return mb_error_oom(err, "sae_text state", sizeof(*st));
	if (!dir) {
		rc = mb_error_set(err, MB_EINVALID, "params.sae: the SAE folder is required");
		goto fail;
	}
	if ((rc = mb_model_load(&st->m, model_dir, err)) < 0 ||
	    (rc = mb_sae_load(&st->sae, dir, err)) < 0)
		goto fail;
	if (!st->m->tok) {
		rc = mb_error_set(err, MB_ENOTFOUND, "%s: no tokenizer: the sae_text task reads text",
				  model_dir);
		goto fail;
	}
	if ((rc = mb_hook_parse(&st->point, st->sae->hook_name, err)) < 0) {
		rc = mb_error_prefix(err, "%s/cfg.json: metadata.hook_name", dir);
		goto fail;
	}
	if (st->sae->d_in != st->m->cfg.d_model) {
		rc = mb_error_set(err, MB_EMISMATCH, "%s: d_in %d, but %s has d_model %d (sae_text "
				  "reads residual-width hooks)", dir, st->sae->d_in, model_dir,
				  st->m->cfg.d_model);
		goto fail;
	}
	st->max_tokens = st->m->cfg.n_ctx;
	if (st->sae->context_size > 0 && st->sae->context_size < st->max_tokens)
		st->max_tokens = st->sae->context_size;
	if (mt)
		st->max_tokens = (int)json_integer_value(mt) < st->m->cfg.n_ctx
					 ? (int)json_integer_value(mt) : st->m->cfg.n_ctx;
	st->bos = -1;
	if (b) {
		st->bos = mb_tokenizer_id(st->m->tok, json_string_value(b));
		if (st->bos < 0 || st->bos >= st->m->cfg.n_vocab) {
			rc = mb_error_set(err, MB_EINVALID, "params.bos: '%s' is not a token of %s's "
					  "vocabulary", json_string_value(b), model_dir);
			goto fail;
		}
	} else if (st->sae->prepend_bos) {
		st->bos = mb_tokenizer_id(st->m->tok, "<|endoftext|>");
		if (st->bos >= st->m->cfg.n_vocab)
			st->bos = -1;
	}
	*out = st;
	return 0;
fail:
	sae_text_close(st);
	return rc;
}

/* One item at a time (every position of a run must be valid for the
 * splice), on an engine of this call's own. */
static int sae_text_run(void *state, const mb_item *items, size_t n, double *values,
			mb_error *err)
{
	const sae_text_state *st = state;
	const int T = st->max_tokens;
	int32_t *tok = malloc((size_t)T * sizeof(*tok));
	mb_engine_opts eo = {.max_batch = 1, .max_seq = T};
	mb_engine *e = NULL;
	int rc;

	if (!tok)
		return mb_error_oom(err, "sae_text tokens", (size_t)T * sizeof(*tok));
	if ((rc = mb_engine_init(&e, &st->m->cfg, &st->m->w, &eo, err)) < 0)
		goto cleanup;
	for (size_t i = 0; i < n; i++) {
		mb_sae_item_metrics q;
		double *row = values + i * M_COUNT, den;
		int len = 0;

		if ((rc = mb_task_text_tokens(tok, &len, st->m->tok, st->m->cfg.n_vocab, st->bos,
					      &items[i], T, "CE needs a next token", err)) < 0 ||
		    (rc = mb_sae_item_quality(&q, e, st->sae, st->point, tok, 1, len, 1, err)) < 0)
			goto cleanup;
		den = q.ce_zero - q.ce_clean;
		row[M_CE_RECOVERED] = den != 0.0 ? (q.ce_zero - q.ce_sae) / den : 0.0;
		row[M_KL] = q.kl_sae;
		row[M_L0] = q.l0;
		row[M_COS] = q.cos;
	}
cleanup:
	mb_engine_free(e);
	free(tok);
	return rc;
}

/* params.sae, the SAE folder, is relative to the spec's root (mb_task_open). */
static const char *const sae_text_path_params[] = {"sae", NULL};

const mb_task mb_task_sae_text = {
	.name = "sae_text",
	.version = 1,
	.summary = "a downloaded SAE spliced into its model on held-out text, per passage: CE "
		   "loss recovered, KL, L0, cosine (SAEBench's core metrics)",
	.metrics = sae_text_metrics,
	.n_metrics = M_COUNT,
	.batch = 8,
	.parallel_inside = 0,
	.generate = sae_text_generate,
	.check_params = sae_text_check_params,
	.open = sae_text_open,
	.close = sae_text_close,
	.path_params = sae_text_path_params,
	.run = sae_text_run,
};
