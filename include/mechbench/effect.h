/*
 * effect.h: the paired-effect layer. Every causal claim of a task has one
 * shape (ARCHITECTURE.md, "Experiments: one shared layer"): a clean forward
 * of a batch, optional source (corrupted) forwards, and intervened arms, each
 * reduced by one metric to a per-item value; the result is the per-item
 * effect arm minus clean, paired, with matched random controls drawn per item
 * from a stream keyed by the item's content key. This module holds that
 * machinery once, so a task file holds its items, its metric and which arms
 * it runs.
 *
 * Shape letters: B batch, T positions, L layers, H heads, Dh d_head, D
 * d_model, G value groups (per-cluster values, e.g. IOI's per-template means).
 *
 * Use:
 *   mb_effect_init(&fx, engine, metric, payload)
 *   mb_effect_cache(fx, point)...          points the clean run keeps (patterns to
 *                                          freeze, resid_pre to restart from, z for
 *                                          sender deltas); mb_effect_cache_restart
 *                                          for every layer's resid_pre and hook_z
 *   mb_effect_clean(fx, &run)              clean forward, metric -> clean values
 *   mb_effect_source(fx, slot, &run2, ...) corrupted forwards, caching chosen points
 *   mb_effect_run_arm(effects, NULL, fx, &arm) each arm: metric(arm) - metric(clean)
 *   mb_effect_head_sweep(...)              one arm per (layer, head), restarting at
 *                                          the head's layer
 * Caching a point only reads it, but an observed point can change what the
 * engine computes in MB_LOGITS_LAST / POSITIONS runs (engine.h, "compute
 * only what is read"): cache what an arm needs, and the same set in every run
 * whose bits are compared.
 *
 * Bits. Arms are engine forwards (batch invariant, thread-count invariant,
 * restarts bitwise equal to full forwards: engine.h, interventions.h); an
 * effect is the double difference metric(arm)[b] - metric(clean)[b]. So an
 * item's effects do not depend on the batch it is in, as long as the metric
 * reads only the item's own logits and every per-item input (masks, values,
 * deltas, control draws) depends only on the item.
 */
#ifndef MECHBENCH_EFFECT_H
#define MECHBENCH_EFFECT_H

#include <stdint.h>

#include <mechbench/engine.h>
#include <mechbench/error.h>
#include <mechbench/hooks.h>
#include <mechbench/interventions.h>
#include <mechbench/rng.h>

/* Source (corrupted) runs an effect keeps at once. */
#define MB_EFFECT_MAX_SOURCES 4

/* Reduces the engine's last run (B items) to out (B), one value per item;
 * payload is the one given to mb_effect_init (the task's tokens, targets,
 * positions). Returns 0 or a negative MB_E* after setting err. */
typedef int (*mb_effect_metric_fn)(double *out, const mb_engine *e, int batch, void *payload,
				   mb_error *err);

typedef struct mb_effect mb_effect;

/* An effect over engine e (borrowed; it runs every forward on it) with one
 * metric for the clean run and every arm (NULL: no arms, only cached clean
 * and source runs, e.g. a head-score analysis). */
int mb_effect_init(mb_effect **out, mb_engine *e, mb_effect_metric_fn metric, void *payload,
		   mb_error *err);
void mb_effect_free(mb_effect *fx);

/* Requests point p in the clean run's cache (before mb_effect_clean). */
int mb_effect_cache(mb_effect *fx, mb_hook_point p, mb_error *err);
/* Requests blocks.{l}.hook_resid_pre and attn.hook_z of every layer: what
 * arms that restart at a layer (start_layer, head sweeps) read. */
int mb_effect_cache_restart(mb_effect *fx, mb_error *err);

/* The clean forward of run (its hooks are replaced by the cache; tokens,
 * lengths and logits mode are kept, borrowed until the effect is freed or
 * runs clean again), then the metric. */
int mb_effect_clean(mb_effect *fx, const mb_run *run, mb_error *err);
/* The clean run's metric values (B) and its cached tensors (NULL when p was
 * not requested). Borrowed, valid until the next mb_effect_clean. */
const double *mb_effect_clean_values(const mb_effect *fx);
const mb_hook_tensor *mb_effect_clean_get(const mb_effect *fx, mb_hook_point p);

/* A source forward into slot (0 .. MB_EFFECT_MAX_SOURCES - 1): run (same
 * batch as the clean run; its hooks replaced) caching points[0..n_points).
 * out_values (B), when non-NULL, gets the metric on it (it needs logits). */
int mb_effect_source(mb_effect *fx, int slot, const mb_run *run, const mb_hook_point *points,
		     int n_points, double *out_values, mb_error *err);
const mb_hook_tensor *mb_effect_source_get(const mb_effect *fx, int slot, mb_hook_point p);

/* Per-item head interventions at attn.hook_z: item b's head (l, h) is set
 * where mask[(b L + l) H + h] is 1, at every valid position, to
 *   - values[((g L + l) H + h) Dh ..] with g = group[b] (group NULL: g = 0)
 *     when values is set (mean ablation; per-cluster means when G > 1);
 *   - the source slot's hook_z of item b at the same position when source
 *     >= 0 (activation patching; that slot must have cached hook_z there);
 *   - 0 otherwise (zero ablation).
 * Its hook sits only at layers where some item's mask is set, and the arm's
 * run sets exact_tail (engine.h): logits at the last position then have the
 * bits of a full last layer, as in a clean run that caches hook_z there. */
typedef struct mb_effect_heads {
	const uint8_t *mask;   /* (B, L, H) */
	const float *values;   /* (G, L, H, Dh) or NULL */
	const int32_t *group;  /* (B) in [0, G) or NULL */
	int source;            /* source slot, or -1 */
} mb_effect_heads;

