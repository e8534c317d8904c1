/* cmd_sae.c: `mechbench sae train | eval | match | battery | verify | tms`: sparse autoencoders on a
 * model's hook points (sae.h, sae_train.h). */
#include "cli.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/stat.h>

#include <mechbench/buildinfo.h>
#include <mechbench/gemm.h>
#include <mechbench/sha256.h>
#include <mechbench/zoo.h>
#include <mechbench/file.h>
#include <mechbench/hooks.h>
#include <mechbench/model.h>
#include <mechbench/sae.h>
#include <mechbench/sae_train.h>
#include <mechbench/sae_verdict.h>
#include <mechbench/str.h>
#include <mechbench/tokenizer.h>

typedef struct sae_args {
	const char *model, *hook, *out, *text, *sae;
	int arch;
	int64_t width, k, tokens, batch, seed, ctx, text_batch, buffer, batches, skip, threads;
	int64_t features, dims, seqs, model_steps, items;
	double l1, lr, p, steer;
	int quiet, sweep, verify;
} sae_args;

static const char *const archs[] = {"relu", "topk", NULL};

#define OPT_TEXT(T)                                                                         \
	{MB_OPT(PATH, "--text", T, text), .meta = "FILE",                                  \
	 .help = "a UTF-8 text file read through the model's tokenizer (default: a zoo "     \
		 "model's own language, from its training_state.json)"},                      \
	{MB_OPT(INT, "--ctx", T, ctx), .meta = "N", .range = "[2, 1048576]", .def = "64",  \
	 .help = "--text: tokens per sequence"},                                             \
	{MB_OPT(INT, "--text-batch", T, text_batch), .meta = "N", .range = "[1, 65536]",  \
	 .def = "16", .help = "--text: sequences per forward"}

/* The rows every command reading a model and an SAE shares: --model (its
 * help says which model), --sae and --hook. */
#define OPT_MODEL_SAE(T, model_help)                                                       \
	{MB_OPT(PATH, "--model", T, model), .meta = "DIR", .required = 1,                  \
	 .help = model_help},                                                                \
	{MB_OPT(PATH, "--sae", T, sae), .meta = "DIR", .required = 1,                      \
	 .help = "an SAE folder in SAELens's layout (cfg.json, sae_weights.safetensors)"},  \
	{MB_OPT(STRING, "--hook", T, hook), .meta = "NAME",                                \
	 .help = "the hook point (default: the SAE's cfg.json metadata.hook_name)"}

static const mb_cli_opt train_opts[] = {
	{MB_OPT(PATH, "--model", sae_args, model), .meta = "DIR", .required = 1,
	 .help = "a checkpoint folder (config.json, model.safetensors)"},
	{MB_OPT(STRING, "--hook", sae_args, hook), .meta = "NAME", .required = 1,
	 .help = "the hook point (TransformerLens name, e.g. blocks.0.hook_resid_post)"},
	{MB_OPT(ENUM, "--arch", sae_args, arch), .choices = archs, .def = "topk",
	 .help = "relu (L1 on |f| |W_dec|, Anthropic April 2024) or topk (Gao et al. 2024, "
		 "AuxK)"},
	{MB_OPT(INT, "--width", sae_args, width), .meta = "N", .range = "[1, 16777216]",
	 .def = "512", .help = "latents (d_sae)"},
	{MB_OPT(DOUBLE, "--l1", sae_args, l1), .meta = "X", .range = ">= 0", .def = "5",
	 .help = "relu: the L1 coefficient lambda"},
	{MB_OPT(INT, "--k", sae_args, k), .meta = "K", .range = ">= 1", .def = "32",
	 .help = "topk: active latents per token"},
	{MB_OPT(INT, "--tokens", sae_args, tokens), .meta = "N", .range = ">= 1",
	 .def = "2000000", .help = "training tokens (rows)"},
	{MB_OPT(INT, "--batch", sae_args, batch), .meta = "N", .range = "[1, 1048576]",
	 .def = "4096", .help = "tokens per step"},
	{MB_OPT(DOUBLE, "--lr", sae_args, lr), .meta = "X", .range = ">= 0",
	 .help = "Adam's learning rate (default 2e-4 sqrt(16384 / width), at most 1e-3)"},
	{MB_OPT(INT, "--seed", sae_args, seed), .meta = "S", .range = ">= 0", .def = "0",
	 .help = "the seed of the initialisation and the shuffle"},
	{MB_OPT(INT, "--buffer", sae_args, buffer), .meta = "N", .range = "[1, 4096]",
	 .def = "8", .help = "corpus batches per shuffle buffer"},
	OPT_TEXT(sae_args),
	{MB_OPT(PATH, "--out", sae_args, out), .meta = "DIR", .required = 1,
	 .help = "the SAE folder (SAELens layout + training_state.json)"},
	MB_CLI_OPT_THREADS(sae_args, threads),
	MB_CLI_OPT_QUIET(sae_args, quiet),
};

static const mb_cli_opt eval_opts[] = {
	OPT_MODEL_SAE(sae_args, "the model the SAE reads"),
	{MB_OPT(INT, "--batches", sae_args, batches), .meta = "N", .range = "[1, 1000000]",
	 .def = "4", .help = "corpus batches to evaluate on"},
	{MB_OPT(INT, "--skip", sae_args, skip), .meta = "N", .range = ">= 0", .def = "0",
	 .help = "corpus batches to skip first"},
	OPT_TEXT(sae_args),
	MB_CLI_OPT_THREADS(sae_args, threads),
};

