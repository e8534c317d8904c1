/*
 * hooks.h: TransformerLens hook points, the hook registry and activation caches.
 *
 * Shape letters: B batch, T positions, D d_model, H heads, Dh d_head, M d_mlp,
 * V vocab, N selected logit rows per item.
 *
 * A hook point is (kind, layer), named as TransformerLens names it
 * ("blocks.3.attn.hook_z"). A hook is a callback with a payload (ggml's eval
 * callback, libgit2's payload rule) that receives the activation as a
 * contiguous float tensor in TransformerLens shape and may read it or
 * overwrite it in place; the forward continues from what the hook left.
 * Padded positions (t >= len[b]) read as zeros and writes there are ignored.
 *
 *   hook_embed, hook_pos_embed                          (B, T, D)
 *   blocks.{l}.hook_resid_pre                           (B, T, D)
 *   blocks.{l}.ln1.hook_normalized                      (B, T, D)
 *   blocks.{l}.hook_q_input | hook_k_input | hook_v_input (B, T, H, D)  only when observed
 *   blocks.{l}.attn.hook_q | hook_k | hook_v            (B, T, H, Dh)
 *   blocks.{l}.attn.hook_rot_q | hook_rot_k             (B, T, H, Dh)  rotary models only
 *   blocks.{l}.attn.hook_attn_scores                    (B, H, T, T) masked: -inf
 *   blocks.{l}.attn.hook_pattern                        (B, H, T, T) masked: 0
 *   blocks.{l}.attn.hook_z                              (B, T, H, Dh)
 *   blocks.{l}.attn.hook_result                         (B, T, H, D)  only when observed
 *   blocks.{l}.hook_attn_out                            (B, T, D)
 *   blocks.{l}.hook_resid_mid                           (B, T, D)
 *   blocks.{l}.ln2.hook_normalized                      (B, T, D)
 *   blocks.{l}.mlp.hook_pre | hook_post                 (B, T, M)
 *   blocks.{l}.hook_mlp_out                             (B, T, D)
 *   blocks.{l}.hook_resid_post                          (B, T, D)
 *   ln_final.hook_normalized                            (B, T, D)
 *   logits                                              (B, T, V) / (B, 1, V) / (B, N, V)
 *
 * Semantics that differ from a plain reading:
 * - ln*.hook_normalized is (x - mean) / sqrt(var + eps), before LN's weight and
 *   bias; with normalization "none" it is the residual itself.
 * - Observing hook_{q,k,v}_input switches that input of that layer to the split
 *   path: the residual is copied per head, the hook fires, LN1 is applied per
 *   head and head h's q (k, v) is computed from slice h. The unsplit
 *   ln1.hook_normalized still fires and feeds the inputs that are not split.
 * - Observing hook_result makes hook_attn_out the sum over heads of hook_result
 *   (in head order) plus b_O, as TransformerLens does; unobserved, it is the
 *   GEMM z W_O + b_O. The two agree to rounding.
 * - Entries of hook_pattern above the diagonal (masked keys) are treated as 0
 *   whatever a hook writes there.
 * - On attention-only models the ln2/mlp hooks do not exist (an error).
 * - Rotary models (GPT-NeoX): hook_q/hook_k are before the rotation,
 *   hook_rot_q/hook_rot_k after it (what the scores use); hook_pos_embed does
 *   not exist. Parallel-residual models have no hook_resid_mid (TransformerLens
 *   never fires it there); their ln2 normalizes resid_pre.
 */
#ifndef MECHBENCH_HOOKS_H
#define MECHBENCH_HOOKS_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/engine.h>
#include <mechbench/error.h>

typedef enum mb_hook_kind {
	/* model-level points (layer -1) */
	MB_HOOK_EMBED = 0,
	MB_HOOK_POS_EMBED,
	MB_HOOK_LN_FINAL_NORMALIZED,
	MB_HOOK_LOGITS,
	/* per-layer points, in forward order */
	MB_HOOK_RESID_PRE,
	MB_HOOK_LN1_NORMALIZED,
	MB_HOOK_Q_INPUT,
	MB_HOOK_K_INPUT,
	MB_HOOK_V_INPUT,
	MB_HOOK_Q,
	MB_HOOK_K,
	MB_HOOK_V,
	MB_HOOK_ROT_Q,
	MB_HOOK_ROT_K,
	MB_HOOK_ATTN_SCORES,
	MB_HOOK_PATTERN,
	MB_HOOK_Z,
	MB_HOOK_RESULT,
	MB_HOOK_ATTN_OUT,
	MB_HOOK_RESID_MID,
	MB_HOOK_LN2_NORMALIZED,
	MB_HOOK_MLP_PRE,
	MB_HOOK_MLP_POST,
	MB_HOOK_MLP_OUT,
	MB_HOOK_RESID_POST,
	MB_HOOK_KIND_COUNT
} mb_hook_kind;

