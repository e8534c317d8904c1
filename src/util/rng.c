/* rng.c: Philox4x32-10 (Salmon et al. 2011) with named streams. */
#include <mechbench/rng.h>
#include <mechbench/sha256.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* golden ratio */
#define PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

static inline void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo)
{
	uint64_t p = (uint64_t)a * b;
	*hi = (uint32_t)(p >> 32);
	*lo = (uint32_t)p;
}

void mb_philox4x32_10(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2])
{
	uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
	uint32_t k0 = key[0], k1 = key[1];

	for (int round = 0; round < 10; round++) {
		uint32_t hi0, lo0, hi1, lo1;
		if (round > 0) {
			k0 += PHILOX_W0;
			k1 += PHILOX_W1;
		}
		mulhilo(PHILOX_M0, c0, &hi0, &lo0);
		mulhilo(PHILOX_M1, c2, &hi1, &lo1);
		c0 = hi1 ^ c1 ^ k0;
		c1 = lo1;
		c2 = hi0 ^ c3 ^ k1;
		c3 = lo0;
	}
	out[0] = c0;
	out[1] = c1;
	out[2] = c2;
	out[3] = c3;
}

uint64_t mb_rng_stream_id(const char *name, uint64_t index)
{
	char text[512];
	unsigned char digest[32];
	uint64_t id = 0;
	int n = snprintf(text, sizeof(text), "%s#%llu", name, (unsigned long long)index);

	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(text))
		n = (int)sizeof(text) - 1;
	mb_sha256(digest, text, (size_t)n);
	for (int i = 0; i < 8; i++)
		id = (id << 8) | digest[i];
	return id;
}

void mb_rng_init(mb_rng *r, uint64_t seed, uint64_t stream)
{
	r->key[0] = (uint32_t)seed;
	r->key[1] = (uint32_t)(seed >> 32);
	r->stream = stream;
	r->block = 0;
	r->pos = 4;
}

void mb_rng_init_named(mb_rng *r, uint64_t seed, const char *name, uint64_t index)
{
	mb_rng_init(r, seed, mb_rng_stream_id(name, index));
}

void mb_rng_seek(mb_rng *r, uint64_t block)
{
	r->block = block;
	r->pos = 4;
}

static void refill(mb_rng *r)
{
	uint32_t ctr[4] = {(uint32_t)r->block, (uint32_t)(r->block >> 32),
			   (uint32_t)r->stream, (uint32_t)(r->stream >> 32)};
	mb_philox4x32_10(r->buf, ctr, r->key);
	r->block++;
	r->pos = 0;
}

uint32_t mb_rng_u32(mb_rng *r)
{
	if (r->pos >= 4)
		refill(r);
	return r->buf[r->pos++];
}

uint64_t mb_rng_u64(mb_rng *r)
{
	uint64_t hi = mb_rng_u32(r);
	return (hi << 32) | mb_rng_u32(r);
}

double mb_rng_uniform(mb_rng *r)
{
	return (double)(mb_rng_u64(r) >> 11) * 0x1.0p-53;
}

float mb_rng_uniformf(mb_rng *r)
{
	return (float)(mb_rng_u32(r) >> 8) * 0x1.0p-24f;
}

double mb_rng_normal(mb_rng *r)
{
	/* u1 in (0, 1] so log(u1) is finite. */
	double u1 = 1.0 - mb_rng_uniform(r);
	double u2 = mb_rng_uniform(r);
	return sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2);
}

uint64_t mb_rng_range(mb_rng *r, uint64_t n)
{
	if (n == 0)
		return 0;
	if (n <= UINT32_MAX) {
		/* Lemire 2019: multiply-shift with rejection of the biased low part. */
		uint32_t s = (uint32_t)n;
		uint64_t m = (uint64_t)mb_rng_u32(r) * s;
		uint32_t low = (uint32_t)m;
		if (low < s) {
			uint32_t threshold = (uint32_t)(-s) % s;
			while (low < threshold) {
				m = (uint64_t)mb_rng_u32(r) * s;
				low = (uint32_t)m;
			}
		}
		return m >> 32;
	}
	/* Wide ranges: rejection on the largest multiple of n. */
	uint64_t limit = UINT64_MAX - UINT64_MAX % n;
	uint64_t x;
	do
		x = mb_rng_u64(r);
	while (x >= limit);
	return x % n;
}

void mb_rng_permutation(mb_rng *r, uint32_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (uint32_t)i;
	mb_rng_shuffle(r, out, n, sizeof(*out));
}

void mb_rng_shuffle(mb_rng *r, void *base, size_t n, size_t size)
{
	unsigned char *p = base;
	unsigned char tmp[256];

	if (n < 2)
		return;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = (size_t)mb_rng_range(r, (uint64_t)i + 1);
		if (j == i)
			continue;
		/* swap element i and j in chunks of tmp */
		for (size_t off = 0; off < size; off += sizeof(tmp)) {
			size_t len = size - off < sizeof(tmp) ? size - off : sizeof(tmp);
			memcpy(tmp, p + i * size + off, len);
			memcpy(p + i * size + off, p + j * size + off, len);
			memcpy(p + j * size + off, tmp, len);
		}
	}
}
