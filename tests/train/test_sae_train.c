/* SAE training and evaluation (sae_train.h): ground-truth recovery on a toy
 * model of superposition, the same bits for any thread count, activations
 * streamed from a zoo model, the spliced evaluation against an exact SAE and
 * the engine's own zero ablation, the text corpus, bad inputs. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mechbench/file.h>
#include <mechbench/interventions.h>
#include <mechbench/logits.h>
#include <mechbench/model.h>
#include <mechbench/sae.h>
#include <mechbench/sae_train.h>

#define INDUCTION MB_SOURCE_DIR "/baselines/models/induction"

/* The test preset of the toy model of superposition (sae_train.h): n
 * features with known directions in m < n dims, each active with
 * probability p; a TopK SAE of width w, k latents. */
#define TMS_N 48
#define TMS_M 24
#define TMS_P 0.04
#define TMS_W 96
#define TMS_K 3
#define TMS_TOKENS (256 * 800)

/* The test preset of the toy model: n features in m dims at probability p. */
static mb_sae *train_tms(mb_sae_tms *t, int n, int m, double p, int width, int k, int64_t tokens,
			 mb_sae_train_result *res)
{
	mb_error err;
	mb_sae *s;
	cr_assert_eq(mb_sae_tms_init(t, n, m, p, 1, &err), 0, "%s", err.msg);
	mb_sae_train_config cfg = mb_sae_train_defaults(MB_SAE_TOPK);
	cfg.width = width;
	cfg.k = k;
	cfg.tokens = tokens;
	cfg.batch = 256;
	cfg.seed = 3;
	cfg.lr = 3e-3;
	mb_sae_source src = mb_sae_tms_source(t);
	cr_assert_eq(mb_sae_train(&s, res, &src, &cfg, NULL, NULL, &err), 0, "%s", err.msg);
	return s;
}

Test(sae_train, topk_recovers_95_percent_of_toy_features_at_the_preset_sparsity)
{
	mb_sae_tms t;
	mb_sae_train_result res;
	mb_error err;
	double mmcs, rec;
	/* One thread: on a loaded machine OpenMP regions over these tiny steps cost
	 * more than the steps (the 1-vs-2-thread bits are checked below). */
	omp_set_num_threads(1);
	mb_sae *s = train_tms(&t, TMS_N, TMS_M, TMS_P, TMS_W, TMS_K, TMS_TOKENS, &res);
	cr_assert_eq(mb_sae_recovery(&mmcs, &rec, NULL, s, t.directions, t.n_features, &err), 0);
	printf("tms n %d m %d p %g: MMCS %.4f recovered %.4f L0 %.2f\n", TMS_N, TMS_M, TMS_P, mmcs,
	       rec, res.final.l0);
	cr_expect(rec >= 0.95, "recovered %.3f of the true features at cos >= 0.9", rec);
	json_decref(res.record);
	mb_sae_free(s);
	mb_sae_tms_dispose(&t);
}

Test(sae_train, training_is_the_same_bits_for_1_and_2_threads)
{
	mb_sae *s[2];
	for (int i = 0; i < 2; i++) {
		mb_sae_tms t;
		mb_sae_train_result res;
		omp_set_num_threads(i + 1);
		s[i] = train_tms(&t, 16, 8, 0.1, 32, 3, 256 * 12, &res);
		json_decref(res.record);
		mb_sae_tms_dispose(&t);
	}
	cr_expect(memcmp(s[0]->params, s[1]->params, s[0]->n_params * sizeof(float)) == 0);
	mb_sae_free(s[0]);
	mb_sae_free(s[1]);
}

