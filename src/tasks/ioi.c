/*
 * ioi.c: the IOI (indirect object identification) task (TASKS.md "IOI";
 * Wang et al. 2023, "Interpretability in the Wild"): how well a model names
 * the indirect object, which heads carry that, and a circuit found on one
 * half of the items and held to account on the other.
 *
 * Legend: B batch, T positions of a run, L layers, H heads, Dh d_head,
 * D d_model, V vocab, G templates (mean-ablation groups), N items.
 *
 * Items (generate): the IOI prompt generator's (ioi_prompts.h: strata
 * "<template>/<order>", cluster the template, each item with its ABC and
 * name-swap corruptions and its discovery/evaluation split). The generator
 * needs a tokenizer and a task's generate gets only (seed, params), so the
 * params name it and pin its bytes:
 *   "tokenizer"         the tokenizer.json the token ids come from: a path
 *                       relative to the repository root (the directory
 *                       `mechbench datasets` runs in), e.g.
 *                       "baselines/models/ioi/tokenizer.json", or absolute
 *   "tokenizer_sha256"  the sha256 of that file's bytes (required): the
 *                       recipe, the dataset header and datasets/MANIFEST
 *                       carry it, so a dataset is a pure function of its
 *                       recipe, and a changed tokenizer is one error naming
 *                       both hashes instead of silently different items
 * every other field goes to the prompt generator (mb_ioi_params_parse).
 *
 * Run params (check_params):
 *   "ablation"   how a head outside a circuit is removed (the report
 *                prints it; Miller et al. 2024: faithfulness swings with
 *                it), as circuit.h defines them: "mean-abc" (default; the
 *                head's hook_z replaced by its mean over the ABC prompts
 *                of the item's template at the same position: Wang et al.
 *                section 3), "resample" (another item's ABC prompt of the
 *                same template), "zero"
 *   "bos"        a token id prepended to every prompt (GPT-2: 50256, as
 *                TransformerLens does), or absent for none
 *   "criterion"  the faithfulness a discovered circuit must reach, (0, 1]
 *                (default 0.8)
 *   "circuit"    a pre-registered circuit, ["a9.6", ...]: skips discovery
 *   "name_movers" the heads the name-mover ablation removes, ["a9.9", ...];
 *                default: the circuit's heads in its highest layer
 *   "resamples"  bootstrap resamples of the stability analysis, [0, 1000]
 *                (default 20)
 *   "seed"       seeds the random circuits and the bootstrap (default 0)
 *   "patch_items" items the figures' patching heatmaps average over, the
 *                first ones of the entry, [1, 4096] (default 64)
 *   "search_steps" greedy steps of the completeness and minimality searches,
 *                [0, 64] (default 3; each step evaluates |C| subsets, so a
 *                26-head circuit on GPT-2 small wants 1 or 0; 0 skips both)
 *
 * Per-item metrics: a logit difference is logit(IO) - logit(S) at the
 * prompt's last position (Wang et al. section 2.2); F(X) is the mean logit
 * difference with every head outside X removed ("ablation"), through
 * circuit.h's evaluator (so F(M) too: the same hooks, nothing replaced).
 *   ioi.logit_diff@1        the model's logit difference
 *   ioi.correct@1           1 when logit(IO) > logit(S)
 *   ioi.p_io@1              softmax probability of IO over the vocabulary
 *   ioi.circuit_logit_diff@1 the logit difference with every head outside
 *                           the circuit C removed
 *   ioi.faithfulness@1      circuit_logit_diff / F(M) with F(M) the mean
 *                           logit difference of the item's split: its mean
 *                           over a split is F(C)/F(M) there (Wang et al.
 *                           section 4.1)
 *   ioi.random_faithfulness@1 the same for a random circuit of C's size
 *                           matched by layer (heads of C's layers not in C),
 *                           drawn per item from its content key
 *                           (mb_circuit_control)
 *   ioi.faithfulness_excess@1 faithfulness - random_faithfulness
 *   ioi.faithfulness_gap@1  logit_diff - circuit_logit_diff
 *   ioi.nm_logit_diff@1     the logit difference with the name movers removed
 *   ioi.nm_effect@1         logit_diff - nm_logit_diff
 *   ioi.without_k_model@1, ioi.without_k_circuit@1  F(M \ K)/F(M) and
 *                           F(C \ K)/F(M) per item, K the subset of C the
 *                           completeness search found (Wang et al. 4.2; a greedy search of
 *                           search_steps steps on the circuit's own half;
 *                           K is empty with search_steps 0)
 *   ioi.incompleteness@1    without_k_model - without_k_circuit
 *
 * Discovery and the split (prepare). The circuit is found on the discovery
 * half of the items and evaluated on the other (TASKS.md): every item's
 * circuit metrics use the circuit found on the half it is NOT in, so every
 * per-item value is held out (two-fold cross-fitting) and the entry's pooled
 * faithfulness is an honest estimate; restricted to the evaluation split it
 * is exactly the discovery circuit's F(C)/F(M) there. Discovery ranks heads
 * by their knock-out effect and grows the circuit in rank order until
 * F(C)/F(M) >= criterion (mb_circuit_discover), or takes params.circuit.
 * The artifact is the discovery half's circuit (mb_circuit_to_json: nodes,
 * edges by path patching, ablation, criterion; its stability over
 * `resamples` bootstrap resamples of that half; on a model folder with a
 * circuit.json, precision and recall against it) plus
 *   "faithfulness"  {"mean", "lo", "hi", "level", "split", "method", "n"}:
 *                   F(C)/F(M) on the evaluation half, a 95% delta-method
 *                   interval for the ratio of means
 *   "evaluation"    the held-out judgement on the evaluation half: F(C),
 *                   F(M), F(empty), the normalized faithfulness,
 *                   completeness (worst K of the greedy search),
 *                   minimality per node (Wang et al. 4.3, the 1% rule), the
 *                   random control's mean
 *   "name_movers", "completeness_k"  the discovery half's sets (node ids)
 *   "crossfit"      the evaluation half's circuit, which scores the
 *                   discovery items
 *   "splits"        the number of items in each half
 */
#include <mechbench/task.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/circuit.h>
#include <mechbench/effect.h>
#include <mechbench/engine.h>
#include <mechbench/file.h>
#include <mechbench/figure.h>
#include <mechbench/hooks.h>
#include <mechbench/interventions.h>
#include <mechbench/ioi_prompts.h>
#include <mechbench/logits.h>
#include <mechbench/model.h>
#include <mechbench/rng.h>
#include <mechbench/sha256.h>
#include <mechbench/tokenizer.h>

#define IOI_BATCH 16
#define IOI_MAX_T 128
#define IOI_MAX_HEADS 4096

enum {
	M_LOGIT_DIFF,
	M_CORRECT,
	M_P_IO,
	M_CIRCUIT_LD,
	M_FAITH,
	M_RANDOM_FAITH,
	M_FAITH_EXCESS,
	M_FAITH_GAP,
	M_NM_LD,
	M_NM_EFFECT,
	M_WITHOUT_K_MODEL,
	M_WITHOUT_K_CIRCUIT,
	M_INCOMPLETE,
	M_COUNT
};

static const mb_metric_def ioi_metrics[M_COUNT] = {
	{"ioi.logit_diff", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "logit(IO) - logit(S) at the last position (Wang et al. 2023 section 2.2; ioi.c)"},
	{"ioi.correct", 1, MB_METRIC_BINARY, MB_HIGHER_IS_BETTER,
	 "1 when logit(IO) > logit(S) at the last position (ioi.c)"},
	{"ioi.p_io", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "softmax probability of the IO token at the last position (ioi.c)"},
	{"ioi.circuit_logit_diff", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "logit difference with every head outside the held-out circuit removed (ioi.c)"},
	{"ioi.faithfulness", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "circuit_logit_diff / F(M) of the item's split; its split mean is F(C)/F(M) (Wang et "
	 "al. 2023 section 4.1; ioi.c)"},
	{"ioi.random_faithfulness", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "the same for a random circuit of the circuit's size matched by layer (control; ioi.c)"},
	{"ioi.faithfulness_excess", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "faithfulness - random_faithfulness, paired per item (ioi.c)"},
	{"ioi.faithfulness_gap", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "logit_diff - circuit_logit_diff, paired per item (ioi.c)"},
	{"ioi.nm_logit_diff", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "logit difference with the name-mover heads removed (ioi.c)"},
	{"ioi.nm_effect", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "logit_diff - nm_logit_diff: what the name movers carry, paired per item (ioi.c)"},
	{"ioi.without_k_model", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "F(M \\ K)/F(M) per item, K the completeness search's subset of the circuit (Wang et "
	 "al. 2023 section 4.2; ioi.c)"},
	{"ioi.without_k_circuit", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "F(C \\ K)/F(M) per item (ioi.c)"},
	{"ioi.incompleteness", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "without_k_model - without_k_circuit: Wang's completeness gap, paired per item (ioi.c)"},
};