static const mb_cli_opt match_opts[] = {
	OPT_MODEL_SAE(sae_args, "a zoo model (its training_state.json names the recipe)"),
	{MB_OPT(INT, "--seqs", sae_args, seqs), .meta = "N", .range = "[1, 1000000]",
	 .def = "128", .help = "held-out sequences of the recipe's language (ioi: prompts)"},
	MB_CLI_OPT_THREADS(sae_args, threads),
};

static const mb_cli_opt battery_opts[] = {
	OPT_MODEL_SAE(sae_args, "a zoo induction model (its training_state.json names the recipe)"),
	{MB_OPT(INT, "--seqs", sae_args, seqs), .meta = "N", .range = "[1, 1000000]",
	 .def = "128",
	 .help = "held-out sequences that label the features (sae match) and give their max "
		 "activations"},
	{MB_OPT(INT, "--items", sae_args, items), .meta = "N", .range = "[2, 1000000]",
	 .def = "256", .help = "further held-out sequences the battery runs on"},
	{MB_OPT(DOUBLE, "--steer", sae_args, steer), .meta = "K", .range = "> 0", .def = "4",
	 .help = "steering clamps the latent to K times its max activation"},
	{MB_OPT(INT, "--seed", sae_args, seed), .meta = "S", .range = ">= 0", .def = "0",
	 .help = "the seed of the random-direction controls"},
	MB_CLI_OPT_THREADS(sae_args, threads),
};

static const mb_cli_opt verify_opts[] = {
	{MB_OPT(PATH, "--sae", sae_args, sae), .meta = "DIR", .required = 1,
	 .help = "an SAE folder trained by mechbench sae train (with its MANIFEST)"},
	MB_CLI_OPT_THREADS(sae_args, threads),
};

static const mb_cli_opt tms_opts[] = {
	{MB_OPT(INT, "--features", sae_args, features), .meta = "N", .range = "[1, 4096]",
	 .def = "48", .help = "true features n"},
	{MB_OPT(INT, "--dims", sae_args, dims), .meta = "M", .range = "[1, 65536]", .def = "24",
	 .help = "dimensions m (m < n: superposition)"},
	{MB_OPT(DOUBLE, "--p", sae_args, p), .meta = "X", .range = "(0, 1]", .def = "0.04",
	 .help = "probability that a feature is active (1 - sparsity)"},
	{MB_OPT(ENUM, "--arch", sae_args, arch), .choices = archs, .def = "topk",
	 .help = "relu or topk"},
	{MB_OPT(INT, "--width", sae_args, width), .meta = "N", .range = "[1, 16777216]",
	 .def = "96", .help = "latents"},
	{MB_OPT(DOUBLE, "--l1", sae_args, l1), .meta = "X", .range = ">= 0", .def = "1",
	 .help = "relu: lambda"},
	{MB_OPT(INT, "--k", sae_args, k), .meta = "K", .range = ">= 1", .def = "3",
	 .help = "topk: k"},
	{MB_OPT(INT, "--tokens", sae_args, tokens), .meta = "N", .range = ">= 1",
	 .def = "204800", .help = "training rows"},
	{MB_OPT(INT, "--batch", sae_args, batch), .meta = "N", .range = "[1, 1048576]",
	 .def = "256", .help = "rows per step"},
	{MB_OPT(DOUBLE, "--lr", sae_args, lr), .meta = "X", .range = ">= 0", .def = "0.003",
	 .help = "Adam's learning rate"},
	{MB_OPT(INT, "--seed", sae_args, seed), .meta = "S", .range = ">= 0", .def = "1",
	 .help = "the seed of the directions, the data and the initialisation"},
	{MB_OPT(INT, "--model-steps", sae_args, model_steps), .meta = "N", .range = ">= 0",
	 .def = "0",
	 .help = "train the TMS model x' = ReLU(W^T W x + b) for N steps first and fit the SAE "
		 "to its hidden W x (the true directions are then W's columns); 0: the plain data"},
	{MB_OPT(FLAG, "--sweep", sae_args, sweep),
	 .help = "also train at p x 2, 4, 8, 16 (denser features) and print how recovery falls"},
	MB_CLI_OPT_THREADS(sae_args, threads),
};

/* The options of cmd that apply only to one --arch or with --text, refused
 * otherwise (never silently ignored): MB_CLI_GO or the exit code. */
static int check_applies(const mb_cli_parsed *p, const mb_cli_cmd *cmd, const sae_args *a,
			 int has_arch, int has_text)
{
	int rc = MB_CLI_GO;

	if (has_arch && rc == MB_CLI_GO)
		rc = mb_cli_only_with(p, cmd, "--l1", a->arch == 0, "--arch relu");
	if (has_arch && rc == MB_CLI_GO)
		rc = mb_cli_only_with(p, cmd, "--k", a->arch == 1, "--arch topk");
	if (has_text && rc == MB_CLI_GO)
		rc = mb_cli_only_with(p, cmd, "--ctx", a->text != NULL, "--text");
	if (has_text && rc == MB_CLI_GO)
		rc = mb_cli_only_with(p, cmd, "--text-batch", a->text != NULL, "--text");
	return rc;
}

