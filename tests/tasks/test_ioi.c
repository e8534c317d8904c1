/* The IOI task on the `ioi-planted` model (baselines/models/ioi-planted,
 * src/train's hand-set weights; its README and circuit.json describe the
 * circuit a0.0 -> a1.0 -> a2.0): the generator's tokenizer pinning, the
 * analytic values (a clean logit difference of 4, 0 without the name mover
 * under zero ablation), every metric against a reference this file computes
 * from plain forwards with its own hooks, discovery recovering the planted
 * circuit, the random-circuit control failing a decoy circuit (the positive
 * control), batch invariance, determinism across thread counts, and the
 * patching heatmaps against a hand-patched forward. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/engine.h>
#include <mechbench/hooks.h>
#include <mechbench/json.h>
#include <mechbench/model.h>
#include <mechbench/sha256.h>
#include <mechbench/task.h>

#define PLANTED MB_SOURCE_DIR "/baselines/models/ioi-planted"
#define TOKENIZER PLANTED "/tokenizer.json"
#define BOS 0

/* Criterion runs two tests at once on the 2-core CI machine: one OpenMP
 * thread each (the thread-count test sets its own). */
static void one_thread(void)
{
	omp_set_num_threads(1);
}

TestSuite(ioi, .init = one_thread);

/* metric indices (ioi.c's table order, checked by name in ioi()) */
enum { LD, CORRECT, PIO, CLD, FAITH, RFAITH, FEXC, FGAP, NMLD, NMEFF, WKM, WKC, INC, NM };

static const mb_task *ioi(void)
{
	static const char *const names[NM] = {
		"ioi.logit_diff", "ioi.correct", "ioi.p_io", "ioi.circuit_logit_diff",
		"ioi.faithfulness", "ioi.random_faithfulness", "ioi.faithfulness_excess",
		"ioi.faithfulness_gap", "ioi.nm_logit_diff", "ioi.nm_effect",
		"ioi.without_k_model", "ioi.without_k_circuit", "ioi.incompleteness"};
	const mb_task *t = mb_task_find("ioi");

	cr_assert(t != NULL, "the ioi task is registered");
	cr_assert_eq(t->n_metrics, NM);
	for (int m = 0; m < NM; m++)
		cr_assert_eq(mb_task_metric_index(t, names[m]), m, "%s", names[m]);
	return t;
}

/* ---- items ----------------------------------------------------------------------- */

static json_t *gen_params(const char *extra_json)
{
	char sha[MB_SHA256_HEX_LEN];
	mb_error err = {0};
	json_error_t jerr;
	json_t *p;

	cr_assert_eq(mb_sha256_hex_file(sha, TOKENIZER, &err), 0, "%s", err.msg);
	p = json_pack("{s:s, s:s, s:i, s:[s,s]}", "tokenizer", TOKENIZER, "tokenizer_sha256", sha,
		      "n_per_stratum", 3, "templates", "t00", "t03");
	if (extra_json) {
		json_t *x = json_loads(extra_json, 0, &jerr);
		cr_assert(x, "bad test params: %s", jerr.text);
		json_object_update(p, x);
		json_decref(x);
	}
	return p;
}

/* 2 templates x 2 orders x 3 = 12 items (small: every prepare runs
 * discovery twice), both splits present. */
static void items_of(mb_item_list *out, uint64_t seed)
{
	json_t *p = gen_params(NULL);
	mb_error err = {0};
	size_t disc = 0;

	cr_assert_eq(ioi()->generate(out, seed, p, &err), 0, "%s", err.msg);
	json_decref(p);
	cr_assert_eq(out->n, 12);
	for (size_t i = 0; i < out->n; i++)
		disc += strcmp(json_string_value(json_object_get(out->items[i].input, "split")),
			       "discovery") == 0;
	cr_assert(disc >= 3 && disc <= 9, "seed %llu: %zu of 12 items in discovery",
		  (unsigned long long)seed, disc);
}

static const char *split_of(const mb_item *it)
{
	return json_string_value(json_object_get(it->input, "split"));
}

/* ---- running the task -------------------------------------------------------------- */

typedef struct result {
	size_t n;
	double *v;         /* (n, NM) */
	json_t *artifact;
} result;

