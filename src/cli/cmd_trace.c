/* cmd_trace.c: `mechbench trace`: causal tracing (Meng et al. 2022, sec. 2; edit.h) of
 * a list of facts, with the average indirect effect per layer and position group
 * and its 95% CI over the facts, and the decisive layer. */
#include "cli.h"
#include "edit_cli.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/edit.h>
#include <mechbench/file.h>
#include <mechbench/json.h>
#include <mechbench/logits.h>
#include <mechbench/model.h>
#include <mechbench/paired.h>
#include <mechbench/runner.h>
#include <mechbench/sha256.h>
#include <mechbench/task.h>

#include "suite_cli.h"

typedef struct trace_args {
	const char *model, *facts, *out;
	int kind;
	int64_t samples, window, seed, threads;
	double noise, noise_mult;
} trace_args;

static const char *const trace_kinds[] = {"resid", "mlp", "attn", "all", NULL};

static const mb_cli_opt trace_opts[] = {
	{MB_OPT(PATH, "--model", trace_args, model), .meta = "DIR", .required = 1,
	 .help = "the checkpoint folder (with a tokenizer)"},
	{MB_OPT(PATH, "--facts", trace_args, facts), .meta = "FILE", .required = 1,
	 .help = "JSON array of {\"subject\", \"prompt\" (with {} for the subject)[, \"target\"]}; "
		 "without a target the model's own top-1 answer is traced"},
	{MB_OPT(ENUM, "--kind", trace_args, kind), .choices = trace_kinds, .def = "all",
	 .help = "which states are restored: hidden states, MLP or attention outputs, or all"},
	{MB_OPT(INT, "--samples", trace_args, samples), .meta = "N", .def = "10",
	 .range = "[1, 1024]", .help = "noise samples per fact"},
	{MB_OPT(INT, "--window", trace_args, window), .meta = "N", .def = "10",
	 .range = "[1, 1024]", .help = "layers restored together for mlp and attn"},
	{MB_OPT(DOUBLE, "--noise", trace_args, noise), .meta = "SD", .range = ">= 0",
	 .help = "noise SD (default: --noise-mult x the SD of the subjects' token embeddings)"},
	{MB_OPT(DOUBLE, "--noise-mult", trace_args, noise_mult), .meta = "X", .def = "3",
	 .range = ">= 0", .help = "the multiple of the embedding SD"},
	{MB_OPT(INT, "--seed", trace_args, seed), .meta = "N", .def = "0", .range = ">= 0",
	 .help = "seed of the noise streams (one per fact, keyed by its text)"},
	{MB_OPT(PATH, "--out", trace_args, out), .meta = "FILE", .required = 1,
	 .help = "the trace as JSON: per fact, the restored P(answer) per layer and position; "
		 "the average indirect effects with CIs; the decisive layer"},
	MB_CLI_OPT_THREADS(trace_args, threads),
};

static const mb_cli_cmd trace_cmd = {
	.name = "trace",
	.opts = trace_opts,
	.n_opts = MB_CLI_N(trace_opts),
	.about =
	"Corrupts each fact's subject embeddings with Gaussian noise and restores one\n"
	"clean state at a time (a hidden state; or the MLP or attention outputs of a\n"
	"window of layers) at one position. The indirect effect is P(answer) restored\n"
	"minus corrupted; its mean over facts per layer and position group (first,\n"
	"middle, last subject token, first subsequent, further, last token) comes with\n"
	"a 95% t interval. The decisive layer is the layer whose MLP restoration at the\n"
	"last subject token has the largest average indirect effect (where ROME edits).\n",
	.notes =
	"The same bits on any --threads. Exit status 1 with one line on stderr for a bad\n"
	"model or facts file (naming the fact and field); 2 for a bad command line.\n",
};

typedef struct fact {
	const char *subject, *prompt, *target; /* borrowed from the document */
	int32_t *tok;
	int n, first, last;
	int32_t answer;
	uint64_t stream;
} fact;

