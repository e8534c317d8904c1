/*
 * engine.h: the GPT-2-family transformer forward over OpenBLAS + OpenMP.
 *
 * Shape letters: B batch, T positions (the run's padded width), D d_model,
 * H heads, Dh d_head (D / H), M d_mlp, V vocab, P n_ctx (positions of wpe),
 * L layers, R packed rows (see "Packed rows" below), N selected logit rows.
 *
 * The engine knows nothing about files: src/model/ fills an mb_engine_config
 * from config.json and loads tensors into the mb_engine_weights layout.
 *
 * Packed rows. Inside the engine every per-position activation is stored
 * row-packed: item b's positions 0..len[b]-1 occupy rows row0[b] ..
 * row0[b]+len[b]-1, then the item is padded to a multiple of U rows, and the
 * next item starts there (U is the GEMM row group, below). Padding rows hold
 * finite values computed from zero inputs and are never read into valid rows.
 * Hooks and caches never see this layout: they see TransformerLens-shaped
 * tensors (B, T, ...), with zeros at padded positions t >= len[b].
 *
 * Why packed and why U. OpenBLAS's sgemm result for one row depends on where
 * that row falls in the kernel's row blocking (measured: OpenBLAS 0.3.21,
 * Haswell kernels, rows are computed in groups of 12 and a row's bits depend
 * on its position in the group and on whether the group is full), and on the
 * number of BLAS threads. So every GEMM here is called single-threaded from our
 * own OpenMP loop, on row chunks that start at multiples of U, over items that
 * start at multiples of U and are padded to multiples of U. A row's bits then
 * depend only on its own data: results are identical for 1 or 2 threads, for
 * repeated runs, and for an item alone or in any batch. U is probed at
 * mb_engine_init (smallest group size for which sub-GEMMs reproduce a full
 * GEMM bit for bit on this BLAS and these shapes) and reported by
 * mb_engine_row_group(). Attention GEMMs are per (item, head) and need no
 * alignment; everything else is per-row C code.
 */
#ifndef MECHBENCH_ENGINE_H
#define MECHBENCH_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/error.h>

typedef enum mb_activation {
	MB_ACT_GELU_NEW = 0, /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
	MB_ACT_GELU,         /* 0.5 x (1 + erf(x / sqrt(2))) */
	MB_ACT_RELU,
} mb_activation;

typedef enum mb_norm {
	MB_NORM_LN = 0, /* LayerNorm with weight and bias */
	MB_NORM_NONE,   /* no normalisation: ln*.hook_normalized pass the residual through */
} mb_norm;

typedef enum mb_pos_embed {
	MB_POS_LEARNED = 0, /* wpe rows added to the token embeddings (GPT-2) */
	MB_POS_ROTARY,      /* no wpe; rotary q and k (GPT-NeoX rotate-half convention) */
} mb_pos_embed;

/* Architecture hyperparameters (a GPT2Config or GPTNeoXConfig plus
 * TransformerLens options). A zeroed tail (pos, rotary_*, parallel) is GPT-2. */
typedef struct mb_engine_config {
	int n_vocab;      /* V */
	int n_ctx;        /* P, rows of wpe */
	int d_model;      /* D */
	int n_layer;      /* L */
	int n_head;       /* H */
	int d_head;       /* Dh = D / H */
	int d_mlp;        /* M (0 when attn_only) */
	mb_activation act;
	mb_norm norm;
	int attn_only;    /* blocks have no MLP and no ln_2 */
	int tied;         /* unembedding is wte (logits = x wte^T); else lm_head */
	float ln_eps;
	mb_pos_embed pos;
	int rotary_dim;    /* Rd, MB_POS_ROTARY: the first Rd dims of each head rotate
			      (even, 2..Dh; Pythia: Dh * rotary_pct) */
	float rotary_base; /* theta_i = t * base^(-2i / Rd), i < Rd / 2 */
	int parallel;      /* resid_post = resid_pre + attn_out + mlp(ln2(resid_pre)):
			      no hook_resid_mid (GPT-NeoX use_parallel_residual) */
} mb_engine_config;

/* Checks ranges and consistency (D % H, sizes positive and small enough for
 * int indexing). Errors name the field. */
