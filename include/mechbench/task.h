/*
 * task.h: the interface every benchmark task implements, and the registry.
 *
 * A task is a table of functions (a vtable) with a name and a version:
 *   - generate: the items of a dataset, a pure function of (seed, params);
 *   - open/run/close: load a model directory once, then compute each item's
 *     metric values on it, in batches, from many threads at once;
 *   - prepare (optional): once per entry, before run, from all the entry's
 *     items: fit something the runs share (a discovered circuit) and hand
 *     the runner an artifact (JSON) stored with the entry's results;
 *   - metrics: the definitions of what run writes (name@version, kind,
 *     direction), which suite specs pre-register.
 * The harness (src/harness/) owns datasets, the runner, the store and the
 * gate; a task only knows its items and its model. Real tasks (induction,
 * modular addition, ...) run the transformer engine on a model directory
 * (config.json + model.safetensors); `synthetic` is a small test task.
 *
 * Items are keyed by a content hash, so paired comparisons match items by
 * what they are, never by their position in a file.
 */
#ifndef MECHBENCH_TASK_H
#define MECHBENCH_TASK_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <mechbench/error.h>
#include <mechbench/figure.h>
#include <mechbench/json.h>
#include <mechbench/sha256.h>
#include <mechbench/tokenizer.h>

/* What kind of number a metric is; it picks the statistics (HARNESS.md):
 * continuous -> paired t (clustered SE), binary -> exact McNemar,
 * ratio (skewed or ratio-of-means) -> seeded paired bootstrap. */
typedef enum mb_metric_kind {
	MB_METRIC_CONTINUOUS = 0,
	MB_METRIC_BINARY = 1,
	MB_METRIC_RATIO = 2,
} mb_metric_kind;

typedef enum mb_metric_direction {
	MB_HIGHER_IS_BETTER = 0,
	MB_LOWER_IS_BETTER = 1,
} mb_metric_direction;

/* A metric's definition. The version changes whenever the number a given
 * item and model produce could change; comparing across versions is
 * METRIC-CHANGED, never a number. */
typedef struct mb_metric_def {
	const char *name;    /* "synthetic.score": task-prefixed, no '@' */
	int version;         /* >= 1 */
	mb_metric_kind kind;
	mb_metric_direction direction;
	const char *summary; /* one line: what it measures and where it is defined */
} mb_metric_def;

/* A derived metric, declared as data: metric = a - b per item (a paired
 * effect such as induction.ablate_excess = ablate_top - ablate_random). All
 * three name metrics of the task's table; a and b are not derived
 * themselves. The task's run leaves the metric's slot alone and
 * mb_task_finish fills it. */
typedef struct mb_metric_diff {
	const char *metric, *a, *b;
} mb_metric_diff;

/* One item of a dataset. The key is the SHA-256 (hex) of the item's
 * canonical JSON {"cluster", "input", "stratum"} (compact, sorted keys,
 * reals with 17 significant digits): see mb_item_key. */
typedef struct mb_item {
	char key[MB_SHA256_HEX_LEN];
	char *stratum; /* owned: the stratum the spec weights ("easy", "len=25") */
	char *cluster; /* owned: the cluster for clustered SEs (template id) */
	json_t *input; /* owned reference: the task's payload */
} mb_item;

/* A growable list of items (what generate fills and datasets hold). */
typedef struct mb_item_list {
	mb_item *items;
	size_t n, cap;
} mb_item_list;

/* The first 16 hex digits of an item's content key as an integer: the index
 * of the item's own RNG stream (mb_rng_init_named(&r, seed, "<task>/<what>",
 * mb_item_key_index(key))), so a per-item draw depends only on the item's
 * content, never on its position in a dataset or batch. */
uint64_t mb_item_key_index(const char *key);

/* Computes the content key of (stratum, cluster, input) into key. Returns 0
 * or MB_ENOMEM. */
int mb_item_key(char key[MB_SHA256_HEX_LEN], const char *stratum, const char *cluster,
		const json_t *input, mb_error *err);

/* Appends an item, computing its key. Takes ownership of input (even on
 * error). Returns 0, MB_ENOMEM, or MB_EINVALID for an empty stratum or
 * cluster name. */
int mb_item_list_add(mb_item_list *l, const char *stratum, const char *cluster, json_t *input,
		     mb_error *err);