static const mb_metric_diff ioi_derived[] = {
	{"ioi.faithfulness_excess", "ioi.faithfulness", "ioi.random_faithfulness"},
	{"ioi.faithfulness_gap", "ioi.logit_diff", "ioi.circuit_logit_diff"},
	{"ioi.nm_effect", "ioi.logit_diff", "ioi.nm_logit_diff"},
	{"ioi.incompleteness", "ioi.without_k_model", "ioi.without_k_circuit"},
};

/* ---- generate ------------------------------------------------------------------ */

/* Reads params.tokenizer, checks its bytes against params.tokenizer_sha256
 * and parses them (the same bytes: nothing can change between the check and
 * the parse). */
static int gen_tokenizer(mb_tokenizer **out, const char **path_out, const json_t *params,
			 mb_error *err)
{
	json_t *p = params ? json_object_get(params, "tokenizer") : NULL;
	json_t *h = params ? json_object_get(params, "tokenizer_sha256") : NULL;
	char sha[MB_SHA256_HEX_LEN], *text = NULL;
	const char *path;
	size_t len = 0;
	int rc;

	*out = NULL;
	if (!json_is_string(p) || !json_string_length(p))
		return mb_error_set(err, MB_EINVALID, "params.tokenizer: required: the path of the "
				    "tokenizer.json the prompts are tokenized with (relative to "
				    "the repository root), e.g. \"baselines/models/ioi/tokenizer."
				    "json\"");
	path = json_string_value(p);
	*path_out = path;
	if ((rc = mb_file_read_text(&text, &len, path, err)) < 0)
		return mb_error_prefix(err, "params.tokenizer");
	mb_sha256_hex_buf(sha, text, len);
	if (!json_is_string(h)) {
		rc = mb_error_set(err, MB_EINVALID, "params.tokenizer_sha256: required: the sha256 "
				  "of %s, which is %s (it pins the dataset to those bytes)", path,
				  sha);
		goto cleanup;
	}
	if (strcmp(json_string_value(h), sha) != 0) {
		rc = mb_error_set(err, MB_EMISMATCH, "params.tokenizer_sha256: %s has sha256 %s, "
				  "the recipe says %s (another tokenizer: these items would not be "
				  "the recorded ones)", path, sha, json_string_value(h));
		goto cleanup;
	}
	rc = mb_tokenizer_parse(out, text, len, path, err);
cleanup:
	free(text);
	return rc;
}

static int ioi_generate(mb_item_list *out, uint64_t seed, const json_t *params, mb_error *err)
{
	mb_tokenizer *tok = NULL;
	json_t *gen = NULL;
	const char *path = NULL;
	int rc;

	if (params && !json_is_object(params))
		return mb_error_set(err, MB_EINVALID, "params: expected an object");
	if ((rc = gen_tokenizer(&tok, &path, params, err)) < 0)
		return rc;
	if (!(gen = json_deep_copy(params))) {
		rc = mb_error_oom(err, "ioi params", 0);
		goto cleanup;
	}
	json_object_del(gen, "tokenizer");
	json_object_del(gen, "tokenizer_sha256");
	rc = mb_ioi_generate(out, seed, gen, tok, path, err);
cleanup:
	json_decref(gen);
	mb_tokenizer_free(tok);
	return rc;
}

/* ---- params -------------------------------------------------------------------- */

/* "a<layer>.<head>" -> (layer, head); -1 when s is not such an id. */
static int head_id_parse(const char *s, int *layer, int *head)
{
	long l, h;
	char *end;

	if (s[0] != 'a' || s[1] < '0' || s[1] > '9')
		return -1;
	l = strtol(s + 1, &end, 10);
	if (*end != '.' || end[1] < '0' || end[1] > '9' || l > 100000)
		return -1;
	h = strtol(end + 1, &end, 10);
	if (*end || h > 100000)
		return -1;
	*layer = (int)l;
	*head = (int)h;
	return 0;
}

static int check_heads(const mb_json_doc *doc, const json_t *params, const char *at,
		       const char *key, mb_error *err)
{
	json_t *a = json_object_get(params, key);
	char field[256], f2[300];
	int l, h;

	if (!a)
		return 0;
	mb_json_path_key(field, sizeof(field), at, key);
	if (!json_is_array(a) || json_array_size(a) < 1 || json_array_size(a) > IOI_MAX_HEADS)
		return mb_json_field_error(doc, err, MB_EINVALID, field, "expected an array of 1 "
					   "to %d head ids \"a<layer>.<head>\"", IOI_MAX_HEADS);
	for (size_t i = 0; i < json_array_size(a); i++) {
		json_t *v = json_array_get(a, i);
		mb_json_path_index(f2, sizeof(f2), field, i);
		if (!json_is_string(v) || head_id_parse(json_string_value(v), &l, &h) < 0)
			return mb_json_field_error(doc, err, MB_EINVALID, f2, "expected a head id "
						   "\"a<layer>.<head>\" such as \"a9.6\"");
		for (size_t j = 0; j < i; j++)
			if (strcmp(json_string_value(json_array_get(a, j)), json_string_value(v)) ==
			    0)
				return mb_json_field_error(doc, err, MB_EINVALID, f2, "%s is listed "
							   "twice", json_string_value(v));
	}
	return 0;
}

static int ioi_check_params(const mb_json_doc *doc, const json_t *params, const char *at,
			    mb_error *err)
{
	static const char *const allowed[] = {"ablation", "bos", "criterion", "circuit",
					      "name_movers", "resamples", "seed", "patch_items",
					      "search_steps", NULL};
	const char *s = NULL;
	double crit = 0.8;
	int64_t v;
	int rc;

	if (!params)
		return 0;
	if (!json_is_object(params))
		return mb_json_field_error(doc, err, MB_EINVALID, at, "expected an object");
	if ((rc = mb_json_check_keys(doc, (json_t *)params, at, allowed, err)) < 0 ||
	    (rc = mb_json_get_int(doc, (json_t *)params, at, "bos", 0, 0, INT32_MAX, &v, err)) < 0 ||
	    (rc = mb_json_get_int(doc, (json_t *)params, at, "resamples", 0, 0, 1000, &v, err)) <
		    0 ||
	    (rc = mb_json_get_int(doc, (json_t *)params, at, "seed", 0, 0, INT64_MAX, &v, err)) <
		    0 ||
	    (rc = mb_json_get_int(doc, (json_t *)params, at, "patch_items", 0, 1, 4096, &v, err)) <
		    0 ||
	    (rc = mb_json_get_int(doc, (json_t *)params, at, "search_steps", 0, 0, 64, &v, err)) <
		    0 ||
	    (rc = mb_json_get_number(doc, (json_t *)params, at, "criterion", 0, &crit, err)) < 0 ||
	    (rc = mb_json_get_string(doc, (json_t *)params, at, "ablation", 0, &s, err)) < 0 ||
	    (rc = check_heads(doc, params, at, "circuit", err)) < 0 ||
	    (rc = check_heads(doc, params, at, "name_movers", err)) < 0)
		return rc;
	if (!(crit > 0 && crit <= 1)) {
		char field[256];
		mb_json_path_key(field, sizeof(field), at, "criterion");
		return mb_json_field_error(doc, err, MB_EINVALID, field, "expected a faithfulness "
					   "in (0, 1]");
	}
	if (s) {
		mb_circuit_ablation a;
		char field[256];
		mb_json_path_key(field, sizeof(field), at, "ablation");
		if (mb_circuit_ablation_parse(&a, s, field, err) < 0)
			return mb_json_field_error(doc, err, MB_EINVALID, field, "expected "
						   "\"mean-abc\", \"resample\" or \"zero\"");
	}
	return 0;
}

/* ---- state --------------------------------------------------------------------- */

