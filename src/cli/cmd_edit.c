/* cmd_edit.c: `mechbench edit`: ROME edits of a checkpoint (edit.h), written as a new
 * Hugging Face checkpoint folder with a MANIFEST. */
#include "cli.h"
#include "edit_cli.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mechbench/buildinfo.h>
#include <mechbench/checkpoint.h>
#include <mechbench/edit.h>
#include <mechbench/file.h>
#include <mechbench/json.h>
#include <mechbench/logits.h>
#include <mechbench/model.h>
#include <mechbench/parse.h>
#include <mechbench/runner.h>
#include <mechbench/safetensors.h>
#include <mechbench/sha256.h>
#include <mechbench/tokenizer.h>

typedef struct edit_args {
	const char *model, *edits, *out, *corpus, *stats, *prefix_lens, *prefix_sep, *layers;
	int method;
	int64_t seq, prefixes, seed, steps, threads;
	double lr, kl_factor, weight_decay, clamp, mom2_weight, update_scale;
} edit_args;

static const char *const edit_methods[] = {"rome", "memit", NULL};

static const mb_cli_opt edit_opts[] = {
	{MB_OPT(PATH, "--model", edit_args, model), .meta = "DIR", .required = 1,
	 .help = "the base checkpoint folder (GPT-2 family, with a tokenizer)"},
	{MB_OPT(PATH, "--edits", edit_args, edits), .meta = "FILE", .required = 1,
	 .help = "JSON array of requests {\"subject\", \"prompt\" (with {} for the subject), "
		 "\"target_new\"[, \"target_true\", \"kl_prompt\"]}"},
	{MB_OPT(ENUM, "--method", edit_args, method), .choices = edit_methods, .def = "rome",
	 .help = "ROME: each edit in turn, one layer; MEMIT: all edits at once over the layers"},
	{MB_OPT(STRING, "--layers", edit_args, layers), .alias = "--layer", .meta = "LIST",
	 .required = 1,
	 .help = "the MLP layer(s) to edit, ascending (rome: one, the decisive layer of "
		 "`trace`; memit: a range such as 13,14,15,16,17)"},
	{MB_OPT(PATH, "--out", edit_args, out), .meta = "DIR", .required = 1,
	 .help = "the edited checkpoint folder (must not exist; written whole or not at all)"},
	{MB_OPT(PATH, "--corpus", edit_args, corpus), .meta = "FILE",
	 .help = "text for the key second moment C (needed unless --stats names an existing "
		 "file)"},
	{MB_OPT(PATH, "--stats", edit_args, stats), .meta = "FILE",
	 .help = "C as safetensors: read when it exists, else computed from --corpus and "
		 "written here"},
	{MB_OPT(INT, "--seq", edit_args, seq), .meta = "N", .range = ">= 1",
	 .help = "corpus window length in tokens (default: min(n_positions, 128))"},
	{MB_OPT(INT, "--prefixes", edit_args, prefixes), .meta = "N", .def = "10",
	 .range = ">= 0", .help = "sampled context prefixes per length (plus the bare prompt)"},
	{MB_OPT(STRING, "--prefix-lens", edit_args, prefix_lens), .meta = "LENS", .def = "5,10",
	 .help = "comma-separated prefix lengths in tokens"},
	{MB_OPT(STRING, "--prefix-sep", edit_args, prefix_sep), .meta = "TEXT", .def = ".",
	 .help = "text between a prefix and the prompt (\"\": none)"},
	{MB_OPT(INT, "--seed", edit_args, seed), .meta = "N", .def = "0", .range = ">= 0",
	 .help = "seed of the prefix streams"},
	{MB_OPT(INT, "--steps", edit_args, steps), .meta = "N", .def = "20", .range = "[1, 100000]",
	 .help = "v* optimisation steps"},
	{MB_OPT(DOUBLE, "--lr", edit_args, lr), .meta = "X", .def = "0.5", .range = "> 0",
	 .help = "v* Adam learning rate"},
	{MB_OPT(DOUBLE, "--kl-factor", edit_args, kl_factor), .meta = "X", .def = "0.0625",
	 .range = ">= 0", .help = "weight of the essence (KL) term"},
	{MB_OPT(DOUBLE, "--weight-decay", edit_args, weight_decay), .meta = "X", .def = "0.5",
	 .range = ">= 0", .help = "weight of ||delta|| / ||v0||^2"},
	{MB_OPT(DOUBLE, "--clamp", edit_args, clamp), .meta = "X", .range = "> 0",
	 .help = "||delta|| <= X ||v0|| (default: 4 for rome, 0.75 for memit)"},
	{MB_OPT(DOUBLE, "--mom2-weight", edit_args, mom2_weight), .meta = "X", .def = "20000",
	 .range = "> 0", .help = "memit: lambda, the weight of C against the new keys"},
	{MB_OPT(DOUBLE, "--update-scale", edit_args, update_scale), .meta = "X", .def = "1",
	 .range = "> 0",
	 .help = "rome: multiply each rank-one update by X (1: ROME; a large X is a "
		 "deliberately harmful edit, e.g. to check that the edit-safety gate catches it)"},
	MB_CLI_OPT_THREADS(edit_args, threads),
};

