/*
 * zoo: `mechbench zoo list | train | verify` through the built binary, and the
 * committed zoo (baselines/models/<name>/) against its MANIFEST. Training here
 * is a few steps of a preset (--steps), never the whole preset: `mechbench zoo
 * verify` is the full retrain check, run by hand.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mechbench/zoo.h>

#define MODELS MB_SOURCE_DIR "/baselines/models"

typedef struct run_result {
	int status; /* exit code, or 128 + signal */
	char out[16384];
	char err[8192];
} run_result;

static void slurp(int fd, char *buf, size_t cap)
{
	size_t k = 0;
	char tmp[4096];
	ssize_t r;
	while ((r = read(fd, tmp, sizeof(tmp))) > 0) {
		size_t n = (size_t)r;
		if (n > cap - 1 - k)
			n = cap - 1 - k;
		memcpy(buf + k, tmp, n);
		k += n;
	}
	buf[k] = '\0';
}

/* Runs mechbench with args (NULL-terminated), output captured in temp files. */
static void run(run_result *r, const char *const *args)
{
	char outp[] = "/tmp/mb-zoo-out-XXXXXX", errp[] = "/tmp/mb-zoo-err-XXXXXX";
	int of = mkstemp(outp), ef = mkstemp(errp);
	const char *argv[16] = {MB_CLI_PATH};
	int st;
	pid_t pid;

	cr_assert(of >= 0 && ef >= 0);
	for (int i = 0; args[i] && i < 14; i++)
		argv[i + 1] = args[i];
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		dup2(of, 1);
		dup2(ef, 2);
		execv(MB_CLI_PATH, (char *const *)argv);
		_exit(127);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	lseek(of, 0, SEEK_SET);
	lseek(ef, 0, SEEK_SET);
	slurp(of, r->out, sizeof(r->out));
	slurp(ef, r->err, sizeof(r->err));
	close(of);
	close(ef);
	unlink(outp);
	unlink(errp);
}

static void rmtree(const char *d)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
	cr_expect_eq(system(cmd), 0);
}

Test(zoo_cli, list_names_every_recipe_and_preset)
{
	run_result *r = malloc(sizeof(*r));
	const char *args[] = {"zoo", "list", "--models", MODELS, NULL};
	run(r, args);
	cr_expect_eq(r->status, 0, "%s", r->err);
	cr_expect(strstr(r->out, "modadd") && strstr(r->out, "fast|paper"), "%s", r->out);
	cr_expect(strstr(r->out, "induction"), "%s", r->out);
	free(r);
}

/* The usage text lists the registry's recipes with their presets. */
Test(zoo_cli, help_lists_every_recipe_of_the_registry)
{
	run_result *r = malloc(sizeof(*r));
	const char *args[] = {"zoo", "--help", NULL};
	run(r, args);
	cr_expect_eq(r->status, 0, "%s", r->err);
	for (size_t i = 0; i < mb_zoo_recipe_count(); i++) {
		char line[256];
		const char *const *p = mb_zoo_recipe_presets(i);
		size_t len = (size_t)snprintf(line, sizeof(line), "  %-10s ", mb_zoo_recipe_name(i));
		for (size_t k = 0; p[k]; k++)
			len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%s", k ? "|" : "",
						p[k]);
		cr_expect(strstr(r->out, line), "no '%s' in: %s", line, r->out);
		cr_expect(strstr(r->out, mb_zoo_recipe_summary(i)), "%s", r->out);
	}
	free(r);
}

Test(zoo_cli, bad_command_lines_exit_2_with_one_message)
{
	static const char *const cases[][6] = {
		{"zoo", NULL},
		{"zoo", "fly", NULL},
		{"zoo", "train", NULL},
		{"zoo", "train", "ioc", NULL},
		{"zoo", "train", "modadd", "--preset", "slow", NULL},
		{"zoo", "train", "modadd", "--seed", "-3", NULL},
		{"zoo", "train", "modadd", "--steps", "0", NULL},
		{"zoo", "train", "modadd", "--bogus", NULL},
		{"zoo", "verify", "--what", NULL},
	};
	static const char *const want[] = {"usage", "unknown subcommand 'fly'", "missing recipe",
					   "unknown recipe 'ioc'", "no preset 'slow'", "--seed",
					   "--steps", "--bogus", "--what"};
	run_result *r = malloc(sizeof(*r));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		run(r, cases[i]);
		cr_expect_eq(r->status, 2, "case %zu: status %d, stderr %s", i, r->status, r->err);
		cr_expect(strstr(r->err, want[i]), "case %zu: stderr lacks '%s': %s", i, want[i],
			  r->err);
	}
	free(r);
}

