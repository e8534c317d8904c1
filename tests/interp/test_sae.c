/* SAEs (sae.h): forward and backward of each architecture against the
 * PyTorch reference (tests/fixtures/sae/gen_sae.py), thread-count
 * invariance, SAELens-layout round trip and old-format configs, one clear
 * error per malformed file, recovery scores, metrics. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mechbench/file.h>
#include <mechbench/npy.h>
#include <mechbench/rng.h>
#include <mechbench/sae.h>
#include <mechbench/safetensors.h>

#define FIX MB_SOURCE_DIR "/tests/fixtures/sae/"

static void load(mb_npy *a, const char *cs, const char *name)
{
	char path[512];
	mb_error err;
	snprintf(path, sizeof(path), FIX "%s/%s.npy", cs, name);
	cr_assert_eq(mb_npy_read_f32(a, path, &err), 0, "%s", err.msg);
}

/* Max |got - want| over n values, and its bound: abs + rel * max |want|. */
static void check_close(const char *what, const float *got, const float *want, size_t n,
			double tol)
{
	double md = 0.0, mw = 0.0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)got[i] - (double)want[i]);
		if (d > md)
			md = d;
		if (fabs(want[i]) > mw)
			mw = fabs(want[i]);
	}
	double bound = tol * (1.0 + mw);
	printf("sae golden %-10s max |diff| %.3g (bound %.3g)\n", what, md, bound);
	cr_expect(md <= bound, "%s: max |diff| %g > %g", what, md, bound);
}

/* Builds the SAE of a fixture case. */
static mb_sae *case_sae(const char *cs, mb_sae_arch arch, double *hyper)
{
	mb_npy we, be, wd, bd, h;
	mb_sae *s;
	mb_error err;

	load(&we, cs, "W_enc");
	load(&be, cs, "b_enc");
	load(&wd, cs, "W_dec");
	load(&bd, cs, "b_dec");
	load(&h, cs, "hyper");
	for (int i = 0; i < 4; i++)
		hyper[i] = ((float *)h.data)[i];
	cr_assert_eq(mb_sae_init(&s, arch, (int)we.shape[0], (int)we.shape[1], (int)hyper[2], &err),
		     0, "%s", err.msg);
	s->apply_b_dec_to_input = hyper[3] != 0.0;
	memcpy(s->W_enc, we.data, we.numel * sizeof(float));
	memcpy(s->b_enc, be.data, be.numel * sizeof(float));
	memcpy(s->W_dec, wd.data, wd.numel * sizeof(float));
	memcpy(s->b_dec, bd.data, bd.numel * sizeof(float));
	if (arch == MB_SAE_JUMPRELU) {
		mb_npy th;
		load(&th, cs, "threshold");
		memcpy(s->threshold, th.data, th.numel * sizeof(float));
		mb_npy_dispose(&th);
	}
	mb_npy_dispose(&we);
	mb_npy_dispose(&be);
	mb_npy_dispose(&wd);
	mb_npy_dispose(&bd);
	mb_npy_dispose(&h);
	return s;
}

/* Rows (n, D) of an array as a training step's source; past the end, an
 * error. */
typedef struct array_rows {
	const float *x;
	int64_t n, next;
	int D;
} array_rows;

static int array_next(void *self, float *out, int n, mb_error *err)
{
	array_rows *a = self;
	if (a->next + n > a->n)
		return mb_error_set(err, MB_EIO, "test rows: %lld of %lld rows read, %d more asked",
				    (long long)a->next, (long long)a->n, n);
	memcpy(out, a->x + (size_t)a->next * a->D, (size_t)n * a->D * sizeof(float));
	a->next += n;
	return 0;
}

static mb_sae_source array_source(array_rows *a, const float *x, int64_t n, int D)
{
	mb_sae_source src = {D, array_next, a};
	a->x = x;
	a->n = n;
	a->next = 0;
	a->D = D;
	return src;
}

/* The dense f (B, S) of the last forward. */
static float *dense_f(const mb_sae *s, const mb_sae_work *w, int B)
{
	float *f = calloc((size_t)B * s->d_sae, sizeof(float));
	for (int b = 0; b < B; b++)
		for (int e = 0; e < w->nnz[b]; e++)
			f[(size_t)b * s->d_sae + w->idx[(size_t)b * w->cap + e]] =
				w->val[(size_t)b * w->cap + e];
	return f;
}

