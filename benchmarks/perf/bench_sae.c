/*
 * bench_sae: SAE training tokens per second (sae_train.h), the mechbench
 * side of benchmarks/perf/bench_sae.sh, which compares it with the same SAE,
 * data order and optimizer in PyTorch (bench_sae_torch.py).
 *
 *   bench_sae --data FILE.npy [--arch topk|relu] [--width S] [--k K]
 *             [--batch R] [--steps N] [--threads T]
 *
 * FILE.npy: float32 (N, D) rows (the script writes them), read as a stream
 * (never held whole: the trainer's memory is what is measured); rows 0 ..
 * R - 1 serve the initialisation (normalisation, geometric-median b_dec),
 * step t trains on rows (t R .. (t + 1) R - 1) mod N, in order. The first step is
 * untimed (first touch of the buffers); prints one JSON line {"impl",
 * "threads", "arch", "d_in", "width", "batch", "steps", "seconds",
 * "tokens_per_s", "cpu_seconds" (the process's user + system time over the
 * timed steps, getrusage: the robust number on a loaded machine),
 * "tokens_per_cpu_s", and in MiB: "max_rss_mb" (peak resident set of the
 * process, shared library pages included), "anon_base_mb" (anonymous memory
 * before training: the libraries' own), "anon_peak_mb" (the largest
 * anonymous resident memory at the end of a step, when every buffer of the
 * trainer is live), "trainer_mb" (their difference: the trainer's memory),
 * "bound_mb" (the bound: 4 x the SAE's parameters, for the weights,
 * their gradient and Adam's two moments, plus one (R, D) batch of rows),
 * "losses": [the first 5 losses]}. The two anonymous readings come from
 * /proc/self/status (RssAnon; -1 where there is none).
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/resource.h>

#include <mechbench/sae_train.h>

/* User + system CPU seconds of the process so far. */
static double cpu_now(void)
{
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec +
	       (double)u.ru_stime.tv_sec + 1e-6 * (double)u.ru_stime.tv_usec;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A float32 (N, D) .npy file read row by row, wrapping at N. */
typedef struct rows_src {
	FILE *f;
	long data_off;
	int64_t n, next;
	int D;
} rows_src;

/* Opens path's header: little-endian float32, C order, 2-D. */
static int rows_open(rows_src *r, const char *path)
{
	unsigned char pre[12];
	char hdr[4096];
	size_t hl;
	long long n, d;

	memset(r, 0, sizeof(*r));
	if (!(r->f = fopen(path, "rb")) || fread(pre, 1, 10, r->f) != 10 ||
	    memcmp(pre, "\x93NUMPY", 6) != 0)
		return -1;
	if (pre[6] == 1) {
		hl = (size_t)pre[8] | (size_t)pre[9] << 8;
		r->data_off = 10;
	} else {
		if (fread(pre + 10, 1, 2, r->f) != 2)
			return -1;
		hl = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 |
		     (size_t)pre[11] << 24;
		r->data_off = 12;
	}
	if (hl >= sizeof(hdr) || fread(hdr, 1, hl, r->f) != hl)
		return -1;
	hdr[hl] = 0;
	r->data_off += (long)hl;
	const char *sh = strstr(hdr, "'shape': (");
	if (!strstr(hdr, "'<f4'") || !strstr(hdr, "'fortran_order': False") || !sh ||
	    sscanf(sh, "'shape': (%lld, %lld)", &n, &d) != 2 || n < 1 || d < 1 || d > 1 << 20)
		return -1;
	r->n = n;
	r->D = (int)d;
	return 0;
}

static int rows_next(void *self, float *out, int n, mb_error *err)
{
	rows_src *r = self;
	for (int i = 0; i < n;) {
		int64_t at = r->next % r->n, run = r->n - at < n - i ? r->n - at : n - i;
		if (fseek(r->f, r->data_off + (long)(at * r->D * (int64_t)sizeof(float)), SEEK_SET) != 0 ||
		    fread(out + (size_t)i * r->D, sizeof(float), (size_t)(run * r->D), r->f) !=
			    (size_t)(run * r->D))
			return mb_error_set(err, MB_EIO, "bench_sae: short read at row %lld",
					    (long long)at);
		r->next += run;
		i += (int)run;
	}
	return 0;
}

/* Anonymous resident memory of the process in MiB (RssAnon), -1 if unknown. */
static double anon_mb(void)
{
	char line[256];
	double kb = -1.0;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1.0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "RssAnon:", 8) == 0) {
			kb = strtod(line + 8, NULL);
			break;
		}
	fclose(f);
	return kb < 0 ? -1.0 : kb / 1024.0;
}