/* The two halves: circuit[s] is found on the items of split s and scores
 * the items of split 1 - s. */
#define IOI_SPLITS 2

/* An item's content key and its data index. */
typedef struct ioi_key {
	char key[MB_SHA256_HEX_LEN];
	size_t i;
} ioi_key;

typedef struct ioi_state {
	mb_model *model;
	mb_engine *engine; /* mutated by forwards: parallel_inside = 1 keeps run on one thread */
	int L, H, V, N;    /* N circuit nodes: the L H heads */
	mb_circuit_ablation ablation;
	int bos;           /* -1: none */
	double criterion;
	uint64_t seed;
	int resamples, patch_items;
	int search_steps;     /* greedy steps of completeness and minimality; 0: none */
	uint8_t *pre_circuit; /* (N) params.circuit, or NULL */
	uint8_t *pre_nm;      /* (N) params.name_movers, or NULL */

	/* prepare's results: the entry's n items as circuit.h data */
	int prepared;
	size_t n;
	int T;
	int32_t *tokens, *corrupt; /* (n, T) clean and ABC prompts */
	int32_t *lengths, *group;  /* (n) */
	int32_t *io, *s;           /* (n) answer ids */
	uint8_t *split;            /* (n) mb_ioi_split */
	uint64_t *key;             /* (n) mb_item_key_index */
	char (*keys)[MB_SHA256_HEX_LEN]; /* (n) content keys */
	ioi_key *by_key;           /* (n) sorted by key: run() finds its items */
	mb_circuit_data data;
	mb_circuit_eval *ev;
	mb_circuit *circuit[IOI_SPLITS];
	double f_model[IOI_SPLITS]; /* F(M) of each split, through the evaluator */
	uint8_t *nm[IOI_SPLITS];    /* (N) name movers of circuit[s] */
	uint8_t *k_set[IOI_SPLITS]; /* (N) the completeness search's K on split s */
} ioi_state;

static void prepared_dispose(ioi_state *st)
{
	mb_circuit_eval_free(st->ev);
	st->ev = NULL;
	free(st->tokens);
	free(st->corrupt);
	free(st->lengths);
	free(st->group);
	free(st->io);
	free(st->s);
	free(st->split);
	free(st->key);
	free(st->keys);
	free(st->by_key);
	st->tokens = st->corrupt = st->lengths = st->group = st->io = st->s = NULL;
	st->split = NULL;
	st->key = NULL;
	st->keys = NULL;
	st->by_key = NULL;
	for (int s = 0; s < IOI_SPLITS; s++) {
		mb_circuit_free(st->circuit[s]);
		free(st->nm[s]);
		free(st->k_set[s]);
		st->circuit[s] = NULL;
		st->nm[s] = st->k_set[s] = NULL;
	}
	st->prepared = 0;
}

static void ioi_close(void *state)
{
	ioi_state *st = state;

	if (!st)
		return;
	prepared_dispose(st);
	mb_engine_free(st->engine);
	mb_model_free(st->model);
	free(st->pre_circuit);
	free(st->pre_nm);
	free(st);
}

/* params[key] (checked) as an (N) mask; a head outside the model is an
 * error naming it. No such params entry: *out stays NULL. */
static int heads_param(uint8_t **out, const ioi_state *st, const json_t *params, const char *key,
		       const char *model_dir, mb_error *err)
{
	json_t *a = params ? json_object_get(params, key) : NULL;
	char what[64];
	int node, rc;

	*out = NULL;
	if (!a)
		return 0;
	if (!(*out = calloc((size_t)st->N, 1)))
		return mb_error_oom(err, "ioi heads", 0);
	for (size_t i = 0; i < json_array_size(a); i++) {
		snprintf(what, sizeof(what), "params.%s[%zu]", key, i);
		if ((rc = mb_circuit_node_parse(&node, json_string_value(json_array_get(a, i)),
						&st->model->cfg, 0, what, err)) < 0)
			return mb_error_prefix(err, "%s", model_dir);
		(*out)[node] = 1;
	}
	return 0;
}

static int ioi_open(void **out, const char *model_dir, const json_t *params, mb_error *err)
{
	ioi_state *st = calloc(1, sizeof(*st));
	mb_engine_opts opts = {0};
	json_t *v;
	int rc;

	*out = NULL;
	if (!st)
		return mb_error_oom(err, "ioi state", sizeof(*st));
	if ((rc = mb_model_load(&st->model, model_dir, err)) < 0)
		goto cleanup;
	st->L = st->model->cfg.n_layer;
	st->H = st->model->cfg.n_head;
	st->V = st->model->cfg.n_vocab;
	st->N = mb_circuit_n_nodes(&st->model->cfg, 0);
	st->bos = -1;
	st->criterion = 0.8;
	st->resamples = 20;
	st->patch_items = 64;
	st->search_steps = 3;
	if (params) {
		if ((v = json_object_get(params, "search_steps")))
			st->search_steps = (int)json_integer_value(v);
		if ((v = json_object_get(params, "bos")))
			st->bos = (int)json_integer_value(v);
		if ((v = json_object_get(params, "criterion")))
			st->criterion = json_number_value(v);
		if ((v = json_object_get(params, "resamples")))
			st->resamples = (int)json_integer_value(v);
		if ((v = json_object_get(params, "patch_items")))
			st->patch_items = (int)json_integer_value(v);
		if ((v = json_object_get(params, "seed")))
			st->seed = (uint64_t)json_integer_value(v);
		if ((v = json_object_get(params, "ablation")) &&
		    (rc = mb_circuit_ablation_parse(&st->ablation, json_string_value(v),
						    "params.ablation", err)) < 0)
			goto cleanup;
	}
	if (st->bos >= st->V) {
		rc = mb_error_set(err, MB_EINVALID, "params.bos: token %d is outside %s's vocabulary "
				  "of %d", st->bos, model_dir, st->V);
		goto cleanup;
	}
	if ((rc = heads_param(&st->pre_circuit, st, params, "circuit", model_dir, err)) < 0 ||
	    (rc = heads_param(&st->pre_nm, st, params, "name_movers", model_dir, err)) < 0)
		goto cleanup;
	opts.max_batch = IOI_BATCH;
	opts.max_seq = st->model->cfg.n_ctx < IOI_MAX_T ? st->model->cfg.n_ctx : IOI_MAX_T;
	if ((rc = mb_engine_init(&st->engine, &st->model->cfg, &st->model->w, &opts, err)) < 0)
		goto cleanup;
	*out = st;
	st = NULL;
cleanup:
	ioi_close(st);
	return rc;
}

/* ---- items and batches --------------------------------------------------------- */

/* What run() reads of an item (the generator's input JSON, ioi_prompts.h). */
typedef struct ioi_item {
	int32_t tok[3][IOI_MAX_T]; /* clean, ABC, swap; BOS first when the run has one */
	int len;
	int32_t io, s;
	int group; /* template index */
	int split; /* mb_ioi_split */
} ioi_item;

enum { P_CLEAN = 0, P_ABC = 1, P_SWAP = 2 };

static int tokens_of(int32_t *out, const json_t *a, const ioi_state *st, const mb_item *it,
		     const char *what, int *len, mb_error *err)
{
	size_t n = json_array_size(a);
	int off = st->bos >= 0;

	if (!json_is_array(a) || n < 2 || n + (size_t)off > (size_t)IOI_MAX_T ||
	    (int)(n + (size_t)off) > st->model->cfg.n_ctx)
		return mb_error_set(err, MB_EINVALID, "item %s: %s: expected 2 to %d token ids "
				    "(the model's n_positions is %d)", it->key, what,
				    IOI_MAX_T - off, st->model->cfg.n_ctx);
	if (off)
		out[0] = st->bos;
	for (size_t i = 0; i < n; i++) {
		json_t *v = json_array_get(a, i);
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) >= st->V)
			return mb_error_set(err, MB_EINVALID, "item %s: %s[%zu]: not a token id of "
					    "the model's vocabulary of %d", it->key, what, i, st->V);
		out[off + (int)i] = (int32_t)json_integer_value(v);
	}
	if (*len && *len != (int)n + off)
		return mb_error_set(err, MB_EINVALID, "item %s: %s has %zu tokens, the clean prompt "
				    "%d", it->key, what, n, *len - off);
	*len = (int)n + off;
	return 0;
}