static const mb_cli_cmd train_cmd = {
	.name = "sae train",
	.opts = train_opts,
	.n_opts = MB_CLI_N(train_opts),
	.about =
	"Trains a sparse autoencoder on the activations of --hook of --model, streamed\n"
	"from the engine over the corpus (a zoo model's own language, or --text), and\n"
	"writes --out in SAELens's layout (cfg.json, sae_weights.safetensors) with\n"
	"training_state.json (configuration, losses, timing). The weights are the same\n"
	"bits for any --threads. A progress line shows tokens/s, the loss, L0 and the\n"
	"fraction of dead latents.\n",
};

static const mb_cli_cmd eval_cmd = {
	.name = "sae eval",
	.opts = eval_opts,
	.n_opts = MB_CLI_N(eval_opts),
	.about =
	"Evaluates an SAE (ours or one trained by SAELens) on --model over --batches\n"
	"corpus batches: L0, fraction of variance explained, MSE, cosine of the\n"
	"reconstruction, cross-entropy clean / with the SAE spliced in / zero-ablated,\n"
	"CE loss recovered, KL to the clean logits, dead and dense fractions\n"
	"(SAEBench's core metrics).\n",
};

static const mb_cli_cmd match_cmd = {
	.name = "sae match",
	.opts = match_opts,
	.n_opts = MB_CLI_N(match_opts),
	.about =
	"Ground truth in a zoo language: for each known latent variable of the\n"
	"model's recipe (induction: the sequence's topic, and whether the position is\n"
	"in the repeated segment, over --seqs held-out sequences; modadd: the signs\n"
	"of cos and sin of 2 pi k (a + b) / P for every frequency k at the '='\n"
	"position, over all P^2 pairs; ioi: over --seqs IOI prompts, whether the\n"
	"position holds a name, the name roles IO, S1 and S2 among the name\n"
	"positions, and the last position), the SAE latent whose activation detects\n"
	"it best (AUROC) and the F1 of that latent's firing.\n",
};

static const mb_cli_cmd battery_cmd = {
	.name = "sae battery",
	.opts = battery_opts,
	.n_opts = MB_CLI_N(battery_opts),
	.about =
	"The causal battery per labelled feature (sae.h, sae_verdict.h): each topic of\n"
	"the induction language labels its best latent (sae match); with the SAE\n"
	"spliced in and its error term kept, the latent is ablated on sequences of its\n"
	"topic (necessity: the drop of the next token's log-mass on the topic's\n"
	"tokens), clamped to --steer x its max activation on other sequences\n"
	"(steering: the rise), ablated there (selectivity) and the KL of the other\n"
	"tokens' distribution measured (collateral); each edit has a control, a random\n"
	"direction of the same norm at the same point and positions. Paired 95%\n"
	"intervals, Benjamini-Hochberg across features; a feature passes when\n"
	"necessity and steering both beat their controls (q <= 0.05).\n",
};

static const mb_cli_cmd verify_cmd = {
	.name = "sae verify",
	.opts = verify_opts,
	.n_opts = MB_CLI_N(verify_opts),
	.about =
	"Checks a committed SAE: every file against its MANIFEST, then retrains it\n"
	"with the command the MANIFEST records (run from the folder it was trained\n"
	"in, the repository root for baselines/saes/) and compares cfg.json and\n"
	"sae_weights.safetensors bit for bit. Exit 1 when a bit differs.\n",
};

static const mb_cli_cmd tms_cmd = {
	.name = "sae tms",
	.opts = tms_opts,
	.n_opts = MB_CLI_N(tms_opts),
	.about =
	"Ground truth: trains an SAE on a toy model of superposition (--features\n"
	"sparse features with known directions in --dims dimensions) and prints the\n"
	"mean max cosine similarity (MMCS) of the true directions to the decoder rows\n"
	"and the fraction recovered at cos >= 0.9. The defaults are the preset\n"
	"tests/train/test_sae_train.c checks (>= 95 percent recovered).\n",
};

static const mb_cli_cmd *const sae_cmds[] = {&train_cmd, &eval_cmd, &match_cmd, &battery_cmd,
					      &verify_cmd, &tms_cmd};

static const char sae_about[] =
	"Sparse autoencoders: train on a model's activations, evaluate (ours or\n"
	"SAELens's files), and check recovery of known features.\n";

typedef struct progress_state {
	int tty, quiet;
	double last;
} progress_state;

static void progress(const mb_sae_progress *p, void *payload)
{
	progress_state *ps = payload;
	double tps = p->seconds > 0 ? (double)p->tokens / p->seconds : 0.0;

	if (ps->quiet)
		return;
	if (ps->tty) {
		if (p->seconds - ps->last < 0.1 && p->step != p->steps)
			return;
		ps->last = p->seconds;
		fprintf(stderr, "\rsae step %lld/%lld  %.3g tok/s  loss %.5f  L0 %.1f  dead %.3f ",
			(long long)p->step, (long long)p->steps, tps, p->loss.total, p->loss.l0,
			p->dead_frac);
		if (p->step == p->steps)
			fputc('\n', stderr);
		fflush(stderr);
	} else {
		int64_t tenth = p->steps >= 10 ? p->steps / 10 : 1;
		if (p->step % tenth != 0 && p->step != p->steps)
			return;
		fprintf(stderr, "sae step %lld/%lld  %.3g tok/s  loss %.5f  L0 %.1f  dead %.3f\n",
			(long long)p->step, (long long)p->steps, tps, p->loss.total, p->loss.l0,
			p->dead_frac);
	}
}