int mb_engine_config_check(const mb_engine_config *cfg, mb_error *err);

/*
 * Weights, Hugging Face Conv1D layout (y = x W + b, W is (in, out)), stacked
 * over layers (llm.c). GPT-NeoX checkpoints (nn.Linear, fused q/k/v per head)
 * are transposed and permuted into this layout at load (src/model/weights.c). Tensors a config does not have are NULL: ln*_ with
 * MB_NORM_NONE; ln2_*, fc_*, proj_* with attn_only. unembed points at wte when
 * tied.
 */
typedef struct mb_engine_weights {
	float *wte;     /* (V, D) */
	float *wpe;     /* (P, D); NULL with rotary positions */
	float *ln1_w;   /* (L, D) */
	float *ln1_b;   /* (L, D) */
	float *qkv_w;   /* (L, D, 3D) columns [Q | K | V], each split into H heads of Dh */
	float *qkv_b;   /* (L, 3D) */
	float *o_w;     /* (L, D, D) rows h*Dh..(h+1)*Dh are W_O of head h */
	float *o_b;     /* (L, D) */
	float *ln2_w;   /* (L, D) */
	float *ln2_b;   /* (L, D) */
	float *fc_w;    /* (L, D, M) */
	float *fc_b;    /* (L, M) */
	float *proj_w;  /* (L, M, D) */
	float *proj_b;  /* (L, D) */
	float *lnf_w;   /* (D) */
	float *lnf_b;   /* (D) */
	float *unembed; /* (V, D): lm_head.weight, or wte when tied */
} mb_engine_weights;

/* Carves the tensors of cfg out of base (a block of at least the returned
 * number of floats, in the field order above) into *out, and returns that
 * number. With base NULL only counts (pointers set NULL). The same layout
 * serves gradients and optimiser state. */
size_t mb_engine_weights_layout(mb_engine_weights *out, const mb_engine_config *cfg, float *base);

/* The hook registry (hooks.h). */
typedef struct mb_hooks mb_hooks;

typedef enum mb_logits_mode {
	MB_LOGITS_ALL = 0,   /* every valid position: (B, T, V) */
	MB_LOGITS_LAST,      /* position len[b]-1 of each item: (B, 1, V) */
	MB_LOGITS_POSITIONS, /* run.positions: (B, n_positions, V) */
	MB_LOGITS_NONE,      /* no unembedding (LN_f still runs if its hook is observed) */
} mb_logits_mode;

/*
 * One forward. tokens may be NULL when the run starts from start_resid.
 * Compute only what is read: in MB_LOGITS_LAST / POSITIONS the unembedding
 * runs on the selected rows only, and so does the last layer after its q/k/v
 * (keys and values need every row) unless a hook observes a later point of
 * that layer, ln_final or keep_activations is set. Those selected rows go
 * through our own row kernels (a BLAS call on a handful of rows would either
 * repack the whole (V, D) unembedding per item or break batch invariance),
 * so LAST/POSITIONS logits agree with MB_LOGITS_ALL's to rounding, not bit
 * for bit. Each mode is itself deterministic and batch invariant.
 * A run whose last layer cannot take that tail (a hook observes its
 * attention scores, pattern or hook_z, or start_z starts there), or that sets
 * exact_tail, runs the last layer with the bits of the full layer: on the
 * portable GEMM (every element one FMA chain, whatever other rows are
 * computed) still only the selected rows go on after hook_z, through the same
 * GEMMs, and with nothing observed before hook_z but its keys and values
 * only the selected query rows are computed (their q, scores, softmax and
 * P V restricted to those rows); on another backend the whole last layer
 * runs. Either way the selected logits are the same bits as the full last
 * layer's, so runs that patch one layer (exact_tail) and runs that observe
 * the last layer (a cache of hook_z) give comparable values.
 */
