/*
 * Phases on the zoo's own checkpoint series (issues 7 and 9): each fast zoo
 * recipe is trained with --checkpoint-every 100 into a temp folder, `mechbench
 * drift` runs the committed drift spec over the series, and the phase
 * boundaries it locates are checked against an independent record, the
 * trainer's own eval log in the final training_state.json ("evals", every 50
 * steps):
 *
 *   modadd      the grokking step, the first eval from which test accuracy
 *               stays >= 0.99 (the trainer's own grokking check), lies within
 *               one checkpoint interval of the circuit-formation -> cleanup
 *               boundary located on the weight norm (benchmarks/modadd-drift.json),
 *               and the memorisation boundary comes before it; every declared
 *               window is met (drift exits 0) and the phases are stored.
 *   induction   the first eval whose induction score is >= 0.5 lies within one
 *               checkpoint interval of the boundary located on the induction
 *               score and on the loss on the 2nd repeat
 *               (benchmarks/induction-drift.json, no windows: it must hold for
 *               whatever model the recipe trains).
 *
 * One training per recipe (about 60 s and 20 s in a release build), so these
 * carry the ctest label `zoo` (the _zoo suffix, cmake/MechbenchTests.cmake),
 * which ci/test leaves out of the sanitizer pass.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sqlite3.h>

#include "support/harness_support.h"

#define INTERVAL 100

static char dir[256];

static void setup(void)
{
	mbt_tmpdir(dir, sizeof(dir));
}

static void teardown(void)
{
	mbt_rmtree(dir);
}

TestSuite(phases_zoo, .init = setup, .fini = teardown, .timeout = 900);

static json_t *load(const char *path)
{
	json_error_t jerr;
	json_t *doc = json_load_file(path, 0, &jerr);
	cr_assert_not_null(doc, "%s: %s (line %d)", path, jerr.text, jerr.line);
	return doc;
}

/* Trains recipe into dir/recipe with checkpoints every INTERVAL steps, runs
 * drift with the committed spec over them, and returns the drift JSON and
 * the final training_state.json. */
static void train_and_drift(const char *recipe, const char *spec, json_t **drift, json_t **state)
{
	char cmd[4096], path[512];
	char *out = NULL;
	int rc;

	/* One thread each: the two tests of this file run side by side. */
	snprintf(cmd, sizeof(cmd),
		 "OMP_WAIT_POLICY=passive " MBT_CLI "zoo train %s --checkpoint-every %d "
		 "--threads 1 --quiet --out '%s/%s'", recipe, INTERVAL, dir, recipe);
	mbt_sh_ok(dir, cmd);
	snprintf(cmd, sizeof(cmd),
		 "OMP_WAIT_POLICY=passive " MBT_CLI "drift --suite %s --series '%s/%s/checkpoints' "
		 "--db '%s/drift.db' --json '%s/drift.json' --threads 1 --quiet", spec, dir, recipe,
		 dir, dir);
	rc = mbt_sh(MB_SOURCE_DIR, cmd, &out);
	printf("%s\n", out ? out : "");
	cr_assert_eq(rc, 0, "drift exits %d (3: a phase boundary outside its window):\n%s", rc,
		     out ? out : "");
	free(out);
	snprintf(path, sizeof(path), "%s/drift.json", dir);
	*drift = load(path);
	snprintf(path, sizeof(path), "%s/%s/training_state.json", dir, recipe);
	*state = load(path);
}

/* The phases declaration of entry/metric in the drift JSON. */
static json_t *phases_of(json_t *drift, const char *entry, const char *metric)
{
	json_t *all = json_object_get(drift, "phases"), *p;
	size_t i;

	json_array_foreach(all, i, p) {
		if (strcmp(json_string_value(json_object_get(p, "entry")), entry) == 0 &&
		    strcmp(json_string_value(json_object_get(p, "metric")), metric) == 0) {
			cr_assert(json_is_true(json_object_get(p, "located")), "%s/%s located",
				  entry, metric);
			return p;
		}
	}
	cr_assert_fail("the drift report has no phases of %s/%s", entry, metric);
	return NULL;
}

/* The step of boundary b (the first checkpoint of phase b + 1). */
static long long boundary_step(json_t *phases, size_t b)
{
	json_t *bd = json_array_get(json_object_get(phases, "boundaries"), b);
	json_t *step = json_object_get(json_object_get(bd, "at"), "step");
	cr_assert(json_is_integer(step), "boundary %zu has a step", b);
	return (long long)json_integer_value(step);
}

/* The first eval step whose `key` is >= level (stays: every later eval is
 * too, when `stays`); -1 when none. */
static long long eval_crossing(json_t *state, const char *key, double level, int stays)
{
	json_t *evals = json_object_get(state, "evals"), *e;
	long long first = -1;
	size_t i;

	cr_assert(json_array_size(evals) > 10, "training_state.json has its eval log");
	json_array_foreach(evals, i, e) {
		json_t *v = json_object_get(e, key);
		cr_assert(json_is_number(v), "evals[%zu].%s is a number", i, key);
		if (json_number_value(v) >= level) {
			if (first < 0)
				first = (long long)json_integer_value(json_object_get(e, "step"));
		} else if (stays) {
			first = -1;
		}
	}
	return first;
}

