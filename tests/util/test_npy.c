/*
 * npy: reads of files numpy wrote (tests/fixtures/util/npy, made by
 * gen_fixtures.py), writes compared with numpy's bytes, every rejection with
 * its message, and failed writes that leave nothing behind.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mechbench/file.h>
#include <mechbench/npy.h>

#define FIX MB_SOURCE_DIR "/tests/fixtures/util/npy/"

static int exists(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0;
}

static void scratch_dir(char *buf, size_t cap, const char *name)
{
	snprintf(buf, cap, "%s/test-scratch-npy-%s-%ld", MB_BINARY_DIR, name, (long)getpid());
	cr_assert(mkdir(buf, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", buf, strerror(errno));
}

static void read_ok(mb_npy *a, const char *file, mb_dtype dtype, int ndim, const int64_t *shape)
{
	mb_error err;
	cr_assert_eq(mb_npy_read(a, file, &err), 0, "%s", err.msg);
	cr_expect_eq(a->dtype, dtype, "%s: dtype %s", file, mb_dtype_name(a->dtype));
	cr_assert_eq(a->ndim, ndim, "%s: ndim %d", file, a->ndim);
	for (int i = 0; i < ndim; i++)
		cr_expect_eq(a->shape[i], shape[i], "%s: shape[%d] = %lld", file, i,
			     (long long)a->shape[i]);
}

Test(npy, reads_numpy_float32_3d_with_the_values_numpy_wrote)
{
	mb_npy a;
	read_ok(&a, FIX "f32_2x3x4.npy", MB_DTYPE_F32, 3, (int64_t[]){2, 3, 4});
	cr_assert_eq(a.numel, 24);
	for (size_t i = 0; i < 24; i++)
		cr_expect_eq(((float *)a.data)[i], 0.5f * (float)i - 3.0f, "element %zu", i);
	mb_npy_dispose(&a);
	cr_expect_null(a.data);
}

Test(npy, reads_numpy_integers_and_doubles_exactly)
{
	mb_npy a;
	const int32_t i32[] = {0, 1, -2, 2147483647, -2147483647 - 1, 7};
	const int64_t i64[] = {0, -1, (1LL << 40) + 3, -(1LL << 62)};
	const double f64[] = {0.1, -2.5, 1e300, -1e-300, 3.0};

	read_ok(&a, FIX "i32_3x2.npy", MB_DTYPE_I32, 2, (int64_t[]){3, 2});
	cr_expect_arr_eq(a.data, i32, sizeof(i32));
	mb_npy_dispose(&a);
	read_ok(&a, FIX "i64_4.npy", MB_DTYPE_I64, 1, (int64_t[]){4});
	cr_expect_arr_eq(a.data, i64, sizeof(i64));
	mb_npy_dispose(&a);
	read_ok(&a, FIX "f64_5.npy", MB_DTYPE_F64, 1, (int64_t[]){5});
	cr_expect_arr_eq(a.data, f64, sizeof(f64));
	mb_npy_dispose(&a);
}

Test(npy, reads_scalar_empty_uint8_and_bool_arrays)
{
	mb_npy a;
	const unsigned char u8[] = {0, 1, 128, 255}, b1[] = {1, 0, 1};

	read_ok(&a, FIX "f32_scalar.npy", MB_DTYPE_F32, 0, NULL);
	cr_expect_eq(a.numel, 1);
	cr_expect_eq(*(float *)a.data, 2.75f);
	mb_npy_dispose(&a);
	read_ok(&a, FIX "f32_empty_0x3.npy", MB_DTYPE_F32, 2, (int64_t[]){0, 3});
	cr_expect_eq(a.numel, 0);
	cr_expect_not_null(a.data);
	mb_npy_dispose(&a);
	read_ok(&a, FIX "u8_4.npy", MB_DTYPE_U8, 1, (int64_t[]){4});
	cr_expect_arr_eq(a.data, u8, 4);
	mb_npy_dispose(&a);
	read_ok(&a, FIX "bool_3.npy", MB_DTYPE_BOOL, 1, (int64_t[]){3});
	cr_expect_arr_eq(a.data, b1, 3);
	mb_npy_dispose(&a);
}

Test(npy, reads_version_2_and_3_headers_like_version_1)
{
	mb_npy v1, v2, v3;
	read_ok(&v1, FIX "f32_2x3.npy", MB_DTYPE_F32, 2, (int64_t[]){2, 3});
	read_ok(&v2, FIX "f32_v2.npy", MB_DTYPE_F32, 2, (int64_t[]){2, 3});
	read_ok(&v3, FIX "f32_v3.npy", MB_DTYPE_F32, 2, (int64_t[]){2, 3});
	cr_expect_arr_eq(v1.data, v2.data, 6 * sizeof(float));
	cr_expect_arr_eq(v1.data, v3.data, 6 * sizeof(float));
	mb_npy_dispose(&v1);
	mb_npy_dispose(&v2);
	mb_npy_dispose(&v3);
}

Test(npy, half_precision_table_matches_numpy_bit_for_bit)
{
	mb_npy h, want, f;
	mb_error err;
	size_t mismatched = 0;

	read_ok(&h, FIX "f16_table.npy", MB_DTYPE_F16, 1, (int64_t[]){1664});
	read_ok(&want, FIX "f16_table_expected_f32.npy", MB_DTYPE_F32, 1, (int64_t[]){1664});
	for (size_t i = 0; i < h.numel; i++) {
		uint16_t bits = ((uint16_t *)h.data)[i];
		float got = mb_f16_to_f32(bits), w = ((float *)want.data)[i];
		/* NaN payloads are implementation-defined; sign and NaN-ness are not */
		int same = isnan(w) ? isnan(got) && signbit(got) == signbit(w)
				    : memcmp(&got, &w, 4) == 0;
		if (!same) {
			mismatched++;
			cr_log_error("half 0x%04x -> %a, numpy says %a", bits, (double)got, (double)w);
		}
	}
	cr_expect_eq(mismatched, 0, "%zu of %zu halves differ from numpy", mismatched, h.numel);
	cr_assert_eq(mb_npy_read_f32(&f, FIX "f16_table.npy", &err), 0, "%s", err.msg);
	cr_expect_eq(f.dtype, MB_DTYPE_F32);
	cr_expect_eq(((float *)f.data)[1], ((float *)want.data)[1]);
	mb_npy_dispose(&h);
	mb_npy_dispose(&want);
	mb_npy_dispose(&f);
}

