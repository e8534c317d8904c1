/* The induction task: its generator, and its metrics on models whose answer
 * is known: a hand-built 2-layer attention-only model whose layer-0 head 0 is
 * an exact previous-token head and whose layer-1 head 0 is an exact induction
 * head reading that head's output through its keys (K-composition) and
 * copying tokens to the logits; a small random GPT-2-family model (the
 * negative control: no induction head); and the committed zoo model when it
 * is there. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/file.h>
#include <mechbench/rng.h>
#include <mechbench/safetensors.h>
#include <mechbench/task.h>

#include "support/harness_support.h"

/* metric indices (the order of induction.c's table, checked by name below) */
enum { SCORE, VS_CTL, PREV, REP1, REP2, DROP, AB_TOP, AB_RND, AB_EXC, KK, KQ, KV, KOQ, KOV, NM };

static const mb_task *ind(void)
{
	const mb_task *t = mb_task_find("induction");
	cr_assert(t != NULL, "the induction task is registered");
	cr_assert_eq(t->n_metrics, NM);
	cr_assert_eq(mb_task_metric_index(t, "induction.score"), SCORE);
	cr_assert_eq(mb_task_metric_index(t, "induction.kcomp_k"), KK);
	cr_assert_eq(mb_task_metric_index(t, "induction.kcomp_k_over_v"), KOV);
	return t;
}

/* ---- hand-built induction model ---------------------------------------------- */

/* V 16 tokens, P 24 positions, D 72 = tok (16) | pos (24) | prev (16) | out (16),
 * H 3 heads of Dh 24 per layer. */
#define HV 16
#define HP 24
#define HD 72
#define HH 3
#define HDH 24
#define TOK0 0
#define POS0 16
#define PREV0 40
#define OUT0 56

static void write_config(const char *dir, const char *json)
{
	char path[512];
	mb_error err = {0};
	snprintf(path, sizeof(path), "%s/config.json", dir);
	cr_assert_eq(mb_file_write_all(path, json, strlen(json), &err), 0, "%s", err.msg);
}

static void write_hand_model(const char *dir)
{
	static float wte[HV * HD], wpe[HP * HD], lm[HV * HD];
	static float qkv[2][HD * 3 * HD], qkvb[2][3 * HD], o[2][HD * HD], ob[2][HD];
	const float c = 20.0f * sqrtf((float)HDH); /* score 20 on a match after 1/sqrt(Dh) */
	char path[512], cfg[512];
	mb_error err = {0};

	memset(qkv, 0, sizeof(qkv));
	memset(o, 0, sizeof(o));
	for (int v = 0; v < HV; v++) {
		wte[v * HD + TOK0 + v] = 1;
		lm[v * HD + OUT0 + v] = 10; /* logits read only the out block */
	}
	for (int p = 0; p < HP; p++)
		wpe[p * HD + POS0 + p] = 1;
	/* layer 0 head 0: q(pos i) = c e_{i-1}, k(pos j) = e_j: attends to i - 1;
	 * v = token one-hot, written by W_O into the prev block */
	for (int p = 1; p < HP; p++)
		qkv[0][(POS0 + p) * 3 * HD + 0 * HD + (p - 1)] = c;
	for (int p = 0; p < HP; p++)
		qkv[0][(POS0 + p) * 3 * HD + 1 * HD + p] = 1;
	for (int v = 0; v < HV; v++) {
		qkv[0][(TOK0 + v) * 3 * HD + 2 * HD + v] = 1;
		o[0][v * HD + PREV0 + v] = 1;
	}
	/* layer 1 head 0: q = c tok(i), k = prev(j): attends where the previous
	 * token equals the current one; v = token one-hot into the out block */
	for (int v = 0; v < HV; v++) {
		qkv[1][(TOK0 + v) * 3 * HD + 0 * HD + v] = c;
		qkv[1][(PREV0 + v) * 3 * HD + 1 * HD + v] = 1;
		qkv[1][(TOK0 + v) * 3 * HD + 2 * HD + v] = 1;
		o[1][v * HD + OUT0 + v] = 1;
	}
	{
		mb_st_entry e[] = {
			{"wte.weight", 2, {HV, HD}, wte},
			{"wpe.weight", 2, {HP, HD}, wpe},
			{"lm_head.weight", 2, {HV, HD}, lm},
			{"h.0.attn.c_attn.weight", 2, {HD, 3 * HD}, qkv[0]},
			{"h.0.attn.c_attn.bias", 1, {3 * HD}, qkvb[0]},
			{"h.0.attn.c_proj.weight", 2, {HD, HD}, o[0]},
			{"h.0.attn.c_proj.bias", 1, {HD}, ob[0]},
			{"h.1.attn.c_attn.weight", 2, {HD, 3 * HD}, qkv[1]},
			{"h.1.attn.c_attn.bias", 1, {3 * HD}, qkvb[1]},
			{"h.1.attn.c_proj.weight", 2, {HD, HD}, o[1]},
			{"h.1.attn.c_proj.bias", 1, {HD}, ob[1]},
		};
		snprintf(path, sizeof(path), "%s/model.safetensors", dir);
		cr_assert_eq(mb_safetensors_write_f32(path, e, sizeof(e) / sizeof(e[0]), NULL, &err),
			     0, "%s", err.msg);
	}
	snprintf(cfg, sizeof(cfg),
		 "{\"model_type\": \"gpt2\", \"vocab_size\": %d, \"n_positions\": %d, "
		 "\"n_embd\": %d, \"n_layer\": 2, \"n_head\": %d, \"n_inner\": null, "
		 "\"activation_function\": \"gelu_new\", \"layer_norm_epsilon\": 1e-5, "
		 "\"tie_word_embeddings\": false, \"attn_only\": true, "
		 "\"normalization_type\": \"none\"}",
		 HV, HP, HD, HH);
	write_config(dir, cfg);
}

