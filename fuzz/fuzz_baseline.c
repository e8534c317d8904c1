/* fuzz_baseline.c: libFuzzer target for baseline files (baseline.h): what
 * parses must render and parse back to the same values. Seeds:
 * fuzz/corpus/baseline/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/baseline.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mb_run_result r, back;
	mb_error err;
	char *text = NULL;
	size_t len;

	if (mb_baseline_parse(&r, (const char *)data, size, "fuzz.json", &err) < 0)
		return 0;
	if (mb_baseline_render(&text, &len, &r, NULL, &err) == 0) {
		if (mb_baseline_parse(&back, text, len, "again.json", &err) < 0)
			__builtin_trap();
		for (size_t i = 0; i < r.n_entries; i++)
			if (back.entries[i].n_items != r.entries[i].n_items ||
			    memcmp(back.entries[i].values, r.entries[i].values,
				   r.entries[i].n_items * r.entries[i].n_metrics * sizeof(double)))
				__builtin_trap();
		mb_run_result_dispose(&back);
		free(text);
	}
	mb_run_result_dispose(&r);
	return 0;
}