Test(npy, read_f32_converts_doubles_and_integers)
{
	mb_npy a;
	mb_error err;

	cr_assert_eq(mb_npy_read_f32(&a, FIX "f64_5.npy", &err), 0, "%s", err.msg);
	cr_expect_eq(a.dtype, MB_DTYPE_F32);
	cr_expect_eq(((float *)a.data)[0], 0.1f);
	cr_expect(isinf(((float *)a.data)[2]), "1e300 should overflow float32 to inf");
	cr_expect_eq(((float *)a.data)[3], -0.0f);
	mb_npy_dispose(&a);
	cr_assert_eq(mb_npy_read_f32(&a, FIX "i64_4.npy", &err), 0, "%s", err.msg);
	cr_expect_eq(((float *)a.data)[2], 1099511627776.0f); /* 2^40 + 3 rounds to 2^40 */
	cr_expect_eq(((float *)a.data)[3], -4611686018427387904.0f);
	mb_npy_dispose(&a);
	cr_assert_eq(mb_npy_read_f32(&a, FIX "i32_3x2.npy", &err), 0, "%s", err.msg);
	cr_expect_eq(((float *)a.data)[2], -2.0f);
	mb_npy_dispose(&a);
	cr_expect_eq(mb_npy_read_f32(&a, FIX "bool_3.npy", &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "bool_3.npy: dtype BOOL cannot be read as float32") != NULL, "%s",
		  err.msg);
	cr_expect_null(a.data);
}

/* --- writer -------------------------------------------------------------- */

/* Reads a numpy file, writes its array back with mb_npy_write, and compares
 * the two files byte for byte. */
