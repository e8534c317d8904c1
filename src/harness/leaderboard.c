/*
 * leaderboard.c: computes the leaderboard (leaderboard.h): tables of stored
 * runs, pairwise comparisons and rank intervals. src/report/leaderboard.c
 * renders it.
 * Legend: R rows of a table, N items of a row, P pairs of rows.
 */
#include <mechbench/leaderboard.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/item_index.h>
#include <mechbench/multiplicity.h>
#include <mechbench/paired.h>
#include <mechbench/stats.h>
#include <mechbench/verdict.h>
#include <mechbench/str.h>

/* A copy of s; a stored NULL (no label) becomes "". */
static char *dup_str(const char *s)
{
	return mb_str_dup(s ? s : "");
}

/* --- building -------------------------------------------------------------------------- */

typedef struct src_ref {
	const mb_run_result *run;
	const mb_entry_result *e;
} src_ref;

static void table_dispose(mb_leaderboard_table *t)
{
	for (size_t r = 0; t->rows && r < t->n_rows; r++) {
		free(t->rows[r].model);
		free(t->rows[r].command);
		for (size_t m = 0; t->rows[r].cells && m < t->n_metrics; m++) {
			for (size_t k = 0; k < t->rows[r].cells[m].n_strata; k++)
				free(t->rows[r].cells[m].strata[k].name);
			free(t->rows[r].cells[m].strata);
		}
		free(t->rows[r].cells);
	}
	free(t->rows);
	for (size_t m = 0; t->metrics && m < t->n_metrics; m++)
		free(t->metrics[m]);
	free(t->metrics);
	free(t->versions);
	free(t->kinds);
	free(t->directions);
	free(t->suite);
	free(t->entry);
	free(t->task);
}

void mb_leaderboard_dispose(mb_leaderboard *lb)
{
	if (!lb)
		return;
	for (size_t t = 0; t < lb->n_tables; t++)
		table_dispose(&lb->tables[t]);
	free(lb->tables);
	memset(lb, 0, sizeof(*lb));
}

/* The model's digest: its file's sha256, or the sha256 of the sha256sum
 * lines of its files (sorted by path, as stored). */
static void model_digest(char out[MB_SHA256_HEX_LEN], const mb_entry_result *e)
{
	if (e->n_model_files == 1) {
		memcpy(out, e->model_files[0].sha256, MB_SHA256_HEX_LEN);
		return;
	}
	{
		size_t len = 0, cap = 1;
		char *text;
		for (size_t i = 0; i < e->n_model_files; i++)
			cap += strlen(e->model_files[i].path) + MB_SHA256_HEX_LEN + 3;
		text = malloc(cap);
		if (!text) {
			snprintf(out, MB_SHA256_HEX_LEN, "unknown");
			return;
		}
		text[0] = '\0';
		for (size_t i = 0; i < e->n_model_files; i++)
			len += (size_t)snprintf(text + len, cap - len, "%s  %s\n",
						e->model_files[i].sha256, e->model_files[i].path);
		mb_sha256_hex_buf(out, text, len);
		free(text);
	}
}

/* A shell word: safe characters as they are, anything else single-quoted. */
static size_t shell_word(char *buf, size_t cap, const char *s)
{
	size_t n = 0;
	int plain = s[0] != '\0';
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      strchr("/._-+:=@%,", *p)))
			plain = 0;
	if (plain)
		return (size_t)snprintf(buf, cap, "%s", s);
	n += (size_t)snprintf(buf + n, cap > n ? cap - n : 0, "'");
	for (const char *p = s; *p; p++)
		n += (size_t)snprintf(buf + n, cap > n ? cap - n : 0, *p == '\'' ? "'\\''" : "%c", *p);
	n += (size_t)snprintf(buf + n, cap > n ? cap - n : 0, "'");
	return n;
}

static char *reproduce_command(const mb_run_result *run, const mb_entry_result *e)
{
	char buf[4096], w[2048];
	size_t n = 0;
	int same_model = 1;

	for (size_t i = 0; i < run->n_entries; i++)
		same_model &= strcmp(run->entries[i].model, e->model) == 0;
	shell_word(w, sizeof(w), run->prov.code_commit);
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "git checkout %s && mechbench run --suite ",
			      w);
	shell_word(w, sizeof(w), run->prov.spec_path);
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s", w);
	/* --model reproduces a run whose entries all ran one model folder (a
	 * checkpoint, or --model); otherwise the spec's own models. */
	if (same_model) {
		shell_word(w, sizeof(w), e->model);
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, " --model %s", w);
	}
	(void)n;
	return dup_str(buf);
}

static int oriented_better(double diff, mb_metric_direction d)
{
	return d == MB_HIGHER_IS_BETTER ? diff > 0 : diff < 0;
}

