/* Issue 22's probe cases, kept as a table so they stay fixed: each row sets
 * up a folder (a demo suite, a stored run), runs one mechbench command line
 * through /bin/sh, and checks its exit code, a fragment of its output and a
 * shell check of what it left on disk (exit 0 = as expected). The number
 * in each comment is the case. Case 3 (parallel writers) is
 * tests/store/test_concurrency.c; case 10 (fault injection) is
 * tests/faultsim/ run by ci/test. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/harness_support.h"
#include "support/report_support.h"

#define MODEL MB_SOURCE_DIR "/tests/fixtures/engine/models/gpt2_ln_gelu"
#define NPY(expr) "/usr/bin/python3 -c 'import numpy as np; np.save(\"t.npy\", " expr ")'"
#define RUNS(n) "test \"$(sqlite3 m.db 'SELECT count(*) FROM runs')\" = " #n
#define STORED "mb run --suite demo.json --db m.db --quiet > /dev/null && "
#define SAE_ARGS "--model " MB_SOURCE_DIR "/baselines/models/induction --sae " MB_SOURCE_DIR \
		 "/baselines/saes/induction-resid1"

typedef struct probe {
	int line;
	const char *setup;   /* shell, in the folder, before; may be NULL */
	const char *cmd;     /* after "mechbench " */
	int exit_code;
	const char *says;    /* fragment of stdout+stderr, or NULL */
	const char *check;   /* shell that must exit 0 afterwards, or NULL */
} probe;