Test(phases_zoo, modadd_cleanup_boundaries_meet_the_trainers_grokking_step)
{
	json_t *drift = NULL, *state = NULL, *wn;
	long long grok, half, memo, clean;
	char path[512];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	static const char *const declared[][2] = {
		{"modadd-train", "modadd.weight_norm"},
		{"modadd-train", "modadd.restricted_loss"},
		{"modadd-test", "modadd.excluded_loss"},
		{"modadd-test", "modadd.loss"},
	};

	train_and_drift("modadd", "benchmarks/modadd-drift.json", &drift, &state);
	grok = eval_crossing(state, "test_acc", 0.99, 1);
	half = eval_crossing(state, "test_acc", 0.5, 0);
	cr_assert_gt(grok, 0, "the fast model groks (test accuracy stays >= 0.99)");
	wn = phases_of(drift, "modadd-train", "modadd.weight_norm");
	memo = boundary_step(wn, 0);
	clean = boundary_step(wn, 1);
	printf("modadd: weight-norm phases: memorisation to step %lld, circuit formation "
	       "%lld to %lld, cleanup from %lld; trainer: test accuracy >= 0.5 from step %lld, "
	       ">= 0.99 from step %lld (grokking)\n", memo - INTERVAL, memo, clean - INTERVAL,
	       clean, half, grok);
	/* Grokking is cleanup (Nanda et al. 2023, section 5.2): on the test set the
	 * excluded loss, the progress measure that tracks the memorising
	 * components, enters its cleanup phase within one interval of the
	 * trainer's grokking step. The weight norm keeps falling under weight decay
	 * after that, so its cleanup boundary only comes no earlier than grokking
	 * (the portable-trained model: grokking 1,300, excluded-loss boundary
	 * 1,400, weight-norm boundary 1,900). */
	{
		long long ex = boundary_step(phases_of(drift, "modadd-test", "modadd.excluded_loss"), 1);

		cr_expect(llabs(grok - ex) <= INTERVAL,
			  "grokking at step %lld is within %d steps of the excluded-loss cleanup "
			  "boundary %lld", grok, INTERVAL, ex);
		cr_expect_geq(clean, grok - INTERVAL,
			      "the weight-norm cleanup boundary %lld does not come before grokking "
			      "at step %lld", clean, grok);
	}
	cr_expect_lt(memo, grok, "the memorisation boundary %lld comes before grokking %lld",
		     memo, grok);
	for (size_t i = 0; i < sizeof(declared) / sizeof(declared[0]); i++) {
		json_t *p = phases_of(drift, declared[i][0], declared[i][1]);
		long long b0 = boundary_step(p, 0), b1 = boundary_step(p, 1);
		printf("  %s/%s: boundaries at steps %lld and %lld\n", declared[i][0],
		       declared[i][1], b0, b1);
		cr_expect_lt(b0, b1);
		cr_expect_lt(b0, grok, "%s: memorisation ends before grokking", declared[i][1]);
		for (size_t b = 0; b < 2; b++)
			cr_expect(json_is_true(json_object_get(
					  json_array_get(json_object_get(p, "boundaries"), b), "met")),
				  "%s boundary %zu met its registered window", declared[i][1], b);
	}
	/* stored: 4 declarations x 3 phases */
	snprintf(path, sizeof(path), "%s/drift.db", dir);
	cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(db, "SELECT count(*), sum(window_met) FROM series_phases",
					-1, &st, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
	cr_expect_eq(sqlite3_column_int(st, 0), 12, "stored phase rows");
	cr_expect_eq(sqlite3_column_int(st, 1), 8, "stored windows met");
	sqlite3_finalize(st);
	sqlite3_close(db);
	json_decref(drift);
	json_decref(state);
}

Test(phases_zoo, induction_boundary_meets_the_trainers_score_crossing)
{
	json_t *drift = NULL, *state = NULL;
	long long cross, on_score, on_loss;

	train_and_drift("induction", "benchmarks/induction-drift.json", &drift, &state);
	cross = eval_crossing(state, "induction_score", 0.5, 0);
	cr_assert_gt(cross, 0, "the trainer's induction score reaches 0.5");
	on_score = boundary_step(phases_of(drift, "induction", "induction.score"), 0);
	on_loss = boundary_step(phases_of(drift, "induction", "induction.loss_rep2"), 0);
	printf("induction: phase change located at step %lld (induction score) and %lld (loss "
	       "on the 2nd repeat); trainer: induction score >= 0.5 from step %lld\n", on_score,
	       on_loss, cross);
	cr_expect(llabs(cross - on_score) <= INTERVAL,
		  "the score crossing at %lld is within %d steps of the boundary %lld", cross,
		  INTERVAL, on_score);
	cr_expect(llabs(cross - on_loss) <= INTERVAL,
		  "the score crossing at %lld is within %d steps of the loss boundary %lld", cross,
		  INTERVAL, on_loss);
	json_decref(drift);
	json_decref(state);
}