static void golden(const char *cs, mb_sae_arch arch, int train)
{
	double hyper[4];
	mb_sae *s = case_sae(cs, arch, hyper);
	mb_npy x, pre, f, xh, dead;
	mb_sae_work w;
	mb_error err;
	char what[64];

	load(&x, cs, "x");
	load(&pre, cs, "pre");
	load(&f, cs, "f");
	load(&xh, cs, "x_hat");
	const int B = (int)x.shape[0];
	cr_assert_eq(mb_sae_work_init(&w, s, B, 0, &err), 0, "%s", err.msg);
	uint8_t *dm = NULL;
	if (train) {
		load(&dead, cs, "dead");
		dm = calloc((size_t)s->d_sae, 1);
		for (int j = 0; j < s->d_sae; j++)
			dm[j] = ((float *)dead.data)[j] != 0.0f;
	}
	mb_sae_forward(s, &w, x.data, B);
	float *pd = malloc(pre.numel * sizeof(float));
	cr_assert_eq(mb_sae_pre(s, x.data, B, pd, &err), 0, "%s", err.msg);
	snprintf(what, sizeof(what), "%s pre", cs);
	check_close(what, pd, pre.data, pre.numel, 1e-6);
	free(pd);
	float *fd = dense_f(s, &w, B);
	snprintf(what, sizeof(what), "%s f", cs);
	check_close(what, fd, f.data, f.numel, 1e-6);
	snprintf(what, sizeof(what), "%s x_hat", cs);
	check_close(what, w.x_hat, xh.data, xh.numel, 1e-6);
	free(fd);
	if (train) {
		mb_npy loss, g[4];
		static const char *gn[4] = {"g_W_enc", "g_b_enc", "g_W_dec", "g_b_dec"};
		float *grad = calloc(s->n_params, sizeof(float));
		mb_sae_loss l;
		mb_sae_work tw;
		cr_assert_eq(mb_sae_work_init(&tw, s, B, 1, &err), 0, "%s", err.msg);
		array_rows ar;
		mb_sae_source src = array_source(&ar, x.data, B, s->d_in);
		cr_assert_eq(mb_sae_train_step(&l, s, &tw, &src, 1.0f, B, hyper[0], dm, hyper[1],
					       grad, &err),
			     0, "%s", err.msg);
		for (int j = 0; j < s->d_sae; j++) {
			int active = 0;
			for (int b = 0; b < B; b++)
				active |= ((float *)f.data)[(size_t)b * s->d_sae + j] > 0.0f;
			cr_expect_eq(tw.fired[j], active, "%s: latent %d fired %d, PyTorch %d", cs, j,
				     tw.fired[j], active);
		}
		mb_sae_work_dispose(&tw);
		load(&loss, cs, "loss");
		float got[4] = {(float)l.mse, (float)l.sparse, (float)l.aux, (float)l.total};
		snprintf(what, sizeof(what), "%s loss", cs);
		check_close(what, got, loss.data, 4, 1e-6);
		mb_sae gs = *s;
		mb_sae_carve(&gs, grad);
		float *gp[4] = {gs.W_enc, gs.b_enc, gs.W_dec, gs.b_dec};
		for (int i = 0; i < 4; i++) {
			load(&g[i], cs, gn[i]);
			snprintf(what, sizeof(what), "%s %s", cs, gn[i]);
			check_close(what, gp[i], g[i].data, g[i].numel, 2e-6);
			mb_npy_dispose(&g[i]);
		}
		if (strcmp(cs, "topk") == 0)
			cr_expect(l.aux > 0.0 && l.n_dead == 2, "the AuxK case exercises AuxK");
		free(grad);
		free(dm);
		mb_npy_dispose(&loss);
		mb_npy_dispose(&dead);
	}
	mb_sae_work_dispose(&w);
	mb_npy_dispose(&x);
	mb_npy_dispose(&pre);
	mb_npy_dispose(&f);
	mb_npy_dispose(&xh);
	mb_sae_free(s);
}

Test(sae, relu_forward_backward_match_pytorch) { golden("relu", MB_SAE_RELU, 1); }
Test(sae, topk_with_auxk_forward_backward_match_pytorch) { golden("topk", MB_SAE_TOPK, 1); }
Test(sae, topk_without_dead_latents_matches_pytorch) { golden("topk_nodead", MB_SAE_TOPK, 1); }
Test(sae, jumprelu_forward_matches_pytorch) { golden("jumprelu", MB_SAE_JUMPRELU, 0); }

