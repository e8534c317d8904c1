/*
 * tokenizer.c: Hugging Face tokenizer.json, WordLevel model.
 */
#include "model/tokenizer_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mechbench/file.h>
#include <mechbench/json.h>

#define MAX_ID MB_TOK_MAX_ID

typedef mb_tok_vocab_entry vocab_entry;
typedef mb_tok_added added_token;
typedef mb_tok_ids ids_buf;

int mb_tok_cmp_entry(const void *a, const void *b)
{
	return strcmp(((const vocab_entry *)a)->tok, ((const vocab_entry *)b)->tok);
}

int mb_tok_cmp_added(const void *a, const void *b)
{
	const added_token *x = a, *y = b;

	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	return strcmp(x->content, y->content);
}

int32_t mb_tokenizer_id(const mb_tokenizer *t, const char *token)
{
	vocab_entry key = {token, 0};
	const vocab_entry *e = bsearch(&key, t->vocab, t->n_vocab, sizeof(key), mb_tok_cmp_entry);

	if (e)
		return e->id;
	for (size_t i = 0; i < t->n_added; i++)
		if (strcmp(t->added[i].content, token) == 0)
			return t->added[i].id;
	return -1;
}

const char *mb_tokenizer_token(const mb_tokenizer *t, int32_t id)
{
	return id >= 0 && id < t->size ? t->by_id[id] : NULL;
}

int mb_tokenizer_vocab_size(const mb_tokenizer *t) { return t->size; }

void mb_tokenizer_free(mb_tokenizer *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_owned; i++)
		free(t->owned[i]);
	for (size_t i = 0; i < t->n_added; i++)
		free(t->added[i].content);
	free(t->owned);
	free(t->vocab);
	free(t->by_id);
	free(t->added);
	free(t->tmpl);
	free(t->name);
	mb_bpe_free(t->bpe);
	free(t);
}

static int typed_null_or(const mb_json_doc *doc, json_t *root, const char *key, json_t **out,
			 mb_error *err)
{
	json_t *v = json_object_get(root, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_object(v))
		return mb_json_field_error(doc, err, MB_EINVALID, key, "expected an object or null");
	*out = v;
	return 0;
}

static int parse_type(const mb_json_doc *doc, json_t *obj, const char *at, const char **type,
		      mb_error *err)
{
	return mb_json_get_string(doc, obj, at, "type", 1, type, err);
}

/* Reads a {token: id} object at field path `at` into t->vocab (sorted). */
static int parse_vocab(mb_tokenizer *t, const mb_json_doc *doc, json_t *vocab, const char *at,
		       mb_error *err)
{
	json_t *v;
	const char *key;
	size_t i = 0;

	t->n_vocab = json_object_size(vocab);
	t->vocab = calloc(t->n_vocab ? t->n_vocab : 1, sizeof(*t->vocab));
	t->owned = calloc(t->n_vocab ? t->n_vocab : 1, sizeof(*t->owned));
	if (!t->vocab || !t->owned)
		return mb_error_oom(err, "tokenizer vocabulary", t->n_vocab * sizeof(*t->vocab));
	json_object_foreach(vocab, key, v) {
		char path[512];
		int64_t id;

		mb_json_path_key(path, sizeof(path), at, key);
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) >= MAX_ID)
			return mb_json_field_error(doc, err, MB_EINVALID, path,
						   "expected an id in [0, %d)", MAX_ID);
		if (!*key)
			return mb_json_field_error(doc, err, MB_EINVALID, path, "empty token");
		id = json_integer_value(v);
		t->owned[t->n_owned] = strdup(key);
		if (!t->owned[t->n_owned])
			return mb_error_oom(err, "token", strlen(key));
		t->vocab[i].tok = t->owned[t->n_owned++];
		t->vocab[i].id = (int32_t)id;
		if (id + 1 > t->size)
			t->size = (int)id + 1;
		i++;
	}
	qsort(t->vocab, t->n_vocab, sizeof(*t->vocab), mb_tok_cmp_entry);
	return 0;
}

/* Hugging Face's BPE options that change nothing at their defaults; any
 * other value is refused rather than silently ignored. */