/* The answer's token under the model's own tokenizer, when the folder has
 * one: a dataset tokenized with another tokenizer fails here, naming the
 * item. The decoded token is " " + word (byte-level BPE) or word up to
 * ASCII case (WordLevel). */
static int check_answer(const ioi_state *st, const mb_item *it, int32_t id, const char *field,
			const char *word, mb_error *err)
{
	char *dec = NULL;
	const char *d;
	size_t len = 0, n;
	int ok, rc;
	mb_error e = {0};

	if (!st->model->tok || !word)
		return 0;
	if ((rc = mb_tokenizer_decode(st->model->tok, &id, 1, &dec, &len, &e)) < 0 &&
	    rc == MB_ENOMEM)
		return mb_error_oom(err, "ioi answer", 0);
	d = dec && dec[0] == ' ' ? dec + 1 : dec;
	n = strlen(word);
	ok = d && strlen(d) == n;
	for (size_t i = 0; ok && i < n; i++) {
		int a = (unsigned char)d[i], b = (unsigned char)word[i];
		ok = (a >= 'A' && a <= 'Z' ? a - 'A' + 'a' : a) == (b >= 'A' && b <= 'Z' ? b - 'A' + 'a' : b);
	}
	if (!ok)
		rc = mb_error_set(err, MB_EMISMATCH, "item %s: %s %d is '%s' under %s's tokenizer, "
				  "the item says '%s' (a dataset made with another tokenizer?)",
				  it->key, field, (int)id, dec ? dec : "(no token)", st->model->dir,
				  word);
	else
		rc = 0;
	free(dec);
	return rc;
}

static int item_parse(ioi_item *out, const ioi_state *st, const mb_item *it, mb_error *err)
{
	const json_t *in = it->input;
	json_t *io = json_object_get(in, "io_id"), *s = json_object_get(in, "s_id");
	json_t *tpl = json_object_get(in, "template"), *split = json_object_get(in, "split");
	int rc;

	out->len = 0;
	if (!json_is_integer(io) || !json_is_integer(s) || !json_is_string(tpl) ||
	    !json_is_string(split) || !json_is_object(json_object_get(in, "abc")) ||
	    !json_is_object(json_object_get(in, "swap")))
		return mb_error_set(err, MB_EINVALID, "item %s: expected an IOI item (io_id, s_id, "
				    "template, split, tokens, abc, swap: ioi_prompts.h)", it->key);
	if ((rc = tokens_of(out->tok[P_CLEAN], json_object_get(in, "tokens"), st, it, "tokens",
			    &out->len, err)) < 0 ||
	    (rc = tokens_of(out->tok[P_ABC], json_object_get(json_object_get(in, "abc"), "tokens"),
			    st, it, "abc.tokens", &out->len, err)) < 0 ||
	    (rc = tokens_of(out->tok[P_SWAP], json_object_get(json_object_get(in, "swap"),
							      "tokens"),
			    st, it, "swap.tokens", &out->len, err)) < 0)
		return rc;
	out->io = (int32_t)json_integer_value(io);
	out->s = (int32_t)json_integer_value(s);
	if (out->io < 0 || out->io >= st->V || out->s < 0 || out->s >= st->V || out->io == out->s)
		return mb_error_set(err, MB_EINVALID, "item %s: io_id %d and s_id %d must be distinct "
				    "ids of the vocabulary of %d", it->key, (int)out->io,
				    (int)out->s, st->V);
	if ((rc = check_answer(st, it, out->io, "io_id",
			       json_string_value(json_object_get(in, "io")), err)) < 0 ||
	    (rc = check_answer(st, it, out->s, "s_id",
			       json_string_value(json_object_get(in, "s")), err)) < 0)
		return rc;
	out->group = mb_ioi_template_find(json_string_value(tpl));
	if (out->group < 0)
		return mb_error_set(err, MB_EINVALID, "item %s: template '%s' is not in this build's "
				    "table", it->key, json_string_value(tpl));
	if (strcmp(json_string_value(split), "discovery") == 0)
		out->split = MB_IOI_DISCOVERY;
	else if (strcmp(json_string_value(split), "evaluation") == 0)
		out->split = MB_IOI_EVALUATION;
	else
		return mb_error_set(err, MB_EINVALID, "item %s: split '%s': expected \"discovery\" or "
				    "\"evaluation\"", it->key, json_string_value(split));
	return 0;
}

/* A batch: prompts (3, B, T), lengths and answers. */
typedef struct ioi_batch {
	int B, T;
	int32_t *tok[3]; /* (B, T) each: P_CLEAN, P_ABC, P_SWAP */
	int32_t len[IOI_BATCH], io[IOI_BATCH], s[IOI_BATCH];
} ioi_batch;

static void batch_dispose(ioi_batch *ib)
{
	for (int p = 0; p < 3; p++)
		free(ib->tok[p]);
}

/* Loads items[0..B), B <= IOI_BATCH. */
static int batch_load(ioi_batch *ib, const ioi_state *st, const mb_item *items, int B,
		      mb_error *err)
{
	ioi_item *it = malloc(sizeof(*it) * (size_t)B);
	int rc = 0;

	memset(ib, 0, sizeof(*ib));
	ib->B = B;
	if (!it)
		return mb_error_oom(err, "ioi batch", sizeof(*it) * (size_t)B);
	for (int b = 0; b < B && rc == 0; b++) {
		rc = item_parse(&it[b], st, &items[b], err);
		if (rc == 0 && it[b].len > ib->T)
			ib->T = it[b].len;
	}
	for (int p = 0; p < 3 && rc == 0; p++)
		if (!(ib->tok[p] = calloc((size_t)B * (size_t)ib->T, sizeof(int32_t))))
			rc = mb_error_oom(err, "ioi batch", 0);
	for (int b = 0; b < B && rc == 0; b++) {
		for (int p = 0; p < 3; p++)
			memcpy(ib->tok[p] + (size_t)b * ib->T, it[b].tok[p],
			       sizeof(int32_t) * (size_t)it[b].len);
		ib->len[b] = it[b].len;
		ib->io[b] = it[b].io;
		ib->s[b] = it[b].s;
	}
	free(it);
	return rc;
}

static mb_run batch_run(const ioi_batch *ib, int prompt)
{
	mb_run r = {.batch = ib->B, .seq = ib->T, .tokens = ib->tok[prompt], .lengths = ib->len,
		    .logits = MB_LOGITS_LAST};
	return r;
}

/* The effect metric: logit(IO) - logit(S) at each item's last position. */
static int ld_metric(double *out, const mb_engine *e, int B, void *payload, mb_error *err)
{
	const ioi_batch *ib = payload;

	for (int b = 0; b < B; b++) {
		out[b] = mb_logits_diff(mb_engine_logits_row(e, b, 0), ib->io[b], ib->s[b]);
		if (!isfinite(out[b]))
			return mb_error_set(err, MB_EINVALID, "logit difference of batch item %d is "
					    "not finite", b);
	}
	return 0;
}

/* ---- effects of one batch (figures) --------------------------------------------- */

/* One batch on the paired-effect layer: its clean run (prompt `base`: the
 * clean prompts, or the swapped ones for corrupted <- clean patching) and
 * the source runs patching reads. */
typedef struct ioi_fx {
	ioi_state *st;
	ioi_batch ib;
	mb_effect *fx;
	uint8_t *mask; /* (B, L, H) the head sweep's (it sets its own heads) */
} ioi_fx;

static void fx_dispose(ioi_fx *f)
{
	mb_effect_free(f->fx);
	batch_dispose(&f->ib);
	free(f->mask);
	memset(f, 0, sizeof(*f));
}

/* Loads the batch (items[0..B)) and runs its clean forward on prompt
 * `base`, caching every layer's resid_pre, hook_z, hook_q, hook_k and hook_v
 * (what restarts and the head input sweeps read). */
static int fx_open(ioi_fx *f, ioi_state *st, const mb_item *items, int B, int base,
		   mb_error *err)
{
	mb_run run;
	int rc;

	memset(f, 0, sizeof(*f));
	f->st = st;
	if ((rc = batch_load(&f->ib, st, items, B, err)) < 0)
		return rc;
	if (!(f->mask = calloc((size_t)B * st->L * st->H, 1)))
		return mb_error_oom(err, "ioi batch", 0);
	run = batch_run(&f->ib, base);
	if ((rc = mb_effect_init(&f->fx, st->engine, ld_metric, &f->ib, err)) < 0 ||
	    (rc = mb_effect_cache_restart(f->fx, err)) < 0)
		return rc;
	for (int l = 0; l < st->L && rc == 0; l++)
		for (int X = 0; X < 3 && rc == 0; X++)
			rc = mb_effect_cache(f->fx, (mb_hook_point){(mb_hook_kind)(MB_HOOK_Q + X), l},
					     err);
	return rc < 0 ? rc : mb_effect_clean(f->fx, &run, err);
}

