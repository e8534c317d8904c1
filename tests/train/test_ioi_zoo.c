/*
 * ioi_zoo: the committed `ioi` zoo model (baselines/models/ioi) solves IOI on
 * the IOI generator's own items from templates and name pairs its training
 * text never held, and its mechanism is the one the recipe's comment
 * (src/train/zoo_ioi.c) reports: the numbers there are printed by these
 * tests (the MECH lines: attention at END, patching of each head's and each
 * MLP's output from the ABC and the name-swap runs, direct logit
 * attribution, path patching) and the main ones are asserted (an S reader,
 * a mover of both names, the choice of IO in the MLPs). Plus a short
 * retrain of the recipe, twice, bitwise equal, on 1 and 2 threads.
 *
 * Labelled zoo (file name): release pass only.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mechbench/effect.h>
#include <mechbench/heads.h>
#include <mechbench/interventions.h>
#include <mechbench/ioi_prompts.h>
#include <mechbench/logits.h>
#include <mechbench/model.h>
#include <mechbench/zoo.h>

#define MODEL_DIR MB_SOURCE_DIR "/baselines/models/ioi"
#define N_PER 32 /* items per template x order */
#define MAXL 4
#define MAXH 16

/* One template x order stratum of held-out-template items: [BOS] + tokens. */
typedef struct stratum {
	int n, T;               /* items, positions (with BOS) */
	int32_t tok[N_PER * 64], abc[N_PER * 64], swap[N_PER * 64];
	int32_t io[N_PER], s[N_PER];
	int heldout_pair[N_PER];
	int pos_io, pos_s1, pos_s2, pos_end;
	char id[32];
} stratum;

typedef struct fixture {
	mb_model *m;
	mb_engine *e;
	stratum *st;
	int nst;
} fixture;

static int json_int(const json_t *o, const char *k)
{
	const json_t *v = json_object_get(o, k);
	cr_assert(json_is_integer(v), "item field %s", k);
	return (int)json_integer_value(v);
}

static void copy_tokens(int32_t *out, const json_t *a, int T)
{
	cr_assert_eq((int)json_array_size(a) + 1, T);
	out[0] = 0; /* <bos> */
	for (int i = 1; i < T; i++)
		out[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i - 1));
}

/* The committed model, or MB_IOI_ZOO_DIR when set (the same measurements on
 * another checkpoint of the recipe, e.g. a step of its series). */
static const char *model_dir(void)
{
	const char *d = getenv("MB_IOI_ZOO_DIR");
	return d && d[0] ? d : MODEL_DIR;
}

/* The committed model, its engine, and the generator's held-out-template
 * items grouped by stratum (all items of a stratum have the same positions). */
