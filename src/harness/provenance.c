/*
 * provenance.c: the provenance list as data, and its JSON form (provenance.h).
 */
#include <mechbench/provenance.h>

#include <stdio.h>
#include <string.h>

#define FIELD_ROW(kind, name, size, at, sql)                                                 \
	{#name, MB_PROVENANCE_##kind, offsetof(mb_provenance, name), size, MB_PROVENANCE_##at},

const mb_provenance_field mb_provenance_fields[] = {MB_PROVENANCE_FIELDS(FIELD_ROW)};
const size_t mb_provenance_n_fields = sizeof(mb_provenance_fields) / sizeof(mb_provenance_fields[0]);

static json_t *field_json(const mb_provenance *p, const mb_provenance_field *f)
{
	const char *at = (const char *)p + f->offset;

	switch (f->kind) {
	case MB_PROVENANCE_TEXT:
	case MB_PROVENANCE_OTEXT:
		return json_string(at);
	case MB_PROVENANCE_TRI: {
		int v = *(const int *)(const void *)at;
		return v < 0 ? json_null() : json_boolean(v);
	}
	case MB_PROVENANCE_BOOL:
		return json_boolean(*(const int *)(const void *)at);
	case MB_PROVENANCE_INT:
		return json_integer(*(const int *)(const void *)at);
	case MB_PROVENANCE_U64:
		return json_integer((json_int_t) * (const uint64_t *)(const void *)at);
	case MB_PROVENANCE_REAL:
		return json_real(*(const double *)(const void *)at);
	}
	return NULL;
}

json_t *mb_provenance_to_json(const mb_provenance *p)
{
	json_t *o = json_object();

	for (size_t i = 0; o && i < mb_provenance_n_fields; i++) {
		const mb_provenance_field *f = &mb_provenance_fields[i];
		if (json_object_set_new(o, f->name, field_json(p, f)) < 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

static int field_from_json(mb_provenance *p, const mb_provenance_field *f, const mb_json_doc *doc,
			   json_t *o, const char *at, mb_error *err)
{
	char *dst = (char *)p + f->offset;
	const char *s = NULL;
	int64_t i64 = 0;
	int rc = 0;

	switch (f->kind) {
	case MB_PROVENANCE_TEXT:
	case MB_PROVENANCE_OTEXT:
		if ((rc = mb_json_get_string(doc, o, at, f->name, 1, &s, err)) == 0)
			snprintf(dst, f->size, "%s", s);
		return rc;
	case MB_PROVENANCE_TRI: {
		json_t *v = json_object_get(o, f->name);
		char path[512];
		if (json_is_null(v) || json_is_boolean(v)) {
			*(int *)(void *)dst = json_is_null(v) ? -1 : json_is_true(v);
			return 0;
		}
		mb_json_path_key(path, sizeof(path), at, f->name);
		return mb_json_field_error(doc, err, MB_EINVALID, path,
					   "expected true, false or null");
	}
	case MB_PROVENANCE_BOOL:
		return mb_json_get_bool(doc, o, at, f->name, 1, (int *)(void *)dst, err);
	case MB_PROVENANCE_INT:
		if ((rc = mb_json_get_int(doc, o, at, f->name, 1, 0, 1 << 20, &i64, err)) == 0)
			*(int *)(void *)dst = (int)i64;
		return rc;
	case MB_PROVENANCE_U64:
		if ((rc = mb_json_get_int(doc, o, at, f->name, 1, 0, INT64_MAX, &i64, err)) == 0)
			*(uint64_t *)(void *)dst = (uint64_t)i64;
		return rc;
	case MB_PROVENANCE_REAL:
		return mb_json_get_number(doc, o, at, f->name, 1, (double *)(void *)dst, err);
	}
	return 0;
}

int mb_provenance_from_json(mb_provenance *p, const mb_json_doc *doc, json_t *o, const char *at,
			    mb_error *err)
{
	for (size_t i = 0; i < mb_provenance_n_fields; i++) {
		const mb_provenance_field *f = &mb_provenance_fields[i];
		int rc;
		if (f->offset == offsetof(mb_provenance, suite))
			continue; /* the baseline's top-level "suite" is the one read */
		if ((rc = field_from_json(p, f, doc, o, at, err)) != 0)
			return rc;
	}
	return 0;
}
