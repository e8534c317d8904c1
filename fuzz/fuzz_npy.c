/*
 * fuzz_npy: libFuzzer target for the .npy reader.
 *
 * Every input either parses into an array whose data size matches its shape
 * and dtype, or fails with one non-empty line starting with the file's name.
 */
#include <stdint.h>
#include <string.h>

#include <mechbench/npy.h>

#define NAME "fuzz.npy"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mb_npy a;
	mb_error err;
	int overflow = 0;

	mb_error_clear(&err);
	if (mb_npy_read_mem(&a, data, size, NAME, &err) < 0) {
		if (err.code >= 0 || strncmp(err.msg, NAME ": ", strlen(NAME) + 2) != 0 ||
		    strchr(err.msg, '\n') != NULL || a.data != NULL)
			__builtin_trap();
		return 0;
	}
	if (a.ndim < 0 || a.ndim > MB_MAX_DIMS || !a.data ||
	    mb_shape_numel(a.ndim, a.shape, &overflow) != a.numel || overflow ||
	    a.numel * mb_dtype_size(a.dtype) > size)
		__builtin_trap();
	/* touch every byte so ASan checks the allocation's size */
	volatile unsigned char sink = 0;
	for (size_t i = 0; i < a.numel * mb_dtype_size(a.dtype); i++)
		sink ^= ((unsigned char *)a.data)[i];
	(void)sink;
	mb_npy_dispose(&a);
	return 0;
}