/* A random SAE of the given shape from a Philox stream. */
static mb_sae *random_sae(mb_sae_arch arch, int D, int S, int k, uint64_t seed)
{
	mb_sae *s;
	mb_error err;
	mb_rng r;
	cr_assert_eq(mb_sae_init(&s, arch, D, S, k, &err), 0, "%s", err.msg);
	mb_rng_init_named(&r, seed, "test/sae", 0);
	for (size_t i = 0; i < s->n_params; i++)
		s->params[i] = (float)(0.3 * mb_rng_normal(&r));
	if (s->threshold)
		for (int j = 0; j < S; j++)
			s->threshold[j] = (float)(0.2 * mb_rng_uniform(&r));
	return s;
}

Test(sae, train_step_refuses_an_inference_work_jumprelu_and_a_bad_source)
{
	const int D = 8, S = 16, B = 5;
	mb_sae *s = random_sae(MB_SAE_TOPK, D, S, 3, 11);
	mb_sae *j = random_sae(MB_SAE_JUMPRELU, D, S, 0, 12);
	float x[5 * 8];
	uint8_t dead[16] = {1, 0, 1};
	mb_sae_work w;
	mb_sae_loss l;
	mb_error err;
	array_rows ar;
	mb_sae_source src;
	float *g = calloc(s->n_params + S, sizeof(float));
	for (int i = 0; i < B * D; i++)
		x[i] = (float)((i * 7) % 11) - 5.0f;
	cr_assert_eq(mb_sae_work_init(&w, s, B, 0, &err), 0, "%s", err.msg);
	src = array_source(&ar, x, B, D);
	cr_expect_eq(mb_sae_train_step(&l, s, &w, &src, 1.0f, B, 0.0, dead, 0.5, g, &err),
		     MB_EINVALID);
	cr_expect(strstr(err.msg, "not made for training") != NULL, "%s", err.msg);
	mb_sae_work_dispose(&w);
	cr_assert_eq(mb_sae_work_init(&w, j, B, 1, &err), 0, "%s", err.msg);
	cr_expect_eq(mb_sae_train_step(&l, j, &w, &src, 1.0f, B, 0.0, NULL, 0.5, g, &err),
		     MB_EINVALID);
	cr_expect(strstr(err.msg, "JumpReLU") != NULL, "%s", err.msg);
	mb_sae_work_dispose(&w);
	cr_assert_eq(mb_sae_work_init(&w, s, B, 1, &err), 0, "%s", err.msg);
	src = array_source(&ar, x, B, D - 1);
	cr_expect_eq(mb_sae_train_step(&l, s, &w, &src, 1.0f, B, 0.0, dead, 0.5, g, &err),
		     MB_EMISMATCH);
	cr_expect(strstr(err.msg, "d_in is 8") != NULL, "%s", err.msg);
	src = array_source(&ar, x, B - 1, D);
	cr_expect_eq(mb_sae_train_step(&l, s, &w, &src, 1.0f, B, 0.0, dead, 0.5, g, &err), MB_EIO);
	cr_expect(strstr(err.msg, "test rows") != NULL, "%s", err.msg);
	src = array_source(&ar, x, B, D);
	cr_expect_eq(mb_sae_train_step(&l, s, &w, &src, 1.0f, B, 0.0, dead, 0.5, g, &err), 0,
		     "%s", err.msg);
	cr_expect_eq(l.n_dead, 2);
	cr_expect_eq(ar.next, B, "the step read its %d rows", B);
	mb_sae_work_dispose(&w);
	free(g);
	mb_sae_free(s);
	mb_sae_free(j);
}

/* 200 rows: 1 thread steps in groups of 64 rows (64, 64, 64, 8), 2 threads in
 * groups of 128 (128, 72), with the input dimensions split between them. */