/* ---- prepare: discovery on one half, evaluation on the other --------------------- */

/* circuit.h's metric: logit(IO) - logit(S) of data item items[j] at its last
 * position. */
static int circuit_metric(double *out, const mb_engine *e, const size_t *items, int batch,
			  void *payload, mb_error *err)
{
	const ioi_state *st = payload;

	for (int j = 0; j < batch; j++) {
		out[j] = mb_logits_diff(mb_engine_logits_row(e, j, 0), st->io[items[j]],
					st->s[items[j]]);
		if (!isfinite(out[j]))
			return mb_error_set(err, MB_EINVALID, "item %s: logit difference is not "
					    "finite", st->keys[items[j]]);
	}
	return 0;
}

static int by_key_cmp(const void *a, const void *b)
{
	return strcmp(((const ioi_key *)a)->key, ((const ioi_key *)b)->key);
}

/* The data index of the item with content key `key`, or -1. */
static long find_key(const ioi_state *st, const char *key)
{
	size_t lo = 0, hi = st->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(st->by_key[mid].key, key);
		if (c == 0)
			return (long)st->by_key[mid].i;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* The entry's items as circuit.h data (clean and ABC prompts, groups =
 * templates, answers, splits, keys). */
static int load_data(ioi_state *st, const mb_item *items, size_t n, mb_error *err)
{
	ioi_item *it = malloc(sizeof(*it));
	int rc = 0;

	st->n = n;
	st->T = 0;
	st->lengths = calloc(n, sizeof(int32_t));
	st->group = calloc(n, sizeof(int32_t));
	st->io = calloc(n, sizeof(int32_t));
	st->s = calloc(n, sizeof(int32_t));
	st->split = calloc(n, 1);
	st->key = calloc(n, sizeof(uint64_t));
	st->keys = calloc(n, sizeof(*st->keys));
	st->by_key = calloc(n ? n : 1, sizeof(ioi_key));
	if (!it || !st->lengths || !st->group || !st->io || !st->s || !st->split || !st->key ||
	    !st->keys || !st->by_key) {
		free(it);
		return mb_error_oom(err, "ioi items", n);
	}
	/* pass 1: everything but the token rows, whose width is the longest prompt */
	for (size_t i = 0; i < n && rc == 0; i++) {
		if ((rc = item_parse(it, st, &items[i], err)) < 0)
			break;
		st->lengths[i] = it->len;
		st->group[i] = it->group;
		st->io[i] = it->io;
		st->s[i] = it->s;
		st->split[i] = (uint8_t)it->split;
		st->key[i] = mb_item_key_index(items[i].key);
		memcpy(st->keys[i], items[i].key, MB_SHA256_HEX_LEN);
		memcpy(st->by_key[i].key, items[i].key, MB_SHA256_HEX_LEN);
		st->by_key[i].i = i;
		if (it->len > st->T)
			st->T = it->len;
	}
	if (rc == 0) {
		st->tokens = calloc(n * (size_t)st->T, sizeof(int32_t));
		st->corrupt = calloc(n * (size_t)st->T, sizeof(int32_t));
		if (!st->tokens || !st->corrupt)
			rc = mb_error_oom(err, "ioi prompts", n * (size_t)st->T);
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		if ((rc = item_parse(it, st, &items[i], err)) < 0)
			break;
		memcpy(st->tokens + i * (size_t)st->T, it->tok[P_CLEAN],
		       sizeof(int32_t) * (size_t)it->len);
		memcpy(st->corrupt + i * (size_t)st->T, it->tok[P_ABC],
		       sizeof(int32_t) * (size_t)it->len);
	}
	free(it);
	if (rc < 0)
		return rc;
	qsort(st->by_key, n, sizeof(ioi_key), by_key_cmp);
	for (size_t i = 1; i < n; i++)
		if (strcmp(st->by_key[i - 1].key, st->by_key[i].key) == 0)
			return mb_error_set(err, MB_EINVALID, "item %s: listed twice",
					    st->by_key[i].key);
	st->data.n = n;
	st->data.seq = st->T;
	st->data.tokens = st->tokens;
	st->data.corrupt = st->corrupt;
	st->data.lengths = st->lengths;
	st->data.group = st->group;
	st->data.n_groups = (int)mb_ioi_template_count();
	st->data.key = st->key;
	st->data.logits = MB_LOGITS_LAST;
	st->data.metric = circuit_metric;
	st->data.payload = st;
	return 0;
}

/* A pre-registered circuit (params.circuit) as a circuit.h circuit. */
static int circuit_from_mask(mb_circuit **out, const ioi_state *st, const uint8_t *mask,
			     mb_error *err)
{
	json_t *doc = json_object(), *nodes = json_array();
	char id[MB_CIRCUIT_ID_MAX];
	int rc;

	if (!doc || !nodes || json_object_set_new(doc, "nodes", nodes) < 0) {
		json_decref(doc);
		return mb_error_oom(err, "ioi circuit", 0);
	}
	for (int v = 0; v < st->N; v++)
		if (mask[v]) {
			mb_circuit_node_id(id, &st->model->cfg, v);
			json_array_append_new(nodes, json_pack("{s:s}", "id", id));
		}
	rc = mb_circuit_from_json(out, doc, &st->model->cfg, 0, "params.circuit", err);
	json_decref(doc);
	return rc;
}

/* The default name movers: the circuit's heads in its highest layer. */
static void default_name_movers(uint8_t *nm, const ioi_state *st, const mb_circuit *c)
{
	int top = -1;

	memset(nm, 0, (size_t)st->N);
	for (int v = 0; v < st->N; v++)
		if (c->member[v] && v / st->H > top)
			top = v / st->H;
	for (int h = 0; top >= 0 && h < st->H; h++)
		nm[top * st->H + h] = c->member[top * st->H + h];
}

/* The truth: <model>/circuit.json when the folder describes its circuit
 * (the planted model does); compared into c. */
static int compare_truth(ioi_state *st, mb_circuit *c, mb_error *err)
{
	char path[4096];
	json_t *doc;
	json_error_t jerr;
	mb_circuit *truth = NULL;
	mb_circuit_pr pr;
	int rc;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/circuit.json", st->model->dir);
	if (!(fp = fopen(path, "rb")))
		return 0;
	fclose(fp);
	if (!(doc = json_load_file(path, 0, &jerr)))
		return mb_error_set(err, MB_EINVALID, "%s:%d:%d: %s", path, jerr.line, jerr.column,
				    jerr.text);
	rc = mb_circuit_from_json(&truth, doc, &st->model->cfg, 0, path, err);
	json_decref(doc);
	if (rc < 0)
		return rc;
	mb_circuit_compare(&pr, c, truth);
	mb_circuit_free(truth);
	return 0;
}

static json_t *node_ids(const ioi_state *st, const uint8_t *mask)
{
	json_t *a = json_array();
	char id[MB_CIRCUIT_ID_MAX];

	for (int v = 0; a && v < st->N; v++)
		if (mask[v]) {
			mb_circuit_node_id(id, &st->model->cfg, v);
			json_array_append_new(a, json_string(id));
		}
	return a;
}

/* Half the 95% interval of the ratio of means r = mean(fc) / mean(fm) by the
 * delta method: se = sd(fc - r fm) / (sqrt(m) |mean(fm)|), times 1.96 (a
 * normal interval; the gate's own statistics run on the per-item
 * faithfulness). Sums in double in item order. */
static double ratio_half_width(const double *fc, const double *fm, size_t m, double r)
{
	double mean_m = 0, mean_d = 0, ss = 0;

	if (m < 2)
		return 0;
	for (size_t i = 0; i < m; i++) {
		mean_m += fm[i];
		mean_d += fc[i] - r * fm[i];
	}
	mean_m /= (double)m;
	mean_d /= (double)m;
	for (size_t i = 0; i < m; i++) {
		double d = fc[i] - r * fm[i] - mean_d;
		ss += d * d;
	}
	return 1.959963984540054 * sqrt(ss / (double)(m - 1)) / (sqrt((double)m) * fabs(mean_m));
}

