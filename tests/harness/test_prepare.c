/* The task's prepare hook in the runner: called once per entry with all the
 * entry's items, before run; its artifact kept on the result, the same for
 * any thread count and in every shard; a bad artifact refused naming the
 * task and the field; the metrics' bits untouched. The synthetic task's toy
 * circuit is checked against a second implementation here. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/artifact.h>
#include <mechbench/rng.h>
#include <mechbench/runner.h>
#include <mechbench/shard.h>

#include "support/harness_support.h"

#define CIRCUIT_PARAMS "\"params\": {\"circuit\": {\"top\": 3, \"resamples\": 20}},"

typedef mbt_entry_fixture fixture;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The toy circuit computed here, apart from synthetic.c: each feature's
 * mean of y w_j x_j / 10 over items sel[0..n) with w_j = (-1)^j, and the
 * top 3 by magnitude. */
static void toy_effects(double effect[8], const mb_dataset *d, const size_t *sel, size_t n)
{
	for (int j = 0; j < 8; j++) {
		double s = 0;
		for (size_t k = 0; k < n; k++) {
			const json_t *in = d->items.items[sel ? sel[k] : k].input;
			double y = (double)json_integer_value(json_object_get(in, "y"));
			double x = (double)json_integer_value(
				json_array_get(json_object_get(in, "x"), (size_t)j));
			s += y * (j % 2 ? -1.0 : 1.0) * x / 10.0;
		}
		effect[j] = s / (double)n;
	}
}

static unsigned toy_top3(const double effect[8])
{
	unsigned set = 0;
	for (int k = 0; k < 3; k++) {
		int best = -1;
		for (int j = 0; j < 8; j++)
			if (!(set >> j & 1) && (best < 0 || fabs(effect[j]) > fabs(effect[best])))
				best = j;
		set |= 1u << best;
	}
	return set;
}

Test(prepare, the_toy_circuit_matches_a_second_implementation)
{
	fixture f;
	mb_entry_result r;
	mb_artifact_circuit c;
	mb_error err;
	double effect[8], jac[20], mean = 0, incl[8] = {0};
	size_t n, *sel;
	unsigned top;

	mbt_entry_setup(&f, 40, CIRCUIT_PARAMS);
	mbt_entry_run(&f, &r, 2);
	cr_assert_not_null(r.artifact, "prepare returned an artifact");
	cr_assert_eq(mb_artifact_circuit_read(&c, r.artifact, &err), 0, "%s", err.msg);
	n = f.d.items.n;
	toy_effects(effect, &f.d, NULL, n);
	top = toy_top3(effect);
	cr_assert_eq(c.n_nodes, 3);
	for (size_t i = 0; i < c.n_nodes; i++) {
		int j = c.nodes[i].layer * 4 + c.nodes[i].head;
		cr_expect(top >> j & 1, "node %s is one of the top 3", c.nodes[i].id);
		cr_expect(fabs(c.nodes[i].effect - effect[j]) <= 1e-12 * fabs(effect[j]),
			  "%s: effect %.17g, here %.17g", c.nodes[i].id, c.nodes[i].effect,
			  effect[j]);
	}
	/* the bootstrap, redrawn from the same stream */
	sel = malloc(n * sizeof(*sel));
	for (size_t b = 0; b < 20; b++) {
		mb_rng rng;
		double e[8];
		unsigned s;
		mb_rng_init_named(&rng, 0, "synthetic/circuit", b);
		for (size_t k = 0; k < n; k++)
			sel[k] = (size_t)mb_rng_range(&rng, n);
		toy_effects(e, &f.d, sel, n);
		s = toy_top3(e);
		for (int j = 0; j < 8; j++)
			incl[j] += (double)(s >> j & 1) / 20.0;
		jac[b] = (double)__builtin_popcount(s & top) / (double)__builtin_popcount(s | top);
		mean += jac[b];
	}
	free(sel);
	qsort(jac, 20, sizeof(double), cmp_double);
	cr_expect(c.stability.present);
	cr_expect_eq(c.stability.resamples, 20);
	cr_expect(fabs(c.stability.mean - mean / 20) < 1e-12, "%.17g vs %.17g", c.stability.mean,
		  mean / 20);
	cr_expect_eq(c.stability.lo, jac[0], "2.5%% order statistic of 20");
	cr_expect_eq(c.stability.hi, jac[18], "97.5%% order statistic of 20");
	for (size_t i = 0; i < c.n_nodes; i++) {
		int j = c.nodes[i].layer * 4 + c.nodes[i].head;
		cr_expect(fabs(c.nodes[i].inclusion - incl[j]) < 1e-12, "%s inclusion %g vs %g",
			  c.nodes[i].id, c.nodes[i].inclusion, incl[j]);
	}
	mb_artifact_circuit_dispose(&c);
	mb_entry_result_dispose(&r);
	mbt_entry_teardown(&f);
}