/* Two-sided p-value of "rows a and b have the same mean" on their shared
 * items (paired by content key, item_index.h), and the mean difference
 * a - b; *n_shared the items compared. The test is the gate's comparison
 * policy (mb_stats_compare): exact McNemar for binary metrics, the BCa
 * bootstrap inverted for ratio metrics, the paired t otherwise; bitwise
 * identical items give p = 1. */
static int pair_test(double *p, double *diff, size_t *n_shared, const mb_entry_result *a, int ma,
		     const mb_entry_result *b, int mbi, mb_metric_kind kind,
		     const mb_leaderboard_opts *o, const char *stream, mb_error *err)
{
	long *pair = malloc((a->n_items ? a->n_items : 1) * sizeof(*pair)); /* (N) */
	double *va = malloc((a->n_items ? a->n_items : 1) * sizeof(double)); /* (N) */
	double *vb = malloc((a->n_items ? a->n_items : 1) * sizeof(double)); /* (N) */
	mb_stats_compare_opts co;
	mb_stats_comparison cmp;
	size_t n = 0;
	int error = 0;

	*p = 1;
	*diff = 0;
	*n_shared = 0;
	if (!pair || !va || !vb) {
		error = mb_error_oom(err, "paired values", a->n_items * sizeof(double));
		goto cleanup;
	}
	if ((error = mb_item_index_pair(pair, n_shared, a, b, err)) < 0)
		goto cleanup;
	for (size_t i = 0; i < a->n_items; i++) {
		if (pair[i] < 0)
			continue;
		va[n] = a->values[i * a->n_metrics + (size_t)ma];
		vb[n] = b->values[(size_t)pair[i] * b->n_metrics + (size_t)mbi];
		n++;
	}
	if (n < 2)
		goto cleanup;
	memset(&co, 0, sizeof(co));
	co.kind = (mb_stats_kind)kind;
	co.alpha = 0.025; /* any level: the p-value does not depend on it */
	co.seed = o->seed;
	co.stream = stream;
	co.boot_B = o->bootstrap;
	co.boot_ci = MB_STATS_BOOT_CI_BCA;
	if (kind == MB_METRIC_BINARY && mb_stats_mcnemar_exact(&cmp.mcnemar, va, vb, n, NULL) < 0)
		co.kind = MB_STATS_KIND_CONTINUOUS; /* not 0/1 after all: the t test */
	if ((error = mb_stats_compare(&cmp, va, vb, n, &co, err)) < 0)
		goto cleanup;
	*p = cmp.p_two_sided;
	*diff = cmp.verdict == MB_STATS_VERDICT_IDENTICAL ? 0 : cmp.diff.mean;
cleanup:
	free(pair);
	free(va);
	free(vb);
	return error;
}

/* Rank intervals of metric column m of table t (rows refer to src). */
static int rank_metric(mb_leaderboard_table *t, const src_ref *src, size_t m,
		       const mb_leaderboard_opts *o, mb_error *err)
{
	size_t R = t->n_rows, P = 0, k = 0, present = 0;
	size_t *pa = NULL, *pb = NULL;       /* (P) the rows of each pair */
	double *p = NULL, *adj = NULL, *df = NULL; /* (P) */
	int error = 0;

	for (size_t r = 0; r < R; r++)
		present += (size_t)t->rows[r].cells[m].present;
	P = present * (present - (present ? 1 : 0)) / 2;
	pa = malloc((P ? P : 1) * sizeof(*pa));
	pb = malloc((P ? P : 1) * sizeof(*pb));
	p = calloc(P ? P : 1, sizeof(*p));
	adj = malloc((P ? P : 1) * sizeof(*adj));
	df = malloc((P ? P : 1) * sizeof(*df));
	if (!pa || !pb || !p || !adj || !df) {
		error = mb_error_oom(err, "pairwise tests", P * sizeof(double));
		goto cleanup;
	}
	for (size_t a = 0; a < R; a++) {
		if (!t->rows[a].cells[m].present)
			continue;
		for (size_t b = a + 1; b < R; b++) {
			const mb_entry_result *ea = src[a].e, *eb = src[b].e;
			char stream[512];
			size_t shared;
			if (!t->rows[b].cells[m].present)
				continue;
			snprintf(stream, sizeof(stream), "leaderboard/%s/%s/%s@%d/%lld/%lld", t->suite,
				 t->entry, t->metrics[m], t->versions[m], (long long)src[a].run->id,
				 (long long)src[b].run->id);
			error = pair_test(&p[k], &df[k], &shared, ea,
					  mb_entry_result_metric(ea, t->metrics[m]), eb,
					  mb_entry_result_metric(eb, t->metrics[m]), t->kinds[m], o,
					  stream, err);
			if (error < 0) {
				mb_error_prefix(err, "%s/%s: runs %lld and %lld", t->entry,
						t->metrics[m], (long long)src[a].run->id,
						(long long)src[b].run->id);
				goto cleanup;
			}
			pa[k] = a;
			pb[k] = b;
			k++;
		}
	}
	if ((error = mb_stats_holm(adj, p, k, err)) < 0)
		goto cleanup;
	for (size_t r = 0; r < R; r++) {
		t->rows[r].cells[m].rank_lo = 1;
		t->rows[r].cells[m].rank_hi = present;
	}
	for (size_t q = 0; q < k; q++) {
		mb_leaderboard_cell *ca = &t->rows[pa[q]].cells[m], *cb = &t->rows[pb[q]].cells[m];
		if (!(adj[q] <= o->alpha) || df[q] == 0)
			continue;
		if (oriented_better(df[q], t->directions[m])) { /* a better than b */
			cb->rank_lo++;
			ca->rank_hi--;
		} else {
			ca->rank_lo++;
			cb->rank_hi--;
		}
	}
cleanup:
	free(pa);
	free(pb);
	free(p);
	free(adj);
	free(df);
	return error;
}

