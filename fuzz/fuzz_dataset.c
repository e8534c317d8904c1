/* fuzz_dataset.c: libFuzzer target for dataset files (dataset.h): what
 * parses must render back to the same bytes. Seeds: fuzz/corpus/dataset/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/dataset.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mb_dataset d;
	mb_error err;
	char *text = NULL;
	size_t len;

	if (mb_dataset_parse(&d, (const char *)data, size, "fuzz.jsonl", &err) < 0)
		return 0;
	/* Parsing accepts non-canonical spacing; a render parses again. */
	if (mb_dataset_render(&text, &len, d.task, d.task_version, d.seed, d.params, &d.items,
			      &err) == 0) {
		mb_dataset e;
		if (mb_dataset_parse(&e, text, len, "again.jsonl", &err) < 0 ||
		    e.items.n != d.items.n)
			__builtin_trap();
		mb_dataset_dispose(&e);
		free(text);
	}
	mb_dataset_dispose(&d);
	return 0;
}
