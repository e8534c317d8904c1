/*
 * multiplicity.h: many tests at once (HARNESS.md, "Multiplicity").
 *
 * A suite gate is an intersection-union test: it passes only when every gate
 * passes, so each gate is tested at the full alpha (Berger 1982) and no alpha
 * correction applies; what must be controlled is the chance that some
 * harmless change is blocked, so each gate is sized for power 1 - beta/m.
 * Alarms across many metrics use Holm (1979); exploratory scans (per stratum,
 * head, feature) use Benjamini-Hochberg (1995) at q = 0.05.
 */
#ifndef MECHBENCH_MULTIPLICITY_H
#define MECHBENCH_MULTIPLICITY_H

#include <stddef.h>

#include <mechbench/error.h>

/* Holm step-down adjusted p-values: with p sorted ascending p_(1..m),
 * adj_(i) = min(1, max_{j <= i} (m - j + 1) p_(j)). out[k] belongs to p[k]
 * (input order kept); ties keep input order. Reject H_k at alpha when
 * out[k] <= alpha. Matches statsmodels multipletests(method="holm").
 * out may alias p. MB_EINVALID when a p is NaN or outside [0, 1]
 * ("p[3] = 1.5 is not in [0, 1]"); MB_ENOMEM. m == 0 is a no-op. */
int mb_stats_holm(double *out, const double *p, size_t m, mb_error *err);

/* Benjamini-Hochberg step-up adjusted p-values (q-values):
 * adj_(i) = min(1, min_{j >= i} m p_(j) / j); out[k] belongs to p[k].
 * Matches statsmodels multipletests(method="fdr_bh"). Same contract as Holm. */
int mb_stats_bh(double *out, const double *p, size_t m, mb_error *err);

/* Power each of m gates needs so that a suite of m gates has power >= the
 * suite's (false-block rate <= beta = 1 - suite_power by the union bound):
 * 1 - (1 - suite_power) / m. suite_power in (0, 1) and m >= 1 are asserted. */
double mb_stats_iut_gate_power(double suite_power, size_t m);

#endif
