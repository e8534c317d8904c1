/*
 * fourier.c: the Fourier basis over Z_P and its analyses (fourier.h).
 *
 * Legend: P modulus (odd), K = (P - 1) / 2, M d_mlp.
 */
#include <mechbench/fourier.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/logits.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

void mb_fourier_basis(double *out, int p)
{
	MB_ASSERT(p >= 3 && p <= MB_FOURIER_MAX_P && p % 2 == 1);
	for (int x = 0; x < p; x++)
		out[x] = 1.0 / sqrt((double)p);
	for (int k = 1; k <= (p - 1) / 2; k++) {
		double *c = out + (size_t)(2 * k - 1) * (size_t)p; /* (P) */
		double *s = out + (size_t)(2 * k) * (size_t)p;     /* (P) */
		double nc = 0, ns = 0;
		for (int x = 0; x < p; x++) {
			/* the angle reduced mod P first, so k x stays exact */
			double ang = 2.0 * M_PI * (double)(((int64_t)k * x) % p) / (double)p;
			c[x] = cos(ang);
			s[x] = sin(ang);
			nc += c[x] * c[x];
			ns += s[x] * s[x];
		}
		nc = sqrt(nc);
		ns = sqrt(ns);
		for (int x = 0; x < p; x++) {
			c[x] /= nc;
			s[x] /= ns;
		}
	}
}

void mb_fourier_rows(double *out_comp, double *out_freq, const double *basis,
			    const float *x, int p, int cols, size_t stride)
{
	mb_fourier_rows_strided(out_comp, out_freq, basis, x, p, cols, stride, 1);
}

