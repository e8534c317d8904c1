/*
 * sae_io.c: SAELens's on-disk layout of an SAE, read and written (sae.h,
 * "SAELens files"): DIR/cfg.json and DIR/sae_weights.safetensors.
 *
 * Legend: D d_in, S d_sae.
 *
 * The cfg.json fields follow SAELens 6.x (sae_lens/saes/sae.py SAEConfig and
 * its subclasses; sae_lens/loading/pretrained_sae_loaders.py maps the older
 * flat form onto it), read from its documentation and source, not copied.
 */
#include <mechbench/sae.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <mechbench/buildinfo.h>
#include <mechbench/file.h>
#include <mechbench/json.h>
#include <mechbench/safetensors.h>

#define CFG_NAME "cfg.json"
#define WEIGHTS_NAME "sae_weights.safetensors"

/* A string field of obj copied into buf (absent or null: left alone). */
static int get_text(const mb_json_doc *doc, json_t *obj, const char *at, const char *key, char *buf,
		    size_t cap, mb_error *err)
{
	json_t *v = json_object_get(obj, key);
	const char *s;
	int error;

	if (!v || json_is_null(v))
		return 0;
	if ((error = mb_json_get_string(doc, obj, at, key, 0, &s, err)) < 0)
		return error;
	snprintf(buf, cap, "%s", s);
	return 0;
}

/* The metadata fields, from obj (the "metadata" object or the flat root). */
static int read_metadata(mb_sae *s, const mb_json_doc *doc, json_t *obj, const char *at,
			 mb_error *err)
{
	char field[256];
	json_t *v;
	int error;

	if ((error = get_text(doc, obj, at, "model_name", s->model_name, sizeof(s->model_name),
			      err)) < 0)
		return error;
	if (json_object_get(obj, "hook_point") &&
	    (error = get_text(doc, obj, at, "hook_point", s->hook_name, sizeof(s->hook_name),
			      err)) < 0)
		return error;
	if ((error = get_text(doc, obj, at, "hook_name", s->hook_name, sizeof(s->hook_name),
			      err)) < 0)
		return error;
	if ((error = get_text(doc, obj, at, "dataset_path", s->dataset_path,
			      sizeof(s->dataset_path), err)) < 0)
		return error;
	v = json_object_get(obj, "context_size");
	if (v && !json_is_null(v)) {
		int64_t c;
		if ((error = mb_json_get_int(doc, obj, at, "context_size", 0, 0, 1 << 30, &c, err)) < 0)
			return error;
		s->context_size = (int)c;
	}
	v = json_object_get(obj, "prepend_bos");
	if (v && !json_is_null(v) &&
	    (error = mb_json_get_bool(doc, obj, at, "prepend_bos", 0, &s->prepend_bos, err)) < 0)
		return error;
	static const char *const heads[] = {"hook_head_index", "hook_point_head_index"};
	for (size_t i = 0; i < 2; i++) {
		v = json_object_get(obj, heads[i]);
		if (v && !json_is_null(v)) {
			mb_json_path_key(field, sizeof(field), at, heads[i]);
			return mb_json_field_error(doc, err, MB_EINVALID, field,
						   "SAEs of one head's slice are not supported "
						   "(must be null)");
		}
	}
	return 0;
}

/* A flag that must be false (or absent/null): what we do not implement. */
static int require_false(const mb_json_doc *doc, json_t *root, const char *key, const char *why,
			 mb_error *err)
{
	json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v) || json_is_false(v))
		return 0;
	return mb_json_field_error(doc, err, MB_EINVALID, key, "must be false: %s", why);
}