static const probe probes[] = {
	/* 1: a planted X.tmp link is never followed; a user's own X.tmp survives */
	{__LINE__, "echo precious > victim && ln -s victim out.json.tmp",
	 "run --suite demo.json --db m.db --json out.json --quiet", 0, NULL,
	 "grep -qx precious victim && test -L out.json.tmp && grep -q synthetic.score out.json"},
	{__LINE__, "echo mine > out.csv.tmp", "run --suite demo.json --db m.db --csv out.csv --quiet",
	 0, NULL, "grep -qx mine out.csv.tmp && test -s out.csv && test -z \"$(ls -A | grep '^\\.')\""},
	/* 2: a FIFO is streamed to its reader, never replaced */
	{__LINE__, "mkfifo p.json && (cat p.json > got 2>/dev/null </dev/null &)",
	 "run --suite demo.json --db m.db --json p.json --quiet", 0, NULL,
	 "sleep 0.3; test -p p.json && grep -q synthetic.score got"},
	/* 2: a symlinked output is refused before anything runs or is stored */
	{__LINE__, "echo old > real.html && ln -s real.html link.json",
	 "run --suite demo.json --db m.db --json link.json --quiet", 1, "symbolic link",
	 "test -L link.json && grep -qx old real.html && ! test -e m.db"},
	/* 2: - and /dev/stdout write to stdout */
	{__LINE__, NULL, "run --suite demo.json --db m.db --json - --quiet", 0, "\"mean\": ",
	 NULL},
	{__LINE__, NULL, "run --suite demo.json --db m.db --csv /dev/stdout --quiet", 0, "entry,",
	 "test -c /dev/stdout || test -p /dev/stdout || true"},
	/* 4: every command checks its outputs before it runs or stores */
	{__LINE__, "touch afile", "run --suite demo.json --db m.db --json afile/x.json --quiet", 1,
	 "afile is not a folder", "! test -e m.db"},
	{__LINE__, "touch afile", "run --suite demo.json --db m.db --csv afile/x.csv --quiet", 1,
	 "afile is not a folder", "! test -e m.db"},
	{__LINE__, "touch afile", "gate --suite demo.json --baseline-ref HEAD --db m.db"
	 " --report-md ok.md --junit afile/j.xml", 1, "afile is not a folder",
	 "! test -e m.db && ! test -e ok.md"},
	{__LINE__, STORED "touch afile", "baseline save --run 1 --db m.db --out afile/b.json", 1,
	 "afile is not a folder", NULL},
	{__LINE__, "touch afile", "drift --suite demo.json --series ck --db m.db --json afile/d.json",
	 1, "afile is not a folder", "! test -e m.db"},
	{__LINE__, STORED "touch afile", "report --run 1 --db m.db --html afile/r.html", 1,
	 "afile is not a folder", NULL},
	{__LINE__, STORED "touch afile", "leaderboard --db m.db --out afile/l.html", 1,
	 "afile is not a folder", NULL},
	{__LINE__, "touch afile", "cache --model " MODEL " --tokens 1,2 --hook blocks.0.hook_resid_pre"
	 " --out afile/sub", 1, "is not a folder", NULL},
	{__LINE__, "touch afile", "zoo train modadd --steps 1 --out afile/m --quiet", 1,
	 "is not a folder", "! test -e afile/m"},
	/* 5: baseline save refuses a NULL (NaN) aggregate instead of dropping it */
	{__LINE__, STORED "sqlite3 m.db \"UPDATE aggregates SET mean = NULL WHERE metric ="
	 " 'synthetic.loss'\"", "baseline save --run 1 --db m.db --out b.json", 1,
	 "metric synthetic.loss: aggregate mean is NULL", "! test -e b.json"},
	/* 6: model digests: only the files a model loads, no link out, no special file */
	{__LINE__, "mkdir -p mdl/checkpoints/step_1 && cp models/true/synthetic.json mdl/ &&"
	 " cp models/true/synthetic.json mdl/checkpoints/step_1/ && ln -s /usr mdl/usr",
	 "run --suite demo.json --model mdl --db m.db --quiet", 0, NULL,
	 "test \"$(sqlite3 m.db 'SELECT group_concat(path) FROM model_files')\" = synthetic.json"},
	{__LINE__, "mkdir -p mdl && cp models/true/synthetic.json outside.json &&"
	 " ln -s ../outside.json mdl/synthetic.json",
	 "run --suite demo.json --model mdl --db m.db --quiet", 1,
	 "a symbolic link out of the model folder", RUNS(0) " || ! test -e m.db"},
	{__LINE__, "mkdir -p mdl && cp models/true/synthetic.json mdl/ && mkfifo mdl/config.json",
	 "run --suite demo.json --model mdl --db m.db --quiet", 1, "config.json: not a regular file",
	 NULL},
	/* 7: messages name the right file, field and value */
	{__LINE__, NPY("np.zeros((1, 2, 3), dtype=np.int64)"), "cache --model " MODEL
	 " --tokens-npy t.npy --hook blocks.0.hook_resid_pre --out o", 1, "got 3 dims", NULL},
	{__LINE__, NPY("np.zeros(3, dtype=np.float64)"), "cache --model " MODEL
	 " --tokens-npy t.npy --hook blocks.0.hook_resid_pre --out o", 1, "got F64", NULL},
	{__LINE__, NPY("np.array([1, 2**32], dtype=np.int64)"), "cache --model " MODEL
	 " --tokens-npy t.npy --hook blocks.0.hook_resid_pre --out o", 1,
	 "t.npy: token at index 1 is 4294967296", NULL},
	{__LINE__, NULL, "gate --suite demo.json --baseline-ref HEAD --report-md ''", 1,
	 "output path is empty", "! test -e .tmp"},
	{__LINE__, NULL, "run --suite demo.json --db ''", 1, "database path is empty", NULL},
	/* 8: control characters in names are refused in specs */
	{__LINE__, "sed 's/\"name\": \"toy\"/\"name\": \"to\\\\ny\"/' demo.json > bad.json",
	 "run --suite bad.json --db m.db", 1, "control characters (0x0a at offset 2)",
	 "! test -e m.db || " RUNS(0)},
	/* rel6: a database that cannot be opened says why (SQLite says only
	 * "unable to open database file") */
	{__LINE__, NULL, "report --run 1 --db nodir/m.db --html r.html", 1,
	 "nodir/m.db: cannot open the database: No such file or directory",
	 "! test -e nodir && ! test -e r.html"},
	{__LINE__, "mkdir d.db", "run --suite demo.json --db d.db --quiet", 1,
	 "d.db: cannot open the database: Is a directory", NULL},
	/* rel6: `db` upkeep of a mistyped path creates nothing and passes nothing
	 * (it made an empty database and said "typo.db: ok") */
	{__LINE__, NULL, "db check --db typo.db", 1,
	 "typo.db: cannot open the database: No such file or directory", "! test -e typo.db"},
	{__LINE__, NULL, "db stats --db typo.db", 1, "typo.db: cannot open the database",
	 "! test -e typo.db"},
	{__LINE__, NULL, "db vacuum --db typo.db", 1, "typo.db: cannot open the database",
	 "! test -e typo.db"},
	{__LINE__, STORED "true", "db check --db m.db", 0, "m.db: ok", NULL},
	/* rel6: an empty or comment-only MANIFEST verifies nothing: an error, not
	 * a silent exit 0 */
	{__LINE__, "touch M", "datasets verify --manifest M", 1, "M: lists no datasets", NULL},
	{__LINE__, "echo '# only a comment' > M", "datasets build --manifest M", 1,
	 "M: lists no datasets", "test \"$(cat M)\" = '# only a comment'"},
	/* rel6: a --models folder that is not there is named, not listed as
	 * "(none)" with exit 0 */
	{__LINE__, NULL, "zoo list --models nodir", 1,
	 "mechbench: --models nodir: No such file or directory", NULL},
	{__LINE__, NULL, "zoo verify --models nodir --no-retrain", 1,
	 "mechbench: --models nodir: No such file or directory", NULL},
	{__LINE__, NULL, "zoo list", 0, "committed models (baselines/models):\n"
	 "  (none: No such file or directory)", NULL},
	/* rel6: an empty file read as a database is called empty (it said "schema
	 * version 0 needs migrating to 5; open it once read-write") */
	{__LINE__, "touch m.db", "report --run 1 --db m.db --html r.html", 1,
	 "m.db: an empty database (no runs stored yet)", "! test -s m.db && ! test -e r.html"},
	{__LINE__, "touch m.db", "leaderboard --db m.db", 1,
	 "m.db: an empty database (no runs stored yet)", NULL},
	/* rel6: an output never replaces an input or another output (each of
	 * these ran, exit 0, and left the spec or the database overwritten) */
	{__LINE__, NULL, "run --suite demo.json --db m.db --json o.x --csv o.x --quiet", 1,
	 "--json o.x and --csv o.x: one file for two outputs", "! test -e o.x && ! test -e m.db"},
	{__LINE__, STORED "true", "run --suite demo.json --db m.db --json m.db --quiet", 1,
	 "--json m.db: is the --db file; writing there would replace it", RUNS(1)},
	{__LINE__, NULL, "run --suite demo.json --db m.db --json ./demo.json --quiet", 1,
	 "--json ./demo.json: is the --suite file", "grep -q '\"suite\": \"demo\"' demo.json"},
	{__LINE__, NULL, "gate --suite demo.json --baseline-ref HEAD --junit r.x --report-md r.x",
	 1, "--report-md r.x and --junit r.x: one file for two outputs", "! test -e r.x"},
	{__LINE__, NULL, "drift --suite demo.json --series ck --db m.db --html demo.json", 1,
	 "--html demo.json: is the --suite file", "! test -e m.db"},
	{__LINE__, STORED "true", "report --run 1 --db m.db --html m.db", 1,
	 "--html m.db: is the --db file", RUNS(1)},
	{__LINE__, STORED "true", "leaderboard --db m.db --out m.db", 1,
	 "--out m.db: is the --db file", RUNS(1)},
	{__LINE__, STORED "true", "baseline save --run 1 --db m.db --out m.db", 1,
	 "--out m.db: is the --db file", RUNS(1)},
	{__LINE__, NULL, "attribute --model " MODEL " --task induction --dataset datasets/toy.jsonl"
	 " --method atp --out datasets/toy.jsonl", 1, "--out datasets/toy.jsonl: is the --dataset "
	 "file", "grep -q mechbench_dataset datasets/toy.jsonl"},
	{__LINE__, "echo '[]' > f.json", "trace --model " MODEL " --facts f.json --out f.json", 1,
	 "--out f.json: is the --facts file", "grep -qx '\\[\\]' f.json"},
	/* rel6: a --text corpus that cannot be read says why (it said "read
	 * error"); bad bytes in it name the file and line */
	{__LINE__, NULL, "sae eval " SAE_ARGS " --text datasets --batches 1", 1,
	 "datasets: cannot read the text corpus: Is a directory", NULL},
	{__LINE__, NULL, "sae eval " SAE_ARGS " --text nofile --batches 1", 1,
	 "nofile: cannot open the text corpus: No such file or directory", NULL},
	{__LINE__, "printf 'a b \\377 c\\n' > e.txt", "sae eval " SAE_ARGS " --text e.txt"
	 " --batches 1", 1, "e.txt:1: text: invalid UTF-8 at byte 4 (0xFF)", NULL},
	/* rel6: power --suite names the entry whose baseline is missing */
	{__LINE__, NULL, "power --suite demo.json", 1,
	 "entry toy: baseline: ./baselines/demo.json: No such file or directory", NULL},
	/* rel6: a shard is not a baseline (it said "aggregate mean is NULL") */
	{__LINE__, "mb run --suite demo.json --db s0.db --shard 0/2 --quiet > /dev/null",
	 "baseline save --run 1 --db s0.db --out b.json", 1,
	 "s0.db: run 1 is shard 0/2 of a sharded run; merge the shards", "! test -e b.json"},
	/* rel6: a JSON input that is a folder says so (it said "read error") */
	{__LINE__, NULL, "trace --model " MODEL " --facts datasets --out t.json", 1,
	 "datasets: read error: Is a directory", "! test -e t.json"},
	/* 9: item values take at most 40 bytes each (the item_value table) */
	{__LINE__, STORED STORED "true", "db stats --db m.db", 0, "schema version  5",
	 "mb db stats --db m.db | awk '/^item_value bytes/ { ok = $3 <= 40 } END { exit !ok }'"},
};

