/* sha256.c: SHA-256 through libcrypto's EVP interface. */
#include <mechbench/sha256.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

void mb_sha256(unsigned char out[MB_SHA256_LEN], const void *buf, size_t len)
{
	unsigned int n = 0;
	/* EVP_Digest cannot fail for SHA-256 on valid pointers short of OOM;
	 * treat that as a programming/environment error. */
	if (EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL) != 1 || n != MB_SHA256_LEN)
		MB_ASSERT(!"EVP_Digest(sha256) failed");
}

int mb_sha256_file(unsigned char out[MB_SHA256_LEN], const char *path, mb_error *err)
{
	unsigned char buf[1 << 16];
	unsigned int n = 0;
	EVP_MD_CTX *ctx = NULL;
	FILE *f = NULL;
	int error = 0;
	size_t got;

	f = fopen(path, "rb");
	if (!f)
		return mb_error_set(err, errno == ENOENT ? MB_ENOTFOUND : MB_EIO, "%s: %s", path,
				    strerror(errno));
	ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		error = mb_error_set(err, MB_ERROR, "%s: cannot start SHA-256", path);
		goto cleanup;
	}
	while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
		EVP_DigestUpdate(ctx, buf, got);
	if (ferror(f)) {
		error = mb_error_set(err, MB_EIO, "%s: read error: %s", path, strerror(errno));
		goto cleanup;
	}
	EVP_DigestFinal_ex(ctx, out, &n);
cleanup:
	EVP_MD_CTX_free(ctx);
	fclose(f);
	return error;
}

void mb_sha256_hex(char hex[MB_SHA256_HEX_LEN], const unsigned char digest[MB_SHA256_LEN])
{
	static const char digits[] = "0123456789abcdef";
	for (int i = 0; i < MB_SHA256_LEN; i++) {
		hex[2 * i] = digits[digest[i] >> 4];
		hex[2 * i + 1] = digits[digest[i] & 15];
	}
	hex[64] = '\0';
}

void mb_sha256_hex_buf(char hex[MB_SHA256_HEX_LEN], const void *buf, size_t len)
{
	unsigned char d[MB_SHA256_LEN];
	mb_sha256(d, buf, len);
	mb_sha256_hex(hex, d);
}

int mb_sha256_hex_file(char hex[MB_SHA256_HEX_LEN], const char *path, mb_error *err)
{
	unsigned char d[MB_SHA256_LEN];
	int error = mb_sha256_file(d, path, err);
	if (error < 0)
		return error;
	mb_sha256_hex(hex, d);
	return 0;
}

int mb_sha256_is_hex(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return 0;
	return n == 2 * MB_SHA256_LEN;
}
