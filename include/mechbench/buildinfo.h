/*
 * buildinfo.h: provenance of this build and this machine, recorded with every
 * result (ARCHITECTURE.md, determinism rule 5) and printed by --version.
 */
#ifndef MECHBENCH_BUILDINFO_H
#define MECHBENCH_BUILDINFO_H

#include <stddef.h>

const char *mb_build_version(void);  /* "0.1.0" */
const char *mb_build_commit(void);   /* git commit at configure time, "-dirty" suffixed */
const char *mb_build_type(void);     /* CMAKE_BUILD_TYPE */
const char *mb_build_compiler(void); /* "GNU 12.2.0" */
const char *mb_build_cflags(void);

/* OpenBLAS's own configuration string (openblas_get_config()). */
const char *mb_blas_config(void);
/* 0 sequential, 1 pthreads, 2 OpenMP (openblas_get_parallel()). */
int mb_blas_parallel(void);
/* OpenBLAS's current thread count and CPU core name. */
int mb_blas_threads(void);
const char *mb_blas_core(void);

/* The CPU model name from /proc/cpuinfo, or "unknown". */
void mb_cpu_model(char *buf, size_t cap);

#endif