/* A small GPT-2-family model (LN, MLP, tied) with N(0, 0.02) weights. */
static void write_random_gpt2(const char *dir)
{
	enum { V = 64, P = 64, D = 32, L = 2, M = 128 };
	static float wte[V * D], wpe[P * D], lnw[L][D], lnb[L][D], qkv[L][D * 3 * D],
		qkvb[L][3 * D], o[L][D * D], ob[L][D], fc[L][D * M], fcb[L][M], pr[L][M * D],
		prb[L][D], lnfw[D], lnfb[D];
	mb_st_entry e[4 + 12 * L];
	char names[12 * L][48];
	size_t n = 0;
	mb_rng r;
	mb_error err = {0};
	char path[512];

	mb_rng_init_named(&r, 7, "test/random_gpt2", 0);
#define FILLN(a) for (size_t i_ = 0; i_ < sizeof(a) / sizeof(float); i_++) ((float *)(a))[i_] = 0.02f * (float)mb_rng_normal(&r)
#define FILL1(a) for (size_t i_ = 0; i_ < sizeof(a) / sizeof(float); i_++) ((float *)(a))[i_] = 1.0f
	FILLN(wte);
	FILLN(wpe);
	FILLN(qkv);
	FILLN(o);
	FILLN(fc);
	FILLN(pr);
	FILL1(lnw);
	FILL1(lnfw);
	e[n++] = (mb_st_entry){"wte.weight", 2, {V, D}, wte};
	e[n++] = (mb_st_entry){"wpe.weight", 2, {P, D}, wpe};
	e[n++] = (mb_st_entry){"ln_f.weight", 1, {D}, lnfw};
	e[n++] = (mb_st_entry){"ln_f.bias", 1, {D}, lnfb};
	for (int l = 0; l < L; l++) {
		struct {
			const char *s;
			int nd;
			int64_t a, b;
			const float *d;
		} t[12] = {{"ln_1.weight", 1, D, 0, lnw[l]},        {"ln_1.bias", 1, D, 0, lnb[l]},
			   {"ln_2.weight", 1, D, 0, lnw[l]},        {"ln_2.bias", 1, D, 0, lnb[l]},
			   {"attn.c_attn.weight", 2, D, 3 * D, qkv[l]}, {"attn.c_attn.bias", 1, 3 * D, 0, qkvb[l]},
			   {"attn.c_proj.weight", 2, D, D, o[l]},   {"attn.c_proj.bias", 1, D, 0, ob[l]},
			   {"mlp.c_fc.weight", 2, D, M, fc[l]},     {"mlp.c_fc.bias", 1, M, 0, fcb[l]},
			   {"mlp.c_proj.weight", 2, M, D, pr[l]},   {"mlp.c_proj.bias", 1, D, 0, prb[l]}};
		for (int k = 0; k < 12; k++) {
			char *nm = names[l * 12 + k];
			snprintf(nm, 48, "h.%d.%s", l, t[k].s);
			e[n] = (mb_st_entry){nm, t[k].nd, {t[k].a, t[k].b}, t[k].d};
			n++;
		}
	}
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	cr_assert_eq(mb_safetensors_write_f32(path, e, n, NULL, &err), 0, "%s", err.msg);
	write_config(dir, "{\"model_type\": \"gpt2\", \"vocab_size\": 64, \"n_positions\": 64, "
			  "\"n_embd\": 32, \"n_layer\": 2, \"n_head\": 4, \"n_inner\": 128, "
			  "\"activation_function\": \"gelu_new\", \"layer_norm_epsilon\": 1e-5, "
			  "\"tie_word_embeddings\": true}");
}

