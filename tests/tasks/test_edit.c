/*
 * edit task (src/tasks/edit.c) on the 3-layer random GPT-2 fixture with its
 * WordLevel tokenizer (tests/fixtures/edit/model3):
 *  - every per-item metric against a second implementation written here: the
 *    same contexts, statistics and ROME vectors (edit.h, checked against
 *    PyTorch in tests/interp/test_edit.c), then object probabilities from
 *    full-logit forwards of one prompt at a time with this file's own
 *    log-softmax, greedy continuations one prompt at a time, n-gram entropy
 *    by sorting, KL by its definition, the random control and the
 *    wrong-layer edit redone from their definitions;
 *  - the random-update controls can fail: at 1000 times the edit's norm (or
 *    1000 times the energy-matched scale) their KL on unrelated prompts is
 *    large;
 *  - the causal-trace figures; bad items and a bad source are one line
 *    naming the item or file and the field.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/edit.h>
#include <mechbench/file.h>
#include <mechbench/logits.h>
#include <mechbench/model.h>
#include <mechbench/sha256.h>
#include <mechbench/task.h>

#include "support/harness_support.h"

#define MODEL3 MB_SOURCE_DIR "/tests/fixtures/edit/model3"

static const char *const REQ =
	"{\"subject\": \"c d\", \"relation\": \"r0\", \"prompt\": \"a b {} e\", \"target_true\": "
	"\"y\", \"target_new\": \"z\", \"paraphrase_prompts\": [\"f c d e\", {\"prompt\": \"g h "
	"c d e\", \"heldout\": true}], \"neighborhood_prompts\": [\"a b i j e\", {\"prompt\": \"a "
	"b k e\"}], \"unrelated_prompts\": [\"m n o\", \"p q r s\"]}";

static const char *const PARAMS =
	"{\"layer\": 1, \"control_layer\": 0, \"corpus_sequences\": 16, \"corpus_len\": 16, "
	"\"prefixes\": 2, \"prefix_len\": 3, \"gen_tokens\": 5, \"steps\": 8, \"seed\": 3}";

/* The engine's values do not depend on the thread count; tiny forwards run
 * fastest on one. */
static void one_thread(void)
{
	omp_set_num_threads(1);
}

/* Runs the task on one item with params; values (M_COUNT) into v. */
static int run_task(double *v, mb_item_list *items, const char *params, mb_error *err)
{
	const mb_task *t = mb_task_find("edit");
	json_t *p = mbt_json(params);
	void *st = NULL;
	int rc;

	cr_assert(t);
	rc = t->open(&st, MODEL3, p, err);
	if (rc == 0)
		rc = mb_task_run(t, st, items->items, items->n, v, err);
	t->close(st);
	json_decref(p);
	return rc;
}

static double metric(const double *v, const char *name)
{
	int i = mb_task_metric_index(mb_task_find("edit"), name);
	cr_assert(i >= 0, "%s", name);
	return v[i];
}

/* ---- the second implementation -------------------------------------------------- */

/* log softmax of the next token after tokens (n), from a full-logit forward of
 * this one prompt, in double. */
static void ref_lsm(double *out, mb_engine *e, const int32_t *tok, int n)
{
	mb_error err = {0};
	mb_run run = {.batch = 1, .seq = n, .tokens = tok, .logits = MB_LOGITS_ALL};
	int V = mb_engine_cfg(e)->n_vocab;
	const float *z;
	double mx = -INFINITY, s = 0;

	cr_assert_eq(mb_engine_forward(e, &run, &err), 0, "%s", err.msg);
	z = mb_engine_logits_row(e, 0, n - 1);
	for (int v = 0; v < V; v++)
		mx = z[v] > mx ? z[v] : mx;
	for (int v = 0; v < V; v++)
		s += exp((double)z[v] - mx);
	for (int v = 0; v < V; v++)
		out[v] = (double)z[v] - mx - log(s);
}

/* P(object | prompt) = exp(mean log p) over the object's tokens, feeding them. */
static double ref_p(mb_engine *e, const int32_t *prompt, int n, const int32_t *obj, int n_obj)
{
	int32_t buf[64];
	double s = 0, lp[256];

	memcpy(buf, prompt, sizeof(int32_t) * (size_t)n);
	for (int j = 0; j < n_obj; j++) {
		ref_lsm(lp, e, buf, n + j);
		s += lp[obj[j]];
		buf[n + j] = obj[j];
	}
	return exp(s / n_obj);
}

static int32_t *tok_text(const mb_model *m, const char *text, int *n)
{
	mb_error err = {0};
	int32_t *t = NULL;
	cr_assert_eq(mb_tokenizer_encode(m->tok, text, &t, n, &err), 0, "%s", err.msg);
	return t;
}