Test(sae, forward_and_backward_are_the_same_bits_for_1_and_2_threads)
{
	const int D = 32, S = 96, B = 200;
	mb_sae_arch archs[2] = {MB_SAE_RELU, MB_SAE_TOPK};
	for (int a = 0; a < 2; a++) {
		mb_sae *s = random_sae(archs[a], D, S, 8, 7);
		float *x = malloc((size_t)B * D * sizeof(float));
		mb_rng r;
		mb_rng_init_named(&r, 3, "test/sae/x", 0);
		float *x2 = malloc((size_t)B * D * sizeof(float));
		for (int i = 0; i < B * D; i++) {
			x[i] = (float)mb_rng_normal(&r);
			x2[i] = 2.0f * x[i];
		}
		uint8_t *dead = calloc(S, 1);
		for (int j = 0; j < S; j += 5)
			dead[j] = 1;
		float *g[3];
		float *xh[2];
		for (int t = 0; t < 3; t++) {
			mb_sae_work w;
			mb_sae_loss l;
			mb_error err;
			/* t = 2: the rows scaled beforehand, scale 1 */
			omp_set_num_threads(t == 1 ? 2 : 1);
			cr_assert_eq(mb_sae_work_init(&w, s, B, 1, &err), 0, "%s", err.msg);
			cr_assert_eq(w.group, t == 1 ? 128 : 64);
			g[t] = calloc(s->n_params, sizeof(float));
			array_rows ar;
			mb_sae_source src = array_source(&ar, t == 2 ? x2 : x, B, D);
			cr_assert_eq(mb_sae_train_step(&l, s, &w, &src, t == 2 ? 1.0f : 2.0f, B, 0.3,
						       archs[a] == MB_SAE_TOPK ? dead : NULL, 0.5, g[t],
						       &err),
				     0, "%s", err.msg);
			if (archs[a] == MB_SAE_TOPK)
				cr_assert(l.aux > 0.0, "the step exercises AuxK");
			mb_sae_work_dispose(&w);
			if (t == 2)
				continue;
			cr_assert_eq(mb_sae_work_init(&w, s, B, 0, &err), 0, "%s", err.msg);
			mb_sae_forward(s, &w, x2, B);
			xh[t] = malloc((size_t)B * D * sizeof(float));
			memcpy(xh[t], w.x_hat, (size_t)B * D * sizeof(float));
			mb_sae_work_dispose(&w);
		}
		cr_expect(memcmp(xh[0], xh[1], (size_t)B * D * sizeof(float)) == 0);
		cr_expect(memcmp(g[0], g[1], s->n_params * sizeof(float)) == 0,
			  "%s gradients differ between 1 and 2 threads", mb_sae_arch_name(archs[a]));
		cr_expect(memcmp(g[0], g[2], s->n_params * sizeof(float)) == 0,
			  "%s: scaling in the step differs from scaling the rows",
			  mb_sae_arch_name(archs[a]));
		free(g[0]);
		free(g[1]);
		free(g[2]);
		free(xh[0]);
		free(xh[1]);
		free(dead);
		free(x);
		free(x2);
		mb_sae_free(s);
	}
}

static void tmpdir(char *buf, size_t cap)
{
	snprintf(buf, cap, "/tmp/mb-test-sae-XXXXXX");
	cr_assert_not_null(mkdtemp(buf));
}

static void write_text(const char *dir, const char *name, const char *text)
{
	char path[512];
	mb_error err;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	cr_assert_eq(mb_file_write_all(path, text, strlen(text), &err), 0, "%s", err.msg);
}

