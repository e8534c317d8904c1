/*
 * bench_store.c: what rank 0 of an MPI run (and `merge`) spends per stored
 * item value: one run of one entry with n items x m metrics written to a
 * fresh results database in one transaction (mb_store_put_run: interning the
 * items, the item_value rows, the commit), then read back (mb_store_get_run).
 * Prints seconds per value and bytes per value. Not a test: run it by hand,
 *     build/bench_store [n] [m] [folder]
 * (defaults 100000 items, 4 metrics, /tmp). scaling.md uses it for the
 * rank-0 bottleneck of wide sweeps.
 */
#include <mechbench/parse.h>
#include <mechbench/runner.h>
#include <mechbench/store.h>

#include <stdint.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Argument i as an integer >= 1, or def when absent; exits 2 when bad. */
static size_t arg(int argc, char **argv, int i, size_t def)
{
	int64_t v;
	mb_error err;

	if (argc <= i)
		return def;
	if (mb_parse_i64(argv[i], 1, INT64_MAX, &v, "argument", &err) < 0) {
		fprintf(stderr, "bench_store: %s\n", err.msg);
		exit(2);
	}
	return (size_t)v;
}

int main(int argc, char **argv)
{
	size_t n = arg(argc, argv, 1, 100000), m = arg(argc, argv, 2, 4);
	const char *dir = argc > 3 ? argv[3] : "/tmp";
	char path[4096];
	mb_run_result run, back;
	mb_entry_result *e;
	mb_store *s = NULL;
	mb_error err;
	struct stat st;
	double t0, t1, t2;
	int status = 1;

	memset(&run, 0, sizeof(run));
	memset(&back, 0, sizeof(back));
	snprintf(path, sizeof(path), "%s/bench_store_%ld.db", dir, (long)getpid());
	mb_provenance_init(&run.prov, 1);
	snprintf(run.prov.suite, sizeof(run.prov.suite), "bench");
	run.entries = e = calloc(1, sizeof(*e));
	run.n_entries = 1;
	e->name = strdup("sweep");
	e->task = strdup("bench");
	e->model = strdup("none");
	e->dataset = strdup("none");
	e->task_version = 1;
	e->n_items = n;
	e->n_metrics = m;
	e->items = calloc(n, sizeof(*e->items));
	e->metrics = calloc(m, sizeof(*e->metrics));
	e->aggregates = calloc(m, sizeof(*e->aggregates));
	e->values = malloc(n * m * sizeof(double));
	if (!e->items || !e->metrics || !e->aggregates || !e->values)
		return 1;
	for (size_t i = 0; i < n; i++) {
		/* content-key-like 64 hex digits, distinct per item */
		snprintf(e->items[i].key, sizeof(e->items[i].key), "%016zx%048zx", i * 2654435761u, i);
		e->items[i].stratum = strdup(i % 2 ? "a" : "b");
		e->items[i].cluster = strdup("c");
	}
	for (size_t k = 0; k < m; k++) {
		char name[32];
		snprintf(name, sizeof(name), "bench.metric%zu", k);
		e->metrics[k].name = strdup(name);
		e->metrics[k].version = 1;
		e->aggregates[k].n = n;
	}
	for (size_t i = 0; i < n * m; i++)
		e->values[i] = (double)i * 1e-3;
	mb_error_clear(&err);
	t0 = mb_runner_now();
	if (mb_store_open(&s, path, NULL, &err) < 0 || mb_store_put_run(s, &run, &err) < 0)
		goto done;
	t1 = mb_runner_now();
	if (mb_store_get_run(&back, s, run.id, &err) < 0)
		goto done;
	t2 = mb_runner_now();
	if (back.entries[0].n_items != n ||
	    memcmp(back.entries[0].values, e->values, n * m * sizeof(double)) != 0) {
		fprintf(stderr, "bench_store: read back differs\n");
		goto done;
	}
	stat(path, &st);
	printf("values %zu (%zu items x %zu metrics)\n", n * m, n, m);
	printf("write  %.3f s  %.2f us per value (one transaction)\n", t1 - t0,
	       (t1 - t0) / (double)(n * m) * 1e6);
	printf("read   %.3f s  %.2f us per value\n", t2 - t1, (t2 - t1) / (double)(n * m) * 1e6);
	printf("file   %.1f bytes per value (WAL not checkpointed yet)\n",
	       (double)st.st_size / (double)(n * m));
	status = 0;
done:
	if (status)
		fprintf(stderr, "bench_store: %s\n", err.msg);
	mb_run_result_dispose(&back);
	mb_run_result_dispose(&run);
	mb_store_free(s);
	unlink(path);
	{
		char side[4200];
		snprintf(side, sizeof(side), "%s-wal", path);
		unlink(side);
		snprintf(side, sizeof(side), "%s-shm", path);
		unlink(side);
	}
	return status;
}
