/*
 * sae_train.h: training and evaluating sparse autoencoders (sae.h) on a
 * model's activations streamed from the engine over a token corpus, and on
 * the toy model of superposition (ground truth).
 *
 * Legend: B sequences of a corpus batch, T positions, D d_in, S d_sae,
 * R rows (tokens) of an SAE step, V vocab.
 *
 * Nothing holds the corpus in memory: a corpus yields batches of sequences
 * on demand (a zoo recipe's generator, or a text file read line by line and
 * tokenized as it goes), the activation stream keeps one shuffle buffer of
 * rows, and the trainer one step's rows. Every draw is Philox (rng.h) from a
 * named stream: "sae/init" (decoder directions), "sae/shuffle" (buffer
 * refill r's permutation, index r), "sae/tms/directions" and
 * "sae/tms/rows" (row i, index i). The trained SAE is bitwise the same for
 * any thread count (sae.h "Determinism"; AdamW is elementwise; the engine
 * is thread-count invariant).
 */
#ifndef MECHBENCH_SAE_TRAIN_H
#define MECHBENCH_SAE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <mechbench/engine.h>
#include <mechbench/error.h>
#include <mechbench/hooks.h>
#include <mechbench/model.h>
#include <mechbench/sae.h>
#include <mechbench/zoo.h>

/* ---- corpora ---- */

/* One batch of sequences, all of length seq. targets: (batch,
 * rows_per_item) next-token (or answer) ids in the rows the logits mode
 * gives (mb_engine_logits_row), -1 = none. Borrowed from the corpus. */
typedef struct mb_sae_batch {
	int batch, seq;
	const int32_t *tokens;  /* (B, T) */
	const int32_t *targets; /* (B, rows_per_item) */
	int rows_per_item;      /* T (MB_LOGITS_ALL) or 1 (MB_LOGITS_LAST) */
	mb_logits_mode logits;
} mb_sae_batch;

typedef struct mb_sae_corpus mb_sae_corpus;

/*
 * A zoo model's own language: the recipe named by DIR/training_state.json
 * ("recipe": name, preset, seed), batch i (0-based) being the recipe's
 * training batch of step first_batch + i + 1 (zoo_int.h: a pure function of
 * recipe and step). Errors name the file and field; a "custom" preset is
 * refused (its fields are not recoverable from the name).
 */
int mb_sae_corpus_open_zoo(mb_sae_corpus **out, const char *model_dir, int64_t first_batch,
			   mb_error *err);
/*
 * A UTF-8 text file through tok: read line by line, each line encoded and
 * appended to a token stream cut into sequences of ctx tokens (targets: the
 * next token, -1 at the last position), batch sequences per batch. At the
 * end of the file it starts again from the top (epochs). first_batch batches
 * are skipped. Errors: the file (missing, empty of tokens), a line that does
 * not encode (its line number).
 */
int mb_sae_corpus_open_text(mb_sae_corpus **out, const char *path, const mb_tokenizer *tok,
			    int ctx, int batch, int64_t first_batch, mb_error *err);
void mb_sae_corpus_free(mb_sae_corpus *c);
/* The next batch (borrowed until the next call). */
int mb_sae_corpus_next(mb_sae_corpus *c, mb_sae_batch *out, mb_error *err);
/* Largest batch and sequence length the corpus yields. */
void mb_sae_corpus_shape(const mb_sae_corpus *c, int *max_batch, int *seq);
/* "zoo:induction/fast seed 0" or "text:FILE ctx 64", for records. */
const char *mb_sae_corpus_describe(const mb_sae_corpus *c);

/* ---- row sources ---- */

/* The row source the trainer reads (mb_sae_source) is in sae.h: a training
 * step reads its rows itself. */

/*
 * Activations of one hook point of model over a corpus (which the stream
 * borrows), every valid position of every sequence, through a shuffle buffer
 * of buffer_batches corpus batches: each refill r runs the next batches and
 * serves their rows in the Philox permutation of stream "sae/shuffle" index
 * r under seed.
 */
typedef struct mb_sae_acts mb_sae_acts;

int mb_sae_acts_init(mb_sae_acts **out, const mb_model *model, mb_hook_point point,
		     mb_sae_corpus *corpus, int buffer_batches, uint64_t seed, mb_error *err);
