/* Arena: alignment, capacity, marks; errors and checked parsers. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include <mechbench/arena.h>
#include <mechbench/error.h>
#include <mechbench/parse.h>

Test(arena, allocations_are_aligned_and_bounded)
{
	mb_arena a;
	mb_error err;
	cr_assert_eq(mb_arena_init(&a, 1000, &err), 0);
	void *p = mb_arena_alloc(&a, 3), *q = mb_arena_alloc(&a, 100);
	cr_expect(((uintptr_t)p & 63) == 0 && ((uintptr_t)q & 63) == 0);
	cr_expect((char *)q - (char *)p == 64);
	size_t m = mb_arena_mark(&a);
	cr_expect_null(mb_arena_alloc(&a, 5000));
	cr_expect_null(mb_arena_alloc_err(&a, 5000, "scratch", &err));
	cr_expect_eq(err.code, MB_ENOMEM);
	cr_expect(strstr(err.msg, "scratch needs 5000 bytes"), "%s", err.msg);
	void *r = mb_arena_alloc(&a, 64);
	mb_arena_release(&a, m);
	cr_expect_eq(mb_arena_alloc(&a, 64), r);
	mb_arena_reset(&a);
	cr_expect_eq(mb_arena_alloc(&a, 1), p);
	cr_expect_geq(a.peak, 64 + 100);
	mb_arena_dispose(&a);
}

Test(error, messages_are_one_line_and_prefixable)
{
	mb_error err;
	mb_error_clear(&err);
	cr_expect_eq(mb_error_set(&err, MB_EINVALID, "tensor %s\nbad", "wte"), MB_EINVALID);
	cr_expect_str_eq(err.msg, "tensor wte bad");
	cr_expect_eq(mb_error_prefix(&err, "%s", "model.safetensors"), MB_EINVALID);
	cr_expect_str_eq(err.msg, "model.safetensors: tensor wte bad");
	cr_expect_eq(mb_error_set(NULL, MB_EIO, "ignored"), MB_EIO);
}

Test(parse, integers_and_numbers_are_checked)
{
	int64_t v;
	double d;
	mb_error err;
	cr_expect_eq(mb_parse_i64("42", 0, 100, &v, "--n", &err), 0);
	cr_expect_eq(v, 42);
	cr_expect_eq(mb_parse_i64("42x", 0, 100, &v, "--n", &err), MB_EINVALID);
	cr_expect_str_eq(err.msg, "--n: '42x' is not an integer");
	cr_expect_eq(mb_parse_i64("101", 0, 100, &v, "--n", &err), MB_EINVALID);
	cr_expect_eq(mb_parse_i64("", 0, 100, &v, "--n", &err), MB_EINVALID);
	cr_expect_eq(mb_parse_i64("99999999999999999999", INT64_MIN, INT64_MAX, &v, "--n", &err),
		     MB_EINVALID);
	cr_expect_eq(mb_parse_f64("0.05", &d, "--alpha", &err), 0);
	cr_expect_eq(d, 0.05);
	cr_expect_eq(mb_parse_f64("nan", &d, "--alpha", &err), MB_EINVALID);
	cr_expect_eq(mb_parse_f64("1e999", &d, "--alpha", &err), MB_EINVALID);
	int64_t *list;
	int n;
	cr_expect_eq(mb_parse_i64_list("1,2,3", 0, 10, &list, &n, "--tokens", &err), 0);
	cr_expect_eq(n, 3);
	cr_expect_eq(list[2], 3);
	free(list);
	cr_expect_eq(mb_parse_i64_list("1,,3", 0, 10, &list, &n, "--tokens", &err), MB_EINVALID);
	cr_expect_eq(mb_parse_i64_list("1,2,", 0, 10, &list, &n, "--tokens", &err), MB_EINVALID);
}
