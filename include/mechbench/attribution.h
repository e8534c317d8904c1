/*
 * attribution.h: gradient approximations of activation patching, and their
 * agreement with exact patching.
 *
 * Shape letters: B batch, T positions, L layers, H heads, Dh d_head, D
 * d_model, M d_mlp, V vocab, C components (L H heads, then L MLPs unless the
 * model is attention-only), S edge senders, R edge receivers (below).
 *
 * A batch holds B pairs (clean, corrupted) of token sequences of equal
 * lengths and a metric M (one value per item, with its gradient with respect
 * to the logits). Every estimate has the sign convention of exact patching:
 * the change of M when a node (edge) takes its corrupted value in the clean
 * run, M(patched) - M(clean).
 *
 * Methods (mb_attr_method):
 *  - AtP (attribution patching; Nanda 2023, Syed et al. 2023 eq. 1): per
 *    item, (a_corr - a_clean) . dM/da at the clean run, summed over valid
 *    positions, for every node at once: one corrupted forward, one clean
 *    forward and one backward.
 *  - AtP* (Kramar et al. 2024, "AtP*", sections 3.1.1-3.1.2): AtP with
 *    (a) the QK fix: for a head's query (key) node the attention pattern is
 *    recomputed exactly with that head's corrupted queries (keys) at every
 *    position, A' = softmax(q' k^T / sqrt(Dh)) (causal), and only M is
 *    linearised in the pattern: sum (A' - A) . dM/dA; (b) GradDrop: L extra
 *    backward passes, pass l with no gradient through layer l's block (its
 *    attention and MLP write nothing to the gradient of the residual), and
 *    the score |AtP|-combined as eq. 11: (1 / (L - 1)) sum_l |I_GD_l(n)|
 *    per item (a node of layer l gets 0 from pass l: its own layer's write
 *    is cut). AtP* scores are therefore magnitudes (>= 0); with L = 1
 *    GradDrop is undefined and the score is |AtP with the QK fix|. With
 *    L = 2 a layer-0 node keeps only its direct path (README, "Attribution
 *    patching": a false-negative filter for deep models).
 *  - EAP (edge attribution patching; Syed et al. 2023): per edge u -> v,
 *    (u_corr - u_clean) . dM/d(input of v) at the clean run, where u's
 *    output is the input embedding, a head's hook_result (z_h W_O[h]) or an
 *    MLP's hook_mlp_out, and v's input is a head's hook_{q,k,v}_input slice,
 *    an MLP's input (its branch only) or the final residual (the logits).
 *    Nodes as AtP.
 *  - EAP-IG (Hanna et al. 2024, "Have faith in faithfulness", eq. 3): the
 *    gradient averaged over m forwards whose input embeddings
 *    (blocks.0.hook_resid_pre) are corrupt + (k / m) (clean - corrupt),
 *    k = 1..m; edges and nodes use it.
 *
 * Graph indices. Senders s: 0 the input embedding; then per layer l the
 * heads, s = 1 + l (H + m) + h, and the MLP, 1 + l (H + m) + H, with m = 1
 * (0 attention-only). Receivers r: per layer l, head h's q, k, v inputs at
 * l (3H + m) + X H + h (X = 0, 1, 2), the MLP at l (3H + m) + 3H, and the
 * logits last (r = L (3H + m)). The senders of receiver r are the prefix
 * s < mb_attr_n_senders_of(cfg, r).
 *
 * Bits: every forward and backward is the engine's (batch invariant,
 * thread-count invariant); every reduction here runs in a fixed order per
 * item in double, so an item's scores do not depend on its batch or the
 * thread count.
 */
#ifndef MECHBENCH_ATTRIBUTION_H
#define MECHBENCH_ATTRIBUTION_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/engine.h>
#include <mechbench/error.h>

typedef enum mb_attr_method {
	MB_ATTR_ATP = 0,
	MB_ATTR_ATP_STAR,
	MB_ATTR_EAP,
	MB_ATTR_EAP_IG,
} mb_attr_method;

/* "atp", "atp-star", "eap", "eap-ig". */
const char *mb_attr_method_name(mb_attr_method m);
/* Parses a method name; MB_EINVALID naming it and the choices otherwise. */
int mb_attr_method_parse(mb_attr_method *out, const char *name, mb_error *err);

/*
 * The metric of the engine's last run: out (B) one value per item; when
 * dlogits is not NULL it is (B, N, V) in the run's logits layout (N =
 * mb_engine_logits_per_item), zeroed by the caller, and receives d out[b] /
 * d logits of item b's rows. Returns 0 or a negative MB_E* after setting err.
 */