static const mb_leaderboard_table *sort_table; /* qsort has no context argument */

static int cmp_rows(const void *x, const void *y)
{
	const mb_leaderboard_row *a = x, *b = y;
	const mb_leaderboard_cell *ca = &a->cells[0], *cb = &b->cells[0];
	if (ca->present != cb->present)
		return ca->present ? -1 : 1;
	if (ca->present) {
		double ma = ca->mean, mbv = cb->mean;
		if (ca->rank_lo != cb->rank_lo)
			return ca->rank_lo < cb->rank_lo ? -1 : 1;
		if (ca->rank_hi != cb->rank_hi)
			return ca->rank_hi < cb->rank_hi ? -1 : 1;
		if (sort_table->directions[0] == MB_LOWER_IS_BETTER) {
			ma = -ma;
			mbv = -mbv;
		}
		if (ma != mbv)
			return ma > mbv ? -1 : 1;
	}
	return a->run_id < b->run_id ? -1 : a->run_id > b->run_id;
}

static int build_table(mb_leaderboard_table *t, const src_ref *src, size_t R,
		       const mb_leaderboard_opts *o, mb_error *err)
{
	int error = 0;

	/* Columns: every (metric, version) in order of first appearance. */
	for (size_t r = 0; r < R; r++)
		for (size_t m = 0; m < src[r].e->n_metrics; m++) {
			const mb_metric_info *mi = &src[r].e->metrics[m];
			size_t c = 0;
			while (c < t->n_metrics && (strcmp(t->metrics[c], mi->name) != 0 ||
						    t->versions[c] != mi->version))
				c++;
			if (c < t->n_metrics)
				continue;
			{
				size_t nm = t->n_metrics + 1;
				char **names = realloc(t->metrics, nm * sizeof(*names));
				int *vers;
				mb_metric_kind *kinds;
				mb_metric_direction *dirs;
				if (names)
					t->metrics = names;
				vers = names ? realloc(t->versions, nm * sizeof(*vers)) : NULL;
				if (vers)
					t->versions = vers;
				kinds = vers ? realloc(t->kinds, nm * sizeof(*kinds)) : NULL;
				if (kinds)
					t->kinds = kinds;
				dirs = kinds ? realloc(t->directions, nm * sizeof(*dirs)) : NULL;
				if (dirs)
					t->directions = dirs;
				if (!dirs || !(t->metrics[t->n_metrics] = dup_str(mi->name)))
					return mb_error_oom(err, "leaderboard columns", nm);
				t->versions[t->n_metrics] = mi->version;
				t->kinds[t->n_metrics] = mi->kind;
				t->directions[t->n_metrics] = mi->direction;
				t->n_metrics = nm;
			}
		}
	if (!(t->rows = calloc(R ? R : 1, sizeof(*t->rows))))
		return mb_error_oom(err, "leaderboard rows", R);
	for (size_t r = 0; r < R; r++) {
		mb_leaderboard_row *row = &t->rows[r];
		const mb_run_result *run = src[r].run;
		const mb_entry_result *e = src[r].e;
		t->n_rows = r + 1;
		row->run_id = run->id;
		row->model = dup_str(e->model);
		row->command = reproduce_command(run, e);
		row->cells = calloc(t->n_metrics ? t->n_metrics : 1, sizeof(*row->cells));
		if (!row->model || !row->command || !row->cells)
			return mb_error_oom(err, "leaderboard row", t->n_metrics);
		snprintf(row->code_commit, sizeof(row->code_commit), "%s", run->prov.code_commit);
		row->code_dirty = run->prov.code_dirty;
		snprintf(row->spec_blob, sizeof(row->spec_blob), "%s", run->prov.spec_blob);
		snprintf(row->spec_path, sizeof(row->spec_path), "%s", run->prov.spec_path);
		memcpy(row->dataset_sha256, e->dataset_sha256, MB_SHA256_HEX_LEN);
		model_digest(row->model_sha256, e);
		for (size_t c = 0; c < t->n_metrics; c++) {
			int m = mb_entry_result_metric(e, t->metrics[c]);
			if (m < 0 || e->metrics[m].version != t->versions[c])
				continue;
			row->cells[c].present = 1;
			row->cells[c].n = e->aggregates[m].n;
			row->cells[c].mean = e->aggregates[m].mean;
			row->cells[c].lo = e->aggregates[m].lo;
			row->cells[c].hi = e->aggregates[m].hi;
			if (!e->n_strata || !e->strata[0].aggregates)
				continue;
			row->cells[c].strata = calloc(e->n_strata, sizeof(*row->cells[c].strata));
			if (!row->cells[c].strata)
				return mb_error_oom(err, "leaderboard strata", e->n_strata);
			for (size_t k = 0; k < e->n_strata; k++) {
				mb_leaderboard_stratum *ls = &row->cells[c].strata[k];
				const mb_aggregate *a = &e->strata[k].aggregates[m];
				if (!(ls->name = dup_str(e->strata[k].name)))
					return mb_error_oom(err, "stratum name", 0);
				row->cells[c].n_strata = k + 1;
				ls->ood = e->strata[k].ood;
				ls->n = e->strata[k].n;
				ls->mean = a->mean;
				ls->lo = a->lo;
				ls->hi = a->hi;
			}
		}
	}
	for (size_t c = 0; c < t->n_metrics; c++)
		if ((error = rank_metric(t, src, c, o, err)) < 0)
			return error;
	if (t->n_metrics) {
		sort_table = t;
		qsort(t->rows, t->n_rows, sizeof(*t->rows), cmp_rows);
	}
	return 0;
}

