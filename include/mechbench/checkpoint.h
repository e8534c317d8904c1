/*
 * checkpoint.h: write Hugging Face GPT-2 checkpoint directories from the
 * engine's weights (the reverse of the model loader), and the tokenizers of
 * the zoo.
 *
 * A checkpoint directory holds config.json (GPT2Config plus the
 * TransformerLens extension fields attn_only and normalization_type),
 * model.safetensors (float32, HF tensor names without the "transformer."
 * prefix, Conv1D layout, lm_head.weight only when untied) and, when given,
 * tokenizer.json. Every file is written atomically, and the bytes are a pure
 * function of the inputs (sorted keys, fixed number formatting), so two runs
 * that produce the same weights produce the same sha256 of every file.
 */
#ifndef MECHBENCH_CHECKPOINT_H
#define MECHBENCH_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <mechbench/engine.h>
#include <mechbench/error.h>

/* Extra config.json fields that the engine config does not carry. */
typedef struct mb_checkpoint_info {
	double initializer_range; /* recorded as config.json initializer_range */
	int bos_token_id;         /* -1: omit bos_token_id / eos_token_id */
} mb_checkpoint_info;

/* One tensor of the HF layout, pointing into engine-layout weights. */
typedef struct mb_checkpoint_tensor {
	char name[64]; /* HF name without prefix: "h.0.attn.c_attn.weight" */
	int ndim;      /* 1 or 2 */
	int64_t shape[2];
	float *data;   /* borrowed: inside the weights block */
} mb_checkpoint_tensor;

/* Lists the HF tensors of a model of cfg over w (the engine layout: see
 * engine.h; a gradient block in the same layout works the same way) in a
 * fixed order: wte, wpe, then per layer ln_1, attn.c_attn, attn.c_proj, ln_2,
 * mlp.c_fc, mlp.c_proj (weight before bias), then ln_f and lm_head (untied
 * only); tensors the config lacks are skipped. Writes at most cap entries and
 * returns the total count (call with cap 0 to size). */
size_t mb_checkpoint_tensors(mb_checkpoint_tensor *out, size_t cap, const mb_engine_config *cfg,
			     const mb_engine_weights *w);

/* The config.json document of cfg (new reference; NULL on allocation
 * failure). */
json_t *mb_checkpoint_config_json(const mb_engine_config *cfg, const mb_checkpoint_info *info);

/* Creates dir (and missing parents) and writes config.json,
 * model.safetensors and, when tokenizer_json is not NULL, tokenizer.json
 * (the text as given). w is in the engine layout of cfg. Errors name the
 * file. */
int mb_checkpoint_write(const char *dir, const mb_engine_config *cfg, const mb_engine_weights *w,
			const mb_checkpoint_info *info, const char *tokenizer_json,
			mb_error *err);

/* A WordLevel tokenizer.json (HF tokenizers format, WhitespaceSplit
 * pre-tokenizer, no normalizer, post-processor or decoder) whose vocabulary
 * is tokens[0..n) with ids 0..n-1; ids listed in special (n_special of them)
 * are also added_tokens marked special. unk names the unknown-word token,
 * one of tokens (mechbench's loader requires it in the vocabulary). Returns a malloc'd string,
 * NULL on allocation failure. */
char *mb_checkpoint_wordlevel_tokenizer(const char *const *tokens, int n, const int *special,
					int n_special, const char *unk);

/* Writes text to path atomically (path.tmp, fsync, rename). */
int mb_checkpoint_write_text(const char *path, const char *text, mb_error *err);

/* mkdir -p. */
int mb_checkpoint_mkdirs(const char *dir, mb_error *err);

#endif
