/*
 * attribution.c: the `attribution` task: how far gradient approximations of
 * activation patching (attribution.h: AtP, AtP*, EAP-IG) agree with exact
 * patching, per item, so that agreement is a metric of a suite entry and can
 * regress (README, "Attribution patching").
 *
 * Legend: B batch, T positions, L layers, H heads, C components (the L H
 * heads, then the L MLPs unless the model is attention-only), n items.
 *
 * Items (generate): another task's items, through that task's own generate:
 *   {"of": "induction" | "ioi", "params": {that task's generator params}}
 * (same seed). The items are that task's, bit for bit (same content keys);
 * the dataset is this task's so that a suite entry can run it.
 *
 * Run params (check_params):
 *   "of"        required: the item format, "induction" or "ioi" (attr_pairs.h:
 *               the clean/corrupted pair and the metric M of an item)
 *   "bos"       ioi: a token id prepended to both prompts (default none)
 *   "k"         the top-k size, [0, 4096]; 0 (default): per item, the exact
 *               circuit's size, the components whose |exact effect| is at
 *               least "frac" of the item's largest (mb_attr_circuit_size)
 *   "frac"      (0, 1], default 0.1
 *   "ig_steps"  EAP-IG's interpolation steps, [1, 64], default 5
 *
 * Per item: e (C) the exact effects, M(clean with component c's output from
 * the corrupted run) - M(clean) (mb_attr_exact: heads by the restart sweep,
 * MLPs by patching hook_mlp_out); a (C) a method's estimates of the same
 * (mb_attr_run; a head's is its hook_z node). Metrics (all version 1,
 * continuous):
 *   attribution.<m>_spearman   Spearman rank correlation of a and e over the
 *                              C components (average ranks for ties); 0
 *                              when either is constant (no ranking to agree
 *                              with). AtP* (magnitudes) is ranked against |e|
 *   attribution.<m>_precision  |top-k(a) & top-k(e)| / k, top-k by |.|, ties
 *                              by index (precision = recall: both sets
 *                              have k members)
 *   attribution.<m>_rel_error  sum_c |a_c - e_c| / sum_c |e_c| (lower is
 *                              better; |a_c| and |e_c| for AtP*): how far
 *                              the estimates are from the effects in size,
 *                              which ranks alone do not see (an estimate
 *                              of ~0 that still ranks above exact zeros);
 *                              an item with every e_c = 0 gets 0 when every
 *                              a_c is 0, else 1
 * for <m> = atp (attribution patching; EAP's node scores are the same
 * numbers), atp_star (QK fix + GradDrop), eap_ig (integrated gradients over
 * ig_steps steps). Every score is computed per item in a fixed order
 * (attribution.h "Bits"), so an item's values do not depend on its batch.
 * The metrics' directions: Spearman and precision higher, rel_error lower.
 *
 * Figures: per method, the mean over the entry's items of the head scores
 * next to the mean exact head effects (one heatmap, layers x [approximate |
 * exact] heads), and EAP-IG's mean edge scores (receivers x senders).
 */
#include <mechbench/task.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/attr_pairs.h>
#include <mechbench/attribution.h>
#include <mechbench/model.h>

#define ATTR_BATCH 8
#define ATTR_MAX_T 256
#define ATTR_METHODS 3

/* three metrics per method, in methods[] order */
#define ATTR_PER_METHOD 3
enum {
	M_ATP_SPEARMAN = 0,
	M_ATP_PRECISION,
	M_ATP_REL_ERROR,
	M_STAR_SPEARMAN,
	M_STAR_PRECISION,
	M_STAR_REL_ERROR,
	M_IG_SPEARMAN,
	M_IG_PRECISION,
	M_IG_REL_ERROR,
	M_COUNT
};