/* Frees every item and the array; the list may be reused. Safe on zeroed. */
void mb_item_list_dispose(mb_item_list *l);

/* For a generate hook that makes items from a frozen file: reads the file
 * params.source (a non-empty string: a path relative to where `mechbench
 * datasets` runs, or absolute) whose bytes must hash to params.source_sha256
 * (64 hex digits) into *out (malloc'd, NUL-terminated; the caller frees) and
 * *len. what says what the file holds ("one item per line"), for the
 * message when source is missing. Errors: MB_EINVALID naming params.source
 * or params.source_sha256, the file reader's, MB_EMISMATCH with both
 * sha256s. */
int mb_task_read_source(char **out, size_t *len, const json_t *params, const char *what,
			mb_error *err);

/* For a run hook that reads text items: item it's input "text" (a string)
 * encoded with tok, after bos (-1: none), cut to its first cap tokens, into
 * out (cap ids); *n their count. Errors: MB_EINVALID naming the item (text
 * not a string, an id outside [0, n_vocab), fewer than 2 tokens: `why`, what
 * the task needs two for, ends that message), the tokenizer's prefixed with
 * the item. */
int mb_task_text_tokens(int32_t *out, int *n, const mb_tokenizer *tok, int n_vocab,
			int32_t bos, const mb_item *it, int cap, const char *why, mb_error *err);

/*
 * The task vtable. All function pointers are required except those marked
 * OPTIONAL (prepare, figures, derived).
 *
 * Determinism contract (ARCHITECTURE.md): generate draws only from named
 * Philox streams keyed by its seed; run is batch-invariant (an item's values
 * do not depend on which other items share its call) and writes only its own
 * rows of values; run may be called concurrently from several threads on
 * disjoint item ranges with the same state, which it must only read.
 */
typedef struct mb_task {
	const char *name;    /* "synthetic" */
	int version;         /* bump when generate's output for a (seed, params) changes */
	const char *summary; /* one line for `mechbench tasks`-style listings */
	const mb_metric_def *metrics;
	size_t n_metrics;
	/* Items per run() call. A task that batches items into one forward pass
	 * (the engine's GEMMs) sets this to its preferred batch. >= 1. */
	size_t batch;
	/* 0: the runner spreads batches over OpenMP threads with OpenBLAS held at
	 * one thread. 1: run() parallelises inside itself (OpenMP loops and BLAS
	 * threads), so the runner calls it from one thread, batch after batch. */
	int parallel_inside;

	/* Generates a dataset's items from (seed, params) into out (empty on
	 * entry). params may be NULL (defaults). Errors name the params field. */
	int (*generate)(mb_item_list *out, uint64_t seed, const json_t *params, mb_error *err);

	/* Checks a suite entry's run params before anything runs; `at` is the
	 * params object's field path in doc, for file:line:col errors. params
	 * may be NULL (defaults). */
	int (*check_params)(const mb_json_doc *doc, const json_t *params, const char *at,
			    mb_error *err);

	/* Loads the model in model_dir for a run with params (already checked).
	 * *out is the task's state, freed by close. Errors name the model file.
	 * params lives only for the call: the state copies what it keeps. Every
	 * caller that runs a suite entry goes through mb_task_open, which joins
	 * path_params with the spec's root first. */
	int (*open)(void **out, const char *model_dir, const json_t *params, mb_error *err);
	void (*close)(void *state);

	/* OPTIONAL (NULL: none): the run params (top-level keys of params) that
	 * name a file or folder, NULL-terminated ({"sae", NULL}). A relative one
	 * is relative to the spec's root, like the entry's model and dataset:
	 * mb_task_open joins it with the root before open sees it. */
	const char *const *path_params;

	/* OPTIONAL (NULL: the task has no per-entry artifact). Called once per
	 * entry, from one thread, before any run(), with ALL of the entry's
	 * items[0..n) (every shard and MPI rank sees all of them, so each
	 * computes the same artifact and a sharded run's results stay the bits
	 * of one process), after open. May write into state (run() only reads
	 * it afterwards). *artifact (NULL on entry): left NULL, or set to a JSON
	 * object the runner stores with the entry's results and baseline files
	 * carry; ownership passes to the caller. Must be deterministic (same
	 * items, model and params: the same object). A circuit artifact has the
	 * shape HARNESS.md ("Artifacts") fixes: {"kind":"circuit","version":1,
	 * "nodes":[...],"edges":[...],"stability":{...},...}. Errors name the
	 * item or the model file; on error *artifact is left NULL. */
	int (*prepare)(void *state, const mb_item *items, size_t n, json_t **artifact,
		       mb_error *err);

	/* Runs items[0..n) and writes values[i * n_metrics + m] for metric m (in
	 * the order of the metrics array). Every value must be finite. Errors
	 * name the item key. */
	int (*run)(void *state, const mb_item *items, size_t n, double *values, mb_error *err);

	/* OPTIONAL (NULL: the task draws nothing). Adds the task's plots of one
	 * entry to out as data (figure.h): head-effect heatmaps, attention
	 * patterns, Fourier spectra. Called once per entry after run, from one
	 * thread, with a freshly opened state (prepare is not called on it), the
	 * entry's items[0..n) and values (N, M) as run wrote them. Must be
	 * deterministic. The report (`mechbench report`, `drift --html`) draws
	 * what it adds. */
	int (*figures)(void *state, const mb_item *items, size_t n, const double *values,
		       mb_figure_list *out, mb_error *err);

	/* OPTIONAL: the derived metrics (n_derived of them; NULL: none). */
	const mb_metric_diff *derived;
	size_t n_derived;
} mb_task;

