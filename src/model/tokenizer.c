/*
 * tokenizer.c: Hugging Face tokenizer.json, WordLevel model.
 */
#include <mechbench/tokenizer.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/json.h>

#define MAX_ID (1 << 24)

typedef enum { PRE_NONE, PRE_WHITESPACE_SPLIT, PRE_WHITESPACE } pre_kind;

typedef struct vocab_entry {
	const char *tok; /* owned by the tokenizer */
	int32_t id;
} vocab_entry;

typedef struct added_token {
	char *content; /* owned */
	size_t len;
	int32_t id;
} added_token;

struct mb_tokenizer {
	vocab_entry *vocab; /* (n_vocab) sorted by tok */
	size_t n_vocab;
	const char **by_id; /* (size) token of each id, NULL for unused ids */
	int size;           /* 1 + largest id */
	added_token *added; /* (n_added) longest first */
	size_t n_added;
	int32_t unk;        /* -1 without unk_token */
	int lowercase;
	pre_kind pre;
	int32_t *tmpl;      /* post-processor template: ids, -1 = the sequence; NULL = none */
	size_t n_tmpl;
	char *name;         /* owned, for messages */
	char **owned;       /* token strings */
	size_t n_owned;
};

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const vocab_entry *)a)->tok, ((const vocab_entry *)b)->tok);
}

static int cmp_added(const void *a, const void *b)
{
	const added_token *x = a, *y = b;

	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	return strcmp(x->content, y->content);
}