static void fixture_init(fixture *f)
{
	mb_error err = {0};
	mb_item_list items = {0};
	mb_engine_opts eo = {.max_batch = N_PER, .max_seq = 0};
	json_error_t jerr;
	json_t *params = json_loads("{\"templates\": [\"t02\", \"t04\", \"t09\", \"t11\"], "
				    "\"n_per_stratum\": 32}", 0, &jerr);

	memset(f, 0, sizeof(*f));
	cr_assert_eq(mb_model_load(&f->m, model_dir(), &err), 0, "%s", err.msg);
	cr_assert(f->m->tok, "baselines/models/ioi: no tokenizer.json");
	eo.max_seq = f->m->cfg.n_ctx;
	cr_assert_eq(mb_engine_init(&f->e, &f->m->cfg, &f->m->w, &eo, &err), 0, "%s", err.msg);
	cr_assert_eq(mb_ioi_generate(&items, 1, params, f->m->tok, "ioi/tokenizer.json", &err), 0,
		     "%s", err.msg);
	json_decref(params);
	cr_assert_eq(items.n, 4 * 2 * N_PER);
	f->st = calloc(8, sizeof(*f->st));
	for (size_t i = 0; i < items.n; i++) {
		const json_t *in = items.items[i].input;
		const json_t *pos = json_object_get(in, "pos");
		const json_t *toks = json_object_get(in, "tokens");
		stratum *s;
		int k;

		cr_assert(json_is_true(json_object_get(in, "heldout_template")));
		if (i % N_PER == 0) {
			s = &f->st[f->nst++];
			snprintf(s->id, sizeof(s->id), "%s", items.items[i].stratum);
			s->T = (int)json_array_size(toks) + 1;
			s->pos_io = json_int(pos, "io") + 1;
			s->pos_s1 = json_int(pos, "s1") + 1;
			s->pos_s2 = json_int(pos, "s2") + 1;
			s->pos_end = json_int(pos, "end") + 1;
		}
		s = &f->st[f->nst - 1];
		cr_assert_str_eq(s->id, items.items[i].stratum);
		cr_assert_eq(json_int(pos, "s2") + 1, s->pos_s2);
		cr_assert_eq(s->pos_end, s->T - 1);
		k = s->n++;
		copy_tokens(s->tok + (size_t)k * s->T, toks, s->T);
		copy_tokens(s->abc + (size_t)k * s->T,
			    json_object_get(json_object_get(in, "abc"), "tokens"), s->T);
		copy_tokens(s->swap + (size_t)k * s->T,
			    json_object_get(json_object_get(in, "swap"), "tokens"), s->T);
		s->io[k] = json_int(in, "io_id");
		s->s[k] = json_int(in, "s_id");
		s->heldout_pair[k] = json_is_true(json_object_get(in, "heldout_pair"));
	}
	mb_item_list_dispose(&items);
}

static void fixture_free(fixture *f)
{
	mb_engine_free(f->e);
	mb_model_free(f->m);
	free(f->st);
}

typedef struct ld_payload {
	const int32_t *io, *s;
} ld_payload;

/* logit(IO) - logit(S) at the last position (MB_LOGITS_LAST). */
static int ld_metric(double *out, const mb_engine *e, int batch, void *payload, mb_error *err)
{
	const ld_payload *p = payload;
	(void)err;
	for (int b = 0; b < batch; b++)
		out[b] = mb_logits_diff(mb_engine_logits_row(e, b, 0), p->io[b], p->s[b]);
	return 0;
}

/* The clean run of stratum s: out (n) the logit differences. */
static void clean_ld(double *out, fixture *f, const stratum *s)
{
	mb_error err = {0};
	ld_payload p = {s->io, s->s};
	mb_run run = {.batch = s->n, .seq = s->T, .tokens = s->tok, .logits = MB_LOGITS_LAST};

	cr_assert_eq(mb_engine_forward(f->e, &run, &err), 0, "%s", err.msg);
	cr_assert_eq(ld_metric(out, f->e, s->n, &p, &err), 0);
}

Test(ioi_zoo, solves_ioi_on_held_out_templates_and_held_out_pairs)
{
	fixture f;
	double acc = 0, ld = 0, acc_hp = 0, ld_hp = 0, v[N_PER];
	int n = 0, n_hp = 0;

	fixture_init(&f);
	for (int i = 0; i < f.nst; i++) {
		const stratum *s = &f.st[i];
		double sa = 0, sl = 0;
		clean_ld(v, &f, s);
		for (int b = 0; b < s->n; b++) {
			sa += v[b] > 0;
			sl += v[b];
			if (s->heldout_pair[b]) {
				acc_hp += v[b] > 0;
				ld_hp += v[b];
				n_hp++;
			}
		}
		acc += sa;
		ld += sl;
		n += s->n;
		printf("BEHAVIOUR %-10s P(IO > S) %.3f  logit diff %.3f\n", s->id, sa / s->n,
		       sl / s->n);
	}
	printf("BEHAVIOUR all held-out-template items (%d): P(IO > S) %.4f, logit diff %.3f; "
	       "of them with held-out pairs (%d): %.4f, %.3f\n", n, acc / n, ld / n, n_hp,
	       acc_hp / n_hp, ld_hp / n_hp);
	cr_expect_geq(acc / n, 0.95, "P(IO > S) %.4f on held-out templates", acc / n);
	cr_expect_gt(ld / n, 2.0, "mean logit diff %.3f on held-out templates", ld / n);
	cr_expect_gt(n_hp, 10, "the generator marks held-out pairs");
	cr_expect_geq(acc_hp / n_hp, 0.95, "P(IO > S) %.4f on held-out pairs", acc_hp / n_hp);
	cr_expect_gt(ld_hp / n_hp, 2.0, "mean logit diff %.3f on held-out pairs", ld_hp / n_hp);
	fixture_free(&f);
}