static void rewrite_matches_numpy(const char *name)
{
	char dir[512], path[600], src[600];
	unsigned char *got, *want;
	size_t glen, wlen;
	mb_npy a;
	mb_error err;

	snprintf(src, sizeof(src), FIX "%s", name);
	cr_assert_eq(mb_npy_read(&a, src, &err), 0, "%s", err.msg);
	scratch_dir(dir, sizeof(dir), "rewrite");
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	cr_assert_eq(mb_npy_write(path, a.dtype, a.ndim, a.shape, a.data, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_file_read_all(&got, &glen, path, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_file_read_all(&want, &wlen, src, &err), 0, "%s", err.msg);
	cr_expect_eq(glen, wlen, "%s: %zu bytes, numpy wrote %zu", name, glen, wlen);
	for (size_t i = 0; i < glen && i < wlen; i++)
		if (got[i] != want[i]) {
			cr_expect_fail("%s: first difference at byte %zu: '%c', numpy '%c'", name, i,
				       got[i], want[i]);
			break;
		}
	free(got);
	free(want);
	mb_npy_dispose(&a);
	unlink(path);
	rmdir(dir);
}

Test(npy, writer_output_equals_numpys_bytes)
{
	rewrite_matches_numpy("f32_2x3.npy");
	rewrite_matches_numpy("f32_2x3x4.npy");
	rewrite_matches_numpy("f32_scalar.npy");
	rewrite_matches_numpy("f32_empty_0x3.npy");
	rewrite_matches_numpy("f64_5.npy");
	rewrite_matches_numpy("i32_3x2.npy");
	rewrite_matches_numpy("i64_4.npy");
	rewrite_matches_numpy("u8_4.npy");
	rewrite_matches_numpy("bool_3.npy");
	rewrite_matches_numpy("f16_table.npy");
}

Test(npy, writer_into_a_missing_directory_fails_and_leaves_nothing)
{
	const char *path = MB_BINARY_DIR "/no-such-dir-npy/x.npy";
	float x[2] = {1, 2};
	mb_error err;

	cr_expect_lt(mb_npy_write(path, MB_DTYPE_F32, 1, (int64_t[]){2}, x, &err), 0);
	cr_expect(strncmp(err.msg, path, strlen(path)) == 0, "%s", err.msg);
	cr_expect_not(exists(path));
	cr_expect_not(exists(MB_BINARY_DIR "/no-such-dir-npy/x.npy.tmp"));
}

Test(npy, writer_failing_mid_write_keeps_the_old_file_and_leaves_no_tmp)
{
	char dir[512], path[600], tmp[700];
	static float big[8192];
	float small[2] = {1, 2};
	struct rlimit rl = {4096, 4096};
	mb_npy a;
	mb_error err;

	scratch_dir(dir, sizeof(dir), "full");
	snprintf(path, sizeof(path), "%s/h.npy", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	cr_assert_eq(mb_npy_write(path, MB_DTYPE_F32, 1, (int64_t[]){2}, small, &err), 0, "%s",
		     err.msg);
	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	cr_expect_eq(mb_npy_write(path, MB_DTYPE_F32, 1, (int64_t[]){8192}, big, &err), MB_EIO);
	cr_expect(strstr(err.msg, "File too large") != NULL, "%s", err.msg);
	cr_expect_not(exists(tmp), "%s was left behind", tmp);
	cr_assert_eq(mb_npy_read(&a, path, &err), 0, "old file damaged: %s", err.msg);
	cr_expect_eq(a.numel, 2);
	cr_expect_eq(((float *)a.data)[1], 2.0f);
	mb_npy_dispose(&a);
	unlink(path);
	rmdir(dir);
}

Test(npy, writer_rejects_bad_arguments_without_creating_a_file)
{
	const char *path = MB_BINARY_DIR "/never-written.npy";
	float x = 0;
	mb_error err;

	cr_expect_eq(mb_npy_write(path, MB_DTYPE_BF16, 1, (int64_t[]){1}, &x, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "dtype BF16 has no .npy equivalent") != NULL, "%s", err.msg);
	cr_expect_eq(mb_npy_write(path, MB_DTYPE_F32, 2, (int64_t[]){1, -3}, &x, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "shape[1] is negative") != NULL, "%s", err.msg);
	cr_expect_eq(mb_npy_write(path, MB_DTYPE_F32, 9, (int64_t[]){1}, &x, &err), MB_EINVALID);
	cr_expect_eq(mb_npy_write(path, MB_DTYPE_F32, 1, (int64_t[]){4}, NULL, &err), MB_EINVALID);
	cr_expect_not(exists(path));
}

/* --- rejections ---------------------------------------------------------- */

Test(npy, rejects_fortran_order_big_endian_and_complex_files_numpy_wrote)
{
	mb_npy a;
	mb_error err;

	cr_expect_eq(mb_npy_read(&a, FIX "f32_fortran_2x3.npy", &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "f32_fortran_2x3.npy: header: fortran_order: Fortran-order") !=
			  NULL,
		  "%s", err.msg);
	cr_expect_eq(mb_npy_read(&a, FIX "f32_bigendian_2x3.npy", &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "f32_bigendian_2x3.npy: header: descr: '>f4' is big-endian") !=
			  NULL,
		  "%s", err.msg);
	cr_expect_eq(mb_npy_read(&a, FIX "c64_2.npy", &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "c64_2.npy: header: descr: unsupported dtype '<c8'") != NULL, "%s",
		  err.msg);
	cr_expect_null(a.data);
}

Test(npy, read_names_a_missing_file)
{
	mb_npy a;
	mb_error err;
	cr_expect_eq(mb_npy_read(&a, FIX "absent.npy", &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "absent.npy: No such file") != NULL, "%s", err.msg);
}

/* Builds a .npy image: magic, version major.0, header length (or hlen when
 * nonzero), header text, data_len zero bytes. */
static unsigned char *image(int major, const char *header, size_t data_len, uint32_t hlen,
			    size_t *len)
{
	size_t h = strlen(header), pre = major == 1 ? 10 : 12;
	unsigned char *b = calloc(1, pre + h + data_len + 1);
	uint32_t n = hlen ? hlen : (uint32_t)h;
	memcpy(b, "\x93NUMPY", 6);
	b[6] = (unsigned char)major;
	for (size_t i = 0; i < pre - 8; i++)
		b[8 + i] = (unsigned char)(n >> (8 * i));
	memcpy(b + pre, header, h);
	*len = pre + h + data_len;
	return b;
}

#define H(shape) "{'descr': '<f4', 'fortran_order': False, 'shape': " shape ", }\n"

typedef struct npy_bad {
	int major;
	char header[200];
	size_t data_len;
	uint32_t hlen;
	char want[120]; /* substring after "bad.npy: " */
} npy_bad;

static npy_bad npy_bad_cases[] = {
	{4, H("(2,)"), 8, 0, "version: unsupported format version 4.0"},
	{1, H("(2,)"), 8, 500, "header length 500 is past the end of the file"},
	{1, H("(2, 3)"), 20, 0, "data: 20 bytes after the header, but shape [2, 3] of <f4 needs 24 (truncated"},
	{1, H("(2, 3)"), 28, 0, "data: 4 trailing bytes after the 24 bytes that shape [2, 3] of <f4 needs"},
	{1, H("[2, 3]"), 24, 0, "shape: expected a tuple, got a list"},
	{1, H("(2)"), 8, 0, "shape: a one-element tuple needs a trailing comma"},
	{1, H("(2, -3)"), 0, 0, "shape: negative dimension"},
	{1, H("(1, 1, 1, 1, 1, 1, 1, 1, 1)"), 4, 0, "shape: more than 8 dimensions"},
	{1, H("(99999999999999999999,)"), 0, 0, "shape: dimension does not fit in 64 bits"},
	{1, H("(4294967296, 4294967296, 4)"), 0, 0, "shape: element count overflows"},
	{1, H("(2 3)"), 0, 0, "shape: expected ',' or ')'"},
	{1, H("(2, x)"), 0, 0, "shape: expected an integer"},
	{1, "{'descr': '<f4', 'fortran_order': False}\n", 4, 0, "header: shape: required key is missing"},
	{1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}\n", 4, 0,
	 "unknown key (expected descr, fortran_order, shape)"},
	{1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}\n", 4, 0,
	 "duplicate key"},
	{1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}\n", 4, 0,
	 "descr: structured dtypes are not supported"},
	{1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}\n", 4, 0,
	 "expected True or False"},
	{1, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,)}\n", 4, 0,
	 "fortran_order: expected True or False"},
	{1, "{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}\n", 4, 0,
	 "byte 27: expected ',' or '}' after a value"},
	{1, "{'descr' '<f4', 'fortran_order': False, 'shape': (1,)}\n", 4, 0,
	 "byte 19: expected ':' after a key"},
	{1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x\n", 4, 0,
	 "unexpected text after the header dict"},
	{1, "{'descr': '<f4' 'fortran_order': False, 'shape': (1,)}\n", 4, 0,
	 "expected ',' or '}' after a value"},
	{1, "'descr': '<f4'\n", 4, 0, "expected '{' opening the header dict"},
	{1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)\n", 4, 0,
	 "byte 65: expected ',' or '}' after a value"},
	{1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 7: 1}\n", 4, 0,
	 "expected a quoted string"},
	{1, "{'descr': '<U8', 'fortran_order': False, 'shape': (1,)}\n", 32, 0,
	 "descr: unsupported dtype '<U8'"},
	{1, "{'descr': '<f\\x34', 'fortran_order': False, 'shape': (1,)}\n", 4, 0,
	 "escape sequences in strings are not supported"},
	{1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'desc", 4, 0,
	 "unterminated string"},
};