static int parse_cfg(mb_sae **out, const mb_json_doc *doc, mb_error *err)
{
	json_t *root = doc->root, *v, *meta = NULL;
	const char *arch_s = NULL;
	mb_sae_arch arch = MB_SAE_RELU;
	int64_t d_in, d_sae, k = 0;
	int apply = 1, error;
	mb_sae *s = NULL;

	*out = NULL;
	if (!json_is_object(root))
		return mb_json_field_error(doc, err, MB_EINVALID, "", "must be a JSON object");
	if ((error = mb_json_get_int(doc, root, "", "d_in", 1, 1, 1 << 20, &d_in, err)) < 0 ||
	    (error = mb_json_get_int(doc, root, "", "d_sae", 1, 1, 1 << 24, &d_sae, err)) < 0)
		return error;
	if ((error = mb_json_get_string(doc, root, "", "architecture", 0, &arch_s, err)) < 0)
		return error;
	if (arch_s) {
		if (strcmp(arch_s, "standard") == 0)
			arch = MB_SAE_RELU;
		else if (strcmp(arch_s, "topk") == 0)
			arch = MB_SAE_TOPK;
		else if (strcmp(arch_s, "jumprelu") == 0)
			arch = MB_SAE_JUMPRELU;
		else
			return mb_json_field_error(doc, err, MB_EINVALID, "architecture",
						   "'%s' is not supported (standard, topk, jumprelu)",
						   arch_s);
	}
	/* The older flat form: activation_fn_str (or activation_fn) "topk". */
	static const char *const fn_keys[] = {"activation_fn_str", "activation_fn"};
	for (size_t i = 0; i < 2; i++) {
		const char *fn = NULL;
		v = json_object_get(root, fn_keys[i]);
		if (!v || json_is_null(v))
			continue;
		if ((error = mb_json_get_string(doc, root, "", fn_keys[i], 0, &fn, err)) < 0)
			return error;
		if (strcmp(fn, "topk") == 0 && (!arch_s || arch == MB_SAE_TOPK)) {
			json_t *kw;
			arch = MB_SAE_TOPK;
			if ((error = mb_json_get_object(doc, root, "", "activation_fn_kwargs", 0, &kw,
							err)) < 0)
				return error;
			if (error == 0 && json_object_get(kw, "k") &&
			    (error = mb_json_get_int(doc, kw, "activation_fn_kwargs", "k", 1, 1,
						     d_sae, &k, err)) < 0)
				return error;
		} else if (strcmp(fn, "relu") != 0 && strcmp(fn, "topk") != 0) {
			return mb_json_field_error(doc, err, MB_EINVALID, fn_keys[i],
						   "'%s' is not supported (relu, topk)", fn);
		}
	}
	if (arch == MB_SAE_TOPK && json_object_get(root, "k") &&
	    (error = mb_json_get_int(doc, root, "", "k", 1, 1, d_sae, &k, err)) < 0)
		return error;
	if (arch == MB_SAE_TOPK && k == 0)
		return mb_json_field_error(doc, err, MB_EINVALID, "k",
					   "a topk SAE needs k (or activation_fn_kwargs.k)");
	v = json_object_get(root, "apply_b_dec_to_input");
	if (v && !json_is_null(v) &&
	    (error = mb_json_get_bool(doc, root, "", "apply_b_dec_to_input", 0, &apply, err)) < 0)
		return error;
	v = json_object_get(root, "normalize_activations");
	if (v && !json_is_null(v) && !json_is_false(v) &&
	    !(json_is_string(v) && strcmp(json_string_value(v), "none") == 0))
		return mb_json_field_error(doc, err, MB_EINVALID, "normalize_activations",
					   "must be \"none\": the scaling of an SAE trained on "
					   "normalised activations must be folded into its weights");
	v = json_object_get(root, "reshape_activations");
	if (v && !json_is_null(v) &&
	    !(json_is_string(v) && (strcmp(json_string_value(v), "none") == 0 ||
				    strcmp(json_string_value(v), "hook_z") == 0)))
		return mb_json_field_error(doc, err, MB_EINVALID, "reshape_activations",
					   "must be \"none\" or \"hook_z\"");
	if ((error = require_false(doc, root, "finetuning_scaling_factor",
				   "a finetuned scaling factor is not supported", err)) < 0 ||
	    (error = require_false(doc, root, "rescale_acts_by_decoder_norm",
				   "fold the decoder norms into the encoder first", err)) < 0)
		return error;
	if ((error = mb_sae_init(&s, arch, (int)d_in, (int)d_sae, (int)k, err)) < 0)
		return mb_error_prefix(err, "%s", doc->name);
	s->apply_b_dec_to_input = apply;
	if ((error = read_metadata(s, doc, root, "", err)) < 0)
		goto fail;
	if ((error = mb_json_get_object(doc, root, "", "metadata", 0, &meta, err)) < 0)
		goto fail;
	if (error == 0 && (error = read_metadata(s, doc, meta, "metadata", err)) < 0)
		goto fail;
	*out = s;
	return 0;
fail:
	mb_sae_free(s);
	return error;
}