Test(zoo_cli, train_writes_a_checkpoint_and_manifest_that_verify_accepts)
{
	char dir[] = "/tmp/mb-zoo-cli-XXXXXX", out[512], path[600];
	run_result *r = malloc(sizeof(*r));
	cr_assert(mkdtemp(dir));
	snprintf(out, sizeof(out), "%s/models/modadd", dir);
	const char *args[] = {"zoo",     "train", "modadd", "--steps", "3", "--seed", "4",
			      "--out",   out,     "--threads", "1", "--checkpoint-every", "2",
			      NULL};
	run(r, args);
	cr_assert_eq(r->status, 0, "status %d: %s", r->status, r->err);
	cr_expect(strstr(r->out, "modadd/custom seed 4: 3 steps"), "%s", r->out);
	cr_expect(strstr(r->out, "checks: "), "%s", r->out);
	static const char *const files[] = {"config.json", "model.safetensors", "tokenizer.json",
					    "training_state.json", "MANIFEST",
					    "checkpoints/step_000000/model.safetensors",
					    "checkpoints/step_000002/model.safetensors",
					    "checkpoints/step_000003/model.safetensors"};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", out, files[i]);
		cr_expect(stat(path, &st) == 0, "missing %s", path);
	}
	mb_zoo_manifest m;
	mb_error err;
	snprintf(path, sizeof(path), "%s/MANIFEST", out);
	cr_assert_eq(mb_zoo_manifest_read(&m, path, &err), 0, "%s", err.msg);
	cr_expect_eq(m.nfiles, 4);
	cr_expect_eq(m.seed, 4);
	cr_expect(strstr(m.command, "zoo train modadd --steps 3"), "%s", m.command);
	cr_expect_eq(m.threads, 1);

	/* verify without retraining: the sha256s match */
	char models[512];
	snprintf(models, sizeof(models), "%s/models", dir);
	const char *vargs[] = {"zoo", "verify", "--models", models, "--no-retrain", NULL};
	run(r, vargs);
	cr_expect_eq(r->status, 0, "status %d: %s %s", r->status, r->out, r->err);
	cr_expect(strstr(r->out, "modadd: sha256 of 4 files match"), "%s", r->out);

	/* a changed weight file fails verify with exit 3, naming the file */
	snprintf(path, sizeof(path), "%s/model.safetensors", out);
	FILE *f = fopen(path, "r+b");
	cr_assert(f);
	fseek(f, -1, SEEK_END);
	fputc(0x5a, f);
	fclose(f);
	run(r, vargs);
	cr_expect_eq(r->status, 3, "status %d: %s", r->status, r->out);
	cr_expect(strstr(r->out, "model.safetensors: sha256"), "%s", r->out);
	rmtree(dir);
	free(r);
}

/* The committed zoo: every model directory's files match its MANIFEST, the
 * MANIFEST names a preset of its recipe, and the weights are <= 10 MB. */
Test(zoo_cli, committed_zoo_matches_its_manifests)
{
	static const char *const names[] = {"modadd", "induction"};
	for (size_t i = 0; i < 2; i++) {
		char dir[512], path[600];
		mb_zoo_manifest m;
		mb_zoo_recipe rec;
		mb_error err;
		struct stat st;
		snprintf(dir, sizeof(dir), MODELS "/%s", names[i]);
		snprintf(path, sizeof(path), "%s/MANIFEST", dir);
		cr_assert_eq(mb_zoo_manifest_read(&m, path, &err), 0, "%s", err.msg);
		cr_expect_str_eq(m.name, names[i]);
		cr_expect_eq(mb_zoo_recipe_get(&rec, m.name, m.preset, m.seed, &err), 0, "%s",
			     err.msg);
		cr_expect_eq(mb_zoo_manifest_check(&m, dir, &err), 0, "%s", err.msg);
		snprintf(path, sizeof(path), "%s/model.safetensors", dir);
		cr_assert_eq(stat(path, &st), 0);
		cr_expect_leq(st.st_size, 10 * 1000 * 1000, "%s is %lld bytes", path,
			      (long long)st.st_size);
		printf("%s: %s/%s seed %llu, %zu files match the MANIFEST\n", dir, m.name, m.preset,
		       (unsigned long long)m.seed, m.nfiles);
	}
}
