/*
 * sha256.h: SHA-256 of buffers and files through OpenSSL's libcrypto.
 * Digests identify datasets, weights, tokenizers and items (content keys).
 */
#ifndef MECHBENCH_SHA256_H
#define MECHBENCH_SHA256_H

#include <stddef.h>

#include <mechbench/error.h>

#define MB_SHA256_LEN 32
#define MB_SHA256_HEX_LEN 65 /* 64 hex digits and a NUL */

/* out receives 32 bytes. */
void mb_sha256(unsigned char out[MB_SHA256_LEN], const void *buf, size_t len);

/* Streams the file at path. Returns 0, MB_ENOTFOUND or MB_EIO (message names
 * the path). */
int mb_sha256_file(unsigned char out[MB_SHA256_LEN], const char *path, mb_error *err);

/* Lower-case hex of a digest into hex (65 bytes with the NUL). */
void mb_sha256_hex(char hex[MB_SHA256_HEX_LEN], const unsigned char digest[MB_SHA256_LEN]);

/* 1 when s is exactly 64 lower-case hex digits (a digest as mb_sha256_hex
 * writes it), else 0. */
int mb_sha256_is_hex(const char *s);

/* Convenience: hex digest of a buffer / of a file. */
void mb_sha256_hex_buf(char hex[MB_SHA256_HEX_LEN], const void *buf, size_t len);
int mb_sha256_hex_file(char hex[MB_SHA256_HEX_LEN], const char *path, mb_error *err);

#endif
