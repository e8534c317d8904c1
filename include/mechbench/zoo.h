/*
 * zoo.h: the model zoo: training recipes (modular addition, induction, IOI), their
 * data generators, and the MANIFEST of the committed zoo.
 *
 * Legend: T positions, V vocab, P modulus of modular addition.
 *
 * A recipe is a named, fully specified training run: model shape, optimizer,
 * schedule, data and the post-training checks that say the model really has
 * its canonical behaviour. Presets are fixed parameter sets of a recipe
 * ("fast", "paper"); everything a run used is written to its
 * training_state.json, so a checkpoint says how it was made. The data of every
 * recipe is a pure function of (seed, named Philox stream, index): the same
 * recipe and seed give the same bytes of every weight file on any thread count
 * (trainer.h).
 *
 * What differs between recipes (presets, field checks, vocabulary, batches,
 * evaluation and its named fields, post-training checks) is one table of
 * operations per recipe (src/train/zoo_int.h), defined in the recipe's own
 * file (src/train/zoo_modadd.c, zoo_induction.c, zoo_ioi.c) and listed once in
 * src/train/zoo_registry.h; the trainer and the CLI read recipes only through
 * it.
 */
#ifndef MECHBENCH_ZOO_H
#define MECHBENCH_ZOO_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <mechbench/adamw.h>
#include <mechbench/error.h>

/* A recipe's table of operations (src/train/zoo_int.h); opaque here. */
typedef struct mb_zoo_recipe_ops mb_zoo_recipe_ops;

#define MB_ZOO_NAME_MAX 32

/* Everything a training run needs. Sizes follow the HF GPT-2 config names. */
typedef struct mb_zoo_recipe {
	char name[MB_ZOO_NAME_MAX];   /* recipe name, "modadd" | "induction" | "ioi" */
	char preset[MB_ZOO_NAME_MAX]; /* "fast" | "paper" | "custom" after overrides */
	const mb_zoo_recipe_ops *ops; /* the recipe's table (set by mb_zoo_recipe_get) */
	uint64_t seed; /* model init, data split and data order */

	/* Model (config.json). */
	int n_layer, n_embd, n_head, n_inner; /* n_inner 0 when attn_only */
	int vocab_size, n_positions;
	int attn_only;                  /* no MLP, no ln_2 */
	int layer_norm;                 /* 1 "LN", 0 "none" */
	int tie_word_embeddings;        /* 0: lm_head.weight is its own tensor */
	char activation[16];            /* "relu" | "gelu_new" | "gelu" */
	double init_std;                /* N(0, init_std) for every weight matrix;
					 * biases 0, LN weight 1 and bias 0 */

	/* Optimizer and schedule. */
	mb_adamw_config adamw;
	int64_t warmup_steps; /* linear warmup (adamw.h mb_lr_warmup) */
	int64_t decay_steps;  /* > 0: the lr falls linearly over the last decay_steps steps,
			       * to lr / decay_steps at the last; 0: constant after warmup */
	double clip_norm;     /* global-norm clipping, 0 = off */
	int64_t steps;        /* optimizer steps */
	int64_t batch_size;   /* sequences per step; 0 = full batch (modadd) */
	int64_t eval_every;   /* steps between evaluations (recorded), > 0 */

	/* The recipes' own fields: each section is read only by its recipe's
	 * table. */

	/* modadd data: all P^2 pairs, a seeded split of train_frac into train. */
	int p;
	double train_frac;

	/* induction data: [BOS], then a segment S of length in [seg_min,
	 * seg_max] twice among background tokens; the background of a sequence
	 * comes from one of n_topics topics (contiguous blocks of 1..V-1) with
	 * probability topic_frac per token, else from all tokens not in S
	 * (zoo_induction.c documents the layout and the draws). */
	int seg_min, seg_max;
	int n_topics;      /* >= 1 */
	double topic_frac; /* in [0, 1] */

	/* facts data: a knowledge base of n_subjects people with one object per
	 * relation, rows of fact sentences (probability fact_frac) and filler
	 * (zoo_facts.c documents the language and the draws). */
	int n_subjects;    /* in [16, 128] */
	double fact_frac;  /* in (0, 1] */

	/* ioi data: [BOS] then sentences, IOI (templates not held out, name
	 * pairs not held out) with probability ioi_frac, else filler
	 * (zoo_ioi.c documents the language and the draws). pair_seed and
	 * heldout_pair_fraction are the IOI generator's (ioi_prompts.h), so the
	 * task's held-out pairs are the recipe's. */
	double ioi_frac;              /* in (0, 1] */
	double pre_frac;              /* a name-free opening first, in [0, 1] */
	double mix_frac;              /* IOI sentences from two templates, in [0, 1] */
	double ending_frac;           /* IOI sentences with an ending of the recipe's own, in [0, 1] */
	double noise_frac;            /* an ending's verb replaced by a random word, in [0, 1] */
	double snoise_frac;           /* a random word just before {S}, in [0, 1] */
	uint64_t pair_seed;
	double heldout_pair_fraction; /* in (0, 1) */

	/* Post-training checks (zoo verify and zoo train report them). */
	double check_test_acc;        /* modadd: final test accuracy >= this */
	double check_induction_score; /* induction: best layer-1 head score >= this */
	double check_loss_ratio;      /* induction: loss(2nd repeat) <= ratio * loss(1st) */
	double check_fact_acc;        /* facts: top-1 recall on training templates >= this */
	double check_ioi_acc;         /* ioi: P(IO > S) on held-out templates >= this */
	double check_logit_diff;      /* ioi: mean logit(IO) - logit(S) there > this */
} mb_zoo_recipe;

