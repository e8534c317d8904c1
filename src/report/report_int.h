/* report_int.h: helpers shared by the report renderers (not public). */
#ifndef MB_REPORT_INT_H
#define MB_REPORT_INT_H

#include <stddef.h>
#include <stdio.h>

#include <mechbench/figure.h>
#include <mechbench/report.h>

/* After an "attribution.edges_<method>" figure (src/tasks/attribution.c):
 * its top edges as a layered graph (attr_graph.c); any other figure: nothing.
 * MB_EINVALID naming the figure for a label that is not a graph node. */
int mb_report_attr_graph(FILE *f, const mb_figure *fig, mb_error *err);

/* "%.6g", "-" for NaN, "0" for zero. */
void mb_fmt_num(char *buf, size_t cap, double v);
/* "[lo, hi]". */
void mb_fmt_ci(char *buf, size_t cap, double lo, double hi);
/* The numbers of a gate row as table cells ("-" where there is none). */
typedef struct mb_row_text {
	char metric[160]; /* "name@version" */
	char base[32], cand[32], diff[32], ci[64], margin[32], mde[32], threshold[64];
} mb_row_text;
void mb_row_text_fill(mb_row_text *t, const mb_gate_row *r);

/* The numbers of one stratum of a gate row as table cells. */
typedef struct mb_stratum_text {
	char stratum[160]; /* "len=10" or "len=10 (OUT-OF-DISTRIBUTION)" */
	char n[24], base[32], cand[32], diff[32], ci[64];
	char threshold[128]; /* ">= 0.5 met [0.79, 0.82]" (the candidate's CI), or "-" */
	char status[32];     /* the stratum's own status, "-" when not compared */
	char role[48];       /* "gates (combine all)", "reported (combine pooled)", ... */
} mb_stratum_text;
void mb_stratum_text_fill(mb_stratum_text *t, const mb_gate_row *r, const mb_gate_stratum *st);
/* 1 when a stratum with a registered threshold is not PASS/IMPROVED/IDENTICAL. */
int mb_stratum_failed(const mb_gate_row *r, const mb_gate_stratum *st);

/* ">= 1 met", "<= 0.7 NOT MET", or "-". */
void mb_fmt_threshold(char *buf, size_t cap, const mb_gate_row *r);
/* 1 when the row fails the gate (REGRESSED or THRESHOLD-FAILED). */
int mb_row_failed(const mb_gate_row *r);
/* One sentence with the row's numbers, for failures and notes. */
void mb_row_explain(char *buf, size_t cap, const mb_gate_row *r, double level);

/* An artifact comparison (artifact.h) in words. head: "circuit CHANGED,
 * within resampling noise: node Jaccard 0.833 >= 0.78 (the lower stability
 * bound); baseline 12 nodes 15 edges, candidate 12 nodes 14 edges". stability:
 * "baseline Jaccard 0.9 [0.78, 0.97] over 50 resamples; candidate ..." ("" when
 * neither reports it). */
void mb_artifact_head(char *buf, size_t cap, const mb_artifact_diff *d);
void mb_artifact_stability_text(char *buf, size_t cap, const mb_artifact_diff *d);

/* The changes of a circuit as four labelled lists: "nodes removed", "nodes
 * added" ("a9.6 (effect 0.41, inclusion 0.98), ..."), "edges removed",
 * "edges added" ("a7.3 -> a9.6 via q (effect 0.12), ..."); text "" for an
 * empty list, a long one truncated with ", ...". */
typedef struct mb_artifact_lists {
	const char *label[4];
	char text[4][2048];
} mb_artifact_lists;
void mb_artifact_lists_fill(mb_artifact_lists *out, const mb_artifact_diff *d);

/* The feature table of an `sae` task entry (sae.c) from its "sae-battery"
 * artifact (per-item effects): each feature's causal effects, controls and
 * BH verdict (sae_verdict.h), and the fraction passing with its interval.
 * Writes nothing for an entry without that artifact; a malformed one is
 * MB_EINVALID naming the field. */
int mb_html_sae_features(FILE *f, const mb_entry_result *r, mb_error *err);

#endif
