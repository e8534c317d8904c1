/*
 * circuit.h: circuits of attention heads (and MLPs) found and judged by
 * patching: discovery (rank components by their per-item effect, grow the
 * circuit in rank order until a pre-registered faithfulness criterion holds,
 * score the edges between kept nodes by path patching), faithfulness,
 * completeness and minimality (Wang et al. 2023, "Interpretability in the
 * Wild", ICLR 2023, section 4), a matched random-circuit control, stability
 * over bootstrap resamples of the discovery items, precision and recall
 * against a known circuit, and the circuit's JSON artifact.
 *
 * Shape letters: n items, T positions, L layers, H heads, Dh d_head, D
 * d_model, G groups (IOI: templates), N nodes, K nodes of a circuit, P masks.
 *
 * Nodes. Head (l, h) is node l H + h, id "a<l>.<h>"; with opts.mlps the MLP
 * of layer l is node L H + l, id "m<l>". N = L H (+ L with MLPs). A node set
 * is a mask (N) of 0/1 bytes.
 *
 * Ablation. "Everything outside C ablated" means: at attn.hook_z (heads) and
 * hook_mlp_out (MLPs), at every valid position of every item, each node not
 * kept is replaced by
 *   MB_CIRCUIT_MEAN_ABC  its mean over the corrupted prompts (IOI: ABC) of
 *                        the item's group, at the same position (Wang et al.
 *                        2023, section 3: mean over the ABC distribution per
 *                        template; positions align within a template);
 *                        means over every item of the data set, summed in
 *                        double in item order, rounded to float;
 *   MB_CIRCUIT_RESAMPLE  its value in the corrupted prompt of another item of
 *                        the same group (positions align), the item drawn by
 *                        mb_iv_resample_pick (never itself when the group has
 *                        two or more items) from stream "circuit/resample",
 *                        index key[i], under opts.seed;
 *   MB_CIRCUIT_ZERO      zero.
 * Every evaluation, the full model's included, runs through the same hooks
 * (nothing replaced for kept nodes), so an unused component's effect is an
 * exact 0, not rounding.
 *
 * Bits. Every value is a function of the item alone and of data-set-wide
 * inputs fixed before any evaluation (group means, resample picks): engine
 * forwards are batch and thread-count invariant, per-item values are doubles
 * computed per item, pooled values are sums over items in the order given.
 * Random draws come from named Philox streams (rng.h) keyed by the item's
 * key or a resample index, never by batch position or thread. So the same
 * (data, opts, items) give the same bits for any batch size and any
 * OMP_NUM_THREADS.
 *
 * Use (a task's prepare hook and run):
 *   mb_circuit_eval_init(&ev, engine, &data, &opts)   group means / picks
 *   mb_circuit_node_effects(eff, ev, disc, nd)        or the task's own sweep
 *   mb_circuit_discover(&c, ev, eff, disc, nd, &crit) nodes, edges, faithfulness
 *   mb_circuit_stability(&st, ev, eff, disc, nd, &crit, c, B, 0.95)
 *   mb_circuit_faithfulness / _completeness / _minimality / _control on the
 *   evaluation items; mb_circuit_to_json for the artifact.
 */
#ifndef MECHBENCH_CIRCUIT_H
#define MECHBENCH_CIRCUIT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <mechbench/engine.h>
#include <mechbench/error.h>

/* The ablation of nodes outside a circuit (see the header comment). */
typedef enum mb_circuit_ablation {
	MB_CIRCUIT_MEAN_ABC = 0, /* "mean-abc" */
	MB_CIRCUIT_RESAMPLE,     /* "resample" */
	MB_CIRCUIT_ZERO,         /* "zero" */
} mb_circuit_ablation;

/* "mean-abc", "resample", "zero". */
const char *mb_circuit_ablation_name(mb_circuit_ablation a);
/* Parses one of those names; MB_EINVALID naming what (a field path) and the
 * allowed values. */
int mb_circuit_ablation_parse(mb_circuit_ablation *out, const char *s, const char *what,
			      mb_error *err);

