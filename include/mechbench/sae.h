/*
 * sae.h: sparse autoencoders (SAEs) on hook-point activations: the three
 * architectures, their training forward and backward, SAELens's file layout,
 * the quality metrics and the ground-truth recovery scores.
 *
 * Legend: B rows (tokens) of a batch, D d_in (the hook point's width per
 * position), S d_sae (latents), K the TopK k.
 *
 * Parameters, SAELens's names and layout (one block, carved in this order):
 *   W_enc     (D, S)   pre = (x - a b_dec) W_enc + b_enc, a = apply_b_dec_to_input
 *   b_enc     (S)
 *   W_dec     (S, D)   x_hat = f W_dec + b_dec (row j: latent j's direction)
 *   b_dec     (D)
 *   threshold (S)      JumpReLU only
 *
 * Architectures (the activation f from pre):
 *   MB_SAE_RELU      f = ReLU(pre). Training (Anthropic, "Circuits Updates,
 *                    April 2024", the "April update"): loss = |x - x_hat|^2 +
 *                    lambda sum_j f_j |W_dec[j]|, decoder rows unconstrained,
 *                    a = 0 (the encoder sees x itself).
 *   MB_SAE_TOPK      f = ReLU of the K largest pre (the rest 0; ties to the
 *                    lower index) (Gao et al. 2024, "Scaling and evaluating
 *                    sparse autoencoders", sec. 2.3). Training: loss = |x -
 *                    x_hat|^2 + AuxK (sec. A.2 / B.1): e = x - x_hat (a
 *                    constant), z = ReLU of the k_aux largest pre among dead
 *                    latents, e_hat = z W_dec (no bias), aux = c s |e - e_hat|^2
 *                    with k_aux = min(D / 2, n_dead), s = min(n_dead / (D / 2), 1)
 *                    (SAELens's scale), c the aux coefficient; decoder rows unit
 *                    norm (gradient projected, rows renormalised after each
 *                    step: the trainer), a = 1.
 *   MB_SAE_JUMPRELU  f = pre where pre > threshold_j and pre > 0, else 0
 *                    (Rajamanoharan et al. 2024; SAELens's JumpReLU SAE and
 *                    Gemma Scope files). Inference only here.
 *
 * Determinism. Every function is bitwise the same for any OpenMP thread
 * count: per-row work writes its own row, per-latent and per-dimension sums
 * run over rows in ascending order, each on one thread. The encoder's GEMM
 * goes through mb_gemm_sgemm on fixed row chunks (portable backend: each
 * element one FMA chain, so also batch invariant).
 */
#ifndef MECHBENCH_SAE_H
#define MECHBENCH_SAE_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/engine.h>
#include <mechbench/error.h>
#include <mechbench/hooks.h>

typedef enum mb_sae_arch {
	MB_SAE_RELU = 0,  /* SAELens "standard" */
	MB_SAE_TOPK,      /* SAELens "topk" */
	MB_SAE_JUMPRELU,  /* SAELens "jumprelu" */
} mb_sae_arch;

/* "standard", "topk", "jumprelu" (SAELens's architecture names). */
const char *mb_sae_arch_name(mb_sae_arch a);

#define MB_SAE_TEXT_MAX 128

typedef struct mb_sae {
	mb_sae_arch arch;
	int d_in;                 /* D */
	int d_sae;                /* S */
	int k;                    /* TopK's K, 0 otherwise */
	int apply_b_dec_to_input; /* a */
	float *params;            /* owned, n_params floats */
	size_t n_params;
	float *W_enc;             /* (D, S) */
	float *b_enc;             /* (S) */
	float *W_dec;             /* (S, D) */
	float *b_dec;             /* (D) */
	float *threshold;         /* (S) JumpReLU, else NULL */
	/* metadata (cfg.json "metadata"; informative, may be empty) */
	char model_name[MB_SAE_TEXT_MAX];
	char hook_name[MB_SAE_TEXT_MAX];
	int context_size;         /* 0: unknown */
	int prepend_bos;
	char dataset_path[MB_SAE_TEXT_MAX];
} mb_sae;

/* Number of parameter floats of an SAE of this shape (the block above). */
size_t mb_sae_param_count(mb_sae_arch arch, int d_in, int d_sae);
/* Points W_enc .. threshold of s into base (the layout above); gradients and
 * optimiser state use the same carving. */
void mb_sae_carve(mb_sae *s, float *base);

/* Allocates a zeroed SAE (params owned). k only for TopK (1..S). Errors:
 * sizes out of range (naming the field), MB_ENOMEM. */
