/*
 * fuzz_json: libFuzzer target for the JSON layer the suite-spec parser is
 * built on: mb_json_doc_parse, then mb_json_locate and the typed getters on
 * fixed paths and on every top-level key the document has. mb_json_locate
 * also runs on text that failed to parse, since error reporting may call it
 * on anything. (The harness will extend this to the suite-spec parser.)
 */
#include <stdint.h>
#include <string.h>

#include <mechbench/json.h>

#define NAME "fuzz.json"

static const char *const paths[] = {
	"", "suite", "tasks", "tasks[0]", "tasks[0].name", "tasks[1].metrics[0].margin",
	"a.b.c", "[0]", "x[999999999999]", "tasks[0].metrics[0].name.deeper",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	mb_json_doc doc;
	mb_error err;
	int line, col;

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		int rc = mb_json_locate(text, size, paths[i], &line, &col);
		if ((rc != 0 && rc != MB_ENOTFOUND) || line < 1 || col < 1)
			__builtin_trap();
	}
	mb_error_clear(&err);
	if (mb_json_doc_parse(&doc, text, size, NAME, &err) < 0) {
		if (strncmp(err.msg, NAME ":", strlen(NAME) + 1) != 0 || strchr(err.msg, '\n'))
			__builtin_trap();
		return 0;
	}
	if (json_is_object(doc.root)) {
		const char *key;
		json_t *v;
		json_object_foreach(doc.root, key, v) {
			char path[512];
			const char *s;
			double d;
			int64_t n;
			json_t *o;
			mb_json_path_key(path, sizeof(path), "", key);
			mb_json_locate(doc.text, doc.len, path, &line, &col);
			mb_json_get_string(&doc, doc.root, "", key, 1, &s, &err);
			mb_json_get_number(&doc, doc.root, "", key, 1, &d, &err);
			mb_json_get_int(&doc, doc.root, "", key, 1, -5, 5, &n, &err);
			mb_json_get_array(&doc, doc.root, "", key, 1, &o, &err);
			if (json_is_array(v) && json_array_size(v) > 0) {
				char p0[600];
				mb_json_path_index(p0, sizeof(p0), path, 0);
				mb_json_field_error(&doc, &err, MB_EINVALID, p0, "fuzz");
				if (strchr(err.msg, '\n'))
					__builtin_trap();
			}
		}
		static const char *const allowed[] = {"suite", "tasks", NULL};
		mb_json_check_keys(&doc, doc.root, "", allowed, &err);
	}
	mb_json_field_error(&doc, &err, MB_EINVALID, "tasks[0].name", "fuzz");
	mb_json_doc_dispose(&doc);
	return 0;
}