static int check_bpe_defaults(const mb_json_doc *doc, json_t *model, mb_error *err)
{
	static const char *const null_or_empty[] = {"continuing_subword_prefix",
						    "end_of_word_suffix", NULL};
	static const char *const falsy[] = {"fuse_unk", "byte_fallback", NULL};
	json_t *v = json_object_get(model, "dropout");

	if (v && !json_is_null(v) && !(json_is_number(v) && json_number_value(v) == 0.0))
		return mb_json_field_error(doc, err, MB_EINVALID, "model.dropout",
					   "BPE dropout is not supported (must be null)");
	for (int i = 0; null_or_empty[i]; i++) {
		char at[64];

		v = json_object_get(model, null_or_empty[i]);
		snprintf(at, sizeof(at), "model.%s", null_or_empty[i]);
		if (v && !json_is_null(v) && !(json_is_string(v) && !*json_string_value(v)))
			return mb_json_field_error(doc, err, MB_EINVALID, at,
						   "not supported (must be null or \"\")");
	}
	for (int i = 0; falsy[i]; i++) {
		char at[64];

		v = json_object_get(model, falsy[i]);
		snprintf(at, sizeof(at), "model.%s", falsy[i]);
		if (v && !json_is_false(v) && !json_is_null(v))
			return mb_json_field_error(doc, err, MB_EINVALID, at,
						   "not supported (must be false)");
	}
	return 0;
}

static int parse_model(mb_tokenizer *t, const mb_json_doc *doc, json_t *root, json_t **merges,
		       int *ignore_merges, mb_error *err)
{
	static const char *const keys[] = {"type", "vocab", "unk_token", NULL};
	static const char *const bpe_keys[] = {
		"type",	    "vocab",	 "merges",	  "unk_token",	   "dropout",
		"continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", "byte_fallback",
		"ignore_merges", NULL};
	json_t *model, *vocab;
	const char *type, *unk = NULL;
	int rc, bpe;

	*merges = NULL;
	rc = mb_json_get_object(doc, root, "", "model", 1, &model, err);
	if (rc < 0)
		return rc;
	rc = parse_type(doc, model, "model", &type, err);
	if (rc < 0)
		return rc;
	bpe = strcmp(type, "BPE") == 0;
	if (!bpe && strcmp(type, "WordLevel") != 0)
		return mb_json_field_error(doc, err, MB_EINVALID, "model.type",
					   "\"%s\" is not supported (WordLevel or BPE)", type);
	rc = mb_json_check_keys(doc, model, "model", bpe ? bpe_keys : keys, err);
	if (rc < 0)
		return rc;
	if (bpe) {
		*ignore_merges = 0;
		if ((rc = check_bpe_defaults(doc, model, err)) < 0 ||
		    (rc = mb_json_get_array(doc, model, "model", "merges", 1, merges, err)) < 0 ||
		    (rc = mb_json_get_bool(doc, model, "model", "ignore_merges", 0, ignore_merges,
					   err)) < 0)
			return rc;
		if (json_is_null(json_object_get(model, "unk_token")))
			json_object_del(model, "unk_token");
	}
	rc = mb_json_get_object(doc, model, "model", "vocab", 1, &vocab, err);
	if (rc < 0)
		return rc;
	if ((rc = parse_vocab(t, doc, vocab, "model.vocab", err)) < 0)
		return rc;
	rc = mb_json_get_string(doc, model, "model", "unk_token", 0, &unk, err);
	if (rc < 0)
		return rc;
	t->unk = -1;
	if (unk) {
		vocab_entry k = {unk, 0};
		const vocab_entry *e = bsearch(&k, t->vocab, t->n_vocab, sizeof(k), mb_tok_cmp_entry);

		if (!e)
			return mb_json_field_error(doc, err, MB_EINVALID, "model.unk_token",
						   "\"%s\" is not in model.vocab", unk);
		t->unk = e->id;
	}
	return 0;
}

static int parse_added(mb_tokenizer *t, const mb_json_doc *doc, json_t *root, mb_error *err)
{
	static const char *const keys[] = {"id",	 "content",    "single_word", "lstrip",
					   "rstrip",	 "normalized", "special",     NULL};
	json_t *arr = NULL;
	int rc = mb_json_get_array(doc, root, "", "added_tokens", 0, &arr, err);

	if (rc < 0)
		return rc;
	if (!arr)
		return 0;
	t->added = calloc(json_array_size(arr) ? json_array_size(arr) : 1, sizeof(*t->added));
	if (!t->added)
		return mb_error_oom(err, "added tokens", sizeof(*t->added));
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		char at[64];
		const char *content;
		int64_t id;
		int32_t in_vocab;

		mb_json_path_index(at, sizeof(at), "added_tokens", i);
		if (!json_is_object(o))
			return mb_json_field_error(doc, err, MB_EINVALID, at, "expected an object");
		if ((rc = mb_json_check_keys(doc, o, at, keys, err)) < 0 ||
		    (rc = mb_json_get_int(doc, o, at, "id", 1, 0, MAX_ID - 1, &id, err)) < 0 ||
		    (rc = mb_json_get_string(doc, o, at, "content", 1, &content, err)) < 0)
			return rc;
		if (!*content)
			return mb_json_field_error(doc, err, MB_EINVALID, at, "empty content");
		in_vocab = -1;
		{
			vocab_entry k = {content, 0};
			const vocab_entry *e = bsearch(&k, t->vocab, t->n_vocab, sizeof(k), mb_tok_cmp_entry);

			if (e)
				in_vocab = e->id;
		}
		if (in_vocab >= 0 && in_vocab != id)
			return mb_json_field_error(doc, err, MB_EINVALID, at,
						   "\"%s\" has id %lld here but %d in model.vocab",
						   content, (long long)id, (int)in_vocab);
		t->added[t->n_added].content = strdup(content);
		if (!t->added[t->n_added].content)
			return mb_error_oom(err, "added token", strlen(content));
		t->added[t->n_added].len = strlen(content);
		t->added[t->n_added].id = (int32_t)id;
		t->n_added++;
		if (id + 1 > t->size)
			t->size = (int)id + 1;
	}
	qsort(t->added, t->n_added, sizeof(*t->added), mb_tok_cmp_added);
	return 0;
}