typedef struct mb_run {
	int batch;                /* B, 1..max_batch */
	int seq;                  /* T, 1..max_seq */
	const int32_t *tokens;    /* (B, T) token ids; positions >= len[b] are ignored */
	const int32_t *lengths;   /* (B) valid positions per item, 1..T; NULL = all T */
	const mb_hooks *hooks;    /* NULL = none */
	int start_layer;          /* 0: from the embeddings; l > 0: from resid_pre of layer l */
	const float *start_resid; /* (B, T, D) blocks.{l}.hook_resid_pre, needed when start_layer > 0 */
	const float *start_z;     /* (B, T, D) blocks.{l}.attn.hook_z of start_layer, or NULL: when
				     given, LN1, QKV and attention of start_layer are skipped and
				     the run starts at that layer's hook_z (which still fires) */
	mb_logits_mode logits;
	int n_positions;          /* N per item, for MB_LOGITS_POSITIONS */
	const int32_t *positions; /* (B, N) positions, each < len[b] */
	int exact_tail;           /* LAST/POSITIONS: the selected logits get the bits of a full
				     last layer, never the row kernels' (see below) */
} mb_run;

/*
 * Activations of the last run, packed rows (R = rows of the run). With
 * keep_activations every layer has its own buffers (what the backward needs);
 * without, all layers share slot 0 and only the last layer's values remain.
 * ln*_xhat is the hook value (x - mean) / sqrt(var + eps) before the affine;
 * with MB_NORM_NONE it is a copy of the input. ln*_out is the affine output
 * (the GEMM input). att holds, per (b, h), a T x T block: the pattern after the
 * run (scores are overwritten in place by the softmax) when keep_activations
 * is set or a scores/pattern hook observed the layer; otherwise att is not
 * written (the attention runs its query blocks through a small per-thread
 * scratch, which stays in cache at long context). Rows i < len[b] hold
 * pattern[i][j] for j <= i and zeros for masked j inside the attention's query
 * block; beyond the query block the entries are only written (zeros, and -inf
 * for scores) when keep_activations is set or a scores/pattern hook observed.
 */
typedef struct mb_engine_layer_acts {
	float *resid_pre; /* (R, D) */
	float *ln1_xhat;  /* (R, D) */
	float *ln1_mean;  /* (R) */
	float *ln1_rstd;  /* (R) 1 / sqrt(var + eps) */
	float *ln1_out;   /* (R, D) */
	float *qkv;       /* (R, 3D) q | k | v, bias included */
	float *att;       /* (B, H, T, T) */
	float *z;         /* (R, D) heads concatenated, (R, H, Dh) */
	float *attn_out;  /* (R, D) includes b_O */
	float *resid_mid; /* (R, D) */
	float *ln2_xhat;  /* (R, D) */
	float *ln2_mean;  /* (R) */
	float *ln2_rstd;  /* (R) */
	float *ln2_out;   /* (R, D) */
	float *mlp_pre;   /* (R, M) */
	float *mlp_post;  /* (R, M) */
	float *mlp_out;   /* (R, D) */
} mb_engine_layer_acts;

typedef struct mb_engine_acts {
	int n_slots;                   /* L with keep_activations, else 1 */
	mb_engine_layer_acts *layer;   /* (n_slots) */
	float *resid_final;            /* (R, D) resid_post of the last layer (not written by an
					  MB_LOGITS_NONE run that observes nothing after the last
					  layer's hook_z: that run stops there) */
	float *lnf_xhat;               /* (R, D) */
	float *lnf_mean;               /* (R) */
	float *lnf_rstd;               /* (R) */
	float *lnf_out;                /* (R, D) */
	int tail;                      /* 0, or B: the run used the compact tail, and the last
					  layer's attn_out, resid_mid, ln2_*, mlp_* and
					  resid_final, lnf_* hold item b's last position in row b
					  (rows 0..B-1) and nothing else */
	float *tail_z;                 /* (B, D) with tail: the last layer's z at those rows */
} mb_engine_acts;

/* The packed-row plan of the last run. */
typedef struct mb_engine_rows {
	int batch;             /* B */
	int seq;               /* T */
	int group;             /* U */
	int rows;              /* R = sum over items of len[b] rounded up to U (dense rows:
				  the sum, rounded up to U once) */
	const int32_t *len;    /* (B) */
	const int32_t *row0;   /* (B) first row of item b */
} mb_engine_rows;

typedef struct mb_engine_opts {
	int max_batch;        /* largest B a run may use */
	int max_seq;          /* largest T (<= n_ctx) */
	int keep_activations; /* per-layer activation buffers for the backward */
} mb_engine_opts;