ParameterizedTestParameters(npy, rejects_malformed_headers_with_a_message_naming_the_field)
{
	return cr_make_param_array(npy_bad, npy_bad_cases,
				   sizeof(npy_bad_cases) / sizeof(npy_bad_cases[0]));
}

ParameterizedTest(npy_bad *c, npy, rejects_malformed_headers_with_a_message_naming_the_field)
{
	mb_npy a;
	mb_error err;
	size_t len;
	unsigned char *b = image(c->major, c->header, c->data_len, c->hlen, &len);

	cr_expect_eq(mb_npy_read_mem(&a, b, len, "bad.npy", &err), MB_EINVALID, "accepted: %s",
		     c->header);
	cr_expect_null(a.data);
	cr_expect(strncmp(err.msg, "bad.npy: ", 9) == 0, "%s", err.msg);
	cr_expect(strstr(err.msg, c->want) != NULL, "got: %s\nwant: %s", err.msg, c->want);
	cr_expect_null(strchr(err.msg, '\n'));
	free(b);
}

Test(npy, rejects_bad_magic_and_a_cut_preamble)
{
	mb_npy a;
	mb_error err;

	cr_expect_eq(mb_npy_read_mem(&a, "PK\x03\x04 not npy", 14, "z.npy", &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "z.npy: bad magic: not a .npy file") != NULL, "%s", err.msg);
	cr_expect_eq(mb_npy_read_mem(&a, "\x93NUMPY\x02\x00\x10\x00", 10, "v2.npy", &err),
		     MB_EINVALID);
	cr_expect(strstr(err.msg, "v2.npy: header length: file ends at byte 10 inside the 12-byte "
				  "preamble") != NULL,
		  "%s", err.msg);
}

