/*
 * cmd_attribute.c: `mechbench attribute`: AtP, AtP*, EAP or EAP-IG scores of
 * a model on a task's clean/corrupted pairs, written as JSON, optionally with
 * exact patching of every component and the agreement of the two
 * (attribution.h; src/interp/attribution.c).
 *
 * Legend: B batch, T positions, L layers, H heads, M d_mlp, C components,
 * S senders, R receivers, N items.
 *
 * Pairs per task: attr_pairs.h (induction, ioi, edit; tasks[] is in its format
 * order).
 */
#include "cli.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <omp.h>

#include <mechbench/attr_pairs.h>
#include <mechbench/attribution.h>
#include <mechbench/dataset.h>
#include <mechbench/file.h>
#include <mechbench/model.h>

#include "suite_cli.h"

typedef struct attr_args {
	const char *model, *dataset, *out, *truth;
	int task;   /* index in tasks[] */
	int method; /* index in methods[] */
	int exact, no_qk_fix, no_grad_drop;
	int64_t batch, items, steps, boot, k, seed, threads, bos;
	double frac;
} attr_args;

static const char *const methods[] = {"atp", "atp-star", "eap", "eap-ig", NULL};
static const char *const tasks[] = {"induction", "ioi", "edit", NULL};

static const mb_cli_opt attr_opts[] = {
	{MB_OPT(PATH, "--model", attr_args, model), .meta = "DIR", .required = 1,
	 .help = "checkpoint folder (config.json, model.safetensors)"},
	{MB_OPT(ENUM, "--task", attr_args, task), .choices = tasks, .required = 1,
	 .help = "how an item becomes a clean/corrupted pair and a metric (see below)"},
	{MB_OPT(PATH, "--dataset", attr_args, dataset), .meta = "FILE", .required = 1,
	 .help = "a mechbench dataset of that task, or an attribution dataset of its items "
		 "(\"of\": the task; datasets/*.jsonl)"},
	{MB_OPT(ENUM, "--method", attr_args, method), .choices = methods, .required = 1,
	 .help = "atp (attribution patching), atp-star (QK fix + GradDrop), eap (edge "
		 "attribution patching), eap-ig (EAP with integrated gradients)"},
	{MB_OPT(PATH, "--out", attr_args, out), .meta = "FILE",
	 .help = "write the JSON there (default: stdout)"},
	{MB_OPT(FLAG, "--exact", attr_args, exact),
	 .help = "also patch every head and MLP (and every head's queries and keys) exactly and "
		 "report the agreement (Spearman, top-k precision and recall with bootstrap CIs, the "
		 "disagreeing components)"},
	{MB_OPT(FLAG, "--no-qk-fix", attr_args, no_qk_fix),
	 .help = "atp-star: linearise through the softmax for queries and keys (ablation)"},
	{MB_OPT(FLAG, "--no-grad-drop", attr_args, no_grad_drop),
	 .help = "atp-star: skip GradDrop (the QK fix alone; scores stay signed)"},
	{MB_OPT(STRING, "--truth", attr_args, truth), .meta = "IDS",
	 .help = "comma-separated component ids of a known circuit (\"a1.3,a2.0,m1\"): "
		 "precision and recall of the top-|truth| components, of the method and (with "
		 "--exact) of exact patching"},
	{MB_OPT(INT, "--items", attr_args, items), .meta = "N", .range = ">= 0",
	 .help = "use the first N items (default: all)"},
	{MB_OPT(INT, "--batch", attr_args, batch), .meta = "B", .range = "[1, 1024]", .def = "8",
	 .help = "items per forward"},
	{MB_OPT(INT, "--steps", attr_args, steps), .meta = "M", .range = "[1, 1000]", .def = "5",
	 .help = "eap-ig: interpolation steps"},
	{MB_OPT(INT, "--k", attr_args, k), .meta = "K", .range = ">= 0",
	 .help = "top-k size for the agreement (default: the exact circuit's size, --frac)"},
	{MB_OPT(DOUBLE, "--frac", attr_args, frac), .meta = "F", .range = "(0, 1]", .def = "0.1",
	 .help = "the exact circuit: components with |mean effect| >= F x the largest"},
	{MB_OPT(INT, "--boot", attr_args, boot), .meta = "N", .range = "[0, 100000]", .def = "1000",
	 .help = "bootstrap resamples of items for the CIs"},
	{MB_OPT(INT, "--seed", attr_args, seed), .meta = "S", .range = ">= 0", .def = "0",
	 .help = "seed of the bootstrap stream"},
	{MB_OPT(INT, "--bos", attr_args, bos), .meta = "ID", .range = ">= -1", .def = "-1",
	 .help = "ioi, edit: a token id prepended to both prompts (default: none)"},
	MB_CLI_OPT_THREADS(attr_args, threads),
};