static void join_command(char *buf, size_t cap, int argc, char **argv)
{
	size_t n = (size_t)snprintf(buf, cap, "mechbench sae");
	for (int i = 0; i < argc && n < cap; i++)
		n += (size_t)snprintf(buf + n, cap - n, " %s", argv[i]);
}

/* The corpus of a command: --text through the model's tokenizer, else the
 * zoo model's language. */
static int open_corpus(mb_sae_corpus **out, const sae_args *a, const mb_model *m, int64_t skip,
		       mb_error *err)
{
	if (a->text) {
		if (!m->tok)
			return mb_error_set(err, MB_ENOTFOUND,
					    "%s: no tokenizer.json to read --text through", a->model);
		return mb_sae_corpus_open_text(out, a->text, m->tok, (int)a->ctx, (int)a->text_batch,
					       skip, err);
	}
	return mb_sae_corpus_open_zoo(out, a->model, skip, err);
}

/* The trainer's configuration from the options train and tms share. */
static mb_sae_train_config train_config(const sae_args *a)
{
	mb_sae_train_config cfg = mb_sae_train_defaults(a->arch == 0 ? MB_SAE_RELU : MB_SAE_TOPK);
	cfg.width = (int)a->width;
	cfg.k = (int)a->k;
	cfg.l1 = a->l1;
	cfg.tokens = a->tokens;
	cfg.batch = (int)a->batch;
	cfg.seed = (uint64_t)a->seed;
	cfg.lr = a->lr;
	return cfg;
}

/* What eval, match and battery load: the SAE of --sae, its hook (--hook,
 * else its cfg.json's), the model of --model and a corpus. */
typedef struct sae_open_ctx {
	mb_sae *sae;
	mb_model *model;
	mb_hook_point point;
	const char *hook;
	mb_sae_corpus *corpus;
} sae_open_ctx;

static void sae_open_dispose(sae_open_ctx *c)
{
	mb_sae_corpus_free(c->corpus);
	mb_model_free(c->model);
	mb_sae_free(c->sae);
	memset(c, 0, sizeof(*c));
}

/* Opens c from a: the corpus is the zoo model's own language when zoo is set
 * (match and battery need its labelled variables), else open_corpus's
 * (--text or the zoo language) from batch --skip. Prints the error and
 * returns MB_EXIT_ERROR on failure, with c disposed. */
static int sae_open(sae_open_ctx *c, const sae_args *a, int zoo)
{
	mb_error err;

	memset(c, 0, sizeof(*c));
	if (mb_sae_load(&c->sae, a->sae, &err) < 0)
		goto fail;
	c->hook = a->hook ? a->hook : c->sae->hook_name;
	if (!c->hook[0]) {
		mb_error_set(&err, MB_EINVALID,
			     "%s/cfg.json: metadata.hook_name is empty: give --hook", a->sae);
		goto fail;
	}
	if (mb_hook_parse(&c->point, c->hook, &err) < 0 ||
	    mb_model_load(&c->model, a->model, &err) < 0 ||
	    (zoo ? mb_sae_corpus_open_zoo(&c->corpus, a->model, 0, &err)
		 : open_corpus(&c->corpus, a, c->model, a->skip, &err)) < 0)
		goto fail;
	return MB_EXIT_OK;
fail:
	sae_open_dispose(c);
	return mb_cli_fail(&err);
}

/* Trains the SAE a describes into a->out (cfg.json, sae_weights.safetensors,
 * training_state.json recording command); *seconds gets the training time.
 * Prints the error and returns MB_EXIT_ERROR on failure. */