static int parse_template(mb_tokenizer *t, const mb_json_doc *doc, json_t *pp, mb_error *err)
{
	json_t *single, *special = NULL;
	int rc, have_seq = 0;

	rc = mb_json_get_array(doc, pp, "post_processor", "single", 1, &single, err);
	if (rc == 0)
		rc = mb_json_get_object(doc, pp, "post_processor", "special_tokens", 0, &special, err);
	if (rc < 0)
		return rc;
	t->tmpl = calloc(json_array_size(single) * 4 + 1, sizeof(int32_t));
	if (!t->tmpl)
		return mb_error_oom(err, "template", sizeof(int32_t));
	for (size_t i = 0; i < json_array_size(single); i++) {
		json_t *it = json_array_get(single, i), *inner;
		char at[64];
		const char *id;

		mb_json_path_index(at, sizeof(at), "post_processor.single", i);
		if (json_is_object(it) && (inner = json_object_get(it, "Sequence")) != NULL) {
			if (have_seq)
				return mb_json_field_error(doc, err, MB_EINVALID, at,
							   "only one sequence is supported");
			have_seq = 1;
			t->tmpl[t->n_tmpl++] = -1;
			continue;
		}
		if (!json_is_object(it) || (inner = json_object_get(it, "SpecialToken")) == NULL ||
		    !json_is_object(inner) || !json_is_string(json_object_get(inner, "id")))
			return mb_json_field_error(doc, err, MB_EINVALID, at,
						   "expected {\"SpecialToken\": {\"id\": ...}} or "
						   "{\"Sequence\": ...}");
		id = json_string_value(json_object_get(inner, "id"));
		{
			json_t *sp = special ? json_object_get(special, id) : NULL;
			json_t *ids = sp ? json_object_get(sp, "ids") : NULL;

			if (!ids || !json_is_array(ids) || json_array_size(ids) < 1 ||
			    json_array_size(ids) > 4)
				return mb_json_field_error(doc, err, MB_EINVALID, at,
							   "special token \"%s\" has no ids in "
							   "post_processor.special_tokens",
							   id);
			for (size_t k = 0; k < json_array_size(ids); k++) {
				json_t *x = json_array_get(ids, k);

				if (!json_is_integer(x) || json_integer_value(x) < 0 ||
				    json_integer_value(x) >= MAX_ID)
					return mb_json_field_error(doc, err, MB_EINVALID, at,
								   "special token \"%s\": bad id", id);
				t->tmpl[t->n_tmpl++] = (int32_t)json_integer_value(x);
				if (json_integer_value(x) + 1 > t->size)
					t->size = (int)json_integer_value(x) + 1;
			}
		}
	}
	if (!have_seq)
		return mb_json_field_error(doc, err, MB_EINVALID, "post_processor.single",
					   "the template has no sequence");
	return 0;
}

