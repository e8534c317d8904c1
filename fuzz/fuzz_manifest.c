/* fuzz_manifest.c: libFuzzer target for the zoo MANIFEST parser (zoo.h
 * mb_zoo_manifest_parse). An accepted MANIFEST lists 1..16 plain file names,
 * sorted, each with 64 lower-case hex digits; a rejected one gets one error
 * line starting with the file name. Seeds: fuzz/corpus/manifest/. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <mechbench/zoo.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mb_zoo_manifest m;
	mb_error err;

	mb_error_clear(&err);
	if (mb_zoo_manifest_parse(&m, (const char *)data, size, "MANIFEST", &err) < 0) {
		if (strncmp(err.msg, "MANIFEST", 8) != 0 || strchr(err.msg, '\n'))
			__builtin_trap();
		return 0;
	}
	if (m.nfiles < 1 || m.nfiles > MB_ZOO_MANIFEST_MAX_FILES)
		__builtin_trap();
	for (size_t i = 0; i < m.nfiles; i++) {
		if (strlen(m.sha256[i]) != 64 || strchr(m.files[i], '/') || !m.files[i][0])
			__builtin_trap();
		if (i > 0 && strcmp(m.files[i - 1], m.files[i]) >= 0)
			__builtin_trap();
	}
	return 0;
}