Test(sae, saelens_layout_round_trips_every_architecture)
{
	mb_sae_arch archs[3] = {MB_SAE_RELU, MB_SAE_TOPK, MB_SAE_JUMPRELU};
	for (int a = 0; a < 3; a++) {
		char dir[64];
		mb_error err;
		mb_sae *s = random_sae(archs[a], 5, 9, 3, 11 + a), *t;
		tmpdir(dir, sizeof(dir));
		snprintf(s->hook_name, sizeof(s->hook_name), "blocks.1.hook_resid_post");
		snprintf(s->model_name, sizeof(s->model_name), "induction");
		s->context_size = 64;
		s->apply_b_dec_to_input = a != 0;
		cr_assert_eq(mb_sae_save(s, dir, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_sae_load(&t, dir, &err), 0, "%s", err.msg);
		cr_expect_eq(t->arch, s->arch);
		cr_expect_eq(t->d_in, 5);
		cr_expect_eq(t->d_sae, 9);
		cr_expect_eq(t->k, s->k);
		cr_expect_eq(t->apply_b_dec_to_input, s->apply_b_dec_to_input);
		cr_expect_eq(t->context_size, 64);
		cr_expect_str_eq(t->hook_name, "blocks.1.hook_resid_post");
		cr_expect_str_eq(t->model_name, "induction");
		cr_assert_eq(t->n_params, s->n_params);
		cr_expect(memcmp(t->params, s->params, s->n_params * sizeof(float)) == 0,
			  "%s weights changed in the round trip", mb_sae_arch_name(archs[a]));
		/* SAELens's tensor names and shapes. */
		char path[256];
		mb_safetensors *st;
		snprintf(path, sizeof(path), "%s/sae_weights.safetensors", dir);
		cr_assert_eq(mb_safetensors_open(&st, path, &err), 0, "%s", err.msg);
		const mb_st_tensor *we = mb_safetensors_find(st, "W_enc");
		const mb_st_tensor *wd = mb_safetensors_find(st, "W_dec");
		cr_assert(we && wd);
		cr_expect(we->shape[0] == 5 && we->shape[1] == 9 && wd->shape[0] == 9 &&
			  wd->shape[1] == 5);
		cr_expect_eq(mb_safetensors_find(st, "threshold") != NULL, a == 2);
		mb_safetensors_free(st);
		mb_sae_free(s);
		mb_sae_free(t);
	}
}

Test(sae, reads_the_older_flat_saelens_config)
{
	char dir[64];
	mb_error err;
	mb_sae *s = random_sae(MB_SAE_TOPK, 4, 6, 2, 5), *t;
	tmpdir(dir, sizeof(dir));
	cr_assert_eq(mb_sae_save(s, dir, &err), 0, "%s", err.msg);
	write_text(dir, "cfg.json",
		   "{\"d_in\": 4, \"d_sae\": 6, \"dtype\": \"float32\", \"model_name\": \"gpt2-small\","
		   " \"hook_point\": \"blocks.8.hook_resid_pre\", \"hook_point_head_index\": null,"
		   " \"activation_fn_str\": \"topk\", \"activation_fn_kwargs\": {\"k\": 2},"
		   " \"normalize_activations\": false, \"context_size\": 128,"
		   " \"apply_b_dec_to_input\": true, \"finetuning_scaling_factor\": false,"
		   " \"sae_lens_training_version\": \"3.0.0\"}\n");
	cr_assert_eq(mb_sae_load(&t, dir, &err), 0, "%s", err.msg);
	cr_expect_eq(t->arch, MB_SAE_TOPK);
	cr_expect_eq(t->k, 2);
	cr_expect_str_eq(t->hook_name, "blocks.8.hook_resid_pre");
	cr_expect_eq(t->context_size, 128);
	mb_sae_free(t);
	write_text(dir, "cfg.json",
		   "{\"d_in\": 4, \"d_sae\": 6, \"hook_name\": \"blocks.0.hook_resid_pre\"}\n");
	cr_assert_eq(mb_sae_load(&t, dir, &err), 0, "%s", err.msg);
	cr_expect_eq(t->arch, MB_SAE_RELU, "no architecture means standard");
	cr_expect_eq(t->apply_b_dec_to_input, 1, "SAELens's default");
	mb_sae_free(t);
	mb_sae_free(s);
}

/* Malformed configs: each one error line naming the file and the field. */
Test(sae, every_malformed_config_is_one_error_naming_file_and_field)
{
	static const char *cases[][2] = {
		{"{\"d_sae\": 6}", "d_in"},
		{"{\"d_in\": 4, \"d_sae\": 0}", "d_sae"},
		{"{\"d_in\": 4, \"d_sae\": 6, \"architecture\": \"gated\"}", "architecture"},
		{"{\"d_in\": 4, \"d_sae\": 6, \"architecture\": \"topk\"}", "k"},
		{"{\"d_in\": 4, \"d_sae\": 6, \"architecture\": \"topk\", \"k\": 7}", "k"},
		{"{\"d_in\": 4, \"d_sae\": 6, \"normalize_activations\": \"expected_average_only_in\"}",
		 "normalize_activations"},
		{"{\"d_in\": 4, \"d_sae\": 6, \"metadata\": {\"hook_head_index\": 3}}",
		 "metadata.hook_head_index"},
		{"{\"d_in\": 4, \"d_sae\": 6, \"finetuning_scaling_factor\": true}",
		 "finetuning_scaling_factor"},
		{"{\"d_in\": 4, \"d_sae\": 6, \"apply_b_dec_to_input\": \"yes\"}",
		 "apply_b_dec_to_input"},
		{"{\"d_in\": 4, \"d_sae\": 6, \"activation_fn_str\": \"tanh\"}", "activation_fn_str"},
		{"[1, 2]", "object"},
		{"{\"d_in\": 4,", "cfg.json:"},
	};
	char dir[64];
	mb_error err;
	mb_sae *s = random_sae(MB_SAE_RELU, 4, 6, 0, 5), *t = NULL;
	tmpdir(dir, sizeof(dir));
	cr_assert_eq(mb_sae_save(s, dir, &err), 0, "%s", err.msg);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_text(dir, "cfg.json", cases[i][0]);
		int rc = mb_sae_load(&t, dir, &err);
		cr_expect(rc < 0, "case %zu (%s) was accepted", i, cases[i][0]);
		cr_expect(strstr(err.msg, "cfg.json") != NULL, "case %zu: no file in '%s'", i, err.msg);
		cr_expect(strstr(err.msg, cases[i][1]) != NULL, "case %zu: no '%s' in '%s'", i,
			  cases[i][1], err.msg);
		cr_expect(strchr(err.msg, '\n') == NULL);
		cr_expect_null(t);
	}
	mb_sae_free(s);
}