static int all_ones(const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (x[i] != 1.0f)
			return 0;
	return 1;
}

static int read_weights(mb_sae *s, const char *path, mb_error *err)
{
	mb_safetensors *st = NULL;
	const int64_t D = s->d_in, S = s->d_sae;
	struct {
		const char *name;
		float *dst;
		int ndim;
		int64_t shape[2];
	} want[5] = {
		{"W_enc", s->W_enc, 2, {D, S}}, {"b_enc", s->b_enc, 1, {S, 0}},
		{"W_dec", s->W_dec, 2, {S, D}}, {"b_dec", s->b_dec, 1, {D, 0}},
		{"threshold", s->threshold, 1, {S, 0}},
	};
	size_t nwant = s->arch == MB_SAE_JUMPRELU ? 5 : 4;
	int error;

	if ((error = mb_safetensors_open(&st, path, err)) < 0)
		return error;
	for (size_t i = 0; i < mb_safetensors_count(st); i++) {
		const mb_st_tensor *t = mb_safetensors_at(st, i);
		size_t w;
		for (w = 0; w < nwant; w++)
			if (strcmp(t->name, want[w].name) == 0)
				break;
		if (w < nwant)
			continue;
		if (strcmp(t->name, "scaling_factor") == 0 && t->ndim == 1 && t->shape[0] == S) {
			float *tmp = malloc((size_t)S * sizeof(float));
			if (!tmp) {
				error = mb_error_oom(err, "scaling_factor", (size_t)S * sizeof(float));
				goto cleanup;
			}
			error = mb_safetensors_read_f32(st, t, tmp, 1, err);
			int ones = error == 0 && all_ones(tmp, (size_t)S);
			free(tmp);
			if (error < 0)
				goto cleanup;
			if (ones)
				continue;
			error = mb_error_set(err, MB_EINVALID,
					     "%s: tensor 'scaling_factor': a finetuned scaling factor "
					     "(not all ones) is not supported",
					     path);
			goto cleanup;
		}
		error = mb_error_set(err, MB_EINVALID,
				     "%s: tensor '%s': not part of a %s SAE (W_enc, b_enc, W_dec, b_dec%s)",
				     path, t->name, mb_sae_arch_name(s->arch),
				     s->arch == MB_SAE_JUMPRELU ? ", threshold" : "");
		goto cleanup;
	}
	for (size_t w = 0; w < nwant; w++) {
		const mb_st_tensor *t = mb_safetensors_find(st, want[w].name);
		if (!t) {
			error = mb_error_set(err, MB_ENOTFOUND, "%s: tensor '%s' is missing", path,
					     want[w].name);
			goto cleanup;
		}
		if (t->ndim != want[w].ndim || t->shape[0] != want[w].shape[0] ||
		    (want[w].ndim == 2 && t->shape[1] != want[w].shape[1])) {
			char got[64], exp[64];
			if (t->ndim == 2)
				snprintf(got, sizeof(got), "(%lld, %lld)", (long long)t->shape[0],
					 (long long)t->shape[1]);
			else if (t->ndim == 1)
				snprintf(got, sizeof(got), "(%lld)", (long long)t->shape[0]);
			else
				snprintf(got, sizeof(got), "%d dimensions", t->ndim);
			if (want[w].ndim == 2)
				snprintf(exp, sizeof(exp), "(%lld, %lld)", (long long)want[w].shape[0],
					 (long long)want[w].shape[1]);
			else
				snprintf(exp, sizeof(exp), "(%lld)", (long long)want[w].shape[0]);
			error = mb_error_set(err, MB_EMISMATCH,
					     "%s: tensor '%s': shape %s, expected %s from cfg.json's "
					     "d_in %d and d_sae %d",
					     path, want[w].name, got, exp, s->d_in, s->d_sae);
			goto cleanup;
		}
		if ((error = mb_safetensors_read_f32(st, t, want[w].dst, 1, err)) < 0)
			goto cleanup;
	}
	error = 0;
cleanup:
	mb_safetensors_free(st);
	return error;
}

