/*
 * eig.h: eigenvalues of a small real general matrix, deterministically.
 *
 * LAPACK's dgeev (OpenBLAS's build) blocks and vectorises by CPU, so its
 * eigenvalues can differ in the last bits across machines. This is the
 * classic EISPACK path (balance, Gaussian-elimination reduction to Hessenberg
 * form, Francis double-shift QR; Numerical Recipes 11.5-11.6) in plain double
 * arithmetic with a fixed order of operations and only sqrt and fabs from
 * libm (both exact), so every IEEE machine gives the same bits. For the
 * matrices MI metrics decompose (d_head x d_head OV circuits); O(n^3).
 */
#ifndef MECHBENCH_EIG_H
#define MECHBENCH_EIG_H

#include <mechbench/error.h>

/*
 * Eigenvalues of the n x n row-major matrix a (destroyed): out_re[i] +
 * i out_im[i], complex pairs adjacent (positive imaginary part first), in the
 * order the QR iteration deflates them. Returns 0, or MB_EINVALID (with a
 * message) when the iteration does not converge or a is not finite.
 */
int mb_eig_real(double *out_re, double *out_im, double *a, int n, mb_error *err);

#endif