static void result_dispose(result *r)
{
	free(r->v);
	json_decref(r->artifact);
}

static json_t *run_params(const char *text)
{
	json_error_t jerr;
	json_t *p = json_loads(text, 0, &jerr);
	cr_assert(p, "bad run params %s: %s", text, jerr.text);
	return p;
}

/* open, prepare on all items, run in batches of `batch`, close. */
static void run_task(result *r, const mb_item_list *items, const char *params, size_t batch)
{
	const mb_task *t = ioi();
	json_t *p = run_params(params);
	mb_error err = {0};
	void *st = NULL;

	r->n = items->n;
	r->v = calloc(items->n * NM, sizeof(double));
	r->artifact = NULL;
	cr_assert_eq(t->open(&st, PLANTED, p, &err), 0, "%s", err.msg);
	cr_assert_eq(t->prepare(st, items->items, items->n, &r->artifact, &err), 0, "%s", err.msg);
	cr_assert(r->artifact != NULL);
	for (size_t i = 0; i < items->n; i += batch) {
		size_t b = items->n - i < batch ? items->n - i : batch;
		cr_assert_eq(mb_task_run(t, st, items->items + i, b, r->v + i * NM, &err), 0, "%s",
			     err.msg);
	}
	t->close(st);
	json_decref(p);
}

/* ---- the reference: plain forwards with this file's own hooks ---------------------- */

typedef struct ref {
	mb_model *m;
	mb_engine *e;
} ref;