typedef int (*mb_attr_metric_fn)(double *out, float *dlogits, const mb_engine *e, int batch,
				 void *payload, mb_error *err);

/* Mean cross-entropy over a span (the induction task's rep2 loss): item b's
 * value is the mean over t in [t0[b], t1[b]] of CE(logits at t - 1,
 * tokens[b][t]) (logits mode ALL, glibc exp/log in double as the tasks
 * compute it). */
typedef struct mb_attr_span {
	const int32_t *tokens; /* (B, T) the targets (the clean tokens) */
	int seq;               /* T */
	const int32_t *t0, *t1; /* (B) first and last target position, 1 <= t0 <= t1 < len */
} mb_attr_span;
int mb_attr_metric_span_loss(double *out, float *dlogits, const mb_engine *e, int batch,
			     void *payload, mb_error *err);

/* Logit difference at each item's last logits row (MB_LOGITS_LAST, or the
 * last of ALL / POSITIONS rows): logit(good[b]) - logit(bad[b]) (IOI). */
typedef struct mb_attr_logit_diff {
	const int32_t *good, *bad; /* (B) */
	const int32_t *lengths;    /* (B) needed with MB_LOGITS_ALL; NULL otherwise */
} mb_attr_logit_diff;
int mb_attr_metric_logit_diff(double *out, float *dlogits, const mb_engine *e, int batch,
			      void *payload, mb_error *err);

/* B clean/corrupted pairs and their metric (all borrowed). */
typedef struct mb_attr_batch {
	int batch, seq;               /* B, T */
	const int32_t *clean;         /* (B, T) */
	const int32_t *corrupt;       /* (B, T) */
	const int32_t *lengths;       /* (B) both sequences of pair b have len[b]; NULL = T */
	mb_logits_mode logits;        /* ALL, LAST or POSITIONS (what the metric reads) */
	int n_positions;
	const int32_t *positions;     /* (B, N) for MB_LOGITS_POSITIONS */
	mb_attr_metric_fn metric;
	void *payload;
} mb_attr_batch;

typedef struct mb_attr_opts {
	mb_attr_method method;
	int ig_steps;      /* m for EAP-IG (>= 1; 0 = 5) */
	int no_qk_fix;     /* AtP*: 1 turns the QK fix off (ablation of the method) */
	int no_grad_drop;  /* AtP*: 1 turns GradDrop off (scores stay signed) */
} mb_attr_opts;

/* Per-item scores of one batch. Arrays are owned by the struct. */
typedef struct mb_attr_scores {
	int batch, n_layer, n_head, d_mlp, seq; /* B, L, H, M (0 attention-only), T */
	int n_senders, n_receivers;             /* S, R (0 when edges were not asked for) */
	double *metric_clean;   /* (B) M(clean) */
	double *metric_corrupt; /* (B) M(corrupted) */
	double *z;      /* (B, L, H) head outputs: attn.hook_z */
	double *q;      /* (B, L, H) attn.hook_q (AtP*: QK fix through the pattern) */
	double *k;      /* (B, L, H) attn.hook_k (likewise) */
	double *v;      /* (B, L, H) attn.hook_v */
	double *mlp;    /* (B, L) hook_mlp_out; NULL attention-only */
	double *neuron; /* (B, L, M) mlp.hook_post per neuron; NULL attention-only */
	double *resid;  /* (B, L, T) blocks.{l}.hook_resid_pre per position */
	double *edges;  /* (B, R, S) edge u=s -> v=r at (b R + r) S + s; 0 for s not a sender of
			   r; NULL unless EAP / EAP-IG */
} mb_attr_scores;

/* Allocates zeroed scores for B items of T positions of a model of cfg
 * (edges: 1 to hold edge scores). */
int mb_attr_scores_init(mb_attr_scores **out, const mb_engine_config *cfg, int B, int T,
			int edges, mb_error *err);
void mb_attr_scores_free(mb_attr_scores *s);

/* Graph sizes and names (see "Graph indices"). Names: "in", "a<l>.<h>",
 * "m<l>" for senders; "a<l>.<h>.q|k|v", "m<l>", "out" for receivers (the
 * circuit artifact's node ids). */
int mb_attr_n_senders(const mb_engine_config *cfg);
int mb_attr_n_receivers(const mb_engine_config *cfg);
int mb_attr_n_senders_of(const mb_engine_config *cfg, int r);
void mb_attr_sender_name(char *buf, size_t cap, const mb_engine_config *cfg, int s);
void mb_attr_receiver_name(char *buf, size_t cap, const mb_engine_config *cfg, int r);

/* Components (heads then MLPs): C and the name of component c ("a<l>.<h>",
 * "m<l>"). */
