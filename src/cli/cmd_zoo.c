/* cmd_zoo.c: `mechbench zoo list | train | verify | plant`: the model zoo. */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mechbench/gemm.h>

#include <mechbench/buildinfo.h>
#include <mechbench/file.h>
#include <mechbench/sha256.h>
#include <mechbench/zoo.h>

#include "zoo_plant.h"

typedef struct zoo_args {
	const char *models, *preset, *out;
	int64_t seed, every, steps, threads;
	int no_retrain, quiet;
} zoo_args;

static const mb_cli_opt zoo_list_opts[] = {
	{MB_OPT(PATH, "--models", zoo_args, models), .meta = "DIR", .def = "baselines/models",
	 .help = "the committed models"},
};

static const mb_cli_opt zoo_train_opts[] = {
	{MB_OPT(STRING, "--preset", zoo_args, preset), .meta = "fast|paper", .def = "fast",
	 .help = "the recipe's preset"},
	{MB_OPT(INT, "--seed", zoo_args, seed), .meta = "S", .range = ">= 0", .def = "0",
	 .help = "the training seed"},
	{MB_OPT(PATH, "--out", zoo_args, out), .meta = "DIR",
	 .help = "the checkpoint directory (default out/zoo/NAME)"},
	{MB_OPT(INT, "--checkpoint-every", zoo_args, every), .meta = "N", .range = ">= 1",
	 .help = "also write DIR/checkpoints/step_NNNNNN every N steps (and at step 0 and the "
		 "last step) for drift monitoring"},
	{MB_OPT(INT, "--steps", zoo_args, steps), .meta = "N", .range = "[1, 100000000]",
	 .help = "override the preset's step count (the preset is then recorded as \"custom\" "
		 "and the checks are not required to pass)"},
	MB_CLI_OPT_THREADS(zoo_args, threads),
	MB_CLI_OPT_QUIET(zoo_args, quiet),
};

static const mb_cli_opt zoo_verify_opts[] = {
	{MB_OPT(PATH, "--models", zoo_args, models), .meta = "DIR", .def = "baselines/models",
	 .help = "the committed models"},
	{MB_OPT(FLAG, "--no-retrain", zoo_args, no_retrain),
	 .help = "only check the sha256 of each file against its MANIFEST"},
	MB_CLI_OPT_THREADS(zoo_args, threads),
	MB_CLI_OPT_QUIET(zoo_args, quiet),
};

static const mb_cli_cmd zoo_list_cmd = {
	.name = "zoo list",
	.opts = zoo_list_opts,
	.n_opts = MB_CLI_N(zoo_list_opts),
	.about = "The recipes and their presets, and the committed models under --models with\n"
		 "their MANIFEST status.\n",
};

static const mb_cli_cmd zoo_train_cmd = {
	.name = "zoo train",
	.opts = zoo_train_opts,
	.n_opts = MB_CLI_N(zoo_train_opts),
	.operands = "NAME",
	.max_operands = 1,
	.about =
	"Trains recipe NAME (see `zoo list`) at --preset from --seed and writes a\n"
	"Hugging Face checkpoint directory to --out: config.json, model.safetensors,\n"
	"tokenizer.json, training_state.json (step, every loss, evaluations, seed,\n"
	"recipe, time) and a MANIFEST (sha256 of each file, the command, machine, time\n"
	"and the GEMM backend: portable unless --gemm says otherwise). The weights are\n"
	"the same bits for any --threads. A progress bar with the loss is drawn on a\n"
	"terminal. After training, the recipe's checks\n"
	"(modadd: grokking, test accuracy; induction: induction score, loss on the\n"
	"repeat) are printed; a preset run whose checks fail exits 3.\n",
};

