/* stats.c: descriptive statistics, normal and Student t distributions,
 * regularized incomplete beta and the binomial CDF. */
#include <mechbench/stats.h>

#include <float.h>
#include <math.h>

#define LN_SQRT_2PI 0.918938533204672741780329736406 /* log(sqrt(2 pi)) */
#define SQRT1_2 0.707106781186547524400844362104849039 /* 1/sqrt(2) */

/* Descriptive ---------------------------------------------------------------- */

double mb_stats_mean(const double *x, size_t n)
{
	double s = 0.0, c = 0.0, m;

	MB_ASSERT(n > 0);
	for (size_t i = 0; i < n; i++)
		s += x[i];
	m = s / (double)n;
	/* Second pass: the mean of the residuals corrects the first pass's
	 * rounding (the rounding of s is the dominant error for large n). */
	for (size_t i = 0; i < n; i++)
		c += x[i] - m;
	return m + c / (double)n;
}

double mb_stats_var(const double *x, size_t n)
{
	double m, ss = 0.0, c = 0.0;

	MB_ASSERT(n >= 2);
	m = mb_stats_mean(x, n);
	for (size_t i = 0; i < n; i++) {
		double e = x[i] - m;
		ss += e * e;
		c += e;
	}
	/* Chan, Golub & LeVeque (1983): subtracting c^2/n removes the first-order
	 * effect of the error in m. */
	return (ss - c * c / (double)n) / (double)(n - 1);
}