/* Trains a small SAE on the induction model's blocks.0.hook_resid_post. */
static mb_sae *train_zoo(const mb_model *m, mb_sae_arch arch, int threads)
{
	mb_sae_corpus *c;
	mb_sae_acts *a;
	mb_sae *s;
	mb_sae_train_result res;
	mb_hook_point p;
	mb_error err;
	omp_set_num_threads(threads);
	cr_assert_eq(mb_hook_parse(&p, "blocks.0.hook_resid_post", &err), 0);
	cr_assert_eq(mb_sae_corpus_open_zoo(&c, INDUCTION, 0, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_sae_acts_init(&a, m, p, c, 2, 5, &err), 0, "%s", err.msg);
	mb_sae_train_config cfg = mb_sae_train_defaults(arch);
	cfg.width = 128;
	cfg.k = 8;
	cfg.l1 = 1.0;
	cfg.tokens = 512 * 8;
	cfg.batch = 512;
	mb_sae_source src = mb_sae_acts_source(a);
	cr_assert_eq(src.d_in, 64);
	cr_assert_eq(mb_sae_train(&s, &res, &src, &cfg, NULL, NULL, &err), 0, "%s", err.msg);
	json_decref(res.record);
	mb_sae_acts_free(a);
	mb_sae_corpus_free(c);
	return s;
}

Test(sae_train, zoo_activations_stream_and_train_the_same_bits_for_1_and_2_threads)
{
	mb_model *m;
	mb_error err;
	cr_assert_eq(mb_model_load(&m, INDUCTION, &err), 0, "%s", err.msg);
	mb_sae_arch archs[2] = {MB_SAE_RELU, MB_SAE_TOPK};
	for (int a = 0; a < 2; a++) {
		mb_sae *s1 = train_zoo(m, archs[a], 1), *s2 = train_zoo(m, archs[a], 2);
		cr_expect(memcmp(s1->params, s2->params, s1->n_params * sizeof(float)) == 0,
			  "%s: weights differ between 1 and 2 threads", mb_sae_arch_name(archs[a]));
		mb_sae_free(s1);
		mb_sae_free(s2);
	}
	mb_model_free(m);
}

/* CE of the induction corpus's first batch with blocks.0.hook_resid_post
 * zero-ablated by the interventions layer (an implementation independent of
 * the SAE splice). */
static double ce_zero_by_interventions(const mb_model *m)
{
	mb_sae_corpus *c;
	mb_sae_batch b;
	mb_engine *e;
	mb_hooks *h;
	mb_iv *iv;
	mb_error err;
	mb_engine_opts o = {0};
	mb_run run = {0};
	mb_iv_spec spec = {0};
	double sum = 0;
	int64_t n = 0;
	cr_assert_eq(mb_sae_corpus_open_zoo(&c, INDUCTION, 0, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_sae_corpus_next(c, &b, &err), 0);
	o.max_batch = b.batch;
	o.max_seq = b.seq;
	cr_assert_eq(mb_engine_init(&e, &m->cfg, &m->w, &o, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_hooks_init(&h, &err), 0);
	cr_assert_eq(mb_iv_init(&iv, &err), 0);
	cr_assert_eq(mb_hook_parse(&spec.point, "blocks.0.hook_resid_post", &err), 0);
	spec.unit = -1;
	spec.op = MB_IV_ZERO;
	cr_assert_eq(mb_iv_add(iv, &m->cfg, &spec, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_iv_attach(iv, h, &err), 0);
	run.batch = b.batch;
	run.seq = b.seq;
	run.tokens = b.tokens;
	run.hooks = h;
	run.logits = b.logits;
	cr_assert_eq(mb_engine_forward(e, &run, &err), 0, "%s", err.msg);
	for (int it = 0; it < b.batch; it++)
		for (int i = 0; i < b.rows_per_item; i++) {
			int32_t tg = b.targets[(size_t)it * b.rows_per_item + i];
			if (tg < 0)
				continue;
			sum += mb_logits_ce(NULL, mb_engine_logits_row(e, it, i), m->cfg.n_vocab, tg,
					    MB_LOGITS_DETMATH);
			n++;
		}
	mb_iv_free(iv);
	mb_hooks_free(h);
	mb_engine_free(e);
	mb_sae_corpus_free(c);
	return sum / n;
}

/* An exact SAE: x_hat = ReLU(x) - ReLU(-x) = x bit for bit (W_enc = [I, -I],
 * W_dec = [I; -I], no biases). */
static mb_sae *exact_sae(int D)
{
	mb_sae *s;
	mb_error err;
	cr_assert_eq(mb_sae_init(&s, MB_SAE_RELU, D, 2 * D, 0, &err), 0);
	s->apply_b_dec_to_input = 0;
	for (int i = 0; i < D; i++) {
		s->W_enc[(size_t)i * 2 * D + i] = 1.0f;
		s->W_enc[(size_t)i * 2 * D + D + i] = -1.0f;
		s->W_dec[(size_t)i * D + i] = 1.0f;
		s->W_dec[(size_t)(D + i) * D + i] = -1.0f;
	}
	return s;
}

Test(sae_train, spliced_evaluation_of_an_exact_sae_recovers_all_and_zero_matches_interventions)
{
	mb_model *m;
	mb_sae *s;
	mb_sae_corpus *c;
	mb_sae_eval_result r;
	mb_hook_point p;
	mb_error err;
	const int D = 64;
	cr_assert_eq(mb_model_load(&m, INDUCTION, &err), 0, "%s", err.msg);
	s = exact_sae(D);
	cr_assert_eq(mb_hook_parse(&p, "blocks.0.hook_resid_post", &err), 0);
	cr_assert_eq(mb_sae_corpus_open_zoo(&c, INDUCTION, 0, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_sae_evaluate(&r, m, s, p, c, 1, &err), 0, "%s", err.msg);
	printf("exact sae: ce clean %.6f sae %.6f zero %.6f recovered %.6f kl %.3g\n", r.ce_clean,
	       r.ce_sae, r.ce_zero, r.ce_recovered, r.kl_sae);
	cr_expect(r.ce_sae == r.ce_clean, "an exact reconstruction changes no logit");
	cr_expect(r.kl_sae == 0.0);
	cr_expect(r.ce_recovered == 1.0);
	cr_expect(r.stats.fve == 1.0 && r.stats.mse == 0.0);
	cr_expect(r.ce_zero > r.ce_clean + 0.1, "zero ablation of the residual hurts");
	cr_expect(r.kl_zero > 0.01);
	double want = ce_zero_by_interventions(m);
	cr_expect(fabs(r.ce_zero - want) <= 1e-12 * fabs(want), "zero arm %.15g vs interventions %.15g",
		  r.ce_zero, want);
	cr_expect_eq(r.n_items, 32);
	mb_sae_eval_dispose(&r);
	mb_sae_corpus_free(c);
	mb_sae_free(s);
	mb_model_free(m);
}

Test(sae_train, text_corpus_cuts_the_token_stream_into_windows_and_wraps)
{
	char path[] = "/tmp/mb-test-sae-text-XXXXXX";
	int fd = mkstemp(path);
	mb_tokenizer *tok;
	mb_sae_corpus *c;
	mb_sae_batch b;
	mb_error err;
	cr_assert(fd >= 0);
	close(fd);
	const char *text = "t1 t2 t3\nt4 t5\n\nt6 t7 t8 t9 t10\n";
	cr_assert_eq(mb_file_write_all(path, text, strlen(text), &err), 0);
	cr_assert_eq(mb_tokenizer_load(&tok, INDUCTION "/tokenizer.json", &err), 0, "%s", err.msg);
	cr_assert_eq(mb_sae_corpus_open_text(&c, path, tok, 3, 2, 0, &err), 0, "%s", err.msg);
	/* Stream t1..t10 t1..t10 ...: batch 0 = [1 2 3][4 5 6], batch 1 = [7 8 9][10 1 2]. */
	int32_t want[2][6] = {{1, 2, 3, 4, 5, 6}, {7, 8, 9, 10, 1, 2}};
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(mb_sae_corpus_next(c, &b, &err), 0, "%s", err.msg);
		cr_assert(b.batch == 2 && b.seq == 3 && b.rows_per_item == 3);
		for (int j = 0; j < 6; j++)
			cr_expect_eq(b.tokens[j], want[i][j], "batch %d token %d", i, j);
		cr_expect_eq(b.targets[0], want[i][1]);
		cr_expect_eq(b.targets[2], -1);
	}
	mb_sae_corpus_free(c);
	/* A word the vocabulary lacks maps to unk; an empty file is an error. */
	cr_assert_eq(mb_file_write_all(path, "\n\n", 2, &err), 0);
	cr_assert_eq(mb_sae_corpus_open_text(&c, path, tok, 3, 2, 0, &err), 0);
	cr_expect(mb_sae_corpus_next(c, &b, &err) < 0);
	cr_expect(strstr(err.msg, path) && strstr(err.msg, "no tokens"), "%s", err.msg);
	mb_sae_corpus_free(c);
	mb_tokenizer_free(tok);
	unlink(path);
}

Test(sae_train, bad_inputs_are_one_clear_error)
{
	mb_model *m;
	mb_sae_corpus *c;
	mb_sae_acts *a = NULL;
	mb_hook_point p;
	mb_error err;
	cr_expect(mb_sae_corpus_open_zoo(&c, MB_SOURCE_DIR "/tests", 0, &err) < 0);
	cr_expect(strstr(err.msg, "training_state.json") != NULL, "%s", err.msg);
	cr_assert_eq(mb_model_load(&m, INDUCTION, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_sae_corpus_open_zoo(&c, INDUCTION, 0, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_hook_parse(&p, "blocks.1.attn.hook_pattern", &err), 0);
	cr_expect(mb_sae_acts_init(&a, m, p, c, 1, 0, &err) < 0);
	cr_expect(strstr(err.msg, "blocks.1.attn.hook_pattern") != NULL, "%s", err.msg);
	cr_assert_eq(mb_hook_parse(&p, "blocks.0.hook_mlp_out", &err), 0);
	cr_expect(mb_sae_acts_init(&a, m, p, c, 1, 0, &err) < 0, "attention-only: no MLP");
	cr_expect(strstr(err.msg, "hook_mlp_out") != NULL, "%s", err.msg);
	cr_expect_null(a);
	mb_sae_corpus_free(c);
	mb_model_free(m);
}

Test(sae_train, induction_variables_are_labelled_and_matched)
{
	/* Latents +x_i and -x_i of the residual. */
	mb_model *m;
	mb_sae *s;
	mb_sae_corpus *c;
	mb_sae_match *mt;
	mb_hook_point p;
	mb_error err;
	int n;
	const int D = 64;
	cr_assert_eq(mb_model_load(&m, INDUCTION, &err), 0, "%s", err.msg);
	s = exact_sae(D);
	cr_assert_eq(mb_hook_parse(&p, "blocks.1.hook_resid_post", &err), 0);
	cr_assert_eq(mb_sae_corpus_open_zoo(&c, INDUCTION, 0, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_sae_match_induction(&mt, &n, m, s, p, mb_sae_corpus_recipe(c), 64, &err), 0,
		     "%s", err.msg);
	cr_assert_eq(n, 9, "8 topics and repeat");
	double topics = 0;
	for (int i = 0; i < n; i++) {
		printf("match %-8s base %.4f latent %3d AUROC %.4f F1 %.4f\n", mt[i].variable,
		       mt[i].base_rate, mt[i].latent, mt[i].auroc, mt[i].f1);
		cr_expect(mt[i].latent >= 0 && mt[i].latent < 2 * D);
		cr_expect(mt[i].auroc >= 0.5 && mt[i].auroc <= 1.0);
		if (i < 8)
			topics += mt[i].base_rate;
	}
	cr_expect_float_eq(topics, 1.0, 1e-12, "every token has one topic");
	/* The repeat: the second copy of a segment of 16..31 tokens, of 63. */
	cr_expect(mt[8].base_rate > 16.0 / 63 && mt[8].base_rate < 31.0 / 63, "%g", mt[8].base_rate);
	cr_expect_str_eq(mt[8].variable, "repeat");
	free(mt);
	/* A text corpus has no recipe; another recipe has no variables listed. */
	mb_zoo_recipe r;
	cr_assert_eq(mb_zoo_recipe_get(&r, "modadd", "fast", 0, &err), 0);
	cr_expect(mb_sae_match_induction(&mt, &n, m, s, p, &r, 4, &err) < 0);
	cr_expect(strstr(err.msg, "modadd") != NULL, "%s", err.msg);
	mb_sae_corpus_free(c);
	mb_sae_free(s);
	mb_model_free(m);
}

/* A zoo model, its language's corpus and a TopK SAE (k 8, batch 1024)
 * trained here on the activations of hook, streamed from the model. */
typedef struct zoo_sae {
	mb_model *m;
	mb_sae_corpus *c;
	mb_sae_acts *a;
	mb_sae *s;
	mb_hook_point p;
	const mb_zoo_recipe *r;
	json_t *record;
} zoo_sae;

static void zoo_sae_train(zoo_sae *z, const char *dir, const char *hook, int width,
			  int64_t tokens)
{
	mb_sae_train_result res;
	mb_error err;
	memset(z, 0, sizeof(*z));
	cr_assert_eq(mb_model_load(&z->m, dir, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_hook_parse(&z->p, hook, &err), 0);
	cr_assert_eq(mb_sae_corpus_open_zoo(&z->c, dir, 0, &err), 0, "%s", err.msg);
	z->r = mb_sae_corpus_recipe(z->c);
	cr_assert_eq(mb_sae_acts_init(&z->a, z->m, z->p, z->c, 8, 0, &err), 0, "%s", err.msg);
	mb_sae_train_config cfg = mb_sae_train_defaults(MB_SAE_TOPK);
	cfg.width = width;
	cfg.k = 8;
	cfg.tokens = tokens;
	cfg.batch = 1024;
	mb_sae_source src = mb_sae_acts_source(z->a);
	memset(&res, 0, sizeof(res));
	cr_assert_eq(mb_sae_train(&z->s, &res, &src, &cfg, NULL, NULL, &err), 0, "%s", err.msg);
	z->record = res.record;
}

static void zoo_sae_dispose(zoo_sae *z)
{
	json_decref(z->record);
	mb_sae_free(z->s);
	mb_sae_acts_free(z->a);
	mb_sae_corpus_free(z->c);
	mb_model_free(z->m);
}

/* modadd's Fourier variables: a TopK SAE trained on the MLP's output of the
 * committed modadd model; the 8 variables its latents detect best are the
 * signs of cos and sin of exactly the model's key frequencies, found here
 * independently as the 4 frequencies holding the most Fourier energy of the
 * neuron-to-logit map W_out W_U (Nanda et al. 2023, sec. 4). */
Test(sae_train, modadd_fourier_variables_match_the_key_frequencies)
{
	zoo_sae z;
	mb_sae_match *mt;
	mb_error err;
	int n;
	zoo_sae_train(&z, MB_SOURCE_DIR "/baselines/models/modadd", "blocks.0.mlp.hook_post", 128,
		      32768);
	const mb_model *m = z.m;
	const int P = z.r->p, D = m->cfg.d_model, M = m->cfg.d_mlp, NF = (P - 1) / 2;
	cr_assert_eq(mb_sae_match_modadd(&mt, &n, m, z.s, z.p, z.r, &err), 0, "%s", err.msg);
	cr_assert_eq(n, 2 * NF);
	/* energy of frequency k in W_L = W_out W_U over the answers c < P */
	double energy[64] = {0};
	cr_assert(NF < 64);
	const float *wout = m->w.proj_w; /* (M, D), the one layer */
	for (int u = 0; u < M; u++) {
		double wl[128];
		cr_assert(P <= 128);
		for (int cc = 0; cc < P; cc++) {
			double v = 0;
			for (int d = 0; d < D; d++)
				v += (double)wout[(size_t)u * D + d] * m->w.unembed[(size_t)cc * D + d];
			wl[cc] = v;
		}
		for (int k = 1; k <= NF; k++) {
			double x = 0, y = 0;
			for (int cc = 0; cc < P; cc++) {
				x += wl[cc] * cos(2 * 3.14159265358979323846 * k * cc / P);
				y += wl[cc] * sin(2 * 3.14159265358979323846 * k * cc / P);
			}
			energy[k] += x * x + y * y;
		}
	}
	/* the 4 frequencies of most energy */
	int key[4];
	for (int i = 0; i < 4; i++) {
		int best = -1;
		for (int k = 1; k <= NF; k++) {
			int used = 0;
			for (int q = 0; q < i; q++)
				used |= key[q] == k;
			if (!used && (best < 0 || energy[k] > energy[best]))
				best = k;
		}
		key[i] = best;
	}
	/* the 8 variables of highest AUROC */
	int top = 0;
	for (int v = 0; v < n; v++) {
		int above = 0;
		for (int u = 0; u < n; u++)
			above += mt[u].auroc > mt[v].auroc;
		if (above >= 8)
			continue;
		int k = (int)strtol(mt[v].variable + 3, NULL, 10), is_key = 0;
		for (int i = 0; i < 4; i++)
			is_key |= key[i] == k;
		cr_expect(is_key, "%s (AUROC %.4f) is among the 8 best but %d is not a key frequency "
			  "(%d %d %d %d)", mt[v].variable, mt[v].auroc, k, key[0], key[1], key[2], key[3]);
		cr_expect(mt[v].auroc > 0.52, "%s: AUROC %.4f", mt[v].variable, mt[v].auroc);
		top++;
	}
	cr_expect_eq(top, 8);
	free(mt);
	/* the induction recipe is not modadd's */
	mb_zoo_recipe ind;
	cr_assert_eq(mb_zoo_recipe_get(&ind, "induction", "fast", 0, &err), 0);
	cr_expect(mb_sae_match_modadd(&mt, &n, m, z.s, z.p, &ind, &err) < 0);
	cr_expect(strstr(err.msg, "induction") != NULL, "%s", err.msg);
	zoo_sae_dispose(&z);
}

/* The IOI language's name roles: a TopK SAE trained here on layer 0's
 * residual output of the committed ioi model. S2 (a name seen before) has a
 * latent that detects it among the name positions; IO and S1 differ only by
 * what follows them (ABBA and BABA put either first), so at their own
 * position no latent can tell them apart well; the masks keep each role
 * variable to the three name positions of each prompt. */
Test(sae_train, ioi_name_roles_are_matched_among_the_name_positions)
{
	const int width = 256;
	zoo_sae z;
	mb_sae_match *mt;
	mb_error err;
	int n;
	zoo_sae_train(&z, MB_SOURCE_DIR "/baselines/models/ioi", "blocks.0.hook_resid_post", width,
		      65536);
	cr_assert_eq(mb_sae_match_ioi(&mt, &n, z.m, z.s, z.p, z.r, 128, &err), 0, "%s", err.msg);
	cr_assert_eq(n, 5);
	static const char *const want[5] = {"name", "IO", "S1", "S2", "end"};
	for (int i = 0; i < n; i++) {
		printf("match %-4s base %.4f latent %3d AUROC %.4f F1 %.4f\n", mt[i].variable,
		       mt[i].base_rate, mt[i].latent, mt[i].auroc, mt[i].f1);
		cr_expect_str_eq(mt[i].variable, want[i]);
		cr_expect(mt[i].latent >= 0 && mt[i].latent < width);
	}
	/* each role is one of the three name positions of a prompt; three
	 * names and one last position per prompt */
	for (int i = 1; i <= 3; i++)
		cr_expect_float_eq(mt[i].base_rate, 1.0 / 3.0, 1e-12, "%s", mt[i].variable);
	cr_expect_float_eq(mt[0].base_rate, 3.0 * mt[4].base_rate, 1e-12);
	cr_expect(mt[3].auroc > 0.99, "S2: AUROC %.4f", mt[3].auroc);
	cr_expect(mt[1].auroc < 0.75 && mt[2].auroc < 0.75, "IO %.4f, S1 %.4f", mt[1].auroc,
		  mt[2].auroc);
	cr_expect(mt[4].auroc > 0.9, "end: AUROC %.4f", mt[4].auroc);
	free(mt);
	/* another recipe's language has no name roles */
	mb_zoo_recipe ind;
	cr_assert_eq(mb_zoo_recipe_get(&ind, "induction", "fast", 0, &err), 0);
	cr_expect(mb_sae_match_ioi(&mt, &n, z.m, z.s, z.p, &ind, 8, &err) < 0);
	cr_expect(strstr(err.msg, "induction") != NULL, "%s", err.msg);
	zoo_sae_dispose(&z);
}

Test(sae_train, an_sae_recovers_the_features_of_a_trained_tms_model)
{
	mb_sae_tms t;
	mb_sae_train_result res;
	mb_error err;
	double mmcs, rec;
	int represented = -1;
	mb_sae *s;
	omp_set_num_threads(1);
	cr_assert_eq(mb_sae_tms_init(&t, TMS_N, TMS_M, TMS_P, 1, &err), 0, "%s", err.msg);
	float *before = malloc((size_t)TMS_N * TMS_M * sizeof(float));
	memcpy(before, t.directions, (size_t)TMS_N * TMS_M * sizeof(float));
	cr_assert_eq(mb_sae_tms_train_model(&t, 600, 256, 1e-2, &represented, &err), 0, "%s",
		     err.msg);
	cr_expect(memcmp(before, t.directions, (size_t)TMS_N * TMS_M * sizeof(float)) != 0);
	cr_expect(represented >= TMS_N / 2 && represented <= TMS_N, "%d represented", represented);
	mb_sae_train_config cfg = mb_sae_train_defaults(MB_SAE_TOPK);
	cfg.width = TMS_W;
	cfg.k = TMS_K;
	cfg.tokens = TMS_TOKENS;
	cfg.batch = 256;
	cfg.seed = 3;
	cfg.lr = 3e-3;
	mb_sae_source src = mb_sae_tms_source(&t);
	cr_assert_eq(mb_sae_train(&s, &res, &src, &cfg, NULL, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_sae_recovery(&mmcs, &rec, NULL, s, t.directions, t.n_features, &err), 0);
	printf("trained tms: %d of %d represented, MMCS %.4f recovered %.4f\n", represented, TMS_N,
	       mmcs, rec);
	cr_expect(rec >= 0.9 * represented / TMS_N, "recovered %.3f", rec);
	json_decref(res.record);
	mb_sae_free(s);
	mb_sae_tms_dispose(&t);
	free(before);
}