int mb_sae_init(mb_sae **out, mb_sae_arch arch, int d_in, int d_sae, int k, mb_error *err);
void mb_sae_free(mb_sae *s);

/* ---- forward ---- */

/*
 * Working memory of the forward over up to max_rows rows (inference), or of
 * one fused training step over batches of up to max_rows rows (train set),
 * reused across batches. Active latents are kept per row (CSR with capacity
 * cap per row: S for ReLU and JumpReLU, K for TopK): row b's entries are
 * idx[b cap + e], val[b cap + e] for e < nnz[b], latents ascending. The
 * dense (B, S) pre-activations never exist whole: rows are encoded in
 * chunks of MB_SAE_CHUNK rows into one (MB_SAE_CHUNK, S) block per thread.
 * A training work holds no per-row buffer of the batch at all: the step
 * reads and runs forward and backward over groups of G = pre_slots chunks
 * (G rows), so its per-row arrays (x_hat .. dapre) have G rows, and what
 * crosses groups is per latent or per input dimension.
 */
#define MB_SAE_CHUNK 64

typedef struct mb_sae_work {
	int max_rows, cap, cap_aux;
	int pre_slots;  /* threads the forward may use: one pre block each */
	int train;      /* made for mb_sae_train_step (rows below: G, not B) */
	int group;      /* rows per fused group G (train) */
	float *xc;      /* (pre_slots, MB_SAE_CHUNK, D) x - a b_dec of a chunk (scratch) */
	float *pre;     /* (pre_slots, MB_SAE_CHUNK, S) pre-activation blocks (scratch) */
	float *x_hat;   /* (B, D); train: (G, D) x_hat, then d loss / d x_hat */
	float *x;       /* train: (G, D) the group's rows */
	int32_t *idx;   /* (B, cap) */
	float *val;     /* (B, cap) f */
	int32_t *nnz;   /* (B) */
	double *sse;    /* (B) |x - x_hat|^2 per row */
	/* training only (mb_sae_work_init with train set), rows of one group */
	int32_t *aidx;  /* (G, cap_aux) AuxK latents */
	float *aval;    /* (G, cap_aux) */
	int32_t *annz;  /* (G) */
	double *aux;    /* (G) |e - e_hat|^2 per row */
	float *de_hat;  /* (G, D) d loss / d e_hat (AuxK) */
	float *dpre;    /* (G, cap) d loss / d pre at the active entries */
	float *dapre;   /* (G, cap_aux) */
	float *norm;    /* (S) |W_dec[j]| (ReLU) */
	float *fsum;    /* (S) sum of latent j's f over the batch so far (ReLU) */
	uint8_t *fired; /* (S) 1 for a latent active in some row of the last step */
	double *dsum;   /* (D) d loss / d x_hat summed over rows so far */
	double *csum;   /* (D) d loss / d (x - b_dec) summed over rows so far */
} mb_sae_work;

int mb_sae_work_init(mb_sae_work *w, const mb_sae *s, int max_rows, int train, mb_error *err);
void mb_sae_work_dispose(mb_sae_work *w);

/* Encodes and decodes rows x (B, D), B <= w->max_rows, with an inference
 * work (train not set): fills the active entries, x_hat and sse. */
void mb_sae_forward(const mb_sae *s, mb_sae_work *w, const float *x, int B);

/* The dense pre-activations pre (B, S) of rows x (B, D): (x - b_dec when
 * applied) W_enc + b_enc, the same bits as the forward's (the same chunked
 * GEMM calls). For tests and callers that want the dense matrix. Errors:
 * MB_ENOMEM. */
int mb_sae_pre(const mb_sae *s, const float *x, int B, float *pre, mb_error *err);

/* ---- training loss and gradients ---- */

typedef struct mb_sae_loss {
	double mse;    /* (1/B) sum_b |x_b - x_hat_b|^2 */
	double sparse; /* ReLU: (lambda / B) sum_b sum_j f_bj |W_dec[j]| */
	double aux;    /* TopK: c s (1/B) sum_b |e_b - e_hat_b|^2 (0 without dead latents) */
	double total;  /* mse + sparse + aux */
	double l0;     /* mean active latents per row */
	int n_dead;    /* dead latents given */
} mb_sae_loss;

/* What a training step reads: rows of activations, D wide, on demand;
 * next(self, out, n) writes the next n rows (n, D) into out, the same rows
 * for any split of the requests. */
typedef struct mb_sae_source {
	int d_in;
	int (*next)(void *self, float *out /* (n, D) */, int n, mb_error *err);
	void *self;
} mb_sae_source;