/* An item with R = the given tokens and C = R shifted by one within [1, V). */
static void add_item(mb_item_list *l, const int *R, int r, int V)
{
	json_t *in = json_object(), *a = json_array(), *c = json_array();
	mb_error err = {0};
	for (int i = 0; i < r; i++) {
		json_array_append_new(a, json_integer(R[i]));
		json_array_append_new(c, json_integer(R[i] % (V - 1) + 1));
	}
	json_object_set_new(in, "bos", json_integer(0));
	json_object_set_new(in, "rep", a);
	json_object_set_new(in, "ctl", c);
	cr_assert_eq(mb_item_list_add(l, "s", "s", in, &err), 0, "%s", err.msg);
}

static void *open_model(const mb_task *t, const char *dir, const char *params_json)
{
	void *st = NULL;
	mb_error err = {0};
	json_t *params = params_json ? json_loads(params_json, 0, NULL) : NULL;
	int rc = t->open(&st, dir, params, &err);
	json_decref(params);
	cr_assert_eq(rc, 0, "open %s: %s", dir, err.msg);
	return st;
}

Test(induction, hand_built_induction_head_has_the_known_scores_and_causal_effects)
{
	const mb_task *t = ind();
	char dir[512];
	mb_item_list items = {0};
	mb_error err = {0};
	double v[4 * NM];
	void *st;
	/* distinct tokens, so the induction diagonal is the only match */
	static const int R[4][11] = {{3, 9, 1, 14, 7, 12, 5, 10, 2, 15, 8},
				     {11, 4, 13, 6, 2, 8, 15, 1, 9, 3, 0},
				     {5, 1, 12, 7, 14, 3, 10, 0, 0, 0, 0},
				     {2, 13, 8, 4, 11, 6, 9, 15, 1, 0, 0}};
	static const int rl[4] = {11, 10, 7, 9};

	mbt_tmpdir(dir, sizeof(dir));
	write_hand_model(dir);
	for (int i = 0; i < 4; i++)
		add_item(&items, R[i], rl[i], HV);
	st = open_model(t, dir, NULL);
	cr_assert_eq(mb_task_run(t, st, items.items, items.n, v, &err), 0, "%s", err.msg);
	for (int i = 0; i < 4; i++) {
		const double *x = v + i * NM;
		cr_expect_gt(x[SCORE], 0.999, "item %d: induction score %g", i, x[SCORE]);
		cr_expect_gt(x[VS_CTL], 0.5, "item %d: score vs control %g", i, x[VS_CTL]);
		cr_expect_gt(x[PREV], 0.999, "item %d: previous-token score %g", i, x[PREV]);
		cr_expect_lt(x[REP2], 0.01, "item %d: second-repeat loss %g", i, x[REP2]);
		cr_expect_gt(x[REP1], 1.0, "item %d: first-repeat loss %g", i, x[REP1]);
		cr_expect_gt(x[AB_TOP], 1.0, "item %d: ablating the induction head %g", i, x[AB_TOP]);
		/* the other layer-1 heads are zero heads: ablating one changes no bit */
		cr_expect_eq(x[AB_RND], 0.0, "item %d: random-head ablation %g", i, x[AB_RND]);
		cr_expect_gt(x[KK], 1.0, "item %d: key path %g", i, x[KK]);
		/* W_Q and W_V of the receiver do not read the prev block */
		cr_expect_lt(fabs(x[KQ]), 1e-6, "item %d: query path %g", i, x[KQ]);
		cr_expect_lt(fabs(x[KV]), 1e-6, "item %d: value path %g", i, x[KV]);
		cr_expect_eq(x[KOQ], x[KK] - x[KQ]);
		cr_expect_eq(x[AB_EXC], x[AB_TOP] - x[AB_RND]);
		cr_expect_eq(x[DROP], x[REP1] - x[REP2]);
	}
	/* figures: head (1, 0) copies (OV positivity 1), (0, 0) writes where the
	 * unembedding does not read (0) */
	{
		mb_figure_list figs = {0};
		const mb_figure *f;
		cr_assert_eq(t->figures(st, items.items, items.n, v, &figs, &err), 0, "%s", err.msg);
		f = mb_figure_list_find(&figs, "induction.head_scores.copying");
		cr_assert(f != NULL);
		cr_expect_lt(fabs(f->values[1 * HH + 0] - 1.0), 1e-9, "copying (1,0) = %g",
			     f->values[HH]);
		cr_expect_eq(f->values[0], 0.0, "copying (0,0) = %g", f->values[0]);
		f = mb_figure_list_find(&figs, "induction.head_scores.induction");
		cr_assert(f != NULL);
		for (int h = 1; h < HH; h++)
			cr_expect_lt(f->values[HH + h], f->values[HH], "head 1.%d below 1.0", h);
		cr_expect(mb_figure_list_find(&figs, "induction.top_pattern") != NULL);
		cr_expect(mb_figure_list_find(&figs, "induction.loss_by_len") != NULL);
		mb_figure_list_dispose(&figs);
	}
	t->close(st);
	mb_item_list_dispose(&items);
}