static const mb_cli_cmd zoo_verify_cmd = {
	.name = "zoo verify",
	.opts = zoo_verify_opts,
	.n_opts = MB_CLI_N(zoo_verify_opts),
	.about =
	"For every model under --models: checks the sha256 of each file against its\n"
	"MANIFEST, then (unless --no-retrain) retrains it with the MANIFEST's recipe,\n"
	"preset, seed and GEMM backend and compares config.json, model.safetensors and\n"
	"tokenizer.json bit for bit. Exits 3 when anything differs, except for a model\n"
	"trained with a CPU-dependent backend (openblas, onednn) whose recorded kernel\n"
	"is not this machine's: then it says so (kernel recorded vs kernel here) and\n"
	"checks the retrained model's behaviour instead. A hand-set model (MANIFEST\n"
	"preset \"planted\", `zoo plant`) is rebuilt and every file compared.\n",
};

static const mb_cli_cmd *const zoo_cmds[] = {&zoo_list_cmd, &zoo_train_cmd, &zoo_verify_cmd,
					      &mb_zoo_plant_cmd};

static const char zoo_about[] =
	"The model zoo: small models with the canonical behaviours, trained by mechbench\n"
	"from a seed, bitwise reproducibly.\n";

/* Files of a checkpoint that must be bitwise reproducible (training_state.json
 * carries the time, so only the MANIFEST checks it). */
static const char *const reproducible[] = {"config.json", "model.safetensors", "tokenizer.json"};
#define NREPRO 3

typedef struct progress_state {
	int tty, quiet;
	double last;
	int64_t last_line;
	char label[64];
	mb_zoo_eval last_eval;
	int have_eval;
} progress_state;

/* One line per recipe of the registry: name, presets, summary. */
static void print_recipes(FILE *f)
{
	for (size_t i = 0; i < mb_zoo_recipe_count(); i++) {
		char presets[128] = "";
		size_t len = 0;
		for (const char *const *p = mb_zoo_recipe_presets(i); *p && len < sizeof(presets); p++)
			len += (size_t)snprintf(presets + len, sizeof(presets) - len, "%s%s",
						len ? "|" : "", *p);
		fprintf(f, "  %-10s %-12s %s\n", mb_zoo_recipe_name(i), presets,
			mb_zoo_recipe_summary(i));
	}
}

/* The usage text, then the recipes. */
static void print_usage(FILE *f)
{
	mb_cli_help_group(f, zoo_about, zoo_cmds, MB_CLI_N(zoo_cmds));
	fputs("\nrecipes:\n", f);
	print_recipes(f);
}

/* "  test acc 0.512": the eval fields the recipe puts on the progress line. */
static void progress_evals(char *buf, size_t cap, const mb_zoo_recipe *r, const mb_zoo_eval *ev)
{
	size_t n, len = 0;
	const mb_zoo_eval_field *f = mb_zoo_eval_fields(r, &n);

	buf[0] = '\0';
	for (size_t i = 0; i < n && len < cap; i++) {
		if (!f[i].progress)
			continue;
		len += (size_t)snprintf(buf + len, cap - len, "  ");
		if (len < cap)
			len += (size_t)snprintf(buf + len, cap - len, f[i].progress, ev->value[i]);
	}
}

