/*
 * sae_text task (src/tasks/sae_text.c) on the committed zoo facts model (a
 * 4-layer GPT-2 of d 64 with a WordLevel tokenizer; read, never trained
 * here) and a random ReLU SAE in SAELens layout written by the test:
 *  - every metric against a second implementation in this test: the
 *    engine's clean run with the hook's rows captured, the SAE's encoder and
 *    decoder written here in double from SAELens's definition, a run with
 *    those reconstructions written into the hook and one with zeros, CE and
 *    KL in double with libm;
 *  - the BOS and the cut: bos prepends, max_tokens cuts, the SAE's
 *    prepend_bos is the default;
 *  - bad params, SAEs and sources are one line naming them.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mechbench/engine.h>
#include <mechbench/hooks.h>
#include <mechbench/model.h>
#include <mechbench/sae.h>
#include <mechbench/task.h>
#include <mechbench/tokenizer.h>

#include "support/harness_support.h"

#define FACTS MB_SOURCE_DIR "/baselines/models/facts"
#define HOOK "blocks.2.hook_resid_pre"
#define S 128

static char sae_dir[64];

/* A random ReLU SAE of d_in d at dir (its latents fire on some rows). */
static void write_sae(const char *dir, int d, int prepend_bos)
{
	mb_sae *s = NULL;
	mb_error err = {0};
	uint64_t x = 5;

	cr_assert_eq(mb_sae_init(&s, MB_SAE_RELU, d, S, 0, &err), 0, "%s", err.msg);
	for (size_t i = 0; i < s->n_params; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		s->params[i] = 0.3f * ((float)(x >> 40) / 16777216.0f - 0.5f);
	}
	snprintf(s->hook_name, sizeof(s->hook_name), "%s", HOOK);
	s->context_size = 12;
	s->prepend_bos = prepend_bos;
	cr_assert_eq(mb_sae_save(s, dir, &err), 0, "%s", err.msg);
	mb_sae_free(s);
}

static void setup(void)
{
	snprintf(sae_dir, sizeof(sae_dir), "/tmp/mb-sae-text-XXXXXX");
	cr_assert(mkdtemp(sae_dir));
	write_sae(sae_dir, 64, 0);
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", sae_dir);
	cr_expect_eq(system(cmd), 0);
}

/* Runs sae_text on FACTS with params (JSON text; "SAE" is replaced by the
 * test's SAE folder) over items[0..n); values (n, 4). */
static int run_task(double *v, const mb_item *items, size_t n, const char *params, mb_error *err)
{
	const mb_task *t = mb_task_find("sae_text");
	char text[512], *at;
	json_t *p;
	void *st = NULL;
	int rc;

	cr_assert(t);
	snprintf(text, sizeof(text), "%s", params);
	if ((at = strstr(text, "SAE"))) {
		char rest[512];
		snprintf(rest, sizeof(rest), "%s", at + 3);
		snprintf(at, sizeof(text) - (size_t)(at - text), "%s%s", sae_dir, rest);
	}
	p = mbt_json(text);
	rc = t->open(&st, FACTS, p, err);
	if (rc == 0)
		rc = mb_task_run(t, st, items, n, v, err);
	t->close(st);
	json_decref(p);
	return rc;
}

static void add_text(mb_item_list *l, const char *text)
{
	mb_error err = {0};
	char cluster[32];

	snprintf(cluster, sizeof(cluster), "c%zu", l->n);
	cr_assert_eq(mb_item_list_add(l, "s", cluster, json_pack("{s:s}", "text", text), &err), 0,
		     "%s", err.msg);
}

/* ---- the second implementation ---- */

typedef struct ref_hook {
	const mb_sae *sae;
	int mode;  /* 0 capture, 1 write the reconstruction, 2 write zeros */
	double l0, cos;
} ref_hook;

/* SAELens's standard SAE on one row, in double: f = relu((x - a b_dec)
 * W_enc + b_enc), x_hat = f W_dec + b_dec (a: apply_b_dec_to_input). */
static void ref_sae(double *xhat, int *active, const mb_sae *s, const float *x)
{
	const int D = s->d_in;
	*active = 0;
	for (int j = 0; j < D; j++)
		xhat[j] = s->b_dec[j];
	for (int k = 0; k < S; k++) {
		double pre = s->b_enc[k];
		for (int j = 0; j < D; j++)
			pre += ((double)x[j] - (s->apply_b_dec_to_input ? s->b_dec[j] : 0.0)) *
			       s->W_enc[(size_t)j * S + k];
		if (pre <= 0)
			continue;
		(*active)++;
		for (int j = 0; j < D; j++)
			xhat[j] += pre * s->W_dec[(size_t)k * D + j];
	}
}