int mb_tok_index_ids(mb_tokenizer *t, const mb_json_doc *doc, const char *vocab_name,
		     mb_error *err)
{
	if (t->size < 1)
		return doc ? mb_json_field_error(doc, err, MB_EINVALID, "model.vocab", "no tokens")
			   : mb_error_set(err, MB_EINVALID, "%s: no tokens", vocab_name);
	t->by_id = calloc((size_t)t->size, sizeof(*t->by_id));
	if (!t->by_id)
		return mb_error_oom(err, "tokenizer ids", (size_t)t->size * sizeof(*t->by_id));
	for (size_t i = 0; i < t->n_vocab; i++) {
		if (t->by_id[t->vocab[i].id]) {
			char path[512];

			mb_json_path_key(path, sizeof(path), "model.vocab", t->vocab[i].tok);
			if (!doc)
				return mb_error_set(err, MB_EINVALID,
						    "%s: \"%s\": id %d is also used by \"%s\"",
						    vocab_name, t->vocab[i].tok, (int)t->vocab[i].id,
						    t->by_id[t->vocab[i].id]);
			return mb_json_field_error(doc, err, MB_EINVALID, path,
						   "id %d is also used by \"%s\"", (int)t->vocab[i].id,
						   t->by_id[t->vocab[i].id]);
		}
		t->by_id[t->vocab[i].id] = t->vocab[i].tok;
	}
	for (size_t i = 0; i < t->n_added; i++) {
		const char *prev = t->by_id[t->added[i].id];

		if (prev && strcmp(prev, t->added[i].content) != 0) {
			/* GPT-NeoX adds its whitespace runs ("  ") under the ids of
			 * their byte-level vocabulary tokens ("ĠĠ"): the same bytes. */
			if (t->pre == PRE_BYTE_LEVEL &&
			    mb_bpe_same_bytes(t->added[i].content, prev))
				continue;
			return mb_error_set(err, MB_EINVALID, "%s: added_tokens: id %d is both \"%s\" "
					    "and \"%s\"", t->name, (int)t->added[i].id, prev,
					    t->added[i].content);
		}
		t->by_id[t->added[i].id] = t->added[i].content;
	}
	return 0;
}

/* The ByteLevel pre-tokenizer's options (GPT-2: add_prefix_space false,
 * trim_offsets true, use_regex true). trim_offsets touches only offsets. */
static int parse_byte_level(const mb_json_doc *doc, json_t *o, const char *at, int *prefix,
			    int *regex, mb_error *err)
{
	static const char *const keys[] = {"type", "add_prefix_space", "trim_offsets",
					   "use_regex", NULL};
	int trim = 0, rc;

	*prefix = 0;
	*regex = 1;
	if ((rc = mb_json_check_keys(doc, o, at, keys, err)) < 0 ||
	    (rc = mb_json_get_bool(doc, o, at, "add_prefix_space", 0, prefix, err)) < 0 ||
	    (rc = mb_json_get_bool(doc, o, at, "trim_offsets", 0, &trim, err)) < 0 ||
	    (rc = mb_json_get_bool(doc, o, at, "use_regex", 0, regex, err)) < 0)
		return rc;
	return 0;
}

/* Builds t->bpe from model.merges: strings "a b" or pairs ["a", "b"], in
 * rank order. */
static int parse_merges(mb_tokenizer *t, const mb_json_doc *doc, json_t *merges, mb_error *err)
{
	int rc = mb_bpe_init(&t->bpe, t, err);

	for (size_t i = 0; rc == 0 && i < json_array_size(merges); i++) {
		json_t *m = json_array_get(merges, i);
		char at[64], *copy = NULL;
		const char *l = NULL, *r = NULL;
		int line = 1, col = 1;

		mb_json_path_index(at, sizeof(at), "model.merges", i);
		if (json_is_string(m)) {
			const char *sp = strchr(json_string_value(m), ' ');

			if (sp && !strchr(sp + 1, ' ') && sp != json_string_value(m) && sp[1]) {
				copy = strdup(json_string_value(m));
				if (!copy)
					return mb_error_oom(err, "merge", 1);
				copy[sp - json_string_value(m)] = '\0';
				l = copy;
				r = copy + (sp - json_string_value(m)) + 1;
			}
		} else if (json_is_array(m) && json_array_size(m) == 2 &&
			   json_is_string(json_array_get(m, 0)) &&
			   json_is_string(json_array_get(m, 1))) {
			l = json_string_value(json_array_get(m, 0));
			r = json_string_value(json_array_get(m, 1));
		}
		if (!l)
			return mb_json_field_error(doc, err, MB_EINVALID, at,
						   "expected \"left right\" or [\"left\", \"right\"]");
		rc = mb_bpe_add_merge(t->bpe, t, l, r, err);
		free(copy);
		if (rc < 0) {
			/* Located only on failure: a scan of the text per merge is slow. */
			mb_json_locate(doc->text, doc->len, at, &line, &col);
			mb_error_prefix(err, "%s:%d:%d: %s", doc->name, line, col, at);
		}
	}
	return rc;
}