/* The recipes and their presets, in the registry's order. */
size_t mb_zoo_recipe_count(void);
const char *mb_zoo_recipe_name(size_t i);
const char *mb_zoo_recipe_summary(size_t i);
/* Preset names of recipe i, NULL-terminated; the first is the default. */
const char *const *mb_zoo_recipe_presets(size_t i);
/* The recipe names joined by ", " ("modadd, induction") into buf (truncated
 * to cap - 1 bytes); returns buf. For messages and usage text. */
const char *mb_zoo_recipe_names(char *buf, size_t cap);

/* Fills out with recipe `name` at preset `preset` and seed. MB_ENOTFOUND
 * names the unknown recipe or preset and lists the known ones. */
int mb_zoo_recipe_get(mb_zoo_recipe *out, const char *name, const char *preset, uint64_t seed,
		      mb_error *err);

/* Checks a recipe's fields for consistency: the common ones (sizes > 0,
 * n_embd % n_head, ...), then the recipe's own (modadd vocab == P + 1 and
 * n_positions == 3, induction segments fit, ...); the message names the
 * field. A recipe without a table (ops NULL) is MB_EINVALID. */
int mb_zoo_recipe_check(const mb_zoo_recipe *r, mb_error *err);

/* The recipe as a JSON object (every field), for training_state.json. New
 * reference, NULL on allocation failure. */
json_t *mb_zoo_recipe_to_json(const mb_zoo_recipe *r);

/* ---- modular addition data ---- */

/* Pair index i in [0, P^2) is (a, b) = (i / P, i % P); its tokens are
 * [a, b, P] ("a b =", '=' is token P) and its target (a + b) mod P. */
void mb_zoo_modadd_tokens(int32_t out[3], int p, uint32_t pair);
int32_t mb_zoo_modadd_target(int p, uint32_t pair);

/* The seeded split: a Philox permutation of 0..P^2-1 (stream
 * "modadd/split", index 0, under seed); the first round(train_frac * P^2)
 * entries, sorted ascending, are the train pairs, the rest (sorted) the test
 * pairs. *out_train and *out_test are malloc'd and owned by the caller. */
int mb_zoo_modadd_split(uint32_t **out_train, size_t *ntrain, uint32_t **out_test,
			size_t *ntest, int p, double train_frac, uint64_t seed, mb_error *err);

/* ---- induction data ---- */

/* Where the repeated segment of a sequence lies: tokens[second + j] ==
 * tokens[first + j] for 0 <= j < len; the tokens of S are distinct, lie
 * outside the sequence's topic and occur nowhere else in the sequence
 * (background tokens may repeat among themselves). */
