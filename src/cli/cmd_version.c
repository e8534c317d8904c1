/* cmd_version.c: `mechbench version` / `mechbench --version`. */
#include "cli.h"

#include <omp.h>

#include <mechbench/buildinfo.h>
#include <mechbench/dist.h>
#include <mechbench/gemm.h>

static const mb_cli_cmd version_cmd = {
	.name = "version",
	.synopsis = "mechbench version\n"
		    "       mechbench --version\n",
	.about =
	"Prints the version, the git commit the binary was built from, the build type,\n"
	"the compiler, OpenMP's maximum thread count, OpenBLAS's configuration and\n"
	"the GEMM backend in use with the ISA its kernels run (gemm.h).\n"
	"The BLAS must be the OpenMP build (parallel mode 2): the pthread build's\n"
	"threads fight OpenMP's workers (OpenBLAS#3187).\n",
};

static const char *parallel_name(int p)
{
	switch (p) {
	case 0: return "sequential";
	case 1: return "pthreads";
	case 2: return "openmp";
	default: return "unknown";
	}
}

int mb_cmd_version(int argc, char **argv)
{
	char cpu[256];
	mb_cli_parsed parsed;
	int rc;

	if ((rc = mb_cli_parse(&parsed, NULL, &version_cmd, argc, argv)) != MB_CLI_GO)
		return rc;
	mb_cpu_model(cpu, sizeof(cpu));
	printf("mechbench %s\n", mb_build_version());
	printf("commit:        %s\n", mb_build_commit());
	printf("build type:    %s\n", mb_build_type());
	printf("compiler:      %s\n", mb_build_compiler());
	printf("openmp:        max threads %d\n", omp_get_max_threads());
	printf("mpi:           %s\n", mb_dist_built() ? "yes (mpirun -n K mechbench run|drift)"
						   : "no (built without MPI)");
	printf("openblas:      %s\n", mb_blas_config());
	printf("openblas mode: %s (%d threads, core %s)\n", parallel_name(mb_blas_parallel()),
	       mb_blas_threads(), mb_blas_core());
	printf("cpu:           %s\n", cpu);
	{
		char g[128];

		mb_gemm_describe(g, sizeof(g));
		printf("gemm:          %s (backends: portable, openblas%s; cpu offers %s)\n", g,
		       mb_gemm_have_onednn() ? ", onednn" : "; onednn not built: libdnnl-dev was "
							    "not found",
		       mb_gemm_isa_name(mb_gemm_isa_best()));
	}
	if (mb_blas_parallel() != 2)
		fprintf(stderr, "mechbench: warning: OpenBLAS is not the OpenMP build; "
				"timings will suffer (install libopenblas-openmp-dev)\n");
	return MB_EXIT_OK;
}