static const mb_cli_cmd edit_cmd = {
	.name = "edit",
	.opts = edit_opts,
	.n_opts = MB_CLI_N(edit_opts),
	.about =
	"ROME (Meng et al. 2022): edits one after another, each a rank-one update of\n"
	"mlp.c_proj of --layers N: C = E[k k^T] over the corpus, k* over sampled context\n"
	"prefixes, v* by Adam with the published objective (NLL + KL essence term +\n"
	"weight decay, norm clamp). MEMIT (Meng et al. 2023): all edits at once, their\n"
	"hidden states after the last of --layers optimised the same way and the\n"
	"residual spread over the layers' c_proj. Writes config.json, model.safetensors, the\n"
	"base tokenizer files and a MANIFEST (the base model's file digests, the edits,\n"
	"the hyperparameters, the statistics' token count) into --out.\n",
	.notes =
	"Prints P(new object) on each edit prompt before and after. The same inputs give\n"
	"the same bits on any --threads. Exit status 1 with one line on stderr for a bad\n"
	"model, edits file (naming the request and field) or corpus; 2 for a bad command\n"
	"line.\n",
};

/* One parsed request with its tokens. */
typedef struct edit_req {
	const char *subject, *prompt, *target_new, *target_true, *kl_prompt; /* borrowed */
	int32_t *prompt_tok, *target_tok, *kl_tok;
	int n_prompt, n_target, n_kl, subj_last, kl_subj_last;
} edit_req;

static void reqs_free(edit_req *r, size_t n)
{
	for (size_t i = 0; r && i < n; i++) {
		free(r[i].prompt_tok);
		free(r[i].target_tok);
		free(r[i].kl_tok);
	}
	free(r);
}

static int parse_edits(edit_req **out, size_t *n_out, mb_json_doc *doc, const mb_tokenizer *t,
		       mb_error *err)
{
	static const char *const keys[] = {"subject", "prompt", "target_new", "target_true",
					   "kl_prompt", NULL};
	edit_req *r = NULL;
	size_t n;
	int rc = 0;

	*out = NULL;
	*n_out = 0;
	if (!json_is_array(doc->root) || json_array_size(doc->root) == 0)
		return mb_json_field_error(doc, err, MB_EINVALID, "",
					   "must be a non-empty array of edit requests");
	n = json_array_size(doc->root);
	r = calloc(n, sizeof(*r));
	if (!r)
		return mb_error_oom(err, "edit requests", n * sizeof(*r));
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_array_get(doc->root, i);
		char at[64], f[96];
		edit_req *q = &r[i];
		char *tt = NULL;

		mb_json_path_index(at, sizeof(at), "", i);
		if (!json_is_object(o)) {
			rc = mb_json_field_error(doc, err, MB_EINVALID, at, "must be an object");
			goto fail;
		}
		q->kl_prompt = "{} is a";
		if ((rc = mb_json_check_keys(doc, o, at, keys, err)) < 0 ||
		    (rc = mb_json_get_string(doc, o, at, "subject", 1, &q->subject, err)) < 0 ||
		    (rc = mb_json_get_string(doc, o, at, "prompt", 1, &q->prompt, err)) < 0 ||
		    (rc = mb_json_get_string(doc, o, at, "target_new", 1, &q->target_new, err)) < 0 ||
		    (rc = mb_json_get_string(doc, o, at, "target_true", 0, &q->target_true, err)) < 0 ||
		    (rc = mb_json_get_string(doc, o, at, "kl_prompt", 0, &q->kl_prompt, err)) < 0)
			goto fail;
		rc = 0;
		if (!q->subject[0] || !q->target_new[0] ||
		    (q->target_new[0] == ' ' && !q->target_new[1])) {
			mb_json_path_key(f, sizeof(f), at, q->subject[0] ? "target_new" : "subject");
			rc = mb_json_field_error(doc, err, MB_EINVALID, f, "must not be empty");
			goto fail;
		}
		mb_json_path_key(f, sizeof(f), at, "prompt");
		if ((rc = mb_edit_cli_encode(&q->prompt_tok, &q->n_prompt, NULL, &q->subj_last, t, doc, f,
					      q->prompt, q->subject, err)) < 0)
			goto fail;
		mb_json_path_key(f, sizeof(f), at, "kl_prompt");
		if ((rc = mb_edit_cli_encode(&q->kl_tok, &q->n_kl, NULL, &q->kl_subj_last, t, doc, f,
					      q->kl_prompt, q->subject, err)) < 0)
			goto fail;
		/* The object follows the prompt after a space, as the paper's code
		 * tokenizes it (" Rome"). */
		mb_json_path_key(f, sizeof(f), at, "target_new");
		tt = malloc(strlen(q->target_new) + 2);
		if (!tt) {
			rc = mb_error_oom(err, f, strlen(q->target_new) + 2);
			goto fail;
		}
		snprintf(tt, strlen(q->target_new) + 2, "%s%s", q->target_new[0] == ' ' ? "" : " ",
			 q->target_new);
		rc = mb_tokenizer_encode(t, tt, &q->target_tok, &q->n_target, err);
		free(tt);
		if (rc == 0 && q->n_target < 1)
			rc = mb_json_field_error(doc, err, MB_EINVALID, f, "has no tokens");
		if (rc < 0) {
			if (!strstr(err->msg, f))
				mb_error_prefix(err, "%s: %s", doc->name, f);
			goto fail;
		}
	}
	*out = r;
	*n_out = n;
	return 0;
