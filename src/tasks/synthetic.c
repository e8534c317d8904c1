/*
 * synthetic.c: a small deterministic TEST task. It is not a benchmark of
 * anything: it exists so the harness (datasets, runner, store, gate,
 * reports) can be exercised end to end before the real tasks and the
 * transformer engine land, with a "model" small enough to write in a test
 * and perturb by hand.
 *
 * Items (generate): two strata, "easy" and "hard", each with `clusters`
 * clusters of `n_per_stratum` items in total. An item is {"x": [dim ints],
 * "y": +1 or -1}: x = a cluster centre (integers uniform in [-20, 20], stream
 * "synthetic/centres") plus rounded Gaussian noise (sd 5 easy, 25 hard,
 * stream "synthetic/items" indexed by the item's position), and the label is
 * y = +1 when sum_j (-1)^j x_j >= 0, else -1 (a fixed alternating rule).
 *
 * Model: a directory holding synthetic.json,
 *     {"format": "mechbench-synthetic", "version": 1, "w": [dim numbers], "b": number}
 * The model's logit is z = b + sum_j w_j x_j / 10 (j in order, in double).
 * w_j = (-1)^j, b = 0 is the "true" model; changing w perturbs every value.
 *
 * Metrics (per item, m = y z):
 *     synthetic.score@1    continuous, higher: m
 *     synthetic.correct@1  binary, higher: 1 if m > 0 else 0
 *     synthetic.loss@1     ratio (skewed), lower: log(1 + exp(-m))
 *
 * Run params: {"delay_ms": int in [0, 60000]} sleeps that long per item, so
 * tests can kill a run in the middle of its work.
 *
 * {"circuit": {"top": k in [1, 64] (3), "resamples": B in [0, 1000] (20)}}
 * turns on a prepare hook (task.h) that returns a tiny circuit-shaped
 * artifact (artifact.h), so the harness's artifact path (store, shards,
 * baselines, gate, reports) can be tested without a transformer. It is a
 * toy, not a circuit of anything: feature j is node "a<j/4>.<j%4>" (four
 * "heads" per "layer"), its effect is the mean over all items, in item
 * order, of its contribution to the margin, y w_j x_j / 10; the circuit is
 * the k features of largest |effect| (ties: lower j), with an edge via "v"
 * from every node to every node of the next layer (effect the smaller |effect|
 * of the two, signed by their product), from "embed" into the lowest layer's
 * nodes and from the highest layer's nodes to "logits" (via "resid", effect
 * the node's). Stability: B bootstrap resamples of the items (stream
 * "synthetic/circuit", index b, seed 0), each node's inclusion frequency
 * and the Jaccard of each resample's node set to the circuit's: mean, and
 * the 2.5% and 97.5% order statistics (sorted[floor(q (B - 1))]) as its CI.
 * The metrics do not read it: their values are the same with or without.
 */
#include <mechbench/task.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mechbench/rng.h>

#define SYN_MAX_DIM 64

static const mb_metric_def syn_metrics[] = {
	{"synthetic.score", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "signed margin y*z of the synthetic linear model (synthetic.c)"},
	{"synthetic.correct", 1, MB_METRIC_BINARY, MB_HIGHER_IS_BETTER,
	 "1 when the synthetic model's sign matches the label (synthetic.c)"},
	{"synthetic.loss", 1, MB_METRIC_RATIO, MB_LOWER_IS_BETTER,
	 "logistic loss log(1 + exp(-y*z)), skewed (synthetic.c)"},
};

typedef struct syn_state {
	int dim;
	double w[SYN_MAX_DIM];
	double b;
	int64_t delay_ms;
	int circuit;              /* params.circuit given: prepare returns an artifact */
	int64_t top, resamples;   /* params.circuit.top, .resamples */
	double effect[SYN_MAX_DIM]; /* (dim) what prepare measured */
} syn_state;

static const struct {
	const char *name;
	double noise;
} syn_strata[] = {{"easy", 5.0}, {"hard", 25.0}};

