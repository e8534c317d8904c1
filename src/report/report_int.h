/* report_int.h: helpers shared by the report renderers (not public). */
#ifndef MB_REPORT_INT_H
#define MB_REPORT_INT_H

#include <stddef.h>

#include <mechbench/report.h>

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

#endif
