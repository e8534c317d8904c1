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
	static const char *const allowed[] = {"delay_ms", NULL};
	int64_t delay = 0;
	int rc;

	if (!params)
		return 0;
	if (!json_is_object(params))
		return mb_json_field_error(doc, err, MB_EINVALID, at, "expected an object");
	if ((rc = mb_json_check_keys(doc, (json_t *)params, at, allowed, err)) < 0)
		return rc;
	rc = mb_json_get_int(doc, (json_t *)params, at, "delay_ms", 0, 0, 60000, &delay, err);
	return rc < 0 ? rc : 0;
}

static int syn_open(void **out, const char *model_dir, const json_t *params, mb_error *err)
{
	static const char *const allowed[] = {"format", "version", "w", "b", NULL};
	char path[4096];
	mb_json_doc doc;
	const char *format = NULL;
	int64_t version = 0;
	json_t *w = NULL;
	json_t *delay;
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
	.run = syn_run,
	.figures = syn_figures,
};
