/*
 * checkpoint.c: Hugging Face GPT-2 checkpoint directories from engine
 * weights, and WordLevel tokenizers.
 *
 * Shape letters: V vocab, P n_ctx, D d_model, L layers, M d_mlp.
 */
#include <mechbench/checkpoint.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mechbench/file.h>
#include <mechbench/safetensors.h>

static void put(mb_checkpoint_tensor *out, size_t cap, size_t *n, float *data, int ndim,
		int64_t d0, int64_t d1, const char *fmt, int l, const char *suffix)
{
	if (*n < cap) {
		mb_checkpoint_tensor *t = &out[*n];
		if (l >= 0)
			snprintf(t->name, sizeof(t->name), fmt, l, suffix);
		else
			snprintf(t->name, sizeof(t->name), fmt, suffix);
		t->ndim = ndim;
		t->shape[0] = d0;
		t->shape[1] = ndim > 1 ? d1 : 0;
		t->data = data;
	}
	(*n)++;
}

size_t mb_checkpoint_tensors(mb_checkpoint_tensor *out, size_t cap, const mb_engine_config *cfg,
			     const mb_engine_weights *w)
{
	const int64_t V = cfg->n_vocab, P = cfg->n_ctx, D = cfg->d_model, M = cfg->d_mlp;
	const int ln = cfg->norm == MB_NORM_LN, mlp = !cfg->attn_only;
	size_t n = 0;

	put(out, cap, &n, w->wte, 2, V, D, "wte.%s", -1, "weight");
	if (w->wpe) /* NULL with rotary positions (GPT-NeoX) */
		put(out, cap, &n, w->wpe, 2, P, D, "wpe.%s", -1, "weight");
	for (int l = 0; l < cfg->n_layer; l++) {
		if (ln) {
			put(out, cap, &n, w->ln1_w + l * D, 1, D, 0, "h.%d.ln_1.%s", l, "weight");
			put(out, cap, &n, w->ln1_b + l * D, 1, D, 0, "h.%d.ln_1.%s", l, "bias");
		}
		put(out, cap, &n, w->qkv_w + l * D * 3 * D, 2, D, 3 * D, "h.%d.attn.c_attn.%s", l,
		    "weight");
		put(out, cap, &n, w->qkv_b + l * 3 * D, 1, 3 * D, 0, "h.%d.attn.c_attn.%s", l,
		    "bias");
		put(out, cap, &n, w->o_w + l * D * D, 2, D, D, "h.%d.attn.c_proj.%s", l, "weight");
		put(out, cap, &n, w->o_b + l * D, 1, D, 0, "h.%d.attn.c_proj.%s", l, "bias");
		if (!mlp)
			continue;
		if (ln) {
			put(out, cap, &n, w->ln2_w + l * D, 1, D, 0, "h.%d.ln_2.%s", l, "weight");
			put(out, cap, &n, w->ln2_b + l * D, 1, D, 0, "h.%d.ln_2.%s", l, "bias");
		}
		put(out, cap, &n, w->fc_w + l * D * M, 2, D, M, "h.%d.mlp.c_fc.%s", l, "weight");
		put(out, cap, &n, w->fc_b + l * M, 1, M, 0, "h.%d.mlp.c_fc.%s", l, "bias");
		put(out, cap, &n, w->proj_w + l * M * D, 2, M, D, "h.%d.mlp.c_proj.%s", l, "weight");
		put(out, cap, &n, w->proj_b + l * D, 1, D, 0, "h.%d.mlp.c_proj.%s", l, "bias");
	}
	if (ln) {
		put(out, cap, &n, w->lnf_w, 1, D, 0, "ln_f.%s", -1, "weight");
		put(out, cap, &n, w->lnf_b, 1, D, 0, "ln_f.%s", -1, "bias");
	}
	if (!cfg->tied)
		put(out, cap, &n, w->unembed, 2, V, D, "lm_head.%s", -1, "weight");
	return n;
}

static const char *act_name(mb_activation a)
{
	switch (a) {
	case MB_ACT_GELU_NEW: return "gelu_new";
	case MB_ACT_GELU: return "gelu";
	case MB_ACT_RELU: return "relu";
	}
	return "gelu_new";
}

/* The shortest decimal that reads back as the float f (1e-5f is written as
 * 1e-05, not 9.9999997473787516e-06). */