static const mb_cli_cmd attr_cmd = {
	.name = "attribute",
	.opts = attr_opts,
	.n_opts = MB_CLI_N(attr_opts),
	.about =
	"Gradient estimates of activation patching for every component at once: per\n"
	"item, (a_corr - a_clean) . dM/da at the clean run (AtP), with the QK fix and\n"
	"GradDrop (AtP*: magnitudes), or per edge of the graph of heads and MLPs (EAP,\n"
	"EAP-IG). Scores are means over items, in the sign of exact patching:\n"
	"M(clean with the node corrupted) - M(clean).\n"
	"Tasks: induction (clean [bos] R R, corrupted [bos] R C; M = loss on the second\n"
	"repeat), ioi (clean prompt, corrupted ABC prompt; M = logit(IO) - logit(S)),\n"
	"edit (an edit request's prompt, corrupted by a subject whose object is\n"
	"target_new; M = logit(target_true) - logit(target_new)).\n",
	.notes =
	"JSON: {\"kind\": \"attribution\", \"method\", \"task\", \"n_items\", \"metric\",\n"
	"\"components\": [{\"id\", \"layer\", \"head\", \"kind\", \"score\", \"exact\"}],\n"
	"\"heads\": {\"z\", \"q\", \"k\", \"v\"} (L x H), \"mlp\" (L), \"neurons\" (L x M),\n"
	"\"resid\" (L x T), \"edges\" [{\"from\", \"to\", \"score\"}] (eap, eap-ig),\n"
	"\"agreement\", \"disagreements\", \"qk_nodes\", \"qk_agreement\", \"truth\"}.\n\n"
	"Exit codes: 0 success, 1 bad model, dataset or item (one line naming it),\n"
	"2 usage error.\n",
};

/* ---- accumulation ------------------------------------------------------------- */

/* Sums over items (divided at the end). */
typedef struct totals {
	int L, H, M, T, C, S, R, N;
	double *z, *q, *k, *v, *mlp, *neuron, *resid, *edges, mc, mx;
	int *resid_n;            /* (L T) items with position t */
	double *comp, *exact;    /* (N, C) per-item components */
	double *qk, *exqk;       /* (N, 2, L, H) per-item query and key nodes */
} totals;

