/*
 * edit.h: locating and editing factual associations: causal tracing and ROME
 * (Meng, Bau, Andonian, Belinkov 2022, "Locating and Editing Factual
 * Associations in GPT", NeurIPS; sections 2 and 3 and appendix B), on any
 * model the engine runs.
 *
 * Shape letters: B batch, T positions, D d_model, M d_mlp, V vocab, L layers,
 * S noise samples, K prefixes (contexts), N corpus sequences.
 *
 * Everything here works on token ids: the caller tokenizes (src/cli/
 * cmd_edit.c) and says where the subject's tokens are.
 *
 * Causal tracing (sec. 2.1). An item is a prompt, the span of its subject's
 * tokens and the answer token o. Three runs: clean; corrupted, where every
 * subject token's embedding (hook_embed) gets Gaussian noise of SD `noise`
 * (the paper: 3 x the SD of the embeddings), S noise samples per item; and
 * corrupted-with-restoration, where one hidden state of the clean run is put
 * back at one position in every noise sample. The metric is P(o) at the last
 * position, averaged over the S samples; the indirect effect of a state is
 * P_restored(o) - P_corrupted(o). As in the authors' code
 * (experiments/causal_trace.py, trace_with_patch) the clean run is item 0 of
 * the batch and the S noisy copies are items 1..S, so the restored value is
 * the clean item's value at the same hook in the same forward.
 *
 * ROME (sec. 3, appendix B). The MLP of layer l is a key-value memory: its
 * key k is blocks.{l}.mlp.hook_post (M), its value blocks.{l}.hook_mlp_out
 * (D) = k W_proj + b_proj. An edit (subject s, prompt p, new object o*)
 * changes W_proj by a rank-one update so that the key k* of s maps to a
 * value v* that makes the model say o*:
 *   C    = E[k k^T] over the tokens of a corpus (uncentred second moment);
 *   k*   = mean of k at the subject's last token over the prompt preceded by
 *          each of K context prefixes (the first usually empty);
 *   u    = C^-1 k* / ||C^-1 k*||  (the left vector);
 *   v*   = v0 + delta, delta minimising, by Adam from 0, with delta added to
 *          hook_mlp_out at the subject's last token of every prompt,
 *            NLL(o* | prefix_i + p) averaged over target tokens and prefixes
 *          + kl_factor KL(P(. | kl prompt, delta) || P(. | kl prompt, 0))
 *            (at the kl prompt's subject's last token)
 *          + weight_decay ||delta|| / ||v0||^2,
 *          with ||delta|| clamped to clamp ||v0|| after each step; v0 is the
 *          value at the bare prompt (prefix 0);
 *   r    = (v* - v(p)) / (k(p) . u), k(p), v(p) at the bare prompt;
 *   W_proj += u r^T.
 * The objective, its constants and the stopping rule are those of the
 * authors' reference code (rome/compute_v.py, compute_u.py, hparams/ROME/
 * gpt2-xl.json): steps 20 (the last computes the loss only), lr 0.5,
 * weight_decay 0.5 on the norm (not its square), clamp 4, kl_factor 0.0625,
 * stop when the loss < 0.05. The denominator uses the bare prompt's key, not
 * k*, as that code does.
 *
 * Determinism: every forward is the engine's (batch and thread-count
 * invariant); sums over items, positions and tokens run in a fixed order
 * outside parallel regions; the noise and the prefixes are Philox draws from
 * named streams. Results are bitwise the same on any thread count.
 */
#ifndef MECHBENCH_EDIT_H
#define MECHBENCH_EDIT_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/engine.h>
#include <mechbench/error.h>
#include <mechbench/rng.h>
#include <mechbench/tokenizer.h>

/* ---- Prompts with a subject ------------------------------------------------ */

/* Tokenizes tmpl (exactly one "{}") with subject put in: *tok (malloc'd) the
 * whole text, *n its length, and the subject's tokens [*subj_first,
 * *subj_last] (subj_first may be NULL). The span is where the tokens of the
 * text before the subject end and where those of the text up to its end end;
 * both must be prefixes of the whole text's tokens and the subject must have
 * at least one token. Errors (MB_EINVALID, the tokenizer's) say what is wrong
 * with the template; the caller names where it came from. */