static double shortest_float(float f)
{
	char buf[32];

	for (int p = 1; p <= 9; p++) {
		snprintf(buf, sizeof(buf), "%.*g", p, (double)f);
		double d = strtod(buf, NULL);
		if ((float)d == f)
			return d;
	}
	return (double)f;
}

json_t *mb_checkpoint_config_json(const mb_engine_config *cfg, const mb_checkpoint_info *info)
{
	json_t *o = json_object(), *arch = json_array();
	int bad = 0;

	if (!o || !arch) {
		json_decref(o);
		json_decref(arch);
		return NULL;
	}
	bad |= json_array_append_new(arch, json_string("GPT2LMHeadModel"));
	bad |= json_object_set_new(o, "architectures", arch);
	bad |= json_object_set_new(o, "model_type", json_string("gpt2"));
	bad |= json_object_set_new(o, "activation_function", json_string(act_name(cfg->act)));
	bad |= json_object_set_new(o, "attn_only", json_boolean(cfg->attn_only));
	bad |= json_object_set_new(o, "attn_pdrop", json_real(0.0));
	bad |= json_object_set_new(o, "embd_pdrop", json_real(0.0));
	bad |= json_object_set_new(o, "resid_pdrop", json_real(0.0));
	if (info && info->bos_token_id >= 0) {
		bad |= json_object_set_new(o, "bos_token_id", json_integer(info->bos_token_id));
		bad |= json_object_set_new(o, "eos_token_id", json_integer(info->bos_token_id));
	}
	bad |= json_object_set_new(o, "initializer_range",
				   json_real(info ? info->initializer_range : 0.02));
	bad |= json_object_set_new(o, "layer_norm_epsilon", json_real(shortest_float(cfg->ln_eps)));
	bad |= json_object_set_new(o, "n_embd", json_integer(cfg->d_model));
	bad |= json_object_set_new(o, "n_head", json_integer(cfg->n_head));
	bad |= json_object_set_new(o, "n_inner",
				   cfg->attn_only ? json_null() : json_integer(cfg->d_mlp));
	bad |= json_object_set_new(o, "n_layer", json_integer(cfg->n_layer));
	bad |= json_object_set_new(o, "n_positions", json_integer(cfg->n_ctx));
	bad |= json_object_set_new(o, "normalization_type",
				   json_string(cfg->norm == MB_NORM_LN ? "LN" : "none"));
	bad |= json_object_set_new(o, "reorder_and_upcast_attn", json_false());
	bad |= json_object_set_new(o, "scale_attn_by_inverse_layer_idx", json_false());
	bad |= json_object_set_new(o, "scale_attn_weights", json_true());
	bad |= json_object_set_new(o, "tie_word_embeddings", json_boolean(cfg->tied));
	bad |= json_object_set_new(o, "torch_dtype", json_string("float32"));
	bad |= json_object_set_new(o, "use_cache", json_true());
	bad |= json_object_set_new(o, "vocab_size", json_integer(cfg->n_vocab));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int mb_checkpoint_mkdirs(const char *dir, mb_error *err)
{
	char buf[4096];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(buf))
		return mb_error_set(err, MB_EINVALID, "%s: bad directory path", dir);
	memcpy(buf, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char c = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, 0777) != 0 && errno != EEXIST)
			return mb_error_set(err, MB_EIO, "%s: cannot create directory: %s", buf,
					    strerror(errno));
		buf[i] = c;
	}
	struct stat st;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return mb_error_set(err, MB_EIO, "%s: not a directory", dir);
	return 0;
}

int mb_checkpoint_write_text(const char *path, const char *text, mb_error *err)
{
	mb_file_atomic f;
	int error = mb_file_atomic_open(&f, path, err);

	if (error < 0)
		return error;
	error = mb_file_atomic_write(&f, text, strlen(text), err);
	if (error < 0) {
		mb_file_atomic_abort(&f);
		return error;
	}
	return mb_file_atomic_commit(&f, err);
}

static int write_json(const char *path, json_t *doc, mb_error *err)
{
	char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
	size_t n;
	int error;

	if (!text)
		return mb_error_oom(err, path, 0);
	/* A trailing newline, as HF's writers leave one. */
	n = strlen(text);
	char *t2 = realloc(text, n + 2);
	if (!t2) {
		free(text);
		return mb_error_oom(err, path, n + 2);
	}
	t2[n] = '\n';
	t2[n + 1] = '\0';
	error = mb_checkpoint_write_text(path, t2, err);
	free(t2);
	return error;
}