static int parse_doc(mb_tokenizer *t, const mb_json_doc *doc, mb_error *err)
{
	static const char *const top[] = {"version",	"truncation",	  "padding", "added_tokens",
					  "normalizer", "pre_tokenizer", "post_processor",
					  "decoder",	"model",	 NULL};
	json_t *root = doc->root, *o, *merges = NULL;
	const char *type;
	int rc, ignore_merges = 0, prefix = 0, regex = 1;

	if (!json_is_object(root))
		return mb_json_field_error(doc, err, MB_EINVALID, "", "expected a JSON object");
	rc = mb_json_check_keys(doc, root, "", top, err);
	if (rc < 0)
		return rc;
	for (int i = 0; i < 2; i++) {
		const char *k = i ? "padding" : "truncation";
		json_t *v = json_object_get(root, k);

		if (v && !json_is_null(v))
			return mb_json_field_error(doc, err, MB_EINVALID, k,
						   "not supported (must be null)");
	}
	if ((rc = parse_model(t, doc, root, &merges, &ignore_merges, err)) < 0 ||
	    (rc = parse_added(t, doc, root, err)) < 0)
		return rc;
	if ((rc = typed_null_or(doc, root, "normalizer", &o, err)) < 0)
		return rc;
	if (o) {
		if ((rc = parse_type(doc, o, "normalizer", &type, err)) < 0)
			return rc;
		if (strcmp(type, "Lowercase") == 0)
			t->lowercase = 1;
		else if (strcmp(type, "NFC") == 0 && merges)
			t->nfc = 1;
		else
			return mb_json_field_error(doc, err, MB_EINVALID, "normalizer.type",
						   "\"%s\" is not supported (null, Lowercase, or NFC "
						   "with BPE)", type);
	}
	if ((rc = typed_null_or(doc, root, "pre_tokenizer", &o, err)) < 0)
		return rc;
	t->pre = PRE_NONE;
	if (o) {
		if ((rc = parse_type(doc, o, "pre_tokenizer", &type, err)) < 0)
			return rc;
		if (strcmp(type, "WhitespaceSplit") == 0 && !merges)
			t->pre = PRE_WHITESPACE_SPLIT;
		else if (strcmp(type, "Whitespace") == 0 && !merges)
			t->pre = PRE_WHITESPACE;
		else if (strcmp(type, "ByteLevel") == 0 && merges) {
			t->pre = PRE_BYTE_LEVEL;
			if ((rc = parse_byte_level(doc, o, "pre_tokenizer", &prefix, &regex, err)) < 0)
				return rc;
		} else
			return mb_json_field_error(doc, err, MB_EINVALID, "pre_tokenizer.type",
						   "\"%s\" is not supported (%s)", type,
						   merges ? "BPE needs ByteLevel"
							  : "null, Whitespace, WhitespaceSplit");
	}
	if (merges && t->pre != PRE_BYTE_LEVEL)
		return mb_json_field_error(doc, err, MB_EINVALID, "pre_tokenizer",
					   "a BPE model needs the ByteLevel pre-tokenizer (only "
					   "byte-level BPE is supported)");
	if ((rc = typed_null_or(doc, root, "post_processor", &o, err)) < 0)
		return rc;
	if (o) {
		if ((rc = parse_type(doc, o, "post_processor", &type, err)) < 0)
			return rc;
		if (strcmp(type, "TemplateProcessing") == 0) {
			if ((rc = parse_template(t, doc, o, err)) < 0)
				return rc;
		} else if (strcmp(type, "ByteLevel") != 0 || !merges) {
			/* ByteLevel post-processing only trims offsets: no ids change. */
			return mb_json_field_error(doc, err, MB_EINVALID, "post_processor.type",
						   "\"%s\" is not supported (null, TemplateProcessing%s)",
						   type, merges ? ", ByteLevel" : "");
		}
	}
	if ((rc = typed_null_or(doc, root, "decoder", &o, err)) < 0)
		return rc;
	if (o && merges) {
		if ((rc = parse_type(doc, o, "decoder", &type, err)) < 0)
			return rc;
		if (strcmp(type, "ByteLevel") != 0)
			return mb_json_field_error(doc, err, MB_EINVALID, "decoder.type",
						   "\"%s\" is not supported with BPE (null or "
						   "ByteLevel)", type);
	}
	if ((rc = mb_tok_index_ids(t, doc, NULL, err)) < 0)
		return rc;
	for (size_t i = 0; i < t->n_tmpl; i++)
		if (t->tmpl[i] >= 0 && !t->by_id[t->tmpl[i]])
			return mb_json_field_error(doc, err, MB_EINVALID, "post_processor.special_tokens",
						   "id %d is neither in model.vocab nor an added token",
						   (int)t->tmpl[i]);
	if (merges) {
		if ((rc = parse_merges(t, doc, merges, err)) < 0)
			return rc;
		mb_bpe_set_options(t->bpe, prefix, regex, ignore_merges);
	}
	return 0;
}