static const mb_metric_def attr_metrics[M_COUNT] = {
	{"attribution.atp_spearman", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "Spearman of the item's AtP component scores with its exact patching effects "
	 "(Nanda 2023; attribution.c)"},
	{"attribution.atp_precision", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "share of the item's exact top-k components in AtP's top k (attribution.c)"},
	{"attribution.atp_rel_error", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "sum |AtP - exact| / sum |exact| over the item's components (attribution.c)"},
	{"attribution.atp_star_spearman", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "Spearman of the item's AtP* magnitudes with its |exact effects| (Kramar et al. 2024)"},
	{"attribution.atp_star_precision", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "share of the item's exact top-k components in AtP*'s top k (attribution.c)"},
	{"attribution.atp_star_rel_error", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "sum ||AtP*| - |exact|| / sum |exact| over the item's components (attribution.c)"},
	{"attribution.eap_ig_spearman", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "Spearman of the item's EAP-IG node scores with its exact effects (Hanna et al. 2024)"},
	{"attribution.eap_ig_precision", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER,
	 "share of the item's exact top-k components in EAP-IG's top k (attribution.c)"},
	{"attribution.eap_ig_rel_error", 1, MB_METRIC_CONTINUOUS, MB_LOWER_IS_BETTER,
	 "sum |EAP-IG - exact| / sum |exact| over the item's components (attribution.c)"},
};

static const mb_attr_method methods[ATTR_METHODS] = {MB_ATTR_ATP, MB_ATTR_ATP_STAR,
						     MB_ATTR_EAP_IG};

/* ---- items ---------------------------------------------------------------------- */

static int attr_generate(mb_item_list *out, uint64_t seed, const json_t *params, mb_error *err)
{
	const char *key;
	json_t *v, *of, *inner;
	mb_attr_format f;
	const mb_task *t;
	int rc;

	if (!json_is_object(params))
		return mb_error_set(err, MB_EINVALID, "params: expected an object with \"of\" "
				    "(induction, ioi) and that task's \"params\"");
	json_object_foreach((json_t *)params, key, v) {
		if (strcmp(key, "of") != 0 && strcmp(key, "params") != 0)
			return mb_error_set(err, MB_EINVALID, "params.%s: unknown field "
					    "(attribution takes of, params)", key);
	}
	of = json_object_get(params, "of");
	inner = json_object_get(params, "params");
	if ((rc = mb_attr_format_parse(&f, json_string_value(of), err)) < 0)
		return mb_error_prefix(err, "params.of");
	if (inner && !json_is_object(inner))
		return mb_error_set(err, MB_EINVALID, "params.params: expected an object");
	t = mb_task_find(mb_attr_format_name(f));
	MB_ASSERT(t != NULL);
	if ((rc = t->generate(out, seed, inner, err)) < 0)
		return mb_error_prefix(err, "params.params (%s)", t->name);
	return 0;
}

static int attr_check_params(const mb_json_doc *doc, const json_t *params, const char *at,
			     mb_error *err)
{
	static const char *const allowed[] = {"of", "bos", "k", "frac", "ig_steps", NULL};
	const char *of = NULL;
	double frac = 0.1;
	mb_attr_format f;
	char field[256];
	int64_t v;
	int rc;

	if (!json_is_object(params))
		return mb_json_field_error(doc, err, MB_EINVALID, at, "expected an object with "
					   "\"of\": \"induction\" or \"ioi\"");
	if ((rc = mb_json_check_keys(doc, (json_t *)params, at, allowed, err)) < 0 ||
	    (rc = mb_json_get_string(doc, (json_t *)params, at, "of", 1, &of, err)) < 0 ||
	    (rc = mb_json_get_int(doc, (json_t *)params, at, "bos", 0, 0, INT32_MAX, &v, err)) < 0 ||
	    (rc = mb_json_get_int(doc, (json_t *)params, at, "k", 0, 0, 4096, &v, err)) < 0 ||
	    (rc = mb_json_get_int(doc, (json_t *)params, at, "ig_steps", 0, 1, 64, &v, err)) < 0 ||
	    (rc = mb_json_get_number(doc, (json_t *)params, at, "frac", 0, &frac, err)) < 0)
		return rc;
	mb_json_path_key(field, sizeof(field), at, "of");
	if (mb_attr_format_parse(&f, of, err) < 0)
		return mb_json_field_error(doc, err, MB_EINVALID, field, "expected \"induction\" or "
					   "\"ioi\"");
	if (!(frac > 0 && frac <= 1)) {
		mb_json_path_key(field, sizeof(field), at, "frac");
		return mb_json_field_error(doc, err, MB_EINVALID, field, "expected a fraction in "
					   "(0, 1]");
	}
	return 0;
}