/* Malformed weights: missing, misshapen, unknown or non-finite tensors. */
Test(sae, every_malformed_weights_file_is_one_error_naming_the_tensor)
{
	char dir[64], path[256];
	mb_error err;
	mb_sae *s = random_sae(MB_SAE_RELU, 4, 6, 0, 5), *t = NULL;
	float w46[24] = {0}, w64[24] = {0}, b6[6] = {0}, b4[4] = {0}, b5[5] = {0};
	struct {
		mb_st_entry e[5];
		size_t n;
		const char *want;
	} cases[] = {
		{{{"W_enc", 2, {4, 6}, w46}, {"b_enc", 1, {6}, b6}, {"W_dec", 2, {6, 4}, w64}}, 3,
		 "'b_dec' is missing"},
		{{{"W_enc", 2, {6, 4}, w46}, {"b_enc", 1, {6}, b6}, {"W_dec", 2, {6, 4}, w64},
		  {"b_dec", 1, {4}, b4}},
		 4, "'W_enc': shape (6, 4), expected (4, 6)"},
		{{{"W_enc", 2, {4, 6}, w46}, {"b_enc", 1, {5}, b5}, {"W_dec", 2, {6, 4}, w64},
		  {"b_dec", 1, {4}, b4}},
		 4, "'b_enc': shape (5)"},
		{{{"W_enc", 2, {4, 6}, w46}, {"b_enc", 1, {6}, b6}, {"W_dec", 2, {6, 4}, w64},
		  {"b_dec", 1, {4}, b4}, {"log_threshold", 1, {6}, b6}},
		 5, "'log_threshold': not part of a standard SAE"},
		{{{"W_enc", 2, {4, 6}, w46}, {"b_enc", 1, {6}, b6}, {"W_dec", 2, {6, 4}, w64},
		  {"b_dec", 1, {4}, b4}, {"scaling_factor", 1, {6}, b6}},
		 5, "'scaling_factor'"},
		{{{"W_enc", 2, {4, 6}, w46}, {"b_enc", 1, {6}, b6}, {"W_dec", 2, {6, 4}, w64},
		  {"b_dec", 1, {4}, b4}},
		 4, "'W_dec': element 7 is NaN"},
	};
	tmpdir(dir, sizeof(dir));
	cr_assert_eq(mb_sae_save(s, dir, &err), 0, "%s", err.msg);
	snprintf(path, sizeof(path), "%s/sae_weights.safetensors", dir);
	const size_t ncases = sizeof(cases) / sizeof(cases[0]);
	for (size_t i = 0; i < ncases; i++) {
		/* The last case: a NaN in W_dec. */
		w64[7] = i == ncases - 1 ? NAN : 0.0f;
		cr_assert_eq(mb_safetensors_write_f32(path, cases[i].e, cases[i].n, NULL, &err), 0,
			     "%s", err.msg);
		int rc = mb_sae_load(&t, dir, &err);
		cr_expect(rc < 0, "case %zu was accepted", i);
		cr_expect(strstr(err.msg, "sae_weights.safetensors") != NULL, "case %zu: '%s'", i,
			  err.msg);
		cr_expect(strstr(err.msg, cases[i].want) != NULL, "case %zu: no '%s' in '%s'", i,
			  cases[i].want, err.msg);
		cr_expect_null(t);
	}
	/* A scaling_factor of ones is accepted, as SAELens does. */
	for (int i = 0; i < 6; i++)
		b6[i] = 1.0f;
	w64[7] = 0.0f;
	cr_assert_eq(mb_safetensors_write_f32(path, cases[4].e, cases[4].n, NULL, &err), 0);
	cr_expect_eq(mb_sae_load(&t, dir, &err), 0, "%s", err.msg);
	mb_sae_free(t);
	rmdir(dir);
	mb_sae_free(s);
}

