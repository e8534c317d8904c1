/* harness_support.c: see harness_support.h. */
#include "harness_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <mechbench/dataset.h>
#include <mechbench/runner.h>

static void die(const char *what)
{
	perror(what);
	abort();
}

void mbt_tmpdir(char *buf, size_t cap)
{
	if ((size_t)snprintf(buf, cap, "/tmp/mbtest-XXXXXX") >= cap || !mkdtemp(buf))
		die("mkdtemp");
}

void mbt_rmtree(const char *dir)
{
	char cmd[4200];
	if (strncmp(dir, "/tmp/mbtest-", 12) != 0)
		return; /* never anything but our own folders */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", dir);
}

void mbt_write(const char *dir, const char *rel, const char *text)
{
	char path[4096], parent[4096];
	char *slash;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	snprintf(parent, sizeof(parent), "%s", path);
	slash = strrchr(parent, '/');
	if (slash) {
		*slash = '\0';
		/* mkdir -p of the parent, below dir. */
		for (char *p = parent + strlen(dir) + 1; *p; p++)
			if (*p == '/') {
				*p = '\0';
				mkdir(parent, 0755);
				*p = '/';
			}
		mkdir(parent, 0755);
	}
	f = fopen(path, "wb");
	if (!f)
		die(path);
	fputs(text, f);
	if (fclose(f) != 0)
		die(path);
}