typedef struct timing {
	double t1, c1;
	double losses[5];
	double anon_peak;
	int64_t steps;
} timing;

static void on_step(const mb_sae_progress *p, void *payload)
{
	timing *t = payload;
	if (p->step == 1) {
		t->t1 = now();
		t->c1 = cpu_now();
	}
	if (p->step <= 5)
		t->losses[p->step - 1] = p->loss.total;
	t->steps = p->step;
	double a = anon_mb();
	if (a > t->anon_peak)
		t->anon_peak = a;
}

int main(int argc, char **argv)
{
	const char *data = NULL;
	int topk = 1, width = 4096, k = 32, batch = 4096, steps = 20, threads = 2;
	rows_src rs;
	mb_error err;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--data") == 0)
			data = argv[i + 1];
		else if (strcmp(argv[i], "--arch") == 0)
			topk = strcmp(argv[i + 1], "topk") == 0;
		else if (strcmp(argv[i], "--width") == 0)
			width = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--k") == 0)
			k = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--batch") == 0)
			batch = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--steps") == 0)
			steps = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--threads") == 0)
			threads = (int)strtol(argv[i + 1], NULL, 10);
	}
	if (!data) {
		fprintf(stderr, "usage: bench_sae --data FILE.npy [--arch topk|relu] [--width S] "
				"[--k K] [--batch R] [--steps N] [--threads T]\n");
		return 2;
	}
	omp_set_num_threads(threads);
	if (rows_open(&rs, data) < 0) {
		fprintf(stderr, "bench_sae: %s: not a little-endian float32 (N, D) .npy file\n",
			data);
		return 1;
	}
	mb_sae_source src = {rs.D, rows_next, &rs};
	mb_sae_train_config cfg = mb_sae_train_defaults(topk ? MB_SAE_TOPK : MB_SAE_RELU);
	cfg.width = width;
	cfg.k = k;
	cfg.batch = batch;
	cfg.tokens = (int64_t)batch * (steps + 1);
	cfg.init_rows = batch;
	cfg.lr = 1e-3;
	timing tm;
	memset(&tm, 0, sizeof(tm));
	const double anon_base = anon_mb();
	const double bound_mb = (4.0 * (double)mb_sae_param_count(cfg.arch, rs.D, width) +
				 (double)batch * rs.D) *
				sizeof(float) / 1048576.0;
	mb_sae *s;
	mb_sae_train_result res;
	if (mb_sae_train(&s, &res, &src, &cfg, on_step, &tm, &err) < 0) {
		fprintf(stderr, "bench_sae: %s\n", err.msg);
		return 1;
	}
	double secs = now() - tm.t1, cpu = cpu_now() - tm.c1;
	int64_t timed = tm.steps - 1;
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	printf("{\"impl\": \"mechbench\", \"threads\": %d, \"arch\": \"%s\", \"d_in\": %d, "
	       "\"width\": %d, \"batch\": %d, \"steps\": %lld, \"seconds\": %.4f, "
	       "\"tokens_per_s\": %.1f, \"cpu_seconds\": %.4f, \"tokens_per_cpu_s\": %.1f, "
	       "\"max_rss_mb\": %.1f, \"anon_base_mb\": %.1f, \"anon_peak_mb\": %.1f, "
	       "\"trainer_mb\": %.1f, \"bound_mb\": %.1f, "
	       "\"losses\": [%.6g, %.6g, %.6g, %.6g, %.6g]}\n",
	       threads, topk ? "topk" : "relu", src.d_in, width, batch, (long long)timed, secs,
	       secs > 0 ? (double)timed * batch / secs : 0.0, cpu,
	       cpu > 0 ? (double)timed * batch / cpu : 0.0, (double)u.ru_maxrss / 1024.0,
	       anon_base, tm.anon_peak,
	       anon_base >= 0 && tm.anon_peak >= 0 ? tm.anon_peak - anon_base : -1.0, bound_mb,
	       tm.losses[0], tm.losses[1], tm.losses[2], tm.losses[3], tm.losses[4]);
	json_decref(res.record);
	mb_sae_free(s);
	fclose(rs.f);
	return 0;
}