/*
 * One training step's forward and backward over the next B rows of src
 * (B <= w->max_rows), each value times scale (in float; 1 leaves them as
 * they are), with a training work: the loss into *out and its gradient with
 * respect to every parameter, written (overwritten) into grad, a block
 * carved like s (mb_sae_carve); w->fired marks the latents active in some
 * row. lambda: the ReLU's L1 coefficient (the schedule's value for this
 * step). dead: (S) 1 for a dead latent, or NULL (no AuxK; ignored by ReLU);
 * a TopK row's AuxK entries are the min(cap_aux, dead latents)
 * highest-ranked dead latents with positive pre-activation; aux_coef: c.
 * Loss definitions: above; the gradients are their exact derivatives (ReLU
 * and TopK's selection are piecewise constant; the selection's own gradient
 * is zero).
 *
 * Fused and streamed: the rows come G at a time into w->x, and each group is
 * encoded, activated, decoded and back-propagated to its per-row gradients
 * (threads over its chunks), then added into the parameter gradients
 * (threads over input dimensions) before the next group is read; no buffer
 * of B rows exists. Per-latent and per-dimension sums run over rows in
 * ascending order, each row's main entries before its AuxK ones, so the
 * bits depend neither on G nor on the thread count. Errors: JumpReLU or an
 * inference work, MB_EINVALID; src's.
 */
int mb_sae_train_step(mb_sae_loss *out, const mb_sae *s, mb_sae_work *w, mb_sae_source *src,
		      float scale, int B, double lambda, const uint8_t *dead, double aux_coef,
		      float *grad, mb_error *err);

/* ---- SAELens files ---- */

/*
 * SAELens's layout: DIR/cfg.json and DIR/sae_weights.safetensors (float32
 * W_enc (D, S), b_enc (S), W_dec (S, D), b_dec (D), and threshold (S) for
 * JumpReLU).
 *
 * cfg.json, read: the 6.x form ({"architecture", "d_in", "d_sae", "dtype",
 * "apply_b_dec_to_input", "normalize_activations", "reshape_activations",
 * "k" (topk), "rescale_acts_by_decoder_norm", "metadata": {"model_name",
 * "hook_name", "hook_head_index", "context_size", "prepend_bos",
 * "dataset_path", ...}}) and the older flat form (hook_name or hook_point,
 * activation_fn_str "relu" | "topk" with activation_fn_kwargs.k; missing
 * architecture means "standard", missing apply_b_dec_to_input means true).
 * Refused with one line naming the file and field: architectures other than
 * standard/topk/jumprelu, normalize_activations other than "none" (an SAE
 * whose scaling was not folded in), hook_head_index set,
 * finetuning_scaling_factor true, rescale_acts_by_decoder_norm true, a
 * d_in/d_sae/k out of range. Tensors: each named one must be present, float
 * (F32/F16/BF16/F64 converted), of its shape and finite; an unknown tensor is
 * an error (a "scaling_factor" of all ones is accepted and ignored, as
 * SAELens does).
 *
 * Written: the 6.x form, float32, with "metadata" from s (hook_name,
 * model_name, context_size, prepend_bos, dataset_path) plus
 * "sae_lens_version": "6.0.0" (the layout written) and "mechbench_version".
 * The bytes are a pure function of s.
 */
int mb_sae_load(mb_sae **out, const char *dir, mb_error *err);
int mb_sae_save(const mb_sae *s, const char *dir, mb_error *err);

/* ---- metrics ---- */

/*
 * Quality metrics over tokens, accumulated batch by batch (definitions after
 * SAEBench's core evaluation, Karvonen et al. 2025, sae_bench/evals/core,
 * cited per field in mb_sae_stats_result). Sums are in double in row order.
 */
typedef struct mb_sae_stats {
	int d_in, d_sae;
	int64_t tokens;
	double sum_l0, sum_sse, sum_cos, sum_sq;
	double *sum_x;    /* (D) */
	int64_t *fires;   /* (S) tokens on which latent j was nonzero */
} mb_sae_stats;

int mb_sae_stats_init(mb_sae_stats *st, int d_in, int d_sae, mb_error *err);
void mb_sae_stats_dispose(mb_sae_stats *st);
/* Adds the B rows of the last mb_sae_forward over x. */
void mb_sae_stats_add(mb_sae_stats *st, const mb_sae_work *w, const float *x, int B);