fail:
	reqs_free(r, n);
	return rc;
}

/* Corpus text -> (n, seq) windows. */
static int read_corpus(int32_t **tok, size_t *n, const char *path, const mb_tokenizer *t, int seq,
		       mb_error *err)
{
	char *text = NULL;
	size_t len;
	int nt = 0, rc;

	*tok = NULL;
	if ((rc = mb_file_read_text(&text, &len, path, err)) < 0)
		return rc;
	rc = mb_tokenizer_encode(t, text, tok, &nt, err);
	free(text);
	if (rc < 0)
		return mb_error_prefix(err, "%s", path);
	if (nt < seq) {
		free(*tok);
		*tok = NULL;
		return mb_error_set(err, MB_EINVALID, "%s: %d tokens, fewer than one window of %d",
				    path, nt, seq);
	}
	*n = (size_t)(nt / seq);
	return 0;
}

/* Reads C of each of the n layers (tensors "blocks.<l>.mlp.mom2" (M, M),
 * metadata "tokens") into s[0..n). */
static int stats_read(mb_rome_stats *s, const char *path, const int64_t *layers, int n, int M,
		      mb_error *err)
{
	mb_safetensors *st = NULL;
	const char *tk;
	int64_t tv = 0;
	int rc;

	if ((rc = mb_safetensors_open(&st, path, err)) < 0)
		return rc;
	tk = mb_safetensors_metadata(st, "tokens");
	if (!tk || mb_parse_i64(tk, 1, INT64_MAX, &tv, "tokens", err) < 0) {
		rc = mb_error_set(err, MB_EINVALID, "%s: no token count (metadata \"tokens\"): not "
				  "ROME statistics", path);
		goto cleanup;
	}
	for (int i = 0; i < n; i++) {
		char name[64];
		const mb_st_tensor *t;

		snprintf(name, sizeof(name), "blocks.%lld.mlp.mom2", (long long)layers[i]);
		t = mb_safetensors_find(st, name);
		if (!t || t->ndim != 2 || t->shape[0] != M || t->shape[1] != M) {
			rc = mb_error_set(err, MB_ENOTFOUND, "%s: no tensor %s of shape (%d, %d)", path,
					  name, M, M);
			goto cleanup;
		}
		s[i].mom2 = malloc(sizeof(float) * (size_t)M * M);
		if (!s[i].mom2) {
			rc = mb_error_oom(err, path, sizeof(float) * (size_t)M * M);
			goto cleanup;
		}
		if ((rc = mb_safetensors_read_f32(st, t, s[i].mom2, 1, err)) < 0)
			goto cleanup;
		s[i].layer = (int)layers[i];
		s[i].d_mlp = M;
		s[i].tokens = tv;
	}
cleanup:
	mb_safetensors_free(st);
	return rc;
}