int32_t mb_tokenizer_id(const mb_tokenizer *t, const char *token)
{
	vocab_entry key = {token, 0};
	const vocab_entry *e = bsearch(&key, t->vocab, t->n_vocab, sizeof(key), cmp_entry);

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

static int parse_model(mb_tokenizer *t, const mb_json_doc *doc, json_t *root, mb_error *err)
{
	static const char *const keys[] = {"type", "vocab", "unk_token", NULL};
	json_t *model, *vocab, *v;
	const char *type, *key, *unk = NULL;
	int rc;
	size_t i = 0;

	rc = mb_json_get_object(doc, root, "", "model", 1, &model, err);
	if (rc < 0)
		return rc;
	rc = parse_type(doc, model, "model", &type, err);
	if (rc < 0)
		return rc;
	if (strcmp(type, "WordLevel") != 0)
		return mb_json_field_error(doc, err, MB_EINVALID, "model.type",
					   "\"%s\" is not supported yet (only WordLevel)", type);
	rc = mb_json_check_keys(doc, model, "model", keys, err);
	if (rc < 0)
		return rc;
	rc = mb_json_get_object(doc, model, "model", "vocab", 1, &vocab, err);
	if (rc < 0)
		return rc;
	t->n_vocab = json_object_size(vocab);
	t->vocab = calloc(t->n_vocab ? t->n_vocab : 1, sizeof(*t->vocab));
	t->owned = calloc(t->n_vocab ? t->n_vocab : 1, sizeof(*t->owned));
	if (!t->vocab || !t->owned)
		return mb_error_oom(err, "tokenizer vocabulary", t->n_vocab * sizeof(*t->vocab));
	json_object_foreach(vocab, key, v) {
		char path[512];
		int64_t id;

		mb_json_path_key(path, sizeof(path), "model.vocab", key);
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) >= MAX_ID)
			return mb_json_field_error(doc, err, MB_EINVALID, path,
						   "expected an id in [0, %d)", MAX_ID);
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
	qsort(t->vocab, t->n_vocab, sizeof(*t->vocab), cmp_entry);
	rc = mb_json_get_string(doc, model, "model", "unk_token", 0, &unk, err);
	if (rc < 0)
		return rc;
	t->unk = -1;
	if (unk) {
		vocab_entry k = {unk, 0};
		const vocab_entry *e = bsearch(&k, t->vocab, t->n_vocab, sizeof(k), cmp_entry);

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
			const vocab_entry *e = bsearch(&k, t->vocab, t->n_vocab, sizeof(k), cmp_entry);

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
	qsort(t->added, t->n_added, sizeof(*t->added), cmp_added);
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

static int parse_doc(mb_tokenizer *t, const mb_json_doc *doc, mb_error *err)
{
	static const char *const top[] = {"version",	"truncation",	  "padding", "added_tokens",
					  "normalizer", "pre_tokenizer", "post_processor",
					  "decoder",	"model",	 NULL};
	json_t *root = doc->root, *o;
	const char *type;
	int rc;

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
	if ((rc = parse_model(t, doc, root, err)) < 0 || (rc = parse_added(t, doc, root, err)) < 0)
		return rc;
	if ((rc = typed_null_or(doc, root, "normalizer", &o, err)) < 0)
		return rc;
	if (o) {
		if ((rc = parse_type(doc, o, "normalizer", &type, err)) < 0)
			return rc;
		if (strcmp(type, "Lowercase") != 0)
			return mb_json_field_error(doc, err, MB_EINVALID, "normalizer.type",
						   "\"%s\" is not supported (null or Lowercase)", type);
		t->lowercase = 1;
	}
	if ((rc = typed_null_or(doc, root, "pre_tokenizer", &o, err)) < 0)
		return rc;
	t->pre = PRE_NONE;
	if (o) {
		if ((rc = parse_type(doc, o, "pre_tokenizer", &type, err)) < 0)
			return rc;
		if (strcmp(type, "WhitespaceSplit") == 0)
			t->pre = PRE_WHITESPACE_SPLIT;
		else if (strcmp(type, "Whitespace") == 0)
			t->pre = PRE_WHITESPACE;
		else
			return mb_json_field_error(doc, err, MB_EINVALID, "pre_tokenizer.type",
						   "\"%s\" is not supported (null, Whitespace, "
						   "WhitespaceSplit)",
						   type);
	}
	if ((rc = typed_null_or(doc, root, "post_processor", &o, err)) < 0)
		return rc;
	if (o) {
		if ((rc = parse_type(doc, o, "post_processor", &type, err)) < 0)
			return rc;
		if (strcmp(type, "TemplateProcessing") != 0)
			return mb_json_field_error(doc, err, MB_EINVALID, "post_processor.type",
						   "\"%s\" is not supported (null or TemplateProcessing)",
						   type);
		if ((rc = parse_template(t, doc, o, err)) < 0)
			return rc;
	}
	if (t->size < 1)
		return mb_json_field_error(doc, err, MB_EINVALID, "model.vocab", "no tokens");
	t->by_id = calloc((size_t)t->size, sizeof(*t->by_id));
	if (!t->by_id)
		return mb_error_oom(err, "tokenizer ids", (size_t)t->size * sizeof(*t->by_id));
	for (size_t i = 0; i < t->n_vocab; i++) {
		if (t->by_id[t->vocab[i].id]) {
			char path[512];

			mb_json_path_key(path, sizeof(path), "model.vocab", t->vocab[i].tok);
			return mb_json_field_error(doc, err, MB_EINVALID, path,
						   "id %d is also used by \"%s\"", (int)t->vocab[i].id,
						   t->by_id[t->vocab[i].id]);
		}
		t->by_id[t->vocab[i].id] = t->vocab[i].tok;
	}
	for (size_t i = 0; i < t->n_added; i++) {
		const char *prev = t->by_id[t->added[i].id];

		if (prev && strcmp(prev, t->added[i].content) != 0)
			return mb_json_field_error(doc, err, MB_EINVALID, "added_tokens",
						   "id %d is both \"%s\" and \"%s\"", (int)t->added[i].id,
						   prev, t->added[i].content);
		t->by_id[t->added[i].id] = t->added[i].content;
	}
	for (size_t i = 0; i < t->n_tmpl; i++)
		if (t->tmpl[i] >= 0 && !t->by_id[t->tmpl[i]])
			return mb_json_field_error(doc, err, MB_EINVALID, "post_processor.special_tokens",
						   "id %d is neither in model.vocab nor an added token",
						   (int)t->tmpl[i]);
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

typedef struct ids_buf {
	int32_t *v;
	int n, cap;
} ids_buf;

static int push_id(ids_buf *b, int32_t id, mb_error *err)
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
		const vocab_entry *e = bsearch(&k, t->vocab, t->n_vocab, sizeof(k), cmp_entry);

		id = e ? e->id : t->unk;
	}
	if (id < 0)
		return mb_error_set(err, MB_EINVALID,
				    "%s: word \"%s\" at byte %zu is not in the vocabulary and there "
				    "is no unk_token",
				    t->name, scratch, offset);
	return push_id(b, id, err);
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
	int rc = 0;

	*out = NULL;
	*n = 0;
	scratch = malloc(len + 1);
	norm = malloc(len + 1);
	if (!scratch || !norm) {
		rc = mb_error_oom(err, "tokenizer scratch", len + 1);
		goto cleanup;
	}
	while (pos < len && rc == 0) {
		const added_token *m = NULL;

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
			rc = push_id(&body, m->id, err);
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
				rc = push_id(&all, t->tmpl[i], err);
			else
				for (int k = 0; k < body.n && rc == 0; k++)
					rc = push_id(&all, body.v[k], err);
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
