/*
 * json.h: JSON documents through jansson, with errors that point into the file.
 *
 * jansson reports line and column for syntax errors only; for validation
 * errors ("tasks[1].metrics[0].margin must be >= 0") we keep the source text
 * and locate the field in it, so every message reads
 *     benchmarks/canonical.json:14:17: tasks[1].metrics[0].margin: must be >= 0
 * Field paths use dots for object keys and [i] for array indices.
 */
#ifndef MECHBENCH_JSON_H
#define MECHBENCH_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <mechbench/error.h>

typedef struct mb_json_doc {
	json_t *root; /* owned reference */
	char *text;   /* owned copy of the source, NUL-terminated */
	size_t len;
	char *name;   /* owned: file path or label used in messages */
} mb_json_doc;

/* Reads and parses the file at path. Syntax errors: "path:line:col: message". */
int mb_json_doc_load(mb_json_doc *doc, const char *path, mb_error *err);
/* Parses text (len bytes, need not be NUL-terminated); name labels messages. */
int mb_json_doc_parse(mb_json_doc *doc, const char *text, size_t len, const char *name,
		      mb_error *err);
void mb_json_doc_dispose(mb_json_doc *doc);

/* Finds the value at field path in JSON text; writes its 1-based line and
 * column. Returns 0, or MB_ENOTFOUND when the path is not in the text (then
 * line and col are 1). "" is the root. */
int mb_json_locate(const char *text, size_t len, const char *field, int *line, int *col);

/* Sets err to "<name>:<line>:<col>: <field>: <message>" and returns code.
 * When the field is absent, its parent's position is used. */
int mb_json_field_error(const mb_json_doc *doc, mb_error *err, int code, const char *field,
			const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/*
 * Typed getters of obj[key], where obj sits at field path `at` in doc.
 * Return 0 when found and of the right type, 1 when absent and !required (out
 * untouched, so it keeps the caller's default), or MB_EINVALID with a field
 * error (missing required, wrong type, out of range).
 */
int mb_json_get_string(const mb_json_doc *doc, json_t *obj, const char *at, const char *key,
		       int required, const char **out, mb_error *err);
int mb_json_get_number(const mb_json_doc *doc, json_t *obj, const char *at, const char *key,
		       int required, double *out, mb_error *err);
int mb_json_get_int(const mb_json_doc *doc, json_t *obj, const char *at, const char *key,
		    int required, int64_t min, int64_t max, int64_t *out, mb_error *err);
int mb_json_get_bool(const mb_json_doc *doc, json_t *obj, const char *at, const char *key,
		     int required, int *out, mb_error *err);
int mb_json_get_object(const mb_json_doc *doc, json_t *obj, const char *at, const char *key,
		       int required, json_t **out, mb_error *err);
int mb_json_get_array(const mb_json_doc *doc, json_t *obj, const char *at, const char *key,
		      int required, json_t **out, mb_error *err);

/* Joins a parent path and a key ("a.b" + "c" -> "a.b.c") or index
 * ("a" + 3 -> "a[3]") into buf. */
void mb_json_path_key(char *buf, size_t cap, const char *at, const char *key);
void mb_json_path_index(char *buf, size_t cap, const char *at, size_t index);

/* Rejects keys of obj that are not in the NULL-terminated list allowed
 * (catches typos such as "treshold"). */
int mb_json_check_keys(const mb_json_doc *doc, json_t *obj, const char *at,
		       const char *const *allowed, mb_error *err);

#endif
