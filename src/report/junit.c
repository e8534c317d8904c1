/* junit.c: JUnit XML, one testcase per metric (the shape of the Jenkins
 * junit-4.xsd; tests/fixtures/junit/junit.xsd checks it). REGRESSED and
 * THRESHOLD-FAILED are failures carrying the numbers; INCONCLUSIVE and the
 * -CHANGED statuses are failures too unless their policy passes them, in
 * which case they are reported as skipped with the reason. */
#include "report_int.h"

#include <string.h>

#include <mechbench/str.h>

/* How a row reads in JUnit: 0 passed, 1 failure, 2 skipped. The exit code
 * decides: a status that fails the gate is a failure. */
static int row_kind(const mb_gate_result *g, const mb_gate_row *r)
{
	switch (r->status) {
	case MB_GATE_IDENTICAL:
	case MB_GATE_IMPROVED:
	case MB_GATE_PASS: return 0;
	case MB_GATE_REGRESSED:
	case MB_GATE_THRESHOLD_FAILED: return 1;
	default: return g->exit_code == 0 ? 2 : 1;
	}
}

void mb_report_gate_junit(FILE *f, const mb_gate_result *g, const char *timestamp,
			  const char *hostname)
{
	size_t failures = 0, skipped = 0;

	for (size_t i = 0; i < g->n_rows; i++) {
		int k = row_kind(g, &g->rows[i]);
		failures += k == 1;
		skipped += k == 2;
	}
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
	fprintf(f, "<testsuites name=\"mechbench gate\" tests=\"%zu\" failures=\"%zu\" "
		   "errors=\"0\" skipped=\"%zu\" time=\"0\">\n", g->n_rows, failures, skipped);
	fprintf(f, "  <testsuite name=\"");
	mb_str_put_xml(f, g->suite);
	fprintf(f, "\" tests=\"%zu\" failures=\"%zu\" errors=\"0\" skipped=\"%zu\" time=\"0\" "
		   "timestamp=\"", g->n_rows, failures, skipped);
	mb_str_put_xml(f, timestamp);
	fprintf(f, "\" hostname=\"");
	mb_str_put_xml(f, hostname);
	fprintf(f, "\">\n    <properties>\n");
	fprintf(f, "      <property name=\"baseline_ref\" value=\"");
	mb_str_put_xml(f, g->ref);
	fprintf(f, "\"/>\n      <property name=\"baseline_commit\" value=\"%s\"/>\n", g->commit);
	fprintf(f, "      <property name=\"spec\" value=\"");
	mb_str_put_xml(f, g->spec_path);
	fprintf(f, "\"/>\n      <property name=\"spec_blob\" value=\"%s\"/>\n", g->spec_blob);
	fprintf(f, "      <property name=\"alpha\" value=\"%g\"/>\n", g->alpha);
	fprintf(f, "      <property name=\"outcome\" value=\"%s\"/>\n",
		mb_gate_status_name(g->outcome));
	fprintf(f, "    </properties>\n");
	for (size_t i = 0; i < g->n_rows; i++) {
		const mb_gate_row *r = &g->rows[i];
		int k = row_kind(g, r);
		char why[1024];
		fprintf(f, "    <testcase name=\"");
		mb_str_put_xml(f, r->entry);
		fprintf(f, "/");
		mb_str_put_xml(f, r->metric);
		fprintf(f, "@%d\" classname=\"mechbench.", r->version);
		mb_str_put_xml(f, g->suite);
		fprintf(f, ".");
		mb_str_put_xml(f, r->entry);
		fprintf(f, "\" time=\"0\"");
		if (k == 0) {
			fprintf(f, "/>\n");
			continue;
		}
		mb_row_explain(why, sizeof(why), r, g->level);
		fprintf(f, ">\n      <%s message=\"", k == 1 ? "failure" : "skipped");
		mb_str_put_xml(f, why);
		if (k == 1) {
			fprintf(f, "\" type=\"%s\">", mb_gate_status_name(r->status));
			mb_str_put_xml(f, why);
			fprintf(f, "</failure>\n");
		} else {
			fprintf(f, "\"/>\n");
		}
		fprintf(f, "    </testcase>\n");
	}
	fprintf(f, "    <system-out>");
	for (size_t i = 0; i < g->n_deviations; i++) {
		mb_str_put_xml(f, "THRESHOLD-CHANGED ");
		mb_str_put_xml(f, g->deviations[i].path);
		mb_str_put_xml(f, ": ");
		mb_str_put_xml(f, g->deviations[i].before);
		mb_str_put_xml(f, " -> ");
		mb_str_put_xml(f, g->deviations[i].after);
		fputc('\n', f);
	}
	for (size_t i = 0; i < g->n_notes; i++) {
		mb_str_put_xml(f, g->notes[i]);
		fputc('\n', f);
	}
	fprintf(f, "</system-out>\n  </testsuite>\n</testsuites>\n");
}