static void facts_free(fact *f, size_t n)
{
	for (size_t i = 0; f && i < n; i++)
		free(f[i].tok);
	free(f);
}

static int parse_facts(fact **out, size_t *n_out, const mb_json_doc *doc, const mb_model *m,
		       mb_error *err)
{
	static const char *const keys[] = {"subject", "prompt", "target", NULL};
	size_t n;
	fact *f;
	int rc = 0;

	*out = NULL;
	*n_out = 0;
	if (!json_is_array(doc->root) || json_array_size(doc->root) == 0)
		return mb_json_field_error(doc, err, MB_EINVALID, "",
					   "must be a non-empty array of facts");
	n = json_array_size(doc->root);
	f = calloc(n, sizeof(*f));
	if (!f)
		return mb_error_oom(err, "facts", n * sizeof(*f));
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_array_get(doc->root, i);
		char at[64], fld[96], hex[MB_SHA256_HEX_LEN];

		mb_json_path_index(at, sizeof(at), "", i);
		if (!json_is_object(o)) {
			rc = mb_json_field_error(doc, err, MB_EINVALID, at, "must be an object");
			goto fail;
		}
		if ((rc = mb_json_check_keys(doc, o, at, keys, err)) < 0 ||
		    (rc = mb_json_get_string(doc, o, at, "subject", 1, &f[i].subject, err)) < 0 ||
		    (rc = mb_json_get_string(doc, o, at, "prompt", 1, &f[i].prompt, err)) < 0 ||
		    (rc = mb_json_get_string(doc, o, at, "target", 0, &f[i].target, err)) < 0)
			goto fail;
		rc = 0;
		mb_json_path_key(fld, sizeof(fld), at, "prompt");
		if ((rc = mb_edit_cli_encode(&f[i].tok, &f[i].n, &f[i].first, &f[i].last, m->tok,
					     doc, fld, f[i].prompt, f[i].subject, err)) < 0)
			goto fail;
		if (f[i].n > m->cfg.n_ctx) {
			rc = mb_json_field_error(doc, err, MB_EINVALID, fld, "%d tokens, more than "
						 "n_positions %d", f[i].n, m->cfg.n_ctx);
			goto fail;
		}
		f[i].answer = -1;
		if (f[i].target) {
			char *tt = malloc(strlen(f[i].target) + 2);
			int32_t *tg = NULL;
			int nt = 0;

			mb_json_path_key(fld, sizeof(fld), at, "target");
			if (!tt) {
				rc = mb_error_oom(err, fld, strlen(f[i].target) + 2);
				goto fail;
			}
			snprintf(tt, strlen(f[i].target) + 2, "%s%s",
				 f[i].target[0] == ' ' ? "" : " ", f[i].target);
			rc = mb_tokenizer_encode(m->tok, tt, &tg, &nt, err);
			free(tt);
			if (rc == 0 && nt < 1)
				rc = mb_json_field_error(doc, err, MB_EINVALID, fld, "has no tokens");
			if (rc == 0)
				f[i].answer = tg[0];
			free(tg);
			if (rc < 0)
				goto fail;
		}
		/* the noise stream: keyed by the fact's text */
		{
			size_t lp = strlen(f[i].prompt), ls = strlen(f[i].subject);
			char *key = malloc(lp + ls + 2);
			if (!key) {
				rc = mb_error_oom(err, "fact key", lp + ls + 2);
				goto fail;
			}
			snprintf(key, lp + ls + 2, "%s\t%s", f[i].prompt, f[i].subject);
			mb_sha256_hex_buf(hex, key, strlen(key));
			free(key);
		}
		f[i].stream = mb_item_key_index(hex);
	}
	*out = f;
	*n_out = n;
	return 0;
fail:
	facts_free(f, n);
	return rc;
}