Test(induction, values_do_not_depend_on_the_batch_an_item_runs_in)
{
	const mb_task *t = ind();
	char dir[512];
	mb_item_list items = {0};
	mb_error err = {0};
	json_t *params = json_loads("{\"lengths\": [5, 11], \"n_per_stratum\": 3, "
				    "\"bands\": [{\"name\": \"all\", \"lo\": 1, \"hi\": 15}]}",
				    0, NULL);
	double all[6 * NM], one[NM];
	void *st;

	mbt_tmpdir(dir, sizeof(dir));
	write_hand_model(dir);
	cr_assert_eq(t->generate(&items, 5, params, &err), 0, "%s", err.msg);
	cr_assert_eq(items.n, 6);
	st = open_model(t, dir, "{\"ablation\": \"zero\"}");
	cr_assert_eq(mb_task_run(t, st, items.items, items.n, all, &err), 0, "%s", err.msg);
	for (size_t i = 0; i < items.n; i++) {
		cr_assert_eq(mb_task_run(t, st, items.items + i, 1, one, &err), 0, "%s", err.msg);
		cr_expect_eq(memcmp(one, all + i * NM, sizeof(one)), 0, "item %zu differs alone", i);
	}
	t->close(st);
	json_decref(params);
	mb_item_list_dispose(&items);
}