int mb_leaderboard_build(mb_leaderboard *out, const mb_run_result *runs, size_t n,
			 const mb_leaderboard_opts *opts, mb_error *err)
{
	mb_leaderboard_opts o = {0.05, 2000, 0};
	src_ref *src = NULL; /* rows of the table being built */
	size_t total = 0;
	int error = 0;

	memset(out, 0, sizeof(*out));
	if (opts) {
		o = *opts;
		if (o.alpha == 0)
			o.alpha = 0.05;
		if (o.bootstrap == 0)
			o.bootstrap = 2000;
	}
	if (!(o.alpha > 0 && o.alpha < 1))
		return mb_error_set(err, MB_EINVALID, "leaderboard: alpha %g is not in (0, 1)",
				    o.alpha);
	out->alpha = o.alpha;
	for (size_t i = 0; i < n; i++)
		total += runs[i].n_entries;
	if (!(src = malloc((total ? total : 1) * sizeof(*src))))
		return mb_error_oom(err, "leaderboard", total);
	out->tables = calloc(total ? total : 1, sizeof(*out->tables));
	if (!out->tables) {
		free(src);
		return mb_error_oom(err, "leaderboard tables", total);
	}
	/* Tables in order of first appearance of (suite, entry). */
	for (size_t i = 0; i < n && !error; i++)
		for (size_t j = 0; j < runs[i].n_entries && !error; j++) {
			const char *suite = runs[i].prov.suite, *entry = runs[i].entries[j].name;
			size_t R = 0;
			mb_leaderboard_table *t;
			int seen = 0;
			for (size_t k = 0; k < out->n_tables && !seen; k++)
				seen = strcmp(out->tables[k].suite, suite) == 0 &&
				       strcmp(out->tables[k].entry, entry) == 0;
			if (seen)
				continue;
			for (size_t a = i; a < n; a++) {
				const mb_entry_result *e = mb_run_result_entry(&runs[a], entry);
				if (e && strcmp(runs[a].prov.suite, suite) == 0) {
					src[R].run = &runs[a];
					src[R].e = e;
					R++;
				}
			}
			t = &out->tables[out->n_tables++];
			t->suite = dup_str(suite);
			t->entry = dup_str(entry);
			t->task = dup_str(runs[i].entries[j].task);
			if (!t->suite || !t->entry || !t->task)
				error = mb_error_oom(err, "leaderboard table", 0);
			else
				error = build_table(t, src, R, &o, err);
		}
	free(src);
	if (error < 0)
		mb_leaderboard_dispose(out);
	return error;
}