static void progress(const mb_zoo_progress *p, void *payload)
{
	progress_state *ps = payload;
	if (p->eval) {
		ps->have_eval = 1;
		ps->last_eval = *p->eval;
	}
	if (ps->quiet)
		return;
	char extra[64] = "";
	if (ps->have_eval)
		progress_evals(extra, sizeof(extra), p->recipe, &ps->last_eval);
	if (ps->tty) {
		if (p->seconds - ps->last < 0.1 && p->step != p->steps)
			return;
		ps->last = p->seconds;
		int width = 30, fill = (int)(width * p->step / p->steps);
		char bar[31];
		for (int i = 0; i < width; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[width] = '\0';
		fprintf(stderr, "\r%s [%s] %lld/%lld  loss %.4f%s  %.0fs ", ps->label, bar,
			(long long)p->step, (long long)p->steps, p->loss, extra, p->seconds);
		if (p->step == p->steps)
			fputc('\n', stderr);
		fflush(stderr);
	} else {
		int64_t tenth = p->steps >= 10 ? p->steps / 10 : 1;
		if (p->step % tenth != 0 && p->step != p->steps)
			return;
		fprintf(stderr, "%s step %lld/%lld  loss %.4f%s  %.1fs\n", ps->label,
			(long long)p->step, (long long)p->steps, p->loss, extra, p->seconds);
	}
}

static void join_command(char *buf, size_t cap, int argc, char **argv)
{
	size_t n = (size_t)snprintf(buf, cap, "mechbench zoo");
	for (int i = 0; i < argc && n < cap; i++)
		n += (size_t)snprintf(buf + n, cap - n, " %s", argv[i]);
}

/* Trains r into dir and writes its MANIFEST. */
static int train_into(mb_zoo_result *res, const mb_zoo_recipe *r, const char *dir,
		      int64_t every, const char *command, int quiet, mb_error *err)
{
	progress_state ps;
	mb_zoo_train_opts o;
	mb_zoo_manifest m;
	static const char *const files[] = {"config.json", "model.safetensors", "tokenizer.json",
					    "training_state.json"};
	char path[4096];
	int error;

	memset(&ps, 0, sizeof(ps));
	ps.tty = isatty(fileno(stderr));
	ps.quiet = quiet;
	snprintf(ps.label, sizeof(ps.label), "%s/%s", r->name, r->preset);
	memset(&o, 0, sizeof(o));
	o.out_dir = dir;
	o.checkpoint_every = every;
	o.command = command;
	o.progress = progress;
	o.payload = &ps;
	error = mb_zoo_train(res, r, &o, err);
	if (error < 0)
		return error;
	memset(&m, 0, sizeof(m));
	snprintf(m.name, sizeof(m.name), "%s", r->name);
	snprintf(m.preset, sizeof(m.preset), "%s", r->preset);
	m.seed = r->seed;
	snprintf(m.command, sizeof(m.command), "%s", command);
	m.training_seconds = floor(res->seconds * 10 + 0.5) / 10;
	mb_cpu_model(m.machine, sizeof(m.machine));
	m.threads = omp_get_max_threads();
	snprintf(m.commit, sizeof(m.commit), "%s", mb_build_commit());
	mb_gemm_describe(m.gemm, sizeof(m.gemm));
	m.nfiles = 4;
	for (size_t i = 0; i < 4; i++) {
		snprintf(m.files[i], sizeof(m.files[i]), "%s", files[i]);
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		error = mb_sha256_hex_file(m.sha256[i], path, err);
		if (error < 0)
			return error;
	}
	snprintf(path, sizeof(path), "%s/MANIFEST", dir);
	return mb_zoo_manifest_write(&m, path, err);
}

static int cmd_train(int argc, char **argv)
{
	zoo_args a = {0};
	mb_cli_parsed parsed;
	const char *name, *preset, *out;
	int64_t seed, every, steps;
	int threads, quiet, rc;
	char outbuf[512], command[1024];
	mb_zoo_recipe r;
	mb_zoo_result res;
	mb_error err;

	if ((rc = mb_cli_parse(&parsed, &a, &zoo_train_cmd, argc, argv)) != MB_CLI_GO)
		return rc;
	name = parsed.n_operands ? parsed.operands[0] : NULL;
	preset = a.preset;
	out = a.out;
	seed = a.seed;
	every = a.every;
	steps = a.steps;
	threads = (int)a.threads;
	quiet = a.quiet;
	if (!name) {
		char known[256];
		return mb_cli_usage_error("zoo train", "missing recipe NAME (%s)",
					  mb_zoo_recipe_names(known, sizeof(known)));
	}
	if (mb_zoo_recipe_get(&r, name, preset, (uint64_t)seed, &err) < 0)
		return mb_cli_usage_error("zoo train", "%s", err.msg);
	if (steps > 0 && steps != r.steps) {
		r.steps = steps;
		snprintf(r.preset, sizeof(r.preset), "custom");
	}
	if (threads > 0)
		omp_set_num_threads(threads);
	if (!out) {
		snprintf(outbuf, sizeof(outbuf), "out/zoo/%s", name);
		out = outbuf;
	}
	join_command(command, sizeof(command), argc, argv);
	if (mb_file_check_dir(out, &err) < 0)
		return mb_cli_fail(&err);
	if (train_into(&res, &r, out, every, command, quiet, &err) < 0)
		return mb_cli_fail(&err);
	printf("%s/%s seed %llu: %lld steps in %.1fs, final loss %.6f -> %s\n", r.name, r.preset,
	       (unsigned long long)r.seed, (long long)res.steps, res.seconds, res.final_loss, out);
	printf("checks: %s\n", res.checks);
	if (!res.checks_passed && strcmp(r.preset, "custom") != 0) {
		fprintf(stderr, "mechbench: %s/%s: the recipe's checks failed\n", r.name, r.preset);
		return MB_EXIT_GATE_FAILED;
	}
	return MB_EXIT_OK;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted names of the subdirectories of dir holding a MANIFEST; -1 with
 * errno set when dir cannot be opened. */
static int list_models(char ***out, size_t *n, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[4096];
	size_t cap = 0;

	*out = NULL;
	*n = 0;
	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL) {
		struct stat st;
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s/MANIFEST", dir, e->d_name);
		if (stat(path, &st) != 0)
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 8;
			char **nw = realloc(*out, cap * sizeof(char *));
			if (!nw)
				break;
			*out = nw;
		}
		(*out)[*n] = malloc(strlen(e->d_name) + 1);
		if (!(*out)[*n])
			break;
		memcpy((*out)[*n], e->d_name, strlen(e->d_name) + 1);
		(*n)++;
	}
	closedir(d);
	if (*n > 1)
		qsort(*out, *n, sizeof(char *), cmp_str);
	return 0;
}