/* Path patching into one receiver (mb_interp_path_patch_delta): the run
 * restarts at `layer` from the clean cache's resid_pre there (cache it),
 * with only the receiver head's q (via 0), k (1) or v (2) input changed by
 * delta (B, T, D): the senders' output change (mb_interp_head_delta_*). */
typedef struct mb_effect_path {
	int layer, head, via;
	const float *delta;
} mb_effect_path;

/* A task's own hook for an arm (hooks.h): what no intervention spec says,
 * e.g. an SAE spliced in at a residual point with one latent ablated or
 * clamped and the error term kept (the hook adds (decode(f') - decode(f))). */
typedef struct mb_effect_hook {
	mb_hook_point point;
	mb_hook_fn fn;
	void *payload;
} mb_effect_hook;

/* One intervened arm. Interventions are attached in this order: frozen
 * patterns, iv[0..n_iv), heads, hooks[0..n_hooks). A path arm takes none of
 * the others. */
typedef struct mb_effect_arm {
	const mb_iv_spec *iv;         /* (n_iv) batch-wide interventions (interventions.h) */
	int n_iv;
	int freeze_patterns;          /* 1: every layer's hook_pattern from the clean cache */
	const mb_effect_heads *heads; /* per-item head interventions, or NULL */
	const mb_effect_hook *hooks;  /* (n_hooks) the task's own hooks */
	int n_hooks;
	int start_layer;              /* > 0: restart there from the clean resid_pre ... */
	int start_z;                  /* ... and hook_z (1) when nothing before it changes */
	const mb_effect_path *path;   /* a path-patching arm, or NULL */
	mb_engine *engine;            /* NULL: the clean run's engine; else another engine of
					 the same shape (an edited model: ROME's rank-one
					 update, a random update of the same norm) */
} mb_effect_arm;

/* Runs one arm on the clean run's batch: out (B) = metric(arm) -
 * metric(clean) per item; out_values (B), when non-NULL, gets metric(arm).
 * Errors: a missing cached point (named), bad heads/path (named). */
int mb_effect_run_arm(double *out, double *out_values, mb_effect *fx, const mb_effect_arm *arm,
		  mb_error *err);

/* One arm per head (l, h) with heads[l H + h] set (every head when heads is
 * NULL), in (l, h) order: the head intervened for every item as `how` says
 * (its mask is ignored: the sweep sets (l, h) for all items), restarting at
 * layer l from the clean cache when restart is set (mb_effect_cache_restart
 * first; bitwise the same as full forwards). out (L, H, B): the effect of
 * head (l, h) on item b at ((l H + h) B + b); untouched for skipped heads. */
int mb_effect_head_sweep(double *out, mb_effect *fx, const uint8_t *heads,
			 const mb_effect_heads *how, int restart, mb_error *err);

/* One arm per head (l, h) as mb_effect_head_sweep, patching head h's query,
 * key or value (kind MB_HOOK_Q, _K or _V) at layer l, every position, from
 * source slot `source` (which cached that kind at every layer): bitwise the
 * arm {iv: MB_IV_PATCH of (kind, l) unit h from the source, start_layer l}.
 * Below the last layer, without rotary positions, and with the clean run's
 * resid_pre, hook_z, hook_q, hook_k and hook_v of layer l cached
 * (mb_effect_cache_restart and mb_effect_cache), that arm starts at layer
 * l's hook_z instead: the clean z with head h's recomputed from the patched
 * q, k, v (mb_engine_head_attention), so the layer's q/k/v projection and
 * the other heads' attention are not rerun; else it runs the iv arm. out
 * (L, H, B), untouched for skipped heads. Errors: a missing source (named). */
int mb_effect_head_input_sweep(double *out, mb_effect *fx, const uint8_t *heads,
			       mb_hook_kind kind, int source, mb_error *err);

/* Runs n sequences of seq tokens (tokens (n, seq), every position valid)
 * through e in batches of up to `batch` items (e's max_batch at least) and
 * keeps each sequence i's last position: logits[i n_logits ..] gets its
 * first n_logits logits (logits NULL: none), acts[i W ..] its activation at
 * `point` (W = the point's width; point NULL: none; a read-only cache, so
 * the forward is the one the point's observation implies). What a task
 * needs from a grid of inputs (modadd's P x P pairs) or a corpus (an SAE's
 * training activations, ROME's key statistics). Errors: a logit that is not
 * finite (naming the sequence and the logit), the engine's. */
int mb_effect_collect_last(float *acts, float *logits, int n_logits, mb_engine *e,
			   const int32_t *tokens, size_t n, int seq, int batch,
			   const mb_hook_point *point, mb_error *err);

/*
 * Matched random controls. Each is drawn from r, which the caller starts at
 * the item's own stream, mb_rng_init_named(r, seed, "<task>/<control>",
 * mb_item_key_index(item key)) (task.h), so a draw depends only on the item's
 * content, never on its batch or position. Frequencies: mb_fourier_control_
 * frequencies (fourier.h).
 */

/* Heads matched by layer: for j = 0..k-1 one head of layer layer_of[j],
 * uniform over that layer's heads with exclude[l H + h] == 0 (NULL: none
 * excluded) and not drawn yet: pick = mb_rng_range(r, available), the
 * pick-th such head in ascending h. Sets mask[l H + h] (L, H) for each draw
 * (mask is not cleared first). The caller ensures each layer has enough. */
void mb_effect_control_heads(uint8_t *mask, mb_rng *r, int n_head, const int *layer_of, int k,
			     const uint8_t *exclude);

/* A random direction of a given norm: out (D) = norm g / ||g|| with g
 * standard normal (mb_rng_normal, D draws in order; ||g|| in double). */
void mb_effect_control_direction(float *out, mb_rng *r, int D, double norm);

#endif
