/* report_support.c: see report_support.h. */
#include "report_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness_support.h"

void mbt_series(const char *dir, const char *rel, int K, int every, int jump, double before,
		double after, double wiggle, int with_state)
{
	for (int k = 0; k < K; k++) {
		char ck[512], file[600], text[128];
		double w[8], s = k < jump ? before : after;
		snprintf(ck, sizeof(ck), "%s/step_%06d", rel, k * every);
		for (int j = 0; j < 8; j++)
			w[j] = (j % 2 ? -1.0 : 1.0) * s * (1.0 + wiggle * sin(1.7 * k + j));
		mbt_synthetic_model(dir, ck, w, 8, 0);
		if (with_state) {
			snprintf(file, sizeof(file), "%s/training_state.json", ck);
			snprintf(text, sizeof(text), "{\"format\": 1, \"step\": %d}\n", k * every);
			mbt_write(dir, file, text);
		}
	}
}

void mbt_demo_suite(const char *dir, int n_per_stratum)
{
	char *spec;
	mbt_suite_fixture(dir, n_per_stratum, "", MBT_METRICS_ALL, &spec);
	mbt_write(dir, "demo.json", spec);
	free(spec);
}

json_t *mbt_json_file(const char *dir, const char *rel)
{
	char path[1024];
	json_error_t je;
	json_t *doc;
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	doc = json_load_file(path, 0, &je);
	if (!doc) {
		fprintf(stderr, "%s: %s (line %d)\n", path, je.text, je.line);
		abort();
	}
	return doc;
}

size_t mbt_count(const char *hay, const char *needle)
{
	size_t n = 0, len = strlen(needle);
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += len)
		n++;
	return n;
}