static int train_run(const sae_args *a, const char *command, double *seconds)
{
	mb_model *m = NULL;
	mb_sae_corpus *corpus = NULL;
	mb_sae_acts *acts = NULL;
	mb_sae *s = NULL;
	mb_sae_train_result res;
	mb_sae_train_config cfg;
	mb_hook_point point;
	mb_sae_source src;
	progress_state ps;
	mb_error err;
	char path[4096], when[32];
	int rc;

	memset(&res, 0, sizeof(res));
	if (mb_hook_parse(&point, a->hook, &err) < 0)
		return mb_cli_usage_error("sae train", "--hook: %s", err.msg);
	if (mb_file_check_dir(a->out, &err) < 0)
		return mb_cli_fail(&err);
	if (mb_model_load(&m, a->model, &err) < 0)
		return mb_cli_fail(&err);
	rc = MB_EXIT_ERROR;
	if (open_corpus(&corpus, a, m, 0, &err) < 0 ||
	    mb_sae_acts_init(&acts, m, point, corpus, (int)a->buffer, (uint64_t)a->seed, &err) < 0) {
		mb_cli_fail(&err);
		goto cleanup;
	}
	cfg = train_config(a);
	src = mb_sae_acts_source(acts);
	memset(&ps, 0, sizeof(ps));
	ps.tty = isatty(fileno(stderr));
	ps.quiet = a->quiet;
	time_t started = time(NULL);
	if (mb_sae_train(&s, &res, &src, &cfg, progress, &ps, &err) < 0) {
		mb_cli_fail(&err);
		goto cleanup;
	}
	*seconds = res.seconds;
	snprintf(s->hook_name, sizeof(s->hook_name), "%s", a->hook);
	snprintf(s->model_name, sizeof(s->model_name), "%s", a->model);
	snprintf(s->dataset_path, sizeof(s->dataset_path), "%s", mb_sae_corpus_describe(corpus));
	{
		int B, T;
		mb_sae_corpus_shape(corpus, &B, &T);
		s->context_size = T;
	}
	if (mb_sae_save(s, a->out, &err) < 0) {
		mb_cli_fail(&err);
		goto cleanup;
	}
	{
		json_t *st = json_object();
		char *text;
		mb_str_utc(when, sizeof(when), started);
		json_object_set_new(st, "format", json_string("mechbench-sae-1"));
		json_object_set_new(st, "command", json_string(command));
		json_object_set_new(st, "model", json_string(a->model));
		json_object_set_new(st, "hook", json_string(a->hook));
		json_object_set_new(st, "corpus", json_string(mb_sae_corpus_describe(corpus)));
		json_object_set_new(st, "commit", json_string(mb_build_commit()));
		json_object_set_new(st, "threads", json_integer(omp_get_max_threads()));
		json_object_set_new(st, "started_utc", json_string(when));
		json_object_set_new(st, "seconds", json_real(res.seconds));
		json_object_set(st, "sae", res.record);
		text = json_dumps(st, JSON_INDENT(1) | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
		json_decref(st);
		if (!text || mb_file_path_join(path, sizeof(path), a->out, "training_state.json",
					       &err) < 0 ||
		    mb_file_write_all(path, text, strlen(text), &err) < 0) {
			free(text);
			if (!text)
				mb_error_oom(&err, "training_state.json", 0);
			mb_cli_fail(&err);
			goto cleanup;
		}
		free(text);
	}
	if (!a->verify)
		printf("sae %s width %d on %s %s: %lld tokens in %.1fs (%.3g tok/s), loss %.5f, "
		       "L0 %.1f, dead %.3f -> %s\n",
		       a->arch == 0 ? "relu" : "topk", cfg.width, a->model, a->hook,
		       (long long)res.tokens, res.seconds,
		       res.seconds > 0 ? (double)res.tokens / res.seconds : 0.0, res.final.total,
		       res.final.l0, res.dead_frac, a->out);
	rc = MB_EXIT_OK;
cleanup:
	json_decref(res.record);
	mb_sae_free(s);
	mb_sae_acts_free(acts);
	mb_sae_corpus_free(corpus);
	mb_model_free(m);
	return rc;
}

static const char *const manifest_files[] = {"cfg.json", "sae_weights.safetensors",
					     "training_state.json"};

/* DIR/MANIFEST of a trained SAE (the zoo's MANIFEST format: name = the
 * folder's base name, preset "sae"). */
static int write_manifest(const sae_args *a, const char *command, double seconds, mb_error *err)
{
	mb_zoo_manifest m;
	char path[4096];
	const char *base = strrchr(a->out, '/');
	int error;

	base = base && base[1] ? base + 1 : a->out;
	memset(&m, 0, sizeof(m));
	snprintf(m.name, sizeof(m.name), "%s", base);
	snprintf(m.preset, sizeof(m.preset), "sae");
	m.seed = (uint64_t)a->seed;
	snprintf(m.command, sizeof(m.command), "%s", command);
	m.training_seconds = floor(seconds * 10 + 0.5) / 10;
	mb_cpu_model(m.machine, sizeof(m.machine));
	m.threads = omp_get_max_threads();
	snprintf(m.commit, sizeof(m.commit), "%s", mb_build_commit());
	mb_gemm_describe(m.gemm, sizeof(m.gemm));
	m.nfiles = 3;
	for (size_t i = 0; i < 3; i++) {
		snprintf(m.files[i], sizeof(m.files[i]), "%s", manifest_files[i]);
		snprintf(path, sizeof(path), "%s/%s", a->out, manifest_files[i]);
		if ((error = mb_sha256_hex_file(m.sha256[i], path, err)) < 0)
			return error;
	}
	snprintf(path, sizeof(path), "%s/MANIFEST", a->out);
	return mb_zoo_manifest_write(&m, path, err);
}

static int cmd_train(int argc, char **argv)
{
	sae_args a;
	mb_cli_parsed parsed;
	mb_error err;
	char command[2048];
	double seconds = 0;
	int rc;

	memset(&a, 0, sizeof(a));
	if ((rc = mb_cli_parse(&parsed, &a, &train_cmd, argc, argv)) != MB_CLI_GO ||
	    (rc = check_applies(&parsed, &train_cmd, &a, 1, 1)) != MB_CLI_GO)
		return rc;
	if (a.threads > 0)
		omp_set_num_threads((int)a.threads);
	join_command(command, sizeof(command), argc, argv);
	if ((rc = train_run(&a, command, &seconds)) != MB_EXIT_OK)
		return rc;
	if (write_manifest(&a, command, seconds, &err) < 0)
		return mb_cli_fail(&err);
	return MB_EXIT_OK;
}

/* Removes the retrain's files and folder (best effort). */
static void remove_tmp(const char *dir)
{
	char path[4096];
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, manifest_files[i]);
		remove(path);
	}
	rmdir(dir);
}