static int stats_write(const mb_rome_stats *s, int n, const char *path, mb_error *err)
{
	char tokens[32], (*names)[64] = calloc((size_t)n, 64);
	const char *meta[] = {"format", "mechbench-rome-stats", "tokens", tokens, NULL};
	mb_st_entry *e = calloc((size_t)n, sizeof(*e));
	int rc;

	if (!names || !e) {
		free(names);
		free(e);
		return mb_error_oom(err, path, (size_t)n * 64);
	}
	snprintf(tokens, sizeof(tokens), "%lld", (long long)s[0].tokens);
	for (int i = 0; i < n; i++) {
		snprintf(names[i], 64, "blocks.%d.mlp.mom2", s[i].layer);
		e[i] = (mb_st_entry){.name = names[i], .ndim = 2, .shape = {s[i].d_mlp, s[i].d_mlp},
				     .data = s[i].mom2};
	}
	rc = mb_safetensors_write_f32(path, e, (size_t)n, meta, err);
	free(names);
	free(e);
	return rc;
}

/* P(first token of the new object) at the end of the prompt. */
static int prob_target(double *p, mb_engine *e, const edit_req *q, mb_error *err)
{
	mb_run run = {.batch = 1, .seq = q->n_prompt, .tokens = q->prompt_tok,
		      .logits = MB_LOGITS_LAST};
	int rc = mb_engine_forward(e, &run, err);

	if (rc == 0)
		*p = mb_logits_prob(mb_engine_logits_row(e, 0, 0), mb_engine_cfg(e)->n_vocab,
				    q->target_tok[0], MB_LOGITS_LIBM);
	return rc;
}

/* Removes the regular files of a flat folder and the folder. */
static void remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[4096];

	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

/* Copies dir/name to tmp/name when it exists. */
static int copy_if_present(const char *dir, const char *tmp, const char *name, mb_error *err)
{
	char src[4096], dst[4096];
	unsigned char *buf = NULL;
	size_t len;
	struct stat st;
	int rc;

	snprintf(src, sizeof(src), "%s/%s", dir, name);
	if (stat(src, &st) != 0)
		return 0;
	snprintf(dst, sizeof(dst), "%s/%s", tmp, name);
	if ((rc = mb_file_read_all(&buf, &len, src, err)) < 0)
		return rc;
	rc = mb_file_write_all(dst, buf, len, err);
	free(buf);
	return rc;
}

static json_t *digests_json(const mb_file_digest *d, size_t n)
{
	json_t *o = json_object();
	for (size_t i = 0; o && i < n; i++)
		json_object_set_new(o, d[i].path, json_string(d[i].sha256));
	return o;
}

typedef struct edit_run {
	edit_args a;
	mb_model *m;
	mb_engine *e;
	edit_req *req;
	size_t n_req;
	int64_t *layers;     /* (n_layers) --layers */
	int n_layers;
	mb_rome_stats *stats; /* (n_layers) */
	int32_t *prefix_tok; /* (n_pre_sampled, max len) */
	mb_rome_prefix *pre;
	int n_pre;
	json_t *manifest;
	char stats_sha[MB_SHA256_HEX_LEN];
	int64_t *lens;       /* (n_lens) --prefix-lens */
	int n_lens, max_prefix;
	int32_t *sep;        /* (n_sep) --prefix-sep's tokens */
	int n_sep;
} edit_run;

/* The contexts: the bare prompt, then per length `prefixes` sampled ones,
 * each followed by the separator's tokens. */
static int make_prefixes(edit_run *x, mb_error *err)
{
	int rc = 0, n_sep = x->n_sep, maxlen = x->max_prefix;
	int32_t first;
	json_t *jp = json_array();

	if (!jp)
		return mb_error_oom(err, "manifest", 0);
	json_object_set_new(x->manifest, "prefixes", jp);
	x->n_pre = 1 + (int)x->a.prefixes * x->n_lens;
	x->pre = calloc((size_t)x->n_pre, sizeof(*x->pre));
	x->prefix_tok = malloc(sizeof(int32_t) * ((size_t)(x->n_pre) * (size_t)(maxlen + n_sep) + 1));
	if (!x->pre || !x->prefix_tok)
		return mb_error_oom(err, "prefixes", sizeof(int32_t) * (size_t)x->n_pre * maxlen);
	first = mb_tokenizer_id(x->m->tok, "<|endoftext|>");
	for (int i = 0, k = 1; i < x->n_lens && x->a.prefixes > 0; i++) {
		int L = (int)x->lens[i], n = (int)x->a.prefixes;
		int32_t *buf = malloc(sizeof(int32_t) * (size_t)n * L);

		if (!buf)
			return mb_error_oom(err, "prefixes", sizeof(int32_t) * (size_t)n * L);
		/* each length has its own streams: seed + length */
		rc = mb_rome_prefixes(buf, x->e, n, L, first, 5, (uint64_t)x->a.seed + (uint64_t)L,
				      err);
		for (int j = 0; rc == 0 && j < n; j++, k++) {
			int32_t *dst = x->prefix_tok + (size_t)k * (size_t)(maxlen + n_sep);
			json_t *row = json_array();

			memcpy(dst, buf + (size_t)j * L, sizeof(int32_t) * (size_t)L);
			if (n_sep)
				memcpy(dst + L, x->sep, sizeof(int32_t) * (size_t)n_sep);
			x->pre[k] = (mb_rome_prefix){.tokens = dst, .n = L + n_sep};
			for (int t = 0; row && t < L + n_sep; t++)
				json_array_append_new(row, json_integer(dst[t]));
			json_array_append_new(jp, row);
		}
		free(buf);
		if (rc < 0)
			return rc;
	}
	x->pre[0] = (mb_rome_prefix){.tokens = x->prefix_tok, .n = 0};
	return 0;
}