/* Faithfulness definitions. F(X) is the mean over items of the metric with
 * every node outside X ablated; M every node, the empty set none.
 *   MB_CIRCUIT_FAITH_RATIO       F(C) / F(M): Wang et al. 2023, section 4.1
 *                                ("faithfulness"), "ratio@1";
 *   MB_CIRCUIT_FAITH_NORMALIZED  (F(C) - F(empty)) / (F(M) - F(empty)):
 *                                Marks et al. 2024 ("Sparse Feature
 *                                Circuits", section 3), the form MIB (Mueller
 *                                et al. 2025) scores, "normalized@1". */
typedef enum mb_circuit_faith {
	MB_CIRCUIT_FAITH_RATIO = 0,
	MB_CIRCUIT_FAITH_NORMALIZED,
} mb_circuit_faith;

/* "ratio", "normalized"; the parser as mb_circuit_ablation_parse. */
const char *mb_circuit_faith_name(mb_circuit_faith f);
int mb_circuit_faith_parse(mb_circuit_faith *out, const char *s, const char *what, mb_error *err);

/* An edge's receiver input: a head's query, key or value input, or the
 * residual stream (an MLP receiver; not scored yet: reserved). */
typedef enum mb_circuit_via {
	MB_CIRCUIT_VIA_Q = 0,
	MB_CIRCUIT_VIA_K,
	MB_CIRCUIT_VIA_V,
	MB_CIRCUIT_VIA_RESID,
} mb_circuit_via;

/* "q", "k", "v", "resid". */
const char *mb_circuit_via_name(mb_circuit_via v);

/* ---- nodes ------------------------------------------------------------------ */

#define MB_CIRCUIT_ID_MAX 16

/* N for a model of cfg: L H, plus L when mlps (and the model has MLPs). */
int mb_circuit_n_nodes(const mb_engine_config *cfg, int mlps);
/* Node id into out ("a9.6", "m3"). */
void mb_circuit_node_id(char out[MB_CIRCUIT_ID_MAX], const mb_engine_config *cfg, int node);
/* Parses an id; MB_EINVALID naming `what` and the id when malformed or out
 * of range for cfg (an "m" id needs mlps). */
int mb_circuit_node_parse(int *node, const char *id, const mb_engine_config *cfg, int mlps,
			  const char *what, mb_error *err);
/* The layer of a node, and its head (-1 for an MLP). */
int mb_circuit_node_layer(const mb_engine_config *cfg, int node);
int mb_circuit_node_head(const mb_engine_config *cfg, int node);

/* ---- the evaluator ---------------------------------------------------------- */

/* Reduces the engine's last run (batch items: data items items[0..batch))
 * to out (batch), one value per item (IOI: logit(IO) - logit(S) at the end).
 * It must read only each item's own logits. */
typedef int (*mb_circuit_metric_fn)(double *out, const mb_engine *e, const size_t *items,
				    int batch, void *payload, mb_error *err);

/* The items a circuit is found and judged on (borrowed; must outlive the
 * evaluator). Clean and corrupted prompts have the same length; items of
 * one group have the same length (their positions align). */
typedef struct mb_circuit_data {
	size_t n;                 /* items */
	int seq;                  /* T: width of the token rows */
	const int32_t *tokens;    /* (n, T) clean prompts */
	const int32_t *corrupt;   /* (n, T) corrupted prompts (IOI: ABC) */
	const int32_t *lengths;   /* (n) valid positions, or NULL: all T */
	const int32_t *group;     /* (n) group in [0, n_groups) (IOI: template), or NULL: one */
	int n_groups;             /* G (1 when group is NULL) */
	const uint64_t *key;      /* (n) per-item stream index (mb_item_key_index of the item's
				     content key) */
	mb_logits_mode logits;    /* what the metric reads: MB_LOGITS_LAST or _POSITIONS */
	int n_positions;          /* per item, for MB_LOGITS_POSITIONS */
	const int32_t *positions; /* (n, n_positions) for MB_LOGITS_POSITIONS */
	mb_circuit_metric_fn metric;
	void *payload;
} mb_circuit_data;