typedef struct mb_sae_stats_result {
	int64_t tokens;
	double l0;   /* mean over tokens of #{j : f_j != 0} (SAEBench "l0") */
	double fve;  /* fraction of variance explained, 1 - sum |x - x_hat|^2 / sum |x - mean x|^2
			over the tokens (SAEBench "explained_variance", its intended
			formula: total variance E|x|^2 - |E x|^2) */
	double mse;  /* mean over tokens and dims of (x - x_hat)^2 (torch's mse_loss;
			SAEBench's "mse" divides each token's sum by the batch's token
			count instead, which depends on the batch size) */
	double cos;  /* mean over tokens of cos(x, x_hat) (SAEBench "cossim") */
	double dead; /* fraction of latents that never fired in these tokens */
	double dense;/* fraction of latents firing on > 10% of the tokens */
} mb_sae_stats_result;

void mb_sae_stats_finish(mb_sae_stats_result *out, const mb_sae_stats *st);

/* cos(x, y) of two rows of n values as "cos" above counts it: in double; 1
 * when both are zero, 0 when only one is. */
double mb_sae_cos(const float *x, const float *y, int n);

/* ---- splicing into a forward ---- */

typedef enum mb_sae_splice_mode {
	MB_SAE_SPLICE_RECONSTRUCT = 0, /* x := x_hat at every valid position */
	MB_SAE_SPLICE_ZERO,            /* x := 0 (the zero-ablation reference) */
} mb_sae_splice_mode;

/* A hook payload (mb_sae_splice_hook): replaces the hook's activation at each
 * valid position by the SAE's reconstruction (or zero). The activation's
 * per-position width must be d_in (hook_z: H Dh, flattened). work is sized
 * for at least B T rows (the caller's). */
typedef struct mb_sae_splice {
	const mb_sae *sae;
	mb_sae_work *work;
	mb_sae_splice_mode mode;
	float *rows; /* (B T, D) scratch the caller owns */
} mb_sae_splice;

int mb_sae_splice_hook(const mb_hook_tensor *t, void *payload, mb_error *err);

/* Gathers the valid positions of a hook tensor into rows (n, D) in (b, t)
 * order; *n gets their count. Errors: a point whose positions are not
 * (B, T, ...) (attention patterns, logits) or whose width is not d_in. */
int mb_sae_rows_gather(float *rows, int *n, const mb_hook_tensor *t, int d_in, mb_error *err);

/* ---- ground truth ---- */

/*
 * Recovery of known feature directions (Sharkey et al. 2022, "Taking features
 * out of superposition with sparse autoencoders"): for each true direction
 * i (truth (n, D), any norms) the maximum cosine similarity to any decoder
 * row of s; mmcs = their mean; recovered = the fraction with max cos >= 0.9.
 * max_cos (n) may be NULL.
 */
int mb_sae_recovery(double *mmcs, double *recovered, double *max_cos, const mb_sae *s,
		    const float *truth, int n, mb_error *err);

/*
 * Matching latents to known variables (issue 19 item 4, zoo languages):
 * out[v] is the area under the ROC curve of score[i * stride] (i < n) for
 * the binary labels[v n + i] (v < n_labels), i.e. the Mann-Whitney U over
 * n_pos n_neg with tied scores sharing their average rank (0.5 is chance, 1
 * a perfect detector); NaN when a class is empty. A label of
 * MB_SAE_LABEL_SKIP leaves row i out of variable v (a row mask: the
 * variable is not defined there), as if the row were not given. The scores
 * are sorted once for all labels. mb_sae_f1: the F1 of the detector "score
 * > 0" (a latent that fires) for one label, skipped rows left out; 0 when it
 * never fires on a positive.
 */
#define MB_SAE_LABEL_SKIP 2

int mb_sae_auroc(double *out, const float *score, size_t stride, const uint8_t *labels,
		 int n_labels, size_t n, mb_error *err);
double mb_sae_f1(const float *score, size_t stride, const uint8_t *label, size_t n);

/* ---- the causal battery (issue 19 item 5) ---- */

/*
 * The labelled variable the features are about (e.g. the induction
 * language's topic): K values, each with a readout, the tokens whose
 * next-token log-probability mass it drives (readout (K, V)), and where it is
 * labelled present (present (K, n) over the battery's items).
 */
typedef struct mb_sae_labels {
	int n_values;           /* K */
	const uint8_t *readout; /* (K, V) */
	const uint8_t *present; /* (K, n) */
} mb_sae_labels;

/*
 * One feature under test: latent `latent` of the SAE, claimed to stand for
 * value `value` of the labelled variable (its readout and presence).
 * max_act: the latent's largest activation on reference data (steering
 * clamps to k max_act).
 */
typedef struct mb_sae_feature {
	int latent;
	int value;
	double max_act;
} mb_sae_feature;