int mb_edit_encode(int32_t **tok, int *n, int *subj_first, int *subj_last, const mb_tokenizer *t,
		   const char *tmpl, const char *subject, mb_error *err);

/* ---- Causal tracing ------------------------------------------------------- */

typedef enum mb_trace_kind {
	MB_TRACE_RESID = 0, /* blocks.{l}.hook_resid_post: the hidden state after layer l */
	MB_TRACE_MLP,       /* blocks.{j}.hook_mlp_out for j in the window around l */
	MB_TRACE_ATTN,      /* blocks.{j}.hook_attn_out for j in the window around l */
} mb_trace_kind;

/* "resid", "mlp", "attn". */
const char *mb_trace_kind_name(mb_trace_kind kind);

typedef struct mb_trace_item {
	const int32_t *tokens; /* (T) the prompt */
	int len;               /* T */
	int subj_first;        /* the subject's tokens are [subj_first, subj_last] */
	int subj_last;
	int32_t target;        /* o: the metric is P(o) at position T-1 */
	uint64_t stream;       /* index of the item's noise stream "trace/noise" (its content
				  key's mb_item_key_index), so the noise depends only on the item */
} mb_trace_item;

typedef struct mb_trace_opts {
	uint64_t seed;
	double noise; /* SD of the noise added to each coordinate of a subject embedding */
	int samples;  /* S noisy copies per item (the paper: 10) */
	int window;   /* MLP and ATTN: layers max(0, l - w/2) .. min(L, l + w - w/2) - 1 are
			 restored together (the paper: 10); RESID ignores it (one layer) */
} mb_trace_opts;

/* The SD of the token embeddings (wte) over the rows `tokens` (n of them),
 * or over every row when tokens is NULL: sqrt of the mean squared deviation
 * from the mean, in double, over all coordinates of those rows. The paper's
 * noise is 3 x this over its subjects' tokens. */
double mb_trace_embed_sd(const mb_engine_config *cfg, const mb_engine_weights *w,
			 const int32_t *tokens, size_t n);

/* Traces one item: p_clean and p_corrupt get P(o) of the clean run and the
 * mean over the S noisy copies; restored (L, T) gets, at [l T + t], the mean
 * P(o) over the noisy copies with `kind` of layer l (its window) restored at
 * position t. The noise of copy s (1..S) at subject position t, coordinate
 * d, is the ((s-1) n_subj + (t - subj_first)) D + d-th normal draw of stream
 * ("trace/noise", it->stream) under o->seed. e must allow batches of S + 1
 * and T positions. Errors: a bad item (span, target, length; named), the
 * engine's. L T + 2 forwards of S + 1 items. */
int mb_trace_run(double *restored, double *p_clean, double *p_corrupt, mb_engine *e,
		 const mb_trace_item *it, mb_trace_kind kind, const mb_trace_opts *o,
		 mb_error *err);

/* The paper's position groups (fig. 2): a position t of an item falls in
 * FIRST_SUBJ (t = subj_first), MID_SUBJ (subj_first < t < subj_last),
 * LAST_SUBJ (t = subj_last; a one-token subject is in FIRST_SUBJ and
 * LAST_SUBJ), FIRST_AFTER (t = subj_last + 1 < T - 1), FURTHER (subj_last + 1
 * < t < T - 1) and LAST (t = T - 1, unless it is a subject token). */
enum {
	MB_TRACE_POS_FIRST_SUBJ = 0,
	MB_TRACE_POS_MID_SUBJ,
	MB_TRACE_POS_LAST_SUBJ,
	MB_TRACE_POS_FIRST_AFTER,
	MB_TRACE_POS_FURTHER,
	MB_TRACE_POS_LAST,
	MB_TRACE_POS_COUNT
};

/* "first_subject", "middle_subject", "last_subject", "first_subsequent",
 * "further", "last". */
const char *mb_trace_pos_name(int group);

/* The indirect effects of one item by position group: out (L, 6) at
 * [l 6 + g] = mean over the item's positions t in group g of restored[l T
 * + t] - p_corrupt (summed in double in t order), NaN when the group is
 * empty for this item. */
void mb_trace_groups(double *out, const double *restored, double p_corrupt, int n_layer,
		     const mb_trace_item *it);

/* ---- ROME ------------------------------------------------------------------ */

/* The key second moment of one layer: C = (1/N) sum over the corpus's N token
 * positions of k k^T, k = blocks.{layer}.mlp.hook_post. */
