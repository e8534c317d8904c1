/*
 * detmath.h: elementary functions with the same bits on every CPU.
 *
 * glibc picks expf, logf, exp, log, pow (and more) by ISA at load time (ifunc:
 * FMA and non-FMA builds of the same routine), and those variants may differ
 * in the last bit; another libm (macOS, musl, aarch64) differs more. Code
 * whose bits must not depend on the CPU (the portable path: the trainer, the
 * backward's cross-entropy, the optimizer, GELU) uses these instead: plain C
 * built from IEEE +, -, *, / only (ISO C mode: no contraction), fixed
 * iteration counts, so every conforming machine gives the same result.
 * Accuracy: a few ulp (exp, log in double), about 1e-15 relative (erf).
 */
#ifndef MECHBENCH_DETMATH_H
#define MECHBENCH_DETMATH_H

#include <stddef.h>
#include <stdint.h>

/* e^x in double, to about 1 ulp; 0 below -745, +inf above 709.78. */
double mb_detmath_exp(double x);
/* ln x in double, to about 1 ulp; -inf at 0, NaN below. */
double mb_detmath_log(double x);
/* x^n for an integer n >= 0 by binary powering. */
double mb_detmath_powi(double x, int64_t n);
/* erf(x) (float in, float out; computed in double from piecewise polynomials,
 * src/util/erf_table.py): within one float ulp of erf, correctly rounded but
 * for values within ~1e-16 of a rounding midpoint (tests/util/test_detmath.c). */
float mb_detmath_erff(float x);
/* out[i] = mb_detmath_erff(in[i]) for i < n, bit for bit (AVX2 where the CPU
 * has it); out may equal in. */
void mb_detmath_erff_n(float *out, const float *in, size_t n);

#endif
