/*
 * safetensors: golden reads of files made by the independent writer in
 * tests/fixtures/util/gen_fixtures.py, byte-exact writes, every rejection
 * with its message, and writes that fail without leaving a file behind.
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
#include <mechbench/safetensors.h>

#define FIX MB_SOURCE_DIR "/tests/fixtures/util/safetensors/"

static int exists(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0;
}

/* A fresh directory under the build tree for files this test writes. */
static void scratch_dir(char *buf, size_t cap, const char *name)
{
	snprintf(buf, cap, "%s/test-scratch-st-%s-%ld", MB_BINARY_DIR, name, (long)getpid());
	cr_assert(mkdir(buf, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", buf, strerror(errno));
}

/* Compares a tensor's float32 conversion with the expected .npy, exactly;
 * prints the max difference either way. */
static void check_tensor(const mb_safetensors *st, const char *name, mb_dtype dtype, int ndim,
			 const int64_t *shape)
{
	char path[512];
	mb_npy want;
	mb_error err;
	const mb_st_tensor *t = mb_safetensors_find(st, name);
	float *got;
	double maxdiff = 0;
	size_t mismatched = 0;

	cr_assert_not_null(t, "tensor %s missing", name);
	cr_expect_eq(t->dtype, dtype, "%s: dtype %s", name, mb_dtype_name(t->dtype));
	cr_assert_eq(t->ndim, ndim, "%s: ndim %d", name, t->ndim);
	for (int i = 0; i < ndim; i++)
		cr_expect_eq(t->shape[i], shape[i], "%s: shape[%d] = %lld", name, i,
			     (long long)t->shape[i]);
	snprintf(path, sizeof(path), FIX "mixed_expected_%s.npy", name);
	cr_assert_eq(mb_npy_read(&want, path, &err), 0, "%s", err.msg);
	cr_assert_eq(want.numel, t->numel, "%s: numel %zu vs expected %zu", name, t->numel,
		     want.numel);
	got = malloc(t->numel * sizeof(float) + 1);
	cr_assert_eq(mb_safetensors_read_f32(st, t, got, 0, &err), 0, "%s", err.msg);
	for (size_t i = 0; i < t->numel; i++) {
		float w = ((const float *)want.data)[i];
		uint32_t gb, wb;
		memcpy(&gb, &got[i], 4);
		memcpy(&wb, &w, 4);
		if (isnan(w) ? !isnan(got[i]) : gb != wb)
			mismatched++;
		if (isfinite(w) && isfinite(got[i]) && fabs((double)got[i] - w) > maxdiff)
			maxdiff = fabs((double)got[i] - w);
	}
	cr_log_info("%s %s: %zu elements, max |diff| %g, %zu bit mismatches", name,
		    mb_dtype_name(t->dtype), t->numel, maxdiff, mismatched);
	cr_expect_eq(mismatched, 0, "%s: %zu of %zu elements differ (max |diff| %g)", name,
		     mismatched, t->numel, maxdiff);
	free(got);
	mb_npy_dispose(&want);
}

static void check_mixed(const char *file)
{
	mb_safetensors *st;
	mb_error err;

	cr_assert_eq(mb_safetensors_open(&st, file, &err), 0, "%s", err.msg);
	cr_expect_eq(mb_safetensors_count(st), 9);
	cr_expect_str_eq(mb_safetensors_metadata(st, "format"), "pt");
	cr_expect_str_eq(mb_safetensors_metadata(st, "source"), "gen_fixtures.py");
	cr_expect_null(mb_safetensors_metadata(st, "absent"));
	cr_expect_eq(mb_safetensors_metadata_count(st), 2);
	check_tensor(st, "attn.w", MB_DTYPE_F32, 2, (int64_t[]){2, 3});
	check_tensor(st, "attn.h", MB_DTYPE_F16, 1, (int64_t[]){7});
	check_tensor(st, "mlp.b", MB_DTYPE_BF16, 2, (int64_t[]){2, 2});
	check_tensor(st, "scalar", MB_DTYPE_F32, 0, NULL);
	check_tensor(st, "empty", MB_DTYPE_F32, 2, (int64_t[]){0, 3});
	check_tensor(st, "d64", MB_DTYPE_F64, 1, (int64_t[]){3});
	check_tensor(st, "i32", MB_DTYPE_I32, 2, (int64_t[]){2, 2});
	check_tensor(st, "i64", MB_DTYPE_I64, 1, (int64_t[]){2});
	check_tensor(st, "bf16_table", MB_DTYPE_BF16, 1, (int64_t[]){2560});
	cr_expect_null(mb_safetensors_find(st, "attn"));
	cr_expect_null(mb_safetensors_find(st, "zzz"));
	mb_safetensors_free(st);
}

Test(safetensors, reads_every_dtype_from_an_independent_writer_exactly)
{
	check_mixed(FIX "mixed.safetensors");
}

Test(safetensors, reads_a_file_with_an_unpadded_header_and_unaligned_data)
{
	check_mixed(FIX "mixed_unaligned.safetensors");
}

Test(safetensors, lists_tensors_in_data_offset_order)
{
	mb_safetensors *st;
	mb_error err;
	size_t prev = 0;

	cr_assert_eq(mb_safetensors_open(&st, FIX "mixed_unaligned.safetensors", &err), 0, "%s",
		     err.msg);
	/* reverse name order in the file: "scalar" is written first */
	cr_expect_str_eq(mb_safetensors_at(st, 0)->name, "scalar");
	for (size_t i = 0; i < mb_safetensors_count(st); i++) {
		const mb_st_tensor *t = mb_safetensors_at(st, i);
		cr_expect_geq(t->begin, prev, "tensor %zu (%s) begins before its predecessor", i,
			      t->name);
		prev = t->begin;
		cr_expect_eq(mb_safetensors_find(st, t->name), t);
	}
	cr_expect_null(mb_safetensors_at(st, mb_safetensors_count(st)));
	mb_safetensors_free(st);
}

/* --- writer -------------------------------------------------------------- */

/* The tensor set gen_fixtures.py wrote as writer_expected.safetensors. */
static float bw[6], ab[3], c0 = 0.75f;
static mb_st_entry fixed_entries[4];
static const char *const fixed_meta[] = {"mechbench", "test", "format", "pt", NULL};

static void fixed_set(void)
{
	for (int i = 0; i < 6; i++)
		bw[i] = 0.25f * (float)i - 0.5f;
	for (int i = 0; i < 3; i++)
		ab[i] = 1.0f + (float)i / 8.0f;
	/* deliberately not in name order: the writer sorts */
	fixed_entries[0] = (mb_st_entry){"b.weight", 2, {2, 3}, bw};
	fixed_entries[1] = (mb_st_entry){"d.empty", 2, {0, 2}, NULL};
	fixed_entries[2] = (mb_st_entry){"c", 0, {0}, &c0};
	fixed_entries[3] = (mb_st_entry){"a.bias", 1, {3}, ab};
}

Test(safetensors, writer_output_matches_the_independent_writer_byte_for_byte)
{
	char dir[512], path[600];
	unsigned char *got, *want;
	size_t glen, wlen;
	mb_error err;

	fixed_set();
	scratch_dir(dir, sizeof(dir), "bytes");
	snprintf(path, sizeof(path), "%s/out.safetensors", dir);
	cr_assert_eq(mb_safetensors_write_f32(path, fixed_entries, 4, fixed_meta, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(mb_file_read_all(&got, &glen, path, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_file_read_all(&want, &wlen, FIX "writer_expected.safetensors", &err), 0,
		     "%s", err.msg);
	cr_expect_eq(glen, wlen, "length %zu, expected %zu", glen, wlen);
	for (size_t i = 0; i < glen && i < wlen; i++)
		if (got[i] != want[i]) {
			cr_expect_fail("first difference at byte %zu: 0x%02x, expected 0x%02x", i,
				       got[i], want[i]);
			break;
		}
	cr_expect_eq(glen % 8, 0);
	cr_expect_not(exists(MB_BINARY_DIR "/out.safetensors.tmp"));
	free(got);
	free(want);
	unlink(path);
	rmdir(dir);
}

Test(safetensors, writer_output_reads_back_identically)
{
	char dir[512], path[600];
	mb_safetensors *st;
	mb_error err;
	float got[6];

	fixed_set();
	scratch_dir(dir, sizeof(dir), "roundtrip");
	snprintf(path, sizeof(path), "%s/rt.safetensors", dir);
	cr_assert_eq(mb_safetensors_write_f32(path, fixed_entries, 4, NULL, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(mb_safetensors_open(&st, path, &err), 0, "%s", err.msg);
	cr_expect_eq(mb_safetensors_count(st), 4);
	cr_expect_eq(mb_safetensors_metadata_count(st), 0);
	const mb_st_tensor *t = mb_safetensors_find(st, "b.weight");
	cr_assert_not_null(t);
	cr_expect_eq(t->ndim, 2);
	cr_expect_eq(t->shape[1], 3);
	cr_assert_eq(mb_safetensors_read_f32(st, t, got, 1, &err), 0, "%s", err.msg);
	cr_expect_arr_eq(got, bw, sizeof(bw));
	/* the data section is 8-byte aligned: mappable as float directly */
	cr_expect_eq(((uintptr_t)mb_safetensors_data(st, mb_safetensors_at(st, 0))) % 8, 0);
	t = mb_safetensors_find(st, "c");
	cr_assert_not_null(t);
	cr_expect_eq(t->ndim, 0);
	cr_expect_eq(t->numel, 1);
	t = mb_safetensors_find(st, "d.empty");
	cr_assert_not_null(t);
	cr_expect_eq(t->numel, 0);
	cr_expect_eq(t->begin, t->end);
	mb_safetensors_free(st);
	unlink(path);
	rmdir(dir);
}

Test(safetensors, writer_into_a_missing_directory_fails_and_leaves_nothing)
{
	const char *path = MB_BINARY_DIR "/no-such-dir-st/x.safetensors";
	mb_error err;

	fixed_set();
	cr_expect_lt(mb_safetensors_write_f32(path, fixed_entries, 4, NULL, &err), 0);
	cr_expect(strstr(err.msg, path) != NULL, "%s", err.msg);
	cr_expect_not(exists(path));
	cr_expect_not(exists(MB_BINARY_DIR "/no-such-dir-st/x.safetensors.tmp"));
}

/* A file size limit makes write() fail with EFBIG part way, as a full disk
 * would with ENOSPC: the old file must survive and no .tmp may remain.
 * Criterion runs each test in its own process, so the limit stays here. */
Test(safetensors, writer_failing_mid_write_keeps_the_old_file_and_leaves_no_tmp)
{
	char dir[512], path[600], tmp[700];
	static float big[4096];
	mb_st_entry e = {"big", 1, {4096}, big};
	struct rlimit rl = {4096, 4096};
	unsigned char *old, *now;
	size_t oldlen, nowlen;
	mb_error err;

	fixed_set();
	scratch_dir(dir, sizeof(dir), "full");
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	cr_assert_eq(mb_safetensors_write_f32(path, fixed_entries, 4, NULL, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(mb_file_read_all(&old, &oldlen, path, &err), 0, "%s", err.msg);
	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	cr_expect_eq(mb_safetensors_write_f32(path, &e, 1, NULL, &err), MB_EIO);
	cr_log_info("disk-full message: %s", err.msg);
	cr_expect(strstr(err.msg, path) != NULL, "%s", err.msg);
	cr_expect(strstr(err.msg, "too large") != NULL, "%s", err.msg);
	cr_expect_not(exists(tmp), "%s was left behind", tmp);
	cr_assert_eq(mb_file_read_all(&now, &nowlen, path, &err), 0, "%s", err.msg);
	cr_expect(nowlen == oldlen && memcmp(now, old, oldlen) == 0,
		  "old file was damaged: %zu bytes, was %zu", nowlen, oldlen);
	free(old);
	free(now);
	unlink(path);
	rmdir(dir);
}

Test(safetensors, writer_rejects_bad_entries_before_touching_the_disk)
{
	const char *path = MB_BINARY_DIR "/never-written.safetensors";
	float x = 1;
	mb_error err;
	struct {
		mb_st_entry e[2];
		size_t n;
		const char *want;
	} cases[] = {
		{{{"w", 1, {1}, &x}, {"w", 1, {1}, &x}}, 2, "tensor 'w': duplicate name"},
		{{{"__metadata__", 1, {1}, &x}}, 1, "tensor '__metadata__': the name is reserved"},
		{{{"w", 2, {2, -1}, &x}}, 1, "tensor 'w': shape[1] is negative"},
		{{{"w", 9, {1}, &x}}, 1, "tensor 'w': ndim 9 is outside"},
		{{{"w", 1, {3}, NULL}}, 1, "tensor 'w': data is NULL"},
		{{{"w", 2, {INT64_MAX, 4}, &x}}, 1, "tensor 'w': shape overflows"},
		{{{"\xff\xfe", 1, {1}, &x}}, 1, "tensor '\\xff\\xfe': name is not valid UTF-8"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_expect_eq(mb_safetensors_write_f32(path, cases[i].e, cases[i].n, NULL, &err),
			     MB_EINVALID, "case %zu", i);
		cr_expect(strstr(err.msg, cases[i].want) != NULL, "case %zu: %s", i, err.msg);
		cr_expect(strncmp(err.msg, path, strlen(path)) == 0, "case %zu: %s", i, err.msg);
	}
	const char *dup_meta[] = {"k", "a", "k", "b", NULL};
	cr_expect_eq(mb_safetensors_write_f32(path, cases[1].e, 0, dup_meta, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "__metadata__: duplicate key 'k'") != NULL, "%s", err.msg);
	cr_expect_not(exists(path));
	char tmp[600];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	cr_expect_not(exists(tmp));
}

/* --- rejections ---------------------------------------------------------- */

/* Builds a file image: 8-byte length, header text, data_len bytes of data.
 * hlen_override replaces the length field when nonzero. */
static unsigned char *image(const char *header, size_t data_len, uint64_t hlen_override,
			    size_t *len)
{
	size_t h = strlen(header);
	unsigned char *b = calloc(1, 8 + h + data_len + 1);
	uint64_t n = hlen_override ? hlen_override : h;
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(n >> (8 * i));
	memcpy(b + 8, header, h);
	*len = 8 + h + data_len;
	return b;
}

/* Plain arrays, no pointers: Criterion runs each parameter in a fresh
 * process of the (position-independent) test binary, where pointers into the
 * parent's data would be meaningless. */
typedef struct bad_case {
	char header[256];
	size_t data_len;
	uint64_t hlen;
	char want[128]; /* substring of the message, after "bad.safetensors: " */
} bad_case;

static bad_case bad_cases[] = {
	{"{}", 0, 11, "header length 11 is past the end of the file (2 bytes follow the length)"},
	{"{}", 0, 100000001, "header length 100000001 exceeds the limit of 100000000 bytes"},
	{"{\"w\": {\"dtype\": \"F32\", ", 0, 0, "header: invalid JSON at header byte 23: "},
	{"", 0, 0, "header: invalid JSON"},
	{"[1, 2]", 0, 0, "header: expected a JSON object, got an array"},
	{"{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, 0,
	 "tensor 'w': dtype: unsupported dtype 'F8_E4M3'"},
	{"{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0,
	 "tensor 'w': dtype: expected a string, got an integer"},
	{"{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 16, 0,
	 "tensor 'w': data_offsets [0, 12] span 12 bytes but shape [2, 2] of F32 is 16 bytes"},
	{"{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12, 0,
	 "tensor 'w': data_offsets [0, 16]: end is past the data section of 12 bytes"},
	{"{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 12, 0,
	 "tensor 'w': data_offsets [8, 4]: begin is after end"},
	{"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 12, 0,
	 "tensor 'w': data_offsets[0]: -4 is negative"},
	{"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 12, 0,
	 "tensor 'w': data_offsets: expected [begin, end], got an array of the wrong length"},
	{"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0, 4.0]}}", 12, 0,
	 "tensor 'w': data_offsets[1]: expected an integer, got a real number"},
	{"{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,4]}}", 12, 0,
	 "tensor 'w': shape[1]: -1 is negative"},
	{"{\"w\":{\"dtype\":\"F32\",\"shape\":\"4\",\"data_offsets\":[0,16]}}", 16, 0,
	 "tensor 'w': shape: expected an array, got a string"},
	{"{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, 0,
	 "tensor 'w': shape: 9 dimensions, at most 8 are supported"},
	{"{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
	 0, "tensor 'w': shape: element count overflows"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
	 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
	 12, 0, "tensors 'a' [0, 8] and 'b' [4, 12] overlap"},
	{"{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
	 "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
	 "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]}}",
	 20, 0, "tensors 'a' [0, 16] and 'b' [4, 8] overlap"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
	 "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
	 8, 0, "tensors 'a' [0, 8] and 'z' [4, 4] overlap"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
	 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
	 8, 0, "tensors 'a' [0, 8] and 'b' [0, 8] overlap"},
	{"{\"__metadata__\":{\"format\":1}}", 0, 0,
	 "__metadata__: key 'format': expected a string value, got an integer"},
	{"{\"__metadata__\":[\"format\"]}", 0, 0,
	 "__metadata__: expected an object of strings, got an array"},
	{"{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, 0,
	 "tensor 'w': data_offsets: required field is missing"},
	{"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4, 0,
	 "tensor 'w': unknown field 'extra'"},
	{"{\"w\":[1,2]}", 0, 0, "tensor 'w': expected an object, got an array"},
	{"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	 "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
	 4, 0, "header: invalid JSON"},
	{"{\"bad\\u0001name\":7}", 0, 0, "tensor 'bad\\x01name': expected an object"},
};

ParameterizedTestParameters(safetensors, rejects_malformed_headers_with_a_message_naming_the_field)
{
	return cr_make_param_array(bad_case, bad_cases, sizeof(bad_cases) / sizeof(bad_cases[0]));
}

ParameterizedTest(bad_case *c, safetensors, rejects_malformed_headers_with_a_message_naming_the_field)
{
	mb_safetensors *st = (mb_safetensors *)1;
	mb_error err;
	size_t len;
	unsigned char *b = image(c->header, c->data_len, c->hlen, &len);
	int rc = mb_safetensors_open_mem(&st, b, len, "bad.safetensors", &err);

	cr_expect_lt(rc, 0, "accepted: %s", c->header);
	cr_expect_null(st);
	cr_expect(strncmp(err.msg, "bad.safetensors: ", 17) == 0, "%s", err.msg);
	cr_expect(strstr(err.msg, c->want) != NULL, "got: %s\nwant: %s", err.msg, c->want);
	cr_expect_null(strchr(err.msg, '\n'));
	free(b);
}

Test(safetensors, rejects_files_shorter_than_the_length_field)
{
	mb_safetensors *st;
	mb_error err;
	cr_expect_eq(mb_safetensors_open_mem(&st, "\x02\0\0", 3, "tiny.safetensors", &err),
		     MB_EINVALID);
	cr_expect_str_eq(err.msg,
			 "tiny.safetensors: file is 3 bytes, too short for the 8-byte header length");
}

Test(safetensors, rejects_header_longer_than_file)
{
	mb_safetensors *st;
	mb_error err;
	size_t len;
	unsigned char *b = image("{}", 0, 1000, &len);
	cr_expect_eq(mb_safetensors_open_mem(&st, b, len, "m.safetensors", &err), MB_EINVALID);
	cr_expect_str_eq(err.msg, "m.safetensors: header length 1000 is past the end of the file "
				  "(2 bytes follow the length)");
	free(b);
}

Test(safetensors, every_truncation_of_a_valid_file_is_rejected_cleanly)
{
	unsigned char *buf;
	size_t len, accepted = 0;
	mb_error err;

	cr_assert_eq(mb_file_read_all(&buf, &len, FIX "mixed.safetensors", &err), 0, "%s", err.msg);
	for (size_t n = 0; n < len; n++) {
		mb_safetensors *st = NULL;
		unsigned char *copy = malloc(n + 1); /* exact size: ASan sees overreads */
		memcpy(copy, buf, n);
		if (mb_safetensors_open_mem(&st, copy, n, "cut.safetensors", &err) == 0) {
			accepted++;
			mb_safetensors_free(st);
		} else {
			cr_expect(strncmp(err.msg, "cut.safetensors: ", 17) == 0, "%zu: %s", n,
				  err.msg);
		}
		free(copy);
	}
	/* The last tensor (BF16, 2 bytes each) ends the file: every cut either
	 * loses header bytes or puts some tensor's end past the data section. */
	cr_expect_eq(accepted, 0, "%zu truncated images were accepted", accepted);
	free(buf);
}

Test(safetensors, open_names_a_missing_file_and_a_directory)
{
	mb_safetensors *st;
	mb_error err;
	cr_expect_eq(mb_safetensors_open(&st, FIX "absent.safetensors", &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "absent.safetensors: No such file") != NULL, "%s", err.msg);
	cr_expect_eq(mb_safetensors_open(&st, FIX, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "not a regular file") != NULL, "%s", err.msg);
}

Test(safetensors, open_rejects_an_empty_file)
{
	char dir[512], path[600];
	mb_safetensors *st;
	mb_error err;
	FILE *f;

	scratch_dir(dir, sizeof(dir), "empty");
	snprintf(path, sizeof(path), "%s/empty.safetensors", dir);
	f = fopen(path, "wb");
	cr_assert_not_null(f);
	fclose(f);
	cr_expect_eq(mb_safetensors_open(&st, path, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "file is 0 bytes") != NULL, "%s", err.msg);
	cr_expect(strncmp(err.msg, path, strlen(path)) == 0, "%s", err.msg);
	unlink(path);
	rmdir(dir);
}

/* --- non-finite values --------------------------------------------------- */

Test(safetensors, read_f32_rejects_nan_and_inf_when_asked_naming_tensor_and_index)
{
	mb_safetensors *st;
	mb_error err;
	float buf[5];

	cr_assert_eq(mb_safetensors_open(&st, FIX "nonfinite.safetensors", &err), 0, "%s", err.msg);
	const mb_st_tensor *t = mb_safetensors_find(st, "has_nan");
	cr_assert_not_null(t);
	cr_expect_eq(mb_safetensors_read_f32(st, t, buf, 1, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "nonfinite.safetensors: tensor 'has_nan': element 3 is NaN") !=
			  NULL,
		  "%s", err.msg);
	/* without the check, NaN passes through */
	cr_expect_eq(mb_safetensors_read_f32(st, t, buf, 0, &err), 0);
	cr_expect(isnan(buf[3]));
	cr_expect_eq(buf[4], 4.0f);
	t = mb_safetensors_find(st, "has_inf");
	cr_assert_not_null(t);
	cr_expect_eq(mb_safetensors_read_f32(st, t, buf, 1, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "tensor 'has_inf': element 1 is +Inf") != NULL, "%s", err.msg);
	mb_safetensors_free(st);
}

Test(safetensors, read_f32_refuses_bool_tensors)
{
	const char *h = "{\"m\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}}";
	mb_safetensors *st;
	mb_error err;
	size_t len;
	float out[2];
	unsigned char *b = image(h, 2, 0, &len);

	cr_assert_eq(mb_safetensors_open_mem(&st, b, len, "b.safetensors", &err), 0, "%s", err.msg);
	cr_expect_eq(mb_safetensors_at(st, 0)->dtype, MB_DTYPE_BOOL);
	cr_expect_eq(mb_safetensors_read_f32(st, mb_safetensors_at(st, 0), out, 0, &err),
		     MB_EINVALID);
	cr_expect(strstr(err.msg, "tensor 'm': dtype BOOL cannot be read as float32") != NULL, "%s",
		  err.msg);
	mb_safetensors_free(st);
	free(b);
}

Test(safetensors, tolerates_gaps_and_trailing_bytes_in_the_data_section)
{
	const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
			"\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
	mb_safetensors *st;
	mb_error err;
	size_t len;
	unsigned char *b = image(h, 20, 0, &len);

	cr_assert_eq(mb_safetensors_open_mem(&st, b, len, "gap.safetensors", &err), 0, "%s",
		     err.msg);
	cr_expect_str_eq(mb_safetensors_at(st, 0)->name, "b");
	cr_expect_str_eq(mb_safetensors_at(st, 1)->name, "a");
	mb_safetensors_free(st);
	free(b);
}