/* The held-out judgement of circuit c (found on the other half) on the
 * items idx[0..m) (the evaluation split for the artifact's circuit):
 * faithfulness, completeness, minimality and the random control, as JSON. */
static int judge(json_t **out, json_t **faith, ioi_state *st, const mb_circuit *c,
		 const size_t *idx, size_t m, mb_error *err)
{
	mb_circuit_faithfulness_result fr;
	mb_circuit_completeness_result cr = {0};
	mb_circuit_minimality_result *mr = calloc(c->n_nodes ? c->n_nodes : 1, sizeof(*mr));
	double *ctl = malloc(sizeof(double) * (m ? m : 1)), ctl_sum = 0;
	double *fc = malloc(sizeof(double) * (m ? m : 1)), *fm = malloc(sizeof(double) * (m ? m : 1));
	double half;
	json_t *j = NULL, *mins = NULL;
	char id[MB_CIRCUIT_ID_MAX];
	int rc;

	*out = NULL;
	*faith = NULL;
	if (!mr || !ctl || !fc || !fm) {
		rc = mb_error_oom(err, "ioi judgement", m);
		goto cleanup;
	}
	if ((rc = mb_circuit_faithfulness(&fr, fc, fm, NULL, st->ev, c->member, idx, m, err)) <
		    0 ||
	    (st->search_steps > 0 &&
	     ((rc = mb_circuit_completeness(&cr, NULL, NULL, st->ev, c->member, idx, m,
					    st->search_steps, err)) < 0 ||
	      (rc = mb_circuit_minimality(mr, st->ev, c->member, idx, m, st->search_steps, 0.01,
					  err)) < 0)) ||
	    (rc = mb_circuit_control(ctl, NULL, st->ev, c->member, idx, m, err)) < 0)
		goto cleanup;
	for (size_t i = 0; i < m; i++)
		ctl_sum += ctl[i];
	mins = json_array();
	for (size_t i = 0; mins && st->search_steps > 0 && i < c->n_nodes; i++) {
		mb_circuit_node_id(id, &st->model->cfg, mr[i].node);
		json_array_append_new(mins, json_pack("{s:s, s:f, s:f, s:I, s:b}", "id", id, "score",
						      mr[i].score, "relative", mr[i].relative,
						      "k_size", (json_int_t)mr[i].k_size, "pass",
						      mr[i].pass));
	}
	j = json_pack("{s:s, s:I, s:f, s:f, s:f, s:f, s:f, s:{s:f, s:f, s:I, s:f, s:f}, s:o, "
		      "s:{s:f, s:f}}",
		      "split", "evaluation", "n", (json_int_t)m, "faithfulness", fr.ratio,
		      "normalized", fr.normalized, "f_circuit", fr.f_circuit, "f_model", fr.f_model,
		      "f_empty", fr.f_empty, "completeness", "score", cr.score, "relative",
		      cr.relative, "k_size", (json_int_t)cr.worst_size, "f_c_k", cr.f_c_k, "f_m_k",
		      cr.f_m_k, "minimality", mins, "random_control", "f_circuit",
		      m ? ctl_sum / (double)m : 0.0, "faithfulness",
		      m && fr.f_model != 0 ? ctl_sum / (double)m / fr.f_model : 0.0);
	mins = NULL;
	half = ratio_half_width(fc, fm, m, fr.ratio);
	*faith = json_pack("{s:f, s:f, s:f, s:f, s:s, s:s, s:I}", "mean", fr.ratio, "lo",
			   fr.ratio - half, "hi", fr.ratio + half, "level", 0.95, "split",
			   "evaluation", "method", "delta", "n", (json_int_t)m);
	if (!j || !*faith) {
		json_decref(j);
		json_decref(*faith);
		j = *faith = NULL;
		rc = mb_error_oom(err, "ioi judgement", 0);
	}
	*out = j;
cleanup:
	json_decref(mins);
	free(cr.worst);
	free(mr);
	free(ctl);
	free(fc);
	free(fm);
	return rc;
}

/* Moves *v into obj[key] (*v becomes NULL); -1 when v or the set failed. */
static int set_field(json_t *obj, const char *key, json_t **v)
{
	json_t *x = *v;

	*v = NULL;
	return x ? json_object_set_new(obj, key, x) : -1;
}

static int set_field_new(json_t *obj, const char *key, json_t *v)
{
	return set_field(obj, key, &v);
}

static int ioi_prepare(void *state, const mb_item *items, size_t n, json_t **artifact,
		       mb_error *err)
{
	ioi_state *st = state;
	size_t *idx[IOI_SPLITS] = {NULL, NULL}, m[IOI_SPLITS] = {0, 0};
	double *effects = NULL;
	json_t *art = NULL, *eval = NULL, *faith = NULL;
	mb_circuit_opts opts = {st->ablation, 0, st->seed, IOI_BATCH};
	mb_circuit_criterion crit = {MB_CIRCUIT_FAITH_RATIO, st->criterion, 0.05, 0};
	int rc;

	*artifact = NULL;
	prepared_dispose(st);
	if (n == 0)
		return mb_error_set(err, MB_EINVALID, "ioi: an entry with no items");
	if ((rc = load_data(st, items, n, err)) < 0)
		goto cleanup;
	for (int s = 0; s < IOI_SPLITS; s++) {
		if (!(idx[s] = malloc(sizeof(size_t) * (n ? n : 1))) ||
		    !(st->nm[s] = calloc((size_t)st->N, 1)) ||
		    !(st->k_set[s] = calloc((size_t)st->N, 1))) {
			rc = mb_error_oom(err, "ioi splits", n);
			goto cleanup;
		}
		for (size_t i = 0; i < n; i++)
			if (st->split[i] == s)
				idx[s][m[s]++] = i;
		if (m[s] == 0) {
			rc = mb_error_set(err, MB_EINVALID, "ioi: the %s split has no items (a "
					  "circuit is found on one half and judged on the other)",
					  mb_ioi_split_name((mb_ioi_split)s));
			goto cleanup;
		}
	}
	if ((rc = mb_circuit_eval_init(&st->ev, st->engine, &st->data, &opts, err)) < 0)
		goto cleanup;
	if (!(effects = malloc(sizeof(double) * (size_t)st->N * n))) {
		rc = mb_error_oom(err, "ioi effects", n);
		goto cleanup;
	}
	for (int s = 0; s < IOI_SPLITS; s++) {
		mb_circuit_completeness_result cr = {0};

		if (st->pre_circuit) {
			rc = circuit_from_mask(&st->circuit[s], st, st->pre_circuit, err);
		} else if ((rc = mb_circuit_node_effects(effects, st->ev, idx[s], m[s], err)) == 0 &&
			   (rc = mb_circuit_discover(&st->circuit[s], st->ev, effects, idx[s], m[s],
						     &crit, err)) == 0 &&
			   s == MB_IOI_DISCOVERY && st->resamples > 0) {
			rc = mb_circuit_stability(st->circuit[s], st->ev, effects, idx[s], m[s],
						  st->resamples, 0.95, err);
		}
		if (rc < 0)
			goto cleanup;
		if (st->search_steps > 0) {
			if ((rc = mb_circuit_completeness(&cr, NULL, NULL, st->ev,
							  st->circuit[s]->member, idx[s], m[s],
							  st->search_steps, err)) < 0)
				goto cleanup;
			memcpy(st->k_set[s], cr.worst, (size_t)st->N);
			free(cr.worst);
		}
		if (st->pre_nm)
			memcpy(st->nm[s], st->pre_nm, (size_t)st->N);
		else
			default_name_movers(st->nm[s], st, st->circuit[s]);
	}
	/* F(M) of each split, through the evaluator (the faithfulness denominators) */
	for (int s = 0; s < IOI_SPLITS; s++) {
		mb_circuit_faithfulness_result fr;
		if ((rc = mb_circuit_faithfulness(&fr, NULL, NULL, NULL, st->ev,
						  st->circuit[1 - s]->member, idx[s], m[s], err)) < 0)
			goto cleanup;
		if (!(fr.f_model > 0)) {
			rc = mb_error_set(err, MB_EINVALID, "%s: the model does not prefer IO on the "
					  "%s split (mean logit(IO) - logit(S) = %g): faithfulness "
					  "F(C)/F(M) is undefined", st->model->dir,
					  mb_ioi_split_name((mb_ioi_split)s), fr.f_model);
			goto cleanup;
		}
		st->f_model[s] = fr.f_model;
	}
	if ((rc = compare_truth(st, st->circuit[MB_IOI_DISCOVERY], err)) < 0 ||
	    (rc = judge(&eval, &faith, st, st->circuit[MB_IOI_DISCOVERY], idx[MB_IOI_EVALUATION],
			m[MB_IOI_EVALUATION], err)) < 0)
		goto cleanup;
	art = mb_circuit_to_json(st->circuit[MB_IOI_DISCOVERY],
				 st->pre_circuit ? "pre-registered" : "patching");
	if (!art || set_field(art, "faithfulness", &faith) < 0 ||
	    set_field(art, "evaluation", &eval) < 0 ||
	    set_field_new(art, "name_movers", node_ids(st, st->nm[MB_IOI_DISCOVERY])) < 0 ||
	    set_field_new(art, "completeness_k", node_ids(st, st->k_set[MB_IOI_DISCOVERY])) < 0 ||
	    set_field_new(art, "crossfit",
			  json_pack("{s:s, s:o}", "split", "evaluation", "nodes",
				    node_ids(st, st->circuit[MB_IOI_EVALUATION]->member))) < 0 ||
	    set_field_new(art, "splits", json_pack("{s:I, s:I}", "discovery", (json_int_t)m[0],
						   "evaluation", (json_int_t)m[1])) < 0) {
		rc = mb_error_oom(err, "ioi artifact", 0);
		goto cleanup;
	}
	st->prepared = 1;
	*artifact = art;
	art = NULL;
cleanup:
	json_decref(art);
	json_decref(eval);
	json_decref(faith);
	free(effects);
	free(idx[0]);
	free(idx[1]);
	if (rc < 0)
		prepared_dispose(st);
	return rc;
}

