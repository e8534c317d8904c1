/*
 * logits.c: per-row metrics of a logits row (logits.h). The evaluation order
 * is the one the trainer, induction.c and modadd's projected loss used
 * before they shared this file; do not reorder (pinned bits).
 */
#include <mechbench/logits.h>

#include <math.h>

#include <mechbench/detmath.h>
#include <mechbench/error.h>

static double m_exp(double x, mb_logits_math math)
{
	return math == MB_LOGITS_DETMATH ? mb_detmath_exp(x) : exp(x);
}

static double m_log(double x, mb_logits_math math)
{
	return math == MB_LOGITS_DETMATH ? mb_detmath_log(x) : log(x);
}

int mb_logits_argmax(const float *z, int V)
{
	float mx = z[0];
	int arg = 0;

	MB_ASSERT(V >= 1);
	for (int v = 1; v < V; v++)
		if (z[v] > mx) {
			mx = z[v];
			arg = v;
		}
	return arg;
}

/* mx, argmax and s of the header's order over a float or double row. */
#define LOGITS_LSE(z, V, math, out_mx, out_arg, out_s)                                  \
	do {                                                                               \
		double mx_ = (z)[0], s_ = 0;                                               \
		int arg_ = 0;                                                              \
		for (int v_ = 1; v_ < (V); v_++)                                           \
			if ((z)[v_] > mx_) {                                               \
				mx_ = (z)[v_];                                             \
				arg_ = v_;                                                 \
			}                                                                  \
		for (int v_ = 0; v_ < (V); v_++)                                           \
			s_ += m_exp((double)(z)[v_] - mx_, (math));                        \
		*(out_mx) = mx_;                                                           \
		*(out_arg) = arg_;                                                         \
		*(out_s) = s_;                                                             \
	} while (0)

double mb_logits_ce(int *out_argmax, const float *z, int V, int target, mb_logits_math math)
{
	double mx, s;
	int arg;

	MB_ASSERT(V >= 1 && target >= 0 && target < V);
	LOGITS_LSE(z, V, math, &mx, &arg, &s);
	if (out_argmax)
		*out_argmax = arg;
	return mx + m_log(s, math) - (double)z[target];
}

double mb_logits_ce_d(int *out_argmax, const double *z, int V, int target, mb_logits_math math)
{
	double mx, s;
	int arg;

	MB_ASSERT(V >= 1 && target >= 0 && target < V);
	LOGITS_LSE(z, V, math, &mx, &arg, &s);
	if (out_argmax)
		*out_argmax = arg;
	return mx + m_log(s, math) - z[target];
}

double mb_logits_prob(const float *z, int V, int target, mb_logits_math math)
{
	double mx, s;
	int arg;

	MB_ASSERT(V >= 1 && target >= 0 && target < V);
	LOGITS_LSE(z, V, math, &mx, &arg, &s);
	(void)arg;
	return m_exp((double)z[target] - mx, math) / s;
}

double mb_logits_diff(const float *z, int a, int b)
{
	return (double)z[a] - (double)z[b];
}

double mb_logits_correct(const float *z, int V, int target)
{
	return mb_logits_argmax(z, V) == target ? 1.0 : 0.0;
}
