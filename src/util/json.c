/* json.c: jansson documents with file:line:col for syntax and field errors. */
#include <mechbench/json.h>
#include <mechbench/str.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MB_JSON_MAX_DEPTH 128
#define MB_JSON_PATH_MAX 512

int mb_json_doc_parse(mb_json_doc *doc, const char *text, size_t len, const char *name,
		      mb_error *err)
{
	json_error_t jerr;

	memset(doc, 0, sizeof(*doc));
	doc->name = mb_str_dup(name ? name : "<json>");
	doc->text = malloc(len + 1);
	if (!doc->name || !doc->text) {
		mb_json_doc_dispose(doc);
		return mb_error_oom(err, "JSON text", len + 1);
	}
	memcpy(doc->text, text, len);
	doc->text[len] = '\0';
	doc->len = len;
	doc->root = json_loadb(doc->text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc->root) {
		int line = jerr.line > 0 ? jerr.line : 1;
		int col = jerr.column > 0 ? jerr.column : 1;
		mb_error_set(err, MB_EINVALID, "%s:%d:%d: invalid JSON: %s", doc->name, line, col,
			     jerr.text);
		mb_json_doc_dispose(doc);
		return MB_EINVALID;
	}
	return 0;
}

int mb_json_doc_load(mb_json_doc *doc, const char *path, mb_error *err)
{
	FILE *f;
	char *buf = NULL;
	size_t cap = 0, len = 0;
	int error;

	memset(doc, 0, sizeof(*doc));
	f = fopen(path, "rb");
	if (!f)
		return mb_error_set(err, errno == ENOENT ? MB_ENOTFOUND : MB_EIO, "%s: %s", path,
				    strerror(errno));
	for (;;) {
		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 1 << 14;
			char *nb = realloc(buf, ncap);
			if (!nb) {
				free(buf);
				fclose(f);
				return mb_error_oom(err, path, ncap);
			}
			buf = nb;
			cap = ncap;
		}
		size_t got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		int sys = errno;
		free(buf);
		fclose(f);
		return mb_error_set(err, MB_EIO, "%s: read error: %s", path, strerror(sys));
	}
	fclose(f);
	error = mb_json_doc_parse(doc, buf ? buf : "", len, path, err);
	free(buf);
	return error;
}

void mb_json_doc_dispose(mb_json_doc *doc)
{
	if (!doc)
		return;
	if (doc->root)
		json_decref(doc->root);
	free(doc->text);
	free(doc->name);
	memset(doc, 0, sizeof(*doc));
}

/* --- locating a field path in the source text -------------------------- */

typedef struct scan {
	const char *s;
	size_t n, i;
	const char *target;
	char cur[MB_JSON_PATH_MAX];
	size_t found;
	int hit;
} scan;

static void skip_ws(scan *sc)
{
	while (sc->i < sc->n && (sc->s[sc->i] == ' ' || sc->s[sc->i] == '\t' ||
				 sc->s[sc->i] == '\n' || sc->s[sc->i] == '\r'))
		sc->i++;
}

/* Skips a string starting at '"'; copies its raw content (escapes kept as
 * written, which is enough for ASCII keys) into key when key != NULL. */
static int skip_string(scan *sc, char *key, size_t cap)
{
	size_t k = 0;

	if (sc->i >= sc->n || sc->s[sc->i] != '"')
		return -1;
	sc->i++;
	while (sc->i < sc->n && sc->s[sc->i] != '"') {
		if (sc->s[sc->i] == '\\' && sc->i + 1 < sc->n) {
			if (key && k + 1 < cap)
				key[k++] = sc->s[sc->i];
			sc->i++;
		}
		if (key && k + 1 < cap)
			key[k++] = sc->s[sc->i];
		sc->i++;
	}
	if (key)
		key[k] = '\0';
	if (sc->i >= sc->n)
		return -1;
	sc->i++;
	return 0;
}

