/*
 * interventions.h: causal interventions built on hooks: zero, mean and
 * resample ablation of heads, neurons and residual directions; activation
 * patching from a cached source run; pattern freezing (pattern-preserving
 * ablation); path patching; steering; and sweeps that restart the forward at
 * the intervened layer.
 *
 * Shape letters: B batch, T positions, H heads, Dh d_head, D d_model,
 * M d_mlp, W the width of one unit (below), Bs items of a source batch.
 *
 * Units. An intervention acts at one hook point on one unit of each position:
 * - (B, T, H, X) points (hook_q/k/v/z (X = Dh), hook_result and
 *   hook_{q,k,v}_input (X = D)): unit h is head h's vector (W = X); unit -1 is
 *   every head together (W = H X).
 * - (B, T, X) points (residual points X = D, mlp.hook_pre/post X = M): unit n
 *   is element n (a neuron, W = 1); unit -1 is the whole vector (W = X).
 * - hook_pattern / hook_attn_scores (B, H, T, T): unit h is head h's row of
 *   key weights at each query position (W = T); unit -1 is every head.
 * Interventions apply at every valid position (t < len[b]) of every item, or
 * only at the listed positions.
 */
#ifndef MECHBENCH_INTERVENTIONS_H
#define MECHBENCH_INTERVENTIONS_H

#include <stdint.h>

#include <mechbench/engine.h>
#include <mechbench/error.h>
#include <mechbench/hooks.h>
#include <mechbench/rng.h>

typedef enum mb_iv_op {
	MB_IV_ZERO,      /* x = 0                                   (zero ablation) */
	MB_IV_SET,       /* x = value, the same at every position   (mean ablation) */
	MB_IV_PATCH,     /* x = source[item map(b), t]              (activation patching,
							       resample ablation) */
	MB_IV_ADD,       /* x += alpha value                        (steering) */
	MB_IV_DIR_ZERO,  /* x -= (x.u) u / (u.u), u = value         (direction zero ablation) */
	MB_IV_DIR_SET,   /* x += (alpha - x.u) u / (u.u)            (direction mean ablation,
							       alpha = the mean projection) */
	MB_IV_DIR_PATCH, /* x += (s.u - x.u) u / (u.u), s = source  (direction resample) */
} mb_iv_op;

typedef struct mb_iv_spec {
	mb_hook_point point;
	int unit;                     /* head, neuron, or -1 (see Units) */
	mb_iv_op op;
	const float *value;           /* (W) for SET and ADD; (W) direction u for DIR_*; copied */
	int n_value;                  /* W of value */
	float alpha;                  /* ADD: scale; DIR_SET: target projection */
	const mb_hook_tensor *source; /* PATCH, DIR_PATCH: a tensor of the same point from
					 another run (Bs, T, ...), or the unit's slice
					 (Bs, T, W); borrowed, must outlive the runs */
	const int32_t *source_item;   /* (B) source item for each item; NULL = the same index;
					 copied (n_items entries) */
	int n_items;                  /* entries of source_item */
	const int32_t *positions;     /* (n_positions) positions, NULL = every valid one; copied */
	int n_positions;
} mb_iv_spec;

/* A set of interventions: owns copies of the specs' arrays and registers one
 * hook per intervention, in the order added. */
typedef struct mb_iv mb_iv;

int mb_iv_init(mb_iv **out, mb_error *err);
void mb_iv_free(mb_iv *iv);
/* Forgets every intervention (hooks already attached keep pointing at freed
 * payloads: clear the registry too). */
void mb_iv_clear(mb_iv *iv);
/* Checks spec against cfg (hook exists, unit in range, value width, op needs
 * a value or a source) and adds it. Errors name the hook. */
int mb_iv_add(mb_iv *iv, const mb_engine_config *cfg, const mb_iv_spec *spec, mb_error *err);
/* Registers every intervention's hook in h. */
int mb_iv_attach(mb_iv *iv, mb_hooks *h, mb_error *err);

/* Shorthands over mb_iv_add. */
int mb_iv_ablate_head(mb_iv *iv, const mb_engine_config *cfg, int layer, int head,
		      const float *mean /* (Dh) or NULL = zero */, mb_error *err);
int mb_iv_ablate_neuron(mb_iv *iv, const mb_engine_config *cfg, int layer, int neuron,
			const float *mean /* (1) or NULL = zero */, mb_error *err);
int mb_iv_patch_head(mb_iv *iv, const mb_engine_config *cfg, mb_hook_point point, int head,
		     const mb_hook_tensor *source, const int32_t *source_item, int n_items,
		     mb_error *err);
int mb_iv_steer(mb_iv *iv, const mb_engine_config *cfg, mb_hook_point point,
		const float *direction /* (D) */, float alpha, mb_error *err);
/* Overwrites hook_pattern of every layer (all heads) with source's cache of
 * the same points (a clean run): with ablations of chosen heads added after
 * it, this is pattern-preserving ablation. */
int mb_iv_freeze_patterns(mb_iv *iv, const mb_engine_config *cfg, const mb_cache *source,
			  mb_error *err);

