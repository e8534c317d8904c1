/*
 * logits.h: per-row metrics of a logits row, shared by the tasks, the
 * paired-effect layer (effect.h) and the trainer's evaluations, so that one
 * cross-entropy exists in the code base.
 *
 * Legend: V entries of the row (the vocabulary, or a task's answer subset).
 *
 * Evaluation order (pinned: stored metrics and zoo checkpoints depend on its
 * bits). For a row z:
 *   mx  = the first maximum of z, scanning v = 1..V-1 with a strict '>'
 *         (the argmax is that index: the first one on ties);
 *   s   = sum over v = 0..V-1, ascending, of exp((double)z[v] - mx);
 *   ce  = mx + log(s) - (double)z[target]   (left to right, in double).
 * exp and log are the C library's (MB_LOGITS_LIBM: the tasks' metrics, as
 * they have always been computed) or mb_detmath_exp / mb_detmath_log
 * (MB_LOGITS_DETMATH: the trainer's evaluations, whose bits must not depend
 * on the CPU; detmath.h). The two differ in the last bits, so both are kept:
 * moving either would move pinned bits.
 */
#ifndef MECHBENCH_LOGITS_H
#define MECHBENCH_LOGITS_H

/* Which exp and log a metric uses (see above). */
typedef enum mb_logits_math {
	MB_LOGITS_LIBM = 0, /* <math.h> exp, log */
	MB_LOGITS_DETMATH,  /* detmath.h: same bits on every CPU */
} mb_logits_math;

/* Index of the first maximum of z[0..V) (V >= 1). */
int mb_logits_argmax(const float *z, int V);

/* Cross-entropy -log softmax(z)[target] in nats, in the order above; writes
 * the first argmax to *out_argmax when it is non-NULL. V >= 1, target in
 * [0, V). */
double mb_logits_ce(int *out_argmax, const float *z, int V, int target, mb_logits_math math);

/* The same over a double row (projected logits, modadd). */
double mb_logits_ce_d(int *out_argmax, const double *z, int V, int target, mb_logits_math math);

/* softmax(z)[target] = exp(-ce): the probability of target. */
double mb_logits_prob(const float *z, int V, int target, mb_logits_math math);

/* Logit difference (double)z[a] - (double)z[b] (IOI: logit(IO) - logit(S)). */
double mb_logits_diff(const float *z, int a, int b);

/* 1.0 when the first argmax of z is target, else 0.0. */
double mb_logits_correct(const float *z, int V, int target);

#endif