Test(prepare, the_artifact_is_the_same_for_any_thread_count_and_in_every_shard)
{
	fixture f, plain;
	mb_entry_result one, two, none;
	mb_runner_opts o = {.threads = 2};
	mb_error err;
	char model[512], where[256];

	mbt_entry_setup(&f, 40, CIRCUIT_PARAMS);
	mbt_entry_setup(&plain, 40, "");
	mbt_entry_run(&f, &one, 1);
	mbt_entry_run(&f, &two, 2);
	mbt_entry_run(&plain, &none, 2);
	cr_assert_not_null(one.artifact);
	cr_expect_eq(mb_artifact_first_diff(where, sizeof(where), one.artifact, two.artifact,
					    "artifact"), 0, "threads 1 and 2 differ at %s", where);
	cr_expect_null(none.artifact, "no circuit params, no prepare artifact");
	cr_assert_eq(one.n_items, none.n_items);
	cr_expect_eq(memcmp(one.values, none.values, one.n_items * 3 * sizeof(double)), 0,
		     "prepare moves no metric's bits");
	cr_expect_eq(memcmp(one.aggregates, none.aggregates, 3 * sizeof(mb_aggregate)), 0);
	/* each of 3 shards runs a third of the items but prepares on all of them */
	snprintf(model, sizeof(model), "%s/models/true", f.dir);
	for (unsigned s = 0; s < 3; s++) {
		mb_shard part = {s, 3};
		mb_entry_result p;
		cr_assert_eq(mb_shard_run_entry(&part, &p, &f.spec, &f.spec.entries[0], &f.d, f.dir,
						model, "models/true", &o, &err), 0, "%s", err.msg);
		cr_expect_lt(p.n_items, one.n_items);
		cr_expect_eq(mb_artifact_first_diff(where, sizeof(where), one.artifact, p.artifact,
						    "artifact"), 0, "shard %u differs at %s", s,
			     where);
		mb_entry_result_dispose(&p);
	}
	mb_entry_result_dispose(&one);
	mb_entry_result_dispose(&two);
	mb_entry_result_dispose(&none);
	mbt_entry_teardown(&f);
	mbt_entry_teardown(&plain);
}

/* A task whose prepare counts its calls and returns what the test sets. */
static int probe_prepares;
static size_t probe_items;
static const char *probe_artifact;
static int probe_fail;

static int probe_open(void **out, const char *dir, const json_t *params, mb_error *err)
{
	(void)dir;
	(void)params;
	(void)err;
	*out = &probe_prepares;
	return 0;
}

static void probe_close(void *st)
{
	(void)st;
}

static int probe_prepare(void *st, const mb_item *items, size_t n, json_t **artifact,
			 mb_error *err)
{
	(void)st;
	(void)items;
	probe_prepares++;
	probe_items = n;
	if (probe_fail)
		return mb_error_set(err, MB_EINVALID, "item %s: cannot discover", items[0].key);
	*artifact = probe_artifact ? json_loads(probe_artifact, 0, NULL) : NULL;
	return 0;
}

static int probe_run(void *st, const mb_item *items, size_t n, double *values, mb_error *err)
{
	(void)st;
	if (probe_prepares != 1) /* worker threads: no Criterion asserts here */
		return mb_error_set(err, MB_ERROR, "item %s: run before prepare", items[0].key);
	for (size_t i = 0; i < n; i++)
		values[i] = 1.0;
	return 0;
}

static const mb_metric_def probe_metric[] = {
	{"probe.x", 1, MB_METRIC_CONTINUOUS, MB_HIGHER_IS_BETTER, "test probe"}};

static int run_probe(fixture *f, mb_entry_result *r, mb_error *err)
{
	static mb_task probe = {.name = "probe", .version = 1, .metrics = probe_metric,
				.n_metrics = 1, .batch = 8, .open = probe_open,
				.close = probe_close, .prepare = probe_prepare, .run = probe_run};
	mb_spec_entry e = f->spec.entries[0];
	mb_runner_opts o = {.threads = 2};
	char model[512];

	e.task = &probe;
	probe_prepares = 0;
	snprintf(model, sizeof(model), "%s/models/true", f->dir);
	return mb_runner_run_entry(r, &f->spec, &e, &f->d, f->dir, model, NULL, &o, err);
}

Test(prepare, is_called_once_with_all_items_and_a_bad_artifact_is_one_line)
{
	fixture f;
	mb_entry_result r;
	mb_error err;

	mbt_entry_setup(&f, 20, "");
	probe_artifact = "{\"kind\": \"circuit\", \"version\": 1, \"nodes\": [], \"edges\": []}";
	probe_fail = 0;
	cr_assert_eq(run_probe(&f, &r, &err), 0, "%s", err.msg);
	cr_expect_eq(probe_prepares, 1);
	cr_expect_eq(probe_items, 40, "every item of the entry");
	cr_expect_not_null(r.artifact);
	mb_entry_result_dispose(&r);
	probe_artifact = "{\"kind\": \"circuit\", \"version\": 1, \"nodes\": [{\"id\": \"a1.2\", "
			 "\"layer\": 1, \"head\": 2, \"kind\": \"head\", \"effect\": 1}], "
			 "\"edges\": [{\"from\": \"a1.2\", \"to\": \"a3.0\", \"via\": \"v\", "
			 "\"effect\": 1}]}";
	cr_expect_eq(run_probe(&f, &r, &err), MB_EINVALID);
	cr_expect_str_eq(err.msg, "entry toy: prepare of task probe returned a bad artifact: "
				  "probe: artifact.edges[0].to: 'a3.0' is not a node of this circuit "
				  "(nor \"logits\")");
	cr_expect_null(r.name, "nothing half-made is left");
	probe_fail = 1;
	cr_expect_eq(run_probe(&f, &r, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "entry toy: item ") == err.msg, "%s", err.msg);
	cr_expect(strstr(err.msg, ": cannot discover") != NULL, "%s", err.msg);
	probe_fail = 0;
	probe_artifact = NULL;
	mbt_entry_teardown(&f);
}
