/* cmd_cache.c: `mechbench cache`: run a model and write hook points as .npy. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mechbench/engine.h>
#include <mechbench/hooks.h>
#include <mechbench/model.h>
#include <mechbench/file.h>
#include <mechbench/npy.h>
#include <mechbench/parse.h>
#include <mechbench/tokenizer.h>

typedef struct opts {
	const char *model, *tokens, *tokens_npy, *text, *lengths, *out;
	mb_cli_list hooks;
} opts;

static const mb_cli_opt cache_opts[] = {
	{MB_OPT(PATH, "--model", opts, model), .meta = "DIR", .required = 1,
	 .help = "Hugging Face GPT-2 checkpoint directory"},
	{MB_OPT(STRING, "--tokens", opts, tokens), .meta = "IDS",
	 .help = "comma-separated token ids: one item (B = 1)"},
	{MB_OPT(PATH, "--tokens-npy", opts, tokens_npy), .meta = "FILE",
	 .help = "integer .npy of shape (T) or (B, T)"},
	{MB_OPT(STRING, "--text", opts, text), .meta = "TEXT",
	 .help = "text, encoded with DIR's tokenizer (tokenizer.json, else vocab.json + "
		 "merges.txt)"},
	{MB_OPT(STRING, "--lengths", opts, lengths), .meta = "LENS",
	 .help = "comma-separated valid lengths per item (right padding); default: every item "
		 "is T long"},
	{MB_OPT(LIST, "--hook", opts, hooks), .meta = "NAME", .required = 1,
	 .help = "a hook point (\"blocks.1.attn.hook_pattern\", \"hook_embed\", \"logits\", "
		 "...); repeatable"},
	{MB_OPT(PATH, "--out", opts, out), .meta = "DIR", .required = 1,
	 .help = "output folder, created if missing"},
};

static const mb_cli_cmd cache_cmd = {
	.name = "cache",
	.opts = cache_opts,
	.n_opts = MB_CLI_N(cache_opts),
	.synopsis =
	"mechbench cache --model DIR (--tokens IDS | --tokens-npy FILE | --text TEXT)\n"
	"                       [--lengths LENS] --hook NAME [--hook NAME ...] --out DIR\n",
	.about =
	"Runs the model in DIR (config.json + model.safetensors, a safetensors index,\n"
	"or pytorch_model.bin[.index.json]) on the tokens and\n"
	"writes each requested hook point, and the logits, as DIR/<hook name>.npy\n"
	"(float32, TransformerLens shapes: e.g. blocks.0.attn.hook_z.npy is (B, T, H, Dh)).\n",
	.notes =
	"Positions t >= length hold zeros. Exit status 1 with one line on stderr for a\n"
	"bad model, file, hook name or token; 2 for a bad command line.\n",
};

/* Returns MB_CLI_GO or the exit code (after the help or a usage error). */
static int parse_args(opts *o, int argc, char **argv)
{
	mb_cli_parsed parsed;
	int rc = mb_cli_parse(&parsed, o, &cache_cmd, argc, argv);

	if (rc != MB_CLI_GO)
		return rc;
	if ((o->tokens != NULL) + (o->tokens_npy != NULL) + (o->text != NULL) != 1)
		return mb_cli_usage_error("cache", "give exactly one of --tokens, --tokens-npy, --text");
	return MB_CLI_GO;
}

