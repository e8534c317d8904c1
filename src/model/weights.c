/*
 * weights.c: model.safetensors into the engine's weights layout (one block,
 * pointers carved out of it), and whole checkpoint directories.
 *
 * Shape letters: V vocab, P n_positions, D n_embd, L n_layer, M n_inner.
 */
#include <mechbench/model.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NAME_MAX_LEN 96

typedef struct expected {
	char name[NAME_MAX_LEN]; /* HF name without the "transformer." prefix */
	float *dst;
	int ndim;
	int64_t shape[2];
	const mb_st_tensor *found;
} expected;

static void add(expected *v, int *n, const char *name, float *dst, int ndim, int64_t d0,
		int64_t d1)
{
	expected *e = &v[(*n)++];

	snprintf(e->name, sizeof(e->name), "%s", name);
	e->dst = dst;
	e->ndim = ndim;
	e->shape[0] = d0;
	e->shape[1] = d1;
	e->found = NULL;
}

static int build_list(expected *v, const mb_engine_config *c, const mb_engine_weights *w)
{
	int64_t V = c->n_vocab, P = c->n_ctx, D = c->d_model, M = c->d_mlp;
	int ln = c->norm == MB_NORM_LN, mlp = !c->attn_only, n = 0;
	char name[NAME_MAX_LEN];

	add(v, &n, "wte.weight", w->wte, 2, V, D);
	add(v, &n, "wpe.weight", w->wpe, 2, P, D);
	for (int l = 0; l < c->n_layer; l++) {
#define LAYER(suffix, ptr, nd, a, b)                                                  \
	do {                                                                          \
		snprintf(name, sizeof(name), "h.%d.%s", l, suffix);                   \
		add(v, &n, name, (ptr), nd, a, b);                                    \
	} while (0)
		if (ln) {
			LAYER("ln_1.weight", w->ln1_w + l * D, 1, D, 0);
			LAYER("ln_1.bias", w->ln1_b + l * D, 1, D, 0);
		}
		LAYER("attn.c_attn.weight", w->qkv_w + (size_t)l * D * 3 * D, 2, D, 3 * D);
		LAYER("attn.c_attn.bias", w->qkv_b + (size_t)l * 3 * D, 1, 3 * D, 0);
		LAYER("attn.c_proj.weight", w->o_w + (size_t)l * D * D, 2, D, D);
		LAYER("attn.c_proj.bias", w->o_b + l * D, 1, D, 0);
		if (ln && mlp) {
			LAYER("ln_2.weight", w->ln2_w + l * D, 1, D, 0);
			LAYER("ln_2.bias", w->ln2_b + l * D, 1, D, 0);
		}
		if (mlp) {
			LAYER("mlp.c_fc.weight", w->fc_w + (size_t)l * D * M, 2, D, M);
			LAYER("mlp.c_fc.bias", w->fc_b + (size_t)l * M, 1, M, 0);
			LAYER("mlp.c_proj.weight", w->proj_w + (size_t)l * M * D, 2, M, D);
			LAYER("mlp.c_proj.bias", w->proj_b + l * D, 1, D, 0);
		}
#undef LAYER
	}
	if (ln) {
		add(v, &n, "ln_f.weight", w->lnf_w, 1, D, 0);
		add(v, &n, "ln_f.bias", w->lnf_b, 1, D, 0);
	}
	if (!c->tied)
		add(v, &n, "lm_head.weight", w->unembed, 2, V, D);
	return n;
}

/* h.{digits}.attn.bias or h.{digits}.attn.masked_bias: GPT-2's mask buffers. */
static int is_buffer(const char *name)
{
	const char *p = name;

	if (strncmp(p, "h.", 2) != 0)
		return 0;
	p += 2;
	if (*p < '0' || *p > '9')
		return 0;
	while (*p >= '0' && *p <= '9')
		p++;
	return strcmp(p, ".attn.bias") == 0 || strcmp(p, ".attn.masked_bias") == 0;
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
	size_t off = 0;

	off += (size_t)snprintf(buf + off, cap - off, "[");
	for (int i = 0; i < ndim && off < cap; i++)
		off += (size_t)snprintf(buf + off, cap - off, "%s%lld", i ? ", " : "",
					(long long)shape[i]);
	if (off < cap)
		snprintf(buf + off, cap - off, "]");
}