/* ---- state ---------------------------------------------------------------------- */

typedef struct attr_state {
	mb_model *model;
	mb_engine *engine; /* kept activations; mutated: parallel_inside = 1 */
	mb_attr *at;
	mb_attr_format format;
	int bos, k, ig_steps, C, max_T;
	double frac;
} attr_state;

static void attr_close(void *state)
{
	attr_state *st = state;

	if (!st)
		return;
	mb_attr_free(st->at);
	mb_engine_free(st->engine);
	mb_model_free(st->model);
	free(st);
}

static int attr_open(void **out, const char *model_dir, const json_t *params, mb_error *err)
{
	attr_state *st = calloc(1, sizeof(*st));
	mb_engine_opts opts = {0};
	json_t *v;
	int rc;

	*out = NULL;
	if (!st)
		return mb_error_oom(err, "attribution state", sizeof(*st));
	st->bos = -1;
	st->frac = 0.1;
	st->ig_steps = 5;
	if ((rc = mb_attr_format_parse(&st->format,
				       json_string_value(json_object_get(params, "of")), err)) < 0) {
		mb_error_prefix(err, "params.of");
		goto cleanup;
	}
	if ((v = json_object_get(params, "bos")))
		st->bos = (int)json_integer_value(v);
	if ((v = json_object_get(params, "k")))
		st->k = (int)json_integer_value(v);
	if ((v = json_object_get(params, "frac")))
		st->frac = json_number_value(v);
	if ((v = json_object_get(params, "ig_steps")))
		st->ig_steps = (int)json_integer_value(v);
	if ((rc = mb_model_load(&st->model, model_dir, err)) < 0)
		goto cleanup;
	if (st->bos >= st->model->cfg.n_vocab) {
		rc = mb_error_set(err, MB_EINVALID, "params.bos: token %d is outside %s's vocabulary "
				  "of %d", st->bos, model_dir, st->model->cfg.n_vocab);
		goto cleanup;
	}
	st->C = mb_attr_n_components(&st->model->cfg);
	opts.max_batch = ATTR_BATCH;
	opts.max_seq = st->max_T =
		st->model->cfg.n_ctx < ATTR_MAX_T ? st->model->cfg.n_ctx : ATTR_MAX_T;
	opts.keep_activations = 1;
	if ((rc = mb_engine_init(&st->engine, &st->model->cfg, &st->model->w, &opts, err)) < 0 ||
	    (rc = mb_attr_init(&st->at, st->engine, err)) < 0)
		goto cleanup;
	*out = st;
	st = NULL;
cleanup:
	attr_close(st);
	return rc;
}

/* ---- run -------------------------------------------------------------------------- */

/* Per-item component scores of the batch: comp (ATTR_METHODS, B, C) for each
 * method, exact (B, C); heads (ATTR_METHODS, B, L H) the hook_z scores and,
 * with edges not NULL, EAP-IG's (B, R, S) edge scores. */
static int score_batch(double *comp, double *exact, double *edges, attr_state *st,
		       const mb_item *items, int B, mb_error *err)
{
	const mb_engine_config *c = &st->model->cfg;
	mb_attr_pairs p = {0};
	int C = st->C, rc;

	if ((rc = mb_attr_pairs_load(&p, items, B, st->format, c, st->bos, err)) < 0)
		goto cleanup;
	if (p.T > st->max_T) {
		rc = mb_error_set(err, MB_EINVALID, "%d positions, the task runs at most %d", p.T,
				  st->max_T);
		goto cleanup;
	}
	for (int m = 0; m < ATTR_METHODS; m++) {
		mb_attr_scores *s = NULL;
		mb_attr_opts o = {.method = methods[m], .ig_steps = st->ig_steps};
		int with_edges = methods[m] == MB_ATTR_EAP_IG;

		rc = mb_attr_scores_init(&s, c, B, p.T, with_edges, err);
		if (rc == 0)
			rc = mb_attr_run(s, st->at, &p.ab, &o, err);
		if (rc == 0) {
			mb_attr_components(comp + (size_t)m * B * C, s);
			if (with_edges && edges)
				memcpy(edges, s->edges, sizeof(double) * (size_t)B * s->n_receivers *
								s->n_senders);
		}
		mb_attr_scores_free(s);
		if (rc < 0) {
			mb_error_prefix(err, "%s", mb_attr_method_name(methods[m]));
			goto cleanup;
		}
	}
	rc = mb_attr_exact(exact, st->engine, &p.ab, err);
cleanup:
	mb_attr_pairs_dispose(&p);
	if (rc < 0)
		mb_error_prefix(err, "item %s", items[0].key);
	return rc;
}