typedef struct mb_rome_stats {
	int layer;
	int d_mlp;     /* M */
	int64_t tokens; /* N */
	float *mom2;   /* (M, M) owned, symmetric */
} mb_rome_stats;

/* Computes C over n sequences of seq tokens (tokens (n, seq), every position
 * valid) with engine e, `batch` sequences per forward (e's max_batch at
 * least; no logits are computed). Each sequence's k^T k is one float GEMM (its positions in order),
 * summed over sequences in order in double, divided by N in double and
 * rounded to float, so C does not depend on e's batch size or the thread
 * count. Errors: an attention-only model, a layer out of range, no tokens,
 * the engine's. */
int mb_rome_stats_compute(mb_rome_stats *out, mb_engine *e, int layer, const int32_t *tokens,
			  size_t n, int seq, int batch, mb_error *err);
void mb_rome_stats_dispose(mb_rome_stats *s);

/* One edit request, in tokens. */
typedef struct mb_rome_request {
	const int32_t *prompt;    /* (n_prompt) the prompt with the subject in it, up to
				     where the object would follow */
	int n_prompt;
	int subj_last;            /* position of the subject's last token in prompt */
	const int32_t *target;    /* (n_target) the new object's tokens */
	int n_target;
	const int32_t *kl_prompt; /* (n_kl) the essence prompt ("{} is a" with the subject) */
	int n_kl;
	int kl_subj_last;         /* position of the subject's last token in kl_prompt */
} mb_rome_request;

/* A context prefix put before the prompt (n = 0: the bare prompt). */
typedef struct mb_rome_prefix {
	const int32_t *tokens;
	int n;
} mb_rome_prefix;

typedef struct mb_rome_params {
	int layer;           /* l: the MLP edited */
	int steps;           /* Adam iterations (the last only evaluates): 20 */
	double lr;           /* 0.5 */
	double weight_decay; /* 0.5 */
	double clamp;        /* 4: ||delta|| <= clamp ||v0|| */
	double kl_factor;    /* 0.0625 */
	double stop_loss;    /* 0.05 */
} mb_rome_params;

/* The published hyperparameters above, at layer `layer`. */
void mb_rome_params_default(mb_rome_params *p, int layer);

/* What one edit computed. u, r are owned (free with mb_rome_result_dispose). */
typedef struct mb_rome_result {
	float *kstar;     /* (M) k* */
	float *u;         /* (M) left vector */
	float *r;         /* (D) right vector */
	float *v0;        /* (D) the value at the bare prompt before the edit (v0) */
	float *vstar;     /* (D) v* = v0 + delta */
	int steps_run;    /* loss evaluations made (<= steps) */
	double loss[3];   /* the last evaluation's NLL, KL (times kl_factor) and weight decay */
	double loss_first; /* the first evaluation's total loss */
	double p_target;  /* exp(-NLL) of the last evaluation: mean P(o*) per token */
} mb_rome_result;

void mb_rome_result_dispose(mb_rome_result *res);

/* k* (M): the mean over the K prefixes of k at the subject's last token of
 * prefix_i + prompt (one batched forward; the mean summed in double in
 * prefix order). e must allow K items of the longest context. */
int mb_rome_key(float *kstar, mb_engine *e, const mb_rome_request *req,
		const mb_rome_prefix *prefixes, int n_prefix, int layer, mb_error *err);

/* u = C^-1 k / ||C^-1 k|| (M), C^-1 k by Cholesky in double. Errors: C not
 * positive definite (too few tokens for M keys: say how many). */
int mb_rome_left(float *u, const mb_rome_stats *s, const float *k, mb_error *err);

/* The whole of one edit on e's current weights (not changed): k*, u, the v*
 * optimisation over the rewriting prompts prefix_i + prompt + target[0..n-1)
 * and the kl prompt, and r. e must have been made with keep_activations and
 * allow K + 1 items of the longest rewriting prompt. Errors: the last layer
 * (its MLP output at the subject cannot reach the later positions), an empty
 * target, a subject position outside its prompt, a token id >= V, stats of
 * another layer or width, the engine's. */
int mb_rome_compute(mb_rome_result *out, mb_engine *e, const mb_rome_stats *s,
		    const mb_rome_request *req, const mb_rome_prefix *prefixes, int n_prefix,
		    const mb_rome_params *p, mb_error *err);