static int load_stats(edit_run *x, mb_error *err)
{
	const int M = x->m->cfg.d_mlp;
	struct stat st;
	json_t *js = json_object();
	int rc;

	if (!js)
		return mb_error_oom(err, "manifest", 0);
	json_object_set_new(x->manifest, "stats", js);
	x->stats = calloc((size_t)x->n_layers, sizeof(*x->stats));
	if (!x->stats)
		return mb_error_oom(err, "statistics", sizeof(*x->stats) * (size_t)x->n_layers);
	if (x->a.stats && stat(x->a.stats, &st) == 0) {
		if ((rc = stats_read(x->stats, x->a.stats, x->layers, x->n_layers, M, err)) < 0)
			return rc;
	} else {
		int seq = x->a.seq ? (int)x->a.seq : (x->m->cfg.n_ctx < 128 ? x->m->cfg.n_ctx : 128);
		int32_t *tok = NULL;
		size_t n = 0;
		char hex[MB_SHA256_HEX_LEN];
		mb_engine *se = NULL;
		mb_engine_opts eo = {.max_batch = 8, .max_seq = seq};

		if (!x->a.corpus)
			return mb_error_set(err, MB_EINVALID, "give --corpus (or --stats naming an "
					    "existing statistics file)");
		if (seq > x->m->cfg.n_ctx)
			return mb_error_set(err, MB_EINVALID, "--seq %d exceeds n_positions %d", seq,
					    x->m->cfg.n_ctx);
		if ((rc = read_corpus(&tok, &n, x->a.corpus, x->m->tok, seq, err)) < 0)
			return rc;
		rc = mb_engine_init(&se, &x->m->cfg, &x->m->w, &eo, err);
		for (int i = 0; rc == 0 && i < x->n_layers; i++)
			rc = mb_rome_stats_compute(&x->stats[i], se, (int)x->layers[i], tok, n, seq, 8,
						   err);
		mb_engine_free(se);
		free(tok);
		if (rc == 0)
			rc = mb_sha256_hex_file(hex, x->a.corpus, err);
		if (rc < 0)
			return rc;
		json_object_set_new(js, "corpus", json_string(x->a.corpus));
		json_object_set_new(js, "corpus_sha256", json_string(hex));
		json_object_set_new(js, "seq", json_integer(seq));
		if (x->a.stats &&
		    (rc = stats_write(x->stats, x->n_layers, x->a.stats, err)) < 0)
			return rc;
	}
	if (x->a.stats) {
		if ((rc = mb_sha256_hex_file(x->stats_sha, x->a.stats, err)) < 0)
			return rc;
		json_object_set_new(js, "file", json_string(x->a.stats));
		json_object_set_new(js, "file_sha256", json_string(x->stats_sha));
	}
	json_object_set_new(js, "tokens", json_integer(x->stats[0].tokens));
	return 0;
}

static mb_rome_request request_of(const edit_req *q)
{
	return (mb_rome_request){.prompt = q->prompt_tok, .n_prompt = q->n_prompt,
				 .subj_last = q->subj_last, .target = q->target_tok,
				 .n_target = q->n_target, .kl_prompt = q->kl_tok, .n_kl = q->n_kl,
				 .kl_subj_last = q->kl_subj_last};
}

