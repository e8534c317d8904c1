/*
 * circuit: circuits on the hand-set `ioi-planted` model
 * (baselines/models/ioi-planted, ioi_planted.h), whose circuit is known by
 * construction: a0.0 (duplicate token) -> a1.0 (S-inhibition, via k and v)
 * -> a2.0 (name mover, via q), nine distractor heads writing only a
 * subspace nothing reads. The committed files must equal the generator's
 * output; the logit differences and the effect of each patch must be the
 * analytic ones; discovery must recover the nodes and edges (precision and
 * recall 1); the random control, completeness and minimality must each be
 * shown to pass where they should and fail where they should; values must
 * not depend on the batch or the thread count.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mechbench/circuit.h>
#include <mechbench/effect.h>
#include <mechbench/ioi_planted.h>
#include <mechbench/ioi_prompts.h>
#include <mechbench/model.h>
#include <mechbench/sha256.h>
#include <mechbench/task.h>
#include <mechbench/zoo.h>

#include "support/cli_run.h"
#include "support/engine_fx.h"

#define PLANTED MB_SOURCE_DIR "/baselines/models/ioi-planted"
#define LD MB_IOI_PLANTED_LOGIT_DIFF

/* ---- fixture: the planted model and one IOI item per template x order ---- */

typedef struct fix {
	mb_model *m;
	mb_engine *e;
	mb_item_list items;
	size_t n;
	int T, bos; /* bos: prompts start with <bos> (id 0) */
	int32_t *tok, *abc, *swap, *len, *grp, *io, *s;
	uint64_t *key;
	mb_circuit_data data;
} fix;

static int ld_metric(double *out, const mb_engine *e, const size_t *items, int batch,
		     void *payload, mb_error *err)
{
	const fix *f = payload;

	(void)err;
	for (int b = 0; b < batch; b++) {
		const float *row = mb_engine_logits_row(e, b, 0);
		size_t i = items[b];
		out[b] = (double)row[f->io[i]] - (double)row[f->s[i]];
	}
	return 0;
}

static void ids_of(int32_t *dst, const json_t *arr, int bos)
{
	if (bos)
		dst[0] = 0;
	for (size_t t = 0; t < json_array_size(arr); t++)
		dst[t + (size_t)bos] = (int32_t)json_integer_value(json_array_get(arr, t));
}

static void fix_open(fix *f, int bos)
{
	mb_error err = {0};
	json_t *params = json_pack("{s:i}", "n_per_stratum", 1);
	mb_engine_opts o = {0};

	memset(f, 0, sizeof(*f));
	f->bos = bos;
	cr_assert_eq(mb_model_load(&f->m, PLANTED, &err), 0, "%s", err.msg);
	cr_assert(f->m->tok);
	cr_assert_eq(mb_ioi_generate(&f->items, 0, params, f->m->tok, "ioi-planted", &err), 0,
		     "%s", err.msg);
	json_decref(params);
	f->n = f->items.n;
	cr_assert_eq(f->n, 36, "18 templates x 2 orders, got %zu", f->n);
	for (size_t i = 0; i < f->n; i++) {
		int len = (int)json_array_size(json_object_get(f->items.items[i].input, "tokens"));
		if (len + bos > f->T)
			f->T = len + bos;
	}
	f->tok = calloc(f->n * (size_t)f->T, sizeof(int32_t));
	f->abc = calloc(f->n * (size_t)f->T, sizeof(int32_t));
	f->swap = calloc(f->n * (size_t)f->T, sizeof(int32_t));
	f->len = calloc(f->n, sizeof(int32_t));
	f->grp = calloc(f->n, sizeof(int32_t));
	f->io = calloc(f->n, sizeof(int32_t));
	f->s = calloc(f->n, sizeof(int32_t));
	f->key = calloc(f->n, sizeof(uint64_t));
	for (size_t i = 0; i < f->n; i++) {
		const json_t *in = f->items.items[i].input;
		const char *tid = json_string_value(json_object_get(in, "template"));
		const json_t *tk = json_object_get(in, "tokens");
		ids_of(f->tok + i * (size_t)f->T, tk, bos);
		ids_of(f->abc + i * (size_t)f->T,
		       json_object_get(json_object_get(in, "abc"), "tokens"), bos);
		ids_of(f->swap + i * (size_t)f->T,
		       json_object_get(json_object_get(in, "swap"), "tokens"), bos);
		f->len[i] = (int32_t)json_array_size(tk) + bos;
		f->grp[i] = mb_ioi_template_find(tid);
		f->io[i] = (int32_t)json_integer_value(json_object_get(in, "io_id"));
		f->s[i] = (int32_t)json_integer_value(json_object_get(in, "s_id"));
		f->key[i] = mb_item_key_index(f->items.items[i].key);
	}
	o.max_batch = (int)f->n;
	o.max_seq = f->T;
	cr_assert_eq(mb_engine_init(&f->e, &f->m->cfg, &f->m->w, &o, &err), 0, "%s", err.msg);
	f->data = (mb_circuit_data){.n = f->n, .seq = f->T, .tokens = f->tok, .corrupt = f->abc,
				    .lengths = f->len, .group = f->grp,
				    .n_groups = (int)mb_ioi_template_count(), .key = f->key,
				    .logits = MB_LOGITS_LAST, .metric = ld_metric, .payload = f};
}

static void fix_close(fix *f)
{
	mb_engine_free(f->e);
	mb_model_free(f->m);
	mb_item_list_dispose(&f->items);
	free(f->tok);
	free(f->abc);
	free(f->swap);
	free(f->len);
	free(f->grp);
	free(f->io);
	free(f->s);
	free(f->key);
}

static mb_circuit_eval *evaluator(fix *f, mb_circuit_ablation a, int batch)
{
	mb_circuit_eval *ev;
	mb_error err = {0};
	mb_circuit_opts o = {.ablation = a, .seed = 7, .batch = batch};

	cr_assert_eq(mb_circuit_eval_init(&ev, f->e, &f->data, &o, &err), 0, "%s", err.msg);
	return ev;
}

static size_t *all_items(size_t n)
{
	size_t *it = malloc(sizeof(size_t) * n);

	for (size_t i = 0; i < n; i++)
		it[i] = i;
	return it;
}

/* A mask (12 heads) from node ids. */
static void mask_of(uint8_t *mask, const mb_engine_config *c, const char *const *ids)
{
	mb_error err = {0};

	memset(mask, 0, (size_t)mb_circuit_n_nodes(c, 0));
	for (size_t k = 0; ids[k]; k++) {
		int v;
		cr_assert_eq(mb_circuit_node_parse(&v, ids[k], c, 0, "test", &err), 0, "%s",
			     err.msg);
		mask[v] = 1;
	}
}

static const char *const TRUE_IDS[] = {"a0.0", "a1.0", "a2.0", NULL};

