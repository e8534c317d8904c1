/*
 * bench_tokenize: byte-level BPE encode throughput, one thread, over the
 * GPT-2 golden corpus (tests/fixtures/bpe/prepare_gpt2.py builds DIR).
 *
 * Usage: bench_tokenize DIR [PASSES]
 * Prints, for the first pass (cold word cache) and the best of the others
 * (warm), MB/s of UTF-8 input by wall time and by process CPU time, and the
 * number of ids. run_tokenize.sh runs it next to the JS reference encoder.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mechbench/file.h>
#include <mechbench/tokenizer.h>

static double now(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	char path[4096], *text = NULL, **strs = NULL;
	size_t len = 0, n = 0, cap = 0, bytes = 0, pos = 0;
	int passes = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 5;
	mb_tokenizer *t = NULL;
	mb_error err = {0};
	double best_wall = 1e30, best_cpu = 1e30;

	if (argc < 2) {
		fprintf(stderr, "usage: bench_tokenize DIR [PASSES]\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/corpus.jsonl", argv[1]);
	if (mb_file_read_text(&text, &len, path, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	while (pos < len) {
		char *e = memchr(text + pos, '\n', len - pos);
		size_t l = e ? (size_t)(e - (text + pos)) : len - pos;
		json_error_t jerr;
		json_t *s = json_loadb(text + pos, l, JSON_DECODE_ANY, &jerr);

		pos += l + 1;
		if (!s || !json_is_string(s)) {
			fprintf(stderr, "%s: line %zu is not a JSON string\n", path, n + 1);
			return 1;
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 1024;
			strs = realloc(strs, cap * sizeof(*strs));
		}
		strs[n++] = strdup(json_string_value(s));
		bytes += strlen(json_string_value(s));
		json_decref(s);
	}
	snprintf(path, sizeof(path), "%s/tokenizer.json", argv[1]);
	if (mb_tokenizer_load(&t, path, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	for (int p = 0; p < passes; p++) {
		double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID), w, c;
		long ids = 0;

		for (size_t i = 0; i < n; i++) {
			int32_t *out = NULL;
			int k = 0;

			if (mb_tokenizer_encode(t, strs[i], &out, &k, &err) < 0) {
				fprintf(stderr, "line %zu: %s\n", i + 1, err.msg);
				return 1;
			}
			ids += k;
			free(out);
		}
		w = now(CLOCK_MONOTONIC) - w0;
		c = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
		if (p == 0)
			printf("mechbench  cold  %zu strings, %.3f MB, %ld ids: %.2f MB/s wall, "
			       "%.2f MB/s CPU\n",
			       n, bytes / 1e6, ids, bytes / 1e6 / w, bytes / 1e6 / c);
		else {
			best_wall = w < best_wall ? w : best_wall;
			best_cpu = c < best_cpu ? c : best_cpu;
		}
	}
	if (passes > 1)
		printf("mechbench  warm  best of %d passes: %.2f MB/s wall, %.2f MB/s CPU\n",
		       passes - 1, bytes / 1e6 / best_wall, bytes / 1e6 / best_cpu);
	for (size_t i = 0; i < n; i++)
		free(strs[i]);
	free(strs);
	free(text);
	mb_tokenizer_free(t);
	return 0;
}
