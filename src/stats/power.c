/* power.c: required n, MDE and achieved power for paired metrics, normal
 * approximation (HARNESS.md "Power"; Miller 2024 sec. 5). */
#include <mechbench/power.h>
#include <mechbench/stats.h>

#include <math.h>

int mb_stats_power_check(const mb_stats_power_opts *o, mb_error *err)
{
	if (o->sides != 1 && o->sides != 2)
		return mb_error_set(err, MB_EINVALID, "sides: %d is not 1 or 2", o->sides);
	if (!(o->alpha > 0.0 && o->alpha < 1.0))
		return mb_error_set(err, MB_EINVALID, "alpha: %g is not in (0, 1)", o->alpha);
	if (!(o->power > 0.0 && o->power < 1.0))
		return mb_error_set(err, MB_EINVALID, "power: %g is not in (0, 1)", o->power);
	if (!(o->var_d > 0.0) || !isfinite(o->var_d))
		return mb_error_set(err, MB_EINVALID, "var_d: %g is not a finite number > 0",
				    o->var_d);
	if (!(o->deff > 0.0) || !isfinite(o->deff))
		return mb_error_set(err, MB_EINVALID, "deff: %g is not a finite number > 0", o->deff);
	return 0;
}

double mb_stats_power_var_binary(double p_discordant)
{
	/* Miller (2024) sec. 5 sizes paired binary evals with the discordant
	 * rate as the variance of one difference; see power.h. */
	return p_discordant;
}

/* z_{1-a}: upper critical value of the test, from the lower tail. */
static double z_alpha(const mb_stats_power_opts *o)
{
	return -mb_stats_norm_ppf(o->sides == 2 ? 0.5 * o->alpha : o->alpha);
}

/* z_{1-a} + z_{1-b}, checked > 0 (power must exceed the test's size). */
static int z_sum(double *out, const mb_stats_power_opts *o, mb_error *err)
{
	int error = mb_stats_power_check(o, err);

	if (error < 0)
		return error;
	*out = z_alpha(o) - mb_stats_norm_ppf(1.0 - o->power);
	if (!(*out > 0.0))
		return mb_error_set(err, MB_EINVALID,
				    "power: %g is not above what alpha %g gives with no effect",
				    o->power, o->alpha);
	return 0;
}

int mb_stats_power_n(double *out_exact, uint64_t *out_n, const mb_stats_power_opts *o,
		     double delta, mb_error *err)
{
	double z, n;
	int error;

	if (!(fabs(delta) > 0.0) || !isfinite(delta))
		return mb_error_set(err, MB_EINVALID, "delta: %g is not a finite number != 0", delta);
	if ((error = z_sum(&z, o, err)) < 0)
		return error;
	n = z * z * o->var_d * o->deff / (delta * delta);
	if (!(n < 1.8e19))
		return mb_error_set(err, MB_EINVALID, "delta: %g needs %g items, beyond counting",
				    delta, n);
	*out_exact = n;
	/* Remove a relative 1e-12 of round-off before rounding up, so a formula
	 * that is exactly an integer is not pushed to the next one. */
	*out_n = (uint64_t)ceil(n * (1.0 - 1e-12));
	if (*out_n == 0)
		*out_n = 1;
	return 0;
}

int mb_stats_power_mde(double *out, const mb_stats_power_opts *o, double n, mb_error *err)
{
	double z;
	int error;

	if (!(n > 0.0) || !isfinite(n))
		return mb_error_set(err, MB_EINVALID, "n: %g is not a finite number > 0", n);
	if ((error = z_sum(&z, o, err)) < 0)
		return error;
	*out = z * sqrt(o->var_d * o->deff / n);
	return 0;
}

int mb_stats_power_at(double *out, const mb_stats_power_opts *o, double delta, double n,
		      mb_error *err)
{
	mb_stats_power_opts chk = *o;
	double shift, crit;
	int error;

	chk.power = 0.5; /* ignored here; keep the check from tripping on it */
	if ((error = mb_stats_power_check(&chk, err)) < 0)
		return error;
	if (!(n > 0.0) || !isfinite(n))
		return mb_error_set(err, MB_EINVALID, "n: %g is not a finite number > 0", n);
	if (!isfinite(delta))
		return mb_error_set(err, MB_EINVALID, "delta: %g is not finite", delta);
	shift = fabs(delta) / sqrt(o->var_d * o->deff) * sqrt(n);
	crit = z_alpha(o);
	/* statsmodels normal_power: sf(crit - shift) [+ cdf(-crit - shift)]. */
	*out = mb_stats_norm_sf(crit - shift);
	if (o->sides == 2)
		*out += mb_stats_norm_cdf(-crit - shift);
	return 0;
}