/* Everything the mechanism test measures, averaged over every item. */
typedef struct mech {
	int L, H;
	double ld;                         /* clean mean logit diff */
	double att_end[MAXL][MAXH][3];     /* attention END -> IO, S1, S2 */
	double att_s2s1[MAXL][MAXH];       /* attention S2 -> S1 */
	double patch_end[MAXL][MAXH];      /* d logit diff: z at END from ABC */
	double patch_s2[MAXL][MAXH];       /* d logit diff: z at S2 from ABC */
	double patch_io[MAXL][MAXH];       /* d logit diff: z at IO from ABC */
	double swap_end[MAXL][MAXH];       /* d logit diff: z at END from the name swap */
	double mlp_end[MAXL][2];           /* d logit diff: mlp_out at END from ABC, swap */
	double mlp_dla[MAXL][2];           /* direct logit attribution of mlp_out at END */
	double path[MAXL][MAXH][MAXH][3];  /* sender (l, h) -> receiver (l + 1, h') via q, k, v */
	double copying[MAXL][MAXH];        /* OV copying score */
	double dla[MAXL][MAXH][2];         /* direct logit attribution at END to IO, S */
} mech;

static double mean(const double *x, int n)
{
	double s = 0;
	for (int i = 0; i < n; i++)
		s += x[i];
	return s / n;
}

/* Direct logit attribution of a vector o (D) written at END to logit(IO)
 * and logit(S) of item b, through ln_f with the clean run's scale sd there
 * (centred, divided by sd, times ln_f's weight). */
static void dla_vec(double out[2], const double *o, double sd, const fixture *f,
		    const stratum *s, int b)
{
	const int D = f->m->cfg.d_model;
	const mb_engine_weights *w = &f->m->w;
	double om = 0;

	out[0] = out[1] = 0;
	for (int d = 0; d < D; d++)
		om += o[d];
	om /= D;
	for (int d = 0; d < D; d++) {
		double g = (o[d] - om) / sd * w->lnf_w[d];
		out[0] += g * w->unembed[(size_t)s->io[b] * D + d];
		out[1] += g * w->unembed[(size_t)s->s[b] * D + d];
	}
}

/* Direct logit attribution of each head's output at END (z W_O[h]) and of
 * each MLP's output there to logit(IO) and logit(S) (dla_vec), summed over
 * items. */
static void dla(mech *M, fixture *f, const stratum *s, const mb_hook_tensor *resid,
		mb_effect *fx, const mb_hook_point *zp, const mb_hook_point *mp)
{
	const mb_engine_config *c = &f->m->cfg;
	const mb_engine_weights *w = &f->m->w;
	const int D = c->d_model, H = c->n_head, Dh = c->d_head, T = s->T;

	for (int b = 0; b < s->n; b++) {
		const float *x = resid->data + ((size_t)b * T + s->pos_end) * D;
		double mu = 0, var = 0;
		for (int d = 0; d < D; d++)
			mu += x[d];
		mu /= D;
		for (int d = 0; d < D; d++)
			var += (x[d] - mu) * (x[d] - mu);
		double sd = sqrt(var / D + c->ln_eps), o[1024], v[2];
		for (int l = 0; l < c->n_layer; l++) {
			const mb_hook_tensor *z = mb_effect_clean_get(fx, zp[l]);
			const float *mo = mb_effect_clean_get(fx, mp[l])->data +
					  ((size_t)b * T + s->pos_end) * D;
			for (int h = 0; h < H; h++) {
				const float *zh = z->data + (((size_t)b * T + s->pos_end) * H + h) * Dh;
				for (int d = 0; d < D; d++) {
					o[d] = 0;
					for (int i = 0; i < Dh; i++)
						o[d] += zh[i] * w->o_w[((size_t)l * D + h * Dh + i) * D + d];
				}
				dla_vec(v, o, sd, f, s, b);
				M->dla[l][h][0] += v[0];
				M->dla[l][h][1] += v[1];
			}
			for (int d = 0; d < D; d++)
				o[d] = mo[d];
			dla_vec(v, o, sd, f, s, b);
			M->mlp_dla[l][0] += v[0];
			M->mlp_dla[l][1] += v[1];
		}
	}
}

