/* The causal battery per feature (sae.h, sae_verdict.h) on the committed zoo
 * SAE (baselines/saes/induction-resid1): a topic feature passes; an arm
 * checked against a second implementation written here (the SAE spliced in
 * as x_hat(f') + (x - x_hat(f)), libm softmax); a mislabelled feature fails;
 * a planted feature whose decoder direction is random (a large edit that is
 * about nothing) fails because its random-direction control does as much,
 * and that control is itself clearly nonzero: the control can fail a
 * feature; its clamp raises the absolute log-mass of an absent topic a lot
 * but the relative steering readout (version 2) hardly moves, and the real
 * feature's steering control stays near 0. Steering checked against a
 * second implementation of the relative readout. Verdicts on made-up
 * effects: BH, n < 2, pass fraction; the Wilson interval against the
 * score test it inverts. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/effect.h>
#include <mechbench/engine.h>
#include <mechbench/model.h>
#include <mechbench/rng.h>
#include <mechbench/sae.h>
#include <mechbench/sae_train.h>
#include <mechbench/sae_verdict.h>
#include <mechbench/zoo.h>

#define INDUCTION MB_SOURCE_DIR "/baselines/models/induction"
#define SAE_DIR MB_SOURCE_DIR "/baselines/saes/induction-resid1"
#define NPER 12 /* items with the topic and without it */

typedef struct fixture {
	mb_model *m;
	mb_sae *s;
	mb_hook_point point;
	mb_engine *e;
	mb_sae_topic_features tf;
	const mb_zoo_recipe *r;
	mb_sae_corpus *c;
	int T;
	int32_t tok[2 * NPER * 64];
	uint8_t present[8 * 2 * NPER]; /* (K, n) every topic's presence */
	uint8_t absent[8];             /* the topics absent on item NPER */
} fixture;

/* NPER held-out sequences of topic `topic` then NPER of other topics
 * ("induction/eval" from index 512: past the labelling sequences). */