static int cmd_verify(int argc, char **argv)
{
	sae_args a, t;
	mb_cli_parsed parsed, tp;
	mb_zoo_manifest m;
	mb_error err;
	char path[4096], tmp[4096], line[512], *targv[64];
	int targc = 0, rc, same = 1;
	double seconds = 0;

	memset(&a, 0, sizeof(a));
	if ((rc = mb_cli_parse(&parsed, &a, &verify_cmd, argc, argv)) != MB_CLI_GO)
		return rc;
	if (a.threads > 0)
		omp_set_num_threads((int)a.threads);
	snprintf(path, sizeof(path), "%s/MANIFEST", a.sae);
	if (mb_zoo_manifest_read(&m, path, &err) < 0 || mb_zoo_manifest_check(&m, a.sae, &err) < 0)
		return mb_cli_fail(&err);
	/* The recorded command, re-parsed with train's options, --out replaced. */
	snprintf(line, sizeof(line), "%s", m.command);
	for (char *p = line; *p && targc < 64;) {
		while (*p == ' ')
			*p++ = '\0';
		if (!*p)
			break;
		targv[targc++] = p;
		while (*p && *p != ' ')
			p++;
	}
	if (targc < 3 || strcmp(targv[0], "mechbench") != 0 || strcmp(targv[1], "sae") != 0 ||
	    strcmp(targv[2], "train") != 0) {
		mb_error_set(&err, MB_EINVALID,
			     "%s: command '%s' is not a mechbench sae train command", path, m.command);
		return mb_cli_fail(&err);
	}
	memset(&t, 0, sizeof(t));
	if ((rc = mb_cli_parse(&tp, &t, &train_cmd, targc - 2, targv + 2)) != MB_CLI_GO) {
		mb_error_set(&err, MB_EINVALID, "%s: command: options do not parse", path);
		return mb_cli_fail(&err);
	}
	snprintf(tmp, sizeof(tmp), "%s.verify.%ld", a.sae, (long)getpid());
	if (mkdir(tmp, 0755) != 0) {
		mb_error_set(&err, MB_EIO, "%s: cannot create the retrain folder", tmp);
		return mb_cli_fail(&err);
	}
	t.out = tmp;
	t.quiet = 1;
	t.verify = 1;
	rc = train_run(&t, m.command, &seconds);
	if (rc == MB_EXIT_OK) {
		for (size_t i = 0; i < 2; i++) {
			char hex[MB_SHA256_HEX_LEN];
			size_t k;
			snprintf(path, sizeof(path), "%s/%s", tmp, manifest_files[i]);
			for (k = 0; k < m.nfiles && strcmp(m.files[k], manifest_files[i]) != 0; k++)
				;
			if (mb_sha256_hex_file(hex, path, &err) < 0) {
				rc = mb_cli_fail(&err);
				break;
			}
			int ok = k < m.nfiles && strcmp(hex, m.sha256[k]) == 0;
			same &= ok;
			printf("  %-24s %s\n", manifest_files[i], ok ? "identical" : "DIFFERS");
		}
	}
	remove_tmp(tmp);
	if (rc != MB_EXIT_OK)
		return rc;
	printf("sae %s: retrained in %.1fs (recorded %.1fs): %s\n", a.sae, seconds,
	       m.training_seconds, same ? "bit for bit" : "DIFFERENT BITS");
	return same ? MB_EXIT_OK : MB_EXIT_ERROR;
}

static int cmd_eval(int argc, char **argv)
{
	sae_args a;
	mb_cli_parsed parsed;
	sae_open_ctx c;
	mb_sae_eval_result r;
	mb_error err;
	int rc;

	memset(&a, 0, sizeof(a));
	memset(&r, 0, sizeof(r));
	if ((rc = mb_cli_parse(&parsed, &a, &eval_cmd, argc, argv)) != MB_CLI_GO ||
	    (rc = check_applies(&parsed, &eval_cmd, &a, 0, 1)) != MB_CLI_GO)
		return rc;
	if (a.threads > 0)
		omp_set_num_threads((int)a.threads);
	if ((rc = sae_open(&c, &a, 0)) != MB_EXIT_OK)
		return rc;
	rc = MB_EXIT_ERROR;
	if (mb_sae_evaluate(&r, c.model, c.sae, c.point, c.corpus, a.batches, &err) < 0) {
		mb_cli_fail(&err);
		goto cleanup;
	}
	printf("sae %s (%s, d_in %d, d_sae %d) on %s %s, %s: %lld tokens, %lld items\n", a.sae,
	       mb_sae_arch_name(c.sae->arch), c.sae->d_in, c.sae->d_sae, a.model, c.hook,
	       mb_sae_corpus_describe(c.corpus), (long long)r.stats.tokens, (long long)r.n_items);
	printf("  l0              %.4f\n", r.stats.l0);
	printf("  fve             %.6f\n", r.stats.fve);
	printf("  mse             %.6g\n", r.stats.mse);
	printf("  cos             %.6f\n", r.stats.cos);
	printf("  ce_clean        %.6f\n", r.ce_clean);
	printf("  ce_sae          %.6f\n", r.ce_sae);
	printf("  ce_zero         %.6f\n", r.ce_zero);
	printf("  ce_recovered    %.6f\n", r.ce_recovered);
	printf("  kl_sae          %.6g\n", r.kl_sae);
	printf("  kl_zero         %.6g\n", r.kl_zero);
	printf("  kl_score        %.6f\n", r.kl_score);
	printf("  dead_frac       %.6f\n", r.stats.dead);
	printf("  dense_frac      %.6f\n", r.stats.dense);
	rc = MB_EXIT_OK;
cleanup:
	mb_sae_eval_dispose(&r);
	sae_open_dispose(&c);
	return rc;
}