Test(induction, random_gpt2_family_model_has_no_induction_head)
{
	const mb_task *t = ind();
	char dir[512];
	mb_item_list items = {0};
	mb_error err = {0};
	json_t *params = json_loads("{\"lengths\": [10, 25], \"n_per_stratum\": 8, "
				    "\"bands\": [{\"name\": \"all\", \"lo\": 1, \"hi\": 63}]}",
				    0, NULL);
	double *v, mean = 0, mean_ctl = 0;
	void *st;

	mbt_tmpdir(dir, sizeof(dir));
	write_random_gpt2(dir);
	cr_assert_eq(t->generate(&items, 11, params, &err), 0, "%s", err.msg);
	v = calloc(items.n * NM, sizeof(double));
	st = open_model(t, dir, "{\"top_k\": 2}");
	for (size_t i = 0; i < items.n; i += t->batch) {
		size_t k = items.n - i < t->batch ? items.n - i : t->batch;
		cr_assert_eq(mb_task_run(t, st, items.items + i, k, v + i * NM, &err), 0, "%s", err.msg);
	}
	for (size_t i = 0; i < items.n; i++) {
		for (int m = 0; m < NM; m++)
			cr_assert(isfinite(v[i * NM + m]));
		mean += v[i * NM + SCORE] / (double)items.n;
		mean_ctl += v[i * NM + VS_CTL] / (double)items.n;
	}
	printf("random GPT-2-family model: induction score %.4f, vs control %.4f\n", mean, mean_ctl);
	/* TransformerLens's detector calls a head an induction head at 0.4 */
	cr_expect_lt(mean, 0.2, "mean induction score %g", mean);
	cr_expect_lt(fabs(mean_ctl), 0.05, "score vs control %g", mean_ctl);
	t->close(st);
	free(v);
	json_decref(params);
	mb_item_list_dispose(&items);
}

Test(induction, generator_is_seeded_stratified_and_controls_break_the_diagonal)
{
	const mb_task *t = ind();
	mb_item_list a = {0}, b = {0}, c = {0};
	mb_error err = {0};
	json_t *p = json_loads("{\"lengths\": [10, 31], \"n_per_stratum\": 5, \"bos\": 0, "
			       "\"bands\": [{\"name\": \"lo\", \"lo\": 1, \"hi\": 63}, "
			       "{\"name\": \"hi\", \"lo\": 64, \"hi\": 127}]}", 0, NULL);

	cr_assert_eq(t->generate(&a, 1, p, &err), 0, "%s", err.msg);
	cr_assert_eq(t->generate(&b, 1, p, &err), 0, "%s", err.msg);
	cr_assert_eq(t->generate(&c, 2, p, &err), 0, "%s", err.msg);
	cr_assert_eq(a.n, 20);
	cr_expect_str_eq(a.items[0].stratum, "len=10/lo");
	cr_expect_str_eq(a.items[19].stratum, "len=31/hi");
	for (size_t i = 0; i < a.n; i++) {
		json_t *R = json_object_get(a.items[i].input, "rep");
		json_t *C = json_object_get(a.items[i].input, "ctl");
		int hi = strstr(a.items[i].stratum, "/hi") != NULL;
		cr_expect_str_eq(a.items[i].key, b.items[i].key);
		cr_expect_str_neq(a.items[i].key, c.items[i].key);
		cr_expect_eq(json_array_size(R), json_array_size(C));
		for (size_t j = 0; j < json_array_size(R); j++) {
			json_int_t x = json_integer_value(json_array_get(R, j));
			cr_expect_neq(x, json_integer_value(json_array_get(C, j)));
			cr_expect(hi ? (x >= 64 && x <= 127) : (x >= 1 && x <= 63));
		}
	}
	json_decref(p);
	mb_item_list_dispose(&a);
	mb_item_list_dispose(&b);
	mb_item_list_dispose(&c);
}

