/*
 * bench_bootstrap.c: time of the seeded paired bootstrap at the size,
 * n = 10,000 items and B = 10,000 replicates, percentile and BCa, at 1 and 2
 * OpenMP threads, reported as a ratio against the 2 s limit (< 1 is within it).
 * Also checks that both thread counts give the same bits (the determinism
 * promise), and exits 1 if they do not. Not a test: run it by hand,
 *     build/bench_bootstrap [n] [B] [repeats]
 * The limit is the target for 2 cores.
 */
#include <mechbench/paired.h>
#include <mechbench/rng.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIMIT_S 2.0

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long arg(int argc, char **argv, int i, long def)
{
	char *end;
	long v;

	if (argc <= i)
		return def;
	v = strtol(argv[i], &end, 10);
	if (*end || v < 1) {
		fprintf(stderr, "bench_bootstrap: argument %d '%s' is not an integer >= 1\n", i, argv[i]);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	size_t n = (size_t)arg(argc, argv, 1, 10000), B = (size_t)arg(argc, argv, 2, 10000);
	int repeats = (int)arg(argc, argv, 3, 3);
	double *x = malloc(n * sizeof(*x)), *reps[2];
	mb_stats_estimate est[2][2];
	mb_error err;
	mb_rng r;
	int status = 0;

	reps[0] = malloc(B * sizeof(double));
	reps[1] = malloc(B * sizeof(double));
	if (!x || !reps[0] || !reps[1])
		return 1;
	mb_rng_init_named(&r, 1, "bench/bootstrap-data", 0);
	for (size_t i = 0; i < n; i++)
		x[i] = exp(mb_rng_normal(&r)) - 1.0; /* skewed, as ratio metrics are */

	printf("bootstrap of the mean: n = %zu items, B = %zu replicates, best of %d\n", n, B,
	       repeats);
	for (int t = 1; t <= 2; t++) {
		for (int ci = 0; ci < 2; ci++) {
			mb_stats_boot_opts o = {.seed = 11, .stream = "bench/metric", .B = B,
						.level = 0.95, .ci = (mb_stats_boot_ci)ci};
			double best = INFINITY;
			omp_set_num_threads(t);
			for (int k = 0; k < repeats; k++) {
				double t0 = now();
				if (mb_stats_bootstrap(&est[t - 1][ci], reps[t - 1], x, n, &o, &err) < 0) {
					fprintf(stderr, "bench_bootstrap: %s\n", err.msg);
					return 1;
				}
				if (now() - t0 < best)
					best = now() - t0;
			}
			printf("  %d thread%s %-10s %7.3f s   ratio to the %.0f s limit: %.3f  [%.6f, %.6f]\n",
			       t, t == 1 ? " " : "s", ci == MB_STATS_BOOT_CI_BCA ? "BCa" : "percentile",
			       best, LIMIT_S, best / LIMIT_S, est[t - 1][ci].lo, est[t - 1][ci].hi);
		}
	}
	if (memcmp(reps[0], reps[1], B * sizeof(double)) != 0 ||
	    memcmp(est[0], est[1], sizeof(est[0])) != 0) {
		printf("FAIL: 1 and 2 threads gave different bits\n");
		status = 1;
	} else {
		printf("1 and 2 threads: bitwise identical replicates and intervals\n");
	}
	free(x);
	free(reps[0]);
	free(reps[1]);
	return status;
}