typedef struct mb_engine mb_engine;

/* Creates an engine for cfg over borrowed weights (which must outlive it),
 * probes the GEMM row group and allocates the activation arena once for
 * opts' largest run. */
int mb_engine_init(mb_engine **out, const mb_engine_config *cfg, const mb_engine_weights *w,
		   const mb_engine_opts *opts, mb_error *err);
void mb_engine_free(mb_engine *e);

/* Dense rows (off by default; for training, where a step is one fixed batch):
 * later runs pack items back to back and pad only the run's end to U, so a
 * batch of 3-token items is not padded to U rows each. Results stay the same
 * bits for any thread count, but batch invariance is lost: an item's bits
 * may depend on its row offset modulo U. */
void mb_engine_set_dense_rows(mb_engine *e, int dense);

/* Compact tail (off by default; for training on the last position, e.g.
 * modular addition): with keep_activations, a run with MB_LOGITS_LAST, no
 * hooks, no start_z and every item of length T computes the last layer after
 * the attention (attn_out, the MLP, LN_f, the logits) only at each item's last
 * position, in B compact rows (mb_engine_acts.tail) that the backward reads,
 * through the same BLAS GEMMs (not the row kernels of the selected-row path
 * without keep_activations: a training batch is thousands of rows). The
 * logits are what the full run gives, to rounding.
 * Parallel-residual models never use it (runs stay full). */
void mb_engine_set_compact_tail(mb_engine *e, int compact);

/* Runs a forward. Checks the run (sizes, token ids < V, lengths, positions,
 * hooks valid for this model, start layer) before computing anything; errors
 * name the item, position or hook. A hook callback's error aborts the run and
 * is returned prefixed with the hook's name. Hooks are called on the calling
 * thread, outside parallel regions, in forward order. An engine runs one
 * forward at a time (its arena is the run's state): to run items in parallel
 * use one engine per thread over the same weights. */
int mb_engine_forward(mb_engine *e, const mb_run *run, mb_error *err);

/* Head `head`'s causal attention, outside a forward: z (batch, seq, H, Dh)
 * gets that head's columns at each item's valid positions (t < lengths[b];
 * lengths NULL: every position; nothing else of z is written) from q, k, v
 * (batch, seq, H, Dh) each, hook_q / hook_k / hook_v views, already rotated
 * for rotary models. The forward's own kernel on the forward's layout, so
 * the bits are those the forward gives that head from the same q, k, v: a
 * patching arm that changes one head's q, k or v can start at the layer's
 * hook_z (start_z) with this head recomputed instead of rerunning the
 * layer's projection and every head. Uses the engine's scratch (not during
 * a forward). Errors: out of memory. */
int mb_engine_head_attention(mb_engine *e, float *z, const float *q, const float *k,
			     const float *v, int batch, int seq, const int32_t *lengths, int head,
			     mb_error *err);

/* Logits of the last run. Row i of item b: the position t = i (ALL), the last
 * position (LAST, i = 0) or positions[b][i] (POSITIONS). Borrowed, valid
 * until the next run. NULL when out of range or no logits were computed. */
const float *mb_engine_logits_row(const mb_engine *e, int b, int i);
/* Logits rows per item of the last run: T (ALL), 1 (LAST), N (POSITIONS), 0. */
int mb_engine_logits_per_item(const mb_engine *e);
/* Copies the last run's logits to out (B, logits_per_item, V), zeros at
 * padded positions. */
void mb_engine_logits_copy(const mb_engine *e, float *out);

const mb_engine_config *mb_engine_cfg(const mb_engine *e);
const mb_engine_weights *mb_engine_w(const mb_engine *e);
const mb_engine_acts *mb_engine_activations(const mb_engine *e);
void mb_engine_rows_of(mb_engine_rows *out, const mb_engine *e);
/* U, the GEMM row group this engine uses; 0 when the probe found none on this
 * BLAS (rows are then not packed in groups and batch invariance of the dense
 * layers is not guaranteed; every dense GEMM then runs as one single-threaded
 * call so that thread-count invariance still holds). */
int mb_engine_row_group(const mb_engine *e);

#endif
