/*
 * weights.c: safetensors checkpoints into the engine's weights layout (one
 * block, pointers carved out of it), and whole checkpoint directories.
 *
 * Shape letters: V vocab, P n_positions, D n_embd, L n_layer, M n_inner,
 * H heads, Dh d_head.
 *
 * Two tensor namings: GPT-2 (Conv1D, "transformer." prefix optional) copied
 * as stored, and GPT-NeoX (nn.Linear (out, in), fused q/k/v interleaved per
 * head: rows h*3Dh + {0, Dh, 2Dh} + i are q, k, v of head h) transposed and
 * permuted into the engine's (in, out) layout with columns [Q | K | V].
 *
 * Memory: tensors are converted one at a time straight into the parameter
 * block (F16/BF16/F64 to float32), and each tensor's mapped file pages are
 * dropped after use (mb_safetensors_release), so the peak is the block plus
 * the largest tensor (plus one transposition buffer of the largest
 * transposed tensor), shard by shard for sharded checkpoints. A PyTorch
 * pytorch_model.bin (or each shard of pytorch_model.bin.index.json) is read
 * the same way: a safetensors view over its mapping (mb_ptbin_open), no tensor
 * copied.
 */
#include <mechbench/model.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mechbench/json.h>
#include <mechbench/ptbin.h>
#include <mechbench/str.h>

#define NAME_MAX_LEN 96

typedef enum xform {
	XF_COPY = 0, /* stored as the engine wants it */
	XF_T,        /* nn.Linear weight (out, in) -> (in, out) */
	XF_QKV_W,    /* GPT-NeoX fused (3D, D), per head -> (D, 3D) [Q | K | V] */
	XF_QKV_B,    /* GPT-NeoX fused bias (3D), per head -> [Q | K | V] */
} xform;

typedef struct expected {
	char name[NAME_MAX_LEN]; /* HF name (GPT-2: without the "transformer." prefix) */
	float *dst;
	int ndim;
	int64_t shape[2];        /* as stored in the file */
	xform xf;
	const char *found;       /* the tensor's name as found, NULL until then */
	const char *found_in;    /* the file it was found in */
} expected;

/* Loader state shared by the files of one checkpoint (one, or the shards). */
typedef struct loader {
	const mb_engine_config *cfg;
	mb_engine_weights *w;
	expected *exp;
	int n_exp;
	float *tmp;        /* transposition buffer */
	size_t tmp_cap;
	int tied_head_seen; /* a tied lm_head/embed_out copy was checked */
	char **names;      /* owned copies of found names (files close shard by shard) */
	size_t n_names, names_cap;
} loader;

static void add(expected *v, int *n, const char *name, float *dst, int ndim, int64_t d0,
		int64_t d1, xform xf)
{
	expected *e = &v[(*n)++];

	snprintf(e->name, sizeof(e->name), "%s", name);
	e->dst = dst;
	e->ndim = ndim;
	e->shape[0] = d0;
	e->shape[1] = d1;
	e->xf = xf;
	e->found = NULL;
	e->found_in = NULL;
}

