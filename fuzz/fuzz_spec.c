/* fuzz_spec.c: libFuzzer target for the suite spec parser (spec.h) and the
 * deviation report between two specs. Seeds: fuzz/corpus/spec/. */
#include <stddef.h>
#include <stdint.h>

#include <mechbench/spec.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mb_spec a, b;
	mb_error err;
	mb_spec_deviation *d = NULL;
	size_t n = 0;

	if (mb_spec_parse(&a, (const char *)data, size, "fuzz.json", &err) < 0)
		return 0;
	/* A spec compared with itself has no deviations. */
	if (mb_spec_parse(&b, (const char *)data, size, "fuzz.json", &err) == 0) {
		if (mb_spec_diff(&d, &n, &a, &b, &err) == 0 && n != 0)
			__builtin_trap();
		mb_spec_deviations_free(d, n);
		mb_spec_dispose(&b);
	}
	mb_spec_dispose(&a);
	return 0;
}