/* ---- run ----------------------------------------------------------------------- */

enum { A_CIRCUIT, A_NO_NM, A_NO_K, A_CIRCUIT_NO_K, A_COUNT };

static int ioi_run(void *state, const mb_item *items, size_t n, double *values, mb_error *err)
{
	ioi_state *st = state;
	int B = (int)n, N = st->N, rc = 0;
	size_t didx[IOI_BATCH], sub[IOI_BATCH];
	double arm[A_COUNT * IOI_BATCH], ctl[IOI_BATCH];
	uint8_t *keep = NULL; /* (A_COUNT, N) */
	ioi_batch ib = {0};

	MB_ASSERT(n >= 1 && n <= IOI_BATCH);
	if (!st->prepared)
		return mb_error_set(err, MB_EINVALID, "ioi: run before prepare (the circuit comes "
				    "from prepare on all the entry's items)");
	for (int b = 0; b < B; b++) {
		long d = find_key(st, items[b].key);
		if (d < 0)
			return mb_error_set(err, MB_EINVALID, "item %s: not among the items prepare "
					    "saw", items[b].key);
		didx[b] = (size_t)d;
	}
	/* the model itself: a plain forward, no hooks */
	if ((rc = batch_load(&ib, st, items, B, err)) < 0)
		goto cleanup;
	{
		mb_run run = batch_run(&ib, P_CLEAN);
		if ((rc = mb_engine_forward(st->engine, &run, err)) < 0)
			goto cleanup;
	}
	for (int b = 0; b < B; b++) {
		const float *row = mb_engine_logits_row(st->engine, b, 0);
		double *v = values + (size_t)b * M_COUNT;
		v[M_LOGIT_DIFF] = mb_logits_diff(row, ib.io[b], ib.s[b]);
		v[M_CORRECT] = v[M_LOGIT_DIFF] > 0 ? 1.0 : 0.0;
		v[M_P_IO] = mb_logits_prob(row, st->V, ib.io[b], MB_LOGITS_DETMATH);
	}
	if (!(keep = malloc((size_t)A_COUNT * N))) {
		rc = mb_error_oom(err, "ioi run", 0);
		goto cleanup;
	}
	/* the circuit arms of each split's items, with the other split's circuit */
	for (int s = 0; s < IOI_SPLITS; s++) {
		const uint8_t *c = st->circuit[1 - s]->member, *nm = st->nm[1 - s],
			      *k = st->k_set[1 - s];
		size_t m = 0, dm[IOI_BATCH];
		for (int b = 0; b < B; b++)
			if (st->split[didx[b]] == s) {
				sub[m] = (size_t)b;
				dm[m++] = didx[b];
			}
		if (m == 0)
			continue;
		for (int v = 0; v < N; v++) {
			keep[A_CIRCUIT * N + v] = c[v];
			keep[A_NO_NM * N + v] = !nm[v];
			keep[A_NO_K * N + v] = !k[v];
			keep[A_CIRCUIT_NO_K * N + v] = c[v] && !k[v];
		}
		if ((rc = mb_circuit_eval_run(arm, st->ev, keep, A_COUNT, dm, m, err)) < 0 ||
		    (rc = mb_circuit_control(ctl, NULL, st->ev, c, dm, m, err)) < 0)
			goto cleanup;
		for (size_t j = 0; j < m; j++) {
			double *v = values + sub[j] * M_COUNT, fm = st->f_model[s];
			v[M_CIRCUIT_LD] = arm[A_CIRCUIT * m + j];
			v[M_FAITH] = arm[A_CIRCUIT * m + j] / fm;
			v[M_RANDOM_FAITH] = ctl[j] / fm;
			v[M_NM_LD] = arm[A_NO_NM * m + j];
			v[M_WITHOUT_K_MODEL] = arm[A_NO_K * m + j] / fm;
			v[M_WITHOUT_K_CIRCUIT] = arm[A_CIRCUIT_NO_K * m + j] / fm;
		}
	}
cleanup:
	batch_dispose(&ib);
	free(keep);
	return rc;
}

/* ---- patching sweeps and figures ------------------------------------------------ */

/* Activation patching of one head input at a time: for every (l, h), head
 * h's `kind` activation of layer l (hook_q, hook_k or hook_v: the query,
 * key or value the head computes from its input; hook_z: its output) taken
 * from source slot `slot`, the run restarting at layer l from the clean
 * cache (bitwise a full forward; a q/k/v patch below the last layer starts
 * at the layer's hook_z with only head h's attention recomputed, effect.h).
 * out (L, H, B): patched minus clean logit difference. */
static int sweep(double *out, ioi_fx *f, mb_hook_kind kind, int slot, mb_error *err)
{
	if (kind == MB_HOOK_Z) {
		mb_effect_heads how = {f->mask, NULL, NULL, slot};
		return mb_effect_head_sweep(out, f->fx, NULL, &how, 1, err);
	}
	return mb_effect_head_input_sweep(out, f->fx, NULL, kind, slot, err);
}

/* Path patching of sender (ls, hs) into receiver (lr, hr)'s input `via`
 * (0 q, 1 k, 2 v): the sender's output change between the clean run and
 * source slot `slot`, (z_src - z) W_O, reaches only that input (effect.h,
 * interventions.h). Into the query only at each item's last position (the
 * query that reads the names there); into keys and values at every
 * position. out (B): patched minus clean logit difference. */
static int path_arm(double *out, ioi_fx *f, float *delta, int ls, int hs, int lr, int hr,
		    int via, int slot, mb_error *err)
{
	const ioi_state *st = f->st;
	const mb_engine_config *c = &st->model->cfg;
	mb_hook_point zp = {MB_HOOK_Z, ls};
	mb_effect_path path = {lr, hr, via, delta};
	mb_effect_arm arm = {.path = &path};
	int T = f->ib.T, D = c->d_model;

	mb_interp_head_delta_patch(delta, c, &st->model->w, ls, hs, mb_effect_clean_get(f->fx, zp),
				   mb_effect_source_get(f->fx, slot, zp));
	if (via == 0)
		for (int b = 0; b < f->ib.B; b++)
			memset(delta + (size_t)b * T * D, 0,
			       sizeof(float) * (size_t)(f->ib.len[b] - 1) * D);
	return mb_effect_run_arm(out, NULL, f->fx, &arm, err);
}

/* The source run of slot 1 for patching: prompt `prompt`, caching hook_z,
 * hook_q, hook_k and hook_v of every layer. */
