/*
 * `mechbench report`: a run's page and a series' page from the store, one
 * self-contained file (no scripts, nothing to fetch), data escaped; bad
 * inputs (unknown run id, unknown series, unwritable output, a missing
 * database, a bad command line) give one clear line and a non-zero exit,
 * and leave no file behind.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/harness_support.h"
#include "support/report_support.h"


static char dir[256];

static void setup(void)
{
	mbt_tmpdir(dir, sizeof(dir));
}

static void teardown(void)
{
	mbt_rmtree(dir);
}

TestSuite(report, .init = setup, .fini = teardown, .timeout = 120);

Test(report, run_page_is_self_contained_and_holds_the_tables_and_figures)
{
	char *html = NULL;

	mbt_demo_suite(dir, 20);
	mbt_sh_ok(dir, MBT_CLI "run --suite demo.json --db m.db --quiet > /dev/null");
	/* figures come with a run of `run` and with each drift checkpoint */
	mbt_series(dir, "ck", 2, 10, 9, 1.0, 1.0, 0.0, 1);
	mbt_sh_ok(dir, MBT_CLI "drift --suite demo.json --series ck --db m.db --quiet > /dev/null");
	mbt_sh_ok(dir, MBT_CLI "report --run 1 --db m.db --html out/run1.html");
	mbt_sh_ok(dir, MBT_CLI "report --run 2 --db m.db --html out/run2.html");
	cr_assert_eq(mbt_sh(dir, "cat out/run1.html", &html), 0);
	cr_expect(strncmp(html, "<!DOCTYPE html>", 15) == 0);
	cr_expect(strstr(html, "Content-Security-Policy"));
	cr_expect(strstr(html, "synthetic.score") && strstr(html, "95% CI"));
	cr_expect_eq(mbt_count(html, "<svg "), 3, "%zu plots", mbt_count(html, "<svg "));
	cr_expect(strstr(html, "synthetic.score_by_cluster"));
	cr_expect_null(strstr(html, "<script"));
	free(html);
	cr_assert_eq(mbt_sh(dir, "cat out/run2.html", &html), 0);
	cr_expect_eq(mbt_count(html, "<svg "), 3, "%zu plots", mbt_count(html, "<svg "));
	cr_expect(strstr(html, "synthetic.weight_spectrum"));
	free(html);
}

Test(report, series_page_matches_the_one_drift_wrote)
{
	char *a = NULL, *b = NULL;

	mbt_demo_suite(dir, 20);
	mbt_series(dir, "ck", 5, 10, 3, 0.3, 1.0, 0.01, 1);
	mbt_sh_ok(dir, MBT_CLI "drift --suite demo.json --series ck --name s --db m.db --html d.html --quiet "
		 "> /dev/null");
	mbt_sh_ok(dir, MBT_CLI "report --series s --db m.db --html r.html");
	cr_assert_eq(mbt_sh(dir, "cat d.html", &a), 0);
	cr_assert_eq(mbt_sh(dir, "cat r.html", &b), 0);
	cr_expect_str_eq(a, b, "report --series differs from drift --html");
	free(a);
	free(b);
}

Test(report, bad_inputs_give_one_line_a_non_zero_exit_and_no_file)
{
	static const struct {
		const char *args;
		int rc;
		const char *says;
	} cases[] = {
		{"report --run 99 --db m.db --html x.html", 1, "no run 99"},
		{"report --series nope --db m.db --html x.html", 1, "no series 'nope' (series: s)"},
		{"report --run 1 --db m.db --html demo.json/x.html", 1, "cannot write here"},
		{"report --run 1 --db absent.db --html x.html", 1, "absent.db"},
		{"report --run 1 --series s --html x.html", 2, "exactly one of"},
		{"report --run 1", 2, "--html FILE is required"},
		{"report --run one --html x.html", 2, "--run"},
	};
	mbt_demo_suite(dir, 10);
	mbt_series(dir, "ck", 2, 10, 9, 1.0, 1.0, 0.0, 1);
	mbt_sh_ok(dir, MBT_CLI "drift --suite demo.json --series ck --name s --db m.db --quiet > /dev/null");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char cmd[512], *out = NULL;
		int rc;
		snprintf(cmd, sizeof(cmd), MBT_CLI "%s", cases[i].args);
		rc = mbt_sh(dir, cmd, &out);
		cr_expect_eq(rc, cases[i].rc, "case %zu (%s): exit %d: %s", i, cases[i].args, rc, out);
		cr_expect(strstr(out, cases[i].says), "case %zu (%s): %s", i, cases[i].args, out);
		if (cases[i].rc == 1)
			cr_expect_eq(mbt_count(out, "\n"), 1, "case %zu: not one line: %s", i, out);
		free(out);
		cr_expect_neq(mbt_sh(dir, "test -e x.html", NULL), 0, "case %zu left x.html", i);
	}
}