Test(sae, recovery_scores_a_known_dictionary)
{
	/* Decoder rows: e0, e1, (e2 + 0.2 e3) normalised; truth: e0, e1, e2, e3. */
	mb_sae *s;
	mb_error err;
	cr_assert_eq(mb_sae_init(&s, MB_SAE_RELU, 4, 3, 0, &err), 0);
	s->W_dec[0] = 2.0f;
	s->W_dec[4 + 1] = -1.0f;
	s->W_dec[8 + 2] = 1.0f;
	s->W_dec[8 + 3] = 0.2f;
	float truth[16] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
	double mmcs, rec, mc[4];
	cr_assert_eq(mb_sae_recovery(&mmcs, &rec, mc, s, truth, 4, &err), 0);
	double t3 = (double)0.2f, c2 = 1.0 / sqrt(1.0 + t3 * t3), c3 = t3 / sqrt(1.0 + t3 * t3);
	cr_expect_float_eq(mc[0], 1.0, 1e-12);
	cr_expect_float_eq(mc[1], 0.0, 1e-12, "the sign matters: -e1 is not e1");
	cr_expect_float_eq(mc[2], c2, 1e-12);
	cr_expect_float_eq(mc[3], c3, 1e-12);
	cr_expect_float_eq(mmcs, (1.0 + 0.0 + c2 + c3) / 4, 1e-12);
	cr_expect_float_eq(rec, 0.5, 1e-12);
	mb_sae_free(s);
}

Test(sae, metrics_match_their_definitions_on_a_small_batch)
{
	/* Identity-like SAE on D = 2: W_enc = W_dec = I, b = 0, ReLU: x_hat =
	 * ReLU(x). Rows (1, 2), (-1, 3), (2, -2), (0, 0). */
	mb_sae *s;
	mb_sae_work w;
	mb_sae_stats st;
	mb_sae_stats_result r;
	mb_error err;
	cr_assert_eq(mb_sae_init(&s, MB_SAE_RELU, 2, 2, 0, &err), 0);
	s->apply_b_dec_to_input = 0;
	s->W_enc[0] = s->W_enc[3] = 1.0f;
	s->W_dec[0] = s->W_dec[3] = 1.0f;
	float x[8] = {1, 2, -1, 3, 2, -2, 0, 0};
	cr_assert_eq(mb_sae_work_init(&w, s, 4, 0, &err), 0);
	cr_assert_eq(mb_sae_stats_init(&st, 2, 2, &err), 0);
	mb_sae_forward(s, &w, x, 4);
	mb_sae_stats_add(&st, &w, x, 4);
	mb_sae_stats_finish(&r, &st);
	/* L0: 2, 1, 1, 0 -> 1.0; SSE: 0, 1, 4, 0 -> MSE 5 / 8. */
	cr_expect_float_eq(r.l0, 1.0, 1e-12);
	cr_expect_float_eq(r.mse, 5.0 / 8.0, 1e-12);
	/* Total variance: E|x|^2 = (5 + 10 + 8 + 0) / 4 = 5.75, mean (0.5, 0.75),
	 * |mean|^2 = 0.8125; FVE = 1 - (5 / 4) / 4.9375. */
	cr_expect_float_eq(r.fve, 1.0 - 1.25 / 4.9375, 1e-12);
	/* cos: 1, 3 / sqrt(10), 2 / sqrt(8), 1 (both zero). */
	cr_expect_float_eq(r.cos, (1.0 + 3.0 / sqrt(10.0) + 2.0 / sqrt(8.0) + 1.0) / 4, 1e-12);
	cr_expect_float_eq(r.dead, 0.0, 1e-12);
	cr_expect_float_eq(r.dense, 1.0, 1e-12, "both latents fire on > 10%% of rows");
	mb_sae_stats_dispose(&st);
	mb_sae_work_dispose(&w);
	mb_sae_free(s);
}

