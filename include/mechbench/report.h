/*
 * report.h: what a run or a gate says, in the forms people and CI read:
 * a terminal table (CIs and verdicts; colour only when asked), markdown (PR
 * comments and $GITHUB_STEP_SUMMARY), JUnit XML (one testcase per metric,
 * failures carrying the numbers), JSON (schema in the README, "Reports")
 * and CSV (one row per metric).
 *
 * Renderers write to a FILE (a terminal, or an open_memstream buffer the
 * CLI then writes atomically with mb_file_write_all). Numbers print with
 * 6 significant digits in tables; JSON carries full precision, NaN as null.
 */
#ifndef MECHBENCH_REPORT_H
#define MECHBENCH_REPORT_H

#include <stdio.h>

#include <jansson.h>

#include <mechbench/error.h>
#include <mechbench/gate.h>
#include <mechbench/runner.h>

#define MB_REPORT_JSON_FORMAT 1

/* Gate reports. */
void mb_report_gate_terminal(FILE *f, const mb_gate_result *g, int color);
/* Every row per stratum (status, threshold, role), for `gate --strata`. */
void mb_report_gate_terminal_strata(FILE *f, const mb_gate_result *g, int color);
void mb_report_gate_markdown(FILE *f, const mb_gate_result *g);
/* timestamp: ISO 8601 ("2026-01-02T03:04:05"); hostname may be "". */
void mb_report_gate_junit(FILE *f, const mb_gate_result *g, const char *timestamp,
			  const char *hostname);
void mb_report_gate_csv(FILE *f, const mb_gate_result *g);
/* The gate as a JSON document (new reference); NULL on allocation failure. */
json_t *mb_report_gate_json(const mb_gate_result *g);

/* Run reports: aggregates per entry and metric, with provenance. */
void mb_report_run_terminal(FILE *f, const mb_run_result *r, int color);
/* Each entry's metrics per stratum (e->strata), for `run --strata`. */
void mb_report_run_terminal_strata(FILE *f, const mb_run_result *r);
void mb_report_run_csv(FILE *f, const mb_run_result *r);
json_t *mb_report_run_json(const mb_run_result *r);
/* Metric m of e per stratum, a JSON array of {"name", "ood", "n", "mean",
 * "se", "level", "lo", "hi", "method"} (empty when e->strata is not filled). */
json_t *mb_report_strata_json(const mb_entry_result *e, size_t m);

/* Renders with render(f, arg) into memory and writes path atomically.
 * Returns 0 or MB_EIO / MB_ENOMEM naming the path. */
int mb_report_write(const char *path, void (*render)(FILE *f, const void *arg), const void *arg,
		    mb_error *err);
/* Writes a JSON document (indented, keys in insertion order) atomically. */
int mb_report_write_json(const char *path, const json_t *doc, mb_error *err);

#endif