static int finish(mb_tokenizer **out, mb_tokenizer *t, const mb_json_doc *doc, mb_error *err)
{
	int rc;

	t->name = strdup(doc->name);
	if (!t->name) {
		mb_tokenizer_free(t);
		return mb_error_oom(err, "tokenizer", 1);
	}
	rc = parse_doc(t, doc, err);
	if (rc < 0) {
		mb_tokenizer_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

int mb_tokenizer_parse(mb_tokenizer **out, const char *text, size_t len, const char *name,
		       mb_error *err)
{
	mb_json_doc doc;
	mb_tokenizer *t;
	int rc;

	*out = NULL;
	rc = mb_json_doc_parse(&doc, text, len, name, err);
	if (rc < 0)
		return rc;
	t = calloc(1, sizeof(*t));
	rc = t ? finish(out, t, &doc, err) : mb_error_oom(err, "tokenizer", sizeof(*t));
	mb_json_doc_dispose(&doc);
	return rc;
}

int mb_tokenizer_load(mb_tokenizer **out, const char *path, mb_error *err)
{
	mb_json_doc doc;
	mb_tokenizer *t;
	int rc;

	*out = NULL;
	rc = mb_json_doc_load(&doc, path, err);
	if (rc < 0)
		return rc;
	t = calloc(1, sizeof(*t));
	rc = t ? finish(out, t, &doc, err) : mb_error_oom(err, "tokenizer", sizeof(*t));
	mb_json_doc_dispose(&doc);
	return rc;
}

/* Encoding ------------------------------------------------------------------ */

int mb_tok_push(ids_buf *b, int32_t id, mb_error *err)
{
	if (b->n == b->cap) {
		int cap = b->cap ? 2 * b->cap : 32;
		int32_t *v = realloc(b->v, sizeof(int32_t) * (size_t)cap);

		if (!v)
			return mb_error_oom(err, "token ids", sizeof(int32_t) * (size_t)cap);
		b->v = v;
		b->cap = cap;
	}
	b->v[b->n++] = id;
	return 0;
}

static int is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int is_word(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       c == '_' || c >= 0x80;
}

static int emit_word(const mb_tokenizer *t, ids_buf *b, const char *w, size_t n, size_t offset,
		     char *scratch, mb_error *err)
{
	int32_t id;

	memcpy(scratch, w, n);
	scratch[n] = '\0';
	{
		vocab_entry k = {scratch, 0};
		const vocab_entry *e = bsearch(&k, t->vocab, t->n_vocab, sizeof(k), mb_tok_cmp_entry);

		id = e ? e->id : t->unk;
	}
	if (id < 0)
		return mb_error_set(err, MB_EINVALID,
				    "%s: word \"%s\" at byte %zu is not in the vocabulary and there "
				    "is no unk_token",
				    t->name, scratch, offset);
	return mb_tok_push(b, id, err);
}

/* Normalises and pre-tokenises seg[0..n) (at byte offset off of the text). */
static int encode_segment(const mb_tokenizer *t, ids_buf *b, const char *seg, size_t n,
			  size_t off, char *scratch, char *norm, mb_error *err)
{
	size_t i = 0;
	int rc = 0;

	memcpy(norm, seg, n);
	if (t->lowercase)
		for (size_t k = 0; k < n; k++)
			if (norm[k] >= 'A' && norm[k] <= 'Z')
				norm[k] = (char)(norm[k] - 'A' + 'a');
	if (t->bpe)
		return mb_bpe_encode_segment(t, b, norm, n, off, err);
	/* Hugging Face tokenizers only ever see valid UTF-8 (a Rust String);
	 * the word classes below take any byte >= 0x80, so check here. */
	if ((rc = mb_tok_check_text(t, norm, n, off, NULL, err)) < 0)
		return rc;
	if (t->pre == PRE_NONE) {
		if (n > 0)
			rc = emit_word(t, b, norm, n, off, scratch, err);
		return rc;
	}
	while (i < n && rc == 0) {
		size_t j;

		if (is_space((unsigned char)norm[i])) {
			i++;
			continue;
		}
		j = i;
		if (t->pre == PRE_WHITESPACE_SPLIT) {
			while (j < n && !is_space((unsigned char)norm[j]))
				j++;
		} else if (is_word((unsigned char)norm[i])) {
			while (j < n && is_word((unsigned char)norm[j]))
				j++;
		} else {
			while (j < n && !is_word((unsigned char)norm[j]) &&
			       !is_space((unsigned char)norm[j]))
				j++;
		}
		rc = emit_word(t, b, norm + i, j - i, off + i, scratch, err);
		i = j;
	}
	return rc;
}

int mb_tokenizer_encode(const mb_tokenizer *t, const char *text, int32_t **out, int *n,
			mb_error *err)
{
	size_t len = strlen(text), pos = 0, seg = 0;
	ids_buf body = {0}, all = {0};
	char *scratch = NULL, *norm = NULL;
	unsigned char first[256] = {0}; /* first bytes of added tokens */
	int rc = 0;

	*out = NULL;
	*n = 0;
	scratch = malloc(len + 1);
	norm = malloc(len + 1);
	if (!scratch || !norm) {
		rc = mb_error_oom(err, "tokenizer scratch", len + 1);
		goto cleanup;
	}
	for (size_t i = 0; i < t->n_added; i++)
		first[(unsigned char)t->added[i].content[0]] = 1;
	while (pos < len && rc == 0) {
		const added_token *m = NULL;

		if (!first[(unsigned char)text[pos]]) {
			pos++;
			continue;
		}
		for (size_t i = 0; i < t->n_added; i++)
			if (t->added[i].len <= len - pos &&
			    memcmp(text + pos, t->added[i].content, t->added[i].len) == 0) {
				m = &t->added[i];
				break;
			}
		if (!m) {
			pos++;
			continue;
		}
		rc = encode_segment(t, &body, text + seg, pos - seg, seg, scratch, norm, err);
		if (rc == 0)
			rc = mb_tok_push(&body, m->id, err);
		pos += m->len;
		seg = pos;
	}
	if (rc == 0)
		rc = encode_segment(t, &body, text + seg, len - seg, seg, scratch, norm, err);
	if (rc < 0)
		goto cleanup;
	if (!t->tmpl) {
		all = body;
		body.v = NULL;
	} else {
		for (size_t i = 0; i < t->n_tmpl && rc == 0; i++) {
			if (t->tmpl[i] >= 0)
				rc = mb_tok_push(&all, t->tmpl[i], err);
			else
				for (int k = 0; k < body.n && rc == 0; k++)
					rc = mb_tok_push(&all, body.v[k], err);
		}
		if (rc < 0)
			goto cleanup;
	}
	*out = all.v;
	*n = all.n;
	all.v = NULL;
cleanup:
	free(body.v);
	free(all.v);
	free(scratch);
	free(norm);
	return rc;
}

/* Decoding, kinds, other files ------------------------------------------------ */

const char *mb_tokenizer_kind(const mb_tokenizer *t) { return t->bpe ? "BPE" : "WordLevel"; }

int mb_tokenizer_decode(const mb_tokenizer *t, const int32_t *ids, int n, char **out,
			size_t *len, mb_error *err)
{
	size_t total = 1, k = 0;
	char *buf;

	*out = NULL;
	*len = 0;
	for (int i = 0; i < n; i++) {
		size_t l;

		if (ids[i] < 0 || ids[i] >= t->size || !t->by_id[ids[i]])
			return mb_error_set(err, MB_EINVALID, "%s: id %d (item %d) is not a token",
					    t->name, (int)ids[i], i);
		if (t->bpe)
			mb_bpe_bytes(t->bpe, ids[i], &l);
		else
			l = strlen(t->by_id[ids[i]]) + 1;
		total += l;
	}
	buf = malloc(total);
	if (!buf)
		return mb_error_oom(err, "decoded text", total);
	for (int i = 0; i < n; i++) {
		size_t l;
		const char *p;

		if (t->bpe) {
			p = mb_bpe_bytes(t->bpe, ids[i], &l);
		} else {
			p = t->by_id[ids[i]];
			l = strlen(p);
			if (i > 0)
				buf[k++] = ' ';
		}
		memcpy(buf + k, p, l);
		k += l;
	}
	buf[k] = '\0';
	*out = buf;
	*len = k;
	return 0;
}

/* Reads merges.txt (rank = line order) into t->bpe: an optional first line
 * "#version: ...", then "left right" per line; blank lines are skipped. */
static int parse_merges_txt(mb_tokenizer *t, char *text, size_t len, const char *path,
			    mb_error *err)
{
	size_t pos = 0;
	int rc, line = 0;

	rc = mb_bpe_init(&t->bpe, t, err);
	while (rc == 0 && pos < len) {
		char *s = text + pos, *e = memchr(s, '\n', len - pos), *sp;
		char where[600];
		size_t n = e ? (size_t)(e - s) : len - pos;
		mb_error sub;

		pos += n + 1;
		line++;
		if (n > 0 && s[n - 1] == '\r')
			n--;
		s[n] = '\0';
		snprintf(where, sizeof(where), "%s:%d", path, line);
		if (mb_tok_check_text(t, s, n, 0, NULL, &sub) < 0) {
			rc = mb_error_set(err, MB_EINVALID, "%s: %s", where, sub.msg);
			break;
		}
		if (n == 0 || (line == 1 && strncmp(s, "#version", 8) == 0))
			continue;
		sp = strchr(s, ' ');
		if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' ')) {
			rc = mb_error_set(err, MB_EINVALID, "%s: expected \"left right\", got \"%.80s\"",
					  where, s);
			break;
		}
		*sp = '\0';
		rc = mb_bpe_add_merge(t->bpe, t, s, sp + 1, err);
		if (rc < 0)
			mb_error_prefix(err, "%s", where);
	}
	return rc;
}