/* Reads the tokens into *tok (B, T). */
static int read_tokens(const opts *o, const mb_model *m, int32_t **tok, int *B, int *T,
		       mb_error *err)
{
	const char *src;
	int rc = 0;

	*tok = NULL;
	if (o->tokens) {
		int64_t *v = NULL;
		int n = 0;

		rc = mb_parse_i64_list(o->tokens, INT32_MIN, INT32_MAX, &v, &n, "--tokens", err);
		if (rc < 0)
			return rc;
		*tok = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
		if (!*tok) {
			free(v);
			return mb_error_oom(err, "tokens", sizeof(int32_t) * (size_t)n);
		}
		for (int i = 0; i < n; i++)
			(*tok)[i] = (int32_t)v[i];
		free(v);
		*B = 1;
		*T = n;
	} else if (o->text) {
		if (!m->tok)
			return mb_error_set(err, MB_ENOTFOUND, "%s: no tokenizer for --text (tokenizer.json, "
					    "or vocab.json + merges.txt)", m->dir);
		rc = mb_tokenizer_encode(m->tok, o->text, tok, T, err);
		*B = 1;
		if (rc < 0)
			return rc;
	} else {
		mb_npy a;

		rc = mb_npy_read(&a, o->tokens_npy, err);
		if (rc < 0)
			return rc;
		/* the message reads the header before it is disposed */
		if (a.dtype != MB_DTYPE_I32 && a.dtype != MB_DTYPE_I64) {
			rc = mb_error_set(err, MB_EINVALID, "%s: tokens must be int32 or int64, got %s",
					  o->tokens_npy, mb_dtype_name(a.dtype));
			mb_npy_dispose(&a);
			return rc;
		}
		if (a.ndim != 1 && a.ndim != 2) {
			rc = mb_error_set(err, MB_EINVALID, "%s: tokens must be (T) or (B, T), got %d dims",
					  o->tokens_npy, a.ndim);
			mb_npy_dispose(&a);
			return rc;
		}
		*B = a.ndim == 2 ? (int)a.shape[0] : 1;
		*T = (int)a.shape[a.ndim - 1];
		*tok = malloc(sizeof(int32_t) * (a.numel ? a.numel : 1));
		if (!*tok) {
			mb_npy_dispose(&a);
			return mb_error_oom(err, "tokens", a.numel * sizeof(int32_t));
		}
		for (size_t i = 0; i < a.numel; i++) {
			int64_t x = a.dtype == MB_DTYPE_I64 ? ((int64_t *)a.data)[i]
							    : ((int32_t *)a.data)[i];

			if (x < 0 || x > INT32_MAX) {
				rc = mb_error_set(err, MB_EINVALID, "%s: token at index %zu is %lld, not a "
						  "token id (0 to %d)", o->tokens_npy, i, (long long)x,
						  INT32_MAX);
				mb_npy_dispose(&a);
				free(*tok);
				*tok = NULL;
				return rc;
			}
			(*tok)[i] = (int32_t)x;
		}
		mb_npy_dispose(&a);
	}
	/* checked here, where the input's name is known (the engine would say
	 * only "run: item 0 position 1: ...") */
	src = o->tokens_npy ? o->tokens_npy : o->text ? "--text" : "--tokens";
	if (*B < 1 || *T < 1)
		return mb_error_set(err, MB_EINVALID, "%s: no tokens", src);
	if (*T > m->cfg.n_ctx)
		return mb_error_set(err, MB_EINVALID, "%s: %d positions, the model has n_positions %d",
				    src, *T, m->cfg.n_ctx);
	for (int b = 0; b < *B; b++)
		for (int t = 0; t < *T; t++) {
			int32_t x = (*tok)[(size_t)b * (size_t)*T + (size_t)t];
			if (x < 0 || x >= m->cfg.n_vocab)
				return mb_error_set(err, MB_EINVALID, "%s: item %d position %d: token %d "
						    "out of range [0, %d) (the model's vocabulary)",
						    src, b, t, (int)x, m->cfg.n_vocab);
		}
	return 0;
}

static int write_hook(const char *out_dir, const mb_hook_tensor *t, const char *name, mb_error *err)
{
	size_t n = strlen(out_dir) + strlen(name) + 8;
	char *path = malloc(n);
	int rc;

	if (!path)
		return mb_error_oom(err, "path", n);
	snprintf(path, n, "%s/%s.npy", out_dir, name);
	rc = mb_npy_write(path, MB_DTYPE_F32, t->ndim, t->shape, t->data, err);
	free(path);
	return rc;
}