/* n-gram entropy by sorting the n-grams (edit.c counts them by scanning). */
static int cmp_gram(const void *a, const void *b)
{
	const int32_t *x = a, *y = b;
	for (int i = 0; i < 3; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

static double ref_entropy(const int32_t *x, int n)
{
	double out = 0;
	for (int g = 2; g <= 3; g++) {
		int cnt = n - g + 1;
		int32_t grams[64][3] = {{0}};
		double h = 0;
		for (int i = 0; i < cnt; i++)
			for (int k = 0; k < g; k++)
				grams[i][k] = x[i + k];
		qsort(grams, (size_t)cnt, sizeof(grams[0]), cmp_gram);
		for (int i = 0; i < cnt;) {
			int j = i;
			while (j < cnt && cmp_gram(grams[i], grams[j]) == 0)
				j++;
			h += -((double)(j - i) / cnt) * log2((double)(j - i) / cnt);
			i = j;
		}
		out += (g == 2 ? 2.0 / 3.0 : 4.0 / 3.0) * h / 2.0;
	}
	return out;
}

/* Greedy continuation of one prompt, one full forward per token. */
static double ref_gen_entropy(mb_engine *e, const int32_t *prompt, int n, int steps)
{
	int32_t buf[64];
	mb_error err = {0};
	int V = mb_engine_cfg(e)->n_vocab;

	memcpy(buf, prompt, sizeof(int32_t) * (size_t)n);
	for (int s = 0; s < steps; s++) {
		mb_run run = {.batch = 1, .seq = n + s, .tokens = buf, .logits = MB_LOGITS_ALL};
		const float *z;
		int best = 0;
		cr_assert_eq(mb_engine_forward(e, &run, &err), 0, "%s", err.msg);
		z = mb_engine_logits_row(e, 0, n + s - 1);
		for (int v = 1; v < V; v++)
			if (z[v] > z[best])
				best = v;
		buf[n + s] = best;
	}
	return ref_entropy(buf + n, steps);
}

typedef struct ref_probe {
	int32_t *tok[5];
	int len[5];
	int32_t *unrel[2];
	int n_unrel[2];
	int32_t *obj[2];
	int n_obj[2];
	double base_lsm[2][64];
} ref_probe;

/* ES, EM, PS, PM, NS, NM, score from the current weights (probes 0: prompt,
 * 1-2 paraphrases, 3-4 neighbours). */
static void ref_scores(double out[7], mb_engine *e, const ref_probe *p)
{
	double m[5];
	for (int i = 0; i < 5; i++)
		m[i] = ref_p(e, p->tok[i], p->len[i], p->obj[0], p->n_obj[0]) -
		       ref_p(e, p->tok[i], p->len[i], p->obj[1], p->n_obj[1]);
	out[0] = m[0] > 0;
	out[1] = m[0];
	out[2] = ((m[1] > 0) + (m[2] > 0)) / 2.0;
	out[3] = (m[1] + m[2]) / 2;
	out[4] = ((m[3] < 0) + (m[4] < 0)) / 2.0;
	out[5] = -(m[3] + m[4]) / 2;
	out[6] = out[0] > 0 && out[2] > 0 && out[4] > 0
			 ? 3.0 / (1 / out[0] + 1 / out[2] + 1 / out[4])
			 : 0.0;
}

static double ref_kl(mb_engine *e, const ref_probe *p)
{
	double s = 0, lq[64];
	int V = mb_engine_cfg(e)->n_vocab;
	for (int u = 0; u < 2; u++) {
		ref_lsm(lq, e, p->unrel[u], p->n_unrel[u]);
		for (int v = 0; v < V; v++)
			s += exp(p->base_lsm[u][v]) * (p->base_lsm[u][v] - lq[v]);
	}
	return s / 2;
}

static void expect_close(const char *name, double got, double want, double tol)
{
	printf("%-32s task %.9g  reference %.9g  |diff| %.3g\n", name, got, want,
	       fabs(got - want));
	cr_expect(fabs(got - want) <= tol, "%s: task %.9g, reference %.9g", name, got, want);
}

/* The reference's model, private c_proj, engine, contexts and statistics,
 * made as edit.c's header says. */
typedef struct ref_ctx {
	mb_model *m;
	mb_engine *e;
	mb_engine_weights w;
	float *proj;
	size_t slab;
	int32_t pre_tok[2 * 3], corpus[16 * 16];
	mb_rome_prefix pre[3];
	mb_rome_stats stats[2];
	mb_rome_params rp;
} ref_ctx;

static void ref_open(ref_ctx *r)
{
	mb_error err = {0};
	mb_engine_opts eo = {.max_batch = 16, .max_seq = 16, .keep_activations = 1};
	int first;

	cr_assert_eq(mb_model_load(&r->m, MODEL3, &err), 0, "%s", err.msg);
	r->w = r->m->w;
	r->slab = (size_t)r->m->cfg.d_mlp * (size_t)r->m->cfg.d_model;
	r->proj = malloc(sizeof(float) * r->slab * (size_t)r->m->cfg.n_layer);
	memcpy(r->proj, r->m->w.proj_w, sizeof(float) * r->slab * (size_t)r->m->cfg.n_layer);
	r->w.proj_w = r->proj;
	cr_assert_eq(mb_engine_init(&r->e, &r->m->cfg, &r->w, &eo, &err), 0, "%s", err.msg);
	first = mb_tokenizer_id(r->m->tok, "<|endoftext|>");
	cr_assert_eq(mb_rome_prefixes(r->pre_tok, r->e, 2, 3, first, 5, 3, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_rome_prefixes(r->corpus, r->e, 16, 16, first, 5, 4, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(mb_rome_stats_compute(&r->stats[0], r->e, 1, r->corpus, 16, 16, 8, &err), 0);
	cr_assert_eq(mb_rome_stats_compute(&r->stats[1], r->e, 0, r->corpus, 16, 16, 8, &err), 0);
	r->pre[0] = (mb_rome_prefix){r->pre_tok, 0};
	r->pre[1] = (mb_rome_prefix){r->pre_tok, 3};
	r->pre[2] = (mb_rome_prefix){r->pre_tok + 3, 3};
	mb_rome_params_default(&r->rp, 1);
	r->rp.steps = 8;
}

static void ref_close(ref_ctx *r)
{
	mb_rome_stats_dispose(&r->stats[0]);
	mb_rome_stats_dispose(&r->stats[1]);
	free(r->proj);
	mb_engine_free(r->e);
	mb_model_free(r->m);
}

/* The probes of a request "a b {subject} e" with paraphrases "f S e", "g h S e". */
static void ref_probe_open(ref_probe *p, const mb_model *m, const char *subject,
			   const char *obj_new)
{
	char text[5][64], on[16];
	snprintf(text[0], 64, "a b %s e", subject);
	snprintf(text[1], 64, "f %s e", subject);
	snprintf(text[2], 64, "g h %s e", subject);
	snprintf(text[3], 64, "a b i j e");
	snprintf(text[4], 64, "a b k e");
	for (int i = 0; i < 5; i++)
		p->tok[i] = tok_text(m, text[i], &p->len[i]);
	p->unrel[0] = tok_text(m, "m n o", &p->n_unrel[0]);
	p->unrel[1] = tok_text(m, "p q r s", &p->n_unrel[1]);
	snprintf(on, sizeof(on), " %s", obj_new);
	p->obj[0] = tok_text(m, on, &p->n_obj[0]);
	p->obj[1] = tok_text(m, " y", &p->n_obj[1]);
}

static void ref_probe_close(ref_probe *p)
{
	for (int i = 0; i < 5; i++)
		free(p->tok[i]);
	for (int i = 0; i < 2; i++) {
		free(p->unrel[i]);
		free(p->obj[i]);
	}
}

/* The ROME edit of "a b {subject} e" -> obj on r's current weights, applied. */
static void ref_edit(ref_ctx *r, const ref_probe *p, const char *subject, int layer,
		     mb_rome_result *res)
{
	mb_error err = {0};
	int32_t *prompt;
	int n, last;
	mb_rome_request req;
	mb_rome_params rp = r->rp;

	cr_assert_eq(mb_edit_encode(&prompt, &n, NULL, &last, r->m->tok, "a b {} e", subject,
				    &err), 0, "%s", err.msg);
	req = (mb_rome_request){prompt, n, last, p->obj[0], p->n_obj[0], prompt, n, last};
	rp.layer = layer;
	cr_assert_eq(mb_rome_compute(res, r->e, &r->stats[layer == 1 ? 0 : 1], &req, r->pre, 3,
				     &rp, &err), 0, "%s", err.msg);
	mb_rome_apply(&r->m->cfg, &r->w, layer, res->u, res->r);
	free(prompt);
}

/* tr(dW^T C dW) for r's c_proj at layer minus the model's, as sum over
 * (i, j) of C[i][j] (dW dW^T)[i][j] (edit.c sums x^T C x column by column). */
static double ref_energy(const ref_ctx *r, int layer, const mb_rome_stats *st)
{
	const int M = r->m->cfg.d_mlp, D = r->m->cfg.d_model;
	const size_t off = (size_t)layer * r->slab;
	double e = 0;
	for (int i = 0; i < M; i++)
		for (int j = 0; j < M; j++) {
			double g = 0;
			for (int d = 0; d < D; d++)
				g += ((double)r->proj[off + (size_t)i * D + d] -
				      r->m->w.proj_w[off + (size_t)i * D + d]) *
				     ((double)r->proj[off + (size_t)j * D + d] -
				      r->m->w.proj_w[off + (size_t)j * D + d]);
			e += st->mom2[(size_t)i * M + j] * g;
		}
	return e;
}

/* Applies the energy-matched control at layer: u' r'^T from rng with
 * ||r'||^2 u'^T C u' = energy. */
static void ref_energy_control(ref_ctx *r, int layer, const mb_rome_stats *st, double energy,
			       mb_rng *rng)
{
	const int M = r->m->cfg.d_mlp, D = r->m->cfg.d_model;
	float uc[256], rcv[64];
	double q = 0;
	mb_rome_control_norm(uc, rcv, 1.0, M, D, rng);
	for (int i = 0; i < M; i++)
		for (int j = 0; j < M; j++)
			q += (double)uc[i] * st->mom2[(size_t)i * M + j] * uc[j];
	for (int d = 0; d < D; d++)
		rcv[d] = (float)(rcv[d] * sqrt(energy / q));
	mb_rome_apply(&r->m->cfg, &r->w, layer, uc, rcv);
}

static void ref_restore(ref_ctx *r, int layer)
{
	memcpy(r->proj + (size_t)layer * r->slab, r->m->w.proj_w + (size_t)layer * r->slab,
	       sizeof(float) * r->slab);
}

Test(edit_task, per_item_metrics_match_a_second_implementation, .init = one_thread)
{
	mb_error err = {0};
	mb_item_list items = {0};
	double v[64], sc[7], base_mag, base_ent = 0, ent = 0, kl_edit, kl_ctl;
	ref_ctx r = {0};
	ref_probe p = {0};
	mb_rome_result res, res2;
	const mb_engine_config *c;

	cr_assert_eq(mb_item_list_add(&items, "r0", "c d", mbt_json(REQ), &err), 0, "%s", err.msg);
	cr_assert_eq(run_task(v, &items, PARAMS, &err), 0, "%s", err.msg);
	ref_open(&r);
	c = &r.m->cfg;
	ref_probe_open(&p, r.m, "c d", "z");
	for (int u = 0; u < 2; u++)
		ref_lsm(p.base_lsm[u], r.e, p.unrel[u], p.n_unrel[u]);

	/* before */
	ref_scores(sc, r.e, &p);
	base_mag = sc[1];
	for (int i = 0; i < 3; i++) /* the prompt and the two paraphrases */
		base_ent += ref_gen_entropy(r.e, p.tok[i], p.len[i], 5) / 3;

	/* the edit */
	ref_edit(&r, &p, "c d", 1, &res);
	ref_scores(sc, r.e, &p);
	for (int i = 0; i < 3; i++)
		ent += ref_gen_entropy(r.e, p.tok[i], p.len[i], 5) / 3;
	kl_edit = ref_kl(r.e, &p);

	cr_expect_eq(metric(v, "edit.efficacy"), sc[0]);
	expect_close("efficacy_magnitude", metric(v, "edit.efficacy_magnitude"), sc[1], 1e-6);
	cr_expect_eq(metric(v, "edit.paraphrase"), sc[2]);
	expect_close("paraphrase_magnitude", metric(v, "edit.paraphrase_magnitude"), sc[3], 1e-6);
	cr_expect_eq(metric(v, "edit.neighbourhood"), sc[4]);
	expect_close("neighbourhood_magnitude", metric(v, "edit.neighbourhood_magnitude"), sc[5],
		     1e-6);
	expect_close("score", metric(v, "edit.score"), sc[6], 1e-12);
	expect_close("base_magnitude", metric(v, "edit.base_magnitude"), base_mag, 1e-6);
	expect_close("base_entropy", metric(v, "edit.base_entropy"), base_ent, 1e-12);
	expect_close("entropy", metric(v, "edit.entropy"), ent, 1e-12);
	expect_close("entropy_drop", metric(v, "edit.entropy_drop"), base_ent - ent, 1e-12);
	expect_close("kl_unrelated", metric(v, "edit.kl_unrelated"), kl_edit, 1e-5);
	{
		double nr = 0, nu = 0;
		for (int d = 0; d < c->d_model; d++)
			nr += (double)res.r[d] * res.r[d];
		for (int j = 0; j < c->d_mlp; j++)
			nu += (double)res.u[j] * res.u[j];
		expect_close("update_norm", metric(v, "edit.update_norm"), sqrt(nr * nu), 1e-9);
	}
	{
		double e = ref_energy(&r, 1, &r.stats[0]), k;
		mb_rng rng;
		ref_restore(&r, 1);
		mb_rng_init_named(&rng, 3, "edit/energy_control",
				  mb_item_key_index(items.items[0].key));
		ref_energy_control(&r, 1, &r.stats[0], e, &rng);
		k = ref_kl(r.e, &p);
		expect_close("energy_control_kl", metric(v, "edit.energy_control_kl"), k, 1e-5);
		expect_close("energy_kl_excess", metric(v, "edit.energy_kl_excess"), kl_edit - k,
			     2e-5);
	}
	ref_restore(&r, 1);

	/* the control: u' r'^T of the same norm from the item's own stream */
	{
		float uc[256], rcv[64];
		mb_rng rng;
		mb_rng_init_named(&rng, 3, "edit/control", mb_item_key_index(items.items[0].key));
		mb_rome_control(uc, rcv, res.u, res.r, c->d_mlp, c->d_model, &rng);
		mb_rome_apply(c, &r.w, 1, uc, rcv);
		ref_scores(sc, r.e, &p);
		kl_ctl = ref_kl(r.e, &p);
		expect_close("control_magnitude", metric(v, "edit.control_magnitude"), sc[1], 1e-6);
		cr_expect_eq(metric(v, "edit.control_neighbourhood"), sc[4]);
		expect_close("control_kl_unrelated", metric(v, "edit.control_kl_unrelated"), kl_ctl,
			     1e-5);
		expect_close("kl_excess", metric(v, "edit.kl_excess"), kl_edit - kl_ctl, 2e-5);
		ref_restore(&r, 1);
	}
	/* the wrong layer */
	ref_edit(&r, &p, "c d", 0, &res2);
	{
		double s2[7], edit_score = metric(v, "edit.score");
		ref_scores(s2, r.e, &p);
		cr_expect_eq(metric(v, "edit.wrong_layer_efficacy"), s2[0]);
		cr_expect_eq(metric(v, "edit.wrong_layer_paraphrase"), s2[2]);
		cr_expect_eq(metric(v, "edit.wrong_layer_neighbourhood"), s2[4]);
		expect_close("wrong_layer_score", metric(v, "edit.wrong_layer_score"), s2[6], 1e-12);
		expect_close("layer_score_gain", metric(v, "edit.layer_score_gain"),
			     edit_score - s2[6], 1e-12);
	}
	mb_rome_result_dispose(&res);
	mb_rome_result_dispose(&res2);
	ref_probe_close(&p);
	ref_close(&r);
	mb_item_list_dispose(&items);
}

/* The Frobenius norm of r's c_proj at layer minus the model's. */
static double ref_update_norm(const ref_ctx *r, int layer)
{
	const size_t off = (size_t)layer * r->slab;
	double s = 0;
	for (size_t i = 0; i < r->slab; i++) {
		double d = (double)r->proj[off + i] - (double)r->m->w.proj_w[off + i];
		s += d * d;
	}
	return sqrt(s);
}

/* MEMIT of "a b {subject} e" -> obj over layers (stats in the same order)
 * on r's weights. */
static void ref_memit(ref_ctx *r, const ref_probe *p, const char *subject, const int *layers,
		      int n, const mb_rome_stats *stats)
{
	mb_error err = {0};
	mb_memit_params mp;
	mb_rome_request req;
	int32_t *prompt;
	int len, last;

	cr_assert_eq(mb_edit_encode(&prompt, &len, NULL, &last, r->m->tok, "a b {} e", subject,
				    &err), 0, "%s", err.msg);
	req = (mb_rome_request){prompt, len, last, p->obj[0], p->n_obj[0], prompt, len, last};
	mb_memit_params_default(&mp, layers, n);
	mp.z.steps = 8;
	mp.mom2_weight = 50;
	cr_assert_eq(mb_memit_edit(NULL, r->e, &r->w, stats, &req, 1, r->pre, 3, &mp, &err), 0,
		     "%s", err.msg);
	free(prompt);
}

/* method "memit": the edit, its control (a random rank-one update at each
 * edited layer of that layer's update's norm) and the wrong-layer edit
 * (MEMIT over [control_layer]) redone here with mb_memit_edit itself. */
Test(edit_task, memit_items_match_a_second_implementation, .init = one_thread)
{
	mb_error err = {0};
	mb_item_list items = {0};
	double v[64], sc[7], n0, n1, kl_edit, kl_ctl;
	char params[512];
	ref_ctx r = {0};
	ref_probe p = {0};
	const mb_engine_config *c;
	const int both[2] = {0, 1}, wrong[1] = {0};
	mb_rome_stats ms[2];

	snprintf(params, sizeof(params), "%.*s, \"method\": \"memit\", \"memit_layers\": [0, 1], "
		 "\"mom2_weight\": 50}", (int)strlen(PARAMS) - 1, PARAMS);
	cr_assert_eq(mb_item_list_add(&items, "r0", "c d", mbt_json(REQ), &err), 0, "%s", err.msg);
	cr_assert_eq(run_task(v, &items, params, &err), 0, "%s", err.msg);
	ref_open(&r);
	c = &r.m->cfg;
	ms[0] = r.stats[1]; /* layer 0 */
	ms[1] = r.stats[0]; /* layer 1 */
	ref_probe_open(&p, r.m, "c d", "z");
	for (int u = 0; u < 2; u++)
		ref_lsm(p.base_lsm[u], r.e, p.unrel[u], p.n_unrel[u]);

	ref_memit(&r, &p, "c d", both, 2, ms);
	ref_scores(sc, r.e, &p);
	kl_edit = ref_kl(r.e, &p);
	n0 = ref_update_norm(&r, 0);
	n1 = ref_update_norm(&r, 1);
	cr_expect(n0 > 0 && n1 > 0, "both layers edited: %g %g", n0, n1);
	cr_expect_eq(metric(v, "edit.efficacy"), sc[0]);
	expect_close("memit efficacy_magnitude", metric(v, "edit.efficacy_magnitude"), sc[1], 1e-6);
	cr_expect_eq(metric(v, "edit.paraphrase"), sc[2]);
	cr_expect_eq(metric(v, "edit.neighbourhood"), sc[4]);
	expect_close("memit score", metric(v, "edit.score"), sc[6], 1e-12);
	expect_close("memit kl_unrelated", metric(v, "edit.kl_unrelated"), kl_edit, 1e-5);
	expect_close("memit update_norm", metric(v, "edit.update_norm"), sqrt(n0 * n0 + n1 * n1),
		     1e-9);
	{
		double e0 = ref_energy(&r, 0, &ms[0]), e1 = ref_energy(&r, 1, &ms[1]);
		mb_rng rng;
		ref_restore(&r, 0);
		ref_restore(&r, 1);
		mb_rng_init_named(&rng, 3, "edit/energy_control",
				  mb_item_key_index(items.items[0].key));
		ref_energy_control(&r, 0, &ms[0], e0, &rng);
		ref_energy_control(&r, 1, &ms[1], e1, &rng);
		expect_close("memit energy_control_kl", metric(v, "edit.energy_control_kl"),
			     ref_kl(r.e, &p), 1e-5);
	}
	ref_restore(&r, 0);
	ref_restore(&r, 1);
	{
		float uc[256], rcv[64];
		mb_rng rng;
		mb_rng_init_named(&rng, 3, "edit/control", mb_item_key_index(items.items[0].key));
		mb_rome_control_norm(uc, rcv, n0, c->d_mlp, c->d_model, &rng);
		mb_rome_apply(c, &r.w, 0, uc, rcv);
		mb_rome_control_norm(uc, rcv, n1, c->d_mlp, c->d_model, &rng);
		mb_rome_apply(c, &r.w, 1, uc, rcv);
		kl_ctl = ref_kl(r.e, &p);
		expect_close("memit control_kl_unrelated", metric(v, "edit.control_kl_unrelated"),
			     kl_ctl, 1e-5);
		cr_expect(fabs(ref_update_norm(&r, 0) - n0) < 1e-4 * n0, "the control's norm at "
			  "layer 0: %g, the edit's %g", ref_update_norm(&r, 0), n0);
		ref_restore(&r, 0);
		ref_restore(&r, 1);
	}
	ref_memit(&r, &p, "c d", wrong, 1, &r.stats[1]);
	ref_scores(sc, r.e, &p);
	expect_close("memit wrong_layer_score", metric(v, "edit.wrong_layer_score"), sc[6], 1e-12);
	cr_expect_eq(metric(v, "edit.wrong_layer_efficacy"), sc[0]);
	ref_probe_close(&p);
	ref_close(&r);
	mb_item_list_dispose(&items);
}

Test(edit_task, memit_and_sequential_params_are_checked)
{
	static const char *const bad[][2] = {
		{"\"method\": \"mend\"", "params.method"},
		{"\"memit_layers\": [0, 1]", "only with method"},
		{"\"method\": \"memit\", \"memit_layers\": [1, 0]",
		 "params.memit_layers: expected ascending layers in [0, 4095]"},
		{"\"method\": \"memit\", \"memit_layers\": [0, 4096]",
		 "params.memit_layers: expected ascending layers in [0, 4095]"},
		{"\"method\": \"memit\", \"memit_layers\": []",
		 "params.memit_layers: expected 1 to 64 layers"},
		{"\"method\": \"memit\", \"mom2_weight\": 0", "params.mom2_weight"},
		{"\"sequential\": [1, 1]",
		 "params.sequential: expected ascending edit counts in [1, 100000]"},
		{"\"sequential\": [0]",
		 "params.sequential: expected ascending edit counts in [1, 100000]"},
		{"\"sequential\": [1, 2.5]",
		 "params.sequential: expected ascending edit counts in [1, 100000]"},
		{"\"sequential\": 3", "params.sequential: expected 1 to 16 edit counts"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char spec[512];
		mb_json_doc doc = {0};
		mb_error err = {0};
		int n = snprintf(spec, sizeof(spec), "{\"layer\": 1, \"control_layer\": 0, %s}",
				 bad[i][0]);
		cr_assert_eq(mb_json_doc_parse(&doc, spec, (size_t)n, "spec", &err), 0, "%s",
			     err.msg);
		cr_expect_lt(mb_task_find("edit")->check_params(&doc, doc.root, "params", &err), 0,
			     "%s", spec);
		cr_expect(strstr(err.msg, bad[i][1]), "%s: %s", spec, err.msg);
		mb_json_doc_dispose(&doc);
	}
	{
		mb_item_list items = {0};
		mb_error err = {0};
		double v[64];
		char params[512];
		snprintf(params, sizeof(params), "%.*s, \"method\": \"memit\", \"memit_layers\": "
			 "[1, 2]}", (int)strlen(PARAMS) - 1, PARAMS);
		cr_assert_eq(mb_item_list_add(&items, "r0", "c d", mbt_json(REQ), &err), 0);
		cr_expect_lt(run_task(v, &items, params, &err), 0);
		cr_expect(strstr(err.msg, "params.memit_layers: the last, 2"), "%s", err.msg);
		mb_item_list_dispose(&items);
	}
}

/* The sequential battery after 1 and 2 edits of two requests ("c d" -> z,
 * then "t u" -> x) with PARAMS plus extra (JSON members, "" or ", ..."): its
 * artifact. */
static json_t *sequential_two(const char *extra)
{
	const mb_task *t = mb_task_find("edit");
	mb_error err = {0};
	mb_item_list items = {0};
	char req2[2048], params[512];
	json_t *p, *art = NULL;
	void *st = NULL;

	snprintf(req2, sizeof(req2), "%s", REQ);
	for (char *q; (q = strstr(req2, "c d"));)
		memcpy(q, "t u", 3);
	memcpy(strstr(req2, "\"z\""), "\"x\"", 3);
	cr_assert_eq(mb_item_list_add(&items, "r0", "c d", mbt_json(REQ), &err), 0, "%s", err.msg);
	cr_assert_eq(mb_item_list_add(&items, "r0", "t u", mbt_json(req2), &err), 0, "%s", err.msg);
	snprintf(params, sizeof(params), "%.*s%s, \"sequential\": [1, 2]}",
		 (int)strlen(PARAMS) - 1, PARAMS, extra);
	p = mbt_json(params);
	cr_assert_eq(t->open(&st, MODEL3, p, &err), 0, "%s", err.msg);
	cr_assert_eq(t->prepare(st, items.items, items.n, &art, &err), 0, "%s", err.msg);
	t->close(st);
	json_decref(p);
	mb_item_list_dispose(&items);
	cr_assert(art);
	cr_expect_str_eq(json_string_value(json_object_get(art, "kind")), "edit-sequence");
	cr_assert_eq(json_array_size(json_object_get(art, "points")), 2);
	return art;
}

/* The battery after 1 and 2 edits against the two edits made here one after
 * the other (the second on the model the first edited). */
Test(edit_task, the_sequential_battery_matches_edits_made_one_after_another,
     .init = one_thread)
{
	json_t *art = sequential_two(""), *pts = json_object_get(art, "points");
	ref_ctx r = {0};
	ref_probe p1 = {0}, p2 = {0};
	mb_rome_result res;
	double s1[7], s2[7];

	cr_expect_str_eq(json_string_value(json_object_get(art, "method")), "rome");

	ref_open(&r);
	ref_probe_open(&p1, r.m, "c d", "z");
	ref_probe_open(&p2, r.m, "t u", "x");
	ref_edit(&r, &p1, "c d", 1, &res);
	mb_rome_result_dispose(&res);
	ref_scores(s1, r.e, &p1);
	cr_expect_eq(json_real_value(json_object_get(json_array_get(pts, 0), "efficacy")), s1[0]);
	cr_expect_eq(json_real_value(json_object_get(json_array_get(pts, 0), "paraphrase")), s1[2]);
	cr_expect(json_is_null(json_object_get(json_array_get(pts, 0), "retention")));
	ref_edit(&r, &p2, "t u", 1, &res);
	mb_rome_result_dispose(&res);
	ref_scores(s1, r.e, &p1);
	ref_scores(s2, r.e, &p2);
	{
		json_t *q = json_array_get(pts, 1);
		printf("after 2 edits: efficacy %g (reference %g), retention %g (reference %g)\n",
		       json_real_value(json_object_get(q, "efficacy")), (s1[0] + s2[0]) / 2,
		       json_real_value(json_object_get(q, "retention")), s1[0]);
		cr_expect_eq(json_real_value(json_object_get(q, "efficacy")), (s1[0] + s2[0]) / 2);
		cr_expect_eq(json_real_value(json_object_get(q, "paraphrase")), (s1[2] + s2[2]) / 2);
		cr_expect_eq(json_real_value(json_object_get(q, "neighbourhood")),
			     (s1[4] + s2[4]) / 2);
		cr_expect_eq(json_real_value(json_object_get(q, "retention")), s1[0]);
		cr_expect_eq(json_real_value(json_object_get(q, "first_efficacy")), s1[0]);
	}
	ref_probe_close(&p1);
	ref_probe_close(&p2);
	ref_close(&r);
	json_decref(art);
}

/* The battery with method memit (over layers 0 and 1) against two MEMIT
 * edits made here one after the other; update_norm is each edit's own
 * change of c_proj over both layers. */
Test(edit_task, the_sequential_memit_battery_matches_edits_made_one_after_another,
     .init = one_thread)
{
	const int both[2] = {0, 1};
	json_t *art = sequential_two(", \"method\": \"memit\", \"memit_layers\": [0, 1], "
				     "\"mom2_weight\": 50"),
	       *pts = json_object_get(art, "points"), *q;
	ref_ctx r = {0};
	ref_probe p1 = {0}, p2 = {0};
	mb_rome_stats ms[2];
	double s1[7], s2[7], n1 = 0, n2 = 0;
	float *before;

	cr_expect_str_eq(json_string_value(json_object_get(art, "method")), "memit");
	cr_expect_eq(json_array_size(json_object_get(art, "layers")), 2);

	ref_open(&r);
	ms[0] = r.stats[1]; /* layer 0 */
	ms[1] = r.stats[0]; /* layer 1 */
	ref_probe_open(&p1, r.m, "c d", "z");
	ref_probe_open(&p2, r.m, "t u", "x");
	before = malloc(2 * r.slab * sizeof(float));
	cr_assert(before);
	ref_memit(&r, &p1, "c d", both, 2, ms);
	ref_scores(s1, r.e, &p1);
	for (int l = 0; l < 2; l++)
		n1 += ref_update_norm(&r, l) * ref_update_norm(&r, l);
	q = json_array_get(pts, 0);
	cr_expect_eq(json_real_value(json_object_get(q, "efficacy")), s1[0]);
	cr_expect_eq(json_real_value(json_object_get(q, "paraphrase")), s1[2]);
	expect_close("first update_norm", json_real_value(json_object_get(q, "update_norm")),
		     sqrt(n1), 1e-9);
	cr_expect(json_is_null(json_object_get(q, "retention")));
	memcpy(before, r.proj, 2 * r.slab * sizeof(float));
	ref_memit(&r, &p2, "t u", both, 2, ms);
	for (size_t i = 0; i < 2 * r.slab; i++) {
		double d = (double)r.proj[i] - (double)before[i];
		n2 += d * d;
	}
	ref_scores(s1, r.e, &p1);
	ref_scores(s2, r.e, &p2);
	q = json_array_get(pts, 1);
	printf("memit after 2 edits: efficacy %g (reference %g), retention %g (reference %g)\n",
	       json_real_value(json_object_get(q, "efficacy")), (s1[0] + s2[0]) / 2,
	       json_real_value(json_object_get(q, "retention")), s1[0]);
	cr_expect_eq(json_real_value(json_object_get(q, "efficacy")), (s1[0] + s2[0]) / 2);
	cr_expect_eq(json_real_value(json_object_get(q, "paraphrase")), (s1[2] + s2[2]) / 2);
	cr_expect_eq(json_real_value(json_object_get(q, "neighbourhood")), (s1[4] + s2[4]) / 2);
	cr_expect_eq(json_real_value(json_object_get(q, "retention")), s1[0]);
	expect_close("second update_norm", json_real_value(json_object_get(q, "update_norm")),
		     sqrt(n2), 1e-9);
	cr_expect(n2 > 0 && fabs(n2 - n1) > 0, "the second edit changed the weights");
	free(before);
	ref_probe_close(&p1);
	ref_probe_close(&p2);
	ref_close(&r);
	json_decref(art);
}

Test(edit_task, the_random_update_control_fails_when_its_norm_is_huge, .init = one_thread)
{
	mb_error err = {0};
	mb_item_list items = {0};
	double v1[64], v2[64];
	char params[512];
	double k1, k2;

	cr_assert_eq(mb_item_list_add(&items, "r0", "c d", mbt_json(REQ), &err), 0, "%s", err.msg);
	cr_assert_eq(run_task(v1, &items, PARAMS, &err), 0, "%s", err.msg);
	snprintf(params, sizeof(params), "%.*s, \"control_scale\": 1000}",
		 (int)strlen(PARAMS) - 1, PARAMS);
	cr_assert_eq(run_task(v2, &items, params, &err), 0, "%s", err.msg);
	k1 = metric(v1, "edit.control_kl_unrelated");
	k2 = metric(v2, "edit.control_kl_unrelated");
	printf("control KL on unrelated prompts: %.4g at 1x the edit's norm, %.4g at 1000x\n", k1,
	       k2);
	/* the edit's own metrics do not move with the control's scale */
	cr_expect_eq(metric(v1, "edit.kl_unrelated"), metric(v2, "edit.kl_unrelated"));
	cr_expect(k2 > 1.0 && k2 > 5 * k1, "the control did not respond: %g vs %g", k2, k1);
	k1 = metric(v1, "edit.energy_control_kl");
	k2 = metric(v2, "edit.energy_control_kl");
	printf("energy-matched control KL: %.4g at 1x the edit's energy, %.4g at 1000x its "
	       "scale\n", k1, k2);
	cr_expect(k2 > 1.0 && k2 > 5 * k1, "the energy control did not respond: %g vs %g", k2, k1);
	mb_item_list_dispose(&items);
}

Test(edit_task, draws_the_causal_trace_by_layer_and_position_group, .init = one_thread)
{
	const mb_task *t = mb_task_find("edit");
	mb_error err = {0};
	mb_item_list items = {0};
	mb_figure_list figs = {0};
	json_t *p = mbt_json(PARAMS);
	void *st = NULL;
	double v[64] = {0};

	cr_assert_eq(mb_item_list_add(&items, "r0", "c d", mbt_json(REQ), &err), 0, "%s", err.msg);
	cr_assert_eq(t->open(&st, MODEL3, p, &err), 0, "%s", err.msg);
	cr_assert_eq(t->figures(st, items.items, items.n, v, &figs, &err), 0, "%s", err.msg);
	cr_assert_eq(figs.n, 2);
	for (size_t f = 0; f < 2; f++) {
		const mb_figure *fg = &figs.items[f];
		double mx = 0;
		cr_expect_eq(fg->kind, MB_FIGURE_HEATMAP);
		cr_expect_eq(fg->rows, 3);
		cr_expect_eq(fg->cols, MB_TRACE_POS_COUNT);
		for (size_t i = 0; i < fg->rows * fg->cols; i++) {
			/* "a b [c d] e": no middle subject token, and the first after it
			 * is the last position: those columns are NaN */
			size_t g = i % MB_TRACE_POS_COUNT;
			cr_expect(isnan(fg->values[i]) == (g == MB_TRACE_POS_MID_SUBJ ||
							   g == MB_TRACE_POS_FIRST_AFTER ||
							   g == MB_TRACE_POS_FURTHER), "cell %zu", i);
			if (!isnan(fg->values[i]))
				mx = fabs(fg->values[i]) > mx ? fabs(fg->values[i]) : mx;
		}
		cr_expect(mx > 0, "%s: every effect is 0", fg->name);
	}
	cr_expect_str_eq(figs.items[0].name, "edit.trace_mlp");
	mb_figure_list_dispose(&figs);
	t->close(st);
	json_decref(p);
	mb_item_list_dispose(&items);
}

/* Bad items: one line naming the item and the field. */
Test(edit_task, a_bad_item_is_one_line_naming_the_item_and_field, .init = one_thread)
{
	static const struct {
		const char *from, *to, *want;
	} cases[] = {
		{"\"target_new\": \"z\"", "\"target_new\": \"y\"", "target_new\": equals"},
		{"\"prompt\": \"a b {} e\"", "\"prompt\": \"a b e\"", "\"prompt\": must contain {}"},
		{"\"unrelated_prompts\": [\"m n o\", \"p q r s\"]", "\"unrelated_prompts\": []",
		 "\"unrelated_prompts\": expected an array"},
		{"\"a b i j e\"", "\"a b c d e f g h i j k l m n o p q\"",
		 "neighborhood_prompts[0]: 17 tokens"},
		{"\"relation\": \"r0\"", "\"relation\": \"r0\", \"color\": 1", "unknown field \"color\""},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		char text[2048];
		const char *at = strstr(REQ, cases[c].from);
		mb_error err = {0};
		mb_item_list items = {0};
		double v[64];

		cr_assert(at, "case %zu", c);
		snprintf(text, sizeof(text), "%.*s%s%s", (int)(at - REQ), REQ, cases[c].to,
			 at + strlen(cases[c].from));
		cr_assert_eq(mb_item_list_add(&items, "r0", "c d", mbt_json(text), &err), 0);
		cr_expect_lt(run_task(v, &items, PARAMS, &err), 0, "case %zu ran", c);
		cr_expect(strstr(err.msg, cases[c].want) && strstr(err.msg, "item ") &&
			  !strchr(err.msg, '\n'), "case %zu: %s", c, err.msg);
		mb_item_list_dispose(&items);
	}
}

Test(edit_task, generate_reads_a_pinned_requests_file, .init = one_thread)
{
	const mb_task *t = mb_task_find("edit");
	const char *path = "/tmp/mb-edit-task-requests.jsonl";
	char text[4096], sha[MB_SHA256_HEX_LEN], params[512];
	mb_error err = {0};
	mb_item_list items = {0};
	json_t *p;

	snprintf(text, sizeof(text), "%s\n\n%s\n", REQ, REQ);
	/* the second request: another subject */
	memcpy(strstr(strchr(text, '\n') + 2, "\"c d\""), "\"t u\"", 5);
	cr_assert_eq(mb_file_write_all(path, text, strlen(text), &err), 0, "%s", err.msg);
	mb_sha256_hex_buf(sha, text, strlen(text));
	snprintf(params, sizeof(params), "{\"source\": \"%s\", \"source_sha256\": \"%s\"}", path,
		 sha);
	p = mbt_json(params);
	cr_assert_eq(t->generate(&items, 0, p, &err), 0, "%s", err.msg);
	cr_expect_eq(items.n, 2);
	cr_expect_str_eq(items.items[0].stratum, "r0");
	cr_expect_str_eq(items.items[1].cluster, "t u");
	mb_item_list_dispose(&items);
	json_decref(p);

	sha[0] = sha[0] == '0' ? '1' : '0';
	snprintf(params, sizeof(params), "{\"source\": \"%s\", \"source_sha256\": \"%s\"}", path,
		 sha);
	p = mbt_json(params);
	cr_expect_eq(t->generate(&items, 0, p, &err), MB_EMISMATCH);
	cr_expect(strstr(err.msg, path) && strstr(err.msg, sha), "%s", err.msg);
	mb_item_list_dispose(&items);
	json_decref(p);

	snprintf(text, sizeof(text), "%s\n{\"subject\": 1}\n", REQ);
	cr_assert_eq(mb_file_write_all(path, text, strlen(text), &err), 0, "%s", err.msg);
	mb_sha256_hex_buf(sha, text, strlen(text));
	snprintf(params, sizeof(params), "{\"source\": \"%s\", \"source_sha256\": \"%s\"}", path,
		 sha);
	p = mbt_json(params);
	cr_expect_eq(t->generate(&items, 0, p, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, ":2: ") && strstr(err.msg, "\"subject\""), "%s", err.msg);
	mb_item_list_dispose(&items);
	json_decref(p);
}