Test(sae, auroc_and_f1_match_hand_computed_values)
{
	/* Scores 0.1 0.4 0.35 0.8 with labels 0 0 1 1: of the 4 (pos, neg) pairs,
	 * 3 rank the positive higher: 0.75. Ties count one half. */
	float sc[4] = {0.1f, 0.4f, 0.35f, 0.8f};
	uint8_t lab[12] = {0, 0, 1, 1, /* */ 1, 1, 0, 0, /* */ 1, 1, 1, 1};
	double au[3];
	mb_error err;
	cr_assert_eq(mb_sae_auroc(au, sc, 1, lab, 3, 4, &err), 0);
	cr_expect_float_eq(au[0], 0.75, 1e-15);
	cr_expect_float_eq(au[1], 0.25, 1e-15);
	cr_expect(isnan(au[2]), "one class only: undefined");
	float tied[4] = {1, 1, 0, 0};
	uint8_t lt[4] = {1, 0, 1, 0};
	cr_assert_eq(mb_sae_auroc(au, tied, 1, lt, 1, 4, &err), 0);
	cr_expect_float_eq(au[0], 0.5, 1e-15);
	/* A strided column: scores of column 1 of a (4, 2) matrix. */
	float m[8] = {9, 0.1f, 9, 0.4f, 9, 0.35f, 9, 0.8f};
	cr_assert_eq(mb_sae_auroc(au, m + 1, 2, lab, 1, 4, &err), 0);
	cr_expect_float_eq(au[0], 0.75, 1e-15);
	/* F1 of "fires": scores 0 1 2 0 vs labels 1 1 0 0: TP 1, FP 1, FN 1. */
	float f[4] = {0, 1, 2, 0};
	uint8_t lf[4] = {1, 1, 0, 0};
	cr_expect_float_eq(mb_sae_f1(f, 1, lf, 4), 0.5, 1e-15);
	/* A row mask (S: skipped): labels 0 S 1 1 leave 0.4 out, so the
	 * positives 0.35 and 0.8 both beat 0.1: 1 (0.75 with 0.4 counted);
	 * labels 1 0 S 0: the positive 0.1 against 0.4 and 0.8: 0. */
	uint8_t lm[8] = {0, MB_SAE_LABEL_SKIP, 1, 1, /* */ 1, 0, MB_SAE_LABEL_SKIP, 0};
	cr_assert_eq(mb_sae_auroc(au, sc, 1, lm, 2, 4, &err), 0);
	cr_expect_float_eq(au[0], 1.0, 1e-15);
	cr_expect_float_eq(au[1], 0.0, 1e-15);
	/* F1 with a skipped row: scores 0 1 2 0, labels 1 S 0 0: TP 0 -> 0; labels
	 * S 1 0 1: TP 1, FP 1, FN 1. */
	uint8_t lf2[4] = {MB_SAE_LABEL_SKIP, 1, 0, 1};
	cr_expect_float_eq(mb_sae_f1(f, 1, lf2, 4), 0.5, 1e-15);
}

/* The masked AUROC against a second implementation: the share of (positive,
 * negative) pairs of counted rows that rank the positive higher, ties one
 * half, over random scores with many ties and random masks. */
Test(sae, masked_auroc_matches_pair_counting)
{
	enum { N = 300, L = 4 };
	float sc[N];
	uint8_t lab[L * N];
	double au[L];
	mb_error err;
	mb_rng r;
	mb_rng_init_named(&r, 5, "test/sae/auroc", 0);
	for (int i = 0; i < N; i++)
		sc[i] = (float)mb_rng_range(&r, 20); /* ties */
	for (int i = 0; i < L * N; i++)
		lab[i] = (uint8_t)mb_rng_range(&r, 3); /* 0, 1 or skipped */
	cr_assert_eq(mb_sae_auroc(au, sc, 1, lab, L, N, &err), 0);
	for (int v = 0; v < L; v++) {
		double wins = 0, pairs = 0;
		for (int i = 0; i < N; i++)
			for (int j = 0; j < N; j++)
				if (lab[v * N + i] == 1 && lab[v * N + j] == 0) {
					pairs += 1;
					wins += sc[i] > sc[j] ? 1.0 : sc[i] == sc[j] ? 0.5 : 0.0;
				}
		cr_expect_float_eq(au[v], wins / pairs, 1e-12, "label %d: %.15f vs %.15f", v, au[v],
				   wins / pairs);
	}
}