Test(npy, accepts_python_literal_variants)
{
	mb_npy a;
	mb_error err;
	size_t len;
	/* double quotes, any key order, L suffixes, no trailing comma, no newline */
	unsigned char *b = image(2, "{\"shape\": (2L, 1L), \"fortran_order\": False, "
				    "\"descr\": \"<i4\"}",
				 8, 0, &len);
	cr_assert_eq(mb_npy_read_mem(&a, b, len, "v.npy", &err), 0, "%s", err.msg);
	cr_expect_eq(a.dtype, MB_DTYPE_I32);
	cr_expect_eq(a.ndim, 2);
	cr_expect_eq(a.shape[0], 2);
	mb_npy_dispose(&a);
	free(b);
}

Test(npy, every_truncation_of_a_valid_file_is_rejected_cleanly)
{
	unsigned char *buf;
	size_t len;
	mb_error err;

	cr_assert_eq(mb_file_read_all(&buf, &len, FIX "f32_2x3x4.npy", &err), 0, "%s", err.msg);
	for (size_t n = 0; n < len; n++) {
		mb_npy a;
		unsigned char *copy = malloc(n + 1);
		memcpy(copy, buf, n);
		cr_expect_eq(mb_npy_read_mem(&a, copy, n, "cut.npy", &err), MB_EINVALID, "%zu", n);
		cr_expect(strncmp(err.msg, "cut.npy: ", 9) == 0, "%zu: %s", n, err.msg);
		free(copy);
	}
	free(buf);
}