static int patch_source(ioi_fx *f, int prompt, mb_error *err)
{
	static const mb_hook_kind kinds[4] = {MB_HOOK_Z, MB_HOOK_Q, MB_HOOK_K, MB_HOOK_V};
	mb_hook_point *pts = malloc(sizeof(*pts) * 4 * (size_t)f->st->L);
	mb_run run = batch_run(&f->ib, prompt);
	int rc;

	if (!pts)
		return mb_error_oom(err, "ioi patch points", 0);
	for (int l = 0; l < f->st->L; l++)
		for (int k = 0; k < 4; k++) {
			pts[l * 4 + k].kind = kinds[k];
			pts[l * 4 + k].layer = l;
		}
	run.logits = MB_LOGITS_NONE;
	rc = mb_effect_source(f->fx, 1, &run, pts, 4 * f->st->L, NULL, err);
	free(pts);
	return rc;
}

#define IOI_MAX_RECEIVERS 3

/* Figures (the first patch_items items; every value is a mean over them of
 * the patched minus the unpatched logit difference):
 *   ioi.patch.{z,q,k,v}.clean_from_swap  layer x head: each head's output
 *       (hook_z) or query/key/value patched into the clean run from the
 *       name-swapped prompt (what the head carries: negative = needed)
 *   ioi.patch.{z,q,k,v}.swap_from_clean  the same into the swapped run
 *       from the clean prompt (positive = sufficient to restore IO)
 *   ioi.path.<receiver>.{q,k,v}  sender layer x head: path patching of each
 *       earlier head's swap-minus-clean output into the receiver's query (at
 *       the last position), keys or values; receivers: up to three name
 *       movers of the discovery circuit */
static int ioi_figures(void *state, const mb_item *items, size_t n, const double *values,
		       mb_figure_list *out, mb_error *err)
{
	static const mb_hook_kind kinds[4] = {MB_HOOK_Z, MB_HOOK_Q, MB_HOOK_K, MB_HOOK_V};
	static const char *const kname[4] = {"z", "q", "k", "v"};
	static const char *const kdesc[4] = {"output (hook_z)", "query (hook_q)", "key (hook_k)",
					     "value (hook_v)"};
	static const char *const dname[2] = {"clean_from_swap", "swap_from_clean"};
	ioi_state *st = state;
	int L = st->L, H = st->H, rc = 0, n_recv = 0;
	int recv_l[IOI_MAX_RECEIVERS], recv_h[IOI_MAX_RECEIVERS];
	size_t LH = (size_t)L * H, N = n < (size_t)st->patch_items ? n : (size_t)st->patch_items;
	double *acc = NULL, *path = NULL, *eff = NULL; /* (2, 4, L, H), (R, 3, L, H), (L, H, B) */
	float *delta = NULL;
	ioi_fx f;

	(void)values;
	memset(&f, 0, sizeof(f));
	if (n == 0)
		return 0;
	if (!st->prepared) {
		json_t *a = NULL;
		if ((rc = ioi_prepare(st, items, n, &a, err)) < 0)
			return rc;
		json_decref(a);
	}
	for (int l = 0; l < L && n_recv < IOI_MAX_RECEIVERS; l++)
		for (int h = 0; h < H && n_recv < IOI_MAX_RECEIVERS; h++)
			if (st->nm[MB_IOI_DISCOVERY][l * H + h] && l > 0) {
				recv_l[n_recv] = l;
				recv_h[n_recv++] = h;
			}
	acc = calloc(8 * LH, sizeof(double));
	path = calloc(3 * IOI_MAX_RECEIVERS * LH, sizeof(double));
	eff = malloc(sizeof(double) * LH * IOI_BATCH);
	delta = malloc(sizeof(float) * IOI_BATCH * IOI_MAX_T * (size_t)st->model->cfg.d_model);
	if (!acc || !path || !eff || !delta) {
		rc = mb_error_oom(err, "ioi figures", 0);
		goto cleanup;
	}
	for (size_t i0 = 0; i0 < N; i0 += IOI_BATCH) {
		int B = (int)(N - i0 < IOI_BATCH ? N - i0 : IOI_BATCH);
		for (int dir = 0; dir < 2; dir++) {
			int base = dir == 0 ? P_CLEAN : P_SWAP, src = dir == 0 ? P_SWAP : P_CLEAN;
			if ((rc = fx_open(&f, st, items + i0, B, base, err)) < 0 ||
			    (rc = patch_source(&f, src, err)) < 0)
				goto cleanup;
			for (int k = 0; k < 4; k++) {
				if ((rc = sweep(eff, &f, kinds[k], 1, err)) < 0)
					goto cleanup;
				for (size_t i = 0; i < LH; i++)
					for (int b = 0; b < B; b++)
						acc[((size_t)dir * 4 + k) * LH + i] += eff[i * B + b];
			}
			for (int r = 0; dir == 0 && r < n_recv; r++)
				for (int via = 0; via < 3; via++)
					for (int ls = 0; ls < recv_l[r]; ls++)
						for (int hs = 0; hs < H; hs++) {
							if ((rc = path_arm(eff, &f, delta, ls, hs, recv_l[r],
									   recv_h[r], via, 1, err)) < 0)
								goto cleanup;
							for (int b = 0; b < B; b++)
								path[((size_t)r * 3 + via) * LH +
								     (size_t)ls * H + hs] += eff[b];
						}
			fx_dispose(&f);
		}
	}
	for (int dir = 0; dir < 2; dir++)
		for (int k = 0; k < 4; k++) {
			mb_figure *fig;
			char name[64], title[160];
			snprintf(name, sizeof(name), "ioi.patch.%s.%s", kname[k], dname[dir]);
			snprintf(title, sizeof(title), "Each head's %s patched %s (%zu items)", kdesc[k],
				 dir == 0 ? "into the clean run from the name swap"
					  : "into the name-swapped run from the clean prompt", N);
			if ((rc = mb_figure_list_add(out, &fig, MB_FIGURE_HEATMAP, name, (size_t)L,
						     (size_t)H, err)) < 0 ||
			    (rc = mb_figure_set_text(fig, title, "head", "layer",
						     "mean change in logit(IO) - logit(S)", err)) < 0)
				goto cleanup;
			fig->diverging = 1;
			for (size_t i = 0; i < LH; i++)
				fig->values[i] = acc[((size_t)dir * 4 + k) * LH + i] / (double)N;
		}
	for (int r = 0; r < n_recv; r++)
		for (int via = 0; via < 3; via++) {
			mb_figure *fig;
			char name[64], title[160];
			snprintf(name, sizeof(name), "ioi.path.a%d.%d.%s", recv_l[r], recv_h[r],
				 kname[1 + via]);
			snprintf(title, sizeof(title), "Path patching from the name swap: each sender "
				 "into %s of name mover %d.%d (%zu items)",
				 via == 0 ? "the last position's query" : via == 1 ? "the keys" : "the values",
				 recv_l[r], recv_h[r], N);
			if ((rc = mb_figure_list_add(out, &fig, MB_FIGURE_HEATMAP, name,
						     (size_t)recv_l[r], (size_t)H, err)) < 0 ||
			    (rc = mb_figure_set_text(fig, title, "sender head", "sender layer",
						     "mean change in logit(IO) - logit(S)", err)) < 0)
				goto cleanup;
			fig->diverging = 1;
			for (size_t i = 0; i < (size_t)recv_l[r] * H; i++)
				fig->values[i] = path[((size_t)r * 3 + via) * LH + i] / (double)N;
		}
cleanup:
	fx_dispose(&f);
	free(acc);
	free(path);
	free(eff);
	free(delta);
	return rc;
}

const mb_task mb_task_ioi = {
	.name = "ioi",
	.version = 1,
	.summary = "indirect object identification: logit difference, a circuit found by patching "
		   "on one half and judged on the other (faithfulness, completeness, random "
		   "control, name movers), patching heatmaps",
	.metrics = ioi_metrics,
	.n_metrics = M_COUNT,
	.batch = IOI_BATCH,
	.parallel_inside = 1,
	.generate = ioi_generate,
	.check_params = ioi_check_params,
	.open = ioi_open,
	.close = ioi_close,
	.prepare = ioi_prepare,
	.run = ioi_run,
	.figures = ioi_figures,
	.derived = ioi_derived,
	.n_derived = sizeof(ioi_derived) / sizeof(ioi_derived[0]),
};