/* The manifest entry and the line of edit i. */
static json_t *edit_entry(size_t i, const edit_req *q, double before, double after,
			  const mb_rome_result *res)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:f, s:f}", "subject", q->subject, "prompt",
			      q->prompt, "target_new", q->target_new, "kl_prompt", q->kl_prompt,
			      "p_new_before", before, "p_new_after", after);

	if (o && q->target_true)
		json_object_set_new(o, "target_true", json_string(q->target_true));
	printf("edit %zu: \"%s\" -> \"%s\": P(new) %.4f -> %.4f", i, q->subject, q->target_new,
	       before, after);
	if (o && res) {
		json_object_set_new(o, "steps_run", json_integer(res->steps_run));
		json_object_set_new(o, "loss_first", json_real(res->loss_first));
		json_object_set_new(o, "loss_nll", json_real(res->loss[0]));
		json_object_set_new(o, "loss_kl", json_real(res->loss[1]));
		json_object_set_new(o, "loss_weight_decay", json_real(res->loss[2]));
		printf(" (v* loss %.4f -> %.4f in %d steps)", res->loss_first,
		       res->loss[0] + res->loss[1] + res->loss[2], res->steps_run);
	}
	printf("\n");
	return o;
}

static int apply_edits(edit_run *x, mb_error *err)
{
	mb_rome_params p;
	mb_memit_params mp;
	json_t *je = json_array(), *jl = json_array();
	double *before = calloc(x->n_req, sizeof(double));
	mb_rome_request *rq = calloc(x->n_req, sizeof(*rq));
	int rc = 0, memit = x->a.method == 1;

	if (!je || !jl || !before || !rq) {
		json_decref(je);
		json_decref(jl);
		free(before);
		free(rq);
		return mb_error_oom(err, "edits", 0);
	}
	json_object_set_new(x->manifest, "edits", je);
	for (int i = 0; i < x->n_layers; i++)
		json_array_append_new(jl, json_integer(x->layers[i]));
	{
		int ls[MB_MEMIT_MAX_LAYERS];
		for (int i = 0; i < x->n_layers; i++)
			ls[i] = (int)x->layers[i];
		mb_memit_params_default(&mp, ls, x->n_layers);
	}
	mb_rome_params_default(&p, (int)x->layers[0]);
	p.steps = (int)x->a.steps;
	p.lr = x->a.lr;
	p.kl_factor = x->a.kl_factor;
	p.weight_decay = x->a.weight_decay;
	if (x->a.clamp > 0)
		p.clamp = x->a.clamp;
	else if (memit)
		p.clamp = mp.z.clamp;
	mp.z = p;
	mp.mom2_weight = x->a.mom2_weight;
	json_object_set_new(x->manifest, "hparams",
			    json_pack("{s:o, s:i, s:f, s:f, s:f, s:f, s:f, s:I}", "layers", jl,
				      "steps", p.steps, "lr", p.lr, "weight_decay", p.weight_decay,
				      "clamp", p.clamp, "kl_factor", p.kl_factor, "stop_loss",
				      p.stop_loss, "seed", (json_int_t)x->a.seed));
	if (memit)
		json_object_set_new(json_object_get(x->manifest, "hparams"), "mom2_weight",
				    json_real(mp.mom2_weight));
	else if (x->a.update_scale != 1.0)
		json_object_set_new(json_object_get(x->manifest, "hparams"), "update_scale",
				    json_real(x->a.update_scale));
	for (size_t i = 0; i < x->n_req; i++) {
		rq[i] = request_of(&x->req[i]);
		if (memit && (rc = prob_target(&before[i], x->e, &x->req[i], err)) < 0)
			goto cleanup;
	}
	if (memit) {
		if ((rc = mb_memit_edit(NULL, x->e, &x->m->w, x->stats, rq, (int)x->n_req, x->pre,
					x->n_pre, &mp, err)) < 0) {
			mb_error_prefix(err, "%s", x->a.edits);
			goto cleanup;
		}
		for (size_t i = 0; i < x->n_req; i++) {
			double after = 0;
			if ((rc = prob_target(&after, x->e, &x->req[i], err)) < 0)
				goto cleanup;
			json_array_append_new(je, edit_entry(i, &x->req[i], before[i], after, NULL));
		}
		goto cleanup;
	}
	for (size_t i = 0; i < x->n_req; i++) {
		mb_rome_result res;
		double after = 0;

		if ((rc = prob_target(&before[i], x->e, &x->req[i], err)) < 0 ||
		    (rc = mb_rome_compute(&res, x->e, &x->stats[0], &rq[i], x->pre, x->n_pre, &p,
					  err)) < 0) {
			mb_error_prefix(err, "%s: [%zu]", x->a.edits, i);
			goto cleanup;
		}
		for (int d = 0; x->a.update_scale != 1.0 && d < x->m->cfg.d_model; d++)
			res.r[d] = (float)(res.r[d] * x->a.update_scale);
		mb_rome_apply(&x->m->cfg, &x->m->w, p.layer, res.u, res.r);
		rc = prob_target(&after, x->e, &x->req[i], err);
		if (rc == 0)
			json_array_append_new(je, edit_entry(i, &x->req[i], before[i], after, &res));
		mb_rome_result_dispose(&res);
		if (rc < 0)
			goto cleanup;
	}
cleanup:
	free(before);
	free(rq);
	return rc;
}