/* Mean of one unit of t over the valid positions of every item (summed in
 * double, in (b, t) order): out (W). The value for mean ablation. */
int mb_iv_unit_mean(float *out, const mb_hook_tensor *t, int unit, mb_error *err);
/* Accumulates whole rows of t for means over several runs (mean ablation
 * values, per-group means such as IOI's per-template ones): W = t's width
 * per position (H Dh for hook_z; D for residual points); for every item b
 * and valid position, in (b, t, i) order, sum[g W + i] += row[i] with g =
 * group[b] (group NULL: g = 0), and count[g] += 1. Not for attention
 * matrices. The mean is sum / count (in double), rounded to float. */
void mb_iv_sum_rows(double *sum, long *count, const mb_hook_tensor *t, const int32_t *group);

/* A resample map: out[b] in [0, Bs), uniformly at random from stream r,
 * never b itself when avoid_self and Bs > 1 (mb_iv_resample_pick per b). */
void mb_iv_resample_map(int32_t *out, int B, int Bs, int avoid_self, mb_rng *r);
/* One item's source in [0, Bs) from r, never self when avoid_self, Bs > 1
 * and self < Bs: the per-item form, for a draw from the item's own stream
 * (keyed by its content key) so that it does not depend on the batch. */
int32_t mb_iv_resample_pick(mb_rng *r, int self, int Bs, int avoid_self);

/*
 * Path patching, sender (ls, hs) to receiver (lr, hr) through its input X in
 * {0 q, 1 k, 2 v}, ls < lr: delta = source hook_result[ls][:, :, hs] - clean
 * hook_result[ls][:, :, hs] (both unintervened runs); then the clean run is
 * recomputed from layer lr (cached clean resid_pre, bitwise the clean run up
 * to there) with only blocks.lr.hook_X_input[:, :, hr] = clean resid_pre[lr] +
 * delta; later layers are recomputed normally. clean and source have the same
 * batch, seq and lengths; the clean run's logits mode is used. The patched
 * logits are left in e (mb_engine_logits_row). The sender's outputs are
 * computed from cached hook_z (z_h W_O[h]), so the clean run is not perturbed
 * by observing hook_result. The runs' own hooks (clean->hooks) are ignored.
 */
typedef struct mb_path {
	int sender_layer, sender_head;
	int receiver_layer, receiver_head;
	int via; /* 0 q, 1 k, 2 v */
} mb_path;

int mb_interp_path_patch(mb_engine *e, const mb_run *clean, const mb_run *source,
			 const mb_path *path, mb_error *err);

/*
 * Path patching from a sender delta instead of a source run: the clean run
 * is recomputed from the receiver's layer (resid_pre: the clean run's cached
 * blocks.{layer}.hook_resid_pre, (B, T, D)) with only
 * blocks.{layer}.hook_X_input[:, :, head] = resid_pre + delta, X = q, k, v
 * for via 0, 1, 2. delta (B, T, D) is the change of the senders' output at
 * every valid position (mb_interp_head_delta_*; several senders' deltas may
 * be summed by the caller). The clean run's tokens, lengths and logits mode
 * are used, its hooks ignored; the logits are left in e. This is what
 * mb_interp_path_patch runs after computing its delta, and what a task uses
 * when the "source" is an ablation rather than another prompt.
 */
int mb_interp_path_patch_delta(mb_engine *e, const mb_run *clean, const mb_hook_tensor *resid_pre,
			       const float *delta, int layer, int head, int via, mb_error *err);

/* Sender deltas, out (B, T, D) at the valid positions of z (0 elsewhere),
 * for head `head` of layer `layer` from hook_z tensors (B, T, H, Dh):
 *   _patch: source - clean output, each z_h W_O[h] summed in double over Dh
 *           and rounded to float, then differenced (mb_interp_path_patch);
 *   _set:   (value - z_clean) W_O[h], value (Dh), summed in float over Dh in
 *           order (the ablated-minus-clean output: mean or zero ablation). */
void mb_interp_head_delta_patch(float *out, const mb_engine_config *c, const mb_engine_weights *w,
				int layer, int head, const mb_hook_tensor *z_clean,
				const mb_hook_tensor *z_source);
void mb_interp_head_delta_set(float *out, const mb_engine_config *c, const mb_engine_weights *w,
			      int layer, int head, const mb_hook_tensor *z_clean,
			      const float *value);

/*
 * Zero- or mean-ablates each head in turn (those set in heads, (L, H), or all
 * when heads is NULL) on the run `clean` and calls fn
 * after each ablated forward (the logits are in e). With restart set, a clean
 * run first caches every layer's resid_pre and hook_z, and each ablation
 * starts at its own layer from those (bitwise the same logits as a full
 * forward with the same ablation, at about half the cost); without it every
 * ablation is a full forward. Mean ablation uses each head's mean hook_z over
 * the clean run's valid positions.
 */
typedef int (*mb_sweep_fn)(const mb_engine *e, int layer, int head, void *payload, mb_error *err);

int mb_interp_head_sweep(mb_engine *e, const mb_run *clean, const uint8_t *heads, int mean,
			 int restart, mb_sweep_fn fn, void *payload, mb_error *err);

#endif
