/*
 * backward.h: reverse-mode gradients through the engine's forward.
 *
 * Shape letters: B batch, T positions, D d_model, H heads, Dh d_head, M d_mlp,
 * V vocab, N logit rows per item of the run (T, 1 or n_positions).
 *
 * The backward reads the activations the engine kept in its last forward
 * (mb_engine_opts.keep_activations must be set) and propagates a gradient of
 * the logits of that run back through the unembedding, LN_f, every block
 * (MLP with each activation, LayerNorm or none, causal attention) and the
 * embeddings. Two uses:
 *  - parameter gradients (training): every parameter's gradient in the
 *    engine's weights layout (engine.h mb_engine_weights_layout);
 *  - hook gradients (attribution patching): dM/d(hook value) at any hook point
 *    of the model, delivered to callbacks registered in an mb_hooks registry
 *    (hooks.h) in TransformerLens shape, exactly like forward hooks, so an
 *    mb_cache attached to that registry caches gradients.
 * The scalar M is given by its gradient with respect to the logits (e.g. the
 * logit difference: +1 and -1 entries), or is the mean cross-entropy computed
 * here.
 *
 * Semantics. Gradients are total derivatives through everything downstream of
 * the point (hook_embed's equals blocks.0.hook_resid_pre's). Padded positions
 * (t >= len[b]) get exact zeros. hook_pattern and hook_attn_scores gradients
 * are given for unmasked entries (key <= query) and are 0 above the diagonal.
 * Forward hooks that overwrote an activation are not differentiated: the
 * backward uses the stored (overwritten) values as if they had been computed,
 * so gradients are exact for un-intervened runs (what training and
 * attribution patching use). Gradient hooks may read the gradient; writes are
 * ignored.
 *
 * Determinism. Every GEMM is a single-threaded call into the GEMM layer
 * (gemm.h) over a partition of its output that does not depend on the thread
 * count; every reduction
 * over rows (bias gradients, LayerNorm weight gradients, embedding
 * scatter-adds) runs over rows in index order for a fixed set of columns per
 * task. The parameter gradients are bitwise the same on 1 and 2 threads.
 */
#ifndef MECHBENCH_BACKWARD_H
#define MECHBENCH_BACKWARD_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/engine.h>
#include <mechbench/error.h>
#include <mechbench/hooks.h>

typedef struct mb_backward mb_backward;

/* Creates the backward state of engine e (borrowed; it must outlive the
 * backward and have been created with keep_activations) and allocates its
 * scratch for e's largest run. */
int mb_backward_init(mb_backward **out, mb_engine *e, mb_error *err);
void mb_backward_free(mb_backward *bw);

/*
 * Mean cross-entropy of the last run's logits against targets (B, N) (N the
 * run's logit rows per item; -1 = no loss at that row; rows of padded
 * positions must be -1), in double: loss = mean over the counted rows of
 * logsumexp(logits) - logits[target]. Writes the loss to *out_loss and its
 * gradient with respect to the logits into the backward's dlogits, ready
 * for mb_backward_run. When correct is not NULL it receives the number of
 * counted rows whose argmax (first maximum) is the target. Errors: no counted
 * row, a target out of [0, V), no logits in the last run.
 */
int mb_backward_xent(mb_backward *bw, const int32_t *targets, double *out_loss, int64_t *correct,
		     mb_error *err);

/* Sets dM/dlogits from a (B, N, V) tensor in the last run's logits layout
 * (rows of padded positions are ignored). */
int mb_backward_set_dlogits(mb_backward *bw, const float *dlogits, mb_error *err);

/*
 * Propagates the current dlogits back through the last run. run must be the
 * same mb_run (tokens, lengths) as the last forward. When grads is not NULL
 * its tensors (engine layout over a caller-owned block of
 * mb_engine_weights_layout floats; tied models: unembed == wte) are
 * OVERWRITTEN with the parameter gradients (tensors of layers below the run's
 * start_layer and the embeddings, when start_layer > 0, are set to zero).
 * When grad_hooks is not NULL each of its callbacks receives the gradient at
 * its point, in reverse forward order (logits first). Errors: the engine kept
 * no activations, a hook point the model lacks, a hook before start_layer,
 * a callback's error (prefixed with the hook's name).
 */
int mb_backward_run(mb_backward *bw, const mb_run *run, const mb_engine_weights *grads,
		    const mb_hooks *grad_hooks, mb_error *err);

#endif
