/* Migration from a real schema-3 database (tests/fixtures/store/v3.sql.xz,
 * made by the build before item values were interned; README there): every
 * run reads back as before, byte for byte through `baseline save`, and the
 * item values shrink to the interned layout. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/store.h>

#include "support/harness_support.h"

#define FX MB_SOURCE_DIR "/tests/fixtures/store"

static double scalar(const char *dir, const char *sql)
{
	char cmd[1024], *out = NULL;
	double v;
	snprintf(cmd, sizeof(cmd), "sqlite3 v.db \"%s\"", sql);
	cr_assert_eq(mbt_sh(dir, cmd, &out), 0, "%s: %s", sql, out ? out : "");
	v = strtod(out, NULL);
	free(out);
	return v;
}

Test(migrate, a_version_3_database_reads_back_the_same_after_migrating, .timeout = 120)
{
	char dir[256], path[512];
	mb_store *s = NULL;
	mb_store_stats st;
	mb_error err;
	double sum3;

	mbt_tmpdir(dir, sizeof(dir));
	mbt_sh_ok(dir, "xz -dc " FX "/v3.sql.xz | sqlite3 v.db");
	cr_assert_eq(scalar(dir, "PRAGMA user_version"), 3);
	sum3 = scalar(dir, "SELECT sum(value * (ordinal + 1)) FROM item_values");
	snprintf(path, sizeof(path), "%s/v.db", dir);
	cr_assert_eq(mb_store_open(&s, path, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_store_stats_get(&st, s, &err), 0, "%s", err.msg);
	cr_expect_eq(st.schema_version, MB_STORE_SCHEMA_VERSION);
	cr_expect_eq(st.runs, 3);
	cr_expect_eq(st.item_values, 1800);
	cr_expect_eq(st.items, 200, "items interned once for all three runs");
	cr_expect_eq(st.metrics, 3);
	mb_store_free(s);
	/* the old columns, through the view, hold the same values */
	cr_expect_eq(scalar(dir, "SELECT count(*) FROM item_values"), 1800);
	cr_expect(fabs(scalar(dir, "SELECT sum(value * (ordinal + 1)) FROM item_values") - sum3) <
		  1e-9 * fabs(sum3));
	cr_expect_eq(scalar(dir, "SELECT count(*) FROM sqlite_master WHERE name ="
				 " 'item_values_by_key'"), 0, "the text-key index is gone");
	cr_expect_eq(scalar(dir, "SELECT count(*) FROM artifacts"), 0,
		     "schema 5: an empty artifacts table (no run had one)");
	/* a run reads back byte for byte as the schema-3 build wrote it */
	mbt_sh_ok(dir, MBT_CLI "baseline save --run 2 --db v.db --out b.json 2>/dev/null >&2 &&"
		       " xz -dc " FX "/v3-run2-baseline.json.xz | cmp - b.json");
	mbt_sh_ok(dir, MBT_CLI "db check --db v.db > /dev/null");
	mbt_sh_ok(dir, MBT_CLI "db vacuum --db v.db > /dev/null");
	/* the interned table: at most 40 bytes a value */
	cr_expect(scalar(dir, "SELECT sum(pgsize) FROM dbstat WHERE name = 'item_value'") / 1800 <= 40);
	mbt_rmtree(dir);
}
