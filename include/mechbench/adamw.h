/*
 * adamw.h: the AdamW optimizer with PyTorch's semantics, its learning-rate
 * schedule and global-norm gradient clipping.
 *
 * Legend: N the number of parameters (one flat float32 array; a model's
 * parameters and their gradients share one layout, see trainer.h).
 *
 * AdamW (Loshchilov & Hutter 2019, "Decoupled weight decay regularization")
 * exactly as torch.optim.AdamW (torch 1.13, single-tensor path), step t
 * counted from 1:
 *     p <- p * (1 - lr * wd)                      decoupled weight decay
 *     m <- beta1 * m + (1 - beta1) * g
 *     v <- beta2 * v + (1 - beta2) * g * g
 *     p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * The scalars (1 - lr*wd, the bias corrections, the step size) are computed
 * in double and rounded to float once, as PyTorch does with Python floats;
 * every per-element operation is float32 in the order written above, so the
 * result is checked against torch.optim.AdamW to float rounding
 * (tests/fixtures/train/). Each element is updated on its own, so the update
 * is bitwise the same for any thread count.
 */
#ifndef MECHBENCH_ADAMW_H
#define MECHBENCH_ADAMW_H

#include <stddef.h>
#include <stdint.h>

#include <mechbench/error.h>

typedef struct mb_adamw_config {
	double lr;           /* peak learning rate (the schedule scales it) */
	double beta1, beta2; /* PyTorch defaults 0.9, 0.999 */
	double eps;          /* PyTorch default 1e-8 */
	double weight_decay; /* decoupled; PyTorch's AdamW default 0.01 */
} mb_adamw_config;

typedef struct mb_adamw {
	size_t n;            /* number of parameters */
	float *m;            /* (N) first moment, owned */
	float *v;            /* (N) second moment, owned */
	int64_t step;        /* optimizer steps taken so far (t of the last step) */
	mb_adamw_config cfg;
} mb_adamw;

/* PyTorch's defaults (lr 1e-3, betas (0.9, 0.999), eps 1e-8, wd 0.01). */
mb_adamw_config mb_adamw_default_config(void);

/* Checks cfg: lr >= 0, 0 <= beta < 1, eps >= 0, wd >= 0, all finite. On
 * error names the field ("adamw: beta2 = 1 must be in [0, 1)"). */
int mb_adamw_config_check(const mb_adamw_config *cfg, mb_error *err);

/* Allocates zeroed moments for n parameters and sets step 0. Returns 0,
 * MB_EINVALID (bad cfg) or MB_ENOMEM. */
int mb_adamw_init(mb_adamw *opt, size_t n, const mb_adamw_config *cfg, mb_error *err);
void mb_adamw_dispose(mb_adamw *opt);

/* One step at learning rate lr (the schedule's value for this step, which
 * replaces cfg.lr): updates params (N) in place from grads (N) and the
 * moments, increments opt->step. Parallel over elements (OpenMP). */
void mb_adamw_step(mb_adamw *opt, float *params, const float *grads, double lr);

/* Linear warmup then constant: the learning rate of optimizer step t
 * (1-based) is lr * min(1, t / warmup_steps); warmup_steps 0 means none.
 * (PyTorch: LambdaLR(opt, lambda s: min(1, (s + 1) / warmup)) stepped after
 * each optimizer step.) */
double mb_lr_warmup(double lr, int64_t step, int64_t warmup_steps);

/* Global L2 norm of grads (N), summed in double over fixed chunks whose
 * partial sums are added in chunk order (the same bits for any thread
 * count). */
double mb_grad_norm(const float *grads, size_t n);

/* torch.nn.utils.clip_grad_norm_: when max_norm > 0 and the global norm
 * exceeds it, scales grads by max_norm / (norm + 1e-6). Returns the norm
 * before clipping. max_norm <= 0 leaves grads alone. */
double mb_grad_clip(float *grads, size_t n, double max_norm);

#endif
