/*
 * config.c: config.json (GPT2Config + TransformerLens extensions, or
 * GPTNeoXConfig) to mb_engine_config. Every message reads
 * "config.json:line:col: field: ...".
 */
#include <mechbench/model.h>

#include <string.h>

#include <mechbench/json.h>

/* Fields a Hugging Face GPT-2 config carries that do not change the forward
 * (dropouts, heads for other tasks, token ids, generation defaults,
 * bookkeeping). Accepted and ignored. */
static const char *const ignored_fields[] = {
	"architectures", "attn_pdrop", "embd_pdrop", "resid_pdrop", "initializer_range",
	"summary_activation", "summary_first_dropout", "summary_proj_to_labels", "summary_type",
	"summary_use_proj", "task_specific_params", "torch_dtype", "transformers_version",
	"use_cache", "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id",
	"decoder_start_token_id", "return_dict", "output_hidden_states", "output_attentions",
	"torchscript", "use_bfloat16", "tf_legacy_loss", "pruned_heads", "tie_encoder_decoder",
	"is_decoder", "is_encoder_decoder", "cross_attention_hidden_size",
	"chunk_size_feed_forward", "problem_type", "tokenizer_class", "prefix", "id2label",
	"label2id", "finetuning_task", "max_length", "min_length", "do_sample", "early_stopping",
	"num_beams", "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p",
	"typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
	"encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "output_scores",
	"return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id",
	"remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
	"begin_suppress_tokens", "gradient_checkpointing", "n_special", "predict_special_tokens",
	NULL,
};

static const char *const used_fields[] = {
	"vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner",
	"activation_function", "layer_norm_epsilon", "tie_word_embeddings", "model_type", "n_ctx",
	"attn_only", "normalization_type", "scale_attn_by_inverse_layer_idx",
	"reorder_and_upcast_attn", "add_cross_attention", "scale_attn_weights", NULL,
};

static int in_list(const char *const *list, const char *key)
{
	for (; *list; list++)
		if (strcmp(*list, key) == 0)
			return 1;
	return 0;
}

/* A boolean flag that must keep its default value. */
static int check_flag(const mb_json_doc *doc, json_t *root, const char *key, int def,
		      mb_error *err)
{
	int v = def;
	int rc = mb_json_get_bool(doc, root, "", key, 0, &v, err);

	if (rc < 0)
		return rc;
	if (v != def)
		return mb_json_field_error(doc, err, MB_EINVALID, key,
					   "%s is not supported (only %s)", v ? "true" : "false",
					   def ? "true" : "false");
	return 0;
}

static int get_dim(const mb_json_doc *doc, json_t *root, const char *key, int64_t max, int *out,
		   mb_error *err)
{
	int64_t v = 0;
	int rc = mb_json_get_int(doc, root, "", key, 1, 1, max, &v, err);

	if (rc < 0)
		return rc;
	*out = (int)v;
	return 0;
}

/* GPTNeoXConfig fields that change the forward. */
static const char *const neox_used_fields[] = {
	"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
	"intermediate_size", "hidden_act", "rotary_pct", "partial_rotary_factor",
	"rotary_emb_base", "rope_theta", "max_position_embeddings", "layer_norm_eps",
	"use_parallel_residual", "tie_word_embeddings", "attention_bias", "rope_scaling",
	"model_type", NULL,
};

/* GPTNeoXConfig fields that do not (dropouts, init, cache, bookkeeping). */
static const char *const neox_ignored_fields[] = {
	"attention_dropout", "hidden_dropout", "classifier_dropout", "attention_probs_dropout_prob",
	"hidden_dropout_prob", NULL,
};

/* A config.json whose model_type is "gpt_neox" (Pythia): rotary positions on
 * the first int(d_head * rotary_pct) dims of each head, exact GELU by default,
 * parallel residual by default, untied unembedding by default. */
