/* AdamW, warmup and clipping against torch.optim.AdamW and
 * torch.nn.utils.clip_grad_norm_ (tests/fixtures/train/gen_adamw.py). */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/adamw.h>
#include <mechbench/json.h>
#include <mechbench/npy.h>

#define FIX MB_SOURCE_DIR "/tests/fixtures/train/"

static void load(mb_npy *a, const char *cs, const char *file)
{
	char path[512];
	mb_error err;
	snprintf(path, sizeof(path), FIX "adamw_%s/%s", cs, file);
	cr_assert_eq(mb_npy_read(a, path, &err), 0, "%s", err.msg);
}

static double num(const mb_json_doc *doc, const char *key)
{
	double v = 0;
	mb_error err;
	cr_assert_eq(mb_json_get_number(doc, doc->root, "", key, 1, &v, &err), 0, "%s", err.msg);
	return v;
}

/* Replays one fixture case; returns the max abs difference of the parameters
 * over all steps. Tolerance: torch's vectorised kernels contract a + alpha * b
 * into an FMA where our portable C rounds twice, so steps differ by an ulp or
 * so; 1e-6 absolute on parameters of magnitude <= 2 is ~8 ulps (measured: <= 2 ulps). */
static void replay(const char *cs)
{
	char path[512];
	mb_json_doc doc;
	mb_error err;
	mb_npy p0, g, want, wm, wv, wn;
	mb_adamw opt;
	mb_adamw_config cfg;

	snprintf(path, sizeof(path), FIX "adamw_%s/case.json", cs);
	cr_assert_eq(mb_json_doc_load(&doc, path, &err), 0, "%s", err.msg);
	cfg.lr = num(&doc, "lr");
	cfg.beta1 = num(&doc, "beta1");
	cfg.beta2 = num(&doc, "beta2");
	cfg.eps = num(&doc, "eps");
	cfg.weight_decay = num(&doc, "weight_decay");
	int64_t warmup = (int64_t)num(&doc, "warmup_steps");
	double clip = num(&doc, "clip_norm");
	load(&p0, cs, "params0.npy");
	load(&g, cs, "grads.npy");
	load(&want, cs, "params.npy");
	load(&wm, cs, "m.npy");
	load(&wv, cs, "v.npy");
	load(&wn, cs, "norms.npy");
	size_t n = p0.numel, steps = (size_t)g.shape[0];
	cr_assert_eq(mb_adamw_init(&opt, n, &cfg, &err), 0, "%s", err.msg);
	float *p = malloc(n * sizeof(float)), *gs = malloc(n * sizeof(float));
	memcpy(p, p0.data, n * sizeof(float));
	double maxd = 0, maxnorm = 0;
	for (size_t s = 0; s < steps; s++) {
		memcpy(gs, (float *)g.data + s * n, n * sizeof(float));
		if (clip > 0) {
			double norm = mb_grad_clip(gs, n, clip);
			double wantn = ((double *)wn.data)[s];
			maxnorm = fmax(maxnorm, fabs(norm - wantn) / wantn);
		}
		mb_adamw_step(&opt, p, gs, mb_lr_warmup(cfg.lr, (int64_t)s + 1, warmup));
		const float *w = (const float *)want.data + s * n;
		for (size_t i = 0; i < n; i++)
			maxd = fmax(maxd, fabs((double)p[i] - w[i]));
	}
	double dm = 0, dv = 0;
	for (size_t i = 0; i < n; i++) {
		dm = fmax(dm, fabs((double)opt.m[i] - ((float *)wm.data)[i]));
		dv = fmax(dv, fabs((double)opt.v[i] - ((float *)wv.data)[i]) /
				      fmax(1e-12, ((float *)wv.data)[i]));
	}
	printf("adamw %s: %zu steps, max |param - torch| %.3g, |m| %.3g, rel |v| %.3g, "
	       "rel |norm| %.3g\n", cs, steps, maxd, dm, dv, maxnorm);
	cr_expect_leq(maxd, 1e-6, "%s: params differ from torch by %g", cs, maxd);
	cr_expect_leq(dm, 1e-6, "%s: exp_avg differs by %g", cs, dm);
	cr_expect_leq(dv, 2e-6, "%s: exp_avg_sq differs by %g (relative)", cs, dv);
	cr_expect_leq(maxnorm, 1e-6, "%s: clip norm differs by %g (relative)", cs, maxnorm);
	cr_expect_eq(opt.step, (int64_t)steps);
	free(p);
	free(gs);
	mb_adamw_dispose(&opt);
	mb_npy_dispose(&p0);
	mb_npy_dispose(&g);
	mb_npy_dispose(&want);
	mb_npy_dispose(&wm);
	mb_npy_dispose(&wv);
	mb_npy_dispose(&wn);
	mb_json_doc_dispose(&doc);
}