static int attr_run(void *state, const mb_item *items, size_t n, double *values, mb_error *err)
{
	attr_state *st = state;
	int B = (int)n, C = st->C, rc;
	double *comp = malloc(sizeof(double) * (size_t)(ATTR_METHODS + 1) * B * C);
	double *exact = comp ? comp + (size_t)ATTR_METHODS * B * C : NULL;

	MB_ASSERT(n >= 1 && n <= ATTR_BATCH);
	if (!comp)
		return mb_error_oom(err, "attribution scores", 0);
	if ((rc = score_batch(comp, exact, NULL, st, items, B, err)) < 0)
		goto cleanup;
	for (int b = 0; b < B; b++) {
		const double *e = exact + (size_t)b * C;
		int k = st->k > 0 ? (st->k < C ? st->k : C) : mb_attr_circuit_size(e, C, st->frac);

		for (int m = 0; m < ATTR_METHODS; m++) {
			mb_attr_agreement g;
			const double *a = comp + ((size_t)m * B + b) * C;
			double *v = values + (size_t)b * M_COUNT + ATTR_PER_METHOD * m, num = 0, den = 0;
			int mag = methods[m] == MB_ATTR_ATP_STAR;
			if ((rc = mb_attr_agree(&g, a, e, NULL, 1, C, k, mag, 0, 0, err)) < 0) {
				mb_error_prefix(err, "item %s", items[b].key);
				goto cleanup;
			}
			v[0] = isfinite(g.spearman) ? g.spearman : 0.0;
			v[1] = g.precision;
			for (int j = 0; j < C; j++) {
				num += mag ? fabs(fabs(a[j]) - fabs(e[j])) : fabs(a[j] - e[j]);
				den += fabs(e[j]);
			}
			v[2] = den > 0 ? num / den : num > 0 ? 1.0 : 0.0;
		}
	}
cleanup:
	free(comp);
	return rc;
}

/* ---- figures ---------------------------------------------------------------------- */