static int totals_init(totals *t, const mb_engine_config *c, int T, int N, int edges,
		       mb_error *err)
{
	memset(t, 0, sizeof(*t));
	t->L = c->n_layer;
	t->H = c->n_head;
	t->M = c->attn_only ? 0 : c->d_mlp;
	t->T = T;
	t->N = N;
	t->C = mb_attr_n_components(c);
	t->S = edges ? mb_attr_n_senders(c) : 0;
	t->R = edges ? mb_attr_n_receivers(c) : 0;
	size_t LH = (size_t)t->L * t->H;
	t->z = calloc(LH, sizeof(double));
	t->q = calloc(LH, sizeof(double));
	t->k = calloc(LH, sizeof(double));
	t->v = calloc(LH, sizeof(double));
	t->mlp = calloc((size_t)t->L, sizeof(double));
	t->neuron = calloc((size_t)t->L * (t->M ? t->M : 1), sizeof(double));
	t->resid = calloc((size_t)t->L * T, sizeof(double));
	t->resid_n = calloc((size_t)t->L * T, sizeof(int));
	t->edges = calloc(t->S > 0 ? (size_t)t->S * t->R : 1, sizeof(double));
	t->comp = calloc((size_t)N * t->C, sizeof(double));
	t->exact = calloc((size_t)N * t->C, sizeof(double));
	t->qk = calloc((size_t)N * 2 * LH, sizeof(double));
	t->exqk = calloc((size_t)N * 2 * LH, sizeof(double));
	if (!t->qk || !t->exqk ||
	    !t->z || !t->q || !t->k || !t->v || !t->mlp || !t->neuron || !t->resid || !t->resid_n ||
	    !t->edges || !t->comp || !t->exact)
		return mb_error_oom(err, "attribution totals", 0);
	return 0;
}

static void totals_dispose(totals *t)
{
	free(t->z);
	free(t->q);
	free(t->k);
	free(t->v);
	free(t->mlp);
	free(t->neuron);
	free(t->resid);
	free(t->resid_n);
	free(t->edges);
	free(t->comp);
	free(t->exact);
	free(t->qk);
	free(t->exqk);
}

/* Adds batch scores s (items i0..) in item order. */
static void totals_add(totals *t, const mb_attr_scores *s, const mb_attr_pairs *p, int i0)
{
	size_t LH = (size_t)t->L * t->H;

	for (int b = 0; b < s->batch; b++) {
		for (size_t i = 0; i < LH; i++) {
			t->z[i] += s->z[b * LH + i];
			t->q[i] += s->q[b * LH + i];
			t->k[i] += s->k[b * LH + i];
			t->v[i] += s->v[b * LH + i];
		}
		for (int l = 0; l < t->L; l++) {
			if (s->mlp)
				t->mlp[l] += s->mlp[(size_t)b * t->L + l];
			for (int n = 0; n < t->M; n++)
				t->neuron[(size_t)l * t->M + n] +=
					s->neuron[((size_t)b * t->L + l) * t->M + n];
			for (int x = 0; x < p->len[b]; x++) {
				t->resid[(size_t)l * t->T + x] += s->resid[((size_t)b * t->L + l) * s->seq + x];
				t->resid_n[(size_t)l * t->T + x]++;
			}
		}
		for (size_t i = 0; s->edges && i < (size_t)t->S * t->R; i++)
			t->edges[i] += s->edges[(size_t)b * t->S * t->R + i];
		memcpy(t->qk + ((size_t)i0 + b) * 2 * LH, s->q + b * LH, sizeof(double) * LH);
		memcpy(t->qk + (((size_t)i0 + b) * 2 + 1) * LH, s->k + b * LH, sizeof(double) * LH);
		t->mc += s->metric_clean[b];
		t->mx += s->metric_corrupt[b];
	}
	mb_attr_components(t->comp + (size_t)i0 * t->C, s);
}

/* ---- JSON --------------------------------------------------------------------- */

static json_t *jarr(const double *v, int n, double div)
{
	json_t *a = json_array();
	for (int i = 0; a && i < n; i++)
		json_array_append_new(a, json_real(v[i] / div));
	return a;
}

static json_t *jmat(const double *v, int rows, int cols, double div)
{
	json_t *a = json_array();
	for (int r = 0; a && r < rows; r++)
		json_array_append_new(a, jarr(v + (size_t)r * cols, cols, div));
	return a;
}

static json_t *jci(double est, double lo, double hi)
{
	return json_pack("{s:f, s:f, s:f}", "estimate", isfinite(est) ? est : 0.0, "lo",
			 isfinite(lo) ? lo : 0.0, "hi", isfinite(hi) ? hi : 0.0);
}