/* Opens task t on the model in model_dir for a suite entry's params: the
 * one place where the params t->path_params names are joined with root (the
 * spec's root: its git work tree, "." outside git; NULL or "": none), on a
 * copy handed to t->open; params itself, the spec's text that the store and
 * baselines keep, is not changed. An absolute path is kept as written. The
 * runner and mb_figure_compute open tasks through it. Errors: t->open's,
 * MB_EINVALID when a joined path is too long, MB_ENOMEM. */
int mb_task_open(void **out, const mb_task *t, const char *root, const char *model_dir,
		 const json_t *params, mb_error *err);

/* Runs task t's figures hook on the model in model_dir: opens it with
 * params (mb_task_open, path params joined with root), calls t->figures on
 * the n items and their values (N, M) as t->run wrote them, closes it. A
 * task without the hook adds nothing. Errors are the task's, prefixed with
 * the model folder. (src/tasks/task_figures.c; the figure type itself is
 * util's figure.h.) */
int mb_figure_compute(mb_figure_list *out, const mb_task *t, const char *root,
		      const char *model_dir, const json_t *params, const mb_item *items,
		      size_t n, const double *values, mb_error *err);

/* The registry: every task compiled in (src/tasks/tasks.def). */
const mb_task *mb_task_find(const char *name);
/* The i-th task, i < mb_task_count(), in tasks.def order. */
size_t mb_task_count(void);
const mb_task *mb_task_at(size_t i);

/* The index of metric `name` in t->metrics, or -1. */
int mb_task_metric_index(const mb_task *t, const char *name);

/* Completes the rows values[0..n) (n_metrics each) that t's run wrote for
 * items[0..n): fills every derived metric (t->derived) as a - b in
 * double, then checks that every value is finite. One place for both, called
 * once per batch by mb_task_run (a task's run never calls it). Idempotent. Returns 0, or MB_EINVALID
 * naming the item and metric of the first value that is not finite. A
 * derived metric naming a metric that is missing or itself derived is a
 * programming error (asserted). */
int mb_task_finish(const mb_task *t, const mb_item *items, size_t n, double *values,
		   mb_error *err);

/* Runs a batch: t->run, then mb_task_finish on its rows. What the runner and
 * every other caller use, so a row is never seen without its derived metrics
 * and finiteness is checked in one place. Returns 0 or a negative code. */
int mb_task_run(const mb_task *t, void *state, const mb_item *items, size_t n, double *values,
		mb_error *err);

/* Splits "name@version" into name (cap bytes) and version. Returns 0 or
 * MB_EINVALID (no '@', empty name, version not an integer >= 1). */
int mb_metric_ref_parse(const char *ref, char *name, size_t cap, int *version);

/* "continuous" / "binary" / "ratio"; "higher" / "lower". Parsers return 0
 * or MB_EINVALID. */
const char *mb_metric_kind_name(mb_metric_kind k);
const char *mb_metric_direction_name(mb_metric_direction d);
int mb_metric_kind_parse(const char *s, mb_metric_kind *out);
int mb_metric_direction_parse(const char *s, mb_metric_direction *out);

#endif