void mb_fourier_rows_strided(double *out_comp, double *out_freq, const double *basis,
			     const float *x, int p, int cols, size_t row_stride,
			     size_t col_stride)
{
	int k_max = (p - 1) / 2;

	for (int i = 0; i < p; i++) {
		const double *f = basis + (size_t)i * (size_t)p; /* (P) */
		double ss = 0;
		for (int j = 0; j < cols; j++) {
			double v = 0;
			for (int t = 0; t < p; t++)
				v += f[t] * (double)x[(size_t)t * row_stride + (size_t)j * col_stride];
			ss += v * v;
		}
		out_comp[i] = sqrt(ss);
	}
	out_freq[0] = out_comp[0];
	for (int k = 1; k <= k_max; k++)
		out_freq[k] = sqrt(out_comp[2 * k - 1] * out_comp[2 * k - 1] +
				   out_comp[2 * k] * out_comp[2 * k]);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double mb_fourier_gini(const double *x, size_t n)
{
	double *s, num = 0, sum = 0;

	if (n == 0)
		return 0;
	s = malloc(n * sizeof(*s));
	MB_ASSERT(s);
	memcpy(s, x, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_double);
	for (size_t i = 0; i < n; i++) {
		num += (2.0 * (double)(i + 1) - (double)n - 1.0) * s[i];
		sum += s[i];
	}
	free(s);
	return sum > 0 ? num / ((double)n * sum) : 0;
}

/* Frequency lists are a handful of ints: insertion sort, ascending. */
static void sort_ascending(int *a, int n)
{
	for (int i = 1; i < n; i++) {
		int v = a[i], j = i;
		while (j > 0 && a[j - 1] > v) {
			a[j] = a[j - 1];
			j--;
		}
		a[j] = v;
	}
}

int mb_fourier_key_frequencies(int *out, const double *freq_norm, int p, double energy)
{
	int k_max = (p - 1) / 2, n = 0;
	int *order = malloc((size_t)k_max * sizeof(*order));
	double total = 0, acc = 0, last = -1;

	MB_ASSERT(order);
	for (int k = 1; k <= k_max; k++) {
		order[k - 1] = k;
		total += freq_norm[k] * freq_norm[k];
	}
	/* insertion sort by squared norm, descending, ties by frequency: stable
	 * and fully determined */
	for (int i = 1; i < k_max; i++) {
		int v = order[i], j = i;
		while (j > 0 && freq_norm[order[j - 1]] < freq_norm[v]) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = v;
	}
	if (total > 0) {
		for (int i = 0; i < k_max; i++) {
			double e = freq_norm[order[i]] * freq_norm[order[i]];
			if (acc >= energy * total && e != last)
				break;
			out[n++] = order[i];
			acc += e;
			last = e;
		}
	}
	free(order);
	sort_ascending(out, n);
	return n;
}

double mb_fourier_neuron_fraction(int *out_best, const double *basis, const float *acts,
				 size_t stride, int p, int m, double threshold)
{
	int k_max = (p - 1) / 2;
	size_t pp = (size_t)p * (size_t)p;
	long explained = 0;
	int *flags = calloc((size_t)m, sizeof(*flags));

	MB_ASSERT(flags);
#pragma omp parallel for schedule(dynamic, 4)
	for (int n = 0; n < m; n++) {
		double *g = malloc(pp * sizeof(*g)); /* (P, P) F A: g[i][b] */
		double *c = malloc(pp * sizeof(*c)); /* (P, P) F A F^T */
		double mean = 0, var = 0, best = 0;
		int best_k = 0;

		MB_ASSERT(g && c);
		for (size_t i = 0; i < pp; i++)
			mean += (double)acts[i * stride + (size_t)n];
		mean /= (double)pp;
		for (size_t i = 0; i < pp; i++) {
			double d = (double)acts[i * stride + (size_t)n] - mean;
			var += d * d;
		}
		for (int i = 0; i < p; i++) {
			const double *f = basis + (size_t)i * (size_t)p;
			for (int b = 0; b < p; b++) {
				double v = 0;
				for (int a = 0; a < p; a++)
					v += f[a] * (double)acts[((size_t)a * (size_t)p + (size_t)b) *
								      stride + (size_t)n];
				g[(size_t)i * (size_t)p + (size_t)b] = v;
			}
		}
		for (int i = 0; i < p; i++)
			for (int j = 0; j < p; j++) {
				const double *f = basis + (size_t)j * (size_t)p;
				double v = 0;
				for (int b = 0; b < p; b++)
					v += g[(size_t)i * (size_t)p + (size_t)b] * f[b];
				c[(size_t)i * (size_t)p + (size_t)j] = v;
			}
		for (int k = 1; k <= k_max && var > 0; k++) {
			int idx[3] = {0, 2 * k - 1, 2 * k};
			double e = 0;
			for (int u = 0; u < 3; u++)
				for (int w = 0; w < 3; w++) {
					double v;
					if (u == 0 && w == 0)
						continue;
					v = c[(size_t)idx[u] * (size_t)p + (size_t)idx[w]];
					e += v * v;
				}
			if (e > best) {
				best = e;
				best_k = k;
			}
		}
		flags[n] = var > 0 && best >= threshold * var;
		if (out_best)
			out_best[n] = var > 0 ? best_k : 0;
		free(g);
		free(c);
	}
	for (int n = 0; n < m; n++)
		explained += flags[n];
	free(flags);
	return m > 0 ? (double)explained / (double)m : 0;
}

double mb_fourier_projected_loss(int *out_argmax, const double *basis, const float *logits,
				int p, int target, mb_fourier_projection how, const int *freqs,
				int nf)
{
	double l[MB_FOURIER_MAX_P]; /* (P) projected logits */
	MB_ASSERT(p >= 3 && p <= MB_FOURIER_MAX_P);
	l[0] = 0; /* (written below; this tells the compiler p >= 1) */
	for (int c = 0; c < p; c++)
		l[c] = how == MB_FOURIER_RESTRICT ? 0.0 : (double)logits[c];
	if (how != MB_FOURIER_FULL) {
		/* the components to keep (restrict) or remove (exclude): constant
		 * first when restricting, then each frequency's cos and sin */
		for (int q = how == MB_FOURIER_RESTRICT ? -1 : 0; q < nf; q++) {
			int rows[2], nr = 0;
			if (q < 0) {
				rows[nr++] = 0;
			} else {
				rows[nr++] = 2 * freqs[q] - 1;
				rows[nr++] = 2 * freqs[q];
			}
			for (int r = 0; r < nr; r++) {
				const double *f = basis + (size_t)rows[r] * (size_t)p;
				double coef = 0;
				for (int c = 0; c < p; c++)
					coef += f[c] * (double)logits[c];
				if (how == MB_FOURIER_RESTRICT)
					for (int c = 0; c < p; c++)
						l[c] += coef * f[c];
				else
					for (int c = 0; c < p; c++)
						l[c] -= coef * f[c];
			}
		}
	}
	return mb_logits_ce_d(out_argmax, l, p, target, MB_LOGITS_LIBM);
}

void mb_fourier_control_frequencies(int *out, mb_rng *r, const double *freq_norm, int p,
				   const int *key, int nkey, int n)
{
	int k_max = (p - 1) / 2;
	unsigned char taken[MB_FOURIER_MAX_P / 2 + 1] = {0}; /* (K + 1): key or drawn */
	int avail = k_max;

	for (int q = 0; q < nkey; q++) {
		MB_ASSERT(key[q] >= 1 && key[q] <= k_max);
		avail -= !taken[key[q]];
		taken[key[q]] = 1;
	}
	MB_ASSERT(n >= 1 && n <= avail);
	for (int j = 0; j < n; j++) {
		double total = 0, acc = 0, u;
		int pick = -1;

		for (int k = 1; k <= k_max; k++)
			if (!taken[k])
				total += freq_norm[k] * freq_norm[k];
		if (total > 0) {
			u = mb_rng_uniform(r) * total;
			for (int k = 1; k <= k_max; k++) {
				if (taken[k])
					continue;
				pick = k; /* the last remaining one if rounding leaves none */
				acc += freq_norm[k] * freq_norm[k];
				if (acc > u)
					break;
			}
		} else {
			uint64_t c = mb_rng_range(r, (uint64_t)(avail - j));
			for (int k = 1; k <= k_max; k++)
				if (!taken[k] && c-- == 0) {
					pick = k;
					break;
				}
		}
		MB_ASSERT(pick > 0);
		taken[pick] = 1;
		out[j] = pick;
	}
	sort_ascending(out, n);
}