#define MB_HOOK_FIRST_LAYER_KIND MB_HOOK_RESID_PRE
#define MB_HOOK_NAME_MAX 64

typedef struct mb_hook_point {
	mb_hook_kind kind;
	int layer; /* -1 for model-level points */
} mb_hook_point;

/* 1 when kind is a per-layer point. */
int mb_hook_kind_is_layer(mb_hook_kind kind);

/* Parses a TransformerLens name. Errors: unknown name, bad layer number.
 * Whether the layer exists in a model is checked by mb_hook_check. */
int mb_hook_parse(mb_hook_point *out, const char *name, mb_error *err);
/* Writes the name of p into buf (at most MB_HOOK_NAME_MAX bytes). */
void mb_hook_name(char *buf, size_t cap, mb_hook_point p);
/* Checks that p exists in a model of cfg (layer in range, no MLP points on an
 * attention-only model, hook_rot_* only and hook_pos_embed never with rotary
 * positions, no hook_resid_mid with a parallel residual); the error names the
 * hook. */
int mb_hook_check(mb_hook_point p, const mb_engine_config *cfg, mb_error *err);
/* The TransformerLens shape of p for a run of B items of T positions
 * (logits_rows: T, 1 or N per item for the logits point); returns ndim. */
int mb_hook_shape(int64_t shape[4], mb_hook_point p, const mb_engine_config *cfg, int B, int T,
		  int logits_rows);

/* What a hook receives. data is contiguous in shape and writable. */
typedef struct mb_hook_tensor {
	mb_hook_point point;
	float *data;
	int ndim;
	int64_t shape[4];
	size_t numel;
	int batch;              /* B */
	int seq;                /* T */
	const int32_t *lengths; /* (B) */
} mb_hook_tensor;

/* Returns 0, or a negative MB_E* after setting err (the run stops). */
typedef int (*mb_hook_fn)(const mb_hook_tensor *t, void *payload, mb_error *err);

enum {
	MB_HOOK_READONLY = 1, /* the hook promises not to write: no copy back */
};

typedef struct mb_hooks mb_hooks;

int mb_hooks_init(mb_hooks **out, mb_error *err);
void mb_hooks_free(mb_hooks *h);
/* Removes every hook (keeps the allocation). */
void mb_hooks_clear(mb_hooks *h);
/* Adds fn at p; hooks at one point run in the order they were added. */
int mb_hooks_add(mb_hooks *h, mb_hook_point p, mb_hook_fn fn, void *payload, unsigned flags,
		 mb_error *err);
/* Adds a hook by name. */
int mb_hooks_add_name(mb_hooks *h, const char *name, mb_hook_fn fn, void *payload,
		      unsigned flags, mb_error *err);
/* 1 when at least one hook (or cache) observes p. */
int mb_hooks_observes(const mb_hooks *h, mb_hook_point p);
/* Checks every point of h against cfg (mb_hook_check). */
int mb_hooks_check(const mb_hooks *h, const mb_engine_config *cfg, mb_error *err);

/*
 * A cache keeps copies of chosen hook points of a run. Attached to a registry
 * it adds one read-only copy per point, taken at that point's place in the
 * hook order; the engine writes straight into the cache's buffers, which are
 * allocated at the first run and reused (grown when a run is larger).
 */
typedef struct mb_cache mb_cache;

int mb_cache_init(mb_cache **out, mb_error *err);
void mb_cache_free(mb_cache *c);
/* Requests p (duplicates are ignored). */
int mb_cache_add(mb_cache *c, mb_hook_point p, mb_error *err);
int mb_cache_add_name(mb_cache *c, const char *name, mb_error *err);
/* Requests every hook point of a model of cfg, the split inputs and
 * hook_result included when with_expensive is set. */
int mb_cache_add_all(mb_cache *c, const mb_engine_config *cfg, int with_expensive, mb_error *err);
/* Registers the cache's copies in h. */
int mb_cache_attach(mb_cache *c, mb_hooks *h, mb_error *err);
/* The cached tensor of p from the last run, NULL when p is not cached or the
 * run did not reach it. Borrowed; valid until the cache is freed or runs again. */
const mb_hook_tensor *mb_cache_get(const mb_cache *c, mb_hook_point p);
/* Forgets the last run's values (mb_cache_get returns NULL until the next run). */
void mb_cache_reset(mb_cache *c);

#endif