static void ref_open(ref *r)
{
	mb_error err = {0};
	mb_engine_opts o = {.max_batch = 2, .max_seq = 32};

	cr_assert_eq(mb_model_load(&r->m, PLANTED, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_engine_init(&r->e, &r->m->cfg, &r->m->w, &o, &err), 0, "%s", err.msg);
}

static void ref_close(ref *r)
{
	mb_engine_free(r->e);
	mb_model_free(r->m);
}

/* [BOS] + the item's prompt `which` ("tokens", or "tokens" of "swap"). */
static int prompt(int32_t *out, const mb_item *it, const char *which)
{
	json_t *a = strcmp(which, "tokens") == 0
			    ? json_object_get(it->input, "tokens")
			    : json_object_get(json_object_get(it->input, which), "tokens");
	int n = (int)json_array_size(a);

	out[0] = BOS;
	for (int i = 0; i < n; i++)
		out[1 + i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
	return n + 1;
}

static int item_int(const mb_item *it, const char *k)
{
	return (int)json_integer_value(json_object_get(it->input, k));
}

/* Zeroes hook_z of the heads with zero[l H + h] set. */
typedef struct zero_ctx {
	const uint8_t *zero;
	int H, Dh;
} zero_ctx;

static int zero_hook(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	const zero_ctx *z = payload;
	int l = t->point.layer;

	(void)err;
	for (int p = 0; p < t->lengths[0]; p++)
		for (int h = 0; h < z->H; h++)
			if (z->zero[l * z->H + h])
				memset(t->data + ((size_t)p * z->H + h) * z->Dh, 0,
				       sizeof(float) * (size_t)z->Dh);
	return 0;
}

/* Copies hook_z of head (layer, head) from src (1, T, H, Dh). */
typedef struct patch_ctx {
	int layer, head, H, Dh;
	const float *src;
} patch_ctx;

static int patch_hook(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	const patch_ctx *c = payload;

	(void)err;
	if (t->point.layer != c->layer)
		return 0;
	for (int p = 0; p < t->lengths[0]; p++)
		memcpy(t->data + ((size_t)p * c->H + c->head) * c->Dh,
		       c->src + ((size_t)p * c->H + c->head) * c->Dh, sizeof(float) * (size_t)c->Dh);
	return 0;
}

/* One item's logits at its last position (out V), with the heads in zero
 * (NULL: none) zero-ablated. */
static void ref_forward(float *out, ref *r, const int32_t *tok, int len, const uint8_t *zero)
{
	const mb_engine_config *c = &r->m->cfg;
	mb_hooks *h = NULL;
	zero_ctx z = {zero, c->n_head, c->d_head};
	mb_error err = {0};
	mb_run run = {.batch = 1, .seq = len, .tokens = tok, .logits = MB_LOGITS_LAST};

	cr_assert_eq(mb_hooks_init(&h, &err), 0);
	for (int l = 0; zero && l < c->n_layer; l++) {
		mb_hook_point p = {MB_HOOK_Z, l};
		cr_assert_eq(mb_hooks_add(h, p, zero_hook, &z, 0, &err), 0);
	}
	run.hooks = h;
	cr_assert_eq(mb_engine_forward(r->e, &run, &err), 0, "%s", err.msg);
	memcpy(out, mb_engine_logits_row(r->e, 0, 0), sizeof(float) * (size_t)c->n_vocab);
	mb_hooks_free(h);
}

static double ref_ld(ref *r, const mb_item *it, const uint8_t *zero)
{
	int32_t tok[64];
	int len = prompt(tok, it, "tokens");
	float *lg = malloc(sizeof(float) * (size_t)r->m->cfg.n_vocab);
	double d;

	ref_forward(lg, r, tok, len, zero);
	d = (double)lg[item_int(it, "io_id")] - (double)lg[item_int(it, "s_id")];
	free(lg);
	return d;
}

/* (N) mask of node ids in a JSON array of strings or of {"id"} objects. */
static void mask_of(uint8_t *mask, const json_t *a, int H)
{
	memset(mask, 0, 64);
	for (size_t i = 0; i < json_array_size(a); i++) {
		json_t *e = json_array_get(a, i);
		const char *id = json_is_string(e) ? json_string_value(e)
						   : json_string_value(json_object_get(e, "id"));
		int l, h;
		cr_assert_eq(sscanf(id, "a%d.%d", &l, &h), 2, "node id %s", id);
		mask[l * H + h] = 1;
	}
}

/* ---- the generator ------------------------------------------------------------------ */

Test(ioi, generate_pins_the_tokenizer_by_sha256)
{
	const mb_task *t = ioi();
	mb_item_list a = {0}, b = {0};
	mb_error err = {0};
	json_t *p;

	items_of(&a, 3);
	items_of(&b, 3);
	for (size_t i = 0; i < a.n; i++)
		cr_assert_str_eq(a.items[i].key, b.items[i].key, "same recipe, same items");

	p = gen_params("{\"tokenizer_sha256\": \"0000000000000000000000000000000000000000000000"
		       "000000000000000000\"}");
	cr_assert_eq(t->generate(&b, 3, p, &err), MB_EMISMATCH);
	cr_assert(strstr(err.msg, "params.tokenizer_sha256") && strstr(err.msg, "tokenizer.json"),
		  "%s", err.msg);
	json_object_del(p, "tokenizer_sha256");
	cr_assert_eq(t->generate(&b, 3, p, &err), MB_EINVALID);
	cr_assert(strstr(err.msg, "params.tokenizer_sha256: required"), "%s", err.msg);
	json_object_set_new(p, "tokenizer", json_string(PLANTED "/no-such-tokenizer.json"));
	cr_assert_lt(t->generate(&b, 3, p, &err), 0);
	cr_assert(strstr(err.msg, "params.tokenizer") && strstr(err.msg, "no-such-tokenizer"), "%s",
		  err.msg);
	json_object_del(p, "tokenizer");
	cr_assert_eq(t->generate(&b, 3, p, &err), MB_EINVALID);
	cr_assert(strstr(err.msg, "params.tokenizer: required"), "%s", err.msg);
	json_decref(p);
	p = gen_params("{\"n_per_stratum\": 0}");
	cr_assert_eq(t->generate(&b, 3, p, &err), MB_EINVALID);
	cr_assert(strstr(err.msg, "params.n_per_stratum"), "%s", err.msg);
	json_decref(p);
	mb_item_list_dispose(&a);
	mb_item_list_dispose(&b);
}

Test(ioi, check_params_names_the_bad_field)
{
	static const struct {
		const char *params, *want;
	} cases[] = {
		{"{\"ablation\": \"mean\"}", "params.ablation"},
		{"{\"criterion\": 0}", "params.criterion"},
		{"{\"criterion\": 1.5}", "params.criterion"},
		{"{\"circuit\": [\"a1\"]}", "params.circuit[0]"},
		{"{\"circuit\": [\"a1.0\", \"a1.0\"]}", "params.circuit[1]"},
		{"{\"name_movers\": []}", "params.name_movers"},
		{"{\"resamples\": -1}", "params.resamples"},
		{"{\"search_steps\": 65}", "params.search_steps"},
		{"{\"top_k\": 3}", "params.top_k"},
	};
	const mb_task *t = ioi();

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mb_json_doc doc;
		mb_error err = {0};
		char text[256];
		snprintf(text, sizeof(text), "{\"params\": %s}", cases[i].params);
		cr_assert_eq(mb_json_doc_parse(&doc, text, strlen(text), "spec.json", &err), 0);
		cr_expect_lt(t->check_params(&doc, json_object_get(doc.root, "params"), "params",
					     &err), 0, "%s accepted", cases[i].params);
		cr_expect(strstr(err.msg, cases[i].want), "%s: %s", cases[i].params, err.msg);
		mb_json_doc_dispose(&doc);
	}
}

Test(ioi, open_rejects_a_head_the_model_lacks)
{
	json_t *p = run_params("{\"circuit\": [\"a0.0\", \"a5.1\"]}");
	mb_error err = {0};
	void *st = NULL;

	cr_assert_lt(ioi()->open(&st, PLANTED, p, &err), 0);
	cr_assert(strstr(err.msg, "params.circuit[1]") && strstr(err.msg, "a5.1"), "%s", err.msg);
	json_decref(p);
}

/* ---- values ------------------------------------------------------------------------- */

Test(ioi, planted_values_match_the_construction_and_the_reference)
{
	mb_item_list items = {0};
	result r;
	ref rf;
	uint8_t zero[64], keep_c[64], kset[64], nm[64];
	double fm[2] = {0, 0};
	int nsplit[2] = {0, 0}, H;

	items_of(&items, 3);
	run_task(&r, &items, "{\"ablation\": \"zero\", \"bos\": 0, \"resamples\": 0}", 16);
	ref_open(&rf);
	H = rf.m->cfg.n_head;
	cr_assert_eq(rf.m->cfg.n_layer * H, 12, "the planted model has 3 x 4 heads");
	/* the artifact: the discovery circuit, its name movers and completeness K */
	mask_of(keep_c, json_object_get(r.artifact, "nodes"), H);
	mask_of(nm, json_object_get(r.artifact, "name_movers"), H);
	mask_of(kset, json_object_get(r.artifact, "completeness_k"), H);
	for (size_t i = 0; i < items.n; i++) {
		const mb_item *it = &items.items[i];
		const double *v = r.v + i * NM;
		int32_t tok[64];
		int len = prompt(tok, it, "tokens"), s = strcmp(split_of(it), "evaluation") == 0;
		float *lg = malloc(sizeof(float) * (size_t)rf.m->cfg.n_vocab);
		double mx = -INFINITY, sum = 0, ld;

		ref_forward(lg, &rf, tok, len, NULL);
		ld = (double)lg[item_int(it, "io_id")] - (double)lg[item_int(it, "s_id")];
		for (int k = 0; k < rf.m->cfg.n_vocab; k++)
			mx = lg[k] > mx ? lg[k] : mx;
		for (int k = 0; k < rf.m->cfg.n_vocab; k++)
			sum += exp((double)lg[k] - mx);
		cr_expect_eq(v[LD], ld, "item %zu: logit diff %.17g, a plain forward %.17g", i, v[LD],
			     ld);
		cr_expect(fabs(v[LD] - 4.0) < 1e-4, "item %zu: logit diff %g, constructed 4", i,
			  v[LD]);
		cr_expect_eq(v[CORRECT], 1.0);
		cr_expect(fabs(v[PIO] - exp((double)lg[item_int(it, "io_id")] - mx) / sum) < 1e-12,
			  "item %zu: p_io %.17g", i, v[PIO]);
		fm[s] += ld;
		nsplit[s]++;
		free(lg);
	}
	fm[0] /= nsplit[0];
	fm[1] /= nsplit[1];
	for (size_t i = 0; i < items.n; i++) {
		const mb_item *it = &items.items[i];
		const double *v = r.v + i * NM;
		int s = strcmp(split_of(it), "evaluation") == 0;
		double c, n, wk, wkc;

		/* evaluation items are judged with the discovery circuit (the artifact's) */
		if (s != 1)
			continue;
		for (int k = 0; k < 12; k++)
			zero[k] = !keep_c[k];
		c = ref_ld(&rf, it, zero);
		n = ref_ld(&rf, it, nm);
		wk = ref_ld(&rf, it, kset);
		for (int k = 0; k < 12; k++)
			zero[k] = !keep_c[k] || kset[k];
		wkc = ref_ld(&rf, it, zero);
		cr_expect(fabs(v[CLD] - c) < 1e-5, "item %zu: circuit ld %g, reference %g", i, v[CLD],
			  c);
		cr_expect(fabs(v[FAITH] - c / fm[s]) < 1e-5, "item %zu: faithfulness %g vs %g", i,
			  v[FAITH], c / fm[s]);
		cr_expect(fabs(v[FAITH] - 1.0) < 1e-4, "distractors write only JUNK: faithfulness 1");
		cr_expect(fabs(v[NMLD] - n) < 1e-5, "item %zu: nm ld %g vs %g", i, v[NMLD], n);
		cr_expect(fabs(v[NMLD]) < 1e-4, "without the name mover the difference is 0");
		cr_expect(fabs(v[WKM] - wk / fm[s]) < 1e-5, "item %zu: F(M\\K) %g vs %g", i, v[WKM],
			  wk / fm[s]);
		cr_expect(fabs(v[WKC] - wkc / fm[s]) < 1e-5, "item %zu: F(C\\K) %g vs %g", i, v[WKC],
			  wkc / fm[s]);
		cr_expect_eq(v[FEXC], v[FAITH] - v[RFAITH]);
		cr_expect_eq(v[FGAP], v[LD] - v[CLD]);
		cr_expect_eq(v[NMEFF], v[LD] - v[NMLD]);
		cr_expect_eq(v[INC], v[WKM] - v[WKC]);
		/* the random circuit: one head of each circuit layer outside the circuit;
		 * its value must be one of those circuits' reference values */
		{
			int found = 0, cl[3], nc = 0;
			for (int k = 0; k < 12; k++)
				if (keep_c[k])
					cl[nc++] = k / H;
			cr_assert_eq(nc, 3);
			for (int a = 0; a < H && !found; a++)
				for (int b = 0; b < H && !found; b++)
					for (int d = 0; d < H && !found; d++) {
						int pick[3] = {cl[0] * H + a, cl[1] * H + b, cl[2] * H + d};
						if (keep_c[pick[0]] || keep_c[pick[1]] || keep_c[pick[2]] ||
						    pick[0] == pick[1] || pick[1] == pick[2] ||
						    pick[0] == pick[2])
							continue;
						memset(zero, 1, 12);
						zero[pick[0]] = zero[pick[1]] = zero[pick[2]] = 0;
						found = fabs(v[RFAITH] - ref_ld(&rf, it, zero) / fm[s]) <
							1e-5;
					}
			cr_expect(found, "item %zu: random faithfulness %g is no matched random "
				  "circuit's", i, v[RFAITH]);
		}
	}
	ref_close(&rf);
	result_dispose(&r);
	mb_item_list_dispose(&items);
}

Test(ioi, discovery_recovers_the_planted_circuit)
{
	mb_item_list items = {0};
	result r;
	json_t *truth, *stab, *ev;

	items_of(&items, 11);
	run_task(&r, &items, "{\"bos\": 0, \"resamples\": 3}", 16);
	truth = json_object_get(r.artifact, "truth");
	stab = json_object_get(r.artifact, "stability");
	ev = json_object_get(r.artifact, "evaluation");
	cr_assert_str_eq(json_string_value(json_object_get(r.artifact, "ablation")), "mean-abc");
	cr_assert(truth, "the planted model names its circuit: the artifact scores against it");
	cr_expect_geq(json_number_value(json_object_get(truth, "node_precision")), 0.9);
	cr_expect_geq(json_number_value(json_object_get(truth, "node_recall")), 0.9);
	cr_expect_eq(json_array_size(json_object_get(r.artifact, "nodes")), 3);
	cr_assert(stab && json_integer_value(json_object_get(stab, "resamples")) == 3);
	cr_expect_geq(json_number_value(json_object_get(stab, "jaccard_mean")), 0.9);
	cr_assert(ev, "the held-out judgement is in the artifact");
	cr_expect_geq(json_number_value(json_object_get(ev, "faithfulness")), 0.9);
	cr_expect_lt(json_number_value(json_object_get(json_object_get(ev, "random_control"),
							"faithfulness")),
		     0.5);
	result_dispose(&r);
	mb_item_list_dispose(&items);
}

Test(ioi, random_control_fails_a_decoy_circuit)
{
	mb_item_list items = {0};
	result good, decoy;
	double eg = 0, ed = 0;

	items_of(&items, 3);
	run_task(&good, &items, "{\"ablation\": \"zero\", \"bos\": 0, \"resamples\": 0}", 16);
	/* decoys of the same layers: a duplicate-token-looking head, a names head,
	 * a name-mover-looking head (ioi_planted.h) */
	run_task(&decoy, &items,
		 "{\"ablation\": \"zero\", \"bos\": 0, \"search_steps\": 0, "
		 "\"circuit\": [\"a0.3\", \"a1.1\", \"a2.1\"]}",
		 16);
	for (size_t i = 0; i < items.n; i++) {
		eg += good.v[i * NM + FEXC] / (double)items.n;
		ed += decoy.v[i * NM + FEXC] / (double)items.n;
	}
	cr_expect_gt(eg, 0.5, "the planted circuit beats random circuits: excess %g", eg);
	cr_expect_lt(ed, 0.5, "a decoy circuit does not: excess %g", ed);
	cr_expect_str_eq(json_string_value(json_object_get(decoy.artifact, "method")),
			 "pre-registered");
	cr_expect_eq(json_array_size(json_object_get(decoy.artifact, "completeness_k")), 0,
		     "search_steps 0: no completeness search, K empty");
	cr_expect_eq(json_array_size(json_object_get(json_object_get(decoy.artifact, "evaluation"),
						     "minimality")),
		     0);
	result_dispose(&good);
	result_dispose(&decoy);
	mb_item_list_dispose(&items);
}

Test(ioi, batch_invariant_and_thread_count_invariant)
{
	mb_item_list items = {0};
	result a, b, c;
	char *ja, *jc;
	int saved = omp_get_max_threads();

	items_of(&items, 7);
	omp_set_num_threads(1);
	run_task(&a, &items, "{\"bos\": 0, \"resamples\": 3, \"ablation\": \"resample\"}", 16);
	run_task(&b, &items, "{\"bos\": 0, \"resamples\": 3, \"ablation\": \"resample\"}", 1);
	omp_set_num_threads(2);
	run_task(&c, &items, "{\"bos\": 0, \"resamples\": 3, \"ablation\": \"resample\"}", 5);
	omp_set_num_threads(saved);
	cr_assert_eq(memcmp(a.v, b.v, sizeof(double) * items.n * NM), 0,
		     "batches of 16 and of 1: the same bits");
	cr_assert_eq(memcmp(a.v, c.v, sizeof(double) * items.n * NM), 0,
		     "1 thread and 2 threads: the same bits");
	ja = json_dumps(a.artifact, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
	jc = json_dumps(c.artifact, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
	cr_assert_str_eq(ja, jc, "the artifact does not depend on the thread count");
	free(ja);
	free(jc);
	result_dispose(&a);
	result_dispose(&b);
	result_dispose(&c);
	mb_item_list_dispose(&items);
}

Test(ioi, run_without_prepare_is_one_clear_error)
{
	mb_item_list items = {0};
	mb_error err = {0};
	double v[NM];
	void *st = NULL;

	items_of(&items, 3);
	cr_assert_eq(ioi()->open(&st, PLANTED, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(ioi()->run(st, items.items, 1, v, &err), MB_EINVALID);
	cr_assert(strstr(err.msg, "prepare"), "%s", err.msg);
	ioi()->close(st);
	mb_item_list_dispose(&items);
}

/* ---- figures ------------------------------------------------------------------------ */

static const mb_figure *figure(const mb_figure_list *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->items[i].name, name) == 0)
			return &l->items[i];
	cr_assert_fail("no figure %s", name);
	return NULL;
}

Test(ioi, patching_heatmaps_match_a_hand_patched_forward)
{
	const mb_task *t = ioi();
	mb_item_list items = {0};
	mb_figure_list figs = {0};
	json_t *p = run_params("{\"bos\": 0, \"resamples\": 0, \"patch_items\": 4}");
	mb_error err = {0};
	void *st = NULL;
	json_t *art = NULL;
	const mb_figure *z, *q;
	ref rf;
	double want = 0;
	int H;

	items_of(&items, 3);
	cr_assert_eq(t->open(&st, PLANTED, p, &err), 0, "%s", err.msg);
	cr_assert_eq(t->prepare(st, items.items, items.n, &art, &err), 0, "%s", err.msg);
	cr_assert_eq(t->figures(st, items.items, items.n, NULL, &figs, &err), 0, "%s", err.msg);
	t->close(st);
	z = figure(&figs, "ioi.patch.z.clean_from_swap");
	figure(&figs, "ioi.patch.v.swap_from_clean");
	q = figure(&figs, "ioi.path.a2.0.q");
	ref_open(&rf);
	H = rf.m->cfg.n_head;
	cr_assert_eq(z->rows, 3);
	cr_assert_eq(z->cols, (size_t)H);
	/* head 2.0's output patched from the swapped prompt, by hand */
	for (size_t i = 0; i < 4; i++) {
		const mb_item *it = &items.items[i];
		const mb_engine_config *c = &rf.m->cfg;
		int32_t tok[64], stok[64];
		int len = prompt(tok, it, "tokens");
		mb_hooks *h = NULL;
		mb_cache *cache = NULL;
		float *src;
		patch_ctx pc = {2, 0, H, c->d_head, NULL};
		mb_run run = {.batch = 1, .seq = len, .tokens = stok, .logits = MB_LOGITS_LAST};
		mb_hook_point zp = {MB_HOOK_Z, 2};
		const float *lg;

		prompt(stok, it, "swap");
		cr_assert_eq(mb_hooks_init(&h, &err), 0);
		cr_assert_eq(mb_cache_init(&cache, &err), 0);
		cr_assert_eq(mb_cache_add(cache, zp, &err), 0);
		cr_assert_eq(mb_cache_attach(cache, h, &err), 0);
		run.hooks = h;
		cr_assert_eq(mb_engine_forward(rf.e, &run, &err), 0, "%s", err.msg);
		src = malloc(mb_cache_get(cache, zp)->numel * sizeof(float));
		memcpy(src, mb_cache_get(cache, zp)->data, mb_cache_get(cache, zp)->numel * sizeof(float));
		mb_hooks_clear(h);
		pc.src = src;
		cr_assert_eq(mb_hooks_add(h, zp, patch_hook, &pc, 0, &err), 0);
		run.tokens = tok;
		cr_assert_eq(mb_engine_forward(rf.e, &run, &err), 0, "%s", err.msg);
		lg = mb_engine_logits_row(rf.e, 0, 0);
		want += ((double)lg[item_int(it, "io_id")] - (double)lg[item_int(it, "s_id")] -
			 ref_ld(&rf, it, NULL)) / 4.0;
		free(src);
		mb_cache_free(cache);
		mb_hooks_free(h);
	}
	cr_expect(fabs(z->values[2 * H + 0] - want) < 1e-5, "cell (2, 0) %g, by hand %g",
		  z->values[2 * H + 0], want);
	cr_expect_lt(want, -4.0, "the name mover reads the swapped names: the difference flips");
	cr_expect_eq(z->values[2 * H + 3], 0.0, "head 2.3 has zero weights: no effect at all");
	/* path patching: the S-inhibition head a1.0 reaches a2.0 through its query */
	for (size_t k = 0; k < q->rows * q->cols; k++)
		cr_expect_leq(q->values[1 * H + 0], q->values[k], "a1.0 -> a2.0 via q is the "
			      "strongest path (cell %zu: %g vs %g)", k, q->values[k],
			      q->values[1 * H + 0]);
	ref_close(&rf);
	json_decref(art);
	json_decref(p);
	mb_figure_list_dispose(&figs);
	mb_item_list_dispose(&items);
}