static int cmd_match(int argc, char **argv)
{
	sae_args a;
	mb_cli_parsed parsed;
	sae_open_ctx c;
	mb_sae_match *mt = NULL;
	mb_error err;
	int n = 0, rc;

	memset(&a, 0, sizeof(a));
	if ((rc = mb_cli_parse(&parsed, &a, &match_cmd, argc, argv)) != MB_CLI_GO)
		return rc;
	if (a.threads > 0)
		omp_set_num_threads((int)a.threads);
	if ((rc = sae_open(&c, &a, 1)) != MB_EXIT_OK)
		return rc;
	rc = MB_EXIT_ERROR;
	const mb_zoo_recipe *r = mb_sae_corpus_recipe(c.corpus);
	if ((strcmp(r->name, "modadd") == 0
		     ? mb_sae_match_modadd(&mt, &n, c.model, c.sae, c.point, r, &err)
	     : strcmp(r->name, "ioi") == 0
		     ? mb_sae_match_ioi(&mt, &n, c.model, c.sae, c.point, r, (int)a.seqs, &err)
		     : mb_sae_match_induction(&mt, &n, c.model, c.sae, c.point, r, (int)a.seqs,
					      &err)) < 0) {
		mb_cli_fail(&err);
		goto cleanup;
	}
	printf("sae %s on %s %s, %lld %s of %s:\n", a.sae, a.model, c.hook, (long long)a.seqs,
	       strcmp(r->name, "ioi") == 0 ? "IOI prompts" : "held-out sequences",
	       mb_sae_corpus_describe(c.corpus));
	printf("  %-10s %9s %7s %7s %7s\n", "variable", "base rate", "latent", "AUROC", "F1");
	for (int i = 0; i < n; i++)
		printf("  %-10s %9.4f %7d %7.4f %7.4f\n", mt[i].variable, mt[i].base_rate,
		       mt[i].latent, mt[i].auroc, mt[i].f1);
	rc = MB_EXIT_OK;
cleanup:
	free(mt);
	sae_open_dispose(&c);
	return rc;
}

static void print_ci(const mb_stats_estimate *e)
{
	printf(" %+8.4f [%+.4f, %+.4f]", e->mean, e->lo, e->hi);
}

static int cmd_battery(int argc, char **argv)
{
	sae_args a;
	mb_cli_parsed parsed;
	sae_open_ctx c;
	mb_sae_topic_features tf;
	mb_sae_battery bat;
	mb_sae_verdict *v = NULL;
	mb_engine *e = NULL;
	mb_engine_opts eo;
	mb_error err;
	int32_t *tok = NULL;
	uint8_t *present = NULL;
	double frac = 0, lo, hi;
	int rc;

	memset(&a, 0, sizeof(a));
	memset(&tf, 0, sizeof(tf));
	memset(&bat, 0, sizeof(bat));
	if ((rc = mb_cli_parse(&parsed, &a, &battery_cmd, argc, argv)) != MB_CLI_GO)
		return rc;
	if (a.threads > 0)
		omp_set_num_threads((int)a.threads);
	if ((rc = sae_open(&c, &a, 1)) != MB_EXIT_OK)
		return rc;
	rc = MB_EXIT_ERROR;
	const mb_zoo_recipe *r = mb_sae_corpus_recipe(c.corpus);
	if (mb_sae_topic_features_init(&tf, c.model, c.sae, c.point, r, (int)a.seqs, &err) < 0) {
		mb_cli_fail(&err);
		goto cleanup;
	}
	const int T = r->n_positions, B = 32;
	const size_t n = (size_t)a.items;
	tok = malloc(n * (size_t)T * sizeof(int32_t));
	present = calloc((size_t)tf.n * n, 1);
	v = calloc((size_t)tf.n, sizeof(*v));
	if (!tok || !present || !v) {
		fprintf(stderr, "mechbench: out of memory\n");
		goto cleanup;
	}
	for (size_t i = 0; i < n; i++) {
		mb_zoo_segment seg;
		mb_zoo_induction_sequence(tok + i * (size_t)T, &seg, r, "induction/eval",
					  (uint64_t)a.seqs + i);
		present[(size_t)seg.topic * n + i] = 1;
	}
	const mb_sae_labels lab = {tf.n, tf.readout, present};
	memset(&eo, 0, sizeof(eo));
	eo.max_batch = B;
	eo.max_seq = T;
	if (mb_engine_init(&e, &c.model->cfg, &c.model->w, &eo, &err) < 0 ||
	    mb_sae_battery_run(&bat, e, c.sae, c.point, tok, n, T, B, NULL, &lab, tf.features,
			       tf.n, a.steer, (uint64_t)a.seed, &err) < 0 ||
	    mb_sae_verdicts(v, &frac, &bat, 0.95, 0.05, &err) < 0) {
		mb_cli_fail(&err);
		goto cleanup;
	}
	printf("sae %s on %s %s: causal battery over %zu held-out sequences, steering x%g, "
	       "95%% paired intervals, BH q <= 0.05\n",
	       a.sae, a.model, c.hook, n, a.steer);
	for (int t = 0; t < tf.n; t++) {
		const mb_sae_verdict *x = &v[t];
		printf("%s latent %d (AUROC %.3f, max %.3g, %zu present / %zu absent): %s\n",
		       tf.match[t].variable, tf.features[t].latent, tf.match[t].auroc,
		       tf.features[t].max_act, x->necessity.n, x->steering.n,
		       x->pass ? "PASS" : "fail");
		printf("  necessity  ");
		print_ci(&x->necessity);
		printf("  control");
		print_ci(&x->necessity_control);
		printf("  q %.3g\n", x->q_necessity);
		printf("  steering   ");
		print_ci(&x->steering);
		printf("  control");
		print_ci(&x->steering_control);
		printf("  q %.3g\n", x->q_steering);
		printf("  selectivity");
		print_ci(&x->selectivity);
		printf("  collateral KL");
		print_ci(&x->collateral);
		printf("\n");
	}
	mb_sae_pass_interval(&lo, &hi, (int)lround(frac * tf.n), tf.n, 0.95);
	printf("features passing: %d of %d, %.4f [%.4f, %.4f] (95%% Wilson interval)\n",
	       (int)lround(frac * tf.n), tf.n, frac, lo, hi);
	rc = MB_EXIT_OK;
cleanup:
	mb_sae_battery_dispose(&bat);
	mb_sae_topic_features_dispose(&tf);
	mb_engine_free(e);
	free(v);
	free(tok);
	free(present);
	sae_open_dispose(&c);
	return rc;
}

