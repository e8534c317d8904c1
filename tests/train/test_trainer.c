/*
 * trainer: tiny configurations of the zoo's recipes trained for a few steps:
 * bitwise reproducibility (sha256 of the weight file across runs and across 1
 * and 2 threads), the checkpoint series, training_state.json, checkpoints
 * that the model loader reads back bit for bit, and a loss that falls.
 * (The real presets train for minutes: `mechbench zoo verify` retrains them.)
 */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mechbench/json.h>
#include <mechbench/model.h>
#include <mechbench/safetensors.h>
#include <mechbench/sha256.h>
#include <mechbench/zoo.h>

static void tiny_modadd(mb_zoo_recipe *r, int64_t steps)
{
	mb_error err;
	cr_assert_eq(mb_zoo_recipe_get(r, "modadd", "fast", 5, &err), 0, "%s", err.msg);
	snprintf(r->preset, sizeof(r->preset), "custom");
	r->p = 13;
	r->vocab_size = 14;
	r->train_frac = 0.5;
	r->n_embd = 16;
	r->n_head = 2;
	r->n_inner = 32;
	r->steps = steps;
	r->eval_every = 4;
	r->init_std = 0.8 / 4;
}

static void tiny_induction(mb_zoo_recipe *r, int64_t steps)
{
	mb_error err;
	cr_assert_eq(mb_zoo_recipe_get(r, "induction", "fast", 5, &err), 0, "%s", err.msg);
	snprintf(r->preset, sizeof(r->preset), "custom");
	r->n_positions = 17;
	r->vocab_size = 24;
	r->n_embd = 16;
	r->n_head = 2;
	r->seg_min = 3;
	r->seg_max = 8;
	r->batch_size = 4;
	r->steps = steps;
	r->eval_every = 3;
	r->warmup_steps = 2;
}

static char *tmpdir(void)
{
	char *d = malloc(64);
	snprintf(d, 64, "/tmp/mb_trainer_XXXXXX");
	cr_assert(mkdtemp(d));
	return d;
}

static void rmtree(const char *d)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
	cr_expect_eq(system(cmd), 0);
}

static void train(const mb_zoo_recipe *r, const char *dir, int threads, int64_t every,
		  mb_zoo_result *res)
{
	mb_zoo_train_opts o;
	mb_error err;
	memset(&o, 0, sizeof(o));
	o.out_dir = dir;
	o.checkpoint_every = every;
	o.command = "test_trainer";
	omp_set_num_threads(threads);
	cr_assert_eq(mb_zoo_train(res, r, &o, &err), 0, "%s", err.msg);
	omp_set_num_threads(2);
}

static void sha_of(char hex[MB_SHA256_HEX_LEN], const char *dir, const char *file)
{
	char path[512];
	mb_error err;
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	cr_assert_eq(mb_sha256_hex_file(hex, path, &err), 0, "%s", err.msg);
}

/* Trains r three times (1, 2, 2 threads) and expects the same bits of every
 * deterministic file. */
static void reproducible(const mb_zoo_recipe *r)
{
	static const char *const files[] = {"model.safetensors", "config.json", "tokenizer.json"};
	char want[3][MB_SHA256_HEX_LEN], got[MB_SHA256_HEX_LEN];
	mb_zoo_result res[3];
	for (int run = 0; run < 3; run++) {
		char *d = tmpdir();
		train(r, d, run == 0 ? 1 : 2, 0, &res[run]);
		for (int f = 0; f < 3; f++) {
			if (run == 0) {
				sha_of(want[f], d, files[f]);
				continue;
			}
			sha_of(got, d, files[f]);
			cr_expect_str_eq(got, want[f], "%s run %d (%d threads): %s differs", r->name,
					 run, run == 0 ? 1 : 2, files[f]);
		}
		rmtree(d);
		free(d);
	}
	printf("%s: %lld steps, model.safetensors sha256 %s on 1 and 2 threads, twice; "
	       "final loss %.6f\n", r->name, (long long)r->steps, want[0], res[0].final_loss);
	cr_expect(memcmp(&res[0].final_loss, &res[1].final_loss, sizeof(double)) == 0);
	cr_expect(memcmp(&res[1].final_loss, &res[2].final_loss, sizeof(double)) == 0);
}

Test(trainer, modadd_training_is_bitwise_reproducible_across_runs_and_threads)
{
	mb_zoo_recipe r;
	tiny_modadd(&r, 6);
	reproducible(&r);
	/* mini-batch with seeded shuffling across epochs */
	r.batch_size = 16;
	reproducible(&r);
}

Test(trainer, induction_training_is_bitwise_reproducible_across_runs_and_threads)
{
	mb_zoo_recipe r;
	tiny_induction(&r, 5);
	reproducible(&r);
}