typedef struct mb_zoo_segment {
	int first, second, len;
	int topic; /* the sequence's topic, in [0, n_topics) */
} mb_zoo_segment;

/* The topic of token t in 1..V-1 under n_topics contiguous blocks:
 * (t - 1) * n_topics / (V - 1). */
int mb_zoo_token_topic(int t, int vocab_size, int n_topics);

/* Sequence `index` of a stream: tokens (T = r->n_positions) with tokens[0] =
 * 0 ([BOS]); a pure function of (r->seed, stream, index, the recipe's
 * sizes). Streams: "induction/train" (the training sequences, index = step
 * * batch + row) and "induction/eval". */
void mb_zoo_induction_sequence(int32_t *out, mb_zoo_segment *seg, const mb_zoo_recipe *r,
			       const char *stream, uint64_t index);

/* Repeated random tokens (TransformerLens's induction-score input):
 * [BOS, R, R] with R of length len drawn uniformly (with replacement) from
 * 1..V-1; out holds 2 * len + 1 tokens. Stream "induction/repeated". */
void mb_zoo_repeated_tokens(int32_t *out, int len, int vocab_size, uint64_t seed,
			    uint64_t index);

/* ---- facts data ---- */

/* The facts recipe's knowledge base and language (src/train/zoo_facts.c
 * documents both): subjects (multi-token names), relations, their objects
 * (one word each) and templates, a pure function of recipe r (copied). The
 * edit datasets are generated from it (facts_requests.h). */
typedef struct mb_zoo_facts mb_zoo_facts;

int mb_zoo_facts_init(mb_zoo_facts **out, const mb_zoo_recipe *r, mb_error *err);
void mb_zoo_facts_free(mb_zoo_facts *kb);
/* Subjects 0..n-1: the name as text ("Adam van Berg"). */
int mb_zoo_facts_subjects(const mb_zoo_facts *kb);
const char *mb_zoo_facts_subject(const mb_zoo_facts *kb, int s);
/* Relations 0..R-1 ("city", "job", "language", "sport"), each with objects
 * 0..O-1 (one word each, disjoint across relations). */
int mb_zoo_facts_relations(void);
const char *mb_zoo_facts_relation(int r);
int mb_zoo_facts_objects(void);
const char *mb_zoo_facts_object(int r, int o);
/* The object of (subject s, relation r). */
int mb_zoo_facts_object_of(const mb_zoo_facts *kb, int s, int r);
/* Templates 0..K-1 of every relation: text with "{}" for the subject, up to
 * where the object follows ("it is known that {} lives in"); held-out ones
 * are never rendered in training. */
int mb_zoo_facts_templates(void);
const char *mb_zoo_facts_template(const mb_zoo_facts *kb, int r, int t);
int mb_zoo_facts_is_heldout(int r, int t);
/* The name of token id (NULL when out of range). */
const char *mb_zoo_facts_word(const mb_zoo_facts *kb, int id);
/* Row `index` of stream (T = r->n_positions tokens): [BOS] then sentences,
 * the last one cut; streams "facts/train" (index (step - 1) * batch + row),
 * "facts/evalrows". */
void mb_zoo_facts_row(int32_t *out, const mb_zoo_facts *kb, const char *stream, uint64_t index);
/* A filler sentence (no fact) as text ending in " .", drawn as the rows
 * draw one from Philox (stream, index) under seed; its length, or -1 when it
 * does not fit cap. */
int mb_zoo_facts_filler(char *out, size_t cap, const mb_zoo_facts *kb, uint64_t seed,
			const char *stream, uint64_t index);

/* ---- ioi data ---- */

/* The ioi recipe's language (src/train/zoo_ioi.c documents it): the
 * vocabulary (token 0 <bos>, 1 ".", 2.. mb_ioi_vocab("WhitespaceSplit")),
 * the sentence generator and the evaluation prompts of recipe r (copied). */
typedef struct mb_zoo_ioi mb_zoo_ioi;