static int walk(scan *sc, int depth)
{
	size_t base = strlen(sc->cur);

	if (depth > MB_JSON_MAX_DEPTH)
		return -1;
	skip_ws(sc);
	if (sc->i >= sc->n)
		return -1;
	if (!sc->hit && strcmp(sc->cur, sc->target) == 0) {
		sc->hit = 1;
		sc->found = sc->i;
		return 0;
	}
	char c = sc->s[sc->i];
	if (c == '{') {
		sc->i++;
		skip_ws(sc);
		if (sc->i < sc->n && sc->s[sc->i] == '}') {
			sc->i++;
			return 0;
		}
		for (;;) {
			char key[256];
			size_t key_at;
			skip_ws(sc);
			key_at = sc->i;
			if (skip_string(sc, key, sizeof(key)) < 0)
				return -1;
			{
				char tmp[MB_JSON_PATH_MAX];
				memcpy(tmp, sc->cur, base + 1);
				mb_json_path_key(sc->cur, sizeof(sc->cur), tmp, key);
			}
			skip_ws(sc);
			if (sc->i >= sc->n || sc->s[sc->i] != ':')
				return -1;
			sc->i++;
			/* Point at the key when the target is this member. */
			if (!sc->hit && strcmp(sc->cur, sc->target) == 0) {
				sc->hit = 1;
				sc->found = key_at;
				return 0;
			}
			if (walk(sc, depth + 1) < 0)
				return -1;
			if (sc->hit)
				return 0;
			sc->cur[base] = '\0';
			skip_ws(sc);
			if (sc->i < sc->n && sc->s[sc->i] == ',') {
				sc->i++;
				continue;
			}
			if (sc->i < sc->n && sc->s[sc->i] == '}') {
				sc->i++;
				return 0;
			}
			return -1;
		}
	}
	if (c == '[') {
		size_t idx = 0;
		sc->i++;
		skip_ws(sc);
		if (sc->i < sc->n && sc->s[sc->i] == ']') {
			sc->i++;
			return 0;
		}
		for (;; idx++) {
			char tmp[MB_JSON_PATH_MAX];
			memcpy(tmp, sc->cur, base + 1);
			mb_json_path_index(sc->cur, sizeof(sc->cur), tmp, idx);
			if (walk(sc, depth + 1) < 0)
				return -1;
			if (sc->hit)
				return 0;
			sc->cur[base] = '\0';
			skip_ws(sc);
			if (sc->i < sc->n && sc->s[sc->i] == ',') {
				sc->i++;
				continue;
			}
			if (sc->i < sc->n && sc->s[sc->i] == ']') {
				sc->i++;
				return 0;
			}
			return -1;
		}
	}
	if (c == '"')
		return skip_string(sc, NULL, 0);
	while (sc->i < sc->n && !strchr(",]} \t\r\n", sc->s[sc->i]))
		sc->i++;
	return 0;
}

static void offset_to_line_col(const char *s, size_t off, int *line, int *col)
{
	int l = 1, c = 1;
	for (size_t i = 0; i < off; i++) {
		if (s[i] == '\n') {
			l++;
			c = 1;
		} else {
			c++;
		}
	}
	*line = l;
	*col = c;
}

int mb_json_locate(const char *text, size_t len, const char *field, int *line, int *col)
{
	scan sc;

	memset(&sc, 0, sizeof(sc));
	sc.s = text;
	sc.n = len;
	sc.target = field ? field : "";
	*line = 1;
	*col = 1;
	walk(&sc, 0);
	if (!sc.hit)
		return MB_ENOTFOUND;
	offset_to_line_col(text, sc.found, line, col);
	return 0;
}

int mb_json_field_error(const mb_json_doc *doc, mb_error *err, int code, const char *field,
			const char *fmt, ...)
{
	char msg[MB_ERROR_MSG_MAX];
	char parent[MB_JSON_PATH_MAX];
	int line = 1, col = 1;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(parent, sizeof(parent), "%s", field ? field : "");
	/* Fall back to the nearest enclosing path that exists in the text. */
	while (mb_json_locate(doc->text, doc->len, parent, &line, &col) < 0 && parent[0]) {
		char *dot = strrchr(parent, '.');
		char *br = strrchr(parent, '[');
		char *cut = dot > br ? dot : br;
		if (!cut)
			parent[0] = '\0';
		else
			*cut = '\0';
	}
	return mb_error_set(err, code, "%s:%d:%d: %s: %s", doc->name, line, col,
			    field && field[0] ? field : "(root)", msg);
}

void mb_json_path_key(char *buf, size_t cap, const char *at, const char *key)
{
	if (at && at[0])
		snprintf(buf, cap, "%s.%s", at, key);
	else
		snprintf(buf, cap, "%s", key);
}