static void setup(fixture *f, int topic)
{
	mb_error err;
	mb_engine_opts eo;
	memset(f, 0, sizeof(*f));
	cr_assert_eq(mb_model_load(&f->m, INDUCTION, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_sae_load(&f->s, SAE_DIR, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_hook_parse(&f->point, f->s->hook_name, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_sae_corpus_open_zoo(&f->c, INDUCTION, 0, &err), 0, "%s", err.msg);
	f->r = mb_sae_corpus_recipe(f->c);
	f->T = f->r->n_positions;
	cr_assert_eq(f->T, 64);
	cr_assert_eq(mb_sae_topic_features_init(&f->tf, f->m, f->s, f->point, f->r, 64, &err), 0,
		     "%s", err.msg);
	int np = 0, na = 0;
	for (uint64_t i = 512; np < NPER || na < NPER; i++) {
		int32_t t[64];
		mb_zoo_segment seg;
		mb_zoo_induction_sequence(t, &seg, f->r, "induction/eval", i);
		int want = seg.topic == topic;
		int *cnt = want ? &np : &na;
		if (*cnt >= NPER)
			continue;
		int at = want ? np : NPER + na;
		memcpy(f->tok + (size_t)at * 64, t, sizeof(t));
		f->present[(size_t)seg.topic * 2 * NPER + (size_t)at] = 1;
		(*cnt)++;
	}
	cr_assert_eq(f->tf.n, 8);
	for (int k = 0; k < 8; k++)
		f->absent[k] = f->present[(size_t)k * 2 * NPER + NPER] == 0;
	memset(&eo, 0, sizeof(eo));
	eo.max_batch = 2 * NPER;
	eo.max_seq = 64;
	cr_assert_eq(mb_engine_init(&f->e, &f->m->cfg, &f->m->w, &eo, &err), 0, "%s", err.msg);
}

static void teardown(fixture *f)
{
	mb_sae_topic_features_dispose(&f->tf);
	mb_engine_free(f->e);
	mb_sae_corpus_free(f->c);
	mb_sae_free(f->s);
	mb_model_free(f->m);
}

static void run_one(fixture *f, const mb_sae *s, mb_sae_feature ft, mb_sae_battery *b,
		    mb_sae_verdict *v, double steer_k)
{
	mb_error err;
	const mb_sae_labels lab = {f->tf.n, f->tf.readout, f->present};
	cr_assert_eq(mb_sae_battery_run(b, f->e, s, f->point, f->tok, 2 * NPER, f->T, 2 * NPER,
					NULL, &lab, &ft, 1, steer_k, 7, &err),
		     0, "%s", err.msg);
	cr_assert_eq(mb_sae_verdicts(v, NULL, b, 0.95, 0.05, &err), 0, "%s", err.msg);
}

/* The second implementation: latent j set to `value` through a full decode. */
typedef struct manual {
	const mb_sae *s;
	mb_sae_work *w;
	float *rows;
	int j;
	float value;
} manual;

static int manual_hook(const mb_hook_tensor *t, void *payload, mb_error *err)
{
	manual *m = payload;
	const int D = m->s->d_in;
	int n;
	if (mb_sae_rows_gather(m->rows, &n, t, D, err) < 0)
		return -1;
	mb_sae_forward(m->s, m->w, m->rows, n);
	for (int r = 0; r < n; r++) {
		float *x = t->data + (size_t)r * D; /* every position valid */
		for (int i = 0; i < D; i++) {
			double h = m->s->b_dec[i];
			for (int e = 0; e < m->w->nnz[r]; e++) {
				int j = m->w->idx[(size_t)r * m->w->cap + e];
				if (j != m->j)
					h += (double)m->w->val[(size_t)r * m->w->cap + e] *
					     m->s->W_dec[(size_t)j * D + i];
			}
			h += (double)m->value * m->s->W_dec[(size_t)m->j * D + i];
			x[i] = (float)(h + ((double)m->rows[(size_t)r * D + i] -
					    m->w->x_hat[(size_t)r * D + i]));
		}
	}
	return 0;
}

static double readout_libm(const float *z, int V, const uint8_t *mask)
{
	double mx = -INFINITY, s = 0, ss = 0;
	for (int v = 0; v < V; v++)
		mx = z[v] > mx ? z[v] : mx;
	for (int v = 0; v < V; v++) {
		s += exp(z[v] - mx);
		ss += mask[v] ? exp(z[v] - mx) : 0;
	}
	return log(ss / s);
}

/* rel (sae.h) of batch row b of the engine's last run: mean over t of
 * L_k - mean over the absent h != k of L_h, with libm. */
static double rel_libm(const fixture *f, int b, int k)
{
	const int V = f->m->cfg.n_vocab;
	double s = 0;
	for (int t = 0; t < f->T; t++) {
		const float *z = mb_engine_logits_row(f->e, b, t);
		double o = 0;
		int np = 0;
		for (int h = 0; h < 8; h++)
			if (h != k && f->absent[h]) {
				o += readout_libm(z, V, f->tf.readout + (size_t)h * V);
				np++;
			}
		s += readout_libm(z, V, f->tf.readout + (size_t)k * V) - o / np;
	}
	return s / f->T;
}

/* Item `item` alone through the engine, with latent j of s set to value
 * through the full decode when s is set; returns the engine (its logits). */
static void run_item(fixture *f, const mb_sae *s, int j, float value, int item)
{
	mb_error err;
	mb_sae_work w;
	mb_hooks *h;
	float rows[64 * 64];
	manual mm = {s, &w, rows, j, value};
	mb_run run;
	memset(&run, 0, sizeof(run));
	run.batch = 1;
	run.seq = f->T;
	run.tokens = f->tok + (size_t)item * f->T;
	run.logits = MB_LOGITS_ALL;
	cr_assert_eq(mb_hooks_init(&h, &err), 0);
	if (s) {
		cr_assert_eq(mb_sae_work_init(&w, s, f->T, 0, &err), 0);
		cr_assert_eq(mb_hooks_add(h, f->point, manual_hook, &mm, 0, &err), 0);
		run.hooks = h;
	}
	cr_assert_eq(mb_engine_forward(f->e, &run, &err), 0, "%s", err.msg);
	if (s)
		mb_sae_work_dispose(&w);
	mb_hooks_free(h);
}

Test(sae_battery, a_topic_feature_passes_and_its_necessity_matches_a_full_decode)
{
	fixture f;
	mb_sae_battery b;
	mb_sae_verdict v;
	setup(&f, 0);
	const mb_sae_feature ft = f.tf.features[0];
	cr_assert(ft.latent >= 0 && ft.max_act > 0);
	run_one(&f, f.s, ft, &b, &v, 4.0);
	cr_expect_eq(v.necessity.n, NPER);
	cr_expect_eq(v.steering.n, NPER);
	cr_expect(v.pass, "topic=0 latent %d: necessity %g (control %g, q %g), steering %g "
		  "(control %g, q %g)",
		  ft.latent, v.necessity.mean, v.necessity_control.mean, v.q_necessity,
		  v.steering.mean, v.steering_control.mean, v.q_steering);
	cr_expect(v.necessity_excess.lo > 0 && v.steering_excess.lo > 0);
	cr_expect(fabs(v.selectivity.mean) < v.necessity.mean, "selectivity %g vs necessity %g",
		  v.selectivity.mean, v.necessity.mean);
	cr_expect(v.collateral.mean > 0 && isfinite(v.collateral.hi));

	/* Item 0 (topic 0): necessity again, by a full decode without latent j. */
	const int V = f.m->cfg.n_vocab, T = f.T;
	const uint8_t *ro = f.tf.readout;
	double rc = 0, ra = 0;
	run_item(&f, NULL, 0, 0, 0);
	for (int t = 0; t < T; t++)
		rc += readout_libm(mb_engine_logits_row(f.e, 0, t), V, ro);
	run_item(&f, f.s, ft.latent, 0.0f, 0);
	for (int t = 0; t < T; t++)
		ra += readout_libm(mb_engine_logits_row(f.e, 0, t), V, ro);
	double want = (rc - ra) / T;
	cr_expect(fabs(b.necessity[0] - want) < 1e-4 * (1 + fabs(want)),
		  "necessity of item 0: battery %.8g, full decode %.8g", b.necessity[0], want);
	cr_expect(fabs(want) > 1e-3, "the ablation moved nothing (%g)", want);
	/* Item NPER (another topic): steering, the relative readout with the
	 * latent clamped to 4 max by a full decode. */
	run_item(&f, NULL, 0, 0, NPER);
	double r0 = rel_libm(&f, 0, 0);
	run_item(&f, f.s, ft.latent, (float)(4.0 * ft.max_act), NPER);
	double r1 = rel_libm(&f, 0, 0);
	cr_expect(fabs(b.steering[NPER] - (r1 - r0)) < 1e-4 * (1 + fabs(r1 - r0)),
		  "steering of item %d: battery %.8g, full decode %.8g", NPER, b.steering[NPER],
		  r1 - r0);
	/* The random-direction control of the real feature stays near 0. */
	cr_expect(fabs(v.steering_control.mean) < 0.1 * v.steering.mean,
		  "steering control %g against steering %g", v.steering_control.mean,
		  v.steering.mean);
	mb_sae_battery_dispose(&b);
	teardown(&f);
}

Test(sae_battery, a_mislabelled_feature_fails)
{
	fixture f;
	mb_sae_battery b;
	mb_sae_verdict v;
	setup(&f, 0);
	/* Topic 1's latent, judged against topic 0's label and readout. */
	mb_sae_feature ft = f.tf.features[0];
	ft.latent = f.tf.features[1].latent;
	ft.max_act = f.tf.features[1].max_act;
	cr_assert_neq(ft.latent, f.tf.features[0].latent);
	run_one(&f, f.s, ft, &b, &v, 4.0);
	cr_expect(!v.pass, "latent %d passed as topic 0: necessity excess %g (q %g), steering "
		  "excess %g (q %g)",
		  ft.latent, v.necessity_excess.mean, v.q_necessity, v.steering_excess.mean,
		  v.q_steering);
	mb_sae_battery_dispose(&b);
	teardown(&f);
}

Test(sae_battery, a_planted_random_direction_fails_on_its_controls_and_steers_nothing)
{
	fixture f;
	mb_sae_battery b, b0;
	mb_sae_verdict v, v0;
	mb_error err;
	mb_sae *p;
	setup(&f, 0);
	const mb_sae_feature ft = f.tf.features[0];
	const int D = f.s->d_in, j = ft.latent, V = f.m->cfg.n_vocab, T = f.T;
	/* The same encoder (it fires where topic 0's latent fires), but its
	 * decoder row a random direction 8 times as long: a big edit about
	 * nothing. */
	cr_assert_eq(mb_sae_init(&p, f.s->arch, D, f.s->d_sae, f.s->k, &err), 0);
	memcpy(p->params, f.s->params, f.s->n_params * sizeof(float));
	p->apply_b_dec_to_input = f.s->apply_b_dec_to_input;
	double nrm = 0;
	for (int i = 0; i < D; i++)
		nrm += (double)f.s->W_dec[(size_t)j * D + i] * f.s->W_dec[(size_t)j * D + i];
	mb_rng r;
	mb_rng_init_named(&r, 99, "test/planted", 0);
	mb_effect_control_direction(p->W_dec + (size_t)j * D, &r, D, 8 * sqrt(nrm));
	run_one(&f, p, ft, &b, &v, 4.0);
	cr_expect(!v.pass, "the planted direction passed: necessity excess %g (q %g), steering "
		  "excess %g (q %g)",
		  v.necessity_excess.mean, v.q_necessity, v.steering_excess.mean, v.q_steering);
	/* Its ablation does move the readout; so does the control, as much,
	 * which is why it fails: the control can fail a feature. */
	cr_expect(v.necessity.lo > 0 && v.necessity_excess.lo < 0 && v.necessity_excess.hi > 0,
		  "planted necessity %g [%g, %g], excess over its control %g [%g, %g]",
		  v.necessity.mean, v.necessity.lo, v.necessity.hi, v.necessity_excess.mean,
		  v.necessity_excess.lo, v.necessity_excess.hi);
	/* The clamp flattens the distribution: topic 0's absolute log-mass on an
	 * item of another topic rises by far more than the relative readout
	 * moves (the steering control of version 1 was this rise). */
	double a0 = 0, a1 = 0;
	run_item(&f, NULL, 0, 0, NPER);
	for (int t = 0; t < T; t++)
		a0 += readout_libm(mb_engine_logits_row(f.e, 0, t), V, f.tf.readout);
	run_item(&f, p, j, (float)(4.0 * ft.max_act), NPER);
	for (int t = 0; t < T; t++)
		a1 += readout_libm(mb_engine_logits_row(f.e, 0, t), V, f.tf.readout);
	const double rise = (a1 - a0) / T;
	cr_expect(rise > 1.0, "item %d: absolute rise %g", NPER, rise);
	cr_expect(fabs(v.steering.mean) < 0.25 * rise && fabs(v.steering_control.mean) < 0.25 * rise,
		  "planted steering %g, control %g (absolute rise %g)", v.steering.mean,
		  v.steering_control.mean, rise);
	/* The real feature on the same items passes (the same run as above). */
	run_one(&f, f.s, ft, &b0, &v0, 4.0);
	cr_expect(v0.pass);
	mb_sae_battery_dispose(&b);
	mb_sae_battery_dispose(&b0);
	mb_sae_free(p);
	teardown(&f);
}

Test(sae_battery, the_wilson_interval_inverts_the_score_test)
{
	/* The second implementation: the interval's ends are the roots of the
	 * score test (p - pi)^2 = z^2 pi (1 - pi) / n, found by bisection. */
	static const int cases[][2] = {{6, 8}, {8, 8}, {0, 8}, {3, 10}, {1, 2}};
	const double z = 1.959963984540054;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const int k = cases[c][0], n = cases[c][1];
		const double p = (double)k / n;
		double lo, hi, want[2];
		mb_sae_pass_interval(&lo, &hi, k, n, 0.95);
		for (int side = 0; side < 2; side++) {
			double a = side ? p : 0.0, b = side ? 1.0 : p;
			for (int it = 0; it < 200; it++) {
				double m = 0.5 * (a + b);
				double g = (p - m) * (p - m) - z * z * m * (1 - m) / n;
				/* g > 0 outside the interval */
				if ((g > 0) == (side == 0))
					a = m;
				else
					b = m;
			}
			want[side] = 0.5 * (a + b);
		}
		cr_expect(fabs(lo - want[0]) < 1e-9 && fabs(hi - want[1]) < 1e-9,
			  "%d of %d: [%.10f, %.10f], score-test roots [%.10f, %.10f]", k, n, lo, hi,
			  want[0], want[1]);
	}
	double lo, hi;
	mb_sae_pass_interval(&lo, &hi, 0, 0, 0.95);
	cr_expect(lo == 0.0 && hi == 1.0);
}

Test(sae_battery, verdicts_apply_bh_and_fail_arms_without_items)
{
	enum { F = 3, N = 6 };
	double block[8 * F * N];
	mb_sae_battery b = {F,	   N,	   block, block + F * N, block + 2 * F * N, block + 3 * F * N,
			    block + 4 * F * N, block + 5 * F * N, block + 6 * F * N,
			    block + 7 * F * N, NULL};
	mb_sae_verdict v[F];
	mb_error err;
	double frac;
	for (int i = 0; i < 8 * F * N; i++)
		block[i] = NAN;
	for (int i = 0; i < N; i++) {
		int pres = i < 3;
		for (int f = 0; f < F; f++) {
			size_t at = (size_t)f * N + i;
			double noise = 0.01 * ((i * 7 + f * 3) % 5 - 2);
			if (pres) {
				b.necessity[at] = (f == 1 ? 0.0 : 1.0) + noise;
				b.necessity_control[at] = f == 1 ? 0.0 : noise * 0.5;
			} else {
				b.selectivity[at] = noise;
				b.steering[at] = 2.0 + noise;
				b.steering_control[at] = 0.1 - noise;
				b.collateral[at] = 0.3;
			}
		}
	}
	/* Feature 2: no absent items for steering at all. */
	for (int i = 3; i < N; i++)
		b.steering[2 * N + i] = NAN;
	cr_assert_eq(mb_sae_verdicts(v, &frac, &b, 0.95, 0.05, &err), 0, "%s", err.msg);
	cr_expect(v[0].pass);
	cr_expect(!v[1].pass, "an effect of noise about 0 passed (p %g q %g)",
		  v[1].p_necessity, v[1].q_necessity);
	cr_expect(!v[2].pass && v[2].steering.n == 0 && v[2].p_steering == 1.0);
	cr_expect(fabs(frac - 1.0 / 3) < 1e-15, "%g", frac);
	for (int f = 0; f < F; f++)
		cr_expect(v[f].q_necessity >= v[f].p_necessity && v[f].q_steering >= v[f].p_steering);
	cr_expect_eq(v[0].necessity_excess.n, 3);
	cr_expect(fabs(v[0].collateral.mean - 0.3) < 1e-15);
	cr_expect(mb_sae_verdicts(v, &frac, &b, 1.5, 0.05, &err) < 0);
	cr_expect(strstr(err.msg, "level") != NULL, "%s", err.msg);
}

Test(sae_battery, bad_features_are_one_clear_error)
{
	fixture f;
	mb_sae_battery b;
	mb_error err;
	setup(&f, 0);
	mb_sae_feature ft = f.tf.features[0];
	const mb_sae_labels lab = {f.tf.n, f.tf.readout, f.present};
	ft.latent = f.s->d_sae;
	cr_expect(mb_sae_battery_run(&b, f.e, f.s, f.point, f.tok, 2, f.T, 2, NULL, &lab, &ft, 1,
				     4.0, 0, &err) < 0);
	cr_expect(strstr(err.msg, "feature 0") && strstr(err.msg, "latent 128"), "%s", err.msg);
	ft.latent = 0;
	ft.value = 8;
	cr_expect(mb_sae_battery_run(&b, f.e, f.s, f.point, f.tok, 2, f.T, 2, NULL, &lab, &ft, 1,
				     4.0, 0, &err) < 0);
	cr_expect(strstr(err.msg, "value 8") != NULL, "%s", err.msg);
	ft.value = 0;
	cr_expect(mb_sae_battery_run(&b, f.e, f.s, f.point, f.tok, 2, f.T, 2, NULL, &lab, &ft, 1,
				     0.0, 0, &err) < 0);
	cr_expect(strstr(err.msg, "steering multiple 0") != NULL, "%s", err.msg);
	teardown(&f);
}