static json_t *jagree(const mb_attr_agreement *g)
{
	json_t *o = json_pack("{s:i, s:i, s:i}", "items", g->n_items, "components",
			      g->n_components, "k", g->k);
	if (isfinite(g->spearman))
		json_object_set_new(o, "spearman", jci(g->spearman, g->spearman_lo, g->spearman_hi));
	json_object_set_new(o, "precision", jci(g->precision, g->precision_lo, g->precision_hi));
	json_object_set_new(o, "recall", jci(g->recall, g->recall_lo, g->recall_hi));
	return o;
}

/* Parses --truth into a (C) mask. */
static int parse_truth(uint8_t *mask, const char *text, const mb_engine_config *c, mb_error *err)
{
	int C = mb_attr_n_components(c);
	const char *p = text;

	memset(mask, 0, (size_t)C);
	while (*p) {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		char name[32];
		int found = 0;
		for (int i = 0; i < C && !found; i++) {
			mb_attr_component_name(name, sizeof(name), c, i);
			if (strlen(name) == n && strncmp(name, p, n) == 0) {
				mask[i] = 1;
				found = 1;
			}
		}
		if (!found)
			return mb_error_set(err, MB_EINVALID, "--truth: '%.*s' is not a component of "
					    "this model (a<layer>.<head> or m<layer>)", (int)n, p);
		p += n + (e != NULL);
	}
	return 0;
}

