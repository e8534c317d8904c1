/* JSON documents: syntax errors and field errors carry file:line:col. */
#include <criterion/criterion.h>
#include <string.h>

#include <mechbench/json.h>

static const char spec[] =
	"{\n"
	"  \"suite\": \"canonical\",\n"
	"  \"alpha\": 0.05,\n"
	"  \"tasks\": [\n"
	"    {\"name\": \"modadd\", \"metrics\": [{\"name\": \"acc\", \"margin\": -1}]},\n"
	"    {\"name\": \"induction\", \"metrics\": []}\n"
	"  ]\n"
	"}\n";

Test(json, syntax_error_names_file_line_and_column)
{
	mb_json_doc doc;
	mb_error err;
	const char *bad = "{\n  \"a\": 1,\n  \"b\": ]\n}";
	cr_assert_eq(mb_json_doc_parse(&doc, bad, strlen(bad), "spec.json", &err), MB_EINVALID);
	cr_expect(strncmp(err.msg, "spec.json:3:", 12) == 0, "%s", err.msg);
}

Test(json, duplicate_keys_are_rejected)
{
	mb_json_doc doc;
	mb_error err;
	const char *dup = "{\"a\": 1, \"a\": 2}";
	cr_expect_eq(mb_json_doc_parse(&doc, dup, strlen(dup), "d.json", &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "d.json:1:") != NULL, "%s", err.msg);
}

Test(json, locate_finds_nested_fields)
{
	int line, col;
	cr_assert_eq(mb_json_locate(spec, strlen(spec), "alpha", &line, &col), 0);
	cr_expect_eq(line, 3);
	cr_expect_eq(col, 3);
	cr_assert_eq(mb_json_locate(spec, strlen(spec), "tasks[0].metrics[0].margin", &line, &col), 0);
	cr_expect_eq(line, 5);
	cr_expect_eq(col, 52); /* the key "margin" */
	cr_assert_eq(mb_json_locate(spec, strlen(spec), "tasks[1].name", &line, &col), 0);
	cr_expect_eq(line, 6);
	cr_expect_eq(mb_json_locate(spec, strlen(spec), "tasks[2]", &line, &col), MB_ENOTFOUND);
}

Test(json, field_errors_point_at_the_field)
{
	mb_json_doc doc;
	mb_error err;
	json_t *tasks, *metrics, *m0;
	int64_t margin;

	cr_assert_eq(mb_json_doc_parse(&doc, spec, strlen(spec), "canonical.json", &err), 0);
	cr_assert_eq(mb_json_get_array(&doc, doc.root, "", "tasks", 1, &tasks, &err), 0);
	cr_assert_eq(mb_json_get_array(&doc, json_array_get(tasks, 0), "tasks[0]", "metrics", 1,
				       &metrics, &err), 0);
	m0 = json_array_get(metrics, 0);
	cr_expect_eq(mb_json_get_int(&doc, m0, "tasks[0].metrics[0]", "margin", 1, 0, 100, &margin,
				     &err), MB_EINVALID);
	cr_expect_str_eq(err.msg,
			 "canonical.json:5:52: tasks[0].metrics[0].margin: -1 is out of range [0, 100]");
	/* A missing required field points at its parent object. */
	cr_expect_eq(mb_json_get_string(&doc, m0, "tasks[0].metrics[0]", "kind", 1, &(const char *){0},
					&err), MB_EINVALID);
	cr_expect(strstr(err.msg, "canonical.json:5:") == err.msg, "%s", err.msg);
	cr_expect(strstr(err.msg, "tasks[0].metrics[0].kind: required field is missing"), "%s", err.msg);
	/* A wrong type says what it got. */
	const char *s;
	cr_expect_eq(mb_json_get_string(&doc, doc.root, "", "alpha", 1, &s, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "alpha: expected a string, got a number"), "%s", err.msg);
	/* An optional absent field keeps the default. */
	double dflt = 0.9;
	cr_expect_eq(mb_json_get_number(&doc, doc.root, "", "power", 0, &dflt, &err), 1);
	cr_expect_eq(dflt, 0.9);
	/* Unknown keys are typos until proven otherwise. */
	static const char *const allowed[] = {"suite", "alpha", NULL};
	cr_expect_eq(mb_json_check_keys(&doc, doc.root, "", allowed, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "canonical.json:4:3: tasks: unknown field"), "%s", err.msg);
	mb_json_doc_dispose(&doc);
}

Test(json, missing_file_names_the_path)
{
	mb_json_doc doc;
	mb_error err;
	cr_expect_eq(mb_json_doc_load(&doc, "/nonexistent/spec.json", &err), MB_ENOTFOUND);
	cr_expect(strstr(err.msg, "/nonexistent/spec.json"), "%s", err.msg);
}