/* Writes the checkpoint into a temporary sibling of --out, then renames it. */
static int write_out(edit_run *x, mb_error *err)
{
	char tmp[4096], path[4096];
	mb_checkpoint_info info = {.initializer_range = 0.02, .bos_token_id = -1};
	mb_file_digest *d = NULL;
	size_t nd = 0;
	char *text = NULL, *tokj = NULL;
	size_t tl;
	int rc;

	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", x->a.out, (long)getpid());
	remove_dir(tmp);
	snprintf(path, sizeof(path), "%s/tokenizer.json", x->m->dir);
	if (access(path, F_OK) == 0 && (rc = mb_file_read_text(&tokj, &tl, path, err)) < 0)
		return rc;
	rc = mb_checkpoint_write(tmp, &x->m->cfg, &x->m->w, &info, tokj, err);
	free(tokj);
	if (rc == 0)
		rc = copy_if_present(x->m->dir, tmp, "vocab.json", err);
	if (rc == 0)
		rc = copy_if_present(x->m->dir, tmp, "merges.txt", err);
	if (rc == 0)
		rc = mb_model_digest(&d, &nd, tmp, err);
	if (rc == 0) {
		json_object_set_new(x->manifest, "files", digests_json(d, nd));
		text = json_dumps(x->manifest, JSON_INDENT(2) | JSON_SORT_KEYS |
					       JSON_REAL_PRECISION(17));
		if (!text)
			rc = mb_error_oom(err, "MANIFEST", 0);
	}
	if (rc == 0) {
		snprintf(path, sizeof(path), "%s/MANIFEST", tmp);
		size_t n = strlen(text);
		char *t2 = realloc(text, n + 2);
		if (!t2) {
			rc = mb_error_oom(err, "MANIFEST", n + 2);
		} else {
			text = t2;
			text[n] = '\n';
			text[n + 1] = '\0';
			rc = mb_file_write_all(path, text, n + 1, err);
		}
	}
	if (rc == 0 && rename(tmp, x->a.out) != 0)
		rc = mb_error_set(err, MB_EIO, "%s: cannot rename %s into place: %s", x->a.out, tmp,
				  strerror(errno));
	if (rc < 0)
		remove_dir(tmp);
	mb_file_digests_free(d, nd);
	free(text);
	return rc;
}