int mb_tok_parse_bpe_files(mb_tokenizer **out, const char *vocab, size_t vlen,
			   const char *vocab_name, char *merges, size_t mlen,
			   const char *merges_name, mb_error *err)
{
	static const char eot[] = "<|endoftext|>";
	mb_json_doc doc;
	mb_tokenizer *t;
	int rc;

	*out = NULL;
	rc = mb_json_doc_parse(&doc, vocab, vlen, vocab_name, err);
	if (rc < 0)
		return rc;
	t = calloc(1, sizeof(*t));
	if (!t) {
		mb_json_doc_dispose(&doc);
		return mb_error_oom(err, "tokenizer", sizeof(*t));
	}
	t->unk = -1;
	t->pre = PRE_BYTE_LEVEL;
	t->name = strdup(vocab_name);
	if (!t->name)
		rc = mb_error_oom(err, "tokenizer", 1);
	else if (!json_is_object(doc.root))
		rc = mb_json_field_error(&doc, err, MB_EINVALID, "", "expected {token: id}");
	else
		rc = parse_vocab(t, &doc, doc.root, "", err);
	/* GPT-2's special token, as transformers' GPT2Tokenizer registers it. */
	if (rc == 0 && mb_tokenizer_id(t, eot) >= 0) {
		t->added = calloc(1, sizeof(*t->added));
		if (!t->added || !(t->added[0].content = strdup(eot))) {
			rc = mb_error_oom(err, "added token", sizeof(eot));
		} else {
			t->added[0].len = strlen(eot);
			t->added[0].id = mb_tokenizer_id(t, eot);
			t->n_added = 1;
		}
	}
	if (rc == 0)
		rc = mb_tok_index_ids(t, NULL, vocab_name, err);
	if (rc == 0)
		rc = parse_merges_txt(t, merges, mlen, merges_name, err);
	mb_json_doc_dispose(&doc);
	if (rc < 0) {
		mb_tokenizer_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

int mb_tokenizer_load_bpe_files(mb_tokenizer **out, const char *vocab_path,
				const char *merges_path, mb_error *err)
{
	char *vocab = NULL, *merges = NULL;
	size_t vlen = 0, mlen = 0;
	int rc;

	*out = NULL;
	rc = mb_file_read_text(&vocab, &vlen, vocab_path, err);
	if (rc == 0)
		rc = mb_file_read_text(&merges, &mlen, merges_path, err);
	if (rc == 0)
		rc = mb_tok_parse_bpe_files(out, vocab, vlen, vocab_path, merges, mlen, merges_path,
					    err);
	free(vocab);
	free(merges);
	return rc;
}

int mb_tokenizer_load_dir(mb_tokenizer **out, const char *dir, mb_error *err)
{
	char a[4096], b[4096];
	struct stat sb;

	*out = NULL;
	snprintf(a, sizeof(a), "%s/tokenizer.json", dir);
	if (stat(a, &sb) == 0)
		return mb_tokenizer_load(out, a, err);
	snprintf(a, sizeof(a), "%s/vocab.json", dir);
	snprintf(b, sizeof(b), "%s/merges.txt", dir);
	if (stat(a, &sb) == 0 && stat(b, &sb) == 0)
		return mb_tokenizer_load_bpe_files(out, a, b, err);
	if (stat(a, &sb) == 0 || stat(b, &sb) == 0)
		return mb_error_set(err, MB_ENOTFOUND, "%s: has %s but not %s", dir,
				    stat(a, &sb) == 0 ? "vocab.json" : "merges.txt",
				    stat(a, &sb) == 0 ? "merges.txt" : "vocab.json");
	return mb_error_set(err, MB_ENOTFOUND,
			    "%s: no tokenizer (neither tokenizer.json nor vocab.json + merges.txt)",
			    dir);
}