int mb_stats_describe(mb_stats_summary *out, const double *x, size_t n, mb_error *err)
{
	if (n == 0)
		return mb_error_set(err, MB_EINVALID, "no values to describe");
	for (size_t i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return mb_error_set(err, MB_EINVALID, "item %zu: value %g is not finite", i,
					    x[i]);
	out->n = n;
	out->mean = mb_stats_mean(x, n);
	out->sd = n >= 2 ? sqrt(mb_stats_var(x, n)) : 0.0;
	out->se = out->sd / sqrt((double)n);
	out->min = out->max = x[0];
	for (size_t i = 1; i < n; i++) {
		if (x[i] < out->min)
			out->min = x[i];
		if (x[i] > out->max)
			out->max = x[i];
	}
	return 0;
}

double mb_stats_quantile_sorted(const double *sorted, size_t n, double p)
{
	double h, fl;
	size_t i;

	MB_ASSERT(n > 0);
	MB_ASSERT(p >= 0.0 && p <= 1.0);
	h = (double)(n - 1) * p;
	fl = floor(h);
	i = (size_t)fl;
	if (i + 1 >= n)
		return sorted[n - 1];
	/* numpy's _lerp: a + (b - a) t, switched to b - (b - a)(1 - t) for t >= 0.5
	 * so that the interpolation is exact at both ends and monotone. */
	{
		double a = sorted[i], b = sorted[i + 1], t = h - fl, d = b - a;
		double v = t >= 0.5 ? b - d * (1.0 - t) : a + d * t;
		return v;
	}
}

/* Normal --------------------------------------------------------------------- */

double mb_stats_norm_cdf(double x)
{
	return 0.5 * erfc(-x * SQRT1_2);
}

double mb_stats_norm_sf(double x)
{
	return 0.5 * erfc(x * SQRT1_2);
}

static double norm_pdf(double x)
{
	return exp(-0.5 * x * x - LN_SQRT_2PI);
}

/* Wichura (1988), Algorithm AS 241, PPND16: about 16 digits. */
static double as241(double p)
{
	double q = p - 0.5, r, val;

	if (fabs(q) <= 0.425) {
		r = 0.180625 - q * q;
		return q *
		       (((((((r * 2509.0809287301226727 + 33430.575583588128105) * r +
			     67265.770927008700853) * r + 45921.953931549871457) * r +
			   13731.693765509461125) * r + 1971.5909503065514427) * r +
			 133.14166789178437745) * r + 3.387132872796366608) /
		       (((((((r * 5226.495278852545925 + 28729.085735721942674) * r +
			     39307.89580009271061) * r + 21213.794301586595867) * r +
			   5394.1960214247511077) * r + 687.1870074920579083) * r +
			 42.313330701600911252) * r + 1.0);
	}
	r = q < 0.0 ? p : 1.0 - p;
	r = sqrt(-log(r));
	if (r <= 5.0) {
		r -= 1.6;
		val = (((((((r * 7.7454501427834140764e-4 + 0.0227238449892691845833) * r +
			    0.24178072517745061177) * r + 1.27045825245236838258) * r +
			  3.64784832476320460504) * r + 5.7694972214606914055) * r +
			4.6303378461565452959) * r + 1.42343711074968357734) /
		      (((((((r * 1.05075007164441684324e-9 + 5.475938084995344946e-4) * r +
			    0.0151986665636164571966) * r + 0.14810397642748007459) * r +
			  0.68976733498510000455) * r + 1.6763848301838038494) * r +
			2.05319162663775882187) * r + 1.0);
	} else {
		r -= 5.0;
		val = (((((((r * 2.01033439929228813265e-7 + 2.71155556874348757815e-5) * r +
			    0.0012426609473880784386) * r + 0.026532189526576123093) * r +
			  0.29656057182850489123) * r + 1.7848265399172913358) * r +
			5.4637849111641143699) * r + 6.6579046435011037772) /
		      (((((((r * 2.04426310338993978564e-15 + 1.4215117583164458887e-7) * r +
			    1.8463183175100546818e-5) * r + 7.868691311456132591e-4) * r +
			  0.0148753612908506148525) * r + 0.13692988092273580531) * r +
			0.59983220655588793769) * r + 1.0);
	}
	return q < 0.0 ? -val : val;
}

double mb_stats_norm_ppf(double p)
{
	double x, r;

	if (isnan(p) || p < 0.0 || p > 1.0)
		return NAN;
	if (p == 0.0)
		return -INFINITY;
	if (p == 1.0)
		return INFINITY;
	x = as241(p);
	/* One Newton step on the tail that holds p exactly: AS241's rational
	 * approximations are good to ~1e-16, and the step removes what is left
	 * of their error where erfc is more accurate than the fit. */
	if (p <= 0.5)
		r = (mb_stats_norm_cdf(x) - p) / norm_pdf(x);
	else
		r = -(mb_stats_norm_sf(x) - (1.0 - p)) / norm_pdf(x);
	if (isfinite(r))
		x -= r;
	return x;
}

/* Log beta and the regularized incomplete beta ---------------------------------- */

/* Stirling's correction lgamma(x) - ((x - 0.5) ln x - x + ln sqrt(2 pi)) for
 * x >= 10 by its asymptotic series (Bernoulli numbers); the first omitted term
 * is below 1e-17 there. */
static double lgamma_corr(double x)
{
	double x2 = 1.0 / (x * x);

	return (1.0 / 12.0 +
		x2 * (-1.0 / 360.0 +
		      x2 * (1.0 / 1260.0 +
			    x2 * (-1.0 / 1680.0 +
				  x2 * (1.0 / 1188.0 +
					x2 * (-691.0 / 360360.0 +
					      x2 * (1.0 / 156.0 + x2 * (-3617.0 / 122400.0)))))))) /
	       x;
}

/* ln B(a, b) without the cancellation of lgamma(a) + lgamma(b) - lgamma(a + b)
 * when a or b is large (the same split as R's lbeta). */
static double lbeta(double a, double b)
{
	double p = a < b ? a : b, q = a < b ? b : a;

	if (p >= 10.0) {
		double corr = lgamma_corr(p) + lgamma_corr(q) - lgamma_corr(p + q);
		return -0.5 * log(q) + LN_SQRT_2PI + corr + (p - 0.5) * log(p / (p + q)) +
		       q * log1p(-p / (p + q));
	}
	if (q >= 10.0) {
		double corr = lgamma_corr(q) - lgamma_corr(p + q);
		return lgamma(p) + corr + p - p * log(p + q) + (q - 0.5) * log1p(-p / (p + q));
	}
	return lgamma(p) + lgamma(q) - lgamma(p + q);
}

/* Continued fraction for I_x(a, b) by the modified Lentz method (Numerical
 * Recipes 6.4, betacf); converges quickly for x < (a + 1) / (a + b + 2), in
 * about sqrt(max(a, b)) terms at worst. Evaluated in long double: for huge a
 * (the t distribution at df ~ 1e9 has a = 5e8) and x within ~3/a of 1, the
 * terms 1 + aa d cancel to ~(1 - x), and double precision would leave a
 * relative error of ~1e-16 / (1 - x) = 3e-8; x87's 64-bit mantissa brings that
 * to ~2e-20 df (2e-11 at df = 1e9). y = 1 - x is passed too, exact to its own
 * last bit, since x rounded to double has already lost those digits of 1 - x. */
static double beta_cf(double a_, double b_, double x_, double y_)
{
	const long double tiny = 1e-300L, eps = 4.0L * LDBL_EPSILON;
	/* x from y when x is near 1: x's own rounding would swamp 1 - x. */
	long double a = a_, b = b_, x = y_ < 0.5 ? 1.0L - (long double)y_ : (long double)x_;
	long double qab = a + b, qap = a + 1.0L, qam = a - 1.0L;
	long double c = 1.0L, d = 1.0L - qab * x / qap, h;
	int maxit = 1000 + (int)(10.0 * sqrt(a_ > b_ ? a_ : b_));

	if (fabsl(d) < tiny)
		d = tiny;
	d = 1.0L / d;
	h = d;
	for (int m = 1; m <= maxit; m++) {
		long double m2 = 2.0L * m, aa, del;
		aa = m * (b - m) * x / ((qam + m2) * (a + m2));
		d = 1.0L + aa * d;
		if (fabsl(d) < tiny)
			d = tiny;
		c = 1.0L + aa / c;
		if (fabsl(c) < tiny)
			c = tiny;
		d = 1.0L / d;
		h *= d * c;
		aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
		d = 1.0L + aa * d;
		if (fabsl(d) < tiny)
			d = tiny;
		c = 1.0L + aa / c;
		if (fabsl(c) < tiny)
			c = tiny;
		d = 1.0L / d;
		del = d * c;
		h *= del;
		if (fabsl(del - 1.0L) < eps)
			break;
	}
	return (double)h;
}

/* I_x(a, b) and its complement 1 - I_x(a, b), given x and y = 1 - x each to
 * full precision (callers often know y better than 1 - x). Writes the
 * smaller-error side directly; the other is 1 minus it. */
static void beta_inc2(double a, double b, double x, double y, double *out_i, double *out_c)
{
	double lpre, pre;

	if (x <= 0.0) {
		*out_i = 0.0;
		*out_c = 1.0;
		return;
	}
	if (y <= 0.0) {
		*out_i = 1.0;
		*out_c = 0.0;
		return;
	}
	/* ln x and ln y from whichever of x, y is small: ln(1 - 7e-8) through
	 * log(x) would carry x's rounding (1e-16 absolute) into a * ln x, which
	 * for a ~ 5e8 (the t distribution at df ~ 1e9) is a 5e-8 relative error. */
	lpre = a * (x < 0.5 ? log(x) : log1p(-y)) + b * (y < 0.5 ? log(y) : log1p(-x)) -
	       lbeta(a, b);
	pre = exp(lpre);
	if (x < (a + 1.0) / (a + b + 2.0)) {
		*out_i = pre * beta_cf(a, b, x, y) / a;
		*out_c = 1.0 - *out_i;
	} else {
		*out_c = pre * beta_cf(b, a, y, x) / b;
		*out_i = 1.0 - *out_c;
	}
}

double mb_stats_beta_inc(double a, double b, double x)
{
	double i, c;

	if (!(a > 0.0) || !(b > 0.0) || !(x >= 0.0 && x <= 1.0))
		return NAN;
	beta_inc2(a, b, x, 1.0 - x, &i, &c);
	return i;
}

double mb_stats_binom_cdf(uint64_t k, uint64_t n, double p)
{
	double i, c;

	if (!(p >= 0.0 && p <= 1.0))
		return NAN;
	if (k >= n)
		return 1.0;
	/* P(X <= k) = I_{1-p}(n - k, k + 1). */
	beta_inc2((double)(n - k), (double)k + 1.0, 1.0 - p, p, &i, &c);
	return i;
}

/* Student t ------------------------------------------------------------------ */

/* Upper tail P(T > t) for t >= 0. With x = df / (df + t^2):
 * P(T > t) = I_x(df/2, 1/2) / 2, and 1 - x = t^2 / (df + t^2) is formed
 * directly so small t keep their precision. */
static double t_sf_pos(double t, double df)
{
	double t2 = t * t, x, y, i, c;

	if (t > 1e100) {
		/* t^2 would overflow (df < 1 puts p = 1e-17 beyond t = 1e33). */
		x = (df / t) / t;
		y = 1.0 - x;
	} else {
		x = df / (df + t2);
		y = t2 / (df + t2);
	}
	beta_inc2(0.5 * df, 0.5, x, y, &i, &c);
	return 0.5 * i;
}

double mb_stats_t_sf(double t, double df)
{
	if (isnan(t) || isnan(df) || !(df > 0.0))
		return NAN;
	if (isinf(df))
		return mb_stats_norm_sf(t);
	if (isinf(t))
		return t > 0 ? 0.0 : 1.0;
	if (t >= 0.0)
		return t_sf_pos(t, df);
	return 1.0 - t_sf_pos(-t, df);
}

double mb_stats_t_cdf(double t, double df)
{
	if (isnan(t) || isnan(df) || !(df > 0.0))
		return NAN;
	if (isinf(df))
		return mb_stats_norm_cdf(t);
	if (isinf(t))
		return t > 0 ? 1.0 : 0.0;
	if (t <= 0.0)
		return t_sf_pos(-t, df);
	return 1.0 - t_sf_pos(t, df);
}

static double t_log_pdf(double t, double df)
{
	double r = fabs(t) / sqrt(df);
	double l = r > 1e100 ? 2.0 * log(r) : log1p(r * r); /* ln(1 + t^2/df) */

	return -0.5 * (df + 1.0) * l - 0.5 * log(df) - lbeta(0.5 * df, 0.5);
}

/* The t > 0 with P(T > t) = q, q in (0, 0.5). Newton on g(t) = ln sf(t) - ln q
 * (g' = -pdf/sf; the log keeps heavy tails well-conditioned), safeguarded by
 * a bracket and bisection; started from the Cornish-Fisher expansion of the
 * normal quantile (Abramowitz & Stegun 26.7.5). */
static double t_isf_pos(double q, double df)
{
	double z = -mb_stats_norm_ppf(q), z2 = z * z, t, lo = 0.0, hi = INFINITY;
	double lq = log(q);

	t = z + (z2 + 1.0) * z / (4.0 * df) +
	    ((5.0 * z2 + 16.0) * z2 + 3.0) * z / (96.0 * df * df);
	if (!(t > 0.0) || !isfinite(t))
		t = z > 0.0 ? z : 1.0;
	for (int it = 0; it < 200; it++) {
		double s = t_sf_pos(t, df), g, step, tn;
		if (s > q)
			lo = t;
		else if (s < q)
			hi = t;
		else
			return t;
		g = log(s) - lq;
		step = g / exp(t_log_pdf(t, df) - log(s)); /* g / (pdf/sf) */
		tn = t + step;                               /* g' = -pdf/sf */
		if (!(tn > lo && tn < hi) || !isfinite(tn))
			tn = isinf(hi) ? 2.0 * t + 1.0 : 0.5 * (lo + hi);
		if (fabs(tn - t) <= 4.0 * DBL_EPSILON * tn)
			return tn;
		t = tn;
	}
	return t;
}

double mb_stats_t_ppf(double p, double df)
{
	if (isnan(p) || isnan(df) || !(df > 0.0) || p < 0.0 || p > 1.0)
		return NAN;
	if (isinf(df))
		return mb_stats_norm_ppf(p);
	if (p == 0.0)
		return -INFINITY;
	if (p == 1.0)
		return INFINITY;
	if (p == 0.5)
		return 0.0;
	if (p > 0.5)
		return t_isf_pos(1.0 - p, df);
	return -t_isf_pos(p, df);
}