/* A JSON number, or null for NaN. */
static json_t *num(double x)
{
	return isfinite(x) ? json_real(x) : json_null();
}

/* Mean and 95% CI over the n facts of x[i stride] (NaN entries skipped) into
 * an object {mean, lo, hi, n}. */
static json_t *estimate(const double *x, size_t n, size_t stride, double *mean_out)
{
	double *v = malloc(sizeof(double) * (n ? n : 1));
	size_t k = 0;
	mb_stats_estimate e;
	mb_error err = {0};
	json_t *o;

	*mean_out = NAN;
	if (!v)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!isnan(x[i * stride]))
			v[k++] = x[i * stride];
	if (k >= 2 && mb_stats_paired_estimate(&e, v, k, 0.95, &err) == 0) {
		o = json_pack("{s:o, s:o, s:o, s:I}", "mean", num(e.mean), "lo", num(e.lo), "hi",
			      num(e.hi), "n", (json_int_t)k);
		*mean_out = e.mean;
	} else {
		double s = 0;
		for (size_t i = 0; i < k; i++)
			s += v[i];
		*mean_out = k ? s / (double)k : NAN;
		o = json_pack("{s:o, s:n, s:n, s:I}", "mean", num(*mean_out), "lo", "hi", "n",
			      (json_int_t)k);
	}
	free(v);
	return o;
}