typedef struct mb_circuit_opts {
	mb_circuit_ablation ablation;
	int mlps;      /* MLPs are nodes too (ignored for attention-only models) */
	uint64_t seed; /* resample picks, random controls, bootstrap resamples */
	int batch;     /* items per forward, >= 1, at most the engine's max_batch */
} mb_circuit_opts;

typedef struct mb_circuit_eval mb_circuit_eval;

/* An evaluator over engine e (borrowed; runs every forward on it, one at a
 * time) and data (borrowed). Computes the per-group, per-position means of
 * every node over the corrupted prompts (mean-abc) or the resample picks
 * (resample). The corrupted prompt of an item has its clean prompt's
 * length (data.lengths serves both). Errors: bad data (a group out of range,
 * a length outside [1, T], a group with items of two lengths under mean-abc
 * or resample: each naming the item), the engine's and the metric's. */
int mb_circuit_eval_init(mb_circuit_eval **out, mb_engine *e, const mb_circuit_data *data,
			 const mb_circuit_opts *opts, mb_error *err);
void mb_circuit_eval_free(mb_circuit_eval *ev);
/* An evaluator on another engine of the same model (one per thread: an
 * evaluator runs one forward at a time) sharing ev's read-only tables (group
 * means, picks; ev must outlive it). Same values, bit for bit. */
int mb_circuit_eval_fork(mb_circuit_eval **out, const mb_circuit_eval *ev, mb_engine *e,
			 mb_error *err);
/* N, and the engine's config. */
int mb_circuit_eval_nodes(const mb_circuit_eval *ev);
const mb_engine_config *mb_circuit_eval_cfg(const mb_circuit_eval *ev);
/* The resample source of data item i (resample only; else i itself). */
size_t mb_circuit_eval_pick(const mb_circuit_eval *ev, size_t i);

/* The metric with every node outside a mask ablated: out (P, n_items), mask
 * p's value for items[j] at p n_items + j; keep (P, N) masks. items are data
 * indexes (repeats allowed). per_item: keep is (n_items, N), one mask per
 * item, and out (n_items) (P must be 1). */
int mb_circuit_eval_run(double *out, mb_circuit_eval *ev, const uint8_t *keep, size_t P,
			const size_t *items, size_t n_items, mb_error *err);
int mb_circuit_eval_run_per_item(double *out, mb_circuit_eval *ev, const uint8_t *keep,
				 const size_t *items, size_t n_items, mb_error *err);

/* Knock-out effects, the ranking input of discovery: out (N, n_items), at
 * v n_items + j the metric of items[j] with only node v ablated minus the
 * full model's (everything through the evaluator's hooks). */
int mb_circuit_node_effects(double *out, mb_circuit_eval *ev, const size_t *items,
			    size_t n_items, mb_error *err);

/* Path patching from sender node s (a head or MLP) into receiver head r's
 * q/k/v input (mb_interp_path_patch_delta): the sender's output change
 * (ablated as the evaluator ablates, minus clean) reaches only that input;
 * out (n_items) = metric(patched) - metric(the same forward with a zero
 * change). layer(s) < layer(r). */
int mb_circuit_edge_effects(double *out, mb_circuit_eval *ev, int sender, int receiver,
			    mb_circuit_via via, const size_t *items, size_t n_items,
			    mb_error *err);

/* ---- circuits --------------------------------------------------------------- */

/* The pre-registered discovery criterion. */
typedef struct mb_circuit_criterion {
	mb_circuit_faith faith; /* the definition the criterion uses */
	double min;             /* grow until pooled faithfulness >= min (0.8) */
	double edge_min;        /* keep an edge when |mean effect| >= edge_min |F(M)| (0.05) */
	int max_nodes;          /* stop growing at this many nodes (0: N) */
} mb_circuit_criterion;

typedef struct mb_circuit_edge {
	int from, to;        /* nodes; from's layer < to's layer */
	mb_circuit_via via;
	double effect;       /* mean path-patching effect over the discovery items */
} mb_circuit_edge;