void mb_sae_acts_free(mb_sae_acts *a);
/* The stream as a row source. */
mb_sae_source mb_sae_acts_source(mb_sae_acts *a);

/*
 * The toy model of superposition (Elhage et al. 2022, "Toy Models of
 * Superposition"; the data of Sharkey et al. 2022): n_features unit
 * directions in d dims (d < n possible), each row x = sum_i a_i u_i with a_i
 * = U[0, 1) with probability p (independently), else 0. Directions from
 * stream "sae/tms/directions", row r from "sae/tms/rows" index r.
 */
typedef struct mb_sae_tms {
	int n_features, d;
	double p;
	uint64_t seed;
	float *directions; /* (n_features, d) owned */
	int64_t next_row;
} mb_sae_tms;

int mb_sae_tms_init(mb_sae_tms *t, int n_features, int d, double p, uint64_t seed, mb_error *err);
/*
 * The trained variant (Elhage et al. 2022, sec. 2): a model x' = ReLU(W^T W
 * x + b) with W (d, n) trained by Adam (lr, betas 0.9/0.999) for `steps`
 * steps of `batch` sparse feature vectors (stream "sae/tms/model", row i
 * index i; every feature of importance 1) on the loss mean_b |x - x'|^2,
 * starting from W's columns = the random directions and b = 0. Afterwards
 * the source yields the hidden h = W x of fresh feature vectors and
 * directions[i] is W's column i (its norm says how strongly the model
 * represents feature i). *represented gets the count of columns of norm >=
 * 0.5. Deterministic (serial sums in row order).
 */
int mb_sae_tms_train_model(mb_sae_tms *t, int64_t steps, int batch, double lr, int *represented,
			   mb_error *err);
void mb_sae_tms_dispose(mb_sae_tms *t);
mb_sae_source mb_sae_tms_source(mb_sae_tms *t);

/* ---- training ---- */


typedef struct mb_sae_train_config {
	mb_sae_arch arch;      /* MB_SAE_RELU or MB_SAE_TOPK */
	int width;             /* S */
	int k;                 /* TopK */
	double l1;             /* ReLU's lambda (after its warmup) */
	int64_t tokens;        /* rows to train on (steps = tokens / batch) */
	int batch;             /* rows per step */
	uint64_t seed;
	double lr;             /* 0: 2e-4 sqrt(16384 / S), at most 1e-3 (Gao et al. sec. 2.2) */
	double aux_coef;       /* TopK AuxK coefficient (Gao et al.: 1/32) */
	int64_t dead_tokens;   /* a latent is dead after this many rows without firing;
				  0: min(10M (Gao et al.), tokens / 4) */
	int64_t init_rows;     /* rows read first for the normalisation and the
				  geometric median (not trained on); 0: 4 batch */
	int64_t log_every;     /* steps between recorded losses; 0: steps / 100 */
} mb_sae_train_config;

/* The published defaults: ReLU (Anthropic April 2024: lambda 5, Adam (0.9,
 * 0.999, eps 1e-8), lambda warmup over the first 5% of steps, lr decay to 0
 * over the last 20%, clip 1) or TopK (Gao et al.: k 32, AuxK 1/32, Adam (0.9,
 * 0.999, eps 6.25e-10), constant lr). batch 4096, width 512. */
mb_sae_train_config mb_sae_train_defaults(mb_sae_arch arch);

typedef struct mb_sae_progress {
	int64_t step, steps;
	int64_t tokens;
	double seconds;
	mb_sae_loss loss;  /* the step's */
	double dead_frac;  /* latents dead (dead_tokens rule) after the step */
} mb_sae_progress;

typedef void (*mb_sae_progress_fn)(const mb_sae_progress *p, void *payload);

typedef struct mb_sae_train_result {
	int64_t steps, tokens;
	double seconds;
	double norm_scale;  /* the activations were multiplied by this while training
			       (E|x|^2 = D, Anthropic April 2024); folded into the
			       saved weights */
	mb_sae_loss final;  /* the last step's loss (normalised space) */
	double dead_frac;
	json_t *record;     /* new reference: config, losses every log_every steps,
			       final values (training_state.json's "sae" part) */
} mb_sae_train_result;

