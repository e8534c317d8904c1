/*
 * model.h: Hugging Face GPT-2 and GPT-NeoX (Pythia) checkpoint directories:
 * config.json, model.safetensors (or model.safetensors.index.json and its
 * shards) and an optional tokenizer.json.
 *
 * GPT-NeoX (model_type "gpt_neox"): GPTNeoXConfig fields vocab_size,
 * hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
 * max_position_embeddings (required), hidden_act ("gelu" exact, default;
 * "gelu_new", "relu"), rotary_pct or partial_rotary_factor (0.25),
 * rotary_emb_base or rope_theta (10000), layer_norm_eps (1e-5),
 * use_parallel_residual (true), tie_word_embeddings (false), attention_bias
 * (true only), rope_scaling (null only). Tensors gpt_neox.embed_in,
 * gpt_neox.layers.{l}.{input_layernorm, post_attention_layernorm,
 * attention.query_key_value, attention.dense, mlp.dense_h_to_4h,
 * mlp.dense_4h_to_h}, gpt_neox.final_layer_norm, embed_out (nn.Linear
 * layout); attention mask and rotary inv_freq buffers are ignored.
 *
 * Shape letters: V vocab, P n_positions, D n_embd, L n_layer, M n_inner.
 *
 * config.json: GPT2Config fields vocab_size, n_positions, n_embd, n_layer,
 * n_head (required), n_inner (null or absent: 4 n_embd), activation_function
 * ("gelu_new" default, "gelu", "relu"), layer_norm_epsilon (1e-5),
 * tie_word_embeddings (true), model_type ("gpt2" when present), n_ctx (must
 * equal n_positions when present), and the TransformerLens extensions
 * attn_only (false) and normalization_type ("LN" default, "none"). Flags we do
 * not implement are errors when set away from their defaults:
 * scale_attn_by_inverse_layer_idx, reorder_and_upcast_attn,
 * add_cross_attention (all false) and scale_attn_weights (true). The other
 * fields a Hugging Face config carries (dropouts, summary_*, token ids,
 * generation settings, ...) are accepted and ignored; any other field is an
 * error, so a typo ("atn_only") never silently changes the architecture.
 *
 * model.safetensors: HF tensor names with or without the "transformer." prefix
 * (wte.weight (V, D), wpe.weight (P, D), h.{l}.ln_1.weight, ...), Conv1D
 * layout, F32/F16/BF16/F64 converted to float32, non-finite values rejected.
 * lm_head.weight (V, D) is required when untied; when tied it may be present
 * only as an exact copy of wte.weight. Buffers h.{l}.attn.bias and
 * h.{l}.attn.masked_bias are ignored. Missing, misshapen, duplicated or
 * unexpected tensors are errors naming the tensor.
 */
#ifndef MECHBENCH_MODEL_H
#define MECHBENCH_MODEL_H

#include <stddef.h>

#include <mechbench/engine.h>
#include <mechbench/error.h>
#include <mechbench/safetensors.h>
#include <mechbench/tokenizer.h>

typedef struct mb_model {
	mb_engine_config cfg;
	mb_engine_weights w;  /* pointers into params */
	float *params;        /* owned, n_params floats (mb_engine_weights_layout) */
	size_t n_params;
	mb_tokenizer *tok;    /* owned; NULL when the directory has no tokenizer.json */
	char *dir;            /* owned copy of the directory path */
} mb_model;

/* Parses config.json text (name labels messages "name:line:col: field: ..."). */
int mb_model_config_parse(mb_engine_config *out, const char *text, size_t len, const char *name,
			  mb_error *err);
/* Reads and parses a config.json file. */
int mb_model_config_load(mb_engine_config *out, const char *path, mb_error *err);

/* Loads the tensors of cfg from st into w, carved out of one new block
 * (*params, owned by the caller, freed with free()). Errors name the file
 * (st's name) and the tensor. */
int mb_model_weights_load(mb_engine_weights *w, float **params, size_t *n_params,
			  const mb_engine_config *cfg, const mb_safetensors *st, mb_error *err);

/*
 * model.safetensors.index.json (sharded checkpoints): {"metadata": {...},
 * "weight_map": {tensor: shard file, ...}}, shard files plain names in the
 * index's folder. Parsed: tensor names sorted, the distinct files sorted,
 * file_of[i] the file of tensor i. Errors name the file and the field.
 */
typedef struct mb_model_index {
	size_t n;        /* tensors */
	char **tensor;   /* (n) sorted */
	int *file_of;    /* (n) index into files */
	size_t n_files;
	char **files;    /* (n_files) sorted, distinct */
} mb_model_index;

int mb_model_index_parse(mb_model_index *out, const char *text, size_t len, const char *name,
			 mb_error *err);
void mb_model_index_dispose(mb_model_index *ix);

/* Loads a sharded checkpoint shard by shard (each tensor converted and its
 * pages released before the next). Every tensor of every shard must be
 * mapped to that shard by the index and every mapped tensor must be in its
 * shard; a missing shard file, a mapped tensor absent from its shard, a
 * tensor in two shards or one the index does not list is an error. */
int mb_model_weights_load_sharded(mb_engine_weights *w, float **params, size_t *n_params,
				  const mb_engine_config *cfg, const char *index_path,
				  mb_error *err);

/* Loads dir/config.json, the weights (dir/model.safetensors, or when absent
 * dir/model.safetensors.index.json and its shards) and, when present,
 * dir/tokenizer.json (whose vocabulary must fit the model's vocab_size). */
int mb_model_load(mb_model **out, const char *dir, mb_error *err);
void mb_model_free(mb_model *m);

#endif