typedef struct mb_circuit_stability_result {
	int resamples;            /* B; 0: not measured */
	double level;             /* CI level (0.95) */
	double jaccard_mean;      /* mean over resamples of J(C_r, C) */
	double jaccard_lo, jaccard_hi; /* percentile interval of J */
	double *jaccard;          /* (B) per resample */
	double *inclusion;        /* (N) share of resample circuits holding each node */
} mb_circuit_stability_result;

typedef struct mb_circuit_pr {
	double node_precision, node_recall;
	double edge_precision, edge_recall; /* edges match on (from, to, via) */
} mb_circuit_pr;

/* A circuit. Everything is owned by the struct (mb_circuit_free). */
typedef struct mb_circuit {
	mb_engine_config cfg;
	int mlps, N;
	uint8_t *member;            /* (N) */
	int *rank;                  /* (N) nodes by discovery score, best first */
	double *score;              /* (N) mean knock-out effect over the discovery items */
	size_t n_nodes;
	int *nodes;                 /* (K) members in rank order */
	size_t n_edges;
	mb_circuit_edge *edges;     /* kept edges, by (to, from, via) */
	mb_circuit_ablation ablation;
	mb_circuit_criterion criterion;
	int reached;                /* 1 when the criterion held before max_nodes */
	double faithfulness;        /* pooled, criterion.faith, on the discovery items */
	double f_model, f_empty;    /* pooled F(M), F(empty) on the discovery items */
	mb_circuit_stability_result stability; /* resamples 0 until mb_circuit_stability fills it */
	int has_truth;
	mb_circuit_pr truth;        /* against a known circuit (mb_circuit_compare) */
} mb_circuit;

/* Discovery on items (data indexes; the discovery split): ranks nodes by
 * |mean effect| (effects (N, n_items) from mb_circuit_node_effects or the
 * task's own patching sweep; NULL: computed), ties by node index; grows C =
 * the first k ranked nodes, k = 1, 2, ..., until the pooled faithfulness
 * (crit->faith) >= crit->min or k = max_nodes; then scores every edge s -> r
 * between members (r a head, layer(s) < layer(r), via q, k, v) by
 * mb_circuit_edge_effects and keeps those with |mean| >= edge_min |F(M)|. */
int mb_circuit_discover(mb_circuit **out, mb_circuit_eval *ev, const double *effects,
			const size_t *items, size_t n_items, const mb_circuit_criterion *crit,
			mb_error *err);
void mb_circuit_free(mb_circuit *c);

/* Pooled and per-item faithfulness of the node set keep (N) on items.
 * fc, fm, fe (n_items, each may be NULL) get the per-item F(C), F(M),
 * F(empty). Per-item faithfulness for a gate: fc[j] / f_model (its mean is
 * the ratio) or (fc[j] - f_empty) / (f_model - f_empty) (mean: normalized). */
typedef struct mb_circuit_faithfulness_result {
	double f_circuit, f_model, f_empty; /* pooled means */
	double ratio;                       /* F(C) / F(M) */
	double normalized;                  /* (F(C) - F(empty)) / (F(M) - F(empty)) */
} mb_circuit_faithfulness_result;

int mb_circuit_faithfulness(mb_circuit_faithfulness_result *out, double *fc, double *fm, double *fe,
			    mb_circuit_eval *ev, const uint8_t *keep, const size_t *items,
			    size_t n_items, mb_error *err);

/* Completeness (Wang et al. 2023, section 4.2): for K a subset of C, the
 * incompleteness |F(C \ K) - F(M \ K)| (pooled means). Greedy search: K
 * starts empty; each step adds the node of C \ K that maximises it, up to
 * max_steps steps (0: |C|); the worst K seen is reported. fck, fmk
 * (n_items, may be NULL) get the per-item F(C \ K), F(M \ K) at that K. */
typedef struct mb_circuit_completeness_result {
	double score;        /* max incompleteness over the searched K */
	double relative;     /* score / |F(M)| */
	uint8_t *worst;      /* (N) the worst K (owned; free()) */
	size_t worst_size;   /* |K| */
	double f_c_k, f_m_k; /* pooled F(C \ K), F(M \ K) at the worst K */
} mb_circuit_completeness_result;