#define N_PROBES (sizeof(probes) / sizeof(probes[0]))

/* Criterion copies parameters into its workers: pass indices. */
static size_t probe_index[N_PROBES];

ParameterizedTestParameters(reliability, probe_cases_give_their_exit_code_message_and_files)
{
	for (size_t i = 0; i < N_PROBES; i++)
		probe_index[i] = i;
	return cr_make_param_array(size_t, probe_index, N_PROBES);
}

ParameterizedTest(size_t *idx, reliability, probe_cases_give_their_exit_code_message_and_files)
{
	const probe *p = &probes[*idx];
	char dir[256], *cmd, *out = NULL;
	size_t cap;
	int rc;

	mbt_tmpdir(dir, sizeof(dir));
	mbt_demo_suite(dir, 10);
	mbt_series(dir, "ck", 2, 10, 9, 1.0, 1.0, 0.0, 1);
	cap = strlen(p->cmd) + (p->setup ? strlen(p->setup) : 0) +
	      (p->check ? strlen(p->check) : 0) + 1024;
	cmd = malloc(cap);
	cr_assert_not_null(cmd);
	/* `mb` for setup and check lines */
	if (p->setup) {
		snprintf(cmd, cap, "mb() { " MBT_CLI "\"$@\"; }; %s", p->setup);
		rc = mbt_sh(dir, cmd, &out);
		cr_assert_eq(rc, 0, "line %d: setup failed: %s", p->line, out);
		free(out);
		out = NULL;
	}
	snprintf(cmd, cap, MBT_CLI "%s", p->cmd);
	rc = mbt_sh(dir, cmd, &out);
	cr_expect_eq(rc, p->exit_code, "line %d: %s: exit %d, expected %d: %s", p->line, p->cmd, rc,
		     p->exit_code, out);
	if (p->says)
		cr_expect(out && strstr(out, p->says), "line %d: %s: expected '%s' in: %s", p->line,
			  p->cmd, p->says, out);
	if (p->exit_code == 1)
		cr_expect(out && mbt_count_lines(out) == 1, "line %d: not one line: %s", p->line,
			  out);
	free(out);
	out = NULL;
	if (p->check) {
		snprintf(cmd, cap, "mb() { " MBT_CLI "\"$@\"; }; %s", p->check);
		rc = mbt_sh(dir, cmd, &out);
		cr_expect_eq(rc, 0, "line %d: check '%s' failed: %s", p->line, p->check, out);
		free(out);
	}
	free(cmd);
	mbt_rmtree(dir);
}