static json_t *report(const attr_args *a, const mb_dataset *ds, const mb_model *m, totals *t,
		      int exact, const uint8_t *truth, mb_error *err, int *rc)
{
	const mb_engine_config *c = &m->cfg;
	int N = t->N, C = t->C, LH = t->L * t->H;
	json_t *o = json_object(), *comps = json_array(), *heads = json_object();
	double *mean = calloc((size_t)C * 2, sizeof(double)), *mex = mean + C;
	int *ia = NULL, *ie = NULL, k;
	mb_attr_method method = (mb_attr_method)a->method;
	int use_abs = method == MB_ATTR_ATP_STAR && !a->no_grad_drop;
	char name[64];

	*rc = 0;
	if (!o || !comps || !heads || !mean) {
		*rc = mb_error_oom(err, "report", 0);
		goto done;
	}
	for (int i = 0; i < N; i++)
		for (int j = 0; j < C; j++) {
			mean[j] += t->comp[(size_t)i * C + j] / N;
			mex[j] += t->exact[(size_t)i * C + j] / N;
		}
	json_object_set_new(o, "kind", json_string("attribution"));
	json_object_set_new(o, "version", json_integer(1));
	json_object_set_new(o, "method", json_string(methods[a->method]));
	if (method == MB_ATTR_ATP_STAR) {
		json_object_set_new(o, "qk_fix", json_boolean(!a->no_qk_fix));
		json_object_set_new(o, "grad_drop", json_boolean(!a->no_grad_drop));
	}
	json_object_set_new(o, "task", json_string(tasks[a->task]));
	json_object_set_new(o, "model", json_string(a->model));
	json_object_set_new(o, "dataset", json_string(a->dataset));
	json_object_set_new(o, "dataset_sha256", json_string(ds->sha256));
	json_object_set_new(o, "n_items", json_integer(N));
	if (method == MB_ATTR_EAP_IG)
		json_object_set_new(o, "ig_steps", json_integer(a->steps));
	json_object_set_new(o, "metric",
			    json_string(a->task == 0
						? "mean cross-entropy of the second repeat (nats)"
						: "logit(IO) - logit(S) at the last position"));
	json_object_set_new(o, "metric_clean", json_real(t->mc / N));
	json_object_set_new(o, "metric_corrupt", json_real(t->mx / N));
	json_object_set_new(o, "scores_are", json_string(use_abs ? "magnitudes (AtP* GradDrop)"
							      : "signed, M(patched) - M(clean)"));
	for (int j = 0; j < C; j++) {
		json_t *x;
		mb_attr_component_name(name, sizeof(name), c, j);
		x = json_pack("{s:s, s:i, s:s, s:f}", "id", name, "layer",
			      j < LH ? j / t->H : j - LH, "kind", j < LH ? "head" : "mlp", "score",
			      mean[j]);
		if (j < LH)
			json_object_set_new(x, "head", json_integer(j % t->H));
		if (exact)
			json_object_set_new(x, "exact", json_real(mex[j]));
		if (truth)
			json_object_set_new(x, "in_truth", json_boolean(truth[j]));
		json_array_append_new(comps, x);
	}
	json_object_set_new(o, "components", comps);
	json_object_set_new(heads, "z", jmat(t->z, t->L, t->H, N));
	json_object_set_new(heads, "q", jmat(t->q, t->L, t->H, N));
	json_object_set_new(heads, "k", jmat(t->k, t->L, t->H, N));
	json_object_set_new(heads, "v", jmat(t->v, t->L, t->H, N));
	json_object_set_new(o, "heads", heads);
	if (t->M) {
		json_object_set_new(o, "mlp", jarr(t->mlp, t->L, N));
		json_object_set_new(o, "neurons", jmat(t->neuron, t->L, t->M, N));
	}
	{
		json_t *res = json_array();
		for (int l = 0; l < t->L; l++) {
			json_t *row = json_array();
			for (int x = 0; x < t->T; x++)
				json_array_append_new(row, json_real(t->resid_n[l * t->T + x]
					? t->resid[(size_t)l * t->T + x] / t->resid_n[l * t->T + x] : 0.0));
			json_array_append_new(res, row);
		}
		json_object_set_new(o, "resid", res);
	}
	if (t->S) {
		json_t *edges = json_array();
		char from[32], to[32];
		for (int r = 0; r < t->R; r++)
			for (int s = 0; s < mb_attr_n_senders_of(c, r); s++) {
				mb_attr_sender_name(from, sizeof(from), c, s);
				mb_attr_receiver_name(to, sizeof(to), c, r);
				json_array_append_new(edges, json_pack("{s:s, s:s, s:f}", "from", from,
								       "to", to, "score",
								       t->edges[(size_t)r * t->S + s] / N));
			}
		json_object_set_new(o, "edges", edges);
	}
	if (exact) {
		mb_attr_agreement g;
		json_t *dis = json_array();
		k = a->k > 0 ? (int)(a->k < C ? a->k : C) : mb_attr_circuit_size(mex, C, a->frac);
		if ((*rc = mb_attr_agree(&g, t->comp, t->exact, NULL, N, C, k, use_abs, (int)a->boot,
					 (uint64_t)a->seed, err)) < 0)
			goto done;
		json_object_set_new(o, "agreement", jagree(&g));
		ia = malloc(sizeof(int) * (size_t)k * 2);
		if (!ia) {
			*rc = mb_error_oom(err, "report", 0);
			goto done;
		}
		ie = ia + k;
		mb_attr_topk(ia, mean, C, k);
		mb_attr_topk(ie, mex, C, k);
		for (int j = 0; j < C; j++) {
			int in_a = 0, in_e = 0;
			for (int i = 0; i < k; i++) {
				in_a |= ia[i] == j;
				in_e |= ie[i] == j;
			}
			if (in_a == in_e)
				continue;
			mb_attr_component_name(name, sizeof(name), c, j);
			json_array_append_new(dis, json_pack("{s:s, s:f, s:f, s:b, s:b}", "id", name,
							     "exact", mex[j], "approx", mean[j],
							     "in_exact_top", in_e, "in_approx_top",
							     in_a));
		}
		json_object_set_new(o, "disagreements", dis);
		/* query and key nodes: what the QK fix is for */
		{
			int Q = 2 * LH, kq;
			double *mq = calloc((size_t)Q * 2, sizeof(double)), *meq = mq + Q;
			json_t *nodes = json_array();
			if (!mq) {
				*rc = mb_error_oom(err, "report", 0);
				goto done;
			}
			for (int i = 0; i < N; i++)
				for (int j = 0; j < Q; j++) {
					mq[j] += t->qk[(size_t)i * Q + j] / N;
					meq[j] += t->exqk[(size_t)i * Q + j] / N;
				}
			for (int j = 0; j < Q; j++) {
				snprintf(name, sizeof(name), "a%d.%d.%c", (j % LH) / t->H, j % t->H,
					 j < LH ? 'q' : 'k');
				json_array_append_new(nodes, json_pack("{s:s, s:f, s:f}", "id", name,
								       "score", mq[j], "exact", meq[j]));
			}
			json_object_set_new(o, "qk_nodes", nodes);
			kq = a->k > 0 ? (int)(a->k < Q ? a->k : Q) : mb_attr_circuit_size(meq, Q, a->frac);
			*rc = mb_attr_agree(&g, t->qk, t->exqk, NULL, N, Q, kq, use_abs, (int)a->boot,
					    (uint64_t)a->seed, err);
			free(mq);
			if (*rc < 0)
				goto done;
			json_object_set_new(o, "qk_agreement", jagree(&g));
		}
	}
	if (truth) {
		mb_attr_agreement g;
		json_t *tr = json_object();
		if ((*rc = mb_attr_agree(&g, t->comp, NULL, truth, N, C, 0, use_abs, (int)a->boot,
					 (uint64_t)a->seed, err)) < 0)
			goto done;
		json_object_set_new(tr, methods[a->method], jagree(&g));
		if (exact) {
			if ((*rc = mb_attr_agree(&g, t->exact, NULL, truth, N, C, 0, 0, (int)a->boot,
						 (uint64_t)a->seed, err)) < 0)
				goto done;
			json_object_set_new(tr, "exact", jagree(&g));
		}
		json_object_set_new(o, "truth", tr);
	}

done:
	free(mean);
	free(ia);
	if (*rc < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* ---- the command ---------------------------------------------------------------- */

int mb_cmd_attribute(int argc, char **argv)
{
	attr_args a = {0};
	mb_cli_parsed parsed;
	mb_error err = {0};
	mb_dataset ds = {0};
	mb_model *m = NULL;
	mb_engine *e = NULL;
	mb_attr *at = NULL;
	uint8_t *truth = NULL;
	totals t = {0};
	json_t *doc = NULL;
	const char *task;
	int rc, status, have_ds = 0, N, Tmax = 0;

	rc = mb_cli_parse(&parsed, &a, &attr_cmd, argc, argv);
	if (rc == MB_CLI_GO)
		rc = mb_cli_only_with(&parsed, &attr_cmd, "--no-qk-fix",
				      a.method == MB_ATTR_ATP_STAR, "--method atp-star");
	if (rc == MB_CLI_GO)
		rc = mb_cli_only_with(&parsed, &attr_cmd, "--no-grad-drop",
				      a.method == MB_ATTR_ATP_STAR, "--method atp-star");
	if (rc == MB_CLI_GO)
		rc = mb_cli_only_with(&parsed, &attr_cmd, "--steps", a.method == MB_ATTR_EAP_IG,
				      "--method eap-ig");
	if (rc != MB_CLI_GO) {
		mb_cli_args_dispose(&a, &attr_cmd);
		return rc;
	}
	task = tasks[a.task];
	if (a.threads > 0)
		omp_set_num_threads((int)a.threads);
	rc = mb_cli_check_outputs(&(mb_cli_path){"--out", a.out}, 1,
				  &(mb_cli_path){"--dataset", a.dataset}, 1, &err);
	if (rc == 0 && (rc = mb_dataset_load(&ds, a.dataset, &err)) == 0)
		have_ds = 1;
	/* the task's own dataset, or an attribution dataset of its items */
	if (rc == 0 && strcmp(ds.task, task) != 0 &&
	    (strcmp(ds.task, "attribution") != 0 ||
	     !json_is_string(json_object_get(ds.params, "of")) ||
	     strcmp(json_string_value(json_object_get(ds.params, "of")), task) != 0))
		rc = mb_error_set(&err, MB_EINVALID, "%s: a dataset of task '%s', not '%s' (nor "
				  "an attribution dataset of its items)", a.dataset, ds.task, task);
	if (rc == 0)
		rc = mb_model_load(&m, a.model, &err);
	N = (int)ds.items.n;
	if (rc == 0 && a.items > 0 && a.items < N)
		N = (int)a.items;
	if (rc == 0 && N < 1)
		rc = mb_error_set(&err, MB_EINVALID, "%s: no items", a.dataset);
	/* the longest pair fixes the engine's size */
	for (int i = 0; rc == 0 && i < N; i++) {
		mb_attr_pairs p;
		rc = mb_attr_pairs_load(&p, &ds.items.items[i], 1, (mb_attr_format)a.task, &m->cfg,
					m->tok, (int)a.bos, &err);
		if (rc == 0 && p.T > Tmax)
			Tmax = p.T;
		mb_attr_pairs_dispose(&p);
	}
	if (rc == 0 && a.truth) {
		truth = malloc((size_t)mb_attr_n_components(&m->cfg));
		rc = truth ? parse_truth(truth, a.truth, &m->cfg, &err)
			   : mb_error_oom(&err, "--truth", 0);
	}
	if (rc == 0) {
		mb_engine_opts eo = {(int)(a.batch < N ? a.batch : N), Tmax, 1};
		rc = mb_engine_init(&e, &m->cfg, &m->w, &eo, &err);
	}
	if (rc == 0)
		rc = mb_attr_init(&at, e, &err);
	if (rc == 0)
		rc = totals_init(&t, &m->cfg, Tmax, N,
				 a.method == MB_ATTR_EAP || a.method == MB_ATTR_EAP_IG, &err);
	for (int i0 = 0; rc == 0 && i0 < N; i0 += (int)a.batch) {
		int B = N - i0 < a.batch ? N - i0 : (int)a.batch;
		mb_attr_pairs p;
		mb_attr_scores *s = NULL;
		mb_attr_opts o = {.method = (mb_attr_method)a.method, .ig_steps = (int)a.steps,
				  .no_qk_fix = a.no_qk_fix, .no_grad_drop = a.no_grad_drop};

		rc = mb_attr_pairs_load(&p, &ds.items.items[i0], B, (mb_attr_format)a.task, &m->cfg,
					m->tok, (int)a.bos, &err);
		if (rc == 0)
			rc = mb_attr_scores_init(&s, &m->cfg, B, p.T, t.S > 0, &err);
		if (rc == 0)
			rc = mb_attr_run(s, at, &p.ab, &o, &err);
		if (rc == 0)
			totals_add(&t, s, &p, i0);
		if (rc == 0 && a.exact)
			rc = mb_attr_exact(t.exact + (size_t)i0 * t.C, e, &p.ab, &err);
		if (rc == 0 && a.exact)
			rc = mb_attr_exact_qk(t.exqk + (size_t)i0 * 2 * t.L * t.H, e, &p.ab, &err);
		if (rc < 0)
			mb_error_prefix(&err, "items %d..%d", i0, i0 + B - 1);
		mb_attr_scores_free(s);
		mb_attr_pairs_dispose(&p);
	}
	if (rc == 0)
		doc = report(&a, &ds, m, &t, a.exact, truth, &err, &rc);
	if (rc == 0) {
		char *text = json_dumps(doc, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
		if (!text)
			rc = mb_error_oom(&err, "JSON", 0);
		else if (a.out)
			rc = mb_file_write_all(a.out, text, strlen(text), &err);
		else
			printf("%s\n", text);
		free(text);
	}
	status = rc == 0 ? MB_EXIT_OK : mb_cli_fail(&err);
	json_decref(doc);
	totals_dispose(&t);
	free(truth);
	mb_attr_free(at);
	mb_engine_free(e);
	mb_model_free(m);
	if (have_ds)
		mb_dataset_dispose(&ds);
	mb_cli_args_dispose(&a, &attr_cmd);
	return status;
}