int mb_cmd_cache(int argc, char **argv)
{
	opts o = {0};
	mb_error err = {0};
	mb_model *m = NULL;
	mb_engine *e = NULL;
	mb_hooks *h = NULL;
	mb_cache *c = NULL;
	int32_t *tok = NULL, *len = NULL;
	int B = 0, T = 0, rc, status = MB_EXIT_ERROR;
	mb_run r;
	mb_hook_point logits_pt = {MB_HOOK_LOGITS, -1};

	rc = parse_args(&o, argc, argv);
	if (rc != MB_CLI_GO) {
		mb_cli_args_dispose(&o, &cache_cmd);
		return rc;
	}
	rc = mb_file_check_dir(o.out, &err);
	if (rc == 0)
		rc = mb_model_load(&m, o.model, &err);
	if (rc == 0)
		rc = read_tokens(&o, m, &tok, &B, &T, &err);
	if (rc == 0 && o.lengths) {
		int64_t *v = NULL;
		int n = 0;

		rc = mb_parse_i64_list(o.lengths, 1, T, &v, &n, "--lengths", &err);
		if (rc == 0 && n != B)
			rc = mb_error_set(&err, MB_EINVALID, "--lengths: %d values for %d items", n, B);
		if (rc == 0) {
			len = malloc(sizeof(int32_t) * (size_t)B);
			if (!len)
				rc = mb_error_oom(&err, "lengths", sizeof(int32_t) * (size_t)B);
			for (int i = 0; rc == 0 && i < B; i++)
				len[i] = (int32_t)v[i];
		}
		free(v);
	}
	if (rc == 0)
		rc = mb_hooks_init(&h, &err);
	if (rc == 0)
		rc = mb_cache_init(&c, &err);
	for (int i = 0; rc == 0 && i < (int)o.hooks.n; i++) {
		mb_hook_point p;

		rc = mb_hook_parse(&p, o.hooks.v[i], &err);
		if (rc == 0)
			rc = mb_hook_check(p, &m->cfg, &err);
		if (rc == 0)
			rc = mb_cache_add(c, p, &err);
	}
	if (rc == 0)
		rc = mb_cache_add(c, logits_pt, &err);
	if (rc == 0)
		rc = mb_cache_attach(c, h, &err);
	if (rc == 0) {
		mb_engine_opts eo = {B, T, 0};

		rc = mb_engine_init(&e, &m->cfg, &m->w, &eo, &err);
	}
	if (rc == 0) {
		memset(&r, 0, sizeof(r));
		r.batch = B;
		r.seq = T;
		r.tokens = tok;
		r.lengths = len;
		r.hooks = h;
		r.logits = MB_LOGITS_ALL;
		rc = mb_engine_forward(e, &r, &err);
	}
	if (rc == 0 && mkdir(o.out, 0777) != 0 && errno != EEXIST)
		rc = mb_error_set(&err, MB_EIO, "%s: cannot create: %s", o.out, strerror(errno));
	for (int i = 0; rc == 0 && i <= (int)o.hooks.n; i++) {
		mb_hook_point p = logits_pt;
		char name[MB_HOOK_NAME_MAX];

		if (i < (int)o.hooks.n) {
			mb_hook_parse(&p, o.hooks.v[i], NULL);
			if (p.kind == MB_HOOK_LOGITS)
				continue; /* written once, last */
		}
		mb_hook_name(name, sizeof(name), p);
		rc = write_hook(o.out, mb_cache_get(c, p), name, &err);
	}
	status = rc == 0 ? MB_EXIT_OK : mb_cli_fail(&err);
	mb_engine_free(e);
	mb_cache_free(c);
	mb_hooks_free(h);
	mb_model_free(m);
	free(tok);
	free(len);
	mb_cli_args_dispose(&o, &cache_cmd);
	return status;
}
