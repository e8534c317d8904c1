/*
 * layout.c: architecture checks and the weights layout (one block, pointers
 * carved out of it, llm.c's malloc_and_point_parameters).
 *
 * Shape letters: V vocab, P n_ctx, D d_model, L layers, M d_mlp.
 */
#include <mechbench/engine.h>

#include <math.h>
#include <stdint.h>

/* Limits that keep every index of a run inside int and every product of two
 * dimensions inside size_t with room to spare. */
#define MAX_DIM (1 << 20)
#define MAX_LAYERS 4096
#define MAX_CTX (1 << 16)

int mb_engine_config_check(const mb_engine_config *cfg, mb_error *err)
{
	if (cfg->n_vocab < 1 || cfg->n_vocab > (1 << 24))
		return mb_error_set(err, MB_EINVALID, "vocab_size: %d is out of range [1, %d]",
				    cfg->n_vocab, 1 << 24);
	if (cfg->n_ctx < 1 || cfg->n_ctx > MAX_CTX)
		return mb_error_set(err, MB_EINVALID, "n_positions: %d is out of range [1, %d]",
				    cfg->n_ctx, MAX_CTX);
	if (cfg->d_model < 1 || cfg->d_model > MAX_DIM)
		return mb_error_set(err, MB_EINVALID, "n_embd: %d is out of range [1, %d]",
				    cfg->d_model, MAX_DIM);
	if (cfg->n_layer < 1 || cfg->n_layer > MAX_LAYERS)
		return mb_error_set(err, MB_EINVALID, "n_layer: %d is out of range [1, %d]",
				    cfg->n_layer, MAX_LAYERS);
	if (cfg->n_head < 1 || cfg->n_head > cfg->d_model)
		return mb_error_set(err, MB_EINVALID, "n_head: %d is out of range [1, n_embd = %d]",
				    cfg->n_head, cfg->d_model);
	if (cfg->d_model % cfg->n_head != 0)
		return mb_error_set(err, MB_EINVALID,
				    "n_head: n_embd %d is not divisible by n_head %d", cfg->d_model,
				    cfg->n_head);
	if (cfg->d_head != cfg->d_model / cfg->n_head)
		return mb_error_set(err, MB_EINVALID, "d_head: %d, expected n_embd / n_head = %d",
				    cfg->d_head, cfg->d_model / cfg->n_head);
	if (cfg->attn_only ? cfg->d_mlp != 0 : (cfg->d_mlp < 1 || cfg->d_mlp > 8 * MAX_DIM))
		return mb_error_set(err, MB_EINVALID, "n_inner: %d is out of range%s", cfg->d_mlp,
				    cfg->attn_only ? " (0 for an attention-only model)" : "");
	if ((int)cfg->act < MB_ACT_GELU_NEW || (int)cfg->act > MB_ACT_RELU)
		return mb_error_set(err, MB_EINVALID, "activation_function: unknown value %d",
				    (int)cfg->act);
	if ((int)cfg->norm < MB_NORM_LN || (int)cfg->norm > MB_NORM_NONE)
		return mb_error_set(err, MB_EINVALID, "normalization_type: unknown value %d",
				    (int)cfg->norm);
	if ((int)cfg->pos < MB_POS_LEARNED || (int)cfg->pos > MB_POS_ROTARY)
		return mb_error_set(err, MB_EINVALID, "position embedding: unknown value %d",
				    (int)cfg->pos);
	if (cfg->pos == MB_POS_ROTARY &&
	    (cfg->rotary_dim < 2 || cfg->rotary_dim > cfg->d_head || cfg->rotary_dim % 2 != 0))
		return mb_error_set(err, MB_EINVALID,
				    "rotary_pct: %d rotary dims per head, expected an even number "
				    "in [2, d_head = %d]",
				    cfg->rotary_dim, cfg->d_head);
	if (cfg->pos == MB_POS_ROTARY && !(cfg->rotary_base > 1.0f && isfinite(cfg->rotary_base)))
		return mb_error_set(err, MB_EINVALID, "rotary_emb_base: %g must be > 1",
				    (double)cfg->rotary_base);
	if (cfg->parallel && cfg->attn_only)
		return mb_error_set(err, MB_EINVALID,
				    "use_parallel_residual: needs an MLP (the model is attention-only)");
	if (cfg->norm == MB_NORM_LN && !(cfg->ln_eps > 0.0f && isfinite(cfg->ln_eps)))
		return mb_error_set(err, MB_EINVALID, "layer_norm_epsilon: %g must be > 0",
				    (double)cfg->ln_eps);
	return 0;
}

static float *carve(float **cur, size_t n, size_t *total)
{
	float *p = *cur;

	*total += n;
	if (!p || n == 0)
		return NULL;
	*cur = p + n;
	return p;
}

size_t mb_engine_weights_layout(mb_engine_weights *out, const mb_engine_config *cfg, float *base)
{
	size_t V = (size_t)cfg->n_vocab, P = (size_t)cfg->n_ctx, D = (size_t)cfg->d_model;
	size_t L = (size_t)cfg->n_layer, M = (size_t)cfg->d_mlp;
	int ln = cfg->norm == MB_NORM_LN, mlp = !cfg->attn_only;
	float *cur = base;
	size_t total = 0;

	out->wte = carve(&cur, V * D, &total);
	out->wpe = carve(&cur, cfg->pos == MB_POS_LEARNED ? P * D : 0, &total);
	out->ln1_w = carve(&cur, ln ? L * D : 0, &total);
	out->ln1_b = carve(&cur, ln ? L * D : 0, &total);
	out->qkv_w = carve(&cur, L * D * 3 * D, &total);
	out->qkv_b = carve(&cur, L * 3 * D, &total);
	out->o_w = carve(&cur, L * D * D, &total);
	out->o_b = carve(&cur, L * D, &total);
	out->ln2_w = carve(&cur, ln && mlp ? L * D : 0, &total);
	out->ln2_b = carve(&cur, ln && mlp ? L * D : 0, &total);
	out->fc_w = carve(&cur, mlp ? L * D * M : 0, &total);
	out->fc_b = carve(&cur, mlp ? L * M : 0, &total);
	out->proj_w = carve(&cur, mlp ? L * M * D : 0, &total);
	out->proj_b = carve(&cur, mlp ? L * D : 0, &total);
	out->lnf_w = carve(&cur, ln ? D : 0, &total);
	out->lnf_b = carve(&cur, ln ? D : 0, &total);
	out->unembed = cfg->tied ? out->wte : carve(&cur, V * D, &total);
	return total;
}