Test(trainer, a_different_seed_gives_different_weights)
{
	mb_zoo_recipe r;
	mb_zoo_result res;
	char a[MB_SHA256_HEX_LEN], b[MB_SHA256_HEX_LEN];
	char *d = tmpdir();
	tiny_modadd(&r, 2);
	train(&r, d, 2, 0, &res);
	sha_of(a, d, "model.safetensors");
	r.seed = 6;
	train(&r, d, 2, 0, &res);
	sha_of(b, d, "model.safetensors");
	cr_expect_str_neq(a, b);
	rmtree(d);
	free(d);
}

Test(trainer, modadd_loss_falls_and_train_accuracy_rises)
{
	mb_zoo_recipe r;
	mb_zoo_result res;
	char *d = tmpdir();
	tiny_modadd(&r, 60);
	r.adamw.lr = 1e-2;
	train(&r, d, 2, 0, &res);
	/* step 0 evaluation is in training_state.json; the final one in res */
	char path[512];
	mb_json_doc doc;
	mb_error err;
	snprintf(path, sizeof(path), "%s/training_state.json", d);
	cr_assert_eq(mb_json_doc_load(&doc, path, &err), 0, "%s", err.msg);
	json_t *losses = json_object_get(doc.root, "losses");
	cr_assert_eq(json_array_size(losses), 60);
	double first = json_real_value(json_array_get(losses, 0));
	double train_acc = mb_zoo_eval_get(&r, &res.final, "train_acc");
	printf("tiny modadd: loss %.4f -> %.4f, train acc %.3f\n", first, res.final_loss,
	       train_acc);
	cr_expect_lt(res.final_loss, 0.5 * first);
	cr_expect_geq(train_acc, 0.5);
	mb_json_doc_dispose(&doc);
	rmtree(d);
	free(d);
}

/* training_state.json's evaluations are "step" plus exactly the recipe's
 * eval fields, integers as JSON integers, with the values the trainer
 * returns (the last one is res.final). */
static void evals_carry_the_named_fields(mb_zoo_recipe *r)
{
	mb_zoo_result res;
	mb_json_doc doc;
	mb_error err;
	size_t n;
	char *d = tmpdir(), path[512];
	train(r, d, 2, 0, &res);
	snprintf(path, sizeof(path), "%s/training_state.json", d);
	cr_assert_eq(mb_json_doc_load(&doc, path, &err), 0, "%s", err.msg);
	json_t *evals = json_object_get(doc.root, "evals");
	cr_assert_eq(json_array_size(evals), (size_t)(r->steps / r->eval_every + 1 +
						       (r->steps % r->eval_every != 0)));
	const mb_zoo_eval_field *f = mb_zoo_eval_fields(r, &n);
	for (size_t i = 0; i < json_array_size(evals); i++) {
		json_t *ev = json_array_get(evals, i);
		cr_expect_eq(json_object_size(ev), n + 1, "%s eval %zu", r->name, i);
		cr_expect(json_is_integer(json_object_get(ev, "step")));
		for (size_t k = 0; k < n; k++) {
			json_t *v = json_object_get(ev, f[k].name);
			cr_expect(f[k].integer ? json_is_integer(v) : json_is_real(v), "%s: %s",
				  r->name, f[k].name);
		}
	}
	json_t *last = json_array_get(evals, json_array_size(evals) - 1);
	cr_expect_eq(json_integer_value(json_object_get(last, "step")), r->steps);
	/* written with 10 significant digits */
	for (size_t k = 0; k < n; k++) {
		double got = json_number_value(json_object_get(last, f[k].name));
		double want = res.final.value[k];
		cr_expect_leq(fabs(got - want), 1e-9 * fmax(1, fabs(want)), "%s: %s %.17g vs %.17g",
			      r->name, f[k].name, got, want);
	}
	mb_json_doc_dispose(&doc);
	rmtree(d);
	free(d);
}

Test(trainer, training_state_evals_are_the_recipes_named_fields)
{
	mb_zoo_recipe r;
	tiny_modadd(&r, 5);
	evals_carry_the_named_fields(&r);
	tiny_induction(&r, 4);
	evals_carry_the_named_fields(&r);
}

Test(trainer, train_pairs_are_modadds_split_and_null_for_another_recipe)
{
	mb_zoo_recipe r;
	mb_zoo_trainer *t;
	mb_error err;
	uint32_t *tr, *te;
	size_t n, ntr, nte;
	tiny_modadd(&r, 1);
	cr_assert_eq(mb_zoo_trainer_init(&t, &r, &err), 0, "%s", err.msg);
	const uint32_t *pairs = mb_zoo_trainer_train_pairs(t, &n);
	cr_assert_eq(mb_zoo_modadd_split(&tr, &ntr, &te, &nte, r.p, r.train_frac, r.seed, &err), 0);
	cr_assert_eq(n, ntr);
	cr_expect(memcmp(pairs, tr, n * sizeof(*tr)) == 0);
	free(tr);
	free(te);
	mb_zoo_trainer_free(t);
	tiny_induction(&r, 1);
	cr_assert_eq(mb_zoo_trainer_init(&t, &r, &err), 0, "%s", err.msg);
	cr_expect_null(mb_zoo_trainer_train_pairs(t, &n));
	cr_expect_eq(n, 0);
	mb_zoo_trainer_free(t);
}

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