int mb_zoo_ioi_init(mb_zoo_ioi **out, const mb_zoo_recipe *r, mb_error *err);
void mb_zoo_ioi_free(mb_zoo_ioi *d);
/* Row `index` of stream into out (T = r->n_positions tokens): [BOS] then
 * sentences, the last one cut at T; a pure function of (r->seed, stream,
 * index, the recipe's fields). Streams: "ioi/train" (index = (step - 1) *
 * batch + row) and "ioi/evalrows". */
void mb_zoo_ioi_row(int32_t *out, const mb_zoo_ioi *d, const char *stream, uint64_t index);
/* The template ids the ioi recipe holds out of its training text. */
const char *const *mb_zoo_ioi_heldout(size_t *n);
/* The word of token id (out: "" when out of range), as tokenizer.json names it. */
void mb_zoo_ioi_word(char out[16], int id);

/* ---- training ---- */

/* One named value of a recipe's evaluation (the recipe's table lists them). */
typedef struct mb_zoo_eval_field {
	const char *name;     /* the key in training_state.json "evals", e.g. "test_acc" */
	int integer;          /* written as a JSON integer (a head index, a count) */
	const char *progress; /* the progress line's text for it, a printf format of one
			       * double ("test acc %.3f"); NULL: not on the progress line */
	const char *doc;      /* what it measures, one line */
} mb_zoo_eval_field;

#define MB_ZOO_EVAL_MAX 8

/* One evaluation of the model after `step` optimizer steps: value[i] is the
 * recipe's eval field i (mb_zoo_eval_fields; each field's doc says what it
 * measures). */
typedef struct mb_zoo_eval {
	int64_t step;
	double value[MB_ZOO_EVAL_MAX];
} mb_zoo_eval;

/* The eval fields of r's recipe (*n of them, <= MB_ZOO_EVAL_MAX), in value
 * order; static storage. */
const mb_zoo_eval_field *mb_zoo_eval_fields(const mb_zoo_recipe *r, size_t *n);
/* ev's value of the eval field `name` of r's recipe; NAN when the recipe has
 * no such field. */
double mb_zoo_eval_get(const mb_zoo_recipe *r, const mb_zoo_eval *ev, const char *name);

/* TransformerLens's detector threshold: a head whose induction score reaches
 * it counts as an induction head (the induction recipe's checks). */
#define MB_ZOO_INDUCTION_HEAD_SCORE 0.4

typedef struct mb_zoo_progress {
	const mb_zoo_recipe *recipe;
	int64_t step, steps; /* optimizer steps done, total */
	double loss;         /* training loss of the last step */
	double seconds;      /* wall time since training started */
	const mb_zoo_eval *eval; /* non-NULL right after an evaluation */
} mb_zoo_progress;

typedef void (*mb_zoo_progress_fn)(const mb_zoo_progress *p, void *payload);

typedef struct mb_zoo_train_opts {
	const char *out_dir;        /* the final checkpoint directory (created) */
	int64_t checkpoint_every;   /* > 0: also out_dir/checkpoints/step_NNNNNN at step 0,
				     * every N steps and the last step */
	const char *command;        /* the command line, recorded; may be NULL */
	mb_zoo_progress_fn progress; /* called after every step; may be NULL */
	void *payload;
} mb_zoo_train_opts;

typedef struct mb_zoo_result {
	int64_t steps;
	double seconds;        /* training wall time (evaluations and writes included) */
	double final_loss;     /* training loss of the last step */
	mb_zoo_eval final;     /* evaluation after the last step */
	int checks_passed;     /* the recipe's post-training checks all hold */
	char checks[512];      /* the checks, "; "-separated: what was measured against
				* what (the phase steps among them: modadd memorisation
				* and grokking, induction's phase change) */
} mb_zoo_result;