/*
 * Trains an SAE of cfg on rows from src: normalisation factor and
 * geometric-median b_dec from the first init_rows rows (Weiszfeld, double,
 * fixed order), decoder rows random directions of norm 0.1 (ReLU; Anthropic)
 * or 1 (TopK; Gao et al.), W_enc = W_dec^T, b_enc = 0; then steps of
 * forward and backward (mb_sae_train_step), clipping (ReLU), decoder-gradient
 * projection (TopK), Adam, decoder renormalisation (TopK). The returned SAE
 * (*out, caller frees) has the normalisation folded in (W_enc * s, W_dec /
 * s, b_dec / s: it reads raw activations). progress may be NULL.
 */
int mb_sae_train(mb_sae **out, mb_sae_train_result *res, mb_sae_source *src,
		 const mb_sae_train_config *cfg, mb_sae_progress_fn progress, void *payload,
		 mb_error *err);

/*
 * Ground truth in one call: trains cfg on the plain TMS data (n_features
 * unit directions in d dims, each active with probability p; seed) and
 * scores recovery (mb_sae_recovery): *mmcs, *recovered, and the final
 * step's L0 into *l0 (may be NULL). What `sae tms --sweep` prints per p and
 * the report's TMS recovery plot draws.
 */
int mb_sae_tms_recovery(double *mmcs, double *recovered, double *l0, int n_features, int d,
			double p, uint64_t seed, const mb_sae_train_config *cfg,
			mb_error *err);

/* ---- evaluation ---- */

/* One item (sequence): its tokens' metrics. */
typedef struct mb_sae_item_metrics {
	double l0, mse, cos;
	double ce_clean, ce_sae, ce_zero; /* mean over the item's target rows */
	double kl_sae, kl_zero;           /* mean over the item's logits rows */
} mb_sae_item_metrics;

typedef struct mb_sae_eval_result {
	mb_sae_stats_result stats;
	double ce_clean, ce_sae, ce_zero; /* mean cross-entropy over target rows */
	double ce_recovered;   /* (ce_zero - ce_sae) / (ce_zero - ce_clean) (SAEBench
				  "ce_loss_score") */
	double kl_sae, kl_zero; /* mean KL(clean || spliced) over logits rows (SAEBench
				   "kl_div_with_sae", "kl_div_with_ablation") */
	double kl_score;        /* (kl_zero - kl_sae) / kl_zero (SAEBench "kl_div_score") */
	int64_t n_items;
	mb_sae_item_metrics *items; /* (n_items) owned: mb_sae_eval_dispose */
} mb_sae_eval_result;

/*
 * Evaluates sae at point over n_batches corpus batches: per batch a clean
 * forward (the SAE run on the point's rows: L0, FVE, MSE, cos, firing), a
 * forward with the SAE spliced in (mb_sae_splice_hook) and one with the
 * point zero-ablated; cross-entropy and KL in double with detmath's exp and
 * log (logits.h MB_LOGITS_DETMATH).
 */
int mb_sae_evaluate(mb_sae_eval_result *out, const mb_model *model, const mb_sae *sae,
		    mb_hook_point point, mb_sae_corpus *corpus, int64_t n_batches,
		    mb_error *err);
void mb_sae_eval_dispose(mb_sae_eval_result *r);

/*
 * The same metrics per item for n given sequences tokens (n, seq) (every
 * position valid, the target of position t the token at t + 1) run through
 * e (max_batch >= batch) in batches of `batch`: out[i] (n) as
 * mb_sae_evaluate's items (CE over the seq - 1 targeted positions, KL over
 * all seq). Per item, so batch invariant: what the `sae` task runs.
 */
int mb_sae_item_quality(mb_sae_item_metrics *out, mb_engine *e, const mb_sae *sae,
			mb_hook_point point, const int32_t *tokens, size_t n, int seq, int batch,
			mb_error *err);

/* ---- ground truth in a zoo language ---- */

/* The best latent for one known variable. */
typedef struct mb_sae_match {
	char variable[32]; /* "topic=3", "repeat" */
	double base_rate;  /* fraction of tokens where the variable holds */
	int latent;        /* the latent of the highest AUROC (lowest index on ties) */
	double auroc;      /* mb_sae_auroc of its activation */
	double f1;         /* mb_sae_f1 of its firing */
} mb_sae_match;