static void free_list(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static int cmd_list(int argc, char **argv)
{
	zoo_args a = {0};
	mb_cli_parsed parsed;
	const char *models;
	char **names;
	size_t n;
	int rc, sys;

	if ((rc = mb_cli_parse(&parsed, &a, &zoo_list_cmd, argc, argv)) != MB_CLI_GO)
		return rc;
	models = a.models;
	rc = list_models(&names, &n, models);
	sys = rc < 0 ? errno : 0;
	/* a --models the user named must be there; the default may be absent
	 * (the recipes are still worth listing outside the repository) */
	if (rc < 0 && mb_cli_given(&parsed, &zoo_list_cmd, "--models")) {
		fprintf(stderr, "mechbench: --models %s: %s\n", models, strerror(sys));
		return MB_EXIT_ERROR;
	}
	printf("recipes:\n");
	print_recipes(stdout);
	printf("committed models (%s):\n", models);
	if (rc < 0 || n == 0) {
		printf("  (none%s%s)\n", rc < 0 ? ": " : "", rc < 0 ? strerror(sys) : "");
		free_list(names, n);
		return MB_EXIT_OK;
	}
	for (size_t i = 0; i < n; i++) {
		char dir[4096], path[4096];
		mb_zoo_manifest m;
		mb_error err;
		snprintf(dir, sizeof(dir), "%s/%s", models, names[i]);
		snprintf(path, sizeof(path), "%s/MANIFEST", dir);
		if (mb_zoo_manifest_read(&m, path, &err) < 0) {
			printf("  %-10s bad MANIFEST: %s\n", names[i], err.msg);
			continue;
		}
		int ok = mb_zoo_manifest_check(&m, dir, &err) == 0;
		if (strcmp(m.preset, MB_ZOO_PLANTED_PRESET) == 0) {
			printf("  %-10s %s, weights set by hand (zoo plant): %s\n", names[i], m.name,
			       ok ? "sha256 ok" : err.msg);
			continue;
		}
		printf("  %-10s %s/%s seed %llu, trained in %.1fs on %s (%d threads): %s\n", names[i],
		       m.name, m.preset, (unsigned long long)m.seed, m.training_seconds, m.machine,
		       m.threads, ok ? "sha256 ok" : err.msg);
	}
	free_list(names, n);
	return MB_EXIT_OK;
}

static int files_equal(const char *a, const char *b, mb_error *err, int *equal)
{
	char ha[MB_SHA256_HEX_LEN], hb[MB_SHA256_HEX_LEN];
	int error = mb_sha256_hex_file(ha, a, err);
	if (error == 0)
		error = mb_sha256_hex_file(hb, b, err);
	if (error == 0)
		*equal = strcmp(ha, hb) == 0;
	return error;
}

/* Selects the GEMM backend m names for the retraining (a MANIFEST without
 * "gemm" predates the backend layer: OpenBLAS, kernel not recorded) and says
 * whether this machine runs the same kernels: the portable backend always
 * does (its bits do not depend on the CPU); a CPU-dependent backend does only
 * when the recorded description (core, ISA) equals this machine's. Writes the
 * recorded and the local description into recorded and here. */
static int select_manifest_backend(const mb_zoo_manifest *m, char *recorded, size_t rcap,
				   char *here, size_t hcap, int *same_kernel, mb_error *err)
{
	const char *g = strstr(m->gemm, "gemm=");
	char name[32];
	int error;

	snprintf(name, sizeof(name), "%.*s", g ? (int)strcspn(g + 5, " ;") : 8,
		 g ? g + 5 : "openblas");
	if ((error = mb_gemm_select(name, err)) < 0)
		return error;
	mb_gemm_describe(here, hcap);
	snprintf(recorded, rcap, "%s", m->gemm[0] ? m->gemm : "gemm=openblas (kernel not recorded)");
	*same_kernel = mb_gemm_current() == MB_GEMM_PORTABLE || strcmp(recorded, here) == 0;
	return 0;
}

static int cmd_verify(int argc, char **argv)
{
	zoo_args a = {0};
	mb_cli_parsed parsed;
	const char *models;
	int retrain, threads, quiet, failed = 0, rc;
	char **names;
	size_t n;

	if ((rc = mb_cli_parse(&parsed, &a, &zoo_verify_cmd, argc, argv)) != MB_CLI_GO)
		return rc;
	models = a.models;
	retrain = !a.no_retrain;
	threads = (int)a.threads;
	quiet = a.quiet;
	if (threads > 0)
		omp_set_num_threads(threads);
	if ((rc = list_models(&names, &n, models)) < 0 || n == 0) {
		fprintf(stderr, "mechbench: %s%s: %s\n", rc < 0 ? "--models " : "", models,
			rc < 0 ? strerror(errno) : "no models with a MANIFEST");
		free_list(names, n);
		return MB_EXIT_ERROR;
	}
	for (size_t i = 0; i < n; i++) {
		char dir[4096], path[4096], tmp[] = "/tmp/mechbench-zoo-verify-XXXXXX";
		mb_zoo_manifest m;
		mb_zoo_recipe r;
		mb_zoo_result res;
		mb_error err;
		snprintf(dir, sizeof(dir), "%s/%s", models, names[i]);
		snprintf(path, sizeof(path), "%s/MANIFEST", dir);
		if (mb_zoo_manifest_read(&m, path, &err) < 0 ||
		    mb_zoo_manifest_check(&m, dir, &err) < 0) {
			printf("%s: FAIL: %s\n", names[i], err.msg);
			failed = 1;
			continue;
		}
		printf("%s: sha256 of %zu files match the MANIFEST\n", names[i], m.nfiles);
		if (!retrain)
			continue;
		if (strcmp(m.preset, MB_ZOO_PLANTED_PRESET) == 0) {
			int planted = mb_zoo_plant_verify(&m, dir, names[i], &err);
			if (planted < 0)
				printf("%s: FAIL: %s\n", names[i], err.msg);
			failed |= planted != 0;
			continue;
		}
		if (mb_zoo_recipe_get(&r, m.name, m.preset, m.seed, &err) < 0) {
			printf("%s: FAIL: %s\n", names[i], err.msg);
			failed = 1;
			continue;
		}
		if (!mkdtemp(tmp)) {
			free_list(names, n);
			fprintf(stderr, "mechbench: cannot create a temporary directory\n");
			return MB_EXIT_ERROR;
		}
		char command[512], recorded[128], here[128];
		int same_kernel = 1;
		snprintf(command, sizeof(command), "mechbench zoo verify (retrain of %s)", names[i]);
		if (select_manifest_backend(&m, recorded, sizeof(recorded), here, sizeof(here),
					    &same_kernel, &err) < 0) {
			printf("%s: FAIL: %s\n", names[i], err.msg);
			failed = 1;
			rmdir(tmp);
			continue;
		}
		printf("%s: retraining with %s%s\n", names[i], here,
		       same_kernel ? "" : " (the MANIFEST records another kernel)");
		if (train_into(&res, &r, tmp, 0, command, quiet, &err) < 0) {
			printf("%s: FAIL: retraining: %s\n", names[i], err.msg);
			failed = 1;
		} else {
			int same_all = 1;
			for (int k = 0; k < NREPRO; k++) {
				char a[4096], b[4096];
				int same = 0;
				snprintf(a, sizeof(a), "%s/%s", dir, reproducible[k]);
				snprintf(b, sizeof(b), "%s/%s", tmp, reproducible[k]);
				if (files_equal(a, b, &err, &same) < 0) {
					printf("%s: FAIL: %s\n", names[i], err.msg);
					same = 0;
				} else if (!same && same_kernel) {
					printf("%s: FAIL: retrained %s differs from the committed one\n",
					       names[i], reproducible[k]);
				} else if (!same) {
					printf("%s: retrained %s differs from the committed one, as "
					       "expected across kernels (kernel recorded: %s; kernel "
					       "here: %s)\n",
					       names[i], reproducible[k], recorded, here);
				}
				same_all &= same;
			}
			if (same_all)
				printf("%s: retrained %s/%s seed %llu in %.1fs: config.json, "
				       "model.safetensors, tokenizer.json identical bit for bit\n",
				       names[i], r.name, r.preset, (unsigned long long)r.seed,
				       res.seconds);
			printf("%s: checks: %s\n", names[i], res.checks);
			if (!same_all && !same_kernel)
				printf("%s: %s: the model's bits follow the CPU's kernels, so its "
				       "behaviour is checked instead: %s (retrain it with --gemm "
				       "portable for bitwise reproducibility on any CPU)\n",
				       names[i], res.checks_passed ? "PASS" : "FAIL", recorded);
			if ((!same_all && same_kernel) || !res.checks_passed)
				failed = 1;
		}
		/* Remove the retrained copy (the files train_into writes, then the dir). */
		static const char *const all[] = {"config.json", "model.safetensors",
						  "tokenizer.json", "training_state.json",
						  "MANIFEST"};
		for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++) {
			snprintf(path, sizeof(path), "%s/%s", tmp, all[k]);
			remove(path);
		}
		rmdir(tmp);
	}
	free_list(names, n);
	return failed ? MB_EXIT_GATE_FAILED : MB_EXIT_OK;
}

int mb_cmd_zoo(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		print_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? MB_EXIT_USAGE : MB_EXIT_OK;
	}
	if (strcmp(argv[1], "list") == 0)
		return cmd_list(argc - 1, argv + 1);
	if (strcmp(argv[1], "train") == 0)
		return cmd_train(argc - 1, argv + 1);
	if (strcmp(argv[1], "verify") == 0)
		return cmd_verify(argc - 1, argv + 1);
	if (strcmp(argv[1], "plant") == 0)
		return mb_zoo_plant(argc - 1, argv + 1);
	return mb_cli_usage_error("zoo", "unknown subcommand '%s' (list, train, verify, plant)",
				  argv[1]);
}