char *mbt_read(const char *dir, const char *rel)
{
	char path[4096];
	FILE *f;
	long n;
	char *buf;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
		die(path);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

void mbt_synthetic_model(const char *dir, const char *rel, const double *w, int dim, double b)
{
	char text[4096], file[1024];
	size_t n = 0;

	n += (size_t)snprintf(text + n, sizeof(text) - n,
			      "{\"format\": \"mechbench-synthetic\", \"version\": 1, \"w\": [");
	for (int j = 0; j < dim; j++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%.17g", j ? ", " : "", w[j]);
	snprintf(text + n, sizeof(text) - n, "], \"b\": %.17g}\n", b);
	snprintf(file, sizeof(file), "%s/synthetic.json", rel);
	mbt_write(dir, file, text);
}

void mbt_true_model(const char *dir, const char *rel)
{
	const double w[8] = {1, -1, 1, -1, 1, -1, 1, -1};
	mbt_synthetic_model(dir, rel, w, 8, 0);
}

void mbt_suite_fixture(const char *dir, int n_per_stratum, const char *extra,
		       const char *metrics, char **spec_text)
{
	char *text = NULL, sha[MB_SHA256_HEX_LEN];
	size_t len = 0, cap;
	mb_error err;
	json_t *p = json_pack("{s:i}", "n_per_stratum", n_per_stratum);

	if (mb_dataset_generate(&text, &len, mb_task_find("synthetic"), 7, p, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		abort();
	}
	json_decref(p);
	mb_sha256_hex_buf(sha, text, len);
	mbt_write(dir, "datasets/toy.jsonl", text);
	free(text);
	mbt_true_model(dir, "models/true");
	cap = strlen(extra) + strlen(metrics) + 1024;
	*spec_text = malloc(cap);
	if (!*spec_text)
		die("malloc");
	snprintf(*spec_text, cap,
		 "{\n  \"format\": 1,\n  \"suite\": \"demo\",\n  \"alpha\": 0.05,\n"
		 "  \"power\": 0.8,\n  \"bootstrap\": 2000,\n  \"seed\": 1234,\n"
		 "  \"tasks\": [{\n    \"name\": \"toy\",\n    \"task\": \"synthetic\",\n"
		 "    \"model\": \"models/true\",\n    \"baseline\": \"baselines/demo.json\",\n"
		 "    \"dataset\": {\"path\": \"datasets/toy.jsonl\", \"sha256\": \"%s\"},\n"
		 "    %s\n    \"metrics\": %s\n  }]\n}\n",
		 sha, extra, metrics);
}

json_t *mbt_json(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);

	cr_assert(j, "%s", je.text);
	return j;
}

void mbt_suite_add_entry(const char *dir, const char *from, const char *to, const char *name)
{
	char *text = mbt_read(dir, from);
	json_t *doc = text ? json_loads(text, 0, NULL) : NULL;
	json_t *tasks = json_object_get(doc, "tasks");
	json_t *copy = json_deep_copy(json_array_get(tasks, 0));

	free(text);
	if (!copy || json_object_set_new(copy, "name", json_string(name)) < 0 ||
	    json_array_append_new(tasks, copy) < 0 || !(text = json_dumps(doc, JSON_INDENT(2))))
		die("mbt_suite_add_entry");
	mbt_write(dir, to, text);
	free(text);
	json_decref(doc);
}

static void check(int rc, const mb_error *err)
{
	if (rc < 0) {
		fprintf(stderr, "fixture: %s\n", err->msg);
		abort();
	}
}

void mbt_run_fixture(mb_run_result *run, const char *dir)
{
	char *text, model[512];
	mb_spec spec;
	mb_dataset d;
	mb_error err;
	mb_runner_opts o = {.threads = 2};

	mbt_suite_fixture(dir, 20, "", MBT_METRICS_ALL, &text);
	check(mb_spec_parse(&spec, text, strlen(text), "demo.json", &err), &err);
	free(text);
	check(mb_runner_load_dataset(&d, &spec.entries[0], dir, &err), &err);
	memset(run, 0, sizeof(*run));
	mb_provenance_init(&run->prov, 2);
	snprintf(run->prov.suite, sizeof(run->prov.suite), "demo");
	snprintf(run->prov.spec_path, sizeof(run->prov.spec_path), "benchmarks/demo.json");
	run->entries = calloc(1, sizeof(*run->entries));
	if (!run->entries)
		die("calloc");
	snprintf(model, sizeof(model), "%s/models/true", dir);
	check(mb_runner_run_entry(&run->entries[0], &spec, &spec.entries[0], &d, dir, model,
				  "models/true", &o, &err), &err);
	run->n_entries = 1;
	mb_provenance_finish(&run->prov, mb_runner_now());
	mb_dataset_dispose(&d);
	mb_spec_dispose(&spec);
}

void mbt_entry_spec(mbt_entry_fixture *f, int n_per_stratum, const char *extra)
{
	char *text;
	mb_error err;

	memset(f, 0, sizeof(*f));
	mbt_tmpdir(f->dir, sizeof(f->dir));
	mbt_suite_fixture(f->dir, n_per_stratum, extra, MBT_METRICS_ALL, &text);
	check(mb_spec_parse(&f->spec, text, strlen(text), "demo.json", &err), &err);
	free(text);
}

void mbt_entry_setup(mbt_entry_fixture *f, int n_per_stratum, const char *extra)
{
	mb_error err;

	mbt_entry_spec(f, n_per_stratum, extra);
	check(mb_runner_load_dataset(&f->d, &f->spec.entries[0], f->dir, &err), &err);
}

void mbt_entry_teardown(mbt_entry_fixture *f)
{
	mb_dataset_dispose(&f->d);
	mb_spec_dispose(&f->spec);
	mbt_rmtree(f->dir);
}

void mbt_entry_run(mbt_entry_fixture *f, mb_entry_result *out, int threads)
{
	char model[512];
	mb_runner_opts o = {.threads = threads};
	mb_error err;

	snprintf(model, sizeof(model), "%s/models/true", f->dir);
	check(mb_runner_run_entry(out, &f->spec, &f->spec.entries[0], &f->d, f->dir, model,
				  "models/true", &o, &err), &err);
}

#define GIT "git -c user.email=t@example.com -c user.name=t -c init.defaultBranch=main "

static const char gate_spec_fmt[] =
	"{\n"
	"  \"format\": 1,\n"
	"  \"suite\": \"demo\",\n"
	"  \"alpha\": 0.05,\n"
	"  \"power\": 0.8,\n"
	"  \"bootstrap\": 2000,\n"
	"  \"seed\": 1234,\n"
	"  \"tasks\": [{\n"
	"    \"name\": \"toy\",\n"
	"    \"task\": \"synthetic\",\n"
	"    \"model\": \"models/true\",\n"
	"    \"baseline\": \"baselines/demo.json\",\n"
	"    \"dataset\": {\"path\": \"datasets/synthetic/toy.jsonl\", \"sha256\": \"%s\"},\n"
	"%s"
	"    \"strata\": {\"easy\": 0.5, \"hard\": 0.5},\n"
	"    \"metrics\": [\n"
	"      {\"metric\": \"synthetic.score@1\", \"kind\": \"continuous\", \"direction\": \"higher\",\n"
	"       \"margin\": 1.0, \"threshold\": 1.0},\n"
	"      {\"metric\": \"synthetic.correct@1\", \"kind\": \"binary\", \"direction\": \"higher\",\n"
	"       \"margin\": 0.15},\n"
	"      {\"metric\": \"synthetic.loss@1\", \"kind\": \"ratio\", \"direction\": \"lower\",\n"
	"       \"margin\": 0.25}\n"
	"    ]\n"
	"  }]\n"
	"}\n";

static void sh_or_die(const char *dir, const char *cmd)
{
	char *out = NULL;
	if (mbt_sh(dir, cmd, &out) != 0) {
		fprintf(stderr, "fixture: %s: %s\n", cmd, out ? out : "");
		abort();
	}
	free(out);
}

void mbt_gate_repo(char *dir, size_t cap, const char *entry_extra)
{
	char sha[65] = "", *spec, *manifest;
	const char *line;
	const double wp[8] = {1, -1, 1, 1, -1, 1, 1, -1};
	size_t n = sizeof(gate_spec_fmt) + strlen(entry_extra) + 64;

	mbt_tmpdir(dir, cap);
	sh_or_die(dir, GIT "init -q .");
	mbt_write(dir, ".gitignore", "*.db\n*.db-*\nout/\n");
	mbt_write(dir, "datasets/MANIFEST",
		  "-  synthetic/toy.jsonl  synthetic@1  7  {\"n_per_stratum\": 100}\n");
	sh_or_die(dir, MBT_CLI "datasets build > /dev/null");
	sh_or_die(dir, MBT_CLI "datasets verify > /dev/null");
	manifest = mbt_read(dir, "datasets/MANIFEST");
	line = manifest ? strstr(manifest, "\n") : NULL;
	while (line && line[1] == '#')
		line = strchr(line + 1, '\n');
	if (!line || strlen(line) < 65)
		die("datasets/MANIFEST");
	memcpy(sha, line + 1, 64);
	free(manifest);
	if (!(spec = malloc(n)))
		die("malloc");
	snprintf(spec, n, gate_spec_fmt, sha, entry_extra);
	mbt_write(dir, "benchmarks/demo.json", spec);
	free(spec);
	mbt_true_model(dir, "models/true");
	mbt_synthetic_model(dir, "models/perturbed", wp, 8, 0);
	sh_or_die(dir, GIT "add -A && " GIT "commit -qm 'spec, dataset, models'");
	sh_or_die(dir, MBT_CLI "run --suite benchmarks/demo.json --db run.db --quiet > /dev/null");
	sh_or_die(dir, MBT_CLI "baseline save --run 1 --db run.db --out baselines/demo.json"
		       " > /dev/null 2>&1");
	sh_or_die(dir, GIT "add baselines/demo.json && " GIT "commit -qm baseline");
}