static int attr_figures(void *state, const mb_item *items, size_t n, const double *values,
			mb_figure_list *out, mb_error *err)
{
	attr_state *st = state;
	const mb_engine_config *c = &st->model->cfg;
	const int L = c->n_layer, H = c->n_head, C = st->C;
	const int S = mb_attr_n_senders(c), R = mb_attr_n_receivers(c);
	double *comp = malloc(sizeof(double) * (size_t)(ATTR_METHODS + 1) * ATTR_BATCH * C);
	double *exact = comp ? comp + (size_t)ATTR_METHODS * ATTR_BATCH * C : NULL;
	double *edges = malloc(sizeof(double) * (size_t)ATTR_BATCH * R * S);
	double *mean = calloc((size_t)(ATTR_METHODS + 1) * C + (size_t)R * S, sizeof(double));
	double *medges = mean ? mean + (size_t)(ATTR_METHODS + 1) * C : NULL;
	char name[64], label[64];
	mb_figure *f;
	int rc = 0;

	(void)values;
	if (!comp || !edges || !mean) {
		rc = mb_error_oom(err, "attribution figures", 0);
		goto cleanup;
	}
	for (size_t i0 = 0; i0 < n; i0 += ATTR_BATCH) {
		int B = n - i0 < ATTR_BATCH ? (int)(n - i0) : ATTR_BATCH;
		if ((rc = score_batch(comp, exact, edges, st, items + i0, B, err)) < 0)
			goto cleanup;
		for (int b = 0; b < B; b++) {
			for (int m = 0; m < ATTR_METHODS; m++)
				for (int j = 0; j < C; j++)
					mean[(size_t)m * C + j] += comp[((size_t)m * B + b) * C + j] / n;
			for (int j = 0; j < C; j++)
				mean[(size_t)ATTR_METHODS * C + j] += exact[(size_t)b * C + j] / n;
			for (size_t j = 0; j < (size_t)R * S; j++)
				medges[j] += edges[(size_t)b * R * S + j] / n;
		}
	}
	/* layers x [approximate heads | gap | exact heads] per method */
	for (int m = 0; m < ATTR_METHODS && rc == 0; m++) {
		const char *mn = mb_attr_method_name(methods[m]);
		snprintf(name, sizeof(name), "attribution.heads_%s", mn);
		if ((rc = mb_figure_list_add(out, &f, MB_FIGURE_HEATMAP, name, (size_t)L,
					     (size_t)(2 * H + 1), err)) < 0)
			break;
		snprintf(label, sizeof(label), "%s (left) vs exact patching (right): mean head effect",
			 mn);
		f->diverging = methods[m] != MB_ATTR_ATP_STAR;
		rc = mb_figure_set_text(f, label, "head", "layer",
					methods[m] == MB_ATTR_ATP_STAR ? "|M(patched) - M(clean)|"
								       : "M(patched) - M(clean)",
					err);
		for (int l = 0; l < L && rc == 0; l++) {
			snprintf(label, sizeof(label), "%d", l);
			rc = mb_figure_set_row_label(f, (size_t)l, label, err);
			for (int h = 0; h < H; h++) {
				double ex = mean[(size_t)ATTR_METHODS * C + l * H + h];
				f->values[(size_t)l * (2 * H + 1) + h] = mean[(size_t)m * C + l * H + h];
				f->values[(size_t)l * (2 * H + 1) + H + 1 + h] =
					methods[m] == MB_ATTR_ATP_STAR ? fabs(ex) : ex;
			}
		}
		for (int h = 0; h < H && rc == 0; h++) {
			snprintf(label, sizeof(label), "%s %d", m == 2 ? "ig" : m == 1 ? "*" : "atp", h);
			rc = mb_figure_set_col_label(f, (size_t)h, label, err);
			snprintf(label, sizeof(label), "ex %d", h);
			if (rc == 0)
				rc = mb_figure_set_col_label(f, (size_t)(H + 1 + h), label, err);
		}
		if (rc == 0) /* the gap between the two halves */
			rc = mb_figure_set_col_label(f, (size_t)H, "|", err);
	}
	/* EAP-IG's edges: receivers x senders (0 where s is not a sender of r: NaN) */
	if (rc == 0 && (size_t)R * S <= MB_FIGURE_MAX_CELLS && R <= MB_FIGURE_MAX_ROWS &&
	    (rc = mb_figure_list_add(out, &f, MB_FIGURE_HEATMAP, "attribution.edges_eap-ig",
				     (size_t)R, (size_t)S, err)) == 0) {
		f->diverging = 1;
		rc = mb_figure_set_text(f, "EAP-IG: mean edge score, sender -> receiver", "sender",
					"receiver", "M(patched) - M(clean)", err);
		for (int r = 0; r < R && rc == 0; r++) {
			mb_attr_receiver_name(label, sizeof(label), c, r);
			rc = mb_figure_set_row_label(f, (size_t)r, label, err);
			for (int s = 0; s < mb_attr_n_senders_of(c, r); s++)
				f->values[(size_t)r * S + s] = medges[(size_t)r * S + s];
		}
		for (int s = 0; s < S && rc == 0; s++) {
			mb_attr_sender_name(label, sizeof(label), c, s);
			rc = mb_figure_set_col_label(f, (size_t)s, label, err);
		}
	}
cleanup:
	free(comp);
	free(edges);
	free(mean);
	return rc;
}

const mb_task mb_task_attribution = {
	.name = "attribution",
	.version = 1,
	.summary = "agreement of attribution patching (AtP, AtP*, EAP-IG) with exact activation "
		   "patching per item: Spearman and top-k precision over the components",
	.metrics = attr_metrics,
	.n_metrics = M_COUNT,
	.batch = ATTR_BATCH,
	.parallel_inside = 1,
	.generate = attr_generate,
	.check_params = attr_check_params,
	.open = attr_open,
	.close = attr_close,
	.run = attr_run,
	.figures = attr_figures,
};