static int parse_neox(mb_engine_config *out, const mb_json_doc *doc, mb_error *err)
{
	json_t *root = doc->root, *v;
	const char *key, *s;
	mb_engine_config c;
	double eps = 1e-5, pct = 0.25, base = 10000.0;
	int rc, bias = 1;

	memset(&c, 0, sizeof(c));
	json_object_foreach(root, key, v) {
		if (key[0] == '_' || in_list(neox_used_fields, key) ||
		    in_list(neox_ignored_fields, key) || in_list(ignored_fields, key))
			continue;
		return mb_json_field_error(doc, err, MB_EINVALID, key,
					   "unknown field (not a GPTNeoXConfig field mechbench reads "
					   "or knows to ignore)");
	}
	if ((rc = get_dim(doc, root, "vocab_size", 1 << 24, &c.n_vocab, err)) < 0 ||
	    (rc = get_dim(doc, root, "max_position_embeddings", 1 << 16, &c.n_ctx, err)) < 0 ||
	    (rc = get_dim(doc, root, "hidden_size", 1 << 20, &c.d_model, err)) < 0 ||
	    (rc = get_dim(doc, root, "num_hidden_layers", 4096, &c.n_layer, err)) < 0 ||
	    (rc = get_dim(doc, root, "num_attention_heads", 1 << 20, &c.n_head, err)) < 0 ||
	    (rc = get_dim(doc, root, "intermediate_size", 1 << 23, &c.d_mlp, err)) < 0)
		return rc;
	if (c.d_model % c.n_head != 0)
		return mb_json_field_error(doc, err, MB_EINVALID, "num_attention_heads",
					   "hidden_size %d is not divisible by num_attention_heads %d",
					   c.d_model, c.n_head);
	c.d_head = c.d_model / c.n_head;
	s = "gelu";
	rc = mb_json_get_string(doc, root, "", "hidden_act", 0, &s, err);
	if (rc < 0)
		return rc;
	if (strcmp(s, "gelu") == 0)
		c.act = MB_ACT_GELU;
	else if (strcmp(s, "gelu_new") == 0 || strcmp(s, "gelu_pytorch_tanh") == 0)
		c.act = MB_ACT_GELU_NEW;
	else if (strcmp(s, "relu") == 0)
		c.act = MB_ACT_RELU;
	else
		return mb_json_field_error(doc, err, MB_EINVALID, "hidden_act",
					   "\"%s\" is not supported (gelu, gelu_new, relu)", s);
	c.norm = MB_NORM_LN;
	rc = mb_json_get_number(doc, root, "", "layer_norm_eps", 0, &eps, err);
	if (rc < 0)
		return rc;
	if (!(eps > 0.0 && eps < 1.0))
		return mb_json_field_error(doc, err, MB_EINVALID, "layer_norm_eps",
					   "%g must be in (0, 1)", eps);
	c.ln_eps = (float)eps;
	if (json_object_get(root, "rotary_pct") && json_object_get(root, "partial_rotary_factor"))
		return mb_json_field_error(doc, err, MB_EINVALID, "partial_rotary_factor",
					   "give rotary_pct or partial_rotary_factor, not both");
	rc = mb_json_get_number(doc, root, "",
				json_object_get(root, "partial_rotary_factor") ? "partial_rotary_factor"
									      : "rotary_pct",
				0, &pct, err);
	if (rc < 0)
		return rc;
	if (json_object_get(root, "rotary_emb_base") && json_object_get(root, "rope_theta"))
		return mb_json_field_error(doc, err, MB_EINVALID, "rope_theta",
					   "give rotary_emb_base or rope_theta, not both");
	rc = mb_json_get_number(doc, root, "",
				json_object_get(root, "rope_theta") ? "rope_theta" : "rotary_emb_base",
				0, &base, err);
	if (rc < 0)
		return rc;
	if (!(pct > 0.0 && pct <= 1.0))
		return mb_json_field_error(doc, err, MB_EINVALID, "rotary_pct",
					   "%g must be in (0, 1]", pct);
	c.pos = MB_POS_ROTARY;
	c.rotary_dim = (int)((double)c.d_head * pct); /* int(), as GPT-NeoX truncates */
	if (c.rotary_dim < 2 || c.rotary_dim % 2 != 0)
		return mb_json_field_error(doc, err, MB_EINVALID, "rotary_pct",
					   "%g of d_head %d gives %d rotary dims (need an even number "
					   ">= 2)",
					   pct, c.d_head, c.rotary_dim);
	if (!(base > 1.0 && base < 1e30))
		return mb_json_field_error(doc, err, MB_EINVALID, "rotary_emb_base",
					   "%g must be > 1", base);
	c.rotary_base = (float)base;
	c.parallel = 1;
	rc = mb_json_get_bool(doc, root, "", "use_parallel_residual", 0, &c.parallel, err);
	if (rc < 0)
		return rc;
	c.tied = 0;
	rc = mb_json_get_bool(doc, root, "", "tie_word_embeddings", 0, &c.tied, err);
	if (rc < 0)
		return rc;
	rc = mb_json_get_bool(doc, root, "", "attention_bias", 0, &bias, err);
	if (rc < 0)
		return rc;
	if (!bias)
		return mb_json_field_error(doc, err, MB_EINVALID, "attention_bias",
					   "false is not supported (only true)");
	v = json_object_get(root, "rope_scaling");
	if (v && !json_is_null(v))
		return mb_json_field_error(doc, err, MB_EINVALID, "rope_scaling",
					   "is not supported (only null)");
	rc = mb_engine_config_check(&c, err);
	if (rc < 0)
		return mb_error_prefix(err, "%s", doc->name);
	*out = c;
	return 0;
}