Test(trainer, checkpoint_series_has_every_nth_step_and_the_last)
{
	mb_zoo_recipe r;
	mb_zoo_result res;
	char *d = tmpdir(), path[512], a[MB_SHA256_HEX_LEN], b[MB_SHA256_HEX_LEN];
	tiny_induction(&r, 5);
	train(&r, d, 2, 2, &res);
	const int want[] = {0, 2, 4, 5};
	for (int i = 0; i < 4; i++) {
		static const char *const files[] = {"config.json", "model.safetensors",
						    "tokenizer.json", "training_state.json"};
		for (int f = 0; f < 4; f++) {
			snprintf(path, sizeof(path), "%s/checkpoints/step_%06d/%s", d, want[i], files[f]);
			cr_expect(exists(path), "missing %s", path);
		}
		snprintf(path, sizeof(path), "%s/checkpoints/step_%06d/training_state.json", d,
			 want[i]);
		mb_json_doc doc;
		mb_error err;
		cr_assert_eq(mb_json_doc_load(&doc, path, &err), 0, "%s", err.msg);
		cr_expect_eq(json_integer_value(json_object_get(doc.root, "step")), want[i]);
		cr_expect_eq(json_array_size(json_object_get(doc.root, "losses")), (size_t)want[i]);
		cr_expect_eq(json_integer_value(json_object_get(doc.root, "seed")), 5);
		cr_expect(json_is_object(json_object_get(doc.root, "recipe")));
		cr_expect(json_is_string(json_object_get(doc.root, "started_utc")));
		mb_json_doc_dispose(&doc);
	}
	snprintf(path, sizeof(path), "%s/checkpoints/step_000001", d);
	cr_expect(!exists(path), "step 1 is not a multiple of 2");
	/* The last checkpoint of the series is the final model. */
	snprintf(path, sizeof(path), "%s/checkpoints/step_000005", d);
	sha_of(a, path, "model.safetensors");
	sha_of(b, d, "model.safetensors");
	cr_expect_str_eq(a, b);
	/* Step 0 is the initialisation: another model. */
	snprintf(path, sizeof(path), "%s/checkpoints/step_000000", d);
	sha_of(a, path, "model.safetensors");
	cr_expect_str_neq(a, b);
	rmtree(d);
	free(d);
}

/* The loader reads our checkpoints: config, tokenizer and every tensor, bit
 * for bit what was written. */
static void loads_back(mb_zoo_recipe *r)
{
	mb_zoo_result res;
	mb_model *m;
	mb_error err;
	mb_safetensors *st;
	char *d = tmpdir(), path[512];
	train(r, d, 2, 0, &res);
	cr_assert_eq(mb_model_load(&m, d, &err), 0, "%s", err.msg);
	cr_expect_eq(m->cfg.n_vocab, r->vocab_size);
	cr_expect_eq(m->cfg.n_ctx, r->n_positions);
	cr_expect_eq(m->cfg.d_model, r->n_embd);
	cr_expect_eq(m->cfg.attn_only, r->attn_only);
	cr_expect_eq(m->cfg.tied, r->tie_word_embeddings);
	cr_expect_eq(m->cfg.norm, r->layer_norm ? MB_NORM_LN : MB_NORM_NONE);
	cr_expect_not_null(m->tok, "tokenizer.json loaded");
	snprintf(path, sizeof(path), "%s/model.safetensors", d);
	cr_assert_eq(mb_safetensors_open(&st, path, &err), 0, "%s", err.msg);
	/* wte row by row from the file equals the loaded block */
	const mb_st_tensor *t = mb_safetensors_find(st, "wte.weight");
	cr_assert_not_null(t);
	float *buf = malloc(t->numel * sizeof(float));
	cr_assert_eq(mb_safetensors_read_f32(st, t, buf, 1, &err), 0);
	cr_expect(memcmp(buf, m->w.wte, t->numel * sizeof(float)) == 0);
	free(buf);
	mb_safetensors_free(st);
	mb_model_free(m);
	rmtree(d);
	free(d);
}

Test(trainer, checkpoints_load_back_through_the_model_loader)
{
	mb_zoo_recipe r;
	tiny_modadd(&r, 2);
	loads_back(&r);
	tiny_induction(&r, 2);
	loads_back(&r);
}

Test(trainer, rejects_an_inconsistent_recipe)
{
	mb_zoo_recipe r;
	mb_zoo_result res;
	mb_zoo_train_opts o;
	mb_error err;
	tiny_modadd(&r, 2);
	r.n_head = 3;
	memset(&o, 0, sizeof(o));
	o.out_dir = "/tmp/mb_trainer_never_written";
	cr_expect_eq(mb_zoo_train(&res, &r, &o, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "n_head"), "%s", err.msg);
	cr_expect(!exists(o.out_dir));
}