/* Trains at probability p and prints the recovery line. */
static int tms_once(const sae_args *a, double p, mb_error *err)
{
	mb_sae_tms t;
	mb_sae *s = NULL;
	mb_sae_train_result res;
	mb_sae_train_config cfg;
	mb_sae_source src;
	double mmcs, rec;
	int error;

	int represented = (int)a->features;
	if ((error = mb_sae_tms_init(&t, (int)a->features, (int)a->dims, p, (uint64_t)a->seed,
				     err)) < 0)
		return error;
	if (a->model_steps > 0 &&
	    (error = mb_sae_tms_train_model(&t, a->model_steps, 256, 1e-2, &represented, err)) < 0) {
		mb_sae_tms_dispose(&t);
		return error;
	}
	cfg = train_config(a);
	src = mb_sae_tms_source(&t);
	error = mb_sae_train(&s, &res, &src, &cfg, NULL, NULL, err);
	if (error == 0)
		error = mb_sae_recovery(&mmcs, &rec, NULL, s, t.directions, t.n_features, err);
	if (error == 0)
		printf("tms%s n %d m %d p %.4g (%.2f active/row) %s width %d: MMCS %.4f, recovered "
		       "(cos >= 0.9) %.4f, L0 %.2f, dead %.3f, %.1fs\n",
		       a->model_steps > 0 ? " (trained model)" : "", t.n_features, t.d, p,
		       p * t.n_features, a->arch == 0 ? "relu" : "topk", cfg.width, mmcs, rec,
		       res.final.l0, res.dead_frac, res.seconds);
	if (error == 0 && a->model_steps > 0)
		printf("  the model represents %d of %d features (|W column| >= 0.5)\n", represented,
		       t.n_features);
	json_decref(res.record);
	mb_sae_free(s);
	mb_sae_tms_dispose(&t);
	return error;
}

static int cmd_tms(int argc, char **argv)
{
	sae_args a;
	mb_cli_parsed parsed;
	mb_error err;
	int rc;

	memset(&a, 0, sizeof(a));
	if ((rc = mb_cli_parse(&parsed, &a, &tms_cmd, argc, argv)) != MB_CLI_GO ||
	    (rc = check_applies(&parsed, &tms_cmd, &a, 1, 0)) != MB_CLI_GO)
		return rc;
	if (a.threads > 0)
		omp_set_num_threads((int)a.threads);
	for (int i = 0; i < (a.sweep ? 5 : 1); i++) {
		double p = a.p * (double)(1 << i);
		if (p > 1.0)
			break;
		if (tms_once(&a, p, &err) < 0)
			return mb_cli_fail(&err);
	}
	return MB_EXIT_OK;
}

int mb_cmd_sae(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		mb_cli_help_group(argc < 2 ? stderr : stdout, sae_about, sae_cmds,
				  MB_CLI_N(sae_cmds));
		return argc < 2 ? MB_EXIT_USAGE : MB_EXIT_OK;
	}
	if (strcmp(argv[1], "train") == 0)
		return cmd_train(argc - 1, argv + 1);
	if (strcmp(argv[1], "eval") == 0)
		return cmd_eval(argc - 1, argv + 1);
	if (strcmp(argv[1], "match") == 0)
		return cmd_match(argc - 1, argv + 1);
	if (strcmp(argv[1], "battery") == 0)
		return cmd_battery(argc - 1, argv + 1);
	if (strcmp(argv[1], "verify") == 0)
		return cmd_verify(argc - 1, argv + 1);
	if (strcmp(argv[1], "tms") == 0)
		return cmd_tms(argc - 1, argv + 1);
	return mb_cli_usage_error("sae", "unknown subcommand '%s' (train, eval, match, battery, verify, tms)",
				  argv[1]);
}