int mb_checkpoint_write(const char *dir, const mb_engine_config *cfg, const mb_engine_weights *w,
			const mb_checkpoint_info *info, const char *tokenizer_json,
			mb_error *err)
{
	char path[4096];
	mb_checkpoint_tensor *t = NULL;
	mb_st_entry *e = NULL;
	json_t *conf = NULL;
	size_t n;
	int error;
	static const char *const meta[] = {"format", "pt", NULL};

	error = mb_checkpoint_mkdirs(dir, err);
	if (error < 0)
		return error;
	conf = mb_checkpoint_config_json(cfg, info);
	if (!conf)
		return mb_error_oom(err, "config.json", 0);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	error = write_json(path, conf, err);
	if (error < 0)
		goto cleanup;
	n = mb_checkpoint_tensors(NULL, 0, cfg, w);
	t = calloc(n, sizeof(*t));
	e = calloc(n, sizeof(*e));
	if (!t || !e) {
		error = mb_error_oom(err, "checkpoint tensor list", n * (sizeof(*t) + sizeof(*e)));
		goto cleanup;
	}
	mb_checkpoint_tensors(t, n, cfg, w);
	for (size_t i = 0; i < n; i++) {
		e[i].name = t[i].name;
		e[i].ndim = t[i].ndim;
		e[i].shape[0] = t[i].shape[0];
		e[i].shape[1] = t[i].shape[1];
		e[i].data = t[i].data;
	}
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	error = mb_safetensors_write_f32(path, e, n, meta, err);
	if (error < 0)
		goto cleanup;
	if (tokenizer_json) {
		snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
		error = mb_checkpoint_write_text(path, tokenizer_json, err);
	}
cleanup:
	json_decref(conf);
	free(t);
	free(e);
	return error;
}

static json_t *added_token(int id, const char *content)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	if (json_object_set_new(o, "id", json_integer(id)) ||
	    json_object_set_new(o, "content", json_string(content)) ||
	    json_object_set_new(o, "single_word", json_false()) ||
	    json_object_set_new(o, "lstrip", json_false()) ||
	    json_object_set_new(o, "rstrip", json_false()) ||
	    json_object_set_new(o, "normalized", json_false()) ||
	    json_object_set_new(o, "special", json_true())) {
		json_decref(o);
		return NULL;
	}
	return o;
}

char *mb_checkpoint_wordlevel_tokenizer(const char *const *tokens, int n, const int *special,
					int n_special, const char *unk)
{
	json_t *root = json_object(), *added = json_array(), *pre = json_object();
	json_t *model = json_object(), *vocab = json_object();
	char *text = NULL;
	int bad = !root || !added || !pre || !model || !vocab;

	if (bad)
		goto cleanup;
	for (int i = 0; i < n_special; i++)
		bad |= json_array_append_new(added, added_token(special[i], tokens[special[i]]));
	for (int i = 0; i < n; i++)
		bad |= json_object_set_new(vocab, tokens[i], json_integer(i));
	bad |= json_object_set_new(pre, "type", json_string("WhitespaceSplit"));
	bad |= json_object_set_new(model, "type", json_string("WordLevel"));
	bad |= json_object_set_new(model, "vocab", vocab);
	vocab = NULL;
	bad |= json_object_set_new(model, "unk_token", json_string(unk));
	bad |= json_object_set_new(root, "version", json_string("1.0"));
	bad |= json_object_set_new(root, "truncation", json_null());
	bad |= json_object_set_new(root, "padding", json_null());
	bad |= json_object_set_new(root, "added_tokens", added);
	added = NULL;
	bad |= json_object_set_new(root, "normalizer", json_null());
	bad |= json_object_set_new(root, "pre_tokenizer", pre);
	pre = NULL;
	bad |= json_object_set_new(root, "post_processor", json_null());
	bad |= json_object_set_new(root, "decoder", json_null());
	bad |= json_object_set_new(root, "model", model);
	model = NULL;
	if (bad)
		goto cleanup;
	/* Insertion order (the vocab in id order), as HF's tokenizers write it. */
	text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (text) {
		size_t len = strlen(text);
		char *t2 = realloc(text, len + 2);
		if (!t2) {
			free(text);
			text = NULL;
			goto cleanup;
		}
		t2[len] = '\n';
		t2[len + 1] = '\0';
		text = t2;
	}
cleanup:
	json_decref(root);
	json_decref(added);
	json_decref(pre);
	json_decref(model);
	json_decref(vocab);
	return text;
}