/*
 * Matches latents to the known variables of the induction language
 * (zoo.h: mb_zoo_induction_sequence) over n_seqs held-out sequences (stream
 * "induction/eval", indices 0..n_seqs-1) of recipe r, every position but BOS:
 * "topic=t" for t < n_topics (the sequence's topic, which every background
 * token is drawn from) and "repeat" (the position is in the second copy of
 * the repeated segment, where induction predicts the next token). *out
 * (n_topics + 1 entries, caller frees) in that order. Errors: a recipe other
 * than induction (its variables are not listed here yet), the point.
 */
int mb_sae_match_induction(mb_sae_match **out, int *n, const mb_model *model, const mb_sae *sae,
			   mb_hook_point point, const mb_zoo_recipe *r, int n_seqs, mb_error *err);
/*
 * The same for the modular-addition language (zoo recipe "modadd", "a b ="
 * -> (a + b) mod P): over all P^2 pairs, the SAE's activation at the '='
 * position against the Fourier variables of the answer that the grokked
 * algorithm computes (Nanda et al. 2023, sec. 4): for each frequency k = 1
 * .. (P - 1) / 2, "cos(2 pi k (a + b) / P) > 0" (variable "cos<k>") and
 * "sin(2 pi k (a + b) / P) > 0" ("sin<k>"). *out (P - 1 of them, caller
 * frees): the best latent per variable as above; a model's key frequencies
 * show as AUROCs near 1, the others near 0.5. Errors: a recipe other than
 * modadd, MB_ENOMEM.
 */
int mb_sae_match_modadd(mb_sae_match **out, int *n, const mb_model *model, const mb_sae *sae,
			mb_hook_point point, const mb_zoo_recipe *r, mb_error *err);
/*
 * The same for the IOI language (zoo recipe "ioi"): n_prompts IOI prompts
 * (ioi_templates.h), prompt k of template k mod n_templates, order ABBA for
 * even k / n_templates, else BABA, two distinct names (IO, S), a place and
 * an object drawn from stream "sae/match/ioi" index k under the recipe's
 * seed, rendered, [BOS] + the words through the recipe's vocabulary
 * (mb_zoo_ioi_word). Rows: every position after BOS. Variables, each with
 * its row mask (MB_SAE_LABEL_SKIP, sae.h; base_rate counts the rows it
 * keeps): "name" (the position holds a name: IO, S1 or S2; all rows), the
 * name roles among the three name positions only: "IO" (the indirect
 * object), "S1" (the subject's first mention), "S2" (its repetition), and
 * "end" (the last position, where the model predicts IO; all rows). IO and
 * S1 are told apart only by what comes after them (ABBA and BABA put either
 * first), so a causal model can hold no latent for them at their own
 * position: expect AUROC near 0.5 there, and S2 (a name seen before) high.
 * *out (5 entries, caller frees) in that order. Errors: a recipe other than
 * ioi, a word the model's vocabulary lacks, a prompt longer than its
 * n_positions, MB_ENOMEM.
 */
int mb_sae_match_ioi(mb_sae_match **out, int *n, const mb_model *model, const mb_sae *sae,
		     mb_hook_point point, const mb_zoo_recipe *r, int n_prompts, mb_error *err);
/*
 * The induction language's labelled features for the causal battery
 * (sae.h): for each topic t, the latent that best detects "topic=t"
 * (mb_sae_match_induction over n_match sequences "induction/eval" 0 ..
 * n_match - 1), its readout (the tokens of topic t: what a topic feature is
 * claimed to drive is the next token's mass on them), and its largest
 * activation on those sequences (the steering reference). features[t] has
 * value t: the battery's labels are readout with the caller's items' topics
 * as present (mb_sae_labels, sae.h).
 */
typedef struct mb_sae_topic_features {
	int n;                    /* n_topics */
	int vocab;                /* V */
	mb_sae_match *match;      /* (n) */
	uint8_t *readout;         /* (n, V) */
	mb_sae_feature *features; /* (n) */
} mb_sae_topic_features;

int mb_sae_topic_features_init(mb_sae_topic_features *out, const mb_model *model,
			       const mb_sae *sae, mb_hook_point point, const mb_zoo_recipe *r,
			       int n_match, mb_error *err);
void mb_sae_topic_features_dispose(mb_sae_topic_features *tf);

/* The recipe of a zoo corpus (NULL for a text corpus). Borrowed. */
const mb_zoo_recipe *mb_sae_corpus_recipe(const mb_sae_corpus *c);

#endif