int mb_circuit_completeness(mb_circuit_completeness_result *out, double *fck, double *fmk,
			    mb_circuit_eval *ev, const uint8_t *keep, const size_t *items,
			    size_t n_items, int max_steps, mb_error *err);

/* Minimality (Wang et al. 2023, section 4.3): for each member v (out[i] for
 * the i-th member in node order; out has |C| entries), the max over the
 * searched K (subsets of C \ {v}: K empty, then greedily grown by the node
 * maximising the same quantity, up to max_steps) of |F(C \ (K u {v})) -
 * F(C \ K)|; v passes when that is >= min_rel |F(M)| (Wang et al.: 0.01). */
typedef struct mb_circuit_minimality_result {
	int node;
	double score;     /* the max */
	double relative;  /* score / |F(M)| */
	size_t k_size;    /* |K| at the max */
	int pass;
} mb_circuit_minimality_result;

int mb_circuit_minimality(mb_circuit_minimality_result *out, mb_circuit_eval *ev,
			  const uint8_t *keep, const size_t *items, size_t n_items, int max_steps,
			  double min_rel, mb_error *err);

/* The matched random-circuit control: for each item its own random circuit
 * of the size of keep, matched by layer (mb_effect_control_heads: per member
 * head one head of the same layer outside keep; per member MLP one MLP
 * outside keep, uniformly), drawn from stream "circuit/control", index
 * key[items[j]], under opts.seed; out (n_items) its metric with everything
 * else ablated; masks (n_items, N), when non-NULL, get the drawn circuits. */
int mb_circuit_control(double *out, uint8_t *masks, mb_circuit_eval *ev, const uint8_t *keep,
		       const size_t *items, size_t n_items, mb_error *err);

/* Stability: discovery (ranking from effects (N, n_items), same criterion,
 * no edges) repeated on B bootstrap resamples of items (resample r draws
 * n_items items with replacement, mb_rng_range, stream "circuit/bootstrap",
 * index r, under opts.seed); J(C_r, ref) = |C_r n ref| / |C_r u ref|; fills
 * ref->stability (mean, percentile interval at level, per-resample values,
 * each node's inclusion frequency). */
int mb_circuit_stability(mb_circuit *ref, mb_circuit_eval *ev, const double *effects,
			 const size_t *items, size_t n_items, int B, double level,
			 mb_error *err);

/* Jaccard of two node masks (N); 1 when both are empty. */
double mb_circuit_jaccard(const uint8_t *a, const uint8_t *b, int N);

/* Precision and recall of found's nodes and edges against truth's (same
 * model shape); sets found->truth and found->has_truth. A ratio whose
 * denominator is 0 is 1. */
void mb_circuit_compare(mb_circuit_pr *out, mb_circuit *found, const mb_circuit *truth);

/* The circuit artifact (what the IOI task stores with an entry, the
 * baseline carries and the report draws): {"kind": "circuit", "version":
 * 1, "method", "ablation", "criterion": {"metric": "faithfulness", "min",
 * "definition"}, "nodes": [{"id", "layer", "head", "kind": "head"|"mlp",
 * "effect", "inclusion"}], "edges": [{"from", "to", "via", "effect"}],
 * "stability" (when measured), "truth" (when compared)}. Nodes in rank order;
 * "inclusion" only with stability. New reference, NULL on allocation
 * failure. */
json_t *mb_circuit_to_json(const mb_circuit *c, const char *method);

/* Reads nodes and edges (and "ablation" when present) of such a document, or
 * of a known circuit's description (baselines/models/ioi-planted/
 * circuit.json): every node id must exist in cfg; name labels messages
 * ("circuit.json: nodes[2].id: ..."). Scores and stability are not read. */
int mb_circuit_from_json(mb_circuit **out, const json_t *doc, const mb_engine_config *cfg,
			 int mlps, const char *name, mb_error *err);

#endif