static void measure(mech *M, fixture *f)
{
	const mb_engine_config *c = &f->m->cfg;
	const int L = c->n_layer, H = c->n_head;
	mb_error err = {0};
	double eff[N_PER];
	int total = 0;

	memset(M, 0, sizeof(*M));
	M->L = L;
	M->H = H;
	cr_assert(L <= MAXL && H <= MAXH && c->d_model <= 1024);
	{
		double cp[MAXL * MAXH];
		cr_assert_eq(mb_heads_copying(cp, c, &f->m->w, &err), 0, "%s", err.msg);
		for (int l = 0; l < L; l++)
			for (int h = 0; h < H; h++)
				M->copying[l][h] = cp[l * H + h];
	}
	for (int i = 0; i < f->nst; i++) {
		const stratum *s = &f->st[i];
		ld_payload p = {s->io, s->s};
		mb_effect *fx = NULL;
		mb_hook_point zp[2 * MAXL], *mp = zp + L; /* hook_z, then hook_mlp_out */
		mb_run run = {.batch = s->n, .seq = s->T, .tokens = s->tok, .logits = MB_LOGITS_LAST};
		mb_run abc = run, swap = run;
		float *delta = malloc((size_t)s->n * s->T * c->d_model * sizeof(float));

		abc.tokens = s->abc;
		swap.tokens = s->swap;
		cr_assert_eq(mb_effect_init(&fx, f->e, ld_metric, &p, &err), 0, "%s", err.msg);
		for (int l = 0; l < L; l++) {
			mb_hook_point pp = {MB_HOOK_PATTERN, l};
			zp[l] = (mb_hook_point){MB_HOOK_Z, l};
			mp[l] = (mb_hook_point){MB_HOOK_MLP_OUT, l};
			cr_assert_eq(mb_effect_cache(fx, pp, &err), 0, "%s", err.msg);
			cr_assert_eq(mb_effect_cache(fx, mp[l], &err), 0, "%s", err.msg);
		}
		cr_assert_eq(mb_effect_cache_restart(fx, &err), 0, "%s", err.msg);
		mb_hook_point last = {MB_HOOK_RESID_POST, L - 1};
		cr_assert_eq(mb_effect_cache(fx, last, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_effect_clean(fx, &run, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_effect_source(fx, 0, &abc, zp, 2 * L, NULL, &err), 0, "%s", err.msg);
		cr_assert_eq(mb_effect_source(fx, 1, &swap, zp, 2 * L, NULL, &err), 0, "%s",
			     err.msg);
		M->ld += mean(mb_effect_clean_values(fx), s->n) * s->n;
		dla(M, f, s, mb_effect_clean_get(fx, last), fx, zp, mp);
		for (int l = 0; l < L; l++)
			for (int src = 0; src < 2; src++) {
				mb_iv_spec iv = {.point = mp[l], .unit = -1, .op = MB_IV_PATCH,
						 .source = mb_effect_source_get(fx, src, mp[l]),
						 .positions = &s->pos_end, .n_positions = 1};
				mb_effect_arm arm = {.iv = &iv, .n_iv = 1};
				cr_assert_eq(mb_effect_run_arm(eff, NULL, fx, &arm, &err), 0, "%s",
					     err.msg);
				M->mlp_end[l][src] += mean(eff, s->n) * s->n;
			}
		for (int l = 0; l < L; l++) {
			mb_hook_point pp = {MB_HOOK_PATTERN, l};
			const mb_hook_tensor *pat = mb_effect_clean_get(fx, pp);
			const mb_hook_tensor *zs = mb_effect_source_get(fx, 0, zp[l]);
			const mb_hook_tensor *zc = mb_effect_clean_get(fx, zp[l]);
			const int T = s->T;
			for (int h = 0; h < H; h++) {
				double sio = 0, ss1 = 0, ss2 = 0;
				for (int b = 0; b < s->n; b++) {
					const float *ph = pat->data + ((size_t)b * H + h) * T * T;
					sio += ph[s->pos_end * T + s->pos_io];
					ss1 += ph[s->pos_end * T + s->pos_s1];
					ss2 += ph[s->pos_end * T + s->pos_s2];
					M->att_end[l][h][0] += ph[s->pos_end * T + s->pos_io];
					M->att_end[l][h][1] += ph[s->pos_end * T + s->pos_s1];
					M->att_end[l][h][2] += ph[s->pos_end * T + s->pos_s2];
					M->att_s2s1[l][h] += ph[s->pos_s2 * T + s->pos_s1];
				}
				if (getenv("MB_IOI_ZOO_STRATA")) {
					double row[64] = {0};
					int top = 0;
					for (int b = 0; b < s->n; b++)
						for (int j = 0; j < T; j++)
							row[j] += pat->data[((size_t)b * H + h) * T * T +
									    (size_t)s->pos_end * T + j];
					for (int j = 1; j < T; j++)
						top = row[j] > row[top] ? j : top;
					printf("STRATUM %-9s a%d.%d END->IO %.2f S1 %.2f S2 %.2f; most to "
					       "position %d (%.2f; IO %d S1 %d S2 %d END %d)\n", s->id, l,
					       h, sio / s->n, ss1 / s->n, ss2 / s->n, top, row[top] / s->n,
					       s->pos_io, s->pos_s1, s->pos_s2, s->pos_end);
				}
				const int where[3] = {s->pos_end, s->pos_s2, s->pos_io};
				double *dst[3] = {&M->patch_end[l][h], &M->patch_s2[l][h],
						  &M->patch_io[l][h]};
				for (int w = 0; w < 3; w++) {
					mb_iv_spec iv = {.point = zp[l], .unit = h, .op = MB_IV_PATCH,
							 .source = zs, .positions = &where[w],
							 .n_positions = 1};
					mb_effect_arm arm = {.iv = &iv, .n_iv = 1};
					cr_assert_eq(mb_effect_run_arm(eff, NULL, fx, &arm, &err), 0,
						     "%s", err.msg);
					*dst[w] += mean(eff, s->n) * s->n;
				}
				{
					mb_iv_spec iv = {.point = zp[l], .unit = h, .op = MB_IV_PATCH,
							 .source = mb_effect_source_get(fx, 1, zp[l]),
							 .positions = &s->pos_end, .n_positions = 1};
					mb_effect_arm arm = {.iv = &iv, .n_iv = 1};
					cr_assert_eq(mb_effect_run_arm(eff, NULL, fx, &arm, &err), 0,
						     "%s", err.msg);
					M->swap_end[l][h] += mean(eff, s->n) * s->n;
				}
				if (l + 1 >= L)
					continue;
				mb_interp_head_delta_patch(delta, c, &f->m->w, l, h, zc, zs);
				for (int hr = 0; hr < H; hr++)
					for (int via = 0; via < 3; via++) {
						mb_effect_path path = {l + 1, hr, via, delta};
						mb_effect_arm arm = {.path = &path};
						cr_assert_eq(mb_effect_run_arm(eff, NULL, fx, &arm, &err),
							     0, "%s", err.msg);
						M->path[l][h][hr][via] += mean(eff, s->n) * s->n;
					}
			}
		}
		total += s->n;
		free(delta);
		mb_effect_free(fx);
	}
	M->ld /= total;
	for (int l = 0; l < L; l++)
		for (int k = 0; k < 2; k++) {
			M->mlp_end[l][k] /= total;
			M->mlp_dla[l][k] /= total;
		}
	for (int l = 0; l < L; l++)
		for (int h = 0; h < H; h++) {
			for (int k = 0; k < 3; k++)
				M->att_end[l][h][k] /= total;
			M->att_s2s1[l][h] /= total;
			M->dla[l][h][0] /= total;
			M->dla[l][h][1] /= total;
			M->patch_end[l][h] /= total;
			M->patch_s2[l][h] /= total;
			M->patch_io[l][h] /= total;
			M->swap_end[l][h] /= total;
			for (int hr = 0; hr < H; hr++)
				for (int via = 0; via < 3; via++)
					M->path[l][h][hr][via] /= total;
		}
}

static void print_mech(const mech *M)
{
	printf("MECH clean logit diff %.3f (held-out templates; patches from the ABC run)\n",
	       M->ld);
	printf("MECH head  END->IO END->S1 END->S2 S2->S1  dLD@END dLD@S2 dLD@IO swap@END  "
	       "copying  DLA(IO) DLA(S)\n");
	for (int l = 0; l < M->L; l++)
		for (int h = 0; h < M->H; h++)
			printf("MECH a%d.%d  %6.3f %6.3f  %6.3f  %6.3f  %7.3f %6.3f %6.3f %7.3f  %6.3f  "
			       "%7.3f %6.3f\n", l, h, M->att_end[l][h][0], M->att_end[l][h][1],
			       M->att_end[l][h][2], M->att_s2s1[l][h], M->patch_end[l][h],
			       M->patch_s2[l][h], M->patch_io[l][h], M->swap_end[l][h],
			       M->copying[l][h], M->dla[l][h][0], M->dla[l][h][1]);
	for (int l = 0; l < M->L; l++)
		printf("MECH mlp%d  dLD@END from ABC %7.3f, from the swap %7.3f; DLA(IO) %7.3f "
		       "DLA(S) %7.3f\n", l, M->mlp_end[l][0], M->mlp_end[l][1], M->mlp_dla[l][0],
		       M->mlp_dla[l][1]);
	for (int l = 0; l + 1 < M->L; l++)
		for (int h = 0; h < M->H; h++)
			for (int hr = 0; hr < M->H; hr++)
				printf("MECH path a%d.%d -> a%d.%d  q %7.3f  k %7.3f  v %7.3f\n", l, h,
				       l + 1, hr, M->path[l][h][hr][0], M->path[l][h][hr][1],
				       M->path[l][h][hr][2]);
}

Test(ioi_zoo, mechanism_is_the_one_the_recipe_reports)
{
	fixture f;
	mech *M = calloc(1, sizeof(*M));

	fixture_init(&f);
	measure(M, &f);
	print_mech(M);
	cr_expect_gt(M->ld, 2.0);
	/* The S reader: the head attending most from END to S2 carries which
	 * name is S: its END output from the name-swap run flips more than half
	 * of the answer (a full flip is -2 LD), from the ABC run it removes more
	 * than half; its own direct logit effect is small (it acts through the
	 * MLPs). */
	int sl = 0, sh = 0, ml = M->L - 1, mh = 0;
	for (int l = 0; l < M->L; l++)
		for (int h = 0; h < M->H; h++)
			if (M->att_end[l][h][2] > M->att_end[sl][sh][2])
				sl = l, sh = h;
	printf("MECH S reader a%d.%d, name mover ", sl, sh);
	cr_expect_gt(M->att_end[sl][sh][2], 0.5, "a%d.%d END->S2 %.3f", sl, sh,
		     M->att_end[sl][sh][2]);
	cr_expect_lt(M->swap_end[sl][sh], -M->ld, "a%d.%d swap %.3f", sl, sh, M->swap_end[sl][sh]);
	cr_expect_lt(M->patch_end[sl][sh], -0.5 * M->ld, "a%d.%d ABC %.3f", sl, sh,
		     M->patch_end[sl][sh]);
	cr_expect_lt(fabs(M->dla[sl][sh][0] - M->dla[sl][sh][1]), 0.1 * M->ld);
	/* The name mover: the last layer's head with the largest direct logit
	 * attribution to IO writes both names (IO and S alike: the candidates,
	 * not the answer): removing the names (ABC) costs logit difference,
	 * exchanging them (swap) does not. */
	for (int h = 0; h < M->H; h++)
		if (M->dla[ml][h][0] > M->dla[ml][mh][0])
			mh = h;
	printf("a%d.%d\n", ml, mh);
	cr_expect_gt(M->dla[ml][mh][0], 2.0, "a%d.%d DLA(IO) %.3f", ml, mh, M->dla[ml][mh][0]);
	cr_expect_lt(fabs(M->dla[ml][mh][0] - M->dla[ml][mh][1]), 0.25 * M->dla[ml][mh][0]);
	cr_expect_lt(M->patch_end[ml][mh], -0.5, "a%d.%d ABC %.3f", ml, mh, M->patch_end[ml][mh]);
	cr_expect_lt(fabs(M->swap_end[ml][mh]), 0.5, "a%d.%d swap %.3f", ml, mh,
		     M->swap_end[ml][mh]);
	/* The choice of IO over S is made in the MLPs at END: layer 0's, from
	 * the swap run, flips more than half of the answer. */
	cr_expect_lt(M->mlp_end[0][1], -M->ld, "mlp0 swap %.3f", M->mlp_end[0][1]);
	free(M);
	fixture_free(&f);
}

/* A short retrain of the committed preset (its MANIFEST's seed 0) on 1 and
 * 2 threads: the same parameter bits, and the first steps' losses are the
 * ones the committed training_state.json recorded. */
Test(ioi_zoo, a_short_retrain_repeats_the_committed_losses_on_1_and_2_threads)
{
	enum { STEPS = 12 };
	mb_zoo_recipe r;
	mb_error err = {0};
	double loss[2][STEPS];
	float *params[2];
	size_t np[2];
	json_error_t jerr;
	json_t *st = json_load_file(MODEL_DIR "/training_state.json", 0, &jerr);
	const json_t *losses = json_object_get(st, "losses");

	cr_assert(st, "training_state.json: %s", jerr.text);
	cr_assert_eq(mb_zoo_recipe_get(&r, "ioi", "fast", 0, &err), 0, "%s", err.msg);
	for (int k = 0; k < 2; k++) {
		mb_zoo_trainer *t = NULL;
		const float *p;
		omp_set_num_threads(k + 1);
		cr_assert_eq(mb_zoo_trainer_init(&t, &r, &err), 0, "%s", err.msg);
		for (int s = 0; s < STEPS; s++)
			cr_assert_eq(mb_zoo_trainer_step(t, &loss[k][s], &err), 0, "%s", err.msg);
		p = mb_zoo_trainer_params(t, &np[k]);
		params[k] = malloc(np[k] * sizeof(float));
		memcpy(params[k], p, np[k] * sizeof(float));
		mb_zoo_trainer_free(t);
	}
	cr_assert_eq(np[0], np[1]);
	cr_expect_arr_eq(params[0], params[1], np[0] * sizeof(float), "1 and 2 threads differ");
	for (int s = 0; s < STEPS; s++) {
		char ours[32], committed[32];
		cr_expect_eq(loss[0][s], loss[1][s], "step %d", s + 1);
		snprintf(ours, sizeof(ours), "%.9e", loss[0][s]);
		snprintf(committed, sizeof(committed), "%.9e",
			 json_real_value(json_array_get(losses, (size_t)s)));
		cr_expect_str_eq(ours, committed, "step %d: loss %s, committed %s", s + 1, ours,
				 committed);
	}
	free(params[0]);
	free(params[1]);
	json_decref(st);
}