static int parse_doc(mb_engine_config *out, const mb_json_doc *doc, mb_error *err)
{
	json_t *root = doc->root, *v;
	const char *key, *s;
	mb_engine_config c;
	int rc;
	double eps = 1e-5;

	memset(&c, 0, sizeof(c));
	if (!json_is_object(root))
		return mb_json_field_error(doc, err, MB_EINVALID, "", "expected a JSON object");
	v = json_object_get(root, "model_type");
	if (v && json_is_string(v) && strcmp(json_string_value(v), "gpt_neox") == 0)
		return parse_neox(out, doc, err);
	json_object_foreach(root, key, v) {
		if (key[0] == '_' || in_list(used_fields, key) || in_list(ignored_fields, key))
			continue;
		return mb_json_field_error(doc, err, MB_EINVALID, key,
					   "unknown field (not a GPT2Config field mechbench reads "
					   "or knows to ignore)");
	}
	s = "gpt2";
	rc = mb_json_get_string(doc, root, "", "model_type", 0, &s, err);
	if (rc < 0)
		return rc;
	if (strcmp(s, "gpt2") != 0)
		return mb_json_field_error(doc, err, MB_EINVALID, "model_type",
					   "\"%s\" is not supported (\"gpt2\" or \"gpt_neox\")", s);
	if ((rc = get_dim(doc, root, "vocab_size", 1 << 24, &c.n_vocab, err)) < 0 ||
	    (rc = get_dim(doc, root, "n_positions", 1 << 16, &c.n_ctx, err)) < 0 ||
	    (rc = get_dim(doc, root, "n_embd", 1 << 20, &c.d_model, err)) < 0 ||
	    (rc = get_dim(doc, root, "n_layer", 4096, &c.n_layer, err)) < 0 ||
	    (rc = get_dim(doc, root, "n_head", 1 << 20, &c.n_head, err)) < 0)
		return rc;
	v = json_object_get(root, "n_ctx");
	if (v) {
		int64_t nctx = 0;

		rc = mb_json_get_int(doc, root, "", "n_ctx", 1, 1, 1 << 16, &nctx, err);
		if (rc < 0)
			return rc;
		if (nctx != c.n_ctx)
			return mb_json_field_error(doc, err, MB_EINVALID, "n_ctx",
						   "%lld differs from n_positions %d",
						   (long long)nctx, c.n_ctx);
	}
	if (c.d_model % c.n_head != 0)
		return mb_json_field_error(doc, err, MB_EINVALID, "n_head",
					   "n_embd %d is not divisible by n_head %d", c.d_model,
					   c.n_head);
	c.d_head = c.d_model / c.n_head;
	rc = mb_json_get_bool(doc, root, "", "attn_only", 0, &c.attn_only, err);
	if (rc < 0)
		return rc;
	v = json_object_get(root, "n_inner");
	if (c.attn_only) {
		c.d_mlp = 0;
		if (v && !json_is_null(v) && !json_is_integer(v))
			return mb_json_field_error(doc, err, MB_EINVALID, "n_inner",
						   "expected an integer or null");
	} else if (!v || json_is_null(v)) {
		c.d_mlp = 4 * c.d_model;
	} else if ((rc = get_dim(doc, root, "n_inner", 1 << 23, &c.d_mlp, err)) < 0) {
		return rc;
	}
	s = "gelu_new";
	rc = mb_json_get_string(doc, root, "", "activation_function", 0, &s, err);
	if (rc < 0)
		return rc;
	if (strcmp(s, "gelu_new") == 0 || strcmp(s, "gelu_pytorch_tanh") == 0)
		c.act = MB_ACT_GELU_NEW;
	else if (strcmp(s, "gelu") == 0)
		c.act = MB_ACT_GELU;
	else if (strcmp(s, "relu") == 0)
		c.act = MB_ACT_RELU;
	else
		return mb_json_field_error(doc, err, MB_EINVALID, "activation_function",
					   "\"%s\" is not supported (gelu_new, gelu, relu)", s);
	v = json_object_get(root, "normalization_type");
	c.norm = MB_NORM_LN;
	if (v && json_is_null(v)) {
		c.norm = MB_NORM_NONE;
	} else if (v) {
		rc = mb_json_get_string(doc, root, "", "normalization_type", 1, &s, err);
		if (rc < 0)
			return rc;
		if (strcmp(s, "LN") == 0)
			c.norm = MB_NORM_LN;
		else if (strcmp(s, "none") == 0)
			c.norm = MB_NORM_NONE;
		else
			return mb_json_field_error(doc, err, MB_EINVALID, "normalization_type",
						   "\"%s\" is not supported (\"LN\" or \"none\")", s);
	}
	rc = mb_json_get_number(doc, root, "", "layer_norm_epsilon", 0, &eps, err);
	if (rc < 0)
		return rc;
	if (!(eps > 0.0 && eps < 1.0))
		return mb_json_field_error(doc, err, MB_EINVALID, "layer_norm_epsilon",
					   "%g must be in (0, 1)", eps);
	c.ln_eps = (float)eps;
	c.tied = 1;
	rc = mb_json_get_bool(doc, root, "", "tie_word_embeddings", 0, &c.tied, err);
	if (rc < 0)
		return rc;
	if ((rc = check_flag(doc, root, "scale_attn_by_inverse_layer_idx", 0, err)) < 0 ||
	    (rc = check_flag(doc, root, "reorder_and_upcast_attn", 0, err)) < 0 ||
	    (rc = check_flag(doc, root, "add_cross_attention", 0, err)) < 0 ||
	    (rc = check_flag(doc, root, "scale_attn_weights", 1, err)) < 0)
		return rc;
	rc = mb_engine_config_check(&c, err);
	if (rc < 0)
		return mb_error_prefix(err, "%s", doc->name);
	*out = c;
	return 0;
}

int mb_model_config_parse(mb_engine_config *out, const char *text, size_t len, const char *name,
			  mb_error *err)
{
	mb_json_doc doc;
	int rc = mb_json_doc_parse(&doc, text, len, name, err);

	if (rc < 0)
		return rc;
	rc = parse_doc(out, &doc, err);
	mb_json_doc_dispose(&doc);
	return rc;
}

int mb_model_config_load(mb_engine_config *out, const char *path, mb_error *err)
{
	mb_json_doc doc;
	int rc = mb_json_doc_load(&doc, path, err);

	if (rc < 0)
		return rc;
	rc = parse_doc(out, &doc, err);
	mb_json_doc_dispose(&doc);
	return rc;
}