int mb_cmd_trace(int argc, char **argv)
{
	trace_args a = {0};
	mb_cli_parsed parsed;
	mb_error err = {0};
	mb_json_doc doc = {0};
	mb_model *m = NULL;
	mb_engine *e = NULL;
	fact *f = NULL;
	size_t nf = 0;
	mb_file_digest *dg = NULL;
	size_t ndg = 0;
	double *restored = NULL, *groups = NULL, *pc = NULL, *px = NULL;
	json_t *root = NULL, *items = NULL, *aie = NULL, *dec = NULL;
	char *text = NULL;
	int rc, status = MB_EXIT_ERROR, L, maxT = 1, k0, k1;
	double noise;

	rc = mb_cli_parse(&parsed, &a, &trace_cmd, argc, argv);
	if (rc == MB_CLI_GO)
		rc = mb_cli_only_with(&parsed, &trace_cmd, "--window", a.kind != 0,
				      "--kind mlp, attn or all");
	if (rc == MB_CLI_GO && mb_cli_given(&parsed, &trace_cmd, "--noise") &&
	    mb_cli_given(&parsed, &trace_cmd, "--noise-mult"))
		rc = mb_cli_usage_error("trace", "--noise and --noise-mult: give only one");
	if (rc != MB_CLI_GO) {
		mb_cli_args_dispose(&a, &trace_cmd);
		return rc;
	}
	if (a.threads > 0)
		omp_set_num_threads((int)a.threads);
	if ((rc = mb_cli_check_outputs(&(mb_cli_path){"--out", a.out}, 1,
				       &(mb_cli_path){"--facts", a.facts}, 1, &err)) < 0 ||
	    (rc = mb_model_load(&m, a.model, &err)) < 0)
		goto done;
	if (!m->tok) {
		rc = mb_error_set(&err, MB_ENOTFOUND, "%s: no tokenizer (tokenizer.json, or "
				  "vocab.json + merges.txt)", a.model);
		goto done;
	}
	if ((rc = mb_json_doc_load(&doc, a.facts, &err)) < 0 ||
	    (rc = parse_facts(&f, &nf, &doc, m, &err)) < 0 ||
	    (rc = mb_model_digest(&dg, &ndg, a.model, &err)) < 0)
		goto done;
	L = m->cfg.n_layer;
	k0 = a.kind == 3 ? 0 : a.kind;
	k1 = a.kind == 3 ? 3 : a.kind + 1;
	if (a.kind == MB_TRACE_MLP && m->cfg.attn_only) {
		rc = mb_error_set(&err, MB_EINVALID, "%s: an attention-only model has no MLP", a.model);
		goto done;
	}
	for (size_t i = 0; i < nf; i++)
		if (f[i].n > maxT)
			maxT = f[i].n;
	{
		mb_engine_opts eo = {.max_batch = (int)a.samples + 1, .max_seq = maxT};
		if ((rc = mb_engine_init(&e, &m->cfg, &m->w, &eo, &err)) < 0)
			goto done;
	}
	/* answers: the given target's first token, else the clean top-1 */
	for (size_t i = 0; i < nf; i++) {
		if (f[i].answer >= 0)
			continue;
		mb_run run = {.batch = 1, .seq = f[i].n, .tokens = f[i].tok, .logits = MB_LOGITS_LAST};
		if ((rc = mb_engine_forward(e, &run, &err)) < 0)
			goto done;
		f[i].answer = mb_logits_argmax(mb_engine_logits_row(e, 0, 0), m->cfg.n_vocab);
	}
	/* noise: a multiple of the SD of the subjects' token embeddings */
	if (mb_cli_given(&parsed, &trace_cmd, "--noise")) {
		noise = a.noise;
	} else {
		size_t ns = 0, j = 0;
		int32_t *st;
		for (size_t i = 0; i < nf; i++)
			ns += (size_t)(f[i].last - f[i].first + 1);
		st = malloc(sizeof(int32_t) * ns);
		if (!st) {
			rc = mb_error_oom(&err, "subject tokens", sizeof(int32_t) * ns);
			goto done;
		}
		for (size_t i = 0; i < nf; i++)
			for (int t = f[i].first; t <= f[i].last; t++)
				st[j++] = f[i].tok[t];
		noise = a.noise_mult * mb_trace_embed_sd(&m->cfg, &m->w, st, ns);
		free(st);
	}

	restored = malloc(sizeof(double) * (size_t)L * maxT);
	groups = malloc(sizeof(double) * 3 * nf * (size_t)L * MB_TRACE_POS_COUNT);
	pc = malloc(sizeof(double) * nf);
	px = malloc(sizeof(double) * nf);
	root = json_pack("{s:s, s:i, s:s, s:o, s:I, s:I, s:I, s:f}", "kind", "causal_trace",
			 "version", 1, "model", a.model, "model_files", json_object(), "samples",
			 (json_int_t)a.samples, "window", (json_int_t)a.window, "seed",
			 (json_int_t)a.seed, "noise", noise);
	items = json_array();
	aie = json_object();
	dec = json_object();
	if (!restored || !groups || !pc || !px || !root || !items || !aie || !dec) {
		rc = mb_error_oom(&err, "trace", sizeof(double) * 3 * nf * (size_t)L * 6);
		goto done;
	}
	for (size_t i = 0; i < ndg; i++)
		json_object_set_new(json_object_get(root, "model_files"), dg[i].path,
				    json_string(dg[i].sha256));
	json_object_set(root, "items", items);
	json_object_set(root, "aie", aie);
	json_object_set(root, "decisive_layer", dec);
	{
		json_t *gn = json_array();
		for (int g = 0; g < MB_TRACE_POS_COUNT; g++)
			json_array_append_new(gn, json_string(mb_trace_pos_name(g)));
		json_object_set_new(root, "groups", gn);
	}
	for (size_t i = 0; i < nf; i++) {
		mb_trace_item it = {.tokens = f[i].tok, .len = f[i].n, .subj_first = f[i].first,
				    .subj_last = f[i].last, .target = f[i].answer,
				    .stream = f[i].stream};
		mb_trace_opts o = {.seed = (uint64_t)a.seed, .noise = noise, .samples = (int)a.samples,
				   .window = (int)a.window};
		json_t *ji = json_pack("{s:s, s:s, s:i, s:[i,i]}", "subject", f[i].subject, "prompt",
				       f[i].prompt, "answer_token", (int)f[i].answer, "subject_span",
				       f[i].first, f[i].last);
		json_t *jr = json_object();

		json_array_append_new(items, ji);
		json_object_set_new(ji, "restored", jr);
		for (int k = k0; k < k1; k++) {
			json_t *rows;
			if (k == MB_TRACE_MLP && m->cfg.attn_only)
				continue;
			rows = json_array();
			if ((rc = mb_trace_run(restored, &pc[i], &px[i], e, &it, (mb_trace_kind)k, &o,
					       &err)) < 0) {
				mb_error_prefix(&err, "%s: [%zu]", a.facts, i);
				goto done;
			}
			for (int l = 0; l < L; l++) {
				json_t *row = json_array();
				for (int t = 0; t < f[i].n; t++)
					json_array_append_new(row, json_real(restored[(size_t)l * f[i].n + t]));
				json_array_append_new(rows, row);
			}
			json_object_set_new(jr, mb_trace_kind_name((mb_trace_kind)k), rows);
			mb_trace_groups(groups + ((size_t)k * nf + i) * L * MB_TRACE_POS_COUNT, restored,
					px[i], L, &it);
		}
		json_object_set_new(ji, "p_clean", json_real(pc[i]));
		json_object_set_new(ji, "p_corrupt", json_real(px[i]));
	}
	{
		double *te = malloc(sizeof(double) * nf), mean;
		if (!te) {
			rc = mb_error_oom(&err, "trace", sizeof(double) * nf);
			goto done;
		}
		for (size_t i = 0; i < nf; i++)
			te[i] = pc[i] - px[i];
		json_object_set_new(root, "total_effect", estimate(te, nf, 1, &mean));
		free(te);
	}
	printf("%zu facts, noise SD %.4g, %lld samples; average indirect effect at the last "
	       "subject token (95%% CI):\n", nf, noise, (long long)a.samples);
	for (int k = k0; k < k1; k++) {
		json_t *jk = json_array();
		int best = -1;
		double best_v = -INFINITY;

		if (k == MB_TRACE_MLP && m->cfg.attn_only)
			continue;
		printf("  %-5s", mb_trace_kind_name((mb_trace_kind)k));
		for (int l = 0; l < L; l++) {
			json_t *row = json_array();
			for (int g = 0; g < MB_TRACE_POS_COUNT; g++) {
				double mean;
				const double *x = groups + (size_t)k * nf * L * MB_TRACE_POS_COUNT +
						  (size_t)l * MB_TRACE_POS_COUNT + g;
				json_t *est = estimate(x, nf, (size_t)L * MB_TRACE_POS_COUNT, &mean);
				json_array_append_new(row, est);
				if (g == MB_TRACE_POS_LAST_SUBJ) {
					printf(" %d:%.3f", l, mean);
					if (mean > best_v) {
						best_v = mean;
						best = l;
					}
				}
			}
			json_array_append_new(jk, row);
		}
		printf("  -> decisive layer %d\n", best);
		json_object_set_new(aie, mb_trace_kind_name((mb_trace_kind)k), jk);
		json_object_set_new(dec, mb_trace_kind_name((mb_trace_kind)k), json_integer(best));
	}
	text = json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
	if (!text) {
		rc = mb_error_oom(&err, a.out, 0);
		goto done;
	}
	if ((rc = mb_file_write_all(a.out, text, strlen(text), &err)) < 0)
		goto done;
	status = MB_EXIT_OK;
done:
	if (rc < 0)
		status = mb_cli_fail(&err);
	free(text);
	json_decref(items);
	json_decref(aie);
	json_decref(dec);
	json_decref(root);
	free(restored);
	free(groups);
	free(pc);
	free(px);
	mb_file_digests_free(dg, ndg);
	facts_free(f, nf);
	mb_json_doc_dispose(&doc);
	mb_engine_free(e);
	mb_model_free(m);
	mb_cli_args_dispose(&a, &trace_cmd);
	return status;
}
