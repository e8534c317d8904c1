/*
 * rotary.c: rotary position embeddings (Su et al. 2021, "RoFormer", eq. 34),
 * in GPT-NeoX's rotate-half convention: the first Rd dims of a head are two
 * halves x1 = x[0..Rd/2), x2 = x[Rd/2..Rd), and
 *   out1 = x1 cos(theta) - x2 sin(theta),  out2 = x2 cos(theta) + x1 sin(theta),
 * theta_i = t * base^(-2i / Rd) for i < Rd/2 at position t; dims Rd..Dh pass
 * through. The table follows the float32 recipe of the GPT-NeoX reference
 * (inverse frequencies, t * inv_freq and the cos/sin all rounded to float32),
 * so long positions agree with it to float32 rounding, not double.
 *
 * Shape letters: P n_ctx, D d_model, H heads, Dh d_head, Rd rotary dims.
 */
#include <math.h>
#include <stdlib.h>

#include "engine_int.h"

int mb_rotary_table(float **cs, float **sn, const mb_engine_config *c, mb_error *err)
{
	int P = c->n_ctx, half = c->rotary_dim / 2;
	size_t n = (size_t)P * (size_t)half;
	float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));

	*cs = *sn = NULL;
	if (!a || !b) {
		free(a);
		free(b);
		return mb_error_oom(err, "rotary table", 2 * n * sizeof(float));
	}
	for (int i = 0; i < half; i++) {
		float ex = (float)(2 * i) / (float)c->rotary_dim;
		float inv = 1.0f / powf(c->rotary_base, ex);

		for (int t = 0; t < P; t++) {
			float th = (float)t * inv;

			a[(size_t)t * half + i] = (float)cos((double)th);
			b[(size_t)t * half + i] = (float)sin((double)th);
		}
	}
	*cs = a;
	*sn = b;
	return 0;
}

void mb_rotary_rows(float *x, int ld, int n, int t0, int n_blk, const mb_engine_config *c,
		    const float *cs, const float *sn, int inverse)
{
	int D = c->d_model, H = c->n_head, Dh = c->d_head, half = c->rotary_dim / 2;

	for (int i = 0; i < n; i++) {
		const float *ct = cs + (size_t)(t0 + i) * half, *st = sn + (size_t)(t0 + i) * half;

		for (int blk = 0; blk < n_blk; blk++)
			for (int h = 0; h < H; h++) {
				float *v = x + (size_t)i * ld + (size_t)blk * D + (size_t)h * Dh;

				for (int j = 0; j < half; j++) {
					float x1 = v[j], x2 = v[j + half];
					float s = inverse ? -st[j] : st[j];

					v[j] = x1 * ct[j] - x2 * s;
					v[j + half] = x2 * ct[j] + x1 * s;
				}
			}
	}
}