/*
 * Per (feature f, item i) effects at [f n + i], NaN where the arm does not
 * apply to the item. Every arm edits the hook point's activation x at each
 * valid position by (f'_j - f_j) d with the SAE's encoding f of x, so the
 * SAE is spliced in with its error term x - x_hat kept and only latent j
 * changes (x' = x_hat(f') + (x - x_hat(f))). d = W_dec[j], or for a control
 * a random direction of the same norm |W_dec[j]| (mb_effect_control_direction,
 * stream "sae/battery/control/<j>" index item_index[i]), the same for every
 * position of the item: the same point, positions and per-position norm.
 *
 * Readouts, in double (detmath), over the item's positions t, with
 * L_k(t) = log sum_{v: readout_k[v]} softmax(logits_t)_v, k the feature's value:
 *   r(run)   = mean_t L_k(t)                       (absolute log-mass)
 *   rel(run) = mean_t [L_k(t) - mean_{h in P} L_h(t)]  (steering version 2)
 * with P the other values absent on the item (h != k, present_h[i] = 0): the
 * labelled value's log-mass relative to the values in the same role. An
 * edit that is not about value k (flattening the distribution, shifting mass
 * between the present value and the rest) moves every absent value alike,
 * so a random direction's rel effect is 0 in expectation by exchangeability
 * of the absent values; with r instead, a 4x clamp along any direction
 * raised an absent topic's low log-mass by about 1 (the steering control of
 * version 1). NaN where P is empty.
 *   necessity          present items: r(clean) - r(f'_j = 0)
 *   necessity_control  present items: r(clean) - r(control of that edit)
 *   selectivity        absent items:  r(clean) - r(f'_j = 0) (near 0 for a
 *                      selective feature)
 *   steering           absent items:  rel(f'_j = k max_act) - rel(clean)
 *   steering_control   absent items:  rel(control of that edit) - rel(clean)
 *   sufficiency        present items: r(f'_j = k max_act) - r(clean) (the
 *                      same clamp where the feature already is: does more of
 *                      it move the prediction further as labelled?)
 *   sufficiency_control present items: its control
 *   collateral         absent items: mean over positions of KL(clean ||
 *                      steered) of the next-token distributions renormalised
 *                      over the tokens outside the readout (the damage to
 *                      what the feature is not about)
 * (Sufficiency and steering after Templeton et al. 2024, "Scaling
 * Monosemanticity", feature steering by clamping to a multiple of the
 * maximum activation; necessity by ablation, Marks et al. 2024, "Sparse
 * Feature Circuits", with the error term kept.) Positive necessity and
 * steering mean the feature does what its label says.
 */
typedef struct mb_sae_battery {
	int n_features;
	size_t n;
	double *necessity, *necessity_control, *selectivity;     /* (F, n) */
	double *steering, *steering_control, *collateral;        /* (F, n) */
	double *sufficiency, *sufficiency_control;               /* (F, n) */
	double *block; /* owned: the eight arrays */
} mb_sae_battery;

/*
 * Runs the battery on n sequences tokens (n, seq) (every position valid)
 * with engine e (borrowed; max_batch >= batch, max_seq >= seq) over `batch`
 * items per forward: one clean forward and four per feature (ablate,
 * its control, steer, its control) per batch. item_index (n): each item's
 * stream index (its content key, mb_item_key_index; NULL: i). Every value
 * of an item depends only on the item (batch invariant: engine.h, sae.h
 * "Determinism"). Errors: a latent or value out of range or steer_k <= 0 (naming the
 * feature), the point (mb_sae_rows_gather), MB_ENOMEM.
 */
int mb_sae_battery_run(mb_sae_battery *out, mb_engine *e, const mb_sae *sae,
		       mb_hook_point point, const int32_t *tokens, size_t n, int seq, int batch,
		       const uint64_t *item_index, const mb_sae_labels *labels,
		       const mb_sae_feature *features, int n_features, double steer_k,
		       uint64_t seed, mb_error *err);
void mb_sae_battery_dispose(mb_sae_battery *b);

/* Activations of the SAE's latents over the n sequences tokens (n, seq)
 * (every position valid) run through e in batches of `batch`: max (S) each
 * latent's largest activation (0 for one that never fires: the battery's
 * steering reference); item_mean (n, S) (NULL: not computed) each item's
 * mean activation per latent over its positions; density (S) (NULL: not
 * computed) the fraction of positions on which each latent fires. Sums in
 * row order (thread-count invariant). */
int mb_sae_act_summary(float *max, double *item_mean, double *density, mb_engine *e,
		       const mb_sae *sae, mb_hook_point point, const int32_t *tokens, size_t n,
		       int seq, int batch, mb_error *err);

#endif