/*
 * Trains recipe r from its seed: initialises the weights (N(0, init_std)
 * matrices from Philox stream "zoo/init", biases 0, LN weight 1), runs
 * r->steps AdamW steps on the recipe's data (trainer.c documents the data
 * order), evaluates every eval_every steps and writes the final checkpoint
 * (config.json, model.safetensors, tokenizer.json, training_state.json) to
 * opts->out_dir, plus the checkpoint series when asked. The weight files are
 * bitwise the same for the same recipe on any thread count. training_state.json
 * records the step, every step's loss, the evaluations, the seed, the
 * recipe, the checks, the command, the time and the machine. The checks are
 * evaluated and reported in out; failing them is not an error here.
 */
int mb_zoo_train(mb_zoo_result *out, const mb_zoo_recipe *r, const mb_zoo_train_opts *opts,
		 mb_error *err);

/* The same training, one step at a time (benchmarks, tests). */
typedef struct mb_zoo_trainer mb_zoo_trainer;

/* Initialises the weights, data, engine, backward and optimizer of r (copied)
 * exactly as mb_zoo_train does. */
int mb_zoo_trainer_init(mb_zoo_trainer **out, const mb_zoo_recipe *r, mb_error *err);
void mb_zoo_trainer_free(mb_zoo_trainer *t);
/* One optimizer step; *loss (may be NULL) gets its training loss (before the
 * update). */
int mb_zoo_trainer_step(mb_zoo_trainer *t, double *loss, mb_error *err);
/* Evaluates the current weights (recorded like mb_zoo_train's evaluations). */
int mb_zoo_trainer_eval(mb_zoo_trainer *t, mb_zoo_eval *out, mb_error *err);
/* Writes config.json, model.safetensors and tokenizer.json of the current
 * weights to dir. */
int mb_zoo_trainer_write_model(const mb_zoo_trainer *t, const char *dir, mb_error *err);
/* modadd: the train pairs in the order a full-batch step feeds them (NULL
 * and *n = 0 for a trainer of another recipe). */
const uint32_t *mb_zoo_trainer_train_pairs(const mb_zoo_trainer *t, size_t *n);
/* The parameter block (engine layout). */
const float *mb_zoo_trainer_params(const mb_zoo_trainer *t, size_t *n);

/* ---- MANIFEST of a committed zoo model ---- */

#define MB_ZOO_MANIFEST_MAX_FILES 16

/* baselines/models/<name>/MANIFEST, a small JSON document:
 * {"name", "preset", "seed", "command", "training_seconds", "machine",
 *  "threads", "commit", "gemm", "files": {"config.json": "<sha256>", ...}};
 * "gemm" (optional: older MANIFESTs lack it) names the GEMM backend that
 * trained the model and what decides its bits, e.g. "gemm=portable isa=avx512"
 * or "gemm=openblas core=Haswell isa=avx512" (gemm.h). */
typedef struct mb_zoo_manifest {
	char name[MB_ZOO_NAME_MAX];
	char preset[MB_ZOO_NAME_MAX];
	uint64_t seed;
	char command[512];
	double training_seconds;
	char machine[256];
	int threads;
	char commit[64];
	char gemm[128]; /* "" when the MANIFEST predates the backend layer */
	size_t nfiles;
	char files[MB_ZOO_MANIFEST_MAX_FILES][64];  /* file names, sorted */
	char sha256[MB_ZOO_MANIFEST_MAX_FILES][65]; /* lower-case hex */
} mb_zoo_manifest;

/* Reads and validates a MANIFEST (unknown keys, bad hex, too many files are
 * errors naming path:line:col and the field). */
int mb_zoo_manifest_read(mb_zoo_manifest *out, const char *path, mb_error *err);
/* The same from text (len bytes; name labels messages). */
int mb_zoo_manifest_parse(mb_zoo_manifest *out, const char *text, size_t len, const char *name,
			  mb_error *err);
/* Writes m to path atomically (path.tmp then rename). */
int mb_zoo_manifest_write(const mb_zoo_manifest *m, const char *path, mb_error *err);
/* Checks the sha256 of every file the manifest lists (in dir) and that dir
 * holds no other regular file than those and MANIFEST. Returns 0 or
 * MB_EMISMATCH naming the first file that differs (with both digests). */
int mb_zoo_manifest_check(const mb_zoo_manifest *m, const char *dir, mb_error *err);

#endif