Test(adamw, matches_torch_with_default_settings) { replay("default"); }
Test(adamw, matches_torch_with_nanda_grokking_settings_and_warmup) { replay("nanda"); }
Test(adamw, matches_torch_with_warmup_and_global_norm_clipping) { replay("clip_warmup"); }

Test(adamw, warmup_is_linear_from_the_first_step_then_constant)
{
	cr_expect_float_eq(mb_lr_warmup(1e-3, 1, 10), 1e-4, 1e-18);
	cr_expect_float_eq(mb_lr_warmup(1e-3, 5, 10), 5e-4, 1e-18);
	cr_expect_float_eq(mb_lr_warmup(1e-3, 10, 10), 1e-3, 1e-18);
	cr_expect_float_eq(mb_lr_warmup(1e-3, 11, 10), 1e-3, 1e-18);
	cr_expect_float_eq(mb_lr_warmup(1e-3, 1, 0), 1e-3, 1e-18);
}

Test(adamw, rejects_bad_settings_naming_the_field)
{
	mb_adamw opt;
	mb_error err;
	mb_adamw_config c = mb_adamw_default_config();
	c.beta2 = 1.0;
	cr_expect_eq(mb_adamw_init(&opt, 10, &c, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "beta2"), "%s", err.msg);
	c = mb_adamw_default_config();
	c.lr = NAN;
	cr_expect_eq(mb_adamw_config_check(&c, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "lr"), "%s", err.msg);
	c = mb_adamw_default_config();
	c.weight_decay = -1;
	cr_expect_eq(mb_adamw_config_check(&c, &err), MB_EINVALID);
	cr_expect(strstr(err.msg, "weight_decay"), "%s", err.msg);
}

/* The update is elementwise and the norm sums fixed chunks in order: the bits
 * do not depend on the thread count. */
Test(adamw, step_and_norm_are_bitwise_the_same_on_one_and_two_threads)
{
	const size_t n = 100003;
	float *p[2], *g = malloc(n * sizeof(float));
	double norm[2];
	mb_error err;
	mb_adamw_config c = mb_adamw_default_config();
	for (size_t i = 0; i < n; i++)
		g[i] = (float)sin((double)i * 0.37) * (float)(1 + i % 7);
	for (int t = 0; t < 2; t++) {
		mb_adamw opt;
		omp_set_num_threads(t + 1);
		p[t] = malloc(n * sizeof(float));
		for (size_t i = 0; i < n; i++)
			p[t][i] = (float)cos((double)i);
		cr_assert_eq(mb_adamw_init(&opt, n, &c, &err), 0);
		for (int s = 0; s < 3; s++)
			mb_adamw_step(&opt, p[t], g, 1e-3);
		norm[t] = mb_grad_norm(g, n);
		mb_adamw_dispose(&opt);
	}
	cr_expect(memcmp(p[0], p[1], n * sizeof(float)) == 0);
	cr_expect(memcmp(&norm[0], &norm[1], sizeof(double)) == 0, "%.17g vs %.17g", norm[0],
		  norm[1]);
	free(p[0]);
	free(p[1]);
	free(g);
}
