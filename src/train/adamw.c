/*
 * adamw.c: AdamW with torch.optim.AdamW's arithmetic, warmup, clipping.
 *
 * Legend: N parameters in one flat array.
 */
#include <mechbench/adamw.h>
#include <mechbench/detmath.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Elements per chunk of the gradient-norm reduction: fixed, so the order in
 * which partial sums are added never depends on the thread count. */
#define MB_NORM_CHUNK 4096

mb_adamw_config mb_adamw_default_config(void)
{
	mb_adamw_config c = {
		.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
	return c;
}

int mb_adamw_config_check(const mb_adamw_config *cfg, mb_error *err)
{
	if (!isfinite(cfg->lr) || cfg->lr < 0)
		return mb_error_set(err, MB_EINVALID, "adamw: lr = %g must be finite and >= 0",
				    cfg->lr);
	if (!(cfg->beta1 >= 0 && cfg->beta1 < 1))
		return mb_error_set(err, MB_EINVALID, "adamw: beta1 = %g must be in [0, 1)",
				    cfg->beta1);
	if (!(cfg->beta2 >= 0 && cfg->beta2 < 1))
		return mb_error_set(err, MB_EINVALID, "adamw: beta2 = %g must be in [0, 1)",
				    cfg->beta2);
	if (!isfinite(cfg->eps) || cfg->eps < 0)
		return mb_error_set(err, MB_EINVALID, "adamw: eps = %g must be finite and >= 0",
				    cfg->eps);
	if (!isfinite(cfg->weight_decay) || cfg->weight_decay < 0)
		return mb_error_set(err, MB_EINVALID,
				    "adamw: weight_decay = %g must be finite and >= 0",
				    cfg->weight_decay);
	return 0;
}

int mb_adamw_init(mb_adamw *opt, size_t n, const mb_adamw_config *cfg, mb_error *err)
{
	int error;

	memset(opt, 0, sizeof(*opt));
	error = mb_adamw_config_check(cfg, err);
	if (error < 0)
		return error;
	opt->m = calloc(n ? n : 1, sizeof(float));
	opt->v = calloc(n ? n : 1, sizeof(float));
	if (!opt->m || !opt->v) {
		mb_adamw_dispose(opt);
		return mb_error_oom(err, "adamw moments", 2 * n * sizeof(float));
	}
	opt->n = n;
	opt->cfg = *cfg;
	return 0;
}

void mb_adamw_dispose(mb_adamw *opt)
{
	if (!opt)
		return;
	free(opt->m);
	free(opt->v);
	memset(opt, 0, sizeof(*opt));
}

void mb_adamw_step(mb_adamw *opt, float *params, const float *grads, double lr)
{
	const mb_adamw_config *c = &opt->cfg;
	float *m = opt->m, *v = opt->v;
	const int64_t t = ++opt->step;
	/* Scalars as torch computes them: Python floats (double), each rounded
	 * to float where it meets a float tensor. */
	const double bc1 = 1.0 - mb_detmath_powi(c->beta1, t);
	const double bc2 = 1.0 - mb_detmath_powi(c->beta2, t);
	const float decay = (float)(1.0 - lr * c->weight_decay);
	const float b1 = (float)c->beta1, one_b1 = (float)(1.0 - c->beta1);
	const float b2 = (float)c->beta2, one_b2 = (float)(1.0 - c->beta2);
	const float bc2_sqrt = (float)sqrt(bc2);
	const float eps = (float)c->eps;
	const float neg_step = (float)(-(lr / bc1));
	const long long n = (long long)opt->n;

#pragma omp parallel for schedule(static)
	for (long long i = 0; i < n; i++) {
		float g = grads[i];
		float p = params[i] * decay;
		float mi = m[i] * b1 + one_b1 * g;
		float vi = v[i] * b2 + (one_b2 * g) * g;
		float denom = sqrtf(vi) / bc2_sqrt + eps;
		m[i] = mi;
		v[i] = vi;
		params[i] = p + neg_step * (mi / denom);
	}
}

double mb_lr_warmup(double lr, int64_t step, int64_t warmup_steps)
{
	if (warmup_steps <= 0 || step >= warmup_steps)
		return lr;
	if (step < 1)
		step = 1;
	return lr * (double)step / (double)warmup_steps;
}

double mb_grad_norm(const float *grads, size_t n)
{
	const long long nchunks = (long long)((n + MB_NORM_CHUNK - 1) / MB_NORM_CHUNK);
	double stack_partial[64];
	double *partial = nchunks <= 64 ? stack_partial : malloc((size_t)nchunks * sizeof(double));
	double sum = 0;

	if (!partial) {
		/* Out of memory for the partial sums: the same chunks, serially. */
		for (size_t c = 0; c < (size_t)nchunks; c++) {
			double s = 0;
			size_t end = (c + 1) * MB_NORM_CHUNK < n ? (c + 1) * MB_NORM_CHUNK : n;
			for (size_t i = c * MB_NORM_CHUNK; i < end; i++)
				s += (double)grads[i] * (double)grads[i];
			sum += s;
		}
		return sqrt(sum);
	}
#pragma omp parallel for schedule(static)
	for (long long c = 0; c < nchunks; c++) {
		double s = 0;
		size_t end = (size_t)(c + 1) * MB_NORM_CHUNK < n ? (size_t)(c + 1) * MB_NORM_CHUNK : n;
		for (size_t i = (size_t)c * MB_NORM_CHUNK; i < end; i++)
			s += (double)grads[i] * (double)grads[i];
		partial[c] = s;
	}
	for (long long c = 0; c < nchunks; c++)
		sum += partial[c];
	if (partial != stack_partial)
		free(partial);
	return sqrt(sum);
}

double mb_grad_clip(float *grads, size_t n, double max_norm)
{
	double norm = mb_grad_norm(grads, n);

	if (max_norm > 0) {
		double coef = max_norm / (norm + 1e-6);
		if (coef < 1.0) {
			const float s = (float)coef;
			const long long nn = (long long)n;
#pragma omp parallel for schedule(static)
			for (long long i = 0; i < nn; i++)
				grads[i] *= s;
		}
	}
	return norm;
}
