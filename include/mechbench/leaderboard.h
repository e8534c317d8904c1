/*
 * leaderboard.h: models by metrics, with CIs and rank intervals, from stored
 * runs. One table per (suite, entry); a row is one run's result for that
 * entry (a model), a column one metric (name@version). The harness computes
 * it (src/harness/leaderboard.c: mb_leaderboard_build), the report layer
 * renders it (src/report/leaderboard.c).
 *
 * Rank intervals (ties as ties). For each metric, every pair of rows is
 * compared on the items they share (paired by content key, item_index.h)
 * under the gate's comparison policy (mb_stats_compare, verdict.h): paired
 * t on the per-item differences for continuous metrics, exact McNemar for
 * binary ones, and for ratio metrics the seeded BCa bootstrap interval of
 * the mean difference inverted into a p-value (mb_stats_boot_p: the
 * smallest 1 - level whose interval excludes 0, at least 2 / (B + 1));
 * bitwise identical items give p = 1. The pairwise p-values of a metric are Holm-
 * adjusted together (multiplicity.h), so with probability >= 1 - alpha no
 * pair is declared different in the wrong direction, and each row's rank
 * interval is
 *     [1 + #{rows significantly better}, M - #{rows significantly worse}],
 * M the rows that have the metric: the ranks consistent with every
 * significant pairwise difference, simultaneously for all rows. This is the
 * pairwise-comparison construction of simultaneous confidence intervals for
 * ranks (Al Mohamad, Goeman & van Zwet 2022, "Simultaneous confidence
 * intervals for ranks with application to ranking institutions", Biometrics
 * 78(1); Holm 1979). Rows whose difference is not significant share ranks;
 * two runs of the same model (identical values) always get the same interval.
 * Pairs with fewer than 2 shared items are not compared (wider intervals).
 * The paired tests treat items as independent; clustered designs are not
 * modelled here (the gate's comparison is).
 *
 * Every row carries its reproducibility stamp: the mechbench commit that
 * produced it (and whether the tree was dirty), the spec's git blob, the
 * dataset's sha256 and the model's sha256 (the file's own when the model is
 * one file, else the sha256 of its "sha256  path\n" lines, sorted by path, as
 * sha256sum prints them), and the command that reproduces it.
 */
#ifndef MECHBENCH_LEADERBOARD_H
#define MECHBENCH_LEADERBOARD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include <mechbench/error.h>
#include <mechbench/runner.h>
#include <mechbench/sha256.h>

#define MB_LEADERBOARD_JSON_FORMAT 1

/* A cell's estimate in one stratum of the entry's dataset (the run's
 * e->strata, filled by the caller, e.g. mb_runner_strata_stored; no rank). */
typedef struct mb_leaderboard_stratum {
	char *name;           /* owned */
	int ood;              /* out of distribution (not in the pooled mean) */
	size_t n;
	double mean, lo, hi;  /* 95% CI */
} mb_leaderboard_stratum;

typedef struct mb_leaderboard_cell {
	int present;          /* the row's run has this metric */
	size_t n;
	double mean, lo, hi;  /* the stored aggregate and its 95% CI */
	size_t rank_lo, rank_hi; /* 1-based rank interval */
	mb_leaderboard_stratum *strata; /* (n_strata) owned; none when the run had none */
	size_t n_strata;
} mb_leaderboard_cell;

typedef struct mb_leaderboard_row {
	int64_t run_id;
	char *model;          /* owned */
	char code_commit[64];
	int code_dirty;
	char spec_blob[41];
	char spec_path[512];
	char dataset_sha256[MB_SHA256_HEX_LEN];
	char model_sha256[MB_SHA256_HEX_LEN];
	char *command;        /* owned: the shell command that reproduces the row */
	mb_leaderboard_cell *cells; /* (n_metrics) */
} mb_leaderboard_row;

typedef struct mb_leaderboard_table {
	char *suite, *entry, *task; /* owned */
	char **metrics;             /* (n_metrics) owned names */
	int *versions;              /* (n_metrics) */
	mb_metric_kind *kinds;
	mb_metric_direction *directions;
	size_t n_metrics;
	mb_leaderboard_row *rows;   /* sorted by the first metric's rank interval, then mean */
	size_t n_rows;
} mb_leaderboard_table;

typedef struct mb_leaderboard {
	double alpha;
	mb_leaderboard_table *tables; /* by suite, then entry, in order of first appearance */
	size_t n_tables;
} mb_leaderboard;

typedef struct mb_leaderboard_opts {
	double alpha;     /* family-wise error of each metric's pairwise tests; 0: 0.05 */
	size_t bootstrap; /* replicates for ratio metrics; 0: 2000 */
	uint64_t seed;    /* of the bootstrap streams ("leaderboard/<suite>/<entry>/<metric>/<a>/<b>") */
} mb_leaderboard_opts;

/* Builds the tables from runs[0..n) (as mb_store_get_run reads them). opts
 * may be NULL. *out is disposed with mb_leaderboard_dispose. */
int mb_leaderboard_build(mb_leaderboard *out, const mb_run_result *runs, size_t n,
			 const mb_leaderboard_opts *opts, mb_error *err);
void mb_leaderboard_dispose(mb_leaderboard *lb);

/* "3" or "2-4" (an en dash in markdown and HTML). */
void mb_leaderboard_rank_text(char *buf, size_t cap, const mb_leaderboard_cell *c, int ascii);

/* Renderers. Markdown: a GitHub-flavoured table per (suite, entry), data
 * escaped so a '|' or newline in a name cannot break it; short hashes with
 * the full ones in the JSON, CSV and HTML forms. CSV: one row per (table,
 * row, metric), RFC 4180 quoting. HTML: a whole self-contained page. */
void mb_leaderboard_markdown(FILE *f, const mb_leaderboard *lb);
void mb_leaderboard_csv(FILE *f, const mb_leaderboard *lb);
json_t *mb_leaderboard_json(const mb_leaderboard *lb);
int mb_leaderboard_html(FILE *f, const mb_leaderboard *lb, mb_error *err);

#endif