static mb_circuit *truth(const mb_engine_config *c)
{
	json_error_t jerr;
	json_t *doc = json_load_file(PLANTED "/circuit.json", 0, &jerr);
	mb_circuit *t;
	mb_error err = {0};

	cr_assert(doc, "circuit.json: %s", jerr.text);
	cr_assert_eq(mb_circuit_from_json(&t, doc, c, 0, "circuit.json", &err), 0, "%s", err.msg);
	json_decref(doc);
	return t;
}

/* ---- the planted model ----------------------------------------------------------- */

static void expect_same_file(const char *a, const char *b)
{
	char ha[MB_SHA256_HEX_LEN], hb[MB_SHA256_HEX_LEN];
	mb_error err = {0};

	cr_assert_eq(mb_sha256_hex_file(ha, a, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_sha256_hex_file(hb, b, &err), 0, "%s", err.msg);
	cr_expect_str_eq(ha, hb, "%s differs from the generator's %s", a, b);
}

Test(ioi_planted, committed_files_equal_the_generator_output)
{
	char dir[] = "/tmp/mb-planted-XXXXXX", a[700], b[700];
	mb_zoo_manifest man;
	mb_error err = {0};

	cr_assert(mkdtemp(dir));
	cr_assert_eq(mb_ioi_planted_write(dir, "test", &err), 0, "%s", err.msg);
	for (size_t i = 0; i < MB_IOI_PLANTED_N_FILES; i++) {
		snprintf(a, sizeof(a), "%s/%s", PLANTED, mb_ioi_planted_files[i]);
		snprintf(b, sizeof(b), "%s/%s", dir, mb_ioi_planted_files[i]);
		expect_same_file(a, b);
		remove(b);
	}
	snprintf(b, sizeof(b), "%s/MANIFEST", dir);
	remove(b);
	rmdir(dir);
	cr_assert_eq(mb_zoo_manifest_read(&man, PLANTED "/MANIFEST", &err), 0, "%s", err.msg);
	cr_expect_str_eq(man.name, MB_IOI_PLANTED_NAME);
	cr_expect_str_eq(man.preset, "planted");
	cr_expect_eq(mb_zoo_manifest_check(&man, PLANTED, &err), 0, "%s", err.msg);
}

/* `zoo plant` writes a folder `zoo verify` rebuilds bit for bit; a flipped
 * byte in model.safetensors fails it (MANIFEST) and so does a changed but
 * re-hashed file (the rebuild). */
Test(ioi_planted, zoo_plant_writes_what_zoo_verify_rebuilds)
{
	char dir[] = "/tmp/mb-plant-cli-XXXXXX", out[600], path[700], cmd[1400];
	mbt_cli_result *r = malloc(sizeof(*r));
	mb_zoo_manifest man;
	mb_error err = {0};
	FILE *f;

	cr_assert(r && mkdtemp(dir));
	snprintf(out, sizeof(out), "%s/ioi-planted", dir);
	mbt_cli_run(r, (const char *const[]){"zoo", "plant", "ioi-planted", "--out", out, NULL});
	cr_assert_eq(r->status, 0, "status %d: %s %s", r->status, r->out, r->err);
	mbt_cli_run(r, (const char *const[]){"zoo", "verify", "--models", dir, NULL});
	cr_expect_eq(r->status, 0, "status %d: %s %s", r->status, r->out, r->err);
	cr_expect(strstr(r->out, "ioi-planted: rebuilt ioi-planted: 5 files identical bit for bit"),
		  "%s", r->out);
	/* README.md changed and its sha256 re-recorded: only the rebuild sees it */
	snprintf(path, sizeof(path), "%s/README.md", out);
	f = fopen(path, "a");
	cr_assert(f);
	fputs("edited\n", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/MANIFEST", out);
	cr_assert_eq(mb_zoo_manifest_read(&man, path, &err), 0, "%s", err.msg);
	snprintf(path, sizeof(path), "%s/README.md", out);
	cr_assert_eq(mb_sha256_hex_file(man.sha256[0], path, &err), 0, "%s", err.msg);
	snprintf(path, sizeof(path), "%s/MANIFEST", out);
	cr_assert_eq(mb_zoo_manifest_write(&man, path, &err), 0, "%s", err.msg);
	mbt_cli_run(r, (const char *const[]){"zoo", "verify", "--models", dir, NULL});
	cr_expect_eq(r->status, 3, "status %d: %s", r->status, r->out);
	cr_expect(strstr(r->out, "rebuilt README.md differs from the committed one"), "%s", r->out);
	mbt_cli_run(r, (const char *const[]){"zoo", "plant", "nope", NULL});
	cr_expect_eq(r->status, 2);
	cr_expect(strstr(r->err, "unknown model NAME 'nope' (known: ioi-planted)"), "%s", r->err);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	mbt_sh_ok("/", cmd);
	free(r);
}

/* The effect layer's metric: the batch is every item in order. */
static int ld_all_metric(double *out, const mb_engine *e, int batch, void *payload, mb_error *err)
{
	static const size_t order[64] = {
		0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
		22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43,
		44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63};

	return ld_metric(out, e, order, batch, payload, err);
}

/* The metric with the heads ids (NULL-terminated; none: an arm that changes
 * nothing) patched from the name-swap run in slot 0, through effect.h. */
static void swap_patch(double *out, fix *f, mb_effect *fx, const char *const *ids)
{
	mb_error err = {0};
	int LH = f->m->cfg.n_layer * f->m->cfg.n_head;
	uint8_t *mask = calloc(f->n * (size_t)LH, 1), one[12];
	mb_effect_heads heads = {mask, NULL, NULL, 0};
	mb_effect_arm arm = {.heads = &heads};
	double *eff = malloc(sizeof(double) * f->n);

	mask_of(one, &f->m->cfg, ids);
	for (size_t b = 0; b < f->n; b++)
		memcpy(mask + b * (size_t)LH, one, (size_t)LH);
	cr_assert_eq(mb_effect_run_arm(eff, out, fx, &arm, &err), 0, "%s", err.msg);
	free(mask);
	free(eff);
}

static double max_abs_diff(const double *v, size_t n, double want)
{
	double m = 0;

	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs(v[i] - want));
	return m;
}

static void analytic_values(int bos)
{
	fix f;
	mb_effect *fx;
	mb_error err = {0};
	mb_circuit_eval *ev;
	mb_hook_point z[3] = {{MB_HOOK_Z, 0}, {MB_HOOK_Z, 1}, {MB_HOOK_Z, 2}};
	double *v, *clean;
	size_t *it;
	uint8_t m[12];

	fix_open(&f, bos);
	cr_assert_leq(f.n, 64);
	v = malloc(sizeof(double) * f.n);
	clean = malloc(sizeof(double) * f.n);
	it = all_items(f.n);
	ev = evaluator(&f, MB_CIRCUIT_ZERO, (int)f.n);

	/* clean: logit(IO) - logit(S) = 4 for every item */
	memset(m, 1, sizeof(m));
	cr_assert_eq(mb_circuit_eval_run(clean, ev, m, 1, it, f.n, &err), 0, "%s", err.msg);
	cr_expect_lt(max_abs_diff(clean, f.n, LD), 1e-4, "clean: max |LD - 4| = %g",
		     max_abs_diff(clean, f.n, LD));
	/* the name mover zero-ablated: no name logit at all, exactly 0 */
	m[8] = 0;
	cr_assert_eq(mb_circuit_eval_run(v, ev, m, 1, it, f.n, &err), 0, "%s", err.msg);
	cr_expect_eq(max_abs_diff(v, f.n, 0), 0, "no a2.0: max |LD| = %g", max_abs_diff(v, f.n, 0));
	/* without a0.0 or a1.0 the name mover splits over IO, S1, S2: -4/3 */
	m[8] = 1;
	for (int k = 0; k < 2; k++) {
		m[4 * k] = 0;
		cr_assert_eq(mb_circuit_eval_run(v, ev, m, 1, it, f.n, &err), 0, "%s", err.msg);
		cr_expect_lt(max_abs_diff(v, f.n, -LD / 3), 1e-4, "no a%d.0: max |LD + 4/3| = %g",
			     k, max_abs_diff(v, f.n, -LD / 3));
		m[4 * k] = 1;
	}
	/* a distractor zero-ablated: bit for bit the full model */
	for (int d = 0; d < 12; d++) {
		if (d % 4 == 0)
			continue;
		m[d] = 0;
		cr_assert_eq(mb_circuit_eval_run(v, ev, m, 1, it, f.n, &err), 0, "%s", err.msg);
		cr_expect(memcmp(v, clean, sizeof(double) * f.n) == 0,
			  "zero-ablating distractor a%d.%d moves the logit difference", d / 4,
			  d % 4);
		m[d] = 1;
	}
	mb_circuit_eval_free(ev);

	/* patches from the name swap (IO and S exchanged): each circuit head alone
	 * carries the swapped subject or IO and flips the difference to -4; a
	 * distractor changes nothing, bit for bit */
	{
		mb_run run = {.batch = (int)f.n, .seq = f.T, .tokens = f.tok, .lengths = f.len,
			      .logits = MB_LOGITS_LAST};
		mb_run src = run;
		double *noop = malloc(sizeof(double) * f.n);
		static const char *const heads[12][2] = {
			{"a0.0", NULL}, {"a0.1", NULL}, {"a0.2", NULL}, {"a0.3", NULL},
			{"a1.0", NULL}, {"a1.1", NULL}, {"a1.2", NULL}, {"a1.3", NULL},
			{"a2.0", NULL}, {"a2.1", NULL}, {"a2.2", NULL}, {"a2.3", NULL}};
		src.tokens = f.swap;
		cr_assert_eq(mb_effect_init(&fx, f.e, ld_all_metric, &f, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_effect_clean(fx, &run, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_effect_source(fx, 0, &src, z, 3, v, &err), 0, "%s", err.msg);
		cr_expect_lt(max_abs_diff(v, f.n, -LD), 1e-4, "swap prompt: max |LD + 4| = %g",
			     max_abs_diff(v, f.n, -LD));
		swap_patch(noop, &f, fx, (const char *const[]){NULL});
		for (int h = 0; h < 12; h++) {
			swap_patch(v, &f, fx, heads[h]);
			if (h % 4 == 0)
				cr_expect_lt(max_abs_diff(v, f.n, -LD), 1e-4,
					     "%s patched from the swap: max |LD + 4| = %g",
					     heads[h][0], max_abs_diff(v, f.n, -LD));
			else
				cr_expect(memcmp(v, noop, sizeof(double) * f.n) == 0,
					  "%s patched from the swap moves the difference",
					  heads[h][0]);
		}
		mb_effect_free(fx);
		free(noop);
	}
	fix_close(&f);
	free(it);
	free(v);
	free(clean);
}

Test(ioi_planted, logit_differences_are_the_analytic_ones)
{
	analytic_values(0);
}

Test(ioi_planted, logit_differences_hold_with_a_leading_bos)
{
	analytic_values(1);
}

/* ---- discovery ------------------------------------------------------------------- */

static const mb_circuit_criterion CRIT = {MB_CIRCUIT_FAITH_RATIO, 0.8, 0.05, 0};

static void discovery_recovers(mb_circuit_ablation a)
{
	fix f;
	mb_error err = {0};
	mb_circuit_eval *ev;
	mb_circuit *c, *t;
	mb_circuit_pr pr;
	size_t *it;

	fix_open(&f, 0);
	it = all_items(f.n);
	ev = evaluator(&f, a, 16);
	cr_assert_eq(mb_circuit_discover(&c, ev, NULL, it, f.n, &CRIT, &err), 0, "%s", err.msg);
	t = truth(&f.m->cfg);
	mb_circuit_compare(&pr, c, t);
	printf("%s: %zu nodes, %zu edges, faithfulness %.6f, F(M) %.6f, F(empty) %.6f; node P/R "
	       "%.2f/%.2f, edge P/R %.2f/%.2f\n",
	       mb_circuit_ablation_name(a), c->n_nodes, c->n_edges, c->faithfulness, c->f_model,
	       c->f_empty, pr.node_precision, pr.node_recall, pr.edge_precision, pr.edge_recall);
	cr_expect(c->reached);
	cr_expect_geq(pr.node_precision, 0.9);
	cr_expect_geq(pr.node_recall, 0.9);
	cr_expect_geq(pr.edge_precision, 0.9);
	cr_expect_geq(pr.edge_recall, 0.9);
	cr_expect_geq(c->faithfulness, 0.999, "faithfulness %g", c->faithfulness);
	cr_expect_lt(fabs(c->f_model - LD), 1e-4);
	/* the distractors' knock-out effects are exact zeros, the circuit's large */
	for (int v = 0; v < c->N; v++)
		if (v % 4 == 0)
			cr_expect_gt(fabs(c->score[v]), 1.0, "node %d score %g", v, c->score[v]);
		else
			cr_expect_eq(c->score[v], 0.0, "distractor %d score %g", v, c->score[v]);
	mb_circuit_free(c);
	mb_circuit_free(t);
	mb_circuit_eval_free(ev);
	free(it);
	fix_close(&f);
}

Test(circuit, discovery_recovers_the_planted_circuit_with_mean_abc_ablation)
{
	discovery_recovers(MB_CIRCUIT_MEAN_ABC);
}

Test(circuit, discovery_recovers_the_planted_circuit_with_resample_ablation)
{
	discovery_recovers(MB_CIRCUIT_RESAMPLE);
}

Test(circuit, discovery_recovers_the_planted_circuit_with_zero_ablation)
{
	discovery_recovers(MB_CIRCUIT_ZERO);
}

/* A criterion that cannot be met with fewer than all three: capping the
 * circuit at two nodes leaves it unreached and unfaithful. */
Test(circuit, a_capped_discovery_reports_the_criterion_unreached)
{
	fix f;
	mb_error err = {0};
	mb_circuit_eval *ev;
	mb_circuit *c;
	mb_circuit_criterion crit = CRIT;
	size_t *it;

	fix_open(&f, 0);
	it = all_items(f.n);
	ev = evaluator(&f, MB_CIRCUIT_MEAN_ABC, 36);
	crit.max_nodes = 2;
	cr_assert_eq(mb_circuit_discover(&c, ev, NULL, it, f.n, &crit, &err), 0, "%s", err.msg);
	cr_expect_not(c->reached);
	cr_expect_eq(c->n_nodes, 2);
	cr_expect_lt(c->faithfulness, 0.5, "faithfulness %g", c->faithfulness);
	mb_circuit_free(c);
	mb_circuit_eval_free(ev);
	free(it);
	fix_close(&f);
}

/* ---- faithfulness, control, completeness, minimality ---------------------------- */

Test(circuit, random_control_is_far_below_the_true_circuit_but_not_a_decoy_circuit)
{
	fix f;
	mb_error err = {0};
	mb_circuit_eval *ev;
	mb_circuit_faithfulness_result fr, dr;
	uint8_t keep[12], decoy[12], *drawn;
	double *ctl;
	size_t *it;
	double pooled_ctl = 0;

	fix_open(&f, 0);
	it = all_items(f.n);
	ctl = malloc(sizeof(double) * f.n);
	drawn = malloc(12 * f.n);
	ev = evaluator(&f, MB_CIRCUIT_MEAN_ABC, 36);
	mask_of(keep, &f.m->cfg, TRUE_IDS);
	cr_assert_eq(mb_circuit_faithfulness(&fr, NULL, NULL, NULL, ev, keep, it, f.n, &err), 0,
		     "%s", err.msg);
	cr_assert_eq(mb_circuit_control(ctl, drawn, ev, keep, it, f.n, &err), 0, "%s", err.msg);
	for (size_t j = 0; j < f.n; j++) {
		int per_layer[3] = {0, 0, 0};
		pooled_ctl += ctl[j] / (double)f.n;
		for (int v = 0; v < 12; v++) {
			cr_expect(!(drawn[j * 12 + v] && keep[v]), "control drew a circuit node");
			per_layer[v / 4] += drawn[j * 12 + v];
		}
		cr_expect(per_layer[0] == 1 && per_layer[1] == 1 && per_layer[2] == 1,
			  "control not matched by layer");
	}
	/* the definitions, from the evaluator's per-item values by hand */
	{
		double *v = malloc(sizeof(double) * 3 * f.n), fc = 0, fm = 0, fe = 0;
		uint8_t three[36];
		memcpy(three, keep, 12);
		memset(three + 12, 1, 12);
		memset(three + 24, 0, 12);
		cr_assert_eq(mb_circuit_eval_run(v, ev, three, 3, it, f.n, &err), 0, "%s", err.msg);
		for (size_t j = 0; j < f.n; j++) {
			fc += v[j];
			fm += v[f.n + j];
			fe += v[2 * f.n + j];
		}
		fc /= (double)f.n;
		fm /= (double)f.n;
		fe /= (double)f.n;
		cr_expect_eq(fr.f_circuit, fc);
		cr_expect_eq(fr.f_model, fm);
		cr_expect_eq(fr.f_empty, fe);
		cr_expect_eq(fr.ratio, fc / fm);
		cr_expect_eq(fr.normalized, (fc - fe) / (fm - fe));
		free(v);
	}
	printf("true circuit: ratio %.6f normalized %.6f; control F/F(M) %.6f\n", fr.ratio,
	       fr.normalized, pooled_ctl / fr.f_model);
	cr_expect_geq(fr.ratio, 0.999);
	cr_expect_gt(fr.ratio - pooled_ctl / fr.f_model, 0.8, "control %g",
		     pooled_ctl / fr.f_model);

	/* the check can fail: a circuit of decoys (a duplicate-token, an
	 * S-inhibition and a name-mover head by their attention patterns) is not
	 * far above its own random control (which sometimes draws real heads) */
	mask_of(decoy, &f.m->cfg, (const char *const[]){"a0.3", "a1.2", "a2.1", NULL});
	cr_assert_eq(mb_circuit_faithfulness(&dr, NULL, NULL, NULL, ev, decoy, it, f.n, &err), 0,
		     "%s", err.msg);
	cr_assert_eq(mb_circuit_control(ctl, NULL, ev, decoy, it, f.n, &err), 0, "%s", err.msg);
	pooled_ctl = 0;
	for (size_t j = 0; j < f.n; j++)
		pooled_ctl += ctl[j] / (double)f.n;
	printf("decoy circuit: ratio %.6f; its control F/F(M) %.6f\n", dr.ratio,
	       pooled_ctl / dr.f_model);
	cr_expect_lt(fabs(dr.ratio), 0.2);
	cr_expect_lt(fabs(dr.ratio - pooled_ctl / dr.f_model), 0.2,
		     "the decoy circuit is far from its control");
	mb_circuit_eval_free(ev);
	free(ctl);
	free(drawn);
	free(it);
	fix_close(&f);
}

Test(circuit, completeness_and_minimality_pass_on_the_truth_and_fail_off_it)
{
	fix f;
	mb_error err = {0};
	mb_circuit_eval *ev;
	mb_circuit_completeness_result cr;
	mb_circuit_minimality_result mr[4];
	uint8_t keep[12];
	size_t *it;

	fix_open(&f, 0);
	it = all_items(f.n);
	ev = evaluator(&f, MB_CIRCUIT_MEAN_ABC, 36);
	mask_of(keep, &f.m->cfg, TRUE_IDS);
	/* complete: removing any K from C does what removing it from M does,
	 * exactly (the rest of M is only distractors) */
	cr_assert_eq(mb_circuit_completeness(&cr, NULL, NULL, ev, keep, it, f.n, 0, &err), 0, "%s",
		     err.msg);
	cr_expect_eq(cr.score, 0.0, "incompleteness %g", cr.score);
	free(cr.worst);
	/* minimal: each node matters by far more than 1% of F(M) */
	cr_assert_eq(mb_circuit_minimality(mr, ev, keep, it, f.n, 0, 0.01, &err), 0, "%s",
		     err.msg);
	for (int i = 0; i < 3; i++) {
		printf("minimality node %d: %.6f (%.3f of F(M)), |K| %zu\n", mr[i].node,
		       mr[i].score, mr[i].relative, mr[i].k_size);
		cr_expect(mr[i].pass);
		cr_expect_gt(mr[i].relative, 0.5);
	}
	/* a dead head added fails minimality (exactly 0 for every K) */
	mask_of(keep, &f.m->cfg, (const char *const[]){"a0.0", "a1.0", "a2.0", "a2.3", NULL});
	cr_assert_eq(mb_circuit_minimality(mr, ev, keep, it, f.n, 0, 0.01, &err), 0, "%s",
		     err.msg);
	cr_expect(mr[0].pass && mr[1].pass && mr[2].pass);
	cr_expect_eq(mr[3].node, 11);
	cr_expect_not(mr[3].pass);
	cr_expect_eq(mr[3].score, 0.0);
	/* without the duplicate-token head the circuit is incomplete: already at
	 * K = {} F(C) = -4/3 against F(M) = 4 */
	mask_of(keep, &f.m->cfg, (const char *const[]){"a1.0", "a2.0", NULL});
	cr_assert_eq(mb_circuit_completeness(&cr, NULL, NULL, ev, keep, it, f.n, 0, &err), 0, "%s",
		     err.msg);
	printf("incomplete circuit: score %.6f (%.3f of F(M)), |K| %zu\n", cr.score, cr.relative,
	       cr.worst_size);
	cr_expect_gt(cr.score, 4.0);
	free(cr.worst);
	mb_circuit_eval_free(ev);
	free(it);
	fix_close(&f);
}

/* ---- stability and bits ---------------------------------------------------------- */

Test(circuit, stability_is_one_on_the_planted_model_and_deterministic)
{
	fix f;
	mb_error err = {0};
	mb_circuit_eval *ev;
	mb_circuit *c;
	double *eff, j1[20];
	size_t *it;

	fix_open(&f, 0);
	it = all_items(f.n);
	eff = malloc(sizeof(double) * 12 * f.n);
	ev = evaluator(&f, MB_CIRCUIT_MEAN_ABC, 36);
	cr_assert_eq(mb_circuit_node_effects(eff, ev, it, f.n, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_circuit_discover(&c, ev, eff, it, f.n, &CRIT, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_circuit_stability(c, ev, eff, it, f.n, 20, 0.95, &err), 0, "%s", err.msg);
	cr_expect_eq(c->stability.resamples, 20);
	cr_expect_eq(c->stability.jaccard_mean, 1.0);
	cr_expect_eq(c->stability.jaccard_lo, 1.0);
	for (int v = 0; v < 12; v++)
		cr_expect_eq(c->stability.inclusion[v], v % 4 == 0 ? 1.0 : 0.0, "node %d: %g", v,
			     c->stability.inclusion[v]);
	/* the artifact carries the stability and the comparison with the truth */
	{
		mb_circuit *t = truth(&f.m->cfg);
		mb_circuit_pr pr;
		json_t *doc, *n0;
		mb_circuit_compare(&pr, c, t);
		doc = mb_circuit_to_json(c, "patching");
		cr_assert(doc);
		n0 = json_array_get(json_object_get(doc, "nodes"), 0);
		cr_expect_eq(json_real_value(json_object_get(n0, "inclusion")), 1.0);
		cr_expect_eq(json_real_value(json_object_get(n0, "effect")), c->score[c->nodes[0]]);
		cr_expect_str_eq(json_string_value(json_object_get(doc, "ablation")), "mean-abc");
		cr_expect_eq(json_integer_value(json_object_get(json_object_get(doc, "stability"),
								"resamples")),
			     20);
		cr_expect_eq(json_real_value(json_object_get(json_object_get(doc, "truth"),
							     "edge_recall")),
			     1.0);
		cr_expect_eq(json_array_size(json_object_get(doc, "edges")), 3);
		json_decref(doc);
		mb_circuit_free(t);
	}
	memcpy(j1, c->stability.jaccard, sizeof(j1));
	cr_assert_eq(mb_circuit_stability(c, ev, eff, it, f.n, 20, 0.95, &err), 0, "%s", err.msg);
	cr_expect(memcmp(j1, c->stability.jaccard, sizeof(j1)) == 0);
	mb_circuit_free(c);
	mb_circuit_eval_free(ev);
	free(eff);
	free(it);
	fix_close(&f);
}

/* Item values do not depend on the batch size, the item order, the
 * evaluator (a fork) or the thread count. */
Test(circuit, values_are_batch_order_fork_and_thread_invariant)
{
	fix f;
	mb_error err = {0};
	mb_circuit_eval *a, *b, *fk;
	double *va, *vb, *vc, *vd, *ea, *eb;
	size_t *it, *rev;
	uint8_t masks[2 * 12];
	int threads = omp_get_max_threads();
	size_t n = 12; /* the first 12 items; their resample sources are any of the 36 */

	fix_open(&f, 0);
	it = all_items(n);
	rev = malloc(sizeof(size_t) * n);
	for (size_t i = 0; i < n; i++)
		rev[i] = n - 1 - i;
	va = malloc(sizeof(double) * 2 * n);
	vb = malloc(sizeof(double) * 2 * n);
	vc = malloc(sizeof(double) * 2 * n);
	vd = malloc(sizeof(double) * 2 * n);
	ea = malloc(sizeof(double) * n);
	eb = malloc(sizeof(double) * n);
	mask_of(masks, &f.m->cfg, (const char *const[]){"a0.0", "a2.0", "a1.3", NULL});
	mask_of(masks + 12, &f.m->cfg, TRUE_IDS);
	a = evaluator(&f, MB_CIRCUIT_RESAMPLE, 36);
	b = evaluator(&f, MB_CIRCUIT_RESAMPLE, 5);
	cr_assert_eq(mb_circuit_eval_fork(&fk, a, f.e, &err), 0, "%s", err.msg);
	omp_set_num_threads(2);
	cr_assert_eq(mb_circuit_eval_run(va, a, masks, 2, it, n, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_circuit_edge_effects(ea, a, 0, 4, MB_CIRCUIT_VIA_K, it, n, &err), 0,
		     "%s", err.msg);
	omp_set_num_threads(1);
	cr_assert_eq(mb_circuit_eval_run(vb, b, masks, 2, rev, n, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_circuit_edge_effects(eb, b, 0, 4, MB_CIRCUIT_VIA_K, rev, n, &err), 0,
		     "%s", err.msg);
	cr_assert_eq(mb_circuit_eval_run(vc, fk, masks, 2, it, n, &err), 0, "%s", err.msg);
	omp_set_num_threads(threads);
	for (size_t p = 0; p < 2; p++)
		for (size_t i = 0; i < n; i++) {
			vd[p * n + i] = vb[p * n + (n - 1 - i)];
			cr_expect(memcmp(&va[p * n + i], &vd[p * n + i], sizeof(double)) == 0,
				  "mask %zu item %zu: %.17g vs %.17g", p, i, va[p * n + i],
				  vd[p * n + i]);
			cr_expect(memcmp(&va[p * n + i], &vc[p * n + i], sizeof(double)) == 0,
				  "fork: mask %zu item %zu", p, i);
		}
	for (size_t i = 0; i < n; i++) {
		cr_expect(memcmp(&ea[i], &eb[n - 1 - i], sizeof(double)) == 0,
			  "edge item %zu: %.17g vs %.17g", i, ea[i], eb[n - 1 - i]);
		cr_expect_lt(ea[i], -1.0, "a0.0 -> a1.0 via k: %g", ea[i]);
		cr_expect_neq(mb_circuit_eval_pick(a, i), i);
		cr_expect_eq(f.grp[mb_circuit_eval_pick(a, i)], f.grp[i]);
	}
	mb_circuit_eval_free(fk);
	mb_circuit_eval_free(a);
	mb_circuit_eval_free(b);
	free(va);
	free(vb);
	free(vc);
	free(vd);
	free(ea);
	free(eb);
	free(rev);
	free(it);
	fix_close(&f);
}

/* ---- JSON, precision/recall, parsing --------------------------------------------- */

Test(circuit, json_round_trips_and_names_bad_fields)
{
	mb_engine_config c = {.n_layer = 3, .n_head = 4, .d_model = 256, .d_head = 64,
			      .attn_only = 1};
	mb_error err = {0};
	mb_circuit *t = truth(&c), *back;
	json_t *doc = mb_circuit_to_json(t, "planted"), *bad;
	char *text;

	cr_assert(doc);
	cr_expect_str_eq(json_string_value(json_object_get(doc, "kind")), "circuit");
	cr_expect_eq(json_integer_value(json_object_get(doc, "version")), 1);
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(doc, "criterion"),
							   "metric")),
			 "faithfulness");
	cr_expect_eq(json_array_size(json_object_get(doc, "nodes")), 3);
	cr_expect_str_eq(json_string_value(json_object_get(
				 json_array_get(json_object_get(doc, "edges"), 2), "via")),
			 "q");
	cr_assert_eq(mb_circuit_from_json(&back, doc, &c, 0, "doc", &err), 0, "%s", err.msg);
	cr_expect_eq(back->n_nodes, 3);
	cr_expect_eq(back->n_edges, 3);
	cr_expect(memcmp(back->member, t->member, 12) == 0);
	for (size_t i = 0; i < 3; i++)
		cr_expect(back->edges[i].from == t->edges[i].from &&
			  back->edges[i].to == t->edges[i].to && back->edges[i].via == t->edges[i].via);
	mb_circuit_free(back);
	text = json_dumps(doc, 0);
	bad = json_loads(text, 0, NULL);
	json_string_set(json_object_get(json_array_get(json_object_get(bad, "nodes"), 1), "id"),
			"a1.9");
	cr_expect_lt(mb_circuit_from_json(&back, bad, &c, 0, "doc", &err), 0);
	cr_expect(strstr(err.msg, "doc: nodes[1].id: 'a1.9'"), "%s", err.msg);
	json_string_set(json_object_get(json_array_get(json_object_get(bad, "nodes"), 1), "id"),
			"m1");
	cr_expect_lt(mb_circuit_from_json(&back, bad, &c, 0, "doc", &err), 0);
	cr_expect(strstr(err.msg, "MLPs are not nodes"), "%s", err.msg);
	json_decref(bad);
	bad = json_loads(text, 0, NULL);
	json_object_set_new(json_array_get(json_object_get(bad, "edges"), 0), "via",
			    json_string("x"));
	cr_expect_lt(mb_circuit_from_json(&back, bad, &c, 0, "doc", &err), 0);
	cr_expect(strstr(err.msg, "doc: edges[0].via: 'x'"), "%s", err.msg);
	json_decref(bad);
	free(text);
	json_decref(doc);
	mb_circuit_free(t);
}

Test(circuit, precision_and_recall_count_nodes_and_edges)
{
	mb_engine_config c = {.n_layer = 3, .n_head = 4, .d_model = 256, .d_head = 64,
			      .attn_only = 1};
	mb_circuit *t = truth(&c), *found;
	mb_circuit_pr pr;
	mb_error err = {0};
	json_t *doc = json_pack("{s:[{s:s},{s:s},{s:s}], s:[{s:s, s:s, s:s}]}", "nodes", "id",
				"a0.0", "id", "a2.1", "id", "a1.0", "edges", "from", "a0.0", "to",
				"a1.0", "via", "q");

	cr_assert_eq(mb_circuit_from_json(&found, doc, &c, 0, "found", &err), 0, "%s", err.msg);
	mb_circuit_compare(&pr, found, t);
	cr_expect_float_eq(pr.node_precision, 2.0 / 3, 1e-12);
	cr_expect_float_eq(pr.node_recall, 2.0 / 3, 1e-12);
	cr_expect_eq(pr.edge_precision, 0.0);
	cr_expect_eq(pr.edge_recall, 0.0);
	cr_expect(found->has_truth);
	mb_circuit_free(found);
	json_decref(doc);
	mb_circuit_free(t);
}

Test(circuit, names_parse_and_reject_with_the_allowed_values)
{
	mb_circuit_ablation a;
	mb_circuit_faith fa;
	mb_error err = {0};
	mb_engine_config c = {.n_layer = 12, .n_head = 12, .d_model = 768, .d_head = 64};
	char id[MB_CIRCUIT_ID_MAX];
	int v;

	cr_expect_eq(mb_circuit_ablation_parse(&a, "resample", "params.ablation", &err), 0);
	cr_expect_eq(a, MB_CIRCUIT_RESAMPLE);
	cr_expect_lt(mb_circuit_ablation_parse(&a, "mean", "params.ablation", &err), 0);
	cr_expect_str_eq(err.msg, "params.ablation: 'mean': expected one of mean-abc, resample, "
				  "zero");
	cr_expect_eq(mb_circuit_faith_parse(&fa, "normalized", "x", &err), 0);
	cr_expect_eq(fa, MB_CIRCUIT_FAITH_NORMALIZED);
	cr_expect_eq(mb_circuit_n_nodes(&c, 1), 12 * 12 + 12);
	cr_expect_eq(mb_circuit_node_parse(&v, "m3", &c, 1, "x", &err), 0, "%s", err.msg);
	cr_expect_eq(v, 144 + 3);
	mb_circuit_node_id(id, &c, v);
	cr_expect_str_eq(id, "m3");
	cr_expect_eq(mb_circuit_node_parse(&v, "a9.6", &c, 1, "x", &err), 0);
	cr_expect_eq(v, 9 * 12 + 6);
	cr_expect_lt(mb_circuit_node_parse(&v, "a9.6x", &c, 1, "x", &err), 0);
	cr_expect_lt(mb_circuit_node_parse(&v, "a12.0", &c, 1, "x", &err), 0);
	cr_expect_float_eq(mb_circuit_jaccard((const uint8_t[]){1, 1, 0, 0},
					      (const uint8_t[]){0, 1, 1, 0}, 4),
			   1.0 / 3, 1e-12);
	cr_expect_eq(mb_circuit_jaccard((const uint8_t[]){0, 0}, (const uint8_t[]){0, 0}, 2), 1.0);
}

/* Edge effects against the engine's own path patching: zero ablation of the
 * sender is mb_interp_head_delta_set with a zero value, patched through
 * mb_interp_path_patch_delta; the reference is the same call with a zero
 * delta. Bit for bit. */
Test(circuit, edge_effects_equal_the_engines_path_patching)
{
	fix f;
	mb_error err = {0};
	mb_circuit_eval *ev;
	mb_effect *fx;
	size_t *it;
	double *got, *patched, *ref;
	float *delta, zero[64] = {0};
	static const int edges[][3] = {{0, 4, 1}, {0, 4, 2}, {0, 4, 0}, {4, 8, 0}, {0, 8, 1}};

	fix_open(&f, 0);
	it = all_items(f.n);
	got = malloc(sizeof(double) * f.n);
	patched = malloc(sizeof(double) * f.n);
	ref = malloc(sizeof(double) * f.n);
	delta = calloc(f.n * (size_t)f.T * 256, sizeof(float));
	ev = evaluator(&f, MB_CIRCUIT_ZERO, (int)f.n);
	cr_assert_eq(mb_effect_init(&fx, f.e, ld_all_metric, &f, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_effect_cache_restart(fx, &err), 0, "%s", err.msg);
	for (size_t k = 0; k < sizeof(edges) / sizeof(edges[0]); k++) {
		int s = edges[k][0], r = edges[k][1], via = edges[k][2];
		int ls = s / 4, lr = r / 4;
		mb_run run = {.batch = (int)f.n, .seq = f.T, .tokens = f.tok, .lengths = f.len,
			      .logits = MB_LOGITS_LAST};
		const mb_hook_tensor *resid, *z;
		cr_assert_eq(mb_circuit_edge_effects(got, ev, s, r, (mb_circuit_via)via, it, f.n,
						     &err), 0, "%s", err.msg);
		cr_assert_eq(mb_effect_clean(fx, &run, &err), 0, "%s", err.msg);
		resid = mb_effect_clean_get(fx, (mb_hook_point){MB_HOOK_RESID_PRE, lr});
		z = mb_effect_clean_get(fx, (mb_hook_point){MB_HOOK_Z, ls});
		memset(delta, 0, f.n * (size_t)f.T * 256 * sizeof(float));
		cr_assert_eq(mb_interp_path_patch_delta(f.e, &run, resid, delta, lr, r % 4, via, &err),
			     0, "%s", err.msg);
		ld_all_metric(ref, f.e, (int)f.n, &f, &err);
		mb_interp_head_delta_set(delta, &f.m->cfg, &f.m->w, ls, s % 4, z, zero);
		cr_assert_eq(mb_interp_path_patch_delta(f.e, &run, resid, delta, lr, r % 4, via, &err),
			     0, "%s", err.msg);
		ld_all_metric(patched, f.e, (int)f.n, &f, &err);
		for (size_t i = 0; i < f.n; i++) {
			double want = patched[i] - ref[i];
			cr_expect(memcmp(&got[i], &want, sizeof(double)) == 0,
				  "edge %d -> %d via %d, item %zu: %.17g, engine %.17g", s, r, via, i,
				  got[i], want);
		}
		/* true edges move the difference by -16/3, the others not at all */
		if (k < 2 || k == 3)
			cr_expect_lt(fabs(got[0] + 4 * LD / 3), 1e-3, "edge %zu: %g", k, got[0]);
		else
			cr_expect_eq(got[0], 0.0, "edge %zu: %g", k, got[0]);
	}
	mb_effect_free(fx);
	mb_circuit_eval_free(ev);
	free(got);
	free(patched);
	free(ref);
	free(delta);
	free(it);
	fix_close(&f);
}

/* ---- MLP nodes, on the engine fixture gpt2_ln_gelu (2 layers, MLPs) ------------ */

typedef struct mlp_fix {
	int32_t *tok, *src, *len;
	int B, T;
} mlp_fix;

/* logit(3) - logit(5) at the last position. */
static int pair_metric(double *out, const mb_engine *e, const size_t *items, int batch,
		       void *payload, mb_error *err)
{
	(void)items;
	(void)payload;
	(void)err;
	for (int b = 0; b < batch; b++) {
		const float *row = mb_engine_logits_row(e, b, 0);
		out[b] = (double)row[3] - (double)row[5];
	}
	return 0;
}

/* The metric of a forward of the clean batch with hooks h. */
static void forward_metric(double *out, mb_engine *e, const mlp_fix *f, const mb_hooks *h)
{
	mb_error err = {0};
	mb_run r = fx_run(f->tok, f->len, f->B, f->T);

	r.logits = MB_LOGITS_LAST;
	r.hooks = h;
	cr_assert_eq(mb_engine_forward(e, &r, &err), 0, "%s", err.msg);
	pair_metric(out, e, NULL, f->B, NULL, &err);
}

/* With one group per item, mean-abc replaces a node by the item's own
 * corrupted activation: an MLP's and a head's knock-out effects equal
 * activation patching by interventions.h (to rounding: another compute
 * route), and an MLP sender's path-patching effect equals
 * mb_interp_path_patch_delta with the corrupted-minus-clean MLP output (bit
 * for bit). */
Test(circuit, mlp_nodes_follow_hand_built_interventions)
{
	mb_model *m = fx_model("gpt2_ln_gelu");
	mlp_fix f;
	mb_engine *e;
	mb_error err = {0};
	mb_circuit_eval *ev;
	mb_circuit_opts o = {.ablation = MB_CIRCUIT_MEAN_ABC, .mlps = 1, .seed = 1};
	mb_circuit_data d;
	mb_cache *clean, *corr;
	mb_hooks *hc, *hs;
	int32_t *grp;
	uint64_t *key;
	size_t *it;
	double *eff, *plain, *arm, *got, *ref;
	float *delta;
	int N, D = m->cfg.d_model;

	fx_batch("gpt2_ln_gelu", "batch0", &f.tok, &f.len, &f.B, &f.T);
	f.src = fx_source_tokens("gpt2_ln_gelu");
	e = fx_engine(m, f.B, f.T, 0);
	grp = malloc(sizeof(int32_t) * (size_t)f.B);
	key = malloc(sizeof(uint64_t) * (size_t)f.B);
	it = all_items((size_t)f.B);
	for (int b = 0; b < f.B; b++) {
		grp[b] = b;
		key[b] = (uint64_t)b;
	}
	d = (mb_circuit_data){.n = (size_t)f.B, .seq = f.T, .tokens = f.tok, .corrupt = f.src,
			      .lengths = f.len, .group = grp, .n_groups = f.B, .key = key,
			      .logits = MB_LOGITS_LAST, .metric = pair_metric};
	o.batch = f.B;
	cr_assert_eq(mb_circuit_eval_init(&ev, e, &d, &o, &err), 0, "%s", err.msg);
	N = mb_circuit_eval_nodes(ev);
	cr_assert_eq(N, 2 * 4 + 2);
	eff = malloc(sizeof(double) * (size_t)N * (size_t)f.B);
	plain = malloc(sizeof(double) * (size_t)f.B);
	arm = malloc(sizeof(double) * (size_t)f.B);
	got = malloc(sizeof(double) * (size_t)f.B);
	ref = malloc(sizeof(double) * (size_t)f.B);
	delta = calloc((size_t)f.B * (size_t)f.T * (size_t)D, sizeof(float));
	cr_assert_eq(mb_circuit_node_effects(eff, ev, it, (size_t)f.B, &err), 0, "%s", err.msg);

	/* the corrupted and clean runs' caches */
	cr_assert_eq(mb_hooks_init(&hc, &err), 0);
	cr_assert_eq(mb_hooks_init(&hs, &err), 0);
	cr_assert_eq(mb_cache_init(&clean, &err), 0);
	cr_assert_eq(mb_cache_init(&corr, &err), 0);
	for (int l = 0; l < 2; l++) {
		mb_hook_point pts[3] = {{MB_HOOK_MLP_OUT, l}, {MB_HOOK_Z, l}, {MB_HOOK_RESID_PRE, l}};
		for (int k = 0; k < 3; k++) {
			cr_assert_eq(mb_cache_add(clean, pts[k], &err), 0);
			cr_assert_eq(mb_cache_add(corr, pts[k], &err), 0);
		}
	}
	cr_assert_eq(mb_cache_attach(clean, hc, &err), 0);
	cr_assert_eq(mb_cache_attach(corr, hs, &err), 0);
	{
		mb_run r = fx_run(f.src, f.len, f.B, f.T);
		r.hooks = hs;
		cr_assert_eq(mb_engine_forward(e, &r, &err), 0, "%s", err.msg);
	}
	forward_metric(plain, e, &f, NULL);
	/* knock-outs: MLP 0, MLP 1, head a1.2 patched from the corrupted run */
	for (int k = 0; k < 3; k++) {
		int node = k < 2 ? 8 + k : 4 + 2;
		mb_hooks *h;
		mb_iv *iv;
		mb_iv_spec spec = {.point = {k < 2 ? MB_HOOK_MLP_OUT : MB_HOOK_Z, k < 2 ? k : 1},
				   .unit = k < 2 ? -1 : 2, .op = MB_IV_PATCH};
		spec.source = mb_cache_get(corr, spec.point);
		cr_assert_eq(mb_hooks_init(&h, &err), 0);
		cr_assert_eq(mb_iv_init(&iv, &err), 0);
		cr_assert_eq(mb_iv_add(iv, &m->cfg, &spec, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_iv_attach(iv, h, &err), 0, "%s", err.msg);
		forward_metric(arm, e, &f, h);
		double biggest = 0;
		for (int b = 0; b < f.B; b++)
			biggest = fmax(biggest, fabs(arm[b] - plain[b]));
		printf("node %d: largest knock-out effect %.6g\n", node, biggest);
		cr_expect_gt(biggest, 1e-3, "node %d: the check is vacuous", node);
		for (int b = 0; b < f.B; b++)
			cr_expect_lt(fabs(eff[(size_t)node * f.B + b] - (arm[b] - plain[b])), 1e-5,
				     "node %d item %d: %.9g, by hand %.9g", node, b,
				     eff[(size_t)node * f.B + b], arm[b] - plain[b]);
		mb_iv_free(iv);
		mb_hooks_free(h);
	}
	/* the MLP 0 -> a1.1 edges */
	{
		mb_run r = fx_run(f.tok, f.len, f.B, f.T);
		const mb_hook_tensor *rp, *c0, *s0;
		r.hooks = hc;
		r.logits = MB_LOGITS_LAST;
		cr_assert_eq(mb_engine_forward(e, &r, &err), 0, "%s", err.msg);
		rp = mb_cache_get(clean, (mb_hook_point){MB_HOOK_RESID_PRE, 1});
		c0 = mb_cache_get(clean, (mb_hook_point){MB_HOOK_MLP_OUT, 0});
		s0 = mb_cache_get(corr, (mb_hook_point){MB_HOOK_MLP_OUT, 0});
		for (int via = 0; via < 3; via++) {
			cr_assert_eq(mb_circuit_edge_effects(got, ev, 8, 5, (mb_circuit_via)via, it,
							     (size_t)f.B, &err), 0, "%s", err.msg);
			memset(delta, 0, sizeof(float) * (size_t)f.B * f.T * D);
			cr_assert_eq(mb_interp_path_patch_delta(e, &r, rp, delta, 1, 1, via, &err), 0,
				     "%s", err.msg);
			pair_metric(ref, e, NULL, f.B, NULL, &err);
			for (int b = 0; b < f.B; b++)
				for (int t = 0; t < f.len[b]; t++)
					for (int j = 0; j < D; j++) {
						size_t at = ((size_t)b * f.T + t) * D + j;
						delta[at] = s0->data[at] - c0->data[at];
					}
			cr_assert_eq(mb_interp_path_patch_delta(e, &r, rp, delta, 1, 1, via, &err), 0,
				     "%s", err.msg);
			pair_metric(arm, e, NULL, f.B, NULL, &err);
			printf("m0 -> a1.1 via %d: item 0 effect %.6g\n", via, got[0]);
			cr_expect_neq(got[0], 0.0, "via %d: the check is vacuous", via);
			for (int b = 0; b < f.B; b++) {
				double want = arm[b] - ref[b];
				cr_expect(memcmp(&got[b], &want, sizeof(double)) == 0,
					  "m0 -> a1.1 via %d item %d: %.17g, by hand %.17g", via, b,
					  got[b], want);
			}
		}
	}
	mb_cache_free(clean);
	mb_cache_free(corr);
	mb_hooks_free(hc);
	mb_hooks_free(hs);
	mb_circuit_eval_free(ev);
	mb_engine_free(e);
	mb_model_free(m);
	free(eff);
	free(plain);
	free(arm);
	free(got);
	free(ref);
	free(delta);
	free(grp);
	free(key);
	free(it);
	free(f.tok);
	free(f.src);
	free(f.len);
}

/* Bad data is refused before any forward, naming the item. */
Test(circuit, evaluator_rejects_bad_data_naming_the_item)
{
	fix f;
	mb_error err = {0};
	mb_circuit_eval *ev = NULL;
	mb_circuit_opts o = {.ablation = MB_CIRCUIT_MEAN_ABC, .seed = 7, .batch = 8};
	int32_t g, len;

	fix_open(&f, 0);
	g = f.grp[5];
	f.grp[5] = 99;
	cr_expect_eq(mb_circuit_eval_init(&ev, f.e, &f.data, &o, &err), MB_EINVALID);
	cr_expect_str_eq(err.msg, "circuit data: item 5: group 99 not in [0, 18)");
	f.grp[5] = g;
	/* items 0 and 1 share template t00; give item 1 another length */
	cr_assert_eq(f.grp[0], f.grp[1]);
	len = f.len[1];
	f.len[1] = len - 1;
	cr_expect_eq(mb_circuit_eval_init(&ev, f.e, &f.data, &o, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "item 1: length") && strstr(err.msg, "positions must align for "
								      "mean-abc"),
		  "%s", err.msg);
	/* zero ablation needs no alignment */
	o.ablation = MB_CIRCUIT_ZERO;
	cr_expect_eq(mb_circuit_eval_init(&ev, f.e, &f.data, &o, &err), 0, "%s", err.msg);
	mb_circuit_eval_free(ev);
	f.len[1] = len;
	o.batch = 0;
	cr_expect_eq(mb_circuit_eval_init(&ev, f.e, &f.data, &o, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "opts.batch 0"), "%s", err.msg);
	fix_close(&f);
}