int mb_model_weights_load(mb_engine_weights *w, float **params, size_t *n_params,
			  const mb_engine_config *cfg, const mb_safetensors *st, mb_error *err)
{
	const char *file = mb_safetensors_name(st);
	size_t total = mb_engine_weights_layout(w, cfg, NULL), count;
	int n_exp = 0, rc = 0;
	expected *exp = NULL;
	float *block = NULL, *tmp = NULL;
	const mb_st_tensor *tied_head = NULL;

	*params = NULL;
	*n_params = 0;
	if (posix_memalign((void **)&block, 64, (total ? total : 1) * sizeof(float)) != 0) {
		block = NULL;
		rc = mb_error_oom(err, "model parameters", total * sizeof(float));
		goto cleanup;
	}
	mb_engine_weights_layout(w, cfg, block);
	exp = calloc((size_t)cfg->n_layer * 12 + 8, sizeof(*exp));
	if (!exp) {
		rc = mb_error_oom(err, "tensor list", sizeof(*exp));
		goto cleanup;
	}
	n_exp = build_list(exp, cfg, w);
	count = mb_safetensors_count(st);
	for (size_t i = 0; i < count; i++) {
		const mb_st_tensor *t = mb_safetensors_at(st, i);
		const char *name = t->name;
		expected *e = NULL;

		if (strncmp(name, "transformer.", 12) == 0)
			name += 12;
		for (int k = 0; k < n_exp; k++)
			if (strcmp(exp[k].name, name) == 0) {
				e = &exp[k];
				break;
			}
		if (!e) {
			if (is_buffer(name))
				continue;
			if (cfg->tied && strcmp(name, "lm_head.weight") == 0 && !tied_head) {
				tied_head = t;
				continue;
			}
			rc = mb_error_set(err, MB_EINVALID,
					  "%s: tensor %s: unexpected for this config (n_layer %d, "
					  "normalization %s, %s, %s)",
					  file, t->name, cfg->n_layer,
					  cfg->norm == MB_NORM_LN ? "LN" : "none",
					  cfg->attn_only ? "attention-only" : "with MLP",
					  cfg->tied ? "tied unembedding" : "untied unembedding");
			goto cleanup;
		}
		if (e->found) {
			rc = mb_error_set(err, MB_EINVALID, "%s: tensor %s: present twice (as %s and %s)",
					  file, e->name, e->found->name, t->name);
			goto cleanup;
		}
		if (t->ndim != e->ndim || t->shape[0] != e->shape[0] ||
		    (e->ndim == 2 && t->shape[1] != e->shape[1])) {
			char got[96], want[96];

			shape_str(got, sizeof(got), t->ndim, t->shape);
			shape_str(want, sizeof(want), e->ndim, e->shape);
			rc = mb_error_set(err, MB_EMISMATCH, "%s: tensor %s: shape %s, expected %s",
					  file, t->name, got, want);
			goto cleanup;
		}
		e->found = t;
		rc = mb_safetensors_read_f32(st, t, e->dst, 1, err);
		if (rc < 0)
			goto cleanup;
	}
	for (int k = 0; k < n_exp; k++)
		if (!exp[k].found) {
			rc = mb_error_set(err, MB_ENOTFOUND, "%s: tensor %s (or transformer.%s) is missing",
					  file, exp[k].name, exp[k].name);
			goto cleanup;
		}
	if (tied_head) {
		size_t n = (size_t)cfg->n_vocab * cfg->d_model;

		if (tied_head->ndim != 2 || tied_head->shape[0] != cfg->n_vocab ||
		    tied_head->shape[1] != cfg->d_model) {
			rc = mb_error_set(err, MB_EMISMATCH,
					  "%s: tensor %s: tie_word_embeddings is true but its shape "
					  "differs from wte.weight",
					  file, tied_head->name);
			goto cleanup;
		}
		tmp = malloc(n * sizeof(float));
		if (!tmp) {
			rc = mb_error_oom(err, "lm_head.weight", n * sizeof(float));
			goto cleanup;
		}
		rc = mb_safetensors_read_f32(st, tied_head, tmp, 1, err);
		if (rc < 0)
			goto cleanup;
		if (memcmp(tmp, w->wte, n * sizeof(float)) != 0) {
			rc = mb_error_set(err, MB_EMISMATCH,
					  "%s: tensor %s: tie_word_embeddings is true but it differs "
					  "from wte.weight",
					  file, tied_head->name);
			goto cleanup;
		}
	}
	*params = block;
	*n_params = total;
	block = NULL;
	rc = 0;
cleanup:
	free(block);
	free(exp);
	free(tmp);
	if (rc < 0)
		memset(w, 0, sizeof(*w));
	return rc;
}