static int get_gen_int(const json_t *params, const char *key, int64_t min, int64_t max,
		       int64_t *out, mb_error *err)
{
	json_t *v = params ? json_object_get(params, key) : NULL;

	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return mb_error_set(err, MB_EINVALID,
				    "params.%s: expected an integer in [%lld, %lld]", key,
				    (long long)min, (long long)max);
	*out = json_integer_value(v);
	return 0;
}

static int syn_generate(mb_item_list *out, uint64_t seed, const json_t *params, mb_error *err)
{
	int64_t n_per = 100, dim = 8, clusters = 4;
	int error;

	if (params && !json_is_object(params))
		return mb_error_set(err, MB_EINVALID, "params: expected an object");
	if (params) {
		const char *key;
		json_t *v;
		json_object_foreach((json_t *)params, key, v) {
			if (strcmp(key, "n_per_stratum") != 0 && strcmp(key, "dim") != 0 &&
			    strcmp(key, "clusters") != 0)
				return mb_error_set(err, MB_EINVALID,
						    "params.%s: unknown field (synthetic takes "
						    "n_per_stratum, dim, clusters)", key);
		}
	}
	if ((error = get_gen_int(params, "n_per_stratum", 2, 1000000, &n_per, err)) < 0 ||
	    (error = get_gen_int(params, "dim", 1, SYN_MAX_DIM, &dim, err)) < 0 ||
	    (error = get_gen_int(params, "clusters", 1, 1000, &clusters, err)) < 0)
		return error;

	for (size_t s = 0; s < sizeof(syn_strata) / sizeof(syn_strata[0]); s++) {
		for (int64_t i = 0; i < n_per; i++) {
			int64_t k = i % clusters;
			int64_t c[SYN_MAX_DIM]; /* (dim) cluster centre */
			int64_t truth = 0;
			char cluster[64];
			mb_rng rc, ri;
			json_t *input, *x;

			mb_rng_init_named(&rc, seed, "synthetic/centres",
					  (uint64_t)(s * 1000 + (size_t)k));
			mb_rng_init_named(&ri, seed, "synthetic/items",
					  (uint64_t)(s * 1000000 + (size_t)i));
			input = json_object();
			x = json_array();
			if (!input || !x) {
				json_decref(input);
				json_decref(x);
				return mb_error_oom(err, "synthetic item", 0);
			}
			for (int64_t j = 0; j < dim; j++) {
				c[j] = (int64_t)mb_rng_range(&rc, 41) - 20;
				double v = (double)c[j] + syn_strata[s].noise * mb_rng_normal(&ri);
				int64_t xi = (int64_t)llround(v);
				truth += (j % 2 == 0) ? xi : -xi;
				json_array_append_new(x, json_integer(xi));
			}
			json_object_set_new(input, "x", x);
			json_object_set_new(input, "y", json_integer(truth >= 0 ? 1 : -1));
			snprintf(cluster, sizeof(cluster), "%s/c%lld", syn_strata[s].name,
				 (long long)k);
			error = mb_item_list_add(out, syn_strata[s].name, cluster, input, err);
			if (error < 0)
				return error;
		}
	}
	return 0;
}

static int syn_check_params(const mb_json_doc *doc, const json_t *params, const char *at,
			    mb_error *err)
{
	static const char *const allowed[] = {"delay_ms", "circuit", NULL};
	static const char *const circuit_keys[] = {"top", "resamples", NULL};
	int64_t delay = 0, v = 0;
	json_t *circuit = NULL;
	char path[256];
	int rc;

	if (!params)
		return 0;
	if (!json_is_object(params))
		return mb_json_field_error(doc, err, MB_EINVALID, at, "expected an object");
	if ((rc = mb_json_check_keys(doc, (json_t *)params, at, allowed, err)) < 0)
		return rc;
	if ((rc = mb_json_get_int(doc, (json_t *)params, at, "delay_ms", 0, 0, 60000, &delay,
				  err)) < 0 ||
	    (rc = mb_json_get_object(doc, (json_t *)params, at, "circuit", 0, &circuit, err)) < 0)
		return rc;
	if (!circuit)
		return 0;
	mb_json_path_key(path, sizeof(path), at, "circuit");
	if ((rc = mb_json_check_keys(doc, circuit, path, circuit_keys, err)) < 0 ||
	    (rc = mb_json_get_int(doc, circuit, path, "top", 0, 1, SYN_MAX_DIM, &v, err)) < 0 ||
	    (rc = mb_json_get_int(doc, circuit, path, "resamples", 0, 0, 1000, &v, err)) < 0)
		return rc;
	return 0;
}