int mb_cmd_edit(int argc, char **argv)
{
	edit_run x = {0};
	mb_error err = {0};
	mb_json_doc doc = {0};
	mb_cli_parsed parsed;
	mb_file_digest *bd = NULL;
	size_t nbd = 0;
	struct stat st;
	int rc, status = MB_EXIT_ERROR, max_seq;

	rc = mb_cli_parse(&parsed, &x.a, &edit_cmd, argc, argv);
	if (rc == MB_CLI_GO)
		rc = mb_cli_only_with(&parsed, &edit_cmd, "--mom2-weight", x.a.method == 1,
				      "--method memit");
	if (rc == MB_CLI_GO)
		rc = mb_cli_only_with(&parsed, &edit_cmd, "--update-scale", x.a.method == 0,
				      "--method rome");
	if (rc != MB_CLI_GO) {
		mb_cli_args_dispose(&x.a, &edit_cmd);
		return rc;
	}
	if (x.a.threads > 0)
		omp_set_num_threads((int)x.a.threads);
	if (stat(x.a.out, &st) == 0) {
		rc = mb_error_set(&err, MB_EINVALID, "--out %s exists: give a new folder", x.a.out);
		goto done;
	}
	if ((rc = mb_file_check_dir(x.a.out, &err)) < 0 ||
	    (x.a.stats && stat(x.a.stats, &st) != 0 &&
	     (rc = mb_file_check_output(x.a.stats, &err)) < 0) ||
	    (rc = mb_model_load(&x.m, x.a.model, &err)) < 0)
		goto done;
	if (x.m->cfg.pos != MB_POS_LEARNED || x.m->cfg.parallel) {
		rc = mb_error_set(&err, MB_EINVALID, "%s: writing an edited GPT-NeoX checkpoint is "
				  "not supported yet (GPT-2 family only)", x.a.model);
		goto done;
	}
	if (x.m->cfg.attn_only) {
		rc = mb_error_set(&err, MB_EINVALID, "%s: an attention-only model has no MLP to edit",
				  x.a.model);
		goto done;
	}
	if ((rc = mb_parse_i64_list(x.a.layers, 0, x.m->cfg.n_layer - 1, &x.layers, &x.n_layers,
				    "--layers", &err)) < 0)
		goto done;
	for (int i = 1; i < x.n_layers; i++)
		if (x.layers[i] <= x.layers[i - 1]) {
			rc = mb_error_set(&err, MB_EINVALID, "--layers %s: layers must ascend",
					  x.a.layers);
			goto done;
		}
	if (x.n_layers > MB_MEMIT_MAX_LAYERS || (x.a.method == 0 && x.n_layers != 1)) {
		rc = mb_error_set(&err, MB_EINVALID, "--layers %s: %s", x.a.layers,
				  x.a.method == 0 ? "rome edits one layer" : "too many layers");
		goto done;
	}
	if (!x.m->tok) {
		rc = mb_error_set(&err, MB_ENOTFOUND, "%s: no tokenizer (tokenizer.json, or "
				  "vocab.json + merges.txt)", x.a.model);
		goto done;
	}
	if ((rc = mb_json_doc_load(&doc, x.a.edits, &err)) < 0 ||
	    (rc = parse_edits(&x.req, &x.n_req, &doc, x.m->tok, &err)) < 0 ||
	    (rc = mb_model_digest(&bd, &nbd, x.a.model, &err)) < 0)
		goto done;
	x.manifest = json_pack("{s:s, s:s, s:{s:s, s:o}, s:{s:s, s:s}}", "kind", "edit", "method",
			       edit_methods[x.a.method], "base", "path", x.a.model, "files",
			       digests_json(bd, nbd), "mechbench", "version", mb_build_version(),
			       "commit", mb_build_commit());
	if (!x.manifest) {
		rc = mb_error_oom(&err, "MANIFEST", 0);
		goto done;
	}
	/* The longest context: a prefix, the separator, then a rewriting or kl prompt. */
	if ((rc = mb_parse_i64_list(x.a.prefix_lens, 1, 1024, &x.lens, &x.n_lens, "--prefix-lens",
				    &err)) < 0)
		goto done;
	if (x.a.prefix_sep[0] &&
	    (rc = mb_tokenizer_encode(x.m->tok, x.a.prefix_sep, &x.sep, &x.n_sep, &err)) < 0)
		goto done;
	for (int i = 0; i < x.n_lens; i++)
		if (x.lens[i] > x.max_prefix)
			x.max_prefix = (int)x.lens[i];
	max_seq = 0;
	for (size_t i = 0; i < x.n_req; i++) {
		int need = x.req[i].n_prompt + x.req[i].n_target - 1;
		if (need > max_seq)
			max_seq = need;
		if (x.req[i].n_kl > max_seq)
			max_seq = x.req[i].n_kl;
	}
	max_seq += x.a.prefixes > 0 ? x.max_prefix + x.n_sep : 0;
	if (max_seq > x.m->cfg.n_ctx) {
		rc = mb_error_set(&err, MB_EINVALID, "the longest context (prefix, separator and "
				  "prompt with the new object) is %d tokens, more than n_positions "
				  "%d: shorten --prefix-lens", max_seq, x.m->cfg.n_ctx);
		goto done;
	}
	{
		mb_engine_opts eo = {.max_batch = (int)(2 + x.a.prefixes * x.n_lens),
				     .max_seq = max_seq, .keep_activations = 1};
		if ((rc = mb_engine_init(&x.e, &x.m->cfg, &x.m->w, &eo, &err)) < 0)
			goto done;
	}
	if ((rc = load_stats(&x, &err)) < 0 || (rc = make_prefixes(&x, &err)) < 0 ||
	    (rc = apply_edits(&x, &err)) < 0 || (rc = write_out(&x, &err)) < 0)
		goto done;
	printf("wrote %s (%zu edit%s by %s at layers %s, C over %lld tokens)\n", x.a.out, x.n_req,
	       x.n_req == 1 ? "" : "s", edit_methods[x.a.method], x.a.layers,
	       (long long)x.stats[0].tokens);
	status = MB_EXIT_OK;
done:
	if (rc < 0)
		status = mb_cli_fail(&err);
	mb_file_digests_free(bd, nbd);
	json_decref(x.manifest);
	mb_json_doc_dispose(&doc);
	reqs_free(x.req, x.n_req);
	for (int i = 0; x.stats && i < x.n_layers; i++)
		mb_rome_stats_dispose(&x.stats[i]);
	free(x.stats);
	free(x.layers);
	free(x.pre);
	free(x.prefix_tok);
	free(x.lens);
	free(x.sep);
	mb_engine_free(x.e);
	mb_model_free(x.m);
	mb_cli_args_dispose(&x.a, &edit_cmd);
	return status;
}
