/* SHA-256 against FIPS 180-2 examples and the file path against the buffer path. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include <mechbench/sha256.h>

Test(sha256, matches_fips_180_2_examples)
{
	char hex[MB_SHA256_HEX_LEN];
	mb_sha256_hex_buf(hex, "abc", 3);
	cr_expect_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	mb_sha256_hex_buf(hex, "", 0);
	cr_expect_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	mb_sha256_hex_buf(hex, two, strlen(two));
	cr_expect_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

Test(sha256, file_digest_equals_buffer_digest)
{
	char path[] = "/tmp/mb_sha256_XXXXXX";
	char a[MB_SHA256_HEX_LEN], b[MB_SHA256_HEX_LEN];
	static unsigned char data[200000];
	mb_error err;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 131 + 7);
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	FILE *f = fdopen(fd, "wb");
	fwrite(data, 1, sizeof(data), f);
	fclose(f);
	cr_assert_eq(mb_sha256_hex_file(a, path, &err), 0, "%s", err.msg);
	mb_sha256_hex_buf(b, data, sizeof(data));
	cr_expect_str_eq(a, b);
	remove(path);
}

Test(sha256, missing_file_is_enotfound_naming_the_path)
{
	char hex[MB_SHA256_HEX_LEN];
	mb_error err;
	cr_expect_eq(mb_sha256_hex_file(hex, "/nonexistent/weights.bin", &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "/nonexistent/weights.bin") != NULL, "%s", err.msg);
}