int mb_attr_n_components(const mb_engine_config *cfg);
void mb_attr_component_name(char *buf, size_t cap, const mb_engine_config *cfg, int c);
/* out (B, C): the head (z) and MLP scores of s per item. */
void mb_attr_components(double *out, const mb_attr_scores *s);

typedef struct mb_attr mb_attr;

/* A workspace over engine e (borrowed; created with keep_activations and
 * max_batch/max_seq for the batches to come): the backward, the caches and,
 * for AtP*, a second engine over the same weights but for copies of W_O and
 * W_proj (GradDrop zeroes one layer of them at a time). */
int mb_attr_init(mb_attr **out, mb_engine *e, mb_error *err);
void mb_attr_free(mb_attr *a);

/* Scores one batch by o->method into out (from mb_attr_scores_init for this
 * batch's B and T, with edges for EAP / EAP-IG; overwritten). Errors: the
 * engine's, the metric's, pairs whose lengths disagree with the run, a batch
 * larger than the engine's. */
int mb_attr_run(mb_attr_scores *out, mb_attr *a, const mb_attr_batch *ab, const mb_attr_opts *o,
		mb_error *err);

/* Exact activation patching of every component on the engine: out (B, C)
 * gets M(clean with component c's output from the corrupted run) - M(clean):
 * heads by mb_effect_head_sweep (hook_z patched at every position,
 * restarting at the head's layer), MLPs by patching hook_mlp_out (restarting
 * at the MLP's layer past its attention). */
int mb_attr_exact(double *out, mb_engine *e, const mb_attr_batch *ab, mb_error *err);

/* Exact patching of every head's queries (X = 0) and keys (X = 1): out (B,
 * 2, L, H) at ((b 2 + X) L + l) H + h gets M(clean with head (l, h)'s
 * attn.hook_q (hook_k) from the corrupted run at every position) - M(clean),
 * each arm restarting at layer l: what the q and k node scores (and AtP*'s
 * QK fix) estimate. */
int mb_attr_exact_qk(double *out, mb_engine *e, const mb_attr_batch *ab, mb_error *err);

/* Exact edge patching of every edge of the graph (see "Graph indices"), what
 * EAP and EAP-IG estimate: out (B, R, S) at (b R + r) S + s gets M(clean
 * with receiver r's input changed by sender s's output change, corrupted
 * minus clean, alone) - M(clean): a head's q/k/v input by path patching
 * (mb_effect_path, restarting at its layer), an MLP's input on its own
 * branch (added at hook_resid_mid, taken back out of hook_mlp_out), the
 * logits' through the final residual; 0 for s not a sender of r. One
 * forward per edge and batch: for small models and tests. Uses a's engine
 * and caches. Errors: the engine's, the metric's; MB_EINVALID for a model
 * with MLPs and a parallel residual. */
int mb_attr_exact_edges(double *out, mb_attr *a, const mb_attr_batch *ab, mb_error *err);

/*
 * Agreement of an approximation with a reference over items. approx and
 * exact are (B, C) per-item scores; a component's score is its mean over
 * items. The reference set is the top-k components by |mean exact| (k >= 1),
 * or, when truth (C) is given, the components with truth[c] set (k is then
 * their number). The approximate set is the top-k by |mean approx| (ties by
 * index). Statistics: Spearman rank correlation of the C means (average
 * ranks for ties; on |.| when use_abs, e.g. for AtP*'s magnitudes),
 * precision |A & R| / |A| and recall |A & R| / |R|, each with a 95%
 * percentile bootstrap CI over n_boot resamples of items (Philox stream
 * "attribution/bootstrap" under seed; 0 resamples: CIs = the estimate).
 * exact may be NULL when truth is given (Spearman is then NAN).
 */
typedef struct mb_attr_agreement {
	int n_items, n_components, k;
	double spearman, spearman_lo, spearman_hi;
	double precision, precision_lo, precision_hi;
	double recall, recall_lo, recall_hi;
} mb_attr_agreement;

int mb_attr_agree(mb_attr_agreement *out, const double *approx, const double *exact,
		  const uint8_t *truth, int B, int C, int k, int use_abs, int n_boot,
		  uint64_t seed, mb_error *err);

/* Indices of the top k of score (C) by |score| descending, ties by index. */
void mb_attr_topk(int *idx, const double *score, int C, int k);
/* The exact circuit's size: the number of components whose |mean exact
 * effect| is at least frac of the largest (frac in (0, 1]; at least 1). */
int mb_attr_circuit_size(const double *mean_exact, int C, double frac);
/* Spearman rank correlation of x and y (n), average ranks for ties; NAN
 * when either is constant. */
double mb_attr_spearman(const double *x, const double *y, int n);

#endif
