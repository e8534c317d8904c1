/*
 * test_junit_schema.c: the JUnit schema check itself (tests/fixtures/junit):
 * every bad-*.xml case is rejected by `xmllint --schema junit.xsd` for the
 * reason it was written for, and a minimal valid report passes, so the
 * schema is neither too loose nor broken. Also the tool-requirement helper
 * that turns a missing tool into a failure under ci/test.
 */
#include <criterion/criterion.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/harness_support.h"

#define JUNIT MB_SOURCE_DIR "/tests/fixtures/junit/"

/* Each bad case and a fragment of xmllint's message that names its defect. */
static const struct {
	const char *file;
	const char *reason;
} bad_cases[] = {
	{"bad-count.xml", "attribute 'tests': 'two' is not a valid value"},
	{"bad-element.xml", "Element 'verdict': This element is not expected"},
	{"bad-order.xml", "Element 'testcase': This element is not expected"},
};

Test(junit_schema, rejects_every_bad_case_for_its_own_reason)
{
	glob_t g;
	size_t ncases = sizeof(bad_cases) / sizeof(bad_cases[0]);

	MBT_NEED_TOOL("xmllint", "the JUnit schema cases cannot be checked (Debian package "
		      "'libxml2-utils')");
	/* every bad-*.xml on disk is in the table: a new case cannot go unrun */
	cr_assert_eq(glob(JUNIT "bad-*.xml", 0, NULL, &g), 0);
	cr_assert_eq(g.gl_pathc, ncases, "%zu bad-*.xml files, %zu in this test's table",
		     g.gl_pathc, ncases);
	for (size_t i = 0; i < g.gl_pathc; i++) {
		const char *base = strrchr(g.gl_pathv[i], '/') + 1;
		size_t k = 0;
		while (k < ncases && strcmp(bad_cases[k].file, base) != 0)
			k++;
		cr_assert_lt(k, ncases, "%s is not in this test's table", base);
	}
	globfree(&g);
	for (size_t k = 0; k < ncases; k++) {
		char cmd[512], *out = NULL;
		int rc;
		snprintf(cmd, sizeof(cmd), "xmllint --noout --schema junit.xsd %s", bad_cases[k].file);
		rc = mbt_sh(JUNIT, cmd, &out);
		printf("%s: exit %d: %s", bad_cases[k].file, rc, out);
		cr_expect_neq(rc, 0, "%s must be rejected", bad_cases[k].file);
		cr_expect(out && strstr(out, bad_cases[k].reason), "%s: expected '%s' in: %s",
			  bad_cases[k].file, bad_cases[k].reason, out);
		free(out);
	}
}

Test(junit_schema, accepts_a_minimal_valid_report)
{
	char dir[256], *out = NULL;

	MBT_NEED_TOOL("xmllint", "the JUnit schema cannot be checked");
	mbt_tmpdir(dir, sizeof(dir));
	mbt_write(dir, "ok.xml",
		  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites><testsuite name=\"s\" "
		  "tests=\"2\"><testcase name=\"a\"/><testcase name=\"b\"><failure message=\"m\">"
		  "x</failure></testcase></testsuite></testsuites>\n");
	cr_expect_eq(mbt_sh(dir, "xmllint --noout --schema '" JUNIT "junit.xsd' ok.xml", &out), 0,
		     "%s", out);
	free(out);
	mbt_rmtree(dir);
}

Test(junit_schema, tool_requirement_reads_mb_require_tools)
{
	cr_assert(mbt_have_tool("sh"));
	cr_assert_not(mbt_have_tool("mechbench-no-such-tool"));
	setenv("MB_REQUIRE_TOOLS", "1", 1);
	cr_assert(mbt_require_tools());
	setenv("MB_REQUIRE_TOOLS", "0", 1);
	cr_assert_not(mbt_require_tools());
	unsetenv("MB_REQUIRE_TOOLS");
	cr_assert_not(mbt_require_tools());
}