void mb_json_path_index(char *buf, size_t cap, const char *at, size_t index)
{
	snprintf(buf, cap, "%s[%zu]", at ? at : "", index);
}

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

/* Shared front half of the getters: 1 absent-and-optional, 0 present, <0 error. */
static int lookup(const mb_json_doc *doc, json_t *obj, const char *at, const char *key,
		  int required, json_t **v, char *path, size_t cap, mb_error *err)
{
	mb_json_path_key(path, cap, at, key);
	*v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
	if (*v)
		return 0;
	if (!required)
		return 1;
	return mb_json_field_error(doc, err, MB_EINVALID, path, "required field is missing");
}

#define TYPE_BIT(t) (1u << (unsigned)(t))

/* lookup, then "expected <want>, got <type>" unless the value's json_type is
 * one of the bits in types. */
static int lookup_typed(const mb_json_doc *doc, json_t *obj, const char *at, const char *key,
			int required, unsigned types, const char *want, json_t **v, char *path,
			size_t cap, mb_error *err)
{
	int rc = lookup(doc, obj, at, key, required, v, path, cap, err);
	if (rc != 0)
		return rc;
	if (!(types & TYPE_BIT(json_typeof(*v))))
		return mb_json_field_error(doc, err, MB_EINVALID, path, "expected %s, got %s", want,
					   type_name(*v));
	return 0;
}

#define GETTER_PROLOGUE(types, want)                                                   \
	char path[MB_JSON_PATH_MAX];                                                   \
	json_t *v;                                                                     \
	int rc = lookup_typed(doc, obj, at, key, required, (types), (want), &v, path,  \
			      sizeof(path), err);                                      \
	if (rc != 0)                                                                   \
		return rc

int mb_json_get_string(const mb_json_doc *doc, json_t *obj, const char *at, const char *key,
		       int required, const char **out, mb_error *err)
{
	GETTER_PROLOGUE(TYPE_BIT(JSON_STRING), "a string");
	*out = json_string_value(v);
	return 0;
}

int mb_json_get_number(const mb_json_doc *doc, json_t *obj, const char *at, const char *key,
		       int required, double *out, mb_error *err)
{
	GETTER_PROLOGUE(TYPE_BIT(JSON_INTEGER) | TYPE_BIT(JSON_REAL), "a number");
	*out = json_number_value(v);
	return 0;
}

int mb_json_get_int(const mb_json_doc *doc, json_t *obj, const char *at, const char *key,
		    int required, int64_t min, int64_t max, int64_t *out, mb_error *err)
{
	GETTER_PROLOGUE(TYPE_BIT(JSON_INTEGER), "an integer");
	json_int_t x = json_integer_value(v);
	if (x < min || x > max)
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "%lld is out of range [%lld, %lld]", (long long)x,
					   (long long)min, (long long)max);
	*out = (int64_t)x;
	return 0;
}

int mb_json_get_bool(const mb_json_doc *doc, json_t *obj, const char *at, const char *key,
		     int required, int *out, mb_error *err)
{
	GETTER_PROLOGUE(TYPE_BIT(JSON_TRUE) | TYPE_BIT(JSON_FALSE), "true or false");
	*out = json_is_true(v);
	return 0;
}

int mb_json_get_object(const mb_json_doc *doc, json_t *obj, const char *at, const char *key,
		       int required, json_t **out, mb_error *err)
{
	GETTER_PROLOGUE(TYPE_BIT(JSON_OBJECT), "an object");
	*out = v;
	return 0;
}

int mb_json_get_array(const mb_json_doc *doc, json_t *obj, const char *at, const char *key,
		      int required, json_t **out, mb_error *err)
{
	GETTER_PROLOGUE(TYPE_BIT(JSON_ARRAY), "an array");
	*out = v;
	return 0;
}

int mb_json_check_keys(const mb_json_doc *doc, json_t *obj, const char *at,
		       const char *const *allowed, mb_error *err)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v) {
		int ok = 0;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(*a, key) == 0)
				ok = 1;
		if (!ok) {
			char path[MB_JSON_PATH_MAX];
			mb_json_path_key(path, sizeof(path), at, key);
			return mb_json_field_error(doc, err, MB_EINVALID, path, "unknown field");
		}
	}
	return 0;
}