static int syn_open(void **out, const char *model_dir, const json_t *params, mb_error *err)
{
	static const char *const allowed[] = {"format", "version", "w", "b", NULL};
	char path[4096];
	mb_json_doc doc;
	const char *format = NULL;
	int64_t version = 0;
	json_t *w = NULL;
	json_t *delay, *circuit;
	syn_state *st = NULL;
	int error;

	*out = NULL;
	snprintf(path, sizeof(path), "%s/synthetic.json", model_dir);
	error = mb_json_doc_load(&doc, path, err);
	if (error < 0)
		return error;
	st = calloc(1, sizeof(*st));
	if (!st) {
		error = mb_error_oom(err, "synthetic model", sizeof(*st));
		goto cleanup;
	}
	if (!json_is_object(doc.root)) {
		error = mb_json_field_error(&doc, err, MB_EINVALID, "", "expected an object");
		goto cleanup;
	}
	if ((error = mb_json_check_keys(&doc, doc.root, "", allowed, err)) < 0 ||
	    (error = mb_json_get_string(&doc, doc.root, "", "format", 1, &format, err)) < 0 ||
	    (error = mb_json_get_int(&doc, doc.root, "", "version", 1, 1, 1, &version, err)) < 0 ||
	    (error = mb_json_get_array(&doc, doc.root, "", "w", 1, &w, err)) < 0 ||
	    (error = mb_json_get_number(&doc, doc.root, "", "b", 1, &st->b, err)) < 0)
		goto cleanup;
	if (strcmp(format, "mechbench-synthetic") != 0) {
		error = mb_json_field_error(&doc, err, MB_EINVALID, "format",
					    "expected \"mechbench-synthetic\"");
		goto cleanup;
	}
	if (json_array_size(w) < 1 || json_array_size(w) > SYN_MAX_DIM) {
		error = mb_json_field_error(&doc, err, MB_EINVALID, "w",
					    "expected 1 to %d numbers", SYN_MAX_DIM);
		goto cleanup;
	}
	st->dim = (int)json_array_size(w);
	for (int j = 0; j < st->dim; j++) {
		json_t *v = json_array_get(w, (size_t)j);
		if (!json_is_number(v)) {
			char field[32];
			snprintf(field, sizeof(field), "w[%d]", j);
			error = mb_json_field_error(&doc, err, MB_EINVALID, field,
						    "expected a number");
			goto cleanup;
		}
		st->w[j] = json_number_value(v);
	}
	delay = params ? json_object_get(params, "delay_ms") : NULL;
	st->delay_ms = delay ? json_integer_value(delay) : 0;
	circuit = params ? json_object_get(params, "circuit") : NULL;
	st->circuit = json_is_object(circuit);
	st->top = json_is_integer(json_object_get(circuit, "top"))
			  ? json_integer_value(json_object_get(circuit, "top")) : 3;
	st->resamples = json_is_integer(json_object_get(circuit, "resamples"))
				? json_integer_value(json_object_get(circuit, "resamples")) : 20;
	if (st->top > st->dim)
		st->top = st->dim;
	*out = st;
	st = NULL;
cleanup:
	free(st);
	mb_json_doc_dispose(&doc);
	return error;
}