static char *join(const char *dir, const char *file)
{
	size_t n = strlen(dir) + strlen(file) + 2;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", dir, file);
	return p;
}

int mb_model_load(mb_model **out, const char *dir, mb_error *err)
{
	mb_model *m = NULL;
	mb_safetensors *st = NULL;
	char *cfg_path = NULL, *st_path = NULL, *tok_path = NULL;
	struct stat sb;
	int rc;

	*out = NULL;
	if (stat(dir, &sb) != 0)
		return mb_error_set(err, MB_ENOTFOUND, "%s: model directory not found", dir);
	if (!S_ISDIR(sb.st_mode))
		return mb_error_set(err, MB_EINVALID, "%s: not a directory", dir);
	m = calloc(1, sizeof(*m));
	cfg_path = join(dir, "config.json");
	st_path = join(dir, "model.safetensors");
	tok_path = join(dir, "tokenizer.json");
	if (!m || !cfg_path || !st_path || !tok_path) {
		rc = mb_error_oom(err, "model", sizeof(*m));
		goto cleanup;
	}
	m->dir = join(dir, "");
	if (!m->dir) {
		rc = mb_error_oom(err, "model", strlen(dir));
		goto cleanup;
	}
	m->dir[strlen(m->dir) - 1] = '\0';
	rc = mb_model_config_load(&m->cfg, cfg_path, err);
	if (rc < 0)
		goto cleanup;
	rc = mb_safetensors_open(&st, st_path, err);
	if (rc < 0)
		goto cleanup;
	rc = mb_model_weights_load(&m->w, &m->params, &m->n_params, &m->cfg, st, err);
	if (rc < 0)
		goto cleanup;
	rc = mb_tokenizer_load_dir(&m->tok, dir, err);
	if (rc == MB_ENOTFOUND && stat(tok_path, &sb) != 0) {
		/* No tokenizer at all (raw ids only); half a vocab.json + merges.txt
		 * pair is still an error. */
		char *v = join(dir, "vocab.json"), *mg = join(dir, "merges.txt");
		int half = !v || !mg || stat(v, &sb) == 0 || stat(mg, &sb) == 0;

		free(v);
		free(mg);
		if (half)
			goto cleanup;
		rc = 0;
		mb_error_clear(err);
	}
	if (rc < 0)
		goto cleanup;
	if (m->tok) {
		if (mb_tokenizer_vocab_size(m->tok) > m->cfg.n_vocab) {
			rc = mb_error_set(err, MB_EMISMATCH,
					  "%s: the tokenizer has ids up to %d but vocab_size is %d",
					  tok_path, mb_tokenizer_vocab_size(m->tok) - 1, m->cfg.n_vocab);
			goto cleanup;
		}
	}
	*out = m;
	m = NULL;
	rc = 0;
cleanup:
	mb_safetensors_free(st);
	mb_model_free(m);
	free(cfg_path);
	free(st_path);
	free(tok_path);
	return rc;
}

void mb_model_free(mb_model *m)
{
	if (!m)
		return;
	free(m->params);
	mb_tokenizer_free(m->tok);
	free(m->dir);
	free(m);
}