int mb_sae_load(mb_sae **out, const char *dir, mb_error *err)
{
	char path[4096];
	mb_json_doc doc;
	mb_sae *s = NULL;
	int error;

	*out = NULL;
	if ((error = mb_file_path_join(path, sizeof(path), dir, CFG_NAME, err)) < 0)
		return error;
	if ((error = mb_json_doc_load(&doc, path, err)) < 0)
		return error;
	error = parse_cfg(&s, &doc, err);
	mb_json_doc_dispose(&doc);
	if (error < 0)
		return error;
	if ((error = mb_file_path_join(path, sizeof(path), dir, WEIGHTS_NAME, err)) < 0 ||
	    (error = read_weights(s, path, err)) < 0) {
		mb_sae_free(s);
		return error;
	}
	*out = s;
	return 0;
}

/* Adds key: string, or null when the text is empty. */
static int set_text(json_t *o, const char *key, const char *text)
{
	return json_object_set_new(o, key, text[0] ? json_string(text) : json_null());
}

int mb_sae_save(const mb_sae *s, const char *dir, mb_error *err)
{
	char path[4096];
	json_t *root = json_object(), *meta = json_object();
	char *text = NULL;
	int error = 0, bad = 0;
	mb_st_entry e[5];
	size_t n = 0;

	if (!root || !meta) {
		json_decref(root);
		json_decref(meta);
		return mb_error_oom(err, "cfg.json", 0);
	}
	bad |= json_object_set_new(root, "architecture", json_string(mb_sae_arch_name(s->arch)));
	bad |= json_object_set_new(root, "d_in", json_integer(s->d_in));
	bad |= json_object_set_new(root, "d_sae", json_integer(s->d_sae));
	bad |= json_object_set_new(root, "dtype", json_string("float32"));
	bad |= json_object_set_new(root, "device", json_string("cpu"));
	bad |= json_object_set_new(root, "apply_b_dec_to_input",
				   json_boolean(s->apply_b_dec_to_input));
	bad |= json_object_set_new(root, "normalize_activations", json_string("none"));
	bad |= json_object_set_new(root, "reshape_activations",
				   json_string(strstr(s->hook_name, "hook_z") ? "hook_z" : "none"));
	if (s->arch == MB_SAE_TOPK) {
		bad |= json_object_set_new(root, "k", json_integer(s->k));
		bad |= json_object_set_new(root, "rescale_acts_by_decoder_norm", json_false());
	}
	bad |= set_text(meta, "model_name", s->model_name);
	bad |= set_text(meta, "hook_name", s->hook_name);
	bad |= json_object_set_new(meta, "hook_head_index", json_null());
	bad |= json_object_set_new(meta, "context_size",
				   s->context_size ? json_integer(s->context_size) : json_null());
	bad |= json_object_set_new(meta, "prepend_bos", json_boolean(s->prepend_bos));
	bad |= set_text(meta, "dataset_path", s->dataset_path);
	bad |= json_object_set_new(meta, "sae_lens_version", json_string("6.0.0"));
	bad |= json_object_set_new(meta, "sae_lens_training_version", json_null());
	bad |= json_object_set_new(meta, "mechbench_version", json_string(mb_build_version()));
	bad |= json_object_set(root, "metadata", meta);
	if (!bad)
		text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(meta);
	json_decref(root);
	if (!text)
		return mb_error_oom(err, "cfg.json", 0);
	size_t len = strlen(text);
	char *t2 = realloc(text, len + 2);
	if (!t2) {
		free(text);
		return mb_error_oom(err, "cfg.json", len + 2);
	}
	text = t2;
	text[len++] = '\n';
	text[len] = '\0';
	if ((error = mb_file_path_join(path, sizeof(path), dir, CFG_NAME, err)) == 0)
		error = mb_file_write_all(path, text, len, err);
	free(text);
	if (error < 0)
		return error;

	memset(e, 0, sizeof(e));
	e[n++] = (mb_st_entry){"W_enc", 2, {s->d_in, s->d_sae}, s->W_enc};
	e[n++] = (mb_st_entry){"b_enc", 1, {s->d_sae}, s->b_enc};
	e[n++] = (mb_st_entry){"W_dec", 2, {s->d_sae, s->d_in}, s->W_dec};
	e[n++] = (mb_st_entry){"b_dec", 1, {s->d_in}, s->b_dec};
	if (s->arch == MB_SAE_JUMPRELU)
		e[n++] = (mb_st_entry){"threshold", 1, {s->d_sae}, s->threshold};
	if ((error = mb_file_path_join(path, sizeof(path), dir, WEIGHTS_NAME, err)) < 0)
		return error;
	return mb_safetensors_write_f32(path, e, n, NULL, err);
}