Test(induction, generator_errors_name_the_field)
{
	static const struct {
		const char *params, *want;
	} cases[] = {
		{"{\"lenghts\": [10]}", "params.lenghts: unknown field"},
		{"{\"lengths\": [10, 10]}", "params.lengths[1]: 10 is listed twice"},
		{"{\"lengths\": [1]}", "params.lengths[0]"},
		{"{\"n_per_stratum\": 1}", "params.n_per_stratum"},
		{"{\"bos\": 5}", "params.bands[0]: [1, 127] contains the bos token 5"},
		{"{\"bands\": [{\"name\": \"a\", \"lo\": 5, \"hi\": 5}]}", "params.bands[0]"},
	};
	const mb_task *t = ind();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mb_item_list l = {0};
		mb_error err = {0};
		json_t *p = json_loads(cases[i].params, 0, NULL);
		cr_expect_lt(t->generate(&l, 1, p, &err), 0, "%s accepted", cases[i].params);
		cr_expect(strstr(err.msg, cases[i].want) != NULL, "%s: got '%s'", cases[i].params,
			  err.msg);
		json_decref(p);
		mb_item_list_dispose(&l);
	}
}

Test(induction, items_longer_than_the_model_allows_are_refused_by_key)
{
	const mb_task *t = ind();
	char dir[512];
	mb_item_list items = {0};
	mb_error err = {0};
	double v[NM];
	int R[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
	void *st = NULL;
	json_t *bad = json_loads("{\"max_len\": 40}", 0, NULL);

	mbt_tmpdir(dir, sizeof(dir));
	write_hand_model(dir);
	add_item(&items, R, 12, HV); /* 25 positions, the model has 24 */
	st = open_model(t, dir, NULL);
	cr_expect_lt(mb_task_run(t, st, items.items, 1, v, &err), 0);
	cr_expect(strstr(err.msg, items.items[0].key) && strstr(err.msg, "n_positions 24"),
		  "got '%s'", err.msg);
	t->close(st);
	st = NULL;
	cr_expect_lt(t->open(&st, dir, bad, &err), 0);
	cr_expect(strstr(err.msg, "params.max_len") != NULL, "got '%s'", err.msg);
	json_decref(bad);
	mb_item_list_dispose(&items);
}

/* The spec's top_k for the zoo model (benchmarks/canonical.json): its layer 1
 * has 3 induction heads and 5 other heads (src/train/zoo.c). */
Test(induction, committed_zoo_model_has_a_layer_1_induction_head_and_k_composition)
{
	const mb_task *t = ind();
	const char *dir = MB_SOURCE_DIR "/baselines/models/induction";
	char cfg[512];
	mb_item_list items = {0};
	mb_error err = {0};
	json_t *p = json_loads("{\"lengths\": [25], \"n_per_stratum\": 8}", 0, NULL);
	double v[8 * NM], score = 0, kk = 0, kq = 0, kv = 0, top = 0, rnd = 0;
	FILE *f;
	void *st;

	snprintf(cfg, sizeof(cfg), "%s/config.json", dir);
	f = fopen(cfg, "r");
	cr_assert_not_null(f, "%s: the committed zoo model is missing", cfg);
	fclose(f);
	cr_assert_eq(t->generate(&items, 3, p, &err), 0, "%s", err.msg);
	st = open_model(t, dir, "{\"top_k\": 3}");
	cr_assert_eq(mb_task_run(t, st, items.items, items.n, v, &err), 0, "%s", err.msg);
	for (size_t i = 0; i < items.n; i++) {
		top += v[i * NM + AB_TOP] / 8;
		rnd += v[i * NM + AB_RND] / 8;
		score += v[i * NM + SCORE] / 8;
		kk += v[i * NM + KK] / 8;
		kq += v[i * NM + KQ] / 8;
		kv += v[i * NM + KV] / 8;
	}
	printf("zoo induction: score %.3f, K %.3f, Q %.3f, V %.3f, ablate top %.3f, random %.3f\n",
	       score, kk, kq, kv, top, rnd);
	cr_expect_gt(score, 0.5);
	/* the random heads of layer 1 are not induction heads: their ablation
	 * barely moves the second-repeat loss */
	cr_expect_gt(top, 1.0, "ablating the top 3 heads: %g", top);
	cr_expect_lt(rnd, top / 8, "ablating 3 random other layer-1 heads: %g (top heads %g)", rnd,
		     top);
	cr_expect_gt(kk, kq + 0.1);
	cr_expect_gt(kk, kv + 0.1);
	t->close(st);
	json_decref(p);
	mb_item_list_dispose(&items);
}
