/* eig.c: deterministic eigenvalues of a real general matrix (eig.h). */
#include <mechbench/eig.h>

#include <math.h>
#include <stddef.h>

#define A(i, j) a[(size_t)((i) - 1) * (size_t)n + (size_t)((j) - 1)] /* 1-based */

static double sign_of(double a, double b) { return b >= 0.0 ? fabs(a) : -fabs(a); }

/* Scales rows and columns by powers of 2 (exact) so their norms are close. */
static void balance(double *a, int n)
{
	int last = 0;

	while (!last) {
		last = 1;
		for (int i = 1; i <= n; i++) {
			double r = 0.0, c = 0.0;

			for (int j = 1; j <= n; j++)
				if (j != i) {
					c += fabs(A(j, i));
					r += fabs(A(i, j));
				}
			if (c != 0.0 && r != 0.0) {
				double g = r / 2.0, f = 1.0, s = c + r;

				while (c < g) {
					f *= 2.0;
					c *= 4.0;
				}
				g = r * 2.0;
				while (c > g) {
					f /= 2.0;
					c /= 4.0;
				}
				if ((c + r) / f < 0.95 * s) {
					last = 0;
					g = 1.0 / f;
					for (int j = 1; j <= n; j++)
						A(i, j) *= g;
					for (int j = 1; j <= n; j++)
						A(j, i) *= f;
				}
			}
		}
	}
}

/* Reduction to upper Hessenberg form by elimination with partial pivoting;
 * entries below the subdiagonal are set to 0. */
static void hessenberg(double *a, int n)
{
	for (int m = 2; m < n; m++) {
		double x = 0.0, y;
		int i = m;

		for (int j = m; j <= n; j++)
			if (fabs(A(j, m - 1)) > fabs(x)) {
				x = A(j, m - 1);
				i = j;
			}
		if (i != m) {
			for (int j = m - 1; j <= n; j++) {
				double t = A(i, j);
				A(i, j) = A(m, j);
				A(m, j) = t;
			}
			for (int j = 1; j <= n; j++) {
				double t = A(j, i);
				A(j, i) = A(j, m);
				A(j, m) = t;
			}
		}
		if (x != 0.0)
			for (i = m + 1; i <= n; i++) {
				y = A(i, m - 1);
				if (y != 0.0) {
					y /= x;
					A(i, m - 1) = y;
					for (int j = m; j <= n; j++)
						A(i, j) -= y * A(m, j);
					for (int j = 1; j <= n; j++)
						A(j, m) += y * A(j, i);
				}
			}
	}
	for (int i = 3; i <= n; i++)
		for (int j = 1; j < i - 1; j++)
			A(i, j) = 0.0;
}