/* W_proj[layer] += u r^T (w in the engine layout of cfg; float adds in
 * (i, j) order). Engines over w see the edit at their next forward. */
void mb_rome_apply(const mb_engine_config *cfg, mb_engine_weights *w, int layer, const float *u,
		   const float *r);

/* The matched control of an edit: a rank-one update u' r'^T of the same
 * Frobenius norm as u r^T (||u|| ||r||) in a random direction, so that the
 * collateral effects of an edit can be told from those of any change of its
 * size (apply it with mb_rome_apply). u' (M) and r' (D) are standard normal
 * draws from rng (M, then D), scaled to ||u'|| = 1 and ||r'|| = ||u|| ||r||
 * (norms in double). */
void mb_rome_control(float *u_ctl, float *r_ctl, const float *u, const float *r, int M, int D,
		     mb_rng *rng);

/* The same with the norm given: ||u'|| = 1, ||r'|| = target (the control of
 * an update that is not one u r^T, such as one layer's share of a MEMIT
 * edit: target its Frobenius norm). mb_rome_control is this with target =
 * ||u|| ||r|| (in double). */
void mb_rome_control_norm(float *u_ctl, float *r_ctl, double target, int M, int D, mb_rng *rng);

/* n prefixes of len tokens each, sampled from e's model as the paper's
 * contexts are (its code: top-k sampling with k = 5 after <|endoftext|>):
 * prefix i starts with `first` (or, when first < 0, a token drawn uniformly),
 * then each next token is drawn from the softmax of the top_k largest last
 * logits (ties: lower id first), from stream ("rome/prefix", i) under seed.
 * out (n, len). e must allow n items of len positions. */
int mb_rome_prefixes(int32_t *out, mb_engine *e, int n, int len, int32_t first, int top_k,
		     uint64_t seed, mb_error *err);

/* ---- MEMIT ------------------------------------------------------------------
 *
 * MEMIT (Meng, Sen Sharma, Andonian, Belinkov, Bau 2023, "Mass-Editing Memory
 * in a Transformer", ICLR; sec. 4, alg. 1; the authors' memit/memit_main.py,
 * compute_z.py, compute_ks.py, hparams/MEMIT/gpt2-xl.json) writes a batch of
 * edits into the MLPs of a range of layers R = l_1 < ... < l_k:
 *   z_j  = h_j + delta_j: the hidden state after the last layer L = l_k at
 *          request j's subject (blocks.{L}.hook_resid_post), delta_j by the
 *          same optimisation as ROME's v* (clamp 0.75 as published);
 *   then for each l_i in order, on the weights edited so far:
 *   k_j  = mean of the bare prompt's key and the mean key over the other
 *          prefixes (a mean over context kinds, as compute_ks takes it);
 *   r_j  = (z_j - h_j(current)) / (k - i + 1)   (i counted from 1);
 *   W_proj[l_i] += sum_j (lambda C_{l_i} + K K^T)^-1 k_j r_j^T, in double
 *          (lambda: mom2_weight, 20000), the update rounded to float and added.
 */

#define MB_MEMIT_MAX_LAYERS 64

typedef struct mb_memit_params {
	int layers[MB_MEMIT_MAX_LAYERS]; /* R, ascending; the last is L */
	int n_layers;
	mb_rome_params z;                /* the z optimisation (its layer is unused) */
	double mom2_weight;              /* lambda */
} mb_memit_params;

/* The published hyperparameters over layers[0..n). */
void mb_memit_params_default(mb_memit_params *p, const int *layers, int n);

/* Edits w (the weights e runs on, engine layout) with the n requests at
 * once. stats[i] is C of layers[i]. z (n, D), when not NULL, gets each z_j.
 * e must have been made with keep_activations and allow K + 1 items of the
 * longest rewriting prompt. Errors: L the model's last layer, layers not
 * ascending or out of range,
 * statistics of another layer, a bad request (named by its index), C not
 * positive definite, the engine's. */
int mb_memit_edit(float *z, mb_engine *e, mb_engine_weights *w, const mb_rome_stats *stats,
		  const mb_rome_request *reqs, int n, const mb_rome_prefix *prefixes, int n_prefix,
		  const mb_memit_params *p, mb_error *err);

#endif
