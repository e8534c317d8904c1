/*
 * bench_train: training steps per second of a zoo recipe (default modadd
 * "paper": Nanda et al.'s 1-layer model on p = 113, 3,831 train pairs, full
 * batch, AdamW), the mechbench side of benchmarks/perf/bench_train.sh, which
 * compares it with the same model and optimizer in PyTorch
 * (bench_train_torch.py) on the same data in the same order.
 *
 *   bench_train --prepare DIR [--recipe NAME] [--preset P] [--seed S]
 *       writes DIR/init/ (the initial checkpoint: config.json,
 *       model.safetensors), DIR/pairs.npy (int64 (N), the train pairs in the
 *       order every full-batch step feeds them) and DIR/recipe.json.
 *   bench_train --run DIR [--steps N] [--warmup W] [--threads T]
 *       trains from that initial state: W untimed steps, then N timed steps;
 *       prints one JSON line {"impl", "gemm" (the backend: MB_GEMM), "threads",
 *       "steps", "seconds", "cpu_seconds" (getrusage, every thread),
 *       "steps_per_s", "losses": [the first min(N + W, 10) losses]}.
 * Both sides start from the same weights (the torch script loads DIR/init),
 * see the same pairs in the same order and report their losses, so the
 * runner checks they train the same model before it compares speed.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/resource.h>

#include <mechbench/checkpoint.h>
#include <mechbench/gemm.h>
#include <mechbench/json.h>
#include <mechbench/npy.h>
#include <mechbench/parse.h>
#include <mechbench/zoo.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of this process, every thread (getrusage: user + system). */
static double cpu_now(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
	       (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static int die(const mb_error *err)
{
	fprintf(stderr, "bench_train: %s\n", err->msg);
	return 1;
}

static int prepare(const char *dir, const mb_zoo_recipe *r)
{
	mb_zoo_trainer *t;
	mb_error err;
	char path[4096];
	size_t n;

	if (mb_zoo_trainer_init(&t, r, &err) < 0)
		return die(&err);
	snprintf(path, sizeof(path), "%s/init", dir);
	if (mb_zoo_trainer_write_model(t, path, &err) < 0)
		return die(&err);
	const uint32_t *pairs = mb_zoo_trainer_train_pairs(t, &n);
	int64_t *p64 = malloc(n * sizeof(int64_t));
	for (size_t i = 0; i < n; i++)
		p64[i] = pairs[i];
	int64_t shape[1] = {(int64_t)n};
	snprintf(path, sizeof(path), "%s/pairs.npy", dir);
	if (mb_npy_write(path, MB_DTYPE_I64, 1, shape, p64, &err) < 0)
		return die(&err);
	free(p64);
	json_t *j = mb_zoo_recipe_to_json(r);
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
	snprintf(path, sizeof(path), "%s/recipe.json", dir);
	if (mb_checkpoint_write_text(path, text, &err) < 0)
		return die(&err);
	free(text);
	json_decref(j);
	mb_zoo_trainer_free(t);
	printf("prepared %s/%s seed %llu in %s: %zu train pairs\n", r->name, r->preset,
	       (unsigned long long)r->seed, dir, n);
	return 0;
}

static int run(const mb_zoo_recipe *r, int64_t steps, int64_t warmup)
{
	mb_zoo_trainer *t;
	mb_error err;
	double losses[10], t0 = 0, t1, c0 = 0, c1;
	int nl = 0;

	if (mb_zoo_trainer_init(&t, r, &err) < 0)
		return die(&err);
	for (int64_t s = 0; s < warmup + steps; s++) {
		double loss;
		if (s == warmup) {
			t0 = now();
			c0 = cpu_now();
		}
		if (mb_zoo_trainer_step(t, &loss, &err) < 0)
			return die(&err);
		if (nl < 10)
			losses[nl++] = loss;
	}
	t1 = now();
	c1 = cpu_now();
	if (steps == 0) {
		t0 = t1;
		c0 = c1;
	}
	printf("{\"impl\": \"mechbench\", \"gemm\": \"%s\", \"threads\": %d, \"steps\": %lld, "
	       "\"seconds\": %.6f, \"cpu_seconds\": %.6f, \"steps_per_s\": %.6f, \"losses\": [",
	       mb_gemm_backend_name(mb_gemm_current()), omp_get_max_threads(), (long long)steps,
	       t1 - t0, c1 - c0, steps > 0 ? (double)steps / (t1 - t0) : 0.0);
	for (int i = 0; i < nl; i++)
		printf("%s%.9g", i ? ", " : "", losses[i]);
	printf("]}\n");
	mb_zoo_trainer_free(t);
	return 0;
}

int main(int argc, char **argv)
{
	const char *prep = NULL, *rundir = NULL, *name = "modadd", *preset = "paper";
	int64_t steps = 20, warmup = 2, seed = 0, threads = 0;
	mb_zoo_recipe r;
	mb_error err;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int ok = 1;
		if (!v) {
			ok = 0;
		} else if (strcmp(a, "--prepare") == 0) {
			prep = v;
		} else if (strcmp(a, "--run") == 0) {
			rundir = v;
		} else if (strcmp(a, "--recipe") == 0) {
			name = v;
		} else if (strcmp(a, "--preset") == 0) {
			preset = v;
		} else if (strcmp(a, "--seed") == 0) {
			ok = mb_parse_i64(v, 0, INT64_MAX, &seed, "--seed", &err) == 0;
		} else if (strcmp(a, "--steps") == 0) {
			ok = mb_parse_i64(v, 0, 1000000, &steps, "--steps", &err) == 0;
		} else if (strcmp(a, "--warmup") == 0) {
			ok = mb_parse_i64(v, 0, 1000000, &warmup, "--warmup", &err) == 0;
		} else if (strcmp(a, "--threads") == 0) {
			ok = mb_parse_i64(v, 1, 1024, &threads, "--threads", &err) == 0;
		} else {
			ok = 0;
		}
		if (!ok) {
			fprintf(stderr, "usage: bench_train --prepare DIR [--recipe NAME] [--preset P] "
					"[--seed S]\n       bench_train --run DIR [--steps N] "
					"[--warmup W] [--threads T]\n");
			return 2;
		}
		i++;
	}
	if (threads > 0)
		omp_set_num_threads((int)threads);
	if (prep) {
		if (mb_zoo_recipe_get(&r, name, preset, (uint64_t)seed, &err) < 0)
			return die(&err);
		return prepare(prep, &r);
	}
	if (!rundir) {
		fprintf(stderr, "bench_train: --prepare DIR or --run DIR\n");
		return 2;
	}
	/* The recipe of the prepared directory (name, preset and seed). */
	char path[4096];
	mb_json_doc doc;
	const char *rn, *rp;
	int64_t rs;
	snprintf(path, sizeof(path), "%s/recipe.json", rundir);
	if (mb_json_doc_load(&doc, path, &err) < 0 ||
	    mb_json_get_string(&doc, doc.root, "", "name", 1, &rn, &err) < 0 ||
	    mb_json_get_string(&doc, doc.root, "", "preset", 1, &rp, &err) < 0 ||
	    mb_json_get_int(&doc, doc.root, "", "seed", 1, 0, INT64_MAX, &rs, &err) < 0)
		return die(&err);
	if (mb_zoo_recipe_get(&r, rn, rp, (uint64_t)rs, &err) < 0)
		return die(&err);
	mb_json_doc_dispose(&doc);
	return run(&r, steps, warmup);
}
