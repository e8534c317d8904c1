/* buildinfo.c: build and machine provenance. */
#include <mechbench/buildinfo.h>

#include <stdio.h>
#include <string.h>

#include <cblas.h>

#include "mb_build_info.h"

#ifndef MB_BUILD_TYPE
#define MB_BUILD_TYPE "unknown"
#endif
#ifndef MB_C_FLAGS
#define MB_C_FLAGS ""
#endif

const char *mb_build_version(void) { return MB_VERSION_STRING; }
const char *mb_build_commit(void) { return MB_GIT_COMMIT; }
const char *mb_build_type(void) { return MB_BUILD_TYPE; }
const char *mb_build_compiler(void) { return MB_C_COMPILER; }
const char *mb_build_cflags(void) { return MB_C_FLAGS; }

const char *mb_blas_config(void) { return openblas_get_config(); }
int mb_blas_parallel(void) { return openblas_get_parallel(); }
int mb_blas_threads(void) { return openblas_get_num_threads(); }
const char *mb_blas_core(void) { return openblas_get_corename(); }

void mb_cpu_model(char *buf, size_t cap)
{
	char line[512];
	FILE *f = fopen("/proc/cpuinfo", "r");

	snprintf(buf, cap, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "model name", 10) == 0) {
			char *colon = strchr(line, ':');
			if (colon) {
				colon++;
				while (*colon == ' ' || *colon == '\t')
					colon++;
				colon[strcspn(colon, "\n")] = '\0';
				snprintf(buf, cap, "%s", colon);
			}
			break;
		}
	}
	fclose(f);
}
