/*
 * heads.c: head-classifying scores (heads.h): pattern scores on repeated
 * prompts and the OV copying score.
 *
 * Legend: T pattern row stride, r |R|, n = 2r + 1, L layers, H heads, D
 * d_model, Dh d_head, V vocab.
 */
#include <mechbench/heads.h>

#include <math.h>
#include <stdlib.h>

#include <mechbench/eig.h>
#include <mechbench/gemm.h>

void mb_heads_pattern_scores(double out[MB_HEADS_N_SCORES], const float *p, int T,
			     const int32_t *tok, int r)
{
	int n = 2 * r + 1, nq = 0;
	double ind = 0, dup = 0, prev = 0, pre = 0;

	for (int q = r + 1; q <= 2 * r; q++) {
		ind += p[(size_t)q * T + (q - r + 1)];
		dup += p[(size_t)q * T + (q - r)];
	}
	for (int q = 1; q < n; q++) {
		double m = 0;
		int any = 0;

		prev += p[(size_t)q * T + q - 1];
		for (int k = 1; k < q; k++)
			if (tok[k - 1] == tok[q]) {
				m += p[(size_t)q * T + k];
				any = 1;
			}
		if (any) {
			pre += m;
			nq++;
		}
	}
	out[MB_HEADS_INDUCTION] = ind / r;
	out[MB_HEADS_DUP] = dup / r;
	out[MB_HEADS_PREV] = prev / (n - 1);
	out[MB_HEADS_PREFIX] = nq ? pre / nq : 0.0;
}

double mb_heads_diag_add(double acc, const float *p, int T, int r)
{
	for (int q = r + 1; q <= 2 * r; q++)
		acc += p[(size_t)q * T + (q - r + 1)];
	return acc;
}

double mb_heads_diag(const float *p, int T, int r)
{
	return mb_heads_diag_add(0, p, T, r) / r;
}

/* Eigenvalue positivity of a real n x n matrix a (row-major, destroyed):
 * sum of eigenvalues / sum of their moduli. mb_eig_real (not LAPACK, whose
 * blocking follows the CPU), so the score has the same bits on any machine. */
static int positivity(double *out, double *a, int n, mb_error *err)
{
	double *wr = malloc(sizeof(double) * (size_t)n * 2);
	double sum = 0, sabs = 0;
	int rc;

	if (!wr)
		return mb_error_oom(err, "copying score", sizeof(double) * (size_t)n * 2);
	rc = mb_eig_real(wr, wr + n, a, n, err);
	if (rc == 0)
		for (int i = 0; i < n; i++) {
			sum += wr[i];
			sabs += sqrt(wr[i] * wr[i] + wr[n + i] * wr[n + i]);
		}
	free(wr);
	if (rc < 0)
		return mb_error_prefix(err, "copying score");
	*out = sabs > 0 ? sum / sabs : 0.0;
	return 0;
}

int mb_heads_copying(double *out, const mb_engine_config *c, const mb_engine_weights *w,
		     mb_error *err)
{
	int D = c->d_model, Dh = c->d_head, H = c->n_head, V = c->n_vocab, rc = 0;
	float *G = malloc(sizeof(float) * (size_t)D * D);      /* (D, D) W_U W_E, ln_f folded */
	double *GV = malloc(sizeof(double) * (size_t)D * Dh);  /* (D, Dh) G W_V^h */
	double *A = malloc(sizeof(double) * (size_t)Dh * Dh);  /* (Dh, Dh) W_O^h G W_V^h */

	if (!G || !GV || !A) {
		rc = mb_error_oom(err, "copying score", sizeof(float) * (size_t)D * D);
		goto cleanup;
	}
	/* G[i][j] = sum_v unembed[v][i] wte[v][j]: W_U = unembed^T (D, V), W_E = wte (V, D) */
	mb_gemm_sgemm(1, 0, D, D, V, 1.0f, w->unembed, D, w->wte, D, G, D);
	if (c->norm == MB_NORM_LN)
		for (int i = 0; i < D; i++)
			for (int j = 0; j < D; j++)
				G[(size_t)i * D + j] *= w->lnf_w[i];
	for (int l = 0; l < c->n_layer && rc == 0; l++) {
		const float *qkv = w->qkv_w + (size_t)l * D * 3 * D; /* (D, 3D) */
		const float *ow = w->o_w + (size_t)l * D * D;        /* (D, D) */
		const float *g1 = c->norm == MB_NORM_LN ? w->ln1_w + (size_t)l * D : NULL;

		for (int h = 0; h < H && rc == 0; h++) {
			/* GV = G diag(ln1_w) W_V^h */
			for (int i = 0; i < D; i++)
				for (int k = 0; k < Dh; k++) {
					double s = 0;
					for (int j = 0; j < D; j++)
						s += (double)G[(size_t)i * D + j] *
						     (g1 ? g1[j] : 1.0f) *
						     qkv[(size_t)j * 3 * D + 2 * D + h * Dh + k];
					GV[(size_t)i * Dh + k] = s;
				}
			/* A = W_O^h GV, W_O^h = rows h*Dh.. of ow, (Dh, D) */
			for (int a = 0; a < Dh; a++)
				for (int k = 0; k < Dh; k++) {
					double s = 0;
					for (int i = 0; i < D; i++)
						s += (double)ow[(size_t)(h * Dh + a) * D + i] *
						     GV[(size_t)i * Dh + k];
					A[(size_t)a * Dh + k] = s;
				}
			rc = positivity(&out[l * H + h], A, Dh, err);
		}
	}
cleanup:
	free(G);
	free(GV);
	free(A);
	return rc;
}