static int ref_fn(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	ref_hook *h = payload;
	const int D = h->sae->d_in;
	double xhat[64];
	(void)err;
	cr_assert_eq(t->batch, 1);
	h->l0 = h->cos = 0;
	for (int p = 0; p < t->seq; p++) {
		float *x = t->data + (size_t)p * D;
		double xx = 0, hh = 0, xh = 0;
		int active;
		ref_sae(xhat, &active, h->sae, x);
		for (int j = 0; j < D; j++) {
			xx += (double)x[j] * x[j];
			hh += xhat[j] * xhat[j];
			xh += x[j] * xhat[j];
		}
		h->l0 += active;
		h->cos += xh / sqrt(xx * hh);
		for (int j = 0; h->mode && j < D; j++)
			x[j] = h->mode == 1 ? (float)xhat[j] : 0.0f;
	}
	h->l0 /= t->seq;
	h->cos /= t->seq;
	return 0;
}

static double log_softmax_at(const float *z, int V, int i)
{
	double m = z[0], s = 0;
	for (int v = 1; v < V; v++)
		m = z[v] > m ? z[v] : m;
	for (int v = 0; v < V; v++)
		s += exp((double)z[v] - m);
	return (double)z[i] - m - log(s);
}

/* The four metrics of tokens tok (T) by the second implementation. */
static void reference(double out[4], const int32_t *tok, int T)
{
	mb_model *m = NULL;
	mb_sae *sae = NULL;
	mb_engine *e = NULL;
	mb_hooks *hooks = NULL;
	mb_hook_point pt;
	mb_error err = {0};
	ref_hook h = {0};
	float *clean;
	double ce[3] = {0, 0, 0}, kl = 0, l0 = 0, cos = 0;
	mb_engine_opts eo = {.max_batch = 1, .max_seq = T};

	cr_assert_eq(mb_model_load(&m, FACTS, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_sae_load(&sae, sae_dir, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_engine_init(&e, &m->cfg, &m->w, &eo, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_hooks_init(&hooks, &err), 0);
	cr_assert_eq(mb_hook_parse(&pt, HOOK, &err), 0);
	const int V = m->cfg.n_vocab;
	clean = malloc(sizeof(float) * (size_t)T * V);
	h.sae = sae;
	for (int mode = 0; mode < 3; mode++) {
		mb_run run = {.batch = 1, .seq = T, .tokens = tok, .hooks = hooks,
			      .logits = MB_LOGITS_ALL};
		h.mode = mode;
		mb_hooks_clear(hooks);
		cr_assert_eq(mb_hooks_add(hooks, pt, ref_fn, &h, mode ? 0 : MB_HOOK_READONLY, &err), 0);
		cr_assert_eq(mb_engine_forward(e, &run, &err), 0, "%s", err.msg);
		if (mode == 0) {
			mb_engine_logits_copy(e, clean);
			l0 = h.l0;
			cos = h.cos;
		}
		for (int t = 0; t < T; t++) {
			const float *z = mb_engine_logits_row(e, 0, t), *zc = clean + (size_t)t * V;
			if (t + 1 < T)
				ce[mode] -= log_softmax_at(z, V, tok[t + 1]) / (T - 1);
			if (mode == 1)
				for (int v = 0; v < V; v++) {
					double lp = log_softmax_at(zc, V, v);
					kl += exp(lp) * (lp - log_softmax_at(z, V, v)) / T;
				}
		}
	}
	out[0] = (ce[2] - ce[1]) / (ce[2] - ce[0]);
	out[1] = kl;
	out[2] = l0;
	out[3] = cos;
	free(clean);
	mb_hooks_free(hooks);
	mb_engine_free(e);
	mb_sae_free(sae);
	mb_model_free(m);
}

static const char *const TEXT = "Ka Lo lives in Paris . Mi Sa is a baker , To Vu a pilot";

/* The text's ids, after bos when bos >= 0, cut to cut tokens. */
static int ids_of(int32_t *tok, int bos, int cut)
{
	mb_model *m = NULL;
	mb_error err = {0};
	int32_t *ids = NULL;
	int n = 0, k = 0;

	cr_assert_eq(mb_model_load(&m, FACTS, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_tokenizer_encode(m->tok, TEXT, &ids, &n, &err), 0, "%s", err.msg);
	if (bos >= 0)
		tok[k++] = bos;
	for (int i = 0; i < n && k < cut; i++)
		tok[k++] = ids[i];
	free(ids);
	mb_model_free(m);
	return k;
}

TestSuite(sae_text, .init = setup, .fini = teardown);

Test(sae_text, metrics_match_a_second_implementation_with_bos_and_cut)
{
	static const char *const name[4] = {"ce_recovered", "kl", "l0", "cos"};
	static const struct {
		const char *params;
		int bos, cut;
	} cases[] = {
		{"{\"sae\": \"SAE\", \"bos\": \"<bos>\"}", 0, 12}, /* cfg.json's context 12 */
		{"{\"sae\": \"SAE\"}", -1, 12}, /* cfg.json's prepend_bos 0 */
		{"{\"sae\": \"SAE\", \"bos\": \"<bos>\", \"max_tokens\": 32}", 0, 32},
		{"{\"sae\": \"SAE\", \"max_tokens\": 6}", -1, 6},
	};
	mb_item_list l = {0};
	mb_error err = {0};

	add_text(&l, TEXT);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		int32_t tok[64];
		double v[4], want[4];
		const int T = ids_of(tok, cases[c].bos, cases[c].cut);
		cr_assert_eq(run_task(v, l.items, 1, cases[c].params, &err), 0, "%s", err.msg);
		reference(want, tok, T);
		cr_expect(want[2] > 1 && want[2] < S - 1, "the SAE fires on some latents: %g", want[2]);
		for (int k = 0; k < 4; k++) {
			printf("case %zu %s: task %.9g reference %.9g\n", c, name[k], v[k], want[k]);
			cr_expect(fabs(v[k] - want[k]) <= 1e-5 * (1 + fabs(want[k])),
				  "case %zu %s: %.9g, reference %.9g", c, name[k], v[k], want[k]);
		}
	}
	mb_item_list_dispose(&l);
}

Test(sae_text, bad_params_saes_and_sources_are_one_line_naming_them)
{
	const mb_task *t = mb_task_find("sae_text");
	mb_item_list l = {0};
	mb_error err = {0};
	mb_json_doc doc = {0};
	double v[4];
	char other[64];
	const char *spec = "{\"bos\": \"<bos>\"}";

	add_text(&l, TEXT);
	cr_expect_lt(run_task(v, l.items, 1, "{\"sae\": \"SAE\", \"bos\": \"<s>\"}", &err), 0);
	cr_expect(strstr(err.msg, "params.bos: '<s>'"), "%s", err.msg);
	snprintf(other, sizeof(other), "/tmp/mb-sae-text-XXXXXX");
	cr_assert(mkdtemp(other));
	write_sae(other, 32, 0);
	{
		json_t *p = json_pack("{s:s}", "sae", other);
		void *st = NULL;
		cr_expect_lt(t->open(&st, FACTS, p, &err), 0);
		cr_expect_null(st);
		json_decref(p);
	}
	cr_expect(strstr(err.msg, "d_in 32") && strstr(err.msg, "d_model 64"), "%s", err.msg);
	mb_item_list_dispose(&l);
	cr_assert_eq(mb_item_list_add(&l, "s", "c", json_pack("{s:i}", "text", 3), &err), 0);
	cr_expect_lt(run_task(v, l.items, 1, "{\"sae\": \"SAE\"}", &err), 0);
	cr_expect(strstr(err.msg, "\"text\": expected a string"), "%s", err.msg);
	mb_item_list_dispose(&l);
	cr_assert_eq(mb_json_doc_parse(&doc, spec, strlen(spec), "spec", &err), 0, "%s", err.msg);
	cr_expect_lt(t->check_params(&doc, doc.root, "params", &err), 0);
	cr_expect(strstr(err.msg, "sae"), "%s", err.msg);
	mb_json_doc_dispose(&doc);
	cr_expect_lt(t->generate(&l, 0, NULL, &err), 0);
	cr_expect(strstr(err.msg, "params.source"), "%s", err.msg);
	{
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", other);
		cr_expect_eq(system(cmd), 0);
	}
}