static void syn_close(void *state)
{
	free(state);
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int syn_run(void *state, const mb_item *items, size_t n, double *values, mb_error *err)
{
	const syn_state *st = state;

	for (size_t i = 0; i < n; i++) {
		json_t *x = json_object_get(items[i].input, "x");
		json_t *y = json_object_get(items[i].input, "y");
		double z = st->b, m;

		if (!json_is_array(x) || json_array_size(x) != (size_t)st->dim ||
		    !json_is_integer(y) || (json_integer_value(y) != 1 &&
					    json_integer_value(y) != -1))
			return mb_error_set(err, MB_EINVALID,
					    "item %s: expected {\"x\": [%d integers], \"y\": "
					    "+1 or -1} for this model", items[i].key, st->dim);
		for (int j = 0; j < st->dim; j++) {
			json_t *v = json_array_get(x, (size_t)j);
			if (!json_is_integer(v))
				return mb_error_set(err, MB_EINVALID, "item %s: x[%d] is not an "
						    "integer", items[i].key, j);
			z += st->w[j] * (double)json_integer_value(v) / 10.0;
		}
		m = (double)json_integer_value(y) * z;
		if (!isfinite(m))
			return mb_error_set(err, MB_EINVALID, "item %s: the model's logit is not "
					    "finite", items[i].key);
		values[i * 3 + 0] = m;
		values[i * 3 + 1] = m > 0 ? 1.0 : 0.0;
		values[i * 3 + 2] = m < 0 ? -m + log1p(exp(m)) : log1p(exp(-m));
		if (st->delay_ms > 0)
			sleep_ms(st->delay_ms);
	}
	return 0;
}

/* --- the toy circuit (prepare) --------------------------------------------------------- */

/* Each feature's mean contribution to the margin over items idx[0..n) (all
 * items when idx is NULL), in that order, into effect (dim). */
static int syn_effects(double *effect, const syn_state *st, const mb_item *items,
		       const size_t *idx, size_t n, mb_error *err)
{
	for (int j = 0; j < st->dim; j++)
		effect[j] = 0;
	for (size_t k = 0; k < n; k++) {
		const mb_item *it = &items[idx ? idx[k] : k];
		json_t *x = json_object_get(it->input, "x"), *y = json_object_get(it->input, "y");
		if (!json_is_array(x) || json_array_size(x) != (size_t)st->dim || !json_is_integer(y))
			return mb_error_set(err, MB_EINVALID, "item %s: expected {\"x\": [%d "
					    "integers], \"y\": +1 or -1} for this model", it->key,
					    st->dim);
		for (int j = 0; j < st->dim; j++)
			effect[j] += (double)json_integer_value(y) * st->w[j] *
				     (double)json_integer_value(json_array_get(x, (size_t)j)) / 10.0;
	}
	for (int j = 0; j < st->dim && n; j++)
		effect[j] /= (double)n;
	return 0;
}

/* in[j] = 1 for the top features by |effect| (ties: the lower j). */
static void syn_top(unsigned char *in, const double *effect, int dim, int64_t top)
{
	memset(in, 0, (size_t)dim);
	for (int64_t k = 0; k < top; k++) {
		int best = -1;
		for (int j = 0; j < dim; j++)
			if (!in[j] && (best < 0 || fabs(effect[j]) > fabs(effect[best])))
				best = j;
		in[best] = 1;
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static json_t *syn_circuit_json(const syn_state *st, const unsigned char *in, const double *incl,
				const double *jac)
{
	json_t *a = json_pack("{s:s, s:i, s:s, s:s, s:[], s:[]}", "kind", "circuit", "version", 1,
			      "method", "synthetic top-k |mean contribution|", "ablation", "zero",
			      "nodes", "edges");
	json_t *nodes = json_object_get(a, "nodes"), *edges = json_object_get(a, "edges");
	int lo = SYN_MAX_DIM, hi = -1, bad = !a;
	char id[SYN_MAX_DIM][16];

	for (int j = 0; j < st->dim && !bad; j++) {
		snprintf(id[j], sizeof(id[j]), "a%d.%d", j / 4, j % 4);
		if (!in[j])
			continue;
		lo = j / 4 < lo ? j / 4 : lo;
		hi = j / 4 > hi ? j / 4 : hi;
		json_t *node = json_pack("{s:s, s:i, s:i, s:s, s:f}", "id", id[j], "layer", j / 4,
					 "head", j % 4, "kind", "head", "effect", st->effect[j]);
		/* an inclusion frequency only when there were resamples */
		if (node && jac)
			json_object_set_new(node, "inclusion", json_real(incl[j]));
		bad = json_array_append_new(nodes, node) < 0;
	}
	for (int u = 0; u < st->dim && !bad; u++) {
		if (!in[u])
			continue;
		if (u / 4 == lo)
			bad |= json_array_append_new(edges, json_pack("{s:s, s:s, s:s, s:f}", "from",
								      "embed", "to", id[u], "via",
								      "resid", "effect",
								      st->effect[u])) < 0;
		for (int v = 0; v < st->dim && !bad; v++) {
			double m = fmin(fabs(st->effect[u]), fabs(st->effect[v]));
			if (!in[v] || v / 4 != u / 4 + 1)
				continue;
			bad = json_array_append_new(edges, json_pack("{s:s, s:s, s:s, s:f}", "from",
								     id[u], "to", id[v], "via", "v",
								     "effect", st->effect[u] *
								     st->effect[v] < 0 ? -m : m)) < 0;
		}
		if (u / 4 == hi)
			bad |= json_array_append_new(edges, json_pack("{s:s, s:s, s:s, s:f}", "from",
								      id[u], "to", "logits", "via",
								      "resid", "effect",
								      st->effect[u])) < 0;
	}
	if (!bad && jac) {
		size_t B = (size_t)st->resamples;
		double mean = 0;
		for (size_t b = 0; b < B; b++)
			mean += jac[b];
		bad = json_object_set_new(a, "stability",
					  json_pack("{s:I, s:f, s:f, s:f}", "resamples",
						    (json_int_t)B, "jaccard_mean", mean / (double)B,
						    "jaccard_lo", jac[(size_t)(0.025 * (double)(B - 1))],
						    "jaccard_hi",
						    jac[(size_t)(0.975 * (double)(B - 1))])) < 0;
	}
	if (bad) {
		json_decref(a);
		return NULL;
	}
	return a;
}

static int syn_prepare(void *state, const mb_item *items, size_t n, json_t **artifact,
		       mb_error *err)
{
	syn_state *st = state;
	unsigned char in[SYN_MAX_DIM], rin[SYN_MAX_DIM];
	double incl[SYN_MAX_DIM] = {0}, reff[SYN_MAX_DIM];
	size_t B = (size_t)st->resamples;
	double *jac = NULL;  /* (B) Jaccard of each resample's circuit, sorted */
	size_t *idx = NULL;  /* (n) one resample */
	int error;

	*artifact = NULL;
	if (!st->circuit)
		return 0;
	if ((error = syn_effects(st->effect, st, items, NULL, n, err)) < 0)
		return error;
	syn_top(in, st->effect, st->dim, st->top);
	jac = malloc((B ? B : 1) * sizeof(*jac));
	idx = malloc((n ? n : 1) * sizeof(*idx));
	if (!jac || !idx) {
		error = mb_error_oom(err, "synthetic resamples", n * sizeof(*idx));
		goto cleanup;
	}
	for (size_t b = 0; b < B && n; b++) {
		mb_rng r;
		size_t both = 0, either = 0;
		mb_rng_init_named(&r, 0, "synthetic/circuit", b);
		for (size_t k = 0; k < n; k++)
			idx[k] = (size_t)mb_rng_range(&r, n);
		if ((error = syn_effects(reff, st, items, idx, n, err)) < 0)
			goto cleanup;
		syn_top(rin, reff, st->dim, st->top);
		for (int j = 0; j < st->dim; j++) {
			incl[j] += rin[j];
			both += in[j] && rin[j];
			either += in[j] || rin[j];
		}
		jac[b] = either ? (double)both / (double)either : 1.0;
	}
	for (int j = 0; j < st->dim && B && n; j++)
		incl[j] /= (double)B;
	if (B && n)
		qsort(jac, B, sizeof(*jac), cmp_double);
	if (!(*artifact = syn_circuit_json(st, in, incl, B && n ? jac : NULL)))
		error = mb_error_oom(err, "synthetic circuit", 0);
cleanup:
	free(jac);
	free(idx);
	return error;
}

/* Figures (figure.h), so the report has something of each kind to draw
 * before the real tasks land:
 *   synthetic.score_by_cluster     heatmap, diverging: mean score per
 *                                  stratum (rows) and cluster (columns)
 *   synthetic.accuracy_by_cluster  heatmap, sequential: mean of correct
 *   synthetic.weight_spectrum      stem: |DFT(w)|_k, k = 0..dim/2, the
 *                                  Fourier spectrum of the weights (the true
 *                                  model (-1)^j puts all of it at dim/2) */
static int syn_figures(void *state, const mb_item *items, size_t n, const double *values,
		       mb_figure_list *out, mb_error *err)
{
	const syn_state *st = state;
	const char *strata[2] = {"easy", "hard"};
	char cols[64][32];          /* cluster suffixes ("c0"), first-appearance order */
	size_t n_cols = 0;
	double sum[2][64][2];       /* (stratum, cluster, score|correct) */
	size_t count[2][64];
	mb_figure *f;
	int error;

	memset(sum, 0, sizeof(sum));
	memset(count, 0, sizeof(count));
	for (size_t i = 0; i < n; i++) {
		const char *slash = strchr(items[i].cluster, '/');
		const char *suffix = slash ? slash + 1 : items[i].cluster;
		size_t s = strcmp(items[i].stratum, "easy") == 0 ? 0 : 1, c = 0;
		while (c < n_cols && strcmp(cols[c], suffix) != 0)
			c++;
		if (c == n_cols) {
			if (n_cols == 64)
				continue; /* more clusters than the picture shows */
			snprintf(cols[n_cols++], sizeof(cols[0]), "%s", suffix);
		}
		sum[s][c][0] += values[i * 3 + 0];
		sum[s][c][1] += values[i * 3 + 1];
		count[s][c]++;
	}
	if (n_cols == 0)
		return 0;
	for (int k = 0; k < 2; k++) {
		const char *name = k ? "synthetic.accuracy_by_cluster" : "synthetic.score_by_cluster";
		if ((error = mb_figure_list_add(out, &f, MB_FIGURE_HEATMAP, name, 2, n_cols, err)) < 0)
			return error;
		f->diverging = k == 0;
		if ((error = mb_figure_set_text(f, k ? "Accuracy by stratum and cluster"
						     : "Mean score (signed margin) by stratum and cluster",
						"cluster", "stratum", k ? "accuracy" : "mean score",
						err)) < 0)
			return error;
		for (size_t s = 0; s < 2; s++) {
			if ((error = mb_figure_set_row_label(f, s, strata[s], err)) < 0)
				return error;
			for (size_t c = 0; c < n_cols; c++)
				f->values[s * n_cols + c] = count[s][c] ? sum[s][c][k] /
									  (double)count[s][c] : NAN;
		}
		for (size_t c = 0; c < n_cols; c++)
			if ((error = mb_figure_set_col_label(f, c, cols[c], err)) < 0)
				return error;
	}
	{
		size_t nk = (size_t)st->dim / 2 + 1;
		double x[SYN_MAX_DIM / 2 + 1];
		if ((error = mb_figure_list_add(out, &f, MB_FIGURE_STEM, "synthetic.weight_spectrum", 1,
						nk, err)) < 0 ||
		    (error = mb_figure_set_text(f, "Fourier spectrum of the weights", "frequency k",
						"|DFT(w)_k|", "", err)) < 0)
			return error;
		for (size_t k = 0; k < nk; k++) {
			double re = 0, im = 0;
			for (int j = 0; j < st->dim; j++) {
				double a = -2.0 * 3.14159265358979323846 * (double)k * (double)j / (double)st->dim;
				re += st->w[j] * cos(a);
				im += st->w[j] * sin(a);
			}
			f->values[k] = sqrt(re * re + im * im);
			x[k] = (double)k;
		}
		if ((error = mb_figure_set_x(f, x, err)) < 0)
			return error;
	}
	return 0;
}

const mb_task mb_task_synthetic = {
	.name = "synthetic",
	.version = 1,
	.summary = "TEST task: a seeded linear toy problem and a JSON 'model' (not a benchmark)",
	.metrics = syn_metrics,
	.n_metrics = sizeof(syn_metrics) / sizeof(syn_metrics[0]),
	.batch = 16,
	.parallel_inside = 0,
	.generate = syn_generate,
	.check_params = syn_check_params,
	.open = syn_open,
	.close = syn_close,
	.prepare = syn_prepare,
	.run = syn_run,
	.figures = syn_figures,
};