/* Francis double-shift QR on an upper Hessenberg matrix. */
static int hqr(double *a, int n, double *wr, double *wi)
{
	int nn = n, m = 0, l = 0;
	double anorm = 0.0, t = 0.0, p = 0, q = 0, r = 0, s, w, x, y, z;

	for (int i = 1; i <= n; i++)
		for (int j = (i - 1 > 1 ? i - 1 : 1); j <= n; j++)
			anorm += fabs(A(i, j));
	while (nn >= 1) {
		int its = 0;

		do {
			for (l = nn; l >= 2; l--) {
				s = fabs(A(l - 1, l - 1)) + fabs(A(l, l));
				if (s == 0.0)
					s = anorm;
				if (fabs(A(l, l - 1)) + s == s) {
					A(l, l - 1) = 0.0;
					break;
				}
			}
			x = A(nn, nn);
			if (l == nn) {
				wr[nn - 1] = x + t;
				wi[nn - 1] = 0.0;
				nn--;
			} else {
				y = A(nn - 1, nn - 1);
				w = A(nn, nn - 1) * A(nn - 1, nn);
				if (l == nn - 1) {
					p = 0.5 * (y - x);
					q = p * p + w;
					z = sqrt(fabs(q));
					x += t;
					if (q >= 0.0) {
						z = p + sign_of(z, p);
						wr[nn - 2] = wr[nn - 1] = x + z;
						if (z != 0.0)
							wr[nn - 1] = x - w / z;
						wi[nn - 2] = wi[nn - 1] = 0.0;
					} else {
						wr[nn - 2] = wr[nn - 1] = x + p;
						wi[nn - 2] = z;
						wi[nn - 1] = -z;
					}
					nn -= 2;
				} else {
					if (its == 60)
						return -1;
					if (its == 10 || its == 20 || its == 40) {
						/* exceptional shift */
						t += x;
						for (int i = 1; i <= nn; i++)
							A(i, i) -= x;
						s = fabs(A(nn, nn - 1)) + fabs(A(nn - 1, nn - 2));
						y = x = 0.75 * s;
						w = -0.4375 * s * s;
					}
					++its;
					for (m = nn - 2; m >= l; m--) {
						double u, v;

						z = A(m, m);
						r = x - z;
						s = y - z;
						p = (r * s - w) / A(m + 1, m) + A(m, m + 1);
						q = A(m + 1, m + 1) - z - r - s;
						r = A(m + 2, m + 1);
						s = fabs(p) + fabs(q) + fabs(r);
						p /= s;
						q /= s;
						r /= s;
						if (m == l)
							break;
						u = fabs(A(m, m - 1)) * (fabs(q) + fabs(r));
						v = fabs(p) * (fabs(A(m - 1, m - 1)) + fabs(z) +
							       fabs(A(m + 1, m + 1)));
						if (u + v == v)
							break;
					}
					for (int i = m + 2; i <= nn; i++) {
						A(i, i - 2) = 0.0;
						if (i != m + 2)
							A(i, i - 3) = 0.0;
					}
					for (int k = m; k <= nn - 1; k++) {
						if (k != m) {
							p = A(k, k - 1);
							q = A(k + 1, k - 1);
							r = 0.0;
							if (k != nn - 1)
								r = A(k + 2, k - 1);
							if ((x = fabs(p) + fabs(q) + fabs(r)) != 0.0) {
								p /= x;
								q /= x;
								r /= x;
							}
						}
						s = sign_of(sqrt(p * p + q * q + r * r), p);
						if (s != 0.0) {
							int mmin;

							if (k == m) {
								if (l != m)
									A(k, k - 1) = -A(k, k - 1);
							} else {
								A(k, k - 1) = -s * x;
							}
							p += s;
							x = p / s;
							y = q / s;
							z = r / s;
							q /= p;
							r /= p;
							for (int j = k; j <= nn; j++) {
								p = A(k, j) + q * A(k + 1, j);
								if (k != nn - 1) {
									p += r * A(k + 2, j);
									A(k + 2, j) -= p * z;
								}
								A(k + 1, j) -= p * y;
								A(k, j) -= p * x;
							}
							mmin = nn < k + 3 ? nn : k + 3;
							for (int i = l; i <= mmin; i++) {
								p = x * A(i, k) + y * A(i, k + 1);
								if (k != nn - 1) {
									p += z * A(i, k + 2);
									A(i, k + 2) -= p * r;
								}
								A(i, k + 1) -= p * q;
								A(i, k) -= p;
							}
						}
					}
				}
			}
		} while (l < nn - 1);
	}
	return 0;
}

int mb_eig_real(double *out_re, double *out_im, double *a, int n, mb_error *err)
{
	for (size_t i = 0; i < (size_t)n * (size_t)n; i++)
		if (!isfinite(a[i]))
			return mb_error_set(err, MB_EINVALID,
					    "eigenvalues: matrix entry %zu is not finite", i);
	if (n < 1)
		return 0;
	balance(a, n);
	hessenberg(a, n);
	if (hqr(a, n, out_re, out_im) < 0)
		return mb_error_set(err, MB_EINVALID,
				    "eigenvalues: the QR iteration did not converge (n = %d)", n);
	return 0;
}