static int build_list_gpt2(expected *v, const mb_engine_config *c, const mb_engine_weights *w)
{
	int64_t V = c->n_vocab, P = c->n_ctx, D = c->d_model, M = c->d_mlp;
	int ln = c->norm == MB_NORM_LN, mlp = !c->attn_only, n = 0;
	char name[NAME_MAX_LEN];

	add(v, &n, "wte.weight", w->wte, 2, V, D, XF_COPY);
	add(v, &n, "wpe.weight", w->wpe, 2, P, D, XF_COPY);
	for (int l = 0; l < c->n_layer; l++) {
#define LAYER(suffix, ptr, nd, a, b)                                                  \
	do {                                                                          \
		snprintf(name, sizeof(name), "h.%d.%s", l, suffix);                   \
		add(v, &n, name, (ptr), nd, a, b, XF_COPY);                           \
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
		add(v, &n, "ln_f.weight", w->lnf_w, 1, D, 0, XF_COPY);
		add(v, &n, "ln_f.bias", w->lnf_b, 1, D, 0, XF_COPY);
	}
	if (!c->tied)
		add(v, &n, "lm_head.weight", w->unembed, 2, V, D, XF_COPY);
	return n;
}

static int build_list_neox(expected *v, const mb_engine_config *c, const mb_engine_weights *w)
{
	int64_t V = c->n_vocab, D = c->d_model, M = c->d_mlp;
	int n = 0;
	char name[NAME_MAX_LEN];

	add(v, &n, "gpt_neox.embed_in.weight", w->wte, 2, V, D, XF_COPY);
	for (int l = 0; l < c->n_layer; l++) {
#define LAYER(suffix, ptr, nd, a, b, xf)                                              \
	do {                                                                          \
		snprintf(name, sizeof(name), "gpt_neox.layers.%d.%s", l, suffix);     \
		add(v, &n, name, (ptr), nd, a, b, xf);                                \
	} while (0)
		LAYER("input_layernorm.weight", w->ln1_w + l * D, 1, D, 0, XF_COPY);
		LAYER("input_layernorm.bias", w->ln1_b + l * D, 1, D, 0, XF_COPY);
		LAYER("post_attention_layernorm.weight", w->ln2_w + l * D, 1, D, 0, XF_COPY);
		LAYER("post_attention_layernorm.bias", w->ln2_b + l * D, 1, D, 0, XF_COPY);
		LAYER("attention.query_key_value.weight", w->qkv_w + (size_t)l * D * 3 * D, 2,
		      3 * D, D, XF_QKV_W);
		LAYER("attention.query_key_value.bias", w->qkv_b + (size_t)l * 3 * D, 1, 3 * D, 0,
		      XF_QKV_B);
		LAYER("attention.dense.weight", w->o_w + (size_t)l * D * D, 2, D, D, XF_T);
		LAYER("attention.dense.bias", w->o_b + l * D, 1, D, 0, XF_COPY);
		LAYER("mlp.dense_h_to_4h.weight", w->fc_w + (size_t)l * D * M, 2, M, D, XF_T);
		LAYER("mlp.dense_h_to_4h.bias", w->fc_b + (size_t)l * M, 1, M, 0, XF_COPY);
		LAYER("mlp.dense_4h_to_h.weight", w->proj_w + (size_t)l * M * D, 2, D, M, XF_T);
		LAYER("mlp.dense_4h_to_h.bias", w->proj_b + l * D, 1, D, 0, XF_COPY);
#undef LAYER
	}
	add(v, &n, "gpt_neox.final_layer_norm.weight", w->lnf_w, 1, D, 0, XF_COPY);
	add(v, &n, "gpt_neox.final_layer_norm.bias", w->lnf_b, 1, D, 0, XF_COPY);
	if (!c->tied)
		add(v, &n, "embed_out.weight", w->unembed, 2, V, D, XF_COPY);
	return n;
}

static int is_neox(const mb_engine_config *c) { return c->pos == MB_POS_ROTARY; }

/* Digits then exactly suffix. */
static int layer_then(const char *p, const char *suffix)
{
	if (*p < '0' || *p > '9')
		return 0;
	while (*p >= '0' && *p <= '9')
		p++;
	return strcmp(p, suffix) == 0;
}

/* Buffers a checkpoint may carry that are not parameters: GPT-2's attention
 * masks, GPT-NeoX's masks and rotary inverse frequencies. */
static int is_buffer(const char *name)
{
	if (strncmp(name, "h.", 2) == 0)
		return layer_then(name + 2, ".attn.bias") || layer_then(name + 2, ".attn.masked_bias");
	if (strncmp(name, "gpt_neox.layers.", 16) == 0)
		return layer_then(name + 16, ".attention.bias") ||
		       layer_then(name + 16, ".attention.masked_bias") ||
		       layer_then(name + 16, ".attention.rotary_emb.inv_freq");
	return strcmp(name, "gpt_neox.rotary_emb.inv_freq") == 0;
}

/* src (as stored) -> e->dst in the engine's layout. */
static void transform(const loader *ld, const expected *e, const float *src)
{
	int64_t r = e->shape[0], c = e->shape[1];
	int D = ld->cfg->d_model, H = ld->cfg->n_head, Dh = ld->cfg->d_head;

	switch (e->xf) {
	case XF_T:
		for (int64_t i = 0; i < r; i++)
			for (int64_t j = 0; j < c; j++)
				e->dst[j * r + i] = src[i * c + j];
		break;
	case XF_QKV_W:
		/* stored row h*3Dh + X*Dh + i (an output) -> engine column X*D + h*Dh + i */
		for (int h = 0; h < H; h++)
			for (int X = 0; X < 3; X++)
				for (int i = 0; i < Dh; i++) {
					const float *row = src + ((size_t)h * 3 * Dh + (size_t)X * Dh + i) * D;
					size_t col = (size_t)X * D + (size_t)h * Dh + i;

					for (int k = 0; k < D; k++)
						e->dst[(size_t)k * 3 * D + col] = row[k];
				}
		break;
	case XF_QKV_B:
		for (int h = 0; h < H; h++)
			for (int X = 0; X < 3; X++)
				for (int i = 0; i < Dh; i++)
					e->dst[(size_t)X * D + (size_t)h * Dh + i] =
						src[(size_t)h * 3 * Dh + (size_t)X * Dh + i];
		break;
	case XF_COPY:
		break;
	}
}

static const char *keep_name(loader *ld, const char *name)
{
	char *p;

	if (ld->n_names == ld->names_cap) {
		size_t cap = ld->names_cap ? 2 * ld->names_cap : 64;
		char **v = realloc(ld->names, cap * sizeof(*v));

		if (!v)
			return NULL;
		ld->names = v;
		ld->names_cap = cap;
	}
	p = malloc(strlen(name) + 1);
	if (!p)
		return NULL;
	memcpy(p, name, strlen(name) + 1);
	ld->names[ld->n_names++] = p;
	return p;
}

static void loader_dispose(loader *ld)
{
	free(ld->exp);
	free(ld->tmp);
	for (size_t i = 0; i < ld->n_names; i++)
		free(ld->names[i]);
	free(ld->names);
}

static int loader_init(loader *ld, mb_engine_weights *w, const mb_engine_config *cfg, float *block,
		       mb_error *err)
{
	memset(ld, 0, sizeof(*ld));
	ld->cfg = cfg;
	ld->w = w;
	mb_engine_weights_layout(w, cfg, block);
	ld->exp = calloc((size_t)cfg->n_layer * 12 + 8, sizeof(*ld->exp));
	if (!ld->exp)
		return mb_error_oom(err, "tensor list", sizeof(*ld->exp));
	ld->n_exp = is_neox(cfg) ? build_list_neox(ld->exp, cfg, w) : build_list_gpt2(ld->exp, cfg, w);
	return 0;
}

/* The tied unembedding stored anyway: it must equal the embedding. */
static int check_tied_head(loader *ld, const mb_safetensors *st, const mb_st_tensor *t,
			   mb_error *err)
{
	const char *file = mb_safetensors_name(st);
	size_t n = (size_t)ld->cfg->n_vocab * ld->cfg->d_model;
	float *tmp;
	int rc;

	if (t->ndim != 2 || t->shape[0] != ld->cfg->n_vocab || t->shape[1] != ld->cfg->d_model)
		return mb_error_set(err, MB_EMISMATCH,
				    "%s: tensor %s: tie_word_embeddings is true but its shape "
				    "differs from %s",
				    file, t->name, ld->exp[0].name);
	tmp = malloc(n * sizeof(float));
	if (!tmp)
		return mb_error_oom(err, t->name, n * sizeof(float));
	rc = mb_safetensors_read_f32(st, t, tmp, 1, err);
	mb_safetensors_release(st, t);
	if (rc == 0 && memcmp(tmp, ld->w->wte, n * sizeof(float)) != 0)
		rc = mb_error_set(err, MB_EMISMATCH,
				  "%s: tensor %s: tie_word_embeddings is true but it differs from "
				  "%s",
				  file, t->name, ld->exp[0].name);
	free(tmp);
	return rc;
}

/* One tensor of st: matched, checked, converted, released. The tied head is
 * deferred (*tied_head) until the embedding is loaded. */
static int loader_feed_one(loader *ld, const mb_safetensors *st, const mb_st_tensor *t,
			   const mb_st_tensor **tied_head, mb_error *err)
{
	const mb_engine_config *cfg = ld->cfg;
	const char *file = mb_safetensors_name(st);
	const char *name = t->name;
	expected *e = NULL;
	int rc;

	if (!is_neox(cfg) && strncmp(name, "transformer.", 12) == 0)
		name += 12;
	for (int k = 0; k < ld->n_exp; k++)
		if (strcmp(ld->exp[k].name, name) == 0) {
			e = &ld->exp[k];
			break;
		}
	if (!e) {
		if (is_buffer(name))
			return 0;
		if (cfg->tied && !*tied_head && !ld->tied_head_seen &&
		    strcmp(name, is_neox(cfg) ? "embed_out.weight" : "lm_head.weight") == 0) {
			*tied_head = t;
			return 0;
		}
		if (is_neox(cfg))
			return mb_error_set(err, MB_EINVALID,
					    "%s: tensor %s: unexpected for this config (GPT-NeoX, "
					    "num_hidden_layers %d, %s unembedding)",
					    file, t->name, cfg->n_layer, cfg->tied ? "tied" : "untied");
		return mb_error_set(err, MB_EINVALID,
				    "%s: tensor %s: unexpected for this config (n_layer %d, "
				    "normalization %s, %s, %s)",
				    file, t->name, cfg->n_layer, cfg->norm == MB_NORM_LN ? "LN" : "none",
				    cfg->attn_only ? "attention-only" : "with MLP",
				    cfg->tied ? "tied unembedding" : "untied unembedding");
	}
	if (e->found) {
		if (strcmp(e->found_in, file) != 0)
			return mb_error_set(err, MB_EINVALID,
					    "tensor %s: present twice (in %s and in %s)", e->name,
					    e->found_in, file);
		return mb_error_set(err, MB_EINVALID, "%s: tensor %s: present twice (as %s and %s)",
				    file, e->name, e->found, t->name);
	}
	if (t->ndim != e->ndim || t->shape[0] != e->shape[0] ||
	    (e->ndim == 2 && t->shape[1] != e->shape[1])) {
		char got[96], want[96];

		mb_shape_str(got, sizeof(got), t->ndim, t->shape);
		mb_shape_str(want, sizeof(want), e->ndim, e->shape);
		return mb_error_set(err, MB_EMISMATCH, "%s: tensor %s: shape %s, expected %s", file,
				    t->name, got, want);
	}
	e->found = keep_name(ld, t->name);
	e->found_in = keep_name(ld, file);
	if (!e->found || !e->found_in)
		return mb_error_oom(err, "tensor names", strlen(t->name));
	if (e->xf == XF_COPY) {
		rc = mb_safetensors_read_f32(st, t, e->dst, 1, err);
	} else {
		size_t n = t->numel;

		if (n > ld->tmp_cap) {
			float *p = realloc(ld->tmp, n * sizeof(float));

			if (!p)
				return mb_error_oom(err, t->name, n * sizeof(float));
			ld->tmp = p;
			ld->tmp_cap = n;
		}
		rc = mb_safetensors_read_f32(st, t, ld->tmp, 1, err);
		if (rc == 0)
			transform(ld, e, ld->tmp);
	}
	mb_safetensors_release(st, t);
	return rc;
}

/* Every tensor of one file. */
static int loader_feed(loader *ld, const mb_safetensors *st, mb_error *err)
{
	const mb_st_tensor *tied_head = NULL;
	size_t count = mb_safetensors_count(st);
	int rc = 0;

	for (size_t i = 0; i < count && rc == 0; i++)
		rc = loader_feed_one(ld, st, mb_safetensors_at(st, i), &tied_head, err);
	if (rc == 0 && tied_head) {
		/* the embedding must be loaded by now (same file, or an earlier shard) */
		if (!ld->exp[0].found)
			return mb_error_set(err, MB_EINVALID,
					    "%s: tensor %s: a tied unembedding stored before its "
					    "embedding's shard",
					    mb_safetensors_name(st), tied_head->name);
		rc = check_tied_head(ld, st, tied_head, err);
		ld->tied_head_seen = 1;
	}
	return rc;
}

static int loader_finish(loader *ld, const char *what, mb_error *err)
{
	for (int k = 0; k < ld->n_exp; k++)
		if (!ld->exp[k].found) {
			if (is_neox(ld->cfg))
				return mb_error_set(err, MB_ENOTFOUND, "%s: tensor %s is missing", what,
						    ld->exp[k].name);
			return mb_error_set(err, MB_ENOTFOUND,
					    "%s: tensor %s (or transformer.%s) is missing", what,
					    ld->exp[k].name, ld->exp[k].name);
		}
	return 0;
}

static int alloc_block(float **block, size_t total, mb_error *err)
{
	if (posix_memalign((void **)block, 64, (total ? total : 1) * sizeof(float)) != 0) {
		*block = NULL;
		return mb_error_oom(err, "model parameters", total * sizeof(float));
	}
	return 0;
}

int mb_model_weights_load(mb_engine_weights *w, float **params, size_t *n_params,
			  const mb_engine_config *cfg, const mb_safetensors *st, mb_error *err)
{
	size_t total = mb_engine_weights_layout(w, cfg, NULL);
	float *block = NULL;
	loader ld;
	int rc;

	*params = NULL;
	*n_params = 0;
	memset(&ld, 0, sizeof(ld));
	rc = alloc_block(&block, total, err);
	if (rc == 0)
		rc = loader_init(&ld, w, cfg, block, err);
	if (rc == 0)
		rc = loader_feed(&ld, st, err);
	if (rc == 0)
		rc = loader_finish(&ld, mb_safetensors_name(st), err);
	if (rc == 0) {
		*params = block;
		*n_params = total;
		block = NULL;
	}
	loader_dispose(&ld);
	free(block);
	if (rc < 0)
		memset(w, 0, sizeof(*w));
	return rc;
}

/* Sharded checkpoints ------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void mb_model_index_dispose(mb_model_index *ix)
{
	for (size_t i = 0; i < ix->n; i++)
		free(ix->tensor[i]);
	for (size_t i = 0; i < ix->n_files; i++)
		free(ix->files[i]);
	free(ix->tensor);
	free(ix->file_of);
	free(ix->files);
	memset(ix, 0, sizeof(*ix));
}

/* A shard name is a plain file name in the index's folder. */
static int plain_file_name(const char *s)
{
	return s[0] != '\0' && s[0] != '.' && !strchr(s, '/') && !strchr(s, '\\') &&
	       strlen(s) < 256;
}

static int index_doc(mb_model_index *ix, const mb_json_doc *doc, mb_error *err)
{
	json_t *root = doc->root, *wm, *v;
	const char *key;
	size_t i = 0;

	if (!json_is_object(root))
		return mb_json_field_error(doc, err, MB_EINVALID, "", "expected a JSON object");
	json_object_foreach(root, key, v) {
		if (strcmp(key, "metadata") == 0) {
			if (!json_is_object(v))
				return mb_json_field_error(doc, err, MB_EINVALID, "metadata",
							   "expected an object");
			continue;
		}
		if (strcmp(key, "weight_map") == 0)
			continue;
		return mb_json_field_error(doc, err, MB_EINVALID, key,
					   "unknown field (an index has metadata and weight_map)");
	}
	wm = json_object_get(root, "weight_map");
	if (!wm || !json_is_object(wm))
		return mb_json_field_error(doc, err, MB_EINVALID, "weight_map",
					   wm ? "expected an object" : "missing");
	if (json_object_size(wm) == 0)
		return mb_json_field_error(doc, err, MB_EINVALID, "weight_map", "is empty");
	ix->n = json_object_size(wm);
	ix->tensor = calloc(ix->n, sizeof(*ix->tensor));
	ix->file_of = calloc(ix->n, sizeof(*ix->file_of));
	ix->files = calloc(ix->n, sizeof(*ix->files));
	if (!ix->tensor || !ix->file_of || !ix->files)
		return mb_error_oom(err, doc->name, ix->n * sizeof(char *));
	json_object_foreach(wm, key, v) {
		char field[320];

		snprintf(field, sizeof(field), "weight_map.%s", key);
		if (!json_is_string(v))
			return mb_json_field_error(doc, err, MB_EINVALID, field,
						   "expected a shard file name");
		if (!plain_file_name(json_string_value(v)))
			return mb_json_field_error(doc, err, MB_EINVALID, field,
						   "\"%s\" is not a plain file name in the index's "
						   "folder",
						   json_string_value(v));
		if (key[0] == '\0')
			return mb_json_field_error(doc, err, MB_EINVALID, "weight_map",
						   "empty tensor name");
		ix->tensor[i] = mb_str_dup(key);
		if (!ix->tensor[i])
			return mb_error_oom(err, doc->name, strlen(key));
		i++;
	}
	ix->n = i;
	/* the distinct files, sorted */
	qsort(ix->tensor, ix->n, sizeof(*ix->tensor), cmp_str);
	for (i = 0; i < ix->n; i++) {
		const char *f = json_string_value(json_object_get(wm, ix->tensor[i]));
		size_t k;

		for (k = 0; k < ix->n_files; k++)
			if (strcmp(ix->files[k], f) == 0)
				break;
		if (k == ix->n_files) {
			ix->files[k] = mb_str_dup(f);
			if (!ix->files[k])
				return mb_error_oom(err, doc->name, strlen(f));
			ix->n_files++;
		}
	}
	qsort(ix->files, ix->n_files, sizeof(*ix->files), cmp_str);
	for (i = 0; i < ix->n; i++) {
		const char *f = json_string_value(json_object_get(wm, ix->tensor[i]));
		const char **hit = bsearch(&f, ix->files, ix->n_files, sizeof(*ix->files), cmp_str);

		MB_ASSERT(hit != NULL);
		ix->file_of[i] = (int)(hit - (const char **)ix->files);
	}
	return 0;
}

int mb_model_index_parse(mb_model_index *out, const char *text, size_t len, const char *name,
			 mb_error *err)
{
	mb_json_doc doc;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = mb_json_doc_parse(&doc, text, len, name, err);
	if (rc < 0)
		return rc;
	rc = index_doc(out, &doc, err);
	mb_json_doc_dispose(&doc);
	if (rc < 0)
		mb_model_index_dispose(out);
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

/* The position of tensor name in ix (sorted), or -1. */
static long index_find(const mb_model_index *ix, const char *name)
{
	const char **hit = bsearch(&name, ix->tensor, ix->n, sizeof(*ix->tensor), cmp_str);

	return hit ? (long)(hit - (const char **)ix->tensor) : -1;
}

/* A weights file: safetensors, or a PyTorch .bin seen as safetensors. */
static int open_weights(mb_safetensors **st, const char *path, mb_error *err)
{
	size_t n = strlen(path);

	if (n < 4 || strcmp(path + n - 4, ".bin") != 0)
		return mb_safetensors_open(st, path, err);
	return mb_ptbin_open(st, path, err);
}

/* One shard: every tensor it holds must be mapped to it, every tensor mapped
 * to it must be in it. */
static int load_shard(loader *ld, const mb_model_index *ix, int f, const char *dir,
		      const char *ixname, int check_only, mb_error *err)
{
	mb_safetensors *st = NULL;
	char *path = join(dir, ix->files[f]);
	struct stat sb;
	int rc = 0;

	if (!path)
		return mb_error_oom(err, "shard path", strlen(dir));
	if (stat(path, &sb) != 0) {
		for (size_t i = 0; i < ix->n; i++)
			if (ix->file_of[i] == f) {
				rc = mb_error_set(err, MB_ENOTFOUND,
						  "%s: weight_map: tensor %s: shard %s not found", ixname,
						  ix->tensor[i], path);
				break;
			}
		goto cleanup;
	}
	rc = open_weights(&st, path, err);
	if (rc < 0)
		goto cleanup;
	for (size_t i = 0; i < ix->n; i++)
		if (ix->file_of[i] == f && !mb_safetensors_find(st, ix->tensor[i])) {
			rc = mb_error_set(err, MB_ENOTFOUND,
					  "%s: weight_map: tensor %s: not in its shard %s", ixname,
					  ix->tensor[i], path);
			goto cleanup;
		}
	if (check_only)
		goto cleanup;
	{
		const mb_st_tensor *tied_head = NULL;
		size_t count = mb_safetensors_count(st);

		for (size_t i = 0; i < count && rc == 0; i++) {
			const mb_st_tensor *t = mb_safetensors_at(st, i);
			long k = index_find(ix, t->name);

			if (k < 0)
				rc = mb_error_set(err, MB_EINVALID,
						  "%s: tensor %s: not listed in %s's weight_map", path,
						  t->name, ixname);
			else if (ix->file_of[k] != f)
				rc = mb_error_set(err, MB_EINVALID,
						  "%s: tensor %s: %s maps it to %s (every tensor must be "
						  "in exactly one shard)",
						  path, t->name, ixname, ix->files[ix->file_of[k]]);
			else
				rc = loader_feed_one(ld, st, t, &tied_head, err);
		}
		if (rc == 0 && tied_head) {
			if (!ld->exp[0].found)
				rc = mb_error_set(err, MB_EINVALID,
						  "%s: tensor %s: a tied unembedding stored before its "
						  "embedding's shard",
						  path, tied_head->name);
			else
				rc = check_tied_head(ld, st, tied_head, err);
			ld->tied_head_seen = 1;
		}
	}
cleanup:
	mb_safetensors_free(st);
	free(path);
	return rc;
}

int mb_model_weights_load_sharded(mb_engine_weights *w, float **params, size_t *n_params,
				  const mb_engine_config *cfg, const char *index_path, mb_error *err)
{
	size_t total = mb_engine_weights_layout(w, cfg, NULL);
	float *block = NULL;
	mb_model_index ix;
	mb_json_doc doc;
	loader ld;
	char *dir = NULL, *slash;
	int rc;

	*params = NULL;
	*n_params = 0;
	memset(&ld, 0, sizeof(ld));
	memset(&ix, 0, sizeof(ix));
	rc = mb_json_doc_load(&doc, index_path, err);
	if (rc < 0)
		return rc;
	rc = index_doc(&ix, &doc, err);
	mb_json_doc_dispose(&doc);
	if (rc < 0)
		goto cleanup;
	dir = mb_str_dup(index_path);
	if (!dir) {
		rc = mb_error_oom(err, "index path", strlen(index_path));
		goto cleanup;
	}
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	else
		snprintf(dir, strlen(dir) + 1, ".");
	rc = alloc_block(&block, total, err);
	if (rc == 0)
		rc = loader_init(&ld, w, cfg, block, err);
	/* first every shard against the index (missing files, mapped tensors
	 * absent from their shard), then shard by shard the tensors */
	for (size_t f = 0; f < ix.n_files && rc == 0; f++)
		rc = load_shard(&ld, &ix, (int)f, dir, index_path, 1, err);
	for (size_t f = 0; f < ix.n_files && rc == 0; f++)
		rc = load_shard(&ld, &ix, (int)f, dir, index_path, 0, err);
	if (rc == 0)
		rc = loader_finish(&ld, index_path, err);
	if (rc == 0) {
		*params = block;
		*n_params = total;
		block = NULL;
	}
cleanup:
	loader_dispose(&ld);
	mb_model_index_dispose(&ix);
	free(block);
	free(dir);
	if (rc < 0)
		memset(w, 0, sizeof(*w));
	return rc;
}

/* Directories -------------------------------------------------------------- */

int mb_model_load(mb_model **out, const char *dir, mb_error *err)
{
	mb_model *m = NULL;
	mb_safetensors *st = NULL;
	char *cfg_path = NULL, *st_path = NULL, *ix_path = NULL, *tok_path = NULL;
	char *bin_path = NULL, *bin_ix_path = NULL;
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
	ix_path = join(dir, "model.safetensors.index.json");
	tok_path = join(dir, "tokenizer.json");
	bin_path = join(dir, "pytorch_model.bin");
	bin_ix_path = join(dir, "pytorch_model.bin.index.json");
	if (!m || !cfg_path || !st_path || !ix_path || !tok_path || !bin_path || !bin_ix_path) {
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
	if (stat(st_path, &sb) != 0 && stat(ix_path, &sb) == 0) {
		rc = mb_model_weights_load_sharded(&m->w, &m->params, &m->n_params, &m->cfg, ix_path,
						   err);
		if (rc < 0)
			goto cleanup;
	} else if (stat(st_path, &sb) != 0 && stat(bin_path, &sb) != 0 &&
		   stat(bin_ix_path, &sb) == 0) {
		rc = mb_model_weights_load_sharded(&m->w, &m->params, &m->n_params, &m->cfg,
						   bin_ix_path, err);
		if (rc < 0)
			goto cleanup;
	} else {
		/* model.safetensors, else PyTorch's pytorch_model.bin (read as
		 * a safetensors view of its mapping) */
		rc = mb_safetensors_open(&st, st_path, err);
		if (rc == MB_ENOTFOUND)
			rc = open_weights(&st, bin_path, err);
		if (rc == MB_ENOTFOUND)
			rc = mb_error_set(err, MB_ENOTFOUND,
					  "%s: no model.safetensors, model.safetensors.index.json, "
					  "pytorch_model.bin or pytorch_model.bin.index.json",
					  dir);
		if (rc < 0)
			goto cleanup;
		rc = mb_model_weights_load(&m->w, &m->params, &m->n_params, &m->cfg, st, err);
		if (rc < 0)
			goto cleanup;
	}
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
	free(bin_path);
	free(bin_ix_path);
	mb_model_free(m);
	free(cfg_path);
	free(st_path);
	free(ix_path);
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
