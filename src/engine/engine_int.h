/* engine_int.h: small helpers shared by the forward (forward.c) and the
 * backward (backward.c). Private to src/engine/. */
#ifndef MB_ENGINE_INT_H
#define MB_ENGINE_INT_H

#include <stdlib.h>
#include <string.h>

#include <mechbench/error.h>
#include <mechbench/hooks.h>

/* Grows a 64-byte aligned float buffer to at least n floats; contents are not
 * kept. Buffers only grow, so steady-state runs allocate nothing. */
static inline int grow(float **buf, size_t *cap, size_t n, const char *what, mb_error *err)
{
	void *p = NULL;

	if (n <= *cap)
		return 0;
	if (posix_memalign(&p, 64, n * sizeof(float)) != 0)
		return mb_error_oom(err, what, n * sizeof(float));
	free(*buf);
	*buf = p;
	*cap = n;
	return 0;
}

/* view (B, T, w) <- the packed rows of plan ro (width w, row stride ld);
 * zeros at padded positions. */
static inline void unpack_rows(const mb_engine_rows *ro, float *view, const float *buf, int w,
			       int ld)
{
	int B = ro->batch, T = ro->seq;

#pragma omp parallel for schedule(static)
	for (int bt = 0; bt < B * T; bt++) {
		int b = bt / T, t = bt % T;
		float *dst = view + (size_t)bt * w;

		if (t < ro->len[b])
			memcpy(dst, buf + (size_t)(ro->row0[b] + t) * ld, sizeof(float) * (size_t)w);
		else
			memset(dst, 0, sizeof(float) * (size_t)w);
	}
}

/* The hook point of kind k at layer (ignored for model-level kinds). */
static inline mb_hook_point pt(mb_hook_kind k, int layer)
{
	mb_hook_point p = {k, mb_hook_kind_is_layer(k) ? layer : -1};

	return p;
}

/* Whether the registry h (may be NULL) observes kind k at layer. */
static inline int observes(const mb_hooks *h, mb_hook_kind k, int layer)
{
	return h && mb_hooks_observes(h, pt(k, layer));
}

/* Rotary tables (rotary.c): cos and sin of theta (P, Rd/2), malloc'd. */
int mb_rotary_table(float **cs, float **sn, const mb_engine_config *c, mb_error *err);
/* Rotates n rows of x (row stride ld; row i at position t0 + i) in place: the
 * first Rd dims of every head in n_blk blocks of width D (q, then k). inverse
 * applies the transpose (the rotation by -theta: gradients). */
void mb_rotary_rows(float *x, int ld, int n, int t0, int n_blk, const mb_engine_config *c,
		    const float *cs, const float *sn, int inverse);

#endif
